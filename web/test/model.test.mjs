// The web wallet's rules against a dishonest hub: every hub answer the page takes must be
// signed by the hub, for this user and epoch, and name exactly what the user signed; anything
// else is refused by name and leaves the record as it was.
import { test } from "node:test";
import assert from "node:assert/strict";
import { privateKeyToAccount } from "viem/accounts";
import * as p from "../test-build/protocol.mjs";
import * as m from "../test-build/model.mjs";

const user = privateKeyToAccount(`0x${"11".repeat(32)}`);
const hub = privateKeyToAccount(`0x${"22".repeat(32)}`);
const mallory = privateKeyToAccount(`0x${"33".repeat(32)}`);
const domain = { chainId: 31337n, verifyingContract: "0x1f1f1F1f1F1f1f1F1F1F1f1F1f1F1f1F1F1F1F1F" };
const eip712 = { name: "InfHub", version: "1", chainId: domain.chainId, verifyingContract: domain.verifyingContract };
const open = { status: m.STATUS.open, epoch: 1, settleBlock: 0, deposited: 1000n, withdrawn: 0n, creditTotal: 0n };

function big(type, message) {
  const out = {};
  for (const f of p.TYPES[type]) out[f.name] = f.type.startsWith("uint") ? BigInt(message[f.name]) : message[f.name];
  return out;
}
const sign = (key, type, message) => key.signTypedData({ domain: eip712, types: { [type]: p.TYPES[type] }, primaryType: type, message: big(type, message) });
const credit = (nonce, total, who = user.address) => ({ user: who, epoch: 1, nonce, cumulativeCredit: String(total), lockedAmount: "0", locksRoot: p.ZERO_WORD });
const code = (c) => (e) => e instanceof p.RuleError && e.code === c;

test("a credit is taken only if the hub signed it for this user and epoch, and only if it raises the total", async () => {
  const r = m.emptyRecord(user.address, 1);
  const c1 = credit(1, 50);
  assert.equal(await m.takeCredit(r, { message: c1, signature: await sign(hub, "Credit", c1) }, domain, hub.address), true);
  const forged = credit(2, 5000);
  await assert.rejects(m.takeCredit(r, { message: forged, signature: await sign(mallory, "Credit", forged) }, domain, hub.address), code("WrongSigner"));
  const other = credit(2, 60, mallory.address);
  await assert.rejects(m.takeCredit(r, { message: other, signature: await sign(hub, "Credit", other) }, domain, hub.address), code("WrongUser"));
  const lower = credit(3, 40);
  assert.equal(await m.takeCredit(r, { message: lower, signature: await sign(hub, "Credit", lower) }, domain, hub.address), false);
  assert.equal(r.credit.message.cumulativeCredit, "50", "the record is unchanged by every refusal");
  assert.equal(m.balance(r, open), 1050n);
});

test("a batch-signed credit verifies through its path; a tampered path does not", async () => {
  const r = m.emptyRecord(user.address, 1);
  const c = credit(1, 70);
  const leaf = p.digest("Credit", c, domain);
  const sibling = p.digest("Credit", credit(1, 1, mallory.address), domain);
  const root = p.merkleRoot([leaf, sibling]);
  const signature = await sign(hub, "ProofBatch", { root });
  await assert.rejects(m.takeCredit(r, { message: c, signature, path: [p.hashPair(sibling, sibling)] }, domain, hub.address), code("WrongSigner"));
  assert.equal(r.credit, null);
  assert.equal(await m.takeCredit(r, { message: c, signature, path: [sibling] }, domain, hub.address), true);
  assert.equal(p.proofBytes(r.credit).length, 2 + 2 * (65 + 32));
});

test("a receipt settles the pending payment only if the hub signed it and it names that debit", async () => {
  const r = m.emptyRecord(user.address, 1);
  const d = m.nextDebit(r, open, mallory.address, 300n, `0x${"ab".repeat(32)}`);
  assert.equal(d.nonce, 1);
  assert.equal(d.cumulativeDebit, "300");
  r.pending = { message: d, signature: await sign(user, "Debit", d) };
  assert.throws(() => m.nextDebit(r, open, mallory.address, 1n, p.ZERO_WORD), code("payment_unresolved"));
  const receipt = { payer: user.address, epoch: 1, debitNonce: 1, paymentId: d.paymentId, debitDigest: p.digest("Debit", d, domain) };
  const wrong = { ...receipt, debitDigest: p.digest("Debit", { ...d, amount: "1" }, domain) };
  await assert.rejects(m.takeReceipt(r, { message: wrong, signature: await sign(hub, "Receipt", wrong) }, domain, hub.address), code("ReceiptMismatch"));
  await assert.rejects(m.takeReceipt(r, { message: receipt, signature: await sign(mallory, "Receipt", receipt) }, domain, hub.address), code("WrongSigner"));
  assert.ok(r.pending, "still pending after the refusals");
  assert.equal(m.balance(r, open), 700n, "a pending payment counts as spent");
  await m.takeReceipt(r, { message: receipt, signature: await sign(hub, "Receipt", receipt) }, domain, hub.address);
  assert.equal(r.pending, null);
  assert.equal(r.debit.message.nonce, 1);
  assert.throws(() => m.nextDebit(r, open, mallory.address, 701n, p.ZERO_WORD), code("InsufficientBalance"));
  assert.equal(m.nextDebit(r, open, mallory.address, 700n, p.ZERO_WORD).cumulativeDebit, "1000");
});

