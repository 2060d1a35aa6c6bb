//! [`Resources`]: the limits of a cgroup as one value, checked as a whole before anything
//! is written, and applied in an order the kernel accepts.

use std::borrow::Cow;
use std::fmt::Display;

use crate::cgroup::Cgroup;
use crate::controller::Controllers;
use crate::cpu::{parse_burst, validate_burst, CpuMax, Nice};
use crate::cpuset::{CpuList, CPU_LIMIT, NODE_LIMIT};
use crate::error::{Error, Result};
use crate::hugetlb::HugePageSize;
use crate::io::{Device, IoMax};
use crate::value::{Bytes, Flag, Max, Weight};

/// Every limit [`Cgroup::apply`] can set; `None` (or an empty `io_max`) leaves a file as it is.
///
/// ```no_run
/// use qube_cgroup::{Bytes, Cgroup, CpuMax, Max, Resources};
/// let limits = Resources {
///     memory_max: Some(Max::Limit(Bytes::gib(2))),
///     memory_swap_max: Some(Max::Limit(Bytes::gib(1))),
///     cpu_max: Some(CpuMax::cpus(1.5)),
///     pids_max: Some(Max::Limit(256)),
///     ..Resources::default()
/// };
/// limits.validate()?;
/// let root = Cgroup::root()?;
/// root.enable_controllers(limits.controllers())?;
/// root.create("job")?.apply(&limits)?;
/// # Ok::<(), qube_cgroup::Error>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resources {
    /// `memory.max`: the hard limit.
    pub memory_max: Option<Max<Bytes>>,
    /// `memory.high`: the throttle limit.
    pub memory_high: Option<Max<Bytes>>,
    /// `memory.low`: best-effort protection (`max`: all of the group's memory).
    pub memory_low: Option<Max<Bytes>>,
    /// `memory.min`: hard protection (`max`: all of the group's memory).
    pub memory_min: Option<Max<Bytes>>,
    /// `memory.swap.max`: the swap limit.
    pub memory_swap_max: Option<Max<Bytes>>,
    /// `memory.swap.high`: the swap throttle limit.
    pub memory_swap_high: Option<Max<Bytes>>,
    /// `memory.zswap.max`: the zswap limit.
    pub memory_zswap_max: Option<Max<Bytes>>,
    /// `memory.oom.group`: kill the whole group on OOM.
    pub memory_oom_group: Option<bool>,
    /// `cpu.max`: the bandwidth limit.
    pub cpu_max: Option<CpuMax>,
    /// `cpu.weight`: the CPU share (not with `cpu_weight_nice`, nor an idle group).
    pub cpu_weight: Option<Weight>,
    /// `cpu.weight.nice`: the CPU share as a nice value, -20..=19.
    pub cpu_weight_nice: Option<i8>,
    /// `cpu.max.burst`: microseconds the group may run past its quota; at most the quota.
    pub cpu_max_burst: Option<u64>,
    /// `cpu.idle`: run at the lowest priority.
    pub cpu_idle: Option<bool>,
    /// `pids.max`: the task limit.
    pub pids_max: Option<Max<u64>>,
    /// `io.weight`'s default weight.
    pub io_weight: Option<Weight>,
    /// `io.max`: per-device limits, at most one entry per device.
    pub io_max: Vec<IoMax>,
    /// `cpuset.cpus`: the CPUs allowed (empty: the parent's).
    pub cpuset_cpus: Option<CpuList>,
    /// `cpuset.mems`: the memory nodes allowed (empty: the parent's).
    pub cpuset_mems: Option<CpuList>,
    /// `hugetlb.<size>.max`: per page size, in whole pages, at most one entry per size.
    pub hugetlb_max: Vec<(HugePageSize, Max<Bytes>)>,
}

