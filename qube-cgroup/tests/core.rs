//! Core (non-controller) features against the real kernel: the host's cgroup2 mount, or
//! the VM's. Each test works in a scratch cgroup that it creates and removes.

use std::time::Duration;

use nix::sys::wait::WaitStatus;
use qube_cgroup::{Cgroup, Error, Event, Watcher};
use qube_testkit::{cpu_ticks, scratch, v2_root, Proc, Work};

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
    while ticks() == frozen_at {
        std::hint::spin_loop();
    }
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
