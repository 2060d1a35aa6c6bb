//! Core (non-controller) features against the real kernel: the host's cgroup2 mount, or
//! the VM's. Each test works in a scratch cgroup that it creates and removes.

use std::time::{Duration, Instant};

use nix::sys::wait::WaitStatus;
use qube_cgroup::{Bytes, Cgroup, Controller, Controllers, Error, Event, Max, Watcher};
use qube_testkit::{cpu_ticks, require_vm, scratch, spawn_fn_in, v2_root, Proc, Work};

const WAIT: Duration = Duration::from_secs(10);

#[test]
fn create_open_list_and_remove() {
    let Some(root) = v2_root() else { return };
    let cg = scratch(&root, "create").persist();
    let name = cg.name().to_owned();
    assert!(root.children().unwrap().contains(&name));
    assert!(matches!(root.create(&name), Err(Error::Exists { .. })));
    let again = root.create_or_open(&name).unwrap();
    assert!(
        !again.removes_on_drop(),
        "an opened cgroup is not ours to remove"
    );
    assert_eq!(again.path(), cg.path());
    let child = cg.create("leaf").unwrap();
    assert_eq!(cg.children().unwrap(), ["leaf"]);
    assert_eq!(child.parent().unwrap().path(), cg.path());
    drop(child);
    assert!(
        cg.children().unwrap().is_empty(),
        "the child's handle removed it on drop"
    );
    cg.remove().unwrap();
    assert!(!root.children().unwrap().contains(&name));
    assert!(matches!(
        root.open_child(&name),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn bad_names_are_typed_errors_and_create_nothing() {
    let Some(root) = v2_root() else { return };
    let cg = scratch(&root, "names");
    for bad in [
        "",
        ".",
        "..",
        "a/b",
        "../escape",
        "x\0y",
        "cgroup.procs",
        "memory.max",
        &"n".repeat(256),
    ] {
        assert!(
            matches!(cg.create(bad), Err(Error::InvalidName { .. })),
            "{bad:?}"
        );
    }
    assert!(matches!(
        cg.open_child("../.."),
        Err(Error::InvalidName { .. })
    ));
    assert!(cg.children().unwrap().is_empty());
}

#[test]
fn attach_lists_and_rmdir_of_a_populated_group_is_busy() {
    // cgroup-v2.rst: "A cgroup which doesn't have any children or live processes can be
    // destroyed by removing the directory."
    let Some(root) = v2_root() else { return };
    let cg = scratch(&root, "busy");
    let p = Proc::spawn_in(&cg, Work::Pause);
    assert_eq!(cg.procs().unwrap(), [p.pid()]);
    assert!(cg.events().unwrap().populated);
    match cg.remove() {
        Err(Error::Busy { pids, .. }) => assert_eq!(pids, [p.pid()]),
        other => panic!("expected Busy, got {other:?}"),
    }
    assert!(cg.path().exists(), "a busy rmdir removes nothing");
}

#[test]
fn kill_and_remove_leaves_no_directory_and_no_process() {
    let Some(root) = v2_root() else { return };
    let cg = scratch(&root, "kill").persist();
    let inner = cg.create("inner").unwrap().persist();
    let mut a = Proc::spawn_in(&cg, Work::Pause);
    let mut b = Proc::spawn_in(&inner, Work::SetsidFork);
    let path = cg.path().to_owned();
    cg.kill_and_remove(WAIT).unwrap();
    assert!(!path.exists());
    assert!(matches!(
        a.wait(),
        WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGKILL, _)
    ));
    assert!(matches!(
        b.wait(),
        WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGKILL, _)
    ));
}

#[test]
fn dropping_an_owned_handle_kills_and_removes_even_when_panicking() {
    let Some(root) = v2_root() else { return };
    let path = std::sync::Mutex::new(None);
    let result = std::panic::catch_unwind(|| {
        let cg = scratch(&root, "drop");
        let inner = cg.create("inner").unwrap();
        let p = Proc::spawn_in(&inner, Work::Pause);
        *path.lock().unwrap() = Some((cg.path().to_owned(), p.pid()));
        std::mem::forget(p); // the cgroup's drop must do the killing
        panic!("test panic");
    });
    assert!(result.is_err());
    let (path, pid) = path.lock().unwrap().take().unwrap();
    assert!(!path.exists(), "{} left behind", path.display());
    let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid as i32), None).unwrap();
    assert!(matches!(status, WaitStatus::Signaled(..)));
}