impl Resources {
    /// Checks every value against what the kernel accepts, without touching any file:
    /// `cpu.max` bounds, nice in -20..=19, a burst within the quota, `pids.max` at most
    /// `PID_MAX_LIMIT`, `io.max` rates and devices, CPU and node numbers, and settings
    /// that contradict each other (`cpu_weight` with `cpu_weight_nice`, a weight for an
    /// idle group, two `io_max` entries for one device).
    ///
    /// ```
    /// use qube_cgroup::{CpuMax, Max, Resources};
    /// let ok = Resources { cpu_max: Some(CpuMax::cpus(0.5)), cpu_max_burst: Some(20_000), ..Resources::default() };
    /// assert!(ok.validate().is_ok());
    /// let too_nice = Resources { cpu_weight_nice: Some(20), ..Resources::default() };
    /// assert!(too_nice.validate().is_err());
    /// let burst_over_quota = Resources { cpu_max_burst: Some(60_000), ..ok };
    /// assert!(burst_over_quota.validate().is_err());
    /// ```
    pub fn validate(&self) -> Result<()> {
        self.validate_cpu()?;
        if let Some(limit) = self.pids_max {
            crate::pids::validate_max(limit)?;
        }
        self.validate_io()?;
        self.validate_hugetlb()?;
        self.validate_cpuset()
    }

    fn validate_hugetlb(&self) -> Result<()> {
        for (i, &(size, limit)) in self.hugetlb_max.iter().enumerate() {
            crate::hugetlb::validate_limit(size, limit)?;
            if self.hugetlb_max[..i]
                .iter()
                .any(|(earlier, _)| *earlier == size)
            {
                return Err(Error::invalid(
                    "hugetlb limits",
                    &size.to_string(),
                    "this page size is listed twice",
                ));
            }
        }
        Ok(())
    }

    fn validate_cpu(&self) -> Result<()> {
        if let Some(limit) = &self.cpu_max {
            limit.validate()?;
        }
        if let Some(nice) = self.cpu_weight_nice {
            Nice::new(nice)?;
        }
        if let Some(burst) = self.cpu_max_burst {
            validate_burst(burst, self.cpu_max.as_ref())?;
        }
        self.validate_weight_sources()
    }

    /// cpu.weight, cpu.weight.nice and cpu.idle all set the one weight of the group.
    fn validate_weight_sources(&self) -> Result<()> {
        let weighted = self.cpu_weight.is_some() || self.cpu_weight_nice.is_some();
        let (what, reason) = if self.cpu_weight.is_some() && self.cpu_weight_nice.is_some() {
            let reason = "cpu_weight and cpu_weight_nice both set the same weight; give one";
            ("cpu.weight.nice", reason)
        } else if self.cpu_idle == Some(true) && weighted {
            let reason =
                "an idle group has no weight: the kernel refuses cpu.weight while cpu.idle is 1";
            ("cpu.idle", reason)
        } else {
            return Ok(());
        };
        let shown = format!(
            "cpu_weight {:?}, cpu_weight_nice {:?}, cpu_idle {:?}",
            self.cpu_weight.map(Weight::get),
            self.cpu_weight_nice,
            self.cpu_idle
        );
        Err(Error::invalid(what, &shown, reason))
    }

    fn validate_io(&self) -> Result<()> {
        let mut devices: Vec<Device> = Vec::with_capacity(self.io_max.len());
        for limit in &self.io_max {
            limit.validate()?;
            if devices.contains(&limit.device) {
                return Err(Error::invalid(
                    "io.max",
                    &limit.to_string(),
                    format!(
                        "device {} appears twice; give one entry per device",
                        limit.device
                    ),
                ));
            }
            devices.push(limit.device);
        }
        Ok(())
    }

    fn validate_cpuset(&self) -> Result<()> {
        if let Some(cpus) = &self.cpuset_cpus {
            cpus.validate_below("cpuset.cpus", CPU_LIMIT)?;
        }
        if let Some(mems) = &self.cpuset_mems {
            mems.validate_below("cpuset.mems", NODE_LIMIT)?;
        }
        Ok(())
    }

