//! The hub's ledger: every channel, the reserve, and the payouts in flight, as one state machine.
//!
//! The ledger is double-entry over three kinds of accounts: users' channels (each run by the
//! channel state machine at the hub's end), the hub's reserve, and external payouts queued for
//! the chain. A command is applied all-or-nothing: [`Ledger::apply`] validates everything first
//! and mutates only when the command will succeed, so on `Err` the ledger is unchanged. It is
//! pure: the hub's key signs inside (signing is deterministic computation), and chain facts and
//! the confirmed block are inputs. Replaying the same commands on the same initial state gives
//! the same state and the same signed proofs, which is what the durable log relies on.
//!
//! Custodial accounts (seed 000 §3) live here too: the platform holds their keys, the ledger is
//! their truth, their balances are backed one-for-one by the reserve (custodial deposits enter
//! the reserve through `depositFor`), and they move without user signatures.
//!
//! Liquidity (protocol §6.3): the reserve must cover every channel's possible draw on it,
//! `obligation(u) = max(0, claim(u) − funds(u))`, plus queued payouts, an announced reserve
//! withdrawal, every custodial balance and unattributed custodial deposits. The sum is kept incrementally; anything that would break the rule is refused with
//! `ReserveInsufficient`.
//!
//! Refusals are final (spec §5.4): a well-formed debit refused for a reason of state (the
//! balance, liquidity, the recipient, a limit) is applied and refunded in one step, so its
//! nonce and total are spent and the payer holds a hub-signed credit of the amount back;
//! nobody can charge it later.
//!
//! Accounts follow the chain without letting strangers exhaust the ledger: a channel opened
//! by the hub (a registration) or registered by it (`ChannelRegistered`) is tracked, and a
//! channel its user opened alone is tracked from its first deposit. Empty channels opened by
//! anyone else cost the ledger nothing.

use crate::channel::{step, ChannelParams, ChannelState, CheckedDebit, Effect, Input, Role, Status};
use crate::merkle::{batch_digest, MerklePath, MerkleTree};
use crate::messages::{
    Eip712Message, HubSigned, PaymentKind, Receipt, SignedCredit, SignedDebit, SignedReceipt, Withdrawal,
};
use crate::signature::{PrivateKey, Signature};
use crate::{Amount, Domain, Error};
use alloy_primitives::{Address, B256};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};

/// Fixed parameters and limits of a hub's ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerParams {
    /// The signing domain.
    pub domain: Domain,
    /// The hub's signing address.
    pub hub: Address,
    /// The furthest ahead a co-signed withdrawal may expire.
    pub max_withdrawal_expiry_blocks: u64,
    /// Most channels the ledger tracks.
    pub max_accounts: usize,
    /// Most external payouts waiting for the chain.
    pub max_queued_payouts: usize,
    /// Largest single payment, purchase or withdrawal.
    pub max_payment_amount: Amount,
    /// Internal transfers whose payment ids are remembered (the newest ones). A retry of one of
    /// them is answered as a duplicate; an older payment's debit nonce is spent, so its retry
    /// is refused (`nonce_must_increase`) and can never pay twice. Bounds the ledger's memory
    /// and snapshot, which would otherwise grow with every transfer ever made. External
    /// payments' ids are kept for good (their payout batch ids derive from them).
    pub transfer_ids_kept: usize,
}

/// On-chain facts about one channel that the channel state machine does not need but the
/// liquidity rule does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainFunds {
    /// Sum of `fromReserve` of this epoch's withdrawals.
    pub advanced_from_reserve: Amount,
    /// Sum of `moved` of this epoch's debit realizations.
    pub realized_debit: Amount,
}

/// One user's account: its channel and the chain facts about it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The channel at the hub's end.
    pub channel: ChannelState,
    /// Chain facts for the liquidity rule.
    pub chain: ChainFunds,
}

impl Account {
    /// `funds = deposited + advanced − withdrawn − realized` as the contract has it (zero once
    /// settled: the contract clears a settled channel's totals, the ledger keeps them as history).
    pub fn funds(&self) -> u128 {
        let ch = &self.channel;
        if ch.status == Status::Settled {
            return 0;
        }
        let plus = ch.deposited.0 + self.chain.advanced_from_reserve.0;
        let minus = ch.withdrawn.0 + self.chain.realized_debit.0;
        assert!(plus >= minus, "channel funds negative: {self:?}");
        plus - minus
    }

    /// What this channel may draw from the reserve at settlement: `max(0, claim − funds)`.
    pub fn obligation(&self) -> u128 {
        match self.channel.status {
            Status::Settled => 0,
            _ => self.channel.claim().0.saturating_sub(self.funds()),
        }
    }
}

/// An external payout waiting for the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payout {
    /// Who pays.
    pub payer: Address,
    /// The payer's payment id.
    pub payment_id: B256,
    /// Who receives on chain.
    pub recipient: Address,
    /// How much.
    pub amount: Amount,
}

/// A payout batch taken from the queue and handed to the chain, kept until the confirmed
/// `PayoutBatchExecuted` of its id: until then the hub (re)sends it, after a crash, a reorg,
/// a dropped or a reverted transaction alike (the contract executes an id at most once).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayoutBatch {
    /// Its on-chain id ([`payout_batch_id`] of the payouts).
    pub id: B256,
    /// The payouts, in queue order.
    pub payouts: Vec<Payout>,
    /// The ledger's confirmed block when it was taken.
    pub taken_at_block: u64,
}

impl PayoutBatch {
    /// Σ of its amounts.
    pub fn total(&self) -> u128 {
        self.payouts.iter().map(|p| p.amount.0).sum()
    }
}

/// The on-chain id of a payout batch: the keccak of its payments' (payer, payment id) pairs,
/// so the same batch always gets the same id and the contract executes it at most once.
pub fn payout_batch_id(payouts: &[Payout]) -> B256 {
    let mut buf = Vec::with_capacity(payouts.len() * 52);
    for p in payouts {
        buf.extend_from_slice(p.payer.as_slice());
        buf.extend_from_slice(p.payment_id.as_slice());
    }
    alloy_primitives::keccak256(&buf)
}

/// A custodial account: the platform holds the key, the ledger holds the balance.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustodialAccount {
    /// Its address: [`custodial_address`] of the platform's user id.
    pub account: Address,
    /// What the account holds.
    pub balance: Amount,
    /// Σ confirmed on-chain deposits for it (`CustodialDeposited`).
    pub deposited_on_chain: Amount,
    /// keccak256 of its API key (the key itself is never stored).
    pub api_key_hash: B256,
    /// The channel its balance was converted into, once converted.
    pub linked_channel: Option<Address>,
}

/// Longest platform user id of a custodial account, in bytes.
pub const MAX_USER_ID_BYTES: usize = 64;
/// Most transfers in one custodial batch.
pub const MAX_CUSTODIAL_BATCH: usize = 8_192;

