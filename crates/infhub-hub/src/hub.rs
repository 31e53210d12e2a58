//! A whole hub in one value, driven step by step: the ledger and its history, and the chain
//! duties. The simulator runs this (on its simulated disk, chain and broadcaster), as do the
//! shell's own tests; the node runs the same two parts on threads of its own.
//!
//! Its chain seams must answer at once (an in-process chain, a recording broadcaster): `tick`
//! polls their futures once and treats one that waits as a bug.

use crate::broadcast::Broadcaster;
use crate::duties::{ChainDuties, DutiesConfig, LedgerAccess};
use crate::ledger::{Commit, CommitError, HubLedger, HubLedgerConfig, OpenError};
use crate::notice::Notice;
use infhub_chain::source::ChainSource;
use infhub_chain::watcher::{Watcher, WatcherConfig};
use infhub_chain::ChainError;
use infhub_core::channel::CheckedDebit;
use infhub_core::ledger::{Command, Ledger, LedgerParams, Outcome};
use infhub_core::{Error, PrivateKey};
use infhub_ledger::fs::{Fs, SharedFs};
use std::future::Future;
use std::task::{Context, Poll, Waker};

/// Runs a future that never waits (in-process seams answer at once) to completion.
pub fn run_ready<F: Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("an in-process seam waited"),
    }
}

/// Why a hub could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Its state could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The watcher's configuration.
    #[error(transparent)]
    Chain(#[from] ChainError),
}

/// The hub's storage failed: the process must stop and reopen (a crash, in the simulator).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("hub down: {0}")]
pub struct HubDown(pub String);

/// A hub: its state and its chain duties.
pub struct Hub<F: SharedFs, C: ChainSource, B: Broadcaster> {
    /// The ledger and its history.
    pub ledger: HubLedger<F>,
    /// The chain duties.
    pub duties: ChainDuties<C, B>,
}

impl<F: SharedFs, C: ChainSource, B: Broadcaster> Hub<F, C, B> {
    /// Opens the hub's state from `fs` and starts following `source` from the ledger's
    /// confirmed block.
    #[allow(clippy::too_many_arguments)] // the hub's three seams and their settings
    pub fn start(
        fs: F,
        config: &HubLedgerConfig,
        params: LedgerParams,
        key: PrivateKey,
        source: C,
        watcher: WatcherConfig,
        broadcaster: B,
        duties: DutiesConfig,
    ) -> Result<Hub<F, C, B>, StartError> {
        assert_eq!(broadcaster.address(), key.address(), "the broadcaster must send with the hub key");
        let ledger = HubLedger::open(fs, config, params, key)?;
        let watcher = Watcher::new(source, watcher, ledger.ledger().block)?;
        let contract = params.domain.verifying_contract;
        Ok(Hub { ledger, duties: ChainDuties::new(watcher, broadcaster, contract, duties) })
    }

    /// Commits commands from the hub's users as one group commit.
    pub fn execute(&mut self, commands: Vec<(Command, Option<CheckedDebit>)>) -> Result<Commit, HubDown> {
        self.ledger.commit(commands, true).map_err(|CommitError::StorageFailed(e)| HubDown(e))
    }

    /// One round of the chain duties ([`ChainDuties::tick`]): returns the notices of what it
    /// committed (confirmed events and their channel effects) and of what it saw on chain. Err
    /// if the ledger's storage failed on the way.
    pub fn tick(&mut self, take_payouts: bool) -> Result<Vec<Notice>, HubDown> {
        let mut access = Collecting { ledger: &mut self.ledger, notices: Vec::new() };
        let seen = run_ready(self.duties.tick(&mut access, take_payouts));
        let mut notices = access.notices;
        notices.extend(seen);
        match self.ledger.stopped() {
            Some(reason) => Err(HubDown(reason.to_string())),
            None => Ok(notices),
        }
    }
}

/// The ledger as the duties reach it in process, keeping the notices of what they commit.
struct Collecting<'a, F: Fs + Clone + Send> {
    ledger: &'a mut HubLedger<F>,
    notices: Vec<Notice>,
}

impl<F: Fs + Clone + Send> LedgerAccess for Collecting<'_, F> {
    fn commit(
        &mut self,
        commands: Vec<Command>,
    ) -> impl Future<Output = Result<Vec<Result<Outcome, Error>>, CommitError>> + Send {
        let done = self.ledger.commit(commands.into_iter().map(|c| (c, None)).collect(), true).map(|c| {
            self.notices.extend(c.notices);
            c.results.into_iter().map(|(r, _)| r).collect()
        });
        std::future::ready(done)
    }

    fn read<R>(&self, f: impl FnOnce(&Ledger) -> R) -> R {
        f(self.ledger.ledger())
    }
}
