//! `cargo xtask run -- ARGS`: netprobe, built and set up, run as root.

use std::process::Command;

use anyhow::{Context as _, Result};

use crate::{
    build_ebpf::{self, build_ebpf},
    command::{is_root, run as run_command, workspace_root},
    system::ensure_packages,
};

#[derive(clap::Args)]
pub struct Options {
    /// Arguments for netprobe, e.g. `lab bench`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

pub fn run(options: &Options) -> Result<()> {
    ensure_packages()?;
    build_ebpf(&build_ebpf::Options {
        rebuild_linker: false,
    })?;
    let root = workspace_root();
    run_command(Command::new("cargo").current_dir(&root).args([
        "build",
        "--release",
        "--package",
        "netprobe",
    ]))
    .context("building netprobe")?;
    let binary = root.join("target/release/netprobe");
    let mut netprobe = if is_root() {
        Command::new(&binary)
    } else {
        let mut sudo = Command::new("sudo");
        sudo.arg(&binary);
        sudo
    };
    run_command(netprobe.args(&options.args))
}