/// The address of the custodial account for the platform's `user_id`: the last 20 bytes of
/// Calls `f` with every hub-signed proof an outcome carries (mutably, to fill in its seal).
pub fn for_each_proof(outcome: &mut Outcome, f: &mut dyn FnMut(ProofRef<'_>)) {
    match outcome {
        Outcome::Paid { receipt, credit, .. } => {
            f(ProofRef::Receipt(receipt));
            if let Some(c) = credit {
                f(ProofRef::Credit(c));
            }
        }
        Outcome::Credited(c) | Outcome::Converted { credit: c, .. } | Outcome::Refunded { refund: c, .. } => {
            f(ProofRef::Credit(c))
        }
        Outcome::CustodialTransfers(results) => {
            for r in results {
                if let CustodialResult::Moved { credit: Some(c) } = r {
                    f(ProofRef::Credit(c));
                }
            }
        }
        _ => {}
    }
}

/// One proof inside an outcome.
pub enum ProofRef<'a> {
    /// A payee's credit.
    Credit(&'a mut SignedCredit),
    /// A payer's receipt.
    Receipt(&'a mut SignedReceipt),
}

impl ProofRef<'_> {
    /// The digest the batch tree holds for it.
    pub fn digest(&self, domain: &Domain) -> B256 {
        match self {
            ProofRef::Credit(c) => c.message.digest(domain),
            ProofRef::Receipt(r) => r.message.digest(domain),
        }
    }

    fn set(&mut self, signature: Signature, path: MerklePath) {
        match self {
            ProofRef::Credit(c) => (c.signature, c.path) = (signature, path),
            ProofRef::Receipt(r) => (r.signature, r.path) = (signature, path),
        }
    }
}

/// Fills the batch signature and paths into the outcomes of one sealed batch: `outcomes` are
/// the outcomes of every command from the previous seal up to `sealed` (an
/// [`Outcome::Sealed`]). Rebuilds the tree from their proofs, so the same call serves a live
/// batch and a batch read back from the log. Err if the proofs do not rebuild the sealed root.
pub fn fill_proofs(domain: &Domain, outcomes: &mut [&mut Outcome], sealed: &Outcome) -> Result<(), String> {
    let Outcome::Sealed { root, signature, .. } = sealed else {
        return Err(format!("not a seal: {sealed:?}"));
    };
    let mut leaves = Vec::new();
    for o in outcomes.iter_mut() {
        for_each_proof(o, &mut |p| leaves.push(p.digest(domain)));
    }
    if leaves.is_empty() {
        return Err("a seal without proofs".into());
    }
    let tree = MerkleTree::new(leaves.clone());
    if tree.root() != *root {
        return Err(format!("the batch's proofs rebuild root {}, the seal signed {root}", tree.root()));
    }
    // Same walk, same order: the digests computed above, without hashing each proof again.
    let mut digests = leaves.iter();
    for o in outcomes.iter_mut() {
        for_each_proof(o, &mut |mut p| {
            let digest = *digests.next().expect("the same proofs as the first walk");
            p.set(*signature, tree.path(digest).expect("a leaf of this tree"));
        });
    }
    Ok(())
}

/// `keccak256("infhub.custodial:" ‖ user_id)`. Users of channels pay it like any account.
pub fn custodial_address(user_id: &str) -> Address {
    let mut buf = b"infhub.custodial:".to_vec();
    buf.extend_from_slice(user_id.as_bytes());
    Address::from_slice(&alloy_primitives::keccak256(buf)[12..])
}

/// A platform user id must be 1..=64 bytes of `[A-Za-z0-9._@-]`.
pub fn valid_user_id(user_id: &str) -> bool {
    !user_id.is_empty()
        && user_id.len() <= MAX_USER_ID_BYTES
        && user_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
}

/// One custodial movement in a batch (no user signature: the platform authorized it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustodialTransfer {
    /// The custodial account paying.
    pub from: Address,
    /// A custodial account, or a channel account (which receives a hub-signed credit).
    pub to: Address,
    /// How much.
    pub amount: Amount,
    /// The platform's idempotency key.
    pub transfer_id: B256,
}

/// The result of one transfer of a custodial batch. In JSON it is tagged by a `result` field
/// (`{"result": "moved", "credit": ...}`); in the binary log by the variant's index, because
/// bincode cannot read an internally tagged enum back (see [`custodial_result_serde`]).
// A credit (about 220 bytes) is the common case; boxing it would allocate per transfer.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CustodialResult {
    /// Applied; a channel recipient got this credit.
    Moved {
        /// The channel recipient's new credit.
        credit: Option<SignedCredit>,
    },
    /// Applied before, at this sequence number.
    Duplicate {
        /// Sequence number of the first application.
        first_seq: u64,
    },
    /// Refused by this rule; nothing moved.
    Rejected {
        /// The rule.
        error: Error,
    },
}

/// The two encodings of [`CustodialResult`]: one per kind of format.
mod custodial_result_serde {
    use super::{CustodialResult, Error, SignedCredit};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    macro_rules! mirror {
        ($name:ident, $($attr:meta),*) => {
            #[allow(clippy::large_enum_variant)]
            #[derive(Serialize, Deserialize)]
            $(#[$attr])*
            enum $name {
                Moved { credit: Option<SignedCredit> },
                Duplicate { first_seq: u64 },
                Rejected { error: Error },
            }

            impl From<$name> for CustodialResult {
                fn from(r: $name) -> Self {
                    match r {
                        $name::Moved { credit } => CustodialResult::Moved { credit },
                        $name::Duplicate { first_seq } => CustodialResult::Duplicate { first_seq },
                        $name::Rejected { error } => CustodialResult::Rejected { error },
                    }
                }
            }

            impl From<CustodialResult> for $name {
                fn from(r: CustodialResult) -> Self {
                    match r {
                        CustodialResult::Moved { credit } => $name::Moved { credit },
                        CustodialResult::Duplicate { first_seq } => $name::Duplicate { first_seq },
                        CustodialResult::Rejected { error } => $name::Rejected { error },
                    }
                }
            }
        };
    }
    mirror!(Tagged, serde(rename_all = "camelCase", tag = "result"));
    mirror!(Indexed, serde(rename_all = "camelCase"));

    impl Serialize for CustodialResult {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            if s.is_human_readable() {
                Tagged::from(self.clone()).serialize(s)
            } else {
                Indexed::from(self.clone()).serialize(s)
            }
        }
    }

    impl<'de> Deserialize<'de> for CustodialResult {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            if d.is_human_readable() {
                Tagged::deserialize(d).map(Into::into)
            } else {
                Indexed::deserialize(d).map(Into::into)
            }
        }
    }
}

/// Where a contract event sits in the chain. Events are applied in this order, each at most
/// once: the ledger keeps the position of the last one applied (its high-water mark), durably,
/// with the rest of its state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct LogPosition {
    /// Block number.
    pub block: u64,
    /// Index of the log within the block.
    pub log_index: u64,
}

/// A confirmed contract event, as the ledger consumes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChainEvent {
    /// `ChannelOpened`.
    ChannelOpened {
        /// The channel owner.
        user: Address,
        /// The new epoch.
        epoch: u64,
        /// Who called `openChannel(s)`: the hub (a registration) or the user.
        opened_by: Address,
    },
    /// `ChannelRegistered`: the hub registered a channel its user had opened.
    ChannelRegistered {
        /// The channel owner.
        user: Address,
        /// Its epoch.
        epoch: u64,
    },
    /// `Deposited`.
    Deposited {
        /// The channel owner.
        user: Address,
        /// The epoch.
        epoch: u64,
        /// Running total of deposits this epoch.
        total_deposited: Amount,
    },
    /// `Withdrawn`.
    Withdrawn {
        /// The channel owner.
        user: Address,
        /// The epoch.
        epoch: u64,
        /// Running total withdrawn this epoch.
        total_withdrawn: Amount,
        /// Part advanced by the reserve.
        from_reserve: Amount,
    },
    /// `DebitRealized`.
    DebitRealized {
        /// The channel owner.
        user: Address,
        /// The epoch.
        epoch: u64,
        /// Tokens moved to the reserve.
        moved: Amount,
        /// The reserve afterwards.
        reserve_after: Amount,
    },
    /// `DebitSubmitted` (also emitted by `realizeDebit`).
    DebitSubmitted {
        /// The channel owner.
        user: Address,
        /// The epoch.
        epoch: u64,
        /// The running total now held by the contract.
        cumulative: Amount,
    },
    /// `CreditSubmitted`.
    CreditSubmitted {
        /// The channel owner.
        user: Address,
        /// The epoch.
        epoch: u64,
        /// The running total now held by the contract.
        cumulative: Amount,
    },
    /// `ExitStarted`.
    ExitStarted {
        /// The channel owner.
        user: Address,
        /// The epoch.
        epoch: u64,
        /// First block at which settlement is possible.
        settle_block: u64,
    },
    /// `Settled`.
    Settled {
        /// The channel owner.
        user: Address,
        /// The epoch.
        epoch: u64,
        /// What the user was paid.
        paid: Amount,
        /// The reserve afterwards.
        reserve_after: Amount,
    },
    /// `ReserveDeposited`.
    ReserveDeposited {
        /// The reserve afterwards.
        reserve_after: Amount,
    },
    /// `CustodialDeposited`: tokens for a custodial account, now in the reserve.
    CustodialDeposited {
        /// The custodial account's address (its reference).
        account: Address,
        /// Tokens deposited.
        amount: Amount,
        /// The reserve afterwards.
        reserve_after: Amount,
    },
    /// `ReserveWithdrawn`.
    ReserveWithdrawn {
        /// Amount taken out.
        amount: Amount,
        /// The reserve afterwards.
        reserve_after: Amount,
    },
    /// `PayoutBatchExecuted`.
    PayoutBatchExecuted {
        /// The batch's id.
        batch_id: B256,
        /// The batch's total.
        total: Amount,
        /// The reserve afterwards.
        reserve_after: Amount,
    },
    /// `ExcessToReserve`: tokens sent to the contract outside its functions joined the reserve.
    ExcessToReserve {
        /// Tokens moved.
        amount: Amount,
        /// The reserve afterwards.
        reserve_after: Amount,
    },
}

