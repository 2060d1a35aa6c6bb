//! How a container ended: an exit code or a signal, and whether the OOM killer struck.

use std::fmt;
use std::path::Path;

use nix::libc;
use nix::sys::signal::Signal;

use crate::error::{Error, Result, Step};

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

    /// How a workload ended, from the file its reaper wrote
    /// ([`Command::exit_status_file`](crate::Command::exit_status_file)): `None` while
    /// the file is empty (the workload still runs, or its reaper was killed before it
    /// could write). Whether the OOM killer struck is not in the file: that is the
    /// cgroup's `memory.events`.
    ///
    /// ```no_run
    /// use qube_runtime::ExitStatus;
    /// match ExitStatus::read_file("/var/lib/my-supervisor/web/exit-status")? {
    ///     Some(status) => println!("web {status}"),
    ///     None => println!("web has not ended"),
    /// }
    /// # Ok::<(), qube_runtime::Error>(())
    /// ```
    pub fn read_file(path: impl AsRef<Path>) -> Result<Option<ExitStatus>> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::io(Step::ReadExitStatus, path, &e))?;
        if text.is_empty() {
            return Ok(None);
        }
        parse_status_line(&text)
            .map(Some)
            .ok_or_else(|| Error::BadExitStatusFile {
                path: path.to_owned(),
                text,
            })
    }
}

/// The longest line [`write_status_line`] writes: "exited " or "killed ", ten digits, "\n".
pub(crate) const STATUS_LINE_MAX: usize = 18;

/// Formats a raw wait status as the exit status file's one line, `exited CODE` or
/// `killed SIGNAL`, into `buf`; returns its length. Runs in the reaper, after the clone:
/// no allocation, no formatting machinery.
pub(crate) fn write_status_line(status: libc::c_int, buf: &mut [u8; STATUS_LINE_MAX]) -> usize {
    let (word, number): (&[u8], libc::c_int) = if libc::WIFEXITED(status) {
        (b"exited ", libc::WEXITSTATUS(status))
    } else {
        (b"killed ", libc::WTERMSIG(status))
    };
    buf[..word.len()].copy_from_slice(word);
    let mut len = word.len();
    let mut digits = [0u8; 10];
    let mut n = number.unsigned_abs();
    let mut count = 0;
    loop {
        digits[count] = b'0' + (n % 10) as u8;
        count += 1;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &digit in digits[..count].iter().rev() {
        buf[len] = digit;
        len += 1;
    }
    buf[len] = b'\n';
    len + 1
}

/// The inverse of [`write_status_line`].
fn parse_status_line(text: &str) -> Option<ExitStatus> {
    let (word, number) = text.strip_suffix('\n')?.split_once(' ')?;
    if number.starts_with('+') {
        return None;
    }
    let number: i32 = number.parse().ok()?;
    let end = match word {
        "exited" => End::Code(number),
        "killed" => End::Signal(number),
        _ => return None,
    };
    Some(ExitStatus {
        end,
        oom_killed: false,
    })
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
    use proptest::prelude::*;

    use super::*;

    fn line(raw: libc::c_int) -> String {
        let mut buf = [0u8; STATUS_LINE_MAX];
        let len = write_status_line(raw, &mut buf);
        String::from_utf8(buf[..len].to_vec()).unwrap()
    }

    #[test]
    fn status_lines_read_as_words() {
        assert_eq!(line(0), "exited 0\n");
        assert_eq!(line(3 << 8), "exited 3\n");
        assert_eq!(line(255 << 8), "exited 255\n");
        assert_eq!(line(libc::SIGKILL), "killed 9\n");
        for bad in [
            "",
            "exited 3",
            "exited\n",
            "exited x\n",
            "died 3\n",
            "exited +3\n",
        ] {
            assert_eq!(parse_status_line(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn status_lines_round_trip_every_wait_status(code in 0..=255i32, signal in 1..=64i32) {
            for raw in [code << 8, signal] {
                prop_assert_eq!(parse_status_line(&line(raw)), Some(ExitStatus::from_raw(raw)));
            }
        }
    }

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
