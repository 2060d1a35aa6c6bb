//! The memory controller in the VM, and its absence on a hybrid host.

use std::time::Duration;

use nix::sys::wait::WaitStatus;
use qube_cgroup::{Bytes, Cgroup, Controller, Controllers, Error, Event, Max, Mounts, Watcher};
use qube_testkit::{in_vm, require_vm, scratch, Proc, Work};

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn memory_max_round_trips_through_the_kernel() {
    let Some(root) = require_vm!() else { return };
    let cg = scratch(&root, "memmax");
    let mem = cg.memory();
    assert_eq!(mem.max().unwrap(), Max::Max);
    mem.set_max(Max::Limit(Bytes::gib(2))).unwrap();
    assert_eq!(mem.max().unwrap(), Max::Limit(Bytes(2147483648)));
    assert_eq!(cg.read_file("memory.max").unwrap(), "2147483648\n");
    mem.set_swap_max(Max::Limit(Bytes::gib(1))).unwrap();
    assert_eq!(mem.swap_max().unwrap(), Max::Limit(Bytes(1073741824)));
    // The kernel rounds down to whole pages, and the type reads back what it wrote.
    mem.set_high(Max::Limit(Bytes(1_000_001))).unwrap();
    assert_eq!(
        mem.high().unwrap(),
        Max::Limit(Bytes(1_000_001 / 4096 * 4096))
    );
}

#[test]
fn memory_low_and_min_take_and_read_back_max() {
    // The kernel prints `max` for protection set to everything, as it does for limits.
    let Some(root) = require_vm!() else { return };
    let cg = scratch(&root, "memprot");
    let mem = cg.memory();
    assert_eq!(mem.low().unwrap(), Max::Limit(Bytes(0)));
    assert_eq!(mem.min().unwrap(), Max::Limit(Bytes(0)));
    mem.set_low(Max::Max).unwrap();
    mem.set_min(Max::Max).unwrap();
    assert_eq!(cg.read_file("memory.low").unwrap(), "max\n");
    assert_eq!(mem.low().unwrap(), Max::Max);
    assert_eq!(mem.min().unwrap(), Max::Max);
    mem.set_low(Max::Limit(Bytes::mib(16))).unwrap();
    mem.set_min(Max::Limit(Bytes::mib(8))).unwrap();
    assert_eq!(mem.low().unwrap(), Max::Limit(Bytes::mib(16)));
    assert_eq!(mem.min().unwrap(), Max::Limit(Bytes::mib(8)));
    // `max` written as raw text, as any other tool would, reads back the same.
    cg.write_file("memory.min", "max").unwrap();
    assert_eq!(mem.min().unwrap(), Max::Max);
    cg.write_file("memory.low", "max").unwrap();
    assert_eq!(mem.low().unwrap(), Max::Max);
}

#[test]
fn going_past_memory_max_is_an_oom_kill_in_memory_events() {
    let Some(root) = require_vm!() else { return };
    let cg = scratch(&root, "oom");
    cg.memory().set_max(Max::Limit(Bytes::mib(32))).unwrap();
    cg.memory().set_swap_max(Max::Limit(Bytes(0))).unwrap();
    let mut w = Watcher::new(&cg).unwrap();
    let mut p = Proc::spawn_in(&cg, Work::Alloc(128 << 20));
    assert!(matches!(
        p.wait(),
        WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGKILL, _)
    ));
    let events = cg.memory().events().unwrap();
    assert!(events.oom_kill >= 1, "{events:?}");
    assert!(events.max >= 1);
    let mut seen = Vec::new();
    while let Some(e) = w.next_event(WAIT).unwrap() {
        seen.push(e);
        if e == Event::Populated(false) {
            break;
        }
    }
    assert!(
        seen.iter()
            .any(|e| matches!(e, Event::OomKill(n) if *n >= 1)),
        "{seen:?}"
    );
}

#[test]
fn memory_high_throttles_and_is_counted() {
    let Some(root) = require_vm!() else { return };
    let cg = scratch(&root, "high");
    cg.memory().set_high(Max::Limit(Bytes::mib(16))).unwrap();
    let _p = Proc::spawn_in(&cg, Work::Alloc(48 << 20));
    let mut w = Watcher::new(&cg).unwrap();
    while cg.memory().events().unwrap().high == 0 {
        w.next_event(WAIT)
            .unwrap()
            .expect("memory.events high should rise");
    }
    assert!(
        cg.memory().current().unwrap() <= Bytes::mib(20)
            || cg.memory().swap_current().unwrap() > Bytes(0)
    );
}

