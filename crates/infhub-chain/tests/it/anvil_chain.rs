//! The chain layer against a real anvil: deployment, the watcher over HTTP and WebSocket
//! with confirmations and `anvil_reorg` before and after them, the sender's nonce handling,
//! fee bumping of a stuck transaction, and contract errors surfaced by name.

use alloy::primitives::{Address, TxKind, U256};
use alloy::providers::Provider;
use alloy::sol_types::SolCall;
use infhub_chain::anvil::{self, Anvil, Deployment};
use infhub_chain::bindings::{IErc20, IInfHub};
use infhub_chain::sender::{SenderConfig, TxOutcome, TxSender};
use infhub_chain::source::RpcSource;
use infhub_chain::watcher::{WatchEvent, Watcher, WatcherConfig};
use infhub_chain::ChainError;
use infhub_core::ledger::ChainEvent;
use infhub_core::Amount;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

struct Env {
    anvil: Anvil,
    hub: TxSender,
    user: TxSender,
    d: Deployment,
}

async fn env() -> Env {
    let anvil = Anvil::spawn(&[]).expect("anvil");
    let p = anvil.provider().expect("provider");
    let mut hub = anvil::sender(&p, anvil::dev_key(0)).await.expect("hub sender");
    let user = anvil::sender(&p, anvil::dev_key(1)).await.expect("user sender");
    let hub_addr = hub.address();
    let d = anvil::deploy(&mut hub, hub_addr, U256::from(10u64).pow(U256::from(27)), 5, 10).await.expect("deploy");
    anvil::mint(&mut hub, d.token, user.address(), U256::from(1_000_000u64)).await.expect("mint");
    Env { anvil, hub, user, d }
}

impl Env {
    async fn user_opens_and_deposits(&mut self, amount: u64) -> u64 {
        let (token, hub, me) = (self.d.token, self.d.hub, self.user.address());
        anvil::call_ok(&mut self.user, token, IErc20::approveCall { spender: hub, amount: U256::MAX }.abi_encode())
            .await
            .expect("approve");
        anvil::call_ok(&mut self.user, hub, IInfHub::openChannelCall { user: me }.abi_encode()).await.expect("open");
        self.deposit(amount).await
    }

    async fn deposit(&mut self, amount: u64) -> u64 {
        let (hub, me) = (self.d.hub, self.user.address());
        anvil::call_ok(&mut self.user, hub, IInfHub::depositCall { user: me, amount: U256::from(amount) }.abi_encode())
            .await
            .expect("deposit")
    }
}

fn watcher_config(d: &Deployment, confirmations: u64) -> WatcherConfig {
    WatcherConfig { confirmations, max_blocks_per_poll: 100, max_log_range_blocks: 1_000, start_block: d.block }
}

fn confirmed(events: &[WatchEvent]) -> Vec<ChainEvent> {
    events
        .iter()
        .filter_map(|e| match e {
            WatchEvent::Confirmed { event, .. } => Some(*event),
            _ => None,
        })
        .collect()
}

fn seen(events: &[WatchEvent]) -> Vec<ChainEvent> {
    events
        .iter()
        .filter_map(|e| match e {
            WatchEvent::Seen { event, .. } => Some(*event),
            _ => None,
        })
        .collect()
}

#[test]
fn a_deposit_is_applied_only_after_its_confirmations_over_websocket() {
    rt().block_on(async {
        let mut e = env().await;
        let ws = anvil::connect(&e.anvil.ws_url).await.expect("ws provider");
        let mut w = Watcher::new(RpcSource::new(ws, e.d.hub), watcher_config(&e.d, 3), 0).expect("watcher");
        let user = e.user.address();
        e.user_opens_and_deposits(500).await;
        let first = w.poll().await.expect("poll");
        let opened = ChainEvent::ChannelOpened { user, epoch: 1, opened_by: user };
        let deposited = ChainEvent::Deposited { user, epoch: 1, total_deposited: Amount(500) };
        assert_eq!(seen(&first), vec![opened, deposited]);
        assert!(confirmed(&first).iter().all(|ev| *ev != deposited), "deposit confirmed at once: {first:?}");
        anvil::mine(e.hub.provider(), 3).await.expect("mine");
        let later = w.poll().await.expect("poll");
        assert!(confirmed(&later).contains(&deposited), "{later:?}");
        let through = w.confirmed_through();

        // A watcher restarted from the persisted height reports nothing again.
        let http = e.anvil.provider().expect("http");
        let mut again = Watcher::new(RpcSource::new(http, e.d.hub), watcher_config(&e.d, 3), through).expect("w");
        anvil::mine(e.hub.provider(), 3).await.expect("mine");
        let events = again.poll().await.expect("poll");
        assert!(confirmed(&events).is_empty(), "re-reported after restart: {events:?}");
    });
}

