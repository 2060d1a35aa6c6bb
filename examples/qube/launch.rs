//! The one place that talks to qube-runtime: starting a container, adopting one after a
//! daemon restart, waiting for it. (Stand-in until qube-runtime's `Command` lands.)

use std::fs::File;
use std::os::fd::BorrowedFd;
use std::path::Path;

use qube_cgroup::Cgroup;

use crate::protocol::Failure;
use crate::state::Record;

/// How a container's first process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Exit {
    /// Its exit code, when it exited.
    pub code: Option<i32>,
    /// The signal that killed it.
    pub signal: Option<i32>,
    /// The OOM killer ended it.
    pub oom_killed: bool,
}

/// A started (or adopted) container.
#[derive(Debug)]
pub struct Launched {
    pid: u32,
    pidfd: std::os::fd::OwnedFd,
    cgroup: Cgroup,
}

impl Launched {
    /// The first process's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The first process's pidfd.
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.pidfd.as_fd()
    }

    /// The container's cgroup.
    pub fn cgroup(&self) -> &Cgroup {
        &self.cgroup
    }

    /// Blocks until the first process ends.
    pub fn wait(&mut self) -> Exit {
        Exit::default()
    }
}

/// Starts the container `record` describes on `rootfs`, in a new child of `parent` named
/// by its id, with the output going to `output`.
pub fn start(
    record: &Record,
    _rootfs: &Path,
    _parent: &Cgroup,
    _output: File,
) -> Result<Launched, Failure> {
    Err(Failure::runtime(format!(
        "cannot start container {}: the runtime is not built in",
        record.id
    )))
}

/// Takes over a container that an earlier daemon started.
pub fn adopt(pid: u32, cgroup: &Path) -> Result<Launched, String> {
    Err(format!(
        "cannot adopt pid {pid} in {}: the runtime is not built in",
        cgroup.display()
    ))
}