    /// The controllers the set fields need, to enable in the parent's
    /// `cgroup.subtree_control`.
    ///
    /// ```
    /// use qube_cgroup::{Bytes, Controllers, Max, Resources};
    /// let r = Resources { memory_max: Some(Max::Limit(Bytes::gib(1))), pids_max: Some(Max::Max), ..Resources::default() };
    /// assert_eq!(r.controllers(), Controllers::MEMORY | Controllers::PIDS);
    /// ```
    pub fn controllers(&self) -> Controllers {
        let memory = self.memory_max.is_some()
            || self.memory_high.is_some()
            || self.memory_low.is_some()
            || self.memory_min.is_some()
            || self.memory_swap_max.is_some()
            || self.memory_swap_high.is_some()
            || self.memory_zswap_max.is_some()
            || self.memory_oom_group.is_some();
        let cpu = self.cpu_max.is_some()
            || self.cpu_weight.is_some()
            || self.cpu_weight_nice.is_some()
            || self.cpu_max_burst.is_some()
            || self.cpu_idle.is_some();
        let io = self.io_weight.is_some() || !self.io_max.is_empty();
        let cpuset = self.cpuset_cpus.is_some() || self.cpuset_mems.is_some();
        [
            (memory, Controllers::MEMORY),
            (cpu, Controllers::CPU),
            (self.pids_max.is_some(), Controllers::PIDS),
            (io, Controllers::IO),
            (cpuset, Controllers::CPUSET),
            (!self.hugetlb_max.is_empty(), Controllers::HUGETLB),
        ]
        .into_iter()
        .filter(|(needed, _)| *needed)
        .fold(Controllers::empty(), |set, (_, c)| set | c)
    }

    /// Whether no field is set, so that applying it writes nothing.
    ///
    /// ```
    /// assert!(qube_cgroup::Resources::default().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        *self == Resources::default()
    }

    /// The writes, in the order the kernel accepts them. Cpuset and io come first: their
    /// values depend on the machine (CPUs, devices) and are the likeliest to be refused,
    /// before anything with side effects (memory reclaim) has been done.
    fn writes(&self) -> Vec<Write> {
        let mut plan = Plan::default();
        plan.list("cpuset.cpus", self.cpuset_cpus.as_ref());
        plan.list("cpuset.mems", self.cpuset_mems.as_ref());
        for limit in &self.io_max {
            plan.push(Target::IoMaxLine(limit.device), Some(limit));
        }
        let io_default = self.io_weight.map(|w| format!("default {w}"));
        plan.push(Target::IoWeightDefault, io_default);
        self.memory_writes(&mut plan);
        for &(size, limit) in &self.hugetlb_max {
            plan.push(Target::HugetlbMax(size), Some(limit));
        }
        self.cpu_writes(&mut plan);
        plan.file("pids.max", self.pids_max);
        plan.writes
    }

    fn memory_writes(&self, plan: &mut Plan) {
        plan.file("memory.min", self.memory_min);
        plan.file("memory.low", self.memory_low);
        plan.file("memory.high", self.memory_high);
        plan.file("memory.max", self.memory_max);
        plan.file("memory.swap.max", self.memory_swap_max);
        plan.file("memory.swap.high", self.memory_swap_high);
        plan.file("memory.zswap.max", self.memory_zswap_max);
        plan.file("memory.oom.group", self.memory_oom_group.map(Flag));
    }

    /// `cpu.idle` first: the kernel refuses a weight while a group is idle, and
    /// validation has ruled out a weight together with idle 1.
    fn cpu_writes(&self, plan: &mut Plan) {
        plan.file("cpu.idle", self.cpu_idle.map(Flag));
        plan.file("cpu.weight", self.cpu_weight);
        plan.file("cpu.weight.nice", self.cpu_weight_nice);
        plan.file("cpu.max", self.cpu_max);
        plan.file("cpu.max.burst", self.cpu_max_burst);
    }
}

/// Where one write lands: a whole single-value file, or one line of a keyed file.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Target {
    File(&'static str),
    IoMaxLine(Device),
    IoWeightDefault,
    HugetlbMax(HugePageSize),
}

