// The shared test vectors (test-vectors/, also checked by the Rust core and the contract's
// forge tests) run through the web wallet's protocol code: every digest, signer and verdict
// must come out as the core and the contract computed them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import * as p from "../test-build/protocol.mjs";

const vectors = (name) => JSON.parse(readFileSync(new URL(`../../test-vectors/${name}`, import.meta.url)));
const domainOf = (d) => ({ chainId: BigInt(d.chainId), verifyingContract: d.contract });
const SIGNATURE_RULES = new Set(["WrongSigner", "InvalidSignature"]);

async function verdict(check) {
  try {
    await check();
    return "ok";
  } catch (e) {
    assert.ok(e instanceof p.RuleError, `not a named rule: ${e}`);
    return e.code;
  }
}

test("forge vectors: digests, signers and verdicts match the contract's", async () => {
  const d = vectors("forge-vectors.json");
  const domain = domainOf(d);
  assert.equal(p.domainSeparator(domain), d.domainSeparator);
  assert.ok(d.vectors.length >= 8);
  for (const v of d.vectors) {
    const message = { ...v, cumulativeDebit: v.cumulative, cumulativeCredit: v.cumulative, cumulativeWithdrawn: v.cumulative };
    assert.equal(p.digest(v.type, message, domain), v.digest, `${v.type} digest`);
    const got = await verdict(() => p.verifySigned(v.type, { message, signature: v.signature }, domain, v.signer));
    assert.equal(got, v.expect, `${v.type} ${v.signature.slice(0, 12)}…: expected ${v.expect}`);
  }
});

function coreMessage(s) {
  const debit = { user: s.user, epoch: s.epoch, nonce: s.nonce, cumulativeDebit: s.cumulative, lockedAmount: s.lockedAmount, locksRoot: s.locksRoot, kind: s.kind, recipient: s.recipient, amount: s.amount, paymentId: s.paymentId };
  const credit = { user: s.user, epoch: s.epoch, nonce: s.nonce, cumulativeCredit: s.cumulative, lockedAmount: s.lockedAmount, locksRoot: s.locksRoot };
  const withdrawal = { user: s.user, epoch: s.epoch, cumulativeWithdrawn: s.cumulative, expiryBlock: s.expiryBlock };
  switch (s.op) {
    case "withdraw": return ["Withdrawal", withdrawal];
    case "startExit": case "submitCredit": case "submitCreditForFee": return ["Credit", credit];
    case "realizeDebit": case "realizeDebits": case "submitDebit": case "startHubClose": return ["Debit", debit];
    default: return [null, null];
  }
}

// A hub proof is a 65-byte signature, then the nodes of its batch path.
function splitProof(hex) {
  const body = hex.slice(2);
  const path = [];
  for (let i = 130; i < body.length; i += 64) path.push(`0x${body.slice(i, i + 64)}`);
  return { signature: `0x${body.slice(0, 130)}`, path };
}

test("core vectors: every signed step's digest, and the signature verdicts the contract reached", async () => {
  const d = vectors("core-vectors.json");
  const domain = domainOf(d);
  assert.equal(p.domainSeparator(domain), d.domainSeparator);
  let checked = 0;
  let refused = 0;
  for (const s of d.steps) {
    const [type, message] = coreMessage(s);
    if (!type || s.digest === p.ZERO_WORD) continue;
    assert.equal(p.digest(type, message, domain), s.digest, `step ${s.op} digest`);
    if (s.sig1 === "0x") continue;
    const checks = [];
    if (type === "Debit") checks.push(() => p.verifySigned("Debit", { message, signature: s.sig1 }, domain, s.user));
    if (type === "Credit") checks.push(() => p.verifyHubSigned("Credit", { message, ...splitProof(s.sig1) }, domain, d.hub));
    if (type === "Withdrawal") {
      checks.push(() => p.verifySigned("Withdrawal", { message, signature: s.sig1 }, domain, s.user));
      checks.push(() => p.verifySigned("Withdrawal", { message, signature: s.sig2 }, domain, d.hub));
    }
    const verdicts = [];
    for (const c of checks) verdicts.push(await verdict(c));
    const failed = verdicts.find((v) => v !== "ok");
    if (s.expect === "ok") assert.equal(failed, undefined, `step ${s.op} (ok on chain) fails here: ${failed}`);
    // submitCreditForFee also checks the user's TowerFee signature, which the step does not
    // carry as a message: only its credit is checked here.
    if (SIGNATURE_RULES.has(s.expect) && s.op !== "submitCreditForFee") {
      assert.equal(failed, s.expect, `step ${s.op}: the contract refused with ${s.expect}`);
      refused += 1;
    }
    checked += 1;
  }
  assert.ok(checked >= 40, `only ${checked} signed steps checked`);
  assert.ok(refused >= 1, "no signature refusal among the vectors");
});

test("point-lock vectors: lock digests, the lock tree, reveals, route tweaks and refused scalars", () => {
  const d = vectors("point-lock-vectors.json");
  const domain = domainOf(d.locks);
  const digests = [];
  let locked = 0n;
  for (const leaf of d.locks.leaves) {
    const dg = p.digest("Lock", leaf, domain);
    assert.equal(dg, leaf.digest);
    assert.equal(p.pathRoot(dg, leaf.path), d.locks.root, "each leaf folds to the root");
    digests.push(dg);
    locked += BigInt(leaf.amount);
  }
  assert.equal(p.merkleRoot(digests), d.locks.root);
  assert.equal(locked.toString(), d.locks.lockedAmount);
  for (const r of d.reveals) {
    assert.equal(p.pointAddress(BigInt(r.scalar)), r.point);
    assert.equal(p.revealS(BigInt(r.scalar)).toString(), r.s);
  }
  for (const r of d.refused) {
    assert.throws(() => p.pointAddress(BigInt(r.scalar)), (e) => e.code === r.expect);
  }
  const route = d.route;
  let scalar = BigInt(route.payeeScalar);
  assert.equal(p.pointAddress(scalar), route.pointsUpstream[0]);
  route.tweaksDownstreamFirst.forEach((tweak, i) => {
    scalar = p.upstreamScalar(scalar, BigInt(tweak));
    assert.equal(scalar.toString(), route.scalarsUpstream[i + 1]);
    assert.equal(p.pointAddress(scalar), route.pointsUpstream[i + 1]);
  });
});

test("a tampered path or a foreign leaf does not fold to a batch root", () => {
  const d = vectors("point-lock-vectors.json");
  const domain = domainOf(d.locks);
  const leaf = d.locks.leaves[0];
  const dg = p.digest("Lock", leaf, domain);
  const bad = [...leaf.path];
  bad[0] = p.hashPair(bad[0], bad[0]);
  assert.notEqual(p.pathRoot(dg, bad), d.locks.root);
  assert.notEqual(p.pathRoot(p.digest("Lock", { ...leaf, amount: "1" }, domain), leaf.path), d.locks.root);
  assert.throws(() => p.pathRoot(dg, new Array(21).fill(p.ZERO_WORD)), (e) => e.code === "InvalidSignature");
});
