// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Fixture} from "./Fixture.sol";
import {Test} from "./utils/Test.sol";
import {InfToken} from "../src/InfToken.sol";
import {PointRegistry} from "../src/PointRegistry.sol";
import {InfHub} from "../src/InfHub.sol";
import {InfHubBase} from "../src/InfHubBase.sol";
import {InfHubSettlement} from "../src/InfHubSettlement.sol";
import {LockLeaf} from "../src/LockLeaf.sol";
import {LockTree} from "./utils/LockTree.sol";
import {deployHub} from "./utils/DeployHub.sol";

/// Locks through a close (spec 5.11a): registration, escrow at settlement, unlock against the
/// point registry. Each attack of the spec's list is played by the dishonest party with its
/// own key, and each test checks the money, so it fails on a contract that breaks the rule.
contract LocksFixture is Fixture {
    InfHubSettlement internal settlement;
    uint256 internal constant T1 = 0x1111;
    uint256 internal constant T2 = 0x2222;
    uint256 internal constant T3 = 0x3333;

    event log_named_uint(string key, uint256 val);

    function setUp() public virtual override {
        super.setUp();
        settlement = InfHubSettlement(address(hub));
        open(alice);
        depositAs(alice, 1000);
        open(bob);
        depositAs(bob, 1000);
        fundReserve(10_000);
    }

    function lockOf(uint256 id, uint128 amount, uint64 expiry, uint256 scalar)
        internal
        view
        returns (InfHubBase.Lock memory)
    {
        return InfHubBase.Lock(bytes32(id), amount, expiry, registry.pointOf(scalar));
    }

    function one(InfHubBase.Lock memory a) internal pure returns (InfHubBase.Lock[] memory l) {
        l = new InfHubBase.Lock[](1);
        l[0] = a;
    }

    function two(InfHubBase.Lock memory a, InfHubBase.Lock memory b) internal pure returns (InfHubBase.Lock[] memory l) {
        l = new InfHubBase.Lock[](2);
        l[0] = a;
        l[1] = b;
    }

    function none() internal pure returns (InfHubBase.Lock[] memory) {
        return new InfHubBase.Lock[](0);
    }

    function leafOf(InfHub h, InfHubBase.Lock memory l) internal view returns (bytes32) {
        return LockLeaf.digest(h.domainSeparator(), l.lockId, l.amount, l.expiryBlock, l.point);
    }

    function leavesOf(InfHub h, InfHubBase.Lock[] memory locks) internal view returns (bytes32[] memory leaves) {
        leaves = new bytes32[](locks.length);
        for (uint256 i = 0; i < locks.length; i++) {
            leaves[i] = leafOf(h, locks[i]);
        }
    }

    function totalOf(InfHubBase.Lock[] memory locks) internal pure returns (uint128 total) {
        for (uint256 i = 0; i < locks.length; i++) {
            total += locks[i].amount;
        }
    }

    function pathOf(InfHubBase.Lock[] memory locks, uint256 i) internal view returns (bytes32[] memory) {
        return LockTree.path(leavesOf(hub, locks), i);
    }

    function debitWith(address user, uint64 nonce, uint128 cumulative, InfHubBase.Lock[] memory locks)
        internal
        view
        returns (InfHubBase.Debit memory d)
    {
        d = debit(user, nonce, cumulative, 1);
        d.lockedAmount = totalOf(locks);
        d.locksRoot = LockTree.root(leavesOf(hub, locks));
    }

    function creditWith(address user, uint64 nonce, uint128 cumulative, InfHubBase.Lock[] memory locks)
        internal
        view
        returns (InfHubBase.Credit memory c)
    {
        c = credit(user, nonce, cumulative);
        c.lockedAmount = totalOf(locks);
        c.locksRoot = LockTree.root(leavesOf(hub, locks));
    }

    function hubCloses(address user, InfHubBase.Debit memory d, bytes memory sig) internal {
        vm.prank(hubAddr);
        hub.startHubClose(user, d, sig);
    }

    function settleNow(address user) internal {
        uint64 at = hub.channel(user).settleBlock;
        if (block.number < at) vm.roll(at);
        settlement.settle(user);
    }

    function expectRule(string memory name) internal {
        vm.expectRevert(bytes4(keccak256(bytes(string.concat(name, "()")))));
    }

    function checkAccountingWithEscrow() internal view {
        assertEq(
            token.balanceOf(address(hub)),
            hub.reserve() + hub.totalChannelFunds() + hub.totalEscrow() + hub.excess(),
            "balance == reserve + funds + escrow + excess"
        );
    }

    function direction(address user, uint8 dir) internal view returns (InfHubBase.LockDirection memory) {
        return settlement.lockDirectionOf(user, epochOf(user), dir);
    }
}

