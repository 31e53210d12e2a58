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

/// The media type of an endpoint that answers something other than JSON (a page, a file, text
/// metrics, a WebSocket upgrade); its schema is a string.
pub(crate) fn non_json(path: &str) -> Option<&'static str> {
    match path {
        "/metrics" => Some("text/plain"),
        "/v1/stream" => Some("application/octet-stream"),
        "/wallet/config.json" => None,
        p if p.starts_with("/explorer") || p.starts_with("/wallet") => Some("text/html"),
        _ => None,
    }
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
        ("get", "/wallet/config.json") => answer(of::<wallet_files::WalletConfig>),
        ("post", "/v1/transfers/batch") => both(of::<transfers::TransferBatch>, of::<transfers::BatchAnswer>),
        ("post", "/v1/locked-transfers") => both(of::<locks::LockedTransferRequest>, of::<locks::LockAnswer>),
        ("post", "/v1/lock-reveals") => both(of::<locks::RevealRequest>, of::<locks::RevealAnswer>),
        ("post", "/v1/lock-debits") => both(of::<locks::LockDebitRequest>, of::<locks::LockAnswer>),
        ("post", "/v1/forwarded-transfers") => both(of::<locks::ForwardedTransferRequest>, of::<locks::LockAnswer>),
        ("post", "/v1/operator/purchases") => both(of::<operator::PurchaseRequest>, of::<operator::PurchaseAnswer>),
        ("post", "/v1/operator/closes") => both(of::<operator::CloseRequest>, of::<operator::SentTx>),
        ("post", "/v1/operator/freezes") => both(of::<operator::FreezeRequest>, of::<operator::FreezeAnswer>),
        ("get", "/v1/operator/accounts") => answer(of::<operator::AccountsPage>),
        ("get", "/v1/operator/liquidity") => answer(of::<operator::LiquidityAnswer>),
        ("post", "/v1/operator/reserve/top-ups") => both(of::<operator::AmountRequest>, of::<operator::TopUpAnswer>),
        ("post", "/v1/operator/reserve/withdrawals") => both(of::<operator::AmountRequest>, of::<operator::SentTx>),
        ("post", "/v1/operator/reserve/withdrawals/execute") => {
            both(of::<operator::ExecuteWithdrawalRequest>, of::<operator::SentTx>)
        }
        ("post", "/v1/operator/reserve/withdrawals/cancel") => answer(of::<operator::CancelAnswer>),
        ("get", "/v1/operator/solvency") => answer(of::<operator::Solvency>),
        ("get", "/v1/operator/reconciliation") => answer(of::<crate::reconcile::Report>),
        ("post", "/v1/operator/custodial-accounts") => {
            both(of::<operator::OpenCustodialRequest>, of::<operator::CustodialOpened>)
        }
        ("get", "/v1/custodial/accounts/{account}") => answer(of::<custodial::CustodialAccountAnswer>),
        ("post", "/v1/custodial/accounts/{account}/key-rotations") => answer(of::<custodial::KeyRotated>),
        ("post", "/v1/custodial/transfers") => {
            both(of::<custodial::CustodialTransfersRequest>, of::<custodial::CustodialResults>)
        }
        ("post", "/v1/custodial/withdrawals") => {
            both(of::<custodial::CustodialWithdrawRequest>, of::<custodial::CustodialPayout>)
        }
        ("post", "/v1/custodial/conversions") => both(of::<custodial::ConvertRequest>, of::<custodial::ConvertAnswer>),
        ("get", "/v1/checkpoints") => answer(of::<checkpoints::CheckpointsAnswer>),
        ("get", "/v1/checkpoints/{id}/proofs/{account}") => answer(of::<checkpoints::ProofsAnswer>),
        ("post", "/v1/operator/token-rotations") => answer(of::<TokenRotated>),
        ("get", "/v1/operator/audit") => answer(of::<AuditPage>),
        ("post", "/v1/operator/links") => both(of::<links::OpenLinkRequest>, of::<links::LinkAnswer>),
        ("get", "/v1/operator/links") => answer(of::<crate::links::LinksAnswer>),
        ("post", "/v1/operator/links/{peer}/deposits") => {
            both(of::<links::LinkDepositRequest>, of::<links::LinkAnswer>)
        }
        ("post", "/v1/operator/links/{peer}/payments") => {
            both(of::<links::LinkPaymentRequest>, of::<links::LinkPaymentAnswer>)
        }
        ("get", "/v1/routes") => answer(of::<links::RoutesAnswer>),
        ("get", "/v1/announcements") => answer(of::<crate::routing::Announcements>),
        ("post", "/v1/payment-quotes") => both(of::<locks::QuoteRequest>, of::<crate::links::QuoteAnswer>),
        ("get", "/openapi.json") => answer(of::<Value>),
        _ => Shapes::default(),
    }
}
