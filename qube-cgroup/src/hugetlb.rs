//! The hugetlb controller: per huge page size, a limit on the pages a cgroup may fault
//! in (`hugetlb.<size>.max`) or reserve (`hugetlb.<size>.rsvd.max`), usage, and how often
//! the limit refused a page (`hugetlb.<size>.events`).

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use crate::cgroup::Cgroup;
use crate::dir::Dir;
use crate::error::{Error, Result};
use crate::keyed::flat_stats;
use crate::numa::NumaStat;
use crate::value::{Bytes, Max};

/// Where the kernel lists the huge page sizes it supports (`hugepages-2048kB`, ...).
const SYSFS_HUGEPAGES: &str = "/sys/kernel/mm/hugepages";

/// A huge page size, written the way the hugetlb controller names its files: `2MB`,
/// `1GB`, `64KB` (binary units, as the kernel's `mem_fmt` prints them).
///
/// Huge pages are powers of two of at least 1 KiB, which makes that text exact.
///
/// ```
/// use qube_cgroup::{Bytes, HugePageSize};
/// let size: HugePageSize = "2MB".parse().unwrap();
/// assert_eq!(size, HugePageSize::SIZE_2M);
/// assert_eq!(size.bytes(), Bytes::mib(2));
/// assert_eq!(HugePageSize::SIZE_1G.to_string(), "1GB");
/// assert!("2048KB".parse::<HugePageSize>().is_err()); // the kernel writes 2MB
/// assert!(HugePageSize::new(Bytes(3 << 20)).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HugePageSize(Bytes);

const KB: u64 = 1 << 10;
const MB: u64 = 1 << 20;
const GB: u64 = 1 << 30;

impl HugePageSize {
    /// 2 MiB pages (x86-64, arm64 with 4K base pages).
    ///
    /// ```
    /// assert_eq!(qube_cgroup::HugePageSize::SIZE_2M.to_string(), "2MB");
    /// ```
    pub const SIZE_2M: HugePageSize = HugePageSize(Bytes(2 * MB));
    /// 1 GiB pages (x86-64, arm64 with 4K base pages).
    ///
    /// ```
    /// assert_eq!(qube_cgroup::HugePageSize::SIZE_1G.bytes(), qube_cgroup::Bytes::gib(1));
    /// ```
    pub const SIZE_1G: HugePageSize = HugePageSize(Bytes(GB));

    /// A page size; it must be a power of two of at least 1 KiB.
    ///
    /// ```
    /// use qube_cgroup::{Bytes, HugePageSize};
    /// assert_eq!(HugePageSize::new(Bytes::kib(64)).unwrap().to_string(), "64KB");
    /// ```
    pub fn new(size: Bytes) -> Result<HugePageSize> {
        if size.0 >= KB && size.0.is_power_of_two() {
            Ok(HugePageSize(size))
        } else {
            Err(Error::invalid(
                "huge page size",
                &size.to_string(),
                "huge pages are a power of two of at least 1 KiB",
            ))
        }
    }

    /// The page size in bytes.
    ///
    /// ```
    /// assert_eq!(qube_cgroup::HugePageSize::SIZE_2M.bytes().0, 2 << 20);
    /// ```
    pub fn bytes(self) -> Bytes {
        self.0
    }

    /// Parses a sysfs directory name such as `hugepages-2048kB`.
    fn from_sysfs_name(name: &str) -> Option<HugePageSize> {
        let kib: u64 = name
            .strip_prefix("hugepages-")?
            .strip_suffix("kB")?
            .parse()
            .ok()?;
        HugePageSize::new(Bytes(kib.checked_mul(KB)?)).ok()
    }

    pub(crate) fn file(self, name: &str) -> String {
        format!("hugetlb.{self}.{name}")
    }
}

impl fmt::Display for HugePageSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0 .0;
        if n >= GB {
            write!(f, "{}GB", n / GB)
        } else if n >= MB {
            write!(f, "{}MB", n / MB)
        } else {
            write!(f, "{}KB", n / KB)
        }
    }
}

