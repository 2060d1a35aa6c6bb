//! The cpu controller in the VM (bandwidth throttling, weights, burst, idle), and
//! `cpu.stat`, which every cgroup has, on the host too.

use std::time::{Duration, Instant};

use qube_cgroup::{Cgroup, CpuMax, CpuStat, Error, Flag, Max, Mounts, Nice, Watcher, Weight};
use qube_testkit::{in_vm, require_vm, scratch, v2_root, Proc, Work};

const WAIT: Duration = Duration::from_secs(60);

/// Re-reads `cpu.stat` until `done` holds, blocking on the group's events between reads.
fn stat_when(cg: &Cgroup, done: impl Fn(&CpuStat) -> bool) -> (CpuStat, Instant) {
    let mut watcher = Watcher::new(cg).expect("watch cgroup.events");
    let deadline = Instant::now() + WAIT;
    loop {
        let stat = cg.cpu().stat().expect("read cpu.stat");
        if done(&stat) {
            return (stat, Instant::now());
        }
        assert!(
            Instant::now() < deadline,
            "cpu.stat never got there: {stat}"
        );
        let _ = watcher
            .next_event(Duration::from_millis(20))
            .expect("poll cgroup.events");
    }
}

#[test]
fn cpu_max_throttles_a_busy_loop() {
    // cgroup-v2.rst, cpu.max: "$MAX $PERIOD ... indicates that the group may consume up
    // to $MAX in each $PERIOD duration."
    let Some(root) = require_vm!() else { return };
    let cg = scratch(&root, "throttle");
    let limit: CpuMax = "10000 100000".parse().unwrap();
    cg.cpu().set_max(limit).unwrap();
    assert_eq!(cg.cpu().max().unwrap(), limit);
    assert_eq!(cg.read_file("cpu.max").unwrap(), "10000 100000\n");

    let _spinner = Proc::spawn_in(&cg, Work::Spin);
    let (first, t0) = stat_when(&cg, |s| s.nr_throttled > 0);
    // Ten more periods: a second of wall time in which the spinner wanted all of it.
    let (later, t1) = stat_when(&cg, |s| s.nr_periods >= first.nr_periods + 10);
    let used = later.usage_usec - first.usage_usec;
    let wall = u64::try_from((t1 - t0).as_micros()).unwrap();
    assert!(
        used * 3 < wall,
        "10% of a CPU allowed, yet {used} µs used in {wall} µs"
    );
    assert!(later.nr_throttled > first.nr_throttled);
    assert!(later.throttled_usec > 0, "{later}");
    assert_eq!(later.get("nr_throttled"), Some(later.nr_throttled));
}

#[test]
fn weight_and_nice_are_two_views_of_one_value() {
    // cgroup-v2.rst, cpu.weight.nice: "The nice value is in the range [-20, 19]. This
    // interface file is an alternative interface for 'cpu.weight' and allows reading
    // and setting weight using the same values used by nice(2)."
    let Some(root) = require_vm!() else { return };
    let cg = scratch(&root, "weight");
    let cpu = cg.cpu();
    assert_eq!(cpu.weight().unwrap(), Weight::DEFAULT);
    cpu.set_weight(Weight::new(250).unwrap()).unwrap();
    assert_eq!(cpu.weight().unwrap(), Weight::new(250).unwrap());
    assert_eq!(cg.read_file("cpu.weight").unwrap(), "250\n");

    cpu.set_weight_nice(Nice::new(-5).unwrap()).unwrap();
    assert_eq!(cpu.weight_nice().unwrap(), Nice::new(-5).unwrap());
    // Nice -5 is the scheduler's load weight 3121, i.e. 3121 * 100 / 1024 ≈ 305.
    assert_eq!(cpu.weight().unwrap(), Weight::new(305).unwrap());
}

#[test]
fn an_idle_group_has_no_weight() {
    // cgroup-v2.rst, cpu.idle: "This is the cgroup analog of the per-task SCHED_IDLE
    // sched policy."
    let Some(root) = require_vm!() else { return };
    let cg = scratch(&root, "idle");
    let cpu = cg.cpu();
    assert_eq!(cpu.idle().unwrap(), Flag(false));
    cpu.set_idle(Flag(true)).unwrap();
    assert_eq!(cpu.idle().unwrap(), Flag(true));
    let err = cpu.weight().unwrap_err();
    assert!(
        matches!(&err, Error::Parse { reason, .. } if reason.contains("idle")),
        "{err}"
    );
    assert!(cpu.set_weight(Weight::new(200).unwrap()).is_err());
    cpu.set_idle(Flag(false)).unwrap();
    assert!(cpu.weight().is_ok());
}

#[test]
fn burst_must_fit_in_the_quota() {
    let Some(root) = require_vm!() else { return };
    let cg = scratch(&root, "burst");
    let cpu = cg.cpu();
    assert_eq!(cpu.max_burst().unwrap(), 0);
    cpu.set_max(CpuMax::cpus(0.5)).unwrap();
    cpu.set_max_burst(50_000).unwrap();
    assert_eq!(cpu.max_burst().unwrap(), 50_000);
    // The kernel keeps burst <= quota at every write, from either side.
    let err = cpu.set_max_burst(50_001).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(nix::libc::EINVAL), "{err}");
    assert!(cpu.set_max(CpuMax::cpus(0.25)).is_err());
    assert_eq!(cpu.max().unwrap(), CpuMax::cpus(0.5));
    assert_eq!(cpu.max_burst().unwrap(), 50_000);
}

#[test]
fn out_of_range_limits_write_nothing() {
    let Some(root) = require_vm!() else { return };
    let cg = scratch(&root, "cpu-bad");
    let before = cg.read_file("cpu.max").unwrap();
    for bad in [
        CpuMax {
            quota: Max::Limit(999),
            period: 100_000,
        },
        CpuMax {
            quota: Max::Max,
            period: 2_000_000,
        },
        CpuMax::cpus(-1.0),
    ] {
        let err = cg.cpu().set_max(bad).unwrap_err();
        assert!(matches!(err, Error::InvalidValue { .. }), "{err}");
    }
    assert_eq!(cg.read_file("cpu.max").unwrap(), before);
}

#[test]
fn cpu_stat_is_in_every_cgroup_and_counts_usage() {
    // cgroup-v2.rst: "cpu.stat ... This file exists whether the controller is enabled or
    // not. It always reports the following three stats: usage_usec, user_usec, system_usec."
    let Some(root) = v2_root() else { return };
    let cg = scratch(&root, "cpustat");
    let idle = cg.cpu().stat().unwrap();
    assert_eq!(idle.usage_usec, 0);
    let _spinner = Proc::spawn_in(&cg, Work::Spin);
    let (busy, _) = stat_when(&cg, |s| s.usage_usec > 10_000);
    assert!(busy.user_usec > 0, "{busy}");
    assert_eq!(busy.to_string().parse::<CpuStat>().unwrap(), busy);
}

#[test]
fn cpu_max_on_a_hybrid_host_names_the_v1_mount() {
    let mounts = Mounts::current().unwrap();
    if in_vm() || mounts.v1_mount_of(qube_cgroup::Controller::Cpu).is_none() {
        eprintln!("SKIP (needs a hybrid host with cpu on cgroup v1)");
        return;
    }
    let root = Cgroup::root().unwrap();
    let cg = scratch(&root, "v1cpu");
    let err = cg.cpu().max().unwrap_err();
    assert!(matches!(err, Error::ControllerUnavailable { .. }), "{err}");
}
