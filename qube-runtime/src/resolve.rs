//! Container paths resolved under the rootfs, the way the container will see them.
//!
//! The mount plan makes directories, files and mounts on host paths under the rootfs
//! before `pivot_root`, and `mkdir(2)`, `open(O_CREAT)` and `mount(2)` follow symlinks on
//! the way. An image or a container's writable layer is untrusted: a `data -> /etc` in
//! it would point a bind mount's `mkdir /rootfs/data/sub` at the host's `/etc/sub`. So
//! every target is resolved here first, with each symlink read as the container reads
//! it: an absolute link starts again at the rootfs, and `..` never climbs above it. The
//! child then only meets paths without a symlink in them.
//!
//! This is a check at plan time, in the parent. It holds as long as nothing else writes
//! the rootfs between the plan and the `pivot_root`, which is the case for a rootfs that
//! no running container shares.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;

use crate::error::{Error, Result, Step};

/// How many symlinks one path may pass through, as the kernel's `MAXSYMLINKS`.
const MAX_SYMLINKS: usize = 40;

/// `target`, a path inside the container, as the host path under `root` that the
/// container will reach by it, with every existing symlink on the way resolved inside
/// `root`. The part that does not exist yet is kept as written.
///
/// `root` itself is taken as it is: the caller has made it absolute and canonical.
pub(crate) fn resolve_in_root(root: &Path, target: &Path) -> Result<PathBuf> {
    let mut resolved = PathBuf::new();
    let mut pending: VecDeque<OsString> = components(target);
    let mut links = 0;
    while let Some(part) = pending.pop_front() {
        if part == ".." {
            resolved.pop();
            continue;
        }
        let candidate = root.join(&resolved).join(&part);
        let Some(link) = read_symlink(&candidate)? else {
            resolved.push(part);
            continue;
        };
        links += 1;
        if links > MAX_SYMLINKS {
            return Err(Error::os(Step::ResolveInRoot, candidate, Errno::ELOOP));
        }
        if link.is_absolute() {
            resolved.clear();
        }
        for (i, p) in components(&link).into_iter().enumerate() {
            pending.insert(i, p);
        }
    }
    Ok(root.join(resolved))
}

/// The names and `..`s of a path, without `/` and `.`.
fn components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(name) => Some(name.to_owned()),
            Component::ParentDir => Some("..".into()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

/// Where `path` points if it is a symlink; `None` if it is anything else or nothing.
fn read_symlink(path: &Path) -> Result<Option<PathBuf>> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => std::fs::read_link(path)
            .map(Some)
            .map_err(|e| Error::io(Step::ResolveInRoot, path, &e)),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        // A file on the way: the mkdir or mount that follows reports it.
        Err(e) if e.raw_os_error() == Some(Errno::ENOTDIR as i32) => Ok(None),
        Err(e) => Err(Error::io(Step::ResolveInRoot, path, &e)),
    }
}

/// `root/name`, where the plan mounts a kernel filesystem (`proc`, `dev`, `sys`), refused
/// if the rootfs has a symlink there: no real image does, and following it would move
/// a kernel filesystem the container relies on somewhere else.
pub(crate) fn mount_point(root: &Path, name: &str) -> Result<PathBuf> {
    let path = root.join(name);
    match read_symlink(&path)? {
        None => Ok(path),
        Some(link) => Err(Error::config(
            "rootfs",
            format!(
                "/{name} is a symlink (to {}); the container's /{name} must be a directory",
                link.display()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn root() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("usr/lib")).unwrap();
        std::fs::create_dir_all(dir.path().join("srv")).unwrap();
        dir
    }

    fn resolve(root: &Path, target: &str) -> PathBuf {
        resolve_in_root(root, Path::new(target)).unwrap()
    }

    #[test]
    fn plain_and_missing_paths_stay_as_written() {
        let r = root();
        assert_eq!(resolve(r.path(), "/usr/lib"), r.path().join("usr/lib"));
        assert_eq!(resolve(r.path(), "/new/a/b"), r.path().join("new/a/b"));
    }

    #[test]
    fn an_absolute_link_starts_again_at_the_root_not_the_hosts() {
        let r = root();
        symlink("/etc", r.path().join("data")).unwrap();
        assert_eq!(resolve(r.path(), "/data/sub"), r.path().join("etc/sub"));
    }

    #[test]
    fn dotdot_in_a_link_stops_at_the_root() {
        let r = root();
        symlink("../../../../../etc", r.path().join("srv/up")).unwrap();
        assert_eq!(resolve(r.path(), "/srv/up/x"), r.path().join("etc/x"));
    }

    #[test]
    fn relative_links_resolve_from_their_directory() {
        let r = root();
        symlink("usr/lib", r.path().join("lib")).unwrap();
        symlink("lib", r.path().join("usr/lib64")).unwrap();
        assert_eq!(resolve(r.path(), "/lib/m"), r.path().join("usr/lib/m"));
        assert_eq!(
            resolve(r.path(), "/usr/lib64/m"),
            r.path().join("usr/lib/m")
        );
    }

    #[test]
    fn a_dangling_final_link_is_followed_inside_the_root() {
        let r = root();
        symlink("/etc/cron.d/job", r.path().join("srv/file")).unwrap();
        assert_eq!(
            resolve(r.path(), "/srv/file"),
            r.path().join("etc/cron.d/job")
        );
    }

    #[test]
    fn a_symlink_loop_is_eloop_naming_the_link() {
        let r = root();
        symlink("/b", r.path().join("a")).unwrap();
        symlink("/a", r.path().join("b")).unwrap();
        let err = resolve_in_root(r.path(), Path::new("/a/x")).unwrap_err();
        assert_eq!(err.errno(), Some(Errno::ELOOP), "{err}");
        assert_eq!(err.step(), Some(Step::ResolveInRoot));
    }

    #[test]
    fn a_symlinked_kernel_mount_point_is_refused() {
        let r = root();
        symlink("/etc", r.path().join("proc")).unwrap();
        let err = mount_point(r.path(), "proc").unwrap_err();
        assert!(
            err.to_string().contains("/proc is a symlink (to /etc)"),
            "{err}"
        );
        assert_eq!(mount_point(r.path(), "sys").unwrap(), r.path().join("sys"));
    }

    #[test]
    fn the_result_never_leaves_the_root() {
        let r = root();
        symlink("/", r.path().join("top")).unwrap();
        symlink("..", r.path().join("usr/up")).unwrap();
        for target in ["/top/../../x", "/usr/up/usr/up/../../x", "/../../x"] {
            let got = resolve(r.path(), target);
            assert_eq!(got, r.path().join("x"), "{target}");
        }
    }
}
