//! The simulated chain: the real compiled contracts (forge's `contracts/out`) executed by an
//! in-process EVM (revm), block by block, with a mempool that can delay or drop
//! transactions, and reorganisations of any depth above the deployment.
//!
//! One token and any number of hub contracts (one per simulated hub) live on it. Every mined
//! block's logs of each hub contract are mirrored into that contract's
//! [`MemoryChain`](infhub_chain::source::memory::MemoryChain), the in-process `ChainSource`
//! the real watcher reads, so each hub follows this chain with the same watcher (and reorg
//! handling) it uses against a node. The EVM state after every block is kept, so
//! a reorg rewinds state exactly, and the auditor can read the contract as of the block the
//! hub's ledger has confirmed.

use crate::rng::Rng;
use alloy::primitives::{Address, Bytes, B256, U256};
use alloy::sol_types::{SolCall, SolValue};
use infhub_chain::bindings::{IErc20, IInfHub};
use infhub_chain::source::memory::MemoryChain;
use revm::context::{ContextTr, TxEnv};
use revm::context_interface::result::{ExecutionResult, Output};
use revm::database::{CacheDB, EmptyDB};
use revm::handler::{MainnetContext, MainnetEvm};
use revm::primitives::TxKind;
use revm::state::AccountInfo;
use revm::{Context, ExecuteCommitEvm, ExecuteEvm, MainBuilder, MainContext};
use std::collections::{HashMap, VecDeque};
use std::path::Path;

/// The chain id of the simulated chain.
pub const SIM_CHAIN_ID: u64 = 31_337;
/// Gas limit given to every simulated transaction.
const TX_GAS_LIMIT: u64 = 10_000_000;

type Db = CacheDB<EmptyDB>;
type Evm = MainnetEvm<MainnetContext<Db>>;

/// A transaction waiting in the mempool or included in a block.
#[derive(Clone, Debug)]
pub struct PendingTx {
    /// Simulator-wide id.
    pub id: u64,
    /// Sender.
    pub from: Address,
    /// Called contract.
    pub to: Address,
    /// Calldata.
    pub data: Bytes,
}

/// Where and how a transaction ended up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TxReceipt {
    /// Block it was mined in.
    pub block: u64,
    /// False if it reverted.
    pub success: bool,
    /// Gas it used.
    pub gas_used: u64,
}

struct MinedBlock {
    txs: Vec<PendingTx>,
    state: Db,
}

/// A transaction as it was mined (into a block a later reorg may take back): what the auditor
/// reads of the parties' conduct, whatever the contract made of it.
#[derive(Clone, Debug)]
pub struct MinedTx {
    /// Block it was mined in.
    pub block: u64,
    /// Sender.
    pub from: Address,
    /// Called contract.
    pub to: Address,
    /// Calldata.
    pub data: Bytes,
    /// False if it reverted.
    pub success: bool,
}

/// Chain faults, in per-mille per opportunity.
#[derive(Clone, Copy, Debug)]
pub struct ChainFaults {
    /// A pending transaction waits for a later block.
    pub delay_per_mille: u64,
    /// A pending transaction is dropped from the mempool (its sender must resend).
    pub drop_per_mille: u64,
}

/// The simulated chain.
pub struct SimChain {
    evm: Evm,
    blocks: Vec<MinedBlock>,
    /// Each hub contract and the chain source of its logs.
    hubs: Vec<(Address, MemoryChain)>,
    mempool: VecDeque<PendingTx>,
    receipts: HashMap<u64, TxReceipt>,
    next_tx_id: u64,
    /// Blocks below this number cannot be reorganised (the deployment).
    pub floor: u64,
    /// The token contract.
    pub token: Address,
    /// The first hub contract.
    pub hub_contract: Address,
    /// The chain's point registry, shared by every hub contract deployed here.
    pub point_registry: Address,
    /// Every revert reason seen, by transaction id (for reports).
    pub reverts: HashMap<u64, Bytes>,
    /// Transactions mined since the auditor last read them.
    mined_log: Vec<MinedTx>,
}

