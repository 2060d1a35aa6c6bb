//! Unpacking a root filesystem tarball (plain or gzip, e.g. the output of `docker export`)
//! without ever writing outside the destination.
//!
//! The whole archive is checked before anything is written: an entry whose path is
//! absolute or has a `..` component, a hard link to such a path, or a relative symlink
//! that climbs above the archive's root refuses the archive. Absolute symlink targets are
//! kept: inside the container they resolve within its root, and nothing here follows
//! them. While unpacking, no path is ever resolved through a symlink: every parent must be
//! a real directory, and what an entry replaces is removed first, not written through.
//!
//! Both passes read one open file, and the writing pass checks every entry again: whoever
//! owns the archive may rewrite it between the passes, and a plan made from the first
//! pass says nothing about what the second one reads.

use std::fs::{self, File, FileTimes, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{fchown, lchown, symlink, DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::sys::stat::{utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;
use tar::EntryType;

/// Why an archive was not unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UntarError {
    /// The archive is unsafe. Nothing was written, unless the archive changed after it
    /// was checked: the caller removes the destination either way.
    #[error("refusing {archive}: {reason}")]
    Refused {
        /// The archive's path.
        archive: PathBuf,
        /// Which entry and why.
        reason: String,
    },
    /// The archive could not be read or is not a tar archive.
    #[error("reading {archive}: {source}")]
    Read {
        /// The archive's path.
        archive: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// Writing the tree failed (a full disk, a permission): the archive may be fine.
    #[error("unpacking {archive}: {source}")]
    Write {
        /// The archive's path.
        archive: PathBuf,
        /// The error.
        source: io::Error,
    },
}

/// What the unpacking did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Unpacked {
    /// Entries written.
    pub entries: u64,
    /// Device nodes, fifos and sockets left out: the runtime provides `/dev`.
    pub skipped: u64,
}

/// Checks the whole archive, then unpacks it into `dest` (an existing empty directory).
pub fn unpack(archive: &Path, dest: &Path) -> Result<Unpacked, UntarError> {
    unpack_with(archive, dest, || {})
}

/// [`unpack`], calling `between` after the checking pass, where tests change the archive.
fn unpack_with(
    archive: &Path,
    dest: &Path,
    between: impl FnOnce(),
) -> Result<Unpacked, UntarError> {
    let fail = |fault| match fault {
        Fault::Read(source) => UntarError::Read {
            archive: archive.to_owned(),
            source,
        },
        Fault::Write(source) => UntarError::Write {
            archive: archive.to_owned(),
            source,
        },
        Fault::Unsafe(reason) => UntarError::Refused {
            archive: archive.to_owned(),
            reason,
        },
    };
    let file = File::open(archive).map_err(|e| fail(Fault::Read(e)))?;
    let plans = check(open(&file).map_err(|e| fail(Fault::Read(e)))?).map_err(fail)?;
    between();
    let mut tar = open(&file).map_err(|e| fail(Fault::Read(e)))?;
    let changed = || {
        fail(Fault::Unsafe(
            "the archive changed while it was being read".into(),
        ))
    };
    let mut planned = plans.into_iter();
    let mut done = Unpacked::default();
    for entry in tar.entries().map_err(|e| fail(Fault::Read(e)))? {
        let mut entry = entry.map_err(|e| fail(Fault::Read(e)))?;
        let plan = plan(&entry).map_err(fail)?;
        if planned.next().as_ref() != Some(&plan) {
            return Err(changed());
        }
        match plan {
            Plan::Skip => done.skipped += 1,
            Plan::Write { rel, kind, link } => {
                write_entry(&mut entry, dest, &rel, kind, link.as_deref()).map_err(|e| {
                    fail(match e {
                        Fault::Read(e) => Fault::Read(annotate(e, &rel)),
                        Fault::Write(e) => Fault::Write(annotate(e, &rel)),
                        unsafe_entry => unsafe_entry,
                    })
                })?;
                done.entries += 1;
            }
        }
    }
    if planned.next().is_some() {
        return Err(changed());
    }
    Ok(done)
}

fn annotate(e: io::Error, rel: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("entry {}: {e}", rel.display()))
}

/// The archive from its start, through a gzip decoder when it starts with gzip's magic
/// bytes.
fn open(file: &File) -> io::Result<tar::Archive<Box<dyn Read + '_>>> {
    let mut reader = file;
    reader.seek(SeekFrom::Start(0))?;
    let mut magic = [0u8; 2];
    let gzip = reader.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    reader.seek(SeekFrom::Start(0))?;
    let reader = BufReader::new(reader);
    let reader: Box<dyn Read> = if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(reader))
    } else {
        Box::new(reader)
    };
    Ok(tar::Archive::new(reader))
}

