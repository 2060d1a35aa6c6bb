//! Creates a cgroup with qube's per-container defaults (2 GiB memory, 1 GiB swap) under
//! `QubeContainers`, runs a process in it, and prints its limits and usage.
//!
//! Needs root and a cgroup2 hierarchy with the memory controller (`scripts/demo` runs it
//! in the VM).

use std::process::ExitCode;
use std::time::Duration;

use qube_cgroup::{Bytes, Cgroup, Controllers, Max};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cgroup-demo: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> qube_cgroup::Result<()> {
    let root = Cgroup::root()?;
    let parent = root.create_path("QubeContainers", Controllers::MEMORY | Controllers::PIDS)?;
    parent.enable_controllers(Controllers::MEMORY | Controllers::PIDS)?;
    let cg = parent.create("demo")?;
    cg.memory().set_max(Max::Limit(Bytes::gib(2)))?;
    cg.memory().set_swap_max(Max::Limit(Bytes::gib(1)))?;

    let mut child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .map_err(|e| qube_cgroup::Error::invalid_input("command", "sleep 30", e.to_string()))?;
    cg.attach(child.id())?;

    let memory = cg.memory();
    println!("cgroup:      {}", cg.path().display());
    println!(
        "memory.max:  {} ({})",
        memory.max()?,
        limit_mib(memory.max()?)
    );
    println!(
        "swap.max:    {} ({})",
        memory.swap_max()?,
        limit_mib(memory.swap_max()?)
    );
    println!("processes:   {:?}", cg.procs()?);
    println!(
        "Memory:      {:.2} MB / {}",
        memory.current()?.as_mib(),
        limit_mib(memory.max()?)
    );
    println!(
        "Swap:        {:.2} MB / {}",
        memory.swap_current()?.as_mib(),
        limit_mib(memory.swap_max()?)
    );

    cg.kill_and_remove(Duration::from_secs(5))?;
    let _ = child.wait();
    println!("removed:     {}", !cg.path().exists());
    parent.persist().remove()
}

fn limit_mib(limit: Max<Bytes>) -> String {
    match limit {
        Max::Max => "max".into(),
        Max::Limit(b) => format!("{:.2} MB", b.as_mib()),
    }
}
