//! The sync process of an enabled fast path: it loads the programs,
//! attaches the ingress one to the node's interface and holds them; every
//! [`SYNC_INTERVAL`] it reads netlink again, works out the
//! [overlay](super::overlay), prepares new pods' veths for native XDP,
//! attaches the egress program to new pods' veths and applies the
//! difference to the maps: a pod, route, neighbour or FDB entry that
//! appears, changes or goes is followed within that interval. On SIGTERM or
//! SIGINT (`disable`), or once its record is gone, it exits, which detaches
//! everything, and puts back what it changed. Killed outright, it takes the
//! programs with it, and `disable` puts the devices back.

use std::{
    collections::{BTreeMap, BTreeSet},
    io,
    net::Ipv4Addr,
    time::Duration,
};

use aya::{
    maps::{HashMap, MapData, MapError, lpm_trie::Key},
    programs::links::FdLink,
};
use netprobe_common::fastpath::{EgressPort, EgressRoute, LocalAddresses, MAX_LOCALS, PodEntry};
use tokio::signal::unix::{SignalKind, signal};

use super::{
    FastpathError, FastpathHook,
    devices::{self, Target},
    egress::Prefix,
    hook::{self, HookChoice},
    lifecycle::{self, teardown},
    overlay::{Overlay, overlay},
    pods::SkippedPod,
    programs::LoadedFastpath,
    state::{self, EgressState, FastpathId, FastpathState, ServedPod},
    view::NodeView,
};
use crate::{
    bpf_link::{XdpModeChoice, xdp_mode_name},
    ethtool::Feature,
    netlink,
    netns::NetNs,
};

pub const SYNC_INTERVAL: Duration = Duration::from_millis(250);

/// What `enable` asked for, which the sync process resolves on the node.
#[derive(Clone, Copy, Debug)]
pub struct SyncOptions {
    pub hook: HookChoice,
    pub xdp_mode: XdpModeChoice,
}

/// Runs the fast path `id` until it is stopped, then takes it down, also
/// when it could not start. `ready` is called once the programs are
/// attached and the maps filled.
pub fn run(
    id: &FastpathId,
    options: SyncOptions,
    ready: impl FnOnce(),
) -> Result<(), FastpathError> {
    run_when_idle();
    // What the sync process changed, should its record be gone by the end.
    let mut known = None;
    let synced = serve(id, options, ready, &mut known);
    let taken_down = teardown(id, known.as_ref());
    synced.and(taken_down)
}

/// Housekeeping that can wait: under SCHED_IDLE a round never preempts the
/// traffic's processes (about half a millisecond every round otherwise,
/// straight into the latency of whatever request was due then).
fn run_when_idle() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: a valid sched_param, for this process.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
        log::warn!(
            "sync stays at normal priority: {}",
            io::Error::last_os_error()
        );
    }
}

fn serve(
    id: &FastpathId,
    options: SyncOptions,
    ready: impl FnOnce(),
    known: &mut Option<FastpathState>,
) -> Result<(), FastpathError> {
    let state = state::load(id)?.ok_or_else(|| FastpathError::NotEnabled(id.to_string()))?;
    let node = match &id.netns {
        Some(name) => NetNs::named(name)?,
        None => NetNs::current()?,
    };
    if node.inode() != id.netns_inode {
        return Err(FastpathError::OtherNamespace(id.to_string()));
    }
    // Netlink, attachments and DEVMAP updates (which look devices up by
    // ifindex) act in the calling thread's namespace: this one stays in
    // the node's.
    let _in_node = node.enter()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|cause| FastpathError::Io {
            action: "starting the event loop for",
            path: id.state_dir(),
            cause,
        })?;
    let mut syncer = Syncer::start(state, node, options, known)?;
    let served = runtime.block_on(async {
        let signal_error = |cause| FastpathError::Io {
            action: "handling signals for",
            path: id.state_dir(),
            cause,
        };
        let mut terminate = signal(SignalKind::terminate()).map_err(signal_error)?;
        let mut interrupt = signal(SignalKind::interrupt()).map_err(signal_error)?;
        syncer.round()?;
        // Ready: `enable` waits for this.
        state::write_pid(id)?;
        ready();
        let mut ticker = tokio::time::interval(SYNC_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    if !id.state_dir().exists() {
                        log::info!("{} removed: taking the fast path down", id.state_dir().display());
                        return Ok(());
                    }
                    // A failed round (netlink busy, a device gone half way)
                    // is made good by the next one.
                    if let Err(error) = syncer.round() {
                        log::warn!("sync of {id}: {error}");
                    }
                }
                _ = terminate.recv() => return Ok(()),
                _ = interrupt.recv() => return Ok(()),
            }
        }
    });
    *known = Some(syncer.state.clone());
    served
}

