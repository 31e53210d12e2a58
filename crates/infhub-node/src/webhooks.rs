//! Merchants' webhooks (spec §5.24): an account names one URL, and the node posts the account's
//! new history entries to it, oldest first, in order, at least once, each body signed with
//! HMAC-SHA256 under a secret only the account was shown. The cursor is the `seq` of the last
//! entry the receiver acknowledged (a 2xx answer), kept in `webhooks.json` (written whole
//! after each delivery), so a delivery lost to a crash is sent again and a receiver dedupes by
//! `seq`. The same feed is pulled with `GET /v1/accounts/{user}/events?after=` by a back end
//! that was down or prefers to poll. A receiver that fails is retried after a back-off that
//! doubles up to [`MAX_RETRY_AFTER`]; deliveries run off the commit path, so a slow receiver
//! never slows a payment.

use crate::engine::Node;
use crate::towers::write_atomically;
use infhub_core::{Address, B256};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Most accounts with a webhook.
pub const MAX_WEBHOOKS: usize = 10_000;
/// Longest webhook URL accepted.
pub const MAX_WEBHOOK_URL_BYTES: usize = 512;
/// Most events one delivery carries.
pub const MAX_EVENTS_PER_DELIVERY: usize = 100;
/// How long one delivery may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest back-off before retrying a receiver that failed.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);
/// The first back-off.
const FIRST_RETRY_AFTER: Duration = Duration::from_millis(500);
/// The header carrying the body's signature, `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-infhub-signature";

/// Why a webhook was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// Not an `http://` or `https://` URL of reasonable length.
    #[error("not a webhook URL (http:// or https://, at most {MAX_WEBHOOK_URL_BYTES} bytes): {0}")]
    BadUrl(String),
    /// A loopback, private or link-local host, which this hub does not post to
    /// (`node.webhooks_to_private_hosts`).
    #[error("{0} is a loopback, private or link-local host; this hub posts only to public ones")]
    PrivateHost(String),
    /// [`MAX_WEBHOOKS`] accounts have one.
    #[error("this hub keeps at most {MAX_WEBHOOKS} webhooks")]
    TooMany,
}

/// One account's webhook, as `webhooks.json` keeps it.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Hook {
    url: String,
    secret: B256,
    /// The `seq` of the last entry the receiver acknowledged.
    cursor: u64,
}

/// What the node remembers of a receiver between rounds (not kept across restarts).
#[derive(Clone, Debug, Default)]
struct Health {
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<String>,
    delivered: u64,
}

/// The accounts' webhooks, durable in `webhooks.json`. Its two locks are never held together.
pub struct Webhooks {
    path: PathBuf,
    hooks: Mutex<BTreeMap<Address, Hook>>,
    health: Mutex<HashMap<Address, Health>>,
    to_private_hosts: bool,
}

/// An account's webhook as its owner reads it (`GET …/webhook`); `PUT` adds the secret once.
#[derive(Clone, Debug, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    /// Where events are posted.
    pub url: String,
    /// The last history ordinal delivered (the event feed's `after`).
    pub cursor: u64,
    /// Failed deliveries in a row.
    pub failures: u32,
    /// The last delivery error, if the last delivery failed.
    pub last_error: Option<String>,
    /// Events delivered since the node started.
    pub delivered_this_run: u64,
    /// The signing secret (hex), shown once when the webhook is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The header carrying each delivery's HMAC-SHA256, shown when the webhook is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_header: Option<&'static str>,
}

impl Webhooks {
    /// Opens the webhooks in `data_dir` (none if the file does not exist yet).
    pub fn open(data_dir: &Path, to_private_hosts: bool) -> std::io::Result<Webhooks> {
        let path = data_dir.join("webhooks.json");
        let hooks = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        Ok(Webhooks { path, hooks: Mutex::new(hooks), health: Mutex::default(), to_private_hosts })
    }

    /// Writes `hooks` whole to `webhooks.json` (synced, renamed over the old one).
    fn write(&self, hooks: &BTreeMap<Address, Hook>) -> std::io::Result<()> {
        write_atomically(&self.path, &serde_json::to_vec(hooks).expect("serializable"))
    }

