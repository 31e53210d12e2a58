//! The hub's checkpoints (spec §5.16): the public figures of the newest ones, and a user's
//! leaves with their paths, which her wallet checks against the root the contract holds.

use super::*;
use infhub_core::ledger::CheckpointHeader;
use infhub_hub::checkpoints::{read_stored, FsCheckpointStorage};
use infhub_ledger::fs::OsFs;

fn header_json(h: &CheckpointHeader) -> Value {
    let c = &h.checkpoint;
    json!({
        "id": h.id,
        "root": c.root,
        "totalLiability": c.total_liability.to_string(),
        "ledgerSeq": c.ledger_seq,
        "chainBlock": c.chain_block,
        "inflowsThrough": c.inflows_through.to_string(),
    })
}

/// `GET /v1/checkpoints`: public. The newest checkpoint confirmed on chain, the one built and
/// waiting for the chain, how often they come, and the checkpoint a complaint proved wrong if
/// the contract has halted the hub.
pub(super) async fn checkpoints(State(api): State<Api>) -> Json<Value> {
    let (posted, pending, inflows, block, halted) = {
        let st = api.node.read();
        let l = st.ledger();
        let c = &l.checkpoints;
        (c.posted, c.pending, c.liability_inflows, l.block, c.halted_at)
    };
    let shelf = api.node.checkpoints();
    Json(json!({
        "posted": posted.as_ref().map(header_json),
        "pending": pending.as_ref().map(header_json),
        "intervalBlocks": api.node.config.checkpoints.interval_blocks,
        "haltedAtCheckpoint": halted,
        "liabilityInflows": inflows,
        "confirmedBlock": block,
        "builtSinceStart": shelf.built_count,
        "lastError": shelf.last_error,
    }))
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
) -> Result<Json<Value>, ApiError> {
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
    Ok(Json(json!({
        "id": id,
        "root": root.hash,
        "totalLiability": root.sum.to_string(),
        "chainId": d.chain_id,
        "contract": d.contract,
        "proofs": built.proofs_of(account),
    })))
}
