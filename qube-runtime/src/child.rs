//! Everything the container's first process does between `clone` and `execve`.
//!
//! # Rules for this file
//!
//! The child is a copy of *one* thread of a possibly multi-threaded parent. Any lock
//! another thread held at the moment of the clone (the allocator's, stdio's, the
//! environment's) stays locked forever in the child. So from the clone to the exec this
//! code:
//!
//! * makes **raw system calls** (`nix::libc`) only, on data prepared before the clone in
//!   a [`ChildPlan`]: C strings, pointer arrays, the mount plan, the capability words;
//! * **never allocates**, formats, panics on purpose, takes a lock or touches Rust's
//!   stdio; buffers live on the stack;
//! * reports a failure as three numbers (step, index into the plan, errno) written in
//!   one `write(2)` to a close-on-exec pipe, then `_exit`s. The parent turns them into
//!   [`Error::Child`](crate::Error::Child) with the path from its own copy of the plan.
//!
//! A successful `execve` closes the pipe (it is `O_CLOEXEC`), which the parent reads as
//! end-of-file: success.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::RawFd;
use std::ptr;

use nix::errno::Errno;
use nix::libc::{self, c_char, c_int, c_ulong};

use crate::caps::CapsetArgs;
use crate::error::Step;
use crate::rootfs::{FsOp, PlannedOp};
use crate::status::{write_status_line, STATUS_LINE_MAX};

/// What the child reports on the error pipe: 12 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) step: Step,
    /// Index into the mount plan or the exec candidates; 0 otherwise.
    pub(crate) index: u32,
    pub(crate) errno: i32,
}

/// The size of a [`Failure`] on the pipe.
pub(crate) const FAILURE_LEN: usize = 12;

impl Failure {
    fn new(step: Step, index: u32, errno: i32) -> Failure {
        Failure { step, index, errno }
    }

    pub(crate) fn to_bytes(self) -> [u8; FAILURE_LEN] {
        let mut out = [0u8; FAILURE_LEN];
        out[0..4].copy_from_slice(&self.step.code().to_ne_bytes());
        out[4..8].copy_from_slice(&self.index.to_ne_bytes());
        out[8..12].copy_from_slice(&self.errno.to_ne_bytes());
        out
    }

    pub(crate) fn from_bytes(bytes: [u8; FAILURE_LEN]) -> Option<Failure> {
        let word = |i: usize| [bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]];
        Some(Failure {
            step: Step::from_code(u32::from_ne_bytes(word(0)))?,
            index: u32::from_ne_bytes(word(4)),
            errno: i32::from_ne_bytes(word(8)),
        })
    }
}

/// Everything the child needs, built before the clone. Pointers in `argv`/`envp` point
/// into the `CString`s kept alongside them, which do not move.
#[derive(Debug)]
pub(crate) struct ChildPlan {
    /// Read end of the "go" pipe: wait for one byte before doing anything (fork fallback,
    /// user-namespace maps).
    pub(crate) wait_for_parent: Option<RawFd>,
    /// The parent's write end of the "go" pipe, closed first so a dead parent means EOF.
    pub(crate) parent_go_end: Option<RawFd>,
    /// Write end of the error pipe.
    pub(crate) report: RawFd,
    /// Write end of the reaper's status pipe.
    pub(crate) status: Option<RawFd>,
    /// The exit status file the reaper also writes ([`Command::exit_status_file`](crate::Command::exit_status_file)).
    pub(crate) status_file: Option<RawFd>,
    /// In a new user namespace: become its (mapped) root before touching any file, since
    /// files cannot be created by an unmapped owner (EOVERFLOW).
    pub(crate) become_namespace_root: bool,
    /// Whether the id switches call `setgroups`: not where the parent denied it in the
    /// new user namespace (an unprivileged parent must, before it writes `gid_map`), as
    /// the kernel then refuses it with EPERM; the container keeps the parent's groups.
    pub(crate) set_groups: bool,
    pub(crate) unshare_cgroup: bool,
    pub(crate) hostname: Option<CString>,
    pub(crate) loopback_up: bool,
    pub(crate) fs: Vec<PlannedOp>,
    pub(crate) cwd: Option<CString>,
    pub(crate) stdio: [Option<RawFd>; 3],
    pub(crate) bounding_drop: u64,
    pub(crate) ids: Option<Ids>,
    pub(crate) capset: Option<CapsetArgs>,
    pub(crate) reaper: bool,
    pub(crate) exec: Exec,
}

