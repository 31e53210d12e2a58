// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {deployHub} from "./utils/DeployHub.sol";
import {InfHubSettlement} from "../src/InfHubSettlement.sol";
import {PointRegistry} from "../src/PointRegistry.sol";
import {Test} from "./utils/Test.sol";
import {InfHub} from "../src/InfHub.sol";
import {InfHubCheckpoints} from "../src/InfHubCheckpoints.sol";
import {InfHubBase} from "../src/InfHubBase.sol";
import {checkpointLeafHash} from "./utils/CheckpointLeafHash.sol";
import {InfToken} from "../src/InfToken.sol";

/// What both adversarial handlers share: a token, a hub contract, the hub key, users with their
/// keys, the off-chain books as the honest side keeps them, and ghost counts of tokens in and out.
abstract contract AdversarialBase is Test {
    uint256 internal constant HUB_PK = 0x4855_42_0AD;
    uint64 internal constant CHALLENGE = 6;
    uint64 internal constant NOTICE = 12;
    uint256 internal constant USERS = 3;
    uint256 internal constant MAX_STEP_AMOUNT = 1e24;

    InfToken public token;
    InfHub public hub;
    PointRegistry internal registry;
    address public hubAddr;
    uint256[USERS] internal userPk;
    address[USERS] public users;

    /// The newest proofs as the honest side holds them: the user's debits she signed and the
    /// hub's credits she received (the same books the honest hub keeps).
    struct Books {
        uint64 creditNonce;
        uint128 creditCum;
        uint64 debitNonce;
        uint128 debitCum;
    }

    mapping(address => Books) public books;
    mapping(address => uint256) public received;
    uint256 public ghostIn;
    uint256 public ghostOut;
    uint256 public reserveDeposited;
    uint256 public violations;
    string public lastViolation;

    function setUpActors(uint256 pkBase) internal {
        hubAddr = vm.addr(HUB_PK);
        token = new InfToken(0);
        registry = new PointRegistry();
        hub = deployHub(token, hubAddr, CHALLENGE, NOTICE, registry);
        for (uint256 i = 0; i < USERS; i++) {
            userPk[i] = pkBase + i;
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

    function violation(string memory what) internal {
        violations++;
        lastViolation = what;
    }

    function status(address u) public view returns (InfHubBase.Status) {
        return hub.channel(u).status;
    }

    function funds(address u) public view returns (uint256) {
        InfHubBase.Channel memory ch = hub.channel(u);
        return uint256(ch.deposited) + ch.advancedFromReserve - ch.withdrawn - ch.realizedDebit;
    }

    /// The user's balance by the books: deposited - withdrawn + credits - debits (floored at zero:
    /// an accomplice of a dishonest hub may withdraw more than its books say).
    function balanceOf(address u) public view returns (uint256) {
        InfHubBase.Channel memory ch = hub.channel(u);
        if (ch.status == InfHubBase.Status.Settled || ch.status == InfHubBase.Status.None) return 0;
        Books memory b = books[u];
        uint256 plus = uint256(ch.deposited) + b.creditCum;
        uint256 minus = uint256(ch.withdrawn) + b.debitCum;
        return plus > minus ? plus - minus : 0;
    }

    function sumOfBalances() external view returns (uint256 s) {
        for (uint256 i = 0; i < USERS; i++) {
            s += balanceOf(users[i]);
        }
    }

    /// What settlement would pay by the proofs the contract holds now (before the reserve cap).
    function onChainClaim(address u) public view returns (uint256) {
        InfHubBase.Channel memory ch = hub.channel(u);
        uint256 plus = uint256(ch.deposited) + ch.credit.cumulative;
        uint256 minus = uint256(ch.withdrawn) + ch.debit.cumulative;
        return plus > minus ? plus - minus : 0;
    }

    /// What the closing channels will draw from the reserve, computed from the outside.
    function closingDraw() public view returns (uint256 draw) {
        for (uint256 i = 0; i < USERS; i++) {
            address u = users[i];
            if (status(u) != InfHubBase.Status.Closing) continue;
            uint256 c = onChainClaim(u);
            uint256 f = funds(u);
            if (c > f) draw += c - f;
        }
    }

    function newestCredit(address u) internal view returns (InfHubBase.Credit memory c, bytes memory sig) {
        Books memory b = books[u];
        c = InfHubBase.Credit(u, hub.channel(u).epoch, b.creditNonce, b.creditCum, 0, bytes32(0));
        if (b.creditNonce != 0) sig = signDigest(HUB_PK, hub.hashCredit(c));
    }

    function debitOf(address u, uint256 pk, uint64 nonce, uint128 total) internal view returns (InfHubBase.Debit memory d, bytes memory sig) {
        d = InfHubBase.Debit(u, hub.channel(u).epoch, nonce, total, 0, bytes32(0), 0, address(0xE7E7), 1, bytes32(uint256(nonce)));
        if (nonce != 0) sig = signDigest(pk, hub.hashDebit(d));
    }

    /// The user's channel leaf as her own books have it (no liability: the tests' checkpoints
    /// are about figures, not solvency).
    function honestLeaf(address u) internal view returns (InfHubBase.CheckpointLeaf memory l) {
        Books memory b = books[u];
        InfHubBase.Channel memory ch = hub.channel(u);
        l.account = u;
        l.epoch = ch.epoch;
        l.deposited = ch.deposited;
        l.withdrawn = ch.withdrawn;
        l.creditNonce = b.creditNonce;
        l.creditTotal = b.creditCum;
        l.debitNonce = b.debitNonce;
        l.debitTotal = b.debitCum;
        l.salt = keccak256(abi.encode(u, block.number));
    }

    /// The hub posts a one-leaf checkpoint of `l` as its next; false if the contract refuses it
    /// (a halted hub, figures that would go back).
    function postOneLeaf(InfHubBase.CheckpointLeaf memory l) internal returns (bool posted, uint64 id) {
        id = hub.lastCheckpointId() + 1;
        (,, uint64 lastSeq, uint64 lastBlock, uint256 lastInflows) = hub.checkpoints(id - 1);
        uint256 inflows = hub.liabilityInflowsTotal();
        uint64 at = uint64(block.number - 1);
        if (at < lastBlock || inflows < lastInflows) return (false, id);
        bytes32 root = checkpointLeafHash(hub, id, l);
        vm.prank(hubAddr);
        try InfHubCheckpoints(address(hub)).postCheckpoint(id, root, l.liability, lastSeq + 1, at, inflows) {
            posted = true;
        } catch {}
    }

    function pick(uint256 seed, uint256 count) internal view returns (address u, uint256 pk, uint256 i) {
        i = seed % count;
        return (users[i], userPk[i], i);
    }

    /// The honest user's watch: while closing, submits her newest credit if the contract holds a
    /// lower total (totals, not nonces, decide).
    function watchFor(address u) internal {
        InfHubBase.Channel memory ch = hub.channel(u);
        if (ch.status != InfHubBase.Status.Closing || block.number >= ch.settleBlock) return;
        (InfHubBase.Credit memory c, bytes memory cs) = newestCredit(u);
        if (c.cumulativeCredit > ch.credit.cumulative) hub.submitCredit(c, cs);
    }

    /// The honest user's own newest debit, submitted after her exit (decision D16).
    function ownDebitFor(address u, uint256 pk) internal {
        InfHubBase.Channel memory ch = hub.channel(u);
        Books memory b = books[u];
        if (ch.status != InfHubBase.Status.Closing || block.number >= ch.settleBlock) return;
        if (b.debitNonce == 0 || b.debitCum <= ch.debit.cumulative) return;
        (InfHubBase.Debit memory d, bytes memory ds) = debitOf(u, pk, b.debitNonce, b.debitCum);
        hub.submitDebit(d, ds);
    }

    function deposit(uint256 who, uint256 amount) external {
        (address u,,) = pick(who, USERS);
        if (status(u) != InfHubBase.Status.Open) return;
        amount = 1 + amount % MAX_STEP_AMOUNT;
        vm.prank(u);
        hub.deposit(u, amount);
        ghostIn += amount;
    }

    function depositReserve(uint256 amount) external {
        amount = 1 + amount % MAX_STEP_AMOUNT;
        vm.prank(hubAddr);
        hub.depositReserve(amount);
        ghostIn += amount;
        reserveDeposited += amount;
    }

    /// What the honest parties do every block (an honest hub answers exits, watchtowers answer
    /// closes): called before any block passes, so a dishonest action can land anywhere in
    /// between but never unanswered across the end of a challenge period.
    function honestReact() internal virtual;

    function roll(uint8 blocks) external {
        uint256 target = block.number + 1 + blocks % 8;
        while (block.number < target) {
            honestReact();
            vm.roll(block.number + 1);
        }
    }

    /// Rolls to `target`, the honest parties reacting at every block on the way.
    function rollTo(uint256 target) internal {
        while (block.number < target) {
            honestReact();
            vm.roll(block.number + 1);
        }
    }

    function reopen(uint256 who) external {
        (address u,,) = pick(who, USERS);
        if (status(u) != InfHubBase.Status.Settled) return;
        vm.prank(u);
        hub.openChannel(u);
    }

    function userCount() external pure returns (uint256) {
        return USERS;
    }
}

/// An honest hub and two honest users (0 and 1) against Mallory (user 2), who signs any debit
/// her key can sign (any nonce, any total) and submits it herself at the worst moment: before
/// the hub's answer to her exit, after it, after a realization.
contract DishonestUserHandler is AdversarialBase {
    uint256 internal constant MALLORY = 2;

    constructor() {
        setUpActors(0xB000);
    }

    function mallory() public view returns (address) {
        return users[MALLORY];
    }

    /// The honest hub's free reserve: the reserve minus every channel's possible draw by the books.
    function freeReserve() public view returns (uint256) {
        uint256 owed;
        for (uint256 i = 0; i < USERS; i++) {
            address u = users[i];
            if (status(u) == InfHubBase.Status.Settled) continue;
            uint256 b = balanceOf(u);
            uint256 f = funds(u);
            if (b > f) owed += b - f;
        }
        uint256 r = hub.reserve();
        return r > owed ? r - owed : 0;
    }

    /// Internal payment by the books, within the honest hub's liquidity rule.
    function transfer(uint256 from, uint256 to, uint256 amount) external {
        (address a,,) = pick(from, USERS);
        (address b,,) = pick(to, USERS);
        if (a == b || status(a) != InfHubBase.Status.Open || status(b) != InfHubBase.Status.Open) return;
        uint256 bal = balanceOf(a);
        uint256 free = freeReserve();
        if (bal == 0 || free == 0) return;
        amount = 1 + amount % (bal < free ? bal : free);
        books[a].debitNonce++;
        books[a].debitCum += uint128(amount);
        books[b].creditNonce++;
        books[b].creditCum += uint128(amount);
    }

    /// The honest hub realizes a user's newest debit if it raises the contract's floor.
    function realize(uint256 who) external {
        (address u, uint256 pk,) = pick(who, USERS);
        InfHubBase.Channel memory ch = hub.channel(u);
        Books memory b = books[u];
        if (ch.status != InfHubBase.Status.Open || b.debitNonce == 0 || b.debitCum <= ch.debit.cumulative) return;
        (InfHubBase.Debit memory d, bytes memory ds) = debitOf(u, pk, b.debitNonce, b.debitCum);
        vm.prank(hubAddr);
        hub.realizeDebit(d, ds);
    }

    /// A user exits with her newest credit; honest users also submit their own newest debit.
    function exit(uint256 who) external {
        (address u, uint256 pk, uint256 i) = pick(who, USERS);
        if (status(u) != InfHubBase.Status.Open) return;
        (InfHubBase.Credit memory c, bytes memory cs) = newestCredit(u);
        vm.prank(u);
        hub.startExit(c, cs);
        if (i != MALLORY) ownDebitFor(u, pk);
    }

    /// The honest hub closes a channel with the user's newest debit.
    function hubClose(uint256 who) external {
        (address u, uint256 pk,) = pick(who, USERS);
        if (status(u) != InfHubBase.Status.Open) return;
        Books memory b = books[u];
        InfHubBase.Channel memory ch = hub.channel(u);
        (InfHubBase.Debit memory d, bytes memory ds) = debitOf(u, pk, 0, 0);
        if (b.debitCum > ch.debit.cumulative) (d, ds) = debitOf(u, pk, b.debitNonce, b.debitCum);
        vm.prank(hubAddr);
        hub.startHubClose(u, d, ds);
    }

    /// The honest hub's automatic answer: the contract holds a lower debit total than its newest.
    function hubAnswer(uint256 who) public {
        (address u, uint256 pk,) = pick(who, USERS);
        InfHubBase.Channel memory ch = hub.channel(u);
        Books memory b = books[u];
        if (ch.status != InfHubBase.Status.Closing || block.number >= ch.settleBlock) return;
        if (b.debitNonce == 0 || b.debitCum <= ch.debit.cumulative) return;
        (InfHubBase.Debit memory d, bytes memory ds) = debitOf(u, pk, b.debitNonce, b.debitCum);
        vm.prank(hubAddr);
        hub.submitDebit(d, ds);
    }

    function watch(uint256 who) public {
        (address u,,) = pick(who, USERS);
        watchFor(u);
    }

    function honestReact() internal override {
        for (uint256 i = 0; i < USERS; i++) {
            hubAnswer(i);
            if (i != MALLORY) watchFor(users[i]);
        }
    }

    /// Mallory's whole attack in one step: she pays Bob, exits without her debit, and submits a
    /// debit of her own with any nonce and a total at or below the genuine one, before or after
    /// the honest hub's answer.
    function malloryPaysThenExitsAndForges(uint256 amount, uint64 nonce, uint128 total, bool afterAnswer) external {
        address m = mallory();
        if (status(m) != InfHubBase.Status.Open) return;
        this.transfer(MALLORY, 1, amount);
        (InfHubBase.Credit memory c, bytes memory cs) = newestCredit(m);
        vm.prank(m);
        hub.startExit(c, cs);
        if (afterAnswer) hubAnswer(MALLORY);
        malloryForgesDebit(nonce, total);
    }

    /// Mallory signs any debit (any nonce, any total near the genuine one) and submits it herself
    /// while her channel closes.
    function malloryForgesDebit(uint64 nonce, uint128 total) public {
        address m = mallory();
        InfHubBase.Channel memory ch = hub.channel(m);
        if (ch.status != InfHubBase.Status.Closing || block.number >= ch.settleBlock) return;
        uint256 genuine = books[m].debitCum > ch.debit.cumulative ? books[m].debitCum : ch.debit.cumulative;
        total = uint128(uint256(total) % (genuine + 3));
        (InfHubBase.Debit memory d, bytes memory ds) = debitOf(m, userPk[MALLORY], nonce == 0 ? 1 : nonce, total);
        vm.prank(m);
        try hub.submitDebit(d, ds) {} catch {}
    }

    /// Mallory resubmits an old credit of hers (a lower total with the nonce it had).
    function malloryReplaysOldCredit(uint64 nonce, uint128 total) external {
        address m = mallory();
        InfHubBase.Channel memory ch = hub.channel(m);
        Books memory b = books[m];
        if (ch.status != InfHubBase.Status.Closing || block.number >= ch.settleBlock || b.creditNonce == 0) return;
        nonce = uint64(1 + uint256(nonce) % b.creditNonce);
        total = uint128(uint256(total) % (uint256(b.creditCum) + 1));
        InfHubBase.Credit memory c = InfHubBase.Credit(m, ch.epoch, nonce, total, 0, bytes32(0));
        bytes memory cs = signDigest(HUB_PK, hub.hashCredit(c)); // a credit the hub once signed
        vm.prank(m);
        try hub.submitCredit(c, cs) {} catch {}
    }

    /// Mallory challenges the debit total of her honest leaf in a checkpoint (the honest hub
    /// posts it), the honest hub answers with the debit she signed, and she tries to have the hub
    /// halted anyway, early and late. An honest hub is never halted.
    function malloryChallengesAnHonestLeaf(uint8 waitBlocks) external {
        address m = mallory();
        Books memory b = books[m];
        if (b.debitNonce == 0 || status(m) != InfHubBase.Status.Open) return;
        InfHubBase.CheckpointLeaf memory l = honestLeaf(m);
        (bool posted, uint64 id) = postOneLeaf(l);
        if (!posted) return;
        vm.prank(m);
        InfHubCheckpoints(address(hub)).challengeDebit(id, l, 0, new InfHubBase.SumNode[](0));
        vm.prank(m);
        try InfHubCheckpoints(address(hub)).haltOnUnansweredChallenge(m) {
            violation("mallory halted the hub before the answer period was over");
        } catch {}
        (InfHubBase.Debit memory d, bytes memory ds) = debitOf(m, userPk[MALLORY], b.debitNonce, b.debitCum);
        vm.prank(hubAddr);
        InfHubCheckpoints(address(hub)).answerDebitChallenge(d, ds);
        rollTo(block.number + waitBlocks);
        vm.prank(m);
        try InfHubCheckpoints(address(hub)).haltOnUnansweredChallenge(m) {
            violation("mallory halted a hub that answered");
        } catch {}
        vm.prank(m);
        try InfHubCheckpoints(address(hub)).challengeDebit(id, l, 0, new InfHubBase.SumNode[](0)) {
            violation("mallory challenged the same checkpoint twice");
        } catch {}
    }

    /// Settlement, after every honest party acted within the period. Honest users are paid
    /// exactly their balance; Mallory at most hers.
    function settle(uint256 who) external {
        (address u,, uint256 i) = pick(who, USERS);
        if (status(u) != InfHubBase.Status.Closing) return;
        rollTo(hub.channel(u).settleBlock);
        uint256 expected = balanceOf(u);
        uint256 before = token.balanceOf(u);
        InfHubSettlement(address(hub)).settle(u);
        uint256 paid = token.balanceOf(u) - before;
        if (i != MALLORY && paid != expected) violation("an honest user was not paid her balance");
        if (i == MALLORY && paid > expected) violation("mallory was paid more than her balance");
        ghostOut += paid;
        received[u] += paid;
        delete books[u];
    }
}

/// A dishonest hub against three honest users with watchtowers: the hub signs any credit its
/// key can sign and submits it at the worst moment, closes with old debits, realizes old debits,
/// and tries to take the reserve while channels close (payouts to itself, a reserve-advanced
/// withdrawal for an accomplice, its announced reserve withdrawal). User 2 is its accomplice.
contract DishonestHubHandler is AdversarialBase {
    uint256 internal constant ACCOMPLICE = 2;
    uint256 internal constant HONEST = 2;
    /// Every debit each user ever signed this epoch, by nonce (the hub keeps them all).
    mapping(address => mapping(uint64 => uint128)) internal signedDebits;
    uint256 public shortfalls;

    constructor() {
        setUpActors(0xC000);
    }

    function accomplice() public view returns (address) {
        return users[ACCOMPLICE];
    }

    /// An honest user pays another user; the hub credits the payee off chain.
    function transfer(uint256 from, uint256 to, uint256 amount) external {
        (address a,,) = pick(from, USERS);
        (address b,,) = pick(to, USERS);
        if (a == b || status(a) != InfHubBase.Status.Open || status(b) != InfHubBase.Status.Open) return;
        uint256 bal = balanceOf(a);
        if (bal == 0) return;
        amount = 1 + amount % bal;
        Books storage ba = books[a];
        ba.debitNonce++;
        ba.debitCum += uint128(amount);
        signedDebits[a][ba.debitNonce] = ba.debitCum;
        books[b].creditNonce++;
        books[b].creditCum += uint128(amount);
    }

    /// The hub gives a user credit off chain (a purchase, or a gift to its accomplice), backed
    /// or not by its reserve.
    function hubCredits(uint256 who, uint256 amount) external {
        (address u,,) = pick(who, USERS);
        if (status(u) != InfHubBase.Status.Open) return;
        amount = 1 + amount % MAX_STEP_AMOUNT;
        books[u].creditNonce++;
        books[u].creditCum += uint128(amount);
    }

    /// A co-signed cooperative withdrawal of an honest user.
    function withdraw(uint256 who, uint256 amount) external {
        (address u, uint256 pk,) = pick(who, HONEST);
        uint256 bal = balanceOf(u);
        if (status(u) != InfHubBase.Status.Open || bal == 0) return;
        amount = 1 + amount % bal;
        InfHubBase.Withdrawal memory w = InfHubBase.Withdrawal(
            u, hub.channel(u).epoch, hub.channel(u).withdrawn + uint128(amount), uint64(block.number + 3)
        );
        bytes32 digest = hub.hashWithdrawal(w);
        try hub.withdraw(w, signDigest(pk, digest), signDigest(HUB_PK, digest)) {
            ghostOut += amount;
            received[u] += amount;
        } catch {} // the reserve may have been given away
    }

    function userExit(uint256 who) external {
        (address u, uint256 pk,) = pick(who, HONEST);
        if (status(u) != InfHubBase.Status.Open) return;
        (InfHubBase.Credit memory c, bytes memory cs) = newestCredit(u);
        vm.prank(u);
        hub.startExit(c, cs);
        ownDebitFor(u, pk);
    }

    function accompliceExit() external {
        address m = accomplice();
        if (status(m) != InfHubBase.Status.Open) return;
        (InfHubBase.Credit memory c, bytes memory cs) = newestCredit(m);
        vm.prank(m);
        hub.startExit(c, cs);
    }

    /// The hub closes with any debit the user once signed (an old one), or none.
    function hubCloseStale(uint256 who, uint64 pickNonce) external {
        (address u, uint256 pk,) = pick(who, HONEST);
        if (status(u) != InfHubBase.Status.Open) return;
        uint64 n = books[u].debitNonce == 0 ? 0 : uint64(uint256(pickNonce) % (uint256(books[u].debitNonce) + 1));
        (InfHubBase.Debit memory d, bytes memory ds) = debitOf(u, pk, n, n == 0 ? 0 : signedDebits[u][n]);
        vm.prank(hubAddr);
        try hub.startHubClose(u, d, ds) {} catch {}
    }

    /// The hub signs any credit (any nonce, any total up to the newest) for a closing honest
    /// user and submits it, before or after her watchtower.
    function hubForgesCredit(uint256 who, uint64 nonce, uint128 total) external {
        (address u,,) = pick(who, HONEST);
        InfHubBase.Channel memory ch = hub.channel(u);
        if (ch.status != InfHubBase.Status.Closing || block.number >= ch.settleBlock) return;
        total = uint128(uint256(total) % (uint256(books[u].creditCum) + 1));
        InfHubBase.Credit memory c = InfHubBase.Credit(u, ch.epoch, nonce == 0 ? 1 : nonce, total, 0, bytes32(0));
        bytes memory cs = signDigest(HUB_PK, hub.hashCredit(c));
        vm.prank(hubAddr);
        try hub.submitCredit(c, cs) {} catch {}
    }

    /// The hub submits or realizes any debit the user once signed (the newest or an old one).
    function hubUsesOldDebit(uint256 who, uint64 pickNonce, bool realize) external {
        (address u, uint256 pk,) = pick(who, HONEST);
        Books memory b = books[u];
        if (b.debitNonce == 0) return;
        uint64 n = uint64(1 + uint256(pickNonce) % b.debitNonce);
        (InfHubBase.Debit memory d, bytes memory ds) = debitOf(u, pk, n, signedDebits[u][n]);
        vm.prank(hubAddr);
        if (realize) {
            try hub.realizeDebit(d, ds) {} catch {}
        } else {
            try hub.submitDebit(d, ds) {} catch {}
        }
    }

    /// The hub realizes in a batch any debits the user once signed, in any order, repeated.
    function hubRealizesOldDebitsInBatch(uint256 who, uint64 first, uint64 second) external {
        (address u, uint256 pk,) = pick(who, HONEST);
        Books memory b = books[u];
        if (b.debitNonce == 0) return;
        InfHubBase.Debit[] memory ds = new InfHubBase.Debit[](2);
        bytes[] memory sigs = new bytes[](2);
        uint64 n1 = uint64(1 + uint256(first) % b.debitNonce);
        uint64 n2 = uint64(1 + uint256(second) % b.debitNonce);
        (ds[0], sigs[0]) = debitOf(u, pk, n1, signedDebits[u][n1]);
        (ds[1], sigs[1]) = debitOf(u, pk, n2, signedDebits[u][n2]);
        vm.prank(hubAddr);
        try hub.realizeDebits(ds, sigs) {} catch {}
    }

    /// Takes `amount` from the reserve to the hub's own address by `how` (0 payout, 1 an
    /// advanced withdrawal of the accomplice's channel, 2 the announced reserve withdrawal).
    /// It may never leave the reserve below what closing channels draw.
    /// The hub posts a checkpoint whose leaf for an honest user counts less than the newest
    /// credit it signed her (same nonce); her watch proves it on chain and the hub is halted
    /// (spec 5.16). From then on no payout, advanced withdrawal or reserve withdrawal may succeed.
    function hubMisstatesCheckpoint(uint256 who, uint128 understate) external {
        (address u,,) = pick(who, HONEST);
        Books memory b = books[u];
        if (b.creditNonce == 0 || b.creditCum == 0 || status(u) != InfHubBase.Status.Open) return;
        InfHubBase.CheckpointLeaf memory l = honestLeaf(u);
        l.creditTotal = uint128(understate % b.creditCum);
        (bool posted, uint64 id) = postOneLeaf(l);
        if (!posted) return;
        (InfHubBase.Credit memory c, bytes memory sig) = newestCredit(u);
        InfHubCheckpoints(address(hub)).complainContradictedCredit(id, l, 0, new InfHubBase.SumNode[](0), c, sig);
        if (hub.haltedAtCheckpoint() == 0) violation("a proven misstatement did not halt the hub");
    }

    /// The hub posts a checkpoint whose leaf for an honest user states more debit than she ever
    /// signed. Her wallet challenges it; the hub cannot answer with any debit she signed (it
    /// tries her newest), and once the period is over the hub is halted (spec 5.16).
    function hubClaimsUnsignedDebit(uint256 who, uint128 overstate) external {
        (address u, uint256 pk,) = pick(who, HONEST);
        Books memory b = books[u];
        if (status(u) != InfHubBase.Status.Open || b.debitCum > type(uint128).max - MAX_STEP_AMOUNT - 1) return;
        InfHubBase.CheckpointLeaf memory l = honestLeaf(u);
        l.debitNonce = b.debitNonce + 1;
        l.debitTotal = b.debitCum + 1 + uint128(overstate % MAX_STEP_AMOUNT);
        (bool posted, uint64 id) = postOneLeaf(l);
        if (!posted) return;
        vm.prank(u);
        InfHubCheckpoints(address(hub)).challengeDebit(id, l, 0, new InfHubBase.SumNode[](0));
        if (b.debitNonce != 0) {
            (InfHubBase.Debit memory d, bytes memory ds) = debitOf(u, pk, b.debitNonce, b.debitCum);
            vm.prank(hubAddr);
            try InfHubCheckpoints(address(hub)).answerDebitChallenge(d, ds) {
                violation("the hub answered a challenge with less than the challenged debit");
            } catch {}
        }
        (,, uint64 answerBy,,) = hub.debitChallenges(u);
        rollTo(uint256(answerBy) + 1);
        InfHubCheckpoints(address(hub)).haltOnUnansweredChallenge(u);
        if (hub.haltedAtCheckpoint() == 0) violation("an unanswered debit challenge did not halt the hub");
    }

    function hubTakesReserve(uint8 how, uint256 amount) external {
        uint256 reserve = hub.reserve();
        if (reserve == 0) return;
        bool halted = hub.haltedAtCheckpoint() != 0;
        amount = 1 + amount % reserve;
        uint256 drawBefore = closingDraw();
        bool covered = reserve >= drawBefore;
        uint256 balanceBefore = token.balanceOf(address(hub));
        how = how % 3;
        if (how == 0) {
            address[] memory to = new address[](1);
            uint256[] memory amounts = new uint256[](1);
            to[0] = hubAddr;
            amounts[0] = amount;
            vm.prank(hubAddr);
            try hub.payout(keccak256(abi.encode(block.number, amount, gasleft())), to, amounts) {} catch {}
        } else if (how == 1) {
            address m = accomplice();
            InfHubBase.Channel memory ch = hub.channel(m);
            if (ch.status != InfHubBase.Status.Open) return;
            InfHubBase.Withdrawal memory w =
                InfHubBase.Withdrawal(m, ch.epoch, ch.withdrawn + uint128(funds(m) + amount), uint64(block.number + 1));
            bytes32 digest = hub.hashWithdrawal(w);
            try hub.withdraw(w, signDigest(userPk[ACCOMPLICE], digest), signDigest(HUB_PK, digest)) {} catch {}
        } else {
            (uint128 pending, uint64 unlock) = hub.pendingReserveWithdrawal();
            vm.startPrank(hubAddr);
            if (pending == 0 || block.number >= uint256(unlock) + NOTICE) {
                try hub.announceReserveWithdrawal(amount) {} catch {}
            } else if (block.number >= unlock) {
                try hub.executeReserveWithdrawal(hubAddr) {} catch {}
            }
            vm.stopPrank();
        }
        uint256 taken = balanceBefore - token.balanceOf(address(hub));
        ghostOut += taken;
        if (covered && hub.reserve() < closingDraw()) violation("the hub took reserve that closing channels are owed");
        if (halted && hub.reserve() < reserve) violation("a halted hub took reserve");
    }

    function watch(uint256 who) public {
        (address u,,) = pick(who, HONEST);
        watchFor(u);
    }

    function honestReact() internal override {
        for (uint256 i = 0; i < HONEST; i++) {
            watchFor(users[i]);
        }
    }

    /// Settlement after the honest watch acted. Her claim on chain is at least her balance by her
    /// own proofs (more only if the hub chose to show an old debit), and if the reserve can
    /// cover her balance she is paid at least all of it.
    function settle(uint256 who) external {
        (address u,, uint256 i) = pick(who, USERS);
        if (status(u) != InfHubBase.Status.Closing) return;
        rollTo(hub.channel(u).settleBlock);
        uint256 expected = balanceOf(u);
        if (i < HONEST && onChainClaim(u) < expected) violation("an honest user's claim on chain is below her balance");
        bool coverable = funds(u) + hub.reserve() >= expected;
        uint256 before = token.balanceOf(u);
        InfHubSettlement(address(hub)).settle(u);
        uint256 paid = token.balanceOf(u) - before;
        if (i < HONEST && coverable && paid < expected) violation("an honest user was not paid a balance the reserve covered");
        if (paid < expected) shortfalls++;
        ghostOut += paid;
        received[u] += paid;
        delete books[u];
        for (uint64 n = 1; n <= 64; n++) {
            delete signedDebits[u][n];
        }
    }
}

contract DishonestUserInvariantTest is Test {
    DishonestUserHandler internal handler;

    function setUp() public {
        vm.roll(1_000);
        handler = new DishonestUserHandler();
    }

    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    /// The token balance equals reserve plus channel funds plus excess, and tokens in minus out.
    function invariant_tokens_equal_reserve_plus_funds_plus_excess() public view {
        InfHub hub = handler.hub();
        uint256 bal = handler.token().balanceOf(address(hub));
        assertEq(bal, hub.reserve() + hub.totalChannelFunds() + hub.excess(), "balance == reserve + funds + excess");
        assertEq(bal, handler.ghostIn() - handler.ghostOut(), "balance == in - out");
    }

    /// The handler's own attack, played once in a fixed order: the suite can only catch what
    /// its handler can do.
    function test_mallorys_attack_through_the_handler() public {
        handler.depositReserve(1e20);
        handler.deposit(2, 1e20);
        handler.malloryPaysThenExitsAndForges(5e19, type(uint64).max, 0, true);
        handler.settle(2);
        assertEq(handler.violations(), 0, handler.lastViolation());
    }

    /// Mallory's challenge of an honest leaf, played once: she paid, so her leaf states a debit.
    function test_mallorys_challenge_through_the_handler() public {
        handler.depositReserve(1e20);
        handler.deposit(2, 1e20);
        handler.transfer(2, 0, 5e19);
        handler.roll(2);
        handler.malloryChallengesAnHonestLeaf(10);
        assertEq(handler.violations(), 0, handler.lastViolation());
        assertEq(uint256(handler.hub().lastCheckpointId()), 1, "the honest hub posted her leaf");
    }

    /// Honest users are paid exactly their balance and Mallory at most hers (checked at each
    /// settlement), so the honest hub never pays out more than it owes: the contract always
    /// holds every open balance plus everything the hub put in.
    function invariant_honest_hub_never_pays_more_than_owed() public view {
        assertEq(handler.violations(), 0, handler.lastViolation());
        uint256 bal = handler.token().balanceOf(address(handler.hub()));
        assertTrue(bal >= handler.sumOfBalances() + handler.reserveDeposited(), "the hub lost equity to a user");
    }

    /// The contract's reserved amount is exactly what the closing channels draw by their proofs.
    function invariant_reserved_for_closing_matches_the_channels() public view {
        assertEq(handler.hub().reservedForClosing(), handler.closingDraw(), "reservedForClosing == sum of draws");
    }

    /// No complaint or challenge Mallory can make halts an honest hub.
    function invariant_an_honest_hub_is_never_halted() public view {
        assertEq(uint256(handler.hub().haltedAtCheckpoint()), 0, "an honest hub was halted");
    }
}

contract DishonestHubInvariantTest is Test {
    DishonestHubHandler internal handler;

    function setUp() public {
        vm.roll(1_000);
        handler = new DishonestHubHandler();
    }

    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    function invariant_tokens_equal_reserve_plus_funds_plus_excess() public view {
        InfHub hub = handler.hub();
        uint256 bal = handler.token().balanceOf(address(hub));
        assertEq(bal, hub.reserve() + hub.totalChannelFunds() + hub.excess(), "balance == reserve + funds + excess");
        assertEq(bal, handler.ghostIn() - handler.ghostOut(), "balance == in - out");
    }

    /// Honest users are paid their balance whenever the reserve can cover it, and the hub never
    /// takes reserve that closing channels are owed.
    function invariant_honest_users_are_paid_what_the_reserve_covers() public view {
        assertEq(handler.violations(), 0, handler.lastViolation());
    }

    function invariant_reserved_for_closing_matches_the_channels() public view {
        assertEq(handler.hub().reservedForClosing(), handler.closingDraw(), "reservedForClosing == sum of draws");
    }
}
