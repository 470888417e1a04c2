//! `netprobe load` against a small HTTP/1.1 keep-alive server on 127.0.0.1
//! whose delays, stalls, statuses and closes each test chooses.

use std::{
    fmt,
    io::{self, Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    process::Command,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use netprobe::load::{self, LoadConfig, LoadError, LoadReport, LoadResult, Pacing, UrlError};

const MS: u64 = 1_000_000;

/// The tests measure time on a 2-core machine: one at a time.
fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Default, Clone)]
struct Behavior {
    /// Added before every response.
    delay: Duration,
    /// Once the server has received this many requests, it holds every
    /// response for the stall's length from then.
    stall: Option<(u64, Duration)>,
    /// Responds with this instead of 200.
    status: Option<u16>,
    /// Closes each connection after this many responses.
    close_every: Option<u64>,
}

struct State {
    behavior: Behavior,
    received: AtomicU64,
    stall_until: Mutex<Option<Instant>>,
    /// When each request arrived: over loopback, when it was sent.
    arrivals: Mutex<Vec<Instant>>,
}

impl State {
    /// Notes the request's arrival and waits out the delay and any stall
    /// under way.
    fn hold(&self) {
        self.arrivals.lock().unwrap().push(Instant::now());
        let received = self.received.fetch_add(1, Ordering::SeqCst) + 1;
        let stall_until = {
            let mut stall_until = self.stall_until.lock().unwrap();
            if let Some((after, length)) = self.behavior.stall
                && received == after
            {
                *stall_until = Some(Instant::now() + length);
            }
            *stall_until
        };
        if let Some(left) =
            stall_until.and_then(|until| until.checked_duration_since(Instant::now()))
        {
            thread::sleep(left);
        }
        thread::sleep(self.behavior.delay);
    }
}

/// The server, with a thread per connection; it stops accepting on drop.
struct Server {
    addr: SocketAddr,
    state: Arc<State>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Server {
    fn start(behavior: Behavior) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let state = Arc::new(State {
            behavior,
            received: AtomicU64::new(0),
            stall_until: Mutex::new(None),
            arrivals: Mutex::new(Vec::new()),
        });
        let acceptor = thread::spawn({
            let stop = stop.clone();
            let state = state.clone();
            move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let state = state.clone();
                    // A connection the client dropped ends its thread.
                    thread::spawn(move || serve(stream?, &state));
                }
            }
        });
        Self {
            addr,
            state,
            stop,
            acceptor: Some(acceptor),
        }
    }

    fn url(&self) -> String {
        format!("http://{}/index.html", self.addr)
    }

    /// When the requests received since the last call arrived, in order.
    fn take_arrivals(&self) -> Vec<Instant> {
        let mut arrivals = std::mem::take(&mut *self.state.arrivals.lock().unwrap());
        arrivals.sort_unstable();
        arrivals
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the acceptor so it sees the flag.
        let _wake = TcpStream::connect(self.addr);
        if let Some(acceptor) = self.acceptor.take() {
            acceptor.join().unwrap();
        }
    }
}

fn serve(mut stream: TcpStream, state: &State) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut pending = Vec::new();
    let mut buffer = [0; 4096];
    let mut served = 0;
    loop {
        let head_end = loop {
            if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            match stream.read(&mut buffer)? {
                0 => return Ok(()),
                n => pending.extend_from_slice(&buffer[..n]),
            }
        };
        pending.drain(..head_end);
        state.hold();
        served += 1;
        let close = state
            .behavior
            .close_every
            .is_some_and(|every| served % every == 0);
        let response = format!(
            "HTTP/1.1 {} Whatever\r\nContent-Length: 5\r\n{}\r\nhello",
            state.behavior.status.unwrap_or(200),
            if close { "Connection: close\r\n" } else { "" }
        );
        stream.write_all(response.as_bytes())?;
        if close {
            return Ok(());
        }
    }
}

