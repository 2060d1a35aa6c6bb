//! What a container sees from inside, where it is born, and the typed errors of a launch
//! that cannot happen. Runs in the VM (`scripts/vm test`); skips on the host.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::errno::Errno;
use qube_cgroup::{Bytes, Max, Resources};
use qube_runtime::{
    Capabilities, Command, Error, IdMap, Namespaces, Network, SpawnMethod, Stdio, Step,
};
use qube_testkit::{require_vm, scratch};

use common::{cgroup_line, rootfs, sh, stdout_of};

#[test]
fn the_uts_namespace_has_the_containers_hostname() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "hostname");
    let fs = rootfs();
    let cmd = sh(fs.path(), &parent, "c", "hostname").hostname("box");
    assert_eq!(stdout_of(cmd), "box\n");
    assert_ne!(nix::unistd::gethostname().unwrap(), "box");
}

#[test]
fn an_init_workload_is_pid_1_of_its_namespace() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "pid1");
    let fs = rootfs();
    let cmd = sh(fs.path(), &parent, "c", "echo $$").workload_is_init(true);
    assert_eq!(stdout_of(cmd), "1\n");
}

#[test]
fn other_workloads_run_under_the_reaper_as_pid_2() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "reaper");
    let fs = rootfs();
    let cmd = sh(
        fs.path(),
        &parent,
        "c",
        "echo $$; cat /proc/1/status | grep PPid",
    );
    assert_eq!(stdout_of(cmd), "2\nPPid:\t0\n");
}

#[test]
fn the_mount_table_shows_the_pivoted_root_not_the_hosts() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "mounts");
    let fs = rootfs();
    let cmd =
        sh(fs.path(), &parent, "c", "cat /proc/self/mountinfo").namespaces(Namespaces::CGROUP);
    let mountinfo = stdout_of(cmd);
    let points: Vec<&str> = mountinfo
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .collect();
    let expected = [
        "/",
        "/proc",
        "/dev",
        "/dev/null",
        "/dev/zero",
        "/dev/full",
        "/dev/random",
        "/dev/urandom",
        "/dev/tty",
        "/dev/pts",
        "/dev/shm",
        "/sys",
        "/sys/fs/cgroup",
    ];
    assert_eq!(points, expected, "{mountinfo}");
    let root_line = mountinfo.lines().next().unwrap();
    let root_source = root_line.split_whitespace().nth(3).unwrap();
    let dir_name = fs.path().file_name().unwrap().to_str().unwrap();
    assert!(root_source.ends_with(dir_name), "{root_line}");
    let sys = mountinfo
        .lines()
        .find(|l| l.split_whitespace().nth(4) == Some("/sys"))
        .unwrap();
    assert!(
        sys.split_whitespace().nth(5).unwrap().starts_with("ro"),
        "{sys}"
    );
}

#[test]
fn the_cgroup_namespace_shows_the_containers_own_limits() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "cgroupns");
    let fs = rootfs();
    let limits = Resources {
        memory_max: Some(Max::Limit(Bytes::mib(48))),
        pids_max: Some(Max::Limit(64)),
        ..Resources::default()
    };
    let script = "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max /proc/self/cgroup";
    // The fork fallback unshares the namespace after the attach, clone3 before any exec.
    for method in [SpawnMethod::Clone3, SpawnMethod::Fork] {
        let cmd = sh(fs.path(), &parent, "c", script)
            .namespaces(Namespaces::CGROUP)
            .resources(limits.clone())
            .spawn_method(method);
        let expected = format!("{}\n64\n0::/\n", Bytes::mib(48).0);
        assert_eq!(stdout_of(cmd), expected, "{method:?}");
    }
}

#[test]
fn ipc_mount_pid_and_uts_namespaces_are_the_containers_own() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "ns-ids");
    let fs = rootfs();
    let kinds = ["ipc", "mnt", "pid", "uts"];
    let script = "for ns in ipc mnt pid uts; do readlink /proc/self/ns/$ns; done";
    let inside = stdout_of(sh(fs.path(), &parent, "c", script));
    let inside: Vec<&str> = inside.lines().collect();
    assert_eq!(inside.len(), kinds.len(), "{inside:?}");
    for (kind, seen) in kinds.iter().zip(inside) {
        let host = std::fs::read_link(format!("/proc/self/ns/{kind}")).unwrap();
        assert!(seen.starts_with(&format!("{kind}:[")), "{seen}");
        assert_ne!(Path::new(seen), host, "{kind} is the host's");
    }
}