impl Target {
    fn file(self) -> Cow<'static, str> {
        match self {
            Target::File(file) => Cow::Borrowed(file),
            Target::IoMaxLine(_) => Cow::Borrowed("io.max"),
            Target::IoWeightDefault => Cow::Borrowed("io.weight"),
            Target::HugetlbMax(size) => Cow::Owned(size.file("max")),
        }
    }

    /// What to write to put back what is there now. Reading it first also means a
    /// missing file (controller not enabled, kernel too old) fails before any write.
    fn current(self, cg: &Cgroup) -> Result<String> {
        let text = cg.dir.read(&self.file())?;
        Ok(match self {
            Target::File(_) | Target::HugetlbMax(_) => match text.trim_end() {
                "" => "\n".to_owned(),
                value => value.to_owned(),
            },
            Target::IoMaxLine(device) => line_of(&text, &device.to_string())
                .map_or_else(|| IoMax::unlimited(device).to_string(), str::to_owned),
            Target::IoWeightDefault => {
                line_of(&text, "default").map_or_else(|| "default 100".to_owned(), str::to_owned)
            }
        })
    }
}

/// The line of a keyed file whose first word is `key`.
fn line_of<'t>(text: &'t str, key: &str) -> Option<&'t str> {
    text.lines()
        .find(|line| line.split_ascii_whitespace().next() == Some(key))
}

#[derive(Debug)]
struct Write {
    target: Target,
    value: String,
}

#[derive(Debug, Default)]
struct Plan {
    writes: Vec<Write>,
}

impl Plan {
    fn push(&mut self, target: Target, value: Option<impl Display>) {
        if let Some(value) = value {
            let value = value.to_string();
            self.writes.push(Write { target, value });
        }
    }

    fn file(&mut self, file: &'static str, value: Option<impl Display>) {
        self.push(Target::File(file), value);
    }

    /// An empty list is written as a newline, which the kernel takes as "none".
    fn list(&mut self, file: &'static str, list: Option<&CpuList>) {
        let value = list.map(|l| {
            if l.is_empty() {
                "\n".to_owned()
            } else {
                l.to_string()
            }
        });
        self.file(file, value);
    }

    fn position(&self, file: &'static str) -> Option<usize> {
        self.writes
            .iter()
            .position(|w| w.target == Target::File(file))
    }
}

impl Cgroup {
    /// Applies every set field of `resources`.
    ///
    /// Nothing is written unless [`Resources::validate`] passes and every file to be
    /// written can be read (so a controller that is not enabled, or a file this kernel
    /// lacks, fails before the first write). The writes then go in an order the kernel
    /// accepts: cpuset first, then io, memory (`memory.max` before `memory.swap.max`),
    /// cpu (`cpu.max` and `cpu.max.burst` in whichever order keeps the burst within
    /// the quota at every step), pids. If the kernel still refuses one, the files already
    /// written get their previous values back and the kernel's error is returned; what
    /// a lowered limit did meanwhile (memory reclaimed) cannot be undone.
    ///
    /// ```no_run
    /// use qube_cgroup::{Cgroup, Max, Resources};
    /// let cg = Cgroup::root()?.create("limited")?;
    /// cg.apply(&Resources { pids_max: Some(Max::Limit(64)), ..Resources::default() })?;
    /// assert_eq!(cg.pids().max()?, Max::Limit(64));
    /// # Ok::<(), qube_cgroup::Error>(())
    /// ```
    pub fn apply(&self, resources: &Resources) -> Result<()> {
        resources.validate()?;
        let mut plan = Plan {
            writes: resources.writes(),
        };
        let mut previous = plan
            .writes
            .iter()
            .map(|w| w.target.current(self))
            .collect::<Result<Vec<_>>>()?;
        order_burst_and_quota(&mut plan, &mut previous, resources.cpu_max)?;
        for (done, write) in plan.writes.iter().enumerate() {
            if let Err(err) = self.write_target(write.target, &write.value) {
                self.restore(&plan.writes[..done], &previous[..done]);
                return Err(err);
            }
        }
        Ok(())
    }

    fn write_target(&self, target: Target, value: &str) -> Result<()> {
        let written = self.dir.write_bytes(&target.file(), value.as_bytes());
        match target {
            Target::IoMaxLine(device) => {
                written.map_err(|e| crate::io::explain_missing_device(device, e))
            }
            Target::File(file) if file.starts_with("cpuset.") => {
                written.map_err(crate::cpuset::explain_emptying)
            }
            _ => written,
        }
    }