/// The fast path's programs, links and maps, its record, and what the maps
/// hold.
struct Syncer {
    state: FastpathState,
    node: NetNs,
    loaded: LoadedFastpath,
    /// Keeps the ingress program attached.
    _ingress: FdLink,
    /// Keep the egress program attached, by veth ifindex.
    egress_links: BTreeMap<u32, FdLink>,
    locals: BTreeSet<Ipv4Addr>,
    remotes: BTreeSet<Ipv4Addr>,
    pods: BTreeMap<Ipv4Addr, PodEntry>,
    egress_ports: BTreeMap<u32, EgressPort>,
    routes: BTreeMap<Prefix, EgressRoute>,
}

impl Syncer {
    /// Loads the programs and attaches the ingress one, as `options` and
    /// the interface decide; records what took.
    fn start(
        mut state: FastpathState,
        node: NetNs,
        options: SyncOptions,
        known: &mut Option<FastpathState>,
    ) -> Result<Self, FastpathError> {
        let mut loaded = lifecycle::load(&state)?;
        let links = netlink::links()?;
        let nic = links
            .iter()
            .find(|link| link.index == state.ifindex && link.name == state.id.interface)
            .ok_or_else(|| FastpathError::UnknownInterface {
                interface: state.id.interface.clone(),
                netns: node.name().to_owned(),
            })?;
        let resolved = hook::resolve(options.hook, options.xdp_mode, nic);
        let (ingress, hook, mode) = lifecycle::attach_ingress(&mut loaded, &resolved, nic, &node)?;
        state.hook_reason = if hook == resolved.hook {
            resolved.reason
        } else {
            format!("auto: {} refused native XDP, so TC", nic.name)
        };
        state.hook = hook;
        state.xdp_mode = mode.map(xdp_mode_name).map(str::to_owned);
        let attach_error = |source: aya::programs::links::LinkError| FastpathError::Attach {
            hook,
            interface: nic.name.clone(),
            reason: source.to_string(),
        };
        state.program_id = ingress.info().map_err(attach_error)?.program_id();
        state.egress_program_id = loaded
            .egress()?
            .info()
            .map_err(|cause| FastpathError::Program {
                hook: FastpathHook::Tc,
                cause,
            })?
            .id();
        state.maps = loaded.maps.ids()?;
        state::save(&state)?;
        if state.native_xdp() {
            let change = lifecycle::complete_peer_checksums(nic, &node, &state.id)?;
            state.changes.extend(change);
            *known = Some(state.clone());
            state::save(&state)?;
        }
        Ok(Self {
            state,
            node,
            loaded,
            _ingress: ingress,
            egress_links: BTreeMap::new(),
            locals: BTreeSet::new(),
            remotes: BTreeSet::new(),
            pods: BTreeMap::new(),
            egress_ports: BTreeMap::new(),
            routes: BTreeMap::new(),
        })
    }

    /// One round: netlink, overlay, device settings, maps, attachments,
    /// record. Runs in the node's namespace.
    fn round(&mut self) -> Result<(), FastpathError> {
        let view = NodeView::read(self.state.vxlan.ifindex)?;
        let mut overlay = overlay(&view, &self.state);
        let before = self.state.clone();
        // Settings on a veth that is gone went with it.
        self.state.changes.retain(|change| {
            change
                .port
                .is_none_or(|port| view.links.iter().any(|link| link.index == port))
        });
        if self.state.native_xdp() {
            self.prepare_for_xdp(&mut overlay);
        }
        self.apply(&mut overlay)?;
        self.apply_egress(&view, &mut overlay)?;
        self.state.locals = overlay.locals.iter().copied().collect();
        self.state.remotes = overlay.remotes.iter().copied().collect();
        self.state.pods = overlay
            .pods
            .iter()
            .map(|(ip, pod)| ServedPod {
                ip: *ip,
                port: pod.port.clone(),
                ifindex: pod.entry.ifindex,
                mac: pod.entry.pod_mac,
            })
            .collect();
        self.state.skipped = overlay.skipped;
        self.state.idle = overlay.idle;
        let egress = overlay.egress;
        self.state.egress = EgressState {
            ports: self
                .egress_links
                .keys()
                .filter_map(|ifindex| view.links.iter().find(|link| link.index == *ifindex))
                .map(|link| link.name.clone())
                .collect(),
            routes: egress.served,
            skipped: egress.skipped,
            skipped_pods: egress.skipped_pods,
            idle: egress.idle,
        };
        if self.state != before {
            state::save(&self.state)?;
        }
        Ok(())
    }