/// User and group ids to switch to.
#[derive(Debug)]
pub(crate) struct Ids {
    pub(crate) uid: libc::uid_t,
    pub(crate) gid: libc::gid_t,
    pub(crate) groups: Vec<libc::gid_t>,
}

impl Ids {
    /// uid and gid 0, no supplementary groups.
    const NAMESPACE_ROOT: Ids = Ids {
        uid: 0,
        gid: 0,
        groups: Vec::new(),
    };
}

/// The `execve` arguments. `candidates` are full paths tried in order (the `PATH`
/// search done ahead of time for a bare program name).
#[derive(Debug)]
pub(crate) struct Exec {
    pub(crate) candidates: Vec<CString>,
    // Never read: they own the strings that `argv_ptrs` and `envp_ptrs` point into.
    #[allow(dead_code)]
    argv: Vec<CString>,
    #[allow(dead_code)]
    envp: Vec<CString>,
    pub(crate) argv_ptrs: Vec<*const c_char>,
    pub(crate) envp_ptrs: Vec<*const c_char>,
}

impl Exec {
    pub(crate) fn new(candidates: Vec<CString>, argv: Vec<CString>, envp: Vec<CString>) -> Exec {
        let argv_ptrs = null_terminated(&argv);
        let envp_ptrs = null_terminated(&envp);
        Exec {
            candidates,
            argv,
            envp,
            argv_ptrs,
            envp_ptrs,
        }
    }
}

fn null_terminated(strings: &[CString]) -> Vec<*const c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(ptr::null()))
        .collect()
}

/// The child's entry point right after the clone. Never returns.
pub(crate) fn run(plan: &ChildPlan) -> ! {
    let failure = match set_up_and_exec(plan) {
        Err(failure) => failure,
        Ok(never) => match never {},
    };
    report(plan.report, failure);
    exit(127)
}

fn set_up_and_exec(plan: &ChildPlan) -> Result<Infallible, Failure> {
    reset_signal_dispositions();
    wait_for_parent(plan)?;
    if plan.become_namespace_root {
        switch_ids(&Ids::NAMESPACE_ROOT, plan.set_groups)?;
    }
    if plan.unshare_cgroup {
        // SAFETY: unshare takes flags only.
        let ret = unsafe { libc::unshare(libc::CLONE_NEWCGROUP) };
        check(ret, Step::UnshareCgroupNs)?;
    }
    // SAFETY: setsid takes no arguments.
    check(unsafe { libc::setsid() }, Step::NewSession)?;
    if let Some(name) = &plan.hostname {
        let bytes = name.as_bytes();
        // SAFETY: pointer and length describe the prepared C string.
        let ret = unsafe { libc::sethostname(bytes.as_ptr().cast(), bytes.len()) };
        check(ret, Step::SetHostname)?;
    }
    if plan.loopback_up {
        bring_up_loopback()?;
    }
    apply_fs_plan(&plan.fs)?;
    if let Some(cwd) = &plan.cwd {
        // SAFETY: a prepared NUL-terminated path.
        check(unsafe { libc::chdir(cwd.as_ptr()) }, Step::Chdir)?;
    }
    set_up_stdio(&plan.stdio)?;
    mark_inherited_fds_cloexec()?;
    drop_bounding_set(plan.bounding_drop)?;
    if let Some(ids) = &plan.ids {
        switch_ids(ids, plan.set_groups)?;
    }
    if let Some(args) = &plan.capset {
        set_capabilities(args)?;
    }
    // SAFETY: prctl with integer arguments only.
    let ret = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1 as c_ulong, 0, 0, 0) };
    check(ret, Step::NoNewPrivs)?;
    if plan.reaper {
        return run_under_reaper(plan);
    }
    exec(&plan.exec)
}

