//! The seam for the hub's own transactions: a [`Broadcaster`] sends calls to the hub contract
//! with the hub key and reports, once each, what became of them.
//!
//! The real one is [`ContractSender`], over the chain crate's `TxSender` (nonces, fees,
//! replacements). [`RecordingBroadcaster`] keeps what it is given for the caller to inspect
//! and to deliver: tests read what the shell sent, and the simulator hands the calls to its
//! chain and reports back what was mined. Nothing about a duty's correctness depends on the
//! broadcaster keeping anything: the duties are sent again from the ledger's state.

use infhub_chain::sender::{SentTx, TxOutcome, TxSender};
use infhub_chain::ChainError;
use infhub_core::{Address, B256};
use std::collections::VecDeque;
use std::future::Future;

/// Sends the hub's transactions to its contract.
pub trait Broadcaster {
    /// The hub key's address.
    fn address(&self) -> Address;
    /// Signs and sends a call to `to` (the hub contract, or the token for an approval) with
    /// `input` as its data.
    fn send(&mut self, to: Address, input: Vec<u8>) -> impl Future<Output = Result<SentTx, ChainError>> + Send;
    /// What became of transactions sent earlier: each is reported once, when mined (or when
    /// its nonce was taken by another transaction of the key).
    fn poll(&mut self) -> impl Future<Output = Result<Vec<TxOutcome>, ChainError>> + Send;
}

/// The real broadcaster: the hub key's [`TxSender`].
#[derive(Debug)]
pub struct ContractSender {
    sender: TxSender,
}

impl ContractSender {
    /// Sends through `sender`.
    pub fn new(sender: TxSender) -> ContractSender {
        ContractSender { sender }
    }

    /// The sender (for reads through its provider).
    pub fn sender(&self) -> &TxSender {
        &self.sender
    }
}

impl Broadcaster for ContractSender {
    fn address(&self) -> Address {
        self.sender.address()
    }

    async fn send(&mut self, to: Address, input: Vec<u8>) -> Result<SentTx, ChainError> {
        self.sender.send(alloy::primitives::TxKind::Call(to), input.into()).await
    }

    async fn poll(&mut self) -> Result<Vec<TxOutcome>, ChainError> {
        self.sender.poll().await
    }
}

/// A transaction the recording broadcaster was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedTx {
    /// Its nonce: the handle outcomes are reported by.
    pub nonce: u64,
    /// Its made-up hash (the nonce and data hashed).
    pub hash: B256,
    /// The called contract.
    pub to: Address,
    /// The call data.
    pub input: Vec<u8>,
}

/// Keeps every transaction it is given; the caller takes them from its outbox to deliver (or
/// not), and reports outcomes with [`RecordingBroadcaster::report`].
#[derive(Debug)]
pub struct RecordingBroadcaster {
    address: Address,
    next_nonce: u64,
    sent: Vec<RecordedTx>,
    outbox: VecDeque<RecordedTx>,
    outcomes: Vec<TxOutcome>,
    refusals: VecDeque<ChainError>,
}

impl RecordingBroadcaster {
    /// A broadcaster for the hub key at `address`.
    pub fn new(address: Address) -> RecordingBroadcaster {
        RecordingBroadcaster {
            address,
            next_nonce: 0,
            sent: Vec::new(),
            outbox: VecDeque::new(),
            outcomes: Vec::new(),
            refusals: VecDeque::new(),
        }
    }

    /// Every transaction sent so far, in order.
    pub fn sent(&self) -> &[RecordedTx] {
        &self.sent
    }

    /// The transactions sent since the last call, to deliver.
    pub fn take_outbox(&mut self) -> Vec<RecordedTx> {
        self.outbox.drain(..).collect()
    }

    /// Reports an outcome; the next `poll` returns it.
    pub fn report(&mut self, outcome: TxOutcome) {
        self.outcomes.push(outcome);
    }

    /// Takes back a transaction not yet taken from the outbox (it is never delivered).
    pub fn discard(&mut self, nonce: u64) {
        self.outbox.retain(|t| t.nonce != nonce);
    }

    /// Refuses the next `send` with `error` (as a node refuses a transaction).
    pub fn refuse_next(&mut self, error: ChainError) {
        self.refusals.push_back(error);
    }
}

impl Broadcaster for RecordingBroadcaster {
    fn address(&self) -> Address {
        self.address
    }

    async fn send(&mut self, to: Address, input: Vec<u8>) -> Result<SentTx, ChainError> {
        if let Some(e) = self.refusals.pop_front() {
            return Err(e);
        }
        let nonce = self.next_nonce;
        self.next_nonce += 1;
        let mut preimage = nonce.to_be_bytes().to_vec();
        preimage.extend_from_slice(&input);
        let hash = alloy::primitives::keccak256(preimage);
        let tx = RecordedTx { nonce, hash, to, input };
        self.sent.push(tx.clone());
        self.outbox.push_back(tx);
        Ok(SentTx { nonce, hash })
    }

    async fn poll(&mut self) -> Result<Vec<TxOutcome>, ChainError> {
        Ok(std::mem::take(&mut self.outcomes))
    }
}
