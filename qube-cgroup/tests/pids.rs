//! The pids controller in the VM: pids.max refuses forks, pids.events counts them.

use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use qube_cgroup::{Error, Max};
use qube_testkit::{require_vm, scratch, v2_root, Proc, Work};

/// Waits for `p` to exit but leaves it a zombie, which still holds its pid.
fn wait_leaving_zombie(p: &Proc) -> WaitStatus {
    let pid = Pid::from_raw(i32::try_from(p.pid()).expect("a pid fits in i32"));
    waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT).expect("waitid")
}

#[test]
fn pids_max_makes_fork_fail_and_pids_events_counts_it() {
    // cgroup-v2.rst, pids.max: "Hard limit of number of processes." and pids.events max:
    // "The number of times the cgroup's total number of processes hit the pids.max limit".
    let Some(root) = require_vm!() else { return };
    let cg = scratch(&root, "forkbomb");
    cg.pids().set_max(Max::Limit(3)).unwrap();
    assert_eq!(cg.pids().max().unwrap(), Max::Limit(3));
    assert_eq!(cg.read_file("pids.max").unwrap(), "3\n");

    // The forker and two children fill the three slots; three of its five forks fail.
    let mut forker = Proc::spawn_in(&cg, Work::Fork(5));
    let WaitStatus::Exited(_, failed) = wait_leaving_zombie(&forker) else {
        panic!("the forker should exit")
    };
    assert_eq!(failed, 3);
    assert_eq!(cg.pids().current().unwrap(), 3, "a zombie still counts");
    assert_eq!(cg.pids().events().unwrap().max, 3);
    match cg.pids().peak() {
        Ok(peak) => assert_eq!(peak, 3),
        Err(Error::Unsupported { .. }) => {}
        Err(e) => panic!("pids.peak: {e}"),
    }
    forker.wait();
    assert_eq!(
        cg.pids().current().unwrap(),
        2,
        "reaping frees the forker's slot"
    );
}

#[test]
fn moving_processes_in_is_not_limited() {
    // cgroup-v2.rst: "Organisational operations are not blocked by cgroup policies, so it
    // is possible to have pids.current > pids.max."
    let Some(root) = require_vm!() else { return };
    let cg = scratch(&root, "over");
    cg.pids().set_max(Max::Limit(1)).unwrap();
    let _a = Proc::spawn_in(&cg, Work::Pause);
    let _b = Proc::spawn_in(&cg, Work::Pause);
    assert_eq!(cg.pids().current().unwrap(), 2);
    assert_eq!(cg.pids().events().unwrap().max, 0);
    cg.pids().set_max(Max::Max).unwrap();
    assert_eq!(cg.pids().max().unwrap(), Max::Max);
}

#[test]
fn a_limit_past_pid_max_limit_is_refused_before_any_write() {
    // Validation comes first, so this holds wherever there is a cgroup2 mount, even where
    // pids.max does not exist.
    let Some(root) = v2_root() else { return };
    let cg = scratch(&root, "pidsbad");
    let err = cg.pids().set_max(Max::Limit(4_194_305)).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::InvalidValue {
                what: "pids.max",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn the_kernel_takes_the_largest_valid_limit() {
    let Some(root) = require_vm!() else { return };
    let cg = scratch(&root, "pidsmax");
    cg.pids().set_max(Max::Limit(4_194_304)).unwrap();
    assert_eq!(cg.pids().max().unwrap(), Max::Limit(4_194_304));
    cg.pids().set_max(Max::Limit(0)).unwrap();
    assert_eq!(cg.pids().max().unwrap(), Max::Limit(0));
}
