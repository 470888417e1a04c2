//! Each mode's pod datapath on top of the node segment, built the way the
//! real system builds it (Docker, flanneld with its CNI bridge, the VPC
//! route table).

use std::net::Ipv4Addr;

use super::{
    cmd::{CommandError, sh},
    layout::{
        Cidr, DOCKER0, Lab, Node, POD_NETWORK, PUBLISHED_PORT, Pod, ROUTER_IP, SERVER_PORT,
        cni_gateway,
    },
    mode::Mode,
    topology::veth,
};
use crate::netns::NetNs;

/// Outer IPv4, UDP and VXLAN headers plus the inner Ethernet header:
/// flanneld gives `flannel.1` the uplink's MTU minus this.
const VXLAN_OVERHEAD: u32 = 50;
/// flanneld's VNI and UDP port for the vxlan backend.
const FLANNEL_VNI: u32 = 1;
const FLANNEL_PORT: u16 = 8472;

/// Docker's NAT and filter rules for its default network on every node
/// (Docker 20-24, less DOCKER-USER and DOCKER-ISOLATION-*, which are empty
/// with one network). Docker sets FORWARD to DROP when it turns on
/// forwarding, then lets the bridge's traffic through.
const DOCKER_RULES: &[&str] = &[
    "-t nat -N DOCKER",
    "-t nat -A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
    "-t nat -A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER",
    "-t nat -A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
    "-t nat -A DOCKER -i docker0 -j RETURN",
    "-N DOCKER",
    "-P FORWARD DROP",
    "-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    "-A FORWARD -o docker0 -j DOCKER",
    "-A FORWARD -i docker0 ! -o docker0 -j ACCEPT",
    "-A FORWARD -i docker0 -o docker0 -j ACCEPT",
];

pub(crate) fn build(lab: &Lab) -> Result<(), CommandError> {
    let mtu = lab.spec().mtu;
    match lab.mode() {
        Mode::Host => {}
        Mode::Bridge => {
            for node in lab.nodes() {
                docker(lab, node, mtu)?;
            }
        }
        Mode::FlannelHostgw => {
            for (n, node) in numbered(lab) {
                bridged_pods(node, "cni0", cni_gateway(n), mtu)?;
                for (_, other) in numbered(lab).filter(|(m, _)| *m != n) {
                    let subnet = other.pod_subnet.expect("cni modes have pod subnets");
                    sh(
                        Some(&node.netns),
                        &format!("ip route add {subnet} via {} dev eth0", other.ip),
                    )?;
                }
            }
        }
        // The fast path goes on once the pods are up (`Lab::build`).
        Mode::FlannelVxlan | Mode::VxlanFastpath => {
            for (n, node) in numbered(lab) {
                flannel_vxlan(lab, n, node, mtu - VXLAN_OVERHEAD)?;
                bridged_pods(node, "cni0", cni_gateway(n), mtu - VXLAN_OVERHEAD)?;
            }
        }
        Mode::Ipvlan => {
            for node in lab.nodes() {
                uplink_pods(node, "ipvlan mode l2")?;
            }
        }
        Mode::Macvlan => {
            for node in lab.nodes() {
                uplink_pods(node, "macvlan mode bridge")?;
            }
        }
        Mode::AwsVpc => {
            let router = lab.router_netns().expect("aws-vpc has a router");
            for (n, node) in numbered(lab) {
                let subnet = node.pod_subnet.expect("cni modes have pod subnets");
                // The VPC route table: one route per node's pod subnet.
                sh(
                    Some(router),
                    &format!("ip route add {subnet} via {} dev {}", node.ip, node.name),
                )?;
                bridged_pods(node, "cni0", cni_gateway(n), mtu)?;
                sh(
                    Some(&node.netns),
                    &format!("ip route add {POD_NETWORK} via {ROUTER_IP} dev eth0"),
                )?;
            }
        }
    }
    Ok(())
}

/// Nodes with their numbers, from 1.
fn numbered(lab: &Lab) -> impl Iterator<Item = (usize, &Node)> {
    lab.nodes()
        .iter()
        .enumerate()
        .map(|(i, node)| (i + 1, node))
}

/// A bridge on the node holding `gateway`, and each pod on it through a
/// veth pair, routed by the node.
fn bridged_pods(node: &Node, bridge: &str, gateway: Cidr, mtu: u32) -> Result<(), CommandError> {
    let ns = Some(node.netns.as_str());
    sh(ns, &format!("ip link add {bridge} mtu {mtu} type bridge"))?;
    sh(ns, &format!("ip addr add {gateway} dev {bridge}"))?;
    sh(ns, &format!("ip link set {bridge} up"))?;
    for pod in &node.pods {
        let host_if = pod
            .host_if
            .as_deref()
            .expect("bridged pods have a host-side veth");
        veth((&node.netns, host_if), (&pod.netns, "eth0"), mtu)?;
        sh(ns, &format!("ip link set {host_if} master {bridge} up"))?;
        pod_address(pod, Some(gateway.addr))?;
    }
    Ok(())
}