impl FromStr for HugePageSize {
    type Err = Error;

    fn from_str(s: &str) -> Result<HugePageSize> {
        let invalid = |reason: &str| Error::invalid("huge page size", s, reason);
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let scale = match unit {
            "KB" => KB,
            "MB" => MB,
            "GB" => GB,
            _ => return Err(invalid("expected a size such as 2MB or 1GB")),
        };
        let number: u64 = digits
            .parse()
            .map_err(|_| invalid("expected a size such as 2MB or 1GB"))?;
        let bytes = number
            .checked_mul(scale)
            .ok_or_else(|| invalid("too large"))?;
        let size = HugePageSize::new(Bytes(bytes))?;
        if size.to_string() != s {
            return Err(invalid(&format!("the kernel writes this size as {size}")));
        }
        Ok(size)
    }
}

flat_stats! {
    /// `hugetlb.<size>.events` (and `.events.local`): how often the limit refused a page.
    ///
    /// ```
    /// let ev = qube_cgroup::HugetlbEvents::parse("max 3\n").unwrap();
    /// assert_eq!(ev.max, 3);
    /// assert_eq!(ev.to_string(), "max 3\n");
    /// ```
    HugetlbEvents, "hugetlb.<size>.events" {
        /// Allocations that failed because of `hugetlb.<size>.max`.
        max: "max",
    }
}

/// The hugetlb controller of one cgroup, from [`Cgroup::hugetlb`]. Every file exists once
/// per huge page size the kernel supports; [`page_sizes`](Hugetlb::page_sizes) lists them.
///
/// ```no_run
/// use qube_cgroup::{Bytes, Cgroup, HugePageSize, Max};
/// let cg = Cgroup::root()?.create("db")?;
/// let hugetlb = cg.hugetlb();
/// hugetlb.set_max(HugePageSize::SIZE_2M, Max::Limit(Bytes::mib(512)))?;
/// println!("{} of 2MB pages in use", hugetlb.current(HugePageSize::SIZE_2M)?.human());
/// # Ok::<(), qube_cgroup::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Hugetlb<'a> {
    cg: &'a Cgroup,
}

impl Cgroup {
    /// The hugetlb controller's files.
    ///
    /// ```no_run
    /// let sizes = qube_cgroup::Cgroup::root()?.hugetlb().page_sizes()?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn hugetlb(&self) -> Hugetlb<'_> {
        Hugetlb { cg: self }
    }
}

