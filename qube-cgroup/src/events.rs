//! `cgroup.events` and `memory.events`: reading them, waiting on them, watching them.
//!
//! The kernel signals a change of these files to `poll(2)` (POLLPRI) and to inotify
//! (IN_MODIFY), so waiting here never sleeps in a loop: it blocks until the kernel says
//! something changed, then reads again.

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};

use crate::cgroup::Cgroup;
use crate::dir::read_fd_into;
use crate::error::{Error, Op, Result};
use crate::memory::MemoryEvents;

/// The state in `cgroup.events`.
///
/// ```
/// let ev: qube_cgroup::CgroupEvents = "populated 1\nfrozen 0\n".parse().unwrap();
/// assert!(ev.populated && !ev.frozen);
/// assert_eq!(ev.to_string(), "populated 1\nfrozen 0\n");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupEvents {
    /// The cgroup or one of its descendants has live processes.
    pub populated: bool,
    /// The cgroup is frozen.
    pub frozen: bool,
}

impl std::str::FromStr for CgroupEvents {
    type Err = Error;

    fn from_str(text: &str) -> Result<CgroupEvents> {
        let mut events = CgroupEvents::default();
        for entry in crate::keyed::flat_keyed(text) {
            let (key, value) = entry.map_err(|line| Error::Parse {
                path: PathBuf::from("cgroup.events"),
                line: line.to_owned(),
                reason: "expected `key 0|1`".into(),
            })?;
            match key {
                "populated" => events.populated = value != 0,
                "frozen" => events.frozen = value != 0,
                _ => {}
            }
        }
        Ok(events)
    }
}

impl std::fmt::Display for CgroupEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "populated {}", u8::from(self.populated))?;
        writeln!(f, "frozen {}", u8::from(self.frozen))
    }
}

impl Cgroup {
    /// Reads `cgroup.events`.
    ///
    /// ```no_run
    /// let cg = qube_cgroup::Cgroup::root()?.create("ev")?;
    /// assert!(!cg.events()?.populated);
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn events(&self) -> Result<CgroupEvents> {
        self.dir.read_value("cgroup.events")
    }

    /// Blocks until `cgroup.events` says the cgroup and its descendants hold no process.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let cg = qube_cgroup::Cgroup::root()?.create("wait")?;
    /// cg.kill()?;
    /// cg.wait_unpopulated(Duration::from_secs(5))?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn wait_unpopulated(&self, timeout: Duration) -> Result<()> {
        self.wait_events("populated 0", timeout, |ev| !ev.populated)
            .map(drop)
    }

    /// Blocks until `done` holds for `cgroup.events`, woken by the kernel's notifications.
    pub(crate) fn wait_events(
        &self,
        what: &'static str,
        timeout: Duration,
        done: impl Fn(&CgroupEvents) -> bool,
    ) -> Result<CgroupEvents> {
        const FILE: &str = "cgroup.events";
        let fd = self.dir.open_file(FILE)?;
        let deadline = Instant::now().checked_add(timeout);
        let mut text = String::with_capacity(64);
        loop {
            // Read first, then poll: the read arms the notification, so no change is lost between.
            reread(fd.as_fd(), &mut text)
                .map_err(|e| self.dir.classify(Op::Read, FILE, None, e))?;
            let events: CgroupEvents = text.parse()?;
            if done(&events) {
                return Ok(events);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::Timeout {
                    op: Op::Wait,
                    path: self.path_of(FILE),
                    what,
                    after: timeout,
                });
            }
            // Woken or timed out, the file is read again: the loop decides which it was.
            poll_until(fd.as_fd(), PollFlags::POLLPRI, deadline)
                .map_err(|e| self.dir.classify(Op::Wait, FILE, None, e))?;
        }
    }
}

/// Reads a kernfs file again from its start.
fn reread(fd: BorrowedFd<'_>, text: &mut String) -> std::result::Result<(), Errno> {
    nix::unistd::lseek(fd, 0, nix::unistd::Whence::SeekSet)?;
    text.clear();
    read_fd_into(fd, text)
}

/// Polls `fd` until it reports `events` (true) or `deadline` has passed (false); no
/// deadline waits for as long as it takes.
///
/// A signal (EINTR) or poll's own cap on a timeout is not the deadline, so neither ends
/// the wait: callers take `false` as "the time ran out".
fn poll_until(
    fd: BorrowedFd<'_>,
    events: PollFlags,
    deadline: Option<Instant>,
) -> std::result::Result<bool, Errno> {
    loop {
        let timeout = match deadline {
            Some(d) => poll_timeout(d.saturating_duration_since(Instant::now())),
            None => PollTimeout::NONE,
        };
        let mut fds = [PollFd::new(fd, events)];
        match nix::poll::poll(&mut fds, timeout) {
            Ok(0) | Err(Errno::EINTR) => {}
            Ok(_) => return Ok(true),
            Err(e) => return Err(e),
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(false);
        }
    }
}