fn creation_code(root: &Path, contract: &str) -> Result<Vec<u8>, String> {
    let path = root.join(format!("contracts/out/{contract}.sol/{contract}.json"));
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: {e} (run `forge build` in contracts/ first)", path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let hex = json["bytecode"]["object"].as_str().ok_or_else(|| format!("{}: no bytecode.object", path.display()))?;
    alloy::primitives::hex::decode(hex).map_err(|e| format!("{}: bytecode: {e}", path.display()))
}

fn tx_env(from: Address, kind: TxKind, data: Bytes) -> TxEnv {
    TxEnv::builder()
        .caller(from)
        .kind(kind)
        .data(data)
        .gas_limit(TX_GAS_LIMIT)
        .gas_price(0)
        .chain_id(Some(SIM_CHAIN_ID))
        .build()
        .expect("well-formed simulated transaction")
}

fn new_evm(db: Db, number: u64) -> Evm {
    Context::mainnet()
        .with_db(db)
        .modify_cfg_chained(|c| {
            c.chain_id = SIM_CHAIN_ID;
            c.disable_nonce_check = true;
        })
        .modify_block_chained(|b| {
            b.number = U256::from(number);
            b.gas_limit = 1_000_000_000;
            b.basefee = 0;
        })
        .build_mainnet()
}

impl SimChain {
    /// A chain with the token and hub contracts deployed by `deployer` from the forge
    /// artifacts under `repo_root`, `supply` tokens minted to the deployer.
    pub fn deploy(
        repo_root: &Path,
        deployer: Address,
        hub_operator: Address,
        supply: U256,
        challenge_period_blocks: u64,
        reserve_notice_blocks: u64,
    ) -> Result<SimChain, String> {
        let mut db = Db::default();
        for a in [deployer, hub_operator] {
            db.insert_account_info(a, AccountInfo { balance: U256::from(10u128.pow(30)), ..Default::default() });
        }
        let evm = new_evm(db, 0);
        let genesis = MinedBlock { txs: Vec::new(), state: Db::default() };
        let mut chain = SimChain {
            evm,
            blocks: vec![genesis],
            hubs: Vec::new(),
            mempool: VecDeque::new(),
            receipts: HashMap::new(),
            next_tx_id: 1,
            floor: 0,
            token: Address::ZERO,
            hub_contract: Address::ZERO,
            point_registry: Address::ZERO,
            reverts: HashMap::new(),
            mined_log: Vec::new(),
        };
        chain.blocks[0].state = chain.evm.ctx.db_mut().clone();
        let mut token_code = creation_code(repo_root, "InfToken")?;
        token_code.extend_from_slice(&supply.abi_encode());
        chain.token = chain.create(deployer, token_code)?;
        chain.hub_contract =
            chain.deploy_hub(repo_root, deployer, hub_operator, challenge_period_blocks, reserve_notice_blocks)?;
        Ok(chain)
    }

    /// Deploys another hub contract for `hub_operator` on the same token (another hub in the
    /// same world); the deployment becomes the new floor of reorgs.
    pub fn deploy_hub(
        &mut self,
        repo_root: &Path,
        deployer: Address,
        hub_operator: Address,
        challenge_period_blocks: u64,
        reserve_notice_blocks: u64,
    ) -> Result<Address, String> {
        self.evm.ctx.db_mut().insert_account_info(
            hub_operator,
            AccountInfo { balance: U256::from(10u128.pow(30)), ..Default::default() },
        );
        if self.point_registry == Address::ZERO {
            self.point_registry = self.create(deployer, creation_code(repo_root, "PointRegistry")?)?;
        }
        let mut settlement_code = creation_code(repo_root, "InfHubSettlement")?;
        settlement_code.extend_from_slice(
            &(self.token, hub_operator, challenge_period_blocks, reserve_notice_blocks, self.point_registry)
                .abi_encode_params(),
        );
        let settlement = self.create(deployer, settlement_code)?;
        let mut hub_code = creation_code(repo_root, "InfHub")?;
        hub_code.extend_from_slice(
            &(self.token, hub_operator, challenge_period_blocks, reserve_notice_blocks, settlement).abi_encode_params(),
        );
        let source = MemoryChain::new();
        // The new contract's source holds the blocks before it too (empty of its logs).
        for _ in 1..self.blocks.len() {
            source.push_block(Vec::new());
        }
        let contract = self.create_with(deployer, hub_code, Some(source))?;
        self.floor = self.head() + 1;
        Ok(contract)
    }

