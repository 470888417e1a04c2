//! The fast path on real lab namespaces: enabled on node 2's `eth0` of a
//! flannel-vxlan lab (and in the vxlan-fastpath mode on both nodes), it
//! carries HTTP and 16 MB TCP transfers in both directions intact, leaves
//! ping and ARP working, takes the largest inner packet and leaves a larger
//! one to the kernel, leaves pods on one node to the bridge, serves a
//! re-created pod again within a second, shows its counters and is disabled
//! however the node's namespace is entered, and hands traffic back to the
//! kernel on disable without a retransmitted segment. Needs root; fails, not
//! skips, without it.

mod support;

use std::{
    net::{Ipv4Addr, SocketAddrV4},
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use netprobe::{
    ethtool::Feature,
    fastpath::{FastpathHook, FastpathId},
    lab::{Lab, LabGuard, LabSpec, Mode, ResponseSize, unique_prefix},
    netns::NetNs,
};
use netprobe_common::fastpath::{Counter, EgressCounter};
use support::{
    fastpath::{
        assert_no_fastpath, assert_success, counters, disable, egress_counters, enable,
        encapsulated, exec, fastpathed, feature, id, record, transfer,
    },
    require_root,
    session::{NETPROBE, netprobe},
    traffic::round_trips,
};

/// Within this a new pod must be served, once the kernel can reach it.
const PICKUP: Duration = Duration::from_secs(1);
const TRANSFER_BYTES: usize = 16 << 20;
/// The most one packet carries, a GSO packet too.
const PACKET_MAX_BYTES: usize = 64 << 10;

fn lab(mode: Mode) -> LabGuard {
    lab_with_pods(mode, 1)
}

fn lab_with_pods(mode: Mode, pods_per_node: usize) -> LabGuard {
    require_root();
    let spec = LabSpec {
        netprobe: NETPROBE.into(),
        pods_per_node,
        ..LabSpec::new(unique_prefix("npfp"), mode)
    };
    LabGuard::up(&spec).expect("lab up")
}

/// Names of the lab's parts the tests use.
struct Names {
    node1: String,
    node2: String,
    client: String,
    server: String,
    server_ip: Ipv4Addr,
    gateway: Ipv4Addr,
}

impl Names {
    fn of(lab: &Lab) -> Self {
        let server = &lab.nodes()[1].pods[0];
        Self {
            node1: lab.nodes()[0].netns.clone(),
            node2: lab.nodes()[1].netns.clone(),
            client: lab.client_netns().to_owned(),
            server: server.netns.clone(),
            server_ip: server.ip,
            gateway: Ipv4Addr::from(u32::from(server.ip) - 1),
        }
    }
}

/// HTTP, a long transfer checked byte by byte, ping and ARP through the
/// fast path on node 2, then disable: everything back as it was.
fn carries_traffic(hook: FastpathHook, extra: &[&str]) {
    let lab = lab(Mode::FlannelVxlan);
    let names = Names::of(&lab);
    let peer_checksums = || feature(&names.node1, "eth0", Feature::TxChecksum);
    let pod_gro = || feature(&names.server, "eth0", Feature::Gro);
    assert!(peer_checksums() && !pod_gro(), "lab defaults");

    let id = enable(
        &names.node2,
        &[&["--hook", hook.name()][..], extra].concat(),
    );
    let xdp_mode = record(&id).xdp_mode;
    let native = xdp_mode.as_deref() == Some("native");
    let generic = xdp_mode.as_deref() == Some("generic");
    // The kernel path teaches the node the pod's neighbour and FDB entry;
    // the sync process then serves the pod.
    lab.fetch(ResponseSize::Small).expect("fetch");
    wait_until("the pod is served", || !record(&id).pods.is_empty());
    assert_eq!(!peer_checksums(), native, "{hook:?}: peer tx checksums");
    assert_eq!(pod_gro(), native, "{hook:?}: pod GRO");

    let before = fastpathed(&id);
    for response in round_trips(
        &names.client,
        lab.server_addr(),
        ResponseSize::Large.path(),
        200,
    ) {
        assert!(response < Duration::from_secs(1));
    }
    assert_eq!(lab.fetch(ResponseSize::Large).expect("fetch").status, 200);
    let after_http = fastpathed(&id);
    assert!(after_http >= before + 400, "{hook:?}: HTTP fast-pathed");
    // The 4 KB responses leave as GSO packets, which the lab's vxlan device
    // (udpcsum, the kernel's default) sends with UDP checksums: they go to
    // the kernel, the connections' other packets through the fast path.
    let egress = egress_counters(&id);
    assert!(
        egress[EgressCounter::GsoUnsupported as usize] >= 200
            && egress[EgressCounter::Encapsulated as usize] > 0,
        "{hook:?}: responses: {egress:?}"
    );

    // The client's node keeps TSO (but for native XDP, where the veth
    // turns it off on its peer), so the transfer arrives partly as GSO
    // packets, each up to 64 KiB. TC takes them whole; generic XDP cannot:
    // the kernel's generic redirect refuses a packet longer than the
    // target's MTU, so they go to the kernel as too big. How many of the
    // transfer's packets are GSO is up to the sender's TCP.
    let addr = SocketAddrV4::new(names.server_ip, 9000);
    let before = counters(&id);
    assert_eq!(
        transfer(&names.client, &names.server, addr, TRANSFER_BYTES),
        TRANSFER_BYTES
    );
    let after = counters(&id);
    let grown = |counter: Counter| after[counter as usize] - before[counter as usize];
    let (taken, too_big) = (grown(Counter::Fastpathed), grown(Counter::TooBig));
    assert!(
        taken + too_big >= (TRANSFER_BYTES / PACKET_MAX_BYTES) as u64,
        "{hook:?}: the transfer's packets: {before:?} -> {after:?}"
    );
    if !generic {
        assert_eq!(too_big, 0, "{hook:?}: the transfer fast-pathed");
    }

    // ICMP takes the fast path too, the largest frame a pod sends (1450
    // bytes) with every hook; ARP (pod and gateway, node and node) is left
    // to the kernel.
    let before = fastpathed(&id);
    exec(
        &names.client,
        &format!("ping -c 3 -i 0.2 -W 1 -M do -s 1422 {}", names.server_ip),
    );
    assert!(fastpathed(&id) >= before + 3, "{hook:?}: ping fast-pathed");
    exec(&names.server, "ip neigh flush dev eth0");
    exec(&names.server, &format!("ping -c 1 -W 1 {}", names.gateway));
    exec(&names.node1, "ip neigh flush dev eth0");
    exec(
        &names.node1,
        &format!("ping -c 1 -W 1 {}", lab.nodes()[1].ip),
    );

    disable(&names.node2);
    assert_no_fastpath(&names.node2, "eth0");
    assert!(
        peer_checksums() && !pod_gro(),
        "{hook:?}: settings restored"
    );
    assert_eq!(lab.fetch(ResponseSize::Large).expect("fetch").status, 200);
}

#[test]
fn xdp_carries_http_bulk_tcp_ping_and_arp() {
    carries_traffic(FastpathHook::Xdp, &[]);
}

#[test]
fn generic_xdp_carries_traffic_without_changing_devices() {
    carries_traffic(FastpathHook::Xdp, &["--xdp-mode", "generic"]);
}

#[test]
fn tc_carries_http_bulk_tcp_ping_and_arp() {
    carries_traffic(FastpathHook::Tc, &[]);
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out waiting until {what}"
        );
        thread::sleep(Duration::from_millis(10));
    }
    started.elapsed()
}

