//! The signed messages of the protocol and their EIP-712 struct hashes.
//!
//! On-chain messages (the contract verifies them): [`Debit`] (user-signed running total of
//! what left the channel), [`Credit`] (hub-signed running total of what entered it) and
//! [`Withdrawal`] (co-signed cooperative withdrawal). Off-chain messages (hub and wallet
//! verify them): [`Receipt`] (hub acknowledges a debit) and [`Registration`] (user proves
//! key ownership at registration). Field order and types are the contract's; see
//! `docs/protocol.md` § "Signed messages" for why each field exists.

pub use crate::eip712::Eip712Message;
use crate::eip712::{Domain, Encoder};
use crate::merkle::{batch_digest, MerklePath};
use crate::signature::{PrivateKey, Signature};
use crate::{Amount, Error};
use alloy_primitives::{b256, Address, B256};
use serde::{Deserialize, Serialize};

/// EIP-712 type string of [`Debit`].
pub const DEBIT_TYPE: &str = "Debit(address user,uint64 epoch,uint64 nonce,uint128 cumulativeDebit,uint128 lockedAmount,bytes32 locksRoot,uint8 kind,address recipient,uint128 amount,bytes32 paymentId)";
/// EIP-712 type string of [`Credit`].
pub const CREDIT_TYPE: &str =
    "Credit(address user,uint64 epoch,uint64 nonce,uint128 cumulativeCredit,uint128 lockedAmount,bytes32 locksRoot)";
/// EIP-712 type string of [`Withdrawal`].
pub const WITHDRAWAL_TYPE: &str =
    "Withdrawal(address user,uint64 epoch,uint128 cumulativeWithdrawn,uint64 expiryBlock)";
/// EIP-712 type string of [`TowerFee`].
pub const TOWER_FEE_TYPE: &str =
    "TowerFee(address user,uint64 epoch,address tower,uint128 maxFee,uint16 gainShareBps,uint64 validUntilBlock)";
/// Basis points in one whole: a [`TowerFee`]'s `gain_share_bps` is at most this.
pub const BPS: u16 = 10_000;
/// EIP-712 type string of [`TowerReceipt`].
pub const TOWER_RECEIPT_TYPE: &str =
    "TowerReceipt(address tower,address user,uint64 epoch,uint64 nonce,uint128 cumulativeCredit)";
/// EIP-712 type string of [`Receipt`].
pub const RECEIPT_TYPE: &str =
    "Receipt(address payer,uint64 epoch,uint64 debitNonce,bytes32 paymentId,bytes32 debitDigest)";
/// EIP-712 type string of [`Registration`].
pub const REGISTRATION_TYPE: &str = "Registration(address user,uint64 validUntilBlock)";

/// EIP-712 type string of [`Login`].
pub const LOGIN_TYPE: &str = "Login(address user,bytes32 challenge)";

/// What a debit pays for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum PaymentKind {
    /// To another account of the same hub; the hub credits the recipient's channel.
    Internal = 0,
    /// To a plain chain address; the hub pays out on chain from its reserve.
    External = 1,
    /// Adds one of the user's outgoing locks (spec §5.17a): the total stays, the book grows.
    LockAdd = 2,
    /// Settles one with its scalar: its amount moves into the total.
    LockSettle = 3,
    /// Drops one (expired, or cancelled by the hub): the total stays, the book shrinks.
    LockDrop = 4,
}

impl PaymentKind {
    /// Decodes the `kind` byte.
    pub fn from_u8(v: u8) -> Result<PaymentKind, Error> {
        match v {
            0 => Ok(PaymentKind::Internal),
            1 => Ok(PaymentKind::External),
            2 => Ok(PaymentKind::LockAdd),
            3 => Ok(PaymentKind::LockSettle),
            4 => Ok(PaymentKind::LockDrop),
            _ => Err(Error::UnknownPaymentKind),
        }
    }
}

