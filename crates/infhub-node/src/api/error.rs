//! The node's error answers: the core's rule errors under their own names, and the node's own
//! refusals, each a [`NodeError`] with one stable snake_case code and one HTTP status, listed in
//! the spec (§9) — a unit test keeps the list and the enum in step.

use crate::engine::{ChainRequestError, WriteError};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use infhub_chain::ChainError;
use infhub_core::messages::SignedCredit;
use infhub_core::Error;
use serde::Serialize;

/// What only the node judges (the core's `Error` names the protocol's rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeError {
    /// No token, or one the node does not know.
    Unauthorized,
    /// The caller is known but may not do this.
    Forbidden,
    /// The session's time is up: log in again.
    SessionExpired,
    /// The login challenge is unknown or was used.
    UnknownChallenge,
    /// The login challenge's time is up.
    ChallengeExpired,
    /// The registration's `validUntilBlock` has passed.
    RegistrationExpired,
    /// The body is not the JSON the endpoint takes.
    MalformedRequest,
    /// The body is larger than `limits.max_request_bytes`.
    RequestTooLarge,
    /// The body is not declared as JSON.
    ContentTypeMustBeJson,
    /// A per-request limit (items in a batch, a page size) is exceeded: the request is refused.
    RequestLimitExceeded,
    /// A shared limit (a queue, sessions, streams) is full: retry later.
    LimitExceeded,
    /// Too many requests in flight, or the write queue is full.
    Overloaded,
    /// The ledger could not be made durable: nothing was acknowledged.
    StorageFailed,
    /// The database is unreachable and the node is reopening the ledger from it: nothing was
    /// acknowledged; retry the same request (it is idempotent) shortly.
    StorageUnavailable,
    /// A front-end lost its connection to the writer (it reconnects): nothing was
    /// acknowledged; retry the same request shortly.
    SequencerUnavailable,
    /// The node is stopping.
    ShuttingDown,
    /// The chain refused a transaction the hub sent.
    ChainRejected,
    /// The chain could not be read.
    ChainUnavailable,
    /// A history read failed.
    HistoryUnavailable,
    /// An applied payment is missing from the history (a bug, reported).
    HistoryMissing,
    /// No external payment with this id.
    UnknownPayout,
    /// No checkpoint with this id is at hand (never built, or older than those kept).
    UnknownCheckpoint,
    /// A custodial user id outside `1..=64` of `A-Z a-z 0-9 . _ @ -`.
    InvalidUserId,
    /// The system's entropy source failed.
    EntropyUnavailable,
    /// No route.
    NoSuchEndpoint,
    /// The route exists, not with this method.
    MethodNotAllowed,
    /// The request was not complete within `limits.request_timeout_ms`.
    RequestTimeout,
    /// The registration budget (the hub's or the source address's) is spent for now.
    RegistrationRateLimited,
    /// The endpoint belongs to a feature this hub's configuration leaves off.
    FeatureDisabled,
    /// No entry of the account's recent history carries this payment id.
    UnknownPayment,
    /// The account's write budget (`limits.writes_per_second_per_account`) is spent for now.
    AccountRateLimited,
    /// No hub-to-hub link to this contract (spec §5.23).
    UnknownLink,
    /// A link to this hub's own contract.
    LinkToOwnHub,
    /// The link is opening, closing or settled.
    LinkNotOpen,
    /// A job (a deposit) is running on the link.
    LinkBusy,
    /// The hub keeps `MAX_LINKS` links already.
    TooManyLinks,
    /// The peer hub did not answer, or not as a hub.
    PeerHubUnreachable,
    /// No link of this hub leads to the invoice's payee hub (spec §5.23a).
    UnknownNextHub,
    /// The link to the payee's hub holds less than the payment.
    InsufficientCapacity,
    /// The payer's lock pays less than the invoice (and its fee).
    FeeInsufficient,
    /// A payer's route step for this hub is not the one its quote named, or the quote is
    /// gone (spec §5.23d).
    QuoteMismatch,
    /// The payee's hub stopped collecting a split payment whose parts did not cover it in time
    /// (spec §5.23c).
    SplitAbandoned,
    /// A webhook URL names a loopback, private or link-local host (spec §5.24).
    WebhookHostNotAllowed,
    /// The account has no webhook.
    UnknownWebhook,
    /// The web wallet's files are not installed at this node (`node.wallet_dir`).
    WalletNotInstalled,
    /// A handler failed in a way it should not (a bug, reported).
    InternalError,
}

