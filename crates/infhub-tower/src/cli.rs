//! `infhub tower` / `infhub-tower`: flags for the watchtower, then [`crate::run`].

use crate::TowerConfig;
use clap::Args;
use infhub_chain::sender::SenderConfig;
use infhub_core::tower::TowerTerms;
use infhub_core::{Address, PrivateKey};
use std::path::PathBuf;

/// The tower's flags (each also read from the environment).
#[derive(Args, Debug, Clone)]
pub struct TowerArgs {
    /// JSON-RPC URL of the chain.
    #[arg(long, env = "INFHUB_TOWER_RPC_URL", default_value = "http://127.0.0.1:8545")]
    pub rpc_url: String,
    /// The hub contract to watch.
    #[arg(long, env = "INFHUB_TOWER_CONTRACT")]
    pub contract: Address,
    /// File holding the tower's private key (hex); it pays gas and earns fees.
    #[arg(long, env = "INFHUB_TOWER_KEY_FILE")]
    pub key_file: PathBuf,
    /// HTTP listen address.
    #[arg(long, env = "INFHUB_TOWER_LISTEN", default_value = "127.0.0.1:8645")]
    pub listen: String,
    /// Directory of the appointment log.
    #[arg(long, env = "INFHUB_TOWER_DATA_DIR", default_value = "tower-data")]
    pub data_dir: PathBuf,
    /// Blocks after a close begins left to the user's own wallet.
    #[arg(long, default_value_t = TowerTerms::default().grace_blocks)]
    pub grace_blocks: u64,
    /// Most users watched.
    #[arg(long, default_value_t = TowerTerms::default().max_users)]
    pub max_users: usize,
    /// Most credits and offers accepted per user per minute.
    #[arg(long, default_value_t = TowerTerms::default().max_updates_per_user_per_minute)]
    pub max_updates_per_user_per_minute: u32,
    /// Milliseconds between chain polls.
    #[arg(long, default_value_t = 1_000)]
    pub poll_interval_ms: u64,
    /// Blocks a defence may wait unmined before its fee is raised.
    #[arg(long, default_value_t = SenderConfig::default().bump_after_blocks)]
    pub bump_after_blocks: u64,
}

impl TowerArgs {
    /// The configuration these flags describe.
    pub fn config(&self) -> Result<TowerConfig, String> {
        let text = std::fs::read_to_string(&self.key_file)
            .map_err(|e| format!("cannot read the key file {}: {e}", self.key_file.display()))?;
        let hex = text.trim().trim_start_matches("0x");
        let bytes = infhub_core::signature::hex_decode(hex)
            .filter(|b| b.len() == 32)
            .ok_or_else(|| format!("{}: expected 32 bytes of hex", self.key_file.display()))?;
        let mut raw = [0u8; 32];
        raw.copy_from_slice(&bytes);
        let key = PrivateKey::from_bytes(raw).map_err(|e| format!("{}: {e}", self.key_file.display()))?;
        if self.poll_interval_ms == 0 {
            return Err("poll_interval_ms must be positive".into());
        }
        Ok(TowerConfig {
            rpc_url: self.rpc_url.clone(),
            contract: self.contract,
            key,
            listen: self.listen.clone(),
            data_dir: self.data_dir.clone(),
            terms: TowerTerms {
                grace_blocks: self.grace_blocks,
                max_users: self.max_users,
                max_updates_per_user_per_minute: self.max_updates_per_user_per_minute,
            },
            poll_interval_ms: self.poll_interval_ms,
            max_body_bytes: 64 * 1024,
            sender: SenderConfig { bump_after_blocks: self.bump_after_blocks, ..SenderConfig::default() },
        })
    }
}

/// Runs the tower until Ctrl-C or SIGTERM.
pub async fn execute(args: TowerArgs) -> Result<(), String> {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).try_init();
    let config = args.config()?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let term = async move {
                match term.as_mut() {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! { _ = ctrl_c => {}, () = term => {} }
        }
        #[cfg(not(unix))]
        let _ = ctrl_c.await;
        let _ = tx.send(true);
    });
    crate::run(config, rx, None).await.map_err(|e| e.to_string())
}
