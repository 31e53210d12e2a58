//! Integration tests of the chain layer: the watcher over the in-process chain (reorg
//! properties, seeded) and the whole layer against a real anvil.

mod anvil_chain;
mod memory_watcher;
