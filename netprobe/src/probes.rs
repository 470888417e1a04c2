//! Loading the per-hop probes and attaching them along a [`ProbePath`]. Every
//! attachment is a bpf_link owned by this process: when it exits, even by
//! `kill -9`, the kernel detaches everything.

use std::{os::fd::OwnedFd, time::Duration};

use aya::{
    Btf, Ebpf, EbpfError, EbpfLoader,
    maps::{Array, HashMap, MapData, MapError, PerCpuArray, RingBuf},
    programs::{
        BtfTracePoint, LinkOrder, ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode,
        links::FdLink,
    },
    sys::{Stats, SyscallError, enable_stats},
};
use netprobe_common::{
    config::{FlowFilter, KernelOffsets, ProbeConfig},
    histogram::{Histogram, bucket_low, bucket_width},
    probe::{
        FLIGHT_EXPIRY_NS, FLIGHT_SLOT_BITS, Flight, HopStats, Point, PointKey, SLOTS, slot,
        watch_bit,
    },
};
use serde::Serialize;
use thiserror::Error;

pub use crate::links::XdpModeChoice;
use crate::{
    discovery::{Datapath, Device},
    fastpath::FastpathHook,
    kernel_btf::{self, BtfError},
    links::{self, AttachError, error_chain, xdp_mode_name},
    netns::{NetNs, NetNsError},
    path::{Direction, Hook, ProbePath},
};

/// The probes object, built by `cargo xtask build-ebpf`.
pub static PROBES_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netprobe-probes.o"));

#[derive(Clone, Debug, Default)]
pub struct ProbeOptions {
    pub xdp_mode: XdpModeChoice,
    pub filter: FlowFilter,
    /// Send one complete flight in N to userspace; 0 for none.
    pub sample_every: u32,
    /// Measure without XDP when another program holds the NIC's XDP hook.
    pub force: bool,
    /// Leave the kernel's run-time statistics off: no per-program cost, and
    /// no cost of measuring it (two clock reads per program run, about 10%
    /// of throughput on a VM whose sched_clock is slow).
    pub skip_cost: bool,
}

#[derive(Debug, Error)]
pub enum ProbeError {
    #[error(transparent)]
    Btf(#[from] BtfError),
    #[error(transparent)]
    NetNs(#[from] NetNsError),
    #[error(
        "{interface} already has an XDP program (id {prog_id}); netprobe never replaces it: \
         --force measures without the XDP hook"
    )]
    ForeignXdp { interface: String, prog_id: u32 },
    #[error("loading the probes: {0}")]
    Load(#[source] EbpfError),
    #[error("loading program {program}: {source}")]
    Program {
        program: &'static str,
        source: ProgramError,
    },
    #[error("probe map {name}: {source}")]
    Map {
        name: &'static str,
        source: MapError,
    },
    #[error("the probes object has no {0}")]
    Missing(&'static str),
    #[error("turning on bpf run-time statistics: {0}")]
    Stats(#[source] SyscallError),
    #[error(
        "{interface}: {hook} attached without a bpf_link, which would outlive netprobe; refusing"
    )]
    NotALink {
        interface: String,
        hook: &'static str,
    },
}

/// A hook that could not be attached here, and why.
#[derive(Clone, Debug, Serialize)]
pub struct Unobserved {
    pub hook: Hook,
    pub reason: String,
}

/// The probes object loaded with its configuration, nothing attached yet:
/// what a [`ProbeSession`] attaches, and what tests run on crafted packets
/// with BPF_PROG_TEST_RUN.
pub struct LoadedProbes {
    ebpf: Ebpf,
}

impl LoadedProbes {
    pub fn load(config: &ProbeConfig, btf: &Btf) -> Result<Self, ProbeError> {
        let ebpf = EbpfLoader::new()
            .btf(Some(btf))
            .override_global("CONFIG", config, true)
            .map_max_entries("FLIGHTS", 1 << config.flight_slot_bits)
            .load(PROBES_OBJECT)
            .map_err(ProbeError::Load)?;
        Ok(Self { ebpf })
    }

