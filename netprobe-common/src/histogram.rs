//! Log-linear latency buckets, computed in the kernel and read back in userspace.
//!
//! Values below [`SUB_BUCKETS`] ns get one bucket each. Above that, every power
//! of two is split into [`SUB_BUCKETS`] equal buckets, so a bucket is at most
//! 1/32 (3.1%) of its lower bound wide; reporting its midpoint keeps the error
//! under 1.6% from 32 ns to 2^[`MAX_EXPONENT`] ns (about 1.07 s). Larger values
//! share the last bucket; `max` keeps their exact value. Counts are `u32`
//! per CPU: small histograms stay in cache on the packet path.

use crate::shared_type;

/// log2 of the number of buckets per power of two.
pub const SUB_BUCKET_BITS: u32 = 5;
pub const SUB_BUCKETS: u64 = 1 << SUB_BUCKET_BITS;
/// Values at or above 2^MAX_EXPONENT ns land in the last bucket.
pub const MAX_EXPONENT: u32 = 30;
pub const BUCKETS: usize = (SUB_BUCKETS * (1 + (MAX_EXPONENT - SUB_BUCKET_BITS) as u64)) as usize;

/// Latency histogram of one segment, one copy per CPU.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct Histogram {
    pub count: u64,
    pub sum_ns: u64,
    pub min_ns: u64,
    pub max_ns: u64,
    pub buckets: [u32; BUCKETS],
}
shared_type!(Histogram, 32 + 4 * BUCKETS);

/// Position of the highest set bit of a non-zero `v`. Written as a binary
/// search because the BPF backend has no count-leading-zeros instruction.
#[inline(always)]
fn highest_bit(mut v: u64) -> u32 {
    let mut bit = 0;
    if v >> 32 != 0 {
        v >>= 32;
        bit += 32;
    }
    if v >> 16 != 0 {
        v >>= 16;
        bit += 16;
    }
    if v >> 8 != 0 {
        v >>= 8;
        bit += 8;
    }
    if v >> 4 != 0 {
        v >>= 4;
        bit += 4;
    }
    if v >> 2 != 0 {
        v >>= 2;
        bit += 2;
    }
    if v >> 1 != 0 {
        bit += 1;
    }
    bit
}

/// Bucket that counts a latency of `ns` nanoseconds.
#[inline(always)]
pub fn bucket_index(ns: u64) -> usize {
    if ns < SUB_BUCKETS {
        return ns as usize;
    }
    let exponent = highest_bit(ns);
    if exponent >= MAX_EXPONENT {
        return BUCKETS - 1;
    }
    let shift = exponent - SUB_BUCKET_BITS;
    let sub = (ns >> shift) - SUB_BUCKETS;
    (SUB_BUCKETS * (1 + shift as u64) + sub) as usize
}

/// Lowest value (ns) counted by bucket `index`.
pub fn bucket_low(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB_BUCKETS {
        return index;
    }
    let shift = index / SUB_BUCKETS - 1;
    let sub = index % SUB_BUCKETS;
    (SUB_BUCKETS + sub) << shift
}

/// Width (ns) of bucket `index`.
pub fn bucket_width(index: usize) -> u64 {
    let index = index as u64;
    if index < SUB_BUCKETS {
        return 1;
    }
    1 << (index / SUB_BUCKETS - 1)
}

impl Histogram {
    /// Counts one latency sample. Kept here so kernel and userspace tests
    /// exercise the same code.
    #[inline(always)]
    pub fn record(&mut self, ns: u64) {
        if self.count == 0 || ns < self.min_ns {
            self.min_ns = ns;
        }
        if ns > self.max_ns {
            self.max_ns = ns;
        }
        self.count += 1;
        self.sum_ns += ns;
        if let Some(bucket) = self.buckets.get_mut(bucket_index(ns)) {
            *bucket += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_the_bucket_that_contains_it() {
        let mut ns = 0u64;
        while ns < 1 << (MAX_EXPONENT + 2) {
            let index = bucket_index(ns);
            if ns < 1 << MAX_EXPONENT {
                assert!(bucket_low(index) <= ns, "{ns} below bucket {index}");
                assert!(
                    ns < bucket_low(index) + bucket_width(index),
                    "{ns} above bucket {index}"
                );
            } else {
                assert_eq!(index, BUCKETS - 1);
            }
            ns = ns * 9 / 8 + 1;
        }
    }

    #[test]
    fn buckets_are_contiguous() {
        for index in 1..BUCKETS {
            assert_eq!(
                bucket_low(index),
                bucket_low(index - 1) + bucket_width(index - 1)
            );
        }
    }

    #[test]
    fn relative_error_is_under_three_percent_from_100ns_to_100ms() {
        for index in bucket_index(100)..=bucket_index(100_000_000) {
            let midpoint = bucket_low(index) as f64 + bucket_width(index) as f64 / 2.0;
            let worst = (bucket_width(index) as f64 / 2.0) / bucket_low(index) as f64;
            assert!(worst < 0.03, "bucket {index} around {midpoint} ns: {worst}");
        }
    }
}