impl NodeError {
    /// Every variant, for the test that keeps the spec's list in step.
    pub const ALL: [NodeError; 46] = [
        NodeError::Unauthorized,
        NodeError::Forbidden,
        NodeError::SessionExpired,
        NodeError::UnknownChallenge,
        NodeError::ChallengeExpired,
        NodeError::RegistrationExpired,
        NodeError::MalformedRequest,
        NodeError::RequestTooLarge,
        NodeError::ContentTypeMustBeJson,
        NodeError::RequestLimitExceeded,
        NodeError::LimitExceeded,
        NodeError::Overloaded,
        NodeError::StorageFailed,
        NodeError::StorageUnavailable,
        NodeError::SequencerUnavailable,
        NodeError::ShuttingDown,
        NodeError::ChainRejected,
        NodeError::ChainUnavailable,
        NodeError::HistoryUnavailable,
        NodeError::HistoryMissing,
        NodeError::UnknownPayout,
        NodeError::UnknownCheckpoint,
        NodeError::InvalidUserId,
        NodeError::EntropyUnavailable,
        NodeError::NoSuchEndpoint,
        NodeError::MethodNotAllowed,
        NodeError::RequestTimeout,
        NodeError::RegistrationRateLimited,
        NodeError::FeatureDisabled,
        NodeError::UnknownPayment,
        NodeError::AccountRateLimited,
        NodeError::UnknownLink,
        NodeError::LinkToOwnHub,
        NodeError::LinkNotOpen,
        NodeError::LinkBusy,
        NodeError::TooManyLinks,
        NodeError::PeerHubUnreachable,
        NodeError::UnknownNextHub,
        NodeError::InsufficientCapacity,
        NodeError::FeeInsufficient,
        NodeError::QuoteMismatch,
        NodeError::SplitAbandoned,
        NodeError::WebhookHostNotAllowed,
        NodeError::UnknownWebhook,
        NodeError::WalletNotInstalled,
        NodeError::InternalError,
    ];