/// Sets every signal's disposition back to the default (the parent's handlers are Rust
/// code that must not run here). The mask stays fully blocked, as the parent set it
/// before the clone, until just before `execve`.
fn reset_signal_dispositions() {
    // 64 signals on Linux; sigaction refuses the few libc reserves, which is fine.
    for signal in 1..=64 {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: a zeroed sigaction is SIG_DFL with an empty mask; EINVAL for the
        // signals libc reserves is harmless and ignored.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = libc::SIG_DFL;
            libc::sigaction(signal, &action, ptr::null_mut());
        }
    }
}

fn wait_for_parent(plan: &ChildPlan) -> Result<(), Failure> {
    let Some(fd) = plan.wait_for_parent else {
        return Ok(());
    };
    if let Some(parent_end) = plan.parent_go_end {
        // SAFETY: closing our copy of the parent's end; the parent keeps its own.
        unsafe { libc::close(parent_end) };
    }
    let mut byte = 0u8;
    loop {
        // SAFETY: reads one byte into a stack variable.
        let n = unsafe { libc::read(fd, ptr::addr_of_mut!(byte).cast(), 1) };
        match n {
            1 => break,
            // The parent gave up (and reports its own error): leave without a word.
            0 => exit(126),
            _ if Errno::last() == Errno::EINTR => continue,
            _ => return Err(Failure::new(Step::WaitForParent, 0, Errno::last_raw())),
        }
    }
    // SAFETY: our own copy of the read end.
    unsafe { libc::close(fd) };
    Ok(())
}

fn bring_up_loopback() -> Result<(), Failure> {
    let step = Step::BringUpLoopback;
    // SAFETY: socket takes integers only.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    check(sock, step)?;
    // SAFETY: ifreq is plain data; zeroed is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as c_char;
    }
    // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS read and write the ifreq on our stack.
    let result = unsafe {
        check(libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req), step).and_then(|_| {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            check(libc::ioctl(sock, libc::SIOCSIFFLAGS, &req), step)
        })
    };
    // SAFETY: the socket made above.
    unsafe { libc::close(sock) };
    result.map(drop)
}

fn apply_fs_plan(ops: &[PlannedOp]) -> Result<(), Failure> {
    for (index, planned) in ops.iter().enumerate() {
        if let Err(errno) = apply_fs_op(&planned.op) {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            return Err(Failure::new(planned.step, index, errno));
        }
    }
    Ok(())
}

fn apply_fs_op(op: &FsOp) -> Result<(), i32> {
    match op {
        FsOp::MakePrivate => {
            let flags = libc::MS_REC | libc::MS_PRIVATE;
            // SAFETY: static NUL-terminated strings and null pointers as mount(2) allows.
            sys(unsafe { libc::mount(ptr::null(), c"/".as_ptr(), ptr::null(), flags, ptr::null()) })
        }
        FsOp::Mount {
            source,
            target,
            fstype,
            flags,
            data,
        } => {
            let opt = |s: &Option<CString>| s.as_ref().map_or(ptr::null(), |s| s.as_ptr());
            // SAFETY: prepared C strings or null, as mount(2) allows for each argument.
            sys(unsafe {
                libc::mount(
                    opt(source),
                    target.as_ptr(),
                    opt(fstype),
                    *flags,
                    opt(data).cast(),
                )
            })
        }
        FsOp::Mkdir { path, mode } => {
            // SAFETY: a prepared path.
            match sys(unsafe { libc::mkdir(path.as_ptr(), *mode) }) {
                Err(libc::EEXIST) => Ok(()),
                other => other,
            }
        }
        FsOp::CreateFile { path } => {
            let flags = libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC | libc::O_NOCTTY;
            // SAFETY: a prepared path; the fd is closed right away.
            let fd = unsafe { libc::open(path.as_ptr(), flags, 0o644 as libc::c_uint) };
            sys(fd)?;
            // SAFETY: the fd just opened.
            unsafe { libc::close(fd) };
            Ok(())
        }
        FsOp::Symlink { target, link } => {
            // SAFETY: prepared paths.
            match sys(unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) }) {
                Err(libc::EEXIST) => Ok(()),
                other => other,
            }
        }
        FsOp::EnterRoot { root } => enter_root(root),
    }
}

