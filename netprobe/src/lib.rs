//! netprobe: per-hop latency of the Linux container datapath, measured with
//! eBPF, and a lab that rebuilds the common container networking modes in
//! network namespaces to compare them.

pub mod agent;
pub mod attach;
pub mod bench;
pub mod bpf_link;
pub mod clock;
pub mod discovery;
pub mod duration_arg;
pub mod ethtool;
pub mod exemplars;
pub mod fastpath;
pub mod filter;
pub mod hooks;
pub mod http_response;
pub mod kernel_btf;
pub mod lab;
pub mod live;
pub mod load;
pub mod netlink;
pub mod netns;
pub mod overhead;
pub mod path;
pub mod privilege;
pub mod probes;
pub mod record;
pub mod report;
pub mod status;
