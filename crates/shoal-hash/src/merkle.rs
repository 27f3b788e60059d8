//! BEP 52 (v2 torrents) merkle trees: SHA-256 over 16 KiB blocks, a branching factor of
//! two, and leaves past the end of a file set to zero.
//!
//! A tree is padded to a power-of-two width; the hash of a padding subtree depends only
//! on its height, so [`pad`] computes it from the all-zero leaf upwards instead of
//! hashing zeros.

use sha2::{Digest, Sha256};

/// A leaf of the tree covers this many bytes of a file.
pub const BLOCK: usize = 16 * 1024;

/// A node of the tree.
pub type Hash = [u8; 32];

/// The SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Hash {
    Sha256::digest(data).into()
}

/// The parent of two nodes.
pub fn parent(left: &Hash, right: &Hash) -> Hash {
    let mut sha = Sha256::new();
    sha.update(left);
    sha.update(right);
    sha.finalize().into()
}

/// The root of a subtree `height` levels tall whose leaves all lie past the end of the
/// file (height 0 is the zero leaf itself).
pub fn pad(height: u32) -> Hash {
    let mut node = [0u8; 32];
    for _ in 0..height {
        node = parent(&node, &node);
    }
    node
}

/// The root over `nodes`, the first of a layer `width` wide (a power of two, at least
/// `nodes.len()`), the rest being padding subtrees of `height` (the layer's height above
/// the leaves).
pub fn root(nodes: &[Hash], width: usize, height: u32) -> Hash {
    debug_assert!(width.is_power_of_two() && width >= nodes.len());
    let mut layer = nodes.to_vec();
    let mut filler = pad(height);
    let mut width = width;
    while width > 1 {
        if layer.len() % 2 == 1 {
            layer.push(filler);
        }
        layer = layer
            .chunks_exact(2)
            .map(|p| parent(&p[0], &p[1]))
            .collect();
        filler = parent(&filler, &filler);
        width /= 2;
    }
    layer.first().copied().unwrap_or(filler)
}

/// How many leaves a piece's subtree has: a piece of a file longer than one piece is a
/// full subtree of `piece_length / BLOCK` leaves; a file of at most one piece is its own
/// tree, as wide as the power of two that holds its blocks.
pub fn piece_leaves(file_length: u64, piece_length: u64) -> usize {
    if file_length > piece_length {
        (piece_length / BLOCK as u64) as usize
    } else {
        (file_length.div_ceil(BLOCK as u64) as usize)
            .max(1)
            .next_power_of_two()
    }
}

/// The merkle root of one piece's data, fed incrementally in any chunking. Bytes fed past
/// `data_length` (a padding file's zeros after the end of the file) are ignored: the tree
/// covers the file's bytes only.
#[derive(Clone)]
pub struct PieceTree {
    data_left: u64,
    leaves: Vec<Hash>,
    width: usize,
    block: Sha256,
    in_block: usize,
}

impl std::fmt::Debug for PieceTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PieceTree")
            .field("data_left", &self.data_left)
            .field("leaves", &self.leaves.len())
            .field("width", &self.width)
            .finish()
    }
}

impl PieceTree {
    /// A tree over `data_length` bytes of file data in `width` leaves.
    pub fn new(data_length: u64, width: usize) -> Self {
        PieceTree {
            data_left: data_length,
            leaves: Vec::with_capacity(width),
            width,
            block: Sha256::new(),
            in_block: 0,
        }
    }

    pub fn update(&mut self, mut data: &[u8]) {
        let usable = (data.len() as u64).min(self.data_left) as usize;
        data = &data[..usable];
        self.data_left -= usable as u64;
        while !data.is_empty() {
            let take = (BLOCK - self.in_block).min(data.len());
            self.block.update(&data[..take]);
            self.in_block += take;
            data = &data[take..];
            if self.in_block == BLOCK {
                self.end_block();
            }
        }
    }

    fn end_block(&mut self) {
        let sha = std::mem::take(&mut self.block);
        self.leaves.push(sha.finalize().into());
        self.in_block = 0;
    }

