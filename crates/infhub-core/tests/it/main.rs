//! Integration tests of the protocol core: shared vectors with the contract, property tests
//! of the channel state machine and the contract model, and end-to-end channel flows.

mod channel_locks;
mod flows;
mod ledger;
mod locks;
mod properties;
mod routing;
mod vectors;
