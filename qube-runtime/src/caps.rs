//! Capabilities: the set a container keeps, and the `capset(2)` data built from it
//! before `clone` so that the child only copies it into a syscall.

use nix::libc;

bitflags::bitflags! {
    /// A set of Linux capabilities; bit *n* is capability number *n* (`linux/capability.h`).
    ///
    /// The default for a container is [`Capabilities::DOCKER_DEFAULT`]; everything else
    /// is dropped from the bounding, effective, permitted, inheritable and ambient sets.
    ///
    /// ```
    /// use qube_runtime::Capabilities;
    /// let caps = Capabilities::DOCKER_DEFAULT;
    /// assert!(caps.contains(Capabilities::KILL));
    /// assert!(!caps.contains(Capabilities::SYS_ADMIN));
    /// assert_eq!(caps.bits().count_ones(), 14);
    /// ```
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct Capabilities: u64 {
        /// CAP_CHOWN
        const CHOWN = 1 << 0;
        /// CAP_DAC_OVERRIDE
        const DAC_OVERRIDE = 1 << 1;
        /// CAP_DAC_READ_SEARCH
        const DAC_READ_SEARCH = 1 << 2;
        /// CAP_FOWNER
        const FOWNER = 1 << 3;
        /// CAP_FSETID
        const FSETID = 1 << 4;
        /// CAP_KILL
        const KILL = 1 << 5;
        /// CAP_SETGID
        const SETGID = 1 << 6;
        /// CAP_SETUID
        const SETUID = 1 << 7;
        /// CAP_SETPCAP
        const SETPCAP = 1 << 8;
        /// CAP_LINUX_IMMUTABLE
        const LINUX_IMMUTABLE = 1 << 9;
        /// CAP_NET_BIND_SERVICE
        const NET_BIND_SERVICE = 1 << 10;
        /// CAP_NET_BROADCAST
        const NET_BROADCAST = 1 << 11;
        /// CAP_NET_ADMIN
        const NET_ADMIN = 1 << 12;
        /// CAP_NET_RAW
        const NET_RAW = 1 << 13;
        /// CAP_IPC_LOCK
        const IPC_LOCK = 1 << 14;
        /// CAP_IPC_OWNER
        const IPC_OWNER = 1 << 15;
        /// CAP_SYS_MODULE
        const SYS_MODULE = 1 << 16;
        /// CAP_SYS_RAWIO
        const SYS_RAWIO = 1 << 17;
        /// CAP_SYS_CHROOT
        const SYS_CHROOT = 1 << 18;
        /// CAP_SYS_PTRACE
        const SYS_PTRACE = 1 << 19;
        /// CAP_SYS_PACCT
        const SYS_PACCT = 1 << 20;
        /// CAP_SYS_ADMIN
        const SYS_ADMIN = 1 << 21;
        /// CAP_SYS_BOOT
        const SYS_BOOT = 1 << 22;
        /// CAP_SYS_NICE
        const SYS_NICE = 1 << 23;
        /// CAP_SYS_RESOURCE
        const SYS_RESOURCE = 1 << 24;
        /// CAP_SYS_TIME
        const SYS_TIME = 1 << 25;
        /// CAP_SYS_TTY_CONFIG
        const SYS_TTY_CONFIG = 1 << 26;
        /// CAP_MKNOD
        const MKNOD = 1 << 27;
        /// CAP_LEASE
        const LEASE = 1 << 28;
        /// CAP_AUDIT_WRITE
        const AUDIT_WRITE = 1 << 29;
        /// CAP_AUDIT_CONTROL
        const AUDIT_CONTROL = 1 << 30;
        /// CAP_SETFCAP
        const SETFCAP = 1 << 31;
        /// CAP_MAC_OVERRIDE
        const MAC_OVERRIDE = 1 << 32;
        /// CAP_MAC_ADMIN
        const MAC_ADMIN = 1 << 33;
        /// CAP_SYSLOG
        const SYSLOG = 1 << 34;
        /// CAP_WAKE_ALARM
        const WAKE_ALARM = 1 << 35;
        /// CAP_BLOCK_SUSPEND
        const BLOCK_SUSPEND = 1 << 36;
        /// CAP_AUDIT_READ
        const AUDIT_READ = 1 << 37;
        /// CAP_PERFMON
        const PERFMON = 1 << 38;
        /// CAP_BPF
        const BPF = 1 << 39;
        /// CAP_CHECKPOINT_RESTORE
        const CHECKPOINT_RESTORE = 1 << 40;
    }
}

