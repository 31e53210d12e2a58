//! Route steps sealed to each hop's hub key (spec §5.23d, D61): the defence against hubs that
//! collude around an honest one (the wormhole attack, seed 001 §5's "半同态Hash") needs every
//! hop's tweak to be known only to the payer and that hop. The payer's wallet draws the tweaks
//! and seals each hop's step to that hop's hub key; the hubs that carry a step on (the payer's
//! hub first) cannot read it, so no hub learns another's tweak and the hubs on both sides of an
//! honest one cannot turn what they learn downstream into the scalar of the link before it.
//!
//! ECIES on secp256k1 with keccak256 (the hash every other part of the protocol uses, so no
//! further primitive): the caller draws an ephemeral scalar `e` (no randomness here); the
//! shared point is `S = e·K` (`K` the hub's public key) and the sealed step carries
//! `E = e·G`. The key is `k = keccak256("infhub sealed step" ‖ S ‖ E ‖ context)` (points
//! compressed; `context` the lock id, so a step sealed for one payment opens for no other); the
//! plaintext is XORed with the keystream `keccak256(k ‖ 0x01 ‖ i)` for blocks `i = 0, 1, …`
//! (keccak as a PRF in counter mode), and the tag is `keccak256(k ‖ 0x02 ‖ ciphertext)`
//! (encrypt, then authenticate). Opening checks the tag first: anything else is
//! [`Error::StepUnreadable`].
//!
//! Pure: no IO, no randomness.

use crate::point_lock::{Point, Scalar};
use crate::{Amount, Error};
use alloy_primitives::{keccak256, Address, Bytes, FixedBytes, B256};

/// The longest plaintext a sealed step may carry, in bytes.
pub const MAX_SEALED_STEP_BYTES: usize = 1024;

/// The length of an encoded [`RouteStep`]: next hub (20 bytes) ‖ tweak (32) ‖ amount (16) ‖
/// expiry block (8), big-endian.
pub const ROUTE_STEP_BYTES: usize = 20 + 32 + 16 + 8;

/// One hub's step of a route (spec §5.23b): the hub it forwards to (its own address when it
/// collects a part of a split payment, §5.23c), its tweak, and the amount and expiry block of
/// the lock it makes there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct RouteStep {
    /// The next hub (its hub address, as announcements name it).
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::AddressSchema"))]
    pub next_hub: Address,
    /// The tweak from this hop's incoming point to its outgoing one.
    pub tweak: Scalar,
    /// What the outgoing lock carries.
    pub amount: Amount,
    /// When the outgoing lock expires.
    pub expiry_block: u64,
}

/// One step of a quoted route as the payer's hub gives it, without a tweak (spec §5.23d): the
/// hub that takes the step, that hub's public key (the payer seals the step to it; its address
/// must be `hub`), the next hub, and the amount and expiry block of the lock the hub makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct StepPlan {
    /// The hub that takes this step.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::AddressSchema"))]
    pub hub: Address,
    /// Its public key, compressed.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::CompressedPointSchema"))]
    pub hub_key: FixedBytes<33>,
    /// The hub it forwards to (itself when it collects a part of a split payment).
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::AddressSchema"))]
    pub next_hub: Address,
    /// What its outgoing lock carries.
    pub amount: Amount,
    /// When its outgoing lock expires.
    pub expiry_block: u64,
}

impl StepPlan {
    /// The step with `tweak`.
    pub fn with_tweak(&self, tweak: Scalar) -> RouteStep {
        RouteStep { next_hub: self.next_hub, tweak, amount: self.amount, expiry_block: self.expiry_block }
    }

    /// Whether `step` is this plan with some tweak.
    pub fn is_planned(&self, step: &RouteStep) -> bool {
        step.next_hub == self.next_hub && step.amount == self.amount && step.expiry_block == self.expiry_block
    }
}

