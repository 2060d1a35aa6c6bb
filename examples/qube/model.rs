//! The values the command line, the protocol and the state files share: names, limits,
//! statuses, usage figures. Each is parsed once from text (the command line, a JSON field)
//! into its type and travels as that type; serde reads it back through the same parser.

use std::fmt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use qube_cgroup::{Bytes, Max};
use serde::{Deserialize, Serialize};

pub use qube_cgroup::CpuMax;

/// The memory limit a container gets unless `--memory` says otherwise.
pub const DEFAULT_MEMORY_MAX: Bytes = Bytes::gib(2);
/// The swap limit a container gets unless `--swap` says otherwise.
pub const DEFAULT_SWAP_MAX: Bytes = Bytes::gib(1);

/// A container or image name: 1 to 64 of `A-Z a-z 0-9 _ . -`, starting with a letter or
/// digit, and never `..`, so it is always one safe path component and one cgroup name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Name(String);

impl Name {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A container's default name: `qube-` and the first six digits of its id (valid
    /// by construction: a letter first, then letters, digits and `-`).
    pub fn for_container(id: &str) -> Name {
        let digits: String = id.chars().filter(char::is_ascii_hexdigit).take(6).collect();
        Name(format!("qube-{digits}"))
    }
}

impl FromStr for Name {
    type Err = String;

    fn from_str(s: &str) -> Result<Name, String> {
        let reason = if s.is_empty() {
            "it is empty"
        } else if s.len() > 64 {
            "it is longer than 64 characters"
        } else if s.contains("..") {
            "it contains `..`"
        } else if s.contains('/') {
            "it contains `/`"
        } else if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            "it must start with a letter or a digit"
        } else if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "_.-".contains(*c)))
        {
            return Err(format!(
                "invalid name {s:?}: {c:?} is not allowed (use letters, digits, `_`, `.` and `-`)"
            ));
        } else {
            return Ok(Name(s.to_owned()));
        };
        Err(format!("invalid name {s:?}: {reason}"))
    }
}

impl TryFrom<String> for Name {
    type Error = String;
    fn try_from(s: String) -> Result<Name, String> {
        s.parse()
    }
}

impl From<Name> for String {
    fn from(name: Name) -> String {
        name.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An environment variable, `KEY=VALUE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EnvVar {
    /// The variable's name.
    pub key: String,
    /// Its value.
    pub value: String,
}

impl FromStr for EnvVar {
    type Err = String;

    fn from_str(s: &str) -> Result<EnvVar, String> {
        let (key, value) = s
            .split_once('=')
            .ok_or_else(|| format!("invalid environment variable {s:?}: expected KEY=VALUE"))?;
        if key.is_empty() || s.contains('\0') {
            return Err(format!(
                "invalid environment variable {s:?}: the name must not be empty and nothing may contain a NUL byte"
            ));
        }
        Ok(EnvVar {
            key: key.to_owned(),
            value: value.to_owned(),
        })
    }
}

impl TryFrom<String> for EnvVar {
    type Error = String;
    fn try_from(s: String) -> Result<EnvVar, String> {
        s.parse()
    }
}

impl From<EnvVar> for String {
    fn from(var: EnvVar) -> String {
        format!("{}={}", var.key, var.value)
    }
}

/// A bind mount, `/host/path:/container/path[:ro|:rw]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Volume {
    /// The directory or file on the host.
    pub host: PathBuf,
    /// Where it appears in the container.
    pub container: PathBuf,
    /// Mounted read-only.
    pub readonly: bool,
}

impl FromStr for Volume {
    type Err = String;

    fn from_str(s: &str) -> Result<Volume, String> {
        let invalid = |why: &str| format!("invalid volume {s:?}: {why}");
        let mut parts = s.split(':');
        let (Some(host), Some(container)) = (parts.next(), parts.next()) else {
            return Err(invalid("expected /host/path:/container/path[:ro]"));
        };
        let readonly = match parts.next() {
            None | Some("rw") => false,
            Some("ro") => true,
            Some(other) => return Err(invalid(&format!("unknown mode {other:?}, use ro or rw"))),
        };
        if parts.next().is_some() {
            return Err(invalid("too many `:`"));
        }
        for (what, path) in [("host", host), ("container", container)] {
            if !clean_absolute(Path::new(path)) {
                return Err(invalid(&format!(
                    "the {what} path must be absolute, without `..`"
                )));
            }
        }
        Ok(Volume {
            host: host.into(),
            container: container.into(),
            readonly,
        })
    }
}

/// An absolute path with no `..` component.
fn clean_absolute(path: &Path) -> bool {
    path.is_absolute() && path.components().all(|c| c != Component::ParentDir)
}

impl TryFrom<String> for Volume {
    type Error = String;
    fn try_from(s: String) -> Result<Volume, String> {
        s.parse()
    }
}

impl From<Volume> for String {
    fn from(v: Volume) -> String {
        let mode = if v.readonly { ":ro" } else { "" };
        format!("{}:{}{mode}", v.host.display(), v.container.display())
    }
}

/// When the daemon starts a container again after it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Never (the default).
    #[default]
    No,
    /// When it exits with a non-zero code, is killed by a signal, or is OOM-killed.
    OnFailure,
    /// Whenever it ends, unless it was stopped or killed through qube.
    Always,
}

/// The resource limits of one container, as the kernel will be told them.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// `memory.max`.
    #[serde(with = "text")]
    pub memory_max: Max<Bytes>,
    /// `memory.swap.max`.
    #[serde(with = "text")]
    pub swap_max: Max<Bytes>,
    /// `cpu.max`; `None` leaves the kernel's default (no limit).
    #[serde(with = "text::option", default)]
    pub cpu_max: Option<CpuMax>,
    /// `pids.max`.
    #[serde(with = "text")]
    pub pids_max: Max<u64>,
}