fn config(url: String, rate: f64, connections: usize, duration_ms: u64) -> LoadConfig {
    LoadConfig {
        connections,
        warmup: Duration::from_millis(100),
        ..LoadConfig::new(url, rate, Duration::from_millis(duration_ms))
    }
}

fn run(config: &LoadConfig) -> LoadResult {
    let result = load::run(config).unwrap();
    println!("{}", result.report);
    result
}

fn assert_rate_within(report: &LoadReport, tolerance: f64) {
    let error = (report.achieved_rate / report.requested_rate - 1.0).abs();
    assert!(
        error <= tolerance,
        "achieved rate off by {:.2}%: {report:#?}",
        error * 100.0
    );
}

#[test]
fn median_latency_is_the_server_delay() {
    let _exclusive = exclusive();
    let server = Server::start(Behavior {
        delay: Duration::from_millis(2),
        ..Behavior::default()
    });
    for pacing in [Pacing::Timer, Pacing::Spin] {
        // 100 requests/s per connection: each response is back long before
        // the connection's next request is due.
        let report = run(&LoadConfig {
            pacing,
            ..config(server.url(), 400.0, 4, 1000)
        })
        .report;
        let p50 = report.latency.p50_ns;
        assert!(
            (2 * MS..=5 * MS / 2).contains(&p50),
            "p50 {p50}ns: {report:#?}"
        );
        assert_eq!((report.errors, report.timeouts), (0, 0), "{report:#?}");
        assert_rate_within(&report, 0.01);
    }
}

#[test]
fn a_stall_stays_in_the_latency_of_every_request_it_held_up() {
    let _exclusive = exclusive();
    let rate = 2000.0;
    let stall = Duration::from_millis(100);
    // Some 400ms into the measured window.
    let server = Server::start(Behavior {
        stall: Some((1000, stall)),
        ..Behavior::default()
    });
    let result = run(&config(server.url(), rate, 4, 1000));
    let (report, histogram) = (&result.report, result.histogram());
    assert!(report.latency.max_ns >= 100 * MS, "{report:#?}");
    assert!(report.latency.max_ns < 300 * MS, "{report:#?}");
    // The held-up requests went out late, once their connection was free.
    assert!(report.send_lag.max_ns >= 90 * MS, "{report:#?}");
    // Requests due in the stall's first half waited more than half of it:
    // rate × stall / 2 of them. Timing from the actual send would leave
    // only the few in flight when it began, one per connection.
    let late: u64 = histogram
        .iter_recorded()
        .filter(|value| value.value_iterated_to() > 50 * MS)
        .map(|value| value.count_at_value())
        .sum();
    let expected = rate * stall.as_secs_f64() / 2.0;
    assert!(
        (expected * 0.7..=expected * 1.3).contains(&(late as f64)),
        "{late} requests over 50ms, expected about {expected}"
    );
    assert_eq!((report.errors, report.timeouts), (0, 0), "{report:#?}");
    assert_rate_within(report, 0.01);
}

/// How late (p99) a request may go out and still count as sent on time.
/// A timer's wake-up here is late by about 100 us at the p99, but on this
/// 2-core VM the generator's thread, or the in-process server's that holds
/// its connections, is now and then descheduled for milliseconds: in one
/// CI run a pause of up to 5.7 ms put the timer pacing's p99 at 2.1 ms
/// (p90 0.12 ms). A generator that falls behind lags by the 100 ms stall
/// below.
const SEND_LAG_BOUND: u64 = 5 * MS;

/// How late (p99) a request may reach the server and still count as on
/// time. Arrival adds the server thread's wake-up to the send lag, which
/// with a spinning generator holding one of two cores can pass a
/// millisecond; a generator that waits on its responses lags by the 100 ms
/// stall below.
const ARRIVAL_LAG_BOUND: u64 = 5 * MS;

