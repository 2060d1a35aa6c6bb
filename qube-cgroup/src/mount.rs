//! Finding the cgroup2 mount and, on hybrid hosts, where v1-bound controllers live.

use std::path::{Path, PathBuf};

use crate::controller::{Controller, Controllers};
use crate::error::{Error, Op, Result};

/// The cgroup mounts of this mount namespace, read from `/proc/self/mountinfo`.
///
/// ```
/// use qube_cgroup::{Controller, Mounts};
/// let hybrid = "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n\
///               35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n";
/// let mounts = Mounts::parse(hybrid);
/// assert_eq!(mounts.cgroup2().unwrap().to_str(), Some("/sys/fs/cgroup/unified"));
/// assert!(mounts.is_hybrid());
/// assert_eq!(mounts.v1_mount_of(Controller::Memory).unwrap().to_str(), Some("/sys/fs/cgroup/memory"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mounts {
    cgroup2: Option<PathBuf>,
    v1: Vec<(Controllers, PathBuf)>,
}

impl Mounts {
    /// Reads this process's mount table.
    ///
    /// ```no_run
    /// let mounts = qube_cgroup::Mounts::current()?;
    /// println!("cgroup2 at {:?}", mounts.cgroup2());
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn current() -> Result<Mounts> {
        let text = std::fs::read_to_string("/proc/self/mountinfo").map_err(|source| Error::Io {
            op: Op::Mounts,
            path: PathBuf::from("/proc/self/mountinfo"),
            value: None,
            source,
        })?;
        Ok(Mounts::parse(&text))
    }

    /// Parses the text of a `mountinfo` file; lines it does not understand are skipped.
    ///
    /// ```
    /// use qube_cgroup::{Controller, Mounts};
    /// let mounts = Mounts::parse(
    ///     "30 25 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate\n\
    ///      31 25 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n",
    /// );
    /// assert_eq!(mounts.cgroup2(), Some(std::path::Path::new("/sys/fs/cgroup/unified")));
    /// assert!(mounts.is_hybrid());
    /// assert_eq!(
    ///     mounts.v1_mount_of(Controller::Memory),
    ///     Some(std::path::Path::new("/sys/fs/cgroup/memory"))
    /// );
    /// assert_eq!(mounts.v1_mount_of(Controller::Pids), None);
    /// ```
    pub fn parse(mountinfo: &str) -> Mounts {
        let mut mounts = Mounts::default();
        for line in mountinfo.lines() {
            let Some((mount_point, fs_type, super_options)) = parse_line(line) else {
                continue;
            };
            match fs_type {
                // The first cgroup2 mount wins: later ones are usually bind mounts into containers.
                "cgroup2" if mounts.cgroup2.is_none() => mounts.cgroup2 = Some(mount_point),
                "cgroup" => {
                    let set = Controllers::from_kernel(&super_options.replace(',', " "));
                    if !set.is_empty() {
                        mounts.v1.push((set, mount_point));
                    }
                }
                _ => {}
            }
        }
        mounts
    }

    /// Where the cgroup2 hierarchy is mounted (`/sys/fs/cgroup` on a pure v2 host,
    /// `/sys/fs/cgroup/unified` on a hybrid one).
    ///
    /// ```
    /// let pure = qube_cgroup::Mounts::parse("30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
    /// assert_eq!(pure.cgroup2(), Some(std::path::Path::new("/sys/fs/cgroup")));
    /// assert!(!pure.is_hybrid());
    /// ```
    pub fn cgroup2(&self) -> Option<&Path> {
        self.cgroup2.as_deref()
    }

    /// The cgroup2 mount, or [`Error::NotMounted`].
    ///
    /// ```
    /// let none = qube_cgroup::Mounts::parse("");
    /// assert!(matches!(none.require_cgroup2(), Err(qube_cgroup::Error::NotMounted)));
    /// ```
    pub fn require_cgroup2(&self) -> Result<&Path> {
        self.cgroup2().ok_or(Error::NotMounted)
    }

    /// True when controllers are bound to cgroup v1 hierarchies beside a cgroup2 mount.
    ///
    /// ```no_run
    /// if qube_cgroup::Mounts::current()?.is_hybrid() {
    ///     eprintln!("controllers bound to cgroup v1 cannot be used through cgroup2 here");
    /// }
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn is_hybrid(&self) -> bool {
        self.cgroup2.is_some() && !self.v1.is_empty()
    }

