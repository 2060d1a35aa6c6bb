//! `qube`: run and manage containers on cgroup v2.
//!
//! `qube daemon` owns the containers; every other command is a client that sends one
//! request over the daemon's Unix socket (see `protocol`). Exit codes: 0 ok, 1 runtime
//! failure, 2 bad usage or bad input.

mod cli;
mod client;
mod containers;
mod daemon;
mod format;
mod images;
mod launch;
mod logs;
mod model;
mod protocol;
mod state;
mod untar;
mod usage;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Usage errors exit with 2 here, before anything is sent or created.
    let cli = cli::Cli::parse();
    let result = match cli.command {
        cli::Command::Daemon(args) => daemon::run(&args, &cli.socket),
        command => client::run(&cli.socket, command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(fail) => fail.report(),
    }
}