    /// Watches `key` as `point` of the path.
    pub fn add_point(&mut self, key: PointKey, point: Point) -> Result<(), ProbeError> {
        let mut points: HashMap<_, PointKey, Point> = map(&mut self.ebpf, "POINTS")?;
        points
            .insert(key, point, 0)
            .map_err(|source| ProbeError::Map {
                name: "POINTS",
                source,
            })?;
        self.watch(key.netns, key.ifindex)
    }

    /// TCP writes in namespace `netns` start egress flights.
    pub fn watch_sockets(&mut self, netns: u32) -> Result<(), ProbeError> {
        self.watch(netns, 0)
    }

    /// Sets the bit of (netns, ifindex) in the watch filter.
    fn watch(&mut self, netns: u32, ifindex: u32) -> Result<(), ProbeError> {
        let mut watched: Array<_, u64> = map(&mut self.ebpf, "WATCHED")?;
        let bit = watch_bit(netns, ifindex);
        let map_error = |source| ProbeError::Map {
            name: "WATCHED",
            source,
        };
        let word = watched.get(&(bit / 64), 0).map_err(map_error)?;
        watched
            .set(bit / 64, word | 1 << (bit % 64), 0)
            .map_err(map_error)
    }

    /// Packets followed right now: the occupied slots of the flight table.
    pub fn flights(&self) -> Result<Vec<Flight>, ProbeError> {
        let flights: Array<_, Flight> = map_ref(&self.ebpf, "FLIGHTS")?;
        let mut occupied = Vec::new();
        for flight in flights.iter() {
            let flight = flight.map_err(|source| ProbeError::Map {
                name: "FLIGHTS",
                source,
            })?;
            if flight.key.protocol != 0 {
                occupied.push(flight);
            }
        }
        Ok(occupied)
    }

    /// Frees every slot of the flight table.
    pub fn clear_flights(&mut self) -> Result<(), ProbeError> {
        let mut flights: Array<_, Flight> = map(&mut self.ebpf, "FLIGHTS")?;
        for index in 0..flights.len() {
            flights
                .set(index, Flight::default(), 0)
                .map_err(|source| ProbeError::Map {
                    name: "FLIGHTS",
                    source,
                })?;
        }
        Ok(())
    }

    /// The program of `hook`, loaded into the kernel (tracepoints need the
    /// kernel's BTF to find their attach point).
    pub fn program<'a, T>(&'a mut self, hook: Hook) -> Result<&'a mut T, ProbeError>
    where
        &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
    {
        program_mut(&mut self.ebpf, hook.program())
    }

    /// Histograms and join counts so far, summed over CPUs.
    pub fn snapshot(&self) -> Result<Snapshot, ProbeError> {
        let histograms: PerCpuArray<_, Histogram> = map_ref(&self.ebpf, "HISTOGRAMS")?;
        let hop_stats: PerCpuArray<_, HopStats> = map_ref(&self.ebpf, "HOP_STATS")?;
        let mut snapshot = Snapshot::default();
        for index in 0..SLOTS as u32 {
            let map_error = |name| move |source| ProbeError::Map { name, source };
            for cpu in histograms
                .get(&index, 0)
                .map_err(map_error("HISTOGRAMS"))?
                .iter()
            {
                snapshot.histograms[index as usize].merge(cpu);
            }
            for cpu in hop_stats
                .get(&index, 0)
                .map_err(map_error("HOP_STATS"))?
                .iter()
            {
                snapshot.hop_stats[index as usize].merge(cpu);
            }
        }
        Ok(snapshot)
    }
}

/// Loaded and attached probes. Dropping it detaches everything.
pub struct ProbeSession {
    // Links first: they drop before the programs they point to.
    _links: Vec<FdLink>,
    probes: LoadedProbes,
    /// Holds the kernel's run-time statistics on, when costs are measured.
    stats: Option<OwnedFd>,
    path: ProbePath,
    unobserved: Vec<Unobserved>,
    xdp_mode: Option<XdpMode>,
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

