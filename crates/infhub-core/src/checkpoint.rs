//! Checkpoints of the hub's books: a Merkle-sum tree over one leaf per liability (spec §5.16).
//!
//! The contract cannot see off-chain credits, so nobody outside the hub can tell whether it
//! promised more than its reserve backs. A checkpoint commits to every liability at once: each
//! leaf names an account and what the hub owes it, each inner node carries the hash *and the
//! sum* of both children, and the root's sum is the hub's total liability, which the contract
//! compares with the funds it holds. A user who checks her own leaf and its path knows her
//! liability is counted in that total: a parent hashes both children's hashes and both their
//! sums, so no node can hide part of a child's sum (the flaw of Maxwell's first summation tree,
//! where the parent hashed only the sum of the sums).
//!
//! Leaves are domain-separated (type hash, chain, contract, checkpoint id), salted (a salt
//! derived from the hub's secret, the checkpoint and the account, so a path's sibling hashes
//! reveal nothing about the neighbours' figures) and placed at positions shuffled per
//! checkpoint. Sums are `U256` over leaves of at most `u128` each and at most
//! 2^[`MAX_CHECKPOINT_DEPTH`] leaves, so no sum can overflow; a path whose sibling sum exceeds
//! what such a subtree can hold is refused. Pure code: the node builds the tree, the wallet and
//! the contract verify paths (shared vectors keep them in agreement).

use crate::{Address, Amount};
use alloy_primitives::{b256, keccak256, B256, U256};
use serde::{Deserialize, Serialize};

/// Deepest tree: 2^40 leaves.
pub const MAX_CHECKPOINT_DEPTH: usize = 40;

/// EIP-712-style type string of a leaf (hashed as `keccak256(abi.encode(typehash, fields…))`).
pub const LEAF_TYPE: &str = "CheckpointLeaf(uint256 chainId,address contract,uint64 checkpointId,address account,uint8 kind,uint64 epoch,uint128 deposited,uint128 withdrawn,uint64 creditNonce,uint128 creditTotal,uint64 debitNonce,uint128 debitTotal,uint128 liability,bytes32 salt)";

/// `keccak256(LEAF_TYPE)`.
pub const LEAF_TYPE_HASH: B256 = b256!("dcdc2bab38c8d95930ea7dd6c535ef1646935143a636772f4053736ace086277");

/// Tag hashed into every inner node, so no leaf hash can pass for a node.
pub const NODE_TAG: &str = "infhub.CheckpointNode";
/// `keccak256(NODE_TAG)`.
pub const NODE_TAG_HASH: B256 = b256!("4ca6d58906257019e97f5fd5b0d77ee4c4b801fb1e5f34014bcd1c6d8b1148c6");

/// What a leaf's liability is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum LeafKind {
    /// A channel: the liability is its shortfall, `max(0, claim − funds)`, what settlement
    /// would take from the reserve.
    Channel = 0,
    /// A custodial balance (held in the reserve).
    Custodial = 1,
    /// An acknowledged external payment not yet paid out (from the reserve).
    QueuedPayout = 2,
    /// A custodial deposit no account claims yet.
    Unattributed = 3,
}

/// One leaf: an account and what the hub owes it, with the figures its owner checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Leaf {
    /// The account (channel owner, custodial account, payout recipient or depositor).
    pub account: Address,
    /// What kind of liability.
    pub kind: LeafKind,
    /// Channel epoch (0 for other kinds).
    pub epoch: u64,
    /// Channel deposits this epoch, as the ledger has confirmed them.
    pub deposited: Amount,
    /// Channel withdrawals this epoch.
    pub withdrawn: Amount,
    /// Nonce of the newest credit the hub issued.
    pub credit_nonce: u64,
    /// Its running total.
    pub credit_total: Amount,
    /// Nonce of the newest debit the user signed that the hub holds.
    pub debit_nonce: u64,
    /// Its running total.
    pub debit_total: Amount,
    /// What the reserve owes for this leaf: counted in the sum.
    pub liability: Amount,
    /// The leaf's salt.
    pub salt: B256,
}

/// Where a checkpoint lives: chain, contract, id. Bound into every leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointDomain {
    /// Chain id.
    pub chain_id: u64,
    /// The hub contract.
    pub contract: Address,
    /// The checkpoint's id (1, 2, …).
    pub checkpoint_id: u64,
}

fn word_u64(v: u64) -> [u8; 32] {
    U256::from(v).to_be_bytes()
}

