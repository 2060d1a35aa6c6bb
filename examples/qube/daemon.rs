//! `qube daemon`: sets up the cgroup root and the state directory, takes over what an
//! earlier daemon left, listens on the socket (root only, checked by SO_PEERCRED) and
//! answers each connection in a thread. SIGTERM or SIGINT ends it cleanly.

use std::fs;
use std::io::{self, BufReader, Write};
use std::os::fd::{AsFd, IntoRawFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use nix::sys::stat::{umask, Mode};
use qube_cgroup::{Cgroup, Controllers};

use crate::cli::DaemonArgs;
use crate::client::Fail;
use crate::containers::Manager;
use crate::protocol::{
    read_line, write_line, Failure, FailureKind, Reply, ReplyLine, RequestLine, WireError,
};
use crate::state::StateDir;

/// The controllers every container's cgroup gets.
pub const CONTROLLERS: Controllers = Controllers::MEMORY
    .union(Controllers::CPU)
    .union(Controllers::PIDS)
    .union(Controllers::IO);

/// How long a client may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long each container gets to stop when the daemon exits with `--stop-containers-on-exit`.
const EXIT_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A line on the daemon's stderr. Errors writing it are ignored: the daemon must keep
/// running when whoever started it has gone.
pub fn log(message: &str) {
    let _ = writeln!(io::stderr().lock(), "qube daemon: {message}");
}

/// Runs the daemon until SIGTERM or SIGINT.
pub fn run(args: &DaemonArgs, socket: &Path) -> Result<(), Fail> {
    if !nix::unistd::geteuid().is_root() {
        return Err(Fail {
            code: 1,
            message:
                "the daemon needs root (it creates cgroups, mounts and namespaces); run it as root"
                    .into(),
        });
    }
    let stop = SignalPipe::install().map_err(|e| runtime(format!("signal handlers: {e}")))?;
    // The cgroup root first: when it cannot be set up, nothing else is created.
    let parent = cgroup_root(&args.cgroup_root)?;
    let state = StateDir::create(&args.state_dir).map_err(|e| runtime(e.to_string()))?;
    let listener = listen(socket)?;
    let manager = Arc::new(Manager::new(state, parent, args.log_size.0));
    manager.reconcile();

    // The readiness line: whoever started the daemon may wait for it.
    println!("qube daemon: listening on {}", socket.display());
    let _ = io::stdout().flush();
    let served = serve(&listener, &stop, &manager);

    log("stopping");
    if args.stop_containers_on_exit {
        manager.stop_all(EXIT_STOP_TIMEOUT);
    }
    let _ = fs::remove_file(socket);
    served
}

fn runtime(message: String) -> Fail {
    Fail { code: 1, message }
}

/// Creates (or opens) the cgroup that holds the containers and enables the controllers
/// they need in it. Fails, saying why, rather than running containers without limits.
fn cgroup_root(rel: &str) -> Result<Cgroup, Fail> {
    let setup = || -> qube_cgroup::Result<Cgroup> {
        let root = Cgroup::root()?;
        let parent = root.create_path(rel.trim_start_matches('/'), CONTROLLERS)?;
        let missing = CONTROLLERS - parent.subtree_control()?;
        if !missing.is_empty() {
            parent.enable_controllers(missing)?;
        }
        Ok(parent)
    };
    setup().map_err(|e| runtime(format!("cannot set up the cgroup root {rel:?}: {e}")))
}

/// Binds the socket, mode 0600 from the start. A socket file left by a daemon that died
/// is replaced; one that a live daemon answers on is not.
fn listen(path: &Path) -> Result<UnixListener, Fail> {
    if let Some(dir) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| runtime(format!("cannot create {}: {e}", dir.display())))?;
    }
    if let Ok(meta) = fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(runtime(format!(
                "{} exists and is not a socket",
                path.display()
            )));
        }
        if UnixStream::connect(path).is_ok() {
            return Err(runtime(format!(
                "another qube daemon is listening on {}",
                path.display()
            )));
        }
        fs::remove_file(path)
            .map_err(|e| runtime(format!("cannot remove the stale {}: {e}", path.display())))?;
    }
    // No thread runs yet, so the process-wide umask change affects nothing else.
    let old = umask(Mode::from_bits_truncate(0o177));
    let bound = UnixListener::bind(path);
    umask(old);
    let listener =
        bound.map_err(|e| runtime(format!("cannot listen on {}: {e}", path.display())))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .map_err(|e| runtime(format!("chmod {}: {e}", path.display())))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| runtime(e.to_string()))?;
    Ok(listener)
}

