//! [`Container`]: the handle on a running container.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::libc;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use qube_cgroup::{Bytes, Cgroup, Max};

use crate::error::{io_errno, Error, Result, Step};
use crate::spawn::{reap, SpawnMethod, Spawned};
use crate::status::ExitStatus;

/// How long [`Container::freeze`] and [`Container::thaw`] wait for the kernel.
///
/// ```
/// assert_eq!(qube_runtime::FREEZE_TIMEOUT.as_secs(), 10);
/// ```
pub const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`Container::stop`] waits for the cgroup to empty after SIGKILL.
///
/// ```
/// assert_eq!(qube_runtime::KILL_TIMEOUT.as_secs(), 30);
/// ```
pub const KILL_TIMEOUT: Duration = Duration::from_secs(30);

/// A running container: its first process (by pidfd) and its cgroup.
///
/// Dropping a container that was not [`detach`](Container::detach)ed kills every process
/// of its cgroup, reaps its first process and removes the cgroup; after
/// [`wait`](Container::wait) the drop still removes the cgroup (and anything left in it).
///
/// ```no_run
/// use std::time::Duration;
/// use qube_cgroup::Cgroup;
/// use qube_runtime::Command;
///
/// let parent = Cgroup::root()?.create("demo")?;
/// let mut c = Command::new("/bin/sleep").arg("60").cgroup(&parent, "sleeper").spawn()?;
/// println!("pid {} in {}", c.pid(), c.cgroup().path().display());
/// let status = c.stop(Duration::from_secs(5))?;
/// println!("{status}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Container {
    // Fields drop in this order: the first process is killed and reaped, the pipes are
    // closed, then the cgroup handle kills what is left and removes the directory.
    process: Process,
    stdin: Option<File>,
    stdout: Option<File>,
    stderr: Option<File>,
    cgroup: Cgroup,
}

/// The container's first process.
#[derive(Debug)]
struct Process {
    pid: Pid,
    pidfd: OwnedFd,
    /// The reaper's report of the workload's wait status (pid namespace only).
    status_pipe: Option<OwnedFd>,
    /// The reaper's exit status file, read at the end when there is no pipe (adopted).
    status_file: Option<PathBuf>,
    /// `memory.events` `oom_kill` when the container started.
    oom_kills_at_start: u64,
    /// Whether it is our child (false after [`Container::adopt`] by another process).
    ours: bool,
    exited: Option<ExitStatus>,
    detached: bool,
    method: SpawnMethod,
}

/// The parent's ends of piped stdio.
#[derive(Debug, Default)]
pub(crate) struct ParentStdio {
    pub(crate) stdin: Option<File>,
    pub(crate) stdout: Option<File>,
    pub(crate) stderr: Option<File>,
}

/// A container handed over to a supervisor by [`Container::detach`]: enough to
/// [`adopt`](Container::adopt) it again.
///
/// ```no_run
/// # use qube_runtime::Container;
/// # fn f(c: Container) -> Result<(), qube_runtime::Error> {
/// let detached = c.detach();
/// let again = Container::adopt(detached.pid, &detached.cgroup)?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detached {
    /// The first process's pid (in the caller's pid namespace).
    pub pid: u32,
    /// The container's cgroup directory, which is kept.
    pub cgroup: PathBuf,
}

/// Resource use of a container; a value is `None` when its controller is not enabled.
///
/// ```no_run
/// # fn f(c: &qube_runtime::Container) -> Result<(), qube_runtime::Error> {
/// let stats = c.stats()?;
/// println!("memory {:?} cpu {:?} pids {:?}", stats.memory_current, stats.cpu_usage, stats.pids_current);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// `memory.current`.
    pub memory_current: Option<Bytes>,
    /// `memory.max`.
    pub memory_max: Option<Max<Bytes>>,
    /// `memory.swap.current`.
    pub swap_current: Option<Bytes>,
    /// `memory.swap.max`.
    pub swap_max: Option<Max<Bytes>>,
    /// `usage_usec` of `cpu.stat`: CPU time used by every process, past and present.
    pub cpu_usage: Option<Duration>,
    /// `pids.current`.
    pub pids_current: Option<u64>,
}

