//! The one place that talks to qube-runtime: starting a container, adopting one after a
//! daemon restart, waiting for it.

use std::fs::File;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use qube_cgroup::Cgroup;
use qube_runtime::{Command, Container, ExitStatus, Namespaces, Network, Stdio};

use crate::protocol::Failure;
use crate::state::Record;

/// The namespaces of every container; `--isolated` adds a network namespace.
const NAMESPACES: Namespaces = Namespaces::PID
    .union(Namespaces::MOUNT)
    .union(Namespaces::UTS)
    .union(Namespaces::IPC)
    .union(Namespaces::CGROUP);

/// How a container's first process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Exit {
    /// Its exit code, when it exited.
    pub code: Option<i32>,
    /// The signal that killed it.
    pub signal: Option<i32>,
    /// The OOM killer ended a process of the container.
    pub oom_killed: bool,
}

impl From<ExitStatus> for Exit {
    fn from(status: ExitStatus) -> Exit {
        Exit {
            code: status.code(),
            signal: status.signal().map(|s| s as i32),
            oom_killed: status.oom_killed(),
        }
    }
}

/// Where a container's pid 1 writes how its workload ended, in the container's state
/// directory: it outlives the daemon, so one that restarts learns how a container ended
/// while no daemon watched it.
pub fn exit_status_file(container_dir: &Path) -> PathBuf {
    container_dir.join("exit-status")
}

/// How a container that ended while no daemon watched it ended, from its exit status
/// file; `None` when the file says nothing (its pid 1 was killed before it could write).
pub fn recorded_exit(container_dir: &Path) -> Option<Exit> {
    match ExitStatus::read_file(exit_status_file(container_dir)) {
        Ok(status) => status.map(Exit::from),
        Err(e) => {
            crate::daemon::log(&e.to_string());
            None
        }
    }
}

/// A started (or adopted) container.
#[derive(Debug)]
pub struct Launched {
    container: Container,
}

impl Launched {
    /// The first process's pid.
    pub fn pid(&self) -> u32 {
        self.container.pid()
    }

    /// The first process's pidfd.
    pub fn pidfd(&self) -> BorrowedFd<'_> {
        self.container.pidfd()
    }

    /// The container's cgroup.
    pub fn cgroup(&self) -> &Cgroup {
        self.container.cgroup()
    }

    /// Blocks until the first process ends. For a container adopted from an earlier
    /// daemon (not our child) the status comes from its exit status file.
    pub fn wait(&mut self) -> Exit {
        match self.container.wait() {
            Ok(status) => Exit::from(status),
            Err(e) => {
                crate::daemon::log(&format!("waiting for pid {}: {e}", self.pid()));
                Exit::default()
            }
        }
    }
}

/// Starts the container `record` describes on `rootfs`: `/bin/sh -c` its command, in a
/// new child of `parent` named by its id with its limits written before it runs, stdout
/// and stderr into `output`, its end recorded in its state directory `dir`.
pub fn start(
    record: &Record,
    rootfs: &Path,
    dir: &Path,
    parent: &Cgroup,
    output: File,
) -> Result<Launched, Failure> {
    let fail = |e: &dyn std::fmt::Display| {
        Failure::runtime(format!("cannot start container {}: {e}", record.id))
    };
    let errors = output.try_clone().map_err(|e| fail(&e))?;
    let network = if record.isolated {
        Network::Isolated
    } else {
        Network::Host
    };
    let mut command = Command::new("/bin/sh")
        .args(["-c", record.command.as_str()])
        .env("HOSTNAME", record.name.as_str())
        .namespaces(NAMESPACES)
        .network(network)
        .hostname(record.name.as_str())
        .rootfs(rootfs)
        .cgroup(parent, record.id.as_str())
        .resources(record.limits.resources())
        .exit_status_file(exit_status_file(dir))
        .stdin(Stdio::Null)
        .stdout(Stdio::File(output))
        .stderr(Stdio::File(errors));
    for var in &record.env {
        command = command.env(&var.key, &var.value);
    }
    for volume in &record.volumes {
        command = command.bind(&volume.host, &volume.container, volume.readonly);
    }
    let container = {
        let _starting = crate::images::starting_container();
        command.spawn().map_err(|e| fail(&e))?
    };
    Ok(Launched { container })
}

/// Takes over a container that an earlier daemon started: qube-runtime opens a pidfd for
/// `pid` and checks that the process is in `cgroup`, so a reused pid is never trusted.
/// Its end will be read from the exit status file in its state directory `dir`.
pub fn adopt(pid: u32, cgroup: &Path, dir: &Path) -> Result<Launched, String> {
    Container::adopt(pid, cgroup)
        .map(|container| Launched {
            container: container.read_exit_status_from(exit_status_file(dir)),
        })
        .map_err(|e| e.to_string())
}
