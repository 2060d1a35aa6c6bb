//! A running container: OOM detection, containment of everything it forks, stop, kill,
//! freeze, stats, signals through the reaper, detach and adopt, and clean-up on drop.
//! Runs in the VM (`scripts/vm test`); skips on the host.

mod common;

use std::time::Duration;

use nix::sys::signal::Signal;
use qube_cgroup::{Bytes, Max, Resources};
use qube_runtime::{Command, Container, Error, ExitStatus, Namespaces, SpawnMethod, Stdio};
use qube_testkit::{require_vm, scratch};

use common::{descendants, read_line, rootfs, sh};

#[test]
fn allocating_past_memory_max_is_reported_as_oom_killed() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "oom");
    let fs = rootfs();
    let limits = Resources {
        memory_max: Some(Max::Limit(Bytes::mib(32))),
        memory_swap_max: Some(Max::Limit(Bytes(0))),
        ..Resources::default()
    };
    let mut c = sh(fs.path(), &parent, "c", "x=a; while :; do x=$x$x; done")
        .resources(limits)
        .spawn()
        .unwrap();
    let status = c.wait().unwrap();
    assert!(status.oom_killed(), "{status}");
    assert_eq!(status.signal(), Some(Signal::SIGKILL), "{status}");
    assert_eq!(status.to_string(), "killed by SIGKILL (OOM-killed)");
}

#[test]
fn a_normal_exit_is_not_oom_and_keeps_its_code() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "exit3");
    let fs = rootfs();
    let mut c = sh(fs.path(), &parent, "c", "exit 3").spawn().unwrap();
    let status = c.wait().unwrap();
    assert_eq!(status.code(), Some(3));
    assert_eq!(status.to_string(), "exited with code 3");
    assert_eq!(c.wait().unwrap(), status, "wait is idempotent");
}

#[test]
fn processes_forked_at_once_cannot_escape_the_cgroup() {
    let Some(root) = require_vm!() else { return };
    let fs = rootfs();
    for method in [SpawnMethod::Clone3, SpawnMethod::Fork] {
        let parent = scratch(&root, "escape");
        let mut c = sh(
            fs.path(),
            &parent,
            "c",
            "sleep 100 & sleep 100 & echo forked; wait",
        )
        .spawn_method(method)
        .stdout(Stdio::Piped)
        .spawn()
        .unwrap();
        assert_eq!(read_line(&mut c), "forked");
        let procs = c.cgroup().procs().unwrap();
        let tree = descendants(c.pid());
        // The reaper (pid 1), the shell and its two sleeps.
        assert!(procs.contains(&c.pid()), "{method:?}: {procs:?}");
        assert_eq!(tree.len(), 3, "{method:?}: {tree:?}");
        for pid in tree {
            assert!(procs.contains(&pid), "{method:?}: {pid} escaped {procs:?}");
        }
    }
}

#[test]
fn stop_ends_the_whole_tree_including_a_setsid_grandchild() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "stop");
    let fs = rootfs();
    // No pid namespace: the cgroup alone must find the escaped session. The grandchild
    // prints its pid once it leads its own session.
    let script = "setsid sh -c 'echo $$; exec sleep 1000' & wait";
    let mut c = Command::new("/bin/sh")
        .args(["-c", script])
        .rootfs(fs.path())
        .cgroup(&parent, "c")
        .stdout(Stdio::Piped)
        .spawn()
        .unwrap();
    let grandchild: u32 = read_line(&mut c).parse().unwrap();
    assert!(c.cgroup().procs().unwrap().contains(&grandchild));
    let stat = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap();
    let session = stat[stat.rfind(')').unwrap() + 2..]
        .split(' ')
        .nth(3)
        .unwrap();
    assert_eq!(
        session,
        grandchild.to_string(),
        "not a session leader: {stat}"
    );
    let status = c.stop(Duration::from_secs(10)).unwrap();
    assert_eq!(status.signal(), Some(Signal::SIGTERM), "{status}");
    assert!(c.cgroup().procs().unwrap().is_empty());
    assert!(!c.cgroup().events().unwrap().populated);
}

