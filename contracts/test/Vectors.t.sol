// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {deployHub} from "./utils/DeployHub.sol";
import {InfHubSettlement} from "../src/InfHubSettlement.sol";
import {PointRegistry} from "../src/PointRegistry.sol";
import {Test} from "./utils/Test.sol";
import {InfHub} from "../src/InfHub.sol";
import {InfHubCheckpoints} from "../src/InfHubCheckpoints.sol";
import {InfHubBase} from "../src/InfHubBase.sol";
import {InfToken} from "../src/InfToken.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";

/// Cross-checks the contract against the Rust core in both directions.
/// - Replays test-vectors/core-vectors.json (made by the Rust core's contract model) against the
///   real contract: every verdict, digest, payout, reserve and channel-funds total must agree.
/// - Writes test-vectors/forge-vectors.json with messages signed by vm.sign, which the Rust
///   test `forge_signed_vectors_verify_in_rust` checks.
contract VectorsTest is Test {
    /// The vectors use no locks: a placeholder registry keeps the hub's address as it was.
    PointRegistry internal constant NO_REGISTRY = PointRegistry(address(0x9E6));
    string internal constant CORE = "/../test-vectors/core-vectors.json";
    string internal constant FORGE = "/../test-vectors/forge-vectors.json";

    struct Step {
        string op;
        address sender;
        uint256 blockNumber;
        address user;
        uint64 epoch;
        uint64 nonce;
        uint128 cumulative;
        uint128 lockedAmount;
        bytes32 locksRoot;
        uint8 kind;
        address recipient;
        uint128 amount;
        bytes32 paymentId;
        uint64 expiryBlock;
        uint16 shareBps;
        bytes sig1;
        bytes sig2;
        bytes32 digest;
        string expect;
        uint256 paid;
        uint256 reserveAfter;
        uint256 fundsAfter;
        uint256 reservedAfter;
        uint256 excessAfter;
    }

    function readStep(string memory json, uint256 i) internal pure returns (Step memory s) {
        string memory p = string.concat(".steps[", vm.toString(i), "].");
        s.op = vm.parseJsonString(json, string.concat(p, "op"));
        s.sender = vm.parseJsonAddress(json, string.concat(p, "sender"));
        s.blockNumber = vm.parseJsonUint(json, string.concat(p, "block"));
        s.user = vm.parseJsonAddress(json, string.concat(p, "user"));
        s.epoch = uint64(vm.parseJsonUint(json, string.concat(p, "epoch")));
        s.nonce = uint64(vm.parseJsonUint(json, string.concat(p, "nonce")));
        s.cumulative = uint128(vm.parseJsonUint(json, string.concat(p, "cumulative")));
        s.lockedAmount = uint128(vm.parseJsonUint(json, string.concat(p, "lockedAmount")));
        s.locksRoot = vm.parseJsonBytes32(json, string.concat(p, "locksRoot"));
        s.kind = uint8(vm.parseJsonUint(json, string.concat(p, "kind")));
        s.recipient = vm.parseJsonAddress(json, string.concat(p, "recipient"));
        s.amount = uint128(vm.parseJsonUint(json, string.concat(p, "amount")));
        s.paymentId = vm.parseJsonBytes32(json, string.concat(p, "paymentId"));
        s.expiryBlock = uint64(vm.parseJsonUint(json, string.concat(p, "expiryBlock")));
        s.shareBps = uint16(vm.parseJsonUint(json, string.concat(p, "shareBps")));
        s.sig1 = vm.parseJsonBytes(json, string.concat(p, "sig1"));
        s.sig2 = vm.parseJsonBytes(json, string.concat(p, "sig2"));
        s.digest = vm.parseJsonBytes32(json, string.concat(p, "digest"));
        s.expect = vm.parseJsonString(json, string.concat(p, "expect"));
        s.paid = vm.parseJsonUint(json, string.concat(p, "paid"));
        s.reserveAfter = vm.parseJsonUint(json, string.concat(p, "reserveAfter"));
        s.fundsAfter = vm.parseJsonUint(json, string.concat(p, "fundsAfter"));
        s.reservedAfter = vm.parseJsonUint(json, string.concat(p, "reservedAfter"));
        s.excessAfter = vm.parseJsonUint(json, string.concat(p, "excessAfter"));
    }

    function eq(string memory a, string memory b) internal pure returns (bool) {
        return keccak256(bytes(a)) == keccak256(bytes(b));
    }

    function debitOf(Step memory s) internal pure returns (InfHubBase.Debit memory) {
        return InfHubBase.Debit(
            s.user, s.epoch, s.nonce, s.cumulative, s.lockedAmount, s.locksRoot, s.kind, s.recipient, s.amount, s.paymentId
        );
    }

    function creditOf(Step memory s) internal pure returns (InfHubBase.Credit memory) {
        return InfHubBase.Credit(s.user, s.epoch, s.nonce, s.cumulative, s.lockedAmount, s.locksRoot);
    }

    /// A tower-fee offer rides in recipient (tower), amount (maxFee), shareBps and expiryBlock.
    function offerOf(Step memory s) internal pure returns (InfHubBase.TowerFee memory) {
        return InfHubBase.TowerFee(s.user, s.epoch, s.recipient, s.amount, s.shareBps, s.expiryBlock);
    }

    function withdrawalOf(Step memory s) internal pure returns (InfHubBase.Withdrawal memory) {
        return InfHubBase.Withdrawal(s.user, s.epoch, s.cumulative, s.expiryBlock);
    }

    /// Deploys a hub as the vectors describe it, at the vectors' contract address.
    function deployAt(string memory json) internal returns (InfHub hub, InfToken token) {
        token = new InfToken(0);
        InfHub deployed = deployHub(
            token,
            vm.parseJsonAddress(json, ".hub"),
            uint64(vm.parseJsonUint(json, ".challengePeriodBlocks")),
            uint64(vm.parseJsonUint(json, ".reserveNoticeBlocks")),
            NO_REGISTRY
        );
        hub = InfHub(vm.parseJsonAddress(json, ".contract"));
        vm.etch(address(hub), address(deployed).code);
        assertEq(block.chainid, vm.parseJsonUint(json, ".chainId"), "chain id");
        assertEq(hub.domainSeparator(), vm.parseJsonBytes32(json, ".domainSeparator"), "domain separator");
        for (uint256 i = 0; i < 4; i++) {
            address actor = vm.parseJsonAddress(json, string.concat(".actors[", vm.toString(i), "]"));
            token.mint(actor, 1e30);
            vm.prank(actor);
            token.approve(address(hub), type(uint256).max);
        }
    }

    function execute(InfHub hub, InfToken token, Step memory s) internal returns (bool ok, bytes memory ret) {
        bytes memory data;
        bytes32 op = keccak256(bytes(s.op));
        if (op == keccak256("tokenTransfer")) {
            // A plain ERC-20 transfer to the contract, outside its functions.
            vm.prank(s.sender);
            return address(token).call(abi.encodeCall(token.transfer, (address(hub), s.amount)));
        }
        if (op == keccak256("open")) data = abi.encodeCall(InfHub.openChannel, (s.user));
        else if (op == keccak256("deposit")) data = abi.encodeCall(InfHub.deposit, (s.user, s.amount));
        else if (op == keccak256("depositReserve")) data = abi.encodeCall(InfHub.depositReserve, (s.amount));
        else if (op == keccak256("withdraw")) data = abi.encodeCall(InfHub.withdraw, (withdrawalOf(s), s.sig1, s.sig2));
        else if (op == keccak256("realizeDebit")) data = abi.encodeCall(InfHub.realizeDebit, (debitOf(s), s.sig1));
        else if (op == keccak256("realizeDebits")) {
            InfHubBase.Debit[] memory ds = new InfHubBase.Debit[](1);
            bytes[] memory sigs = new bytes[](1);
            (ds[0], sigs[0]) = (debitOf(s), s.sig1);
            data = abi.encodeCall(InfHub.realizeDebits, (ds, sigs));
        }
        else if (op == keccak256("startExit")) data = abi.encodeCall(InfHub.startExit, (creditOf(s), s.sig1));
        else if (op == keccak256("startHubClose")) {
            data = abi.encodeCall(InfHub.startHubClose, (s.user, debitOf(s), s.sig1));
        } else if (op == keccak256("submitCredit")) {
            data = abi.encodeCall(InfHub.submitCredit, (creditOf(s), s.sig1));
        } else if (op == keccak256("submitCreditForFee")) {
            data = abi.encodeCall(InfHub.submitCreditForFee, (creditOf(s), s.sig1, offerOf(s), s.sig2));
        } else if (op == keccak256("checkpoint")) {
            data = abi.encodeCall(
                InfHubCheckpoints.postCheckpoint, (s.epoch, s.paymentId, s.amount, s.nonce, s.expiryBlock, s.cumulative)
            );
        } else if (op == keccak256("submitDebit")) {
            data = abi.encodeCall(InfHub.submitDebit, (debitOf(s), s.sig1));
        } else if (op == keccak256("settle")) {
            data = abi.encodeCall(InfHubSettlement.settle, (s.user));
        } else if (op == keccak256("announce")) {
            data = abi.encodeCall(InfHub.announceReserveWithdrawal, (s.amount));
        } else if (op == keccak256("execute")) {
            data = abi.encodeCall(InfHub.executeReserveWithdrawal, (s.recipient));
        } else if (op == keccak256("payout")) {
            address[] memory to = new address[](1);
            uint256[] memory amounts = new uint256[](1);
            (to[0], amounts[0]) = (s.recipient, s.amount);
            data = abi.encodeCall(InfHub.payout, (s.paymentId, to, amounts));
        } else if (op == keccak256("excessToReserve")) {
            data = abi.encodeCall(InfHub.excessToReserve, ());
        } else if (op == keccak256("returnExcess")) {
            data = abi.encodeCall(InfHub.returnExcess, (s.recipient, s.amount));
        } else {
            revert(string.concat("unknown op in vectors: ", s.op));
        }
        vm.prank(s.sender);
        (ok, ret) = address(hub).call(data);
    }

    function checkDigest(InfHub hub, Step memory s) internal view {
        bytes32 op = keccak256(bytes(s.op));
        bytes32 got;
        if (op == keccak256("withdraw")) got = hub.hashWithdrawal(withdrawalOf(s));
        else if (op == keccak256("startExit") || op == keccak256("submitCredit") || op == keccak256("submitCreditForFee")) {
            got = hub.hashCredit(creditOf(s));
        }
        else if (
            op == keccak256("realizeDebit") || op == keccak256("realizeDebits") || op == keccak256("submitDebit")
                || op == keccak256("startHubClose")
        ) {
            got = hub.hashDebit(debitOf(s));
        } else {
            return;
        }
        assertEq(got, s.digest, string.concat("digest of ", s.op));
    }

    function test_contract_agrees_with_core_vectors() public {
        string memory json = vm.readFile(string.concat(vm.projectRoot(), CORE));
        (InfHub hub, InfToken token) = deployAt(json);
        uint256 count = vm.parseJsonUint(json, ".count");
        assertTrue(count > 20, "vectors file has too few steps");
        for (uint256 i = 0; i < count; i++) {
            Step memory s = readStep(json, i);
            string memory where = string.concat("step ", vm.toString(i), " (", s.op, ")");
            vm.roll(s.blockNumber);
            checkDigest(hub, s);
            uint256 userBefore = token.balanceOf(s.user);
            uint256 recipientBefore = token.balanceOf(s.recipient);
            (bool ok, bytes memory ret) = execute(hub, token, s);
            if (eq(s.expect, "ok")) {
                if (!ok) revert(string.concat(where, ": core says ok, contract reverted"));
            } else {
                assertTrue(!ok, string.concat(where, ": core says ", s.expect, ", contract accepted"));
                bytes4 want = bytes4(keccak256(bytes(string.concat(s.expect, "()"))));
                assertTrue(ret.length >= 4 && bytes4(ret) == want, string.concat(where, ": contract reverted otherwise than ", s.expect));
            }
            if (ok && keccak256(bytes(s.op)) == keccak256("settle")) {
                assertEq(token.balanceOf(s.user) - userBefore, s.paid, string.concat(where, ": paid"));
                if (s.recipient != address(0)) {
                    assertEq(token.balanceOf(s.recipient) - recipientBefore, s.amount, string.concat(where, ": tower fee"));
                }
            }
            assertEq(hub.reserve(), s.reserveAfter, string.concat(where, ": reserve"));
            assertEq(hub.totalChannelFunds(), s.fundsAfter, string.concat(where, ": channel funds"));
            assertEq(hub.reservedForClosing(), s.reservedAfter, string.concat(where, ": reserved for closing"));
            assertEq(hub.excess(), s.excessAfter, string.concat(where, ": excess"));
            assertEq(
                token.balanceOf(address(hub)), hub.reserve() + hub.totalChannelFunds() + hub.excess(), "accounting"
            );
        }
        assertEq(hub.reserve(), vm.parseJsonUint(json, ".final.reserve"), "final reserve");
        assertEq(token.balanceOf(address(hub)), vm.parseJsonUint(json, ".final.tokenBalance"), "final balance");
        assertEq(hub.reservedForClosing(), vm.parseJsonUint(json, ".final.reservedForClosing"), "final reserved");
        assertEq(hub.excess(), vm.parseJsonUint(json, ".final.excess"), "final excess");
    }

    // ------------------------------------------------------------ forge → Rust

    uint256 internal constant SIGNER_PK = 0xF0A6E;
    uint256 internal constant OTHER_PK = 0x0DD;

    string internal out;
    uint256 internal written;

    function verdict(bytes32 digest, bytes memory sig, address signer) internal pure returns (string memory) {
        (address got, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, sig);
        if (err != ECDSA.RecoverError.NoError) return "InvalidSignature";
        return got == signer ? "ok" : "WrongSigner";
    }

    /// `"key": "value", `
    function kv(string memory key, string memory value) internal pure returns (string memory) {
        return string.concat("\"", key, "\": \"", value, "\", ");
    }

    function add(string memory fields, bytes32 digest, bytes memory sig, address signer) internal {
        string memory tail = string.concat(kv("digest", vm.toString(digest)), kv("signature", vm.toString(sig)));
        tail = string.concat(tail, kv("signer", vm.toString(signer)));
        tail = string.concat(tail, "\"expect\": \"", verdict(digest, sig, signer), "\"}");
        out = string.concat(out, written == 0 ? "\n    {" : ",\n    {", fields, tail);
        written++;
    }

    function debitFields(InfHubBase.Debit memory d) internal pure returns (string memory f) {
        f = string.concat(kv("type", "Debit"), kv("user", vm.toString(d.user)), kv("epoch", vm.toString(uint256(d.epoch))));
        f = string.concat(f, kv("nonce", vm.toString(uint256(d.nonce))), kv("cumulative", vm.toString(uint256(d.cumulativeDebit))));
        f = string.concat(f, kv("lockedAmount", vm.toString(uint256(d.lockedAmount))), kv("locksRoot", vm.toString(d.locksRoot)));
        f = string.concat(f, kv("kind", vm.toString(uint256(d.kind))), kv("recipient", vm.toString(d.recipient)));
        f = string.concat(f, kv("amount", vm.toString(uint256(d.amount))), kv("paymentId", vm.toString(d.paymentId)));
    }

    function creditFields(InfHubBase.Credit memory c) internal pure returns (string memory f) {
        f = string.concat(kv("type", "Credit"), kv("user", vm.toString(c.user)), kv("epoch", vm.toString(uint256(c.epoch))));
        f = string.concat(f, kv("nonce", vm.toString(uint256(c.nonce))), kv("cumulative", vm.toString(uint256(c.cumulativeCredit))));
        f = string.concat(f, kv("lockedAmount", vm.toString(uint256(c.lockedAmount))), kv("locksRoot", vm.toString(c.locksRoot)));
    }

    function withdrawalFields(InfHubBase.Withdrawal memory w) internal pure returns (string memory f) {
        f = string.concat(kv("type", "Withdrawal"), kv("user", vm.toString(w.user)), kv("epoch", vm.toString(uint256(w.epoch))));
        f = string.concat(f, kv("cumulative", vm.toString(uint256(w.cumulativeWithdrawn))), kv("expiryBlock", vm.toString(uint256(w.expiryBlock))));
    }

    function towerFeeFields(InfHubBase.TowerFee memory t) internal pure returns (string memory f) {
        f = string.concat(kv("type", "TowerFee"), kv("user", vm.toString(t.user)), kv("epoch", vm.toString(uint256(t.epoch))));
        f = string.concat(f, kv("tower", vm.toString(t.tower)), kv("maxFee", vm.toString(uint256(t.maxFee))));
        f = string.concat(f, kv("gainShareBps", vm.toString(uint256(t.gainShareBps))), kv("validUntilBlock", vm.toString(uint256(t.validUntilBlock))));
    }

    function addValidVectors(InfHub hub, address signer) internal {
        InfHubBase.Debit memory d = InfHubBase.Debit(
            signer, 3, 17, 123_456_789_000_000_000_000, 0, bytes32(0), 1, address(0xCAFE), 5e18, keccak256("pay-17")
        );
        bytes32 digest = hub.hashDebit(d);
        add(debitFields(d), digest, signDigest(SIGNER_PK, digest), signer);
        d = InfHubBase.Debit(
            signer, 1, 1, type(uint128).max, 7, keccak256("locks"), 0, vm.addr(OTHER_PK), type(uint128).max, bytes32(uint256(1))
        );
        digest = hub.hashDebit(d);
        add(debitFields(d), digest, signDigest(SIGNER_PK, digest), signer);
        InfHubBase.Credit memory c = InfHubBase.Credit(signer, 2, 9, 42e18, 0, bytes32(0));
        digest = hub.hashCredit(c);
        add(creditFields(c), digest, signDigest(SIGNER_PK, digest), signer);
        InfHubBase.Withdrawal memory w = InfHubBase.Withdrawal(signer, 1, 777, 123_456);
        digest = hub.hashWithdrawal(w);
        add(withdrawalFields(w), digest, signDigest(SIGNER_PK, digest), signer);
        InfHubBase.TowerFee memory t = InfHubBase.TowerFee(signer, 4, address(0x7070), type(uint128).max, 10_000, 987_654);
        digest = hub.hashTowerFee(t);
        add(towerFeeFields(t), digest, signDigest(SIGNER_PK, digest), signer);
    }

    function addInvalidVectors(InfHub hub, address signer) internal {
        // Signed by another key than claimed.
        InfHubBase.Credit memory c = InfHubBase.Credit(signer, 2, 9, 42e18, 0, bytes32(0));
        bytes32 cd = hub.hashCredit(c);
        add(creditFields(c), cd, signDigest(OTHER_PK, cd), signer);
        InfHubBase.Debit memory d = InfHubBase.Debit(signer, 3, 18, 1, 0, bytes32(0), 0, address(0xCAFE), 1, keccak256("pay-18"));
        bytes32 dd = hub.hashDebit(d);
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(SIGNER_PK, dd);
        // Malleated: s -> n - s with v flipped (what ecrecover alone would accept).
        bytes32 highS = bytes32(0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141 - uint256(s));
        add(debitFields(d), dd, abi.encodePacked(r, highS, v == 27 ? uint8(28) : uint8(27)), signer);
        // v outside {27, 28}.
        add(debitFields(d), dd, abi.encodePacked(r, s, uint8(v - 27)), signer);
    }

    function test_write_forge_signed_vectors() public {
        InfToken token = new InfToken(0);
        InfHub hub = deployHub(token, vm.addr(SIGNER_PK), 20, 40, NO_REGISTRY);
        address signer = vm.addr(SIGNER_PK);
        addValidVectors(hub, signer);
        addInvalidVectors(hub, signer);
        string memory json = string.concat("{\n  \"chainId\": \"", vm.toString(block.chainid), "\",\n");
        json = string.concat(json, "  \"contract\": \"", vm.toString(address(hub)), "\",\n");
        json = string.concat(json, "  \"domainSeparator\": \"", vm.toString(hub.domainSeparator()), "\",\n");
        json = string.concat(json, "  \"vectors\": [", out, "\n  ]\n}\n");
        vm.writeFile(string.concat(vm.projectRoot(), FORGE), json);
        assertEq(written, 8, "vectors written");
    }
}