contract InfHubLocksTest is LocksFixture {
    // ------------------------------------------------------------ the user's locks (on her debits)

    function test_a_user_lock_revealed_by_its_expiry_pays_the_hub() public {
        InfHubBase.Lock[] memory locks = one(lockOf(1, 50, 200, T1));
        InfHubBase.Debit memory d = debitWith(alice, 1, 100, locks);
        bytes memory sig = signDebit(ALICE_PK, d);
        hubCloses(alice, d, sig);
        settlement.registerDebitLock(d, sig, locks[0], pathOf(locks, 0));
        assertEq(direction(alice, 0).potential, 150, "potential = 100 + 50");
        registry.reveal(T1);
        uint256 aliceBefore = token.balanceOf(alice);
        settleNow(alice);
        assertEq(token.balanceOf(alice) - aliceBefore, 850, "claim 900 less the escrow of 50");
        assertEq(hub.totalEscrow(), 50, "escrowed");
        checkAccountingWithEscrow();
        uint256 reserveBefore = hub.reserve();
        bytes32 digest = hub.hashDebit(d);
        settlement.unlock(digest, locks[0].lockId);
        assertEq(hub.reserve() - reserveBefore, 50, "the revealed lock pays the hub");
        assertEq(hub.totalEscrow(), 0, "nothing left in escrow");
        assertEq(token.balanceOf(alice) - aliceBefore, 850, "the user gets nothing back");
        checkAccountingWithEscrow();
        expectRule("LockAlreadyResolved");
        settlement.unlock(digest, locks[0].lockId);
    }

    function test_a_user_lock_that_expires_returns_to_her_and_not_before_its_expiry() public {
        InfHubBase.Lock[] memory locks = one(lockOf(1, 50, 200, T1));
        InfHubBase.Debit memory d = debitWith(alice, 1, 100, locks);
        bytes memory sig = signDebit(ALICE_PK, d);
        hubCloses(alice, d, sig);
        settlement.registerDebitLock(d, sig, locks[0], pathOf(locks, 0));
        bytes32 digest = hub.hashDebit(d);
        expectRule("ChannelNotSettled");
        settlement.unlock(digest, locks[0].lockId);
        settleNow(alice);
        vm.roll(200);
        expectRule("LockNotResolved");
        settlement.unlock(digest, locks[0].lockId);
        vm.roll(201);
        uint256 aliceBefore = token.balanceOf(alice);
        uint256 reserveBefore = hub.reserve();
        settlement.unlock(digest, locks[0].lockId);
        assertEq(token.balanceOf(alice) - aliceBefore, 50, "the escrow returns to the sender");
        assertEq(hub.reserve(), reserveBefore, "the hub gets nothing");
        checkAccountingWithEscrow();
    }

    function test_a_reveal_one_block_after_the_expiry_opens_nothing() public {
        InfHubBase.Lock[] memory locks = one(lockOf(1, 50, 200, T1));
        InfHubBase.Debit memory d = debitWith(alice, 1, 100, locks);
        bytes memory sig = signDebit(ALICE_PK, d);
        hubCloses(alice, d, sig);
        settlement.registerDebitLock(d, sig, locks[0], pathOf(locks, 0));
        settleNow(alice);
        vm.roll(201);
        registry.reveal(T1);
        uint256 aliceBefore = token.balanceOf(alice);
        settlement.unlock(hub.hashDebit(d), locks[0].lockId);
        assertEq(token.balanceOf(alice) - aliceBefore, 50, "a late reveal is an expiry");
    }

    /// The payer signs a newer proof with the same total that drops the lock the hub already
    /// forwarded, and makes it the stored proof. The hub registers the lock through the proof
    /// that carries it and is paid when the point is revealed.
    function test_attack_a_payer_drops_a_forwarded_lock_with_a_newer_same_total_proof() public {
        InfHubBase.Lock[] memory locks = one(lockOf(1, 50, 200, T1));
        InfHubBase.Debit memory withLock = debitWith(alice, 1, 100, locks);
        bytes memory withLockSig = signDebit(ALICE_PK, withLock);
        InfHubBase.Debit memory dropped = debitWith(alice, 2, 100, none());
        bytes memory droppedSig = signDebit(ALICE_PK, dropped);
        vm.prank(alice);
        hub.startExit(noCredit(alice), "");
        vm.prank(alice);
        hub.submitDebit(dropped, droppedSig);
        assertEq(hub.channel(alice).debit.nonce, 2, "her proof without the lock is stored");
        vm.prank(hubAddr);
        settlement.registerDebitLock(withLock, withLockSig, locks[0], pathOf(locks, 0));
        registry.reveal(T1);
        uint256 reserveBefore = hub.reserve();
        uint256 aliceBefore = token.balanceOf(alice);
        settleNow(alice);
        settlement.unlock(hub.hashDebit(withLock), locks[0].lockId);
        assertEq(token.balanceOf(alice) - aliceBefore, 850, "she pays the lock she dropped");
        assertEq(hub.reserve() - reserveBefore, 150, "the hub is paid the debit total and the lock");
        checkAccountingWithEscrow();
    }

    /// The payer registers the lock through her own older proof (a lower total) first; the
    /// hub's registration through the newest proof still counts.
    function test_attack_a_sender_registers_its_lock_through_an_older_proof_first() public {
        InfHubBase.Lock[] memory locks = one(lockOf(1, 50, 200, T1));
        InfHubBase.Debit memory older = debitWith(alice, 1, 100, locks);
        bytes memory olderSig = signDebit(ALICE_PK, older);
        InfHubBase.Debit memory newest = debitWith(alice, 2, 150, locks);
        bytes memory newestSig = signDebit(ALICE_PK, newest);
        hubCloses(alice, newest, newestSig);
        vm.prank(alice);
        settlement.registerDebitLock(older, olderSig, locks[0], pathOf(locks, 0));
        settlement.registerDebitLock(newest, newestSig, locks[0], pathOf(locks, 0));
        registry.reveal(T1);
        uint256 aliceBefore = token.balanceOf(alice);
        uint256 reserveBefore = hub.reserve();
        settleNow(alice);
        settlement.unlock(hub.hashDebit(older), locks[0].lockId);
        settlement.unlock(hub.hashDebit(newest), locks[0].lockId);
        assertEq(token.balanceOf(alice) - aliceBefore, 1000 - 200, "charged 150 + 50, not 150");
        assertEq(hub.reserve() - reserveBefore, 200, "the hub gets the total and the lock once");
        checkAccountingWithEscrow();
    }

    /// A lock settled off chain is in a later proof's total: registering it through the older
    /// proof and revealing it charges nothing more.
    function test_a_lock_settled_off_chain_is_not_paid_twice() public {
        InfHubBase.Lock[] memory locks = one(lockOf(1, 50, 200, T1));
        InfHubBase.Debit memory older = debitWith(alice, 1, 100, locks);
        bytes memory olderSig = signDebit(ALICE_PK, older);
        InfHubBase.Debit memory settled = debitWith(alice, 2, 150, none());
        bytes memory settledSig = signDebit(ALICE_PK, settled);
        hubCloses(alice, settled, settledSig);
        vm.prank(hubAddr);
        settlement.registerDebitLock(older, olderSig, locks[0], pathOf(locks, 0));
        registry.reveal(T1);
        uint256 aliceBefore = token.balanceOf(alice);
        settleNow(alice);
        assertEq(hub.totalEscrow(), 0, "100 + 50 never exceeds the stored 150: nothing to hold");
        settlement.unlock(hub.hashDebit(older), locks[0].lockId);
        assertEq(token.balanceOf(alice) - aliceBefore, 850, "charged 150 once");
    }

    // ------------------------------------------------------------ the hub's locks (on its credits)

    function test_a_hub_lock_revealed_pays_the_user_from_the_reserve() public {
        InfHubBase.Lock[] memory locks = two(lockOf(1, 30, 200, T1), lockOf(2, 20, 200, T2));
        InfHubBase.Credit memory c = creditWith(alice, 1, 200, locks);
        bytes memory sig = signCredit(HUB_PK, c);
        vm.prank(alice);
        hub.startExit(c, sig);
        uint256 drawBefore = hub.reservedForClosing();
        vm.startPrank(alice);
        settlement.registerCreditLock(c, sig, locks[0], pathOf(locks, 0));
        settlement.registerCreditLock(c, sig, locks[1], pathOf(locks, 1));
        vm.stopPrank();
        assertEq(hub.reservedForClosing() - drawBefore, 50, "the reserve for both locks is kept back");
        registry.reveal(T1);
        uint256 aliceBefore = token.balanceOf(alice);
        settleNow(alice);
        assertEq(token.balanceOf(alice) - aliceBefore, 1200, "claim 1000 + 200");
        assertEq(hub.totalEscrow(), 50, "the reserve escrows both locks");
        uint256 reserveAfterSettle = hub.reserve();
        settlement.unlock(hub.hashCredit(c), locks[0].lockId);
        assertEq(token.balanceOf(alice) - aliceBefore, 1230, "the revealed lock pays her");
        vm.roll(201);
        settlement.unlock(hub.hashCredit(c), locks[1].lockId);
        assertEq(hub.reserve() - reserveAfterSettle, 20, "the expired lock returns to the reserve");
        assertEq(hub.totalEscrow(), 0, "all resolved");
        checkAccountingWithEscrow();
    }

    function test_registered_hub_locks_keep_the_reserve_from_leaving() public {
        InfHubBase.Lock[] memory locks = one(lockOf(1, 5000, 200, T1));
        InfHubBase.Credit memory c = creditWith(alice, 1, 0, locks);
        bytes memory sig = signCredit(HUB_PK, c);
        vm.prank(alice);
        hub.startExit(c, sig);
        settlement.registerCreditLock(c, sig, locks[0], pathOf(locks, 0));
        address[] memory to = new address[](1);
        uint256[] memory amounts = new uint256[](1);
        to[0] = hubAddr;
        amounts[0] = 5001;
        vm.prank(hubAddr);
        expectRule("ReserveInsufficient");
        hub.payout(keccak256("drain"), to, amounts);
        amounts[0] = 5000;
        vm.prank(hubAddr);
        hub.payout(keccak256("drain"), to, amounts);
        registry.reveal(T1);
        settleNow(alice);
        uint256 aliceBefore = token.balanceOf(alice);
        settlement.unlock(hub.hashCredit(c), locks[0].lockId);
        assertEq(token.balanceOf(alice) - aliceBefore, 5000, "the lock is paid in full");
        checkAccountingWithEscrow();
    }

    /// A hub that registers junk locks of its own against itself cannot take other users'
    /// settlements: its escrow comes only from the reserve closing channels do not draw, and the
    /// junk returns to it.
    function test_attack_junk_hub_locks_cannot_starve_other_settlements() public {
        // Bob closes with a credit the reserve must pay: 1000 + 9000.
        InfHubBase.Credit memory cb = creditWith(bob, 1, 9000, none());
        bytes memory cbSig = signCredit(HUB_PK, cb);
        vm.prank(bob);
        hub.startExit(cb, cbSig);
        // The hub closes Alice with junk locks of its own worth far more than the reserve.
        InfHubBase.Lock[] memory junk = one(lockOf(9, 1e12, 200, T3));
        InfHubBase.Credit memory cj = creditWith(alice, 1, 0, junk);
        bytes memory cjSig = signCredit(HUB_PK, cj);
        hubCloses(alice, noDebit(alice), "");
        vm.startPrank(hubAddr);
        settlement.registerCreditLock(cj, cjSig, junk[0], pathOf(junk, 0));
        vm.stopPrank();
        vm.roll(hub.channel(alice).settleBlock);
        settlement.settle(alice);
        assertEq(hub.totalEscrow(), 1000, "escrow only from the reserve bob does not draw (10000 - 9000)");
        uint256 bobBefore = token.balanceOf(bob);
        settleNow(bob);
        assertEq(token.balanceOf(bob) - bobBefore, 10_000, "bob is paid in full");
        vm.roll(201);
        settlement.unlock(hub.hashCredit(cj), junk[0].lockId);
        assertEq(hub.totalEscrow(), 0, "the junk returns");
        assertEq(hub.reserve(), 1000, "to the reserve");
        checkAccountingWithEscrow();
    }

    /// A user who signs junk locks of her own and registers them only holds back her own claim.
    function test_attack_junk_user_locks_return_to_her() public {
        InfHubBase.Lock[] memory junk = one(lockOf(9, 700, 200, T3));
        InfHubBase.Debit memory d = debitWith(alice, 1, 0, junk);
        bytes memory sig = signDebit(ALICE_PK, d);
        vm.prank(alice);
        hub.startExit(noCredit(alice), "");
        vm.prank(alice);
        settlement.registerDebitLock(d, sig, junk[0], pathOf(junk, 0));
        uint256 aliceBefore = token.balanceOf(alice);
        uint256 reserveBefore = hub.reserve();
        settleNow(alice);
        assertEq(token.balanceOf(alice) - aliceBefore, 300, "700 held back from her own 1000");
        vm.roll(201);
        settlement.unlock(hub.hashDebit(d), junk[0].lockId);
        assertEq(token.balanceOf(alice) - aliceBefore, 1000, "and returned");
        assertEq(hub.reserve(), reserveBefore, "the hub's reserve untouched");
    }

    // ------------------------------------------------------------ what registration refuses

    InfHubBase.Lock[] internal twoLocks;
    InfHubBase.Debit internal lockedDebit;
    bytes internal lockedDebitSig;

    function prepareLockedDebit() internal {
        InfHubBase.Lock[] memory locks = two(lockOf(1, 50, 200, T1), lockOf(2, 60, 200, T2));
        twoLocks.push(locks[0]);
        twoLocks.push(locks[1]);
        lockedDebit = debitWith(alice, 1, 100, locks);
        lockedDebitSig = signDebit(ALICE_PK, lockedDebit);
    }

    function test_registration_refuses_proofs_that_do_not_belong() public {
        prepareLockedDebit();
        bytes32[] memory p0 = pathOf(twoLocks, 0);
        expectRule("ChannelNotClosing");
        settlement.registerDebitLock(lockedDebit, lockedDebitSig, twoLocks[0], p0);
        hubCloses(alice, lockedDebit, lockedDebitSig);
        // Another epoch of the same channel.
        InfHubBase.Debit memory otherEpoch = lockedDebit;
        otherEpoch.epoch += 1;
        bytes memory otherEpochSig = signDebit(ALICE_PK, otherEpoch);
        expectRule("EpochMismatch");
        settlement.registerDebitLock(otherEpoch, otherEpochSig, twoLocks[0], p0);
        // Signed by someone else (bob signs a debit of alice's channel).
        bytes memory bobSig = signDebit(BOB_PK, lockedDebit);
        expectRule("WrongSigner");
        settlement.registerDebitLock(lockedDebit, bobSig, twoLocks[0], p0);
        // A credit needs the hub's signature, not the user's.
        InfHubBase.Credit memory c = creditWith(bob, 1, 0, twoLocks);
        bytes memory aliceOnCredit = signCredit(ALICE_PK, c);
        vm.prank(bob);
        hub.startExit(noCredit(bob), "");
        expectRule("WrongSigner");
        settlement.registerCreditLock(c, aliceOnCredit, twoLocks[0], p0);
    }

    function test_registration_refuses_locks_not_under_the_proof() public {
        prepareLockedDebit();
        bytes32[] memory p0 = pathOf(twoLocks, 0);
        hubCloses(alice, lockedDebit, lockedDebitSig);
        InfHubBase.Lock memory forged = twoLocks[0];
        forged.amount = 500;
        expectRule("LockNotUnderRoot");
        settlement.registerDebitLock(lockedDebit, lockedDebitSig, forged, p0);
        expectRule("LockNotUnderRoot");
        settlement.registerDebitLock(lockedDebit, lockedDebitSig, twoLocks[1], p0);
        // The same lock hashed in another hub contract's domain is another leaf.
        InfHub other = deployHub(token, hubAddr, CHALLENGE, NOTICE, registry);
        assertTrue(leafOf(other, twoLocks[0]) != leafOf(hub, twoLocks[0]), "a leaf is bound to its contract");
        InfHubBase.Lock memory zero = twoLocks[0];
        zero.amount = 0;
        expectRule("AmountMustNotBeZero");
        settlement.registerDebitLock(lockedDebit, lockedDebitSig, zero, p0);
        bytes32[] memory longPath = new bytes32[](33);
        expectRule("PathTooLong");
        settlement.registerDebitLock(lockedDebit, lockedDebitSig, twoLocks[0], longPath);
    }

    function test_registration_is_once_per_proof_and_lock_and_only_in_the_period() public {
        prepareLockedDebit();
        hubCloses(alice, lockedDebit, lockedDebitSig);
        bytes32[] memory p0 = pathOf(twoLocks, 0);
        bytes32[] memory p1 = pathOf(twoLocks, 1);
        settlement.registerDebitLock(lockedDebit, lockedDebitSig, twoLocks[0], p0);
        expectRule("LockAlreadyRegistered");
        settlement.registerDebitLock(lockedDebit, lockedDebitSig, twoLocks[0], p0);
        assertEq(direction(alice, 0).unresolved, 1, "one registration");
        vm.roll(hub.channel(alice).settleBlock);
        expectRule("ChallengePeriodOver");
        settlement.registerDebitLock(lockedDebit, lockedDebitSig, twoLocks[1], p1);
    }

    function test_unlock_refuses_unknown_and_unsettled_registrations() public {
        expectRule("UnknownLock");
        settlement.unlock(bytes32(uint256(1)), bytes32(uint256(1)));
        bytes32[] memory empty = new bytes32[](0);
        expectRule("BatchEmpty");
        settlement.unlockMany(empty, empty);
        bytes32[] memory many = new bytes32[](257);
        expectRule("BatchTooLarge");
        settlement.unlockMany(many, many);
        bytes32[] memory oneId = new bytes32[](1);
        bytes32[] memory twoIds = new bytes32[](2);
        expectRule("BatchLengthMismatch");
        settlement.unlockMany(oneId, twoIds);
    }

    /// A batched hub proof (signature over a ProofBatch root and the path to it) registers a
    /// lock like a direct signature, and the escrow survives the user's reopening of her channel.
    function test_a_batched_hub_proof_registers_and_escrow_outlives_a_reopen() public {
        InfHubBase.Lock[] memory locks = one(lockOf(1, 40, 300, T1));
        InfHubBase.Credit memory c = creditWith(alice, 1, 10, locks);
        bytes32 digest = hub.hashCredit(c);
        bytes32 sibling = keccak256("another credit in the batch");
        bytes32 batchRoot = LockTree.hashPair(digest, sibling);
        bytes memory proof = bytes.concat(signDigest(HUB_PK, hub.hashProofBatch(batchRoot)), sibling);
        vm.prank(alice);
        hub.startExit(c, proof);
        settlement.registerCreditLock(c, proof, locks[0], pathOf(locks, 0));
        settleNow(alice);
        uint64 closedEpoch = epochOf(alice);
        open(alice);
        assertEq(epochOf(alice), closedEpoch + 1, "reopened");
        registry.reveal(T1);
        uint256 aliceBefore = token.balanceOf(alice);
        settlement.unlock(digest, locks[0].lockId);
        assertEq(token.balanceOf(alice) - aliceBefore, 40, "the old epoch's lock still pays");
        checkAccountingWithEscrow();
    }

    // ------------------------------------------------------------ gas (README table)

    function gasOfUnlocks(uint256 n) internal returns (uint256 perCall) {
        InfHubBase.Lock[] memory locks = new InfHubBase.Lock[](n);
        for (uint256 i = 0; i < n; i++) {
            locks[i] = lockOf(100 + i, 1, 500, T1);
        }
        InfHubBase.Debit memory d = debitWith(alice, 1, 100, locks);
        bytes memory sig = signDebit(ALICE_PK, d);
        hubCloses(alice, d, sig);
        bytes32[] memory digests = new bytes32[](n);
        bytes32[] memory ids = new bytes32[](n);
        bytes32 digest = hub.hashDebit(d);
        uint256 registerGas = 0;
        for (uint256 i = 0; i < n; i++) {
            bytes32[] memory p = pathOf(locks, i);
            uint256 g = gasleft();
            settlement.registerDebitLock(d, sig, locks[i], p);
            registerGas += g - gasleft();
            digests[i] = digest;
            ids[i] = locks[i].lockId;
        }
        registry.reveal(T1);
        settleNow(alice);
        uint256 before = gasleft();
        settlement.unlockMany(digests, ids);
        perCall = before - gasleft();
        emit log_named_uint(string.concat("registerDebitLock, mean of ", vm.toString(n)), registerGas / n);
        assertEq(hub.totalEscrow(), 0, "all resolved");
    }

    function test_gas_unlock_1() public {
        emit log_named_uint("unlockMany of 1 lock", gasOfUnlocks(1));
    }

    function test_gas_unlock_16() public {
        emit log_named_uint("unlockMany of 16 locks", gasOfUnlocks(16));
    }

    function test_gas_unlock_128() public {
        emit log_named_uint("unlockMany of 128 locks", gasOfUnlocks(128));
    }

    // ------------------------------------------------------------ fuzz

    /// Any stored total, any set of registrations through two proofs and any subset revealed:
    /// the user and the hub end with exactly what the rule says (the charge is the largest of
    /// the stored total and each proof's total plus its revealed locks), and no token is lost.
    bytes32 internal fuzzNewest;
    bytes32 internal fuzzOld;

    function closeWithTwoLocks(uint128 stored, uint128 older, uint128 a, uint128 b, bool registerOlder) internal {
        InfHubBase.Lock[] memory locks = two(lockOf(1, a, 200, T1), lockOf(2, b, 200, T2));
        InfHubBase.Debit memory newest = debitWith(alice, 2, stored, locks);
        bytes memory newestSig = signDebit(ALICE_PK, newest);
        hubCloses(alice, newest, newestSig);
        settlement.registerDebitLock(newest, newestSig, locks[0], pathOf(locks, 0));
        settlement.registerDebitLock(newest, newestSig, locks[1], pathOf(locks, 1));
        fuzzNewest = hub.hashDebit(newest);
        if (registerOlder) {
            InfHubBase.Debit memory old = debitWith(alice, 1, older, locks);
            bytes memory oldSig = signDebit(ALICE_PK, old);
            vm.startPrank(alice);
            settlement.registerDebitLock(old, oldSig, locks[0], pathOf(locks, 0));
            settlement.registerDebitLock(old, oldSig, locks[1], pathOf(locks, 1));
            vm.stopPrank();
            fuzzOld = hub.hashDebit(old);
        }
    }

    /// Any stored total, registrations through the newest proof and maybe an older one (by the
    /// payer herself), any subset revealed, unlocks in any order: the user and the hub end with
    /// exactly what the rule says (the charge is the largest of the stored total and each
    /// proof's total plus its revealed locks), and no token is lost.
    function testFuzz_settlement_with_locks_pays_by_the_rule(
        uint64 storedTotal,
        uint64 olderTotal,
        uint64 amountA,
        uint64 amountB,
        uint8 revealMask,
        bool registerOlder
    ) public {
        uint128 stored = uint128(bound(storedTotal, 0, 900));
        uint128 a = uint128(bound(amountA, 1, 500));
        uint128 b = uint128(bound(amountB, 1, 500));
        closeWithTwoLocks(stored, uint128(bound(olderTotal, 0, stored)), a, b, registerOlder);
        if (revealMask & 1 != 0) registry.reveal(T1);
        if (revealMask & 2 != 0) registry.reveal(T2);
        uint256 aliceBefore = token.balanceOf(alice);
        uint256 reserveBefore = hub.reserve();
        settleNow(alice);
        vm.roll(201);
        if (registerOlder && revealMask & 4 != 0) {
            settlement.unlock(fuzzOld, bytes32(uint256(1)));
            settlement.unlock(fuzzOld, bytes32(uint256(2)));
        }
        settlement.unlock(fuzzNewest, bytes32(uint256(2)));
        settlement.unlock(fuzzNewest, bytes32(uint256(1)));
        if (registerOlder && revealMask & 4 == 0) {
            settlement.unlock(fuzzOld, bytes32(uint256(2)));
            settlement.unlock(fuzzOld, bytes32(uint256(1)));
        }
        uint256 revealed = (revealMask & 1 != 0 ? a : 0) + (revealMask & 2 != 0 ? b : 0);
        uint256 charge = stored + revealed; // the newest proof's charge is the largest
        uint256 owed = charge > 1000 ? 0 : 1000 - charge;
        assertEq(token.balanceOf(alice) - aliceBefore, owed, "the user gets her deposit less the charge");
        assertEq(hub.reserve() - reserveBefore, 1000 - owed, "the hub gets the rest");
        assertEq(hub.totalEscrow(), 0, "escrow empty");
        checkAccountingWithEscrow();
    }
}

