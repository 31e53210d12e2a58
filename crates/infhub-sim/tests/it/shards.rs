//! The cross-shard payment protocol of `docs/sharding.md`, as a model under crashes, drops,
//! duplicates and reordering: every seed conserves money, settles every payment exactly once
//! (credited or refunded), and each deliberate flaw is caught.

use infhub_sim::shards::{run_shards, ShardBug, ShardConfig, ShardReport};

/// Fixed seeds, plus one from the clock (printed, so a failure replays).
fn seeds() -> Vec<u64> {
    let clock = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mut seeds: Vec<u64> = (1..=24).collect();
    seeds.push(clock);
    seeds
}

#[test]
fn cross_shard_payments_settle_exactly_once_through_crashes_and_a_lossy_network() {
    let mut total = ShardReport::default();
    for seed in seeds() {
        println!("shards seed {seed}");
        let r = run_shards(seed, ShardConfig::default())
            .unwrap_or_else(|v| panic!("seed {seed}: step {}: {}", v.step, v.what));
        total.debited += r.debited;
        total.cross_shard += r.cross_shard;
        total.refunded += r.refunded;
        total.crashes += r.crashes;
        total.dropped += r.dropped;
        total.duplicated += r.duplicated;
    }
    println!("{total:?}");
    // The faults and both outcomes actually happened.
    assert!(total.cross_shard > 500 && total.refunded > 25, "{total:?}");
    assert!(total.crashes > 100 && total.dropped > 100 && total.duplicated > 100, "{total:?}");
    // The same seed, the same run.
    assert_eq!(run_shards(7, ShardConfig::default()), run_shards(7, ShardConfig::default()));
}

#[test]
fn a_shard_that_forgets_applied_ids_across_a_crash_is_caught_crediting_twice() {
    let config = ShardConfig { bug: ShardBug::ForgetsAppliedIds, ..ShardConfig::default() };
    let caught = (1..=60).find_map(|seed| run_shards(seed, config).err().map(|v| (seed, v)));
    let (seed, v) = caught.expect("some seed of 60 catches a shard that forgets what it applied");
    println!("caught with seed {seed} at step {}: {}", v.step, v.what);
    assert!(v.what.contains("credited 2 times") || v.what.contains("refunded"), "{}", v.what);
}

#[test]
fn a_shard_that_drops_a_payment_before_it_is_acknowledged_is_caught_losing_money() {
    let config = ShardConfig { bug: ShardBug::DropsOutgoingOnSend, ..ShardConfig::default() };
    let caught = (1..=60).find_map(|seed| run_shards(seed, config).err().map(|v| (seed, v)));
    let (seed, v) = caught.expect("some seed of 60 catches a relay that forgets before the acknowledgement");
    println!("caught with seed {seed} at step {}: {}", v.step, v.what);
    assert!(v.what.contains("!="), "money not conserved: {}", v.what);
}
