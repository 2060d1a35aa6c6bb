//! The io controller: per-device limits (`io.max`), weights (`io.weight`) and `io.stat`.
//!
//! cgroup-v2.rst: io.max is "a nested keyed file" of lines like
//! `8:16 rbps=2097152 wbps=max riops=max wiops=120`; "When writing, any number of nested
//! key-value pairs can be specified in any order. 'max' can be specified as the value to
//! remove a specific limit."

use std::fmt;
use std::io;
use std::path::Path;
use std::str::FromStr;

use crate::cgroup::Cgroup;
use crate::error::{Error, Op, Result};
use crate::keyed::nested_keyed;
use crate::value::{Max, Weight};

/// The kernel keeps 12 bits of a major number and 20 of a minor (`MINORBITS`).
const MAJOR_LIMIT: u32 = 1 << 12;
const MINOR_LIMIT: u32 = 1 << 20;

/// A block device as the io files name it, `MAJOR:MINOR`.
///
/// ```
/// use qube_cgroup::Device;
/// let sda: Device = "8:0".parse().unwrap();
/// assert_eq!(sda, Device::new(8, 0));
/// assert_eq!(sda.to_string(), "8:0");
/// assert!("8".parse::<Device>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Device {
    /// The major number (the driver).
    pub major: u32,
    /// The minor number (the device of that driver).
    pub minor: u32,
}

impl Device {
    /// The device `major:minor`.
    ///
    /// ```
    /// assert_eq!(qube_cgroup::Device::new(259, 1).to_string(), "259:1");
    /// ```
    pub const fn new(major: u32, minor: u32) -> Device {
        Device { major, minor }
    }

    /// The device of a block special file such as `/dev/sda` (whole disks only: the
    /// kernel refuses limits on partitions).
    ///
    /// ```no_run
    /// let disk = qube_cgroup::Device::of_path("/dev/vda")?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn of_path(path: impl AsRef<Path>) -> Result<Device> {
        let path = path.as_ref();
        let st = nix::sys::stat::stat(path).map_err(|e| Error::Io {
            op: Op::Open,
            path: path.to_owned(),
            value: None,
            source: io::Error::from(e),
        })?;
        let kind =
            nix::sys::stat::SFlag::from_bits_truncate(st.st_mode) & nix::sys::stat::SFlag::S_IFMT;
        if kind != nix::sys::stat::SFlag::S_IFBLK {
            let shown = path.display().to_string();
            return Err(Error::invalid(
                "block device",
                &shown,
                "not a block special file",
            ));
        }
        let number = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        Ok(Device::new(
            number(nix::sys::stat::major(st.st_rdev)),
            number(nix::sys::stat::minor(st.st_rdev)),
        ))
    }

    /// Checks that the numbers fit the kernel's `dev_t` (12-bit major, 20-bit minor).
    ///
    /// ```
    /// use qube_cgroup::Device;
    /// assert!(Device::new(8, 0).validate().is_ok());
    /// assert!(Device::new(4096, 0).validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        if self.major < MAJOR_LIMIT && self.minor < MINOR_LIMIT {
            return Ok(());
        }
        Err(Error::invalid(
            "block device",
            &self.to_string(),
            format!("the major must be below {MAJOR_LIMIT} and the minor below {MINOR_LIMIT}"),
        ))
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

impl FromStr for Device {
    type Err = Error;

    fn from_str(s: &str) -> Result<Device> {
        let invalid = || Error::invalid("block device", s, "expected MAJOR:MINOR such as 8:0");
        let (major, minor) = s.split_once(':').ok_or_else(invalid)?;
        let number = |n: &str| {
            // u32's parser takes a leading `+`, which the kernel never writes.
            if n.starts_with('+') {
                return Err(invalid());
            }
            n.parse::<u32>().map_err(|_| invalid())
        };
        Ok(Device::new(number(major)?, number(minor)?))
    }
}

