//! Durable storage for programme journals.
//!
//! A [`Store`] keeps, per programme, the journal entries (their [`Entry::encode`] bytes, the
//! request id and the request fingerprint), the latest checkpoint (a ledger snapshot and the
//! head it was taken at) and the server's API keys. The [`crate::engine::Engine`] decides
//! entries with `points-core` and hands each batch to [`Store::append`], which must write
//! all of it in one transaction, or none of it.
//!
//! Three implementations: [`memory::MemoryStore`] (tests, no durability),
//! [`sqlite::SqliteStore`] (embedded, one file in a data directory) and
//! [`postgres::PostgresStore`] (shared by several server processes).

#[cfg(feature = "fault-injection")]
pub mod faulty;
pub mod memory;
pub mod postgres;
pub mod sqlite;

use crate::engine::ApiKeyRecord;
use points_core::checkpoint::SignedCheckpoint;
use points_core::{Entry, EntryId, Hash, ProgramId};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};

/// The most entries [`Store::lock`] reads with the lock; a writer further behind reads the
/// rest page by page.
pub const LOCK_PAGE: usize = 1024;

/// What [`Store::lock`] found under the lock.
#[derive(Debug)]
pub struct Locked {
    /// The stored journal's next sequence.
    pub next: u64,
    /// Stored entries from the caller's `from` on, in order, at most [`LOCK_PAGE`].
    pub entries: Vec<StoredEntry>,
}

/// The hash of the stored entry at `sequence`, from the last [`Entry::ENCODED_HASH_BYTES`]
/// bytes of its stored form, which a store's query cut off; anything else is corrupt.
pub(crate) fn hash_from_tail(sequence: u64, tail: &[u8]) -> StoreResult<Hash> {
    match Entry::hash_of_encoded(tail) {
        Some(hash) if tail.len() == Entry::ENCODED_HASH_BYTES => Ok(hash),
        _ => Err(StoreError::Corrupt {
            sequence,
            message: format!("stored entry of {} bytes has no hash", tail.len()),
        }),
    }
}

/// A boxed, sendable future, so that [`Store`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Another writer (another server process) advanced the programme's journal first.
    #[error("another writer advanced the journal")]
    Conflict,
    /// A stored entry cannot be read back.
    #[error("journal entry {sequence} is corrupt: {message}")]
    Corrupt {
        /// The entry at fault.
        sequence: u64,
        /// What is wrong.
        message: String,
    },
    /// The storage cannot be reached or refused the operation (I/O error, disk full, ...).
    #[error("{0}")]
    Unavailable(String),
}

/// Results of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// A journal entry as stored: the entry and the fingerprint of the request that made it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEntry {
    /// The entry.
    pub entry: Entry,
    /// [`points_core::Ledger::request_fingerprint`] of the request (zero for the genesis),
    /// stored as 8 little-endian bytes.
    pub fingerprint: u64,
}

/// A ledger snapshot taken after `next_sequence` entries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The number of entries the snapshot covers (the next entry's sequence).
    pub next_sequence: u64,
    /// The hash of entry `next_sequence - 1`.
    pub head_hash: Hash,
    /// [`points_core::Ledger::snapshot`] bytes.
    pub snapshot: Vec<u8>,
}

/// Produces a checkpoint's snapshot: called once with a sink, it hands the sink the
/// snapshot's bytes in order, a piece at a time (see [`Store::put_checkpoint_streamed`]).
pub type EncodeSnapshot<'a> = dyn FnMut(&mut dyn FnMut(&[u8])) + 'a;