impl Hugetlb<'_> {
    /// The huge page sizes this kernel supports, smallest first (from
    /// `/sys/kernel/mm/hugepages`); empty when it has no huge pages at all.
    ///
    /// ```no_run
    /// for size in qube_cgroup::Cgroup::root()?.hugetlb().page_sizes()? {
    ///     println!("hugetlb.{size}.max");
    /// }
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn page_sizes(&self) -> Result<Vec<HugePageSize>> {
        let names = match Dir::open(Path::new(SYSFS_HUGEPAGES)).and_then(|d| d.subdirs()) {
            Ok(names) => names,
            Err(Error::NotFound { .. }) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut sizes: Vec<_> = names
            .iter()
            .filter_map(|n| HugePageSize::from_sysfs_name(n))
            .collect();
        sizes.sort();
        Ok(sizes)
    }

    /// The limit on huge pages of `size` faulted in (`hugetlb.<size>.max`).
    ///
    /// ```no_run
    /// use qube_cgroup::{Cgroup, HugePageSize, Max};
    /// let cg = Cgroup::root()?.create("h")?;
    /// assert_eq!(cg.hugetlb().max(HugePageSize::SIZE_2M)?, Max::Max);
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn max(&self, size: HugePageSize) -> Result<Max<Bytes>> {
        self.read(size, "max")
    }

    /// Sets the limit on huge pages of `size`. The kernel counts whole pages, so a limit
    /// that is not a multiple of `size` is an [`Error::InvalidValue`] and nothing is written.
    ///
    /// ```no_run
    /// use qube_cgroup::{Bytes, Cgroup, HugePageSize, Max};
    /// let cg = Cgroup::root()?.create("h")?;
    /// cg.hugetlb().set_max(HugePageSize::SIZE_2M, Max::Limit(Bytes::mib(64)))?;
    /// assert!(cg.hugetlb().set_max(HugePageSize::SIZE_2M, Max::Limit(Bytes::mib(3))).is_err());
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn set_max(&self, size: HugePageSize, limit: Max<Bytes>) -> Result<()> {
        self.write_limit(size, "max", limit)
    }

    /// Huge pages of `size` in use by the group and its descendants (`hugetlb.<size>.current`).
    ///
    /// ```no_run
    /// use qube_cgroup::{Cgroup, HugePageSize};
    /// let used = Cgroup::root()?.create("h")?.hugetlb().current(HugePageSize::SIZE_2M)?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn current(&self, size: HugePageSize) -> Result<Bytes> {
        self.read(size, "current")
    }

    /// The limit on huge pages of `size` reserved, at `mmap` time, rather than faulted
    /// in (`hugetlb.<size>.rsvd.max`, Linux 5.7+).
    ///
    /// ```no_run
    /// use qube_cgroup::{Cgroup, HugePageSize};
    /// let limit = Cgroup::root()?.create("h")?.hugetlb().rsvd_max(HugePageSize::SIZE_2M)?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn rsvd_max(&self, size: HugePageSize) -> Result<Max<Bytes>> {
        self.read(size, "rsvd.max")
    }

    /// Sets the reservation limit; like [`set_max`](Hugetlb::set_max), in whole pages.
    ///
    /// ```no_run
    /// use qube_cgroup::{Bytes, Cgroup, HugePageSize, Max};
    /// let cg = Cgroup::root()?.create("h")?;
    /// cg.hugetlb().set_rsvd_max(HugePageSize::SIZE_2M, Max::Limit(Bytes::mib(64)))?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn set_rsvd_max(&self, size: HugePageSize, limit: Max<Bytes>) -> Result<()> {
        self.write_limit(size, "rsvd.max", limit)
    }

    /// Huge pages of `size` reserved by the group (`hugetlb.<size>.rsvd.current`).
    ///
    /// ```no_run
    /// use qube_cgroup::{Cgroup, HugePageSize};
    /// let reserved = Cgroup::root()?.create("h")?.hugetlb().rsvd_current(HugePageSize::SIZE_2M)?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn rsvd_current(&self, size: HugePageSize) -> Result<Bytes> {
        self.read(size, "rsvd.current")
    }

    /// How often `hugetlb.<size>.max` refused a page, here and below (`hugetlb.<size>.events`).
    ///
    /// ```no_run
    /// use qube_cgroup::{Cgroup, HugePageSize};
    /// let refused = Cgroup::root()?.create("h")?.hugetlb().events(HugePageSize::SIZE_2M)?.max;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn events(&self, size: HugePageSize) -> Result<HugetlbEvents> {
        self.read_events(size, "events")
    }

    /// The same count for this cgroup alone (`hugetlb.<size>.events.local`).
    ///
    /// ```no_run
    /// use qube_cgroup::{Cgroup, HugePageSize};
    /// let refused = Cgroup::root()?.create("h")?.hugetlb().events_local(HugePageSize::SIZE_2M)?.max;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn events_local(&self, size: HugePageSize) -> Result<HugetlbEvents> {
        self.read_events(size, "events.local")
    }

    /// Huge pages of `size` in use, in total and per NUMA node, in bytes
    /// (`hugetlb.<size>.numa_stat`, Linux 5.16+): the entry `total`.
    ///
    /// ```no_run
    /// use qube_cgroup::{Cgroup, HugePageSize};
    /// let stat = Cgroup::root()?.create("h")?.hugetlb().numa_stat(HugePageSize::SIZE_2M)?;
    /// println!("{:?}", stat.get("total").map(|t| t.nodes.clone()));
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn numa_stat(&self, size: HugePageSize) -> Result<NumaStat> {
        self.cg
            .dir
            .read_parsed(&size.file("numa_stat"), NumaStat::parse)
            .map_err(|e| self.unknown_size_or(size, e))
    }

    fn read<T: FromStr<Err = Error>>(&self, size: HugePageSize, name: &str) -> Result<T> {
        let file = size.file(name);
        self.cg
            .dir
            .read_value(&file)
            .map_err(|e| self.unknown_size_or(size, e))
    }

    fn read_events(&self, size: HugePageSize, name: &str) -> Result<HugetlbEvents> {
        self.cg
            .dir
            .read_parsed(&size.file(name), HugetlbEvents::parse)
            .map_err(|e| self.unknown_size_or(size, e))
    }

    fn write_limit(&self, size: HugePageSize, name: &str, limit: Max<Bytes>) -> Result<()> {
        validate_limit(size, limit)?;
        let file = size.file(name);
        self.cg
            .dir
            .write_value(&file, &limit)
            .map_err(|e| self.unknown_size_or(size, e))
    }

    /// A missing file of a size the kernel does not have says so, rather than
    /// "not supported by this kernel".
    fn unknown_size_or(&self, size: HugePageSize, err: Error) -> Error {
        if !matches!(err, Error::Unsupported { .. }) {
            return err;
        }
        match self.page_sizes() {
            Ok(sizes) if !sizes.contains(&size) => Error::invalid(
                "huge page size",
                &size.to_string(),
                format!(
                    "this system has no such huge pages (it has: {})",
                    sizes
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
            ),
            _ => err,
        }
    }
}

