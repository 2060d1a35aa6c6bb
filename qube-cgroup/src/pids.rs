//! The pids controller: a limit on the number of tasks, and how often it was hit.
//!
//! cgroup-v2.rst: "The process number controller is used to allow a cgroup to stop any new
//! tasks from being fork()'d or clone()'d after a specified limit is reached."

use crate::cgroup::Cgroup;
use crate::error::{Error, Result};
use crate::keyed::flat_stats;
use crate::value::{Count, Max};

/// The largest `pids.max` the kernel accepts: `PID_MAX_LIMIT` on 64-bit (4 Mi).
pub(crate) const PIDS_LIMIT: u64 = 4 * 1024 * 1024;

/// The pids controller of one cgroup, from [`Cgroup::pids`].
///
/// ```no_run
/// use qube_cgroup::{Cgroup, Max};
/// let cg = Cgroup::root()?.create("pids-demo")?;
/// cg.pids().set_max(Max::Limit(256))?;
/// println!("{} tasks, refused {} forks", cg.pids().current()?, cg.pids().events()?.max);
/// # Ok::<(), qube_cgroup::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Pids<'a> {
    cg: &'a Cgroup,
}

impl Cgroup {
    /// The pids controller's files.
    ///
    /// ```no_run
    /// let tasks = qube_cgroup::Cgroup::open_self()?.pids().current()?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn pids(&self) -> Pids<'_> {
        Pids { cg: self }
    }
}

impl Pids<'_> {
    /// The most tasks (processes and threads) the group and its descendants may hold
    /// (`pids.max`). A fork past it fails with EAGAIN.
    ///
    /// ```no_run
    /// let limit = qube_cgroup::Cgroup::open_self()?.pids().max()?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn max(&self) -> Result<Max<u64>> {
        Ok(match self.cg.dir.read_value::<Max<Count>>("pids.max")? {
            Max::Max => Max::Max,
            Max::Limit(Count(n)) => Max::Limit(n),
        })
    }

    /// Sets the limit, checked first to be at most 4194304 (`PID_MAX_LIMIT`).
    /// Lowering it below [`current`](Self::current) kills nothing; it only stops forks.
    ///
    /// ```no_run
    /// let cg = qube_cgroup::Cgroup::root()?.create("few")?;
    /// cg.pids().set_max(qube_cgroup::Max::Limit(16))?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn set_max(&self, limit: Max<u64>) -> Result<()> {
        validate_max(limit)?;
        self.cg.dir.write_value("pids.max", &limit)
    }

    /// The tasks in the group and its descendants now (`pids.current`). Zombies count
    /// until they are reaped.
    ///
    /// ```no_run
    /// assert!(qube_cgroup::Cgroup::open_self()?.pids().current()? >= 1);
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn current(&self) -> Result<u64> {
        self.cg.dir.read_value::<Count>("pids.current").map(|c| c.0)
    }

    /// The highest [`current`](Self::current) seen (`pids.peak`; Linux 6.2+ and some
    /// distribution kernels, [`Error::Unsupported`] elsewhere).
    ///
    /// ```no_run
    /// let peak = qube_cgroup::Cgroup::open_self()?.pids().peak()?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn peak(&self) -> Result<u64> {
        self.cg.dir.read_value::<Count>("pids.peak").map(|c| c.0)
    }

    /// How often a fork in the group was refused (`pids.events`).
    ///
    /// ```no_run
    /// let refused = qube_cgroup::Cgroup::open_self()?.pids().events()?.max;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn events(&self) -> Result<PidsEvents> {
        self.cg.dir.read_parsed(PidsEvents::FILE, PidsEvents::parse)
    }
}

/// Checks a `pids.max` value against the kernel's bound (`PIDS_MAX` in kernel/cgroup/pids.c).
pub(crate) fn validate_max(limit: Max<u64>) -> Result<()> {
    match limit {
        Max::Limit(n) if n > PIDS_LIMIT => Err(Error::invalid(
            "pids.max",
            &n.to_string(),
            format!(
                "must be at most {PIDS_LIMIT} (the kernel's PID_MAX_LIMIT); use max for no limit"
            ),
        )),
        _ => Ok(()),
    }
}

flat_stats! {
    /// `pids.events`: `max` counts the forks refused because a `pids.max` was reached.
    ///
    /// ```
    /// let ev = qube_cgroup::PidsEvents::parse("max 3\n").unwrap();
    /// assert_eq!(ev.max, 3);
    /// ```
    PidsEvents, "pids.events" {
        /// Forks refused by a `pids.max`.
        max: "max",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn events_round_trip_the_kernel_text(n: u64, extra: u64) {
            let text = format!("max {n}\nmax.imposed {extra}\n");
            let ev = PidsEvents::parse(text.clone()).unwrap();
            prop_assert_eq!(ev.max, n);
            prop_assert_eq!(ev.get("max.imposed"), Some(extra));
            prop_assert_eq!(ev.to_string(), text);
        }

        #[test]
        fn events_parser_never_panics(s in "\\PC{0,64}") {
            let _ = PidsEvents::parse(s);
        }

        #[test]
        fn limits_above_pid_max_limit_are_refused(n: u64) {
            prop_assert_eq!(validate_max(Max::Limit(n)).is_ok(), n <= PIDS_LIMIT);
        }
    }
}