/// Why an entry was not written: the archive's fault (reading it, or what it holds) or
/// this machine's (writing the tree).
enum Fault {
    Read(io::Error),
    Write(io::Error),
    Unsafe(String),
}

/// What to do with one entry.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// Write it at this path below the destination.
    Write {
        rel: PathBuf,
        kind: EntryType,
        /// A link's checked target.
        link: Option<PathBuf>,
    },
    /// Leave it out.
    Skip,
}

/// Reads every header and decides each entry's fate, refusing the archive on the first
/// unsafe one.
fn check<R: Read>(mut tar: tar::Archive<R>) -> Result<Vec<Plan>, Fault> {
    let mut plans = Vec::new();
    for entry in tar.entries().map_err(Fault::Read)? {
        let entry = entry.map_err(Fault::Read)?;
        plans.push(plan(&entry)?);
    }
    Ok(plans)
}

fn plan<R: Read>(entry: &tar::Entry<'_, R>) -> Result<Plan, Fault> {
    let raw = entry.path().map_err(Fault::Read)?;
    let rel = inside(&raw)
        .map_err(|why| Fault::Unsafe(format!("entry {:?} {why}", raw.display().to_string())))?;
    let kind = entry.header().entry_type();
    let link = match kind {
        EntryType::Regular | EntryType::Continuous | EntryType::Directory => None,
        EntryType::Symlink => {
            let target = link_target(entry, &raw)?;
            if climbs_out(&rel, &target) {
                return Err(Fault::Unsafe(format!(
                    "symlink {:?} -> {:?} points outside the image",
                    raw.display().to_string(),
                    target.display().to_string()
                )));
            }
            Some(target)
        }
        EntryType::Link => {
            let target = link_target(entry, &raw)?;
            let rel_target = inside(&target).map_err(|why| {
                Fault::Unsafe(format!(
                    "hard link {:?} -> {:?}: the target {why}",
                    raw.display().to_string(),
                    target.display().to_string()
                ))
            })?;
            Some(rel_target)
        }
        _ => return Ok(Plan::Skip),
    };
    if rel.as_os_str().is_empty() {
        // `./` itself: the destination exists already.
        return Ok(Plan::Skip);
    }
    Ok(Plan::Write { rel, kind, link })
}

fn link_target<R: Read>(entry: &tar::Entry<'_, R>, raw: &Path) -> Result<PathBuf, Fault> {
    entry
        .link_name()
        .map_err(Fault::Read)?
        .map(|t| t.into_owned())
        .ok_or_else(|| {
            Fault::Unsafe(format!(
                "link {:?} has no target",
                raw.display().to_string()
            ))
        })
}

/// The path relative to the archive's root, or why it would leave it.
pub fn inside(path: &Path) -> Result<PathBuf, &'static str> {
    let mut rel = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => rel.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("has a `..` component"),
            Component::RootDir | Component::Prefix(_) => return Err("is an absolute path"),
        }
    }
    Ok(rel)
}

