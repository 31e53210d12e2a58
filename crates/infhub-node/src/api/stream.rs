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
    // One account (or the operator, counted under the zero address) holds at most its share.
    let holder = filter.unwrap_or(Address::ZERO);
    {
        let mut per = api.sessions.streams.lock().unwrap_or_else(|p| p.into_inner());
        let n = per.entry(holder).or_insert(0);
        if *n >= api.node.config.limits.max_streams_per_account {
            api.node.metrics.shed.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError::limit("streams of this account"));
        }
        *n += 1;
    }
    api.websockets.fetch_add(1, Ordering::SeqCst);
    // Released when the stream ends, or when the upgrade never happens (the closure is dropped).
    let slot = StreamSlot { sessions: api.sessions.clone(), websockets: api.websockets.clone(), holder };
    if api.websockets.load(Ordering::SeqCst) > api.node.config.limits.max_websockets {
        api.node.metrics.shed.fetch_add(1, Ordering::Relaxed);
        return Err(ApiError::limit("websocket streams"));
    }
    let rx = api.node.notices.subscribe();
    Ok(ws.on_upgrade(move |socket| async move {
        pump(socket, rx, filter).await;
        drop(slot);
    }))
}

/// One open stream's place in the global and per-account counts.
struct StreamSlot {
    sessions: Arc<Sessions>,
    websockets: Arc<AtomicUsize>,
    holder: Address,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.websockets.fetch_sub(1, Ordering::SeqCst);
        let mut per = self.sessions.streams.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per.get_mut(&self.holder) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.holder);
            }
        }
    }
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
