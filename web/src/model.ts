//! The browser wallet's record of its channel and the rules it applies to what it signs and
//! what the hub answers: the same rules as the Rust wallet (`infhub-wallet::wallet_core`), on
//! the newest proofs only. No IO here: the page (app.ts) fetches, signs and stores; these
//! functions decide. The record is rebuilt from the key alone: the hub holds the user's newest
//! debit (signed by this key, so it cannot be forged) and its own newest credit (signed by the
//! hub, so it binds the hub), and the chain holds deposits, withdrawals and any close.

import { type Address, type Hex, getAddress } from "viem";
import {
  type Credit,
  type Debit,
  type Domain,
  type HubSigned,
  type Receipt,
  type Signed,
  type Withdrawal,
  MAX_AMOUNT,
  RuleError,
  ZERO_WORD,
  digest,
  verifyHubSigned,
  verifySigned,
} from "./protocol.js";

/** What the wallet needs to know of its hub; fetched once, kept for when the hub is down. */
export interface HubInfo {
  hubUrl: string;
  rpcUrl: string;
  hub: Address;
  contract: Address;
  token: Address;
  chainId: string;
  decimals: number;
  challengePeriodBlocks: number;
}

/** A withdrawal both sides signed, kept until the chain pays it. */
export interface CoSignedWithdrawal {
  withdrawal: Withdrawal;
  userSignature: Hex;
  hubSignature: Hex;
}

/** The wallet's record, stored in the browser as JSON (amounts as decimal strings). */
export interface ChannelRecord {
  version: 1;
  user: Address;
  epoch: number;
  /** This key's newest debit the hub applied. */
  debit: Signed<Debit> | null;
  /** A debit signed and sent, not yet answered (write-ahead: stored before it leaves). */
  pending: Signed<Debit> | null;
  /** The hub's newest credit, verified. */
  credit: HubSigned<Credit> | null;
  withdrawal: CoSignedWithdrawal | null;
}

/** The contract's record of the channel (`InfHub.channel(user)`), as the page reads it. */
export interface ChainChannel {
  status: number;
  epoch: number;
  settleBlock: number;
  deposited: bigint;
  withdrawn: bigint;
  /** The running total of the newest credit on record (0: none). */
  creditTotal: bigint;
}

/** The contract's channel statuses. */
export const STATUS = { none: 0, open: 1, closing: 2, settled: 3 } as const;

export function domainOf(info: HubInfo): Domain {
  return { chainId: BigInt(info.chainId), verifyingContract: info.contract };
}

export function emptyRecord(user: Address, epoch = 0): ChannelRecord {
  return { version: 1, user: getAddress(user), epoch, debit: null, pending: null, credit: null, withdrawal: null };
}

function debitTotal(r: ChannelRecord): bigint {
  return r.debit ? BigInt(r.debit.message.cumulativeDebit) : 0n;
}

function creditTotal(r: ChannelRecord): bigint {
  return r.credit ? BigInt(r.credit.message.cumulativeCredit) : 0n;
}

/** The spendable balance: deposited − withdrawn + credits − debits − locked (the pending
 * debit counted as spent, since the hub may still apply it). Refuses a negative result: the
 * figures would contradict each other. */
export function balance(r: ChannelRecord, chain: ChainChannel): bigint {
  const spent = r.pending ? BigInt(r.pending.message.cumulativeDebit) : debitTotal(r);
  const locked = r.debit ? BigInt(r.debit.message.lockedAmount) : 0n;
  const held = r.withdrawal ? BigInt(r.withdrawal.withdrawal.cumulativeWithdrawn) : chain.withdrawn;
  const withdrawn = held > chain.withdrawn ? held : chain.withdrawn;
  const b = chain.deposited - withdrawn + creditTotal(r) - spent - locked;
  if (b < 0n) throw new RuleError("BalanceNegative", `the channel's figures give a negative balance (${b})`);
  return b;
}

/** Takes the hub's credit if the hub signed it for this user and epoch and it raises the
 * total; a lower or equal total is ignored (totals decide, spec §5.10). Returns whether taken. */
