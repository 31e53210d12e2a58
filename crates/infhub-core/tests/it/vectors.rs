//! Shared test vectors between the Rust core and the Solidity contract.
//!
//! Rust → Solidity: a scripted scenario of contract calls is run through
//! [`ContractModel`]; every step's verdict is asserted here (so the model is tested too) and
//! written to `test-vectors/core-vectors.json` with the signatures the core made.
//! `contracts/test/Vectors.t.sol` replays the file against the real contract and fails on any
//! different verdict, digest, payout or balance.
//!
//! Solidity → Rust: `Vectors.t.sol` writes `test-vectors/forge-vectors.json` with messages
//! signed by `vm.sign`; [`forge_signed_vectors_verify_in_rust`] checks the digests and signers.
//!
//! Run with `INFHUB_BLESS=1` to rewrite `core-vectors.json` after an intended change.

use alloy_primitives::{Address, B256, U256};
use infhub_core::contract::{ContractConfig, ContractModel};
use infhub_core::messages::{Credit, Debit, Eip712Message, TowerFee, Withdrawal};
use infhub_core::signature::{hex_decode, hex_encode};
use infhub_core::{Amount, Domain, Error, PrivateKey, Signature};
use serde_json::{json, Map, Value};
use std::path::PathBuf;

fn key(seed: u64) -> PrivateKey {
    let mut b = [0u8; 32];
    b[24..].copy_from_slice(&seed.to_be_bytes());
    PrivateKey::from_bytes(b).expect("valid test key")
}

fn vectors_dir() -> PathBuf {
    manifest_dir().join("../../test-vectors")
}

fn hex(b: &[u8]) -> String {
    format!("0x{}", hex_encode(b))
}

/// One contract call of the scenario, in the flat shape the forge test parses.
#[derive(Default, Clone)]
struct Step {
    op: &'static str,
    sender: Address,
    block: u64,
    user: Address,
    epoch: u64,
    nonce: u64,
    cumulative: u128,
    locked_amount: u128,
    locks_root: B256,
    kind: u8,
    recipient: Address,
    amount: u128,
    payment_id: B256,
    expiry_block: u64,
    share_bps: u16,
    sig1: Vec<u8>,
    sig2: Vec<u8>,
    digest: B256,
    expect: String,
    paid: U256,
    reserve_after: U256,
    funds_after: U256,
    reserved_after: U256,
    excess_after: U256,
}

impl Step {
    fn with_debit(mut self, d: &Debit) -> Self {
        self.user = d.user;
        self.epoch = d.epoch;
        self.nonce = d.nonce;
        self.cumulative = d.cumulative_debit.0;
        self.locked_amount = d.locked_amount.0;
        self.locks_root = d.locks_root;
        self.kind = d.kind;
        self.recipient = d.recipient;
        self.amount = d.amount.0;
        self.payment_id = d.payment_id;
        self
    }

    fn with_credit(mut self, c: &Credit) -> Self {
        self.user = c.user;
        self.epoch = c.epoch;
        self.nonce = c.nonce;
        self.cumulative = c.cumulative_credit.0;
        self.locked_amount = c.locked_amount.0;
        self.locks_root = c.locks_root;
        self
    }

    /// The offer rides in recipient (tower), amount (maxFee), shareBps and expiryBlock.
    fn with_offer(mut self, o: &TowerFee) -> Self {
        self.recipient = o.tower;
        self.amount = o.max_fee.0;
        self.share_bps = o.gain_share_bps;
        self.expiry_block = o.valid_until_block;
        self
    }

    fn with_withdrawal(mut self, w: &Withdrawal) -> Self {
        self.user = w.user;
        self.epoch = w.epoch;
        self.cumulative = w.cumulative_withdrawn.0;
        self.expiry_block = w.expiry_block;
        self
    }
}

struct Scenario {
    model: ContractModel,
    hub: PrivateKey,
    block: u64,
    steps: Vec<Step>,
}

impl Scenario {
    /// Runs `call` on the model, asserts its verdict is `want`, and records the step with the
    /// model's resulting reserve and channel funds.
    fn record<T>(
        &mut self,
        mut step: Step,
        want: Result<(), Error>,
        call: impl FnOnce(&mut ContractModel, u64) -> Result<T, Error>,
    ) -> Option<T> {
        let before = self.model.clone();
        let got = call(&mut self.model, self.block);
        let verdict = got.as_ref().map(|_| ()).map_err(|e| *e);
        assert_eq!(verdict, want, "step {} ({}) verdict", self.steps.len(), step.op);
        if got.is_err() {
            assert_eq!(self.model, before, "a rejected call must leave the model unchanged");
        }
        self.model.check_invariant();
        step.block = self.block;
        step.reserve_after = self.model.reserve;
        step.funds_after = self.model.total_channel_funds;
        step.reserved_after = self.model.reserved_for_closing;
        step.excess_after = self.model.excess();
        step.expect = match verdict {
            Ok(()) => "ok".to_string(),
            Err(e) => e.name(),
        };
        self.steps.push(step);
        got.ok()
    }

    fn debit(&self, user: &PrivateKey, epoch: u64, nonce: u64, cumulative: u128, amount: u128) -> Debit {
        Debit {
            user: user.address(),
            epoch,
            nonce,
            cumulative_debit: Amount(cumulative),
            locked_amount: Amount::ZERO,
            locks_root: B256::ZERO,
            kind: 0,
            recipient: Address::repeat_byte(0xBB),
            amount: Amount(amount),
            payment_id: B256::from(U256::from(nonce).wrapping_mul(U256::from(1000)) + U256::from(epoch)),
        }
    }

    fn credit(&self, user: &PrivateKey, epoch: u64, nonce: u64, cumulative: u128) -> Credit {
        Credit {
            user: user.address(),
            epoch,
            nonce,
            cumulative_credit: Amount(cumulative),
            locked_amount: Amount::ZERO,
            locks_root: B256::ZERO,
        }
    }
}

