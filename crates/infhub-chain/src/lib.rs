//! infhub's chain layer.
//!
//! Everything the hub does with Ethereum goes through this crate: reading the hub
//! contract's events with a reorg-aware, confirmation-counting [`watcher`], and writing with a
//! [`sender`] that manages the hub key's nonces and fees. The mapping between the contract
//! ABI and the core's types lives in [`events`]; the ABI itself in [`bindings`]. The watcher
//! reads through the small [`source::ChainSource`] trait, implemented over JSON-RPC (alloy,
//! HTTP or WebSocket) and, for simulations, in process. [`anvil`] starts a local chain and
//! deploys the contracts for development and tests. [`registry`] reveals multi-hop lock points
//! in the chain's `PointRegistry` and reads the reveals back.

pub mod anvil;
pub mod bindings;
pub mod error;
pub mod events;
pub mod registry;
pub mod sender;
pub mod source;
pub mod watcher;

pub use error::ChainError;
