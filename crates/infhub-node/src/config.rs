//! The node's configuration: every knob with its documented default, read from a TOML file,
//! then overridden by `INFHUB_*` environment variables, then by command-line flags. Secrets
//! (the hub key, the operator token) are best passed through the environment.

use alloy::primitives::{Address, B256};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The whole configuration.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where and how the node listens and stores.
    pub node: NodeConfig,
    /// The chain it follows.
    pub chain: ChainConfig,
    /// Named limits.
    pub limits: Limits,
    /// The hub's liquidity duties.
    pub liquidity: LiquidityConfig,
    /// Watchtowers the operator keeps users' newest debits with (spec §5.10a).
    pub towers: TowersConfig,
    /// Checkpoints of the hub's books posted on chain (spec §5.16).
    pub checkpoints: CheckpointsConfig,
    /// Where the ledger's log and snapshots live (the data directory, or PostgreSQL).
    pub store: StoreConfig,
}

/// Which store holds the ledger's log.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// The embedded file store in the data directory (development, small hubs).
    #[default]
    File,
    /// PostgreSQL (replicated, failed over; the writer lease fences old writers).
    Postgres,
}

/// The ledger's store. With PostgreSQL the data directory still holds the history index and
/// checkpoint files (both rebuilt or rewritten from the database and the chain when absent).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `file` or `postgres`.
    pub kind: StoreKind,
    /// libpq connection string or URL (it may hold a password: pass it as
    /// `INFHUB_POSTGRES_URL`). A multi-host URL with `target_session_attrs=read-write` follows
    /// a failover to the new primary.
    pub postgres_url: Secret<String>,
    /// The schema holding this hub's tables.
    pub postgres_schema: String,
    /// Refuse to run unless the server commits synchronously to a standby, so nothing is
    /// acknowledged that a failover could lose. Turning it off is asynchronous mode: an
    /// explicit choice to accept that risk (development, tests).
    pub require_synchronous_standby: bool,
    /// Longest wait for a commit's confirmation by the synchronous standby, in milliseconds;
    /// past it the batch is not acknowledged and the ledger stops.
    pub commit_timeout_ms: u64,
    /// This process's name in the writer lease (empty: `<hostname>:<data_dir>`); the same
    /// name restarted takes the lease at once.
    pub writer_name: String,
    /// The writer lease's length, in milliseconds: a standby takes over at most this long
    /// after the active writer stops.
    pub lease_ms: u64,
    /// Start as a standby: wait until the lease is free, then replay and serve. Without it a
    /// held lease is an error at start.
    pub wait_for_lease: bool,
    /// On PostgreSQL, keep the queryable projection (`accounts`, `transfers`, `seals`,
    /// `checkpoints` in the same schema) filled from the ledger's records, off the commit path.
    pub projection: bool,
    /// On PostgreSQL, the connections that serve account-history reads beside the writer's
    /// (1 to 64), each with a thread of its own.
    pub history_read_connections: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::File,
            postgres_url: Secret::default(),
            postgres_schema: "infhub".into(),
            require_synchronous_standby: true,
            commit_timeout_ms: 10_000,
            writer_name: String::new(),
            lease_ms: 5_000,
            wait_for_lease: false,
            projection: true,
            history_read_connections: infhub_pg::READ_CONNECTIONS,
        }
    }
}

/// Checkpoints: how often, and how many files are kept.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointsConfig {
    /// A checkpoint is built and posted when the newest one is this many blocks old (300 is
    /// about an hour at 12-second blocks; 0 turns checkpoints off).
    pub interval_blocks: u64,
    /// Checkpoint files kept in `<data_dir>/checkpoints` (never the posted one or a later one).
    pub files_kept: usize,
    /// TEST ONLY: build dishonest checkpoints that count half of this user's newest credit in
    /// her leaf, so tests can show her wallet catches it and her complaint halts the hub. Never
    /// set it on a real hub.
    pub dishonest_understate_credit_of: Option<Address>,
    /// TEST ONLY: build dishonest checkpoints whose leaf of this user states more debit than she
    /// signed, so tests can show her challenge goes unanswered and halts the hub. Never set it
    /// on a real hub.
    pub dishonest_invent_debit_of: Option<Address>,
}

