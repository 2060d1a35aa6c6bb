//! The rdma controller: per RDMA device, limits on HCA handles and objects (`rdma.max`)
//! and their use (`rdma.current`), both nested keyed: `mlx4_0 hca_handle=2 hca_object=2000`.

use std::fmt;
use std::str::FromStr;

use crate::cgroup::Cgroup;
use crate::error::{Error, Result};
use crate::value::Max;

/// The kernel keeps each count as a C `int` and shows `INT_MAX` as `max`.
const RDMA_LIMIT_CAP: u64 = i32::MAX as u64 - 1;

/// The limits of one device, one line of `rdma.max`.
///
/// `Display` writes the line `rdma.max` takes (the kernel's text without its trailing
/// space); `FromStr` reads the kernel's lines.
///
/// ```
/// use qube_cgroup::{Max, RdmaLimit};
/// let limit: RdmaLimit = "mlx4_0 hca_handle=2 hca_object=max ".parse().unwrap();
/// assert_eq!(limit.device, "mlx4_0");
/// assert_eq!((limit.hca_handle, limit.hca_object), (Max::Limit(2), Max::Max));
/// assert_eq!(limit.to_string(), "mlx4_0 hca_handle=2 hca_object=max");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RdmaLimit {
    /// The RDMA device (`mlx4_0`, `ocrdma1`, ...).
    pub device: String,
    /// Maximum number of HCA handles.
    pub hca_handle: Max<u64>,
    /// Maximum number of HCA objects.
    pub hca_object: Max<u64>,
}

/// The usage of one device, one line of `rdma.current`.
///
/// ```
/// use qube_cgroup::RdmaUsage;
/// let used: RdmaUsage = "mlx4_0 hca_handle=1 hca_object=20 ".parse().unwrap();
/// assert_eq!((used.hca_handle, used.hca_object), (1, 20));
/// assert_eq!(used.to_string(), "mlx4_0 hca_handle=1 hca_object=20");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RdmaUsage {
    /// The RDMA device.
    pub device: String,
    /// HCA handles in use.
    pub hca_handle: u64,
    /// HCA objects in use.
    pub hca_object: u64,
}

impl fmt::Display for RdmaLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} hca_handle={} hca_object={}",
            self.device, self.hca_handle, self.hca_object
        )
    }
}

impl fmt::Display for RdmaUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} hca_handle={} hca_object={}",
            self.device, self.hca_handle, self.hca_object
        )
    }
}

/// One line split into its device and the two known values (unknown keys are skipped,
/// so a newer kernel's extra resources do not break parsing).
fn split_line(line: &str) -> std::result::Result<(&str, &str, &str), &'static str> {
    let (device, pairs) = crate::keyed::nested_keyed(line).ok_or("empty line")?;
    let (mut handle, mut object) = (None, None);
    for pair in pairs {
        match pair.ok_or("expected key=value after the device")? {
            ("hca_handle", v) => handle = Some(v),
            ("hca_object", v) => object = Some(v),
            _ => {}
        }
    }
    match (handle, object) {
        (Some(h), Some(o)) => Ok((device, h, o)),
        _ => Err("expected hca_handle= and hca_object="),
    }
}

fn parse_count(s: &str) -> Option<u64> {
    s.parse().ok()
}

fn parse_limit(s: &str) -> Option<Max<u64>> {
    if s == "max" {
        Some(Max::Max)
    } else {
        parse_count(s).map(Max::Limit)
    }
}

impl FromStr for RdmaLimit {
    type Err = Error;

    fn from_str(s: &str) -> Result<RdmaLimit> {
        let invalid = |reason: &str| Error::invalid("rdma.max line", s, reason);
        let (device, handle, object) = split_line(s).map_err(invalid)?;
        let value = |v| parse_limit(v).ok_or_else(|| invalid("a limit is a count or max"));
        Ok(RdmaLimit {
            device: device.to_owned(),
            hca_handle: value(handle)?,
            hca_object: value(object)?,
        })
    }
}

impl FromStr for RdmaUsage {
    type Err = Error;

    fn from_str(s: &str) -> Result<RdmaUsage> {
        let invalid = |reason: &str| Error::invalid("rdma.current line", s, reason);
        let (device, handle, object) = split_line(s).map_err(invalid)?;
        let value = |v| parse_count(v).ok_or_else(|| invalid("usage is a count"));
        Ok(RdmaUsage {
            device: device.to_owned(),
            hca_handle: value(handle)?,
            hca_object: value(object)?,
        })
    }
}

impl RdmaLimit {
    /// No limit on `device`.
    ///
    /// ```
    /// let l = qube_cgroup::RdmaLimit::unlimited("mlx5_0");
    /// assert_eq!(l.to_string(), "mlx5_0 hca_handle=max hca_object=max");
    /// ```
    pub fn unlimited(device: &str) -> RdmaLimit {
        RdmaLimit {
            device: device.to_owned(),
            hca_handle: Max::Max,
            hca_object: Max::Max,
        }
    }

    /// Checks what the kernel would refuse or silently change: a device name that is not
    /// one word, or a count it cannot hold (it keeps `int`s and reads `INT_MAX` as `max`).
    fn validate(&self) -> Result<()> {
        let bad_name = self.device.is_empty()
            || self
                .device
                .chars()
                .any(|c| c.is_whitespace() || c == '=' || c.is_control());
        if bad_name {
            return Err(Error::invalid(
                "RDMA device name",
                &self.device,
                "must be one word without `=`",
            ));
        }
        for limit in [self.hca_handle, self.hca_object] {
            if limit.limit().is_some_and(|n| n > RDMA_LIMIT_CAP) {
                return Err(Error::invalid(
                    "rdma limit",
                    &limit.to_string(),
                    format!("at most {RDMA_LIMIT_CAP}, or max"),
                ));
            }
        }
        Ok(())
    }
}

