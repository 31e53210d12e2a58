//! The chain as the browser reaches it: straight to the JSON-RPC endpoint with viem, never
//! through the hub, so deposits, withdrawals and an exit work with the hub down. Reads of the
//! contract's channel record, and the transactions the user sends, each waited for with its
//! progress reported (sent, then each confirmation).

import {
  type Address,
  type Hex,
  type PublicClient,
  type WalletClient,
  createPublicClient,
  createWalletClient,
  defineChain,
  http,
  parseAbi,
} from "viem";
import type { LocalAccount } from "viem/accounts";
import type { Credit, Debit, Withdrawal } from "./protocol.js";
import type { ChainChannel } from "./model.js";

export const HUB_ABI = parseAbi([
  "struct Side { uint64 nonce; uint128 cumulative; uint128 lockedAmount; bytes32 locksRoot; }",
  "struct Channel { uint8 status; uint64 epoch; uint64 settleBlock; uint64 lastDepositBlock; address closer; uint128 deposited; uint128 withdrawn; uint128 advancedFromReserve; uint128 realizedDebit; uint256 reserveDraw; Side debit; Side credit; }",
  "struct DebitArg { address user; uint64 epoch; uint64 nonce; uint128 cumulativeDebit; uint128 lockedAmount; bytes32 locksRoot; uint8 kind; address recipient; uint128 amount; bytes32 paymentId; }",
  "struct CreditArg { address user; uint64 epoch; uint64 nonce; uint128 cumulativeCredit; uint128 lockedAmount; bytes32 locksRoot; }",
  "struct WithdrawalArg { address user; uint64 epoch; uint128 cumulativeWithdrawn; uint64 expiryBlock; }",
  "function channel(address user) view returns (Channel)",
  "function challengePeriodBlocks() view returns (uint64)",
  "function token() view returns (address)",
  "function hub() view returns (address)",
  "function deposit(address user, uint256 amount)",
  "function withdraw(WithdrawalArg w, bytes userSignature, bytes hubSignature)",
  "function startExit(CreditArg credit, bytes hubSignature)",
  "function submitCredit(CreditArg credit, bytes hubSignature)",
  "function submitDebit(DebitArg debit, bytes userSignature)",
  "function settle(address user)",
]);

export const TOKEN_ABI = parseAbi([
  "function balanceOf(address who) view returns (uint256)",
  "function allowance(address owner, address spender) view returns (uint256)",
  "function approve(address spender, uint256 amount) returns (bool)",
  "function decimals() view returns (uint8)",
]);

/** The hub contract's functions the wallet sends. */
type HubWrite = "deposit" | "withdraw" | "startExit" | "submitCredit" | "submitDebit" | "settle";

/** Confirmations the wallet waits for before it calls a transaction done. */
export const CONFIRMATIONS = 1;

export type Progress = (text: string) => void;

export class ChainClient {
  readonly public: PublicClient;
  private readonly wallet: WalletClient;

  constructor(
    rpcUrl: string,
    chainId: number,
    readonly contract: Address,
    readonly token: Address,
    private readonly account: LocalAccount,
  ) {
    const chain = defineChain({
      id: chainId,
      name: `chain ${chainId}`,
      nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
      rpcUrls: { default: { http: [rpcUrl] } },
    });
    this.public = createPublicClient({ chain, transport: http(rpcUrl, { retryCount: 1, timeout: 15_000 }) });
    this.wallet = createWalletClient({ chain, account, transport: http(rpcUrl, { retryCount: 1, timeout: 15_000 }) });
  }

  async head(): Promise<number> {
    return Number(await this.public.getBlockNumber());
  }

  async channel(user: Address): Promise<ChainChannel> {
    const c = await this.public.readContract({ address: this.contract, abi: HUB_ABI, functionName: "channel", args: [user] });
    return {
      status: Number(c.status),
      epoch: Number(c.epoch),
      settleBlock: Number(c.settleBlock),
      deposited: c.deposited,
      withdrawn: c.withdrawn,
      creditTotal: c.credit.cumulative,
    };
  }

