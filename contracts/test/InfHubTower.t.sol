// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {InfHubSettlement} from "../src/InfHubSettlement.sol";
import {Fixture} from "./Fixture.sol";
import {InfHub} from "../src/InfHub.sol";
import {InfHubBase} from "../src/InfHubBase.sol";

/// The watchtower fee path (spec 5.10a): a tower that submits a credit raising a user's claim
/// in a close earns the share of the rise the user offered, capped by the offer, by the gain and
/// by the claim, paid at settlement; every way a tower, the hub or a stranger could misuse an
/// offer is refused with the rule it breaks.
contract InfHubTowerTest is Fixture {
    address internal towerA = address(0x7A);
    address internal towerB = address(0x7B);

    /// Alice deposits 100; the hub closes her channel with no credit on record (a stale close:
    /// she holds newer hub credits) and her debit of `debitTotal`.
    function staleHubClose(uint128 debitTotal) internal {
        open(alice);
        depositAs(alice, 100 ether);
        fundReserve(1_000 ether);
        InfHubBase.Debit memory d = debitTotal == 0 ? noDebit(alice) : debit(alice, 1, debitTotal, debitTotal);
        bytes memory ds = debitTotal == 0 ? bytes("") : signDebit(ALICE_PK, d);
        vm.prank(hubAddr);
        hub.startHubClose(alice, d, ds);
    }

    function defend(address tower_, uint64 nonce, uint128 total, InfHubBase.TowerFee memory offer, bytes memory offerSig)
        internal
    {
        InfHubBase.Credit memory c = credit(alice, nonce, total);
        bytes memory cs = signCredit(HUB_PK, c);
        vm.prank(tower_);
        hub.submitCreditForFee(c, cs, offer, offerSig);
    }

    function settleAlice() internal returns (uint256 toAlice, uint256 toA, uint256 toB) {
        vm.roll(hub.channel(alice).settleBlock);
        uint256 a = token.balanceOf(alice);
        uint256 ta = token.balanceOf(towerA);
        uint256 tb = token.balanceOf(towerB);
        InfHubSettlement(address(hub)).settle(alice);
        checkAccounting();
        return (token.balanceOf(alice) - a, token.balanceOf(towerA) - ta, token.balanceOf(towerB) - tb);
    }

    function test_a_tower_that_raises_the_claim_earns_its_share_and_the_user_gets_the_rest() public {
        staleHubClose(0);
        InfHubBase.TowerFee memory offer = towerOffer(alice, towerA, 3 ether, 1_000, 10_000);
        defend(towerA, 1, 50 ether, offer, signTowerFee(ALICE_PK, offer));
        InfHubBase.TowerFeeRecord[] memory fees = hub.towerFeesOf(alice);
        assertEq(fees.length, 1);
        assertEq(fees[0].tower, towerA);
        assertEq(fees[0].fee, 3 ether, "a tenth of 50 is 5, capped at maxFee 3");
        (uint256 toAlice, uint256 toA,) = settleAlice();
        assertEq(toA, 3 ether);
        assertEq(toAlice, 147 ether, "150 claim less the fee");
        assertEq(hub.towerFeesOf(alice).length, 0, "fees cleared at settlement");
    }

    function test_the_fee_is_capped_by_the_gain() public {
        staleHubClose(0);
        InfHubBase.TowerFee memory offer = towerOffer(alice, towerA, 1_000 ether, 10_000, 10_000);
        defend(towerA, 1, 50 ether, offer, signTowerFee(ALICE_PK, offer));
        assertEq(hub.towerFeesOf(alice)[0].fee, 50 ether, "a full share of the gain, never more");
        (uint256 toAlice, uint256 toA,) = settleAlice();
        assertEq(toA, 50 ether);
        assertEq(toAlice, 100 ether);
    }

    function test_a_submission_that_raises_nothing_earns_nothing() public {
        staleHubClose(0);
        // The hub put credit #1 (total 50) on record itself; the tower has #2 with the same total.
        InfHubBase.Credit memory c1 = credit(alice, 1, 50 ether);
        hub.submitCredit(c1, signCredit(HUB_PK, c1));
        InfHubBase.TowerFee memory offer = towerOffer(alice, towerA, 10 ether, 5_000, 10_000);
        defend(towerA, 2, 50 ether, offer, signTowerFee(ALICE_PK, offer));
        assertEq(hub.channel(alice).credit.nonce, 2, "the newer proof is on record");
        assertEq(hub.towerFeesOf(alice).length, 0, "no gain, no fee");
        (uint256 toAlice, uint256 toA,) = settleAlice();
        assertEq(toA, 0);
        assertEq(toAlice, 150 ether);
    }

    function test_a_submission_that_raises_a_claim_floored_at_zero_earns_only_the_rise_above_zero() public {
        // Alice paid 120 out of 100 deposited (the hub had credited her 50): the debit-only claim
        // is floored at zero, so the credit's rise of the claim is 30, not 50.
        staleHubClose(120 ether);
        InfHubBase.TowerFee memory offer = towerOffer(alice, towerA, 1_000 ether, 10_000, 10_000);
        defend(towerA, 1, 50 ether, offer, signTowerFee(ALICE_PK, offer));
        assertEq(hub.towerFeesOf(alice)[0].fee, 30 ether);
        (uint256 toAlice, uint256 toA,) = settleAlice();
        assertEq(toA, 30 ether);
        assertEq(toAlice, 0);
    }

    function test_the_fee_is_capped_by_the_claim_when_a_later_debit_lowers_it() public {
        staleHubClose(0);
        InfHubBase.TowerFee memory offer = towerOffer(alice, towerA, 1_000 ether, 10_000, 10_000);
        defend(towerA, 1, 50 ether, offer, signTowerFee(ALICE_PK, offer));
        // The hub then answers with Alice's newest debit: she had spent 140 of her 150.
        InfHubBase.Debit memory d = debit(alice, 2, 140 ether, 140 ether);
        vm.prank(hubAddr);
        hub.submitDebit(d, signDebit(ALICE_PK, d));
        (uint256 toAlice, uint256 toA,) = settleAlice();
        assertEq(toA, 10 ether, "the recorded 50 is cut to the 10 the claim pays");
        assertEq(toAlice, 0);
    }

    function test_one_tower_earns_at_most_its_max_fee_over_several_submissions() public {
        staleHubClose(0);
        InfHubBase.TowerFee memory offer = towerOffer(alice, towerA, 4 ether, 10_000, 10_000);
        bytes memory sig = signTowerFee(ALICE_PK, offer);
        defend(towerA, 1, 3 ether, offer, sig);
        defend(towerA, 2, 6 ether, offer, sig);
        defend(towerA, 3, 9 ether, offer, sig);
        InfHubBase.TowerFeeRecord[] memory fees = hub.towerFeesOf(alice);
        assertEq(fees.length, 1, "one record per tower");
        assertEq(fees[0].fee, 4 ether, "stale credits fed one by one earn no more than the offer");
        (uint256 toAlice, uint256 toA,) = settleAlice();
        assertEq(toA + toAlice, 109 ether);
        assertEq(toA, 4 ether);
    }

    function test_two_towers_each_earn_for_their_own_rise() public {
        staleHubClose(0);
        InfHubBase.TowerFee memory a = towerOffer(alice, towerA, 100 ether, 1_000, 10_000);
        InfHubBase.TowerFee memory b = towerOffer(alice, towerB, 100 ether, 2_000, 10_000);
        defend(towerA, 1, 30 ether, a, signTowerFee(ALICE_PK, a));
        defend(towerB, 2, 80 ether, b, signTowerFee(ALICE_PK, b));
        (uint256 toAlice, uint256 toA, uint256 toB) = settleAlice();
        assertEq(toA, 3 ether, "a tenth of 30");
        assertEq(toB, 10 ether, "a fifth of 50");
        assertEq(toAlice, 167 ether);
    }

    function test_the_losing_tower_of_a_race_is_refused_and_earns_nothing() public {
        staleHubClose(0);
        InfHubBase.TowerFee memory a = towerOffer(alice, towerA, 100 ether, 1_000, 10_000);
        InfHubBase.TowerFee memory b = towerOffer(alice, towerB, 100 ether, 1_000, 10_000);
        defend(towerA, 1, 30 ether, a, signTowerFee(ALICE_PK, a));
        InfHubBase.Credit memory c = credit(alice, 1, 30 ether);
        bytes memory cs = signCredit(HUB_PK, c);
        bytes memory bs = signTowerFee(ALICE_PK, b);
        vm.prank(towerB);
        vm.expectRevert(InfHubBase.ProofMustSupersede.selector);
        hub.submitCreditForFee(c, cs, b, bs);
        assertEq(hub.towerFeesOf(alice).length, 1);
    }

    function test_an_offer_signed_by_anyone_but_the_user_is_refused() public {
        staleHubClose(0);
        InfHubBase.TowerFee memory offer = towerOffer(alice, towerA, 100 ether, 10_000, 10_000);
        InfHubBase.Credit memory c = credit(alice, 1, 50 ether);
        bytes memory cs = signCredit(HUB_PK, c);
        // The tower (or the hub) forges Alice's offer with another key.
        bytes memory forged = signTowerFee(MALLORY_PK, offer);
        vm.prank(towerA);
        vm.expectRevert(InfHubBase.WrongSigner.selector);
        hub.submitCreditForFee(c, cs, offer, forged);
        bytes memory byHub = signTowerFee(HUB_PK, offer);
        vm.prank(towerA);
        vm.expectRevert(InfHubBase.WrongSigner.selector);
        hub.submitCreditForFee(c, cs, offer, byHub);
        // An offer with a raised share is not the one she signed.
        bytes memory real = signTowerFee(ALICE_PK, offer);
        offer.maxFee = 200 ether;
        vm.prank(towerA);
        vm.expectRevert(InfHubBase.WrongSigner.selector);
        hub.submitCreditForFee(c, cs, offer, real);
    }

    function test_only_the_named_tower_can_use_an_offer() public {
        staleHubClose(0);
        InfHubBase.TowerFee memory offer = towerOffer(alice, towerA, 100 ether, 10_000, 10_000);
        InfHubBase.Credit memory c = credit(alice, 1, 50 ether);
        bytes memory cs = signCredit(HUB_PK, c);
        bytes memory os = signTowerFee(ALICE_PK, offer);
        // The hub (or a front-runner) replays the tower's offer to charge Alice on its behalf.
        vm.prank(hubAddr);
        vm.expectRevert(InfHubBase.OnlyTower.selector);
        hub.submitCreditForFee(c, cs, offer, os);
        vm.prank(towerB);
        vm.expectRevert(InfHubBase.OnlyTower.selector);
        hub.submitCreditForFee(c, cs, offer, os);
    }

    function test_an_expired_offer_is_refused() public {
        staleHubClose(0);
        InfHubBase.TowerFee memory offer = towerOffer(alice, towerA, 100 ether, 10_000, uint64(block.number) + 2);
        bytes memory os = signTowerFee(ALICE_PK, offer);
        vm.roll(block.number + 3);
        InfHubBase.Credit memory c = credit(alice, 1, 50 ether);
        bytes memory cs = signCredit(HUB_PK, c);
        vm.prank(towerA);
        vm.expectRevert(InfHubBase.AuthorizationExpired.selector);
        hub.submitCreditForFee(c, cs, offer, os);
    }

    function test_an_offer_for_another_user_or_epoch_is_refused() public {
        staleHubClose(0);
        InfHubBase.Credit memory c = credit(alice, 1, 50 ether);
        bytes memory cs = signCredit(HUB_PK, c);
        InfHubBase.TowerFee memory old = towerOffer(alice, towerA, 100 ether, 10_000, 10_000);
        old.epoch = 0;
        bytes memory oldSig = signTowerFee(ALICE_PK, old);
        vm.prank(towerA);
        vm.expectRevert(InfHubBase.EpochMismatch.selector);
        hub.submitCreditForFee(c, cs, old, oldSig);
        InfHubBase.TowerFee memory bobs = towerOffer(bob, towerA, 100 ether, 10_000, 10_000);
        bytes memory bobSig = signTowerFee(BOB_PK, bobs);
        vm.prank(towerA);
        vm.expectRevert(InfHubBase.UserMismatch.selector);
        hub.submitCreditForFee(c, cs, bobs, bobSig);
    }

    function test_a_share_above_the_whole_is_refused() public {
        staleHubClose(0);
        InfHubBase.TowerFee memory offer = towerOffer(alice, towerA, 100 ether, 10_001, 10_000);
        bytes memory os = signTowerFee(ALICE_PK, offer);
        InfHubBase.Credit memory c = credit(alice, 1, 50 ether);
        bytes memory cs = signCredit(HUB_PK, c);
        vm.prank(towerA);
        vm.expectRevert(InfHubBase.TowerFeeShareTooLarge.selector);
        hub.submitCreditForFee(c, cs, offer, os);
    }

    function test_a_credit_the_hub_did_not_sign_earns_nothing_and_changes_nothing() public {
        staleHubClose(0);
        InfHubBase.TowerFee memory offer = towerOffer(alice, towerA, 100 ether, 10_000, 10_000);
        bytes memory os = signTowerFee(ALICE_PK, offer);
        InfHubBase.Credit memory c = credit(alice, 1, 50 ether);
        bytes memory forged = signCredit(MALLORY_PK, c);
        vm.prank(towerA);
        vm.expectRevert(InfHubBase.WrongSigner.selector);
        hub.submitCreditForFee(c, forged, offer, os);
        assertEq(hub.channel(alice).credit.cumulative, 0);
    }

    function test_the_fee_path_is_closed_outside_the_challenge_period() public {
        open(alice);
        depositAs(alice, 100 ether);
        InfHubBase.TowerFee memory offer = towerOffer(alice, towerA, 100 ether, 10_000, 10_000);
        bytes memory os = signTowerFee(ALICE_PK, offer);
        InfHubBase.Credit memory c = credit(alice, 1, 50 ether);
        bytes memory cs = signCredit(HUB_PK, c);
        vm.prank(towerA);
        vm.expectRevert(InfHubBase.ChannelNotClosing.selector);
        hub.submitCreditForFee(c, cs, offer, os);
        vm.prank(hubAddr);
        hub.startHubClose(alice, noDebit(alice), "");
        vm.roll(hub.channel(alice).settleBlock);
        vm.prank(towerA);
        vm.expectRevert(InfHubBase.ChallengePeriodOver.selector);
        hub.submitCreditForFee(c, cs, offer, os);
    }

    function test_at_most_four_towers_earn_in_one_close_and_a_fifth_is_told_so() public {
        fundReserve(1_000 ether);
        open(alice);
        depositAs(alice, 100 ether);
        vm.prank(hubAddr);
        hub.startHubClose(alice, noDebit(alice), "");
        for (uint64 i = 1; i <= 5; i++) {
            address t = address(uint160(0x7100 + i));
            InfHubBase.TowerFee memory offer = towerOffer(alice, t, 100 ether, 1_000, 10_000);
            bytes memory os = signTowerFee(ALICE_PK, offer);
            InfHubBase.Credit memory c = credit(alice, i, uint128(i) * 10 ether);
            bytes memory cs = signCredit(HUB_PK, c);
            vm.prank(t);
            if (i == 5) vm.expectRevert(InfHubBase.TowerFeeSlotsFull.selector);
            hub.submitCreditForFee(c, cs, offer, os);
        }
        assertEq(hub.towerFeesOf(alice).length, 4);
        // The fifth tower still defends, without a fee.
        InfHubBase.Credit memory c5 = credit(alice, 5, 50 ether);
        hub.submitCredit(c5, signCredit(HUB_PK, c5));
        (uint256 toAlice,,) = settleAlice();
        assertEq(toAlice, 150 ether - 4 ether, "four fees of 1 each");
    }

    function test_one_fee_is_at_most_max_tower_fee_whatever_the_offer() public {
        token.mint(hubAddr, 1e30);
        fundReserve(2e29);
        staleHubClose(0);
        InfHubBase.TowerFee memory offer = towerOffer(alice, towerA, type(uint128).max, 10_000, 10_000);
        defend(towerA, 1, 1e29, offer, signTowerFee(ALICE_PK, offer));
        assertEq(hub.towerFeesOf(alice)[0].fee, hub.MAX_TOWER_FEE(), "capped at the uint96 a record holds");
        (uint256 toAlice, uint256 toA,) = settleAlice();
        assertEq(toA, hub.MAX_TOWER_FEE());
        assertEq(toAlice + toA, 100 ether + 1e29);
    }

    function test_a_reopened_channel_starts_with_no_fees() public {
        staleHubClose(0);
        InfHubBase.TowerFee memory offer = towerOffer(alice, towerA, 100 ether, 1_000, 10_000);
        defend(towerA, 1, 50 ether, offer, signTowerFee(ALICE_PK, offer));
        settleAlice();
        open(alice);
        assertEq(hub.towerFeesOf(alice).length, 0);
        // The old epoch's offer cannot be used again.
        depositAs(alice, 10 ether);
        vm.prank(hubAddr);
        hub.startHubClose(alice, noDebit(alice), "");
        InfHubBase.Credit memory c = credit(alice, 1, 5 ether);
        bytes memory cs = signCredit(HUB_PK, c);
        bytes memory os = signTowerFee(ALICE_PK, offer);
        vm.prank(towerA);
        vm.expectRevert(InfHubBase.EpochMismatch.selector);
        hub.submitCreditForFee(c, cs, offer, os);
    }

    /// Whatever the figures, the tower earns min(share of the gain, maxFee, claim paid), the
    /// user gets the rest of the claim, and the token accounting holds.
    function testFuzz_the_fee_never_exceeds_the_share_of_the_gain_the_offer_or_the_claim(
        uint96 deposited,
        uint96 creditTotal,
        uint96 debitTotal,
        uint96 laterDebit,
        uint128 maxFee,
        uint16 share
    ) public {
        deposited = uint96(bound(deposited, 1, 1e23));
        creditTotal = uint96(bound(creditTotal, 0, 1e23));
        debitTotal = uint96(bound(debitTotal, 0, 2e23));
        laterDebit = uint96(bound(laterDebit, 0, 2e23));
        share = uint16(bound(share, 0, 10_000));
        fundReserve(1e24);
        open(alice);
        depositAs(alice, deposited);
        staleClose(debitTotal);
        uint256 gain = claimWith(deposited, creditTotal, debitTotal) - claimWith(deposited, 0, debitTotal);
        towerSubmits(creditTotal, maxFee, share);
        uint256 fee = gain * share / 10_000;
        if (fee > maxFee) fee = maxFee;
        uint256 claim = claimWith(deposited, creditTotal, debitTotal);
        if (laterDebit > debitTotal) {
            InfHubBase.Debit memory d2 = debit(alice, 2, laterDebit, laterDebit);
            vm.prank(hubAddr);
            hub.submitDebit(d2, signDebit(ALICE_PK, d2));
            claim = claimWith(deposited, creditTotal, laterDebit);
        }
        (uint256 toAlice, uint256 toA,) = settleAlice();
        assertEq(toA, fee < claim ? fee : claim, "tower fee");
        assertEq(toAlice + toA, claim, "the claim is paid in full, split");
        assertTrue(toA <= gain, "never more than the gain");
    }

    function claimWith(uint256 deposited, uint256 creditTotal, uint256 debitTotal) internal pure returns (uint256) {
        return deposited + creditTotal > debitTotal ? deposited + creditTotal - debitTotal : 0;
    }

    function staleClose(uint96 debitTotal) internal {
        InfHubBase.Debit memory d = debitTotal == 0 ? noDebit(alice) : debit(alice, 1, debitTotal, debitTotal);
        bytes memory ds = debitTotal == 0 ? bytes("") : signDebit(ALICE_PK, d);
        vm.prank(hubAddr);
        hub.startHubClose(alice, d, ds);
    }

    function towerSubmits(uint96 creditTotal, uint128 maxFee, uint16 share) internal {
        InfHubBase.TowerFee memory offer = towerOffer(alice, towerA, maxFee, share, 10_000);
        InfHubBase.Credit memory c = credit(alice, 1, creditTotal);
        bytes memory cs = signCredit(HUB_PK, c);
        bytes memory os = signTowerFee(ALICE_PK, offer);
        vm.prank(towerA);
        hub.submitCreditForFee(c, cs, offer, os);
    }
}
