//! The development environment behind `infhub-node dev` (and the node's tests): a local anvil
//! with the token and hub contract deployed by anvil's first key (the hub), a funded reserve,
//! and test tokens for the other development keys. Never for real funds.

use crate::config::{Config, Secret};
use alloy::primitives::U256;
use alloy::sol_types::SolCall;
use infhub_chain::anvil::{self, Anvil, Deployment};
use infhub_chain::bindings::{IErc20, IInfHub};
use infhub_chain::ChainError;
use std::path::PathBuf;

/// Port of the development chain (anvil's usual 8545; another free port if it is taken).
pub const DEV_CHAIN_PORT: u16 = 8545;
/// Challenge period of the development contract, in blocks.
pub const DEV_CHALLENGE_PERIOD_BLOCKS: u64 = 20;
/// Reserve withdrawal notice of the development contract, in blocks.
pub const DEV_RESERVE_NOTICE_BLOCKS: u64 = 40;
/// Reserve the hub deposits (10 million INF).
pub fn dev_reserve() -> U256 {
    U256::from(10_000_000u64) * U256::from(10u64).pow(U256::from(18))
}
/// Tokens minted to each test account (1 million INF).
pub fn dev_user_tokens() -> U256 {
    U256::from(1_000_000u64) * U256::from(10u64).pow(U256::from(18))
}

/// Deploys onto `anvil`, funds the reserve and mints to the test accounts.
pub async fn deploy(anvil: &Anvil) -> Result<Deployment, ChainError> {
    deploy_with_reserve(anvil, dev_reserve()).await
}

/// [`deploy`] with a reserve of `reserve` (base units; the hub key keeps ten development
/// reserves of tokens either way).
pub async fn deploy_with_reserve(anvil: &Anvil, reserve: U256) -> Result<Deployment, ChainError> {
    deploy_with_periods(anvil, reserve, DEV_CHALLENGE_PERIOD_BLOCKS, DEV_RESERVE_NOTICE_BLOCKS).await
}

/// [`deploy_with_reserve`] with the contract's challenge period and reserve notice chosen (a
/// test chain with fast blocks needs more blocks for the same margin in wall time).
pub async fn deploy_with_periods(
    anvil: &Anvil,
    reserve: U256,
    challenge_period_blocks: u64,
    reserve_notice_blocks: u64,
) -> Result<Deployment, ChainError> {
    let p = anvil.provider()?;
    let mut hub = anvil::sender(&p, anvil::dev_key(0)).await?;
    let hub_addr = hub.address();
    let supply = dev_reserve() * U256::from(10u64);
    let d = anvil::deploy(&mut hub, hub_addr, supply, challenge_period_blocks, reserve_notice_blocks).await?;
    anvil::call_ok(&mut hub, d.token, IErc20::approveCall { spender: d.hub, amount: U256::MAX }.abi_encode()).await?;
    anvil::call_ok(&mut hub, d.hub, IInfHub::depositReserveCall { amount: reserve }.abi_encode()).await?;
    for i in 1..anvil::DEV_KEYS.len() {
        let to = infhub_core::PrivateKey::from_bytes(anvil::dev_key(i).0)
            .map_err(|e| ChainError::Config(e.to_string()))?
            .address();
        anvil::mint(&mut hub, d.token, to, dev_user_tokens()).await?;
    }
    Ok(d)
}

/// Deploys another hub contract on `d`'s token and point registry, operated by dev key
/// `key_index`, which approves it and deposits `reserve` of its tokens (a second or third hub on
/// the same chain, for multi-hub tests and the multi-hop benchmark).
pub async fn deploy_other_hub(
    provider: &alloy::providers::DynProvider,
    d: &Deployment,
    key_index: usize,
    reserve: U256,
    challenge_period_blocks: u64,
    reserve_notice_blocks: u64,
) -> Result<Deployment, ChainError> {
    let mut s = anvil::sender(provider, anvil::dev_key(key_index)).await?;
    let operator = s.address();
    let hub =
        anvil::deploy_hub(&mut s, d.token, d.point_registry, operator, challenge_period_blocks, reserve_notice_blocks)
            .await?;
    anvil::call_ok(&mut s, d.token, IErc20::approveCall { spender: hub.hub, amount: U256::MAX }.abi_encode()).await?;
    anvil::call_ok(&mut s, hub.hub, IInfHub::depositReserveCall { amount: reserve }.abi_encode()).await?;
    Ok(hub)
}

/// A configuration for a node serving `d` on `anvil`.
pub fn config(anvil: &Anvil, d: &Deployment, listen: String, data_dir: PathBuf) -> Config {
    let mut c = Config::default();
    c.node.listen = listen;
    c.node.data_dir = data_dir;
    c.node.operator_token = Secret("dev-operator-token-not-secret".into());
    c.node.payout_interval_ms = 500;
    // A development hub posts webhooks to a receiver on the same machine.
    c.node.webhooks_to_private_hosts = true;
    c.node.webhook_interval_ms = 200;
    c.chain.rpc_url = anvil.url.clone();
    c.chain.hub_contract = d.hub;
    c.chain.hub_key = Secret(anvil::dev_key(0));
    c.chain.start_block = d.block;
    c.chain.confirmations = 2;
    c.chain.poll_interval_ms = 200;
    // A local chain's gas is free and every wallet, test and benchmark comes from loopback.
    c.limits.registrations_per_hour = 1_000_000;
    c.limits.registrations_per_hour_per_address = 1_000_000;
    c
}