/// Whether a relative symlink at `link` (relative to the root) resolves above the root.
/// Absolute targets resolve within the container's root and never climb out.
pub fn climbs_out(link: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth = link.components().count().saturating_sub(1);
    for c in target.components() {
        match c {
            Component::ParentDir if depth == 0 => return true,
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
    }
    false
}

fn write_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    dest: &Path,
    rel: &Path,
    kind: EntryType,
    link: Option<&Path>,
) -> Result<(), Fault> {
    make_parents(dest, rel)?;
    let dst = dest.join(rel);
    let header = entry.header();
    let mode = header.mode().map_err(Fault::Read)? & 0o7777;
    let (uid, gid) = (
        header.uid().map_err(Fault::Read)?,
        header.gid().map_err(Fault::Read)?,
    );
    let secs = header.mtime().map_err(Fault::Read)?;
    let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    let (uid, gid) = (to_id(uid), to_id(gid));
    match (kind, link) {
        (EntryType::Directory, _) => {
            match fs::symlink_metadata(&dst) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    fs::remove_file(&dst).map_err(Fault::Write)?;
                    fs::create_dir(&dst).map_err(Fault::Write)?;
                }
                Err(_) => fs::create_dir(&dst).map_err(Fault::Write)?,
            }
            fs::set_permissions(&dst, fs::Permissions::from_mode(mode)).map_err(Fault::Write)?;
            lchown(&dst, uid, gid).map_err(Fault::Write)?;
        }
        (EntryType::Link, Some(target)) => link_to_file(dest, target, &dst)?,
        (EntryType::Symlink, Some(target)) => {
            remove_non_directory(&dst).map_err(Fault::Write)?;
            symlink(target, &dst).map_err(Fault::Write)?;
            lchown(&dst, uid, gid).map_err(Fault::Write)?;
            let at = TimeSpec::new(i64::try_from(secs).unwrap_or(i64::MAX), 0);
            utimensat(
                nix::fcntl::AT_FDCWD,
                &dst,
                &at,
                &at,
                UtimensatFlags::NoFollowSymlink,
            )
            .map_err(|e| Fault::Write(e.into()))?;
        }
        (EntryType::Regular | EntryType::Continuous, None) => {
            remove_non_directory(&dst).map_err(Fault::Write)?;
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&dst)
                .map_err(Fault::Write)?;
            copy_data(entry, &mut file)?;
            // Owner before mode: a chown clears the set-user-ID and set-group-ID bits.
            fchown(&file, uid, gid).map_err(Fault::Write)?;
            file.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(Fault::Write)?;
            file.set_times(FileTimes::new().set_accessed(mtime).set_modified(mtime))
                .map_err(Fault::Write)?;
        }
        (kind, _) => {
            return Err(Fault::Unsafe(format!(
                "entry {:?} of type {kind:?} cannot be written",
                rel.display().to_string()
            )))
        }
    }
    Ok(())
}

/// Copies an entry's data, telling the archive's read errors from the file's write errors.
fn copy_data<R: Read>(entry: &mut tar::Entry<'_, R>, file: &mut File) -> Result<(), Fault> {
    let expected = entry.size();
    let mut copied = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match entry.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Fault::Read(e)),
        };
        file.write_all(&buf[..n]).map_err(Fault::Write)?;
        copied += n as u64;
    }
    if copied != expected {
        return Err(Fault::Read(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("the archive ends {copied} bytes into this {expected}-byte entry"),
        )));
    }
    Ok(())
}

fn to_id(id: u64) -> Option<u32> {
    u32::try_from(id).ok()
}

/// Creates the missing parents of `rel` below `dest`; refuses to pass through anything
/// but a real directory, so that an earlier symlink entry cannot redirect a later one.
fn make_parents(dest: &Path, rel: &Path) -> Result<(), Fault> {
    let mut at = dest.to_path_buf();
    let parents: Vec<_> = rel.components().collect();
    for c in parents.iter().take(parents.len().saturating_sub(1)) {
        at.push(c);
        match fs::symlink_metadata(&at) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(Fault::Unsafe(format!(
                    "entry {:?} goes through {:?}, which is not a directory",
                    rel.display().to_string(),
                    at.strip_prefix(dest).unwrap_or(&at).display().to_string()
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&at)
                    .map_err(Fault::Write)?;
            }
            Err(e) => return Err(Fault::Write(e)),
        }
    }
    Ok(())
}