impl Default for CheckpointsConfig {
    fn default() -> Self {
        CheckpointsConfig {
            interval_blocks: 300,
            files_kept: 24,
            dishonest_understate_credit_of: None,
            dishonest_invent_debit_of: None,
        }
    }
}

/// The operator's watchtowers: a second line of defence against a user's exit with an older
/// debit while this node is down. Each user's newest debit is pushed to them after each payment.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TowersConfig {
    /// Tower URLs (`http(s)://…`, at most four).
    pub operator_towers: Vec<String>,
}

/// One INF in token base units (18 decimals).
pub const INF: u128 = 1_000_000_000_000_000_000;

/// When the hub realizes debits, and when free reserve counts as low (spec §5.6, §6.3).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LiquidityConfig {
    /// Realize payers' debits, largest first, while free reserve is below this (token base
    /// units, a decimal string).
    pub realize_when_free_reserve_below: infhub_core::Amount,
    /// Realize any payer whose realizable amount reaches this, whatever the free reserve.
    pub realize_when_payer_reaches: infhub_core::Amount,
    /// Most debits per realization transaction (the contract allows 100).
    pub max_realizations_per_tx: usize,
    /// Free reserve below this is reported as low: the `infhub_free_reserve_low` metric and a
    /// log line.
    pub low_free_reserve_below: infhub_core::Amount,
}

impl Default for LiquidityConfig {
    fn default() -> Self {
        LiquidityConfig {
            realize_when_free_reserve_below: infhub_core::Amount(10_000 * INF),
            realize_when_payer_reaches: infhub_core::Amount(100_000 * INF),
            max_realizations_per_tx: 100,
            low_free_reserve_below: infhub_core::Amount(1_000 * INF),
        }
    }
}

/// Longest group-commit wait accepted (`node.group_commit_wait_micros`): 100 ms.
pub const MAX_GROUP_COMMIT_WAIT_MICROS: u64 = 100_000;
/// Longest grace a rotated-away operator token may have (`node.operator_token_grace_secs`).
pub const MAX_OPERATOR_TOKEN_GRACE_SECS: u64 = 604_800;

/// A value that must not appear in logs or `Debug` output (the hub's key, the operator token):
/// it reads and writes as the bare value in the config file, and prints as `<redacted>`.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret<T>(pub T);

