//! SHA-1 for piece hashing, and the SHA-256 merkle trees of v2 torrents ([`merkle`]).
//!
//! One SHA-1 stream is a chain of dependent `sha1rnds4` instructions: on a CPU with the
//! SHA extensions the hash runs at the instruction's latency, leaving most of the SHA
//! unit idle. Two independent streams interleaved instruction by instruction fill those
//! gaps, and hash about 1.6 times as many bytes per second on one core as one stream.
//! BitTorrent always has many pieces to hash (creating a torrent, checking data on disk,
//! pieces arriving from peers), so [`update_pair`] hashes two of them at once.
//!
//! A single stream goes through the `sha1` crate's compression function (SHA-NI when the
//! CPU has it, portable code when not); only the two-lane kernel is ours.

#![deny(unsafe_op_in_unsafe_fn)]

pub mod merkle;
#[cfg(target_arch = "x86_64")]
mod x86;

/// What `sha1::compress` takes: 64 bytes.
type Block = sha1::digest::generic_array::GenericArray<u8, sha1::digest::consts::U64>;

/// Bytes per SHA-1 block.
const BLOCK: usize = 64;
const INITIAL: [u32; 5] = [
    0x6745_2301,
    0xEFCD_AB89,
    0x98BA_DCFE,
    0x1032_5476,
    0xC3D2_E1F0,
];

/// An incremental SHA-1 hash.
#[derive(Clone)]
pub struct Sha1 {
    state: [u32; 5],
    /// Bytes hashed so far, including those still in `buffer`.
    length: u64,
    buffer: [u8; BLOCK],
    buffered: usize,
}

impl Default for Sha1 {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Sha1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sha1")
            .field("length", &self.length)
            .finish()
    }
}

impl Sha1 {
    pub fn new() -> Self {
        Sha1 {
            state: INITIAL,
            length: 0,
            buffer: [0; BLOCK],
            buffered: 0,
        }
    }

    /// The SHA-1 of `data`.
    pub fn digest(data: &[u8]) -> [u8; 20] {
        let mut sha = Sha1::new();
        sha.update(data);
        sha.finalize()
    }

    pub fn update(&mut self, data: &[u8]) {
        let whole = self.absorb_partial(data);
        let (blocks, tail) = split_blocks(whole);
        compress(&mut self.state, blocks);
        self.keep_tail(tail);
    }

    pub fn finalize(mut self) -> [u8; 20] {
        let bits = self.length.wrapping_mul(8);
        let mut pad = [0u8; 2 * BLOCK];
        pad[0] = 0x80;
        // Room for the 0x80 byte and the 8-byte length, in this block or the next.
        let pad_len = if self.buffered < BLOCK - 8 {
            BLOCK - self.buffered
        } else {
            2 * BLOCK - self.buffered
        };
        pad[pad_len - 8..pad_len].copy_from_slice(&bits.to_be_bytes());
        let length = self.length;
        self.update(&pad[..pad_len]);
        debug_assert_eq!(self.buffered, 0);
        self.length = length;
        let mut out = [0u8; 20];
        for (chunk, word) in out.chunks_exact_mut(4).zip(self.state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        out
    }

    /// Counts `data`, completes and compresses a partly filled buffer from its front, and
    /// returns the rest of `data`, which starts on a block boundary of the stream.
    fn absorb_partial<'d>(&mut self, data: &'d [u8]) -> &'d [u8] {
        self.length += data.len() as u64;
        if self.buffered == 0 {
            return data;
        }
        let take = (BLOCK - self.buffered).min(data.len());
        self.buffer[self.buffered..self.buffered + take].copy_from_slice(&data[..take]);
        self.buffered += take;
        if self.buffered == BLOCK {
            let block = self.buffer;
            compress(&mut self.state, &block);
            self.buffered = 0;
        }
        &data[take..]
    }

    fn keep_tail(&mut self, tail: &[u8]) {
        if !tail.is_empty() {
            self.buffer[..tail.len()].copy_from_slice(tail);
            self.buffered = tail.len();
        }
    }
}

