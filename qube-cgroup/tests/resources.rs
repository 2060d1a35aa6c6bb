//! `Resources` applied to real cgroups in the VM; its validation anywhere.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use qube_cgroup::{
    Bytes, Cgroup, Controller, Controllers, CpuList, CpuMax, Device, Error, Flag, HugePageSize,
    IoMax, Max, Nice, Resources, Weight,
};
use qube_testkit::{require_vm, scratch, v2_root};

/// Every readable interface file of a cgroup and its text, but for statistics the kernel
/// moves on its own (`cpu.stat` counts bandwidth periods as soon as cpu.max is set).
fn files(cg: &Cgroup) -> BTreeMap<String, String> {
    std::fs::read_dir(cg.path())
        .expect("list the cgroup's files")
        .map(|entry| entry.expect("a directory entry"))
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            if name.ends_with(".stat") || name.ends_with(".pressure") {
                return None;
            }
            let text = cg.read_file(&name).ok()?;
            Some((name, text))
        })
        .collect()
}

fn loop0() -> Device {
    let text = std::fs::read_to_string("/sys/block/loop0/dev").expect("the VM has loop0");
    text.trim_end().parse().expect("MAJOR:MINOR")
}

fn everything(loop0: Device) -> Resources {
    Resources {
        memory_max: Some(Max::Limit(Bytes::mib(256))),
        memory_high: Some(Max::Limit(Bytes::mib(192))),
        memory_low: Some(Max::Limit(Bytes::mib(16))),
        memory_min: Some(Max::Limit(Bytes::mib(8))),
        memory_swap_max: Some(Max::Limit(Bytes::mib(64))),
        memory_swap_high: Some(Max::Limit(Bytes::mib(32))),
        memory_zswap_max: Some(Max::Limit(Bytes::mib(16))),
        memory_oom_group: Some(true),
        cpu_max: Some(CpuMax::cpus(0.5)),
        cpu_weight: Weight::new(300).ok(),
        cpu_weight_nice: None,
        cpu_max_burst: Some(10_000),
        cpu_idle: Some(false),
        pids_max: Some(Max::Limit(100)),
        io_weight: Weight::new(150).ok(),
        io_max: vec![IoMax {
            rbps: Some(Max::Limit(1 << 20)),
            wiops: Some(Max::Limit(100)),
            ..IoMax::new(loop0)
        }],
        cpuset_cpus: Some(CpuList::range(0, 0)),
        cpuset_mems: Some(CpuList::range(0, 0)),
        hugetlb_max: vec![(HugePageSize::SIZE_2M, Max::Limit(Bytes::mib(8)))],
    }
}

#[test]
fn apply_sets_every_field_and_they_read_back() {
    let Some(root) = require_vm!() else { return };
    let device = loop0();
    let r = everything(device);
    assert_eq!(r.controllers(), qube_testkit::VM_CONTROLLERS);
    let cg = scratch(&root, "apply");
    cg.apply(&r).unwrap();

    let memory = cg.memory();
    assert_eq!(Some(memory.max().unwrap()), r.memory_max);
    assert_eq!(Some(memory.high().unwrap()), r.memory_high);
    assert_eq!(Some(memory.low().unwrap()), r.memory_low);
    assert_eq!(Some(memory.min().unwrap()), r.memory_min);
    assert_eq!(Some(memory.swap_max().unwrap()), r.memory_swap_max);
    assert_eq!(Some(memory.swap_high().unwrap()), r.memory_swap_high);
    assert_eq!(Some(memory.zswap_max().unwrap()), r.memory_zswap_max);
    assert_eq!(memory.oom_group().unwrap(), Flag(true));
    let cpu = cg.cpu();
    assert_eq!(Some(cpu.max().unwrap()), r.cpu_max);
    assert_eq!(Some(cpu.weight().unwrap()), r.cpu_weight);
    assert_eq!(Some(cpu.max_burst().unwrap()), r.cpu_max_burst);
    assert_eq!(cpu.idle().unwrap(), Flag(false));
    assert_eq!(Some(cg.pids().max().unwrap()), r.pids_max);
    assert_eq!(Some(cg.io().weight().unwrap().default), r.io_weight);
    let expected: IoMax = format!("{device} rbps=1048576 wbps=max riops=max wiops=100")
        .parse()
        .unwrap();
    assert_eq!(cg.io().max().unwrap(), [expected]);
    assert_eq!(cg.cpuset().cpus().unwrap(), CpuList::range(0, 0));
    assert_eq!(cg.cpuset().mems().unwrap(), CpuList::range(0, 0));
    let (size, limit) = r.hugetlb_max[0];
    assert_eq!(cg.hugetlb().max(size).unwrap(), limit);

    // Applying it again changes nothing, and an empty Resources writes nothing.
    let before = files(&cg);
    cg.apply(&r).unwrap();
    cg.apply(&Resources::default()).unwrap();
    assert_eq!(files(&cg), before);
}

