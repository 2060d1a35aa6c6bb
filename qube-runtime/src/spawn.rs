//! Starting the container's first process inside its cgroup.
//!
//! * **clone3** with `CLONE_INTO_CGROUP | CLONE_PIDFD` (Linux 5.7+): the child is born
//!   in the container's cgroup, whose limits are already written, and the parent gets a
//!   pidfd atomically. Not one instruction of the child runs outside the cgroup.
//! * **fork fallback** where `clone3` answers ENOSYS (before 5.3) or E2BIG (before 5.7,
//!   no `cgroup` field): a raw `clone` with the same namespace flags and `CLONE_PIDFD`;
//!   the child blocks on a pipe until the parent has moved it into the cgroup, so it
//!   still runs none of its own code outside.
//! * The **error pipe** is `O_CLOEXEC`: `execve` closes it (end-of-file: success), or
//!   the child writes a [`Failure`](crate::child::Failure) before it exits.
//!
//! All signals are blocked around the clone, so no handler of the parent can run in the
//! child before [`child`](crate::child) resets the dispositions.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::libc::{self, c_int};
use nix::sys::signal::{kill, pthread_sigmask, SigSet, SigmaskHow, Signal};
use nix::unistd::Pid;
use qube_cgroup::Cgroup;

use crate::child::{self, ChildPlan, Failure, FAILURE_LEN};
use crate::error::{io_errno, Error, Result, Step};

/// How the container's first process is created.
///
/// [`Auto`](SpawnMethod::Auto) is right for every use; the others exist so that both
/// paths can be exercised (and measured) on a kernel that has `clone3`.
///
/// ```
/// use qube_runtime::{Command, SpawnMethod};
/// let cmd = Command::new("/bin/true").spawn_method(SpawnMethod::Fork);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SpawnMethod {
    /// `clone3` into the cgroup; the fork fallback where the kernel lacks it.
    #[default]
    Auto,
    /// `clone3` with `CLONE_INTO_CGROUP` only; fails on kernels before 5.7.
    Clone3,
    /// The fork fallback only: `clone`, then attach, then release the child.
    Fork,
}

/// The parts of a launch that are not the child's plan.
#[derive(Debug)]
pub(crate) struct Launch<'a> {
    pub(crate) cgroup: &'a Cgroup,
    /// `CLONE_NEW*` flags.
    pub(crate) namespaces: u64,
    pub(crate) method: SpawnMethod,
    /// What the parent writes for a new user namespace.
    pub(crate) id_maps: Option<IdMaps>,
    /// The paths errors name for steps outside the mount plan.
    pub(crate) program: PathBuf,
    pub(crate) cwd: PathBuf,
}

/// The id maps of a new user namespace, and what the kernel lets this parent write.
///
/// A parent with `CAP_SETUID` and `CAP_SETGID` in its own user namespace may map any
/// ids it has. Without them (an unprivileged, rootless parent), user_namespaces(7)
/// allows one line per map, mapping one id: the parent's own effective uid, and its own
/// effective gid only once `deny` has been written to `/proc/PID/setgroups`, so that the
/// container can never drop a supplementary group the parent was given (a group may be
/// the one an ACL denies).
#[derive(Debug)]
pub(crate) struct IdMaps {
    pub(crate) uid_map: String,
    pub(crate) gid_map: String,
    /// The parent has `CAP_SETUID` in its own user namespace.
    pub(crate) can_setuid: bool,
    /// The parent has `CAP_SETGID` in its own user namespace.
    pub(crate) can_setgid: bool,
}

impl IdMaps {
    /// Whether `deny` goes to `/proc/PID/setgroups` before `gid_map`; the container then
    /// cannot call `setgroups` and keeps the parent's supplementary groups.
    pub(crate) fn deny_setgroups(&self) -> bool {
        !self.can_setgid
    }
}

/// What the kernel refuses to a parent without `CAP_SETUID` (`CAP_SETGID`) in a map.
const UNPRIVILEGED_UID_MAP: &str = "a uid map beyond an unprivileged parent's own uid \
    (without CAP_SETUID a process may map only its own uid, one id; ranges such as \
    /etc/subuid's need a privileged helper like newuidmap)";
const UNPRIVILEGED_GID_MAP: &str = "a gid map beyond an unprivileged parent's own gid \
    (without CAP_SETGID a process may map only its own gid, one id; ranges such as \
    /etc/subgid's need a privileged helper like newgidmap)";
/// Why a parent cannot open its own child's map files.
const NOT_DUMPABLE: &str = "writing the id maps of a child of a process that is not \
    dumpable (after a change of its ids the kernel gives its and its children's \
    /proc/PID files to root; see PR_SET_DUMPABLE in prctl(2))";