/// The limits of one device in `io.max`: bytes and I/O operations per second, read and
/// write. `None` leaves a limit as it is when written; `Some(Max::Max)` removes it.
///
/// `Display` writes the line the kernel takes (and, with all four set, the line it
/// writes); `FromStr` parses a line of `io.max`.
///
/// ```
/// use qube_cgroup::{Device, IoMax, Max};
/// let line = "8:16 rbps=2097152 wbps=max riops=max wiops=120";
/// let limit: IoMax = line.parse().unwrap();
/// assert_eq!(limit.rbps, Some(Max::Limit(2097152)));
/// assert_eq!(limit.to_string(), line);
///
/// let cap = IoMax { wbps: Some(Max::Limit(10 << 20)), ..IoMax::new(Device::new(8, 0)) };
/// assert_eq!(cap.to_string(), "8:0 wbps=10485760");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IoMax {
    /// The device limited.
    pub device: Device,
    /// Read bytes per second.
    pub rbps: Option<Max<u64>>,
    /// Written bytes per second.
    pub wbps: Option<Max<u64>>,
    /// Read operations per second.
    pub riops: Option<Max<u64>>,
    /// Write operations per second.
    pub wiops: Option<Max<u64>>,
}

/// The smallest rate every kernel accepts: 0 is ERANGE, and before Linux 6.11 1 is EINVAL.
const MIN_RATE: u64 = 2;

impl IoMax {
    /// No change to any limit of `device`.
    ///
    /// ```
    /// assert_eq!(qube_cgroup::IoMax::new(qube_cgroup::Device::new(8, 0)).to_string(), "8:0");
    /// ```
    pub const fn new(device: Device) -> IoMax {
        IoMax {
            device,
            rbps: None,
            wbps: None,
            riops: None,
            wiops: None,
        }
    }

    /// Every limit of `device` removed; writing it deletes the device's line.
    ///
    /// ```
    /// use qube_cgroup::{Device, IoMax};
    /// let line = IoMax::unlimited(Device::new(8, 0)).to_string();
    /// assert_eq!(line, "8:0 rbps=max wbps=max riops=max wiops=max");
    /// ```
    pub const fn unlimited(device: Device) -> IoMax {
        IoMax {
            device,
            rbps: Some(Max::Max),
            wbps: Some(Max::Max),
            riops: Some(Max::Max),
            wiops: Some(Max::Max),
        }
    }

    /// The limits by their keys, in the kernel's order.
    fn keyed(&self) -> [(&'static str, Option<Max<u64>>); 4] {
        [
            ("rbps", self.rbps),
            ("wbps", self.wbps),
            ("riops", self.riops),
            ("wiops", self.wiops),
        ]
    }

    fn slot(&mut self, key: &str) -> Option<&mut Option<Max<u64>>> {
        match key {
            "rbps" => Some(&mut self.rbps),
            "wbps" => Some(&mut self.wbps),
            "riops" => Some(&mut self.riops),
            "wiops" => Some(&mut self.wiops),
            _ => None,
        }
    }

    /// Checks what the kernel would refuse or silently change: the device numbers, rates
    /// of 0 or 1, and the largest values, which the kernel reads back as `max` (bytes
    /// at `u64::MAX`, operations from `u32::MAX` up).
    ///
    /// ```
    /// use qube_cgroup::{Device, IoMax, Max};
    /// let zero = IoMax { rbps: Some(Max::Limit(0)), ..IoMax::new(Device::new(8, 0)) };
    /// assert!(zero.validate().is_err());
    /// assert!(IoMax::unlimited(Device::new(8, 0)).validate().is_ok());
    /// ```
    pub fn validate(&self) -> Result<()> {
        self.device.validate()?;
        for (key, value) in self.keyed() {
            let Some(Max::Limit(n)) = value else { continue };
            let top = if key.ends_with("iops") {
                u64::from(u32::MAX)
            } else {
                u64::MAX
            };
            if n < MIN_RATE || n >= top {
                return Err(Error::invalid(
                    "io.max",
                    &self.to_string(),
                    format!("{key} must lie in {MIN_RATE}..{top}; use max for no limit"),
                ));
            }
        }
        Ok(())
    }
}

impl fmt::Display for IoMax {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.device)?;
        for (key, value) in self.keyed() {
            if let Some(value) = value {
                write!(f, " {key}={value}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for IoMax {
    type Err = Error;

    fn from_str(s: &str) -> Result<IoMax> {
        let invalid = |reason: &str| Error::invalid("io.max line", s, reason);
        let (device, pairs) = nested_keyed(s).ok_or_else(|| invalid("empty"))?;
        let mut limit = IoMax::new(device.parse()?);
        for pair in pairs {
            let (key, value) = pair.ok_or_else(|| invalid("expected KEY=VALUE pairs"))?;
            let slot = limit
                .slot(key)
                .ok_or_else(|| invalid("keys are rbps, wbps, riops and wiops"))?;
            if slot.is_some() {
                return Err(invalid("a key appears twice"));
            }
            *slot = Some(parse_rate(value).ok_or_else(|| invalid("values are numbers or max"))?);
        }
        Ok(limit)
    }
}

fn parse_rate(value: &str) -> Option<Max<u64>> {
    match value {
        "max" => Some(Max::Max),
        n if n.starts_with('+') => None,
        n => n.parse().ok().map(Max::Limit),
    }
}

/// `io.weight`: the default weight of the group's I/O, and per-device overrides.
///
/// ```
/// use qube_cgroup::{Device, IoWeight, Weight};
/// let w: IoWeight = "default 100\n8:0 200\n".parse().unwrap();
/// assert_eq!(w.default, Weight::DEFAULT);
/// assert_eq!(w.device(Device::new(8, 0)), Some(Weight::new(200).unwrap()));
/// assert_eq!(w.to_string(), "default 100\n8:0 200\n");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoWeight {
    /// The weight for every device without its own line.
    pub default: Weight,
    /// Per-device weights, in the kernel's order.
    pub devices: Vec<(Device, Weight)>,
}

impl IoWeight {
    /// The weight that applies to `device`.
    ///
    /// ```
    /// use qube_cgroup::{Device, IoWeight, Weight};
    /// assert_eq!(IoWeight::default().weight_of(Device::new(8, 0)), Weight::DEFAULT);
    /// ```
    pub fn weight_of(&self, device: Device) -> Weight {
        self.device(device).unwrap_or(self.default)
    }

    /// The device's own weight, if it has one.
    ///
    /// ```
    /// use qube_cgroup::{Device, IoWeight};
    /// assert_eq!(IoWeight::default().device(Device::new(8, 0)), None);
    /// ```
    pub fn device(&self, device: Device) -> Option<Weight> {
        self.devices
            .iter()
            .find(|(d, _)| *d == device)
            .map(|&(_, w)| w)
    }
}

impl fmt::Display for IoWeight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "default {}", self.default)?;
        for (device, weight) in &self.devices {
            writeln!(f, "{device} {weight}")?;
        }
        Ok(())
    }
}