fn word_u128(v: u128) -> [u8; 32] {
    U256::from(v).to_be_bytes()
}

fn word_address(a: Address) -> [u8; 32] {
    let mut w = [0u8; 32];
    w[12..].copy_from_slice(a.as_slice());
    w
}

impl Leaf {
    /// The leaf's hash: `keccak256(abi.encode(keccak256(LEAF_TYPE), chainId, contract, id,
    /// account, kind, epoch, deposited, withdrawn, creditNonce, creditTotal, debitNonce,
    /// debitTotal, liability, salt))`.
    pub fn hash(&self, d: &CheckpointDomain) -> B256 {
        let words: [[u8; 32]; 15] = [
            LEAF_TYPE_HASH.0,
            word_u64(d.chain_id),
            word_address(d.contract),
            word_u64(d.checkpoint_id),
            word_address(self.account),
            word_u64(self.kind as u64),
            word_u64(self.epoch),
            word_u128(self.deposited.0),
            word_u128(self.withdrawn.0),
            word_u64(self.credit_nonce),
            word_u128(self.credit_total.0),
            word_u64(self.debit_nonce),
            word_u128(self.debit_total.0),
            word_u128(self.liability.0),
            self.salt.0,
        ];
        keccak256(words.concat())
    }

    /// The tree node this leaf is.
    pub fn node(&self, d: &CheckpointDomain) -> SumNode {
        SumNode { hash: self.hash(d), sum: U256::from(self.liability.0) }
    }
}

/// A node of the tree: its hash and the sum of the liabilities under it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SumNode {
    /// The hash.
    pub hash: B256,
    /// The sum under it.
    pub sum: U256,
}

impl SumNode {
    /// The filler of an odd level: hash zero, sum zero.
    pub const EMPTY: SumNode = SumNode { hash: B256::ZERO, sum: U256::ZERO };

    /// The parent of `left` and `right`: `keccak256(abi.encode(keccak256(NODE_TAG), leftHash,
    /// leftSum, rightHash, rightSum))`, with the sum of the sums.
    pub fn parent(left: SumNode, right: SumNode) -> SumNode {
        let words: [[u8; 32]; 5] =
            [NODE_TAG_HASH.0, left.hash.0, left.sum.to_be_bytes(), right.hash.0, right.sum.to_be_bytes()];
        let sum = left.sum.checked_add(right.sum).expect("sums are bounded far below 2^256");
        SumNode { hash: keccak256(words.concat()), sum }
    }
}

/// Why a path does not prove a leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum PathError {
    /// More levels than [`MAX_CHECKPOINT_DEPTH`].
    #[error("checkpoint path too long")]
    PathTooLong,
    /// The index has bits above the path's depth.
    #[error("checkpoint path index out of range")]
    PathIndexOutOfRange,
    /// A sibling claims a sum no subtree of its height can hold (a forged sum).
    #[error("checkpoint sibling sum out of range")]
    SumOutOfRange,
    /// The path leads to another root (a tampered leaf, sibling or sum, or swapped siblings).
    #[error("checkpoint path does not lead to the root")]
    RootMismatch,
}

/// A leaf's path: its position and the sibling at each level, bottom up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SumPath {
    /// The leaf's position (bit i: whether it is the right child at level i).
    pub index: u64,
    /// Siblings, bottom up.
    pub siblings: Vec<SumNode>,
}

impl SumPath {
    /// The root this path leads to from `leaf`, checking the path's shape and every sibling's
    /// sum bound.
    pub fn root_from(&self, leaf: SumNode) -> Result<SumNode, PathError> {
        let depth = self.siblings.len();
        if depth > MAX_CHECKPOINT_DEPTH {
            return Err(PathError::PathTooLong);
        }
        if depth < 64 && self.index >> depth != 0 {
            return Err(PathError::PathIndexOutOfRange);
        }
        let mut node = leaf;
        for (level, sibling) in self.siblings.iter().enumerate() {
            // A subtree of height `level` holds at most 2^level leaves of at most u128::MAX.
            let bound = U256::from(u128::MAX) << level;
            if sibling.sum > bound {
                return Err(PathError::SumOutOfRange);
            }
            node = if (self.index >> level) & 1 == 0 {
                SumNode::parent(node, *sibling)
            } else {
                SumNode::parent(*sibling, node)
            };
        }
        Ok(node)
    }