/// The scripted scenario. Every verdict is stated: the model must agree here, the contract in forge.
#[expect(clippy::too_many_lines, reason = "one scripted story, read top to bottom; each step depends on the last")]
fn build_scenario() -> (Scenario, Value) {
    let hub = key(0x0048_5542);
    let alice = key(0xA11CE);
    let bob = key(0xB0B);
    let mallory = key(0x6A11);
    let domain = Domain { chain_id: 31337, verifying_contract: Address::repeat_byte(0x1F) };
    let config = ContractConfig { domain, hub: hub.address(), challenge_period_blocks: 20, reserve_notice_blocks: 40 };
    let mut s = Scenario {
        model: ContractModel::new(config).expect("valid config"),
        hub: hub.clone(),
        block: 100,
        steps: Vec::new(),
    };
    let (a, b, h, m) = (alice.address(), bob.address(), hub.address(), mallory.address());
    let ok = Ok(());

    // Registration: users or the hub open channels; a stranger cannot.
    s.record(Step { op: "open", sender: a, user: a, ..Default::default() }, ok, |c, _| c.open_channel(a, a));
    s.record(Step { op: "open", sender: h, user: b, ..Default::default() }, ok, |c, _| c.open_channel(h, b));
    s.record(Step { op: "open", sender: m, user: a, ..Default::default() }, Err(Error::OnlyUserOrHub), |c, _| {
        c.open_channel(m, a)
    });
    s.record(Step { op: "open", sender: a, user: a, ..Default::default() }, Err(Error::ChannelAlreadyOpen), |c, _| {
        c.open_channel(a, a)
    });

    // Deposits and reserve.
    s.record(Step { op: "deposit", sender: a, user: a, amount: 1_000, ..Default::default() }, ok, |c, blk| {
        c.deposit(blk, a, U256::from(1_000))
    });
    s.record(
        Step { op: "deposit", sender: b, user: b, amount: 0, ..Default::default() },
        Err(Error::AmountMustNotBeZero),
        |c, blk| c.deposit(blk, b, U256::ZERO),
    );
    s.record(Step { op: "depositReserve", sender: h, amount: 5_000, ..Default::default() }, ok, |c, _| {
        c.deposit_reserve(U256::from(5_000))
    });

    // Cooperative withdrawal: valid, then every way to get it wrong.
    let w = Withdrawal { user: a, epoch: 1, cumulative_withdrawn: Amount(300), expiry_block: 110 };
    let wd = w.digest(&domain);
    let (wu, wh) = (alice.sign(wd), hub.sign(wd));
    let wstep = |sig1: Vec<u8>, sig2: Vec<u8>| {
        Step { op: "withdraw", sender: m, digest: wd, sig1, sig2, ..Default::default() }.with_withdrawal(&w)
    };
    let other_chain = Domain { chain_id: 1, ..domain };
    let other_contract = Domain { verifying_contract: Address::repeat_byte(0x2F), ..domain };
    let mut high_s = wu.0.to_vec();
    high_s[32] = 0xFF;
    let bad_cases: Vec<(Vec<u8>, Vec<u8>, Error)> = vec![
        (mallory.sign(wd).0.to_vec(), wh.0.to_vec(), Error::WrongSigner),
        (wu.0.to_vec(), wu.0.to_vec(), Error::WrongSigner),
        (
            alice.sign(w.digest(&other_chain)).0.to_vec(),
            hub.sign(w.digest(&other_chain)).0.to_vec(),
            Error::WrongSigner,
        ),
        (
            alice.sign(w.digest(&other_contract)).0.to_vec(),
            hub.sign(w.digest(&other_contract)).0.to_vec(),
            Error::WrongSigner,
        ),
        (high_s, wh.0.to_vec(), Error::InvalidSignature),
        (wu.0[..64].to_vec(), wh.0.to_vec(), Error::InvalidSignature),
    ];
    for (u_sig, h_sig, err) in bad_cases {
        let step = wstep(u_sig.clone(), h_sig.clone());
        s.record(step, Err(err), |c, blk| c.withdraw(blk, &w, &u_sig, &h_sig));
    }
    let w_epoch2 = Withdrawal { epoch: 2, ..w };
    let d2 = w_epoch2.digest(&domain);
    let (u2, h2) = (alice.sign(d2).0.to_vec(), hub.sign(d2).0.to_vec());
    let step = Step { op: "withdraw", sender: m, digest: d2, sig1: u2.clone(), sig2: h2.clone(), ..Default::default() }
        .with_withdrawal(&w_epoch2);
    s.record(step, Err(Error::EpochMismatch), |c, blk| c.withdraw(blk, &w_epoch2, &u2, &h2));
    s.record(wstep(wu.0.to_vec(), wh.0.to_vec()), ok, |c, blk| c.withdraw(blk, &w, &wu.0, &wh.0));
    s.record(wstep(wu.0.to_vec(), wh.0.to_vec()), Err(Error::WithdrawalMustIncrease), |c, blk| {
        c.withdraw(blk, &w, &wu.0, &wh.0)
    });
    let w_late = Withdrawal { cumulative_withdrawn: Amount(400), expiry_block: 105, ..w };
    s.block = 106;
    let dl = w_late.digest(&domain);
    let (ul, hl) = (alice.sign(dl).0.to_vec(), hub.sign(dl).0.to_vec());
    let step = Step { op: "withdraw", sender: m, digest: dl, sig1: ul.clone(), sig2: hl.clone(), ..Default::default() }
        .with_withdrawal(&w_late);
    s.record(step, Err(Error::AuthorizationExpired), |c, blk| c.withdraw(blk, &w_late, &ul, &hl));

    // Off chain: alice pays bob 200 (debit 1) and 100 (debit 2); the hub credits bob 300 in
    // two credits and sells alice 50 (credit 1). The hub realizes alice's first debit.
    let ad1 = s.debit(&alice, 1, 1, 200, 200);
    let ad2 = s.debit(&alice, 1, 2, 300, 100);
    let ac1 = s.credit(&alice, 1, 1, 50);
    let bc1 = s.credit(&bob, 1, 1, 200);
    let bc2 = s.credit(&bob, 1, 2, 300);
    let sign_d = |d: &Debit, k: &PrivateKey| k.sign(d.digest(&domain)).0.to_vec();
    let hub_key = s.hub.clone();
    let sign_c = |c: &Credit| hub_key.sign(c.digest(&domain)).0.to_vec();
    let dstep = |op: &'static str, sender: Address, d: &Debit, sig: Vec<u8>| {
        Step { op, sender, digest: d.digest(&domain), sig1: sig, ..Default::default() }.with_debit(d)
    };
    let cstep = |op: &'static str, sender: Address, c: &Credit, sig: Vec<u8>| {
        Step { op, sender, digest: c.digest(&domain), sig1: sig, ..Default::default() }.with_credit(c)
    };
    let sig = sign_d(&ad1, &alice);
    s.record(dstep("realizeDebit", m, &ad1, sig.clone()), Err(Error::OnlyHub), |c, _| c.realize_debit(m, &ad1, &sig));
    let forged = sign_d(&ad1, &mallory);
    s.record(dstep("realizeDebit", h, &ad1, forged.clone()), Err(Error::WrongSigner), |c, _| {
        c.realize_debit(h, &ad1, &forged)
    });
    let moved = s.record(dstep("realizeDebit", h, &ad1, sig.clone()), ok, |c, _| c.realize_debit(h, &ad1, &sig));
    assert_eq!(moved, Some(U256::from(200)), "realization moves the paid amount");
    s.record(dstep("realizeDebit", h, &ad1, sig.clone()), Err(Error::ProofMustSupersede), |c, _| {
        c.realize_debit(h, &ad1, &sig)
    });
    // Disputes are ordered by running total (spec §5.10): a higher nonce with a lower total, as
    // alice could sign to erase what she paid, is refused even while the channel is open.
    let ad_erase = s.debit(&alice, 1, u64::MAX, 0, 1);
    let ad_erase_sig = sign_d(&ad_erase, &alice);
    s.record(dstep("realizeDebit", h, &ad_erase, ad_erase_sig.clone()), Err(Error::ProofMustSupersede), |c, _| {
        c.realize_debit(h, &ad_erase, &ad_erase_sig)
    });

    // Batched realization (spec §5.6): only the hub; an entry whose debit is already stored, or
    // lower, leaves the stored one standing and moves nothing, without reverting; a superseding
    // debit not signed by its user refuses the whole batch.
    let one = |d: &Debit, sig: &[u8]| vec![(*d, sig.to_vec())];
    s.record(dstep("realizeDebits", m, &ad1, sig.clone()), Err(Error::OnlyHub), |c, _| {
        c.realize_debits(m, &one(&ad1, &sig))
    });
    let moved =
        s.record(dstep("realizeDebits", h, &ad1, sig.clone()), ok, |c, _| c.realize_debits(h, &one(&ad1, &sig)));
    assert_eq!(moved, Some(vec![None]), "a realization already done moves nothing");
    s.record(dstep("realizeDebits", h, &ad_erase, ad_erase_sig.clone()), ok, |c, _| {
        c.realize_debits(h, &one(&ad_erase, &ad_erase_sig))
    });
    let forged2 = sign_d(&ad2, &mallory);
    s.record(dstep("realizeDebits", h, &ad2, forged2.clone()), Err(Error::WrongSigner), |c, _| {
        c.realize_debits(h, &one(&ad2, &forged2))
    });

    // Alice exits with her credit; exiting twice fails; the hub answers with debit 2.
    s.block = 120;
    let ac1_sig = sign_c(&ac1);
    s.record(cstep("startExit", a, &ac1, ac1_sig.clone()), ok, |c, blk| c.start_exit(a, blk, &ac1, &ac1_sig));
    s.record(cstep("startExit", a, &ac1, ac1_sig.clone()), Err(Error::ChannelNotOpen), |c, blk| {
        c.start_exit(a, blk, &ac1, &ac1_sig)
    });
    let ad2_sig = sign_d(&ad2, &alice);
    s.record(dstep("submitDebit", h, &ad1, sig.clone()), Err(Error::ProofMustSupersede), |c, blk| {
        c.submit_debit(blk, &ad1, &sig)
    });
    s.record(dstep("submitDebit", h, &ad2, ad2_sig.clone()), ok, |c, blk| c.submit_debit(blk, &ad2, &ad2_sig));
    // Alice erases her debits with the highest nonce and a lower total: refused; the same total
    // with a higher nonce is accepted and changes nothing.
    s.record(dstep("submitDebit", a, &ad_erase, ad_erase_sig.clone()), Err(Error::ProofMustSupersede), |c, blk| {
        c.submit_debit(blk, &ad_erase, &ad_erase_sig)
    });
    let ad_same = s.debit(&alice, 1, 9, 300, 1);
    let ad_same_sig = sign_d(&ad_same, &alice);
    s.record(dstep("submitDebit", a, &ad_same, ad_same_sig.clone()), ok, |c, blk| {
        c.submit_debit(blk, &ad_same, &ad_same_sig)
    });
    s.record(dstep("submitDebit", h, &ad2, ad2_sig.clone()), Err(Error::ProofMustSupersede), |c, blk| {
        c.submit_debit(blk, &ad2, &ad2_sig)
    });
    let ad2_wrong_epoch = Debit { epoch: 7, ..ad2 };
    let we_sig = sign_d(&ad2_wrong_epoch, &alice);
    s.record(dstep("submitDebit", h, &ad2_wrong_epoch, we_sig.clone()), Err(Error::EpochMismatch), |c, blk| {
        c.submit_debit(blk, &ad2_wrong_epoch, &we_sig)
    });
    s.record(
        Step { op: "settle", sender: m, user: a, ..Default::default() },
        Err(Error::ChallengePeriodNotOver),
        |c, blk| c.settle(blk, a),
    );
    s.block = 140;
    let ad3 = s.debit(&alice, 1, 3, 301, 1);
    let ad3_sig = sign_d(&ad3, &alice);
    s.record(dstep("submitDebit", h, &ad3, ad3_sig.clone()), Err(Error::ChallengePeriodOver), |c, blk| {
        c.submit_debit(blk, &ad3, &ad3_sig)
    });
    // claim = 1000 - 300 + 50 - 300 = 450.
    let settled = s.record(
        Step { op: "settle", sender: m, user: a, paid: U256::from(450), ..Default::default() },
        ok,
        |c, blk| c.settle(blk, a),
    );
    assert_eq!(settled.map(|x| x.paid), Some(U256::from(450)));
    s.record(
        Step { op: "settle", sender: m, user: a, ..Default::default() },
        Err(Error::ChannelNotClosing),
        |c, blk| c.settle(blk, a),
    );

    // Reopening: epoch 2, and epoch-1 proofs are void.
    s.record(Step { op: "open", sender: a, user: a, ..Default::default() }, ok, |c, _| c.open_channel(a, a));
    s.record(cstep("startExit", a, &ac1, ac1_sig.clone()), Err(Error::EpochMismatch), |c, blk| {
        c.start_exit(a, blk, &ac1, &ac1_sig)
    });

    // The hub closes bob's channel with no debit; bob's watchtower answers with his credits.
    let empty = Debit::none(b, 0);
    s.record(dstep("startHubClose", m, &empty, vec![]), Err(Error::OnlyHub), |c, blk| {
        c.start_hub_close(m, blk, b, &empty, &[])
    });
    s.record(dstep("startHubClose", h, &empty, vec![1]), Err(Error::ProofMustBeEmpty), |c, blk| {
        c.start_hub_close(h, blk, b, &empty, &[1])
    });
    s.record(dstep("startHubClose", h, &empty, vec![]), ok, |c, blk| c.start_hub_close(h, blk, b, &empty, &[]));
    let bc1_sig = sign_c(&bc1);
    // bc2 arrives as one leaf of a batch the hub signed once (its Merkle root), as the node
    // issues credits; a path that does not lead to the signed root is refused.
    let batch_leaves =
        vec![bc2.digest(&domain), alloy_primitives::keccak256("receipt"), alloy_primitives::keccak256("credit")];
    let tree = infhub_core::merkle::MerkleTree::new(batch_leaves);
    let batch_sig = hub_key.sign(infhub_core::merkle::batch_digest(tree.root(), &domain));
    let bc2_proven = infhub_core::messages::HubSigned {
        message: bc2,
        signature: batch_sig,
        path: tree.path(bc2.digest(&domain)).expect("leaf"),
    };
    let bc2_sig = bc2_proven.proof_bytes();
    let mut bad_path = bc2_sig.clone();
    *bad_path.last_mut().expect("a path") ^= 1;
    let self_signed = bob.sign(bc2.digest(&domain)).0.to_vec();
    s.record(cstep("submitCredit", m, &bc2, bad_path.clone()), Err(Error::WrongSigner), |c, blk| {
        c.submit_credit(blk, &bc2, &bad_path)
    });
    s.record(cstep("submitCredit", m, &bc2, self_signed.clone()), Err(Error::WrongSigner), |c, blk| {
        c.submit_credit(blk, &bc2, &self_signed)
    });
    s.record(cstep("submitCredit", m, &bc2, bc2_sig.clone()), ok, |c, blk| c.submit_credit(blk, &bc2, &bc2_sig));
    s.record(cstep("submitCredit", m, &bc1, bc1_sig.clone()), Err(Error::ProofMustSupersede), |c, blk| {
        c.submit_credit(blk, &bc1, &bc1_sig)
    });
    // The hub erases bob's credits with the highest nonce and a lower total: refused.
    let bc_erase = s.credit(&bob, 1, u64::MAX, 0);
    let bc_erase_sig = sign_c(&bc_erase);
    s.record(cstep("submitCredit", h, &bc_erase, bc_erase_sig.clone()), Err(Error::ProofMustSupersede), |c, blk| {
        c.submit_credit(blk, &bc_erase, &bc_erase_sig)
    });
    // What bob's close will draw (300) is kept back from the hub's payouts; the rest may go.
    let reserved = s.model.reserved_for_closing;
    assert_eq!(reserved, U256::from(300), "bob's claim above his funds is reserved");
    let spare = (s.model.reserve - reserved).to::<u128>();
    let payout_step = |amount: u128, id: u8| Step {
        op: "payout",
        sender: h,
        recipient: Address::repeat_byte(0xE1),
        amount,
        payment_id: B256::repeat_byte(id),
        ..Default::default()
    };
    let to = [Address::repeat_byte(0xE1)];
    s.record(payout_step(spare + 1, 1), Err(Error::ReserveInsufficient), |c, _| {
        c.payout(h, B256::repeat_byte(1), &to, &[U256::from(spare + 1)])
    });
    s.record(payout_step(spare, 2), ok, |c, _| c.payout(h, B256::repeat_byte(2), &to, &[U256::from(spare)]));
    s.record(Step { op: "depositReserve", sender: h, amount: 5_000, ..Default::default() }, ok, |c, _| {
        c.deposit_reserve(U256::from(5_000))
    });
    s.block = 160;
    // bob deposited nothing: the reserve pays his 300 of credit.
    let settled = s.record(
        Step { op: "settle", sender: m, user: b, paid: U256::from(300), ..Default::default() },
        ok,
        |c, blk| c.settle(blk, b),
    );
    assert_eq!(settled.map(|x| x.paid), Some(U256::from(300)));

    // Reserve withdrawal after notice.
    s.record(Step { op: "announce", sender: m, amount: 100, ..Default::default() }, Err(Error::OnlyHub), |c, blk| {
        c.announce_reserve_withdrawal(m, blk, U256::from(100))
    });
    s.record(Step { op: "announce", sender: h, amount: 100, ..Default::default() }, ok, |c, blk| {
        c.announce_reserve_withdrawal(h, blk, U256::from(100))
    });
    s.record(
        Step { op: "execute", sender: h, recipient: h, ..Default::default() },
        Err(Error::ReserveNoticeNotOver),
        |c, blk| c.execute_reserve_withdrawal(h, blk, h),
    );
    s.block = 200;
    s.record(Step { op: "execute", sender: h, recipient: h, ..Default::default() }, ok, |c, blk| {
        c.execute_reserve_withdrawal(h, blk, h)
    });
    // An announcement not executed within another notice's length expires; a new one replaces it.
    s.record(Step { op: "announce", sender: h, amount: 50, ..Default::default() }, ok, |c, blk| {
        c.announce_reserve_withdrawal(h, blk, U256::from(50))
    });
    s.block = 240;
    s.record(
        Step { op: "announce", sender: h, amount: 60, ..Default::default() },
        Err(Error::ReserveWithdrawalPending),
        |c, blk| c.announce_reserve_withdrawal(h, blk, U256::from(60)),
    );
    s.block = 280;
    s.record(
        Step { op: "execute", sender: h, recipient: h, ..Default::default() },
        Err(Error::ReserveWithdrawalExpired),
        |c, blk| c.execute_reserve_withdrawal(h, blk, h),
    );
    s.record(Step { op: "announce", sender: h, amount: 60, ..Default::default() }, ok, |c, blk| {
        c.announce_reserve_withdrawal(h, blk, U256::from(60))
    });

    // Tokens sent to the contract outside its functions are excess: nobody's balance, never
    // spendable as reserve until the hub moves them in; only the hub moves them.
    s.record(Step { op: "tokenTransfer", sender: m, amount: 70, ..Default::default() }, ok, |c, _| {
        c.token_transfer_in(U256::from(70));
        Ok(())
    });
    s.record(
        Step { op: "returnExcess", sender: m, recipient: m, amount: 10, ..Default::default() },
        Err(Error::OnlyHub),
        |c, _| c.return_excess(m, m, U256::from(10)),
    );
    s.record(
        Step { op: "returnExcess", sender: h, recipient: m, amount: 71, ..Default::default() },
        Err(Error::ExcessInsufficient),
        |c, _| c.return_excess(h, m, U256::from(71)),
    );
    s.record(Step { op: "returnExcess", sender: h, recipient: m, amount: 30, ..Default::default() }, ok, |c, _| {
        c.return_excess(h, m, U256::from(30))
    });
    s.record(Step { op: "excessToReserve", sender: h, ..Default::default() }, ok, |c, _| c.excess_to_reserve(h));
    s.record(
        Step { op: "excessToReserve", sender: h, ..Default::default() },
        Err(Error::AmountMustNotBeZero),
        |c, _| c.excess_to_reserve(h),
    );

    tower_fee_story(&mut s, &alice, &mallory, domain);
    checkpoint_story(&mut s, &mallory);

    let header = json!({
        "chainId": domain.chain_id.to_string(),
        "contract": domain.verifying_contract.to_string(),
        "domainSeparator": domain.separator().to_string(),
        "hub": h.to_string(),
        "challengePeriodBlocks": "20",
        "reserveNoticeBlocks": "40",
        "actors": [a.to_string(), b.to_string(), h.to_string(), m.to_string()],
    });
    (s, header)
}

