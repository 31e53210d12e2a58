//! The web wallet's page: create or import a key, register, deposit, pay a user or a payment
//! request, withdraw, see balance and history, and exit with the hub down. Every hub answer is
//! checked by model.ts before the page believes it; the chain is reached directly (chain.ts).
//! What is stored: the encrypted key, the channel record (newest proofs) and the hub's
//! addresses, so a page opened while the hub is down can still exit.

import { type Address, type Hex, getAddress, isAddress, toHex } from "viem";
import { type LocalAccount, generatePrivateKey, privateKeyToAccount } from "viem/accounts";
import { ChainClient, TOKEN_ABI, HUB_ABI } from "./chain.js";
import { HubClient, HubError, type HistoryEntry } from "./hub.js";
import { type Keystore, decryptKey, encryptKey } from "./keystore.js";
import {
  type ChainChannel,
  type ChannelRecord,
  type HubInfo,
  STATUS,
  balance,
  defence,
  disagreements,
  domainOf,
  emptyRecord,
  followChainEpoch,
  nextDebit,
  nextWithdrawal,
  takeCoSignedWithdrawal,
  takeCredit,
  takeOwnDebit,
  takeReceipt,
  takeRefund,
} from "./model.js";
import {
  type Debit,
  type Signed,
  type Withdrawal,
  RuleError,
  TYPES,
  ZERO_WORD,
  formatUnits,
  parsePaymentRequest,
  parseUnits,
  proofBytes,
} from "./protocol.js";

/** Blocks a registration request stays valid for. */
const REGISTRATION_VALID_BLOCKS = 50;
/** Blocks a withdrawal stays valid for (within the hub's `max_withdrawal_expiry_blocks`). */
const WITHDRAWAL_VALID_BLOCKS = 50;
/** How long the wallet waits for the hub to see something on chain, in milliseconds. */
const HUB_CATCH_UP_MS = 120_000;
/** History entries shown. */
const HISTORY_ROWS = 50;

const KEYSTORE = "infhub.keystore";
const HUB_INFO = "infhub.hub";
const recordKey = (user: Address) => `infhub.record.${user}`;

interface Session {
  account: LocalAccount;
  info: HubInfo;
  hub: HubClient;
  chain: ChainClient;
  record: ChannelRecord;
  chainView: ChainChannel;
  hubUp: boolean;
}

let session: Session | null = null;
let busy = false;

const $ = <T extends HTMLElement = HTMLElement>(id: string) => document.getElementById(id) as T;
const input = (id: string) => $<HTMLInputElement>(id).value.trim();

function show(view: "setup" | "main") {
  $("setup").hidden = view !== "setup";
  $("main").hidden = view !== "main";
}

function progress(text: string) {
  $("progress").textContent = text;
}

function fail(e: unknown) {
  $("error").textContent = plain(e);
  $("error").hidden = false;
  progress("");
}

/** Plain-language words for what went wrong. */
function plain(e: unknown): string {
  if (e instanceof HubError) {
    if (e.unreachable) return "The hub does not answer. Your funds are safe: you can still exit on chain below.";
    const words: Record<string, string> = {
      InsufficientBalance: "Not enough balance for this payment.",
      UnknownRecipient: "The recipient has no account at this hub.",
      account_frozen: "The hub's operator has frozen this account.",
      account_rate_limited: "Too many requests from this account: wait a moment and retry.",
      payment_id_reused: "This payment request was already paid.",
    };
    return `${words[e.code] ?? e.message} (${e.code})`;
  }
  if (e instanceof RuleError) {
    const words: Record<string, string> = {
      WrongSigner: "The hub's answer is not signed by the hub: it was refused, and nothing was changed.",
      InvalidSignature: "The hub's answer carries a broken signature: it was refused, and nothing was changed.",
      ReceiptMismatch: "The hub's receipt does not match your payment: it was refused; the payment stays pending.",
      InsufficientBalance: "Not enough balance.",
      payment_unresolved: "An earlier payment has no answer yet: press Retry before paying again.",
      request_expired: "This payment request has expired: ask the payee for a new one.",
    };
    return `${words[e.code] ?? e.message} (${e.code})`;
  }
  if (e instanceof Error) return e.message.split("\n")[0];
  return String(e);
}

