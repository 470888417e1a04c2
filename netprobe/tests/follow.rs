//! Following one packet in N: every hop of both nodes follows the same
//! packets, so segments keep their coverage and a packet leaving one node
//! is found arriving at the other; traffic in a namespace nothing watches
//! runs none of the probes' work past their early exit; and probes loaded
//! hooks-only run on every hook of their path and record nothing.

mod support;

use std::collections::HashSet;

use aya::maps::{MapData, RingBuf};
use netprobe::{
    discovery,
    hooks::{Attachment, HOP_PROGRAMS},
    lab::{LabGuard, LabSpec, Mode, unique_prefix},
    netns::NetNs,
    path::Direction,
    probes::{
        DEFAULT_FOLLOW_ONE_IN, Fingerprint, ProbeOptions, ProbeSession, ProgramCost, SampledFlight,
        Snapshot,
    },
    report::{Report, ReportContext},
};
use support::{require_root, traffic::small_round_trips};

/// Requests per test: at one in 32, about 250 packets followed each way.
const REQUESTS: usize = 8000;

fn lab(mode: Mode) -> LabGuard {
    require_root();
    LabGuard::up(&LabSpec::new(unique_prefix("npfo"), mode)).expect("lab up")
}

fn attach(netns: &str, options: &ProbeOptions) -> ProbeSession {
    let node = NetNs::named(netns).expect("node");
    let datapath = discovery::discover("eth0", &node).expect("the node's path");
    ProbeSession::start(&datapath, &node, options).expect("probes attach")
}

fn report(session: &ProbeSession) -> Report {
    let context = ReportContext {
        interface: "eth0",
        netns: None,
        filter: None,
        xdp_mode: None,
        duration_s: 0.0,
        follow_one_in: session.follow_one_in(),
    };
    Report::new(
        &context,
        session.path(),
        &session.snapshot().expect("snapshot"),
        0,
        session.unobserved(),
        Vec::new(),
        Vec::new(),
    )
}

fn drain(traces: &mut RingBuf<MapData>) -> Vec<SampledFlight> {
    ProbeSession::drain_traces(traces)
}

/// The packets of `flights` seen whole in `direction`.
fn packets(flights: &[SampledFlight], direction: Direction) -> HashSet<Fingerprint> {
    flights
        .iter()
        .filter(|flight| flight.direction == direction && flight.whole)
        .map(|flight| flight.packet)
        .collect()
}

/// The share of the packets `sent` leaving one node that `received` has
/// arriving at the other.
fn found(sent: &HashSet<Fingerprint>, received: &HashSet<Fingerprint>) -> f64 {
    sent.intersection(received).count() as f64 / sent.len() as f64
}

#[test]
fn both_nodes_follow_the_same_packets_at_the_default_rate() {
    let lab = lab(Mode::FlannelVxlan);
    // Every followed flight that completes goes to userspace.
    let options = ProbeOptions {
        sample_every: DEFAULT_FOLLOW_ONE_IN,
        ..ProbeOptions::default()
    };
    let mut client = attach(&lab.nodes()[0].netns, &options);
    let mut server = attach(&lab.nodes()[1].netns, &options);
    let (mut client_traces, mut server_traces) = (
        client.take_traces().expect("ring"),
        server.take_traces().expect("ring"),
    );
    small_round_trips(&lab, REQUESTS);
    let (client_traces, server_traces) = (drain(&mut client_traces), drain(&mut server_traces));

    for (node, session) in [("client", &client), ("server", &server)] {
        let report = report(session);
        assert_eq!(report.follow_one_in, DEFAULT_FOLLOW_ONE_IN);
        for segment in &report.segments {
            let name = format!(
                "{node} {:?} {} -> {}",
                segment.direction, segment.from, segment.to
            );
            // One request in 32 or so is followed each way.
            assert!(
                segment.latency.count >= 100,
                "{name}: {}\n{report}",
                segment.latency.count
            );
            let coverage = segment.coverage.unwrap_or(0.0);
            assert!(coverage >= 0.95, "{name}: coverage {coverage}\n{report}");
        }
    }
    // A request followed out of the client's node is followed into the
    // server's, and a response back.
    let requests = (
        packets(&client_traces, Direction::Egress),
        packets(&server_traces, Direction::Ingress),
    );
    let responses = (
        packets(&server_traces, Direction::Egress),
        packets(&client_traces, Direction::Ingress),
    );
    for (what, (sent, received)) in [("requests", requests), ("responses", responses)] {
        assert!(sent.len() >= 100, "{what}: {} followed", sent.len());
        let share = found(&sent, &received);
        assert!(
            share >= 0.95,
            "{what}: {share:.3} of {} found on the other node",
            sent.len()
        );
    }
}

