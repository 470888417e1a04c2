//! `netprobe agent IFACE`: always-on per-hop latency for Prometheus. The
//! probes stay attached behind the interface, the datapath is discovered
//! again every second (a new pod is measured, a gone one detached), and an
//! HTTP server serves the counts as metrics (`/metrics`), the report
//! `attach --json` writes (`/report`) and a health check (`/healthz`).
//! SIGTERM or Ctrl-C detaches everything; so does `kill -9`, as every
//! attachment is a bpf_link owned by the process.

mod buckets;
mod counts;
mod exposition;
mod history;
mod instance;
mod server;
mod state;

use std::{
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{Context as _, Result};
use tokio::signal::unix::{SignalKind, signal};

pub use self::{
    buckets::{bounds_ns, fold, native_index, native_upper_bound},
    instance::INSTANCE_DIR,
};
use self::{
    instance::InstanceLock,
    server::{Shared, lock},
    state::AgentState,
};
use crate::{
    discovery,
    netns::NetNs,
    privilege::require_bpf_privileges,
    probes::{FollowArg, ProbeOptions, ProbeSession, XdpModeChoice},
    record,
};

/// Where the agent listens unless told otherwise: every address, on a port
/// outside the Prometheus exporters' range (9100-9999, all allocated), the
/// Kubernetes components' ports, the NodePort range and the ephemeral ports.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:19464";

#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    /// The node's interface to the wire (e.g. eth0).
    pub interface: String,
    /// Named network namespace (ip netns) the interface is in. The HTTP
    /// server listens in the agent's own namespace.
    #[arg(long)]
    pub netns: Option<String>,
    /// Address and port of the HTTP server.
    #[arg(long, value_name = "ADDR:PORT", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// How often the datapath is discovered again. A pod that appears is
    /// measured this long, and a new session's start, after it does.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    pub rediscover: Duration,
    /// How long the series of a segment no longer on the path (a pod gone)
    /// stay in /metrics.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub forget_after: Duration,
    /// How XDP attaches to the interface (as for attach).
    #[arg(long, value_enum, default_value_t = XdpModeChoice::Auto)]
    pub xdp_mode: XdpModeChoice,
    #[command(flatten)]
    pub follow: FollowArg,
    /// Also export each probe program's runs and run time, from the
    /// kernel's run-time statistics, which cost throughput themselves: they
    /// read the clock twice per program run.
    #[arg(long)]
    pub program_cost: bool,
    /// Written once the probes are attached and the server listens, with
    /// the address it listens on (for tests and scripts).
    #[arg(long, hide = true)]
    pub ready_file: Option<PathBuf>,
}

pub fn run(args: &AgentArgs) -> Result<()> {
    require_bpf_privileges()?;
    if args.rediscover.is_zero() {
        anyhow::bail!("--rediscover must be longer than zero");
    }
    let node = match &args.netns {
        Some(name) => NetNs::named(name)?,
        None => NetNs::current()?,
    };
    let shown = match &args.netns {
        Some(netns) => format!("{} in {netns}", args.interface),
        None => args.interface.clone(),
    };
    let datapath = discovery::discover(&args.interface, &node)?;
    let _instance = InstanceLock::take(node.inode(), &args.interface, &shown)?;
    let listener = TcpListener::bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    listener
        .set_nonblocking(true)
        .context("setting up the listener")?;
    let options = probe_options(args);
    let session = ProbeSession::start(&datapath, &node, &options)?;
    for unobserved in session.unobserved() {
        eprintln!(
            "not observed: {} ({})",
            unobserved.hook.describe(),
            unobserved.reason
        );
    }
    let state: Shared = Arc::new(Mutex::new(AgentState::new(
        &args.interface,
        args.netns.as_deref(),
        datapath,
        session,
        args.forget_after,
    )));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the event loop")?;
    runtime.block_on(serve(args, listener, node, options, state))
}

fn probe_options(args: &AgentArgs) -> ProbeOptions {
    ProbeOptions {
        xdp_mode: args.xdp_mode,
        follow_one_in: args.follow.follow_one_in,
        program_cost: args.program_cost,
        by_pod: true,
        ..ProbeOptions::default()
    }
}

async fn serve(
    args: &AgentArgs,
    listener: TcpListener,
    node: NetNs,
    options: ProbeOptions,
    state: Shared,
) -> Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener).context("listening")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("handling SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    let stop = async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
    };
    if let Some(ready) = &args.ready_file {
        let address = listener.local_addr().context("the listening address")?;
        record::write_whole(ready, address.to_string().as_bytes())?;
    }
    let server = axum::serve(listener, server::router(state.clone())).with_graceful_shutdown(stop);
    tokio::select! {
        served = server => served.context("serving HTTP")?,
        () = follow_datapath(args, node, options, state.clone()) => {}
    }
    Ok(())
}

/// Discovers the datapath every `--rediscover` and, when it changed, puts
/// a session on the new one in place of the old. Runs until dropped.
async fn follow_datapath(args: &AgentArgs, node: NetNs, options: ProbeOptions, state: Shared) {
    let mut ticker = tokio::time::interval(args.rediscover);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let node = Arc::new(node);
    loop {
        ticker.tick().await;
        let result = follow_once(&args.interface, &node, &options, &state).await;
        if let Err(error) = &result {
            log::warn!("{error:#}");
        }
        let mut state = lock(&state);
        state.discovered(result.map_err(|error| format!("{error:#}")));
        if let Err(error) = state.mark() {
            log::warn!("{error}");
        }
    }
}

async fn follow_once(
    interface: &str,
    node: &Arc<NetNs>,
    options: &ProbeOptions,
    state: &Shared,
) -> Result<()> {
    let (interface, found_in) = (interface.to_owned(), Arc::clone(node));
    let datapath = tokio::task::spawn_blocking(move || discovery::discover(&interface, &found_in))
        .await
        .context("discovery")??;
    if *lock(state).datapath() == datapath {
        return Ok(());
    }
    let (attach_in, options, new_path) = (Arc::clone(node), options.clone(), datapath.clone());
    let session =
        tokio::task::spawn_blocking(move || ProbeSession::start(&new_path, &attach_in, &options))
            .await
            .context("attaching")??;
    lock(state).replace(datapath, session)?;
    Ok(())
}
