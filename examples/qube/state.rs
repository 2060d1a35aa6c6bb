//! The daemon's state on disk: one directory per container under `<state>/containers/`,
//! holding `record.json` (written atomically), its logs and its writable layer; images
//! under `<state>/images/`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::model::{EnvVar, Limits, Name, RestartPolicy, Status, Usage, Volume};

/// The version of `record.json`'s layout.
pub const RECORD_FORMAT: u32 = 1;

/// How a container's root filesystem was made from its image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RootfsKind {
    /// An overlayfs: the image below, `upper/` above, mounted on `rootfs/`.
    Overlay,
    /// A private copy of the image in `rootfs/`.
    Copy,
}

/// Everything the daemon keeps about one container, across its own restarts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// [`RECORD_FORMAT`].
    pub format: u32,
    /// 12 hex digits; also the name of its cgroup and its state directory.
    pub id: String,
    /// Its name.
    pub name: Name,
    /// The image it was made from.
    pub image: Name,
    /// The command, run by `/bin/sh -c`.
    pub command: String,
    /// Extra environment.
    pub env: Vec<EnvVar>,
    /// Bind mounts.
    pub volumes: Vec<Volume>,
    /// In a network namespace of its own.
    pub isolated: bool,
    /// When to start it again.
    pub restart: RestartPolicy,
    /// Its resource limits.
    pub limits: Limits,
    /// Created, in seconds since the epoch.
    pub created: u64,
    /// Last started.
    pub started: Option<u64>,
    /// Last ended.
    pub finished: Option<u64>,
    /// Where it is in its life.
    pub status: Status,
    /// The pid of its main process (in the daemon's pid namespace) while it runs.
    pub pid: Option<u32>,
    /// Its cgroup's path on cgroupfs.
    pub cgroup: PathBuf,
    /// How its root filesystem was made.
    pub rootfs: RootfsKind,
    /// What it used, read just before its cgroup was removed.
    pub final_usage: Option<Usage>,
    /// How often the restart policy started it again.
    pub restart_count: u32,
    /// Stopped or killed through qube: the restart policy leaves it alone.
    pub stop_requested: bool,
    /// It ended and its restart policy will start it again (not kept across daemons).
    #[serde(skip)]
    pub restart_pending: bool,
}

impl Record {
    /// Whether its restart policy wants it started again now that it ended.
    pub fn wants_restart(&self) -> bool {
        let policy = match self.restart {
            RestartPolicy::No => false,
            RestartPolicy::OnFailure => self.status.is_failure(),
            RestartPolicy::Always => true,
        };
        policy && !self.stop_requested && !self.status.is_live()
    }
}

/// The layout of the state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Opens (creating, mode 0700) the state directory and its `containers/` and `images/`.
    pub fn create(root: &Path) -> io::Result<StateDir> {
        let dir = StateDir {
            root: root.to_owned(),
        };
        for path in [dir.root.clone(), dir.containers(), dir.images()] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&path)
                .map_err(|e| annotate(e, "create", &path))?;
        }
        Ok(dir)
    }

    /// `<state>/containers`.
    pub fn containers(&self) -> PathBuf {
        self.root.join("containers")
    }

    /// `<state>/images`.
    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }

    /// One container's directory.
    pub fn container(&self, id: &str) -> PathBuf {
        self.containers().join(id)
    }

    /// Writes a container's record atomically.
    pub fn save(&self, record: &Record) -> io::Result<()> {
        let json = serde_json::to_vec_pretty(record).map_err(io::Error::other)?;
        write_atomic(&self.container(&record.id).join("record.json"), &json)
    }

    /// Reads every container's record; the unreadable ones come back as errors naming the file.
    pub fn load_all(&self) -> io::Result<Vec<Result<Record, String>>> {
        let mut records = Vec::new();
        let entries =
            fs::read_dir(self.containers()).map_err(|e| annotate(e, "list", &self.containers()))?;
        for entry in entries {
            let path = entry?.path().join("record.json");
            if path.exists() {
                records.push(read_record(&path));
            }
        }
        Ok(records)
    }
}

