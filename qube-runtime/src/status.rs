//! How a container ended: an exit code or a signal, and whether the OOM killer struck.

use std::fmt;

use nix::libc;
use nix::sys::signal::Signal;

/// How the container's workload ended.
///
/// With a pid namespace and the built-in reaper as pid 1, this is the workload's own
/// status (the reaper hands it over), not the reaper's. `oom_killed` is true when
/// `memory.events` `oom_kill` of the container's cgroup rose during the run.
///
/// ```
/// use nix::sys::signal::Signal;
/// use qube_runtime::ExitStatus;
/// assert_eq!(ExitStatus::from_code(1).to_string(), "exited with code 1");
/// let oom = ExitStatus::from_signal(Signal::SIGKILL).with_oom_killed(true);
/// assert_eq!(oom.to_string(), "killed by SIGKILL (OOM-killed)");
/// assert!(oom.oom_killed() && !oom.success());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExitStatus {
    end: End,
    oom_killed: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum End {
    Code(i32),
    Signal(i32),
    /// An adopted container is not our child: its status cannot be collected.
    Unknown,
}

impl ExitStatus {
    /// A status for an exit with `code`.
    ///
    /// ```
    /// assert!(qube_runtime::ExitStatus::from_code(0).success());
    /// ```
    pub fn from_code(code: i32) -> ExitStatus {
        ExitStatus {
            end: End::Code(code),
            oom_killed: false,
        }
    }

    /// A status for a death by `signal`.
    ///
    /// ```
    /// use nix::sys::signal::Signal;
    /// let st = qube_runtime::ExitStatus::from_signal(Signal::SIGTERM);
    /// assert_eq!(st.signal(), Some(Signal::SIGTERM));
    /// ```
    pub fn from_signal(signal: Signal) -> ExitStatus {
        ExitStatus {
            end: End::Signal(signal as i32),
            oom_killed: false,
        }
    }

    /// The status of a process that ended but was not our child (see
    /// [`Container::adopt`](crate::Container::adopt)): neither code nor signal is known.
    ///
    /// ```
    /// let st = qube_runtime::ExitStatus::unknown();
    /// assert_eq!((st.code(), st.signal()), (None, None));
    /// ```
    pub fn unknown() -> ExitStatus {
        ExitStatus {
            end: End::Unknown,
            oom_killed: false,
        }
    }

    /// Decodes a raw `wait(2)` status word.
    ///
    /// ```
    /// let st = qube_runtime::ExitStatus::from_raw(3 << 8);
    /// assert_eq!(st.code(), Some(3));
    /// ```
    pub fn from_raw(status: i32) -> ExitStatus {
        let end = if libc::WIFEXITED(status) {
            End::Code(libc::WEXITSTATUS(status))
        } else if libc::WIFSIGNALED(status) {
            End::Signal(libc::WTERMSIG(status))
        } else {
            End::Unknown
        };
        ExitStatus {
            end,
            oom_killed: false,
        }
    }

    /// The same status, marked as OOM-killed or not.
    ///
    /// ```
    /// let st = qube_runtime::ExitStatus::from_code(137).with_oom_killed(true);
    /// assert!(st.oom_killed());
    /// ```
    pub fn with_oom_killed(mut self, oom_killed: bool) -> ExitStatus {
        self.oom_killed = oom_killed;
        self
    }

    /// The exit code, if the workload exited.
    ///
    /// ```
    /// assert_eq!(qube_runtime::ExitStatus::from_code(2).code(), Some(2));
    /// ```
    pub fn code(&self) -> Option<i32> {
        match self.end {
            End::Code(code) => Some(code),
            _ => None,
        }
    }

    /// The signal that killed the workload, if one did.
    ///
    /// ```
    /// use nix::sys::signal::Signal;
    /// assert_eq!(qube_runtime::ExitStatus::from_code(0).signal(), None::<Signal>);
    /// ```
    pub fn signal(&self) -> Option<Signal> {
        match self.end {
            End::Signal(n) => Signal::try_from(n).ok(),
            _ => None,
        }
    }

    /// Whether the workload exited with code 0.
    ///
    /// ```
    /// assert!(!qube_runtime::ExitStatus::from_code(1).success());
    /// ```
    pub fn success(&self) -> bool {
        self.end == End::Code(0)
    }

    /// Whether the OOM killer killed a process of the container during the run
    /// (`memory.events` `oom_kill` went up).
    ///
    /// ```
    /// assert!(!qube_runtime::ExitStatus::from_code(0).oom_killed());
    /// ```
    pub fn oom_killed(&self) -> bool {
        self.oom_killed
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.end {
            End::Code(code) => write!(f, "exited with code {code}")?,
            End::Signal(n) => match Signal::try_from(n) {
                Ok(signal) => write!(f, "killed by {}", signal.as_str())?,
                Err(_) => write!(f, "killed by signal {n}")?,
            },
            End::Unknown => f.write_str("exited (status not available: not our child)")?,
        }
        if self.oom_killed {
            f.write_str(" (OOM-killed)")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_statuses_decode() {
        assert_eq!(ExitStatus::from_raw(0).code(), Some(0));
        assert_eq!(ExitStatus::from_raw(9).signal(), Some(Signal::SIGKILL));
        assert_eq!(ExitStatus::from_raw(9).to_string(), "killed by SIGKILL");
        assert_eq!(
            ExitStatus::from_raw(1 << 8).to_string(),
            "exited with code 1"
        );
    }
}