#[test]
fn dev_has_the_standard_nodes_and_links() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "dev");
    let fs = rootfs();
    let script = "for l in fd stdin stdout stderr ptmx; do readlink /dev/$l; done; \
                  echo gone > /dev/null; head -c 3 /dev/zero | wc -c; \
                  head -c 5 /dev/urandom | wc -c; echo x > /dev/shm/f && cat /dev/shm/f";
    assert_eq!(
        stdout_of(sh(fs.path(), &parent, "c", script)),
        "/proc/self/fd\n/proc/self/fd/0\n/proc/self/fd/1\n/proc/self/fd/2\npts/ptmx\n\
         3\n5\nx\n"
    );
}

#[test]
fn pid_1_reaps_orphans() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "orphans");
    let fs = rootfs();
    // The inner sh exits at once; its `true` is an orphan, whose exit closes the pipe
    // of $(...). It then either is reaped by pid 1 or stays a zombie for good: the
    // loop only gives pid 1 a moment to get to it.
    let script = "p=$(sh -c 'true & echo $!'); \
                  i=0; while [ -e /proc/$p ] && [ $i -lt 2000 ]; do i=$((i+1)); done; \
                  if [ -e /proc/$p ]; then grep State /proc/$p/status; else echo reaped; fi";
    assert_eq!(stdout_of(sh(fs.path(), &parent, "c", script)), "reaped\n");
}

#[test]
fn an_isolated_network_has_only_loopback_and_it_is_up() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "net");
    let fs = rootfs();
    let cmd = sh(
        fs.path(),
        &parent,
        "c",
        "ls /sys/class/net; cat /sys/class/net/lo/flags",
    )
    .network(Network::Isolated);
    // 0x9: IFF_UP | IFF_LOOPBACK.
    assert_eq!(stdout_of(cmd), "lo\n0x9\n");
}

#[test]
fn the_first_exec_already_runs_in_the_containers_cgroup() {
    let Some(root) = require_vm!() else { return };
    for method in [SpawnMethod::Clone3, SpawnMethod::Fork] {
        let parent = scratch(&root, "born-in");
        let fs = rootfs();
        for (name, ns) in [("plain", Namespaces::empty()), ("pidns", Namespaces::PID)] {
            let mut cmd = Command::new("/bin/cat")
                .arg("/proc/self/cgroup")
                .namespaces(ns)
                .cgroup(&parent, name)
                .spawn_method(method)
                .stdout(Stdio::Piped);
            if ns.contains(Namespaces::PID) {
                cmd = cmd.rootfs(fs.path());
            }
            let container = cmd.spawn().unwrap();
            assert_eq!(container.spawn_method(), method);
            let expected = cgroup_line(&root, container.cgroup());
            let out = container.output().unwrap();
            assert!(out.status.success(), "{method:?} {name}: {}", out.status);
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                expected,
                "{method:?} {name}"
            );
        }
    }
}

#[test]
fn a_missing_executable_is_a_typed_exec_error() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "noexe");
    let fs = rootfs();
    for method in [SpawnMethod::Clone3, SpawnMethod::Fork] {
        let err = Command::new("/bin/does-not-exist")
            .rootfs(fs.path())
            .namespaces(Namespaces::PID)
            .cgroup(&parent, "c")
            .spawn_method(method)
            .spawn()
            .unwrap_err();
        match &err {
            Error::Child {
                step: Step::Exec,
                path,
                errno: Errno::ENOENT,
            } => {
                assert_eq!(path.to_str(), Some("/bin/does-not-exist"));
            }
            other => panic!("{method:?}: expected an exec ENOENT, got {other:?}"),
        }
        assert!(err.to_string().contains("/bin/does-not-exist"), "{err}");
        assert!(
            parent.children().unwrap().is_empty(),
            "the cgroup was left behind"
        );
    }
}

#[test]
fn a_bare_name_missing_from_path_reports_enoent() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "nopath");
    let err = Command::new("no-such-program")
        .cgroup(&parent, "c")
        .spawn()
        .unwrap_err();
    assert_eq!(
        (err.step(), err.errno()),
        (Some(Step::Exec), Some(Errno::ENOENT)),
        "{err}"
    );
}

