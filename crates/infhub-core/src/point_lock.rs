//! Point locks for multi-hop payments (spec §5.17, D42): the algebra every party must agree on.
//!
//! A lock opens on a secp256k1 point `T = t·G` when its scalar `t` is revealed; on chain the
//! point is named by its Ethereum address, and `PointRegistry.sol` checks a scalar with one
//! `ecrecover` (`address(t·G) == ecrecover(0, 27, Gx, Gx·t mod n)`). The payer tweaks the
//! point on every link (`T_i = T_{i−1} + y_i·G`, each hop's tweak sealed to it, see
//! [`crate::sealed_step`]) so colluding hops cannot settle around an honest one (the wormhole
//! attack); each hop checks its step ([`check_hop`]) and, once it
//! learns its downstream scalar, computes its upstream one ([`Scalar::upstream`]). Pending locks
//! are leaves ([`Lock`]) under the same sorted-pair Merkle tree as batched hub signatures.
//!
//! Pure arithmetic: no randomness here (the caller draws tweaks), no IO.

use crate::eip712::{Domain, Eip712Message, Encoder};
use crate::merkle::MerkleTree;
use crate::signature::address_of;
use crate::{Amount, Error};
use alloy_primitives::{b256, Address, B256, U256};
use secp256k1::ecdsa::{RecoverableSignature, RecoveryId};
use secp256k1::{Message, PublicKey, SecretKey, SECP256K1};

/// The order `n` of secp256k1's group: scalars live in `1..n`.
pub const GROUP_ORDER: U256 =
    U256::from_be_bytes(b256!("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141").0);

/// The x-coordinate of the generator `G` (its y-coordinate is even, so `ecrecover`'s `v` is 27).
pub const GENERATOR_X: U256 =
    U256::from_be_bytes(b256!("79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798").0);

/// Most scalars one registry call reveals (`revealBatch`, or a scalar and its upstream steps).
pub const MAX_REVEALS_PER_CALL: usize = 256;

/// Most pending locks in one direction of one channel.
pub const MAX_PENDING_LOCKS: usize = 20_000;

/// A lock's secret: a scalar in `1..n`. Serialized as its value, checked on the way in.
#[derive(Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "U256", into = "U256")]
pub struct Scalar(SecretKey);

impl TryFrom<U256> for Scalar {
    type Error = Error;
    fn try_from(value: U256) -> Result<Scalar, Error> {
        Scalar::new(value)
    }
}

impl From<Scalar> for U256 {
    fn from(scalar: Scalar) -> U256 {
        scalar.value()
    }
}

impl std::fmt::Debug for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A scalar is a secret until revealed: show its point, not its value.
        write!(f, "Scalar(point {})", self.point().address())
    }
}

impl Scalar {
    /// The scalar `value`, refused as `ScalarOutOfRange` when it is 0 or at least `n` (the
    /// contract's rule too).
    pub fn new(value: U256) -> Result<Scalar, Error> {
        if value.is_zero() || value >= GROUP_ORDER {
            return Err(Error::ScalarOutOfRange);
        }
        let key = SecretKey::from_byte_array(value.to_be_bytes()).map_err(|_| Error::ScalarOutOfRange)?;
        Ok(Scalar(key))
    }

    /// The scalar from 32 big-endian bytes (a random draw, say).
    pub fn from_bytes(bytes: B256) -> Result<Scalar, Error> {
        Scalar::new(U256::from_be_bytes(bytes.0))
    }

    /// Its value.
    pub fn value(&self) -> U256 {
        U256::from_be_bytes(self.0.secret_bytes())
    }

    /// `n − self`: the scalar whose point is `−(self·G)`.
    pub fn negated(&self) -> Scalar {
        Scalar::new(GROUP_ORDER - self.value()).expect("n − t is in 1..n for t in 1..n")
    }

    /// The point `t·G` it opens.
    pub fn point(&self) -> Point {
        Point(PublicKey::from_secret_key(SECP256K1, &self.0))
    }

    /// `self + other mod n` (the payee's scalar is her invoice scalar plus every tweak);
    /// `ScalarOutOfRange` when the sum is 0.
    pub fn add(&self, other: &Scalar) -> Result<Scalar, Error> {
        self.0.add_tweak(&secp256k1::Scalar::from(other.0)).map(Scalar).map_err(|_| Error::ScalarOutOfRange)
    }

