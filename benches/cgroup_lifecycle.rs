//! The full cgroup lifecycle through qube-cgroup, side by side with the same sequence in
//! raw syscalls, and the stats parsers' throughput (memory.stat, cpu.stat, io.stat).
//!
//! One cycle: create, set memory.max, memory.swap.max, pids.max and cpu.max, attach a
//! process, read memory.current and parse memory.stat, move the process back, remove.
//!
//! Needs a pure cgroup v2 hierarchy with controllers (run it with `scripts/vm bench`).
//! `--count-syscalls` instead runs one cycle of each under strace and prints the counts.

use std::ffi::CString;
use std::hint::black_box;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use criterion::{criterion_group, Criterion};
use nix::libc;
use qube_cgroup::{Bytes, Cgroup, Controllers, CpuMax, CpuStat, IoStat, Max, MemoryStat};

const PARENT: &str = "qube-bench";
const BEGIN: &[u8] = b"QUBE-CYCLE-BEGIN";
const END: &[u8] = b"QUBE-CYCLE-END";

/// What both variants work with: the root, a parent with controllers on, a sleeping process.
struct Setup {
    root: Cgroup,
    parent: Cgroup,
    sleeper: Child,
}

impl Setup {
    fn new() -> Option<Setup> {
        let root = Cgroup::root().ok()?;
        let wanted = Controllers::MEMORY | Controllers::PIDS | Controllers::CPU;
        if !root.subtree_control().ok()?.contains(wanted) {
            return None;
        }
        let parent = root.create_or_open(PARENT).ok()?;
        parent.enable_controllers(wanted).ok()?;
        let sleeper = Command::new("sleep").arg("100000").spawn().ok()?;
        Some(Setup {
            root,
            parent,
            sleeper,
        })
    }

    fn pid(&self) -> u32 {
        self.sleeper.id()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = self.sleeper.kill();
        let _ = self.sleeper.wait();
    }
}

/// One cycle through qube-cgroup.
fn qube_cycle(s: &Setup) -> qube_cgroup::Result<u64> {
    let cg = s.parent.create("cycle")?;
    let memory = cg.memory();
    memory.set_max(Max::Limit(Bytes::gib(2)))?;
    memory.set_swap_max(Max::Limit(Bytes::gib(1)))?;
    cg.pids().set_max(Max::Limit(256))?;
    cg.cpu().set_max(CpuMax::cpus(1.5))?;
    cg.attach(s.pid())?;
    let current = memory.current()?;
    let stat = memory.stat()?;
    s.root.attach(s.pid())?;
    cg.remove()?;
    Ok(current.0 + stat.anon + stat.file)
}

/// Paths made once, as a hand-written C program would have them.
struct RawPaths {
    dir: CString,
    memory_max: CString,
    swap_max: CString,
    pids_max: CString,
    cpu_max: CString,
    procs: CString,
    current: CString,
    stat: CString,
    root_procs: CString,
}

impl RawPaths {
    fn new(s: &Setup) -> RawPaths {
        let dir = s.parent.path().join("cycle").display().to_string();
        let c = |p: String| CString::new(p).unwrap_or_default();
        RawPaths {
            memory_max: c(format!("{dir}/memory.max")),
            swap_max: c(format!("{dir}/memory.swap.max")),
            pids_max: c(format!("{dir}/pids.max")),
            cpu_max: c(format!("{dir}/cpu.max")),
            procs: c(format!("{dir}/cgroup.procs")),
            current: c(format!("{dir}/memory.current")),
            stat: c(format!("{dir}/memory.stat")),
            root_procs: c(s.root.path().join("cgroup.procs").display().to_string()),
            dir: c(dir),
        }
    }
}

/// The same cycle in raw syscalls: mkdir, open/write/close, open/read/close, rmdir.
fn raw_cycle(p: &RawPaths, pid: &[u8]) -> u64 {
    // SAFETY: every pointer passed is a valid NUL-terminated path or a live buffer of the given length.
    unsafe {
        assert_eq!(libc::mkdir(p.dir.as_ptr(), 0o755), 0, "raw mkdir failed");
        raw_write(&p.memory_max, b"2147483648");
        raw_write(&p.swap_max, b"1073741824");
        raw_write(&p.pids_max, b"256");
        raw_write(&p.cpu_max, b"150000 100000");
        raw_write(&p.procs, pid);
        let mut buf = [0u8; 4096];
        let n = raw_read(&p.current, &mut buf);
        let current = parse_u64(&buf[..n]);
        let n = raw_read(&p.stat, &mut buf);
        let stat =
            MemoryStat::parse(String::from_utf8_lossy(&buf[..n]).into_owned()).unwrap_or_default();
        raw_write(&p.root_procs, pid);
        assert_eq!(libc::rmdir(p.dir.as_ptr()), 0, "raw rmdir failed");
        current + stat.anon + stat.file
    }
}

/// SAFETY: `path` is NUL-terminated.
unsafe fn raw_write(path: &CString, value: &[u8]) {
    // SAFETY: the caller's path; value is a live slice.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        libc::write(fd, value.as_ptr().cast(), value.len());
        libc::close(fd);
    }
}

/// SAFETY: `path` is NUL-terminated.
unsafe fn raw_read(path: &CString, buf: &mut [u8]) -> usize {
    // SAFETY: the caller's path; buf is a live mutable slice.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        let mut len = 0;
        loop {
            let n = libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len);
            if n <= 0 {
                break;
            }
            len += n as usize;
        }
        libc::close(fd);
        len
    }
}

