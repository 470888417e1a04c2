//! `netprobe attach` on lab topologies with real nginx and real TCP traffic:
//! every expected segment is there in path order and joined, the latencies
//! add up, a delay put at one device shows up in exactly its segment, and
//! nothing stays attached, even after `kill -9`.

mod support;

use std::{
    net::SocketAddrV4,
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use aya::{
    EbpfLoader,
    programs::{LinkOrder, SchedClassifier, TcAttachType, tc::TcAttachOptions},
    sys::{Stats, enable_stats},
};
use netprobe::{
    bench::IdlePolling,
    discovery,
    hooks::HOP_PROGRAMS,
    lab::{LabGuard, LabSpec, Mode, ResponseSize, unique_prefix},
    netns::NetNs,
    path::Direction,
    probes::{ProbeOptions, ProbeSession, TESTING_OBJECT},
    report::{Latency, Report, Segment},
    status::loaded_netprobe_programs,
};
use netprobe_common::histogram::{bucket_index, bucket_width};
use support::{
    hooks::DeviceHooks,
    require_root,
    session::{Session, attach_for_a_second, netprobe},
    traffic::{median, round_trips, serve_one_connection, small_round_trips},
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
    let rtts = small_round_trips(lab, REQUESTS);
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
    for total in &report.end_to_end {
        assert!(total.latency.count > 0, "{total:?}\n{report}");
    }
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
    // Auto leaves XDP off a veth; asked for, it is the first hop. --qdisc
    // adds the NIC's qdisc, up to the driver.
    let (report, rtt) = measure(&lab, &["--xdp-mode", "generic", "--qdisc"]);
    check_breakdown(
        &report,
        rtt,
        &["eth0 XDP", "eth0 TC ingress", "socket read"],
        &["socket write", "eth0 TC egress", "eth0 net_dev_start_xmit"],
    );
    // Without it the egress path ends at TC egress, even with every packet
    // followed.
    let (report, rtt) = measure(&lab, &["--follow-one-in", "1"]);
    check_breakdown(
        &report,
        rtt,
        &["eth0 TC ingress", "socket read"],
        &["socket write", "eth0 TC egress"],
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
        &["socket write", &pod, "veth1", "cni0", "eth0 TC egress"],
    );
}

#[test]
fn pods_behind_a_vxlan_overlay() {
    let _alone = alone();
    let lab = lab(Mode::FlannelVxlan);
    let pod = format!("pod eth0@{}", lab.server_netns());
    let (report, rtt) = measure(&lab, &[]);
    check_vxlan_breakdown(&report, rtt, &pod);
}

/// [`check_breakdown`] for flannel's VXLAN through the kernel: the vxlan
/// device and the bridge both ways.
fn check_vxlan_breakdown(report: &Report, rtt: Duration, pod: &str) {
    check_breakdown(
        report,
        rtt,
        &[
            "eth0 TC ingress",
            "flannel.1",
            "cni0",
            "veth1",
            pod,
            "socket read",
        ],
        &[
            "socket write",
            pod,
            "veth1",
            "cni0",
            "flannel.1",
            "eth0 TC egress",
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
        &["socket write", &pod, "eth0 TC egress"],
    );
}

const DELAY_NS: u64 = 50_000;

/// What a segment next to the delay may move by beyond its noise: a CPU
/// that spun for the delay in softirq goes on with colder caches (in CI
/// the pod's veth segment, right after the delayed one, took 112 ns
/// longer against 80 ns of noise). A probe on the wrong hook would move
/// the whole delay, a hundred times this.
const DELAY_SIDE_EFFECT_NS: u64 = DELAY_NS / 100;

#[test]
fn a_paused_session_runs_no_program_until_resumed_a_quiesced_one_only_its_devices() {
    let _alone = alone();
    let lab = lab(Mode::Host);
    let node = NetNs::named(server_node(&lab)).expect("server node");
    let datapath = discovery::discover("eth0", &node).expect("the node's path");
    let options = ProbeOptions {
        program_cost: true,
        ..ProbeOptions::default()
    };
    let mut session = ProbeSession::start(&datapath, &node, &options).expect("probes attach");
    // Each program's runs over some round trips.
    let runs = |session: &ProbeSession| {
        let before = session.program_costs().expect("costs");
        small_round_trips(&lab, 200);
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
        if HOP_PROGRAMS
            .iter()
            .flatten()
            .any(|device| device == program)
        {
            assert!(*quiesced_runs >= 200, "{program}: {quiesced:?}");
        } else {
            assert_eq!(*quiesced_runs, 0, "{program} ran quiesced: {quiesced:?}");
        }
    }
}

/// Control and delayed runs of the delay test, each: a segment's median
/// moves from one run to the next, and how far is its noise.
const DELAY_RUNS: usize = 3;

#[test]
fn a_delay_at_one_device_shows_in_exactly_its_segment() {
    let _alone = alone();
    let lab = lab(Mode::FlannelHostgw);
    let node = NetNs::named(server_node(&lab)).expect("server node");
    let client_node = NetNs::named(&lab.nodes()[0].netns).expect("client node");
    // A busy-wait in TC egress of the pod's veth: it runs before the
    // net_dev_queue tracepoint of that veth, so on the request path the
    // bridge-to-veth segment grows by the delay. The control runs put the
    // same busy-wait on the client node's eth0, outside what the probes
    // measure: every request then takes as long, and the server's CPUs
    // idle as long between two, as with the delay at the veth. Control and
    // delayed runs in turn, so that a drift of the machine falls on both.
    // Every packet followed, so that a run's medians are of all its packets
    // and the noise is the machine's, not that of which packets were picked.
    let every_packet = ["--follow-one-in", "1"];
    let (mut control, mut delayed, mut delays) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..DELAY_RUNS {
        control.push(with_delay(&client_node, "eth0", || measure(&lab, &every_packet).0).0);
        let (report, delay) = with_delay(&node, "veth1", || measure(&lab, &every_packet).0);
        delayed.push(report);
        delays.push(delay);
    }
    // The delay as it ran: the busy-wait overshoots DELAY_NS a little.
    delays.sort_unstable();
    let delay = delays[delays.len() / 2];
    assert!(delay >= DELAY_NS, "the delay program ran {delay} ns");

    let reference = &control[0];
    for report in control.iter().chain(&delayed) {
        for direction in Direction::BOTH {
            assert_eq!(
                labels(report, direction),
                labels(reference, direction),
                "every run has the same {direction:?} segments\n{report}\n{reference}"
            );
        }
    }
    let is_target = |segment: &Segment| {
        segment.direction == Direction::Ingress && segment.from == "cni0" && segment.to == "veth1"
    };
    assert_eq!(
        reference.segments.iter().filter(|s| is_target(s)).count(),
        1,
        "the delayed segment is on the path\n{reference}"
    );

    // Every segment, the stack's too, moves by the delay if it is the
    // delayed one and by no more than its noise otherwise.
    let mut compared = 0;
    for (index, segment) in reference.segments.iter().enumerate() {
        let latencies = |reports: &[Report]| -> Vec<Latency> {
            reports
                .iter()
                .map(|report| report.segments[index].latency.clone())
                .collect()
        };
        let expected = if is_target(segment) { delay } else { 0 };
        let name = format!("{:?} {} -> {}", segment.direction, segment.from, segment.to);
        Shift::between(&latencies(&control), &latencies(&delayed)).check(&name, expected);
        compared += usize::from(is_target(segment));
    }
    assert_eq!(compared, 1, "the delayed segment was compared");
    // End to end, the request takes the delay longer and the response no
    // longer: no stack segment absorbed the delay by shrinking, nor hides a
    // share of it in its noise without the total showing it.
    for direction in Direction::BOTH {
        let latencies = |reports: &[Report]| -> Vec<Latency> {
            reports
                .iter()
                .map(|report| end_to_end(report, direction))
                .collect()
        };
        let expected = if direction == Direction::Ingress {
            delay
        } else {
            0
        };
        Shift::between(&latencies(&control), &latencies(&delayed))
            .check(&format!("{direction:?} end to end"), expected);
    }
}

/// Runs `measure` with a busy-wait of [`DELAY_NS`] per packet in TC egress
/// of `device` in `node`, first in its tcx chain. Returns what `measure`
/// returns and how long the busy-wait took per packet, as the kernel's
/// run-time statistics saw it (on for the while).
fn with_delay<T>(node: &NetNs, device: &str, measure: impl FnOnce() -> T) -> (T, u64) {
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
        let _in_node = node.enter().expect("enter the node");
        delay
            .attach_with_options(
                device,
                TcAttachType::Egress,
                TcAttachOptions::TcxOrder(LinkOrder::default()),
            )
            .expect("the delay attaches");
    }
    let stats = enable_stats(Stats::RunTime).expect("bpf run-time statistics");
    let result = measure();
    let info = delay.info().expect("delay program info");
    drop(stats);
    assert!(info.run_count() > 0, "the delay program never ran");
    let per_packet = info.run_time().as_nanos() as u64 / info.run_count();
    (result, per_packet)
}

fn end_to_end(report: &Report, direction: Direction) -> Latency {
    report
        .end_to_end
        .iter()
        .find(|total| total.direction == direction)
        .map(|total| total.latency.clone())
        .expect("end to end latency")
}

/// How far one latency's median moved from the control runs to the
/// delayed ones, and how far it moves without a cause.
struct Shift {
    control: Vec<u64>,
    delayed: Vec<u64>,
    grew: f64,
    noise: f64,
}

impl Shift {
    /// The change is the median of the delayed runs' medians less that of
    /// the control runs'. The noise, all measured, is the largest of
    /// - how far the medians of the runs of one setup lie apart (the
    ///   machine drifts from run to run), and
    /// - the p50-to-p90 spread of any control run (a run that catches more
    ///   of the slow packets, e.g. of the server's wake-up in the stack
    ///   segments, has its median further up; the control's alone, since a
    ///   delay that reaches some of a segment's packets widens the delayed
    ///   runs' spread),
    ///
    /// plus the resolution of the two medians compared: the widths of the
    /// histogram buckets they fall in.
    fn between(control: &[Latency], delayed: &[Latency]) -> Self {
        let medians = |runs: &[Latency]| {
            let mut medians: Vec<u64> = runs.iter().map(|run| run.p50_ns).collect();
            medians.sort_unstable();
            medians
        };
        let (before, after) = (medians(control), medians(delayed));
        let middle = |sorted: &[u64]| sorted[sorted.len() / 2];
        let range = |sorted: &[u64]| sorted[sorted.len() - 1] - sorted[0];
        let spread = control
            .iter()
            .map(|run| run.p90_ns - run.p50_ns)
            .max()
            .unwrap_or(0);
        let resolution = |median: u64| bucket_width(bucket_index(median));
        let (from, to) = (middle(&before), middle(&after));
        Self {
            grew: to as f64 - from as f64,
            noise: (range(&before).max(range(&after)).max(spread)
                + resolution(from)
                + resolution(to)) as f64,
            control: before,
            delayed: after,
        }
    }

    /// Checks the change is `expected` within the noise and the delay's
    /// side effect. Where nothing is expected, a latency may still shrink:
    /// the delay upstream spaces the packets out, and a segment where they
    /// queued gets shorter (in one CI run the NIC's qdisc went from 571 to
    /// 373 ns). What must not happen is the delay's time showing up there.
    fn check(&self, name: &str, expected: u64) {
        let off = self.grew - expected as f64;
        let bound = self.noise + DELAY_SIDE_EFFECT_NS as f64;
        let within = if expected == 0 {
            off <= bound
        } else {
            off.abs() <= bound
        };
        assert!(
            within,
            "{name} grew by {} ns, not {expected} ns ± {} ns of noise \
             and {DELAY_SIDE_EFFECT_NS} ns of the delay's side effect \
             (medians, control runs {:?}, delayed runs {:?})",
            self.grew, self.noise, self.control, self.delayed
        );
    }
}

#[test]
fn kill_9_leaves_nothing_attached() {
    let _alone = alone();
    let lab = lab(Mode::FlannelVxlan);
    let node = NetNs::named(server_node(&lab)).expect("server node");
    // Generic XDP: auto leaves XDP off a veth, and then nothing could be
    // left on that hook.
    let session = Session::start("eth0", server_node(&lab), &["--xdp-mode", "generic"]);
    let pid = session.pid();
    let ours: Vec<u32> = loaded_netprobe_programs()
        .expect("list programs")
        .into_iter()
        .filter(|program| program.holders.iter().any(|holder| holder.pid == pid))
        .map(|program| program.id)
        .collect();
    let attached = DeviceHooks::of(&node, "eth0");
    let on_hook = |programs: &[u32]| programs.iter().any(|id| ours.contains(id));
    assert!(
        attached.xdp.is_some_and(|id| ours.contains(&id))
            && on_hook(&attached.tcx_ingress)
            && on_hook(&attached.tcx_egress),
        "the session's programs {ours:?} hold eth0's XDP and tcx hooks: {attached:?}"
    );
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
    let after = DeviceHooks::of(&node, "eth0");
    assert_eq!(after.xdp, None, "XDP still attached after kill -9");
    assert!(
        !after.programs().any(|id| ours.contains(&id)),
        "still on eth0's hooks after kill -9: {after:?}"
    );
    // And the path still works.
    assert_eq!(lab.fetch(ResponseSize::Small).expect("fetch").status, 200);
}

#[test]
fn with_and_without_adjust_the_discovered_path() {
    let _alone = alone();
    let lab = lab(Mode::FlannelVxlan);
    let node = server_node(&lab);
    let output = attach_for_a_second(node, &["--without", "flannel.1"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("eth0 TC ingress [TC ingress] -> cni0 [tcx egress]"),
        "{stdout}"
    );
    assert!(!stdout.contains("flannel.1 ["), "{stdout}");

    // A device in another namespace is placed as a pod.
    let client_node = &lab.nodes()[0].netns;
    let extra = format!("eth0@{client_node}");
    let output = attach_for_a_second(node, &["--with", &extra]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("2 pods [tcx ingress]"), "{stdout}");

    let output = netprobe(&["attach", "eth0", "--netns", node, "--with", "lo"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot tell what lo is on the path"),
        "{stderr}"
    );
}

#[test]
fn the_fast_path_removes_the_vxlan_and_bridge_segments_both_ways() {
    let _alone = alone();
    let lab = lab(Mode::FlannelVxlan);
    let node = server_node(&lab);
    let pod = format!("pod eth0@{}", lab.server_netns());
    // Kernel path and fast path in turn, three times each: one run's median
    // swings with the server's wake-ups.
    let mut kernel_runs = Vec::new();
    let mut fast_runs = Vec::new();
    for _ in 0..3 {
        let (report, rtt) = measure(&lab, &[]);
        check_vxlan_breakdown(&report, rtt, &pod);
        kernel_runs.push(report);
        let enable = netprobe(&["fastpath", "enable", "eth0", "--netns", node]);
        assert!(enable.status.success(), "{enable:?}");
        let (report, rtt) = measure(&lab, &[]);
        // Arriving, the fast path hands the packet to the pod's socket;
        // leaving, it takes it from the pod's veth to the NIC.
        check_breakdown(
            &report,
            rtt,
            &["eth0 TC ingress", "socket read"],
            &["socket write", &pod, "veth1", "eth0 TC egress"],
        );
        fast_runs.push(report);
        let disable = netprobe(&["fastpath", "disable", "eth0", "--netns", node]);
        assert!(disable.status.success(), "{disable:?}");
    }
    let (kernel, fast) = (&kernel_runs[0], &fast_runs[0]);
    let median_of = |runs: &[Report], direction: Direction| {
        let mut values: Vec<u64> = runs
            .iter()
            .map(|report| end_to_end(report, direction).p50_ns)
            .collect();
        values.sort_unstable();
        values[values.len() / 2]
    };
    // What the vxlan device, the routing and the bridge took does not
    // reappear elsewhere: the median request reaches nginx sooner, and the
    // median response leaves the node sooner.
    for direction in Direction::BOTH {
        let (fast_p50, kernel_p50) = (
            median_of(&fast_runs, direction),
            median_of(&kernel_runs, direction),
        );
        assert!(
            fast_p50 < kernel_p50,
            "{direction:?}, median of the runs' medians: fast path {fast_p50} ns, kernel path \
             {kernel_p50} ns\nkernel path:\n{kernel}\nfast path:\n{fast}"
        );
    }
}

#[test]
fn by_pod_counts_each_pods_segments_apart_and_node_wide_ones_over_both() {
    let _alone = alone();
    require_root();
    let spec = LabSpec {
        pods_per_node: 2,
        ..LabSpec::new(unique_prefix("npat"), Mode::FlannelHostgw)
    };
    let lab = LabGuard::up(&spec).expect("lab up");
    let pods = &lab.nodes()[1].pods;
    // nginx serves in the first pod; the test serves in the second.
    let second = SocketAddrV4::new(pods[1].ip, 8080);
    let server = serve_one_connection(&pods[1].netns, second);
    let session = Session::start(
        "eth0",
        server_node(&lab),
        &["--by-pod", "--follow-one-in", "1"],
    );
    let sent: [usize; 2] = [300, 500];
    small_round_trips(&lab, sent[0]);
    round_trips(lab.client_netns(), second, "/", sent[1]);
    let report = session.stop();
    assert_eq!(server.join().expect("second server"), sent[1]);
    let count = |direction, from: &str, to: &str, pod: Option<&str>| -> u64 {
        let found: Vec<&Segment> = report
            .segments(direction)
            .filter(|segment| {
                segment.from == from && segment.to == to && segment.pod.as_deref() == pod
            })
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{direction:?} {from} -> {to} of {pod:?}\n{report}"
        );
        found[0].latency.count
    };
    // Every packet followed: each pod's rows count its own requests (in)
    // and responses (out), one segment each, but for the odd one lost.
    let close = |counted: u64, expected: u64, what: &str| {
        assert!(
            counted <= expected && counted * 100 >= expected * 98,
            "{what}: {counted} of {expected}\n{report}"
        );
    };
    let mut over_pods = [0; 2];
    for (index, pod) in pods.iter().enumerate() {
        let veth = pod.host_if.as_deref().expect("a bridge port");
        let own = format!("pod eth0@{}", pod.netns);
        let netns = Some(pod.netns.as_str());
        for (from, to) in [
            ("cni0", veth),
            (veth, own.as_str()),
            (own.as_str(), "socket read"),
        ] {
            close(
                count(Direction::Ingress, from, to, netns),
                sent[index] as u64,
                &format!("{} in {from} -> {to}", pod.netns),
            );
        }
        for (from, to) in [
            ("socket write", own.as_str()),
            (own.as_str(), veth),
            (veth, "cni0"),
        ] {
            close(
                count(Direction::Egress, from, to, netns),
                sent[index] as u64,
                &format!("{} out {from} -> {to}", pod.netns),
            );
        }
        over_pods[0] += count(Direction::Ingress, "cni0", veth, netns);
        over_pods[1] += count(Direction::Egress, veth, "cni0", netns);
    }
    // A node-wide segment next to a pod's counts the same packets as the
    // pods' together.
    let node_wide = [
        count(Direction::Ingress, "eth0 TC ingress", "cni0", None),
        count(Direction::Egress, "cni0", "eth0 TC egress", None),
    ];
    for (node_wide, over_pods) in node_wide.into_iter().zip(over_pods) {
        assert!(
            node_wide.abs_diff(over_pods) * 100 <= node_wide,
            "node-wide {node_wide} against {over_pods} over pods\n{report}"
        );
    }
    // No pod row without its pod, no node-wide row with one.
    assert!(
        report
            .segments
            .iter()
            .all(|segment| segment.pod.is_none() == segment.coverage.is_some()),
        "{report}"
    );
}

#[test]
fn by_pod_without_pods_says_so_and_measures_node_wide() {
    let _alone = alone();
    let lab = lab(Mode::Host);
    let output = attach_for_a_second(server_node(&lab), &["--by-pod"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let said: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("--by-pod"))
        .collect();
    assert_eq!(
        said,
        ["--by-pod: no pods behind eth0; every segment is node-wide"],
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("eth0 TC ingress -> socket read"),
        "{stdout}"
    );
    assert!(!stdout.contains("  pod "), "{stdout}");
}
