//! Invoices and user addresses across hubs (spec §5.19): what a payee's wallet signs to be paid
//! by anyone in the network, and how a user anywhere is named (`address@hub-host`, seed 001 §5).
//!
//! An invoice names the payee, her hub's host, the amount, the payment point `Z = z·G` whose
//! scalar proves payment (spec §5.17), an expiry, a description's hash and an id; the payee
//! signs it in her hub contract's domain. The wallet derives `z` from its key and the invoice
//! id ([`invoice_scalar`]), so an invoice's proof of payment is recoverable from the key alone.

use crate::eip712::{Domain, Eip712Message, Encoder};
use crate::messages::Signed;
use crate::point_lock::{Point, Scalar};
use crate::{Amount, Error, PrivateKey};
use alloy_primitives::{b256, keccak256, Address, B256, U256};
use serde::{Deserialize, Serialize};

/// Longest host part of a user address (a DNS name's limit).
pub const MAX_HOST_BYTES: usize = 253;

/// A user anywhere in the network: her address at her hub's host (`0xabc…@hub.example:8080`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct UserAddress {
    /// Her account.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::AddressSchema"))]
    pub user: Address,
    /// Her hub's host (name or address, with an optional port), lower case.
    pub host: String,
}

impl std::fmt::Display for UserAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.user, self.host)
    }
}

impl std::str::FromStr for UserAddress {
    type Err = Error;

    /// Parses `0x…@host[:port]`; anything else is `UserAddressMalformed`.
    fn from_str(s: &str) -> Result<UserAddress, Error> {
        let (user, host) = s.split_once('@').ok_or(Error::UserAddressMalformed)?;
        let user: Address = user.parse().map_err(|_| Error::UserAddressMalformed)?;
        let host = host.to_ascii_lowercase();
        let host_ok = !host.is_empty()
            && host.len() <= MAX_HOST_BYTES
            && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
            && !host.starts_with(['.', '-', ':']);
        if !host_ok {
            return Err(Error::UserAddressMalformed);
        }
        Ok(UserAddress { user, host })
    }
}

/// What a payee asks to be paid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Invoice {
    /// The payee and her hub's host.
    pub payee: UserAddress,
    /// The amount, in token base units.
    pub amount: Amount,
    /// The payment point `Z`, compressed (33 bytes): its scalar is the proof of payment.
    #[serde(with = "point_hex")]
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::CompressedPointSchema"))]
    pub payment_point: [u8; 33],
    /// The last moment to pay, in Unix seconds.
    pub expires_at_seconds: u64,
    /// keccak256 of the description the payer is shown.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::WordSchema"))]
    pub description_hash: B256,
    /// Unique per payee; also what her scalar is derived from.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::WordSchema"))]
    pub invoice_id: B256,
}

/// EIP-712 type string of [`Invoice`] (the user address as its two parts).
pub const INVOICE_TYPE: &str = "Invoice(address payee,string payeeHost,uint128 amount,bytes paymentPoint,uint64 expiresAtSeconds,bytes32 descriptionHash,bytes32 invoiceId)";

impl Eip712Message for Invoice {
    const TYPE: &'static str = INVOICE_TYPE;
    const TYPE_HASH: B256 = b256!("994fa1afb3c7a49555874ed30f0fb6883ac34c2e9c0b6ee2e5968f3be29dbefc");
    fn struct_hash(&self) -> B256 {
        let mut e = Encoder::new(Self::TYPE_HASH);
        e.address(self.payee.user);
        e.word(keccak256(self.payee.host.as_bytes()));
        e.u128(self.amount.0);
        e.word(keccak256(self.payment_point));
        e.u64(self.expires_at_seconds);
        e.word(self.description_hash);
        e.word(self.invoice_id);
        e.finish()
    }
}

/// A signed invoice.
pub type SignedInvoice = Signed<Invoice>;

/// The scalar of `invoice_id`'s payment point for the wallet of `key`: derived, never stored,
/// so the key alone recovers every proof of payment it can give.
pub fn invoice_scalar(key: &PrivateKey, invoice_id: B256) -> Scalar {
    let mut counter = 0u8;
    loop {
        let mut buf = Vec::with_capacity(32 + 32 + 16);
        buf.extend_from_slice(b"infhub invoice scalar");
        buf.extend_from_slice(&key.secret_bytes());
        buf.extend_from_slice(invoice_id.as_slice());
        buf.push(counter);
        // A hash at or above n, or zero, happens with probability about 2^-128: hash again.
        if let Ok(s) = Scalar::new(U256::from_be_bytes(keccak256(&buf).0)) {
            return s;
        }
        counter += 1;
    }
}

