//! ABI bindings for the hub contract and the token, written out by hand from
//! `contracts/src/InfHub.sol` and its modules `InfHubCheckpoints.sol` and `InfHubSettlement.sol` (one address) so that the Rust build does not depend on forge's build output.
//! The chain crate's anvil tests deploy the real contract and drive every binding here, so a
//! drift between this file and the Solidity source fails a test.

// `LockResolved` has eight fields, and `sol!` makes a constructor of them.
#![allow(clippy::too_many_arguments)]

use alloy::sol;

sol! {
    /// The hub contract's external interface (events, errors and the calls the hub makes).
    #[derive(Debug, PartialEq, Eq)]
    interface IInfHub {
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
        struct Credit {
            address user;
            uint64 epoch;
            uint64 nonce;
            uint128 cumulativeCredit;
            uint128 lockedAmount;
            bytes32 locksRoot;
        }
        struct Withdrawal {
            address user;
            uint64 epoch;
            uint128 cumulativeWithdrawn;
            uint64 expiryBlock;
        }
        struct TowerFee {
            address user;
            uint64 epoch;
            address tower;
            uint128 maxFee;
            uint16 gainShareBps;
            uint64 validUntilBlock;
        }
        struct TowerFeeRecord {
            address tower;
            uint96 fee;
        }
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
        struct SumNode {
            bytes32 hash;
            uint256 sum;
        }
        struct Lock {
            bytes32 lockId;
            uint128 amount;
            uint64 expiryBlock;
            address point;
        }
        struct LockDirection {
            uint256 potential;
            uint256 charge;
            uint256 escrow;
            uint64 unresolved;
        }
        struct LockRegistration {
            uint128 amount;
            uint64 expiryBlock;
            bool resolved;
            address point;
        }
        struct Side {
            uint64 nonce;
            uint128 cumulative;
            uint128 lockedAmount;
            bytes32 locksRoot;
        }
        struct Channel {
            uint8 status;
            uint64 epoch;
            uint64 settleBlock;
            uint64 lastDepositBlock;
            address closer;
            uint128 deposited;
            uint128 withdrawn;
            uint128 advancedFromReserve;
            uint128 realizedDebit;
            uint256 reserveDraw;
            Side debit;
            Side credit;
        }

        event ChannelOpened(address indexed user, uint64 epoch, address openedBy);
        event ChannelRegistered(address indexed user, uint64 epoch);
        event Deposited(address indexed user, uint64 epoch, address from, uint256 amount, uint256 totalDeposited);
        event Withdrawn(address indexed user, uint64 epoch, uint256 amount, uint256 totalWithdrawn, uint256 fromReserve);
        event ExitStarted(address indexed user, uint64 epoch, address closer, uint64 settleBlock);
        event DebitSubmitted(address indexed user, uint64 epoch, uint64 nonce, uint256 cumulativeDebit, address by);
        event CreditSubmitted(address indexed user, uint64 epoch, uint64 nonce, uint256 cumulativeCredit, address by);
        event DebitRealized(address indexed user, uint64 epoch, uint64 nonce, uint256 cumulativeDebit, uint256 moved, uint256 reserveAfter);
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
        event DebitChallenged(uint64 indexed id, address indexed account, uint64 epoch, uint128 debitTotal, uint64 answerByBlock);
        event DebitChallengeAnswered(uint64 indexed id, address indexed account, uint64 nonce, uint128 cumulativeDebit);
        event LockRegistered(address indexed user, uint64 epoch, uint8 direction, bytes32 indexed proofDigest, bytes32 indexed lockId, uint128 amount, address by);
        event EscrowToReserve(address indexed user, uint64 epoch, uint256 amount, uint256 reserveAfter);
        event LocksEscrowed(address indexed user, uint64 epoch, uint256 userLocksEscrow, uint256 hubLocksEscrow);
        event LockResolved(address indexed user, uint64 epoch, uint8 direction, bytes32 indexed proofDigest, bytes32 indexed lockId, bool revealed, uint256 toReceiver, uint256 toSender);
        event CheckpointPosted(uint64 indexed id, bytes32 root, uint256 totalLiability, uint64 ledgerSeq, uint64 chainBlock, uint256 inflowsThrough, uint256 reserve);

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
        error HubHalted();
        error ComplaintUnfounded();
        error PathTooLong();
        error PathIndexOutOfRange();
        error SumOutOfRange();
        error RootMismatch();
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

        function openChannel(address user) external;
        function openChannels(address[] calldata users) external;
        function deposit(address user, uint256 amount) external;
        function withdraw(Withdrawal calldata w, bytes calldata userSignature, bytes calldata hubSignature) external;
        function realizeDebit(Debit calldata debit, bytes calldata userSignature) external;
        function realizeDebits(Debit[] calldata debits, bytes[] calldata userSignatures) external;
        function startExit(Credit calldata credit, bytes calldata hubSignature) external;
        function startHubClose(address user, Debit calldata debit, bytes calldata userSignature) external;
        function submitCredit(Credit calldata credit, bytes calldata hubSignature) external;
        function submitCreditForFee(Credit calldata credit, bytes calldata hubSignature, TowerFee calldata offer, bytes calldata userSignature) external;
        function towerFeesOf(address user) external view returns (TowerFeeRecord[] memory);
        function postCheckpoint(uint64 id, bytes32 root, uint256 totalLiability, uint64 ledgerSeq, uint64 chainBlock, uint256 inflowsThrough) external;
        function proveCheckpointLeaf(uint64 id, CheckpointLeaf calldata leaf, uint256 index, SumNode[] calldata siblings) external view returns (bool);
        function lastCheckpointId() external view returns (uint64);
        function haltedAtCheckpoint() external view returns (uint64);
        function complainContradictedCredit(uint64 id, CheckpointLeaf calldata leaf, uint256 index, SumNode[] calldata siblings, Credit calldata credit, bytes calldata hubSignature) external;
        function complainMisstatedChainTotals(uint64 id, CheckpointLeaf calldata leaf, uint256 index, SumNode[] calldata siblings) external;
        function challengeDebit(uint64 id, CheckpointLeaf calldata leaf, uint256 index, SumNode[] calldata siblings) external;
        function answerDebitChallenge(Debit calldata debit, bytes calldata userSignature) external;
        function haltOnUnansweredChallenge(address account) external;
        function debitChallenges(address account) external view returns (uint64 checkpointId, uint64 epoch, uint64 answerByBlock, bool open, uint128 debitTotal);
        function checkpointModule() external view returns (address);
        function startExitFromCheckpoint(uint64 id, CheckpointLeaf calldata leaf, uint256 index, SumNode[] calldata siblings) external;
        function checkpoints(uint64 id) external view returns (bytes32 root, uint256 totalLiability, uint64 ledgerSeq, uint64 chainBlock, uint256 inflowsThrough);
        function liabilityInflowsTotal() external view returns (uint256);
        function submitDebit(Debit calldata debit, bytes calldata userSignature) external;
        function settle(address user) external;
        function registerDebitLock(Debit calldata debit, bytes calldata userSignature, Lock calldata lock, bytes32[] calldata path) external;
        function registerCreditLock(Credit calldata credit, bytes calldata hubSignature, Lock calldata lock, bytes32[] calldata path) external;
        function unlock(bytes32 proofDigest, bytes32 lockId) external;
        function unlockMany(bytes32[] calldata proofDigests, bytes32[] calldata lockIds) external;
        function lockDirectionOf(address user, uint64 epoch, uint8 direction) external view returns (LockDirection memory);
        function lockRegistrationOf(bytes32 proofDigest, bytes32 lockId) external view returns (LockRegistration memory);
        function totalEscrow() external view returns (uint256);
        function pointRegistry() external view returns (address);
        function settlementModule() external view returns (address);
        function depositReserve(uint256 amount) external;
        function depositFor(address account, uint256 amount) external;
        function announceReserveWithdrawal(uint256 amount) external;
        function cancelReserveWithdrawal() external;
        function executeReserveWithdrawal(address to) external;
        function payout(bytes32 batchId, address[] calldata recipients, uint256[] calldata amounts) external;
        function excessToReserve() external;
        function returnExcess(address to, uint256 amount) external;
        function excess() external view returns (uint256);
        function reservedForClosing() external view returns (uint256);
        function pendingReserveWithdrawal() external view returns (uint128 amount, uint64 unlockBlock);
        function channel(address user) external view returns (Channel memory);
        function reserve() external view returns (uint256);
        function totalChannelFunds() external view returns (uint256);
        function token() external view returns (address);
        function hub() external view returns (address);
        function challengePeriodBlocks() external view returns (uint64);
        function payoutBatchExecuted(bytes32 batchId) external view returns (bool);
    }

    /// The ERC-20 calls the hub and the tests make.
    #[derive(Debug, PartialEq, Eq)]
    interface IErc20 {
        function approve(address spender, uint256 amount) external returns (bool);
        function transfer(address to, uint256 amount) external returns (bool);
        function balanceOf(address owner) external view returns (uint256);
        function allowance(address owner, address spender) external view returns (uint256);
        function decimals() external view returns (uint8);
        function mint(address to, uint256 amount) external;
    }
}

sol! {
    /// The point registry (`contracts/src/PointRegistry.sol`, spec §5.17): one per chain, the
    /// block of each multi-hop lock point's first reveal.
    #[derive(Debug, PartialEq, Eq)]
    interface IPointRegistry {
        event PointRevealed(address indexed point, uint256 scalar);

        error ScalarOutOfRange();
        error TooManyReveals();

        function pointOf(uint256 scalar) external pure returns (address point);
        function reveal(uint256 scalar) external returns (address point);
        function revealBatch(uint256[] calldata scalars) external;
        function revealUpstream(uint256 scalar, uint256[] calldata tweaks) external returns (address point);
        function revealedAt(address point) external view returns (uint256 blockNumber);
        function isRevealedBy(address point, uint256 expiryBlock) external view returns (bool);
        function MAX_REVEALS_PER_CALL() external view returns (uint256);
    }
}
