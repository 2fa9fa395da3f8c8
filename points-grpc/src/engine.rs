//! The engine: every programme's [`Ledger`] in memory, a writer per programme that group-
//! commits decided entries to a [`Store`], and the reads the services need.
//!
//! # How a write becomes durable
//!
//! Callers hand requests to a programme's queue ([`Engine::submit`],
//! [`Engine::submit_many`]). The programme's writer (a dedicated thread) drains up to
//! [`EngineOptions::max_batch`] queued requests, takes the ledger's write lock, applies each
//! request (a rejection writes nothing) and releases the lock. The batch's new entries are
//! then stored in one transaction ([`Store::append`]), and only then are its callers
//! answered and its entries broadcast to subscribers. No caller is acknowledged before its
//! entry is durable, nor before every entry decided ahead of it is.
//!
//! With a single-writer store (SQLite, memory) the commit runs on a second thread, the
//! committer, so the writer decides the next batch while the last one syncs; batches that
//! pile up meanwhile share the next transaction (a pipeline, as in TigerBeetle). Every
//! decided batch goes through the committer in order, even one with nothing new to store,
//! because its answers (a duplicate, or a rejection for want of points) may rest on a batch
//! ahead of it that is not yet durable. Checkpoints wait until the pipeline is empty, so a
//! checkpoint holds only durable entries. With a shared store (PostgreSQL) each batch is
//! locked, decided and committed before the next (see below).
//!
//! The lock is not held across the commit so that, during the fsync or the PostgreSQL round
//! trip, request handlers keep reading, decoding and queueing the next batch; the price is
//! that a read may see a batch a few milliseconds before it is durable (and, if that commit
//! then fails, before it is rolled back). Only the writer thread decides, and the ledger is
//! otherwise changed only by a rollback under the write lock.
//!
//! If the transaction fails, every request of the batch gets [`EngineError::Unavailable`]
//! and the ledger is rebuilt from the store (latest checkpoint plus the journal after it).
//! Batches decided after the failed one, and still in the pipeline, are answered
//! `Unavailable` too: they were decided against effects that are now gone.
//! If that fails too, the programme goes read-only: writes are refused with `Unavailable`
//! while reads go on, and the writer retries the reload every second until the store is
//! back. (Known gap: until then, reads include the failed batch's unacknowledged effects,
//! since the ledger cannot be rolled back without the store.)
//!
//! With a shared store (PostgreSQL), several engines in several processes may write the
//! same programme: before each batch the writer takes the programme's lock in the store,
//! which also reads the entries other writers appended, and a batch that loses the race
//! anyway ([`StoreError::Conflict`]) is rolled back and decided again against the new
//! state. Requests that queued while the lock was awaited join the batch once it is
//! granted, so while servers take turns their batches grow rather than their turns.

use crate::signing::ProgramKeys;
use crate::store::memory::MemoryStore;
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Checkpoint, Locked, Store, StoreError, StoredEntry};
use points_core::{
    Actor, Applied, Auditor, Entry, EntryId, Hash, Ledger, MerchantId, OrgUnitId, ProgramId,
    ProgramSpec, Rejection, ReplayError, Request, RequestId, Timestamp,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use tokio::sync::{broadcast, mpsc, oneshot};

/// Why the engine could not serve a call.
#[derive(Clone, Debug, thiserror::Error)]
pub enum EngineError {
    /// The ledger refused the request.
    #[error("rejected: {0}")]
    Rejected(Rejection),
    /// No programme with that id.
    #[error("unknown program")]
    UnknownProgram,
    /// The store failed or cannot be reached; nothing was acknowledged. Retry later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// A bug or a corrupt journal.
    #[error("internal: {0}")]
    Internal(String),
    /// The programme's writer queue is full: nothing was queued. Retry later (issue 9).
    #[error("overloaded: {0}")]
    Overloaded(String),
}

/// Where the journals live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreConfig {
    /// In memory, lost at exit (tests).
    Memory,
    /// An SQLite database `points.db` in `dir` (created if missing).
    Sqlite {
        /// The data directory.
        dir: PathBuf,
    },
    /// A PostgreSQL database, possibly shared by several servers.
    Postgres {
        /// A connection string, e.g. `postgres://points@db/points`.
        url: String,
    },
}

/// Tuning.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// The most requests decided and committed in one transaction.
    pub max_batch: usize,
    /// Entries between checkpoints (ledger snapshots written to the store). A checkpoint
    /// pauses the programme's writes while the pipeline drains and the ledger is copied
    /// (tens of milliseconds at a million members), so it is taken rarely; start-up replays
    /// at most this many entries (more if a checkpoint is still being written when the next
    /// falls due).
    pub snapshot_every: u64,
    /// Serialise and store checkpoints on a thread of their own, from a copy of the ledger,
    /// so the writer goes on committing batches while hundreds of megabytes go to disk.
    /// Off, the writer serialises and stores each checkpoint before its next batch
    /// (fault-injection tests use this to know when a checkpoint's write happens).
    pub background_checkpoints: bool,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            max_batch: 8192,
            snapshot_every: 1_000_000,
            background_checkpoints: true,
        }
    }
}

/// The result of [`Engine::verify_chain`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainReport {
    /// Entries read and checked.
    pub entries_checked: u64,
    /// The hash of the last good entry.
    pub head_hash: Hash,
    /// The first bad entry's sequence and what is wrong with it.
    pub first_bad: Option<(u64, String)>,
}

/// What an API key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ApiRole {
    /// Everything.
    Admin,
    /// Community-centre staff.
    Recorder,
    /// A merchant's point of sale.
    Merchant,
    /// Read-only audit.
    Auditor,
}

/// A stored API key (only the hash of its secret).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ApiKeyRecord {
    /// The key's id.
    pub id: uuid::Uuid,
    /// A human label.
    pub label: String,
    /// Its role.
    pub role: ApiRole,
    /// The programme it is limited to, if any.
    pub program: Option<ProgramId>,
    /// The org unit a recorder key acts in.
    pub org_unit: Option<OrgUnitId>,
    /// The merchant a merchant key acts for.
    pub merchant: Option<MerchantId>,
    /// BLAKE3 of the secret.
    pub secret_hash: [u8; 32],
    /// Creation time, milliseconds since the epoch.
    pub created_at_ms: i64,
    /// Whether the key was revoked.
    pub revoked: bool,
}

/// Entries read per page when loading, verifying or auditing.
const PAGE: usize = 8192;
/// Queued jobs per programme; a job that finds the queue full is shed with
/// [`EngineError::Overloaded`].
pub const QUEUE_DEPTH: usize = 1024;
/// Entries a slow subscriber may fall behind before it sees `Lagged`.
const BROADCAST_CAPACITY: usize = 65_536;
/// How often a programme on a shared store reads what other servers wrote.
const FOLLOW_PERIOD: std::time::Duration = std::time::Duration::from_millis(250);
/// How often an engine on a shared store looks for programmes other servers created.
pub const DISCOVERY_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);
/// How often a read-only programme tries to reload from the store.
const RECOVERY_PERIOD: std::time::Duration = std::time::Duration::from_secs(1);
/// How often a batch that lost an optimistic race is decided again.
const CONFLICT_RETRIES: usize = 64;

/// The wall clock, as the ledger wants it.
pub fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    Timestamp::from_millis(ms)
}

enum Msg {
    Job(Job),
    /// Time for periodic work (see `Writer::tick`).
    Tick,
}

struct Job {
    requests: Vec<Request>,
    now: Timestamp,
    reply: oneshot::Sender<Vec<Result<Applied, EngineError>>>,
}

/// What a programme's writer and readers share.
struct ProgramState {
    id: ProgramId,
    ledger: RwLock<Ledger>,
    events: broadcast::Sender<Arc<Entry>>,
    read_only: AtomicBool,
}

struct Program {
    state: Arc<ProgramState>,
    spec: ProgramSpec,
    queue: Mutex<Option<mpsc::Sender<Msg>>>,
}

