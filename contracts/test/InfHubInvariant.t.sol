// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {deployHub} from "./utils/DeployHub.sol";
import {InfHubSettlement} from "../src/InfHubSettlement.sol";
import {PointRegistry} from "../src/PointRegistry.sol";
import {Test} from "./utils/Test.sol";
import {InfHub} from "../src/InfHub.sol";
import {InfHubCheckpoints} from "../src/InfHubCheckpoints.sol";
import {InfHubBase} from "../src/InfHubBase.sol";
import {InfToken} from "../src/InfToken.sol";

/// Drives the hub contract through random sequences of the protocol's flows with an honest hub
/// and honest (watched) users, keeping the off-chain running totals the way the hub and the
/// wallets would, and counting what every actor put in and took out.
contract Handler is Test {
    uint256 internal constant HUB_PK = 0x4855_42;
    uint256 internal constant USERS = 3;
    uint64 internal constant CHALLENGE = 6;
    uint64 internal constant NOTICE = 12;
    uint256 internal constant MAX_STEP_AMOUNT = 1e24;

    InfToken public token;
    InfHub public hub;
    PointRegistry internal registry;
    address public hubAddr;
    address public external_ = address(0xE7E7);
    uint256[USERS] internal userPk;
    address[USERS] public users;

    struct OffChain {
        uint64 creditNonce;
        uint128 creditCum;
        uint64 debitNonce;
        uint128 debitCum;
    }

    mapping(address => OffChain) public offChain;

    // Ghost accounting.
    uint256 public ghostIn;
    uint256 public ghostOut;
    uint256 public reserveDeposited;
    /// Custodial deposits: owed to custodial account holders, held in the reserve.
    uint256 public custodialDeposited;
    uint256 public reserveWithdrawn;
    uint256 public purchased;
    uint256 public earmarked;
    mapping(address => uint256) public entitled;
    mapping(address => uint256) public received;
    /// Tower fees each user paid out of its settlements (by its own signed offers).
    mapping(address => uint256) public feesPaid;
    /// The watchtower, and the fees the contract recorded for it in each user's current close.
    address public tower = address(0x7070);
    mapping(address => uint256) public feeRecorded;
    uint256 public violations;
    string public lastViolation;
    uint256 public calls;

    constructor() {
        hubAddr = vm.addr(HUB_PK);
        token = new InfToken(0);
        registry = new PointRegistry();
        hub = deployHub(token, hubAddr, CHALLENGE, NOTICE, registry);
        for (uint256 i = 0; i < USERS; i++) {
            userPk[i] = 0xA000 + i;
            users[i] = vm.addr(userPk[i]);
            token.mint(users[i], type(uint128).max);
            vm.prank(users[i]);
            token.approve(address(hub), type(uint256).max);
            vm.prank(users[i]);
            hub.openChannel(users[i]);
        }
        token.mint(hubAddr, type(uint128).max);
        vm.prank(hubAddr);
        token.approve(address(hub), type(uint256).max);
    }

    // ------------------------------------------------------------ helpers

    function violation(string memory what) internal {
        violations++;
        lastViolation = what;
    }

    function status(address u) public view returns (InfHubBase.Status) {
        return hub.channel(u).status;
    }

    /// The user's off-chain balance: deposited - withdrawn + credits - debits.
    function balanceOf(address u) public view returns (uint256) {
        InfHubBase.Channel memory ch = hub.channel(u);
        if (ch.status == InfHubBase.Status.Settled || ch.status == InfHubBase.Status.None) return 0;
        OffChain memory o = offChain[u];
        return uint256(ch.deposited) + o.creditCum - ch.withdrawn - o.debitCum;
    }

    /// The claim by the proofs the contract holds: deposited - withdrawn + credit - debit, floored.
    function claimOf(address u) public view returns (uint256) {
        InfHubBase.Channel memory ch = hub.channel(u);
        uint256 plus = uint256(ch.deposited) + ch.credit.cumulative;
        uint256 minus = uint256(ch.withdrawn) + ch.debit.cumulative;
        return plus > minus ? plus - minus : 0;
    }

    function funds(address u) public view returns (uint256) {
        InfHubBase.Channel memory ch = hub.channel(u);
        return uint256(ch.deposited) + ch.advancedFromReserve - ch.withdrawn - ch.realizedDebit;
    }

    /// Reserve the honest hub may still commit: reserve minus what channels may draw from it.
    function freeReserve() public view returns (uint256) {
        // Custodial deposits sit in the reserve but are owed to their account holders.
        uint256 owed = earmarked + custodialDeposited;
        for (uint256 i = 0; i < USERS; i++) {
            uint256 b = balanceOf(users[i]);
            uint256 f = status(users[i]) == InfHubBase.Status.Settled ? 0 : funds(users[i]);
            if (b > f) owed += b - f;
        }
        uint256 r = hub.reserve();
        return r > owed ? r - owed : 0;
    }

    function pick(uint256 seed) internal view returns (address u, uint256 pk) {
        uint256 i = seed % USERS;
        return (users[i], userPk[i]);
    }

    function latestCredit(address u) internal view returns (InfHubBase.Credit memory c, bytes memory sig) {
        OffChain memory o = offChain[u];
        c = InfHubBase.Credit(u, hub.channel(u).epoch, o.creditNonce, o.creditCum, 0, bytes32(0));
        if (o.creditNonce != 0) sig = signDigest(HUB_PK, hub.hashCredit(c));
    }

    function latestDebit(address u, uint256 pk) internal view returns (InfHubBase.Debit memory d, bytes memory sig) {
        OffChain memory o = offChain[u];
        d = InfHubBase.Debit(u, hub.channel(u).epoch, o.debitNonce, o.debitCum, 0, bytes32(0), 0, external_, 1, bytes32(0));
        if (o.debitNonce != 0) sig = signDigest(pk, hub.hashDebit(d));
    }

    // ------------------------------------------------------------ actions

    function deposit(uint256 who, uint256 amount) external {
        calls++;
        (address u,) = pick(who);
        if (status(u) != InfHubBase.Status.Open) return;
        amount = 1 + amount % MAX_STEP_AMOUNT;
        vm.prank(u);
        hub.deposit(u, amount);
        ghostIn += amount;
        entitled[u] += amount;
    }

    function depositReserve(uint256 amount) external {
        calls++;
        amount = 1 + amount % MAX_STEP_AMOUNT;
        vm.prank(hubAddr);
        hub.depositReserve(amount);
        ghostIn += amount;
        reserveDeposited += amount;
    }

    function depositFor(uint256 who, uint256 amount) external {
        calls++;
        (address u,) = pick(who);
        amount = 1 + amount % MAX_STEP_AMOUNT;
        vm.prank(u);
        hub.depositFor(address(uint160(0xC0000 + who % 7)), amount);
        ghostIn += amount;
        custodialDeposited += amount;
    }

    /// Internal transfer: the payer signs a debit, the hub signs the payee a credit.
    function transfer(uint256 from, uint256 to, uint256 amount) external {
        calls++;
        (address a,) = pick(from);
        (address b,) = pick(to);
        if (a == b || status(a) != InfHubBase.Status.Open || status(b) != InfHubBase.Status.Open) return;
        uint256 bal = balanceOf(a);
        uint256 free = freeReserve();
        // The honest hub accepts a payment only if its reserve can back the payee's new credit
        // until the payer's debit is realized (its inbound liquidity).
        if (bal == 0 || free == 0) return;
        amount = 1 + amount % (bal < free ? bal : free);
        offChain[a].debitNonce++;
        offChain[a].debitCum += uint128(amount);
        offChain[b].creditNonce++;
        offChain[b].creditCum += uint128(amount);
        entitled[a] -= amount;
        entitled[b] += amount;
    }

    /// Buying from the platform: a hub-signed credit backed by the free reserve.
    function purchase(uint256 who, uint256 amount) external {
        calls++;
        (address u,) = pick(who);
        uint256 free = freeReserve();
        if (status(u) != InfHubBase.Status.Open || free == 0) return;
        amount = 1 + amount % free;
        offChain[u].creditNonce++;
        offChain[u].creditCum += uint128(amount);
        purchased += amount;
        entitled[u] += amount;
    }

    /// External transfer: the payer's debit, paid out on chain from the reserve.
    function payExternal(uint256 who, uint256 amount) external {
        calls++;
        (address u,) = pick(who);
        uint256 bal = balanceOf(u);
        uint256 free = freeReserve();
        if (status(u) != InfHubBase.Status.Open || bal == 0 || free == 0) return;
        amount = 1 + amount % (bal < free ? bal : free);
        offChain[u].debitNonce++;
        offChain[u].debitCum += uint128(amount);
        entitled[u] -= amount;
        address[] memory to = new address[](1);
        uint256[] memory amounts = new uint256[](1);
        to[0] = external_;
        amounts[0] = amount;
        vm.prank(hubAddr);
        hub.payout(keccak256(abi.encode(calls)), to, amounts);
        ghostOut += amount;
    }

    function withdraw(uint256 who, uint256 amount) external {
        calls++;
        (address u, uint256 pk) = pick(who);
        uint256 bal = balanceOf(u);
        if (status(u) != InfHubBase.Status.Open || bal == 0) return;
        amount = 1 + amount % bal;
        InfHubBase.Withdrawal memory w =
            InfHubBase.Withdrawal(u, hub.channel(u).epoch, hub.channel(u).withdrawn + uint128(amount), uint64(block.number + 3));
        bytes32 digest = hub.hashWithdrawal(w);
        hub.withdraw(w, signDigest(pk, digest), signDigest(HUB_PK, digest));
        ghostOut += amount;
        received[u] += amount;
    }

    /// The user exits with the newest credit; the hub answers with the newest debit.
    function exit(uint256 who) external {
        calls++;
        (address u, uint256 pk) = pick(who);
        if (status(u) != InfHubBase.Status.Open) return;
        (InfHubBase.Credit memory c, bytes memory cs) = latestCredit(u);
        (InfHubBase.Debit memory d, bytes memory ds) = latestDebit(u, pk);
        vm.prank(u);
        hub.startExit(c, cs);
        // The contract may already hold the newest debit total (realized earlier): then nothing to
        // answer. Totals, not nonces, decide.
        if (d.cumulativeDebit > hub.channel(u).debit.cumulative) {
            vm.prank(hubAddr);
            hub.submitDebit(d, ds);
        }
    }

    /// The hub closes with the newest debit; the user's watchtower answers with the newest credit.
    function hubClose(uint256 who) external {
        calls++;
        (address u, uint256 pk) = pick(who);
        if (status(u) != InfHubBase.Status.Open) return;
        (InfHubBase.Credit memory c, bytes memory cs) = latestCredit(u);
        (InfHubBase.Debit memory d, bytes memory ds) = latestDebit(u, pk);
        if (d.cumulativeDebit <= hub.channel(u).debit.cumulative) {
            d = InfHubBase.Debit(u, 0, 0, 0, 0, bytes32(0), 0, address(0), 0, bytes32(0));
            ds = "";
        }
        vm.prank(hubAddr);
        hub.startHubClose(u, d, ds);
        if (c.nonce == 0) return;
        if (who % 2 == 0) {
            vm.prank(tower);
            hub.submitCredit(c, cs);
            return;
        }
        // The tower defends for a fee the user offered: a tenth of the gain, at most 1e21.
        InfHubBase.TowerFee memory offer =
            InfHubBase.TowerFee(u, c.epoch, tower, 1e21, 1_000, uint64(block.number) + CHALLENGE);
        uint256 claimBefore = claimOf(u);
        bytes memory offerSig = signDigest(pk, hub.hashTowerFee(offer));
        vm.prank(tower);
        hub.submitCreditForFee(c, cs, offer, offerSig);
        InfHubBase.TowerFeeRecord[] memory fees = hub.towerFeesOf(u);
        uint256 recorded = fees.length == 0 ? 0 : fees[0].fee;
        // The fee is a tenth of what the credit raised the claim by, capped.
        uint256 expected = (claimOf(u) - claimBefore) / 10;
        if (expected > 1e21) expected = 1e21;
        if (recorded != expected) violation("the tower fee is not the offered share of the gain");
        feeRecorded[u] = recorded;
    }

    /// The hub realizes a payer's newest debit: what the user paid moves from its channel to the reserve.
    function realize(uint256 who) external {
        calls++;
        (address u, uint256 pk) = pick(who);
        InfHubBase.Channel memory ch = hub.channel(u);
        if (ch.status != InfHubBase.Status.Open || offChain[u].debitCum <= ch.debit.cumulative) return;
        (InfHubBase.Debit memory d, bytes memory ds) = latestDebit(u, pk);
        uint256 freeBefore = freeReserve();
        vm.prank(hubAddr);
        hub.realizeDebit(d, ds);
        if (freeReserve() < freeBefore) violation("realizing a debit reduced the free reserve");
    }

    /// The hub realizes every user's newest debit in one batch, with each entry as the honest hub
    /// would send it: the newest debit (applied if newer than the contract's, else the stored
    /// one stands). Closing or settled channels in the batch are skipped, never reverted on.
    function realizeMany(uint256 mask) external {
        calls++;
        uint256 n;
        for (uint256 i = 0; i < USERS; i++) {
            if ((mask >> i) & 1 == 1 && offChain[users[i]].debitNonce != 0) n++;
        }
        if (n == 0) return;
        InfHubBase.Debit[] memory ds = new InfHubBase.Debit[](n);
        bytes[] memory sigs = new bytes[](n);
        uint256 k;
        for (uint256 i = 0; i < USERS; i++) {
            if ((mask >> i) & 1 == 1 && offChain[users[i]].debitNonce != 0) {
                (ds[k], sigs[k]) = latestDebit(users[i], userPk[i]);
                k++;
            }
        }
        uint256 freeBefore = freeReserve();
        uint256 reserveBefore = hub.reserve();
        uint256 fundsBefore = hub.totalChannelFunds();
        vm.prank(hubAddr);
        hub.realizeDebits(ds, sigs);
        if (freeReserve() < freeBefore) violation("realizing debits in a batch reduced the free reserve");
        if (hub.reserve() - reserveBefore != fundsBefore - hub.totalChannelFunds()) {
            violation("a batch realization moved tokens other than from channel funds to the reserve");
        }
    }

    /// Replaying an older proof (a lower total), even under a higher nonce, must be refused.
    function replayOld(uint256 who, uint64 nonce) external {
        calls++;
        (address u, uint256 pk) = pick(who);
        InfHubBase.Channel memory ch = hub.channel(u);
        if (ch.status != InfHubBase.Status.Closing || block.number >= ch.settleBlock || ch.debit.cumulative == 0) return;
        InfHubBase.Debit memory d =
            InfHubBase.Debit(u, ch.epoch, nonce, ch.debit.cumulative - 1, 0, bytes32(0), 0, external_, 1, bytes32(0));
        bytes memory sig = signDigest(pk, hub.hashDebit(d));
        try hub.submitDebit(d, sig) {
            violation("a lower debit total replaced a higher one");
        } catch {}
    }

    function settle(uint256 who) external {
        calls++;
        (address u,) = pick(who);
        InfHubBase.Channel memory ch = hub.channel(u);
        if (ch.status != InfHubBase.Status.Closing) return;
        if (block.number < ch.settleBlock) vm.roll(ch.settleBlock);
        uint256 expected = balanceOf(u);
        uint256 before = token.balanceOf(u);
        uint256 towerBefore = token.balanceOf(tower);
        InfHubSettlement(address(hub)).settle(u);
        uint256 paid = token.balanceOf(u) - before;
        uint256 fee = token.balanceOf(tower) - towerBefore;
        uint256 dueFee = feeRecorded[u] < expected ? feeRecorded[u] : expected;
        if (fee != dueFee) violation("settlement did not pay the recorded tower fee");
        if (paid + fee != expected) violation("settlement did not pay the off-chain balance");
        ghostOut += paid + fee;
        received[u] += paid;
        feesPaid[u] += fee;
        feeRecorded[u] = 0;
        delete offChain[u];
    }

    function reopen(uint256 who) external {
        calls++;
        (address u,) = pick(who);
        if (status(u) != InfHubBase.Status.Settled) return;
        vm.prank(u);
        hub.openChannel(u);
    }

    function announceReserveWithdrawal(uint256 amount) external {
        calls++;
        (uint128 pending,) = hub.pendingReserveWithdrawal();
        uint256 free = freeReserve();
        if (pending != 0 || free == 0) return;
        amount = 1 + amount % free;
        vm.prank(hubAddr);
        hub.announceReserveWithdrawal(amount);
        earmarked = amount;
    }

    function executeReserveWithdrawal() external {
        calls++;
        (uint128 pending, uint64 unlock) = hub.pendingReserveWithdrawal();
        if (pending == 0) return;
        if (block.number >= uint256(unlock) + NOTICE) {
            // Expired unused: the honest hub cancels it and releases the earmark.
            vm.prank(hubAddr);
            hub.cancelReserveWithdrawal();
            earmarked = 0;
            return;
        }
        if (block.number < unlock) vm.roll(unlock);
        vm.prank(hubAddr);
        hub.executeReserveWithdrawal(hubAddr);
        earmarked = 0;
        ghostOut += pending;
        reserveWithdrawn += pending;
    }

    /// The honest hub posts a checkpoint of its books (spec 5.16): its liabilities are every
    /// channel's shortfall and the custodial deposits. The contract must accept it exactly when
    /// the reserve covers them and the announced withdrawal, and refuse one unit more.
    function checkpoint() external {
        calls++;
        uint256 liability = custodialDeposited;
        for (uint256 i = 0; i < USERS; i++) {
            uint256 b = balanceOf(users[i]);
            uint256 f = status(users[i]) == InfHubBase.Status.Settled ? 0 : funds(users[i]);
            if (b > f) liability += b - f;
        }
        (uint128 pending,) = hub.pendingReserveWithdrawal();
        uint64 id = hub.lastCheckpointId() + 1;
        uint256 inflows = hub.liabilityInflowsTotal();
        uint64 at = uint64(block.number - 1);
        uint256 r = hub.reserve();
        if (liability + pending <= r) {
            uint256 over = r - pending + 1;
            vm.prank(hubAddr);
            try InfHubCheckpoints(address(hub)).postCheckpoint(id, bytes32(uint256(id)), over, id, at, inflows) {
                violation("a checkpoint past the reserve was accepted");
            } catch {}
            vm.prank(hubAddr);
            try InfHubCheckpoints(address(hub)).postCheckpoint(id, bytes32(uint256(id)), liability, id, at, inflows) {}
            catch {
                violation("an honest, solvent checkpoint was refused");
            }
        }
    }

    function roll(uint8 blocks) external {
        calls++;
        vm.roll(block.number + 1 + blocks % 8);
    }

    // ------------------------------------------------------------ views for the invariants

    function sumOfBalances() external view returns (uint256 s) {
        for (uint256 i = 0; i < USERS; i++) {
            s += balanceOf(users[i]);
        }
    }

    function sumOfFunds() external view returns (uint256 s) {
        for (uint256 i = 0; i < USERS; i++) {
            if (status(users[i]) != InfHubBase.Status.Settled) s += funds(users[i]);
        }
    }

    function userCount() external pure returns (uint256) {
        return USERS;
    }
}

