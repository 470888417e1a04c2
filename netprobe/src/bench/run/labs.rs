//! The bench's runs: every mode's lab up at once, and the load at each rate
//! and size run once alone (latency and system metrics) and once with the
//! probes on both nodes (the per-hop breakdown, the node link and the
//! median request), each run in slices for which the modes take turns.

use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use super::{
    bench_prefix, interrupt,
    load::{Load, run_load},
    max_rate,
    plan::Plan,
    progress::Progress,
    system::{self, Counters},
    tune,
};
use crate::{
    bench::{
        SLICES, STUDY_ORDER,
        analysis::{
            JoinedRequests, MedianRequest, ModeResults, NodeLinkLatency, NodeSamples, PointResults,
            RequestExemplar, distribution,
        },
    },
    lab::{Lab, LabError, LabGuard, LabSpec, Mode, ResponseSize},
    load::LoadResult,
    probes::{Mark, NodeProbes, ProbeOptions, SampledFlight},
    report::Report,
};

/// Before the runs, the machine is left to finish what building the labs
/// started, until each CPU idles this share of one window.
const SETTLED_IDLE: f64 = 0.95;
const SETTLE_WINDOW: Duration = Duration::from_millis(250);
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// One mode's lab, up for the whole bench, with the probes loaded on both
/// nodes and paused outside its probed slices.
struct ModeLab {
    mode: Mode,
    /// Where its results are among all the modes'.
    index: usize,
    lab: LabGuard,
    namespaces: Vec<String>,
    client: NodeProbes,
    server: NodeProbes,
}

/// What a run measured, from one slice or several added up.
struct Measured {
    load: LoadResult,
    system: Counters,
    seconds: f64,
    /// The packets the client's and the server's probes sampled.
    samples: [Vec<SampledFlight>; 2],
}

impl Measured {
    /// A run from its slices.
    fn sum(slices: Vec<Measured>) -> Measured {
        let mut slices = slices.into_iter();
        let mut run = slices.next().expect("a run has slices");
        for slice in slices {
            run.load.add(&slice.load);
            run.system.add(&slice.system);
            run.seconds += slice.seconds;
            for (all, more) in run.samples.iter_mut().zip(slice.samples) {
                all.extend(more);
            }
        }
        run
    }
}

impl ModeLab {
    fn new(mode: Mode, index: usize, lab: LabGuard, probes: &ProbeOptions) -> Result<Self> {
        let namespaces = lab
            .namespaces()
            .into_iter()
            .map(|(_, netns)| netns.to_owned())
            .collect();
        let mut client = NodeProbes::attach(&lab.nodes()[0].netns, probes)?;
        let mut server = NodeProbes::attach(&lab.nodes()[1].netns, probes)?;
        client.pause();
        server.pause();
        Ok(Self {
            mode,
            index,
            lab,
            namespaces,
            client,
            server,
        })
    }

    fn resume(&mut self) -> Result<()> {
        self.client.resume()?;
        self.server.resume()
    }

    fn pause(&mut self) {
        self.client.pause();
        self.server.pause();
    }

    /// One slice of the load at `rate` and `size`, with the probes on or
    /// not. After a probed slice the probes on the nodes' own devices stay
    /// until [`Self::pause`]: idle while the other modes take their turns,
    /// they cost those nothing, and detaching takes time.
    fn slice(
        &mut self,
        load: &Load,
        size: ResponseSize,
        rate: f64,
        probed: bool,
    ) -> Result<Measured> {
        if !probed {
            return self.measure(load, size, rate);
        }
        self.resume()?;
        let measured = self.measure(load, size, rate);
        self.client.quiesce();
        self.server.quiesce();
        let samples = [self.client.take_samples(), self.server.take_samples()];
        Ok(Measured {
            samples,
            ..measured?
        })
    }

    fn measure(&self, load: &Load, size: ResponseSize, rate: f64) -> Result<Measured> {
        let namespaces: Vec<&str> = self.namespaces.iter().map(String::as_str).collect();
        let before = Counters::read(&namespaces)?;
        let started = Instant::now();
        let config = load.slice_config(self.lab.server_url(size), rate);
        let load = run_load(self.lab.client_netns(), config)?;
        let seconds = started.elapsed().as_secs_f64();
        let system = Counters::read(&namespaces)?.since(&before);
        Ok(Measured {
            load,
            system,
            seconds,
            samples: Default::default(),
        })
    }

