//! Images (`<state>/images/<name>/rootfs` and `image.json`) and each container's own
//! root filesystem made from one: an overlayfs when the kernel has it, a copy otherwise,
//! so that no container ever writes into an image.

use std::ffi::{CStr, OsStr};
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{
    fchown, lchown, symlink, DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt,
};
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use nix::dir::Dir;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag, AT_FDCWD};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{fstatat, Mode, SFlag};

use crate::model::Name;
use crate::protocol::{Failure, ImageSource, ImageView};
use crate::state::{self, RootfsKind};
use crate::untar::{self, UntarError};

/// The images under one state directory.
#[derive(Debug, Clone)]
pub struct Images {
    dir: PathBuf,
}

impl Images {
    /// The images in `dir`; half-finished imports from an earlier crash are removed.
    pub fn open(dir: &Path) -> Images {
        let images = Images {
            dir: dir.to_owned(),
        };
        for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(".import-") || name.starts_with(".remove-") {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        images
    }

    /// Every image, by name.
    pub fn list(&self) -> Vec<ImageView> {
        let mut images: Vec<ImageView> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<Name>().ok())
            .filter_map(|name| self.view(&name).ok())
            .collect();
        images.sort_by(|a, b| a.name.cmp(&b.name));
        images
    }

    /// Whether the image `name` exists.
    pub fn exists(&self, name: &Name) -> bool {
        self.view(name).is_ok()
    }

    /// Takes an image out of the list in one rename, so it is either whole or gone; the
    /// caller makes sure no container uses it, then [`delete`](Images::delete)s what this
    /// returns (an interrupted delete is finished by the next [`open`](Images::open)).
    pub fn move_aside(&self, name: &Name) -> Result<PathBuf, Failure> {
        if !self.exists(name) {
            return Err(unknown_image(name));
        }
        let dir = self.dir.join(name.as_str());
        let doomed = self.dir.join(format!(
            ".remove-{name}-{}",
            state::new_id().map_err(runtime)?
        ));
        fs::rename(&dir, &doomed).map_err(|e| runtime(state::annotate(e, "move aside", &dir)))?;
        Ok(doomed)
    }

    /// Deletes an image moved aside.
    pub fn delete(&self, doomed: &Path) -> Result<(), Failure> {
        fs::remove_dir_all(doomed).map_err(|e| runtime(state::annotate(e, "remove", doomed)))
    }

    fn view(&self, name: &Name) -> io::Result<ImageView> {
        let json = fs::read(self.dir.join(name.as_str()).join("image.json"))?;
        serde_json::from_slice(&json).map_err(io::Error::other)
    }

    /// The root filesystem of an image. The `busybox` image is made on first use.
    pub fn rootfs(&self, name: &Name) -> Result<PathBuf, Failure> {
        if self.view(name).is_err() {
            if name.as_str() != "busybox" {
                return Err(unknown_image(name));
            }
            match self.import(name, &ImageSource::Busybox) {
                Ok(_) => {}
                // Another request made it meanwhile.
                Err(f) if self.view(name).is_err() => return Err(f),
                Err(_) => {}
            }
        }
        Ok(self.dir.join(name.as_str()).join("rootfs"))
    }

    /// Imports an image into a staging directory, then renames it into place, so an image
    /// is either whole or absent.
    pub fn import(&self, name: &Name, source: &ImageSource) -> Result<ImageView, Failure> {
        let _writing = writing_files();
        let final_dir = self.dir.join(name.as_str());
        if final_dir.exists() {
            return Err(Failure::conflict(format!(
                "image \"{name}\" exists already"
            )));
        }
        let staging = self.dir.join(format!(
            ".import-{name}-{}",
            state::new_id().map_err(runtime)?
        ));
        let result = fill(&staging, name, source).and_then(|view| {
            fs::rename(&staging, &final_dir).map_err(|e| {
                if final_dir.exists() {
                    Failure::conflict(format!("image \"{name}\" exists already"))
                } else {
                    runtime(state::annotate(e, "rename into place", &final_dir))
                }
            })?;
            Ok(view)
        });
        if result.is_err() {
            let _ = fs::remove_dir_all(&staging);
        }
        result
    }
}

