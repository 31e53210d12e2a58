//! The protocol's rules as the browser applies them: the EIP-712 messages (byte-identical to
//! `infhub-core` and the contract), the hub's batched signatures (a signature over a Merkle root
//! of digests), point locks and payment requests. Pure functions with no IO, so `node --test`
//! runs the shared `test-vectors/` through exactly this code (web/test/).

import { secp256k1 } from "@noble/curves/secp256k1.js";
import {
  type Address,
  type Hex,
  concat,
  getAddress,
  hashTypedData,
  hexToBigInt,
  isAddress,
  isHex,
  keccak256,
  recoverAddress,
  toHex,
} from "viem";
import { publicKeyToAddress } from "viem/accounts";

/** The signing domain: one hub contract on one chain. */
export interface Domain {
  chainId: bigint;
  verifyingContract: Address;
}

/** Every infhub message type, as the contract's `*_TYPEHASH` preimages declare them. */
export const TYPES = {
  Debit: [
    { name: "user", type: "address" },
    { name: "epoch", type: "uint64" },
    { name: "nonce", type: "uint64" },
    { name: "cumulativeDebit", type: "uint128" },
    { name: "lockedAmount", type: "uint128" },
    { name: "locksRoot", type: "bytes32" },
    { name: "kind", type: "uint8" },
    { name: "recipient", type: "address" },
    { name: "amount", type: "uint128" },
    { name: "paymentId", type: "bytes32" },
  ],
  Credit: [
    { name: "user", type: "address" },
    { name: "epoch", type: "uint64" },
    { name: "nonce", type: "uint64" },
    { name: "cumulativeCredit", type: "uint128" },
    { name: "lockedAmount", type: "uint128" },
    { name: "locksRoot", type: "bytes32" },
  ],
  Withdrawal: [
    { name: "user", type: "address" },
    { name: "epoch", type: "uint64" },
    { name: "cumulativeWithdrawn", type: "uint128" },
    { name: "expiryBlock", type: "uint64" },
  ],
  TowerFee: [
    { name: "user", type: "address" },
    { name: "epoch", type: "uint64" },
    { name: "tower", type: "address" },
    { name: "maxFee", type: "uint128" },
    { name: "gainShareBps", type: "uint16" },
    { name: "validUntilBlock", type: "uint64" },
  ],
  Receipt: [
    { name: "payer", type: "address" },
    { name: "epoch", type: "uint64" },
    { name: "debitNonce", type: "uint64" },
    { name: "paymentId", type: "bytes32" },
    { name: "debitDigest", type: "bytes32" },
  ],
  Registration: [
    { name: "user", type: "address" },
    { name: "validUntilBlock", type: "uint64" },
  ],
  Login: [
    { name: "user", type: "address" },
    { name: "challenge", type: "bytes32" },
  ],
  ProofBatch: [{ name: "root", type: "bytes32" }],
  Lock: [
    { name: "lockId", type: "bytes32" },
    { name: "amount", type: "uint128" },
    { name: "expiryBlock", type: "uint64" },
    { name: "point", type: "address" },
  ],
} as const;

export type MessageType = keyof typeof TYPES;

/** A debit as the hub's API writes it (amounts as decimal strings, camelCase). */
export interface Debit {
  user: Address;
  epoch: number;
  nonce: number;
  cumulativeDebit: string;
  lockedAmount: string;
  locksRoot: Hex;
  kind: number;
  recipient: Address;
  amount: string;
  paymentId: Hex;
}

/** A credit as the hub's API writes it. */
export interface Credit {
  user: Address;
  epoch: number;
  nonce: number;
  cumulativeCredit: string;
  lockedAmount: string;
  locksRoot: Hex;
}

/** A withdrawal as the hub's API writes it. */
export interface Withdrawal {
  user: Address;
  epoch: number;
  cumulativeWithdrawn: string;
  expiryBlock: number;
}

/** The hub's receipt of a debit it applied. */
export interface Receipt {
  payer: Address;
  epoch: number;
  debitNonce: number;
  paymentId: Hex;
  debitDigest: Hex;
}

/** A message with its signer's signature. */
export interface Signed<M> {
  message: M;
  signature: Hex;
}

