//! Someone else's XDP program on a device: what netprobe must refuse to
//! replace and never touch.

use aya::{
    Ebpf,
    programs::{Xdp, XdpMode},
};
use netprobe::{netns::NetNs, probes::TESTING_OBJECT};

use super::hooks::DeviceHooks;

/// Attaches the testing object's `foreign_pass` to `device` in `netns`
/// (generic XDP); returns the object, which keeps it attached, and the
/// program's id.
pub fn attach_foreign_xdp(netns: &NetNs, device: &str) -> (Ebpf, u32) {
    let mut foreign = Ebpf::load(TESTING_OBJECT).expect("testing object");
    let program: &mut Xdp = foreign
        .program_mut("foreign_pass")
        .expect("foreign program")
        .try_into()
        .expect("xdp");
    program.load().expect("loads");
    {
        let _in_netns = netns.enter().expect("enter namespace");
        program
            .attach(device, XdpMode::Skb)
            .expect("attach foreign XDP");
    }
    let id = program.info().expect("info").id();
    (foreign, id)
}

/// Id of the XDP program on `device` in `netns`, if any.
pub fn xdp_program_on(netns: &NetNs, device: &str) -> Option<u32> {
    DeviceHooks::of(netns, device).xdp
}