#[test]
fn swap_max_bounds_swap_use_under_pressure() {
    let Some(root) = require_vm!() else { return };
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap();
    assert!(swaps.lines().count() > 1, "the VM turns swap on: {swaps}");
    let cg = scratch(&root, "swap");
    cg.memory().set_max(Max::Limit(Bytes::mib(32))).unwrap();
    cg.memory()
        .set_swap_max(Max::Limit(Bytes::mib(16)))
        .unwrap();
    let mut p = Proc::spawn_in(&cg, Work::Alloc(64 << 20));
    assert!(
        matches!(p.wait(), WaitStatus::Signaled(..)),
        "32M + 16M swap cannot hold 64M"
    );
    let peak = cg.memory().events().unwrap();
    assert!(peak.oom_kill >= 1);
    let cg2 = scratch(&root, "swap-fits");
    cg2.memory().set_max(Max::Limit(Bytes::mib(32))).unwrap();
    cg2.memory()
        .set_swap_max(Max::Limit(Bytes::mib(64)))
        .unwrap();
    let _q = Proc::spawn_in(&cg2, Work::Alloc(48 << 20));
    let mut w = Watcher::new(&cg2).unwrap();
    while cg2.memory().swap_current().unwrap() < Bytes::mib(8) {
        w.next_event(WAIT).unwrap().expect("swap use should grow");
    }
    assert!(cg2.memory().swap_current().unwrap() <= Bytes::mib(64));
    assert_eq!(cg2.memory().events().unwrap().oom_kill, 0);
}

#[test]
fn stat_parses_the_kernels_memory_stat() {
    let Some(root) = require_vm!() else { return };
    let cg = scratch(&root, "stat");
    let mut p = Proc::fork(Work::AllocThenStop(8 << 20));
    cg.attach(p.pid()).unwrap();
    p.wait_until_stopped();
    let stat = cg.memory().stat().unwrap();
    assert!(stat.anon >= 8 << 20, "{stat}");
    assert_eq!(stat.get("anon"), Some(stat.anon));
    assert!(stat.iter().count() > 20);
    assert_eq!(
        stat.to_string().parse::<qube_cgroup::MemoryStat>().unwrap(),
        stat
    );
}

#[test]
fn numa_stat_puts_the_groups_memory_on_the_vms_one_node() {
    let Some(root) = require_vm!() else { return };
    let cg = scratch(&root, "numa");
    let mut p = Proc::fork(Work::AllocThenStop(8 << 20));
    cg.attach(p.pid()).unwrap();
    p.wait_until_stopped();
    let numa = cg.memory().numa_stat().unwrap();
    let anon = numa.get("anon").unwrap();
    assert!(anon.sum() >= 8 << 20, "{numa}");
    assert_eq!(anon.nodes.len(), 1, "the VM has one NUMA node: {numa}");
    assert_eq!(anon.node(0), Some(anon.sum()));
    assert!(anon.sum() <= cg.memory().current().unwrap().0);
    assert!(numa.get("file").is_some(), "{numa}");
    assert_eq!(
        numa.to_string().parse::<qube_cgroup::NumaStat>().unwrap(),
        numa
    );
}

#[test]
fn enabling_is_top_down_and_obeys_no_internal_processes() {
    // cgroup-v2.rst: "Non-root cgroups can distribute domain resources to their children
    // only when they don't have any processes of their own."
    let Some(root) = require_vm!() else { return };
    let cg = scratch(&root, "enable");
    let _p = Proc::spawn_in(&cg, Work::Pause);
    let err = cg.enable_controllers(Controllers::MEMORY).unwrap_err();
    assert!(matches!(err, Error::InternalProcess { .. }), "{err}");
    let parent = scratch(&root, "enable-tree");
    let leaf = parent
        .create_path("a/b", Controllers::MEMORY | Controllers::PIDS)
        .unwrap();
    assert!(leaf
        .controllers()
        .unwrap()
        .contains(Controllers::MEMORY | Controllers::PIDS));
    assert!(
        leaf.subtree_control().unwrap().is_empty(),
        "the leaf enables nothing"
    );
    // A controller the parent did not enable is not there, and the error says so.
    let bare = parent.open_child("a").unwrap().create("bare").unwrap();
    let no_io = bare.create("x").unwrap();
    let err = no_io.read_file("io.max").unwrap_err();
    assert!(
        matches!(
            err,
            Error::ControllerNotEnabled {
                controller: Controller::Io,
                ..
            } | Error::ControllerUnavailable { .. }
        ),
        "{err}"
    );
}

#[test]
fn a_v1_bound_controller_is_reported_where_it_lives() {
    let mounts = Mounts::current().unwrap();
    if in_vm() || !mounts.is_hybrid() || mounts.v1_mount_of(Controller::Memory).is_none() {
        eprintln!("SKIP (needs a hybrid host with memory on cgroup v1)");
        return;
    }
    let root = Cgroup::root().unwrap();
    let err = root.enable_controllers(Controllers::MEMORY).unwrap_err();
    match &err {
        Error::ControllerUnavailable {
            controller: Controller::Memory,
            v1_mount: Some(m),
            ..
        } => {
            assert_eq!(m, mounts.v1_mount_of(Controller::Memory).unwrap())
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("cgroup v1"), "{err}");
    let cg = scratch(&root, "v1mem");
    let err = cg.memory().max().unwrap_err();
    assert!(matches!(err, Error::ControllerUnavailable { .. }), "{err}");
}
