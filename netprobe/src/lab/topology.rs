//! The lab's machines and the wire between them: a namespace per node, pod,
//! switch and router, and the node segment standing for the study's 10 GbE
//! link. Every link is created inside lab namespaces, none in the caller's.

use std::net::Ipv4Addr;

use super::{
    cmd::{CommandError, sh, sysctl},
    layout::{Lab, NODE_PREFIX_LEN, ROUTER_IP},
};

/// IPv6 off: the links then carry only the traffic under test, no router
/// solicitations or duplicate address detection.
const QUIET: &[&str] = &[
    "net.ipv6.conf.all.disable_ipv6=1",
    "net.ipv6.conf.default.disable_ipv6=1",
];
const FORWARDING: &[&str] = &["net.ipv4.ip_forward=1"];
/// The router sends packets back out the port they came in on; redirects
/// would teach the nodes to bypass it, which the VPC router never does.
const ROUTER: &[&str] = &[
    "net.ipv4.ip_forward=1",
    "net.ipv4.conf.all.send_redirects=0",
    "net.ipv4.conf.default.send_redirects=0",
];

/// A namespace on the node segment.
struct Member<'a> {
    name: &'a str,
    netns: &'a str,
    ip: Ipv4Addr,
}

pub(crate) fn build(lab: &Lab) -> Result<(), CommandError> {
    let node_sysctls = if lab.mode().nodes_route() {
        FORWARDING
    } else {
        &[]
    };
    for node in lab.nodes() {
        add_netns(&node.netns, node_sysctls)?;
        for pod in &node.pods {
            add_netns(&pod.netns, &[])?;
        }
    }
    if let Some(switch) = lab.switch_netns() {
        add_netns(switch, &[])?;
    }
    if let Some(router) = lab.router_netns() {
        add_netns(router, ROUTER)?;
    }
    wire_segment(lab)
}

fn add_netns(netns: &str, sysctls: &[&str]) -> Result<(), CommandError> {
    sh(None, &format!("ip netns add {netns}"))?;
    sh(Some(netns), "ip link set lo up")?;
    sysctl(netns, &[QUIET, sysctls].concat())
}

/// A veth pair created straight into its two namespaces.
pub(crate) fn veth(
    (a_netns, a_name): (&str, &str),
    (b_netns, b_name): (&str, &str),
    mtu: u32,
) -> Result<(), CommandError> {
    sh(
        None,
        &format!(
            "ip link add {a_name} netns {a_netns} mtu {mtu} type veth \
             peer name {b_name} netns {b_netns} mtu {mtu}"
        ),
    )?;
    Ok(())
}

/// Every member's uplink is `eth0`, as on a real machine. Two members share
/// a veth pair; more meet on bridge `br0` in the switch namespace, on a
/// port named after the member.
fn wire_segment(lab: &Lab) -> Result<(), CommandError> {
    let mtu = lab.spec().mtu;
    let mut members: Vec<Member> = lab
        .nodes()
        .iter()
        .map(|node| Member {
            name: &node.name,
            netns: &node.netns,
            ip: node.ip,
        })
        .collect();
    if let Some(router) = lab.router_netns() {
        members.push(Member {
            name: "router",
            netns: router,
            ip: ROUTER_IP,
        });
    }
    match (lab.switch_netns(), members.as_slice()) {
        (None, [a, b]) => veth((a.netns, "eth0"), (b.netns, "eth0"), mtu)?,
        (Some(switch), _) => {
            sh(
                Some(switch),
                &format!("ip link add br0 mtu {mtu} type bridge"),
            )?;
            sh(Some(switch), "ip link set br0 up")?;
            for member in &members {
                veth((member.netns, "eth0"), (switch, member.name), mtu)?;
                sh(
                    Some(switch),
                    &format!("ip link set {} master br0 up", member.name),
                )?;
            }
        }
        (None, _) => unreachable!("the layout adds a switch for more than two members"),
    }
    for member in &members {
        sh(
            Some(member.netns),
            &format!("ip addr add {}/{NODE_PREFIX_LEN} dev eth0", member.ip),
        )?;
        sh(Some(member.netns), "ip link set eth0 up")?;
    }
    Ok(())
}