impl FromStr for IoWeight {
    type Err = Error;

    fn from_str(s: &str) -> Result<IoWeight> {
        let mut weights = IoWeight::default();
        for line in s.lines().filter(|l| !l.is_empty()) {
            let invalid = || {
                Error::invalid(
                    "io.weight line",
                    line,
                    "expected `default N` or `MAJOR:MINOR N`",
                )
            };
            let (key, weight) = line.split_once(' ').ok_or_else(invalid)?;
            let weight: Weight = weight.parse()?;
            match key {
                "default" => weights.default = weight,
                device => weights.devices.push((device.parse()?, weight)),
            }
        }
        Ok(weights)
    }
}

/// One device's line of `io.stat`: bytes and operations read, written and discarded.
///
/// ```
/// let stat = qube_cgroup::IoStat::parse("8:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n").unwrap();
/// assert_eq!(stat.devices()[0].rbytes, 4096);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceIoStat {
    /// The device.
    pub device: Device,
    /// Bytes read.
    pub rbytes: u64,
    /// Bytes written.
    pub wbytes: u64,
    /// Read operations.
    pub rios: u64,
    /// Write operations.
    pub wios: u64,
    /// Bytes discarded.
    pub dbytes: u64,
    /// Discard operations.
    pub dios: u64,
}

impl DeviceIoStat {
    fn new(device: Device) -> DeviceIoStat {
        DeviceIoStat {
            device,
            rbytes: 0,
            wbytes: 0,
            rios: 0,
            wios: 0,
            dbytes: 0,
            dios: 0,
        }
    }

    fn slot(&mut self, key: &str) -> Option<&mut u64> {
        Some(match key {
            "rbytes" => &mut self.rbytes,
            "wbytes" => &mut self.wbytes,
            "rios" => &mut self.rios,
            "wios" => &mut self.wios,
            "dbytes" => &mut self.dbytes,
            "dios" => &mut self.dios,
            _ => return None,
        })
    }
}

/// `io.stat`: a [`DeviceIoStat`] per device; [`get`](IoStat::get) reaches the other keys
/// (`cost.vrate`, `cost.usage`, ... with iocost) and `Display` gives back the kernel's text.
///
/// ```
/// use qube_cgroup::{Device, IoStat};
/// let text = "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0 cost.vrate=100.00\n";
/// let stat = IoStat::parse(text).unwrap();
/// assert_eq!(stat.device(Device::new(8, 0)).unwrap().wios, 4);
/// assert_eq!(stat.get(Device::new(8, 0), "cost.vrate"), Some("100.00"));
/// assert_eq!(stat.to_string(), text);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoStat {
    devices: Vec<DeviceIoStat>,
    text: String,
}