/// A user-signed running total of everything paid out of the channel in this epoch, bound to
/// the one payment that raised it (recipient, amount, payment id).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Debit {
    /// The channel owner and signer.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::AddressSchema"))]
    pub user: Address,
    /// The channel's epoch; a reopened channel has a new one.
    pub epoch: u64,
    /// Sequence number of this user's debits in this epoch, starting at 1.
    pub nonce: u64,
    /// Running total paid out of the channel, including `amount`.
    pub cumulative_debit: Amount,
    /// Total of the user's pending outgoing point locks (spec §5.17a).
    pub locked_amount: Amount,
    /// Merkle root of those pending locks (zero when none).
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::WordSchema"))]
    pub locks_root: B256,
    /// What the payment is for, as the `PaymentKind` byte.
    pub kind: u8,
    /// Who is paid: an account of this hub (Internal) or a chain address (External).
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::AddressSchema"))]
    pub recipient: Address,
    /// This payment's amount: `cumulative_debit` minus the previous total.
    pub amount: Amount,
    /// The payer's idempotency key; the hub applies a payment id at most once.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::WordSchema"))]
    pub payment_id: B256,
}

/// A hub-signed running total of everything paid into the channel in this epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Credit {
    /// The channel owner.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::AddressSchema"))]
    pub user: Address,
    /// The channel's epoch.
    pub epoch: u64,
    /// Sequence number of the hub's credits to this user in this epoch, starting at 1.
    pub nonce: u64,
    /// Running total paid into the channel.
    pub cumulative_credit: Amount,
    /// Total of the hub's pending point locks to the user (spec §5.17a).
    pub locked_amount: Amount,
    /// Merkle root of those pending locks (zero when none).
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::WordSchema"))]
    pub locks_root: B256,
}

/// A cooperative withdrawal, valid only with both the user's and the hub's signature and only
/// until `expiry_block`; pays `cumulative_withdrawn` minus what was already withdrawn on chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Withdrawal {
    /// The channel owner, who receives the tokens.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::AddressSchema"))]
    pub user: Address,
    /// The channel's epoch.
    pub epoch: u64,
    /// Running total withdrawn on chain in this epoch after this withdrawal.
    pub cumulative_withdrawn: Amount,
    /// Last block in which the contract accepts it.
    pub expiry_block: u64,
}

/// A user's offer to a watchtower (verified on chain by `submitCreditForFee`, spec 5.10a): for
/// a credit submission that raises the user's claim in a close of this epoch, the named tower
/// earns `gain_share_bps` of the rise, at most `max_fee` in all, paid from the claim at
/// settlement; usable until `valid_until_block`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TowerFee {
    /// The channel owner, who pays the fee out of her settlement.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::AddressSchema"))]
    pub user: Address,
    /// The channel's epoch.
    pub epoch: u64,
    /// The only tower that may use the offer, and the fee's recipient.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::AddressSchema"))]
    pub tower: Address,
    /// Most the tower earns in one close, over all its submissions.
    pub max_fee: Amount,
    /// The tower's share of each rise of the claim it causes, in basis points.
    pub gain_share_bps: u16,
    /// Last block in which the contract accepts it.
    pub valid_until_block: u64,
}

/// A watchtower's signed statement of the newest credit it holds for a user (off chain only):
/// the user can prove what the tower held if it fails to defend her.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct TowerReceipt {
    /// The tower.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::AddressSchema"))]
    pub tower: Address,
    /// The watched user.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::AddressSchema"))]
    pub user: Address,
    /// The channel's epoch.
    pub epoch: u64,
    /// The nonce of the credit held.
    pub nonce: u64,
    /// The running total of the credit held.
    pub cumulative_credit: Amount,
}

/// The hub's signed acknowledgement that it applied a debit (off chain only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Receipt {
    /// Who paid.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::AddressSchema"))]
    pub payer: Address,
    /// The payer's channel epoch.
    pub epoch: u64,
    /// The nonce of the debit applied.
    pub debit_nonce: u64,
    /// The payment id of the debit applied.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::WordSchema"))]
    pub payment_id: B256,
    /// The EIP-712 digest of the debit applied, so the receipt names exactly one signed debit.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::WordSchema"))]
    pub debit_digest: B256,
}

