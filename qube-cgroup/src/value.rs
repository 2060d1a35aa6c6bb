//! Value types shared by the controllers: byte sizes, `max`-or-a-limit, weights.
//!
//! Each type's `Display` writes exactly what the kernel writes in its interface files, and
//! its `FromStr` reads that back (and the friendlier `2G`/`512M` forms), so that
//! `x.to_string().parse() == Ok(x)` for every value.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// A size in bytes.
///
/// Parses plain numbers (what the kernel writes) and binary suffixes `K`, `M`, `G`, `T`,
/// `P` (also `KiB`, `MB`, ..., case-insensitive, all powers of 1024); displays as a plain
/// number. [`Bytes::human`] gives the short form.
///
/// ```
/// use qube_cgroup::Bytes;
/// let two_gib: Bytes = "2G".parse().unwrap();
/// assert_eq!(two_gib, Bytes::gib(2));
/// assert_eq!(two_gib.to_string(), "2147483648");
/// assert_eq!(two_gib.human(), "2G");
/// assert!("2gb?".parse::<Bytes>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Bytes(pub u64);

const UNITS: [(char, u32); 5] = [('K', 10), ('M', 20), ('G', 30), ('T', 40), ('P', 50)];

impl Bytes {
    /// `n` KiB.
    ///
    /// ```
    /// assert_eq!(qube_cgroup::Bytes::kib(4).0, 4096);
    /// ```
    pub const fn kib(n: u64) -> Bytes {
        Bytes(n << 10)
    }

    /// `n` MiB.
    ///
    /// ```
    /// assert_eq!(qube_cgroup::Bytes::mib(1).0, 1 << 20);
    /// ```
    pub const fn mib(n: u64) -> Bytes {
        Bytes(n << 20)
    }

    /// `n` GiB.
    ///
    /// ```
    /// assert_eq!(qube_cgroup::Bytes::gib(2).0, 2147483648);
    /// ```
    pub const fn gib(n: u64) -> Bytes {
        Bytes(n << 30)
    }

    /// The size in MiB, for display.
    ///
    /// ```
    /// assert_eq!(qube_cgroup::Bytes::gib(2).as_mib(), 2048.0);
    /// ```
    pub fn as_mib(self) -> f64 {
        self.0 as f64 / (1u64 << 20) as f64
    }

    /// The shortest exact form with a binary suffix (`2G`, `1536M`, `100`).
    ///
    /// ```
    /// assert_eq!(qube_cgroup::Bytes::mib(1536).human(), "1536M");
    /// ```
    pub fn human(self) -> String {
        for &(unit, shift) in UNITS.iter().rev() {
            if self.0 != 0 && self.0 % (1u64 << shift) == 0 {
                return format!("{}{unit}", self.0 >> shift);
            }
        }
        self.0.to_string()
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for Bytes {
    type Err = Error;

    fn from_str(s: &str) -> Result<Bytes> {
        let invalid = |reason: &str| Error::invalid("byte size", s, reason);
        let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, suffix) = s.split_at(digits_end);
        if digits.is_empty() {
            return Err(invalid(
                "expected a number of bytes such as 1048576, 512M or 2G",
            ));
        }
        let number: u64 = digits.parse().map_err(|_| invalid("too large"))?;
        let shift = suffix_shift(suffix)
            .ok_or_else(|| invalid("unknown unit; use K, M, G, T or P (powers of 1024)"))?;
        number
            .checked_mul(1u64 << shift)
            .map(Bytes)
            .ok_or_else(|| invalid("too large"))
    }
}

fn suffix_shift(suffix: &str) -> Option<u32> {
    let mut chars = suffix.chars();
    let Some(first) = chars.next() else {
        return Some(0);
    };
    if suffix.eq_ignore_ascii_case("b") {
        return Some(0);
    }
    let shift = UNITS
        .iter()
        .find(|(unit, _)| unit.eq_ignore_ascii_case(&first))
        .map(|&(_, shift)| shift)?;
    match chars.as_str() {
        "" | "b" | "B" | "ib" | "iB" | "IB" | "Ib" => Some(shift),
        _ => None,
    }
}

/// A limit that is either `max` (none) or a value.
///
/// ```
/// use qube_cgroup::{Bytes, Max};
/// let limit: Max<Bytes> = "512M".parse().unwrap();
/// assert_eq!(limit, Max::Limit(Bytes::mib(512)));
/// assert_eq!("max".parse::<Max<Bytes>>().unwrap(), Max::Max);
/// assert_eq!(Max::<Bytes>::Max.to_string(), "max");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Max<T> {
    /// No limit.
    #[default]
    Max,
    /// A limit.
    Limit(T),
}

