//! Clean-up: kill what is left, wait for `populated 0`, remove deepest first; and the
//! `Drop` that does it for handles that own their cgroup.

use std::time::{Duration, Instant};

use crate::cgroup::{Cgroup, DROP_TIMEOUT};
use crate::error::{Error, Result};

impl Cgroup {
    /// Kills every process in the cgroup and its descendants, waits (on `cgroup.events`,
    /// not a sleep loop) until none is left, then removes the child cgroups deepest first
    /// and the cgroup itself. Succeeds when the cgroup is already gone.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// let cg = qube_cgroup::Cgroup::root()?.create("job")?.persist();
    /// cg.kill_and_remove(Duration::from_secs(5))?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn kill_and_remove(&self, timeout: Duration) -> Result<()> {
        // The usual case, an empty leaf whose processes have exited, takes one rmdir.
        if self.try_rmdir()? {
            return Ok(());
        }
        let deadline = Instant::now() + timeout;
        match self.kill() {
            Err(Error::NotFound { .. }) => return Ok(()),
            other => other?,
        }
        self.wait_unpopulated(deadline.saturating_duration_since(Instant::now()))?;
        self.remove_tree()
    }

    /// Removes the empty subtree, children before parents.
    fn remove_tree(&self) -> Result<()> {
        for name in self.children()? {
            self.open_child(&name)?.remove_tree()?;
        }
        self.remove()
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if self
            .remove_on_drop
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            // Drop cannot report; a caller who needs the error calls kill_and_remove first.
            let _ = self.kill_and_remove(DROP_TIMEOUT);
        }
    }
}
