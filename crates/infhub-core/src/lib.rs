//! The pure protocol core of infhub.
//!
//! This crate holds everything the hub, the wallet, the watchtower and the simulator must
//! agree on, and nothing else: the message types, their EIP-712 hashing (byte-identical to
//! `contracts/src/InfHub.sol`), secp256k1 signing and verification, the per-channel state
//! machine and a model of how the contract judges every call. It does no IO, reads no clock
//! and starts no threads: time and block height are inputs, and each transition is
//! `step(state, input) -> Result<(state, effects), Error>`. Outer crates carry out the effects.
//!
//! The protocol itself is specified in `docs/protocol.md`.

pub mod amount;
pub mod channel;
pub mod checkpoint;
pub mod contract;
pub mod duties;
pub mod eip712;
pub mod error;
pub mod forwarding;
pub mod invoice;
pub mod ledger;
pub mod lock_book;
pub mod merkle;
pub mod messages;
pub mod point_lock;
pub mod routing;
#[cfg(feature = "schema")]
pub mod schema;
pub mod sealed_step;
pub mod signature;
pub mod time;
pub mod tower;

pub use alloy_primitives::{address, Address, B256, U256};
pub use amount::Amount;
pub use eip712::Domain;
pub use error::Error;
pub use messages::{Credit, Debit, PaymentKind, Receipt, Registration, TowerFee, Withdrawal};
pub use signature::{PrivateKey, Signature};
