//! netprobe: per-hop latency of the Linux container datapath, measured with
//! eBPF, and a lab that rebuilds the common container networking modes in
//! network namespaces to compare them.

pub mod load;
pub mod netns;
