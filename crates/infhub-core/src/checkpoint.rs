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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Leaf {
    /// The account (channel owner, custodial account, payout recipient or depositor).
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::AddressSchema"))]
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
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::WordSchema"))]
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
    /// A leaf that is only a liability (a custodial balance, a queued payout, unattributed
    /// deposits): no channel figures, no salt yet.
    pub fn owing(account: Address, kind: LeafKind, liability: Amount) -> Leaf {
        Leaf {
            account,
            kind,
            epoch: 0,
            deposited: Amount::ZERO,
            withdrawn: Amount::ZERO,
            credit_nonce: 0,
            credit_total: Amount::ZERO,
            debit_nonce: 0,
            debit_total: Amount::ZERO,
            liability,
            salt: B256::ZERO,
        }
    }

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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SumNode {
    /// The hash.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::WordSchema"))]
    pub hash: B256,
    /// The sum under it.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::U256Schema"))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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

/// The shuffle seed of checkpoint `d`: secret, like the salts, so positions say nothing.
pub fn shuffle_seed(secret: &B256, d: &CheckpointDomain) -> B256 {
    let words: [[u8; 32]; 5] = [
        keccak256("infhub.CheckpointShuffle").0,
        secret.0,
        word_u64(d.chain_id),
        word_address(d.contract),
        word_u64(d.checkpoint_id),
    ];
    keccak256(words.concat())
}

/// The contract's rule for `complainContradictedCredit` (spec §5.16): a credit of the leaf's
/// user and epoch contradicts a channel leaf of a checkpoint at ledger position `ledger_seq`
/// if it has the leaf's nonce with another total, or a higher total with a lower nonce or with
/// a nonce at most `ledger_seq` (a credit the leaf had to count). An honest hub's leaf is
/// contradicted by none of its credits. The contract model, the wallet and the tower use it.
pub fn credit_contradicts_leaf(credit: &crate::messages::Credit, leaf: &Leaf, ledger_seq: u64) -> bool {
    if leaf.kind != LeafKind::Channel || credit.user != leaf.account || credit.epoch != leaf.epoch {
        return false;
    }
    let (n, t) = (credit.nonce, credit.cumulative_credit);
    if n == leaf.credit_nonce {
        t != leaf.credit_total
    } else {
        t > leaf.credit_total && (n < leaf.credit_nonce || n <= ledger_seq)
    }
}

/// A leaf with its path: what a wallet fetches to check its part of a checkpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LeafProof {
    /// The leaf.
    pub leaf: Leaf,
    /// Its path to the root.
    pub path: SumPath,
}

/// A checkpoint as the hub built it: its domain, the leaves in tree order and the tree.
#[derive(Clone, Debug)]
pub struct BuiltCheckpoint {
    /// Chain, contract and id.
    pub domain: CheckpointDomain,
    leaves: Vec<Leaf>,
    tree: SumTree,
    /// Each leaf's account and position, sorted: an account's proofs are found by binary search,
    /// not a scan of every leaf (the leaves are shuffled, so tree order says nothing).
    by_account: Vec<(Address, u32)>,
}

/// Bytes of one leaf in [`BuiltCheckpoint::encode`].
const LEAF_BYTES: usize = 20 + 1 + 8 + 16 + 16 + 8 + 16 + 8 + 16 + 16 + 32;
/// Magic and version of [`BuiltCheckpoint::encode`].
const CHECKPOINT_FILE_MAGIC: &[u8; 8] = b"INFCKPT1";

/// Why stored checkpoint bytes do not decode.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("checkpoint file: {0}")]
pub struct CheckpointDecodeError(pub String);

impl BuiltCheckpoint {
    /// Builds checkpoint `d` over `leaves` (any order): shuffled by the secret's seed, then
    /// hashed into the tree.
    pub fn build(d: CheckpointDomain, leaves: Vec<Leaf>, secret: &B256) -> BuiltCheckpoint {
        let order = shuffled(leaves.len(), &shuffle_seed(secret, &d));
        let placed: Vec<Leaf> = order.iter().map(|&i| leaves[i]).collect();
        BuiltCheckpoint::placed(d, placed)
    }

    /// The checkpoint of `d` over leaves already in tree order.
    pub fn placed(d: CheckpointDomain, leaves: Vec<Leaf>) -> BuiltCheckpoint {
        let tree = SumTree::build(leaves.iter().map(|l| l.node(&d)).collect());
        let mut by_account: Vec<(Address, u32)> = leaves
            .iter()
            .enumerate()
            .map(|(i, l)| (l.account, u32::try_from(i).expect("fewer than 2^32 leaves")))
            .collect();
        by_account.sort_unstable();
        BuiltCheckpoint { domain: d, leaves, tree, by_account }
    }

    /// The root: hash and total liability.
    pub fn root(&self) -> SumNode {
        self.tree.root()
    }

    /// The leaves, in tree order.
    pub fn leaves(&self) -> &[Leaf] {
        &self.leaves
    }

    /// Every leaf of `account` with its path (a channel, a custodial account and payouts to
    /// it may each have one).
    pub fn proofs_of(&self, account: Address) -> Vec<LeafProof> {
        let from = self.by_account.partition_point(|(a, _)| *a < account);
        self.by_account[from..]
            .iter()
            .take_while(|(a, _)| *a == account)
            .map(|&(_, i)| {
                let i = i as usize;
                LeafProof { leaf: self.leaves[i], path: self.tree.path(i).expect("a leaf has a path") }
            })
            .collect()
    }

    /// [`BuiltCheckpoint::proofs_of`] for each of `accounts` (accounts without a leaf are
    /// absent).
    pub fn proofs_of_each(
        &self,
        accounts: &std::collections::BTreeSet<Address>,
    ) -> std::collections::BTreeMap<Address, Vec<LeafProof>> {
        accounts.iter().map(|a| (*a, self.proofs_of(*a))).filter(|(_, proofs)| !proofs.is_empty()).collect()
    }

    /// The leaves as bytes: magic, chain id, contract, id, count, then each leaf's fields in
    /// order, fixed width and big-endian.
    pub fn encode(&self) -> Vec<u8> {
        let d = &self.domain;
        let mut out = Vec::with_capacity(8 + 8 + 20 + 8 + 8 + self.leaves.len() * LEAF_BYTES);
        out.extend_from_slice(CHECKPOINT_FILE_MAGIC);
        out.extend_from_slice(&d.chain_id.to_be_bytes());
        out.extend_from_slice(d.contract.as_slice());
        out.extend_from_slice(&d.checkpoint_id.to_be_bytes());
        out.extend_from_slice(&(self.leaves.len() as u64).to_be_bytes());
        for l in &self.leaves {
            out.extend_from_slice(l.account.as_slice());
            out.push(l.kind as u8);
            out.extend_from_slice(&l.epoch.to_be_bytes());
            out.extend_from_slice(&l.deposited.0.to_be_bytes());
            out.extend_from_slice(&l.withdrawn.0.to_be_bytes());
            out.extend_from_slice(&l.credit_nonce.to_be_bytes());
            out.extend_from_slice(&l.credit_total.0.to_be_bytes());
            out.extend_from_slice(&l.debit_nonce.to_be_bytes());
            out.extend_from_slice(&l.debit_total.0.to_be_bytes());
            out.extend_from_slice(&l.liability.0.to_be_bytes());
            out.extend_from_slice(l.salt.as_slice());
        }
        out
    }

    /// Decodes [`BuiltCheckpoint::encode`] and rebuilds the tree.
    pub fn decode(bytes: &[u8]) -> Result<BuiltCheckpoint, CheckpointDecodeError> {
        let bad = |what: &str| CheckpointDecodeError(what.to_string());
        let mut r = Reader { bytes, at: 0 };
        if r.take(8).ok_or_else(|| bad("truncated header"))? != CHECKPOINT_FILE_MAGIC {
            return Err(bad("not a checkpoint file (magic or version)"));
        }
        let chain_id = r.u64().ok_or_else(|| bad("truncated header"))?;
        let contract = Address::from_slice(r.take(20).ok_or_else(|| bad("truncated header"))?);
        let checkpoint_id = r.u64().ok_or_else(|| bad("truncated header"))?;
        let n = r.u64().ok_or_else(|| bad("truncated header"))?;
        if (bytes.len() - r.at) as u64 != n.saturating_mul(LEAF_BYTES as u64) {
            return Err(bad("length does not match the leaf count"));
        }
        let mut leaves = Vec::with_capacity(n as usize);
        for _ in 0..n {
            leaves.push(r.leaf().ok_or_else(|| bad("a leaf of unknown kind"))?);
        }
        Ok(BuiltCheckpoint::placed(CheckpointDomain { chain_id, contract, checkpoint_id }, leaves))
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        let s = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(s)
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
    fn amount(&mut self) -> Option<Amount> {
        Some(Amount(u128::from_be_bytes(self.take(16)?.try_into().ok()?)))
    }
    fn leaf(&mut self) -> Option<Leaf> {
        let account = Address::from_slice(self.take(20)?);
        let kind = match self.take(1)?[0] {
            0 => LeafKind::Channel,
            1 => LeafKind::Custodial,
            2 => LeafKind::QueuedPayout,
            3 => LeafKind::Unattributed,
            _ => return None,
        };
        Some(Leaf {
            account,
            kind,
            epoch: self.u64()?,
            deposited: self.amount()?,
            withdrawn: self.amount()?,
            credit_nonce: self.u64()?,
            credit_total: self.amount()?,
            debit_nonce: self.u64()?,
            debit_total: self.amount()?,
            liability: self.amount()?,
            salt: B256::from_slice(self.take(32)?),
        })
    }
}

/// What a channel's user knows to check her leaf of a checkpoint with: the chain's record of
/// her channel at the checkpoint's block, and her own proofs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelFacts {
    /// The channel's epoch on chain at the checkpoint's block.
    pub epoch: u64,
    /// Deposits this epoch, on chain at that block.
    pub deposited: Amount,
    /// Withdrawals this epoch, on chain at that block.
    pub withdrawn: Amount,
    /// The channel's funds on chain at that block.
    pub funds: Amount,
    /// The total of the newest credit she held before the checkpoint's ledger position (the
    /// leaf must count at least this).
    pub credit_floor: Amount,
    /// The highest debit total she ever signed this epoch (the leaf may not claim more).
    pub debit_ceiling: Amount,
}

/// How a user's leaf of a checkpoint fails her check. Each names the rule broken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LeafFault {
    /// The hub gave no leaf for her open channel.
    #[error("the checkpoint has no leaf for this channel")]
    LeafMissing,
    /// The leaf's path does not lead to the posted root.
    #[error("the leaf is not in the posted tree: {0}")]
    LeafNotInTree(PathError),
    /// The leaf names another epoch than the chain's.
    #[error("the leaf's epoch is not the channel's")]
    LeafEpochMismatch,
    /// The leaf's deposits or withdrawals are not the chain's at the checkpoint's block.
    #[error("the leaf's deposits or withdrawals are not the chain's")]
    LeafChainTotalsMismatch,
    /// The leaf counts less credit than a credit the hub had already given her.
    #[error("the leaf omits a credit the hub signed before the checkpoint")]
    LeafOmitsCredit,
    /// The leaf claims more debit than she ever signed.
    #[error("the leaf claims a debit this user never signed")]
    LeafDebitUnsigned,
    /// The leaf's liability is below `max(0, claim − funds)` of its own figures.
    #[error("the leaf understates the hub's liability")]
    LeafLiabilityUnderstated,
}

