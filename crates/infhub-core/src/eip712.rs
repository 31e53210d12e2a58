//! EIP-712 hashing, byte-identical to the contract.
//!
//! Every signed message is hashed as `keccak256(0x1901 ‖ domainSeparator ‖ structHash)`, where
//! the domain binds the contract's name ("InfHub"), version ("1"), the chain id and the
//! contract's address, so a signature for one hub or chain is worthless on another. The type
//! strings below are the contract's `*_TYPEHASH` preimages, character for character.

use alloy_primitives::{keccak256, Address, B256};
use serde::{Deserialize, Serialize};

/// The EIP-712 domain type string used by OpenZeppelin's `EIP712`.
pub const DOMAIN_TYPE: &str = "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)";
/// The domain name of every infhub message.
pub const DOMAIN_NAME: &str = "InfHub";
/// The domain version of every infhub message.
pub const DOMAIN_VERSION: &str = "1";

/// The signing domain: one hub contract on one chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Domain {
    /// EIP-155 chain id.
    pub chain_id: u64,
    /// Address of the `InfHub` contract.
    pub verifying_contract: Address,
}

impl Domain {
    /// The 32-byte domain separator, as `InfHub.domainSeparator()` returns it.
    pub fn separator(&self) -> B256 {
        let mut enc = Encoder::new(keccak256(DOMAIN_TYPE.as_bytes()));
        enc.word(keccak256(DOMAIN_NAME.as_bytes()));
        enc.word(keccak256(DOMAIN_VERSION.as_bytes()));
        enc.u64(self.chain_id);
        enc.address(self.verifying_contract);
        enc.finish()
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

/// ABI-encodes a struct's fields as 32-byte words after its type hash, then hashes them.
pub(crate) struct Encoder {
    buf: Vec<u8>,
}

impl Encoder {
    pub(crate) fn new(type_hash: B256) -> Self {
        let mut buf = Vec::with_capacity(32 * 12);
        buf.extend_from_slice(type_hash.as_slice());
        Encoder { buf }
    }

    pub(crate) fn word(&mut self, w: B256) {
        self.buf.extend_from_slice(w.as_slice());
    }

    pub(crate) fn address(&mut self, a: Address) {
        self.buf.extend_from_slice(&[0u8; 12]);
        self.buf.extend_from_slice(a.as_slice());
    }

    pub(crate) fn u128(&mut self, v: u128) {
        self.buf.extend_from_slice(&[0u8; 16]);
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    pub(crate) fn u64(&mut self, v: u64) {
        self.u128(u128::from(v));
    }

    pub(crate) fn u8(&mut self, v: u8) {
        self.u128(u128::from(v));
    }

    pub(crate) fn finish(self) -> B256 {
        keccak256(&self.buf)
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
        // A different chain or contract yields a different separator.
        let other = Domain { chain_id: 2, ..d };
        assert_ne!(d.separator(), other.separator());
        assert_ne!(d.separator(), b256!("0000000000000000000000000000000000000000000000000000000000000000"));
    }
}
