//! Which of the API's types each endpoint takes and answers, so `/openapi.json` carries JSON
//! Schemas generated from the very types the handlers deserialize and serialize (schemars).
//! An endpoint not listed here is documented without a body schema (`openapi::UNTYPED`).

use super::*;
use schemars::{JsonSchema, Schema, SchemaGenerator};

/// Writes one type's schema (a `$ref` into the document's components).
pub(crate) type SchemaOf = fn(&mut SchemaGenerator) -> Schema;

/// An endpoint's request body and success answer, where they have types.
#[derive(Clone, Copy, Default)]
pub(crate) struct Shapes {
    pub request: Option<SchemaOf>,
    pub response: Option<SchemaOf>,
}

fn of<T: JsonSchema>(g: &mut SchemaGenerator) -> Schema {
    g.subschema_for::<T>()
}

/// The error answer every endpoint may give.
pub(crate) fn error(g: &mut SchemaGenerator) -> Schema {
    of::<error::ErrorAnswer>(g)
}

fn answer(response: SchemaOf) -> Shapes {
    Shapes { request: None, response: Some(response) }
}

fn both(request: SchemaOf, response: SchemaOf) -> Shapes {
    Shapes { request: Some(request), response: Some(response) }
}

/// The shapes of `method` `path` (as listed in `openapi::ENDPOINTS`).
pub(crate) fn shapes(method: &str, path: &str) -> Shapes {
    use infhub_core::messages::{Registration, Signed, SignedDebit};
    match (method, path) {
        ("get", "/v1/info") => answer(of::<InfoAnswer>),
        ("post", "/v1/auth/challenge") => both(of::<auth::ChallengeRequest>, of::<auth::ChallengeAnswer>),
        ("post", "/v1/auth/session") => both(of::<auth::SessionRequest>, of::<auth::SessionAnswer>),
        ("post", "/v1/registrations") => both(of::<Signed<Registration>>, of::<auth::RegistrationAnswer>),
        ("post", "/v1/transfers") => both(of::<SignedDebit>, of::<transfers::TransferAnswer>),
        ("post", "/v1/withdrawals") => both(of::<transfers::WithdrawRequest>, of::<transfers::WithdrawalAnswer>),
        ("get", "/v1/accounts/{user}") => answer(of::<accounts::AccountAnswer>),
        ("get", "/v1/accounts/{user}/history") => answer(of::<accounts::HistoryPage>),
        ("get", "/v1/accounts/{user}/payouts/{payment_id}") => answer(of::<accounts::PayoutAnswer>),
        ("get", "/v1/accounts/{user}/payments/{payment_id}") => answer(of::<accounts::PaymentAnswer>),
        ("get", "/v1/accounts/{user}/statement") => answer(of::<accounts::StatementAnswer>),
        ("get", "/v1/accounts/{user}/events") => answer(of::<accounts::EventsPage>),
        ("get", "/v1/accounts/{user}/towers") => answer(of::<accounts::TowersAnswer>),
        ("put", "/v1/accounts/{user}/towers") => both(of::<accounts::TowerList>, of::<accounts::TowersAnswer>),
        ("get", "/v1/accounts/{user}/webhook") => answer(of::<crate::webhooks::WebhookView>),
        ("put", "/v1/accounts/{user}/webhook") => {
            both(of::<accounts::WebhookRequest>, of::<crate::webhooks::WebhookView>)
        }
        ("delete", "/v1/accounts/{user}/webhook") => answer(of::<accounts::Removed>),
        ("post", "/v1/transfers/batch") => Shapes { request: Some(of::<transfers::TransferBatch>), response: None },
        ("post", "/v1/locked-transfers") => {
            Shapes { request: Some(of::<locks::LockedTransferRequest>), response: None }
        }
        ("post", "/v1/lock-reveals") => Shapes { request: Some(of::<locks::RevealRequest>), response: None },
        ("post", "/v1/lock-debits") => Shapes { request: Some(of::<locks::LockDebitRequest>), response: None },
        ("post", "/v1/forwarded-transfers") => {
            Shapes { request: Some(of::<locks::ForwardedTransferRequest>), response: None }
        }
        ("post", "/v1/payment-quotes") => Shapes { request: Some(of::<locks::QuoteRequest>), response: None },
        _ => Shapes::default(),
    }
}
