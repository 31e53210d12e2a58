// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

/// @title InfHubBase: what InfHub and its checkpoint module share.
/// @notice The storage, messages, limits, events, errors and internal rules of the hub contract.
/// InfHub (channels, reserve, payouts) and InfHubCheckpoints (checkpoints, complaints), which
/// InfHub runs by DELEGATECALL, both inherit it and declare no storage of their own, so the
/// two share one storage layout (spec 5.16, docs/decisions.md D35: one contract no longer fits
/// the EVM's 24,576-byte code limit).
abstract contract InfHubBase is EIP712 {
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
    /// Most locks one `unlockMany` call resolves.
    uint256 public constant MAX_UNLOCK_BATCH = 256;
    /// Longest Merkle path from a lock leaf to its proof's `locksRoot` (2^32 leaves; the hub's
    /// ledger keeps at most 20,000 pending locks per direction).
    uint256 public constant MAX_LOCK_PATH_DEPTH = 32;
    /// The two directions of a channel's locks (spec 5.11a): the user's, on her debits (she pays
    /// the hub), and the hub's, on its credits (it pays her).
    uint8 public constant USER_LOCKS = 0;
    uint8 public constant HUB_LOCKS = 1;
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

    /// A user's dispute of the debit total her leaf in a checkpoint states: the hub must show a
    /// debit she signed of that total or more by answerByBlock, or the hub is halted.
    struct DebitChallenge {
        uint64 checkpointId;
        uint64 epoch;
        uint64 answerByBlock;
        bool open;
        uint128 debitTotal;
    }

    /// A fee a tower earned in the current close of a channel (one storage slot; a fee is at
    /// most MAX_TOWER_FEE).
    struct TowerFeeRecord {
        address tower;
        uint96 fee;
    }

    /// A pending multi-hop lock, a leaf under a proof's `locksRoot` (spec 5.17; LockLeaf.sol).
    struct Lock {
        bytes32 lockId;
        uint128 amount;
        uint64 expiryBlock;
        address point;
    }

    /// One direction of one close's locks (spec 5.11a).
    struct LockDirection {
        /// The most the direction's signer can be charged by the locks registered so far: the
        /// largest over registered proofs of the proof's total plus all its registered locks.
        uint256 potential;
        /// From settlement on: the charge so far, the largest of the stored total and each
        /// proof's total plus its revealed locks.
        uint256 charge;
        /// What settlement held back for the receiver and is not paid out yet.
        uint256 escrow;
        /// Registrations not resolved yet (revealed or expired).
        uint64 unresolved;
    }

    /// A proof some lock was registered through.
    struct LockedProof {
        address user;
        uint64 epoch;
        uint8 direction;
        uint128 cumulative;
        /// Sum of the locks registered through this proof, and of those revealed by their expiry.
        uint256 registered;
        uint256 revealed;
    }

    /// One lock registered through one proof.
    struct LockRegistration {
        uint128 amount;
        uint64 expiryBlock;
        bool resolved;
        address point;
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
        /// Block of this epoch's newest deposit (0: none): a checkpoint whose chainBlock is at
        /// or after it must count the whole `deposited` (spec 5.16).
        uint64 lastDepositBlock;
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
    /// Each account's newest debit challenge (spec 5.16): one open at a time, checkpoints in
    /// increasing id.
    mapping(address => DebitChallenge) public debitChallenges;
    /// Fees towers earned in each user's current close, filled from the front (an empty slot
    /// has tower zero); paid and cleared at settlement.
    mapping(address => TowerFeeRecord[MAX_TOWER_FEES_PER_CLOSE]) internal towerFees;
    /// Each close's lock directions, by user, epoch and direction (spec 5.11a).
    mapping(address => mapping(uint64 => LockDirection[2])) internal lockDirections;
    /// The proofs locks were registered through, by the proof's EIP-712 digest.
    mapping(bytes32 => LockedProof) internal lockedProofs;
    /// Registrations by keccak256(abi.encode(proof digest, lock id)).
    mapping(bytes32 => LockRegistration) internal lockRegistrations;
    /// Sum of every settled close's escrow not paid out yet (held for locks; spec 5.11a).
    uint256 public totalEscrow;

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
    /// A lock registered through a proof (its expiry and point: lockRegistrationOf).
    event LockRegistered(
        address indexed user,
        uint64 epoch,
        uint8 direction,
        bytes32 indexed proofDigest,
        bytes32 indexed lockId,
        uint128 amount,
        address by
    );
    event LocksEscrowed(address indexed user, uint64 epoch, uint256 userLocksEscrow, uint256 hubLocksEscrow);
    event LockResolved(
        address indexed user,
        uint64 epoch,
        uint8 direction,
        bytes32 indexed proofDigest,
        bytes32 indexed lockId,
        bool revealed,
        uint256 toReceiver,
        uint256 toSender
    );
    /// Escrow a resolved lock moved into the reserve (the hub's share of a close's locks), with
    /// the reserve afterwards, so the hub's books follow the reserve by running totals.
    event EscrowToReserve(address indexed user, uint64 epoch, uint256 amount, uint256 reserveAfter);
    event HubHaltedByComplaint(uint64 indexed id, address indexed account, address by);
    event DebitChallenged(uint64 indexed id, address indexed account, uint64 epoch, uint128 debitTotal, uint64 answerByBlock);
    event DebitChallengeAnswered(uint64 indexed id, address indexed account, uint64 nonce, uint128 cumulativeDebit);
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
    error DebitChallengeOutOfOrder();
    error NoDebitChallenge();
    error AnswerMustCoverDebit();
    error RegistryMustNotBeZero();
    error SettlementModuleMismatch();
    error LockNotUnderRoot();
    error LockAlreadyRegistered();
    error UnknownLock();
    error LockAlreadyResolved();
    error LockNotResolved();
    error ChannelNotSettled();

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

    /// Recomputes a closing channel's draw on the reserve after its proofs or its registered
    /// locks changed: the claim as if every lock the hub registered against itself opened
    /// (spec 5.11a), so the reserve that will escrow them cannot leave meanwhile.
    function _refreshReserveDraw(Channel storage ch, address user) internal {
        uint256 claim = _claim(ch);
        uint256 potential = lockDirections[user][ch.epoch][HUB_LOCKS].potential;
        if (potential > ch.credit.cumulative) claim += potential - ch.credit.cumulative;
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

    /// Runs this call's calldata in `module` on this contract's storage and returns or reverts
    /// with whatever it did (the hub's modules, spec 5.11 and 5.16).
    function _delegateTo(address module) internal {
        assembly {
            calldatacopy(0, 0, calldatasize())
            let ok := delegatecall(gas(), module, 0, calldatasize(), 0, 0)
            returndatacopy(0, 0, returndatasize())
            if iszero(ok) { revert(0, returndatasize()) }
            return(0, returndatasize())
        }
    }

    /// Pulls exactly `amount` from the caller; rejects fee-on-transfer or otherwise lossy tokens.
    function _pullExact(uint256 amount) internal {
        uint256 before = token.balanceOf(address(this));
        token.safeTransferFrom(msg.sender, address(this), amount);
        if (token.balanceOf(address(this)) - before != amount) revert TokenTransferMismatch();
    }
}
