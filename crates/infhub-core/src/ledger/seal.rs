//! Proof sealing: the credits and receipts a batch of commands issues are signed together, once,
//! as the leaves of one Merkle tree (spec §4), and each outcome gets its path.

use super::{Command, CustodialResult, Ledger, Outcome};
use crate::merkle::{batch_digest, MerklePath, MerkleTree};
use crate::messages::{Eip712Message, SignedCredit, SignedReceipt};
use crate::signature::{PrivateKey, Signature};
use crate::{Domain, Error};
use alloy_primitives::{Address, B256};

/// Calls `f` with every hub-signed proof an outcome carries (mutably, to fill in its seal).
pub fn for_each_proof(outcome: &mut Outcome, f: &mut dyn FnMut(ProofRef<'_>)) {
    match outcome {
        Outcome::Paid { receipt, credit, .. } => {
            f(ProofRef::Receipt(receipt));
            if let Some(c) = credit {
                f(ProofRef::Credit(c));
            }
        }
        Outcome::Credited(c) | Outcome::Converted { credit: c, .. } | Outcome::Refunded { refund: c, .. } => {
            f(ProofRef::Credit(c))
        }
        Outcome::CustodialTransfers(results) => {
            for r in results {
                if let CustodialResult::Moved { credit: Some(c) } = r {
                    f(ProofRef::Credit(c));
                }
            }
        }
        Outcome::DebitLockApplied { receipt, .. } => f(ProofRef::Receipt(receipt)),
        Outcome::CreditLockIssued { credit, .. } => f(ProofRef::Credit(credit)),
        Outcome::LockedTransferApplied { receipt, payee_credit } => {
            f(ProofRef::Receipt(receipt));
            f(ProofRef::Credit(payee_credit));
        }
        // Listed, not a wildcard: a new outcome that carries a proof must be added above.
        Outcome::Duplicate { .. }
        | Outcome::WithdrawalCoSigned { .. }
        | Outcome::Earmarked
        | Outcome::Sealed { .. }
        | Outcome::PayoutBatch(_)
        | Outcome::Applied(_)
        | Outcome::CustodialOpened
        | Outcome::CustodialCredited
        | Outcome::CustodialPayoutQueued(_)
        | Outcome::LockScalarNoted { .. }
        | Outcome::CheckpointRecorded
        | Outcome::CustodialKeyRotated
        | Outcome::FrozenSet { .. } => {}
    }
}

/// One proof inside an outcome.
pub enum ProofRef<'a> {
    /// A payee's credit.
    Credit(&'a mut SignedCredit),
    /// A payer's receipt.
    Receipt(&'a mut SignedReceipt),
}

impl ProofRef<'_> {
    /// The digest the batch tree holds for it.
    pub fn digest(&self, domain: &Domain) -> B256 {
        match self {
            ProofRef::Credit(c) => c.message.digest(domain),
            ProofRef::Receipt(r) => r.message.digest(domain),
        }
    }

    pub(super) fn set(&mut self, signature: Signature, path: MerklePath) {
        match self {
            ProofRef::Credit(c) => (c.signature, c.path) = (signature, path),
            ProofRef::Receipt(r) => (r.signature, r.path) = (signature, path),
        }
    }
}

/// Fills the batch signature and paths into the outcomes of one sealed batch: `outcomes` are
/// the outcomes of every command from the previous seal up to `sealed` (an
/// [`Outcome::Sealed`]). Rebuilds the tree from their proofs, so the same call serves a live
/// batch and a batch read back from the log. Err if the proofs do not rebuild the sealed root.
pub fn fill_proofs(domain: &Domain, outcomes: &mut [&mut Outcome], sealed: &Outcome) -> Result<(), String> {
    let Outcome::Sealed { root, signature, .. } = sealed else {
        return Err(format!("not a seal: {sealed:?}"));
    };
    let mut leaves = Vec::new();
    for o in outcomes.iter_mut() {
        for_each_proof(o, &mut |p| leaves.push(p.digest(domain)));
    }
    if leaves.is_empty() {
        return Err("a seal without proofs".into());
    }
    let tree = MerkleTree::new(leaves.clone());
    if tree.root() != *root {
        return Err(format!("the batch's proofs rebuild root {}, the seal signed {root}", tree.root()));
    }
    // Same walk, same order: the digests computed above, without hashing each proof again.
    let mut digests = leaves.iter();
    for o in outcomes.iter_mut() {
        for_each_proof(o, &mut |mut p| {
            let digest = *digests.next().expect("the same proofs as the first walk");
            p.set(*signature, tree.path(digest).expect("a leaf of this tree"));
        });
    }
    Ok(())
}

/// A credit or receipt issued but not yet signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct UnsealedProof {
    pub(super) digest: B256,
    /// Which proof it is (cheap to compare when the seal is filled into the outcomes).
    pub(super) key: ProofKey,
}

/// What identifies a proof within a batch without hashing it: a credit by its channel and
/// nonce, a receipt by its payer and the debit's nonce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ProofKey {
    Credit { user: Address, nonce: u64 },
    Receipt { payer: Address, debit_nonce: u64 },
}