/// Gone or a zombie (a zombie's cmdline reads empty).
fn process_gone(pid: libc::pid_t) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).map_or(true, |cmdline| cmdline.is_empty())
}

#[test]
fn a_recreated_pod_is_served_again_within_a_second() {
    for hook in [FastpathHook::Xdp, FastpathHook::Tc] {
        let lab = lab(Mode::FlannelVxlan);
        let names = Names::of(&lab);
        let id = enable(&names.node2, &["--hook", hook.name()]);
        lab.fetch(ResponseSize::Small).expect("fetch");
        wait_until("the pod is served", || !record(&id).pods.is_empty());
        let old = record(&id).pods[0].clone();

        // The pod's veth goes, and with it its DEVMAP entry: nothing can be
        // redirected into the missing device.
        exec(&names.node2, &format!("ip link del {}", old.port));
        assert!(
            !port_in_devmap(&id, old.ifindex),
            "{hook:?}: DEVMAP entry of a deleted veth"
        );
        wait_until("the pod is dropped", || record(&id).pods.is_empty());

        // A new veth for the same pod, as a CNI plugin would re-create it.
        let gateway = names.gateway;
        let ns = &names.server;
        exec(
            &names.node2,
            &format!("ip link add veth9 mtu 1450 type veth peer name eth0 netns {ns} mtu 1450"),
        );
        exec(&names.node2, "ip link set veth9 master cni0 up");
        exec(ns, &format!("ip addr add {}/24 dev eth0", names.server_ip));
        exec(ns, "ip link set eth0 up");
        exec(ns, &format!("ip route add default via {gateway}"));
        // The pod's first packet teaches the node its neighbour and FDB
        // entries; from then on the sync process has a second.
        exec(ns, &format!("ping -c 1 -W 1 {gateway}"));
        let picked_up = wait_until("the new veth is served both ways", || {
            let state = record(&id);
            state.pods.iter().any(|pod| pod.port == "veth9")
                && state.egress.ports.iter().any(|port| port == "veth9")
        });
        assert!(
            picked_up < PICKUP,
            "{hook:?}: picked up after {picked_up:?}"
        );
        let new = record(&id).pods[0].clone();
        assert!(port_in_devmap(&id, new.ifindex));
        let (before, sent) = (fastpathed(&id), encapsulated(&id));
        assert_eq!(lab.fetch(ResponseSize::Large).expect("fetch").status, 200);
        assert!(
            fastpathed(&id) > before && encapsulated(&id) > sent,
            "{hook:?}: the new veth fast-pathed both ways"
        );
        disable(&names.node2);
        assert_no_fastpath(&names.node2, "eth0");
    }
}