    fn create(&mut self, from: Address, code: Vec<u8>) -> Result<Address, String> {
        self.create_with(from, code, None)
    }

    /// Deploys `code`; with `source`, the new contract is a hub whose logs it mirrors.
    fn create_with(&mut self, from: Address, code: Vec<u8>, source: Option<MemoryChain>) -> Result<Address, String> {
        let number = self.head() + 1;
        self.evm.ctx.block.number = U256::from(number);
        self.evm.ctx.block.timestamp = U256::from(number * 12);
        let tx = tx_env(from, TxKind::Create, code.into());
        let result = self.evm.transact_commit(tx).map_err(|e| format!("deployment failed: {e:?}"))?;
        let ExecutionResult::Success { output: Output::Create(_, Some(addr)), .. } = result else {
            return Err(format!("deployment reverted: {result:?}"));
        };
        if let Some(source) = source {
            self.hubs.push((addr, source));
        }
        self.seal(Vec::new(), Vec::new());
        Ok(addr)
    }

    /// The in-process chain source of `contract`'s logs, which its hub's watcher reads.
    pub fn source(&self, contract: Address) -> MemoryChain {
        self.hubs.iter().find(|(c, _)| *c == contract).map(|(_, s)| s.clone()).expect("a hub contract of this chain")
    }

    /// Every transaction mined since the last call, in order (a reorged one may reappear).
    pub fn take_mined(&mut self) -> Vec<MinedTx> {
        std::mem::take(&mut self.mined_log)
    }

    /// The newest block number.
    pub fn head(&self) -> u64 {
        self.blocks.len() as u64 - 1
    }

    /// Puts a transaction in the mempool; returns its id.
    pub fn submit(&mut self, from: Address, to: Address, data: Vec<u8>) -> u64 {
        let id = self.next_tx_id;
        self.next_tx_id += 1;
        self.mempool.push_back(PendingTx { id, from, to, data: data.into() });
        id
    }

    /// The receipt of transaction `id` on the canonical chain, if mined.
    pub fn receipt(&self, id: u64) -> Option<TxReceipt> {
        self.receipts.get(&id).copied()
    }

    fn seal(&mut self, txs: Vec<PendingTx>, mut logs: Vec<(Address, Vec<B256>, Vec<u8>)>) {
        for (contract, source) in &self.hubs {
            // Each hub's watcher reads its contract's logs and the point registry's.
            let mine = logs
                .iter()
                .filter(|(a, _, _)| a == contract || *a == self.point_registry)
                .map(|(_, t, d)| (t.clone(), d.clone()))
                .collect();
            let n = source.push_block(mine);
            assert_eq!(n, self.blocks.len() as u64, "header chain and EVM chain out of step");
        }
        logs.clear();
        let state = self.evm.ctx.db_mut().clone();
        self.blocks.push(MinedBlock { txs, state });
    }