/// Poll's timeout for the time left: rounded up, since a poll that returned a fraction of
/// a millisecond early would be called again with 0 and spin until the deadline; capped at
/// what poll takes, the caller polling again after that.
fn poll_timeout(left: Duration) -> PollTimeout {
    let millis = left.as_nanos().div_ceil(1_000_000);
    PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)
}

/// One change seen by a [`Watcher`].
///
/// ```
/// use qube_cgroup::Event;
/// let ended = |e: &Event| matches!(e, Event::Populated(false) | Event::Removed);
/// assert!(ended(&Event::Removed));
/// assert!(!ended(&Event::OomKill(1)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// `populated` changed: the cgroup gained its first or lost its last process.
    Populated(bool),
    /// `frozen` changed.
    Frozen(bool),
    /// `memory.events` `oom` rose to this count (the limit was hit and reclaim failed).
    Oom(u64),
    /// `memory.events` `oom_kill` rose to this count: the kernel killed a process in the group.
    OomKill(u64),
    /// `memory.events` `max` rose to this count (usage was about to go over memory.max).
    MemoryMax(u64),
    /// `memory.events` `high` rose to this count (usage went over memory.high).
    MemoryHigh(u64),
    /// The cgroup was removed; the watcher has ended.
    Removed,
}

/// Watches `cgroup.events` and `memory.events` of one cgroup through one inotify fd.
///
/// The fd ([`AsFd`]) becomes readable when something changed, so a watcher fits in any
/// poll loop; [`next_event`](Watcher::next_event) blocks for the next change itself.
///
/// ```no_run
/// use std::time::Duration;
/// use qube_cgroup::{Cgroup, Event, Watcher};
/// let cg = Cgroup::root()?.create("watched")?;
/// let mut watcher = Watcher::new(&cg)?;
/// while let Some(event) = watcher.next_event(Duration::from_secs(60))? {
///     if let Event::OomKill(n) = event {
///         eprintln!("{n} processes OOM-killed");
///     }
/// }
/// # Ok::<(), qube_cgroup::Error>(())
/// ```
#[derive(Debug)]
pub struct Watcher {
    inotify: Inotify,
    parent_watch: WatchDescriptor,
    name: std::ffi::OsString,
    cgroup_events: OwnedFd,
    memory_events: Option<OwnedFd>,
    path: PathBuf,
    last: CgroupEvents,
    last_memory: MemoryEvents,
    pending: VecDeque<Event>,
    ended: bool,
}