fn parse_u64(bytes: &[u8]) -> u64 {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

fn lifecycle(c: &mut Criterion) {
    let Some(setup) = Setup::new() else {
        eprintln!("SKIP cgroup_lifecycle: needs root and a pure cgroup v2 hierarchy with memory, pids and cpu (scripts/vm bench)");
        return;
    };
    let raw = RawPaths::new(&setup);
    let pid = setup.pid().to_string();
    let mut group = c.benchmark_group("lifecycle");
    // The kernel frees a removed cgroup later, in its workqueues, so one variant's cycles
    // slow the next ones down. Interleaving the two and timing each on its own puts both
    // under the same load; each function reports its own half.
    let interleaved = |iters: u64| {
        let (mut qube, mut raw_time) = (Duration::ZERO, Duration::ZERO);
        for _ in 0..iters {
            let start = Instant::now();
            if let Err(e) = black_box(qube_cycle(&setup)) {
                panic!("qube-cgroup cycle failed: {e}");
            }
            qube += start.elapsed();
            let start = Instant::now();
            black_box(raw_cycle(&raw, pid.as_bytes()));
            raw_time += start.elapsed();
        }
        (qube, raw_time)
    };
    group.bench_function("qube-cgroup", |b| {
        b.iter_custom(|iters| interleaved(iters).0)
    });
    group.bench_function("raw syscalls", |b| {
        b.iter_custom(|iters| interleaved(iters).1)
    });
    group.finish();
    let _ = setup.parent.remove();
}

/// Each stats parser next to the obvious hand-written one: split the text and collect
/// every key into owned strings, as a caller without typed stats would.
fn stats_parsing(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    let memory_stat = include_str!("data/memory.stat");
    group.throughput(criterion::Throughput::Bytes(memory_stat.len() as u64));
    group.bench_function("memory.stat", |b| {
        b.iter(|| MemoryStat::parse(black_box(memory_stat).to_owned()))
    });
    group.bench_function("memory.stat baseline: split+parse into a Vec", |b| {
        b.iter(|| split_flat(black_box(memory_stat)))
    });
    let cpu_stat = include_str!("data/cpu.stat");
    group.throughput(criterion::Throughput::Bytes(cpu_stat.len() as u64));
    group.bench_function("cpu.stat", |b| {
        b.iter(|| CpuStat::parse(black_box(cpu_stat).to_owned()))
    });
    group.bench_function("cpu.stat baseline: split+parse into a Vec", |b| {
        b.iter(|| split_flat(black_box(cpu_stat)))
    });
    let io_stat = include_str!("data/io.stat");
    group.throughput(criterion::Throughput::Bytes(io_stat.len() as u64));
    group.bench_function("io.stat", |b| {
        b.iter(|| IoStat::parse(black_box(io_stat).to_owned()))
    });
    group.bench_function("io.stat baseline: split+parse into nested Vecs", |b| {
        b.iter(|| split_nested(black_box(io_stat)))
    });
    group.finish();
}

/// `key value` lines into owned pairs.
fn split_flat(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(k, v)| Some((k.to_owned(), v.parse::<u64>().ok()?)))
        .collect()
}

/// `device key=value ...` lines into owned devices and pairs.
fn split_nested(text: &str) -> Vec<(String, Vec<(String, u64)>)> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let device = words.next()?.to_owned();
            let pairs = words
                .filter_map(|w| w.split_once('='))
                .filter_map(|(k, v)| Some((k.to_owned(), v.parse::<u64>().ok()?)))
                .collect();
            Some((device, pairs))
        })
        .collect()
}

/// One cycle of each variant between two marker writes, so strace's log can be cut to it.
fn one_cycle(variant: &str) {
    let Some(setup) = Setup::new() else {
        eprintln!("SKIP: no cgroup v2 controllers here");
        return;
    };
    let raw = RawPaths::new(&setup);
    let pid = setup.pid().to_string();
    marker(BEGIN);
    match variant {
        "raw" => drop(raw_cycle(&raw, pid.as_bytes())),
        _ => drop(qube_cycle(&setup)),
    }
    marker(END);
    let _ = setup.parent.remove();
}

/// A write to fd -1: fails at once, and shows in strace with its text.
fn marker(text: &[u8]) {
    // SAFETY: a write of a live slice to an invalid fd, which the kernel rejects with EBADF.
    unsafe { libc::write(-1, text.as_ptr().cast(), text.len()) };
}

/// Runs this binary's one-cycle mode under strace for each variant and prints the counts.
fn count_syscalls() {
    let exe = std::env::current_exe().unwrap_or_default();
    for variant in ["qube", "raw"] {
        let log = std::env::temp_dir().join(format!("qube-strace-{variant}"));
        let status = Command::new("strace")
            .args(["-qq", "-T"])
            .arg("-o")
            .arg(&log)
            .arg(&exe)
            .args(["--one-cycle", variant])
            .status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("SKIP syscall count: strace unavailable");
            return;
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let begin = lines.iter().position(|l| l.contains("QUBE-CYCLE-BEGIN"));
        let end = lines.iter().position(|l| l.contains("QUBE-CYCLE-END"));
        if let (Some(b), Some(e)) = (begin, end) {
            println!("syscalls per cycle, {variant}: {}", e - b - 1);
            for line in &lines[b + 1..e] {
                println!("  {line}");
            }
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(8));
    targets = lifecycle, stats_parsing
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--one-cycle") {
        one_cycle(args.get(i + 1).map_or("qube", String::as_str));
        return;
    }
    if args.iter().any(|a| a == "--count-syscalls") {
        count_syscalls();
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
