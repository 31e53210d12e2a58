//! The `infhub-node` binary: flags and configuration, then `infhub_node::run`.
//!
//! `infhub-node run [--config FILE]` serves against the configured RPC URL and contract.
//! `infhub-node dev` starts a local anvil, deploys the token and hub contract, funds the
//! reserve and test accounts, and serves with embedded defaults (development only).

use clap::{Parser, Subcommand};
use infhub_node::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;
use tokio::sync::watch;

#[derive(Parser)]
#[command(name = "infhub-node", version, about = "The infhub payment hub node")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve against an RPC URL and a deployed hub contract.
    Run {
        /// TOML configuration file (see docs/operations.md); INFHUB_* variables override it.
        #[arg(long, env = "INFHUB_CONFIG")]
        config: Option<PathBuf>,
        /// HTTP listen address (overrides the file).
        #[arg(long)]
        listen: Option<String>,
        /// JSON-RPC URL (overrides the file).
        #[arg(long)]
        rpc_url: Option<String>,
        /// Data directory (overrides the file).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Start anvil, deploy the contracts and serve with embedded development defaults.
    Dev {
        /// HTTP listen address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Data directory (a fresh temporary one if not given).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
}

fn init_logs(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| "info".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_ansi(ansi).try_init();
}

fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! { _ = ctrl_c => {}, _ = term => {} }
        tracing::info!("shutdown requested");
        let _ = tx.send(true);
    });
    rx
}

async fn main_async(cli: Cli) -> Result<(), String> {
    match cli.command {
        Cmd::Run { config, listen, rpc_url, data_dir } => {
            let mut c = Config::load(config.as_deref(), std::env::vars()).map_err(|e| e.to_string())?;
            if let Some(v) = listen {
                c.node.listen = v;
            }
            if let Some(v) = rpc_url {
                c.chain.rpc_url = v;
            }
            if let Some(v) = data_dir {
                c.node.data_dir = v;
            }
            init_logs(&c.node.log);
            infhub_node::run(c, shutdown_signal(), None).await.map_err(|e| e.to_string())
        }
        Cmd::Dev { listen, data_dir } => {
            init_logs("info");
            let (anvil, config, _tmp) =
                infhub_node::dev::environment(listen, data_dir).await.map_err(|e| e.to_string())?;
            eprintln!("{}", infhub_node::dev::banner(&anvil, &config));
            let result = infhub_node::run(config, shutdown_signal(), None).await.map_err(|e| e.to_string());
            drop(anvil);
            result
        }
    }
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
    match rt.block_on(main_async(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("infhub-node: {e}");
            ExitCode::FAILURE
        }
    }
}
