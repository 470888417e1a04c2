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
    probe::{FLIGHT_EXPIRY_NS, FLIGHT_SLOT_BITS, OneIn, Trace},
};

use super::{
    LoadedProbes, ProbeError, ProbeOptions, ProgramCost, SampledFlight, Snapshot, Unobserved,
    XdpModeChoice,
};
use crate::{
    bpf_link::{self, AttachError, error_chain, xdp_mode_name},
    clock::now_ns,
    hooks::{Attachment, ChainEnd, TcxSide},
    kernel_btf,
    netns::NetNs,
    path::{Datapath, Device, Direction, FastpathHook, Hook, PathProgram, ProbePath},
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
    follow_one_in: u32,
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
        if options.sample_every != 0 && options.sample_every < options.follow_one_in {
            return Err(ProbeError::SampleNotFollowed {
                sample: options.sample_every,
                follow: options.follow_one_in,
            });
        }
        let kernel = kernel_btf::running_kernel()?;
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
        let mut path = ProbePath::new(datapath, with_xdp, options.qdisc, options.by_pod);
        loop {
            match Self::try_start(&path, datapath, node, options, &kernel.offsets, &kernel.btf) {
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
        let config = probe_config(path, &datapath.nic, options, offsets);
        let mut probes = LoadedProbes::load(&config, btf)?;
        for netns in path.socket_namespaces(datapath) {
            probes.watch_sockets(netns)?;
        }
        probes.add_pods(&path.pods)?;
        let stats = if options.program_cost {
            Some(enable_stats(Stats::RunTime).map_err(ProbeError::Stats)?)
        } else {
            None
        };
        for program in path.programs() {
            load_program(&mut probes, program, btf)?;
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
            follow_one_in: options.follow_one_in,
        };
        session.attach()?;
        Ok(session)
    }

    /// Attaches every hook of the path not attached yet: its program at
    /// each place the path has the hook, on each of the place's devices.
    fn attach(&mut self) -> Result<(), StartError> {
        for hook in Hook::ALL.into_iter().filter(|hook| self.path.uses(*hook)) {
            if self.bpf_links.iter().any(|(attached, _)| *attached == hook) {
                continue;
            }
            let mut links = Vec::new();
            for placed in self.path.placed().filter(|placed| placed.hop.hook == hook) {
                let program = placed.program();
                match hook.definition().attachment {
                    Attachment::Xdp => {
                        let (link, mode) = bpf_link::attach_xdp(
                            self.probes.program(program)?,
                            self.datapath.nic.ifindex,
                            &self.node,
                            self.xdp_choice,
                        )
                        .map_err(|error| attach_error(error, hook, &self.datapath.nic))?;
                        self.xdp_mode = Some(mode);
                        links.push(link);
                    }
                    Attachment::Tcx { side, end } => {
                        let attach_type = match side {
                            TcxSide::Ingress => TcAttachType::Ingress,
                            TcxSide::Egress => TcAttachType::Egress,
                        };
                        for device in &placed.hop.devices {
                            let order = match end {
                                ChainEnd::First => LinkOrder::first(),
                                ChainEnd::Last => LinkOrder::last(),
                            };
                            let netns = match &device.netns_name {
                                Some(name) => NetNs::named(name).map_err(ProbeError::from)?,
                                None => self.node.try_clone().map_err(ProbeError::from)?,
                            };
                            let link = bpf_link::attach_tcx(
                                self.probes.program(program)?,
                                &device.name,
                                attach_type,
                                order,
                                &netns,
                            )
                            .map_err(|error| attach_error(error, hook, device))?;
                            links.push(link);
                        }
                    }
                    Attachment::Tracepoint(_) => {
                        let traced: &mut BtfTracePoint = self.probes.program(program)?;
                        let link = traced
                            .attach()
                            .and_then(|id| traced.take_link(id))
                            .map_err(|error| StartError::Unavailable(hook, error_chain(&error)))?;
                        links.push(link.into());
                    }
                }
            }
            self.bpf_links
                .extend(links.into_iter().map(|link| (hook, link)));
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
    /// watched devices (XDP, tcx) stay, as they see only those devices'
    /// traffic. Detaching each of those waits for an RCU grace period
    /// (10-20 ms here).
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

    /// The probes object with its maps.
    pub fn loaded(&self) -> &LoadedProbes {
        &self.probes
    }

    pub fn unobserved(&self) -> &[Unobserved] {
        &self.unobserved
    }

    /// One packet in this many is followed from hop to hop.
    pub fn follow_one_in(&self) -> u32 {
        self.follow_one_in
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
    /// kernel's bpf statistics (`ProbeOptions::program_cost`).
    pub fn program_costs(&self) -> Result<Vec<ProgramCost>, ProbeError> {
        let mut costs = Vec::new();
        if self.stats.is_none() {
            return Ok(costs);
        }
        for PathProgram { name: program, .. } in self.path.programs() {
            let info = self
                .probes
                .ebpf
                .program(program)
                .ok_or(ProbeError::Missing(program))?
                .info()
                .map_err(|cause| ProbeError::Program { program, cause })?;
            costs.push(ProgramCost::new(program, info.run_count(), info.run_time()));
        }
        Ok(costs)
    }
}

/// The settings the probes are loaded with for `path`.
fn probe_config(
    path: &ProbePath,
    nic: &Device,
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
    ProbeConfig {
        offsets: *offsets,
        filter: options.filter,
        nic_netns: nic.netns_inode,
        nic_ifindex: nic.ifindex,
        hops: [path.ingress.len() as u32, path.egress.len() as u32],
        start_hop: [0, u32::from(socket_write)],
        socket_read: u32::from(socket_read),
        socket_write: u32::from(socket_write),
        flight_slot_bits: FLIGHT_SLOT_BITS,
        follow: OneIn::new(options.follow_one_in),
        sample: OneIn::new(options.sample_every),
        pod_hops: Direction::BOTH.map(|direction| path.pod_hops(direction)),
        hooks_only: u32::from(options.hooks_only),
        _pad: 0,
    }
}

/// Loads a program of the path into the kernel, not attached yet.
fn load_program(
    probes: &mut LoadedProbes,
    program: PathProgram,
    btf: &Btf,
) -> Result<(), StartError> {
    let PathProgram { hook, name } = program;
    let loaded = match hook.definition().attachment {
        Attachment::Xdp => probes.program::<Xdp>(name)?.load(),
        Attachment::Tcx { .. } => probes.program::<SchedClassifier>(name)?.load(),
        Attachment::Tracepoint(tracepoint) => {
            let traced: &mut BtfTracePoint = probes.program(name)?;
            // A kernel without this tracepoint has no btf_trace_<name> type.
            match traced.load(tracepoint, btf) {
                Err(error @ ProgramError::Btf(_)) => {
                    return Err(StartError::Unavailable(hook, error_chain(&error)));
                }
                result => result,
            }
        }
    };
    loaded.map_err(|cause| {
        ProbeError::Program {
            program: name,
            cause,
        }
        .into()
    })
}

fn attach_error(error: AttachError, hook: Hook, device: &Device) -> StartError {
    let interface = device.to_string();
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
