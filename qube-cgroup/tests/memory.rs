//! The memory controller in the VM, and its absence on a hybrid host.

use std::time::Duration;

use nix::sys::wait::WaitStatus;
use qube_cgroup::{
    Bytes, Cgroup, Controller, Controllers, Error, Event, Flag, Max, Mounts, Watcher,
};
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
}

#[test]
fn swap_current_stays_within_swap_max_when_more_is_asked_to_go_to_swap() {
    // Oversubscribed: reclaim asks for twice the swap the group may use, with nothing but
    // anonymous memory to give, so only memory.swap.max stops the kernel swapping.
    let Some(root) = require_vm!() else { return };
    let cg = scratch(&root, "swap-bound");
    let limit = Bytes::mib(8);
    cg.memory().set_swap_max(Max::Limit(limit)).unwrap();
    let _p = holding(&cg, 24 << 20);
    let err = cg.memory().reclaim(Bytes::mib(16)).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(nix::libc::EAGAIN), "{err}");
    let swapped = cg.memory().swap_current().unwrap();
    assert!(swapped <= limit, "{swapped} in swap, over swap.max {limit}");
    // The bound was reached, not merely respected from afar.
    assert!(swapped >= Bytes::mib(6), "only {swapped} in swap");
    assert!(
        cg.memory().current().unwrap() >= Bytes::mib(14),
        "what swap could not take stays in memory"
    );
    assert_eq!(cg.memory().events().unwrap().oom_kill, 0);
}

/// Forks a process into `cg` that touches `bytes` of anonymous memory and stops itself
/// holding it: the memory is charged to `cg` once this returns, and nothing runs after.
fn holding(cg: &Cgroup, bytes: usize) -> Proc {
    let mut p = Proc::fork(Work::AllocThenStop(bytes));
    cg.attach(p.pid()).expect("attach the holding process");
    p.wait_until_stopped();
    p
}

/// A scratch parent that distributes memory to its children.
fn memory_parent(root: &Cgroup, test: &str) -> Cgroup {
    let parent = scratch(root, test);
    parent
        .enable_controllers(Controllers::MEMORY)
        .expect("enable memory for the children");
    parent
}

#[test]
fn memory_reclaim_swaps_out_anonymous_memory_and_says_eagain_when_short() {
    let Some(root) = require_vm!() else { return };
    let cg = scratch(&root, "reclaim");
    let _p = holding(&cg, 16 << 20);
    let before = cg.memory().current().unwrap();
    assert!(before >= Bytes::mib(16), "{before}");
    assert_eq!(cg.memory().swap_current().unwrap(), Bytes(0));
    cg.memory().reclaim(Bytes::mib(8)).unwrap();
    let after = cg.memory().current().unwrap();
    // The kernel returns once it reclaimed at least 8M; a little may be charged back
    // meanwhile (page tables of the swap-out), hence the slack.
    assert!(
        after.0 + Bytes::mib(7).0 <= before.0,
        "reclaim took {before} down to only {after}"
    );
    assert!(cg.memory().swap_current().unwrap() >= Bytes::mib(7));
    // memory.reclaim: "If less bytes are reclaimed than the specified amount, -EAGAIN is
    // returned." The group has nowhere near 1G.
    let err = cg.memory().reclaim(Bytes::gib(1)).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(nix::libc::EAGAIN), "{err}");
}

#[test]
fn memory_min_is_never_reclaimed_and_the_unprotected_sibling_pays() {
    // Reclaim on the parent: for its direct children the kernel takes memory.min as set
    // (mem_cgroup_calculate_protection), so the test needs no protection on the parent.
    let Some(root) = require_vm!() else { return };
    let parent = memory_parent(&root, "min");
    let kept = parent.create("kept").unwrap();
    let open = parent.create("open").unwrap();
    kept.memory().set_min(Max::Max).unwrap();
    let _k = holding(&kept, 16 << 20);
    let _o = holding(&open, 16 << 20);
    let open_before = open.memory().current().unwrap();
    parent.memory().reclaim(Bytes::mib(8)).unwrap();
    assert_eq!(kept.memory().swap_current().unwrap(), Bytes(0));
    assert!(kept.memory().current().unwrap() >= Bytes::mib(16));
    let open_after = open.memory().current().unwrap();
    assert!(
        open_after.0 + Bytes::mib(7).0 <= open_before.0,
        "the 8M came from elsewhere: {open_before} -> {open_after}"
    );
    // Asked for more than the unprotected sibling has, the kernel still leaves the
    // protected group alone, and says it fell short.
    let err = parent.memory().reclaim(Bytes::mib(64)).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(nix::libc::EAGAIN), "{err}");
    assert_eq!(kept.memory().swap_current().unwrap(), Bytes(0));
    assert_eq!(kept.memory().events().unwrap().low, 0);
}

#[test]
fn memory_low_is_reclaimed_last_and_counted_when_it_is() {
    let Some(root) = require_vm!() else { return };
    let parent = memory_parent(&root, "low");
    let low = parent.create("low").unwrap();
    low.memory().set_low(Max::Max).unwrap();
    let _l = holding(&low, 16 << 20);
    {
        let open = parent.create("open").unwrap();
        let _o = holding(&open, 16 << 20);
        parent.memory().reclaim(Bytes::mib(8)).unwrap();
        assert_eq!(
            low.memory().swap_current().unwrap(),
            Bytes(0),
            "reclaimed below memory.low while its sibling had memory to give"
        );
        assert_eq!(low.memory().events().unwrap().low, 0);
    } // the sibling's process is killed and its memory freed
      // memory.low is best effort: with nothing unprotected left the kernel reclaims the
      // protected group after all, and memory.events `low` counts it.
    parent.memory().reclaim(Bytes::mib(4)).unwrap();
    assert!(low.memory().swap_current().unwrap() > Bytes(0));
    let events = low.memory().events().unwrap();
    assert!(events.low >= 1, "{events:?}");
}

