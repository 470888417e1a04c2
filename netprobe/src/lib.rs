//! netprobe: per-hop latency of the Linux container datapath, measured with
//! eBPF, and a lab that rebuilds the common container networking modes in
//! network namespaces to compare them.

pub mod netns;
pub mod kernel_btf;
pub mod netlink;
pub mod discovery;
pub mod filter;
pub mod path;
pub mod probes;
pub mod attach;
pub mod privilege;
pub mod report;