struct Inner {
    store: Arc<dyn Store>,
    options: EngineOptions,
    runtime: tokio::runtime::Handle,
    programs: RwLock<HashMap<ProgramId, Arc<Program>>>,
    install_lock: tokio::sync::Mutex<()>,
    writers: Mutex<Vec<std::thread::JoinHandle<()>>>,
    counters: Arc<Counters>,
    keys: ProgramKeys,
}

/// Running counts, for metrics and tests.
#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    entries: AtomicU64,
    conflicts: AtomicU64,
    failed_commits: AtomicU64,
}

/// What the writers have done since the engine opened (see [`Engine::stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Transactions committed with at least one new entry.
    pub batches: u64,
    /// Entries made durable by this engine.
    pub entries: u64,
    /// Batches decided again because another server advanced the journal first.
    pub conflicts: u64,
    /// Commits that failed (every request of the batch was answered `Unavailable`).
    pub failed_commits: u64,
}

/// The ledger engine over a store. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// Why a programme's journal could not be loaded.
#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Replay(#[from] ReplayError),
}

impl From<LoadError> for EngineError {
    fn from(e: LoadError) -> Self {
        match e {
            LoadError::Store(StoreError::Unavailable(m)) => EngineError::Unavailable(m),
            other => EngineError::Internal(other.to_string()),
        }
    }
}

fn store_error(e: StoreError) -> EngineError {
    match e {
        StoreError::Unavailable(m) => EngineError::Unavailable(m),
        StoreError::Conflict => EngineError::Unavailable(e.to_string()),
        StoreError::Corrupt { .. } => EngineError::Internal(e.to_string()),
    }
}

/// Reads every stored entry from the ledger's next sequence on into the ledger, verifying
/// the chain and restoring request fingerprints. Returns the entries read.
async fn catch_up(
    ledger: &mut Ledger,
    store: &dyn Store,
    program: ProgramId,
    mut seen: Option<&mut Vec<Arc<Entry>>>,
) -> Result<(), LoadError> {
    loop {
        let page = store
            .read_entries(program, ledger.next_sequence(), PAGE)
            .await?;
        if page.is_empty() {
            return Ok(());
        }
        absorb(ledger, page, seen.as_deref_mut())?;
    }
}

/// Replays a page of stored entries (the next ones) into the ledger and restores their
/// request fingerprints; `seen` collects them.
fn absorb(
    ledger: &mut Ledger,
    page: Vec<StoredEntry>,
    mut seen: Option<&mut Vec<Arc<Entry>>>,
) -> Result<(), LoadError> {
    // A page at a time: `replay_all` overlaps the entries' index lookups.
    ledger.replay_all(page.iter().map(|stored| &stored.entry))?;
    for stored in page {
        ledger.restore_fingerprint(stored.entry.request_id(), stored.fingerprint);
        if let Some(seen) = seen.as_deref_mut() {
            seen.push(Arc::new(stored.entry));
        }
    }
    Ok(())
}

/// The checkpoint a programme was loaded from: where its writer counts the next one from,
/// and how big the next snapshot's buffer starts. Zero for none.
#[derive(Clone, Copy, Debug, Default)]
struct CheckpointMark {
    next_sequence: u64,
    bytes: usize,
}

/// Loads a programme: the latest checkpoint plus the journal after it (whose chain is
/// verified), or the whole journal when there is no usable checkpoint.
async fn load_ledger(store: &dyn Store, program: ProgramId) -> Result<Ledger, LoadError> {
    Ok(load_program(store, program).await?.0)
}

/// [`load_ledger`], and the checkpoint it started from.
async fn load_program(
    store: &dyn Store,
    program: ProgramId,
) -> Result<(Ledger, CheckpointMark), LoadError> {
    let mut ledger = None;
    let mut mark = CheckpointMark::default();
    if let Some(cp) = store.latest_checkpoint(program).await? {
        match Ledger::from_snapshot(&cp.snapshot) {
            Ok(l)
                if l.next_sequence() == cp.next_sequence
                    && l.head_hash() == cp.head_hash
                    && l.spec().id() == program =>
            {
                ledger = Some(l);
                mark = CheckpointMark {
                    next_sequence: cp.next_sequence,
                    bytes: cp.snapshot.len(),
                };
            }
            Ok(_) => {
                tracing::warn!(%program, "checkpoint does not match its head; replaying the whole journal")
            }
            Err(e) => {
                tracing::warn!(%program, error = %e, "checkpoint does not decode; replaying the whole journal")
            }
        }
    }
    let mut ledger = match ledger {
        Some(l) => l,
        None => {
            let first = store.read_entries(program, 0, 1).await?;
            let genesis = first.first().ok_or(ReplayError::NoGenesis)?;
            let mut l = Ledger::replay([&genesis.entry])?;
            l.restore_fingerprint(genesis.entry.request_id(), genesis.fingerprint);
            l
        }
    };
    catch_up(&mut ledger, store, program, None).await?;
    Ok((ledger, mark))
}

fn all_failed(n: usize, e: &EngineError) -> Vec<Result<Applied, EngineError>> {
    (0..n).map(|_| Err(e.clone())).collect()
}

impl Engine {
    /// The keys the server signs with on each programme's behalf.
    pub fn keys(&self) -> &ProgramKeys {
        &self.inner.keys
    }

    /// Opens the store and loads every programme (latest checkpoint plus the journal after
    /// it). A sequence, id or hash mismatch in the journal stops start-up with an error that
    /// names the first bad entry; nothing is repaired.
    pub async fn open(store: StoreConfig, options: EngineOptions) -> anyhow::Result<Engine> {
        let store: Arc<dyn Store> = match store {
            StoreConfig::Memory => Arc::new(MemoryStore::new()),
            StoreConfig::Sqlite { dir } => Arc::new(SqliteStore::open(&dir).await?),
            StoreConfig::Postgres { url } => Arc::new(PostgresStore::connect(&url).await?),
        };
        Self::open_with_store(store, options).await
    }

    /// Like [`Engine::open`] over a store built by the caller (tests, fault injection).
    pub async fn open_with_store(
        store: Arc<dyn Store>,
        options: EngineOptions,
    ) -> anyhow::Result<Engine> {
        let options = EngineOptions {
            max_batch: options.max_batch.max(1),
            snapshot_every: options.snapshot_every.max(1),
            background_checkpoints: options.background_checkpoints,
        };
        let candidate = ProgramKeys::random_secret()
            .map_err(|e| anyhow::anyhow!("cannot make a signing secret: {e}"))?;
        let secret = store
            .server_secret(candidate)
            .await
            .map_err(|e| anyhow::anyhow!("cannot read the signing secret: {e}"))?;
        let engine = Engine {
            inner: Arc::new(Inner {
                keys: ProgramKeys::new(secret),
                store,
                options,
                runtime: tokio::runtime::Handle::current(),
                programs: RwLock::new(HashMap::new()),
                install_lock: tokio::sync::Mutex::new(()),
                writers: Mutex::new(Vec::new()),
                counters: Arc::new(Counters::default()),
            }),
        };
        let ids = engine
            .inner
            .store
            .program_ids()
            .await
            .map_err(|e| anyhow::anyhow!("cannot list programmes: {e}"))?;
        for id in ids {
            let started = std::time::Instant::now();
            let (ledger, mark) = load_program(&*engine.inner.store, id)
                .await
                .map_err(|e| anyhow::anyhow!("programme {id}: cannot load the journal: {e}"))?;
            tracing::info!(program = %id, entries = ledger.next_sequence(), ms = started.elapsed().as_millis() as u64, "programme loaded");
            engine.install(ledger, mark);
        }
        if engine.inner.store.shared() {
            let weak = Arc::downgrade(&engine.inner);
            engine.inner.runtime.spawn(async move {
                loop {
                    tokio::time::sleep(DISCOVERY_PERIOD).await;
                    let Some(inner) = weak.upgrade() else { return };
                    if let Err(e) = (Engine { inner }).discover().await {
                        tracing::warn!(error = %e, "cannot look for programmes other servers created");
                    }
                }
            });
        }
        Ok(engine)
    }

