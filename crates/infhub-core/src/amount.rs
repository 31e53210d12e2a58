//! Token amounts with checked arithmetic.
//!
//! Every amount in a signed message and every running total is a `uint128` on chain, so the
//! core uses `u128` wrapped in [`Amount`]: arithmetic is only available in checked form, and an
//! overflow is the named error [`Error::AmountTooLarge`] rather than a wrap or a panic.

use crate::Error;
use serde::{Deserialize, Serialize};
use std::fmt;

/// A token amount in the token's smallest unit (for INF, 10^-18 INF).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Amount(#[serde(with = "u128_string")] pub u128);

impl Amount {
    /// Zero tokens.
    pub const ZERO: Amount = Amount(0);
    /// The largest amount any message or running total may carry (`type(uint128).max`).
    pub const MAX: Amount = Amount(u128::MAX);

    /// `self + other`, or `AmountTooLarge` on overflow.
    pub fn checked_add(self, other: Amount) -> Result<Amount, Error> {
        self.0.checked_add(other.0).map(Amount).ok_or(Error::AmountTooLarge)
    }

    /// `self - other`, or `err` if it would go below zero.
    pub fn checked_sub_or(self, other: Amount, err: Error) -> Result<Amount, Error> {
        self.0.checked_sub(other.0).map(Amount).ok_or(err)
    }

    /// True for zero.
    pub fn is_zero(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u128> for Amount {
    fn from(v: u128) -> Self {
        Amount(v)
    }
}

/// Amounts travel as decimal strings in JSON: JavaScript and many JSON parsers lose precision
/// above 2^53, and a payment system must not round.
pub mod u128_string {
    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    /// Writes the value as a decimal string (as a plain u128 in binary formats).
    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&v.to_string())
        } else {
            s.serialize_u128(*v)
        }
    }

    /// Reads a decimal string (digits only, no sign, no exponent), or a u128 in binary formats.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        if !d.is_human_readable() {
            return u128::deserialize(d);
        }
        let s = String::deserialize(d)?;
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(D::Error::custom("amount must be a decimal string of digits"));
        }
        s.parse::<u128>().map_err(|_| D::Error::custom("amount exceeds uint128"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_overflow_is_named_error() {
        assert_eq!(Amount::MAX.checked_add(Amount(1)), Err(Error::AmountTooLarge));
        assert_eq!(Amount(2).checked_add(Amount(3)), Ok(Amount(5)));
    }

    #[test]
    fn sub_below_zero_is_given_error() {
        assert_eq!(Amount(2).checked_sub_or(Amount(3), Error::InsufficientBalance), Err(Error::InsufficientBalance));
        assert_eq!(Amount(3).checked_sub_or(Amount(2), Error::InsufficientBalance), Ok(Amount(1)));
    }

    #[test]
    fn json_is_decimal_string_and_strict() {
        let a = Amount(u128::MAX);
        let s = serde_json::to_string(&a).unwrap();
        assert_eq!(s, format!("\"{}\"", u128::MAX));
        assert_eq!(serde_json::from_str::<Amount>(&s).unwrap(), a);
        for bad in ["\"-1\"", "\"1e3\"", "\"\"", "12", "\"340282366920938463463374607431768211456\""] {
            assert!(serde_json::from_str::<Amount>(bad).is_err(), "{bad} must be rejected");
        }
    }
}
