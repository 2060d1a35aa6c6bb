//! User-namespace containers started by an unprivileged parent in a delegated cgroup
//! subtree (rootless). Runs in the VM (`scripts/vm test`); skips on the host.
//!
//! Each test, as root, makes a scratch cgroup `D` delegated to uid and gid 65534 the way
//! cgroup-v2.rst's "Delegation" describes (the directory, `cgroup.procs`,
//! `cgroup.threads` and `cgroup.subtree_control` chowned) and re-executes this test
//! binary for the same test, with [`ROLE`] set. The re-executed process moves itself
//! into `D/leaf` while still root (moving a process needs write access to `cgroup.procs`
//! of the common ancestor of both cgroups: `D` for `D/leaf` and the container's `D/c`),
//! drops to 65534 and starts containers below `D`. A re-executed process, not a fork:
//! the container launch allocates and takes locks, which a forked copy of the
//! multi-threaded test harness must not.
#![allow(clippy::unwrap_used)] // the helpers below are test code: a failure should abort loudly

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::unistd::{Gid, Uid};
use qube_cgroup::Cgroup;
use qube_runtime::{Command, Error, IdMap, Namespaces, Network, Step};
use qube_testkit::{require_vm, scratch};

/// Set in the re-executed test process: which unprivileged case to run.
const ROLE: &str = "QUBE_ROOTLESS_ROLE";
/// The delegated cgroup `D`, for the re-executed process.
const DELEGATED: &str = "QUBE_ROOTLESS_CGROUP";
/// The container's root filesystem, for the re-executed process.
const ROOTFS: &str = "QUBE_ROOTLESS_ROOTFS";
/// nobody/nogroup: the unprivileged ids the parent drops to.
const NOBODY: u32 = 65534;

#[test]
fn an_unprivileged_parent_maps_its_own_ids_in_a_delegated_cgroup() {
    if let Some(role) = std::env::var_os(ROLE) {
        assert_eq!(role, "own-ids");
        return as_nobody(own_ids);
    }
    let Some(root) = require_vm!() else { return };
    let out = run_unprivileged(
        &root,
        "an_unprivileged_parent_maps_its_own_ids_in_a_delegated_cgroup",
        "own-ids",
    );
    assert!(out.contains("rootless: own-ids passed"), "{out}");
}

#[test]
fn an_unprivileged_parent_cannot_map_a_range_it_does_not_own() {
    if let Some(role) = std::env::var_os(ROLE) {
        assert_eq!(role, "range");
        return as_nobody(range);
    }
    let Some(root) = require_vm!() else { return };
    let out = run_unprivileged(
        &root,
        "an_unprivileged_parent_cannot_map_a_range_it_does_not_own",
        "range",
    );
    assert!(out.contains("rootless: range passed"), "{out}");
}

/// Delegates a scratch cgroup to 65534, runs `test` of this binary as that user in it
/// (see the module's comment) and returns its output; asserts that it passed and that
/// nothing but `D/leaf` was left in `D`.
fn run_unprivileged(root: &Cgroup, test: &str, role: &str) -> String {
    let delegated = scratch(root, &format!("rootless-{role}"));
    let leaf = delegated.create("leaf").unwrap();
    let owner = (Some(NOBODY), Some(NOBODY));
    std::os::unix::fs::chown(delegated.path(), owner.0, owner.1).unwrap();
    for file in ["cgroup.procs", "cgroup.threads", "cgroup.subtree_control"] {
        std::os::unix::fs::chown(delegated.path().join(file), owner.0, owner.1).unwrap();
    }
    // The container's root, like the rest of its files, is only read by 65534.
    let fs = common::rootfs();
    std::fs::set_permissions(fs.path(), std::fs::Permissions::from_mode(0o755)).unwrap();

    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env(DELEGATED, delegated.path())
        .env(ROOTFS, fs.path())
        .output()
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Shown with --nocapture, or when a check below fails.
    println!("{text}");
    assert!(
        out.status.success(),
        "as uid {NOBODY}: {}\n{text}",
        out.status
    );
    // Every container cgroup the unprivileged process made is gone again.
    assert_eq!(delegated.children().unwrap(), ["leaf"], "{text}");
    assert!(leaf.procs().unwrap().is_empty(), "{text}");
    text
}

