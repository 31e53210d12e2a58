//! Rotation of the operator token (issue 24). The token in the configuration is where an
//! operator starts; `POST /v1/operator/token-rotations` replaces it with a fresh random token,
//! shown once. The tokens it replaces keep working for a grace period
//! (`limits.operator_token_grace_secs`), so an operator whose answer was lost, or whose
//! scripts still carry the old token, is not locked out at once; after that only the newest
//! works. The node keeps only keccak256 hashes, in `<data_dir>/operator-tokens.json`, written
//! to a temporary file, synced and renamed before the new token is shown; a restart keeps the
//! rotation: after the first one, the configured token is never accepted again, whatever it
//! is. To recover a lost token, stop the node, remove `operator-tokens.json` and configure a new
//! `operator_token` (whoever can do that controls the node anyway).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The file's name in the data directory.
pub const OPERATOR_TOKENS_FILE: &str = "operator-tokens.json";
/// Most retired tokens remembered (older ones are forgotten once past their grace).
pub const MAX_RETIRED_TOKENS: usize = 64;
/// Prefix of a rotated operator token.
pub const OPERATOR_TOKEN_PREFIX: &str = "ot_";

/// What the file holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Stored {
    /// keccak256 of the newest rotated token (none before the first rotation).
    current: Option<alloy::primitives::B256>,
    /// Tokens replaced, with the time (ms) until which each still works.
    retired: Vec<Retired>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Retired {
    hash: alloy::primitives::B256,
    works_until_ms: u64,
}

/// The operator tokens a node accepts.
pub struct OperatorTokens {
    path: PathBuf,
    configured: alloy::primitives::B256,
    grace_ms: u64,
    stored: Mutex<Stored>,
}

fn hash(token: &str) -> alloy::primitives::B256 {
    alloy::primitives::keccak256(token.as_bytes())
}

impl OperatorTokens {
    /// Reads `<dir>/operator-tokens.json` (none: no rotation yet) beside the configured token.
    pub fn open(dir: &Path, configured: &str, grace_secs: u64) -> std::io::Result<OperatorTokens> {
        let path = dir.join(OPERATOR_TOKENS_FILE);
        let stored = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stored::default(),
            Err(e) => return Err(e),
        };
        Ok(OperatorTokens {
            path,
            configured: hash(configured),
            grace_ms: grace_secs.saturating_mul(1000),
            stored: Mutex::new(stored),
        })
    }

    /// Whether `token` is an operator token at `now_ms`. Compares hashes, so the comparison
    /// takes the same time whatever the token.
    pub fn accepts(&self, token: &str, now_ms: u64) -> bool {
        let h = hash(token);
        let stored = self.stored.lock().unwrap_or_else(|p| p.into_inner());
        if stored.current == Some(h) {
            return true;
        }
        if let Some(r) = stored.retired.iter().find(|r| r.hash == h) {
            return now_ms <= r.works_until_ms;
        }
        // The configured token, unless a rotation retired it.
        h == self.configured && stored.current.is_none()
    }

    /// Replaces the operator token with `new_token` at `now_ms`: the current one (the
    /// configured one before the first rotation) keeps working for the grace period. Durable
    /// before it returns.
    pub fn rotate(&self, new_token: &str, now_ms: u64) -> std::io::Result<()> {
        let mut stored = self.stored.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = stored.clone();
        let old = next.current.unwrap_or(self.configured);
        next.retired.retain(|r| r.works_until_ms >= now_ms && r.hash != old);
        next.retired.push(Retired { hash: old, works_until_ms: now_ms.saturating_add(self.grace_ms) });
        if next.retired.len() > MAX_RETIRED_TOKENS {
            let drop = next.retired.len() - MAX_RETIRED_TOKENS;
            next.retired.drain(..drop);
        }
        next.current = Some(hash(new_token));
        let bytes = serde_json::to_vec_pretty(&next).expect("the token file serializes");
        crate::towers::write_atomically(&self.path, &bytes)?;
        *stored = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rotation_retires_the_old_token_after_its_grace_and_survives_a_restart() {
        let dir = tempfile::tempdir().expect("tmp");
        let tokens = OperatorTokens::open(dir.path(), "configured-token-0000", 60).expect("open");
        assert!(tokens.accepts("configured-token-0000", 0));
        assert!(!tokens.accepts("guess", 0));
        tokens.rotate("ot_first", 1_000).expect("rotate");
        assert!(tokens.accepts("ot_first", 1_000));
        assert!(tokens.accepts("configured-token-0000", 61_000), "within the grace");
        assert!(!tokens.accepts("configured-token-0000", 61_001), "after the grace");
        tokens.rotate("ot_second", 2_000).expect("rotate");
        assert!(tokens.accepts("ot_first", 62_000) && !tokens.accepts("ot_first", 62_001));
        drop(tokens);
        let again = OperatorTokens::open(dir.path(), "configured-token-0000", 60).expect("reopen");
        assert!(again.accepts("ot_second", 100_000), "the newest survives a restart");
        assert!(!again.accepts("configured-token-0000", 100_000), "the configured token stays retired");
        assert!(!again.accepts("ot_first", 100_000));
        let recovered = OperatorTokens::open(dir.path(), "a-new-configured-token", 60).expect("reopen");
        assert!(!recovered.accepts("a-new-configured-token", 0), "a rotation outranks the configuration");
    }

    #[test]
    fn retired_tokens_are_bounded_and_a_damaged_file_refuses_to_open() {
        let dir = tempfile::tempdir().expect("tmp");
        let tokens = OperatorTokens::open(dir.path(), "configured-token-0000", 1_000_000).expect("open");
        for i in 0..(MAX_RETIRED_TOKENS + 10) {
            tokens.rotate(&format!("ot_{i}"), i as u64).expect("rotate");
        }
        assert_eq!(tokens.stored.lock().expect("lock").retired.len(), MAX_RETIRED_TOKENS);
        std::fs::write(dir.path().join(OPERATOR_TOKENS_FILE), b"{not json").expect("damage");
        assert!(OperatorTokens::open(dir.path(), "configured-token-0000", 60).is_err());
    }
}
