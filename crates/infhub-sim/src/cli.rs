//! The `infhub-sim` command: one seed, a range of seeds, or random seeds; prints each run's
//! figures and, on failure, the seed, the step, the broken rule and the command that replays
//! it exactly.

use crate::hub::InjectedBug;
use crate::world::{Faults, Report, SimConfig, World};
use crate::Violation;
use clap::{Parser, ValueEnum};
use std::path::PathBuf;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Bug {
    HubSkipsDispute,
    WalletSkipsDefence,
    AckBeforeDurable,
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
    /// Number of wallets.
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
    /// Repository root holding `contracts/out` (default: found from the executable).
    #[arg(long)]
    repo_root: Option<PathBuf>,
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

/// Entry point; returns the process exit code.
pub fn main() -> i32 {
    let args = Args::parse();
    let seeds: Vec<u64> = match (args.seed, args.seeds, args.random) {
        (Some(s), _, _) => vec![s],
        (None, Some((a, b)), _) => (a..=b).collect(),
        (None, None, Some(n)) => {
            let mut r = crate::rng::Rng::new(
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64),
            );
            (0..n).map(|_| r.next_u64() % 1_000_000_000).collect()
        }
        (None, None, None) => vec![1],
    };
    let bug = args.inject_bug.map(|b| match b {
        Bug::HubSkipsDispute => InjectedBug::HubSkipsDispute,
        Bug::WalletSkipsDefence => InjectedBug::WalletSkipsDefence,
        Bug::AckBeforeDurable => InjectedBug::AckBeforeDurable,
    });
    let repo_root = args.repo_root.clone().unwrap_or_else(default_repo_root);
    let mut failures = 0;
    for seed in seeds {
        let config = SimConfig {
            seed,
            steps: args.steps,
            wallets: args.wallets,
            cheater_per_mille: args.cheaters_per_mille,
            faults: if args.no_faults { Faults::off() } else { Faults::on() },
            bug,
            repo_root: repo_root.clone(),
        };
        println!("seed {seed}: running {} steps, {} wallets", args.steps, args.wallets);
        let started = std::time::Instant::now();
        match run_seed(config) {
            Ok(r) => println!(
                "seed {seed}: ok in {:.1}s — {} steps, {} blocks, {} reorgs (depth {}), {} hub crashes, {} payments \
                 acked ({} external), {} withdrawals, {} messages ({} dropped, {} duplicated), {} attacks refused, \
                 {} hub closes defended, {} settlements",
                started.elapsed().as_secs_f64(),
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
                r.settlements
            ),
            Err(v) => {
                failures += 1;
                println!("seed {seed}: FAILED at {v}");
                let bug = args
                    .inject_bug
                    .map(|b| {
                        format!(
                            " --inject-bug {}",
                            b.to_possible_value().map_or("?".into(), |v| v.get_name().to_string())
                        )
                    })
                    .unwrap_or_default();
                println!(
                    "replay: infhub-sim --seed {seed} --steps {} --wallets {} --cheaters-per-mille {}{}{}",
                    args.steps,
                    args.wallets,
                    args.cheaters_per_mille,
                    if args.no_faults { " --no-faults" } else { "" },
                    bug
                );
            }
        }
    }
    if failures > 0 {
        1
    } else {
        0
    }
}