/// Starts anvil (1-second blocks, on [`DEV_CHAIN_PORT`] if free), deploys, and returns a ready configuration. The temporary
/// directory (when no data directory was given) lives as long as the returned guard.
pub async fn environment(
    listen: String,
    data_dir: Option<PathBuf>,
) -> Result<(Anvil, Config, Option<tempfile::TempDir>), ChainError> {
    let anvil = Anvil::spawn_preferring(DEV_CHAIN_PORT, &["--block-time", "1"])?;
    let d = deploy(&anvil).await?;
    let (dir, guard) = match data_dir {
        Some(d) => (d, None),
        None => {
            let t = tempfile::Builder::new()
                .prefix("infhub-dev-")
                .tempdir()
                .map_err(|e| ChainError::Process(e.to_string()))?;
            (t.path().to_path_buf(), Some(t))
        }
    };
    let c = config(&anvil, &d, listen, dir);
    tracing::info!(
        rpc = %anvil.url, token = %d.token, hub_contract = %d.hub, operator_token = %c.node.operator_token.0,
        "development chain ready; test keys are anvil's well-known keys 1..5"
    );
    Ok((anvil, c, guard))
}

/// Starts a throwaway pg_auto_failover formation (a monitor, a primary and two standbys, one
/// synchronous standby required) in `<data_dir>/postgres` and points `c` at it through a
/// multi-host URL that follows a failover, as in production.
pub fn postgres(c: &mut Config) -> Result<infhub_pg::formation::LocalFormation, String> {
    let dir = c.node.data_dir.join("postgres");
    std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    // The synchronous client must not run on the async runtime's threads.
    let formation = std::thread::spawn(move || infhub_pg::formation::LocalFormation::start(&dir))
        .join()
        .map_err(|_| "starting PostgreSQL panicked".to_string())?
        .map_err(|e| {
            format!("PostgreSQL: {e} (are postgresql-15 and pg_auto_failover installed? scripts/setup installs them)")
        })?;
    c.store.kind = crate::config::StoreKind::Postgres;
    c.store.postgres_url = crate::config::Secret(formation.url());
    c.store.require_synchronous_standby = true;
    tracing::info!(url = %formation.url(), "development PostgreSQL ready: a pg_auto_failover formation of three nodes");
    Ok(formation)
}

/// Test key that the development watchtower uses (it pays gas and earns fees).
pub const DEV_TOWER_KEY_INDEX: usize = 5;

/// The development watchtower for the hub of `c`: test key 5, its log beside the hub's data.
pub fn tower_config(anvil: &Anvil, c: &Config, listen: String) -> Result<infhub_tower::TowerConfig, ChainError> {
    let key = infhub_core::PrivateKey::from_bytes(anvil::dev_key(DEV_TOWER_KEY_INDEX).0)
        .map_err(|e| ChainError::Config(e.to_string()))?;
    Ok(infhub_tower::TowerConfig {
        rpc_url: anvil.url.clone(),
        contract: c.chain.hub_contract,
        key,
        listen,
        data_dir: c.node.data_dir.join("tower"),
        terms: infhub_core::tower::TowerTerms::default(),
        poll_interval_ms: 1_000,
        max_body_bytes: 64 * 1024,
        sender: infhub_chain::sender::SenderConfig::default(),
    })
}

/// What a developer needs to talk to the dev hub (and its watchtower, if `tower_url`).
pub fn banner(anvil: &Anvil, c: &Config, tower_url: Option<&str>) -> String {
    let mut out = format!(
        "infhub dev hub\n  API              http://{}  (OpenAPI: /openapi.json)\n  web wallet       http://{}/wallet/\n  explorer         http://{}/explorer\n  chain RPC        {}  ({})\n  \
         InfHub contract  {}\n  operator token   {}\n  confirmations    {}, challenge period {} blocks\n\
         test users (1,000,000 INF each; anvil's public test keys):\n",
        c.node.listen,
        c.node.listen,
        c.node.listen,
        anvil.url,
        anvil.ws_url,
        c.chain.hub_contract,
        c.node.operator_token.0,
        c.chain.confirmations,
        DEV_CHALLENGE_PERIOD_BLOCKS,
    );
    if c.store.kind == crate::config::StoreKind::Postgres {
        out.push_str(&format!(
            "  ledger store     PostgreSQL {} (pg_auto_failover: a primary and two standbys, one synchronous)\n",
            c.store.postgres_url.0
        ));
    }
    for i in 1..anvil::DEV_KEYS.len() {
        if let Ok(k) = infhub_core::PrivateKey::from_bytes(anvil::dev_key(i).0) {
            out.push_str(&format!("  {}  key {}\n", k.address(), anvil::DEV_KEYS[i]));
        }
    }
    out.push_str(&format!(
        "try it (another terminal):\n  export INFHUB_WALLET_KEY={} INFHUB_WALLET_DIR=/tmp/alice\n  \
         scripts/infhub wallet register --hub-url http://{} --rpc-url {}\n",
        anvil::DEV_KEYS[1],
        c.node.listen,
        anvil.url
    ));
    if let Some(url) = tower_url {
        out.push_str(&format!(
            "watchtower {url} (test key {DEV_TOWER_KEY_INDEX} pays its gas and earns its fees):\n  \
             scripts/infhub wallet towers add {url} --max-fee 1 --share-bps 1000\n"
        ));
    }
    out
}
