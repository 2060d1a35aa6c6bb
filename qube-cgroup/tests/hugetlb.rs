//! The hugetlb controller against the VM's kernel (x86-64: 2MB pages, maybe 1GB).
//! cgroup-v2.rst, HugeTLB: "hugetlb.<hugepagesize>.max: Set/show the hard limit of
//! hugetlb usage"; "hugetlb.<hugepagesize>.events: max: The number of allocation failure
//! due to HugeTLB limit".

use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use qube_cgroup::{Bytes, Error, HugePageSize, Max};
use qube_testkit::{require_vm, scratch, spawn_fn_in};

const TWO_MB: HugePageSize = HugePageSize::SIZE_2M;

#[test]
fn every_page_size_has_its_files_and_limits_read_back() {
    let Some(root) = require_vm!() else { return };
    let sizes = root.hugetlb().page_sizes().unwrap();
    assert!(
        sizes.contains(&TWO_MB),
        "x86-64 always has 2MB pages: {sizes:?}"
    );
    let cg = scratch(&root, "hugetlb-files");
    let hugetlb = cg.hugetlb();
    for size in sizes {
        assert_eq!(hugetlb.max(size).unwrap(), Max::Max);
        assert_eq!(hugetlb.rsvd_max(size).unwrap(), Max::Max);
        assert_eq!(hugetlb.current(size).unwrap(), Bytes(0));
        assert_eq!(hugetlb.rsvd_current(size).unwrap(), Bytes(0));
        assert_eq!(hugetlb.events(size).unwrap().max, 0);
        assert_eq!(hugetlb.events_local(size).unwrap().max, 0);

        let two_pages = Max::Limit(Bytes(size.bytes().0 * 2));
        hugetlb.set_max(size, two_pages).unwrap();
        hugetlb.set_rsvd_max(size, two_pages).unwrap();
        assert_eq!(hugetlb.max(size).unwrap(), two_pages);
        assert_eq!(hugetlb.rsvd_max(size).unwrap(), two_pages);

        // The kernel would round a partial page down; it is refused and nothing changes.
        let partial = Max::Limit(Bytes(size.bytes().0 + 4096));
        assert!(matches!(
            hugetlb.set_max(size, partial),
            Err(Error::InvalidValue { .. })
        ));
        assert_eq!(hugetlb.max(size).unwrap(), two_pages);
        hugetlb.set_max(size, Max::Max).unwrap();
        assert_eq!(hugetlb.max(size).unwrap(), Max::Max);
    }

    // x86-64 has no 64KB huge pages: that is what the error says, not "unsupported".
    let missing = HugePageSize::new(Bytes::kib(64)).unwrap();
    assert!(matches!(
        hugetlb.max(missing),
        Err(Error::InvalidValue { .. })
    ));
}

#[test]
fn a_fault_past_the_limit_is_refused_with_sigbus_and_counted() {
    let Some(root) = require_vm!() else { return };
    reserve_pool();
    let cg = scratch(&root, "hugetlb-over");
    cg.hugetlb()
        .set_max(TWO_MB, Max::Limit(Bytes::mib(2)))
        .unwrap();
    let mut child = spawn_fn_in(&cg, touch_two_huge_pages);
    // The second page's fault fails its charge, and a failed hugetlb fault is SIGBUS.
    let status = child.wait();
    assert!(
        matches!(status, WaitStatus::Signaled(_, Signal::SIGBUS, _)),
        "{status:?}"
    );
    // Every refused charge counts, and the fault path may try more than once (6.1 counts 2).
    let refused = cg.hugetlb().events(TWO_MB).unwrap().max;
    assert!(refused >= 1, "{refused}");
    // No child cgroup: the hierarchical and the local count are the same.
    assert_eq!(cg.hugetlb().events_local(TWO_MB).unwrap().max, refused);
    assert_eq!(
        cg.hugetlb().current(TWO_MB).unwrap(),
        Bytes(0),
        "freed on exit"
    );
}

#[test]
fn faults_within_the_limit_succeed() {
    let Some(root) = require_vm!() else { return };
    reserve_pool();
    let cg = scratch(&root, "hugetlb-within");
    cg.hugetlb()
        .set_max(TWO_MB, Max::Limit(Bytes::mib(4)))
        .unwrap();
    let mut child = spawn_fn_in(&cg, touch_two_huge_pages);
    let status = child.wait();
    assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");
    assert_eq!(cg.hugetlb().events(TWO_MB).unwrap().max, 0);
}

#[test]
fn numa_stat_counts_faulted_pages_per_node() {
    let Some(root) = require_vm!() else { return };
    reserve_pool();
    let cg = scratch(&root, "hugetlb-numa");
    let empty = cg.hugetlb().numa_stat(TWO_MB).unwrap();
    assert_eq!(empty.get("total").unwrap().total, Some(0), "{empty}");
    let mut child = qube_testkit::fork_fn(hold_two_huge_pages);
    cg.attach(child.pid()).unwrap();
    child.wait_until_stopped();
    let stat = cg.hugetlb().numa_stat(TWO_MB).unwrap();
    let total = stat.get("total").unwrap();
    assert_eq!(total.total, Some(4 << 20), "{stat}");
    assert_eq!(total.nodes, [(0, 4 << 20)], "{stat}");
    child.signal(Signal::SIGKILL);
    child.wait();
}

/// Faults two 2MB huge pages, stops itself to say so, then holds them until killed.
/// Raw syscalls only.
fn hold_two_huge_pages() -> i32 {
    const PAGE: usize = 2 << 20;
    let Some(memory) = qube_testkit::Anonymous::map(2 * PAGE, true) else {
        return 3;
    };
    memory.touch(PAGE, 1);
    qube_testkit::stop_self();
    qube_testkit::pause_forever()
}

/// Pages for the three faulting tests at once (they may run in parallel): 2 each.
const POOL_PAGES: u64 = 6;

/// Makes the VM's default huge page pool large enough; it starts empty.
fn reserve_pool() {
    let file = "/proc/sys/vm/nr_hugepages";
    let pages = || -> u64 {
        let text = std::fs::read_to_string(file).expect("read nr_hugepages");
        text.trim().parse().expect("nr_hugepages is a number")
    };
    if pages() < POOL_PAGES {
        std::fs::write(file, POOL_PAGES.to_string()).expect("write nr_hugepages");
    }
    assert!(
        pages() >= POOL_PAGES,
        "the kernel gave only {} huge pages",
        pages()
    );
}

/// Maps two default-size (2MB) huge pages and writes to each. Raw syscalls only.
fn touch_two_huge_pages() -> i32 {
    const PAGE: usize = 2 << 20;
    let Some(memory) = qube_testkit::Anonymous::map(2 * PAGE, true) else {
        return 3;
    };
    memory.touch(PAGE, 1);
    0
}
