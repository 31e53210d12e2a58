// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {InfHubSettlement} from "../src/InfHubSettlement.sol";
import {Fixture} from "./Fixture.sol";
import {InfHub} from "../src/InfHub.sol";
import {InfHubBase} from "../src/InfHubBase.sol";

/// `realizeDebits`: the hub's batched realization (spec 5.6). Each test plays the hub sending a
/// batch at the worst moment (resent, reordered, stale, for a closing channel) or a party trying
/// to move money it may not.
contract InfHubRealizeTest is Fixture {
    function setUp() public override {
        super.setUp();
        open(alice);
        open(bob);
        open(mallory);
        depositAs(alice, 100 ether);
        depositAs(bob, 50 ether);
        fundReserve(1_000 ether);
    }

    function one(InfHubBase.Debit memory d, bytes memory sig)
        internal
        pure
        returns (InfHubBase.Debit[] memory ds, bytes[] memory sigs)
    {
        ds = new InfHubBase.Debit[](1);
        sigs = new bytes[](1);
        ds[0] = d;
        sigs[0] = sig;
    }

    function two(InfHubBase.Debit memory a, bytes memory asig, InfHubBase.Debit memory b, bytes memory bsig)
        internal
        pure
        returns (InfHubBase.Debit[] memory ds, bytes[] memory sigs)
    {
        ds = new InfHubBase.Debit[](2);
        sigs = new bytes[](2);
        (ds[0], ds[1]) = (a, b);
        (sigs[0], sigs[1]) = (asig, bsig);
    }

    function realizeAsHub(InfHubBase.Debit[] memory ds, bytes[] memory sigs) internal {
        vm.prank(hubAddr);
        hub.realizeDebits(ds, sigs);
    }

    function test_a_batch_moves_each_payers_unrealized_debit_into_the_reserve() public {
        InfHubBase.Debit memory a = debit(alice, 1, 30 ether, 30 ether);
        InfHubBase.Debit memory b = debit(bob, 1, 20 ether, 20 ether);
        (InfHubBase.Debit[] memory ds, bytes[] memory sigs) = two(a, signDebit(ALICE_PK, a), b, signDebit(BOB_PK, b));
        uint256 reserveBefore = hub.reserve();
        vm.expectEmit(true, false, false, true, address(hub));
        emit InfHubBase.DebitRealized(alice, 1, 1, 30 ether, 30 ether, reserveBefore + 30 ether);
        vm.expectEmit(true, false, false, true, address(hub));
        emit InfHubBase.DebitRealized(bob, 1, 1, 20 ether, 20 ether, reserveBefore + 50 ether);
        realizeAsHub(ds, sigs);
        assertEq(hub.reserve(), reserveBefore + 50 ether, "hub.reserve()");
        assertEq(hub.channel(alice).realizedDebit, 30 ether, "hub.channel(alice).realizedDebit");
        assertEq(hub.channel(bob).realizedDebit, 20 ether, "hub.channel(bob).realizedDebit");
        assertEq(hub.channel(alice).debit.cumulative, 30 ether, "the debit is stored as the floor");
        checkAccounting();
    }

    function test_a_resent_batch_moves_nothing_more_and_does_not_revert() public {
        InfHubBase.Debit memory a = debit(alice, 1, 30 ether, 30 ether);
        (InfHubBase.Debit[] memory ds, bytes[] memory sigs) = one(a, signDebit(ALICE_PK, a));
        realizeAsHub(ds, sigs);
        uint256 reserveBefore = hub.reserve();
        vm.recordLogs();
        realizeAsHub(ds, sigs);
        assertEq(vm.getRecordedLogs().length, 0, "a realization already done emits nothing");
        assertEq(hub.reserve(), reserveBefore, "hub.reserve()");
        assertEq(hub.channel(alice).realizedDebit, 30 ether, "hub.channel(alice).realizedDebit");
    }

    function test_an_older_debit_in_a_batch_realizes_against_the_stored_one() public {
        InfHubBase.Debit memory newer = debit(alice, 2, 60 ether, 30 ether);
        InfHubBase.Debit memory older = debit(alice, 1, 30 ether, 30 ether);
        (InfHubBase.Debit[] memory ds, bytes[] memory sigs) = one(newer, signDebit(ALICE_PK, newer));
        // Alice's funds cover only part: a withdrawal of 80 leaves 20 in the channel.
        InfHubBase.Withdrawal memory w = withdrawal(alice, 80 ether, uint64(block.number + 10));
        hub.withdraw(w, signWithdrawal(ALICE_PK, w), signWithdrawal(HUB_PK, w));
        realizeAsHub(ds, sigs);
        assertEq(hub.channel(alice).realizedDebit, 20 ether, "moves at most the channel's funds");
        depositAs(alice, 25 ether);
        // The hub's batch still carries the older debit (sent before it learned the newer one):
        // the stored, newer debit stands and the rest of it is realized.
        (ds, sigs) = one(older, signDebit(ALICE_PK, older));
        realizeAsHub(ds, sigs);
        assertEq(hub.channel(alice).realizedDebit, 45 ether, "hub.channel(alice).realizedDebit");
        assertEq(hub.channel(alice).debit.cumulative, 60 ether, "an older debit never replaces the stored one");
        checkAccounting();
    }

    function test_closing_and_stale_epoch_entries_are_skipped() public {
        InfHubBase.Debit memory a = debit(alice, 1, 30 ether, 30 ether);
        InfHubBase.Debit memory b = debit(bob, 1, 20 ether, 20 ether);
        bytes memory asig = signDebit(ALICE_PK, a);
        vm.prank(alice);
        hub.startExit(noCredit(alice), "");
        b.epoch = 7; // not Bob's epoch
        (InfHubBase.Debit[] memory ds, bytes[] memory sigs) = two(a, asig, b, signDebit(BOB_PK, b));
        uint256 reserveBefore = hub.reserve();
        vm.recordLogs();
        realizeAsHub(ds, sigs);
        assertEq(vm.getRecordedLogs().length, 0, "vm.getRecordedLogs().length");
        assertEq(hub.reserve(), reserveBefore, "hub.reserve()");
        assertEq(hub.channel(alice).realizedDebit, 0, "hub.channel(alice).realizedDebit");
        assertEq(hub.channel(alice).debit.cumulative, 0, "a closing channel's debit is submitted by submitDebit");
    }

    function test_a_debit_not_signed_by_its_user_reverts_the_whole_batch() public {
        InfHubBase.Debit memory a = debit(alice, 1, 30 ether, 30 ether);
        InfHubBase.Debit memory b = debit(bob, 1, 20 ether, 20 ether);
        // The hub cannot raise Bob's debit with its own key (or Mallory's).
        (InfHubBase.Debit[] memory ds, bytes[] memory sigs) = two(a, signDebit(ALICE_PK, a), b, signDebit(HUB_PK, b));
        vm.prank(hubAddr);
        vm.expectRevert(InfHubBase.WrongSigner.selector);
        hub.realizeDebits(ds, sigs);
        sigs[1] = signDebit(MALLORY_PK, b);
        vm.prank(hubAddr);
        vm.expectRevert(InfHubBase.WrongSigner.selector);
        hub.realizeDebits(ds, sigs);
        assertEq(hub.channel(alice).realizedDebit, 0, "nothing of a reverted batch stays");
    }

    function test_a_debit_moved_to_another_user_reverts() public {
        InfHubBase.Debit memory a = debit(alice, 1, 30 ether, 30 ether);
        bytes memory asig = signDebit(ALICE_PK, a);
        a.user = bob; // Alice's signature on a debit presented as Bob's
        a.epoch = epochOf(bob);
        (InfHubBase.Debit[] memory ds, bytes[] memory sigs) = one(a, asig);
        vm.prank(hubAddr);
        vm.expectRevert(InfHubBase.WrongSigner.selector);
        hub.realizeDebits(ds, sigs);
    }

    function test_only_the_hub_realizes() public {
        InfHubBase.Debit memory a = debit(alice, 1, 30 ether, 30 ether);
        (InfHubBase.Debit[] memory ds, bytes[] memory sigs) = one(a, signDebit(ALICE_PK, a));
        vm.prank(alice);
        vm.expectRevert(InfHubBase.OnlyHub.selector);
        hub.realizeDebits(ds, sigs);
    }

    function test_batch_shape_is_checked() public {
        InfHubBase.Debit[] memory none = new InfHubBase.Debit[](0);
        vm.startPrank(hubAddr);
        vm.expectRevert(InfHubBase.BatchEmpty.selector);
        hub.realizeDebits(none, new bytes[](0));
        vm.expectRevert(InfHubBase.BatchLengthMismatch.selector);
        hub.realizeDebits(new InfHubBase.Debit[](1), new bytes[](2));
        uint256 max = hub.MAX_REALIZE_BATCH();
        vm.expectRevert(InfHubBase.BatchTooLarge.selector);
        hub.realizeDebits(new InfHubBase.Debit[](max + 1), new bytes[](max + 1));
        vm.stopPrank();
    }

    function test_a_realized_debit_is_the_floor_of_a_later_exit() public {
        InfHubBase.Debit memory a = debit(alice, 1, 30 ether, 30 ether);
        (InfHubBase.Debit[] memory ds, bytes[] memory sigs) = one(a, signDebit(ALICE_PK, a));
        realizeAsHub(ds, sigs);
        vm.prank(alice);
        hub.startExit(noCredit(alice), "");
        vm.roll(block.number + CHALLENGE);
        uint256 before = token.balanceOf(alice);
        InfHubSettlement(address(hub)).settle(alice);
        assertEq(token.balanceOf(alice) - before, 70 ether, "her exit pays deposit minus the realized debit");
        checkAccounting();
    }

    /// Whatever the amounts, funds and order, a batch only moves tokens from the payers' funds
    /// into the reserve, at most what each signed and at most what each channel holds, and no
    /// claim changes.
    function testFuzz_a_batch_moves_only_signed_debits_within_funds(
        uint128 aliceDebit,
        uint128 bobDebit,
        uint128 aliceWithdrawn,
        bool swap,
        bool repeat
    ) public {
        aliceDebit = uint128(bound(aliceDebit, 1, 100 ether));
        bobDebit = uint128(bound(bobDebit, 1, 50 ether));
        aliceWithdrawn = uint128(bound(aliceWithdrawn, 0, 100 ether - aliceDebit));
        if (aliceWithdrawn != 0) {
            InfHubBase.Withdrawal memory w = withdrawal(alice, aliceWithdrawn, uint64(block.number + 10));
            hub.withdraw(w, signWithdrawal(ALICE_PK, w), signWithdrawal(HUB_PK, w));
        }
        InfHubBase.Debit memory a = debit(alice, 1, aliceDebit, aliceDebit);
        InfHubBase.Debit memory b = debit(bob, 1, bobDebit, bobDebit);
        (InfHubBase.Debit[] memory ds, bytes[] memory sigs) = swap
            ? two(b, signDebit(BOB_PK, b), a, signDebit(ALICE_PK, a))
            : two(a, signDebit(ALICE_PK, a), b, signDebit(BOB_PK, b));
        uint256 aliceFunds = 100 ether - uint256(aliceWithdrawn);
        uint256 reserveBefore = hub.reserve();
        uint256 fundsBefore = hub.totalChannelFunds();
        realizeAsHub(ds, sigs);
        if (repeat) realizeAsHub(ds, sigs);
        uint256 aliceMoved = aliceDebit < aliceFunds ? aliceDebit : aliceFunds;
        assertEq(hub.channel(alice).realizedDebit, aliceMoved, "hub.channel(alice).realizedDebit");
        assertEq(hub.channel(bob).realizedDebit, bobDebit, "hub.channel(bob).realizedDebit");
        assertEq(hub.reserve() - reserveBefore, aliceMoved + bobDebit, "the reserve gains what moved");
        assertEq(fundsBefore - hub.totalChannelFunds(), aliceMoved + bobDebit, "from the channels' funds");
        checkAccounting();
    }
}
