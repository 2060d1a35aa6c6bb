//! The misc controller: scalar resources the kernel hands out by count, such as AMD SEV
//! address space IDs (`sev`, `sev_es`). The root's `misc.capacity` says how many of each
//! exist; a resource with no capacity is absent from every file.

use std::fmt;
use std::str::FromStr;

use crate::cgroup::Cgroup;
use crate::error::{Error, Result};
use crate::rdma::list_or_none;
use crate::value::Max;

/// `resource count` lines, kept in the kernel's order (shared by the count files).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
struct Counts(Vec<(String, u64)>);

impl Counts {
    fn parse(what: &'static str, text: &str) -> Result<Counts> {
        crate::keyed::flat_keyed(text)
            .map(|entry| {
                entry
                    .map(|(key, n)| (key.to_owned(), n))
                    .map_err(|line| Error::invalid(what, line, "expected `<key> <count>`"))
            })
            .collect::<Result<_>>()
            .map(Counts)
    }

    fn get(&self, key: &str) -> Option<u64> {
        self.iter().find(|(k, _)| *k == key).map(|(_, n)| n)
    }

    fn iter(&self) -> impl Iterator<Item = (&str, u64)> + '_ {
        self.0.iter().map(|(k, n)| (k.as_str(), *n))
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.iter()
            .try_for_each(|(key, n)| writeln!(f, "{key} {n}"))
    }
}

/// A count per misc resource (`misc.capacity`, `misc.current`): `sev 50`. `Display`
/// reproduces the file.
///
/// ```
/// let amounts: qube_cgroup::MiscAmounts = "sev 50\nsev_es 10\n".parse().unwrap();
/// assert_eq!(amounts.get("sev"), Some(50));
/// assert_eq!(amounts.to_string(), "sev 50\nsev_es 10\n");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MiscAmounts(Counts);

impl MiscAmounts {
    /// The count of one resource, if the kernel lists it.
    ///
    /// ```
    /// let amounts: qube_cgroup::MiscAmounts = "sev 1\n".parse().unwrap();
    /// assert_eq!(amounts.get("tdx"), None);
    /// ```
    pub fn get(&self, resource: &str) -> Option<u64> {
        self.0.get(resource)
    }

    /// Every `(resource, count)`, in the kernel's order.
    ///
    /// ```
    /// let amounts: qube_cgroup::MiscAmounts = "sev 1\nsev_es 2\n".parse().unwrap();
    /// assert_eq!(amounts.iter().map(|(_, n)| n).sum::<u64>(), 3);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> + '_ {
        self.0.iter()
    }
}

impl fmt::Display for MiscAmounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for MiscAmounts {
    type Err = Error;

    fn from_str(s: &str) -> Result<MiscAmounts> {
        Counts::parse("misc amount line", s).map(MiscAmounts)
    }
}

/// `misc.events` (and `misc.events.local`): per resource, how often its `misc.max`
/// refused a charge. The kernel keys them `<resource>.max`; `Display` reproduces the file.
///
/// ```
/// let ev: qube_cgroup::MiscEvents = "sev.max 3\nsev_es.max 0\n".parse().unwrap();
/// assert_eq!(ev.max_hits("sev"), Some(3));
/// assert_eq!(ev.to_string(), "sev.max 3\nsev_es.max 0\n");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MiscEvents(Counts);

impl MiscEvents {
    /// How often `misc.max` of `resource` was hit, if the kernel lists the resource.
    ///
    /// ```
    /// let ev: qube_cgroup::MiscEvents = "sev.max 1\n".parse().unwrap();
    /// assert_eq!(ev.max_hits("tdx"), None);
    /// ```
    pub fn max_hits(&self, resource: &str) -> Option<u64> {
        self.iter()
            .find(|(key, _)| key.strip_suffix(".max") == Some(resource))
            .map(|(_, n)| n)
    }

    /// Every `(key, count)` as the kernel writes them (`sev.max 3`).
    ///
    /// ```
    /// let ev: qube_cgroup::MiscEvents = "sev.max 1\n".parse().unwrap();
    /// assert_eq!(ev.iter().next(), Some(("sev.max", 1)));
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> + '_ {
        self.0.iter()
    }
}

impl fmt::Display for MiscEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for MiscEvents {
    type Err = Error;

    fn from_str(s: &str) -> Result<MiscEvents> {
        Counts::parse("misc event line", s).map(MiscEvents)
    }
}

