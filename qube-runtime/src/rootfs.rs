//! The filesystem plan: every mount, directory, device and symlink the child makes in
//! its new mount namespace, computed in the parent as C strings so the child only loops
//! over the list making syscalls.
//!
//! The order follows what `pivot_root(2)` needs and what containers expect:
//!
//! 1. `MS_REC | MS_PRIVATE` on `/`: nothing the container mounts propagates to the host.
//! 2. The rootfs is bind-mounted on itself, so it is a mount point `pivot_root` accepts.
//! 3. `/proc` (of the new pid namespace), a small `/dev` on tmpfs (bind-mounted device
//!    nodes, devpts with its own `ptmx`, `/dev/shm`, the `fd`/`std*` symlinks), `/sys`
//!    read-only and, with a cgroup namespace, the container's own cgroup at
//!    `/sys/fs/cgroup`; then the caller's bind mounts.
//! 4. `pivot_root(".", ".")` and `umount2(".", MNT_DETACH)` (not `chroot`): the old root
//!    is gone from the namespace, not just hidden.
//! 5. Optionally `/` remounted read-only.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::libc;

use crate::error::{Error, Result, Step};
use crate::namespaces::Namespaces;
use crate::resolve::{mount_point, resolve_in_root};

/// A bind mount from the host into the container.
///
/// ```
/// use qube_runtime::{Bind, Command};
/// let cmd = Command::new("/bin/ls").bind("/srv/data", "/data", true);
/// let b = Bind { source: "/srv/data".into(), target: "/data".into(), readonly: true };
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    /// The host path.
    pub source: PathBuf,
    /// The absolute path inside the container.
    pub target: PathBuf,
    /// Whether the container sees it read-only.
    pub readonly: bool,
}

/// One filesystem operation of the plan.
#[derive(Debug)]
pub(crate) enum FsOp {
    /// `mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)`.
    MakePrivate,
    /// `mount(2)` with every argument prepared.
    Mount {
        source: Option<CString>,
        target: CString,
        fstype: Option<CString>,
        flags: libc::c_ulong,
        data: Option<CString>,
    },
    /// `mkdir(2)`; an existing directory is fine.
    Mkdir { path: CString, mode: libc::mode_t },
    /// `open(O_CREAT)` of an empty file to bind a file onto.
    CreateFile { path: CString },
    /// `symlink(2)`; an existing link is fine.
    Symlink { target: CString, link: CString },
    /// `chdir(root)`, `pivot_root(".", ".")`, `umount2(".", MNT_DETACH)`, `chdir("/")`.
    EnterRoot { root: CString },
}

/// An operation with the step and path an error names if it fails.
#[derive(Debug)]
pub(crate) struct PlannedOp {
    pub(crate) op: FsOp,
    pub(crate) step: Step,
    pub(crate) shown: PathBuf,
}

/// What the plan is built from.
#[derive(Debug)]
pub(crate) struct FsSpec<'a> {
    pub(crate) namespaces: Namespaces,
    pub(crate) rootfs: Option<&'a Path>,
    pub(crate) readonly_root: bool,
    pub(crate) binds: &'a [Bind],
}

/// The device nodes bind-mounted from the host's `/dev`.
const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// `/dev` symlinks into `/proc/self/fd`, as every container runtime makes them.
const DEV_LINKS: [(&str, &str); 5] = [
    ("/proc/self/fd", "fd"),
    ("/proc/self/fd/0", "stdin"),
    ("/proc/self/fd/1", "stdout"),
    ("/proc/self/fd/2", "stderr"),
    ("pts/ptmx", "ptmx"),
];

const NOSUID_NODEV_NOEXEC: libc::c_ulong = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;

/// Builds the plan; an empty plan when there is no mount namespace.
pub(crate) fn plan(spec: &FsSpec<'_>) -> Result<Vec<PlannedOp>> {
    let mut b = Builder::default();
    if !spec.namespaces.contains(Namespaces::MOUNT) {
        return Ok(b.ops);
    }
    b.push(FsOp::MakePrivate, Step::MakeMountsPrivate, "/".into());
    match spec.rootfs {
        Some(root) => b.rootfs(spec, root)?,
        None if spec.namespaces.contains(Namespaces::PID) => {
            b.mount(
                Some("proc"),
                Path::new("/proc"),
                Some("proc"),
                NOSUID_NODEV_NOEXEC,
                None,
            )?;
        }
        None => {}
    }
    Ok(b.ops)
}

#[derive(Default)]
struct Builder {
    ops: Vec<PlannedOp>,
}

