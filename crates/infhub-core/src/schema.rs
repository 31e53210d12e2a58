//! JSON Schemas of the core's wire types (feature `schema`), from which the node generates the
//! request and response schemas of `/openapi.json`: the types derive `JsonSchema`, and the
//! foreign ones they hold (alloy's `Address`, `B256`, `U256`) are described here by the way
//! serde writes them.

use crate::merkle::MerklePath;
use crate::point_lock::Scalar;
use crate::{Amount, Signature};
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use std::borrow::Cow;

/// An address as serde writes it: 0x and 40 hexadecimal digits (EIP-55 checksummed on output).
pub struct AddressSchema;
/// A 32-byte word: 0x and 64 hexadecimal digits.
pub struct WordSchema;
/// A compressed secp256k1 point: 0x and 66 hexadecimal digits.
pub struct CompressedPointSchema;
/// Bytes as alloy's serde writes them: 0x and an even number of hexadecimal digits.
pub struct HexBytesSchema;
/// A `uint256` as alloy's serde writes it: 0x-prefixed hexadecimal, no leading zeros.
pub struct U256Schema;

macro_rules! string_schema {
    ($ty:ty, $name:literal, $schema:tt) => {
        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                $name.into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!($schema)
            }
        }
    };
}

string_schema!(AddressSchema, "Address", {
    "type": "string", "pattern": "^0x[0-9a-fA-F]{40}$", "description": "An Ethereum address."
});
string_schema!(WordSchema, "Word", {
    "type": "string", "pattern": "^0x[0-9a-fA-F]{64}$", "description": "A 32-byte word (hash, id, root)."
});
string_schema!(HexBytesSchema, "HexBytes", {
    "type": "string", "pattern": "^0x([0-9a-fA-F]{2})*$", "description": "Bytes, hexadecimal."
});
string_schema!(U256Schema, "U256", {
    "type": "string", "pattern": "^0x[0-9a-fA-F]{1,64}$", "description": "A uint256, hexadecimal."
});
string_schema!(CompressedPointSchema, "CompressedPoint", {
    "type": "string", "pattern": "^0x(02|03)[0-9a-fA-F]{64}$", "description": "A compressed secp256k1 point (33 bytes)."
});
string_schema!(Amount, "Amount", {
    "type": "string", "pattern": "^[0-9]{1,39}$",
    "description": "Token base units as a decimal string (at most 2^128 - 1)."
});
string_schema!(Signature, "Signature", {
    "type": "string", "pattern": "^0x[0-9a-fA-F]{130}$", "description": "A 65-byte ECDSA signature (r, s, v)."
});
string_schema!(Scalar, "Scalar", {
    "type": "string", "pattern": "^0x[0-9a-fA-F]{1,64}$", "description": "A lock's secret scalar in 1..n, hexadecimal."
});
string_schema!(MerklePath, "MerklePath", {
    "type": "array", "maxItems": crate::merkle::MAX_PATH_DEPTH,
    "items": {"type": "string", "pattern": "^0x[0-9a-fA-F]{64}$"},
    "description": "A batched proof's path to its signed root (empty: signed directly)."
});