export async function takeCredit(
  r: ChannelRecord,
  credit: HubSigned<Credit>,
  domain: Domain,
  hub: Address,
): Promise<boolean> {
  await verifyHubSigned("Credit", credit, domain, hub);
  const c = credit.message;
  if (getAddress(c.user) !== r.user) throw new RuleError("WrongUser", `the hub's credit is for ${c.user}`);
  if (c.epoch !== r.epoch) throw new RuleError("WrongEpoch", `the hub's credit is for epoch ${c.epoch}, the channel is at ${r.epoch}`);
  if (r.credit && BigInt(c.cumulativeCredit) <= creditTotal(r)) return false;
  if (r.credit && c.nonce <= r.credit.message.nonce) {
    throw new RuleError("StaleNonce", `the hub's credit raises the total with nonce ${c.nonce}, not above ${r.credit.message.nonce}`);
  }
  r.credit = { message: c, signature: credit.signature, path: credit.path ?? [] };
  return true;
}

/** Adopts a debit of this key the hub holds (recovery, or an answer lost on the way) if it is
 * newer than the record's. A debit not signed by this key is the hub misbehaving. */
export async function takeOwnDebit(r: ChannelRecord, debit: Signed<Debit>, domain: Domain): Promise<boolean> {
  await verifySigned("Debit", debit, domain, r.user);
  if (getAddress(debit.message.user) !== r.user || debit.message.epoch !== r.epoch) {
    throw new RuleError("WrongEpoch", "the hub's copy of this wallet's debit is for another channel or epoch");
  }
  if (r.debit && debit.message.nonce <= r.debit.message.nonce) return false;
  r.debit = debit;
  if (r.pending && r.pending.message.nonce <= debit.message.nonce) r.pending = null;
  return true;
}

/** The next debit paying `amount` to `recipient` under `paymentId` (unsigned). Refuses an
 * amount above the balance, and a new payment while one is unanswered. */
export function nextDebit(
  r: ChannelRecord,
  chain: ChainChannel,
  recipient: Address,
  amount: bigint,
  paymentId: Hex,
): Debit {
  if (r.pending) {
    throw new RuleError("payment_unresolved", "an earlier payment has no answer yet; retry it before paying again");
  }
  if (amount <= 0n || amount > MAX_AMOUNT) throw new RuleError("malformed_amount", "the amount is zero or too large");
  if (getAddress(recipient) === r.user) throw new RuleError("SelfPayment", "a payment to yourself moves nothing");
  const available = balance(r, chain);
  if (amount > available) {
    throw new RuleError("InsufficientBalance", `the balance is ${available} base units, less than ${amount}`);
  }
  const total = debitTotal(r) + amount;
  return {
    user: r.user,
    epoch: r.epoch,
    nonce: (r.debit?.message.nonce ?? 0) + 1,
    cumulativeDebit: total.toString(),
    lockedAmount: r.debit?.message.lockedAmount ?? "0",
    locksRoot: r.debit?.message.locksRoot ?? ZERO_WORD,
    kind: 0,
    recipient: getAddress(recipient),
    amount: amount.toString(),
    paymentId,
  };
}

/** Settles the pending debit with the hub's receipt: the hub must have signed it and it must
 * name exactly this debit (its digest), or the wallet refuses it and keeps the debit pending. */
export async function takeReceipt(
  r: ChannelRecord,
  receipt: HubSigned<Receipt>,
  domain: Domain,
  hub: Address,
): Promise<void> {
  const pending = r.pending;
  if (!pending) throw new RuleError("no_pending_payment", "there is no payment waiting for a receipt");
  await verifyHubSigned("Receipt", receipt, domain, hub);
  const m = receipt.message;
  const expected = digest("Debit", pending.message, domain);
  if (
    getAddress(m.payer) !== r.user ||
    m.epoch !== pending.message.epoch ||
    m.debitNonce !== pending.message.nonce ||
    m.paymentId.toLowerCase() !== pending.message.paymentId.toLowerCase() ||
    m.debitDigest.toLowerCase() !== expected.toLowerCase()
  ) {
    throw new RuleError("ReceiptMismatch", "the hub's receipt does not name the payment this wallet signed");
  }
  r.debit = pending;
  r.pending = null;
}