/// A request to the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// A user-signed payment (internal or external).
    Transfer(SignedDebit),
    /// The operator credits a user against the reserve ("buying from the platform").
    Purchase {
        /// Who is credited.
        user: Address,
        /// How much.
        amount: Amount,
        /// The operator's idempotency key.
        purchase_id: B256,
    },
    /// A user asks the hub to co-sign a cooperative withdrawal.
    Withdraw {
        /// The withdrawal.
        withdrawal: Withdrawal,
        /// The user's signature over it.
        user_signature: Signature,
    },
    /// The hub earmarks reserve for a withdrawal it is about to announce on chain.
    EarmarkReserveWithdrawal {
        /// How much.
        amount: Amount,
    },
    /// Queued payouts are handed to the chain layer as one batch.
    TakePayoutBatch {
        /// Most payouts in the batch.
        max: usize,
    },
    /// A confirmed chain event at its position; ignored if at or below the high-water mark.
    Chain {
        /// Where the event is.
        at: LogPosition,
        /// The event.
        event: ChainEvent,
    },
    /// Every contract event in blocks `<= n` has been delivered.
    Block(u64),
    /// Sign every credit and receipt issued since the last seal with one signature over the
    /// Merkle root of their digests (see [`crate::merkle`]); the durable layer issues it at
    /// the end of each group commit.
    SealProofs,
    /// The operator opens a custodial account.
    OpenCustodial {
        /// Its address ([`custodial_address`] of the user id).
        account: Address,
        /// keccak256 of its API key.
        api_key_hash: B256,
    },
    /// Custodial transfers, each applied or refused on its own.
    CustodialTransfers(Vec<CustodialTransfer>),
    /// A custodial account pays a chain address; the hub pays out from the reserve.
    CustodialWithdraw {
        /// The custodial account.
        from: Address,
        /// The chain address.
        recipient: Address,
        /// How much.
        amount: Amount,
        /// The platform's idempotency key.
        transfer_id: B256,
    },
    /// A custodial account's whole balance moves into the channel of `user` (who registered a
    /// key) as a hub-signed credit, and the account is linked to that channel.
    ConvertToChannel {
        /// The custodial account.
        account: Address,
        /// The user's channel.
        user: Address,
        /// The platform's idempotency key.
        transfer_id: B256,
    },
}

/// What a command produced; the outer layer stores and delivers it.
// `Paid` is the common case on the hot path; boxing it would allocate per payment.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// A payment was applied.
    Paid {
        /// The hub's receipt to the payer.
        receipt: SignedReceipt,
        /// The payee's new credit (internal payments).
        credit: Option<SignedCredit>,
        /// The queued payout (external payments).
        payout: Option<Payout>,
    },
    /// A well-formed debit was refused for a reason of state and refunded: the debit is spent
    /// and the payer got this credit of its amount back. Nothing moved.
    Refunded {
        /// The rule the payment broke.
        refused: Error,
        /// The payer's refund.
        refund: SignedCredit,
    },
    /// The same payment was applied before, at this ledger sequence number.
    Duplicate {
        /// Sequence number of the first application.
        first_seq: u64,
    },
    /// A purchase was credited.
    Credited(SignedCredit),
    /// A withdrawal was co-signed.
    WithdrawalCoSigned {
        /// The withdrawal.
        withdrawal: Withdrawal,
        /// The hub's signature.
        hub_signature: Signature,
    },
    /// Reserve earmarked for an announced withdrawal.
    Earmarked,
    /// The proofs issued since the last seal were signed as one batch.
    Sealed {
        /// The Merkle root of their digests.
        root: B256,
        /// The hub's signature over `ProofBatch(root)`.
        signature: Signature,
        /// How many distinct proofs the batch holds.
        proofs: u32,
    },
    /// Payouts to send on chain, removed from the queue.
    PayoutBatch(Vec<Payout>),
    /// A chain event or block was applied; channel effects to carry out (disputes, settlements).
    Applied(Vec<(Address, Effect)>),
    /// A custodial account was opened.
    CustodialOpened,
    /// A custodial account was credited by a purchase.
    CustodialCredited,
    /// The results of a custodial batch, in order.
    CustodialTransfers(Vec<CustodialResult>),
    /// A custodial withdrawal was queued for the chain.
    CustodialPayoutQueued(Payout),
    /// A custodial balance moved into a channel.
    Converted {
        /// The channel's new credit.
        credit: SignedCredit,
        /// The amount moved.
        amount: Amount,
    },
}

/// A credit or receipt issued but not yet signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct UnsealedProof {
    digest: B256,
    /// Which proof it is (cheap to compare when the seal is filled into the outcomes).
    key: ProofKey,
}

/// What identifies a proof within a batch without hashing it: a credit by its channel and
/// nonce, a receipt by its payer and the debit's nonce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProofKey {
    Credit { user: Address, nonce: u64 },
    Receipt { payer: Address, debit_nonce: u64 },
}

impl ProofKey {
    fn of(proof: &ProofRef<'_>) -> ProofKey {
        match proof {
            ProofRef::Credit(c) => ProofKey::Credit { user: c.message.user, nonce: c.message.nonce },
            ProofRef::Receipt(r) => ProofKey::Receipt { payer: r.message.payer, debit_nonce: r.message.debit_nonce },
        }
    }
}

/// A batch just sealed by the live ledger: its tree and its proofs' digests in the order they
/// were issued, so the writer fills the seal into its outcomes without hashing any proof
/// again (a batch read back from the log goes through [`fill_proofs`], which rehashes).
#[derive(Clone, Debug)]
pub struct SealedBatch {
    tree: MerkleTree,
    signature: Signature,
    proofs: Vec<UnsealedProof>,
}