    /// The scalar one hop upstream, `self − tweak mod n`, for a hop that learned `self` from
    /// downstream; `ScalarOutOfRange` when it is 0 (the downstream point was the tweak's own).
    pub fn upstream(&self, tweak: &Scalar) -> Result<Scalar, Error> {
        self.0.add_tweak(&secp256k1::Scalar::from(tweak.0.negate())).map(Scalar).map_err(|_| Error::ScalarOutOfRange)
    }

    /// What `PointRegistry` passes to `ecrecover` to get `address(t·G)`: `(hash, v, r, s)` =
    /// `(0, 27, Gx, Gx·t mod n)`.
    pub fn ecrecover_inputs(&self) -> (B256, u8, U256, U256) {
        (B256::ZERO, 27, GENERATOR_X, GENERATOR_X.mul_mod(self.value(), GROUP_ORDER))
    }
}

/// What `ecrecover(hash, v, r, s)` returns (the precompile's rules: `v` 27 or 28, `r` and `s`
/// in `1..n`; the zero address otherwise, or when no point has x-coordinate `r`). No low-`s`
/// rule: that one is for transactions, not the precompile.
pub fn ecrecover(hash: B256, v: u8, r: U256, s: U256) -> Address {
    let id = match v {
        27 => RecoveryId::Zero,
        28 => RecoveryId::One,
        _ => return Address::ZERO,
    };
    let in_range = |x: U256| !x.is_zero() && x < GROUP_ORDER;
    if !in_range(r) || !in_range(s) {
        return Address::ZERO;
    }
    let mut compact = [0u8; 64];
    compact[..32].copy_from_slice(&r.to_be_bytes::<32>());
    compact[32..].copy_from_slice(&s.to_be_bytes::<32>());
    RecoverableSignature::from_compact(&compact, id)
        .and_then(|sig| SECP256K1.recover_ecdsa(Message::from_digest(hash.0), &sig))
        .map(|pk| address_of(&pk))
        .unwrap_or(Address::ZERO)
}

/// A lock's point, `t·G`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Point(PublicKey);

impl Point {
    /// The point from its 33-byte compressed form (how instructions carry it); `PointInvalid`
    /// when the bytes are not a point of the curve.
    pub fn from_compressed(bytes: &[u8; 33]) -> Result<Point, Error> {
        PublicKey::from_byte_array_compressed(*bytes).map(Point).map_err(|_| Error::PointInvalid)
    }

    /// Its 33-byte compressed form.
    pub fn compressed(&self) -> [u8; 33] {
        self.0.serialize()
    }

    /// The address that names it on chain (a lock leaf's `point`, the registry's key).
    pub fn address(&self) -> Address {
        address_of(&self.0)
    }

    /// `self − tweak·G`: the previous hop's point, when the route is built from the payee's end.
    pub fn untweaked(&self, tweak: &Scalar) -> Result<Point, Error> {
        self.tweaked(&tweak.negated())
    }

    /// `s·self`: with a hub's public key and an ephemeral scalar, the shared point of a sealed
    /// step (spec §5.23d).
    pub fn times(&self, s: &Scalar) -> Result<Point, Error> {
        self.0.mul_tweak(SECP256K1, &secp256k1::Scalar::from(s.0)).map(Point).map_err(|_| Error::PointInvalid)
    }

    /// The point of a public key (a signer's, recovered from a signature).
    pub(crate) fn from_key(key: PublicKey) -> Point {
        Point(key)
    }

    /// `self + tweak·G`: the next hop's point.
    pub fn tweaked(&self, tweak: &Scalar) -> Result<Point, Error> {
        self.0.add_exp_tweak(SECP256K1, &secp256k1::Scalar::from(tweak.0)).map(Point).map_err(|_| Error::PointInvalid)
    }
}

/// The points of a route's links: `start` (the invoice's point) on link 0, then each link's
/// point tweaked by its tweak.
pub fn point_chain(start: Point, tweaks: &[Scalar]) -> Result<Vec<Point>, Error> {
    let mut points = Vec::with_capacity(tweaks.len() + 1);
    points.push(start);
    for tweak in tweaks {
        let next = points.last().expect("non-empty").tweaked(tweak)?;
        points.push(next);
    }
    Ok(points)
}

