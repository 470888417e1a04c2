//! `netprobe status` and `netprobe detach`: what of netprobe's is still
//! loaded in the kernel (fast paths included), who holds it, and removing
//! it. Only programs named with netprobe's `np_` prefix are considered, and
//! only processes that are netprobe are signalled: nothing else is ever
//! touched.

use std::{
    collections::BTreeMap,
    fs,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use aya::programs::loaded_programs;

use crate::{fastpath, privilege::require_bpf_privileges, record::PIN_DIR};

/// Prefix of every netprobe program name.
pub const PROGRAM_PREFIX: &str = "np_";

/// A netprobe program loaded in the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedProgram {
    pub id: u32,
    pub name: String,
    /// Processes holding it (through a program or link descriptor).
    pub holders: Vec<Holder>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Holder {
    pub pid: u32,
    pub command: String,
}

/// Netprobe's programs currently loaded, with their holders.
pub fn loaded_netprobe_programs() -> Result<Vec<LoadedProgram>> {
    let holders = program_holders();
    let mut programs = Vec::new();
    for program in loaded_programs() {
        let program = program.context("listing loaded BPF programs")?;
        let Some(name) = program.name_as_str() else {
            continue;
        };
        if !name.starts_with(PROGRAM_PREFIX) {
            continue;
        }
        programs.push(LoadedProgram {
            id: program.id(),
            name: name.to_owned(),
            holders: holders.get(&program.id()).cloned().unwrap_or_default(),
        });
    }
    Ok(programs)
}

/// Program id → processes with a descriptor on it or on a link to it, from
/// /proc/PID/fdinfo (what bpftool shows as pids).
fn program_holders() -> BTreeMap<u32, Vec<Holder>> {
    let mut holders: BTreeMap<u32, Vec<Holder>> = BTreeMap::new();
    let Ok(processes) = fs::read_dir("/proc") else {
        return holders;
    };
    for process in processes.flatten() {
        let Some(pid) = process
            .file_name()
            .to_str()
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        // Processes and descriptors come and go while we read: skip those.
        let Ok(fds) = fs::read_dir(process.path().join("fdinfo")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(info) = fs::read_to_string(fd.path()) else {
                continue;
            };
            let Some(id) = info
                .lines()
                .find_map(|line| line.strip_prefix("prog_id:"))
                .and_then(|id| id.trim().parse::<u32>().ok())
            else {
                continue;
            };
            let holder = Holder {
                pid,
                command: command_of(pid),
            };
            let entry = holders.entry(id).or_default();
            if !entry.contains(&holder) {
                entry.push(holder);
            }
        }
    }
    holders
}

fn command_of(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|comm| comm.trim().to_owned())
        .unwrap_or_default()
}

/// Files pinned under [`PIN_DIR`].
pub fn pinned() -> Vec<String> {
    let mut found = Vec::new();
    collect_files(Path::new(PIN_DIR), &mut found);
    found.sort();
    found
}

fn collect_files(dir: &Path, found: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, found);
        } else {
            found.push(path.display().to_string());
        }
    }
}

pub fn run_status() -> Result<()> {
    require_bpf_privileges()?;
    let programs = loaded_netprobe_programs()?;
    let pins = pinned();
    let fastpaths = fastpath::state::all()?;
    if programs.is_empty() && pins.is_empty() && fastpaths.is_empty() {
        println!("nothing of netprobe is loaded");
        return Ok(());
    }
    for state in &fastpaths {
        print!("fast path {}", fastpath::cli::describe(state)?);
    }
    for program in &programs {
        let holders: Vec<String> = program
            .holders
            .iter()
            .map(|holder| format!("{}[{}]", holder.command, holder.pid))
            .collect();
        let holders = if holders.is_empty() {
            "pinned".to_owned()
        } else {
            holders.join(", ")
        };
        println!(
            "program {:>6} {:<16} held by {holders}",
            program.id, program.name
        );
    }
    for pin in pins {
        println!("pinned {pin}");
    }
    Ok(())
}

/// How long running sessions get to print their report and exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

pub fn run_detach() -> Result<()> {
    require_bpf_privileges()?;
    let own_pid = std::process::id();
    let mut sessions: Vec<Holder> = loaded_netprobe_programs()?
        .into_iter()
        .flat_map(|program| program.holders)
        .filter(|holder| holder.pid != own_pid && holder.command == "netprobe")
        .collect();
    // Fast paths first: disabling one also puts back what it changed.
    for id in fastpath::disable_all()? {
        println!("disabled the fast path on {id}");
    }
    sessions.sort();
    sessions.dedup();
    for session in &sessions {
        // SIGTERM: the session prints its report and detaches itself.
        if unsafe { libc::kill(session.pid as libc::pid_t, libc::SIGTERM) } != 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::ESRCH) {
                return Err(error).with_context(|| format!("stopping netprobe[{}]", session.pid));
            }
        }
        println!("stopping netprobe[{}]", session.pid);
    }
    for pin in pinned() {
        match fs::remove_file(&pin) {
            Ok(()) => println!("unpinned {pin}"),
            // Removed meanwhile by the session or sync process that owns it.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(error).with_context(|| format!("removing {pin}")),
        }
    }
    remove_empty_dirs(Path::new(PIN_DIR));
    let deadline = Instant::now() + STOP_TIMEOUT;
    loop {
        let left = loaded_netprobe_programs()?;
        if left.is_empty() {
            println!("nothing of netprobe is loaded");
            return Ok(());
        }
        if Instant::now() > deadline {
            let names: Vec<&str> = left.iter().map(|program| program.name.as_str()).collect();
            bail!("still loaded after {STOP_TIMEOUT:?}: {}", names.join(", "));
        }
        thread::sleep(Duration::from_millis(100));
    }
}

fn remove_empty_dirs(dir: &Path) {
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.path().is_dir() {
                remove_empty_dirs(&entry.path());
            }
        }
    }
    // Fails, as intended, while something is still pinned inside.
    fs::remove_dir(dir).ok();
}
