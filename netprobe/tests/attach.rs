//! `netprobe attach` on lab topologies with real nginx and real TCP traffic:
//! every expected segment is there in path order and joined, the latencies
//! add up, a delay put at one device shows up in exactly its segment, and
//! nothing stays attached, even after `kill -9`.

mod support;

use std::{
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use aya::{
    EbpfLoader,
    programs::{LinkOrder, SchedClassifier, TcAttachType, tc::TcAttachOptions},
};
use netprobe::{
    bench::IdlePolling,
    discovery,
    lab::{LabGuard, LabSpec, Mode, ResponseSize, unique_prefix},
    netlink,
    netns::NetNs,
    path::{Direction, SegmentKind},
    probes::{ProbeOptions, ProbeSession},
    report::{Latency, Report, Segment},
    status::loaded_netprobe_programs,
};
use support::{
    foreign::TESTING_OBJECT,
    require_root,
    session::{Session, netprobe},
    traffic::{median, round_trips},
};

/// Requests per measurement: enough for stable medians, quick to send.
const REQUESTS: usize = 3000;

/// While a test that times the datapath runs: no other such test, so that
/// its traffic does not land in the latencies, and idle CPUs polling, as in
/// the bench, so that a halted vCPU's wake-up (tens of microseconds, at
/// random) does not swamp the segments compared.
struct Alone {
    _turn: MutexGuard<'static, ()>,
    _polling: IdlePolling,
}

fn alone() -> Alone {
    static TIMING: Mutex<()> = Mutex::new(());
    let turn = TIMING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let polling = IdlePolling::hold(false);
    assert!(polling.holds(), "{}", polling.state);
    Alone {
        _turn: turn,
        _polling: polling,
    }
}

fn lab(mode: Mode) -> LabGuard {
    require_root();
    LabGuard::up(&LabSpec::new(unique_prefix("npat"), mode)).expect("lab up")
}

/// The server's node, where the probes attach.
fn server_node(lab: &LabGuard) -> &str {
    &lab.nodes()[1].netns
}

/// Attaches to the server node's eth0 with `args`, sends `REQUESTS` round
/// trips from the client, and returns the report and the client's median
/// round trip.
fn measure(lab: &LabGuard, args: &[&str]) -> (Report, Duration) {
    let session = Session::start("eth0", server_node(lab), args);
    let rtts = round_trips(
        lab.client_netns(),
        lab.server_addr(),
        ResponseSize::Small.path(),
        REQUESTS,
    );
    (session.stop(), median(&rtts))
}

fn labels(report: &Report, direction: Direction) -> Vec<(String, String)> {
    report
        .segments(direction)
        .map(|segment| (segment.from.clone(), segment.to.clone()))
        .collect()
}

fn pairs(points: &[String]) -> Vec<(String, String)> {
    points
        .windows(2)
        .map(|pair| (pair[0].clone(), pair[1].clone()))
        .collect()
}

/// Every segment of `expected` (points in path order) is present, in that
/// order, with packets, joined at 95% or more, and a positive median; the
/// two directions' medians fit in the client's round trip; and nginx's own
/// time per request is measured.
fn check_breakdown(report: &Report, client_rtt: Duration, ingress: &[&str], egress: &[&str]) {
    for (direction, points) in [(Direction::Ingress, ingress), (Direction::Egress, egress)] {
        let points: Vec<String> = points.iter().map(|point| point.to_string()).collect();
        assert_eq!(
            labels(report, direction),
            pairs(&points),
            "{direction:?} path\n{report}"
        );
        for segment in report.segments(direction) {
            check_segment(segment, report);
        }
    }
    let end_to_end: u64 = report
        .end_to_end
        .iter()
        .map(|total| total.latency.p50_ns)
        .sum();
    assert_eq!(report.end_to_end.len(), 2, "{report}");
    assert!(
        end_to_end <= client_rtt.as_nanos() as u64,
        "request + response medians {end_to_end} ns exceed the client's median round trip {client_rtt:?}\n{report}"
    );
}

fn check_segment(segment: &Segment, report: &Report) {
    let name = format!("{:?} {} -> {}", segment.direction, segment.from, segment.to);
    assert!(segment.latency.count > 0, "{name}: no packets\n{report}");
    assert!(segment.latency.p50_ns > 0, "{name}: zero median\n{report}");
    let coverage = segment.coverage.unwrap_or(0.0);
    assert!(coverage >= 0.95, "{name}: coverage {coverage}\n{report}");
}

#[test]
fn two_nodes_on_the_host_network() {
    let _alone = alone();
    let lab = lab(Mode::Host);
    // Auto leaves XDP off a veth; asked for, it is the first hop.
    let (report, rtt) = measure(&lab, &["--xdp-mode", "generic"]);
    check_breakdown(
        &report,
        rtt,
        &["eth0 XDP", "eth0 TC ingress", "socket read"],
        &["socket write", "eth0 TC egress", "eth0 net_dev_start_xmit"],
    );
}

#[test]
fn pods_behind_a_bridge() {
    let _alone = alone();
    let lab = lab(Mode::FlannelHostgw);
    let pod = format!("pod eth0@{}", lab.server_netns());
    let (report, rtt) = measure(&lab, &[]);
    // The lab's NIC is a veth: auto leaves XDP off it, and says so.
    assert!(
        report
            .unobserved
            .iter()
            .any(|hook| hook.hook == "XDP" && hook.reason.contains("is a veth")),
        "{report}"
    );
    check_breakdown(
        &report,
        rtt,
        &["eth0 TC ingress", "cni0", "veth1", &pod, "socket read"],
        &[
            "socket write",
            &pod,
            "veth1",
            "cni0",
            "eth0 TC egress",
            "eth0 net_dev_start_xmit",
        ],
    );
}

#[test]
fn pods_behind_a_vxlan_overlay() {
    let _alone = alone();
    let lab = lab(Mode::FlannelVxlan);
    let pod = format!("pod eth0@{}", lab.server_netns());
    let (report, rtt) = measure(&lab, &[]);
    check_breakdown(
        &report,
        rtt,
        &[
            "eth0 TC ingress",
            "flannel.1",
            "cni0",
            "veth1",
            &pod,
            "socket read",
        ],
        &[
            "socket write",
            &pod,
            "veth1",
            "cni0",
            "flannel.1",
            "eth0 TC egress",
            "eth0 net_dev_start_xmit",
        ],
    );
}

#[test]
fn pods_on_macvlan() {
    let _alone = alone();
    let lab = lab(Mode::Macvlan);
    let pod = format!("pod eth0@{}", lab.server_netns());
    let (report, rtt) = measure(&lab, &[]);
    // A macvlan delivers to its pod within one pass through the receive
    // path (RX_HANDLER_ANOTHER), past the pod's netif_receive_skb: on
    // ingress the NIC's TC is the last device point.
    check_breakdown(
        &report,
        rtt,
        &["eth0 TC ingress", "socket read"],
        &[
            "socket write",
            &pod,
            "eth0 TC egress",
            "eth0 net_dev_start_xmit",
        ],
    );
}

const DELAY_NS: u64 = 50_000;

#[test]
fn a_paused_session_runs_no_program_until_resumed_a_quiesced_one_only_its_devices() {
    let _alone = alone();
    let lab = lab(Mode::Host);
    let node = NetNs::named(server_node(&lab)).expect("server node");
    let datapath = discovery::discover("eth0", &node).expect("the node's path");
    let options = ProbeOptions {
        skip_cost: false,
        ..ProbeOptions::default()
    };
    let mut session = ProbeSession::start(&datapath, &node, &options).expect("probes attach");
    // Each program's runs over some round trips.
    let runs = |session: &ProbeSession| {
        let before = session.program_costs().expect("costs");
        round_trips(
            lab.client_netns(),
            lab.server_addr(),
            ResponseSize::Small.path(),
            200,
        );
        let after = session.program_costs().expect("costs");
        after
            .into_iter()
            .zip(before)
            .map(|(after, before)| (after.program, after.run_cnt - before.run_cnt))
            .collect::<Vec<_>>()
    };
    session.pause();
    let paused = runs(&session);
    session.resume().expect("probes resume");
    let resumed = runs(&session);
    session.quiesce();
    let quiesced = runs(&session);
    session.resume().expect("probes resume after quiescing");
    let resumed_again = runs(&session);

    assert!(resumed.len() >= 4, "{resumed:?}");
    for (((program, paused_runs), (_, resumed_runs)), ((_, quiesced_runs), (_, again))) in paused
        .iter()
        .zip(&resumed)
        .zip(quiesced.iter().zip(&resumed_again))
    {
        assert_eq!(*paused_runs, 0, "{program} ran while paused: {paused:?}");
        assert!(*resumed_runs >= 200, "{program}: {resumed:?}");
        assert!(*again >= 200, "{program}: {resumed_again:?}");
        // Quiesced, only the programs on the node's own device run: the
        // tracepoints' would see every namespace's packets.
        if program.starts_with("np_tc_") {
            assert!(*quiesced_runs >= 200, "{program}: {quiesced:?}");
        } else {
            assert_eq!(*quiesced_runs, 0, "{program} ran quiesced: {quiesced:?}");
        }
    }
}

#[test]
fn a_delay_at_one_device_shows_in_exactly_its_segment() {
    let _alone = alone();
    let lab = lab(Mode::FlannelHostgw);
    let (baseline, _) = measure(&lab, &[]);

    // A busy-wait in TC egress of the pod's veth: it runs before the
    // net_dev_queue tracepoint of that veth, so on the request path the
    // bridge-to-veth segment grows by the delay.
    let node = NetNs::named(server_node(&lab)).expect("server node");
    let mut testing = EbpfLoader::new()
        .override_global("DELAY_NS", &DELAY_NS, true)
        .load(TESTING_OBJECT)
        .expect("testing object loads");
    let delay: &mut SchedClassifier = testing
        .program_mut("np_test_delay")
        .expect("delay program")
        .try_into()
        .expect("classifier");
    delay.load().expect("delay program loads");
    {
        let _in_node = node.enter().expect("enter server node");
        delay
            .attach_with_options(
                "veth1",
                TcAttachType::Egress,
                TcAttachOptions::TcxOrder(LinkOrder::default()),
            )
            .expect("delay attaches to veth1");
    }
    let (delayed, _) = measure(&lab, &[]);
    drop(testing);

    for (before, after) in baseline.segments.iter().zip(&delayed.segments) {
        assert_eq!((&before.from, &before.to), (&after.from, &after.to));
        let grew = after.latency.p50_ns as f64 - before.latency.p50_ns as f64;
        let name = format!("{:?} {} -> {}", before.direction, before.from, before.to);
        if before.direction == Direction::Ingress && before.from == "cni0" && before.to == "veth1" {
            let expected = DELAY_NS as f64;
            assert!(
                (grew - expected).abs() <= 0.2 * expected,
                "{name} grew by {grew} ns, not {expected} ns ±20%\nbefore:\n{baseline}\nafter:\n{delayed}"
            );
        } else if before.kind != SegmentKind::Stack {
            // None of the delay leaks into another device's segment. (The
            // stack segments hold the server's wake-up, which swings by tens
            // of microseconds when other tests load the machine; the delay
            // runs before them.)
            assert!(
                grew < 0.2 * DELAY_NS as f64,
                "{name} grew by {grew} ns\nbefore:\n{baseline}\nafter:\n{delayed}"
            );
        }
    }
}

#[test]
fn kill_9_leaves_nothing_attached() {
    let _alone = alone();
    let lab = lab(Mode::FlannelVxlan);
    let session = Session::start("eth0", server_node(&lab), &[]);
    let pid = session.pid();
    let ours: Vec<u32> = loaded_netprobe_programs()
        .expect("list programs")
        .into_iter()
        .filter(|program| program.holders.iter().any(|holder| holder.pid == pid))
        .map(|program| program.id)
        .collect();
    assert!(!ours.is_empty(), "the session holds no program");
    session.kill();

    // Links and programs go with the last descriptor; the kernel frees
    // them asynchronously, so wait for it, with a bound.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<_> = loaded_netprobe_programs()
            .expect("list programs")
            .into_iter()
            .filter(|program| ours.contains(&program.id))
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still loaded after kill -9: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let node = NetNs::named(server_node(&lab)).expect("server node");
    let links = node
        .run(netlink::links)
        .expect("enter node")
        .expect("links");
    let eth0 = links.iter().find(|link| link.name == "eth0").expect("eth0");
    assert_eq!(eth0.xdp_prog_id, None, "XDP still attached after kill -9");
    // And the path still works.
    assert_eq!(lab.fetch(ResponseSize::Small).expect("fetch").status, 200);
}

#[test]
fn with_and_without_adjust_the_discovered_path() {
    let _alone = alone();
    let lab = lab(Mode::FlannelVxlan);
    let node = server_node(&lab);
    let output = netprobe(&[
        "attach",
        "eth0",
        "--netns",
        node,
        "--duration",
        "1s",
        "--quiet",
        "--without",
        "flannel.1",
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout.contains("eth0 TC ingress [TC ingress] -> cni0 [net_dev_queue]"),
        "{stdout}"
    );
    assert!(!stdout.contains("flannel.1 ["), "{stdout}");

    // A device in another namespace is placed as a pod.
    let client_node = &lab.nodes()[0].netns;
    let extra = format!("eth0@{client_node}");
    let output = netprobe(&[
        "attach",
        "eth0",
        "--netns",
        node,
        "--duration",
        "1s",
        "--quiet",
        "--with",
        &extra,
    ]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains("2 pods [netif_receive_skb]"), "{stdout}");

    let output = netprobe(&["attach", "eth0", "--netns", node, "--with", "lo"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot tell what lo is on the path"),
        "{stderr}"
    );
}

#[test]
fn the_fast_path_removes_the_vxlan_and_bridge_segments() {
    let _alone = alone();
    let lab = lab(Mode::FlannelVxlan);
    let node = server_node(&lab);
    // Kernel path and fast path in turn, three times each: one run's median
    // swings with the server's wake-ups.
    let mut kernel_runs = Vec::new();
    let mut fast_runs = Vec::new();
    for _ in 0..3 {
        kernel_runs.push(measure(&lab, &[]).0);
        let enable = netprobe(&[
            "fastpath", "enable", "eth0", "--netns", node, "--hook", "tc",
        ]);
        assert!(enable.status.success(), "{enable:?}");
        fast_runs.push(measure(&lab, &[]).0);
        let disable = netprobe(&["fastpath", "disable", "eth0", "--netns", node]);
        assert!(disable.status.success(), "{disable:?}");
    }
    let (kernel, fast) = (&kernel_runs[0], &fast_runs[0]);
    for report in &kernel_runs {
        assert!(
            report.path.ingress.iter().any(|point| point == "flannel.1"),
            "{report}"
        );
    }
    for report in &fast_runs {
        assert_eq!(
            report.path.ingress,
            ["eth0 TC ingress", "socket read"],
            "{report}"
        );
    }
    let ingress = |report: &Report| {
        report
            .end_to_end
            .iter()
            .find(|total| total.direction == Direction::Ingress)
            .map(|total| total.latency.clone())
            .expect("ingress end to end")
    };
    let median_of = |runs: &[Report], pick: fn(&Latency) -> u64| {
        let mut values: Vec<u64> = runs.iter().map(|report| pick(&ingress(report))).collect();
        values.sort_unstable();
        values[values.len() / 2]
    };
    let p50 = |latency: &Latency| latency.p50_ns;
    // What the vxlan device, the routing and the bridge took does not
    // reappear elsewhere: the median request reaches nginx sooner.
    let (fast_p50, kernel_p50) = (median_of(&fast_runs, p50), median_of(&kernel_runs, p50));
    assert!(
        fast_p50 < kernel_p50,
        "median of the runs' medians: fast path {fast_p50} ns, kernel path {kernel_p50} ns\n\
         kernel path:\n{kernel}\nfast path:\n{fast}"
    );
}
