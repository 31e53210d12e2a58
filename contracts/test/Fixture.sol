// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {deployHub} from "./utils/DeployHub.sol";
import {PointRegistry} from "../src/PointRegistry.sol";
import {Test} from "./utils/Test.sol";
import {InfHub} from "../src/InfHub.sol";
import {InfHubBase} from "../src/InfHubBase.sol";
import {InfToken} from "../src/InfToken.sol";

/// Shared set-up: a token, a hub contract, the hub key and two user keys, and helpers that
/// build and sign the protocol's messages.
abstract contract Fixture is Test {
    uint256 internal constant HUB_PK = 0x4855_4200_0000_0000_0000_0000_0000_0000_0000_0000_0000_0000_0000_0000_0001;
    uint256 internal constant ALICE_PK = 0xA11CE;
    uint256 internal constant BOB_PK = 0xB0B;
    uint256 internal constant MALLORY_PK = 0x6A11;
    uint64 internal constant CHALLENGE = 20;
    uint64 internal constant NOTICE = 40;

    InfToken internal token;
    InfHub internal hub;
    PointRegistry internal registry;
    address internal hubAddr;
    address internal alice;
    address internal bob;
    address internal mallory;

    function setUp() public virtual {
        hubAddr = vm.addr(HUB_PK);
        alice = vm.addr(ALICE_PK);
        bob = vm.addr(BOB_PK);
        mallory = vm.addr(MALLORY_PK);
        vm.roll(100);
        token = new InfToken(0);
        registry = new PointRegistry();
        hub = deployHub(token, hubAddr, CHALLENGE, NOTICE, registry);
        address[4] memory holders = [hubAddr, alice, bob, mallory];
        for (uint256 i = 0; i < holders.length; i++) {
            token.mint(holders[i], 1_000_000 ether);
            vm.prank(holders[i]);
            token.approve(address(hub), type(uint256).max);
        }
    }

    function open(address user) internal {
        vm.prank(user);
        hub.openChannel(user);
    }

    function depositAs(address user, uint256 amount) internal {
        vm.prank(user);
        hub.deposit(user, amount);
    }

    function fundReserve(uint256 amount) internal {
        vm.prank(hubAddr);
        hub.depositReserve(amount);
    }

    function epochOf(address user) internal view returns (uint64) {
        return hub.channel(user).epoch;
    }

    function credit(address user, uint64 nonce, uint128 cumulative) internal view returns (InfHubBase.Credit memory c) {
        c = InfHubBase.Credit(user, epochOf(user), nonce, cumulative, 0, bytes32(0));
    }

    function debit(address user, uint64 nonce, uint128 cumulative, uint128 amount)
        internal
        view
        returns (InfHubBase.Debit memory d)
    {
        d = InfHubBase.Debit(user, epochOf(user), nonce, cumulative, 0, bytes32(0), 0, bob, amount, keccak256(abi.encode(nonce)));
    }

    function signCredit(uint256 pk, InfHubBase.Credit memory c) internal view returns (bytes memory) {
        return signDigest(pk, hub.hashCredit(c));
    }

    function signDebit(uint256 pk, InfHubBase.Debit memory d) internal view returns (bytes memory) {
        return signDigest(pk, hub.hashDebit(d));
    }

    function withdrawal(address user, uint128 cumulative, uint64 expiry)
        internal
        view
        returns (InfHubBase.Withdrawal memory w)
    {
        w = InfHubBase.Withdrawal(user, epochOf(user), cumulative, expiry);
    }

    function signWithdrawal(uint256 pk, InfHubBase.Withdrawal memory w) internal view returns (bytes memory) {
        return signDigest(pk, hub.hashWithdrawal(w));
    }

    function towerOffer(address user, address tower_, uint128 maxFee, uint16 shareBps, uint64 validUntil)
        internal
        view
        returns (InfHubBase.TowerFee memory f)
    {
        f = InfHubBase.TowerFee(user, epochOf(user), tower_, maxFee, shareBps, validUntil);
    }

    function signTowerFee(uint256 pk, InfHubBase.TowerFee memory f) internal view returns (bytes memory) {
        return signDigest(pk, hub.hashTowerFee(f));
    }

    function noCredit(address user) internal pure returns (InfHubBase.Credit memory c) {
        c.user = user;
    }

    function noDebit(address user) internal pure returns (InfHubBase.Debit memory d) {
        d.user = user;
    }

    function checkAccounting() internal view {
        assertEq(
            token.balanceOf(address(hub)),
            hub.reserve() + hub.totalChannelFunds() + hub.totalEscrow() + hub.excess(),
            "balance == reserve + funds + escrow + excess"
        );
    }
}
