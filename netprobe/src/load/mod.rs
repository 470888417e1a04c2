//! `netprobe load`: an open-loop, constant-rate HTTP/1.1 load generator in
//! the manner of tcpkali and wrk2.
//!
//! Requests are due at fixed instants, whatever the server does: request `n`
//! of the run at `n / rate` seconds, on connection `n mod connections`.
//! Each connection keeps one request in flight; when a response comes late,
//! the requests that fell due meanwhile go out back to back as soon as it
//! arrives, and each one's latency runs from the instant it was *due*, not
//! from when it went out. So a server stall shows up in the latency of every
//! request it held up (no coordinated omission), not in one sample.
//! With one request in flight per connection, `rate × latency` cannot
//! exceed `connections`: a p50 near `connections / rate`, with a large send
//! lag, means the run needed more connections.
//!
//! Connections are split over worker threads, each running a single-threaded
//! tokio runtime; a timerfd per connection wakes it on time to the
//! microsecond, or, with `--pacing spin`, one task per thread busy-polls
//! the clock for all its connections, and the runtime its sockets between
//! two looks (on a VM, where timers go through the hypervisor, that takes
//! about 15 us of wake-up off every request). Each worker records
//! into its own histogram and the run's is their sum (`Histogram::add`),
//! never an average.
//!
//! # JSON report
//!
//! [`LoadReport`], written by `--json FILE`; all times are integer nanoseconds:
//!
//! ```json
//! {
//!   "url": "http://127.0.0.1:8080/", "connections": 50, "threads": 1,
//!   "pacing": "timer",
//!   "requested_rate": 20000.0, "achieved_rate": 19998.6,
//!   "duration_ns": 10000000000, "warmup_ns": 1000000000,
//!   "requests": 199986, "errors": 0,
//!   "status_errors": 0, "protocol_errors": 0, "io_errors": 0,
//!   "timeouts": 0, "reconnects": 0,
//!   "latency": { "mean_ns": 61234, "p50_ns": 55103, "p90_ns": 80127,
//!                "p99_ns": 150015, "p999_ns": 420095, "max_ns": 1203199 },
//!   "send_lag": { "mean_ns": 9021, "p50_ns": 6015, "p90_ns": 12007,
//!                 "p99_ns": 60031, "p999_ns": 350015, "max_ns": 900095 }
//! }
//! ```
//!
//! Only requests due within the measured window (after the warm-up) count.
//! `requests` are responses of any status; `achieved_rate` is
//! `requests / duration`. `errors` is the sum of `status_errors` (not 2xx),
//! `protocol_errors` (unparsable responses) and `io_errors` (failed connects,
//! resets, closes mid-response); `timeouts` counts requests without a whole
//! response within the timeout; `reconnects` counts attempts to open a
//! connection again after the server closed it (e.g. `Connection: close`) or
//! it failed.
//! `latency` runs from each request's due time to the end of its response;
//! `send_lag`, from its due time to when it went out, is the part of that
//! spent waiting for the connection to be free or for the generator to wake:
//! when it is a large part of the latency, the generator, not the server, is
//! what the numbers show.

mod cli;
mod connection;
mod http;
mod pacing;
mod report;
mod url;

use std::{
    cell::RefCell,
    io,
    net::{SocketAddr, TcpStream},
    panic,
    rc::Rc,
    sync::Arc,
    thread,
    time::Duration,
};

pub use cli::{LoadArgs, main};
pub use hdrhistogram::Histogram;
pub use pacing::Pacing;
pub use report::LoadReport;
use thiserror::Error;
use tokio::{runtime::Runtime, task::LocalSet};

use crate::{clock::now_ns, report::Latency};
pub use url::UrlError;

use self::{
    connection::{Connection, Schedule, Shared, Stats},
    pacing::{Spinner, Timer},
    url::Url,
};

pub const DEFAULT_CONNECTIONS: usize = 50;
pub const DEFAULT_DURATION: Duration = Duration::from_secs(10);
pub const DEFAULT_WARMUP: Duration = Duration::from_secs(1);
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Time for the worker threads to start before the first request is due.
const START_LEAD: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, PartialEq)]
pub struct LoadConfig {
    /// `http://HOST[:PORT][/PATH]`.
    pub url: String,
    /// Requests per second, over all connections.
    pub rate: f64,
    pub connections: usize,
    /// The measured window.
    pub duration: Duration,
    /// Load sent before the measured window and left out of the report.
    pub warmup: Duration,
    /// How long a request may wait for its whole response (connecting
    /// included) before the connection is dropped and it counts as a timeout.
    pub timeout: Duration,
    /// Worker threads; `None` for [`default_threads`]. Never more than
    /// connections.
    pub threads: Option<usize>,
    pub pacing: Pacing,
}