/// How a run missed its schedule.
enum Miss {
    /// Requests the server received in the measured window, against the
    /// rate asked for, off by more than 1%.
    SentInWindow { sent: usize, expected: f64 },
    /// The generator's own send lag, p99.
    GeneratorLag { p99_ns: u64 },
    /// The time from each due time to its request's arrival at the server,
    /// p99.
    ArrivalLag { p99_ns: u64 },
}

impl fmt::Display for Miss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Miss::SentInWindow { sent, expected } => write!(
                f,
                "{sent} requests sent in the measured window, not {expected} ± 1%"
            ),
            Miss::GeneratorLag { p99_ns } => {
                write!(f, "send lag p99 {p99_ns} ns, over {SEND_LAG_BOUND} ns")
            }
            Miss::ArrivalLag { p99_ns } => write!(
                f,
                "requests reached the server {p99_ns} ns after their due time (p99), \
                 over {ARRIVAL_LAG_BOUND} ns"
            ),
        }
    }
}

fn listed(misses: &[Miss]) -> String {
    let misses: Vec<String> = misses.iter().map(ToString::to_string).collect();
    misses.join("; ")
}

/// How `report`'s run missed its schedule, judged also by `arrivals`, the
/// server's record of when each request arrived (over loopback, when it
/// was sent): a request counts in the window it went out in, not the one
/// it was due in.
fn schedule_misses(report: &LoadReport, arrivals: &[Instant]) -> Vec<Miss> {
    let first = *arrivals.first().expect("the server received requests");
    let sent: Vec<f64> = arrivals
        .iter()
        .map(|arrival| arrival.duration_since(first).as_nanos() as f64)
        .collect();
    let interval = 1e9 / report.requested_rate;
    // Request k is due at start + k × interval and is never sent early, so
    // the k-th arrival comes no sooner than the k-th due time: the
    // schedule starts at, or a send lag before, the earliest of
    // arrival k - k × interval.
    let start = sent
        .iter()
        .enumerate()
        .map(|(k, at)| at - k as f64 * interval)
        .fold(f64::INFINITY, f64::min);
    let from = start + report.warmup_ns as f64;
    let window = from..from + report.duration_ns as f64;
    let in_window = sent.iter().filter(|at| window.contains(at)).count();
    let expected = report.requested_rate * report.duration_ns as f64 / 1e9;
    let mut lags: Vec<u64> = sent
        .iter()
        .enumerate()
        .map(|(k, at)| (at - start - k as f64 * interval) as u64)
        .collect();
    lags.sort_unstable();
    let arrival_p99 = lags[lags.len() * 99 / 100];

    let mut misses = Vec::new();
    if (in_window as f64 / expected - 1.0).abs() > 0.01 {
        misses.push(Miss::SentInWindow {
            sent: in_window,
            expected,
        });
    }
    if report.send_lag.p99_ns > SEND_LAG_BOUND {
        misses.push(Miss::GeneratorLag {
            p99_ns: report.send_lag.p99_ns,
        });
    }
    if arrival_p99 > ARRIVAL_LAG_BOUND {
        misses.push(Miss::ArrivalLag {
            p99_ns: arrival_p99,
        });
    }
    misses
}

#[test]
fn holds_the_requested_rate() {
    let _exclusive = exclusive();
    let server = Server::start(Behavior::default());
    for pacing in [Pacing::Timer, Pacing::Spin] {
        let report = run(&LoadConfig {
            pacing,
            ..config(server.url(), 2000.0, 8, 3000)
        })
        .report;
        assert_eq!(report.pacing, pacing);
        assert_rate_within(&report, 0.01);
        assert_eq!(
            (report.errors, report.timeouts, report.reconnects),
            (0, 0, 0),
            "{report:#?}"
        );
        let misses = schedule_misses(&report, &server.take_arrivals());
        assert!(
            misses.is_empty(),
            "{pacing} pacing: {}\n{report:#?}",
            listed(&misses)
        );
    }
}

