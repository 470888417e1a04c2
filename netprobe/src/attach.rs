//! `netprobe attach IFACE`: discover the datapath behind an interface, attach
//! the probes, show the breakdown live, and print the final report on Ctrl-C,
//! SIGTERM or the end of `--duration`.

use std::{
    io::IsTerminal as _,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
};

use crate::{
    discovery::{self, DeviceSelector},
    duration_arg,
    exemplars::FlightExemplars,
    filter::Filter,
    live::LiveView,
    netns::NetNs,
    path::{Datapath, Device, Direction, ProbePath},
    privilege::require_bpf_privileges,
    probes::{FollowArg, ProbeOptions, ProbeSession, Snapshot, XdpModeChoice},
    record,
    report::{Report, ReportContext, Sample},
};

/// Samples kept for the report.
const MAX_SAMPLES: usize = 1000;

#[derive(clap::Args, Debug)]
pub struct AttachArgs {
    /// The node's interface to the wire (e.g. eth0).
    pub interface: String,
    /// Named network namespace (ip netns) the interface is in.
    #[arg(long)]
    pub netns: Option<String>,
    /// Stop after this long (seconds, or e.g. 10s, 2m); default: until
    /// Ctrl-C or SIGTERM.
    #[arg(long, value_parser = duration_arg::parse)]
    pub duration: Option<Duration>,
    /// Refresh of the live table (seconds, or e.g. 500ms).
    #[arg(long, default_value = "1s", value_parser = duration_arg::parse)]
    pub interval: Duration,
    /// Also write the final report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub follow: FollowArg,
    /// Record one packet in N with all its hop timestamps, among the
    /// packets followed (so N is at least --follow-one-in's). Picked by the
    /// same hash, so probes on two nodes record the same packets.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub sample: u32,
    /// How XDP attaches to the interface: auto is native where the driver
    /// supports it, else generic; but not at all on a veth, where XDP in
    /// either mode changes the datapath being measured.
    #[arg(long, value_enum, default_value_t = XdpModeChoice::Auto)]
    pub xdp_mode: XdpModeChoice,
    /// Flows to follow: tcp|udp, [src|dst] port N, [src|dst] host ADDR, joined by "and".
    #[arg(long)]
    pub filter: Option<Filter>,
    /// Add a device to the discovered path (DEV or DEV@NETNS).
    #[arg(long = "with", value_name = "DEV[@NETNS]")]
    pub with: Vec<DeviceSelector>,
    /// Leave a discovered device out (DEV or DEV@NETNS).
    #[arg(long = "without", value_name = "DEV[@NETNS]")]
    pub without: Vec<DeviceSelector>,
    /// Measure without XDP when another program already holds the
    /// interface's XDP hook (netprobe never replaces it).
    #[arg(long)]
    pub force: bool,
    /// No live table: a plain line per interval, then the final report.
    #[arg(long)]
    pub quiet: bool,
    /// Also report each probe program's time per run, from the kernel's
    /// run-time statistics, which cost throughput themselves: they read the
    /// clock twice per program run (about 9% of the lab's throughput here).
    #[arg(long)]
    pub program_cost: bool,
    /// Count the segments that belong to one pod (its bridge port, its own
    /// device, its socket at either end) per pod, each named with that
    /// pod's devices; node-wide segments stay summed over pods.
    #[arg(long)]
    pub by_pod: bool,
    /// Also observe the NIC's qdisc, up to the driver
    /// (net:net_dev_start_xmit). That tracepoint fires for every packet
    /// every device of the machine sends, so it costs about as much as all
    /// the other hooks together, at any --follow-one-in.
    #[arg(long)]
    pub qdisc: bool,
    /// Written once the probes are attached (for tests and scripts).
    #[arg(long, hide = true)]
    pub ready_file: Option<PathBuf>,
}

