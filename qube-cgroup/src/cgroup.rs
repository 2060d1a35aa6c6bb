//! The [`Cgroup`] handle: create, open, children, attach, list processes, remove.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::errno::Errno;

use crate::dir::Dir;
use crate::error::{Error, Op, Result};
use crate::mount::Mounts;

/// How long a dropped handle waits for its processes to die before giving up.
///
/// ```
/// assert!(qube_cgroup::DROP_TIMEOUT >= std::time::Duration::from_secs(1));
/// ```
pub const DROP_TIMEOUT: Duration = Duration::from_secs(10);

/// A cgroup v2 directory, held open by a directory fd.
///
/// Every interface file is opened relative to that fd; the path is kept only for
/// messages. A cgroup this handle **created** is killed and removed when the handle is
/// dropped (children first), unless [`persist`](Cgroup::persist) was called; a cgroup
/// that was merely opened is left alone unless [`remove_on_drop`](Cgroup::remove_on_drop)
/// asks for the same care.
///
/// Controllers hang off the handle: [`memory`](Cgroup::memory), [`cpu`](Cgroup::cpu),
/// [`pids`](Cgroup::pids), and the rest.
///
/// ```no_run
/// use qube_cgroup::{Bytes, Cgroup, Controllers, Max};
///
/// let root = Cgroup::root()?;
/// root.enable_controllers(Controllers::MEMORY)?;
/// let cg = root.create("demo")?;
/// cg.memory().set_max(Max::Limit(Bytes::gib(2)))?;
/// // A child, not this process: dropping `cg` kills whatever is in it.
/// let mut child = std::process::Command::new("sleep").arg("60").spawn()?;
/// cg.attach(child.id())?;
/// drop(cg); // kills the sleep and removes the cgroup
/// child.wait()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Cgroup {
    pub(crate) dir: Dir,
    pub(crate) remove_on_drop: AtomicBool,
}

impl Cgroup {
    /// Opens the root of the cgroup2 hierarchy (wherever it is mounted).
    ///
    /// ```no_run
    /// let root = qube_cgroup::Cgroup::root()?;
    /// println!("cgroup2 at {}", root.path().display());
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn root() -> Result<Cgroup> {
        let mounts = Mounts::current()?;
        Cgroup::open(mounts.require_cgroup2()?)
    }

