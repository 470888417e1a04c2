//! Project tasks: `cargo xtask build-ebpf`, `cargo xtask test`, `cargo xtask run`.

mod build_ebpf;
mod command;
mod cycles;
mod deploy_tools;
mod imports;
mod lint;
mod run;
mod system;
mod test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build the eBPF objects, installing the nightly `rust-src` and a
    /// bpf-linker matched to the nightly's LLVM when they are missing.
    BuildEbpf(build_ebpf::Options),
    /// No import cycles among netprobe's modules, cargo fmt --check and
    /// clippy -D warnings on every crate.
    Lint,
    /// Set up everything the tests need, then run them all (as root; through
    /// sudo when started as a user).
    Test(test::Options),
    /// Set up, build, and run netprobe with the given arguments (as root;
    /// through sudo when started as a user).
    Run(run::Options),
}

fn main() -> ExitCode {
    let result = match Cli::parse().task {
        Task::BuildEbpf(options) => build_ebpf::build_ebpf(&options),
        Task::Lint => lint::lint(),
        Task::Test(options) => test::test(&options),
        Task::Run(options) => run::run(&options),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // The cause chain on one line, without a backtrace.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