impl<T> std::fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Server and storage.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// HTTP listen address.
    pub listen: String,
    /// Data directory (log segments, snapshots, archive).
    pub data_dir: PathBuf,
    /// Bearer token of the operator endpoints (required; at least 16 characters), until the
    /// first rotation (`POST /v1/operator/token-rotations`) replaces it.
    pub operator_token: Secret<String>,
    /// How long a rotated-away operator token keeps working, in seconds (at most
    /// `MAX_OPERATOR_TOKEN_GRACE_SECS`).
    pub operator_token_grace_secs: u64,
    /// Whether the lock endpoints (`/v1/locked-transfers`, `/v1/lock-reveals`,
    /// `/v1/lock-debits`, spec §5.17b) are open (default). The hub's lock duties charge a payer
    /// who never settles (spec §5.15); an operator may still turn the endpoints off.
    pub locked_transfers: bool,
    /// A snapshot is written after this many log records.
    pub snapshot_every_records: u64,
    /// Log segment size before a new one starts, in bytes.
    pub max_segment_bytes: u64,
    /// Session lifetime after login, in seconds.
    pub session_ttl_secs: u64,
    /// How often queued external payouts are sent as one batch, in milliseconds.
    pub payout_interval_ms: u64,
    /// A duty (a dispute, a settlement, a payout batch, a realization) still due this many
    /// blocks after its transaction was sent is sent again (a dropped, reorged or reverted
    /// transaction; the contract refuses what is already done).
    pub resend_after_blocks: u64,
    /// Log filter (tracing `EnvFilter` syntax).
    pub log: String,
    /// How often the ledger is reconciled against the chain, in seconds (0: only on demand).
    pub reconcile_interval_secs: u64,
    /// Under load (more than one command waiting when the writer wakes), how long the writer
    /// waits for more before committing, in microseconds (0: never waits). Fewer, larger
    /// group commits mean fewer fsyncs and batch signatures per transfer; a lone request is
    /// committed at once.
    pub group_commit_wait_micros: u64,
    /// Where this writer listens for stateless front-ends (spec §7, front-ends), e.g.
    /// `127.0.0.1:8090`; empty: no front-ends.
    pub sequencer_listen: String,
    /// The token front-ends present (required with `sequencer_listen`; at least 16
    /// characters). Env `INFHUB_SEQUENCER_TOKEN`.
    pub sequencer_token: Secret<String>,
    /// How often each hub-to-hub link (spec §5.23) is synced with its peer and defended on
    /// chain, in milliseconds.
    pub link_watch_interval_ms: u64,
    /// What this hub charges per payment it forwards over one of its links (spec §5.18), in
    /// token base units.
    pub link_base_fee: infhub_core::Amount,
    /// What it charges per forwarded amount, in parts per million (at most 1,000,000).
    pub link_fee_ppm: u32,
    /// Most payments forwarded over one link and not yet finished (spec §5.23b); beyond it a
    /// forward is refused `link_busy`, naming the link (0 stops this hub forwarding).
    pub max_forwards_per_link: usize,
    /// How long the parts of a split payment collected here have to cover it after the first
    /// arrived (spec §5.23c), in milliseconds; then it is abandoned and its parts cancelled.
    pub split_collection_timeout_ms: u64,
    /// How often merchants' webhooks get their new events (spec §5.24), in milliseconds.
    pub webhook_interval_ms: u64,
    /// Whether a webhook may name a loopback, private or link-local host (development only:
    /// otherwise any account could make the hub post into the operator's own network).
    pub webhooks_to_private_hosts: bool,
    /// The web wallet's built files (`web/dist`, made by `scripts/setup`), served at `/wallet`;
    /// empty: no web wallet (`/wallet` answers `wallet_not_installed`).
    pub wallet_dir: PathBuf,
    /// The chain's JSON-RPC URL as browsers reach it (the web wallet talks to the chain
    /// directly, so it can exit with the hub down); empty: `chain.rpc_url`.
    pub wallet_rpc_url: String,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./infhub-data"),
            operator_token: Secret::default(),
            operator_token_grace_secs: 3_600,
            locked_transfers: true,
            snapshot_every_records: 100_000,
            max_segment_bytes: 64 << 20,
            session_ttl_secs: 3_600,
            payout_interval_ms: 1_000,
            resend_after_blocks: 12,
            log: "info".into(),
            reconcile_interval_secs: 300,
            group_commit_wait_micros: 500,
            sequencer_listen: String::new(),
            sequencer_token: Secret::default(),
            link_watch_interval_ms: 2_000,
            link_base_fee: infhub_core::Amount::ZERO,
            link_fee_ppm: 0,
            max_forwards_per_link: crate::links::MAX_FORWARDS_PER_LINK,
            split_collection_timeout_ms: 60_000,
            webhook_interval_ms: 1_000,
            webhooks_to_private_hosts: false,
            wallet_dir: PathBuf::new(),
            wallet_rpc_url: String::new(),
        }
    }
}

/// Chain access.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ChainConfig {
    /// JSON-RPC URL (`http(s)://` or `ws(s)://`).
    pub rpc_url: String,
    /// The hub contract.
    pub hub_contract: Address,
    /// The hub's private key (hex). Its address must be the contract's `hub`.
    pub hub_key: Secret<B256>,
    /// Block of the contract's deployment (where the watcher starts).
    pub start_block: u64,
    /// Blocks, including the event's own, before a chain event is applied.
    pub confirmations: u64,
    /// How often the chain is polled, in milliseconds.
    pub poll_interval_ms: u64,
    /// Blocks an unmined transaction waits before it is re-sent with higher fees.
    pub bump_after_blocks: u64,
    /// Fee increase per replacement, in percent.
    pub bump_percent: u64,
    /// Highest max fee per gas the hub ever signs, in wei.
    pub max_fee_per_gas_cap_wei: u128,
}

impl Default for ChainConfig {
    fn default() -> Self {
        ChainConfig {
            rpc_url: "http://127.0.0.1:8545".into(),
            hub_contract: Address::ZERO,
            hub_key: Secret::default(),
            start_block: 0,
            confirmations: 12,
            poll_interval_ms: 1_000,
            bump_after_blocks: 3,
            bump_percent: 25,
            max_fee_per_gas_cap_wei: 500_000_000_000,
        }
    }
}

