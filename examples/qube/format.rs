//! What the client prints: the info block, the tables of `list`, `stats` and `images`,
//! times, durations and sizes. Pure functions of the daemon's replies, so they are tested
//! on the host.

use std::fmt::Write as _;

use qube_cgroup::{Bytes, Max};

use crate::model::{Limits, Status, Usage};
use crate::protocol::{ContainerView, ImageView};

/// `qube info`: who the container is, how it runs, and its Resource Usage block.
pub fn info(view: &ContainerView, now: u64) -> String {
    let r = &view.record;
    let mut out = String::new();
    let mut field = |label: &str, value: &dyn std::fmt::Display| {
        let _ = writeln!(out, "{:<13}{value}", format!("{label}:"));
    };
    field("Name", &r.name);
    field("ID", &r.id);
    field("PID", &r.pid.map_or_else(|| "-".into(), |p| p.to_string()));
    field("Status", &status_long(r.status));
    field("Image", &r.image);
    field("Command", &r.command);
    field("Created", &timestamp(r.created));
    if let Some(started) = r.started {
        field("Started", &timestamp(started));
    }
    match (r.status, r.started, r.finished) {
        (Status::Running, Some(started), _) => {
            field("Uptime", &duration(now.saturating_sub(started)))
        }
        (_, Some(started), Some(finished)) => {
            field("Finished", &timestamp(finished));
            field("Ran for", &duration(finished.saturating_sub(started)));
        }
        _ => field("Uptime", &"-"),
    }
    field("Cgroup", &r.cgroup.display());
    field("Restart", &restart(r.restart, r.restart_count));
    out.push('\n');
    match (&view.usage, &r.final_usage) {
        (Some(usage), _) => {
            out.push_str("Resource Usage:\n");
            out.push_str(&resource_usage(usage, &r.limits));
        }
        (None, Some(usage)) => {
            out.push_str("Resource Usage (when it stopped; memory at its peak):\n");
            out.push_str(&resource_usage(usage, &r.limits));
        }
        (None, None) => out.push_str("Resource Usage: not available\n"),
    }
    out
}

/// The Resource Usage lines: memory, swap, CPU, pids, OOM kills.
pub fn resource_usage(usage: &Usage, limits: &Limits) -> String {
    format!(
        "Memory:      {}\nSwap:        {}\nCPU:         {}\nPIDs:        {} / {}\nOOM kills:   {}\n",
        usage_of(usage.memory, limits.memory_max),
        usage_of(usage.swap, limits.swap_max),
        cpu(usage.cpu_usec, limits),
        usage.pids,
        limits.pids_max,
        usage.oom_kills,
    )
}

/// `12.34 MB / 2048.00 MB (0.6%)`, or `12.34 MB / unlimited`. MB are MiB, like the kernel's sizes.
fn usage_of(used: Bytes, limit: Max<Bytes>) -> String {
    match limit {
        Max::Limit(limit) => format!(
            "{:.2} MB / {:.2} MB ({:.1}%)",
            used.as_mib(),
            limit.as_mib(),
            percent(used.0 as f64, limit.0 as f64)
        ),
        Max::Max => format!("{:.2} MB / unlimited", used.as_mib()),
    }
}

fn cpu(usec: u64, limits: &Limits) -> String {
    let limit = match limits.cpu_max.and_then(|c| c.as_cpus()) {
        Some(cpus) => format!("limit {cpus:.2} CPUs"),
        None => "no limit".to_owned(),
    };
    format!("{:.2}s used, {limit}", usec as f64 / 1e6)
}

fn percent(part: f64, whole: f64) -> f64 {
    if whole > 0.0 {
        part * 100.0 / whole
    } else {
        0.0
    }
}

fn restart(policy: crate::model::RestartPolicy, count: u32) -> String {
    use crate::model::RestartPolicy::*;
    let name = match policy {
        No => "no",
        OnFailure => "on-failure",
        Always => "always",
    };
    format!("{name} ({count} restarts)")
}

/// The status in a sentence.
pub fn status_long(status: Status) -> String {
    match status {
        Status::Created => "created".into(),
        Status::Running => "running".into(),
        Status::Exited { code } => format!("exited with code {code}"),
        Status::Killed { signal } => format!("killed by signal {signal} ({})", signal_name(signal)),
        Status::OomKilled => "OOM-killed (the memory limit was reached)".into(),
        Status::Lost => "exited; exit status unknown (it ended while no daemon watched it)".into(),
    }
}