#[test]
fn a_burst_above_the_new_quota_is_written_in_an_order_the_kernel_takes() {
    // The kernel keeps cpu.max.burst <= the cpu.max quota at every write.
    let Some(root) = require_vm!() else { return };
    let cg = scratch(&root, "burstorder");
    cg.cpu().set_max(CpuMax::cpus(1.0)).unwrap();
    cg.cpu().set_max_burst(80_000).unwrap();
    let r = Resources {
        cpu_max: Some(CpuMax::cpus(0.5)),
        cpu_max_burst: Some(20_000),
        ..Resources::default()
    };
    cg.apply(&r).unwrap();
    assert_eq!(cg.cpu().max().unwrap(), CpuMax::cpus(0.5));
    assert_eq!(cg.cpu().max_burst().unwrap(), 20_000);
    // And back up: the quota must grow before the burst can.
    let up = Resources {
        cpu_max: Some(CpuMax::cpus(2.0)),
        cpu_max_burst: Some(150_000),
        ..Resources::default()
    };
    cg.apply(&up).unwrap();
    assert_eq!(cg.cpu().max_burst().unwrap(), 150_000);
}

#[test]
fn a_write_the_kernel_refuses_late_is_rolled_back() {
    let Some(root) = require_vm!() else { return };
    let cg = scratch(&root, "rollback");
    cg.cpu().set_max("10000 100000".parse().unwrap()).unwrap();
    // Valid on its own, but the burst exceeds the quota already in cpu.max, which only
    // the kernel knows; by then cpuset, io and memory have been written.
    let r = Resources {
        cpuset_cpus: Some(CpuList::range(0, 0)),
        io_weight: Some(Weight::new(50).unwrap()),
        memory_max: Some(Max::Limit(Bytes::mib(64))),
        cpu_max_burst: Some(50_000),
        pids_max: Some(Max::Limit(10)),
        ..Resources::default()
    };
    r.validate().unwrap();
    let before = files(&cg);
    let err = cg.apply(&r).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(nix::libc::EINVAL), "{err}");
    assert_eq!(files(&cg), before);
}

#[test]
fn a_controller_that_is_not_enabled_fails_before_any_write() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "noctl");
    parent.enable_controllers(Controllers::MEMORY).unwrap();
    let cg = parent.create("leaf").unwrap();
    let r = Resources {
        memory_max: Some(Max::Limit(Bytes::mib(64))),
        pids_max: Some(Max::Limit(10)),
        ..Resources::default()
    };
    let before = files(&cg);
    let err = cg.apply(&r).unwrap_err();
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
    assert_eq!(files(&cg), before);
}

#[test]
fn invalid_resources_change_no_file() {
    let Some(root) = require_vm!() else { return };
    let cg = scratch(&root, "invalid");
    let before = files(&cg);
    let mut runner = TestRunner::new(Config {
        cases: 64,
        ..Config::default()
    });
    runner
        .run(&invalid_resources(), |r| {
            let err = cg.apply(&r).unwrap_err();
            prop_assert!(matches!(err, Error::InvalidValue { .. }), "{}", err);
            prop_assert_eq!(&files(&cg), &before);
            Ok(())
        })
        .unwrap();
}