impl Builder {
    fn rootfs(&mut self, spec: &FsSpec<'_>, root: &Path) -> Result<()> {
        let bind_rec = libc::MS_BIND | libc::MS_REC;
        let rootfs_bind = FsOp::Mount {
            source: Some(c_path(root)?),
            target: c_path(root)?,
            fstype: None,
            flags: bind_rec,
            data: None,
        };
        self.push(rootfs_bind, Step::PivotRoot, root.to_owned());
        let proc = mount_point(root, "proc")?;
        self.mkdir(&proc, 0o555)?;
        self.mount(Some("proc"), &proc, Some("proc"), NOSUID_NODEV_NOEXEC, None)?;
        self.dev(root, spec.namespaces)?;
        self.sys(root, spec.namespaces)?;
        for bind in spec.binds {
            self.bind(root, bind)?;
        }
        self.push(
            FsOp::EnterRoot {
                root: c_path(root)?,
            },
            Step::PivotRoot,
            root.to_owned(),
        );
        if spec.readonly_root {
            let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | locked_flags(root);
            self.remount(Path::new("/"), flags)?;
        }
        Ok(())
    }

    fn dev(&mut self, root: &Path, ns: Namespaces) -> Result<()> {
        // Below the fresh tmpfs, every path is one this plan makes.
        let dev = mount_point(root, "dev")?;
        self.mkdir(&dev, 0o755)?;
        let flags = libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_STRICTATIME;
        self.mount(
            Some("tmpfs"),
            &dev,
            Some("tmpfs"),
            flags,
            Some("mode=755,size=65536k"),
        )?;
        for name in DEVICES {
            let node = dev.join(name);
            self.push(
                FsOp::CreateFile {
                    path: c_path(&node)?,
                },
                Step::CreateFile,
                node.clone(),
            );
            let host = Path::new("/dev").join(name);
            self.mount(Some(host.as_os_str()), &node, None, libc::MS_BIND, None)?;
        }
        let pts = dev.join("pts");
        self.mkdir(&pts, 0o755)?;
        // gid=5 (tty) only means something when the container's ids are the host's.
        let pts_opts = if ns.contains(Namespaces::USER) {
            "newinstance,ptmxmode=0666,mode=0620"
        } else {
            "newinstance,ptmxmode=0666,mode=0620,gid=5"
        };
        let pts_flags = libc::MS_NOSUID | libc::MS_NOEXEC;
        self.mount(
            Some("devpts"),
            &pts,
            Some("devpts"),
            pts_flags,
            Some(pts_opts),
        )?;
        let shm = dev.join("shm");
        self.mkdir(&shm, 0o1777)?;
        self.mount(
            Some("shm"),
            &shm,
            Some("tmpfs"),
            NOSUID_NODEV_NOEXEC,
            Some("mode=1777,size=65536k"),
        )?;
        for (target, name) in DEV_LINKS {
            let link = dev.join(name);
            let op = FsOp::Symlink {
                target: c_str(target)?,
                link: c_path(&link)?,
            };
            self.push(op, Step::Symlink, link);
        }
        Ok(())
    }

    fn sys(&mut self, root: &Path, ns: Namespaces) -> Result<()> {
        let sys = mount_point(root, "sys")?;
        self.mkdir(&sys, 0o555)?;
        // sysfs may only be mounted by the owner of the network namespace; in a user
        // namespace without its own network namespace the host's /sys is bound instead.
        if ns.contains(Namespaces::USER) && !ns.contains(Namespaces::NET) {
            let host = Path::new("/sys");
            self.mount(
                Some(host.as_os_str()),
                &sys,
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            )?;
            let flags = libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | locked_flags(host);
            self.remount(&sys, flags)?;
        } else {
            let flags = NOSUID_NODEV_NOEXEC | libc::MS_RDONLY;
            self.mount(Some("sysfs"), &sys, Some("sysfs"), flags, None)?;
        }
        if ns.contains(Namespaces::CGROUP) {
            // The cgroup namespace was entered before any mount: this cgroup2 mount's
            // root is the container's own cgroup.
            let cgroup = sys.join("fs/cgroup");
            let flags = NOSUID_NODEV_NOEXEC | libc::MS_RDONLY;
            self.mount(Some("cgroup2"), &cgroup, Some("cgroup2"), flags, None)?;
        }
        Ok(())
    }