impl IoStat {
    /// The interface file these figures come from.
    ///
    /// ```
    /// assert_eq!(qube_cgroup::IoStat::FILE, "io.stat");
    /// ```
    pub const FILE: &'static str = "io.stat";

    /// Parses the file's text. The six counters must be numbers; other keys may hold
    /// anything, and are kept only in the text.
    ///
    /// ```
    /// assert!(qube_cgroup::IoStat::parse("8:0 rbytes=x\n").is_err());
    /// ```
    pub fn parse(text: impl Into<String>) -> Result<IoStat> {
        let text = text.into();
        let devices = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(parse_stat_line)
            .collect::<Result<Vec<_>>>()?;
        Ok(IoStat { devices, text })
    }

    /// Every device's counters, in the kernel's order.
    ///
    /// ```
    /// assert!(qube_cgroup::IoStat::default().devices().is_empty());
    /// ```
    pub fn devices(&self) -> &[DeviceIoStat] {
        &self.devices
    }

    /// One device's counters.
    ///
    /// ```
    /// use qube_cgroup::{Device, IoStat};
    /// assert!(IoStat::default().device(Device::new(8, 0)).is_none());
    /// ```
    pub fn device(&self, device: Device) -> Option<&DeviceIoStat> {
        self.devices.iter().find(|d| d.device == device)
    }

    /// Any key of one device's line, as the kernel wrote its value.
    ///
    /// ```
    /// use qube_cgroup::{Device, IoStat};
    /// let stat = IoStat::parse("7:0  cost.usage=12\n").unwrap();
    /// assert_eq!(stat.get(Device::new(7, 0), "cost.usage"), Some("12"));
    /// ```
    pub fn get(&self, device: Device, key: &str) -> Option<&str> {
        self.text
            .lines()
            .filter_map(nested_keyed)
            .find(|(d, _)| d.parse::<Device>().ok() == Some(device))
            .and_then(|(_, mut pairs)| pairs.find_map(|p| p.filter(|(k, _)| *k == key)))
            .map(|(_, value)| value)
    }
}

fn parse_stat_line(line: &str) -> Result<DeviceIoStat> {
    let invalid = |reason: &str| Error::Parse {
        path: IoStat::FILE.into(),
        line: line.to_owned(),
        reason: reason.to_owned(),
    };
    let (device, pairs) = nested_keyed(line).ok_or_else(|| invalid("empty line"))?;
    let device = device
        .parse()
        .map_err(|_| invalid("expected MAJOR:MINOR first"))?;
    let mut stat = DeviceIoStat::new(device);
    for pair in pairs {
        let (key, value) = pair.ok_or_else(|| invalid("expected KEY=VALUE pairs"))?;
        if let Some(slot) = stat.slot(key) {
            *slot = value
                .parse()
                .map_err(|_| invalid("a counter is not a number"))?;
        }
    }
    Ok(stat)
}

impl fmt::Display for IoStat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for IoStat {
    type Err = Error;

    fn from_str(s: &str) -> Result<IoStat> {
        IoStat::parse(s)
    }
}

/// The io controller of one cgroup, from [`Cgroup::io`].
///
/// ```no_run
/// use qube_cgroup::{Cgroup, Device, IoMax, Max, Weight};
/// let cg = Cgroup::root()?.create("io-demo")?;
/// let disk = Device::of_path("/dev/vda")?;
/// cg.io().set_max(&IoMax { wbps: Some(Max::Limit(10 << 20)), ..IoMax::new(disk) })?;
/// cg.io().set_weight(Weight::new(50)?)?;
/// # Ok::<(), qube_cgroup::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Io<'a> {
    cg: &'a Cgroup,
}

impl Cgroup {
    /// The io controller's files.
    ///
    /// ```no_run
    /// let stat = qube_cgroup::Cgroup::open_self()?.io().stat()?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn io(&self) -> Io<'_> {
        Io { cg: self }
    }
}

