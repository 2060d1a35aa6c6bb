//! Unpacking a root filesystem tarball (plain or gzip, e.g. the output of `docker export`)
//! without ever writing outside the destination.
//!
//! The whole archive is checked before anything is written: an entry whose path is
//! absolute or has a `..` component, a hard link to such a path, or a relative symlink
//! that climbs above the archive's root refuses the archive. Absolute symlink targets are
//! kept: inside the container they resolve within its root, and nothing here follows
//! them. While unpacking, no path is ever resolved through a symlink: every parent must be
//! a real directory, and what an entry replaces is removed first, not written through.

use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::{lchown, DirBuilderExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use tar::EntryType;

/// Why an archive was not unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UntarError {
    /// The archive is unsafe or malformed; nothing was written.
    #[error("refusing {archive}: {reason}")]
    Refused {
        /// The archive's path.
        archive: PathBuf,
        /// Which entry and why.
        reason: String,
    },
    /// Reading the archive or writing the tree failed.
    #[error("unpacking {archive}: {source}")]
    Io {
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
    let io_err = |source| UntarError::Io {
        archive: archive.to_owned(),
        source,
    };
    let refused = |reason| UntarError::Refused {
        archive: archive.to_owned(),
        reason,
    };
    let plans = check(open(archive).map_err(io_err)?).map_err(|e| match e {
        CheckError::Io(e) => io_err(e),
        CheckError::Unsafe(reason) => refused(reason),
    })?;
    let mut tar = open(archive).map_err(io_err)?;
    let mut done = Unpacked::default();
    for (entry, plan) in tar.entries().map_err(io_err)?.zip(plans) {
        let mut entry = entry.map_err(io_err)?;
        match plan {
            Plan::Skip => done.skipped += 1,
            Plan::Write(rel) => {
                write_entry(&mut entry, dest, &rel).map_err(|e| match e {
                    CheckError::Io(e) => io_err(annotate(e, &rel)),
                    CheckError::Unsafe(reason) => refused(reason),
                })?;
                done.entries += 1;
            }
        }
    }
    Ok(done)
}

fn annotate(e: io::Error, rel: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("entry {}: {e}", rel.display()))
}

/// The archive, through a gzip decoder when it starts with gzip's magic bytes.
fn open(path: &Path) -> io::Result<tar::Archive<Box<dyn Read>>> {
    let mut file = BufReader::new(File::open(path)?);
    let mut magic = [0u8; 2];
    let gzip = file.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    let file = BufReader::new(File::open(path)?);
    let reader: Box<dyn Read> = if gzip {
        Box::new(flate2::read::MultiGzDecoder::new(file))
    } else {
        Box::new(file)
    };
    let mut tar = tar::Archive::new(reader);
    tar.set_preserve_permissions(true);
    tar.set_preserve_ownerships(true);
    tar.set_preserve_mtime(true);
    tar.set_overwrite(true);
    Ok(tar)
}

enum CheckError {
    Io(io::Error),
    Unsafe(String),
}

impl From<io::Error> for CheckError {
    fn from(e: io::Error) -> CheckError {
        CheckError::Io(e)
    }
}

/// What to do with one entry.
enum Plan {
    /// Write it at this path below the destination.
    Write(PathBuf),
    /// Leave it out.
    Skip,
}

/// Reads every header and decides each entry's fate, refusing the archive on the first
/// unsafe one.
fn check<R: Read>(mut tar: tar::Archive<R>) -> Result<Vec<Plan>, CheckError> {
    let mut plans = Vec::new();
    for entry in tar.entries()? {
        let entry = entry?;
        plans.push(plan(&entry)?);
    }
    Ok(plans)
}