    /// Puts back the previous values, last written first. Best effort: the error that
    /// made this necessary is the one worth reporting.
    fn restore(&self, written: &[Write], previous: &[String]) {
        for (write, value) in written.iter().zip(previous).rev() {
            let _ = self.write_target(write.target, value);
        }
    }
}

/// The kernel keeps `cpu.max.burst <= quota` at every write. With the burst written
/// last, that fails when the old burst exceeds the new quota; then the burst goes
/// first, which always works: the new burst is within the new quota, hence below the
/// old burst, which was within the old quota.
fn order_burst_and_quota(
    plan: &mut Plan,
    previous: &mut [String],
    limit: Option<CpuMax>,
) -> Result<()> {
    let (Some(max_at), Some(burst_at)) = (plan.position("cpu.max"), plan.position("cpu.max.burst"))
    else {
        return Ok(());
    };
    let Some(Max::Limit(quota)) = limit.map(|l| l.quota) else {
        return Ok(());
    };
    if parse_burst(&previous[burst_at])? > quota {
        plan.writes.swap(max_at, burst_at);
        previous.swap(max_at, burst_at);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_follow_the_kernels_order() {
        let r = Resources {
            memory_max: Some(Max::Limit(Bytes::gib(1))),
            memory_swap_max: Some(Max::Max),
            cpu_max: Some(CpuMax::cpus(1.0)),
            cpu_max_burst: Some(1000),
            cpu_idle: Some(false),
            cpu_weight: Some(Weight::DEFAULT),
            pids_max: Some(Max::Limit(10)),
            io_max: vec![IoMax::unlimited(Device::new(8, 0))],
            io_weight: Some(Weight::DEFAULT),
            cpuset_cpus: Some(CpuList::new()),
            ..Resources::default()
        };
        let files: Vec<_> = r.writes().iter().map(|w| w.target.file()).collect();
        assert_eq!(
            files,
            [
                "cpuset.cpus",
                "io.max",
                "io.weight",
                "memory.max",
                "memory.swap.max",
                "cpu.idle",
                "cpu.weight",
                "cpu.max",
                "cpu.max.burst",
                "pids.max"
            ]
        );
        let values: Vec<_> = r.writes().into_iter().map(|w| w.value).collect();
        assert_eq!(values[0], "\n");
        assert_eq!(values[2], "default 100");
        assert_eq!(values[7], "100000 100000");
    }

    #[test]
    fn burst_goes_first_when_the_old_one_exceeds_the_new_quota() {
        let r = Resources {
            cpu_max: Some(CpuMax::cpus(0.1)),
            cpu_max_burst: Some(5_000),
            ..Resources::default()
        };
        let mut plan = Plan { writes: r.writes() };
        let mut previous = vec!["max 100000".to_owned(), "50000".to_owned()];
        order_burst_and_quota(&mut plan, &mut previous, r.cpu_max).unwrap();
        assert_eq!(plan.writes[0].target, Target::File("cpu.max.burst"));
        assert_eq!(previous[0], "50000");

        let mut plan = Plan { writes: r.writes() };
        let mut previous = vec!["max 100000".to_owned(), "0".to_owned()];
        order_burst_and_quota(&mut plan, &mut previous, r.cpu_max).unwrap();
        assert_eq!(plan.writes[0].target, Target::File("cpu.max"));
    }

    #[test]
    fn previous_lines_of_keyed_files() {
        let text =
            "7:0 rbps=2 wbps=max riops=max wiops=max\n8:0 rbps=max wbps=9 riops=max wiops=max\n";
        assert_eq!(
            line_of(text, "8:0"),
            Some("8:0 rbps=max wbps=9 riops=max wiops=max")
        );
        assert_eq!(line_of(text, "8:1"), None);
        assert_eq!(
            line_of("default 100\n7:0 200\n", "default"),
            Some("default 100")
        );
    }
}
