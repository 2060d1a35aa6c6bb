//! The one error type of the crate, and the [`Step`] every error names.
//!
//! An error says which step of the launch (or of handling a running container) failed,
//! on which path, and with which errno. Failures inside the child between `clone` and
//! `execve` come back over a close-on-exec pipe as [`Error::Child`], so `spawn()` fails
//! with the real cause instead of handing back a container that "ran and exited 1".

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;

/// A `Result` whose error is [`Error`].
///
/// ```
/// fn start() -> qube_runtime::Result<()> { Ok(()) }
/// assert!(start().is_ok());
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

macro_rules! steps {
    ($( $(#[$doc:meta])* $name:ident => $text:literal, )*) => {
        /// A step of launching or handling a container; every [`Error`] names one.
        ///
        /// ```
        /// use qube_runtime::Step;
        /// assert_eq!(Step::PivotRoot.to_string(), "pivot_root into");
        /// assert_eq!(Step::from_code(Step::Exec.code()), Some(Step::Exec));
        /// ```
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u32)]
        #[non_exhaustive]
        pub enum Step {
            $( $(#[$doc])* $name, )*
        }

        impl Step {
            const ALL: &'static [Step] = &[$(Step::$name),*];

            /// What the step does, as a verb phrase for messages ("mount", "exec").
            ///
            /// ```
            /// assert_eq!(qube_runtime::Step::Exec.describe(), "exec");
            /// ```
            pub fn describe(self) -> &'static str {
                match self {
                    $( Step::$name => $text, )*
                }
            }
        }
    };
}

steps! {
    /// Checking the builder's settings.
    Configure => "configure",
    /// Creating the container's cgroup.
    CreateCgroup => "create cgroup",
    /// Enabling controllers in the parent cgroup's `cgroup.subtree_control`.
    EnableControllers => "enable controllers in",
    /// Writing the resource limits.
    ApplyLimits => "apply limits to",
    /// Creating a pipe.
    CreatePipe => "create pipe for",
    /// Opening a stdio file or `/dev/null`.
    OpenStdio => "open stdio",
    /// `clone3` (or `clone`) of the container's first process.
    Clone => "clone into",
    /// Moving the forked child into its cgroup (fork fallback).
    AttachToCgroup => "attach to cgroup",
    /// `pidfd_open` of the container's first process.
    OpenPidfd => "pidfd_open",
    /// Writing `/proc/PID/uid_map` or `gid_map`, or `deny` to `/proc/PID/setgroups` (first,
    /// where the parent lacks `CAP_SETGID`). A map the kernel refuses to an unprivileged
    /// parent is [`Error::Unsupported`], saying what such a parent may map.
    WriteIdMap => "write id map",
    /// Letting the held child go on.
    ReleaseChild => "release child",
    /// Reading the child's report from the error pipe.
    ReadChildReport => "read child report from",
    /// Waiting for the container's first process.
    Wait => "wait for",
    /// Sending a signal.
    Signal => "signal",
    /// Killing every process of the cgroup.
    Kill => "kill",
    /// Stopping the container (SIGTERM, then SIGKILL).
    Stop => "stop",
    /// Freezing the cgroup.
    Freeze => "freeze",
    /// Thawing the cgroup.
    Thaw => "thaw",
    /// Reading statistics.
    Stats => "read stats of",
    /// Re-attaching to a running container.
    Adopt => "adopt",
    /// (child) Waiting for the parent to attach the child to its cgroup.
    WaitForParent => "wait for parent",
    /// (child) Resetting signal dispositions and the mask.
    ResetSignals => "reset signals",
    /// (child) `setsid`.
    NewSession => "start a new session",
    /// (child) `unshare(CLONE_NEWCGROUP)`.
    UnshareCgroupNs => "unshare the cgroup namespace",
    /// (child) `sethostname`.
    SetHostname => "set hostname",
    /// (child) Bringing up `lo` in a new network namespace.
    BringUpLoopback => "bring up loopback",
    /// (child) Making every mount private (`MS_REC | MS_PRIVATE` on `/`).
    MakeMountsPrivate => "make mounts private under",
    /// (child) Creating a mount point directory.
    Mkdir => "mkdir",
    /// (child) Creating a file to bind a device or file onto.
    CreateFile => "create file",
    /// (child) Creating a symlink.
    Symlink => "symlink",
    /// (child) Mounting a filesystem or a bind mount.
    Mount => "mount",
    /// (child) Making a mount read-only.
    RemountReadonly => "remount read-only",
    /// (child) Bind-mounting the rootfs on itself, `pivot_root`, detaching the old root.
    PivotRoot => "pivot_root into",
    /// (child) `chdir` to the working directory.
    Chdir => "chdir",
    /// (child) Dropping capabilities from the bounding set.
    DropBoundingSet => "drop capability bounding set",
    /// (child) `setgroups`.
    SetGroups => "setgroups",
    /// (child) `setresgid`.
    SetGid => "setgid",
    /// (child) `setresuid`.
    SetUid => "setuid",
    /// (child) `capset` and clearing the ambient set.
    SetCapabilities => "set capabilities",
    /// (child) `PR_SET_NO_NEW_PRIVS`.
    NoNewPrivs => "set no_new_privs",
    /// (child) `dup2` of the stdio fds.
    SetupStdio => "set up stdio",
    /// (child) Marking inherited fds close-on-exec.
    CloseFds => "close inherited fds",
    /// (child) Forking the workload under the pid-1 reaper.
    ForkReaper => "fork the workload under the reaper",
    /// (child) `execve` of the program.
    Exec => "exec",
    /// Opening (and emptying) the exit status file the reaper writes.
    OpenExitStatusFile => "open exit status file",
    /// Reading an exit status file.
    ReadExitStatus => "read exit status from",
    /// Resolving a mount target's symlinks inside the rootfs.
    ResolveInRoot => "resolve inside the rootfs",
}

impl Step {
    /// The number the child writes on the error pipe for this step.
    ///
    /// ```
    /// use qube_runtime::Step;
    /// assert_ne!(Step::Mount.code(), Step::Exec.code());
    /// ```
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The step for a number from [`code`](Step::code).
    ///
    /// ```
    /// assert_eq!(qube_runtime::Step::from_code(u32::MAX), None);
    /// ```
    pub fn from_code(code: u32) -> Option<Step> {
        usize::try_from(code)
            .ok()
            .and_then(|i| Step::ALL.get(i).copied())
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// Everything that can go wrong in `qube-runtime`.
///
/// ```
/// use std::path::PathBuf;
/// use nix::errno::Errno;
/// use qube_runtime::{Error, Step};
/// let err = Error::Child { step: Step::Exec, path: PathBuf::from("/bin/nope"), errno: Errno::ENOENT };
/// assert_eq!(err.errno(), Some(Errno::ENOENT));
/// assert!(err.to_string().contains("/bin/nope"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The builder's settings are contradictory or incomplete; nothing was started.
    #[error("invalid container configuration: {what}: {reason}")]
    Config {
        /// The setting at fault.
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// A cgroup operation failed (the inner error names the file and errno).
    #[error("{step} {}: {source}", path.display())]
    Cgroup {
        /// What was being done.
        step: Step,
        /// The cgroup.
        path: PathBuf,
        /// The cgroup error.
        source: qube_cgroup::Error,
    },

    /// A system call in the parent failed.
    #[error("{step} {}: {errno}", path.display())]
    Os {
        /// What was being done.
        step: Step,
        /// The file, cgroup or process it was done to.
        path: PathBuf,
        /// The kernel's answer.
        errno: Errno,
    },

    /// The child failed between `clone` and `execve`; nothing of the workload ran.
    #[error("container setup failed before exec: {step} {}: {errno}", path.display())]
    Child {
        /// The step that failed in the child.
        step: Step,
        /// The path it failed on (the program for [`Step::Exec`]).
        path: PathBuf,
        /// The kernel's answer.
        errno: Errno,
    },

    /// The kernel (or its configuration) does not offer a feature the container asks for.
    #[error("{step} {}: {what} is not available on this system: {errno}", path.display())]
    Unsupported {
        /// What was being done.
        step: Step,
        /// The path concerned.
        path: PathBuf,
        /// The missing feature.
        what: &'static str,
        /// The kernel's answer.
        errno: Errno,
    },

    /// [`Container::adopt`](crate::Container::adopt) found the pid outside the cgroup:
    /// the process it meant has exited and the pid may have been reused.
    #[error("adopt pid {pid}: it is not in {} (the pid may have been reused)", path.display())]
    NotInCgroup {
        /// The pid.
        pid: u32,
        /// The cgroup it should be in.
        path: PathBuf,
    },

    /// An exit status file holds something its reaper did not write.
    #[error("read exit status from {}: not a reaper's status line: {text:?}", path.display())]
    BadExitStatusFile {
        /// The file.
        path: PathBuf,
        /// What it holds.
        text: String,
    },

    /// A wait on a kernel event passed its deadline.
    #[error("{step} {}: timed out after {after:?}", path.display())]
    Timeout {
        /// What was being waited for.
        step: Step,
        /// The cgroup or process.
        path: PathBuf,
        /// The deadline that passed.
        after: Duration,
    },
}

impl Error {
    /// The step that failed (`None` for a configuration error).
    ///
    /// ```
    /// use qube_runtime::{Error, Step};
    /// let err = Error::Config { what: "rootfs", reason: "relative".into() };
    /// assert_eq!(err.step(), Some(Step::Configure));
    /// ```
    pub fn step(&self) -> Option<Step> {
        match self {
            Error::Config { .. } => Some(Step::Configure),
            Error::Cgroup { step, .. }
            | Error::Os { step, .. }
            | Error::Child { step, .. }
            | Error::Unsupported { step, .. }
            | Error::Timeout { step, .. } => Some(*step),
            Error::NotInCgroup { .. } => Some(Step::Adopt),
            Error::BadExitStatusFile { .. } => Some(Step::ReadExitStatus),
        }
    }

    /// The path the error is about, where there is one.
    ///
    /// ```
    /// use std::path::Path;
    /// use qube_runtime::Error;
    /// let err = Error::NotInCgroup { pid: 7, path: "/sys/fs/cgroup/c".into() };
    /// assert_eq!(err.path(), Some(Path::new("/sys/fs/cgroup/c")));
    /// ```
    pub fn path(&self) -> Option<&Path> {
        match self {
            Error::Config { .. } => None,
            Error::Cgroup { path, .. }
            | Error::Os { path, .. }
            | Error::Child { path, .. }
            | Error::Unsupported { path, .. }
            | Error::NotInCgroup { path, .. }
            | Error::BadExitStatusFile { path, .. }
            | Error::Timeout { path, .. } => Some(path),
        }
    }

    /// The errno behind the error, when the kernel gave one.
    ///
    /// ```
    /// use nix::errno::Errno;
    /// use qube_runtime::{Error, Step};
    /// let err = Error::Os { step: Step::Clone, path: "/sys/fs/cgroup/c".into(), errno: Errno::EPERM };
    /// assert_eq!(err.errno(), Some(Errno::EPERM));
    /// ```
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Os { errno, .. }
            | Error::Child { errno, .. }
            | Error::Unsupported { errno, .. } => Some(*errno),
            Error::Cgroup { source, .. } => source.raw_os_error().map(Errno::from_raw),
            _ => None,
        }
    }

    /// Builds an [`Error::Os`].
    pub(crate) fn os(step: Step, path: impl Into<PathBuf>, errno: Errno) -> Error {
        Error::Os {
            step,
            path: path.into(),
            errno,
        }
    }

    /// Builds an [`Error::Os`] from a std I/O error (EIO if it carries no errno).
    pub(crate) fn io(step: Step, path: impl Into<PathBuf>, e: &std::io::Error) -> Error {
        Error::os(step, path, io_errno(e))
    }

    /// Wraps a cgroup error with the step it happened in.
    pub(crate) fn cgroup(step: Step, path: &Path, source: qube_cgroup::Error) -> Error {
        Error::Cgroup {
            step,
            path: path.to_owned(),
            source,
        }
    }

    /// Builds an [`Error::Config`].
    pub(crate) fn config(what: &'static str, reason: impl Into<String>) -> Error {
        Error::Config {
            what,
            reason: reason.into(),
        }
    }
}

/// The errno inside a std I/O error (EIO if it carries none).
pub(crate) fn io_errno(e: &std::io::Error) -> Errno {
    Errno::from_raw(e.raw_os_error().unwrap_or(nix::libc::EIO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_round_trips_through_its_code() {
        for &step in Step::ALL {
            assert_eq!(Step::from_code(step.code()), Some(step));
        }
    }

    #[test]
    fn child_errors_name_step_path_and_errno() {
        let err = Error::Child {
            step: Step::Exec,
            path: PathBuf::from("/bin/missing"),
            errno: Errno::ENOENT,
        };
        let text = err.to_string();
        assert!(text.contains("exec /bin/missing"), "{text}");
        assert!(text.contains("ENOENT"), "{text}");
    }
}
