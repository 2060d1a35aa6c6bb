//! The memory controller: limits, protection, swap, usage, `memory.stat` (and per NUMA
//! node), `memory.events`.

use crate::cgroup::Cgroup;
use crate::error::Result;
use crate::keyed::{flat_stats, setting};
use crate::numa::NumaStat;
use crate::value::{Bytes, Flag, Max};

/// The memory controller of one cgroup, from [`Cgroup::memory`].
///
/// ```no_run
/// use qube_cgroup::{Bytes, Cgroup, Max};
/// let cg = Cgroup::root()?.create("mem")?;
/// let memory = cg.memory();
/// memory.set_max(Max::Limit(Bytes::gib(2)))?;
/// memory.set_swap_max(Max::Limit(Bytes::gib(1)))?;
/// println!("{} of {}", memory.current()?.human(), memory.max()?);
/// # Ok::<(), qube_cgroup::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Memory<'a> {
    cg: &'a Cgroup,
}

impl Cgroup {
    /// The memory controller's files.
    ///
    /// ```no_run
    /// let used = qube_cgroup::Cgroup::open_self()?.memory().current()?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn memory(&self) -> Memory<'_> {
        Memory { cg: self }
    }
}

impl Memory<'_> {
    setting!(memory:
        /// The hard limit: past it the group is reclaimed and, failing that, OOM-killed.
        max, set_max, "memory.max", Max<Bytes>
    );
    setting!(memory:
        /// The throttle limit: past it the group is reclaimed hard and slowed, never killed.
        high, set_high, "memory.high", Max<Bytes>
    );
    setting!(memory:
        /// Best-effort protection from reclaim: below it the group is reclaimed only when
        /// no unprotected memory is left. `max` protects everything the group uses.
        low, set_low, "memory.low", Max<Bytes>
    );
    setting!(memory:
        /// Hard protection from reclaim: below it the group is never reclaimed. `max`
        /// protects everything the group uses.
        min, set_min, "memory.min", Max<Bytes>
    );
    setting!(memory:
        /// The hard limit on swap use.
        swap_max, set_swap_max, "memory.swap.max", Max<Bytes>
    );
    setting!(memory:
        /// The throttle limit on swap use.
        swap_high, set_swap_high, "memory.swap.high", Max<Bytes>
    );
    setting!(memory:
        /// The limit on zswap-compressed memory.
        zswap_max, set_zswap_max, "memory.zswap.max", Max<Bytes>
    );
    setting!(memory:
        /// Whether the OOM killer kills the whole group at once.
        oom_group, set_oom_group, "memory.oom.group", Flag
    );

    /// Memory in use by the group and its descendants (`memory.current`).
    pub fn current(&self) -> Result<Bytes> {
        self.cg.dir.read_value("memory.current")
    }

    /// The highest usage recorded (`memory.peak`, Linux 5.19+).
    ///
    /// ```no_run
    /// let cg = qube_cgroup::Cgroup::open_self()?;
    /// let memory = cg.memory();
    /// println!("now {}, at most {}", memory.current()?, memory.peak()?);
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn peak(&self) -> Result<Bytes> {
        self.cg.dir.read_value("memory.peak")
    }

    /// Swap in use (`memory.swap.current`).
    ///
    /// ```no_run
    /// let swapped = qube_cgroup::Cgroup::open_self()?.memory().swap_current()?;
    /// println!("{swapped} in swap");
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn swap_current(&self) -> Result<Bytes> {
        self.cg.dir.read_value("memory.swap.current")
    }

    /// The breakdown in `memory.stat`.
    ///
    /// ```no_run
    /// let stat = qube_cgroup::Cgroup::open_self()?.memory().stat()?;
    /// println!("anon {} file {}; slab {:?}", stat.anon, stat.file, stat.get("slab"));
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn stat(&self) -> Result<MemoryStat> {
        self.cg.dir.read_parsed(MemoryStat::FILE, MemoryStat::parse)
    }

    /// Limit and OOM counters for the group and its descendants (`memory.events`).
    ///
    /// ```no_run
    /// let events = qube_cgroup::Cgroup::open_self()?.memory().events()?;
    /// if events.oom_kill > 0 {
    ///     eprintln!("{} processes OOM-killed", events.oom_kill);
    /// }
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn events(&self) -> Result<MemoryEvents> {
        self.cg
            .dir
            .read_parsed(MemoryEvents::FILE, MemoryEvents::parse)
    }

    /// The same counters for this group alone (`memory.events.local`).
    ///
    /// ```no_run
    /// let cg = qube_cgroup::Cgroup::open_self()?;
    /// let memory = cg.memory();
    /// let below = memory.events()?.oom_kill - memory.events_local()?.oom_kill;
    /// println!("{below} OOM kills in descendants");
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn events_local(&self) -> Result<MemoryEvents> {
        self.cg
            .dir
            .read_parsed("memory.events.local", MemoryEvents::parse)
    }

    /// The `memory.stat` breakdown per NUMA node (`memory.numa_stat`), in bytes.
    ///
    /// ```no_run
    /// let stat = qube_cgroup::Cgroup::open_self()?.memory().numa_stat()?;
    /// if let Some(anon) = stat.get("anon") {
    ///     println!("anon on node 0: {:?}", anon.node(0));
    /// }
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn numa_stat(&self) -> Result<NumaStat> {
        self.cg.dir.read_parsed("memory.numa_stat", NumaStat::parse)
    }

    /// Asks the kernel to reclaim this much from the group (`memory.reclaim`, Linux
    /// 5.19+). Protection holds: `memory.min` is never reclaimed, `memory.low` only when
    /// nothing unprotected is left. When the kernel gets less than `amount` (protected,
    /// unswappable, or past `memory.swap.max`) it keeps what it reclaimed and answers
    /// EAGAIN: an [`Error::Io`](crate::Error::Io) whose
    /// [`raw_os_error`](crate::Error::raw_os_error) is `EAGAIN`.
    ///
    /// ```no_run
    /// use qube_cgroup::{Bytes, Cgroup};
    /// Cgroup::open_self()?.memory().reclaim(Bytes::mib(64))?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn reclaim(&self, amount: Bytes) -> Result<()> {
        self.cg.dir.write_value("memory.reclaim", &amount)
    }
}

