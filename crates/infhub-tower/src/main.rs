//! `infhub-tower`: the watchtower binary (flags, then `infhub_tower::run`).

use clap::Parser;
use infhub_tower::cli::TowerArgs;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "infhub-tower", version, about = "infhub watchtower: defends offline users' channels")]
struct Cli {
    #[command(flatten)]
    args: TowerArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("infhub-tower: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(infhub_tower::cli::execute(cli.args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("infhub-tower: {e}");
            ExitCode::FAILURE
        }
    }
}
