//! The sync process of an enabled fast path. Every [`SYNC_INTERVAL`] it
//! reads netlink again, works out the [overlay](super::overlay), prepares
//! new pods' veths for native XDP and applies the difference to the maps: a
//! pod that appears or goes away is picked up within that interval. On
//! SIGTERM or SIGINT (`disable`), or once its pins are gone (`netprobe
//! detach`), it takes the fast path down and exits.

use std::{
    collections::{BTreeMap, BTreeSet},
    io,
    net::Ipv4Addr,
    time::Duration,
};

use aya::maps::{HashMap, MapData, MapError};
use netprobe_common::fastpath::{LocalAddresses, MAX_LOCALS, PodEntry};
use tokio::signal::unix::{SignalKind, signal};

use super::{
    FastpathError,
    devices::{self, Target},
    lifecycle::teardown,
    overlay::{NodeView, Overlay, overlay},
    programs::FastpathMaps,
    state::{self, FastpathId, FastpathState, LINK_PIN, ServedPod, SkippedPod},
};
use crate::{ethtool::Feature, netns::NetNs};

pub const SYNC_INTERVAL: Duration = Duration::from_millis(250);

/// Syncs the fast path `id` until it is stopped, then takes it down, also
/// when it could not start.
pub fn run(id: &FastpathId) -> Result<(), FastpathError> {
    run_when_idle();
    let synced = sync_until_stopped(id);
    let taken_down = teardown(id);
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

fn sync_until_stopped(id: &FastpathId) -> Result<(), FastpathError> {
    let mut syncer = Syncer::open(id)?;
    // Netlink and DEVMAP updates (which look devices up by ifindex) act in
    // the calling thread's namespace: this one stays in the node's.
    let _in_node = syncer.node.enter()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| FastpathError::Io {
            action: "starting the event loop for",
            path: id.state_dir(),
            source,
        })?;
    runtime.block_on(async {
        let signal_error = |source| FastpathError::Io {
            action: "handling signals for",
            path: id.state_dir(),
            source,
        };
        let mut terminate = signal(SignalKind::terminate()).map_err(signal_error)?;
        let mut interrupt = signal(SignalKind::interrupt()).map_err(signal_error)?;
        syncer.round()?;
        // Ready: `enable` waits for this.
        state::write_pid(id)?;
        let link_pin = id.pin_dir().join(LINK_PIN);
        let mut ticker = tokio::time::interval(SYNC_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    if !link_pin.exists() {
                        log::info!("{} removed: taking the fast path down", link_pin.display());
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
    })
}

/// The fast path's maps and record, and what the maps hold.
struct Syncer {
    state: FastpathState,
    maps: FastpathMaps,
    node: NetNs,
    locals: BTreeSet<Ipv4Addr>,
    remotes: BTreeSet<Ipv4Addr>,
    pods: BTreeMap<Ipv4Addr, PodEntry>,
}

impl Syncer {
    fn open(id: &FastpathId) -> Result<Self, FastpathError> {
        let state = state::load(id)?.ok_or_else(|| FastpathError::NotEnabled(id.to_string()))?;
        let maps = FastpathMaps::from_pins(&id.pin_dir())?;
        let node = match &id.netns {
            Some(name) => NetNs::named(name)?,
            None => NetNs::current()?,
        };
        if node.inode() != id.netns_inode {
            return Err(FastpathError::OtherNamespace(id.to_string()));
        }
        let map_error = |name| move |source| FastpathError::Map { name, source };
        let stored = maps.locals.get(&0, 0).map_err(map_error("FP_LOCALS"))?;
        let locals = stored.addresses[..stored.count as usize]
            .iter()
            .map(|local| Ipv4Addr::from(local.to_ne_bytes()))
            .collect();
        let remotes = maps
            .remotes
            .keys()
            .map(|key| key.map(|key| Ipv4Addr::from(key.to_ne_bytes())))
            .collect::<Result<_, _>>()
            .map_err(map_error("FP_REMOTES"))?;
        let pods = maps
            .pods
            .iter()
            .map(|entry| entry.map(|(key, pod)| (Ipv4Addr::from(key.to_ne_bytes()), pod)))
            .collect::<Result<_, _>>()
            .map_err(map_error("FP_PODS"))?;
        Ok(Self {
            state,
            maps,
            node,
            locals,
            remotes,
            pods,
        })
    }

    /// One round: netlink, overlay, device settings, maps, record. Runs in
    /// the node's namespace.
    fn round(&mut self) -> Result<(), FastpathError> {
        let view = NodeView::read()?;
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

    /// Brings the maps to `overlay`. A pod whose veth vanishes meanwhile is
    /// moved to the skipped ones.
    fn apply(&mut self, overlay: &mut Overlay) -> Result<(), FastpathError> {
        let map_error = |name| move |source| FastpathError::Map { name, source };
        if self.locals != overlay.locals {
            self.maps
                .locals
                .set(0, local_addresses(&overlay.locals), 0)
                .map_err(map_error("FP_LOCALS"))?;
            self.locals.clone_from(&overlay.locals);
        }
        sync_remotes(&mut self.maps.remotes, &mut self.remotes, &overlay.remotes)?;
        let gone: Vec<(Ipv4Addr, PodEntry)> = self
            .pods
            .iter()
            .filter(|(ip, entry)| overlay.pods.get(ip).map(|pod| &pod.entry) != Some(entry))
            .map(|(ip, entry)| (*ip, *entry))
            .collect();
        for (ip, entry) in gone {
            ignore_missing(self.maps.pods.remove(&key(ip))).map_err(map_error("FP_PODS"))?;
            self.pods.remove(&ip);
            if !overlay
                .pods
                .values()
                .any(|pod| pod.entry.ifindex == entry.ifindex)
            {
                // The kernel drops the entry itself when the device goes.
                ignore_missing(self.maps.ports.remove(entry.ifindex))
                    .map_err(map_error("FP_PORTS"))?;
            }
        }
        let new: Vec<(Ipv4Addr, PodEntry)> = overlay
            .pods
            .iter()
            .filter(|(ip, _)| !self.pods.contains_key(ip))
            .map(|(ip, pod)| (*ip, pod.entry))
            .collect();
        for (ip, entry) in new {
            if let Err(error) = self
                .maps
                .ports
                .insert(entry.ifindex, entry.ifindex, None, 0)
            {
                overlay.pods.remove(&ip);
                overlay.skipped.push(SkippedPod {
                    ip,
                    reason: format!("its veth could not be added to the DEVMAP: {error}"),
                });
                continue;
            }
            self.maps
                .pods
                .insert(key(ip), entry, 0)
                .map_err(map_error("FP_PODS"))?;
            self.pods.insert(ip, entry);
        }
        Ok(())
    }
}

fn sync_remotes(
    map: &mut HashMap<MapData, u32, u32>,
    applied: &mut BTreeSet<Ipv4Addr>,
    wanted: &BTreeSet<Ipv4Addr>,
) -> Result<(), FastpathError> {
    let map_error = |source| FastpathError::Map {
        name: "FP_REMOTES",
        source,
    };
    for ip in applied.difference(wanted) {
        ignore_missing(map.remove(&key(*ip))).map_err(map_error)?;
    }
    for ip in wanted.difference(applied) {
        map.insert(key(*ip), 1, 0).map_err(map_error)?;
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

/// A missing entry is the one we wanted gone.
fn ignore_missing(result: Result<(), MapError>) -> Result<(), MapError> {
    match result {
        Err(MapError::SyscallError(error)) if error.io_error.kind() == io::ErrorKind::NotFound => {
            Ok(())
        }
        result => result,
    }
}