/** A message the hub signed, directly (empty path) or as a leaf of a batch. */
export interface HubSigned<M> extends Signed<M> {
  path?: Hex[];
}

/** A rule a message or an answer broke, named as in the core, the contract and the API. */
export class RuleError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "RuleError";
  }
}

/** The largest value of a `uint128`, the width of every amount. */
export const MAX_AMOUNT = (1n << 128n) - 1n;
/** Longest Merkle path a batched hub proof may carry (the contract's `MAX_PROOF_DEPTH`). */
export const MAX_PROOF_DEPTH = 20;
/** The zero word. */
export const ZERO_WORD: Hex = `0x${"00".repeat(32)}`;
/** The order of secp256k1's group: lock scalars live in `1..n`. */
export const GROUP_ORDER = secp256k1.Point.CURVE().n;

function eip712Domain(domain: Domain) {
  return { name: "InfHub", version: "1", chainId: domain.chainId, verifyingContract: domain.verifyingContract };
}

/** Converts a message's JSON form to the values EIP-712 hashing takes (numbers as bigints). */
function typedValues(type: MessageType, message: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const field of TYPES[type]) {
    const value = message[field.name];
    if (value === undefined || value === null) {
      throw new RuleError("malformed_message", `${type}.${field.name} is missing`);
    }
    if (field.type.startsWith("uint")) {
      const n = BigInt(value as string | number | bigint);
      const bits = BigInt(field.type.slice(4));
      if (n < 0n || n >= 1n << bits) {
        throw new RuleError("malformed_message", `${type}.${field.name} = ${n} does not fit a ${field.type}`);
      }
      out[field.name] = n;
    } else if (field.type === "address") {
      if (typeof value !== "string" || !isAddress(value, { strict: false })) {
        throw new RuleError("malformed_message", `${type}.${field.name} is not an address`);
      }
      out[field.name] = getAddress(value);
    } else {
      if (typeof value !== "string" || !isHex(value) || value.length !== 66) {
        throw new RuleError("malformed_message", `${type}.${field.name} is not a 32-byte word`);
      }
      out[field.name] = value;
    }
  }
  return out;
}

/** The EIP-712 digest of `message` in `domain`, as `InfHub.hash*` computes it. */
export function digest(type: MessageType, message: object, domain: Domain): Hex {
  return hashTypedData({
    domain: eip712Domain(domain),
    types: { [type]: TYPES[type] } as Record<string, readonly { name: string; type: string }[]>,
    primaryType: type,
    message: typedValues(type, message as Record<string, unknown>),
  });
}