/// The answer for an image that is not there.
pub fn unknown_image(name: &Name) -> Failure {
    Failure::bad_input(format!(
        "unknown image \"{name}\": see `qube images`, or add it with `qube image import {name} <dir | rootfs.tar[.gz]>`"
    ))
}

fn runtime(e: io::Error) -> Failure {
    Failure::runtime(e.to_string())
}

/// Makes `staging/rootfs` from the source and writes `staging/image.json`.
fn fill(staging: &Path, name: &Name, source: &ImageSource) -> Result<ImageView, Failure> {
    let rootfs = staging.join("rootfs");
    fs::DirBuilder::new()
        .mode(0o700)
        .create(staging)
        .map_err(runtime)?;
    fs::DirBuilder::new()
        .mode(0o755)
        .create(&rootfs)
        .map_err(runtime)?;
    let described = match source {
        ImageSource::Busybox => {
            let busybox = busybox_rootfs(&rootfs)?;
            format!("busybox ({})", busybox.display())
        }
        ImageSource::Path(path) => {
            import_path(path, &rootfs)?;
            path.display().to_string()
        }
    };
    let view = ImageView {
        name: name.clone(),
        source: described,
        created: state::now(),
        size: tree_size(&rootfs),
    };
    let json = serde_json::to_vec_pretty(&view).map_err(|e| Failure::runtime(e.to_string()))?;
    state::write_atomic(&staging.join("image.json"), &json).map_err(runtime)?;
    Ok(view)
}

fn import_path(path: &Path, rootfs: &Path) -> Result<(), Failure> {
    let meta = fs::metadata(path)
        .map_err(|e| Failure::bad_input(format!("cannot import {}: {e}", path.display())))?;
    if meta.is_dir() {
        return copy_tree(path, rootfs).map_err(runtime);
    }
    untar::unpack(path, rootfs).map(drop).map_err(|e| match e {
        UntarError::Refused { .. } => Failure::bad_input(e.to_string()),
        UntarError::Read { .. } => Failure::bad_input(format!(
            "{e} (an image is a directory, or a rootfs tarball such as `docker export` writes, plain or gzip)"
        )),
        UntarError::Write { .. } => Failure::runtime(e.to_string()),
    })
}

/// The total size of the regular files below `dir`.
fn tree_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).into_iter().flatten().flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

/// Writers of image files exclude container starts, and starts share this lock.
///
/// A container's first process is a clone of the daemon that holds every fd the daemon
/// had open at that moment until it execs. An image file being written by another thread
/// is then open for writing in that child too, and exec of that file, by this or any
/// other container, fails with ETXTBSY.
static FILE_WRITES: RwLock<()> = RwLock::new(());

/// Held while image files are written.
pub fn writing_files() -> RwLockWriteGuard<'static, ()> {
    FILE_WRITES.write().unwrap_or_else(PoisonError::into_inner)
}

/// Held while a container starts.
pub fn starting_container() -> RwLockReadGuard<'static, ()> {
    FILE_WRITES.read().unwrap_or_else(PoisonError::into_inner)
}

/// Copies a tree: directories, files (with their modes), symlinks as symlinks, owners
/// kept. Device nodes, fifos and sockets are left out.
///
/// Whoever owns `from` may change it while it is copied, so nothing below it is reached
/// by path: each entry is opened relative to its parent's fd without following a
/// symlink, and only what that fd turns out to be is copied. A file swapped for a
/// symlink (to `/etc/shadow`, say) or a directory swapped for one is refused, not
/// followed.
pub fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    let dir = openat(
        AT_FDCWD,
        from,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| state::annotate(e.into(), "open", from))?;
    copy_dir(dir, from, to)
}

