//! A test-only [`Store`] wrapper that fails or crashes at one chosen write point of a commit.
//!
//! Compiled only with the `fault-injection` feature (the crate's own tests enable it). The
//! wrapper delegates every method to the store it wraps; one [`FaultPlan`] names the
//! [`FaultPoint`], the [`FaultMode`] and which write (counting from one) it strikes. The
//! points, in the order a commit passes them:
//!
//! | point | where | what is on disk when it strikes |
//! | --- | --- | --- |
//! | `BeforeAppend` | before the journal transaction begins | nothing of the batch |
//! | `InAppendBeforeCommit` | inside the transaction: the head row is advanced and every entry row inserted, `COMMIT` (the WAL write and its fsync) not yet run | nothing of the batch (the transaction is rolled back, or dies with the process) |
//! | `AfterAppendCommit` | `COMMIT` returned (the fsync is done), the engine not yet told | the whole batch, never acknowledged |
//! | `BeforeCheckpoint` | before the checkpoint transaction | the journal; the old checkpoint |
//! | `AfterCheckpointCommit` | the checkpoint committed, the engine not yet told | the journal and the new checkpoint |
//!
//! [`FaultMode::Fail`] returns [`StoreError::Unavailable`] at the point, as an I/O error or a
//! failed fsync would (SQLite then rolls the transaction back; the wrapper never retries).
//! [`FaultMode::Crash`] calls [`std::process::abort`] there: the process dies with no unwinding,
//! no destructor and no rollback, as with `SIGKILL`; the test runs it in a child process and
//! reopens the data directory afterwards. [`FaultMode::Panic`] panics there, as a bug in a
//! store would, and [`FaultMode::Stall`] waits until released, as a disk that stops answering.
//!
//! `InAppendBeforeCommit` is reached through the wrapped store's own commit hook
//! ([`Store::inject_commit_failures`] and [`arm_crash_in_commit`]), because only the store
//! itself is inside its transaction. A process crash cannot separate SQLite's `write()` of the
//! WAL from its `fsync()` (the operating system keeps the written pages); losing unsynced
//! pages needs a power cut, which this wrapper does not simulate.

use super::{BoxFuture, Checkpoint, Store, StoreResult, StoredEntry, CRASH_IN_COMMIT};
use crate::engine::ApiKeyRecord;
use points_core::{EntryId, ProgramId};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Where in a commit the fault strikes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultPoint {
    /// Before the journal transaction begins.
    BeforeAppend,
    /// Inside the journal transaction, every row written, before `COMMIT`.
    InAppendBeforeCommit,
    /// After the journal transaction committed, before the engine hears of it.
    AfterAppendCommit,
    /// Before a checkpoint is written.
    BeforeCheckpoint,
    /// After a checkpoint committed, before the engine hears of it.
    AfterCheckpointCommit,
}

impl FaultPoint {
    /// Every point, in the order a commit reaches them.
    pub const ALL: [FaultPoint; 5] = [
        FaultPoint::BeforeAppend,
        FaultPoint::InAppendBeforeCommit,
        FaultPoint::AfterAppendCommit,
        FaultPoint::BeforeCheckpoint,
        FaultPoint::AfterCheckpointCommit,
    ];

    /// A stable short name (for the report and child-process arguments).
    pub fn name(self) -> &'static str {
        match self {
            FaultPoint::BeforeAppend => "before-append",
            FaultPoint::InAppendBeforeCommit => "in-append-before-commit",
            FaultPoint::AfterAppendCommit => "after-append-commit",
            FaultPoint::BeforeCheckpoint => "before-checkpoint",
            FaultPoint::AfterCheckpointCommit => "after-checkpoint-commit",
        }
    }

    /// The point named `name` (see [`FaultPoint::name`]).
    pub fn from_name(name: &str) -> Option<FaultPoint> {
        FaultPoint::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Whether the point is on the checkpoint path rather than the journal append.
    pub fn is_checkpoint(self) -> bool {
        matches!(
            self,
            FaultPoint::BeforeCheckpoint | FaultPoint::AfterCheckpointCommit
        )
    }
}

