//! The capabilities loading and attaching probes needs, checked up front so
//! the error says what is missing instead of a bare EPERM.

use thiserror::Error;

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

#[derive(Debug, Error)]
pub enum PrivilegeError {
    #[error("netprobe needs root: {0} missing (run it with sudo)")]
    Missing(String),
    #[error("cannot read this process's capabilities: {0}")]
    Read(std::io::Error),
}

/// Fails unless the process may load BPF programs, attach tracing programs
/// and change network devices.
pub fn require_bpf_privileges() -> Result<(), PrivilegeError> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(PrivilegeError::Read)?;
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let has = |capability: u32| effective & (1 << capability) != 0;
    let admin = has(CAP_SYS_ADMIN);
    let missing: Vec<&str> = [
        ("CAP_BPF", has(CAP_BPF) || admin),
        ("CAP_PERFMON", has(CAP_PERFMON) || admin),
        ("CAP_NET_ADMIN", has(CAP_NET_ADMIN)),
    ]
    .into_iter()
    .filter(|(_, present)| !present)
    .map(|(name, _)| name)
    .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(PrivilegeError::Missing(missing.join(", ")))
    }
}
