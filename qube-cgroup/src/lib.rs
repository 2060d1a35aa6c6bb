//! Typed, RAII handles on Linux cgroup v2.
//!
//! `qube-cgroup` opens a cgroup directory once and reaches every interface file through
//! that directory fd, so no path is resolved twice and nothing is ever created by
//! accident. Values are typed ([`Bytes`], [`Max`], [`Weight`], [`Controllers`]) and
//! round-trip with the kernel's text; errors say what was done, to which file, and what
//! the kernel's answer means.
//!
//! # Guide
//!
//! Create a cgroup, limit it, put a process in it, watch it, clean up:
//!
//! ```no_run
//! use std::time::Duration;
//! use qube_cgroup::{Bytes, Cgroup, Controllers, Event, Max, Watcher};
//!
//! // The cgroup2 mount, wherever it is (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid hosts).
//! let root = Cgroup::root()?;
//! // Controllers flow top-down: the parent enables them for its children.
//! let parent = root.create_path("QubeContainers", Controllers::MEMORY | Controllers::PIDS)?;
//! parent.enable_controllers(Controllers::MEMORY | Controllers::PIDS)?;
//!
//! // A created cgroup is killed and removed when its handle drops.
//! let job = parent.create("job-1")?;
//! job.memory().set_max(Max::Limit(Bytes::gib(2)))?;
//! job.memory().set_swap_max(Max::Limit(Bytes::gib(1)))?;
//! job.pids().set_max(Max::Limit(256))?;
//!
//! let child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
//! job.attach(child.id())?;
//!
//! let mut watcher = Watcher::new(&job)?;
//! while let Some(event) = watcher.next_event(Duration::from_secs(10))? {
//!     match event {
//!         Event::OomKill(n) => eprintln!("OOM-killed {n}"),
//!         Event::Populated(false) => break,
//!         _ => {}
//!     }
//! }
//! println!("peak {}", job.memory().peak()?.human());
//! drop(job); // kill what is left, wait for `populated 0`, rmdir
//! # Ok::<(), qube_cgroup::Error>(())
//! ```
//!
//! # Layout
//! One concept per module: [`Cgroup`] (the handle), `dir` (the only filesystem access),
//! `mount` (finding cgroup2), `controller`, `value`, `events`, `freeze`, `guard` (clean-up),
//! and one module per controller.
#![deny(missing_docs)]
#![cfg(target_os = "linux")]

mod cgroup;
mod controller;
mod core;
mod cpu;
mod cpuset;
mod dir;
mod error;
mod events;
mod freeze;
mod guard;
mod hugetlb;
mod io;
pub(crate) mod keyed;
mod memory;
mod misc;
mod mount;
mod numa;
mod pids;
mod pressure;
mod rdma;
mod resources;
mod value;

pub use cgroup::{validate_name, Cgroup, DROP_TIMEOUT};
pub use controller::{Controller, Controllers};
pub use core::{CgroupStat, CgroupType};
pub use cpu::{Cpu, CpuMax, CpuStat, Nice};
pub use cpuset::{CpuList, Cpuset, Partition};
pub use error::{Error, Op, Result};
pub use events::{CgroupEvents, Event, Watcher};
pub use hugetlb::{HugePageSize, Hugetlb, HugetlbEvents};
pub use io::{Device, DeviceIoStat, Io, IoMax, IoStat, IoWeight};
pub use memory::{Memory, MemoryEvents, MemoryStat};
pub use misc::{Misc, MiscAmounts, MiscEvents, MiscLimits};
pub use mount::Mounts;
pub use numa::{NumaEntry, NumaStat};
pub use pids::{Pids, PidsEvents};
pub use pressure::{
    Pressure, PressureAvg, PressureKind, PressureLine, PressureResource, PressureThreshold,
    PressureTrigger,
};
pub use rdma::{Rdma, RdmaLimit, RdmaUsage};
pub use resources::Resources;
pub use value::{Bytes, Count, Flag, Max, Weight};