/// A watchtower defends Alice (epoch 2) against a stale hub close for the fee she offered
/// (spec 5.10a): every misuse of the offer is refused by name, the fee is her share of each
/// rise of the claim capped by the offer, and the settlement splits the claim. A `submitCreditForFee`
/// step carries the credit as usual and the offer as recipient = tower, amount = maxFee,
/// shareBps, expiryBlock = validUntilBlock, sig2 = Alice's signature of the offer; a `settle`
/// step with a recipient says what that tower was paid (amount) next to what Alice was (paid).
fn tower_fee_story(s: &mut Scenario, alice: &PrivateKey, mallory: &PrivateKey, domain: Domain) {
    let (a, h, m) = (alice.address(), s.hub.address(), mallory.address());
    let tower = Address::repeat_byte(0x70);
    s.block = 300;
    s.record(Step { op: "deposit", sender: a, user: a, amount: 200, ..Default::default() }, Ok(()), |c, blk| {
        c.deposit(blk, a, U256::from(200))
    });
    let empty = Debit::none(a, 0);
    let close = Step { op: "startHubClose", sender: h, digest: empty.digest(&domain), ..Default::default() };
    s.record(close.with_debit(&empty), Ok(()), |c, blk| c.start_hub_close(h, blk, a, &empty, &[]));
    let hub_key = s.hub.clone();
    let c1 = s.credit(alice, 2, 1, 40);
    let c2 = s.credit(alice, 2, 2, 100);
    let offer =
        TowerFee { user: a, epoch: 2, tower, max_fee: Amount(15), gain_share_bps: 2_500, valid_until_block: 330 };
    let step = |sender: Address, c: &Credit, o: &TowerFee, offer_sig: Vec<u8>| {
        Step {
            op: "submitCreditForFee",
            sender,
            digest: c.digest(&domain),
            sig1: hub_key.sign(c.digest(&domain)).0.to_vec(),
            sig2: offer_sig,
            ..Default::default()
        }
        .with_credit(c)
        .with_offer(o)
    };
    let sign = |k: &PrivateKey, o: &TowerFee| k.sign(o.digest(&domain)).0.to_vec();
    let cases: [(Address, TowerFee, &PrivateKey, Result<(), Error>); 4] = [
        (m, offer, alice, Err(Error::OnlyTower)),
        (tower, offer, mallory, Err(Error::WrongSigner)),
        (tower, TowerFee { gain_share_bps: 10_001, ..offer }, alice, Err(Error::TowerFeeShareTooLarge)),
        (tower, TowerFee { valid_until_block: 299, ..offer }, alice, Err(Error::AuthorizationExpired)),
    ];
    for (sender, o, signer, want) in cases {
        let sig = sign(signer, &o);
        let hub_sig = hub_key.sign(c1.digest(&domain)).0.to_vec();
        s.record(step(sender, &c1, &o, sig.clone()), want, |c, blk| {
            c.submit_credit_for_fee(sender, blk, &c1, &hub_sig, &o, &sig)
        });
    }
    // A quarter of the rise of 40 is 10; of the next 60 it is 15, cut to the 5 left of maxFee 15.
    for (credit, fee) in [(c1, 10), (c2, 5)] {
        let sig = sign(alice, &offer);
        let hub_sig = hub_key.sign(credit.digest(&domain)).0.to_vec();
        let got = s.record(step(tower, &credit, &offer, sig.clone()), Ok(()), |c, blk| {
            c.submit_credit_for_fee(tower, blk, &credit, &hub_sig, &offer, &sig)
        });
        assert_eq!(got, Some(Amount(fee)), "the fee recorded for credit #{}", credit.nonce);
    }
    s.block = 330;
    // claim = 200 + 100 = 300: 15 to the tower, 285 to Alice.
    let split = s.model.settlement_split(a);
    assert_eq!(split, (vec![(tower, U256::from(15))], U256::from(285)));
    let settled = s.record(
        Step {
            op: "settle",
            sender: m,
            user: a,
            paid: U256::from(285),
            recipient: tower,
            amount: 15,
            ..Default::default()
        },
        Ok(()),
        |c, blk| c.settle(blk, a),
    );
    assert_eq!(settled.map(|x| x.paid), Some(U256::from(300)), "Settled.paid is the whole claim");
}