test("a refund settles a refused payment only if it returns the whole amount", async () => {
  const r = m.emptyRecord(user.address, 1);
  const d = m.nextDebit(r, open, mallory.address, 300n, p.ZERO_WORD);
  r.pending = { message: d, signature: await sign(user, "Debit", d) };
  const short = credit(1, 299);
  await assert.rejects(m.takeRefund(r, { message: short, signature: await sign(hub, "Credit", short) }, domain, hub.address), code("RefundTooSmall"));
  const r2 = m.emptyRecord(user.address, 1);
  r2.pending = r.pending;
  const full = credit(1, 300);
  await m.takeRefund(r2, { message: full, signature: await sign(hub, "Credit", full) }, domain, hub.address);
  assert.equal(r2.pending, null);
  assert.equal(m.balance(r2, open), 1000n);
});

test("recovery adopts the hub's copy of this key's newest debit, never a debit another key signed", async () => {
  const r = m.emptyRecord(user.address, 1);
  const d = { ...m.nextDebit(r, open, mallory.address, 200n, p.ZERO_WORD) };
  await assert.rejects(m.takeOwnDebit(r, { message: d, signature: await sign(hub, "Debit", d) }, domain), code("WrongSigner"));
  assert.equal(await m.takeOwnDebit(r, { message: d, signature: await sign(user, "Debit", d) }, domain), true);
  assert.equal(m.balance(r, open), 800n);
  assert.deepEqual(m.disagreements(r, { cumulativeDebit: "500", cumulativeCredit: "0" }), [
    "the hub counts 500 paid out, but this wallet signed only 200",
  ]);
});

test("a withdrawal is kept only with the hub's co-signature", async () => {
  const r = m.emptyRecord(user.address, 1);
  const w = m.nextWithdrawal(r, open, 400n, 90);
  assert.equal(w.cumulativeWithdrawn, "400");
  const ours = { message: w, signature: await sign(user, "Withdrawal", w) };
  await assert.rejects(m.takeCoSignedWithdrawal(r, ours, await sign(mallory, "Withdrawal", w), domain, hub.address), code("WrongSigner"));
  assert.equal(r.withdrawal, null);
  await m.takeCoSignedWithdrawal(r, ours, await sign(hub, "Withdrawal", w), domain, hub.address);
  assert.equal(m.balance(r, open), 600n, "a co-signed withdrawal counts before the chain pays it");
  assert.throws(() => m.nextWithdrawal(r, open, 1n, 90), code("withdrawal_unfinished"));
});

test("payment requests: a well-formed one round-trips; malformed or expired ones are refused by name", () => {
  const req = { payee: mallory.address, amount: 1234n, paymentId: `0x${"cd".repeat(32)}`, description: "order 7 & co", expiresAtSeconds: 2_000 };
  assert.deepEqual(p.parsePaymentRequest(p.formatPaymentRequest(req), 1_000), req);
  assert.throws(() => p.parsePaymentRequest(p.formatPaymentRequest(req), 2_000), code("request_expired"));
  for (const bad of ["", "bitcoin:abc", `infhub:${mallory.address}?amount=0&id=${req.paymentId}`, `infhub:${mallory.address}?amount=1.5&id=${req.paymentId}`, `infhub:${mallory.address}?amount=5&id=0x12`, `infhub:${mallory.address}?amount=${p.MAX_AMOUNT + 1n}&id=${req.paymentId}`]) {
    assert.throws(() => p.parsePaymentRequest(bad, 0), code("malformed_request"), bad);
  }
});

test("amounts: decimals parse exactly; too many places, zero or overflow are refused", () => {
  assert.equal(p.parseUnits("12.5", 18), 12_500_000_000_000_000_000n);
  assert.equal(p.formatUnits(12_500_000_000_000_000_000n, 18), "12.5");
  for (const bad of ["", "0", "1.0000000000000000001", "-1", "1e3", "abc", String(p.MAX_AMOUNT + 1n)]) {
    assert.throws(() => p.parseUnits(bad, 18), code("malformed_amount"), bad);
  }
});

test("a close holding a lower credit total is answered with the newest credit, and settled after the period", async () => {
  const r = m.emptyRecord(user.address, 1);
  const c = credit(4, 90);
  await m.takeCredit(r, { message: c, signature: await sign(hub, "Credit", c) }, domain, hub.address);
  const closing = { ...open, status: m.STATUS.closing, settleBlock: 100, creditTotal: 40n };
  assert.equal(m.defence(r, closing, 99).submitCredit?.message.cumulativeCredit, "90", "the hub closed with 40 on record");
  assert.equal(m.defence(r, { ...closing, creditTotal: 90n }, 99).submitCredit, null, "nothing to add");
  assert.equal(m.defence(r, closing, 100).submitCredit, null, "too late to submit");
  assert.equal(m.defence(r, closing, 100).settle, true);
  assert.equal(m.defence(r, closing, 99).settle, false);
  assert.deepEqual(m.defence(r, open, 99), { submitCredit: null, settle: false });
});