/// What an entry of a source directory was when it was listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink,
}

/// Copies the contents of the directory open as `dir` (shown as `shown`) into `to`.
fn copy_dir(dir: OwnedFd, shown: &Path, to: &Path) -> io::Result<()> {
    let mut listing = Dir::from_fd(dir).map_err(|e| state::annotate(e.into(), "read", shown))?;
    let mut names = Vec::new();
    for entry in listing.iter() {
        let entry = entry.map_err(|e| state::annotate(e.into(), "read", shown))?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    }
    for name in names {
        let os_name = OsStr::from_bytes(name.to_bytes());
        let (src, dst) = (shown.join(os_name), to.join(os_name));
        let stat = fstatat(
            listing.as_fd(),
            name.as_c_str(),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| state::annotate(e.into(), "stat", &src))?;
        let kind = match SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT {
            SFlag::S_IFDIR => Kind::Dir,
            SFlag::S_IFREG => Kind::File,
            SFlag::S_IFLNK => Kind::Symlink,
            _ => continue,
        };
        copy_entry(listing.as_fd(), &name, kind, &src, &dst)
            .map_err(|e| state::annotate(e, "copy", &src))?;
    }
    Ok(())
}

/// Copies one entry of the directory `parent`, listed as `kind`, from what opening it
/// without following symlinks gives now.
fn copy_entry(
    parent: BorrowedFd<'_>,
    name: &CStr,
    kind: Kind,
    src: &Path,
    dst: &Path,
) -> io::Result<()> {
    let nofollow = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match kind {
        Kind::Dir => {
            let fd = openat(parent, name, nofollow | OFlag::O_DIRECTORY, Mode::empty())?;
            let meta = File::from(fd.try_clone()?).metadata()?;
            fs::DirBuilder::new().mode(0o700).create(dst)?;
            copy_dir(fd, src, dst)?;
            lchown(dst, Some(meta.uid()), Some(meta.gid()))?;
            fs::set_permissions(dst, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        }
        Kind::Symlink => {
            let target = readlinkat(parent, name)?;
            let meta = fstatat(parent, name, AtFlags::AT_SYMLINK_NOFOLLOW)?;
            if SFlag::from_bits_truncate(meta.st_mode) & SFlag::S_IFMT != SFlag::S_IFLNK {
                return Err(changed());
            }
            symlink(target, dst)?;
            lchown(dst, Some(meta.st_uid), Some(meta.st_gid))?;
        }
        Kind::File => {
            // O_NONBLOCK: a fifo swapped in must not hang the copy before it is refused.
            let fd = openat(
                parent,
                name,
                nofollow | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
                Mode::empty(),
            )?;
            let mut from = File::from(fd);
            let meta = from.metadata()?;
            if !meta.is_file() {
                return Err(changed());
            }
            let mut to = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(dst)?;
            io::copy(&mut from, &mut to)?;
            // Owner before mode: a chown clears the set-user-ID and set-group-ID bits.
            fchown(&to, Some(meta.uid()), Some(meta.gid()))?;
            to.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        }
    }
    Ok(())
}

fn changed() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "it changed while it was being copied",
    )
}

/// Where busybox-static may be on the host.
const BUSYBOX_PATHS: [&str; 4] = [
    "/bin/busybox",
    "/usr/bin/busybox",
    "/sbin/busybox",
    "/usr/sbin/busybox",
];

/// A root filesystem of the host's static busybox: the binary, a link per applet, and
/// the few files a shell expects. Returns the busybox it used.
pub fn busybox_rootfs(rootfs: &Path) -> Result<PathBuf, Failure> {
    let busybox = BUSYBOX_PATHS
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Failure::runtime(
                "no busybox on this machine (install busybox-static) to make the busybox image",
            )
        })?;
    let binary = fs::read(busybox).map_err(runtime)?;
    if !is_static_elf(&binary) {
        return Err(Failure::runtime(format!(
            "{} is linked dynamically and would not run in an image of its own; install busybox-static",
            busybox.display()
        )));
    }
    lay_out_busybox(rootfs, busybox).map_err(runtime)?;
    Ok(busybox.to_owned())
}