impl SealedBatch {
    /// Fills the signature and paths into `outcomes`: the outcomes of the commands of this
    /// batch, in order. Panics if they carry other proofs than the batch issued (a bug).
    pub fn fill(&self, outcomes: &mut [&mut Outcome]) {
        let mut issued = self.proofs.iter();
        for o in outcomes.iter_mut() {
            for_each_proof(o, &mut |mut p| {
                let u = issued.next().expect("an outcome carries a proof its batch did not issue");
                assert_eq!(ProofKey::of(&p), u.key, "outcomes walked in another order than issued");
                p.set(self.signature, self.tree.path(u.digest).expect("every issued digest is a leaf"));
            });
        }
        assert!(issued.next().is_none(), "a proof of the batch is missing from its outcomes");
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct PaymentRef {
    digest: B256,
    seq: u64,
}

/// The whole ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    /// Parameters.
    pub params: LedgerParams,
    #[serde(with = "sorted_map")]
    accounts: HashMap<Address, Account>,
    /// The contract's reserve, mirrored from confirmed events.
    pub reserve: Amount,
    /// Σ obligation(u) over all accounts, kept incrementally.
    pub obligations: u128,
    /// Reserve earmarked for an announced withdrawal.
    pub earmarked: Amount,
    queued: VecDeque<Payout>,
    /// Batches taken from the queue whose execution is not confirmed yet.
    in_flight: VecDeque<PayoutBatch>,
    /// Σ of queued and in-flight payouts (they will leave the reserve).
    pub payouts_pending: Amount,
    /// Idempotency keys of external payments, purchases and custodial movements (kept for
    /// good: nothing else stops a purchase's retry from applying twice, and payout batch ids
    /// derive from payment ids).
    #[serde(with = "sorted_map")]
    payments: HashMap<(Address, B256), PaymentRef>,
    /// Idempotency keys of the newest internal transfers (`params.transfer_ids_kept`).
    recent_transfers: RecentTransfers,
    /// Sequence number the next successful command gets.
    pub next_seq: u64,
    /// Highest confirmed block.
    pub block: u64,
    /// Position of the last chain event applied.
    pub chain_cursor: LogPosition,
    #[serde(with = "sorted_map")]
    custodial: HashMap<Address, CustodialAccount>,
    /// Σ custodial balances, kept incrementally.
    pub custodial_total: u128,
    /// Custodial deposits for an address that is no custodial account (owed, not attributed).
    pub unattributed: Amount,
    /// Proofs issued since the last seal. Every batch ends with a seal, so a snapshot (taken
    /// between batches) never holds any.
    #[serde(skip)]
    unsealed: Vec<UnsealedProof>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new(params: LedgerParams) -> Ledger {
        Ledger {
            params,
            accounts: HashMap::new(),
            reserve: Amount::ZERO,
            obligations: 0,
            earmarked: Amount::ZERO,
            queued: VecDeque::new(),
            in_flight: VecDeque::new(),
            payouts_pending: Amount::ZERO,
            payments: HashMap::new(),
            recent_transfers: RecentTransfers::default(),
            next_seq: 1,
            block: 0,
            chain_cursor: LogPosition::default(),
            custodial: HashMap::new(),
            custodial_total: 0,
            unattributed: Amount::ZERO,
            unsealed: Vec::new(),
        }
    }

    fn channel_params(&self) -> ChannelParams {
        ChannelParams {
            domain: self.params.domain,
            hub: self.params.hub,
            role: Role::Hub,
            max_withdrawal_expiry_blocks: self.params.max_withdrawal_expiry_blocks,
        }
    }

    /// The account of `user`, if its channel was ever opened.
    pub fn account(&self, user: &Address) -> Option<&Account> {
        self.accounts.get(user)
    }

    /// Number of accounts.
    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    /// All accounts (unordered).
    pub fn accounts(&self) -> impl Iterator<Item = (&Address, &Account)> {
        self.accounts.iter()
    }

    /// Payouts waiting to be batched.
    pub fn queued_payouts(&self) -> impl Iterator<Item = &Payout> {
        self.queued.iter()
    }

    /// Batches handed to the chain whose execution is not confirmed yet, oldest first: what the
    /// hub must (re)send until their `PayoutBatchExecuted` is confirmed.
    pub fn payout_batches_in_flight(&self) -> impl Iterator<Item = &PayoutBatch> {
        self.in_flight.iter()
    }

    /// The custodial account at `account`.
    pub fn custodial(&self, account: &Address) -> Option<&CustodialAccount> {
        self.custodial.get(account)
    }

    /// All custodial accounts (unordered).
    pub fn custodial_accounts(&self) -> impl Iterator<Item = &CustodialAccount> {
        self.custodial.values()
    }

    /// Everything the reserve must cover, given the three totals that commands change.
    fn committed(&self, obligations: u128, payouts_pending: u128, custodial_total: u128) -> u128 {
        obligations + payouts_pending + self.earmarked.0 + custodial_total + self.unattributed.0
    }

    /// Reserve not committed to anything: what purchases, payments and payouts may still use.
    pub fn free_reserve(&self) -> u128 {
        let committed = self.committed(self.obligations, self.payouts_pending.0, self.custodial_total);
        self.reserve.0.saturating_sub(committed)
    }

    /// True if the reserve covers every commitment (the rule of protocol §6.3).
    pub fn is_liquid(&self) -> bool {
        self.committed(self.obligations, self.payouts_pending.0, self.custodial_total) <= self.reserve.0
    }

    /// Recomputes every derived total from scratch and compares (pairs with the incremental updates).
    pub fn check_invariants(&self) {
        let obligations: u128 = self.accounts.values().map(Account::obligation).sum();
        assert_eq!(obligations, self.obligations, "obligations drifted");
        let queued: u128 = self.queued.iter().map(|p| p.amount.0).sum();
        let in_flight: u128 = self.in_flight.iter().map(PayoutBatch::total).sum();
        assert_eq!(
            queued + in_flight,
            self.payouts_pending.0,
            "pending payouts drifted from the queue and the batches"
        );
        for b in &self.in_flight {
            assert_eq!(b.id, payout_batch_id(&b.payouts), "an in-flight batch under another id");
        }
        for (user, acct) in &self.accounts {
            assert_eq!(*user, acct.channel.user, "account keyed by the wrong user");
            assert!(acct.channel.balance().is_ok(), "negative balance for {user}");
        }
        let custodial: u128 = self.custodial.values().map(|c| c.balance.0).sum();
        assert_eq!(custodial, self.custodial_total, "custodial total drifted");
        for (a, c) in &self.custodial {
            assert_eq!(*a, c.account, "custodial account keyed by the wrong address");
            assert!(!self.accounts.contains_key(a), "an address is both a channel and a custodial account");
        }
    }

    fn take_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    fn check_amount(&self, amount: Amount) -> Result<(), Error> {
        if amount.is_zero() {
            return Err(Error::AmountMustNotBeZero);
        }
        if amount > self.params.max_payment_amount {
            return Err(Error::AmountTooLarge);
        }
        Ok(())
    }

    /// Applies one command. On `Err` the ledger is unchanged.
    pub fn apply(&mut self, hub_key: &PrivateKey, command: Command) -> Result<Outcome, Error> {
        self.apply_checked(hub_key, command, None)
    }

    /// Like [`Ledger::apply`], with the signature check of a transfer's debit already done
    /// (on another thread). A `checked` that is not for this command's debit in this ledger's
    /// domain is ignored and the signature is checked here.
    pub fn apply_checked(
        &mut self,
        hub_key: &PrivateKey,
        command: Command,
        checked: Option<CheckedDebit>,
    ) -> Result<Outcome, Error> {
        assert_eq!(hub_key.address(), self.params.hub, "ledger driven with another key than the hub's");
        match command {
            Command::Transfer(debit) => {
                let checked = checked.filter(|c| *c.debit() == debit && *c.domain() == self.params.domain);
                self.transfer(debit, checked)
            }
            Command::Purchase { user, amount, purchase_id } => self.purchase(user, amount, purchase_id),
            Command::Withdraw { withdrawal, user_signature } => self.withdraw(hub_key, withdrawal, user_signature),
            Command::OpenCustodial { account, api_key_hash } => {
                if self.custodial.contains_key(&account) || self.accounts.contains_key(&account) {
                    return Err(Error::AccountAlreadyExists);
                }
                if account == Address::ZERO || account == self.params.hub {
                    return Err(Error::UserMustNotBeZeroOrHub);
                }
                if self.accounts.len() + self.custodial.len() >= self.params.max_accounts {
                    return Err(Error::TooManyAccounts);
                }
                let c = CustodialAccount {
                    account,
                    balance: Amount::ZERO,
                    deposited_on_chain: Amount::ZERO,
                    api_key_hash,
                    linked_channel: None,
                };
                self.custodial.insert(account, c);
                self.take_seq();
                Ok(Outcome::CustodialOpened)
            }
            Command::CustodialTransfers(batch) => {
                if batch.is_empty() || batch.len() > MAX_CUSTODIAL_BATCH {
                    return Err(Error::BatchSizeOutOfRange);
                }
                let seq = self.take_seq();
                let results = batch.into_iter().map(|t| self.custodial_transfer(seq, t)).collect();
                Ok(Outcome::CustodialTransfers(results))
            }
            Command::CustodialWithdraw { from, recipient, amount, transfer_id } => {
                self.custodial_withdraw(from, recipient, amount, transfer_id)
            }
            Command::ConvertToChannel { account, user, transfer_id } => {
                self.convert_to_channel(account, user, transfer_id)
            }
            Command::EarmarkReserveWithdrawal { amount } => {
                self.check_amount(amount)?;
                if !self.earmarked.is_zero() {
                    return Err(Error::ReserveWithdrawalPending);
                }
                if amount.0 > self.free_reserve() {
                    return Err(Error::ReserveInsufficient);
                }
                self.earmarked = amount;
                self.take_seq();
                Ok(Outcome::Earmarked)
            }
            Command::SealProofs => self.seal(hub_key),
            Command::TakePayoutBatch { max } => {
                let n = max.min(self.queued.len()).min(crate::contract::MAX_PAYOUT_BATCH);
                let batch: Vec<Payout> = self.queued.drain(..n).collect();
                if !batch.is_empty() {
                    let id = payout_batch_id(&batch);
                    self.in_flight.push_back(PayoutBatch { id, payouts: batch.clone(), taken_at_block: self.block });
                }
                self.take_seq();
                Ok(Outcome::PayoutBatch(batch))
            }
            Command::Chain { at, event } => {
                if at <= self.chain_cursor {
                    // Already applied (a re-delivery after a restart or a reorg-free rescan).
                    return Ok(Outcome::Applied(Vec::new()));
                }
                let out = self.chain_event(event)?;
                self.chain_cursor = at;
                Ok(out)
            }
            Command::Block(n) => {
                if n < self.block || n < self.chain_cursor.block {
                    return Err(Error::ChainEventInconsistent);
                }
                let params = self.channel_params();
                // Only channels with a hold or a close in progress react to blocks; the others'
                // `block` field may lag, which the channel machine allows.
                let mut busy: Vec<Address> = self
                    .accounts
                    .iter()
                    .filter(|(_, a)| {
                        a.channel.withdrawal_hold.is_some() || matches!(a.channel.status, Status::Closing { .. })
                    })
                    .map(|(u, _)| *u)
                    .collect();
                busy.sort_unstable();
                let mut effects = Vec::new();
                let mut updates = Vec::new();
                for user in busy {
                    let acct = &self.accounts[&user];
                    let (ch, eff) = step(&acct.channel, &params, Input::Block(n))?;
                    updates.push((user, ch));
                    effects.extend(eff.into_iter().map(|e| (user, e)));
                }
                for (user, ch) in updates {
                    self.replace_channel(user, ch, ChainFunds::default(), false);
                }
                self.block = n;
                self.take_seq();
                Ok(Outcome::Applied(effects))
            }
        }
    }

    /// Applies one command and, if it issued proofs, seals them at once and fills them in
    /// (a batch of one command: for tests and tools; the node seals once per group commit).
    /// Fills both ways, from the live batch and by rehashing as from the log, and asserts
    /// they agree.
    pub fn apply_sealed(&mut self, hub_key: &PrivateKey, command: Command) -> Result<Outcome, Error> {
        let mut outcome = self.apply(hub_key, command)?;
        if !self.unsealed.is_empty() {
            let mut rehashed = outcome.clone();
            let (sealed, batch) = self.seal_batch(hub_key)?;
            batch.fill(&mut [&mut outcome]);
            fill_proofs(&self.params.domain, &mut [&mut rehashed], &sealed)
                .expect("a batch's own proofs rebuild its root");
            assert_eq!(outcome, rehashed, "the live and the rehashed fill disagree");
        }
        Ok(outcome)
    }

    /// How many proofs wait for the next seal.
    pub fn unsealed_proofs(&self) -> usize {
        self.unsealed.len()
    }

    fn note_unsealed_credit(&mut self, credit: &SignedCredit) {
        let m = credit.message;
        self.unsealed.push(UnsealedProof {
            digest: m.digest(&self.params.domain),
            key: ProofKey::Credit { user: m.user, nonce: m.nonce },
        });
    }

    /// Signs the waiting proofs as one batch and gives each channel's stored newest credit its
    /// proof. The outcomes already returned get theirs from [`fill_proofs`].
    fn seal(&mut self, hub_key: &PrivateKey) -> Result<Outcome, Error> {
        self.seal_batch(hub_key).map(|(outcome, _)| outcome)
    }

    /// [`Command::SealProofs`], also returning the batch so the caller can fill the seal into
    /// the outcomes it holds with [`SealedBatch::fill`] (the same as applying the command).
    pub fn seal_batch(&mut self, hub_key: &PrivateKey) -> Result<(Outcome, SealedBatch), Error> {
        assert_eq!(hub_key.address(), self.params.hub, "ledger driven with another key than the hub's");
        if self.unsealed.is_empty() {
            return Err(Error::NothingToSeal);
        }
        let proofs = std::mem::take(&mut self.unsealed);
        let tree = MerkleTree::new(proofs.iter().map(|u| u.digest).collect());
        let root = tree.root();
        let signature = hub_key.sign(batch_digest(root, &self.params.domain));
        for u in &proofs {
            let ProofKey::Credit { user, nonce } = u.key else { continue };
            let acct = self.accounts.get_mut(&user).expect("a credit was issued to a known account");
            // A later credit of the same batch superseded this one in the channel.
            if let Some(c) = acct.channel.credit.as_mut().filter(|c| c.message.nonce == nonce) {
                c.signature = signature;
                c.path = tree.path(u.digest).expect("every unsealed digest is a leaf");
            }
        }
        self.take_seq();
        let count = u32::try_from(tree.leaf_count()).expect("batches are far below 2^32 leaves");
        Ok((Outcome::Sealed { root, signature, proofs: count }, SealedBatch { tree, signature, proofs }))
    }

    /// Replaces a channel (and optionally its chain funds), keeping `obligations` exact.
    fn replace_channel(&mut self, user: Address, channel: ChannelState, chain: ChainFunds, set_chain: bool) {
        let acct = self.accounts.get_mut(&user).expect("replace_channel on a known account");
        let before = acct.obligation();
        acct.channel = channel;
        if set_chain {
            acct.chain = chain;
        }
        let after = acct.obligation();
        self.obligations = self.obligations - before + after;
    }

    fn transfer(&mut self, debit: SignedDebit, checked: Option<CheckedDebit>) -> Result<Outcome, Error> {
        let m = debit.message;
        let key = (m.user, m.payment_id);
        let digest = checked.map_or_else(|| m.digest(&self.params.domain), |c| c.digest());
        if let Some(first_seq) = self.seen(&key, digest)? {
            return Ok(Outcome::Duplicate { first_seq });
        }
        if m.amount.is_zero() {
            return Err(Error::AmountMustNotBeZero);
        }
        if !self.accounts.contains_key(&m.user) {
            return Err(Error::UnknownAccount);
        }
        match self.pay(debit, checked, digest) {
            Err(refused) if is_refundable(refused) => self.refund(debit, checked, digest, refused),
            other => other,
        }
    }

    /// Refuses a well-formed debit for `refused` by applying it and crediting its amount back to
    /// the payer in the same step. If the debit breaks any rule besides the balance (a bad
    /// signature, nonce or total, a closing channel), nothing happens and that rule is the answer.
    fn refund(
        &mut self,
        debit: SignedDebit,
        checked: Option<CheckedDebit>,
        digest: B256,
        refused: Error,
    ) -> Result<Outcome, Error> {
        let m = debit.message;
        let params = self.channel_params();
        let payer = self.accounts.get(&m.user).expect("checked by the caller");
        // A refund that would overflow the credit total cannot be issued: refuse as is.
        let refund = HubSigned::unsealed(payer.channel.next_credit(m.amount).map_err(|_| refused)?);
        let input = match checked {
            Some(c) => Input::CheckedDebitRefunded { debit: c, refund: refund.clone() },
            None => Input::DebitRefunded { debit, refund: refund.clone() },
        };
        let (after, _) = step(&payer.channel, &params, input)?;
        // The claim does not change (the debit and the refund cancel), so neither does liquidity.
        let seq = self.take_seq();
        self.replace_channel(m.user, after, ChainFunds::default(), false);
        self.recent_transfers.insert((m.user, m.payment_id), PaymentRef { digest, seq }, self.params.transfer_ids_kept);
        self.note_unsealed_credit(&refund);
        Ok(Outcome::Refunded { refused, refund })
    }

    /// Applies a payment, or refuses it with nothing changed.
    fn pay(&mut self, debit: SignedDebit, checked: Option<CheckedDebit>, digest: B256) -> Result<Outcome, Error> {
        let m = debit.message;
        let key = (m.user, m.payment_id);
        self.check_amount(m.amount)?;
        let params = self.channel_params();
        let payer = self.accounts.get(&m.user).expect("checked by the caller");
        let kind = PaymentKind::from_u8(m.kind)?;
        let input = checked.map_or(Input::Debit(debit), Input::CheckedDebit);
        let (payer_after, _) = step(&payer.channel, &params, input)?;
        let payer_ob_before = payer.obligation();
        let payer_ob_after = Account { channel: payer_after.clone(), chain: payer.chain }.obligation();

        let to_custodial = kind == PaymentKind::Internal && self.custodial.contains_key(&m.recipient);
        let (payee_update, payout) = match kind {
            PaymentKind::Internal if to_custodial => (None, None),
            PaymentKind::Internal => {
                let payee = self.accounts.get(&m.recipient).ok_or(Error::UnknownAccount)?;
                if payee.channel.status != Status::Open {
                    return Err(Error::RecipientNotOpen);
                }
                let credit = payee.channel.next_credit(m.amount)?;
                let signed = HubSigned::unsealed(credit);
                let (payee_after, _) = step(&payee.channel, &params, Input::Credit(signed.clone()))?;
                let ob_before = payee.obligation();
                let ob_after = Account { channel: payee_after.clone(), chain: payee.chain }.obligation();
                (Some((payee_after, signed, ob_before, ob_after)), None)
            }
            PaymentKind::External => {
                if self.queued.len() >= self.params.max_queued_payouts {
                    return Err(Error::PayoutQueueFull);
                }
                (
                    None,
                    Some(Payout { payer: m.user, payment_id: m.payment_id, recipient: m.recipient, amount: m.amount }),
                )
            }
        };

        // Liquidity after the payment.
        let mut committed = self.obligations - payer_ob_before + payer_ob_after;
        if let Some((_, _, before, after)) = &payee_update {
            committed = committed - before + after;
        }
        let mut payouts_pending = self.payouts_pending;
        if let Some(p) = &payout {
            payouts_pending = payouts_pending.checked_add(p.amount)?;
        }
        let custodial_total = if to_custodial {
            self.custodial_total.checked_add(m.amount.0).ok_or(Error::AmountTooLarge)?
        } else {
            self.custodial_total
        };
        if self.committed(committed, payouts_pending.0, custodial_total) > self.reserve.0 {
            return Err(Error::ReserveInsufficient);
        }

        // Commit.
        let seq = self.take_seq();
        self.replace_channel(m.user, payer_after, ChainFunds::default(), false);
        let mut credit = None;
        if let Some((payee_after, signed, _, _)) = payee_update {
            self.replace_channel(m.recipient, payee_after, ChainFunds::default(), false);
            credit = Some(signed);
        }
        if let Some(p) = payout {
            self.queued.push_back(p);
            self.payouts_pending = payouts_pending;
        }
        if to_custodial {
            let c = self.custodial.get_mut(&m.recipient).expect("checked above");
            c.balance = c.balance.checked_add(m.amount)?;
            self.custodial_total = custodial_total;
        }
        if kind == PaymentKind::External {
            // Kept for good: a payout's on-chain batch id derives from its payment ids, so an id
            // must never be paid out twice.
            self.payments.insert(key, PaymentRef { digest, seq });
        } else {
            self.recent_transfers.insert(key, PaymentRef { digest, seq }, self.params.transfer_ids_kept);
        }
        let receipt = Receipt {
            payer: m.user,
            epoch: m.epoch,
            debit_nonce: m.nonce,
            payment_id: m.payment_id,
            debit_digest: digest,
        };
        let receipt = HubSigned::unsealed(receipt);
        self.unsealed.push(UnsealedProof {
            digest: receipt.message.digest(&self.params.domain),
            key: ProofKey::Receipt { payer: m.user, debit_nonce: m.nonce },
        });
        if let Some(c) = &credit {
            self.note_unsealed_credit(c);
        }
        Ok(Outcome::Paid { receipt, credit, payout })
    }

    fn purchase(&mut self, user: Address, amount: Amount, purchase_id: B256) -> Result<Outcome, Error> {
        // Purchases share the idempotency map, keyed by the hub's address and the purchase id.
        let key = (self.params.hub, purchase_id);
        let digest = purchase_digest(user, amount, purchase_id);
        if let Some(first_seq) = self.seen(&key, digest)? {
            return Ok(Outcome::Duplicate { first_seq });
        }
        self.check_amount(amount)?;
        if let Some(c) = self.custodial.get(&user) {
            let balance = c.balance.checked_add(amount)?;
            let custodial_total = self.custodial_total.checked_add(amount.0).ok_or(Error::AmountTooLarge)?;
            if self.committed(self.obligations, self.payouts_pending.0, custodial_total) > self.reserve.0 {
                return Err(Error::ReserveInsufficient);
            }
            let seq = self.take_seq();
            self.custodial.get_mut(&user).expect("present").balance = balance;
            self.custodial_total = custodial_total;
            self.payments.insert(key, PaymentRef { digest, seq });
            return Ok(Outcome::CustodialCredited);
        }
        let params = self.channel_params();
        let acct = self.accounts.get(&user).ok_or(Error::UnknownAccount)?;
        let credit = acct.channel.next_credit(amount)?;
        let signed = HubSigned::unsealed(credit);
        let (after, _) = step(&acct.channel, &params, Input::Credit(signed.clone()))?;
        let ob_after = Account { channel: after.clone(), chain: acct.chain }.obligation();
        let committed = self.obligations - acct.obligation() + ob_after;
        if self.committed(committed, self.payouts_pending.0, self.custodial_total) > self.reserve.0 {
            return Err(Error::ReserveInsufficient);
        }
        let seq = self.take_seq();
        self.replace_channel(user, after, ChainFunds::default(), false);
        self.payments.insert(key, PaymentRef { digest, seq });
        self.note_unsealed_credit(&signed);
        Ok(Outcome::Credited(signed))
    }

    fn withdraw(&mut self, hub_key: &PrivateKey, w: Withdrawal, user_signature: Signature) -> Result<Outcome, Error> {
        let params = self.channel_params();
        let acct = self.accounts.get(&w.user).ok_or(Error::UnknownAccount)?;
        let amount = w.cumulative_withdrawn.checked_sub_or(acct.channel.withdrawn, Error::WithdrawalMustIncrease)?;
        self.check_amount(amount)?;
        let input = Input::WithdrawalRequest { withdrawal: w, user_signature, block: self.block };
        let (after, _) = step(&acct.channel, &params, input)?;
        // A hold changes no obligation (obligations use the on-chain claim). If executed, the part
        // beyond the channel's funds comes from the reserve, and the obligation drops by as much.
        let from_reserve = amount.0.saturating_sub(acct.funds());
        if from_reserve > self.reserve.0 {
            return Err(Error::ReserveInsufficient);
        }
        self.take_seq();
        self.replace_channel(w.user, after, ChainFunds::default(), false);
        let hub_signature = w.sign(&self.params.domain, hub_key);
        Ok(Outcome::WithdrawalCoSigned { withdrawal: w, hub_signature })
    }

    fn chain_event(&mut self, ev: ChainEvent) -> Result<Outcome, Error> {
        let params = self.channel_params();
        let mut effects = Vec::new();
        let mut on_channel = |ledger: &mut Ledger, user: Address, input: Input, chain: Option<ChainFunds>| {
            let acct = ledger.accounts.get(&user).ok_or(Error::ChainEventInconsistent)?;
            let (ch, eff) = step(&acct.channel, &params, input)?;
            let set = chain.is_some();
            ledger.replace_channel(user, ch, chain.unwrap_or_default(), set);
            effects.extend(eff.into_iter().map(|e| (user, e)));
            Ok::<(), Error>(())
        };
        // Events of a channel the ledger does not track (opened by its user alone, never funded)
        // concern no one the hub owes anything: they are skipped (a deposit starts tracking).
        let untracked = |l: &Ledger, user: &Address| !l.accounts.contains_key(user);
        match ev {
            ChainEvent::ChannelOpened { user, epoch, opened_by } => match self.accounts.get(&user) {
                None if opened_by != self.params.hub => {} // a stranger's empty channel: not tracked
                None => self.track(user, epoch, true)?,
                Some(acct) if acct.channel.epoch == epoch => {} // replayed event: no-op
                Some(_) => on_channel(self, user, Input::ChainOpened { epoch }, Some(ChainFunds::default()))?,
            },
            ChainEvent::ChannelRegistered { user, epoch } => match self.accounts.get(&user) {
                None => self.track(user, epoch, true)?,
                Some(acct) if acct.channel.epoch == epoch => {} // already tracked
                Some(_) => return Err(Error::ChainEventInconsistent),
            },
            ChainEvent::Deposited { user, epoch, total_deposited } => {
                if untracked(self, &user) {
                    // Money is in the channel: follow it from now on, whatever the account count
                    // (a confirmed deposit is never refused; it costs the depositor the tokens).
                    self.track(user, epoch, false)?;
                }
                on_channel(self, user, Input::ChainDeposited { epoch, total_deposited }, None)?
            }
            ChainEvent::ExitStarted { user, .. }
            | ChainEvent::DebitSubmitted { user, .. }
            | ChainEvent::CreditSubmitted { user, .. }
            | ChainEvent::Settled { user, .. }
                if untracked(self, &user) => {}
            ChainEvent::Withdrawn { user, epoch, total_withdrawn, from_reserve } => {
                let acct = self.accounts.get(&user).ok_or(Error::ChainEventInconsistent)?;
                if total_withdrawn <= acct.channel.withdrawn {
                    return Ok(Outcome::Applied(Vec::new())); // replay
                }
                let mut chain = acct.chain;
                chain.advanced_from_reserve = chain.advanced_from_reserve.checked_add(from_reserve)?;
                let reserve = self.reserve.checked_sub_or(from_reserve, Error::ChainEventInconsistent)?;
                on_channel(self, user, Input::ChainWithdrawn { epoch, total_withdrawn }, Some(chain))?;
                self.reserve = reserve;
            }
            ChainEvent::DebitRealized { user, epoch, moved, reserve_after } => {
                let acct = self.accounts.get(&user).ok_or(Error::ChainEventInconsistent)?;
                if acct.channel.epoch != epoch {
                    return Err(Error::ChainEventInconsistent);
                }
                let mut chain = acct.chain;
                chain.realized_debit = chain.realized_debit.checked_add(moved)?;
                if self.reserve.checked_add(moved)? != reserve_after {
                    return Err(Error::ChainEventInconsistent);
                }
                let ch = acct.channel.clone();
                self.replace_channel(user, ch, chain, true);
                self.reserve = reserve_after;
            }
            ChainEvent::DebitSubmitted { user, epoch, cumulative } => {
                on_channel(self, user, Input::ChainDebitSubmitted { epoch, cumulative }, None)?
            }
            ChainEvent::CreditSubmitted { user, epoch, cumulative } => {
                on_channel(self, user, Input::ChainCreditSubmitted { epoch, cumulative }, None)?
            }
            ChainEvent::ExitStarted { user, epoch, settle_block } => {
                on_channel(self, user, Input::ChainExitStarted { epoch, settle_block }, None)?
            }
            ChainEvent::Settled { user, epoch, paid, reserve_after } => {
                on_channel(self, user, Input::ChainSettled { epoch, paid }, Some(ChainFunds::default()))?;
                self.reserve = reserve_after;
            }
            ChainEvent::ReserveDeposited { reserve_after } => {
                if reserve_after < self.reserve {
                    return Err(Error::ChainEventInconsistent);
                }
                self.reserve = reserve_after;
            }
            ChainEvent::ExcessToReserve { amount, reserve_after } => {
                if self.reserve.checked_add(amount)? != reserve_after {
                    return Err(Error::ChainEventInconsistent);
                }
                self.reserve = reserve_after;
            }
            ChainEvent::CustodialDeposited { account, amount, reserve_after } => {
                if self.reserve.checked_add(amount)? != reserve_after {
                    return Err(Error::ChainEventInconsistent);
                }
                match self.custodial.get_mut(&account) {
                    Some(c) => {
                        c.balance = c.balance.checked_add(amount)?;
                        c.deposited_on_chain = c.deposited_on_chain.checked_add(amount)?;
                        self.custodial_total =
                            self.custodial_total.checked_add(amount.0).ok_or(Error::ChainEventInconsistent)?;
                    }
                    // Owed to someone the ledger cannot name yet: kept apart, never spendable,
                    // reported by reconciliation.
                    None => self.unattributed = self.unattributed.checked_add(amount)?,
                }
                self.reserve = reserve_after;
            }
            ChainEvent::ReserveWithdrawn { amount, reserve_after } => {
                if self.reserve.checked_sub_or(amount, Error::ChainEventInconsistent)? != reserve_after {
                    return Err(Error::ChainEventInconsistent);
                }
                self.reserve = reserve_after;
                self.earmarked = Amount::ZERO;
            }
            ChainEvent::PayoutBatchExecuted { batch_id, total, reserve_after } => {
                if self.reserve.checked_sub_or(total, Error::ChainEventInconsistent)? != reserve_after {
                    return Err(Error::ChainEventInconsistent);
                }
                // Only a batch this ledger handed out can execute (the hub key sends no other).
                let at = self.in_flight.iter().position(|b| b.id == batch_id).ok_or(Error::ChainEventInconsistent)?;
                if self.in_flight[at].total() != total.0 {
                    return Err(Error::ChainEventInconsistent);
                }
                self.payouts_pending = self.payouts_pending.checked_sub_or(total, Error::ChainEventInconsistent)?;
                self.in_flight.remove(at);
                self.reserve = reserve_after;
            }
        }
        self.take_seq();
        Ok(Outcome::Applied(effects))
    }
}

impl Ledger {
    /// Starts tracking the channel of `user` at `epoch` (open, empty). A registration counts
    /// against `max_accounts`; a deposit into a channel its user opened alone does not.
    fn track(&mut self, user: Address, epoch: u64, registration: bool) -> Result<(), Error> {
        if registration && self.accounts.len() >= self.params.max_accounts {
            return Err(Error::TooManyAccounts);
        }
        if self.custodial.contains_key(&user) {
            return Err(Error::ChainEventInconsistent);
        }
        let mut channel = ChannelState::opened(user, epoch);
        channel.block = self.block;
        self.accounts.insert(user, Account { channel, chain: ChainFunds::default() });
        Ok(())
    }

