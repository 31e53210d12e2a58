//! A payer's forwarded transfers one at a time, and a refusal final for its request (spec
//! §5.23a step 3, D65).
//!
//! A wallet whose forward is refused gives the refused debit's nonce to its next debit. If a
//! late copy of the refused request (a client retry still waiting on a link, a proxy's resend)
//! were then applied, the hub would hold a lock debit the wallet believes refused, and the
//! wallet's next debit could never apply (found by the simulator, seed 5 of three hubs). So a
//! payer's forwarded transfers run one at a time (striped by payer, so memory stays bounded),
//! and each refused request (its signed debit, invoice and route, hashed) is kept, and answered
//! again to any copy of it, for the last [`MAX_REFUSED_FORWARDS_KEPT`] refusals.

use super::ApiError;
use alloy::primitives::{keccak256, Address, B256};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Most refused forwards whose refusal is kept (about 1 MB).
pub(super) const MAX_REFUSED_FORWARDS_KEPT: usize = 10_000;
/// How many payer stripes serialize forwarded transfers.
const PAYER_STRIPES: usize = 256;

/// The refusals kept, by the request's hash, oldest first in `order`.
#[derive(Default)]
struct Refused {
    by_request: HashMap<B256, ApiError>,
    order: VecDeque<B256>,
}

/// What identifies a forwarded-transfer request: the hash of its whole body as parsed.
pub(super) fn request_key(request: &impl serde::Serialize) -> B256 {
    keccak256(serde_json::to_vec(request).unwrap_or_default())
}

/// See the module header.
pub(super) struct RefusalGuard {
    stripes: Vec<tokio::sync::Mutex<()>>,
    refused: Mutex<Refused>,
}

impl Default for RefusalGuard {
    fn default() -> RefusalGuard {
        RefusalGuard {
            stripes: (0..PAYER_STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
            refused: Mutex::new(Refused::default()),
        }
    }
}

impl RefusalGuard {
    /// Waits for `payer`'s other forwarded transfer, if one runs, and holds her stripe.
    pub(super) async fn one_at_a_time(&self, payer: Address) -> tokio::sync::MutexGuard<'_, ()> {
        let stripe = usize::from(payer.0[19]) % PAYER_STRIPES;
        self.stripes[stripe].lock().await
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Refused> {
        self.refused.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The refusal given earlier to this very request, if kept.
    pub(super) fn refusal_of(&self, request: B256) -> Option<ApiError> {
        self.kept().by_request.get(&request).cloned()
    }

    /// Keeps `refusal` of `debit` when it is final: a refusal by rule (a client error), not
    /// a failure to answer (a server error, after which the wallet retries as is).
    pub(super) fn remember(&self, request: B256, refusal: &ApiError) {
        if !refusal.status().is_client_error() {
            return;
        }
        let mut kept = self.kept();
        if kept.by_request.insert(request, refusal.clone()).is_none() {
            kept.order.push_back(request);
        }
        while kept.order.len() > MAX_REFUSED_FORWARDS_KEPT {
            if let Some(oldest) = kept.order.pop_front() {
                kept.by_request.remove(&oldest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::error::NodeError;
    use serde_json::json;

    fn request(n: u64) -> B256 {
        request_key(&json!({"debit": {"nonce": n}, "invoice": "tea"}))
    }

    #[test]
    fn a_refusal_is_answered_again_to_the_same_request_and_only_the_newest_are_kept() {
        let guard = RefusalGuard::default();
        let busy = ApiError::new(NodeError::LinkBusy, "6 forwards unfinished");
        guard.remember(request(1), &busy);
        assert_eq!(guard.refusal_of(request(1)).map(|e| e.code().to_string()), Some("link_busy".into()));
        assert!(guard.refusal_of(request(2)).is_none(), "another request is not refused by it");
        // A failure to answer is not final: the wallet retries, and the retry may apply.
        guard.remember(request(3), &ApiError::new(NodeError::Overloaded, "busy"));
        assert!(guard.refusal_of(request(3)).is_none());
        for n in 10..(10 + MAX_REFUSED_FORWARDS_KEPT as u64) {
            guard.remember(request(n), &busy);
        }
        assert!(guard.refusal_of(request(1)).is_none(), "the oldest refusal is dropped past the limit");
        assert!(guard.refusal_of(request(10 + MAX_REFUSED_FORWARDS_KEPT as u64 - 1)).is_some());
    }
}