    /// Where a controller's cgroup v1 hierarchy is mounted, if it is bound to one.
    ///
    /// ```no_run
    /// use qube_cgroup::{Controller, Mounts};
    /// if let Some(v1) = Mounts::current()?.v1_mount_of(Controller::Memory) {
    ///     eprintln!("memory is a cgroup v1 controller here, at {}", v1.display());
    /// }
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn v1_mount_of(&self, controller: Controller) -> Option<&Path> {
        self.v1
            .iter()
            .find(|(set, _)| set.contains(controller.flag()))
            .map(|(_, path)| path.as_path())
    }
}

/// `(mount point, fs type, super options)` of one mountinfo line.
fn parse_line(line: &str) -> Option<(PathBuf, &str, &str)> {
    let mut fields = line.split(' ');
    let mount_point = fields.nth(4)?;
    // Optional fields end at the lone "-" separator.
    let mut rest = fields.skip_while(|f| *f != "-");
    rest.next()?;
    let fs_type = rest.next()?;
    let _source = rest.next()?;
    let super_options = rest.next().unwrap_or("");
    Some((PathBuf::from(unescape(mount_point)), fs_type, super_options))
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...). Three octal digits can
/// say up to 511, which is no byte: the kernel never writes one above `\377`, so such a
/// sequence is not an escape and stays as it is.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 4)
            .filter(|_| bytes[i] == b'\\')
            .and_then(octal_byte);
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The byte three octal digits name, if they are octal digits and name a byte.
fn octal_byte(digits: &[u8]) -> Option<u8> {
    let value = digits.iter().try_fold(0u32, |value, &d| {
        let digit = char::from(d).to_digit(8)?;
        Some(value * 8 + digit)
    })?;
    u8::try_from(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PURE: &str = "24 1 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n";

    #[test]
    fn pure_v2_host() {
        let m = Mounts::parse(PURE);
        assert_eq!(m.cgroup2(), Some(Path::new("/sys/fs/cgroup")));
        assert!(!m.is_hybrid());
        assert_eq!(m.v1_mount_of(Controller::Memory), None);
    }

    #[test]
    fn escaped_mount_points() {
        let m = Mounts::parse("1 1 0:1 / /a\\040b rw - cgroup2 none rw\n");
        assert_eq!(m.cgroup2(), Some(Path::new("/a b")));
    }

    #[test]
    fn this_host_has_a_cgroup2_mount_or_says_so() {
        match Mounts::current() {
            Ok(m) => {
                let _ = m.require_cgroup2();
            }
            Err(e) => panic!("mountinfo unreadable: {e}"),
        }
    }

    #[test]
    fn octal_sequences_above_a_byte_stay_literal() {
        assert_eq!(unescape("/a\\400b"), "/a\\400b");
        assert_eq!(unescape("/\\777"), "/\\777");
        assert_eq!(unescape("/\\377x\\134"), "/\u{fffd}x\\");
        assert_eq!(unescape("/a\\04"), "/a\\04");
        let m = Mounts::parse("1 1 0:1 / /x\\777y\\011 rw - cgroup2 none rw\n");
        assert_eq!(m.cgroup2(), Some(Path::new("/x\\777y\t")));
    }

    proptest! {
        #[test]
        fn never_panics(s in "(.{0,40}\n){0,5}") {
            let _ = Mounts::parse(&s);
        }

        /// Mount points full of backslashes and octal digits, where the escapes are.
        #[test]
        fn never_panics_on_escapes(
            point in r"/(\\[0-9]{0,3}|[0-9a ]){0,12}",
            fs_type in "cgroup2?|tmpfs",
        ) {
            let line = format!("1 1 0:1 / {point} rw - {fs_type} none rw\n");
            let _ = Mounts::parse(&line);
            let _ = unescape(&point);
        }

        /// What the kernel's mangle_path escapes comes back as it was.
        #[test]
        fn kernel_escapes_round_trip(path in r"/[a-z0-9 \t\n\\\u{e9}]{0,20}") {
            let escaped: String = path
                .chars()
                .map(|c| match c {
                    ' ' | '\t' | '\n' | '\\' => format!("\\{:03o}", u32::from(c)),
                    c => c.to_string(),
                })
                .collect();
            prop_assert_eq!(unescape(&escaped), path);
        }
    }
}