/// Named limits. Requests beyond them get a `limit_exceeded` or `overloaded` error.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request body, in bytes.
    pub max_request_bytes: usize,
    /// Largest body of a custodial batch (`/v1/custodial/transfers`), in bytes.
    pub max_batch_request_bytes: usize,
    /// Requests waiting for the ledger writer; beyond it the node answers `overloaded`.
    pub max_write_queue: usize,
    /// Requests being served at once; beyond it the node answers 503 at once.
    pub max_concurrent_requests: usize,
    /// WebSocket streams open at once.
    pub max_websockets: usize,
    /// Commands per group commit.
    pub max_batch_commands: usize,
    /// Entries per history page.
    pub max_page_size: usize,
    /// History entries a payment lookup by id reads back, newest first, before it answers
    /// `unknown_payment` (`GET /v1/accounts/{user}/payments/{id}`).
    pub max_payment_lookup_entries: usize,
    /// Accounts the ledger holds.
    pub max_accounts: usize,
    /// External payouts queued before sending.
    pub max_queued_payouts: usize,
    /// Recipients per payout transaction (the contract allows 256).
    pub max_payout_batch: usize,
    /// Largest single payment, in token base units (a decimal string).
    pub max_payment_amount: infhub_core::Amount,
    /// Longest withdrawal authorization, in blocks.
    pub max_withdrawal_expiry_blocks: u64,
    /// Outstanding login challenges of addresses the ledger does not know; beyond it the oldest
    /// is evicted (a flood churns this pool, it never refuses and never touches accounts').
    pub max_pending_challenges: usize,
    /// Outstanding login challenges per account; a new one replaces the account's oldest.
    pub max_challenges_per_account: usize,
    /// Signed transfers per request on the batch endpoint (`/v1/transfers/batch`).
    pub max_transfers_per_request: usize,
    /// Live sessions of addresses the ledger does not know; beyond it the oldest is evicted.
    pub max_sessions: usize,
    /// Live sessions per account; a new login replaces the account's oldest session.
    pub max_sessions_per_account: usize,
    /// Open streams per account (and for the operator); beyond it `limit_exceeded`.
    pub max_streams_per_account: usize,
    /// Requests in flight from one source address; beyond it `limit_exceeded` (503) at once.
    pub max_requests_in_flight_per_address: usize,
    /// New registrations (each costs the hub gas to open a channel) the hub takes per hour,
    /// refilled continuously; beyond it `registration_rate_limited` (429).
    pub registrations_per_hour: u32,
    /// New registrations per hour from one source address; beyond it `registration_rate_limited`.
    pub registrations_per_hour_per_address: u32,
    /// Writes (payments, withdrawals, lock requests) one account may make per second, refilled
    /// continuously, a second's worth at once; beyond it `account_rate_limited`.
    pub writes_per_second_per_account: u32,
    /// Open connections from one source address; beyond it a new one is closed at once.
    pub max_connections_per_address: usize,
    /// A request's headers must arrive within this, in milliseconds, or the connection is closed
    /// (a client that never finishes its headers holds nothing).
    pub header_read_timeout_ms: u64,
    /// A request (its body included) must complete within this, in milliseconds, or it is
    /// answered `request_timeout` (408) and its slot freed; operator requests are exempt.
    pub request_timeout_ms: u64,
    /// After a shutdown begins, how long open requests and streams may take to finish, in
    /// milliseconds; then the node stops serving them.
    pub shutdown_drain_ms: u64,
    /// Signed transfers whose payment ids the ledger remembers (the newest): a retry of one is
    /// answered with its first result; an older one's nonce is spent, so its retry is refused.
    pub transfer_ids_kept: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_request_bytes: 16 << 10,
            max_batch_request_bytes: 2 << 20,
            max_write_queue: 10_000,
            max_concurrent_requests: 1_024,
            max_websockets: 1_000,
            max_batch_commands: 1_000,
            max_page_size: 200,
            max_payment_lookup_entries: 10_000,
            max_accounts: 1_000_000,
            max_queued_payouts: 10_000,
            max_payout_batch: 100,
            max_payment_amount: infhub_core::Amount(1_000_000_000_000_000_000_000_000),
            max_withdrawal_expiry_blocks: 7_200,
            max_pending_challenges: 100_000,
            max_challenges_per_account: 4,
            max_transfers_per_request: 1_000,
            max_sessions: 100_000,
            max_sessions_per_account: 16,
            max_streams_per_account: 4,
            max_requests_in_flight_per_address: 256,
            registrations_per_hour: 10_000,
            registrations_per_hour_per_address: 100,
            writes_per_second_per_account: 1_000,
            max_connections_per_address: 1_024,
            header_read_timeout_ms: 10_000,
            request_timeout_ms: 30_000,
            shutdown_drain_ms: 10_000,
            transfer_ids_kept: 1_000_000,
        }
    }
}

