// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

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
/// Accounting invariant: token.balanceOf(this) == reserve + totalChannelFunds + excess(), where a
/// channel's funds are deposited + advancedFromReserve - withdrawn - realizedDebit (never negative)
/// and the excess is tokens that reached the contract outside its functions.
contract InfHub is EIP712 {
    using SafeERC20 for IERC20;

    // ---------------------------------------------------------------- limits
    /// Every amount in a message and every running total is at most this (uint128).
    uint256 public constant MAX_AMOUNT = type(uint128).max;
    /// Most recipients in one external payout batch.
    uint256 public constant MAX_PAYOUT_BATCH = 256;
    /// Most users in one `openChannels` call.
    uint256 public constant MAX_OPEN_BATCH = 100;
    /// Most debits in one `realizeDebits` call.
    uint256 public constant MAX_REALIZE_BATCH = 100;
    /// Bounds on the challenge period, in blocks.
    uint64 public constant MIN_CHALLENGE_PERIOD_BLOCKS = 2;
    uint64 public constant MAX_CHALLENGE_PERIOD_BLOCKS = 2_000_000;

    // ---------------------------------------------------------------- EIP-712 types
    bytes32 public constant DEBIT_TYPEHASH = keccak256(
        "Debit(address user,uint64 epoch,uint64 nonce,uint128 cumulativeDebit,uint128 lockedAmount,bytes32 locksRoot,uint8 kind,address recipient,uint128 amount,bytes32 paymentId)"
    );
    bytes32 public constant CREDIT_TYPEHASH = keccak256(
        "Credit(address user,uint64 epoch,uint64 nonce,uint128 cumulativeCredit,uint128 lockedAmount,bytes32 locksRoot)"
    );
    bytes32 public constant WITHDRAWAL_TYPEHASH =
        keccak256("Withdrawal(address user,uint64 epoch,uint128 cumulativeWithdrawn,uint64 expiryBlock)");
    /// The hub signs many credits at once by signing the Merkle root of their digests.
    bytes32 public constant PROOF_BATCH_TYPEHASH = keccak256("ProofBatch(bytes32 root)");
    /// Longest Merkle path a batched hub proof may carry.
    uint256 public constant MAX_PROOF_DEPTH = 20;
    /// A user's authorization of a watchtower's fee: paid only out of what the tower's
    /// submission raised the user's claim by (spec 5.10a).
    bytes32 public constant TOWER_FEE_TYPEHASH = keccak256(
        "TowerFee(address user,uint64 epoch,address tower,uint128 maxFee,uint16 gainShareBps,uint64 validUntilBlock)"
    );
    /// Most towers that can earn a fee in one close (each tower has one record, capped by its maxFee).
    uint256 public constant MAX_TOWER_FEES_PER_CLOSE = 4;
    /// Most one tower earns in one close, whatever the offer says (uint96: 79 billion tokens of 18 decimals).
    uint256 public constant MAX_TOWER_FEE = type(uint96).max;
    /// Basis points in one whole (gainShareBps is at most this).
    uint16 public constant BPS = 10_000;
    /// Deepest checkpoint tree (2^40 leaves).
    uint256 public constant MAX_CHECKPOINT_DEPTH = 40;
    /// Largest total liability a checkpoint may state (2^40 leaves of at most uint128 each).
    uint256 public constant MAX_CHECKPOINT_LIABILITY = type(uint168).max;
    /// The checkpoint leaf's type (spec 5.16), hashed as keccak256(abi.encode(typehash, fields...)).
    bytes32 public constant CHECKPOINT_LEAF_TYPEHASH = keccak256(
        "CheckpointLeaf(uint256 chainId,address contract,uint64 checkpointId,address account,uint8 kind,uint64 epoch,uint128 deposited,uint128 withdrawn,uint64 creditNonce,uint128 creditTotal,uint64 debitNonce,uint128 debitTotal,uint128 liability,bytes32 salt)"
    );
    /// Tag of every inner node of a checkpoint tree.
    bytes32 public constant CHECKPOINT_NODE_TAG = keccak256("infhub.CheckpointNode");

    // ---------------------------------------------------------------- messages
    /// A user-signed running total of everything the user has paid out of the channel.
    struct Debit {
        address user;
        uint64 epoch;
        uint64 nonce;
        uint128 cumulativeDebit;
        uint128 lockedAmount;
        bytes32 locksRoot;
        uint8 kind;
        address recipient;
        uint128 amount;
        bytes32 paymentId;
    }

    /// A hub-signed running total of everything the hub has paid into the channel.
    struct Credit {
        address user;
        uint64 epoch;
        uint64 nonce;
        uint128 cumulativeCredit;
        uint128 lockedAmount;
        bytes32 locksRoot;
    }

    /// A user's offer to a watchtower: for submitting a credit that raises the user's claim in a
    /// close of this epoch, the tower earns gainShareBps of the rise, at most maxFee in all,
    /// paid from the claim at settlement. Only the named tower can use it, until validUntilBlock.
    struct TowerFee {
        address user;
        uint64 epoch;
        address tower;
        uint128 maxFee;
        uint16 gainShareBps;
        uint64 validUntilBlock;
    }

    /// One liability in a checkpoint (spec 5.16).
    struct CheckpointLeaf {
        address account;
        uint8 kind;
        uint64 epoch;
        uint128 deposited;
        uint128 withdrawn;
        uint64 creditNonce;
        uint128 creditTotal;
        uint64 debitNonce;
        uint128 debitTotal;
        uint128 liability;
        bytes32 salt;
    }

    /// A sibling on a checkpoint path: its hash and the sum of liabilities under it.
    struct SumNode {
        bytes32 hash;
        uint256 sum;
    }

    /// A posted checkpoint of the hub's books.
    struct Checkpoint {
        bytes32 root;
        uint256 totalLiability;
        uint64 ledgerSeq;
        uint64 chainBlock;
        uint256 inflowsThrough;
    }

    /// A fee a tower earned in the current close of a channel (one storage slot; a fee is at
    /// most MAX_TOWER_FEE).
    struct TowerFeeRecord {
        address tower;
        uint96 fee;
    }

    /// A cooperative withdrawal, signed by both user and hub, usable until expiryBlock.
    struct Withdrawal {
        address user;
        uint64 epoch;
        uint128 cumulativeWithdrawn;
        uint64 expiryBlock;
    }

    // ---------------------------------------------------------------- state
    enum Status {
        None,
        Open,
        Closing,
        Settled
    }

    /// The newest proof the contract has seen for one side of a closing channel.
    struct Side {
        uint64 nonce;
        uint128 cumulative;
        uint128 lockedAmount;
        bytes32 locksRoot;
    }

    struct Channel {
        Status status;
        uint64 epoch;
        uint64 settleBlock;
        address closer;
        uint128 deposited;
        uint128 withdrawn;
        uint128 advancedFromReserve;
        uint128 realizedDebit;
        /// While closing: what settlement will take from the reserve with the proofs held now,
        /// max(0, claim - funds); counted in reservedForClosing. Zero while open.
        uint256 reserveDraw;
        Side debit;
        Side credit;
    }

    struct ReserveWithdrawal {
        uint128 amount;
        uint64 unlockBlock;
    }

    IERC20 public immutable token;
    address public immutable hub;
    uint64 public immutable challengePeriodBlocks;
    uint64 public immutable reserveNoticeBlocks;

    mapping(address => Channel) internal channels;
    /// The hub's own funds in the contract.
    uint256 public reserve;
    /// Sum over all channels of deposited + advancedFromReserve - withdrawn - realizedDebit.
    uint256 public totalChannelFunds;
    /// Sum of reserveDraw over the channels that are closing: the part of the reserve that no
    /// payout, reserve-advanced withdrawal or reserve withdrawal may take.
    uint256 public reservedForClosing;
    ReserveWithdrawal public pendingReserveWithdrawal;
    mapping(bytes32 => bool) public payoutBatchExecuted;
    /// Every reserve inflow that brings a liability with it: custodial deposits (a custodial
    /// balance) and realized debits (the payer's funds move to the reserve and her channel's
    /// shortfall rises as much). A checkpoint's tree cannot hold those made after its block,
    /// so they do not count as backing (spec 5.16).
    uint256 public liabilityInflowsTotal;
    /// The newest checkpoint's id (0: none yet).
    uint64 public lastCheckpointId;
    /// Posted checkpoints by id.
    mapping(uint64 => Checkpoint) public checkpoints;
    /// The id of the checkpoint a complaint proved wrong (0: none): the hub is halted, no more
    /// checkpoints, payouts or reserve withdrawals (spec 5.16).
    uint64 public haltedAtCheckpoint;
    /// Fees towers earned in each user's current close, filled from the front (an empty slot
    /// has tower zero); paid and cleared at settlement.
    mapping(address => TowerFeeRecord[MAX_TOWER_FEES_PER_CLOSE]) internal towerFees;

    // ---------------------------------------------------------------- events
    event ChannelOpened(address indexed user, uint64 epoch, address openedBy);
    /// The hub registered a channel that its user had already opened (emitted by openChannels).
    event ChannelRegistered(address indexed user, uint64 epoch);
    event Deposited(address indexed user, uint64 epoch, address from, uint256 amount, uint256 totalDeposited);
    event Withdrawn(
        address indexed user, uint64 epoch, uint256 amount, uint256 totalWithdrawn, uint256 fromReserve
    );
    event ExitStarted(address indexed user, uint64 epoch, address closer, uint64 settleBlock);
    event DebitSubmitted(address indexed user, uint64 epoch, uint64 nonce, uint256 cumulativeDebit, address by);
    event CreditSubmitted(address indexed user, uint64 epoch, uint64 nonce, uint256 cumulativeCredit, address by);
    event DebitRealized(
        address indexed user, uint64 epoch, uint64 nonce, uint256 cumulativeDebit, uint256 moved, uint256 reserveAfter
    );
    event Settled(address indexed user, uint64 epoch, uint256 paid, uint256 shortfall, uint256 reserveAfter);
    event ReserveDeposited(address from, uint256 amount, uint256 reserveAfter);
    event CustodialDeposited(address indexed account, address from, uint256 amount, uint256 reserveAfter);
    event ReserveWithdrawalAnnounced(uint256 amount, uint64 unlockBlock);
    event ReserveWithdrawalCancelled(uint256 amount);
    event ReserveWithdrawn(address to, uint256 amount, uint256 reserveAfter);
    event Paid(bytes32 indexed batchId, address indexed recipient, uint256 amount);
    event PayoutBatchExecuted(bytes32 indexed batchId, uint256 count, uint256 total, uint256 reserveAfter);
    event ExcessToReserve(uint256 amount, uint256 reserveAfter);
    event ExcessReturned(address to, uint256 amount);
    event TowerFeeRecorded(address indexed user, uint64 epoch, address indexed tower, uint256 gain, uint256 fee);
    event TowerFeePaid(address indexed user, uint64 epoch, address indexed tower, uint256 amount);
    event HubHaltedByComplaint(uint64 indexed id, address indexed account, address by);
    event CheckpointPosted(
        uint64 indexed id,
        bytes32 root,
        uint256 totalLiability,
        uint64 ledgerSeq,
        uint64 chainBlock,
        uint256 inflowsThrough,
        uint256 reserve
    );

    // ---------------------------------------------------------------- errors (named after the rule broken)
    error HubMustNotBeZero();
    error ChallengePeriodOutOfRange();
    error ReserveNoticeTooShort();
    error OnlyHub();
    error OnlyUserOrHub();
    error ChannelAlreadyOpen();
    error ChannelNotOpen();
    error ChannelNotClosing();
    error AmountMustNotBeZero();
    error AmountTooLarge();
    error TokenTransferMismatch();
    error EpochMismatch();
    error UserMismatch();
    error ProofMustSupersede();
    error WithdrawalMustIncrease();
    error AuthorizationExpired();
    error InvalidSignature();
    error WrongSigner();
    error ChallengePeriodOver();
    error ChallengePeriodNotOver();
    error ReserveInsufficient();
    error NoReserveWithdrawalPending();
    error ReserveWithdrawalPending();
    error ReserveNoticeNotOver();
    error ReserveWithdrawalExpired();
    error ExcessInsufficient();
    error BatchTooLarge();
    error BatchEmpty();
    error BatchLengthMismatch();
    error PayoutBatchAlreadyExecuted();
    error RecipientMustNotBeZero();
    error ProofMustBeEmpty();
    error UserMustNotBeZeroOrHub();
    error OnlyTower();
    error TowerFeeShareTooLarge();
    error TowerFeeSlotsFull();
    error CheckpointOutOfOrder();
    error CheckpointFromTheFuture();
    error CheckpointInsolvent();
    error PathTooLong();
    error PathIndexOutOfRange();
    error SumOutOfRange();
    error RootMismatch();
    error HubHalted();
    error ComplaintUnfounded();

    modifier onlyHub() {
        if (msg.sender != hub) revert OnlyHub();
        _;
    }


    constructor(IERC20 token_, address hub_, uint64 challengePeriodBlocks_, uint64 reserveNoticeBlocks_)
        EIP712("InfHub", "1")
    {
        if (hub_ == address(0)) revert HubMustNotBeZero();
        if (
            challengePeriodBlocks_ < MIN_CHALLENGE_PERIOD_BLOCKS
                || challengePeriodBlocks_ > MAX_CHALLENGE_PERIOD_BLOCKS
        ) revert ChallengePeriodOutOfRange();
        // The notice must leave a user who sees the announcement the time to react on chain
        // (confirmations and inclusion, which the challenge period already has to cover) and
        // then the whole challenge period: at least twice the challenge period.
        if (reserveNoticeBlocks_ / 2 < challengePeriodBlocks_) revert ReserveNoticeTooShort();
        token = token_;
        hub = hub_;
        challengePeriodBlocks = challengePeriodBlocks_;
        reserveNoticeBlocks = reserveNoticeBlocks_;
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
        _refreshReserveDraw(ch);
    }

    /// The hub closes a (dormant) channel with the newest user-signed debit it holds (nonce 0 = none).
    function startHubClose(address user, Debit calldata debit, bytes calldata userSignature) external onlyHub {
        Channel storage ch = _beginClose(user);
        if (debit.nonce == 0) {
            if (userSignature.length != 0 || debit.cumulativeDebit != 0) revert ProofMustBeEmpty();
        } else {
            _applyDebit(ch, user, debit, userSignature);
        }
        _refreshReserveDraw(ch);
    }

    /// During the challenge period anyone (the user, a watchtower) may submit a hub-signed credit
    /// that supersedes the stored one.
    function submitCredit(Credit calldata credit, bytes calldata hubSignature) external {
        Channel storage ch = channels[credit.user];
        _requireChallengeOpen(ch);
        _applyCredit(ch, credit.user, credit, hubSignature);
        _refreshReserveDraw(ch);
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
        _refreshReserveDraw(ch);
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
        _refreshReserveDraw(ch);
    }

    /// After the challenge period anyone may settle; the user's claim goes to the user, less the
    /// fees towers earned defending it (Settled.paid is the whole claim paid, fees included).
    /// claim = deposited - withdrawn + cumulativeCredit - cumulativeDebit (floored at zero).
    /// Locked amounts are not part of the claim: without an on-chain unlock, every pending
    /// lock falls back to its sender (spec: "Locks at settlement").
    function settle(address user) external {
        Channel storage ch = channels[user];
        if (ch.status != Status.Closing) revert ChannelNotClosing();
        if (block.number < ch.settleBlock) revert ChallengePeriodNotOver();
        (uint256 paid, uint256 shortfall, uint256 reserveAfter) = settlementOf(user);
        uint256 funds = _funds(ch);
        totalChannelFunds -= funds;
        reserve = reserveAfter;
        reservedForClosing -= ch.reserveDraw;
        ch.reserveDraw = 0;
        ch.status = Status.Settled;
        ch.deposited = 0;
        ch.withdrawn = 0;
        ch.advancedFromReserve = 0;
        ch.realizedDebit = 0;
        uint256 toUser = _payTowerFees(user, ch.epoch, paid);
        if (toUser != 0) token.safeTransfer(user, toUser);
        emit Settled(user, ch.epoch, paid, shortfall, reserveAfter);
    }

    /// What settle(user) would pay now: (paid to user, unpaid shortfall, reserve afterwards).
    function settlementOf(address user) public view returns (uint256 paid, uint256 shortfall, uint256 reserveAfter) {
        Channel storage ch = channels[user];
        uint256 claim = _claim(ch);
        uint256 available = _funds(ch) + reserve;
        paid = claim < available ? claim : available;
        shortfall = claim - paid;
        reserveAfter = available - paid;
    }

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
        if (haltedAtCheckpoint == 0) haltedAtCheckpoint = id;
        emit HubHaltedByComplaint(id, leaf.account, msg.sender);
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
        _refreshReserveDraw(ch);
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

    // ================================================================ excess tokens

    /// Tokens the contract holds beyond the reserve and the channels' funds: sent to it outside
    /// its functions (a plain ERC-20 transfer). Nobody's balance; the hub may move them into the
    /// reserve or send them back.
    function excess() public view returns (uint256) {
        uint256 held = token.balanceOf(address(this));
        uint256 accounted = reserve + totalChannelFunds;
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

    // ================================================================ views and hashing

    /// The channel as stored: status, epoch, settleBlock, closer, deposited, withdrawn, advancedFromReserve,
    /// newest debit and newest credit seen on chain.
    function channel(address user) external view returns (Channel memory) {
        return channels[user];
    }

    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    function hashDebit(Debit calldata d) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(
                abi.encode(
                    DEBIT_TYPEHASH,
                    d.user,
                    d.epoch,
                    d.nonce,
                    d.cumulativeDebit,
                    d.lockedAmount,
                    d.locksRoot,
                    d.kind,
                    d.recipient,
                    d.amount,
                    d.paymentId
                )
            )
        );
    }

    function hashCredit(Credit calldata c) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(
                abi.encode(
                    CREDIT_TYPEHASH, c.user, c.epoch, c.nonce, c.cumulativeCredit, c.lockedAmount, c.locksRoot
                )
            )
        );
    }

    function hashProofBatch(bytes32 root) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(PROOF_BATCH_TYPEHASH, root)));
    }

    function hashTowerFee(TowerFee calldata f) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(
                abi.encode(
                    TOWER_FEE_TYPEHASH, f.user, f.epoch, f.tower, f.maxFee, f.gainShareBps, f.validUntilBlock
                )
            )
        );
    }

    function hashWithdrawal(Withdrawal calldata w) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(abi.encode(WITHDRAWAL_TYPEHASH, w.user, w.epoch, w.cumulativeWithdrawn, w.expiryBlock))
        );
    }

    // ================================================================ internals

    /// What the user is owed by the proofs held: deposited - withdrawn + credit - debit, floored at zero.
    function _claim(Channel storage ch) internal view returns (uint256) {
        uint256 plus = uint256(ch.deposited) + ch.credit.cumulative;
        uint256 minus = uint256(ch.withdrawn) + ch.debit.cumulative;
        return plus > minus ? plus - minus : 0;
    }

    /// Records what the offer's tower earned for raising the claim by `gain`: gainShareBps of it,
    /// with the tower's fees in this close capped at maxFee in all. Nothing for no gain.
    function _recordTowerFee(address user, uint64 epoch, TowerFee calldata offer, uint256 gain) internal {
        uint256 fee = gain * offer.gainShareBps / BPS;
        TowerFeeRecord[MAX_TOWER_FEES_PER_CLOSE] storage slots = towerFees[user];
        uint256 i = 0;
        while (i < MAX_TOWER_FEES_PER_CLOSE && slots[i].tower != address(0) && slots[i].tower != offer.tower) i++;
        uint256 earned = i < MAX_TOWER_FEES_PER_CLOSE ? slots[i].fee : 0;
        uint256 cap = offer.maxFee < MAX_TOWER_FEE ? offer.maxFee : MAX_TOWER_FEE;
        uint256 room = cap > earned ? cap - earned : 0;
        if (fee > room) fee = room;
        if (fee == 0) return;
        if (i == MAX_TOWER_FEES_PER_CLOSE) revert TowerFeeSlotsFull();
        // casting to 'uint96' is safe because earned + fee <= cap <= MAX_TOWER_FEE
        // forge-lint: disable-next-line(unsafe-typecast)
        slots[i] = TowerFeeRecord(offer.tower, uint96(earned + fee));
        emit TowerFeeRecorded(user, epoch, offer.tower, gain, fee);
    }

    /// Pays the towers' fees out of a settlement of `paid` in the order they were earned, never
    /// more than `paid` in all, clears them, and returns what is left for the user.
    function _payTowerFees(address user, uint64 epoch, uint256 paid) internal returns (uint256 left) {
        left = paid;
        TowerFeeRecord[MAX_TOWER_FEES_PER_CLOSE] storage slots = towerFees[user];
        for (uint256 i = 0; i < MAX_TOWER_FEES_PER_CLOSE; i++) {
            TowerFeeRecord memory r = slots[i];
            if (r.tower == address(0)) break;
            delete slots[i];
            uint256 fee = r.fee < left ? r.fee : left;
            left -= fee;
            if (fee != 0) token.safeTransfer(r.tower, fee);
            emit TowerFeePaid(user, epoch, r.tower, fee);
        }
    }

    function _funds(Channel storage ch) internal view returns (uint256) {
        return uint256(ch.deposited) + ch.advancedFromReserve - ch.withdrawn - ch.realizedDebit;
    }

    function _beginClose(address user) internal returns (Channel storage ch) {
        ch = channels[user];
        if (ch.status != Status.Open) revert ChannelNotOpen();
        ch.status = Status.Closing;
        ch.closer = msg.sender;
        ch.settleBlock = uint64(block.number) + challengePeriodBlocks;
        emit ExitStarted(user, ch.epoch, msg.sender, ch.settleBlock);
    }

    function _requireChallengeOpen(Channel storage ch) internal view {
        if (ch.status != Status.Closing) revert ChannelNotClosing();
        if (block.number >= ch.settleBlock) revert ChallengePeriodOver();
    }

    /// A proof supersedes the stored one if its running total is higher, or equal with a higher
    /// nonce. Ordering by total first means a signer can only raise what works against itself:
    /// a higher nonce cannot lower a total the other side already holds (spec 5.10).
    function _supersedes(Side storage stored, uint64 nonce, uint128 cumulative) internal view returns (bool) {
        return cumulative > stored.cumulative || (cumulative == stored.cumulative && nonce > stored.nonce);
    }

    /// Recomputes a closing channel's draw on the reserve after its proofs changed.
    function _refreshReserveDraw(Channel storage ch) internal {
        uint256 claim = _claim(ch);
        uint256 funds = _funds(ch);
        uint256 draw = claim > funds ? claim - funds : 0;
        reservedForClosing = reservedForClosing - ch.reserveDraw + draw;
        ch.reserveDraw = draw;
    }

    /// Refuses to take `amount` from the reserve if that would leave less than closing channels draw.
    /// Reserve may leave (a payout, an advanced withdrawal, a reserve withdrawal) only while the
    /// hub is not halted, and never below what closing channels are owed.
    function _requireReserveLeft(uint256 amount) internal view {
        if (haltedAtCheckpoint != 0) revert HubHalted();
        if (amount > reserve || reserve - amount < reservedForClosing) revert ReserveInsufficient();
    }

    function _applyCredit(Channel storage ch, address user, Credit calldata c, bytes calldata hubSignature)
        internal
    {
        if (c.user != user) revert UserMismatch();
        if (c.epoch != ch.epoch) revert EpochMismatch();
        if (!_supersedes(ch.credit, c.nonce, c.cumulativeCredit)) revert ProofMustSupersede();
        _requireHubProof(hashCredit(c), hubSignature);
        ch.credit = Side(c.nonce, c.cumulativeCredit, c.lockedAmount, c.locksRoot);
        emit CreditSubmitted(c.user, c.epoch, c.nonce, c.cumulativeCredit, msg.sender);
    }

    function _applyDebit(Channel storage ch, address user, Debit calldata d, bytes calldata userSignature)
        internal
    {
        if (d.user != user) revert UserMismatch();
        if (d.epoch != ch.epoch) revert EpochMismatch();
        if (!_supersedes(ch.debit, d.nonce, d.cumulativeDebit)) revert ProofMustSupersede();
        _requireSigner(hashDebit(d), userSignature, user);
        ch.debit = Side(d.nonce, d.cumulativeDebit, d.lockedAmount, d.locksRoot);
        emit DebitSubmitted(user, d.epoch, d.nonce, d.cumulativeDebit, msg.sender);
    }

    /// A hub proof is either the hub's 65-byte signature over `digest`, or its signature over
    /// `ProofBatch(root)` followed by the 32-byte sibling hashes that lead from `digest` to
    /// `root` (pairs hashed in sorted order). Spec: docs/protocol.md, "Batched hub signatures".
    function _requireHubProof(bytes32 digest, bytes calldata proof) internal view {
        if (proof.length == 65) {
            _requireSigner(digest, proof, hub);
            return;
        }
        if (proof.length < 65 + 32 || (proof.length - 65) % 32 != 0 || (proof.length - 65) / 32 > MAX_PROOF_DEPTH) {
            revert InvalidSignature();
        }
        bytes32 node = digest;
        for (uint256 i = 65; i < proof.length; i += 32) {
            bytes32 sibling = bytes32(proof[i:i + 32]);
            node = node <= sibling ? keccak256(abi.encode(node, sibling)) : keccak256(abi.encode(sibling, node));
        }
        _requireSigner(hashProofBatch(node), proof[0:65], hub);
    }

    function _requireSigner(bytes32 digest, bytes calldata signature, address expected) internal pure {
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, signature);
        if (err != ECDSA.RecoverError.NoError) revert InvalidSignature();
        if (signer != expected) revert WrongSigner();
    }

    /// Pulls exactly `amount` from the caller; rejects fee-on-transfer or otherwise lossy tokens.
    function _pullExact(uint256 amount) internal {
        uint256 before = token.balanceOf(address(this));
        token.safeTransferFrom(msg.sender, address(this), amount);
        if (token.balanceOf(address(this)) - before != amount) revert TokenTransferMismatch();
    }
}
