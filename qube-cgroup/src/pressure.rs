//! Pressure stall information (PSI, `Documentation/accounting/psi.rst`): the
//! `cpu.pressure`, `memory.pressure` and `io.pressure` files every cgroup has, the
//! `cgroup.pressure` switch, and triggers that wake a poller when stalls pile up.

use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout};

use crate::cgroup::Cgroup;
use crate::error::{Error, Op, Result};
use crate::value::Flag;

/// A resource whose stalls PSI measures.
///
/// ```
/// use qube_cgroup::PressureResource;
/// assert_eq!(PressureResource::Memory.file(), "memory.pressure");
/// assert_eq!("io".parse::<PressureResource>().unwrap(), PressureResource::Io);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PressureResource {
    /// Waiting for a CPU (`cpu.pressure`).
    Cpu,
    /// Waiting for memory: reclaim, refaults, swap-in (`memory.pressure`).
    Memory,
    /// Waiting for block I/O (`io.pressure`).
    Io,
}

impl PressureResource {
    /// Every resource.
    ///
    /// ```
    /// let files: Vec<_> = qube_cgroup::PressureResource::ALL.iter().map(|r| r.file()).collect();
    /// assert_eq!(files, ["cpu.pressure", "memory.pressure", "io.pressure"]);
    /// ```
    pub const ALL: [PressureResource; 3] = [
        PressureResource::Cpu,
        PressureResource::Memory,
        PressureResource::Io,
    ];

    /// The resource's name, as in `/proc/pressure/<name>`.
    ///
    /// ```
    /// assert_eq!(qube_cgroup::PressureResource::Cpu.name(), "cpu");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            PressureResource::Cpu => "cpu",
            PressureResource::Memory => "memory",
            PressureResource::Io => "io",
        }
    }

    /// The cgroup interface file for it.
    ///
    /// ```
    /// assert_eq!(qube_cgroup::PressureResource::Io.file(), "io.pressure");
    /// ```
    pub fn file(self) -> &'static str {
        match self {
            PressureResource::Cpu => "cpu.pressure",
            PressureResource::Memory => "memory.pressure",
            PressureResource::Io => "io.pressure",
        }
    }
}

impl fmt::Display for PressureResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for PressureResource {
    type Err = Error;

    fn from_str(s: &str) -> Result<PressureResource> {
        PressureResource::ALL
            .into_iter()
            .find(|r| r.name() == s)
            .ok_or_else(|| Error::invalid("pressure resource", s, "expected cpu, memory or io"))
    }
}

/// Which stall a figure or a trigger is about.
///
/// ```
/// use qube_cgroup::PressureKind;
/// assert_eq!(PressureKind::Full.to_string(), "full");
/// assert_eq!("some".parse::<PressureKind>().unwrap(), PressureKind::Some);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PressureKind {
    /// At least one task stalled on the resource.
    Some,
    /// Every non-idle task stalled at once: the group did no work at all.
    Full,
}

impl PressureKind {
    /// The kernel's word for it.
    ///
    /// ```
    /// assert_eq!(qube_cgroup::PressureKind::Some.as_str(), "some");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            PressureKind::Some => "some",
            PressureKind::Full => "full",
        }
    }
}

impl fmt::Display for PressureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PressureKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<PressureKind> {
        match s {
            "some" => Ok(PressureKind::Some),
            "full" => Ok(PressureKind::Full),
            _ => Err(Error::invalid("pressure kind", s, "expected some or full")),
        }
    }
}

/// A PSI average: the percentage of wall time spent stalled, in hundredths of a percent,
/// exactly as the kernel prints it (`4.81`), so that text round-trips without float error.
///
/// ```
/// use qube_cgroup::PressureAvg;
/// let avg: PressureAvg = "4.81".parse().unwrap();
/// assert_eq!(avg.hundredths(), 481);
/// assert_eq!(avg.to_string(), "4.81");
/// assert!((avg.percent() - 4.81).abs() < 1e-9);
/// assert!("4.8".parse::<PressureAvg>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PressureAvg(u32);

impl PressureAvg {
    /// No stall at all.
    ///
    /// ```
    /// assert_eq!(qube_cgroup::PressureAvg::ZERO.to_string(), "0.00");
    /// ```
    pub const ZERO: PressureAvg = PressureAvg(0);

