//! The operator's endpoints for hub-to-hub links (spec §5.23): open one, deposit into it, pay
//! over it, list them. The work is [`crate::links::Links`]'; this maps its refusals to codes.

use super::*;
use crate::links::LinkError;

impl From<LinkError> for ApiError {
    fn from(e: LinkError) -> ApiError {
        if let LinkError::AtLink(link, inner) = e {
            return ApiError::from(*inner).with_failing_link(link);
        }
        let kind = match &e {
            LinkError::UnknownLink(_) => NodeError::UnknownLink,
            LinkError::LinkToOwnHub(_) => NodeError::LinkToOwnHub,
            LinkError::LinkNotOpen(..) => NodeError::LinkNotOpen,
            LinkError::LinkBusy(..) => NodeError::LinkBusy,
            LinkError::TooManyLinks => NodeError::TooManyLinks,
            LinkError::PeerHubUnreachable { .. } => NodeError::PeerHubUnreachable,
            LinkError::Malformed(_) => NodeError::MalformedRequest,
            LinkError::UnknownNextHub(_) => NodeError::UnknownNextHub,
            LinkError::InsufficientCapacity { .. } => NodeError::InsufficientCapacity,
            LinkError::FeeInsufficient { .. } => NodeError::FeeInsufficient,
            LinkError::QuoteMismatch(_) => NodeError::QuoteMismatch,
            LinkError::SplitAbandoned(_) => NodeError::SplitAbandoned,
            LinkError::Rule(rule) => return (*rule).into(),
            // The peer's or the wallet's own named refusal, under its own code.
            LinkError::Wallet(w) => return ApiError::passed_on(w.code(), w.to_string()),
            LinkError::AtLink(..) => unreachable!("taken above"),
        };
        ApiError::new(kind, e.to_string())
    }
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct OpenLinkRequest {
    hub_url: String,
}

/// A link after an operator action.
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct LinkAnswer {
    link: crate::links::LinkDescription,
    /// Opened now (false: it was open already).
    #[serde(skip_serializing_if = "Option::is_none")]
    opened: Option<bool>,
}

/// The peer hub's answer to a payment over a link.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct LinkPaymentAnswer {
    peer_answer: Value,
}

/// Routes from this hub (`GET /v1/routes`).
#[derive(Serialize, schemars::JsonSchema)]
pub(super) struct RoutesAnswer {
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    from: Address,
    routes: Vec<infhub_core::routing::Route>,
}

pub(super) async fn open_link(
    State(api): State<Api>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<OpenLinkRequest>,
) -> Result<Json<LinkAnswer>, ApiError> {
    api.operator(&headers)?;
    let (link, opened) = api.node.links.open_link(&req.hub_url).await?;
    Ok(Json(LinkAnswer { link, opened: Some(opened) }))
}

pub(super) async fn list_links(
    State(api): State<Api>,
    headers: HeaderMap,
) -> Result<Json<crate::links::LinksAnswer>, ApiError> {
    api.operator(&headers)?;
    Ok(Json(api.node.links.list().await))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct LinkDepositRequest {
    amount: Amount,
}

pub(super) async fn link_deposit(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(peer): Path<Address>,
    ApiJson(req): ApiJson<LinkDepositRequest>,
) -> Result<Json<LinkAnswer>, ApiError> {
    api.operator(&headers)?;
    let link = api.node.links.deposit(peer, req.amount).await?;
    Ok(Json(LinkAnswer { link, opened: None }))
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct LinkPaymentRequest {
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    recipient: Address,
    amount: Amount,
}

pub(super) async fn link_payment(
    State(api): State<Api>,
    headers: HeaderMap,
    Path(peer): Path<Address>,
    ApiJson(req): ApiJson<LinkPaymentRequest>,
) -> Result<Json<LinkPaymentAnswer>, ApiError> {
    api.operator(&headers)?;
    let peer_answer = api.node.links.pay(peer, req.recipient, req.amount).await?;
    Ok(Json(LinkPaymentAnswer { peer_answer }))
}

/// This hub's link announcements and those it learned (spec §5.18), for its neighbours.
pub(super) async fn announcements(State(api): State<Api>) -> Json<crate::routing::Announcements> {
    Json(api.node.links.routing.announcements())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RouteQuery {
    to_hub: Address,
    amount: Amount,
    k: Option<usize>,
    /// Weigh this payer's recent failed payments (spec §5.18).
    payer: Option<Address>,
}

/// Up to `k` (default 3, at most `MAX_PATHS`) cheapest routes from this hub to the hub
/// `toHub` for `amount`, from the announcements it holds: each link's amount and fee, what the
/// first link carries, the fees together. `no_route` when none carries it.
pub(super) async fn routes(
    State(api): State<Api>,
    Query(q): Query<RouteQuery>,
) -> Result<Json<RoutesAnswer>, ApiError> {
    if q.amount.is_zero() {
        return Err(Error::AmountMustNotBeZero.into());
    }
    let k = q.k.unwrap_or(3).clamp(1, infhub_core::routing::MAX_PATHS);
    let routes = api.node.links.routing.routes(q.to_hub, q.amount, k, q.payer);
    if routes.is_empty() {
        return Err(Error::NoRoute.into());
    }
    Ok(Json(RoutesAnswer { from: api.node.links.routing.hub(), routes }))
}
