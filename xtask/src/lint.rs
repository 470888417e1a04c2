//! `cargo xtask lint`: no import cycles among netprobe's modules, then
//! formatting and clippy, for the userspace crates and for the eBPF crate on
//! its own target.

use std::{path::Path, process::Command};

use anyhow::{Context as _, Result, bail};

use crate::{
    build_ebpf::{ensure_toolchain, nightly_bpf_cargo},
    command::{run, workspace_root},
    cycles::{Circle, circles},
    imports::{self, Edges},
};

/// The crates whose modules must not import each other in a circle.
const ACYCLIC_CRATES: [&str; 2] = ["netprobe/src/lib.rs", "netprobe-common/src/lib.rs"];

/// How many of the paths that make one edge of a cycle are quoted.
const WITNESSES_PER_EDGE: usize = 3;

pub fn lint() -> Result<()> {
    let root = workspace_root();
    for lib_rs in ACYCLIC_CRATES {
        no_import_cycles(&root, lib_rs)?;
    }
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
    run(nightly_bpf_cargo("clippy", &[])
        .arg("--bins")
        .arg("--target-dir")
        .arg(root.join("target/bpf-clippy"))
        .args(["--", "-D", "warnings"]))
    .context("clippy (eBPF)")
}

/// Fails naming every cycle of imports among the children of one module of
/// the crate at `lib_rs` (relative to `root`), with the paths that make each
/// of its edges.
fn no_import_cycles(root: &Path, lib_rs: &str) -> Result<()> {
    let mut report = Vec::new();
    for (parent, edges) in &imports::read(&root.join(lib_rs))? {
        let among = if parent.is_empty() {
            "the crate's top-level modules".to_string()
        } else {
            format!("{}'s modules", parent.join("::"))
        };
        for circle in circles(&imports::graph(edges)) {
            report.push(describe(&among, &circle, edges));
        }
    }
    if !report.is_empty() {
        bail!(
            "import cycles in {lib_rs} (files relative to its directory):\n{}",
            report.concat().trim_end()
        );
    }
    Ok(())
}

/// A circle's cycle, the circle's other members, and for each edge of the
/// cycle the first paths that make it.
fn describe(among: &str, circle: &Circle, edges: &Edges) -> String {
    let cycle = &circle.cycle;
    let mut lines = vec![format!(
        "  among {among}: {} -> {}",
        cycle.join(" -> "),
        cycle[0]
    )];
    let others: Vec<&str> = circle
        .members
        .iter()
        .filter(|member| !cycle.contains(member))
        .map(String::as_str)
        .collect();
    if !others.is_empty() {
        lines.push(format!("    (the circle also holds {})", others.join(", ")));
    }
    let on_cycle = |from: &String, to: &String| {
        (0..cycle.len())
            .any(|index| &cycle[index] == from && &cycle[(index + 1) % cycle.len()] == to)
    };
    for (index, from) in cycle.iter().enumerate() {
        let to = &cycle[(index + 1) % cycle.len()];
        let witnesses = &edges[&(from.clone(), to.clone())];
        for witness in witnesses.iter().take(WITNESSES_PER_EDGE) {
            lines.push(format!("    {from} -> {to}: {witness}"));
        }
        if witnesses.len() > WITNESSES_PER_EDGE {
            let more = witnesses.len() - WITNESSES_PER_EDGE;
            lines.push(format!("    {from} -> {to}: and {more} more"));
        }
    }
    // The circle's other imports, each by its first path: breaking the
    // cycle alone may leave another.
    for ((from, to), witnesses) in edges {
        if circle.members.contains(from) && circle.members.contains(to) && !on_cycle(from, to) {
            lines.push(format!("    also {from} -> {to}: {}", witnesses[0]));
        }
    }
    lines.iter().map(|line| format!("{line}\n")).collect()
}
