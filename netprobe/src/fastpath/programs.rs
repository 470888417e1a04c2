//! The fast path's eBPF object: the kernel helpers it needs, loading it for
//! one vxlan device, and typed handles on its maps, from the loaded object
//! or, in any other process, by the ids the record keeps.

use std::collections::BTreeMap;

use aya::{
    Ebpf, EbpfLoader,
    maps::{
        Array, DevMapHash, HashMap, IterableMap as _, Map, MapData, PerCpuArray, lpm_trie::LpmTrie,
    },
    programs::{ProgramType, SchedClassifier, Xdp},
    sys::{BpfHelper, is_helper_supported},
};
use netprobe_common::fastpath::{
    COUNTERS, Counter, EGRESS_COUNTERS, EgressCounter, EgressPort, EgressRoute, FastpathConfig,
    LocalAddresses, PodEntry,
};

use super::{FastpathError, FastpathHook};

/// The fast path object, built by `cargo xtask build-ebpf`.
pub static FASTPATH_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netprobe-fastpath.o"));

/// The program on the pods' veths.
pub const EGRESS_PROGRAM: &str = "np_fp_egress";

/// The maps userspace reads or fills, by name.
const MAP_NAMES: [&str; 8] = [
    "FP_LOCALS",
    "FP_REMOTES",
    "FP_PODS",
    "FP_PORTS",
    "FP_STATS",
    "FP_EGRESS_PORTS",
    "FP_ROUTES",
    "FP_EGRESS_STATS",
];

/// The ids of the maps, by name: what another process opens them by.
pub type MapIds = BTreeMap<String, u32>;

impl FastpathHook {
    /// Name of the program that implements the hook.
    pub fn program(self) -> &'static str {
        match self {
            FastpathHook::Xdp => "np_fp_xdp",
            FastpathHook::Tc => "np_fp_tc",
        }
    }

    /// The helpers the hook's program calls that older kernels lack.
    fn helpers(self) -> (ProgramType, &'static [(BpfHelper, &'static str)]) {
        match self {
            FastpathHook::Xdp => (
                ProgramType::Xdp,
                &[
                    (BpfHelper::BPF_FUNC_xdp_adjust_head, "bpf_xdp_adjust_head"),
                    (BpfHelper::BPF_FUNC_redirect_map, "bpf_redirect_map"),
                ],
            ),
            FastpathHook::Tc => (
                ProgramType::SchedClassifier,
                &[
                    (BpfHelper::BPF_FUNC_skb_pull_data, "bpf_skb_pull_data"),
                    (BpfHelper::BPF_FUNC_skb_adjust_room, "bpf_skb_adjust_room"),
                    (BpfHelper::BPF_FUNC_redirect_peer, "bpf_redirect_peer"),
                ],
            ),
        }
    }
}

/// The helpers the egress program calls that older kernels lack.
const EGRESS_HELPERS: &[(BpfHelper, &str)] = &[
    (BpfHelper::BPF_FUNC_skb_pull_data, "bpf_skb_pull_data"),
    (BpfHelper::BPF_FUNC_skb_adjust_room, "bpf_skb_adjust_room"),
    (BpfHelper::BPF_FUNC_get_hash_recalc, "bpf_get_hash_recalc"),
    (BpfHelper::BPF_FUNC_redirect, "bpf_redirect"),
];

/// Fails, naming the first missing helper, unless `supported` (the kernel's
/// answer, [`is_helper_supported`]) has every helper `hook` and the egress
/// program call.
pub fn require_helpers(
    hook: FastpathHook,
    supported: impl Fn(ProgramType, BpfHelper) -> Result<bool, aya::programs::ProgramError>,
) -> Result<(), FastpathError> {
    let (program_type, helpers) = hook.helpers();
    let needs = [
        (program_type, helpers, format!("--hook {}", hook.name())),
        (
            ProgramType::SchedClassifier,
            EGRESS_HELPERS,
            "the fast path".to_owned(),
        ),
    ];
    for (program_type, helpers, user) in needs {
        for &(helper, name) in helpers {
            let present =
                supported(program_type, helper).map_err(|cause| FastpathError::HelperProbe {
                    helper: name,
                    cause,
                })?;
            if !present {
                return Err(FastpathError::MissingHelper { helper: name, user });
            }
        }
    }
    Ok(())
}

