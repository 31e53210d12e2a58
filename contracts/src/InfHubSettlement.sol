// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {InfHubBase} from "./InfHubBase.sol";
import {LockLeaf} from "./LockLeaf.sol";
import {PointRegistry} from "./PointRegistry.sol";

/// @title InfHubSettlement: settlement and the locks of a close.
/// @notice Spec 5.11 and 5.11a. Runs only as InfHub's module (InfHub -> InfHubCheckpoints ->
/// here, each by DELEGATECALL), so it works on InfHub's storage, balance and address; called
/// directly it works on its own empty storage and holds nothing. Declares no storage of its own.
///
/// A lock is owed through the signed proof that carries it, not only through the proof the
/// contract stores: while a channel is closing, anyone registers a lock with the proof it is
/// under (once per proof and lock id); `settle` holds back in escrow what the registered locks
/// could still charge; after settlement `unlock` resolves each registration against the chain's
/// PointRegistry (revealed no later than its expiry, or expired) and pays the rise of the
/// direction's charge to its receiver, the rest of the escrow back to its sender once every
/// registration of the direction resolved. The charge is a maximum over proofs, not a sum, so a
/// lock settled off chain (it is in a later proof's total) is never paid twice.
contract InfHubSettlement is InfHubBase {
    using SafeERC20 for IERC20;

    /// The chain's point registry, where locks open.
    PointRegistry public immutable pointRegistry;

    constructor(
        IERC20 token_,
        address hub_,
        uint64 challengePeriodBlocks_,
        uint64 reserveNoticeBlocks_,
        PointRegistry pointRegistry_
    ) InfHubBase(token_, hub_, challengePeriodBlocks_, reserveNoticeBlocks_) {
        if (address(pointRegistry_) == address(0)) revert RegistryMustNotBeZero();
        pointRegistry = pointRegistry_;
    }

    // ================================================================ settlement (spec 5.11)

    /// After the challenge period anyone may settle; the user's claim goes to the user, less the
    /// fees towers earned defending it (Settled.paid is the whole claim paid, fees and escrow
    /// included). claim = deposited - withdrawn + cumulativeCredit - cumulativeDebit (floored
    /// at zero). What registered locks could still charge stays in escrow (LocksEscrowed): the
    /// user's locks from her claim, the hub's from the reserve that closing channels do not draw.
    function settle(address user) external {
        Channel storage ch = channels[user];
        if (ch.status != Status.Closing) revert ChannelNotClosing();
        if (block.number < ch.settleBlock) revert ChallengePeriodNotOver();
        (uint256 paid, uint256 shortfall, uint256 reserveAfter) = settlementOf(user);
        uint256 funds = _funds(ch);
        uint64 epoch = ch.epoch;
        totalChannelFunds -= funds;
        reservedForClosing -= ch.reserveDraw;
        ch.reserveDraw = 0;
        LockDirection[2] storage dirs = lockDirections[user][epoch];
        uint256 userEscrow = _openEscrow(dirs[USER_LOCKS], ch.debit.cumulative, paid);
        uint256 freeReserve = reserveAfter > reservedForClosing ? reserveAfter - reservedForClosing : 0;
        uint256 hubEscrow = _openEscrow(dirs[HUB_LOCKS], ch.credit.cumulative, freeReserve);
        reserve = reserveAfter - hubEscrow;
        totalEscrow += userEscrow + hubEscrow;
        ch.status = Status.Settled;
        ch.deposited = 0;
        ch.withdrawn = 0;
        ch.advancedFromReserve = 0;
        ch.realizedDebit = 0;
        uint256 toUser = _payTowerFees(user, epoch, paid - userEscrow);
        if (toUser != 0) token.safeTransfer(user, toUser);
        emit Settled(user, epoch, paid, shortfall, reserve);
        if (userEscrow != 0 || hubEscrow != 0) emit LocksEscrowed(user, epoch, userEscrow, hubEscrow);
    }

    /// Starts a direction's resolution at settlement: its charge is the stored total, and it
    /// escrows what its registered locks could add to that, at most `available`.
    function _openEscrow(LockDirection storage dir, uint128 storedCumulative, uint256 available)
        internal
        returns (uint256 escrow)
    {
        if (dir.potential <= storedCumulative) return 0;
        escrow = dir.potential - storedCumulative;
        if (escrow > available) escrow = available;
        dir.charge = storedCumulative;
        dir.escrow = escrow;
    }

    /// What settle(user) would pay now: (paid to user, unpaid shortfall, reserve afterwards),
    /// before the escrow of registered locks.
    function settlementOf(address user) public view returns (uint256 paid, uint256 shortfall, uint256 reserveAfter) {
        Channel storage ch = channels[user];
        uint256 claim = _claim(ch);
        uint256 available = _funds(ch) + reserve;
        paid = claim < available ? claim : available;
        shortfall = claim - paid;
        reserveAfter = available - paid;
    }

    // ================================================================ locks (spec 5.11a)

    /// Registers `lock`, under the user-signed debit's `locksRoot` (by `path`), while the
    /// channel is closing: the user pays the hub its amount if it opens. Anyone may call.
    function registerDebitLock(
        Debit calldata debit,
        bytes calldata userSignature,
        Lock calldata lock,
        bytes32[] calldata path
    ) external {
        Channel storage ch = channels[debit.user];
        _requireChallengeOpen(ch);
        if (debit.epoch != ch.epoch) revert EpochMismatch();
        bytes32 digest = hashDebit(debit);
        _requireSigner(digest, userSignature, debit.user);
        _recordLock(digest, debit.locksRoot, lock, path);
        _addToDirection(debit.user, debit.epoch, USER_LOCKS, digest, debit.cumulativeDebit, lock.amount);
        emit LockRegistered(debit.user, debit.epoch, USER_LOCKS, digest, lock.lockId, lock.amount, msg.sender);
    }

    /// Registers `lock`, under the hub-signed credit's `locksRoot` (by `path`; a direct or
    /// batched hub signature), while the channel is closing: the hub pays the user its amount
    /// if it opens. Anyone may call. The reserve that could pay it is kept from leaving.
    function registerCreditLock(
        Credit calldata credit,
        bytes calldata hubSignature,
        Lock calldata lock,
        bytes32[] calldata path
    ) external {
        Channel storage ch = channels[credit.user];
        _requireChallengeOpen(ch);
        if (credit.epoch != ch.epoch) revert EpochMismatch();
        bytes32 digest = hashCredit(credit);
        _requireHubProof(digest, hubSignature);
        _recordLock(digest, credit.locksRoot, lock, path);
        _addToDirection(credit.user, credit.epoch, HUB_LOCKS, digest, credit.cumulativeCredit, lock.amount);
        emit LockRegistered(credit.user, credit.epoch, HUB_LOCKS, digest, lock.lockId, lock.amount, msg.sender);
        _refreshReserveDraw(ch, credit.user);
    }

    /// Records `lock` under `proofDigest` once, after checking it is under `locksRoot`.
    function _recordLock(bytes32 proofDigest, bytes32 locksRoot, Lock calldata lock, bytes32[] calldata path) internal {
        if (lock.amount == 0) revert AmountMustNotBeZero();
        if (path.length > MAX_LOCK_PATH_DEPTH) revert PathTooLong();
        bytes32 leaf = LockLeaf.digest(_domainSeparatorV4(), lock.lockId, lock.amount, lock.expiryBlock, lock.point);
        if (!MerkleProof.verifyCalldata(path, locksRoot, leaf)) revert LockNotUnderRoot();
        LockRegistration storage r = lockRegistrations[keccak256(abi.encode(proofDigest, lock.lockId))];
        if (r.amount != 0) revert LockAlreadyRegistered();
        r.amount = lock.amount;
        r.expiryBlock = lock.expiryBlock;
        r.point = lock.point;
    }

    /// Adds a registered lock's `amount` to its proof and raises the direction's potential.
    function _addToDirection(
        address user,
        uint64 epoch,
        uint8 direction,
        bytes32 proofDigest,
        uint128 cumulative,
        uint128 amount
    ) internal {
        LockedProof storage p = lockedProofs[proofDigest];
        if (p.user == address(0)) {
            p.user = user;
            p.epoch = epoch;
            p.direction = direction;
            p.cumulative = cumulative;
        }
        p.registered += amount;
        LockDirection storage dir = lockDirections[user][epoch][direction];
        uint256 potential = uint256(p.cumulative) + p.registered;
        if (potential > dir.potential) dir.potential = potential;
        dir.unresolved += 1;
    }

    /// Resolves one registration after its close settled: revealed in the registry no later
    /// than its expiry (the rise of the direction's charge goes to the receiver), or expired.
    /// Anyone may call. The direction's last resolution returns the escrow left to the sender.
    function unlock(bytes32 proofDigest, bytes32 lockId) external {
        _unlock(proofDigest, lockId);
    }

    /// Resolves many registrations (at most MAX_UNLOCK_BATCH) in one call.
    function unlockMany(bytes32[] calldata proofDigests, bytes32[] calldata lockIds) external {
        uint256 n = proofDigests.length;
        if (n == 0) revert BatchEmpty();
        if (n > MAX_UNLOCK_BATCH) revert BatchTooLarge();
        if (n != lockIds.length) revert BatchLengthMismatch();
        for (uint256 i = 0; i < n; i++) {
            _unlock(proofDigests[i], lockIds[i]);
        }
    }

    function _unlock(bytes32 proofDigest, bytes32 lockId) internal {
        LockRegistration storage r = lockRegistrations[keccak256(abi.encode(proofDigest, lockId))];
        if (r.amount == 0) revert UnknownLock();
        if (r.resolved) revert LockAlreadyResolved();
        LockedProof storage p = lockedProofs[proofDigest];
        Channel storage ch = channels[p.user];
        if (ch.epoch == p.epoch && ch.status != Status.Settled) revert ChannelNotSettled();
        bool revealed = pointRegistry.isRevealedBy(r.point, r.expiryBlock);
        if (!revealed && block.number <= r.expiryBlock) revert LockNotResolved();
        r.resolved = true;
        LockDirection storage dir = lockDirections[p.user][p.epoch][p.direction];
        // A proof's charge is its total plus its revealed locks: its total counts even when
        // none of its locks opens (it is a signed proof like any submitted in the period).
        if (revealed) p.revealed += r.amount;
        uint256 proofCharge = uint256(p.cumulative) + p.revealed;
        uint256 toReceiver = 0;
        if (proofCharge > dir.charge) {
            toReceiver = proofCharge - dir.charge;
            if (toReceiver > dir.escrow) toReceiver = dir.escrow;
            dir.charge = proofCharge;
            dir.escrow -= toReceiver;
        }
        dir.unresolved -= 1;
        uint256 toSender = dir.unresolved == 0 ? dir.escrow : 0;
        dir.escrow -= toSender;
        totalEscrow -= toReceiver + toSender;
        // The user's locks pay the hub (its reserve) and return to her; the hub's the reverse.
        uint256 toReserve = p.direction == USER_LOCKS ? toReceiver : toSender;
        uint256 toUser = toReceiver + toSender - toReserve;
        if (toReserve != 0) {
            reserve += toReserve;
            emit EscrowToReserve(p.user, p.epoch, toReserve, reserve);
        }
        if (toUser != 0) token.safeTransfer(p.user, toUser);
        emit LockResolved(p.user, p.epoch, p.direction, proofDigest, lockId, revealed, toReceiver, toSender);
    }

    /// A close's lock direction (USER_LOCKS or HUB_LOCKS) as stored.
    function lockDirectionOf(address user, uint64 epoch, uint8 direction) external view returns (LockDirection memory) {
        return lockDirections[user][epoch][direction];
    }

    /// A registration of `lockId` through the proof whose digest is `proofDigest` (amount 0: none).
    function lockRegistrationOf(bytes32 proofDigest, bytes32 lockId) external view returns (LockRegistration memory) {
        return lockRegistrations[keccak256(abi.encode(proofDigest, lockId))];
    }

    /// A proof locks were registered through (user zero: none).
    function lockedProofOf(bytes32 proofDigest) external view returns (LockedProof memory) {
        return lockedProofs[proofDigest];
    }
}
