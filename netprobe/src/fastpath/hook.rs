//! `--hook auto`: the ingress hook that is faster for the kind of
//! interface, and why, for `status`.
//!
//! - A veth: TC. Native XDP on a veth gets an skb and builds an XDP buffer
//!   from it, then a new skb for the pod; TC works on the skb as it is. On
//!   the lab's veth wire (two nodes, flannel's VXLAN, one pod each, nginx,
//!   `wrk -t1 -c50`, both nodes enabled, five interleaved rounds) the kernel's
//!   path served 52.0k requests/s, XDP 52.1k (1.00x) and TC 60.6k (1.17x).
//! - A physical NIC (no link kind): native XDP, which runs before the
//!   driver builds an skb. Not measured here: these machines have no
//!   physical NIC to try. A driver without native XDP falls back to TC.
//! - Any other virtual device (bond, vlan, macvlan, ...): TC, as for a veth;
//!   their XDP is generic, which builds the skb anyway.
//! - An interface whose XDP hook holds someone else's program: TC, which
//!   runs beside it.
//!
//! Asking for an `--xdp-mode` asks for XDP.

use serde::{Deserialize, Serialize};

use super::FastpathHook;
use crate::{bpf_link::XdpModeChoice, netlink::Link};

/// `--hook`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HookChoice {
    /// TC on a veth or other virtual device, native XDP on a physical NIC.
    #[default]
    Auto,
    /// XDP on the interface: strip the headers, redirect through a DEVMAP.
    Xdp,
    /// TC ingress (tcx): strip the headers, `bpf_redirect_peer` into the pod.
    Tc,
}

impl HookChoice {
    pub fn name(self) -> &'static str {
        match self {
            HookChoice::Auto => "auto",
            HookChoice::Xdp => "xdp",
            HookChoice::Tc => "tc",
        }
    }
}

/// The hook to run on `nic`, the XDP modes to try, and why.
pub struct Resolved {
    pub hook: FastpathHook,
    pub xdp_mode: XdpModeChoice,
    /// When XDP native is refused, whether TC takes its place.
    pub tc_fallback: bool,
    pub reason: String,
}

/// What `choice` and `xdp_mode` (`--hook`, `--xdp-mode`) come to on `nic`.
pub fn resolve(choice: HookChoice, xdp_mode: XdpModeChoice, nic: &Link) -> Resolved {
    let resolved = |hook, xdp_mode, reason: &str| Resolved {
        hook,
        xdp_mode,
        tc_fallback: false,
        reason: reason.to_owned(),
    };
    match choice {
        HookChoice::Xdp => resolved(FastpathHook::Xdp, xdp_mode, "--hook xdp"),
        HookChoice::Tc => resolved(FastpathHook::Tc, xdp_mode, "--hook tc"),
        HookChoice::Auto if xdp_mode != XdpModeChoice::Auto => {
            resolved(FastpathHook::Xdp, xdp_mode, "--xdp-mode asks for XDP")
        }
        HookChoice::Auto => match (nic.xdp_prog_id, nic.kind.as_str()) {
            (Some(prog_id), _) => Resolved {
                reason: format!("auto: XDP holds program {prog_id}, TC runs beside it"),
                ..resolved(FastpathHook::Tc, xdp_mode, "")
            },
            (None, "") => Resolved {
                tc_fallback: true,
                ..resolved(
                    FastpathHook::Xdp,
                    XdpModeChoice::Native,
                    "auto: a physical NIC takes native XDP (not measured on this machine)",
                )
            },
            (None, "veth") => resolved(
                FastpathHook::Tc,
                xdp_mode,
                "auto: a veth takes TC (measured 1.17x the kernel's requests/s, XDP 1.00x)",
            ),
            (None, kind) => Resolved {
                reason: format!("auto: a {kind} device takes TC (its XDP is generic)"),
                ..resolved(FastpathHook::Tc, xdp_mode, "")
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(kind: &str, xdp_prog_id: Option<u32>) -> Link {
        Link {
            name: "eth0".into(),
            kind: kind.into(),
            xdp_prog_id,
            ..Link::default()
        }
    }

    #[test]
    fn auto_takes_tc_on_virtual_devices_and_native_xdp_on_physical_nics() {
        let auto = |link: &Link| resolve(HookChoice::Auto, XdpModeChoice::Auto, link);
        let veth = auto(&link("veth", None));
        assert_eq!((veth.hook, veth.tc_fallback), (FastpathHook::Tc, false));
        assert!(veth.reason.contains("measured"), "{}", veth.reason);
        let physical = auto(&link("", None));
        assert_eq!(
            (physical.hook, physical.xdp_mode, physical.tc_fallback),
            (FastpathHook::Xdp, XdpModeChoice::Native, true)
        );
        assert!(
            physical.reason.contains("not measured"),
            "{}",
            physical.reason
        );
        assert_eq!(auto(&link("bond", None)).hook, FastpathHook::Tc);
        let taken = auto(&link("", Some(7)));
        assert_eq!(taken.hook, FastpathHook::Tc);
        assert!(taken.reason.contains("program 7"), "{}", taken.reason);
    }

    #[test]
    fn asking_for_a_hook_or_an_xdp_mode_is_followed() {
        let veth = link("veth", None);
        assert_eq!(
            resolve(HookChoice::Xdp, XdpModeChoice::Auto, &veth).hook,
            FastpathHook::Xdp
        );
        assert_eq!(
            resolve(HookChoice::Tc, XdpModeChoice::Auto, &link("", None)).hook,
            FastpathHook::Tc
        );
        let generic = resolve(HookChoice::Auto, XdpModeChoice::Generic, &veth);
        assert_eq!(
            (generic.hook, generic.xdp_mode, generic.tc_fallback),
            (FastpathHook::Xdp, XdpModeChoice::Generic, false)
        );
    }
}