    fn hooks(&self) -> std::sync::MutexGuard<'_, BTreeMap<Address, Hook>> {
        self.hooks.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn health(&self) -> std::sync::MutexGuard<'_, HashMap<Address, Health>> {
        self.health.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Checks `url`: `http(s)://host[:port][/path]`, no whitespace, at most
    /// [`MAX_WEBHOOK_URL_BYTES`]; a loopback, private or link-local host only if the operator
    /// allows it. A name is taken as public here; at each delivery it is checked again by the
    /// addresses it resolves to ([`PublicAddressesOnly`]).
    pub fn check_url(&self, url: &str) -> Result<String, WebhookError> {
        let url = url.trim();
        let bad = || WebhookError::BadUrl(url.chars().take(80).collect());
        let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")).ok_or_else(bad)?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
        };
        if host.is_empty()
            || url.len() > MAX_WEBHOOK_URL_BYTES
            || url.contains(char::is_whitespace)
            || authority.contains('@')
        {
            return Err(bad());
        }
        if !self.to_private_hosts && is_private_host(host) {
            return Err(WebhookError::PrivateHost(host.to_string()));
        }
        Ok(url.to_string())
    }

    /// Sets `user`'s webhook to `url` (checked) from `cursor` on, with a new secret (returned;
    /// it is shown only now). Durable when it returns.
    pub fn set(&self, user: Address, url: &str, cursor: u64) -> Result<B256, SetError> {
        let url = self.check_url(url)?;
        let secret = random_secret().map_err(SetError::Io)?;
        let mut hooks = self.hooks();
        if !hooks.contains_key(&user) && hooks.len() >= MAX_WEBHOOKS {
            return Err(WebhookError::TooMany.into());
        }
        let before = hooks.insert(user, Hook { url, secret, cursor });
        if let Err(e) = self.write(&hooks) {
            match before {
                Some(b) => hooks.insert(user, b),
                None => hooks.remove(&user),
            };
            return Err(SetError::Io(e));
        }
        drop(hooks);
        self.health().remove(&user);
        Ok(secret)
    }

    /// Removes `user`'s webhook; whether there was one. Durable when it returns.
    pub fn remove(&self, user: Address) -> std::io::Result<bool> {
        let mut hooks = self.hooks();
        let Some(before) = hooks.remove(&user) else { return Ok(false) };
        if let Err(e) = self.write(&hooks) {
            hooks.insert(user, before);
            return Err(e);
        }
        drop(hooks);
        self.health().remove(&user);
        Ok(true)
    }

    /// What `user` may see of her webhook (not its secret), if she has one.
    pub fn view(&self, user: &Address) -> Option<WebhookView> {
        let hook = self.hooks().get(user).cloned()?;
        let health = self.health().get(user).cloned().unwrap_or_default();
        Some(WebhookView {
            url: hook.url,
            cursor: hook.cursor,
            failures: health.failures,
            last_error: health.last_error,
            delivered_this_run: health.delivered,
            secret: None,
            signature_header: None,
        })
    }

    /// Moves `user`'s cursor to `cursor` if her webhook is still the one with `secret` (it
    /// was not replaced or removed meanwhile). Durable when it returns.
    fn acknowledged(&self, user: Address, secret: B256, cursor: u64, events: usize) -> std::io::Result<()> {
        let mut hooks = self.hooks();
        let Some(hook) = hooks.get_mut(&user).filter(|h| h.secret == secret) else { return Ok(()) };
        let before = hook.cursor;
        hook.cursor = cursor.max(before);
        if let Err(e) = self.write(&hooks) {
            if let Some(h) = hooks.get_mut(&user) {
                h.cursor = before;
            }
            return Err(e);
        }
        drop(hooks);
        let mut health = self.health();
        let h = health.entry(user).or_default();
        (h.failures, h.retry_at, h.last_error) = (0, None, None);
        h.delivered += events as u64;
        Ok(())
    }

    /// Records a failed delivery to `user`'s receiver and when to retry it.
    fn failed(&self, user: Address, why: String) {
        let mut health = self.health();
        let h = health.entry(user).or_default();
        h.failures = h.failures.saturating_add(1);
        let back_off = FIRST_RETRY_AFTER.saturating_mul(1u32 << h.failures.min(16)).min(MAX_RETRY_AFTER);
        h.retry_at = Some(Instant::now() + back_off);
        h.last_error = Some(why);
    }

    /// The webhooks due now: not waiting out a back-off.
    fn due(&self) -> Vec<(Address, Hook)> {
        let now = Instant::now();
        // One lock at a time (never `health` while `hooks` is held, or the reverse).
        let all: Vec<(Address, Hook)> = self.hooks().iter().map(|(u, h)| (*u, h.clone())).collect();
        let health = self.health();
        let due = |u: &Address| health.get(u).and_then(|h| h.retry_at).is_none_or(|at| at <= now);
        all.into_iter().filter(|(u, _)| due(u)).collect()
    }
}

