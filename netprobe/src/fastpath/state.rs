//! Where an enabled fast path is recorded, so that `status` and `disable`
//! work from any process, however it entered the node's namespace: under
//! `STATE_DIR/ID/`, `state.json` (with the ids of the maps, which another
//! process opens them by whatever mounts it sees) and the sync process's
//! `sync.pid` and `sync.log`. `ID` is `NETNS_INODE-INTERFACE`: interface
//! names repeat across namespaces. The programs, their links and maps live
//! as long as the sync process that holds them.

use std::{
    fs, io,
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use aya::programs::XdpMode;
use serde::{Deserialize, Serialize};

use super::{
    FastpathHook,
    devices::DeviceChange,
    egress::{ServedRoute, SkippedRoute},
    pods::SkippedPod,
    programs::MapIds,
};
use crate::{
    bpf_link::xdp_mode_name,
    record::{self, io_error},
};

pub const STATE_DIR: &str = record::FASTPATH_STATE_DIR;
const STATE_FILE: &str = "state.json";
const PID_FILE: &str = "sync.pid";
const LOG_FILE: &str = "sync.log";

pub use crate::record::RecordError as StateError;

/// What identifies a fast path: its interface in its namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FastpathId {
    pub interface: String,
    /// Named namespace (`ip netns`) of the interface; `None` for the one
    /// netprobe was started in.
    pub netns: Option<String>,
    pub netns_inode: u32,
}

impl FastpathId {
    pub fn key(&self) -> String {
        format!("{}-{}", self.netns_inode, self.interface)
    }

    pub fn state_dir(&self) -> PathBuf {
        Path::new(STATE_DIR).join(self.key())
    }

    pub fn pid_file(&self) -> PathBuf {
        self.state_dir().join(PID_FILE)
    }

    pub fn log_file(&self) -> PathBuf {
        self.state_dir().join(LOG_FILE)
    }
}

impl std::fmt::Display for FastpathId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.netns {
            Some(netns) => write!(f, "{}@{netns}", self.interface),
            None => f.write_str(&self.interface),
        }
    }
}

/// The vxlan device the fast path stands in for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VxlanDevice {
    pub name: String,
    pub ifindex: u32,
    pub vni: u32,
    pub port: u16,
    pub mac: [u8; 6],
}

/// A pod the fast path delivers to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServedPod {
    pub ip: Ipv4Addr,
    /// Its host-side veth.
    pub port: String,
    pub ifindex: u32,
    pub mac: [u8; 6],
}

/// The record of one enabled fast path, rewritten by its sync process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FastpathState {
    pub id: FastpathId,
    pub ifindex: u32,
    pub nic_mac: [u8; 6],
    pub hook: FastpathHook,
    /// Why this hook: asked for, or the `--hook auto` rule.
    pub hook_reason: String,
    /// `native` or `generic` for XDP.
    pub xdp_mode: Option<String>,
    pub vxlan: VxlanDevice,
    /// The programs' ids; 0 until the sync process has loaded them.
    pub program_id: u32,
    pub egress_program_id: u32,
    /// The maps' ids, by name.
    pub maps: MapIds,
    /// Device settings netprobe changed, to undo on disable.
    pub changes: Vec<DeviceChange>,
    pub locals: Vec<Ipv4Addr>,
    pub remotes: Vec<Ipv4Addr>,
    pub pods: Vec<ServedPod>,
    pub skipped: Vec<SkippedPod>,
    /// Why nothing is fast-pathed right now, if so.
    pub idle: Option<String>,
    pub egress: EgressState,
}

/// The egress direction: encapsulation on the served pods' veths.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressState {
    /// The veths the egress program is attached to.
    pub ports: Vec<String>,
    pub routes: Vec<ServedRoute>,
    pub skipped: Vec<SkippedRoute>,
    pub skipped_pods: Vec<SkippedPod>,
    /// Why nothing is encapsulated right now, if so.
    pub idle: Option<String>,
}

impl FastpathState {
    /// Whether the fast path is native XDP, which needs the device changes
    /// of [`super::devices`].
    pub fn native_xdp(&self) -> bool {
        self.xdp_mode.as_deref() == Some(xdp_mode_name(XdpMode::Driver))
    }
}

/// Creates the fast path's record directory.
pub(crate) fn create_dir(id: &FastpathId) -> Result<(), StateError> {
    let dir = id.state_dir();
    fs::create_dir_all(&dir).map_err(io_error("create", &dir))
}

/// Records `state`; written whole, then renamed, so readers never see half.
pub(crate) fn save(state: &FastpathState) -> Result<(), StateError> {
    record::save(&state.id.state_dir().join(STATE_FILE), state)
}

/// The record in `dir`, if there is one.
fn load_dir(dir: &Path) -> Result<Option<FastpathState>, StateError> {
    record::load(&dir.join(STATE_FILE))
}

/// The record of the fast path `id`, if it is enabled.
pub fn load(id: &FastpathId) -> Result<Option<FastpathState>, StateError> {
    load_dir(&id.state_dir())
}

/// The record under `key` ([`FastpathId::key`]).
pub fn load_key(key: &str) -> Result<Option<FastpathState>, StateError> {
    load_dir(&Path::new(STATE_DIR).join(key))
}

/// Every recorded fast path.
pub fn all() -> Result<Vec<FastpathState>, StateError> {
    let dir = Path::new(STATE_DIR);
    let mut states = Vec::new();
    for path in record::paths_in(dir).map_err(io_error("list", dir))? {
        if let Some(state) = load_dir(&path)? {
            states.push(state);
        }
    }
    states.sort_by_key(|state| state.id.key());
    Ok(states)
}

/// Writes this process's pid as the fast path's sync process.
pub(crate) fn write_pid(id: &FastpathId) -> Result<(), StateError> {
    let path = id.pid_file();
    fs::write(&path, std::process::id().to_string()).map_err(io_error("write", &path))
}

/// The sync process, if it is running. Checked against its command line,
/// so a reused pid is never taken for it.
pub fn sync_pid(id: &FastpathId) -> Option<libc::pid_t> {
    let pid: libc::pid_t = fs::read_to_string(id.pid_file())
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|&byte| byte == 0).collect();
    // `fastpath sync KEY ...` in the background, `fastpath enable IFACE
    // --foreground` in the foreground.
    let key = id.key();
    let ours = args.contains(&b"fastpath".as_slice())
        && (args.contains(&key.as_bytes()) || args.contains(&id.interface.as_bytes()));
    (ours && !is_zombie(pid)).then_some(pid)
}

/// Exited, waiting for its parent to reap it (or gone).
pub(crate) fn is_zombie(pid: libc::pid_t) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The state follows the command name, which is in parentheses
            // and may hold anything.
            let (_, rest) = stat.rsplit_once(')')?;
            rest.trim_start().chars().next()
        })
        .is_none_or(|state| state == 'Z')
}

/// Removes the record directory, if it exists.
pub(crate) fn remove(id: &FastpathId) -> Result<(), StateError> {
    let dir = id.state_dir();
    match fs::remove_dir_all(&dir) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            Err(io_error("remove", &dir)(error))
        }
        _ => Ok(()),
    }
}
