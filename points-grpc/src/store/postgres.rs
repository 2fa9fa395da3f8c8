//! The shared store: PostgreSQL via `tokio-postgres`, for several server processes.
//!
//! Portable to CockroachDB and YugabyteDB: no sequences or serial ids, no advisory locks,
//! and every per-programme table's primary key starts with `program_id`, so a programme's
//! data can live on one shard. Ids are stored as 16-byte `BYTEA`.
//!
//! Writers coordinate through the programme's `heads` row. A batch's transaction starts by
//! locking it (`SELECT ... FOR UPDATE`, [`Store::lock`]), which also tells the engine
//! whether another server wrote since; the engine catches up if so, decides, and the same
//! transaction advances the row with `UPDATE heads SET next_seq = $new, head_hash = $h
//! WHERE program_id = $p AND next_seq = $old` and inserts the entries only if that updated
//! the row (one statement, sent with its `COMMIT` in one round trip). Servers therefore
//! take turns instead of deciding in parallel and throwing all but one batch away. Zero
//! rows updated still means another writer got there first ([`StoreError::Conflict`]; the
//! engine catches up and decides again), for writers that do not lock. The unique
//! `(program_id, request_id)` index keeps retries idempotent across servers.
//!
//! Migrations are ordered SQL strings recorded in `schema_migrations`, applied at start.

use super::{
    decode_entry, hash_from_tail, BoxFuture, Checkpoint, Faults, Locked, Store, StoreError,
    StoreResult, StoredEntry, LOCK_PAGE,
};
use crate::engine::ApiKeyRecord;
use points_core::checkpoint::SignedCheckpoint;
use points_core::{EntryId, Hash, ProgramId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Statement};

/// The schema, in order. Never edit a released migration: add a new one.
pub const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        "
CREATE TABLE programs (
    program_id BYTEA NOT NULL,
    spec BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (program_id)
);
CREATE TABLE heads (
    program_id BYTEA NOT NULL,
    next_seq BIGINT NOT NULL,
    head_hash BYTEA NOT NULL,
    PRIMARY KEY (program_id)
);
CREATE TABLE entries (
    program_id BYTEA NOT NULL,
    seq BIGINT NOT NULL,
    request_id BYTEA NOT NULL,
    fingerprint BYTEA NOT NULL,
    entry_id BYTEA NOT NULL,
    body BYTEA NOT NULL,
    PRIMARY KEY (program_id, seq)
);
CREATE UNIQUE INDEX entries_request ON entries (program_id, request_id);
CREATE INDEX entries_entry_id ON entries (program_id, entry_id);
CREATE TABLE checkpoints (
    program_id BYTEA NOT NULL,
    next_seq BIGINT NOT NULL,
    head_hash BYTEA NOT NULL,
    snapshot BYTEA NOT NULL,
    PRIMARY KEY (program_id, next_seq)
);
-- Keys not limited to a programme use sixteen zero bytes as program_id.
CREATE TABLE api_keys (
    program_id BYTEA NOT NULL,
    id BYTEA NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (program_id, id)
);
CREATE UNIQUE INDEX api_keys_id ON api_keys (id);
",
    ),
    (
        2,
        "
-- The signing secret (name 'signing'): see crate::signing.
CREATE TABLE secrets (
    name TEXT NOT NULL PRIMARY KEY,
    value BYTEA NOT NULL
);
",
    ),
    (
        3,
        "
-- Signed disclosure checkpoints (Merkle tree heads, issue 7), one per programme and size;
-- not the ledger snapshots of the checkpoints table.
CREATE TABLE tree_heads (
    program_id BYTEA NOT NULL,
    size BIGINT NOT NULL,
    root BYTEA NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (program_id, size)
);
",
    ),
    (
        4,
        "
-- An entry id is derived from its programme and sequence number, so entry_by_id reads
-- the row by (program_id, seq): the entry_id column and its index only cost writes.
DROP INDEX entries_entry_id;
ALTER TABLE entries DROP COLUMN entry_id;
",
    ),
];

