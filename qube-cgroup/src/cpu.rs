//! The cpu controller: bandwidth (`cpu.max`, `cpu.max.burst`), weight, idle, and `cpu.stat`.
//!
//! cgroup-v2.rst: "cpu.max: The maximum bandwidth limit. It's in the following format::
//! $MAX $PERIOD which indicates that the group may consume up to $MAX in each $PERIOD
//! duration." Both are in microseconds.

use std::fmt;
use std::str::FromStr;

use crate::cgroup::Cgroup;
use crate::error::{Error, Result};
use crate::keyed::{flat_stats, setting};
use crate::value::{parse_u64, Count, Flag, Max, Weight};

/// The shortest period the kernel accepts, in microseconds (1 ms).
pub(crate) const MIN_PERIOD_USEC: u64 = 1_000;
/// The longest period the kernel accepts, in microseconds (1 s).
pub(crate) const MAX_PERIOD_USEC: u64 = 1_000_000;
/// The smallest quota the kernel accepts, in microseconds (1 ms).
pub(crate) const MIN_QUOTA_USEC: u64 = 1_000;
/// The largest quota (and quota + burst) the kernel accepts, in microseconds: the
/// scheduler keeps bandwidth in 44 bits (`MAX_BW` in kernel/sched/sched.h).
pub(crate) const MAX_QUOTA_USEC: u64 = (1 << 44) - 1;
/// The kernel's default period, in microseconds (100 ms).
pub(crate) const DEFAULT_PERIOD_USEC: u64 = 100_000;

/// A bandwidth limit, `cpu.max`: at most `quota` microseconds of CPU time in every
/// `period` microseconds, summed over all CPUs (so a quota of twice the period is two CPUs).
///
/// `Display` writes what the kernel writes (`max 100000`, `150000 100000`) and `FromStr`
/// reads it back. Whether the kernel would accept the numbers is checked by
/// [`validate`](CpuMax::validate), which every write does first.
///
/// ```
/// use qube_cgroup::{CpuMax, Max};
/// let one_and_a_half = CpuMax::cpus(1.5);
/// assert_eq!(one_and_a_half, CpuMax { quota: Max::Limit(150_000), period: 100_000 });
/// assert_eq!(one_and_a_half.to_string(), "150000 100000");
/// assert_eq!("max 100000".parse::<CpuMax>().unwrap(), CpuMax::UNLIMITED);
/// assert!(CpuMax { quota: Max::Limit(10), period: 100_000 }.validate().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CpuMax {
    /// CPU time allowed per period, in microseconds; `max` for no limit.
    pub quota: Max<u64>,
    /// The length of a period, in microseconds.
    pub period: u64,
}

impl CpuMax {
    /// No limit, with the kernel's default period: what a new cgroup has.
    ///
    /// ```
    /// assert_eq!(qube_cgroup::CpuMax::UNLIMITED.to_string(), "max 100000");
    /// ```
    pub const UNLIMITED: CpuMax = CpuMax {
        quota: Max::Max,
        period: DEFAULT_PERIOD_USEC,
    };

    /// A limit of `cpus` CPUs' worth of time, over the default 100 ms period.
    ///
    /// The quota is rounded to whole microseconds. Nonsense (`0.0`, negative, NaN) gives
    /// a value that [`validate`](CpuMax::validate) rejects, so nothing is ever written.
    ///
    /// ```
    /// use qube_cgroup::{CpuMax, Max};
    /// assert_eq!(CpuMax::cpus(0.25).quota, Max::Limit(25_000));
    /// assert!(CpuMax::cpus(f64::NAN).validate().is_err());
    /// ```
    pub fn cpus(cpus: f64) -> CpuMax {
        // `as` saturates: NaN and negatives become 0, which validation refuses.
        let quota = (cpus * DEFAULT_PERIOD_USEC as f64).round() as u64;
        CpuMax {
            quota: Max::Limit(quota),
            period: DEFAULT_PERIOD_USEC,
        }
    }

    /// The limit as a number of CPUs, or `None` for no limit.
    ///
    /// ```
    /// assert_eq!(qube_cgroup::CpuMax::cpus(2.5).as_cpus(), Some(2.5));
    /// assert_eq!(qube_cgroup::CpuMax::UNLIMITED.as_cpus(), None);
    /// ```
    pub fn as_cpus(&self) -> Option<f64> {
        let quota = self.quota.limit()?;
        Some(quota as f64 / self.period.max(1) as f64)
    }

