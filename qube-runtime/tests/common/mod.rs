//! Shared set-up for the VM tests: a busybox rootfs, a scratch parent cgroup, and a
//! command builder with the usual container settings.
#![allow(dead_code)] // each test binary uses a different part
#![allow(clippy::unwrap_used)] // test support: a failed setup should abort the test loudly

use std::io::{BufRead, BufReader};
use std::path::Path;

use qube_cgroup::Cgroup;
use qube_runtime::{Command, Container, Namespaces, Output};
use tempfile::TempDir;

/// A fresh busybox root filesystem in a temporary directory.
pub fn rootfs() -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    qube_testkit::busybox_rootfs(dir.path()).unwrap();
    dir
}

/// `sh -c script` in `rootfs` with pid, mount, uts and ipc namespaces, in a new cgroup
/// `name` below `parent`.
pub fn sh(rootfs: &Path, parent: &Cgroup, name: &str, script: &str) -> Command {
    Command::new("/bin/sh")
        .args(["-c", script])
        .rootfs(rootfs)
        .namespaces(Namespaces::PID | Namespaces::MOUNT | Namespaces::UTS | Namespaces::IPC)
        .cgroup(parent, name)
}

/// Runs the command to completion and returns its stdout as text, asserting success.
pub fn stdout_of(cmd: Command) -> String {
    successful_stdout(cmd.output().unwrap())
}

/// The stdout of a finished container as text, asserting that it succeeded.
pub fn successful_stdout(out: Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}; stdout {text:?}; stderr {:?}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

/// Reads one line of the container's piped stdout: the workload's "I got this far".
pub fn read_line(container: &mut Container) -> String {
    let mut line = String::new();
    let stdout = container.stdout().unwrap();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    line.trim_end().to_owned()
}

/// The cgroup's path as `/proc/PID/cgroup` shows it from the VM's root namespace.
pub fn cgroup_line(root: &Cgroup, cg: &Cgroup) -> String {
    let rel = cg.path().strip_prefix(root.path()).unwrap();
    format!("0::/{}\n", rel.display())
}

/// Every descendant of `pid` (not `pid` itself), from /proc.
pub fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|p| {
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
            let after = &stat[stat.rfind(')')? + 1..];
            Some((p, after.split_whitespace().nth(1)?.parse().ok()?))
        })
        .collect();
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let current = found[i];
        found.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == current)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    found.remove(0);
    found
}
