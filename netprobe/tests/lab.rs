//! The lab on real namespaces with the real nginx. Needs root (and fails,
//! not skips, without it) and nginx installed. Each test builds its own lab
//! under a unique prefix and holds it in a guard, so a failing test still
//! removes it.

use std::{
    fs,
    os::unix::{fs::PermissionsExt as _, process::CommandExt as _},
    path::Path,
    process::{Command, Output, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use netprobe::{
    lab::{
        CpuSplit, Lab, LabError, LabGuard, LabSpec, Mode, ResponseSize, SpecError, lab_dir,
        state_file, unique_prefix,
    },
    netns::named_namespaces,
};

const POLL: Duration = Duration::from_millis(1);
const DEADLINE: Duration = Duration::from_secs(20);

/// A spec for `mode` under a prefix no other test uses.
fn spec(mode: Mode) -> LabSpec {
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "the lab tests build network namespaces: run them as root"
    );
    LabSpec::new(unique_prefix("nplt"), mode)
}

fn namespaces_of(prefix: &str) -> Vec<String> {
    let mut ours = named_namespaces().unwrap();
    ours.retain(|name| name.starts_with(&format!("{prefix}-")));
    ours
}

/// Live processes started with the lab's nginx configuration (zombies
/// have an empty command line).
fn nginx_processes(prefix: &str) -> Vec<String> {
    let conf = format!("{}/nginx.conf", lab_dir(prefix).display());
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| fs::read(entry.ok()?.path().join("cmdline")).ok())
        .map(|cmdline| String::from_utf8_lossy(&cmdline).replace('\0', " "))
        .filter(|cmdline| cmdline.contains(&conf))
        .collect()
}

/// Neither gone nor a zombie.
fn running(pid: libc::pid_t) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit_once(')')
            .unwrap()
            .1
            .trim_start()
            .starts_with('Z')
    })
}

fn assert_gone(prefix: &str) {
    assert_eq!(
        namespaces_of(prefix),
        Vec::<String>::new(),
        "namespaces left"
    );
    assert_eq!(nginx_processes(prefix), Vec::<String>::new(), "nginx left");
    assert!(!state_file(prefix).exists(), "state file left");
    assert!(!lab_dir(prefix).exists(), "lab directory left");
}

/// `command` run inside `netns`, which must succeed.
fn exec(netns: &str, command: &str) -> String {
    exec_here(&format!("ip netns exec {netns} {command}"))
}

/// `command` run in the test's own namespace, which must succeed.
fn exec_here(command: &str) -> String {
    let mut argv = command.split_whitespace();
    let output = Command::new(argv.next().unwrap())
        .args(argv)
        .output()
        .unwrap();
    assert!(output.status.success(), "{command}: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// IPv4 datagrams the namespace forwarded (`ForwDatagrams`).
fn forwarded(netns: &str) -> u64 {
    let snmp = exec(netns, "cat /proc/net/snmp");
    let mut ip = snmp.lines().filter(|line| line.starts_with("Ip:"));
    let (names, values) = (ip.next().unwrap(), ip.next().unwrap());
    let column = names
        .split_whitespace()
        .position(|n| n == "ForwDatagrams")
        .unwrap();
    values
        .split_whitespace()
        .nth(column)
        .unwrap()
        .parse()
        .unwrap()
}

fn tx_packets(netns: &str, device: &str) -> u64 {
    let json = exec(netns, &format!("ip -s -j link show dev {device}"));
    let links: serde_json::Value = serde_json::from_str(&json).unwrap();
    links[0]["stats64"]["tx"]["packets"].as_u64().unwrap()
}

fn netns<'a>(lab: &'a Lab, name: &str) -> &'a str {
    lab.netns(name).unwrap()
}

/// Both responses reach the client with the expected body.
fn assert_serves(lab: &Lab) {
    for size in ResponseSize::ALL {
        let response = lab.fetch(size).unwrap();
        assert_eq!(response.status, 200, "{}", lab.server_url(size));
        assert_eq!(
            response.body_len,
            size.body_len(),
            "{}",
            lab.server_url(size)
        );
    }
}

