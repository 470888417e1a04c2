use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
    Load(netprobe::load::LoadArgs),
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let result = match Cli::parse().command {
        Command::Load(args) => netprobe::load::main(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the error and its causes joined by ": ".
            eprintln!("Error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