    /// Turns GRO (and with it NAPI) on at the pod's end of each new pod's
    /// veth; a pod where that cannot be done is left to the kernel.
    fn prepare_for_xdp(&mut self, overlay: &mut Overlay) {
        let new: Vec<Ipv4Addr> = overlay
            .pods
            .iter()
            .filter(|(ip, pod)| self.pods.get(ip) != Some(&pod.entry))
            .map(|(ip, _)| *ip)
            .collect();
        for ip in new {
            let pod = &overlay.pods[&ip];
            let prepared = match pod.peer {
                None => Err(format!("{} has no peer", pod.port)),
                Some((peer, nsid)) => self.enable_gro(peer, nsid, pod.entry.ifindex),
            };
            if let Err(reason) = prepared {
                overlay.pods.remove(&ip);
                overlay.skipped.push(SkippedPod { ip, reason });
            }
        }
    }

    fn enable_gro(&mut self, peer: u32, nsid: Option<i32>, port: u32) -> Result<(), String> {
        let netns = match nsid {
            Some(nsid) => Some(
                devices::named_netns_by_id(&self.node, nsid)
                    .map_err(|error| error.to_string())?
                    .ok_or(
                        "its veth peer is in a namespace without a name in /run/netns, \
                            where netprobe cannot turn on the GRO XDP needs",
                    )?,
            ),
            None => None,
        };
        let target = Target {
            node: &self.node,
            netns: netns.as_deref(),
            ifindex: peer,
        };
        let change = devices::ensure(&target, Feature::Gro, true, Some(port))
            .map_err(|error| error.to_string())?;
        self.state.changes.extend(change);
        Ok(())
    }

    /// Brings the ingress maps to `overlay`. A pod whose veth vanishes
    /// meanwhile is moved to the skipped ones.
    fn apply(&mut self, overlay: &mut Overlay) -> Result<(), FastpathError> {
        let maps = &mut self.loaded.maps;
        if self.locals != overlay.locals {
            maps.locals
                .set(0, local_addresses(&overlay.locals), 0)
                .map_err(map_error("FP_LOCALS"))?;
            self.locals.clone_from(&overlay.locals);
        }
        sync_remotes(&mut maps.remotes, &mut self.remotes, &overlay.remotes)?;
        let gone: Vec<(Ipv4Addr, PodEntry)> = self
            .pods
            .iter()
            .filter(|(ip, entry)| overlay.pods.get(ip).map(|pod| &pod.entry) != Some(entry))
            .map(|(ip, entry)| (*ip, *entry))
            .collect();
        for (ip, entry) in gone {
            ignore_missing(maps.pods.remove(&key(ip))).map_err(map_error("FP_PODS"))?;
            self.pods.remove(&ip);
            if !overlay
                .pods
                .values()
                .any(|pod| pod.entry.ifindex == entry.ifindex)
            {
                // The kernel drops the entry itself when the device goes.
                ignore_missing(maps.ports.remove(entry.ifindex)).map_err(map_error("FP_PORTS"))?;
            }
        }
        let new: Vec<(Ipv4Addr, PodEntry)> = overlay
            .pods
            .iter()
            .filter(|(ip, _)| !self.pods.contains_key(ip))
            .map(|(ip, pod)| (*ip, pod.entry))
            .collect();
        for (ip, entry) in new {
            if let Err(error) = maps.ports.insert(entry.ifindex, entry.ifindex, None, 0) {
                overlay.pods.remove(&ip);
                overlay.skipped.push(SkippedPod {
                    ip,
                    reason: format!("its veth could not be added to the DEVMAP: {error}"),
                });
                continue;
            }
            maps.pods
                .insert(key(ip), entry, 0)
                .map_err(map_error("FP_PODS"))?;
            self.pods.insert(ip, entry);
        }
        Ok(())
    }

