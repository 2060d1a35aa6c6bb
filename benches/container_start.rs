//! Start-to-exit latency of `/bin/true` in a container, next to the same container run by
//! crun and a plain fork+exec of the same binary, in one criterion group so all three are
//! measured in the same run.
//!
//! The container: pid, mount, UTS and IPC namespaces, a busybox rootfs entered with
//! `pivot_root`, a fresh cgroup with memory.max 2 GiB and memory.swap.max 1 GiB; one
//! iteration is `spawn()` (cgroup creation and limits included), `wait()`, and the drop
//! that removes the cgroup. The baseline: `std::process::Command` running the rootfs's
//! `/bin/true` (the same busybox binary) and waiting for it.
//!
//! The crun baseline runs `crun --root STATE run --bundle BUNDLE ID` for an OCI bundle
//! made once: the same rootfs, namespaces, mounts (`/proc`, `/dev` on tmpfs with devpts
//! and `/dev/shm`, `/sys` read-only), capabilities and memory limits, without seccomp,
//! masked paths or rlimits. Its cgroup goes under a parent of its own, as crun enables
//! every controller in the ancestors, which would make qube's cgroups costlier too. `run` creates, starts,
//! waits for and deletes the container (its cgroup and state directory included); after
//! the measurements the bench checks that nothing was left behind. Without `crun` in
//! `PATH` that function is skipped and the others still run.
//!
//! Needs root and a pure cgroup v2 hierarchy with the memory controller: run it with
//! `scripts/vm bench`. Elsewhere it prints why it skips and exits successfully. After the
//! measurements it prints the medians and ratios from criterion's estimates.
//!
//! `--count-syscalls` instead runs one start of each function under `strace -f` (after
//! one unmeasured start) and prints the syscalls, processes and traced time per start;
//! `--count-syscalls --trace` prints the traces too.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::Criterion;
use qube_cgroup::{Bytes, Cgroup, Controllers, Max, Resources};
use qube_runtime::{Command, Namespaces, DEFAULT_PATH};
use tempfile::TempDir;

const GROUP: &str = "start_to_exit";
const CONTAINER: &str = "container";
const CRUN: &str = "crun";
const FORK_EXEC: &str = "fork_exec";

const MEMORY_MAX: u64 = 2 << 30;
const SWAP_MAX: u64 = 1 << 30;
/// The cgroup crun creates (and removes) for each run, under its parent.
const CRUN_CGROUP: &str = "c";
const BEGIN: &str = "QUBE-START-BEGIN";
const END: &str = "QUBE-START-END";

/// What the functions need: a parent cgroup (removed at the end), a busybox rootfs and,
/// when crun is installed, an OCI bundle for it.
struct Setup {
    parent: Cgroup,
    rootfs: TempDir,
    limits: Resources,
    crun: Result<Crun, String>,
}

/// crun and what it runs: a bundle (config.json pointing at the shared rootfs), a parent
/// cgroup and a state directory of its own, and a counter for unique container ids.
struct Crun {
    binary: PathBuf,
    parent: Cgroup,
    bundle: TempDir,
    state: TempDir,
    runs: Cell<u64>,
}

