//! An in-memory store: for tests and demos. Nothing survives the process.

use super::{BoxFuture, Checkpoint, Faults, Store, StoreError, StoreResult, StoredEntry};
use crate::engine::ApiKeyRecord;
use points_core::checkpoint::SignedCheckpoint;
use points_core::{EntryId, ProgramId};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

#[derive(Default)]
struct Journal {
    entries: Vec<StoredEntry>,
    by_id: HashMap<EntryId, u64>,
    checkpoints: Vec<Checkpoint>,
    tree_heads: BTreeMap<u64, SignedCheckpoint>,
}

#[derive(Default)]
struct State {
    programs: BTreeMap<ProgramId, Journal>,
    keys: BTreeMap<uuid::Uuid, ApiKeyRecord>,
    secret: Option<[u8; 32]>,
}

/// Journals kept in memory.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    faults: Faults,
    unreadable: std::sync::atomic::AtomicBool,
    /// Test hook: whether commits wait, and how many are waiting.
    held: Mutex<bool>,
    release: std::sync::Condvar,
    waiting: std::sync::atomic::AtomicU32,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Test hook: while set, journal reads fail (as if the storage were gone).
    #[doc(hidden)]
    pub fn set_unreadable(&self, unreadable: bool) {
        self.unreadable
            .store(unreadable, std::sync::atomic::Ordering::SeqCst);
    }

    /// Test hook: while held, commits wait (as if each fsync took that long), so a test can
    /// see what the engine does with a commit in flight.
    #[doc(hidden)]
    pub fn hold_commits(&self, hold: bool) {
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = hold;
        self.release.notify_all();
    }

    /// Test hook: how many commits are waiting for [`MemoryStore::hold_commits`].
    #[doc(hidden)]
    pub fn commits_waiting(&self) -> u32 {
        self.waiting.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Blocks the calling thread while commits are held.
    fn wait_while_held(&self) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        if !*held {
            return;
        }
        self.waiting
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        while *held {
            held = self.release.wait(held).unwrap_or_else(|e| e.into_inner());
        }
        self.waiting
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }

    fn unreadable(&self) -> bool {
        self.unreadable.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn ready<'a, T: Send + 'a>(value: T) -> BoxFuture<'a, T> {
    Box::pin(std::future::ready(value))
}

