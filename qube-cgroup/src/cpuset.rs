//! The cpuset controller: which CPUs and memory nodes the group may use, and partitions.
//!
//! cgroup-v2.rst: "The 'cpuset' controller provides a mechanism for constraining the CPU
//! and memory node placement of tasks to only the resources specified in the cpuset
//! interface files in a task's current cgroup."

use std::fmt;
use std::str::FromStr;

use crate::cgroup::Cgroup;
use crate::error::{Error, Result};

/// A set of CPU (or memory node) numbers in the kernel's list format: `0-3,5`.
///
/// Kept as sorted, disjoint, non-adjacent ranges, so `Display` writes the canonical form
/// the kernel writes (`0-3,5`, never `0,1,2,3,5`) and a list like `0-4095` costs one range.
/// The empty set is the empty string.
///
/// ```
/// use qube_cgroup::CpuList;
/// let cpus: CpuList = "5,0-2,3".parse().unwrap();
/// assert_eq!(cpus.to_string(), "0-3,5");
/// assert!(cpus.contains(3) && !cpus.contains(4));
/// assert_eq!(cpus.len(), 5);
/// assert_eq!("".parse::<CpuList>().unwrap(), CpuList::new());
/// assert!("3-1".parse::<CpuList>().is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct CpuList {
    /// Inclusive `(first, last)` ranges: sorted, disjoint, with gaps between them.
    ranges: Vec<(u32, u32)>,
}

impl CpuList {
    /// The empty set (in `cpuset.cpus`: use the parent's CPUs).
    ///
    /// ```
    /// assert!(qube_cgroup::CpuList::new().is_empty());
    /// ```
    pub const fn new() -> CpuList {
        CpuList { ranges: Vec::new() }
    }

    /// The set `first..=last`, or the empty set when `last < first`.
    ///
    /// ```
    /// assert_eq!(qube_cgroup::CpuList::range(0, 3).to_string(), "0-3");
    /// ```
    pub fn range(first: u32, last: u32) -> CpuList {
        let mut set = CpuList::new();
        set.insert_range(first, last);
        set
    }

    /// Adds `first..=last` to the set (nothing when `last < first`).
    ///
    /// ```
    /// let mut set = qube_cgroup::CpuList::range(0, 1);
    /// set.insert_range(2, 3);
    /// assert_eq!(set.to_string(), "0-3");
    /// ```
    pub fn insert_range(&mut self, first: u32, last: u32) {
        if last < first {
            return;
        }
        // In u64 so that `end + 1` cannot overflow at u32::MAX. Both bounds are monotonic
        // over sorted disjoint ranges, and `ranges[start..stop]` are those that overlap
        // or touch the new one: they are absorbed into it.
        let (first64, last64) = (u64::from(first), u64::from(last));
        let start = self
            .ranges
            .partition_point(|&(_, end)| u64::from(end) + 1 < first64);
        let stop = self
            .ranges
            .partition_point(|&(begin, _)| u64::from(begin) <= last64 + 1);
        let (mut lo, mut hi) = (first, last);
        if start < stop {
            lo = lo.min(self.ranges[start].0);
            hi = hi.max(self.ranges[stop - 1].1);
        }
        self.ranges.splice(start..stop, [(lo, hi)]);
    }

    /// Adds one number.
    ///
    /// ```
    /// let mut set = qube_cgroup::CpuList::new();
    /// set.insert(7);
    /// assert_eq!(set.to_string(), "7");
    /// ```
    pub fn insert(&mut self, cpu: u32) {
        self.insert_range(cpu, cpu);
    }

    /// Whether `cpu` is in the set.
    ///
    /// ```
    /// assert!(qube_cgroup::CpuList::range(2, 4).contains(3));
    /// ```
    pub fn contains(&self, cpu: u32) -> bool {
        let at = self.ranges.partition_point(|&(_, end)| end < cpu);
        self.ranges.get(at).is_some_and(|&(start, _)| start <= cpu)
    }