/// A configuration problem, named.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file or a variable is not valid.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Defaults, then the TOML file (if any), then `INFHUB_*` variables from `env`.
    pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
                toml::from_str(&text).map_err(|e| ConfigError::Invalid(format!("{}: {e}", path.display())))?
            }
            None => Config::default(),
        };
        for (key, value) in env {
            config.set_env(&key, &value)?;
        }
        Ok(config)
    }

    fn set_env(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        fn parse<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, ConfigError>
        where
            T::Err: std::fmt::Display,
        {
            v.parse().map_err(|e| ConfigError::Invalid(format!("{key}={v}: {e}")))
        }
        match key {
            "INFHUB_LISTEN" => self.node.listen = value.into(),
            "INFHUB_DATA_DIR" => self.node.data_dir = value.into(),
            "INFHUB_OPERATOR_TOKEN" => self.node.operator_token = Secret(value.into()),
            "INFHUB_SEQUENCER_TOKEN" => self.node.sequencer_token = Secret(value.into()),
            "INFHUB_LOG" => self.node.log = value.into(),
            "INFHUB_RPC_URL" => self.chain.rpc_url = value.into(),
            "INFHUB_HUB_CONTRACT" => self.chain.hub_contract = parse(key, value)?,
            "INFHUB_HUB_KEY" => {
                self.chain.hub_key = Secret(
                    parse(key, value).map_err(|_| ConfigError::Invalid(format!("{key}: not a 32-byte hex key")))?,
                )
            }
            "INFHUB_START_BLOCK" => self.chain.start_block = parse(key, value)?,
            "INFHUB_CONFIRMATIONS" => self.chain.confirmations = parse(key, value)?,
            "INFHUB_POLL_INTERVAL_MS" => self.chain.poll_interval_ms = parse(key, value)?,
            "INFHUB_CHECKPOINT_INTERVAL_BLOCKS" => self.checkpoints.interval_blocks = parse(key, value)?,
            "INFHUB_STORE" => {
                self.store.kind = match value {
                    "file" => StoreKind::File,
                    "postgres" => StoreKind::Postgres,
                    _ => return Err(ConfigError::Invalid(format!("{key}={value}: give file or postgres"))),
                }
            }
            "INFHUB_POSTGRES_URL" => self.store.postgres_url = Secret(value.into()),
            "INFHUB_POSTGRES_SCHEMA" => self.store.postgres_schema = value.into(),
            "INFHUB_WRITER_NAME" => self.store.writer_name = value.into(),
            "INFHUB_WAIT_FOR_LEASE" => self.store.wait_for_lease = parse(key, value)?,
            _ => {}
        }
        Ok(())
    }

    /// The chain duties' settings, with the chain's point registry `point_registry`.
    pub fn duties(&self, point_registry: Address) -> infhub_hub::duties::DutiesConfig {
        let l = &self.liquidity;
        infhub_hub::duties::DutiesConfig {
            resend_after_blocks: self.node.resend_after_blocks,
            max_payout_batch: self.limits.max_payout_batch,
            realize: infhub_core::duties::RealizePolicy {
                when_free_reserve_below: l.realize_when_free_reserve_below,
                when_payer_reaches: l.realize_when_payer_reaches,
                max_per_tx: l.max_realizations_per_tx,
            },
            low_free_reserve_below: l.low_free_reserve_below,
            point_registry,
        }
    }

    /// The checkpoints' settings.
    pub fn checkpoints(&self) -> infhub_hub::checkpoints::CheckpointConfig {
        infhub_hub::checkpoints::CheckpointConfig {
            interval_blocks: self.checkpoints.interval_blocks,
            files_kept: self.checkpoints.files_kept,
            dishonest_understate_credit_of: self.checkpoints.dishonest_understate_credit_of,
            dishonest_invent_debit_of: self.checkpoints.dishonest_invent_debit_of,
        }
    }

    /// The rules of the links' settings (spec §5.18, §5.23).
    fn validate_links(&self) -> Result<(), ConfigError> {
        if self.node.link_fee_ppm > infhub_core::routing::FEE_PPM_UNIT {
            return Err(ConfigError::Invalid("node.link_fee_ppm must be at most 1000000".into()));
        }
        if self.node.split_collection_timeout_ms == 0 {
            return Err(ConfigError::Invalid("node.split_collection_timeout_ms must be at least 1".into()));
        }
        if self.node.max_forwards_per_link > crate::links::MAX_FORWARDS_PER_LINK {
            return Err(ConfigError::Invalid(format!(
                "node.max_forwards_per_link must be at most {}",
                crate::links::MAX_FORWARDS_PER_LINK
            )));
        }
        if self.node.link_watch_interval_ms == 0 {
            return Err(ConfigError::Invalid("node.link_watch_interval_ms must be at least 1".into()));
        }
        if self.node.webhook_interval_ms == 0 {
            return Err(ConfigError::Invalid("node.webhook_interval_ms must be at least 1".into()));
        }
        Ok(())
    }

    /// Checks every value that has a rule.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: &str| Err(ConfigError::Invalid(m.to_string()));
        if !self.node.sequencer_listen.is_empty() && self.node.sequencer_token.0.len() < 16 {
            return bad("node.sequencer_token must be at least 16 characters with node.sequencer_listen (INFHUB_SEQUENCER_TOKEN)");
        }
        if self.node.operator_token_grace_secs > MAX_OPERATOR_TOKEN_GRACE_SECS {
            return bad("node.operator_token_grace_secs must be at most 604800 (a week)");
        }
        if self.node.operator_token.0.len() < 16 {
            return bad("node.operator_token must be at least 16 characters (INFHUB_OPERATOR_TOKEN)");
        }
        if self.chain.hub_contract == Address::ZERO {
            return bad("chain.hub_contract must be set (INFHUB_HUB_CONTRACT)");
        }
        if self.chain.hub_key.0 == B256::ZERO {
            return bad("chain.hub_key must be set (INFHUB_HUB_KEY)");
        }
        if let Err(e) = crate::towers::check_list(&self.towers.operator_towers) {
            return bad(&format!("towers.operator_towers: {e}"));
        }
        if self.chain.confirmations == 0 {
            return bad("chain.confirmations must be at least 1");
        }
        if self.checkpoints.files_kept == 0 {
            return bad("checkpoints.files_kept must be at least 1");
        }
        if self.node.resend_after_blocks == 0 {
            return bad("node.resend_after_blocks must be at least 1");
        }
        self.validate_links()?;
        if self.store.kind == StoreKind::Postgres {
            if self.store.postgres_url.0.is_empty() {
                return bad("store.postgres_url must be set for the postgres store (INFHUB_POSTGRES_URL)");
            }
            if self.store.lease_ms < infhub_pg::lease::MIN_LEASE_MS {
                return Err(ConfigError::Invalid(format!(
                    "store.lease_ms must be at least {}",
                    infhub_pg::lease::MIN_LEASE_MS
                )));
            }
            let readers = self.store.history_read_connections;
            if readers == 0 || readers > infhub_pg::MAX_READ_CONNECTIONS {
                return Err(ConfigError::Invalid(format!(
                    "store.history_read_connections must be in 1..={}",
                    infhub_pg::MAX_READ_CONNECTIONS
                )));
            }
            if let Err(e) = infhub_pg::check_schema(&self.store.postgres_schema) {
                return Err(ConfigError::Invalid(format!("store.postgres_schema: {e}")));
            }
        }
        let max_realize = infhub_core::contract::MAX_REALIZE_BATCH;
        if self.liquidity.max_realizations_per_tx == 0 || self.liquidity.max_realizations_per_tx > max_realize {
            return Err(ConfigError::Invalid(format!(
                "liquidity.max_realizations_per_tx must be in 1..={max_realize} (the contract's MAX_REALIZE_BATCH)"
            )));
        }
        if self.chain.poll_interval_ms == 0 || self.node.payout_interval_ms == 0 {
            return bad("poll and payout intervals must be positive");
        }
        if self.node.group_commit_wait_micros > MAX_GROUP_COMMIT_WAIT_MICROS {
            return Err(ConfigError::Invalid(format!(
                "node.group_commit_wait_micros must be at most {MAX_GROUP_COMMIT_WAIT_MICROS}"
            )));
        }
        let max_payout = infhub_core::contract::MAX_PAYOUT_BATCH;
        if self.limits.max_payout_batch == 0 || self.limits.max_payout_batch > max_payout {
            return Err(ConfigError::Invalid(format!(
                "limits.max_payout_batch must be in 1..={max_payout} (the contract's MAX_PAYOUT_BATCH)"
            )));
        }
        let l = &self.limits;
        for (name, v) in [
            ("max_request_bytes", l.max_request_bytes),
            ("max_batch_request_bytes", l.max_batch_request_bytes),
            ("max_write_queue", l.max_write_queue),
            ("max_concurrent_requests", l.max_concurrent_requests),
            ("max_websockets", l.max_websockets),
            ("max_batch_commands", l.max_batch_commands),
            ("max_page_size", l.max_page_size),
            ("max_payment_lookup_entries", l.max_payment_lookup_entries),
            ("max_transfers_per_request", l.max_transfers_per_request),
            ("max_pending_challenges", l.max_pending_challenges),
            ("max_sessions", l.max_sessions),
            ("max_challenges_per_account", l.max_challenges_per_account),
            ("max_sessions_per_account", l.max_sessions_per_account),
            ("max_streams_per_account", l.max_streams_per_account),
            ("max_requests_in_flight_per_address", l.max_requests_in_flight_per_address),
            ("registrations_per_hour", l.registrations_per_hour as usize),
            ("registrations_per_hour_per_address", l.registrations_per_hour_per_address as usize),
            ("writes_per_second_per_account", l.writes_per_second_per_account as usize),
            ("max_connections_per_address", l.max_connections_per_address),
            ("header_read_timeout_ms", l.header_read_timeout_ms as usize),
            ("request_timeout_ms", l.request_timeout_ms as usize),
            ("transfer_ids_kept", l.transfer_ids_kept),
        ] {
            if v == 0 {
                return Err(ConfigError::Invalid(format!("limits.{name} must be positive")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_environment_override_defaults() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("infhub.toml");
        std::fs::write(&path, "[chain]\nconfirmations = 3\nrpc_url = \"ws://x:1\"\n[limits]\nmax_page_size = 7\n")
            .expect("write");
        let env = vec![("INFHUB_CONFIRMATIONS".to_string(), "5".to_string()), ("PATH".into(), "/bin".into())];
        let c = Config::load(Some(&path), env).expect("load");
        assert_eq!(c.chain.confirmations, 5);
        assert_eq!(c.chain.rpc_url, "ws://x:1");
        assert_eq!(c.limits.max_page_size, 7);
        assert_eq!(c.limits.max_write_queue, Limits::default().max_write_queue);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_by_name() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("infhub.toml");
        std::fs::write(&path, "[chain]\nconfirmatons = 3\n").expect("write");
        let err = Config::load(Some(&path), vec![]).expect_err("typo");
        assert!(err.to_string().contains("confirmatons"), "{err}");
        let err = Config::load(None, vec![("INFHUB_CONFIRMATIONS".into(), "many".into())]).expect_err("nan");
        assert!(err.to_string().contains("INFHUB_CONFIRMATIONS"), "{err}");
        let err = Config::default().validate().expect_err("no token");
        assert!(err.to_string().contains("operator_token"), "{err}");
        let err = Config::load(None, vec![("INFHUB_HUB_KEY".into(), "0xdeadbeef-secret".into())]).expect_err("short");
        assert!(!err.to_string().contains("deadbeef"), "a refused key is not echoed: {err}");
    }

    /// The hub's key and the operator token never reach a log line through `Debug`.
    #[test]
    fn secrets_stay_out_of_debug_output() {
        let mut c = Config::default();
        c.chain.hub_key = Secret(B256::repeat_byte(0xab));
        c.node.operator_token = Secret("operator-token-9f8e7d6c".into());
        let printed = format!("{c:?} {c:#?}");
        assert!(!printed.contains("abababab") && !printed.contains("9f8e7d6c"), "{printed}");
        assert!(printed.contains("<redacted>"), "{printed}");
        let round_trip: Config = toml::from_str(&toml::to_string(&c).expect("toml")).expect("parse");
        assert_eq!(round_trip.chain.hub_key, c.chain.hub_key, "the file holds the bare value");
    }
}
