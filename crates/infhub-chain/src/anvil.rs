//! A local chain for development and tests: starts the anvil binary installed by
//! `scripts/setup` (from npm, under `tools/node_modules`), and deploys the token and the hub
//! contract from forge's build output (`contracts/out`). Used by the anvil integration tests
//! and by the node's `dev` mode; production nodes connect to an existing RPC URL instead.

use crate::bindings::IErc20;
use crate::error::ChainError;
use crate::sender::{SenderConfig, TxOutcome, TxSender};
use alloy::primitives::{Address, Bytes, TxKind, B256, U256};
use alloy::providers::{DynProvider, Provider, ProviderBuilder};
use alloy::sol_types::{SolCall, SolValue};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// anvil's well-known development keys (public test keys; never for real funds).
pub const DEV_KEYS: [&str; 6] = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
];

/// The i-th development key as bytes.
pub fn dev_key(i: usize) -> B256 {
    DEV_KEYS[i].parse().expect("constant key")
}

/// The repository root: `INFHUB_ROOT` if set, else the nearest ancestor (of the running crate's
/// directory as cargo reports it at run time, then of the working directory) holding
/// `scripts/setup` and `contracts/`. Found at run time on purpose: a build cache shared by
/// two checkouts (CI keeps `CARGO_TARGET_DIR` outside the clone) reuses compiled crates, so a
/// path baked in at compile time can name another checkout.
pub fn repo_root() -> PathBuf {
    if let Some(p) = std::env::var_os("INFHUB_ROOT") {
        return PathBuf::from(p);
    }
    let starts = [std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from), std::env::current_dir().ok()];
    for start in starts.into_iter().flatten() {
        if let Some(root) =
            start.ancestors().find(|d| d.join("scripts/setup").is_file() && d.join("contracts").is_dir())
        {
            return root.to_path_buf();
        }
    }
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// A running anvil, killed on drop.
#[derive(Debug)]
pub struct Anvil {
    child: Child,
    /// Its HTTP URL.
    pub url: String,
    /// Its WebSocket URL.
    pub ws_url: String,
}

/// A free loopback TCP port (for anvil, and for nodes started by tests and the benchmark).
pub fn free_port() -> Result<u16, ChainError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| ChainError::Process(format!("no free port: {e}")))?;
    Ok(l.local_addr().map_err(|e| ChainError::Process(e.to_string()))?.port())
}

/// Most times anvil is started on a fresh port after losing one to another process.
const MAX_SPAWN_ATTEMPTS: usize = 5;

/// Whether something on `port` answers a JSON-RPC `eth_chainId` (a plain blocking HTTP/1.1
/// exchange with short timeouts; the caller checks it is its own process).
fn rpc_answers(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let timeout = Some(Duration::from_secs(2));
    if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
        return false;
    }
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}"#;
    let request = format!(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.take(64 * 1024).read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200") && answer.contains("\"result\"")
}

impl Anvil {
    /// Starts anvil on a free loopback port with extra arguments (e.g. `--block-time 1`).
    pub fn spawn(extra_args: &[&str]) -> Result<Anvil, ChainError> {
        Anvil::spawn_on(free_port()?, extra_args)
    }

    /// Starts anvil on `port` if it is free, else on a free one.
    pub fn spawn_preferring(port: u16, extra_args: &[&str]) -> Result<Anvil, ChainError> {
        let port = if TcpListener::bind(("127.0.0.1", port)).is_ok() { port } else { free_port()? };
        Anvil::spawn_on(port, extra_args)
    }