/// A hop's check before it locks downstream: the point it is asked to lock must be the upstream
/// lock's point tweaked by the tweak it was given (`PointChainBroken` otherwise).
pub fn check_hop(upstream: &Point, downstream: &Point, tweak: &Scalar) -> Result<(), Error> {
    if upstream.tweaked(tweak)? != *downstream {
        return Err(Error::PointChainBroken);
    }
    Ok(())
}

/// A pending lock in a channel direction: `amount` moves to the receiver if `point` is revealed
/// in the registry no later than `expiry_block`, else back to the sender.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Lock {
    /// Unique per channel direction (the payment's id and the link).
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::WordSchema"))]
    pub lock_id: B256,
    /// The amount locked.
    pub amount: Amount,
    /// The last block at which a reveal counts.
    pub expiry_block: u64,
    /// The address of the point that opens it.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::AddressSchema"))]
    pub point: Address,
}

/// EIP-712 type string of [`Lock`].
pub const LOCK_TYPE: &str = "Lock(bytes32 lockId,uint128 amount,uint64 expiryBlock,address point)";

impl Eip712Message for Lock {
    const TYPE: &'static str = LOCK_TYPE;
    const TYPE_HASH: B256 = b256!("7d171efd68a72f87db70cfae77b1b5e25563b60a0a5652d1becab4a5132ebfea");
    fn struct_hash(&self) -> B256 {
        let mut e = Encoder::new(Self::TYPE_HASH);
        e.word(self.lock_id);
        e.u128(self.amount.0);
        e.u64(self.expiry_block);
        e.address(self.point);
        e.finish()
    }
}