#[test]
fn persist_keeps_the_cgroup() {
    let Some(root) = v2_root() else { return };
    let cg = scratch(&root, "persist").persist();
    let path = cg.path().to_owned();
    drop(cg);
    assert!(path.exists());
    Cgroup::open(&path).unwrap().remove_on_drop();
    assert!(!path.exists());
}

#[test]
fn freeze_waits_for_frozen_and_thaw_resumes() {
    let Some(root) = v2_root() else { return };
    let cg = scratch(&root, "freeze");
    let _p = Proc::spawn_in(&cg, Work::Spin);
    let ticks = || cpu_ticks(cg.procs().unwrap()[0]);
    cg.freeze(WAIT).unwrap();
    assert!(cg.events().unwrap().frozen);
    let frozen_at = ticks();
    // A spinning process accrues CPU time within any wait; a frozen one accrues none.
    let mut w = Watcher::new(&cg).unwrap();
    assert_eq!(w.next_event(Duration::from_millis(300)).unwrap(), None);
    assert_eq!(ticks(), frozen_at, "a frozen process must not run");
    cg.thaw(WAIT).unwrap();
    assert_eq!(w.next_event(WAIT).unwrap(), Some(Event::Frozen(false)));
    // Back to running: the ticks move again (a tick is 4ms of CPU at HZ=250), and a
    // deadline turns a process that stays frozen into a failure rather than a hang.
    let deadline = Instant::now() + WAIT;
    while ticks() == frozen_at {
        assert!(Instant::now() < deadline, "the thawed process did not run");
        std::hint::spin_loop();
    }
}

#[test]
fn a_freeze_that_cannot_complete_in_time_is_undone() {
    let Some(root) = require_vm!() else { return };
    let cg = scratch(&root, "freeze-late");
    // Without processes the kernel freezes within the write, so even no time is enough.
    cg.freeze(Duration::ZERO).unwrap();
    assert!(cg.events().unwrap().frozen);
    cg.thaw(WAIT).unwrap();
    // A task freezes on its way back to user space. One far over memory.high with no
    // swap spends its time in the kernel's throttle sleep (mem_cgroup_handle_over_high:
    // up to 2s after each batch of charges, killable but not woken by the freezer), so it
    // cannot get there in no time.
    cg.memory().set_high(Max::Limit(Bytes::mib(1))).unwrap();
    cg.memory().set_swap_max(Max::Limit(Bytes(0))).unwrap();
    let _p = spawn_fn_in(&cg, allocate_forever);
    let mut w = Watcher::new(&cg).unwrap();
    while cg.memory().events().unwrap().high == 0 {
        w.next_event(WAIT)
            .unwrap()
            .expect("memory.events high should rise");
    }
    let err = cg.freeze(Duration::ZERO).unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(
        !cg.freeze_requested().unwrap(),
        "the timed-out freeze was left in cgroup.freeze"
    );
    assert!(!cg.events().unwrap().frozen);
    // Given time to finish its sleep, the same task freezes.
    cg.freeze(WAIT).unwrap();
    cg.thaw(WAIT).unwrap();
}

/// Touches 64M of fresh anonymous memory, again and again; raw syscalls only (it runs
/// after fork). Throttled at 1M of memory.high, it never gets through the first pass.
fn allocate_forever() -> i32 {
    let Some(memory) = qube_testkit::Anonymous::map(64 << 20, false) else {
        return 1;
    };
    loop {
        memory.touch(4096, 1);
    }
}

