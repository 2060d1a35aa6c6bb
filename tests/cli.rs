//! End to end: the real `qube` binary against a real daemon, in the VM (`scripts/vm test`).
//!
//! Each test starts its own daemon with its own socket, state directory and cgroup root,
//! so the tests run in parallel, and stops it at the end. Nothing sleeps to synchronise:
//! the daemon is ready when it prints its readiness line, `qube wait` / `qube stop`
//! return when the daemon has recorded the container's end, and a container that must
//! wait for the test reads a fifo the test opens ([`Gates`]).
#![allow(clippy::unwrap_used)] // test helpers: a failed step should abort the test loudly

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::Duration;

use qube_cgroup::Cgroup;
use serde_json::Value;

const QUBE: &str = env!("CARGO_BIN_EXE_qube");

/// What `qube stats` writes before each sample on a terminal: cursor home, clear screen.
const REDRAW: &str = "\x1b[H\x1b[2J";

/// The unprivileged user of the VM.
const QUBETEST_UID: u32 = 1000;

/// A daemon of this test's own, killed and cleaned up on drop.
struct Daemon {
    dir: tempfile::TempDir,
    cgroup_root: String,
    root: Cgroup,
    child: Option<Child>,
    /// Extra arguments for `qube daemon`.
    flags: Vec<&'static str>,
    /// Held so the daemon never writes into a closed pipe.
    _stdout: Option<BufReader<ChildStdout>>,
}

impl Daemon {
    fn start(root: &Cgroup, test: &str) -> Daemon {
        assert!(
            Path::new(QUBE).exists(),
            "the qube binary {QUBE} is missing here: the VM must be given the bin targets' executables"
        );
        let dir = tempfile::Builder::new()
            .prefix(&format!("qube-cli-{test}-"))
            .tempdir()
            .unwrap();
        let root = Cgroup::open(root.path()).unwrap();
        let mut daemon = Daemon {
            dir,
            cgroup_root: format!("qube-cli-{test}-{}", std::process::id()),
            root,
            child: None,
            flags: Vec::new(),
            _stdout: None,
        };
        daemon.spawn();
        daemon
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("qube.sock")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("daemon.log")
    }

    /// The cgroup that holds this daemon's containers.
    fn cgroups(&self) -> PathBuf {
        self.root.path().join(&self.cgroup_root)
    }

    /// Starts the daemon process and waits for its readiness line.
    fn spawn(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .unwrap();
        let mut child = Command::new(QUBE)
            .arg("daemon")
            .arg("--socket")
            .arg(self.socket())
            .arg("--state-dir")
            .arg(self.state())
            .arg("--cgroup-root")
            .arg(&self.cgroup_root)
            .args(&self.flags)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        self.child = Some(child);
        assert!(
            line.starts_with("qube daemon: listening on"),
            "the daemon did not start: {line:?}\n{}",
            self.daemon_log()
        );
        self._stdout = Some(stdout);
    }

    fn daemon_log(&self) -> String {
        fs::read_to_string(self.log()).unwrap_or_default()
    }

    /// Runs `qube ARGS --socket S`.
    fn qube(&self, args: &[&str]) -> Output {
        self.command(args).output().unwrap()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(QUBE);
        cmd.args(args).arg("--socket").arg(self.socket());
        cmd
    }

    /// Runs a command that must succeed; returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.qube(args);
        assert!(
            out.status.success(),
            "qube {args:?} failed ({}): {}\ndaemon log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.daemon_log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    /// Kills the daemon with SIGKILL, as a crash would, and reaps it.
    fn crash(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        self._stdout = None;
    }

    /// Stops the daemon with SIGTERM and checks it exits cleanly.
    fn stop(&mut self) {
        let mut child = self.child.take().unwrap();
        signal(child.id(), nix::sys::signal::Signal::SIGTERM);
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "daemon exit {status}:\n{}",
            self.daemon_log()
        );
        assert!(!self.socket().exists(), "the socket is removed at exit");
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("daemon log:\n{}", self.daemon_log());
        }
        if let Ok(cg) = Cgroup::open(self.cgroups()) {
            let _ = cg.kill_and_remove(Duration::from_secs(10));
        }
        unmount_below(self.dir.path());
    }
}

/// Fifos shared with containers as `/sync`: a container that reads `/sync/NAME` waits
/// there until the test opens the gate, so the test decides when it goes on.
struct Gates {
    dir: PathBuf,
    /// The `--volume` that shows the gates to a container.
    volume: String,
}

impl Gates {
    fn new(daemon: &Daemon) -> Gates {
        let dir = daemon.dir.path().join("sync");
        fs::create_dir(&dir).unwrap();
        let volume = format!("{}:/sync", dir.display());
        Gates { dir, volume }
    }

    /// A closed gate, read inside the container as `/sync/NAME`.
    fn add(&self, name: &str) -> PathBuf {
        let fifo = self.dir.join(name);
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        fifo
    }

    /// Lets the container waiting at `gate` go on, with the line "go".
    fn open(gate: &Path) {
        fs::OpenOptions::new()
            .write(true)
            .open(gate)
            .unwrap()
            .write_all(b"go\n")
            .unwrap();
    }
}

