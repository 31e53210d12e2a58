//! infhub's watchtower (spec §5.10a): defends offline users' channels.
//!
//! Wallets and hubs hand the tower each user's newest hub-signed credit (and the user's fee
//! offer); the tower keeps only the newest per user, durably, and when a watched channel
//! closes with less on record it submits the credit before the challenge period ends (after a
//! grace period that leaves the user's own wallet the first chance), then settles. The rules
//! are the core's [`infhub_core::tower::TowerBook`]; this crate adds the log ([`log`]), the
//! chain and the defence loop ([`service`]) and the HTTP API ([`api`]).
//! `run(config, shutdown)` runs them; the binary only parses flags.

pub mod api;
pub mod cli;
pub mod log;
pub mod service;

pub use service::{Tower, TowerConfig, TowerError};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;

/// Runs the tower until `shutdown` turns true. `bound` receives the listening address.
pub async fn run(
    config: TowerConfig,
    shutdown: watch::Receiver<bool>,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> Result<(), TowerError> {
    let tower = Arc::new(Tower::open(&config).await?);
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|source| TowerError::Listen { addr: config.listen.clone(), source })?;
    let addr = listener.local_addr().map_err(|source| TowerError::Listen { addr: config.listen.clone(), source })?;
    tracing::info!(%addr, tower = %tower.address(), contract = %tower.contract, "infhub tower listening");
    if let Some(tx) = bound {
        let _ = tx.send(addr);
    }
    let defence = {
        let tower = tower.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move { tower.defend(config.sender, config.poll_interval_ms, shutdown).await })
    };
    let app = api::router(tower, config.max_body_bytes);
    let mut stop = shutdown.clone();
    let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = stop.wait_for(|s| *s).await;
    });
    if let Err(e) = serve.await {
        tracing::warn!(error = %e, "tower api stopped");
    }
    let _ = defence.await;
    Ok(())
}