/// `pivot_root(".", ".")` stacks the old root on top of the new one at `/`; detaching it
/// leaves the new root alone, with no directory for the old root needed in the rootfs.
fn enter_root(root: &CString) -> Result<(), i32> {
    // SAFETY: prepared and static NUL-terminated paths.
    unsafe {
        sys(libc::chdir(root.as_ptr()))?;
        sys(libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) as c_int)?;
        sys(libc::umount2(c".".as_ptr(), libc::MNT_DETACH))?;
        sys(libc::chdir(c"/".as_ptr()))
    }
}

fn set_up_stdio(stdio: &[Option<RawFd>; 3]) -> Result<(), Failure> {
    for (target, source) in (0..).zip(stdio) {
        let Some(source) = *source else { continue };
        // SAFETY: fds handed over by the parent; dup2 clears close-on-exec on the copy.
        let ret = unsafe { libc::dup2(source, target) };
        check(ret, Step::SetupStdio)?;
    }
    Ok(())
}

/// Every fd but stdio becomes close-on-exec, so nothing the parent had open (in any of
/// its threads) leaks into the workload. The error and status pipes are close-on-exec
/// already and keep working until then.
fn mark_inherited_fds_cloexec() -> Result<(), Failure> {
    // SAFETY: close_range takes integers only.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if ret == 0 {
        return Ok(());
    }
    // Before Linux 5.11: walk the fd table. /proc cannot be read here (it would
    // allocate), so walk up to the soft limit.
    // SAFETY: a stack rlimit filled by the kernel.
    let mut limit: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    let ret = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    check(ret, Step::CloseFds)?;
    let last = c_int::try_from(limit.rlim_cur.min(1 << 20)).unwrap_or(1 << 20);
    for fd in 3..last {
        // SAFETY: F_SETFD on a closed fd is a harmless EBADF.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

fn drop_bounding_set(bits: u64) -> Result<(), Failure> {
    for cap in 0..64u32 {
        if bits & (1u64 << cap) == 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments only.
        let ret = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as c_ulong, 0, 0, 0) };
        // EINVAL: a capability this kernel does not know; nothing to drop.
        if ret != 0 && Errno::last() != Errno::EINVAL {
            return Err(Failure::new(Step::DropBoundingSet, cap, Errno::last_raw()));
        }
    }
    Ok(())
}

/// Raw system calls, not libc's `setgroups`/`setresgid`/`setresuid`: glibc makes those
/// apply to every thread of the process, by signalling the threads it believes exist and
/// waiting for them under a lock. After `clone` from a multi-threaded parent those
/// threads are not in the child, and the lock may be held by one of them: the child
/// would hang. The kernel's calls change only the calling thread, the child's only one.
///
/// Without `set_groups` the supplementary groups are left as they are (the plan holds
/// none then: the builder refuses groups it could not set).
fn switch_ids(ids: &Ids, set_groups: bool) -> Result<(), Failure> {
    if set_groups {
        // SAFETY: pointer and length describe the prepared group list.
        let ret =
            unsafe { libc::syscall(libc::SYS_setgroups, ids.groups.len(), ids.groups.as_ptr()) };
        check(ret as c_int, Step::SetGroups)?;
    }
    // SAFETY: integer arguments only.
    let ret = unsafe { libc::syscall(libc::SYS_setresgid, ids.gid, ids.gid, ids.gid) };
    check(ret as c_int, Step::SetGid)?;
    // SAFETY: integer arguments only.
    let ret = unsafe { libc::syscall(libc::SYS_setresuid, ids.uid, ids.uid, ids.uid) };
    check(ret as c_int, Step::SetUid)?;
    Ok(())
}

fn set_capabilities(args: &CapsetArgs) -> Result<(), Failure> {
    // SAFETY: header and data are the prepared, correctly laid out capset arguments.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_capset,
            ptr::addr_of!(args.header),
            args.data.as_ptr(),
        )
    };
    check(ret as c_int, Step::SetCapabilities)?;
    // SAFETY: integer arguments only. EINVAL: no ambient capabilities before Linux 4.3.
    let ret = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as c_ulong,
            0,
            0,
            0,
        )
    };
    if ret != 0 && Errno::last() != Errno::EINVAL {
        return Err(Failure::new(Step::SetCapabilities, 0, Errno::last_raw()));
    }
    Ok(())
}