/// What happens at the point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultMode {
    /// The operation reports [`super::StoreError::Unavailable`].
    Fail,
    /// The process aborts.
    Crash,
    /// The operation waits until [`FaultyStore::release`] (a disk that stops answering); used
    /// to fill the engine's bounded writer queue.
    Stall,
    /// The operation panics, as a bug in a store would: the engine must neither hang nor
    /// stop taking writes.
    Panic,
}

/// One armed fault: `mode` at the `nth` (from one) operation that passes `point`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultPlan {
    /// Where.
    pub point: FaultPoint,
    /// What.
    pub mode: FaultMode,
    /// Which operation of that kind (appends or checkpoints), counting from one.
    pub nth: u64,
}

/// Makes the wrapped store's commit hook abort the process instead of failing.
pub fn arm_crash_in_commit() {
    CRASH_IN_COMMIT.store(true, Ordering::SeqCst);
}

/// A store that delegates to another and injects one planned fault.
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    plan: Mutex<Option<FaultPlan>>,
    appends: AtomicU64,
    checkpoints: AtomicU64,
    fired: AtomicU64,
    gate: tokio::sync::Semaphore,
}

impl FaultyStore {
    /// Wraps `inner` with no fault armed.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            plan: Mutex::new(None),
            appends: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
            fired: AtomicU64::new(0),
            gate: tokio::sync::Semaphore::new(0),
        }
    }

    /// Lets every stalled operation, and every later one, go on.
    pub fn release(&self) {
        self.gate
            .add_permits(tokio::sync::Semaphore::MAX_PERMITS / 2);
    }

    /// Arms `plan`, counting operations from now on.
    pub fn arm(&self, plan: FaultPlan) {
        self.appends.store(0, Ordering::SeqCst);
        self.checkpoints.store(0, Ordering::SeqCst);
        *self.plan.lock().unwrap_or_else(PoisonError::into_inner) = Some(plan);
    }

    /// How many faults have struck (a `Fail` fault strikes once, then disarms).
    pub fn fired(&self) -> u64 {
        self.fired.load(Ordering::SeqCst)
    }

    /// The armed plan if this operation (`counter` just incremented) is the one it strikes.
    fn strikes(&self, counter: &AtomicU64, points: &[FaultPoint]) -> Option<FaultPlan> {
        let mut plan = self.plan.lock().unwrap_or_else(PoisonError::into_inner);
        let armed = (*plan)?;
        if !points.contains(&armed.point) {
            return None;
        }
        let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
        if n != armed.nth {
            return None;
        }
        *plan = None;
        self.fired.fetch_add(1, Ordering::SeqCst);
        Some(armed)
    }
}

impl FaultyStore {
    async fn strike(&self, mode: FaultMode, point: FaultPoint) -> StoreResult<()> {
        match mode {
            FaultMode::Fail => Err(super::StoreError::Unavailable(format!(
                "injected fault at {}",
                point.name()
            ))),
            FaultMode::Crash => std::process::abort(),
            FaultMode::Panic => panic!("injected panic at {}", point.name()),
            FaultMode::Stall => {
                // A closed semaphore cannot happen (it is never closed): go on either way.
                let _ = self.gate.acquire().await;
                Ok(())
            }
        }
    }
}

impl Store for FaultyStore {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn shared(&self) -> bool {
        self.inner.shared()
    }