/** A refusal with a refund (the hub's credit of the amount back) settles the pending debit as
 * refused for good: the debit stands (the hub may charge it) and the credit returns the amount. */
export async function takeRefund(
  r: ChannelRecord,
  refund: HubSigned<Credit>,
  domain: Domain,
  hub: Address,
): Promise<void> {
  const pending = r.pending;
  if (!pending) throw new RuleError("no_pending_payment", "there is no payment waiting for an answer");
  const before = creditTotal(r);
  const taken = await takeCredit(r, refund, domain, hub);
  if (!taken || creditTotal(r) - before < BigInt(pending.message.amount)) {
    throw new RuleError("RefundTooSmall", "the hub's refund does not return the payment's amount");
  }
  r.debit = pending;
  r.pending = null;
}

/** Adopts the chain's epoch: a channel the contract reopened (or one first opened) starts a new
 * record; the old epoch's proofs are spent. */
export function followChainEpoch(r: ChannelRecord, chain: ChainChannel): boolean {
  if (chain.status === STATUS.none || chain.epoch === r.epoch) return false;
  if (chain.epoch < r.epoch) throw new RuleError("WrongEpoch", `the chain is at epoch ${chain.epoch}, this wallet at ${r.epoch}`);
  Object.assign(r, emptyRecord(r.user, chain.epoch));
  return true;
}

/** What a closing channel calls for at chain head `head` (spec §5.10): the wallet's newest
 * credit if the contract holds a lower total while the period is open (totals decide: a
 * credit with a higher nonce and a lower total is no defence), and a settlement once it is
 * over. Whoever started the close, the hub included. */
export function defence(
  r: ChannelRecord,
  chain: ChainChannel,
  head: number,
): { submitCredit: HubSigned<Credit> | null; settle: boolean } {
  if (chain.status !== STATUS.closing) return { submitCredit: null, settle: false };
  const open = head < chain.settleBlock;
  const stale = r.credit !== null && chain.epoch === r.epoch && chain.creditTotal < creditTotal(r);
  return { submitCredit: open && stale ? r.credit : null, settle: !open };
}

/** The withdrawal message for `amount` more, valid until `expiryBlock`. */
export function nextWithdrawal(r: ChannelRecord, chain: ChainChannel, amount: bigint, expiryBlock: number): Withdrawal {
  if (r.withdrawal && BigInt(r.withdrawal.withdrawal.cumulativeWithdrawn) > chain.withdrawn) {
    throw new RuleError("withdrawal_unfinished", "an earlier withdrawal is signed but not yet paid on chain");
  }
  const available = balance(r, chain);
  if (amount <= 0n || amount > available) {
    throw new RuleError("InsufficientBalance", `the balance is ${available} base units, less than ${amount}`);
  }
  return { user: r.user, epoch: r.epoch, cumulativeWithdrawn: (chain.withdrawn + amount).toString(), expiryBlock };
}

/** Checks the hub's co-signature of a withdrawal this wallet signed and keeps both. */
export async function takeCoSignedWithdrawal(
  r: ChannelRecord,
  ours: Signed<Withdrawal>,
  hubSignature: Hex,
  domain: Domain,
  hub: Address,
): Promise<CoSignedWithdrawal> {
  await verifySigned("Withdrawal", { message: ours.message, signature: hubSignature }, domain, hub);
  r.withdrawal = { withdrawal: ours.message, userSignature: ours.signature, hubSignature };
  return r.withdrawal;
}

/** Compares the hub's report of the account with the record; every disagreement in words. */
export function disagreements(r: ChannelRecord, account: { cumulativeDebit?: string; cumulativeCredit?: string }): string[] {
  const out: string[] = [];
  const hubDebit = BigInt(account.cumulativeDebit ?? "0");
  if (hubDebit > debitTotal(r) && !r.pending) {
    out.push(`the hub counts ${hubDebit} paid out, but this wallet signed only ${debitTotal(r)}`);
  }
  const hubCredit = BigInt(account.cumulativeCredit ?? "0");
  if (hubCredit < creditTotal(r)) {
    out.push(`the hub counts ${hubCredit} paid in, but holds a signed credit of ${creditTotal(r)}`);
  }
  return out;
}
