//! A session: the probes loaded and attached along a path.

use std::os::fd::OwnedFd;

use aya::{
    Btf,
    maps::{MapData, RingBuf},
    programs::{
        BtfTracePoint, LinkOrder, ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode,
        links::FdLink,
    },
    sys::{Stats, enable_stats},
};
use netprobe_common::{
    config::{KernelOffsets, ProbeConfig},
    probe::{FLIGHT_EXPIRY_NS, FLIGHT_SLOT_BITS, Trace},
};

use super::{
    LoadedProbes, ProbeError, ProbeOptions, ProgramCost, SampledFlight, Snapshot, Unobserved,
    XdpModeChoice,
};
use crate::{
    bpf_link::{self, AttachError, error_chain, xdp_mode_name},
    clock::now_ns,
    kernel_btf::{self, BtfError},
    netns::NetNs,
    path::{Datapath, Device, Direction, FastpathHook, Hook, ProbePath},
};

/// Loaded and attached probes. Dropping it detaches everything.
pub struct ProbeSession {
    // bpf_links first: they drop before the programs they point to. Empty
    // while paused.
    bpf_links: Vec<(Hook, FdLink)>,
    probes: LoadedProbes,
    /// Holds the kernel's run-time statistics on, when costs are measured.
    stats: Option<OwnedFd>,
    path: ProbePath,
    unobserved: Vec<Unobserved>,
    xdp_mode: Option<XdpMode>,
    /// Where the interface hooks attach, again on resume.
    datapath: Datapath,
    node: NetNs,
    xdp_choice: XdpModeChoice,
}

/// What keeps a session from starting: a hook this kernel lacks (observe
/// without it) or a real failure.
enum StartError {
    Unavailable(Hook, String),
    Fatal(ProbeError),
}

impl From<ProbeError> for StartError {
    fn from(error: ProbeError) -> Self {
        StartError::Fatal(error)
    }
}

impl ProbeSession {
    /// Loads the probes and attaches them along the datapath. Hooks this
    /// kernel lacks are left out and listed in [`Self::unobserved`].
    pub fn start(
        datapath: &Datapath,
        node: &NetNs,
        options: &ProbeOptions,
    ) -> Result<Self, ProbeError> {
        let offsets = kernel_btf::kernel_offsets()?;
        let btf = Btf::from_sys_fs().map_err(|_| ProbeError::Btf(BtfError::Missing))?;
        let mut unobserved = Vec::new();
        let with_xdp = match datapath.nic_xdp_prog_id {
            Some(_) if datapath.fastpath == Some(FastpathHook::Xdp) => {
                unobserved.push(Unobserved {
                    hook: Hook::Xdp,
                    reason: format!(
                        "netprobe's XDP fast path holds {}: packets it takes are seen from the pod on",
                        datapath.nic
                    ),
                });
                false
            }
            Some(prog_id) if !options.force => {
                return Err(ProbeError::ForeignXdp {
                    interface: datapath.nic.to_string(),
                    prog_id,
                });
            }
            Some(prog_id) => {
                unobserved.push(Unobserved {
                    hook: Hook::Xdp,
                    reason: format!("XDP program {prog_id} already holds {}", datapath.nic),
                });
                false
            }
            // XDP on a veth changes the path it would measure: native XDP
            // moves the veth to NAPI and rebuilds every skb, generic XDP
            // copies every skb for headroom (10-15% of throughput here).
            // On a real NIC native XDP is all but free.
            None if options.xdp_mode == XdpModeChoice::Auto && datapath.nic.kind == "veth" => {
                unobserved.push(Unobserved {
                    hook: Hook::Xdp,
                    reason: format!(
                        "{} is a veth, where XDP would change the datapath; \
                         --xdp-mode native|generic attaches it anyway",
                        datapath.nic
                    ),
                });
                false
            }
            None => true,
        };
        let mut path = ProbePath::new(datapath, with_xdp);
        loop {
            match Self::try_start(&path, datapath, node, options, &offsets, &btf) {
                Ok(mut session) => {
                    session.unobserved = unobserved;
                    return Ok(session);
                }
                Err(StartError::Unavailable(hook, reason)) => {
                    log::warn!("{} unavailable: {reason}", hook.describe());
                    path.without_hook(hook);
                    unobserved.push(Unobserved { hook, reason });
                }
                Err(StartError::Fatal(error)) => return Err(error),
            }
        }
    }