impl Setup {
    fn new() -> Result<Setup, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("needs root".into());
        }
        let root = Cgroup::root().map_err(|e| e.to_string())?;
        let enabled = root.subtree_control().map_err(|e| e.to_string())?;
        if !enabled.contains(Controllers::MEMORY) {
            return Err(format!(
                "{} distributes no memory controller (a hybrid or v1 host)",
                root.path().display()
            ));
        }
        let parent = root
            .create(&format!("qube-bench-start-{}", std::process::id()))
            .map_err(|e| e.to_string())?;
        let rootfs = tempfile::tempdir().map_err(|e| e.to_string())?;
        qube_testkit::busybox_rootfs(rootfs.path()).map_err(|e| format!("busybox rootfs: {e}"))?;
        let limits = Resources {
            memory_max: Some(Max::Limit(Bytes(MEMORY_MAX))),
            memory_swap_max: Some(Max::Limit(Bytes(SWAP_MAX))),
            ..Resources::default()
        };
        let crun = Crun::new(&root, rootfs.path());
        if let Err(why) = &crun {
            // scripts/vm stages crun: there, one that is present but fails is a failure.
            assert!(
                !(qube_testkit::in_vm() && find_in_path("crun").is_some()),
                "crun cannot run in the VM: {why}"
            );
        }
        Ok(Setup {
            parent,
            rootfs,
            limits,
            crun,
        })
    }

    /// One container run of `/bin/true`, from spawn to the removal of its cgroup.
    fn run_container(&self) {
        let mut container = Command::new("/bin/true")
            .rootfs(self.rootfs.path())
            .namespaces(Namespaces::PID | Namespaces::MOUNT | Namespaces::UTS | Namespaces::IPC)
            .cgroup(&self.parent, "c")
            .resources(self.limits.clone())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn: {e}"));
        let status = container.wait().unwrap_or_else(|e| panic!("wait: {e}"));
        assert!(status.success(), "{status}");
    }

    /// One start of `function`.
    fn run(&self, function: &str) -> Result<(), String> {
        match (function, &self.crun) {
            (CONTAINER, _) => self.run_container(),
            (CRUN, Ok(crun)) => crun.run(),
            (CRUN, Err(why)) => return Err(why.clone()),
            (FORK_EXEC, _) => self.run_fork_exec(),
            _ => return Err(format!("no function {function}")),
        }
        Ok(())
    }

    /// What this run left behind: cgroups under the parents, containers in crun's state.
    fn leftovers(&self) -> Vec<String> {
        let mut found = child_cgroups(&self.parent);
        if let Ok(crun) = &self.crun {
            found.extend(child_cgroups(&crun.parent));
            match std::fs::read_dir(crun.state.path()) {
                Ok(entries) => found.extend(
                    entries
                        .flatten()
                        .map(|e| format!("crun state {}", e.path().display())),
                ),
                Err(e) => found.push(format!("cannot list {}: {e}", crun.state.path().display())),
            }
        }
        found
    }

    /// One fork+exec of the same binary, outside any container.
    fn run_fork_exec(&self) {
        let status = std::process::Command::new(self.rootfs.path().join("bin/true"))
            .status()
            .unwrap_or_else(|e| panic!("fork+exec: {e}"));
        assert!(status.success(), "{status}");
    }
}

/// The child cgroups of `parent`, as leftovers.
fn child_cgroups(parent: &Cgroup) -> Vec<String> {
    match parent.children() {
        Ok(children) => children
            .into_iter()
            .map(|c| format!("cgroup {}", parent.path().join(c).display()))
            .collect(),
        Err(e) => vec![format!("cannot list {}: {e}", parent.path().display())],
    }
}

impl Crun {
    /// Finds crun, writes the bundle and tries one run; `Err` says why crun is skipped.
    fn new(root: &Cgroup, rootfs: &Path) -> Result<Crun, String> {
        let binary = find_in_path("crun").ok_or("no crun in PATH (apt-get install crun)")?;
        let parent = root
            .create(&format!("qube-bench-start-crun-{}", std::process::id()))
            .map_err(|e| e.to_string())?;
        // crun's cgroupsPath is relative to the cgroup2 mount.
        let parent_rel = parent
            .path()
            .strip_prefix(root.path())
            .map_err(|e| e.to_string())?;
        let cgroups_path = Path::new("/").join(parent_rel).join(CRUN_CGROUP);
        let bundle = tempfile::tempdir().map_err(|e| format!("bundle directory: {e}"))?;
        let config = oci_config(rootfs, &cgroups_path)?;
        std::fs::write(bundle.path().join("config.json"), config)
            .map_err(|e| format!("config.json: {e}"))?;
        // A tmpfs like crun's own /run/crun, when there is one.
        let state = match Path::new("/run").is_dir() {
            true => tempfile::Builder::new()
                .prefix("qube-bench-crun.")
                .tempdir_in("/run"),
            false => tempfile::tempdir(),
        }
        .map_err(|e| format!("state directory: {e}"))?;
        let crun = Crun {
            binary,
            parent,
            bundle,
            state,
            runs: Cell::new(0),
        };
        crun.try_run()?;
        Ok(crun)
    }

    fn command(&self) -> std::process::Command {
        let n = self.runs.get();
        self.runs.set(n + 1);
        let mut cmd = std::process::Command::new(&self.binary);
        cmd.arg("--root")
            .arg(self.state.path())
            .arg("run")
            .arg("--bundle")
            .arg(self.bundle.path())
            .arg(format!("qube-bench-{}-{n}", std::process::id()));
        cmd
    }

