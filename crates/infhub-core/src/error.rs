//! Expected errors, each named after the rule that was broken.
//!
//! Variants that the contract also enforces carry the same name as the contract's custom
//! error (`NonceMustIncrease` here, `error NonceMustIncrease()` in `InfHub.sol`), so shared
//! test vectors can compare verdicts by name. Bugs are not errors: they are `assert!`s.

use serde::{Deserialize, Serialize};

/// Why an input was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Error {
    // ---- judged identically by the contract
    /// The constructor's hub address is zero.
    #[error("hub must not be zero")]
    HubMustNotBeZero,
    /// The constructor's challenge period is outside the allowed range.
    #[error("challenge period out of range")]
    ChallengePeriodOutOfRange,
    /// The reserve notice must be at least twice the challenge period: time to see the
    /// announcement and react, then the whole challenge period.
    #[error("reserve notice must be at least twice the challenge period")]
    ReserveNoticeTooShort,
    /// The channel is open or closing; it cannot be opened again yet.
    #[error("channel is already open")]
    ChannelAlreadyOpen,
    /// The operation needs an open channel.
    #[error("channel is not open")]
    ChannelNotOpen,
    /// The operation needs a closing channel (in or after its challenge period).
    #[error("channel is not closing")]
    ChannelNotClosing,
    /// Amounts must be positive.
    #[error("amount must not be zero")]
    AmountMustNotBeZero,
    /// An amount or running total would exceed uint128.
    #[error("amount too large")]
    AmountTooLarge,
    /// The message names another epoch of the channel than the current one.
    #[error("epoch mismatch: the message is for another epoch of this channel")]
    EpochMismatch,
    /// The message names another user than the channel's owner.
    #[error("user mismatch: the message is for another channel")]
    UserMismatch,
    /// A proof replaces the one the contract holds only with a higher running total, or the
    /// same total and a higher nonce (so a signer can only raise what works against itself).
    #[error("proof must supersede the stored one: a higher total, or the same total with a higher nonce")]
    ProofMustSupersede,
    /// The cooperative withdrawal's running total is not above the amount already withdrawn.
    #[error("cumulative withdrawal must increase")]
    WithdrawalMustIncrease,
    /// The authorization's expiry block has passed.
    #[error("authorization expired")]
    AuthorizationExpired,
    /// The signature is malformed: wrong length, high s, bad v, or not a curve point.
    #[error("invalid signature")]
    InvalidSignature,
    /// The signature is well formed but by another key than required.
    #[error("signed by the wrong key")]
    WrongSigner,
    /// Proofs can no longer be submitted: the challenge period has ended.
    #[error("challenge period is over")]
    ChallengePeriodOver,
    /// Settlement must wait for the end of the challenge period.
    #[error("challenge period is not over")]
    ChallengePeriodNotOver,
    /// The hub's reserve cannot back this.
    #[error("reserve insufficient")]
    ReserveInsufficient,
    /// With nonce 0 ("no proof") the signature and total must be empty.
    #[error("an absent proof must be empty")]
    ProofMustBeEmpty,
    /// Only the hub may do this.
    #[error("only the hub may do this")]
    OnlyHub,
    /// Only the user or the hub may do this.
    #[error("only the user or the hub may do this")]
    OnlyUserOrHub,
    /// A channel cannot belong to the zero address or to the hub itself.
    #[error("user must not be zero or the hub")]
    UserMustNotBeZeroOrHub,
    /// No reserve withdrawal has been announced.
    #[error("no reserve withdrawal pending")]
    NoReserveWithdrawalPending,
    /// A reserve withdrawal is already announced.
    #[error("a reserve withdrawal is already pending")]
    ReserveWithdrawalPending,
    /// The reserve withdrawal's notice period has not ended.
    #[error("reserve notice period is not over")]
    ReserveNoticeNotOver,
    /// The announced reserve withdrawal was not executed in time; announce it again.
    #[error("reserve withdrawal expired")]
    ReserveWithdrawalExpired,
    /// More excess tokens asked for than the contract holds beyond its books.
    #[error("excess insufficient")]
    ExcessInsufficient,
    /// A payout batch has more recipients than allowed.
    #[error("payout batch too large")]
    BatchTooLarge,
    /// A payout batch has no recipients.
    #[error("payout batch empty")]
    BatchEmpty,
    /// The token delivered a different amount than requested (fee-on-transfer tokens are refused).
    #[error("token transfer mismatch")]
    TokenTransferMismatch,
    /// Recipients and amounts differ in length.
    #[error("payout batch length mismatch")]
    BatchLengthMismatch,
    /// This payout batch id was already paid.
    #[error("payout batch already executed")]
    PayoutBatchAlreadyExecuted,
    /// A recipient must not be the zero address.
    #[error("recipient must not be zero")]
    RecipientMustNotBeZero,
    /// A tower-fee offer can be used only by the tower it names (spec 5.10a).
    #[error("only the tower named in the offer may use it")]
    OnlyTower,
    /// A tower's share of the gain is at most the whole gain (10,000 basis points).
    #[error("tower fee share above 10000 basis points")]
    TowerFeeShareTooLarge,
    /// As many towers as the contract records fees for already earned one in this close.
    #[error("no room for another tower's fee in this close")]
    TowerFeeSlotsFull,
    /// A checkpoint's id is not the next one, or its ledger position, block or inflows go back.
    #[error("checkpoint out of order")]
    CheckpointOutOfOrder,
    /// A checkpoint names a block not yet past, or more inflows than the contract has seen.
    #[error("checkpoint from the future")]
    CheckpointFromTheFuture,
    /// The reserve does not cover a checkpoint's liability, the announced reserve withdrawal and
    /// the liability-bearing inflows since its block.
    #[error("checkpoint insolvent")]
    CheckpointInsolvent,
    /// A checkpoint path is longer than the deepest tree (spec 5.16).
    #[error("checkpoint path too long")]
    PathTooLong,
    /// A checkpoint path's index has bits above its depth.
    #[error("checkpoint path index out of range")]
    PathIndexOutOfRange,
    /// A sibling on a checkpoint path claims a sum no subtree of its height can hold.
    #[error("checkpoint sibling sum out of range")]
    SumOutOfRange,
    /// A checkpoint path leads to another root (a tampered leaf, sibling or sum).
    #[error("checkpoint path does not lead to the root")]
    RootMismatch,
    /// A complaint proved the hub's checkpoint wrong: no more checkpoints, payouts or reserve
    /// leaving the contract (spec 5.16).
    #[error("the hub is halted")]
    HubHalted,
    /// The complaint proves nothing: the leaf and the credit (or the chain) do not contradict
    /// each other, or the challenged leaf states no debit.
    #[error("complaint unfounded")]
    ComplaintUnfounded,
    /// A debit challenge is open for this account already, or it names a checkpoint not newer
    /// than the account's last challenged one (spec 5.16).
    #[error("debit challenge out of order")]
    DebitChallengeOutOfOrder,
    /// No debit challenge is open for this account.
    #[error("no debit challenge open")]
    NoDebitChallenge,
    /// The answer's signed debit total is below the total the challenged leaf states.
    #[error("the answer's debit does not cover the challenged total")]
    AnswerMustCoverDebit,

    // ---- off-chain rules (the hub's and wallet's checks; the contract does not judge these)
    /// Off chain, a proof's nonce must be above the newest one already seen.
    #[error("nonce must increase")]
    NonceMustIncrease,
    /// Off chain, proofs are strictly sequential: nonce must be exactly previous + 1.
    #[error("nonce must be the previous nonce plus one")]
    NonceMustBeNext,
    /// The new running total must equal the previous one plus the amount.
    #[error("cumulative total must equal previous total plus amount")]
    CumulativeMismatch,
    /// A newer credit must raise the running total.
    #[error("cumulative credit must increase")]
    CreditMustIncrease,
    /// A refund must give back at least the refused debit's amount.
    #[error("the refund does not give back the refused debit's amount")]
    RefundMustCoverDebit,
    /// The balance does not cover the amount.
    #[error("insufficient balance")]
    InsufficientBalance,
    /// A lock's scalar must be in `1..n` (n the secp256k1 group order); also a step upstream
    /// that reaches 0.
    #[error("scalar out of range: a lock's scalar must be in 1..n")]
    ScalarOutOfRange,
    /// The point a hop is asked to lock is not the upstream lock's point tweaked by the hop's
    /// tweak (a skipped or forged hop).
    #[error("the point chain is broken: the downstream point is not the upstream point plus this hop's tweak")]
    PointChainBroken,
    /// The bytes are not a point of secp256k1.
    #[error("not a point of secp256k1")]
    PointInvalid,
    /// A route step sealed to this hub does not open with its key for this lock (sealed to
    /// another hub, for another payment, altered, or too long; spec §5.23d).
    #[error("the route step sealed to this hub does not open with its key for this lock")]
    StepUnreadable,
    /// A quoted route's steps do not chain from the payer's hub to the payee's, a step's key is
    /// not its hub's, or it is too long (spec §5.23d).
    #[error("the quoted route's steps do not chain from the payer's hub to the payee's, or a key is not its hub's")]
    RoutePlanInvalid,
    /// A channel direction holds at most `MAX_PENDING_LOCKS` pending locks.
    #[error("too many pending locks in this channel direction")]
    TooManyPendingLocks,
    /// A lock id is already used in this channel direction.
    #[error("lock id reused")]
    LockIdReused,
    /// No pending lock has this id.
    #[error("unknown lock")]
    UnknownLock,
    /// The lock's expiry block has passed: it can no longer be settled, only dropped.
    #[error("the lock has expired")]
    LockExpired,
    /// The scalar does not open the lock's point.
    #[error("the scalar does not open this lock's point")]
    ScalarDoesNotOpenLock,
    /// A drop names a lock whose expiry block is not yet past at this end's confirmed block.
    #[error("the lock has not expired yet")]
    LockNotExpired,
    /// A proof's `lockedAmount` or `locksRoot` is not its direction's pending locks after the
    /// change it carries (spec §5.17a).
    #[error("the proof's locked amount or locks root does not match the pending locks")]
    LocksRootMismatch,
    /// A debit's kind does not match the lock change it carries (or a payment carries a lock kind).
    #[error("the debit's kind does not match its lock change")]
    LockKindMismatch,
    /// A lock debit's amount or payment id is not its lock's amount and id.
    #[error("the debit's amount or payment id does not match its lock")]
    LockMismatch,
    /// The lock's scalar is known to its receiver (revealed before the expiry): it is owed and
    /// can only be settled, not dropped.
    #[error("the lock's scalar was revealed: it can only be settled")]
    LockRevealed,
    /// The lock expires too soon to leave the next hop a reveal margin before it.
    #[error("the lock expires too soon for the next hop")]
    ExpiryTooSoon,
    /// The operator froze this account (spec §5.20): it neither pays nor is paid off chain
    /// until unfrozen (its exit on chain is unaffected).
    #[error("the account is frozen by the operator")]
    AccountFrozen,
    /// A lock debit must be paid to the hub, the receiver of the user's locks.
    #[error("a lock debit's recipient must be the hub")]
    RecipientMustBeHub,
    /// A link announcement no newer than the one held for the same direction.
    #[error("the link announcement is not newer than the one held")]
    AnnouncementStale,
    /// A link announcement to itself, with a proportional fee above the whole, or with its
    /// minimum above its maximum.
    #[error("the link announcement is malformed")]
    AnnouncementInvalid,
    /// The routing graph holds `MAX_LINKS` link directions already.
    #[error("too many links in the routing graph")]
    TooManyLinks,
    /// A user address is not `0x<40 hex digits>@<host>`.
    #[error("a user address is 0x<address>@<hub host>")]
    UserAddressMalformed,
    /// The invoice's expiry has passed.
    #[error("the invoice has expired")]
    InvoiceExpired,
    /// No path, or split of paths, carries the amount to the payee's hub.
    #[error("no route carries the amount to the payee's hub")]
    NoRoute,
    /// This lock is already registered through this proof.
    #[error("the lock is already registered through this proof")]
    LockAlreadyRegistered,
    /// A custodial key rotation to the key hash the account already has.
    #[error("the new API key is the current one")]
    CustodialKeyUnchanged,
    /// The lock is not under the proof's `locksRoot` by the path given.
    #[error("the lock is not under the proof's locks root")]
    LockNotUnderRoot,
    /// This registration was already resolved by an unlock.
    #[error("the lock is already resolved")]
    LockAlreadyResolved,
    /// The lock is neither revealed by its expiry nor past its expiry yet.
    #[error("the lock is not resolved yet: not revealed and not expired")]
    LockNotResolved,
    /// The close this registration belongs to has not settled yet.
    #[error("the channel has not settled yet")]
    ChannelNotSettled,
    /// The settlement module needs the chain's point registry.
    #[error("the point registry must not be the zero address")]
    RegistryMustNotBeZero,
    /// The settlement module was made for another token, hub or period than the hub contract.
    #[error("the settlement module was deployed for other parameters")]
    SettlementModuleMismatch,
    /// The payment kind byte is not one this version knows.
    #[error("unknown payment kind")]
    UnknownPaymentKind,
    /// A payment to oneself is pointless and refused.
    #[error("recipient must not be the sender")]
    RecipientMustNotBeSender,
    /// The expiry block must lie in the future.
    #[error("expiry must be in the future")]
    ExpiryMustBeInFuture,
    /// The expiry block is further away than the hub allows.
    #[error("expiry too far in the future")]
    ExpiryTooFar,
    /// A withdrawal co-signed earlier is still usable; wait for it or for its expiry.
    #[error("a co-signed withdrawal is still pending")]
    WithdrawalPending,
    /// No account (channel) exists for this address.
    #[error("unknown account")]
    UnknownAccount,
    /// The recipient's channel is closing or settled; it cannot receive payments.
    #[error("recipient's channel is not open")]
    RecipientNotOpen,
    /// This payment id was already used for a different payment.
    #[error("payment id already used for a different payment")]
    PaymentIdReused,
    /// The external payout queue is full; retry after the next batch.
    #[error("payout queue full")]
    PayoutQueueFull,
    /// The ledger holds as many accounts as it is configured for.
    #[error("too many accounts")]
    TooManyAccounts,
    /// A custodial account (or a channel) already exists at this address.
    #[error("account already exists")]
    AccountAlreadyExists,
    /// The operation needs a custodial account and this address is not one.
    #[error("not a custodial account")]
    NotCustodial,
    /// A batch is empty or longer than the ledger accepts.
    #[error("batch size out of range")]
    BatchSizeOutOfRange,
    /// A chain event contradicts the local state (e.g. a running total out of order).
    #[error("chain event inconsistent with local state")]
    ChainEventInconsistent,
    /// A watchtower watches as many users as it is configured for.
    #[error("the tower watches as many users as it may")]
    TowerFull,
    /// A user sent a watchtower more updates than its per-user rate allows; retry later.
    #[error("too many updates for this user; retry later")]
    TowerQuotaExceeded,
    /// A seal was asked for with no proof waiting to be signed.
    #[error("no proofs waiting to be sealed")]
    NothingToSeal,
    /// The parts of a split payment sum to less than the lock they fund, or a part is not a
    /// pending lock of its payer with the lock's id, or already funds another lock (spec §5.23c).
    #[error("the parts do not fund the lock")]
    PartsDoNotFundLock,
    /// A split payment has more parts than `MAX_PARTS`, or none.
    #[error("a split payment has 1 to MAX_PARTS parts")]
    TooManyParts,
}

