// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {InfHubBase} from "./InfHubBase.sol";

/// @title InfHubCheckpoints: checkpoints of the hub's books and the complaints that enforce them.
/// @notice Spec 5.16. Runs only as InfHub's module: InfHub DELEGATECALLs it for these functions,
/// so its code works on InfHub's storage, balance and address (events come from InfHub, leaves
/// and signatures are bound to InfHub). Called directly it works on its own empty storage and
/// holds nothing, which is harmless. Declares no storage of its own (see InfHubBase).
contract InfHubCheckpoints is InfHubBase {
    /// The settlement module: what this module lacks runs there, on InfHub's storage too.
    address public immutable settlementModule;

    constructor(
        IERC20 token_,
        address hub_,
        uint64 challengePeriodBlocks_,
        uint64 reserveNoticeBlocks_,
        address settlementModule_
    ) InfHubBase(token_, hub_, challengePeriodBlocks_, reserveNoticeBlocks_) {
        settlementModule = settlementModule_;
    }

    /// Every function this module lacks runs in the settlement module (still on InfHub's
    /// storage: a DELEGATECALL from a DELEGATECALL keeps the caller's context).
    fallback() external {
        _delegateTo(settlementModule);
    }

    // ================================================================ checkpoints (spec 5.16)

    /// The hub posts a checkpoint of its books: the root of a Merkle-sum tree whose sum is its
    /// total liability as of its ledger at `ledgerSeq` and its confirmed block `chainBlock`, and
    /// the contract's `liabilityInflowsTotal` as of that block. Refused unless the reserve covers
    /// the liability, the pending reserve withdrawal and every liability-bearing inflow since
    /// `chainBlock` (which the tree cannot hold yet): solvency checked on chain, not claimed.
    function postCheckpoint(
        uint64 id,
        bytes32 root,
        uint256 totalLiability,
        uint64 ledgerSeq,
        uint64 chainBlock,
        uint256 inflowsThrough
    ) external onlyHub {
        if (haltedAtCheckpoint != 0) revert HubHalted();
        Checkpoint storage prev = checkpoints[lastCheckpointId];
        if (id != lastCheckpointId + 1) revert CheckpointOutOfOrder();
        if (ledgerSeq < prev.ledgerSeq || chainBlock < prev.chainBlock || inflowsThrough < prev.inflowsThrough) {
            revert CheckpointOutOfOrder();
        }
        if (chainBlock >= block.number || inflowsThrough > liabilityInflowsTotal) revert CheckpointFromTheFuture();
        if (totalLiability > MAX_CHECKPOINT_LIABILITY) revert AmountTooLarge();
        uint256 need = totalLiability + pendingReserveWithdrawal.amount + (liabilityInflowsTotal - inflowsThrough);
        if (need > reserve) revert CheckpointInsolvent();
        lastCheckpointId = id;
        checkpoints[id] = Checkpoint(root, totalLiability, ledgerSeq, chainBlock, inflowsThrough);
        emit CheckpointPosted(id, root, totalLiability, ledgerSeq, chainBlock, inflowsThrough, reserve);
    }

    /// The hash of `leaf` in checkpoint `id` of this contract on this chain (internal: the
    /// contract is at its size limit; tests and the core compute the same encoding).
    function _checkpointLeafHash(uint64 id, CheckpointLeaf calldata leaf) internal view returns (bytes32) {
        bytes memory head = abi.encode(CHECKPOINT_LEAF_TYPEHASH, block.chainid, address(this), id, leaf.account, leaf.kind);
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

    /// Ok if `leaf` at position `index` with `siblings` (bottom up) leads to checkpoint `id`'s
    /// root and total; reverts with the rule a bad path breaks.
    function proveCheckpointLeaf(uint64 id, CheckpointLeaf calldata leaf, uint256 index, SumNode[] calldata siblings)
        external
        view
        returns (bool)
    {
        _proveLeaf(id, leaf, index, siblings);
        return true;
    }

    function _proveLeaf(uint64 id, CheckpointLeaf calldata leaf, uint256 index, SumNode[] calldata siblings)
        internal
        view
    {
        Checkpoint storage c = checkpoints[id];
        if (id == 0 || id > lastCheckpointId) revert CheckpointOutOfOrder();
        (bytes32 hash, uint256 sum) = _checkpointRoot(_checkpointLeafHash(id, leaf), leaf.liability, index, siblings);
        if (hash != c.root || sum != c.totalLiability) revert RootMismatch();
    }

    /// Anyone proves that checkpoint `id` misstates a channel: its leaf (proved into the root)
    /// and a credit the hub signed for that user and epoch contradict each other (the same
    /// nonce with another total; or a higher total with a lower nonce, or with a nonce at most
    /// the checkpoint's ledgerSeq, so a credit it had to count). The hub is halted.
    function complainContradictedCredit(
        uint64 id,
        CheckpointLeaf calldata leaf,
        uint256 index,
        SumNode[] calldata siblings,
        Credit calldata credit,
        bytes calldata hubSignature
    ) external {
        _proveLeaf(id, leaf, index, siblings);
        if (leaf.kind != 0 || credit.user != leaf.account || credit.epoch != leaf.epoch) revert ComplaintUnfounded();
        // A credit's nonce is its ledger position: the checkpoint must count every credit up to
        // its ledgerSeq, and totals rise with nonces.
        bool contradicts = credit.nonce == leaf.creditNonce
            ? credit.cumulativeCredit != leaf.creditTotal
            : credit.cumulativeCredit > leaf.creditTotal
                && (credit.nonce < leaf.creditNonce || credit.nonce <= checkpoints[id].ledgerSeq);
        if (!contradicts) revert ComplaintUnfounded();
        _requireHubProof(hashCredit(credit), hubSignature);
        _halt(id, leaf.account);
    }

    /// Anyone proves that checkpoint `id` states chain totals the chain contradicts for a
    /// channel's current epoch: more withdrawn than the channel has ever withdrawn, or less
    /// deposited than it holds although its last deposit came at or before the checkpoint's
    /// chainBlock. Either lowers the leaf's claim and hides liability. The hub is halted.
    function complainMisstatedChainTotals(
        uint64 id,
        CheckpointLeaf calldata leaf,
        uint256 index,
        SumNode[] calldata siblings
    ) external {
        _proveLeaf(id, leaf, index, siblings);
        Channel storage ch = channels[leaf.account];
        if (leaf.kind != 0 || leaf.epoch != ch.epoch) revert ComplaintUnfounded();
        bool contradicts = leaf.withdrawn > ch.withdrawn
            || (leaf.deposited < ch.deposited && ch.lastDepositBlock <= checkpoints[id].chainBlock);
        if (!contradicts) revert ComplaintUnfounded();
        _halt(id, leaf.account);
    }

    /// The user disputes the debit total her channel leaf in checkpoint `id` states: the hub
    /// must answer with a debit she signed of that total or more within the challenge period.
    /// One challenge open per account, checkpoints in increasing id.
    function challengeDebit(uint64 id, CheckpointLeaf calldata leaf, uint256 index, SumNode[] calldata siblings)
        external
    {
        _proveLeaf(id, leaf, index, siblings);
        if (leaf.kind != 0 || leaf.account != msg.sender) revert UserMismatch();
        if (leaf.debitTotal == 0) revert ComplaintUnfounded();
        // Only a leaf of the open channel's epoch: the hub answers from its books of the epoch
        // it follows, and the answer period ends before a close begun now could settle.
        Channel storage ch = channels[msg.sender];
        if (ch.status != Status.Open) revert ChannelNotOpen();
        if (leaf.epoch != ch.epoch) revert EpochMismatch();
        DebitChallenge storage c = debitChallenges[msg.sender];
        if (c.open || id <= c.checkpointId) revert DebitChallengeOutOfOrder();
        uint64 answerBy = uint64(block.number) + challengePeriodBlocks;
        debitChallenges[msg.sender] = DebitChallenge(id, leaf.epoch, answerBy, true, leaf.debitTotal);
        emit DebitChallenged(id, msg.sender, leaf.epoch, leaf.debitTotal, answerBy);
    }

    /// Anyone (the hub, in practice) answers the open challenge of `debit.user` with a debit
    /// she signed of the challenged epoch and at least the challenged total, in time.
    function answerDebitChallenge(Debit calldata debit, bytes calldata userSignature) external {
        DebitChallenge storage c = debitChallenges[debit.user];
        if (!c.open) revert NoDebitChallenge();
        if (block.number > c.answerByBlock) revert ChallengePeriodOver();
        if (debit.epoch != c.epoch) revert EpochMismatch();
        if (debit.cumulativeDebit < c.debitTotal) revert AnswerMustCoverDebit();
        _requireSigner(hashDebit(debit), userSignature, debit.user);
        c.open = false;
        emit DebitChallengeAnswered(c.checkpointId, debit.user, debit.nonce, debit.cumulativeDebit);
    }

    /// Once a debit challenge's answer period is over unanswered, anyone halts the hub: it
    /// stated a debit it cannot show.
    function haltOnUnansweredChallenge(address account) external {
        DebitChallenge storage c = debitChallenges[account];
        if (!c.open) revert NoDebitChallenge();
        if (block.number <= c.answerByBlock) revert ChallengePeriodNotOver();
        c.open = false;
        _halt(c.checkpointId, account);
    }

    /// Records the first proven fault (later ones change nothing but their event).
    function _halt(uint64 id, address account) internal {
        if (haltedAtCheckpoint == 0) haltedAtCheckpoint = id;
        emit HubHaltedByComplaint(id, account, msg.sender);
    }

    /// A user who lost her proofs starts her exit with her channel leaf of checkpoint `id`: its
    /// credit nonce and total stand for a hub-signed credit (the hub posted the root).
    function startExitFromCheckpoint(uint64 id, CheckpointLeaf calldata leaf, uint256 index, SumNode[] calldata siblings)
        external
    {
        _proveLeaf(id, leaf, index, siblings);
        if (leaf.kind != 0 || leaf.account != msg.sender) revert UserMismatch();
        Channel storage ch = _beginClose(msg.sender);
        if (leaf.epoch != ch.epoch) revert EpochMismatch();
        if (leaf.creditNonce != 0) {
            ch.credit = Side(leaf.creditNonce, leaf.creditTotal, 0, bytes32(0));
            emit CreditSubmitted(msg.sender, leaf.epoch, leaf.creditNonce, leaf.creditTotal, msg.sender);
        }
        _refreshReserveDraw(ch, msg.sender);
    }

    function _checkpointRoot(bytes32 leafHash, uint256 liability, uint256 index, SumNode[] calldata siblings)
        internal
        pure
        returns (bytes32 hash, uint256 sum)
    {
        uint256 depth = siblings.length;
        if (depth > MAX_CHECKPOINT_DEPTH) revert PathTooLong();
        if (index >> depth != 0) revert PathIndexOutOfRange();
        (hash, sum) = (leafHash, liability);
        for (uint256 level = 0; level < depth; level++) {
            SumNode calldata s = siblings[level];
            // A subtree of height `level` holds at most 2^level leaves of at most uint128 each.
            if (s.sum > uint256(type(uint128).max) << level) revert SumOutOfRange();
            if ((index >> level) & 1 == 0) {
                hash = keccak256(abi.encode(CHECKPOINT_NODE_TAG, hash, sum, s.hash, s.sum));
            } else {
                hash = keccak256(abi.encode(CHECKPOINT_NODE_TAG, s.hash, s.sum, hash, sum));
            }
            sum += s.sum;
        }
    }

}