/// A started container process.
#[derive(Debug)]
pub(crate) struct Spawned {
    pub(crate) pid: Pid,
    pub(crate) pidfd: OwnedFd,
    /// Read end of the reaper's status pipe (non-blocking).
    pub(crate) status: Option<OwnedFd>,
    pub(crate) method: SpawnMethod,
}

/// The parent's and the child's ends of one pipe, both close-on-exec.
struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

fn pipe(what: &'static str) -> Result<Pipe> {
    let (read, write) =
        nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| Error::os(Step::CreatePipe, what, e))?;
    Ok(Pipe { read, write })
}

/// Starts the child described by `plan` in `launch.cgroup`, and waits until it has
/// exec'd the workload or reported why it could not.
pub(crate) fn spawn(mut plan: ChildPlan, launch: &Launch<'_>) -> Result<Spawned> {
    let report = pipe("the error pipe")?;
    plan.report = report.write.as_raw_fd();
    let status = match plan.reaper {
        true => Some(pipe("the reaper's status pipe")?),
        false => None,
    };
    plan.status = status.as_ref().map(|p| p.write.as_raw_fd());
    let mut go = None;
    if launch.id_maps.is_some() || launch.method == SpawnMethod::Fork {
        go = Some(hold_child(&mut plan)?);
    }

    let (child, method) = clone_child(&mut plan, launch, &mut go)?;
    drop(report.write);
    let status = status.map(|p| {
        drop(p.write);
        p.read
    });

    if let Err(err) = release(&child, launch, go, method) {
        abandon(&child);
        return Err(err);
    }
    match read_report(report.read.as_fd()) {
        Ok(None) => {}
        Ok(Some(failure)) => {
            abandon(&child);
            return Err(child_error(&plan, launch, failure));
        }
        Err(err) => {
            abandon(&child);
            return Err(err);
        }
    }
    if let Some(fd) = &status {
        set_nonblocking(fd.as_fd());
    }
    Ok(Spawned {
        pid: child.pid,
        pidfd: child.pidfd,
        status,
        method,
    })
}

/// A pipe the child waits on before it does anything.
fn hold_child(plan: &mut ChildPlan) -> Result<Pipe> {
    let go = pipe("the start pipe")?;
    plan.wait_for_parent = Some(go.read.as_raw_fd());
    plan.parent_go_end = Some(go.write.as_raw_fd());
    Ok(go)
}

struct Child {
    pid: Pid,
    pidfd: OwnedFd,
}

/// clone3 (or the fork fallback), with every signal blocked around it.
fn clone_child(
    plan: &mut ChildPlan,
    launch: &Launch<'_>,
    go: &mut Option<Pipe>,
) -> Result<(Child, SpawnMethod)> {
    let _blocked = BlockedSignals::block_all()?;
    let cgroup_path = launch.cgroup.path();
    if launch.method != SpawnMethod::Fork {
        match clone3(plan, launch.cgroup.dir_fd(), launch.namespaces) {
            Ok(child) => return Ok((child, SpawnMethod::Clone3)),
            Err(Errno::ENOSYS | Errno::E2BIG) if launch.method == SpawnMethod::Auto => {}
            Err(errno) => return Err(clone_error(launch, cgroup_path, errno)),
        }
        if go.is_none() {
            *go = Some(hold_child(plan)?);
        }
    }
    fork(plan, launch.namespaces)
        .map(|child| (child, SpawnMethod::Fork))
        .map_err(|errno| clone_error(launch, cgroup_path, errno))
}

fn clone_error(launch: &Launch<'_>, cgroup: &std::path::Path, errno: Errno) -> Error {
    let user_ns = launch.namespaces & libc::CLONE_NEWUSER as u64 != 0;
    match errno {
        Errno::EPERM | Errno::ENOSPC | Errno::EUSERS | Errno::EINVAL if user_ns => {
            Error::Unsupported {
                step: Step::Clone,
                path: cgroup.to_owned(),
                what: "a user namespace (see user.max_user_namespaces and \
                       kernel.unprivileged_userns_clone)",
                errno,
            }
        }
        Errno::ENOSYS | Errno::E2BIG => Error::Unsupported {
            step: Step::Clone,
            path: cgroup.to_owned(),
            what: "clone3 with CLONE_INTO_CGROUP (Linux 5.7)",
            errno,
        },
        _ => Error::os(Step::Clone, cgroup, errno),
    }
}

/// `struct clone_args` of `linux/sched.h`, up to `cgroup` (`CLONE_ARGS_SIZE_VER2`).
#[repr(C)]
#[derive(Debug, Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