fn read_record(path: &Path) -> Result<Record, String> {
    let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let record: Record =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
    if record.format != RECORD_FORMAT {
        return Err(format!(
            "{}: record format {} is not supported (this daemon writes {RECORD_FORMAT})",
            path.display(),
            record.format
        ));
    }
    Ok(record)
}

/// Replaces `path` with `bytes` so that a crash leaves either the old or the new file,
/// never a torn one: write a temporary file beside it, fsync it, rename it over, fsync
/// the directory so the rename itself is durable.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other(format!("{} has no parent", path.display())))?;
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::other(format!("{} has no file name", path.display())))?;
    let tmp = dir.join(format!(".{}.tmp", name.to_string_lossy()));
    let write = || -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        annotate(e, "write", path)
    })
}

/// Adds what was done to which path to an I/O error.
pub fn annotate(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Microseconds since the epoch.
pub fn now_usec() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A new container id: 12 random hex digits from the kernel's random pool.
pub fn new_id() -> io::Result<String> {
    let mut bytes = [0u8; 6];
    File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::{LimitRequest, Limits};

    /// A running container's record, for tests.
    pub(crate) fn sample_record(id: &str) -> Record {
        Record {
            format: RECORD_FORMAT,
            id: id.into(),
            name: "web".parse().unwrap(),
            image: "alpine".parse().unwrap(),
            command: "sleep 60".into(),
            env: vec!["K=V".parse().unwrap()],
            volumes: vec![],
            isolated: false,
            restart: RestartPolicy::No,
            limits: Limits::with_defaults(&LimitRequest::default()),
            created: 1_700_000_000,
            started: Some(1_700_000_001),
            finished: None,
            status: Status::Running,
            pid: Some(4242),
            cgroup: "/sys/fs/cgroup/QubeContainers/0123456789ab".into(),
            rootfs: RootfsKind::Overlay,
            final_usage: None,
            restart_count: 0,
            stop_requested: false,
            restart_pending: false,
        }
    }

    #[test]
    fn restart_policies() {
        let mut r = sample_record("0123456789ab");
        r.status = Status::Exited { code: 1 };
        assert!(!r.wants_restart());
        r.restart = RestartPolicy::OnFailure;
        assert!(r.wants_restart());
        r.status = Status::Exited { code: 0 };
        assert!(!r.wants_restart());
        r.restart = RestartPolicy::Always;
        assert!(r.wants_restart());
        r.stop_requested = true;
        assert!(!r.wants_restart());
    }

    #[test]
    fn records_are_written_atomically_and_read_back() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::create(tmp.path()).unwrap();
        let mut record = sample_record("0123456789ab");
        fs::create_dir(state.container(&record.id)).unwrap();
        state.save(&record).unwrap();
        record.status = Status::Exited { code: 3 };
        state.save(&record).unwrap();

        let loaded = state.load_all().unwrap();
        assert_eq!(loaded, vec![Ok(record.clone())]);
        let leftovers: Vec<_> = fs::read_dir(state.container(&record.id))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["record.json"], "no temporary file is left");
    }

    #[test]
    fn a_failed_write_keeps_the_old_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        write_atomic(&path, b"old").unwrap();
        // The temporary name is taken by a directory, so the new write cannot even start.
        fs::create_dir(tmp.path().join(".f.tmp")).unwrap();
        assert!(write_atomic(&path, b"new").is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
    }

    #[test]
    fn corrupt_records_are_reported_not_fatal() {
        let tmp = tempfile::tempdir().unwrap();
        let state = StateDir::create(tmp.path()).unwrap();
        fs::create_dir(state.container("bad")).unwrap();
        fs::write(state.container("bad").join("record.json"), "{").unwrap();
        let loaded = state.load_all().unwrap();
        assert!(matches!(&loaded[..], [Err(msg)] if msg.contains("record.json")));
    }

    #[test]
    fn ids_are_twelve_hex_digits() {
        let id = new_id().unwrap();
        assert_eq!(id.len(), 12);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(new_id().unwrap(), id);
    }
}