/// `locksRoot` and `lockedAmount` of a channel direction's pending locks (zero and 0 for none).
/// Refuses more than [`MAX_PENDING_LOCKS`] (`TooManyPendingLocks`), a lock id used twice
/// (`LockIdReused`), a zero amount (`AmountMustNotBeZero`) and a sum past uint128
/// (`AmountTooLarge`).
pub fn locks_root(domain: &Domain, locks: &[Lock]) -> Result<(B256, Amount), Error> {
    if locks.is_empty() {
        return Ok((B256::ZERO, Amount::ZERO));
    }
    if locks.len() > MAX_PENDING_LOCKS {
        return Err(Error::TooManyPendingLocks);
    }
    let mut ids: Vec<B256> = locks.iter().map(|l| l.lock_id).collect();
    ids.sort_unstable();
    if ids.windows(2).any(|w| w[0] == w[1]) {
        return Err(Error::LockIdReused);
    }
    let mut total = Amount::ZERO;
    for lock in locks {
        if lock.amount == Amount::ZERO {
            return Err(Error::AmountMustNotBeZero);
        }
        total = total.checked_add(lock.amount)?;
    }
    let tree = MerkleTree::new(locks.iter().map(|l| l.digest(domain)).collect());
    Ok((tree.root(), total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::keccak256;

    fn scalar(v: u64) -> Scalar {
        Scalar::new(U256::from(v)).expect("in range")
    }

    /// Building a route from the payee's end: untweaking then tweaking by the same scalar is the
    /// identity, and the upstream scalar opens the untweaked point (t − y opens T − y·G).
    #[test]
    fn a_point_untweaked_then_tweaked_is_itself_and_its_scalar_steps_upstream() {
        for (t, y) in [
            (scalar(5), scalar(3)),
            (scalar(3), scalar(5)),
            (scalar(1), Scalar::new(GROUP_ORDER - U256::from(1)).expect("n-1")),
        ] {
            let p = t.point();
            let up = p.untweaked(&y).expect("point");
            assert_eq!(up.tweaked(&y).expect("point"), p);
            assert_eq!(t.upstream(&y).expect("scalar").point(), up);
            assert_eq!(y.negated().negated(), y);
        }
    }

    #[test]
    fn constants_are_the_curve_s() {
        assert_eq!(GROUP_ORDER.to_be_bytes::<32>(), secp256k1::constants::CURVE_ORDER);
        assert_eq!(GENERATOR_X.to_be_bytes::<32>()[..], secp256k1::constants::GENERATOR_X[..]);
        assert_eq!(Lock::TYPE_HASH, keccak256(LOCK_TYPE));
    }

    #[test]
    fn ecrecover_of_the_generator_trick_is_the_scalar_s_point() {
        for t in
            [Scalar::new(U256::from(1)).expect("1"), scalar(7), Scalar::new(GROUP_ORDER - U256::from(1)).expect("n-1")]
        {
            let (h, v, r, s) = t.ecrecover_inputs();
            assert_eq!(ecrecover(h, v, r, s), t.point().address());
            // The other parity recovers −t·G, another lock's address.
            let negated = Scalar::new(GROUP_ORDER - t.value()).expect("−t");
            assert_eq!(ecrecover(h, 28, r, s), negated.point().address());
            assert_ne!(negated.point().address(), t.point().address());
        }
    }

    #[test]
    fn scalars_out_of_range_are_refused_by_name() {
        assert_eq!(Scalar::new(U256::ZERO), Err(Error::ScalarOutOfRange));
        assert_eq!(Scalar::new(GROUP_ORDER), Err(Error::ScalarOutOfRange));
        assert_eq!(Scalar::new(U256::MAX), Err(Error::ScalarOutOfRange));
        // s = Gx·0 = 0: the precompile answers the zero address, never a lock's.
        assert_eq!(ecrecover(B256::ZERO, 27, GENERATOR_X, U256::ZERO), Address::ZERO);
        let t = scalar(5);
        assert_eq!(t.upstream(&t), Err(Error::ScalarOutOfRange), "a step to 0");
    }

    #[test]
    fn upstream_undoes_a_tweak_and_check_hop_catches_a_wrong_one() {
        let (z, y1, y2) = (scalar(1_000_003), scalar(77), scalar(91));
        let chain = point_chain(z.point(), &[y1, y2]).expect("chain");
        let t2 = z.add(&y1).and_then(|s| s.add(&y2)).expect("payee's scalar");
        assert_eq!(t2.point(), chain[2]);
        let t1 = t2.upstream(&y2).expect("step");
        assert_eq!(t1.point(), chain[1]);
        assert_eq!(t1.upstream(&y1).expect("step"), z);
        check_hop(&chain[0], &chain[1], &y1).expect("honest hop");
        assert_eq!(check_hop(&chain[0], &chain[2], &y1), Err(Error::PointChainBroken), "a skipped hop");
        assert_eq!(check_hop(&chain[0], &chain[1], &y2), Err(Error::PointChainBroken), "another tweak");
    }

    #[test]
    fn locks_root_refuses_what_it_must() {
        let d = Domain { chain_id: 1, verifying_contract: Address::repeat_byte(1) };
        let lock = |id: u8, amount: u128| Lock {
            lock_id: B256::repeat_byte(id),
            amount: Amount(amount),
            expiry_block: 100,
            point: scalar(u64::from(id)).point().address(),
        };
        assert_eq!(locks_root(&d, &[]), Ok((B256::ZERO, Amount::ZERO)));
        let (root, total) = locks_root(&d, &[lock(1, 5), lock(2, 7)]).expect("root");
        assert_eq!(total, Amount(12));
        assert_eq!(locks_root(&d, &[lock(2, 7), lock(1, 5)]).expect("root").0, root, "order-free");
        assert_eq!(locks_root(&d, &[lock(1, 5), lock(1, 7)]), Err(Error::LockIdReused));
        assert_eq!(locks_root(&d, &[lock(1, 0)]), Err(Error::AmountMustNotBeZero));
        assert_eq!(locks_root(&d, &[lock(1, u128::MAX), lock(2, 1)]), Err(Error::AmountTooLarge));
        let other = Domain { chain_id: 2, ..d };
        assert_ne!(locks_root(&other, &[lock(1, 5), lock(2, 7)]).expect("root").0, root, "bound to the domain");
        let many: Vec<Lock> = (0..=MAX_PENDING_LOCKS as u32)
            .map(|i| Lock {
                lock_id: B256::from(U256::from(i)),
                amount: Amount(1),
                expiry_block: 1,
                point: Address::ZERO,
            })
            .collect();
        assert_eq!(locks_root(&d, &many), Err(Error::TooManyPendingLocks));
    }
}
