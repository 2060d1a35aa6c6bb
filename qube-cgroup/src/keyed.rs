//! Parsers for the kernel's keyed file formats (cgroup-v2.rst, "Interface Files"):
//! flat keyed (`key value` per line), nested keyed (`key sub=value sub=value` per line).
//! They borrow from the text, so parsing allocates nothing per key.

/// One `key value` line of a flat-keyed file, or the line that failed.
pub(crate) fn flat_keyed(text: &str) -> impl Iterator<Item = Result<(&str, u64), &str>> {
    text.lines().filter(|l| !l.is_empty()).map(|line| {
        let mut parts = line.split_ascii_whitespace();
        match (
            parts.next(),
            parts.next().map(str::parse::<u64>),
            parts.next(),
        ) {
            (Some(key), Some(Ok(value)), None) => Ok((key, value)),
            _ => Err(line),
        }
    })
}

/// One line of a nested-keyed file: the leading key and its `sub=value` pairs.
#[allow(dead_code)] // used by the io controller
pub(crate) fn nested_keyed(
    line: &str,
) -> Option<(&str, impl Iterator<Item = Option<(&str, &str)>>)> {
    let mut parts = line.split_ascii_whitespace();
    let key = parts.next()?;
    Some((key, parts.map(|pair| pair.split_once('='))))
}

/// Declares a statistics struct read from a flat-keyed file: typed fields for the keys
/// that matter, the kernel's whole text kept so that every other key is still reachable
/// (`get`, `iter`) and `Display` reproduces the file exactly.
macro_rules! flat_stats {
    (
        $(#[$meta:meta])*
        $name:ident, $file:literal { $( $(#[$fmeta:meta])* $field:ident : $key:literal ),* $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: u64, )*
            text: String,
        }

        impl $name {
            /// The interface file these figures come from.
            ///
            /// ```
            #[doc = concat!("assert_eq!(qube_cgroup::", stringify!($name), "::FILE, \"", $file, "\");")]
            /// ```
            pub const FILE: &'static str = $file;

            /// Parses the file's text; every line must be `key value`.
            ///
            /// ```
            #[doc = concat!("use qube_cgroup::", stringify!($name), ";")]
            #[doc = concat!("let stats = ", stringify!($name), "::parse(\"some_key 7\\n\")?;")]
            /// assert_eq!(stats.get("some_key"), Some(7));
            /// assert_eq!(stats.to_string(), "some_key 7\n");
            #[doc = concat!("assert!(", stringify!($name), "::parse(\"no value\\n\").is_err());")]
            /// # Ok::<(), qube_cgroup::Error>(())
            /// ```
            pub fn parse(text: impl Into<String>) -> $crate::Result<Self> {
                let text = text.into();
                let mut stats = Self::default();
                for entry in $crate::keyed::flat_keyed(&text) {
                    let (key, value) = entry.map_err(|line| $crate::Error::Parse {
                        path: std::path::PathBuf::from($file),
                        line: line.to_owned(),
                        reason: "expected `key value`".into(),
                    })?;
                    match key {
                        $( $key => stats.$field = value, )*
                        _ => {}
                    }
                }
                stats.text = text;
                Ok(stats)
            }

            /// Any key of the file, including those without a typed field.
            ///
            /// ```
            #[doc = concat!("let stats: qube_cgroup::", stringify!($name), " = \"a 1\\nb 2\\n\".parse()?;")]
            /// assert_eq!((stats.get("b"), stats.get("c")), (Some(2), None));
            /// # Ok::<(), qube_cgroup::Error>(())
            /// ```
            pub fn get(&self, key: &str) -> Option<u64> {
                self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
            }

            /// Every `(key, value)` pair, in the kernel's order.
            ///
            /// ```
            #[doc = concat!("let stats: qube_cgroup::", stringify!($name), " = \"b 2\\na 1\\n\".parse()?;")]
            /// assert_eq!(stats.iter().collect::<Vec<_>>(), [("b", 2), ("a", 1)]);
            /// # Ok::<(), qube_cgroup::Error>(())
            /// ```
            pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> + '_ {
                $crate::keyed::flat_keyed(&self.text).filter_map(Result::ok)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.text)
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::Error;
            fn from_str(s: &str) -> $crate::Result<Self> {
                Self::parse(s)
            }
        }
    };
}
pub(crate) use flat_stats;

/// Declares a getter and a setter for one single-value interface file, on the view
/// `$view` of the handle (`cg.memory()`, `cg.cpu()`).
macro_rules! setting {
    ($view:ident: $(#[$doc:meta])* $get:ident, $set:ident, $file:literal, $ty:ty) => {
        $(#[$doc])*
        #[doc = concat!("\n\nReads `", $file, "`.")]
        ///
        /// ```no_run
        /// let cg = qube_cgroup::Cgroup::open_self()?;
        #[doc = concat!("let value = cg.", stringify!($view), "().", stringify!($get), "()?;")]
        #[doc = concat!("println!(\"", $file, ": {value}\");")]
        /// # Ok::<(), qube_cgroup::Error>(())
        /// ```
        pub fn $get(&self) -> Result<$ty> {
            self.cg.dir.read_value($file)
        }

        #[doc = concat!("Writes `", $file, "`; see [`", stringify!($get), "`](Self::", stringify!($get), ").")]
        ///
        /// The value goes to the kernel in the text it reads back, in one `write(2)`.
        ///
        /// ```no_run
        /// let cg = qube_cgroup::Cgroup::open_self()?;
        #[doc = concat!("let value = cg.", stringify!($view), "().", stringify!($get), "()?;")]
        #[doc = concat!("cg.", stringify!($view), "().", stringify!($set), "(value)?;")]
        /// # Ok::<(), qube_cgroup::Error>(())
        /// ```
        pub fn $set(&self, value: $ty) -> Result<()> {
            self.cg.dir.write_value($file, &value)
        }
    };
}
pub(crate) use setting;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn flat_lines() {
        let v: Vec<_> = flat_keyed("a 1\nb 2\n").collect();
        assert_eq!(v, [Ok(("a", 1)), Ok(("b", 2))]);
        assert_eq!(flat_keyed("a x\n").next(), Some(Err("a x")));
    }

    #[test]
    fn nested_line() {
        let (key, pairs) = nested_keyed("8:0 rbps=1 wbps=max").unwrap();
        assert_eq!(key, "8:0");
        let pairs: Vec<_> = pairs.collect();
        assert_eq!(pairs, [Some(("rbps", "1")), Some(("wbps", "max"))]);
    }

    proptest! {
        #[test]
        fn flat_never_panics(s in "\\PC{0,64}") {
            let _ = flat_keyed(&s).count();
        }
    }
}
