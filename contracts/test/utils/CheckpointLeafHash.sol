// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {InfHub} from "../../src/InfHub.sol";
import {InfHubBase} from "../../src/InfHubBase.sol";

/// The hash of `leaf` in checkpoint `id` of `hub` (spec 5.16), as the contract computes it
/// internally: keccak256(abi.encode(typehash, chainId, contract, id, account, kind) ++
/// abi.encode(epoch, deposited, withdrawn, creditNonce, creditTotal, debitNonce, debitTotal,
/// liability, salt)). The shared vectors pin it against the Rust core.
function checkpointLeafHash(InfHub hub, uint64 id, InfHubBase.CheckpointLeaf memory leaf) view returns (bytes32) {
    bytes memory head = abi.encode(hub.CHECKPOINT_LEAF_TYPEHASH(), block.chainid, address(hub), id, leaf.account, leaf.kind);
    bytes memory figures = abi.encode(
        leaf.epoch,
        leaf.deposited,
        leaf.withdrawn,
        leaf.creditNonce,
        leaf.creditTotal,
        leaf.debitNonce,
        leaf.debitTotal,
        leaf.liability,
        leaf.salt
    );
    return keccak256(bytes.concat(head, figures));
}