/// Unmounts whatever a failed test left mounted below `dir` (overlay root filesystems),
/// so the temporary directory can be removed.
fn unmount_below(dir: &Path) {
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    for point in mounts.lines().filter_map(|l| l.split(' ').nth(4)) {
        if Path::new(point).starts_with(dir) {
            let _ = nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).unwrap();
}

/// Whether a process runs: a zombie waiting for its parent to reap it counts as gone.
fn process_exists(pid: u64) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    !matches!(state, Some("Z" | "X"))
}

fn read_trimmed(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A gzipped tarball of a busybox root filesystem, as `docker export | gzip` would give.
fn busybox_tarball(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs");
    fs::create_dir(&rootfs).unwrap();
    qube_testkit::busybox_rootfs(&rootfs).unwrap();
    let path = dir.join("alpine.tar.gz");
    let gz = flate2::write::GzEncoder::new(
        fs::File::create(&path).unwrap(),
        flate2::Compression::fast(),
    );
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    tar.append_dir_all(".", &rootfs).unwrap();
    tar.into_inner().unwrap().finish().unwrap();
    path
}

/// The manual check: defaults of 2 GiB memory and 1 GiB swap, shown by `info`,
/// and nothing left after `stop`.
#[test]
fn a_container_gets_the_default_limits_and_stop_leaves_nothing() {
    let Some(root) = qube_testkit::require_vm!() else {
        return;
    };
    let mut daemon = Daemon::start(&root, "defaults");
    let tarball = busybox_tarball(daemon.dir.path());
    let imported = daemon.ok(&["image", "import", "alpine", tarball.to_str().unwrap()]);
    assert!(imported.starts_with("imported alpine"), "{imported}");

    let id = daemon
        .ok(&["run", "--image", "alpine", "--cmd", "sleep 60"])
        .trim()
        .to_owned();
    assert_eq!(id.len(), 12, "{id:?}");
    let cgroup = daemon.cgroups().join(&id);
    assert_eq!(read_trimmed(&cgroup.join("memory.max")), "2147483648");
    assert_eq!(read_trimmed(&cgroup.join("memory.swap.max")), "1073741824");
    let enabled = read_trimmed(&daemon.cgroups().join("cgroup.subtree_control"));
    for controller in ["cpu", "io", "memory", "pids"] {
        assert!(enabled.split(' ').any(|c| c == controller), "{enabled}");
    }

    let info = daemon.ok(&["info", &id]);
    let memory = info.lines().find(|l| l.starts_with("Memory:")).unwrap();
    assert!(memory.contains(" / 2048.00 MB ("), "{info}");
    assert!(
        info.contains("Swap:        0.00 MB / 1024.00 MB (0.0%)"),
        "{info}"
    );
    assert!(info.contains("Status:      running"), "{info}");
    assert!(info.contains("Image:       alpine"), "{info}");
    assert!(info.contains("Command:     sleep 60"), "{info}");
    assert!(
        info.contains(&format!("Cgroup:      {}", cgroup.display())),
        "{info}"
    );

    let list = daemon.ok(&["list"]);
    assert!(
        list.lines()
            .any(|l| l.starts_with(&id) && l.contains("running")),
        "{list}"
    );
    let stats = daemon.ok(&["stats", "--no-stream"]);
    assert!(stats.contains(&id) && stats.contains("/ 2GiB"), "{stats}");

    let view = daemon.json(&["info", &id, "--json"]);
    let pid = view["pid"].as_u64().unwrap();
    assert!(process_exists(pid));

    let stopped = daemon.ok(&["stop", &id, "--timeout", "5"]);
    assert!(stopped.starts_with(&id), "{stopped}");
    assert!(!cgroup.exists(), "the container's cgroup is removed");
    assert!(!process_exists(pid), "its process is gone");
    assert_eq!(
        fs::read_dir(daemon.cgroups())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().is_dir())
            .count(),
        0
    );

    // The record, status and final figures stay until `rm`.
    let info = daemon.ok(&["info", &id]);
    assert!(
        info.contains("Status:      killed by signal 15 (SIGTERM)"),
        "{info}"
    );
    assert!(info.contains("Resource Usage (when it stopped"), "{info}");
    daemon.ok(&["rm", &id]);
    assert_eq!(daemon.json(&["list", "--json"]), serde_json::json!([]));
    daemon.stop();
}

#[test]
fn output_goes_to_the_logs_and_the_exit_code_is_kept() {
    let Some(root) = qube_testkit::require_vm!() else {
        return;
    };
    let mut daemon = Daemon::start(&root, "logs");
    daemon.ok(&["image", "import", "alpine", "--busybox"]);
    let id = daemon
        .ok(&[
            "run",
            "--name",
            "talker",
            "--image",
            "alpine",
            "--env",
            "GREETING=hello",
            "--cmd",
            "echo $GREETING from $(hostname); echo oops >&2; exit 3",
        ])
        .trim()
        .to_owned();
    assert_eq!(daemon.ok(&["wait", "talker"]), "exited with code 3\n");
    assert_eq!(daemon.ok(&["logs", &id]), "hello from talker\noops\n");
    assert_eq!(
        daemon.ok(&["logs", "-f", "talker"]),
        "hello from talker\noops\n"
    );
    assert!(!daemon.cgroups().join(&id).exists());

    let taken = daemon.qube(&[
        "run", "--name", "talker", "--image", "alpine", "--cmd", "true",
    ]);
    assert_eq!(taken.status.code(), Some(1), "{}", stderr(&taken));
    assert!(stderr(&taken).contains("in use"), "{}", stderr(&taken));
    daemon.stop();
}

