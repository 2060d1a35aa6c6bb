//! The core interface files against the real kernel: `cgroup.type` and the threaded
//! subtree rules, `cgroup.max.descendants` / `cgroup.max.depth`, `cgroup.stat`. They need
//! no controller, so they run on the host's cgroup2 mount as well as in the VM, each in
//! scratch cgroups it creates and removes.

use qube_cgroup::{CgroupType, Error, Max};
use qube_testkit::{scratch, v2_root, Proc, Work};

#[test]
fn a_threaded_child_makes_its_parent_the_thread_root() {
    let Some(root) = v2_root() else { return };
    // "cgroup.type: A read-write single value file which exists on non-root cgroups."
    assert!(matches!(root.cgroup_type(), Err(Error::Unsupported { .. })));
    let domain = scratch(&root, "thread-root");
    let worker = domain.create("worker").unwrap();
    assert_eq!(worker.cgroup_type().unwrap(), CgroupType::Domain);

    // cgroup-v2.rst: "On creation, a cgroup is always a domain cgroup and can be made
    // threaded by writing "threaded" to the "cgroup.type" file." -- and its parent
    // becomes the threaded domain: "A domain cgroup is turned into a threaded domain when
    // one of its child cgroup becomes threaded".
    worker.set_type(CgroupType::Threaded).unwrap();
    assert_eq!(worker.cgroup_type().unwrap(), CgroupType::Threaded);
    assert_eq!(domain.cgroup_type().unwrap(), CgroupType::DomainThreaded);

    // "The operation is single direction": nothing but `threaded` is written at all.
    for back in [CgroupType::Domain, CgroupType::DomainThreaded] {
        assert!(matches!(
            worker.set_type(back),
            Err(Error::InvalidValue { .. })
        ));
    }
    assert_eq!(worker.cgroup_type().unwrap(), CgroupType::Threaded);

    // "In a threaded cgroup, reading this file [cgroup.procs] fails with EOPNOTSUPP".
    assert!(matches!(worker.procs(), Err(Error::Threaded { .. })));
}

#[test]
fn threads_of_a_process_spread_over_the_threaded_subtree() {
    let Some(root) = v2_root() else { return };
    let domain = scratch(&root, "thread-spread");
    let worker = domain.create("worker").unwrap();
    worker.set_type(CgroupType::Threaded).unwrap();
    let p = Proc::spawn_in(&domain, Work::Pause);

    // The child is single-threaded: its tid is its pid. "cgroup.threads" moves it within
    // the same resource domain...
    worker.attach_thread(p.pid()).unwrap();
    assert_eq!(worker.threads().unwrap(), [p.pid()]);
    assert!(domain.threads().unwrap().is_empty());
    // ...while "all the processes are considered to be in the threaded domain cgroup":
    // "cgroup.procs in a threaded domain cgroup contains the PIDs of all processes in the subtree".
    assert_eq!(domain.procs().unwrap(), [p.pid()]);
}

#[test]
fn a_domain_below_a_threaded_cgroup_is_invalid_until_threaded() {
    let Some(root) = v2_root() else { return };
    let domain = scratch(&root, "thread-invalid");
    let worker = domain.create("worker").unwrap();
    worker.set_type(CgroupType::Threaded).unwrap();
    let below = worker.create("below").unwrap();

    // "A (threaded domain) - B (threaded) - C (domain, just created): C is created as a
    // domain but isn't connected to a parent which can host child domains. C can't be
    // used until it is turned into a threaded cgroup."
    assert_eq!(below.cgroup_type().unwrap(), CgroupType::DomainInvalid);
    // "Operations which fail due to invalid topology use EOPNOTSUPP as the errno."
    let mut p = Proc::fork(Work::Pause);
    assert!(matches!(below.attach(p.pid()), Err(Error::Threaded { .. })));
    p.release();

    below.set_type(CgroupType::Threaded).unwrap();
    assert_eq!(below.cgroup_type().unwrap(), CgroupType::Threaded);
}