/// Drives closes with locks in both directions, registrations through newest and older proofs,
/// reveals before and after expiry, settlements and unlocks in any order, and reopenings; it
/// checks every user's receipts against a model of the rule when her close fully resolves.
contract LocksHandler is Test {
    uint256 internal constant HUB_PK = 0x4855_4200_0000_0000_0000_0000_0000_0000_0000_0000_0000_0000_0000_0001;
    uint256 internal constant USERS = 3;
    uint64 internal constant CHALLENGE = 10;
    uint256 internal constant SCALARS = 4;
    uint256 internal constant DEPOSIT = 1000;

    InfToken public token;
    InfHub public hub;
    InfHubSettlement public settlement;
    PointRegistry public registry;
    address public hubAddr;
    address[USERS] public users;
    uint256[USERS] internal userPk;
    uint256 public ghostIn;
    uint256 public ghostOut;
    uint256 public violations;
    string public lastViolation;
    uint256 public completedCloses;

    struct Proof {
        uint8 dir;
        uint128 cumulative;
        bytes32 digest;
        InfHubBase.Lock[] locks;
        bytes32[][] paths;
        bytes sig;
        InfHubBase.Debit debit;
        InfHubBase.Credit credit;
    }

    struct Reg {
        uint256 proof;
        uint256 lock;
        bool resolved;
    }

    // Per user: the current close's proofs (0,1 debits older/newer; 2,3 credits older/newer).
    mapping(uint256 => Proof[4]) internal proofs;
    mapping(uint256 => Reg[]) internal regs;
    mapping(uint256 => uint8) public phase; // 0 open, 1 closing, 2 settled
    mapping(uint256 => uint256) public receivedThisClose;
    mapping(address => uint256) public revealBlock;
    uint256 internal nonceSeed;

    constructor() {
        hubAddr = vm.addr(HUB_PK);
        token = new InfToken(0);
        registry = new PointRegistry();
        hub = deployHub(token, hubAddr, CHALLENGE, 2 * CHALLENGE, registry);
        settlement = InfHubSettlement(address(hub));
        token.mint(hubAddr, 1e9);
        vm.startPrank(hubAddr);
        token.approve(address(hub), type(uint256).max);
        hub.depositReserve(1e6);
        vm.stopPrank();
        ghostIn += 1e6;
        for (uint256 i = 0; i < USERS; i++) {
            userPk[i] = 0xB000 + i;
            users[i] = vm.addr(userPk[i]);
            token.mint(users[i], 1e9);
            vm.startPrank(users[i]);
            token.approve(address(hub), type(uint256).max);
            hub.openChannel(users[i]);
            hub.deposit(users[i], DEPOSIT);
            vm.stopPrank();
            ghostIn += DEPOSIT;
        }
    }

    function scalar(uint256 k) internal pure returns (uint256) {
        return 0x5150 + k;
    }

    function makeProof(uint256 u, uint256 slot, uint8 dir, uint64 nonce, uint128 cumulative, uint256 seed) internal {
        Proof storage p = proofs[u][slot];
        p.dir = dir;
        p.cumulative = cumulative;
        delete p.locks;
        delete p.paths;
        bytes32[] memory leaves = new bytes32[](2);
        InfHubBase.Lock[2] memory ls;
        uint128 total = 0;
        for (uint256 j = 0; j < 2; j++) {
            uint256 s = uint256(keccak256(abi.encode(seed, j)));
            // Lock ids repeat across a close's proofs on purpose: the same lock rides several proofs.
            ls[j] = InfHubBase.Lock(
                bytes32(j + 1), uint128(1 + s % 100), uint64(block.number + 5 + (s >> 8) % 40), registry.pointOf(scalar((s >> 16) % SCALARS))
            );
            total += ls[j].amount;
            leaves[j] = LockLeaf.digest(hub.domainSeparator(), ls[j].lockId, ls[j].amount, ls[j].expiryBlock, ls[j].point);
        }
        for (uint256 j = 0; j < 2; j++) {
            p.locks.push(ls[j]);
            p.paths.push(LockTree.path(leaves, j));
        }
        bytes32 root = LockTree.root(leaves);
        uint64 epoch = hub.channel(users[u]).epoch;
        if (dir == 0) {
            p.debit = InfHubBase.Debit(users[u], epoch, nonce, cumulative, total, root, 0, hubAddr, 1, bytes32(seed));
            p.digest = hub.hashDebit(p.debit);
            p.sig = signDigest(userPk[u], p.digest);
        } else {
            p.credit = InfHubBase.Credit(users[u], epoch, nonce, cumulative, total, root);
            p.digest = hub.hashCredit(p.credit);
            p.sig = signDigest(HUB_PK, p.digest);
        }
    }

    /// The hub closes the user's channel with her newer debit; she answers with the newer or
    /// the older credit.
    function close(uint256 u, uint256 seed) external {
        u %= USERS;
        if (phase[u] != 0) return;
        uint128 d0 = uint128(seed % 200);
        uint128 d1 = d0 + uint128((seed >> 8) % 200);
        uint128 c0 = uint128((seed >> 16) % 200);
        uint128 c1 = c0 + uint128((seed >> 24) % 200);
        makeProof(u, 0, 0, 1, d0, seed ^ 1);
        makeProof(u, 1, 0, 2, d1, seed ^ 2);
        makeProof(u, 2, 1, 1, c0, seed ^ 3);
        makeProof(u, 3, 1, 2, c1, seed ^ 4);
        vm.prank(hubAddr);
        hub.startHubClose(users[u], proofs[u][1].debit, proofs[u][1].sig);
        uint256 which = (seed >> 32) % 2 == 0 ? 2 : 3;
        hub.submitCredit(proofs[u][which].credit, proofs[u][which].sig);
        phase[u] = 1;
        delete regs[u];
        receivedThisClose[u] = 0;
    }

    function register(uint256 u, uint256 proof, uint256 lock) external {
        u %= USERS;
        proof %= 4;
        lock %= 2;
        if (phase[u] != 1 || block.number >= hub.channel(users[u]).settleBlock) return;
        Proof storage p = proofs[u][proof];
        if (settlement.lockRegistrationOf(p.digest, p.locks[lock].lockId).amount != 0) return;
        if (p.dir == 0) settlement.registerDebitLock(p.debit, p.sig, p.locks[lock], p.paths[lock]);
        else settlement.registerCreditLock(p.credit, p.sig, p.locks[lock], p.paths[lock]);
        regs[u].push(Reg(proof, lock, false));
    }

    function reveal(uint256 k) external {
        address point = registry.reveal(scalar(k % SCALARS));
        if (revealBlock[point] == 0) revealBlock[point] = block.number;
    }

    function roll(uint256 blocks) external {
        vm.roll(block.number + 1 + blocks % 15);
    }

    function settle(uint256 u) external {
        u %= USERS;
        if (phase[u] != 1 || block.number < hub.channel(users[u]).settleBlock) return;
        uint256 before = token.balanceOf(users[u]);
        settlement.settle(users[u]);
        uint256 got = token.balanceOf(users[u]) - before;
        receivedThisClose[u] += got;
        ghostOut += got;
        phase[u] = 2;
        finishIfResolved(u);
    }

    function unlock(uint256 u, uint256 i) external {
        u %= USERS;
        if (phase[u] != 2 || regs[u].length == 0) return;
        Reg storage r = regs[u][i % regs[u].length];
        if (r.resolved) return;
        InfHubBase.Lock storage l = proofs[u][r.proof].locks[r.lock];
        uint256 at = revealBlock[l.point];
        bool opened = at != 0 && at <= l.expiryBlock;
        if (!opened && block.number <= l.expiryBlock) return;
        uint256 before = token.balanceOf(users[u]);
        settlement.unlock(proofs[u][r.proof].digest, l.lockId);
        uint256 got = token.balanceOf(users[u]) - before;
        receivedThisClose[u] += got;
        ghostOut += got;
        r.resolved = true;
        finishIfResolved(u);
    }

    /// The model: each direction's charge is the largest of the stored total and, over the
    /// proofs registered, the proof's total plus its locks revealed by their expiry.
    function chargeOf(uint256 u, uint8 dir, uint128 stored) internal view returns (uint256 charge) {
        charge = stored;
        for (uint256 slot = 0; slot < 4; slot++) {
            Proof storage p = proofs[u][slot];
            if (p.dir != dir) continue;
            bool any = false;
            uint256 c = p.cumulative;
            for (uint256 i = 0; i < regs[u].length; i++) {
                if (regs[u][i].proof != slot) continue;
                any = true;
                InfHubBase.Lock storage l = p.locks[regs[u][i].lock];
                uint256 at = revealBlock[l.point];
                if (at != 0 && at <= l.expiryBlock) c += l.amount;
            }
            if (any && c > charge) charge = c;
        }
    }

    function finishIfResolved(uint256 u) internal {
        for (uint256 i = 0; i < regs[u].length; i++) {
            if (!regs[u][i].resolved) return;
        }
        InfHubBase.Channel memory ch = hub.channel(users[u]);
        uint256 expected = DEPOSIT + chargeOf(u, 1, ch.credit.cumulative) - chargeOf(u, 0, ch.debit.cumulative);
        if (receivedThisClose[u] != expected) {
            violations++;
            lastViolation = string.concat(
                "user ", vm.toString(u), " received ", vm.toString(receivedThisClose[u]), " expected ", vm.toString(expected)
            );
        }
        completedCloses++;
        vm.startPrank(users[u]);
        hub.openChannel(users[u]);
        hub.deposit(users[u], DEPOSIT);
        vm.stopPrank();
        ghostIn += DEPOSIT;
        phase[u] = 0;
    }

    /// Σ escrow over every direction of every user's current close.
    function sumOfEscrow() external view returns (uint256 sum) {
        for (uint256 u = 0; u < USERS; u++) {
            if (phase[u] != 2) continue;
            uint64 epoch = hub.channel(users[u]).epoch;
            sum += settlement.lockDirectionOf(users[u], epoch, 0).escrow;
            sum += settlement.lockDirectionOf(users[u], epoch, 1).escrow;
        }
    }
}

contract InfHubLocksInvariantTest is Test {
    LocksHandler internal handler;

    function setUp() public {
        vm.roll(1_000);
        handler = new LocksHandler();
    }

    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    /// The token invariant with the escrow term (spec 6.1), and every token in or out accounted.
    function invariant_tokens_equal_reserve_plus_funds_plus_escrow() public view {
        InfHub hub = handler.hub();
        uint256 bal = handler.token().balanceOf(address(hub));
        assertEq(bal, hub.reserve() + hub.totalChannelFunds() + hub.totalEscrow(), "balance == reserve + funds + escrow");
        assertEq(hub.totalEscrow(), handler.sumOfEscrow(), "totalEscrow == sum of the directions' escrow");
        assertEq(bal, handler.ghostIn() - handler.ghostOut(), "balance == tokens in - tokens out");
    }

    /// Every fully resolved close paid its user exactly what the rule says.
    function invariant_every_resolved_close_pays_by_the_rule() public view {
        assertEq(handler.violations(), 0, handler.lastViolation());
    }
}