impl Io<'_> {
    /// The limits of every limited device (`io.max`); a device without a line has none.
    ///
    /// ```no_run
    /// for limit in qube_cgroup::Cgroup::open_self()?.io().max()? {
    ///     println!("{limit}");
    /// }
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn max(&self) -> Result<Vec<IoMax>> {
        const FILE: &str = "io.max";
        let text = self.cg.dir.read(FILE)?;
        text.lines()
            .filter(|l| !l.is_empty())
            .map(|line| {
                line.parse()
                    .map_err(|e: Error| self.cg.dir.parse_error(FILE, line, e.to_string()))
            })
            .collect()
    }

    /// Changes the limits of one device after [`IoMax::validate`]; the limits left `None`
    /// stay as they are. A device that does not exist, or a partition, is refused (ENODEV).
    ///
    /// ```no_run
    /// use qube_cgroup::{Device, IoMax, Max};
    /// let cg = qube_cgroup::Cgroup::root()?.create("slow-reads")?;
    /// cg.io().set_max(&IoMax { riops: Some(Max::Limit(100)), ..IoMax::new(Device::new(8, 0)) })?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn set_max(&self, limit: &IoMax) -> Result<()> {
        limit.validate()?;
        self.cg
            .dir
            .write_value("io.max", limit)
            .map_err(|e| explain_missing_device(limit.device, e))
    }

    /// The weights (`io.weight`).
    ///
    /// ```no_run
    /// let w = qube_cgroup::Cgroup::open_self()?.io().weight()?;
    /// println!("default {}", w.default);
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn weight(&self) -> Result<IoWeight> {
        const FILE: &str = "io.weight";
        let text = self.cg.dir.read(FILE)?;
        text.parse()
            .map_err(|e: Error| self.cg.dir.parse_error(FILE, &text, e.to_string()))
    }

    /// Sets the default weight, for every device without its own.
    ///
    /// ```no_run
    /// let cg = qube_cgroup::Cgroup::root()?.create("background")?;
    /// cg.io().set_weight(qube_cgroup::Weight::new(10)?)?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn set_weight(&self, weight: Weight) -> Result<()> {
        self.cg
            .dir
            .write_value("io.weight", &format_args!("default {weight}"))
    }

    /// Sets one device's weight, or with `None` returns it to the default. This needs the
    /// iocost controller enabled for the device (the root's `io.cost.qos`); without it the
    /// kernel answers EOPNOTSUPP, reported as an [`Error::Io`] that says so.
    ///
    /// ```no_run
    /// use qube_cgroup::{Device, Weight};
    /// let cg = qube_cgroup::Cgroup::root()?.create("fast-disk")?;
    /// cg.io().set_device_weight(Device::new(8, 0), Some(Weight::new(500)?))?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn set_device_weight(&self, device: Device, weight: Option<Weight>) -> Result<()> {
        device.validate()?;
        let line = match weight {
            Some(weight) => format!("{device} {weight}"),
            None => format!("{device} default"),
        };
        self.cg
            .dir
            .write_bytes("io.weight", line.as_bytes())
            .map_err(|e| explain_missing_device(device, explain_missing_iocost(e)))
    }

    /// Bytes and operations per device (`io.stat`).
    ///
    /// ```no_run
    /// for dev in qube_cgroup::Cgroup::open_self()?.io().stat()?.devices() {
    ///     println!("{}: read {} B", dev.device, dev.rbytes);
    /// }
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn stat(&self) -> Result<IoStat> {
        self.cg.dir.read_parsed(IoStat::FILE, IoStat::parse)
    }
}

/// ENODEV from a per-device write (while the cgroup lives) names a device that is not a whole disk.
pub(crate) fn explain_missing_device(device: Device, err: Error) -> Error {
    match err {
        Error::Io { ref source, .. } if source.raw_os_error() == Some(nix::libc::ENODEV) => {
            Error::invalid(
                "block device",
                &device.to_string(),
                "no such disk (the kernel answered ENODEV; partitions are refused too)",
            )
        }
        other => other,
    }
}