/// Why setting a webhook failed.
#[derive(Debug, thiserror::Error)]
pub enum SetError {
    /// The webhook itself was refused.
    #[error(transparent)]
    Refused(#[from] WebhookError),
    /// `webhooks.json` could not be written.
    #[error("webhooks.json: {0}")]
    Io(std::io::Error),
}

/// The delivery client's resolver when private hosts are not allowed: a name's loopback,
/// private and link-local addresses are dropped, and a name with no other is refused. The
/// check is made on the addresses the client connects to, so a name that resolves to a private
/// address (or is re-pointed at one after the webhook was set) is not posted to.
struct PublicAddressesOnly;

impl reqwest::dns::Resolve for PublicAddressesOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let public = public_only(tokio::net::lookup_host((host.as_str(), 0)).await?);
            if public.is_empty() {
                return Err(WebhookError::PrivateHost(host).into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(public.into_iter());
            Ok(addrs)
        })
    }
}

/// The public addresses among `found`.
fn public_only(found: impl Iterator<Item = std::net::SocketAddr>) -> Vec<std::net::SocketAddr> {
    found.filter(|a| !is_private_host(&a.ip().to_string())).collect()
}

/// Whether `host` (a name or an IP literal) is loopback, private, link-local or unspecified.
fn is_private_host(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => {
            ip.is_loopback() || ip.is_private() || ip.is_link_local() || ip.is_unspecified() || ip.is_broadcast()
        }
        Ok(std::net::IpAddr::V6(ip)) => {
            let first = ip.segments()[0];
            let mapped = ip.to_ipv4_mapped().is_some_and(|v4| is_private_host(&v4.to_string()));
            ip.is_loopback()
                || ip.is_unspecified()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || mapped
        }
        Err(_) => false,
    }
}

fn random_secret() -> std::io::Result<B256> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| std::io::Error::other(format!("no randomness: {e}")))?;
    Ok(B256::from(b))
}