/// The status in a table cell.
pub fn status_short(status: Status) -> String {
    match status {
        Status::Created => "created".into(),
        Status::Running => "running".into(),
        Status::Exited { code } => format!("exited ({code})"),
        Status::Killed { signal } => format!("killed ({})", signal_name(signal)),
        Status::OomKilled => "oom-killed".into(),
        Status::Lost => "exited (?)".into(),
    }
}

/// `SIGKILL` for 9.
pub fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_owned())
}

/// `qube list`.
pub fn list(views: &[ContainerView], now: u64) -> String {
    let mut rows = vec![row(&[
        "ID", "NAME", "IMAGE", "STATUS", "PID", "UPTIME", "MEMORY",
    ])];
    for v in views {
        let r = &v.record;
        let live = r.status == Status::Running;
        rows.push(vec![
            r.id.clone(),
            r.name.to_string(),
            r.image.to_string(),
            status_short(r.status),
            r.pid.filter(|_| live).map_or("-".into(), |p| p.to_string()),
            r.started
                .filter(|_| live)
                .map_or("-".into(), |s| duration(now.saturating_sub(s))),
            v.usage
                .map_or("-".into(), |u| format!("{:.2} MB", u.memory.as_mib())),
        ]);
    }
    table(&rows)
}

/// One `qube stats` sample of a container; CPU % needs the previous one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuSample {
    /// `usage_usec` at the sample.
    pub usage_usec: u64,
    /// When, in microseconds since the epoch.
    pub at_usec: u64,
}

/// CPU use between two samples, in percent of one CPU (200% is two CPUs busy).
pub fn cpu_percent(before: CpuSample, after: CpuSample) -> f64 {
    let used = after.usage_usec.saturating_sub(before.usage_usec) as f64;
    let wall = after.at_usec.saturating_sub(before.at_usec) as f64;
    percent(used, wall)
}

/// `qube stats`: one row per running container, with the CPU % since `previous`.
pub fn stats(views: &[ContainerView], previous: &dyn Fn(&str) -> Option<CpuSample>) -> String {
    let mut rows = vec![row(&[
        "ID",
        "NAME",
        "CPU %",
        "MEM USAGE / LIMIT",
        "MEM %",
        "SWAP",
        "PIDS",
        "OOM KILLS",
    ])];
    for v in views {
        let Some(usage) = v.usage else { continue };
        let limits = &v.record.limits;
        let now = CpuSample {
            usage_usec: usage.cpu_usec,
            at_usec: v.sampled_at_usec,
        };
        let cpu = previous(&v.record.id).map_or("--".into(), |before| {
            format!("{:.2}%", cpu_percent(before, now))
        });
        let mem_limit = limits.memory_max.limit();
        rows.push(vec![
            v.record.id.clone(),
            v.record.name.to_string(),
            cpu,
            format!(
                "{} / {}",
                size(usage.memory),
                mem_limit.map_or("unlimited".into(), size)
            ),
            mem_limit.map_or("--".into(), |l| {
                format!("{:.2}%", percent(usage.memory.0 as f64, l.0 as f64))
            }),
            size(usage.swap),
            format!("{} / {}", usage.pids, limits.pids_max),
            usage.oom_kills.to_string(),
        ]);
    }
    table(&rows)
}

/// `qube images`.
pub fn images(images: &[ImageView]) -> String {
    let mut rows = vec![row(&["NAME", "SIZE", "CREATED", "SOURCE"])];
    for i in images {
        rows.push(vec![
            i.name.to_string(),
            size(Bytes(i.size)),
            timestamp(i.created),
            i.source.clone(),
        ]);
    }
    table(&rows)
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_owned()).collect()
}

/// Left-aligned columns, three spaces apart, no trailing blanks.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (cell, width) in r.iter().zip(&widths) {
            let _ = write!(line, "{cell:<width$}   ");
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A size with a binary unit: `512B`, `1.50KiB`, `12.34MiB`, `2GiB`.
pub fn size(b: Bytes) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = b.0 as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value:.0}{}", UNITS[unit])
    } else {
        format!("{value:.2}{}", UNITS[unit])
    }
}

/// `3d 4h`, `2h 5m`, `3m 12s`, `45s`.
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {s}s")
    } else {
        format!("{s}s")
    }
}