/// Idle connections kept open.
const POOL_SIZE: usize = 16;
/// Connections one store opens at most (callers beyond wait for one).
const MAX_CONNECTIONS: usize = 16;
/// How long one store operation may take before it is abandoned as `Unavailable` (a commit
/// abandoned this way may still have happened: the engine reloads to find out).
const OP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

struct Conn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
    /// Held while the connection is in use (bounds connections per store).
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Conn {
    async fn statement(&mut self, sql: &'static str) -> Result<Statement, tokio_postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.client.prepare(sql).await?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }

    async fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
        let s = self.statement(sql).await?;
        self.client.query(&s, params).await
    }

    async fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        let s = self.statement(sql).await?;
        self.client.execute(&s, params).await
    }
}

struct Pool {
    url: String,
    idle: Mutex<Vec<Conn>>,
    permits: Arc<tokio::sync::Semaphore>,
}

impl Pool {
    async fn get(&self) -> StoreResult<Conn> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(unavailable)?;
        loop {
            let pooled = self
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            match pooled {
                Some(mut conn) if !conn.client.is_closed() => {
                    conn.permit = Some(permit);
                    return Ok(conn);
                }
                Some(_) => continue,
                None => break,
            }
        }
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls)
            .await
            .map_err(unavailable)?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "postgres connection closed");
            }
        });
        Ok(Conn {
            client,
            statements: HashMap::new(),
            permit: Some(permit),
        })
    }

    /// Returns a connection after use, rolling back whatever a failed call left open.
    async fn finish<T>(&self, conn: Conn, result: StoreResult<T>) -> StoreResult<T> {
        if result.is_err() && conn.client.batch_execute("ROLLBACK").await.is_err() {
            return result;
        }
        self.put(conn);
        result
    }

    fn put(&self, mut conn: Conn) {
        conn.permit = None;
        if conn.client.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < POOL_SIZE {
            idle.push(conn);
        }
    }
}

struct PgShared {
    pool: Pool,
    faults: Faults,
    /// Per programme, the connection whose open transaction holds the programme's head
    /// row lock between [`Store::lock`] and the batch's `append` or `unlock`.
    locked: Mutex<HashMap<ProgramId, Conn>>,
}

impl PgShared {
    fn take_locked(&self, program: ProgramId) -> Option<Conn> {
        self.locked
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&program)
    }
}

/// Journals in a PostgreSQL database.
///
/// The store runs its connections on a small runtime of its own, so that a writer waiting
/// for a commit never depends on the caller's runtime threads (which may all be blocked on
/// a ledger lock that writer holds).
pub struct PostgresStore {
    shared: Arc<PgShared>,
    handle: tokio::runtime::Handle,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("postgres: {e}"))
}

/// One batch of entries, ready to insert.
struct Batch {
    program: Vec<u8>,
    head: Vec<u8>,
    seqs: Vec<i64>,
    requests: Vec<Vec<u8>>,
    prints: Vec<Vec<u8>>,
    bodies: Vec<Vec<u8>>,
    /// The stored next sequence before and after the batch.
    bounds: StoreResult<(i64, i64)>,
}

