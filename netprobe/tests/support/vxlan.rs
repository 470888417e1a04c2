//! The fast path under BPF_PROG_TEST_RUN: a node with one remote node and
//! two pods, VXLAN frames between them with every field the rules look at
//! adjustable, and an independent reference of the rules, written over
//! plain bytes: what the fast path must do with any frame.

use std::net::Ipv4Addr;

use aya::{
    TestRunOptions,
    programs::{ProgramError, TestRun as _},
};
use netprobe::fastpath::{FastpathHook, LoadedFastpath};
use netprobe_common::fastpath::{
    COUNTERS, Counter, FastpathConfig, LocalAddresses, OUTER_LEN, PodEntry,
};

use super::{
    frames::{ETH_P_IP, ETH_P_IPV6, Frame, IPPROTO_TCP, IPPROTO_UDP, Ipv4, internet_checksum},
    require_root,
};

pub const PORT: u16 = 8472;
pub const VNI: u32 = 1;
pub const NIC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
pub const REMOTE_NIC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const VTEP_MAC: [u8; 6] = [0x0e, 0x77, 0, 0, 0, 0x02];
pub const REMOTE_VTEP_MAC: [u8; 6] = [0x0e, 0x77, 0, 0, 0, 0x01];
pub const BRIDGE_MAC: [u8; 6] = [0x7a, 0xcd, 0x12, 0xf9, 0xea, 0xe2];
pub const POD_MAC: [u8; 6] = [0xfa, 0xba, 0x78, 0xfa, 0xe6, 0x03];
pub const NODE: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
pub const REMOTE: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 78, 1, 2);
pub const POD: Ipv4Addr = Ipv4Addr::new(10, 78, 2, 2);
/// A pod whose veth is gone: in the pod map, not in the DEVMAP.
pub const GONE_POD: Ipv4Addr = Ipv4Addr::new(10, 78, 2, 3);
pub const POD_MTU: u16 = 1450;
/// The pod's "veth" is the test namespace's loopback: BPF_PROG_TEST_RUN
/// never transmits, but the DEVMAP only holds existing devices.
pub const POD_IFINDEX: u32 = 1;
const GONE_IFINDEX: u32 = 999_999;

pub const XDP_PASS: u32 = 2;
pub const XDP_REDIRECT: u32 = 4;
/// TC_ACT_UNSPEC: tcx goes on with the next program, then the stack.
pub const TC_PASS: u32 = u32::MAX;
pub const TC_ACT_REDIRECT: u32 = 7;

/// The node the programs are loaded for.
pub struct World {
    pub locals: Vec<Ipv4Addr>,
    pub remotes: Vec<Ipv4Addr>,
    pub pods: Vec<(Ipv4Addr, PodEntry)>,
    pub ports: Vec<u32>,
}

impl World {
    pub fn new() -> Self {
        let pod = |ifindex| PodEntry {
            ifindex,
            mtu: POD_MTU,
            pod_mac: POD_MAC,
            bridge_mac: BRIDGE_MAC,
            _pad: 0,
        };
        Self {
            locals: vec![NODE],
            remotes: vec![REMOTE],
            pods: vec![(POD, pod(POD_IFINDEX)), (GONE_POD, pod(GONE_IFINDEX))],
            ports: vec![POD_IFINDEX],
        }
    }

    /// The fast path loaded for this node, its maps filled in.
    pub fn load(&self) -> LoadedFastpath {
        require_root();
        let config = FastpathConfig {
            vni: VNI,
            port: PORT,
            nic_mac: NIC_MAC,
            vtep_mac: VTEP_MAC,
            _pad: 0,
        };
        let mut fastpath = LoadedFastpath::load(&config).expect("fast path loads");
        let maps = &mut fastpath.maps;
        let locals = LocalAddresses::new(self.locals.iter().map(|ip| key(*ip)));
        maps.locals.set(0, locals, 0).expect("locals");
        for ip in &self.remotes {
            maps.remotes.insert(key(*ip), 1, 0).expect("remote");
        }
        for (ip, entry) in &self.pods {
            maps.pods.insert(key(*ip), entry, 0).expect("pod");
        }
        for ifindex in &self.ports {
            maps.ports
                .insert(*ifindex, *ifindex, None, 0)
                .expect("DEVMAP entry");
        }
        fastpath
    }

