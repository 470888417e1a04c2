//! `netprobe lab overhead`: what the probes cost, on the lab's own modes.
//!
//! - Throughput: wrk against flannel-vxlan and host, saturated, without
//!   probes, with their hooks only, with the default settings and with
//!   every packet followed, the probes on the server's node; the setups
//!   take turns, round after round.
//! - The cost to traffic nothing watches: host loaded while the probes
//!   watch flannel-vxlan's server node.
//! - Each program's runs per request and time per run, from the kernel's
//!   bpf statistics, less what the statistics add to a run.
//! - What following one packet in N costs in accuracy: each segment's p50
//!   and p99 against every packet's, over the same traffic.

mod accuracy;
mod cost;
pub mod rounds;

use std::{
    fmt::Write as _,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::Duration,
};

use anyhow::{Context as _, Result, bail};
use signal_hook::consts::{SIGINT, SIGTERM};

use self::{accuracy::SegmentError, cost::Calibration, rounds::Throughput};
use crate::{
    bench::run_load,
    lab::{
        Lab, LabGuard, LabSpec, Mode, ResponseSize, WRK_CONNECTIONS, WRK_THREADS, unique_prefix,
    },
    load::LoadConfig,
    privilege::require_bpf_privileges,
    probes::{FollowArg, NodeProbes, ProbeOptions},
    report::{Report, format_ns},
};

#[derive(clap::Args, Debug)]
pub struct OverheadArgs {
    /// Rounds of throughput runs: each setup runs once a round, the setups
    /// in order, then in reverse on the next round.
    #[arg(long, default_value_t = 21)]
    pub rounds: usize,
    /// Length of each throughput run (whole seconds).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    // The follow rate measured as the default setting.
    #[command(flatten)]
    pub follow: FollowArg,
    /// Length of the run whose percentiles compare the packets followed
    /// with every packet.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub accuracy_duration: Duration,
}

/// Responses of the lab's small size: the most packets per byte.
const SIZE: ResponseSize = ResponseSize::Small;

pub fn run(args: &OverheadArgs) -> Result<()> {
    require_bpf_privileges()?;
    if args.rounds == 0 {
        bail!("--rounds must be 1 or more");
    }
    if args.duration < Duration::from_secs(1) || args.accuracy_duration < Duration::from_secs(1) {
        bail!("runs last at least 1s (wrk counts whole seconds)");
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("handling Ctrl-C")?;
    }
    let overhead = Overhead {
        args,
        stop,
        vxlan: up(Mode::FlannelVxlan)?,
        host: up(Mode::Host)?,
    };
    let text = overhead.measure()?;
    print!("{text}");
    let Overhead { vxlan, host, .. } = overhead;
    vxlan.down()?;
    host.down()?;
    Ok(())
}

fn up(mode: Mode) -> Result<LabGuard> {
    LabGuard::up(&LabSpec::new(unique_prefix("npoh"), mode))
        .with_context(|| format!("building the {mode} lab"))
}

struct Overhead<'a> {
    args: &'a OverheadArgs,
    /// Set by Ctrl-C or SIGTERM: the labs go down after the current run.
    stop: Arc<AtomicBool>,
    vxlan: LabGuard,
    host: LabGuard,
}

/// Probes with `options` on `lab`'s server node.
fn attach(lab: &Lab, options: &ProbeOptions) -> Result<NodeProbes> {
    NodeProbes::attach(&lab.nodes()[1].netns, options)
}

/// Hooks-only sessions attached at once in the "hooks only, 8 sets" setup:
/// the hooks' cost eight times over stands above this VM's noise, and an
/// eighth of it is one set's.
const HOOK_SETS: usize = 8;

/// A lab's probes in the setups of a throughput comparison, each paused
/// except while its setup runs.
struct LabProbes {
    hooks_only: NodeProbes,
    hook_sets: Vec<NodeProbes>,
    followed: NodeProbes,
    every: NodeProbes,
}