impl Batch {
    /// Advances the head and inserts the entries, then commits. `locked`: the transaction
    /// was opened by [`Store::lock`] (which already holds the head row).
    ///
    /// One statement does both: the insert reads the head's update through a `WITH`, so
    /// it inserts every entry if the head advanced from the expected sequence and none if
    /// it did not. That makes it safe to send `COMMIT` in the same round trip (tokio-postgres
    /// pipelines concurrent queries on a connection): there is nothing to inspect before
    /// committing. The programme's row lock is held for one round trip less, and that lock
    /// is what other servers writing the programme wait on. A failed insert aborts the
    /// transaction, and the `COMMIT` behind it then rolls back.
    async fn write(self, conn: &mut Conn, shared: Arc<PgShared>, locked: bool) -> StoreResult<()> {
        let (old, new) = self.bounds?;
        let count = self.seqs.len() as u64;
        let append = conn
            .statement(
                "WITH advanced AS (\
                   UPDATE heads SET next_seq = $6, head_hash = $7 \
                   WHERE program_id = $1 AND next_seq = $8 RETURNING 1) \
                 INSERT INTO entries (program_id, seq, request_id, fingerprint, body) \
                 SELECT $1, s, r, f, b FROM UNNEST($2::BIGINT[], $3::BYTEA[], $4::BYTEA[], $5::BYTEA[]) AS t(s, r, f, b) \
                 WHERE EXISTS (SELECT 1 FROM advanced)",
            )
            .await
            .map_err(classify)?;
        let params: [&(dyn ToSql + Sync); 8] = [
            &self.program,
            &self.seqs,
            &self.requests,
            &self.prints,
            &self.bodies,
            &new,
            &self.head,
            &old,
        ];
        if shared.faults.take() {
            // An injected failure: write, but never commit (the caller's connection is
            // rolled back when the error comes back).
            if !locked {
                conn.client.batch_execute("BEGIN").await.map_err(classify)?;
            }
            conn.client
                .execute(&append, &params)
                .await
                .map_err(classify)?;
            return Err(unavailable("injected commit failure"));
        }
        let inserted = if locked {
            let (inserted, committed) = tokio::join!(
                conn.client.execute(&append, &params),
                conn.client.batch_execute("COMMIT"),
            );
            // The insert's own error first: after it, the COMMIT only rolled back.
            let inserted = inserted.map_err(classify)?;
            committed.map_err(classify)?;
            inserted
        } else {
            // One statement is its own transaction.
            conn.client
                .execute(&append, &params)
                .await
                .map_err(classify)?
        };
        if inserted != count {
            // The head was not where this batch expected it: another writer got there
            // first, and nothing of this batch was written.
            return Err(StoreError::Conflict);
        }
        Ok(())
    }
}

/// Serialisation failures and unique violations mean another writer won: retry.
fn classify(e: tokio_postgres::Error) -> StoreError {
    match e.code() {
        Some(code)
            if *code == SqlState::T_R_SERIALIZATION_FAILURE
                || *code == SqlState::UNIQUE_VIOLATION =>
        {
            StoreError::Conflict
        }
        _ => unavailable(e),
    }
}

fn id_bytes(id: impl Into<uuid::Uuid>) -> Vec<u8> {
    id.into().as_bytes().to_vec()
}

fn seq_param(sequence: u64) -> StoreResult<i64> {
    i64::try_from(sequence).map_err(|_| unavailable(format!("sequence {sequence} out of range")))
}

fn rows_to_entries(rows: &[tokio_postgres::Row]) -> StoreResult<Vec<StoredEntry>> {
    rows.iter()
        .map(|row| {
            let seq: i64 = row.try_get(0).map_err(unavailable)?;
            let fp: &[u8] = row.try_get(1).map_err(unavailable)?;
            let body: &[u8] = row.try_get(2).map_err(unavailable)?;
            decode_entry(seq.unsigned_abs(), body, fp)
        })
        .collect()
}