impl RouteStep {
    /// Its fixed-length encoding, the plaintext of a sealed step.
    pub fn encode(&self) -> [u8; ROUTE_STEP_BYTES] {
        let mut out = [0u8; ROUTE_STEP_BYTES];
        out[..20].copy_from_slice(self.next_hub.as_slice());
        out[20..52].copy_from_slice(&self.tweak.value().to_be_bytes::<32>());
        out[52..68].copy_from_slice(&self.amount.0.to_be_bytes());
        out[68..].copy_from_slice(&self.expiry_block.to_be_bytes());
        out
    }

    /// The step `bytes` encode; `StepUnreadable` for any other length or a tweak out of range.
    pub fn decode(bytes: &[u8]) -> Result<RouteStep, Error> {
        let bytes: &[u8; ROUTE_STEP_BYTES] = bytes.try_into().map_err(|_| Error::StepUnreadable)?;
        let tweak = Scalar::from_bytes(B256::from_slice(&bytes[20..52])).map_err(|_| Error::StepUnreadable)?;
        Ok(RouteStep {
            next_hub: Address::from_slice(&bytes[..20]),
            tweak,
            amount: Amount(u128::from_be_bytes(bytes[52..68].try_into().expect("16 bytes"))),
            expiry_block: u64::from_be_bytes(bytes[68..].try_into().expect("8 bytes")),
        })
    }
}

/// Seals `step` to the hub whose public key is `hub_key` for the lock `lock_id`, with a fresh
/// ephemeral scalar.
pub fn seal_step(step: &RouteStep, hub_key: &Point, ephemeral: &Scalar, lock_id: B256) -> Result<SealedStep, Error> {
    seal(&step.encode(), hub_key, ephemeral, lock_id)
}

/// Opens a step sealed to this hub (secret `hub_secret`) for the lock `lock_id`.
pub fn open_step(sealed: &SealedStep, hub_secret: &Scalar, lock_id: B256) -> Result<RouteStep, Error> {
    RouteStep::decode(&open(sealed, hub_secret, lock_id)?)
}

/// The domain tag of the key derivation.
const KEY_TAG: &[u8] = b"infhub sealed step";

/// One hop's step, readable only with its hub's key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct SealedStep {
    /// `E = e·G`, compressed.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::CompressedPointSchema"))]
    pub ephemeral_key: FixedBytes<33>,
    /// The step, encrypted (at most [`MAX_SEALED_STEP_BYTES`]).
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::HexBytesSchema"))]
    pub ciphertext: Bytes,
    /// The authentication tag over the ciphertext.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::WordSchema"))]
    pub tag: B256,
}

/// The key of a sealed step from the shared point, the ephemeral key and the context.
fn derive_key(shared: &Point, ephemeral: &[u8; 33], context: B256) -> B256 {
    let mut preimage = Vec::with_capacity(KEY_TAG.len() + 33 + 33 + 32);
    preimage.extend_from_slice(KEY_TAG);
    preimage.extend_from_slice(&shared.compressed());
    preimage.extend_from_slice(ephemeral);
    preimage.extend_from_slice(context.as_slice());
    keccak256(preimage)
}

/// XORs `data` with the keystream of `key`.
fn apply_keystream(key: B256, data: &mut [u8]) {
    for (i, chunk) in data.chunks_mut(32).enumerate() {
        let mut block = Vec::with_capacity(32 + 1 + 4);
        block.extend_from_slice(key.as_slice());
        block.push(0x01);
        block.extend_from_slice(&u32::try_from(i).expect("a step is far below 2^32 blocks").to_be_bytes());
        let stream = keccak256(block);
        for (byte, s) in chunk.iter_mut().zip(stream.iter()) {
            *byte ^= s;
        }
    }
}

/// The tag of `ciphertext` under `key`.
fn tag_of(key: B256, ciphertext: &[u8]) -> B256 {
    let mut preimage = Vec::with_capacity(32 + 1 + ciphertext.len());
    preimage.extend_from_slice(key.as_slice());
    preimage.push(0x02);
    preimage.extend_from_slice(ciphertext);
    keccak256(preimage)
}