impl LabProbes {
    fn attach(
        lab: &Lab,
        hooks_only: &ProbeOptions,
        followed: &ProbeOptions,
        every: &ProbeOptions,
    ) -> Result<Self> {
        let mut probes = Self {
            hooks_only: attach(lab, hooks_only)?,
            hook_sets: (0..HOOK_SETS)
                .map(|_| attach(lab, hooks_only))
                .collect::<Result<_>>()?,
            followed: attach(lab, followed)?,
            every: attach(lab, every)?,
        };
        for session in probes.sessions() {
            session.pause();
        }
        Ok(probes)
    }

    fn sessions(&mut self) -> impl Iterator<Item = &mut NodeProbes> {
        [&mut self.hooks_only, &mut self.followed, &mut self.every]
            .into_iter()
            .chain(&mut self.hook_sets)
    }
}

/// Whose server node the probes of a throughput comparison watch.
enum Watched {
    Vxlan,
    Host,
}

/// One throughput comparison: a lab loaded under each setup in turn.
struct Setups<'a> {
    title: String,
    lab: &'a Lab,
    /// Each setup's name and the probes it attaches (none: the baseline).
    setups: Vec<(String, Vec<&'a mut NodeProbes>)>,
}

impl Overhead<'_> {
    fn measure(&self) -> Result<String> {
        let args = self.args;
        let mut out = format!(
            "netprobe lab overhead: wrk -t{WRK_THREADS} -c{WRK_CONNECTIONS} against the lab's \
             nginx ({} B responses), probes on the server's node\n",
            SIZE.response_len()
        );
        let follow = ProbeOptions {
            follow_one_in: args.follow.follow_one_in,
            ..ProbeOptions::default()
        };
        let every = ProbeOptions {
            follow_one_in: 1,
            ..ProbeOptions::default()
        };
        // What the agent runs: each pod's segments counted apart.
        let by_pod = ProbeOptions {
            by_pod: true,
            ..follow.clone()
        };
        // The same hooks with programs that return at once: what the hooks
        // themselves cost.
        let hooks_only = ProbeOptions {
            hooks_only: true,
            ..follow.clone()
        };
        let followed_name = format!("following 1 in {}", args.follow.follow_one_in);
        let by_pod_name = format!("{followed_name} by pod");

        writeln!(
            out,
            "\nthroughput: {} rounds of {} s, the setups in turn (in order, then in reverse); \
             ratios to no probes taken round by round",
            args.rounds,
            args.duration.as_secs()
        )?;
        // Each lab's probes with the hooks only (one set and eight), at the
        // default follow rate and following every packet, and
        // flannel-vxlan's also by pod (what the agent runs); paused except
        // while their setup runs.
        let mut vxlan_probes = LabProbes::attach(&self.vxlan, &hooks_only, &follow, &every)?;
        let mut host_probes = LabProbes::attach(&self.host, &hooks_only, &follow, &every)?;
        let mut vxlan_by_pod = attach(&self.vxlan, &by_pod)?;
        vxlan_by_pod.pause();
        let defaults_mark = vxlan_probes.followed.mark()?;
        for (title, lab, watched, with_by_pod) in [
            ("flannel-vxlan", &self.vxlan, Watched::Vxlan, true),
            ("host", &self.host, Watched::Host, false),
            (
                "host, while the probes watch flannel-vxlan's server node (its traffic unwatched)",
                &self.host,
                Watched::Vxlan,
                false,
            ),
        ] {
            let probes = match watched {
                Watched::Vxlan => &mut vxlan_probes,
                Watched::Host => &mut host_probes,
            };
            // "again" is the control: its ratio to no probes is the
            // benchmark's own error, without any probe.
            let mut setups = vec![
                ("no probes".to_owned(), Vec::new()),
                ("no probes, again".to_owned(), Vec::new()),
                ("hooks only".to_owned(), vec![&mut probes.hooks_only]),
                (
                    format!("hooks only, {HOOK_SETS} sets"),
                    probes.hook_sets.iter_mut().collect(),
                ),
                (followed_name.clone(), vec![&mut probes.followed]),
            ];
            if with_by_pod {
                setups.push((by_pod_name.clone(), vec![&mut vxlan_by_pod]));
            }
            setups.push(("every packet".to_owned(), vec![&mut probes.every]));
            self.throughput(
                &mut out,
                Setups {
                    title: title.to_owned(),
                    lab,
                    setups,
                },
            )?;
        }
        let defaults_report = Report::of_node(&vxlan_probes.followed, &defaults_mark, 0.0)?;
        drop((vxlan_probes, host_probes, vxlan_by_pod));

        writeln!(
            out,
            "\nper program, from the kernel's bpf statistics over {} s of flannel-vxlan \
             saturated",
            args.duration.as_secs()
        )?;
        let followed_cost = self.calibrate(&self.vxlan, &self.vxlan, &follow)?;
        let every_cost = self.calibrate(&self.vxlan, &self.vxlan, &every)?;
        write_costs(&mut out, &followed_name, &followed_cost, &every_cost)?;
        let by_pod_cost = self.calibrate(&self.vxlan, &self.vxlan, &by_pod)?;
        writeln!(
            out,
            "  {by_pod_name}: {:.2} us a request, less stats ({:.1}% of {:.1} us); \
             per run, less stats: {}",
            by_pod_cost.ns_per_request() / 1e3,
            by_pod_cost.cpu_share() * 100.0,
            by_pod_cost.cpu_ns_per_request / 1e3,
            by_pod_cost
                .programs
                .iter()
                .map(|program| format!("{} {:.0} ns", program.program, program.program_ns_per_run))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
        let unwatched = self.calibrate(&self.vxlan, &self.host, &follow)?;
        write_unwatched(&mut out, &unwatched)?;

        self.accuracy(&mut out, &defaults_report, &followed_name)?;
        Ok(out)
    }

    fn check_stop(&self) -> Result<()> {
        if self.stop.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        Ok(())
    }

    /// wrk's rate on `lab` for one run.
    fn rate(&self, lab: &Lab, duration: Duration) -> Result<f64> {
        self.check_stop()?;
        Ok(lab.wrk_rate(SIZE, duration)?)
    }

    fn throughput(&self, out: &mut String, mut setups: Setups) -> Result<()> {
        let runs = rounds::interleave(self.args.rounds, setups.setups.len(), |setup| {
            let (_, sessions) = &mut setups.setups[setup];
            for session in sessions.iter_mut() {
                session.resume()?;
            }
            let rate = self.rate(setups.lab, self.args.duration);
            for session in sessions.iter_mut() {
                session.pause();
            }
            rate
        })?;
        writeln!(out, "  {}", setups.title)?;
        for ((name, sessions), Throughput { median, ratio }) in
            setups.setups.iter().zip(rounds::throughputs(&runs))
        {
            write!(out, "    {name:<26} {median:>9.0} req/s")?;
            if let Some(ratio) = ratio {
                let lost = (1.0 - ratio.median) * 100.0;
                write!(
                    out,
                    "   {:.3} of no probes ({:.3}..{:.3}): {lost:.1}% lost",
                    ratio.median, ratio.min, ratio.max,
                )?;
                if sessions.len() > 1 {
                    write!(out, ", {:.1}% a set", lost / sessions.len() as f64)?;
                }
            }
            writeln!(out)?;
        }
        Ok(())
    }

    /// The statistics of probes on `watched` with `options` while `loaded`
    /// is loaded.
    fn calibrate(
        &self,
        watched: &Lab,
        loaded: &Lab,
        options: &ProbeOptions,
    ) -> Result<Calibration> {
        let with_cost = ProbeOptions {
            program_cost: true,
            ..options.clone()
        };
        let mut probes = attach(watched, &with_cost)?;
        // Their twin on the same hooks, whose programs return at once: its
        // time per run is what the statistics themselves add.
        let mut hooks_only = attach(
            watched,
            &ProbeOptions {
                hooks_only: true,
                ..with_cost
            },
        )?;
        let duration = self.args.duration;
        cost::calibrate(&mut probes, &mut hooks_only, || {
            Ok(self.rate(loaded, duration)? * duration.as_secs_f64())
        })
    }

    /// Every packet followed on flannel-vxlan's server node, the packets
    /// the default follow rate picks sent whole to userspace: each
    /// segment's percentiles over those against every packet's, beside the
    /// coverage in the report at the default settings (`defaults`).
    fn accuracy(&self, out: &mut String, defaults: &Report, followed_name: &str) -> Result<()> {
        let mut every = attach(
            &self.vxlan,
            &ProbeOptions {
                follow_one_in: 1,
                sample_every: self.args.follow.follow_one_in,
                ..ProbeOptions::default()
            },
        )?;
        let duration = self.args.accuracy_duration;
        let saturated = accuracy_run(&mut every, defaults, duration, || {
            self.rate(&self.vxlan, duration)
        })?;
        write_accuracy(out, followed_name, duration, &saturated)?;
        let url = self.vxlan.server_url(SIZE);
        for share in ACCURACY_SHARES {
            self.check_stop()?;
            let rate = (share * saturated.rate).round();
            let config = LoadConfig::new(url.clone(), rate, duration);
            let run = accuracy_run(&mut every, defaults, duration, || {
                let load = run_load(self.vxlan.client_netns(), config)?;
                Ok(load.report.achieved_rate)
            })?;
            write_accuracy_summary(out, share, &run)?;
        }
        Ok(())
    }
}

