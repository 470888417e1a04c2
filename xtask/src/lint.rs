//! `cargo xtask lint`: formatting and clippy, for the userspace crates and
//! for the eBPF crate on its own target.

use std::process::Command;

use anyhow::{Context as _, Result};

use crate::{
    build_ebpf::{ensure_toolchain, nightly_bpf_cargo},
    command::{run, workspace_root},
};

pub fn lint() -> Result<()> {
    let root = workspace_root();
    run(Command::new("cargo")
        .current_dir(&root)
        .args(["fmt", "--all", "--", "--check"]))
    .context("cargo fmt --check: run `cargo fmt --all`")?;
    run(Command::new("cargo").current_dir(&root).args([
        "clippy",
        "--all-targets",
        "--package",
        "netprobe",
        "--package",
        "netprobe-common",
        "--package",
        "xtask",
        "--",
        "-D",
        "warnings",
    ]))
    .context("clippy (userspace)")?;
    ensure_toolchain(false)?;
    run(nightly_bpf_cargo("clippy")
        .arg("--target-dir")
        .arg(root.join("target/bpf-clippy"))
        .args(["--", "-D", "warnings"]))
    .context("clippy (eBPF)")
}
