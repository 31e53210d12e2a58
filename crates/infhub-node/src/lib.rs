//! The infhub hub node.
//!
//! `run(config, shutdown)` opens the durable ledger (replaying its log), rebuilds the account
//! history, connects to the chain, checks that the configured key is the contract's hub, and
//! runs three parts until shutdown: the ledger writer ([`engine`]), the chain task
//! ([`chain_task`]) and the HTTP/WebSocket API ([`api`]). The binary in `main.rs` only parses
//! flags and configuration.

pub mod api;
pub mod audit;
pub mod chain_task;
pub mod cli;
pub mod collect;
pub mod config;
pub mod dev;
pub mod engine;
pub mod explorer;
pub mod frontend;
pub mod links;

pub mod metrics;
pub mod openapi;
pub mod operator;
pub mod operator_tokens;
pub mod reconcile;
pub mod routing;
pub mod sequencer;
mod serve;
pub mod towers;
pub mod webhooks;

use crate::config::Config;
use crate::config::StoreKind;
use crate::engine::Node;
use alloy::providers::Provider;
use alloy::sol_types::SolCall;
use infhub_chain::bindings::IInfHub;
use infhub_chain::sender::{SenderConfig, TxSender};
use infhub_chain::source::RpcSource;
use infhub_chain::watcher::{Watcher, WatcherConfig};
use infhub_core::ledger::LedgerParams;
use infhub_core::{Domain, PrivateKey};
use infhub_hub::broadcast::ContractSender;
use infhub_hub::checkpoints::{Checkpointer, FsCheckpointStorage};
use infhub_hub::duties::ChainDuties;
use infhub_hub::ledger::{HubLedger, HubLedgerConfig, OpenError};
use infhub_ledger::fs::OsFs;
use std::net::SocketAddr;
use tokio::sync::watch;

/// Most blocks the watcher walks per poll.
pub const MAX_BLOCKS_PER_POLL: u64 = 500;
/// Widest block range of one `eth_getLogs` request.
pub const MAX_LOG_RANGE_BLOCKS: u64 = 2_000;

