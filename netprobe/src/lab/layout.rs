//! Names and addresses of a lab, worked out from its spec before anything
//! is built (`topology` and `datapath` build it). Labs are isolated from
//! each other by their namespaces, so every lab uses the same addresses:
//!
//! - nodes `10.77.0.N/16` on `eth0`; the router (aws-vpc) `10.77.0.254`, with
//!   a port per node;
//! - pod subnets `10.78.N.0/24`, bridge `cni0` at `.1`, pod K at `.K+1`;
//! - Docker: `docker0` `172.17.0.1/16` on every node, pod K `172.17.0.K+1`;
//! - macvlan/ipvlan pods on the node subnet: pod K of node N `10.77.N.K/16`.

use std::{
    fmt,
    net::{Ipv4Addr, SocketAddrV4},
};

use serde::{Deserialize, Serialize};

use super::{
    mode::{Mode, PodNet},
    nginx::ResponseSize,
    spec::LabSpec,
};

/// Prefix length of the node segment.
pub(crate) const NODE_PREFIX_LEN: u8 = 16;
/// The router namespace's address (aws-vpc).
pub(crate) const ROUTER_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 254);
/// Docker's default bridge address, the same on every node.
pub(crate) const DOCKER0: Cidr = Cidr::new(Ipv4Addr::new(172, 17, 0, 1), 16);
/// All pod subnets together.
pub(crate) const POD_NETWORK: Cidr = Cidr::new(Ipv4Addr::new(10, 78, 0, 0), 16);
/// Where nginx listens inside its namespace.
pub(crate) const SERVER_PORT: u16 = 80;
/// The node port the Docker server is published on.
pub(crate) const PUBLISHED_PORT: u16 = 8080;

/// An IPv4 address with a prefix length, shown as `a.b.c.d/len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cidr {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Cidr {
    pub const fn new(addr: Ipv4Addr, len: u8) -> Self {
        Self { addr, len }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// `node1`, `node2`, ...: the name `lab exec` takes.
    pub name: String,
    pub netns: String,
    /// Address on `eth0`, the uplink to the node segment.
    pub ip: Ipv4Addr,
    /// The node's pod subnet in the flannel and aws-vpc modes.
    pub pod_subnet: Option<Cidr>,
    pub pods: Vec<Pod>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pod {
    /// `node1-pod1`, ...: the name `lab exec` takes.
    pub name: String,
    pub netns: String,
    /// Address on the pod's `eth0`.
    pub ip: Ipv4Addr,
    pub prefix_len: u8,
    /// The node's end of the pod's veth pair (none for macvlan/ipvlan).
    pub host_if: Option<String>,
}

/// A lab's namespaces and addresses: what `Lab::up` built, or will build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lab {
    pub(crate) spec: LabSpec,
    pub(crate) nodes: Vec<Node>,
    /// Namespace holding bridge `br0` that joins the node uplinks when a
    /// veth pair cannot (more than two members).
    pub(crate) switch: Option<String>,
    /// Namespace standing for the VPC route table (aws-vpc).
    pub(crate) router: Option<String>,
    pub(crate) client_netns: String,
    pub(crate) server_netns: String,
    pub(crate) server_addr: SocketAddrV4,
}

pub(crate) fn node_ip(node: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 0, octet(node))
}

pub(crate) fn pod_subnet(node: usize) -> Cidr {
    Cidr::new(Ipv4Addr::new(10, 78, octet(node), 0), 24)
}

/// The node's `cni0` address, its pods' default gateway.
pub(crate) fn cni_gateway(node: usize) -> Cidr {
    Cidr::new(Ipv4Addr::new(10, 78, octet(node), 1), 24)
}

/// Node and pod numbers are validated to fit an address byte.
fn octet(n: usize) -> u8 {
    u8::try_from(n).expect("node and pod numbers are validated to be at most 250")
}

fn netns_name(prefix: &str, name: &str) -> String {
    format!("{prefix}-{name}")
}

/// Whether `netns` is one of the namespaces a lab with `prefix` creates.
/// Strict, so that a lab never claims another's (prefix `a` must not take
/// `a-b-node1` or `a-x`).
pub(crate) fn is_lab_netns(prefix: &str, netns: &str) -> bool {
    let Some(name) = netns
        .strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('-'))
    else {
        return false;
    };
    let numbered = |s: &str, word: &str| {
        s.strip_prefix(word)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    match name.split_once('-') {
        None => name == "switch" || name == "router" || numbered(name, "node"),
        Some((node, pod)) => numbered(node, "node") && numbered(pod, "pod"),
    }
}