/// The hub posts checkpoints (spec §5.16): the contract refuses a stranger, an id out of order,
/// a block or inflows from the future, one unit past the reserve (less the announced
/// withdrawal), and positions that go back. A `checkpoint` step carries id in epoch, root in
/// paymentId, totalLiability in amount, ledgerSeq in nonce, chainBlock in expiryBlock and
/// inflowsThrough in cumulative.
fn checkpoint_story(s: &mut Scenario, mallory: &PrivateKey) {
    use infhub_core::contract::PostedCheckpoint;
    let (h, m) = (s.hub.address(), mallory.address());
    s.block = 340;
    let inflows = s.model.liability_inflows_total.to::<u128>();
    assert!(inflows > 0, "the scenario realized debits before: inflows to count");
    let pending = s.model.pending_reserve_withdrawal.map_or(0, |(a, _)| a.0);
    let room = s.model.reserve.to::<u128>() - pending;
    let step = |sender: Address, id: u64, liability: u128, seq: u64, at: u64, through: u128| Step {
        op: "checkpoint",
        sender,
        epoch: id,
        payment_id: B256::repeat_byte(id as u8),
        amount: liability,
        nonce: seq,
        expiry_block: at,
        cumulative: through,
        ..Default::default()
    };
    // (sender, id, totalLiability, ledgerSeq, chainBlock, inflowsThrough, verdict)
    type Case = (Address, u64, u128, u64, u64, u128, Result<(), Error>);
    let cases: [Case; 8] = [
        (m, 1, 1, 5, 339, inflows, Err(Error::OnlyHub)),
        (h, 2, 1, 5, 339, inflows, Err(Error::CheckpointOutOfOrder)),
        (h, 1, 1, 5, 340, inflows, Err(Error::CheckpointFromTheFuture)),
        (h, 1, 1, 5, 339, inflows + 1, Err(Error::CheckpointFromTheFuture)),
        (h, 1, room + 1, 5, 339, inflows, Err(Error::CheckpointInsolvent)),
        // Inflows counted as after the tree's block are not backing.
        (h, 1, room, 5, 339, inflows - 1, Err(Error::CheckpointInsolvent)),
        (h, 1, room, 5, 339, inflows, Ok(())),
        (h, 2, room, 4, 339, inflows, Err(Error::CheckpointOutOfOrder)),
    ];
    for (sender, id, liability, seq, at, through, want) in cases {
        let c = PostedCheckpoint {
            root: B256::repeat_byte(id as u8),
            total_liability: U256::from(liability),
            ledger_seq: seq,
            chain_block: at,
            inflows_through: U256::from(through),
        };
        s.record(step(sender, id, liability, seq, at, through), want, |model, blk| {
            model.post_checkpoint(sender, blk, id, c)
        });
    }
}

