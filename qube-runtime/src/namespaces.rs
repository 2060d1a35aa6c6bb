//! The namespaces a container can get, the network choice, and user-namespace id maps.

use nix::libc;

bitflags::bitflags! {
    /// Namespaces the container's first process is born into.
    ///
    /// `CGROUP` is not passed to `clone3`: a cgroup namespace made there would be rooted
    /// at the *parent's* cgroup (namespaces are copied before `CLONE_INTO_CGROUP` places
    /// the task), so the child unshares it as its first act inside its own cgroup.
    ///
    /// ```
    /// use qube_runtime::Namespaces;
    /// let ns = Namespaces::PID | Namespaces::MOUNT | Namespaces::UTS;
    /// assert!(ns.contains(Namespaces::PID));
    /// assert_eq!(Namespaces::CONTAINER.bits().count_ones(), 6);
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct Namespaces: u32 {
        /// A new pid namespace: the container's first process is pid 1.
        const PID = 1 << 0;
        /// A new mount namespace (required for a rootfs).
        const MOUNT = 1 << 1;
        /// A new UTS namespace (required for a hostname).
        const UTS = 1 << 2;
        /// A new IPC namespace.
        const IPC = 1 << 3;
        /// A new network namespace with only `lo`, brought up.
        const NET = 1 << 4;
        /// A new cgroup namespace rooted at the container's cgroup.
        const CGROUP = 1 << 5;
        /// A new user namespace (needs [`IdMap`]s).
        const USER = 1 << 6;
    }
}

impl Namespaces {
    /// What a typical container gets: every namespace but the user namespace.
    ///
    /// ```
    /// use qube_runtime::Namespaces;
    /// assert!(!Namespaces::CONTAINER.contains(Namespaces::USER));
    /// ```
    pub const CONTAINER: Namespaces = Namespaces::PID
        .union(Namespaces::MOUNT)
        .union(Namespaces::UTS)
        .union(Namespaces::IPC)
        .union(Namespaces::NET)
        .union(Namespaces::CGROUP);

    /// The `CLONE_NEW*` flags to pass to `clone3`/`clone` (all but `CGROUP`, see above).
    pub(crate) fn clone_flags(self) -> u64 {
        let table = [
            (Namespaces::PID, libc::CLONE_NEWPID),
            (Namespaces::MOUNT, libc::CLONE_NEWNS),
            (Namespaces::UTS, libc::CLONE_NEWUTS),
            (Namespaces::IPC, libc::CLONE_NEWIPC),
            (Namespaces::NET, libc::CLONE_NEWNET),
            (Namespaces::USER, libc::CLONE_NEWUSER),
        ];
        table
            .into_iter()
            .filter(|(ns, _)| self.contains(*ns))
            .fold(0, |flags, (_, flag)| flags | flag as u64)
    }
}

/// Where the container's network comes from.
///
/// ```
/// use qube_runtime::{Command, Network};
/// let cmd = Command::new("/bin/true").network(Network::Isolated);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Network {
    /// The host's network namespace (the default).
    #[default]
    Host,
    /// A new network namespace with only `lo`, which is brought up.
    Isolated,
}

/// One line of `/proc/PID/uid_map` or `gid_map`: ids `inside..inside+count` in the
/// container are `outside..outside+count` on the host.
///
/// ```
/// use qube_runtime::IdMap;
/// let map = IdMap { inside: 0, outside: 100_000, count: 65_536 };
/// assert_eq!(map.to_string(), "0 100000 65536");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMap {
    /// The first id in the container.
    pub inside: u32,
    /// The id it maps to on the host.
    pub outside: u32,
    /// How many consecutive ids are mapped.
    pub count: u32,
}

impl std::fmt::Display for IdMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.inside, self.outside, self.count)
    }
}

/// The text written to `uid_map`/`gid_map`: one line per mapping.
pub(crate) fn id_map_text(maps: &[IdMap]) -> String {
    maps.iter().map(|m| format!("{m}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_namespace_is_never_a_clone_flag() {
        let flags = Namespaces::all().clone_flags();
        assert_eq!(flags & libc::CLONE_NEWCGROUP as u64, 0);
        assert_ne!(flags & libc::CLONE_NEWPID as u64, 0);
    }

    #[test]
    fn id_maps_are_one_line_each() {
        let maps = [
            IdMap {
                inside: 0,
                outside: 1000,
                count: 1,
            },
            IdMap {
                inside: 1,
                outside: 100_000,
                count: 65_535,
            },
        ];
        assert_eq!(id_map_text(&maps), "0 1000 1\n1 100000 65535\n");
    }
}