    /// The root; a tree fed less than its data length has a wrong root, which fails the
    /// comparison with the expected one.
    pub fn finalize(mut self) -> Hash {
        if self.in_block > 0 {
            self.end_block();
        }
        if self.leaves.len() > self.width {
            // More data than leaves: cannot match any honest root.
            return [0xff; 32];
        }
        root(&self.leaves, self.width, 0)
    }
}

/// Checks a BEP 52 `hashes` answer: `answer` holds `count` hashes from `index` of a layer
/// `width` wide (padded to a power of two) at `height` above the leaves, then the uncle
/// hashes from just above them up to the root's children. True when they climb to `root`.
pub fn proves(
    root: &Hash,
    width: usize,
    height: u32,
    index: usize,
    count: usize,
    answer: &[Hash],
) -> bool {
    if !count.is_power_of_two() || width < count || !index.is_multiple_of(count) || index >= width {
        return false;
    }
    let uncles = (width / count).trailing_zeros() as usize;
    if answer.len() != count + uncles {
        return false;
    }
    let (hashes, uncles) = answer.split_at(count);
    let (node, _) = climb(self::root(hashes, count, height), index / count, uncles);
    &node == root
}

/// Climbs from `node`, at `position` in its layer, with the siblings `uncles` (lowest
/// first): the ancestor reached and its position in its own layer.
fn climb(mut node: Hash, mut position: usize, uncles: &[Hash]) -> (Hash, usize) {
    for uncle in uncles {
        node = match position % 2 {
            0 => parent(&node, uncle),
            _ => parent(uncle, &node),
        };
        position /= 2;
    }
    (node, position)
}

/// A file's tree from its piece layer up to its root, for answering BEP 52 hash
/// requests: every layer is kept, padded to its power-of-two width.
#[derive(Debug, Clone)]
pub struct LayerTree {
    /// The height of `layers[0]` above the leaves.
    base: u32,
    /// `layers[0]` is the piece layer; the last holds only the root.
    layers: Vec<Vec<Hash>>,
}

/// Hash requests asking for more hashes than this at once are refused (BEP 52: length
/// should not be above 512).
pub const MAX_REQUEST_HASHES: u32 = 512;

impl LayerTree {
    /// The tree above `piece_layer`, whose nodes are `height` levels above the leaves.
    pub fn new(piece_layer: &[Hash], height: u32) -> Self {
        let width = piece_layer.len().max(1).next_power_of_two();
        let mut layer = piece_layer.to_vec();
        layer.resize(width, pad(height));
        LayerTree {
            base: height,
            layers: layers_above(layer),
        }
    }

    pub fn root(&self) -> Hash {
        self.layers.last().expect("one at least")[0]
    }

    /// What a BEP 52 `hashes` message carries for a request: `count` hashes from
    /// `index` of the layer `base` levels above the leaves, then one uncle hash per proof
    /// layer above the subtree those hashes span, closest to the base first. `None` for
    /// a request this tree cannot or need not answer: a base below the piece layer (see
    /// [`LayerTree::hashes_within`]), a count that is not a power of two of at least 2
    /// (or above [`MAX_REQUEST_HASHES`]), an index not a multiple of it, a range past the
    /// layer, or proof layers reaching the root, as libtorrent checks them.
    pub fn hashes(
        &self,
        base: u32,
        index: u32,
        count: u32,
        proof_layers: u32,
    ) -> Option<Vec<Hash>> {
        let layer = self.layers.get(base.checked_sub(self.base)? as usize)?;
        if !self.valid(base, index, count, proof_layers, layer.len() as u64) {
            return None;
        }
        let mut out = layer[index as usize..(index + count) as usize].to_vec();
        self.push_uncles(&mut out, base, index, count, proof_layers, |_, _| None)?;
        Some(out)
    }