impl Limits {
    /// The limits for a container: what the command line asked for, the defaults for the rest.
    pub fn with_defaults(asked: &LimitRequest) -> Limits {
        Limits {
            memory_max: asked.memory.unwrap_or(Max::Limit(DEFAULT_MEMORY_MAX)),
            swap_max: asked.swap.unwrap_or(Max::Limit(DEFAULT_SWAP_MAX)),
            cpu_max: asked.cpus,
            pids_max: asked.pids.unwrap_or(Max::Max),
        }
    }

    /// The limits as qube-runtime writes them to the container's cgroup (the one place
    /// they reach the kernel).
    pub fn resources(&self) -> qube_cgroup::Resources {
        qube_cgroup::Resources {
            memory_max: Some(self.memory_max),
            memory_swap_max: Some(self.swap_max),
            cpu_max: self.cpu_max,
            pids_max: Some(self.pids_max),
            ..qube_cgroup::Resources::default()
        }
    }
}

/// The limits given on the command line; what is `None` gets the daemon's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LimitRequest {
    /// `--memory`.
    #[serde(with = "text::option", default)]
    pub memory: Option<Max<Bytes>>,
    /// `--swap`.
    #[serde(with = "text::option", default)]
    pub swap: Option<Max<Bytes>>,
    /// `--cpus`.
    #[serde(with = "text::option", default)]
    pub cpus: Option<CpuMax>,
    /// `--pids`.
    #[serde(with = "text::option", default)]
    pub pids: Option<Max<u64>>,
}

/// Everything `qube run` asks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    /// `--name`; the daemon makes one up when absent.
    pub name: Option<Name>,
    /// `--image`.
    pub image: Name,
    /// `--cmd`, run by the image's `/bin/sh -c`.
    pub command: String,
    /// `--env`.
    pub env: Vec<EnvVar>,
    /// `--volume`.
    pub volumes: Vec<Volume>,
    /// `--isolated`: a network namespace with only loopback.
    pub isolated: bool,
    /// `--restart`.
    pub restart: RestartPolicy,
    /// `--memory`, `--swap`, `--cpus`, `--pids`.
    pub limits: LimitRequest,
}

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Status {
    /// Being set up.
    Created,
    /// Its processes run.
    Running,
    /// Its main process exited with this code.
    Exited {
        /// The exit code.
        code: i32,
    },
    /// Its main process was killed by this signal.
    Killed {
        /// The signal number.
        signal: i32,
    },
    /// The kernel's OOM killer ended it (the memory limit was hit).
    OomKilled,
    /// It ended while no daemon watched it, and its pid 1 left no exit status (it was
    /// killed before it could write the exit status file).
    Lost,
}

impl Status {
    /// Whether the container's processes may still run.
    pub fn is_live(self) -> bool {
        matches!(self, Status::Created | Status::Running)
    }

    /// Whether this end counts as a failure for `--restart on-failure`.
    pub fn is_failure(self) -> bool {
        !matches!(
            self,
            Status::Exited { code: 0 } | Status::Created | Status::Running
        )
    }
}

/// What a container uses (live), or used (the final figures of a stopped one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// `memory.current` (for a stopped container: its peak).
    #[serde(with = "bytes_number")]
    pub memory: Bytes,
    /// `memory.swap.current`.
    #[serde(with = "bytes_number")]
    pub swap: Bytes,
    /// CPU time used, from `cpu.stat` `usage_usec`.
    pub cpu_usec: u64,
    /// `pids.current`.
    pub pids: u64,
    /// `memory.events` `oom_kill`.
    pub oom_kills: u64,
}