/// `2026-12-03 19:03:25 UTC` for seconds since the epoch.
pub fn timestamp(unix: u64) -> String {
    let days = i64::try_from(unix / 86400).unwrap_or(i64::MAX);
    let (y, m, d) = civil_from_days(days);
    let rem = unix % 86400;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// The proleptic Gregorian date of a day number (days since 1970-01-01), after Howard
/// Hinnant's `civil_from_days`.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::CpuMax;
    use crate::state::tests::sample_record;

    fn running_view() -> ContainerView {
        let mut record = sample_record("0123456789ab");
        record.limits.pids_max = Max::Limit(256);
        ContainerView {
            record,
            usage: Some(Usage {
                memory: Bytes(12_939_427),
                swap: Bytes(0),
                cpu_usec: 1_520_000,
                pids: 3,
                oom_kills: 0,
            }),
            sampled_at_usec: 0,
        }
    }

    #[test]
    fn the_resource_usage_block_has_the_documented_lines() {
        let text = info(&running_view(), 1_700_000_061);
        let block = "Resource Usage:\n\
                     Memory:      12.34 MB / 2048.00 MB (0.6%)\n\
                     Swap:        0.00 MB / 1024.00 MB (0.0%)\n\
                     CPU:         1.52s used, no limit\n\
                     PIDs:        3 / 256\n\
                     OOM kills:   0\n";
        assert!(text.ends_with(block), "{text}");
        for line in [
            "Name:        web\n",
            "ID:          0123456789ab\n",
            "PID:         4242\n",
            "Status:      running\n",
            "Image:       alpine\n",
            "Command:     sleep 60\n",
            "Created:     2023-11-14 22:13:20 UTC\n",
            "Uptime:      1m 0s\n",
            "Cgroup:      /sys/fs/cgroup/QubeContainers/0123456789ab\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from\n{text}");
        }
    }

    #[test]
    fn a_stopped_container_shows_how_it_ended_and_its_final_figures() {
        let mut view = running_view();
        view.record.status = Status::OomKilled;
        view.record.pid = None;
        view.record.finished = Some(1_700_000_031);
        view.record.final_usage = view.usage.take().map(|u| Usage { oom_kills: 1, ..u });
        let text = info(&view, 1_800_000_000);
        assert!(text.contains("Status:      OOM-killed"), "{text}");
        assert!(text.contains("Ran for:     30s"), "{text}");
        assert!(text.contains("OOM kills:   1\n"), "{text}");
        assert!(text.contains("PID:         -\n"), "{text}");
    }

    #[test]
    fn limits_without_a_value_say_so() {
        let limits = Limits {
            memory_max: Max::Max,
            swap_max: Max::Limit(Bytes(0)),
            cpu_max: Some(CpuMax::cpus(1.5)),
            pids_max: Max::Max,
        };
        let text = resource_usage(&Usage::default(), &limits);
        assert!(
            text.contains("Memory:      0.00 MB / unlimited\n"),
            "{text}"
        );
        assert!(
            text.contains("Swap:        0.00 MB / 0.00 MB (0.0%)\n"),
            "{text}"
        );
        assert!(
            text.contains("CPU:         0.00s used, limit 1.50 CPUs\n"),
            "{text}"
        );
        assert!(text.contains("PIDs:        0 / max\n"), "{text}");
    }

    #[test]
    fn statuses_read_as_sentences() {
        assert_eq!(
            status_long(Status::Exited { code: 3 }),
            "exited with code 3"
        );
        assert_eq!(
            status_long(Status::Killed { signal: 9 }),
            "killed by signal 9 (SIGKILL)"
        );
        assert_eq!(
            status_short(Status::Killed { signal: 15 }),
            "killed (SIGTERM)"
        );
    }

    #[test]
    fn tables_align_columns() {
        let text = list(&[running_view()], 1_700_000_061);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with("ID             NAME   IMAGE    STATUS"),
            "{text}"
        );
        assert_eq!(lines[0].find("NAME"), lines[1].find("web"));
        assert!(lines[1].ends_with("12.34 MB"), "{text}");
    }

    #[test]
    fn cpu_percent_is_of_one_cpu() {
        let a = CpuSample {
            usage_usec: 0,
            at_usec: 1_000_000,
        };
        let b = CpuSample {
            usage_usec: 1_500_000,
            at_usec: 2_000_000,
        };
        assert_eq!(cpu_percent(a, b), 150.0);
        assert_eq!(cpu_percent(b, b), 0.0);
    }

    #[test]
    fn times_and_sizes() {
        assert_eq!(timestamp(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(timestamp(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(timestamp(1_796_325_805), "2026-12-03 19:23:25 UTC");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(3_725), "1h 2m");
        assert_eq!(duration(90_000), "1d 1h");
        assert_eq!(size(Bytes::gib(2)), "2GiB");
        assert_eq!(size(Bytes(1536)), "1.50KiB");
        assert_eq!(size(Bytes(7)), "7B");
    }
}
