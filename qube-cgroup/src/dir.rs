//! The only place that touches the filesystem.
//!
//! A [`Dir`] owns a directory fd on cgroupfs and opens every interface file relative to
//! it (`openat`, never `O_CREAT`, never following a symlink). Multi-component paths go
//! through `openat2(RESOLVE_BENEATH)` where the kernel has it. The path is kept only for
//! error messages, and every errno gets its meaning here, once.

use std::fmt::Display;
use std::io::{self, Write as _};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{self, OFlag};
use nix::sys::stat::Mode;
use nix::unistd::{self, UnlinkatFlags};

use crate::controller::Controller;
use crate::error::{Error, Op, Result};

/// Flags for every interface-file open: no creation, no symlinks, no fd leak across exec.
const FILE_FLAGS: OFlag = OFlag::O_CLOEXEC.union(OFlag::O_NOFOLLOW);
const DIR_FLAGS: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_CLOEXEC)
    .union(OFlag::O_NOFOLLOW);
/// A handle's own fd only anchors `*at` calls (and `CLONE_INTO_CGROUP`, which takes
/// O_PATH): it opens no file on cgroupfs, which keeps removal as cheap as a plain rmdir.
const HANDLE_FLAGS: OFlag = OFlag::O_PATH
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_CLOEXEC)
    .union(OFlag::O_NOFOLLOW);

/// Single-value files (memory.max, pids.current, ...) fit in this; no allocation to read them.
const SMALL: usize = 128;
/// Multi-line files are read a page at a time.
const PAGE: usize = 4096;

/// The files where EOPNOTSUPP means the threaded-subtree rules (cgroup-v2.rst, "Threads").
const THREAD_MODE_FILES: [&str; 4] = [
    "cgroup.procs",
    "cgroup.threads",
    "cgroup.subtree_control",
    "cgroup.type",
];

/// The files where EBUSY means the no-internal-processes rule (cgroup-v2.rst, "No Internal
/// Process Constraint"): a process moved into a cgroup that distributes domain controllers,
/// or controllers enabled in one that holds processes. Elsewhere EBUSY means something
/// else (cpuset's exclusivity rules, for one), so it stays the errno it is.
const NO_INTERNAL_PROCESS_FILES: [&str; 3] =
    ["cgroup.procs", "cgroup.threads", "cgroup.subtree_control"];

/// Set once `openat2` answered ENOSYS, so later opens go straight to the fallback.
static NO_OPENAT2: AtomicBool = AtomicBool::new(false);

/// An open cgroup directory.
#[derive(Debug)]
pub(crate) struct Dir {
    fd: OwnedFd,
    path: PathBuf,
}

impl Dir {
    /// Opens an absolute directory path.
    pub(crate) fn open(path: &Path) -> Result<Dir> {
        let fd = fcntl::open(path, HANDLE_FLAGS, Mode::empty())
            .map_err(|e| classify_dir(Op::Open, path, e))?;
        Ok(Dir {
            fd,
            path: path.to_owned(),
        })
    }

    /// The directory's path, for messages.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The directory fd (for `CLONE_INTO_CGROUP`, `fchdir`, ...).
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// A path below this directory, for messages.
    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Opens a directory beneath this one; `rel` must not escape it.
    pub(crate) fn open_beneath(&self, rel: &str) -> Result<Dir> {
        let fd = openat_beneath(self.fd(), rel)
            .map_err(|e| classify_dir(Op::Open, &self.join(rel), e))?;
        Ok(Dir {
            fd,
            path: self.join(rel),
        })
    }

    /// Opens the parent directory.
    pub(crate) fn open_parent(&self) -> Result<Dir> {
        let parent = self.path.parent().unwrap_or(&self.path).to_owned();
        let fd = fcntl::openat(self.fd(), "..", HANDLE_FLAGS, Mode::empty())
            .map_err(|e| classify_dir(Op::Open, &parent, e))?;
        Ok(Dir { fd, path: parent })
    }

    /// Creates a child directory; `name` has been validated.
    pub(crate) fn mkdir(&self, name: &str) -> Result<()> {
        nix::sys::stat::mkdirat(self.fd(), name, Mode::from_bits_truncate(0o755)).map_err(|e| {
            match e {
                Errno::EEXIST => Error::Exists {
                    path: self.join(name),
                },
                Errno::EAGAIN => Error::LimitReached {
                    path: self.join(name),
                },
                e => classify_dir(Op::Create, &self.join(name), e),
            }
        })
    }

    /// Removes a child directory. EBUSY is returned raw so the caller can name the pids.
    pub(crate) fn rmdir(&self, name: &str) -> std::result::Result<(), Errno> {
        unistd::unlinkat(self.fd(), name, UnlinkatFlags::RemoveDir)
    }

