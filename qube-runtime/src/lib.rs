//! Race-free container launching on Linux cgroup v2.
//!
//! `qube-runtime` starts a process the way a container runtime does, with a
//! `std::process::Command`-like builder: its own cgroup with limits, namespaces, a root
//! filesystem entered with `pivot_root`, reduced capabilities, and typed errors for
//! everything that can fail before the program runs.
//!
//! # Guide
//!
//! ```no_run
//! use qube_cgroup::{Bytes, Cgroup, Controllers, Max, Resources};
//! use qube_runtime::{Command, Namespaces, Stdio};
//!
//! // A parent cgroup without processes of its own, distributing memory and pids.
//! let parent = Cgroup::root()?.create_path("qube", Controllers::MEMORY | Controllers::PIDS)?;
//!
//! let mut c = Command::new("/bin/sh")
//!     .args(["-c", "echo $$ in $(hostname); cat /sys/fs/cgroup/memory.max"])
//!     .rootfs("/var/lib/qube/rootfs/busybox")
//!     .namespaces(Namespaces::PID | Namespaces::IPC | Namespaces::CGROUP)
//!     .hostname("box")
//!     .cgroup(&parent, "hello")
//!     .resources(Resources {
//!         memory_max: Some(Max::Limit(Bytes::gib(2))),
//!         memory_swap_max: Some(Max::Limit(Bytes::gib(1))),
//!         ..Resources::default()
//!     })
//!     .stdout(Stdio::Piped)
//!     .spawn()?; // Err(Error::Child { step, path, errno }) if anything failed before exec
//!
//! let mut text = String::new();
//! std::io::Read::read_to_string(c.stdout().expect("piped"), &mut text)?;
//! // pid 2: with a pid namespace, pid 1 is the reaper that the workload runs under.
//! assert_eq!(text, "2 in box\n2147483648\n");
//! let status = c.wait()?; // "exited with code 0", or "killed by SIGKILL (OOM-killed)"
//! println!("{status}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Launch sequence
//!
//! 1. **Parent, before any child exists**: the controllers the limits need are enabled in
//!    the parent cgroup (refused if it holds processes), the container's cgroup is
//!    created and its limits written. The whole child plan is built: C strings for
//!    paths, argv and environment, the mount list, the capability words.
//! 2. **clone3** with `CLONE_INTO_CGROUP | CLONE_PIDFD` and the namespace flags: the child
//!    is born inside its cgroup, limits already in force, and the parent holds a pidfd.
//!    Where the kernel lacks it (ENOSYS/E2BIG, before 5.7) a raw `clone` is used and the
//!    child waits on a pipe until the parent has moved it into the cgroup.
//! 3. **Child, before exec** ([`child`](self#rules-between-clone-and-exec)): signal
//!    dispositions reset, cgroup namespace unshared (so its root is the container's own
//!    cgroup), new session, hostname, `lo` up, mounts made private, rootfs bind-mounted
//!    and entered with `pivot_root` (old root detached), `/proc`, `/dev`, `/sys`,
//!    `/sys/fs/cgroup` and bind mounts, working directory, stdio, every other fd
//!    close-on-exec, capabilities reduced to Docker's default set, uid/gid, and
//!    `PR_SET_NO_NEW_PRIVS`. With a pid namespace, pid 1 stays behind as a tiny reaper
//!    (reaps orphans, forwards every signal but those of a fault, exits with the
//!    workload's status) and the workload is forked under it.
//! 4. **exec**. Any failure in 3 or 4 is written to a close-on-exec pipe as (step,
//!    errno) and [`Command::spawn`] returns [`Error::Child`] naming the step, the path
//!    and the errno, after reaping the child and removing the cgroup.
//!
//! # Rules between clone and exec
//!
//! The child is a copy of one thread of a possibly multi-threaded program: a lock held
//! by another thread at the time of the clone (the allocator's, for one) would never be
//! released. So between clone and exec the child makes only raw system calls on data
//! prepared before the clone: no allocation, no locks, no formatting. Where a libc
//! wrapper does more than the system call (glibc's `setresuid` signals every thread it
//! believes the process has, under a lock), the system call is made directly. That makes
//! [`Command::spawn`] safe to call from any thread of any program.
//!
//! One hazard is the program's own: the child also holds every fd the program had open
//! at the clone until it execs, writable ones included. A program that writes an
//! executable in one thread (copying a root filesystem, say) while another thread spawns
//! can see exec of that file fail with ETXTBSY, here or anywhere else. Such a program
//! makes its writers and its spawns exclude each other (the `qube` daemon does, with a
//! read-write lock), or writes executables from another process.
//!
//! # Layout
//!
//! One concept per module: [`Command`] (the builder), `spawn` (clone3, the fork fallback,
//! the error pipe), `child` (clone to exec), `rootfs` (the mount plan), `resolve` (mount
//! targets resolved inside the rootfs, so an image's symlinks cannot lead to the host),
//! [`Namespaces`], [`Capabilities`], [`Container`] (the running handle), [`ExitStatus`]
//! and [`Error`].
#![deny(missing_docs)]
#![cfg(target_os = "linux")]

mod caps;
mod child;
mod command;
mod container;
mod error;
mod namespaces;
mod resolve;
mod rootfs;
mod spawn;
mod status;

pub use caps::Capabilities;
pub use command::{Command, Stdio, DEFAULT_PATH};
pub use container::{Container, Detached, Output, Stats, FREEZE_TIMEOUT, KILL_TIMEOUT};
pub use error::{Error, Result, Step};
pub use namespaces::{IdMap, Namespaces, Network};
pub use rootfs::Bind;
pub use spawn::SpawnMethod;
pub use status::ExitStatus;
