//! The node's integration tests: every flow through the HTTP API against a real anvil with
//! real signatures, rejections, reorgs, restarts from log + snapshot, and a SIGKILL crash test.

mod audit;
mod batch;
mod crash;
mod custodial;
mod explorer;
mod flows;
mod forwarding;
mod harness;
mod limits;
mod links;
mod liquidity;
mod locks;
mod registration;
mod reorg;
mod routing;
mod schema_check;
mod split;
mod towers;
mod web_wallet;
mod webhooks;
