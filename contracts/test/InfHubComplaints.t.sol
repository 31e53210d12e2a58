// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Fixture} from "./Fixture.sol";
import {InfHub} from "../src/InfHub.sol";
import {checkpointLeafHash} from "./utils/CheckpointLeafHash.sol";

/// Complaints against a checkpoint, the halt they cause, and exit from a checkpoint leaf
/// (spec 5.16). The dishonest party is the hub (it posts a tree whose leaf contradicts a credit
/// it signed) or a user (who complains about an honest leaf, forges the hub's credit or the
/// path, or exits with someone else's leaf): each attempt is refused by the rule it breaks.
contract InfHubComplaintsTest is Fixture {
    event HubHaltedByComplaint(uint64 indexed id, address indexed account, address by);
    event log_named_uint(string key, uint256 val);

    /// Gas of a complaint (a one-level path, a direct hub signature) and of an exit from a
    /// leaf, execution on cold storage (a transaction adds 21,000 and its calldata). The README
    /// quotes these.
    function test_gas_of_a_complaint_and_of_an_exit_from_a_leaf() public {
        setUpChannels();
        InfHub.Credit memory c = credit(alice, 1, 30 ether);
        bytes memory sig = signCredit(HUB_PK, c);
        InfHub.CheckpointLeaf memory a = leafOf(alice, 1, 10 ether, 0);
        InfHub.CheckpointLeaf memory b = leafOf(bob, 2, 5 ether, 0);
        (uint64 id, InfHub.SumNode[] memory pathA, InfHub.SumNode[] memory pathB) = postTwo(a, b);
        vm.cool(address(hub)); // as in a transaction of its own: the contract's storage is cold
        vm.prank(mallory);
        uint256 before = gasleft();
        hub.complainContradictedCredit(id, a, 0, pathA, c, sig);
        uint256 complaint = before - gasleft();
        vm.cool(address(hub));
        vm.prank(bob);
        before = gasleft();
        hub.startExitFromCheckpoint(id, b, 1, pathB);
        uint256 exitGas = before - gasleft();
        emit log_named_uint("complainContradictedCredit gas", complaint);
        emit log_named_uint("startExitFromCheckpoint gas", exitGas);
        assertEq(uint256(hub.haltedAtCheckpoint()), uint256(id));
        assertTrue(complaint < 150_000 && exitGas < 200_000, "complaints and exits stay cheap");
    }

    function leafOf(address account, uint64 creditNonce, uint128 creditTotal, uint128 liability)
        internal
        view
        returns (InfHub.CheckpointLeaf memory l)
    {
        l.account = account;
        l.kind = 0;
        l.epoch = epochOf(account);
        l.deposited = hub.channel(account).deposited;
        l.creditNonce = creditNonce;
        l.creditTotal = creditTotal;
        l.liability = liability;
        l.salt = keccak256(abi.encode(account, creditNonce));
    }

    /// Posts the two-leaf tree (a, b) as the next checkpoint at ledger position 2; returns its
    /// id and each leaf's path.
    function postTwo(InfHub.CheckpointLeaf memory a, InfHub.CheckpointLeaf memory b)
        internal
        returns (uint64 id, InfHub.SumNode[] memory pathA, InfHub.SumNode[] memory pathB)
    {
        return postTwoAt(a, b, 2);
    }

    /// The same at ledger position `seq`: credits of nonce up to `seq` must be counted.
    function postTwoAt(InfHub.CheckpointLeaf memory a, InfHub.CheckpointLeaf memory b, uint64 seq)
        internal
        returns (uint64 id, InfHub.SumNode[] memory pathA, InfHub.SumNode[] memory pathB)
    {
        id = hub.lastCheckpointId() + 1;
        bytes32 ha = checkpointLeafHash(hub, id, a);
        bytes32 hb = checkpointLeafHash(hub, id, b);
        bytes32 root = keccak256(abi.encode(hub.CHECKPOINT_NODE_TAG(), ha, uint256(a.liability), hb, uint256(b.liability)));
        uint256 inflows = hub.liabilityInflowsTotal();
        vm.prank(hubAddr);
        hub.postCheckpoint(id, root, uint256(a.liability) + b.liability, seq, uint64(block.number - 1), inflows);
        pathA = new InfHub.SumNode[](1);
        pathA[0] = InfHub.SumNode(hb, b.liability);
        pathB = new InfHub.SumNode[](1);
        pathB[0] = InfHub.SumNode(ha, a.liability);
        vm.roll(block.number + 1);
    }

    function setUpChannels() internal {
        fundReserve(1_000 ether);
        open(alice);
        open(bob);
        depositAs(alice, 100 ether);
        depositAs(bob, 100 ether);
    }

    function complain(
        uint64 id,
        InfHub.CheckpointLeaf memory l,
        uint256 index,
        InfHub.SumNode[] memory path,
        InfHub.Credit memory c,
        bytes memory sig
    ) internal {
        vm.prank(mallory);
        hub.complainContradictedCredit(id, l, index, path, c, sig);
    }

    function expectComplaintRevert(
        bytes4 err,
        uint64 id,
        InfHub.CheckpointLeaf memory l,
        uint256 index,
        InfHub.SumNode[] memory path,
        InfHub.Credit memory c,
        bytes memory sig
    ) internal {
        vm.prank(mallory);
        vm.expectRevert(err);
        hub.complainContradictedCredit(id, l, index, path, c, sig);
    }

    function test_a_leaf_that_understates_a_signed_credit_halts_the_hub() public {
        setUpChannels();
        InfHub.Credit memory c = credit(alice, 1, 30 ether);
        // The hub signed alice 30 but counts 10 in her leaf (and owes 20 less).
        (uint64 id, InfHub.SumNode[] memory path,) = postTwo(leafOf(alice, 1, 10 ether, 0), leafOf(bob, 0, 0, 0));
        vm.expectEmit(true, true, false, true, address(hub));
        emit HubHaltedByComplaint(id, alice, mallory);
        complain(id, leafOf(alice, 1, 10 ether, 0), 0, path, c, signCredit(HUB_PK, c));
        assertEq(uint256(hub.haltedAtCheckpoint()), uint256(id), "halted at the faulty checkpoint");
        // A second complaint changes nothing but is not refused (anyone may repeat the proof).
        complain(id, leafOf(alice, 1, 10 ether, 0), 0, path, c, signCredit(HUB_PK, c));
        assertEq(uint256(hub.haltedAtCheckpoint()), uint256(id));
    }

    function test_a_halted_hub_cannot_post_pay_out_or_take_the_reserve_while_users_still_exit() public {
        setUpChannels();
        vm.prank(hubAddr);
        hub.announceReserveWithdrawal(100 ether);
        InfHub.Credit memory c = credit(alice, 1, 30 ether);
        (uint64 id, InfHub.SumNode[] memory path,) = postTwo(leafOf(alice, 1, 10 ether, 0), leafOf(bob, 0, 0, 0));
        complain(id, leafOf(alice, 1, 10 ether, 0), 0, path, c, signCredit(HUB_PK, c));

        uint256 inflows = hub.liabilityInflowsTotal();
        vm.startPrank(hubAddr);
        vm.expectRevert(InfHub.HubHalted.selector);
        hub.postCheckpoint(id + 1, bytes32(uint256(1)), 0, 1_000, uint64(block.number - 1), inflows);
        address[] memory to = new address[](1);
        to[0] = mallory;
        uint256[] memory amounts = new uint256[](1);
        amounts[0] = 1 ether;
        vm.expectRevert(InfHub.HubHalted.selector);
        hub.payout(keccak256("drain"), to, amounts);
        vm.roll(block.number + NOTICE + 1);
        vm.expectRevert(InfHub.HubHalted.selector);
        hub.executeReserveWithdrawal(hubAddr);
        vm.stopPrank();
        // A withdrawal the reserve would advance is refused; one from the channel's own funds is not.
        InfHub.Withdrawal memory big = withdrawal(bob, 150 ether, uint64(block.number + 10));
        (bytes memory bigUser, bytes memory bigHub) = (signWithdrawal(BOB_PK, big), signWithdrawal(HUB_PK, big));
        vm.expectRevert(InfHub.HubHalted.selector);
        hub.withdraw(big, bigUser, bigHub);
        InfHub.Withdrawal memory small = withdrawal(bob, 40 ether, uint64(block.number + 10));
        hub.withdraw(small, signWithdrawal(BOB_PK, small), signWithdrawal(HUB_PK, small));
        assertEq(token.balanceOf(bob), 1_000_000 ether - 100 ether + 40 ether, "bob withdrew his own funds");
        // Alice exits with her signed credit and is paid in full: 100 deposited + 30 credited.
        uint256 before = token.balanceOf(alice);
        bytes memory hubSig = signCredit(HUB_PK, c);
        vm.prank(alice);
        hub.startExit(c, hubSig);
        vm.roll(block.number + CHALLENGE + 1);
        hub.settle(alice);
        assertEq(token.balanceOf(alice) - before, 130 ether, "alice is paid her whole balance after the halt");
        checkAccounting();
    }

    /// Credit nonces are ledger positions: a checkpoint at position 10 must count a credit of
    /// nonce 7. A leaf that leaves it out (an older credit, or none) is proved wrong; a credit
    /// of nonce 11 may have come after the checkpoint and proves nothing.
    function test_a_leaf_that_leaves_out_a_credit_before_its_position_halts_the_hub() public {
        setUpChannels();
        InfHub.CheckpointLeaf memory a = leafOf(alice, 4, 10 ether, 0);
        (uint64 id, InfHub.SumNode[] memory path,) = postTwoAt(a, leafOf(bob, 0, 0, 0), 10);
        InfHub.Credit memory after_ = credit(alice, 11, 30 ether);
        expectComplaintRevert(InfHub.ComplaintUnfounded.selector, id, a, 0, path, after_, signCredit(HUB_PK, after_));
        InfHub.Credit memory before_ = credit(alice, 7, 30 ether);
        complain(id, a, 0, path, before_, signCredit(HUB_PK, before_));
        assertEq(uint256(hub.haltedAtCheckpoint()), uint256(id));
    }

    function test_a_lower_nonce_with_a_higher_total_is_a_contradiction() public {
        setUpChannels();
        InfHub.Credit memory c = credit(alice, 2, 25 ether);
        (uint64 id, InfHub.SumNode[] memory path,) = postTwo(leafOf(alice, 3, 20 ether, 0), leafOf(bob, 0, 0, 0));
        complain(id, leafOf(alice, 3, 20 ether, 0), 0, path, c, signCredit(HUB_PK, c));
        assertEq(uint256(hub.haltedAtCheckpoint()), uint256(id));
    }

    function test_complaints_against_an_honest_leaf_are_refused() public {
        setUpChannels();
        InfHub.CheckpointLeaf memory a = leafOf(alice, 2, 30 ether, 0);
        InfHub.CheckpointLeaf memory b = leafOf(bob, 0, 0, 0);
        (uint64 id, InfHub.SumNode[] memory pathA, InfHub.SumNode[] memory pathB) = postTwo(a, b);
        bytes4 unfounded = InfHub.ComplaintUnfounded.selector;
        // The very credit the leaf counts; an older one with a lower total; a newer one (it may
        // have come after the checkpoint).
        InfHub.Credit[3] memory fine = [credit(alice, 2, 30 ether), credit(alice, 1, 10 ether), credit(alice, 3, 50 ether)];
        for (uint256 i = 0; i < fine.length; i++) {
            expectComplaintRevert(unfounded, id, a, 0, pathA, fine[i], signCredit(HUB_PK, fine[i]));
        }
        // Alice's contradicting credit against bob's leaf; a credit of another epoch.
        InfHub.Credit memory c = credit(alice, 2, 99 ether);
        expectComplaintRevert(unfounded, id, b, 1, pathB, c, signCredit(HUB_PK, c));
        InfHub.Credit memory old = credit(alice, 2, 99 ether);
        old.epoch = a.epoch + 1;
        expectComplaintRevert(unfounded, id, a, 0, pathA, old, signCredit(HUB_PK, old));
        assertEq(uint256(hub.haltedAtCheckpoint()), 0, "an honest hub is never halted");
    }

    function test_a_complaint_needs_the_hubs_signature_a_real_path_and_a_posted_checkpoint() public {
        setUpChannels();
        InfHub.CheckpointLeaf memory a = leafOf(alice, 1, 10 ether, 0);
        (uint64 id, InfHub.SumNode[] memory pathA,) = postTwo(a, leafOf(bob, 0, 0, 0));
        InfHub.Credit memory c = credit(alice, 1, 30 ether);
        // A credit the complainer signed herself.
        expectComplaintRevert(InfHub.WrongSigner.selector, id, a, 0, pathA, c, signCredit(MALLORY_PK, c));
        // A leaf altered to contradict (the hub never posted it).
        InfHub.CheckpointLeaf memory forged = leafOf(alice, 1, 5 ether, 0);
        InfHub.Credit memory c10 = credit(alice, 1, 10 ether);
        expectComplaintRevert(InfHub.RootMismatch.selector, id, forged, 0, pathA, c10, signCredit(HUB_PK, c10));
        // The right leaf at the wrong side of the path.
        expectComplaintRevert(InfHub.RootMismatch.selector, id, a, 1, pathA, c, signCredit(HUB_PK, c));
        // A checkpoint never posted.
        expectComplaintRevert(InfHub.CheckpointOutOfOrder.selector, id + 1, a, 0, pathA, c, signCredit(HUB_PK, c));
        assertEq(uint256(hub.haltedAtCheckpoint()), 0);
    }

    /// Whatever the leaf's and the credit's figures, a complaint halts the hub exactly when the
    /// hub-signed credit contradicts the leaf.
    function testFuzz_a_complaint_halts_exactly_on_a_contradiction(
        uint64 leafNonce,
        uint128 leafTotal,
        uint64 creditNonce,
        uint128 creditTotal,
        uint64 seq
    ) public {
        setUpChannels();
        leafNonce = uint64(bound(leafNonce, 0, 5));
        creditNonce = uint64(bound(creditNonce, 1, 8));
        seq = uint64(bound(seq, 0, 8));
        leafTotal = uint128(bound(leafTotal, 0, 100 ether));
        creditTotal = uint128(bound(creditTotal, 0, 100 ether));
        InfHub.CheckpointLeaf memory a = leafOf(alice, leafNonce, leafTotal, 0);
        (uint64 id, InfHub.SumNode[] memory pathA,) = postTwoAt(a, leafOf(bob, 0, 0, 0), seq);
        InfHub.Credit memory c = credit(alice, creditNonce, creditTotal);
        // The spec's rule (5.16), written out independently of the contract's expression.
        bool sameNonceOtherTotal = creditNonce == leafNonce && creditTotal != leafTotal;
        bool higherTotalItHadToCount =
            creditNonce != leafNonce && creditTotal > leafTotal && (creditNonce < leafNonce || creditNonce <= seq);
        bool contradicts = sameNonceOtherTotal || higherTotalItHadToCount;
        vm.prank(mallory);
        (bool ok,) = address(hub).call(
            abi.encodeCall(InfHub.complainContradictedCredit, (id, a, 0, pathA, c, signCredit(HUB_PK, c)))
        );
        assertTrue(ok == contradicts, "halted exactly on a contradiction");
        assertEq(uint256(hub.haltedAtCheckpoint()), contradicts ? uint256(id) : 0);
    }

    function test_a_user_who_lost_her_proofs_exits_with_her_leaf() public {
        setUpChannels();
        // Alice paid bob 20 (a debit the hub holds) and holds a credit of 40 she has lost.
        InfHub.CheckpointLeaf memory a = leafOf(alice, 2, 40 ether, 0);
        a.debitNonce = 1;
        a.debitTotal = 20 ether;
        (uint64 id, InfHub.SumNode[] memory pathA,) = postTwo(a, leafOf(bob, 0, 0, 0));
        // Not bob with alice's leaf; not with a leaf of another kind.
        vm.prank(bob);
        vm.expectRevert(InfHub.UserMismatch.selector);
        hub.startExitFromCheckpoint(id, a, 0, pathA);
        uint256 before = token.balanceOf(alice);
        vm.prank(alice);
        hub.startExitFromCheckpoint(id, a, 0, pathA);
        InfHub.Channel memory ch = hub.channel(alice);
        assertEq(uint256(ch.credit.nonce), 2, "the leaf's credit is on record");
        assertEq(uint256(ch.credit.cumulative), 40 ether);
        // Once closing, not again.
        vm.prank(alice);
        vm.expectRevert(InfHub.ChannelNotOpen.selector);
        hub.startExitFromCheckpoint(id, a, 0, pathA);
        // The hub answers with her signed debit; she is paid 100 + 40 − 20.
        InfHub.Debit memory d = debit(alice, 1, 20 ether, 20 ether);
        hub.submitDebit(d, signDebit(ALICE_PK, d));
        vm.roll(block.number + CHALLENGE + 1);
        hub.settle(alice);
        assertEq(token.balanceOf(alice) - before, 120 ether, "paid by her leaf and her debit");
        checkAccounting();
    }

    function test_a_leaf_of_an_old_epoch_or_a_custodial_leaf_cannot_open_an_exit() public {
        setUpChannels();
        InfHub.CheckpointLeaf memory a = leafOf(alice, 1, 10 ether, 0);
        InfHub.CheckpointLeaf memory k = leafOf(bob, 0, 0, 5 ether);
        k.kind = 1;
        (uint64 id, InfHub.SumNode[] memory pathA, InfHub.SumNode[] memory pathK) = postTwo(a, k);
        vm.prank(bob);
        vm.expectRevert(InfHub.UserMismatch.selector);
        hub.startExitFromCheckpoint(id, k, 1, pathK);
        // Alice's channel moves to a new epoch: her old leaf opens nothing.
        vm.prank(alice);
        hub.startExit(noCredit(alice), "");
        vm.roll(block.number + CHALLENGE + 1);
        hub.settle(alice);
        open(alice);
        vm.prank(alice);
        vm.expectRevert(InfHub.EpochMismatch.selector);
        hub.startExitFromCheckpoint(id, a, 0, pathA);
    }
}
