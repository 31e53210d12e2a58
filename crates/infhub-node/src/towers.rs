//! The towers each user named, and the pusher that feeds them the user's new credits.
//!
//! A credit the hub issues while the user's wallet is offline reaches no one who could defend
//! it, unless the hub itself hands it on (spec §5.10a). A user names up to
//! [`MAX_TOWERS_PER_USER`] tower URLs (`PUT /v1/account/towers`); the list is kept in
//! `towers.json` in the data directory (written to a temporary file, synced and renamed, so
//! it is whole after any crash). The pusher runs off the commit path: it follows the node's
//! notices, remembers for each (user, tower) only the newest credit not yet delivered
//! (running totals: a newer one supersedes it), and posts it to the tower, retrying a tower
//! that failed after a back-off. A slow or dead tower never slows a payment; memory is bounded
//! by the registry (at most `MAX_TOWERS_PER_USER` pending credits per user). The operator's
//! own towers (`towers.operator_towers`) get each payer's newest debit the same way, and each
//! user's towers her leaves of every checkpoint the chain confirms, so they can check them and
//! prove a misstated credit on chain while she is offline (spec §5.16).

use crate::engine::Node;
use infhub_core::checkpoint::LeafProof;
use infhub_core::messages::{SignedCredit, SignedDebit};
use infhub_core::Address;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{broadcast, watch, Notify};

/// Most towers one user may name.
pub const MAX_TOWERS_PER_USER: usize = 4;
/// Longest tower URL accepted.
pub const MAX_TOWER_URL_BYTES: usize = 256;
/// How long one push may take.
const PUSH_TIMEOUT: Duration = Duration::from_secs(3);
/// Wait before retrying a tower that failed.
const RETRY_AFTER: Duration = Duration::from_secs(2);
/// Most pushes in flight at once (the rest wait for the next round).
const MAX_PUSHES_PER_ROUND: usize = 256;

/// Why a list of towers was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TowerListError {
    /// More than [`MAX_TOWERS_PER_USER`].
    #[error("at most {MAX_TOWERS_PER_USER} towers per user")]
    TooMany,
    /// Not an `http://` or `https://` URL of reasonable length.
    #[error("not a tower URL: {0}")]
    BadUrl(String),
}

/// Checks and normalises a user's list (no trailing slash, no duplicates).
pub fn check_list(towers: &[String]) -> Result<Vec<String>, TowerListError> {
    if towers.len() > MAX_TOWERS_PER_USER {
        return Err(TowerListError::TooMany);
    }
    let mut out: Vec<String> = Vec::new();
    for t in towers {
        let url = t.trim().trim_end_matches('/').to_string();
        let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
        let host_ok = url.split("://").nth(1).is_some_and(|h| !h.is_empty() && !h.contains(char::is_whitespace));
        if !scheme_ok || !host_ok || url.len() > MAX_TOWER_URL_BYTES {
            return Err(TowerListError::BadUrl(t.chars().take(80).collect()));
        }
        if !out.contains(&url) {
            out.push(url);
        }
    }
    Ok(out)
}

/// The users' tower lists, durable in `towers.json`.
pub struct TowerRegistry {
    path: PathBuf,
    lists: Mutex<BTreeMap<Address, Vec<String>>>,
    changed: Notify,
    /// Users whose list changed: the pusher hands their newest credit to the new towers.
    kicked: Mutex<Vec<Address>>,
}