    /// Loads programmes that other servers created in a shared store since this engine
    /// opened (run every [`DISCOVERY_PERIOD`] for shared stores).
    pub async fn discover(&self) -> Result<(), EngineError> {
        let ids = self.inner.store.program_ids().await.map_err(store_error)?;
        for id in ids {
            if self.loaded(id).is_none() {
                self.program(id).await?;
            }
        }
        Ok(())
    }

    /// Registers a loaded ledger and starts its writer. `checkpointed` is the checkpoint the
    /// ledger was loaded from.
    fn install(&self, ledger: Ledger, checkpointed: CheckpointMark) -> Arc<Program> {
        let id = ledger.spec().id();
        let spec = ledger.spec().clone();
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        let ticks = tx.downgrade();
        let (events, _) = broadcast::channel(BROADCAST_CAPACITY);
        let state = Arc::new(ProgramState {
            id,
            ledger: RwLock::new(ledger),
            events,
            read_only: AtomicBool::new(false),
        });
        let program = Arc::new(Program {
            state: state.clone(),
            spec,
            queue: Mutex::new(Some(tx)),
        });
        let period = if self.inner.store.shared() {
            FOLLOW_PERIOD
        } else {
            RECOVERY_PERIOD
        };
        self.inner.runtime.spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let Some(tx) = ticks.upgrade() else { return };
                // A full queue means the writer is busy anyway.
                let _ = tx.try_send(Msg::Tick);
            }
        });
        let writer = Writer {
            state,
            counters: self.inner.counters.clone(),
            store: self.inner.store.clone(),
            runtime: self.inner.runtime.clone(),
            options: self.inner.options.clone(),
            checkpointed,
        };
        let spawned = std::thread::Builder::new()
            .name(format!("points-writer-{id}"))
            .spawn(move || writer.run(rx));
        match spawned {
            Ok(handle) => self
                .inner
                .writers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(handle),
            Err(e) => {
                tracing::error!(program = %id, error = %e, "cannot start the writer; programme is read-only");
                program.state.read_only.store(true, Ordering::SeqCst);
            }
        }
        self.inner
            .programs
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, program.clone());
        program
    }

    fn loaded(&self, id: ProgramId) -> Option<Arc<Program>> {
        self.inner
            .programs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned()
    }

    /// The programme, loading it from a shared store if another server created it.
    async fn program(&self, id: ProgramId) -> Result<Arc<Program>, EngineError> {
        if let Some(p) = self.loaded(id) {
            return Ok(p);
        }
        if !self.inner.store.shared() {
            return Err(EngineError::UnknownProgram);
        }
        let _guard = self.inner.install_lock.lock().await;
        if let Some(p) = self.loaded(id) {
            return Ok(p);
        }
        let first = self
            .inner
            .store
            .read_entries(id, 0, 1)
            .await
            .map_err(store_error)?;
        if first.is_empty() {
            return Err(EngineError::UnknownProgram);
        }
        let (ledger, mark) = load_program(&*self.inner.store, id).await?;
        Ok(self.install(ledger, mark))
    }

    /// Creates a programme. Idempotent on `request_id`: a retry answers with the genesis
    /// entry's sequence and id. A different request for an existing programme id is
    /// refused with [`Rejection::AlreadyExists`].
    pub async fn create_program(
        &self,
        spec: ProgramSpec,
        request_id: RequestId,
        actor: Actor,
        now: Timestamp,
    ) -> Result<Applied, EngineError> {
        let id = spec.id();
        let _guard = self.inner.install_lock.lock().await;
        let existing = match self.loaded(id) {
            Some(_) => self
                .inner
                .store
                .read_entries(id, 0, 1)
                .await
                .map_err(store_error)?
                .into_iter()
                .next(),
            None => {
                let (ledger, genesis) = Ledger::open(spec.clone(), request_id, actor, now)
                    .map_err(EngineError::Rejected)?;
                let stored = StoredEntry {
                    entry: genesis.clone(),
                    fingerprint: 0,
                };
                match self
                    .inner
                    .store
                    .create_program(&stored)
                    .await
                    .map_err(store_error)?
                {
                    None => {
                        self.install(ledger, CheckpointMark::default());
                        return Ok(Applied::New(genesis));
                    }
                    Some(existing) => {
                        // Another server created it first: serve it from the store.
                        let (ledger, mark) = load_program(&*self.inner.store, id).await?;
                        self.install(ledger, mark);
                        Some(existing)
                    }
                }
            }
        };
        let Some(existing) = existing else {
            return Err(EngineError::Internal(format!(
                "programme {id} has no genesis entry"
            )));
        };
        match existing.entry.event() {
            points_core::Event::ProgramOpened(stored_spec)
                if **stored_spec == spec && existing.entry.request_id() == request_id =>
            {
                Ok(Applied::Duplicate {
                    sequence: 0,
                    id: existing.entry.id(),
                })
            }
            _ => Err(EngineError::Rejected(Rejection::AlreadyExists)),
        }
    }

    /// Every loaded programme's definition.
    pub fn programs(&self) -> Vec<ProgramSpec> {
        let mut out: Vec<ProgramSpec> = self
            .inner
            .programs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|p| p.spec.clone())
            .collect();
        out.sort_by_key(|s| s.id());
        out
    }

    /// Applies one request at the wall clock's time; answers once the entry is durable.
    pub async fn submit(
        &self,
        program: ProgramId,
        request: Request,
    ) -> Result<Applied, EngineError> {
        self.submit_at(program, request, now()).await
    }

    /// [`Engine::submit`] at a given time (the ledger never lets time run backwards).
    pub async fn submit_at(
        &self,
        program: ProgramId,
        request: Request,
        now: Timestamp,
    ) -> Result<Applied, EngineError> {
        self.submit_many_at(program, vec![request], now)
            .await
            .pop()
            .unwrap_or_else(|| Err(EngineError::Internal("no answer".into())))
    }

    /// Applies requests in order; one result per request, in order. Each is answered once
    /// its entry is durable.
    pub async fn submit_many(
        &self,
        program: ProgramId,
        requests: Vec<Request>,
    ) -> Vec<Result<Applied, EngineError>> {
        self.submit_many_at(program, requests, now()).await
    }

    /// [`Engine::submit_many`] at a given time.
    pub async fn submit_many_at(
        &self,
        program: ProgramId,
        requests: Vec<Request>,
        now: Timestamp,
    ) -> Vec<Result<Applied, EngineError>> {
        let n = requests.len();
        if n == 0 {
            return Vec::new();
        }
        let p = match self.program(program).await {
            Ok(p) => p,
            Err(e) => return all_failed(n, &e),
        };
        if p.state.read_only.load(Ordering::SeqCst) {
            return all_failed(n, &read_only_error());
        }
        let queue = p
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(queue) = queue else {
            return all_failed(
                n,
                &EngineError::Unavailable("the engine is shut down".into()),
            );
        };
        let mut pending = Vec::new();
        // The requests go to the writer in jobs of at most `max_batch`, split off the end
        // of the caller's vector: a batch that fits (the usual case) is handed over as it
        // is, not moved request by request into a new vector.
        let max_batch = self.inner.options.max_batch;
        let mut chunks = Vec::with_capacity(n.div_ceil(max_batch));
        let mut rest = requests;
        while rest.len() > max_batch {
            // The last job takes the remainder (1..=max_batch), every other job max_batch.
            let last_len = (rest.len() - 1) % max_batch + 1;
            chunks.push(rest.split_off(rest.len() - last_len));
        }
        chunks.push(rest);
        for chunk in chunks.into_iter().rev() {
            let len = chunk.len();
            let (reply, answer) = oneshot::channel();
            let job = Job {
                requests: chunk,
                now,
                reply,
            };
            // A full queue sheds the chunk rather than waiting without bound (issue 9):
            // QUEUE_DEPTH jobs ahead of it already take the writer many batches.
            let stopped = || EngineError::Unavailable("the programme's writer stopped".into());
            match queue.try_send(Msg::Job(job)) {
                Ok(()) => pending.push((len, Ok(answer))),
                Err(mpsc::error::TrySendError::Full(_)) => pending.push((
                    len,
                    Err(EngineError::Overloaded(
                        "the programme's write queue is full".into(),
                    )),
                )),
                Err(mpsc::error::TrySendError::Closed(_)) => pending.push((len, Err(stopped()))),
            }
        }
        drop(queue);
        let mut out = Vec::with_capacity(n);
        for (len, answer) in pending {
            let stopped = EngineError::Unavailable("the programme's writer stopped".into());
            match answer {
                Ok(answer) => match answer.await {
                    Ok(results) => out.extend(results),
                    Err(_) => out.extend(all_failed(len, &stopped)),
                },
                Err(e) => out.extend(all_failed(len, &e)),
            }
        }
        out
    }

    /// Runs `f` over the programme's ledger (which may include the batch being committed).
    pub fn read<R>(
        &self,
        program: ProgramId,
        f: impl FnOnce(&Ledger) -> R,
    ) -> Result<R, EngineError> {
        let p = self.loaded(program).ok_or(EngineError::UnknownProgram)?;
        let ledger = p
            .state
            .ledger
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        Ok(f(&ledger))
    }

    /// Up to `limit` durable entries from `from_sequence` on, in sequence order.
    pub async fn entries(
        &self,
        program: ProgramId,
        from_sequence: u64,
        limit: usize,
    ) -> Result<Vec<Entry>, EngineError> {
        self.program(program).await?;
        let page = self
            .inner
            .store
            .read_entries(program, from_sequence, limit)
            .await
            .map_err(store_error)?;
        Ok(page.into_iter().map(|s| s.entry).collect())
    }

    /// The chain hashes of up to `limit` durable entries from `from_sequence` on, each
    /// with its sequence, read without the entries themselves ([`Store::read_hashes`]).
    pub async fn entry_hashes(
        &self,
        program: ProgramId,
        from_sequence: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Hash)>, EngineError> {
        self.program(program).await?;
        self.inner
            .store
            .read_hashes(program, from_sequence, limit)
            .await
            .map_err(store_error)
    }

    /// The durable entry with this id.
    pub async fn entry_by_id(
        &self,
        program: ProgramId,
        id: EntryId,
    ) -> Result<Option<Entry>, EngineError> {
        self.program(program).await?;
        let found = self
            .inner
            .store
            .entry_by_id(program, id)
            .await
            .map_err(store_error)?;
        Ok(found.map(|s| s.entry))
    }

    /// Entries of this programme as they become durable (including those other servers
    /// write, once this engine catches up with them).
    pub fn subscribe(
        &self,
        program: ProgramId,
    ) -> Result<broadcast::Receiver<Arc<Entry>>, EngineError> {
        let p = self.loaded(program).ok_or(EngineError::UnknownProgram)?;
        Ok(p.state.events.subscribe())
    }

    /// Reads the stored journal from sequence 0 and checks sequence numbers, ids and the
    /// hash chain, stopping at the first bad entry.
    pub async fn verify_chain(&self, program: ProgramId) -> Result<ChainReport, EngineError> {
        self.program(program).await?;
        let mut report = ChainReport {
            entries_checked: 0,
            head_hash: Hash::GENESIS,
            first_bad: None,
        };
        loop {
            let from = report.entries_checked;
            let page = match self.inner.store.read_entries(program, from, PAGE).await {
                Ok(page) => page,
                Err(StoreError::Corrupt { sequence, message }) => {
                    report.first_bad = Some((sequence, message));
                    return Ok(report);
                }
                Err(e) => return Err(store_error(e)),
            };
            if page.is_empty() {
                return Ok(report);
            }
            for stored in page {
                let entry = &stored.entry;
                let expected = report.entries_checked;
                let fault = if entry.sequence() != expected {
                    Some(format!(
                        "sequence {} where {expected} was expected",
                        entry.sequence()
                    ))
                } else if entry.id() != EntryId::for_sequence(program, expected) {
                    Some("wrong entry id".to_string())
                } else {
                    let computed = entry.compute_hash(&report.head_hash);
                    (computed != entry.hash()).then(|| {
                        format!(
                            "hash mismatch (stored {}, computed {computed})",
                            entry.hash()
                        )
                    })
                };
                if let Some(fault) = fault {
                    report.first_bad = Some((expected, fault));
                    return Ok(report);
                }
                report.entries_checked += 1;
                report.head_hash = entry.hash();
            }
        }
    }

    /// Audits the stored journal against the live ledger (every domain rule, the chain,
    /// and replay equality).
    pub async fn audit(&self, program: ProgramId) -> Result<points_core::AuditReport, EngineError> {
        let p = self.program(program).await?;
        let live = p
            .state
            .ledger
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let end = live.next_sequence();
        let mut auditor = Auditor::new();
        let mut from = 0u64;
        while from < end {
            let want = usize::try_from(end - from).unwrap_or(PAGE).min(PAGE);
            let page = self
                .inner
                .store
                .read_entries(program, from, want)
                .await
                .map_err(store_error)?;
            if page.is_empty() {
                break;
            }
            for stored in &page {
                auditor.check_entry(&stored.entry);
            }
            from += page.len() as u64;
        }
        Ok(auditor.finish(Some(&live)))
    }

    /// Inserts or replaces an API key.
    pub async fn put_api_key(&self, key: ApiKeyRecord) -> Result<(), EngineError> {
        self.inner.store.put_api_key(key).await.map_err(store_error)
    }

    /// Every API key, revoked ones included.
    pub async fn api_keys(&self) -> Result<Vec<ApiKeyRecord>, EngineError> {
        self.inner.store.api_keys().await.map_err(store_error)
    }

    /// Revokes a key; false when there is no such key.
    pub async fn revoke_api_key(&self, id: uuid::Uuid) -> Result<bool, EngineError> {
        self.inner
            .store
            .revoke_api_key(id)
            .await
            .map_err(store_error)
    }

    /// Stops accepting writes, lets the writers finish what is queued, and waits for them.
    pub async fn shutdown(&self) {
        let programs: Vec<Arc<Program>> = self
            .inner
            .programs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for p in programs {
            p.queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
        }
        let writers: Vec<_> = self
            .inner
            .writers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
            .collect();
        let joined = tokio::task::spawn_blocking(move || {
            for w in writers {
                if w.join().is_err() {
                    tracing::error!("a writer thread panicked");
                }
            }
        })
        .await;
        if joined.is_err() {
            tracing::error!("could not wait for the writers");
        }
    }

    /// What the writers have done since the engine opened.
    pub fn stats(&self) -> EngineStats {
        let c = &self.inner.counters;
        EngineStats {
            batches: c.batches.load(Ordering::Relaxed),
            entries: c.entries.load(Ordering::Relaxed),
            conflicts: c.conflicts.load(Ordering::Relaxed),
            failed_commits: c.failed_commits.load(Ordering::Relaxed),
        }
    }

    /// `memory`, `sqlite` or `postgres`.
    pub fn store_kind(&self) -> &'static str {
        self.inner.store.kind()
    }

    /// Whether the programme refuses writes after a storage failure it could not recover.
    pub fn is_read_only(&self, program: ProgramId) -> Result<bool, EngineError> {
        let p = self.loaded(program).ok_or(EngineError::UnknownProgram)?;
        Ok(p.state.read_only.load(Ordering::SeqCst))
    }

    /// Test hook: the store's next `count` commits fail.
    #[doc(hidden)]
    pub fn inject_commit_failures(&self, count: u32) {
        self.inner.store.inject_commit_failures(count);
    }

    /// Stores a signed disclosure checkpoint (a Merkle tree head, issue 7); the first one
    /// stored for a size is kept.
    pub async fn put_tree_head(
        &self,
        program: ProgramId,
        head: &points_core::checkpoint::SignedCheckpoint,
    ) -> Result<(), EngineError> {
        self.program(program).await?;
        self.inner
            .store
            .put_tree_head(program, head)
            .await
            .map_err(store_error)
    }

    /// The stored tree head of exactly `size` entries, or the largest one for `None`.
    pub async fn tree_head(
        &self,
        program: ProgramId,
        size: Option<u64>,
    ) -> Result<Option<points_core::checkpoint::SignedCheckpoint>, EngineError> {
        self.program(program).await?;
        self.inner
            .store
            .tree_head(program, size)
            .await
            .map_err(store_error)
    }
}