    fn bind(&mut self, root: &Path, bind: &Bind) -> Result<()> {
        let inside = bind_target(root, &bind.target)?;
        // Named here, with its host path: in the child a missing source is only an
        // ENOENT from mount(2) on the target.
        let source = std::fs::metadata(&bind.source)
            .map_err(|e| Error::io(Step::Mount, &bind.source, &e))?;
        for ancestor in ancestors_below(root, &inside) {
            self.mkdir(&ancestor, 0o755)?;
        }
        if source.is_dir() {
            self.mkdir(&inside, 0o755)?;
        } else {
            self.push(
                FsOp::CreateFile {
                    path: c_path(&inside)?,
                },
                Step::CreateFile,
                inside.clone(),
            );
        }
        let source = bind.source.as_os_str();
        self.mount(
            Some(source),
            &inside,
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )?;
        if bind.readonly {
            let flags =
                libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY | locked_flags(&bind.source);
            self.remount(&inside, flags)?;
        }
        Ok(())
    }

    fn mkdir(&mut self, path: &Path, mode: libc::mode_t) -> Result<()> {
        let op = FsOp::Mkdir {
            path: c_path(path)?,
            mode,
        };
        self.push(op, Step::Mkdir, path.to_owned());
        Ok(())
    }

    fn mount(
        &mut self,
        source: Option<impl AsRef<std::ffi::OsStr>>,
        target: &Path,
        fstype: Option<&str>,
        flags: libc::c_ulong,
        data: Option<&str>,
    ) -> Result<()> {
        let op = FsOp::Mount {
            source: source.map(|s| c_path(Path::new(s.as_ref()))).transpose()?,
            target: c_path(target)?,
            fstype: fstype.map(c_str).transpose()?,
            flags,
            data: data.map(c_str).transpose()?,
        };
        self.push(op, Step::Mount, target.to_owned());
        Ok(())
    }

    fn remount(&mut self, target: &Path, flags: libc::c_ulong) -> Result<()> {
        let op = FsOp::Mount {
            source: None,
            target: c_path(target)?,
            fstype: None,
            flags,
            data: None,
        };
        self.push(op, Step::RemountReadonly, target.to_owned());
        Ok(())
    }

    fn push(&mut self, op: FsOp, step: Step, shown: PathBuf) {
        self.ops.push(PlannedOp { op, step, shown });
    }
}

/// The flags a read-only remount must repeat: the kernel refuses to clear `nosuid`,
/// `nodev`, `noexec` or the atime flags of a mount locked by a user namespace.
fn locked_flags(path: &Path) -> libc::c_ulong {
    use nix::sys::statvfs::{statvfs, FsFlags};
    let Ok(stat) = statvfs(path) else {
        return 0;
    };
    let table = [
        (FsFlags::ST_NOSUID, libc::MS_NOSUID),
        (FsFlags::ST_NODEV, libc::MS_NODEV),
        (FsFlags::ST_NOEXEC, libc::MS_NOEXEC),
        (FsFlags::ST_NOATIME, libc::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, libc::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, libc::MS_RELATIME),
    ];
    table
        .into_iter()
        .filter(|(st, _)| stat.flags().contains(*st))
        .fold(0, |flags, (_, ms)| flags | ms)
}

/// Refuses a bind target that is not an absolute path inside the container, or that
/// says `..`: the caller's word for where a bind goes must not climb, whatever the
/// rootfs's own links do.
fn check_bind_target(target: &Path) -> Result<()> {
    if !target.is_absolute() {
        return Err(Error::config(
            "bind target",
            format!(
                "{} is not an absolute path inside the container",
                target.display()
            ),
        ));
    }
    if target
        .components()
        .any(|part| matches!(part, Component::ParentDir | Component::Prefix(_)))
    {
        return Err(Error::config(
            "bind target",
            format!("{} may not contain `..`", target.display()),
        ));
    }
    Ok(())
}

/// Where a bind mount lands: its target resolved inside the rootfs, so that no mkdir,
/// file or mount of the plan follows a symlink of the image out to the host. Targets in
/// `/proc` and `/sys` are refused: the plan mounts those from the kernel first, and their
/// magic links (`/proc/self/root`) lead to the host's root until `pivot_root`. So are the
/// links the plan makes in `/dev`.
fn bind_target(root: &Path, target: &Path) -> Result<PathBuf> {
    check_bind_target(target)?;
    let inside = resolve_in_root(root, target)?;
    let refuse = |why: &str| Error::config("bind target", format!("{} {why}", target.display()));
    for kernel in ["proc", "sys"] {
        if inside.starts_with(root.join(kernel)) {
            return Err(refuse(&format!(
                "is in /{kernel}, which the container gets from the kernel"
            )));
        }
    }
    if let Ok(rest) = inside.strip_prefix(root.join("dev")) {
        let first = rest.components().next().map(|c| c.as_os_str());
        if DEV_LINKS
            .iter()
            .any(|(_, name)| first == Some(name.as_ref()))
        {
            return Err(refuse("goes through a symlink the container's /dev gets"));
        }
    }
    Ok(inside)
}

