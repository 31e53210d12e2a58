//! The `infhub-node` binary: flags and configuration, then `infhub_node::run`.
//!
//! `infhub-node run [--config FILE]` serves against the configured RPC URL and contract.
//! `infhub-node dev` starts a local anvil, deploys the token and hub contract, funds the
//! reserve and test accounts, and serves with embedded defaults (development only).

use clap::Parser;
use infhub_node::cli::{execute, NodeCommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "infhub-node", version, about = "The infhub payment hub node")]
struct Cli {
    #[command(subcommand)]
    command: NodeCommand,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("infhub-node: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(execute(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("infhub-node: {e}");
            ExitCode::FAILURE
        }
    }
}
