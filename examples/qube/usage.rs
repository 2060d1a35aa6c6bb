//! A container's resource usage, read from its cgroup.

use qube_cgroup::{Bytes, Cgroup};

use crate::model::Usage;

/// What the container uses now. A file that cannot be read counts as zero: usage is
/// for display, and a container that is just ending must still be listed.
pub fn live(cg: &Cgroup) -> Usage {
    Usage {
        memory: cg.memory().current().unwrap_or_default(),
        swap: cg.memory().swap_current().unwrap_or_default(),
        cpu_usec: cpu_usec(cg),
        pids: pids(cg),
        oom_kills: oom_kills(cg),
    }
}

/// The figures kept after the container ended: memory and swap at their peak (its
/// current use is nothing by then), CPU time, OOM kills.
pub fn last(cg: &Cgroup) -> Usage {
    let live = live(cg);
    Usage {
        memory: cg.memory().peak().unwrap_or(live.memory),
        swap: read_number(cg, "memory.swap.peak").map_or(live.swap, Bytes),
        ..live
    }
}

/// `memory.events` `oom_kill`: how many of its processes the OOM killer ended.
pub fn oom_kills(cg: &Cgroup) -> u64 {
    cg.memory().events().map_or(0, |e| e.oom_kill)
}

fn cpu_usec(cg: &Cgroup) -> u64 {
    cg.read_file("cpu.stat")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("usage_usec "))
                .and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn pids(cg: &Cgroup) -> u64 {
    read_number(cg, "pids.current").unwrap_or(0)
}

fn read_number(cg: &Cgroup, file: &str) -> Option<u64> {
    cg.read_file(file).ok()?.trim().parse().ok()
}