#[test]
fn stop_escalates_to_sigkill_after_the_timeout() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "stop-kill");
    let fs = rootfs();
    let script = "trap '' TERM; echo ignoring; while :; do sleep 1; done";
    let mut c = sh(fs.path(), &parent, "c", script)
        .stdout(Stdio::Piped)
        .spawn()
        .unwrap();
    assert_eq!(read_line(&mut c), "ignoring");
    let status = c.stop(Duration::from_millis(300)).unwrap();
    assert_eq!(status.signal(), Some(Signal::SIGKILL), "{status}");
    assert!(!c.cgroup().events().unwrap().populated);
}

#[test]
fn signals_to_the_reaper_reach_the_workload_and_its_status_comes_back() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "forward");
    let fs = rootfs();
    let script = "trap 'exit 7' TERM; echo ready; sleep 1000 & wait";
    let mut c = sh(fs.path(), &parent, "c", script)
        .stdout(Stdio::Piped)
        .spawn()
        .unwrap();
    assert_eq!(read_line(&mut c), "ready");
    c.signal(Signal::SIGTERM).unwrap();
    assert_eq!(c.wait().unwrap().code(), Some(7));
}

#[test]
fn signals_beyond_term_reach_the_workload_too() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "forward-more");
    let fs = rootfs();
    let script = "trap 'echo winch' WINCH; trap 'exit 9' QUIT; \
                  echo ready; while :; do sleep 1000 & wait; done";
    let mut c = sh(fs.path(), &parent, "c", script)
        .stdout(Stdio::Piped)
        .spawn()
        .unwrap();
    assert_eq!(read_line(&mut c), "ready");
    c.signal(Signal::SIGWINCH).unwrap();
    assert_eq!(read_line(&mut c), "winch");
    c.signal(Signal::SIGQUIT).unwrap();
    assert_eq!(c.wait().unwrap().code(), Some(9));
}

#[test]
fn kill_ends_everything_at_once() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "kill");
    let fs = rootfs();
    let mut c = sh(
        fs.path(),
        &parent,
        "c",
        "sleep 1000 & sleep 1000 & echo up; wait",
    )
    .stdout(Stdio::Piped)
    .spawn()
    .unwrap();
    assert_eq!(read_line(&mut c), "up");
    c.kill().unwrap();
    let status = c.wait().unwrap();
    assert_eq!(status.signal(), Some(Signal::SIGKILL), "{status}");
    c.cgroup()
        .wait_unpopulated(Duration::from_secs(10))
        .unwrap();
}

#[test]
fn freeze_and_thaw_reach_every_process() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "freeze");
    let fs = rootfs();
    let mut c = sh(fs.path(), &parent, "c", "echo up; sleep 1000")
        .stdout(Stdio::Piped)
        .spawn()
        .unwrap();
    assert_eq!(read_line(&mut c), "up");
    c.freeze().unwrap();
    assert!(c.cgroup().events().unwrap().frozen);
    assert_eq!(c.try_wait().unwrap(), None);
    c.thaw().unwrap();
    assert!(!c.cgroup().events().unwrap().frozen);
}

#[test]
fn stats_report_the_limits_and_the_usage() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "stats");
    let fs = rootfs();
    let limits = Resources {
        memory_max: Some(Max::Limit(Bytes::gib(2))),
        memory_swap_max: Some(Max::Limit(Bytes::gib(1))),
        ..Resources::default()
    };
    let mut c = sh(fs.path(), &parent, "c", "echo up; sleep 1000")
        .resources(limits)
        .stdout(Stdio::Piped)
        .spawn()
        .unwrap();
    assert_eq!(read_line(&mut c), "up");
    let stats = c.stats().unwrap();
    assert_eq!(stats.memory_max, Some(Max::Limit(Bytes::gib(2))));
    assert_eq!(stats.swap_max, Some(Max::Limit(Bytes::gib(1))));
    assert!(stats.memory_current.unwrap().0 > 0);
    // The reaper and sleep, and the shell unless it exec'd sleep in its place.
    assert!(matches!(stats.pids_current, Some(2..=3)), "{stats:?}");
    assert!(stats.cpu_usage.is_some());
}

