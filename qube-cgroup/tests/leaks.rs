//! Nothing leaks: a single test in its own process, so the fd count is not disturbed by
//! other tests running in parallel.

use std::time::Duration;

use qube_cgroup::{Error, Watcher};
use qube_testkit::{open_fds, scratch, v2_root, Proc, Work};

#[test]
fn a_hundred_lifecycles_and_failures_leave_no_fd_directory_or_process() {
    let Some(root) = v2_root() else { return };
    let before_fds = open_fds();
    let before_children = root.children().unwrap();
    for i in 0..100 {
        let cg = scratch(&root, "leak");
        let p = Proc::spawn_in(&cg, Work::Pause);
        let w = Watcher::new(&cg).unwrap();
        assert!(matches!(cg.remove(), Err(Error::Busy { .. })));
        assert!(matches!(cg.create("../x"), Err(Error::InvalidName { .. })));
        if i % 2 == 0 {
            cg.kill_and_remove(Duration::from_secs(10)).unwrap();
        }
        drop(w);
        drop(cg);
        drop(p);
    }
    assert_eq!(open_fds(), before_fds, "fds leaked");
    assert_eq!(root.children().unwrap(), before_children, "cgroups leaked");
    assert_eq!(
        qube_testkit::children_of_self(),
        0,
        "child processes or zombies left"
    );
}