contract InfHubInvariantTest is Test {
    Handler internal handler;

    function setUp() public {
        vm.roll(1_000);
        handler = new Handler();
    }

    /// Tells forge to fuzz only the handler's actions.
    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    /// On chain, exactly: token balance == reserve + Σ channel funds.
    function invariant_tokens_equal_reserve_plus_channel_funds() public view {
        InfHub hub = handler.hub();
        uint256 bal = handler.token().balanceOf(address(hub));
        assertEq(bal, hub.reserve() + hub.totalChannelFunds(), "balance == reserve + totalChannelFunds");
        assertEq(hub.totalChannelFunds(), handler.sumOfFunds(), "totalChannelFunds == sum of channel funds");
        assertEq(bal, handler.ghostIn() - handler.ghostOut(), "balance == tokens in - tokens out");
    }

    /// With the off-chain state: token balance == Σ users' claims + custodial deposits + the
    /// hub's equity, and the
    /// hub's equity (what it put in, minus what it sold and took out) never goes negative.
    function invariant_tokens_cover_every_claim_plus_reserve() public view {
        uint256 hubIn = handler.reserveDeposited();
        uint256 hubOut = handler.reserveWithdrawn() + handler.purchased();
        assertTrue(hubIn >= hubOut, "hub took out more than it put in");
        uint256 bal = handler.token().balanceOf(address(handler.hub()));
        assertEq(
            bal,
            handler.sumOfBalances() + handler.custodialDeposited() + (hubIn - hubOut),
            "balance == claims + custodial deposits + hub equity"
        );
    }

    /// Nobody takes out more than they are owed; every settlement paid the off-chain balance.
    function invariant_no_actor_takes_more_than_owed() public view {
        for (uint256 i = 0; i < handler.userCount(); i++) {
            address u = handler.users(i);
            assertTrue(handler.received(u) <= handler.entitled(u), "a user received more than owed");
            assertEq(
                handler.received(u) + handler.feesPaid(u) + handler.balanceOf(u),
                handler.entitled(u),
                "user's value conserved (tower fees are the user's own offer)"
            );
        }
        assertEq(handler.violations(), 0, handler.lastViolation());
    }
}