#[test]
fn a_file_without_exec_permission_is_eacces() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "eacces");
    let fs = rootfs();
    let script = fs.path().join("bin/not-executable");
    std::fs::write(&script, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o644)).unwrap();
    // Root would pass DAC checks; execve still demands an x bit somewhere.
    let err = Command::new("/bin/not-executable")
        .rootfs(fs.path())
        .cgroup(&parent, "c")
        .spawn()
        .unwrap_err();
    assert_eq!(
        (err.step(), err.errno()),
        (Some(Step::Exec), Some(Errno::EACCES)),
        "{err}"
    );
}

#[test]
fn a_bad_rootfs_fails_at_the_pivot_root_step() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "badroot");
    let err = Command::new("/bin/true")
        .rootfs("/nonexistent/rootfs")
        .cgroup(&parent, "c")
        .spawn()
        .unwrap_err();
    match &err {
        Error::Child {
            step: Step::PivotRoot,
            path,
            errno: Errno::ENOENT,
        } => {
            assert_eq!(path.to_str(), Some("/nonexistent/rootfs"));
        }
        other => panic!("expected pivot_root ENOENT, got {other:?}"),
    }
    assert!(parent.children().unwrap().is_empty());
}

#[test]
fn a_missing_working_directory_fails_at_chdir() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "chdir");
    let fs = rootfs();
    let err = Command::new("/bin/true")
        .rootfs(fs.path())
        .current_dir("/no/such/dir")
        .cgroup(&parent, "c")
        .spawn()
        .unwrap_err();
    match &err {
        Error::Child {
            step: Step::Chdir,
            path,
            errno: Errno::ENOENT,
        } => {
            assert_eq!(path.to_str(), Some("/no/such/dir"));
        }
        other => panic!("expected chdir ENOENT, got {other:?}"),
    }
}

#[test]
fn privileges_are_reduced_before_exec() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "caps");
    let fs = rootfs();
    let script = "grep -E '^(CapEff|CapBnd|CapAmb|NoNewPrivs)' /proc/self/status";
    let status = stdout_of(sh(fs.path(), &parent, "root", script));
    let docker = format!("{:016x}", Capabilities::DOCKER_DEFAULT.bits());
    assert_eq!(
        status,
        format!(
            "CapEff:\t{docker}\nCapBnd:\t{docker}\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\n"
        )
    );
    let ids = stdout_of(
        sh(
            fs.path(),
            &parent,
            "nobody",
            "id -u; id -g; grep CapEff /proc/self/status",
        )
        .uid(65534)
        .gid(65534),
    );
    assert_eq!(ids, "65534\n65534\nCapEff:\t0000000000000000\n");
}

#[test]
fn only_stdio_is_inherited() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "fds");
    let fs = rootfs();
    // An fd without close-on-exec, as a careless library in the host program might leave;
    // numbered high so that it cannot be mistaken for the shell's own fd 3.
    let status = std::fs::File::open("/proc/self/status").unwrap();
    let fd = nix::fcntl::fcntl(&status, nix::fcntl::FcntlArg::F_DUPFD(100)).unwrap();
    // SAFETY: F_DUPFD just returned this fd, owned by nothing else.
    let _leaky = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let listing = stdout_of(sh(fs.path(), &parent, "c", "cd /proc/self/fd && echo *"));
    let fds: Vec<i32> = listing
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    // 3 is the directory the shell opened to expand the glob.
    assert!(
        !fds.contains(&fd),
        "the leaky fd {fd} was inherited: {fds:?}"
    );
    assert_eq!(fds[..3], [0, 1, 2]);
    assert!(fds.len() <= 4, "{fds:?}");
}

#[test]
fn the_environment_is_cleared_but_for_path() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "env");
    let fs = rootfs();
    let env = stdout_of(
        Command::new("/bin/env")
            .rootfs(fs.path())
            .env("GREETING", "hi")
            .cgroup(&parent, "c"),
    );
    assert_eq!(
        env,
        format!("GREETING=hi\nPATH={}\n", qube_runtime::DEFAULT_PATH)
    );
}

#[test]
fn piped_stdin_reaches_the_workload() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "stdin");
    let fs = rootfs();
    let mut c = sh(fs.path(), &parent, "c", "tr a-z A-Z")
        .stdin(Stdio::Piped)
        .stdout(Stdio::Piped)
        .spawn()
        .unwrap();
    std::io::Write::write_all(c.stdin().unwrap(), b"shout\n").unwrap();
    let out = c.output().unwrap();
    assert_eq!(out.stdout, b"SHOUT\n");
}