impl PostgresStore {
    /// Connects and applies pending migrations.
    pub async fn connect(url: &str) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("points-postgres")
            .enable_all()
            .build()?;
        let store = Self {
            shared: Arc::new(PgShared {
                pool: Pool {
                    url: url.to_string(),
                    idle: Mutex::new(Vec::new()),
                    permits: Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS)),
                },
                faults: Faults::default(),
                locked: Mutex::new(HashMap::new()),
            }),
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        };
        let shared = store.shared.clone();
        store
            .handle
            .spawn(async move {
                let mut conn = shared.pool.get().await?;
                migrate(&mut conn).await?;
                shared.pool.put(conn);
                anyhow::Ok(())
            })
            .await??;
        Ok(store)
    }

    /// Runs `f` with a pooled connection on the store's runtime.
    fn with<T: Send + 'static>(
        &self,
        f: impl for<'c> FnOnce(&'c mut Conn) -> BoxFuture<'c, StoreResult<T>> + Send + 'static,
    ) -> BoxFuture<'static, StoreResult<T>> {
        self.on(None, f)
    }

    /// Runs `f` on the store's runtime with `conn` (one [`Store::lock`] took out of the
    /// pool), or with a pooled connection for `None`; then returns it to the pool.
    fn on<T: Send + 'static>(
        &self,
        conn: Option<Conn>,
        f: impl for<'c> FnOnce(&'c mut Conn) -> BoxFuture<'c, StoreResult<T>> + Send + 'static,
    ) -> BoxFuture<'static, StoreResult<T>> {
        let shared = self.shared.clone();
        let task = self.handle.spawn(async move {
            let work = async {
                let mut conn = match conn {
                    Some(conn) => conn,
                    None => shared.pool.get().await?,
                };
                let result = f(&mut conn).await;
                shared.pool.finish(conn, result).await
            };
            tokio::time::timeout(OP_TIMEOUT, work)
                .await
                .map_err(|_| unavailable(format!("no answer within {OP_TIMEOUT:?}")))?
        });
        Box::pin(async move {
            task.await
                .map_err(|e| unavailable(format!("task failed: {e}")))?
        })
    }
}

/// Applies every migration not yet recorded. Concurrent servers serialise on the
/// `schema_migrations` primary key: the second waits, then sees the version applied.
async fn migrate(conn: &mut Conn) -> anyhow::Result<()> {
    let mut attempt = 0;
    loop {
        let result = try_migrate(conn).await;
        match result {
            Ok(()) => return Ok(()),
            Err(e) if attempt < 5 => {
                // Two servers creating schema_migrations at once can collide; try again.
                attempt += 1;
                tracing::debug!(error = %e, attempt, "migration attempt failed; retrying");
                let _ = conn.client.batch_execute("ROLLBACK").await;
                tokio::time::sleep(std::time::Duration::from_millis(50 * attempt)).await;
            }
            Err(e) => return Err(anyhow::anyhow!("cannot migrate the database: {e}")),
        }
    }
}

async fn try_migrate(conn: &mut Conn) -> Result<(), tokio_postgres::Error> {
    conn.client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version INTEGER NOT NULL PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await?;
    for (version, sql) in MIGRATIONS {
        let tx = conn.client.transaction().await?;
        let claimed = tx
            .execute(
                "INSERT INTO schema_migrations (version) VALUES ($1) ON CONFLICT DO NOTHING",
                &[version],
            )
            .await?;
        if claimed == 1 {
            tx.batch_execute(sql).await?;
            tracing::info!(version, "applied migration");
        }
        tx.commit().await?;
    }
    Ok(())
}

/// A page of a programme's journal from a sequence on.
const READ_ENTRIES: &str =
    "SELECT seq, fingerprint, body FROM entries WHERE program_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3";

async fn read_entries_on(
    conn: &mut Conn,
    program: &[u8],
    from: u64,
    limit: usize,
) -> StoreResult<Vec<StoredEntry>> {
    let Ok(from) = i64::try_from(from) else {
        return Ok(Vec::new());
    };
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = conn
        .query(READ_ENTRIES, &[&program, &from, &limit])
        .await
        .map_err(unavailable)?;
    rows_to_entries(&rows)
}