impl Watcher {
    /// Starts watching; `memory.events` is included when the memory controller is enabled.
    ///
    /// ```no_run
    /// let cg = qube_cgroup::Cgroup::open_self()?;
    /// let watcher = qube_cgroup::Watcher::new(&cg)?;
    /// println!("populated: {}", watcher.state().populated);
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn new(cg: &Cgroup) -> Result<Watcher> {
        let path = cg.path().to_owned();
        let io_err = |e: Errno| Error::Io {
            op: Op::Wait,
            path: path.clone(),
            value: None,
            source: e.into(),
        };
        let inotify =
            Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).map_err(io_err)?;
        let cgroup_events = cg.dir.open_file("cgroup.events")?;
        let memory_events = cg.dir.open_file("memory.events").ok();
        // inotify takes a path; going through /proc/self/fd keeps it relative to our fds.
        let watch = |fd: &OwnedFd| format!("/proc/self/fd/{}", fd.as_raw_fd());
        let flags =
            AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_DELETE_SELF | AddWatchFlags::IN_IGNORED;
        inotify
            .add_watch(watch(&cgroup_events).as_str(), flags)
            .map_err(io_err)?;
        if let Some(fd) = &memory_events {
            inotify
                .add_watch(watch(fd).as_str(), flags)
                .map_err(io_err)?;
        }
        // Removal shows as IN_DELETE of our name in the parent: kernfs tells the files nothing.
        let parent = cg.parent()?;
        let parent_watch = inotify
            .add_watch(
                format!("/proc/self/fd/{}", parent.dir_fd().as_raw_fd()).as_str(),
                AddWatchFlags::IN_DELETE | AddWatchFlags::IN_ONLYDIR,
            )
            .map_err(io_err)?;
        let mut watcher = Watcher {
            inotify,
            parent_watch,
            name: cg.name().into(),
            cgroup_events,
            memory_events,
            path,
            last: CgroupEvents::default(),
            last_memory: MemoryEvents::default(),
            pending: VecDeque::new(),
            ended: false,
        };
        watcher.last = watcher.read_cgroup_events()?;
        watcher.last_memory = watcher.read_memory_events()?;
        Ok(watcher)
    }

    /// The state last seen in `cgroup.events`.
    ///
    /// ```no_run
    /// let watcher = qube_cgroup::Watcher::new(&qube_cgroup::Cgroup::open_self()?)?;
    /// assert!(watcher.state().populated); // this process is in it
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn state(&self) -> CgroupEvents {
        self.last
    }

    /// The counters last seen in `memory.events`.
    ///
    /// ```no_run
    /// let watcher = qube_cgroup::Watcher::new(&qube_cgroup::Cgroup::open_self()?)?;
    /// println!("OOM kills so far: {}", watcher.memory_events().oom_kill);
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn memory_events(&self) -> &MemoryEvents {
        &self.last_memory
    }

    /// The next change, waiting up to `timeout`; `Ok(None)` when the time ran out or the
    /// watcher has ended (after [`Event::Removed`]).
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let mut watcher = qube_cgroup::Watcher::new(&qube_cgroup::Cgroup::open_self()?)?;
    /// match watcher.next_event(Duration::from_secs(1))? {
    ///     Some(event) => println!("{event:?}"),
    ///     None => println!("nothing changed for a second"),
    /// }
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<Event>> {
        // A timeout too long to add to now (Duration::MAX) is no deadline at all.
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(Some(event));
            }
            if self.ended {
                return Ok(None);
            }
            if !self.wait_readable(deadline)? {
                return Ok(None);
            }
            self.process()?;
        }
    }

    /// Reads what inotify reported and queues the resulting events; call it when the fd
    /// polls readable. Returns the number of events queued.
    ///
    /// ```no_run
    /// use std::os::fd::AsFd;
    /// use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    /// let mut watcher = qube_cgroup::Watcher::new(&qube_cgroup::Cgroup::open_self()?)?;
    /// let mut fds = [PollFd::new(watcher.as_fd(), PollFlags::POLLIN)];
    /// if poll(&mut fds, PollTimeout::from(1000u16)).unwrap_or(0) > 0 {
    ///     watcher.process()?;
    /// }
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn process(&mut self) -> Result<usize> {
        let before = self.pending.len();
        let mut removed = false;
        match self.inotify.read_events() {
            Ok(events) => {
                removed = events.iter().any(|e| {
                    e.mask.intersects(AddWatchFlags::IN_DELETE_SELF)
                        || (e.wd == self.parent_watch
                            && e.name.as_deref() == Some(self.name.as_os_str()))
                });
            }
            Err(Errno::EAGAIN) => {}
            Err(e) => return Err(self.io_error(e)),
        }
        match self.read_cgroup_events() {
            Ok(now) => self.diff_cgroup_events(now),
            Err(Error::NotFound { .. }) => removed = true,
            Err(e) => return Err(e),
        }
        if !removed {
            let memory = self.read_memory_events()?;
            self.diff_memory_events(memory);
        }
        if removed && !self.ended {
            self.ended = true;
            self.pending.push_back(Event::Removed);
        }
        Ok(self.pending.len() - before)
    }

    fn diff_cgroup_events(&mut self, now: CgroupEvents) {
        if now.populated != self.last.populated {
            self.pending.push_back(Event::Populated(now.populated));
        }
        if now.frozen != self.last.frozen {
            self.pending.push_back(Event::Frozen(now.frozen));
        }
        self.last = now;
    }

    fn diff_memory_events(&mut self, now: MemoryEvents) {
        let last = &self.last_memory;
        let rises = [
            (now.high > last.high, Event::MemoryHigh(now.high)),
            (now.max > last.max, Event::MemoryMax(now.max)),
            (now.oom > last.oom, Event::Oom(now.oom)),
            (now.oom_kill > last.oom_kill, Event::OomKill(now.oom_kill)),
        ];
        self.pending
            .extend(rises.into_iter().filter(|(rose, _)| *rose).map(|(_, e)| e));
        self.last_memory = now;
    }

    /// Whether inotify has something to read before `deadline`.
    fn wait_readable(&self, deadline: Option<Instant>) -> Result<bool> {
        poll_until(self.inotify.as_fd(), PollFlags::POLLIN, deadline).map_err(|e| self.io_error(e))
    }

    fn read_cgroup_events(&self) -> Result<CgroupEvents> {
        let mut text = String::with_capacity(64);
        reread(self.cgroup_events.as_fd(), &mut text).map_err(|e| self.gone_or(e))?;
        text.parse()
    }

    fn read_memory_events(&self) -> Result<MemoryEvents> {
        let Some(fd) = &self.memory_events else {
            return Ok(MemoryEvents::default());
        };
        let mut text = String::with_capacity(128);
        reread(fd.as_fd(), &mut text).map_err(|e| self.gone_or(e))?;
        MemoryEvents::parse(text)
    }

    fn gone_or(&self, e: Errno) -> Error {
        match e {
            Errno::ENODEV | Errno::ENOENT => Error::NotFound {
                op: Op::Wait,
                path: self.path.clone(),
            },
            e => self.io_error(e),
        }
    }

    fn io_error(&self, e: Errno) -> Error {
        Error::Io {
            op: Op::Wait,
            path: self.path.clone(),
            value: None,
            source: e.into(),
        }
    }
}