    /// One run with crun's output captured, so that a failure can say why.
    fn try_run(&self) -> Result<(), String> {
        let out = self
            .command()
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", self.binary.display()))?;
        match out.status.success() {
            true => Ok(()),
            false => Err(format!(
                "{} run failed ({}): {}",
                self.binary.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        }
    }

    /// One `crun run`: create, start, wait and delete.
    fn run(&self) {
        let status = self
            .command()
            .status()
            .unwrap_or_else(|e| panic!("crun: {e}"));
        assert!(status.success(), "crun run: {status}");
    }
}

/// The first executable `name` in `PATH`.
fn find_in_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The OCI config of the crun baseline: what qube's container does, in OCI terms.
fn oci_config(rootfs: &Path, cgroups_path: &Path) -> Result<String, String> {
    let text = |p: &Path| {
        p.to_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("{} is not UTF-8", p.display()))
    };
    // qube's Capabilities::DOCKER_DEFAULT.
    let caps = [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    ];
    let config = serde_json::json!({
        "ociVersion": "1.0.0",
        "process": {
            "terminal": false,
            "user": { "uid": 0, "gid": 0 },
            "args": ["/bin/true"],
            "env": [format!("PATH={DEFAULT_PATH}")],
            "cwd": "/",
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
                "inheritable": caps,
                // qube clears the ambient set.
                "ambient": [],
            },
            // qube sets no_new_privs too.
            "noNewPrivileges": true,
        },
        "root": { "path": text(rootfs)?, "readonly": false },
        "mounts": [
            {
                "destination": "/proc",
                "type": "proc",
                "source": "proc",
                "options": ["nosuid", "nodev", "noexec"],
            },
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
        ],
        "linux": {
            "namespaces": [
                { "type": "pid" },
                { "type": "mount" },
                { "type": "uts" },
                { "type": "ipc" },
            ],
            "cgroupsPath": text(cgroups_path)?,
            "resources": {
                // OCI's swap is memory plus swap.
                "memory": { "limit": MEMORY_MAX, "swap": MEMORY_MAX + SWAP_MAX },
            },
        },
    });
    serde_json::to_string_pretty(&config).map_err(|e| e.to_string())
}

fn bench(c: &mut Criterion, setup: &Setup) {
    let mut group = c.benchmark_group(GROUP);
    group.bench_function(CONTAINER, |b| b.iter(|| setup.run_container()));
    match &setup.crun {
        Ok(crun) => {
            group.bench_function(CRUN, |b| b.iter(|| crun.run()));
        }
        Err(why) => eprintln!("SKIP {GROUP}/{CRUN}: {why}"),
    }
    group.bench_function(FORK_EXEC, |b| b.iter(|| setup.run_fork_exec()));
    group.finish();
}

/// The median criterion estimated for one function, if it measured it (not in test mode).
fn median(dir: &Path, function: &str) -> Option<Duration> {
    let file = dir.join(GROUP).join(function).join("new/estimates.json");
    let text = std::fs::read_to_string(file).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let nanos = json.get("median")?.get("point_estimate")?.as_f64()?;
    Some(Duration::from_nanos(nanos as u64))
}

fn report(dir: &Path, crun_measured: bool) {
    let (Some(container), Some(baseline)) = (median(dir, CONTAINER), median(dir, FORK_EXEC)) else {
        return;
    };
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(f64::MIN_POSITIVE);
    // A crun estimate left in the directory by an earlier run is not this run's.
    let crun = match crun_measured {
        true => median(dir, CRUN),
        false => None,
    };
    let crun_part = match crun {
        Some(crun) => format!(
            "crun {:.2} ms, fork+exec {:.2} ms, qube/crun {:.2}x, ",
            ms(crun),
            ms(baseline),
            ratio(container, crun)
        ),
        None => format!("crun skipped, fork+exec {:.2} ms, ", ms(baseline)),
    };
    println!(
        "container_start medians: container {:.2} ms, {crun_part}qube/fork+exec {:.1}x (overhead {:.2} ms)",
        ms(container),
        ratio(container, baseline),
        ms(container.saturating_sub(baseline)),
    );
}

/// One warm-up start of `function`, then one between two marker writes, so that
/// strace's log can be cut to it.
fn one_start(setup: &Setup, function: &str) -> Result<(), String> {
    setup.run(function)?;
    marker(BEGIN);
    setup.run(function)?;
    marker(END);
    Ok(())
}

/// A write to fd -1: fails at once, and shows in strace with its text.
fn marker(text: &str) {
    // SAFETY: a write of a live slice to an invalid fd, which the kernel rejects with EBADF.
    unsafe { nix::libc::write(-1, text.as_ptr().cast(), text.len()) };
}