/// The directories strictly between `root` and `path`, outermost first.
fn ancestors_below(root: &Path, path: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = path
        .ancestors()
        .skip(1)
        .take_while(|a| a.starts_with(root) && *a != root)
        .map(Path::to_path_buf)
        .collect();
    dirs.reverse();
    dirs
}

/// A path as a C string; a NUL byte is a configuration error.
pub(crate) fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::config("path", format!("{} contains a NUL byte", path.display())))
}

/// A string as a C string; a NUL byte is a configuration error.
pub(crate) fn c_str(text: &str) -> Result<CString> {
    CString::new(text).map_err(|_| Error::config("string", format!("{text:?} contains a NUL byte")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec<'a>(ns: Namespaces, root: &'a Path, binds: &'a [Bind]) -> FsSpec<'a> {
        FsSpec {
            namespaces: ns,
            rootfs: Some(root),
            readonly_root: true,
            binds,
        }
    }

    fn shown(ops: &[PlannedOp]) -> Vec<(Step, String)> {
        ops.iter()
            .map(|o| (o.step, o.shown.display().to_string()))
            .collect()
    }

    #[test]
    fn private_first_then_rootfs_bind_and_pivot_last() {
        let root = Path::new("/r");
        let ops = plan(&spec(Namespaces::CONTAINER, root, &[])).unwrap();
        let steps = shown(&ops);
        assert_eq!(steps[0], (Step::MakeMountsPrivate, "/".into()));
        assert_eq!(steps[1], (Step::PivotRoot, "/r".into()));
        let pivot = steps.iter().rposition(|s| s.0 == Step::PivotRoot).unwrap();
        assert!(steps[..pivot].contains(&(Step::Mount, "/r/sys/fs/cgroup".into())));
        assert_eq!(steps[pivot + 1], (Step::RemountReadonly, "/".into()));
    }

    #[test]
    fn no_mount_namespace_no_plan() {
        let ops = plan(&spec(Namespaces::PID, Path::new("/r"), &[])).unwrap();
        assert!(ops.is_empty());
    }

    #[test]
    fn binds_create_their_parents_and_refuse_dotdot() {
        let binds = [Bind {
            source: "/".into(),
            target: "/a/b/c".into(),
            readonly: true,
        }];
        let ops = plan(&spec(Namespaces::MOUNT, Path::new("/r"), &binds)).unwrap();
        let steps = shown(&ops);
        assert!(steps.contains(&(Step::Mkdir, "/r/a".into())));
        assert!(steps.contains(&(Step::Mkdir, "/r/a/b".into())));
        assert!(steps.contains(&(Step::RemountReadonly, "/r/a/b/c".into())));
        let escape = [Bind {
            source: "/x".into(),
            target: "/../etc".into(),
            readonly: false,
        }];
        assert!(plan(&spec(Namespaces::MOUNT, Path::new("/r"), &escape)).is_err());
    }

    #[test]
    fn binds_into_kernel_filesystems_and_dev_links_are_refused() {
        for target in [
            "/proc/self/root/etc",
            "/sys/kernel",
            "/dev/fd/3",
            "/dev/stdout",
        ] {
            let binds = [Bind {
                source: "/x".into(),
                target: target.into(),
                readonly: false,
            }];
            let err = plan(&spec(Namespaces::MOUNT, Path::new("/r"), &binds)).unwrap_err();
            assert!(err.to_string().contains(target), "{target}: {err}");
        }
        let shm = [Bind {
            source: "/".into(),
            target: "/dev/shm/x".into(),
            readonly: false,
        }];
        assert!(plan(&spec(Namespaces::MOUNT, Path::new("/r"), &shm)).is_ok());
    }

    #[test]
    fn a_missing_bind_source_is_named_with_its_host_path() {
        let binds = [Bind {
            source: "/nonexistent-src".into(),
            target: "/data".into(),
            readonly: true,
        }];
        let err = plan(&spec(Namespaces::MOUNT, Path::new("/r"), &binds)).unwrap_err();
        assert_eq!(err.path(), Some(Path::new("/nonexistent-src")), "{err}");
        assert_eq!(err.errno(), Some(nix::errno::Errno::ENOENT));
    }
}
