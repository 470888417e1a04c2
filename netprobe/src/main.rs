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
enum Command {}

fn main() -> anyhow::Result<()> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match Cli::parse().command {}
}