impl Lab {
    /// Works out the names and addresses of the lab `spec` asks for; the
    /// spec must be valid.
    pub(crate) fn plan(spec: &LabSpec) -> Lab {
        let prefix = &spec.prefix;
        let pod_net = spec.mode.pod_net();
        let nodes: Vec<Node> = (1..=spec.nodes)
            .map(|n| {
                let name = format!("node{n}");
                let pods = match pod_net {
                    PodNet::HostNetwork => Vec::new(),
                    _ => (1..=spec.pods_per_node)
                        .map(|k| {
                            let (ip, prefix_len) = match pod_net {
                                PodNet::Docker => (
                                    Ipv4Addr::from(u32::from(DOCKER0.addr) + k as u32),
                                    DOCKER0.len,
                                ),
                                PodNet::Cni => (
                                    Ipv4Addr::from(u32::from(cni_gateway(n).addr) + k as u32),
                                    24,
                                ),
                                PodNet::Uplink => {
                                    (Ipv4Addr::new(10, 77, octet(n), octet(k)), NODE_PREFIX_LEN)
                                }
                                PodNet::HostNetwork => unreachable!("host network has no pods"),
                            };
                            let pod = format!("{name}-pod{k}");
                            Pod {
                                netns: netns_name(prefix, &pod),
                                name: pod,
                                ip,
                                prefix_len,
                                host_if: (pod_net != PodNet::Uplink).then(|| format!("veth{k}")),
                            }
                        })
                        .collect(),
                };
                Node {
                    netns: netns_name(prefix, &name),
                    name,
                    ip: node_ip(n),
                    pod_subnet: (pod_net == PodNet::Cni).then(|| pod_subnet(n)),
                    pods,
                }
            })
            .collect();
        let router = spec.mode.has_router().then(|| netns_name(prefix, "router"));
        // Client on node 1 and server on node 2, each in its first pod if
        // the mode has pods.
        let end = |node: &Node| {
            node.pods
                .first()
                .map_or(&node.netns, |pod| &pod.netns)
                .clone()
        };
        let server_addr = match pod_net {
            PodNet::HostNetwork => SocketAddrV4::new(nodes[1].ip, SERVER_PORT),
            PodNet::Docker => SocketAddrV4::new(nodes[1].ip, PUBLISHED_PORT),
            PodNet::Cni | PodNet::Uplink => SocketAddrV4::new(nodes[1].pods[0].ip, SERVER_PORT),
        };
        Lab {
            spec: spec.clone(),
            // The router is the segment when there is one.
            switch: (router.is_none() && nodes.len() > 2).then(|| netns_name(prefix, "switch")),
            router,
            client_netns: end(&nodes[0]),
            server_netns: end(&nodes[1]),
            server_addr,
            nodes,
        }
    }

    pub fn spec(&self) -> &LabSpec {
        &self.spec
    }

    pub fn prefix(&self) -> &str {
        &self.spec.prefix
    }

