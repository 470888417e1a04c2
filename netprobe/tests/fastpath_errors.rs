//! Bad input to `netprobe fastpath`: one line naming the problem, a
//! non-zero exit, and nothing attached, pinned, running or changed.

mod support;

use std::process::Output;

use netprobe::fastpath::FastpathHook;
use netprobe::{
    ethtool::Feature,
    lab::{LabGuard, LabSpec, Mode, ResponseSize, unique_prefix},
    netns::NetNs,
};
use support::{
    fastpath::{assert_no_fastpath, disable, enable, feature, record},
    foreign::{attach_foreign_xdp, xdp_program_on},
    require_root,
    session::netprobe,
};

/// Checks the one-line error, and that `node`'s `eth0` has no fast path.
fn assert_refused(output: &Output, code: i32, message: &str, node: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(message), "{message:?} not in {stderr:?}");
    assert_no_fastpath(node, "eth0");
}

fn lab(mode: Mode) -> LabGuard {
    require_root();
    LabGuard::up(&LabSpec::new(unique_prefix("npfe"), mode)).expect("lab up")
}

fn enable_args<'a>(node: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    [&["fastpath", "enable", "eth0", "--netns", node][..], args].concat()
}

#[test]
fn vxlan_devices_that_do_not_match_are_refused() {
    let lab = lab(Mode::FlannelVxlan);
    let node = &lab.nodes()[1].netns;
    let untouched = || {
        feature(&lab.nodes()[0].netns, "eth0", Feature::TxChecksum)
            && !feature(&lab.nodes()[1].pods[0].netns, "eth0", Feature::Gro)
    };
    for (args, message) in [
        (
            &["--port", "4789"][..],
            "error: no vxlan device on eth0 has port 4789 (found: flannel.1 port 8472 VNI 1)",
        ),
        (
            &["--vni", "2"],
            "error: no vxlan device on eth0 has VNI 2 (found: flannel.1 port 8472 VNI 1)",
        ),
        (
            &["--vxlan-dev", "flannel.1", "--port", "8472", "--vni", "7"],
            "error: no vxlan device on eth0 has port 8472 and VNI 7",
        ),
        (
            &["--vxlan-dev", "nosuch.1"],
            "error: no vxlan device nosuch.1",
        ),
        (&["--vxlan-dev", "cni0"], "error: no vxlan device cni0"),
    ] {
        assert_refused(&netprobe(&enable_args(node, args)), 1, message, node);
        assert!(untouched(), "{args:?} changed a device");
    }
    for (args, message) in [
        // An interface no vxlan device sends through.
        (
            ["enable", "veth1", "--netns", node],
            "error: no vxlan device sends through veth1",
        ),
        (
            ["enable", "nosuch0", "--netns", node],
            "error: no interface nosuch0 in",
        ),
        (
            ["enable", "eth0", "--netns", "nosuch-netns"],
            "network namespace \"nosuch-netns\" does not exist",
        ),
        // Disabling what is not enabled.
        (
            ["disable", "eth0", "--netns", node],
            "error: no fast path on eth0@",
        ),
    ] {
        let output = netprobe(&[&["fastpath"][..], &args].concat());
        assert_refused(&output, 1, message, node);
    }
    // Enabling twice.
    enable(node, &[]);
    for hook in ["xdp", "tc"] {
        let output = netprobe(&enable_args(node, &["--hook", hook]));
        assert_eq!(output.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("already enabled on eth0@"),
            "{output:?}"
        );
    }
    disable(node);
    assert_no_fastpath(node, "eth0");
    assert!(untouched());
    assert_eq!(lab.fetch(ResponseSize::Small).expect("fetch").status, 200);
}

#[test]
fn a_node_without_vxlan_is_refused() {
    let lab = lab(Mode::FlannelHostgw);
    let node = &lab.nodes()[1].netns;
    let output = netprobe(&enable_args(node, &[]));
    assert_refused(
        &output,
        1,
        "error: no vxlan device sends through eth0",
        node,
    );
}

#[test]
fn unparsable_arguments() {
    require_root();
    for (args, message) in [
        (&["--hook", "kprobe"][..], "--hook"),
        (&["--xdp-mode", "turbo"], "--xdp-mode"),
        (&["--port", "99999"], "--port"),
        (&["--vni", "one"], "--vni"),
    ] {
        let output = netprobe(&[&["fastpath", "enable", "eth0"][..], args].concat());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains(message), "{message:?} not in {stderr:?}");
    }
}

#[test]
fn someone_elses_xdp_program_is_refused_and_never_touched() {
    let lab = lab(Mode::FlannelVxlan);
    let node_name = &lab.nodes()[1].netns;
    let node = NetNs::named(node_name).expect("node");
    let (_foreign, foreign_id) = attach_foreign_xdp(&node, "eth0");
    let xdp_on_eth0 = || xdp_program_on(&node, "eth0");
    assert_eq!(xdp_on_eth0(), Some(foreign_id));
    for mode in ["auto", "native", "generic"] {
        let output = netprobe(&enable_args(
            node_name,
            &["--hook", "xdp", "--xdp-mode", mode],
        ));
        assert_refused(
            &output,
            1,
            &format!(
                "eth0@{node_name} already has an XDP program (id {foreign_id}); \
                 netprobe never replaces it (--hook tc runs the fast path without XDP)"
            ),
            node_name,
        );
        assert_eq!(xdp_on_eth0(), Some(foreign_id));
    }
    // The default hook, TC, runs beside it, and goes without touching it.
    let id = enable(node_name, &[]);
    assert_eq!(record(&id).hook, FastpathHook::Tc);
    assert_eq!(lab.fetch(ResponseSize::Small).expect("fetch").status, 200);
    disable(node_name);
    assert_eq!(xdp_on_eth0(), Some(foreign_id));
    assert_no_fastpath(node_name, "eth0");
}