    /// What a rate and size measured, from its slices alone and probed,
    /// the probes' breakdown since `marks`.
    fn point(
        &mut self,
        rate: f64,
        size: ResponseSize,
        marks: &(Mark, Mark),
        alone: Vec<Measured>,
        probed: Vec<Measured>,
    ) -> Result<PointResults> {
        let slice_p50s = |slices: &[Measured]| {
            slices
                .iter()
                .map(|slice| slice.load.report.latency.p50_ns)
                .collect()
        };
        let (slice_p50_ns, probed_slice_p50_ns) = (slice_p50s(&alone), slice_p50s(&probed));
        let joined: Vec<JoinedRequests> = probed
            .iter()
            .map(|slice| {
                let [client, server] = &slice.samples;
                JoinedRequests::join(
                    &samples(&self.client, client),
                    &samples(&self.server, server),
                )
            })
            .collect();
        let median_request =
            MedianRequest::of_slices(probed.iter().zip(&joined).map(|(slice, joined)| {
                let report = &slice.load.report;
                (report.latency.p50_ns, joined.median(report.send_lag.p50_ns))
            }));
        let exemplars = RequestExemplar::of_run(&joined);
        let (alone, probed) = (Measured::sum(alone), Measured::sum(probed));
        let percentiles = distribution(alone.load.histogram());
        let client = Report::of_node(&self.client, &marks.0, probed.seconds)?;
        let server = Report::of_node(&self.server, &marks.1, probed.seconds)?;
        let [client_samples, server_samples] = &probed.samples;
        Ok(PointResults {
            rate,
            size: size.nominal_len(),
            load: alone.load.report,
            slice_p50_ns,
            percentiles,
            system: alone.system.metrics(alone.seconds),
            probed_load: probed.load.report,
            probed_slice_p50_ns,
            client,
            server,
            node_link: NodeLinkLatency::join(client_samples, server_samples),
            median_request,
            exemplars,
        })
    }
}

/// `flights` sampled on `node`, with the hops they crossed.
fn samples<'a>(node: &'a NodeProbes, flights: &'a [SampledFlight]) -> NodeSamples<'a> {
    NodeSamples {
        path: node.session().path(),
        flights,
    }
}

/// Where `mode` takes its turn: the study's order first, so that the modes
/// the ranking sets side by side run next to each other in time (and host,
/// which every mode is compared with, first and last), then the others.
fn turn(mode: Mode) -> usize {
    STUDY_ORDER
        .iter()
        .position(|&ranked| ranked == mode)
        .unwrap_or(STUDY_ORDER.len())
}