/// Each program's runs between two readings of the statistics.
fn runs(before: &[ProgramCost], after: &[ProgramCost]) -> Vec<(String, u64)> {
    after
        .iter()
        .map(|now| {
            let then = before
                .iter()
                .find(|then| then.program == now.program)
                .map_or(0, |then| then.run_cnt);
            (now.program.clone(), now.run_cnt - then)
        })
        .collect()
}

/// Whether the session recorded anything: a latency, a count, a packet in
/// its flight table, a socket read or write.
fn recorded(session: &ProbeSession, since: &Snapshot) -> Vec<String> {
    let snapshot = session.snapshot().expect("snapshot").since(since);
    let mut recorded = Vec::new();
    for (slot, histogram) in snapshot.histograms.iter().enumerate() {
        if histogram.count > 0 {
            recorded.push(format!("histogram {slot}: {}", histogram.count));
        }
    }
    for (slot, stats) in snapshot.hop_stats.iter().enumerate() {
        let counted = stats.seen + stats.unjoined + stats.skipped + stats.evicted + stats.expired;
        if counted > 0 {
            recorded.push(format!("hop stats {slot}: {stats:?}"));
        }
    }
    let loaded = session.loaded();
    let flights = loaded.flights().expect("flights").len();
    let writes = loaded.socket_writes().expect("socket writes").len();
    let reads = loaded.socket_reads().expect("socket reads").len();
    for (what, count) in [
        ("flights", flights),
        ("socket writes", writes),
        ("socket reads", reads),
    ] {
        if count > 0 {
            recorded.push(format!("{what}: {count}"));
        }
    }
    recorded
}

#[test]
fn traffic_nothing_watches_runs_nothing_past_the_early_exit() {
    let watched = lab(Mode::FlannelVxlan);
    let busy = lab(Mode::Host);
    // Every packet followed: any packet that got past an early exit would
    // be recorded somewhere.
    let options = ProbeOptions {
        follow_one_in: 1,
        program_cost: true,
        ..ProbeOptions::default()
    };
    let session = attach(&watched.nodes()[1].netns, &options);
    let start = session.snapshot().expect("snapshot");
    assert_eq!(recorded(&session, &start), Vec::<String>::new());

    let before = session.program_costs().expect("costs");
    small_round_trips(&busy, 1000);
    let unwatched = runs(&before, &session.program_costs().expect("costs"));
    let hook_of = |program: &str| {
        session
            .path()
            .programs()
            .into_iter()
            .find(|placed| placed.name == program)
            .map(|placed| placed.hook)
            .expect("a program of the path")
    };
    for (program, count) in &unwatched {
        match hook_of(program).definition().attachment {
            // On the watched devices only: the other lab's 1000 requests
            // never reach them. The watched lab's own new devices may send
            // a link-local packet or two meanwhile (in one CI run, one
            // crossed cni0, veth1 and the pod's eth0).
            Attachment::Xdp | Attachment::Tcx { .. } => {
                assert!(*count < 10, "{program} ran: {unwatched:?}");
            }
            // Every socket and device of the machine fires these; their
            // early exit dismissed the other lab's.
            Attachment::Tracepoint(_) => {
                assert!(*count >= 1000, "{program} did not run: {unwatched:?}");
            }
        }
    }
    assert!(
        unwatched
            .iter()
            .any(|(program, _)| HOP_PROGRAMS.iter().flatten().any(|hop| hop == program)),
        "{unwatched:?}"
    );
    assert_eq!(recorded(&session, &start), Vec::<String>::new());

    // The same probes record the watched lab's traffic: the test can fail.
    small_round_trips(&watched, 100);
    let report = report(&session);
    let socket = report
        .segments(Direction::Ingress)
        .last()
        .expect("a socket segment");
    assert!(socket.latency.count >= 100, "{report}");
    assert!(!recorded(&session, &start).is_empty());
}

#[test]
fn hooks_only_runs_every_program_of_the_path_and_records_nothing() {
    let lab = lab(Mode::FlannelVxlan);
    // Every packet followed: a program that did more than return would
    // record the lab's traffic somewhere.
    let options = ProbeOptions {
        follow_one_in: 1,
        program_cost: true,
        hooks_only: true,
        ..ProbeOptions::default()
    };
    let session = attach(&lab.nodes()[1].netns, &options);
    let start = session.snapshot().expect("snapshot");
    let before = session.program_costs().expect("costs");
    small_round_trips(&lab, 200);
    let ran = runs(&before, &session.program_costs().expect("costs"));
    let programs = session.path().programs();
    assert!(programs.len() >= 10, "{programs:?}");
    for program in programs {
        let count = ran
            .iter()
            .find(|(name, _)| name == program.name)
            .map_or(0, |(_, count)| *count);
        assert!(count >= 200, "{} ran {count} times: {ran:?}", program.name);
    }
    assert_eq!(recorded(&session, &start), Vec::<String>::new());
}
