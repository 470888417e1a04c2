//! The Debian packages netprobe's tests and lab run: installed when missing.

use std::{path::PathBuf, process::Command};

use anyhow::{Context as _, Result, bail};

use crate::command::{is_root, run};

/// (command looked for on PATH, Debian package that provides it).
const PACKAGES: [(&str, &str); 11] = [
    ("ip", "iproute2"),
    ("ping", "iputils-ping"),
    ("iptables", "iptables"),
    ("nginx", "nginx"),
    ("wrk", "wrk"),
    ("curl", "curl"),
    ("bpftool", "bpftool"),
    ("prometheus", "prometheus"),
    ("promtool", "prometheus"),
    // The report page's test opens it in headless Chromium; the live
    // table's test runs `netprobe attach` in tmux.
    ("chromium", "chromium"),
    ("tmux", "tmux"),
];

pub fn ensure_packages() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(command, _)| !on_path(command))
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !on_path("apt-get") {
        bail!(
            "missing packages and no apt-get to install them: {}",
            missing.join(" ")
        );
    }
    println!("installing {}", missing.join(" "));
    let apt = |args: &[&str]| {
        let mut command = if is_root() {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.arg("apt-get");
            sudo
        };
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        command
    };
    run(&mut apt(&["update", "-q"])).context("apt-get update")?;
    run(apt(&["install", "-y", "-q", "--no-install-recommends"]).args(&missing))
        .context("installing packages")?;
    Ok(())
}

fn on_path(command: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    // Users' PATH often lacks the sbin directories where ip and iptables live.
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .any(|dir| dir.join(command).is_file())
}
