// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {InfHubSettlement} from "../src/InfHubSettlement.sol";
import {CheckpointFixture} from "./CheckpointFixture.sol";
import {InfHub} from "../src/InfHub.sol";
import {InfHubCheckpoints} from "../src/InfHubCheckpoints.sol";
import {InfHubBase} from "../src/InfHubBase.sol";
import {checkpointLeafHash} from "./utils/CheckpointLeafHash.sol";

/// Complaints against a checkpoint, the halt they cause, and exit from a checkpoint leaf
/// (spec 5.16). The dishonest party is the hub (it posts a tree whose leaf contradicts a credit
/// it signed) or a user (who complains about an honest leaf, forges the hub's credit or the
/// path, or exits with someone else's leaf): each attempt is refused by the rule it breaks.
contract InfHubComplaintsTest is CheckpointFixture {
    event HubHaltedByComplaint(uint64 indexed id, address indexed account, address by);
    event log_named_uint(string key, uint256 val);

    /// Gas of a complaint (a one-level path, a direct hub signature) and of an exit from a
    /// leaf, execution on cold storage (a transaction adds 21,000 and its calldata). The README
    /// quotes these.
    function test_gas_of_a_complaint_and_of_an_exit_from_a_leaf() public {
        setUpChannels();
        InfHubBase.Credit memory c = credit(alice, 1, 30 ether);
        bytes memory sig = signCredit(HUB_PK, c);
        InfHubBase.CheckpointLeaf memory a = leafOf(alice, 1, 10 ether, 0);
        InfHubBase.CheckpointLeaf memory b = leafOf(bob, 2, 5 ether, 0);
        (uint64 id, InfHubBase.SumNode[] memory pathA, InfHubBase.SumNode[] memory pathB) = postTwo(a, b);
        vm.cool(address(hub)); // as in a transaction of its own: the contract's storage is cold
        vm.prank(mallory);
        uint256 before = gasleft();
        InfHubCheckpoints(address(hub)).complainContradictedCredit(id, a, 0, pathA, c, sig);
        uint256 complaint = before - gasleft();
        vm.cool(address(hub));
        vm.prank(bob);
        before = gasleft();
        InfHubCheckpoints(address(hub)).startExitFromCheckpoint(id, b, 1, pathB);
        uint256 exitGas = before - gasleft();
        emit log_named_uint("complainContradictedCredit gas", complaint);
        emit log_named_uint("startExitFromCheckpoint gas", exitGas);
        assertEq(uint256(hub.haltedAtCheckpoint()), uint256(id));
        assertTrue(complaint < 150_000 && exitGas < 200_000, "complaints and exits stay cheap");
    }

    function complain(
        uint64 id,
        InfHubBase.CheckpointLeaf memory l,
        uint256 index,
        InfHubBase.SumNode[] memory path,
        InfHubBase.Credit memory c,
        bytes memory sig
    ) internal {
        vm.prank(mallory);
        InfHubCheckpoints(address(hub)).complainContradictedCredit(id, l, index, path, c, sig);
    }

    function expectComplaintRevert(
        bytes4 err,
        uint64 id,
        InfHubBase.CheckpointLeaf memory l,
        uint256 index,
        InfHubBase.SumNode[] memory path,
        InfHubBase.Credit memory c,
        bytes memory sig
    ) internal {
        vm.prank(mallory);
        vm.expectRevert(err);
        InfHubCheckpoints(address(hub)).complainContradictedCredit(id, l, index, path, c, sig);
    }

    function test_a_leaf_that_understates_a_signed_credit_halts_the_hub() public {
        setUpChannels();
        InfHubBase.Credit memory c = credit(alice, 1, 30 ether);
        // The hub signed alice 30 but counts 10 in her leaf (and owes 20 less).
        (uint64 id, InfHubBase.SumNode[] memory path,) = postTwo(leafOf(alice, 1, 10 ether, 0), leafOf(bob, 0, 0, 0));
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
        InfHubBase.Credit memory c = credit(alice, 1, 30 ether);
        (uint64 id, InfHubBase.SumNode[] memory path,) = postTwo(leafOf(alice, 1, 10 ether, 0), leafOf(bob, 0, 0, 0));
        complain(id, leafOf(alice, 1, 10 ether, 0), 0, path, c, signCredit(HUB_PK, c));

        uint256 inflows = hub.liabilityInflowsTotal();
        vm.startPrank(hubAddr);
        vm.expectRevert(InfHubBase.HubHalted.selector);
        InfHubCheckpoints(address(hub)).postCheckpoint(id + 1, bytes32(uint256(1)), 0, 1_000, uint64(block.number - 1), inflows);
        address[] memory to = new address[](1);
        to[0] = mallory;
        uint256[] memory amounts = new uint256[](1);
        amounts[0] = 1 ether;
        vm.expectRevert(InfHubBase.HubHalted.selector);
        hub.payout(keccak256("drain"), to, amounts);
        vm.roll(block.number + NOTICE + 1);
        vm.expectRevert(InfHubBase.HubHalted.selector);
        hub.executeReserveWithdrawal(hubAddr);
        vm.stopPrank();
        // A withdrawal the reserve would advance is refused; one from the channel's own funds is not.
        InfHubBase.Withdrawal memory big = withdrawal(bob, 150 ether, uint64(block.number + 10));
        (bytes memory bigUser, bytes memory bigHub) = (signWithdrawal(BOB_PK, big), signWithdrawal(HUB_PK, big));
        vm.expectRevert(InfHubBase.HubHalted.selector);
        hub.withdraw(big, bigUser, bigHub);
        InfHubBase.Withdrawal memory small = withdrawal(bob, 40 ether, uint64(block.number + 10));
        hub.withdraw(small, signWithdrawal(BOB_PK, small), signWithdrawal(HUB_PK, small));
        assertEq(token.balanceOf(bob), 1_000_000 ether - 100 ether + 40 ether, "bob withdrew his own funds");
        // Alice exits with her signed credit and is paid in full: 100 deposited + 30 credited.
        uint256 before = token.balanceOf(alice);
        bytes memory hubSig = signCredit(HUB_PK, c);
        vm.prank(alice);
        hub.startExit(c, hubSig);
        vm.roll(block.number + CHALLENGE + 1);
        InfHubSettlement(address(hub)).settle(alice);
        assertEq(token.balanceOf(alice) - before, 130 ether, "alice is paid her whole balance after the halt");
        checkAccounting();
    }

    /// Credit nonces are ledger positions: a checkpoint at position 10 must count a credit of
    /// nonce 7. A leaf that leaves it out (an older credit, or none) is proved wrong; a credit
    /// of nonce 11 may have come after the checkpoint and proves nothing.
    function test_a_leaf_that_leaves_out_a_credit_before_its_position_halts_the_hub() public {
        setUpChannels();
        InfHubBase.CheckpointLeaf memory a = leafOf(alice, 4, 10 ether, 0);
        (uint64 id, InfHubBase.SumNode[] memory path,) = postTwoAt(a, leafOf(bob, 0, 0, 0), 10);
        InfHubBase.Credit memory after_ = credit(alice, 11, 30 ether);
        expectComplaintRevert(InfHubBase.ComplaintUnfounded.selector, id, a, 0, path, after_, signCredit(HUB_PK, after_));
        InfHubBase.Credit memory before_ = credit(alice, 7, 30 ether);
        complain(id, a, 0, path, before_, signCredit(HUB_PK, before_));
        assertEq(uint256(hub.haltedAtCheckpoint()), uint256(id));
    }

    function test_a_lower_nonce_with_a_higher_total_is_a_contradiction() public {
        setUpChannels();
        InfHubBase.Credit memory c = credit(alice, 2, 25 ether);
        (uint64 id, InfHubBase.SumNode[] memory path,) = postTwo(leafOf(alice, 3, 20 ether, 0), leafOf(bob, 0, 0, 0));
        complain(id, leafOf(alice, 3, 20 ether, 0), 0, path, c, signCredit(HUB_PK, c));
        assertEq(uint256(hub.haltedAtCheckpoint()), uint256(id));
    }

    function test_complaints_against_an_honest_leaf_are_refused() public {
        setUpChannels();
        InfHubBase.CheckpointLeaf memory a = leafOf(alice, 2, 30 ether, 0);
        InfHubBase.CheckpointLeaf memory b = leafOf(bob, 0, 0, 0);
        (uint64 id, InfHubBase.SumNode[] memory pathA, InfHubBase.SumNode[] memory pathB) = postTwo(a, b);
        bytes4 unfounded = InfHubBase.ComplaintUnfounded.selector;
        // The very credit the leaf counts; an older one with a lower total; a newer one (it may
        // have come after the checkpoint).
        InfHubBase.Credit[3] memory fine = [credit(alice, 2, 30 ether), credit(alice, 1, 10 ether), credit(alice, 3, 50 ether)];
        for (uint256 i = 0; i < fine.length; i++) {
            expectComplaintRevert(unfounded, id, a, 0, pathA, fine[i], signCredit(HUB_PK, fine[i]));
        }
        // Alice's contradicting credit against bob's leaf; a credit of another epoch.
        InfHubBase.Credit memory c = credit(alice, 2, 99 ether);
        expectComplaintRevert(unfounded, id, b, 1, pathB, c, signCredit(HUB_PK, c));
        InfHubBase.Credit memory old = credit(alice, 2, 99 ether);
        old.epoch = a.epoch + 1;
        expectComplaintRevert(unfounded, id, a, 0, pathA, old, signCredit(HUB_PK, old));
        assertEq(uint256(hub.haltedAtCheckpoint()), 0, "an honest hub is never halted");
    }

    function test_a_complaint_needs_the_hubs_signature_a_real_path_and_a_posted_checkpoint() public {
        setUpChannels();
        InfHubBase.CheckpointLeaf memory a = leafOf(alice, 1, 10 ether, 0);
        (uint64 id, InfHubBase.SumNode[] memory pathA,) = postTwo(a, leafOf(bob, 0, 0, 0));
        InfHubBase.Credit memory c = credit(alice, 1, 30 ether);
        // A credit the complainer signed herself.
        expectComplaintRevert(InfHubBase.WrongSigner.selector, id, a, 0, pathA, c, signCredit(MALLORY_PK, c));
        // A leaf altered to contradict (the hub never posted it).
        InfHubBase.CheckpointLeaf memory forged = leafOf(alice, 1, 5 ether, 0);
        InfHubBase.Credit memory c10 = credit(alice, 1, 10 ether);
        expectComplaintRevert(InfHubBase.RootMismatch.selector, id, forged, 0, pathA, c10, signCredit(HUB_PK, c10));
        // The right leaf at the wrong side of the path.
        expectComplaintRevert(InfHubBase.RootMismatch.selector, id, a, 1, pathA, c, signCredit(HUB_PK, c));
        // A checkpoint never posted.
        expectComplaintRevert(InfHubBase.CheckpointOutOfOrder.selector, id + 1, a, 0, pathA, c, signCredit(HUB_PK, c));
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
        InfHubBase.CheckpointLeaf memory a = leafOf(alice, leafNonce, leafTotal, 0);
        (uint64 id, InfHubBase.SumNode[] memory pathA,) = postTwoAt(a, leafOf(bob, 0, 0, 0), seq);
        InfHubBase.Credit memory c = credit(alice, creditNonce, creditTotal);
        // The spec's rule (5.16), written out independently of the contract's expression.
        bool sameNonceOtherTotal = creditNonce == leafNonce && creditTotal != leafTotal;
        bool higherTotalItHadToCount =
            creditNonce != leafNonce && creditTotal > leafTotal && (creditNonce < leafNonce || creditNonce <= seq);
        bool contradicts = sameNonceOtherTotal || higherTotalItHadToCount;
        vm.prank(mallory);
        (bool ok,) = address(hub).call(
            abi.encodeCall(InfHubCheckpoints.complainContradictedCredit, (id, a, 0, pathA, c, signCredit(HUB_PK, c)))
        );
        assertTrue(ok == contradicts, "halted exactly on a contradiction");
        assertEq(uint256(hub.haltedAtCheckpoint()), contradicts ? uint256(id) : 0);
    }

    function test_a_user_who_lost_her_proofs_exits_with_her_leaf() public {
        setUpChannels();
        // Alice paid bob 20 (a debit the hub holds) and holds a credit of 40 she has lost.
        InfHubBase.CheckpointLeaf memory a = leafOf(alice, 2, 40 ether, 0);
        a.debitNonce = 1;
        a.debitTotal = 20 ether;
        (uint64 id, InfHubBase.SumNode[] memory pathA,) = postTwo(a, leafOf(bob, 0, 0, 0));
        // Not bob with alice's leaf; not with a leaf of another kind.
        vm.prank(bob);
        vm.expectRevert(InfHubBase.UserMismatch.selector);
        InfHubCheckpoints(address(hub)).startExitFromCheckpoint(id, a, 0, pathA);
        uint256 before = token.balanceOf(alice);
        vm.prank(alice);
        InfHubCheckpoints(address(hub)).startExitFromCheckpoint(id, a, 0, pathA);
        InfHubBase.Channel memory ch = hub.channel(alice);
        assertEq(uint256(ch.credit.nonce), 2, "the leaf's credit is on record");
        assertEq(uint256(ch.credit.cumulative), 40 ether);
        // Once closing, not again.
        vm.prank(alice);
        vm.expectRevert(InfHubBase.ChannelNotOpen.selector);
        InfHubCheckpoints(address(hub)).startExitFromCheckpoint(id, a, 0, pathA);
        // The hub answers with her signed debit; she is paid 100 + 40 − 20.
        InfHubBase.Debit memory d = debit(alice, 1, 20 ether, 20 ether);
        hub.submitDebit(d, signDebit(ALICE_PK, d));
        vm.roll(block.number + CHALLENGE + 1);
        InfHubSettlement(address(hub)).settle(alice);
        assertEq(token.balanceOf(alice) - before, 120 ether, "paid by her leaf and her debit");
        checkAccounting();
    }

    function test_a_leaf_of_an_old_epoch_or_a_custodial_leaf_cannot_open_an_exit() public {
        setUpChannels();
        InfHubBase.CheckpointLeaf memory a = leafOf(alice, 1, 10 ether, 0);
        InfHubBase.CheckpointLeaf memory k = leafOf(bob, 0, 0, 5 ether);
        k.kind = 1;
        (uint64 id, InfHubBase.SumNode[] memory pathA, InfHubBase.SumNode[] memory pathK) = postTwo(a, k);
        vm.prank(bob);
        vm.expectRevert(InfHubBase.UserMismatch.selector);
        InfHubCheckpoints(address(hub)).startExitFromCheckpoint(id, k, 1, pathK);
        // Alice's channel moves to a new epoch: her old leaf opens nothing.
        vm.prank(alice);
        hub.startExit(noCredit(alice), "");
        vm.roll(block.number + CHALLENGE + 1);
        InfHubSettlement(address(hub)).settle(alice);
        open(alice);
        vm.prank(alice);
        vm.expectRevert(InfHubBase.EpochMismatch.selector);
        InfHubCheckpoints(address(hub)).startExitFromCheckpoint(id, a, 0, pathA);
    }
}