/// [`require_helpers`] on the running kernel.
pub fn require_kernel_helpers(hook: FastpathHook) -> Result<(), FastpathError> {
    require_helpers(hook, is_helper_supported)
}

/// The object loaded for one vxlan device, programs not yet in the kernel:
/// what the sync process attaches and holds, and what tests run on crafted
/// frames with BPF_PROG_TEST_RUN.
pub struct LoadedFastpath {
    ebpf: Ebpf,
    pub maps: FastpathMaps,
}

impl LoadedFastpath {
    pub fn load(config: &FastpathConfig) -> Result<Self, FastpathError> {
        let mut ebpf = EbpfLoader::new()
            .override_global("CONFIG", config, true)
            .load(FASTPATH_OBJECT)
            .map_err(FastpathError::Load)?;
        let maps =
            FastpathMaps::open(|name| ebpf.take_map(name).ok_or(FastpathError::MissingMap(name)))?;
        Ok(Self { ebpf, maps })
    }

    /// The XDP program, loaded into the kernel.
    pub fn xdp(&mut self) -> Result<&mut Xdp, FastpathError> {
        let xdp: &mut Xdp = self.program(FastpathHook::Xdp.program(), FastpathHook::Xdp)?;
        load(xdp.load(), FastpathHook::Xdp)?;
        Ok(xdp)
    }

    /// The ingress TC program, loaded into the kernel.
    pub fn tc(&mut self) -> Result<&mut SchedClassifier, FastpathError> {
        self.classifier(FastpathHook::Tc.program())
    }

    /// The egress program, loaded into the kernel.
    pub fn egress(&mut self) -> Result<&mut SchedClassifier, FastpathError> {
        self.classifier(EGRESS_PROGRAM)
    }

    fn classifier(&mut self, name: &'static str) -> Result<&mut SchedClassifier, FastpathError> {
        let tc: &mut SchedClassifier = self.program(name, FastpathHook::Tc)?;
        load(tc.load(), FastpathHook::Tc)?;
        Ok(tc)
    }

    fn program<'a, T>(
        &'a mut self,
        name: &'static str,
        hook: FastpathHook,
    ) -> Result<&'a mut T, FastpathError>
    where
        &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
    {
        self.ebpf
            .program_mut(name)
            .ok_or(FastpathError::MissingProgram(name))?
            .try_into()
            .map_err(|cause| FastpathError::Program { hook, cause })
    }
}

fn load(
    loaded: Result<(), aya::programs::ProgramError>,
    hook: FastpathHook,
) -> Result<(), FastpathError> {
    match loaded {
        // Loaded already: the accessor was called before.
        Err(aya::programs::ProgramError::AlreadyLoaded) | Ok(()) => Ok(()),
        Err(cause) => Err(FastpathError::Program { hook, cause }),
    }
}

/// Typed handles on the fast path's maps.
pub struct FastpathMaps {
    pub locals: Array<MapData, LocalAddresses>,
    pub remotes: HashMap<MapData, u32, u32>,
    pub pods: HashMap<MapData, u32, PodEntry>,
    pub ports: DevMapHash<MapData>,
    pub stats: PerCpuArray<MapData, u64>,
    pub egress_ports: HashMap<MapData, u32, EgressPort>,
    pub routes: LpmTrie<MapData, u32, EgressRoute>,
    pub egress_stats: PerCpuArray<MapData, u64>,
}