#[test]
fn a_deposit_reorged_out_before_confirmation_is_withdrawn_and_never_applied() {
    rt().block_on(async {
        let mut e = env().await;
        let p = e.anvil.provider().expect("http");
        let mut w = Watcher::new(RpcSource::new(p.clone(), e.d.hub), watcher_config(&e.d, 4), 0).expect("w");
        e.user_opens_and_deposits(100).await;
        anvil::mine(&p, 4).await.expect("mine");
        w.poll().await.expect("poll");
        let deposit_block = e.deposit(250).await;
        let before = w.poll().await.expect("poll");
        let second = ChainEvent::Deposited { user: e.user.address(), epoch: 1, total_deposited: Amount(350) };
        assert_eq!(seen(&before), vec![second]);
        let head = p.get_block_number().await.expect("head");
        anvil::reorg(&p, head - deposit_block + 1).await.expect("reorg");
        anvil::mine(&p, 6).await.expect("mine");
        let after = w.poll().await.expect("poll");
        assert!(
            after.iter().any(|ev| matches!(ev, WatchEvent::Disconnected { block, .. } if *block == deposit_block)),
            "{after:?}"
        );
        assert!(!confirmed(&after).contains(&second), "a reorged-out deposit was applied: {after:?}");
        // The contract agrees: the deposit vanished with its block.
        let ch = IInfHub::channelCall { user: e.user.address() }.abi_encode();
        let raw = e.hub.call(e.d.hub, ch.into()).await.expect("call");
        let channel = IInfHub::channelCall::abi_decode_returns(&raw).expect("decode");
        assert_eq!(channel.deposited, 100);
    });
}

#[test]
fn a_reorg_of_a_confirmed_deposit_stops_the_watcher() {
    rt().block_on(async {
        let mut e = env().await;
        let p = e.anvil.provider().expect("http");
        let mut w = Watcher::new(RpcSource::new(p.clone(), e.d.hub), watcher_config(&e.d, 2), 0).expect("w");
        e.user_opens_and_deposits(100).await;
        anvil::mine(&p, 2).await.expect("mine");
        let events = w.poll().await.expect("poll");
        assert!(confirmed(&events).len() >= 2, "{events:?}");
        anvil::reorg(&p, 5).await.expect("reorg");
        let err = w.poll().await.expect_err("deep reorg must stop the watcher");
        assert!(matches!(err, ChainError::ReorgBeyondConfirmations { .. }), "{err}");
    });
}