#[test]
fn a_pod_moved_to_another_node_is_served_again_within_a_second() {
    require_root();
    let spec = LabSpec {
        netprobe: NETPROBE.into(),
        nodes: 3,
        ..LabSpec::new(unique_prefix("npfp"), Mode::VxlanFastpath)
    };
    let lab = LabGuard::up(&spec).expect("lab up");
    let names = Names::of(&lab);
    let node3 = lab.nodes()[2].netns.clone();
    let (client_node, new_node) = (id(&names.node1, "eth0"), id(&node3, "eth0"));
    let routed_via = |node: &FastpathId, subnet: &str, vtep: &str| {
        record(node)
            .egress
            .routes
            .iter()
            .any(|route| route.prefix.to_string() == subnet && route.vtep.to_string() == vtep)
    };
    assert_eq!(lab.fetch(ResponseSize::Small).expect("fetch").status, 200);
    assert!(routed_via(&client_node, "10.78.2.0/24", "10.77.0.2"));

    // The server pod, its address and its subnet's lease move from node 2
    // to node 3, as a rescheduled pod whose node was replaced.
    let server = &names.server;
    exec(&names.node2, "ip link del veth1");
    exec(&names.node2, "ip addr del 10.78.2.1/24 dev cni0");
    exec(&node3, "ip route del 10.78.2.0/24");
    exec(&node3, "ip addr add 10.78.2.1/24 dev cni0");
    exec(
        &node3,
        &format!("ip link add veth9 mtu 1450 type veth peer name eth0 netns {server} mtu 1450"),
    );
    exec(&node3, "ip link set veth9 master cni0 up");
    exec(
        server,
        &format!("ip addr add {}/24 dev eth0", names.server_ip),
    );
    exec(server, "ip link set eth0 up");
    exec(
        server,
        &format!("ip route add default via {}", names.gateway),
    );
    exec(server, &format!("ping -c 1 -W 1 {}", names.gateway));
    // flanneld on node 1 points the subnet's gateway at node 3's VTEP; from
    // then on, requests must reach the pod, each direction on the fast path,
    // within a second.
    let moved = Instant::now();
    exec(
        &names.node1,
        "ip neigh replace 10.78.2.0 lladdr 0e:77:00:00:00:03 dev flannel.1 nud permanent",
    );
    let served = || {
        let node3 = record(&new_node);
        routed_via(&client_node, "10.78.2.0/24", "10.77.0.3")
            && node3.pods.iter().any(|pod| pod.ip == names.server_ip)
            && node3.egress.ports.iter().any(|port| port == "veth9")
            && routed_via(&new_node, "10.78.1.0/24", "10.77.0.1")
    };
    // Until it is, requests take the kernel's path, which also resolves
    // node 3's address on node 1, and with its ARP request teaches node 3
    // node 1's, which node 3's responses need to take the fast path.
    while !served() {
        assert!(
            moved.elapsed() < PICKUP,
            "not served again after {:?}",
            moved.elapsed()
        );
        lab.fetch_within(ResponseSize::Small, Duration::from_millis(100))
            .ok();
        thread::sleep(Duration::from_millis(10));
    }
    let taken = moved.elapsed();
    let before = (
        encapsulated(&client_node),
        fastpathed(&new_node),
        encapsulated(&new_node),
    );
    assert_eq!(lab.fetch(ResponseSize::Small).expect("fetch").status, 200);
    let after = (
        encapsulated(&client_node),
        fastpathed(&new_node),
        encapsulated(&new_node),
    );
    assert!(
        after.0 > before.0 && after.1 > before.1 && after.2 > before.2,
        "served again after {taken:?}, both ways: {before:?} -> {after:?}"
    );
}

