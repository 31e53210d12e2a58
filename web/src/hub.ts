//! The hub's JSON API as the browser calls it: one method per endpoint, every refusal turned
//! into a `HubError` carrying the API's error code (the same names as the core's rules), and
//! an unreachable hub told apart from a refusal (the wallet then works from the chain alone).

import type { Address, Hex } from "viem";
import type { Credit, Debit, HubSigned, Receipt, Signed, Withdrawal } from "./protocol.js";

/** Longest the wallet waits for one answer of the hub, in milliseconds. */
export const HUB_TIMEOUT_MS = 15_000;

export class HubError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status: number,
    readonly refund?: HubSigned<Credit>,
  ) {
    super(message);
    this.name = "HubError";
  }

  /** No answer at all: the hub is down or unreachable. */
  get unreachable(): boolean {
    return this.code === "hub_unreachable";
  }
}

export interface HubAccountAnswer {
  epoch: number;
  status: { state: string; settleBlock?: number };
  balance: string;
  deposited: string;
  withdrawn: string;
  cumulativeDebit: string;
  cumulativeCredit: string;
  latestDebit: Signed<Debit> | null;
  latestCredit: HubSigned<Credit> | null;
  frozen: boolean;
  confirmedBlock: number;
}

export interface HistoryEntry {
  seq: number;
  atMs?: number;
  [field: string]: unknown;
}

export class HubClient {
  private token: string | null = null;

  constructor(readonly base: string) {}

  private async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers["content-type"] = "application/json";
    if (this.token) headers.authorization = `Bearer ${this.token}`;
    let response: Response;
    try {
      response = await fetch(`${this.base}${path}`, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(HUB_TIMEOUT_MS),
      });
    } catch (e) {
      throw new HubError("hub_unreachable", `the hub at ${this.base || "this address"} does not answer (${String(e)})`, 0);
    }
    const text = await response.text();
    let json: unknown = null;
    try {
      json = JSON.parse(text);
    } catch {
      // not JSON: reported below
    }
    if (response.ok) return json as T;
    const err = (json as { error?: { code?: string; message?: string; refund?: HubSigned<Credit> } } | null)?.error;
    if (err?.code) throw new HubError(err.code, err.message ?? err.code, response.status, err.refund ?? undefined);
    if (response.status >= 500) throw new HubError("hub_unreachable", `the hub answered HTTP ${response.status}`, response.status);
    throw new HubError("hub_misbehaved", `the hub answered HTTP ${response.status} without a named error`, response.status);
  }

  info(): Promise<{ chainId: number; hubContract: Address; hub: Address; token: Address; confirmations: number; head: number }> {
    return this.call("GET", "/v1/info");
  }

  walletConfig(): Promise<{ rpcUrl: string }> {
    return this.call("GET", "/wallet/config.json");
  }

  challenge(user: Address): Promise<{ challenge: Hex }> {
    return this.call("POST", "/v1/auth/challenge", { user });
  }

  async session(user: Address, challenge: Hex, signature: Hex): Promise<void> {
    const s = await this.call<{ token: string }>("POST", "/v1/auth/session", { user, challenge, signature });
    this.token = s.token;
  }

  get loggedIn(): boolean {
    return this.token !== null;
  }

  forgetSession(): void {
    this.token = null;
  }

  register(message: { user: Address; validUntilBlock: number }, signature: Hex): Promise<unknown> {
    return this.call("POST", "/v1/registrations", { message, signature });
  }

  transfer(debit: Signed<Debit>): Promise<{ result: { seq: number; receipt: HubSigned<Receipt> }; replayed: boolean }> {
    return this.call("POST", "/v1/transfers", debit);
  }

  withdraw(withdrawal: Withdrawal, signature: Hex): Promise<{ withdrawal: Withdrawal; hubSignature: Hex }> {
    return this.call("POST", "/v1/withdrawals", { withdrawal, signature });
  }

  account(user: Address): Promise<HubAccountAnswer> {
    return this.call("GET", `/v1/accounts/${user}`);
  }

  history(user: Address, limit: number): Promise<{ entries: HistoryEntry[] }> {
    return this.call("GET", `/v1/accounts/${user}/history?limit=${limit}`);
  }

  payment(user: Address, paymentId: Hex): Promise<{ status: string }> {
    return this.call("GET", `/v1/accounts/${user}/payments/${paymentId}`);
  }
}