    /// How many numbers the set holds.
    ///
    /// ```
    /// assert_eq!("0-3,8".parse::<qube_cgroup::CpuList>().unwrap().len(), 5);
    /// ```
    pub fn len(&self) -> u64 {
        self.ranges
            .iter()
            .map(|&(start, end)| u64::from(end - start) + 1)
            .sum()
    }

    /// Whether the set is empty.
    ///
    /// ```
    /// assert!("".parse::<qube_cgroup::CpuList>().unwrap().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The largest number in the set.
    ///
    /// ```
    /// assert_eq!("0-3,9".parse::<qube_cgroup::CpuList>().unwrap().last(), Some(9));
    /// ```
    pub fn last(&self) -> Option<u32> {
        self.ranges.last().map(|&(_, end)| end)
    }

    /// Every number, ascending.
    ///
    /// ```
    /// let v: Vec<u32> = "1-2,5".parse::<qube_cgroup::CpuList>().unwrap().iter().collect();
    /// assert_eq!(v, [1, 2, 5]);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.ranges.iter().flat_map(|&(start, end)| start..=end)
    }

    /// The inclusive ranges, ascending.
    ///
    /// ```
    /// let set: qube_cgroup::CpuList = "0-3,5".parse().unwrap();
    /// assert_eq!(set.ranges().collect::<Vec<_>>(), [(0, 3), (5, 5)]);
    /// ```
    pub fn ranges(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.ranges.iter().copied()
    }

    /// Checks that every number is below `limit` (for `what`, a file name in the error).
    pub(crate) fn validate_below(&self, what: &'static str, limit: u32) -> Result<()> {
        match self.last() {
            Some(last) if last >= limit => Err(Error::invalid(
                what,
                &self.to_string(),
                format!("{last} is beyond any kernel's limit of {limit}"),
            )),
            _ => Ok(()),
        }
    }
}

impl FromIterator<u32> for CpuList {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> CpuList {
        let mut set = CpuList::new();
        for cpu in iter {
            set.insert(cpu);
        }
        set
    }
}

impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &(start, end)) in self.ranges.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            if start == end {
                write!(f, "{start}")?;
            } else {
                write!(f, "{start}-{end}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for CpuList {
    type Err = Error;

    fn from_str(s: &str) -> Result<CpuList> {
        let mut set = CpuList::new();
        let text = s.trim();
        if text.is_empty() {
            return Ok(set);
        }
        for item in text.split(',') {
            let (first, last) = parse_item(item).ok_or_else(|| {
                Error::invalid(
                    "CPU list",
                    s,
                    format!("{item:?} is not N or N-M with N <= M (a list looks like 0-3,5)"),
                )
            })?;
            set.insert_range(first, last);
        }
        Ok(set)
    }
}

fn parse_item(item: &str) -> Option<(u32, u32)> {
    let number = |n: &str| {
        if n.bytes().all(|b| b.is_ascii_digit()) {
            n.parse::<u32>().ok()
        } else {
            None
        }
    };
    let (first, last) = match item.split_once('-') {
        Some((a, b)) => (number(a)?, number(b)?),
        None => (number(item)?, number(item)?),
    };
    (first <= last).then_some((first, last))
}

/// `cpuset.cpus.partition`: whether the group is a scheduling partition of its own.
///
/// `Member`, `Root` and `Isolated` are what can be written; the kernel reads back
/// `root invalid (REASON)` or `isolated invalid (REASON)` when it cannot honour one,
/// and those are kept with the reason.
///
/// ```
/// use qube_cgroup::Partition;
/// assert_eq!("root".parse::<Partition>().unwrap(), Partition::Root);
/// let bad: Partition = "root invalid (Parent unable to distribute cpu downstream)".parse().unwrap();
/// assert!(!bad.is_valid());
/// assert_eq!(bad.to_string(), "root invalid (Parent unable to distribute cpu downstream)");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub enum Partition {
    /// An ordinary member of its parent's partition.
    #[default]
    Member,
    /// The root of a new partition: its CPUs are taken from the parent's.
    Root,
    /// A partition whose CPUs are also taken out of load balancing.
    Isolated,
    /// A `root` the kernel could not make a partition, with its reason if it gave one.
    InvalidRoot(Option<String>),
    /// An `isolated` the kernel could not make a partition, with its reason if it gave one.
    InvalidIsolated(Option<String>),
}

