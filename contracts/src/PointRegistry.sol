// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title PointRegistry
/// @notice One per chain: the block at which each multi-hop lock's point was first revealed
/// (spec §5.17, D42). A lock opens on a secp256k1 point `T = t·G`, named by its Ethereum
/// address, when its scalar `t` is revealed here no later than the lock's expiry block. A
/// scalar is checked with one `ecrecover`: `address(t·G) == ecrecover(0, 27, Gx, Gx·t mod n)`.
/// A reveal is recorded at the block it is mined and never moved: revealing a point again
/// changes nothing, so no one can push a reveal past an expiry, or pull one before it.
/// The contract holds no money and has no owner.
contract PointRegistry {
    /// The order of secp256k1's group.
    uint256 internal constant GROUP_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;
    /// The x-coordinate of the generator G (its y-coordinate is even: `v` = 27).
    uint256 internal constant GENERATOR_X = 0x79BE667EF9DCBBAC55A06295CE870B07029BFCDB2DCE28D959F2815B16F81798;
    /// Most scalars one call reveals (`revealBatch`, or a scalar and its upstream steps).
    uint256 public constant MAX_REVEALS_PER_CALL = 256;

    /// The block of each point's first reveal (0: never revealed).
    mapping(address point => uint256 blockNumber) public revealedAt;

    /// A point's first reveal; the scalar is public from here on.
    event PointRevealed(address indexed point, uint256 scalar);

    /// A scalar (or a step upstream) is 0 or not below the group order.
    error ScalarOutOfRange();
    /// More than `MAX_REVEALS_PER_CALL` scalars in one call.
    error TooManyReveals();

    /// The address of `scalar·G`, the point the scalar opens.
    function pointOf(uint256 scalar) public pure returns (address point) {
        if (scalar == 0 || scalar >= GROUP_ORDER) revert ScalarOutOfRange();
        point = ecrecover(bytes32(0), 27, bytes32(GENERATOR_X), bytes32(mulmod(GENERATOR_X, scalar, GROUP_ORDER)));
        // A scalar in range always recovers a point; the zero address would be a bug.
        assert(point != address(0));
    }

    /// Reveals `scalar`, recording its point at this block unless it was revealed before.
    function reveal(uint256 scalar) external returns (address point) {
        point = pointOf(scalar);
        _record(point, scalar);
    }

    /// Reveals several scalars at once (a hub settling many locks).
    function revealBatch(uint256[] calldata scalars) external {
        if (scalars.length > MAX_REVEALS_PER_CALL) revert TooManyReveals();
        for (uint256 i = 0; i < scalars.length; i++) {
            _record(pointOf(scalars[i]), scalars[i]);
        }
    }

    /// Reveals `scalar` and then, for each tweak in turn, the scalar one hop upstream
    /// (`t − y mod n`): a hop that learned its downstream scalar and holds its tweak reveals its
    /// upstream point in the same call. Returns the most upstream point.
    function revealUpstream(uint256 scalar, uint256[] calldata tweaks) external returns (address point) {
        if (tweaks.length >= MAX_REVEALS_PER_CALL) revert TooManyReveals();
        point = pointOf(scalar);
        _record(point, scalar);
        for (uint256 i = 0; i < tweaks.length; i++) {
            uint256 tweak = tweaks[i];
            if (tweak == 0 || tweak >= GROUP_ORDER) revert ScalarOutOfRange();
            scalar = addmod(scalar, GROUP_ORDER - tweak, GROUP_ORDER);
            point = pointOf(scalar);
            _record(point, scalar);
        }
    }

    /// Whether `point` was revealed no later than `expiryBlock` (the rule a lock opens by).
    function isRevealedBy(address point, uint256 expiryBlock) external view returns (bool) {
        uint256 at = revealedAt[point];
        return at != 0 && at <= expiryBlock;
    }

    function _record(address point, uint256 scalar) internal {
        if (revealedAt[point] != 0) return;
        revealedAt[point] = block.number;
        emit PointRevealed(point, scalar);
    }
}