    /// An average of `n` hundredths of a percent.
    ///
    /// ```
    /// assert_eq!(qube_cgroup::PressureAvg::from_hundredths(1250).to_string(), "12.50");
    /// ```
    pub const fn from_hundredths(n: u32) -> PressureAvg {
        PressureAvg(n)
    }

    /// The average in hundredths of a percent.
    ///
    /// ```
    /// assert_eq!(qube_cgroup::PressureAvg::from_hundredths(7).hundredths(), 7);
    /// ```
    pub const fn hundredths(self) -> u32 {
        self.0
    }

    /// The average as a percentage.
    ///
    /// ```
    /// assert_eq!(qube_cgroup::PressureAvg::from_hundredths(50).percent(), 0.5);
    /// ```
    pub fn percent(self) -> f64 {
        f64::from(self.0) / 100.0
    }
}

impl fmt::Display for PressureAvg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

impl FromStr for PressureAvg {
    type Err = Error;

    fn from_str(s: &str) -> Result<PressureAvg> {
        let invalid = || Error::invalid("pressure average", s, "expected a percentage like 4.81");
        let (whole, frac) = s.split_once('.').ok_or_else(invalid)?;
        let all_digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(whole) || frac.len() != 2 || !all_digits(frac) {
            return Err(invalid());
        }
        let whole: u32 = whole.parse().map_err(|_| invalid())?;
        let frac: u32 = frac.parse().map_err(|_| invalid())?;
        whole
            .checked_mul(100)
            .and_then(|w| w.checked_add(frac))
            .map(PressureAvg)
            .ok_or_else(invalid)
    }
}

/// One line of a pressure file: the stall share over the last 10, 60 and 300 seconds,
/// and the total stall time since the cgroup was created (microsecond-grained).
///
/// ```
/// use qube_cgroup::PressureLine;
/// let line: PressureLine = "avg10=1.00 avg60=0.50 avg300=0.10 total=123456".parse().unwrap();
/// assert_eq!(line.avg10.hundredths(), 100);
/// assert_eq!(line.total.as_micros(), 123456);
/// assert_eq!(line.to_string(), "avg10=1.00 avg60=0.50 avg300=0.10 total=123456");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PressureLine {
    /// Share of the last 10 seconds spent stalled.
    pub avg10: PressureAvg,
    /// Share of the last 60 seconds spent stalled.
    pub avg60: PressureAvg,
    /// Share of the last 300 seconds spent stalled.
    pub avg300: PressureAvg,
    /// All stall time so far.
    pub total: Duration,
}

impl fmt::Display for PressureLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "avg10={} avg60={} avg300={} total={}",
            self.avg10,
            self.avg60,
            self.avg300,
            self.total.as_micros()
        )
    }
}

impl FromStr for PressureLine {
    type Err = Error;

    fn from_str(s: &str) -> Result<PressureLine> {
        parse_fields(s).map_err(|reason| Error::invalid("pressure line", s, reason))
    }
}

/// The `avg10=.. avg60=.. avg300=.. total=..` pairs of one line; unknown keys are skipped.
fn parse_fields(fields: &str) -> std::result::Result<PressureLine, String> {
    const KEYS: [&str; 4] = ["avg10", "avg60", "avg300", "total"];
    let mut values: [Option<&str>; 4] = [None; 4];
    for pair in fields.split_ascii_whitespace() {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("expected key=value, found {pair:?}"))?;
        if let Some(i) = KEYS.iter().position(|k| *k == key) {
            values[i] = Some(value);
        }
    }
    let [Some(avg10), Some(avg60), Some(avg300), Some(total)] = values else {
        return Err("expected avg10=, avg60=, avg300= and total=".into());
    };
    let avg = |v: &str| v.parse::<PressureAvg>().map_err(|e| e.to_string());
    let micros: u64 = total
        .parse()
        .map_err(|_| format!("total={total:?} is not a number of microseconds"))?;
    Ok(PressureLine {
        avg10: avg(avg10)?,
        avg60: avg(avg60)?,
        avg300: avg(avg300)?,
        total: Duration::from_micros(micros),
    })
}