fn read_only_error() -> EngineError {
    EngineError::Unavailable("programme is read-only after a storage failure".into())
}

/// Stores a checkpoint, logging the outcome. Returns whether it was stored.
fn store_checkpoint(
    runtime: &tokio::runtime::Handle,
    store: &dyn Store,
    program: ProgramId,
    checkpoint: &Checkpoint,
) -> bool {
    let started = std::time::Instant::now();
    match runtime.block_on(store.put_checkpoint(program, checkpoint)) {
        Ok(()) => {
            let store_ms = started.elapsed().as_millis();
            tracing::debug!(%program, at = checkpoint.next_sequence, bytes = checkpoint.snapshot.len(), store_ms, "checkpoint written");
            true
        }
        Err(e) => {
            tracing::warn!(%program, error = %e, "checkpoint not written");
            false
        }
    }
}

/// A programme's writer: runs on its own thread.
struct Writer {
    state: Arc<ProgramState>,
    counters: Arc<Counters>,
    store: Arc<dyn Store>,
    runtime: tokio::runtime::Handle,
    options: EngineOptions,
    /// The checkpoint the ledger was loaded from.
    checkpointed: CheckpointMark,
}

/// The most decided batches waiting for the committer (single-writer stores). While one
/// transaction syncs, the writer decides up to this many more, and the committer then
/// stores all of them in the next transaction. With the store stalled, the programme holds
/// at most twice this many batches plus one (up to this many in the committer's hands, as
/// many waiting for it, and the one the writer waits to hand over) beyond its queue's
/// [`QUEUE_DEPTH`] jobs; every further write is shed.
pub const PIPELINE_DEPTH: usize = 16;