impl<T> Max<T> {
    /// The limit, or `None` for `max`.
    ///
    /// ```
    /// assert_eq!(qube_cgroup::Max::Limit(3u64).limit(), Some(3));
    /// ```
    pub fn limit(self) -> Option<T> {
        match self {
            Max::Max => None,
            Max::Limit(v) => Some(v),
        }
    }
}

impl<T> From<T> for Max<T> {
    fn from(value: T) -> Max<T> {
        Max::Limit(value)
    }
}

impl<T: fmt::Display> fmt::Display for Max<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Max::Max => f.write_str("max"),
            Max::Limit(v) => v.fmt(f),
        }
    }
}

impl<T> FromStr for Max<T>
where
    T: FromStr,
    T::Err: fmt::Display + 'static,
{
    type Err = Error;

    /// `max`, or whatever `T` parses (`Max<Bytes>`, `Max<u64>`, ...).
    fn from_str(s: &str) -> Result<Max<T>> {
        if s == "max" {
            return Ok(Max::Max);
        }
        s.parse().map(Max::Limit).map_err(|e| into_error(e, s))
    }
}

/// Keeps this crate's own errors as they are and words any other parse error as a limit.
fn into_error<E: fmt::Display + 'static>(err: E, text: &str) -> Error {
    let reason = err.to_string();
    match (Box::new(err) as Box<dyn std::any::Any>).downcast::<Error>() {
        Ok(ours) => *ours,
        Err(_) => Error::invalid(
            "limit",
            text,
            format!("expected `max` or a value: {reason}"),
        ),
    }
}

/// A relative weight for `cpu.weight` and `io.weight`, from 1 to 10000 (default 100).
///
/// ```
/// use qube_cgroup::Weight;
/// assert_eq!("100".parse::<Weight>().unwrap(), Weight::DEFAULT);
/// assert!("0".parse::<Weight>().is_err());
/// assert!(Weight::new(10001).is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Weight(u16);

impl Weight {
    /// The kernel's default weight.
    ///
    /// ```
    /// assert_eq!(qube_cgroup::Weight::DEFAULT.to_string(), "100");
    /// ```
    pub const DEFAULT: Weight = Weight(100);

    /// A weight, checked to lie in 1..=10000.
    ///
    /// ```
    /// assert_eq!(qube_cgroup::Weight::new(200).unwrap().get(), 200);
    /// ```
    pub fn new(weight: u16) -> Result<Weight> {
        if (1..=10000).contains(&weight) {
            Ok(Weight(weight))
        } else {
            Err(Error::invalid(
                "weight",
                &weight.to_string(),
                "must lie in 1..=10000",
            ))
        }
    }

    /// The weight as a number.
    ///
    /// ```
    /// assert_eq!(qube_cgroup::Weight::DEFAULT.get(), 100);
    /// ```
    pub fn get(self) -> u16 {
        self.0
    }
}

impl Default for Weight {
    fn default() -> Weight {
        Weight::DEFAULT
    }
}

impl fmt::Display for Weight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Weight {
    type Err = Error;

    fn from_str(s: &str) -> Result<Weight> {
        let n: u16 = s
            .parse()
            .map_err(|_| Error::invalid("weight", s, "expected a whole number in 1..=10000"))?;
        Weight::new(n)
    }
}