/// A whole pressure file: the `some` line and, where the kernel writes one, the `full`
/// line. `Display` writes the kernel's text.
///
/// ```
/// use qube_cgroup::Pressure;
/// let text = "some avg10=0.12 avg60=0.05 avg300=0.01 total=4711\n\
///             full avg10=0.00 avg60=0.00 avg300=0.00 total=42\n";
/// let p: Pressure = text.parse().unwrap();
/// assert_eq!(p.some.avg10.hundredths(), 12);
/// assert_eq!(p.full.unwrap().total.as_micros(), 42);
/// assert_eq!(p.to_string(), text);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Pressure {
    /// Time in which at least one task was stalled.
    pub some: PressureLine,
    /// Time in which all non-idle tasks were stalled at once (absent from the
    /// system-wide `/proc/pressure/cpu` of older kernels).
    pub full: Option<PressureLine>,
}

impl Pressure {
    /// Parses a pressure file, naming the line that failed.
    fn parse_text(text: &str) -> std::result::Result<Pressure, (String, String)> {
        let mut some = None;
        let mut full = None;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let (kind, fields) = line.split_once(' ').unwrap_or((line, ""));
            let slot = match kind {
                "some" => &mut some,
                "full" => &mut full,
                _ => continue,
            };
            *slot = Some(parse_fields(fields).map_err(|reason| (line.to_owned(), reason))?);
        }
        let some = some.ok_or_else(|| (text.to_owned(), "no `some` line".to_owned()))?;
        Ok(Pressure { some, full })
    }
}

impl fmt::Display for Pressure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "some {}", self.some)?;
        if let Some(full) = &self.full {
            writeln!(f, "full {full}")?;
        }
        Ok(())
    }
}

impl FromStr for Pressure {
    type Err = Error;

    fn from_str(s: &str) -> Result<Pressure> {
        Pressure::parse_text(s)
            .map_err(|(line, reason)| Error::invalid("pressure text", &line, reason))
    }
}

/// The kernel's bounds on a trigger's window (psi.rst: "The kernel accepts window sizes
/// ranging from 500ms to 10s").
const WINDOW_MIN: Duration = Duration::from_millis(500);
const WINDOW_MAX: Duration = Duration::from_secs(10);

/// A PSI trigger's condition: `stall` of `kind` stall within any `window`, checked
/// against the kernel's rules before anything is written. `Display` writes the line a
/// pressure file takes (`some 150000 1000000`, microseconds).
///
/// ```
/// use std::time::Duration;
/// use qube_cgroup::{PressureKind, PressureThreshold};
/// let t = PressureThreshold::new(PressureKind::Some, Duration::from_millis(150), Duration::from_secs(1))?;
/// assert_eq!(t.to_string(), "some 150000 1000000");
/// assert_eq!(t.to_string().parse::<PressureThreshold>()?, t);
/// assert!(PressureThreshold::new(PressureKind::Some, Duration::from_millis(10), Duration::from_millis(100)).is_err());
/// # Ok::<(), qube_cgroup::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PressureThreshold {
    kind: PressureKind,
    stall_us: u64,
    window_us: u64,
}

impl PressureThreshold {
    /// A threshold; the window must lie in 500ms..=10s and the stall in 1µs..=window,
    /// else [`Error::InvalidValue`]. Sub-microsecond parts are dropped.
    ///
    /// ```
    /// use std::time::Duration;
    /// use qube_cgroup::{PressureKind, PressureThreshold};
    /// let second = Duration::from_secs(1);
    /// assert!(PressureThreshold::new(PressureKind::Full, second * 2, second).is_err());
    /// assert!(PressureThreshold::new(PressureKind::Full, second, second * 11).is_err());
    /// ```
    pub fn new(kind: PressureKind, stall: Duration, window: Duration) -> Result<PressureThreshold> {
        let described = || format!("{kind} {stall:?} in {window:?}");
        if !(WINDOW_MIN..=WINDOW_MAX).contains(&window) {
            return Err(Error::invalid(
                "pressure trigger",
                &described(),
                "the window must lie between 500ms and 10s",
            ));
        }
        let stall_us = micros(stall);
        if stall_us == 0 || stall > window {
            return Err(Error::invalid(
                "pressure trigger",
                &described(),
                "the stall must be at least 1µs and no longer than the window",
            ));
        }
        Ok(PressureThreshold {
            kind,
            stall_us,
            window_us: micros(window),
        })
    }

    /// Which stall it watches.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use qube_cgroup::{PressureKind, PressureThreshold};
    /// let t = PressureThreshold::new(PressureKind::Full, Duration::from_millis(50), Duration::from_secs(1))?;
    /// assert_eq!(t.kind(), PressureKind::Full);
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn kind(&self) -> PressureKind {
        self.kind
    }

