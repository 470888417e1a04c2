//! Enabling a fast path (checks, record, start the sync process), attaching
//! its programs (for the sync process), and taking it down again, from
//! `disable`, `netprobe detach`, `lab down` or the sync process itself.
//! Whatever fails half way is rolled back: nothing stays attached, running
//! or changed.

use std::{
    fs, io,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use aya::programs::{LinkOrder, TcAttachType, XdpMode, links::FdLink};
use netprobe_common::fastpath::FastpathConfig;

use super::{
    FastpathError, FastpathHook,
    devices::{self, Target},
    hook::{self, HookChoice, Resolved},
    programs::{LoadedFastpath, require_kernel_helpers},
    state::{self, EgressState, FastpathId, FastpathState, VxlanDevice},
};
use crate::{
    bpf_link::{self, AttachError, XdpModeChoice, error_chain},
    ethtool::Feature,
    netlink::{self, Link},
    netns::NetNs,
};

/// How long `enable` waits for the sync process's first round, and
/// `disable` for it to exit.
const SYNC_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_INTERVAL: Duration = Duration::from_millis(20);

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
    pub hook: HookChoice,
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
            hook: HookChoice::default(),
            xdp_mode: XdpModeChoice::default(),
            sync: None,
        }
    }
}

/// Checks that the fast path `options` asks for can run, records it, and
/// returns its id. With a sync executable, returns once the sync process
/// has attached the programs and filled the maps.
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
    if state::load(&id)?.is_some() {
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
    let resolved = hook::resolve(options.hook, options.xdp_mode, nic);
    if resolved.hook == FastpathHook::Xdp
        && let Some(prog_id) = nic.xdp_prog_id
    {
        return Err(FastpathError::ForeignXdp {
            interface: id.to_string(),
            prog_id,
        });
    }
    require_kernel_helpers(resolved.hook)?;
    let state = FastpathState {
        id: id.clone(),
        ifindex: nic.index,
        nic_mac: mac_of(nic)?,
        hook: resolved.hook,
        hook_reason: resolved.reason,
        xdp_mode: None,
        vxlan,
        program_id: 0,
        egress_program_id: 0,
        maps: Default::default(),
        changes: Vec::new(),
        locals: Vec::new(),
        remotes: Vec::new(),
        pods: Vec::new(),
        skipped: Vec::new(),
        idle: None,
        egress: EgressState::default(),
    };
    state::create_dir(&id)?;
    state::save(&state)?;
    if let Some(netprobe) = &options.sync
        && let Err(error) = spawn_sync(netprobe, &id, options)
    {
        if let Err(cleanup) = teardown(&id, None) {
            log::error!("rolling back the fast path on {id}: {cleanup}");
        }
        return Err(error);
    }
    Ok(id)
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

/// The fast path's object for `state`, loaded.
pub(crate) fn load(state: &FastpathState) -> Result<LoadedFastpath, FastpathError> {
    LoadedFastpath::load(&FastpathConfig {
        vni: state.vxlan.vni,
        port: state.vxlan.port,
        nic_mac: state.nic_mac,
        vtep_mac: state.vxlan.mac,
        _pad: 0,
    })
}

/// Attaches the ingress program `resolved` names to `nic`, TC in place of
/// XDP where the rule allows and the driver refuses native XDP; returns the
/// link, the hook and, for XDP, the mode that took.
pub(crate) fn attach_ingress(
    loaded: &mut LoadedFastpath,
    resolved: &Resolved,
    nic: &Link,
    node: &NetNs,
) -> Result<(FdLink, FastpathHook, Option<XdpMode>), FastpathError> {
    let attach_error = |hook, error: AttachError| match error {
        AttachError::Busy => FastpathError::ForeignXdp {
            interface: nic.name.clone(),
            prog_id: 0,
        },
        AttachError::NotALink => FastpathError::Attach {
            hook,
            interface: nic.name.clone(),
            reason: "the kernel attached without a bpf_link".into(),
        },
        AttachError::Refused(error) => FastpathError::Attach {
            hook,
            interface: nic.name.clone(),
            reason: error_chain(&error),
        },
        AttachError::NetNs(error) => error.into(),
    };
    if resolved.hook == FastpathHook::Xdp {
        match bpf_link::attach_xdp(loaded.xdp()?, nic.index, node, resolved.xdp_mode) {
            Ok((link, mode)) => return Ok((link, FastpathHook::Xdp, Some(mode))),
            Err(AttachError::Refused(_)) if resolved.tc_fallback => {}
            Err(error) => return Err(attach_error(FastpathHook::Xdp, error)),
        }
    }
    // Last in the tcx chain: programs before it (netprobe's probes among
    // them) still see every packet.
    let link = bpf_link::attach_tcx(
        loaded.tc()?,
        &nic.name,
        TcAttachType::Ingress,
        LinkOrder::last(),
        node,
    )
    .map_err(|error| attach_error(FastpathHook::Tc, error))?;
    Ok((link, FastpathHook::Tc, None))
}

/// Attaches the egress program to a served pod's veth (in the calling
/// thread's namespace, the node's), last in its tcx ingress chain.
pub(crate) fn attach_egress(
    loaded: &mut LoadedFastpath,
    veth: &str,
    node: &NetNs,
) -> Result<FdLink, FastpathError> {
    bpf_link::attach_tcx(
        loaded.egress()?,
        veth,
        TcAttachType::Ingress,
        LinkOrder::last(),
        node,
    )
    .map_err(|error| FastpathError::Attach {
        hook: FastpathHook::Tc,
        interface: veth.to_owned(),
        reason: match error {
            AttachError::Refused(error) => error_chain(&error),
            AttachError::NetNs(error) => error.to_string(),
            AttachError::Busy | AttachError::NotALink => "no bpf_link".into(),
        },
    })
}

/// When `nic` is a veth, turns off tx checksum offload on its peer (see
/// [`devices`]); returns the change made, if any.
pub(crate) fn complete_peer_checksums(
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

/// Starts `netprobe fastpath sync KEY` in a session of its own, and waits
/// for its first round; fails with the error it logged if it exits first.
fn spawn_sync(
    netprobe: &Path,
    id: &FastpathId,
    options: &EnableOptions,
) -> Result<(), FastpathError> {
    let log_path = id.log_file();
    let io_error = |action| {
        let path = log_path.clone();
        move |cause| FastpathError::Io {
            action,
            path,
            cause,
        }
    };
    let log = fs::File::create(&log_path).map_err(io_error("creating"))?;
    let mut command = Command::new(netprobe);
    command
        .args(["fastpath", "sync", &id.key()])
        .args(["--hook", options.hook.name(), "--xdp-mode"])
        .arg(xdp_mode_choice_name(options.xdp_mode))
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
    let mut child = command.spawn().map_err(|cause| FastpathError::Io {
        action: "starting",
        path: netprobe.to_owned(),
        cause,
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
            // Its error's first line (a verifier log may follow), or else
            // the last thing it said.
            let log = fs::read_to_string(&log_path).unwrap_or_default();
            let said = log
                .lines()
                .rev()
                .find_map(|line| line.strip_prefix("error: "))
                .or_else(|| log.lines().last())
                .map(str::to_owned);
            let why = match exited {
                Some(status) => format!("the sync process exited ({status}) saying nothing"),
                None => format!("the sync process was not ready within {SYNC_TIMEOUT:?}"),
            };
            return Err(FastpathError::SyncStart(said.unwrap_or(why)));
        }
        thread::sleep(POLL_INTERVAL);
    }
    // Reaped when it exits, should this process still be running then.
    thread::spawn(move || child.wait());
    Ok(())
}

fn xdp_mode_choice_name(choice: XdpModeChoice) -> &'static str {
    match choice {
        XdpModeChoice::Auto => "auto",
        XdpModeChoice::Native => "native",
        XdpModeChoice::Generic => "generic",
    }
}

/// Stops the fast path `id`: its sync process, which takes it down; or,
/// when that is not running, takes it down here.
pub fn disable(id: &FastpathId) -> Result<(), FastpathError> {
    if state::load(id)?.is_none() {
        return Err(FastpathError::NotEnabled(id.to_string()));
    }
    if let Some(pid) = state::sync_pid(id) {
        stop(pid)?;
    }
    // Taken down by the sync process, unless it was not running.
    if state::load(id)?.is_some() {
        teardown(id, None)?;
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

/// Takes down what outlives the sync process (whose exit detaches the
/// programs): the device changes and the record. The changes are those
/// recorded, or those `known` to the caller when the record is gone. Goes
/// on past failures, reporting them all at the end.
pub(crate) fn teardown(
    id: &FastpathId,
    known: Option<&FastpathState>,
) -> Result<(), FastpathError> {
    let mut failures = Vec::new();
    match state::load(id) {
        Ok(Some(state)) => undo_changes(&state, &mut failures),
        Ok(None) => {
            if let Some(state) = known {
                undo_changes(state, &mut failures);
            }
        }
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