impl Partition {
    /// Whether the kernel honours the partition (not one of the `invalid` states).
    ///
    /// ```
    /// assert!(qube_cgroup::Partition::Isolated.is_valid());
    /// ```
    pub fn is_valid(&self) -> bool {
        !matches!(
            self,
            Partition::InvalidRoot(_) | Partition::InvalidIsolated(_)
        )
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (kind, reason) = match self {
            Partition::Member => return f.write_str("member"),
            Partition::Root => return f.write_str("root"),
            Partition::Isolated => return f.write_str("isolated"),
            Partition::InvalidRoot(reason) => ("root", reason),
            Partition::InvalidIsolated(reason) => ("isolated", reason),
        };
        write!(f, "{kind} invalid")?;
        match reason {
            Some(reason) => write!(f, " ({reason})"),
            None => Ok(()),
        }
    }
}

impl FromStr for Partition {
    type Err = Error;

    fn from_str(s: &str) -> Result<Partition> {
        match s {
            "member" => return Ok(Partition::Member),
            "root" => return Ok(Partition::Root),
            "isolated" => return Ok(Partition::Isolated),
            _ => {}
        }
        let invalid = || {
            Error::invalid(
                "cpuset.cpus.partition",
                s,
                "expected member, root, isolated, or `root invalid (REASON)`",
            )
        };
        let (kind, rest) = s.split_once(" invalid").ok_or_else(invalid)?;
        let reason = match rest {
            "" => None,
            r => Some(
                r.strip_prefix(" (")
                    .and_then(|r| r.strip_suffix(')'))
                    .ok_or_else(invalid)?,
            ),
        };
        let reason = reason.map(str::to_owned);
        match kind {
            "root" => Ok(Partition::InvalidRoot(reason)),
            "isolated" => Ok(Partition::InvalidIsolated(reason)),
            _ => Err(invalid()),
        }
    }
}

/// No kernel configuration allows more CPUs (`CONFIG_NR_CPUS` tops out at 8192).
pub(crate) const CPU_LIMIT: u32 = 8192;
/// Nor more memory nodes (`CONFIG_NODES_SHIFT` tops out at 10).
pub(crate) const NODE_LIMIT: u32 = 1024;

/// ENOSPC when emptying a list means the group has processes, which would be left with
/// nowhere to run ("Cpusets with tasks ... can't be changed to have empty cpus_allowed
/// or mems_allowed", kernel/cgroup/cpuset.c); the bare errno says "no space left".
pub(crate) fn explain_emptying(err: Error) -> Error {
    match err {
        Error::Io {
            op,
            path,
            value,
            source,
        } if source.raw_os_error() == Some(nix::libc::ENOSPC) => Error::Io {
            op,
            path,
            value,
            source: std::io::Error::other(
                "the kernel refuses an empty list while the cgroup has processes (ENOSPC)",
            ),
        },
        other => other,
    }
}

/// The cpuset controller of one cgroup, from [`Cgroup::cpuset`].
///
/// ```no_run
/// use qube_cgroup::{Cgroup, CpuList};
/// let cg = Cgroup::root()?.create("pinned")?;
/// cg.cpuset().set_cpus(&"0-1".parse()?)?;
/// assert_eq!(cg.cpuset().effective_cpus()?, CpuList::range(0, 1));
/// # Ok::<(), qube_cgroup::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Cpuset<'a> {
    cg: &'a Cgroup,
}