fn lay_out_busybox(rootfs: &Path, busybox: &Path) -> io::Result<()> {
    for (dir, mode) in [
        ("bin", 0o755),
        ("sbin", 0o755),
        ("usr", 0o755),
        ("usr/bin", 0o755),
        ("usr/sbin", 0o755),
        ("etc", 0o755),
        ("dev", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("run", 0o755),
        ("var", 0o755),
        ("home", 0o755),
        ("root", 0o700),
        ("tmp", 0o1777),
    ] {
        let path = rootfs.join(dir);
        fs::DirBuilder::new().mode(0o755).create(&path)?;
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))?;
    }
    fs::copy(busybox, rootfs.join("bin/busybox"))?;
    fs::set_permissions(
        rootfs.join("bin/busybox"),
        fs::Permissions::from_mode(0o755),
    )?;
    for applet in applets(busybox)? {
        let link = rootfs.join(&applet);
        if applet == Path::new("bin/busybox") || fs::symlink_metadata(&link).is_ok() {
            continue;
        }
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent)?;
        }
        symlink("/bin/busybox", &link)?;
    }
    fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )?;
    fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    fs::write(
        rootfs.join("etc/hosts"),
        "127.0.0.1 localhost\n::1 localhost\n",
    )?;
    Ok(())
}

/// The applets' paths relative to the root (`bin/ls`, `usr/bin/awk`), from
/// `busybox --list-full`, or `bin/<applet>` for builds that only know `--list`.
fn applets(busybox: &Path) -> io::Result<Vec<PathBuf>> {
    let full = std::process::Command::new(busybox)
        .arg("--list-full")
        .output()?;
    if full.status.success() && !full.stdout.is_empty() {
        return Ok(lines(&full.stdout)
            .filter_map(|l| untar::inside(Path::new(l)).ok())
            .filter(|p| p.components().count() >= 2)
            .collect());
    }
    let short = std::process::Command::new(busybox).arg("--list").output()?;
    Ok(lines(&short.stdout)
        .filter(|l| !l.contains('/') && *l != "." && *l != "..")
        .map(|l| Path::new("bin").join(l))
        .collect())
}

fn lines(bytes: &[u8]) -> impl Iterator<Item = &str> {
    std::str::from_utf8(bytes)
        .unwrap_or("")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
}

/// Whether an ELF file has no program interpreter, i.e. needs no dynamic loader.
fn is_static_elf(binary: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let word = |at: usize, len: usize| -> Option<u64> {
        let bytes = binary.get(at..at + len)?;
        Some(
            bytes
                .iter()
                .rev()
                .fold(0u64, |acc, &b| (acc << 8) | u64::from(b)),
        )
    };
    // 64-bit little-endian ELF only: the machines qube runs on.
    if binary.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        return false;
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (word(0x20, 8), word(0x36, 2), word(0x38, 2))
    else {
        return false;
    };
    (0..phnum).all(|i| {
        usize::try_from(phoff + i * phentsize)
            .ok()
            .and_then(|at| word(at, 4))
            .is_some_and(|kind| kind != u64::from(PT_INTERP))
    })
}

/// A container's root filesystem: `<dir>/rootfs`, over `<dir>/upper` and `<dir>/work`
/// when it is an overlay.
#[derive(Debug, Clone)]
pub struct ContainerRootfs {
    dir: PathBuf,
}

impl ContainerRootfs {
    /// The root filesystem in a container's state directory.
    pub fn new(container_dir: &Path) -> ContainerRootfs {
        ContainerRootfs {
            dir: container_dir.to_owned(),
        }
    }