/// The rates, as shares of the saturated one, at which the accuracy is
/// measured too: the bench's lowest (`--rates auto`).
const ACCURACY_SHARES: [f64; 2] = [0.1, 0.3];

/// One accuracy run: its rate, each segment's error, and how many flights
/// the default follow rate picked.
struct AccuracyRun {
    rate: f64,
    segments: Vec<SegmentError>,
    picked: usize,
}

/// `load` (which returns its rate) with `every` following every packet and
/// sending the default follow rate's picks whole.
fn accuracy_run(
    every: &mut NodeProbes,
    defaults: &Report,
    duration: Duration,
    load: impl FnOnce() -> Result<f64> + Send,
) -> Result<AccuracyRun> {
    let mark = every.mark()?;
    // The ring holds seconds of samples: it is drained while the load runs.
    let (rate, picked) = thread::scope(|scope| {
        let load = scope.spawn(load);
        let mut picked = Vec::new();
        while !load.is_finished() {
            picked.extend(every.take_samples());
            thread::sleep(DRAIN_INTERVAL);
        }
        picked.extend(every.take_samples());
        let rate = load
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (rate, picked)
    });
    let every_report = Report::of_node(every, &mark, duration.as_secs_f64())?;
    Ok(AccuracyRun {
        rate: rate?,
        segments: accuracy::compare(defaults, &every_report, every.session().path(), &picked),
        picked: picked.len(),
    })
}