/// A batch the writer decided, on its way to the committer thread. Its callers are answered
/// once its entries (and those of every batch before it) are durable.
struct Decided {
    /// The pipeline's generation when the batch was decided (see [`Pipeline`]).
    generation: u64,
    /// The sequence of the first fresh entry.
    start: u64,
    fresh: Vec<StoredEntry>,
    answers: Vec<Result<Applied, EngineError>>,
    jobs: Vec<Job>,
}

/// What the writer and the committer of a single-writer store share.
#[derive(Default)]
struct Pipeline {
    /// Bumped, under the ledger's write lock, whenever a failed commit rolls the ledger back.
    /// A batch decided under an older generation was decided against effects that are gone,
    /// so it is failed rather than committed.
    generation: AtomicU64,
    flow: Mutex<Flow>,
    /// Signalled when the last batch in flight is answered, or the committer stops.
    idle: std::sync::Condvar,
}

/// The batches between the writer and the committer.
#[derive(Default)]
struct Flow {
    /// Decided batches not yet answered.
    in_flight: usize,
    /// The committer thread has ended (it panicked, or the writer closed its channel).
    /// Batches it had not answered never will be, so `in_flight` no longer counts.
    committer_gone: bool,
}

impl Pipeline {
    fn flow(&self) -> std::sync::MutexGuard<'_, Flow> {
        self.flow.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn begin(&self) {
        self.flow().in_flight += 1;
    }

    fn end(&self, batches: usize) {
        let mut flow = self.flow();
        debug_assert!(flow.in_flight >= batches, "more batches ended than began");
        flow.in_flight = flow.in_flight.saturating_sub(batches);
        if flow.in_flight == 0 {
            self.idle.notify_all();
        }
    }

    /// Marks the committer gone and wakes the writer if it waits for it.
    fn committer_gone(&self) {
        self.flow().committer_gone = true;
        self.idle.notify_all();
    }

    /// Waits until every decided batch has been answered, so that everything in the ledger
    /// is durable: `true`. `false` if the committer stopped first: then some decided batches
    /// will never be committed and the ledger must be rolled back.
    fn wait_idle(&self) -> bool {
        let mut flow = self.flow();
        while flow.in_flight > 0 && !flow.committer_gone {
            flow = self.idle.wait(flow).unwrap_or_else(PoisonError::into_inner);
        }
        !flow.committer_gone
    }
}

/// Marks the committer gone when its thread ends, by return or by panic, so the writer
/// never waits for batches nobody will answer.
struct CommitterDeparture<'a>(&'a Pipeline);

impl Drop for CommitterDeparture<'_> {
    fn drop(&mut self) {
        self.0.committer_gone();
    }
}

/// Answers each job with its share of `answers` (in job order).
fn reply(jobs: Vec<Job>, mut answers: Vec<Result<Applied, EngineError>>) {
    for job in jobs {
        let rest = answers.split_off(job.requests.len().min(answers.len()));
        let mine = std::mem::replace(&mut answers, rest);
        // A caller that gave up waiting is no reason to stop.
        let _ = job.reply.send(mine);
    }
}

/// Takes the first queued job (or `carried`) and as many more as fit in one batch; ticks
/// met on the way run `on_tick`. `None` once the queue is closed and empty.
fn gather(
    rx: &mut mpsc::Receiver<Msg>,
    carried: &mut Option<Job>,
    max_batch: usize,
    mut on_tick: impl FnMut(),
) -> Option<Vec<Job>> {
    let first = loop {
        match carried.take() {
            Some(job) => break job,
            None => match rx.blocking_recv() {
                Some(Msg::Job(job)) => break job,
                Some(Msg::Tick) => on_tick(),
                None => return None,
            },
        }
    };
    let mut jobs = vec![first];
    top_up(rx, carried, &mut jobs, max_batch);
    Some(jobs)
}

/// Adds to `jobs`, without waiting, the jobs queued since, while the batch stays within
/// `max_batch` requests; a job that would not fit is kept in `carried` for the next batch.
fn top_up(
    rx: &mut mpsc::Receiver<Msg>,
    carried: &mut Option<Job>,
    jobs: &mut Vec<Job>,
    max_batch: usize,
) {
    if carried.is_some() {
        // The batch was already cut short by the carried job; it goes first next time.
        return;
    }
    let mut count: usize = jobs.iter().map(|j| j.requests.len()).sum();
    while count < max_batch {
        match rx.try_recv() {
            Ok(Msg::Job(job)) if count + job.requests.len() > max_batch => {
                *carried = Some(job);
                break;
            }
            Ok(Msg::Job(job)) => {
                count += job.requests.len();
                jobs.push(job);
            }
            Ok(Msg::Tick) => {}
            Err(_) => break,
        }
    }
}

/// The requests of `jobs`, each with its job's time.
fn requests_of(jobs: &[Job]) -> Vec<(&Request, Timestamp)> {
    jobs.iter()
        .flat_map(|j| j.requests.iter().map(move |r| (r, j.now)))
        .collect()
}

impl Writer {
    fn run(self, rx: mpsc::Receiver<Msg>) {
        if self.store.shared() {
            self.run_shared(rx);
        } else {
            self.run_pipelined(rx);
        }
    }

    /// The loop for a shared store (PostgreSQL): each batch is locked, decided, committed
    /// and answered before the next, since another server may write in between.
    fn run_shared(self, rx: mpsc::Receiver<Msg>) {
        let checkpoints = Checkpoints::new(&self);
        self.run_serially(rx, None, Vec::new(), checkpoints);
    }