#[test]
fn a_stuck_transaction_is_replaced_with_higher_fees_and_keeps_its_nonce() {
    rt().block_on(async {
        let e = env().await;
        let p = e.anvil.provider().expect("http");
        let config = SenderConfig { bump_after_blocks: 1, bump_percent: 50, ..SenderConfig::default() };
        let mut s = TxSender::new(p.clone(), anvil::dev_key(2), config).await.expect("sender");
        let _: serde_json::Value = p.raw_request("evm_setAutomine".into(), (false,)).await.expect("automine off");
        let input = IErc20::transferCall { to: Address::repeat_byte(0x42), amount: U256::ZERO }.abi_encode();
        let sent = s.send(TxKind::Call(e.d.token), input.into()).await.expect("send");
        // Price the pending version out: the next blocks' base fee exceeds its max fee.
        let _: serde_json::Value = p
            .raw_request("anvil_setNextBlockBaseFeePerGas".into(), (U256::from(2_000_000_000_000u64),))
            .await
            .expect("base fee");
        anvil::mine(&p, 1).await.expect("mine");
        let mut outcome = None;
        for _ in 0..20 {
            let done = s.poll().await.expect("poll");
            if let Some(o) = done.into_iter().next() {
                outcome = Some(o);
                break;
            }
            anvil::mine(&p, 1).await.expect("mine");
        }
        match outcome.expect("mined within 20 blocks") {
            TxOutcome::Mined { nonce, hash, success, versions, .. } => {
                assert_eq!(nonce, sent.nonce);
                assert!(success);
                assert!(versions >= 2, "never replaced");
                assert_ne!(hash, sent.hash, "the original, underpriced version was mined");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(s.in_flight(), 0);
    });
}

#[test]
fn a_call_the_contract_would_reject_fails_with_the_contract_error_name() {
    rt().block_on(async {
        let mut e = env().await;
        let hub = e.d.hub;
        let settle = IInfHub::settleCall { user: Address::repeat_byte(9) }.abi_encode();
        let err = e.hub.send(TxKind::Call(hub), settle.into()).await.expect_err("rejected");
        assert!(matches!(&err, ChainError::TransactionRejected { reason } if reason == "ChannelNotClosing"), "{err}");
        let zero = IInfHub::depositReserveCall { amount: U256::ZERO }.abi_encode();
        let err = e.user.send(TxKind::Call(hub), zero.into()).await.expect_err("rejected");
        assert!(matches!(&err, ChainError::TransactionRejected { reason } if reason == "AmountMustNotBeZero"), "{err}");
        // Many in flight at once: nonces are assigned locally and all land.
        for i in 0..5u64 {
            let to = Address::repeat_byte(i as u8 + 1);
            let input = IErc20::mintCall { to, amount: U256::from(i + 1) }.abi_encode();
            e.hub.send(TxKind::Call(e.d.token), input.into()).await.expect("send");
        }
        let mut mined = 0;
        while mined < 5 {
            for o in e.hub.poll().await.expect("poll") {
                assert!(matches!(o, TxOutcome::Mined { success: true, .. }), "{o:?}");
                mined += 1;
            }
        }
    });
}

#[test]
fn a_nonce_gap_left_by_a_reorged_out_transaction_is_filled() {
    rt().block_on(async {
        let e = env().await;
        let p = e.anvil.provider().expect("http");
        let config = SenderConfig { bump_after_blocks: 1, ..SenderConfig::default() };
        let mut s = TxSender::new(p.clone(), anvil::dev_key(3), config).await.expect("sender");
        let _: serde_json::Value = p.raw_request("evm_setAutomine".into(), (false,)).await.expect("automine off");
        let transfer = || IErc20::transferCall { to: Address::repeat_byte(0x43), amount: U256::ZERO }.abi_encode();
        let first = s.send(TxKind::Call(e.d.token), transfer().into()).await.expect("send first");
        anvil::mine(&p, 1).await.expect("mine");
        let done = s.poll().await.expect("poll");
        assert!(matches!(done.as_slice(), [TxOutcome::Mined { nonce, .. }] if *nonce == first.nonce), "{done:?}");
        let second = s.send(TxKind::Call(e.d.token), transfer().into()).await.expect("send second");
        assert_eq!(second.nonce, first.nonce + 1);
        anvil::reorg(&p, 1).await.expect("reorg the first away");
        let mut mined = None;
        for _ in 0..20 {
            anvil::mine(&p, 1).await.expect("mine");
            if let Some(o) = s.poll().await.expect("poll").into_iter().next() {
                mined = Some(o);
                break;
            }
        }
        match mined.expect("the second transaction was mined after the gap was filled") {
            TxOutcome::Mined { nonce, success, .. } => {
                assert_eq!(nonce, second.nonce);
                assert!(success);
            }
            other => panic!("unexpected {other:?}"),
        }
    });
}

/// The point registry on a real chain (spec §5.17): the payee's hub reveals the payee's scalar
/// with its tweak upstream in one transaction; every link's point is recorded at that block;
/// the next hop up reads the reveals from the logs, checks each scalar against its point and
/// computes its own upstream scalar with its tweak; a later reveal of the same scalar leaves the
/// recorded block alone; a scalar out of range is refused by the contract's error name.
#[test]
fn reveals_in_the_point_registry_are_recorded_once_and_read_back_from_the_logs() {
    use infhub_chain::registry::PointRegistryClient;
    use infhub_core::point_lock::{point_chain, Scalar};
    rt().block_on(async {
        let mut e = env().await;
        let (registry, deployed) = anvil::deploy_point_registry(&mut e.hub).await.expect("deploy the registry");
        let client = PointRegistryClient::new(e.anvil.provider().expect("provider"), registry);
        let s = |v: u64| Scalar::from_bytes(alloy::primitives::keccak256(v.to_be_bytes())).expect("scalar");
        let (z, y1, y2) = (s(1), s(2), s(3));
        let points = point_chain(z.point(), &[y1, y2]).expect("route");
        let payee = z.add(&y1).and_then(|t| t.add(&y2)).expect("payee's scalar");
        assert_eq!(client.revealed_at(points[2].address()).await.expect("read"), None, "not yet");
        // The payee's hub knows y2 only: it reveals the payee's scalar and its own upstream one.
        let mined = client.reveal_upstream(&mut e.user, &payee, &[y2]).await.expect("reveal");
        println!("gas of a reveal with one upstream step on anvil (transaction): {}", mined.gas_used);
        for p in &points[1..] {
            assert_eq!(client.revealed_at(p.address()).await.expect("read"), Some(mined.block));
        }
        assert_eq!(client.revealed_at(points[0].address()).await.expect("read"), None, "needs y1");
        // The next hop up learns t1 from the logs and reveals z with its tweak y1.
        let reveals = client.reveals(deployed, mined.block).await.expect("logs");
        assert_eq!(reveals.len(), 2);
        let t1 = reveals.iter().find(|r| r.point == points[1].address()).expect("t1 revealed").scalar;
        let again = client.reveal_upstream(&mut e.hub, &t1, &[y1]).await.expect("reveal upstream");
        assert_eq!(client.revealed_at(points[0].address()).await.expect("read"), Some(again.block));
        assert_eq!(client.revealed_at(points[1].address()).await.expect("read"), Some(mined.block), "never moved");
        let news = client.reveals(mined.block + 1, again.block).await.expect("logs");
        assert_eq!(news.len(), 1, "only the new point is announced");
        assert_eq!(news[0].scalar, z, "the payer's proof of payment");
        // A scalar out of range, sent raw: the contract's error by name.
        let zero = infhub_chain::bindings::IPointRegistry::revealCall { scalar: U256::ZERO }.abi_encode();
        let err = e.user.send(TxKind::Call(registry), zero.into()).await.expect_err("refused");
        assert!(matches!(&err, ChainError::TransactionRejected { reason } if reason == "ScalarOutOfRange"), "{err}");
        // The other bindings against the real contract: a batch, the expiry check, the limit.
        use infhub_chain::bindings::IPointRegistry as R;
        let batch = R::revealBatchCall { scalars: vec![s(10).value(), s(11).value()] }.abi_encode();
        let at = anvil::call_ok(&mut e.user, registry, batch).await.expect("batch");
        assert_eq!(client.revealed_at(s(11).point().address()).await.expect("read"), Some(at));
        let by = |expiry: u64| R::isRevealedByCall { point: s(10).point().address(), expiryBlock: U256::from(expiry) };
        let opened = e.hub.call(registry, by(at).abi_encode().into()).await.expect("call");
        assert!(R::isRevealedByCall::abi_decode_returns(&opened).expect("bool"), "opens at its block");
        let early = e.hub.call(registry, by(at - 1).abi_encode().into()).await.expect("call");
        assert!(!R::isRevealedByCall::abi_decode_returns(&early).expect("bool"), "not before");
        let max = e.hub.call(registry, R::MAX_REVEALS_PER_CALLCall {}.abi_encode().into()).await.expect("call");
        let max = R::MAX_REVEALS_PER_CALLCall::abi_decode_returns(&max).expect("uint");
        assert_eq!(max, U256::from(infhub_core::point_lock::MAX_REVEALS_PER_CALL), "the same limit in Rust");
        let point =
            e.hub.call(registry, R::pointOfCall { scalar: s(12).value() }.abi_encode().into()).await.expect("call");
        assert_eq!(R::pointOfCall::abi_decode_returns(&point).expect("address"), s(12).point().address());
        let wide = client.reveals(0, infhub_chain::registry::MAX_REVEAL_LOG_RANGE_BLOCKS).await;
        assert!(matches!(wide, Err(ChainError::Config(_))), "{wide:?}");
    });
}

/// Locks through a close on the real contract (spec §5.11a): the user's debit carries a lock
/// the hub forwarded; she exits and submits a newer debit of the same total without it; the
/// hub registers the lock through the proof that carries it, the point is revealed in the
/// chain's registry, settlement escrows the lock and `unlock` pays it to the hub. Every figure
/// is checked against the core's contract model fed the same calls.
#[test]
#[expect(
    clippy::too_many_lines,
    reason = "one scripted close on the real contract, each step checked against the model"
)]
fn a_lock_dropped_by_a_newer_proof_is_registered_escrowed_and_unlocked_on_anvil() {
    use alloy::primitives::B256;
    use infhub_chain::events::{credit_arg, debit_arg, register_debit_lock_call, signature_arg};
    use infhub_chain::registry::PointRegistryClient;
    use infhub_core::contract::{ContractConfig, ContractModel, LockDirection};
    use infhub_core::merkle::MerkleTree;
    use infhub_core::messages::{Debit, Eip712Message, Signed};
    use infhub_core::point_lock::{locks_root, Lock, Scalar};
    use infhub_core::{Domain, PrivateKey};
    rt().block_on(async {
        let mut e = env().await;
        let (hub_addr, user_addr) = (e.hub.address(), e.user.address());
        let domain = Domain { chain_id: e.d.chain_id, verifying_contract: e.d.hub };
        let user_key = PrivateKey::from_bytes(anvil::dev_key(1).0).expect("user key");
        let mut model = ContractModel::new(ContractConfig {
            domain,
            hub: hub_addr,
            challenge_period_blocks: 5,
            reserve_notice_blocks: 10,
        })
        .expect("model");
        let registered = view(&mut e, IInfHub::pointRegistryCall {}).await;
        assert_eq!(registered, e.d.point_registry, "the hub reads the chain's registry");
        // Reserve and channel, on chain and in the model.
        let approve = IErc20::approveCall { spender: e.d.hub, amount: U256::MAX }.abi_encode();
        anvil::call_ok(&mut e.hub, e.d.token, approve).await.expect("approve");
        let reserve = IInfHub::depositReserveCall { amount: U256::from(10_000u64) }.abi_encode();
        anvil::call_ok(&mut e.hub, e.d.hub, reserve).await.expect("reserve");
        model.deposit_reserve(U256::from(10_000u64)).expect("model reserve");
        let deposited = e.user_opens_and_deposits(1000).await;
        model.open_channel(user_addr, user_addr).expect("model open");
        model.deposit(deposited, user_addr, U256::from(1000u64)).expect("model deposit");
        // The lock and the two debits of the same total.
        let scalar = Scalar::from_bytes(alloy::primitives::keccak256(b"payee")).expect("scalar");
        let lock = Lock {
            lock_id: B256::repeat_byte(7),
            amount: Amount(50),
            expiry_block: deposited + 200,
            point: scalar.point().address(),
        };
        let (root, locked) = locks_root(&domain, &[lock]).expect("root");
        let path = MerkleTree::new(vec![lock.digest(&domain)]).path(lock.digest(&domain)).expect("path");
        let debit = |nonce: u64, locked: Amount, root: B256| Debit {
            user: user_addr,
            epoch: 1,
            nonce,
            cumulative_debit: Amount(100),
            locked_amount: locked,
            locks_root: root,
            kind: 0,
            recipient: hub_addr,
            amount: Amount(100),
            payment_id: B256::repeat_byte(nonce as u8),
        };
        let with_lock = Signed::new(debit(1, locked, root), &domain, &user_key);
        let dropped = Signed::new(debit(2, Amount::ZERO, B256::ZERO), &domain, &user_key);
        // She exits and submits the proof without the lock.
        let none = empty_credit(user_addr);
        let no_credit = credit_arg(&none);
        let exit = IInfHub::startExitCall { credit: no_credit, hubSignature: Default::default() }.abi_encode();
        let at = anvil::call_ok(&mut e.user, e.d.hub, exit).await.expect("exit");
        model.start_exit(user_addr, at, &none, &[]).expect("model exit");
        let submit =
            IInfHub::submitDebitCall { debit: debit_arg(&dropped.message), userSignature: signature_arg(&dropped) };
        let at = anvil::call_ok(&mut e.user, e.d.hub, submit.abi_encode()).await.expect("submit");
        model.submit_debit(at, &dropped.message, &dropped.signature.0).expect("model submit");
        // The hub registers the lock through the proof that carries it.
        let register = register_debit_lock_call(&with_lock, &lock, &path).abi_encode();
        let at = anvil::call_ok(&mut e.hub, e.d.hub, register.clone()).await.expect("register");
        model.register_debit_lock(at, &with_lock.message, &with_lock.signature.0, &lock, path.nodes()).expect("model");
        let again = e.hub.send(TxKind::Call(e.d.hub), register.into()).await.expect_err("twice");
        assert!(
            matches!(&again, ChainError::TransactionRejected { reason } if reason == "LockAlreadyRegistered"),
            "{again}"
        );
        // The payee reveals; the close settles; anyone unlocks.
        let client = PointRegistryClient::new(e.anvil.provider().expect("provider"), e.d.point_registry);
        let revealed = client.reveal(&mut e.user, &scalar).await.expect("reveal").block;
        let settle_block = model.channel(user_addr).settle_block;
        let before = balance_of(&mut e, user_addr).await;
        let settled_at = settle_when_due(&mut e, user_addr, settle_block).await;
        model.settle(settled_at, user_addr).expect("model settle");
        let after_settle = balance_of(&mut e, user_addr).await;
        assert_eq!(after_settle - before, U256::from(850u64), "900 less the escrowed lock");
        let escrow = view(&mut e, IInfHub::totalEscrowCall {}).await;
        assert_eq!(escrow, model.total_escrow, "the model escrows what the contract escrows");
        assert_eq!(escrow, U256::from(50u64));
        let digest = with_lock.message.digest(&domain);
        let unlock = IInfHub::unlockCall { proofDigest: digest, lockId: lock.lock_id }.abi_encode();
        let at = anvil::call_ok(&mut e.user, e.d.hub, unlock).await.expect("unlock");
        let moved = model.unlock(at, digest, lock.lock_id, Some(revealed)).expect("model unlock");
        assert_eq!(moved.to_receiver, U256::from(50u64), "the hub is paid the lock");
        let reserve = view(&mut e, IInfHub::reserveCall {}).await;
        assert_eq!(reserve, model.reserve, "the same reserve");
        assert_eq!(reserve, U256::from(10_000u64 + 150), "the debit total and the lock");
        // The hub's books follow the reserve: the unlock's logs decode to the events the ledger
        // applies, the reserve afterwards and the resolution.
        use infhub_chain::source::ChainSource;
        let source = RpcSource::new(e.anvil.provider().expect("provider"), e.d.hub);
        let logs = source.logs_in_range(at, at).await.expect("logs");
        let decoded: Vec<ChainEvent> =
            logs.iter().filter_map(|l| infhub_chain::events::decode_event(l).expect("decodes")).collect();
        let paid = ChainEvent::EscrowToReserve { amount: Amount(50), reserve_after: Amount(10_150) };
        let resolved =
            ChainEvent::LockResolved { user: user_addr, epoch: 1, proof_digest: digest, lock_id: lock.lock_id };
        assert_eq!(decoded, vec![paid, resolved]);
        let dir = view(&mut e, IInfHub::lockDirectionOfCall { user: user_addr, epoch: 1, direction: 0 }).await;
        let expected = model.lock_direction(user_addr, 1, LockDirection::User);
        assert_eq!((dir.potential, dir.charge, dir.escrow), (expected.potential, expected.charge, expected.escrow));
        model.check_invariant();
    });
}