    /// The stall time that fires it.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use qube_cgroup::{PressureKind, PressureThreshold};
    /// let t = PressureThreshold::new(PressureKind::Some, Duration::from_millis(50), Duration::from_secs(1))?;
    /// assert_eq!(t.stall(), Duration::from_millis(50));
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn stall(&self) -> Duration {
        Duration::from_micros(self.stall_us)
    }

    /// The window the stall is summed over.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use qube_cgroup::{PressureKind, PressureThreshold};
    /// let t = PressureThreshold::new(PressureKind::Some, Duration::from_millis(50), Duration::from_secs(1))?;
    /// assert_eq!(t.window(), Duration::from_secs(1));
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn window(&self) -> Duration {
        Duration::from_micros(self.window_us)
    }
}

impl PressureThreshold {
    /// Whether a process without CAP_SYS_RESOURCE may register it: since Linux 6.5 such
    /// triggers ride on the 2-second averaging and need a window that is a multiple of 2s.
    fn unprivileged_window(&self) -> bool {
        self.window_us % UNPRIVILEGED_WINDOW_STEP_US == 0
    }
}

const UNPRIVILEGED_WINDOW_STEP_US: u64 = 2_000_000;

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl fmt::Display for PressureThreshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.kind, self.stall_us, self.window_us)
    }
}

impl FromStr for PressureThreshold {
    type Err = Error;

    fn from_str(s: &str) -> Result<PressureThreshold> {
        let invalid = || {
            Error::invalid(
                "pressure trigger",
                s,
                "expected `some|full <stall us> <window us>`",
            )
        };
        let mut parts = s.split_ascii_whitespace();
        let (Some(kind), Some(stall), Some(window), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        let stall: u64 = stall.parse().map_err(|_| invalid())?;
        let window: u64 = window.parse().map_err(|_| invalid())?;
        PressureThreshold::new(
            kind.parse()?,
            Duration::from_micros(stall),
            Duration::from_micros(window),
        )
    }
}

/// A registered PSI trigger: it owns the pressure file's fd, and the kernel removes the
/// trigger when that fd is closed (on drop). Poll it yourself through [`AsFd`] (POLLPRI),
/// or block in [`wait`](PressureTrigger::wait).
///
/// ```no_run
/// use std::time::Duration;
/// use qube_cgroup::{Cgroup, PressureKind, PressureResource};
/// let cg = Cgroup::root()?.create("watched")?;
/// let trigger = cg.pressure_trigger(
///     PressureResource::Memory,
///     PressureKind::Some,
///     Duration::from_millis(150),
///     Duration::from_secs(1),
/// )?;
/// if trigger.wait(Duration::from_secs(30))? {
///     println!("memory stalls passed 150ms in a second");
/// }
/// # Ok::<(), qube_cgroup::Error>(())
/// ```
#[derive(Debug)]
pub struct PressureTrigger {
    fd: OwnedFd,
    path: PathBuf,
    threshold: PressureThreshold,
}

impl PressureTrigger {
    /// Blocks until the trigger fires (`true`) or `timeout` passes (`false`). The kernel
    /// reports at most one event per window. A removed cgroup gives [`Error::NotFound`].
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use qube_cgroup::{Cgroup, PressureKind, PressureResource};
    /// # let cg = Cgroup::root()?.create("t")?;
    /// let trigger = cg.pressure_trigger(PressureResource::Io, PressureKind::Full,
    ///     Duration::from_millis(100), Duration::from_secs(2))?;
    /// while !trigger.wait(Duration::from_secs(1))? {
    ///     println!("no I/O stall yet");
    /// }
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn wait(&self, timeout: Duration) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut fds = [PollFd::new(self.fd.as_fd(), PollFlags::POLLPRI)];
            match nix::poll::poll(&mut fds, poll_timeout(left)) {
                Ok(0) => return Ok(false),
                Ok(_) => return self.fired(fds[0].revents().unwrap_or(PollFlags::empty())),
                Err(Errno::EINTR) if !left.is_zero() => continue,
                Err(Errno::EINTR) => return Ok(false),
                Err(e) => return Err(self.wait_error(e)),
            }
        }
    }

    fn fired(&self, revents: PollFlags) -> Result<bool> {
        // psi.rst: "got POLLERR, event source is gone" -- the cgroup was removed.
        if revents.intersects(PollFlags::POLLERR | PollFlags::POLLHUP | PollFlags::POLLNVAL) {
            return Err(Error::NotFound {
                op: Op::Wait,
                path: self.path.clone(),
            });
        }
        Ok(revents.contains(PollFlags::POLLPRI))
    }

    fn wait_error(&self, errno: Errno) -> Error {
        Error::Io {
            op: Op::Wait,
            path: self.path.clone(),
            value: Some(self.threshold.to_string()),
            source: errno.into(),
        }
    }

    /// The condition this trigger watches.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use qube_cgroup::{Cgroup, PressureKind, PressureResource};
    /// # let cg = Cgroup::root()?.create("t")?;
    /// let t = cg.pressure_trigger(PressureResource::Cpu, PressureKind::Some,
    ///     Duration::from_millis(200), Duration::from_secs(1))?;
    /// assert_eq!(t.threshold().to_string(), "some 200000 1000000");
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn threshold(&self) -> PressureThreshold {
        self.threshold
    }

    /// The pressure file the trigger is registered on.
    ///
    /// ```no_run
    /// # use std::time::Duration;
    /// # use qube_cgroup::{Cgroup, PressureKind, PressureResource};
    /// # let cg = Cgroup::root()?.create("t")?;
    /// let t = cg.pressure_trigger(PressureResource::Memory, PressureKind::Some,
    ///     Duration::from_millis(100), Duration::from_secs(1))?;
    /// assert!(t.path().ends_with("memory.pressure"));
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AsFd for PressureTrigger {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// A poll timeout that never rounds a remaining fraction of a millisecond down to a busy 0.
fn poll_timeout(left: Duration) -> PollTimeout {
    let millis = left.as_micros().div_ceil(1000);
    PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)
}