impl From<crate::checkpoint::PathError> for Error {
    fn from(e: crate::checkpoint::PathError) -> Self {
        use crate::checkpoint::PathError as P;
        match e {
            P::PathTooLong => Error::PathTooLong,
            P::PathIndexOutOfRange => Error::PathIndexOutOfRange,
            P::SumOutOfRange => Error::SumOutOfRange,
            P::RootMismatch => Error::RootMismatch,
        }
    }
}

impl Error {
    /// The stable machine-readable code, e.g. `nonce_must_increase`.
    pub fn code(&self) -> String {
        let name = self.name();
        let mut out = String::with_capacity(name.len() + 8);
        for (i, ch) in name.chars().enumerate() {
            if ch.is_ascii_uppercase() {
                if i != 0 {
                    out.push('_');
                }
                out.push(ch.to_ascii_lowercase());
            } else {
                out.push(ch);
            }
        }
        out
    }

    /// The variant name, which is also the contract's custom error name where the contract judges it.
    pub fn name(&self) -> String {
        format!("{self:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_snake_case_of_names() {
        assert_eq!(Error::NonceMustIncrease.code(), "nonce_must_increase");
        assert_eq!(Error::ProofMustSupersede.code(), "proof_must_supersede");
        assert_eq!(Error::AmountMustNotBeZero.code(), "amount_must_not_be_zero");
        assert_eq!(Error::WrongSigner.name(), "WrongSigner");
    }
}