pub fn run(args: &AttachArgs) -> Result<()> {
    require_bpf_privileges()?;
    let node = match &args.netns {
        Some(name) => NetNs::named(name)?,
        None => NetNs::current()?,
    };
    let datapath = discover(args, &node)?;
    let filter_text = args.filter.as_ref().map(|filter| filter.expression.clone());
    let options = ProbeOptions {
        xdp_mode: args.xdp_mode,
        filter: args
            .filter
            .as_ref()
            .map(|filter| filter.flow)
            .unwrap_or_default(),
        follow_one_in: args.follow.follow_one_in,
        sample_every: args.sample,
        force: args.force,
        program_cost: args.program_cost,
        by_pod: args.by_pod,
        qdisc: args.qdisc,
        hooks_only: false,
    };
    let session = ProbeSession::start(&datapath, &node, &options)?;
    print_path(&datapath, session.path());
    if args.by_pod && session.path().pods.is_empty() {
        eprintln!(
            "--by-pod: no pods behind {}; every segment is node-wide",
            datapath.nic
        );
    }
    for unobserved in session.unobserved() {
        eprintln!(
            "not observed: {} ({})",
            unobserved.hook.describe(),
            unobserved.reason
        );
    }
    if let Some(ready) = &args.ready_file {
        record::write_whole(ready, std::process::id().to_string().as_bytes())?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the event loop")?;
    let report = runtime.block_on(monitor(session, args, filter_text.as_deref()))?;
    println!("{report}");
    if let Some(json) = &args.json {
        record::save(json, &report)?;
    }
    Ok(())
}

fn discover(args: &AttachArgs, node: &NetNs) -> Result<Datapath> {
    let mut datapath = discovery::discover(&args.interface, node)?;
    for device in &args.without {
        datapath.remove(device);
    }
    for device in &args.with {
        datapath.add(device, node)?;
    }
    Ok(datapath)
}

fn print_path(datapath: &Datapath, path: &ProbePath) {
    let names = |devices: &[Device]| {
        devices
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!("datapath behind {}:", datapath.nic);
    for (role, devices) in [
        ("vxlan", &datapath.vxlan),
        ("bridges", &datapath.bridges),
        ("bridge ports", &datapath.bridge_ports),
        ("pods", &datapath.pods),
    ] {
        if !devices.is_empty() {
            println!("  {role}: {}", names(devices));
        }
    }
    if let Some(hook) = datapath.fastpath {
        println!(
            "  netprobe's VXLAN fast path ({}) takes packets for local pods from the NIC to the pod, \
             and the pods' packets for other nodes from their veths to the NIC",
            hook.name()
        );
    }
    for direction in Direction::BOTH {
        let hops: Vec<String> = path
            .hops(direction)
            .iter()
            .map(|hop| format!("{} [{}]", hop.label(), hop.hook.describe()))
            .collect();
        println!("  {}: {}", direction.describe(), hops.join(" -> "));
    }
}

async fn monitor(
    mut session: ProbeSession,
    args: &AttachArgs,
    filter: Option<&str>,
) -> Result<Report> {
    let started = Instant::now();
    let mut ticker = tokio::time::interval(args.interval);
    ticker.tick().await;
    let mut interrupt = signal(SignalKind::interrupt()).context("handling SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    let end = tokio::time::sleep(args.duration.unwrap_or(Duration::MAX / 4));
    tokio::pin!(end);
    let mut traces = if args.sample > 0 {
        let ring = session.take_traces()?;
        // SAFETY: the AsyncFd owns the ring buffer, so the descriptor it
        // watches stays open until it is deregistered on drop.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(std::io::Error::from)
            .context("watching the sample ring buffer")?;
        Some(ring)
    } else {
        None
    };
    let mut samples = Samples::default();
    let (mut view, mut keys) = if !args.quiet && std::io::stdout().is_terminal() {
        let (table, keys) = LiveView::table().context("drawing the live table")?;
        (table, Some(keys))
    } else {
        (LiveView::Lines, None)
    };
    let mut previous = session.snapshot()?;
    let mut last_tick = Instant::now();
    // Errors end the loop, not the function: the terminal is restored first.
    let stopped: Result<()> = async {
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    let snapshot = session.snapshot()?;
                    let total = build_report(&session, args, filter, started.elapsed(), &snapshot, 0)?;
                    let interval = build_report(
                        &session,
                        args,
                        filter,
                        last_tick.elapsed(),
                        &snapshot.since(&previous),
                        0,
                    )?;
                    (previous, last_tick) = (snapshot, Instant::now());
                    // A closed stdout must not stop the measurement.
                    view.show(&interval, &total).ok();
                }
                ready = async { traces.as_mut().expect("guarded").readable_mut().await }, if traces.is_some() => {
                    let mut ready = ready.context("reading samples")?;
                    samples.drain(ready.get_inner_mut(), session.path());
                    ready.clear_ready();
                }
                _ = async { keys.as_mut().expect("guarded").recv().await }, if keys.is_some() => break,
                _ = interrupt.recv() => break,
                _ = terminate.recv() => break,
                _ = &mut end => break,
            }
        }
        Ok(())
    }
    .await;
    view.finish().context("restoring the terminal")?;
    stopped?;
    if let Some(traces) = traces.as_mut() {
        samples.drain(traces.get_mut(), session.path());
    }
    let mut report = build_report(
        &session,
        args,
        filter,
        started.elapsed(),
        &session.snapshot()?,
        session.stale_flights()?,
    )?;
    report.samples = samples.kept;
    report.exemplars = samples.exemplars.exemplars(session.path());
    Ok(report)
}

/// The breakdown of `snapshot`, counted over `elapsed`.
fn build_report(
    session: &ProbeSession,
    args: &AttachArgs,
    filter: Option<&str>,
    elapsed: Duration,
    snapshot: &Snapshot,
    stale_flights: u64,
) -> Result<Report> {
    let context = ReportContext {
        interface: &args.interface,
        netns: args.netns.as_deref(),
        filter,
        xdp_mode: session.xdp_mode(),
        duration_s: elapsed.as_secs_f64(),
        follow_one_in: session.follow_one_in(),
    };
    Ok(Report::new(
        &context,
        session.path(),
        snapshot,
        stale_flights,
        session.unobserved(),
        session.program_costs()?,
        Vec::new(),
    ))
}

/// The packets sampled so far: the first [`MAX_SAMPLES`] as they came, and
/// the whole ones for their exemplars.
#[derive(Default)]
struct Samples {
    kept: Vec<Sample>,
    exemplars: FlightExemplars,
}

impl Samples {
    fn drain(&mut self, traces: &mut RingBuf<MapData>, path: &ProbePath) {
        for flight in ProbeSession::drain_traces(traces) {
            if self.kept.len() < MAX_SAMPLES {
                self.kept.push(Sample::of(&flight, path));
            }
            self.exemplars.add(&flight, path);
        }
    }
}
