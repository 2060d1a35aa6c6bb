//! The cpuset controller in the VM (two CPUs, one memory node).

use std::time::Duration;

use qube_cgroup::{Controllers, CpuList, Error, Partition};
use qube_testkit::{require_vm, scratch, Proc, Work};

/// The `Cpus_allowed_list` of a process, from /proc/PID/status.
fn cpus_allowed(pid: u32) -> CpuList {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("a Cpus_allowed_list line");
    line.trim().parse().expect("a CPU list")
}

#[test]
fn cpus_restrict_the_effective_set_and_the_tasks() {
    // cgroup-v2.rst, cpuset.cpus.effective: "It lists the onlined CPUs that are actually
    // granted to this cgroup by its parent. These CPUs are allowed to be used by tasks
    // within the current cgroup."
    let Some(root) = require_vm!() else { return };
    let cg = scratch(&root, "cpu0");
    let all = cg.cpuset().effective_cpus().unwrap();
    assert!(all.len() >= 2, "the VM has two CPUs: {all}");
    assert!(
        cg.cpuset().cpus().unwrap().is_empty(),
        "a new group asks for none"
    );

    let cpu0 = CpuList::range(0, 0);
    cg.cpuset().set_cpus(&cpu0).unwrap();
    assert_eq!(cg.cpuset().cpus().unwrap(), cpu0);
    assert_eq!(cg.read_file("cpuset.cpus.effective").unwrap(), "0\n");
    assert_eq!(cg.cpuset().effective_cpus().unwrap(), cpu0);
    let spinner = Proc::spawn_in(&cg, Work::Spin);
    assert_eq!(cpus_allowed(spinner.pid()), cpu0);

    // The kernel will not leave the spinner with no CPU list of its own...
    let err = cg.cpuset().set_cpus(&CpuList::new()).unwrap_err();
    assert!(err.to_string().contains("ENOSPC"), "{err}");
    assert_eq!(cg.cpuset().cpus().unwrap(), cpu0);
    // ...but an empty group can go back to its parent's CPUs.
    drop(spinner);
    cg.wait_unpopulated(Duration::from_secs(10)).unwrap();
    cg.cpuset().set_cpus(&CpuList::new()).unwrap();
    assert_eq!(cg.cpuset().effective_cpus().unwrap(), all);
}

#[test]
fn mems_and_a_cpu_the_machine_lacks() {
    let Some(root) = require_vm!() else { return };
    let cg = scratch(&root, "mems");
    let node0 = CpuList::range(0, 0);
    cg.cpuset().set_mems(&node0).unwrap();
    assert_eq!(cg.cpuset().mems().unwrap(), node0);
    assert_eq!(cg.cpuset().effective_mems().unwrap(), node0);

    // CPU 64 does not exist in the VM: the kernel refuses it and keeps what it had.
    cg.cpuset().set_cpus(&"0-1".parse().unwrap()).unwrap();
    let err = cg.cpuset().set_cpus(&CpuList::range(64, 64)).unwrap_err();
    assert!(err.raw_os_error().is_some(), "{err}");
    assert_eq!(cg.read_file("cpuset.cpus").unwrap(), "0-1\n");
    // A number no kernel has is refused before the write.
    let err = cg.cpuset().set_cpus(&CpuList::range(0, 9000)).unwrap_err();
    assert!(matches!(err, Error::InvalidValue { .. }), "{err}");
}

#[test]
fn partition_states_and_the_kernels_invalid_form() {
    // cgroup-v2.rst, cpuset.cpus.partition: "root invalid (<reason>)" is shown when "the
    // partition root is invalid", e.g. when its parent is not a partition root itself.
    // Nested in a scratch group, so the VM's CPUs stay where they are.
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "part");
    parent.cpuset().set_cpus(&"0-1".parse().unwrap()).unwrap();
    parent.enable_controllers(Controllers::CPUSET).unwrap();
    let child = parent.create("child").unwrap();
    child.cpuset().set_cpus(&"1".parse().unwrap()).unwrap();
    assert_eq!(child.cpuset().partition().unwrap(), Partition::Member);

    child.cpuset().set_partition(&Partition::Root).unwrap();
    let state = child.cpuset().partition().unwrap();
    assert!(
        matches!(&state, Partition::InvalidRoot(Some(_))),
        "{state:?}"
    );
    let text = child.read_file("cpuset.cpus.partition").unwrap();
    assert_eq!(format!("{state}\n"), text);

    child.cpuset().set_partition(&Partition::Member).unwrap();
    assert_eq!(child.cpuset().partition().unwrap(), Partition::Member);
    let err = child
        .cpuset()
        .set_partition(&Partition::InvalidRoot(None))
        .unwrap_err();
    assert!(matches!(err, Error::InvalidValue { .. }), "{err}");
}
