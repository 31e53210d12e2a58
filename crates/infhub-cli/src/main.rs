//! `infhub`: one command for operators and users.
//!
//! `infhub dev` brings up a complete local system (anvil, contracts, hub node, funded test
//! users); `infhub run` serves a hub against a configured chain; `infhub operator …` drives a
//! running hub's operator API; `infhub wallet …` is the user's wallet; `infhub tower` runs a
//! watchtower. Flags only; the work is
//! in `infhub_node` and `infhub_wallet`.

use clap::{Parser, Subcommand};
use infhub_node::cli::NodeCommand;
use infhub_node::operator::OperatorArgs;
use infhub_wallet::cli::{WalletArgs, WalletCommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "infhub", version, about = "infhub: an off-chain payment hub for an ERC-20 token, and its wallet")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    #[command(flatten)]
    Node(NodeCommand),
    /// The user's wallet: keys, payments, withdrawal, exit, watch.
    Wallet(WalletArgs),
    /// The operator's commands against a running hub: liquidity, reserve top-up and
    /// withdrawal, hub close, solvency, reconciliation.
    Operator(OperatorArgs),
    /// A watchtower: defends offline users' channels with their newest credits (for a fee
    /// they offer, paid only out of what it saves them).
    Tower(infhub_tower::cli::TowerArgs),
}

async fn wallet(args: WalletArgs) -> Result<(), (String, String, bool)> {
    let json = args.json;
    if let WalletCommand::Watch { no_settle, .. } = args.command {
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        return infhub_wallet::cli::watch(&args, no_settle, stop).await.map_err(|e| (e.code(), e.to_string(), json));
    }
    match infhub_wallet::cli::run(&args).await {
        Ok(report) => {
            if json {
                println!("{}", report.json);
            } else {
                println!("{}", report.text);
            }
            Ok(())
        }
        Err(e) => Err((e.code(), e.to_string(), json)),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("infhub: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Cmd::Node(c) => infhub_node::cli::execute(c).await.map_err(|e| ("node_failed".to_string(), e, false)),
            Cmd::Wallet(args) => wallet(args).await,
            Cmd::Tower(args) => {
                infhub_tower::cli::execute(args).await.map_err(|e| ("tower_failed".to_string(), e, false))
            }
            Cmd::Operator(args) => match infhub_node::operator::execute(args).await {
                Ok(answer) => {
                    println!("{}", serde_json::to_string_pretty(&answer).unwrap_or_else(|_| answer.to_string()));
                    Ok(())
                }
                Err(e) => Err(("operator_failed".to_string(), e, false)),
            },
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, message, json)) => {
            if json {
                println!("{}", serde_json::json!({"error": {"code": code, "message": message}}));
            } else {
                eprintln!("infhub: {message}");
            }
            ExitCode::FAILURE
        }
    }
}
