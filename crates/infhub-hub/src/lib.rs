//! The hub's imperative shell, as a library: everything between the pure ledger of
//! `infhub-core` and a running hub, written once and run by the node, the simulator and the
//! benchmark.
//!
//! - [`ledger::HubLedger`]: the durable ledger and its history, opened together (restart
//!   recovery) and committed together (one group commit, one typed [`ledger::Commit`]).
//! - [`duties::ChainDuties`]: follows the contract, feeds confirmed events to the ledger and
//!   sends what the ledger's state calls for ([`infhub_core::duties`]): disputes, settlements,
//!   payout batches, realizations; on request, channel openings, hub closes and reserve
//!   withdrawals. It owns payout and deposit status ([`status`]).
//! - [`checkpoints::Checkpointer`]: builds the hub's checkpoints when due, stores their leaves
//!   and keeps them at hand for the wallets' proofs; the duties post them.
//! - [`answers`]: a payment's answer, the same for a retry as for the first request.
//! - [`notice`]: what subscribers of an account are told.
//! - [`hub::Hub`]: both parts in one value, for in-process use (the simulator, tests).
//!
//! Its seams are few and small: storage through `infhub_ledger::fs::Fs`, chain reads through
//! `infhub_chain::source::ChainSource`, and the hub's transactions through
//! [`broadcast::Broadcaster`].

pub mod answers;
pub mod broadcast;
pub mod checkpoints;
pub mod chronicle;
pub mod duties;
pub mod hub;
pub mod ledger;
pub mod notice;
pub mod status;

pub use hub::{run_ready, Hub, HubDown};