    /// Checks the numbers against the kernel's bounds (`tg_set_cfs_bandwidth`): a period
    /// of 1 ms to 1 s and a quota of at least 1 ms.
    ///
    /// ```
    /// use qube_cgroup::{CpuMax, Max};
    /// assert!(CpuMax::cpus(0.5).validate().is_ok());
    /// assert!(CpuMax { quota: Max::Max, period: 999 }.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        let invalid = |reason: String| Err(Error::invalid("cpu.max", &self.to_string(), reason));
        if !(MIN_PERIOD_USEC..=MAX_PERIOD_USEC).contains(&self.period) {
            return invalid(format!(
                "the period must lie in {MIN_PERIOD_USEC}..={MAX_PERIOD_USEC} microseconds"
            ));
        }
        match self.quota {
            Max::Limit(quota) if quota < MIN_QUOTA_USEC => invalid(format!(
                "the quota must be at least {MIN_QUOTA_USEC} microseconds"
            )),
            Max::Limit(quota) if quota > MAX_QUOTA_USEC => invalid(format!(
                "the quota must be at most {MAX_QUOTA_USEC} microseconds; use max for no limit"
            )),
            _ => Ok(()),
        }
    }
}

impl Default for CpuMax {
    fn default() -> CpuMax {
        CpuMax::UNLIMITED
    }
}

impl fmt::Display for CpuMax {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.quota, self.period)
    }
}

impl FromStr for CpuMax {
    type Err = Error;

    fn from_str(s: &str) -> Result<CpuMax> {
        let invalid = || {
            Error::invalid(
                "cpu.max",
                s,
                "expected `QUOTA PERIOD` in microseconds, such as `max 100000` or `50000 100000`",
            )
        };
        let mut words = s.split_ascii_whitespace();
        let (Some(quota), Some(period), None) = (words.next(), words.next(), words.next()) else {
            return Err(invalid());
        };
        let quota = match quota {
            "max" => Max::Max,
            n => Max::Limit(n.parse().map_err(|_| invalid())?),
        };
        let period = period.parse().map_err(|_| invalid())?;
        Ok(CpuMax { quota, period })
    }
}

/// A nice value for `cpu.weight.nice`, from -20 (most CPU) to 19 (least).
///
/// ```
/// use qube_cgroup::Nice;
/// assert_eq!("-5".parse::<Nice>().unwrap().get(), -5);
/// assert!(Nice::new(20).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Nice(i8);

impl Nice {
    /// A nice value, checked to lie in -20..=19.
    ///
    /// ```
    /// assert_eq!(qube_cgroup::Nice::new(19).unwrap().get(), 19);
    /// ```
    pub fn new(nice: i8) -> Result<Nice> {
        if (-20..=19).contains(&nice) {
            Ok(Nice(nice))
        } else {
            Err(Error::invalid(
                "cpu.weight.nice",
                &nice.to_string(),
                "must lie in -20..=19",
            ))
        }
    }

    /// The nice value as a number.
    ///
    /// ```
    /// assert_eq!(qube_cgroup::Nice::default().get(), 0);
    /// ```
    pub fn get(self) -> i8 {
        self.0
    }
}

impl fmt::Display for Nice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Nice {
    type Err = Error;

    fn from_str(s: &str) -> Result<Nice> {
        let n: i8 = s.parse().map_err(|_| {
            Error::invalid("cpu.weight.nice", s, "expected a whole number in -20..=19")
        })?;
        Nice::new(n)
    }
}

/// The cpu controller of one cgroup, from [`Cgroup::cpu`].
///
/// ```no_run
/// use qube_cgroup::{Cgroup, CpuMax, Weight};
/// let cg = Cgroup::root()?.create("cpu-demo")?;
/// cg.cpu().set_max(CpuMax::cpus(1.5))?;
/// cg.cpu().set_weight(Weight::new(200)?)?;
/// println!("throttled {} times", cg.cpu().stat()?.nr_throttled);
/// # Ok::<(), qube_cgroup::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Cpu<'a> {
    cg: &'a Cgroup,
}

impl Cgroup {
    /// The cpu controller's files.
    ///
    /// ```no_run
    /// let usage = qube_cgroup::Cgroup::open_self()?.cpu().stat()?.usage_usec;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn cpu(&self) -> Cpu<'_> {
        Cpu { cg: self }
    }
}