/// Accepts connections until a stop signal arrives.
fn serve(listener: &UnixListener, stop: &SignalPipe, manager: &Arc<Manager>) -> Result<(), Fail> {
    loop {
        let mut fds = [
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(stop.read.as_fd(), PollFlags::POLLIN),
        ];
        match nix::poll::poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(runtime(format!("poll: {e}"))),
        }
        if fds[1].any().unwrap_or(false) {
            return Ok(());
        }
        match listener.accept() {
            Ok((conn, _)) => {
                let manager = manager.clone();
                let spawned = std::thread::Builder::new()
                    .name("connection".into())
                    .spawn(move || answer(conn, &manager));
                if let Err(e) = spawned {
                    log(&format!("cannot start a connection thread: {e}"));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => log(&format!("accept: {e}")),
        }
    }
}

/// Reads one request from a connection and answers it. Only root may ask anything.
fn answer(conn: UnixStream, manager: &Arc<Manager>) {
    let _ = conn.set_read_timeout(Some(REQUEST_TIMEOUT));
    let Ok(reader) = conn.try_clone() else { return };
    let mut reader = BufReader::new(reader);
    let mut writer = conn;
    let mut send = |reply: Reply| -> io::Result<()> {
        write_line(&mut writer, &ReplyLine::new(reply)).map_err(|e| match e {
            WireError::Io(e) => e,
            other => io::Error::other(other.to_string()),
        })
    };
    // Before reading anything: a client that may not ask should not make the daemon
    // hold up to a request's worth of its bytes, nor wait for them.
    if let Some(refusal) = refuse_non_root(reader.get_ref()) {
        let _ = send(Reply::Failed(refusal));
        return;
    }
    let request = read_line::<RequestLine>(&mut reader);
    let result = match request {
        Ok(line) => manager.handle(line.request, &mut send),
        Err(WireError::Closed) => Ok(()),
        Err(e) => send(Reply::Failed(Failure::new(
            FailureKind::Protocol,
            format!("bad request: {e}"),
        ))),
    };
    if let Err(e) = result {
        // The client went away (e.g. `logs -f` interrupted): nothing to answer.
        if e.kind() != io::ErrorKind::BrokenPipe {
            log(&format!("answering a client: {e}"));
        }
    }
}

/// The peer's credentials, from the kernel (SO_PEERCRED), not from anything it says.
fn refuse_non_root(conn: &UnixStream) -> Option<Failure> {
    match getsockopt(conn, PeerCredentials) {
        Ok(creds) if creds.uid() == 0 => None,
        Ok(creds) => Some(Failure::new(
            FailureKind::Permission,
            format!(
                "permission denied: qube needs root, and this client runs as uid {}",
                creds.uid()
            ),
        )),
        Err(e) => Some(Failure::new(
            FailureKind::Permission,
            format!("cannot check the client's credentials: {e}"),
        )),
    }
}

/// The write end of the stop pipe, for the signal handler.
static STOP_FD: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_stop_signal(_: nix::libc::c_int) {
    let fd = STOP_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = 1u8;
        // SAFETY: write(2) is async-signal-safe; `fd` is the non-blocking write end of the
        // stop pipe, open for the life of the process, and `byte` lives for the call.
        unsafe { nix::libc::write(fd, std::ptr::addr_of!(byte).cast(), 1) };
    }
}

/// SIGTERM and SIGINT write a byte into a pipe that the accept loop polls (the
/// self-pipe trick): the handler does nothing else, and no signal mask is changed, so
/// containers start with the signals as they should be.
struct SignalPipe {
    read: std::os::fd::OwnedFd,
}

impl SignalPipe {
    fn install() -> nix::Result<SignalPipe> {
        let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?;
        STOP_FD.store(write.into_raw_fd(), Ordering::Relaxed);
        let action = SigAction::new(
            SigHandler::Handler(on_stop_signal),
            SaFlags::SA_RESTART,
            SigSet::empty(),
        );
        for signal in [Signal::SIGTERM, Signal::SIGINT] {
            // SAFETY: the handler only loads an atomic and calls write(2), both
            // async-signal-safe; it replaces the default action, which would kill the
            // daemon without removing its socket.
            unsafe { sigaction(signal, &action) }?;
        }
        Ok(SignalPipe { read })
    }
}