    /// Opens an existing cgroup by its absolute path on cgroupfs.
    ///
    /// ```no_run
    /// let cg = qube_cgroup::Cgroup::open("/sys/fs/cgroup/system.slice")?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Cgroup> {
        Ok(Cgroup::from_dir(Dir::open(path.as_ref())?))
    }

    /// Opens the cgroup this process belongs to (from `/proc/self/cgroup`).
    ///
    /// ```no_run
    /// let me = qube_cgroup::Cgroup::open_self()?;
    /// assert!(me.procs()?.contains(&std::process::id()));
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn open_self() -> Result<Cgroup> {
        let file = Path::new("/proc/self/cgroup");
        let text = std::fs::read_to_string(file).map_err(|source| Error::Io {
            op: Op::Read,
            path: file.to_owned(),
            value: None,
            source,
        })?;
        let rel = own_cgroup_path(&text).ok_or_else(|| Error::Parse {
            path: file.to_owned(),
            line: text.clone(),
            reason: "no cgroup v2 (`0::`) line".into(),
        })?;
        let root = Cgroup::root()?;
        if rel.is_empty() {
            return Ok(root);
        }
        root.open_child(rel)
    }

    fn from_dir(dir: Dir) -> Cgroup {
        Cgroup {
            dir,
            remove_on_drop: AtomicBool::new(false),
        }
    }

    /// Creates a child cgroup; fails with [`Error::Exists`] when it is already there.
    /// The new handle removes the cgroup on drop.
    ///
    /// ```no_run
    /// let root = qube_cgroup::Cgroup::root()?;
    /// let job = root.create("job-42")?;
    /// assert!(root.children()?.contains(&"job-42".to_string()));
    /// drop(job); // killed and removed
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn create(&self, name: &str) -> Result<Cgroup> {
        validate_name(name)?;
        self.dir.mkdir(name)?;
        let child = self.open_child(name)?;
        child.remove_on_drop.store(true, Ordering::Relaxed);
        Ok(child)
    }

    /// Creates a child cgroup, or opens it when it exists. Only a cgroup this call
    /// created is removed on drop.
    ///
    /// ```no_run
    /// let root = qube_cgroup::Cgroup::root()?;
    /// let a = root.create_or_open("shared")?.persist();
    /// let b = root.create_or_open("shared")?;
    /// assert_eq!(a.path(), b.path());
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn create_or_open(&self, name: &str) -> Result<Cgroup> {
        match self.create(name) {
            Err(Error::Exists { .. }) => self.open_child(name),
            other => other,
        }
    }

    /// Opens an existing descendant by a relative path (`"a"` or `"a/b"`); no component
    /// may leave this cgroup.
    ///
    /// ```no_run
    /// let root = qube_cgroup::Cgroup::root()?;
    /// let svc = root.open_child("system.slice/cron.service")?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn open_child(&self, rel: &str) -> Result<Cgroup> {
        for part in rel.split('/').filter(|p| !p.is_empty()) {
            validate_name(part)?;
        }
        Ok(Cgroup::from_dir(self.dir.open_beneath(rel)?))
    }

    /// The names of the child cgroups, sorted.
    ///
    /// ```no_run
    /// for name in qube_cgroup::Cgroup::root()?.children()? {
    ///     println!("{name}");
    /// }
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn children(&self) -> Result<Vec<String>> {
        self.dir.subdirs()
    }

    /// Opens the parent cgroup (the handle does not remove it on drop).
    ///
    /// ```no_run
    /// let me = qube_cgroup::Cgroup::open_self()?;
    /// let parent = me.parent()?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn parent(&self) -> Result<Cgroup> {
        Ok(Cgroup::from_dir(self.dir.open_parent()?))
    }

    /// The cgroup's absolute path on cgroupfs.
    ///
    /// ```no_run
    /// assert!(qube_cgroup::Cgroup::root()?.path().is_absolute());
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The last component of the path.
    ///
    /// ```no_run
    /// let cg = qube_cgroup::Cgroup::root()?.create("named")?;
    /// assert_eq!(cg.name(), "named");
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn name(&self) -> &str {
        self.path()
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
    }

    /// Keeps the cgroup when the handle is dropped.
    ///
    /// ```no_run
    /// let cg = qube_cgroup::Cgroup::root()?.create("kept")?.persist();
    /// assert!(!cg.removes_on_drop());
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn persist(self) -> Cgroup {
        self.remove_on_drop.store(false, Ordering::Relaxed);
        self
    }

    /// Kills and removes the cgroup when the handle is dropped, even if it was only opened.
    ///
    /// ```no_run
    /// let cg = qube_cgroup::Cgroup::open("/sys/fs/cgroup/leftover")?.remove_on_drop();
    /// assert!(cg.removes_on_drop());
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn remove_on_drop(self) -> Cgroup {
        self.remove_on_drop.store(true, Ordering::Relaxed);
        self
    }

    /// Whether dropping the handle kills and removes the cgroup.
    ///
    /// ```no_run
    /// assert!(!qube_cgroup::Cgroup::root()?.removes_on_drop());
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn removes_on_drop(&self) -> bool {
        self.remove_on_drop.load(Ordering::Relaxed)
    }

    /// Moves a process (all its threads) into this cgroup.
    ///
    /// A task still being set up by `fork` makes the kernel answer EINVAL for a moment;
    /// that is retried briefly before it is reported.
    ///
    /// ```no_run
    /// let cg = qube_cgroup::Cgroup::root()?.create("attach-demo")?;
    /// let child = std::process::Command::new("sleep").arg("1").spawn().unwrap();
    /// cg.attach(child.id())?;
    /// assert_eq!(cg.procs()?, [child.id()]);
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn attach(&self, pid: u32) -> Result<()> {
        self.write_pid("cgroup.procs", pid)
    }

    /// Moves one thread into this cgroup (threaded cgroups only).
    ///
    /// ```no_run
    /// let cg = qube_cgroup::Cgroup::root()?.create("threads")?;
    /// cg.attach_thread(nix::unistd::gettid().as_raw() as u32)?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn attach_thread(&self, tid: u32) -> Result<()> {
        self.write_pid("cgroup.threads", tid)
    }

    fn write_pid(&self, file: &str, pid: u32) -> Result<()> {
        const ATTEMPTS: usize = 100;
        for _ in 1..ATTEMPTS {
            match self.dir.write_value(file, &pid) {
                Err(Error::Io { source, .. })
                    if source.raw_os_error() == Some(Errno::EINVAL as i32) =>
                {
                    std::thread::yield_now();
                }
                other => return other,
            }
        }
        self.dir.write_value(file, &pid)
    }

    /// The processes in this cgroup (not its descendants).
    ///
    /// ```no_run
    /// let pids = qube_cgroup::Cgroup::open_self()?.procs()?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn procs(&self) -> Result<Vec<u32>> {
        self.read_pids("cgroup.procs")
    }

    /// The threads in this cgroup.
    ///
    /// ```no_run
    /// let tids = qube_cgroup::Cgroup::open_self()?.threads()?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn threads(&self) -> Result<Vec<u32>> {
        self.read_pids("cgroup.threads")
    }

    fn read_pids(&self, file: &str) -> Result<Vec<u32>> {
        let text = self.dir.read(file)?;
        text.lines()
            .map(|line| {
                line.parse()
                    .map_err(|_| self.dir.parse_error(file, line, "expected a pid"))
            })
            .collect()
    }

    /// Removes the (empty) cgroup. A cgroup with processes or children gives
    /// [`Error::Busy`], naming them; the handle then stays usable.
    ///
    /// ```no_run
    /// let cg = qube_cgroup::Cgroup::root()?.create("tmp")?;
    /// cg.remove()?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn remove(&self) -> Result<()> {
        if self.try_rmdir()? {
            return Ok(());
        }
        Err(Error::Busy {
            path: self.path().to_owned(),
            pids: self.procs().unwrap_or_default(),
            children: self.children().unwrap_or_default(),
        })
    }

    /// `rmdir` through the parent's fd: `Ok(true)` when the cgroup is gone (now or
    /// before), `Ok(false)` when it still has processes or children.
    pub(crate) fn try_rmdir(&self) -> Result<bool> {
        let parent = self.dir.open_parent()?;
        match parent.rmdir(self.name()) {
            Ok(()) | Err(Errno::ENOENT) => {
                // Gone: there is nothing left for the drop to clean up.
                self.remove_on_drop.store(false, Ordering::Relaxed);
                Ok(true)
            }
            Err(Errno::EBUSY) | Err(Errno::ENOTEMPTY) => Ok(false),
            Err(e) => Err(parent.classify(Op::Remove, self.name(), None, e)),
        }
    }

    /// The directory fd (for `CLONE_INTO_CGROUP`, or `openat` of files this crate does not wrap).
    ///
    /// ```no_run
    /// use std::os::fd::AsRawFd;
    /// let cg = qube_cgroup::Cgroup::root()?;
    /// assert!(cg.dir_fd().as_raw_fd() >= 0);
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn dir_fd(&self) -> BorrowedFd<'_> {
        self.dir.fd()
    }

    /// Reads any interface file as text (for files this crate has no typed accessor for).
    ///
    /// ```no_run
    /// let text = qube_cgroup::Cgroup::root()?.read_file("cgroup.controllers")?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn read_file(&self, file: &str) -> Result<String> {
        validate_file(file)?;
        self.dir.read(file)
    }

    /// Writes any interface file in one `write(2)`.
    ///
    /// ```no_run
    /// qube_cgroup::Cgroup::root()?.create("raw")?.write_file("memory.high", "1G")?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn write_file(&self, file: &str, value: &str) -> Result<()> {
        validate_file(file)?;
        self.dir.write_bytes(file, value.as_bytes())
    }

    pub(crate) fn path_of(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }
}