    /// Decides, commits and answers one batch at a time, starting with `ahead` (jobs already
    /// taken from the queue) and `carried`.
    fn run_serially(
        self,
        mut rx: mpsc::Receiver<Msg>,
        mut carried: Option<Job>,
        mut ahead: Vec<Job>,
        mut checkpoints: Checkpoints,
    ) {
        loop {
            let mut jobs = if ahead.is_empty() {
                match gather(&mut rx, &mut carried, self.options.max_batch, || {
                    self.tick();
                }) {
                    Some(jobs) => jobs,
                    None => break,
                }
            } else {
                std::mem::take(&mut ahead)
            };
            // On a shared store, take the programme's lock before building the batch, and
            // then add whatever queued while the lock was awaited: while another server
            // holds the lock this server's callers keep arriving, and they join this batch
            // instead of waiting for a turn of their own. A batch's turn costs about the
            // same however many entries it holds, so under contention batches grow instead
            // of turns multiplying.
            let writable = !self.state.read_only.load(Ordering::SeqCst);
            let locked = if self.store.shared() && writable {
                let locked = self.lock_shared();
                if locked.is_ok() {
                    top_up(&mut rx, &mut carried, &mut jobs, self.options.max_batch);
                }
                Some(locked)
            } else {
                None
            };
            let requests = requests_of(&jobs);
            let (answers, durable) = self.decide_and_commit(&requests, locked);
            drop(requests);
            for entry in durable {
                // No subscriber is not an error.
                let _ = self.state.events.send(entry);
            }
            reply(jobs, answers);
            checkpoints.maybe_take(&self);
        }
        checkpoints.finish();
    }

    /// The committer thread ended while the writer ran: a bug (a panic in the store, say),
    /// since it only ends when the writer closes its channel. The batches it held, or had
    /// not yet taken, were dropped, so their callers have been told the writer stopped; some
    /// of them may be durable all the same. The ledger is rebuilt from what the store holds
    /// and this programme goes on committing on the writer thread, one batch at a time.
    fn committer_lost(
        self,
        rx: mpsc::Receiver<Msg>,
        carried: Option<Job>,
        ahead: Vec<Job>,
        checkpoints: Checkpoints,
        committer: std::thread::JoinHandle<()>,
    ) {
        tracing::error!(program = %self.state.id, "the committer stopped; committing on the writer from now on");
        if committer.join().is_err() {
            tracing::error!(program = %self.state.id, "the committer thread panicked");
        }
        self.counters.failed_commits.fetch_add(1, Ordering::Relaxed);
        self.roll_back_locked();
        self.run_serially(rx, carried, ahead, checkpoints);
    }

    /// The loop for a single-writer store (SQLite, memory): this thread decides batches
    /// and a committer thread stores them, so the next batch is decided while the last one
    /// syncs, and batches that pile up during a sync share the next transaction.
    fn run_pipelined(self, mut rx: mpsc::Receiver<Msg>) {
        let pipeline = Arc::new(Pipeline::default());
        let (to_committer, from_writer) = std::sync::mpsc::sync_channel(PIPELINE_DEPTH);
        let committer = Committer {
            state: self.state.clone(),
            counters: self.counters.clone(),
            store: self.store.clone(),
            runtime: self.runtime.clone(),
            pipeline: pipeline.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name(format!("points-commit-{}", self.state.id))
            .spawn(move || committer.run(&from_writer));
        let committer = match spawned {
            Ok(thread) => thread,
            Err(e) => {
                tracing::error!(program = %self.state.id, error = %e, "cannot start the committer; committing on the writer");
                return self.run_shared(rx);
            }
        };
        let mut checkpoints = Checkpoints::new(&self);
        let mut carried: Option<Job> = None;
        let mut lost = false;
        while let Some(jobs) = gather(&mut rx, &mut carried, self.options.max_batch, || {
            // Recovery reloads the ledger, which must not race a batch in flight.
            if pipeline.wait_idle() {
                self.tick();
            } else {
                lost = true;
            }
        }) {
            if lost {
                return self.committer_lost(rx, carried, jobs, checkpoints, committer);
            }
            let requests = requests_of(&jobs);
            let n = requests.len();
            if self.state.read_only.load(Ordering::SeqCst) {
                drop(requests);
                reply(jobs, all_failed(n, &read_only_error()));
                continue;
            }
            let (generation, start, answers, fresh) = {
                let mut ledger = self
                    .state
                    .ledger
                    .write()
                    .unwrap_or_else(PoisonError::into_inner);
                let generation = pipeline.generation.load(Ordering::SeqCst);
                let start = ledger.next_sequence();
                let (answers, fresh) = decide(&mut ledger, &requests);
                (generation, start, answers, fresh)
            };
            drop(requests);
            pipeline.begin();
            let decided = Decided {
                generation,
                start,
                fresh,
                answers,
                jobs,
            };
            if let Err(std::sync::mpsc::SendError(lost)) = to_committer.send(decided) {
                // The batch's effects are in the ledger until `committer_lost` rolls it
                // back, before anything else is decided.
                let n = lost.answers.len();
                reply(
                    lost.jobs,
                    all_failed(
                        n,
                        &EngineError::Unavailable(
                            "the commit thread stopped; nothing of the batch is acknowledged"
                                .into(),
                        ),
                    ),
                );
                return self.committer_lost(rx, carried, Vec::new(), checkpoints, committer);
            }
            if checkpoints.due(&self) {
                // A checkpoint must hold only durable entries.
                if !pipeline.wait_idle() {
                    return self.committer_lost(rx, carried, Vec::new(), checkpoints, committer);
                }
                checkpoints.maybe_take(&self);
            }
        }
        drop(to_committer);
        if committer.join().is_err() {
            tracing::error!(program = %self.state.id, "the committer thread panicked");
        }
        checkpoints.finish();
    }

    /// Periodic work: retry recovery of a read-only programme, and follow other writers of
    /// a shared store so that reads and subscribers see their entries.
    fn tick(&self) {
        if self.state.read_only.load(Ordering::SeqCst) {
            let mut ledger = self
                .state
                .ledger
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            if let Ok(reloaded) = self
                .runtime
                .block_on(load_ledger(&*self.store, self.state.id))
            {
                *ledger = reloaded;
                self.state.read_only.store(false, Ordering::SeqCst);
                tracing::info!(program = %self.state.id, "storage is back; programme accepts writes again");
            }
            return;
        }
        if !self.store.shared() {
            return;
        }
        // Look without the write lock first: usually nobody else wrote.
        let next = self
            .state
            .ledger
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .next_sequence();
        match self
            .runtime
            .block_on(self.store.read_entries(self.state.id, next, 1))
        {
            Ok(page) if page.is_empty() => return,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(program = %self.state.id, error = %e, "cannot follow the shared journal");
                return;
            }
        }
        let mut seen = Vec::new();
        {
            let mut ledger = self
                .state
                .ledger
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            let caught_up = self.runtime.block_on(catch_up(
                &mut ledger,
                &*self.store,
                self.state.id,
                Some(&mut seen),
            ));
            if let Err(e) = caught_up {
                tracing::warn!(program = %self.state.id, error = %e, "cannot follow the shared journal");
            }
        }
        for entry in seen {
            let _ = self.state.events.send(entry);
        }
    }

    /// A checkpoint of the current state. Only this thread mutates the ledger, and
    /// between batches everything in it is durable.
    fn snapshot(&self, last_bytes: &AtomicUsize) -> Checkpoint {
        checkpoint_of(
            &self
                .state
                .ledger
                .read()
                .unwrap_or_else(PoisonError::into_inner),
            last_bytes,
        )
    }

    /// Stores a checkpoint. Returns whether it was stored.
    fn store_checkpoint(&self, checkpoint: &Checkpoint) -> bool {
        store_checkpoint(&self.runtime, &*self.store, self.state.id, checkpoint)
    }