#[test]
fn a_detached_container_can_be_adopted_and_a_wrong_cgroup_is_refused() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "adopt");
    let fs = rootfs();
    let c = sh(fs.path(), &parent, "c", "sleep 1000").spawn().unwrap();
    let detached = c.detach();
    assert!(detached.cgroup.exists(), "detach keeps the cgroup");

    let stranger = Container::adopt(std::process::id(), &detached.cgroup).unwrap_err();
    assert!(matches!(stranger, Error::NotInCgroup { .. }), "{stranger}");

    let mut adopted = Container::adopt(detached.pid, &detached.cgroup).unwrap();
    assert_eq!(adopted.pid(), detached.pid);
    let status = adopted.stop(Duration::from_secs(10)).unwrap();
    assert!(
        status.signal().is_some() || status.code().is_some(),
        "{status}"
    );
    drop(adopted);
    assert!(
        !detached.cgroup.exists(),
        "the adopted handle removes the cgroup on drop"
    );
}

#[test]
fn an_adopted_container_ends_with_the_workloads_status_from_the_exit_status_file() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "status-file");
    let fs = rootfs();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("exit-status");
    std::fs::write(&file, "left from an earlier run\n").unwrap();
    // Adopted by the process that started it, without and then with the file: the
    // first sees only the reaper's own exit (128 + SIGUSR1), the second the workload's.
    for read_file in [false, true] {
        let c = sh(fs.path(), &parent, "c", "exec sleep 1000")
            .exit_status_file(&file)
            .spawn()
            .unwrap();
        assert_eq!(
            ExitStatus::read_file(&file).unwrap(),
            None,
            "emptied at spawn, empty while the workload runs"
        );
        let detached = c.detach();
        let mut adopted = Container::adopt(detached.pid, &detached.cgroup).unwrap();
        if read_file {
            adopted = adopted.read_exit_status_from(&file);
        }
        adopted.signal(Signal::SIGUSR1).unwrap();
        let status = adopted.wait().unwrap();
        if read_file {
            assert_eq!(status.signal(), Some(Signal::SIGUSR1), "{status}");
        } else {
            assert_eq!(
                status.code(),
                Some(128 + Signal::SIGUSR1 as i32),
                "{status}"
            );
        }
        assert_eq!(
            ExitStatus::read_file(&file).unwrap(),
            Some(ExitStatus::from_signal(Signal::SIGUSR1))
        );
        drop(adopted);
        assert!(!detached.cgroup.exists());
    }
    std::fs::write(&file, "exited soon\n").unwrap();
    let err = ExitStatus::read_file(&file).unwrap_err();
    assert!(matches!(err, Error::BadExitStatusFile { .. }), "{err}");
    assert_eq!(err.path(), Some(file.as_path()));
}

#[test]
fn dropping_a_running_container_kills_it_and_removes_its_cgroup() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "drop");
    let fs = rootfs();
    let c = sh(fs.path(), &parent, "c", "sleep 1000 & sleep 1000")
        .spawn()
        .unwrap();
    let path = c.cgroup().path().to_owned();
    let pid = c.pid();
    drop(c);
    assert!(!path.exists());
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "pid {pid} not reaped"
    );
}

#[test]
fn a_container_without_namespaces_is_just_a_contained_process() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "plain");
    let out = Command::new("/bin/sh")
        .args(["-c", "echo $PATH"])
        .namespaces(Namespaces::empty())
        .cgroup(&parent, "c")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        qube_runtime::DEFAULT_PATH
    );
}

#[test]
fn spawning_from_many_threads_while_others_allocate_never_hangs() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "threads");
    let fs = rootfs();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        // Keeps the allocator's locks busy: a child that allocated could inherit one held.
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let v: Vec<Vec<u8>> = (0..64).map(|i| vec![0u8; 64 << (i % 8)]).collect();
                std::hint::black_box(v);
            }
        });
        // Keeps glibc's thread list and its lock busy: a child that switched ids with
        // glibc's setresuid could wait forever on threads it does not have.
        s.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::spawn(|| ()).join().unwrap();
            }
        });
        let spawners: Vec<_> = (0..4)
            .map(|t| {
                let (parent, fs) = (&parent, fs.path());
                s.spawn(move || {
                    for i in 0..5 {
                        let name = format!("t{t}-{i}");
                        let out = sh(fs, parent, &name, "id -u")
                            .uid(65534)
                            .gid(65534)
                            .output()
                            .unwrap();
                        assert_eq!(out.stdout, b"65534\n", "{name}: {}", out.status);
                    }
                })
            })
            .collect();
        for spawner in spawners {
            spawner.join().unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    assert!(parent.children().unwrap().is_empty());
}