/// How often the sampled flights are taken from the ring during a run.
const DRAIN_INTERVAL: Duration = Duration::from_millis(100);

fn write_costs(
    out: &mut String,
    followed_name: &str,
    followed: &Calibration,
    every: &Calibration,
) -> Result<()> {
    writeln!(
        out,
        "  \"less stats\": less what the statistics add, the time per run of the same program \
         returning at once on the same hook"
    )?;
    writeln!(
        out,
        "    {:<15} {:<24} {:>12}   {:<26}   {:<26}",
        "program",
        "hook",
        "runs/request",
        format!("ns/run, {followed_name}"),
        "ns/run, every packet",
    )?;
    writeln!(
        out,
        "    {:<15} {:<24} {:>12}   {:>12} {:>13}   {:>12} {:>13}",
        "", "", "", "stats", "less stats", "stats", "less stats"
    )?;
    for program in &followed.programs {
        let every = every
            .programs
            .iter()
            .find(|other| other.program == program.program);
        writeln!(
            out,
            "    {:<15} {:<24} {:>12.2}   {:>12.0} {:>13.0}   {:>12.0} {:>13.0}",
            program.program,
            program.hook,
            program.runs_per_request,
            program.ns_per_run,
            program.program_ns_per_run,
            every.map_or(f64::NAN, |every| every.ns_per_run),
            every.map_or(f64::NAN, |every| every.program_ns_per_run),
        )?;
    }
    writeln!(
        out,
        "  the programs' time per request, less stats: {:.2} us {followed_name} ({:.1}% of the \
         {:.1} us of CPU time a request takes), {:.2} us every packet ({:.1}% of {:.1} us)",
        followed.ns_per_request() / 1e3,
        followed.cpu_share() * 100.0,
        followed.cpu_ns_per_request / 1e3,
        every.ns_per_request() / 1e3,
        every.cpu_share() * 100.0,
        every.cpu_ns_per_request / 1e3
    )?;
    Ok(())
}