fn clone3(plan: &ChildPlan, cgroup: BorrowedFd<'_>, namespaces: u64) -> Result<Child, Errno> {
    let mut pidfd: c_int = -1;
    let args = CloneArgs {
        flags: namespaces | libc::CLONE_PIDFD as u64 | CLONE_INTO_CGROUP,
        pidfd: std::ptr::addr_of_mut!(pidfd) as u64,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..CloneArgs::default()
    };
    // SAFETY: args is a valid clone_args of the size passed; without CLONE_VM and with
    // no stack the child runs on a copy of this stack, like fork, and only calls
    // child::run, which never returns and follows that module's no-allocation rules.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            std::ptr::addr_of!(args),
            std::mem::size_of::<CloneArgs>(),
        )
    };
    parent_side(ret, pidfd, plan)
}

/// The fallback: a raw `clone` (not libc's `fork`, which runs atfork handlers and takes
/// locks the child could never release).
fn fork(plan: &ChildPlan, namespaces: u64) -> Result<Child, Errno> {
    let mut pidfd: c_int = -1;
    let flags = namespaces | libc::CLONE_PIDFD as u64 | libc::SIGCHLD as u64;
    // SAFETY: x86-64 and arm64 both take (flags, stack, parent_tid, ...); with
    // CLONE_PIDFD the kernel writes the pidfd through the parent_tid pointer. No stack
    // and no CLONE_VM: fork semantics, the child only calls child::run.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_clone,
            flags,
            0usize,
            std::ptr::addr_of_mut!(pidfd),
            0usize,
            0usize,
        )
    };
    parent_side(ret, pidfd, plan)
}

fn parent_side(ret: libc::c_long, pidfd: c_int, plan: &ChildPlan) -> Result<Child, Errno> {
    match ret {
        0 => child::run(plan),
        r if r < 0 => Err(Errno::last()),
        pid => {
            // SAFETY: the kernel returned this fresh pidfd to us alone.
            let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
            let pid = Pid::from_raw(pid as libc::pid_t);
            Ok(Child { pid, pidfd })
        }
    }
}

/// Does what must happen before the held child may go on, then lets it go.
fn release(
    child: &Child,
    launch: &Launch<'_>,
    go: Option<Pipe>,
    method: SpawnMethod,
) -> Result<()> {
    let Some(go) = go else { return Ok(()) };
    drop(go.read);
    if method == SpawnMethod::Fork {
        let pid = child.pid.as_raw() as u32;
        launch
            .cgroup
            .attach(pid)
            .map_err(|e| Error::cgroup(Step::AttachToCgroup, launch.cgroup.path(), e))?;
    }
    if let Some(maps) = &launch.id_maps {
        write_id_maps(child.pid, maps)?;
    }
    nix::unistd::write(&go.write, b"g")
        .map(drop)
        .map_err(|e| Error::os(Step::ReleaseChild, launch.cgroup.path(), e))
}

/// Writes the child's maps: `setgroups` first where it must be denied (the kernel takes
/// `deny` only while `gid_map` is unwritten), then `uid_map` and `gid_map`.
fn write_id_maps(pid: Pid, maps: &IdMaps) -> Result<()> {
    let mut writes = Vec::with_capacity(3);
    if maps.deny_setgroups() {
        writes.push(("setgroups", "deny", maps.can_setgid));
    }
    writes.push(("uid_map", maps.uid_map.as_str(), maps.can_setuid));
    writes.push(("gid_map", maps.gid_map.as_str(), maps.can_setgid));
    for (file, text, privileged) in writes {
        let path = PathBuf::from(format!("/proc/{pid}/{file}"));
        std::fs::write(&path, text).map_err(|e| id_map_error(file, path, &e, privileged))?;
    }
    Ok(())
}

/// Says why the kernel refused a write to an unprivileged parent; other refusals keep
/// their errno as an [`Error::Os`].
fn id_map_error(file: &str, path: PathBuf, e: &std::io::Error, privileged: bool) -> Error {
    let errno = io_errno(e);
    let what = match (errno, file) {
        _ if privileged => None,
        (Errno::EPERM, "uid_map") => Some(UNPRIVILEGED_UID_MAP),
        (Errno::EPERM, "gid_map") => Some(UNPRIVILEGED_GID_MAP),
        (Errno::EACCES, _) => Some(NOT_DUMPABLE),
        _ => None,
    };
    match what {
        Some(what) => Error::Unsupported {
            step: Step::WriteIdMap,
            path,
            what,
            errno,
        },
        None => Error::os(Step::WriteIdMap, path, errno),
    }
}