fn scenario_json() -> String {
    let (s, header) = build_scenario();
    let mut root = header.as_object().cloned().unwrap_or_default();
    root.insert("count".into(), Value::String(s.steps.len().to_string()));
    let steps: Vec<Value> = s
        .steps
        .iter()
        .map(|st| {
            let mut o = Map::new();
            let mut put = |k: &str, v: String| {
                o.insert(k.to_string(), Value::String(v));
            };
            put("op", st.op.to_string());
            put("sender", st.sender.to_string());
            put("block", st.block.to_string());
            put("user", st.user.to_string());
            put("epoch", st.epoch.to_string());
            put("nonce", st.nonce.to_string());
            put("cumulative", st.cumulative.to_string());
            put("lockedAmount", st.locked_amount.to_string());
            put("locksRoot", st.locks_root.to_string());
            put("kind", st.kind.to_string());
            put("recipient", st.recipient.to_string());
            put("amount", st.amount.to_string());
            put("paymentId", st.payment_id.to_string());
            put("expiryBlock", st.expiry_block.to_string());
            put("shareBps", st.share_bps.to_string());
            put("sig1", hex(&st.sig1));
            put("sig2", hex(&st.sig2));
            put("digest", st.digest.to_string());
            put("expect", st.expect.clone());
            put("paid", st.paid.to_string());
            put("reserveAfter", st.reserve_after.to_string());
            put("fundsAfter", st.funds_after.to_string());
            put("reservedAfter", st.reserved_after.to_string());
            put("excessAfter", st.excess_after.to_string());
            Value::Object(o)
        })
        .collect();
    root.insert("steps".into(), Value::Array(steps));
    root.insert(
        "final".into(),
        json!({
            "reserve": s.model.reserve.to_string(),
            "totalChannelFunds": s.model.total_channel_funds.to_string(),
            "tokenBalance": s.model.token_balance.to_string(),
            "reservedForClosing": s.model.reserved_for_closing.to_string(),
            "excess": s.model.excess().to_string(),
        }),
    );
    let mut text = serde_json::to_string_pretty(&Value::Object(root)).expect("serializable");
    text.push('\n');
    text
}