fn port_in_devmap(id: &FastpathId, ifindex: u32) -> bool {
    support::fastpath::maps(id).ports.get(ifindex, 0).is_ok()
}

/// Well under TCP's shortest retransmission timeout (200 ms): a request
/// that takes longer lost a segment somewhere.
const REQUEST_BOUND: Duration = Duration::from_millis(100);

/// Requests from the client pod, each on a new connection, one after
/// another until told to stop; returns (requests, failures).
fn request_loop(lab: &Lab, stop: &AtomicBool) -> (usize, Vec<String>) {
    let mut requests = 0;
    let mut failures = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match lab.fetch_within(ResponseSize::Small, REQUEST_BOUND) {
            Ok(response) if response.status == 200 => {}
            Ok(response) => failures.push(format!("status {}", response.status)),
            Err(error) => failures.push(error.to_string()),
        }
        requests += 1;
    }
    (requests, failures)
}

/// TCP segments retransmitted so far from the namespace `netns`.
fn retransmitted(netns: &str) -> u64 {
    let snmp = NetNs::named(netns)
        .expect("namespace")
        .run(|| std::fs::read_to_string("/proc/thread-self/net/snmp").expect("snmp"))
        .expect("enter");
    let mut tcp = snmp.lines().filter(|line| line.starts_with("Tcp:"));
    let (names, values) = (tcp.next().expect("names"), tcp.next().expect("values"));
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "RetransSegs")
        .and_then(|(_, value)| value.parse().ok())
        .expect("RetransSegs")
}

#[test]
fn enable_and_disable_under_load_retransmit_no_segment() {
    let lab = lab(Mode::FlannelVxlan);
    let names = Names::of(&lab);
    let pods = [names.client.as_str(), names.server.as_str()];
    let before: u64 = pods.iter().map(|pod| retransmitted(pod)).sum();
    let stop = Arc::new(AtomicBool::new(false));
    let (requests, failures) = thread::scope(|scope| {
        let looping = scope.spawn(|| request_loop(&lab, &stop));
        for node in [&names.node2, &names.node1, &names.node2] {
            for hook in ["xdp", "tc", "auto"] {
                thread::sleep(Duration::from_millis(200));
                let id = enable(node, &["--hook", hook]);
                wait_until("requests are fast-pathed", || {
                    fastpathed(&id) > 100 && encapsulated(&id) > 100
                });
                disable(node);
            }
        }
        thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        looping.join().expect("request loop")
    });
    let after: u64 = pods.iter().map(|pod| retransmitted(pod)).sum();
    assert!(requests > 1000, "only {requests} requests");
    assert_eq!(
        failures,
        Vec::<String>::new(),
        "of {requests} requests, each within {REQUEST_BOUND:?}"
    );
    assert_eq!(after - before, 0, "TCP segments retransmitted by the pods");
    assert_no_fastpath(&names.node1, "eth0");
    assert_no_fastpath(&names.node2, "eth0");
}

fn netns_exec(netns: &str, command: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", netns])
        .args(command)
        .output()
        .expect("ip netns exec")
}