/// Durable storage for journals, checkpoints and API keys.
///
/// Every method may be called concurrently from several tasks; `append` for one programme is
/// only ever called by that programme's writer, but other processes may write the same
/// programme when [`Store::shared`] is true.
pub trait Store: Send + Sync + 'static {
    /// A short name: `memory`, `sqlite` or `postgres`.
    fn kind(&self) -> &'static str;

    /// Whether other processes may append to the same journals (the engine then catches up
    /// before deciding each batch).
    fn shared(&self) -> bool {
        false
    }

    /// Every programme in the store.
    fn program_ids(&self) -> BoxFuture<'_, StoreResult<Vec<ProgramId>>>;

    /// Stores a new programme's genesis entry (sequence 0). Returns `None` when created, or
    /// the existing genesis entry when the programme already exists (nothing is written).
    fn create_program<'a>(
        &'a self,
        genesis: &'a StoredEntry,
    ) -> BoxFuture<'a, StoreResult<Option<StoredEntry>>>;

    /// Shared stores: opens the transaction of the programme's next batch and takes the
    /// programme's write lock in it (a row lock on its head), waiting while another process
    /// holds it. Returns the stored journal's next sequence and, read under the lock, the
    /// stored entries from `from` on (at most [`LOCK_PAGE`]): other writers' entries the
    /// caller has not seen, in the same round trip as the lock. The lock ends with the
    /// batch's [`Store::append`] (which commits in this transaction) or with
    /// [`Store::unlock`].
    ///
    /// Without it two servers decide batches at the same time and all but one lose the race
    /// at commit, each loss costing a reload of the ledger. Stores with a single writer
    /// return `None` and take no lock. Blocks like `append`.
    fn lock(&self, program: ProgramId, from: u64) -> BoxFuture<'_, StoreResult<Option<Locked>>> {
        let _ = (program, from);
        Box::pin(std::future::ready(Ok(None)))
    }

    /// Ends a batch's transaction opened by [`Store::lock`] without writing (nothing new was
    /// decided, or catching up failed). Does nothing when no lock is held.
    fn unlock(&self, program: ProgramId) -> BoxFuture<'_, StoreResult<()>> {
        let _ = program;
        Box::pin(std::future::ready(Ok(())))
    }

    /// Appends `entries` (consecutive, starting at `expected_next`) in one transaction.
    /// Fails with [`StoreError::Conflict`] when the stored journal does not end at
    /// `expected_next`; then nothing is written.
    ///
    /// The future may block its thread for the commit (the embedded store commits while
    /// it is polled): call it, as the engine's writer thread does, where blocking is
    /// allowed, not on an async worker thread.
    fn append<'a>(
        &'a self,
        program: ProgramId,
        expected_next: u64,
        entries: &'a [StoredEntry],
    ) -> BoxFuture<'a, StoreResult<()>>;

    /// Up to `limit` entries from `from_sequence` on, in sequence order.
    fn read_entries(
        &self,
        program: ProgramId,
        from_sequence: u64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredEntry>>>;

    /// The chain hashes of up to `limit` entries from `from_sequence` on, each with its
    /// sequence, in sequence order: what a Merkle tree over the journal needs. Stores read
    /// them from the end of each stored entry ([`Entry::hash_of_encoded`]) instead of
    /// decoding whole entries; like [`Store::read_entries`], nothing is verified here.
    fn read_hashes(
        &self,
        program: ProgramId,
        from_sequence: u64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<(u64, Hash)>>> {
        Box::pin(async move {
            let entries = self.read_entries(program, from_sequence, limit).await?;
            Ok(entries
                .iter()
                .map(|s| (s.entry.sequence(), s.entry.hash()))
                .collect())
        })
    }

    /// The entry with this id, if stored.
    fn entry_by_id(
        &self,
        program: ProgramId,
        id: EntryId,
    ) -> BoxFuture<'_, StoreResult<Option<StoredEntry>>>;

    /// The latest checkpoint, if any.
    fn latest_checkpoint(
        &self,
        program: ProgramId,
    ) -> BoxFuture<'_, StoreResult<Option<Checkpoint>>>;

    /// Stores a checkpoint, keeping at most the latest two.
    fn put_checkpoint<'a>(
        &'a self,
        program: ProgramId,
        checkpoint: &'a Checkpoint,
    ) -> BoxFuture<'a, StoreResult<()>>;

    /// Stores a checkpoint whose snapshot `encode` hands, in pieces, to the sink it is given
    /// (as [`points_core::Ledger::snapshot_into`] does), keeping at most the latest two. A
    /// store that writes files writes the pieces as they come, so the whole snapshot is
    /// never in memory. `size_hint_bytes` (the last snapshot's size, say) sizes the buffer of
    /// a store that gathers the pieces.
    ///
    /// Blocks the calling thread until the checkpoint is stored or has failed: call it from
    /// a thread of its own, as the engine's checkpoint thread does, never from an async
    /// task. The default gathers the pieces and stores them with [`Store::put_checkpoint`]
    /// on `runtime`.
    fn put_checkpoint_streamed(
        &self,
        runtime: &tokio::runtime::Handle,
        program: ProgramId,
        next_sequence: u64,
        head_hash: Hash,
        size_hint_bytes: usize,
        encode: &mut EncodeSnapshot<'_>,
    ) -> StoreResult<()> {
        let mut snapshot = Vec::with_capacity(size_hint_bytes);
        encode(&mut |piece| snapshot.extend_from_slice(piece));
        let checkpoint = Checkpoint {
            next_sequence,
            head_hash,
            snapshot,
        };
        runtime.block_on(self.put_checkpoint(program, &checkpoint))
    }

    /// Inserts or replaces an API key.
    fn put_api_key(&self, key: ApiKeyRecord) -> BoxFuture<'_, StoreResult<()>>;

    /// Every API key, revoked ones included.
    fn api_keys(&self) -> BoxFuture<'_, StoreResult<Vec<ApiKeyRecord>>>;

    /// Marks a key revoked; false when there is no such key.
    fn revoke_api_key(&self, id: uuid::Uuid) -> BoxFuture<'_, StoreResult<bool>>;

    /// The server's 32-byte signing secret: stores `candidate` when the store holds none yet,
    /// and returns the stored secret either way, so that every server sharing the store signs
    /// with the same keys (see [`crate::signing`]).
    fn server_secret(&self, candidate: [u8; 32]) -> BoxFuture<'_, StoreResult<[u8; 32]>>;

    /// Stores a signed disclosure checkpoint (a Merkle tree head, issue 7; not a ledger
    /// snapshot). The first one stored for a size is kept: storing another of the same size
    /// writes nothing, so a stored tree head never changes.
    fn put_tree_head<'a>(
        &'a self,
        program: ProgramId,
        head: &'a SignedCheckpoint,
    ) -> BoxFuture<'a, StoreResult<()>>;

    /// The stored tree head of exactly `size` entries, or the largest one when `size` is
    /// `None`.
    fn tree_head(
        &self,
        program: ProgramId,
        size: Option<u64>,
    ) -> BoxFuture<'_, StoreResult<Option<SignedCheckpoint>>>;

    /// Test hook: the next `count` appends fail after writing (their transaction is rolled
    /// back and they report [`StoreError::Unavailable`]).
    #[doc(hidden)]
    fn inject_commit_failures(&self, count: u32);
}

