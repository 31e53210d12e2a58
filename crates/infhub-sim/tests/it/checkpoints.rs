//! A checkpoint survives the faults issue 22 names: the hub crashing after building it and
//! before posting it (the ledger's record and the stored leaves bring it back, and posting is a
//! duty), and a reorg that drops the posting transaction (the duty stays due until the
//! `CheckpointPosted` event is confirmed, so it is posted again).

use super::payouts::{Setup, CONFIRMATIONS, RESEND_AFTER_BLOCKS};
use alloy::sol_types::SolCall;
use infhub_chain::bindings::IInfHub;
use infhub_ledger::simfs::SimDisk;
use infhub_sim::evm::ChainFaults;
use infhub_sim::hub::SimHub;
use infhub_sim::rng::Rng;

fn last_checkpoint_id(s: &mut Setup) -> u64 {
    let raw = s.chain.call(s.chain.hub_contract, IInfHub::lastCheckpointIdCall {}.abi_encode()).expect("call");
    IInfHub::lastCheckpointIdCall::abi_decode_returns(&raw).expect("decode")
}

#[test]
fn a_checkpoint_built_before_a_crash_and_dropped_by_a_reorg_is_posted_in_the_end() {
    let mut s = Setup::new();
    s.config.checkpoint_interval_blocks = 50;
    let disk = SimDisk::new();
    let mut hub = SimHub::start(disk.clone(), s.hub_key.clone(), s.config.clone(), &s.chain, None).expect("hub starts");
    // The first checkpoint is due once the ledger follows the chain; the tick that builds it
    // also sends it.
    for _ in 0..20 {
        if hub.ledger().checkpoints.pending.is_some() {
            break;
        }
        s.mine(&mut hub, 1);
    }
    let built = hub.ledger().checkpoints.pending.expect("a checkpoint was built");
    assert_eq!(built.id, 1);
    assert!(built.checkpoint.total_liability.is_zero(), "a deposit alone owes the reserve nothing");

    // The process dies before its transaction is mined (the broadcaster's outbox is lost).
    drop(hub);
    disk.restart(&mut Rng::new(5));
    let mut hub = SimHub::start(disk.clone(), s.hub_key.clone(), s.config.clone(), &s.chain, None).expect("restarts");
    assert_eq!(hub.ledger().checkpoints.pending, Some(built), "the record survived the crash");
    hub.tick(&mut s.chain, None, true).expect("tick: restores the leaves and posts again");
    let shelf = hub.hub.duties.checkpoint_shelf().expect("checkpoints on");
    assert!(shelf.lock().expect("shelf").get(1, built.checkpoint.root).is_some(), "its leaves were read back");
    s.chain.mine(&mut s.calm, ChainFaults { delay_per_mille: 0, drop_per_mille: 0 });
    assert_eq!(last_checkpoint_id(&mut s), 1, "posted after the restart");

    // A reorg takes the block back and the mempool drops the transaction.
    assert_eq!(s.chain.reorg(1, &mut Rng::new(6), 1_000), 1);
    assert_eq!(last_checkpoint_id(&mut s), 0, "gone from the chain");
    s.mine(&mut hub, 4 * RESEND_AFTER_BLOCKS + CONFIRMATIONS + 2);
    assert_eq!(last_checkpoint_id(&mut s), 1, "posted again");
    let posted = hub.ledger().checkpoints.posted.expect("confirmed");
    assert_eq!(posted, built, "the same checkpoint, confirmed");
    assert_eq!(hub.ledger().checkpoints.pending, None);
}
