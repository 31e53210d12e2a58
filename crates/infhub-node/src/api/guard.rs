//! What one client may hold of the node (issue 19): requests in flight per source address, a
//! deadline for each request (a slow body cannot hold a slot for long), and a body declared
//! larger than any route takes refused before a byte of it is read.

use super::*;
use axum::extract::ConnectInfo;
use std::net::{IpAddr, SocketAddr};

/// Requests in flight per source address.
#[derive(Default)]
pub(super) struct InFlight {
    per_address: Mutex<HashMap<IpAddr, usize>>,
}

/// One request's place in its address's count, released when the request ends.
struct Slot<'a> {
    table: &'a InFlight,
    address: IpAddr,
}

impl InFlight {
    fn enter(&self, address: IpAddr, max: usize) -> Option<Slot<'_>> {
        let mut per = self.per_address.lock().unwrap_or_else(|p| p.into_inner());
        let n = per.entry(address).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(Slot { table: self, address })
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut per = self.table.per_address.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = per.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                per.remove(&self.address);
            }
        }
    }
}

/// The middleware: declared size, per-address share, deadline.
pub(super) async fn guard(State(api): State<Api>, req: Request, next: Next) -> Response {
    let limits = &api.node.config.limits;
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let largest = limits.max_request_bytes.max(limits.max_batch_request_bytes) as u64;
    if declared.is_some_and(|n| n > largest) {
        return ApiError::with_status(
            NodeError::RequestTooLarge,
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body declares more than {largest} bytes"),
        )
        .into_response();
    }
    // Served in process without a socket (tests): no address to count.
    let address = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    let _slot = match address {
        Some(a) => match api.in_flight.enter(a, limits.max_requests_in_flight_per_address) {
            Some(slot) => Some(slot),
            None => {
                api.node.metrics.shed.fetch_add(1, Ordering::Relaxed);
                return ApiError::limit("requests in flight from this address").into_response();
            }
        },
        None => None,
    };
    // The operator's requests wait for chain transactions; the operator is trusted with time.
    if req.uri().path().starts_with("/v1/operator/") {
        return next.run(req).await;
    }
    let deadline = Duration::from_millis(limits.request_timeout_ms);
    match tokio::time::timeout(deadline, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            api.node.metrics.shed.fetch_add(1, Ordering::Relaxed);
            ApiError::new(
                NodeError::RequestTimeout,
                format!("the request took longer than {} ms (a body sent too slowly?)", deadline.as_millis()),
            )
            .into_response()
        }
    }
}