    /// The stable code in the answer's `error.code`.
    pub fn code(self) -> &'static str {
        match self {
            NodeError::Unauthorized => "unauthorized",
            NodeError::Forbidden => "forbidden",
            NodeError::SessionExpired => "session_expired",
            NodeError::UnknownChallenge => "unknown_challenge",
            NodeError::ChallengeExpired => "challenge_expired",
            NodeError::RegistrationExpired => "registration_expired",
            NodeError::MalformedRequest => "malformed_request",
            NodeError::RequestTooLarge => "request_too_large",
            NodeError::ContentTypeMustBeJson => "content_type_must_be_json",
            // One code for both: the status tells a refused request from a full queue.
            NodeError::RequestLimitExceeded | NodeError::LimitExceeded => "limit_exceeded",
            NodeError::Overloaded => "overloaded",
            NodeError::StorageFailed => "storage_failed",
            NodeError::StorageUnavailable => "storage_unavailable",
            NodeError::SequencerUnavailable => "sequencer_unavailable",
            NodeError::ShuttingDown => "shutting_down",
            NodeError::ChainRejected => "chain_rejected",
            NodeError::ChainUnavailable => "chain_unavailable",
            NodeError::HistoryUnavailable => "history_unavailable",
            NodeError::HistoryMissing => "history_missing",
            NodeError::UnknownPayout => "unknown_payout",
            NodeError::UnknownCheckpoint => "unknown_checkpoint",
            NodeError::InvalidUserId => "invalid_user_id",
            NodeError::EntropyUnavailable => "entropy_unavailable",
            NodeError::NoSuchEndpoint => "no_such_endpoint",
            NodeError::MethodNotAllowed => "method_not_allowed",
            NodeError::RequestTimeout => "request_timeout",
            NodeError::RegistrationRateLimited => "registration_rate_limited",
            NodeError::FeatureDisabled => "feature_disabled",
            NodeError::UnknownPayment => "unknown_payment",
            NodeError::AccountRateLimited => "account_rate_limited",
            NodeError::UnknownLink => "unknown_link",
            NodeError::LinkToOwnHub => "link_to_own_hub",
            NodeError::LinkNotOpen => "link_not_open",
            NodeError::LinkBusy => "link_busy",
            NodeError::TooManyLinks => "too_many_links",
            NodeError::PeerHubUnreachable => "peer_hub_unreachable",
            NodeError::UnknownNextHub => "unknown_next_hub",
            NodeError::InsufficientCapacity => "insufficient_capacity",
            NodeError::FeeInsufficient => "fee_insufficient",
            NodeError::QuoteMismatch => "quote_mismatch",
            NodeError::SplitAbandoned => "split_abandoned",
            NodeError::WebhookHostNotAllowed => "webhook_host_not_allowed",
            NodeError::UnknownWebhook => "unknown_webhook",
            NodeError::WalletNotInstalled => "wallet_not_installed",
            NodeError::InternalError => "internal_error",
        }
    }

    /// The HTTP status it answers with.
    pub fn status(self) -> StatusCode {
        match self {
            NodeError::Unauthorized
            | NodeError::SessionExpired
            | NodeError::UnknownChallenge
            | NodeError::ChallengeExpired => StatusCode::UNAUTHORIZED,
            NodeError::Forbidden => StatusCode::FORBIDDEN,
            NodeError::RegistrationExpired | NodeError::InvalidUserId => StatusCode::UNPROCESSABLE_ENTITY,
            NodeError::MalformedRequest | NodeError::RequestLimitExceeded => StatusCode::BAD_REQUEST,
            NodeError::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            NodeError::ContentTypeMustBeJson => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            NodeError::LimitExceeded
            | NodeError::Overloaded
            | NodeError::StorageFailed
            | NodeError::StorageUnavailable
            | NodeError::SequencerUnavailable
            | NodeError::ShuttingDown
            | NodeError::EntropyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            NodeError::ChainRejected | NodeError::ChainUnavailable => StatusCode::BAD_GATEWAY,
            NodeError::UnknownPayout
            | NodeError::UnknownPayment
            | NodeError::UnknownWebhook
            | NodeError::WalletNotInstalled
            | NodeError::UnknownCheckpoint
            | NodeError::NoSuchEndpoint => StatusCode::NOT_FOUND,
            NodeError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            NodeError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            NodeError::RegistrationRateLimited | NodeError::AccountRateLimited => StatusCode::TOO_MANY_REQUESTS,
            NodeError::FeatureDisabled => StatusCode::FORBIDDEN,
            NodeError::UnknownLink => StatusCode::NOT_FOUND,
            NodeError::LinkToOwnHub => StatusCode::UNPROCESSABLE_ENTITY,
            NodeError::LinkNotOpen | NodeError::LinkBusy | NodeError::TooManyLinks => StatusCode::CONFLICT,
            NodeError::PeerHubUnreachable => StatusCode::BAD_GATEWAY,
            NodeError::UnknownNextHub
            | NodeError::FeeInsufficient
            | NodeError::QuoteMismatch
            | NodeError::SplitAbandoned
            | NodeError::WebhookHostNotAllowed => StatusCode::UNPROCESSABLE_ENTITY,
            NodeError::InsufficientCapacity => StatusCode::CONFLICT,
            NodeError::HistoryUnavailable | NodeError::HistoryMissing | NodeError::InternalError => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

/// An API error: HTTP status, stable code, human message.
#[derive(Clone, Debug)]
pub struct ApiError {
    status: StatusCode,
    code: String,
    message: String,
    /// For a refused payment: the hub-signed credit that refunded it (boxed: errors are
    /// returned everywhere, refunds are rare).
    refund: Option<Box<SignedCredit>>,
    /// For a refused forward: the link direction whose step failed (spec §5.18).
    failing_link: Option<infhub_core::routing::FailingLink>,
}

impl ApiError {
    /// The same refusal naming the link direction `link` as the one that failed.
    pub(super) fn with_failing_link(mut self, link: infhub_core::routing::FailingLink) -> ApiError {
        self.failing_link = Some(link);
        self
    }

    /// Its HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Its stable code.
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The node's refusal `kind`, with a message.
    pub fn new(kind: NodeError, message: impl Into<String>) -> ApiError {
        ApiError::with_status(kind, kind.status(), message)
    }

    /// `kind` answered with another status than its own (a body axum refused with its status).
    pub(super) fn with_status(kind: NodeError, status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, code: kind.code().into(), message: message.into(), refund: None, failing_link: None }
    }

    /// A payment refused by `refused` and refunded: the refusal is final, and the answer carries
    /// the refund, which the payer needs to be whole on chain (spec §5.4).
    pub(super) fn refunded(refused: &str, refund: SignedCredit) -> ApiError {
        let status = match refused {
            "unknown_account" => StatusCode::NOT_FOUND,
            "payout_queue_full" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        let message = format!("payment refused ({refused}) and refunded: its amount is credited back");
        ApiError { status, code: refused.to_string(), message, refund: Some(Box::new(refund)), failing_link: None }
    }

    /// A refusal named elsewhere (a peer hub's, a wallet's) passed on under its own code.
    pub(super) fn passed_on(code: String, message: String) -> ApiError {
        let status = match code.as_str() {
            "hub_unreachable" | "chain_unavailable" | "hub_misbehaved" => StatusCode::BAD_GATEWAY,
            "wallet_busy" => StatusCode::CONFLICT,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError { status, code, message, refund: None, failing_link: None }
    }

    pub(super) fn unauthorized(message: &str) -> ApiError {
        ApiError::new(NodeError::Unauthorized, message)
    }

    pub(super) fn limit(what: &str) -> ApiError {
        ApiError::new(NodeError::LimitExceeded, format!("{what} limit reached; retry later"))
    }

    /// The body every error answer carries: `{"error": {"code", "message"}}` (and `refund` for a
    /// refunded payment).
    pub(super) fn answer(self) -> ErrorAnswer {
        let (code, message, refund, failing_link) = (self.code, self.message, self.refund, self.failing_link);
        ErrorAnswer { error: ErrorBody { code, message, refund, failing_link } }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.answer())).into_response()
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> ApiError {
        use Error::*;
        let status = match e {
            InvalidSignature | WrongSigner => StatusCode::UNAUTHORIZED,
            UnknownAccount => StatusCode::NOT_FOUND,
            PaymentIdReused => StatusCode::CONFLICT,
            PayoutQueueFull | TooManyAccounts => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError { status, code: e.code(), message: e.to_string(), refund: None, failing_link: None }
    }
}

impl From<ChainRequestError> for ApiError {
    fn from(e: ChainRequestError) -> ApiError {
        match e {
            ChainRequestError::UnknownAccount => Error::UnknownAccount.into(),
            ChainRequestError::Chain(ChainError::TooManyInFlight { limit }) => ApiError::new(
                NodeError::LimitExceeded,
                format!("the hub has {limit} transactions in flight; retry shortly"),
            ),
            ChainRequestError::Chain(e) => ApiError::new(NodeError::ChainRejected, e.to_string()),
        }
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> ApiError {
        let kind = match e {
            WriteError::Overloaded(_) => NodeError::Overloaded,
            WriteError::StorageFailed(_) => NodeError::StorageFailed,
            WriteError::StorageUnavailable(_) => NodeError::StorageUnavailable,
            WriteError::Stopped => NodeError::ShuttingDown,
        };
        ApiError::new(kind, e.to_string())
    }
}

/// An error answer (alone, or as one item of a batch answer).
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct ErrorAnswer {
    error: ErrorBody,
}

/// What an error answer says.
#[derive(Serialize, schemars::JsonSchema)]
struct ErrorBody {
    /// The rule broken, a stable snake_case name: the core's rules (the contract's errors, e.g.
    /// `nonce_must_increase`) and the node's own refusals (e.g. `unknown_webhook`); every code
    /// with its HTTP status is listed in the spec, §9.
    #[schemars(regex(pattern = "^[a-z][a-z0-9_]*$"))]
    code: String,
    /// In words.
    message: String,
    /// For a refused payment: the hub-signed credit that refunds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    refund: Option<Box<SignedCredit>>,
    /// For a refused forward: the link direction whose step failed (spec §5.18).
    #[serde(rename = "failingLink", skip_serializing_if = "Option::is_none")]
    failing_link: Option<infhub_core::routing::FailingLink>,
}

#[cfg(test)]
mod tests {
    use super::NodeError;

    /// The spec lists every code the node answers with (§9), and nothing else of the node's.
    #[test]
    fn the_spec_lists_every_node_error_code() {
        let spec = include_str!("../../../../docs/protocol.md");
        let start = spec.find("The node adds its own codes").expect("the spec's list of node codes");
        let list = &spec[start..start + spec[start..].find("\n\n").expect("the paragraph ends")];
        let listed: std::collections::BTreeSet<&str> = list
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|w| w.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
            .collect();
        let ours: std::collections::BTreeSet<&str> = NodeError::ALL.iter().map(|e| e.code()).collect();
        assert_eq!(listed, ours, "docs/protocol.md §9 and NodeError disagree");
    }
}
