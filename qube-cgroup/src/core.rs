//! The core interface files that shape the hierarchy rather than a resource:
//! `cgroup.type` (threaded subtrees), `cgroup.max.depth` and `cgroup.max.descendants`
//! (how deep and how large a subtree may grow) and `cgroup.stat` (how large it is).

use std::fmt;
use std::str::FromStr;

use crate::cgroup::Cgroup;
use crate::error::{Error, Result};
use crate::keyed::flat_stats;
use crate::value::{Count, Max};

/// What `cgroup.type` says a cgroup is (cgroup-v2.rst, "Threads").
///
/// A cgroup is created as a [`Domain`](CgroupType::Domain); writing `threaded` makes it
/// [`Threaded`](CgroupType::Threaded), which cannot be undone. Its parent then serves as the
/// resource domain of the threaded subtree and reads
/// [`DomainThreaded`](CgroupType::DomainThreaded); a domain created below a threaded cgroup
/// is [`DomainInvalid`](CgroupType::DomainInvalid) until it is made threaded too.
///
/// ```
/// use qube_cgroup::CgroupType;
/// let t: CgroupType = "domain threaded".parse().unwrap();
/// assert_eq!(t, CgroupType::DomainThreaded);
/// assert_eq!(CgroupType::Threaded.to_string(), "threaded");
/// assert!("thread".parse::<CgroupType>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CgroupType {
    /// `domain`: a normal cgroup, the unit of resource control.
    Domain,
    /// `domain threaded`: the domain (thread root) of a threaded subtree.
    DomainThreaded,
    /// `domain invalid`: a domain cut off from any domain parent; it can be neither
    /// populated nor have controllers enabled until it is made threaded.
    DomainInvalid,
    /// `threaded`: a member of a threaded subtree, holding threads rather than processes.
    Threaded,
}

impl CgroupType {
    /// Every type, in the order cgroup-v2.rst lists them.
    ///
    /// ```
    /// use qube_cgroup::CgroupType;
    /// assert!(CgroupType::ALL.iter().all(|t| t.as_str().parse::<CgroupType>().unwrap() == *t));
    /// ```
    pub const ALL: [CgroupType; 4] = [
        CgroupType::Domain,
        CgroupType::DomainThreaded,
        CgroupType::DomainInvalid,
        CgroupType::Threaded,
    ];

    /// The kernel's text for it.
    ///
    /// ```
    /// assert_eq!(qube_cgroup::CgroupType::DomainInvalid.as_str(), "domain invalid");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupType::Domain => "domain",
            CgroupType::DomainThreaded => "domain threaded",
            CgroupType::DomainInvalid => "domain invalid",
            CgroupType::Threaded => "threaded",
        }
    }
}

impl fmt::Display for CgroupType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CgroupType {
    type Err = Error;

    fn from_str(s: &str) -> Result<CgroupType> {
        CgroupType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "cgroup type",
                    s,
                    "expected domain, domain threaded, domain invalid or threaded",
                )
            })
    }
}

flat_stats! {
    /// `cgroup.stat`: how many cgroups live (and linger) below this one. Every key the
    /// kernel writes is kept ([`get`](CgroupStat::get)), e.g. `nr_subsys_memory` on newer kernels.
    ///
    /// ```
    /// let stat = qube_cgroup::CgroupStat::parse("nr_descendants 3\nnr_dying_descendants 1\n").unwrap();
    /// assert_eq!((stat.nr_descendants, stat.nr_dying_descendants), (3, 1));
    /// assert_eq!(stat.to_string(), "nr_descendants 3\nnr_dying_descendants 1\n");
    /// ```
    CgroupStat, "cgroup.stat" {
        /// Visible descendant cgroups, at every depth.
        nr_descendants: "nr_descendants",
        /// Removed descendants the kernel has not freed yet; they still count against
        /// `cgroup.max.descendants`.
        nr_dying_descendants: "nr_dying_descendants",
    }
}

/// The kernel keeps both hierarchy limits as a non-negative C `int`.
const HIERARCHY_LIMIT_CAP: u64 = i32::MAX as u64;

impl Cgroup {
    /// The cgroup's type (`cgroup.type`). The root has no such file, so reading it there
    /// gives [`Error::Unsupported`]; the root is exempt from the threaded rules.
    ///
    /// ```no_run
    /// use qube_cgroup::{Cgroup, CgroupType};
    /// let cg = Cgroup::root()?.create("typed")?;
    /// assert_eq!(cg.cgroup_type()?, CgroupType::Domain);
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn cgroup_type(&self) -> Result<CgroupType> {
        self.dir.read_value("cgroup.type")
    }