    /// Brings the egress maps and attachments to `overlay`: each veth's
    /// entry goes in before the program is attached to it, and out after it
    /// is detached. A veth the program cannot be attached to is left to the
    /// kernel.
    fn apply_egress(
        &mut self,
        view: &NodeView,
        overlay: &mut Overlay,
    ) -> Result<(), FastpathError> {
        let egress = &mut overlay.egress;
        if egress.idle.is_some() {
            egress.ports.clear();
            egress.routes.clear();
        }
        let gone: Vec<u32> = self
            .egress_links
            .keys()
            .filter(|ifindex| !egress.ports.contains_key(ifindex))
            .copied()
            .collect();
        for ifindex in gone {
            self.egress_links.remove(&ifindex);
        }
        let maps = &mut self.loaded.maps;
        let stale: Vec<u32> = self
            .egress_ports
            .iter()
            .filter(|(ifindex, port)| egress.ports.get(ifindex) != Some(port))
            .map(|(ifindex, _)| *ifindex)
            .collect();
        for ifindex in stale {
            ignore_missing(maps.egress_ports.remove(&ifindex))
                .map_err(map_error("FP_EGRESS_PORTS"))?;
            self.egress_ports.remove(&ifindex);
        }
        for (ifindex, port) in &egress.ports {
            if !self.egress_ports.contains_key(ifindex) {
                maps.egress_ports
                    .insert(ifindex, port, 0)
                    .map_err(map_error("FP_EGRESS_PORTS"))?;
                self.egress_ports.insert(*ifindex, *port);
            }
        }
        let new: Vec<u32> = egress
            .ports
            .keys()
            .filter(|ifindex| !self.egress_links.contains_key(ifindex))
            .copied()
            .collect();
        for ifindex in new {
            let Some(veth) = view.links.iter().find(|link| link.index == ifindex) else {
                continue;
            };
            match lifecycle::attach_egress(&mut self.loaded, &veth.name, &self.node) {
                Ok(link) => {
                    self.egress_links.insert(ifindex, link);
                }
                Err(error) => {
                    let pod = egress.ports[&ifindex].pod;
                    egress.skipped_pods.push(SkippedPod {
                        ip: Ipv4Addr::from(pod.to_ne_bytes()),
                        reason: error.to_string(),
                    });
                }
            }
        }
        let maps = &mut self.loaded.maps;
        let stale: Vec<Prefix> = self
            .routes
            .iter()
            .filter(|(prefix, route)| egress.routes.get(prefix) != Some(route))
            .map(|(prefix, _)| *prefix)
            .collect();
        for prefix in stale {
            // Replaced below, or gone: a lookup in between falls back to a
            // shorter prefix, which at worst leaves the packet to the kernel.
            ignore_missing(maps.routes.remove(&route_key(prefix)))
                .map_err(map_error("FP_ROUTES"))?;
            self.routes.remove(&prefix);
        }
        for (prefix, route) in &egress.routes {
            if !self.routes.contains_key(prefix) {
                maps.routes
                    .insert(&route_key(*prefix), route, 0)
                    .map_err(map_error("FP_ROUTES"))?;
                self.routes.insert(*prefix, *route);
            }
        }
        Ok(())
    }
}

fn map_error(name: &'static str) -> impl Fn(MapError) -> FastpathError {
    move |cause| FastpathError::Map { name, cause }
}

fn sync_remotes(
    map: &mut HashMap<MapData, u32, u32>,
    applied: &mut BTreeSet<Ipv4Addr>,
    wanted: &BTreeSet<Ipv4Addr>,
) -> Result<(), FastpathError> {
    for ip in applied.difference(wanted) {
        ignore_missing(map.remove(&key(*ip))).map_err(map_error("FP_REMOTES"))?;
    }
    for ip in wanted.difference(applied) {
        map.insert(key(*ip), 1, 0)
            .map_err(map_error("FP_REMOTES"))?;
    }
    applied.clone_from(wanted);
    Ok(())
}

/// The first [`MAX_LOCALS`] of `locals`: packets to any further address
/// are left to the kernel.
fn local_addresses(locals: &BTreeSet<Ipv4Addr>) -> LocalAddresses {
    if locals.len() > MAX_LOCALS {
        log::warn!("more than {MAX_LOCALS} local addresses: the fast path takes the first ones");
    }
    LocalAddresses::new(locals.iter().map(|ip| key(*ip)))
}

/// The maps' key for an IPv4 address: its bytes in network order.
fn key(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

fn route_key(prefix: Prefix) -> Key<u32> {
    Key::new(u32::from(prefix.len), key(prefix.address))
}

/// A missing entry is the one we wanted gone.
fn ignore_missing(result: Result<(), MapError>) -> Result<(), MapError> {
    match result {
        Err(MapError::SyscallError(error)) if error.io_error.kind() == io::ErrorKind::NotFound => {
            Ok(())
        }
        result => result,
    }
}