impl LeafFault {
    /// The fault's name, as the API and the wallet print it.
    pub fn code(&self) -> &'static str {
        match self {
            LeafFault::LeafMissing => "leaf_missing",
            LeafFault::LeafNotInTree(_) => "leaf_not_in_tree",
            LeafFault::LeafEpochMismatch => "leaf_epoch_mismatch",
            LeafFault::LeafChainTotalsMismatch => "leaf_chain_totals_mismatch",
            LeafFault::LeafOmitsCredit => "leaf_omits_credit",
            LeafFault::LeafDebitUnsigned => "leaf_debit_unsigned",
            LeafFault::LeafLiabilityUnderstated => "leaf_liability_understated",
        }
    }
}

/// Checks `user`'s channel leaf of checkpoint `d` with root `root` among the `proofs` the hub
/// gave (spec §5.16, "What a wallet checks"): exactly the path to the posted root, the chain's
/// totals, no credit she held left out, no debit she did not sign, and the liability its own
/// figures imply. Returns the leaf; None if there is none and nothing was at stake (no deposit
/// and no credit: a channel the hub does not follow, e.g. opened by its user and never funded).
pub fn check_channel_leaf(
    d: &CheckpointDomain,
    root: SumNode,
    user: Address,
    proofs: &[LeafProof],
    facts: &ChannelFacts,
) -> Result<Option<Leaf>, LeafFault> {
    let Some(p) = proofs.iter().find(|p| p.leaf.account == user && p.leaf.kind == LeafKind::Channel) else {
        if facts.deposited.is_zero() && facts.credit_floor.is_zero() {
            return Ok(None);
        }
        return Err(LeafFault::LeafMissing);
    };
    let leaf = p.leaf;
    p.path.verify(leaf.node(d), root).map_err(LeafFault::LeafNotInTree)?;
    if leaf.epoch != facts.epoch {
        return Err(LeafFault::LeafEpochMismatch);
    }
    if leaf.deposited != facts.deposited || leaf.withdrawn != facts.withdrawn {
        return Err(LeafFault::LeafChainTotalsMismatch);
    }
    if leaf.credit_total < facts.credit_floor {
        return Err(LeafFault::LeafOmitsCredit);
    }
    if leaf.debit_total > facts.debit_ceiling {
        return Err(LeafFault::LeafDebitUnsigned);
    }
    let plus = leaf.deposited.0.saturating_add(leaf.credit_total.0);
    let claim = plus.saturating_sub(leaf.withdrawn.0.saturating_add(leaf.debit_total.0));
    if leaf.liability.0 < claim.saturating_sub(facts.funds.0) {
        return Err(LeafFault::LeafLiabilityUnderstated);
    }
    Ok(Some(leaf))
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

    /// An account's proofs are found through the sorted index: every leaf of it (several kinds),
    /// each with a path that proves it into the root, none of another account's, and none for
    /// an account without a leaf; the same as a scan of every leaf.
    #[test]
    fn proofs_of_an_account_are_all_its_leaves_and_only_its() {
        let mut leaves: Vec<Leaf> = (1..=40).map(|i| leaf(i % 13 + 1, u128::from(i))).collect();
        for (i, l) in leaves.iter_mut().enumerate() {
            l.kind = [LeafKind::Channel, LeafKind::Custodial, LeafKind::QueuedPayout][i % 3];
            l.salt = B256::repeat_byte(i as u8);
        }
        let built = BuiltCheckpoint::build(domain(), leaves, &B256::repeat_byte(9));
        let root = built.root();
        for n in 0..=15u8 {
            let account = Address::repeat_byte(n);
            let scan: Vec<Leaf> = built.leaves().iter().filter(|l| l.account == account).copied().collect();
            let proofs = built.proofs_of(account);
            assert_eq!(proofs.iter().map(|p| p.leaf).collect::<Vec<_>>(), scan, "account {n}");
            for p in &proofs {
                p.path.verify(p.leaf.node(&domain()), root).expect("proves into the root");
            }
        }
        let wanted: std::collections::BTreeSet<Address> =
            [1u8, 2, 14].iter().map(|&n| Address::repeat_byte(n)).collect();
        let each = built.proofs_of_each(&wanted);
        assert_eq!(each.keys().copied().collect::<Vec<_>>(), vec![Address::repeat_byte(1), Address::repeat_byte(2)]);
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

    #[test]
    fn a_built_checkpoint_survives_its_file_and_proves_each_account() {
        let secret = B256::repeat_byte(9);
        let leaves: Vec<Leaf> = (1..=9).map(|n| leaf(n, u128::from(n) * 10)).collect();
        let built = BuiltCheckpoint::build(domain(), leaves.clone(), &secret);
        assert_eq!(built.root().sum, U256::from(450u32));
        let mut placed = built.leaves().to_vec();
        assert_ne!(placed, leaves, "the leaves are shuffled");
        placed.sort_by_key(|l| l.account);
        assert_eq!(placed, leaves, "a permutation of the leaves");
        let again = BuiltCheckpoint::decode(&built.encode()).expect("decodes");
        assert_eq!(again.root(), built.root());
        assert_eq!(again.leaves(), built.leaves());
        for l in &leaves {
            let proofs = again.proofs_of(l.account);
            assert_eq!(proofs.len(), 1);
            assert_eq!(proofs[0].leaf, *l);
            proofs[0].path.verify(l.node(&domain()), built.root()).expect("proves into the root");
        }
        assert!(again.proofs_of(Address::repeat_byte(0xEE)).is_empty());
        // In one pass for several accounts, the same proofs; an account without a leaf is absent.
        let wanted: std::collections::BTreeSet<Address> =
            [leaves[0].account, leaves[4].account, Address::repeat_byte(0xEE)].into_iter().collect();
        let each = again.proofs_of_each(&wanted);
        assert_eq!(each.len(), 2);
        for (account, proofs) in &each {
            assert_eq!(proofs, &again.proofs_of(*account));
        }
    }

    #[test]
    fn a_damaged_checkpoint_file_is_refused_not_misread() {
        let built = BuiltCheckpoint::build(domain(), vec![leaf(1, 5), leaf(2, 6)], &B256::ZERO);
        let bytes = built.encode();
        for cut in [0, 7, 20, bytes.len() - 1] {
            assert!(BuiltCheckpoint::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut magic = bytes.clone();
        magic[7] ^= 1;
        assert!(BuiltCheckpoint::decode(&magic).is_err());
        let mut kind = bytes.clone();
        kind[52 + 20] = 9; // the first leaf's kind byte
        assert_eq!(BuiltCheckpoint::decode(&kind).unwrap_err().0, "a leaf of unknown kind");
        let mut longer = bytes;
        longer.push(0);
        assert!(BuiltCheckpoint::decode(&longer).is_err());
    }

    #[test]
    fn a_users_check_catches_each_way_a_hub_can_misstate_her_leaf() {
        let d = domain();
        let user = Address::repeat_byte(3);
        // deposited 100, credit 30, debit 10: claim 120 against funds 100, liability 20.
        let honest = Leaf { debit_nonce: 1, debit_total: Amount(10), ..leaf(3, 20) };
        let facts = ChannelFacts {
            epoch: 1,
            deposited: Amount(100),
            withdrawn: Amount::ZERO,
            funds: Amount(100),
            credit_floor: Amount(30),
            debit_ceiling: Amount(10),
        };
        let check = |l: Leaf, f: &ChannelFacts| {
            let built = BuiltCheckpoint::build(d, vec![leaf(1, 5), l, leaf(7, 9)], &B256::ZERO);
            check_channel_leaf(&d, built.root(), user, &built.proofs_of(user), f)
        };
        assert_eq!(check(honest, &facts), Ok(Some(honest)));
        let bad = [
            (Leaf { epoch: 2, ..honest }, LeafFault::LeafEpochMismatch),
            (Leaf { deposited: Amount(90), ..honest }, LeafFault::LeafChainTotalsMismatch),
            (Leaf { withdrawn: Amount(1), ..honest }, LeafFault::LeafChainTotalsMismatch),
            (Leaf { credit_total: Amount(29), liability: Amount(19), ..honest }, LeafFault::LeafOmitsCredit),
            (Leaf { debit_total: Amount(11), liability: Amount(19), ..honest }, LeafFault::LeafDebitUnsigned),
            (Leaf { liability: Amount(19), ..honest }, LeafFault::LeafLiabilityUnderstated),
        ];
        for (l, fault) in bad {
            assert_eq!(check(l, &facts), Err(fault), "{l:?}");
        }
        // A leaf of another user, or of another kind, is no leaf of hers.
        let other = Leaf { account: Address::repeat_byte(4), ..honest };
        assert_eq!(check(other, &facts), Err(LeafFault::LeafMissing));
        let custodial = Leaf { kind: LeafKind::Custodial, ..honest };
        assert_eq!(check(custodial, &facts), Err(LeafFault::LeafMissing));
        // No leaf is owed for a channel with nothing at stake (no deposit, no credit).
        let idle = ChannelFacts { deposited: Amount::ZERO, credit_floor: Amount::ZERO, ..facts };
        assert_eq!(check(other, &idle), Ok(None));
        assert_eq!(check(other, &ChannelFacts { deposited: Amount(1), ..idle }), Err(LeafFault::LeafMissing));
        // A leaf proved into another tree (the hub shows her a tree it did not post).
        let built = BuiltCheckpoint::build(d, vec![leaf(1, 5), honest], &B256::ZERO);
        let posted = BuiltCheckpoint::build(d, vec![leaf(1, 6), honest], &B256::ZERO).root();
        let r = check_channel_leaf(&d, posted, user, &built.proofs_of(user), &facts);
        assert_eq!(r, Err(LeafFault::LeafNotInTree(PathError::RootMismatch)));
    }
}
