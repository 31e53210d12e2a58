//! Batched hub signatures: one signature over the Merkle root of many proofs.
//!
//! Signing is the costliest thing the hub's single ledger writer does per payment (a credit
//! for the payee and a receipt for the payer). Instead, the writer collects the EIP-712
//! digests of every credit and receipt it issues in one group commit, builds a Merkle tree
//! over them, and signs `ProofBatch(bytes32 root)` once. Each proof then carries its path to
//! the root; the contract accepts a credit with either a direct signature (65 bytes) or the
//! batch signature followed by the path (`InfHub._requireHubProof`).
//!
//! The tree hashes pairs in sorted order (`keccak256(min ‖ max)`, as OpenZeppelin's
//! `MerkleProof`), so a path needs no left/right flags. Leaves are sorted and deduplicated
//! first, so the tree depends only on the set of digests, not on the order they were issued
//! in; a level with an odd node carries it up unchanged; a batch of one leaf is paired with
//! the zero word so every batch proof has a non-empty path (an empty path means a direct
//! signature). A leaf is a full EIP-712 digest (domain and type bound), and inner nodes are
//! hashes of 64 bytes, so no inner node can pass for a message without a keccak preimage.

use crate::eip712::{Domain, Eip712Message, Encoder};
use alloy_primitives::{b256, keccak256, B256};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::sync::Arc;

/// Longest path a proof may carry (the contract's limit too): batches of up to 2^20 leaves.
pub const MAX_PATH_DEPTH: usize = 20;
/// The ledger seals once this many proofs wait, even inside one group commit, so every batch
/// stays far below 2^[`MAX_PATH_DEPTH`] leaves (one command adds at most a custodial batch).
pub const MAX_UNSEALED_PROOFS: usize = 1 << 16;

/// The message the hub signs for a batch: the root of its proofs' tree.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProofBatch {
    /// The Merkle root.
    pub root: B256,
}

/// EIP-712 type string of [`ProofBatch`].
pub const PROOF_BATCH_TYPE: &str = "ProofBatch(bytes32 root)";

impl Eip712Message for ProofBatch {
    const TYPE: &'static str = PROOF_BATCH_TYPE;
    const TYPE_HASH: B256 = b256!("20ab4e6447962eb09068615f8cca8248d1bad1adc4dfdc39db0a7a85ebeea46e");
    fn struct_hash(&self) -> B256 {
        let mut e = Encoder::new(Self::TYPE_HASH);
        e.word(self.root);
        e.finish()
    }
}

/// The hash of two sibling nodes, in sorted order.
pub fn hash_pair(a: B256, b: B256) -> B256 {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    let mut buf = [0u8; 64];
    buf[..32].copy_from_slice(lo.as_slice());
    buf[32..].copy_from_slice(hi.as_slice());
    keccak256(buf)
}

/// A leaf's path to its batch root (empty: the proof is signed directly). Held behind a
/// shared pointer: a proof is cloned into the answer, the log record and the history, and a
/// path inline would make each copy about 640 bytes (the full [`MAX_PATH_DEPTH`]) where a
/// pointer is 16.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct MerklePath(Option<Arc<[B256]>>);

impl MerklePath {
    /// No path: a direct signature.
    pub const EMPTY: MerklePath = MerklePath(None);

    /// From sibling hashes, leaf side first; None if longer than [`MAX_PATH_DEPTH`].
    pub fn from_nodes(nodes: &[B256]) -> Option<MerklePath> {
        if nodes.len() > MAX_PATH_DEPTH {
            return None;
        }
        Some(if nodes.is_empty() { MerklePath::EMPTY } else { MerklePath(Some(Arc::from(nodes))) })
    }

    /// The sibling hashes, leaf side first.
    pub fn nodes(&self) -> &[B256] {
        self.0.as_deref().unwrap_or(&[])
    }

    /// True for a direct signature.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The root this path leads to from `leaf`.
    pub fn root(&self, leaf: B256) -> B256 {
        self.nodes().iter().fold(leaf, |node, sibling| hash_pair(node, *sibling))
    }
}

impl fmt::Debug for MerklePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.nodes()).finish()
    }
}

impl Serialize for MerklePath {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.nodes().serialize(s)
    }
}

impl<'de> Deserialize<'de> for MerklePath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let nodes = Vec::<B256>::deserialize(d)?;
        MerklePath::from_nodes(&nodes)
            .ok_or_else(|| serde::de::Error::custom(format!("a Merkle path of at most {MAX_PATH_DEPTH} nodes")))
    }
}

/// A Merkle tree over a batch's digests.
#[derive(Clone, Debug)]
pub struct MerkleTree {
    /// `levels[0]` are the sorted, deduplicated leaves; the last level is the root alone.
    levels: Vec<Vec<B256>>,
}

