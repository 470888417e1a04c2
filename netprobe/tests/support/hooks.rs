//! The programs on a device's XDP and tcx hooks, as the kernel lists them.

use aya::programs::{SchedClassifier, TcAttachType};
use netprobe::{netlink, netns::NetNs};

/// Program ids on one device's hooks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceHooks {
    pub xdp: Option<u32>,
    pub tcx_ingress: Vec<u32>,
    pub tcx_egress: Vec<u32>,
}

impl DeviceHooks {
    /// The hooks of `device` in `netns`, which must exist.
    pub fn of(netns: &NetNs, device: &str) -> Self {
        netns
            .run(|| {
                let xdp = netlink::links()
                    .expect("links")
                    .into_iter()
                    .find(|link| link.name == device)
                    .unwrap_or_else(|| panic!("no device {device}"))
                    .xdp_prog_id;
                let tcx = |attach_type| {
                    let (_, programs) = SchedClassifier::query_tcx(device, attach_type)
                        .unwrap_or_else(|error| panic!("tcx of {device}: {error}"));
                    programs.iter().map(|program| program.id()).collect()
                };
                Self {
                    xdp,
                    tcx_ingress: tcx(TcAttachType::Ingress),
                    tcx_egress: tcx(TcAttachType::Egress),
                }
            })
            .expect("enter namespace")
    }

    /// Every program on the device's hooks.
    pub fn programs(&self) -> impl Iterator<Item = u32> + '_ {
        self.xdp
            .iter()
            .chain(&self.tcx_ingress)
            .chain(&self.tcx_egress)
            .copied()
    }
}