/// The rdma controller of one cgroup, from [`Cgroup::rdma`].
///
/// ```no_run
/// use qube_cgroup::{Cgroup, Max, RdmaLimit};
/// let cg = Cgroup::root()?.create("hpc")?;
/// cg.rdma().set_max(&RdmaLimit { device: "mlx4_0".into(), hca_handle: Max::Limit(2), hca_object: Max::Limit(2000) })?;
/// for used in cg.rdma().current()? {
///     println!("{used}");
/// }
/// # Ok::<(), qube_cgroup::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Rdma<'a> {
    cg: &'a Cgroup,
}

impl Cgroup {
    /// The rdma controller's files.
    ///
    /// ```no_run
    /// let limits = qube_cgroup::Cgroup::root()?.create("r")?.rdma().max()?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn rdma(&self) -> Rdma<'_> {
        Rdma { cg: self }
    }
}

impl Rdma<'_> {
    /// The limits of every RDMA device the kernel knows (`rdma.max`); empty without RDMA hardware.
    ///
    /// ```no_run
    /// for limit in qube_cgroup::Cgroup::root()?.create("r")?.rdma().max()? {
    ///     println!("{limit}");
    /// }
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn max(&self) -> Result<Vec<RdmaLimit>> {
        self.read_lines("rdma.max")
    }

    /// What the group uses of each device (`rdma.current`).
    ///
    /// ```no_run
    /// let used = qube_cgroup::Cgroup::root()?.create("r")?.rdma().current()?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn current(&self) -> Result<Vec<RdmaUsage>> {
        self.read_lines("rdma.current")
    }

    /// Sets the limits of one device. A device the kernel does not list in `rdma.max`,
    /// a malformed name or a count over `i32::MAX - 1` is an [`Error::InvalidValue`], and
    /// nothing is written.
    ///
    /// ```no_run
    /// use qube_cgroup::{Cgroup, RdmaLimit};
    /// let cg = Cgroup::root()?.create("r")?;
    /// cg.rdma().set_max(&RdmaLimit::unlimited("mlx4_0"))?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn set_max(&self, limit: &RdmaLimit) -> Result<()> {
        limit.validate()?;
        let devices: Vec<String> = self.max()?.into_iter().map(|l| l.device).collect();
        if !devices.contains(&limit.device) {
            return Err(Error::invalid(
                "RDMA device",
                &limit.device,
                format!(
                    "the kernel has no such RDMA device (rdma.max lists: {})",
                    list_or_none(&devices)
                ),
            ));
        }
        self.cg.dir.write_value("rdma.max", limit)
    }

    fn read_lines<T: FromStr<Err = Error>>(&self, file: &str) -> Result<Vec<T>> {
        let text = self.cg.dir.read(file)?;
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|line| {
                line.parse()
                    .map_err(|e: Error| self.cg.dir.parse_error(file, line, reason_of(e)))
            })
            .collect()
    }
}

/// The reason part of a parse error, for re-wrapping it with the file's path.
pub(crate) fn reason_of(err: Error) -> String {
    match err {
        Error::InvalidValue { reason, .. } => reason,
        other => other.to_string(),
    }
}

pub(crate) fn list_or_none(names: &[String]) -> String {
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limit() -> impl Strategy<Value = Max<u64>> {
        proptest::option::of(0..=RDMA_LIMIT_CAP).prop_map(|v| v.map_or(Max::Max, Max::Limit))
    }

    #[test]
    fn kernel_example_lines() {
        let l: RdmaLimit = "ocrdma1 hca_handle=3 hca_object=max ".parse().unwrap();
        assert_eq!(l.hca_handle, Max::Limit(3));
        assert!("mlx4_0 hca_handle=2".parse::<RdmaLimit>().is_err());
        assert!("mlx4_0 hca_handle=x hca_object=1"
            .parse::<RdmaLimit>()
            .is_err());
        assert!("mlx4_0 hca_handle=max hca_object=1"
            .parse::<RdmaUsage>()
            .is_err());
    }

    #[test]
    fn validation_refuses_what_the_kernel_would_mangle() {
        let mut l = RdmaLimit::unlimited("mlx4_0");
        assert!(l.validate().is_ok());
        l.hca_object = Max::Limit(i32::MAX as u64);
        assert!(l.validate().is_err());
        for bad in ["", "a b", "a=b", "a\nb"] {
            assert!(RdmaLimit::unlimited(bad).validate().is_err(), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn limit_line_round_trips(device in "[a-z][a-z0-9_]{0,15}", h in limit(), o in limit()) {
            let l = RdmaLimit { device, hca_handle: h, hca_object: o };
            let kernel_line = format!("{l} ");
            prop_assert_eq!(kernel_line.parse::<RdmaLimit>().unwrap(), l.clone());
            prop_assert_eq!(l.to_string().parse::<RdmaLimit>().unwrap(), l);
        }

        #[test]
        fn usage_line_round_trips(device in "[a-z][a-z0-9_]{0,15}", h: u64, o: u64) {
            let u = RdmaUsage { device, hca_handle: h, hca_object: o };
            prop_assert_eq!(format!("{u} ").parse::<RdmaUsage>().unwrap(), u.clone());
            prop_assert_eq!(u.to_string().parse::<RdmaUsage>().unwrap(), u);
        }

        #[test]
        fn parsers_never_panic(s in "\\PC{0,64}") {
            let _ = s.parse::<RdmaLimit>();
            let _ = s.parse::<RdmaUsage>();
        }
    }
}