    /// Mines one block from the mempool, applying `faults`.
    pub fn mine(&mut self, rng: &mut Rng, faults: ChainFaults) -> u64 {
        let number = self.head() + 1;
        self.evm.ctx.block.number = U256::from(number);
        self.evm.ctx.block.timestamp = U256::from(number * 12);
        let mut included = Vec::new();
        let mut waiting = VecDeque::new();
        let mut hub_logs = Vec::new();
        let hubs: Vec<Address> = self.hubs.iter().map(|(c, _)| *c).collect();
        while let Some(tx) = self.mempool.pop_front() {
            if rng.chance(faults.drop_per_mille) {
                continue;
            }
            if rng.chance(faults.delay_per_mille) {
                waiting.push_back(tx);
                continue;
            }
            let env = tx_env(tx.from, TxKind::Call(tx.to), tx.data.clone());
            let result = self.evm.transact_commit(env).expect("the simulated EVM refused a transaction");
            let gas_used = result.tx_gas_used();
            let success = match result {
                ExecutionResult::Success { logs, .. } => {
                    for log in logs {
                        if hubs.contains(&log.address) || log.address == self.point_registry {
                            hub_logs.push((log.address, log.data.topics().to_vec(), log.data.data.to_vec()));
                        }
                    }
                    true
                }
                ExecutionResult::Revert { output, .. } => {
                    self.reverts.insert(tx.id, output);
                    false
                }
                ExecutionResult::Halt { .. } => false,
            };
            self.receipts.insert(tx.id, TxReceipt { block: number, success, gas_used });
            self.mined_log.push(MinedTx { block: number, from: tx.from, to: tx.to, data: tx.data.clone(), success });
            included.push(tx);
        }
        self.mempool = waiting;
        self.seal(included, hub_logs);
        number
    }

    /// Replaces the newest `depth` blocks (never below the deployment) with nothing: their
    /// transactions go back to the mempool, except those `rng` drops.
    pub fn reorg(&mut self, depth: u64, rng: &mut Rng, drop_per_mille: u64) -> u64 {
        let depth = depth.min(self.head() + 1 - self.floor);
        if depth == 0 {
            return 0;
        }
        let mut returned = Vec::new();
        for _ in 0..depth {
            let b = self.blocks.pop().expect("above the floor");
            for tx in b.txs.into_iter().rev() {
                self.receipts.remove(&tx.id);
                returned.push(tx);
            }
        }
        returned.reverse();
        for tx in returned.into_iter().rev() {
            if !rng.chance(drop_per_mille) {
                self.mempool.push_front(tx);
            }
        }
        *self.evm.ctx.db_mut() = self.blocks.last().expect("genesis").state.clone();
        for (_, source) in &self.hubs {
            source.rewind(depth);
        }
        depth
    }

    /// Runs a read-only call against the newest state.
    pub fn call(&mut self, to: Address, data: Vec<u8>) -> Result<Bytes, String> {
        let tx = tx_env(Address::ZERO, TxKind::Call(to), data.into());
        let out = self.evm.transact(tx).map_err(|e| format!("{e:?}"))?;
        match out.result {
            ExecutionResult::Success { output, .. } => Ok(output.into_data()),
            other => Err(format!("call reverted: {other:?}")),
        }
    }

    /// Hub contract `contract`'s reserve and the channels of `users` after block `number`, read
    /// from one copy of that block's state.
    pub fn books_at(
        &self,
        number: u64,
        contract: Address,
        users: &[Address],
    ) -> Result<(U256, Vec<IInfHub::Channel>), String> {
        let state = &self.blocks.get(number as usize).ok_or_else(|| format!("no block {number}"))?.state;
        // Read through a reference to the block's state: no copy of it.
        let mut evm = Context::mainnet()
            .with_db(revm::database_interface::WrapDatabaseRef(state))
            .modify_cfg_chained(|c| {
                c.chain_id = SIM_CHAIN_ID;
                c.disable_nonce_check = true;
            })
            .modify_block_chained(|b| {
                b.gas_limit = 1_000_000_000;
                b.basefee = 0;
            })
            .build_mainnet();
        let mut call = |data: Vec<u8>| -> Result<Bytes, String> {
            let tx = tx_env(Address::ZERO, TxKind::Call(contract), data.into());
            match evm.transact(tx).map_err(|e| format!("{e:?}"))?.result {
                ExecutionResult::Success { output, .. } => Ok(output.into_data()),
                other => Err(format!("call reverted: {other:?}")),
            }
        };
        let raw = call(IInfHub::reserveCall {}.abi_encode())?;
        let reserve = IInfHub::reserveCall::abi_decode_returns(&raw).map_err(|e| e.to_string())?;
        let mut channels = Vec::with_capacity(users.len());
        for user in users {
            let raw = call(IInfHub::channelCall { user: *user }.abi_encode())?;
            channels.push(IInfHub::channelCall::abi_decode_returns(&raw).map_err(|e| e.to_string())?);
        }
        Ok((reserve, channels))
    }