    /// Ok if this path leads from `leaf` to `root` (hash and sum).
    pub fn verify(&self, leaf: SumNode, root: SumNode) -> Result<(), PathError> {
        if self.root_from(leaf)? != root {
            return Err(PathError::RootMismatch);
        }
        Ok(())
    }
}

/// A built tree: every level, leaves first.
#[derive(Clone, Debug)]
pub struct SumTree {
    levels: Vec<Vec<SumNode>>,
}

impl SumTree {
    /// Builds the tree over `leaves` in the order given (shuffle first, see [`shuffled`]).
    /// An empty tree has root [`SumNode::EMPTY`].
    pub fn build(leaves: Vec<SumNode>) -> SumTree {
        assert!(leaves.len() as u128 <= 1u128 << MAX_CHECKPOINT_DEPTH, "too many checkpoint leaves");
        let mut levels = vec![leaves];
        while levels.last().map_or(0, Vec::len) > 1 {
            let below = levels.last().expect("a level");
            let mut up = Vec::with_capacity(below.len().div_ceil(2));
            for pair in below.chunks(2) {
                let right = pair.get(1).copied().unwrap_or(SumNode::EMPTY);
                up.push(SumNode::parent(pair[0], right));
            }
            levels.push(up);
        }
        SumTree { levels }
    }

    /// The root: its hash and the total liability.
    pub fn root(&self) -> SumNode {
        self.levels.last().and_then(|l| l.first()).copied().unwrap_or(SumNode::EMPTY)
    }

    /// Number of leaves.
    pub fn len(&self) -> usize {
        self.levels[0].len()
    }

    /// True if the tree has no leaves.
    pub fn is_empty(&self) -> bool {
        self.levels[0].is_empty()
    }

    /// The path of the leaf at `index`.
    pub fn path(&self, index: usize) -> Option<SumPath> {
        if index >= self.len() {
            return None;
        }
        let mut siblings = Vec::with_capacity(self.levels.len());
        let mut i = index;
        for level in &self.levels[..self.levels.len() - 1] {
            siblings.push(level.get(i ^ 1).copied().unwrap_or(SumNode::EMPTY));
            i /= 2;
        }
        Some(SumPath { index: index as u64, siblings })
    }
}

/// The salt of `account`'s leaf in checkpoint `d`, derived from the hub's secret: unique per
/// account and checkpoint, unpredictable without the secret, and rebuilt without storing it.
pub fn salt(secret: &B256, d: &CheckpointDomain, account: Address) -> B256 {
    let words: [[u8; 32]; 5] = [
        keccak256("infhub.CheckpointSalt").0,
        secret.0,
        word_u64(d.chain_id),
        word_u64(d.checkpoint_id),
        word_address(account),
    ];
    keccak256(words.concat())
}