impl TowerRegistry {
    /// Opens the registry in `data_dir` (empty if the file does not exist yet).
    pub fn open(data_dir: &Path) -> std::io::Result<TowerRegistry> {
        let path = data_dir.join("towers.json");
        let lists = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        Ok(TowerRegistry { path, lists: Mutex::new(lists), changed: Notify::new(), kicked: Mutex::new(Vec::new()) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Address, Vec<String>>> {
        self.lists.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `user`'s towers.
    pub fn get(&self, user: &Address) -> Vec<String> {
        self.lock().get(user).cloned().unwrap_or_default()
    }

    /// Every user with towers, and her towers.
    pub fn all(&self) -> Vec<(Address, Vec<String>)> {
        self.lock().iter().map(|(u, t)| (*u, t.clone())).collect()
    }

    /// True if no user named a tower.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Replaces `user`'s list (checked by [`check_list`]); durable when it returns.
    pub fn set(&self, user: Address, towers: Vec<String>) -> std::io::Result<()> {
        let mut lists = self.lock();
        let before = lists.get(&user).cloned();
        if towers.is_empty() {
            lists.remove(&user);
        } else {
            lists.insert(user, towers);
        }
        if let Err(e) = write_atomically(&self.path, &serde_json::to_vec(&*lists).expect("serializable")) {
            match before {
                Some(b) => lists.insert(user, b),
                None => lists.remove(&user),
            };
            return Err(e);
        }
        drop(lists);
        self.kicked.lock().unwrap_or_else(|p| p.into_inner()).push(user);
        self.changed.notify_waiters();
        Ok(())
    }
}

/// Appends `value` as one JSON line to `path` (created if absent) and syncs it: a journal line
/// that is durable when this returns (a crash mid-append leaves a torn last line, which the
/// journals' readers skip).
pub(crate) fn append_json_line(path: &Path, value: &impl serde::Serialize) -> std::io::Result<()> {
    use std::io::Write;
    let mut line = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(&line)?;
    file.sync_data()
}

/// Writes `bytes` to `path` so that a crash leaves the old or the new contents whole: a
/// temporary file, synced, renamed over it, and the directory synced.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// What the pusher delivers: a user's newest credit to her towers, her newest debit to the
/// operator's towers, or her leaves of the newest checkpoint to her towers (which check them
/// for her while she is offline, spec §5.16).
#[derive(Clone)]
enum Item {
    Credit(SignedCredit),
    Debit(SignedDebit),
    Checkpoint { id: u64, proofs: Vec<LeafProof> },
}

/// What a pending item is, in its key: one of each kind per (user, tower).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Credit,
    Debit,
    Checkpoint,
}

impl Item {
    /// Orders items of one kind: a higher one supersedes a lower one not yet delivered.
    fn nonce(&self) -> u64 {
        match self {
            Item::Credit(c) => c.message.nonce,
            Item::Debit(d) => d.message.nonce,
            Item::Checkpoint { id, .. } => *id,
        }
    }

    fn path_and_body(&self) -> (&'static str, serde_json::Value) {
        match self {
            Item::Credit(c) => ("/v1/appointments", json!({"credit": c})),
            Item::Debit(d) => ("/v1/debits", json!({"debit": d})),
            Item::Checkpoint { id, proofs } => ("/v1/checkpoint-proofs", json!({"checkpoint": id, "proofs": proofs})),
        }
    }
}

/// (user, tower URL, kind) → the newest item not yet delivered and when to try next.
type PendingMap = HashMap<(Address, String, Kind), (Item, Instant)>;

/// Feeds the towers until shutdown: users' credits to the towers they named, their debits to
/// the operator's towers. Follows the notices only while there is a tower to feed, so a hub
/// without towers builds no notices for it.
pub async fn run_pusher(node: Arc<Node>, registry: Arc<TowerRegistry>, mut shutdown: watch::Receiver<bool>) {
    let client = match reqwest::Client::builder().timeout(PUSH_TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "tower pusher: no HTTP client; towers get no pushes");
            return;
        }
    };
    let operator_towers = node.config.towers.operator_towers.clone();
    let mut pending: PendingMap = HashMap::new();
    let mut checkpoint_pushed: Option<u64> = None;
    // The operator's towers start with every user's newest debit.
    if !operator_towers.is_empty() {
        let debits: Vec<SignedDebit> = node.read().ledger().accounts().filter_map(|(_, a)| a.channel.debit).collect();
        for d in debits {
            for url in &operator_towers {
                pending.insert((d.message.user, url.clone(), Kind::Debit), (Item::Debit(d), Instant::now()));
            }
        }
    }
    loop {
        if registry.is_empty() && operator_towers.is_empty() && pending.is_empty() {
            tokio::select! {
                _ = shutdown.changed() => return,
                () = registry.changed.notified() => continue,
                () = tokio::time::sleep(Duration::from_secs(1)) => continue,
            }
        }
        let mut notices = node.notices.subscribe();
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                received = notices.recv() => match received {
                    Ok(n) => enqueue_notice(&node, &registry, &operator_towers, &n, &mut pending),
                    Err(broadcast::error::RecvError::Lagged(k)) => {
                        node.metrics.tower_pushes_lagged.fetch_add(k, Ordering::Relaxed);
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                () = tokio::time::sleep(Duration::from_millis(200)) => {
                    let kicked = std::mem::take(&mut *registry.kicked.lock().unwrap_or_else(|p| p.into_inner()));
                    for user in kicked {
                        let newest = node.read().ledger().account(&user).and_then(|a| a.channel.credit.clone());
                        if let Some(credit) = newest {
                            for url in registry.get(&user) {
                                pending.insert((user, url, Kind::Credit), (Item::Credit(credit.clone()), Instant::now()));
                            }
                        }
                    }
                    enqueue_checkpoint(&node, &registry, &mut checkpoint_pushed, &mut pending);
                    push_due(&client, &node, &mut pending).await;
                    if registry.is_empty() && operator_towers.is_empty() && pending.is_empty() {
                        break;
                    }
                }
            }
            if pending.len() >= 64 {
                push_due(&client, &node, &mut pending).await;
            }
        }
    }
}

/// Queues what one notice calls for: a credit for the payee's towers, the payer's newest debit
/// for the operator's towers.
fn enqueue_notice(
    node: &Node,
    registry: &TowerRegistry,
    operator_towers: &[String],
    n: &crate::engine::Notice,
    pending: &mut PendingMap,
) {
    match n.body["type"].as_str() {
        Some("credit") => {
            let Ok(credit) = serde_json::from_value::<SignedCredit>(n.body["credit"].clone()) else { return };
            for url in registry.get(&n.user) {
                pending.insert((n.user, url, Kind::Credit), (Item::Credit(credit.clone()), Instant::now()));
            }
        }
        Some("receipt") if !operator_towers.is_empty() => {
            let Some(debit) = node.read().ledger().account(&n.user).and_then(|a| a.channel.debit) else { return };
            for url in operator_towers {
                pending.insert((n.user, url.clone(), Kind::Debit), (Item::Debit(debit), Instant::now()));
            }
        }
        _ => {}
    }
}

/// Once the chain confirms a new checkpoint (and its leaves are in memory), queues each user's
/// leaves for each of her towers (one pass over the leaves for all of them).
fn enqueue_checkpoint(node: &Node, registry: &TowerRegistry, pushed: &mut Option<u64>, pending: &mut PendingMap) {
    let Some(h) = node.read().ledger().checkpoints.posted else { return };
    if *pushed == Some(h.id) {
        return;
    }
    let Some(built) = node.checkpoints().get(h.id, h.checkpoint.root) else { return };
    *pushed = Some(h.id);
    let lists = registry.all();
    let mut proofs = built.proofs_of_each(&lists.iter().map(|(u, _)| *u).collect());
    for (user, urls) in lists {
        let Some(proofs) = proofs.remove(&user) else { continue };
        for url in urls {
            let item = Item::Checkpoint { id: h.id, proofs: proofs.clone() };
            pending.insert((user, url, Kind::Checkpoint), (item, Instant::now()));
        }
    }
}

/// Posts every due pending item (concurrently); keeps failures for a retry.
async fn push_due(client: &reqwest::Client, node: &Node, pending: &mut PendingMap) {
    let now = Instant::now();
    let due: Vec<(Address, String, Kind)> =
        pending.iter().filter(|(_, (_, at))| *at <= now).map(|(k, _)| k.clone()).take(MAX_PUSHES_PER_ROUND).collect();
    let mut tasks = tokio::task::JoinSet::new();
    for key in due {
        let item = pending[&key].0.clone();
        let client = client.clone();
        tasks.spawn(async move {
            let (path, body) = item.path_and_body();
            let answer = client.post(format!("{}{path}", key.1)).json(&body).send().await;
            // 409: the tower already holds this item or a newer one. A checkpoint's leaves the
            // tower refuses by a rule (4xx but 429) would be refused again: not retried.
            let checkpoint = matches!(item, Item::Checkpoint { .. });
            let delivered = answer.is_ok_and(|r| {
                let code = r.status().as_u16();
                r.status().is_success() || code == 409 || (checkpoint && (400..500).contains(&code) && code != 429)
            });
            (key, item.nonce(), delivered)
        });
    }
    while let Some(done) = tasks.join_next().await {
        let Ok((key, nonce, delivered)) = done else { continue };
        if delivered {
            node.metrics.tower_pushes.fetch_add(1, Ordering::Relaxed);
            // Remove only if no newer item arrived meanwhile.
            if pending.get(&key).is_some_and(|(item, _)| item.nonce() == nonce) {
                pending.remove(&key);
            }
        } else {
            node.metrics.tower_push_failures.fetch_add(1, Ordering::Relaxed);
            if let Some((_, at)) = pending.get_mut(&key) {
                *at = Instant::now() + RETRY_AFTER;
            }
        }
    }
    node.metrics.tower_pushes_pending.store(pending.len() as u64, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_are_checked_and_normalised() {
        let ok = check_list(&["http://a:1/".into(), "https://b".into(), "http://a:1".into()]).expect("valid");
        assert_eq!(ok, vec!["http://a:1".to_string(), "https://b".to_string()]);
        assert_eq!(check_list(&vec!["http://a".to_string(); 5]), Err(TowerListError::TooMany));
        assert!(matches!(check_list(&["ftp://a".into()]), Err(TowerListError::BadUrl(_))));
        assert!(matches!(check_list(&["http://".into()]), Err(TowerListError::BadUrl(_))));
        assert!(matches!(check_list(&[format!("http://{}", "a".repeat(300))]), Err(TowerListError::BadUrl(_))));
    }

    #[test]
    fn the_registry_is_durable_and_a_user_can_clear_her_list() {
        let dir = tempfile::tempdir().expect("tempdir");
        let user = Address::repeat_byte(7);
        {
            let r = TowerRegistry::open(dir.path()).expect("open");
            r.set(user, vec!["http://t1".into()]).expect("set");
            r.set(Address::repeat_byte(8), vec!["http://t2".into()]).expect("set");
        }
        let r = TowerRegistry::open(dir.path()).expect("reopen");
        assert_eq!(r.get(&user), vec!["http://t1".to_string()]);
        r.set(user, vec![]).expect("clear");
        let r = TowerRegistry::open(dir.path()).expect("reopen");
        assert!(r.get(&user).is_empty());
        assert!(!r.is_empty());
    }
}