    fn try_start(
        path: &ProbePath,
        datapath: &Datapath,
        node: &NetNs,
        options: &ProbeOptions,
        offsets: &KernelOffsets,
        btf: &Btf,
    ) -> Result<Self, StartError> {
        let config = probe_config(path, &datapath.nic, node, options, offsets);
        let mut probes = LoadedProbes::load(&config, btf)?;
        for (key, point) in path.points() {
            probes.add_point(key, point)?;
        }
        for netns in path.socket_namespaces(datapath) {
            probes.watch_sockets(netns)?;
        }
        let stats = if options.skip_cost {
            None
        } else {
            Some(enable_stats(Stats::RunTime).map_err(ProbeError::Stats)?)
        };

        for hook in Hook::ALL.into_iter().filter(|hook| path.uses(*hook)) {
            load_program(&mut probes, hook, btf)?;
        }
        let mut session = Self {
            bpf_links: Vec::new(),
            probes,
            stats,
            path: path.clone(),
            unobserved: Vec::new(),
            xdp_mode: None,
            datapath: datapath.clone(),
            node: node.try_clone().map_err(ProbeError::from)?,
            xdp_choice: options.xdp_mode,
        };
        session.attach()?;
        Ok(session)
    }

    /// Attaches every loaded program not attached yet to its hook.
    fn attach(&mut self) -> Result<(), StartError> {
        for hook in Hook::ALL.into_iter().filter(|hook| self.path.uses(*hook)) {
            if self.bpf_links.iter().any(|(attached, _)| *attached == hook) {
                continue;
            }
            let link = match hook {
                Hook::Xdp => {
                    let (link, mode) = bpf_link::attach_xdp(
                        self.probes.program(hook)?,
                        self.datapath.nic.ifindex,
                        &self.node,
                        self.xdp_choice,
                    )
                    .map_err(|error| attach_error(error, hook, &self.datapath))?;
                    self.xdp_mode = Some(mode);
                    link
                }
                Hook::TcIngress | Hook::TcEgress => {
                    let attach_type = if hook == Hook::TcIngress {
                        TcAttachType::Ingress
                    } else {
                        TcAttachType::Egress
                    };
                    // First in the tcx chain, so a later program that drops
                    // or redirects cannot hide packets from the probe; the
                    // probe always lets the chain go on.
                    bpf_link::attach_tcx(
                        self.probes.program(hook)?,
                        &self.datapath.nic.name,
                        attach_type,
                        LinkOrder::first(),
                        &self.node,
                    )
                    .map_err(|error| attach_error(error, hook, &self.datapath))?
                }
                _ => {
                    let traced: &mut BtfTracePoint = self.probes.program(hook)?;
                    traced
                        .attach()
                        .and_then(|id| traced.take_link(id))
                        .map_err(|error| StartError::Unavailable(hook, error_chain(&error)))?
                        .into()
                }
            };
            self.bpf_links.push((hook, link));
        }
        Ok(())
    }

    /// Detaches every program until [`Self::resume`], keeping them loaded
    /// with their maps: traffic then runs none of them (tracepoints fire
    /// for every namespace's), and resuming is quick.
    pub fn pause(&mut self) {
        self.bpf_links.clear();
    }

    /// Detaches the programs on the kernel's tracepoints, which run for
    /// every namespace's packets, until [`Self::resume`]; those on the
    /// node's own devices (XDP, TC) stay, as they see only its traffic.
    /// Detaching each of those waits for an RCU grace period (10-20 ms
    /// here).
    pub fn quiesce(&mut self) {
        self.bpf_links
            .retain(|(hook, _)| hook.tracepoint().is_none());
    }

    /// Attaches again what [`Self::pause`] or [`Self::quiesce`] detached.
    pub fn resume(&mut self) -> Result<(), ProbeError> {
        self.attach().map_err(|error| {
            // All or nothing: a later resume tries every hook again.
            self.bpf_links.clear();
            match error {
                StartError::Fatal(error) => error,
                StartError::Unavailable(hook, reason) => ProbeError::Resume {
                    hook: hook.describe(),
                    reason,
                },
            }
        })
    }

    pub fn path(&self) -> &ProbePath {
        &self.path
    }

    pub fn unobserved(&self) -> &[Unobserved] {
        &self.unobserved
    }

