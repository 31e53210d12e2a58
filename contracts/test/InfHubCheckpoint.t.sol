// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {deployHub} from "./utils/DeployHub.sol";
import {Fixture} from "./Fixture.sol";
import {InfHub} from "../src/InfHub.sol";
import {InfHubCheckpoints} from "../src/InfHubCheckpoints.sol";
import {InfHubBase} from "../src/InfHubBase.sol";
import {checkpointLeafHash} from "./utils/CheckpointLeafHash.sol";
import {InfToken} from "../src/InfToken.sol";

/// Checkpoints (spec 5.16): the solvency the contract checks when the hub posts one, the order
/// of checkpoints, and paths into the tree, against the vectors the Rust core writes
/// (test-vectors/checkpoint-vectors.json): every good path proves, every tampered one is
/// refused with the rule it breaks, exactly as in Rust.
contract InfHubCheckpointTest is Fixture {
    string internal constant VECTORS = "/../test-vectors/checkpoint-vectors.json";

    event log_named_uint(string key, uint256 val);

    function post(uint64 id, uint256 liability, uint64 seq, uint64 chainBlock, uint256 inflows) internal {
        vm.prank(hubAddr);
        InfHubCheckpoints(address(hub)).postCheckpoint(id, keccak256(abi.encode(id)), liability, seq, chainBlock, inflows);
    }

    function expectPostRevert(bytes4 err, uint64 id, uint256 liability, uint64 seq, uint64 chainBlock, uint256 inflows)
        internal
    {
        vm.prank(hubAddr);
        vm.expectRevert(err);
        InfHubCheckpoints(address(hub)).postCheckpoint(id, keccak256(abi.encode(id)), liability, seq, chainBlock, inflows);
    }

    function test_a_checkpoint_is_refused_one_unit_past_the_reserve() public {
        fundReserve(1_000 ether);
        expectPostRevert(InfHubBase.CheckpointInsolvent.selector, 1, 1_000 ether + 1, 10, 99, 0);
        post(1, 1_000 ether, 10, 99, 0);
        assertEq(hub.lastCheckpointId(), 1);
        (bytes32 root, uint256 total, uint64 seq, uint64 at, uint256 inflows) = hub.checkpoints(1);
        assertEq(root, keccak256(abi.encode(uint64(1))), "root");
        assertEq(total, 1_000 ether);
        assertEq(uint256(seq), 10);
        assertEq(uint256(at), 99);
        assertEq(inflows, 0);
    }

    /// Gas of posting a checkpoint (execution; a transaction adds 21,000 and its calldata),
    /// the first and a later one. The README quotes these.
    function test_gas_of_a_checkpoint() public {
        fundReserve(1_000 ether);
        vm.roll(200);
        vm.startPrank(hubAddr);
        uint256 before = gasleft();
        InfHubCheckpoints(address(hub)).postCheckpoint(1, keccak256("root 1"), 500 ether, 10, 150, 0);
        uint256 first = before - gasleft();
        before = gasleft();
        InfHubCheckpoints(address(hub)).postCheckpoint(2, keccak256("root 2"), 600 ether, 20, 160, 0);
        uint256 later = before - gasleft();
        vm.stopPrank();
        emit log_named_uint("postCheckpoint gas, first", first);
        emit log_named_uint("postCheckpoint gas, later", later);
        assertTrue(later < 150_000, "a checkpoint stays cheap");
    }

    function test_an_announced_reserve_withdrawal_is_not_backing() public {
        fundReserve(1_000 ether);
        vm.prank(hubAddr);
        hub.announceReserveWithdrawal(300 ether);
        expectPostRevert(InfHubBase.CheckpointInsolvent.selector, 1, 700 ether + 1, 1, 99, 0);
        post(1, 700 ether, 1, 99, 0);
    }

    function test_custodial_deposits_after_the_trees_block_are_not_backing() public {
        fundReserve(1_000 ether);
        // 200 arrive for a custodial account after the ledger's block: the tree cannot owe them yet.
        vm.prank(alice);
        hub.depositFor(alice, 200 ether);
        assertEq(hub.liabilityInflowsTotal(), 200 ether);
        expectPostRevert(InfHubBase.CheckpointInsolvent.selector, 1, 1_000 ether + 1, 1, 99, 0);
        post(1, 1_000 ether, 1, 99, 0);
        // The same tree counting the deposit: 1,200 of liability against 1,200 of reserve.
        post(2, 1_200 ether, 2, 99, 200 ether);
        expectPostRevert(InfHubBase.CheckpointInsolvent.selector, 3, 1_200 ether + 1, 3, 99, 200 ether);
    }

    function test_realizations_after_the_trees_block_are_not_backing() public {
        fundReserve(100 ether);
        open(alice);
        depositAs(alice, 50 ether);
        InfHubBase.Debit memory d = debit(alice, 1, 40 ether, 40 ether);
        bytes memory sig = signDebit(ALICE_PK, d);
        vm.prank(hubAddr);
        hub.realizeDebit(d, sig);
        // The reserve grew by 40 and so did the payee's liability the tree does not hold yet.
        assertEq(hub.reserve(), 140 ether);
        assertEq(hub.liabilityInflowsTotal(), 40 ether);
        expectPostRevert(InfHubBase.CheckpointInsolvent.selector, 1, 100 ether + 1, 1, 99, 0);
        post(1, 100 ether, 1, 99, 0);
        post(2, 140 ether, 2, 99, 40 ether);
    }

    function test_checkpoints_come_in_order_and_never_from_the_future() public {
        fundReserve(1_000 ether);
        expectPostRevert(InfHubBase.CheckpointOutOfOrder.selector, 2, 1, 1, 50, 0);
        expectPostRevert(InfHubBase.CheckpointFromTheFuture.selector, 1, 1, 1, uint64(block.number), 0);
        expectPostRevert(InfHubBase.CheckpointFromTheFuture.selector, 1, 1, 1, 50, 1);
        post(1, 1, 10, 50, 0);
        expectPostRevert(InfHubBase.CheckpointOutOfOrder.selector, 1, 1, 10, 50, 0);
        expectPostRevert(InfHubBase.CheckpointOutOfOrder.selector, 2, 1, 9, 50, 0);
        expectPostRevert(InfHubBase.CheckpointOutOfOrder.selector, 2, 1, 10, 49, 0);
        expectPostRevert(InfHubBase.AmountTooLarge.selector, 2, uint256(type(uint168).max) + 1, 10, 50, 0);
        post(2, 1, 10, 50, 0);
        vm.prank(alice);
        vm.expectRevert(InfHubBase.OnlyHub.selector);
        InfHubCheckpoints(address(hub)).postCheckpoint(3, bytes32(0), 0, 10, 50, 0);
    }

    /// Whatever the figures, a checkpoint is accepted exactly when the reserve covers the
    /// liability, the announced withdrawal and the late custodial deposits.
    function testFuzz_a_checkpoint_is_accepted_exactly_when_the_reserve_covers_it(
        uint96 reserve,
        uint96 liability,
        uint96 announced,
        uint96 late
    ) public {
        reserve = uint96(bound(reserve, 1, 1e24));
        fundReserve(reserve);
        announced = uint96(bound(announced, 0, reserve));
        if (announced != 0) {
            vm.prank(hubAddr);
            hub.announceReserveWithdrawal(announced);
        }
        late = uint96(bound(late, 0, 1e23));
        if (late != 0) {
            vm.prank(alice);
            hub.depositFor(alice, late);
        }
        uint256 need = uint256(liability) + announced + late;
        if (need > hub.reserve()) {
            expectPostRevert(InfHubBase.CheckpointInsolvent.selector, 1, liability, 1, 99, 0);
        } else {
            post(1, liability, 1, 99, 0);
            assertEq(hub.lastCheckpointId(), 1);
        }
    }

    // ------------------------------------------------------------ paths, from the Rust vectors

    function leafAt(string memory json, uint256 i) internal pure returns (InfHubBase.CheckpointLeaf memory l) {
        string memory p = string.concat(".cases[", vm.toString(i), "].");
        l.account = vm.parseJsonAddress(json, string.concat(p, "account"));
        l.kind = uint8(vm.parseJsonUint(json, string.concat(p, "kind")));
        l.epoch = uint64(vm.parseJsonUint(json, string.concat(p, "epoch")));
        l.deposited = uint128(vm.parseJsonUint(json, string.concat(p, "deposited")));
        l.withdrawn = uint128(vm.parseJsonUint(json, string.concat(p, "withdrawn")));
        l.creditNonce = uint64(vm.parseJsonUint(json, string.concat(p, "creditNonce")));
        l.creditTotal = uint128(vm.parseJsonUint(json, string.concat(p, "creditTotal")));
        l.debitNonce = uint64(vm.parseJsonUint(json, string.concat(p, "debitNonce")));
        l.debitTotal = uint128(vm.parseJsonUint(json, string.concat(p, "debitTotal")));
        l.liability = uint128(vm.parseJsonUint(json, string.concat(p, "liability")));
        l.salt = vm.parseJsonBytes32(json, string.concat(p, "salt"));
    }

    function siblingsAt(string memory json, uint256 i) internal pure returns (InfHubBase.SumNode[] memory s) {
        string memory p = string.concat(".cases[", vm.toString(i), "].");
        uint256 depth = vm.parseJsonUint(json, string.concat(p, "depth"));
        s = new InfHubBase.SumNode[](depth);
        for (uint256 j = 0; j < depth; j++) {
            string memory q = string.concat(p, "siblings[", vm.toString(j), "].");
            s[j] = InfHubBase.SumNode(
                vm.parseJsonBytes32(json, string.concat(q, "hash")), vm.parseJsonUint(json, string.concat(q, "sum"))
            );
        }
    }

    function test_the_contract_proves_exactly_the_paths_the_core_proves() public {
        string memory json = vm.readFile(string.concat(vm.projectRoot(), VECTORS));
        assertEq(block.chainid, vm.parseJsonUint(json, ".chainId"), "chain id");
        // The hub contract at the vectors' address, with a reserve for their total liability.
        InfHub deployed = deployHub(token, hubAddr, CHALLENGE, NOTICE, registry);
        InfHub at = InfHub(vm.parseJsonAddress(json, ".contract"));
        vm.etch(address(at), address(deployed).code);
        token.mint(hubAddr, 2 * uint256(type(uint128).max));
        vm.startPrank(hubAddr);
        token.approve(address(at), type(uint256).max);
        at.depositReserve(type(uint128).max);
        at.depositReserve(type(uint128).max);
        uint64 id = uint64(vm.parseJsonUint(json, ".checkpointId"));
        InfHubCheckpoints(address(at)).postCheckpoint(
            id, vm.parseJsonBytes32(json, ".root"), vm.parseJsonUint(json, ".totalLiability"), 1, uint64(block.number - 1), 0
        );
        vm.stopPrank();
        uint256 count = vm.parseJsonUint(json, ".count");
        assertTrue(count >= 10, "too few checkpoint vectors");
        for (uint256 i = 0; i < count; i++) {
            string memory p = string.concat(".cases[", vm.toString(i), "].");
            InfHubBase.CheckpointLeaf memory l = leafAt(json, i);
            InfHubBase.SumNode[] memory s = siblingsAt(json, i);
            uint256 index = vm.parseJsonUint(json, string.concat(p, "index"));
            string memory expect = vm.parseJsonString(json, string.concat(p, "expect"));
            string memory where = string.concat("case ", vm.toString(i), " (", expect, ")");
            assertEq(checkpointLeafHash(at, id, l), vm.parseJsonBytes32(json, string.concat(p, "leafHash")), where);
            (bool ok, bytes memory ret) = address(at).staticcall(abi.encodeCall(InfHubCheckpoints.proveCheckpointLeaf, (id, l, index, s)));
            if (keccak256(bytes(expect)) == keccak256("ok")) {
                assertTrue(ok && abi.decode(ret, (bool)), string.concat(where, ": the core proves it, the contract does not"));
            } else {
                bytes4 want = bytes4(keccak256(bytes(string.concat(expect, "()"))));
                assertTrue(!ok && ret.length >= 4 && bytes4(ret) == want, string.concat(where, ": refused otherwise"));
            }
        }
    }
}