/// The user's signed request to register, proving it holds the key (off chain only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Registration {
    /// The address to register.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::AddressSchema"))]
    pub user: Address,
    /// The request is refused after this block, so a leaked request goes stale.
    pub valid_until_block: u64,
}

/// The user's answer to a session challenge: proves it holds the key, so the hub may show it
/// its account (off chain only; the challenge is random, single-use and short-lived).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Login {
    /// The address logging in.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::AddressSchema"))]
    pub user: Address,
    /// The hub's challenge.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::WordSchema"))]
    pub challenge: B256,
}

impl Debit {
    /// The empty debit (nonce 0, nothing paid) a close carries when the user never paid: the
    /// contract takes it without a signature.
    pub fn none(user: Address, epoch: u64) -> Debit {
        Debit {
            user,
            epoch,
            nonce: 0,
            cumulative_debit: Amount::ZERO,
            locked_amount: Amount::ZERO,
            locks_root: B256::ZERO,
            kind: 0,
            recipient: Address::ZERO,
            amount: Amount::ZERO,
            payment_id: B256::ZERO,
        }
    }
}

impl Eip712Message for Debit {
    const TYPE: &'static str = DEBIT_TYPE;
    const TYPE_HASH: B256 = b256!("64d460851d3ed652068fc3c36122bf2ff3507eeaf04a944e0f5a8bee37be79fc");
    fn struct_hash(&self) -> B256 {
        let mut e = Encoder::new(Self::TYPE_HASH);
        e.address(self.user);
        e.u64(self.epoch);
        e.u64(self.nonce);
        e.u128(self.cumulative_debit.0);
        e.u128(self.locked_amount.0);
        e.word(self.locks_root);
        e.u8(self.kind);
        e.address(self.recipient);
        e.u128(self.amount.0);
        e.word(self.payment_id);
        e.finish()
    }
}

impl Eip712Message for Credit {
    const TYPE: &'static str = CREDIT_TYPE;
    const TYPE_HASH: B256 = b256!("0bd3feb53bddf2ecc9bb16f0fdb61add1a14eb5530a71b940deed48275f6a0c3");
    fn struct_hash(&self) -> B256 {
        let mut e = Encoder::new(Self::TYPE_HASH);
        e.address(self.user);
        e.u64(self.epoch);
        e.u64(self.nonce);
        e.u128(self.cumulative_credit.0);
        e.u128(self.locked_amount.0);
        e.word(self.locks_root);
        e.finish()
    }
}

impl Eip712Message for Withdrawal {
    const TYPE: &'static str = WITHDRAWAL_TYPE;
    const TYPE_HASH: B256 = b256!("fb0bc4eb7e97dd7f29b54deb58bf6a062981901c2857c6acdc8aa16ece43e0bc");
    fn struct_hash(&self) -> B256 {
        let mut e = Encoder::new(Self::TYPE_HASH);
        e.address(self.user);
        e.u64(self.epoch);
        e.u128(self.cumulative_withdrawn.0);
        e.u64(self.expiry_block);
        e.finish()
    }
}

impl Eip712Message for TowerFee {
    const TYPE: &'static str = TOWER_FEE_TYPE;
    const TYPE_HASH: B256 = b256!("7541021b9240f0dfb8a1a097cd3deac2e50a6dfb35fdada3687bd45ab1b5e00c");
    fn struct_hash(&self) -> B256 {
        let mut e = Encoder::new(Self::TYPE_HASH);
        e.address(self.user);
        e.u64(self.epoch);
        e.address(self.tower);
        e.u128(self.max_fee.0);
        e.u64(u64::from(self.gain_share_bps));
        e.u64(self.valid_until_block);
        e.finish()
    }
}

impl Eip712Message for TowerReceipt {
    const TYPE: &'static str = TOWER_RECEIPT_TYPE;
    const TYPE_HASH: B256 = b256!("2306f63bdaa7e542e8fdb20a5b6cfeb4312ee325218ff7d142d18cbb95e83801");
    fn struct_hash(&self) -> B256 {
        let mut e = Encoder::new(Self::TYPE_HASH);
        e.address(self.tower);
        e.address(self.user);
        e.u64(self.epoch);
        e.u64(self.nonce);
        e.u128(self.cumulative_credit.0);
        e.finish()
    }
}