impl Store for PostgresStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn shared(&self) -> bool {
        true
    }

    fn program_ids(&self) -> BoxFuture<'_, StoreResult<Vec<ProgramId>>> {
        self.with(|conn| {
            Box::pin(async move {
                let rows = conn
                    .query("SELECT program_id FROM programs ORDER BY program_id", &[])
                    .await
                    .map_err(unavailable)?;
                rows.iter()
                    .map(|r| {
                        let bytes: &[u8] = r.try_get(0).map_err(unavailable)?;
                        let id = uuid::Uuid::from_slice(bytes).map_err(unavailable)?;
                        ProgramId::new(id).map_err(unavailable)
                    })
                    .collect()
            })
        })
    }

    fn create_program<'a>(
        &'a self,
        genesis: &'a StoredEntry,
    ) -> BoxFuture<'a, StoreResult<Option<StoredEntry>>> {
        let genesis = genesis.clone();
        self.with(move |conn| {
            Box::pin(async move {
                let points_core::Event::ProgramOpened(spec) = genesis.entry.event() else {
                    return Err(unavailable("not a genesis entry"));
                };
                let program = id_bytes(spec.id());
                let spec_bytes = postcard::to_allocvec(&**spec).map_err(unavailable)?;
                conn.client.batch_execute("BEGIN").await.map_err(classify)?;
                let created = conn
                    .execute(
                        "INSERT INTO programs (program_id, spec) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                        &[&program, &spec_bytes],
                    )
                    .await
                    .map_err(classify)?;
                if created == 0 {
                    conn.client.batch_execute("ROLLBACK").await.map_err(unavailable)?;
                    let existing = read_entries_on(&mut *conn, &program, 0, 1).await?;
                    return Ok(existing.into_iter().next());
                }
                let head = genesis.entry.hash().0.to_vec();
                conn.execute(
                    "INSERT INTO heads (program_id, next_seq, head_hash) VALUES ($1, 1, $2)",
                    &[&program, &head],
                )
                .await
                .map_err(classify)?;
                let request = id_bytes(genesis.entry.request_id());
                let fp = genesis.fingerprint.to_le_bytes().to_vec();
                let body = genesis.entry.encode();
                conn.execute(
                    "INSERT INTO entries (program_id, seq, request_id, fingerprint, body) VALUES ($1, 0, $2, $3, $4)",
                    &[&program, &request, &fp, &body],
                )
                .await
                .map_err(classify)?;
                conn.client.batch_execute("COMMIT").await.map_err(unavailable)?;
                Ok(None)
            })
        })
    }

    fn append<'a>(
        &'a self,
        program: ProgramId,
        expected_next: u64,
        entries: &'a [StoredEntry],
    ) -> BoxFuture<'a, StoreResult<()>> {
        let Some(last) = entries.last() else {
            return Box::pin(std::future::ready(Ok(())));
        };
        let program_id = program;
        let program = id_bytes(program);
        let head = last.entry.hash().0.to_vec();
        let mut seqs = Vec::with_capacity(entries.len());
        let mut requests = Vec::with_capacity(entries.len());
        let mut prints = Vec::with_capacity(entries.len());
        let mut bodies = Vec::with_capacity(entries.len());
        for e in entries {
            seqs.push(i64::try_from(e.entry.sequence()).unwrap_or(i64::MAX));
            requests.push(id_bytes(e.entry.request_id()));
            prints.push(e.fingerprint.to_le_bytes().to_vec());
            bodies.push(e.entry.encode());
        }
        let bounds = seq_param(expected_next)
            .and_then(|old| Ok((old, seq_param(expected_next + entries.len() as u64)?)));
        let shared = self.shared.clone();
        let batch = Batch {
            program,
            head,
            seqs,
            requests,
            prints,
            bodies,
            bounds,
        };
        let conn = self.shared.take_locked(program_id);
        let locked = conn.is_some();
        self.on(conn, move |conn| {
            Box::pin(batch.write(conn, shared, locked))
        })
    }

    fn lock(&self, program: ProgramId, from: u64) -> BoxFuture<'_, StoreResult<Option<Locked>>> {
        let shared = self.shared.clone();
        let key = id_bytes(program);
        let task = self.handle.spawn(async move {
            if let Some(stale) = shared.take_locked(program) {
                // A lock the previous batch did not end: end it before taking a new one.
                shared
                    .pool
                    .finish(stale, Err::<(), _>(unavailable("stale lock")))
                    .await
                    .ok();
            }
            let work = async {
                let mut conn = shared.pool.get().await?;
                let locked = async {
                    let select = conn
                        .statement("SELECT next_seq FROM heads WHERE program_id = $1 FOR UPDATE")
                        .await
                        .map_err(classify)?;
                    let read = conn.statement(READ_ENTRIES).await.map_err(classify)?;
                    // One round trip for all three. The read runs after the lock is granted
                    // and (read committed) sees every batch committed before it.
                    let params: [&(dyn ToSql + Sync); 1] = [&key];
                    let from = i64::try_from(from).unwrap_or(i64::MAX);
                    let limit = LOCK_PAGE as i64;
                    let read_params: [&(dyn ToSql + Sync); 3] = [&key, &from, &limit];
                    let (begun, rows, entries) = tokio::join!(
                        conn.client.batch_execute("BEGIN"),
                        conn.client.query(&select, &params),
                        conn.client.query(&read, &read_params),
                    );
                    begun.map_err(classify)?;
                    let rows = rows.map_err(classify)?;
                    let next: i64 = rows
                        .first()
                        .ok_or_else(|| unavailable("unknown programme"))?
                        .try_get(0)
                        .map_err(unavailable)?;
                    let entries = rows_to_entries(&entries.map_err(classify)?)?;
                    Ok(Locked {
                        next: next.unsigned_abs(),
                        entries,
                    })
                }
                .await;
                match locked {
                    Ok(locked) => {
                        shared
                            .locked
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(program, conn);
                        Ok(Some(locked))
                    }
                    Err(e) => shared.pool.finish(conn, Err(e)).await,
                }
            };
            tokio::time::timeout(OP_TIMEOUT, work)
                .await
                .map_err(|_| unavailable(format!("no lock within {OP_TIMEOUT:?}")))?
        });
        Box::pin(async move {
            task.await
                .map_err(|e| unavailable(format!("task failed: {e}")))?
        })
    }

    fn unlock(&self, program: ProgramId) -> BoxFuture<'_, StoreResult<()>> {
        match self.shared.take_locked(program) {
            Some(conn) => self.on(Some(conn), |conn| {
                Box::pin(async move {
                    conn.client
                        .batch_execute("ROLLBACK")
                        .await
                        .map_err(classify)
                })
            }),
            None => Box::pin(std::future::ready(Ok(()))),
        }
    }

    fn read_entries(
        &self,
        program: ProgramId,
        from_sequence: u64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredEntry>>> {
        self.with(move |conn| {
            Box::pin(async move {
                read_entries_on(conn, &id_bytes(program), from_sequence, limit).await
            })
        })
    }

    fn read_hashes(
        &self,
        program: ProgramId,
        from_sequence: u64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<(u64, Hash)>>> {
        self.with(move |conn| {
            Box::pin(async move {
                let Ok(from) = i64::try_from(from_sequence) else {
                    return Ok(Vec::new());
                };
                let limit = i64::try_from(limit).unwrap_or(i64::MAX);
                // An entry's stored form ends with its hash (`Entry::ENCODED_HASH_BYTES`):
                // only those bytes cross the wire.
                let rows = conn
                    .query(
                        "SELECT seq, substring(body from greatest(octet_length(body) - 31, 1)) \
                         FROM entries WHERE program_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
                        &[&id_bytes(program), &from, &limit],
                    )
                    .await
                    .map_err(unavailable)?;
                rows.iter()
                    .map(|row| {
                        let seq: i64 = row.try_get(0).map_err(unavailable)?;
                        let tail: &[u8] = row.try_get(1).map_err(unavailable)?;
                        let sequence = seq.unsigned_abs();
                        Ok((sequence, hash_from_tail(sequence, tail)?))
                    })
                    .collect()
            })
        })
    }

    fn entry_by_id(
        &self,
        program: ProgramId,
        id: EntryId,
    ) -> BoxFuture<'_, StoreResult<Option<StoredEntry>>> {
        self.with(move |conn| {
            Box::pin(async move {
                let Some(sequence) = id.sequence_for(EntryId::program_prefix(program)) else {
                    return Ok(None);
                };
                let found = read_entries_on(conn, &id_bytes(program), sequence, 1).await?;
                Ok(found.into_iter().next().filter(|e| e.entry.id() == id))
            })
        })
    }

    fn latest_checkpoint(
        &self,
        program: ProgramId,
    ) -> BoxFuture<'_, StoreResult<Option<Checkpoint>>> {
        self.with(move |conn| {
            Box::pin(async move {
                let rows = conn
                    .query(
                        "SELECT next_seq, head_hash, snapshot FROM checkpoints WHERE program_id = $1 ORDER BY next_seq DESC LIMIT 1",
                        &[&id_bytes(program)],
                    )
                    .await
                    .map_err(unavailable)?;
                let Some(row) = rows.first() else {
                    return Ok(None);
                };
                let next: i64 = row.try_get(0).map_err(unavailable)?;
                let head: &[u8] = row.try_get(1).map_err(unavailable)?;
                let head: [u8; 32] = head
                    .try_into()
                    .map_err(|_| unavailable("checkpoint head is not 32 bytes"))?;
                Ok(Some(Checkpoint {
                    next_sequence: next.unsigned_abs(),
                    head_hash: Hash(head),
                    snapshot: row.try_get(2).map_err(unavailable)?,
                }))
            })
        })
    }

    fn put_checkpoint<'a>(
        &'a self,
        program: ProgramId,
        checkpoint: &'a Checkpoint,
    ) -> BoxFuture<'a, StoreResult<()>> {
        let checkpoint = checkpoint.clone();
        self.with(move |conn| {
            Box::pin(async move {
                let program = id_bytes(program);
                let next = seq_param(checkpoint.next_sequence)?;
                let head = checkpoint.head_hash.0.to_vec();
                conn.execute(
                    "INSERT INTO checkpoints (program_id, next_seq, head_hash, snapshot) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    &[&program, &next, &head, &checkpoint.snapshot],
                )
                .await
                .map_err(unavailable)?;
                conn.execute(
                    "DELETE FROM checkpoints WHERE program_id = $1 AND next_seq < \
                     (SELECT MIN(next_seq) FROM (SELECT next_seq FROM checkpoints WHERE program_id = $1 ORDER BY next_seq DESC LIMIT 2) AS latest)",
                    &[&program],
                )
                .await
                .map_err(unavailable)?;
                Ok(())
            })
        })
    }

    fn put_api_key(&self, key: ApiKeyRecord) -> BoxFuture<'_, StoreResult<()>> {
        self.with(move |conn| {
            Box::pin(async move {
                let program = key.program.map(id_bytes).unwrap_or_else(|| vec![0; 16]);
                let id = key.id.as_bytes().to_vec();
                let record = serde_json::to_string(&key).map_err(unavailable)?;
                conn.execute(
                    "INSERT INTO api_keys (program_id, id, record) VALUES ($1, $2, $3) \
                     ON CONFLICT (program_id, id) DO UPDATE SET record = EXCLUDED.record",
                    &[&program, &id, &record],
                )
                .await
                .map_err(unavailable)?;
                Ok(())
            })
        })
    }

    fn api_keys(&self) -> BoxFuture<'_, StoreResult<Vec<ApiKeyRecord>>> {
        self.with(|conn| {
            Box::pin(async move {
                let rows = conn
                    .query("SELECT record FROM api_keys ORDER BY id", &[])
                    .await
                    .map_err(unavailable)?;
                rows.iter()
                    .map(|r| {
                        let text: &str = r.try_get(0).map_err(unavailable)?;
                        serde_json::from_str(text).map_err(unavailable)
                    })
                    .collect()
            })
        })
    }

    fn revoke_api_key(&self, id: uuid::Uuid) -> BoxFuture<'_, StoreResult<bool>> {
        self.with(move |conn| {
            Box::pin(async move {
                let id = id.as_bytes().to_vec();
                conn.client
                    .batch_execute("BEGIN")
                    .await
                    .map_err(unavailable)?;
                let rows = conn
                    .query(
                        "SELECT record FROM api_keys WHERE id = $1 FOR UPDATE",
                        &[&id],
                    )
                    .await
                    .map_err(unavailable)?;
                let Some(row) = rows.first() else {
                    conn.client
                        .batch_execute("ROLLBACK")
                        .await
                        .map_err(unavailable)?;
                    return Ok(false);
                };
                let text: &str = row.try_get(0).map_err(unavailable)?;
                let mut key: ApiKeyRecord = serde_json::from_str(text).map_err(unavailable)?;
                key.revoked = true;
                let text = serde_json::to_string(&key).map_err(unavailable)?;
                conn.execute(
                    "UPDATE api_keys SET record = $1 WHERE id = $2",
                    &[&text, &id],
                )
                .await
                .map_err(unavailable)?;
                conn.client
                    .batch_execute("COMMIT")
                    .await
                    .map_err(unavailable)?;
                Ok(true)
            })
        })
    }

    fn server_secret(&self, candidate: [u8; 32]) -> BoxFuture<'_, StoreResult<[u8; 32]>> {
        self.with(move |conn| {
            Box::pin(async move {
                let candidate = candidate.to_vec();
                // Two servers starting at once both insert; the first wins and both read it.
                conn.execute(
                    "INSERT INTO secrets (name, value) VALUES ('signing', $1) \
                     ON CONFLICT (name) DO NOTHING",
                    &[&candidate],
                )
                .await
                .map_err(unavailable)?;
                let rows = conn
                    .query("SELECT value FROM secrets WHERE name = 'signing'", &[])
                    .await
                    .map_err(unavailable)?;
                let value: &[u8] = rows
                    .first()
                    .ok_or_else(|| StoreError::Unavailable("the signing secret vanished".into()))?
                    .try_get(0)
                    .map_err(unavailable)?;
                super::secret_from(value)
            })
        })
    }

    fn inject_commit_failures(&self, count: u32) {
        self.shared.faults.set(count);
    }

    fn put_tree_head<'a>(
        &'a self,
        program: ProgramId,
        head: &'a SignedCheckpoint,
    ) -> BoxFuture<'a, StoreResult<()>> {
        let head = head.clone();
        self.with(move |conn| {
            Box::pin(async move {
                let program = id_bytes(program);
                let size = seq_param(head.checkpoint.tree_size)?;
                let root = head.checkpoint.root.0.to_vec();
                let body = super::tree_head_text(&head)?;
                // Two servers signing the same size: the first row stays.
                conn.execute(
                    "INSERT INTO tree_heads (program_id, size, root, body) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (program_id, size) DO NOTHING",
                    &[&program, &size, &root, &body],
                )
                .await
                .map_err(unavailable)?;
                Ok(())
            })
        })
    }

    fn tree_head(
        &self,
        program: ProgramId,
        size: Option<u64>,
    ) -> BoxFuture<'_, StoreResult<Option<SignedCheckpoint>>> {
        self.with(move |conn| {
            Box::pin(async move {
                let program = id_bytes(program);
                let rows = match size {
                    Some(size) => {
                        let size = seq_param(size)?;
                        conn.query(
                            "SELECT body FROM tree_heads WHERE program_id = $1 AND size = $2",
                            &[&program, &size],
                        )
                        .await
                    }
                    None => {
                        conn.query(
                            "SELECT body FROM tree_heads WHERE program_id = $1 ORDER BY size DESC LIMIT 1",
                            &[&program],
                        )
                        .await
                    }
                }
                .map_err(unavailable)?;
                let Some(row) = rows.first() else {
                    return Ok(None);
                };
                let text: &str = row.try_get(0).map_err(unavailable)?;
                super::tree_head_from(text).map(Some)
            })
        })
    }
}
