//! One connection's share of the schedule: at each of its send times, send
//! the request (reconnecting first if the connection was lost) and time the
//! response from the send time it was scheduled for.

use std::{cell::RefCell, io, net::SocketAddr, sync::Arc, time::Duration};

use hdrhistogram::Histogram;
use tokio::{io::AsyncWriteExt as _, net::TcpStream};

use super::{
    http::{HttpError, Response, ResponseReader},
    pacing::Timer,
};
use crate::clock::now_ns;

/// When each request is due, in nanoseconds of [`now_ns`]. Request `n` of
/// the whole run is due at `start + n / rate`; connection `c` of `C` sends
/// requests `c`, `c + C`, `c + 2C`, ..., so sends are spread evenly over
/// time and connections.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    pub start: u64,
    pub interval: f64,
    pub connections: u64,
    /// Requests due before this are warm-up: sent but not counted.
    pub measure_from: u64,
    /// Nothing is sent from this instant on.
    pub end: u64,
}

impl Schedule {
    fn due(&self, request: u64) -> u64 {
        self.start + (request as f64 * self.interval) as u64
    }
}

/// What one worker thread's connections share.
pub struct Shared {
    pub addr: SocketAddr,
    pub request: Arc<[u8]>,
    pub schedule: Schedule,
    pub timeout: Duration,
    pub stats: RefCell<Stats>,
}

/// Counts and latencies of the requests due in the measured window.
#[derive(Debug, Clone)]
pub struct Stats {
    /// Nanoseconds from the scheduled send time to the end of the response.
    pub latency: Histogram<u64>,
    /// Nanoseconds from the scheduled send time to the actual one.
    pub send_lag: Histogram<u64>,
    /// Responses received, whatever their status.
    pub requests: u64,
    pub status_errors: u64,
    pub protocol_errors: u64,
    pub io_errors: u64,
    pub timeouts: u64,
    pub reconnects: u64,
}

impl Stats {
    pub fn new(max_latency: Duration) -> Self {
        let max_latency = u64::try_from(max_latency.as_nanos()).unwrap_or(u64::MAX);
        // Three significant digits: 0.1% resolution at every scale.
        let histogram = Histogram::new_with_bounds(1, max_latency.max(2), 3)
            .expect("bounds are at least 1 and 2 and 3 digits are supported");
        Self {
            latency: histogram.clone(),
            send_lag: histogram,
            requests: 0,
            status_errors: 0,
            protocol_errors: 0,
            io_errors: 0,
            timeouts: 0,
            reconnects: 0,
        }
    }

    /// Adds another worker's counts; latencies merge bucket by bucket, and
    /// from then on this histogram grows to take any other added to it.
    pub fn merge(&mut self, other: &Self) {
        for (histogram, other) in [
            (&mut self.latency, &other.latency),
            (&mut self.send_lag, &other.send_lag),
        ] {
            histogram.auto(true);
            histogram
                .add(other)
                .expect("an auto-resizing histogram takes any other");
        }
        self.requests += other.requests;
        self.status_errors += other.status_errors;
        self.protocol_errors += other.protocol_errors;
        self.io_errors += other.io_errors;
        self.timeouts += other.timeouts;
        self.reconnects += other.reconnects;
    }
}

pub struct Connection {
    /// This connection's number among all of the run's.
    index: u64,
    /// `None` after the server closed it or it failed, until the next send.
    stream: Option<TcpStream>,
    reader: ResponseReader,
    timer: Timer,
}

enum Outcome {
    Response(Response),
    Failed(HttpError),
    TimedOut,
}

impl Connection {
    /// Takes an established connection; must be called inside the tokio
    /// runtime that will run it, with a `timer` made there.
    pub fn new(index: u64, stream: std::net::TcpStream, timer: Timer) -> io::Result<Self> {
        stream.set_nonblocking(true)?;
        Ok(Self {
            index,
            stream: Some(TcpStream::from_std(stream)?),
            reader: ResponseReader::default(),
            timer,
        })
    }

    /// Sends this connection's share of the schedule. Fails only if the timer
    /// does; what happens to requests is counted in `shared.stats`.
    pub async fn run(mut self, shared: &Shared) -> io::Result<()> {
        let schedule = &shared.schedule;
        let mut request = self.index;
        loop {
            let due = schedule.due(request);
            request += schedule.connections;
            if due >= schedule.end {
                return Ok(());
            }
            self.timer.sleep_until(due).await?;
            let sent = now_ns();
            // Requests this connection fell too far behind to send count
            // against the achieved rate rather than run past the window.
            if sent >= schedule.end {
                return Ok(());
            }
            let reconnected = self.stream.is_none();
            let outcome = match tokio::time::timeout(shared.timeout, self.exchange(shared)).await {
                Ok(Ok(response)) => Outcome::Response(response),
                Ok(Err(err)) => Outcome::Failed(err),
                Err(_elapsed) => Outcome::TimedOut,
            };
            let done = now_ns();
            if !matches!(&outcome, Outcome::Response(response) if response.keep_alive) {
                self.stream = None;
            }
            if due < schedule.measure_from {
                continue;
            }
            let mut stats = shared.stats.borrow_mut();
            stats.reconnects += u64::from(reconnected);
            stats.send_lag.saturating_record(sent.saturating_sub(due));
            match outcome {
                Outcome::Response(response) => {
                    stats.requests += 1;
                    stats.status_errors += u64::from(!(200..300).contains(&response.status));
                    stats.latency.saturating_record(done.saturating_sub(due));
                }
                Outcome::Failed(err) if err.is_protocol() => stats.protocol_errors += 1,
                Outcome::Failed(_) => stats.io_errors += 1,
                Outcome::TimedOut => stats.timeouts += 1,
            }
        }
    }

    async fn exchange(&mut self, shared: &Shared) -> Result<Response, HttpError> {
        let stream = match &mut self.stream {
            Some(stream) => stream,
            None => {
                self.reader.clear();
                let stream = TcpStream::connect(shared.addr).await?;
                stream.set_nodelay(true)?;
                self.stream.insert(stream)
            }
        };
        stream.write_all(&shared.request).await?;
        self.reader.read(stream).await
    }
}
