// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title LockLeaf
/// @notice The leaf of a pending multi-hop lock under a proof's `locksRoot` (spec §5.17): an
/// EIP-712 struct hashed in the channel contract's domain, so a lock of one contract or chain is
/// not one of another. Its tree is the one batched hub signatures use (sorted pairs), so
/// OpenZeppelin's `MerkleProof` proves a leaf.
library LockLeaf {
    bytes32 internal constant LOCK_TYPEHASH =
        keccak256("Lock(bytes32 lockId,uint128 amount,uint64 expiryBlock,address point)");

    /// The leaf of a lock in the domain whose separator is `domainSeparator`.
    function digest(bytes32 domainSeparator, bytes32 lockId, uint128 amount, uint64 expiryBlock, address point)
        internal
        pure
        returns (bytes32)
    {
        bytes32 structHash = keccak256(abi.encode(LOCK_TYPEHASH, lockId, amount, expiryBlock, point));
        return keccak256(abi.encodePacked(hex"1901", domainSeparator, structHash));
    }
}