/// Up with two nodes, both sizes fetched from the client to the server,
/// `went_its_way` checks the traffic took the mode's path, down, nothing left.
fn serves_and_cleans_up(mode: Mode, went_its_way: impl Fn(&Lab)) {
    let spec = spec(mode);
    let lab = LabGuard::up(&spec).unwrap();
    assert_eq!(Lab::load(&spec.prefix).unwrap(), *lab);
    assert_serves(&lab);
    went_its_way(&lab);
    let root_links = exec_here("ip -o link show");
    for device in [
        "cni0",
        "docker0",
        "flannel.1",
        "br0",
        "veth1",
        "node1",
        "router",
    ] {
        assert!(
            !root_links.contains(&format!(": {device}:")),
            "{device} in the root namespace"
        );
    }
    lab.down().unwrap();
    assert_gone(&spec.prefix);
}

/// The CPUs each child of `master` may run on (`Cpus_allowed_list`).
fn children_cpus(master: libc::pid_t) -> Vec<String> {
    let field = |status: &str, name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .map(|value| value.trim().to_owned())
    };
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| fs::read_to_string(entry.ok()?.path().join("status")).ok())
        .filter(|status| field(status, "PPid:") == Some(master.to_string()))
        .filter_map(|status| field(&status, "Cpus_allowed_list:"))
        .collect()
}

#[test]
fn host_mode_serves_from_node_to_node() {
    serves_and_cleans_up(Mode::Host, |lab| {
        assert_eq!(lab.client_netns(), netns(lab, "node1"));
        assert_eq!(lab.server_netns(), netns(lab, "node2"));
        assert!(lab.pod_ips().is_empty());
        // One nginx worker on each of the server's CPUs.
        let mut workers = children_cpus(lab.server_pid().expect("nginx runs"));
        workers.sort();
        let server: Vec<String> = CpuSplit::of_this_process()
            .server
            .iter()
            .map(usize::to_string)
            .collect();
        assert_eq!(workers, server);
    });
}

#[test]
fn bridge_mode_serves_through_the_published_port() {
    serves_and_cleans_up(Mode::Bridge, |lab| {
        assert_eq!(lab.server_addr().port(), 8080);
        assert_eq!(lab.server_addr().ip(), &lab.node_ips()[1]);
        let nat = exec(netns(lab, "node2"), "iptables-save -c -t nat");
        let dnat = nat.lines().find(|rule| rule.contains("-j DNAT")).unwrap();
        assert!(!dnat.starts_with("[0:"), "DNAT rule unused: {dnat}");
        assert!(forwarded(netns(lab, "node1")) > 0);
    });
}

#[test]
fn flannel_hostgw_mode_routes_via_node_addresses() {
    serves_and_cleans_up(Mode::FlannelHostgw, |lab| {
        let routes = exec(netns(lab, "node1"), "ip route");
        assert!(
            routes.contains("10.78.2.0/24 via 10.77.0.2 dev eth0"),
            "{routes}"
        );
        assert!(forwarded(netns(lab, "node1")) > 0);
        assert!(forwarded(netns(lab, "node2")) > 0);
    });
}

#[test]
fn flannel_vxlan_mode_serves_through_flannel_1() {
    serves_and_cleans_up(Mode::FlannelVxlan, |lab| {
        let node1 = netns(lab, "node1");
        let vxlan = exec(node1, "ip -d link show flannel.1");
        for setting in ["mtu 1450", "vxlan id 1 ", "dstport 8472", "nolearning"] {
            assert!(vxlan.contains(setting), "{setting} missing: {vxlan}");
        }
        assert!(tx_packets(node1, "flannel.1") > 0);
        assert!(tx_packets(netns(lab, "node2"), "flannel.1") > 0);
    });
}

#[test]
fn macvlan_mode_serves_without_node_routing() {
    serves_and_cleans_up(Mode::Macvlan, |lab| {
        let pod = exec(netns(lab, "node1-pod1"), "ip -d link show eth0");
        assert!(pod.contains("macvlan mode bridge"), "{pod}");
        assert_eq!(forwarded(netns(lab, "node1")), 0);
        assert_eq!(forwarded(netns(lab, "node2")), 0);
    });
}

