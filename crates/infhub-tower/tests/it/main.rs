//! Integration tests of the tower against anvil (see tower.rs).
mod tower;
