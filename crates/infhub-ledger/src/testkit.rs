//! Fixtures the ledger's tests, the hub's and the PostgreSQL store's share (so each does not
//! write its own): deterministic keys, the tests' ledger parameters, a genesis that opens and
//! funds channels, and a user's signed payment built against the ledger's current state. Pure
//! functions, no IO.

use infhub_core::ledger::{ChainEvent, Command, Ledger, LedgerParams, LogPosition};
use infhub_core::messages::{PaymentKind, Signed};
use infhub_core::{Address, Amount, Domain, PrivateKey, B256, U256};

/// The private key whose last eight bytes are `seed` (nonzero).
pub fn key(seed: u64) -> PrivateKey {
    let mut b = [0u8; 32];
    b[24..].copy_from_slice(&seed.to_be_bytes());
    PrivateKey::from_bytes(b).expect("a nonzero seed is a valid key")
}

/// The tests' ledger parameters for `hub`, with room for `max_accounts`.
pub fn params(hub: &PrivateKey, max_accounts: usize) -> LedgerParams {
    LedgerParams {
        domain: Domain { chain_id: 31337, verifying_contract: Address::repeat_byte(0x1F) },
        hub: hub.address(),
        max_withdrawal_expiry_blocks: 100,
        max_accounts,
        max_queued_payouts: max_accounts,
        max_payment_amount: Amount(1_000_000_000),
        transfer_ids_kept: 1_000,
    }
}

/// Chain events as commands: a reserve of 1,000,000, then each user's channel opened by the hub
/// and funded with `deposit`.
pub fn genesis(hub: &PrivateKey, users: &[PrivateKey], deposit: Amount) -> Vec<Command> {
    let mut events = vec![ChainEvent::ReserveDeposited { reserve_after: Amount(1_000_000) }];
    for u in users {
        events.push(ChainEvent::ChannelOpened { user: u.address(), epoch: 1, opened_by: hub.address() });
        events.push(ChainEvent::Deposited { user: u.address(), epoch: 1, total_deposited: deposit });
    }
    events
        .into_iter()
        .enumerate()
        .map(|(i, event)| Command::Chain { at: LogPosition { block: 1, log_index: i as u64 }, event })
        .collect()
}

/// `from`'s signed internal payment of `amount` to `to`, with payment id `id`, as her wallet
/// would build it against `ledger`.
pub fn payment(ledger: &Ledger, from: &PrivateKey, to: Address, amount: u128, id: u64) -> Command {
    let ch = &ledger.account(&from.address()).expect("the payer has an account").channel;
    let d = ch
        .next_debit(PaymentKind::Internal, to, Amount(amount), B256::from(U256::from(id)))
        .expect("the payer can pay");
    Command::Transfer(Signed::new(d, &ledger.params.domain, from))
}
