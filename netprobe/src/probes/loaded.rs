//! The probes object loaded, before anything is attached.

use aya::{
    Btf, Ebpf, EbpfLoader, Pod,
    maps::{Array, HashMap, MapError, PerCpuArray, PerCpuHashMap},
    programs::ProgramError,
};
use netprobe_common::{
    config::ProbeConfig,
    histogram::Histogram,
    probe::{
        Flight, HopStats, PodSlot, SLOTS, SocketRead, SocketWrite, pod_address_key, watch_bit,
    },
};

use super::{Merge, PROBES_OBJECT, ProbeError, Snapshot, empty_histogram};
use crate::path;

/// The probes object loaded with its configuration, nothing attached yet:
/// what a [`ProbeSession`] attaches, and what tests run on crafted packets
/// with BPF_PROG_TEST_RUN.
pub struct LoadedProbes {
    pub(super) ebpf: Ebpf,
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

    /// The socket hooks observe the sockets of namespace `netns`: sets its
    /// bit in the watch filter.
    pub fn watch_sockets(&mut self, netns: u32) -> Result<(), ProbeError> {
        let mut watched: Array<_, u64> = map(&mut self.ebpf, "WATCHED")?;
        let bit = watch_bit(netns);
        let map_error = |cause| ProbeError::Map {
            name: "WATCHED",
            cause,
        };
        let word = watched.get(&(bit / 64), 0).map_err(map_error)?;
        watched
            .set(bit / 64, word | 1 << (bit % 64), 0)
            .map_err(map_error)
    }

    /// Tells the probes the addresses of `pods`, whose segments they count
    /// apart.
    pub fn add_pods(&mut self, pods: &[path::Pod]) -> Result<(), ProbeError> {
        let mut addresses: HashMap<_, [u8; 16], u8> = map(&mut self.ebpf, "POD_ADDRS")?;
        for pod in pods {
            for address in &pod.addresses {
                addresses
                    .insert(pod_address_key(*address), pod.index, 0)
                    .map_err(|cause| ProbeError::Map {
                        name: "POD_ADDRS",
                        cause,
                    })?;
            }
        }
        Ok(())
    }

    /// Packets followed right now: the occupied slots of the flight table.
    pub fn flights(&self) -> Result<Vec<Flight>, ProbeError> {
        occupied(&self.ebpf, "FLIGHTS", |flight: &Flight| {
            flight.key.protocol != 0
        })
    }

    /// Socket writes remembered for the segment they go out in.
    pub fn socket_writes(&self) -> Result<Vec<SocketWrite>, ProbeError> {
        occupied(&self.ebpf, "SOCKET_WRITES", |write: &SocketWrite| {
            write.ns != 0
        })
    }

    /// Socket reads waiting for the application's answer.
    pub fn socket_reads(&self) -> Result<Vec<SocketRead>, ProbeError> {
        occupied(&self.ebpf, "SOCKET_READS", |read: &SocketRead| {
            read.socket != 0
        })
    }

    /// Frees every slot of the flight table.
    pub fn clear_flights(&mut self) -> Result<(), ProbeError> {
        let mut flights: Array<_, Flight> = map(&mut self.ebpf, "FLIGHTS")?;
        for index in 0..flights.len() {
            flights
                .set(index, Flight::default(), 0)
                .map_err(|cause| ProbeError::Map {
                    name: "FLIGHTS",
                    cause,
                })?;
        }
        Ok(())
    }

    /// The names of the object's programs.
    pub fn program_names(&self) -> impl Iterator<Item = &str> {
        self.ebpf.programs().map(|(name, _)| name)
    }

    /// The program named `name` (see `Hook::program`).
    pub fn program<'a, T>(&'a mut self, name: &'static str) -> Result<&'a mut T, ProbeError>
    where
        &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
    {
        program_mut(&mut self.ebpf, name)
    }

    /// Histograms and join counts so far, summed over CPUs.
    pub fn snapshot(&self) -> Result<Snapshot, ProbeError> {
        let histograms: PerCpuArray<_, Histogram> = map_ref(&self.ebpf, "HISTOGRAMS")?;
        let hop_stats: PerCpuArray<_, HopStats> = map_ref(&self.ebpf, "HOP_STATS")?;
        let mut snapshot = Snapshot::default();
        for index in 0..SLOTS as u32 {
            let map_error = |name| move |cause| ProbeError::Map { name, cause };
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
        let pod_histograms: PerCpuHashMap<_, PodSlot, Histogram> =
            map_ref(&self.ebpf, "POD_HISTOGRAMS")?;
        for entry in pod_histograms.iter() {
            let (key, cpus) = entry.map_err(|cause| ProbeError::Map {
                name: "POD_HISTOGRAMS",
                cause,
            })?;
            let mut histogram = empty_histogram();
            for cpu in cpus.iter() {
                histogram.merge(cpu);
            }
            snapshot.add_pod_histogram(key, &histogram);
        }
        Ok(snapshot)
    }
}

/// The entries of the array map `name` that `is_occupied`.
fn occupied<T: Pod>(
    ebpf: &Ebpf,
    name: &'static str,
    is_occupied: impl Fn(&T) -> bool,
) -> Result<Vec<T>, ProbeError> {
    let array: Array<_, T> = map_ref(ebpf, name)?;
    let mut occupied = Vec::new();
    for entry in array.iter() {
        let entry = entry.map_err(|cause| ProbeError::Map { name, cause })?;
        if is_occupied(&entry) {
            occupied.push(entry);
        }
    }
    Ok(occupied)
}

fn program_mut<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, ProbeError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(ProbeError::Missing(name))?
        .try_into()
        .map_err(|cause| ProbeError::Program {
            program: name,
            cause,
        })
}

fn map<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<T, ProbeError>
where
    T: TryFrom<&'a mut aya::maps::Map, Error = MapError>,
{
    ebpf.map_mut(name)
        .ok_or(ProbeError::Missing(name))?
        .try_into()
        .map_err(|cause| ProbeError::Map { name, cause })
}

fn map_ref<'a, T>(ebpf: &'a Ebpf, name: &'static str) -> Result<T, ProbeError>
where
    T: TryFrom<&'a aya::maps::Map, Error = MapError>,
{
    ebpf.map(name)
        .ok_or(ProbeError::Missing(name))?
        .try_into()
        .map_err(|cause| ProbeError::Map { name, cause })
}