    pub fn mode(&self) -> Mode {
        self.spec.mode
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    pub fn node_ips(&self) -> Vec<Ipv4Addr> {
        self.nodes.iter().map(|node| node.ip).collect()
    }

    pub fn pods(&self) -> impl Iterator<Item = &Pod> {
        self.nodes.iter().flat_map(|node| &node.pods)
    }

    pub fn pod_ips(&self) -> Vec<Ipv4Addr> {
        self.pods().map(|pod| pod.ip).collect()
    }

    pub fn switch_netns(&self) -> Option<&str> {
        self.switch.as_deref()
    }

    pub fn router_netns(&self) -> Option<&str> {
        self.router.as_deref()
    }

    /// Where the load generator runs: pod 1 of node 1, or node 1 itself in
    /// host mode.
    pub fn client_netns(&self) -> &str {
        &self.client_netns
    }

    /// Where nginx runs: pod 1 of node 2, or node 2 itself in host mode.
    pub fn server_netns(&self) -> &str {
        &self.server_netns
    }

    /// The address the client connects to: the server pod's, or in bridge
    /// mode node 2's published port, or node 2's in host mode.
    pub fn server_addr(&self) -> SocketAddrV4 {
        self.server_addr
    }

    pub fn server_url(&self, size: ResponseSize) -> String {
        format!("http://{}{}", self.server_addr, size.path())
    }

    /// Every namespace as (name for `lab exec`, namespace name): nodes
    /// with their pods, then the switch and router if there are.
    pub fn namespaces(&self) -> Vec<(&str, &str)> {
        let mut all = Vec::new();
        for node in &self.nodes {
            all.push((node.name.as_str(), node.netns.as_str()));
            all.extend(
                node.pods
                    .iter()
                    .map(|pod| (pod.name.as_str(), pod.netns.as_str())),
            );
        }
        all.extend(self.switch.as_deref().map(|ns| ("switch", ns)));
        all.extend(self.router.as_deref().map(|ns| ("router", ns)));
        all
    }

    /// The namespace `lab exec NAME` means (`node1`, `node1-pod1`, `switch`).
    pub fn netns(&self, name: &str) -> Option<&str> {
        self.namespaces()
            .into_iter()
            .find_map(|(short, netns)| (short == name).then_some(netns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(mode: Mode, nodes: usize, pods: usize) -> Lab {
        let mut spec = LabSpec::new("t", mode);
        spec.nodes = nodes;
        spec.pods_per_node = pods;
        spec.validate().unwrap();
        Lab::plan(&spec)
    }

    #[test]
    fn host_mode_runs_on_the_nodes() {
        let lab = plan(Mode::Host, 2, 1);
        assert_eq!(lab.client_netns(), "t-node1");
        assert_eq!(lab.server_netns(), "t-node2");
        assert_eq!(
            lab.server_url(ResponseSize::Small),
            "http://10.77.0.2:80/350"
        );
        assert!(lab.pod_ips().is_empty());
        assert_eq!(lab.switch_netns(), None);
    }

    #[test]
    fn pod_addresses_per_mode() {
        let lab = plan(Mode::Bridge, 2, 2);
        assert_eq!(
            lab.pod_ips()[..2],
            [Ipv4Addr::new(172, 17, 0, 2), Ipv4Addr::new(172, 17, 0, 3)]
        );
        assert_eq!(
            lab.server_url(ResponseSize::Large),
            "http://10.77.0.2:8080/4096"
        );
        assert_eq!(lab.nodes()[0].pods[1].host_if.as_deref(), Some("veth2"));

        let lab = plan(Mode::FlannelVxlan, 3, 1);
        assert_eq!(lab.server_netns(), "t-node2-pod1");
        assert_eq!(lab.server_addr(), "10.78.2.2:80".parse().unwrap());
        assert_eq!(lab.nodes()[2].pod_subnet, Some(pod_subnet(3)));
        assert_eq!(lab.switch_netns(), Some("t-switch"));

        let lab = plan(Mode::Macvlan, 2, 1);
        assert_eq!(
            lab.pod_ips(),
            [Ipv4Addr::new(10, 77, 1, 1), Ipv4Addr::new(10, 77, 2, 1)]
        );
        assert_eq!(lab.nodes()[0].pods[0].host_if, None);
    }

    #[test]
    fn aws_vpc_routes_through_a_router_without_a_switch() {
        let lab = plan(Mode::AwsVpc, 3, 1);
        assert_eq!(lab.router_netns(), Some("t-router"));
        assert_eq!(lab.switch_netns(), None);
        assert_eq!(lab.netns("router"), Some("t-router"));
        assert_eq!(lab.netns("node3-pod1"), Some("t-node3-pod1"));
        assert_eq!(lab.netns("node4"), None);
    }

    #[test]
    fn recognizes_only_its_own_namespaces() {
        for ns in ["np-node1", "np-node12-pod3", "np-switch", "np-router"] {
            assert!(is_lab_netns("np", ns), "{ns}");
        }
        for ns in [
            "np",
            "np-",
            "np-node",
            "np-nodex",
            "np-a-node1",
            "np-node1-",
            "npx-node1",
            "np-node1-pod",
            "np-switch2",
        ] {
            assert!(!is_lab_netns("np", ns), "{ns}");
        }
        assert!(!is_lab_netns("n", "np-node1"));
    }
}