#[test]
fn invalid_resources_are_refused_on_the_host_too() {
    // No controller needed: validation comes before any file is touched.
    let Some(root) = v2_root() else { return };
    let cg = scratch(&root, "invalid-host");
    let r = Resources {
        cpu_weight_nice: Some(42),
        ..Resources::default()
    };
    let err = cg.apply(&r).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::InvalidValue {
                what: "cpu.weight.nice",
                ..
            }
        ),
        "{err}"
    );
}

proptest! {
    #[test]
    fn valid_resources_pass_validation(r in valid_resources()) {
        prop_assert!(r.validate().is_ok(), "{:?}: {}", r, r.validate().unwrap_err());
        prop_assert_eq!(r.is_empty(), r.controllers().is_empty());
    }

    #[test]
    fn each_kind_of_bad_value_fails_validation(r in invalid_resources()) {
        let err = r.validate().unwrap_err();
        prop_assert!(matches!(err, Error::InvalidValue { .. }), "{}", err);
    }
}

fn max_of<T: std::fmt::Debug + Clone>(
    limit: impl Strategy<Value = T>,
) -> impl Strategy<Value = Max<T>> {
    prop_oneof![Just(Max::Max), limit.prop_map(Max::Limit)]
}

fn bytes() -> impl Strategy<Value = Bytes> {
    (0u64..1 << 40).prop_map(Bytes)
}

fn cpu_max() -> impl Strategy<Value = CpuMax> {
    (max_of(1_000u64..10_000_000), 1_000u64..=1_000_000)
        .prop_map(|(quota, period)| CpuMax { quota, period })
}

fn io_max() -> impl Strategy<Value = IoMax> {
    let rate = || proptest::option::of(max_of(2u64..1 << 32));
    (0u32..4096, 0u32..1 << 20, rate(), rate(), rate(), rate()).prop_map(
        |(major, minor, rbps, wbps, riops, wiops)| IoMax {
            device: Device::new(major, minor),
            rbps,
            wbps,
            riops: riops.map(cap_iops),
            wiops: wiops.map(cap_iops),
        },
    )
}

fn cap_iops(rate: Max<u64>) -> Max<u64> {
    match rate {
        Max::Limit(n) => Max::Limit(n.min(u64::from(u32::MAX) - 1)),
        Max::Max => Max::Max,
    }
}

fn cpu_list(limit: u32) -> impl Strategy<Value = CpuList> {
    proptest::collection::vec(0..limit, 0..8).prop_map(|v| v.into_iter().collect())
}

/// Resources that every check passes: fields drawn independently, then the
/// contradictions between them resolved.
fn valid_resources() -> impl Strategy<Value = Resources> {
    let memory = (
        proptest::option::of(max_of(bytes())),
        proptest::option::of(max_of(bytes())),
        proptest::option::of(max_of(bytes())),
        proptest::option::of(max_of(bytes())),
        proptest::option::of(max_of(bytes())),
        proptest::option::of(max_of(bytes())),
        proptest::option::of(max_of(bytes())),
        proptest::option::of(any::<bool>()),
    );
    let cpu = (
        proptest::option::of(cpu_max()),
        proptest::option::of((1u16..=10000).prop_filter_map("a weight", |w| Weight::new(w).ok())),
        proptest::option::of(-20i8..=19),
        proptest::option::of(0u64..10_000_000),
        proptest::option::of(any::<bool>()),
    );
    let rest = (
        proptest::option::of(max_of(0u64..=4_194_304)),
        proptest::option::of((1u16..=10000).prop_filter_map("a weight", |w| Weight::new(w).ok())),
        proptest::collection::vec(io_max(), 0..3),
        proptest::option::of(cpu_list(8192)),
        proptest::option::of(cpu_list(1024)),
        proptest::option::of(0u64..64),
    );
    (memory, cpu, rest).prop_map(|(m, c, rest)| {
        let mut r = Resources {
            memory_max: m.0,
            memory_high: m.1,
            memory_low: m.2,
            memory_min: m.3,
            memory_swap_max: m.4,
            memory_swap_high: m.5,
            memory_zswap_max: m.6,
            memory_oom_group: m.7,
            cpu_max: c.0,
            cpu_weight: c.1,
            cpu_weight_nice: c.2,
            cpu_max_burst: c.3,
            cpu_idle: c.4,
            pids_max: rest.0,
            io_weight: rest.1,
            io_max: rest.2,
            cpuset_cpus: rest.3,
            cpuset_mems: rest.4,
            hugetlb_max: rest
                .5
                .map(|pages| (HugePageSize::SIZE_2M, Max::Limit(Bytes::mib(2 * pages))))
                .into_iter()
                .collect(),
        };
        resolve_contradictions(&mut r);
        r
    })
}

