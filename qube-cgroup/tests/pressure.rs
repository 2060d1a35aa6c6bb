//! Pressure stall information against the real kernel (Documentation/accounting/psi.rst).
//! The pressure files and CPU triggers are core features, tested on the host's cgroup2
//! mount too; memory pressure needs the memory controller, so the VM.

use std::time::Duration;

use qube_cgroup::{Bytes, Error, Max, Pressure, PressureKind, PressureResource, PressureTrigger};
use qube_testkit::{scratch, spawn_fn_in, v2_root, Proc, Work};

/// How long a trigger may take to fire under pressure before the test fails.
const DEADLINE: Duration = Duration::from_secs(20);

#[test]
fn pressure_files_round_trip_the_kernel_text() {
    let Some(root) = v2_root() else { return };
    let cg = scratch(&root, "psi-files");
    for group in [&root, &cg] {
        for resource in PressureResource::ALL {
            // One read, parsed and printed back: the averages move between two reads.
            let text = group.read_file(resource.file()).unwrap();
            let parsed: Pressure = text.parse().unwrap();
            assert_eq!(parsed.to_string(), text, "{}", resource.file());
            group.pressure(resource).unwrap();
        }
    }
    // psi.rst: "The "full" line indicates the share of time in which all non-idle tasks
    // are stalled" -- memory and io always have it.
    assert!(root
        .pressure(PressureResource::Memory)
        .unwrap()
        .full
        .is_some());
    assert!(root.pressure(PressureResource::Io).unwrap().full.is_some());
    // A cgroup that never held a task has never stalled.
    for resource in PressureResource::ALL {
        assert_eq!(cg.pressure(resource).unwrap().some.total, Duration::ZERO);
    }
}

#[test]
fn cgroup_pressure_off_hides_the_files_and_on_brings_them_back() {
    let Some(root) = v2_root() else { return };
    let cg = scratch(&root, "psi-switch");
    match cg.pressure_enabled() {
        Ok(on) => assert!(on, "PSI is on for a new cgroup"),
        Err(Error::Unsupported { .. }) => {
            eprintln!("SKIP: cgroup.pressure needs Linux 6.1");
            return;
        }
        Err(e) => panic!("{e}"),
    }
    cg.set_pressure_enabled(false).unwrap();
    assert!(!cg.pressure_enabled().unwrap());
    assert!(matches!(
        cg.pressure(PressureResource::Memory),
        Err(Error::Unsupported { .. })
    ));
    cg.set_pressure_enabled(true).unwrap();
    cg.pressure(PressureResource::Memory).unwrap();
}

#[test]
fn a_trigger_outside_the_kernels_bounds_is_refused_before_anything_is_opened() {
    let Some(root) = v2_root() else { return };
    let cg = scratch(&root, "psi-bounds");
    let ms = Duration::from_millis;
    // psi.rst: "The kernel accepts window sizes ranging from 500ms to 10s".
    for (stall, window) in [
        (ms(10), ms(100)),
        (ms(10), ms(10_001)),
        (ms(600), ms(500)),
        (ms(0), ms(500)),
    ] {
        let refused = cg.pressure_trigger(PressureResource::Cpu, PressureKind::Some, stall, window);
        assert!(
            matches!(refused, Err(Error::InvalidValue { .. })),
            "{stall:?} in {window:?}: {refused:?}"
        );
    }

    // Since Linux 6.5 a process without CAP_SYS_RESOURCE (the host's test runner may be
    // one) gets triggers only on windows that are a multiple of 2s: a typed refusal too.
    match cg.pressure_trigger(PressureResource::Cpu, PressureKind::Some, ms(100), ms(1000)) {
        Ok(_) => {}
        Err(Error::InvalidValue { reason, .. }) => assert!(reason.contains("2s"), "{reason}"),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn a_cpu_trigger_stays_quiet_while_idle_and_fires_when_tasks_queue_for_cpus() {
    let Some(root) = v2_root() else { return };
    let cg = scratch(&root, "psi-cpu");
    let trigger = cpu_trigger(&cg);
    // An empty cgroup cannot stall: no event, however long one waits.
    assert!(!trigger.wait(Duration::from_millis(500)).unwrap());

    // One more spinner than there are CPUs: some task is always waiting for a CPU.
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    let _spinners: Vec<Proc> = (0..=cpus)
        .map(|_| Proc::spawn_in(&cg, Work::Spin))
        .collect();
    assert!(
        trigger.wait(DEADLINE).unwrap(),
        "no cpu stall event within {DEADLINE:?}"
    );
    assert!(cg.pressure(PressureResource::Cpu).unwrap().some.total > Duration::ZERO);
}

#[test]
fn a_removed_cgroup_ends_its_trigger_with_not_found() {
    let Some(root) = v2_root() else { return };
    let cg = scratch(&root, "psi-gone");
    let trigger = cpu_trigger(&cg);
    cg.remove().unwrap();
    // psi.rst's monitor: "got POLLERR, event source is gone".
    assert!(matches!(
        trigger.wait(DEADLINE),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn a_memory_trigger_fires_while_a_process_thrashes_and_the_stall_total_rises() {
    let Some(root) = qube_testkit::require_vm!() else {
        return;
    };
    let cg = scratch(&root, "psi-memory");
    // The working set is four times the limit: every pass over it swaps.
    cg.memory().set_max(Max::Limit(THRASH_LIMIT)).unwrap();
    let before = cg.pressure(PressureResource::Memory).unwrap();
    assert_eq!(before.some.total, Duration::ZERO);

    let trigger = cg
        .pressure_trigger(
            PressureResource::Memory,
            PressureKind::Some,
            Duration::from_millis(50),
            Duration::from_secs(1),
        )
        .unwrap();
    let _thrasher = spawn_fn_in(&cg, thrash);
    assert!(
        trigger.wait(DEADLINE).unwrap(),
        "no memory stall event within {DEADLINE:?}"
    );
    let first = cg.pressure(PressureResource::Memory).unwrap();
    assert!(first.some.total > before.some.total);

    // "Notifications to the userspace are rate-limited to one per tracking window": the
    // next event comes from a later window, with more stall behind it.
    assert!(
        trigger.wait(DEADLINE).unwrap(),
        "no second memory stall event within {DEADLINE:?}"
    );
    let second = cg.pressure(PressureResource::Memory).unwrap();
    assert!(second.some.total > first.some.total);
    assert!(
        cg.memory().events().unwrap().max > 0,
        "the limit was what stalled it"
    );
}

/// 100ms of CPU stall in 2s: a window that needs no CAP_SYS_RESOURCE on any kernel.
fn cpu_trigger(cg: &qube_cgroup::Cgroup) -> PressureTrigger {
    let (stall, window) = (Duration::from_millis(100), Duration::from_secs(2));
    cg.pressure_trigger(PressureResource::Cpu, PressureKind::Some, stall, window)
        .expect("a 2s cpu trigger")
}

const THRASH_LIMIT: Bytes = Bytes::mib(16);
const THRASH_BYTES: usize = 64 << 20;

/// Writes every page of a working set larger than the cgroup's memory.max, forever, so
/// the process keeps stalling on reclaim and swap-in. Raw syscalls only (it runs after fork).
fn thrash() -> i32 {
    let Some(memory) = qube_testkit::Anonymous::map(THRASH_BYTES, false) else {
        return 1;
    };
    let mut pass: u8 = 0;
    loop {
        pass = pass.wrapping_add(1);
        memory.touch(4096, pass);
    }
}