/// Feeds two independent hashes at once: the same result as `a.update(data_a)` and
/// `b.update(data_b)`, in about 60 % of the time on a CPU with SHA-NI when the inputs
/// are of similar length (the longer input's excess is hashed alone).
pub fn update_pair(a: &mut Sha1, data_a: &[u8], b: &mut Sha1, data_b: &[u8]) {
    let (blocks_a, tail_a) = split_blocks(a.absorb_partial(data_a));
    let (blocks_b, tail_b) = split_blocks(b.absorb_partial(data_b));
    let common = blocks_a.len().min(blocks_b.len());
    compress_pair(
        &mut a.state,
        &blocks_a[..common],
        &mut b.state,
        &blocks_b[..common],
    );
    compress(&mut a.state, &blocks_a[common..]);
    compress(&mut b.state, &blocks_b[common..]);
    a.keep_tail(tail_a);
    b.keep_tail(tail_b);
}

/// A piece's hash as its torrent checks it: SHA-1 for v1 (and hybrid) torrents, a BEP 52
/// merkle root for v2 ones, or both at once while a hybrid torrent is created.
#[derive(Debug, Clone)]
pub enum PieceHasher {
    Sha1(Sha1),
    Merkle(merkle::PieceTree),
    Hybrid(Sha1, merkle::PieceTree),
}

/// What a [`PieceHasher`] gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PieceDigest {
    Sha1([u8; 20]),
    Merkle(merkle::Hash),
    Hybrid([u8; 20], merkle::Hash),
}

impl PieceHasher {
    pub fn update(&mut self, data: &[u8]) {
        match self {
            PieceHasher::Sha1(sha) => sha.update(data),
            PieceHasher::Merkle(tree) => tree.update(data),
            PieceHasher::Hybrid(sha, tree) => {
                sha.update(data);
                tree.update(data);
            }
        }
    }

    pub fn finalize(self) -> PieceDigest {
        match self {
            PieceHasher::Sha1(sha) => PieceDigest::Sha1(sha.finalize()),
            PieceHasher::Merkle(tree) => PieceDigest::Merkle(tree.finalize()),
            PieceHasher::Hybrid(sha, tree) => PieceDigest::Hybrid(sha.finalize(), tree.finalize()),
        }
    }
}

/// [`update_pair`] for two pieces: their SHA-1s share the two-lane kernel; merkle trees
/// (SHA-256 per 16 KiB block) are fed one after the other.
pub fn update_piece_pair(a: &mut PieceHasher, data_a: &[u8], b: &mut PieceHasher, data_b: &[u8]) {
    match (a, b) {
        (PieceHasher::Sha1(a), PieceHasher::Sha1(b)) => update_pair(a, data_a, b, data_b),
        (PieceHasher::Hybrid(sha_a, tree_a), PieceHasher::Hybrid(sha_b, tree_b)) => {
            update_pair(sha_a, data_a, sha_b, data_b);
            tree_a.update(data_a);
            tree_b.update(data_b);
        }
        (a, b) => {
            a.update(data_a);
            b.update(data_b);
        }
    }
}

/// Splits `data` into whole blocks and the remainder.
fn split_blocks(data: &[u8]) -> (&[u8], &[u8]) {
    data.split_at(data.len() - data.len() % BLOCK)
}

/// Compresses whole blocks (`blocks.len()` is a multiple of 64) into `state`.
fn compress(state: &mut [u32; 5], blocks: &[u8]) {
    debug_assert_eq!(blocks.len() % BLOCK, 0);
    const _: () =
        assert!(std::mem::size_of::<Block>() == BLOCK && std::mem::align_of::<Block>() == 1);
    // SAFETY: `Block` is `GenericArray<u8, U64>`, a `repr(transparent)` wrapper of
    // 64 bytes with alignment 1 (checked above), so any 64 bytes form a valid one and
    // the slice covers exactly `blocks`.
    let blocks = unsafe {
        std::slice::from_raw_parts(blocks.as_ptr().cast::<Block>(), blocks.len() / BLOCK)
    };
    sha1::compress(state, blocks);
}

/// Compresses two equally long runs of whole blocks into two states.
fn compress_pair(state_a: &mut [u32; 5], a: &[u8], state_b: &mut [u32; 5], b: &[u8]) {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    if x86::available() {
        x86::compress_pair(state_a, a, state_b, b);
        return;
    }
    compress(state_a, a);
    compress(state_b, b);
}

#[cfg(test)]
mod tests;
