//! The hub's checkpoints (spec §5.16): the public figures of the newest ones, and a user's
//! leaves with their paths, which her wallet checks against the root the contract holds.

use super::*;
use infhub_core::ledger::CheckpointHeader;
use infhub_hub::checkpoints::{read_stored, FsCheckpointStorage};
use infhub_ledger::fs::OsFs;

/// A checkpoint's public figures.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct CheckpointView {
    id: u64,
    #[schemars(with = "infhub_core::schema::WordSchema")]
    root: B256,
    /// The tree's sum (decimal).
    #[schemars(regex(pattern = "^[0-9]+$"))]
    total_liability: String,
    ledger_seq: u64,
    chain_block: u64,
    /// `liabilityInflowsTotal` as of its block (decimal).
    #[schemars(regex(pattern = "^[0-9]+$"))]
    inflows_through: String,
}

fn header_view(h: &CheckpointHeader) -> CheckpointView {
    let c = &h.checkpoint;
    CheckpointView {
        id: h.id,
        root: c.root,
        total_liability: c.total_liability.to_string(),
        ledger_seq: c.ledger_seq,
        chain_block: c.chain_block,
        inflows_through: c.inflows_through.to_string(),
    }
}

/// The hub's checkpoints (`GET /v1/checkpoints`).
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct CheckpointsAnswer {
    /// The newest checkpoint confirmed on chain.
    posted: Option<CheckpointView>,
    /// The one built and waiting for the chain.
    pending: Option<CheckpointView>,
    interval_blocks: u64,
    /// The checkpoint a complaint proved wrong, if the contract halted the hub.
    halted_at_checkpoint: Option<u64>,
    liability_inflows: Amount,
    confirmed_block: u64,
    built_since_start: u64,
    last_error: Option<String>,
}

/// An account's leaves in one checkpoint, with their paths.
#[derive(Serialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ProofsAnswer {
    id: u64,
    #[schemars(with = "infhub_core::schema::WordSchema")]
    root: B256,
    #[schemars(regex(pattern = "^[0-9]+$"))]
    total_liability: String,
    chain_id: u64,
    #[schemars(with = "infhub_core::schema::AddressSchema")]
    contract: Address,
    proofs: Vec<infhub_core::checkpoint::LeafProof>,
}

/// `GET /v1/checkpoints`: public. The newest checkpoint confirmed on chain, the one built and
/// waiting for the chain, how often they come, and the checkpoint a complaint proved wrong if
/// the contract has halted the hub.
pub(super) async fn checkpoints(State(api): State<Api>) -> Json<CheckpointsAnswer> {
    let (posted, pending, inflows, block, halted) = {
        let st = api.node.read();
        let l = st.ledger();
        let c = &l.checkpoints;
        (c.posted, c.pending, c.liability_inflows, l.block, c.halted_at)
    };
    let shelf = api.node.checkpoints();
    Json(CheckpointsAnswer {
        posted: posted.as_ref().map(header_view),
        pending: pending.as_ref().map(header_view),
        interval_blocks: api.node.config.checkpoints.interval_blocks,
        halted_at_checkpoint: halted,
        liability_inflows: inflows,
        confirmed_block: block,
        built_since_start: shelf.built_count,
        last_error: shelf.last_error.clone(),
    })
}

#[derive(Deserialize)]
pub(super) struct RootQuery {
    root: Option<B256>,
}

/// `GET /v1/checkpoints/{id}/proofs/{account}?root=`: the account's leaves in checkpoint `id`
/// with their paths (its own session, or the operator). `root` (the contract's, which the
/// wallet reads) picks the build the chain took if the hub built that id twice. The two newest
/// checkpoints are in memory; older ones are read back from their files.
pub(super) async fn checkpoint_proofs(
    State(api): State<Api>,
    headers: HeaderMap,
    Path((id, account)): Path<(u64, Address)>,
    Query(q): Query<RootQuery>,
) -> Result<Json<ProofsAnswer>, ApiError> {
    api.may_read(&headers, &account)?;
    let unknown = || ApiError::new(NodeError::UnknownCheckpoint, format!("checkpoint {id} is not at hand"));
    let in_memory = api.node.checkpoints().find(id, q.root);
    let built = match in_memory {
        Some(b) => b,
        None => {
            let dir = api.node.config.node.data_dir.join("checkpoints");
            let read = tokio::task::spawn_blocking(move || {
                let storage = FsCheckpointStorage::new(OsFs, dir);
                read_stored(&storage, id, q.root)
            });
            let stored = read.await.map_err(|e| ApiError::new(NodeError::InternalError, e.to_string()))?;
            let stored = stored.map_err(|e| ApiError::new(NodeError::HistoryUnavailable, e))?;
            Arc::new(stored.ok_or_else(unknown)?)
        }
    };
    let root = built.root();
    let d = built.domain;
    Ok(Json(ProofsAnswer {
        id,
        root: root.hash,
        total_liability: root.sum.to_string(),
        chain_id: d.chain_id,
        contract: d.contract,
        proofs: built.proofs_of(account),
    }))
}
