//! The `infhub-sim` command: one seed, a range of seeds, or random seeds (a number of them, or
//! as many as fit in a time budget), run in parallel on every core; prints each run's figures
//! and, on failure, the seed, the step, the broken rule and the command that replays it
//! exactly; ends with a summary (seeds, failures with their replay lines, steps per second).

use crate::hub::InjectedBug;
use crate::world::{Faults, Report, SimConfig, World};
use crate::Violation;
use clap::{Parser, ValueEnum};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Bug {
    HubSkipsDispute,
    WalletSkipsDefence,
    TowerSkipsDefence,
    AckBeforeDurable,
    HubErasesCredits,
    HubDrainsReserve,
    HubWithholdsCredits,
    CheckpointUnderstatesCredit,
    CheckpointInventsDebit,
    ForwarderSkipsLearning,
}

/// Seeded deterministic simulation of the hub, wallets and contract, with faults.
#[derive(Parser, Debug)]
#[command(name = "infhub-sim", version)]
struct Args {
    /// Run this seed (replays a failure exactly).
    #[arg(long, conflicts_with_all = ["seeds", "random"])]
    seed: Option<u64>,
    /// Run the seeds FIRST..LAST (inclusive), e.g. 1..20.
    #[arg(long, value_parser = parse_range)]
    seeds: Option<(u64, u64)>,
    /// Run this many random seeds (each is printed before it runs).
    #[arg(long)]
    random: Option<u64>,
    /// Steps with faults on, per seed (a drain and final exits follow).
    #[arg(long, default_value_t = 300)]
    steps: u64,
    /// Number of hubs, each with its own contract on the one chain (at most 8).
    #[arg(long, default_value_t = 1)]
    hubs: usize,
    /// Number of wallets (shared out among the hubs).
    #[arg(long, default_value_t = 50)]
    wallets: usize,
    /// Wallets that cheat, per mille.
    #[arg(long, default_value_t = 150)]
    cheaters_per_mille: u64,
    /// Turn every fault off.
    #[arg(long)]
    no_faults: bool,
    /// Inject a known bug (the auditor must catch it).
    #[arg(long, value_enum)]
    inject_bug: Option<Bug>,
    /// Do not judge the hub's conduct on chain, only its effect on the parties (with an
    /// injected hub bug: shows the contract alone keeps honest parties whole).
    #[arg(long)]
    no_conduct_audit: bool,
    /// Run without watchtowers (each hub has one by default).
    #[arg(long)]
    no_towers: bool,
    /// Repository root holding `contracts/out` (default: found from the executable).
    #[arg(long)]
    repo_root: Option<PathBuf>,
    /// Seeds run in parallel (default: every core).
    #[arg(long)]
    jobs: Option<usize>,
    /// Stop starting seeds after the first failure.
    #[arg(long)]
    stop_on_failure: bool,
    /// With random seeds: stop starting new ones after this many seconds (with or without
    /// `--random N`, which then caps their number).
    #[arg(long)]
    for_secs: Option<u64>,
}

fn parse_range(s: &str) -> Result<(u64, u64), String> {
    let (a, b) = s.split_once("..").ok_or_else(|| format!("expected FIRST..LAST, got {s:?}"))?;
    let a: u64 = a.parse().map_err(|_| format!("bad first seed {a:?}"))?;
    let b: u64 = b.parse().map_err(|_| format!("bad last seed {b:?}"))?;
    if a > b {
        return Err(format!("empty range {s}"));
    }
    Ok((a, b))
}

/// The repository root: `INFHUB_ROOT` (what the scripts set; `INFHUB_REPO_ROOT` is read as
/// well), or the nearest ancestor of the current directory holding `contracts/out`.
pub fn default_repo_root() -> PathBuf {
    if let Some(p) = std::env::var_os("INFHUB_ROOT").or_else(|| std::env::var_os("INFHUB_REPO_ROOT")) {
        return PathBuf::from(p);
    }
    let mut dir = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    loop {
        if dir.join("contracts/out").is_dir() {
            return dir;
        }
        if !dir.pop() {
            return PathBuf::from(".");
        }
    }
}

