//! The wallet's failures. Each message is one sentence that says what went wrong and what to
//! do next; `code()` is a stable snake_case name for scripts (`--json`).

use crate::keystore::KeystoreError;
use crate::units::AmountError;

/// A wallet failure.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// No key: neither a keystore in the wallet directory nor `INFHUB_WALLET_KEY`.
    #[error("no wallet key in {dir}; run `infhub wallet init` (new key) or `infhub wallet import`, or set INFHUB_WALLET_KEY")]
    NoKey {
        /// The wallet directory.
        dir: String,
    },
    /// A keystore already exists where a new one would be written.
    #[error("{path} already holds a key; use another --dir, or remove the file if you have a backup")]
    KeyExists {
        /// The keystore path.
        path: String,
    },
    /// The key given does not own this wallet's store.
    #[error("the key's address {key} is not this wallet's account {store}; use the wallet's own key or another --dir")]
    KeyMismatch {
        /// The key's address.
        key: String,
        /// The store's account.
        store: String,
    },
    /// The keystore could not be opened.
    #[error("keystore: {0}; check INFHUB_WALLET_PASSWORD or the file")]
    Keystore(#[from] KeystoreError),
    /// A password is needed and there is no terminal to ask on.
    #[error("the keystore needs a password; set INFHUB_WALLET_PASSWORD or run in a terminal")]
    PasswordNeeded,
    /// Not registered with a hub yet.
    #[error("this wallet is not registered with a hub; run `infhub wallet register --hub-url URL --rpc-url URL`")]
    NotRegistered,
    /// The hub's channel for this account is not open on chain yet.
    #[error("your channel is not open on chain yet; wait a few blocks and retry (`infhub wallet balance` shows it)")]
    ChannelNotOpenYet,
    /// The hub could not be reached.
    #[error(
        "cannot reach the hub at {url} ({reason}); check that it runs, or leave without it with `infhub wallet exit`"
    )]
    HubUnreachable {
        /// The hub's URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The hub refused a request with a named rule.
    #[error("the hub refused: {message} ({code})")]
    HubRefused {
        /// The hub's error code.
        code: String,
        /// The hub's message.
        message: String,
    },
    /// The hub answered with something that does not check out.
    #[error("the hub's answer does not check out: {0}; your stored proofs still let you exit (`infhub wallet exit`)")]
    HubMisbehaved(String),
    /// The hub refused a payment without refunding it, so it may still be applied: it is kept
    /// and resent before any other payment.
    #[error(
        "the hub refused payment {payment_id} ({code}: {message}) without refunding it; it stays pending and is \
         resent before your next payment, so it is never replaced by another (run `infhub wallet sync`)"
    )]
    PaymentHeld {
        /// The payment id.
        payment_id: String,
        /// The hub's code.
        code: String,
        /// The hub's message.
        message: String,
    },
    /// A payment was sent but the answer was lost; it is kept and resent.
    #[error("the hub did not confirm payment {payment_id}; it is kept and resent by the next command (run `infhub wallet sync`)")]
    PaymentUncertain {
        /// The payment id.
        payment_id: String,
    },
    /// The chain RPC failed.
    #[error("the chain RPC at {url} failed ({reason}); check --rpc-url and retry")]
    Chain {
        /// The RPC URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// A transaction was rejected or reverted.
    #[error("the {what} transaction failed: {reason}")]
    TransactionFailed {
        /// What was being done.
        what: String,
        /// The contract error or RPC message.
        reason: String,
    },
    /// The protocol's rules refuse the operation (e.g. insufficient balance).
    #[error("{message} ({code})")]
    Refused {
        /// The rule's code.
        code: String,
        /// Its description.
        message: String,
    },
    /// Bad input on the command line.
    #[error("{0}")]
    InvalidInput(String),
    /// An amount could not be read.
    #[error(transparent)]
    Amount(#[from] AmountError),
    /// The local store could not be read or written.
    #[error("wallet store {path}: {reason}; check the directory's permissions and free space")]
    Store {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// Another wallet command holds the store.
    #[error("another infhub wallet command is using {dir}; wait for it to finish and retry")]
    Busy {
        /// The wallet directory.
        dir: String,
    },
    /// Waited too long for the chain or the hub.
    #[error("timed out: {0}; retry the command, it continues where it stopped")]
    Timeout(String),
    /// An exit without the hub's newest credit needs the user's confirmation.
    #[error("{0}; run again with --yes to exit anyway")]
    ExitNotConfirmed(String),
    /// The hub's checkpoint fails this wallet's check of its leaf (spec §5.16).
    #[error("the hub's checkpoint misstates this account: {detail}; the wallet's journal keeps it")]
    CheckpointFault {
        /// The fault's code (`leaf_omits_credit`, …).
        code: &'static str,
        /// What was found, with the figures.
        detail: String,
    },
}

impl From<infhub_core::Error> for WalletError {
    fn from(e: infhub_core::Error) -> Self {
        WalletError::Refused { code: e.code(), message: e.to_string() }
    }
}

impl WalletError {
    /// Stable snake_case name of the failure.
    pub fn code(&self) -> String {
        match self {
            WalletError::NoKey { .. } => "no_key".into(),
            WalletError::KeyExists { .. } => "key_exists".into(),
            WalletError::KeyMismatch { .. } => "key_mismatch".into(),
            WalletError::Keystore(KeystoreError::WrongPassword) => "wrong_password".into(),
            WalletError::Keystore(_) => "keystore_unreadable".into(),
            WalletError::PasswordNeeded => "password_needed".into(),
            WalletError::NotRegistered => "not_registered".into(),
            WalletError::ChannelNotOpenYet => "channel_not_open_yet".into(),
            WalletError::HubUnreachable { .. } => "hub_unreachable".into(),
            WalletError::HubRefused { code, .. } => code.clone(),
            WalletError::HubMisbehaved(_) => "hub_misbehaved".into(),
            WalletError::PaymentUncertain { .. } => "payment_uncertain".into(),
            WalletError::PaymentHeld { .. } => "payment_held".into(),
            WalletError::Chain { .. } => "chain_unavailable".into(),
            WalletError::TransactionFailed { .. } => "transaction_failed".into(),
            WalletError::Refused { code, .. } => code.clone(),
            WalletError::InvalidInput(_) => "invalid_input".into(),
            WalletError::Amount(_) => "invalid_amount".into(),
            WalletError::Store { .. } => "store_failed".into(),
            WalletError::Busy { .. } => "wallet_busy".into(),
            WalletError::Timeout(_) => "timeout".into(),
            WalletError::ExitNotConfirmed(_) => "exit_not_confirmed".into(),
            WalletError::CheckpointFault { code, .. } => (*code).into(),
        }
    }
}
