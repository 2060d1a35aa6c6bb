//! Test helpers for qube: where a test may run, scratch cgroups, and child processes that
//! do a known thing (pause, allocate, spin, fork) once released.
//!
//! In the VM (`QUBE_VM=1`, set by `scripts/vm`) a test that cannot get what it needs
//! panics: a skipped test there is a failure. On the host it prints why and returns.
#![allow(clippy::unwrap_used)] // test support: a failed setup should abort the test loudly

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use qube_cgroup::{Cgroup, Controllers};

/// True inside the test VM.
pub fn in_vm() -> bool {
    std::env::var_os("QUBE_VM").is_some_and(|v| v == "1")
}

/// The controllers the VM's root distributes to its children.
pub const VM_CONTROLLERS: Controllers = Controllers::CPUSET
    .union(Controllers::CPU)
    .union(Controllers::IO)
    .union(Controllers::MEMORY)
    .union(Controllers::PIDS)
    .union(Controllers::HUGETLB);

/// The root of a pure cgroup v2 hierarchy with the controllers enabled, or `None` (with
/// the reason printed) on a host that has none. Panics in the VM when it is missing.
pub fn vm_root() -> Option<Cgroup> {
    let found = Cgroup::root().and_then(|root| {
        let enabled = root.subtree_control()?;
        Ok((root, enabled))
    });
    match found {
        Ok((root, enabled))
            if enabled.contains(Controllers::MEMORY | Controllers::CPU | Controllers::PIDS) =>
        {
            Some(root)
        }
        other => {
            let why = match other {
                Ok((root, enabled)) => {
                    format!("{} enables only [{enabled}]", root.path().display())
                }
                Err(e) => e.to_string(),
            };
            assert!(
                !in_vm(),
                "in the VM the cgroup v2 controllers must be there: {why}"
            );
            eprintln!("SKIP (needs the VM, scripts/vm test): {why}");
            None
        }
    }
}

/// The host's (or VM's) cgroup2 root, for core features that need no controller.
pub fn v2_root() -> Option<Cgroup> {
    match Cgroup::root() {
        Ok(root) => Some(root),
        Err(e) => {
            assert!(!in_vm(), "the VM must have cgroup2: {e}");
            eprintln!("SKIP (no cgroup2 mount): {e}");
            None
        }
    }
}

/// `let Some(root) = require_vm!() else { return };` in a test that needs controllers.
#[macro_export]
macro_rules! require_vm {
    () => {
        $crate::vm_root()
    };
}

static SERIAL: AtomicUsize = AtomicUsize::new(0);

/// A fresh, uniquely named child of `root` that is killed and removed on drop.
pub fn scratch(root: &Cgroup, test: &str) -> Cgroup {
    let n = SERIAL.fetch_add(1, Ordering::Relaxed);
    let name = format!("qube-test-{test}-{}-{n}", std::process::id());
    root.create(&name)
        .unwrap_or_else(|e| panic!("scratch cgroup {name}: {e}"))
}

/// What a [`Proc`] does once released.
#[derive(Debug, Clone, Copy)]
pub enum Work {
    /// Wait for signals forever.
    Pause,
    /// Exit at once with this code.
    Exit(i32),
    /// Map and touch this many bytes of anonymous memory, then pause.
    Alloc(usize),
    /// Burn CPU forever.
    Spin,
    /// Fork this many children (each pauses), then exit with the number of forks that failed.
    Fork(u8),
    /// Start a new session, fork a child that pauses, then pause.
    SetsidFork,
    /// Write to this many bytes of fresh anonymous memory, then stop itself (SIGSTOP), so
    /// [`Proc::wait_until_stopped`] returns when the memory is charged.
    AllocThenStop(usize),
}

/// A forked child held on a pipe until [`release`](Proc::release), so a test can put it
/// in a cgroup before it does anything. Killed and reaped on drop: no zombie is left.
#[derive(Debug)]
pub struct Proc {
    pid: Pid,
    go: Option<OwnedFd>,
    reaped: bool,
}

impl Proc {
    /// Forks a child that will do `work` once released.
    pub fn fork(work: Work) -> Proc {
        fork_held(move || child_work(work))
    }

