//! Integration tests of the durable ledger over the file store: restarts, torn tails at every
//! byte, corruption, snapshots, replay checks and idempotency across restarts.

mod crash_points;
mod durability;