/// Runs this binary's one-start mode under `strace -f` for each function and prints
/// what one start took: syscalls (all processes), processes, the most frequent calls.
fn count_syscalls(setup: &Setup, print_trace: bool) {
    let exe = std::env::current_exe().unwrap_or_default();
    for function in [CONTAINER, CRUN, FORK_EXEC] {
        if let (CRUN, Err(why)) = (function, &setup.crun) {
            println!("syscalls per start, {function}: skipped ({why})");
            continue;
        }
        let log = std::env::temp_dir().join(format!("qube-strace-start-{function}"));
        let status = std::process::Command::new("strace")
            .args(["-f", "-qq", "-ttt", "-o"])
            .arg(&log)
            .arg(&exe)
            .args(["--one-start", function])
            .status();
        if !status.is_ok_and(|s| s.success()) {
            println!("syscalls per start, {function}: strace failed or is missing");
            continue;
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let begin = lines.iter().position(|l| l.contains(BEGIN));
        let end = lines.iter().position(|l| l.contains(END));
        let (Some(b), Some(e)) = (begin, end) else {
            println!(
                "syscalls per start, {function}: no markers in {}",
                log.display()
            );
            continue;
        };
        let traced = &lines[b + 1..e];
        let summary = TraceSummary::of(traced);
        let time = |i: usize| lines.get(i).and_then(|l| trace_fields(l)).map(|f| f.1);
        let elapsed = match (time(b), time(e)) {
            (Some(t0), Some(t1)) => t1 - t0,
            _ => f64::NAN,
        };
        let top: Vec<String> = summary
            .top(12)
            .into_iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        println!(
            "syscalls per start, {function}: {} in {} processes, {:.1} ms traced; {}",
            summary.calls,
            summary.pids.len(),
            elapsed * 1e3,
            top.join(", ")
        );
        if print_trace {
            for line in traced {
                println!("  {line}");
            }
        }
        let _ = std::fs::remove_file(&log);
    }
}

/// Counts of one cut of an `strace -f -ttt` log.
#[derive(Default)]
struct TraceSummary {
    calls: usize,
    pids: std::collections::BTreeSet<u32>,
    by_name: std::collections::BTreeMap<String, usize>,
}

impl TraceSummary {
    fn of(lines: &[&str]) -> TraceSummary {
        let mut summary = TraceSummary::default();
        for (pid, _, call) in lines.iter().filter_map(|l| trace_fields(l)) {
            summary.pids.insert(pid);
            // A call interrupted by another process's line is counted once, at its start;
            // signals and exits are not calls.
            if call.starts_with("<...") || call.starts_with("---") || call.starts_with("+++") {
                continue;
            }
            let name = call.split('(').next().unwrap_or(call);
            summary.calls += 1;
            *summary.by_name.entry(name.to_owned()).or_default() += 1;
        }
        summary
    }

    /// The `n` most frequent calls, most frequent first.
    fn top(&self, n: usize) -> Vec<(&str, usize)> {
        let mut all: Vec<(&str, usize)> =
            self.by_name.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        all.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        all.truncate(n);
        all
    }
}

/// "PID SECONDS.MICROS call..." of an `strace -f -ttt -o` line (the pid is padded).
fn trace_fields(line: &str) -> Option<(u32, f64, &str)> {
    let (pid, rest) = line.trim_start().split_once(' ')?;
    let (time, call) = rest.trim_start().split_once(' ')?;
    Some((pid.parse().ok()?, time.parse().ok()?, call.trim_start()))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let setup = match Setup::new() {
        Ok(setup) => setup,
        Err(why) => {
            // A skipped benchmark inside the VM would hide a broken setup.
            assert!(
                !qube_testkit::in_vm(),
                "container_start cannot run in the VM: {why}"
            );
            eprintln!("SKIP container_start: {why} (run it with scripts/vm bench)");
            return;
        }
    };
    if let Some(i) = args.iter().position(|a| a == "--one-start") {
        let function = args.get(i + 1).map_or(CONTAINER, String::as_str);
        if let Err(why) = one_start(&setup, function) {
            eprintln!("container_start --one-start {function}: {why}");
            std::process::exit(1);
        }
        return;
    }
    if args.iter().any(|a| a == "--count-syscalls") {
        count_syscalls(&setup, args.iter().any(|a| a == "--trace"));
        return;
    }
    let out_dir: PathBuf = std::env::temp_dir().join("qube-criterion");
    let mut criterion = Criterion::default()
        .sample_size(30)
        .measurement_time(Duration::from_secs(10))
        .output_directory(&out_dir)
        .configure_from_args();
    bench(&mut criterion, &setup);
    criterion.final_summary();
    let leftovers = setup.leftovers();
    report(&out_dir, setup.crun.is_ok());
    if let Ok(crun) = &setup.crun {
        println!(
            "container_start: {} crun runs, {} left behind",
            crun.runs.get(),
            leftovers.len()
        );
    }
    assert!(
        leftovers.is_empty(),
        "container_start left behind: {}",
        leftovers.join(", ")
    );
}
