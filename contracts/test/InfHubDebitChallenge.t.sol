// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {InfHubSettlement} from "../src/InfHubSettlement.sol";
import {CheckpointFixture} from "./CheckpointFixture.sol";
import {InfHub} from "../src/InfHub.sol";
import {InfHubCheckpoints} from "../src/InfHubCheckpoints.sol";
import {InfHubBase} from "../src/InfHubBase.sol";

/// The complaint about a leaf's chain totals and the debit challenge (spec 5.16), and the
/// checkpoint module's plumbing. The dishonest party is the hub (a leaf that hides a deposit,
/// invents a withdrawal or a debit) or a user (who complains about an honest leaf, challenges
/// someone else's, or repeats a challenge the hub answered): each attempt fails by the rule it
/// breaks, and each rule is shown to halt a hub that breaks it.
contract InfHubDebitChallengeTest is CheckpointFixture {
    event DebitChallenged(uint64 indexed id, address indexed account, uint64 epoch, uint128 debitTotal, uint64 answerByBlock);
    event DebitChallengeAnswered(uint64 indexed id, address indexed account, uint64 nonce, uint128 cumulativeDebit);
    event log_named_uint(string key, uint256 val);

    InfHubCheckpoints internal module;

    function setUp() public override {
        super.setUp();
        module = InfHubCheckpoints(address(hub));
        setUpChannels();
        vm.roll(block.number + 1); // the deposits lie before every checkpoint's block
    }

    function noPath() internal pure returns (InfHubBase.SumNode[] memory) {
        return new InfHubBase.SumNode[](0);
    }

    /// A one-leaf checkpoint of `l` (liability 0, so always solvent) at ledger position 2.
    /// Returns its id and the leaf's path (computed before any prank: it reads the contract).
    function postOne(InfHubBase.CheckpointLeaf memory l) internal returns (uint64 id, InfHubBase.SumNode[] memory p) {
        (id, p,) = postTwo(l, leafOf(bob, 0, 0, 0));
    }

    // ------------------------------------------------------------ chain totals

    function test_a_leaf_that_hides_a_deposit_made_before_its_block_halts_the_hub() public {
        InfHubBase.CheckpointLeaf memory a = leafOf(alice, 0, 0, 0);
        a.deposited = 60 ether; // the chain holds 100 since before the checkpoint's block
        (uint64 id, InfHubBase.SumNode[] memory pid) = postOne(a);
        vm.prank(mallory);
        module.complainMisstatedChainTotals(id, a, 0, pid);
        assertEq(uint256(hub.haltedAtCheckpoint()), uint256(id), "halted at the faulty checkpoint");
    }

    function test_a_leaf_that_invents_a_withdrawal_halts_the_hub() public {
        InfHubBase.CheckpointLeaf memory a = leafOf(alice, 0, 0, 0);
        a.withdrawn = 1; // alice never withdrew
        (uint64 id, InfHubBase.SumNode[] memory pid) = postOne(a);
        module.complainMisstatedChainTotals(id, a, 0, pid);
        assertEq(uint256(hub.haltedAtCheckpoint()), uint256(id));
    }

    function test_a_deposit_after_the_checkpoints_block_grounds_no_complaint() public {
        InfHubBase.CheckpointLeaf memory a = leafOf(alice, 0, 0, 0); // deposited 100, honest
        (uint64 id, InfHubBase.SumNode[] memory pid) = postOne(a);
        vm.expectRevert(InfHubBase.ComplaintUnfounded.selector);
        module.complainMisstatedChainTotals(id, a, 0, pid);
        depositAs(alice, 50 ether); // after the checkpoint's block: the leaf could not count it
        vm.expectRevert(InfHubBase.ComplaintUnfounded.selector);
        module.complainMisstatedChainTotals(id, a, 0, pid);
        assertEq(uint256(hub.haltedAtCheckpoint()), 0);
    }

    function test_a_leaf_of_another_epoch_or_kind_grounds_no_chain_totals_complaint() public {
        InfHubBase.CheckpointLeaf memory a = leafOf(alice, 0, 0, 0);
        a.epoch = a.epoch + 1;
        a.deposited = 0;
        (uint64 id, InfHubBase.SumNode[] memory pid) = postOne(a);
        vm.expectRevert(InfHubBase.ComplaintUnfounded.selector);
        module.complainMisstatedChainTotals(id, a, 0, pid);
        InfHubBase.CheckpointLeaf memory k = leafOf(alice, 0, 0, 0);
        k.kind = 1;
        k.deposited = 0;
        (id, pid) = postOne(k);
        vm.expectRevert(InfHubBase.ComplaintUnfounded.selector);
        module.complainMisstatedChainTotals(id, k, 0, pid);
        // A forged leaf (not the posted one) proves nothing.
        InfHubBase.CheckpointLeaf memory forged = leafOf(alice, 0, 0, 0);
        forged.deposited = 1;
        vm.expectRevert(InfHubBase.RootMismatch.selector);
        module.complainMisstatedChainTotals(id, forged, 0, pid);
    }

    /// Whatever the leaf's figures and whether a deposit follows the checkpoint, the complaint
    /// halts exactly when the spec's rule says so.
    function testFuzz_a_chain_totals_complaint_halts_exactly_on_a_contradiction(
        uint128 leafDeposited,
        uint128 leafWithdrawn,
        uint128 withdrawnBefore,
        bool depositAfter
    ) public {
        withdrawnBefore = uint128(bound(withdrawnBefore, 0, 50 ether));
        if (withdrawnBefore > 0) {
            InfHubBase.Withdrawal memory w = withdrawal(alice, withdrawnBefore, uint64(block.number + 5));
            hub.withdraw(w, signWithdrawal(ALICE_PK, w), signWithdrawal(HUB_PK, w));
            vm.roll(block.number + 1);
        }
        InfHubBase.CheckpointLeaf memory a = leafOf(alice, 0, 0, 0);
        a.deposited = uint128(bound(leafDeposited, 0, 200 ether));
        a.withdrawn = uint128(bound(leafWithdrawn, 0, 100 ether));
        (uint64 id, InfHubBase.SumNode[] memory pid) = postOne(a);
        if (depositAfter) depositAs(alice, 1 ether);
        InfHubBase.Channel memory ch = hub.channel(alice);
        bool contradicts = a.withdrawn > withdrawnBefore || (!depositAfter && a.deposited < 100 ether);
        (bool ok,) = address(hub).call(abi.encodeCall(InfHubCheckpoints.complainMisstatedChainTotals, (id, a, 0, pid)));
        assertTrue(ok == contradicts, "halted exactly on a contradiction");
        assertEq(uint256(hub.haltedAtCheckpoint()), contradicts ? uint256(id) : 0);
        assertEq(uint256(ch.withdrawn), uint256(withdrawnBefore));
    }

    // ------------------------------------------------------------ debit challenges

    function leafWithDebit(uint64 nonce, uint128 total) internal view returns (InfHubBase.CheckpointLeaf memory a) {
        a = leafOf(alice, 0, 0, 0);
        a.debitNonce = nonce;
        a.debitTotal = total;
    }

    function test_a_debit_the_hub_cannot_show_halts_it_after_the_period() public {
        // Alice signed 10; the hub's leaf says she paid 25.
        InfHubBase.Debit memory signed = debit(alice, 1, 10 ether, 10 ether);
        bytes memory sig = signDebit(ALICE_PK, signed);
        InfHubBase.CheckpointLeaf memory a = leafWithDebit(2, 25 ether);
        (uint64 id, InfHubBase.SumNode[] memory pid) = postOne(a);
        vm.expectEmit(true, true, false, true, address(hub));
        emit DebitChallenged(id, alice, a.epoch, 25 ether, uint64(block.number) + CHALLENGE);
        vm.prank(alice);
        module.challengeDebit(id, a, 0, pid);
        // What she did sign does not cover the leaf's total.
        vm.prank(hubAddr);
        vm.expectRevert(InfHubBase.AnswerMustCoverDebit.selector);
        module.answerDebitChallenge(signed, sig);
        // Not before the period is over.
        vm.expectRevert(InfHubBase.ChallengePeriodNotOver.selector);
        module.haltOnUnansweredChallenge(alice);
        vm.roll(block.number + CHALLENGE + 1);
        vm.prank(mallory);
        module.haltOnUnansweredChallenge(alice);
        assertEq(uint256(hub.haltedAtCheckpoint()), uint256(id), "halted at the checkpoint with the invented debit");
        vm.expectRevert(InfHubBase.NoDebitChallenge.selector);
        module.haltOnUnansweredChallenge(alice);
    }

    function test_an_answered_challenge_halts_nothing_and_is_not_repeated() public {
        InfHubBase.Debit memory signed = debit(alice, 3, 25 ether, 5 ether);
        bytes memory sig = signDebit(ALICE_PK, signed);
        InfHubBase.CheckpointLeaf memory a = leafWithDebit(2, 20 ether);
        (uint64 id, InfHubBase.SumNode[] memory pid) = postOne(a);
        vm.prank(alice);
        module.challengeDebit(id, a, 0, pid);
        // Mallory signs a debit of alice's: not hers to sign.
        bytes memory mallorys = signDebit(MALLORY_PK, signed);
        vm.expectRevert(InfHubBase.WrongSigner.selector);
        module.answerDebitChallenge(signed, mallorys);
        // A debit she signed in another epoch does not count.
        InfHubBase.Debit memory other = debit(alice, 3, 25 ether, 5 ether);
        other.epoch = other.epoch + 1;
        bytes memory otherSig = signDebit(ALICE_PK, other);
        vm.expectRevert(InfHubBase.EpochMismatch.selector);
        module.answerDebitChallenge(other, otherSig);
        // A later debit of a higher total covers the leaf's (running totals).
        vm.expectEmit(true, true, false, true, address(hub));
        emit DebitChallengeAnswered(id, alice, 3, 25 ether);
        vm.prank(hubAddr);
        module.answerDebitChallenge(signed, sig);
        vm.roll(block.number + CHALLENGE + 1);
        vm.expectRevert(InfHubBase.NoDebitChallenge.selector);
        module.haltOnUnansweredChallenge(alice);
        vm.expectRevert(InfHubBase.NoDebitChallenge.selector);
        module.answerDebitChallenge(signed, sig);
        // The same checkpoint again: refused; the next one: allowed.
        vm.prank(alice);
        vm.expectRevert(InfHubBase.DebitChallengeOutOfOrder.selector);
        module.challengeDebit(id, a, 0, pid);
        (uint64 next, InfHubBase.SumNode[] memory pnext) = postOne(a);
        vm.prank(alice);
        module.challengeDebit(next, a, 0, pnext);
        assertEq(uint256(hub.haltedAtCheckpoint()), 0, "an honest hub is never halted");
    }

    function test_only_the_user_challenges_a_debit_once_at_a_time_and_only_above_zero() public {
        InfHubBase.CheckpointLeaf memory a = leafWithDebit(1, 20 ether);
        (uint64 id, InfHubBase.SumNode[] memory pid) = postOne(a);
        vm.prank(mallory);
        vm.expectRevert(InfHubBase.UserMismatch.selector);
        module.challengeDebit(id, a, 0, pid);
        InfHubBase.CheckpointLeaf memory zero = leafWithDebit(0, 0);
        (uint64 idZero, InfHubBase.SumNode[] memory pidZero) = postOne(zero);
        vm.prank(alice);
        vm.expectRevert(InfHubBase.ComplaintUnfounded.selector);
        module.challengeDebit(idZero, zero, 0, pidZero);
        (uint64 id3, InfHubBase.SumNode[] memory pid3) = postOne(a);
        vm.prank(alice);
        module.challengeDebit(id, a, 0, pid);
        // Open: a newer checkpoint waits until this one is answered or the hub halted.
        vm.prank(alice);
        vm.expectRevert(InfHubBase.DebitChallengeOutOfOrder.selector);
        module.challengeDebit(id3, a, 0, pid3);
        // Answering late is refused: the period is the hub's whole chance.
        InfHubBase.Debit memory signed = debit(alice, 1, 20 ether, 20 ether);
        bytes memory sig = signDebit(ALICE_PK, signed);
        vm.roll(block.number + CHALLENGE + 1);
        vm.expectRevert(InfHubBase.ChallengePeriodOver.selector);
        module.answerDebitChallenge(signed, sig);
        vm.expectRevert(InfHubBase.NoDebitChallenge.selector);
        module.haltOnUnansweredChallenge(bob);
    }

    /// A leaf of an epoch the hub no longer follows, or of a closing channel, cannot be
    /// challenged: the hub's books of it may be gone, and an honest hub must never be halted
    /// for that.
    function test_only_a_leaf_of_the_open_channels_epoch_can_be_challenged() public {
        InfHubBase.CheckpointLeaf memory a = leafWithDebit(1, 20 ether);
        (uint64 id, InfHubBase.SumNode[] memory pid) = postOne(a);
        vm.prank(alice);
        hub.startExit(noCredit(alice), "");
        vm.prank(alice);
        vm.expectRevert(InfHubBase.ChannelNotOpen.selector);
        module.challengeDebit(id, a, 0, pid);
        vm.roll(block.number + CHALLENGE + 1);
        InfHubSettlement(address(hub)).settle(alice);
        open(alice);
        vm.prank(alice);
        vm.expectRevert(InfHubBase.EpochMismatch.selector);
        module.challengeDebit(id, a, 0, pid);
    }

    /// Whatever she signed and whatever the leaf states, the hub's answer is taken exactly
    /// when she signed at least the leaf's total, and otherwise the hub ends halted.
    function testFuzz_a_challenge_is_answered_exactly_by_a_covering_signed_debit(uint128 signedTotal, uint128 leafTotal)
        public
    {
        signedTotal = uint128(bound(signedTotal, 1, 100 ether));
        leafTotal = uint128(bound(leafTotal, 1, 100 ether));
        InfHubBase.Debit memory signed = debit(alice, 1, signedTotal, signedTotal);
        InfHubBase.CheckpointLeaf memory a = leafWithDebit(1, leafTotal);
        (uint64 id, InfHubBase.SumNode[] memory pid) = postOne(a);
        vm.prank(alice);
        module.challengeDebit(id, a, 0, pid);
        (bool answered,) =
            address(hub).call(abi.encodeCall(InfHubCheckpoints.answerDebitChallenge, (signed, signDebit(ALICE_PK, signed))));
        assertTrue(answered == (signedTotal >= leafTotal), "answered exactly by a covering debit");
        vm.roll(block.number + CHALLENGE + 1);
        (bool halted,) = address(hub).call(abi.encodeCall(InfHubCheckpoints.haltOnUnansweredChallenge, (alice)));
        assertTrue(halted == !answered, "halted exactly when unanswered");
        assertEq(uint256(hub.haltedAtCheckpoint()), answered ? 0 : uint256(id));
    }

    /// Gas of a challenge and of its answer (one-level path, cold storage); the README quotes
    /// them.
    function test_gas_of_a_debit_challenge_and_its_answer() public {
        InfHubBase.Debit memory signed = debit(alice, 1, 20 ether, 20 ether);
        bytes memory sig = signDebit(ALICE_PK, signed);
        InfHubBase.CheckpointLeaf memory a = leafWithDebit(1, 20 ether);
        (uint64 id, InfHubBase.SumNode[] memory pid) = postOne(a);
                vm.cool(address(hub));
        vm.prank(alice);
        uint256 before = gasleft();
        module.challengeDebit(id, a, 0, pid);
        uint256 challengeGas = before - gasleft();
        vm.cool(address(hub));
        vm.prank(hubAddr);
        before = gasleft();
        module.answerDebitChallenge(signed, sig);
        uint256 answerGas = before - gasleft();
        emit log_named_uint("challengeDebit gas", challengeGas);
        emit log_named_uint("answerDebitChallenge gas", answerGas);
        assertTrue(challengeGas < 150_000 && answerGas < 100_000, "challenges and answers stay cheap");
    }

    // ------------------------------------------------------------ the module

    function test_the_module_runs_only_what_exists_and_touches_only_its_own_storage_when_called_directly()
        public
    {
        (bool ok, bytes memory ret) = address(hub).call(abi.encodeWithSignature("noSuchFunction()"));
        assertTrue(!ok && ret.length == 0, "an unknown selector reverts without data");
        InfHubCheckpoints direct = InfHubCheckpoints(InfHub(address(hub)).checkpointModule());
        vm.prank(hubAddr);
        direct.postCheckpoint(1, bytes32(uint256(1)), 0, 1, uint64(block.number - 1), 0);
        assertEq(uint256(direct.lastCheckpointId()), 1, "the module's own storage");
        assertEq(uint256(hub.lastCheckpointId()), 0, "the hub contract's checkpoints are untouched");
        assertEq(token.balanceOf(address(direct)), 0, "the module holds nothing");
    }
}