    /// What the fast path must do with `frame`: the frame it redirects, or
    /// the counter of the first rule the frame breaks.
    pub fn reference(&self, frame: &[u8]) -> Result<Vec<u8>, Counter> {
        let len = frame.len();
        let need = |bytes: usize| {
            if len < bytes {
                Err(Counter::Truncated)
            } else {
                Ok(())
            }
        };
        let be16 = |at: usize| usize::from(u16::from_be_bytes([frame[at], frame[at + 1]]));
        let address =
            |at: usize| Ipv4Addr::new(frame[at], frame[at + 1], frame[at + 2], frame[at + 3]);
        need(14)?;
        if be16(12) != usize::from(ETH_P_IP) {
            return Err(Counter::NotVxlan);
        }
        need(34)?;
        if frame[14] >> 4 != 4 {
            return Err(Counter::Malformed);
        }
        if frame[23] != IPPROTO_UDP {
            return Err(Counter::NotVxlan);
        }
        ipv4_header_rules(&frame[14..34])?;
        need(42)?;
        if be16(36) != usize::from(PORT) {
            return Err(Counter::NotVxlan);
        }
        if frame[..6] != NIC_MAC || !self.locals.contains(&address(30)) {
            return Err(Counter::NotLocal);
        }
        if !self.remotes.contains(&address(26)) {
            return Err(Counter::UnknownRemote);
        }
        if be16(16) + 14 != len || be16(38) + 20 != be16(16) {
            return Err(Counter::Malformed);
        }
        need(84)?;
        if frame[42..46] != [0x08, 0, 0, 0] || frame[49] != 0 {
            return Err(Counter::VxlanFlags);
        }
        if u32::from_be_bytes([0, frame[46], frame[47], frame[48]]) != VNI {
            return Err(Counter::OtherVni);
        }
        if frame[50..56] != VTEP_MAC || be16(62) != usize::from(ETH_P_IP) {
            return Err(Counter::InnerOther);
        }
        if frame[64] >> 4 != 4 {
            return Err(Counter::Malformed);
        }
        ipv4_header_rules(&frame[64..84])?;
        if be16(66) + OUTER_LEN + 14 != len {
            return Err(Counter::Malformed);
        }
        if frame[72] <= 1 {
            return Err(Counter::TtlExpired);
        }
        let (_, pod) = self
            .pods
            .iter()
            .find(|(ip, _)| *ip == address(80))
            .ok_or(Counter::UnknownPod)?;
        if len - OUTER_LEN > usize::from(pod.mtu) + 14 {
            return Err(Counter::TooBig);
        }
        if !self.ports.contains(&pod.ifindex) {
            return Err(Counter::PodGone);
        }
        // The inner frame as the bridge hands it to the pod: the bridge's
        // MAC to the pod's, one hop less, the header checksum recomputed.
        let mut out = frame[OUTER_LEN..].to_vec();
        out[..6].copy_from_slice(&pod.pod_mac);
        out[6..12].copy_from_slice(&pod.bridge_mac);
        out[22] -= 1;
        out[24..26].fill(0);
        let checksum = internet_checksum(&out[14..34]);
        out[24..26].copy_from_slice(&checksum.to_be_bytes());
        Ok(out)
    }
}

/// Header length, checksum and fragments of a 20-byte IPv4 header.
fn ipv4_header_rules(header: &[u8]) -> Result<(), Counter> {
    match header[0] & 0x0f {
        5 => {}
        0..5 => return Err(Counter::Malformed),
        _ => return Err(Counter::IpOptions),
    }
    if internet_checksum(header) != 0 {
        return Err(Counter::Malformed);
    }
    if u16::from_be_bytes([header[6], header[7]]) & 0x3fff != 0 {
        return Err(Counter::Fragment);
    }
    Ok(())
}

/// The maps' key for an IPv4 address.
pub fn key(ip: Ipv4Addr) -> u32 {
    u32::from_ne_bytes(ip.octets())
}

/// What the inner Ethernet frame carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inner {
    Ipv4,
    Ipv6,
    Arp,
}

/// A VXLAN frame from the remote node to a pod here, field by field.
#[derive(Clone, Debug)]
pub struct VxlanFrame {
    pub outer_dst_mac: [u8; 6],
    pub outer: Ipv4,
    pub port: u16,
    pub i_flag: bool,
    pub vni: u32,
    pub inner_dst_mac: [u8; 6],
    pub inner_kind: Inner,
    pub inner: Ipv4,
    pub payload: Vec<u8>,
}

impl VxlanFrame {
    /// A TCP segment from the client pod to the server pod.
    pub fn valid() -> Self {
        Self {
            outer_dst_mac: NIC_MAC,
            outer: Ipv4::new(REMOTE, NODE, IPPROTO_UDP, 0x1111),
            port: PORT,
            i_flag: true,
            vni: VNI,
            inner_dst_mac: VTEP_MAC,
            inner_kind: Inner::Ipv4,
            inner: Ipv4::new(CLIENT, POD, IPPROTO_TCP, 0x2222),
            payload: b"GET / HTTP/1.1\r\nHost: pod\r\n\r\n".to_vec(),
        }
    }

