//! secp256k1 signatures exactly as the contract accepts them.
//!
//! A signature is 65 bytes `r ‖ s ‖ v` with `v ∈ {27, 28}` and `s ≤ n/2` (OpenZeppelin's
//! `ECDSA.tryRecover` rules). Anything else is [`Error::InvalidSignature`]; a valid signature
//! by another key than required is [`Error::WrongSigner`]. Signing is deterministic (RFC 6979),
//! so test vectors are reproducible. Verification uses libsecp256k1.

use crate::Error;
use alloy_primitives::{keccak256, Address, B256};
use secp256k1::ecdsa::{RecoverableSignature, RecoveryId};
use secp256k1::{Message, PublicKey, SecretKey, SECP256K1};
use serde::{de::Error as _, Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Half the secp256k1 group order: the largest `s` a signature may have.
const HALF_ORDER: [u8; 32] = [
    0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x5D, 0x57, 0x6E,
    0x73, 0x57, 0xA4, 0x50, 0x1D, 0xDF, 0xE9, 0x2F, 0x46, 0x68, 0x1B, 0x20, 0xA0,
];

/// A 65-byte Ethereum signature `r ‖ s ‖ v`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Signature(pub [u8; 65]);

impl Signature {
    /// Parses bytes of any length; only 65 bytes can ever be valid, but the check happens at
    /// verification so the verdict names the rule (`InvalidSignature`), like the contract.
    pub fn from_slice(bytes: &[u8]) -> Result<Signature, Error> {
        <[u8; 65]>::try_from(bytes).map(Signature).map_err(|_| Error::InvalidSignature)
    }

    /// Recovers the signer of `digest`, enforcing the contract's rules.
    pub fn recover(&self, digest: B256) -> Result<Address, Error> {
        Ok(self.recover_key(digest)?.address())
    }

    /// The public key that signed `digest`, as a point (a hub's key, to seal route steps to it,
    /// spec §5.23d); the same rules as [`Signature::recover`].
    pub fn recover_key(&self, digest: B256) -> Result<crate::point_lock::Point, Error> {
        let (rs, v) = (&self.0[..64], self.0[64]);
        if self.0[32..64] > HALF_ORDER[..] {
            return Err(Error::InvalidSignature);
        }
        let rec_id = match v {
            27 => RecoveryId::Zero,
            28 => RecoveryId::One,
            _ => return Err(Error::InvalidSignature),
        };
        let sig = RecoverableSignature::from_compact(rs, rec_id).map_err(|_| Error::InvalidSignature)?;
        let msg = Message::from_digest(digest.0);
        let pk = SECP256K1.recover_ecdsa(msg, &sig).map_err(|_| Error::InvalidSignature)?;
        Ok(crate::point_lock::Point::from_key(pk))
    }

    /// Ok if `expected` signed `digest`.
    pub fn verify(&self, digest: B256, expected: Address) -> Result<(), Error> {
        if self.recover(digest)? == expected {
            Ok(())
        } else {
            Err(Error::WrongSigner)
        }
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex_encode(&self.0))
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&format!("0x{}", hex_encode(&self.0)))
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if !d.is_human_readable() {
            let bytes = <Vec<u8>>::deserialize(d)?;
            return Signature::from_slice(&bytes).map_err(|_| D::Error::custom("signature must be 65 bytes"));
        }
        let s = String::deserialize(d)?;
        let bytes = hex_decode(&s).ok_or_else(|| D::Error::custom("signature must be 0x-prefixed hex"))?;
        Signature::from_slice(&bytes).map_err(|_| D::Error::custom("signature must be 65 bytes"))
    }
}

/// A secp256k1 private key that signs EIP-712 digests.
#[derive(Clone)]
pub struct PrivateKey {
    secret: SecretKey,
    /// Derived once: deriving it is an elliptic-curve multiplication, and the ledger checks
    /// the hub's address on every command.
    address: Address,
}

impl PrivateKey {
    /// From 32 big-endian bytes; zero or ≥ the group order is rejected.
    pub fn from_bytes(bytes: [u8; 32]) -> Result<PrivateKey, Error> {
        let secret = SecretKey::from_byte_array(bytes).map_err(|_| Error::InvalidSignature)?;
        let address = address_of(&PublicKey::from_secret_key(SECP256K1, &secret));
        Ok(PrivateKey { secret, address })
    }

    /// The key's 32 secret bytes (for the wallet's keystore and transaction signer).
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.secret.secret_bytes()
    }

    /// The Ethereum address of this key.
    pub fn address(&self) -> Address {
        self.address
    }

    /// Signs a 32-byte digest deterministically (RFC 6979), low-s, `v ∈ {27, 28}`.
    pub fn sign(&self, digest: B256) -> Signature {
        let sig = SECP256K1.sign_ecdsa_recoverable(Message::from_digest(digest.0), &self.secret);
        let (rec_id, rs) = sig.serialize_compact();
        let mut out = [0u8; 65];
        out[..64].copy_from_slice(&rs);
        out[64] = 27 + i32::from(rec_id) as u8;
        Signature(out)
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({})", self.address())
    }
}

/// The Ethereum address of a public key: the last 20 bytes of keccak256 of its 64-byte form.
pub fn address_of(pk: &PublicKey) -> Address {
    let uncompressed = pk.serialize_uncompressed();
    Address::from_slice(&keccak256(&uncompressed[1..])[12..])
}

/// Lower-case hex without prefix.
pub fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Decodes `0x`-prefixed (or bare) hex; None on odd length or a non-hex digit.
pub fn hex_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    if !s.len().is_multiple_of(2) {
        return None;
    }
    let nib = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.as_bytes().chunks(2).map(|p| Some(nib(p[0])? << 4 | nib(p[1])?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::address;

    fn key(n: u8) -> PrivateKey {
        let mut b = [0u8; 32];
        b[31] = n;
        PrivateKey::from_bytes(b).unwrap()
    }

    #[test]
    fn known_address_of_key_one() {
        // The address of private key 1 is a well-known constant.
        assert_eq!(key(1).address(), address!("7E5F4552091A69125d5DfCb7b8C2659029395Bdf"));
    }

    #[test]
    fn sign_then_recover_roundtrip() {
        let d = keccak256(b"hello");
        let sig = key(7).sign(d);
        assert_eq!(sig.recover(d), Ok(key(7).address()));
        assert_eq!(sig.verify(d, key(8).address()), Err(Error::WrongSigner));
        assert!(sig.0[32..64] <= HALF_ORDER[..]);
    }

    #[test]
    fn malformed_signatures_are_invalid() {
        let d = keccak256(b"x");
        let good = key(3).sign(d);
        let mut bad_v = good;
        bad_v.0[64] = 1;
        assert_eq!(bad_v.recover(d), Err(Error::InvalidSignature));
        let mut high_s = good;
        high_s.0[32] = 0xFF;
        assert_eq!(high_s.recover(d), Err(Error::InvalidSignature));
        let zero = Signature([0u8; 65]);
        assert_eq!(zero.recover(d), Err(Error::InvalidSignature));
        assert_eq!(Signature::from_slice(&[0u8; 64]), Err(Error::InvalidSignature));
    }

    #[test]
    fn hex_roundtrip_and_rejects() {
        assert_eq!(hex_decode("0x0aFf"), Some(vec![0x0a, 0xff]));
        assert_eq!(hex_decode("0x0"), None);
        assert_eq!(hex_decode("zz"), None);
        assert_eq!(hex_encode(&[0x0a, 0xff]), "0aff");
    }
}