#[test]
fn memory_peak_holds_the_high_water_mark_after_the_memory_is_gone() {
    let Some(root) = require_vm!() else { return };
    let cg = scratch(&root, "peak");
    let mut p = holding(&cg, 24 << 20);
    let peak = cg.memory().peak().unwrap();
    assert!(peak >= Bytes::mib(24), "{peak}");
    assert!(peak >= cg.memory().current().unwrap());
    p.signal(nix::sys::signal::Signal::SIGKILL);
    p.wait();
    cg.wait_unpopulated(WAIT).unwrap();
    assert!(cg.memory().current().unwrap() < Bytes::mib(4));
    assert!(cg.memory().peak().unwrap() >= peak, "memory.peak fell");
}

#[test]
fn an_oom_in_a_child_is_local_to_it_and_hierarchical_in_the_parent() {
    let Some(root) = require_vm!() else { return };
    let parent = memory_parent(&root, "oom-tree");
    let child = parent.create("child").unwrap();
    child.memory().set_max(Max::Limit(Bytes::mib(16))).unwrap();
    child.memory().set_swap_max(Max::Limit(Bytes(0))).unwrap();
    let mut p = Proc::spawn_in(&child, Work::Alloc(64 << 20));
    assert!(matches!(
        p.wait(),
        WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGKILL, _)
    ));
    let child_local = child.memory().events_local().unwrap();
    assert!(child_local.oom_kill >= 1, "{child_local:?}");
    assert_eq!(
        child.memory().events().unwrap().oom_kill,
        child_local.oom_kill
    );
    // memory.events counts the subtree (the VM mounts without memory_localevents);
    // memory.events.local only what happened at this level, which was nothing.
    let parent_all = parent.memory().events().unwrap();
    let parent_local = parent.memory().events_local().unwrap();
    assert_eq!(parent_all.oom_kill, child_local.oom_kill, "{parent_all:?}");
    assert_eq!(parent_local.oom_kill, 0, "{parent_local:?}");
    assert_eq!(parent_local.max, 0, "{parent_local:?}");
}

#[test]
fn oom_group_kills_every_process_of_the_group_not_only_the_largest() {
    let Some(root) = require_vm!() else { return };
    // Without memory.oom.group the OOM killer picks the one big allocator...
    let single = scratch(&root, "oom-single");
    single.memory().set_max(Max::Limit(Bytes::mib(32))).unwrap();
    single.memory().set_swap_max(Max::Limit(Bytes(0))).unwrap();
    let bystander = Proc::spawn_in(&single, Work::Pause);
    let mut hog = Proc::spawn_in(&single, Work::Alloc(128 << 20));
    assert!(matches!(hog.wait(), WaitStatus::Signaled(..)));
    assert_eq!(single.procs().unwrap(), [bystander.pid()]);
    assert_eq!(single.memory().events().unwrap().oom_group_kill, 0);
    // ...with it, the whole group goes, the idle process with it.
    let group = scratch(&root, "oom-group");
    group.memory().set_max(Max::Limit(Bytes::mib(32))).unwrap();
    group.memory().set_swap_max(Max::Limit(Bytes(0))).unwrap();
    group.memory().set_oom_group(Flag(true)).unwrap();
    assert_eq!(group.memory().oom_group().unwrap(), Flag(true));
    let mut idle = Proc::spawn_in(&group, Work::Pause);
    let mut hog = Proc::spawn_in(&group, Work::Alloc(128 << 20));
    assert!(matches!(hog.wait(), WaitStatus::Signaled(..)));
    // On the group, not the idle process: if it lived on, waiting for it would hang.
    group.wait_unpopulated(WAIT).unwrap();
    assert!(matches!(
        idle.wait(),
        WaitStatus::Signaled(_, nix::sys::signal::Signal::SIGKILL, _)
    ));
    let events = group.memory().events().unwrap();
    assert!(events.oom_group_kill >= 1, "{events:?}");
    assert!(events.oom_kill >= 2, "{events:?}");
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
fn a_process_cannot_join_a_cgroup_that_distributes_memory() {
    // cgroup-v2.rst, "No Internal Process Constraint": "only domain cgroups which don't
    // contain any processes can have domain controllers enabled in their
    // "cgroup.subtree_control" files." The kernel holds to it from this side too.
    let Some(root) = require_vm!() else { return };
    let parent = memory_parent(&root, "no-join");
    let p = Proc::fork(Work::Pause);
    let err = parent.attach(p.pid()).unwrap_err();
    match &err {
        Error::InternalProcess { path, .. } => {
            assert!(path.ends_with("cgroup.procs"), "{err}")
        }
        other => panic!("expected InternalProcess, got {other}"),
    }
    assert!(parent.procs().unwrap().is_empty());
    // Once it distributes nothing, the same process may join.
    parent.disable_controllers(Controllers::MEMORY).unwrap();
    parent.attach(p.pid()).unwrap();
    assert_eq!(parent.procs().unwrap(), [p.pid()]);
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
