//! Enabling a fast path (checks, load, attach, pin, start the sync process)
//! and taking it down again, from `disable`, `netprobe detach`, `lab down`
//! or the sync process itself. Whatever fails half way is rolled back:
//! nothing stays attached, pinned or changed.

use std::{
    fs, io,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use aya::programs::{LinkOrder, TcAttachType, links::FdLink};
use netprobe_common::fastpath::FastpathConfig;

use super::{
    FastpathError, FastpathHook,
    devices::{self, Target},
    programs::{FastpathMaps, LoadedFastpath, require_kernel_helpers},
    state::{self, FastpathId, FastpathState, LINK_PIN, VxlanDevice},
};
use crate::{
    bpf_link::{self, AttachError, XdpModeChoice, error_chain, xdp_mode_name},
    ethtool::Feature,
    netlink::{self, Link},
    netns::NetNs,
};

/// How long `enable` waits for the sync process's first round, and
/// `disable` for it to exit.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// `statfs` type of a bpffs.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
const BPF_FS: &str = "/sys/fs/bpf";

#[derive(Clone, Debug)]
pub struct EnableOptions {
    pub interface: String,
    /// Named namespace of the interface; `None` for the caller's.
    pub netns: Option<String>,
    /// The vxlan device; by default the only one on the interface.
    pub vxlan_dev: Option<String>,
    /// Required UDP port and VNI of the vxlan device.
    pub port: Option<u16>,
    pub vni: Option<u32>,
    pub hook: FastpathHook,
    pub xdp_mode: XdpModeChoice,
    /// The netprobe executable to run as the background sync process;
    /// `None` leaves the syncing to the caller ([`super::sync::run`]).
    pub sync: Option<PathBuf>,
}

impl EnableOptions {
    pub fn new(interface: impl Into<String>, netns: Option<String>) -> Self {
        Self {
            interface: interface.into(),
            netns,
            vxlan_dev: None,
            port: None,
            vni: None,
            hook: FastpathHook::default(),
            xdp_mode: XdpModeChoice::default(),
            sync: None,
        }
    }
}

/// Enables the fast path `options` asks for and returns its id. With a
/// sync executable, returns once the sync process has filled the maps.
pub fn enable(options: &EnableOptions) -> Result<FastpathId, FastpathError> {
    let node = match &options.netns {
        Some(name) => NetNs::named(name)?,
        None => NetNs::current()?,
    };
    let id = FastpathId {
        interface: options.interface.clone(),
        netns: options.netns.clone(),
        netns_inode: node.inode(),
    };
    if state::load(&id)?.is_some() || id.pin_dir().exists() {
        return Err(FastpathError::AlreadyEnabled(id.to_string()));
    }
    let links = node.run(netlink::links)??;
    let nic = links
        .iter()
        .find(|link| link.name == options.interface)
        .ok_or_else(|| FastpathError::UnknownInterface {
            interface: options.interface.clone(),
            netns: node.name().to_owned(),
        })?;
    let vxlan = choose_vxlan(&links, nic, options)?;
    if options.hook == FastpathHook::Xdp
        && let Some(prog_id) = nic.xdp_prog_id
    {
        return Err(FastpathError::ForeignXdp {
            interface: id.to_string(),
            prog_id,
        });
    }
    require_kernel_helpers(options.hook)?;
    let nic_mac = mac_of(nic)?;
    let config = FastpathConfig {
        vni: vxlan.vni,
        port: vxlan.port,
        nic_mac,
        vtep_mac: vxlan.mac,
        _pad: 0,
    };
    let mut loaded = LoadedFastpath::load(&config)?;
    let (link, xdp_mode) = attach(&mut loaded, options, nic, &node)?;
    let program_id = link
        .info()
        .map_err(|source| FastpathError::Attach {
            hook: options.hook,
            interface: id.to_string(),
            reason: source.to_string(),
        })?
        .program_id();
    let mut state = FastpathState {
        id: id.clone(),
        ifindex: nic.index,
        nic_mac,
        hook: options.hook,
        xdp_mode: xdp_mode.map(xdp_mode_name).map(str::to_owned),
        vxlan,
        program_id,
        changes: Vec::new(),
        locals: Vec::new(),
        remotes: Vec::new(),
        pods: Vec::new(),
        skipped: Vec::new(),
        idle: None,
    };
    // From here on, a failure takes down whatever was set up.
    let set_up = (|| {
        state::create_dir(&id)?;
        state::save(&state)?;
        pin(&loaded.maps, link, &id)?;
        if state.native_xdp() {
            state
                .changes
                .extend(complete_peer_checksums(nic, &node, &id)?);
            state::save(&state)?;
        }
        if let Some(netprobe) = &options.sync {
            spawn_sync(netprobe, &id)?;
        }
        Ok(())
    })();
    match set_up {
        Ok(()) => Ok(id),
        Err(error) => {
            if let Err(cleanup) = teardown(&id) {
                log::error!("rolling back the fast path on {id}: {cleanup}");
            }
            Err(error)
        }
    }
}

/// The vxlan device on `nic` that `options` names or narrows down to.
fn choose_vxlan(
    links: &[Link],
    nic: &Link,
    options: &EnableOptions,
) -> Result<VxlanDevice, FastpathError> {
    let on_nic = |link: &&Link| {
        link.vxlan
            .as_ref()
            .is_some_and(|vxlan| vxlan.lower.is_none_or(|lower| lower == nic.index))
    };
    let wanted = |link: &&Link| {
        link.vxlan.as_ref().is_some_and(|vxlan| {
            options.port.is_none_or(|port| port == vxlan.port)
                && options.vni.is_none_or(|vni| vni == vxlan.vni)
        })
    };
    let describe = |devices: &[&Link]| {
        devices
            .iter()
            .filter_map(|link| {
                let vxlan = link.vxlan.as_ref()?;
                Some(format!(
                    "{} port {} VNI {}",
                    link.name, vxlan.port, vxlan.vni
                ))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let device = match &options.vxlan_dev {
        Some(name) => {
            let device = links
                .iter()
                .find(|link| &link.name == name && link.vxlan.is_some())
                .ok_or_else(|| FastpathError::NoSuchVxlan(name.clone()))?;
            if !on_nic(&device) {
                return Err(FastpathError::VxlanElsewhere {
                    device: name.clone(),
                    interface: nic.name.clone(),
                });
            }
            if !wanted(&device) {
                return Err(FastpathError::NoMatchingVxlan {
                    interface: nic.name.clone(),
                    wanted: wanted_text(options),
                    found: describe(&[device]),
                });
            }
            device
        }
        None => {
            let candidates: Vec<&Link> = links.iter().filter(on_nic).collect();
            if candidates.is_empty() {
                return Err(FastpathError::NoVxlan(nic.name.clone()));
            }
            let matching: Vec<&Link> = candidates.iter().copied().filter(wanted).collect();
            match matching.as_slice() {
                [device] => *device,
                [] => {
                    return Err(FastpathError::NoMatchingVxlan {
                        interface: nic.name.clone(),
                        wanted: wanted_text(options),
                        found: describe(&candidates),
                    });
                }
                _ => {
                    return Err(FastpathError::AmbiguousVxlan {
                        interface: nic.name.clone(),
                        found: describe(&matching),
                    });
                }
            }
        }
    };
    let settings = device.vxlan.as_ref().expect("chosen among vxlan devices");
    Ok(VxlanDevice {
        name: device.name.clone(),
        ifindex: device.index,
        vni: settings.vni,
        port: settings.port,
        mac: mac_of(device)?,
    })
}

fn wanted_text(options: &EnableOptions) -> String {
    let mut wanted = Vec::new();
    if let Some(port) = options.port {
        wanted.push(format!("port {port}"));
    }
    if let Some(vni) = options.vni {
        wanted.push(format!("VNI {vni}"));
    }
    wanted.join(" and ")
}

fn mac_of(link: &Link) -> Result<[u8; 6], FastpathError> {
    <[u8; 6]>::try_from(link.mac.as_slice()).map_err(|_| FastpathError::NoMac(link.name.clone()))
}

/// Loads the hook's program and attaches it to `nic`; returns the link and,
/// for XDP, the mode that took.
fn attach(
    loaded: &mut LoadedFastpath,
    options: &EnableOptions,
    nic: &Link,
    node: &NetNs,
) -> Result<(FdLink, Option<aya::programs::XdpMode>), FastpathError> {
    let hook = options.hook;
    let attach_error = |error: AttachError| match error {
        AttachError::Busy => FastpathError::ForeignXdp {
            interface: nic.name.clone(),
            prog_id: 0,
        },
        AttachError::NotALink => FastpathError::Attach {
            hook,
            interface: nic.name.clone(),
            reason: "the kernel attached without a bpf_link, which cannot be pinned".into(),
        },
        AttachError::Refused(error) => FastpathError::Attach {
            hook,
            interface: nic.name.clone(),
            reason: error_chain(&error),
        },
        AttachError::NetNs(error) => error.into(),
    };
    match hook {
        FastpathHook::Xdp => {
            let (link, mode) =
                bpf_link::attach_xdp(loaded.xdp()?, nic.index, node, options.xdp_mode)
                    .map_err(attach_error)?;
            Ok((link, Some(mode)))
        }
        FastpathHook::Tc => {
            // Last in the tcx chain: programs before it (netprobe's probes
            // among them) still see every packet.
            let link = bpf_link::attach_tcx(
                loaded.tc()?,
                &nic.name,
                TcAttachType::Ingress,
                LinkOrder::last(),
                node,
            )
            .map_err(attach_error)?;
            Ok((link, None))
        }
    }
}

/// Pins the link and the maps: from now on they outlive this process.
fn pin(maps: &FastpathMaps, link: FdLink, id: &FastpathId) -> Result<(), FastpathError> {
    ensure_bpffs()?;
    let dir = id.pin_dir();
    fs::create_dir_all(&dir).map_err(|source| FastpathError::Io {
        action: "creating",
        path: dir.clone(),
        source,
    })?;
    maps.pin(&dir)?;
    let path = dir.join(LINK_PIN);
    link.pin(&path)
        .map_err(|source| FastpathError::Pin { path, source })?;
    Ok(())
}

/// Mounts the bpffs where systemd would, on systems that have none yet.
fn ensure_bpffs() -> Result<(), FastpathError> {
    let path = std::ffi::CString::new(BPF_FS).expect("no NUL");
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(path.as_ptr(), &mut stat) } == 0 && stat.f_type == BPF_FS_MAGIC {
        return Ok(());
    }
    let bpf = std::ffi::CString::new("bpf").expect("no NUL");
    if unsafe {
        libc::mount(
            bpf.as_ptr(),
            path.as_ptr(),
            bpf.as_ptr(),
            0,
            std::ptr::null(),
        )
    } != 0
    {
        return Err(FastpathError::Io {
            action: "mounting a bpffs on",
            path: PathBuf::from(BPF_FS),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// When `nic` is a veth, turns off tx checksum offload on its peer (see
/// [`devices`]); returns the change made, if any.
fn complete_peer_checksums(
    nic: &Link,
    node: &NetNs,
    id: &FastpathId,
) -> Result<Option<devices::DeviceChange>, FastpathError> {
    let (true, Some(peer)) = (nic.kind == "veth", nic.peer) else {
        return Ok(None);
    };
    let netns = match nic.peer_netnsid {
        Some(nsid) => Some(devices::named_netns_by_id(node, nsid)?.ok_or_else(|| {
            FastpathError::PeerUnreachable {
                interface: id.to_string(),
            }
        })?),
        None => id.netns.clone(),
    };
    let target = Target {
        node,
        netns: netns.as_deref(),
        ifindex: peer,
    };
    Ok(devices::ensure(&target, Feature::TxChecksum, false, None)?)
}

/// Starts `netprobe fastpath sync ID` in a session of its own, and waits
/// for its first round.
fn spawn_sync(netprobe: &Path, id: &FastpathId) -> Result<(), FastpathError> {
    let log_path = id.log_file();
    let io_error = |action| {
        let path = log_path.clone();
        move |source| FastpathError::Io {
            action,
            path,
            source,
        }
    };
    let log = fs::File::create(&log_path).map_err(io_error("creating"))?;
    let mut command = Command::new(netprobe);
    command
        .args(["fastpath", "sync", &id.key()])
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(io_error("opening"))?)
        .stderr(log);
    // Its own session: it outlives the terminal that enabled it.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        })
    };
    let mut child = command.spawn().map_err(|source| FastpathError::Io {
        action: "starting",
        path: netprobe.to_owned(),
        source,
    })?;
    let deadline = Instant::now() + SYNC_TIMEOUT;
    while state::sync_pid(id).is_none() {
        let exited = child
            .try_wait()
            .map_err(io_error("waiting for the sync process in"))?;
        if exited.is_some() || Instant::now() > deadline {
            // Not checked: it may have exited already.
            child.kill().ok();
            child.wait().ok();
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            let last = log.lines().last().unwrap_or("no output").to_owned();
            return Err(FastpathError::SyncStart(last));
        }
        thread::sleep(POLL_INTERVAL);
    }
    // Reaped when it exits, should this process still be running then.
    thread::spawn(move || child.wait());
    Ok(())
}

/// Stops the fast path `id`: its sync process, which takes it down; or,
/// when that is not running, takes it down here.
pub fn disable(id: &FastpathId) -> Result<(), FastpathError> {
    if state::load(id)?.is_none() && !id.pin_dir().exists() {
        return Err(FastpathError::NotEnabled(id.to_string()));
    }
    if let Some(pid) = state::sync_pid(id) {
        stop(pid)?;
    }
    // Taken down by the sync process, unless it was not running.
    if state::load(id)?.is_some() || id.pin_dir().exists() {
        teardown(id)?;
    }
    Ok(())
}

/// SIGTERM, and waiting for it to exit.
fn stop(pid: libc::pid_t) -> Result<(), FastpathError> {
    // Not checked: a process that exited already is what we want.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + SYNC_TIMEOUT;
    while Path::new(&format!("/proc/{pid}")).exists() && !state::is_zombie(pid) {
        if Instant::now() > deadline {
            return Err(FastpathError::SyncStop(pid));
        }
        thread::sleep(POLL_INTERVAL);
    }
    Ok(())
}

/// Disables every fast path (for `netprobe detach`).
pub fn disable_all() -> Result<Vec<FastpathId>, FastpathError> {
    disable_matching(|_| true)
}

/// Disables the fast paths whose interface is in one of `namespaces`
/// (for `lab down`).
pub fn disable_in(namespaces: &[String]) -> Result<Vec<FastpathId>, FastpathError> {
    disable_matching(|id| {
        id.netns
            .as_ref()
            .is_some_and(|netns| namespaces.contains(netns))
    })
}

fn disable_matching(
    wanted: impl Fn(&FastpathId) -> bool,
) -> Result<Vec<FastpathId>, FastpathError> {
    let mut disabled = Vec::new();
    for state in state::all()? {
        if wanted(&state.id) {
            disable(&state.id)?;
            disabled.push(state.id);
        }
    }
    Ok(disabled)
}

/// Takes down what [`enable`] set up: the link (which detaches), the maps,
/// the device changes and the record. Goes on past failures, reporting them
/// all at the end.
pub(crate) fn teardown(id: &FastpathId) -> Result<(), FastpathError> {
    let mut failures = Vec::new();
    let dir = id.pin_dir();
    for name in std::iter::once(LINK_PIN).chain(FastpathMaps::pin_names()) {
        let path = dir.join(name);
        match fs::remove_file(&path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                failures.push(format!("removing {}: {error}", path.display()));
            }
            _ => {}
        }
    }
    match fs::remove_dir(&dir) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => {
            failures.push(format!("removing {}: {error}", dir.display()));
        }
        _ => {}
    }
    match state::load(id) {
        Ok(Some(state)) => undo_changes(&state, &mut failures),
        Ok(None) => {}
        Err(error) => failures.push(error.to_string()),
    }
    if let Err(error) = state::remove(id) {
        failures.push(error.to_string());
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(FastpathError::Teardown {
            id: id.to_string(),
            failures,
        })
    }
}

fn undo_changes(state: &FastpathState, failures: &mut Vec<String>) {
    let id = &state.id;
    let node = match &id.netns {
        Some(name) => NetNs::named(name).ok(),
        None => NetNs::current()
            .ok()
            .filter(|current| current.inode() == id.netns_inode),
    };
    for change in state.changes.iter().rev() {
        let result = match (&node, &change.netns) {
            (Some(node), _) => devices::undo(change, node).map_err(FastpathError::from),
            // The node's namespace is gone, and its devices with it.
            (None, None) if id.netns.is_some() => Ok(()),
            (None, None) => Err(FastpathError::OtherNamespace(id.to_string())),
            (None, Some(_)) => NetNs::current()
                .map_err(FastpathError::from)
                .and_then(|current| Ok(devices::undo(change, &current)?)),
        };
        if let Err(error) = result {
            failures.push(format!("undoing {change}: {error}"));
        }
    }
}
