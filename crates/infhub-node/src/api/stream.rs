//! The WebSocket stream of notices, filtered to the caller's account (all of them for the
//! operator), with a named limit on open streams.

use super::*;

#[derive(Deserialize)]
pub(super) struct StreamQuery {
    token: Option<String>,
}

pub(super) async fn stream(
    State(api): State<Api>,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let filter = match api.caller(&headers, q.token.as_deref())? {
        Caller::Operator => None,
        Caller::User(u) | Caller::Custodial(u) => Some(u),
    };
    let max = api.node.config.limits.max_websockets;
    if api.websockets.fetch_add(1, Ordering::SeqCst) >= max {
        api.websockets.fetch_sub(1, Ordering::SeqCst);
        api.node.metrics.shed.fetch_add(1, Ordering::Relaxed);
        return Err(ApiError::limit("websocket streams"));
    }
    let rx = api.node.notices.subscribe();
    let counter = api.websockets.clone();
    Ok(ws.on_upgrade(move |socket| async move {
        pump(socket, rx, filter).await;
        counter.fetch_sub(1, Ordering::SeqCst);
    }))
}

pub(super) async fn pump(
    mut socket: WebSocket,
    mut rx: tokio::sync::broadcast::Receiver<crate::engine::Notice>,
    filter: Option<Address>,
) {
    use tokio::sync::broadcast::error::RecvError;
    let _ = socket.send(Message::Text(json!({"type": "subscribed", "user": filter}).to_string().into())).await;
    loop {
        tokio::select! {
            n = rx.recv() => match n {
                Ok(n) => {
                    if filter.is_some_and(|u| u != n.user) {
                        continue;
                    }
                    let text = json!({"user": n.user, "notice": *n.body}).to_string();
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        return;
                    }
                }
                Err(RecvError::Lagged(missed)) => {
                    let text = json!({"type": "lagged", "missed": missed, "hint": "reconnect and re-read the account"});
                    let _ = socket.send(Message::Text(text.to_string().into())).await;
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
                Err(RecvError::Closed) => return,
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