    /// The seq of the payment, purchase or custodial movement `id` of `owner`, while the
    /// ledger remembers it (internal transfers: the newest `params.transfer_ids_kept`).
    pub fn payment_seq(&self, owner: &Address, id: &B256) -> Option<u64> {
        let key = (*owner, *id);
        self.payments.get(&key).or_else(|| self.recent_transfers.get(&key)).map(|r| r.seq)
    }

    /// Checks an idempotency key: `Some(first_seq)` for a repeat, an error for a reuse.
    fn seen(&self, key: &(Address, B256), digest: B256) -> Result<Option<u64>, Error> {
        match self.payments.get(key).or_else(|| self.recent_transfers.get(key)) {
            Some(prev) if prev.digest == digest => Ok(Some(prev.seq)),
            Some(_) => Err(Error::PaymentIdReused),
            None => Ok(None),
        }
    }

    fn custodial_transfer(&mut self, seq: u64, t: CustodialTransfer) -> CustodialResult {
        match self.try_custodial_transfer(seq, t) {
            Ok(r) => r,
            Err(error) => CustodialResult::Rejected { error },
        }
    }

    fn try_custodial_transfer(&mut self, seq: u64, t: CustodialTransfer) -> Result<CustodialResult, Error> {
        let key = (t.from, t.transfer_id);
        let digest = custodial_digest(b'T', t.from, t.to, t.amount, t.transfer_id);
        if let Some(first_seq) = self.seen(&key, digest)? {
            return Ok(CustodialResult::Duplicate { first_seq });
        }
        self.check_amount(t.amount)?;
        if t.to == t.from {
            return Err(Error::RecipientMustNotBeSender);
        }
        let from = self.custodial.get(&t.from).ok_or(Error::NotCustodial)?;
        let from_after = from.balance.checked_sub_or(t.amount, Error::InsufficientBalance)?;
        let credit = if self.custodial.contains_key(&t.to) {
            let to = self.custodial.get_mut(&t.to).expect("present");
            to.balance = to.balance.checked_add(t.amount)?;
            None
        } else {
            Some(self.credit_channel(t.to, t.amount, t.amount.0)?)
        };
        self.custodial.get_mut(&t.from).expect("present").balance = from_after;
        if credit.is_some() {
            self.custodial_total -= t.amount.0;
        }
        self.payments.insert(key, PaymentRef { digest, seq });
        Ok(CustodialResult::Moved { credit })
    }

