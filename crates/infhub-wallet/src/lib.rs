//! The infhub wallet: what a user runs to hold their key, pay, and always be able to leave.
//!
//! It keeps the key in a standard encrypted keystore ([`keystore`]), keeps every proof it
//! needs to exit without the hub in a durable local store ([`store`]), verifies every hub
//! signature and every figure the hub reports against its own proofs by running the core's
//! channel state machine as the user's end ([`wallet_core`], without IO, also run by the
//! simulator; [`wallet`] drives it), and talks to the hub ([`hub`]) and
//! the chain ([`chain`]) itself, so exit, dispute and settlement need only an RPC URL. The
//! `infhub wallet …` commands are in [`cli`].

pub mod chain;
pub mod cli;
pub mod error;
pub mod hub;
pub mod keystore;
pub mod store;
pub mod tower;
pub mod units;
pub mod wallet;
pub mod wallet_core;

pub use error::WalletError;
pub use wallet::Wallet;