impl LoadConfig {
    /// `rate` requests per second to `url` for `duration`, with the default
    /// connections, warm-up, timeout and threads.
    pub fn new(url: impl Into<String>, rate: f64, duration: Duration) -> Self {
        Self {
            url: url.into(),
            rate,
            connections: DEFAULT_CONNECTIONS,
            duration,
            warmup: DEFAULT_WARMUP,
            timeout: DEFAULT_TIMEOUT,
            threads: None,
            pacing: Pacing::default(),
        }
    }

    fn validate(&self) -> Result<(), LoadError> {
        if !(self.rate.is_finite() && self.rate > 0.0) {
            return Err(LoadError::Rate(self.rate));
        }
        if self.connections == 0 {
            return Err(LoadError::NoConnections);
        }
        if self.threads == Some(0) {
            return Err(LoadError::NoThreads);
        }
        if self.duration.is_zero() {
            return Err(LoadError::ZeroDuration("duration"));
        }
        if self.timeout.is_zero() {
            return Err(LoadError::ZeroDuration("timeout"));
        }
        Ok(())
    }
}

#[derive(Debug, Error)]
pub enum LoadError {
    #[error("the rate must be a positive number of requests per second, not {0}")]
    Rate(f64),
    #[error("at least one connection is needed")]
    NoConnections,
    #[error("at least one worker thread is needed")]
    NoThreads,
    #[error("the {0} must be longer than zero")]
    ZeroDuration(&'static str),
    #[error(transparent)]
    Url(#[from] UrlError),
    #[error("cannot connect to {addr}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error("cannot set up a load worker")]
    Setup(#[source] io::Error),
    #[error("a load worker failed")]
    Worker(#[source] io::Error),
    #[error("a load worker panicked")]
    WorkerPanicked,
}

/// A run's report and the counts and histograms it summarizes.
#[derive(Debug, Clone)]
pub struct LoadResult {
    pub report: LoadReport,
    stats: Stats,
}

impl LoadResult {
    fn new(config: &LoadConfig, threads: usize, stats: Stats) -> Self {
        let report = LoadReport {
            url: config.url.clone(),
            connections: config.connections,
            threads,
            pacing: config.pacing,
            requested_rate: config.rate,
            duration_ns: config.duration.as_nanos() as u64,
            warmup_ns: config.warmup.as_nanos() as u64,
            ..LoadReport::default()
        };
        let mut result = Self { report, stats };
        result.summarize();
        result
    }

    /// Nanoseconds from each request's due time to the end of its response.
    pub fn histogram(&self) -> &Histogram<u64> {
        &self.stats.latency
    }

    /// Adds another run of the same load, as if one run had measured both
    /// windows: counts add up and histograms merge (the bench splits each
    /// run into slices taken at different times).
    pub fn add(&mut self, other: &LoadResult) {
        self.stats.merge(&other.stats);
        self.report.duration_ns += other.report.duration_ns;
        self.report.warmup_ns += other.report.warmup_ns;
        self.summarize();
    }

    /// The report's counts, rate and percentiles, from the stats.
    fn summarize(&mut self) {
        let (report, stats) = (&mut self.report, &self.stats);
        report.achieved_rate = stats.requests as f64 / (report.duration_ns as f64 / 1e9);
        report.requests = stats.requests;
        report.errors = stats.status_errors + stats.protocol_errors + stats.io_errors;
        report.status_errors = stats.status_errors;
        report.protocol_errors = stats.protocol_errors;
        report.io_errors = stats.io_errors;
        report.timeouts = stats.timeouts;
        report.reconnects = stats.reconnects;
        report.latency = Latency::from_hdr(&stats.latency);
        report.send_lag = Latency::from_hdr(&stats.send_lag);
    }
}

/// Runs the load and waits for it to finish, blocking the calling thread
/// for about the warm-up plus the duration. Connections live in the calling
/// thread's network namespace. All connections are opened before the first
/// request is due, so an unreachable server fails here rather than during
/// the run.
pub fn run(config: &LoadConfig) -> Result<LoadResult, LoadError> {
    config.validate()?;
    let url = Url::parse(&config.url)?;
    let (addr, streams) = connect_all(&url.resolve()?, config.connections, config.timeout)?;
    let threads = config
        .threads
        .unwrap_or_else(default_threads)
        .min(config.connections);

    // Everything that can fail is set up here, before any thread starts.
    // A measured request is due in the window and answered within the timeout.
    let max_latency = config.duration + config.timeout;
    let mut workers = (0..threads)
        .map(|_| Worker::new(max_latency, config.pacing))
        .collect::<Result<Vec<_>, _>>()?;
    for (index, stream) in streams.into_iter().enumerate() {
        workers[index % threads].add(index, stream)?;
    }

    let request: Arc<[u8]> = http::get_request(&url).into();
    let start = now_ns() + START_LEAD.as_nanos() as u64;
    let measure_from = start + config.warmup.as_nanos() as u64;
    let schedule = Schedule {
        start,
        interval: 1e9 / config.rate,
        connections: config.connections as u64,
        measure_from,
        end: measure_from + config.duration.as_nanos() as u64,
    };
    let outcomes = thread::scope(|scope| {
        let handles = workers
            .into_iter()
            .enumerate()
            .map(|(index, worker)| {
                let request = request.clone();
                thread::Builder::new()
                    .name(format!("netprobe-load-{index}"))
                    .spawn_scoped(scope, move || {
                        worker.run(addr, request, schedule, config.timeout)
                    })
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(LoadError::Setup)?;
        Ok::<_, LoadError>(
            handles
                .into_iter()
                .map(|handle| handle.join())
                .collect::<Vec<_>>(),
        )
    })?;

    let mut stats = Stats::new(max_latency);
    for outcome in outcomes {
        let worker_stats = outcome
            .map_err(|_| LoadError::WorkerPanicked)?
            .map_err(LoadError::Worker)?;
        stats.merge(&worker_stats);
    }
    Ok(LoadResult::new(config, threads, stats))
}

/// Half the CPUs, at least one. The server under test shares the machine in
/// the lab, and one thread held 77k requests/s over loopback on a 2-core VM:
/// more threads take CPU from the server and add wake-ups.
pub fn default_threads() -> usize {
    thread::available_parallelism().map_or(1, |cpus| (cpus.get() / 2).max(1))
}

/// Opens `count` connections to the first of `addrs` that accepts one.
fn connect_all(
    addrs: &[SocketAddr],
    count: usize,
    timeout: Duration,
) -> Result<(SocketAddr, Vec<TcpStream>), LoadError> {
    let connect = |addr| {
        TcpStream::connect_timeout(&addr, timeout)
            .and_then(|stream| stream.set_nodelay(true).map(|()| stream))
            .map_err(|source| LoadError::Connect { addr, source })
    };
    let mut failure = None;
    for &addr in addrs {
        match connect(addr) {
            Ok(first) => {
                let mut streams = Vec::with_capacity(count);
                streams.push(first);
                for _ in 1..count {
                    streams.push(connect(addr)?);
                }
                return Ok((addr, streams));
            }
            Err(err) => failure = Some(err),
        }
    }
    Err(failure.expect("Url::resolve returns at least one address"))
}

/// One thread's connections and the runtime that will drive them.
struct Worker {
    runtime: Runtime,
    /// Wakes the connections' timers with `--pacing spin`.
    spinner: Option<Arc<Spinner>>,
    connections: Vec<Connection>,
    stats: Stats,
}

impl Worker {
    fn new(max_latency: Duration, pacing: Pacing) -> Result<Self, LoadError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(LoadError::Setup)?;
        Ok(Self {
            runtime,
            spinner: (pacing == Pacing::Spin).then(Arc::default),
            connections: Vec::new(),
            stats: Stats::new(max_latency),
        })
    }

    fn add(&mut self, index: usize, stream: TcpStream) -> Result<(), LoadError> {
        // Sockets and timers register with the reactor of the runtime entered.
        let _runtime = self.runtime.enter();
        let connection = Timer::new(self.spinner.as_ref())
            .and_then(|timer| Connection::new(index as u64, stream, timer))
            .map_err(LoadError::Setup)?;
        self.connections.push(connection);
        Ok(())
    }

    fn run(
        self,
        addr: SocketAddr,
        request: Arc<[u8]>,
        schedule: Schedule,
        timeout: Duration,
    ) -> io::Result<Stats> {
        let shared = Rc::new(Shared {
            addr,
            request,
            schedule,
            timeout,
            stats: RefCell::new(self.stats),
        });
        let tasks = LocalSet::new();
        if let Some(spinner) = self.spinner {
            // Dropped with the other tasks once the connections are done.
            tasks.spawn_local(async move { spinner.spin().await });
        }
        let handles: Vec<_> = self
            .connections
            .into_iter()
            .map(|connection| {
                let shared = shared.clone();
                tasks.spawn_local(async move { connection.run(&shared).await })
            })
            .collect();
        tasks.block_on(&self.runtime, async {
            for handle in handles {
                match handle.await {
                    Ok(result) => result?,
                    Err(err) => panic::resume_unwind(err.into_panic()),
                }
            }
            Ok::<_, io::Error>(())
        })?;
        Ok(shared.stats.borrow().clone())
    }
}