impl Eip712Message for Receipt {
    const TYPE: &'static str = RECEIPT_TYPE;
    const TYPE_HASH: B256 = b256!("59a55c8997a1b27ebec1e8418ebb3d657e1e07a1b6b5516d86ada40248aad816");
    fn struct_hash(&self) -> B256 {
        let mut e = Encoder::new(Self::TYPE_HASH);
        e.address(self.payer);
        e.u64(self.epoch);
        e.u64(self.debit_nonce);
        e.word(self.payment_id);
        e.word(self.debit_digest);
        e.finish()
    }
}

impl Eip712Message for Registration {
    const TYPE: &'static str = REGISTRATION_TYPE;
    const TYPE_HASH: B256 = b256!("f3556d615bc15ab2fae30da553cffa2331e2861103c76b7c803fdfc2d4ac6264");
    fn struct_hash(&self) -> B256 {
        let mut e = Encoder::new(Self::TYPE_HASH);
        e.address(self.user);
        e.u64(self.valid_until_block);
        e.finish()
    }
}

impl Eip712Message for Login {
    const TYPE: &'static str = LOGIN_TYPE;
    const TYPE_HASH: B256 = b256!("ce063504a1c2fbfa2044c11246c8443659b760fd6f445b6b0d654535d64eb742");
    fn struct_hash(&self) -> B256 {
        let mut e = Encoder::new(Self::TYPE_HASH);
        e.address(self.user);
        e.word(self.challenge);
        e.finish()
    }
}

/// A message with its signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Signed<M> {
    /// The message.
    pub message: M,
    /// The signer's signature over the message's digest.
    pub signature: Signature,
}

impl<M: Eip712Message> Signed<M> {
    /// Signs `message` in `domain` with `key`.
    pub fn new(message: M, domain: &Domain, key: &PrivateKey) -> Self {
        let signature = message.sign(domain, key);
        Signed { message, signature }
    }

    /// Ok if `signer` signed this message in `domain`.
    pub fn verify(&self, domain: &Domain, signer: Address) -> Result<(), Error> {
        self.signature.verify(self.message.digest(domain), signer)
    }
}

/// A message signed by the hub, directly or as one leaf of a batch (see [`crate::merkle`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct HubSigned<M> {
    /// The message.
    pub message: M,
    /// The hub's signature over the message's digest (empty `path`), or over the batch root.
    pub signature: Signature,
    /// The message digest's path to the batch root; empty for a direct signature. (Always
    /// written, since the log's binary encoding cannot skip fields; may be left out in JSON.)
    #[serde(default)]
    pub path: MerklePath,
}

impl<M: Eip712Message> HubSigned<M> {
    /// Signs `message` directly (one signature for one message).
    pub fn new(message: M, domain: &Domain, key: &PrivateKey) -> Self {
        let signature = message.sign(domain, key);
        HubSigned { message, signature, path: MerklePath::EMPTY }
    }

    /// Not signed yet: the ledger fills in the batch signature and path when it seals.
    pub fn unsealed(message: M) -> Self {
        HubSigned { message, signature: Signature([0u8; 65]), path: MerklePath::EMPTY }
    }

    /// Ok if `hub` signed this message in `domain`, directly or through a batch root.
    pub fn verify(&self, domain: &Domain, hub: Address) -> Result<(), Error> {
        let digest = self.message.digest(domain);
        if self.path.is_empty() {
            self.signature.verify(digest, hub)
        } else {
            self.signature.verify(batch_digest(self.path.root(digest), domain), hub)
        }
    }

