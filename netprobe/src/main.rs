use std::process::ExitCode;

use clap::{Parser, Subcommand};
use netprobe::lab;

/// Per-hop latency of the container datapath, from the NIC to the pod's
/// socket and back.
#[derive(Parser)]
#[command(name = "netprobe", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The study's two machines in network namespaces, for each networking mode.
    #[command(subcommand_required = true)]
    Lab(lab::LabArgs),
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let result = match Cli::parse().command {
        Command::Lab(args) => lab::cli::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line with its causes, never a backtrace (RUST_BACKTRACE
            // would add one to the `Debug` form `main` prints by default).
            eprintln!("Error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
