//! The io controller in the VM, on its loop devices (7:N) and its swap ram disk (1:0).

use qube_cgroup::{Bytes, Cgroup, Device, Error, IoMax, IoStat, Max, Weight};
use qube_testkit::{require_vm, scratch, Proc, Work};

/// A block device of the VM, from /sys/block/NAME/dev, checked against its /dev node.
fn block_device(name: &str) -> Device {
    let text = std::fs::read_to_string(format!("/sys/block/{name}/dev"))
        .unwrap_or_else(|e| panic!("the VM has /sys/block/{name}: {e}"));
    let device: Device = text.trim_end().parse().expect("MAJOR:MINOR");
    let node = Device::of_path(format!("/dev/{name}")).expect("the /dev node");
    assert_eq!(node, device);
    device
}

#[test]
fn io_max_round_trips_on_a_real_device() {
    // cgroup-v2.rst, io.max: "When writing, any number of nested key-value pairs can be
    // specified in any order. 'max' can be specified as the value to remove a specific
    // limit. If the same key is specified multiple times, the outcome is undefined."
    let Some(root) = require_vm!() else { return };
    let loop0 = block_device("loop0");
    let cg = scratch(&root, "iomax");
    assert!(cg.io().max().unwrap().is_empty());

    let limit = IoMax {
        rbps: Some(Max::Limit(Bytes::mib(1).0)),
        wiops: Some(Max::Limit(120)),
        ..IoMax::new(loop0)
    };
    cg.io().set_max(&limit).unwrap();
    let expected = format!("{loop0} rbps=1048576 wbps=max riops=max wiops=120");
    assert_eq!(cg.read_file("io.max").unwrap(), format!("{expected}\n"));
    let read = cg.io().max().unwrap();
    assert_eq!(read, [expected.parse::<IoMax>().unwrap()]);

    // Keys left out keep their values.
    let writes = IoMax {
        wbps: Some(Max::Limit(2_000_000)),
        ..IoMax::new(loop0)
    };
    cg.io().set_max(&writes).unwrap();
    let read = cg.io().max().unwrap();
    assert_eq!(read[0].rbps, Some(Max::Limit(1_048_576)));
    assert_eq!(read[0].wbps, Some(Max::Limit(2_000_000)));

    // All four at max: the kernel drops the line.
    cg.io().set_max(&IoMax::unlimited(loop0)).unwrap();
    assert!(cg.io().max().unwrap().is_empty());
}

#[test]
fn io_max_refuses_what_the_kernel_would_and_writes_nothing() {
    let Some(root) = require_vm!() else { return };
    let loop0 = block_device("loop0");
    let cg = scratch(&root, "iomaxbad");
    for bad in [
        IoMax {
            rbps: Some(Max::Limit(0)),
            ..IoMax::new(loop0)
        },
        IoMax {
            riops: Some(Max::Limit(u64::from(u32::MAX))),
            ..IoMax::new(loop0)
        },
        IoMax::unlimited(Device::new(4096, 0)),
    ] {
        let err = cg.io().set_max(&bad).unwrap_err();
        assert!(matches!(err, Error::InvalidValue { .. }), "{bad}: {err}");
    }
    // A device that does not exist: the kernel answers ENODEV, which names the device.
    let nowhere = IoMax {
        rbps: Some(Max::Limit(1 << 20)),
        ..IoMax::new(Device::new(250, 250))
    };
    let err = cg.io().set_max(&nowhere).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::InvalidValue {
                what: "block device",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(cg.read_file("io.max").unwrap(), "");
}

/// Turns iocost on for a device at the root, and off again on drop.
struct Iocost<'a> {
    root: &'a Cgroup,
    device: Device,
}

impl<'a> Iocost<'a> {
    fn enable(root: &'a Cgroup, device: Device) -> Iocost<'a> {
        root.write_file("io.cost.qos", &format!("{device} enable=1"))
            .expect("enable iocost in the root's io.cost.qos");
        Iocost { root, device }
    }
}

impl Drop for Iocost<'_> {
    fn drop(&mut self) {
        let _ = self
            .root
            .write_file("io.cost.qos", &format!("{} enable=0", self.device));
    }
}

#[test]
fn io_weight_default_and_per_device() {
    // cgroup-v2.rst, io.weight: "The first line is the default weight applied to devices
    // without specific override. The rest are overrides keyed by $MAJ:$MIN device numbers."
    let Some(root) = require_vm!() else { return };
    let cg = scratch(&root, "ioweight");
    assert_eq!(cg.io().weight().unwrap().default, Weight::DEFAULT);
    cg.io().set_weight(Weight::new(150).unwrap()).unwrap();
    assert_eq!(cg.read_file("io.weight").unwrap(), "default 150\n");
    assert_eq!(cg.io().weight().unwrap().default, Weight::new(150).unwrap());

    // Per-device weights belong to iocost, which is off until the root turns it on.
    let loop1 = block_device("loop1");
    let err = cg
        .io()
        .set_device_weight(loop1, Some(Weight::new(200).unwrap()))
        .unwrap_err();
    assert!(err.to_string().contains("iocost"), "{err}");

    let loop0 = block_device("loop0");
    let _iocost = Iocost::enable(&root, loop0);
    let heavy = Weight::new(200).unwrap();
    cg.io().set_device_weight(loop0, Some(heavy)).unwrap();
    let weights = cg.io().weight().unwrap();
    assert_eq!(weights.device(loop0), Some(heavy));
    assert_eq!(weights.weight_of(loop1), Weight::new(150).unwrap());
    assert_eq!(weights.to_string(), cg.read_file("io.weight").unwrap());
    cg.io().set_device_weight(loop0, None).unwrap();
    assert_eq!(cg.io().weight().unwrap().device(loop0), None);
}

#[test]
fn io_stat_counts_the_groups_swap_writes() {
    // cgroup-v2.rst, io.stat: "A read-only nested-keyed file. Lines are keyed by $MAJ:$MIN
    // device numbers and not ordered." Swapping out a group's memory is I/O charged to it.
    let Some(root) = require_vm!() else { return };
    let swap = block_device("ram0");
    let cg = scratch(&root, "iostat");
    cg.memory().set_max(Max::Limit(Bytes::mib(16))).unwrap();
    // Once 40 MiB are written under a 16 MiB limit, much of it has gone out to swap.
    let mut p = Proc::fork(Work::AllocThenStop(40 << 20));
    cg.attach(p.pid()).unwrap();
    p.wait_until_stopped();
    let stat = cg.io().stat().unwrap();
    let dev = stat.device(swap).expect("no swap-out in io.stat");
    assert!(dev.wbytes >= 8 << 20, "{stat}");
    assert!(dev.wios > 0, "{stat}");
    assert_eq!(
        stat.get(swap, "wbytes"),
        Some(dev.wbytes.to_string().as_str())
    );
    assert_eq!(stat.to_string().parse::<IoStat>().unwrap(), stat);
}