    /// The piece a request below the piece layer falls in: `None` unless `base` is
    /// below the piece layer and the `count` hashes from `index` lie within one piece,
    /// as a request for a piece's block hashes does (libtorrent asks for them to find
    /// the bad block of a piece that failed its check).
    pub fn piece_of(&self, base: u32, index: u32, count: u32) -> Option<u32> {
        let below = self.base.checked_sub(base).filter(|&b| b > 0 && b < 32)?;
        let per_piece = 1u32 << below;
        (count <= per_piece && index % per_piece + count <= per_piece).then_some(index / per_piece)
    }

    /// [`LayerTree::hashes`] for a request below the piece layer, within the piece
    /// [`LayerTree::piece_of`] names, whose block hashes are `leaves` (one per 16 KiB of
    /// the piece, zero past the end of the file). `None` where `hashes` would reject the
    /// request, or when the leaves do not make up the piece's hash (data that changed on
    /// disk must not be vouched for).
    pub fn hashes_within(
        &self,
        base: u32,
        index: u32,
        count: u32,
        proof_layers: u32,
        leaves: &[Hash],
    ) -> Option<Vec<Hash>> {
        let piece = self.piece_of(base, index, count)?;
        let width = (self.layers[0].len() as u64) << (self.base - base);
        if leaves.len() != 1 << self.base || !self.valid(base, index, count, proof_layers, width) {
            return None;
        }
        // The piece's subtree, its leaves first and its hash last.
        let subtree = layers_above(leaves.to_vec());
        if subtree[self.base as usize][0] != self.layers[0][piece as usize] {
            return None;
        }
        // Node `node` of the layer `height` above the leaves, within the piece.
        let local = |height: u32, node: usize| {
            let first = (piece as usize) << (self.base - height);
            subtree
                .get(height as usize)?
                .get(node.checked_sub(first)?)
                .copied()
        };
        let start = (index as usize) - ((piece as usize) << (self.base - base));
        let mut out = subtree[base as usize][start..start + count as usize].to_vec();
        self.push_uncles(&mut out, base, index, count, proof_layers, local)?;
        Some(out)
    }

    /// The checks of [`LayerTree::hashes`], for a request at `base`, whose layer is
    /// `width` nodes wide.
    fn valid(&self, base: u32, index: u32, count: u32, proof_layers: u32, width: u64) -> bool {
        let top = (self.layers.len() - 1) as u32 + self.base;
        count >= 2
            && count.is_power_of_two()
            && count <= MAX_REQUEST_HASHES
            && index.is_multiple_of(count)
            && index as u64 + count as u64 <= width
            && proof_layers < top - base
    }

    /// Appends the uncles of a request's subtree: the requested hashes make up the
    /// subtree `count.trailing_zeros()` levels up, and each proof layer from there adds
    /// the sibling of the subtree's ancestor. `below` gives the nodes under the piece
    /// layer (`height`, `node`), which this tree does not hold.
    fn push_uncles(
        &self,
        out: &mut Vec<Hash>,
        base: u32,
        index: u32,
        count: u32,
        proof_layers: u32,
        below: impl Fn(u32, usize) -> Option<Hash>,
    ) -> Option<()> {
        for up in count.trailing_zeros()..=proof_layers {
            let (height, sibling) = (base + up, (index >> up) as usize ^ 1);
            out.push(match height.checked_sub(self.base) {
                Some(level) => *self.layers.get(level as usize)?.get(sibling)?,
                None => below(height, sibling)?,
            });
        }
        Some(())
    }
}

