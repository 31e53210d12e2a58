// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {PointRegistry} from "../src/PointRegistry.sol";
import {deployHub} from "./utils/DeployHub.sol";
import {InfHubSettlement} from "../src/InfHubSettlement.sol";
import {Fixture} from "./Fixture.sol";
import {InfHub} from "../src/InfHub.sol";
import {InfHubBase} from "../src/InfHubBase.sol";
import {InfToken} from "../src/InfToken.sol";

/// Unit and fuzz tests of every InfHub function: success paths with state before and after and
/// their events, and every rejection by its named error.
contract InfHubTest is Fixture {
    // ------------------------------------------------------------ constructor

    function test_constructor_rejects_bad_parameters() public {
        // The rules live in InfHubBase's constructor, which the hub and both modules run.
        vm.expectRevert(InfHubBase.HubMustNotBeZero.selector);
        new InfHubSettlement(token, address(0), CHALLENGE, NOTICE, registry);
        vm.expectRevert(InfHubBase.ChallengePeriodOutOfRange.selector);
        new InfHubSettlement(token, hubAddr, 1, NOTICE, registry);
        vm.expectRevert(InfHubBase.ChallengePeriodOutOfRange.selector);
        new InfHubSettlement(token, hubAddr, 2_000_001, 3_000_000, registry);
        vm.expectRevert(InfHubBase.ReserveNoticeTooShort.selector);
        new InfHubSettlement(token, hubAddr, CHALLENGE, CHALLENGE, registry);
        vm.expectRevert(InfHubBase.ReserveNoticeTooShort.selector);
        new InfHubSettlement(token, hubAddr, CHALLENGE, 2 * CHALLENGE - 1, registry);
        vm.expectRevert(InfHubBase.RegistryMustNotBeZero.selector);
        new InfHubSettlement(token, hubAddr, CHALLENGE, NOTICE, PointRegistry(address(0)));
        InfHubSettlement good = new InfHubSettlement(token, hubAddr, CHALLENGE, 2 * CHALLENGE, registry);
        vm.expectRevert(InfHubBase.HubMustNotBeZero.selector);
        new InfHub(token, address(0), CHALLENGE, 2 * CHALLENGE, good);
        new InfHub(token, hubAddr, CHALLENGE, 2 * CHALLENGE, good);
    }

    /// A settlement module made for another hub key, token or period would check signatures
    /// against that key or settle on that period: the hub refuses it.
    function test_a_settlement_module_for_other_parameters_is_refused() public {
        InfHubSettlement forMallory = new InfHubSettlement(token, mallory, CHALLENGE, NOTICE, registry);
        vm.expectRevert(InfHubBase.SettlementModuleMismatch.selector);
        new InfHub(token, hubAddr, CHALLENGE, NOTICE, forMallory);
        InfHubSettlement otherPeriod = new InfHubSettlement(token, hubAddr, CHALLENGE - 1, NOTICE, registry);
        vm.expectRevert(InfHubBase.SettlementModuleMismatch.selector);
        new InfHub(token, hubAddr, CHALLENGE, NOTICE, otherPeriod);
        InfHubSettlement otherNotice = new InfHubSettlement(token, hubAddr, CHALLENGE, NOTICE + 1, registry);
        vm.expectRevert(InfHubBase.SettlementModuleMismatch.selector);
        new InfHub(token, hubAddr, CHALLENGE, NOTICE, otherNotice);
        InfToken otherToken = new InfToken(0);
        InfHubSettlement forOtherToken = new InfHubSettlement(otherToken, hubAddr, CHALLENGE, NOTICE, registry);
        vm.expectRevert(InfHubBase.SettlementModuleMismatch.selector);
        new InfHub(token, hubAddr, CHALLENGE, NOTICE, forOtherToken);
    }

    // ------------------------------------------------------------ open

    function test_open_by_user_then_by_hub_for_other_user() public {
        vm.expectEmit(true, true, true, true, address(hub));
        emit InfHubBase.ChannelOpened(alice, 1, alice);
        open(alice);
        InfHubBase.Channel memory ch = hub.channel(alice);
        assertEq(uint256(ch.status), uint256(InfHubBase.Status.Open), "status");
        assertEq(ch.epoch, 1, "epoch");

        vm.expectEmit(true, true, true, true, address(hub));
        emit InfHubBase.ChannelOpened(bob, 1, hubAddr);
        vm.prank(hubAddr);
        hub.openChannel(bob);
        assertEq(hub.channel(bob).epoch, 1, "bob epoch");
    }

    function test_open_rejections() public {
        vm.prank(mallory);
        vm.expectRevert(InfHubBase.OnlyUserOrHub.selector);
        hub.openChannel(alice);
        vm.prank(hubAddr);
        vm.expectRevert(InfHubBase.UserMustNotBeZeroOrHub.selector);
        hub.openChannel(hubAddr);
        vm.prank(hubAddr);
        vm.expectRevert(InfHubBase.UserMustNotBeZeroOrHub.selector);
        hub.openChannel(address(0));
        open(alice);
        vm.prank(alice);
        vm.expectRevert(InfHubBase.ChannelAlreadyOpen.selector);
        hub.openChannel(alice);
    }

    function test_open_channels_opens_a_batch_and_registers_channels_already_open() public {
        open(alice);
        open(mallory);
        vm.prank(mallory);
        hub.startExit(noCredit(mallory), "");
        address[] memory users = new address[](4);
        users[0] = bob;
        users[1] = alice; // already open: registered, epoch unchanged
        users[2] = address(0xB0B2);
        users[3] = mallory; // closing: skipped, no event
        vm.expectEmit(true, true, true, true, address(hub));
        emit InfHubBase.ChannelOpened(bob, 1, hubAddr);
        vm.expectEmit(true, true, true, true, address(hub));
        emit InfHubBase.ChannelRegistered(alice, 1);
        vm.expectEmit(true, true, true, true, address(hub));
        emit InfHubBase.ChannelOpened(address(0xB0B2), 1, hubAddr);
        vm.recordLogs();
        vm.prank(hubAddr);
        hub.openChannels(users);
        assertEq(vm.getRecordedLogs().length, 3, "one event per channel opened or registered");
        assertEq(uint256(hub.channel(mallory).status), uint256(InfHubBase.Status.Closing), "mallory still closing");
        assertEq(uint256(hub.channel(bob).status), uint256(InfHubBase.Status.Open), "bob open");
        assertEq(hub.channel(address(0xB0B2)).epoch, 1, "third user epoch");
        assertEq(hub.channel(alice).epoch, 1, "alice untouched");
        checkAccounting();
    }

    function test_open_channels_rejections() public {
        address[] memory users = new address[](1);
        users[0] = bob;
        vm.prank(mallory);
        vm.expectRevert(InfHubBase.OnlyHub.selector);
        hub.openChannels(users);
        vm.prank(hubAddr);
        vm.expectRevert(InfHubBase.BatchEmpty.selector);
        hub.openChannels(new address[](0));
        address[] memory tooMany = new address[](hub.MAX_OPEN_BATCH() + 1);
        for (uint256 i = 0; i < tooMany.length; i++) {
            tooMany[i] = address(uint160(0x200000 + i));
        }
        vm.prank(hubAddr);
        vm.expectRevert(InfHubBase.BatchTooLarge.selector);
        hub.openChannels(tooMany);
        users[0] = hubAddr;
        vm.prank(hubAddr);
        vm.expectRevert(InfHubBase.UserMustNotBeZeroOrHub.selector);
        hub.openChannels(users);
        users[0] = address(0);
        vm.prank(hubAddr);
        vm.expectRevert(InfHubBase.UserMustNotBeZeroOrHub.selector);
        hub.openChannels(users);
    }

    function test_gas_per_channel_opened_in_a_batch() public {
        vm.prank(hubAddr);
        uint256 before = gasleft();
        hub.openChannel(address(0x300000));
        uint256 one = before - gasleft();
        address[] memory users = new address[](hub.MAX_OPEN_BATCH());
        for (uint256 i = 0; i < users.length; i++) {
            users[i] = address(uint160(0x300001 + i));
        }
        vm.prank(hubAddr);
        before = gasleft();
        hub.openChannels(users);
        uint256 batch = before - gasleft();
        emit log_named_uint("openChannel gas, one user", one);
        emit log_named_uint("openChannels gas per user, batch of 100", batch / users.length);
        assertEq(hub.channel(users[users.length - 1]).epoch, 1, "last of the batch open");
        assertTrue(batch / users.length <= one, "a batch costs no more per channel");
    }

    // ------------------------------------------------------------ deposit

    function test_deposit_locks_tokens_and_emits_running_total() public {
        open(alice);
        uint256 before = token.balanceOf(alice);
        vm.expectEmit(true, true, true, true, address(hub));
        emit InfHubBase.Deposited(alice, 1, alice, 70, 70);
        depositAs(alice, 70);
        vm.expectEmit(true, true, true, true, address(hub));
        emit InfHubBase.Deposited(alice, 1, bob, 30, 100);
        vm.prank(bob);
        hub.deposit(alice, 30);
        assertEq(hub.channel(alice).deposited, 100, "deposited");
        assertEq(token.balanceOf(alice), before - 70, "alice paid");
        assertEq(token.balanceOf(address(hub)), 100, "contract holds");
        assertEq(hub.totalChannelFunds(), 100, "funds");
        checkAccounting();
    }

    function test_deposit_rejections() public {
        vm.expectRevert(InfHubBase.ChannelNotOpen.selector);
        depositAs(alice, 1);
        open(alice);
        vm.expectRevert(InfHubBase.AmountMustNotBeZero.selector);
        depositAs(alice, 0);
        token.mint(alice, uint256(type(uint128).max));
        depositAs(alice, type(uint128).max - 5);
        vm.expectRevert(InfHubBase.AmountTooLarge.selector);
        depositAs(alice, 6);
        vm.expectRevert(InfHubBase.AmountTooLarge.selector);
        depositAs(alice, type(uint256).max);
    }

    function test_deposit_for_a_custodial_account_joins_the_reserve() public {
        address account = address(0xC0FFEE);
        uint256 reserveBefore = hub.reserve();
        vm.expectEmit(true, true, true, true, address(hub));
        emit InfHubBase.CustodialDeposited(account, alice, 40, reserveBefore + 40);
        vm.prank(alice);
        hub.depositFor(account, 40);
        assertEq(hub.reserve(), reserveBefore + 40, "reserve");
        assertEq(hub.totalChannelFunds(), 0, "no channel funds");
        checkAccounting();
        vm.prank(alice);
        vm.expectRevert(InfHubBase.AmountMustNotBeZero.selector);
        hub.depositFor(account, 0);
        vm.prank(alice);
        vm.expectRevert(InfHubBase.RecipientMustNotBeZero.selector);
        hub.depositFor(address(0), 1);
        vm.prank(alice);
        vm.expectRevert(InfHubBase.AmountTooLarge.selector);
        hub.depositFor(account, uint256(type(uint128).max) + 1);
    }

    function test_deposit_with_permit() public {
        open(alice);
        vm.prank(alice);
        token.approve(address(hub), 0);
        uint256 deadline = block.timestamp + 1 hours;
        bytes32 structHash = keccak256(
            abi.encode(
                keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)"),
                alice,
                address(hub),
                uint256(55),
                token.nonces(alice),
                deadline
            )
        );
        bytes32 digest = keccak256(abi.encodePacked("\x19\x01", token.DOMAIN_SEPARATOR(), structHash));
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(ALICE_PK, digest);
        vm.prank(alice);
        hub.depositWithPermit(alice, 55, deadline, v, r, s);
        assertEq(hub.channel(alice).deposited, 55, "deposited via permit");
        // A replayed permit fails inside, and without allowance the deposit reverts.
        vm.prank(alice);
        vm.expectRevert();
        hub.depositWithPermit(alice, 55, deadline, v, r, s);
    }

    // ------------------------------------------------------------ cooperative withdrawal

    function test_withdraw_partial_keeps_channel_open() public {
        open(alice);
        depositAs(alice, 100);
        InfHubBase.Withdrawal memory w = withdrawal(alice, 40, uint64(block.number + 10));
        uint256 before = token.balanceOf(alice);
        vm.expectEmit(true, true, true, true, address(hub));
        emit InfHubBase.Withdrawn(alice, 1, 40, 40, 0);
        vm.prank(mallory); // anyone may submit; the tokens go to the user
        hub.withdraw(w, signWithdrawal(ALICE_PK, w), signWithdrawal(HUB_PK, w));
        assertEq(token.balanceOf(alice), before + 40, "paid to user");
        InfHubBase.Channel memory ch = hub.channel(alice);
        assertEq(uint256(ch.status), uint256(InfHubBase.Status.Open), "still open");
        assertEq(ch.withdrawn, 40, "withdrawn");
        assertEq(hub.totalChannelFunds(), 60, "funds");
        // The rest, with a new running total.
        w = withdrawal(alice, 100, uint64(block.number + 10));
        hub.withdraw(w, signWithdrawal(ALICE_PK, w), signWithdrawal(HUB_PK, w));
        assertEq(hub.channel(alice).withdrawn, 100, "withdrawn all");
        checkAccounting();
    }

    function test_withdraw_beyond_own_funds_draws_reserve() public {
        // Bob received credit off chain and never deposited; the reserve advances his withdrawal.
        open(bob);
        fundReserve(500);
        InfHubBase.Withdrawal memory w = withdrawal(bob, 30, uint64(block.number + 5));
        vm.expectEmit(true, true, true, true, address(hub));
        emit InfHubBase.Withdrawn(bob, 1, 30, 30, 30);
        hub.withdraw(w, signWithdrawal(BOB_PK, w), signWithdrawal(HUB_PK, w));
        assertEq(hub.reserve(), 470, "reserve advanced");
        assertEq(hub.channel(bob).advancedFromReserve, 30, "advance recorded");
        assertEq(hub.totalChannelFunds(), 0, "bob's funds");
        checkAccounting();
        // Not more than the reserve holds.
        w = withdrawal(bob, 30 + 471, uint64(block.number + 5));
        bytes memory us = signWithdrawal(BOB_PK, w);
        bytes memory hs = signWithdrawal(HUB_PK, w);
        vm.expectRevert(InfHubBase.ReserveInsufficient.selector);
        hub.withdraw(w, us, hs);
    }

    InfHubBase.Withdrawal internal w40;
    bytes internal w40User;
    bytes internal w40Hub;

    /// Alice has 100 deposited and a co-signed withdrawal of 40 valid for 10 blocks.
    function setUpWithdrawal() internal {
        open(alice);
        depositAs(alice, 100);
        w40 = withdrawal(alice, 40, uint64(block.number + 10));
        w40User = signWithdrawal(ALICE_PK, w40);
        w40Hub = signWithdrawal(HUB_PK, w40);
    }

    function test_withdraw_rejects_wrong_signers() public {
        setUpWithdrawal();
        bytes memory mallorys = signWithdrawal(MALLORY_PK, w40);
        vm.expectRevert(InfHubBase.WrongSigner.selector);
        hub.withdraw(w40, mallorys, w40Hub);
        vm.expectRevert(InfHubBase.WrongSigner.selector);
        hub.withdraw(w40, w40User, w40User);
    }

    function test_withdraw_rejects_malformed_signatures() public {
        setUpWithdrawal();
        vm.expectRevert(InfHubBase.InvalidSignature.selector);
        hub.withdraw(w40, hex"1234", w40Hub);
        bytes memory highS = abi.encodePacked(bytes32(uint256(1)), bytes32(type(uint256).max), uint8(27));
        vm.expectRevert(InfHubBase.InvalidSignature.selector);
        hub.withdraw(w40, highS, w40Hub);
        bytes memory badV = abi.encodePacked(w40User);
        badV[64] = bytes1(uint8(29));
        vm.expectRevert(InfHubBase.InvalidSignature.selector);
        hub.withdraw(w40, badV, w40Hub);
    }

    function test_withdraw_rejects_wrong_epoch_chain_and_contract() public {
        setUpWithdrawal();
        InfHubBase.Withdrawal memory wrongEpoch = InfHubBase.Withdrawal(alice, 2, 40, w40.expiryBlock);
        bytes memory weU = signWithdrawal(ALICE_PK, wrongEpoch);
        bytes memory weH = signWithdrawal(HUB_PK, wrongEpoch);
        vm.expectRevert(InfHubBase.EpochMismatch.selector);
        hub.withdraw(wrongEpoch, weU, weH);
        // Wrong chain id: the digest changes, so the signatures recover to other keys.
        uint256 chain = block.chainid;
        vm.chainId(chain + 1);
        vm.expectRevert(InfHubBase.WrongSigner.selector);
        hub.withdraw(w40, w40User, w40Hub);
        vm.chainId(chain);
        // Wrong contract: signatures made for another hub contract are worthless here.
        InfHub other = deployHub(token, hubAddr, CHALLENGE, NOTICE, registry);
        bytes memory otherU = signDigest(ALICE_PK, other.hashWithdrawal(w40));
        bytes memory otherH = signDigest(HUB_PK, other.hashWithdrawal(w40));
        vm.expectRevert(InfHubBase.WrongSigner.selector);
        hub.withdraw(w40, otherU, otherH);
    }

    function test_withdraw_rejects_expired_replayed_and_closing() public {
        setUpWithdrawal();
        vm.roll(w40.expiryBlock + 1);
        vm.expectRevert(InfHubBase.AuthorizationExpired.selector);
        hub.withdraw(w40, w40User, w40Hub);
        vm.roll(w40.expiryBlock);
        hub.withdraw(w40, w40User, w40Hub);
        vm.expectRevert(InfHubBase.WithdrawalMustIncrease.selector);
        hub.withdraw(w40, w40User, w40Hub);
        vm.prank(alice);
        hub.startExit(noCredit(alice), "");
        InfHubBase.Withdrawal memory w2 = withdrawal(alice, 50, uint64(block.number + 10));
        bytes memory us2 = signWithdrawal(ALICE_PK, w2);
        bytes memory hs2 = signWithdrawal(HUB_PK, w2);
        vm.expectRevert(InfHubBase.ChannelNotOpen.selector);
        hub.withdraw(w2, us2, hs2);
    }

    // ------------------------------------------------------------ exit, dispute, settle

    function test_user_exit_with_credit_then_hub_disputes_then_settle() public {
        open(alice);
        open(bob);
        depositAs(alice, 100);
        fundReserve(1_000);
        // Off chain: alice paid bob 30 (debit nonce 1), then 20 more (debit nonce 2);
        // the hub sold alice 50 (credit nonce 1).
        InfHubBase.Credit memory c1 = credit(alice, 1, 50);
        InfHubBase.Debit memory d1 = debit(alice, 1, 30, 30);
        InfHubBase.Debit memory d2 = debit(alice, 2, 50, 20);

        // Alice exits with her credit and "forgets" her debits.
        uint64 settleAt = uint64(block.number) + CHALLENGE;
        vm.expectEmit(true, true, true, true, address(hub));
        emit InfHubBase.ExitStarted(alice, 1, alice, settleAt);
        bytes memory c1sig = signCredit(HUB_PK, c1);
        vm.prank(alice);
        hub.startExit(c1, c1sig);
        InfHubBase.Channel memory ch = hub.channel(alice);
        assertEq(uint256(ch.status), uint256(InfHubBase.Status.Closing), "closing");
        assertEq(ch.settleBlock, settleAt, "settle block");
        assertEq(ch.credit.cumulative, 50, "credit recorded");

        // Exit while exiting is refused.
        vm.prank(alice);
        vm.expectRevert(InfHubBase.ChannelNotOpen.selector);
        hub.startExit(c1, "");

        // The hub answers with the older debit, then the newer one; the stale one is refused.
        hub.submitDebit(d1, signDebit(ALICE_PK, d1));
        vm.expectEmit(true, true, true, true, address(hub));
        emit InfHubBase.DebitSubmitted(alice, 1, 2, 50, hubAddr);
        bytes memory d2sig = signDebit(ALICE_PK, d2);
        vm.prank(hubAddr);
        hub.submitDebit(d2, d2sig);
        bytes memory d1again = signDebit(ALICE_PK, d1);
        vm.expectRevert(InfHubBase.ProofMustSupersede.selector);
        hub.submitDebit(d1, d1again);
        // A debit signed by someone else than alice is refused.
        InfHubBase.Debit memory d3 = debit(alice, 3, 90, 40);
        bytes memory forged = signDebit(HUB_PK, d3);
        vm.expectRevert(InfHubBase.WrongSigner.selector);
        hub.submitDebit(d3, forged);

        // Settling early is refused.
        vm.roll(settleAt - 1);
        vm.expectRevert(InfHubBase.ChallengePeriodNotOver.selector);
        InfHubSettlement(address(hub)).settle(alice);
        vm.roll(settleAt);
        // Proofs after the period are refused.
        bytes memory d3sig = signDebit(ALICE_PK, d3);
        vm.expectRevert(InfHubBase.ChallengePeriodOver.selector);
        hub.submitDebit(d3, d3sig);

        uint256 before = token.balanceOf(alice);
        // claim = 100 - 0 + 50 - 50 = 100; channel funds 100; reserve unchanged.
        vm.expectEmit(true, true, true, true, address(hub));
        emit InfHubBase.Settled(alice, 1, 100, 0, 1_000);
        InfHubSettlement(address(hub)).settle(alice);
        assertEq(token.balanceOf(alice), before + 100, "alice paid her balance");
        assertEq(uint256(hub.channel(alice).status), uint256(InfHubBase.Status.Settled), "settled");
        vm.expectRevert(InfHubBase.ChannelNotClosing.selector);
        InfHubSettlement(address(hub)).settle(alice);
        checkAccounting();
    }

    function test_hub_close_with_stale_debit_and_user_defends() public {
        open(alice);
        depositAs(alice, 100);
        fundReserve(1_000);
        InfHubBase.Debit memory d1 = debit(alice, 1, 10, 10);
        InfHubBase.Credit memory c1 = credit(alice, 1, 5);
        InfHubBase.Credit memory c2 = credit(alice, 2, 80);

        vm.prank(mallory);
        vm.expectRevert(InfHubBase.OnlyHub.selector);
        hub.startHubClose(alice, d1, "");
        vm.prank(hubAddr);
        vm.expectRevert(InfHubBase.ProofMustBeEmpty.selector);
        hub.startHubClose(alice, noDebit(alice), hex"01");

        bytes memory d1sig = signDebit(ALICE_PK, d1);
        vm.prank(hubAddr);
        hub.startHubClose(alice, d1, d1sig);
        assertEq(hub.channel(alice).closer, hubAddr, "closer");
        // Alice's watchtower (anyone) submits her credits; the newest wins, an older one after it is refused.
        bytes memory c2sig = signCredit(HUB_PK, c2);
        vm.prank(mallory);
        hub.submitCredit(c2, c2sig);
        bytes memory c1sig = signCredit(HUB_PK, c1);
        vm.expectRevert(InfHubBase.ProofMustSupersede.selector);
        hub.submitCredit(c1, c1sig);
        // A credit signed by alice herself is worthless.
        InfHubBase.Credit memory c3 = credit(alice, 3, 500);
        bytes memory selfSigned = signCredit(ALICE_PK, c3);
        vm.expectRevert(InfHubBase.WrongSigner.selector);
        hub.submitCredit(c3, selfSigned);

        vm.roll(block.number + CHALLENGE);
        InfHubSettlement(address(hub)).settle(alice);
        // claim = 100 + 80 - 10 = 170: 100 from her funds, 70 from the reserve.
        assertEq(hub.reserve(), 930, "reserve paid the net credit");
        checkAccounting();
    }

    function hashPair(bytes32 a, bytes32 b) internal pure returns (bytes32) {
        return a <= b ? keccak256(abi.encode(a, b)) : keccak256(abi.encode(b, a));
    }

    function test_batched_hub_proof_is_accepted_and_a_bad_path_or_signer_is_refused() public {
        open(alice);
        depositAs(alice, 100);
        fundReserve(1_000);
        vm.prank(hubAddr);
        hub.startHubClose(alice, noDebit(alice), "");
        // Four leaves: alice's credit and three other proofs of the same batch.
        InfHubBase.Credit memory c = credit(alice, 1, 60);
        bytes32 leaf = hub.hashCredit(c);
        bytes32 l1 = keccak256("receipt one");
        bytes32 l2 = keccak256("receipt two");
        bytes32 l3 = keccak256("credit of bob");
        bytes32 n01 = hashPair(leaf, l1);
        bytes32 n23 = hashPair(l2, l3);
        bytes32 root = hashPair(n01, n23);
        bytes memory rootSig = signDigest(HUB_PK, hub.hashProofBatch(root));
        bytes memory proof = abi.encodePacked(rootSig, l1, n23);

        // A tampered path, a path for another leaf, a root signed by someone else, a cut or
        // overlong proof: all refused.
        vm.expectRevert(InfHubBase.WrongSigner.selector);
        hub.submitCredit(c, abi.encodePacked(rootSig, l2, n23));
        InfHubBase.Credit memory other = credit(alice, 1, 61);
        vm.expectRevert(InfHubBase.WrongSigner.selector);
        hub.submitCredit(other, proof);
        bytes memory aliceRoot = signDigest(ALICE_PK, hub.hashProofBatch(root));
        vm.expectRevert(InfHubBase.WrongSigner.selector);
        hub.submitCredit(c, abi.encodePacked(aliceRoot, l1, n23));
        vm.expectRevert(InfHubBase.InvalidSignature.selector);
        hub.submitCredit(c, abi.encodePacked(rootSig, bytes16(l1)));
        bytes memory overlong = rootSig;
        uint256 maxDepth = hub.MAX_PROOF_DEPTH();
        for (uint256 i = 0; i < maxDepth + 1; i++) {
            overlong = abi.encodePacked(overlong, l1);
        }
        vm.expectRevert(InfHubBase.InvalidSignature.selector);
        hub.submitCredit(c, overlong);
        // The root's signature alone is not a direct signature of the credit.
        vm.expectRevert(InfHubBase.WrongSigner.selector);
        hub.submitCredit(c, rootSig);

        vm.prank(mallory);
        hub.submitCredit(c, proof);
        assertEq(hub.channel(alice).credit.cumulative, 60, "batched credit applied");
        vm.roll(block.number + CHALLENGE);
        InfHubSettlement(address(hub)).settle(alice);
        assertEq(hub.reserve(), 940, "reserve paid the batched credit");
        checkAccounting();
    }

    function test_exit_rejections() public {
        vm.prank(alice);
        vm.expectRevert(InfHubBase.ChannelNotOpen.selector);
        hub.startExit(noCredit(alice), "");
        open(alice);
        open(bob);
        InfHubBase.Credit memory bobs = credit(bob, 1, 9);
        bytes memory bobsSig = signCredit(HUB_PK, bobs);
        vm.prank(alice);
        vm.expectRevert(InfHubBase.UserMismatch.selector);
        hub.startExit(bobs, bobsSig);
        InfHubBase.Credit memory empty = noCredit(alice);
        vm.prank(alice);
        vm.expectRevert(InfHubBase.ProofMustBeEmpty.selector);
        hub.startExit(empty, hex"00");
        empty.cumulativeCredit = 1;
        vm.prank(alice);
        vm.expectRevert(InfHubBase.ProofMustBeEmpty.selector);
        hub.startExit(empty, "");
        InfHubBase.Credit memory c = credit(alice, 1, 9);
        bytes memory cs = signCredit(HUB_PK, c);
        vm.expectRevert(InfHubBase.ChannelNotClosing.selector);
        hub.submitCredit(c, cs);
    }

    function test_reopen_increments_epoch_and_old_proofs_are_void() public {
        open(alice);
        depositAs(alice, 10);
        InfHubBase.Credit memory oldCredit = credit(alice, 1, 1_000);
        bytes memory oldSig = signCredit(HUB_PK, oldCredit);
        vm.prank(alice);
        hub.startExit(noCredit(alice), "");
        vm.roll(block.number + CHALLENGE);
        InfHubSettlement(address(hub)).settle(alice);
        vm.expectEmit(true, true, true, true, address(hub));
        emit InfHubBase.ChannelOpened(alice, 2, alice);
        open(alice);
        InfHubBase.Channel memory ch = hub.channel(alice);
        assertEq(ch.epoch, 2, "epoch 2");
        assertEq(ch.deposited, 0, "fresh deposits");
        assertEq(ch.credit.nonce, 0, "fresh proofs");
        vm.prank(alice);
        vm.expectRevert(InfHubBase.EpochMismatch.selector);
        hub.startExit(oldCredit, oldSig);
    }

    // ------------------------------------------------------------ reserve

    function test_reserve_withdrawal_needs_notice() public {
        fundReserve(300);
        vm.prank(mallory);
        vm.expectRevert(InfHubBase.OnlyHub.selector);
        hub.announceReserveWithdrawal(100);
        vm.startPrank(hubAddr);
        vm.expectRevert(InfHubBase.NoReserveWithdrawalPending.selector);
        hub.executeReserveWithdrawal(hubAddr);
        vm.expectRevert(InfHubBase.AmountMustNotBeZero.selector);
        hub.announceReserveWithdrawal(0);
        uint64 unlock = uint64(block.number) + NOTICE;
        vm.expectEmit(true, true, true, true, address(hub));
        emit InfHubBase.ReserveWithdrawalAnnounced(100, unlock);
        hub.announceReserveWithdrawal(100);
        vm.expectRevert(InfHubBase.ReserveWithdrawalPending.selector);
        hub.announceReserveWithdrawal(1);
        vm.roll(unlock - 1);
        vm.expectRevert(InfHubBase.ReserveNoticeNotOver.selector);
        hub.executeReserveWithdrawal(hubAddr);
        vm.roll(unlock);
        vm.expectRevert(InfHubBase.RecipientMustNotBeZero.selector);
        hub.executeReserveWithdrawal(address(0));
        uint256 before = token.balanceOf(hubAddr);
        hub.executeReserveWithdrawal(hubAddr);
        assertEq(token.balanceOf(hubAddr), before + 100, "hub received");
        assertEq(hub.reserve(), 200, "reserve");
        // cancel
        hub.announceReserveWithdrawal(50);
        hub.cancelReserveWithdrawal();
        vm.expectRevert(InfHubBase.NoReserveWithdrawalPending.selector);
        hub.cancelReserveWithdrawal();
        // more than the reserve at execution
        hub.announceReserveWithdrawal(201);
        vm.roll(block.number + NOTICE);
        vm.expectRevert(InfHubBase.ReserveInsufficient.selector);
        hub.executeReserveWithdrawal(hubAddr);
        // unused, it expires after another notice's length; then a new announcement replaces it
        vm.expectRevert(InfHubBase.ReserveWithdrawalPending.selector);
        hub.announceReserveWithdrawal(10);
        vm.roll(block.number + NOTICE);
        vm.expectRevert(InfHubBase.ReserveWithdrawalExpired.selector);
        hub.executeReserveWithdrawal(hubAddr);
        hub.announceReserveWithdrawal(10);
        vm.roll(block.number + NOTICE);
        hub.executeReserveWithdrawal(hubAddr);
        assertEq(hub.reserve(), 190, "the new announcement executed");
        vm.stopPrank();
        checkAccounting();
    }

    // ------------------------------------------------------------ payouts

    /// Logged (shown with `forge test -vv`): gas of one `payout` call and per recipient.
    event log_named_uint(string key, uint256 val);

    /// Gas per external payout at batch sizes 1, 10 and 100 (fresh recipients: each costs a
    /// new token balance slot, the realistic worst case). Batching must amortize the fixed cost.
    function test_gas_per_payout_by_batch_size() public {
        fundReserve(1_000_000);
        uint256[3] memory sizes = [uint256(1), 10, 100];
        uint256 perPayoutAtOne;
        for (uint256 k = 0; k < sizes.length; k++) {
            uint256 n = sizes[k];
            address[] memory to = new address[](n);
            uint256[] memory amounts = new uint256[](n);
            for (uint256 i = 0; i < n; i++) {
                to[i] = address(uint160(0x100000 + k * 1_000 + i));
                amounts[i] = 1;
            }
            vm.prank(hubAddr);
            uint256 before = gasleft();
            hub.payout(keccak256(abi.encode("gas", n)), to, amounts);
            uint256 used = before - gasleft();
            emit log_named_uint(string(abi.encodePacked("payout gas, batch of ", _decimal(n))), used);
            emit log_named_uint(string(abi.encodePacked("gas per payout, batch of ", _decimal(n))), used / n);
            if (n == 1) perPayoutAtOne = used;
            else assertTrue(used / n < perPayoutAtOne, "batching must lower the gas per payout");
        }
        checkAccounting();
    }

    function _decimal(uint256 v) internal pure returns (string memory) {
        if (v == 0) return "0";
        bytes memory b;
        while (v != 0) {
            b = abi.encodePacked(bytes1(uint8(48 + v % 10)), b);
            v /= 10;
        }
        return string(b);
    }

    function test_payout_batch_pays_each_and_is_idempotent() public {
        fundReserve(1_000);
        address[] memory to = new address[](3);
        uint256[] memory amounts = new uint256[](3);
        to[0] = address(0xA1);
        to[1] = address(0xA2);
        to[2] = address(0xA3);
        amounts[0] = 10;
        amounts[1] = 20;
        amounts[2] = 30;
        bytes32 batchId = keccak256("batch-1");
        vm.startPrank(hubAddr);
        vm.expectEmit(true, true, true, true, address(hub));
        emit InfHubBase.Paid(batchId, address(0xA1), 10);
        hub.payout(batchId, to, amounts);
        assertEq(token.balanceOf(address(0xA2)), 20, "paid");
        assertEq(hub.reserve(), 940, "reserve");
        vm.expectRevert(InfHubBase.PayoutBatchAlreadyExecuted.selector);
        hub.payout(batchId, to, amounts);
        vm.expectRevert(InfHubBase.BatchEmpty.selector);
        hub.payout(keccak256("e"), new address[](0), new uint256[](0));
        vm.expectRevert(InfHubBase.BatchLengthMismatch.selector);
        hub.payout(keccak256("m"), to, new uint256[](2));
        vm.expectRevert(InfHubBase.BatchTooLarge.selector);
        hub.payout(keccak256("l"), new address[](257), new uint256[](257));
        amounts[2] = 1_000;
        vm.expectRevert(InfHubBase.ReserveInsufficient.selector);
        hub.payout(keccak256("r"), to, amounts);
        amounts[2] = 0;
        vm.expectRevert(InfHubBase.AmountMustNotBeZero.selector);
        hub.payout(keccak256("z"), to, amounts);
        to[1] = address(0);
        vm.expectRevert(InfHubBase.RecipientMustNotBeZero.selector);
        hub.payout(keccak256("0"), to, amounts);
        vm.stopPrank();
        vm.prank(mallory);
        vm.expectRevert(InfHubBase.OnlyHub.selector);
        hub.payout(keccak256("x"), to, amounts);
        checkAccounting();
    }

    // ------------------------------------------------------------ fuzz

    /// Any deposit, partial withdrawal, credit and debit: settlement pays exactly
    /// deposited - withdrawn + credit - debit, and the books balance.
    function testFuzz_settlement_pays_the_off_chain_balance(
        uint96 deposit,
        uint96 withdrawFraction,
        uint96 creditAmount,
        uint96 debitAmount
    ) public {
        vm.assume(deposit > 0);
        uint128 w = uint128(uint256(withdrawFraction) % (uint256(deposit) + 1));
        uint128 d = uint128(uint256(debitAmount) % (uint256(deposit) - w + uint256(creditAmount) + 1));
        token.mint(alice, deposit);
        token.mint(hubAddr, creditAmount);
        open(alice);
        depositAs(alice, deposit);
        if (creditAmount > 0) fundReserve(creditAmount);
        if (w > 0) {
            InfHubBase.Withdrawal memory wd = withdrawal(alice, w, uint64(block.number + 1));
            hub.withdraw(wd, signWithdrawal(ALICE_PK, wd), signWithdrawal(HUB_PK, wd));
        }
        InfHubBase.Credit memory c = credit(alice, 1, creditAmount);
        bytes memory cs = signCredit(HUB_PK, c);
        vm.prank(alice);
        hub.startExit(c, cs);
        if (d > 0) {
            InfHubBase.Debit memory db = debit(alice, 1, d, d);
            hub.submitDebit(db, signDebit(ALICE_PK, db));
        }
        vm.roll(block.number + CHALLENGE);
        uint256 before = token.balanceOf(alice);
        InfHubSettlement(address(hub)).settle(alice);
        uint256 expected = uint256(deposit) - w + creditAmount - d;
        assertEq(token.balanceOf(alice) - before, expected, "paid == off-chain balance");
        // reserve = credit it backed, minus the credit paid out, plus the debits it earned.
        assertEq(hub.reserve(), d, "reserve keeps the debits");
        checkAccounting();
    }

    /// Proofs with any nonces and totals, submitted in any order: the contract ends with the
    /// highest total, and among equal totals the highest nonce, whatever the order.
    function testFuzz_proof_order_does_not_matter(uint8[3] memory nonces, uint8[3] memory totals) public {
        open(alice);
        depositAs(alice, 1_000);
        vm.prank(alice);
        hub.startExit(noCredit(alice), "");
        uint64 bestNonce = 0;
        uint128 bestTotal = 0;
        for (uint256 i = 0; i < 3; i++) {
            (uint64 n, uint128 t) = (uint64(nonces[i]) + 1, uint128(totals[i]));
            InfHubBase.Debit memory d = debit(alice, n, t, 1);
            bytes memory sig = signDebit(ALICE_PK, d);
            if (t > bestTotal || (t == bestTotal && n > bestNonce)) {
                hub.submitDebit(d, sig);
                (bestNonce, bestTotal) = (n, t);
            } else {
                vm.expectRevert(InfHubBase.ProofMustSupersede.selector);
                hub.submitDebit(d, sig);
            }
        }
        assertEq(hub.channel(alice).debit.cumulative, bestTotal, "highest total wins");
        assertEq(hub.channel(alice).debit.nonce, bestNonce, "then the highest nonce");
    }

    /// Any amounts in a payout batch: each recipient gets exactly its amount, reserve drops by the sum.
    function testFuzz_payout_amounts(uint64 x, uint64 y) public {
        vm.assume(x > 0 && y > 0);
        uint256 total = uint256(x) + y;
        token.mint(hubAddr, total);
        fundReserve(total);
        address[] memory to = new address[](2);
        uint256[] memory amounts = new uint256[](2);
        to[0] = address(0xB1);
        to[1] = address(0xB2);
        amounts[0] = x;
        amounts[1] = y;
        vm.prank(hubAddr);
        hub.payout(bytes32(uint256(total)), to, amounts);
        assertEq(token.balanceOf(address(0xB1)), x, "x");
        assertEq(token.balanceOf(address(0xB2)), y, "y");
        assertEq(hub.reserve(), 0, "reserve spent");
        checkAccounting();
    }

    function test_token_has_permit_and_minter() public {
        InfToken t = new InfToken(5);
        assertEq(t.balanceOf(address(this)), 5, "initial supply");
        vm.prank(alice);
        vm.expectRevert(InfToken.OnlyMinter.selector);
        t.mint(alice, 1);
    }
}