impl Cpu<'_> {
    setting!(cpu:
        /// Whether the group runs at the lowest priority, below nice 19 (Linux 5.15+).
        ///
        /// An idle group has no weight: `cpu.weight` reads 0 and refuses writes.
        idle, set_idle, "cpu.idle", Flag
    );
    setting!(cpu:
        /// The weight expressed as a nice value; writing it sets [`weight`](Self::weight).
        weight_nice, set_weight_nice, "cpu.weight.nice", Nice
    );

    /// The bandwidth limit (`cpu.max`).
    ///
    /// ```no_run
    /// let limit = qube_cgroup::Cgroup::open_self()?.cpu().max()?;
    /// println!("{:?} CPUs", limit.as_cpus());
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn max(&self) -> Result<CpuMax> {
        self.cg.dir.read_value("cpu.max")
    }

    /// Sets the bandwidth limit after [`CpuMax::validate`]. The kernel refuses a quota
    /// smaller than the current [`max_burst`](Self::max_burst).
    ///
    /// ```no_run
    /// let cg = qube_cgroup::Cgroup::root()?.create("half")?;
    /// cg.cpu().set_max(qube_cgroup::CpuMax::cpus(0.5))?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn set_max(&self, limit: CpuMax) -> Result<()> {
        limit.validate()?;
        self.cg.dir.write_value("cpu.max", &limit)
    }

    /// The relative share of CPU time against siblings (`cpu.weight`, 1..=10000).
    ///
    /// An idle group ([`idle`](Self::idle)) has no weight and gives [`Error::Parse`].
    ///
    /// ```no_run
    /// let w = qube_cgroup::Cgroup::open_self()?.cpu().weight()?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn weight(&self) -> Result<Weight> {
        const FILE: &str = "cpu.weight";
        let Count(n) = self.cg.dir.read_value::<Count>(FILE)?;
        if n == 0 {
            let reason = "the group is idle (cpu.idle is 1) and has no weight";
            return Err(self.cg.dir.parse_error(FILE, "0", reason));
        }
        u16::try_from(n)
            .ok()
            .and_then(|n| Weight::new(n).ok())
            .ok_or_else(|| {
                let reason = "expected a weight in 1..=10000";
                self.cg.dir.parse_error(FILE, &n.to_string(), reason)
            })
    }

    /// Sets the weight; see [`weight`](Self::weight).
    ///
    /// ```no_run
    /// let cg = qube_cgroup::Cgroup::root()?.create("heavy")?;
    /// cg.cpu().set_weight(qube_cgroup::Weight::new(500)?)?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn set_weight(&self, weight: Weight) -> Result<()> {
        self.cg.dir.write_value("cpu.weight", &weight)
    }

    /// How far past its quota the group may run in one period, in microseconds, from
    /// what it left unused before (`cpu.max.burst`, Linux 5.14+).
    ///
    /// ```no_run
    /// let burst = qube_cgroup::Cgroup::open_self()?.cpu().max_burst()?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn max_burst(&self) -> Result<u64> {
        self.cg
            .dir
            .read_value::<Count>("cpu.max.burst")
            .map(|c| c.0)
    }

    /// Sets the burst allowance; the kernel refuses one larger than the quota.
    ///
    /// ```no_run
    /// let cg = qube_cgroup::Cgroup::root()?.create("bursty")?;
    /// cg.cpu().set_max(qube_cgroup::CpuMax::cpus(1.0))?;
    /// cg.cpu().set_max_burst(50_000)?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn set_max_burst(&self, usec: u64) -> Result<()> {
        validate_burst(usec, None)?;
        self.cg.dir.write_value("cpu.max.burst", &usec)
    }

    /// CPU time used and throttling figures (`cpu.stat`), present in every cgroup.
    ///
    /// ```no_run
    /// let stat = qube_cgroup::Cgroup::open_self()?.cpu().stat()?;
    /// println!("{} µs, throttled {} µs", stat.usage_usec, stat.throttled_usec);
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn stat(&self) -> Result<CpuStat> {
        self.cg.dir.read_parsed(CpuStat::FILE, CpuStat::parse)
    }
}

/// Checks a burst against the kernel's bounds and, when known, the quota it goes with.
pub(crate) fn validate_burst(burst: u64, limit: Option<&CpuMax>) -> Result<()> {
    let invalid = |reason: String| Err(Error::invalid("cpu.max.burst", &burst.to_string(), reason));
    let quota = limit.and_then(|l| l.quota.limit());
    match quota {
        Some(quota) if burst > quota => invalid(format!(
            "must not exceed the quota of cpu.max ({quota} microseconds)"
        )),
        Some(quota) if burst + quota > MAX_QUOTA_USEC => invalid(format!(
            "quota + burst must not exceed {MAX_QUOTA_USEC} microseconds"
        )),
        _ if burst > MAX_QUOTA_USEC => {
            invalid(format!("must not exceed {MAX_QUOTA_USEC} microseconds"))
        }
        _ => Ok(()),
    }
}

/// Parses a `cpu.max.burst` snapshot, for ordering writes.
pub(crate) fn parse_burst(text: &str) -> Result<u64> {
    parse_u64("cpu.max.burst", text.trim_end())
}