/// Crash tests (issue 9, `faulty.rs`): when set, the next commit of any store aborts the
/// process inside its transaction, after every row is written and before `COMMIT`.
pub(crate) static CRASH_IN_COMMIT: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Test-only fault injection shared by the stores.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    failing_commits: AtomicU32,
}

impl Faults {
    pub(crate) fn set(&self, count: u32) {
        self.failing_commits.store(count, Ordering::SeqCst);
    }

    /// Whether this commit must fail (consumes one injected failure). Aborts the process
    /// instead when a crash test armed [`CRASH_IN_COMMIT`].
    pub(crate) fn take(&self) -> bool {
        if CRASH_IN_COMMIT.load(Ordering::SeqCst) {
            std::process::abort();
        }
        self.failing_commits
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// The stored signing secret as 32 bytes.
pub(crate) fn secret_from(value: &[u8]) -> StoreResult<[u8; 32]> {
    value
        .try_into()
        .map_err(|_| StoreError::Unavailable("the stored signing secret is not 32 bytes".into()))
}

/// Decodes stored entry bytes, naming the sequence on failure.
pub(crate) fn decode_entry(
    sequence: u64,
    body: &[u8],
    fingerprint: &[u8],
) -> StoreResult<StoredEntry> {
    let entry = Entry::decode(body).map_err(|e| StoreError::Corrupt {
        sequence,
        message: e.to_string(),
    })?;
    if entry.sequence() != sequence {
        return Err(StoreError::Corrupt {
            sequence,
            message: format!("stored as {sequence} but encodes {}", entry.sequence()),
        });
    }
    let fingerprint = match fingerprint.len() {
        8 => {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(fingerprint);
            u64::from_le_bytes(bytes)
        }
        // Rows written before fingerprints became 64-bit: a retry of such a request is
        // answered as a duplicate, as before its fingerprint was restored.
        16 => points_core::Ledger::UNKNOWN_FINGERPRINT,
        _ => {
            return Err(StoreError::Corrupt {
                sequence,
                message: "request fingerprint is not 8 bytes".into(),
            })
        }
    };
    Ok(StoredEntry { entry, fingerprint })
}

/// A stored tree head's JSON text.
pub(crate) fn tree_head_text(head: &SignedCheckpoint) -> StoreResult<String> {
    serde_json::to_string(head).map_err(|e| StoreError::Unavailable(e.to_string()))
}

/// A tree head from its stored JSON text.
pub(crate) fn tree_head_from(text: &str) -> StoreResult<SignedCheckpoint> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Unavailable(format!("a stored tree head is unreadable: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hash is exactly the tail a store cut off; a stored entry too short to hold one is
    /// corrupt, named by its sequence.
    #[test]
    fn a_hash_tail_is_exactly_thirty_two_bytes() {
        let tail: Vec<u8> = (0..32).collect();
        assert_eq!(hash_from_tail(7, &tail).unwrap().0[..], tail[..]);
        for short in [0, 1, 31] {
            assert!(matches!(
                hash_from_tail(7, &tail[..short]),
                Err(StoreError::Corrupt { sequence: 7, .. })
            ));
        }
        let long = [0u8; 33];
        assert!(matches!(
            hash_from_tail(9, &long),
            Err(StoreError::Corrupt { sequence: 9, .. })
        ));
    }
}