        let mut links = Vec::new();
        let mut xdp_mode = None;
        for hook in Hook::ALL.into_iter().filter(|hook| path.uses(*hook)) {
            match hook {
                Hook::Xdp => {
                    let (link, mode) = attach_xdp(&mut probes, datapath, node, options.xdp_mode)?;
                    links.push(link);
                    xdp_mode = Some(mode);
                }
                Hook::TcIngress | Hook::TcEgress => {
                    links.push(attach_tc(&mut probes, hook, datapath, node)?);
                }
                _ => attach_tracepoint(&mut probes, hook, btf)?,
            }
        }
        Ok(Self {
            _links: links,
            probes,
            stats,
            path: path.clone(),
            unobserved: Vec::new(),
            xdp_mode,
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
        let now = monotonic_ns();
        let stale = self
            .probes
            .flights()?
            .iter()
            .filter(|flight| now.saturating_sub(flight.last_ns()) > FLIGHT_EXPIRY_NS)
            .count();
        Ok(stale as u64)
    }

    /// The sampled flights' ring buffer (`--sample`).
    pub fn take_traces(&mut self) -> Result<RingBuf<MapData>, ProbeError> {
        let traces = self
            .probes
            .ebpf
            .take_map("TRACES")
            .ok_or(ProbeError::Missing("TRACES"))?;
        RingBuf::try_from(traces).map_err(|source| ProbeError::Map {
            name: "TRACES",
            source,
        })
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
            let info = program.info().map_err(|source| ProbeError::Program {
                program: hook.program(),
                source,
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

/// Cost of one probe program.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
pub struct ProgramCost {
    pub program: String,
    pub run_cnt: u64,
    pub run_time_ns: u64,
    pub ns_per_run: f64,
}

impl ProgramCost {
    pub fn new(program: &str, run_cnt: u64, run_time: Duration) -> Self {
        let run_time_ns = run_time.as_nanos() as u64;
        Self {
            program: program.to_owned(),
            run_cnt,
            run_time_ns,
            ns_per_run: if run_cnt == 0 {
                0.0
            } else {
                run_time_ns as f64 / run_cnt as f64
            },
        }
    }
}

/// Kernel counters, summed over CPUs, by histogram slot.
#[derive(Clone)]
pub struct Snapshot {
    pub histograms: Vec<Histogram>,
    pub hop_stats: Vec<HopStats>,
}

impl Default for Snapshot {
    fn default() -> Self {
        Self {
            histograms: vec![empty_histogram(); SLOTS],
            hop_stats: vec![HopStats::default(); SLOTS],
        }
    }
}

impl Snapshot {
    pub fn histogram(&self, direction: Direction, hop: usize) -> &Histogram {
        &self.histograms[slot(direction.code(), hop as u32) as usize]
    }

    pub fn stats(&self, direction: Direction, hop: usize) -> &HopStats {
        &self.hop_stats[slot(direction.code(), hop as u32) as usize]
    }

    /// What was counted after `earlier`, a snapshot of the same session.
    pub fn since(&self, earlier: &Snapshot) -> Snapshot {
        Snapshot {
            histograms: self
                .histograms
                .iter()
                .zip(&earlier.histograms)
                .map(|(now, then)| histogram_since(now, then))
                .collect(),
            hop_stats: self
                .hop_stats
                .iter()
                .zip(&earlier.hop_stats)
                .map(|(now, then)| HopStats {
                    seen: now.seen - then.seen,
                    joined: now.joined - then.joined,
                    unjoined: now.unjoined - then.unjoined,
                    skipped: now.skipped - then.skipped,
                    evicted: now.evicted - then.evicted,
                    expired: now.expired - then.expired,
                })
                .collect(),
        }
    }
}

/// Counts recorded between two snapshots of one histogram. Min and max of
/// the interval are known only to bucket precision: taken from the lowest
/// and highest buckets that grew.
fn histogram_since(now: &Histogram, then: &Histogram) -> Histogram {
    let mut interval = empty_histogram();
    for (index, bucket) in interval.buckets.iter_mut().enumerate() {
        *bucket = now.buckets[index] - then.buckets[index];
    }
    interval.count = now.count - then.count;
    interval.sum_ns = now.sum_ns - then.sum_ns;
    let grown = || {
        interval
            .buckets
            .iter()
            .enumerate()
            .filter(|(_, count)| **count > 0)
    };
    if let (Some((low, _)), Some((high, _))) = (grown().next(), grown().next_back()) {
        interval.min_ns = bucket_low(low).max(now.min_ns);
        interval.max_ns = (bucket_low(high) + bucket_width(high) - 1).min(now.max_ns);
    }
    interval
}

pub fn empty_histogram() -> Histogram {
    Histogram {
        count: 0,
        sum_ns: 0,
        min_ns: 0,
        max_ns: 0,
        buckets: [0; netprobe_common::histogram::BUCKETS],
    }
}

/// Adds one CPU's (or one interval's) counts into a total.
pub trait Merge {
    fn merge(&mut self, other: &Self);
}

impl Merge for Histogram {
    fn merge(&mut self, other: &Self) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 || other.min_ns < self.min_ns {
            self.min_ns = other.min_ns;
        }
        self.max_ns = self.max_ns.max(other.max_ns);
        self.count += other.count;
        self.sum_ns += other.sum_ns;
        for (total, add) in self.buckets.iter_mut().zip(&other.buckets) {
            *total += add;
        }
    }
}

impl Merge for HopStats {
    fn merge(&mut self, other: &Self) {
        self.seen += other.seen;
        self.joined += other.joined;
        self.unjoined += other.unjoined;
        self.skipped += other.skipped;
        self.evicted += other.evicted;
        self.expired += other.expired;
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

fn attach_xdp(
    probes: &mut LoadedProbes,
    datapath: &Datapath,
    node: &NetNs,
    choice: XdpModeChoice,
) -> Result<(FdLink, XdpMode), StartError> {
    let program = Hook::Xdp.program();
    let xdp: &mut Xdp = probes.program(Hook::Xdp)?;
    xdp.load()
        .map_err(|source| ProbeError::Program { program, source })?;
    links::attach_xdp(xdp, datapath.nic.ifindex, node, choice)
        .map_err(|error| attach_error(error, Hook::Xdp, datapath))
}

fn attach_tc(
    probes: &mut LoadedProbes,
    hook: Hook,
    datapath: &Datapath,
    node: &NetNs,
) -> Result<FdLink, StartError> {
    let program = hook.program();
    let classifier: &mut SchedClassifier = probes.program(hook)?;
    classifier
        .load()
        .map_err(|source| ProbeError::Program { program, source })?;
    let attach_type = if hook == Hook::TcIngress {
        TcAttachType::Ingress
    } else {
        TcAttachType::Egress
    };
    // First in the tcx chain, so a later program that drops or redirects
    // cannot hide packets from the probe; the probe always lets the chain go on.
    links::attach_tcx(
        classifier,
        &datapath.nic.name,
        attach_type,
        LinkOrder::first(),
        node,
    )
    .map_err(|error| attach_error(error, hook, datapath))
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

fn attach_tracepoint(probes: &mut LoadedProbes, hook: Hook, btf: &Btf) -> Result<(), StartError> {
    let program = hook.program();
    let tracepoint = hook.tracepoint().ok_or(ProbeError::Missing(program))?;
    let traced: &mut BtfTracePoint = probes.program(hook)?;
    // A kernel without this tracepoint has no btf_trace_<name> type.
    traced.load(tracepoint, btf).map_err(|error| match error {
        ProgramError::Btf(_) => StartError::Unavailable(hook, error_chain(&error)),
        source => ProbeError::Program { program, source }.into(),
    })?;
    traced
        .attach()
        .map_err(|error| StartError::Unavailable(hook, error_chain(&error)))?;
    Ok(())
}

fn program_mut<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, ProbeError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(ProbeError::Missing(name))?
        .try_into()
        .map_err(|source| ProbeError::Program {
            program: name,
            source,
        })
}

fn map<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<T, ProbeError>
where
    T: TryFrom<&'a mut aya::maps::Map, Error = MapError>,
{
    ebpf.map_mut(name)
        .ok_or(ProbeError::Missing(name))?
        .try_into()
        .map_err(|source| ProbeError::Map { name, source })
}

fn map_ref<'a, T>(ebpf: &'a Ebpf, name: &'static str) -> Result<T, ProbeError>
where
    T: TryFrom<&'a aya::maps::Map, Error = MapError>,
{
    ebpf.map(name)
        .ok_or(ProbeError::Missing(name))?
        .try_into()
        .map_err(|source| ProbeError::Map { name, source })
}

/// CLOCK_MONOTONIC in ns: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // CLOCK_MONOTONIC cannot fail with a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}