function save(s: Session) {
  localStorage.setItem(recordKey(s.record.user), JSON.stringify(s.record));
}

async function withBusy(what: string, f: () => Promise<void>) {
  if (busy) return;
  busy = true;
  $("error").hidden = true;
  document.body.dataset.busy = "1";
  progress(`${what}…`);
  try {
    await f();
    if (session) await refresh(session);
    progress(`${what}: done.`);
  } catch (e) {
    fail(e);
    if (session) await refresh(session).catch(() => undefined);
  } finally {
    busy = false;
    delete document.body.dataset.busy;
  }
}

// ----------------------------------------------------------------------------------- set-up

async function loadHubInfo(): Promise<HubInfo> {
  const hub = new HubClient(location.origin);
  try {
    const [i, cfg] = await Promise.all([hub.info(), hub.walletConfig()]);
    const probe = new ChainClient(cfg.rpcUrl, i.chainId, i.hubContract, i.token, privateKeyToAccount(generatePrivateKey()));
    const [decimals, period] = await Promise.all([
      probe.public.readContract({ address: i.token, abi: TOKEN_ABI, functionName: "decimals" }),
      probe.public.readContract({ address: i.hubContract, abi: HUB_ABI, functionName: "challengePeriodBlocks" }),
    ]);
    const info: HubInfo = {
      hubUrl: location.origin,
      rpcUrl: cfg.rpcUrl,
      hub: getAddress(i.hub),
      contract: getAddress(i.hubContract),
      token: getAddress(i.token),
      chainId: String(i.chainId),
      decimals: Number(decimals),
      challengePeriodBlocks: Number(period),
    };
    localStorage.setItem(HUB_INFO, JSON.stringify(info));
    return info;
  } catch (e) {
    const kept = localStorage.getItem(HUB_INFO);
    if (kept) return JSON.parse(kept) as HubInfo;
    throw e;
  }
}

async function open(privateKey: Hex) {
  const account = privateKeyToAccount(privateKey);
  const info = await loadHubInfo();
  const kept = localStorage.getItem(recordKey(account.address));
  const record = kept ? (JSON.parse(kept) as ChannelRecord) : emptyRecord(account.address);
  const chain = new ChainClient(info.rpcUrl, Number(info.chainId), info.contract, info.token, account);
  const s: Session = {
    account,
    info,
    hub: new HubClient(info.hubUrl),
    chain,
    record,
    chainView: { status: 0, epoch: 0, settleBlock: 0, deposited: 0n, withdrawn: 0n, creditTotal: 0n },
    hubUp: false,
  };
  session = s;
  $("address").textContent = account.address;
  show("main");
  await refresh(s);
}

async function create() {
  const password = input("create-password");
  const key = generatePrivateKey();
  const account = privateKeyToAccount(key);
  const ks = await encryptKey(key, account.address, password);
  localStorage.setItem(KEYSTORE, JSON.stringify(ks));
  $("backup-key").textContent = key;
  $("backup").hidden = false;
  await open(key);
}

async function importKey() {
  const text = input("import-key");
  if (!/^0x[0-9a-fA-F]{64}$/.test(text)) throw new Error("A private key is 0x followed by 64 hexadecimal digits.");
  const key = text.toLowerCase() as Hex;
  const account = privateKeyToAccount(key);
  localStorage.setItem(KEYSTORE, JSON.stringify(await encryptKey(key, account.address, input("import-password"))));
  await open(key);
}

async function unlock() {
  const kept = localStorage.getItem(KEYSTORE);
  if (!kept) throw new Error("No wallet is stored in this browser: create one or import your key.");
  await open(await decryptKey(JSON.parse(kept) as Keystore, input("unlock-password")));
}

// ------------------------------------------------------------------------------------ sync

/** The EIP-712 domain of every message this wallet signs: the hub contract on its chain. */
function eip712Domain(s: Session) {
  return { name: "InfHub", version: "1", chainId: BigInt(s.info.chainId), verifyingContract: s.info.contract } as const;
}