/// Fails unless `test-vectors/<name>` holds exactly `fresh` (what the core makes now); with
/// `INFHUB_BLESS=1` writes it instead.
fn vectors_file_is(name: &str, fresh: &str) {
    let path = vectors_dir().join(name);
    if std::env::var_os("INFHUB_BLESS").is_some() {
        std::fs::write(&path, fresh).unwrap_or_else(|e| panic!("write {name}: {e}"));
        return;
    }
    let committed = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} missing ({e}); run with INFHUB_BLESS=1", path.display()));
    assert!(
        committed == fresh,
        "test-vectors/{name} is stale: the core now signs or judges differently. \
         If intended, regenerate with INFHUB_BLESS=1 and let forge re-check it."
    );
}

#[test]
fn core_vectors_file_is_current() {
    vectors_file_is("core-vectors.json", &scenario_json());
}

#[test]
fn scenario_covers_every_verdict_we_promise() {
    let (s, _) = build_scenario();
    let verdicts: std::collections::BTreeSet<String> = s.steps.iter().map(|st| st.expect.clone()).collect();
    for must in [
        "ok",
        "WrongSigner",
        "InvalidSignature",
        "EpochMismatch",
        "ProofMustSupersede",
        "ReserveInsufficient",
        "ReserveWithdrawalPending",
        "ReserveWithdrawalExpired",
        "ExcessInsufficient",
        "WithdrawalMustIncrease",
        "AuthorizationExpired",
        "ChallengePeriodNotOver",
        "ChallengePeriodOver",
        "ChannelNotOpen",
        "ChannelNotClosing",
        "OnlyHub",
        "OnlyUserOrHub",
        "ProofMustBeEmpty",
        "ReserveNoticeNotOver",
        "AmountMustNotBeZero",
        "OnlyTower",
        "TowerFeeShareTooLarge",
        "CheckpointOutOfOrder",
        "CheckpointFromTheFuture",
        "CheckpointInsolvent",
    ] {
        assert!(verdicts.contains(must), "scenario lacks a {must} step");
    }
}

fn field<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or_else(|| panic!("forge vector lacks {k}: {v}"))
}

fn b256(s: &str) -> B256 {
    s.parse().unwrap_or_else(|e| panic!("bad bytes32 {s}: {e}"))
}

fn u(s: &str) -> u128 {
    s.parse().unwrap_or_else(|e| panic!("bad number {s}: {e}"))
}

