//! The node's accept loop. `axum::serve` installs no timer, so hyper's header read deadline
//! never fires and a client that never finishes its headers holds its connection for good
//! (slowloris); it also accepts any number of connections from one address. This loop serves
//! the same router with a header read deadline (`limits.header_read_timeout_ms`), a cap on open
//! connections per source address (`limits.max_connections_per_address`; beyond it a new
//! connection is closed at once), each request tagged with its peer's address, and a graceful
//! shutdown that returns once every connection has ended.

use crate::config::Limits;
use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Open connections per source address.
#[derive(Default)]
struct Connections(Mutex<HashMap<IpAddr, usize>>);

/// One connection's place in its address's count.
struct ConnectionSlot {
    table: Arc<Connections>,
    address: IpAddr,
}

impl Connections {
    fn enter(table: &Arc<Connections>, address: IpAddr, max: usize) -> Option<ConnectionSlot> {
        let mut per = table.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = per.entry(address).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(ConnectionSlot { table: table.clone(), address })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut per = self.table.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.address);
            }
        }
    }
}

/// Serves `app` on `listener` until `shutdown` turns true, then lets open connections finish
/// (the caller bounds that wait) and returns once all have ended. `refused` counts connections
/// closed for their address's cap.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &Limits,
    mut shutdown: watch::Receiver<bool>,
    refused: impl Fn() + Send + 'static,
) {
    let table = Arc::new(Connections::default());
    let header_timeout = Duration::from_millis(limits.header_read_timeout_ms);
    let max_per_address = limits.max_connections_per_address;
    // Every connection holds a receiver; `closed()` resolves when the last one is dropped.
    let (open_tx, open_rx) = watch::channel(());
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or a connection reset before accept: keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = async { let _ = shutdown.wait_for(|s| *s).await; } => break,
        };
        let Some(slot) = Connections::enter(&table, peer.ip(), max_per_address) else {
            refused();
            drop(stream);
            continue;
        };
        let app = app.clone();
        let open = open_rx.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let _open = open;
            let service = tower::service_fn(move |mut req: axum::http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                tower::ServiceExt::oneshot(app.clone(), req.map(axum::body::Body::new))
            });
            let mut builder = Builder::new(TokioExecutor::new());
            builder.http1().timer(TokioTimer::new()).header_read_timeout(header_timeout);
            let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service));
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = async { let _ = stop.wait_for(|s| *s).await; } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    drop(open_rx);
    open_tx.closed().await;
}