/// Makes and signs an invoice for the wallet of `key` at `host`, in its hub contract's domain.
pub fn issue(
    key: &PrivateKey,
    host: &str,
    domain: &Domain,
    amount: Amount,
    expires_at_seconds: u64,
    description: &str,
    invoice_id: B256,
) -> Result<SignedInvoice, Error> {
    if amount == Amount::ZERO {
        return Err(Error::AmountMustNotBeZero);
    }
    let payee: UserAddress = format!("{}@{host}", key.address()).parse()?;
    let point = invoice_scalar(key, invoice_id).point();
    let invoice = Invoice {
        payee,
        amount,
        payment_point: point.compressed(),
        expires_at_seconds,
        description_hash: keccak256(description.as_bytes()),
        invoice_id,
    };
    Ok(Signed::new(invoice, domain, key))
}

impl Signed<Invoice> {
    /// Checks an invoice a payer was given, at `now_seconds`: signed by its payee in `domain`
    /// (`WrongSigner`), not expired (`InvoiceExpired`), a real amount and point. Returns the
    /// payment point.
    pub fn check(&self, domain: &Domain, now_seconds: u64) -> Result<Point, Error> {
        let inv = &self.message;
        self.verify(domain, inv.payee.user)?;
        if inv.amount == Amount::ZERO {
            return Err(Error::AmountMustNotBeZero);
        }
        if now_seconds > inv.expires_at_seconds {
            return Err(Error::InvoiceExpired);
        }
        let _: UserAddress = inv.payee.to_string().parse()?;
        Point::from_compressed(&inv.payment_point)
    }
}

mod point_hex {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(p: &[u8; 33], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("0x{}", crate::signature::hex_encode(p)))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 33], D::Error> {
        let text = String::deserialize(d)?;
        let bytes = crate::signature::hex_decode(text.trim_start_matches("0x"))
            .ok_or_else(|| serde::de::Error::custom("a point is hex"))?;
        <[u8; 33]>::try_from(bytes.as_slice()).map_err(|_| serde::de::Error::custom("a point is 33 bytes"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(i: u64) -> PrivateKey {
        let mut b = [0u8; 32];
        b[24..].copy_from_slice(&(0x1A00 + i).to_be_bytes());
        PrivateKey::from_bytes(b).expect("key")
    }

    fn domain() -> Domain {
        Domain { chain_id: 31337, verifying_contract: Address::repeat_byte(0x1F) }
    }

    #[test]
    fn the_type_hash_is_the_type_string_s() {
        assert_eq!(Invoice::TYPE_HASH, keccak256(INVOICE_TYPE));
    }

    #[test]
    fn user_addresses_parse_or_are_refused_by_name() {
        let a = key(1).address();
        let parsed: UserAddress = format!("{a}@Hub.Example:8080").parse().expect("parse");
        assert_eq!(parsed, UserAddress { user: a, host: "hub.example:8080".into() });
        assert_eq!(parsed.to_string().parse::<UserAddress>().expect("round trip"), parsed);
        for bad in [
            format!("{a}"),
            format!("{a}@"),
            "0x12@hub.example".to_string(),
            format!("{a}@hub example"),
            format!("{a}@-hub"),
            format!("{a}@{}", "h".repeat(MAX_HOST_BYTES + 1)),
            format!("{a}@hub/path"),
        ] {
            assert_eq!(bad.parse::<UserAddress>(), Err(Error::UserAddressMalformed), "{bad}");
        }
    }

    #[test]
    fn an_invoice_is_checked_and_its_proof_of_payment_comes_from_the_key() {
        let payee = key(1);
        let id = B256::repeat_byte(7);
        let inv = issue(&payee, "hub.example", &domain(), Amount(500), 1_000, "coffee", id).expect("issue");
        let point = inv.check(&domain(), 1_000).expect("valid until its expiry");
        assert_eq!(point, invoice_scalar(&payee, id).point(), "the key alone recovers the scalar");
        assert_ne!(invoice_scalar(&payee, B256::repeat_byte(8)), invoice_scalar(&payee, id), "one per invoice");
        assert_eq!(inv.check(&domain(), 1_001), Err(Error::InvoiceExpired));
        let other = Domain { chain_id: 1, ..domain() };
        assert_eq!(inv.check(&other, 0), Err(Error::WrongSigner), "another hub's domain");
        let mut raised = inv.clone();
        raised.message.amount = Amount(5_000);
        assert_eq!(raised.check(&domain(), 0), Err(Error::WrongSigner), "a payer cannot change the amount");
        let mut moved = inv.clone();
        moved.message.payee.host = "evil.example".into();
        assert_eq!(moved.check(&domain(), 0), Err(Error::WrongSigner), "nor the payee's hub");
        let forged = Signed::new(inv.message.clone(), &domain(), &key(2));
        assert_eq!(forged.check(&domain(), 0), Err(Error::WrongSigner));
        assert_eq!(
            issue(&payee, "hub.example", &domain(), Amount(0), 1, "", id).err(),
            Some(Error::AmountMustNotBeZero)
        );
        let json = serde_json::to_string(&inv).expect("json");
        let back: SignedInvoice = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, inv);
    }
}