/// Why the node could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Configuration.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The ledger or its history could not be opened.
    #[error(transparent)]
    Open(#[from] infhub_hub::ledger::OpenError),
    /// Chain.
    #[error("chain: {0}")]
    Chain(#[from] infhub_chain::ChainError),
    /// The configured key is not the contract's hub.
    #[error("the hub key's address {key} is not the contract's hub {contract}")]
    NotTheHub {
        /// Address of the configured key.
        key: infhub_core::Address,
        /// The contract's hub.
        contract: infhub_core::Address,
    },
    /// The towers file of the data directory could not be read.
    #[error("towers.json: {0}")]
    Towers(String),
    /// The links of the data directory (spec §5.23) could not be read.
    #[error("links: {0}")]
    Links(String),
    /// The operator's audit log of the data directory could not be opened.
    #[error("{0}")]
    Audit(String),
    /// Another hub process took the store's writer lease while this one ran: it stopped
    /// without answering anything more.
    #[error("fenced: {0}")]
    Fenced(String),
    /// Shut down while waiting as a standby for the writer lease.
    #[error("shut down while waiting for the writer lease")]
    StandbyStopped,
    /// Network.
    #[error("listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The files of the data directory besides the ledger: towers, the audit log, operator tokens.
fn open_data_files(
    config: &Config,
    token: infhub_core::Address,
    provider: alloy::providers::DynProvider,
    registry_domain: Domain,
) -> Result<engine::DataFiles, NodeError> {
    let dir = &config.node.data_dir;
    let towers = towers::TowerRegistry::open(dir).map_err(|e| NodeError::Towers(e.to_string()))?;
    let audit = audit::AuditLog::open(dir).map_err(|e| NodeError::Audit(e.to_string()))?;
    let operator_tokens = operator_tokens::OperatorTokens::open(
        dir,
        &config.node.operator_token.0,
        config.node.operator_token_grace_secs,
    )
    .map_err(|e| NodeError::Audit(format!("operator tokens: {e}")))?;
    let links = links::Links::open(config, token, provider, registry_domain).map_err(NodeError::Links)?;
    let webhooks = webhooks::Webhooks::open(dir, config.node.webhooks_to_private_hosts)
        .map_err(|e| NodeError::Towers(format!("webhooks.json: {e}")))?;
    Ok(engine::DataFiles {
        webhooks: std::sync::Arc::new(webhooks),
        links: std::sync::Arc::new(links),
        towers: std::sync::Arc::new(towers),
        audit: std::sync::Arc::new(audit),
        operator_tokens: std::sync::Arc::new(operator_tokens),
    })
}

/// The answer `raw` of the view call `C`, named `what` in the error.
fn decode<C: SolCall>(raw: &[u8], what: &str) -> Result<C::Return, infhub_chain::ChainError> {
    C::abi_decode_returns(raw).map_err(|e| infhub_chain::ChainError::RpcAnswerMalformed(format!("{what}: {e}")))
}

/// Runs the node until `shutdown` becomes true. `bound` receives the listening address.
pub async fn run(
    config: Config,
    mut shutdown: watch::Receiver<bool>,
    bound: Option<tokio::sync::oneshot::Sender<SocketAddr>>,
) -> Result<(), NodeError> {
    config.validate()?;
    let provider = infhub_chain::anvil::connect(&config.chain.rpc_url).await?;
    let chain_id = provider.get_chain_id().await.map_err(infhub_chain::ChainError::rpc)?;
    let contract = config.chain.hub_contract;
    let sender_config = SenderConfig {
        bump_after_blocks: config.chain.bump_after_blocks,
        bump_percent: config.chain.bump_percent,
        max_fee_per_gas_cap_wei: config.chain.max_fee_per_gas_cap_wei,
        ..SenderConfig::default()
    };
    let sender = TxSender::new(provider.clone(), config.chain.hub_key.0, sender_config).await?;
    let read = |call: Vec<u8>| {
        let s = &sender;
        async move { s.call(contract, call.into()).await }
    };
    let hub = decode::<IInfHub::hubCall>(&read(IInfHub::hubCall {}.abi_encode()).await?, "hub()")?;
    if hub != sender.address() {
        return Err(NodeError::NotTheHub { key: sender.address(), contract: hub });
    }
    let token = decode::<IInfHub::tokenCall>(&read(IInfHub::tokenCall {}.abi_encode()).await?, "token()")?;
    let registry_raw = read(IInfHub::pointRegistryCall {}.abi_encode()).await?;
    let point_registry = decode::<IInfHub::pointRegistryCall>(&registry_raw, "pointRegistry()")?;

    let domain = Domain { chain_id, verifying_contract: contract };
    let key = PrivateKey::from_bytes(config.chain.hub_key.0 .0)
        .map_err(|e| config::ConfigError::Invalid(format!("hub_key: {e}")))?;
    let state = open_ledger(&config, domain, hub, key.clone(), shutdown.clone()).await?;
    let confirmed = state.ledger().block;
    let watcher_config = WatcherConfig {
        confirmations: config.chain.confirmations,
        max_blocks_per_poll: MAX_BLOCKS_PER_POLL,
        max_log_range_blocks: MAX_LOG_RANGE_BLOCKS,
        start_block: config.chain.start_block,
    };
    let source = RpcSource::new(provider.clone(), contract).with_point_registry(point_registry);
    let watcher = Watcher::new(source, watcher_config, confirmed)?;
    let mut duties = ChainDuties::new(watcher, ContractSender::new(sender), contract, config.duties(point_registry));
    let storage = FsCheckpointStorage::new(OsFs, config.node.data_dir.join("checkpoints"));
    let checkpointer = Checkpointer::new(config.checkpoints(), &key, chain_id, contract, Box::new(storage));
    let chain_handles = engine::ChainHandles { view: duties.view_handle(), checkpoints: checkpointer.shelf() };
    duties.set_checkpointer(checkpointer);

    let listen = config.node.listen.clone();
    let reopen = reopen_of(&config, domain, hub, &key);
    let projection = start_projection(&config);
    let files =
        open_data_files(&config, token, provider.clone(), Domain { chain_id, verifying_contract: point_registry })?;
    let towers = files.towers.clone();
    let (node, chain_rx, writer) = Node::start(config, domain, token, provider, state, chain_handles, files);
    if let Some(reopen) = reopen {
        node.set_reopen(reopen);
    }
    let _database_threads = database_threads(&node, projection);
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(|source| NodeError::Listen { addr: listen.clone(), source })?;
    let addr = listener.local_addr().map_err(|source| NodeError::Listen { addr: listen.clone(), source })?;
    tracing::info!(%addr, hub = %node.hub, contract = %contract, chain_id, "infhub node listening");
    if let Some(tx) = bound {
        let _ = tx.send(addr);
    }

    let chain = tokio::spawn(chain_task::ChainTask::new(node.clone(), duties).run(chain_rx, shutdown.clone()));
    if node.config.node.reconcile_interval_secs > 0 {
        let every = std::time::Duration::from_secs(node.config.node.reconcile_interval_secs);
        tokio::spawn(reconcile::run_periodically(node.clone(), every, shutdown.clone()));
    }
    tokio::spawn(towers::run_pusher(node.clone(), towers, shutdown.clone()));
    let every = std::time::Duration::from_millis(node.config.node.webhook_interval_ms);
    tokio::spawn(webhooks::run_deliveries(node.clone(), node.webhooks.clone(), every, shutdown.clone()));
    node.links.start(std::sync::Arc::downgrade(&node), shutdown.clone());
    tokio::spawn(watch_for_fencing(node.clone(), shutdown.clone()));
    listen_for_front_ends(&node, &shutdown).await?;
    let app = api::router(node.clone());
    let shed = node.clone();
    let serving = serve::serve(listener, app, &node.config.limits, shutdown.clone(), move || {
        shed.metrics.shed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    });
    // Open requests and streams get `shutdown_drain_ms` to finish once the shutdown begins.
    let drain = std::time::Duration::from_millis(node.config.limits.shutdown_drain_ms);
    let mut drain_shutdown = shutdown.clone();
    let fatal = node.clone();
    tokio::select! {
        reason = fatal.failed() => {
            // Another writer serves now: stop at once, answering nothing more.
            chain.abort();
            node.stop_writes();
            return Err(NodeError::Fenced(reason));
        }
        () = serving => {}
        _ = async move {
            let _ = drain_shutdown.wait_for(|s| *s).await;
            tokio::time::sleep(drain).await;
        } => tracing::warn!(drain_ms = drain.as_millis() as u64, "connections still open after the drain deadline; stopping anyway"),
    }
    let _ = shutdown.wait_for(|s| *s).await;
    let _ = chain.await;
    // Close the write queue; the writer answers what is queued, then exits.
    node.stop_writes();
    let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    tracing::info!("infhub node stopped");
    Ok(())
}

/// On PostgreSQL, the threads beside the writer: the projection's (started before the node)
/// and the replicas' monitor; their figures go to the node's metrics. Stopped when dropped.
fn database_threads(
    node: &std::sync::Arc<Node>,
    projection: Option<(infhub_pg::projection::Projector, std::sync::Arc<std::sync::atomic::AtomicU64>)>,
) -> (Option<infhub_pg::projection::Projector>, Option<infhub_pg::monitor::ReplicationMonitor>) {
    let projector = projection.map(|(projector, projected)| {
        *node.metrics.projected_seq.lock().unwrap_or_else(|p| p.into_inner()) = Some(projected);
        projector
    });
    let replication = (node.config.store.kind == config::StoreKind::Postgres).then(|| {
        let gauges = std::sync::Arc::new(infhub_pg::monitor::ReplicationGauges::default());
        *node.metrics.replication.lock().unwrap_or_else(|p| p.into_inner()) = Some(gauges.clone());
        infhub_pg::monitor::ReplicationMonitor::start(node.config.store.postgres_url.0.clone(), gauges)
    });
    (projector, replication)
}

/// With `node.sequencer_listen`, accepts stateless front-ends there (spec §7, front-ends).
async fn listen_for_front_ends(node: &std::sync::Arc<Node>, shutdown: &watch::Receiver<bool>) -> Result<(), NodeError> {
    if node.config.node.sequencer_listen.is_empty() {
        return Ok(());
    }
    let addr = node.config.node.sequencer_listen.clone();
    let front_ends = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| NodeError::Listen { addr: addr.clone(), source })?;
    tracing::info!(%addr, "listening for front-ends");
    let token = node.config.node.sequencer_token.0.clone();
    tokio::spawn(sequencer::serve_front_ends(node.clone(), front_ends, token, shutdown.clone()));
    Ok(())
}

/// The queryable projection on PostgreSQL, off the commit path, for as long as this process
/// writes: its thread and the last sequence number it projected.
fn start_projection(
    config: &Config,
) -> Option<(infhub_pg::projection::Projector, std::sync::Arc<std::sync::atomic::AtomicU64>)> {
    (config.store.kind == config::StoreKind::Postgres && config.store.projection).then(|| {
        let projected = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let projector = infhub_pg::projection::Projector::start(
            config.store.postgres_url.0.clone(),
            config.store.postgres_schema.clone(),
            projected.clone(),
        );
        (projector, projected)
    })
}

fn ledger_params_of(config: &Config, domain: Domain, hub: infhub_core::Address) -> LedgerParams {
    LedgerParams {
        domain,
        hub,
        max_withdrawal_expiry_blocks: config.limits.max_withdrawal_expiry_blocks,
        max_accounts: config.limits.max_accounts,
        max_queued_payouts: config.limits.max_queued_payouts,
        max_payment_amount: config.limits.max_payment_amount,
        transfer_ids_kept: config.limits.transfer_ids_kept,
    }
}

fn ledger_config_of(config: &Config) -> HubLedgerConfig {
    HubLedgerConfig {
        data_dir: config.node.data_dir.clone(),
        max_segment_bytes: config.node.max_segment_bytes,
        snapshot_every_records: config.node.snapshot_every_records,
        max_batch_commands: config.limits.max_batch_commands,
        // Snapshots are encoded and written off the writer thread (D27).
        background_snapshots: true,
    }
}

/// Opens the durable ledger (replaying its log) from the configured store and reports what
/// was recovered. On PostgreSQL the writer lease is taken first; a standby waits for it.
async fn open_ledger(
    config: &Config,
    domain: Domain,
    hub: infhub_core::Address,
    key: PrivateKey,
    shutdown: watch::Receiver<bool>,
) -> Result<HubLedger<OsFs>, NodeError> {
    let params = ledger_params_of(config, domain, hub);
    let ledger_config = ledger_config_of(config);
    let state = match config.store.kind {
        StoreKind::File => HubLedger::open(OsFs, &ledger_config, params, key)?,
        StoreKind::Postgres => {
            // The synchronous client runs on threads of its own, never on the runtime's.
            let options = pg_options(config);
            let (tx, rx) = tokio::sync::oneshot::channel();
            let wait = config.store.wait_for_lease;
            let retry = std::time::Duration::from_millis(config.store.lease_ms / 4);
            std::thread::spawn(move || {
                let _ = tx.send(open_on_postgres(&options, &ledger_config, params, key, wait, retry, &shutdown));
            });
            rx.await.map_err(|_| NodeError::StandbyStopped)??
        }
    };
    let recovery = state.recovery();
    tracing::info!(
        snapshot_seq = recovery.snapshot_seq,
        replayed = recovery.replayed,
        history = state.history().last_seq(),
        accounts = state.ledger().account_count(),
        confirmed_block = state.ledger().block,
        "ledger recovered"
    );
    Ok(state)
}

/// How often an idle node checks whether its store found itself fenced.
const FENCING_CHECK: std::time::Duration = std::time::Duration::from_millis(250);

/// Stops the node as soon as its store finds that another writer took it over, even while no
/// write comes (a fenced node must not keep answering reads from a state that is no longer the
/// hub's).
async fn watch_for_fencing(node: std::sync::Arc<Node>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            () = tokio::time::sleep(FENCING_CHECK) => {}
        }
        // While storage is down the node is reopening under its own name, which fences the
        // old store by design; a lease taken by another writer then stops the reopen.
        if node.storage_down().is_none() && node.read().fenced() {
            tracing::error!("fenced: another hub process took the writer lease; stopping");
            node.fail("storage fenced: another hub process took the writer lease (found by its renewal)".into());
            return;
        }
    }
}