/// Seals `plaintext` to the hub whose public key is `hub_key`, with the ephemeral scalar
/// `ephemeral` (fresh for every step) and `context` (the lock id). `StepUnreadable` when the
/// plaintext is longer than [`MAX_SEALED_STEP_BYTES`].
pub fn seal(plaintext: &[u8], hub_key: &Point, ephemeral: &Scalar, context: B256) -> Result<SealedStep, Error> {
    if plaintext.len() > MAX_SEALED_STEP_BYTES {
        return Err(Error::StepUnreadable);
    }
    let ephemeral_key = ephemeral.point().compressed();
    let key = derive_key(&hub_key.times(ephemeral)?, &ephemeral_key, context);
    let mut ciphertext = plaintext.to_vec();
    apply_keystream(key, &mut ciphertext);
    let tag = tag_of(key, &ciphertext);
    Ok(SealedStep { ephemeral_key: FixedBytes(ephemeral_key), ciphertext: ciphertext.into(), tag })
}

/// Opens `sealed` with the hub's secret `hub_secret` for `context`: the plaintext, or
/// `StepUnreadable` (sealed to another key, for another lock, altered, or too long).
pub fn open(sealed: &SealedStep, hub_secret: &Scalar, context: B256) -> Result<Vec<u8>, Error> {
    if sealed.ciphertext.len() > MAX_SEALED_STEP_BYTES {
        return Err(Error::StepUnreadable);
    }
    let ephemeral = Point::from_compressed(&sealed.ephemeral_key.0).map_err(|_| Error::StepUnreadable)?;
    let key = derive_key(&ephemeral.times(hub_secret)?, &sealed.ephemeral_key.0, context);
    if tag_of(key, &sealed.ciphertext) != sealed.tag {
        return Err(Error::StepUnreadable);
    }
    let mut plaintext = sealed.ciphertext.to_vec();
    apply_keystream(key, &mut plaintext);
    Ok(plaintext)
}

/// A payer's route, sealed (spec §5.23d): her lock's point, the tweak sum (the scalar that
/// opens her lock plus it is the invoice's, her proof of payment), and each part's steps, each
/// sealed to its hub.
#[derive(Clone, Debug)]
pub struct SealedRoute {
    /// The point of the payer's one lock, `Z − Σy` (every part's tweaks sum to the same).
    pub lock_point: Point,
    /// `Σy` of every part.
    pub tweak_sum: Scalar,
    /// Each part's steps, sealed, in the quote's order.
    pub parts: Vec<Vec<SealedStep>>,
}

/// Checks a quoted route and seals it for the payer (spec §5.23d): every part starts at the
/// payer's hub, each step's hub is the previous step's next hub, a single route ends at the
/// payee's hub and each part of a split one with the payee's hub collecting it, each step's key
/// is its hub's, expiries fall along a part, and it has at most `MAX_HOPS + 1` steps
/// (`RoutePlanInvalid` otherwise). The payer draws every tweak (`draw`, a fresh random scalar
/// each call; every part's tweaks sum to the first's, so all start from her one lock point) and
/// an ephemeral key per step, and seals each step to its hub for `lock_id`.
pub fn seal_route(
    parts: &[Vec<StepPlan>],
    payer_hub: Address,
    payee_hub: Address,
    invoice_point: &Point,
    lock_id: B256,
    draw: &mut dyn FnMut() -> Scalar,
) -> Result<SealedRoute, Error> {
    if parts.is_empty() || parts.len() > crate::routing::MAX_PATHS {
        return Err(Error::RoutePlanInvalid);
    }
    for steps in parts {
        check_plan(steps, payer_hub, payee_hub, parts.len() > 1)?;
    }
    let mut tweaks: Vec<Vec<Scalar>> = Vec::with_capacity(parts.len());
    let mut total: Option<Scalar> = None;
    for steps in parts {
        let mut ys: Vec<Scalar> = (0..steps.len()).map(|_| draw()).collect();
        match total {
            None => total = Some(sum(&ys)?),
            // This part's first tweak makes its sum the first part's.
            Some(t) => ys[0] = if ys.len() == 1 { t } else { t.upstream(&sum(&ys[1..])?)? },
        }
        tweaks.push(ys);
    }
    let tweak_sum = total.expect("at least one part");
    let lock_point = invoice_point.untweaked(&tweak_sum)?;
    let mut sealed = Vec::with_capacity(parts.len());
    for (steps, ys) in parts.iter().zip(&tweaks) {
        let chain = crate::point_lock::point_chain(lock_point, ys)?;
        assert_eq!(chain.last(), Some(invoice_point), "every part's tweaks lead to the invoice's point");
        let mut part = Vec::with_capacity(steps.len());
        for (plan, y) in steps.iter().zip(ys) {
            let key = Point::from_compressed(&plan.hub_key.0)?;
            part.push(seal_step(&plan.with_tweak(*y), &key, &draw(), lock_id)?);
        }
        sealed.push(part);
    }
    Ok(SealedRoute { lock_point, tweak_sum, parts: sealed })
}