#[test]
fn forge_signed_vectors_verify_in_rust() {
    let path = vectors_dir().join("forge-vectors.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{} missing ({e}); run `forge test` in contracts/", path.display()));
    let root: Value = serde_json::from_str(&text).expect("forge-vectors.json is JSON");
    let domain = Domain {
        chain_id: u(field(&root, "chainId")) as u64,
        verifying_contract: field(&root, "contract").parse().expect("contract address"),
    };
    assert_eq!(domain.separator(), b256(field(&root, "domainSeparator")), "domain separator");
    let vectors = root.get("vectors").and_then(Value::as_array).expect("vectors array");
    assert!(vectors.len() >= 6, "too few forge vectors: {}", vectors.len());
    for v in vectors {
        let digest = match field(v, "type") {
            "Debit" => Debit {
                user: field(v, "user").parse().expect("user"),
                epoch: u(field(v, "epoch")) as u64,
                nonce: u(field(v, "nonce")) as u64,
                cumulative_debit: Amount(u(field(v, "cumulative"))),
                locked_amount: Amount(u(field(v, "lockedAmount"))),
                locks_root: b256(field(v, "locksRoot")),
                kind: u(field(v, "kind")) as u8,
                recipient: field(v, "recipient").parse().expect("recipient"),
                amount: Amount(u(field(v, "amount"))),
                payment_id: b256(field(v, "paymentId")),
            }
            .digest(&domain),
            "Credit" => Credit {
                user: field(v, "user").parse().expect("user"),
                epoch: u(field(v, "epoch")) as u64,
                nonce: u(field(v, "nonce")) as u64,
                cumulative_credit: Amount(u(field(v, "cumulative"))),
                locked_amount: Amount(u(field(v, "lockedAmount"))),
                locks_root: b256(field(v, "locksRoot")),
            }
            .digest(&domain),
            "Withdrawal" => Withdrawal {
                user: field(v, "user").parse().expect("user"),
                epoch: u(field(v, "epoch")) as u64,
                cumulative_withdrawn: Amount(u(field(v, "cumulative"))),
                expiry_block: u(field(v, "expiryBlock")) as u64,
            }
            .digest(&domain),
            "TowerFee" => TowerFee {
                user: field(v, "user").parse().expect("user"),
                epoch: u(field(v, "epoch")) as u64,
                tower: field(v, "tower").parse().expect("tower"),
                max_fee: Amount(u(field(v, "maxFee"))),
                gain_share_bps: u(field(v, "gainShareBps")) as u16,
                valid_until_block: u(field(v, "validUntilBlock")) as u64,
            }
            .digest(&domain),
            other => panic!("unknown vector type {other}"),
        };
        assert_eq!(digest, b256(field(v, "digest")), "digest of {v}");
        let sig_bytes = hex_decode(field(v, "signature")).expect("signature hex");
        let signer: Address = field(v, "signer").parse().expect("signer");
        let verdict = Signature::from_slice(&sig_bytes).and_then(|s| s.verify(digest, signer));
        let want = field(v, "expect");
        let got = match verdict {
            Ok(()) => "ok".to_string(),
            Err(e) => e.name(),
        };
        assert_eq!(got, want, "verdict on forge vector {v}");
    }
}

/// This crate's directory as cargo sets it when running the test (not the compile-time path,
/// which a build cache shared between checkouts can carry over from another clone).
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

// ------------------------------------------------------------ checkpoint trees (spec §5.16)

mod checkpoint_vectors {
    use super::*;
    use infhub_core::checkpoint::{CheckpointDomain, Leaf, LeafKind, PathError, SumPath, SumTree};

    fn leaf(i: u8) -> Leaf {
        Leaf {
            account: Address::repeat_byte(0x40 + i),
            kind: [LeafKind::Channel, LeafKind::Custodial, LeafKind::QueuedPayout, LeafKind::Unattributed]
                [usize::from(i) % 4],
            epoch: u64::from(i % 3),
            deposited: Amount(1_000 * u128::from(i)),
            withdrawn: Amount(u128::from(i)),
            credit_nonce: u64::from(i) * 2,
            credit_total: Amount(77 * u128::from(i)),
            debit_nonce: u64::from(i),
            debit_total: Amount(33 * u128::from(i)),
            // One leaf at the largest liability a leaf may hold.
            liability: Amount(if i == 4 { u128::MAX } else { 5 * u128::from(i) + 1 }),
            salt: B256::repeat_byte(0xA0 + i),
        }
    }

    fn put_leaf(o: &mut Map<String, Value>, l: &Leaf) {
        let mut put = |k: &str, v: String| {
            o.insert(k.to_string(), Value::String(v));
        };
        put("account", l.account.to_string());
        put("kind", (l.kind as u8).to_string());
        put("epoch", l.epoch.to_string());
        put("deposited", l.deposited.0.to_string());
        put("withdrawn", l.withdrawn.0.to_string());
        put("creditNonce", l.credit_nonce.to_string());
        put("creditTotal", l.credit_total.0.to_string());
        put("debitNonce", l.debit_nonce.to_string());
        put("debitTotal", l.debit_total.0.to_string());
        put("liability", l.liability.0.to_string());
        put("salt", l.salt.to_string());
    }

    fn put_path(o: &mut Map<String, Value>, p: &SumPath) {
        o.insert("index".into(), Value::String(p.index.to_string()));
        o.insert("depth".into(), Value::String(p.siblings.len().to_string()));
        let sibs: Vec<Value> =
            p.siblings.iter().map(|s| json!({"hash": s.hash.to_string(), "sum": s.sum.to_string()})).collect();
        o.insert("siblings".into(), Value::Array(sibs));
    }

    /// Seven leaves (an odd level on the way up), every leaf's path, and tampered paths with the
    /// rule each breaks; the forge test posts the root and proves each against the contract.
    fn vectors_json() -> String {
        let d = CheckpointDomain { chain_id: 31337, contract: Address::repeat_byte(0x1F), checkpoint_id: 1 };
        let leaves: Vec<Leaf> = (1..=7).map(leaf).collect();
        let tree = SumTree::build(leaves.iter().map(|l| l.node(&d)).collect());
        let root = tree.root();
        let mut cases = Vec::new();
        for (i, l) in leaves.iter().enumerate() {
            let p = tree.path(i).expect("path");
            p.verify(l.node(&d), root).expect("a good path verifies in Rust");
            let mut o = Map::new();
            put_leaf(&mut o, l);
            put_path(&mut o, &p);
            o.insert("leafHash".into(), Value::String(l.hash(&d).to_string()));
            o.insert("expect".into(), Value::String("ok".into()));
            cases.push(Value::Object(o));
        }
        let l = leaves[2];
        let p = tree.path(2).expect("path");
        let mut tampered: Vec<(Leaf, SumPath, PathError)> = Vec::new();
        let mut lower = l;
        lower.liability = Amount(l.liability.0 - 1);
        tampered.push((lower, p.clone(), PathError::RootMismatch));
        let mut credit_cut = l;
        credit_cut.credit_total = Amount(0);
        tampered.push((credit_cut, p.clone(), PathError::RootMismatch));
        let mut swapped = p.clone();
        swapped.index ^= 1;
        tampered.push((l, swapped, PathError::RootMismatch));
        let mut shifted = p.clone();
        shifted.siblings[1].sum -= U256::from(1);
        tampered.push((l, shifted, PathError::RootMismatch));
        let mut huge = p.clone();
        huge.siblings[0].sum = U256::from(u128::MAX) + U256::from(1);
        tampered.push((l, huge, PathError::SumOutOfRange));
        let mut far = p.clone();
        far.index |= 1 << p.siblings.len();
        tampered.push((l, far, PathError::PathIndexOutOfRange));
        let long = SumPath { index: 0, siblings: vec![infhub_core::checkpoint::SumNode::EMPTY; 41] };
        tampered.push((l, long, PathError::PathTooLong));
        for (leaf, path, want) in tampered {
            assert_eq!(path.verify(leaf.node(&d), root), Err(want), "Rust refuses the tampered path");
            let mut o = Map::new();
            put_leaf(&mut o, &leaf);
            put_path(&mut o, &path);
            o.insert("leafHash".into(), Value::String(leaf.hash(&d).to_string()));
            o.insert("expect".into(), Value::String(format!("{want:?}")));
            cases.push(Value::Object(o));
        }
        let root_json = json!({
            "chainId": d.chain_id.to_string(),
            "contract": d.contract.to_string(),
            "checkpointId": d.checkpoint_id.to_string(),
            "root": root.hash.to_string(),
            "totalLiability": root.sum.to_string(),
            "count": cases.len().to_string(),
            "cases": cases,
        });
        let mut text = serde_json::to_string_pretty(&root_json).expect("json");
        text.push('\n');
        text
    }