/// On PostgreSQL, how the writer reopens the ledger after a storage failure (the same writer
/// name retakes its lease at once; a lease another writer holds stops the node).
fn reopen_of(
    config: &Config,
    domain: Domain,
    hub: infhub_core::Address,
    key: &PrivateKey,
) -> Option<Box<engine::Reopen>> {
    if config.store.kind != StoreKind::Postgres {
        return None;
    }
    let options = pg_options(config);
    let ledger_config = ledger_config_of(config);
    let params = ledger_params_of(config, domain, hub);
    let key = key.clone();
    Some(Box::new(move || {
        let (_never, shutdown) = watch::channel(false);
        let retry = std::time::Duration::ZERO;
        match open_on_postgres(&options, &ledger_config, params, key.clone(), false, retry, &shutdown) {
            Ok(state) => Ok(state),
            Err(NodeError::Open(OpenError::Storage(infhub_ledger::StoreError::LeaseHeld(why)))) => {
                Err(engine::ReopenError::Fatal(format!("fenced: {why}")))
            }
            Err(e) => Err(engine::ReopenError::Retry(e.to_string())),
        }
    }))
}

/// The PostgreSQL store's options from the configuration.
fn pg_options(config: &Config) -> infhub_pg::PgStoreOptions {
    let s = &config.store;
    let writer_name = if s.writer_name.is_empty() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}:{}", host.trim(), config.node.data_dir.display())
    } else {
        s.writer_name.clone()
    };
    infhub_pg::PgStoreOptions {
        url: s.postgres_url.0.clone(),
        schema: s.postgres_schema.clone(),
        require_synchronous_standby: s.require_synchronous_standby,
        commit_timeout_ms: s.commit_timeout_ms,
        writer_name,
        lease_ms: s.lease_ms,
        snapshot_chunk_bytes: infhub_pg::SNAPSHOT_CHUNK_BYTES,
        read_connections: s.history_read_connections,
    }
}