/// EOPNOTSUPP on a per-device `io.weight` means iocost is off for that device, not a
/// threaded subtree (the io files do not exist there at all).
fn explain_missing_iocost(err: Error) -> Error {
    match err {
        Error::Io {
            op,
            path,
            value,
            source,
        } if source.raw_os_error() == Some(nix::libc::EOPNOTSUPP) => Error::Io {
            op,
            path,
            value,
            source: io::Error::new(
                io::ErrorKind::Unsupported,
                "a per-device weight needs the iocost controller enabled for that device \
                 (`MAJOR:MINOR enable=1` in the root cgroup's io.cost.qos)",
            ),
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn device() -> impl Strategy<Value = Device> {
        (any::<u32>(), any::<u32>()).prop_map(|(a, b)| Device::new(a, b))
    }

    fn rate() -> impl Strategy<Value = Option<Max<u64>>> {
        proptest::option::of(
            proptest::option::of(any::<u64>()).prop_map(|n| n.map_or(Max::Max, Max::Limit)),
        )
    }

    fn io_max() -> impl Strategy<Value = IoMax> {
        (device(), rate(), rate(), rate(), rate()).prop_map(|(device, rbps, wbps, riops, wiops)| {
            IoMax {
                device,
                rbps,
                wbps,
                riops,
                wiops,
            }
        })
    }

    #[test]
    fn malformed_lines_are_rejected() {
        for bad in [
            "",
            "8",
            "8:",
            ":0",
            "+8:0",
            "8:0 rbps",
            "8:0 rbps=",
            "8:0 rbps=-1",
            "8:0 rbps=1 rbps=2",
            "8:0 idle=5",
            "8:0 rbps=1.5",
        ] {
            assert!(bad.parse::<IoMax>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn kernel_limits_on_rates() {
        let with = |riops| IoMax {
            riops: Some(Max::Limit(riops)),
            ..IoMax::new(Device::new(8, 0))
        };
        assert!(with(2).validate().is_ok());
        assert!(with(0).validate().is_err());
        assert!(with(1).validate().is_err());
        assert!(with(u64::from(u32::MAX) - 1).validate().is_ok());
        assert!(with(u64::from(u32::MAX)).validate().is_err());
        let bps = IoMax {
            wbps: Some(Max::Limit(u64::MAX)),
            ..IoMax::new(Device::new(8, 0))
        };
        assert!(bps.validate().is_err());
    }

    #[test]
    fn io_stat_of_iocost_lines() {
        let text = "1:0 rbytes=4096 wbytes=0 rios=1 wios=0 dbytes=0 dios=0 cost.vrate=100.00\n7:0  cost.usage=0\n";
        let stat = IoStat::parse(text).unwrap();
        assert_eq!(stat.devices().len(), 2);
        assert_eq!(stat.device(Device::new(7, 0)).unwrap().rbytes, 0);
        assert_eq!(stat.get(Device::new(1, 0), "rios"), Some("1"));
        assert_eq!(stat.get(Device::new(1, 0), "nope"), None);
        assert!(IoStat::parse("x rbytes=1\n").is_err());
        assert!(IoStat::parse("8:0 rbytes\n").is_err());
    }

    proptest! {
        #[test]
        fn device_round_trips(d in device()) {
            prop_assert_eq!(d.to_string().parse::<Device>().unwrap(), d);
        }

        #[test]
        fn io_max_round_trips(limit in io_max()) {
            prop_assert_eq!(limit.to_string().parse::<IoMax>().unwrap(), limit);
        }

        #[test]
        fn io_weight_round_trips(default in 1u16..=10000, devices in proptest::collection::vec((device(), 1u16..=10000), 0..5)) {
            let w = IoWeight {
                default: Weight::new(default).unwrap(),
                devices: devices.into_iter().map(|(d, w)| (d, Weight::new(w).unwrap())).collect(),
            };
            prop_assert_eq!(w.to_string().parse::<IoWeight>().unwrap(), w);
        }

        #[test]
        fn io_stat_round_trips_the_kernel_text(lines in proptest::collection::vec((device(), proptest::collection::vec(any::<u64>(), 6)), 0..6)) {
            let keys = ["rbytes", "wbytes", "rios", "wios", "dbytes", "dios"];
            let text: String = lines.iter().map(|(d, v)| {
                let pairs: Vec<String> = keys.iter().zip(v).map(|(k, v)| format!("{k}={v}")).collect();
                format!("{d} {}\n", pairs.join(" "))
            }).collect();
            let stat = IoStat::parse(text.clone()).unwrap();
            prop_assert_eq!(stat.to_string(), text.clone());
            prop_assert_eq!(stat.devices().len(), lines.len());
            for (parsed, (d, v)) in stat.devices().iter().zip(&lines) {
                prop_assert_eq!(parsed.device, *d);
                let counters = vec![parsed.rbytes, parsed.wbytes, parsed.rios, parsed.wios, parsed.dbytes, parsed.dios];
                prop_assert_eq!(&counters, v);
            }
        }

        #[test]
        fn parsers_never_panic(s in "\\PC{0,120}") {
            let _ = s.parse::<Device>();
            let _ = s.parse::<IoMax>();
            let _ = s.parse::<IoWeight>();
            let _ = IoStat::parse(s);
        }
    }
}