impl ProofKey {
    pub(super) fn of(proof: &ProofRef<'_>) -> ProofKey {
        match proof {
            ProofRef::Credit(c) => ProofKey::Credit { user: c.message.user, nonce: c.message.nonce },
            ProofRef::Receipt(r) => ProofKey::Receipt { payer: r.message.payer, debit_nonce: r.message.debit_nonce },
        }
    }
}

/// A batch just sealed by the live ledger: its tree and its proofs' digests in the order they
/// were issued, so the writer fills the seal into its outcomes without hashing any proof
/// again (a batch read back from the log goes through [`fill_proofs`], which rehashes).
#[derive(Clone, Debug)]
pub struct SealedBatch {
    tree: MerkleTree,
    signature: Signature,
    proofs: Vec<UnsealedProof>,
}

impl SealedBatch {
    /// Fills the signature and paths into `outcomes`: the outcomes of the commands of this
    /// batch, in order. Panics if they carry other proofs than the batch issued (a bug).
    pub fn fill(&self, outcomes: &mut [&mut Outcome]) {
        let mut issued = self.proofs.iter();
        for o in outcomes.iter_mut() {
            for_each_proof(o, &mut |mut p| {
                let u = issued.next().expect("an outcome carries a proof its batch did not issue");
                assert_eq!(ProofKey::of(&p), u.key, "outcomes walked in another order than issued");
                p.set(self.signature, self.tree.path(u.digest).expect("every issued digest is a leaf"));
            });
        }
        assert!(issued.next().is_none(), "a proof of the batch is missing from its outcomes");
    }
}
impl Ledger {
    /// Applies one command and, if it issued proofs, seals them at once and fills them in
    /// (a batch of one command: for tests and tools; the node seals once per group commit).
    /// Fills both ways, from the live batch and by rehashing as from the log, and asserts
    /// they agree.
    pub fn apply_sealed(&mut self, hub_key: &PrivateKey, command: Command) -> Result<Outcome, Error> {
        let mut outcome = self.apply(hub_key, command)?;
        if !self.unsealed.is_empty() {
            let mut rehashed = outcome.clone();
            let (sealed, batch) = self.seal_batch(hub_key)?;
            batch.fill(&mut [&mut outcome]);
            fill_proofs(&self.params.domain, &mut [&mut rehashed], &sealed)
                .expect("a batch's own proofs rebuild its root");
            assert_eq!(outcome, rehashed, "the live and the rehashed fill disagree");
        }
        Ok(outcome)
    }

    /// How many proofs wait for the next seal.
    pub fn unsealed_proofs(&self) -> usize {
        self.unsealed.len()
    }

    /// The hub's receipt of the debit `m` (of EIP-712 digest `digest`), queued for the next seal.
    pub(super) fn issue_receipt(&mut self, m: &crate::messages::Debit, digest: B256) -> SignedReceipt {
        let receipt = crate::messages::HubSigned::unsealed(crate::messages::Receipt {
            payer: m.user,
            epoch: m.epoch,
            debit_nonce: m.nonce,
            payment_id: m.payment_id,
            debit_digest: digest,
        });
        self.unsealed.push(UnsealedProof {
            digest: receipt.message.digest(&self.params.domain),
            key: ProofKey::Receipt { payer: m.user, debit_nonce: m.nonce },
        });
        receipt
    }

    pub(super) fn note_unsealed_credit(&mut self, credit: &SignedCredit) {
        let m = credit.message;
        self.unsealed.push(UnsealedProof {
            digest: m.digest(&self.params.domain),
            key: ProofKey::Credit { user: m.user, nonce: m.nonce },
        });
    }

    /// Signs the waiting proofs as one batch and gives each channel's stored newest credit its
    /// proof. The outcomes already returned get theirs from [`fill_proofs`].
    pub(super) fn seal(&mut self, hub_key: &PrivateKey) -> Result<Outcome, Error> {
        self.seal_batch(hub_key).map(|(outcome, _)| outcome)
    }

    /// [`Command::SealProofs`], also returning the batch so the caller can fill the seal into
    /// the outcomes it holds with [`SealedBatch::fill`] (the same as applying the command).
    pub fn seal_batch(&mut self, hub_key: &PrivateKey) -> Result<(Outcome, SealedBatch), Error> {
        assert_eq!(hub_key.address(), self.params.hub, "ledger driven with another key than the hub's");
        if self.unsealed.is_empty() {
            return Err(Error::NothingToSeal);
        }
        let proofs = std::mem::take(&mut self.unsealed);
        let tree = MerkleTree::new(proofs.iter().map(|u| u.digest).collect());
        let root = tree.root();
        let signature = hub_key.sign(batch_digest(root, &self.params.domain));
        for u in &proofs {
            let ProofKey::Credit { user, nonce } = u.key else { continue };
            let acct = self.accounts.get_mut(&user).expect("a credit was issued to a known account");
            // A later credit of the same batch superseded this one in the channel.
            if let Some(c) = acct.channel.credit.as_mut().filter(|c| c.message.nonce == nonce) {
                c.signature = signature;
                c.path = tree.path(u.digest).expect("every unsealed digest is a leaf");
            }
        }
        self.take_seq();
        let count = u32::try_from(tree.leaf_count()).expect("batches are far below 2^32 leaves");
        Ok((Outcome::Sealed { root, signature, proofs: count }, SealedBatch { tree, signature, proofs }))
    }
}
