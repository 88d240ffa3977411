//! xorshift64*: a small generator whose numbers are the same on every run, for the soak test's
//! random clients and the load bench's send jitter, so that a run can be repeated as it was.
//!
//! Shared by `tests/common` (for `tests/soak.rs`) and `benches/load.rs` through `#[path]`.
//! Deliberately not here: anything that must be unpredictable, or a seed from the clock.

// Each includer uses its own part: the soak test whole numbers, the bench fractions.
#![allow(dead_code)]

/// The generator's state; any seed but zero (which stays zero).
pub struct XorShift(pub u64);

impl XorShift {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Below `n` (below 1 if `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in [0, 1): the top 53 bits, as many as an f64 holds exactly.
    pub fn fraction(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}