#[test]
fn a_generator_that_sends_late_misses_its_schedule() {
    let _exclusive = exclusive();
    // A 100 ms stall of the server some 400 ms into the window: the
    // requests due in it go out late, once their connection is free, but
    // within the window, so that the rate counted by due time holds.
    let stalled = Server::start(Behavior {
        stall: Some((1000, Duration::from_millis(100))),
        ..Behavior::default()
    });
    let report = run(&config(stalled.url(), 2000.0, 8, 1000)).report;
    assert_rate_within(&report, 0.01);
    let misses = schedule_misses(&report, &stalled.take_arrivals());
    assert!(
        misses
            .iter()
            .any(|miss| matches!(miss, Miss::GeneratorLag { .. }))
            && misses
                .iter()
                .any(|miss| matches!(miss, Miss::ArrivalLag { .. })),
        "{}\n{report:#?}",
        listed(&misses)
    );

    // A server slower than the connections can carry the rate (8 × 1 / 5 ms
    // = 1600 requests/s of 2000): the generator falls further behind all
    // run, and fewer requests go out in the window than asked for.
    let slow = Server::start(Behavior {
        delay: Duration::from_millis(5),
        ..Behavior::default()
    });
    let report = run(&config(slow.url(), 2000.0, 8, 1000)).report;
    let misses = schedule_misses(&report, &slow.take_arrivals());
    assert!(
        misses
            .iter()
            .any(|miss| matches!(miss, Miss::SentInWindow { .. })),
        "{}\n{report:#?}",
        listed(&misses)
    );
}

#[test]
fn a_spinning_generator_sends_on_time() {
    let _exclusive = exclusive();
    let server = Server::start(Behavior::default());
    let report = run(&LoadConfig {
        pacing: Pacing::Spin,
        ..config(server.url(), 2000.0, 50, 1000)
    })
    .report;
    // A timer's wake-up alone is late by 10-20 us on this VM, and 50
    // connections each spinning on their own took 2.0-2.1 us at the median to
    // get round to a send.
    assert!(report.send_lag.p50_ns < 1_500, "{report:#?}");
    assert_rate_within(&report, 0.01);
}

#[test]
fn runs_added_up_read_as_one_run_over_both_windows() {
    let _exclusive = exclusive();
    let quick = Server::start(Behavior::default());
    let slow = Server::start(Behavior {
        delay: Duration::from_millis(5),
        ..Behavior::default()
    });
    let mut total = run(&config(quick.url(), 1000.0, 8, 600));
    let second = run(&config(slow.url(), 1000.0, 8, 400));
    let first = total.report.clone();
    total.add(&second);
    let report = &total.report;
    println!("{report}");
    assert_eq!(report.requests, first.requests + second.report.requests);
    assert_eq!(report.duration_ns, 1_000_000_000);
    assert_eq!(report.warmup_ns, 200_000_000);
    assert_rate_within(report, 0.01);
    assert_eq!(total.histogram().len(), report.requests);
    // Percentiles of the merged histogram, not averages: 40% of the
    // requests took 5 ms more, so p50 is the quick server's and p90 the
    // slow one's.
    assert!(report.latency.p50_ns < 2 * MS, "{report:#?}");
    assert!(report.latency.p90_ns >= 5 * MS, "{report:#?}");
    assert_eq!(
        report.latency.max_ns,
        first.latency.max_ns.max(second.report.latency.max_ns)
    );
}

#[test]
fn counts_error_statuses_and_reconnects_after_close() {
    let _exclusive = exclusive();
    let server = Server::start(Behavior {
        status: Some(503),
        close_every: Some(10),
        ..Behavior::default()
    });
    let report = run(&config(server.url(), 1000.0, 2, 500)).report;
    assert_rate_within(&report, 0.01);
    assert_eq!(report.status_errors, report.requests, "{report:#?}");
    assert_eq!(report.errors, report.requests, "{report:#?}");
    // Each connection reopens after every tenth response.
    assert!(
        report.reconnects.abs_diff(report.requests / 10) <= 2,
        "{report:#?}"
    );
}