impl Store for MemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn program_ids(&self) -> BoxFuture<'_, StoreResult<Vec<ProgramId>>> {
        ready(Ok(self.lock().programs.keys().copied().collect()))
    }

    fn create_program<'a>(
        &'a self,
        genesis: &'a StoredEntry,
    ) -> BoxFuture<'a, StoreResult<Option<StoredEntry>>> {
        let result = (|| {
            let program = match genesis.entry.event() {
                points_core::Event::ProgramOpened(spec) => spec.id(),
                _ => return Err(StoreError::Unavailable("not a genesis entry".into())),
            };
            let mut state = self.lock();
            if let Some(existing) = state.programs.get(&program) {
                return Ok(existing.entries.first().cloned());
            }
            let mut journal = Journal::default();
            journal.by_id.insert(genesis.entry.id(), 0);
            journal.entries.push(genesis.clone());
            state.programs.insert(program, journal);
            Ok(None)
        })();
        ready(result)
    }

    fn append<'a>(
        &'a self,
        program: ProgramId,
        expected_next: u64,
        entries: &'a [StoredEntry],
    ) -> BoxFuture<'a, StoreResult<()>> {
        self.wait_while_held();
        let result = (|| {
            let mut state = self.lock();
            let journal = state
                .programs
                .get_mut(&program)
                .ok_or_else(|| StoreError::Unavailable("unknown programme".into()))?;
            if journal.entries.len() as u64 != expected_next {
                return Err(StoreError::Conflict);
            }
            if self.faults.take() {
                return Err(StoreError::Unavailable("injected commit failure".into()));
            }
            for e in entries {
                journal.by_id.insert(e.entry.id(), e.entry.sequence());
                journal.entries.push(e.clone());
            }
            Ok(())
        })();
        ready(result)
    }

    fn read_entries(
        &self,
        program: ProgramId,
        from_sequence: u64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredEntry>>> {
        if self.unreadable() {
            return ready(Err(StoreError::Unavailable("injected read failure".into())));
        }
        let state = self.lock();
        let out = state
            .programs
            .get(&program)
            .map(|j| {
                let from = usize::try_from(from_sequence).unwrap_or(usize::MAX);
                j.entries.iter().skip(from).take(limit).cloned().collect()
            })
            .unwrap_or_default();
        ready(Ok(out))
    }

    fn entry_by_id(
        &self,
        program: ProgramId,
        id: EntryId,
    ) -> BoxFuture<'_, StoreResult<Option<StoredEntry>>> {
        let state = self.lock();
        let out = state.programs.get(&program).and_then(|j| {
            let seq = usize::try_from(*j.by_id.get(&id)?).ok()?;
            j.entries.get(seq).cloned()
        });
        ready(Ok(out))
    }

    fn latest_checkpoint(
        &self,
        program: ProgramId,
    ) -> BoxFuture<'_, StoreResult<Option<Checkpoint>>> {
        if self.unreadable() {
            return ready(Err(StoreError::Unavailable("injected read failure".into())));
        }
        let state = self.lock();
        let out = state
            .programs
            .get(&program)
            .and_then(|j| j.checkpoints.last().cloned());
        ready(Ok(out))
    }

    fn put_checkpoint<'a>(
        &'a self,
        program: ProgramId,
        checkpoint: &'a Checkpoint,
    ) -> BoxFuture<'a, StoreResult<()>> {
        let mut state = self.lock();
        if let Some(j) = state.programs.get_mut(&program) {
            j.checkpoints.push(checkpoint.clone());
            j.checkpoints.sort_by_key(|c| c.next_sequence);
            let excess = j.checkpoints.len().saturating_sub(2);
            j.checkpoints.drain(..excess);
        }
        ready(Ok(()))
    }

    fn put_api_key(&self, key: ApiKeyRecord) -> BoxFuture<'_, StoreResult<()>> {
        self.lock().keys.insert(key.id, key);
        ready(Ok(()))
    }

    fn server_secret(&self, candidate: [u8; 32]) -> BoxFuture<'_, StoreResult<[u8; 32]>> {
        ready(Ok(*self.lock().secret.get_or_insert(candidate)))
    }

    fn api_keys(&self) -> BoxFuture<'_, StoreResult<Vec<ApiKeyRecord>>> {
        ready(Ok(self.lock().keys.values().cloned().collect()))
    }

    fn revoke_api_key(&self, id: uuid::Uuid) -> BoxFuture<'_, StoreResult<bool>> {
        let found = match self.lock().keys.get_mut(&id) {
            Some(key) => {
                key.revoked = true;
                true
            }
            None => false,
        };
        ready(Ok(found))
    }

    fn inject_commit_failures(&self, count: u32) {
        self.faults.set(count);
    }

    fn put_tree_head<'a>(
        &'a self,
        program: ProgramId,
        head: &'a SignedCheckpoint,
    ) -> BoxFuture<'a, StoreResult<()>> {
        let mut state = self.lock();
        let Some(j) = state.programs.get_mut(&program) else {
            return ready(Err(StoreError::Unavailable("unknown programme".into())));
        };
        j.tree_heads
            .entry(head.checkpoint.tree_size)
            .or_insert_with(|| head.clone());
        ready(Ok(()))
    }

    fn tree_head(
        &self,
        program: ProgramId,
        size: Option<u64>,
    ) -> BoxFuture<'_, StoreResult<Option<SignedCheckpoint>>> {
        let state = self.lock();
        let out = state.programs.get(&program).and_then(|j| match size {
            Some(size) => j.tree_heads.get(&size).cloned(),
            None => j.tree_heads.values().next_back().cloned(),
        });
        ready(Ok(out))
    }
}
