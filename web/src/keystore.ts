//! The key, encrypted in the browser's storage: PBKDF2-SHA-256 stretches the password into an
//! AES-256-GCM key (WebCrypto), so the storage holds only ciphertext. Losing the storage loses
//! nothing but this copy: the user's backup of the key (shown once, on creation) restores the
//! wallet, whose state the hub and the chain hold (model.ts).

import type { Address, Hex } from "viem";
import { bytesToHex, hexToBytes } from "viem";

/** PBKDF2 rounds (OWASP's 2023 figure for PBKDF2-HMAC-SHA-256 is 600,000). */
export const PBKDF2_ITERATIONS = 600_000;
/** Shortest password the wallet accepts. */
export const MIN_PASSWORD_CHARS = 8;

export interface Keystore {
  version: 1;
  address: Address;
  iterations: number;
  salt: Hex;
  iv: Hex;
  ciphertext: Hex;
}

async function aesKey(password: string, salt: Uint8Array, iterations: number): Promise<CryptoKey> {
  const base = await crypto.subtle.importKey("raw", new TextEncoder().encode(password), "PBKDF2", false, ["deriveKey"]);
  return crypto.subtle.deriveKey(
    { name: "PBKDF2", hash: "SHA-256", salt: salt as BufferSource, iterations },
    base,
    { name: "AES-GCM", length: 256 },
    false,
    ["encrypt", "decrypt"],
  );
}

export async function encryptKey(privateKey: Hex, address: Address, password: string): Promise<Keystore> {
  if (password.length < MIN_PASSWORD_CHARS) {
    throw new Error(`Choose a password of at least ${MIN_PASSWORD_CHARS} characters.`);
  }
  const salt = crypto.getRandomValues(new Uint8Array(16));
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const key = await aesKey(password, salt, PBKDF2_ITERATIONS);
  const ct = await crypto.subtle.encrypt({ name: "AES-GCM", iv }, key, hexToBytes(privateKey) as BufferSource);
  return {
    version: 1,
    address,
    iterations: PBKDF2_ITERATIONS,
    salt: bytesToHex(salt),
    iv: bytesToHex(iv),
    ciphertext: bytesToHex(new Uint8Array(ct)),
  };
}

export async function decryptKey(ks: Keystore, password: string): Promise<Hex> {
  const key = await aesKey(password, hexToBytes(ks.salt), ks.iterations);
  try {
    const pt = await crypto.subtle.decrypt({ name: "AES-GCM", iv: hexToBytes(ks.iv) as BufferSource }, key, hexToBytes(ks.ciphertext) as BufferSource);
    return bytesToHex(new Uint8Array(pt));
  } catch {
    throw new Error("Wrong password: the stored key does not open with it.");
  }
}
