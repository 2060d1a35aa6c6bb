//! Controllers: the single [`Controller`] and the [`Controllers`] flag set.
//!
//! "Resources are distributed top-down and a cgroup can further distribute a resource
//! only if the resource has been distributed to it from the parent" (cgroup-v2.rst), so
//! enabling walks from the top; see [`crate::Cgroup::enable_controllers`].

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};

/// One cgroup v2 controller.
///
/// ```
/// use qube_cgroup::Controller;
/// assert_eq!("memory".parse::<Controller>().unwrap(), Controller::Memory);
/// assert_eq!(Controller::Pids.to_string(), "pids");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Controller {
    /// `cpuset`: CPU and memory-node placement.
    Cpuset,
    /// `cpu`: CPU time.
    Cpu,
    /// `io`: block I/O.
    Io,
    /// `memory`: memory and swap.
    Memory,
    /// `hugetlb`: huge pages.
    Hugetlb,
    /// `pids`: number of processes.
    Pids,
    /// `rdma`: RDMA resources.
    Rdma,
    /// `misc`: miscellaneous scalar resources.
    Misc,
}

impl Controller {
    /// Every controller, in the order the kernel lists them.
    ///
    /// ```
    /// use qube_cgroup::Controller;
    /// assert_eq!(Controller::ALL.len(), 8);
    /// assert!(Controller::ALL.contains(&Controller::Memory));
    /// ```
    pub const ALL: [Controller; 8] = [
        Controller::Cpuset,
        Controller::Cpu,
        Controller::Io,
        Controller::Memory,
        Controller::Hugetlb,
        Controller::Pids,
        Controller::Rdma,
        Controller::Misc,
    ];

    /// The kernel's name for it.
    ///
    /// ```
    /// assert_eq!(qube_cgroup::Controller::Cpuset.name(), "cpuset");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Controller::Cpuset => "cpuset",
            Controller::Cpu => "cpu",
            Controller::Io => "io",
            Controller::Memory => "memory",
            Controller::Hugetlb => "hugetlb",
            Controller::Pids => "pids",
            Controller::Rdma => "rdma",
            Controller::Misc => "misc",
        }
    }

    /// The flag for it in a [`Controllers`] set.
    ///
    /// ```
    /// use qube_cgroup::{Controller, Controllers};
    /// assert_eq!(Controller::Io.flag(), Controllers::IO);
    /// ```
    pub fn flag(self) -> Controllers {
        match self {
            Controller::Cpuset => Controllers::CPUSET,
            Controller::Cpu => Controllers::CPU,
            Controller::Io => Controllers::IO,
            Controller::Memory => Controllers::MEMORY,
            Controller::Hugetlb => Controllers::HUGETLB,
            Controller::Pids => Controllers::PIDS,
            Controller::Rdma => Controllers::RDMA,
            Controller::Misc => Controllers::MISC,
        }
    }

    /// The controller an interface file belongs to (`memory.max` → memory); `None` for
    /// core files (`cgroup.*`) and files every cgroup has (`cpu.stat`, `*.pressure`).
    ///
    /// ```
    /// use qube_cgroup::Controller;
    /// assert_eq!(Controller::of_file("memory.swap.max"), Some(Controller::Memory));
    /// assert_eq!(Controller::of_file("cgroup.procs"), None);
    /// assert_eq!(Controller::of_file("cpu.stat"), None);
    /// ```
    pub fn of_file(file: &str) -> Option<Controller> {
        if file.ends_with(".pressure") || file == "cpu.stat" || file == "cpu.stat.local" {
            return None;
        }
        let prefix = file.split('.').next()?;
        prefix.parse().ok()
    }
}

impl fmt::Display for Controller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Controller {
    type Err = Error;

    fn from_str(s: &str) -> Result<Controller> {
        Controller::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| {
                Error::invalid(
                    "controller",
                    s,
                    "expected one of cpuset cpu io memory hugetlb pids rdma misc",
                )
            })
    }
}