    fn program_ids(&self) -> BoxFuture<'_, StoreResult<Vec<ProgramId>>> {
        self.inner.program_ids()
    }

    fn create_program<'a>(
        &'a self,
        genesis: &'a StoredEntry,
    ) -> BoxFuture<'a, StoreResult<Option<StoredEntry>>> {
        self.inner.create_program(genesis)
    }

    fn append<'a>(
        &'a self,
        program: ProgramId,
        expected_next: u64,
        entries: &'a [StoredEntry],
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let plan = self.strikes(
                &self.appends,
                &[
                    FaultPoint::BeforeAppend,
                    FaultPoint::InAppendBeforeCommit,
                    FaultPoint::AfterAppendCommit,
                ],
            );
            match plan {
                Some(p) if p.point == FaultPoint::BeforeAppend => {
                    self.strike(p.mode, p.point).await?
                }
                Some(p) if p.point == FaultPoint::InAppendBeforeCommit => match p.mode {
                    FaultMode::Fail => self.inner.inject_commit_failures(1),
                    FaultMode::Crash => arm_crash_in_commit(),
                    // Only the store is inside its transaction: stall or panic just before
                    // it instead.
                    FaultMode::Stall | FaultMode::Panic => self.strike(p.mode, p.point).await?,
                },
                _ => {}
            }
            self.inner.append(program, expected_next, entries).await?;
            match plan {
                Some(p) if p.point == FaultPoint::AfterAppendCommit => {
                    self.strike(p.mode, p.point).await
                }
                _ => Ok(()),
            }
        })
    }

    fn read_entries(
        &self,
        program: ProgramId,
        from_sequence: u64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredEntry>>> {
        self.inner.read_entries(program, from_sequence, limit)
    }

    fn entry_by_id(
        &self,
        program: ProgramId,
        id: EntryId,
    ) -> BoxFuture<'_, StoreResult<Option<StoredEntry>>> {
        self.inner.entry_by_id(program, id)
    }

    fn latest_checkpoint(
        &self,
        program: ProgramId,
    ) -> BoxFuture<'_, StoreResult<Option<Checkpoint>>> {
        self.inner.latest_checkpoint(program)
    }

    fn put_checkpoint<'a>(
        &'a self,
        program: ProgramId,
        checkpoint: &'a Checkpoint,
    ) -> BoxFuture<'a, StoreResult<()>> {
        Box::pin(async move {
            let plan = self.strikes(
                &self.checkpoints,
                &[
                    FaultPoint::BeforeCheckpoint,
                    FaultPoint::AfterCheckpointCommit,
                ],
            );
            if let Some(p) = plan.filter(|p| p.point == FaultPoint::BeforeCheckpoint) {
                self.strike(p.mode, p.point).await?;
            }
            self.inner.put_checkpoint(program, checkpoint).await?;
            match plan {
                Some(p) if p.point == FaultPoint::AfterCheckpointCommit => {
                    self.strike(p.mode, p.point).await
                }
                _ => Ok(()),
            }
        })
    }

    fn put_api_key(&self, key: ApiKeyRecord) -> BoxFuture<'_, StoreResult<()>> {
        self.inner.put_api_key(key)
    }

    fn api_keys(&self) -> BoxFuture<'_, StoreResult<Vec<ApiKeyRecord>>> {
        self.inner.api_keys()
    }

    fn revoke_api_key(&self, id: uuid::Uuid) -> BoxFuture<'_, StoreResult<bool>> {
        self.inner.revoke_api_key(id)
    }

    fn server_secret(&self, candidate: [u8; 32]) -> BoxFuture<'_, StoreResult<[u8; 32]>> {
        self.inner.server_secret(candidate)
    }

    fn put_tree_head<'a>(
        &'a self,
        program: ProgramId,
        head: &'a points_core::checkpoint::SignedCheckpoint,
    ) -> BoxFuture<'a, StoreResult<()>> {
        self.inner.put_tree_head(program, head)
    }

    fn tree_head(
        &self,
        program: ProgramId,
        size: Option<u64>,
    ) -> BoxFuture<'_, StoreResult<Option<points_core::checkpoint::SignedCheckpoint>>> {
        self.inner.tree_head(program, size)
    }

    fn inject_commit_failures(&self, count: u32) {
        self.inner.inject_commit_failures(count);
    }
}
