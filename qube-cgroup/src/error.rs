//! The one error type of the crate.
//!
//! Every variant names what was being done (an [`Op`]) and on which path, keeps the
//! operating-system error where there is one, and turns the kernel's errno into what it
//! means for a cgroup (see `Documentation/admin-guide/cgroup-v2.rst`).

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::controller::{Controller, Controllers};

/// A `Result` whose error is [`Error`].
///
/// ```
/// fn limit() -> qube_cgroup::Result<qube_cgroup::Bytes> { "2G".parse() }
/// assert_eq!(limit()?, qube_cgroup::Bytes::gib(2));
/// # Ok::<(), qube_cgroup::Error>(())
/// ```
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What the crate was doing when an error happened.
///
/// ```
/// assert_eq!(qube_cgroup::Op::Write.to_string(), "write");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// Opening a cgroup directory or an interface file.
    Open,
    /// Reading an interface file.
    Read,
    /// Writing an interface file.
    Write,
    /// Creating a cgroup directory.
    Create,
    /// Removing a cgroup directory.
    Remove,
    /// Listing child cgroups.
    List,
    /// Waiting for a change of an interface file.
    Wait,
    /// Sending a signal to the processes of a cgroup.
    Kill,
    /// Reading the mount table.
    Mounts,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Open => "open",
            Op::Read => "read",
            Op::Write => "write",
            Op::Create => "create",
            Op::Remove => "remove",
            Op::List => "list",
            Op::Wait => "wait on",
            Op::Kill => "kill",
            Op::Mounts => "read mount table",
        })
    }
}

