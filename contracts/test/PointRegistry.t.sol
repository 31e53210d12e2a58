// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Test} from "./utils/Test.sol";
import {PointRegistry} from "../src/PointRegistry.sol";
import {LockLeaf} from "../src/LockLeaf.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

/// The point registry (spec §5.17, D42) against the Rust core's vectors
/// (test-vectors/point-lock-vectors.json) and against forge's own key arithmetic (`vm.addr(t)`
/// is the address of `t·G`): reveals record the first block and never move, scalars out of range
/// are refused by name, a route's scalars walk upstream to the invoice's, and lock leaves hash
/// and prove as in Rust.
contract PointRegistryTest is Test {
    string internal constant VECTORS = "/../test-vectors/point-lock-vectors.json";
    uint256 internal constant N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;
    uint256 internal constant GX = 0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798;

    event PointRevealed(address indexed point, uint256 scalar);
    event log_named_uint(string key, uint256 val);

    PointRegistry internal registry;
    string internal json;

    function setUp() public {
        registry = new PointRegistry();
        json = vm.readFile(string.concat(vm.projectRoot(), VECTORS));
        vm.roll(100);
    }

    function test_every_scalar_of_the_vectors_reveals_the_point_rust_computed() public {
        for (uint256 i = 0; i < 6; i++) {
            string memory p = string.concat(".reveals[", vm.toString(i), "].");
            uint256 t = vm.parseJsonUint(json, string.concat(p, "scalar"));
            address point = vm.parseJsonAddress(json, string.concat(p, "point"));
            assertEq(mulmod(GX, t, N), vm.parseJsonUint(json, string.concat(p, "s")), "ecrecover's s");
            assertEq(registry.pointOf(t), point, "pointOf");
            assertEq(vm.addr(t), point, "forge's t*G");
            vm.expectEmit(true, false, false, true, address(registry));
            emit PointRevealed(point, t);
            assertEq(registry.reveal(t), point, "reveal returns the point");
            assertEq(registry.revealedAt(point), 100, "recorded at this block");
        }
    }

    function test_scalars_out_of_range_are_refused_as_rust_refuses_them() public {
        for (uint256 i = 0; i < 4; i++) {
            string memory p = string.concat(".refused[", vm.toString(i), "].");
            uint256 t = vm.parseJsonUint(json, string.concat(p, "scalar"));
            assertEq(vm.parseJsonString(json, string.concat(p, "expect")), "ScalarOutOfRange", "Rust's verdict");
            vm.expectRevert(PointRegistry.ScalarOutOfRange.selector);
            registry.reveal(t);
        }
    }

    /// The parity byte matters: v = 28 recovers −t·G, the point of n − t, another lock.
    function test_the_other_parity_names_the_negated_point() public pure {
        uint256 t = 7;
        address other = ecrecover(bytes32(0), 28, bytes32(GX), bytes32(mulmod(GX, t, N)));
        assertEq(other, vm.addr(N - t), "v = 28 gives -t*G");
        assertTrue(other != vm.addr(t), "not t*G");
    }

    function test_a_route_walks_upstream_to_the_invoice_scalar_in_one_call() public {
        uint256 payee = vm.parseJsonUint(json, ".route.payeeScalar");
        uint256[] memory tweaks = vm.parseJsonUintArray(json, ".route.tweaksDownstreamFirst");
        address[] memory points = vm.parseJsonAddressArray(json, ".route.pointsUpstream");
        uint256[] memory scalars = vm.parseJsonUintArray(json, ".route.scalarsUpstream");
        assertEq(points.length, tweaks.length + 1, "a point per link");
        address payer = registry.revealUpstream(payee, tweaks);
        assertEq(payer, points[points.length - 1], "the invoice's point");
        for (uint256 i = 0; i < points.length; i++) {
            assertEq(registry.revealedAt(points[i]), 100, "every link's point revealed at once");
            assertEq(vm.addr(scalars[i]), points[i], "Rust's scalar for the link");
        }
    }

    function test_a_reveal_never_moves_and_a_point_never_revealed_opens_nothing() public {
        address point = registry.reveal(42);
        vm.roll(500);
        registry.reveal(42);
        uint256[] memory again = new uint256[](2);
        again[0] = 42;
        again[1] = 43;
        registry.revealBatch(again);
        assertEq(registry.revealedAt(point), 100, "the first reveal stands");
        assertEq(registry.revealedAt(vm.addr(43)), 500, "the new one at its block");
        assertTrue(registry.isRevealedBy(point, 100), "opens at its expiry block");
        assertTrue(!registry.isRevealedBy(point, 99), "not before it was revealed");
        assertTrue(!registry.isRevealedBy(vm.addr(44), type(uint256).max), "never revealed");
        assertTrue(!registry.isRevealedBy(address(0), type(uint256).max), "the zero address");
    }

    function test_limits_and_a_step_to_zero_are_refused() public {
        uint256[] memory many = new uint256[](257);
        for (uint256 i = 0; i < many.length; i++) {
            many[i] = i + 1;
        }
        vm.expectRevert(PointRegistry.TooManyReveals.selector);
        registry.revealBatch(many);
        uint256[] memory steps = new uint256[](256);
        for (uint256 i = 0; i < steps.length; i++) {
            steps[i] = 1;
        }
        vm.expectRevert(PointRegistry.TooManyReveals.selector);
        registry.revealUpstream(1_000, steps);
        uint256[] memory toZero = new uint256[](1);
        toZero[0] = 5;
        vm.expectRevert(PointRegistry.ScalarOutOfRange.selector);
        registry.revealUpstream(5, toZero);
        toZero[0] = 0;
        vm.expectRevert(PointRegistry.ScalarOutOfRange.selector);
        registry.revealUpstream(5, toZero);
        toZero[0] = N;
        vm.expectRevert(PointRegistry.ScalarOutOfRange.selector);
        registry.revealUpstream(5, toZero);
    }

    function test_lock_leaves_hash_and_prove_as_in_rust() public view {
        bytes32 separator = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256("InfHub"),
                keccak256("1"),
                vm.parseJsonUint(json, ".locks.chainId"),
                vm.parseJsonAddress(json, ".locks.contract")
            )
        );
        bytes32 root = vm.parseJsonBytes32(json, ".locks.root");
        for (uint256 i = 0; i < 5; i++) {
            string memory p = string.concat(".locks.leaves[", vm.toString(i), "].");
            bytes32 leaf = LockLeaf.digest(
                separator,
                vm.parseJsonBytes32(json, string.concat(p, "lockId")),
                uint128(vm.parseJsonUint(json, string.concat(p, "amount"))),
                uint64(vm.parseJsonUint(json, string.concat(p, "expiryBlock"))),
                vm.parseJsonAddress(json, string.concat(p, "point"))
            );
            assertEq(leaf, vm.parseJsonBytes32(json, string.concat(p, "digest")), "leaf digest");
            bytes32[] memory path = vm.parseJsonBytes32Array(json, string.concat(p, "path"));
            assertTrue(MerkleProof.verify(path, root, leaf), "the path proves the leaf");
            bytes32 other = LockLeaf.digest(separator, bytes32(0), 1, 1, address(1));
            assertTrue(!MerkleProof.verify(path, root, other), "another leaf does not prove");
        }
    }

    /// Any scalar in range: the registry's point is forge's `t·G`.
    function testFuzz_pointOf_is_t_times_G(uint256 t) public view {
        t = bound(t, 1, N - 1);
        assertEq(registry.pointOf(t), vm.addr(t), "pointOf(t)");
    }

    /// A step upstream reveals exactly the point of `t − y mod n`, at the same block.
    function testFuzz_an_upstream_step_reveals_t_minus_y(uint256 t, uint256 y) public {
        t = bound(t, 1, N - 1);
        y = bound(y, 1, N - 1);
        vm.assume(t != y);
        uint256[] memory tweaks = new uint256[](1);
        tweaks[0] = y;
        address up = registry.revealUpstream(t, tweaks);
        uint256 expected = t > y ? t - y : N - (y - t);
        assertEq(up, vm.addr(expected), "t - y");
        assertEq(registry.revealedAt(vm.addr(t)), 100, "t revealed");
        assertEq(registry.revealedAt(up), 100, "t - y revealed");
    }

    /// Gas (execution; a transaction adds 21,000 and its calldata) of a reveal, a batch of 16,
    /// and a reveal with one upstream step, against Raiden's `registerSecret` (46,181).
    function test_gas_of_reveals() public {
        uint256 g = gasleft();
        registry.reveal(1_001);
        emit log_named_uint("gas reveal", g - gasleft());
        uint256[] memory batch = new uint256[](16);
        for (uint256 i = 0; i < 16; i++) {
            batch[i] = 2_000 + i;
        }
        g = gasleft();
        registry.revealBatch(batch);
        emit log_named_uint("gas revealBatch of 16", g - gasleft());
        uint256[] memory step = new uint256[](1);
        step[0] = 5;
        g = gasleft();
        registry.revealUpstream(3_001, step);
        emit log_named_uint("gas reveal with one upstream step", g - gasleft());
    }
}

