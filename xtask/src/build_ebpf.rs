//! `cargo xtask build-ebpf`: the eBPF objects, and the toolchain pieces they
//! need, installed into the project when missing.

use std::{
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::command::{output, run, workspace_root};

const NIGHTLY: &str = "+nightly";
const TARGET: &str = "bpfel-unknown-none";
/// eBPF binaries of `netprobe-ebpf`, copied to `target/bpf/` under these
/// names, and the target features each is built with.
const OBJECTS: [(&str, &[&str]); 3] = [
    // The probes read headers at any byte offset of a packet on every hop.
    // The kernel allows misaligned loads from packets and kernel memory on
    // x86; without the feature LLVM splits each such load into byte loads,
    // shifts and ors (np_in_1: 1893 instructions, 1582 with it). The fast
    // path keeps headers on the stack, where the verifier refuses
    // misaligned access, and builds without it.
    ("netprobe-probes", &["+allows-misaligned-mem-access"]),
    ("netprobe-fastpath", &[]),
    ("netprobe-testing", &[]),
];

#[derive(clap::Args)]
pub struct Options {
    /// Rebuild bpf-linker even if one is installed in the project.
    #[arg(long)]
    pub rebuild_linker: bool,
}

pub fn build_ebpf(options: &Options) -> Result<()> {
    let root = workspace_root();
    ensure_toolchain(options.rebuild_linker)?;
    let target_dir = root.join("target/bpf");
    for (object, features) in OBJECTS {
        let mut cargo = nightly_bpf_cargo("build", features);
        run(cargo
            .args(["--bin", object, "--release", "--target-dir"])
            .arg(&target_dir))
        .with_context(|| format!("building the eBPF programs of {object}"))?;
    }

    for (object, _) in OBJECTS {
        let built = target_dir.join(TARGET).join("release").join(object);
        let installed = target_dir.join(format!("{object}.o"));
        fs::copy(&built, &installed)
            .with_context(|| format!("copying {} to {}", built.display(), installed.display()))?;
        println!("eBPF object: {}", installed.display());
    }
    Ok(())
}

/// The nightly rust-src and a bpf-linker that matches the nightly's LLVM.
pub fn ensure_toolchain(rebuild_linker: bool) -> Result<()> {
    let llvm_major = nightly_llvm_major()?;
    ensure_rust_src()?;
    ensure_bpf_linker(&linker_prefix(), &llvm_major, rebuild_linker)
}

fn linker_prefix() -> PathBuf {
    workspace_root().join(".tools/bpf-linker")
}

/// `cargo +nightly SUBCOMMAND` for the eBPF crate, set up for the BPF
/// target with the project's bpf-linker and the target `features`.
pub fn nightly_bpf_cargo(subcommand: &str, features: &[&str]) -> Command {
    let mut path = OsString::from(linker_prefix().join("bin"));
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    let rustflags = [
        "--cfg=bpf_target_arch=\"x86_64\"",
        "-Cdebuginfo=2",
        // BPF ISA v3 (kernel 5.1+): atomic fetch-and-add, which the fast
        // path counts its outer IPv4 identification with.
        "-Ctarget-cpu=v3",
        // BTF carries the function info the verifier wants for bpf_loop callbacks.
        "-Clink-arg=--btf",
    ]
    .into_iter()
    .map(str::to_owned)
    // rustc hands target features on to bpf-linker (--cpu-features).
    .chain(
        features
            .iter()
            .map(|feature| format!("-Ctarget-feature={feature}")),
    )
    .collect::<Vec<_>>()
    .join("\x1f");
    let mut cargo = Command::new("cargo");
    cargo
        .current_dir(workspace_root())
        .args([NIGHTLY, subcommand, "--package", "netprobe-ebpf"])
        .args(["--target", TARGET, "-Z", "build-std=core"])
        .env("PATH", path)
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags);
    // The stable toolchain that runs xtask must not leak into the nightly build.
    for key in [
        "RUSTC",
        "RUSTC_WORKSPACE_WRAPPER",
        "RUSTUP_TOOLCHAIN",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
    ] {
        cargo.env_remove(key);
    }
    cargo
}

/// LLVM major version of the nightly rustc; bpf-linker must use the same.
fn nightly_llvm_major() -> Result<String> {
    let version = output(Command::new("rustc").args([NIGHTLY, "-vV"]))
        .context("the nightly toolchain is needed: rustup toolchain install nightly")?;
    version
        .lines()
        .find_map(|line| line.strip_prefix("LLVM version: "))
        .and_then(|llvm| llvm.split('.').next())
        .map(str::to_owned)
        .context("rustc +nightly -vV does not name its LLVM version")
}

fn nightly_sysroot() -> Result<PathBuf> {
    let sysroot = output(Command::new("rustc").args([NIGHTLY, "--print", "sysroot"]))?;
    Ok(PathBuf::from(sysroot.trim()))
}

/// `-Z build-std=core` compiles core from source.
fn ensure_rust_src() -> Result<()> {
    let core = nightly_sysroot()?.join("lib/rustlib/src/rust/library/core/Cargo.toml");
    if core.exists() {
        return Ok(());
    }
    println!("installing rust-src for the nightly toolchain");
    run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))
}

/// bpf-linker built from crates.io against the nightly toolchain's own
/// libLLVM, so nothing is downloaded but the crate sources.
fn ensure_bpf_linker(prefix: &Path, llvm_major: &str, rebuild: bool) -> Result<()> {
    let linker = prefix.join("bin/bpf-linker");
    if !rebuild
        && Command::new(&linker)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    {
        return Ok(());
    }
    println!("building bpf-linker against the nightly toolchain's LLVM {llvm_major}");
    let lib = prefix.join("lib");
    fs::create_dir_all(&lib).with_context(|| format!("creating {}", lib.display()))?;
    let sysroot_lib = nightly_sysroot()?.join("lib");
    let mut shared_llvm = None;
    for entry in
        fs::read_dir(&sysroot_lib).with_context(|| format!("listing {}", sysroot_lib.display()))?
    {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
            continue;
        };
        if name.starts_with("libLLVM") && name.contains(".so") {
            // The soname, which bpf-linker's RUNPATH finds at run time.
            symlink(&path, &lib.join(name))?;
            if name.starts_with("libLLVM.so.") {
                shared_llvm = Some(path.clone());
            }
        }
    }
    let Some(shared_llvm) = shared_llvm else {
        bail!("no libLLVM.so.* in {}", sysroot_lib.display());
    };
    // The link name, which the build looks for.
    symlink(&shared_llvm, &lib.join("libLLVM.so"))?;
    run(Command::new("cargo")
        .args(["install", "bpf-linker", "--no-default-features"])
        .args(["--features", &format!("llvm-{llvm_major}")])
        .arg("--root")
        .arg(prefix)
        .arg("--force")
        .env("LLVM_PREFIX", prefix)
        .env_remove("RUSTUP_TOOLCHAIN"))
    .context("building bpf-linker")
}

fn symlink(target: &Path, link: &Path) -> Result<()> {
    if link.symlink_metadata().is_ok() {
        fs::remove_file(link).with_context(|| format!("removing {}", link.display()))?;
    }
    std::os::unix::fs::symlink(target, link)
        .with_context(|| format!("linking {} to {}", link.display(), target.display()))
}