/// In the re-executed process: into `D/leaf` as root, then uid and gid 65534, then `case`.
fn as_nobody(case: fn(&Cgroup, &Path)) {
    let delegated = Cgroup::open(env_path(DELEGATED)).unwrap();
    let rootfs = env_path(ROOTFS);
    delegated
        .open_child("leaf")
        .unwrap()
        .attach(std::process::id())
        .unwrap();
    // libc's wrappers, not the raw calls: every thread of the harness drops its ids.
    nix::unistd::setgroups(&[]).unwrap();
    let (uid, gid) = (Uid::from_raw(NOBODY), Gid::from_raw(NOBODY));
    nix::unistd::setresgid(gid, gid, gid).unwrap();
    nix::unistd::setresuid(uid, uid, uid).unwrap();
    // Changing ids made this process non-dumpable, which gives its /proc/PID files (and
    // those of the children it clones) to root: it could not write its own child's
    // uid_map. A process a user starts (exec with unchanged ids) is dumpable.
    // SAFETY: prctl with integer arguments only.
    let ret = unsafe { nix::libc::prctl(nix::libc::PR_SET_DUMPABLE, 1, 0, 0, 0) };
    assert_eq!(ret, 0, "PR_SET_DUMPABLE: {}", Errno::last());
    assert!(!nix::unistd::geteuid().is_root());
    case(&delegated, &rootfs);
}

fn env_path(var: &str) -> PathBuf {
    std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{var} is not set"))
}

/// uid and gid 0 in the container are 65534 outside: the one id each an unprivileged
/// process may map.
const OWN_ID: IdMap = IdMap {
    inside: 0,
    outside: NOBODY,
    count: 1,
};

fn container(rootfs: &Path, delegated: &Cgroup, script: &str) -> Command {
    Command::new("/bin/sh")
        .args(["-c", script])
        .rootfs(rootfs)
        .namespaces(Namespaces::USER | Namespaces::PID | Namespaces::MOUNT)
        .cgroup(delegated, "c")
        .user_namespace(vec![OWN_ID], vec![OWN_ID])
}

fn own_ids(delegated: &Cgroup, rootfs: &Path) {
    let script = "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups";
    // Without a network namespace of its own the container gets the host's /sys, bound.
    let out = stdout_with_context(container(rootfs, delegated, script));
    println!("container:\n{out}");
    let lines: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        [
            vec!["0"],
            vec!["0"],
            vec!["0", "65534", "1"],
            vec!["0", "65534", "1"],
            vec!["deny"],
        ],
        "{out}"
    );
    assert_eq!(delegated.children().unwrap(), ["leaf"]);

    // With one, a sysfs of its own is mounted: the network namespace is the user
    // namespace's.
    let cmd = container(rootfs, delegated, "id -u; ls /sys/class/net").network(Network::Isolated);
    let out = stdout_with_context(cmd);
    println!("container with its own network:\n{out}");
    assert_eq!(out, "0\nlo\n");

    // Groups it cannot set are refused before anything is made.
    let err = container(rootfs, delegated, "true")
        .groups([NOBODY])
        .spawn()
        .unwrap_err();
    assert!(matches!(err, Error::Config { what: "groups", .. }), "{err}");
    assert!(err.to_string().contains("setgroups"), "{err}");
    assert_eq!(delegated.children().unwrap(), ["leaf"]);
    println!("rootless: own-ids passed");
}

fn range(delegated: &Cgroup, rootfs: &Path) {
    let range = IdMap {
        inside: 0,
        outside: 100_000,
        count: 65_536,
    };
    let err = container(rootfs, delegated, "true")
        .user_namespace(vec![range], vec![range])
        .spawn()
        .unwrap_err();
    println!("error: {err}");
    let Error::Unsupported {
        step, path, errno, ..
    } = &err
    else {
        panic!("not Unsupported: {err:?}");
    };
    assert_eq!(*step, Step::WriteIdMap);
    assert_eq!(*errno, Errno::EPERM);
    assert!(path.ends_with("uid_map"), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("its own uid") && text.contains("newuidmap"),
        "{text}"
    );
    assert_eq!(delegated.children().unwrap(), ["leaf"]);
    println!("rootless: range passed");
}

/// Like `common::stdout_of`, but a failure to start also says what the kernel allows
/// unprivileged user namespaces: a refusal there is the system's, to be reported.
fn stdout_with_context(cmd: Command) -> String {
    match cmd.output() {
        Ok(out) => common::successful_stdout(out),
        Err(err) => panic!("{err}; {}", userns_sysctls()),
    }
}

fn userns_sysctls() -> String {
    [
        "/proc/sys/kernel/unprivileged_userns_clone",
        "/proc/sys/user/max_user_namespaces",
    ]
    .iter()
    .map(|p| {
        let value = std::fs::read_to_string(p).unwrap_or_else(|e| e.to_string());
        format!("{p} = {}", value.trim())
    })
    .collect::<Vec<_>>()
    .join(", ")
}