#[test]
fn a_read_only_root_and_binds_are_honoured() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "binds");
    let fs = rootfs();
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("file"), "from the host\n").unwrap();
    let script = "cat /data/file; touch /x 2>/dev/null || echo ro-root; \
                  touch /data/y 2>/dev/null || echo ro-bind; touch /rw/z && echo rw-bind";
    let rw = tempfile::tempdir().unwrap();
    let cmd = sh(fs.path(), &parent, "c", script)
        .readonly_root(true)
        .bind(data.path(), "/data", true)
        .bind(rw.path(), "/rw", false);
    assert_eq!(stdout_of(cmd), "from the host\nro-root\nro-bind\nrw-bind\n");
    assert!(rw.path().join("z").exists());
}

#[test]
fn symlinks_in_the_rootfs_cannot_point_mounts_at_the_host() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "symlinks");
    let fs = rootfs();
    let host = tempfile::tempdir().unwrap();
    // An image whose /data leads, read on the host, into a host directory.
    std::os::unix::fs::symlink(host.path(), fs.path().join("data")).unwrap();
    let volume = tempfile::tempdir().unwrap();
    std::fs::write(volume.path().join("file"), "from the volume\n").unwrap();
    let cmd =
        sh(fs.path(), &parent, "c", "cat /data/sub/file").bind(volume.path(), "/data/sub", true);
    // Inside, /data leads where the image says, and the bind is there.
    assert_eq!(stdout_of(cmd), "from the volume\n");
    assert!(
        !host.path().join("sub").exists(),
        "the bind's mkdir reached the host"
    );
    let inside = fs.path().join(host.path().strip_prefix("/").unwrap());
    assert!(inside.join("sub").is_dir());

    std::fs::remove_dir(fs.path().join("proc")).unwrap();
    std::os::unix::fs::symlink(host.path(), fs.path().join("proc")).unwrap();
    let err = sh(fs.path(), &parent, "c", "true").spawn().unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err}");
    assert!(err.to_string().contains("/proc is a symlink"), "{err}");
    assert!(std::fs::read_dir(host.path()).unwrap().next().is_none());
}

#[test]
fn a_user_namespace_maps_root_to_an_unprivileged_range() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "userns");
    let fs = rootfs();
    let range = IdMap {
        inside: 0,
        outside: 100_000,
        count: 65_536,
    };
    let cmd = sh(fs.path(), &parent, "c", "id -u; cat /proc/self/uid_map")
        .user_namespace(vec![range], vec![range]);
    let out = stdout_of(cmd);
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("0"));
    let map: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(map, ["0", "100000", "65536"]);
}

#[test]
fn a_user_namespace_without_maps_is_a_configuration_error() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "userns-nomap");
    let err = Command::new("/bin/true")
        .namespaces(Namespaces::USER)
        .cgroup(&parent, "c")
        .spawn()
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Config {
                what: "user namespace",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn an_exit_status_file_without_the_reaper_is_a_configuration_error() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "status-file-init");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("exit-status");
    for command in [
        Command::new("/bin/true"),
        Command::new("/bin/true")
            .namespaces(Namespaces::PID)
            .workload_is_init(true),
    ] {
        let err = command
            .exit_status_file(&file)
            .cgroup(&parent, "c")
            .spawn()
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Config {
                    what: "exit_status_file",
                    ..
                }
            ),
            "{err}"
        );
    }
    assert!(!file.exists(), "nothing is written for a refused launch");
    assert_eq!(parent.children().unwrap(), Vec::<String>::new());
}

#[test]
fn an_exit_status_file_that_cannot_be_opened_names_its_path() {
    let Some(root) = require_vm!() else { return };
    let parent = scratch(&root, "status-file-bad");
    let file = std::path::Path::new("/nonexistent/exit-status");
    let fs = rootfs();
    let err = sh(fs.path(), &parent, "c", "true")
        .exit_status_file(file)
        .spawn()
        .unwrap_err();
    assert_eq!(err.step(), Some(Step::OpenExitStatusFile), "{err}");
    assert_eq!(err.path(), Some(file));
    assert_eq!(err.errno(), Some(Errno::ENOENT));
    assert_eq!(parent.children().unwrap(), Vec::<String>::new());
}
