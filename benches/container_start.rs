//! Start-to-exit latency of `/bin/true` in a container, next to a plain fork+exec of
//! the same binary, in one criterion group so both are measured in the same run.
//!
//! The container: pid, mount, UTS and IPC namespaces, a busybox rootfs entered with
//! `pivot_root`, a fresh cgroup with memory.max 2 GiB and memory.swap.max 1 GiB; one
//! iteration is `spawn()` (cgroup creation and limits included), `wait()`, and the drop
//! that removes the cgroup. The baseline: `std::process::Command` running the rootfs's
//! `/bin/true` (the same busybox binary) and waiting for it.
//!
//! Needs root and a pure cgroup v2 hierarchy with the memory controller: run it with
//! `scripts/vm bench`. Elsewhere it prints why it skips and exits successfully. After the
//! measurements it prints both medians and the overhead from criterion's estimates.

use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::Criterion;
use qube_cgroup::{Bytes, Cgroup, Controllers, Max, Resources};
use qube_runtime::{Command, Namespaces};
use tempfile::TempDir;

const GROUP: &str = "start_to_exit";
const CONTAINER: &str = "container";
const FORK_EXEC: &str = "fork_exec";

/// What both functions need: a parent cgroup (removed at the end) and a busybox rootfs.
struct Setup {
    parent: Cgroup,
    rootfs: TempDir,
    limits: Resources,
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
            memory_max: Some(Max::Limit(Bytes::gib(2))),
            memory_swap_max: Some(Max::Limit(Bytes::gib(1))),
            ..Resources::default()
        };
        Ok(Setup {
            parent,
            rootfs,
            limits,
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

    /// One fork+exec of the same binary, outside any container.
    fn run_fork_exec(&self) {
        let status = std::process::Command::new(self.rootfs.path().join("bin/true"))
            .status()
            .unwrap_or_else(|e| panic!("fork+exec: {e}"));
        assert!(status.success(), "{status}");
    }
}

fn bench(c: &mut Criterion, setup: &Setup) {
    let mut group = c.benchmark_group(GROUP);
    group.bench_function(CONTAINER, |b| b.iter(|| setup.run_container()));
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

fn report(dir: &Path) {
    let (Some(container), Some(baseline)) = (median(dir, CONTAINER), median(dir, FORK_EXEC)) else {
        return;
    };
    let overhead = container.saturating_sub(baseline);
    println!(
        "container_start medians: container {:.2} ms, fork+exec {:.2} ms, overhead {:.2} ms ({:.1}x)",
        container.as_secs_f64() * 1e3,
        baseline.as_secs_f64() * 1e3,
        overhead.as_secs_f64() * 1e3,
        container.as_secs_f64() / baseline.as_secs_f64().max(f64::MIN_POSITIVE),
    );
}

fn main() {
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
    let out_dir: PathBuf = std::env::temp_dir().join("qube-criterion");
    let mut criterion = Criterion::default()
        .sample_size(30)
        .measurement_time(Duration::from_secs(10))
        .output_directory(&out_dir)
        .configure_from_args();
    bench(&mut criterion, &setup);
    criterion.final_summary();
    report(&out_dir);
}