/// Runs `slice` on every lab, [`SLICES`] times: in order, then in reverse,
/// and so on; returns each lab's slices. The machine drifts by tens of
/// microseconds over minutes: taking turns, every mode sees the same drift,
/// and a steady one cancels.
fn take_turns<L, M>(
    labs: &mut [L],
    mut slice: impl FnMut(&mut L) -> Result<M>,
) -> Result<Vec<Vec<M>>> {
    let mut slices: Vec<Vec<M>> = labs.iter().map(|_| Vec::new()).collect();
    for round in 0..SLICES {
        let mut order: Vec<usize> = (0..labs.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for index in order {
            slices[index].push(slice(&mut labs[index])?);
        }
    }
    Ok(slices)
}

/// Every mode's lab, all up for the whole bench, each under its own prefix,
/// and what each has measured so far.
pub struct Bench {
    labs: Vec<ModeLab>,
    results: Vec<ModeResults>,
}

impl Bench {
    /// Builds every mode's lab (`tune_labs`: with the study's tuning) and
    /// waits for the machine to settle. A mode this kernel cannot build
    /// (ipvlan) is recorded as unavailable, its `runs` counted as done.
    pub fn build(
        modes: &[Mode],
        tune_labs: bool,
        runs: usize,
        probes: &ProbeOptions,
        progress: &mut Progress,
    ) -> Result<Self> {
        let mut results = Vec::new();
        let mut labs = Vec::new();
        for &mode in modes {
            progress.note(&format!("building the {mode} lab"));
            let built = {
                let _change = interrupt::lab_change();
                LabGuard::up(&LabSpec::new(bench_prefix(mode), mode))
            };
            let lab = match built {
                Ok(lab) => lab,
                Err(error @ LabError::IpvlanUnavailable) => {
                    progress.skip(mode, runs);
                    results.push(ModeResults::new(mode, Some(error.to_string())));
                    continue;
                }
                Err(error) => {
                    return Err(error).with_context(|| format!("building the {mode} lab"));
                }
            };
            let mut mode_results = ModeResults::new(mode, None);
            if tune_labs {
                mode_results.tuning = tune::tune_lab(&lab)?;
            }
            labs.push(ModeLab::new(mode, results.len(), lab, probes)?);
            results.push(mode_results);
        }
        // Modes the ranking compares take their turns one after the other.
        labs.sort_by_key(|lab| turn(lab.mode));
        if !system::settle(SETTLED_IDLE, SETTLE_WINDOW, SETTLE_TIMEOUT)? {
            log::warn!(
                "the CPUs were still busy {SETTLE_TIMEOUT:?} after the labs were built: the first runs may be slower"
            );
        }
        Ok(Self { labs, results })
    }

    /// `mode`'s lab, if the bench has one.
    pub fn lab(&self, mode: Mode) -> Option<&Lab> {
        self.labs
            .iter()
            .find(|lab| lab.mode == mode)
            .map(|lab| &*lab.lab)
    }

    /// Runs `plan` in every lab, the modes taking turns; `save` gets the
    /// results after every rate and size.
    pub fn run(
        &mut self,
        plan: &Plan,
        progress: &mut Progress,
        mut save: impl FnMut(&[ModeResults]) -> Result<()>,
    ) -> Result<()> {
        let Plan {
            rates,
            sizes,
            load,
            find_max,
        } = plan;
        let Self { labs, results } = self;
        if *find_max {
            for lab in labs.iter_mut() {
                progress.note(&format!("finding the highest rate {} sustains", lab.mode));
                lab.resume()?;
                let search =
                    max_rate::search(&lab.lab, sizes[0], &max_rate::rate_search_load(load));
                lab.pause();
                results[lab.index].max_rate = Some(search?);
            }
        }
        let points = sizes
            .iter()
            .flat_map(|&size| rates.iter().map(move |&rate| (size, rate)));
        for (size, rate) in points {
            // The mode's own latency and system load, with nothing
            // attached: the probes' cost differs between modes (more
            // hops, more runs).
            let alone = take_turns(labs, |lab| {
                progress.start_run(lab.mode, rate, size.nominal_len(), false);
                lab.slice(load, size, rate, false)
            })?;
            let marks = labs
                .iter_mut()
                .map(|lab| Ok((lab.client.mark()?, lab.server.mark()?)))
                .collect::<Result<Vec<_>>>()?;
            let probed = take_turns(labs, |lab| {
                progress.start_run(lab.mode, rate, size.nominal_len(), true);
                lab.slice(load, size, rate, true)
            });
            labs.iter_mut().for_each(ModeLab::pause);
            let probed = probed?;
            for ((lab, marks), (alone, probed)) in labs
                .iter_mut()
                .zip(marks)
                .zip(alone.into_iter().zip(probed))
            {
                let point = lab.point(rate, size, &marks, alone, probed)?;
                results[lab.index].points.push(point);
            }
            save(results)?;
        }
        Ok(())
    }

    /// Removes the labs; what the modes measured.
    pub fn down(self) -> Result<Vec<ModeResults>> {
        for lab in self.labs {
            let _change = interrupt::lab_change();
            lab.lab
                .down()
                .with_context(|| format!("removing the {} lab", lab.mode))?;
        }
        Ok(self.results)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_take_turns_in_order_then_in_reverse() {
        let mut labs = ['a', 'b', 'c'];
        let mut order = String::new();
        let slices = take_turns(&mut labs, |lab| {
            order.push(*lab);
            Ok(order.len())
        })
        .unwrap();
        assert_eq!(order, "abccbaabccba");
        // Each lab's slices, centred on the same instant.
        assert_eq!(slices, [[1, 6, 7, 12], [2, 5, 8, 11], [3, 4, 9, 10]]);
    }
}