flat_stats! {
    /// `cpu.stat`: CPU time and bandwidth throttling, in microseconds; every other key
    /// (`core_sched.force_idle_usec`, ...) through [`get`](CpuStat::get).
    ///
    /// ```
    /// let stat = qube_cgroup::CpuStat::parse("usage_usec 900\nuser_usec 600\nsystem_usec 300\nnr_throttled 4\n").unwrap();
    /// assert_eq!((stat.usage_usec, stat.nr_throttled), (900, 4));
    /// ```
    CpuStat, "cpu.stat" {
        /// Total CPU time.
        usage_usec: "usage_usec",
        /// CPU time in user mode.
        user_usec: "user_usec",
        /// CPU time in the kernel.
        system_usec: "system_usec",
        /// Enforcement periods in which the group had runnable tasks.
        nr_periods: "nr_periods",
        /// Periods in which the group ran out of quota.
        nr_throttled: "nr_throttled",
        /// Time spent throttled.
        throttled_usec: "throttled_usec",
        /// Periods in which the group used its burst allowance.
        nr_bursts: "nr_bursts",
        /// CPU time used beyond the quota, from the burst allowance.
        burst_usec: "burst_usec",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cpu_max() -> impl Strategy<Value = CpuMax> {
        (proptest::option::of(any::<u64>()), any::<u64>()).prop_map(|(q, period)| CpuMax {
            quota: q.map_or(Max::Max, Max::Limit),
            period,
        })
    }

    #[test]
    fn kernel_forms_parse() {
        assert_eq!("max 100000".parse::<CpuMax>().unwrap(), CpuMax::UNLIMITED);
        let half: CpuMax = "50000 100000\n".trim_end().parse().unwrap();
        assert_eq!(half.as_cpus(), Some(0.5));
        for bad in [
            "",
            "max",
            "50000",
            "max max",
            "-1 100000",
            "1 2 3",
            "1.5 100000",
        ] {
            assert!(bad.parse::<CpuMax>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn kernel_bounds_are_checked() {
        let at = |quota, period| CpuMax {
            quota: Max::Limit(quota),
            period,
        };
        assert!(at(1000, 1000).validate().is_ok());
        assert!(at(MAX_QUOTA_USEC, MAX_PERIOD_USEC).validate().is_ok());
        assert!(at(999, 100_000).validate().is_err());
        assert!(at(MAX_QUOTA_USEC + 1, 100_000).validate().is_err());
        assert!(at(100_000, 999).validate().is_err());
        assert!(at(100_000, 1_000_001).validate().is_err());
        assert!(CpuMax::cpus(-1.0).validate().is_err());
        assert!(CpuMax::cpus(f64::INFINITY).validate().is_err());
    }

    #[test]
    fn burst_fits_in_the_quota() {
        let limit = CpuMax::cpus(0.5);
        assert!(validate_burst(50_000, Some(&limit)).is_ok());
        assert!(validate_burst(50_001, Some(&limit)).is_err());
        assert!(validate_burst(10_000_000, Some(&CpuMax::UNLIMITED)).is_ok());
        assert!(validate_burst(MAX_QUOTA_USEC + 1, None).is_err());
    }

    proptest! {
        #[test]
        fn cpu_max_round_trips(limit in cpu_max()) {
            prop_assert_eq!(limit.to_string().parse::<CpuMax>().unwrap(), limit);
        }

        #[test]
        fn nice_round_trips(n in -20i8..=19) {
            let nice = Nice::new(n).unwrap();
            prop_assert_eq!(nice.to_string().parse::<Nice>().unwrap(), nice);
        }

        #[test]
        fn parsers_never_panic(s in "\\PC{0,64}") {
            let _ = s.parse::<CpuMax>();
            let _ = s.parse::<Nice>();
            let _ = CpuStat::parse(s);
        }

        #[test]
        fn stat_round_trips_the_kernel_text(values in proptest::collection::vec(any::<u64>(), 8)) {
            let keys = ["usage_usec", "user_usec", "system_usec", "nr_periods", "nr_throttled",
                "throttled_usec", "nr_bursts", "burst_usec"];
            let text: String = keys.iter().zip(&values).map(|(k, v)| format!("{k} {v}\n")).collect();
            let stat = CpuStat::parse(text.clone()).unwrap();
            prop_assert_eq!(stat.to_string(), text.clone());
            prop_assert_eq!(stat.usage_usec, values[0]);
            prop_assert_eq!(stat.burst_usec, values[7]);
            prop_assert_eq!(text.parse::<CpuStat>().unwrap(), stat);
        }
    }
}