    /// What the settlement of `user`'s channel in `epoch` paid, from its `Settled` log on the
    /// canonical chain (as the wallet reads it).
    pub fn settled_paid(&self, contract: Address, user: Address, epoch: u64) -> Option<u128> {
        use alloy::sol_types::SolEvent;
        use infhub_chain::source::ChainSource;
        let logs = crate::hub::ready(self.source(contract).logs_in_range(0, self.head())).ok()?;
        logs.iter().find_map(|log| {
            let e = IInfHub::Settled::decode_raw_log(log.topics.iter().copied(), &log.data).ok()?;
            (e.user == user && e.epoch == epoch).then(|| u128::try_from(e.paid).ok()).flatten()
        })
    }

    /// Sends a transaction and mines it at once, outside the fault model (set-up only).
    pub fn execute_now(&mut self, from: Address, to: Address, data: Vec<u8>) -> Result<(), String> {
        let id = self.submit(from, to, data);
        let mut calm = Rng::new(0);
        self.mine(&mut calm, ChainFaults { delay_per_mille: 0, drop_per_mille: 0 });
        match self.receipt(id) {
            Some(TxReceipt { success: true, .. }) => Ok(()),
            _ => Err(format!("set-up transaction {id} failed: {:?}", self.reverts.get(&id))),
        }
    }

    /// `balanceOf(owner)` of the token at the newest state.
    pub fn token_balance(&mut self, owner: Address) -> U256 {
        let raw = self.call(self.token, IErc20::balanceOfCall { owner }.abi_encode()).expect("balanceOf");
        IErc20::balanceOfCall::abi_decode_returns(&raw).expect("balanceOf returns")
    }

    /// Hub contract `contract`'s view of `user`'s channel at the newest state.
    pub fn channel(&mut self, contract: Address, user: Address) -> IInfHub::Channel {
        let data = IInfHub::channelCall { user }.abi_encode();
        let raw = self.call(contract, data).expect("channel(user)");
        IInfHub::channelCall::abi_decode_returns(&raw).expect("channel returns")
    }

    /// Hub contract `contract`'s reserve at the newest state.
    pub fn reserve(&mut self, contract: Address) -> U256 {
        let data = IInfHub::reserveCall {}.abi_encode();
        let raw = self.call(contract, data).expect("reserve()");
        IInfHub::reserveCall::abi_decode_returns(&raw).expect("reserve returns")
    }

    /// Hub contract `contract`'s `totalEscrow` (locks of settled closes not resolved yet).
    pub fn total_escrow(&mut self, contract: Address) -> U256 {
        let raw = self.call(contract, IInfHub::totalEscrowCall {}.abi_encode()).expect("totalEscrow");
        IInfHub::totalEscrowCall::abi_decode_returns(&raw).expect("totalEscrow returns")
    }

    /// Hub contract `contract`'s `totalChannelFunds` at the newest state.
    pub fn total_channel_funds(&mut self, contract: Address) -> U256 {
        let raw = self.call(contract, IInfHub::totalChannelFundsCall {}.abi_encode()).expect("funds");
        IInfHub::totalChannelFundsCall::abi_decode_returns(&raw).expect("totalChannelFunds returns")
    }
}