/// Takes the writer lease (waiting for it as a standby when `wait`) and opens the ledger on
/// PostgreSQL, the history index in the data directory reading the same database.
fn open_on_postgres(
    options: &infhub_pg::PgStoreOptions,
    ledger_config: &HubLedgerConfig,
    params: LedgerParams,
    key: PrivateKey,
    wait: bool,
    retry: std::time::Duration,
    shutdown: &watch::Receiver<bool>,
) -> Result<HubLedger<OsFs>, NodeError> {
    let mut announced = false;
    let mut unreachable = false;
    let store = loop {
        match infhub_pg::PgStore::open(options) {
            Ok(store) => break store,
            Err(infhub_ledger::StoreError::LeaseHeld(why)) if wait => {
                if !announced {
                    tracing::info!(%why, "standby: waiting for the writer lease");
                    announced = true;
                }
                unreachable = false;
            }
            // A standby that reached the database once outlives its outages and failovers (a
            // wrong URL at start is still an error at start).
            Err(infhub_ledger::StoreError::Database(why)) if wait && announced => {
                if !unreachable {
                    tracing::warn!(%why, "standby: the database is unreachable; still waiting");
                    unreachable = true;
                }
            }
            Err(e) => return Err(OpenError::Storage(e).into()),
        }
        if *shutdown.borrow() {
            return Err(NodeError::StandbyStopped);
        }
        std::thread::sleep(retry);
    };
    tracing::info!(schema = %options.schema, epoch = store.lease_epoch(), "writer lease held; replaying from PostgreSQL");
    let records = infhub_pg::PgRecords::new(&options.url, &options.schema, options.read_connections)
        .map_err(OpenError::Storage)?;
    Ok(HubLedger::open_on_store(OsFs, ledger_config, params, key, Box::new(store), records)?)
}