    /// Credits `amount` into the open channel of `user`, paid for by `released` of custodial
    /// balance (which the caller removes). Checks liquidity; on error nothing changed.
    fn credit_channel(&mut self, user: Address, amount: Amount, released: u128) -> Result<SignedCredit, Error> {
        let params = self.channel_params();
        let acct = self.accounts.get(&user).ok_or(Error::UnknownAccount)?;
        if acct.channel.status != Status::Open {
            return Err(Error::RecipientNotOpen);
        }
        let credit = acct.channel.next_credit(amount)?;
        let signed = HubSigned::unsealed(credit);
        let (after, _) = step(&acct.channel, &params, Input::Credit(signed.clone()))?;
        let ob_after = Account { channel: after.clone(), chain: acct.chain }.obligation();
        let obligations = self.obligations - acct.obligation() + ob_after;
        if self.committed(obligations, self.payouts_pending.0, self.custodial_total - released) > self.reserve.0 {
            return Err(Error::ReserveInsufficient);
        }
        self.replace_channel(user, after, ChainFunds::default(), false);
        self.note_unsealed_credit(&signed);
        Ok(signed)
    }

    fn custodial_withdraw(
        &mut self,
        from: Address,
        recipient: Address,
        amount: Amount,
        transfer_id: B256,
    ) -> Result<Outcome, Error> {
        let key = (from, transfer_id);
        let digest = custodial_digest(b'W', from, recipient, amount, transfer_id);
        if let Some(first_seq) = self.seen(&key, digest)? {
            return Ok(Outcome::Duplicate { first_seq });
        }
        self.check_amount(amount)?;
        if recipient == Address::ZERO {
            return Err(Error::RecipientMustNotBeZero);
        }
        let c = self.custodial.get(&from).ok_or(Error::NotCustodial)?;
        let balance = c.balance.checked_sub_or(amount, Error::InsufficientBalance)?;
        if self.queued.len() >= self.params.max_queued_payouts {
            return Err(Error::PayoutQueueFull);
        }
        let payouts_pending = self.payouts_pending.checked_add(amount)?;
        let seq = self.take_seq();
        self.custodial.get_mut(&from).expect("present").balance = balance;
        self.custodial_total -= amount.0;
        let payout = Payout { payer: from, payment_id: transfer_id, recipient, amount };
        self.queued.push_back(payout);
        self.payouts_pending = payouts_pending;
        self.payments.insert(key, PaymentRef { digest, seq });
        Ok(Outcome::CustodialPayoutQueued(payout))
    }