#[test]
fn vxlan_fastpath_mode_carries_both_directions_on_every_node_and_goes_with_the_lab() {
    let lab = lab_with_pods(Mode::VxlanFastpath, 2);
    let names = Names::of(&lab);
    let ids = [id(&names.node1, "eth0"), id(&names.node2, "eth0")];
    for id in &ids {
        let state = record(id);
        // The default hook on the lab's veth wire.
        assert_eq!(state.hook, FastpathHook::Tc);
        assert!(state.hook_reason.contains("veth"), "{}", state.hook_reason);
        assert!(
            netprobe::fastpath::state::sync_pid(id).is_some(),
            "{id} syncing"
        );
    }
    let prefix = lab.prefix().to_owned();
    for response in round_trips(&names.client, lab.server_addr(), "/350", 500) {
        assert!(response < Duration::from_secs(1));
    }
    // Requests decapsulated on node 2 and encapsulated on node 1,
    // responses the other way round.
    for id in &ids {
        assert!(fastpathed(id) > 500, "{id} decapsulated");
        assert!(encapsulated(id) > 500, "{id} encapsulated");
    }

    // 16 MB each way, every byte checked.
    let to_server = SocketAddrV4::new(names.server_ip, 9000);
    let client_ip = lab.nodes()[0].pods[0].ip;
    let to_client = SocketAddrV4::new(client_ip, 9001);
    assert_eq!(
        transfer(&names.client, &names.server, to_server, TRANSFER_BYTES),
        TRANSFER_BYTES
    );
    assert_eq!(
        transfer(&names.server, &names.client, to_client, TRANSFER_BYTES),
        TRANSFER_BYTES
    );

    // The largest inner packet (1450 bytes, 1500 outside) goes through the
    // fast path; ping both ways.
    let node1 = &ids[0];
    let before = encapsulated(node1);
    exec(
        &names.client,
        &format!("ping -c 3 -i 0.2 -W 1 -M do -s 1422 {}", names.server_ip),
    );
    exec(
        &names.server,
        &format!("ping -c 3 -i 0.2 -W 1 -M do -s 1422 {client_ip}"),
    );
    assert!(
        encapsulated(node1) >= before + 3,
        "1450-byte pings encapsulated"
    );
    // One byte more (the pod's MTU raised past the overlay's) is left to
    // the kernel, which answers that it needs fragmenting.
    let client_veth = lab.nodes()[0].pods[0].host_if.clone().expect("veth");
    exec(&names.node1, &format!("ip link set {client_veth} mtu 1500"));
    exec(&names.client, "ip link set eth0 mtu 1500");
    let too_big = || egress_counters(node1)[EgressCounter::TooBig as usize];
    let before = too_big();
    let ping = netns_exec(
        &names.client,
        &[
            "ping",
            "-c",
            "1",
            "-W",
            "1",
            "-M",
            "do",
            "-s",
            "1423",
            &names.server_ip.to_string(),
        ],
    );
    assert!(!ping.status.success(), "{ping:?}");
    assert!(too_big() > before, "1451 bytes left to the kernel");

    // Pods on one node talk through the bridge: the fast path leaves it.
    let node2 = &ids[1];
    let neighbour = lab.nodes()[1].pods[1].netns.clone();
    // The node learns the second pod from its first packet to the gateway.
    exec(&neighbour, &format!("ping -c 1 -W 1 {}", names.gateway));
    wait_until("both pods are served", || {
        record(node2).egress.ports.len() == 2
    });
    let before = egress_counters(node2)[EgressCounter::Bridged as usize];
    exec(
        &neighbour,
        &format!("ping -c 3 -i 0.2 -W 1 {}", names.server_ip),
    );
    assert!(
        egress_counters(node2)[EgressCounter::Bridged as usize] >= before + 6,
        "both pods' packets left to the bridge"
    );

    // Status shows the counters however the node's namespace is entered:
    // ip netns exec mounts a /sys of its own, nsenter keeps the caller's.
    let nsenter = format!("--net=/run/netns/{}", names.node2);
    for command in [
        [
            "ip",
            "netns",
            "exec",
            names.node2.as_str(),
            NETPROBE,
            "fastpath",
            "status",
        ]
        .as_slice(),
        ["nsenter", nsenter.as_str(), NETPROBE, "fastpath", "status"].as_slice(),
    ] {
        let output = Command::new(command[0])
            .args(&command[1..])
            .output()
            .expect("status");
        assert_success(&output);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(!stdout.contains("unavailable"), "{command:?}: {stdout}");
        assert!(stdout.contains("fast-pathed: "), "{command:?}: {stdout}");
        assert!(
            stdout.contains("egress to 10.78.1.0/24 via VTEP 10.77.0.1"),
            "{command:?}: {stdout}"
        );
    }
    let status = netprobe(&["lab", "status", "--prefix", &prefix]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("vxlan-fastpath"), "{status}");
    assert!(
        status.contains("fast path on node2 eth0: tc, 2 pods, syncing"),
        "{status}"
    );
    lab.down().expect("lab down");
    for id in &ids {
        assert!(!id.state_dir().exists(), "{id} left");
    }
    assert!(
        netprobe::fastpath::state::all()
            .expect("records")
            .iter()
            .all(|state| !state
                .id
                .netns
                .as_ref()
                .is_some_and(|ns| ns.starts_with(&prefix))),
        "fast paths of the lab left"
    );
}