impl FastpathMaps {
    fn open(
        mut take: impl FnMut(&'static str) -> Result<Map, FastpathError>,
    ) -> Result<Self, FastpathError> {
        let [
            locals,
            remotes,
            pods,
            ports,
            stats,
            egress_ports,
            routes,
            egress_stats,
        ] = MAP_NAMES;
        Ok(Self {
            locals: typed(locals, take(locals)?)?,
            remotes: typed(remotes, take(remotes)?)?,
            pods: typed(pods, take(pods)?)?,
            ports: typed(ports, take(ports)?)?,
            stats: typed(stats, take(stats)?)?,
            egress_ports: typed(egress_ports, take(egress_ports)?)?,
            routes: typed(routes, take(routes)?)?,
            egress_stats: typed(egress_stats, take(egress_stats)?)?,
        })
    }

    /// The maps of a fast path that another process holds, by the ids of
    /// [`Self::ids`]: found whatever mounts this process sees.
    pub fn from_ids(ids: &MapIds) -> Result<Self, FastpathError> {
        Self::open(|name| {
            let id = *ids.get(name).ok_or(FastpathError::MissingMap(name))?;
            let data =
                MapData::from_id(id).map_err(|cause| FastpathError::OpenMap { id, cause })?;
            Map::from_map_data(data).map_err(|cause| FastpathError::Map { name, cause })
        })
    }

    /// The maps' ids, by name.
    pub fn ids(&self) -> Result<MapIds, FastpathError> {
        // In the order of MAP_NAMES.
        let maps = [
            self.locals.map(),
            self.remotes.map(),
            self.pods.map(),
            self.ports.map(),
            self.stats.map(),
            self.egress_ports.map(),
            self.routes.map(),
            self.egress_stats.map(),
        ];
        MAP_NAMES
            .into_iter()
            .zip(maps)
            .map(|(name, data)| {
                let info = data
                    .info()
                    .map_err(|cause| FastpathError::Map { name, cause })?;
                Ok((name.to_owned(), info.id()))
            })
            .collect()
    }

    /// Each ingress counter summed over CPUs, indexed by `Counter`.
    pub fn counters(&self) -> Result<[u64; COUNTERS as usize], FastpathError> {
        totals(&self.stats, "FP_STATS")
    }

    /// One ingress counter summed over CPUs.
    pub fn counter(&self, counter: Counter) -> Result<u64, FastpathError> {
        sum_per_cpu(&self.stats, "FP_STATS", counter as u32)
    }

    /// Each egress counter summed over CPUs, indexed by `EgressCounter`.
    pub fn egress_counters(&self) -> Result<[u64; EGRESS_COUNTERS as usize], FastpathError> {
        totals(&self.egress_stats, "FP_EGRESS_STATS")
    }

    /// One egress counter summed over CPUs.
    pub fn egress_counter(&self, counter: EgressCounter) -> Result<u64, FastpathError> {
        sum_per_cpu(&self.egress_stats, "FP_EGRESS_STATS", counter as u32)
    }
}

/// Every counter of a per-CPU array of `N`, each summed over CPUs.
fn totals<const N: usize>(
    array: &PerCpuArray<MapData, u64>,
    name: &'static str,
) -> Result<[u64; N], FastpathError> {
    let mut totals = [0; N];
    for (index, total) in totals.iter_mut().enumerate() {
        *total = sum_per_cpu(array, name, index as u32)?;
    }
    Ok(totals)
}

fn sum_per_cpu(
    array: &PerCpuArray<MapData, u64>,
    name: &'static str,
    index: u32,
) -> Result<u64, FastpathError> {
    let per_cpu = array
        .get(&index, 0)
        .map_err(|cause| FastpathError::Map { name, cause })?;
    Ok(per_cpu.iter().sum())
}

fn typed<T: TryFrom<Map, Error = aya::maps::MapError>>(
    name: &'static str,
    map: Map,
) -> Result<T, FastpathError> {
    T::try_from(map).map_err(|cause| FastpathError::Map { name, cause })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_without_a_helper_is_refused_by_name() {
        let lacks_redirect_peer = |_, helper| Ok(helper != BpfHelper::BPF_FUNC_redirect_peer);
        assert_eq!(
            require_helpers(FastpathHook::Tc, lacks_redirect_peer)
                .unwrap_err()
                .to_string(),
            "this kernel lacks bpf_redirect_peer, which --hook tc needs"
        );
        assert!(require_helpers(FastpathHook::Xdp, lacks_redirect_peer).is_ok());
        let lacks_adjust_head = |_, helper| Ok(helper != BpfHelper::BPF_FUNC_xdp_adjust_head);
        assert_eq!(
            require_helpers(FastpathHook::Xdp, lacks_adjust_head)
                .unwrap_err()
                .to_string(),
            "this kernel lacks bpf_xdp_adjust_head, which --hook xdp needs"
        );
        let lacks_hash = |_, helper| Ok(helper != BpfHelper::BPF_FUNC_get_hash_recalc);
        assert_eq!(
            require_helpers(FastpathHook::Xdp, lacks_hash)
                .unwrap_err()
                .to_string(),
            "this kernel lacks bpf_get_hash_recalc, which the fast path needs"
        );
    }
}