    /// Where the container's `/` is.
    pub fn path(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// Makes the root filesystem from `image`: an overlay when the kernel has overlayfs
    /// and the mount works, a copy otherwise.
    pub fn create(&self, image: &Path) -> Result<RootfsKind, Failure> {
        let root = self.path();
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&root)
            .map_err(|e| runtime(state::annotate(e, "create", &root)))?;
        if overlay_available() {
            match self.mount_overlay(image) {
                Ok(()) => return Ok(RootfsKind::Overlay),
                Err(e) => crate::daemon::log(&format!(
                    "overlay mount on {} failed ({e}); copying the image instead",
                    root.display()
                )),
            }
        }
        let _writing = writing_files();
        copy_tree(image, &root).map_err(runtime)?;
        Ok(RootfsKind::Copy)
    }

    /// Mounts the overlay again (after the container stopped and is started again).
    pub fn remount(&self, image: &Path, kind: RootfsKind) -> Result<(), Failure> {
        if kind == RootfsKind::Overlay && !self.is_mounted() {
            self.mount_overlay(image).map_err(|e| {
                Failure::runtime(format!("mount overlay on {}: {e}", self.path().display()))
            })?;
        }
        Ok(())
    }

    fn mount_overlay(&self, image: &Path) -> io::Result<()> {
        let (upper, work) = (self.dir.join("upper"), self.dir.join("work"));
        for dir in [&upper, &work] {
            match fs::DirBuilder::new().mode(0o755).create(dir) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            }
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            image.display(),
            upper.display(),
            work.display()
        );
        mount(
            Some("overlay"),
            &self.path(),
            Some("overlay"),
            MsFlags::MS_NODEV,
            Some(options.as_str()),
        )
        .map_err(io::Error::from)
    }

    /// Whether something is mounted on the root filesystem's directory.
    pub fn is_mounted(&self) -> bool {
        let root = self.path();
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .any(|mount_point| Path::new(&unescape_mount(mount_point)) == root)
    }

    /// Unmounts the overlay (the container stopped); the upper layer stays until removal.
    pub fn unmount(&self) {
        if self.is_mounted() {
            if let Err(e) = umount2(&self.path(), MntFlags::MNT_DETACH) {
                crate::daemon::log(&format!("unmount {}: {e}", self.path().display()));
            }
        }
    }

    /// Unmounts and deletes everything, refusing to delete across a mount that is still there.
    pub fn remove(&self) -> Result<(), Failure> {
        self.unmount();
        if self.is_mounted() {
            return Err(Failure::runtime(format!(
                "{} is still mounted; not removing it",
                self.path().display()
            )));
        }
        for sub in ["rootfs", "upper", "work"] {
            let path = self.dir.join(sub);
            match fs::remove_dir_all(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(runtime(state::annotate(e, "remove", &path)))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Whether the kernel knows overlayfs (`/proc/filesystems`).
fn overlay_available() -> bool {
    fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"))
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape_mount(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_imports_as_a_copy_and_lists() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir_all(src.join("bin")).unwrap();
        fs::write(src.join("bin/tool"), b"#!/bin/sh\n").unwrap();
        fs::set_permissions(src.join("bin/tool"), fs::Permissions::from_mode(0o755)).unwrap();
        symlink("tool", src.join("bin/alias")).unwrap();
        let dir = tmp.path().join("images");
        fs::create_dir(&dir).unwrap();
        let images = Images::open(&dir);

        let name: Name = "alpine".parse().unwrap();
        let view = images
            .import(&name, &ImageSource::Path(src.clone()))
            .unwrap();
        assert_eq!(view.size, 10);
        let rootfs = images.rootfs(&name).unwrap();
        assert_eq!(
            fs::read_link(rootfs.join("bin/alias")).unwrap(),
            Path::new("tool")
        );
        let mode = fs::metadata(rootfs.join("bin/tool")).unwrap().mode();
        assert_eq!(mode & 0o777, 0o755);
        assert_eq!(images.list(), vec![view]);

        let again = images.import(&name, &ImageSource::Path(src)).unwrap_err();
        assert!(again.message.contains("exists already"), "{again:?}");
    }

    /// What the copy finds when the owner of the source swaps an entry between the
    /// listing and the open: each is refused, and nothing of the link's target is copied.
    #[test]
    fn entries_swapped_after_the_listing_are_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, out) = (tmp.path().join("src"), tmp.path().join("out"));
        fs::create_dir_all(src.join("real-dir")).unwrap();
        fs::create_dir(&out).unwrap();
        let secret = tmp.path().join("shadow");
        fs::write(&secret, b"root:secret").unwrap();
        symlink(&secret, src.join("file")).unwrap();
        symlink(src.join("real-dir"), src.join("dir")).unwrap();
        nix::unistd::mkfifo(&src.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let parent = File::open(&src).unwrap();
        for (name, kind) in [
            (c"file", Kind::File),
            (c"dir", Kind::Dir),
            (c"fifo", Kind::File),
        ] {
            let dst = out.join(OsStr::from_bytes(name.to_bytes()));
            let result = copy_entry(parent.as_fd(), name, kind, &src, &dst);
            assert!(result.is_err(), "{name:?} was copied");
        }
        assert_eq!(fs::read_dir(&out).unwrap().count(), 0);
    }

    #[test]
    fn a_copy_keeps_modes_owners_and_links() {
        let tmp = tempfile::tempdir().unwrap();
        let (src, out) = (tmp.path().join("src"), tmp.path().join("out"));
        fs::create_dir_all(src.join("bin")).unwrap();
        fs::write(src.join("bin/su"), b"elf").unwrap();
        if nix::unistd::geteuid().is_root() {
            lchown(src.join("bin/su"), Some(1234), Some(5678)).unwrap();
        }
        fs::set_permissions(src.join("bin/su"), fs::Permissions::from_mode(0o4755)).unwrap();
        fs::set_permissions(src.join("bin"), fs::Permissions::from_mode(0o711)).unwrap();
        symlink("/etc/shadow", src.join("bin/link")).unwrap();
        nix::unistd::mkfifo(&src.join("fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        fs::create_dir(&out).unwrap();
        copy_tree(&src, &out).unwrap();
        let su = fs::metadata(out.join("bin/su")).unwrap();
        assert_eq!(su.mode() & 0o7777, 0o4755);
        if nix::unistd::geteuid().is_root() {
            assert_eq!((su.uid(), su.gid()), (1234, 5678));
        }
        assert_eq!(fs::read(out.join("bin/su")).unwrap(), b"elf");
        let bin = fs::metadata(out.join("bin")).unwrap();
        assert_eq!(bin.mode() & 0o7777, 0o711);
        assert_eq!(
            fs::read_link(out.join("bin/link")).unwrap(),
            Path::new("/etc/shadow")
        );
        assert!(fs::symlink_metadata(out.join("fifo")).is_err());
    }

    #[test]
    fn unknown_images_and_sources_are_bad_input() {
        let tmp = tempfile::tempdir().unwrap();
        let images = Images::open(tmp.path());
        let err = images.rootfs(&"nope".parse().unwrap()).unwrap_err();
        assert_eq!(err.kind, crate::protocol::FailureKind::BadInput);
        assert!(err.message.contains("unknown image \"nope\""), "{err:?}");
        let err = images
            .import(
                &"x".parse().unwrap(),
                &ImageSource::Path("/no/such/dir".into()),
            )
            .unwrap_err();
        assert_eq!(err.kind, crate::protocol::FailureKind::BadInput);
        assert!(images.list().is_empty(), "a failed import leaves nothing");
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
    }

    #[test]
    fn static_elf_detection() {
        assert!(!is_static_elf(b"#!/bin/sh\n"));
        let me = fs::read("/proc/self/exe").unwrap();
        // The test binary is linked dynamically on every platform qube builds on.
        assert!(!is_static_elf(&me));
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mount(r"/a\040b"), "/a b");
        assert_eq!(unescape_mount("/plain"), "/plain");
    }
}