#[test]
fn disable_and_lab_down_find_the_fast_path_however_the_namespace_is_entered() {
    let lab = lab(Mode::FlannelVxlan);
    let names = Names::of(&lab);
    let peer_checksums = || feature(&names.node1, "eth0", Feature::TxChecksum);
    // ip netns exec mounts a /sys of its own, nsenter keeps the caller's.
    let nsenter = format!("--net=/run/netns/{}", names.node2);
    let entries: [&[&str]; 2] = [
        &["ip", "netns", "exec", names.node2.as_str()],
        &["nsenter", nsenter.as_str()],
    ];
    let inside = |entry: &[&str], args: &[&str]| {
        let output = Command::new(entry[0])
            .args(&entry[1..])
            .arg(NETPROBE)
            .args(["fastpath", args[0], "eth0"])
            .args(&args[1..])
            .output()
            .expect("netprobe");
        assert!(output.status.success(), "{entry:?} {args:?}: {output:?}");
    };
    // Native XDP on a veth changes the peer, which disable must put back.
    for entry in entries {
        enable(&names.node2, &["--hook", "xdp"]);
        assert!(!peer_checksums(), "{entry:?}: peer tx checksums");
        inside(entry, &["disable"]);
        assert_no_fastpath(&names.node2, "eth0");
        assert!(peer_checksums(), "{entry:?}: settings restored");
        inside(entry, &["enable", "--hook", "xdp"]);
        assert!(!peer_checksums(), "{entry:?}: peer tx checksums");
        disable(&names.node2);
        assert_no_fastpath(&names.node2, "eth0");
        assert!(peer_checksums(), "{entry:?}: settings restored");
    }
    // Enabled from inside, its record names no namespace: lab down finds
    // the sync process among the lab's processes.
    inside(entries[0], &["enable"]);
    let id = id(&names.node2, "eth0");
    let pid = netprobe::fastpath::state::sync_pid(&id).expect("syncing");
    lab.down().expect("lab down");
    assert!(!id.state_dir().exists(), "record left for {id}");
    assert!(process_gone(pid), "sync process {pid} left");
}

#[test]
fn the_sync_process_goes_with_its_record_and_disable_cleans_up_after_kill() {
    let lab = lab(Mode::FlannelVxlan);
    let names = Names::of(&lab);
    let peer_checksums = || feature(&names.node1, "eth0", Feature::TxChecksum);

    // Its record removed, the sync process puts the devices back and
    // exits, which detaches its programs.
    let id = enable(&names.node2, &["--hook", "xdp"]);
    let pid = netprobe::fastpath::state::sync_pid(&id).expect("syncing");
    assert!(!peer_checksums());
    std::fs::remove_dir_all(id.state_dir()).expect("remove the record");
    // It removes its record before it exits, and runs under SCHED_IDLE, so
    // its exit can trail the record's removal.
    wait_until("the sync process exits", || {
        !id.state_dir().exists() && process_gone(pid)
    });
    assert!(peer_checksums(), "settings restored");
    assert_no_fastpath(&names.node2, "eth0");

    // A sync process killed outright takes its programs with it, and leaves
    // its changes and record; disable removes them.
    let id = enable(&names.node2, &["--hook", "xdp"]);
    let pid = netprobe::fastpath::state::sync_pid(&id).expect("syncing");
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    wait_until("the sync process is gone", || {
        netprobe::fastpath::state::sync_pid(&id).is_none()
    });
    let status = netprobe(&["fastpath", "status"]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("sync NOT RUNNING"),
        "{status:?}"
    );
    disable(&names.node2);
    assert_no_fastpath(&names.node2, "eth0");
    assert!(peer_checksums(), "settings restored");
}

#[test]
fn foreground_enable_disables_on_sigterm() {
    let lab = lab(Mode::FlannelVxlan);
    let names = Names::of(&lab);
    let id = id(&names.node2, "eth0");
    let mut child = Command::new(NETPROBE)
        .args([
            "fastpath",
            "enable",
            "eth0",
            "--netns",
            &names.node2,
            "--foreground",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("netprobe fastpath enable --foreground");
    wait_until("the fast path syncs", || {
        netprobe::fastpath::state::sync_pid(&id) == Some(child.id() as libc::pid_t)
    });
    lab.fetch(ResponseSize::Small).expect("fetch");
    wait_until("traffic is fast-pathed", || {
        lab.fetch(ResponseSize::Small).is_ok() && fastpathed(&id) > 0
    });
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    assert!(child.wait().expect("exits").success());
    assert_no_fastpath(&names.node2, "eth0");
}