/// Removes a file or symlink at `path`, so the entry replaces it instead of writing through it.
fn remove_non_directory(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a directory is in the way",
        )),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// A hard link to a regular file already unpacked below `dest` (not through a symlink).
fn link_to_file(dest: &Path, target: &Path, dst: &Path) -> Result<(), Fault> {
    let refuse = |why: &str| {
        Fault::Unsafe(format!(
            "hard link to {:?}: {why}",
            target.display().to_string()
        ))
    };
    make_parents(dest, target).map_err(|_| refuse("it goes through a non-directory"))?;
    let source = dest.join(target);
    match fs::symlink_metadata(&source) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => return Err(refuse("it is not a regular file")),
        Err(_) => return Err(refuse("no such file earlier in the archive")),
    }
    remove_non_directory(dst).map_err(Fault::Write)?;
    fs::hard_link(&source, dst).map_err(Fault::Write)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar header with an arbitrary path, which `tar::Builder` would refuse to write.
    fn raw_header(path: &str, kind: EntryType, link: Option<&str>, size: u64) -> tar::Header {
        let mut h = tar::Header::new_old();
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        if let Some(link) = link {
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(size);
        h.set_cksum();
        h
    }

    enum E<'a> {
        File(&'a str, &'a [u8]),
        Dir(&'a str),
        Symlink(&'a str, &'a str),
        Hardlink(&'a str, &'a str),
        Char(&'a str),
    }

    fn archive(entries: &[E<'_>], gzip: bool) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            match *e {
                E::File(p, data) => {
                    let h = raw_header(p, EntryType::Regular, None, data.len() as u64);
                    b.append(&h, data).unwrap();
                }
                E::Dir(p) => b
                    .append(&raw_header(p, EntryType::Directory, None, 0), &[][..])
                    .unwrap(),
                E::Symlink(p, t) => b
                    .append(&raw_header(p, EntryType::Symlink, Some(t), 0), &[][..])
                    .unwrap(),
                E::Hardlink(p, t) => b
                    .append(&raw_header(p, EntryType::Link, Some(t), 0), &[][..])
                    .unwrap(),
                E::Char(p) => b
                    .append(&raw_header(p, EntryType::Char, None, 0), &[][..])
                    .unwrap(),
            }
        }
        let tar = b.into_inner().unwrap();
        if !gzip {
            return tar;
        }
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        gz.finish().unwrap()
    }

    /// Unpacks into `<tmp>/image/rootfs` and returns the result and the temp dir.
    fn try_unpack(
        entries: &[E<'_>],
        gzip: bool,
    ) -> (Result<Unpacked, UntarError>, tempfile::TempDir) {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a.tar");
        fs::write(&file, archive(entries, gzip)).unwrap();
        let dest = tmp.path().join("image/rootfs");
        fs::create_dir_all(&dest).unwrap();
        (unpack(&file, &dest), tmp)
    }

    /// Every path under `dir`, relative.
    fn tree(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                out.push(p.strip_prefix(dir).unwrap().display().to_string());
                if fs::symlink_metadata(&p).unwrap().is_dir() {
                    stack.push(p);
                }
            }
        }
        out.sort();
        out
    }

    fn refused(result: &Result<Unpacked, UntarError>) -> String {
        match result {
            Err(e @ UntarError::Refused { .. }) => e.to_string(),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_plain_rootfs_unpacks_with_links() {
        for gzip in [false, true] {
            let (result, tmp) = try_unpack(
                &[
                    E::Dir("./"),
                    E::Dir("./bin/"),
                    E::File("./bin/busybox", b"elf"),
                    E::Symlink("./bin/sh", "/bin/busybox"),
                    E::Symlink("./bin/ls", "busybox"),
                    E::Hardlink("./bin/bb2", "bin/busybox"),
                    E::File("etc/passwd", b"root:x:0:0::/:/bin/sh\n"),
                ],
                gzip,
            );
            let done = result.unwrap();
            assert_eq!(done.entries, 6);
            let root = tmp.path().join("image/rootfs");
            assert_eq!(
                tree(&root),
                [
                    "bin",
                    "bin/bb2",
                    "bin/busybox",
                    "bin/ls",
                    "bin/sh",
                    "etc",
                    "etc/passwd"
                ]
            );
            assert_eq!(
                fs::read_link(root.join("bin/sh")).unwrap(),
                Path::new("/bin/busybox")
            );
            assert_eq!(fs::read(root.join("bin/bb2")).unwrap(), b"elf");
        }
    }

    #[test]
    fn dot_dot_entries_are_refused_and_nothing_is_written() {
        let (result, tmp) = try_unpack(
            &[E::File("ok", b"fine"), E::File("../evil", b"pwned")],
            true,
        );
        assert!(refused(&result).contains("\"../evil\" has a `..` component"));
        assert_eq!(tree(tmp.path()), ["a.tar", "image", "image/rootfs"]);
    }

    #[test]
    fn absolute_entries_are_refused() {
        let (result, tmp) = try_unpack(&[E::File("/etc/evil", b"x")], false);
        assert!(refused(&result).contains("is an absolute path"));
        assert_eq!(tree(&tmp.path().join("image")), ["rootfs"]);
    }

    #[test]
    fn symlinks_climbing_out_are_refused() {
        let (result, _tmp) = try_unpack(&[E::Symlink("a/b", "../../outside")], false);
        assert!(refused(&result).contains("points outside the image"));
        assert!(!climbs_out(Path::new("a/b"), Path::new("../inside")));
        assert!(!climbs_out(
            Path::new("etc/mtab"),
            Path::new("/proc/mounts")
        ));
    }

    #[test]
    fn hard_links_out_are_refused() {
        let (result, _tmp) = try_unpack(&[E::Hardlink("x", "../../etc/shadow")], false);
        assert!(refused(&result).contains("the target has a `..` component"));
        let (result, _tmp) = try_unpack(&[E::Hardlink("x", "/etc/shadow")], false);
        assert!(refused(&result).contains("is an absolute path"));
    }

    #[test]
    fn nothing_is_written_through_a_symlink_entry() {
        // `dir -> /` (absolute, allowed: inside a container it is the container's root),
        // then `dir/escape`: unpacking it must not follow the link to the host's root.
        let tmp_outside = tempfile::tempdir().unwrap();
        let outside = tmp_outside.path().to_str().unwrap().to_owned();
        let (result, tmp) = try_unpack(
            &[E::Symlink("dir", &outside), E::File("dir/escape", b"x")],
            false,
        );
        assert!(
            refused(&result).contains("which is not a directory"),
            "{result:?}"
        );
        assert!(fs::read_dir(tmp_outside.path()).unwrap().next().is_none());
        assert!(!tmp.path().join("escape").exists());
    }

    /// Unpacks `first`, turned into `second` by `change` after the checking pass.
    fn unpack_changed(
        first: &[E<'_>],
        second: &[E<'_>],
        change: fn(&Path, &[u8]),
    ) -> (Result<Unpacked, UntarError>, tempfile::TempDir) {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a.tar");
        fs::write(&file, archive(first, false)).unwrap();
        let dest = tmp.path().join("image/rootfs");
        fs::create_dir_all(&dest).unwrap();
        let second = archive(second, false);
        let result = unpack_with(&file, &dest, || change(&file, &second));
        (result, tmp)
    }

    fn rewrite_in_place(path: &Path, data: &[u8]) {
        let mut f = fs::OpenOptions::new().write(true).open(path).unwrap();
        f.set_len(0).unwrap();
        f.write_all(data).unwrap();
    }

    fn replace_by_rename(path: &Path, data: &[u8]) {
        let new = path.with_extension("new");
        fs::write(&new, data).unwrap();
        fs::rename(&new, path).unwrap();
    }

    #[test]
    fn an_archive_rewritten_between_the_passes_is_checked_again() {
        let harmless = [E::File("a", b"x"), E::File("b", b"y")];
        let climbing = [E::Symlink("a", "../../outside"), E::File("b", b"y")];
        let (result, tmp) = unpack_changed(&harmless, &climbing, rewrite_in_place);
        assert!(
            refused(&result).contains("points outside the image"),
            "{result:?}"
        );
        assert!(fs::symlink_metadata(tmp.path().join("image/rootfs/a")).is_err());

        // A device node where a file was checked: its entry no longer matches the plan.
        let device = [E::Char("a"), E::File("b", b"y")];
        let (result, tmp) = unpack_changed(&harmless, &device, rewrite_in_place);
        assert!(refused(&result).contains("changed while"), "{result:?}");
        assert!(fs::symlink_metadata(tmp.path().join("image/rootfs/a")).is_err());

        let (result, _tmp) = unpack_changed(&harmless, &harmless[..1], rewrite_in_place);
        assert!(refused(&result).contains("changed while"), "{result:?}");

        // A new file renamed over the path is not read: the open one is.
        let (result, tmp) = unpack_changed(&harmless, &climbing, replace_by_rename);
        assert_eq!(result.unwrap().entries, 2);
        let root = tmp.path().join("image/rootfs");
        assert_eq!(fs::read(root.join("a")).unwrap(), b"x");
        assert_eq!(fs::read(root.join("b")).unwrap(), b"y");
    }

    #[test]
    fn write_failures_are_told_from_bad_archives() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a.tar");
        fs::write(&file, archive(&[E::File("a", b"x")], true)).unwrap();
        let missing = tmp.path().join("no/such/dir");
        let result = unpack(&file, &missing);
        assert!(
            matches!(&result, Err(UntarError::Write { source, .. }) if source.kind() == io::ErrorKind::NotFound),
            "{result:?}"
        );

        let big = vec![7u8; 100_000];
        let whole = archive(&[E::File("big", &big)], false);
        fs::write(&file, &whole[..4096]).unwrap();
        let dest = tmp.path().join("dest");
        fs::create_dir(&dest).unwrap();
        let result = unpack(&file, &dest);
        assert!(matches!(result, Err(UntarError::Read { .. })), "{result:?}");

        fs::write(
            &file,
            b"not a tarball at all, just some text that is long enough\n".repeat(20),
        )
        .unwrap();
        let result = unpack(&file, &dest);
        assert!(matches!(result, Err(UntarError::Read { .. })), "{result:?}");
    }

    #[test]
    fn modes_owners_and_times_are_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let mut h = raw_header("su", EntryType::Regular, None, 2);
        h.set_mode(0o4755);
        h.set_uid(1234);
        h.set_gid(5678);
        h.set_mtime(1_000_000);
        h.set_cksum();
        b.append(&h, &b"#!"[..]).unwrap();
        let file = tmp.path().join("a.tar");
        fs::write(&file, b.into_inner().unwrap()).unwrap();
        let dest = tmp.path().join("dest");
        fs::create_dir(&dest).unwrap();
        unpack(&file, &dest).unwrap();
        let meta = fs::metadata(dest.join("su")).unwrap();
        use std::os::unix::fs::MetadataExt;
        if nix::unistd::geteuid().is_root() {
            assert_eq!((meta.uid(), meta.gid()), (1234, 5678));
        }
        assert_eq!(meta.mode() & 0o7777, 0o4755);
        assert_eq!(meta.mtime(), 1_000_000);
    }
}