async function login(s: Session) {
  const { challenge } = await s.hub.challenge(s.account.address);
  const signature = await s.account.signTypedData({
    domain: eip712Domain(s),
    types: { Login: TYPES.Login },
    primaryType: "Login",
    message: { user: s.account.address, challenge },
  });
  await s.hub.session(s.account.address, challenge, signature);
}

/** Reads the chain, then the hub (if it answers), checks every proof, and redraws. A close
 * (the hub's or anyone's) that holds a lower credit total than this wallet's newest credit is
 * answered at once with that credit. */
async function refresh(s: Session) {
  s.chainView = await s.chain.channel(s.account.address);
  if (followChainEpoch(s.record, s.chainView)) save(s);
  const d = defence(s.record, s.chainView, await s.chain.head());
  if (d.submitCredit) {
    await s.chain.submitCredit(d.submitCredit.message, proofBytes(d.submitCredit), progress);
    s.chainView = await s.chain.channel(s.account.address);
  }
  const notes: string[] = [];
  s.hubUp = true;
  try {
    if (!s.hub.loggedIn) await login(s);
    const a = await s.hub.account(s.account.address).catch(async (e) => {
      if (e instanceof HubError && e.status === 401) {
        s.hub.forgetSession();
        await login(s);
        return s.hub.account(s.account.address);
      }
      throw e;
    });
    const domain = domainOf(s.info);
    if (a.epoch === s.record.epoch) {
      if (a.latestCredit) await takeCredit(s.record, a.latestCredit, domain, s.info.hub);
      if (a.latestDebit) await takeOwnDebit(s.record, a.latestDebit, domain);
      notes.push(...disagreements(s.record, a));
    }
    save(s);
    await showHistory(s);
  } catch (e) {
    if (e instanceof HubError && e.unreachable) {
      s.hubUp = false;
    } else if (e instanceof HubError && e.code === "unknown_account") {
      notes.push("Not registered at this hub yet.");
    } else {
      throw e;
    }
  }
  render(s, notes);
}

function render(s: Session, notes: string[]) {
  const d = s.info.decimals;
  const v = s.chainView;
  const state = ["not opened", "open", "closing", "settled"][v.status] ?? "unknown";
  $("channel-state").textContent = state;
  $("hub-state").textContent = s.hubUp ? "hub online" : "hub offline: chain only";
  $("hub-state").dataset.up = s.hubUp ? "1" : "0";
  let bal = "—";
  if (v.status === STATUS.open || v.status === STATUS.closing) {
    try {
      bal = formatUnits(balance(s.record, v), d);
    } catch (e) {
      notes.push(plain(e));
    }
  }
  $("balance").textContent = bal;
  $("pending").hidden = !s.record.pending;
  $("notes").textContent = notes.join(" ");
  $("register").hidden = v.status !== STATUS.none && v.status !== STATUS.settled;
  $("settle").hidden = v.status !== STATUS.closing;
  $("exit").hidden = v.status !== STATUS.open;
  $("settle-block").textContent = v.status === STATUS.closing ? String(v.settleBlock) : "";
  void Promise.all([s.chain.tokenBalance(s.account.address), s.chain.head()]).then(([t, head]) => {
    $("chain-balance").textContent = formatUnits(t, d);
    $("head").textContent = String(head);
  });
}

async function showHistory(s: Session) {
  const { entries } = await s.hub.history(s.account.address, HISTORY_ROWS);
  const body = $("history");
  body.replaceChildren();
  for (const e of entries) {
    const row = document.createElement("tr");
    for (const text of historyCells(e, s.info.decimals)) {
      const cell = document.createElement("td");
      cell.textContent = text;
      row.append(cell);
    }
    body.append(row);
  }
}

function historyCells(e: HistoryEntry, decimals: number): string[] {
  const when = e.atMs ? new Date(e.atMs).toISOString().replace("T", " ").slice(0, 19) : "";
  const kind = String(e.kind ?? e.type ?? "");
  const amount = typeof e.amount === "string" ? formatUnits(BigInt(e.amount), decimals) : "";
  const who = String(e.counterparty ?? e.recipient ?? e.payer ?? "");
  return [String(e.seq), when, kind, amount, who];
}