    #[test]
    fn checkpoint_vectors_file_is_current() {
        vectors_file_is("checkpoint-vectors.json", &vectors_json());
    }
}

/// Point locks (spec §5.17): scalars and the addresses of their points, a route's tweaked
/// points and the scalars a hop computes upstream, scalars out of range, and lock leaves with
/// their root and paths. `contracts/test/PointRegistry.t.sol` reveals each scalar in the real
/// registry, walks the route upstream, and hashes and proves each leaf.
mod point_lock_vectors {
    use super::*;
    use infhub_core::merkle::MerkleTree;
    use infhub_core::point_lock::{check_hop, locks_root, point_chain, Lock, Scalar, GROUP_ORDER};

    fn scalar(v: U256) -> Scalar {
        Scalar::new(v).expect("in range")
    }

    fn vectors_json() -> String {
        let n = GROUP_ORDER;
        let scalars: Vec<U256> = vec![
            U256::from(1),
            U256::from(2),
            U256::from(7),
            n - U256::from(1),
            n - U256::from(2),
            U256::from_be_bytes(alloy_primitives::keccak256("infhub point lock").0) % n,
        ];
        let reveals: Vec<Value> = scalars
            .iter()
            .map(|&t| {
                let s = scalar(t);
                let (_, v, r, sig_s) = s.ecrecover_inputs();
                assert_eq!(infhub_core::point_lock::ecrecover(B256::ZERO, v, r, sig_s), s.point().address());
                json!({"scalar": t.to_string(), "point": s.point().address().to_string(), "s": sig_s.to_string()})
            })
            .collect();
        let refused: Vec<Value> = [U256::ZERO, n, n + U256::from(1), U256::MAX]
            .iter()
            .map(|&t| {
                assert_eq!(Scalar::new(t), Err(Error::ScalarOutOfRange));
                json!({"scalar": t.to_string(), "expect": "ScalarOutOfRange"})
            })
            .collect();
        // A route of four links: the invoice's scalar z, three hops' tweaks.
        let z = scalar(U256::from_be_bytes(alloy_primitives::keccak256("invoice z").0) % n);
        let tweaks: Vec<Scalar> =
            (1..=3u8).map(|i| scalar(U256::from_be_bytes(alloy_primitives::keccak256([i]).0) % n)).collect();
        let points = point_chain(z.point(), &tweaks).expect("chain");
        for (i, t) in tweaks.iter().enumerate() {
            check_hop(&points[i], &points[i + 1], t).expect("each hop checks its step");
        }
        let mut payee = z;
        for t in &tweaks {
            payee = payee.add(t).expect("sum");
        }
        assert_eq!(payee.point(), points[3]);
        let mut upstream = vec![payee];
        for t in tweaks.iter().rev() {
            let next = upstream.last().expect("non-empty").upstream(t).expect("step");
            upstream.push(next);
        }
        assert_eq!(*upstream.last().expect("z"), z, "the payer learns z");
        let route = json!({
            "payeeScalar": payee.value().to_string(),
            "tweaksDownstreamFirst": tweaks.iter().rev().map(|t| t.value().to_string()).collect::<Vec<_>>(),
            "scalarsUpstream": upstream.iter().map(|s| s.value().to_string()).collect::<Vec<_>>(),
            "pointsUpstream": upstream.iter().map(|s| s.point().address().to_string()).collect::<Vec<_>>(),
        });
        // Lock leaves of one channel direction, their root and paths.
        let domain = Domain { chain_id: 31337, verifying_contract: Address::repeat_byte(0x1F) };
        let locks: Vec<Lock> = (0..5u64)
            .map(|i| Lock {
                lock_id: alloy_primitives::keccak256(i.to_be_bytes()),
                amount: Amount(1_000 + u128::from(i)),
                expiry_block: 500 + i * 40,
                point: points[(i % 4) as usize].address(),
            })
            .collect();
        let (root, locked) = locks_root(&domain, &locks).expect("root");
        let tree = MerkleTree::new(locks.iter().map(|l| l.digest(&domain)).collect());
        assert_eq!(tree.root(), root);
        let leaves: Vec<Value> = locks
            .iter()
            .map(|l| {
                let digest = l.digest(&domain);
                let path = tree.path(digest).expect("a leaf");
                assert_eq!(path.root(digest), root);
                json!({
                    "lockId": l.lock_id.to_string(),
                    "amount": l.amount.0.to_string(),
                    "expiryBlock": l.expiry_block.to_string(),
                    "point": l.point.to_string(),
                    "digest": digest.to_string(),
                    "path": path.nodes().iter().map(ToString::to_string).collect::<Vec<_>>(),
                })
            })
            .collect();
        let root_json = json!({
            "reveals": reveals,
            "refused": refused,
            "route": route,
            "locks": {
                "chainId": domain.chain_id.to_string(),
                "contract": domain.verifying_contract.to_string(),
                "root": root.to_string(),
                "lockedAmount": locked.0.to_string(),
                "leaves": leaves,
            },
        });
        let mut text = serde_json::to_string_pretty(&root_json).expect("json");
        text.push('\n');
        text
    }

    #[test]
    fn point_lock_vectors_file_is_current() {
        vectors_file_is("point-lock-vectors.json", &vectors_json());
    }
}
