//! The rdma and misc controllers against the VM's kernel. The VM has no RDMA hardware and
//! no SEV/TDX, so their files are (nearly) empty: what is tested is that the real files
//! parse as the kernel writes them, and that a resource the kernel lacks is refused with
//! a typed error before anything is written.

use qube_cgroup::{Controllers, Error, Max, RdmaLimit};
use qube_testkit::{require_vm, scratch};

#[test]
fn misc_files_parse_and_an_unknown_resource_is_refused() {
    let Some(root) = require_vm!() else { return };
    assert!(
        root.subtree_control().unwrap().contains(Controllers::MISC),
        "the VM enables every controller"
    );
    let capacity = root.misc().capacity().unwrap();
    assert_eq!(
        capacity.to_string(),
        root.read_file("misc.capacity").unwrap()
    );

    let cg = scratch(&root, "misc");
    let misc = cg.misc();
    let limits = misc.max().unwrap();
    assert_eq!(limits.to_string(), cg.read_file("misc.max").unwrap());
    // Every file lists exactly the resources the machine has a capacity of.
    let offered: Vec<&str> = capacity.iter().map(|(r, _)| r).collect();
    assert_eq!(limits.iter().map(|(r, _)| r).collect::<Vec<_>>(), offered);
    let current = misc.current().unwrap();
    assert!(current.iter().all(|(_, n)| n == 0), "{current}");
    let events = misc.events().unwrap();
    assert!(events.iter().all(|(_, n)| n == 0), "{events}");

    // The kernel answers EINVAL to a resource it does not have; the crate says which
    // resources there are, and writes nothing.
    let raw = cg.write_file("misc.max", "qube_bogus 1").unwrap_err();
    assert_eq!(raw.raw_os_error(), Some(nix::libc::EINVAL), "{raw}");
    for bogus in ["qube_bogus", "two words", ""] {
        assert!(matches!(
            misc.set_max(bogus, Max::Limit(1)),
            Err(Error::InvalidValue { .. })
        ));
    }
    assert_eq!(misc.max().unwrap(), limits);

    if let Some(resource) = offered.first() {
        misc.set_max(resource, Max::Limit(1)).unwrap();
        assert_eq!(misc.max().unwrap().get(resource), Some(Max::Limit(1)));
    }
}

#[test]
fn rdma_files_parse_and_an_unknown_device_is_refused() {
    let Some(root) = require_vm!() else { return };
    assert!(
        root.subtree_control().unwrap().contains(Controllers::RDMA),
        "the VM enables every controller"
    );
    let cg = scratch(&root, "rdma");
    let rdma = cg.rdma();
    let limits = rdma.max().unwrap();
    let usage = rdma.current().unwrap();
    // The kernel lists every registered device in both files, each line ending in a space.
    let lines = |file| -> Vec<String> {
        let text = cg.read_file(file).unwrap();
        text.lines().map(|l| l.trim_end().to_owned()).collect()
    };
    assert_eq!(
        limits.iter().map(ToString::to_string).collect::<Vec<_>>(),
        lines("rdma.max")
    );
    assert_eq!(
        usage.iter().map(ToString::to_string).collect::<Vec<_>>(),
        lines("rdma.current")
    );
    assert_eq!(
        limits.iter().map(|l| &l.device).collect::<Vec<_>>(),
        usage.iter().map(|u| &u.device).collect::<Vec<_>>()
    );

    assert!(matches!(
        rdma.set_max(&RdmaLimit::unlimited("qube_bogus0")),
        Err(Error::InvalidValue { .. })
    ));
    let mut too_many = RdmaLimit::unlimited("qube_bogus0");
    too_many.hca_object = Max::Limit(u64::from(u32::MAX));
    assert!(matches!(
        rdma.set_max(&too_many),
        Err(Error::InvalidValue { .. })
    ));
    assert_eq!(rdma.max().unwrap(), limits);

    if let Some(device) = limits.first() {
        let limit = RdmaLimit {
            device: device.device.clone(),
            hca_handle: Max::Limit(2),
            hca_object: Max::Max,
        };
        rdma.set_max(&limit).unwrap();
        assert!(rdma.max().unwrap().contains(&limit));
    }
}