/// A permutation of `0..n` drawn from `seed` (Fisher–Yates with keccak as the generator), so
/// a leaf's position says nothing about its account and changes every checkpoint.
pub fn shuffled(n: usize, seed: &B256) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    let mut counter = 0u64;
    let mut block = [0u8; 32];
    let mut used = 4; // bytes of `block` consumed, in 8-byte draws
    for i in (1..n).rev() {
        if used == 4 {
            let mut input = [0u8; 40];
            input[..32].copy_from_slice(seed.as_slice());
            input[32..].copy_from_slice(&counter.to_be_bytes());
            block = keccak256(input).0;
            counter += 1;
            used = 0;
        }
        let draw = u64::from_be_bytes(block[used * 8..used * 8 + 8].try_into().expect("8 bytes"));
        used += 1;
        // Modulo bias below 2^-24 for n below 2^40: negligible for hiding positions.
        let j = (draw % (i as u64 + 1)) as usize;
        order.swap(i, j);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain() -> CheckpointDomain {
        CheckpointDomain { chain_id: 31337, contract: Address::repeat_byte(0x1F), checkpoint_id: 7 }
    }

    fn leaf(n: u8, liability: u128) -> Leaf {
        Leaf {
            account: Address::repeat_byte(n),
            kind: LeafKind::Channel,
            epoch: 1,
            deposited: Amount(100),
            withdrawn: Amount::ZERO,
            credit_nonce: u64::from(n),
            credit_total: Amount(u128::from(n) * 10),
            debit_nonce: 0,
            debit_total: Amount::ZERO,
            liability: Amount(liability),
            salt: B256::repeat_byte(n),
        }
    }

    fn tree(n: u8) -> (Vec<Leaf>, SumTree) {
        let leaves: Vec<Leaf> = (1..=n).map(|i| leaf(i, u128::from(i) * 3)).collect();
        let t = SumTree::build(leaves.iter().map(|l| l.node(&domain())).collect());
        (leaves, t)
    }

    #[test]
    fn every_leaf_proves_into_the_root_whose_sum_is_the_total() {
        for n in [1u8, 2, 3, 5, 8, 13] {
            let (leaves, t) = tree(n);
            let total: u128 = leaves.iter().map(|l| l.liability.0).sum();
            assert_eq!(t.root().sum, U256::from(total), "n={n}");
            for (i, l) in leaves.iter().enumerate() {
                let p = t.path(i).expect("path");
                p.verify(l.node(&domain()), t.root()).unwrap_or_else(|e| panic!("n={n} leaf {i}: {e}"));
            }
        }
        assert_eq!(SumTree::build(Vec::new()).root(), SumNode::EMPTY);
    }

    #[test]
    fn tampering_with_a_leaf_a_sibling_a_sum_or_the_order_is_refused() {
        let (leaves, t) = tree(6);
        let root = t.root();
        let p = t.path(2).expect("path");
        let node = leaves[2].node(&domain());
        // The leaf's own figures: a lower liability, another account, another checkpoint.
        let mut lower = leaves[2];
        lower.liability = Amount(lower.liability.0 - 1);
        assert_eq!(p.verify(lower.node(&domain()), root), Err(PathError::RootMismatch));
        let other = CheckpointDomain { checkpoint_id: 8, ..domain() };
        assert_eq!(p.verify(leaves[2].node(&other), root), Err(PathError::RootMismatch));
        // A sibling's sum moved to hide liability (the Maxwell flaw): the parent hashes sums.
        let mut forged = p.clone();
        forged.siblings[1].sum -= U256::from(1);
        assert_eq!(forged.verify(node, root), Err(PathError::RootMismatch));
        // Swapped siblings: the index says which side.
        let mut swapped = p.clone();
        swapped.index ^= 1;
        assert_eq!(swapped.verify(node, root), Err(PathError::RootMismatch));
        // A sum no subtree can hold, an index past the depth, a path too long.
        let mut huge = p.clone();
        huge.siblings[0].sum = U256::from(u128::MAX) + U256::from(1);
        assert_eq!(huge.verify(node, root), Err(PathError::SumOutOfRange));
        let mut far = p.clone();
        far.index |= 1 << p.siblings.len();
        assert_eq!(far.verify(node, root), Err(PathError::PathIndexOutOfRange));
        let long = SumPath { index: 0, siblings: vec![SumNode::EMPTY; MAX_CHECKPOINT_DEPTH + 1] };
        assert_eq!(long.verify(node, root), Err(PathError::PathTooLong));
    }

    #[test]
    fn written_out_hashes_are_the_hashes_of_their_strings() {
        assert_eq!(LEAF_TYPE_HASH, keccak256(LEAF_TYPE));
        assert_eq!(NODE_TAG_HASH, keccak256(NODE_TAG));
    }

    #[test]
    fn a_leaf_hash_is_not_a_node_hash() {
        let l = leaf(1, 5).node(&domain());
        let n = SumNode::parent(l, SumNode::EMPTY);
        assert_ne!(n.hash, l.hash);
        assert_eq!(n.sum, l.sum);
    }

    #[test]
    fn shuffles_are_permutations_that_change_with_the_seed_and_salts_differ_per_checkpoint() {
        let a = shuffled(1000, &B256::repeat_byte(1));
        let b = shuffled(1000, &B256::repeat_byte(2));
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..1000).collect::<Vec<_>>(), "a permutation");
        assert_ne!(a, b, "another seed, another order");
        assert_eq!(a, shuffled(1000, &B256::repeat_byte(1)), "deterministic");
        let fixed = a.iter().enumerate().filter(|(i, j)| i == *j).count();
        assert!(fixed < 20, "about one fixed point expected, got {fixed}");
        let secret = B256::repeat_byte(9);
        let d7 = domain();
        let d8 = CheckpointDomain { checkpoint_id: 8, ..d7 };
        let acct = Address::repeat_byte(3);
        assert_ne!(salt(&secret, &d7, acct), salt(&secret, &d8, acct));
        assert_ne!(salt(&secret, &d7, acct), salt(&secret, &d7, Address::repeat_byte(4)));
    }
}