/// `misc.max`: the limit of each misc resource, in the kernel's order. `Display`
/// reproduces the file.
///
/// ```
/// use qube_cgroup::{Max, MiscLimits};
/// let limits: MiscLimits = "sev 4\nsev_es max\n".parse().unwrap();
/// assert_eq!(limits.get("sev"), Some(Max::Limit(4)));
/// assert_eq!(limits.get("sev_es"), Some(Max::Max));
/// assert_eq!(limits.to_string(), "sev 4\nsev_es max\n");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MiscLimits {
    limits: Vec<(String, Max<u64>)>,
}

impl MiscLimits {
    /// The limit of one resource.
    ///
    /// ```
    /// let limits: qube_cgroup::MiscLimits = "sev max\n".parse().unwrap();
    /// assert!(limits.get("sev").is_some());
    /// ```
    pub fn get(&self, resource: &str) -> Option<Max<u64>> {
        self.iter().find(|(r, _)| *r == resource).map(|(_, l)| l)
    }

    /// Every `(resource, limit)`, in the kernel's order.
    ///
    /// ```
    /// let limits: qube_cgroup::MiscLimits = "sev 1\nsev_es 2\n".parse().unwrap();
    /// assert_eq!(limits.iter().count(), 2);
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (&str, Max<u64>)> + '_ {
        self.limits.iter().map(|(r, l)| (r.as_str(), *l))
    }
}

impl fmt::Display for MiscLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.iter()
            .try_for_each(|(resource, limit)| writeln!(f, "{resource} {limit}"))
    }
}

impl FromStr for MiscLimits {
    type Err = Error;

    fn from_str(s: &str) -> Result<MiscLimits> {
        let limits = s
            .lines()
            .filter(|l| !l.is_empty())
            .map(parse_limit_line)
            .collect::<Result<_>>()?;
        Ok(MiscLimits { limits })
    }
}

fn parse_limit_line(line: &str) -> Result<(String, Max<u64>)> {
    let invalid = || Error::invalid("misc.max line", line, "expected `<resource> <count>|max`");
    let mut parts = line.split_ascii_whitespace();
    let (Some(resource), Some(limit), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(invalid());
    };
    let limit = match limit {
        "max" => Max::Max,
        n => Max::Limit(n.parse().map_err(|_| invalid())?),
    };
    Ok((resource.to_owned(), limit))
}

/// The misc controller of one cgroup, from [`Cgroup::misc`].
///
/// ```no_run
/// use qube_cgroup::{Cgroup, Max};
/// let root = Cgroup::root()?;
/// println!("SEV ASIDs: {:?}", root.misc().capacity()?.get("sev"));
/// let vm = root.create("confidential-vm")?;
/// vm.misc().set_max("sev", Max::Limit(1))?;
/// # Ok::<(), qube_cgroup::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Misc<'a> {
    cg: &'a Cgroup,
}

impl Cgroup {
    /// The misc controller's files.
    ///
    /// ```no_run
    /// let capacity = qube_cgroup::Cgroup::root()?.misc().capacity()?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn misc(&self) -> Misc<'_> {
        Misc { cg: self }
    }
}