fn write_unwatched(out: &mut String, unwatched: &Calibration) -> Result<()> {
    writeln!(
        out,
        "  host loaded, the probes on flannel-vxlan's server node: what its unwatched traffic runs"
    )?;
    for program in &unwatched.programs {
        writeln!(
            out,
            "    {:<15} {:<24} {:>12.2} runs/request {:>6.0} ns/run ({:.0} less stats)",
            program.program,
            program.hook,
            program.runs_per_request,
            program.ns_per_run,
            program.program_ns_per_run
        )?;
    }
    writeln!(
        out,
        "  the programs' time per unwatched request, less stats: {:.0} ns ({:.2}% of the {:.1} us \
         of CPU time a request takes)",
        unwatched.ns_per_request(),
        unwatched.cpu_share() * 100.0,
        unwatched.cpu_ns_per_request / 1e3
    )?;
    Ok(())
}

fn write_accuracy(
    out: &mut String,
    followed_name: &str,
    duration: Duration,
    run: &AccuracyRun,
) -> Result<()> {
    writeln!(
        out,
        "\naccuracy: flannel-vxlan saturated for {} s ({:.0} req/s), every packet followed; \
         percentiles over the {} flights {followed_name} picks against every packet's, \
         coverage from the throughput runs at {followed_name}",
        duration.as_secs(),
        run.rate,
        run.picked
    )?;
    writeln!(
        out,
        "    {:<46} {:>8}   {:>9} {:>9} {:>7}   {:>9} {:>9} {:>7}",
        "segment", "coverage", "p50", "every", "error", "p99", "every", "error"
    )?;
    for segment in &run.segments {
        let (p50_error, p99_error) = segment.errors();
        writeln!(
            out,
            "    {:<46} {:>8}   {:>9} {:>9} {:>6.1}%   {:>9} {:>9} {:>6.1}%",
            segment.segment,
            segment.coverage.map_or_else(
                || "-".to_owned(),
                |coverage| format!("{:.1}%", coverage * 100.0)
            ),
            format_ns(segment.followed.0),
            format_ns(segment.every.0),
            p50_error * 100.0,
            format_ns(segment.followed.1),
            format_ns(segment.every.1),
            p99_error * 100.0,
        )?;
    }
    Ok(())
}

/// The largest errors of a run at a share of the saturated rate.
fn write_accuracy_summary(out: &mut String, share: f64, run: &AccuracyRun) -> Result<()> {
    let worst = |error: fn(&SegmentError) -> f64| {
        run.segments
            .iter()
            .max_by(|a, b| error(a).abs().total_cmp(&error(b).abs()))
            .map_or((0.0, ""), |segment| {
                (error(segment), segment.segment.as_str())
            })
    };
    let (p50, p50_segment) = worst(|segment| segment.errors().0);
    let (p99, p99_segment) = worst(|segment| segment.errors().1);
    writeln!(
        out,
        "  at {:.0}% of that ({:.0} req/s, netprobe load): {} flights picked; largest p50 error \
         {:.1}% ({p50_segment}), largest p99 error {:.1}% ({p99_segment})",
        share * 100.0,
        run.rate,
        run.picked,
        p50 * 100.0,
        p99 * 100.0
    )?;
    Ok(())
}
