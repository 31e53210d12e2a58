//! The PostgreSQL store against a real PostgreSQL server the tests start themselves, held to the
//! same rules as the file store: the durable ledger on it recovers exactly the acknowledged
//! state, a restart replays only the tail after the newest snapshot, the history keeps every
//! record, a second writer cannot interleave its batches, and a schema of another format is
//! refused by name. The same scenario also runs on the file store, so the two agree.

mod conformance;
