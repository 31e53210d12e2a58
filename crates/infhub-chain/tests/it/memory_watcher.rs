//! The watcher over the in-process chain: confirmation depth, reorgs above and below it,
//! restart, catch-up, and a seeded random walk of extensions and reorgs.

use alloy::primitives::{Address, B256, U256};
use alloy::sol_types::SolEvent;
use infhub_chain::bindings::IInfHub;
use infhub_chain::source::memory::MemoryChain;
use infhub_chain::source::ChainSource;
use infhub_chain::watcher::{WatchEvent, Watcher, WatcherConfig};
use infhub_chain::ChainError;
use infhub_core::ledger::{ChainEvent, LogPosition};
use infhub_core::Amount;

fn config(confirmations: u64) -> WatcherConfig {
    WatcherConfig { confirmations, max_blocks_per_poll: 50, max_log_range_blocks: 7, start_block: 1 }
}

/// A `Deposited` log for `user` with running total `total`.
fn deposit_log(user: u8, total: u64) -> (Vec<B256>, Vec<u8>) {
    let e = IInfHub::Deposited {
        user: Address::repeat_byte(user),
        epoch: 1,
        from: Address::repeat_byte(user),
        amount: U256::from(1),
        totalDeposited: U256::from(total),
    };
    let d = e.encode_log_data();
    (d.topics().to_vec(), d.data.to_vec())
}

fn deposit_event(user: u8, total: u64) -> ChainEvent {
    ChainEvent::Deposited { user: Address::repeat_byte(user), epoch: 1, total_deposited: Amount(total as u128) }
}

fn confirmed(events: &[WatchEvent]) -> Vec<(LogPosition, ChainEvent)> {
    events
        .iter()
        .filter_map(|e| match e {
            WatchEvent::Confirmed { at, event } => Some((*at, *event)),
            _ => None,
        })
        .collect()
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(f)
}

#[test]
fn an_event_is_seen_at_once_and_confirmed_after_the_depth() {
    block_on(async {
        let chain = MemoryChain::new();
        let mut w = Watcher::new(chain.clone(), config(3), 0).expect("watcher");
        let b = chain.push_block(vec![deposit_log(1, 10)]);
        let first = w.poll().await.expect("poll");
        assert!(matches!(first.as_slice(), [WatchEvent::Seen { at, .. }] if at.block == b), "{first:?}");
        chain.push_block(vec![]);
        assert!(confirmed(&w.poll().await.expect("poll")).is_empty(), "confirmed with 2 of 3 blocks");
        chain.push_block(vec![]);
        let third = w.poll().await.expect("poll");
        assert_eq!(confirmed(&third), vec![(LogPosition { block: b, log_index: 0 }, deposit_event(1, 10))]);
        assert_eq!(third.last(), Some(&WatchEvent::ConfirmedThrough { block: b }));
        assert_eq!(w.confirmed_through(), b);
    });
}

#[test]
fn a_reorg_before_confirmation_withdraws_the_seen_deposit() {
    block_on(async {
        let chain = MemoryChain::new();
        let mut w = Watcher::new(chain.clone(), config(4), 0).expect("watcher");
        chain.push_block(vec![]);
        let b = chain.push_block(vec![deposit_log(1, 10)]);
        w.poll().await.expect("poll");
        chain.rewind(1);
        chain.push_block(vec![deposit_log(2, 20)]);
        let after = w.poll().await.expect("poll");
        assert!(after.iter().any(|e| matches!(e, WatchEvent::Disconnected { block, .. } if *block == b)), "{after:?}");
        assert!(after.iter().any(|e| matches!(e, WatchEvent::Seen { event, .. } if *event == deposit_event(2, 20))));
        for _ in 0..4 {
            chain.push_block(vec![]);
        }
        let events = w.poll().await.expect("poll");
        assert_eq!(confirmed(&events), vec![(LogPosition { block: b, log_index: 0 }, deposit_event(2, 20))]);
    });
}

#[test]
fn a_reorg_below_the_confirmed_height_stops_the_watcher() {
    block_on(async {
        let chain = MemoryChain::new();
        let mut w = Watcher::new(chain.clone(), config(2), 0).expect("watcher");
        for i in 0..5 {
            chain.push_block(vec![deposit_log(1, i + 1)]);
        }
        w.poll().await.expect("poll");
        assert_eq!(w.confirmed_through(), 4);
        chain.rewind(3);
        chain.push_block(vec![]);
        chain.push_block(vec![]);
        chain.push_block(vec![]);
        let err = w.poll().await.expect_err("deep reorg");
        assert!(matches!(err, ChainError::ReorgBeyondConfirmations { block: 4, .. }), "{err}");
    });
}

