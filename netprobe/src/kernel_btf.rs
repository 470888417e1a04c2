//! Offsets of the kernel struct fields the tracepoint programs read, taken
//! from the running kernel's BTF. The probes cannot rely on CO-RE, and these
//! layouts differ between kernel versions and configurations.

use std::{path::Path, sync::OnceLock};

use btf_rs::{Btf, BtfType, Type};
use netprobe_common::config::KernelOffsets;
use thiserror::Error;

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, Error)]
pub enum BtfError {
    #[error(
        "this kernel has no BTF ({VMLINUX_BTF} is missing): build it with CONFIG_DEBUG_INFO_BTF=y"
    )]
    Missing,
    #[error("cannot read {VMLINUX_BTF}: {0}")]
    Read(btf_rs::Error),
    #[error("kernel BTF has no struct {0}")]
    NoStruct(&'static str),
    #[error("kernel BTF has no field {1} in struct {0}")]
    NoField(&'static str, &'static str),
    #[error("kernel BTF is inconsistent: {0}")]
    Malformed(btf_rs::Error),
}

/// What a session takes from the running kernel's BTF.
pub struct RunningKernel {
    pub offsets: KernelOffsets,
    pub btf: aya::Btf,
}

/// The running kernel's BTF, read once per process: the agent starts a
/// session on every datapath change, and reading the BTF took 0.3 s of the
/// 0.45 s a start takes.
pub fn running_kernel() -> Result<&'static RunningKernel, BtfError> {
    static RUNNING: OnceLock<RunningKernel> = OnceLock::new();
    if let Some(kernel) = RUNNING.get() {
        return Ok(kernel);
    }
    let kernel = RunningKernel {
        offsets: kernel_offsets()?,
        btf: aya::Btf::from_sys_fs().map_err(|_| BtfError::Missing)?,
    };
    Ok(RUNNING.get_or_init(|| kernel))
}

/// Reads the offsets from the running kernel.
pub fn kernel_offsets() -> Result<KernelOffsets, BtfError> {
    offsets_from(Path::new(VMLINUX_BTF))
}

/// Reads the offsets from a kernel's BTF file.
pub fn offsets_from(vmlinux: &Path) -> Result<KernelOffsets, BtfError> {
    if !vmlinux.exists() {
        return Err(BtfError::Missing);
    }
    let btf = Btf::from_file(vmlinux).map_err(BtfError::Read)?;
    let field = |owner, name| field_offset(&btf, owner, name);
    Ok(KernelOffsets {
        sk_buff_head: field("sk_buff", "head")?,
        sk_buff_data: field("sk_buff", "data")?,
        sk_buff_protocol: field("sk_buff", "protocol")?,
        sk_buff_network_header: field("sk_buff", "network_header")?,
        sk_buff_sk: field("sk_buff", "sk")?,
        sk_buff_cb: field("sk_buff", "cb")?,
        tcp_skb_cb_seq: field("tcp_skb_cb", "seq")?,
        tcp_skb_cb_ack_seq: field("tcp_skb_cb", "ack_seq")?,
        net_device_ifindex: field("net_device", "ifindex")?,
        // possible_net_t is `struct { struct net *net; }`: the pointer is at
        // the field's own offset.
        net_device_nd_net: field("net_device", "nd_net")?,
        net_ns_inum: field("net", "ns")? + field("ns_common", "inum")?,
        sock_common_skc_net: field("sock_common", "skc_net")?,
        sock_common_skc_addrpair: field("sock_common", "skc_addrpair")?,
        sock_common_skc_portpair: field("sock_common", "skc_portpair")?,
        sock_sk_protocol: field("sock", "sk_protocol")?,
        tcp_sock_write_seq: field("tcp_sock", "write_seq")?,
        tcp_sock_rcv_nxt: field("tcp_sock", "rcv_nxt")?,
    })
}

/// Byte offset of `name` in struct `owner`, looking into anonymous structs
/// and unions (sk_buff keeps `dev` in one).
fn field_offset(btf: &Btf, owner: &'static str, name: &'static str) -> Result<u32, BtfError> {
    let types = btf
        .resolve_types_by_name(owner)
        .map_err(|_| BtfError::NoStruct(owner))?;
    let owner_type = types
        .iter()
        .find_map(|candidate| match candidate {
            Type::Struct(s) if !s.members.is_empty() => Some(s),
            _ => None,
        })
        .ok_or(BtfError::NoStruct(owner))?;
    find_member(btf, owner_type, name)?
        .map(|bits| bits / 8)
        .ok_or(BtfError::NoField(owner, name))
}

fn find_member(btf: &Btf, owner: &btf_rs::Struct, name: &str) -> Result<Option<u32>, BtfError> {
    for member in &owner.members {
        let member_name = btf.resolve_name(member).unwrap_or_default();
        if member_name == name {
            return Ok(Some(member.bit_offset()));
        }
        if member_name.is_empty()
            && let Some(inner) = aggregate(btf, member)?
            && let Some(offset) = find_member(btf, &inner, name)?
        {
            return Ok(Some(member.bit_offset() + offset));
        }
    }
    Ok(None)
}

/// The struct or union a member is, through typedefs and qualifiers.
fn aggregate(btf: &Btf, member: &dyn BtfType) -> Result<Option<btf_rs::Struct>, BtfError> {
    let mut current = btf
        .resolve_chained_type(member)
        .map_err(BtfError::Malformed)?;
    loop {
        current = match current {
            Type::Struct(s) | Type::Union(s) => return Ok(Some(s)),
            Type::Typedef(t) => btf.resolve_chained_type(&t),
            Type::Const(t) => btf.resolve_chained_type(&t),
            Type::Volatile(t) => btf.resolve_chained_type(&t),
            _ => return Ok(None),
        }
        .map_err(BtfError::Malformed)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_every_offset_on_this_kernel() {
        let offsets = kernel_offsets().expect("this kernel has BTF");
        assert_eq!(offsets.sk_buff_data, offsets.sk_buff_head + 8);
        // The sequence number opens TCP's control block, the acknowledgement
        // number follows the flags.
        assert_eq!(offsets.tcp_skb_cb_seq, 0);
        assert!(offsets.tcp_skb_cb_ack_seq > offsets.tcp_skb_cb_seq);
        assert!(offsets.net_ns_inum > 0);
        assert!(offsets.tcp_sock_write_seq > offsets.sock_common_skc_net);
        assert!(offsets.tcp_sock_rcv_nxt > offsets.sock_common_skc_net);
    }

    #[test]
    fn a_kernel_without_btf_is_named() {
        let err = offsets_from(Path::new("/nonexistent/vmlinux")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "this kernel has no BTF (/sys/kernel/btf/vmlinux is missing): build it with CONFIG_DEBUG_INFO_BTF=y"
        );
    }

    #[test]
    fn missing_field_is_named() {
        let btf = Btf::from_file(VMLINUX_BTF).expect("this kernel has BTF");
        let err = field_offset(&btf, "sk_buff", "no_such_field").unwrap_err();
        assert_eq!(
            err.to_string(),
            "kernel BTF has no field no_such_field in struct sk_buff"
        );
    }
}