/// Room for the workload between its clone and its exec.
const WORKLOAD_STACK: usize = 64 * 1024;

/// Starts the workload; this process stays behind as pid 1 of the pid namespace, reaping
/// orphans and forwarding signals. Never returns but with an error.
///
/// The workload is cloned the way `posix_spawn` does it, `CLONE_VM | CLONE_VFORK` on a
/// stack of our own: no copy of the address space, and this process is suspended until
/// the workload has exec'd (or reported its failure and exited).
fn run_under_reaper(plan: &ChildPlan) -> Result<Infallible, Failure> {
    let mut stack = [0u8; WORKLOAD_STACK];
    let top = stack.as_mut_ptr_range().end as usize & !15;
    let flags = libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD;
    let arg = std::ptr::from_ref(plan).cast_mut().cast::<libc::c_void>();
    // SAFETY: the workload runs alone on `stack` (we are suspended until it execs or
    // exits, and `stack` outlives that), and only reads `plan`, which is alive.
    let pid = unsafe { libc::clone(exec_workload, top as *mut libc::c_void, flags, arg) };
    if pid < 0 {
        return Err(Failure::new(Step::ForkReaper, 0, Errno::last_raw()));
    }
    reap_forever(plan, pid)
}

/// The workload's side of [`run_under_reaper`]: exec, or report why not.
extern "C" fn exec_workload(arg: *mut libc::c_void) -> c_int {
    // SAFETY: `arg` is the plan passed to clone, alive while we share its memory.
    let plan = unsafe { &*arg.cast::<ChildPlan>().cast_const() };
    let failure = match exec(&plan.exec) {
        Err(failure) => failure,
        Ok(never) => match never {},
    };
    report(plan.report, failure);
    127
}

/// The signals pid 1 passes on to the workload: every one another process may send to
/// ask something of it (as tini forwards them). Not SIGCHLD, which is pid 1's own, nor
/// the signals of a fault (SIGSEGV, SIGBUS, ...), which only make sense for the process
/// that faulted; SIGKILL and SIGSTOP cannot be caught, and the cgroup's kill and freeze
/// reach every process anyway.
const FORWARDED: [c_int; 20] = [
    libc::SIGHUP,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGPIPE,
    libc::SIGALRM,
    libc::SIGTERM,
    libc::SIGCONT,
    libc::SIGTSTP,
    libc::SIGTTIN,
    libc::SIGTTOU,
    libc::SIGURG,
    libc::SIGXCPU,
    libc::SIGXFSZ,
    libc::SIGVTALRM,
    libc::SIGPROF,
    libc::SIGWINCH,
    libc::SIGIO,
    libc::SIGPWR,
];

/// Pid 1: hold nothing open but the status pipe and file, wait for signals (all are
/// blocked), pass the forwarded ones on, reap every child, and when the workload is gone
/// hand its wait status to the parent and exit with its code (128 + signal if it was
/// killed).
fn reap_forever(plan: &ChildPlan, workload: libc::pid_t) -> ! {
    close_all_but([plan.status, plan.status_file]);
    // SAFETY: sigset_t is plain data, filled by sigemptyset/sigaddset.
    let mut waited: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above, on our stack.
    unsafe {
        libc::sigemptyset(&mut waited);
        libc::sigaddset(&mut waited, libc::SIGCHLD);
        for signal in FORWARDED {
            libc::sigaddset(&mut waited, signal);
        }
    }
    loop {
        // SAFETY: the set on our stack; no siginfo wanted.
        let signal = unsafe { libc::sigwaitinfo(&waited, ptr::null_mut()) };
        if signal == libc::SIGCHLD {
            if let Some(status) = reap_children(workload) {
                record_status(plan.status_file, status);
                hand_over_status(plan.status, status);
            }
        } else if signal > 0 {
            // SAFETY: kill takes integers only; ESRCH if the workload is already gone.
            unsafe { libc::kill(workload, signal) };
        }
    }
}