/// Random reveals at random blocks by anyone: a recorded block never changes, is never in the
/// future and is the block of the point's first reveal.
contract RevealHandler is Test {
    PointRegistry public registry;
    uint256[] public scalars;
    mapping(address => uint256) public firstSeen;
    uint256 public moved;

    constructor(PointRegistry r) {
        registry = r;
    }

    function scalarCount() external view returns (uint256) {
        return scalars.length;
    }

    function reveal(uint256 seed, uint256 blocks) external {
        vm.roll(block.number + bound(blocks, 0, 50));
        // A small space of scalars, so points are revealed again and again.
        uint256 t = bound(seed, 1, 40);
        address point = registry.reveal(t);
        note(point, t);
    }

    function revealUpstream(uint256 seed, uint256 tweakSeed, uint256 blocks) external {
        vm.roll(block.number + bound(blocks, 0, 50));
        uint256 t = bound(seed, 21, 40);
        uint256 y = bound(tweakSeed, 1, 20);
        uint256[] memory tweaks = new uint256[](1);
        tweaks[0] = y;
        registry.revealUpstream(t, tweaks);
        note(vm.addr(t), t);
        note(vm.addr(t - y), t - y);
    }

    function note(address point, uint256 t) internal {
        if (firstSeen[point] == 0) {
            firstSeen[point] = block.number;
            scalars.push(t);
        }
        if (registry.revealedAt(point) != firstSeen[point]) moved += 1;
    }
}

contract PointRegistryInvariantTest is Test {
    PointRegistry internal registry;
    RevealHandler internal handler;

    function setUp() public {
        vm.roll(10);
        registry = new PointRegistry();
        handler = new RevealHandler(registry);
    }

    function targetContracts() public view returns (address[] memory targets) {
        targets = new address[](1);
        targets[0] = address(handler);
    }

    function invariant_a_reveal_is_recorded_at_its_first_block_and_never_moves() public view {
        assertEq(handler.moved(), 0, "a recorded reveal moved");
        for (uint256 i = 0; i < handler.scalarCount(); i++) {
            address point = vm.addr(handler.scalars(i));
            uint256 at = registry.revealedAt(point);
            assertEq(at, handler.firstSeen(point), "first reveal's block");
            assertTrue(at != 0 && at <= block.number, "recorded, not in the future");
        }
    }
}