async fn balance_of(e: &mut Env, who: alloy::primitives::Address) -> U256 {
    let out = e.hub.call(e.d.token, IErc20::balanceOfCall { owner: who }.abi_encode().into()).await.expect("call");
    IErc20::balanceOfCall::abi_decode_returns(&out).expect("uint")
}

/// A view of the hub contract, decoded.
async fn view<C: SolCall>(e: &mut Env, call: C) -> C::Return {
    let out = e.hub.call(e.d.hub, call.abi_encode().into()).await.expect("call");
    C::abi_decode_returns(&out).expect("decode")
}

/// Settles `user` once the chain reaches `settle_block`, mining empty blocks until then; the
/// block it settled in.
async fn settle_when_due(e: &mut Env, user: Address, settle_block: u64) -> u64 {
    let provider = e.anvil.provider().expect("provider");
    loop {
        let settle = IInfHub::settleCall { user }.abi_encode();
        match anvil::call_ok(&mut e.user, e.d.hub, settle).await {
            Ok(at) => {
                assert!(at >= settle_block, "settled at {at}, before the settle block {settle_block}");
                return at;
            }
            Err(err) => {
                let head = provider.get_block_number().await.expect("head");
                assert!(head < settle_block, "settle refused at block {head}: {err}");
                anvil::mine(&provider, 1).await.expect("mine");
            }
        }
    }
}

/// The empty credit (nonce 0) a user's exit carries when the hub never paid her (epoch 1).
fn empty_credit(user: Address) -> infhub_core::messages::Credit {
    infhub_core::messages::Credit {
        user,
        epoch: 1,
        nonce: 0,
        cumulative_credit: Amount::ZERO,
        locked_amount: Amount::ZERO,
        locks_root: alloy::primitives::B256::ZERO,
    }
}