    pub fn build(&self) -> Frame {
        let mut inner = Frame::default();
        match self.inner_kind {
            Inner::Ipv4 => inner
                .ethernet(self.inner_dst_mac, REMOTE_VTEP_MAC, ETH_P_IP)
                .ipv4(&self.inner, 20 + self.payload.len())
                .tcp(40000, 80, 1000, 2000)
                .payload(&self.payload),
            Inner::Ipv6 => inner
                .ethernet(self.inner_dst_mac, REMOTE_VTEP_MAC, ETH_P_IPV6)
                .ipv6(
                    "fd00::1".parse().unwrap(),
                    "fd00::2".parse().unwrap(),
                    IPPROTO_TCP,
                    20 + self.payload.len(),
                )
                .tcp(40000, 80, 1000, 2000)
                .payload(&self.payload),
            // A request for the pod's address, as the remote VTEP never
            // sends it (flannel's neighbours are static), but a peer could.
            Inner::Arp => inner
                .ethernet([0xff; 6], REMOTE_VTEP_MAC, 0x0806)
                .payload(&[0; 28]),
        };
        let udp_payload = 8 + inner.bytes.len();
        Frame::default()
            .ethernet(self.outer_dst_mac, REMOTE_NIC_MAC, ETH_P_IP)
            .ipv4(&self.outer, 8 + udp_payload)
            .udp(50000, self.port, udp_payload)
            .vxlan(self.vni, self.i_flag)
            .inner(&inner)
            .build()
    }
}

/// One BPF_PROG_TEST_RUN of a hook's program.
#[derive(Debug)]
pub struct Run {
    pub return_value: u32,
    pub output: Vec<u8>,
    /// The counter that went up.
    pub counter: Counter,
}

/// The hook's program, loaded, run once on `frame`: its return value and
/// the frame it leaves. Err: the test runner refused the frame (it does for
/// frames too short for what the stack checks before the hook).
pub fn test_run(
    fastpath: &mut LoadedFastpath,
    hook: FastpathHook,
    frame: &[u8],
) -> Result<(u32, Vec<u8>), ProgramError> {
    let mut out = vec![0u8; frame.len() + 256];
    let options = TestRunOptions {
        data_in: Some(frame),
        data_out: Some(&mut out),
        ..TestRunOptions::default()
    };
    let result = match hook {
        FastpathHook::Xdp => fastpath.xdp().expect("xdp loads").test_run(options),
        FastpathHook::Tc => fastpath.tc().expect("tc loads").test_run(options),
    }?;
    out.truncate(result.data_size_out as usize);
    Ok((result.return_value, out))
}

/// [`test_run`], and the one counter that went up.
pub fn run(
    fastpath: &mut LoadedFastpath,
    hook: FastpathHook,
    frame: &[u8],
) -> Result<Run, ProgramError> {
    let before = fastpath.maps.counters().expect("counters");
    let (return_value, output) = test_run(fastpath, hook, frame)?;
    let after = fastpath.maps.counters().expect("counters");
    let moved: Vec<Counter> = (0..COUNTERS as usize)
        .filter(|index| after[*index] != before[*index])
        .map(|index| Counter::ALL[index])
        .collect();
    assert_eq!(moved.len(), 1, "exactly one counter per packet: {moved:?}");
    Ok(Run {
        return_value,
        output,
        counter: moved[0],
    })
}

/// The return values of a hook's pass and redirect.
pub fn verdicts(hook: FastpathHook) -> (u32, u32) {
    match hook {
        FastpathHook::Xdp => (XDP_PASS, XDP_REDIRECT),
        FastpathHook::Tc => (TC_PASS, TC_ACT_REDIRECT),
    }
}

/// Checks `run` did what the reference says `frame` deserves: redirected
/// exactly the expected bytes, or passed the frame unchanged with the
/// reference's counter.
pub fn check_against_reference(world: &World, hook: FastpathHook, frame: &[u8], run: &Run) {
    let (pass, redirect) = verdicts(hook);
    match world.reference(frame) {
        Ok(expected) => {
            assert_eq!(
                run.return_value, redirect,
                "{hook:?} must redirect {frame:02x?}"
            );
            assert_eq!(run.counter, Counter::Fastpathed);
            assert_eq!(run.output, expected, "{hook:?}: rewritten frame");
        }
        Err(counter) => {
            assert_eq!(run.return_value, pass, "{hook:?} must pass {frame:02x?}");
            assert_eq!(
                run.output, frame,
                "{hook:?} must leave a passed frame unchanged"
            );
            assert_eq!(run.counter, counter, "{hook:?}: reason for {frame:02x?}");
        }
    }
}