fn resolve_contradictions(r: &mut Resources) {
    if r.cpu_weight.is_some() {
        r.cpu_weight_nice = None;
    }
    if r.cpu_weight.is_some() || r.cpu_weight_nice.is_some() {
        r.cpu_idle = r.cpu_idle.map(|_| false);
    }
    if let (Some(burst), Some(Max::Limit(quota))) = (r.cpu_max_burst, r.cpu_max.map(|l| l.quota)) {
        r.cpu_max_burst = Some(burst.min(quota));
    }
    let mut seen = Vec::new();
    r.io_max.retain(|l| {
        let first = !seen.contains(&l.device);
        seen.push(l.device);
        first
    });
}

/// A valid Resources with one thing made wrong, of every kind the kernel refuses or
/// that contradicts itself.
fn invalid_resources() -> impl Strategy<Value = Resources> {
    (valid_resources(), 0usize..16, any::<u64>()).prop_map(|(mut r, kind, n)| {
        break_one(&mut r, kind, n);
        r
    })
}

fn break_one(r: &mut Resources, kind: usize, n: u64) {
    let limited = |quota| {
        Some(CpuMax {
            quota: Max::Limit(quota),
            period: 100_000,
        })
    };
    match kind {
        0 => {
            r.cpu_max = Some(CpuMax {
                quota: Max::Max,
                period: n % 1_000,
            })
        }
        1 => {
            r.cpu_max = Some(CpuMax {
                quota: Max::Max,
                period: 1_000_001 + n % 1_000_000,
            })
        }
        2 => r.cpu_max = limited(n % 1_000),
        3 => r.cpu_max = limited((1 << 44) + n % 1_000),
        4 => {
            r.cpu_weight_nice = Some(if n % 2 == 0 {
                20 + (n % 100) as i8
            } else {
                -21 - (n % 100) as i8
            })
        }
        5 => {
            r.cpu_weight = Some(Weight::DEFAULT);
            r.cpu_weight_nice = Some(Nice::default().get());
        }
        6 => {
            r.cpu_weight = Some(Weight::DEFAULT);
            r.cpu_idle = Some(true);
        }
        7 => {
            r.cpu_max = limited(10_000);
            r.cpu_max_burst = Some(10_001 + n % 1_000_000);
        }
        8 => r.pids_max = Some(Max::Limit(4_194_305 + n % 1_000_000)),
        9 => r.io_max.push(IoMax {
            rbps: Some(Max::Limit(n % 2)),
            ..IoMax::new(Device::new(8, 0))
        }),
        10 => r
            .io_max
            .push(IoMax::unlimited(Device::new(4096 + (n % 1000) as u32, 0))),
        11 => {
            let twice = IoMax::unlimited(Device::new(8, 16));
            r.io_max.extend([twice, twice]);
        }
        12 => r.cpuset_cpus = Some(CpuList::range(8192 + (n % 1000) as u32, 9500)),
        // Not a whole number of 2 MiB pages: k pages and 1..2M-1 bytes.
        13 => {
            let bytes = (2 << 20) * (n % 8) + 1 + n % ((2 << 20) - 1);
            r.hugetlb_max = vec![(HugePageSize::SIZE_2M, Max::Limit(Bytes(bytes)))];
        }
        14 => {
            let twice = (HugePageSize::SIZE_2M, Max::Limit(Bytes::mib(2 * (n % 8))));
            r.hugetlb_max = vec![twice, twice];
        }
        _ => r.cpuset_mems = Some(CpuList::range(0, 1024 + (n % 1000) as u32)),
    }
}