#[test]
fn a_restarted_watcher_resumes_after_the_confirmed_block() {
    block_on(async {
        let chain = MemoryChain::new();
        let mut w = Watcher::new(chain.clone(), config(2), 0).expect("watcher");
        for i in 0..6 {
            chain.push_block(vec![deposit_log(1, i + 1)]);
        }
        let before = confirmed(&w.poll().await.expect("poll"));
        assert_eq!(before.len(), 5);
        let through = w.confirmed_through();
        drop(w);
        chain.push_block(vec![deposit_log(1, 7)]);
        let mut w = Watcher::new(chain.clone(), config(2), through).expect("watcher");
        let after = confirmed(&w.poll().await.expect("poll"));
        assert_eq!(after, vec![(LogPosition { block: 6, log_index: 0 }, deposit_event(1, 6))]);
    });
}

#[test]
fn catch_up_delivers_a_long_history_in_order_exactly_once() {
    block_on(async {
        let chain = MemoryChain::new();
        let mut expected = Vec::new();
        for i in 1..=2_000u64 {
            let logs = if i % 13 == 0 { vec![deposit_log(3, i), deposit_log(4, i)] } else { vec![] };
            let n = chain.push_block(logs);
            if i % 13 == 0 {
                expected.push((LogPosition { block: n, log_index: 0 }, deposit_event(3, i)));
                expected.push((LogPosition { block: n, log_index: 1 }, deposit_event(4, i)));
            }
        }
        let mut w = Watcher::new(chain.clone(), config(5), 0).expect("watcher");
        let mut got = Vec::new();
        for _ in 0..100 {
            got.extend(confirmed(&w.poll().await.expect("poll")));
            if w.confirmed_through() == 1_996 {
                break;
            }
        }
        assert_eq!(w.confirmed_through(), 1_996);
        let want: Vec<_> = expected.into_iter().filter(|(at, _)| at.block <= 1_996).collect();
        assert_eq!(got, want);
    });
}

/// xorshift64*: a tiny deterministic generator for the seeded walk.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn seeded_walk_of_extensions_and_shallow_reorgs_confirms_the_canonical_events_once() {
    let seed: u64 = std::env::var("INFHUB_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_c4a1);
    println!("seed = {seed} (rerun with INFHUB_SEED={seed})");
    block_on(async {
        let confirmations = 4;
        let mut rng = Rng(seed | 1);
        let chain = MemoryChain::new();
        let mut w = Watcher::new(chain.clone(), config(confirmations), 0).expect("watcher");
        let mut got = Vec::new();
        let mut total = 0u64;
        for _ in 0..600 {
            match rng.below(10) {
                0..=5 => {
                    let logs = (0..rng.below(3))
                        .map(|_| {
                            total += 1;
                            deposit_log(1 + rng.below(4) as u8, total)
                        })
                        .collect();
                    chain.push_block(logs);
                }
                6 => {
                    // Never below the confirmed height (that case has its own test).
                    let room = chain.head().await.expect("head") - w.confirmed_through();
                    if room > 0 {
                        chain.rewind(1 + rng.below(room.min(confirmations - 1)));
                    }
                }
                _ => {
                    got.extend(confirmed(&w.poll().await.expect("poll")));
                }
            }
        }
        got.extend(confirmed(&w.poll().await.expect("poll")));
        // What the final canonical chain holds up to the confirmed height.
        let through = w.confirmed_through();
        let mut want = Vec::new();
        for n in 1..=through {
            let b = chain.block(n).await.expect("block").expect("exists");
            for l in chain.logs_in_block(b.hash).await.expect("logs") {
                let ev = infhub_chain::events::decode_event(&l).expect("decode").expect("hub event");
                want.push((LogPosition { block: n, log_index: l.log_index }, ev));
            }
        }
        assert_eq!(got, want, "seed {seed}");
        let mut positions: Vec<_> = got.iter().map(|(at, _)| *at).collect();
        positions.dedup();
        assert_eq!(positions.len(), got.len(), "an event was confirmed twice (seed {seed})");
    });
}