// --------------------------------------------------------------------------------- actions

async function waitFor(what: string, done: () => Promise<boolean>) {
  const until = Date.now() + HUB_CATCH_UP_MS;
  while (!(await done())) {
    if (Date.now() > until) throw new Error(`${what} did not happen within ${HUB_CATCH_UP_MS / 1000} s; press Refresh later.`);
    progress(`${what}…`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

async function register(s: Session) {
  const validUntilBlock = (await s.chain.head()) + REGISTRATION_VALID_BLOCKS;
  const message = { user: s.account.address, validUntilBlock };
  const signature = await s.account.signTypedData({
    domain: eip712Domain(s),
    types: { Registration: TYPES.Registration },
    primaryType: "Registration",
    message: { user: message.user, validUntilBlock: BigInt(validUntilBlock) },
  });
  await s.hub.register(message, signature);
  await waitFor("Waiting for the hub to open your channel on chain", async () => {
    s.chainView = await s.chain.channel(s.account.address);
    return s.chainView.status === STATUS.open;
  });
  followChainEpoch(s.record, s.chainView);
  save(s);
}

async function deposit(s: Session) {
  const amount = parseUnits(input("deposit-amount"), s.info.decimals);
  const before = s.chainView.deposited;
  await s.chain.deposit(s.account.address, amount, progress);
  await waitFor("Waiting for the hub to count the deposit (confirmations)", async () => {
    const a = await s.hub.account(s.account.address);
    return BigInt(a.deposited) >= before + amount;
  });
}

async function signDebit(s: Session, d: Debit): Promise<Signed<Debit>> {
  const signature = await s.account.signTypedData({
    domain: eip712Domain(s),
    types: { Debit: TYPES.Debit },
    primaryType: "Debit",
    message: {
      ...d,
      epoch: BigInt(d.epoch),
      nonce: BigInt(d.nonce),
      cumulativeDebit: BigInt(d.cumulativeDebit),
      lockedAmount: BigInt(d.lockedAmount),
      amount: BigInt(d.amount),
    },
  });
  return { message: d, signature };
}

/** Sends the pending debit and settles it by the hub's answer (checked). */
async function sendPending(s: Session) {
  const pending = s.record.pending;
  if (!pending) return;
  const domain = domainOf(s.info);
  try {
    const answer = await s.hub.transfer(pending);
    await takeReceipt(s.record, answer.result.receipt, domain, s.info.hub);
  } catch (e) {
    if (e instanceof HubError && e.refund) {
      await takeRefund(s.record, e.refund, domain, s.info.hub);
      save(s);
      throw new Error(`The hub refused the payment and refunded it: ${plain(e)}`);
    }
    throw e;
  } finally {
    save(s);
  }
}

async function pay(s: Session, recipient: Address, amount: bigint, paymentId: Hex) {
  await refresh(s);
  const d = nextDebit(s.record, s.chainView, recipient, amount, paymentId);
  s.record.pending = await signDebit(s, d);
  save(s); // write-ahead: stored before it leaves the wallet
  progress(`Paying ${formatUnits(amount, s.info.decimals)} INF to ${recipient}…`);
  await sendPending(s);
}

function randomId(): Hex {
  return toHex(crypto.getRandomValues(new Uint8Array(32)));
}

async function payUser(s: Session) {
  const to = input("pay-to");
  if (!isAddress(to, { strict: false })) throw new Error("The recipient is not an address (0x followed by 40 hexadecimal digits).");
  await pay(s, getAddress(to), parseUnits(input("pay-amount"), s.info.decimals), randomId());
}

async function payRequest(s: Session) {
  const r = parsePaymentRequest(input("request"), Math.floor(Date.now() / 1000));
  const used = await s.hub.payment(s.account.address, r.paymentId).then(
    () => true,
    (e) => {
      if (e instanceof HubError && e.code === "unknown_payment") return false;
      throw e;
    },
  );
  if (used) throw new HubError("payment_id_reused", "this payment request was already paid", 409);
  await pay(s, r.payee, r.amount, r.paymentId);
}

async function withdraw(s: Session) {
  const amount = parseUnits(input("withdraw-amount"), s.info.decimals);
  await refresh(s);
  const w: Withdrawal = nextWithdrawal(s.record, s.chainView, amount, (await s.chain.head()) + WITHDRAWAL_VALID_BLOCKS);
  const signature = await s.account.signTypedData({
    domain: eip712Domain(s),
    types: { Withdrawal: TYPES.Withdrawal },
    primaryType: "Withdrawal",
    message: { ...w, epoch: BigInt(w.epoch), cumulativeWithdrawn: BigInt(w.cumulativeWithdrawn), expiryBlock: BigInt(w.expiryBlock) },
  });
  const answer = await s.hub.withdraw(w, signature);
  const co = await takeCoSignedWithdrawal(s.record, { message: w, signature }, answer.hubSignature, domainOf(s.info), s.info.hub);
  save(s);
  await s.chain.withdraw(co.withdrawal, co.userSignature, co.hubSignature, progress);
}

/** Unilateral exit with the newest proofs this wallet holds: the hub's newest credit (or none)
 * and this key's newest debit, then the settlement once the challenge period is over. Needs
 * only the chain. */
async function exit(s: Session) {
  s.chainView = await s.chain.channel(s.account.address);
  const r = s.record;
  if (s.chainView.status === STATUS.open) {
    if (r.credit) {
      await s.chain.startExit(r.credit.message, proofBytes(r.credit), progress);
    } else {
      const none = { user: r.user, epoch: r.epoch, nonce: 0, cumulativeCredit: "0", lockedAmount: "0", locksRoot: ZERO_WORD };
      await s.chain.startExit(none, "0x", progress);
    }
    // Only the newest debit the hub applied: an unanswered one may never have been applied,
    // and the hub submits it itself if it was (its signature is the hub's claim, not ours).
    if (r.debit) await s.chain.submitDebit(r.debit.message, r.debit.signature, progress);
  }
  await finishExit(s);
}

async function finishExit(s: Session) {
  s.chainView = await s.chain.channel(s.account.address);
  if (s.chainView.status !== STATUS.closing) throw new Error("The channel is not closing.");
  const settleBlock = s.chainView.settleBlock;
  const until = Date.now() + HUB_CATCH_UP_MS * 5;
  for (;;) {
    const head = await s.chain.head();
    if (head >= settleBlock) break;
    if (Date.now() > until) throw new Error(`The challenge period ends at block ${settleBlock}; come back then and press Finish exit.`);
    progress(`Challenge period: ${settleBlock - head} block(s) left before your funds can be paid out (block ${head} of ${settleBlock})…`);
    await new Promise((res) => setTimeout(res, 1000));
  }
  await s.chain.settle(s.account.address, progress);
}

// ------------------------------------------------------------------------------------ wiring

function on(id: string, what: string, f: (s: Session) => Promise<void>) {
  $(id).addEventListener("click", () => {
    const s = session;
    if (s) void withBusy(what, () => f(s));
  });
}

function onSetup(id: string, what: string, f: () => Promise<void>) {
  $(id).addEventListener("click", () => void withBusy(what, f));
}

export function start() {
  onSetup("create", "Creating a wallet", create);
  onSetup("import", "Importing the key", importKey);
  onSetup("unlock", "Unlocking", unlock);
  on("refresh", "Refreshing", refresh);
  on("register", "Registering", register);
  on("deposit", "Depositing", deposit);
  on("pay", "Paying", payUser);
  on("pay-request", "Paying the request", payRequest);
  on("retry", "Retrying the payment", sendPending);
  on("withdraw", "Withdrawing", withdraw);
  on("exit", "Exiting on chain", exit);
  on("settle", "Finishing the exit", finishExit);
  $("backup-done").addEventListener("click", () => {
    $("backup").hidden = true;
  });
  on("lock", "Locking", async () => {
    location.reload();
  });
  $("unlock-box").hidden = !localStorage.getItem(KEYSTORE);
  show("setup");
  document.body.dataset.ready = "1";
}

start();