    /// Forks, moves the child into `cg`, and releases it.
    pub fn spawn_in(cg: &Cgroup, work: Work) -> Proc {
        let mut p = Proc::fork(work);
        cg.attach(p.pid()).unwrap();
        p.release();
        p
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    /// Lets the child start its work.
    pub fn release(&mut self) {
        if let Some(fd) = self.go.take() {
            nix::unistd::write(&fd, b"g").unwrap();
        }
    }

    /// Waits for the child to end.
    pub fn wait(&mut self) -> WaitStatus {
        self.release();
        let status = waitpid(self.pid, None).unwrap();
        self.reaped = true;
        status
    }

    /// Releases the child and waits until it has stopped itself ([`stop_self`]): the
    /// event that says its work is done, without any timing.
    pub fn wait_until_stopped(&mut self) {
        self.release();
        let status = waitpid(self.pid, Some(nix::sys::wait::WaitPidFlag::WUNTRACED)).unwrap();
        assert!(
            matches!(status, WaitStatus::Stopped(_, Signal::SIGSTOP)),
            "the child did not get to stop itself: {status:?}"
        );
    }

    /// Sends a signal.
    pub fn signal(&self, signal: Signal) {
        let _ = kill(self.pid, signal);
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}

fn child_work(work: Work) -> ! {
    match work {
        Work::Pause => pause_forever(),
        Work::Exit(code) => exit(code),
        Work::Alloc(bytes) => {
            touch_anonymous(bytes);
            pause_forever()
        }
        Work::AllocThenStop(bytes) => {
            touch_anonymous(bytes);
            stop_self();
            pause_forever()
        }
        Work::Spin => {
            let mut x: u64 = 0;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        Work::Fork(n) => {
            let mut failed = 0;
            for _ in 0..n {
                // SAFETY: single-threaded child after fork; the grandchild only pauses.
                match unsafe { fork() } {
                    Ok(ForkResult::Child) => pause_forever(),
                    Ok(ForkResult::Parent { .. }) => {}
                    Err(_) => failed += 1,
                }
            }
            exit(failed)
        }
        Work::SetsidFork => {
            let _ = nix::unistd::setsid();
            // SAFETY: as above.
            let _ = unsafe { fork() };
            pause_forever()
        }
    }
}

/// Private anonymous memory, mapped and written with raw syscalls only, so a forked child
/// of the multi-threaded test process can use it.
#[derive(Debug)]
pub struct Anonymous {
    base: std::ptr::NonNull<std::ffi::c_void>,
    len: std::num::NonZeroUsize,
}

impl Anonymous {
    /// Maps `bytes` of private anonymous memory, of huge pages with `huge`; `None` when the
    /// kernel refuses.
    pub fn map(bytes: usize, huge: bool) -> Option<Anonymous> {
        use nix::sys::mman::{mmap_anonymous, MapFlags, ProtFlags};
        let len = std::num::NonZeroUsize::new(bytes)?;
        let mut flags = MapFlags::MAP_PRIVATE;
        if huge {
            flags |= MapFlags::MAP_HUGETLB;
        }
        let protection = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
        // SAFETY: a fresh private anonymous mapping aliases nothing.
        let base = unsafe { mmap_anonymous(None, len, protection, flags) }.ok()?;
        Some(Anonymous { base, len })
    }

    /// Writes `value` to one byte every `stride` bytes, so every page of that stride is
    /// faulted in (or, past memory.max, reclaimed and faulted again).
    pub fn touch(&self, stride: usize, value: u8) {
        let base = self.base.as_ptr().cast::<u8>();
        for offset in (0..self.len.get()).step_by(stride.max(1)) {
            // SAFETY: offset < len, inside the mapping; volatile so the write is not elided.
            unsafe { base.add(offset).write_volatile(value) };
        }
    }
}

impl Drop for Anonymous {
    fn drop(&mut self) {
        // SAFETY: the mapping is this value's own, and no reference into it outlives it.
        let _ = unsafe { nix::sys::mman::munmap(self.base, self.len.get()) };
    }
}

fn touch_anonymous(bytes: usize) {
    match Anonymous::map(bytes, false) {
        // Kept mapped: the child pauses holding it, so the cgroup keeps the charge.
        Some(memory) => {
            memory.touch(4096, 1);
            std::mem::forget(memory);
        }
        None => exit(99),
    }
}

/// Stops the calling process with SIGSTOP; for a forked child to say "done" to a parent
/// in [`Proc::wait_until_stopped`]. A raw syscall only.
pub fn stop_self() {
    // SAFETY: getpid and kill take and return integers only.
    unsafe { nix::libc::kill(nix::libc::getpid(), nix::libc::SIGSTOP) };
}

/// Pauses until killed; for forked children. A raw syscall only.
pub fn pause_forever() -> ! {
    loop {
        nix::unistd::pause();
    }
}

fn exit(code: i32) -> ! {
    // SAFETY: _exit is async-signal-safe and skips atexit handlers that a forked child must not run.
    unsafe { nix::libc::_exit(code) }
}

/// Blocks until process `pid` (not necessarily our child) has exited, on its pidfd,
/// which polls readable at the exit. Returns at once if it is already gone.
pub fn wait_for_exit(pid: u32) {
    // SAFETY: pidfd_open takes a pid and flags; the fd it returns is ours alone.
    let raw = unsafe { nix::libc::syscall(nix::libc::SYS_pidfd_open, pid, 0) };
    if raw < 0 {
        assert_eq!(
            nix::errno::Errno::last(),
            nix::errno::Errno::ESRCH,
            "pidfd_open {pid}"
        );
        return;
    }
    // SAFETY: a fresh fd from pidfd_open, owned by nothing else.
    let pidfd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw as i32) };
    let mut fds = [nix::poll::PollFd::new(
        pidfd.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    loop {
        match nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE) {
            Err(nix::errno::Errno::EINTR) => continue,
            result => return assert_eq!(result.unwrap(), 1),
        }
    }
}

/// Fills `dir` with a busybox root filesystem (busybox-static and its applet links).
pub fn busybox_rootfs(dir: &Path) -> std::io::Result<()> {
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| std::io::Error::other("busybox not found"))?;
    for sub in ["bin", "proc", "dev", "sys", "tmp", "etc", "root"] {
        std::fs::create_dir_all(dir.join(sub))?;
    }
    copy_executable(Path::new(busybox), &dir.join("bin/busybox"))?;
    let out = std::process::Command::new(busybox).arg("--list").output()?;
    for applet in String::from_utf8_lossy(&out.stdout).lines() {
        if applet != "busybox" {
            std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet))?;
        }
    }
    std::fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )?;
    std::fs::write(dir.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    Ok(())
}