/// One part's steps chain from the payer's hub to the payee's, each key its hub's.
fn check_plan(steps: &[StepPlan], payer_hub: Address, payee_hub: Address, split: bool) -> Result<(), Error> {
    let (Some(first), Some(last)) = (steps.first(), steps.last()) else { return Err(Error::RoutePlanInvalid) };
    let ends = match split {
        false => last.next_hub == payee_hub,
        true => last.hub == payee_hub && last.next_hub == payee_hub,
    };
    if steps.len() > crate::routing::MAX_HOPS + 1 || first.hub != payer_hub || !ends {
        return Err(Error::RoutePlanInvalid);
    }
    for pair in steps.windows(2) {
        if pair[1].hub != pair[0].next_hub || pair[1].expiry_block >= pair[0].expiry_block {
            return Err(Error::RoutePlanInvalid);
        }
    }
    for plan in steps {
        if Point::from_compressed(&plan.hub_key.0).map(|k| k.address()) != Ok(plan.hub) {
            return Err(Error::RoutePlanInvalid);
        }
    }
    Ok(())
}

/// `Σ scalars mod n`.
fn sum(scalars: &[Scalar]) -> Result<Scalar, Error> {
    let (first, rest) = scalars.split_first().ok_or(Error::RoutePlanInvalid)?;
    rest.iter().try_fold(*first, |acc, y| acc.add(y))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::U256;

    fn scalar(n: u64) -> Scalar {
        Scalar::new(U256::from(n)).expect("scalar")
    }

    /// A step opens with its hub's key for its lock, and for no other key, lock or byte changed.
    #[test]
    fn a_sealed_step_opens_only_with_its_hubs_key_for_its_lock_and_unaltered() {
        let (hub, other) = (scalar(0xB0B), scalar(0xC0C));
        let context = B256::repeat_byte(7);
        let text = br#"{"nextHub":"0x42","tweak":"0x1234","amount":"10","expiryBlock":900}"#;
        let sealed = seal(text, &hub.point(), &scalar(0xE1), context).expect("seal");
        assert_ne!(sealed.ciphertext.as_ref(), &text[..], "encrypted");
        assert_eq!(open(&sealed, &hub, context).expect("open"), text.to_vec());
        assert_eq!(open(&sealed, &other, context), Err(Error::StepUnreadable), "another hub's key");
        assert_eq!(open(&sealed, &hub, B256::repeat_byte(8)), Err(Error::StepUnreadable), "another lock");
        for i in 0..sealed.ciphertext.len() {
            let mut altered = sealed.clone();
            let mut bytes = altered.ciphertext.to_vec();
            bytes[i] ^= 1;
            altered.ciphertext = bytes.into();
            assert_eq!(open(&altered, &hub, context), Err(Error::StepUnreadable), "byte {i} flipped");
        }
        let mut swapped = sealed.clone();
        swapped.ephemeral_key = FixedBytes(scalar(0xE2).point().compressed());
        assert_eq!(open(&swapped, &hub, context), Err(Error::StepUnreadable), "another ephemeral key");
        let mut bad_point = sealed;
        bad_point.ephemeral_key = FixedBytes([5; 33]);
        assert_eq!(open(&bad_point, &hub, context), Err(Error::StepUnreadable), "not a point");
    }

    /// Hub secrets and addresses for a route A → B → C.
    fn hubs() -> [(Scalar, Address); 3] {
        [scalar(0xA), scalar(0xB), scalar(0xC)].map(|k| (k, k.point().address()))
    }

    fn plan(hub: &(Scalar, Address), next_hub: Address, amount: u128, expiry_block: u64) -> StepPlan {
        StepPlan {
            hub: hub.1,
            hub_key: FixedBytes(hub.0.point().compressed()),
            next_hub,
            amount: Amount(amount),
            expiry_block,
        }
    }

    fn counter() -> impl FnMut() -> Scalar {
        let mut n = 1_000u64;
        move || {
            n += 7;
            scalar(n * 7919)
        }
    }

    /// The payer seals A's and B's steps; each hub opens only its own, the points chain from her
    /// lock to the invoice's, and the hubs around B (A, which learns the payee's scalar from a
    /// colluding C) cannot open her lock without B's tweak: the wormhole attack fails.
    #[test]
    fn a_sealed_route_chains_to_the_invoice_and_the_hubs_around_an_honest_one_cannot_skip_it() {
        let [a, b, c] = hubs();
        let z = scalar(0x5EC2E7);
        let lock_id = B256::repeat_byte(3);
        let steps = vec![plan(&a, b.1, 13, 580), plan(&b, c.1, 10, 560)];
        let route =
            seal_route(std::slice::from_ref(&steps), a.1, c.1, &z.point(), lock_id, &mut counter()).expect("seal");
        let part = &route.parts[0];
        let step_a = open_step(&part[0], &a.0, lock_id).expect("A opens its step");
        let step_b = open_step(&part[1], &b.0, lock_id).expect("B opens its step");
        assert_eq!(open_step(&part[1], &a.0, lock_id), Err(Error::StepUnreadable), "A cannot read B's step");
        assert!(steps[0].is_planned(&step_a) && steps[1].is_planned(&step_b));
        let t1 = route.lock_point.tweaked(&step_a.tweak).expect("point");
        assert_eq!(t1.tweaked(&step_b.tweak).expect("point"), z.point(), "the chain ends at the invoice's point");
        // A and C collude: C hands A the payee's scalar z; A knows only its own tweak.
        let guess = z.upstream(&step_a.tweak).expect("scalar");
        assert_ne!(guess.point(), route.lock_point, "z less A's tweak does not open the payer's lock");
        assert_ne!(z.point(), route.lock_point, "nor does z");
        // With B's tweak (B steps the scalar upstream when it is paid) it does.
        let honest = z.upstream(&step_b.tweak).and_then(|t| t.upstream(&step_a.tweak)).expect("scalar");
        assert_eq!(honest.point(), route.lock_point);
        assert_eq!(honest.add(&route.tweak_sum).expect("z"), z, "her proof of payment");
    }

    /// A split route: every part starts from the payer's one lock point and ends at the
    /// invoice's, the payee's hub collecting each part with its own step.
    #[test]
    fn every_part_of_a_sealed_split_route_starts_at_the_one_lock_point() {
        let [a, b, c] = hubs();
        let d = (scalar(0xD), scalar(0xD).point().address());
        let z = scalar(77);
        let lock_id = B256::repeat_byte(4);
        let parts = vec![
            vec![plan(&a, b.1, 6, 580), plan(&b, c.1, 5, 560), plan(&c, c.1, 5, 540)],
            vec![plan(&a, d.1, 6, 580), plan(&d, c.1, 5, 560), plan(&c, c.1, 5, 540)],
        ];
        let route = seal_route(&parts, a.1, c.1, &z.point(), lock_id, &mut counter()).expect("seal");
        for part in &route.parts {
            let mut point = route.lock_point;
            for (sealed, hub) in part.iter().zip([a.0, if part == &route.parts[0] { b.0 } else { d.0 }, c.0]) {
                point = point.tweaked(&open_step(sealed, &hub, lock_id).expect("open").tweak).expect("point");
            }
            assert_eq!(point, z.point());
        }
    }

    /// Every way a dishonest payer's hub could mis-describe the route is refused before anything
    /// is sealed: a step's key that is not its hub's (the hub would read another's step), a
    /// route not starting at the payer's hub, a gap, an end elsewhere, expiries that do not
    /// fall, an empty part.
    #[test]
    fn a_quoted_route_that_does_not_chain_or_names_a_wrong_key_is_refused() {
        let [a, b, c] = hubs();
        let z = scalar(5).point();
        let good = vec![plan(&a, b.1, 13, 580), plan(&b, c.1, 10, 560)];
        let mut wrong_key = good.clone();
        wrong_key[1].hub_key = FixedBytes(a.0.point().compressed());
        let mut gap = good.clone();
        gap[1].hub = c.1;
        let mut late = good.clone();
        late[1].expiry_block = 580;
        let cases = [
            ("a key not its hub's", vec![wrong_key]),
            ("not from the payer's hub", vec![good[1..].to_vec()]),
            ("a gap", vec![gap]),
            ("ends elsewhere", vec![good[..1].to_vec()]),
            ("expiries do not fall", vec![late]),
            ("an empty part", vec![vec![]]),
            ("no part", vec![]),
        ];
        for (what, parts) in cases {
            let sealed = seal_route(&parts, a.1, c.1, &z, B256::ZERO, &mut counter());
            assert_eq!(sealed.err(), Some(Error::RoutePlanInvalid), "{what}");
        }
        assert!(seal_route(&[good], a.1, c.1, &z, B256::ZERO, &mut counter()).is_ok());
    }

    /// A route step round-trips through its encoding and its seal; a tweak of 0 is refused.
    #[test]
    fn a_route_step_round_trips_sealed_and_a_zero_tweak_is_refused() {
        let step = RouteStep {
            next_hub: Address::repeat_byte(0x42),
            tweak: scalar(12_345),
            amount: Amount(u128::MAX),
            expiry_block: u64::MAX - 1,
        };
        assert_eq!(RouteStep::decode(&step.encode()), Ok(step));
        let hub = scalar(77);
        let sealed = seal_step(&step, &hub.point(), &scalar(5), B256::repeat_byte(1)).expect("seal");
        assert_eq!(open_step(&sealed, &hub, B256::repeat_byte(1)), Ok(step));
        let mut zero = step.encode();
        zero[20..52].fill(0);
        assert_eq!(RouteStep::decode(&zero), Err(Error::StepUnreadable));
        assert_eq!(RouteStep::decode(&zero[1..]), Err(Error::StepUnreadable));
    }

    /// Two steps sealed with different ephemeral keys differ, and the keystream covers a
    /// plaintext of several blocks; the length limit holds on both sides.
    #[test]
    fn ephemeral_keys_differ_long_steps_round_trip_and_the_length_limit_holds() {
        let hub = scalar(99);
        let text: Vec<u8> = (0..MAX_SEALED_STEP_BYTES).map(|i| (i % 251) as u8).collect();
        let a = seal(&text, &hub.point(), &scalar(1), B256::ZERO).expect("seal");
        let b = seal(&text, &hub.point(), &scalar(2), B256::ZERO).expect("seal");
        assert_ne!(a.ciphertext, b.ciphertext);
        assert_eq!(open(&a, &hub, B256::ZERO).expect("open"), text);
        let too_long = vec![0u8; MAX_SEALED_STEP_BYTES + 1];
        assert_eq!(seal(&too_long, &hub.point(), &scalar(1), B256::ZERO), Err(Error::StepUnreadable));
        let mut long = a;
        long.ciphertext = too_long.into();
        assert_eq!(open(&long, &hub, B256::ZERO), Err(Error::StepUnreadable));
    }
}