impl Misc<'_> {
    /// How many of each resource the machine has (`misc.capacity`, on the root only);
    /// empty when it has none.
    ///
    /// ```no_run
    /// for (resource, n) in qube_cgroup::Cgroup::root()?.misc().capacity()?.iter() {
    ///     println!("{resource}: {n}");
    /// }
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn capacity(&self) -> Result<MiscAmounts> {
        self.read_amounts("misc.capacity")
    }

    /// What the group and its descendants use of each resource (`misc.current`).
    ///
    /// ```no_run
    /// let used = qube_cgroup::Cgroup::root()?.create("m")?.misc().current()?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn current(&self) -> Result<MiscAmounts> {
        self.read_amounts("misc.current")
    }

    /// The limit of each resource (`misc.max`).
    ///
    /// ```no_run
    /// let limits = qube_cgroup::Cgroup::root()?.create("m")?.misc().max()?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn max(&self) -> Result<MiscLimits> {
        self.read_parsed("misc.max")
    }

    /// Limits one resource. A resource this cgroup's `misc.max` does not list (the kernel
    /// has none of it), or `u64::MAX` (which the kernel would read as `max`), is an
    /// [`Error::InvalidValue`] and nothing is written.
    ///
    /// ```no_run
    /// use qube_cgroup::{Cgroup, Max};
    /// let cg = Cgroup::root()?.create("m")?;
    /// cg.misc().set_max("sev", Max::Limit(2))?;
    /// assert!(cg.misc().set_max("no-such-resource", Max::Max).is_err());
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn set_max(&self, resource: &str, limit: Max<u64>) -> Result<()> {
        if limit == Max::Limit(u64::MAX) {
            return Err(Error::invalid(
                "misc limit",
                &limit.to_string(),
                "the kernel reads this as max; write Max::Max",
            ));
        }
        let offered: Vec<String> = self.max()?.iter().map(|(r, _)| r.to_owned()).collect();
        if !offered.iter().any(|r| r == resource) {
            return Err(Error::invalid(
                "misc resource",
                resource,
                format!(
                    "this machine has no capacity of it (misc.max lists: {})",
                    list_or_none(&offered)
                ),
            ));
        }
        self.cg
            .dir
            .write_value("misc.max", &format_args!("{resource} {limit}"))
    }

    /// How often each resource's limit was hit here and below (`misc.events`, Linux 5.16+).
    ///
    /// ```no_run
    /// let events = qube_cgroup::Cgroup::root()?.create("m")?.misc().events()?;
    /// println!("{:?}", events.max_hits("sev"));
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn events(&self) -> Result<MiscEvents> {
        self.read_events("misc.events")
    }

    /// The same counts for this cgroup alone (`misc.events.local`, Linux 6.9+).
    ///
    /// ```no_run
    /// let events = qube_cgroup::Cgroup::root()?.create("m")?.misc().events_local()?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn events_local(&self) -> Result<MiscEvents> {
        self.read_events("misc.events.local")
    }

    fn read_amounts(&self, file: &str) -> Result<MiscAmounts> {
        self.read_parsed(file)
    }

    fn read_events(&self, file: &str) -> Result<MiscEvents> {
        self.read_parsed(file)
    }

    /// Reads and parses a whole file, naming the file and line that did not parse.
    fn read_parsed<T: FromStr<Err = Error>>(&self, file: &str) -> Result<T> {
        let text = self.cg.dir.read(file)?;
        text.parse().map_err(|e| match e {
            Error::InvalidValue { value, reason, .. } => {
                self.cg.dir.parse_error(file, &value, reason)
            }
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn resource() -> impl Strategy<Value = String> {
        "[a-z][a-z0-9_]{0,11}"
    }

    #[test]
    fn malformed_limits_are_rejected() {
        for bad in ["sev", "sev -1", "sev 1 2", "sev MAX", "sev 1.5"] {
            assert!(bad.parse::<MiscLimits>().is_err(), "{bad:?}");
        }
        assert_eq!("".parse::<MiscLimits>().unwrap(), MiscLimits::default());
    }

    proptest! {
        #[test]
        fn limits_round_trip(entries in proptest::collection::vec((resource(), proptest::option::of(any::<u64>())), 0..6)) {
            let text: String = entries
                .iter()
                .map(|(r, l)| format!("{r} {}\n", l.map_or("max".to_owned(), |n| n.to_string())))
                .collect();
            let limits: MiscLimits = text.parse().unwrap();
            prop_assert_eq!(limits.to_string(), text.clone());
            prop_assert_eq!(limits.to_string().parse::<MiscLimits>().unwrap(), limits.clone());
            for (r, l) in &entries {
                let first = entries.iter().find(|(r2, _)| r2 == r).map(|(_, l)| *l);
                prop_assert_eq!(limits.get(r), first.map(|l| l.map_or(Max::Max, Max::Limit)));
                let _ = l;
            }
        }

        #[test]
        fn amounts_and_events_round_trip(entries in proptest::collection::vec((resource(), any::<u64>()), 0..6)) {
            let amounts: String = entries.iter().map(|(r, n)| format!("{r} {n}\n")).collect();
            prop_assert_eq!(amounts.parse::<MiscAmounts>().unwrap().to_string(), amounts);
            let events: String = entries.iter().map(|(r, n)| format!("{r}.max {n}\n")).collect();
            let parsed: MiscEvents = events.parse().unwrap();
            prop_assert_eq!(parsed.to_string(), events);
            if let Some((r, n)) = entries.first() {
                prop_assert_eq!(parsed.max_hits(r), Some(*n));
            }
        }

        #[test]
        fn parsers_never_panic(s in "\\PC{0,64}") {
            let _ = s.parse::<MiscLimits>();
            let _ = s.parse::<MiscAmounts>();
            let _ = s.parse::<MiscEvents>();
        }
    }
}
