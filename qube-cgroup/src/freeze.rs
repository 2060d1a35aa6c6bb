//! `cgroup.freeze` and `cgroup.kill`: stopping and ending every process of a subtree.

use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cgroup::Cgroup;
use crate::error::{Error, Result};
use crate::value::Flag;

impl Cgroup {
    /// Freezes the cgroup and its descendants and waits until `cgroup.events` says
    /// `frozen 1`. If that does not happen in time the freeze is undone and
    /// [`Error::Timeout`] returned.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let cg = qube_cgroup::Cgroup::root()?.create("frozen")?;
    /// cg.freeze(Duration::from_secs(5))?;
    /// cg.thaw(Duration::from_secs(5))?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn freeze(&self, timeout: Duration) -> Result<()> {
        self.dir.write_value("cgroup.freeze", &Flag(true))?;
        match self.wait_events("frozen 1", timeout, |ev| ev.frozen) {
            Ok(_) => Ok(()),
            Err(err) => {
                let _ = self.dir.write_value("cgroup.freeze", &Flag(false));
                Err(err)
            }
        }
    }

    /// Thaws the cgroup and waits until `cgroup.events` says `frozen 0`.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// qube_cgroup::Cgroup::root()?.create("thawed")?.thaw(Duration::from_secs(5))?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn thaw(&self, timeout: Duration) -> Result<()> {
        self.dir.write_value("cgroup.freeze", &Flag(false))?;
        self.wait_events("frozen 0", timeout, |ev| !ev.frozen)
            .map(drop)
    }

    /// Whether `cgroup.freeze` asks for this cgroup to be frozen.
    ///
    /// ```no_run
    /// assert!(!qube_cgroup::Cgroup::root()?.create("f")?.freeze_requested()?);
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn freeze_requested(&self) -> Result<bool> {
        self.dir.read_value::<Flag>("cgroup.freeze").map(|f| f.0)
    }

    /// Sends SIGKILL to every process in the cgroup and its descendants, through
    /// `cgroup.kill` (Linux 5.14+). On older kernels it freezes the cgroup and signals
    /// each pid in `cgroup.procs` of the subtree, again until the subtree is empty (or
    /// [`Error::Timeout`] after 5s), then thaws, so no fork slips through. With
    /// `cgroup.kill` it returns without waiting; see
    /// [`wait_unpopulated`](Cgroup::wait_unpopulated).
    ///
    /// ```no_run
    /// let cg = qube_cgroup::Cgroup::root()?.create("doomed")?;
    /// cg.kill()?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn kill(&self) -> Result<()> {
        match self.dir.write_value("cgroup.kill", &Flag(true)) {
            Err(Error::Unsupported { .. }) => self.kill_each(),
            other => other,
        }
    }

    /// The fallback for kernels without `cgroup.kill`. One round of signals is not
    /// enough: if the freeze did not complete, a process can fork between the read of
    /// `cgroup.procs` and the signal, and a process moved in meanwhile is missed. So it
    /// signals the subtree again until `cgroup.events` says `populated 0`, or fails with
    /// [`Error::Timeout`] once `KILL_TIMEOUT` has passed.
    fn kill_each(&self) -> Result<()> {
        const KILL_TIMEOUT: Duration = Duration::from_secs(5);
        // How long one round waits for the group to empty before signalling again.
        const ROUND: Duration = Duration::from_millis(50);
        let deadline = Instant::now() + KILL_TIMEOUT;
        let frozen = self.freeze(KILL_TIMEOUT).is_ok();
        let result = loop {
            if let Err(e) = self.signal_subtree(Signal::SIGKILL) {
                break Err(e);
            }
            // Frozen processes die of SIGKILL without a thaw (cgroup-v2.rst, "Core
            // Interface Files": "processes in the frozen cgroup can be killed by a fatal
            // signal"), so the wait can succeed while still frozen.
            let left = deadline.saturating_duration_since(Instant::now());
            match self.wait_events("populated 0", left.min(ROUND), |ev| !ev.populated) {
                Ok(_) => break Ok(()),
                Err(Error::Timeout { .. }) if !left.is_zero() => {}
                Err(Error::Timeout { op, path, what, .. }) => {
                    break Err(Error::Timeout {
                        op,
                        path,
                        what,
                        after: KILL_TIMEOUT,
                    })
                }
                Err(e) => break Err(e),
            }
        };
        if frozen {
            let _ = self.thaw(KILL_TIMEOUT);
        }
        result
    }

    /// Sends `signal` to every process of this cgroup and its descendants.
    ///
    /// ```no_run
    /// use nix::sys::signal::Signal;
    /// qube_cgroup::Cgroup::root()?.create("sig")?.signal_subtree(Signal::SIGTERM)?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn signal_subtree(&self, signal: Signal) -> Result<()> {
        for child in self.children()? {
            self.open_child(&child)?.signal_subtree(signal)?;
        }
        for pid in self.procs()? {
            let Ok(raw) = i32::try_from(pid) else {
                continue;
            };
            // ESRCH: it exited on its own meanwhile, which is what we want anyway.
            let _ = kill(Pid::from_raw(raw), signal);
        }
        Ok(())
    }
}
