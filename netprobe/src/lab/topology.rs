//! The lab's machines and the wire between them: a namespace per node, pod,
//! switch and router, and the node segment standing for the study's 10 GbE
//! link. Every link is created inside lab namespaces, none in the caller's.

use super::{
    cmd::{CommandError, sh, sysctl},
    layout::{Lab, NODE_PREFIX_LEN, Node, ROUTER_IP},
};

/// IPv6 off: the links then carry only the traffic under test, no router
/// solicitations or duplicate address detection.
const QUIET: &[&str] = &[
    "net.ipv6.conf.all.disable_ipv6=1",
    "net.ipv6.conf.default.disable_ipv6=1",
];
const FORWARDING: &[&str] = &["net.ipv4.ip_forward=1"];
/// The router forwards between the nodes' ports.
const ROUTER: &[&str] = &["net.ipv4.ip_forward=1"];

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

/// Every node's uplink is `eth0`, as on a real machine. Two nodes share a
/// veth pair; more meet on bridge `br0` in the switch namespace, on a port
/// named after the node. With a router (aws-vpc) nodes share no L2 segment,
/// as in a VPC: each node's link ends at the router, on a port named after
/// the node, and the router routes between them.
fn wire_segment(lab: &Lab) -> Result<(), CommandError> {
    let mtu = lab.spec().mtu;
    let nodes = lab.nodes();
    match (lab.router_netns(), lab.switch_netns(), nodes) {
        (Some(router), _, _) => wire_router(router, nodes, mtu)?,
        (None, Some(switch), _) => wire_switch(switch, nodes, mtu)?,
        (None, None, [a, b]) => veth((&a.netns, "eth0"), (&b.netns, "eth0"), mtu)?,
        (None, None, _) => unreachable!("the layout adds a switch for more than two nodes"),
    }
    for node in nodes {
        sh(
            Some(&node.netns),
            &format!("ip addr add {}/{NODE_PREFIX_LEN} dev eth0", node.ip),
        )?;
        sh(Some(&node.netns), "ip link set eth0 up")?;
    }
    Ok(())
}

fn wire_switch(switch: &str, nodes: &[Node], mtu: u32) -> Result<(), CommandError> {
    sh(
        Some(switch),
        &format!("ip link add br0 mtu {mtu} type bridge"),
    )?;
    sh(Some(switch), "ip link set br0 up")?;
    for node in nodes {
        veth((&node.netns, "eth0"), (switch, &node.name), mtu)?;
        sh(
            Some(switch),
            &format!("ip link set {} master br0 up", node.name),
        )?;
    }
    Ok(())
}

/// The router's address is on its loopback, so every port answers for it;
/// each node's address is routed to its port. Like the VPC fabric, the router
/// answers ARP for every address it routes (proxy ARP), at once rather than
/// after the default random delay, so nodes on the same subnet reach each
/// other through it too.
fn wire_router(router: &str, nodes: &[Node], mtu: u32) -> Result<(), CommandError> {
    sh(Some(router), &format!("ip addr add {ROUTER_IP}/32 dev lo"))?;
    for node in nodes {
        let port = &node.name;
        veth((&node.netns, "eth0"), (router, port), mtu)?;
        sysctl(
            router,
            &[
                format!("net.ipv4.conf.{port}.proxy_arp=1").as_str(),
                format!("net.ipv4.neigh.{port}.proxy_delay=0").as_str(),
            ],
        )?;
        sh(Some(router), &format!("ip link set {port} up"))?;
        sh(
            Some(router),
            &format!("ip route add {}/32 dev {port}", node.ip),
        )?;
    }
    Ok(())
}