/// `Bytes` as a JSON number.
mod bytes_number {
    use qube_cgroup::Bytes;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(b: &Bytes, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(b.0)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Bytes, D::Error> {
        u64::deserialize(d).map(Bytes)
    }
}

/// A value that is written as the kernel's text and read back through the same parser.
pub trait KernelText: Sized {
    /// The kernel's text for the value.
    fn to_text(&self) -> String;
    /// Parses the text (and the friendlier forms the command line accepts).
    fn from_text(s: &str) -> Result<Self, String>;
}

impl KernelText for Max<Bytes> {
    fn to_text(&self) -> String {
        self.to_string()
    }
    fn from_text(s: &str) -> Result<Self, String> {
        s.parse().map_err(|e: qube_cgroup::Error| e.to_string())
    }
}

impl KernelText for Max<u64> {
    fn to_text(&self) -> String {
        self.to_string()
    }
    fn from_text(s: &str) -> Result<Self, String> {
        s.parse::<Max<qube_cgroup::Count>>()
            .map(|m| match m {
                Max::Max => Max::Max,
                Max::Limit(n) => Max::Limit(n.0),
            })
            .map_err(|e| e.to_string())
    }
}

impl KernelText for CpuMax {
    fn to_text(&self) -> String {
        self.to_string()
    }
    fn from_text(s: &str) -> Result<Self, String> {
        s.parse().map_err(|e: qube_cgroup::Error| e.to_string())
    }
}

/// serde through [`KernelText`]: `#[serde(with = "text")]`, `#[serde(with = "text::option")]`.
pub mod text {
    use super::KernelText;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<T: KernelText, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_text())
    }

    pub fn deserialize<'de, T: KernelText, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
        let s = String::deserialize(d)?;
        T::from_text(&s).map_err(serde::de::Error::custom)
    }

    pub mod option {
        use super::KernelText;
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<T: KernelText, S: Serializer>(
            v: &Option<T>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match v {
                Some(v) => s.serialize_some(&v.to_text()),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, T: KernelText, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<T>, D::Error> {
            match Option::<String>::deserialize(d)? {
                Some(s) => T::from_text(&s).map(Some).map_err(serde::de::Error::custom),
                None => Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_single_safe_components() {
        for good in ["web", "alpine", "db-1", "a.b_c", "9lives"] {
            assert!(good.parse::<Name>().is_ok(), "{good}");
        }
        for bad in [
            "", "..", ".", "a/b", "../x", "a..b", "-x", ".hidden", "a b", "é",
        ] {
            assert!(bad.parse::<Name>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn default_container_names_come_from_the_id() {
        let name = Name::for_container("0123456789ab");
        assert_eq!(name.as_str(), "qube-012345");
        assert_eq!(name.as_str().parse::<Name>().unwrap(), name);
    }

    #[test]
    fn volumes_parse_modes_and_refuse_relative_paths() {
        let v: Volume = "/host:/ctr:ro".parse().unwrap();
        assert_eq!(
            (v.host.as_path(), v.container.as_path(), v.readonly),
            (Path::new("/host"), Path::new("/ctr"), true)
        );
        assert!(!"/a:/b".parse::<Volume>().unwrap().readonly);
        for bad in [
            "host:/ctr",
            "/h:ctr",
            "/h:/c/../x",
            "/h",
            "/h:/c:rx",
            "/h:/c:ro:x",
        ] {
            assert!(bad.parse::<Volume>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn env_vars_split_at_the_first_equals() {
        let e: EnvVar = "K=a=b".parse().unwrap();
        assert_eq!((e.key.as_str(), e.value.as_str()), ("K", "a=b"));
        assert!("=v".parse::<EnvVar>().is_err());
        assert!("novalue".parse::<EnvVar>().is_err());
    }

    #[test]
    fn default_limits_are_two_gib_and_one_gib_of_swap() {
        let limits = Limits::with_defaults(&LimitRequest::default());
        assert_eq!(limits.memory_max, Max::Limit(Bytes(2147483648)));
        assert_eq!(limits.swap_max, Max::Limit(Bytes(1073741824)));
        assert_eq!(limits.pids_max, Max::Max);
    }

    #[test]
    fn limits_round_trip_through_json() {
        let limits = Limits {
            memory_max: Max::Limit(Bytes::mib(512)),
            swap_max: Max::Max,
            cpu_max: Some(CpuMax::cpus(1.5)),
            pids_max: Max::Limit(256),
        };
        let json = serde_json::to_string(&limits).unwrap();
        assert!(json.contains("\"memory_max\":\"536870912\""), "{json}");
        assert_eq!(serde_json::from_str::<Limits>(&json).unwrap(), limits);
    }
}