    fn convert_to_channel(&mut self, account: Address, user: Address, transfer_id: B256) -> Result<Outcome, Error> {
        let c = *self.custodial.get(&account).ok_or(Error::NotCustodial)?;
        let key = (account, transfer_id);
        let digest = custodial_digest(b'C', account, user, c.balance, transfer_id);
        if let Some(first_seq) = self.seen(&key, digest)? {
            return Ok(Outcome::Duplicate { first_seq });
        }
        if c.balance.is_zero() {
            return Err(Error::AmountMustNotBeZero);
        }
        let credit = self.credit_channel(user, c.balance, c.balance.0)?;
        let seq = self.take_seq();
        self.custodial_total -= c.balance.0;
        let entry = self.custodial.get_mut(&account).expect("present");
        entry.balance = Amount::ZERO;
        entry.linked_channel = Some(user);
        self.payments.insert(key, PaymentRef { digest, seq });
        Ok(Outcome::Converted { credit, amount: c.balance })
    }
}

/// The refusals of a well-formed debit that are refunded (final): the state did not allow it.
/// Any other refusal (a bad signature, nonce or total, an unknown payer, a closing channel, a
/// reused payment id) changes nothing and leaves the debit unused.
fn is_refundable(refused: Error) -> bool {
    matches!(
        refused,
        Error::InsufficientBalance
            | Error::ReserveInsufficient
            | Error::AmountTooLarge
            | Error::UnknownAccount
            | Error::RecipientNotOpen
            | Error::PayoutQueueFull
    )
}

/// The idempotency digest of a custodial movement.
fn custodial_digest(kind: u8, from: Address, to: Address, amount: Amount, id: B256) -> B256 {
    let mut buf = Vec::with_capacity(1 + 20 + 20 + 16 + 32);
    buf.push(kind);
    buf.extend_from_slice(from.as_slice());
    buf.extend_from_slice(to.as_slice());
    buf.extend_from_slice(&amount.0.to_be_bytes());
    buf.extend_from_slice(id.as_slice());
    alloy_primitives::keccak256(buf)
}

/// The idempotency digest of a purchase.
fn purchase_digest(user: Address, amount: Amount, purchase_id: B256) -> B256 {
    let mut buf = Vec::with_capacity(20 + 16 + 32);
    buf.extend_from_slice(user.as_slice());
    buf.extend_from_slice(&amount.0.to_be_bytes());
    buf.extend_from_slice(purchase_id.as_slice());
    alloy_primitives::keccak256(buf)
}

/// Serializes a map as a list of entries sorted by key, so snapshots are deterministic and keys
/// need not be strings.
/// The idempotency keys of the newest signed transfers, oldest first, at most a given number.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct RecentTransfers {
    order: VecDeque<(Address, B256)>,
    by_key: HashMap<(Address, B256), PaymentRef>,
}

