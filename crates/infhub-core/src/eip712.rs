//! EIP-712 hashing, byte-identical to the contract.
//!
//! Every signed message is hashed as `keccak256(0x1901 ‖ domainSeparator ‖ structHash)`, where
//! the domain binds the contract's name ("InfHub"), version ("1"), the chain id and the
//! contract's address, so a signature for one hub or chain is worthless on another. The type
//! strings below are the contract's `*_TYPEHASH` preimages, character for character.

use crate::signature::{PrivateKey, Signature};
use alloy_primitives::{b256, keccak256, Address, B256};
use serde::{Deserialize, Serialize};
use std::cell::Cell;

/// The EIP-712 domain type string used by OpenZeppelin's `EIP712`.
pub const DOMAIN_TYPE: &str = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)";
/// The domain name of every infhub message.
pub const DOMAIN_NAME: &str = "InfHub";
/// The domain version of every infhub message.
pub const DOMAIN_VERSION: &str = "1";
/// `keccak256(DOMAIN_TYPE)`, `keccak256(DOMAIN_NAME)`, `keccak256(DOMAIN_VERSION)`, written out
/// (a test checks them) because every digest needs them.
const DOMAIN_TYPE_HASH: B256 = b256!("8b73c3c69bb8fe3d512ecc4cf759cc79239f7b179b0ffacaa9a75d522b39400f");
const DOMAIN_NAME_HASH: B256 = b256!("ab557ba57f3332f80cef43bb06180622ae39cdc1794534c6c8a1b54766b8c57f");
const DOMAIN_VERSION_HASH: B256 = b256!("c89efdaa54c0f20c7adf612882df0950f5a951637e0307cdcb4c672f298b8bc6");

thread_local! {
    /// The last domain hashed on this thread and its separator: a process signs and checks
    /// messages of one hub, so this memo saves two keccak permutations per digest. (Memoizing
    /// a pure function; it changes no result.)
    static LAST_SEPARATOR: Cell<Option<(Domain, B256)>> = const { Cell::new(None) };
}

/// The signing domain: one hub contract on one chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Domain {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// Address of the `InfHub` contract.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::AddressSchema"))]
    pub verifying_contract: Address,
}

impl Domain {
    /// The 32-byte domain separator, as `InfHub.domainSeparator()` returns it.
    pub fn separator(&self) -> B256 {
        if let Some((domain, separator)) = LAST_SEPARATOR.get() {
            if domain == *self {
                return separator;
            }
        }
        let mut enc = Encoder::new(DOMAIN_TYPE_HASH);
        enc.word(DOMAIN_NAME_HASH);
        enc.word(DOMAIN_VERSION_HASH);
        enc.u64(self.chain_id);
        enc.address(self.verifying_contract);
        let separator = enc.finish();
        LAST_SEPARATOR.set(Some((*self, separator)));
        separator
    }

    /// The digest a signer signs for a struct hash in this domain.
    pub fn digest(&self, struct_hash: B256) -> B256 {
        let mut buf = [0u8; 66];
        buf[0] = 0x19;
        buf[1] = 0x01;
        buf[2..34].copy_from_slice(self.separator().as_slice());
        buf[34..66].copy_from_slice(struct_hash.as_slice());
        keccak256(buf)
    }
}

/// Most 32-byte words in an encoded struct (the type hash and the fields of `Debit`).
const MAX_ENCODED_WORDS: usize = 12;

/// ABI-encodes a struct's fields as 32-byte words after its type hash, then hashes them (on
/// the stack: this runs several times per payment).
pub(crate) struct Encoder {
    buf: [u8; 32 * MAX_ENCODED_WORDS],
    len: usize,
}

impl Encoder {
    pub(crate) fn new(type_hash: B256) -> Self {
        let mut e = Encoder { buf: [0u8; 32 * MAX_ENCODED_WORDS], len: 0 };
        e.word(type_hash);
        e
    }

    fn push_word(&mut self) -> &mut [u8] {
        assert!(self.len < 32 * MAX_ENCODED_WORDS, "a struct with more than {MAX_ENCODED_WORDS} words");
        let w = &mut self.buf[self.len..self.len + 32];
        self.len += 32;
        w
    }

    pub(crate) fn word(&mut self, w: B256) {
        self.push_word().copy_from_slice(w.as_slice());
    }

    pub(crate) fn address(&mut self, a: Address) {
        self.push_word()[12..].copy_from_slice(a.as_slice());
    }

    pub(crate) fn u128(&mut self, v: u128) {
        self.push_word()[16..].copy_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.u128(u128::from(v));
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.u128(u128::from(v));
    }

    pub(crate) fn finish(self) -> B256 {
        keccak256(&self.buf[..self.len])
    }
}

/// A message type with an EIP-712 struct hash.
pub trait Eip712Message {
    /// The EIP-712 type string.
    const TYPE: &'static str;
    /// `keccak256(TYPE)`, written out (a test checks it) so hashing a message does not
    /// rehash its type string.
    const TYPE_HASH: B256;
    /// `hashStruct(message)`.
    fn struct_hash(&self) -> B256;
    /// The digest to sign in `domain`.
    fn digest(&self, domain: &Domain) -> B256 {
        domain.digest(self.struct_hash())
    }
    /// Signs the message in `domain`.
    fn sign(&self, domain: &Domain, key: &PrivateKey) -> Signature {
        key.sign(self.digest(domain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{address, b256};

    #[test]
    fn domain_separator_matches_known_value() {
        // Independently computed with `cast`-style encoding for chain 1 and contract 0x…01:
        // keccak256(abi.encode(TYPE, keccak("InfHub"), keccak("1"), 1, 0x…01)).
        let d = Domain { chain_id: 1, verifying_contract: address!("0000000000000000000000000000000000000001") };
        let mut manual = Vec::new();
        manual.extend_from_slice(keccak256(DOMAIN_TYPE).as_slice());
        manual.extend_from_slice(keccak256("InfHub").as_slice());
        manual.extend_from_slice(keccak256("1").as_slice());
        let mut one = [0u8; 32];
        one[31] = 1;
        manual.extend_from_slice(&one);
        manual.extend_from_slice(&one);
        assert_eq!(d.separator(), keccak256(&manual));
        assert_eq!(DOMAIN_TYPE_HASH, keccak256(DOMAIN_TYPE));
        assert_eq!(DOMAIN_NAME_HASH, keccak256(DOMAIN_NAME));
        assert_eq!(DOMAIN_VERSION_HASH, keccak256(DOMAIN_VERSION));
        // A different chain or contract yields a different separator.
        let other = Domain { chain_id: 2, ..d };
        assert_ne!(d.separator(), other.separator());
        // The memo answers for the domain asked, whichever was hashed last.
        assert_eq!(d.separator(), keccak256(&manual));
        assert_ne!(d.separator(), b256!("0000000000000000000000000000000000000000000000000000000000000000"));
    }
}