/** The domain separator, as `InfHub.domainSeparator()` returns it. */
export function domainSeparator(domain: Domain): Hex {
  // hashTypedData of an empty-struct message is not allowed; compute the separator directly.
  const typeHash = keccak256(
    new TextEncoder().encode("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
  );
  const word = (n: bigint) => toHex(n, { size: 32 });
  return keccak256(
    concat([
      typeHash,
      keccak256(new TextEncoder().encode("InfHub")),
      keccak256(new TextEncoder().encode("1")),
      word(domain.chainId),
      `0x${"00".repeat(12)}${domain.verifyingContract.slice(2).toLowerCase()}` as Hex,
    ]),
  );
}

/** The signer of a 65-byte signature over `digestHex`; `InvalidSignature` when malformed. */
export async function signerOf(digestHex: Hex, signature: Hex): Promise<Address> {
  if (!isHex(signature) || signature.length !== 132) {
    throw new RuleError("InvalidSignature", "a signature is 65 bytes");
  }
  const v = Number.parseInt(signature.slice(130), 16);
  if (v !== 27 && v !== 28) {
    throw new RuleError("InvalidSignature", `signature v must be 27 or 28, not ${v}`);
  }
  // High-s signatures are malleable; the contract (OpenZeppelin ECDSA) refuses them.
  const s = hexToBigInt(`0x${signature.slice(66, 130)}`);
  if (s > GROUP_ORDER / 2n) {
    throw new RuleError("InvalidSignature", "signature s is in the upper half of the group order");
  }
  try {
    return await recoverAddress({ hash: digestHex, signature });
  } catch {
    throw new RuleError("InvalidSignature", "the signature does not recover to any key");
  }
}

/** Ok if `expected` signed `type` `message` in `domain`; `WrongSigner` otherwise. */
export async function verifySigned(
  type: MessageType,
  signed: Signed<object>,
  domain: Domain,
  expected: Address,
): Promise<void> {
  const signer = await signerOf(digest(type, signed.message, domain), signed.signature);
  if (getAddress(signer) !== getAddress(expected)) {
    throw new RuleError("WrongSigner", `${type} is signed by ${signer}, not ${expected}`);
  }
}

/** The hash of two sibling nodes, in sorted order (OpenZeppelin's `MerkleProof`). */
export function hashPair(a: Hex, b: Hex): Hex {
  return hexToBigInt(a) <= hexToBigInt(b) ? keccak256(concat([a, b])) : keccak256(concat([b, a]));
}

/** Folds a leaf up its path to the root. */
export function pathRoot(leaf: Hex, path: readonly Hex[]): Hex {
  if (path.length > MAX_PROOF_DEPTH) {
    throw new RuleError("InvalidSignature", `a proof path has at most ${MAX_PROOF_DEPTH} nodes`);
  }
  return path.reduce<Hex>((node, sibling) => hashPair(node, sibling), leaf);
}

/** The Merkle root of a set of digests: sorted, deduplicated, odd nodes carried up, a single
 * leaf paired with the zero word (`infhub_core::merkle::MerkleTree`). */
export function merkleRoot(leaves: readonly Hex[]): Hex {
  if (leaves.length === 0) return ZERO_WORD;
  let level = [...new Set(leaves.map((l) => l.toLowerCase() as Hex))].sort((a, b) =>
    hexToBigInt(a) < hexToBigInt(b) ? -1 : 1,
  );
  if (level.length === 1) return hashPair(level[0], ZERO_WORD);
  while (level.length > 1) {
    const next: Hex[] = [];
    for (let i = 0; i < level.length; i += 2) {
      next.push(i + 1 < level.length ? hashPair(level[i], level[i + 1]) : level[i]);
    }
    level = next;
  }
  return level[0];
}

/** Ok if the hub signed `message`, directly or through a batch root (`HubSigned::verify`). */
export async function verifyHubSigned(
  type: MessageType,
  signed: HubSigned<object>,
  domain: Domain,
  hub: Address,
): Promise<void> {
  const leaf = digest(type, signed.message, domain);
  const path = signed.path ?? [];
  const signed_digest = path.length === 0 ? leaf : digest("ProofBatch", { root: pathRoot(leaf, path) }, domain);
  const signer = await signerOf(signed_digest, signed.signature);
  if (getAddress(signer) !== getAddress(hub)) {
    throw new RuleError("WrongSigner", `the hub's ${type} is signed by ${signer}, not the hub ${hub}`);
  }
}

/** A hub proof as the contract takes it: the 65-byte signature, then the path's nodes. */
export function proofBytes(signed: HubSigned<object>): Hex {
  return concat([signed.signature, ...(signed.path ?? [])]);
}

// ------------------------------------------------------------------------------ point locks

/** Checks a lock scalar is in `1..n`; `ScalarOutOfRange` otherwise. */
export function checkScalar(scalar: bigint): bigint {
  if (scalar <= 0n || scalar >= GROUP_ORDER) {
    throw new RuleError("ScalarOutOfRange", "a lock scalar is in 1..n");
  }
  return scalar;
}

/** The address naming the point `scalar·G`, as the contract's registry names a lock's point. */
export function pointAddress(scalar: bigint): Address {
  const point = secp256k1.Point.BASE.multiply(checkScalar(scalar));
  return publicKeyToAddress(toHex(point.toBytes(false)));
}

/** The `s` of the registry's ecrecover check of a scalar: `Gx·t mod n`. */
export function revealS(scalar: bigint): bigint {
  const gx = secp256k1.Point.BASE.toAffine().x;
  return (gx * checkScalar(scalar)) % GROUP_ORDER;
}

/** The upstream scalar of a hop once it learns its downstream one: the downstream scalar minus
 * the hop's tweak, mod n (each hop's point is its upstream point plus its tweak times G). */
export function upstreamScalar(downstream: bigint, tweak: bigint): bigint {
  return checkScalar((checkScalar(downstream) - checkScalar(tweak) + GROUP_ORDER) % GROUP_ORDER);
}

// ------------------------------------------------------------------------- payment requests

/** A merchant's payment request: who, how much, under which id, until when. */
export interface PaymentRequest {
  payee: Address;
  amount: bigint;
  paymentId: Hex;
  description: string;
  /** Seconds since 1970; 0: no expiry. */
  expiresAtSeconds: number;
}

/** Longest description a payment request may carry. */
export const MAX_DESCRIPTION_CHARS = 256;

/** Writes a request as an `infhub:` URI (what a merchant shows or links to). */
export function formatPaymentRequest(r: PaymentRequest): string {
  const q = new URLSearchParams({ amount: r.amount.toString(), id: r.paymentId });
  if (r.description) q.set("description", r.description);
  if (r.expiresAtSeconds) q.set("expires", String(r.expiresAtSeconds));
  return `infhub:${r.payee}?${q.toString()}`;
}

/** Reads an `infhub:<payee>?amount=&id=&description=&expires=` request, refusing anything
 * malformed or expired at `nowSeconds` by name. */
export function parsePaymentRequest(text: string, nowSeconds: number): PaymentRequest {
  const t = text.trim();
  const m = /^infhub:(0x[0-9a-fA-F]{40})\?(.*)$/.exec(t);
  if (!m) throw new RuleError("malformed_request", "a payment request reads infhub:<address>?amount=…&id=…");
  const q = new URLSearchParams(m[2]);
  const amountText = q.get("amount") ?? "";
  if (!/^[0-9]{1,39}$/.test(amountText)) throw new RuleError("malformed_request", "the request's amount is not a whole number of base units");
  const amount = BigInt(amountText);
  if (amount === 0n || amount > MAX_AMOUNT) throw new RuleError("malformed_request", "the request's amount is zero or too large");
  const id = q.get("id") ?? "";
  if (!/^0x[0-9a-fA-F]{64}$/.test(id)) throw new RuleError("malformed_request", "the request's id is not a 32-byte hex word");
  const description = q.get("description") ?? "";
  if (description.length > MAX_DESCRIPTION_CHARS) {
    throw new RuleError("malformed_request", `the request's description is longer than ${MAX_DESCRIPTION_CHARS} characters`);
  }
  const expiresText = q.get("expires") ?? "0";
  if (!/^[0-9]{1,15}$/.test(expiresText)) throw new RuleError("malformed_request", "the request's expiry is not a number of seconds");
  const expiresAtSeconds = Number(expiresText);
  if (expiresAtSeconds !== 0 && expiresAtSeconds <= nowSeconds) {
    throw new RuleError("request_expired", "this payment request has expired; ask the payee for a new one");
  }
  return { payee: getAddress(m[1]), amount, paymentId: id.toLowerCase() as Hex, description, expiresAtSeconds };
}

// ---------------------------------------------------------------------------------- amounts

/** Formats base units as a decimal with `decimals` places, trailing zeros dropped. */
export function formatUnits(amount: bigint, decimals: number): string {
  const base = 10n ** BigInt(decimals);
  const whole = amount / base;
  const frac = (amount % base).toString().padStart(decimals, "0").replace(/0+$/, "");
  return frac ? `${whole}.${frac}` : whole.toString();
}

/** Parses a decimal like `12.5` into base units; refuses more places than `decimals`. */
export function parseUnits(text: string, decimals: number): bigint {
  const m = /^([0-9]{1,39})(?:\.([0-9]+))?$/.exec(text.trim());
  if (!m) throw new RuleError("malformed_amount", `"${text}" is not an amount (digits, optionally a point and decimals)`);
  const frac = m[2] ?? "";
  if (frac.length > decimals) throw new RuleError("malformed_amount", `INF has ${decimals} decimals at most`);
  const value = BigInt(m[1]) * 10n ** BigInt(decimals) + BigInt(frac.padEnd(decimals, "0") || "0");
  if (value === 0n) throw new RuleError("malformed_amount", "the amount is zero");
  if (value > MAX_AMOUNT) throw new RuleError("malformed_amount", "the amount is larger than any balance can be");
  return value;
}
