//! `cgroup.freeze` and `cgroup.kill`: stopping and ending every process of a subtree.

use std::time::Duration;

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
    /// `cgroup.kill` (Linux 5.14+). On older kernels it freezes the cgroup, signals each
    /// pid in `cgroup.procs` of the subtree, and thaws, so no fork slips through.
    /// Returns without waiting; see [`wait_unpopulated`](Cgroup::wait_unpopulated).
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

    fn kill_each(&self) -> Result<()> {
        let frozen = self.freeze(Duration::from_secs(5)).is_ok();
        let result = self.signal_subtree(Signal::SIGKILL);
        if frozen {
            let _ = self.thaw(Duration::from_secs(5));
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
