//! The command line. Every value is parsed here, once, into its type: a bad one is a
//! usage error (exit 2) before anything is sent or created.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use qube_cgroup::{Bytes, Max};

use crate::model::{CpuMax, EnvVar, KernelText, Name, RestartPolicy, Volume};

/// Where the daemon listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/qube/qube.sock";

/// Run and manage containers on cgroup v2.
#[derive(Debug, Parser)]
#[command(name = "qube", version, about, propagate_version = true)]
pub struct Cli {
    /// The daemon's socket.
    #[arg(long, global = true, env = "QUBE_SOCKET", default_value = DEFAULT_SOCKET)]
    pub socket: PathBuf,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the daemon (in the foreground).
    Daemon(DaemonArgs),
    /// Start a container and print its id.
    Run(RunArgs),
    /// List containers: id, name, image, status, pid, uptime, memory.
    #[command(visible_alias = "ps")]
    List(JsonFlag),
    /// Show one container in detail, with its resource usage.
    Info {
        /// Id, id prefix or name.
        container: String,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Show live resource usage, refreshed in place; with --json, one line of JSON (an
    /// array of containers) per sample.
    Stats {
        /// Ids, id prefixes or names (default: every running container).
        containers: Vec<String>,
        /// Print one sample and exit.
        #[arg(long)]
        no_stream: bool,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// Print a container's output (stdout and stderr).
    Logs {
        /// Id, id prefix or name.
        container: String,
        /// Keep printing new output until the container ends.
        #[arg(short, long)]
        follow: bool,
    },
    /// Stop a container: SIGTERM to all its processes, SIGKILL after the timeout.
    Stop {
        /// Id, id prefix or name.
        container: String,
        /// Seconds to wait between SIGTERM and SIGKILL.
        #[arg(short, long, default_value_t = 10)]
        timeout: u64,
    },
    /// Wait until a container ends and print how it ended.
    Wait {
        /// Id, id prefix or name.
        container: String,
    },
    /// Send a signal to a container (SIGKILL ends all its processes at once).
    Kill {
        /// Id, id prefix or name.
        container: String,
        /// The signal: KILL, SIGTERM, HUP, 9, ...
        #[arg(short, long, default_value = "KILL", value_parser = parse_signal)]
        signal: nix::sys::signal::Signal,
    },
    /// Remove a stopped container: its record, logs and writable layer.
    Rm {
        /// Id, id prefix or name.
        container: String,
        /// Stop it first if it runs.
        #[arg(short, long)]
        force: bool,
    },
    /// List images.
    Images(JsonFlag),
    /// Manage images.
    #[command(subcommand)]
    Image(ImageCommand),
}

/// `--json`.
#[derive(Debug, Args, Clone, Copy)]
pub struct JsonFlag {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `qube image ...`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Import an image from a directory or a rootfs tarball (plain or gzip, e.g. `docker export`).
    Import {
        /// The image's name.
        #[arg(value_parser = parse_name)]
        name: Name,
        /// A directory, or a .tar / .tar.gz file.
        #[arg(required_unless_present = "busybox", conflicts_with = "busybox")]
        source: Option<PathBuf>,
        /// Make it from this machine's static busybox instead (needs no network).
        #[arg(long)]
        busybox: bool,
    },
    /// Remove an image that no container was made from.
    #[command(visible_alias = "remove")]
    Rm {
        /// The image's name.
        #[arg(value_parser = parse_name)]
        name: Name,
    },
}

/// `qube daemon`.
#[derive(Debug, Args, Clone)]
pub struct DaemonArgs {
    /// Where containers' records, logs and root filesystems and the images live.
    #[arg(long, default_value = "/var/lib/qube")]
    pub state_dir: PathBuf,
    /// The cgroup (relative to the cgroup2 mount) that holds one child per container.
    #[arg(long, default_value = "QubeContainers")]
    pub cgroup_root: String,
    /// Stop every container when the daemon exits (otherwise they keep running and the
    /// next daemon adopts them).
    #[arg(long)]
    pub stop_containers_on_exit: bool,
    /// The largest log a container keeps (the current file and one older one, each this big).
    #[arg(long, default_value = "1M", value_parser = parse_bytes)]
    pub log_size: Bytes,
}

/// `qube run`.
#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// The container's name (default: made from its id).
    #[arg(long, value_parser = parse_name)]
    pub name: Option<Name>,
    /// The image.
    #[arg(long, value_parser = parse_name)]
    pub image: Name,
    /// The command, run by the image's /bin/sh -c.
    #[arg(long)]
    pub cmd: String,
    /// Memory limit (memory.max): 512M, 2G, max. Default 2G.
    #[arg(long, value_parser = parse_max_bytes)]
    pub memory: Option<Max<Bytes>>,
    /// Swap limit (memory.swap.max): 256M, 0, max. Default 1G.
    #[arg(long, value_parser = parse_max_bytes)]
    pub swap: Option<Max<Bytes>>,
    /// CPU limit in CPUs (cpu.max): 1.5 is one and a half CPUs' time.
    #[arg(long, value_parser = parse_cpus)]
    pub cpus: Option<CpuMax>,
    /// Most processes at once (pids.max).
    #[arg(long, value_parser = parse_pids)]
    pub pids: Option<Max<u64>>,
    /// An environment variable, KEY=VALUE (repeatable).
    #[arg(short, long = "env", value_parser = parse_env)]
    pub env: Vec<EnvVar>,
    /// A bind mount, /host:/container[:ro] (repeatable).
    #[arg(short, long = "volume", value_parser = parse_volume)]
    pub volume: Vec<Volume>,
    /// A network namespace of its own, with only loopback.
    #[arg(long)]
    pub isolated: bool,
    /// Start it again when it ends.
    #[arg(long, value_enum, default_value_t = RestartPolicy::No)]
    pub restart: RestartPolicy,
}

fn parse_name(s: &str) -> Result<Name, String> {
    s.parse()
}

fn parse_bytes(s: &str) -> Result<Bytes, String> {
    s.parse().map_err(|e: qube_cgroup::Error| e.to_string())
}

fn parse_max_bytes(s: &str) -> Result<Max<Bytes>, String> {
    Max::<Bytes>::from_text(s)
}

fn parse_pids(s: &str) -> Result<Max<u64>, String> {
    match Max::<u64>::from_text(s)? {
        Max::Limit(0) => Err("a container needs at least one process".into()),
        limit => Ok(limit),
    }
}

fn parse_cpus(s: &str) -> Result<CpuMax, String> {
    let cpus: f64 = s
        .parse()
        .map_err(|_| format!("invalid CPU count {s:?}: expected a number such as 1.5"))?;
    if !(0.01..=4096.0).contains(&cpus) {
        return Err(format!("invalid CPU count {s:?}: expected 0.01 to 4096"));
    }
    Ok(CpuMax::cpus(cpus))
}

fn parse_env(s: &str) -> Result<EnvVar, String> {
    s.parse()
}

fn parse_volume(s: &str) -> Result<Volume, String> {
    s.parse()
}

/// `KILL`, `SIGKILL`, `kill` or `9`.
fn parse_signal(s: &str) -> Result<nix::sys::signal::Signal, String> {
    use nix::sys::signal::Signal;
    if let Ok(n) = s.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| format!("unknown signal number {n}"));
    }
    let upper = s.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    name.parse()
        .map_err(|_| format!("unknown signal {s:?} (try KILL, TERM, HUP, INT, USR1 or a number)"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("qube").chain(args.iter().copied()))
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_takes_flags_in_any_order() {
        let cli = parse(&[
            "run",
            "--cmd",
            "sleep 60",
            "--cpus",
            "1.5",
            "--name",
            "web",
            "--memory",
            "512M",
            "--env",
            "K=V",
            "--swap",
            "256M",
            "--pids",
            "256",
            "--volume",
            "/host:/ctr:ro",
            "--isolated",
            "--image",
            "alpine",
            "--socket",
            "/tmp/s",
        ])
        .unwrap();
        let Command::Run(run) = cli.command else {
            panic!("not run")
        };
        assert_eq!(run.memory, Some(Max::Limit(Bytes::mib(512))));
        assert_eq!(run.swap, Some(Max::Limit(Bytes::mib(256))));
        assert_eq!(run.cpus, Some(CpuMax::cpus(1.5)));
        assert_eq!(run.pids, Some(Max::Limit(256)));
        assert_eq!(run.image.as_str(), "alpine");
        assert!(run.isolated && run.volume[0].readonly);
        assert_eq!(cli.socket, PathBuf::from("/tmp/s"));
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["run", "--image", "alpine", "--cmd", "x", "--memory", "2gb?"][..],
            &["run", "--image", "../etc", "--cmd", "x"],
            &["run", "--image", "a/b", "--cmd", "x"],
            &["run", "--image", "alpine", "--cmd", "x", "--cpus", "-1"],
            &["run", "--image", "alpine", "--cmd", "x", "--pids", "0"],
            &["run", "--image", "alpine", "--cmd", "x", "--env", "novalue"],
            &["kill", "web", "--signal", "NOPE"],
            &["image", "import", "bad/name", "/x"],
            &["image", "import", "alpine"],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}: {err}");
        }
    }

    #[test]
    fn signals_by_name_or_number() {
        use nix::sys::signal::Signal;
        assert_eq!(parse_signal("KILL"), Ok(Signal::SIGKILL));
        assert_eq!(parse_signal("sigterm"), Ok(Signal::SIGTERM));
        assert_eq!(parse_signal("1"), Ok(Signal::SIGHUP));
    }
}