/// Runs one seed, turning a panic anywhere in the hub, wallets or auditor into a violation.
pub fn run_seed(config: SimConfig) -> Result<Report, Violation> {
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| World::run(config)));
    match outcome {
        Ok(r) => r,
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(Violation::new(0, "no_panic", what))
        }
    }
}

/// Where the seeds of a run come from.
enum Seeds {
    /// These, in order.
    Listed(Vec<u64>),
    /// Random ones from a generator seeded by the clock: at most `limit`, and only while
    /// the time budget lasts (if one is given).
    Random { rng: crate::rng::Rng, limit: Option<u64>, drawn: u64 },
}

impl Seeds {
    fn next(&mut self, budget_left: bool) -> Option<u64> {
        match self {
            Seeds::Listed(v) => (!v.is_empty()).then(|| v.remove(0)),
            Seeds::Random { rng, limit, drawn } => {
                if !budget_left || limit.is_some_and(|l| *drawn >= l) {
                    return None;
                }
                *drawn += 1;
                Some(rng.next_u64() % 1_000_000_000)
            }
        }
    }
}

/// One finished seed.
struct Finished {
    seed: u64,
    secs: f64,
    result: Result<Report, Violation>,
}

fn report_line(seed: u64, secs: f64, r: &Report) -> String {
    format!(
        "seed {seed}: ok in {secs:.1}s — {} hub(s), {} steps, {} blocks, {} reorgs (depth {}), {} hub crashes, \
         {} payments acked ({} external), {} withdrawals, {} messages ({} dropped, {} duplicated), {} attacks \
         refused, {} hub closes defended, {} realizations, {} settlements, {} tower defences ({} tower crashes), {} checkpoints verified, \
         {} invoices paid by lock ({} lock debits acked, {} claims){}",
        r.hubs,
        r.steps,
        r.blocks,
        r.reorgs.0,
        r.reorgs.1,
        r.hub_crashes,
        r.payments_acked,
        r.payouts_acked,
        r.withdrawals,
        r.messages.0,
        r.messages.1,
        r.messages.2,
        r.attacks,
        r.hub_closes,
        r.realizations,
        r.settlements,
        r.towers.0,
        r.towers.1,
        r.checkpoints,
        r.invoices_paid,
        r.lock_debits_acked,
        r.locks_claimed,
        if r.hubs > 1 {
            format!(
                ", {} invoices paid across hubs ({} through a third hub, {} of them settled; {} forwards sent, {} \
                 refused, {} hops claimed, {} locks cancelled)",
                r.paid_across,
                r.routed_across,
                r.routed_settled,
                r.forwards_sent,
                r.forwards_refused,
                r.claimed_across,
                r.cancelled_across
            )
        } else {
            String::new()
        }
    )
}

/// The command that replays `seed` exactly as `args` ran it.
fn replay_command(args: &Args, seed: u64) -> String {
    let bug = args
        .inject_bug
        .map(|b| format!(" --inject-bug {}", b.to_possible_value().map_or("?".into(), |v| v.get_name().to_string())))
        .unwrap_or_default();
    format!(
        "replay: infhub-sim --seed {seed} --steps {} --hubs {} --wallets {} --cheaters-per-mille {}{}{}{}{}",
        args.steps,
        args.hubs,
        args.wallets,
        args.cheaters_per_mille,
        if args.no_faults { " --no-faults" } else { "" },
        bug,
        if args.no_conduct_audit { " --no-conduct-audit" } else { "" },
        if args.no_towers { " --no-towers" } else { "" }
    )
}

