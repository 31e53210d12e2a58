//! The explorer's pages over HTTP (issue 24; the pages themselves are `crate::explorer`):
//! public, no session, HTML.

use super::*;
use axum::response::Html;

#[derive(Deserialize)]
pub(super) struct Before {
    before: Option<u64>,
}

fn html(status: StatusCode, body: String) -> Response {
    (status, [("cache-control", "no-store")], Html(body)).into_response()
}

pub(super) async fn overview(State(api): State<Api>) -> Response {
    html(StatusCode::OK, crate::explorer::overview(&api.node.read()))
}

pub(super) async fn blocks(State(api): State<Api>, Query(q): Query<Before>) -> Response {
    html(StatusCode::OK, crate::explorer::blocks(&api.node.read(), q.before))
}

pub(super) async fn block(State(api): State<Api>, Path(seq): Path<u64>) -> Response {
    match crate::explorer::block(&api.node.read(), seq) {
        Some(page) => html(StatusCode::OK, page),
        None => html(
            StatusCode::NOT_FOUND,
            crate::explorer::not_found(&format!("No block holds record {seq} (or it is older than the blocks kept).")),
        ),
    }
}

pub(super) async fn checkpoints(State(api): State<Api>, Query(q): Query<Before>) -> Response {
    html(StatusCode::OK, crate::explorer::checkpoints(&api.node.read(), q.before))
}

pub(super) async fn events(State(api): State<Api>, Query(q): Query<Before>) -> Response {
    html(StatusCode::OK, crate::explorer::events(&api.node.read(), q.before))
}

pub(super) async fn account(State(api): State<Api>, Path(who): Path<Address>) -> Response {
    match crate::explorer::account(&api.node.read(), who) {
        Some(page) => html(StatusCode::OK, page),
        None => html(StatusCode::NOT_FOUND, crate::explorer::not_found(&format!("No account {who} at this hub."))),
    }
}
