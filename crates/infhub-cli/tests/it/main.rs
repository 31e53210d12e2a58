//! End-to-end scenarios: the real `infhub` binary (hub node and wallets as separate
//! processes) against a real anvil with the compiled contracts, blocks every 200 ms.
//!
//! Each scenario has its own chain and hub. Wallet commands run with `--json` and are judged
//! by their output and by the chain itself (token balances, the contract's solvency).

mod checkpoints;
mod frontends;
mod harness;
mod hostile;
mod hubs;
mod postgres;
mod scenarios;
mod towers;
