//! The node's command line, shared by the `infhub-node` binary and the `infhub` command:
//! `run` (serve against a configured chain) and `dev` (local anvil, contracts, funded test
//! users, embedded defaults). Flags and configuration only; the work is in [`crate::run`].

use crate::config::Config;
use clap::Subcommand;
use std::path::PathBuf;
use tokio::sync::watch;

/// The node's commands.
#[derive(Subcommand, Debug)]
pub enum NodeCommand {
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
    /// A stateless front-end: serves the API, checks transfers' signatures and forwards them to
    /// the writer's sequencer stream; every other request goes to the writer's HTTP API.
    Frontend {
        /// HTTP listen address.
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: String,
        /// The writer's `node.sequencer_listen` address.
        #[arg(long)]
        writer: String,
        /// The writer's HTTP API (e.g. http://127.0.0.1:8080).
        #[arg(long)]
        writer_http: String,
        /// The writer's `node.sequencer_token`.
        #[arg(long, env = "INFHUB_SEQUENCER_TOKEN", hide_env_values = true)]
        token: String,
    },
    /// Start anvil, deploy the contracts and serve with embedded development defaults.
    Dev {
        /// HTTP listen address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Data directory (a fresh temporary one if not given).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Listen address of the development watchtower (it uses test key 5).
        #[arg(long, default_value = "127.0.0.1:8645")]
        tower_listen: String,
        /// Do not start the development watchtower.
        #[arg(long)]
        no_tower: bool,
        /// Keep the ledger in PostgreSQL: a throwaway pg_auto_failover formation (a monitor, a
        /// primary and two standbys, one synchronous; the machine's PostgreSQL 15) on loopback
        /// ports, in the data directory.
        #[arg(long)]
        postgres: bool,
        /// The web wallet's built files, served at `/wallet` (`scripts/dev` passes `web/dist`).
        #[arg(long)]
        web_wallet_dir: Option<PathBuf>,
    },
}

/// Starts logging to stderr with a tracing filter.
pub fn init_logs(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| "info".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_ansi(ansi).try_init();
}

/// A receiver that turns true on SIGINT (Ctrl-C) or SIGTERM.
pub fn shutdown_signal() -> watch::Receiver<bool> {
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

/// Runs a node command until shutdown.
pub async fn execute(command: NodeCommand) -> Result<(), String> {
    match command {
        NodeCommand::Run { config, listen, rpc_url, data_dir } => {
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
            crate::run(c, shutdown_signal(), None).await.map_err(|e| e.to_string())
        }
        NodeCommand::Frontend { listen, writer, writer_http, token } => {
            init_logs("info");
            let config = crate::frontend::FrontendConfig { listen, writer, writer_http, token };
            crate::frontend::run(config, shutdown_signal()).await
        }
        NodeCommand::Dev { listen, data_dir, tower_listen, no_tower, postgres, web_wallet_dir } => {
            init_logs("info");
            let (anvil, mut config, _tmp) =
                crate::dev::environment(listen, data_dir).await.map_err(|e| e.to_string())?;
            if let Some(dir) = web_wallet_dir {
                config.node.wallet_dir = dir;
            }
            // Stopped (after the node) when dropped at the end of this arm.
            let _databases = if postgres { Some(crate::dev::postgres(&mut config)?) } else { None };
            let shutdown = shutdown_signal();
            let tower_url = (!no_tower).then(|| format!("http://{tower_listen}"));
            let tower = if no_tower {
                None
            } else {
                let t = crate::dev::tower_config(&anvil, &config, tower_listen).map_err(|e| e.to_string())?;
                let rx = shutdown.clone();
                Some(tokio::spawn(async move {
                    if let Err(e) = infhub_tower::run(t, rx, None).await {
                        tracing::warn!(error = %e, "the development tower stopped; the hub runs on without it");
                    }
                }))
            };
            eprintln!("{}", crate::dev::banner(&anvil, &config, tower_url.as_deref()));
            let result = crate::run(config, shutdown, None).await.map_err(|e| e.to_string());
            if let Some(t) = tower {
                let _ = t.await;
            }
            drop(anvil);
            result
        }
    }
}
