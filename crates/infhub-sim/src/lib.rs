//! A seeded, deterministic simulation of infhub: one hub, many wallets, the real contract in
//! an in-process EVM, a lossy network and a crashing disk, with cheating users and a cheating
//! hub, checked by an auditor after every step (issue 5, `docs/simulation.md`).
//!
//! Everything runs in one thread on simulated time; the only randomness is the seeded
//! [`rng::Rng`]. The hub runs the real core ledger and durable store, the wallets run the core
//! channel machine, both follow the chain with the real watcher; watchtowers run the core's
//! tower book and the tower's real appointment log on their own crashing disks.

pub mod audit;
pub mod cli;
pub mod evm;
pub mod hub;
pub mod rng;
pub mod shards;
pub mod tower;
pub mod wallet;
pub mod world;

pub use audit::Violation;
pub use hub::InjectedBug;
pub use world::{Faults, Report, SimConfig, World};
