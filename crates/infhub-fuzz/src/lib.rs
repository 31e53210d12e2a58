//! Fuzz targets of infhub, as plain functions over bytes.
//!
//! Each target takes arbitrary bytes and must never panic: a decoder answers with a value or
//! a specific error; a state machine driven by a byte-chosen sequence of valid and invalid
//! inputs refuses the invalid ones and keeps its invariants (checked after every step). The
//! functions are shared by the cargo-fuzz harness in `fuzz/` (coverage-guided, nightly) and by
//! this crate's test, which replays every committed corpus file and a seeded random batch on
//! the stable toolchain, so CI runs the corpora on every change.

pub mod targets;

/// Reads fuzz input as a stream of small choices; past the end every read is zero.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Input<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Input<'a> {
        Input { data, pos: 0 }
    }

    /// True once every byte was read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The next byte (0 past the end).
    pub fn u8(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    /// The next 8 bytes as a little-endian number.
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(std::array::from_fn(|_| self.u8()))
    }

    /// The next 16 bytes as a little-endian number.
    pub fn u128(&mut self) -> u128 {
        u128::from_le_bytes(std::array::from_fn(|_| self.u8()))
    }

    /// A number below `n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.u64() % n.max(1)
    }

    /// The next 32 bytes.
    pub fn bytes32(&mut self) -> [u8; 32] {
        std::array::from_fn(|_| self.u8())
    }

    /// The unread rest.
    pub fn rest(&mut self) -> &'a [u8] {
        let r = self.data.get(self.pos..).unwrap_or(&[]);
        self.pos = self.data.len();
        r
    }
}