/// `layer` (a power of two wide) and every layer above it, up to the one-node root.
fn layers_above(layer: Vec<Hash>) -> Vec<Vec<Hash>> {
    let mut layers = vec![layer];
    while let Some(below) = layers.last().filter(|l| l.len() > 1) {
        let above = below
            .chunks_exact(2)
            .map(|p| parent(&p[0], &p[1]))
            .collect();
        layers.push(above);
    }
    layers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_is_the_root_of_zero_leaves() {
        assert_eq!(pad(0), [0; 32]);
        assert_eq!(pad(1), sha256(&[0; 64]));
        assert_eq!(pad(2), parent(&pad(1), &pad(1)));
        assert_eq!(root(&[], 4, 0), pad(2));
    }

    #[test]
    fn root_pads_a_short_layer() {
        let a = sha256(b"a");
        let b = sha256(b"b");
        let c = sha256(b"c");
        let want = parent(&parent(&a, &b), &parent(&c, &[0; 32]));
        assert_eq!(root(&[a, b, c], 4, 0), want);
        // One layer up, the filler is a two-leaf padding subtree.
        assert_eq!(
            root(&[a], 2, 1),
            parent(&a, &pad(1)),
            "padding above the leaves"
        );
        assert_eq!(root(&[a], 1, 0), a);
    }

    #[test]
    fn piece_tree_ignores_chunking_and_bytes_past_the_file() {
        let data: Vec<u8> = (0..40_000u32).map(|i| (i * 7 + i / 300) as u8).collect();
        let want = root(
            &[
                sha256(&data[..BLOCK]),
                sha256(&data[BLOCK..2 * BLOCK]),
                sha256(&data[2 * BLOCK..]),
            ],
            4,
            0,
        );
        for chunk in [1, 1000, BLOCK, 50_000] {
            let mut tree = PieceTree::new(data.len() as u64, 4);
            for part in data.chunks(chunk) {
                tree.update(part);
            }
            tree.update(&[0; 9000]);
            assert_eq!(tree.finalize(), want, "chunks of {chunk}");
        }
        let mut short = PieceTree::new(data.len() as u64, 4);
        short.update(&data[..30_000]);
        assert_ne!(short.finalize(), want);
    }

    /// Checks a `hashes` answer the way a requester does: climb from the hashes with the
    /// uncles to the root.
    fn climbs_to(answer: &[Hash], index: u32, count: u32, tree: &LayerTree) -> bool {
        let (hashes, uncles) = answer.split_at(count as usize);
        let start = root(hashes, count as usize, 0);
        let (mut node, mut position) = climb(start, (index / count) as usize, uncles);
        // What is left above the last uncle is the requester's to know; here, climb the
        // rest with the tree's own nodes.
        let first = count.trailing_zeros() as usize + uncles.len();
        for level in first..tree.layers.len() - 1 {
            let sibling = tree.layers[level][position ^ 1];
            (node, position) = climb(node, position, &[sibling]);
        }
        node == tree.root()
    }

    #[test]
    fn hash_requests_get_the_layer_and_its_proof() {
        let layer: Vec<Hash> = (0..11u8).map(|i| sha256(&[i])).collect();
        let tree = LayerTree::new(&layer, 4);
        assert_eq!(tree.root(), root(&layer, 16, 4));
        // Four hashes and uncles up to just below the root (height 4 + 3 = 7 of 8).
        let answer = tree.hashes(4, 8, 4, 3).unwrap();
        assert_eq!(&answer[..3], &layer[8..11]);
        assert_eq!(answer[3], pad(4), "past the file's end: padding");
        // log2(4) - 1 = 1 proof layer is implied by the hashes themselves.
        assert_eq!(answer.len(), 4 + 2);
        assert!(climbs_to(&answer, 8, 4, &tree));
        let two = tree.hashes(4, 2, 2, 2).unwrap();
        assert_eq!(two.len(), 2 + 2);
        assert!(climbs_to(&two, 2, 2, &tree));
        // What a requester asks to check against the root alone: proofs up to the
        // root's children (proof layers = log2(width) - 1).
        let full = tree.hashes(4, 4, 4, 3).unwrap();
        assert!(proves(&tree.root(), 16, 4, 4, 4, &full));
        let mut forged = full.clone();
        forged[1][0] ^= 1;
        assert!(!proves(&tree.root(), 16, 4, 4, 4, &forged));
        assert!(!proves(&tree.root(), 16, 4, 8, 4, &full), "another place");
        assert!(
            !proves(&tree.root(), 16, 4, 4, 4, &full[..5]),
            "an uncle short"
        );
        assert_eq!(tree.hashes(5, 0, 2, 0).unwrap().len(), 2, "an upper layer");
        for (base, index, count, proofs) in [
            (0, 0, 2, 0),  // below the piece layer
            (4, 1, 2, 0),  // index not a multiple of count
            (4, 0, 3, 0),  // count not a power of two
            (4, 0, 1, 0),  // count below 2
            (4, 16, 2, 0), // past the layer
            (4, 0, 2, 4),  // proofs reaching the root
            (9, 0, 2, 0),  // above the tree
        ] {
            assert_eq!(
                tree.hashes(base, index, count, proofs),
                None,
                "{base} {index} {count} {proofs}"
            );
        }
    }

    /// Block hashes are answered from a piece's data: what they are, and that their
    /// proof climbs to the file's root.
    #[test]
    fn hash_requests_below_the_piece_layer_get_the_piece_s_block_hashes() {
        // Five pieces of four blocks (height 2), the last one a block and a half long.
        let data: Vec<u8> = (0..(4 * 4 + 1) * BLOCK + BLOCK / 2)
            .map(|i| (i * 31 + i / 7) as u8)
            .collect();
        let leaves_of = |piece: usize| -> Vec<Hash> {
            let bytes = data.chunks(4 * BLOCK).nth(piece).unwrap();
            let mut leaves: Vec<Hash> = bytes.chunks(BLOCK).map(sha256).collect();
            leaves.resize(4, pad(0));
            leaves
        };
        let layer: Vec<Hash> = (0..5).map(|p| root(&leaves_of(p), 4, 0)).collect();
        let tree = LayerTree::new(&layer, 2);
        let all: Vec<Hash> = (0..5).flat_map(leaves_of).collect();
        assert_eq!(tree.root(), root(&all, 32, 0));

        assert_eq!(tree.piece_of(0, 12, 4), Some(3));
        let answer = tree.hashes_within(0, 12, 4, 4, &leaves_of(3)).unwrap();
        assert_eq!(&answer[..4], &all[12..16]);
        assert_eq!(answer.len(), 4 + 3, "uncles of pieces 3, 2-3 and 0-3");
        assert!(proves(&tree.root(), 32, 0, 12, 4, &answer));
        // Two blocks of the last piece, with uncles inside the piece and above it.
        let pair = tree.hashes_within(0, 18, 2, 4, &leaves_of(4)).unwrap();
        assert_eq!(&pair[..2], &[all[18], pad(0)]);
        assert_eq!(
            pair[2],
            parent(&all[16], &all[17]),
            "the pair's uncle in the piece"
        );
        assert!(proves(&tree.root(), 32, 0, 18, 2, &pair));
        // One layer up from the leaves.
        let mid = tree.hashes_within(1, 4, 2, 3, &leaves_of(2)).unwrap();
        assert_eq!(mid[0], parent(&all[8], &all[9]));
        assert!(proves(&tree.root(), 16, 1, 4, 2, &mid));

        assert_eq!(tree.piece_of(0, 0, 8), None, "two pieces");
        assert_eq!(tree.piece_of(2, 0, 2), None, "the piece layer itself");
        let mut changed = leaves_of(3);
        changed[1][0] ^= 1;
        assert_eq!(
            tree.hashes_within(0, 12, 4, 4, &changed),
            None,
            "data that is not the piece"
        );
        assert_eq!(tree.hashes_within(0, 12, 4, 4, &leaves_of(3)[..2]), None);
        assert_eq!(
            tree.hashes_within(0, 12, 4, 5, &leaves_of(3)),
            None,
            "the root"
        );
        assert_eq!(
            tree.hashes_within(0, 13, 1, 0, &leaves_of(3)),
            None,
            "one hash"
        );
    }

    #[test]
    fn leaves_per_piece() {
        let piece = 256 * 1024;
        assert_eq!(piece_leaves(10 * piece, piece), 16);
        assert_eq!(piece_leaves(piece + 1, piece), 16);
        assert_eq!(piece_leaves(piece, piece), 16);
        assert_eq!(piece_leaves(3 * BLOCK as u64 - 5, piece), 4);
        assert_eq!(piece_leaves(1, piece), 1);
    }
}