impl AsFd for Cgroup {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.dir.fd()
    }
}

/// The `0::/path` line of `/proc/self/cgroup`, without the leading slash.
fn own_cgroup_path(proc_self_cgroup: &str) -> Option<&str> {
    proc_self_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(|path| path.trim_start_matches('/'))
}

/// Interface-file prefixes a cgroup name may not start with, so it cannot collide with one.
const RESERVED_PREFIXES: [&str; 9] = [
    "cgroup.", "cpuset.", "cpu.", "io.", "memory.", "hugetlb.", "pids.", "rdma.", "misc.",
];

/// Checks a single cgroup name component.
///
/// ```
/// use qube_cgroup::validate_name;
/// assert!(validate_name("web-1").is_ok());
/// for bad in ["", ".", "..", "a/b", "a\0b", "memory.max", "cgroup.procs"] {
///     assert!(validate_name(bad).is_err(), "{bad:?}");
/// }
/// ```
pub fn validate_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "empty"
    } else if name == "." || name == ".." {
        "`.` and `..` are not cgroups"
    } else if name.contains('/') {
        "contains `/`"
    } else if name.contains('\0') {
        "contains a NUL byte"
    } else if name.contains('\n') {
        "contains a newline"
    } else if name.len() > 255 {
        "longer than 255 bytes"
    } else if RESERVED_PREFIXES.iter().any(|p| name.starts_with(p)) {
        "collides with the interface files' names (cgroup.*, memory.*, ...)"
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        name: name.to_owned(),
        reason,
    })
}

/// An interface file name: one component, nothing that walks out.
fn validate_file(file: &str) -> Result<()> {
    if file.is_empty() || file.contains('/') || file.contains('\0') || file.starts_with('.') {
        return Err(Error::invalid(
            "interface file name",
            file,
            "must be one file name such as memory.max",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn own_path_from_hybrid_proc_self_cgroup() {
        let text =
            "12:memory:/user.slice\n1:name=systemd:/user.slice\n0::/user.slice/session-1.scope\n";
        assert_eq!(own_cgroup_path(text), Some("user.slice/session-1.scope"));
        assert_eq!(own_cgroup_path("0::/\n"), Some(""));
        assert_eq!(own_cgroup_path("1:cpu:/\n"), None);
    }

    proptest! {
        #[test]
        fn valid_names_never_escape(name in "\\PC{0,300}") {
            if validate_name(&name).is_ok() {
                prop_assert!(!name.contains('/') && name != ".." && name != "." && !name.is_empty());
                prop_assert!(name.len() <= 255);
            }
        }
    }
}
