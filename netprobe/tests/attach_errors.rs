//! Bad input to `netprobe attach`: one line naming the problem, a non-zero
//! exit, and nothing left attached.

mod support;

use std::process::{Command, Output};

use netprobe::{
    lab::{LabGuard, LabSpec, Mode, ResponseSize, unique_prefix},
    netns::NetNs,
    status::loaded_netprobe_programs,
};
use support::{
    foreign::{attach_foreign_xdp, xdp_program_on},
    require_root,
    session::{NETPROBE, netprobe},
};

/// Checks the one-line error and that nothing of netprobe stayed loaded.
fn assert_refused(output: &Output, code: i32, message: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(message), "{message:?} not in {stderr:?}");
    // Programs held by a netprobe process: other sessions' pinned ones have
    // no holder.
    let left: Vec<_> = loaded_netprobe_programs()
        .expect("list programs")
        .into_iter()
        .filter(|program| {
            program
                .holders
                .iter()
                .any(|holder| holder.command == "netprobe")
        })
        .collect();
    assert!(left.is_empty(), "left loaded: {left:?}");
}

#[test]
fn unknown_interface_and_namespace() {
    require_root();
    assert_refused(
        &netprobe(&["attach", "nosuch0", "--duration", "1s"]),
        1,
        "no interface nosuch0 in the current network namespace",
    );
    assert_refused(
        &netprobe(&["attach", "eth0", "--netns", "nosuch-netns"]),
        1,
        "network namespace \"nosuch-netns\" does not exist",
    );
}

#[test]
fn unparsable_arguments() {
    require_root();
    for (args, message) in [
        (&["--duration", "10 parsecs"][..], "--duration"),
        (&["--interval", "soon"], "--interval"),
        (&["--filter", "tcp or udp"], "unknown filter term \"or\""),
        (
            &["--filter", "port 99999"],
            "\"99999\" is not a port number",
        ),
        (&["--xdp-mode", "turbo"], "--xdp-mode"),
    ] {
        let output = netprobe(&[&["attach", "lo"][..], args].concat());
        assert_refused(&output, 2, message);
    }
}

#[test]
fn missing_privileges() {
    require_root();
    // setpriv drops to nobody with no capabilities, as an unprivileged
    // user would run it.
    let output = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .args([NETPROBE, "attach", "lo", "--duration", "1s"])
        .output()
        .expect("setpriv runs");
    assert_refused(
        &output,
        1,
        "netprobe needs root: CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN missing (run it with sudo)",
    );
}

#[test]
fn someone_elses_xdp_program_is_refused_and_never_touched() {
    require_root();
    let lab = LabGuard::up(&LabSpec::new(unique_prefix("npae"), Mode::Host)).expect("lab up");
    let node_name = &lab.nodes()[1].netns;
    let node = NetNs::named(node_name).expect("server node");
    let (_foreign, foreign_id) = attach_foreign_xdp(&node, "eth0");
    let xdp_on_eth0 = || xdp_program_on(&node, "eth0");
    assert_eq!(xdp_on_eth0(), Some(foreign_id));

    let refused = netprobe(&["attach", "eth0", "--netns", node_name, "--duration", "1s"]);
    assert_refused(
        &refused,
        1,
        &format!("already has an XDP program (id {foreign_id}); netprobe never replaces it"),
    );
    assert_eq!(xdp_on_eth0(), Some(foreign_id));

    // --force measures without XDP and still leaves the program alone.
    let forced = netprobe(&[
        "attach",
        "eth0",
        "--netns",
        node_name,
        "--duration",
        "1s",
        "--force",
        "--quiet",
    ]);
    let stdout = String::from_utf8_lossy(&forced.stdout);
    assert!(forced.status.success(), "{forced:?}");
    assert!(
        stdout.contains(&format!(
            "not observed: XDP (XDP program {foreign_id} already holds eth0)"
        )),
        "{stdout}"
    );
    assert!(!stdout.contains("eth0 XDP ->"), "{stdout}");
    assert_eq!(xdp_on_eth0(), Some(foreign_id));
    assert_eq!(lab.fetch(ResponseSize::Small).expect("fetch").status, 200);
}