#[test]
fn logs_follow_a_running_container_and_stats_stream_until_it_ends() {
    let Some(root) = qube_testkit::require_vm!() else {
        return;
    };
    let mut daemon = Daemon::start(&root, "follow");
    daemon.ok(&["image", "import", "alpine", "--busybox"]);
    // The container blocks on a fifo the test holds, so its second line comes only after
    // the follower is attached: no timing is involved.
    let gates = Gates::new(&daemon);
    let gate = gates.add("go");
    daemon.ok(&[
        "run",
        "--name",
        "follower",
        "--volume",
        &gates.volume,
        "--image",
        "alpine",
        "--cmd",
        "echo first; read word < /sync/go; echo second $word",
    ]);

    let mut follow = daemon
        .command(&["logs", "-f", "follower"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut followed = BufReader::new(follow.stdout.take().unwrap());
    let mut line = String::new();
    followed.read_line(&mut line).unwrap();
    assert_eq!(line, "first\n");

    let mut stats = daemon
        .command(&["stats", "follower"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut sampled = BufReader::new(stats.stdout.take().unwrap());
    let mut rows = Vec::new();
    while rows.len() < 2 {
        let mut line = String::new();
        assert_ne!(
            sampled.read_line(&mut line).unwrap(),
            0,
            "stats ended early"
        );
        if line.contains("follower") {
            rows.push(line);
        }
    }
    assert!(rows.iter().all(|r| r.contains("/ 2GiB")), "{rows:?}");
    // The second sample has a rate to show.
    assert!(!rows[1].contains("--"), "{rows:?}");

    // With --json, each sample is one line: a whole JSON array of the containers.
    let mut json_stats = daemon
        .command(&["stats", "--json", "follower"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut json_lines = BufReader::new(json_stats.stdout.take().unwrap());
    for _ in 0..2 {
        let mut line = String::new();
        assert_ne!(
            json_lines.read_line(&mut line).unwrap(),
            0,
            "stats --json ended early"
        );
        let sample: Value = serde_json::from_str(&line).unwrap();
        let containers = sample.as_array().unwrap();
        assert_eq!(containers.len(), 1, "{line}");
        assert_eq!(containers[0]["name"], "follower", "{line}");
    }

    // On a terminal each sample is drawn in place: cursor home, clear, table.
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut on_terminal = daemon
        .command(&["stats", "follower"])
        .stdout(std::fs::File::from(pty.slave))
        .spawn()
        .unwrap();
    let mut screen = std::fs::File::from(pty.master);
    let mut drawn = String::new();
    let samples = |drawn: &str| {
        drawn
            .split(REDRAW)
            .filter(|screen| screen.starts_with("ID") && screen.contains("follower"))
            .count()
    };
    while samples(&drawn) < 2 {
        let mut chunk = [0u8; 4096];
        let n = std::io::Read::read(&mut screen, &mut chunk).unwrap();
        assert_ne!(n, 0, "stats on a terminal ended early: {drawn:?}");
        drawn.push_str(&String::from_utf8_lossy(&chunk[..n]));
    }
    assert!(drawn.starts_with(REDRAW), "{drawn:?}");

    Gates::open(&gate);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut followed, &mut rest).unwrap();
    assert_eq!(
        rest, "second go\n",
        "the follower ends when the container does"
    );
    assert!(follow.wait().unwrap().success());
    assert!(
        stats.wait().unwrap().success(),
        "stats of named containers ends when they have all ended"
    );
    assert!(on_terminal.wait().unwrap().success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut json_lines, &mut rest).unwrap();
    assert!(
        rest.lines()
            .all(|l| serde_json::from_str::<Value>(l).is_ok_and(|v| v.is_array())),
        "{rest}"
    );
    assert!(json_stats.wait().unwrap().success());
    assert_eq!(daemon.ok(&["wait", "follower"]), "exited with code 0\n");
    daemon.stop();
}

#[test]
fn a_memory_hog_is_reported_oom_killed() {
    let Some(root) = qube_testkit::require_vm!() else {
        return;
    };
    let mut daemon = Daemon::start(&root, "oom");
    daemon.ok(&["image", "import", "alpine", "--busybox"]);
    let id = daemon
        .ok(&[
            "run",
            "--image",
            "alpine",
            "--memory",
            "64M",
            "--swap",
            "0",
            "--cmd",
            "x=a; while :; do x=$x$x; done",
        ])
        .trim()
        .to_owned();
    let cgroup = daemon.cgroups().join(&id);
    assert_eq!(read_trimmed(&cgroup.join("memory.max")), "67108864");
    assert_eq!(read_trimmed(&cgroup.join("memory.swap.max")), "0");
    let ended = daemon.ok(&["wait", &id]);
    assert!(ended.starts_with("OOM-killed"), "{ended}");
    let info = daemon.ok(&["info", &id]);
    assert!(info.contains("Status:      OOM-killed"), "{info}");
    assert!(
        info.contains("Memory:      ") && info.contains("/ 64.00 MB"),
        "{info}"
    );
    let kills = info
        .lines()
        .find_map(|l| l.strip_prefix("OOM kills:"))
        .unwrap();
    assert!(kills.trim().parse::<u64>().unwrap() >= 1, "{info}");
    assert!(!cgroup.exists());
    daemon.stop();
}

#[test]
fn bad_input_exits_2_and_creates_nothing() {
    let Some(root) = qube_testkit::require_vm!() else {
        return;
    };
    let mut daemon = Daemon::start(&root, "badinput");
    daemon.ok(&["image", "import", "alpine", "--busybox"]);
    for (args, says) in [
        (
            &[
                "run", "--memory", "2gb?", "--image", "alpine", "--cmd", "true",
            ][..],
            "2gb?",
        ),
        (
            &["run", "--image", "nosuch", "--cmd", "true"],
            "unknown image",
        ),
        (&["run", "--image", "../etc", "--cmd", "true"], "`..`"),
        (&["run", "--image", "a/b", "--cmd", "true"], "`/`"),
        (
            &["run", "--name", "x/y", "--image", "alpine", "--cmd", "true"],
            "`/`",
        ),
        (&["info", "nosuch"], "no such container"),
        (&["image", "import", "bad/name", "--busybox"], "`/`"),
    ] {
        let out = daemon.qube(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    }
    assert_eq!(daemon.json(&["list", "--json"]), serde_json::json!([]));
    assert_eq!(
        fs::read_dir(daemon.state().join("containers"))
            .unwrap()
            .count(),
        0
    );
    let cgroups: Vec<_> = fs::read_dir(daemon.cgroups())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert!(cgroups.is_empty(), "{cgroups:?}");
    daemon.stop();
}

#[test]
fn a_non_root_client_is_refused() {
    let Some(root) = qube_testkit::require_vm!() else {
        return;
    };
    let mut daemon = Daemon::start(&root, "nonroot");
    let as_qubetest = |args: &[&str]| -> Output {
        daemon
            .command(args)
            .uid(QUBETEST_UID)
            .gid(QUBETEST_UID)
            .current_dir("/")
            .output()
            .unwrap()
    };
    // The socket is 0600: connecting is refused by the kernel.
    let mode = fs::metadata(daemon.socket()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let out = as_qubetest(&["list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("qube needs root"), "{}", stderr(&out));

    // Opened up by mistake, the daemon still refuses by the peer's credentials.
    fs::set_permissions(daemon.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(daemon.socket(), fs::Permissions::from_mode(0o666)).unwrap();
    let out = as_qubetest(&["list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("qube needs root, and this client runs as uid 1000"),
        "{}",
        stderr(&out)
    );

    // Nor does a daemon run as that user: it says so and leaves nothing behind, even
    // where the user could write.
    let own = daemon.dir.path().join("qubetest");
    fs::create_dir(&own).unwrap();
    std::os::unix::fs::chown(&own, Some(QUBETEST_UID), Some(QUBETEST_UID)).unwrap();
    let cgroup_root = format!("qube-cli-nonroot-daemon-{}", std::process::id());
    let out = Command::new(QUBE)
        .arg("daemon")
        .arg("--socket")
        .arg(own.join("qube.sock"))
        .arg("--state-dir")
        .arg(own.join("state"))
        .arg("--cgroup-root")
        .arg(&cgroup_root)
        .uid(QUBETEST_UID)
        .gid(QUBETEST_UID)
        .current_dir("/")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with("qube: the daemon needs root"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty(), "no readiness line");
    assert_eq!(fs::read_dir(&own).unwrap().count(), 0);
    assert!(!root.path().join(&cgroup_root).exists());

    // The refusal comes before the daemon reads a request: to a client that sends none,
    // at once, where reading first would wait the daemon's 30 s request timeout.
    let socket = daemon.socket();
    let refusal = std::thread::spawn(move || {
        // SAFETY: the raw setresuid system call takes three integers and changes the
        // credentials of this thread only (glibc's setresuid would change every thread's);
        // the thread ends with them.
        let ret = unsafe {
            nix::libc::syscall(
                nix::libc::SYS_setresuid,
                QUBETEST_UID,
                QUBETEST_UID,
                QUBETEST_UID,
            )
        };
        assert_eq!(ret, 0, "{}", std::io::Error::last_os_error());
        let conn = std::os::unix::net::UnixStream::connect(socket).unwrap();
        // A bound for the failure case only: the refusal is written as soon as the
        // daemon accepts the connection.
        conn.set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let mut line = String::new();
        BufReader::new(&conn).read_line(&mut line).map(|_| line)
    })
    .join()
    .unwrap();
    let refusal = refusal.expect("the daemon answers a client that sent nothing");
    assert!(refusal.contains("uid 1000"), "{refusal}");
    daemon.stop();
}

#[test]
fn a_restarted_daemon_adopts_running_containers_and_removes_orphans() {
    let Some(root) = qube_testkit::require_vm!() else {
        return;
    };
    let mut daemon = Daemon::start(&root, "restart");
    daemon.ok(&["image", "import", "alpine", "--busybox"]);
    let id = daemon
        .ok(&[
            "run",
            "--name",
            "survivor",
            "--image",
            "alpine",
            "--cmd",
            "echo started; exec sleep 600",
        ])
        .trim()
        .to_owned();
    let before = daemon.json(&["info", &id, "--json"]);
    let pid = before["pid"].as_u64().unwrap();

    daemon.crash();
    // A cgroup no record owns, with a process in it, as a crash mid-start could leave.
    let orphan = Cgroup::open(daemon.cgroups())
        .unwrap()
        .create("orphan")
        .unwrap()
        .persist();
    let mut stray = qube_testkit::Proc::spawn_in(&orphan, qube_testkit::Work::Pause);
    daemon.spawn();

    let list = daemon.json(&["list", "--json"]);
    let listed = &list.as_array().unwrap()[..];
    assert_eq!(listed.len(), 1, "{list}");
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["status"]["state"], "running");
    assert_eq!(listed[0]["pid"].as_u64(), Some(pid));
    assert!(process_exists(pid));
    assert!(
        !daemon.cgroups().join("orphan").exists(),
        "the orphan cgroup is removed"
    );
    assert!(matches!(
        stray.wait(),
        nix::sys::wait::WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGKILL, _)
    ));

    daemon.ok(&["stop", "survivor", "--timeout", "5"]);
    assert!(!daemon.cgroups().join(&id).exists());
    assert!(!process_exists(pid));
    // Output written before the crash, or held in the pipe while no daemon ran, is kept.
    assert_eq!(daemon.ok(&["logs", "survivor"]), "started\n");
    daemon.stop();
}

#[test]
fn exit_codes_are_known_for_containers_that_end_while_the_daemon_is_down() {
    let Some(root) = qube_testkit::require_vm!() else {
        return;
    };
    let mut daemon = Daemon::start(&root, "exitcodes");
    daemon.ok(&["image", "import", "alpine", "--busybox"]);
    // Each container waits on a fifo of the test's, so the test decides when it ends.
    let gates = Gates::new(&daemon);
    let run = |name: &str, code: u8| {
        let gate = gates.add(name);
        let script = format!("read word < /sync/{name}; exit {code}");
        let volume = gates.volume.as_str();
        daemon.ok(&[
            "run", "--name", name, "--volume", volume, "--image", "alpine", "--cmd", &script,
        ]);
        gate
    };
    let while_down = run("while-down", 5);
    let after_restart = run("after-restart", 6);
    let pid = daemon.json(&["info", "while-down", "--json"])["pid"]
        .as_u64()
        .unwrap();

    daemon.crash();
    Gates::open(&while_down);
    qube_testkit::wait_for_exit(u32::try_from(pid).unwrap());
    daemon.spawn();

    // Ended unwatched: its pid 1 left the code in the container's state directory.
    let info = daemon.ok(&["info", "while-down"]);
    assert!(info.contains("Status:      exited with code 5"), "{info}");
    // Adopted, and its code read from the same file when it ends.
    let info = daemon.ok(&["info", "after-restart"]);
    assert!(info.contains("Status:      running"), "{info}");
    Gates::open(&after_restart);
    assert_eq!(
        daemon.ok(&["wait", "after-restart"]),
        "exited with code 6\n"
    );
    let list = daemon.ok(&["list"]);
    assert!(!list.contains("(?)"), "{list}");
    daemon.stop();
}

#[test]
fn a_restarted_daemon_restarts_by_how_containers_ended_while_it_was_down() {
    let Some(root) = qube_testkit::require_vm!() else {
        return;
    };
    let mut daemon = Daemon::start(&root, "downpolicy");
    daemon.ok(&["image", "import", "alpine", "--busybox"]);
    let gates = Gates::new(&daemon);
    let data = daemon.dir.path().join("data");
    fs::create_dir(&data).unwrap();
    let volumes = format!("{}:/data", data.display());
    // Each ends when its gate opens: "failing" with 1 on its first run only, "done" with 0.
    let run = |name: &str, script: &str| {
        let gate = gates.add(name);
        daemon.ok(&[
            "run",
            "--name",
            name,
            "--restart",
            "on-failure",
            "--volume",
            &gates.volume,
            "--volume",
            &volumes,
            "--image",
            "alpine",
            "--cmd",
            script,
        ]);
        let pid = daemon.json(&["info", name, "--json"])["pid"]
            .as_u64()
            .unwrap();
        (gate, u32::try_from(pid).unwrap())
    };
    let failing = run(
        "failing",
        "if [ -e /data/failed ]; then echo again; exit 0; fi; read w < /sync/failing; touch /data/failed; exit 1",
    );
    let done = run("done", "read w < /sync/done; exit 0");

    daemon.crash();
    for (gate, pid) in [&failing, &done] {
        Gates::open(gate);
        qube_testkit::wait_for_exit(*pid);
    }
    daemon.spawn();

    // The failure is restarted by its policy; its second run succeeds.
    assert_eq!(daemon.ok(&["wait", "failing"]), "exited with code 0\n");
    // The exit 0 is no failure: it stays ended (a second run would be running by now,
    // held at its gate).
    let view = daemon.json(&["info", "done", "--json"]);
    assert_eq!(view["status"]["state"], "exited", "{view}");
    assert_eq!(view["status"]["code"], 0, "{view}");
    assert_eq!(view["restart_count"], 0, "{view}");
    // The restart is counted, and the second run's output logged.
    let view = daemon.json(&["info", "failing", "--json"]);
    assert_eq!(view["restart_count"], 1, "{view}");
    assert_eq!(daemon.ok(&["logs", "failing"]), "again\n");
    daemon.stop();
}

#[test]
fn tarballs_reaching_outside_are_refused_and_write_failures_are_the_machines() {
    let Some(root) = qube_testkit::require_vm!() else {
        return;
    };
    let mut daemon = Daemon::start(&root, "evil");
    let dir = daemon.dir.path().to_owned();
    // Where the symlink below leads from the image's staging directory
    // (`state/images/.import-*/rootfs/link`): a followed link would write here.
    let outside = dir.join("outside");
    fs::create_dir(&outside).unwrap();
    let absolute = format!("/qube-cli-escaped-{}", std::process::id());
    let passwd_links = || fs::metadata("/etc/passwd").unwrap().nlink();
    let links_before = passwd_links();
    let file = tar::EntryType::Regular;
    let (symlink, hardlink) = (tar::EntryType::Symlink, tar::EntryType::Link);
    let cases: [(&str, &[TarEntry<'_>], &str); 5] = [
        ("dotdot", &[("../../escaped", file, "", b"pwned\n")], "`..`"),
        (
            "absolute",
            &[(&absolute, file, "", b"pwned\n")],
            "is an absolute path",
        ),
        (
            "symlink",
            &[
                ("link", symlink, "../../../../outside", b""),
                ("link/pwned", file, "", b"pwned\n"),
            ],
            "points outside the image",
        ),
        (
            "hardlink",
            &[("passwd", hardlink, "/etc/passwd", b"")],
            "is an absolute path",
        ),
        (
            "hardlink-up",
            &[("passwd", hardlink, "../../../../../etc/passwd", b"")],
            "`..`",
        ),
    ];
    for (name, entries, says) in cases {
        let tarball = dir.join(format!("{name}.tar"));
        raw_tarball(&tarball, entries);
        let out = daemon.qube(&["image", "import", name, tarball.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stderr(&out));
        assert!(stderr(&out).contains(says), "{name}: {}", stderr(&out));
    }
    for place in [&dir, &daemon.state(), &daemon.state().join("images")] {
        assert!(!place.join("escaped").exists(), "{}", place.display());
    }
    assert!(!Path::new(&absolute).exists());
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    assert_eq!(passwd_links(), links_before, "/etc/passwd got a hard link");
    assert_eq!(daemon.json(&["images", "--json"]), serde_json::json!([]));
    assert_eq!(
        fs::read_dir(daemon.state().join("images")).unwrap().count(),
        0
    );

    // Not a tarball: the input's fault.
    let junk = dir.join("junk.txt");
    fs::write(&junk, "just some text, not an archive\n".repeat(40)).unwrap();
    let out = daemon.qube(&["image", "import", "junk", junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("rootfs tarball"), "{}", stderr(&out));

    // A full disk: this machine's failure, not the archive's.
    let images = daemon.state().join("images");
    nix::mount::mount(
        Some("tmpfs"),
        &images,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=256k,mode=0700"),
    )
    .unwrap();
    let big = dir.join("big.tar");
    raw_tarball(&big, &[("big", file, "", &vec![0u8; 1 << 20])]);
    let out = daemon.qube(&["image", "import", "big", big.to_str().unwrap()]);
    let refused = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{refused}");
    assert!(refused.contains("No space left on device"), "{refused}");
    assert!(!refused.contains("rootfs tarball"), "{refused}");
    assert_eq!(
        fs::read_dir(&images).unwrap().count(),
        0,
        "the staging is removed"
    );
    nix::mount::umount2(&images, nix::mount::MntFlags::empty()).unwrap();
    daemon.stop();
}

/// A tar entry: path, type, link target, data.
type TarEntry<'a> = (&'a str, tar::EntryType, &'a str, &'a [u8]);

/// A plain tarball of entries with any path or link target, which `tar::Builder`'s own
/// checks would refuse to write.
fn raw_tarball(path: &Path, entries: &[TarEntry<'_>]) {
    let mut builder = tar::Builder::new(Vec::new());
    for &(name, kind, link, data) in entries {
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        header.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(kind);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_cksum();
        builder.append(&header, data).unwrap();
    }
    fs::write(path, builder.into_inner().unwrap()).unwrap();
}

#[test]
fn cpu_and_pid_limits_read_only_volumes_and_isolation_are_applied() {
    let Some(root) = qube_testkit::require_vm!() else {
        return;
    };
    let mut daemon = Daemon::start(&root, "limits");
    daemon.ok(&["image", "import", "alpine", "--busybox"]);
    let gates = Gates::new(&daemon);
    let gate = gates.add("done");
    let shared = daemon.dir.path().join("shared");
    fs::create_dir(&shared).unwrap();
    fs::write(shared.join("hello"), "from the host\n").unwrap();
    let read_only = format!("{}:/data:ro", shared.display());
    let id = daemon
        .ok(&[
            "run",
            "--name",
            "limited",
            "--cpus",
            "1.5",
            "--pids",
            "256",
            "--isolated",
            "--volume",
            &read_only,
            "--volume",
            &gates.volume,
            "--image",
            "alpine",
            "--cmd",
            "cat /data/hello; touch /data/new 2>&1 || echo refused; \
             echo \"net: $(sed -n '3,$p' /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\\n' ' ')\"; \
             read w < /sync/done",
        ])
        .trim()
        .to_owned();
    let cgroup = daemon.cgroups().join(&id);
    assert_eq!(read_trimmed(&cgroup.join("cpu.max")), "150000 100000");
    assert_eq!(read_trimmed(&cgroup.join("pids.max")), "256");

    let info = daemon.ok(&["info", "limited"]);
    let pids = info
        .lines()
        .find_map(|l| l.strip_prefix("PIDs:        "))
        .unwrap_or_else(|| panic!("{info}"));
    let (count, max) = pids.split_once(" / ").unwrap_or_else(|| panic!("{info}"));
    assert!(count.parse::<u64>().unwrap() >= 1, "{info}");
    assert_eq!(max, "256", "{info}");
    let cpu = info.lines().find(|l| l.starts_with("CPU:")).unwrap();
    assert!(cpu.ends_with("s used, limit 1.50 CPUs"), "{info}");

    let pid = daemon.json(&["info", "limited", "--json"])["pid"]
        .as_u64()
        .unwrap();
    assert_ne!(
        fs::read_link(format!("/proc/{pid}/ns/net")).unwrap(),
        fs::read_link("/proc/self/ns/net").unwrap(),
        "--isolated gives a network namespace of its own"
    );

    Gates::open(&gate);
    assert_eq!(daemon.ok(&["wait", "limited"]), "exited with code 0\n");
    let logs = daemon.ok(&["logs", "limited"]);
    assert!(logs.starts_with("from the host\n"), "{logs}");
    assert!(logs.contains("Read-only file system\nrefused\n"), "{logs}");
    assert!(logs.ends_with("net: lo \n"), "only loopback: {logs}");
    assert!(!shared.join("new").exists());
    daemon.stop();
}

#[test]
fn the_restart_policy_starts_a_failed_container_again() {
    let Some(root) = qube_testkit::require_vm!() else {
        return;
    };
    let mut daemon = Daemon::start(&root, "restartpolicy");
    daemon.ok(&["image", "import", "alpine", "--busybox"]);
    let data = daemon.dir.path().join("data");
    fs::create_dir(&data).unwrap();
    let volume = format!("{}:/data", data.display());
    daemon.ok(&[
        "run",
        "--name",
        "flaky",
        "--restart",
        "on-failure",
        "--volume",
        &volume,
        "--image",
        "alpine",
        "--cmd",
        "if [ -e /data/ran ]; then echo second; exit 0; fi; touch /data/ran; echo first; exit 1",
    ]);
    // `wait` returns once the container ended for good, restarts included.
    assert_eq!(daemon.ok(&["wait", "flaky"]), "exited with code 0\n");
    let view = daemon.json(&["info", "flaky", "--json"]);
    assert_eq!(view["restart_count"], 1, "{view}");
    assert_eq!(daemon.ok(&["logs", "flaky"]), "first\nsecond\n");
    assert!(
        data.join("ran").exists(),
        "the volume is the host's directory"
    );
    daemon.stop();
}

#[test]
fn a_refused_rm_leaves_the_restart_policy_in_force() {
    let Some(root) = qube_testkit::require_vm!() else {
        return;
    };
    let mut daemon = Daemon::start(&root, "refusedrm");
    daemon.ok(&["image", "import", "alpine", "--busybox"]);
    let gates = Gates::new(&daemon);
    let gate = gates.add("fail");
    let data = daemon.dir.path().join("data");
    fs::create_dir(&data).unwrap();
    let volume = format!("{}:/data", data.display());
    daemon.ok(&[
        "run",
        "--name",
        "kept",
        "--restart",
        "on-failure",
        "--volume",
        &gates.volume,
        "--volume",
        &volume,
        "--image",
        "alpine",
        "--cmd",
        "if [ -e /data/failed ]; then exit 0; fi; read w < /sync/fail; touch /data/failed; exit 1",
    ]);
    let refused = daemon.qube(&["rm", "kept"]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("is running"),
        "{}",
        stderr(&refused)
    );
    let view = daemon.json(&["info", "kept", "--json"]);
    assert_eq!(view["stop_requested"], false, "{view}");

    Gates::open(&gate);
    assert_eq!(daemon.ok(&["wait", "kept"]), "exited with code 0\n");
    let view = daemon.json(&["info", "kept", "--json"]);
    assert_eq!(view["restart_count"], 1, "{view}");
    daemon.ok(&["rm", "kept"]);
    daemon.stop();
}

#[test]
fn containers_outlive_the_daemon_unless_it_is_told_to_stop_them() {
    let Some(root) = qube_testkit::require_vm!() else {
        return;
    };
    let mut daemon = Daemon::start(&root, "exit");
    daemon.ok(&["image", "import", "alpine", "--busybox"]);
    let id = daemon
        .ok(&["run", "--image", "alpine", "--cmd", "sleep 600"])
        .trim()
        .to_owned();
    let pid = daemon.json(&["info", &id, "--json"])["pid"]
        .as_u64()
        .unwrap();

    daemon.stop();
    assert!(
        process_exists(pid),
        "SIGTERM to the daemon leaves the container running"
    );
    assert!(daemon.cgroups().join(&id).exists());

    daemon.flags = vec!["--stop-containers-on-exit"];
    daemon.spawn();
    let view = daemon.json(&["info", &id, "--json"]);
    assert_eq!(view["status"]["state"], "running", "{view}");
    assert_eq!(view["pid"].as_u64(), Some(pid));
    daemon.stop();
    assert!(!process_exists(pid), "--stop-containers-on-exit stops it");
    assert!(!daemon.cgroups().join(&id).exists());
    let record = daemon
        .state()
        .join("containers")
        .join(&id)
        .join("record.json");
    let record: Value = serde_json::from_str(&fs::read_to_string(record).unwrap()).unwrap();
    assert_ne!(record["status"]["state"], "running", "{record}");
}

#[test]
fn kill_signals_rm_forces_images_stay_untouched_and_go_only_when_unused() {
    let Some(root) = qube_testkit::require_vm!() else {
        return;
    };
    let mut daemon = Daemon::start(&root, "kill");
    daemon.ok(&["image", "import", "alpine", "--busybox"]);
    let run = |name: &str| {
        daemon.ok(&[
            "run",
            "--name",
            name,
            "--image",
            "alpine",
            "--cmd",
            "echo changed > /etc/motd; rm /bin/ls; exec sleep 600",
        ]);
    };
    run("hup");
    run("killed");
    run("forced");

    daemon.ok(&["kill", "hup", "--signal", "HUP"]);
    assert_eq!(daemon.ok(&["wait", "hup"]), "killed by signal 1 (SIGHUP)\n");
    daemon.ok(&["kill", "killed"]);
    let info = daemon.ok(&["info", "killed"]);
    assert!(
        info.contains("Status:      killed by signal 9 (SIGKILL)"),
        "{info}"
    );

    let running = daemon.qube(&["rm", "forced"]);
    assert_eq!(running.status.code(), Some(1), "{}", stderr(&running));
    assert!(
        stderr(&running).contains("is running"),
        "{}",
        stderr(&running)
    );
    let forced = daemon.json(&["info", "forced", "--json"]);
    daemon.ok(&["rm", "-f", "forced"]);
    let id = forced["id"].as_str().unwrap();
    assert!(!daemon.cgroups().join(id).exists());
    assert!(!daemon.state().join("containers").join(id).exists());
    let names: Vec<String> = daemon
        .json(&["list", "--json"])
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["hup", "killed"]);

    // Each container wrote into its own layer, never into the image.
    let image = daemon.state().join("images/alpine/rootfs");
    assert!(!image.join("etc/motd").exists());
    assert!(fs::symlink_metadata(image.join("bin/ls")).is_ok());

    // An image stays while any container, even a stopped one, was made from it.
    let in_use = daemon.qube(&["image", "rm", "alpine"]);
    assert_eq!(in_use.status.code(), Some(1), "{}", stderr(&in_use));
    assert!(
        stderr(&in_use).contains("is used by 2 container(s)"),
        "{}",
        stderr(&in_use)
    );
    assert!(image.exists());
    daemon.ok(&["rm", "hup"]);
    daemon.ok(&["rm", "killed"]);
    assert_eq!(daemon.ok(&["image", "rm", "alpine"]), "alpine\n");
    assert!(!daemon.state().join("images/alpine").exists());
    assert_eq!(daemon.json(&["images", "--json"]), serde_json::json!([]));
    let unknown = daemon.qube(&["image", "rm", "alpine"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", stderr(&unknown));
    assert!(
        stderr(&unknown).contains("unknown image"),
        "{}",
        stderr(&unknown)
    );
    let gone = daemon.qube(&["run", "--image", "alpine", "--cmd", "true"]);
    assert_eq!(gone.status.code(), Some(2), "{}", stderr(&gone));
    daemon.stop();
}

#[test]
fn a_container_whose_cgroup_cannot_be_made_does_not_start() {
    let Some(root) = qube_testkit::require_vm!() else {
        return;
    };
    let mut daemon = Daemon::start(&root, "nocgroup");
    daemon.ok(&["image", "import", "alpine", "--busybox"]);
    // The kernel refuses every new cgroup below the root.
    fs::write(daemon.cgroups().join("cgroup.max.descendants"), "0").unwrap();
    let out = daemon.qube(&["run", "--image", "alpine", "--cmd", "sleep 600"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("cannot start container") && stderr(&out).contains("cgroup"),
        "{}",
        stderr(&out)
    );
    assert_eq!(daemon.json(&["list", "--json"]), serde_json::json!([]));
    assert_eq!(
        fs::read_dir(daemon.state().join("containers"))
            .unwrap()
            .count(),
        0
    );
    fs::write(daemon.cgroups().join("cgroup.max.descendants"), "max").unwrap();
    daemon.stop();
}