flat_stats! {
    /// `memory.events` (and `memory.events.local`): how often each limit was hit.
    ///
    /// ```
    /// let ev = qube_cgroup::MemoryEvents::parse("low 0\nhigh 3\nmax 9\noom 1\noom_kill 1\noom_group_kill 0\n").unwrap();
    /// assert_eq!((ev.high, ev.oom_kill), (3, 1));
    /// ```
    MemoryEvents, "memory.events" {
        /// Reclaimed below memory.low.
        low: "low",
        /// Went over memory.high.
        high: "high",
        /// About to go over memory.max.
        max: "max",
        /// Hit the limit and the OOM killer was invoked.
        oom: "oom",
        /// Processes killed by the OOM killer.
        oom_kill: "oom_kill",
        /// Whole-group OOM kills.
        oom_group_kill: "oom_group_kill",
    }
}

flat_stats! {
    /// `memory.stat`: typed fields for the common keys; [`get`](MemoryStat::get) for the rest.
    ///
    /// ```
    /// let stat = qube_cgroup::MemoryStat::parse("anon 4096\nfile 8192\nnew_key 7\n").unwrap();
    /// assert_eq!(stat.anon, 4096);
    /// assert_eq!(stat.get("new_key"), Some(7));
    /// assert_eq!(stat.to_string(), "anon 4096\nfile 8192\nnew_key 7\n");
    /// ```
    MemoryStat, "memory.stat" {
        /// Anonymous memory.
        anon: "anon",
        /// Page cache.
        file: "file",
        /// Kernel memory.
        kernel: "kernel",
        /// Kernel stacks.
        kernel_stack: "kernel_stack",
        /// Page tables.
        pagetables: "pagetables",
        /// Network buffers.
        sock: "sock",
        /// Shared memory.
        shmem: "shmem",
        /// Mapped page cache.
        file_mapped: "file_mapped",
        /// Dirty page cache.
        file_dirty: "file_dirty",
        /// Page cache under writeback.
        file_writeback: "file_writeback",
        /// Swap cached in memory.
        swapcached: "swapcached",
        /// Transparent huge pages, anonymous.
        anon_thp: "anon_thp",
        /// Inactive anonymous LRU.
        inactive_anon: "inactive_anon",
        /// Active anonymous LRU.
        active_anon: "active_anon",
        /// Inactive file LRU.
        inactive_file: "inactive_file",
        /// Active file LRU.
        active_file: "active_file",
        /// Unevictable memory.
        unevictable: "unevictable",
        /// Reclaimable slab.
        slab_reclaimable: "slab_reclaimable",
        /// Unreclaimable slab.
        slab_unreclaimable: "slab_unreclaimable",
        /// All slab.
        slab: "slab",
        /// Page faults.
        pgfault: "pgfault",
        /// Major page faults.
        pgmajfault: "pgmajfault",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kernel_text(pairs: &[(String, u64)]) -> String {
        pairs.iter().map(|(k, v)| format!("{k} {v}\n")).collect()
    }

    proptest! {
        #[test]
        fn stat_round_trips_the_kernel_text(pairs in proptest::collection::vec(("[a-z_]{1,20}", any::<u64>()), 0..40)) {
            let text = kernel_text(&pairs);
            let stat = MemoryStat::parse(text.clone()).unwrap();
            prop_assert_eq!(stat.to_string(), text);
            for (k, v) in &pairs {
                let first = pairs.iter().find(|(k2, _)| k2 == k).map(|(_, v)| *v);
                prop_assert_eq!(stat.get(k), first);
                let _ = v;
            }
        }

        #[test]
        fn stat_parser_never_panics(s in "\\PC{0,200}") {
            let _ = MemoryStat::parse(s.clone());
            let _ = MemoryEvents::parse(s);
        }
    }
}