impl Capabilities {
    /// Docker's default set: CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID
    /// SETFCAP SETPCAP NET_BIND_SERVICE SYS_CHROOT KILL AUDIT_WRITE.
    ///
    /// ```
    /// use qube_runtime::Capabilities;
    /// assert!(Capabilities::DOCKER_DEFAULT.contains(Capabilities::NET_BIND_SERVICE));
    /// ```
    pub const DOCKER_DEFAULT: Capabilities = Capabilities::CHOWN
        .union(Capabilities::DAC_OVERRIDE)
        .union(Capabilities::FSETID)
        .union(Capabilities::FOWNER)
        .union(Capabilities::MKNOD)
        .union(Capabilities::NET_RAW)
        .union(Capabilities::SETGID)
        .union(Capabilities::SETUID)
        .union(Capabilities::SETFCAP)
        .union(Capabilities::SETPCAP)
        .union(Capabilities::NET_BIND_SERVICE)
        .union(Capabilities::SYS_CHROOT)
        .union(Capabilities::KILL)
        .union(Capabilities::AUDIT_WRITE);
}

impl Default for Capabilities {
    fn default() -> Capabilities {
        Capabilities::DOCKER_DEFAULT
    }
}

/// The bits of the current bounding set (`CapBnd` in `/proc/self/status`) outside `keep`,
/// read in the parent so that the child only loops over a number.
pub(crate) fn bounding_bits_to_drop(keep: Capabilities) -> u64 {
    current_bounding_set() & !keep.bits()
}

/// The bounding set from `/proc/self/status`; everything the kernel knows when unreadable.
fn current_bounding_set() -> u64 {
    read_proc_self_status()
        .and_then(|status| parse_cap_bnd(&status))
        .unwrap_or(u64::MAX)
}

/// procfs files report a size of 0, so `read_to_string` would grow its buffer from a few
/// bytes, one `read(2)` per doubling; a page takes the whole file in one.
fn read_proc_self_status() -> Option<String> {
    use std::io::Read;
    let mut status = String::with_capacity(4096);
    std::fs::File::open("/proc/self/status")
        .and_then(|mut file| file.read_to_string(&mut status))
        .ok()?;
    Some(status)
}

fn parse_cap_bnd(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapBnd:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// `struct __user_cap_header_struct` for `_LINUX_CAPABILITY_VERSION_3`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

/// `struct __user_cap_data_struct`, two of which hold 64 capability bits.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

/// The arguments of `capset(2)`, built before clone.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CapsetArgs {
    pub(crate) header: CapHeader,
    pub(crate) data: [CapData; 2],
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

impl CapsetArgs {
    /// effective = permitted = inheritable = `caps`, for the calling thread.
    pub(crate) fn new(caps: Capabilities) -> CapsetArgs {
        let bits = caps.bits();
        let half = |word: u32| CapData {
            effective: word,
            permitted: word,
            inheritable: word,
        };
        CapsetArgs {
            header: CapHeader {
                version: LINUX_CAPABILITY_VERSION_3,
                pid: 0,
            },
            data: [half(bits as u32), half((bits >> 32) as u32)],
        }
    }
}

/// The calling thread's effective capabilities in its own user namespace, from
/// `capget(2)`; none if the kernel refuses to say.
///
/// The calling thread, not the process (`/proc/self/status` shows the main thread's):
/// the clone copies this thread's credentials, and the kernel checks this thread's when
/// it writes the new user namespace's id maps.
pub(crate) fn effective() -> Capabilities {
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let empty = CapData {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    };
    let mut data = [empty; 2];
    // SAFETY: a version 3 header and the two data structs that version fills, on our stack.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_capget,
            std::ptr::addr_of_mut!(header),
            data.as_mut_ptr(),
        )
    };
    if ret != 0 {
        return Capabilities::empty();
    }
    let bits = u64::from(data[0].effective) | (u64::from(data[1].effective) << 32);
    Capabilities::from_bits_truncate(bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_default_numbers_match_capability_h() {
        let expected = [0u32, 1, 3, 4, 5, 6, 7, 8, 10, 13, 18, 27, 29, 31];
        let bits: u64 = expected.iter().map(|n| 1u64 << n).sum();
        assert_eq!(Capabilities::DOCKER_DEFAULT.bits(), bits);
    }

    #[test]
    fn cap_bnd_is_parsed_from_status() {
        let status = "Name:\tx\nCapBnd:\t000001ffffffffff\nCapAmb:\t0\n";
        assert_eq!(parse_cap_bnd(status), Some(0x1ff_ffff_ffff));
    }

    #[test]
    fn effective_capabilities_match_the_status_file() {
        let status = read_proc_self_status().unwrap();
        let hex = status
            .lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .unwrap();
        let from_status = u64::from_str_radix(hex.trim(), 16).unwrap();
        // The test thread's credentials are the main thread's: nobody changes them here.
        assert_eq!(effective().bits(), from_status & Capabilities::all().bits());
    }

    #[test]
    fn capset_words_split_the_bits() {
        let args = CapsetArgs::new(Capabilities::KILL | Capabilities::MAC_ADMIN);
        assert_eq!(args.data[0].effective, 1 << 5);
        assert_eq!(args.data[1].permitted, 1 << 1);
    }
}