    /// `native` or `generic`, when XDP is attached.
    pub fn xdp_mode(&self) -> Option<&'static str> {
        self.xdp_mode.map(xdp_mode_name)
    }

    /// Histograms and join counts so far, summed over CPUs.
    pub fn snapshot(&self) -> Result<Snapshot, ProbeError> {
        self.probes.snapshot()
    }

    /// Flights still unfinished and not seen for [`FLIGHT_EXPIRY_NS`]:
    /// packets that stopped on the way and whose slot was not reused.
    pub fn stale_flights(&self) -> Result<u64, ProbeError> {
        let now = now_ns();
        let stale = self
            .probes
            .flights()?
            .iter()
            .filter(|flight| now.saturating_sub(flight.last_ns()) > FLIGHT_EXPIRY_NS)
            .count();
        Ok(stale as u64)
    }

    /// Packets being followed right now (occupied slots of the flight
    /// table), by direction code.
    pub fn open_flights(&self) -> Result<[u64; 2], ProbeError> {
        let mut open = [0; 2];
        for flight in self.probes.flights()? {
            if let Some(count) = open.get_mut(usize::from(flight.key.direction)) {
                *count += 1;
            }
        }
        Ok(open)
    }

    /// The sampled flights' ring buffer (`--sample`).
    pub fn take_traces(&mut self) -> Result<RingBuf<MapData>, ProbeError> {
        let traces = self
            .probes
            .ebpf
            .take_map("TRACES")
            .ok_or(ProbeError::Missing("TRACES"))?;
        RingBuf::try_from(traces).map_err(|cause| ProbeError::Map {
            name: "TRACES",
            cause,
        })
    }

    /// Every sampled flight waiting in `traces` (from [`Self::take_traces`]).
    pub fn drain_traces(traces: &mut RingBuf<MapData>) -> Vec<SampledFlight> {
        let mut drained = Vec::new();
        while let Some(item) = traces.next() {
            if item.len() >= size_of::<Trace>() {
                // SAFETY: the probes write whole `Trace`s, at any alignment.
                let trace = unsafe { item.as_ptr().cast::<Trace>().read_unaligned() };
                drained.extend(SampledFlight::decode(&trace));
            }
        }
        drained
    }

    /// Run count and total run time of each attached program, from the
    /// kernel's bpf statistics.
    pub fn program_costs(&self) -> Result<Vec<ProgramCost>, ProbeError> {
        let mut costs = Vec::new();
        if self.stats.is_none() {
            return Ok(costs);
        }
        for hook in Hook::ALL.into_iter().filter(|hook| self.path.uses(*hook)) {
            let program = self
                .probes
                .ebpf
                .program(hook.program())
                .ok_or(ProbeError::Missing(hook.program()))?;
            let info = program.info().map_err(|cause| ProbeError::Program {
                program: hook.program(),
                cause,
            })?;
            costs.push(ProgramCost::new(
                hook.program(),
                info.run_count(),
                info.run_time(),
            ));
        }
        Ok(costs)
    }
}

/// The settings the probes are loaded with for `path`.
pub fn probe_config(
    path: &ProbePath,
    nic: &Device,
    node: &NetNs,
    options: &ProbeOptions,
    offsets: &KernelOffsets,
) -> ProbeConfig {
    let socket_read = path
        .ingress
        .last()
        .is_some_and(|hop| hop.hook == Hook::SocketRead);
    let socket_write = path
        .egress
        .first()
        .is_some_and(|hop| hop.hook == Hook::SocketWrite);
    // Hooks the path lacks are never attached; any value does.
    let nic_hop = |direction, hook| path.hop_of(direction, hook).unwrap_or(u32::MAX);
    ProbeConfig {
        offsets: *offsets,
        filter: options.filter,
        node_netns: node.inode(),
        nic_ifindex: nic.ifindex,
        nic_hops: [
            nic_hop(Direction::Ingress, Hook::Xdp),
            nic_hop(Direction::Ingress, Hook::TcIngress),
            nic_hop(Direction::Egress, Hook::TcEgress),
        ],
        hops: [path.ingress.len() as u32, path.egress.len() as u32],
        start_hop: [0, u32::from(socket_write)],
        socket_read: u32::from(socket_read),
        socket_write: u32::from(socket_write),
        sample_every: options.sample_every,
        flight_slot_bits: FLIGHT_SLOT_BITS,
    }
}

/// Loads the program of `hook` into the kernel, not attached yet.
fn load_program(probes: &mut LoadedProbes, hook: Hook, btf: &Btf) -> Result<(), StartError> {
    let program = hook.program();
    let loaded = match hook {
        Hook::Xdp => probes.program::<Xdp>(hook)?.load(),
        Hook::TcIngress | Hook::TcEgress => probes.program::<SchedClassifier>(hook)?.load(),
        _ => {
            let tracepoint = hook.tracepoint().ok_or(ProbeError::Missing(program))?;
            let traced: &mut BtfTracePoint = probes.program(hook)?;
            // A kernel without this tracepoint has no btf_trace_<name> type.
            match traced.load(tracepoint, btf) {
                Err(error @ ProgramError::Btf(_)) => {
                    return Err(StartError::Unavailable(hook, error_chain(&error)));
                }
                result => result,
            }
        }
    };
    loaded.map_err(|cause| ProbeError::Program { program, cause }.into())
}

fn attach_error(error: AttachError, hook: Hook, datapath: &Datapath) -> StartError {
    let interface = datapath.nic.to_string();
    match error {
        AttachError::Busy => ProbeError::ForeignXdp {
            interface,
            prog_id: 0,
        }
        .into(),
        AttachError::NotALink => ProbeError::NotALink {
            interface,
            hook: hook.describe(),
        }
        .into(),
        AttachError::Refused(error) => StartError::Unavailable(hook, error_chain(&error)),
        AttachError::NetNs(error) => ProbeError::from(error).into(),
    }
}
