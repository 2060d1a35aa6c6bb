//! 200 containers, one after the other, leave nothing behind: no cgroup directory, no
//! mount in the host's mount table, no zombie, no file descriptor. In its own test binary
//! so that no other test changes the counts meanwhile. Runs in the VM; skips on the host.

mod common;

use nix::errno::Errno;
use qube_runtime::{Command, Namespaces, SpawnMethod, Stdio, Step};
use qube_testkit::{children_of_self, open_fds, require_vm, scratch};

const CONTAINERS: usize = 200;

fn host_mounts() -> usize {
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|text| text.lines().count())
        .unwrap_or(0)
}

#[test]
fn two_hundred_containers_leave_no_trace() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "leaks");
    let fs = common::rootfs();
    let namespaces = Namespaces::PID
        | Namespaces::MOUNT
        | Namespaces::UTS
        | Namespaces::IPC
        | Namespaces::CGROUP;
    let run = |i: usize| {
        let method = if i % 2 == 0 {
            SpawnMethod::Clone3
        } else {
            SpawnMethod::Fork
        };
        // Every tenth launch fails in the child: the error path must be as clean.
        let program = if i % 10 == 9 {
            "/bin/missing"
        } else {
            "/bin/true"
        };
        let result = Command::new(program)
            .rootfs(fs.path())
            .namespaces(namespaces)
            .hostname("leak")
            .cgroup(&parent, format!("c{i}"))
            .spawn_method(method)
            .stdout(Stdio::Piped)
            .stderr(Stdio::Null)
            .spawn();
        match result {
            Ok(c) => assert!(c.output().unwrap().status.success()),
            Err(e) => assert_eq!(
                (e.step(), e.errno()),
                (Some(Step::Exec), Some(Errno::ENOENT)),
                "{e}"
            ),
        }
    };
    run(0); // warm-up: lazily opened files of the test harness
    let (fds, mounts, children) = (open_fds(), host_mounts(), children_of_self());

    for i in 1..=CONTAINERS {
        run(i);
    }

    assert_eq!(
        parent.children().unwrap(),
        Vec::<String>::new(),
        "cgroups left behind"
    );
    assert_eq!(
        host_mounts(),
        mounts,
        "mounts leaked into the host's namespace"
    );
    assert_eq!(children_of_self(), children, "zombies or stray children");
    assert_eq!(children, 0);
    assert_eq!(open_fds(), fds, "file descriptors leaked");
}