    /// The proof as the contract takes it: the 65-byte signature, then the path's nodes.
    pub fn proof_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(65 + 32 * self.path.nodes().len());
        out.extend_from_slice(&self.signature.0);
        for node in self.path.nodes() {
            out.extend_from_slice(node.as_slice());
        }
        out
    }

    /// Parses [`HubSigned::proof_bytes`]: 65 bytes, then whole 32-byte nodes.
    pub fn from_proof_bytes(message: M, proof: &[u8]) -> Result<Self, Error> {
        if proof.len() < 65 || !(proof.len() - 65).is_multiple_of(32) {
            return Err(Error::InvalidSignature);
        }
        let signature = Signature::from_slice(&proof[..65])?;
        let nodes: Vec<B256> = proof[65..].chunks(32).map(B256::from_slice).collect();
        let path = MerklePath::from_nodes(&nodes).ok_or(Error::InvalidSignature)?;
        Ok(HubSigned { message, signature, path })
    }
}

/// A user-signed debit.
pub type SignedDebit = Signed<Debit>;
/// A hub-signed credit.
pub type SignedCredit = HubSigned<Credit>;
/// A hub-signed receipt.
pub type SignedReceipt = HubSigned<Receipt>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_binds_user_challenge_and_domain() {
        let key = PrivateKey::from_bytes([7u8; 32]).expect("key");
        let d = Domain { chain_id: 1, verifying_contract: Address::repeat_byte(1) };
        let login = Login { user: key.address(), challenge: B256::repeat_byte(3) };
        let signed = Signed::new(login, &d, &key);
        assert_eq!(signed.verify(&d, key.address()), Ok(()));
        let other_domain = Domain { chain_id: 2, ..d };
        assert!(signed.verify(&other_domain, key.address()).is_err());
        let other = Signed { message: Login { challenge: B256::repeat_byte(4), ..login }, ..signed };
        assert!(other.verify(&d, key.address()).is_err());
    }

    #[test]
    fn written_out_type_hashes_are_the_hashes_of_the_type_strings() {
        use alloy_primitives::keccak256;
        assert_eq!(Debit::TYPE_HASH, keccak256(Debit::TYPE));
        assert_eq!(Credit::TYPE_HASH, keccak256(Credit::TYPE));
        assert_eq!(Withdrawal::TYPE_HASH, keccak256(Withdrawal::TYPE));
        assert_eq!(TowerFee::TYPE_HASH, keccak256(TowerFee::TYPE));
        assert_eq!(TowerReceipt::TYPE_HASH, keccak256(TowerReceipt::TYPE));
        assert_eq!(Receipt::TYPE_HASH, keccak256(Receipt::TYPE));
        assert_eq!(Registration::TYPE_HASH, keccak256(Registration::TYPE));
        assert_eq!(Login::TYPE_HASH, keccak256(Login::TYPE));
    }

    #[test]
    fn kind_bytes_decode() {
        assert_eq!(PaymentKind::from_u8(0), Ok(PaymentKind::Internal));
        assert_eq!(PaymentKind::from_u8(1), Ok(PaymentKind::External));
        assert_eq!(PaymentKind::from_u8(4), Ok(PaymentKind::LockDrop));
        assert_eq!(PaymentKind::from_u8(5), Err(Error::UnknownPaymentKind));
    }

    #[test]
    fn every_field_changes_the_debit_hash() {
        let base = Debit {
            user: Address::repeat_byte(1),
            epoch: 1,
            nonce: 1,
            cumulative_debit: Amount(5),
            locked_amount: Amount(0),
            locks_root: B256::ZERO,
            kind: 0,
            recipient: Address::repeat_byte(2),
            amount: Amount(5),
            payment_id: B256::repeat_byte(9),
        };
        let h = base.struct_hash();
        let variants = [
            Debit { user: Address::repeat_byte(3), ..base },
            Debit { epoch: 2, ..base },
            Debit { nonce: 2, ..base },
            Debit { cumulative_debit: Amount(6), ..base },
            Debit { locked_amount: Amount(1), ..base },
            Debit { locks_root: B256::repeat_byte(1), ..base },
            Debit { kind: 1, ..base },
            Debit { recipient: Address::repeat_byte(4), ..base },
            Debit { amount: Amount(4), ..base },
            Debit { payment_id: B256::repeat_byte(8), ..base },
        ];
        for v in variants {
            assert_ne!(v.struct_hash(), h, "{v:?}");
        }
    }
}