/// What [`Container::output`] collected.
///
/// ```no_run
/// # fn f(c: qube_runtime::Container) -> Result<(), qube_runtime::Error> {
/// let out = c.output()?;
/// println!("{}: {}", out.status, String::from_utf8_lossy(&out.stdout));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// How the workload ended.
    pub status: ExitStatus,
    /// Everything it wrote to a piped stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to a piped stderr.
    pub stderr: Vec<u8>,
}

impl Container {
    pub(crate) fn new(
        spawned: Spawned,
        cgroup: Cgroup,
        stdio: ParentStdio,
        oom_kills: u64,
    ) -> Self {
        Container {
            process: Process {
                pid: spawned.pid,
                pidfd: spawned.pidfd,
                status_pipe: spawned.status,
                status_file: None,
                oom_kills_at_start: oom_kills,
                ours: true,
                exited: None,
                detached: false,
                method: spawned.method,
            },
            stdin: stdio.stdin,
            stdout: stdio.stdout,
            stderr: stdio.stderr,
            cgroup,
        }
    }

    /// Re-attaches to a container started earlier (by this or another process) and
    /// [`detach`](Container::detach)ed: opens a pidfd for `pid`, then checks that the
    /// process it refers to is in `cgroup` or below it, so a pid reused by an unrelated
    /// process is never trusted. The returned handle owns the cgroup like the original.
    ///
    /// ```no_run
    /// use qube_runtime::Container;
    /// let c = Container::adopt(4242, "/sys/fs/cgroup/qube/web")?;
    /// c.signal(nix::sys::signal::Signal::SIGHUP)?;
    /// # Ok::<(), qube_runtime::Error>(())
    /// ```
    pub fn adopt(pid: u32, cgroup: impl AsRef<Path>) -> Result<Container> {
        let path = cgroup.as_ref();
        let cgroup = Cgroup::open(path).map_err(|e| Error::cgroup(Step::Adopt, path, e))?;
        let raw =
            libc::pid_t::try_from(pid).map_err(|_| Error::os(Step::Adopt, path, Errno::ESRCH))?;
        // The pidfd pins the process: from here on a pid reuse cannot fool the check below.
        let pidfd =
            pidfd_open(raw).map_err(|e| Error::os(Step::Adopt, format!("/proc/{pid}"), e))?;
        if !holds_process(&cgroup, pid) {
            return Err(Error::NotInCgroup {
                pid,
                path: path.to_owned(),
            });
        }
        pidfd_send_signal(pidfd.as_fd(), 0)
            .map_err(|e| Error::os(Step::Adopt, format!("/proc/{pid}"), e))?;
        let oom_kills = oom_kills(&cgroup);
        Ok(Container {
            process: Process {
                pid: Pid::from_raw(raw),
                pidfd,
                status_pipe: None,
                status_file: None,
                oom_kills_at_start: oom_kills,
                ours: is_our_child(pid),
                exited: None,
                detached: false,
                method: SpawnMethod::Auto,
            },
            stdin: None,
            stdout: None,
            stderr: None,
            cgroup: cgroup.remove_on_drop(),
        })
    }

    /// Takes the workload's status, when this adopted container ends, from the exit
    /// status file its reaper writes ([`Command::exit_status_file`](crate::Command::exit_status_file)).
    /// Without it an adopted container that is not the caller's child ends with an
    /// [`ExitStatus::unknown`] status, since only a parent can collect one; a file that
    /// cannot be read leaves it so.
    ///
    /// ```no_run
    /// use qube_runtime::Container;
    /// let mut c = Container::adopt(4242, "/sys/fs/cgroup/qube/web")?
    ///     .read_exit_status_from("/var/lib/my-supervisor/web/exit-status");
    /// println!("{}", c.wait()?);
    /// # Ok::<(), qube_runtime::Error>(())
    /// ```
    pub fn read_exit_status_from(mut self, path: impl AsRef<Path>) -> Container {
        self.process.status_file = Some(path.as_ref().to_owned());
        self
    }

    /// The first process's pid, in the caller's pid namespace.
    ///
    /// ```no_run
    /// # fn f(c: &qube_runtime::Container) {
    /// assert!(c.pid() > 1);
    /// # }
    /// ```
    pub fn pid(&self) -> u32 {
        self.process.pid.as_raw() as u32
    }