impl AsFd for Watcher {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inotify.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn poll_timeouts_are_not_capped_below_what_poll_takes() {
        let ms = |t: PollTimeout| t.as_millis();
        assert_eq!(ms(poll_timeout(Duration::from_secs(100))), Some(100_000));
        assert_eq!(ms(poll_timeout(Duration::from_secs(3600))), Some(3_600_000));
        assert_eq!(poll_timeout(Duration::MAX), PollTimeout::MAX);
        assert_eq!(ms(poll_timeout(Duration::from_micros(1))), Some(1));
        assert_eq!(ms(poll_timeout(Duration::ZERO)), Some(0));
    }

    #[test]
    fn poll_until_reports_ready_and_timed_out() {
        let (rx, tx) = nix::unistd::pipe().unwrap();
        let soon = Instant::now() + Duration::from_millis(20);
        assert!(!poll_until(rx.as_fd(), PollFlags::POLLIN, Some(soon)).unwrap());
        assert!(Instant::now() >= soon, "returned before the deadline");
        nix::unistd::write(&tx, b"x").unwrap();
        assert!(poll_until(rx.as_fd(), PollFlags::POLLIN, None).unwrap());
        let past = Instant::now();
        assert!(poll_until(rx.as_fd(), PollFlags::POLLIN, Some(past)).unwrap());
    }

    static SIGNALS: AtomicUsize = AtomicUsize::new(0);

    extern "C" fn count_signal(_: nix::libc::c_int) {
        SIGNALS.fetch_add(1, Ordering::SeqCst);
    }

    #[test]
    fn a_signal_does_not_end_the_wait() {
        use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
        // No SA_RESTART, and poll is never restarted anyway: each signal that lands in
        // the poll makes it fail with EINTR.
        let action = SigAction::new(
            SigHandler::Handler(count_signal),
            SaFlags::empty(),
            SigSet::empty(),
        );
        // SAFETY: the handler only touches an atomic, which is async-signal-safe; SIGUSR1
        // is used by no other test in this binary, and is sent only to the thread below.
        unsafe { sigaction(Signal::SIGUSR1, &action) }.unwrap();
        let (rx, tx) = nix::unistd::pipe().unwrap();
        let (id_tx, id_rx) = std::sync::mpsc::channel();
        let waiter = std::thread::spawn(move || {
            id_tx.send(nix::sys::pthread::pthread_self()).unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            poll_until(rx.as_fd(), PollFlags::POLLIN, Some(deadline))
        });
        let thread = id_rx.recv().unwrap();
        for _ in 0..5 {
            let before = SIGNALS.load(Ordering::SeqCst);
            nix::sys::pthread::pthread_kill(thread, Signal::SIGUSR1).unwrap();
            // The handler has run, so the waiter is past that signal before the next; a
            // waiter that returned takes no more signals, and the asserts below say why.
            while SIGNALS.load(Ordering::SeqCst) == before && !waiter.is_finished() {
                std::thread::yield_now();
            }
        }
        assert!(!waiter.is_finished(), "the wait ended at a signal");
        nix::unistd::write(&tx, b"x").unwrap();
        assert!(
            waiter.join().unwrap().unwrap(),
            "the wait must end readable"
        );
    }

    proptest! {
        #[test]
        fn cgroup_events_round_trip(populated: bool, frozen: bool) {
            let ev = CgroupEvents { populated, frozen };
            prop_assert_eq!(ev.to_string().parse::<CgroupEvents>().unwrap(), ev);
        }
    }
}