/// A plain counter or amount as the kernel writes it (`pids.current`, `memory.events` fields, ...).
pub(crate) fn parse_u64(what: &'static str, s: &str) -> Result<u64> {
    s.parse()
        .map_err(|_| Error::invalid(what, s, "expected a non-negative whole number"))
}

/// A number newtype that parses with this crate's error type.
///
/// ```
/// use qube_cgroup::Count;
/// assert_eq!("42".parse::<Count>().unwrap(), Count(42));
/// assert_eq!(Count(7).to_string(), "7");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Count(pub u64);

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Count {
    type Err = Error;

    fn from_str(s: &str) -> Result<Count> {
        parse_u64("count", s).map(Count)
    }
}

/// A boolean interface file (`memory.oom.group`, `cgroup.freeze`, `cpu.idle`) as `0`/`1`.
///
/// ```
/// use qube_cgroup::Flag;
/// assert_eq!("1".parse::<Flag>().unwrap(), Flag(true));
/// assert_eq!(Flag(false).to_string(), "0");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flag(pub bool);

impl fmt::Display for Flag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0 { "1" } else { "0" })
    }
}

impl FromStr for Flag {
    type Err = Error;

    fn from_str(s: &str) -> Result<Flag> {
        match s {
            "0" => Ok(Flag(false)),
            "1" => Ok(Flag(true)),
            _ => Err(Error::invalid("flag", s, "expected 0 or 1")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn suffixes_are_powers_of_1024() {
        assert_eq!("4k".parse::<Bytes>().unwrap(), Bytes(4096));
        assert_eq!("1GiB".parse::<Bytes>().unwrap(), Bytes::gib(1));
        assert_eq!("3MB".parse::<Bytes>().unwrap(), Bytes::mib(3));
        assert_eq!("17".parse::<Bytes>().unwrap(), Bytes(17));
    }

    #[test]
    fn limits_of_any_number_type_parse_with_a_typed_error() {
        assert_eq!("max".parse::<Max<u64>>().unwrap(), Max::Max);
        assert_eq!("256".parse::<Max<u64>>().unwrap(), Max::Limit(256));
        let err = "lots".parse::<Max<u64>>().unwrap_err();
        assert!(
            matches!(err, Error::InvalidValue { what: "limit", .. }),
            "{err}"
        );
        let err = "2gb?".parse::<Max<Bytes>>().unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidValue {
                    what: "byte size",
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn malformed_sizes_are_rejected() {
        for bad in [
            "",
            "G",
            "2gb?",
            "-1",
            "1.5G",
            "2 G",
            "99999999999999999999",
            "16384P",
            "2X",
        ] {
            assert!(bad.parse::<Bytes>().is_err(), "{bad:?} should not parse");
        }
    }

    proptest! {
        #[test]
        fn bytes_round_trip(n: u64) {
            prop_assert_eq!(Bytes(n).to_string().parse::<Bytes>().unwrap(), Bytes(n));
            prop_assert_eq!(Bytes(n).human().parse::<Bytes>().unwrap(), Bytes(n));
        }

        #[test]
        fn max_bytes_round_trip(n in proptest::option::of(any::<u64>())) {
            let v = n.map_or(Max::Max, |n| Max::Limit(Bytes(n)));
            prop_assert_eq!(v.to_string().parse::<Max<Bytes>>().unwrap(), v);
        }

        #[test]
        fn max_u64_round_trip(n in proptest::option::of(any::<u64>())) {
            let v = n.map_or(Max::Max, Max::Limit);
            prop_assert_eq!(v.to_string().parse::<Max<u64>>().unwrap(), v);
        }

        #[test]
        fn weight_round_trip(n in 1u16..=10000) {
            let w = Weight::new(n).unwrap();
            prop_assert_eq!(w.to_string().parse::<Weight>().unwrap(), w);
        }

        #[test]
        fn parsing_never_panics(s in ".{0,24}") {
            let _ = s.parse::<Bytes>();
            let _ = s.parse::<Max<Bytes>>();
            let _ = s.parse::<Weight>();
        }
    }
}
