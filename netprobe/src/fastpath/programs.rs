//! The fast path's eBPF object: the kernel helpers it needs, loading it for
//! one vxlan device, and typed handles on its maps, from the loaded object
//! or from their pins.

use std::path::Path;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, DevMapHash, HashMap, IterableMap as _, Map, MapData, PerCpuArray},
    programs::{ProgramType, SchedClassifier, Xdp},
    sys::{BpfHelper, is_helper_supported},
};
use netprobe_common::fastpath::{COUNTERS, Counter, FastpathConfig, LocalAddresses, PodEntry};

use super::{FastpathError, FastpathHook};

/// The fast path object, built by `cargo xtask build-ebpf`.
pub static FASTPATH_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netprobe-fastpath.o"));

/// The maps, in the order they are pinned and opened.
const MAP_NAMES: [&str; 5] = ["FP_LOCALS", "FP_REMOTES", "FP_PODS", "FP_PORTS", "FP_STATS"];

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

/// Fails, naming the first missing helper, unless `supported` (the kernel's
/// answer, [`is_helper_supported`]) has every helper `hook` calls.
pub fn require_helpers(
    hook: FastpathHook,
    supported: impl Fn(ProgramType, BpfHelper) -> Result<bool, aya::programs::ProgramError>,
) -> Result<(), FastpathError> {
    let (program_type, helpers) = hook.helpers();
    for &(helper, name) in helpers {
        let present =
            supported(program_type, helper).map_err(|source| FastpathError::HelperProbe {
                helper: name,
                source,
            })?;
        if !present {
            return Err(FastpathError::MissingHelper { helper: name, hook });
        }
    }
    Ok(())
}

/// [`require_helpers`] on the running kernel.
pub fn require_kernel_helpers(hook: FastpathHook) -> Result<(), FastpathError> {
    require_helpers(hook, is_helper_supported)
}

/// The object loaded for one vxlan device, programs not yet in the kernel:
/// what `enable` attaches, and what tests run on crafted frames with
/// BPF_PROG_TEST_RUN.
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
        let xdp: &mut Xdp = self.program(FastpathHook::Xdp)?;
        load(xdp.load(), FastpathHook::Xdp)?;
        Ok(xdp)
    }

    /// The TC program, loaded into the kernel.
    pub fn tc(&mut self) -> Result<&mut SchedClassifier, FastpathError> {
        let tc: &mut SchedClassifier = self.program(FastpathHook::Tc)?;
        load(tc.load(), FastpathHook::Tc)?;
        Ok(tc)
    }

    fn program<'a, T>(&'a mut self, hook: FastpathHook) -> Result<&'a mut T, FastpathError>
    where
        &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
    {
        self.ebpf
            .program_mut(hook.program())
            .ok_or(FastpathError::MissingProgram(hook.program()))?
            .try_into()
            .map_err(|source| FastpathError::Program { hook, source })
    }
}

fn load(
    loaded: Result<(), aya::programs::ProgramError>,
    hook: FastpathHook,
) -> Result<(), FastpathError> {
    match loaded {
        // Loaded already: the accessor was called before.
        Err(aya::programs::ProgramError::AlreadyLoaded) | Ok(()) => Ok(()),
        Err(source) => Err(FastpathError::Program { hook, source }),
    }
}

/// Typed handles on the fast path's maps.
pub struct FastpathMaps {
    pub locals: Array<MapData, LocalAddresses>,
    pub remotes: HashMap<MapData, u32, u32>,
    pub pods: HashMap<MapData, u32, PodEntry>,
    pub ports: DevMapHash<MapData>,
    pub stats: PerCpuArray<MapData, u64>,
}

impl FastpathMaps {
    fn open(
        mut take: impl FnMut(&'static str) -> Result<Map, FastpathError>,
    ) -> Result<Self, FastpathError> {
        let [locals, remotes, pods, ports, stats] = MAP_NAMES;
        Ok(Self {
            locals: typed(locals, take(locals)?)?,
            remotes: typed(remotes, take(remotes)?)?,
            pods: typed(pods, take(pods)?)?,
            ports: typed(ports, take(ports)?)?,
            stats: typed(stats, take(stats)?)?,
        })
    }

    /// The maps pinned in `dir` by [`Self::pin`].
    pub fn from_pins(dir: &Path) -> Result<Self, FastpathError> {
        Self::open(|name| {
            let path = dir.join(name);
            let data = MapData::from_pin(&path).map_err(|source| FastpathError::OpenPin {
                path: path.clone(),
                source,
            })?;
            Map::from_map_data(data).map_err(|source| FastpathError::Map { name, source })
        })
    }

    /// Pins every map in `dir`, which must exist on a bpffs.
    pub fn pin(&self, dir: &Path) -> Result<(), FastpathError> {
        let [locals, remotes, pods, ports, stats] = MAP_NAMES;
        for (name, data) in [
            (locals, self.locals.map()),
            (remotes, self.remotes.map()),
            (pods, self.pods.map()),
            (ports, self.ports.map()),
            (stats, self.stats.map()),
        ] {
            let path = dir.join(name);
            data.pin(&path)
                .map_err(|source| FastpathError::Pin { path, source })?;
        }
        Ok(())
    }

    /// Pin file names, for removal.
    pub fn pin_names() -> [&'static str; 5] {
        MAP_NAMES
    }

    /// Each counter summed over CPUs, indexed by `Counter`.
    pub fn counters(&self) -> Result<[u64; COUNTERS as usize], FastpathError> {
        let mut totals = [0; COUNTERS as usize];
        for (counter, total) in Counter::ALL.into_iter().zip(totals.iter_mut()) {
            *total = self.counter(counter)?;
        }
        Ok(totals)
    }

    /// One counter summed over CPUs.
    pub fn counter(&self, counter: Counter) -> Result<u64, FastpathError> {
        let per_cpu =
            self.stats
                .get(&(counter as u32), 0)
                .map_err(|source| FastpathError::Map {
                    name: "FP_STATS",
                    source,
                })?;
        Ok(per_cpu.iter().sum())
    }
}

fn typed<T: TryFrom<Map, Error = aya::maps::MapError>>(
    name: &'static str,
    map: Map,
) -> Result<T, FastpathError> {
    T::try_from(map).map_err(|source| FastpathError::Map { name, source })
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
    }
}
