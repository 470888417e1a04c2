//! `cargo xtask test`: everything the tests need, then the tests.

use std::process::Command;

use anyhow::{Context as _, Result};

use crate::{
    build_ebpf::{self, build_ebpf},
    command::{is_root, run, workspace_root},
    deploy_tools::ensure_deploy_tools,
    lint::lint,
    system::ensure_packages,
};

#[derive(clap::Args)]
pub struct Options {
    /// Arguments passed on to `cargo test`, e.g. a test name filter.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub cargo_test_args: Vec<String>,
}

pub fn test(options: &Options) -> Result<()> {
    ensure_packages()?;
    let deploy_tools = ensure_deploy_tools()?;
    build_ebpf(&build_ebpf::Options {
        rebuild_linker: false,
    })?;
    lint()?;
    let mut cargo = Command::new("cargo");
    cargo
        .current_dir(workspace_root())
        // The eBPF crate builds only for its own target (its binaries have
        // no `main` on the host); its programs are tested through netprobe.
        .args([
            "test",
            "--workspace",
            "--exclude",
            "netprobe-ebpf",
            "--release",
        ])
        .args(&options.cargo_test_args)
        // Where the tests of deploy/ find their checkers.
        .env("NETPROBE_DEPLOY_TOOLS", &deploy_tools);
    // The tests load programs and build namespaces: they run as root.
    if !is_root() {
        cargo.env("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER", "sudo -E");
    }
    run(&mut cargo).context("running the tests")
}