    /// The first process's pidfd: it polls readable when the process exits.
    ///
    /// ```no_run
    /// # fn f(c: &qube_runtime::Container) {
    /// use std::os::fd::AsRawFd;
    /// assert!(c.pidfd().as_raw_fd() >= 0);
    /// # }
    /// ```
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.process.pidfd.as_fd()
    }

    /// The container's cgroup.
    ///
    /// ```no_run
    /// # fn f(c: &qube_runtime::Container) -> Result<(), qube_cgroup::Error> {
    /// println!("{:?}", c.cgroup().procs()?);
    /// # Ok(()) }
    /// ```
    pub fn cgroup(&self) -> &Cgroup {
        &self.cgroup
    }

    /// How the first process was created: [`SpawnMethod::Clone3`] or
    /// [`SpawnMethod::Fork`] (the fallback); [`SpawnMethod::Auto`] for an adopted one.
    ///
    /// ```no_run
    /// # fn f(c: &qube_runtime::Container) {
    /// println!("{:?}", c.spawn_method());
    /// # }
    /// ```
    pub fn spawn_method(&self) -> SpawnMethod {
        self.process.method
    }

    /// The write end of a piped stdin.
    ///
    /// ```no_run
    /// # fn f(c: &mut qube_runtime::Container) -> std::io::Result<()> {
    /// use std::io::Write;
    /// if let Some(stdin) = c.stdin() { stdin.write_all(b"hello\n")?; }
    /// # Ok(()) }
    /// ```
    pub fn stdin(&mut self) -> Option<&mut File> {
        self.stdin.as_mut()
    }

    /// The read end of a piped stdout.
    ///
    /// ```no_run
    /// # fn f(c: &mut qube_runtime::Container) -> std::io::Result<()> {
    /// use std::io::Read;
    /// let mut text = String::new();
    /// if let Some(out) = c.stdout() { out.read_to_string(&mut text)?; }
    /// # Ok(()) }
    /// ```
    pub fn stdout(&mut self) -> Option<&mut File> {
        self.stdout.as_mut()
    }

    /// The read end of a piped stderr.
    ///
    /// ```no_run
    /// # fn f(c: &mut qube_runtime::Container) -> std::io::Result<()> {
    /// use std::io::Read;
    /// let mut text = String::new();
    /// if let Some(err) = c.stderr() { err.read_to_string(&mut text)?; }
    /// # Ok(()) }
    /// ```
    pub fn stderr(&mut self) -> Option<&mut File> {
        self.stderr.as_mut()
    }

    /// Takes the write end of a piped stdin (dropping it sends end-of-file).
    ///
    /// ```no_run
    /// # fn f(c: &mut qube_runtime::Container) {
    /// drop(c.take_stdin());
    /// # }
    /// ```
    pub fn take_stdin(&mut self) -> Option<File> {
        self.stdin.take()
    }

    /// Takes the read end of a piped stdout.
    ///
    /// ```no_run
    /// # fn f(c: &mut qube_runtime::Container) {
    /// let out = c.take_stdout();
    /// # }
    /// ```
    pub fn take_stdout(&mut self) -> Option<File> {
        self.stdout.take()
    }

    /// Takes the read end of a piped stderr.
    ///
    /// ```no_run
    /// # fn f(c: &mut qube_runtime::Container) {
    /// let err = c.take_stderr();
    /// # }
    /// ```
    pub fn take_stderr(&mut self) -> Option<File> {
        self.stderr.take()
    }

    /// Waits for the first process to end. With a pid namespace it is the workload's
    /// status that is returned (the reaper hands it over), and the kernel has killed
    /// everything else in the namespace. Calling it again returns the same status.
    ///
    /// ```no_run
    /// # fn f(mut c: qube_runtime::Container) -> Result<(), qube_runtime::Error> {
    /// let status = c.wait()?;
    /// if status.oom_killed() { eprintln!("raise memory.max"); }
    /// # Ok(()) }
    /// ```
    pub fn wait(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.process.exited {
            return Ok(status);
        }
        let raw = if self.process.ours {
            let status = reap(self.process.pid);
            Some(status.ok_or_else(|| self.process_error(Step::Wait, Errno::last()))?)
        } else {
            self.wait_for_pidfd(None)?;
            None
        };
        Ok(self.record_exit(raw))
    }

    /// The exit status if the first process has ended, without blocking.
    ///
    /// ```no_run
    /// # fn f(mut c: qube_runtime::Container) -> Result<(), qube_runtime::Error> {
    /// if let Some(status) = c.try_wait()? { println!("{status}"); }
    /// # Ok(()) }
    /// ```
    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if let Some(status) = self.process.exited {
            return Ok(Some(status));
        }
        if !self.process.ours {
            if !self.wait_for_pidfd(Some(Duration::ZERO))? {
                return Ok(None);
            }
            return Ok(Some(self.record_exit(None)));
        }
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid writes the status to our stack variable.
        let ret = unsafe {
            libc::waitpid(
                self.process.pid.as_raw(),
                &mut status,
                libc::WNOHANG | libc::__WALL,
            )
        };
        match ret {
            0 => Ok(None),
            r if r < 0 => Err(self.process_error(Step::Wait, Errno::last())),
            _ => Ok(Some(self.record_exit(Some(status)))),
        }
    }

    /// Sends `signal` to the first process (through its pidfd, so never to a reused pid).
    /// With a pid namespace that is the reaper, which forwards every signal another
    /// process may send (SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH,
    /// SIGCONT, ...) to the workload; not the signals of a fault (SIGSEGV, SIGBUS, ...).
    ///
    /// ```no_run
    /// # fn f(c: &qube_runtime::Container) -> Result<(), qube_runtime::Error> {
    /// c.signal(nix::sys::signal::Signal::SIGHUP)?;
    /// # Ok(()) }
    /// ```
    pub fn signal(&self, signal: Signal) -> Result<()> {
        pidfd_send_signal(self.process.pidfd.as_fd(), signal as libc::c_int)
            .map_err(|e| self.process_error(Step::Signal, e))
    }

    /// SIGKILLs every process of the cgroup at once (`cgroup.kill`); returns without
    /// waiting (see [`wait`](Container::wait)).
    ///
    /// ```no_run
    /// # fn f(mut c: qube_runtime::Container) -> Result<(), qube_runtime::Error> {
    /// c.kill()?;
    /// let status = c.wait()?;
    /// # Ok(()) }
    /// ```
    pub fn kill(&self) -> Result<()> {
        self.cgroup
            .kill()
            .map_err(|e| Error::cgroup(Step::Kill, self.cgroup.path(), e))
    }

    /// Stops the container: SIGTERM to every process of the cgroup, then, if the cgroup
    /// is not empty within `timeout`, SIGKILL to all of them. Waits on `cgroup.events`
    /// (no sleeping), then collects the exit status.
    ///
    /// ```no_run
    /// # fn f(mut c: qube_runtime::Container) -> Result<(), qube_runtime::Error> {
    /// let status = c.stop(std::time::Duration::from_secs(10))?;
    /// # Ok(()) }
    /// ```
    pub fn stop(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let path = self.cgroup.path().to_owned();
        let err = |e| Error::cgroup(Step::Stop, &path, e);
        self.cgroup.signal_subtree(Signal::SIGTERM).map_err(err)?;
        match self.cgroup.wait_unpopulated(timeout) {
            Ok(()) => {}
            Err(qube_cgroup::Error::Timeout { .. }) => {
                self.cgroup.kill().map_err(err)?;
                self.cgroup.wait_unpopulated(KILL_TIMEOUT).map_err(err)?;
            }
            Err(e) => return Err(err(e)),
        }
        self.wait()
    }

    /// Freezes every process of the container (`cgroup.freeze`) and waits until the
    /// kernel reports it frozen.
    ///
    /// ```no_run
    /// # fn f(c: &qube_runtime::Container) -> Result<(), qube_runtime::Error> {
    /// c.freeze()?;
    /// c.thaw()?;
    /// # Ok(()) }
    /// ```
    pub fn freeze(&self) -> Result<()> {
        self.cgroup
            .freeze(FREEZE_TIMEOUT)
            .map_err(|e| Error::cgroup(Step::Freeze, self.cgroup.path(), e))
    }

    /// Thaws a frozen container.
    ///
    /// ```no_run
    /// # fn f(c: &qube_runtime::Container) -> Result<(), qube_runtime::Error> {
    /// c.thaw()?;
    /// # Ok(()) }
    /// ```
    pub fn thaw(&self) -> Result<()> {
        self.cgroup
            .thaw(FREEZE_TIMEOUT)
            .map_err(|e| Error::cgroup(Step::Thaw, self.cgroup.path(), e))
    }

    /// Memory, swap, CPU and pid counts of the container's cgroup.
    ///
    /// ```no_run
    /// # fn f(c: &qube_runtime::Container) -> Result<(), qube_runtime::Error> {
    /// let stats = c.stats()?;
    /// # Ok(()) }
    /// ```
    pub fn stats(&self) -> Result<Stats> {
        let cg = &self.cgroup;
        let cpu_stat = cg
            .read_file("cpu.stat")
            .map_err(|e| Error::cgroup(Step::Stats, cg.path(), e))?;
        Ok(Stats {
            memory_current: cg.memory().current().ok(),
            memory_max: cg.memory().max().ok(),
            swap_current: cg.memory().swap_current().ok(),
            swap_max: cg.memory().swap_max().ok(),
            cpu_usage: usage_usec(&cpu_stat).map(Duration::from_micros),
            pids_current: cg
                .read_file("pids.current")
                .ok()
                .and_then(|t| t.trim().parse().ok()),
        })
    }

    /// Leaves the container running and its cgroup in place, and hands back what a
    /// supervisor needs to [`adopt`](Container::adopt) it. The caller stays the parent
    /// of the first process, so reaping it when it ends is the caller's business.
    ///
    /// ```no_run
    /// # fn f(c: qube_runtime::Container) {
    /// let d = c.detach();
    /// println!("{} {}", d.pid, d.cgroup.display());
    /// # }
    /// ```
    pub fn detach(self) -> Detached {
        let Container {
            mut process,
            cgroup,
            ..
        } = self;
        process.detached = true;
        let cgroup = cgroup.persist();
        Detached {
            pid: process.pid.as_raw() as u32,
            cgroup: cgroup.path().to_owned(),
        }
    }

    /// Reads piped stdout and stderr to their end (both at once, so neither pipe can
    /// fill up and stall the workload), then waits for the container.
    ///
    /// ```no_run
    /// use qube_cgroup::Cgroup;
    /// use qube_runtime::{Command, Stdio};
    /// let parent = Cgroup::root()?.create("out")?;
    /// let c = Command::new("/bin/echo").arg("hi").stdout(Stdio::Piped).cgroup(&parent, "echo").spawn()?;
    /// assert_eq!(c.output()?.stdout, b"hi\n");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn output(mut self) -> Result<Output> {
        drop(self.stdin.take());
        let (stdout, stderr) = read_both(self.stdout.take(), self.stderr.take())
            .map_err(|e| self.process_error(Step::Wait, e))?;
        let status = self.wait()?;
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }

    /// Records how the first process ended: the reaper's report of the workload (from
    /// its pipe, or for an adopted container its exit status file) if there is one, else
    /// `raw`; OOM-killed if `oom_kill` rose since the start.
    fn record_exit(&mut self, raw: Option<libc::c_int>) -> ExitStatus {
        let reported = match self.process.status_pipe.take() {
            Some(pipe) => read_status(pipe).map(ExitStatus::from_raw),
            None => self
                .process
                .status_file
                .as_deref()
                .and_then(read_status_file),
        };
        let status = reported
            .or(raw.map(ExitStatus::from_raw))
            .unwrap_or_else(ExitStatus::unknown);
        let oom = oom_kills(&self.cgroup) > self.process.oom_kills_at_start;
        let status = status.with_oom_killed(oom);
        self.process.exited = Some(status);
        status
    }

    /// Polls the pidfd; true when the process has exited.
    fn wait_for_pidfd(&self, timeout: Option<Duration>) -> Result<bool> {
        let timeout = match timeout {
            None => PollTimeout::NONE,
            Some(t) => PollTimeout::try_from(t).unwrap_or(PollTimeout::MAX),
        };
        loop {
            let mut fds = [PollFd::new(self.process.pidfd.as_fd(), PollFlags::POLLIN)];
            match nix::poll::poll(&mut fds, timeout) {
                Ok(n) => return Ok(n > 0),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(self.process_error(Step::Wait, e)),
            }
        }
    }

    fn process_error(&self, step: Step, errno: Errno) -> Error {
        Error::os(step, format!("/proc/{}", self.process.pid), errno)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.exited.is_some() || self.detached {
            return;
        }
        let _ = pidfd_send_signal(self.pidfd.as_fd(), libc::SIGKILL);
        if self.ours {
            reap(self.pid);
        }
    }
}