/// Reaps every exited child; the workload's wait status if it was among them.
fn reap_children(workload: libc::pid_t) -> Option<c_int> {
    let mut found = None;
    loop {
        let mut status: c_int = 0;
        // SAFETY: waitpid writes to the stack variable.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return found;
        }
        if pid == workload {
            found = Some(status);
        }
    }
}

fn hand_over_status(fd: Option<RawFd>, status: c_int) -> ! {
    if let Some(fd) = fd {
        let bytes = status.to_ne_bytes();
        // SAFETY: writes 4 bytes from the stack; the parent reads them after wait.
        unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    exit(code)
}

/// Writes the workload's status line to the exit status file, where it outlives the
/// parent; the parent emptied the file before the clone.
fn record_status(fd: Option<RawFd>, status: c_int) {
    let Some(fd) = fd else { return };
    let mut line = [0u8; STATUS_LINE_MAX];
    let len = write_status_line(status, &mut line);
    // SAFETY: writes `len` bytes of the stack buffer at offset 0 of an fd we hold.
    unsafe { libc::pwrite(fd, line.as_ptr().cast(), len, 0) };
}

/// Closes every fd but those in `keep`.
fn close_all_but(keep: [Option<RawFd>; 2]) {
    let close = |first: u32, last: u32| {
        if first <= last {
            // SAFETY: close_range takes integers only; failure leaves fds open, harmlessly.
            unsafe { libc::syscall(libc::SYS_close_range, first, last, 0u32) };
        }
    };
    let mut kept = keep.map(|fd| fd.and_then(|fd| u32::try_from(fd).ok()));
    // In place on the stack: sort_unstable does not allocate.
    kept.sort_unstable();
    let mut first = 0;
    for fd in kept.into_iter().flatten() {
        if fd > first {
            close(first, fd - 1);
        }
        first = fd.saturating_add(1);
    }
    close(first, u32::MAX);
}

/// Unblocks signals and tries each candidate path like `execvp`: a later candidate is
/// tried after ENOENT, ENOTDIR or EACCES; EACCES is what is reported if nothing ran.
fn exec(exec: &Exec) -> Result<Infallible, Failure> {
    // SAFETY: sigset_t is plain data filled by sigemptyset.
    unsafe {
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, ptr::null_mut());
    }
    let mut reported = libc::ENOENT;
    for candidate in &exec.candidates {
        // SAFETY: prepared path and null-terminated pointer arrays into live CStrings.
        unsafe {
            libc::execve(
                candidate.as_ptr(),
                exec.argv_ptrs.as_ptr(),
                exec.envp_ptrs.as_ptr(),
            )
        };
        let errno = Errno::last_raw();
        match errno {
            libc::EACCES => reported = errno,
            libc::ENOENT | libc::ENOTDIR => {}
            _ => return Err(Failure::new(Step::Exec, 0, errno)),
        }
    }
    Err(Failure::new(Step::Exec, 0, reported))
}

fn report(fd: RawFd, failure: Failure) {
    let bytes = failure.to_bytes();
    // SAFETY: one write of 12 bytes from the stack: atomic on a pipe.
    unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
}

fn check(ret: c_int, step: Step) -> Result<c_int, Failure> {
    if ret < 0 {
        Err(Failure::new(step, 0, Errno::last_raw()))
    } else {
        Ok(ret)
    }
}

fn sys(ret: c_int) -> Result<(), i32> {
    if ret < 0 {
        Err(Errno::last_raw())
    } else {
        Ok(())
    }
}

fn exit(code: c_int) -> ! {
    // SAFETY: _exit skips atexit handlers and stdio flushing that belong to the parent.
    unsafe { libc::_exit(code) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_survive_the_pipe_format() {
        let failure = Failure::new(Step::PivotRoot, 7, libc::EINVAL);
        assert_eq!(Failure::from_bytes(failure.to_bytes()), Some(failure));
    }

    #[test]
    fn argv_pointers_end_with_null() {
        let exec = Exec::new(vec![], vec![c"sh".into(), c"-c".into()], vec![]);
        assert_eq!(exec.argv_ptrs.len(), 3);
        assert!(exec.argv_ptrs[2].is_null());
        assert_eq!(exec.envp_ptrs, [ptr::null()]);
    }
}