    /// Names of the child directories (the child cgroups).
    pub(crate) fn subdirs(&self) -> Result<Vec<String>> {
        let err = |e| classify_dir(Op::List, &self.path, e);
        let mut dir =
            nix::dir::Dir::openat(self.fd(), ".", DIR_FLAGS, Mode::empty()).map_err(err)?;
        let mut names = Vec::new();
        for entry in dir.iter() {
            let entry = entry.map_err(err)?;
            let is_dir = entry.file_type() == Some(nix::dir::Type::Directory);
            let name = entry.file_name().to_string_lossy();
            if is_dir && name != "." && name != ".." {
                names.push(name.into_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Opens an interface file for reading (the fd outlives one read, e.g. for `poll`).
    pub(crate) fn open_file(&self, file: &str) -> Result<OwnedFd> {
        self.open_flags(file, OFlag::O_RDONLY, Op::Open)
    }

    /// Opens an interface file for reading and writing: a `*.pressure` file takes a PSI
    /// trigger written to the same fd that is then polled.
    pub(crate) fn open_file_rdwr(&self, file: &str) -> Result<OwnedFd> {
        self.open_flags(file, OFlag::O_RDWR, Op::Open)
    }

    fn open_flags(&self, file: &str, flags: OFlag, op: Op) -> Result<OwnedFd> {
        fcntl::openat(self.fd(), file, flags | FILE_FLAGS, Mode::empty())
            .map_err(|e| self.classify(op, file, None, e))
    }

    /// Reads a whole interface file into `buf` (cleared first).
    pub(crate) fn read_into(&self, file: &str, buf: &mut String) -> Result<()> {
        let fd = self.open_flags(file, OFlag::O_RDONLY, Op::Read)?;
        buf.clear();
        read_fd_into(fd.as_fd(), buf).map_err(|e| self.classify(Op::Read, file, None, e))
    }

    /// Reads a whole interface file.
    pub(crate) fn read(&self, file: &str) -> Result<String> {
        let mut buf = String::with_capacity(SMALL);
        self.read_into(file, &mut buf)?;
        Ok(buf)
    }

    /// Reads a whole interface file and parses it; a parse error names the file's path.
    pub(crate) fn read_parsed<T>(&self, file: &str, parse: fn(String) -> Result<T>) -> Result<T> {
        parse(self.read(file)?).map_err(|e| match e {
            Error::Parse { line, reason, .. } => self.parse_error(file, &line, reason),
            other => other,
        })
    }

    /// Reads a single-value file and parses it, without allocating for the text when it
    /// fits in `SMALL` bytes; a longer file (cpuset.cpus on a large machine) is read whole.
    pub(crate) fn read_value<T>(&self, file: &str) -> Result<T>
    where
        T: FromStr<Err = Error>,
    {
        let fd = self.open_flags(file, OFlag::O_RDONLY, Op::Read)?;
        let read_err = |e| self.classify(Op::Read, file, None, e);
        let mut buf = [0u8; SMALL];
        let mut len = 0;
        loop {
            let n = unistd::read(fd.as_fd(), &mut buf[len..]).map_err(read_err)?;
            len += n;
            if len == buf.len() {
                // A full buffer says nothing about the end, even if it ends a line: the
                // rest may follow, and a truncated value would parse as a wrong one.
                let mut bytes = Vec::with_capacity(SMALL + PAGE);
                bytes.extend_from_slice(&buf);
                read_to_end(fd.as_fd(), &mut bytes).map_err(read_err)?;
                return self.parse_value(file, &bytes);
            }
            // kernfs hands out a whole single-value file in one read: a short read that
            // ends its line is the end, which saves the read that would return 0.
            if n == 0 || buf[..len].ends_with(b"\n") {
                break;
            }
        }
        self.parse_value(file, &buf[..len])
    }

    fn parse_value<T>(&self, file: &str, bytes: &[u8]) -> Result<T>
    where
        T: FromStr<Err = Error>,
    {
        let text =
            std::str::from_utf8(bytes).map_err(|_| self.parse_error(file, "", "not UTF-8"))?;
        let text = text.trim_end_matches('\n');
        text.parse::<T>()
            .map_err(|e| self.parse_error(file, text, e.to_string()))
    }

    /// Writes a value to an interface file in a single `write(2)`, as the kernel wants.
    pub(crate) fn write_value(&self, file: &str, value: &dyn Display) -> Result<()> {
        let mut buf = [0u8; SMALL];
        let mut cursor = io::Cursor::new(&mut buf[..]);
        if write!(cursor, "{value}").is_ok() {
            let len = usize::try_from(cursor.position()).unwrap_or(SMALL);
            return self.write_bytes(file, &buf[..len]);
        }
        self.write_bytes(file, value.to_string().as_bytes())
    }

    /// Writes raw bytes to an interface file in a single `write(2)`.
    pub(crate) fn write_bytes(&self, file: &str, bytes: &[u8]) -> Result<()> {
        let value = || Some(String::from_utf8_lossy(bytes).into_owned());
        let fd = self
            .open_flags(file, OFlag::O_WRONLY, Op::Write)
            .map_err(|e| with_value(e, value()))?;
        match unistd::write(&fd, bytes) {
            Ok(n) if n == bytes.len() => Ok(()),
            Ok(_) => Err(self.classify(Op::Write, file, value(), Errno::EIO)),
            Err(e) => Err(self.classify(Op::Write, file, value(), e)),
        }
    }

    pub(crate) fn parse_error(&self, file: &str, line: &str, reason: impl Into<String>) -> Error {
        Error::Parse {
            path: self.join(file),
            line: line.to_owned(),
            reason: reason.into(),
        }
    }

    /// Turns an errno on an interface file into what it means for a cgroup.
    pub(crate) fn classify(
        &self,
        op: Op,
        file: &str,
        value: Option<String>,
        errno: Errno,
    ) -> Error {
        let path = self.join(file);
        match errno {
            Errno::ENOENT => self.missing_file(op, file, path),
            Errno::EBUSY if NO_INTERNAL_PROCESS_FILES.contains(&file) => {
                Error::InternalProcess { op, path, value }
            }
            Errno::EOPNOTSUPP if THREAD_MODE_FILES.contains(&file) => {
                Error::Threaded { op, path, value }
            }
            Errno::EACCES | Errno::EPERM | Errno::EROFS => Error::Permission {
                op,
                path,
                source: io::Error::from(errno),
            },
            // A removed cgroup's open files answer ENODEV; so does io.max for an unknown disk.
            Errno::ENODEV if self.is_removed() => Error::NotFound {
                op,
                path: self.path.clone(),
            },
            e => Error::Io {
                op,
                path,
                value,
                source: io::Error::from(e),
            },
        }
    }

    /// Whether the cgroup behind the fd was removed: every live cgroup has cgroup.procs.
    fn is_removed(&self) -> bool {
        nix::sys::stat::fstatat(
            self.fd(),
            "cgroup.procs",
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .is_err()
    }

    /// A missing interface file: a controller not enabled, a feature this kernel lacks,
    /// or a cgroup that was removed. Only this error path pays for finding out which.
    fn missing_file(&self, op: Op, file: &str, path: PathBuf) -> Error {
        if self.is_removed() {
            return Error::NotFound {
                op,
                path: self.path.clone(),
            };
        }
        let Some(controller) = Controller::of_file(file) else {
            return Error::Unsupported { op, path };
        };
        let enabled = self
            .read("cgroup.controllers")
            .map(|text| text.split_whitespace().any(|c| c == controller.name()))
            .unwrap_or(false);
        if enabled {
            return Error::Unsupported { op, path };
        }
        let v1_mount = crate::mount::Mounts::current()
            .ok()
            .and_then(|m| m.v1_mount_of(controller).map(Path::to_owned));
        match v1_mount {
            Some(v1_mount) => Error::ControllerUnavailable {
                controller,
                path: self.path.clone(),
                v1_mount: Some(v1_mount),
            },
            None => Error::ControllerNotEnabled {
                op,
                path,
                controller,
            },
        }
    }
}

impl AsFd for Dir {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Reads an fd to its end, appending to `buf`.
pub(crate) fn read_fd_into(fd: BorrowedFd<'_>, buf: &mut String) -> std::result::Result<(), Errno> {
    let mut bytes = std::mem::take(buf).into_bytes();
    let result = read_to_end(fd, &mut bytes);
    *buf = match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    };
    result
}

fn read_to_end(fd: BorrowedFd<'_>, bytes: &mut Vec<u8>) -> std::result::Result<(), Errno> {
    loop {
        // A page at a time: memory.stat and friends then take one read plus the EOF read.
        if bytes.capacity() - bytes.len() < PAGE {
            bytes.reserve(PAGE);
        }
        let len = bytes.len();
        let spare = bytes.capacity() - len;
        bytes.resize(len + spare, 0);
        match unistd::read(fd, &mut bytes[len..]) {
            Ok(0) => {
                bytes.truncate(len);
                return Ok(());
            }
            Ok(n) => bytes.truncate(len + n),
            Err(Errno::EINTR) => bytes.truncate(len),
            Err(e) => {
                bytes.truncate(len);
                return Err(e);
            }
        }
    }
}

/// Opens `rel` beneath `dir` so that no component (`..`, a symlink, a mount) leads out.
fn openat_beneath(dir: BorrowedFd<'_>, rel: &str) -> std::result::Result<OwnedFd, Errno> {
    if !NO_OPENAT2.load(Ordering::Relaxed) {
        let how = fcntl::OpenHow::new()
            .flags(HANDLE_FLAGS)
            .resolve(fcntl::ResolveFlag::RESOLVE_BENEATH | fcntl::ResolveFlag::RESOLVE_NO_SYMLINKS);
        match fcntl::openat2(dir, rel, how) {
            Err(Errno::ENOSYS) => NO_OPENAT2.store(true, Ordering::Relaxed),
            result => return result,
        }
    }
    // Without openat2: one validated component at a time, each opened with O_NOFOLLOW.
    let mut current: Option<OwnedFd> = None;
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        if part == "." || part == ".." {
            return Err(Errno::EXDEV);
        }
        let base = current.as_ref().map_or(dir, |fd| fd.as_fd());
        current = Some(fcntl::openat(base, part, HANDLE_FLAGS, Mode::empty())?);
    }
    match current {
        Some(fd) => Ok(fd),
        None => fcntl::openat(dir, ".", HANDLE_FLAGS, Mode::empty()),
    }
}

/// Errors on a cgroup directory itself.
fn classify_dir(op: Op, path: &Path, errno: Errno) -> Error {
    let path = path.to_owned();
    match errno {
        Errno::ENOENT | Errno::ENOTDIR | Errno::ENODEV => Error::NotFound { op, path },
        Errno::EXDEV | Errno::ELOOP => Error::InvalidName {
            name: path.display().to_string(),
            reason: "the path leaves the cgroup it is relative to",
        },
        Errno::EACCES | Errno::EPERM | Errno::EROFS => Error::Permission {
            op,
            path,
            source: io::Error::from(errno),
        },
        e => Error::Io {
            op,
            path,
            value: None,
            source: io::Error::from(e),
        },
    }
}

fn with_value(err: Error, value: Option<String>) -> Error {
    match err {
        Error::Io {
            op, path, source, ..
        } => Error::Io {
            op,
            path,
            value,
            source,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The text as read, so a test sees exactly what `read_value` handed to the parser.
    #[derive(Debug, PartialEq)]
    struct Text(String);

    impl FromStr for Text {
        type Err = Error;

        fn from_str(text: &str) -> Result<Text> {
            Ok(Text(text.to_owned()))
        }
    }

    fn read_back(contents: &str) -> String {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(tmp.path().join("value"), contents).expect("write the file");
        let dir = Dir::open(tmp.path()).expect("open the directory");
        let Text(text) = dir.read_value("value").expect("read the value");
        text
    }

    #[test]
    fn small_values_are_read_whole() {
        assert_eq!(read_back("max\n"), "max");
        assert_eq!(read_back(""), "");
        assert_eq!(read_back("no newline"), "no newline");
    }

    #[test]
    fn values_longer_than_the_small_buffer_are_read_whole() {
        // cpuset.cpus.effective on a large machine with scattered CPUs.
        let cpus: Vec<String> = (0..200).map(|c| (c * 2).to_string()).collect();
        let long = cpus.join(",");
        assert!(long.len() > SMALL);
        assert_eq!(read_back(&format!("{long}\n")), long);
        // Longer than a page after the buffer, too.
        let huge = "7,".repeat(PAGE * 2) + "7";
        assert_eq!(read_back(&format!("{huge}\n")), huge);
    }

    #[test]
    fn a_full_buffer_that_ends_a_line_is_not_taken_as_the_end() {
        let first = "1".repeat(SMALL - 1);
        let both = format!("{first}\n2\n");
        assert_eq!(read_back(&both), format!("{first}\n2"));
        let exact = "3".repeat(SMALL - 1);
        assert_eq!(read_back(&format!("{exact}\n")), exact);
        let over = "4".repeat(SMALL);
        assert_eq!(read_back(&format!("{over}\n")), over);
    }

    #[test]
    fn ebusy_is_the_no_internal_processes_rule_only_where_that_rule_applies() {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let dir = Dir::open(tmp.path()).expect("open the directory");
        for file in NO_INTERNAL_PROCESS_FILES {
            let err = dir.classify(Op::Write, file, Some("1".into()), Errno::EBUSY);
            assert!(
                matches!(err, Error::InternalProcess { .. }),
                "{file}: {err}"
            );
        }
        // cpuset's validate_change answers EBUSY to a cpuset.cpus that no longer holds a
        // child's (on the v2 hierarchy too, up to Linux 6.6): nothing to do with processes,
        // so the errno is kept as it is.
        let err = dir.classify(Op::Write, "cpuset.cpus", Some("0".into()), Errno::EBUSY);
        assert!(matches!(err, Error::Io { .. }), "{err}");
        assert_eq!(err.raw_os_error(), Some(Errno::EBUSY as i32));
    }
}
