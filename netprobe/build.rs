//! Embeds the eBPF objects built by `cargo xtask build-ebpf`, so the netprobe
//! binary is one self-contained file.

use std::{env, fs, path::PathBuf};

const OBJECTS: [&str; 3] = [
    "netprobe-probes.o",
    "netprobe-fastpath.o",
    "netprobe-testing.o",
];

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    let bpf_dir = manifest_dir.join("../target/bpf");
    for object in OBJECTS {
        let built = bpf_dir.join(object);
        println!("cargo::rerun-if-changed={}", built.display());
        if !built.exists() {
            println!(
                "cargo::error=eBPF object {} not found: run `cargo xtask build-ebpf` first",
                built.display()
            );
            return;
        }
        let embedded = out_dir.join(object);
        if let Err(err) = fs::copy(&built, &embedded) {
            println!(
                "cargo::error=copying {} to {}: {err}",
                built.display(),
                embedded.display()
            );
            return;
        }
    }
}