/// Entry point; returns the process exit code.
pub fn main() -> i32 {
    let args = Args::parse();
    let mut seeds = match (args.seed, args.seeds, args.random) {
        (Some(s), _, _) => Seeds::Listed(vec![s]),
        (None, Some((a, b)), _) => Seeds::Listed((a..=b).collect()),
        (None, None, random) if random.is_some() || args.for_secs.is_some() => {
            let base =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
            println!("random seeds from base {base} (each seed is printed; replay one with --seed)");
            Seeds::Random { rng: crate::rng::Rng::new(base), limit: random, drawn: 0 }
        }
        (None, None, _) => Seeds::Listed(vec![1]),
    };
    let bug = args.inject_bug.map(|b| match b {
        Bug::HubSkipsDispute => InjectedBug::HubSkipsDispute,
        Bug::WalletSkipsDefence => InjectedBug::WalletSkipsDefence,
        Bug::TowerSkipsDefence => InjectedBug::TowerSkipsDefence,
        Bug::AckBeforeDurable => InjectedBug::AckBeforeDurable,
        Bug::HubErasesCredits => InjectedBug::HubErasesCredits,
        Bug::HubDrainsReserve => InjectedBug::HubDrainsReserve,
        Bug::HubWithholdsCredits => InjectedBug::HubWithholdsCredits,
        Bug::CheckpointUnderstatesCredit => InjectedBug::CheckpointUnderstatesCredit,
        Bug::CheckpointInventsDebit => InjectedBug::CheckpointInventsDebit,
        Bug::ForwarderSkipsLearning => InjectedBug::ForwarderSkipsLearning,
    });
    let repo_root = args.repo_root.clone().unwrap_or_else(default_repo_root);
    let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let config_for = |seed: u64| SimConfig {
        seed,
        steps: args.steps,
        hubs: args.hubs,
        wallets: args.wallets,
        cheater_per_mille: args.cheaters_per_mille,
        faults: if args.no_faults { Faults::off() } else { Faults::on() },
        bug,
        audit_hub_conduct: !args.no_conduct_audit,
        towers: !args.no_towers,
        repo_root: repo_root.clone(),
    };
    let replay = |seed: u64| replay_command(&args, seed);
    let started = std::time::Instant::now();
    let budget_left = || args.for_secs.is_none_or(|s| started.elapsed().as_secs_f64() < s as f64);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let source = std::sync::Mutex::new(&mut seeds);
    let (tx, rx) = std::sync::mpsc::channel::<Finished>();
    let (mut ran, mut steps, mut failures) = (0u64, 0u64, Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            let tx = tx.clone();
            let (source, stop, config_for, budget_left) = (&source, &stop, &config_for, &budget_left);
            scope.spawn(move || loop {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                let Some(seed) = source.lock().unwrap_or_else(|p| p.into_inner()).next(budget_left()) else { return };
                let t = std::time::Instant::now();
                let result = run_seed(config_for(seed));
                if tx.send(Finished { seed, secs: t.elapsed().as_secs_f64(), result }).is_err() {
                    return;
                }
            });
        }
        drop(tx);
        for f in rx {
            ran += 1;
            match &f.result {
                Ok(r) => {
                    steps += r.steps;
                    println!("{}", report_line(f.seed, f.secs, r));
                }
                Err(v) => {
                    println!("seed {}: FAILED at {v}", f.seed);
                    println!("{}", replay(f.seed));
                    failures.push((f.seed, v.rule));
                    if args.stop_on_failure {
                        stop.store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
        }
    });
    let secs = started.elapsed().as_secs_f64();
    println!(
        "summary: {ran} seeds, {} failed, {steps} steps in {secs:.0}s on {jobs} jobs ({:.0} steps/s, {:.2} s per seed per job)",
        failures.len(),
        steps as f64 / secs.max(1e-9),
        secs * jobs as f64 / (ran.max(1) as f64)
    );
    for (seed, rule) in &failures {
        println!("  failed: seed {seed} ({rule}); {}", replay(*seed));
    }
    i32::from(!failures.is_empty())
}
