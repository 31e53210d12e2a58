//! Regression of issue 25's lost payout (seed 562124343): a payout batch mined in a block that
//! was not yet confirmed, a hub crash, and a reorg that dropped the transaction. Recovery used
//! to ask `payoutBatchExecuted` at the chain's head, took the batch as paid, and nothing
//! remembered it after the reorg: the payer was debited and the recipient got nothing. Now the
//! ledger keeps a taken batch in flight until its `PayoutBatchExecuted` is confirmed, and the hub
//! sends it again until then.

use alloy::primitives::{Address, U256};
use alloy::sol_types::SolCall;
use infhub_chain::bindings::{IErc20, IInfHub};
use infhub_core::ledger::{Command, LedgerParams, Outcome};
use infhub_core::messages::Signed;
use infhub_core::{Amount, Domain, PaymentKind, PrivateKey, B256};
use infhub_ledger::simfs::SimDisk;
use infhub_sim::evm::{ChainFaults, SimChain, SIM_CHAIN_ID};
use infhub_sim::hub::{HubConfig, SimHub};
use infhub_sim::rng::Rng;

const UNIT: u128 = 1_000_000_000_000_000_000;
pub(crate) const CONFIRMATIONS: u64 = 3;
pub(crate) const RESEND_AFTER_BLOCKS: u64 = 3;

fn key(seed: u8) -> PrivateKey {
    PrivateKey::from_bytes([seed; 32]).expect("key")
}

pub(crate) struct Setup {
    pub(crate) chain: SimChain,
    pub(crate) hub_key: PrivateKey,
    pub(crate) user: PrivateKey,
    pub(crate) config: HubConfig,
    pub(crate) calm: Rng,
}

impl Setup {
    pub(crate) fn new() -> Setup {
        let hub_key = key(7);
        let deployer = key(8).address();
        let user = key(9);
        let mut chain =
            SimChain::deploy(&super::repo_root(), deployer, hub_key.address(), U256::ZERO, 10, 40).expect("deploy");
        let domain = Domain { chain_id: SIM_CHAIN_ID, verifying_contract: chain.hub_contract };
        let (token, hub) = (chain.token, chain.hub_contract);
        for (who, amount) in [(hub_key.address(), 1_000 * UNIT), (user.address(), 100 * UNIT)] {
            chain
                .execute_now(deployer, token, IErc20::mintCall { to: who, amount: U256::from(amount) }.abi_encode())
                .expect("mint");
            chain
                .execute_now(who, token, IErc20::approveCall { spender: hub, amount: U256::MAX }.abi_encode())
                .expect("approve");
        }
        chain
            .execute_now(
                hub_key.address(),
                hub,
                IInfHub::depositReserveCall { amount: U256::from(500 * UNIT) }.abi_encode(),
            )
            .expect("reserve");
        chain
            .execute_now(hub_key.address(), hub, IInfHub::openChannelCall { user: user.address() }.abi_encode())
            .expect("open");
        chain
            .execute_now(
                user.address(),
                hub,
                IInfHub::depositCall { user: user.address(), amount: U256::from(50 * UNIT) }.abi_encode(),
            )
            .expect("deposit");
        let config = HubConfig {
            clock_ms: std::sync::Arc::new(std::sync::atomic::AtomicU64::new(infhub_sim::world::SIM_START_MS)),
            ledger: LedgerParams {
                domain,
                hub: hub_key.address(),
                max_withdrawal_expiry_blocks: 100,
                max_accounts: 10,
                max_queued_payouts: 10,
                max_payment_amount: Amount(1_000 * UNIT),
                transfer_ids_kept: 10,
            },
            confirmations: CONFIRMATIONS,
            start_block: chain.floor,
            resend_after_blocks: RESEND_AFTER_BLOCKS,
            snapshot_every_records: 1_000,
            max_payout_batch: 16,
            realize: infhub_core::duties::RealizePolicy::OFF,
            checkpoint_interval_blocks: 0,
            first_wallet: None,
        };
        Setup { chain, hub_key, user, config, calm: Rng::new(1) }
    }

    pub(crate) fn mine(&mut self, hub: &mut SimHub, blocks: u64) {
        for _ in 0..blocks {
            self.chain.mine(&mut self.calm, ChainFaults { delay_per_mille: 0, drop_per_mille: 0 });
            hub.tick(&mut self.chain, None, true).expect("hub tick");
        }
    }
}

#[test]
fn a_payout_lost_to_a_reorg_after_a_crash_is_sent_again_until_its_execution_is_confirmed() {
    let mut s = Setup::new();
    let disk = SimDisk::new();
    let mut hub = SimHub::start(disk.clone(), s.hub_key.clone(), s.config.clone(), &s.chain, None).expect("hub starts");
    s.mine(&mut hub, CONFIRMATIONS + 2);
    let account = hub.ledger().account(&s.user.address()).expect("the user's channel is tracked").clone();
    assert_eq!(account.channel.deposited, Amount(50 * UNIT), "the deposit is confirmed");

    // The user pays a plain address 7 INF; the hub takes the payout batch and sends it.
    let outside = Address::repeat_byte(0xD3);
    let debit = account.channel.next_debit(PaymentKind::External, outside, Amount(7 * UNIT), B256::repeat_byte(1));
    let signed = Signed::new(debit.expect("debit"), &s.config.ledger.domain, &s.user);
    let (out, _) = hub.execute(vec![Command::Transfer(signed)]).expect("durable").results.remove(0);
    assert!(matches!(out, Ok(Outcome::Paid { payout: Some(_), .. })), "{out:?}");
    hub.tick(&mut s.chain, None, true).expect("takes and sends the batch");
    assert_eq!(hub.ledger().payout_batches_in_flight().count(), 1);
    // Mined in the next block, which is not confirmed yet.
    s.chain.mine(&mut s.calm, ChainFaults { delay_per_mille: 0, drop_per_mille: 0 });
    assert_eq!(s.chain.token_balance(outside), U256::from(7 * UNIT), "executed at the head");

    // The hub crashes and restarts from its disk; at the head the batch looks executed.
    drop(hub);
    disk.restart(&mut Rng::new(2));
    let mut hub = SimHub::start(disk.clone(), s.hub_key.clone(), s.config.clone(), &s.chain, None).expect("restarts");
    assert_eq!(hub.ledger().payout_batches_in_flight().count(), 1, "its execution is not confirmed");
    // It sends the batch again (it has no memory of sending it); mined, the resend reverts as
    // already executed, and a hub that took a confirmed transaction as done would stop here.
    hub.tick(&mut s.chain, None, true).expect("tick");
    s.chain.mine(&mut s.calm, ChainFaults { delay_per_mille: 0, drop_per_mille: 0 });
    // A reorg takes both blocks back, and the mempool drops every transaction of them.
    let depth = s.chain.reorg(2, &mut Rng::new(3), 1_000);
    assert_eq!(depth, 2, "a reorg of both blocks");
    assert_eq!(s.chain.token_balance(outside), U256::ZERO, "the payout is gone from the chain");

    // The hub sends it again until its execution is confirmed: the recipient is paid once.
    s.mine(&mut hub, 4 * RESEND_AFTER_BLOCKS + CONFIRMATIONS + 2);
    assert_eq!(s.chain.token_balance(outside), U256::from(7 * UNIT), "the acknowledged payout arrived, once");
    assert_eq!(hub.ledger().payout_batches_in_flight().count(), 0, "its execution is confirmed");
    assert_eq!(hub.ledger().payouts_pending, Amount::ZERO);
    hub.ledger().check_invariants();
}