bitflags::bitflags! {
    /// A set of controllers, as listed in `cgroup.controllers` and `cgroup.subtree_control`.
    ///
    /// `Display` writes the kernel's space-separated list; `FromStr` reads it back and
    /// rejects unknown names ([`Controllers::from_kernel`] skips them instead).
    ///
    /// ```
    /// use qube_cgroup::Controllers;
    /// let set: Controllers = "cpu memory pids".parse().unwrap();
    /// assert!(set.contains(Controllers::MEMORY));
    /// assert_eq!(set.to_string(), "cpu memory pids");
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct Controllers: u16 {
        /// `cpuset`
        const CPUSET = 1 << 0;
        /// `cpu`
        const CPU = 1 << 1;
        /// `io`
        const IO = 1 << 2;
        /// `memory`
        const MEMORY = 1 << 3;
        /// `hugetlb`
        const HUGETLB = 1 << 4;
        /// `pids`
        const PIDS = 1 << 5;
        /// `rdma`
        const RDMA = 1 << 6;
        /// `misc`
        const MISC = 1 << 7;
    }
}

impl Controllers {
    /// The controllers in this set, in kernel order.
    ///
    /// ```
    /// use qube_cgroup::{Controller, Controllers};
    /// let v: Vec<_> = (Controllers::PIDS | Controllers::CPU).controllers().collect();
    /// assert_eq!(v, [Controller::Cpu, Controller::Pids]);
    /// ```
    pub fn controllers(self) -> impl Iterator<Item = Controller> {
        Controller::ALL
            .into_iter()
            .filter(move |c| self.contains(c.flag()))
    }

    /// Parses a list the kernel wrote, skipping controllers this crate does not know.
    ///
    /// ```
    /// use qube_cgroup::Controllers;
    /// assert_eq!(Controllers::from_kernel("memory future\n"), Controllers::MEMORY);
    /// ```
    pub fn from_kernel(text: &str) -> Controllers {
        text.split_whitespace()
            .filter_map(|name| name.parse::<Controller>().ok())
            .fold(Controllers::empty(), |set, c| set | c.flag())
    }

    /// The `+a +b` (or `-a -b`) line that `cgroup.subtree_control` takes.
    pub(crate) fn subtree_line(self, sign: char) -> String {
        self.controllers()
            .map(|c| format!("{sign}{c}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

impl From<Controller> for Controllers {
    fn from(c: Controller) -> Controllers {
        c.flag()
    }
}

impl fmt::Display for Controllers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.controllers().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(c.name())?;
        }
        Ok(())
    }
}

impl FromStr for Controllers {
    type Err = Error;

    fn from_str(s: &str) -> Result<Controllers> {
        s.split_whitespace()
            .try_fold(Controllers::empty(), |set, name| {
                name.parse::<Controller>().map(|c| set | c.flag())
            })
    }
}

impl crate::Cgroup {
    /// The controllers this cgroup can use (`cgroup.controllers`).
    ///
    /// ```no_run
    /// use qube_cgroup::{Cgroup, Controllers};
    /// let available = Cgroup::root()?.controllers()?;
    /// println!("memory available: {}", available.contains(Controllers::MEMORY));
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn controllers(&self) -> Result<Controllers> {
        Ok(Controllers::from_kernel(
            &self.dir.read("cgroup.controllers")?,
        ))
    }

    /// The controllers this cgroup distributes to its children (`cgroup.subtree_control`).
    ///
    /// ```no_run
    /// let enabled = qube_cgroup::Cgroup::root()?.subtree_control()?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn subtree_control(&self) -> Result<Controllers> {
        Ok(Controllers::from_kernel(
            &self.dir.read("cgroup.subtree_control")?,
        ))
    }