#[test]
fn a_populated_domain_child_keeps_its_sibling_from_turning_threaded() {
    let Some(root) = v2_root() else { return };
    let domain = scratch(&root, "thread-refused");
    let busy = domain.create("busy").unwrap();
    let idle = domain.create("idle").unwrap();
    let _p = Proc::spawn_in(&busy, Work::Pause);

    // "When the parent is an unthreaded domain, it must not have any domain controllers
    // enabled or populated domain children."
    assert!(matches!(
        idle.set_type(CgroupType::Threaded),
        Err(Error::Threaded { .. })
    ));
    assert_eq!(idle.cgroup_type().unwrap(), CgroupType::Domain);
    assert_eq!(domain.cgroup_type().unwrap(), CgroupType::Domain);
}

#[test]
fn a_populated_cgroup_cannot_turn_threaded() {
    let Some(root) = v2_root() else { return };
    let cg = scratch(&root, "thread-populated");
    let _p = Proc::spawn_in(&cg, Work::Pause);
    assert!(matches!(
        cg.set_type(CgroupType::Threaded),
        Err(Error::Threaded { .. })
    ));
    assert_eq!(cg.cgroup_type().unwrap(), CgroupType::Domain);
}

#[test]
fn max_descendants_refuses_the_next_mkdir_anywhere_below() {
    let Some(root) = v2_root() else { return };
    let cg = scratch(&root, "max-descendants");
    assert_eq!(cg.max_descendants().unwrap(), Max::Max);
    cg.set_max_descendants(Max::Limit(1)).unwrap();
    assert_eq!(cg.max_descendants().unwrap(), Max::Limit(1));

    // "If the actual number of descendants is equal or larger, an attempt to create a new
    // cgroup in the hierarchy will fail."
    let only = cg.create("only").unwrap();
    assert!(matches!(
        cg.create("second"),
        Err(Error::LimitReached { .. })
    ));
    assert!(matches!(
        only.create("grandchild"),
        Err(Error::LimitReached { .. })
    ));
    assert_eq!(cg.children().unwrap(), ["only"]);

    // Bad input is refused before anything is written.
    assert!(matches!(
        cg.set_max_descendants(Max::Limit(u64::from(u32::MAX))),
        Err(Error::InvalidValue { .. })
    ));
    assert_eq!(cg.max_descendants().unwrap(), Max::Limit(1));

    cg.set_max_descendants(Max::Max).unwrap();
    let _second = cg.create("second").unwrap();
}

#[test]
fn max_depth_refuses_a_cgroup_too_deep() {
    let Some(root) = v2_root() else { return };
    let cg = scratch(&root, "max-depth");
    assert_eq!(cg.max_depth().unwrap(), Max::Max);
    cg.set_max_depth(Max::Limit(1)).unwrap();
    assert_eq!(cg.max_depth().unwrap(), Max::Limit(1));

    // "If the actual descent depth is equal or larger, an attempt to create a new child
    // cgroup will fail." Depth 1 allows children, not grandchildren; width is free.
    let a = cg.create("a").unwrap();
    let _b = cg.create("b").unwrap();
    assert!(matches!(
        a.create("deeper"),
        Err(Error::LimitReached { .. })
    ));
    assert!(a.children().unwrap().is_empty());

    cg.set_max_depth(Max::Limit(2)).unwrap();
    let _deeper = a.create("deeper").unwrap();
}

#[test]
fn stat_counts_every_descendant_and_keeps_every_key() {
    let Some(root) = v2_root() else { return };
    let cg = scratch(&root, "stat");
    assert_eq!(cg.stat().unwrap().nr_descendants, 0);
    let a = cg.create("a").unwrap();
    let _b = cg.create("b").unwrap();
    let x = a.create("x").unwrap();

    // nr_descendants: "Total number of visible descendant cgroups."
    let stat = cg.stat().unwrap();
    assert_eq!(stat.nr_descendants, 3);
    assert_eq!(a.stat().unwrap().nr_descendants, 1);
    assert_eq!(
        stat.get("nr_dying_descendants"),
        Some(stat.nr_dying_descendants)
    );
    assert_eq!(stat.to_string(), cg.read_file("cgroup.stat").unwrap());
    assert!(stat.iter().count() >= 2);

    // A removed cgroup is no longer visible, whether or not it is still dying.
    drop(x);
    assert_eq!(cg.stat().unwrap().nr_descendants, 2);
}