    fn spawn_on(port: u16, extra_args: &[&str]) -> Result<Anvil, ChainError> {
        // The platform binary itself: npm's `.bin/anvil` is a node wrapper, and killing the
        // wrapper would leave the real anvil running.
        let bin = repo_root().join("tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
        if !bin.exists() {
            return Err(ChainError::Process(format!("{} is missing: run scripts/setup", bin.display())));
        }
        // A free port can be taken by another process between our probe and anvil's bind; then
        // our anvil exits at once and the port answers for someone else. So the readiness
        // check is an RPC answer while our own child is alive, and a lost port is retried.
        let mut port = port;
        for _ in 0..MAX_SPAWN_ATTEMPTS {
            let child = Command::new(&bin)
                .args(["--port", &port.to_string(), "--silent"])
                .args(extra_args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| ChainError::Process(format!("starting anvil: {e}")))?;
            let mut anvil =
                Anvil { child, url: format!("http://127.0.0.1:{port}"), ws_url: format!("ws://127.0.0.1:{port}") };
            if anvil.wait_ready(port)? {
                return Ok(anvil);
            }
            port = free_port()?;
        }
        Err(ChainError::Process(format!("anvil lost its port {MAX_SPAWN_ATTEMPTS} times")))
    }

    /// Waits until this anvil answers `eth_chainId` on `port` while its process lives: true;
    /// false if the process exited (its port was taken); an error after 20 s.
    fn wait_ready(&mut self, port: u16) -> Result<bool, ChainError> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.child.try_wait().map_err(|e| ChainError::Process(format!("anvil: {e}")))?.is_some() {
                return Ok(false);
            }
            if rpc_answers(port) && self.child.try_wait().ok().flatten().is_none() {
                return Ok(true);
            }
            if Instant::now() > deadline {
                return Err(ChainError::Process("anvil did not answer on its port within 20 s".into()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// An HTTP provider for this anvil.
    pub fn provider(&self) -> Result<DynProvider, ChainError> {
        let url = self.url.parse().map_err(|e| ChainError::Config(format!("url: {e}")))?;
        Ok(ProviderBuilder::new().disable_recommended_fillers().connect_http(url).erased())
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects to an RPC URL (`http(s)://` or `ws(s)://`).
pub async fn connect(url: &str) -> Result<DynProvider, ChainError> {
    let p = ProviderBuilder::new().disable_recommended_fillers().connect(url).await.map_err(ChainError::rpc)?;
    Ok(p.erased())
}

/// Mines `blocks` blocks at once.
pub async fn mine(provider: &DynProvider, blocks: u64) -> Result<(), ChainError> {
    let _: serde_json::Value =
        provider.raw_request("anvil_mine".into(), (U256::from(blocks),)).await.map_err(ChainError::rpc)?;
    Ok(())
}

/// Replaces the newest `depth` blocks with empty ones (their transactions vanish).
pub async fn reorg(provider: &DynProvider, depth: u64) -> Result<(), ChainError> {
    let _: serde_json::Value = provider
        .raw_request("anvil_reorg".into(), (depth, Vec::<serde_json::Value>::new()))
        .await
        .map_err(ChainError::rpc)?;
    Ok(())
}

/// Deployed addresses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deployment {
    /// The INF token.
    pub token: Address,
    /// The hub contract.
    pub hub: Address,
    /// Block of the hub's deployment (where the watcher starts).
    pub block: u64,
    /// The chain id.
    pub chain_id: u64,
    /// The chain's point registry (spec §5.17), which the hub's settlement module reads.
    pub point_registry: Address,
}

fn creation_code(contract: &str) -> Result<Vec<u8>, ChainError> {
    let path = repo_root().join(format!("contracts/out/{contract}.sol/{contract}.json"));
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ChainError::Process(format!("{}: {e} (run `forge build` in contracts/)", path.display())))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| ChainError::Process(format!("{}: {e}", path.display())))?;
    let hex = json["bytecode"]["object"]
        .as_str()
        .ok_or_else(|| ChainError::Process(format!("{}: no bytecode.object", path.display())))?;
    alloy::primitives::hex::decode(hex).map_err(|e| ChainError::Process(format!("{}: bytecode: {e}", path.display())))
}

async fn create(sender: &mut TxSender, code: Vec<u8>) -> Result<(Address, u64), ChainError> {
    let nonce_before = sender.provider().get_transaction_count(sender.address()).await.map_err(ChainError::rpc)?;
    match sender.send_and_wait(TxKind::Create, code.into(), Duration::from_millis(20)).await? {
        TxOutcome::Mined { success: true, block, .. } => Ok((sender.address().create(nonce_before), block)),
        other => Err(ChainError::TransactionRejected { reason: format!("deployment: {other:?}") }),
    }
}

/// Deploys the token (minting `supply` to the deployer), a point registry and a hub operated by
/// `hub`.
pub async fn deploy(
    sender: &mut TxSender,
    hub: Address,
    supply: U256,
    challenge_period_blocks: u64,
    reserve_notice_blocks: u64,
) -> Result<Deployment, ChainError> {
    let mut token_code = creation_code("InfToken")?;
    token_code.extend_from_slice(&supply.abi_encode());
    let (token, _) = create(sender, token_code).await?;
    let (point_registry, _) = deploy_point_registry(sender).await?;
    deploy_hub(sender, token, point_registry, hub, challenge_period_blocks, reserve_notice_blocks).await
}

/// Deploys another hub contract operated by `hub` on an existing token and point registry (a
/// second hub on the same chain shares both): its settlement module, then the hub given it.
pub async fn deploy_hub(
    sender: &mut TxSender,
    token: Address,
    point_registry: Address,
    hub: Address,
    challenge_period_blocks: u64,
    reserve_notice_blocks: u64,
) -> Result<Deployment, ChainError> {
    let mut settlement_code = creation_code("InfHubSettlement")?;
    settlement_code.extend_from_slice(
        &(token, hub, challenge_period_blocks, reserve_notice_blocks, point_registry).abi_encode_params(),
    );
    let (settlement, _) = create(sender, settlement_code).await?;
    let mut hub_code = creation_code("InfHub")?;
    hub_code.extend_from_slice(
        &(token, hub, challenge_period_blocks, reserve_notice_blocks, settlement).abi_encode_params(),
    );
    let (hub_addr, block) = create(sender, hub_code).await?;
    let chain_id = sender.provider().get_chain_id().await.map_err(ChainError::rpc)?;
    Ok(Deployment { token, hub: hub_addr, block, chain_id, point_registry })
}

/// Deploys the chain's point registry (spec §5.17); its address and block.
pub async fn deploy_point_registry(sender: &mut TxSender) -> Result<(Address, u64), ChainError> {
    create(sender, creation_code("PointRegistry")?).await
}

/// Sends a call and waits for success; for tools and tests.
pub async fn call_ok(sender: &mut TxSender, to: Address, input: Vec<u8>) -> Result<u64, ChainError> {
    match sender.send_and_wait(TxKind::Call(to), Bytes::from(input), Duration::from_millis(20)).await? {
        TxOutcome::Mined { success: true, block, .. } => Ok(block),
        other => Err(ChainError::TransactionRejected { reason: format!("{other:?}") }),
    }
}

/// Mints test tokens (InfToken's open `mint`, for development only).
pub async fn mint(sender: &mut TxSender, token: Address, to: Address, amount: U256) -> Result<u64, ChainError> {
    call_ok(sender, token, IErc20::mintCall { to, amount }.abi_encode()).await
}

/// A sender with the default policy.
pub async fn sender(provider: &DynProvider, key: B256) -> Result<TxSender, ChainError> {
    TxSender::new(provider.clone(), key, SenderConfig::default()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port another process holds is not mistaken for anvil's: the start moves to a free port
    /// and the anvil returned is the one answering there.
    #[test]
    fn a_port_taken_by_someone_else_is_given_up_for_a_free_one() {
        let squatter = TcpListener::bind("127.0.0.1:0").expect("bind");
        let taken = squatter.local_addr().expect("addr").port();
        let anvil = Anvil::spawn_on(taken, &[]).expect("anvil");
        assert!(!anvil.url.ends_with(&format!(":{taken}")), "{} uses the taken port", anvil.url);
        let port: u16 = anvil.url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
        assert!(rpc_answers(port), "the anvil returned answers");
        assert!(!rpc_answers(taken), "the squatter is no JSON-RPC server");
    }
}