impl RecentTransfers {
    fn get(&self, key: &(Address, B256)) -> Option<&PaymentRef> {
        self.by_key.get(key)
    }

    /// Remembers `key` (new: the caller checked it is unseen), forgetting the oldest beyond `kept`.
    fn insert(&mut self, key: (Address, B256), at: PaymentRef, kept: usize) {
        let fresh = self.by_key.insert(key, at).is_none();
        assert!(fresh, "a transfer id was remembered twice");
        self.order.push_back(key);
        while self.order.len() > kept {
            let old = self.order.pop_front().expect("longer than kept");
            self.by_key.remove(&old).expect("every remembered key is in the map");
        }
        assert_eq!(self.order.len(), self.by_key.len(), "transfer-id window and map disagree");
    }
}

// In a snapshot: the keys in order with their references (the map is rebuilt on load).
impl Serialize for RecentTransfers {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.order.len()))?;
        for key in &self.order {
            seq.serialize_element(&(key, &self.by_key[key]))?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for RecentTransfers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries: Vec<((Address, B256), PaymentRef)> = Vec::deserialize(d)?;
        let mut r = RecentTransfers { order: VecDeque::with_capacity(entries.len()), by_key: HashMap::new() };
        r.by_key.reserve(entries.len());
        for (key, at) in entries {
            if r.by_key.insert(key, at).is_some() {
                return Err(serde::de::Error::custom("a transfer id appears twice in the snapshot"));
            }
            r.order.push_back(key);
        }
        Ok(r)
    }
}

mod sorted_map {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::HashMap;
    use std::hash::Hash;

    pub fn serialize<K, V, S>(map: &HashMap<K, V>, s: S) -> Result<S::Ok, S::Error>
    where
        K: Serialize + Ord,
        V: Serialize,
        S: Serializer,
    {
        let mut entries: Vec<(&K, &V)> = map.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        entries.serialize(s)
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<HashMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Eq + Hash,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        let entries: Vec<(K, V)> = Vec::deserialize(d)?;
        Ok(entries.into_iter().collect())
    }
}
