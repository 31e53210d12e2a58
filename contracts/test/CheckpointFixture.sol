// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Fixture} from "./Fixture.sol";
import {InfHubCheckpoints} from "../src/InfHubCheckpoints.sol";
import {InfHubBase} from "../src/InfHubBase.sol";
import {checkpointLeafHash} from "./utils/CheckpointLeafHash.sol";

/// Two funded channels (alice, bob) and two-leaf checkpoints posted over them: what the
/// complaint and challenge tests share.
abstract contract CheckpointFixture is Fixture {
    function leafOf(address account, uint64 creditNonce, uint128 creditTotal, uint128 liability)
        internal
        view
        returns (InfHubBase.CheckpointLeaf memory l)
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
    function postTwo(InfHubBase.CheckpointLeaf memory a, InfHubBase.CheckpointLeaf memory b)
        internal
        returns (uint64 id, InfHubBase.SumNode[] memory pathA, InfHubBase.SumNode[] memory pathB)
    {
        return postTwoAt(a, b, 2);
    }

    /// The same at ledger position `seq`: credits of nonce up to `seq` must be counted.
    function postTwoAt(InfHubBase.CheckpointLeaf memory a, InfHubBase.CheckpointLeaf memory b, uint64 seq)
        internal
        returns (uint64 id, InfHubBase.SumNode[] memory pathA, InfHubBase.SumNode[] memory pathB)
    {
        id = hub.lastCheckpointId() + 1;
        bytes32 ha = checkpointLeafHash(hub, id, a);
        bytes32 hb = checkpointLeafHash(hub, id, b);
        bytes32 root = keccak256(abi.encode(hub.CHECKPOINT_NODE_TAG(), ha, uint256(a.liability), hb, uint256(b.liability)));
        uint256 inflows = hub.liabilityInflowsTotal();
        vm.prank(hubAddr);
        InfHubCheckpoints(address(hub)).postCheckpoint(id, root, uint256(a.liability) + b.liability, seq, uint64(block.number - 1), inflows);
        pathA = new InfHubBase.SumNode[](1);
        pathA[0] = InfHubBase.SumNode(hb, b.liability);
        pathB = new InfHubBase.SumNode[](1);
        pathB[0] = InfHubBase.SumNode(ha, a.liability);
        vm.roll(block.number + 1);
    }

    function setUpChannels() internal {
        fundReserve(1_000 ether);
        open(alice);
        open(bob);
        depositAs(alice, 100 ether);
        depositAs(bob, 100 ether);
    }

}