/// `sha256=<hex>` of HMAC-SHA256 under `secret` over `body`: what a receiver recomputes.
pub fn signature(secret: &B256, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(secret.as_slice()).expect("any key length");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    format!("sha256={}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// Delivers every due webhook's new events every `interval` until `shutdown`.
pub async fn run_deliveries(
    node: Arc<Node>,
    hooks: Arc<Webhooks>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    // No redirects (a public receiver could send the post on to a private address), and
    // unless the operator allows private hosts, names resolved to public addresses only.
    let mut builder = reqwest::Client::builder().timeout(DELIVERY_TIMEOUT).redirect(reqwest::redirect::Policy::none());
    if !hooks.to_private_hosts {
        builder = builder.dns_resolver(Arc::new(PublicAddressesOnly));
    }
    let client = match builder.build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "no HTTP client: webhooks are not delivered");
            return;
        }
    };
    loop {
        for (user, hook) in hooks.due() {
            if let Err(why) = deliver(&node, &hooks, &client, user, &hook).await {
                tracing::info!(%user, url = %hook.url, error = %why, "webhook delivery failed; retrying later");
                hooks.failed(user, why);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Posts `user`'s events after `hook`'s cursor (at most [`MAX_EVENTS_PER_DELIVERY`]) and moves
/// the cursor once the receiver acknowledges them.
async fn deliver(
    node: &Node,
    hooks: &Webhooks,
    client: &reqwest::Client,
    user: Address,
    hook: &Hook,
) -> Result<(), String> {
    let (reader, heads) = {
        let st = node.read();
        (st.history().reader(), st.history().heads(&user))
    };
    let Some(heads) = heads else { return Ok(()) };
    let cursor = hook.cursor;
    let events = tokio::task::spawn_blocking(move || reader.after(&user, heads, cursor, MAX_EVENTS_PER_DELIVERY))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("history: {e}"))?;
    let Some(next) = events.last().map(|e| e.seq) else { return Ok(()) };
    let body = serde_json::to_vec(&json!({"account": user, "after": cursor, "events": events, "nextAfter": next}))
        .map_err(|e| e.to_string())?;
    let answer = client
        .post(&hook.url)
        .header("content-type", "application/json")
        .header(SIGNATURE_HEADER, signature(&hook.secret, &body))
        .header("x-infhub-account", user.to_string())
        .body(body)
        .send()
        .await
        .map_err(|e| format!("post: {e}"))?;
    if !answer.status().is_success() {
        return Err(format!("the receiver answered {}", answer.status()));
    }
    hooks.acknowledged(user, hook.secret, next, events.len()).map_err(|e| format!("webhooks.json: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_resolving_only_to_private_addresses_is_not_posted_to() {
        use reqwest::dns::Resolve;
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let name: reqwest::dns::Name = "localhost".parse().expect("a name");
        let refused = rt.block_on(PublicAddressesOnly.resolve(name)).err().map(|e| e.to_string());
        assert!(refused.is_some_and(|e| e.contains("private")), "localhost resolves only to loopback");
        let addr = |s: &str| s.parse::<std::net::SocketAddr>().expect("an address");
        let found = ["10.1.2.3:0", "93.184.216.34:0", "[::1]:0", "169.254.1.1:0", "[2606:2800:220:1::]:0"];
        let kept = public_only(found.iter().map(|s| addr(s)));
        assert_eq!(kept, vec![addr("93.184.216.34:0"), addr("[2606:2800:220:1::]:0")]);
    }

    #[test]
    fn urls_are_checked_and_private_hosts_refused_unless_allowed() {
        let dir = tempfile::tempdir().expect("tmp");
        let public = Webhooks::open(dir.path(), false).expect("open");
        assert_eq!(
            public.check_url(" https://shop.example/hooks/infhub "),
            Ok("https://shop.example/hooks/infhub".into())
        );
        for bad in ["ftp://shop.example", "https://", "https://a b", "https://user@shop.example/", "shop.example"] {
            assert!(matches!(public.check_url(bad), Err(WebhookError::BadUrl(_))), "{bad}");
        }
        let long = format!("https://shop.example/{}", "a".repeat(MAX_WEBHOOK_URL_BYTES));
        assert!(matches!(public.check_url(&long), Err(WebhookError::BadUrl(_))));
        for private in [
            "http://127.0.0.1:9000/x",
            "http://localhost/x",
            "http://10.1.2.3/",
            "http://192.168.0.1",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]:80/",
            "http://[fd00::1]/",
            "http://[::ffff:10.0.0.1]/",
            "http://0.0.0.0/",
        ] {
            assert!(matches!(public.check_url(private), Err(WebhookError::PrivateHost(_))), "{private}");
        }
        let dev = Webhooks::open(dir.path(), true).expect("open");
        assert!(dev.check_url("http://127.0.0.1:9000/x").is_ok(), "allowed by the operator");
    }

    /// Setting a webhook while the delivery loop lists the due ones must not deadlock (it did
    /// when each took the two locks in the other's order; found by the node test under load).
    #[test]
    fn setting_while_deliveries_list_the_due_webhooks_never_deadlocks() {
        let dir = tempfile::tempdir().expect("tmp");
        let hooks = Arc::new(Webhooks::open(dir.path(), true).expect("open"));
        let (done, finished) = std::sync::mpsc::channel();
        let lister = {
            let (hooks, done) = (hooks.clone(), done.clone());
            std::thread::spawn(move || {
                for _ in 0..2_000 {
                    let _ = hooks.due();
                }
                let _ = done.send(());
            })
        };
        let setter = std::thread::spawn(move || {
            for i in 0..200u8 {
                hooks.set(Address::repeat_byte(i % 7), "http://127.0.0.1:1/x", 0).expect("set");
                hooks.failed(Address::repeat_byte(i % 7), "x".into());
            }
            let _ = done.send(());
        });
        for _ in 0..2 {
            finished.recv_timeout(Duration::from_secs(60)).expect("both threads finish: no deadlock");
        }
        lister.join().expect("lister");
        setter.join().expect("setter");
    }

    #[test]
    fn the_signature_is_rfc_4231_hmac_sha256() {
        // RFC 4231 test case 2: key "Jefe" (here right-padded to 32 bytes, which HMAC does
        // itself for a short key, so the figure is the RFC's).
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        assert_eq!(
            signature(&B256::from(key), b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_failed_receiver_backs_off_and_a_set_or_an_acknowledgement_resets_it() {
        let dir = tempfile::tempdir().expect("tmp");
        let hooks = Webhooks::open(dir.path(), true).expect("open");
        let user = Address::repeat_byte(1);
        let secret = hooks.set(user, "http://127.0.0.1:1/x", 7).expect("set");
        assert_eq!(hooks.due().len(), 1);
        hooks.failed(user, "refused".into());
        assert!(hooks.due().is_empty(), "waiting out its back-off");
        assert_eq!(hooks.view(&user).expect("view").failures, 1);
        hooks.acknowledged(user, B256::ZERO, 9, 1).expect("ack");
        assert_eq!(hooks.view(&user).expect("view").cursor, 7, "an old secret's acknowledgement is ignored");
        hooks.acknowledged(user, secret, 9, 2).expect("ack");
        assert_eq!(hooks.view(&user).expect("view").cursor, 9);
        assert_eq!(hooks.due().len(), 1, "due again");
        let reopened = Webhooks::open(dir.path(), true).expect("reopen");
        assert_eq!(reopened.view(&user).expect("view").cursor, 9, "the cursor is durable");
        assert!(reopened.remove(user).expect("remove"));
        assert!(Webhooks::open(dir.path(), true).expect("reopen").view(&user).is_none());
    }
}