/// Everything that can go wrong in `qube-cgroup`.
///
/// ```
/// use qube_cgroup::{Bytes, Error};
/// let err = "2gb?".parse::<Bytes>().unwrap_err();
/// assert!(matches!(err, Error::InvalidValue { .. }));
/// assert!(err.to_string().contains("2gb?"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No cgroup2 filesystem is mounted on this system.
    #[error("no cgroup2 filesystem is mounted (searched /proc/self/mountinfo)")]
    NotMounted,

    /// A cgroup name that the kernel would reject or that could escape its parent.
    #[error("invalid cgroup name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// A value that does not parse or is out of range; nothing was written.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidValue {
        /// What the value was meant to be, e.g. `"byte size"`.
        what: &'static str,
        /// The rejected text.
        value: String,
        /// Why it was rejected.
        reason: String,
    },

    /// The kernel wrote something this crate does not understand.
    #[error("cannot parse {path}: {reason} (in {line:?})")]
    Parse {
        /// The interface file.
        path: PathBuf,
        /// The offending line.
        line: String,
        /// What was wrong with it.
        reason: String,
    },

    /// The cgroup does not exist (or was removed).
    #[error("{op} {path}: no such cgroup")]
    NotFound {
        /// What was being done.
        op: Op,
        /// The cgroup's path.
        path: PathBuf,
    },

    /// A cgroup of that name exists already.
    #[error("create {path}: a cgroup with this name already exists")]
    Exists {
        /// The cgroup's path.
        path: PathBuf,
    },

    /// The controller's interface file is missing because the parent has not enabled it.
    #[error(
        "{op} {path}: the {controller} controller is not enabled here \
         (enable it in the parent's cgroup.subtree_control)"
    )]
    ControllerNotEnabled {
        /// What was being done.
        op: Op,
        /// The interface file.
        path: PathBuf,
        /// The missing controller.
        controller: Controller,
    },

    /// The controller cannot be used in this cgroup v2 hierarchy at all.
    #[error("the {controller} controller is not available in the cgroup v2 hierarchy at {path}{}",
        match v1_mount { Some(m) => format!(": it is bound to the cgroup v1 hierarchy mounted at {}", m.display()), None => String::new() })]
    ControllerUnavailable {
        /// The controller.
        controller: Controller,
        /// The cgroup where it was requested.
        path: PathBuf,
        /// Where the controller is mounted instead, on a hybrid host.
        v1_mount: Option<PathBuf>,
    },

    /// Enabling controllers failed for some of them.
    #[error("write {path}: could not enable {}", failures.iter().map(|(c, e)| format!("{c} ({e})")).collect::<Vec<_>>().join(", "))]
    EnableFailed {
        /// The `cgroup.subtree_control` file.
        path: PathBuf,
        /// Each controller that failed, with the reason.
        failures: Vec<(Controller, Box<Error>)>,
    },

    /// `rmdir` of a cgroup that still has processes or child cgroups.
    #[error("remove {path}: the cgroup is busy (pids still inside: {pids:?}; child cgroups: {children:?})")]
    Busy {
        /// The cgroup's path.
        path: PathBuf,
        /// The processes still inside it.
        pids: Vec<u32>,
        /// Its child cgroups.
        children: Vec<String>,
    },

    /// The "no internal processes" rule: a cgroup cannot both hold processes and
    /// distribute domain controllers to its children.
    #[error(
        "{op} {path}{}: refused by the no-internal-processes rule (a cgroup with processes \
         cannot enable controllers for its children, and a cgroup that enables them cannot take processes)",
        value.as_ref().map(|v| format!(" = {v:?}")).unwrap_or_default()
    )]
    InternalProcess {
        /// What was being done.
        op: Op,
        /// The interface file.
        path: PathBuf,
        /// The value written.
        value: Option<String>,
    },

    /// Disabling controllers that child cgroups still enable for their own children: the
    /// kernel (EBUSY) wants them disabled bottom-up, in those children first.
    #[error(
        "write {path}: cannot disable {controllers}: the child cgroups {children:?} still enable \
         it in their cgroup.subtree_control (disable it there first)"
    )]
    ControllerInUse {
        /// The `cgroup.subtree_control` file.
        path: PathBuf,
        /// The controllers the children still enable.
        controllers: Controllers,
        /// The children that enable them.
        children: Vec<String>,
    },

    /// The operation is not allowed in a threaded or `domain invalid` subtree.
    #[error(
        "{op} {path}{}: not supported in a threaded or domain invalid subtree",
        value.as_ref().map(|v| format!(" = {v:?}")).unwrap_or_default()
    )]
    Threaded {
        /// What was being done.
        op: Op,
        /// The interface file.
        path: PathBuf,
        /// The value written.
        value: Option<String>,
    },

    /// Permission denied or read-only file system.
    #[error(
        "{op} {path}: permission denied ({source}); run as root or have the cgroup delegated \
         to you (write access to its directory, cgroup.procs, cgroup.subtree_control and cgroup.threads)"
    )]
    Permission {
        /// What was being done.
        op: Op,
        /// The file or directory.
        path: PathBuf,
        /// The operating-system error.
        source: io::Error,
    },

    /// The running kernel lacks this interface file or feature.
    #[error("{op} {path}: not supported by this kernel")]
    Unsupported {
        /// What was being done.
        op: Op,
        /// The missing interface file.
        path: PathBuf,
    },

    /// A wait on a kernel event passed its deadline.
    #[error("{op} {path}: timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What was being done.
        op: Op,
        /// The interface file waited on.
        path: PathBuf,
        /// The awaited condition.
        what: &'static str,
        /// The deadline that passed.
        after: Duration,
    },

    /// Any other operating-system error.
    #[error("{op} {path}{}: {source}", value.as_ref().map(|v| format!(" = {v:?}")).unwrap_or_default())]
    Io {
        /// What was being done.
        op: Op,
        /// The file or directory.
        path: PathBuf,
        /// The value written, if any.
        value: Option<String>,
        /// The operating-system error.
        source: io::Error,
    },

    /// Creating a cgroup was refused because the parent or an ancestor has reached its
    /// `cgroup.max.descendants` or `cgroup.max.depth` limit (the kernel's EAGAIN).
    #[error(
        "create {path}: refused by cgroup.max.descendants or cgroup.max.depth \
         (the parent or an ancestor allows no more descendants, or none this deep)"
    )]
    LimitReached {
        /// The cgroup that could not be created.
        path: PathBuf,
    },
}

impl Error {
    /// Builds an [`Error::InvalidValue`].
    pub(crate) fn invalid(what: &'static str, value: &str, reason: impl Into<String>) -> Error {
        Error::InvalidValue {
            what,
            value: value.to_owned(),
            reason: reason.into(),
        }
    }

    /// An [`Error::InvalidValue`] for input a caller rejected (for use by crates built on
    /// this one, so that all bad input reads alike).
    ///
    /// ```
    /// let e = qube_cgroup::Error::invalid_input("memory limit", "2gb?", "unknown unit");
    /// assert_eq!(e.to_string(), "invalid memory limit \"2gb?\": unknown unit");
    /// ```
    pub fn invalid_input(what: &'static str, value: &str, reason: impl Into<String>) -> Error {
        Error::invalid(what, value, reason)
    }

    /// The errno behind this error, when the kernel gave one.
    ///
    /// ```
    /// let err = qube_cgroup::Error::NotMounted;
    /// assert_eq!(err.raw_os_error(), None);
    /// ```
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::Permission { source, .. } | Error::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}