fn plan<R: Read>(entry: &tar::Entry<'_, R>) -> Result<Plan, CheckError> {
    let raw = entry.path()?;
    let rel = inside(&raw).map_err(|why| {
        CheckError::Unsafe(format!("entry {:?} {why}", raw.display().to_string()))
    })?;
    let kind = entry.header().entry_type();
    match kind {
        EntryType::Regular | EntryType::Continuous | EntryType::Directory => {}
        EntryType::Symlink => {
            let target = link_target(entry, &raw)?;
            if climbs_out(&rel, &target) {
                return Err(CheckError::Unsafe(format!(
                    "symlink {:?} -> {:?} points outside the image",
                    raw.display().to_string(),
                    target.display().to_string()
                )));
            }
        }
        EntryType::Link => {
            let target = link_target(entry, &raw)?;
            inside(&target).map_err(|why| {
                CheckError::Unsafe(format!(
                    "hard link {:?} -> {:?}: the target {why}",
                    raw.display().to_string(),
                    target.display().to_string()
                ))
            })?;
        }
        EntryType::Char | EntryType::Block | EntryType::Fifo => return Ok(Plan::Skip),
        _ => return Ok(Plan::Skip),
    }
    if rel.as_os_str().is_empty() {
        // `./` itself: the destination exists already.
        return Ok(Plan::Skip);
    }
    Ok(Plan::Write(rel))
}

fn link_target<R: Read>(entry: &tar::Entry<'_, R>, raw: &Path) -> Result<PathBuf, CheckError> {
    entry.link_name()?.map(|t| t.into_owned()).ok_or_else(|| {
        CheckError::Unsafe(format!(
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
) -> Result<(), CheckError> {
    make_parents(dest, rel)?;
    let dst = dest.join(rel);
    let header = entry.header();
    let (mode, uid, gid) = (header.mode()?, header.uid()?, header.gid()?);
    match header.entry_type() {
        EntryType::Directory => {
            match fs::symlink_metadata(&dst) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    fs::remove_file(&dst)?;
                    fs::create_dir(&dst)?;
                }
                Err(_) => fs::create_dir(&dst)?,
            }
            fs::set_permissions(&dst, fs::Permissions::from_mode(mode & 0o7777))?;
            lchown(&dst, to_id(uid), to_id(gid))?;
        }
        EntryType::Link => {
            let target = entry
                .link_name()?
                .map(|t| t.into_owned())
                .unwrap_or_default();
            let target = inside(&target).map_err(|why| CheckError::Unsafe(why.into()))?;
            link_to_file(dest, &target, &dst)?;
        }
        _ => {
            remove_non_directory(&dst)?;
            entry.unpack(&dst)?;
            if header_is_symlink(entry) {
                lchown(&dst, to_id(uid), to_id(gid))?;
            }
        }
    }
    Ok(())
}

fn header_is_symlink<R: Read>(entry: &tar::Entry<'_, R>) -> bool {
    entry.header().entry_type() == EntryType::Symlink
}

fn to_id(id: u64) -> Option<u32> {
    u32::try_from(id).ok()
}

/// Creates the missing parents of `rel` below `dest`; refuses to pass through anything
/// but a real directory, so that an earlier symlink entry cannot redirect a later one.
fn make_parents(dest: &Path, rel: &Path) -> Result<(), CheckError> {
    let mut at = dest.to_path_buf();
    let parents: Vec<_> = rel.components().collect();
    for c in parents.iter().take(parents.len().saturating_sub(1)) {
        at.push(c);
        match fs::symlink_metadata(&at) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(CheckError::Unsafe(format!(
                    "entry {:?} goes through {:?}, which is not a directory",
                    rel.display().to_string(),
                    at.strip_prefix(dest).unwrap_or(&at).display().to_string()
                )))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new().mode(0o755).create(&at)?;
            }
            Err(e) => return Err(e.into()),
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
fn link_to_file(dest: &Path, target: &Path, dst: &Path) -> Result<(), CheckError> {
    let refuse = |why: &str| {
        CheckError::Unsafe(format!(
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
    remove_non_directory(dst)?;
    fs::hard_link(&source, dst)?;
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
}