/// Each pod gets a `kind` device on the node's `eth0`, created straight
/// into the pod; the pods sit on the node segment, with no bridge or
/// routing on the node.
fn uplink_pods(node: &Node, kind: &str) -> Result<(), CommandError> {
    for pod in &node.pods {
        sh(
            Some(&node.netns),
            &format!(
                "ip link add link eth0 name eth0 netns {} type {kind}",
                pod.netns
            ),
        )?;
        pod_address(pod, None)?;
    }
    Ok(())
}

fn pod_address(pod: &Pod, gateway: Option<Ipv4Addr>) -> Result<(), CommandError> {
    let ns = Some(pod.netns.as_str());
    sh(
        ns,
        &format!("ip addr add {}/{} dev eth0", pod.ip, pod.prefix_len),
    )?;
    sh(ns, "ip link set eth0 up")?;
    if let Some(gateway) = gateway {
        sh(ns, &format!("ip route add default via {gateway}"))?;
    }
    Ok(())
}

fn docker(lab: &Lab, node: &Node, mtu: u32) -> Result<(), CommandError> {
    bridged_pods(node, "docker0", DOCKER0, mtu)?;
    let ns = Some(node.netns.as_str());
    for rule in DOCKER_RULES {
        sh(ns, &format!("iptables -w {rule}"))?;
    }
    // `docker run -p 8080:80` of the server container.
    if let Some(server) = node
        .pods
        .first()
        .filter(|pod| pod.netns == lab.server_netns())
    {
        let pod = server.ip;
        sh(
            ns,
            &format!(
                "iptables -w -t nat -A DOCKER ! -i docker0 -p tcp -m tcp --dport {PUBLISHED_PORT} \
                 -j DNAT --to-destination {pod}:{SERVER_PORT}"
            ),
        )?;
        sh(
            ns,
            &format!(
                "iptables -w -A DOCKER -d {pod}/32 ! -i docker0 -o docker0 -p tcp -m tcp \
                 --dport {SERVER_PORT} -j ACCEPT"
            ),
        )?;
    }
    Ok(())
}

/// flanneld's MAC for node `n`'s `flannel.1`. flanneld picks one and
/// publishes it in the node's lease; a fixed one stands in for the lookup.
fn vtep_mac(n: usize) -> String {
    format!("0e:77:00:00:00:{n:02x}")
}

/// `flannel.1` as flanneld's vxlan backend sets it up: its address is the
/// node subnet's `.0`, and each remote node gets a permanent neighbour
/// entry for its VTEP, an FDB entry sending that MAC to its node address,
/// and an onlink route for its pod subnet via its VTEP address.
fn flannel_vxlan(lab: &Lab, n: usize, node: &Node, mtu: u32) -> Result<(), CommandError> {
    let ns = Some(node.netns.as_str());
    sh(
        ns,
        &format!(
            "ip link add flannel.1 address {} mtu {mtu} type vxlan id {FLANNEL_VNI} \
             local {} dev eth0 dstport {FLANNEL_PORT} nolearning",
            vtep_mac(n),
            node.ip
        ),
    )?;
    let own = node.pod_subnet.expect("cni modes have pod subnets");
    sh(ns, &format!("ip addr add {}/32 dev flannel.1", own.addr))?;
    sh(ns, "ip link set flannel.1 up")?;
    for (m, other) in numbered(lab).filter(|(m, _)| *m != n) {
        let subnet = other.pod_subnet.expect("cni modes have pod subnets");
        let (vtep, mac) = (subnet.addr, vtep_mac(m));
        sh(
            ns,
            &format!("ip neigh replace {vtep} lladdr {mac} dev flannel.1 nud permanent"),
        )?;
        sh(
            ns,
            &format!("bridge fdb append {mac} dev flannel.1 dst {}", other.ip),
        )?;
        sh(
            ns,
            &format!("ip route add {subnet} via {vtep} dev flannel.1 onlink"),
        )?;
    }
    Ok(())
}

/// Whether this kernel can create ipvlan devices. Tries to make one (which
/// also loads the module where there is one) in a throwaway namespace.
pub(crate) fn ipvlan_available() -> Result<bool, CommandError> {
    NetNs::run_in_new(|| {
        sh(None, "ip link add probe0 type veth peer name probe1")?;
        match sh(
            None,
            "ip link add link probe0 name probe2 type ipvlan mode l2",
        ) {
            Ok(_) => Ok(true),
            Err(CommandError::Failed { stderr, .. })
                if stderr.contains("Unknown device type") || stderr.contains("not supported") =>
            {
                Ok(false)
            }
            Err(err) => Err(err),
        }
    })?
}