/// The reaper's 4-byte report, if it wrote one before exiting.
fn read_status(fd: OwnedFd) -> Option<libc::c_int> {
    let mut bytes = [0u8; 4];
    let mut file = File::from(fd);
    file.read_exact(&mut bytes).ok()?;
    Some(libc::c_int::from_ne_bytes(bytes))
}

/// The status line in the reaper's exit status file, if it wrote one.
fn read_status_file(path: &Path) -> Option<ExitStatus> {
    ExitStatus::read_file(path).ok().flatten()
}

/// `oom_kill` of `memory.events` (0 without the memory controller).
pub(crate) fn oom_kills(cgroup: &Cgroup) -> u64 {
    cgroup.memory().events().map(|e| e.oom_kill).unwrap_or(0)
}

fn usage_usec(cpu_stat: &str) -> Option<u64> {
    cpu_stat
        .lines()
        .find_map(|line| line.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
}

/// Whether `pid` is in `cgroup` or one of its descendants.
fn holds_process(cgroup: &Cgroup, pid: u32) -> bool {
    if cgroup.procs().is_ok_and(|procs| procs.contains(&pid)) {
        return true;
    }
    cgroup.children().unwrap_or_default().iter().any(|name| {
        cgroup
            .open_child(name)
            .is_ok_and(|child| holds_process(&child, pid))
    })
}

fn is_our_child(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let after_comm = stat.rfind(')').map_or("", |i| &stat[i + 1..]);
    after_comm.split_whitespace().nth(1) == Some(std::process::id().to_string().as_str())
}

fn pidfd_open(pid: libc::pid_t) -> std::result::Result<OwnedFd, Errno> {
    // SAFETY: pidfd_open takes integers and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(Errno::last());
    }
    // SAFETY: a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
}

fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: libc::c_int) -> std::result::Result<(), Errno> {
    // SAFETY: a live pidfd, a signal number, no siginfo, no flags.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        )
    };
    if ret < 0 {
        Err(Errno::last())
    } else {
        Ok(())
    }
}

/// Reads two pipes to their end at once.
fn read_both(
    mut out: Option<File>,
    mut err: Option<File>,
) -> std::result::Result<(Vec<u8>, Vec<u8>), Errno> {
    let (mut out_buf, mut err_buf) = (Vec::new(), Vec::new());
    while out.is_some() || err.is_some() {
        let mut fds: Vec<PollFd<'_>> = [&out, &err]
            .into_iter()
            .flatten()
            .map(|f| PollFd::new(f.as_fd(), PollFlags::POLLIN))
            .collect();
        match nix::poll::poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.any().unwrap_or(true)).collect();
        drop(fds);
        let mut ready = ready.into_iter();
        for (pipe, buf) in [(&mut out, &mut out_buf), (&mut err, &mut err_buf)] {
            if pipe.is_some() && ready.next().unwrap_or(false) {
                drain_once(pipe, buf)?;
            }
        }
    }
    Ok((out_buf, err_buf))
}

/// One read from a ready pipe; closes it (sets `None`) at end-of-file.
fn drain_once(pipe: &mut Option<File>, buf: &mut Vec<u8>) -> std::result::Result<(), Errno> {
    let Some(file) = pipe else { return Ok(()) };
    let mut chunk = [0u8; 8192];
    match file.read(&mut chunk) {
        Ok(0) => *pipe = None,
        Ok(n) => buf.extend_from_slice(&chunk[..n]),
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
        Err(e) => return Err(io_errno(&e)),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_usage_is_read_from_cpu_stat() {
        let text = "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n";
        assert_eq!(usage_usec(text), Some(1500));
        assert_eq!(usage_usec("user_usec 1\n"), None);
    }
}