#[test]
fn aws_vpc_mode_routes_through_the_router() {
    serves_and_cleans_up(Mode::AwsVpc, |lab| {
        let router = lab.router_netns().unwrap();
        let table = exec(router, "ip route");
        assert!(table.contains("10.78.1.0/24 via 10.77.0.1"), "{table}");
        assert!(table.contains("10.78.2.0/24 via 10.77.0.2"), "{table}");
        assert!(forwarded(router) > 0);
        // No switch: the nodes reach each other through the router, which
        // answers ARP for every address, as the VPC fabric does.
        assert_eq!(lab.switch_netns(), None);
        let before = forwarded(router);
        exec(netns(lab, "node1"), "ping -c 1 -W 1 10.77.0.2");
        assert!(forwarded(router) >= before + 2);
    });
}

#[test]
fn ipvlan_mode_is_refused_clearly_where_the_kernel_lacks_it() {
    let spec = spec(Mode::Ipvlan);
    // Ask the kernel ourselves, in a namespace that dies with the command.
    let available = Command::new("unshare")
        .args(["--net", "sh", "-c"])
        .arg("ip link add p0 type veth peer name p1 && ip link add link p0 name p2 type ipvlan")
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    match LabGuard::up(&spec) {
        Ok(lab) if available => {
            assert_serves(&lab);
            lab.down().unwrap();
        }
        Ok(_) => panic!("ipvlan lab built on a kernel without ipvlan"),
        Err(err) => {
            assert!(!available, "ipvlan is available but up failed: {err}");
            assert_eq!(
                err.to_string(),
                "ipvlan unavailable on this kernel (CONFIG_IPVLAN)"
            );
        }
    }
    assert_gone(&spec.prefix);
}

#[test]
fn aws_vpc_refuses_more_than_50_nodes() {
    let mut spec = spec(Mode::AwsVpc);
    spec.nodes = 51;
    let err = Lab::up(&spec).unwrap_err();
    assert!(matches!(
        err,
        LabError::Spec(SpecError::TooManyNodes { max: 50, .. })
    ));
    assert_eq!(
        err.to_string(),
        "aws-vpc supports at most 50 nodes, not 51: the VPC route table holds at most 50 routes"
    );
    assert_gone(&spec.prefix);
}

#[test]
fn missing_nginx_says_how_to_install_it() {
    let mut spec = spec(Mode::Host);
    spec.nginx = "/nonexistent/nginx".into();
    let err = Lab::up(&spec).unwrap_err().to_string();
    assert!(err.contains("apt-get install nginx"), "{err}");
    assert_gone(&spec.prefix);
}

#[test]
fn failed_up_rolls_back() {
    let mut spec = spec(Mode::FlannelVxlan);
    spec.nodes = 3;
    // An nginx that passes the install check but fails to start: `up`
    // fails at its last step, with the whole topology built.
    let fake = std::env::temp_dir().join(format!("{}-nginx", spec.prefix));
    fs::write(
        &fake,
        "#!/bin/sh\n[ \"$1\" = -v ] && exit 0\necho 'nginx: [emerg] injected failure' >&2\nexit 1\n",
    )
    .unwrap();
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    spec.nginx = fake.clone();
    let result = LabGuard::up(&spec);
    fs::remove_file(&fake).unwrap();
    let err = result
        .err()
        .expect("up with a failing nginx must fail")
        .to_string();
    assert!(err.contains("injected failure"), "{err}");
    assert_gone(&spec.prefix);
}

#[test]
fn up_twice_replaces_the_lab() {
    let mut first = spec(Mode::FlannelVxlan);
    first.nodes = 3;
    let lab = LabGuard::up(&first).unwrap();
    assert!(lab.switch_netns().is_some());
    assert_serves(&lab);
    let old_nginx = lab.server_pid().expect("nginx runs");

    let second = LabSpec {
        pods_per_node: 2,
        ..LabSpec::new(first.prefix.clone(), Mode::Host)
    };
    let replaced = LabGuard::up(&second).unwrap();
    assert_serves(&replaced);
    let mut expected = vec![netns(&replaced, "node1"), netns(&replaced, "node2")];
    expected.sort();
    assert_eq!(namespaces_of(&first.prefix), expected);
    assert_eq!(Lab::load(&first.prefix).unwrap().mode(), Mode::Host);
    let new_nginx = replaced.server_pid().expect("nginx runs");
    assert_ne!(new_nginx, old_nginx);
    assert!(!running(old_nginx), "the first lab's nginx still runs");
    replaced.down().unwrap();
    assert_gone(&first.prefix);
    drop(lab); // Finds nothing left under its prefix.
}

