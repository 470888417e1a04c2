use std::process::ExitCode;

use clap::{Parser, Subcommand};
use netprobe::{agent, attach, bench, fastpath, lab, load, overhead, status};

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
    /// Attach the probes behind an interface and report per-hop latency.
    Attach(Box<attach::AttachArgs>),
    /// Keep the probes attached behind an interface and serve per-hop
    /// latency to Prometheus (/metrics), as JSON (/report) and a health
    /// check (/healthz), following the datapath as pods come and go.
    Agent(agent::AgentArgs),
    /// List what of netprobe is loaded in the kernel, and who holds it.
    Status,
    /// Stop running netprobe sessions, disable every fast path (putting back
    /// the device settings it changed) and remove netprobe's pinned
    /// attachments (never anything netprobe did not attach).
    Detach,
    /// A VXLAN-decapsulation fast path from a node's interface to its pods.
    #[command(subcommand_required = true)]
    Fastpath(fastpath::cli::FastpathArgs),
    /// The study's two machines in network namespaces, for each networking
    /// mode, and the bench that compares them.
    #[command(subcommand, subcommand_required = true)]
    Lab(LabCommand),
    /// Open-loop, constant-rate HTTP/1.1 load (in the style of tcpkali and
    /// wrk2).
    Load(load::LoadArgs),
    /// Render saved `lab bench` results again, or compare two runs.
    Report(bench::ReportArgs),
}

#[derive(Subcommand)]
enum LabCommand {
    #[command(flatten)]
    Lab(lab::cli::LabCommand),
    /// Compare the modes: for each, build its lab (npbench_MODE), load nginx
    /// at each rate and size with the probes on both nodes, and report
    /// latency, the per-segment attribution and system metrics.
    Bench(bench::BenchArgs),
    /// What the probes cost: throughput without them, with their hooks
    /// only, with the default settings and following every packet
    /// (flannel-vxlan and host, rounds in turn), the cost to traffic
    /// nothing watches, each program's time per run, and the default follow
    /// rate's error in each segment's percentiles.
    Overhead(overhead::OverheadArgs),
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if !error.use_stderr() => {
            // --help and --version.
            print!("{error}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            // One line: the first line of clap's message names the problem.
            let message = error.to_string();
            eprintln!("{}", message.lines().next().unwrap_or("invalid arguments"));
            return ExitCode::from(2);
        }
    };
    let result = match cli.command {
        Command::Attach(args) => attach::run(&args),
        Command::Agent(args) => agent::run(&args),
        Command::Status => status::run_status(),
        Command::Detach => status::run_detach(),
        Command::Fastpath(args) => fastpath::cli::run(args),
        Command::Lab(LabCommand::Bench(args)) => bench::run_bench(&args),
        Command::Lab(LabCommand::Overhead(args)) => overhead::run(&args),
        Command::Lab(LabCommand::Lab(command)) => lab::cli::run(command),
        Command::Load(args) => load::main(args),
        Command::Report(args) => bench::run_report(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // One line with its causes, never a backtrace.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
