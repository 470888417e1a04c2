//! Taking a lab down from nothing but its prefix. After `kill -9` of
//! whatever built it the record may be missing, so namespaces are found by
//! name, processes by the namespace they run in, and nginx also by its pid
//! file.

use std::{
    fs,
    thread::sleep,
    time::{Duration, Instant},
};

use thiserror::Error;

use super::{cmd::sh, layout::is_lab_netns, nginx, state};
use crate::{
    fastpath,
    netns::{NetNs, NetNsError, named_namespaces, processes_in},
};

/// How long processes get to exit after SIGTERM, and again after SIGKILL.
const GRACE: Duration = Duration::from_secs(2);
const POLL_INTERVAL: Duration = Duration::from_millis(10);
/// Rounds of looking for processes in the lab and stopping them.
const SWEEPS: usize = 3;

/// Everything that could not be removed; the rest was.
#[derive(Debug, Error)]
#[error("lab {prefix} not fully removed: {}", .failures.join("; "))]
pub struct TeardownError {
    prefix: String,
    failures: Vec<String>,
}

/// The namespaces of the lab with `prefix` that exist now.
pub(crate) fn lab_namespaces(prefix: &str) -> std::io::Result<Vec<String>> {
    Ok(named_namespaces()?
        .into_iter()
        .filter(|name| is_lab_netns(prefix, name))
        .collect())
}

/// The prefixes of every lab on this machine: those recorded, and those
/// whose namespaces are left without a record (a `kill -9` while building).
pub(crate) fn all_prefixes() -> std::io::Result<Vec<String>> {
    let mut prefixes: Vec<String> = named_namespaces()?
        .into_iter()
        .filter_map(|name| {
            let (prefix, _) = name.split_once('-')?;
            is_lab_netns(prefix, &name).then(|| prefix.to_owned())
        })
        .collect();
    prefixes.extend(state::recorded_prefixes()?);
    prefixes.sort();
    prefixes.dedup();
    Ok(prefixes)
}

/// Stops every process in the lab, deletes its namespaces (and with them
/// all its links) and its record. Goes on past failures, reporting them
/// all at the end.
pub(crate) fn down(prefix: &str) -> Result<(), TeardownError> {
    let mut failures = Vec::new();
    let names = lab_namespaces(prefix).unwrap_or_else(|err| {
        failures.push(format!("cannot list network namespaces: {err}"));
        Vec::new()
    });

    // The fast paths first: their sync processes put back what they
    // changed, in namespaces that outlive the lab.
    if let Err(err) = fastpath::disable_in(&names) {
        failures.push(err.to_string());
    }
    let mut namespaces = Vec::new();
    for name in &names {
        match NetNs::named(name) {
            Ok(netns) => namespaces.push(netns),
            // Gone in the meantime: nothing to do.
            Err(NetNsError::NotFound(_)) => {}
            Err(err) => failures.push(err.to_string()),
        }
    }
    // nginx also by its pid file: its namespace may have lost its name.
    let mut pids: Vec<_> = nginx::master_pid(&state::lab_dir(prefix))
        .into_iter()
        .collect();
    // Rescan after stopping what was found: a process may have forked
    // (nginx starting its workers) while we looked.
    for _ in 0..SWEEPS {
        match processes_in(&namespaces) {
            Ok(found) => pids.extend(found),
            Err(err) => {
                failures.push(format!("cannot list processes: {err}"));
                break;
            }
        }
        pids.sort_unstable();
        pids.dedup();
        if pids.is_empty() {
            break;
        }
        let survivors = stop(&pids);
        if !survivors.is_empty() {
            failures.push(format!("processes {survivors:?} did not exit"));
            break;
        }
        pids.clear();
    }
    drop(namespaces);

    for name in &names {
        if let Err(err) = sh(None, &format!("ip netns del {name}")) {
            failures.push(err.to_string());
        }
    }
    if let Err(err) = state::remove(prefix) {
        failures.push(err.to_string());
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(TeardownError {
            prefix: prefix.to_owned(),
            failures,
        })
    }
}

/// SIGTERM, then SIGKILL for what is left; returns the processes that
/// outlived both.
fn stop(pids: &[libc::pid_t]) -> Vec<libc::pid_t> {
    let mut left = pids.to_vec();
    for signal in [libc::SIGTERM, libc::SIGKILL] {
        if left.is_empty() {
            break;
        }
        for &pid in &left {
            // Not checked: a process that exited already is what we want,
            // and one we cannot signal shows up among the survivors.
            unsafe { libc::kill(pid, signal) };
        }
        let deadline = Instant::now() + GRACE;
        loop {
            left.retain(|&pid| alive(pid));
            if left.is_empty() || Instant::now() >= deadline {
                break;
            }
            sleep(POLL_INTERVAL);
        }
    }
    left
}

/// Running, as opposed to gone or a zombie waiting for its parent.
fn alive(pid: libc::pid_t) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which is in parentheses and may
    // hold anything.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    state != Some('Z')
}