    /// Serialises `ledger` (a copy of this writer's) and stores it as a checkpoint on a thread
    /// of its own; `None` if no thread could be started (then the checkpoint is taken and
    /// stored here and now).
    fn store_in_background(
        &self,
        ledger: Ledger,
        last_bytes: Arc<AtomicUsize>,
    ) -> Option<std::thread::JoinHandle<()>> {
        let (runtime, store, program) = (self.runtime.clone(), self.store.clone(), self.state.id);
        let hint = last_bytes.clone();
        let spawned = std::thread::Builder::new()
            .name("points-checkpoint".to_owned())
            .spawn(move || {
                let started = std::time::Instant::now();
                let at = ledger.next_sequence();
                let mut bytes = 0;
                // The snapshot goes to the store as it is encoded: gathered into one buffer
                // first, it cost as much fresh memory again as the copy, and most of the
                // checkpoint's time went into the kernel zeroing those pages.
                let stored = store.put_checkpoint_streamed(
                    &runtime,
                    program,
                    at,
                    ledger.head_hash(),
                    // As `checkpoint_of` sizes its buffer, for a store that gathers.
                    {
                        let last = hint.load(Ordering::Relaxed);
                        last.saturating_add(last / 2)
                    },
                    &mut |sink| {
                        ledger.snapshot_into(CHECKPOINT_PIECE_BYTES, |piece| {
                            bytes += piece.len();
                            sink(piece);
                        });
                    },
                );
                let write_ms = started.elapsed().as_millis();
                match stored {
                    Ok(()) => {
                        hint.store(bytes, Ordering::Relaxed);
                        tracing::debug!(%program, at, bytes, write_ms, "checkpoint written");
                    }
                    Err(e) => tracing::warn!(%program, error = %e, "checkpoint not written"),
                }
            });
        match spawned {
            Ok(thread) => Some(thread),
            Err(e) => {
                tracing::warn!(program = %self.state.id, error = %e, "no checkpoint thread; storing the checkpoint on the writer");
                self.store_checkpoint(&self.snapshot(&last_bytes));
                None
            }
        }
    }

    /// Takes a shared store's lock on the programme's journal (nothing for a single-writer
    /// store), reading the entries other servers appended since this ledger's end.
    fn lock_shared(&self) -> Result<Option<Locked>, StoreError> {
        if !self.store.shared() {
            return Ok(None);
        }
        // Only this thread appends, so the ledger's next sequence cannot move between here
        // and the write lock the batch is decided under.
        let from = self
            .state
            .ledger
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .next_sequence();
        self.runtime.block_on(self.store.lock(self.state.id, from))
    }

    /// Ends the batch transaction [`Store::lock`] opened, when nothing is to be appended.
    fn unlock(&self) {
        if let Err(e) = self.runtime.block_on(self.store.unlock(self.state.id)) {
            // The store rolls the transaction back when its connection goes.
            tracing::warn!(program = %self.state.id, error = %e, "cannot release the shared journal's lock");
        }
    }

    /// Takes the write lock and rolls the ledger back to what the store holds.
    fn roll_back_locked(&self) {
        let mut ledger = self
            .state
            .ledger
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        self.roll_back(&mut ledger);
    }

    /// Rebuilds the ledger from the store after a failed or lost commit. On failure the
    /// programme goes read-only.
    fn roll_back(&self, ledger: &mut Ledger) {
        roll_back(&self.runtime, &*self.store, &self.state, ledger);
    }

    /// Decides the batch and commits its new entries in one transaction. Returns one answer
    /// per request and the entries that became durable (including other writers' entries
    /// read while catching up).
    ///
    /// `first_lock` is the shared store's lock when the caller has already taken it for the
    /// first attempt; otherwise (and for every retry) it is taken here.
    fn decide_and_commit(
        &self,
        requests: &[(&Request, Timestamp)],
        mut first_lock: Option<Result<Option<Locked>, StoreError>>,
    ) -> (Vec<Result<Applied, EngineError>>, Vec<Arc<Entry>>) {
        let n = requests.len();
        if self.state.read_only.load(Ordering::SeqCst) {
            if matches!(first_lock, Some(Ok(Some(_)))) {
                self.unlock();
            }
            return (all_failed(n, &read_only_error()), Vec::new());
        }
        let mut durable = Vec::new();
        let mut attempt = 0;
        loop {
            // Decide under the write lock, then let go of it for the commit: the fsync (or
            // the PostgreSQL round trip) is the slow part, and while it runs request handlers
            // must be able to read, decode and queue the next batch. Only this thread ever
            // mutates the ledger, so nothing can slip in between. Readers may see the batch
            // a few milliseconds before it is durable; callers are answered only after.
            // On a shared store, take the programme's write lock first: other servers'
            // batches then wait instead of losing the race at commit (and each loss would
            // cost a reload of the ledger). The lock also says whether anyone else wrote.
            let mut locked = match first_lock.take().unwrap_or_else(|| self.lock_shared()) {
                Ok(locked) => locked,
                Err(e) => {
                    tracing::error!(program = %self.state.id, error = %e, "cannot lock the shared journal");
                    return (all_failed(n, &store_error(e)), durable);
                }
            };
            let (start, answers, fresh) = {
                let mut ledger = self
                    .state
                    .ledger
                    .write()
                    .unwrap_or_else(PoisonError::into_inner);
                let behind = |ledger: &Ledger, locked: &Option<Locked>| {
                    locked
                        .as_ref()
                        .is_none_or(|l| l.next != ledger.next_sequence())
                };
                let mut caught_up = Ok(());
                if self.store.shared() && behind(&ledger, &locked) {
                    // The lock brought the other writers' entries (or the first page of
                    // them) with it; read on only if there are more.
                    if let Some(first) = locked.as_mut().map(|l| std::mem::take(&mut l.entries)) {
                        caught_up = absorb(&mut ledger, first, Some(&mut durable));
                    }
                    if caught_up.is_ok() && behind(&ledger, &locked) {
                        caught_up = self.runtime.block_on(catch_up(
                            &mut ledger,
                            &*self.store,
                            self.state.id,
                            Some(&mut durable),
                        ));
                    }
                    if let Err(e) = caught_up {
                        self.unlock();
                        // The ledger holds only stored entries: nothing to roll back.
                        tracing::error!(program = %self.state.id, error = %e, "cannot catch up with the shared journal");
                        return (all_failed(n, &EngineError::from(e)), durable);
                    }
                }
                let start = ledger.next_sequence();
                let (answers, fresh) = decide(&mut ledger, requests);
                (start, answers, fresh)
            };
            if fresh.is_empty() {
                self.unlock();
                return (answers, durable);
            }
            let committed = self
                .runtime
                .block_on(self.store.append(self.state.id, start, &fresh));
            match committed {
                Ok(()) => {
                    self.counters.batches.fetch_add(1, Ordering::Relaxed);
                    self.counters
                        .entries
                        .fetch_add(fresh.len() as u64, Ordering::Relaxed);
                    durable.extend(fresh.into_iter().map(|s| Arc::new(s.entry)));
                    return (answers, durable);
                }
                Err(StoreError::Conflict) if self.store.shared() && attempt < CONFLICT_RETRIES => {
                    attempt += 1;
                    self.counters.conflicts.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(program = %self.state.id, attempt, "lost the race to another writer; deciding again");
                    self.roll_back_locked();
                    if self.state.read_only.load(Ordering::SeqCst) {
                        return (all_failed(n, &read_only_error()), durable);
                    }
                }
                Err(e) => {
                    self.counters.failed_commits.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(program = %self.state.id, error = %e, entries = fresh.len(), "commit failed; nothing of the batch is acknowledged");
                    self.roll_back_locked();
                    return (all_failed(n, &store_error(e)), durable);
                }
            }
        }
    }
}

/// A checkpoint of `ledger`. `last_bytes` is the size of the programme's last snapshot
/// (0 if none is known), and becomes this one's.
fn checkpoint_of(ledger: &Ledger, last_bytes: &AtomicUsize) -> Checkpoint {
    // Room for the last snapshot and half as much again, so the buffer is written once
    // rather than regrown (and copied) by doubling; room never written is only address
    // space.
    let last = last_bytes.load(Ordering::Relaxed);
    let snapshot = ledger.snapshot_with_capacity(last.saturating_add(last / 2));
    last_bytes.store(snapshot.len(), Ordering::Relaxed);
    Checkpoint {
        next_sequence: ledger.next_sequence(),
        head_hash: ledger.head_hash(),
        snapshot,
    }
}

/// Rebuilds `ledger` from the store after a failed or lost commit. On failure the programme
/// goes read-only.
fn roll_back(
    runtime: &tokio::runtime::Handle,
    store: &dyn Store,
    state: &ProgramState,
    ledger: &mut Ledger,
) {
    match runtime.block_on(load_ledger(store, state.id)) {
        Ok(reloaded) => *ledger = reloaded,
        Err(e) => {
            tracing::error!(program = %state.id, error = %e, "cannot reload the ledger after a failed commit; programme is read-only");
            state.read_only.store(true, Ordering::SeqCst);
        }
    }
}

