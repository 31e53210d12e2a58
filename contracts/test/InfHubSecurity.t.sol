// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {deployHub} from "./utils/DeployHub.sol";
import {InfHubSettlement} from "../src/InfHubSettlement.sol";
import {Fixture} from "./Fixture.sol";
import {InfHub} from "../src/InfHub.sol";
import {InfHubBase} from "../src/InfHubBase.sol";

/// One test per finding of the security review (issue 18), each played by the dishonest party
/// with its own key. Errors are named by string and functions added by the fix are reached with
/// low-level calls, so this file also compiles against the contract before the fix; every test
/// here failed there (checked when the fix was written: see docs/decisions.md, D28).
contract InfHubSecurityTest is Fixture {
    uint64 internal constant MAX_NONCE = type(uint64).max;

    /// Expects the next call to revert with the custom error `name` (no arguments).
    function expectRule(string memory name) internal {
        vm.expectRevert(bytes4(keccak256(bytes(string.concat(name, "()")))));
    }

    function settleAndPaid(address user) internal returns (uint256 paid) {
        InfHubBase.Channel memory ch = hub.channel(user);
        if (block.number < ch.settleBlock) vm.roll(ch.settleBlock);
        uint256 before = token.balanceOf(user);
        InfHubSettlement(address(hub)).settle(user);
        paid = token.balanceOf(user) - before;
        checkAccounting();
    }

    /// Alice deposited 100 and paid Bob 100 (debit nonce 1, total 100); Bob holds the credit.
    function alicePaidBob() internal returns (InfHubBase.Debit memory d1, bytes memory d1sig) {
        open(alice);
        open(bob);
        depositAs(alice, 100);
        fundReserve(1_000);
        d1 = debit(alice, 1, 100, 100);
        d1sig = signDebit(ALICE_PK, d1);
    }

    // ------------------------------------------------------------ finding 1: a user erases her debits

    /// The hub answers Alice's exit with her debit; she then submits a debit of her own with the
    /// highest nonce and a total of 0. Before the fix it replaced the genuine one and she was paid
    /// back what she had paid Bob.
    function test_finding1_user_cannot_erase_her_debit_with_a_higher_nonce_lower_total() public {
        (InfHubBase.Debit memory d1, bytes memory d1sig) = alicePaidBob();
        vm.prank(alice);
        hub.startExit(noCredit(alice), "");
        vm.prank(hubAddr);
        hub.submitDebit(d1, d1sig);
        InfHubBase.Debit memory forged = debit(alice, MAX_NONCE, 0, 1);
        bytes memory forgedSig = signDebit(ALICE_PK, forged);
        vm.prank(alice);
        expectRule("ProofMustSupersede");
        hub.submitDebit(forged, forgedSig);
        assertEq(settleAndPaid(alice), 0, "alice is paid her balance (0), not what she paid bob");
    }

    /// Variant: she front-runs the hub's answer with the forged debit; the hub's genuine debit,
    /// submitted after it, must still count.
    function test_finding1_forged_debit_submitted_first_does_not_block_the_genuine_one() public {
        (InfHubBase.Debit memory d1, bytes memory d1sig) = alicePaidBob();
        vm.prank(alice);
        hub.startExit(noCredit(alice), "");
        InfHubBase.Debit memory forged = debit(alice, MAX_NONCE, 0, 1);
        bytes memory forgedSig = signDebit(ALICE_PK, forged);
        vm.prank(alice);
        hub.submitDebit(forged, forgedSig); // accepted: it raises nothing, total 0 > none
        vm.prank(hubAddr);
        hub.submitDebit(d1, d1sig);
        assertEq(hub.channel(alice).debit.cumulative, 100, "the higher total is stored");
        assertEq(settleAndPaid(alice), 0, "alice is charged her debit");
    }

    /// Variant: the hub realized her debit (moved 100 to the reserve); a forged lower total must
    /// not bring the refund out of the reserve.
    function test_finding1_forged_debit_after_realization_takes_nothing_from_the_reserve() public {
        (InfHubBase.Debit memory d1, bytes memory d1sig) = alicePaidBob();
        vm.prank(hubAddr);
        hub.realizeDebit(d1, d1sig);
        assertEq(hub.reserve(), 1_100, "realized");
        vm.prank(alice);
        hub.startExit(noCredit(alice), "");
        InfHubBase.Debit memory forged = debit(alice, MAX_NONCE, 0, 1);
        bytes memory forgedSig = signDebit(ALICE_PK, forged);
        vm.prank(alice);
        expectRule("ProofMustSupersede");
        hub.submitDebit(forged, forgedSig);
        assertEq(settleAndPaid(alice), 0, "nothing paid");
        assertEq(hub.reserve(), 1_100, "the reserve keeps what alice paid");
    }

    /// A lower-total debit cannot be realized over a higher one either (the floor holds).
    function test_finding1_realization_cannot_lower_the_stored_debit() public {
        (InfHubBase.Debit memory d1, bytes memory d1sig) = alicePaidBob();
        vm.prank(hubAddr);
        hub.realizeDebit(d1, d1sig);
        InfHubBase.Debit memory lower = debit(alice, 2, 50, 1);
        bytes memory lowerSig = signDebit(ALICE_PK, lower);
        vm.prank(hubAddr);
        expectRule("ProofMustSupersede");
        hub.realizeDebit(lower, lowerSig);
    }

    // ------------------------------------------------------------ finding 2: the hub erases credits

    /// The hub closes Alice's channel; her watchtower submits her newest credit (total 80); the hub
    /// then signs a credit with a higher nonce and total 0 and submits it. Before the fix it
    /// replaced hers and she was paid without her received payments.
    function test_finding2_hub_cannot_erase_a_credit_with_a_higher_nonce_lower_total() public {
        open(alice);
        depositAs(alice, 100);
        fundReserve(1_000);
        vm.prank(hubAddr);
        hub.startHubClose(alice, noDebit(alice), "");
        InfHubBase.Credit memory c2 = credit(alice, 2, 80);
        bytes memory c2sig = signCredit(HUB_PK, c2);
        vm.prank(address(0x7070)); // a watchtower
        hub.submitCredit(c2, c2sig);
        InfHubBase.Credit memory erase = credit(alice, MAX_NONCE, 0);
        bytes memory eraseSig = signCredit(HUB_PK, erase);
        vm.prank(hubAddr);
        expectRule("ProofMustSupersede");
        hub.submitCredit(erase, eraseSig);
        assertEq(settleAndPaid(alice), 180, "alice is paid deposits plus her credits");
    }

    /// Variant: the hub starts the close by front-running with its eraser credit... it cannot:
    /// a close by the hub carries only debits; and a user exit with her credit cannot be undone.
    function test_finding2_hub_credit_after_user_exit_cannot_lower_it() public {
        open(alice);
        depositAs(alice, 10);
        fundReserve(1_000);
        InfHubBase.Credit memory c = credit(alice, 3, 500);
        bytes memory cs = signCredit(HUB_PK, c);
        vm.prank(alice);
        hub.startExit(c, cs);
        InfHubBase.Credit memory erase = credit(alice, 4, 499);
        bytes memory eraseSig = signCredit(HUB_PK, erase);
        vm.prank(hubAddr);
        expectRule("ProofMustSupersede");
        hub.submitCredit(erase, eraseSig);
        assertEq(settleAndPaid(alice), 510, "paid with her credit");
    }

    // ------------------------------------------------------------ finding 3: the reserve keeps what closing channels are owed

    /// Alice (deposit 10, credit 500) exits; her claim above her funds (500) is owed by the
    /// reserve. The hub tries to pay everything out to an address it controls, first as a payout
    /// batch, then by a reserve-advanced withdrawal of a colluding channel, then by its announced
    /// reserve withdrawal. Before the fix each succeeded and Alice settled with a shortfall.
    function closingAliceOwed500() internal {
        open(alice);
        open(mallory);
        depositAs(alice, 10);
        fundReserve(600);
        InfHubBase.Credit memory c = credit(alice, 1, 500);
        bytes memory cs = signCredit(HUB_PK, c);
        vm.prank(alice);
        hub.startExit(c, cs);
    }

    function test_finding3_payout_cannot_take_what_a_closing_channel_is_owed() public {
        closingAliceOwed500();
        address[] memory to = new address[](1);
        uint256[] memory amounts = new uint256[](1);
        to[0] = address(0xBAD);
        amounts[0] = 600;
        vm.prank(hubAddr);
        expectRule("ReserveInsufficient");
        hub.payout(keccak256("drain"), to, amounts);
        amounts[0] = 100; // what is not owed may go
        vm.prank(hubAddr);
        hub.payout(keccak256("spare"), to, amounts);
        assertEq(settleAndPaid(alice), 510, "alice is paid in full");
    }

    function test_finding3_reserve_advanced_withdrawal_cannot_take_it() public {
        closingAliceOwed500();
        InfHubBase.Withdrawal memory w = withdrawal(mallory, 600, uint64(block.number + 5));
        bytes memory us = signWithdrawal(MALLORY_PK, w);
        bytes memory hs = signWithdrawal(HUB_PK, w);
        expectRule("ReserveInsufficient");
        hub.withdraw(w, us, hs);
        assertEq(settleAndPaid(alice), 510, "alice is paid in full");
    }

    function test_finding3_reserve_withdrawal_cannot_take_it() public {
        open(alice);
        depositAs(alice, 10);
        fundReserve(600);
        vm.prank(hubAddr);
        hub.announceReserveWithdrawal(600);
        InfHubBase.Credit memory c = credit(alice, 1, 500);
        bytes memory cs = signCredit(HUB_PK, c);
        vm.roll(block.number + NOTICE - 1); // she exits at the last block of the notice
        vm.prank(alice);
        hub.startExit(c, cs);
        vm.roll(block.number + 1);
        vm.prank(hubAddr);
        expectRule("ReserveInsufficient");
        hub.executeReserveWithdrawal(hubAddr);
        assertEq(settleAndPaid(alice), 510, "alice is paid in full");
    }

    /// What is reserved follows the proofs: the hub's answer with Alice's debit lowers her draw,
    /// and settlement releases it.
    function test_finding3_reserved_amount_follows_proofs_and_settlement() public {
        closingAliceOwed500();
        (bool ok, bytes memory ret) = address(hub).staticcall(abi.encodeWithSignature("reservedForClosing()"));
        assertTrue(ok, "reservedForClosing exists");
        assertEq(abi.decode(ret, (uint256)), 500, "claim 510 - funds 10");
        InfHubBase.Debit memory d = debit(alice, 1, 200, 200);
        bytes memory ds = signDebit(ALICE_PK, d);
        vm.prank(hubAddr);
        hub.submitDebit(d, ds);
        (, ret) = address(hub).staticcall(abi.encodeWithSignature("reservedForClosing()"));
        assertEq(abi.decode(ret, (uint256)), 300, "claim 310 - funds 10");
        assertEq(settleAndPaid(alice), 310, "paid");
        (, ret) = address(hub).staticcall(abi.encodeWithSignature("reservedForClosing()"));
        assertEq(abi.decode(ret, (uint256)), 0, "released at settlement");
    }

    // ------------------------------------------------------------ finding 4: the notice's margin and expiry

    function test_finding4_notice_must_be_at_least_twice_the_challenge_period() public {
        try new InfHubSettlement(token, hubAddr, CHALLENGE, CHALLENGE + 1, registry) {
            revert("a notice of the challenge period plus one was accepted");
        } catch (bytes memory err) {
            assertEq(bytes32(bytes4(err)), bytes32(bytes4(keccak256("ReserveNoticeTooShort()"))), "named rule");
        }
    }

    function test_finding4_an_unlocked_reserve_withdrawal_expires() public {
        fundReserve(300);
        vm.prank(hubAddr);
        hub.announceReserveWithdrawal(100);
        vm.roll(block.number + 2 * NOTICE);
        vm.prank(hubAddr);
        expectRule("ReserveWithdrawalExpired");
        hub.executeReserveWithdrawal(hubAddr);
        assertEq(hub.reserve(), 300, "nothing left");
    }

    // ------------------------------------------------------------ finding 7: unsolicited tokens

    /// A plain transfer to the contract is excess: the books still balance, and the hub can move
    /// it into the reserve or return it, with an event.
    function test_finding7_plain_transfers_are_excess_not_an_imbalance() public {
        fundReserve(50);
        vm.prank(mallory);
        token.transfer(address(hub), 7);
        (bool ok, bytes memory ret) = address(hub).staticcall(abi.encodeWithSignature("excess()"));
        assertTrue(ok, "excess() exists");
        assertEq(abi.decode(ret, (uint256)), 7, "counted as excess");
        vm.prank(mallory);
        (ok,) = address(hub).call(abi.encodeWithSignature("returnExcess(address,uint256)", mallory, 3));
        assertTrue(!ok, "only the hub moves excess");
        uint256 before = token.balanceOf(mallory);
        vm.prank(hubAddr);
        (ok,) = address(hub).call(abi.encodeWithSignature("returnExcess(address,uint256)", mallory, 3));
        assertTrue(ok, "returned");
        assertEq(token.balanceOf(mallory), before + 3, "mallory got 3 back");
        vm.prank(hubAddr);
        (ok,) = address(hub).call(abi.encodeWithSignature("returnExcess(address,uint256)", mallory, 5));
        assertTrue(!ok, "no more than the excess");
        vm.prank(hubAddr);
        (ok,) = address(hub).call(abi.encodeWithSignature("excessToReserve()"));
        assertTrue(ok, "moved to the reserve");
        assertEq(hub.reserve(), 54, "reserve took the rest");
        checkAccounting();
    }

    /// Excess can never be mistaken for reserve or funds: a hub payout cannot spend it.
    function test_finding7_excess_is_not_spendable_reserve() public {
        vm.prank(mallory);
        token.transfer(address(hub), 40);
        address[] memory to = new address[](1);
        uint256[] memory amounts = new uint256[](1);
        to[0] = address(0xBAD);
        amounts[0] = 1;
        vm.prank(hubAddr);
        expectRule("ReserveInsufficient");
        hub.payout(keccak256("x"), to, amounts);
    }

    // ------------------------------------------------------------ fuzz: the order of disputes

    /// Any two debits Alice could sign and submit herself in any order around the hub's genuine
    /// newest debit: she is charged at least the genuine total.
    function testFuzz_user_cannot_get_below_the_genuine_debit(uint64 n1, uint128 t1, uint64 n2, uint128 t2, bool first)
        public
    {
        (InfHubBase.Debit memory d1, bytes memory d1sig) = alicePaidBob();
        vm.prank(alice);
        hub.startExit(noCredit(alice), "");
        if (first) {
            vm.prank(hubAddr);
            hub.submitDebit(d1, d1sig);
        }
        InfHubBase.Debit[2] memory forged = [debit(alice, n1, t1, 1), debit(alice, n2, t2, 1)];
        for (uint256 i = 0; i < 2; i++) {
            bytes memory sig = signDebit(ALICE_PK, forged[i]);
            vm.prank(alice);
            (bool ok,) = address(hub).call(abi.encodeCall(InfHub.submitDebit, (forged[i], sig)));
            ok; // accepted or refused, the total can only rise
        }
        if (!first) {
            vm.prank(hubAddr);
            (bool ok,) = address(hub).call(abi.encodeCall(InfHub.submitDebit, (d1, d1sig)));
            ok; // refused only if a higher total is already stored
        }
        assertTrue(hub.channel(alice).debit.cumulative >= 100, "charged at least the genuine debit");
    }

    /// Any credits the hub could sign and submit around Alice's genuine newest credit: she is
    /// credited at least the genuine total.
    function testFuzz_hub_cannot_get_below_the_genuine_credit(uint64 n1, uint128 t1, uint64 n2, uint128 t2, bool first)
        public
    {
        open(alice);
        depositAs(alice, 100);
        vm.prank(hubAddr);
        hub.startHubClose(alice, noDebit(alice), "");
        InfHubBase.Credit memory genuine = credit(alice, 5, 80);
        bytes memory gs = signCredit(HUB_PK, genuine);
        if (first) hub.submitCredit(genuine, gs);
        InfHubBase.Credit[2] memory forged = [credit(alice, n1, t1), credit(alice, n2, t2)];
        for (uint256 i = 0; i < 2; i++) {
            bytes memory sig = signCredit(HUB_PK, forged[i]);
            vm.prank(hubAddr);
            (bool ok,) = address(hub).call(abi.encodeCall(InfHub.submitCredit, (forged[i], sig)));
            ok;
        }
        if (!first) {
            (bool ok,) = address(hub).call(abi.encodeCall(InfHub.submitCredit, (genuine, gs)));
            ok;
        }
        assertTrue(hub.channel(alice).credit.cumulative >= 80, "credited at least the genuine credit");
    }
}