/// `Ok(None)` on end-of-file (the exec happened), the child's failure otherwise.
fn read_report(fd: BorrowedFd<'_>) -> Result<Option<Failure>> {
    let mut buf = [0u8; FAILURE_LEN];
    let mut got = 0;
    while got < FAILURE_LEN {
        match nix::unistd::read(fd, &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(Errno::EINTR) => {}
            Err(e) => return Err(Error::os(Step::ReadChildReport, "the error pipe", e)),
        }
    }
    match got {
        0 => Ok(None),
        FAILURE_LEN => Failure::from_bytes(buf)
            .map(Some)
            .ok_or_else(|| Error::os(Step::ReadChildReport, "the error pipe", Errno::EPROTO)),
        _ => Err(Error::os(
            Step::ReadChildReport,
            "the error pipe",
            Errno::EPROTO,
        )),
    }
}

/// The typed error for a child's failure, with the path the failed step was about.
fn child_error(plan: &ChildPlan, launch: &Launch<'_>, failure: Failure) -> Error {
    let index = usize::try_from(failure.index).unwrap_or(usize::MAX);
    let path = match failure.step {
        Step::Exec => launch.program.clone(),
        Step::Chdir => launch.cwd.clone(),
        step => match plan.fs.get(index) {
            Some(op) if op.step == step => op.shown.clone(),
            _ => launch.cgroup.path().to_owned(),
        },
    };
    Error::Child {
        step: failure.step,
        path,
        errno: Errno::from_raw(failure.errno),
    }
}

/// Kills a child that will not become a container, and reaps it.
fn abandon(child: &Child) {
    let _ = kill(child.pid, Signal::SIGKILL);
    reap(child.pid);
}

/// Waits for our child `pid` to end, returning its raw wait status.
pub(crate) fn reap(pid: Pid) -> Option<c_int> {
    loop {
        let mut status: c_int = 0;
        // SAFETY: waitpid writes the status to our stack variable.
        let ret = unsafe { libc::waitpid(pid.as_raw(), &mut status, libc::__WALL) };
        if ret == pid.as_raw() {
            return Some(status);
        }
        if Errno::last() != Errno::EINTR {
            return None;
        }
    }
}

fn set_nonblocking(fd: BorrowedFd<'_>) {
    let flags = fcntl(fd, FcntlArg::F_GETFL).unwrap_or(0);
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    let _ = fcntl(fd, FcntlArg::F_SETFL(flags));
}

/// Blocks every signal of the calling thread until dropped.
struct BlockedSignals {
    old: SigSet,
}

impl BlockedSignals {
    fn block_all() -> Result<BlockedSignals> {
        let mut old = SigSet::empty();
        pthread_sigmask(
            SigmaskHow::SIG_SETMASK,
            Some(&SigSet::all()),
            Some(&mut old),
        )
        .map_err(|e| Error::os(Step::Clone, "the signal mask", e))?;
        Ok(BlockedSignals { old })
    }
}

impl Drop for BlockedSignals {
    fn drop(&mut self) {
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.old), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(errno: c_int) -> std::io::Error {
        std::io::Error::from_raw_os_error(errno)
    }

    #[test]
    fn a_map_refused_to_an_unprivileged_parent_says_why() {
        let path = PathBuf::from("/proc/7/uid_map");
        let err = id_map_error("uid_map", path.clone(), &refusal(libc::EPERM), false);
        assert!(
            matches!(
                &err,
                Error::Unsupported { step: Step::WriteIdMap, path: p, errno: Errno::EPERM, .. }
                    if *p == path
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("newuidmap"), "{err}");
        let err = id_map_error("gid_map", path.clone(), &refusal(libc::EPERM), false);
        assert!(err.to_string().contains("own gid"), "{err}");
    }

    #[test]
    fn other_map_refusals_keep_their_errno() {
        let path = PathBuf::from("/proc/7/gid_map");
        let err = id_map_error("gid_map", path.clone(), &refusal(libc::EPERM), true);
        assert!(
            matches!(
                err,
                Error::Os {
                    errno: Errno::EPERM,
                    ..
                }
            ),
            "{err:?}"
        );
        let err = id_map_error("gid_map", path, &refusal(libc::EINVAL), false);
        assert!(
            matches!(
                err,
                Error::Os {
                    errno: Errno::EINVAL,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    #[test]
    fn setgroups_is_denied_exactly_without_cap_setgid() {
        let maps = |can_setgid| IdMaps {
            uid_map: String::new(),
            gid_map: String::new(),
            can_setuid: true,
            can_setgid,
        };
        assert!(maps(false).deny_setgroups());
        assert!(!maps(true).deny_setgroups());
    }
}