#[test]
fn kill_ends_every_process_of_the_subtree_and_keeps_the_cgroup() {
    let Some(root) = v2_root() else { return };
    let cg = scratch(&root, "kill-only");
    let inner = cg.create("inner").unwrap();
    let mut top = Proc::spawn_in(&cg, Work::Pause);
    let mut deep = Proc::spawn_in(&inner, Work::Pause);
    // Three grandchildren that are not ours to wait for: only the cgroup knows them.
    let mut forker = Proc::spawn_in(&inner, Work::Fork(3));
    assert!(matches!(forker.wait(), WaitStatus::Exited(_, 0)));
    let orphans = inner.procs().unwrap();
    assert_eq!(orphans.len(), 4, "{orphans:?}");
    cg.kill().unwrap();
    cg.wait_unpopulated(WAIT).unwrap();
    assert!(!inner.events().unwrap().populated);
    for pid in orphans {
        qube_testkit::wait_for_exit(pid);
    }
    for p in [&mut top, &mut deep] {
        assert!(matches!(
            p.wait(),
            WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGKILL, _)
        ));
    }
    assert!(
        cg.path().exists() && inner.path().exists(),
        "kill removes nothing"
    );
    // cgroup.kill acts once: a process that joins afterwards runs to its own end.
    let mut after = Proc::spawn_in(&inner, Work::Exit(7));
    assert!(matches!(after.wait(), WaitStatus::Exited(_, 7)));
}

#[test]
fn disable_controllers_is_bottom_up_and_takes_the_files_away() {
    // cgroup-v2.rst, "Top-down Constraint": "a controller can't be disabled if one or
    // more children have it enabled."
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "disable");
    parent
        .enable_controllers(Controllers::MEMORY | Controllers::PIDS)
        .unwrap();
    let child = parent.create("child").unwrap();
    child.enable_controllers(Controllers::PIDS).unwrap();
    let leaf = child.create("leaf").unwrap();
    leaf.pids().max().unwrap();
    let err = parent
        .disable_controllers(Controllers::MEMORY | Controllers::PIDS)
        .unwrap_err();
    match &err {
        Error::ControllerInUse {
            controllers,
            children,
            ..
        } => {
            assert_eq!(*controllers, Controllers::PIDS, "{err}");
            assert_eq!(children, &["child"], "{err}");
        }
        other => panic!("expected ControllerInUse, got {other}"),
    }
    assert_eq!(
        parent.subtree_control().unwrap(),
        Controllers::MEMORY | Controllers::PIDS,
        "a refused write changes nothing"
    );
    child.disable_controllers(Controllers::PIDS).unwrap();
    assert!(!leaf.controllers().unwrap().contains(Controllers::PIDS));
    parent.disable_controllers(Controllers::PIDS).unwrap();
    assert_eq!(parent.subtree_control().unwrap(), Controllers::MEMORY);
    assert!(!child.controllers().unwrap().contains(Controllers::PIDS));
    let err = child.pids().max().unwrap_err();
    assert!(
        matches!(
            err,
            Error::ControllerNotEnabled {
                controller: Controller::Pids,
                ..
            }
        ),
        "{err}"
    );
    // What is not enabled is disabled already.
    parent.disable_controllers(Controllers::PIDS).unwrap();
}

#[test]
fn watcher_reports_populated_transitions_and_removal() {
    let Some(root) = v2_root() else { return };
    let cg = scratch(&root, "watch").persist();
    let mut w = Watcher::new(&cg).unwrap();
    let mut p = Proc::spawn_in(&cg, Work::Pause);
    assert_eq!(w.next_event(WAIT).unwrap(), Some(Event::Populated(true)));
    p.signal(nix::sys::signal::Signal::SIGKILL);
    p.wait();
    assert_eq!(w.next_event(WAIT).unwrap(), Some(Event::Populated(false)));
    cg.remove().unwrap();
    assert_eq!(w.next_event(WAIT).unwrap(), Some(Event::Removed));
    assert_eq!(w.next_event(Duration::from_millis(10)).unwrap(), None);
}

#[test]
fn open_self_finds_this_process() {
    let Some(_root) = v2_root() else { return };
    let me = Cgroup::open_self().unwrap();
    assert!(me.procs().unwrap().contains(&std::process::id()));
}
