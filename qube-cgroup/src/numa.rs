//! Per-NUMA-node statistics: `memory.numa_stat` and `hugetlb.<size>.numa_stat`.
//!
//! Both are nested keyed files whose pairs are `N<node>=<bytes>`. `memory.numa_stat`
//! starts each line with a `memory.stat` key (`anon N0=4096 N1=0`); the hugetlb file
//! starts it with a total (`total=4194304 N0=4194304`).

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// One line of a `numa_stat` file: its key, the total the kernel writes beside it
/// (hugetlb only), and the amount on each NUMA node, in bytes.
///
/// ```
/// let stat = qube_cgroup::NumaStat::parse("anon N0=4096 N1=8192\n").unwrap();
/// let anon = stat.get("anon").unwrap();
/// assert_eq!((anon.node(1), anon.sum(), anon.total), (Some(8192), 12288, None));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumaEntry {
    /// The key: a `memory.stat` key, or `total` for hugetlb.
    pub key: String,
    /// The value written as `key=VALUE` (hugetlb's `total=`), if the line has one.
    pub total: Option<u64>,
    /// `(node, bytes)` for every `N<node>=<bytes>` pair, in the kernel's order.
    pub nodes: Vec<(u32, u64)>,
}

impl NumaEntry {
    /// The amount on `node`, if the line lists it.
    ///
    /// ```
    /// let stat = qube_cgroup::NumaStat::parse("file N0=1\n").unwrap();
    /// assert_eq!(stat.get("file").unwrap().node(3), None);
    /// ```
    pub fn node(&self, node: u32) -> Option<u64> {
        self.nodes.iter().find(|(n, _)| *n == node).map(|(_, v)| *v)
    }

    /// The sum over every node.
    ///
    /// ```
    /// let stat = qube_cgroup::NumaStat::parse("total=3 N0=1 N1=2\n").unwrap();
    /// assert_eq!(stat.get("total").unwrap().sum(), 3);
    /// ```
    pub fn sum(&self) -> u64 {
        self.nodes.iter().map(|(_, v)| v).sum()
    }
}

/// A `numa_stat` file: an entry per line, and the kernel's text, which `Display` gives
/// back unchanged.
///
/// ```no_run
/// use qube_cgroup::{Cgroup, HugePageSize};
/// let cg = Cgroup::open_self()?;
/// let anon = cg.memory().numa_stat()?.get("anon").map(|e| e.nodes.clone());
/// let huge = cg.hugetlb().numa_stat(HugePageSize::SIZE_2M)?;
/// println!("anon per node {anon:?}, 2M pages {:?}", huge.get("total"));
/// # Ok::<(), qube_cgroup::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NumaStat {
    entries: Vec<NumaEntry>,
    text: String,
}

impl NumaStat {
    /// Parses a `numa_stat` file's text: each line a key or `key=total`, then
    /// `N<node>=<bytes>` pairs.
    ///
    /// ```
    /// use qube_cgroup::NumaStat;
    /// assert!(NumaStat::parse("anon N0=x\n").is_err());
    /// assert!(NumaStat::parse("anon 12\n").is_err());
    /// ```
    pub fn parse(text: impl Into<String>) -> Result<NumaStat> {
        let text = text.into();
        let entries = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(parse_line)
            .collect::<Result<Vec<_>>>()?;
        Ok(NumaStat { entries, text })
    }

    /// The entry of `key`.
    ///
    /// ```
    /// assert!(qube_cgroup::NumaStat::default().get("anon").is_none());
    /// ```
    pub fn get(&self, key: &str) -> Option<&NumaEntry> {
        self.entries.iter().find(|e| e.key == key)
    }

    /// Every entry, in the kernel's order.
    ///
    /// ```
    /// let stat = qube_cgroup::NumaStat::parse("anon N0=1\nfile N0=2\n").unwrap();
    /// assert_eq!(stat.entries().len(), 2);
    /// ```
    pub fn entries(&self) -> &[NumaEntry] {
        &self.entries
    }
}

fn parse_line(line: &str) -> Result<NumaEntry> {
    let invalid = |reason: &str| Error::Parse {
        path: "numa_stat".into(),
        line: line.to_owned(),
        reason: reason.to_owned(),
    };
    let mut words = line.split_ascii_whitespace();
    let head = words.next().ok_or_else(|| invalid("empty line"))?;
    let (key, total) = match head.split_once('=') {
        Some((key, total)) => (
            key,
            Some(number(total).ok_or_else(|| invalid("bad total"))?),
        ),
        None => (head, None),
    };
    let nodes = words
        .map(|pair| {
            let (node, bytes) = pair.strip_prefix('N')?.split_once('=')?;
            Some((number(node)?, number(bytes)?))
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| invalid("expected N<node>=<bytes> pairs"))?;
    Ok(NumaEntry {
        key: key.to_owned(),
        total,
        nodes,
    })
}

/// A decimal number as the kernel prints it: digits only.
fn number<T: FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

impl fmt::Display for NumaStat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for NumaStat {
    type Err = Error;

    fn from_str(s: &str) -> Result<NumaStat> {
        NumaStat::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// What the kernel would write for these entries.
    fn kernel_text(entries: &[NumaEntry]) -> String {
        let mut text = String::new();
        for e in entries {
            text.push_str(&e.key);
            if let Some(total) = e.total {
                text.push_str(&format!("={total}"));
            }
            for (node, bytes) in &e.nodes {
                text.push_str(&format!(" N{node}={bytes}"));
            }
            text.push('\n');
        }
        text
    }

    fn entry() -> impl Strategy<Value = NumaEntry> {
        (
            "[a-z_]{1,20}",
            proptest::option::of(any::<u64>()),
            proptest::collection::vec((0..1024u32, any::<u64>()), 0..8),
        )
            .prop_map(|(key, total, nodes)| NumaEntry { key, total, nodes })
    }

    #[test]
    fn both_kernel_layouts_parse() {
        let memory = NumaStat::parse("anon N0=4096\nfile N0=0\n").unwrap();
        assert_eq!(memory.get("anon").unwrap().nodes, [(0, 4096)]);
        let hugetlb = NumaStat::parse("total=4194304 N0=4194304\n").unwrap();
        assert_eq!(hugetlb.get("total").unwrap().total, Some(4194304));
        for bad in [
            "anon N0=-1\n",
            "anon M0=1\n",
            "anon N=1\n",
            "total=+1 N0=1\n",
            "=\n",
        ] {
            assert!(NumaStat::parse(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn numa_stat_round_trips_the_kernel_text(entries in proptest::collection::vec(entry(), 0..20)) {
            let text = kernel_text(&entries);
            let stat: NumaStat = text.parse().unwrap();
            prop_assert_eq!(stat.entries(), &entries[..]);
            prop_assert_eq!(stat.to_string(), text);
        }

        #[test]
        fn numa_stat_parser_never_panics(s in "\\PC{0,200}") {
            let _ = NumaStat::parse(s);
        }
    }
}