/// How many requests of a batch `decide` hints to the ledger before applying them.
const PREFETCH_GROUP: usize = 8;

/// Applies each request to the ledger: one answer per request, and the new entries to store.
fn decide(
    ledger: &mut Ledger,
    requests: &[(&Request, Timestamp)],
) -> (Vec<Result<Applied, EngineError>>, Vec<StoredEntry>) {
    let mut answers = Vec::with_capacity(requests.len());
    let mut fresh = Vec::new();
    // At a million members each request's lookups miss the cache twice: the index slot,
    // then the state it points at. The slots of the next group are started while this
    // group is applied, and this group's states just before (see `Ledger::prefetch`), so
    // that the misses overlap instead of stalling each apply in turn.
    let mut groups = requests.chunks(PREFETCH_GROUP).peekable();
    if let Some(first) = groups.peek() {
        for (request, _) in *first {
            ledger.prefetch(request);
        }
    }
    while let Some(group) = groups.next() {
        if let Some(next) = groups.peek() {
            for (request, _) in *next {
                ledger.prefetch(request);
            }
        }
        for (request, _) in group {
            ledger.prefetch_state(request);
        }
        for (request, at) in group {
            answers.push(match ledger.apply(request, *at) {
                Ok(Applied::New(entry)) => {
                    // The ledger kept the fingerprint it just computed for this request.
                    let fingerprint = ledger
                        .fingerprint_of(entry.sequence())
                        .unwrap_or_else(|| Ledger::request_fingerprint(request));
                    fresh.push(StoredEntry {
                        entry: entry.clone(),
                        fingerprint,
                    });
                    Ok(Applied::New(entry))
                }
                Ok(duplicate) => Ok(duplicate),
                Err(rejection) => Err(EngineError::Rejected(rejection)),
            });
        }
    }
    (answers, fresh)
}

/// The pieces a checkpoint's snapshot is written in (its big tables go whole).
const CHECKPOINT_PIECE_BYTES: usize = 1 << 20;

/// When the writer takes ledger checkpoints, and the one being stored in the background.
struct Checkpoints {
    /// The next sequence of the latest checkpoint.
    last: u64,
    /// The checkpoint being stored on a thread of its own, if any.
    storing: Option<std::thread::JoinHandle<()>>,
    /// The size of the latest snapshot, to size the next one's buffer.
    last_bytes: Arc<AtomicUsize>,
}

impl Checkpoints {
    /// Counts from the checkpoint the ledger was loaded from (reading the store's latest
    /// again would read and check hundreds of megabytes a second time at start-up).
    fn new(writer: &Writer) -> Self {
        Checkpoints {
            last: writer.checkpointed.next_sequence,
            storing: None,
            last_bytes: Arc::new(AtomicUsize::new(writer.checkpointed.bytes)),
        }
    }

    /// Whether a checkpoint is due and none is still being stored.
    fn due(&self, writer: &Writer) -> bool {
        let next = writer
            .state
            .ledger
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .next_sequence();
        let busy = self.storing.as_ref().is_some_and(|t| !t.is_finished());
        next >= self.last.saturating_add(writer.options.snapshot_every) && !busy
    }

    /// Takes and stores a checkpoint if one is due. Call only when every entry in the ledger
    /// is durable.
    fn maybe_take(&mut self, writer: &Writer) {
        if !self.due(writer) {
            return;
        }
        if writer.options.background_checkpoints {
            // Copying the ledger takes a fraction of the time serialising it does, so the
            // writer copies it (leaving out what a snapshot does not hold) and the checkpoint
            // thread serialises the copy.
            let started = std::time::Instant::now();
            let copy = writer
                .state
                .ledger
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .copy_for_snapshot();
            // Every write waits while the writer copies, so operators see how long.
            let copy_ms = started.elapsed().as_millis();
            tracing::debug!(program = %writer.state.id, at = copy.next_sequence(), copy_ms, "ledger copied for a checkpoint");
            // On failure, try again after the next interval rather than every batch.
            self.last = copy.next_sequence();
            self.storing = writer.store_in_background(copy, self.last_bytes.clone());
        } else {
            let checkpoint = writer.snapshot(&self.last_bytes);
            self.last = checkpoint.next_sequence;
            writer.store_checkpoint(&checkpoint);
        }
    }

    /// Lets the last checkpoint finish before the store goes away.
    fn finish(self) {
        if let Some(thread) = self.storing {
            let _ = thread.join();
        }
    }
}

/// Stores the batches a single-writer store's writer decided, in order, merging those that
/// wait into one transaction, and answers their callers once they are durable.
struct Committer {
    state: Arc<ProgramState>,
    counters: Arc<Counters>,
    store: Arc<dyn Store>,
    runtime: tokio::runtime::Handle,
    pipeline: Arc<Pipeline>,
}

impl Committer {
    fn run(self, rx: &std::sync::mpsc::Receiver<Decided>) {
        let _departure = CommitterDeparture(&self.pipeline);
        while let Ok(first) = rx.recv() {
            let mut batches = vec![first];
            while batches.len() < PIPELINE_DEPTH {
                match rx.try_recv() {
                    Ok(more) => batches.push(more),
                    Err(_) => break,
                }
            }
            let count = batches.len();
            self.commit(batches);
            self.pipeline.end(count);
        }
    }

    /// Commits `batches` (consecutive, in decision order) in one transaction and answers
    /// them; on failure answers them all `Unavailable` and rolls the ledger back.
    fn commit(&self, batches: Vec<Decided>) {
        let current = self.pipeline.generation.load(Ordering::SeqCst);
        let (live, stale): (Vec<Decided>, Vec<Decided>) =
            batches.into_iter().partition(|b| b.generation == current);
        for b in stale {
            // Decided against a batch whose commit failed: its answers may rest on
            // effects that were rolled back.
            let n = b.answers.len();
            reply(
                b.jobs,
                all_failed(
                    n,
                    &EngineError::Unavailable(
                        "an earlier commit failed; nothing of the batch is acknowledged".into(),
                    ),
                ),
            );
        }
        let Some(start) = live.iter().find(|b| !b.fresh.is_empty()).map(|b| b.start) else {
            // Nothing new to store (duplicates and rejections): every batch before these
            // is already durable.
            for b in live {
                reply(b.jobs, b.answers);
            }
            return;
        };
        let mut fresh = Vec::with_capacity(live.iter().map(|b| b.fresh.len()).sum());
        let mut answered = Vec::with_capacity(live.len());
        for b in live {
            debug_assert!(
                b.fresh.is_empty() || b.start == start + fresh.len() as u64,
                "decided batches are consecutive"
            );
            fresh.extend(b.fresh);
            answered.push((b.jobs, b.answers));
        }
        match self
            .runtime
            .block_on(self.store.append(self.state.id, start, &fresh))
        {
            Ok(()) => {
                self.counters.batches.fetch_add(1, Ordering::Relaxed);
                self.counters
                    .entries
                    .fetch_add(fresh.len() as u64, Ordering::Relaxed);
                for stored in fresh {
                    // No subscriber is not an error.
                    let _ = self.state.events.send(Arc::new(stored.entry));
                }
                for (jobs, answers) in answered {
                    reply(jobs, answers);
                }
            }
            Err(e) => {
                self.counters.failed_commits.fetch_add(1, Ordering::Relaxed);
                tracing::error!(program = %self.state.id, error = %e, entries = fresh.len(), "commit failed; nothing of the batch is acknowledged");
                {
                    let mut ledger = self
                        .state
                        .ledger
                        .write()
                        .unwrap_or_else(PoisonError::into_inner);
                    self.pipeline.generation.fetch_add(1, Ordering::SeqCst);
                    roll_back(&self.runtime, &*self.store, &self.state, &mut ledger);
                }
                let error = store_error(e);
                for (jobs, answers) in answered {
                    reply(jobs, all_failed(answers.len(), &error));
                }
            }
        }
    }
}