#[test]
fn counts_timeouts_and_recovers() {
    let _exclusive = exclusive();
    let server = Server::start(Behavior {
        stall: Some((100, Duration::from_millis(250))),
        ..Behavior::default()
    });
    let report = load::run(&LoadConfig {
        timeout: Duration::from_millis(100),
        ..config(server.url(), 200.0, 2, 1000)
    })
    .unwrap()
    .report;
    println!("{report}");
    // Both connections time out at least twice in the stall, reconnecting
    // each time, and get answers again once it ends.
    assert!(report.timeouts >= 4, "{report:#?}");
    assert!(report.reconnects >= report.timeouts, "{report:#?}");
    assert!(report.requests >= 150, "{report:#?}");
}

#[test]
fn rejects_bad_input() {
    // Keeps the port released below from going to another test's server.
    let _exclusive = exclusive();
    let url = "http://127.0.0.1:9/".to_owned();
    let reject = |config: LoadConfig| load::run(&config).unwrap_err();
    for rate in [0.0, -5.0, f64::NAN, f64::INFINITY] {
        let err = reject(config(url.clone(), rate, 1, 100));
        assert!(matches!(err, LoadError::Rate(_)), "{err}");
    }
    let err = reject(config(url.clone(), 10.0, 0, 100));
    assert!(matches!(err, LoadError::NoConnections), "{err}");
    let err = reject(config(url.clone(), 10.0, 1, 0));
    assert!(matches!(err, LoadError::ZeroDuration("duration")), "{err}");
    for bad in [
        "https://127.0.0.1/",
        "http://127.0.0.1:99999/",
        "127.0.0.1:80",
        "http:///",
    ] {
        let err = reject(config(bad.to_owned(), 10.0, 1, 100));
        assert!(matches!(err, LoadError::Url(_)), "{bad}: {err}");
    }
    let err = reject(config("http://no-such-host.invalid/".into(), 10.0, 1, 100));
    assert!(
        matches!(err, LoadError::Url(UrlError::Resolve { .. })),
        "{err}"
    );

    // A port nothing listens on: bound, then released.
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = reject(config(format!("http://{closed}/"), 10.0, 1, 100));
    let LoadError::Connect { addr, source } = &err else {
        panic!("{err}");
    };
    assert_eq!(
        (*addr, source.kind()),
        (closed, io::ErrorKind::ConnectionRefused)
    );
}

#[test]
fn command_line_writes_json_and_fails_in_one_line() {
    let _exclusive = exclusive();
    let server = Server::start(Behavior::default());
    let json = std::env::temp_dir().join(format!("netprobe-load-{}.json", std::process::id()));
    let netprobe = env!("CARGO_BIN_EXE_netprobe");
    let output = Command::new(netprobe)
        .args([
            "load",
            &server.url(),
            "--rate",
            "500",
            "-c",
            "2",
            "-d",
            "400ms",
        ])
        .args(["--warmup", "100ms", "--pacing", "spin", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let written = std::fs::read_to_string(&json).unwrap();
    std::fs::remove_file(&json).unwrap();
    let report: LoadReport = serde_json::from_str(&written).unwrap();
    assert_eq!(
        (report.requested_rate, report.connections, report.pacing),
        (500.0, 2, Pacing::Spin)
    );
    assert_eq!(report.duration_ns, 400 * MS);
    assert!(
        report.requests > 0 && report.latency.p50_ns > 0,
        "{report:#?}"
    );

    for (args, error) in [
        (&["--rate", "0"][..], "rate must be a positive number"),
        (
            &["--rate", "10", "--connections", "0"],
            "at least one connection",
        ),
        (
            &["--rate", "10", "--duration", "soon"],
            "invalid value 'soon'",
        ),
    ] {
        let output = Command::new(netprobe)
            .args(["load", &server.url()])
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(error), "{args:?}: {stderr}");
        assert!(
            stderr.lines().next().unwrap().contains(error),
            "{args:?}: {stderr}"
        );
    }
}