    /// Enables controllers for this cgroup's children. Each must be available here
    /// (enabled by the parent): a controller bound to a cgroup v1 hierarchy gives
    /// [`Error::ControllerUnavailable`] naming its v1 mount. A cgroup with processes of its
    /// own cannot do this (the no-internal-processes rule, [`Error::InternalProcess`]).
    /// When the kernel refuses, each controller is tried alone so that
    /// [`Error::EnableFailed`] says which failed and why.
    ///
    /// ```no_run
    /// use qube_cgroup::{Cgroup, Controllers};
    /// Cgroup::root()?.enable_controllers(Controllers::MEMORY | Controllers::PIDS)?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn enable_controllers(&self, wanted: Controllers) -> Result<()> {
        self.require_available(wanted)?;
        self.change_subtree(wanted, '+')
    }

    /// Stops distributing controllers to the children. The kernel wants this bottom-up:
    /// while a child still enables one of them for its own children, the answer is
    /// [`Error::ControllerInUse`], naming those children.
    ///
    /// ```no_run
    /// use qube_cgroup::{Cgroup, Controllers};
    /// Cgroup::root()?.create("x")?.disable_controllers(Controllers::PIDS)?;
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn disable_controllers(&self, unwanted: Controllers) -> Result<()> {
        self.change_subtree(unwanted, '-')
    }

    /// Creates (or opens) each level of `rel` below this cgroup and enables `wanted` in
    /// this cgroup and every level above the last, top-down, as the kernel requires. The
    /// leaf, which will hold processes, enables nothing. Created levels are kept.
    ///
    /// ```no_run
    /// use qube_cgroup::{Cgroup, Controllers};
    /// let leaf = Cgroup::root()?.create_path("QubeContainers/web", Controllers::MEMORY | Controllers::PIDS)?;
    /// assert!(leaf.controllers()?.contains(Controllers::MEMORY));
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn create_path(&self, rel: &str, wanted: Controllers) -> Result<crate::Cgroup> {
        let mut parts = rel.split('/').filter(|p| !p.is_empty()).peekable();
        let mut current: Option<crate::Cgroup> = None;
        while let Some(name) = parts.next() {
            let parent = current.as_ref().unwrap_or(self);
            let missing = wanted - parent.subtree_control()?;
            if !missing.is_empty() {
                parent.enable_controllers(missing)?;
            }
            let child = parent.create_or_open(name)?.persist();
            if parts.peek().is_none() {
                return Ok(child);
            }
            current = Some(child);
        }
        Err(Error::InvalidName {
            name: rel.to_owned(),
            reason: "empty path",
        })
    }

    fn require_available(&self, wanted: Controllers) -> Result<()> {
        let missing = wanted - self.controllers()?;
        let Some(controller) = missing.controllers().next() else {
            return Ok(());
        };
        let v1_mount = crate::Mounts::current()
            .ok()
            .and_then(|m| m.v1_mount_of(controller).map(std::path::Path::to_owned));
        Err(Error::ControllerUnavailable {
            controller,
            path: self.path().to_owned(),
            v1_mount,
        })
    }

    /// The [`Error::ControllerInUse`] for disabling `set`, naming the children that still
    /// enable part of it; `None` if none does (any more) or they cannot be read.
    fn controllers_in_use(&self, set: Controllers) -> Option<Error> {
        let mut controllers = Controllers::empty();
        let mut children = Vec::new();
        for name in self.children().ok()? {
            let Ok(enabled) = self.open_child(&name).and_then(|c| c.subtree_control()) else {
                continue;
            };
            if enabled.intersects(set) {
                controllers |= enabled & set;
                children.push(name);
            }
        }
        if children.is_empty() {
            return None;
        }
        Some(Error::ControllerInUse {
            path: self.path_of("cgroup.subtree_control"),
            controllers,
            children,
        })
    }

    fn change_subtree(&self, set: Controllers, sign: char) -> Result<()> {
        const FILE: &str = "cgroup.subtree_control";
        let err = match self
            .dir
            .write_bytes(FILE, set.subtree_line(sign).as_bytes())
        {
            Ok(()) => return Ok(()),
            Err(e) => e,
        };
        // On a disable, EBUSY is not about processes: some child still enables one of
        // these controllers for its own children (cgroup_subtree_control_write).
        if sign == '-' && matches!(err, Error::InternalProcess { .. }) {
            return Err(self.controllers_in_use(set).unwrap_or(err));
        }
        if set.bits().count_ones() == 1
            || matches!(
                err,
                Error::InternalProcess { .. } | Error::Permission { .. }
            )
        {
            return Err(err);
        }
        let failures: Vec<(Controller, Box<Error>)> = set
            .controllers()
            .filter_map(|c| {
                self.dir
                    .write_bytes(FILE, c.flag().subtree_line(sign).as_bytes())
                    .err()
                    .map(|e| (c, Box::new(e)))
            })
            .collect();
        if failures.is_empty() {
            return Ok(());
        }
        Err(Error::EnableFailed {
            path: self.path_of(FILE),
            failures,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn controllers_round_trip(bits in 0u16..256) {
            let set = Controllers::from_bits_truncate(bits);
            prop_assert_eq!(set.to_string().parse::<Controllers>().unwrap(), set);
            prop_assert_eq!(Controllers::from_kernel(&set.to_string()), set);
        }
    }

    #[test]
    fn unknown_names_are_rejected_from_users() {
        assert!("memory bogus".parse::<Controllers>().is_err());
    }
}