/// The kernel counts huge pages whole: a limit must be a multiple of the page size.
pub(crate) fn validate_limit(size: HugePageSize, limit: Max<Bytes>) -> Result<()> {
    match limit {
        Max::Limit(bytes) if bytes.0 % size.bytes().0 != 0 => Err(Error::invalid(
            "hugetlb limit",
            &bytes.to_string(),
            format!("the limit counts whole pages: use a multiple of {size}"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn sysfs_names() {
        assert_eq!(
            HugePageSize::from_sysfs_name("hugepages-2048kB"),
            Some(HugePageSize::SIZE_2M)
        );
        assert_eq!(
            HugePageSize::from_sysfs_name("hugepages-1048576kB"),
            Some(HugePageSize::SIZE_1G)
        );
        assert_eq!(HugePageSize::from_sysfs_name("hugepages-3kB"), None);
        assert_eq!(HugePageSize::from_sysfs_name("other"), None);
    }

    #[test]
    fn kernel_names() {
        for (text, bytes) in [
            ("64KB", 64 * KB),
            ("2MB", 2 * MB),
            ("32MB", 32 * MB),
            ("1GB", GB),
            ("16GB", 16 * GB),
        ] {
            let size: HugePageSize = text.parse().unwrap();
            assert_eq!(size.bytes(), Bytes(bytes));
            assert_eq!(size.to_string(), text);
        }
        for bad in [
            "",
            "2",
            "2M",
            "2mb",
            "0MB",
            "3MB",
            "1024MB",
            "-2MB",
            "2 MB",
            "99999999999GB",
        ] {
            assert!(bad.parse::<HugePageSize>().is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn page_size_round_trips(shift in 10u32..64) {
            let size = HugePageSize::new(Bytes(1u64 << shift)).unwrap();
            prop_assert_eq!(size.to_string().parse::<HugePageSize>().unwrap(), size);
        }

        #[test]
        fn page_size_text_round_trips(s in "[0-9]{1,6}(KB|MB|GB)") {
            if let Ok(size) = s.parse::<HugePageSize>() {
                prop_assert_eq!(size.to_string(), s);
            }
        }

        #[test]
        fn parser_never_panics(s in "\\PC{0,24}") {
            let _ = s.parse::<HugePageSize>();
            let _ = HugetlbEvents::parse(s);
        }
    }
}