impl Cgroup {
    /// The cpuset controller's files.
    ///
    /// ```no_run
    /// let cpus = qube_cgroup::Cgroup::open_self()?.cpuset().effective_cpus()?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn cpuset(&self) -> Cpuset<'_> {
        Cpuset { cg: self }
    }
}

impl Cpuset<'_> {
    /// The CPUs asked for (`cpuset.cpus`); empty means the parent's.
    ///
    /// ```no_run
    /// let asked = qube_cgroup::Cgroup::open_self()?.cpuset().cpus()?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn cpus(&self) -> Result<CpuList> {
        self.cg.dir.read_value("cpuset.cpus")
    }

    /// Asks for these CPUs. The kernel refuses CPUs that do not exist (ERANGE) or that
    /// the parent does not have (EINVAL), and the empty list while the group has
    /// processes (ENOSPC).
    ///
    /// ```no_run
    /// let cg = qube_cgroup::Cgroup::root()?.create("cpu0")?;
    /// cg.cpuset().set_cpus(&qube_cgroup::CpuList::range(0, 0))?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn set_cpus(&self, cpus: &CpuList) -> Result<()> {
        cpus.validate_below("cpuset.cpus", CPU_LIMIT)?;
        self.write_list("cpuset.cpus", cpus)
    }

    /// The memory nodes asked for (`cpuset.mems`); empty means the parent's.
    ///
    /// ```no_run
    /// let nodes = qube_cgroup::Cgroup::open_self()?.cpuset().mems()?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn mems(&self) -> Result<CpuList> {
        self.cg.dir.read_value("cpuset.mems")
    }

    /// Asks for these memory nodes; see [`set_cpus`](Self::set_cpus).
    ///
    /// ```no_run
    /// let cg = qube_cgroup::Cgroup::root()?.create("node0")?;
    /// cg.cpuset().set_mems(&qube_cgroup::CpuList::range(0, 0))?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn set_mems(&self, mems: &CpuList) -> Result<()> {
        mems.validate_below("cpuset.mems", NODE_LIMIT)?;
        self.write_list("cpuset.mems", mems)
    }

    /// The empty list is written as a newline: the kernel takes it, a zero-length
    /// write might never reach it.
    fn write_list(&self, file: &str, list: &CpuList) -> Result<()> {
        if list.is_empty() {
            return self
                .cg
                .dir
                .write_bytes(file, b"\n")
                .map_err(explain_emptying);
        }
        self.cg.dir.write_value(file, list)
    }

    /// The CPUs the group's tasks may actually run on (`cpuset.cpus.effective`).
    ///
    /// ```no_run
    /// let cpus = qube_cgroup::Cgroup::open_self()?.cpuset().effective_cpus()?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn effective_cpus(&self) -> Result<CpuList> {
        self.cg.dir.read_value("cpuset.cpus.effective")
    }

    /// The memory nodes the group may actually use (`cpuset.mems.effective`).
    ///
    /// ```no_run
    /// let nodes = qube_cgroup::Cgroup::open_self()?.cpuset().effective_mems()?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn effective_mems(&self) -> Result<CpuList> {
        self.cg.dir.read_value("cpuset.mems.effective")
    }

    /// The partition state (`cpuset.cpus.partition`).
    ///
    /// ```no_run
    /// let p = qube_cgroup::Cgroup::open_self()?.cpuset().partition()?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn partition(&self) -> Result<Partition> {
        self.cg.dir.read_value("cpuset.cpus.partition")
    }

    /// Asks for a partition state. Only `Member`, `Root` and `Isolated` can be written;
    /// whether the kernel could honour it shows in [`partition`](Self::partition).
    ///
    /// ```no_run
    /// let cg = qube_cgroup::Cgroup::root()?.create("rt")?;
    /// cg.cpuset().set_partition(&qube_cgroup::Partition::Root)?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn set_partition(&self, partition: &Partition) -> Result<()> {
        if !partition.is_valid() {
            return Err(Error::invalid(
                "cpuset.cpus.partition",
                &partition.to_string(),
                "only member, root and isolated can be written",
            ));
        }
        self.cg.dir.write_value("cpuset.cpus.partition", partition)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(cpus: &[u32]) -> String {
        let mut sorted = cpus.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        let mut out: Vec<String> = Vec::new();
        let mut i = 0;
        while i < sorted.len() {
            let mut j = i;
            while j + 1 < sorted.len() && sorted[j + 1] == sorted[j] + 1 {
                j += 1;
            }
            out.push(if i == j {
                sorted[i].to_string()
            } else {
                format!("{}-{}", sorted[i], sorted[j])
            });
            i = j + 1;
        }
        out.join(",")
    }

    #[test]
    fn merges_touching_and_overlapping_ranges() {
        let set: CpuList = "8-9,0-2,3,5-6,4,20".parse().unwrap();
        assert_eq!(set.to_string(), "0-6,8-9,20");
        let mut set = CpuList::range(10, 12);
        set.insert_range(0, 100);
        assert_eq!(set.to_string(), "0-100");
        let all = CpuList::range(0, u32::MAX);
        assert_eq!(all.len(), 1 << 32);
        assert!(all.contains(u32::MAX));
    }

    #[test]
    fn malformed_lists_are_rejected() {
        for bad in [
            "a",
            "1-",
            "-1",
            "1,,2",
            ",",
            "1 2",
            "+1",
            "2-1",
            "0-3:1/2",
            "99999999999",
        ] {
            assert!(bad.parse::<CpuList>().is_err(), "{bad:?}");
        }
        assert_eq!("0-3\n".parse::<CpuList>().unwrap().to_string(), "0-3");
    }

    #[test]
    fn partition_forms() {
        for text in [
            "member",
            "root",
            "isolated",
            "root invalid",
            "isolated invalid (Cpu list in cpuset.cpus not exclusive)",
        ] {
            assert_eq!(text.parse::<Partition>().unwrap().to_string(), text);
        }
        for bad in [
            "",
            "Root",
            "member invalid",
            "root invalid (x",
            "root invalidx",
        ] {
            assert!(bad.parse::<Partition>().is_err(), "{bad:?}");
        }
    }

    fn partition() -> impl Strategy<Value = Partition> {
        let reason = proptest::option::of("[^\\n]{0,40}");
        prop_oneof![
            Just(Partition::Member),
            Just(Partition::Root),
            Just(Partition::Isolated),
            reason.clone().prop_map(Partition::InvalidRoot),
            reason.prop_map(Partition::InvalidIsolated),
        ]
    }

    proptest! {
        #[test]
        fn display_is_the_kernels_canonical_list(cpus in proptest::collection::vec(0u32..300, 0..60)) {
            let set: CpuList = cpus.iter().copied().collect();
            prop_assert_eq!(set.to_string(), reference(&cpus));
            for cpu in 0..300 {
                prop_assert_eq!(set.contains(cpu), cpus.contains(&cpu));
            }
        }

        #[test]
        fn list_round_trips(ranges in proptest::collection::vec((any::<u32>(), 0u32..1000), 0..20)) {
            let mut set = CpuList::new();
            for (start, width) in ranges {
                set.insert_range(start, start.saturating_add(width));
            }
            prop_assert_eq!(set.to_string().parse::<CpuList>().unwrap(), set);
        }

        #[test]
        fn partition_round_trips(p in partition()) {
            prop_assert_eq!(p.to_string().parse::<Partition>().unwrap(), p);
        }

        #[test]
        fn parsers_never_panic(s in "\\PC{0,64}") {
            let _ = s.parse::<CpuList>();
            let _ = s.parse::<Partition>();
        }
    }
}
