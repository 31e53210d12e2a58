// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {InfHubBase} from "./InfHubBase.sol";
import {InfHubCheckpoints} from "./InfHubCheckpoints.sol";
import {InfHubSettlement} from "./InfHubSettlement.sol";

/// @title InfHub: the on-chain anchor of one infhub payment hub for one ERC-20 token.
/// @notice Every registered user has one channel with the hub. Off chain, balances move as
/// two monotonic running totals per channel: cumulative debits signed by the user and
/// cumulative credits signed by the hub. On chain, this contract holds the tokens, lets the
/// user and hub withdraw cooperatively without closing, and lets either side close alone
/// with the newest proofs it has; a challenge period lets anyone submit proofs that supersede
/// the stored ones (a higher running total, or the same total with a higher nonce: a signer can
/// only raise what works against itself). The hub's own funds (the reserve) back credits and
/// external payouts; what channels already closing will draw from it is kept back from every
/// hub payout, and the rest can only leave after an announced notice of at least twice the
/// challenge period.
/// @dev Spec: docs/protocol.md. The Rust core (crates/infhub-core) mirrors every rule here,
/// including the error names; shared test vectors keep the two in agreement.
/// Accounting invariant: token.balanceOf(this) == reserve + totalChannelFunds + totalEscrow + excess(), where a
/// channel's funds are deposited + advancedFromReserve - withdrawn - realizedDebit (never negative)
/// and the excess is tokens that reached the contract outside its functions.
/// Checkpoints and complaints (spec 5.16) live in InfHubCheckpoints, settlement and the locks of a
/// close (spec 5.11, 5.11a) in InfHubSettlement; this contract creates the first, is given the
/// second, and runs them by DELEGATECALL for every function it does not have itself.
contract InfHub is InfHubBase {
    using SafeERC20 for IERC20;

    /// The checkpoint module (created here; runs on this contract's storage).
    address public immutable checkpointModule;

    /// `settlement_` is this hub's settlement module (InfHubSettlement), deployed before it with
    /// the same token, hub and periods and the chain's PointRegistry (spec 5.17); one contract
    /// creating both modules would exceed the EIP-3860 initcode limit. A module made for other
    /// parameters is refused (`SettlementModuleMismatch`): it would check signatures against
    /// another hub or settle on another period.
    constructor(
        IERC20 token_,
        address hub_,
        uint64 challengePeriodBlocks_,
        uint64 reserveNoticeBlocks_,
        InfHubSettlement settlement_
    ) InfHubBase(token_, hub_, challengePeriodBlocks_, reserveNoticeBlocks_) {
        if (
            address(settlement_.token()) != address(token_) || settlement_.hub() != hub_
                || settlement_.challengePeriodBlocks() != challengePeriodBlocks_
                || settlement_.reserveNoticeBlocks() != reserveNoticeBlocks_
        ) revert SettlementModuleMismatch();
        checkpointModule = address(
            new InfHubCheckpoints(token_, hub_, challengePeriodBlocks_, reserveNoticeBlocks_, address(settlement_))
        );
    }

    /// Every function this contract lacks runs in the checkpoint module on this storage, and
    /// what that module lacks in the settlement module; an unknown selector reverts there
    /// without data.
    fallback() external {
        _delegateTo(checkpointModule);
    }

    // ================================================================ channels

    /// Opens the user's channel, or reopens it after settlement with the next epoch.
    /// The user or the hub may call it (the hub opens channels at registration).
    function openChannel(address user) external {
        if (msg.sender != user && msg.sender != hub) revert OnlyUserOrHub();
        if (user == address(0) || user == hub) revert UserMustNotBeZeroOrHub();
        Channel storage ch = channels[user];
        if (ch.status == Status.Open || ch.status == Status.Closing) revert ChannelAlreadyOpen();
        uint64 epoch = ch.epoch + 1;
        delete channels[user];
        ch.status = Status.Open;
        ch.epoch = epoch;
        emit ChannelOpened(user, epoch, msg.sender);
    }

    /// The hub opens (or reopens) the channels of many registered users in one transaction.
    /// A user whose channel is already open (they opened it themselves) is registered instead:
    /// `ChannelRegistered` tells the hub's ledger to follow it. A closing channel is skipped.
    /// So one user cannot make the batch fail; every channel opened emits its own `ChannelOpened`.
    function openChannels(address[] calldata users) external onlyHub {
        if (users.length == 0) revert BatchEmpty();
        if (users.length > MAX_OPEN_BATCH) revert BatchTooLarge();
        for (uint256 i = 0; i < users.length; i++) {
            address user = users[i];
            if (user == address(0) || user == hub) revert UserMustNotBeZeroOrHub();
            Channel storage ch = channels[user];
            if (ch.status == Status.Open) {
                emit ChannelRegistered(user, ch.epoch);
                continue;
            }
            if (ch.status == Status.Closing) continue;
            uint64 epoch = ch.epoch + 1;
            delete channels[user];
            ch.status = Status.Open;
            ch.epoch = epoch;
            emit ChannelOpened(user, epoch, msg.sender);
        }
    }

    /// Locks `amount` tokens from the caller into `user`'s open channel (approve first).
    function deposit(address user, uint256 amount) external {
        _deposit(user, amount);
    }

    /// Like deposit, with an ERC-2612 permit signed by the caller instead of a prior approve.
    /// A permit that fails (e.g. already used by a front-runner) is ignored if the allowance suffices.
    function depositWithPermit(address user, uint256 amount, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external
    {
        try IERC20Permit(address(token)).permit(msg.sender, address(this), amount, deadline, v, r, s) {} catch {}
        _deposit(user, amount);
    }

    function _deposit(address user, uint256 amount) internal {
        Channel storage ch = channels[user];
        if (ch.status != Status.Open) revert ChannelNotOpen();
        if (amount == 0) revert AmountMustNotBeZero();
        if (amount > MAX_AMOUNT - ch.deposited) revert AmountTooLarge();
        uint256 newDeposited = uint256(ch.deposited) + amount;
        _pullExact(amount);
        // casting to 'uint128' is safe because newDeposited <= MAX_AMOUNT was checked above
        // forge-lint: disable-next-line(unsafe-typecast)
        ch.deposited = uint128(newDeposited);
        ch.lastDepositBlock = uint64(block.number);
        totalChannelFunds += amount;
        emit Deposited(user, ch.epoch, msg.sender, amount, newDeposited);
    }

    /// Cooperative partial withdrawal: pays the increase of the running total to the user.
    /// The channel stays open. Beyond the channel's own funds, the hub's reserve advances the rest
    /// (the user's balance includes hub credits, which the reserve backs).
    function withdraw(Withdrawal calldata w, bytes calldata userSignature, bytes calldata hubSignature) external {
        Channel storage ch = channels[w.user];
        if (ch.status != Status.Open) revert ChannelNotOpen();
        if (w.epoch != ch.epoch) revert EpochMismatch();
        if (block.number > w.expiryBlock) revert AuthorizationExpired();
        if (w.cumulativeWithdrawn <= ch.withdrawn) revert WithdrawalMustIncrease();
        bytes32 digest = hashWithdrawal(w);
        _requireSigner(digest, userSignature, w.user);
        _requireSigner(digest, hubSignature, hub);

        uint256 amount = uint256(w.cumulativeWithdrawn) - ch.withdrawn;
        uint256 funds = _funds(ch);
        uint256 fromReserve = amount > funds ? amount - funds : 0;
        if (fromReserve != 0) _requireReserveLeft(fromReserve);
        reserve -= fromReserve;
        // casting to 'uint128' is safe because fromReserve <= amount <= cumulativeWithdrawn (a uint128)
        // forge-lint: disable-next-line(unsafe-typecast)
        ch.advancedFromReserve += uint128(fromReserve);
        ch.withdrawn = w.cumulativeWithdrawn;
        // funds + fromReserve >= amount by construction.
        totalChannelFunds = totalChannelFunds + fromReserve - amount;
        token.safeTransfer(w.user, amount);
        emit Withdrawn(w.user, ch.epoch, amount, w.cumulativeWithdrawn, fromReserve);
    }

    /// The hub moves what a user has paid (per the user's own signed debit) from the user's open
    /// channel into the reserve, so the reserve can back the payees' credits without waiting for
    /// the payer to close. Moves min(cumulativeDebit - realizedDebit, channel funds). The debit
    /// must supersede the one stored (a higher total, or the same total with a higher nonce) and
    /// becomes the floor for this epoch: a later exit cannot go below it.
    function realizeDebit(Debit calldata debit, bytes calldata userSignature) external onlyHub {
        Channel storage ch = channels[debit.user];
        if (ch.status != Status.Open) revert ChannelNotOpen();
        _applyDebit(ch, debit.user, debit, userSignature);
        uint256 moved = _realize(ch);
        emit DebitRealized(debit.user, debit.epoch, debit.nonce, debit.cumulativeDebit, moved, reserve);
    }

    /// Realizes many channels' debits in one transaction (one base cost for all; spec 5.6). For
    /// each entry: a channel that is not open, or is in another epoch, is skipped (it may have
    /// begun closing after the hub sent the batch); a debit that supersedes the stored one is
    /// applied as in realizeDebit (signature checked); otherwise the stored debit stands. Then
    /// min(stored cumulativeDebit - realizedDebit, funds) moves to the reserve. An entry that
    /// applies and moves nothing emits nothing, so a resent, reordered or partly stale batch
    /// never reverts for a realization already done.
    function realizeDebits(Debit[] calldata debits, bytes[] calldata userSignatures) external onlyHub {
        uint256 n = debits.length;
        if (n == 0) revert BatchEmpty();
        if (n > MAX_REALIZE_BATCH) revert BatchTooLarge();
        if (n != userSignatures.length) revert BatchLengthMismatch();
        for (uint256 i = 0; i < n; i++) {
            Debit calldata d = debits[i];
            Channel storage ch = channels[d.user];
            if (ch.status != Status.Open || d.epoch != ch.epoch) continue;
            bool applied = _supersedes(ch.debit, d.nonce, d.cumulativeDebit);
            if (applied) _applyDebit(ch, d.user, d, userSignatures[i]);
            uint256 moved = _realize(ch);
            if (applied || moved != 0) {
                emit DebitRealized(d.user, ch.epoch, ch.debit.nonce, ch.debit.cumulative, moved, reserve);
            }
        }
    }

    /// Moves min(stored cumulativeDebit - realizedDebit, funds) of an open channel to the reserve.
    function _realize(Channel storage ch) internal returns (uint256 moved) {
        uint256 unrealized = uint256(ch.debit.cumulative) > ch.realizedDebit
            ? uint256(ch.debit.cumulative) - ch.realizedDebit
            : 0;
        uint256 funds = _funds(ch);
        moved = unrealized < funds ? unrealized : funds;
        // casting to 'uint128' is safe because realizedDebit + moved <= debit.cumulative (a uint128)
        // forge-lint: disable-next-line(unsafe-typecast)
        ch.realizedDebit += uint128(moved);
        totalChannelFunds -= moved;
        reserve += moved;
        liabilityInflowsTotal += moved;
    }

    /// The user closes alone, with the newest hub-signed credit it holds (nonce 0 = none).
    function startExit(Credit calldata credit, bytes calldata hubSignature) external {
        Channel storage ch = _beginClose(msg.sender);
        if (credit.nonce == 0) {
            if (hubSignature.length != 0 || credit.cumulativeCredit != 0) revert ProofMustBeEmpty();
        } else {
            _applyCredit(ch, msg.sender, credit, hubSignature);
        }
        _refreshReserveDraw(ch, msg.sender);
    }

    /// The hub closes a (dormant) channel with the newest user-signed debit it holds (nonce 0 = none).
    function startHubClose(address user, Debit calldata debit, bytes calldata userSignature) external onlyHub {
        Channel storage ch = _beginClose(user);
        if (debit.nonce == 0) {
            if (userSignature.length != 0 || debit.cumulativeDebit != 0) revert ProofMustBeEmpty();
        } else {
            _applyDebit(ch, user, debit, userSignature);
        }
        _refreshReserveDraw(ch, user);
    }

    /// During the challenge period anyone (the user, a watchtower) may submit a hub-signed credit
    /// that supersedes the stored one.
    function submitCredit(Credit calldata credit, bytes calldata hubSignature) external {
        Channel storage ch = channels[credit.user];
        _requireChallengeOpen(ch);
        _applyCredit(ch, credit.user, credit, hubSignature);
        _refreshReserveDraw(ch, credit.user);
    }

    /// A watchtower's defence for a fee (spec 5.10a): like submitCredit, with the user's signed
    /// TowerFee offer. The tower (the caller, named in the offer) earns gainShareBps of what the
    /// credit raised the user's claim by, at most maxFee over all its submissions in this close;
    /// a submission that raises nothing earns nothing. The fee is paid from the claim at
    /// settlement, never more than the claim.
    function submitCreditForFee(
        Credit calldata credit,
        bytes calldata hubSignature,
        TowerFee calldata offer,
        bytes calldata userSignature
    ) external {
        Channel storage ch = channels[credit.user];
        _requireChallengeOpen(ch);
        if (offer.tower != msg.sender) revert OnlyTower();
        if (offer.user != credit.user) revert UserMismatch();
        if (offer.epoch != ch.epoch) revert EpochMismatch();
        if (block.number > offer.validUntilBlock) revert AuthorizationExpired();
        if (offer.gainShareBps > BPS) revert TowerFeeShareTooLarge();
        _requireSigner(hashTowerFee(offer), userSignature, credit.user);
        uint256 claimBefore = _claim(ch);
        _applyCredit(ch, credit.user, credit, hubSignature);
        _refreshReserveDraw(ch, credit.user);
        // The claim only grows with the credit total, and the credit only grows here.
        uint256 gain = _claim(ch) - claimBefore;
        _recordTowerFee(credit.user, ch.epoch, offer, gain);
    }

    /// The fees towers earned in `user`'s current close (cleared at settlement).
    function towerFeesOf(address user) external view returns (TowerFeeRecord[] memory records) {
        TowerFeeRecord[MAX_TOWER_FEES_PER_CLOSE] storage slots = towerFees[user];
        uint256 n = 0;
        while (n < MAX_TOWER_FEES_PER_CLOSE && slots[n].tower != address(0)) n++;
        records = new TowerFeeRecord[](n);
        for (uint256 i = 0; i < n; i++) {
            records[i] = slots[i];
        }
    }

    /// During the challenge period anyone (the hub, a watchtower) may submit a user-signed debit
    /// that supersedes the stored one.
    function submitDebit(Debit calldata debit, bytes calldata userSignature) external {
        Channel storage ch = channels[debit.user];
        _requireChallengeOpen(ch);
        _applyDebit(ch, debit.user, debit, userSignature);
        _refreshReserveDraw(ch, debit.user);
    }

    // settle, settlementOf and the locks of a close (spec 5.11, 5.11a) live in InfHubSettlement.

    // ================================================================ reserve and payouts

    /// Adds the caller's tokens to the hub's reserve (anyone may top it up).
    function depositReserve(uint256 amount) external {
        if (amount == 0) revert AmountMustNotBeZero();
        if (amount > MAX_AMOUNT) revert AmountTooLarge();
        _pullExact(amount);
        reserve += amount;
        emit ReserveDeposited(msg.sender, amount, reserve);
    }

    /// Deposits the caller's tokens for a custodial account of the hub (seed 000 §3): the tokens
    /// join the reserve, which backs custodial balances, and the event attributes them to
    /// `account` (the hub's reference for the account). The hub credits the account off chain
    /// after confirmations; the contract keeps no per-account custodial state.
    function depositFor(address account, uint256 amount) external {
        if (account == address(0)) revert RecipientMustNotBeZero();
        if (amount == 0) revert AmountMustNotBeZero();
        if (amount > MAX_AMOUNT) revert AmountTooLarge();
        _pullExact(amount);
        reserve += amount;
        liabilityInflowsTotal += amount;
        emit CustodialDeposited(account, msg.sender, amount, reserve);
    }

    /// Announces a reserve withdrawal; it can execute only after reserveNoticeBlocks (at least
    /// twice the challenge period), so users who distrust the hub can exit first, and only
    /// during the reserveNoticeBlocks after that: an unused announcement expires and a new one
    /// (with a new notice) replaces it.
    function announceReserveWithdrawal(uint256 amount) external onlyHub {
        if (amount == 0) revert AmountMustNotBeZero();
        if (amount > MAX_AMOUNT) revert AmountTooLarge();
        ReserveWithdrawal memory p = pendingReserveWithdrawal;
        if (p.amount != 0 && block.number < uint256(p.unlockBlock) + reserveNoticeBlocks) {
            revert ReserveWithdrawalPending();
        }
        uint64 unlockBlock = uint64(block.number) + reserveNoticeBlocks;
        // casting to 'uint128' is safe because amount <= MAX_AMOUNT was checked above
        // forge-lint: disable-next-line(unsafe-typecast)
        pendingReserveWithdrawal = ReserveWithdrawal(uint128(amount), unlockBlock);
        emit ReserveWithdrawalAnnounced(amount, unlockBlock);
    }

    function cancelReserveWithdrawal() external onlyHub {
        uint256 amount = pendingReserveWithdrawal.amount;
        if (amount == 0) revert NoReserveWithdrawalPending();
        delete pendingReserveWithdrawal;
        emit ReserveWithdrawalCancelled(amount);
    }

    /// Executes the announced reserve withdrawal once its notice is over and before it expires.
    /// It may not take what closing channels will draw from the reserve.
    function executeReserveWithdrawal(address to) external onlyHub {
        ReserveWithdrawal memory p = pendingReserveWithdrawal;
        if (p.amount == 0) revert NoReserveWithdrawalPending();
        if (block.number < p.unlockBlock) revert ReserveNoticeNotOver();
        if (block.number >= uint256(p.unlockBlock) + reserveNoticeBlocks) revert ReserveWithdrawalExpired();
        if (to == address(0)) revert RecipientMustNotBeZero();
        _requireReserveLeft(p.amount);
        delete pendingReserveWithdrawal;
        reserve -= p.amount;
        token.safeTransfer(to, p.amount);
        emit ReserveWithdrawn(to, p.amount, reserve);
    }

    /// Pays external transfers out of the reserve in one transaction. The users' debits that fund
    /// them were signed off chain; batchId makes a resent batch harmless. The contract cannot
    /// check those debits, so it only keeps back what closing channels will draw.
    function payout(bytes32 batchId, address[] calldata recipients, uint256[] calldata amounts) external onlyHub {
        uint256 n = recipients.length;
        if (n == 0) revert BatchEmpty();
        if (n > MAX_PAYOUT_BATCH) revert BatchTooLarge();
        if (n != amounts.length) revert BatchLengthMismatch();
        if (payoutBatchExecuted[batchId]) revert PayoutBatchAlreadyExecuted();
        payoutBatchExecuted[batchId] = true;
        uint256 total = 0;
        for (uint256 i = 0; i < n; i++) {
            if (recipients[i] == address(0)) revert RecipientMustNotBeZero();
            if (amounts[i] == 0) revert AmountMustNotBeZero();
            if (amounts[i] > MAX_AMOUNT) revert AmountTooLarge();
            total += amounts[i];
        }
        _requireReserveLeft(total);
        reserve -= total;
        for (uint256 i = 0; i < n; i++) {
            token.safeTransfer(recipients[i], amounts[i]);
            emit Paid(batchId, recipients[i], amounts[i]);
        }
        emit PayoutBatchExecuted(batchId, n, total, reserve);
    }

    // ================================================================ excess tokens

    /// Tokens the contract holds beyond the reserve and the channels' funds: sent to it outside
    /// its functions (a plain ERC-20 transfer). Nobody's balance; the hub may move them into the
    /// reserve or send them back.
    function excess() public view returns (uint256) {
        uint256 held = token.balanceOf(address(this));
        uint256 accounted = reserve + totalChannelFunds + totalEscrow;
        return held > accounted ? held - accounted : 0;
    }

    /// The hub moves the whole excess into its reserve.
    function excessToReserve() external onlyHub {
        uint256 amount = excess();
        if (amount == 0) revert AmountMustNotBeZero();
        reserve += amount;
        emit ExcessToReserve(amount, reserve);
    }

    /// The hub sends `amount` of the excess to `to` (e.g. back to whoever sent it by mistake).
    function returnExcess(address to, uint256 amount) external onlyHub {
        if (to == address(0)) revert RecipientMustNotBeZero();
        if (amount == 0) revert AmountMustNotBeZero();
        if (amount > excess()) revert ExcessInsufficient();
        token.safeTransfer(to, amount);
        emit ExcessReturned(to, amount);
    }

}