/// Copies an executable in another process. A copy made here would hold a writable fd
/// on it, which a container forked by another test thread meanwhile inherits until it
/// closes its fds; exec of the copy then fails with ETXTBSY.
fn copy_executable(from: &Path, to: &Path) -> std::io::Result<()> {
    let status = std::process::Command::new("cp")
        .arg(from)
        .arg(to)
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "cp {} {}: {status}",
            from.display(),
            to.display()
        )))
    }
}

/// The open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// How many processes (zombies included) have this process as their parent.
pub fn children_of_self() -> usize {
    let me = std::process::id().to_string();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return 0;
    };
    procs
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            let after = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
            after.split_whitespace().nth(1) == Some(me.as_str())
        })
        .count()
}

/// utime + stime of a process, in clock ticks (from /proc/PID/stat).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_comm.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Forks a child that, once released, runs `work` and exits with its return value: for
/// work the [`Work`] variants do not cover (thrashing memory, faulting huge pages). `work`
/// runs in a forked copy of a multi-threaded test process, so it must only make raw
/// syscalls: no allocation, no locks, no panics.
pub fn fork_fn(work: fn() -> i32) -> Proc {
    fork_held(work)
}

/// Forks a child that waits for a byte (or EOF) on a pipe, then runs `then` and exits
/// with what it returns.
fn fork_held(then: impl FnOnce() -> i32) -> Proc {
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    // SAFETY: the child only reads the pipe and runs `then`, which by the contract of
    // `Proc::fork` and `fork_fn` makes raw syscalls only (read, mmap, fork, pause, _exit),
    // so no lock held by another thread of the test harness can be needed.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            drop(write_end);
            let mut byte = [0u8; 1];
            let _ = nix::unistd::read(read_end.as_fd(), &mut byte);
            exit(then())
        }
        ForkResult::Parent { child } => Proc {
            pid: child,
            go: Some(write_end),
            reaped: false,
        },
    }
}

/// [`fork_fn`], moved into `cg` and released.
pub fn spawn_fn_in(cg: &Cgroup, work: fn() -> i32) -> Proc {
    let mut p = fork_fn(work);
    cg.attach(p.pid()).unwrap();
    p.release();
    p
}