  async tokenBalance(who: Address): Promise<bigint> {
    return this.public.readContract({ address: this.token, abi: TOKEN_ABI, functionName: "balanceOf", args: [who] });
  }

  async gasBalance(who: Address): Promise<bigint> {
    return this.public.getBalance({ address: who });
  }

  /** Sends one contract call and waits for it to be mined and confirmed, reporting progress;
   * a reverted transaction is an error naming what it was. */
  private async send(what: string, request: Parameters<WalletClient["writeContract"]>[0], progress: Progress): Promise<Hex> {
    progress(`${what}: sending…`);
    const hash = await this.wallet.writeContract(request);
    progress(`${what}: sent (${hash.slice(0, 10)}…), waiting for ${CONFIRMATIONS} confirmation(s)…`);
    const receipt = await this.public.waitForTransactionReceipt({ hash, confirmations: CONFIRMATIONS, pollingInterval: 500 });
    if (receipt.status !== "success") throw new Error(`${what}: the transaction ${hash} was reverted by the contract`);
    progress(`${what}: confirmed in block ${receipt.blockNumber}`);
    return hash;
  }

  /** Sends one call to the hub contract and waits for it (see `send`). */
  private async hubCall(what: string, functionName: HubWrite, args: readonly unknown[], progress: Progress): Promise<void> {
    const request = { account: this.account, chain: undefined, address: this.contract, abi: HUB_ABI, functionName, args };
    await this.send(what, request as Parameters<WalletClient["writeContract"]>[0], progress);
  }

  async deposit(user: Address, amount: bigint, progress: Progress): Promise<void> {
    const allowance = await this.public.readContract({
      address: this.token,
      abi: TOKEN_ABI,
      functionName: "allowance",
      args: [user, this.contract],
    });
    if (allowance < amount) {
      await this.send(
        "Approving the hub contract",
        { account: this.account, chain: undefined, address: this.token, abi: TOKEN_ABI, functionName: "approve", args: [this.contract, amount] },
        progress,
      );
    }
    await this.hubCall("Depositing", "deposit", [user, amount], progress);
  }

  async withdraw(w: Withdrawal, userSignature: Hex, hubSignature: Hex, progress: Progress): Promise<void> {
    const arg = { user: w.user, epoch: BigInt(w.epoch), cumulativeWithdrawn: BigInt(w.cumulativeWithdrawn), expiryBlock: BigInt(w.expiryBlock) };
    await this.hubCall("Withdrawing", "withdraw", [arg, userSignature, hubSignature], progress);
  }

  async startExit(credit: Credit, proof: Hex, progress: Progress): Promise<void> {
    await this.hubCall("Starting the exit", "startExit", [creditArg(credit), proof], progress);
  }

  async submitCredit(credit: Credit, proof: Hex, progress: Progress): Promise<void> {
    await this.hubCall("Submitting the hub's newest credit", "submitCredit", [creditArg(credit), proof], progress);
  }

  async submitDebit(debit: Debit, signature: Hex, progress: Progress): Promise<void> {
    await this.hubCall("Submitting your newest payment", "submitDebit", [debitArg(debit), signature], progress);
  }

  async settle(user: Address, progress: Progress): Promise<void> {
    await this.hubCall("Settling the channel", "settle", [user], progress);
  }
}

export function creditArg(c: Credit) {
  return {
    user: c.user,
    epoch: BigInt(c.epoch),
    nonce: BigInt(c.nonce),
    cumulativeCredit: BigInt(c.cumulativeCredit),
    lockedAmount: BigInt(c.lockedAmount),
    locksRoot: c.locksRoot,
  };
}

export function debitArg(d: Debit) {
  return {
    user: d.user,
    epoch: BigInt(d.epoch),
    nonce: BigInt(d.nonce),
    cumulativeDebit: BigInt(d.cumulativeDebit),
    lockedAmount: BigInt(d.lockedAmount),
    locksRoot: d.locksRoot,
    kind: d.kind,
    recipient: d.recipient,
    amount: BigInt(d.amount),
    paymentId: d.paymentId,
  };
}