/// `netprobe` run with `args`.
fn netprobe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_netprobe"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn down_works_after_the_builder_is_killed() {
    let spec = spec(Mode::AwsVpc);
    let prefix = spec.prefix.as_str();
    // Its own process group, so the `ip` commands it runs die with it.
    let mut builder = Command::new(env!("CARGO_BIN_EXE_netprobe"))
        .args([
            "lab", "up", "--prefix", prefix, "--mode", "aws-vpc", "--nodes", "3",
        ])
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let group = builder.id() as libc::pid_t;
    let first = Path::new("/run/netns").join(format!("{prefix}-node1"));
    let started = Instant::now();
    while !first.exists() && builder.try_wait().unwrap().is_none() {
        assert!(started.elapsed() < DEADLINE, "no namespace appeared");
        sleep(POLL);
    }
    assert_eq!(unsafe { libc::kill(-group, libc::SIGKILL) }, 0);
    builder.wait().unwrap();
    let group_alive = || {
        fs::read_dir("/proc").unwrap().any(|entry| {
            let stat = entry
                .ok()
                .and_then(|e| fs::read_to_string(e.path().join("stat")).ok());
            // pgrp is the third field after the parenthesized name.
            let pgrp = stat.and_then(|s| {
                let (_, rest) = s.rsplit_once(')')?;
                rest.split_whitespace().nth(2)?.parse::<libc::pid_t>().ok()
            });
            pgrp == Some(group)
        })
    };
    while group_alive() {
        assert!(started.elapsed() < DEADLINE, "the builder's group lives on");
        sleep(POLL);
    }

    Lab::down(prefix).unwrap();
    assert_gone(prefix);
}

#[test]
fn down_works_without_the_record() {
    let spec = spec(Mode::FlannelHostgw);
    let lab = LabGuard::up(&spec).unwrap();
    fs::remove_file(state_file(&spec.prefix)).unwrap();
    assert!(matches!(Lab::load(&spec.prefix), Err(LabError::NoLab(_))));
    Lab::down(&spec.prefix).unwrap();
    assert_gone(&spec.prefix);
    drop(lab);
}

#[test]
fn cli_status_and_exec_use_the_recorded_lab() {
    let mut spec = spec(Mode::Bridge);
    spec.pods_per_node = 2;
    let lab = LabGuard::up(&spec).unwrap();
    let prefix = spec.prefix.as_str();

    let status = netprobe(&["lab", "status", "--prefix", prefix]);
    assert!(status.status.success(), "{status:?}");
    let status = String::from_utf8(status.stdout).unwrap();
    for expected in ["node2-pod2", "http://10.77.0.2:8080/350", "nginx running"] {
        assert!(status.contains(expected), "{expected} missing: {status}");
    }

    let exec = netprobe(&[
        "lab",
        "exec",
        "--prefix",
        prefix,
        "node1-pod2",
        "--",
        "ip",
        "-br",
        "addr",
        "show",
        "eth0",
    ]);
    assert!(exec.status.success(), "{exec:?}");
    assert!(String::from_utf8_lossy(&exec.stdout).contains("172.17.0.3/16"));
    let exit = netprobe(&[
        "lab", "exec", "--prefix", prefix, "node1", "--", "sh", "-c", "exit 3",
    ]);
    assert_eq!(exit.status.code(), Some(3));

    let down = netprobe(&["lab", "down", "--prefix", prefix]);
    assert!(down.status.success(), "{down:?}");
    assert_gone(prefix);
    drop(lab);
}

#[test]
fn cli_refuses_bad_input_in_one_line() {
    let prefix = spec(Mode::Host).prefix;
    for (args, error) in [
        (&["--mode", "vlan"][..], "error: unknown mode \"vlan\""),
        (
            &["--mode", "host", "--nodes", "0"],
            "error: a lab needs at least 2 nodes",
        ),
        (
            &["--mode", "aws-vpc", "--nodes", "51"],
            "error: aws-vpc supports at most 50 nodes",
        ),
    ] {
        let output = netprobe(&[&["lab", "up", "--prefix", &prefix][..], args].concat());
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.starts_with(error), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    }
    assert_gone(&prefix);

    // `down --all` removes every lab: a prefix with it is refused, not
    // ignored.
    let output = netprobe(&["lab", "down", "--all", "--prefix", &prefix]);
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("'--all' cannot be used with '--prefix"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}