    /// Makes the cgroup threaded: the only change `cgroup.type` accepts. Any other type
    /// is an [`Error::InvalidValue`] and nothing is written.
    ///
    /// The kernel refuses with [`Error::Threaded`] (EOPNOTSUPP) when the cgroup has
    /// processes or domain controllers enabled, or when its parent cannot host a threaded
    /// subtree: the parent is itself `domain invalid`, has populated domain children, or
    /// has domain controllers enabled (cgroup-v2.rst: "When the parent is an unthreaded
    /// domain, it must not have any domain controllers enabled or populated domain
    /// children. The root is exempt from this requirement.").
    ///
    /// ```no_run
    /// use qube_cgroup::{Cgroup, CgroupType};
    /// let pool = Cgroup::root()?.create("pool")?;
    /// let workers = pool.create("workers")?;
    /// workers.set_type(CgroupType::Threaded)?;
    /// assert_eq!(pool.cgroup_type()?, CgroupType::DomainThreaded);
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn set_type(&self, wanted: CgroupType) -> Result<()> {
        if wanted != CgroupType::Threaded {
            return Err(Error::invalid(
                "cgroup type",
                wanted.as_str(),
                "only `threaded` can be written: a cgroup is created a domain, and a threaded \
                 cgroup can never become a domain again",
            ));
        }
        self.dir.write_value("cgroup.type", &wanted)
    }

    /// How many levels of cgroups may be created below this one (`cgroup.max.depth`).
    ///
    /// ```no_run
    /// use qube_cgroup::Max;
    /// assert_eq!(qube_cgroup::Cgroup::root()?.create("deep")?.max_depth()?, Max::Max);
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn max_depth(&self) -> Result<Max<u64>> {
        self.read_hierarchy_limit("cgroup.max.depth")
    }

    /// Limits how deep the subtree may grow; a `mkdir` beyond it fails with
    /// [`Error::LimitReached`]. Limits above `i32::MAX` are an [`Error::InvalidValue`].
    ///
    /// ```no_run
    /// use qube_cgroup::Max;
    /// let cg = qube_cgroup::Cgroup::root()?.create("shallow")?;
    /// cg.set_max_depth(Max::Limit(1))?;
    /// let child = cg.create("child")?;
    /// assert!(child.create("grandchild").is_err());
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn set_max_depth(&self, limit: Max<u64>) -> Result<()> {
        self.write_hierarchy_limit("cgroup.max.depth", limit)
    }

    /// How many descendants (live and dying) this cgroup may have (`cgroup.max.descendants`).
    ///
    /// ```no_run
    /// use qube_cgroup::Max;
    /// assert_eq!(qube_cgroup::Cgroup::root()?.create("wide")?.max_descendants()?, Max::Max);
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn max_descendants(&self) -> Result<Max<u64>> {
        self.read_hierarchy_limit("cgroup.max.descendants")
    }

    /// Limits how many descendants the subtree may hold; a `mkdir` beyond it fails with
    /// [`Error::LimitReached`]. Dying descendants count until the kernel frees them.
    /// Limits above `i32::MAX` are an [`Error::InvalidValue`].
    ///
    /// ```no_run
    /// use qube_cgroup::Max;
    /// let cg = qube_cgroup::Cgroup::root()?.create("narrow")?;
    /// cg.set_max_descendants(Max::Limit(1))?;
    /// let _only = cg.create("only")?;
    /// assert!(cg.create("second").is_err());
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn set_max_descendants(&self, limit: Max<u64>) -> Result<()> {
        self.write_hierarchy_limit("cgroup.max.descendants", limit)
    }

    /// Descendant counts (`cgroup.stat`).
    ///
    /// ```no_run
    /// let cg = qube_cgroup::Cgroup::root()?.create("counted")?;
    /// let _a = cg.create("a")?;
    /// assert_eq!(cg.stat()?.nr_descendants, 1);
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn stat(&self) -> Result<CgroupStat> {
        self.dir.read_parsed(CgroupStat::FILE, CgroupStat::parse)
    }

    fn read_hierarchy_limit(&self, file: &str) -> Result<Max<u64>> {
        Ok(match self.dir.read_value::<Max<Count>>(file)? {
            Max::Max => Max::Max,
            Max::Limit(Count(n)) => Max::Limit(n),
        })
    }

    fn write_hierarchy_limit(&self, file: &str, limit: Max<u64>) -> Result<()> {
        if limit.limit().is_some_and(|n| n > HIERARCHY_LIMIT_CAP) {
            return Err(Error::invalid(
                "hierarchy limit",
                &limit.to_string(),
                format!("{file} takes at most {HIERARCHY_LIMIT_CAP}, or max"),
            ));
        }
        self.dir.write_value(file, &limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn cgroup_type_round_trips(i in 0usize..4) {
            let t = CgroupType::ALL[i];
            prop_assert_eq!(t.to_string().parse::<CgroupType>().unwrap(), t);
        }

        #[test]
        fn cgroup_type_parser_never_panics(s in "\\PC{0,32}") {
            if let Ok(t) = s.parse::<CgroupType>() {
                prop_assert_eq!(t.to_string(), s);
            }
        }

        #[test]
        fn stat_round_trips(a: u64, b: u64) {
            let text = format!("nr_descendants {a}\nnr_dying_descendants {b}\n");
            let stat = CgroupStat::parse(text.clone()).unwrap();
            prop_assert_eq!((stat.nr_descendants, stat.nr_dying_descendants), (a, b));
            prop_assert_eq!(stat.to_string(), text);
        }
    }
}