impl MerkleTree {
    /// Builds the tree over `leaves` (any order, duplicates allowed). Panics on no leaves or
    /// more than 2^[`MAX_PATH_DEPTH`] (the caller bounds its batches).
    pub fn new(mut leaves: Vec<B256>) -> MerkleTree {
        assert!(!leaves.is_empty(), "a Merkle tree needs at least one leaf");
        leaves.sort_unstable();
        leaves.dedup();
        if leaves.len() == 1 && leaves[0] != B256::ZERO {
            // Zero sorts first, so the leaves stay sorted for `path`'s binary search.
            leaves.insert(0, B256::ZERO);
        }
        assert!(leaves.len() <= 1 << MAX_PATH_DEPTH, "batch of {} leaves is too large", leaves.len());
        let mut levels = vec![leaves];
        while levels.last().map_or(0, Vec::len) > 1 {
            let below = levels.last().expect("non-empty");
            let above: Vec<B256> =
                below.chunks(2).map(|p| if p.len() == 2 { hash_pair(p[0], p[1]) } else { p[0] }).collect();
            levels.push(above);
        }
        MerkleTree { levels }
    }

    /// The root.
    pub fn root(&self) -> B256 {
        self.levels.last().expect("non-empty")[0]
    }

    /// Number of distinct leaves (with the zero word padding a single leaf).
    pub fn leaf_count(&self) -> usize {
        self.levels[0].len()
    }

    /// The path of `leaf`, or None if it is not a leaf of this tree.
    pub fn path(&self, leaf: B256) -> Option<MerklePath> {
        let mut index = self.levels[0].binary_search(&leaf).ok()?;
        let mut nodes = [B256::ZERO; MAX_PATH_DEPTH];
        let mut len = 0;
        for level in &self.levels[..self.levels.len() - 1] {
            let sibling = index ^ 1;
            if sibling < level.len() {
                nodes[len] = level[sibling];
                len += 1;
            }
            index /= 2;
        }
        MerklePath::from_nodes(&nodes[..len])
    }
}

/// The digest the hub signs for a batch with `root` in `domain`.
pub fn batch_digest(root: B256, domain: &Domain) -> B256 {
    ProofBatch { root }.digest(domain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::keccak256;

    fn leaves(n: u64) -> Vec<B256> {
        (0..n).map(|i| keccak256(i.to_be_bytes())).collect()
    }

    #[test]
    fn written_out_type_hash_is_the_hash_of_the_type_string() {
        assert_eq!(ProofBatch::TYPE_HASH, keccak256(PROOF_BATCH_TYPE));
    }

    #[test]
    fn every_leaf_folds_to_the_root_for_every_batch_size() {
        for n in [1u64, 2, 3, 4, 5, 7, 8, 9, 31, 100, 1_000] {
            let tree = MerkleTree::new(leaves(n));
            for leaf in leaves(n) {
                let path = tree.path(leaf).expect("a leaf");
                assert!(!path.is_empty(), "a batch proof always has a path (n = {n})");
                assert_eq!(path.root(leaf), tree.root(), "n = {n}");
                assert!(path.nodes().len() <= 64 - (n.leading_zeros() as usize) + 1);
            }
        }
    }

    #[test]
    fn order_and_duplicates_do_not_change_the_tree() {
        let mut l = leaves(13);
        let root = MerkleTree::new(l.clone()).root();
        l.reverse();
        l.push(l[3]);
        assert_eq!(MerkleTree::new(l).root(), root);
    }

    #[test]
    fn a_foreign_or_tampered_leaf_does_not_fold_to_the_root() {
        let tree = MerkleTree::new(leaves(9));
        let leaf = leaves(9)[4];
        let path = tree.path(leaf).expect("leaf");
        assert_eq!(tree.path(keccak256(b"not in the batch")), None);
        assert_ne!(path.root(keccak256(b"not in the batch")), tree.root());
        let mut nodes = path.nodes().to_vec();
        nodes[0].0[0] ^= 1;
        assert_ne!(MerklePath::from_nodes(&nodes).expect("short").root(leaf), tree.root());
    }

    #[test]
    fn paths_serialize_as_lists_and_overlong_ones_are_refused() {
        let tree = MerkleTree::new(leaves(5));
        let path = tree.path(leaves(5)[0]).expect("leaf");
        let json = serde_json::to_string(&path).expect("json");
        assert_eq!(serde_json::from_str::<MerklePath>(&json).expect("back"), path);
        let long = serde_json::to_string(&vec![B256::ZERO; MAX_PATH_DEPTH + 1]).expect("json");
        assert!(serde_json::from_str::<MerklePath>(&long).is_err());
        assert_eq!(serde_json::to_string(&MerklePath::EMPTY).expect("json"), "[]");
    }
}