impl Cgroup {
    /// Reads the stall figures of one resource (`cpu.pressure`, `memory.pressure`,
    /// `io.pressure`). A kernel without PSI, or a cgroup whose `cgroup.pressure` is 0,
    /// has no such file: [`Error::Unsupported`].
    ///
    /// ```no_run
    /// use qube_cgroup::{Cgroup, PressureResource};
    /// let p = Cgroup::open_self()?.pressure(PressureResource::Memory)?;
    /// println!("memory stalled {}% of the last 10s", p.some.avg10);
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn pressure(&self, resource: PressureResource) -> Result<Pressure> {
        let file = resource.file();
        let text = self.dir.read(file)?;
        Pressure::parse_text(&text)
            .map_err(|(line, reason)| self.dir.parse_error(file, &line, reason))
    }

    /// Whether PSI accounting is on for this cgroup (`cgroup.pressure`, Linux 6.1+).
    ///
    /// ```no_run
    /// assert!(qube_cgroup::Cgroup::root()?.create("psi")?.pressure_enabled()?);
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn pressure_enabled(&self) -> Result<bool> {
        self.dir.read_value::<Flag>("cgroup.pressure").map(|f| f.0)
    }

    /// Turns PSI accounting for this cgroup on or off (`cgroup.pressure`); off saves its
    /// cost on hot paths and hides the `*.pressure` files.
    ///
    /// ```no_run
    /// qube_cgroup::Cgroup::root()?.create("quiet")?.set_pressure_enabled(false)?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn set_pressure_enabled(&self, enabled: bool) -> Result<()> {
        self.dir.write_value("cgroup.pressure", &Flag(enabled))
    }

    /// Registers a PSI trigger: it fires when tasks of this cgroup spend `stall` or more
    /// in `kind` stall on `resource` within any `window` (psi.rst, "Monitoring for
    /// pressure thresholds"). The window must lie in 500ms..=10s and the stall must not
    /// exceed it; otherwise [`Error::InvalidValue`] and nothing is opened or written.
    /// Without CAP_SYS_RESOURCE, Linux 6.5+ takes only windows that are a multiple of 2s;
    /// its refusal of another window is an [`Error::InvalidValue`] that says so.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use qube_cgroup::{Cgroup, PressureKind, PressureResource};
    /// let cg = Cgroup::root()?.create("job")?;
    /// let trigger = cg.pressure_trigger(PressureResource::Memory, PressureKind::Full,
    ///     Duration::from_millis(50), Duration::from_secs(1))?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn pressure_trigger(
        &self,
        resource: PressureResource,
        kind: PressureKind,
        stall: Duration,
        window: Duration,
    ) -> Result<PressureTrigger> {
        let threshold = PressureThreshold::new(kind, stall, window)?;
        let file = resource.file();
        let fd = self.dir.open_file_rdwr(file)?;
        self.write_trigger(&fd, file, threshold)?;
        Ok(PressureTrigger {
            fd,
            path: self.path_of(file),
            threshold,
        })
    }

    fn write_trigger(&self, fd: &OwnedFd, file: &str, threshold: PressureThreshold) -> Result<()> {
        // The kernel parses the trigger as a C string; the NUL ends it whatever the
        // write's length (psi.rst's example writes strlen + 1 bytes as well).
        let line = format!("{threshold}\0");
        let errno = match nix::unistd::write(fd, line.as_bytes()) {
            Ok(n) if n == line.len() => return Ok(()),
            Ok(_) => Errno::EIO,
            Err(e) => e,
        };
        // Our checks passed, so the one rule left for the kernel to refuse is privilege.
        if errno == Errno::EINVAL && !threshold.unprivileged_window() {
            return Err(Error::invalid(
                "pressure trigger",
                &threshold.to_string(),
                "refused by the kernel: without CAP_SYS_RESOURCE (Linux 6.5+) the window \
                 must be a multiple of 2s",
            ));
        }
        Err(self
            .dir
            .classify(Op::Write, file, Some(threshold.to_string()), errno))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn line() -> impl Strategy<Value = PressureLine> {
        (any::<u32>(), any::<u32>(), any::<u32>(), any::<u64>()).prop_map(|(a, b, c, t)| {
            PressureLine {
                avg10: PressureAvg(a),
                avg60: PressureAvg(b),
                avg300: PressureAvg(c),
                total: Duration::from_micros(t),
            }
        })
    }

    #[test]
    fn kernel_text_of_a_cpu_file_without_full() {
        let text = "some avg10=4.81 avg60=3.72 avg300=3.06 total=24412010\n";
        let p: Pressure = text.parse().unwrap();
        assert_eq!(p.full, None);
        assert_eq!(p.some.avg300.hundredths(), 306);
        assert_eq!(p.to_string(), text);
    }

    #[test]
    fn missing_fields_are_rejected() {
        for bad in [
            "",
            "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
            "some avg10=0.00 avg60=0.00 total=0\n",
            "some avg10=0.0 avg60=0.00 avg300=0.00 total=0\n",
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=-1\n",
            "some avg10 avg60=0.00 avg300=0.00 total=0\n",
        ] {
            assert!(bad.parse::<Pressure>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn trigger_bounds_are_the_kernels() {
        let ms = Duration::from_millis;
        let ok = |s, w| PressureThreshold::new(PressureKind::Some, ms(s), ms(w)).is_ok();
        assert!(ok(1, 500) && ok(10_000, 10_000) && ok(150, 1000));
        assert!(!ok(1, 499) && !ok(1, 10_001) && !ok(0, 1000) && !ok(1001, 1000));
        assert!(
            PressureThreshold::new(PressureKind::Some, Duration::from_nanos(999), ms(1000))
                .is_err()
        );
    }

    proptest! {
        #[test]
        fn pressure_round_trips_the_kernel_text(some in line(), full in proptest::option::of(line())) {
            let p = Pressure { some, full };
            let text = p.to_string();
            prop_assert_eq!(text.parse::<Pressure>().unwrap(), p);
            prop_assert_eq!(text.parse::<Pressure>().unwrap().to_string(), text);
        }

        #[test]
        fn avg_round_trips(n: u32) {
            let avg = PressureAvg(n);
            prop_assert_eq!(avg.to_string().parse::<PressureAvg>().unwrap(), avg);
        }

        #[test]
        fn threshold_round_trips(full: bool, window in 500_000u64..=10_000_000, stall_frac in 0.0f64..=1.0) {
            let stall = ((window as f64 * stall_frac) as u64).max(1);
            let kind = if full { PressureKind::Full } else { PressureKind::Some };
            let t = PressureThreshold::new(kind, Duration::from_micros(stall), Duration::from_micros(window)).unwrap();
            prop_assert_eq!(t.to_string(), format!("{kind} {stall} {window}"));
            prop_assert_eq!(t.to_string().parse::<PressureThreshold>().unwrap(), t);
        }

        #[test]
        fn parsers_never_panic(s in "\\PC{0,120}") {
            let _ = s.parse::<Pressure>();
            let _ = s.parse::<PressureLine>();
            let _ = s.parse::<PressureAvg>();
            let _ = s.parse::<PressureThreshold>();
        }
    }
}
