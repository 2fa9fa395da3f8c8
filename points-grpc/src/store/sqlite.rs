//! The embedded store: one SQLite database, `points.db`, in a data directory.
//!
//! Opened with `journal_mode=WAL` and `synchronous=FULL`: a commit returns only once the
//! write-ahead log is on disk. Schema (version 1):
//!
//! ```sql
//! -- A programme's small integer handle keeps entry keys short.
//! CREATE TABLE programs (handle INTEGER PRIMARY KEY, program_id BLOB NOT NULL UNIQUE,
//!                        next_seq INTEGER NOT NULL, head BLOB NOT NULL);
//! -- k = handle << 40 | sequence; body = Entry::encode(); fp = request fingerprint.
//! -- An entry id is derived from its programme and sequence number, so entry_by_id
//! -- finds the row by its key. There is no index of request ids: one process writes the
//! -- file, and its ledger, rebuilt from this table at start, knows every request id.
//! -- Rows are therefore only ever appended at the end of one B-tree.
//! CREATE TABLE entries (k INTEGER PRIMARY KEY, fp BLOB NOT NULL, body BLOB NOT NULL);
//! CREATE TABLE checkpoints (handle INTEGER NOT NULL, next_seq INTEGER NOT NULL,
//!                           head BLOB NOT NULL, snapshot BLOB NOT NULL,
//!                           PRIMARY KEY (handle, next_seq));
//! CREATE TABLE api_keys (id BLOB PRIMARY KEY, record TEXT NOT NULL);
//! -- The signing secret (name 'signing'): see crate::signing.
//! CREATE TABLE secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL);
//! -- Signed disclosure checkpoints (Merkle tree heads, issue 7): SignedCheckpoint as JSON.
//! CREATE TABLE tree_heads (handle INTEGER NOT NULL, size INTEGER NOT NULL,
//!                          body TEXT NOT NULL, PRIMARY KEY (handle, size));
//! ```
//!
//! The `programs` row is the journal's head: each batch's transaction advances it with
//! `UPDATE ... WHERE next_seq = expected`, so a second writer on the same file cannot
//! interleave entries.
//!
//! Ledger checkpoints (snapshots of a few hundred megabytes at a million members) are files
//! beside the database, `checkpoints/<handle>-<next sequence>.ckpt`, not rows: a row went
//! through the WAL and then was copied again into the database file by the next WAL
//! checkpoint, both while the writer waited. A file is written once (to a temporary name,
//! synced, renamed, and the directory synced), carries a BLAKE3 hash of its snapshot, and a
//! file that does not check out is skipped, so start-up replays further instead. Rows in
//! the `checkpoints` table, from before, are still read when no file is usable.

use super::{
    decode_entry, hash_from_tail, secret_from, BoxFuture, Checkpoint, EncodeSnapshot, Faults,
    Store, StoreError, StoreResult, StoredEntry,
};
use crate::engine::ApiKeyRecord;
use points_core::checkpoint::SignedCheckpoint;
use points_core::{EntryId, Hash, ProgramId};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

/// The file name inside the data directory.
pub const FILE_NAME: &str = "points.db";

/// Bits of an entry key that hold the sequence number.
const SEQ_BITS: u32 = 40;
const SEQ_MASK: i64 = (1 << SEQ_BITS) - 1;
/// The writer connection's page cache, in KiB. Appends touch only the right edge of the
/// entries B-tree, so a small cache holds every page a batch writes.
const WRITER_CACHE_KIB: u32 = 8_192;
/// Idle read connections kept open.
const READ_POOL: usize = 8;
/// The directory of ledger checkpoint files, inside the data directory.
const CHECKPOINT_DIR: &str = "checkpoints";
/// First bytes of a checkpoint file.
const CHECKPOINT_MAGIC: &[u8; 8] = b"PTSCKPT1";
/// Magic, next sequence, head hash, snapshot hash.
const CHECKPOINT_HEADER_BYTES: usize = 8 + 8 + 32 + 32;
/// Checkpoint files kept per programme.
const CHECKPOINTS_KEPT: usize = 2;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS programs (handle INTEGER PRIMARY KEY, program_id BLOB NOT NULL UNIQUE,
    next_seq INTEGER NOT NULL, head BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS entries (k INTEGER PRIMARY KEY, fp BLOB NOT NULL, body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (handle INTEGER NOT NULL, next_seq INTEGER NOT NULL,
    head BLOB NOT NULL, snapshot BLOB NOT NULL, PRIMARY KEY (handle, next_seq));
CREATE TABLE IF NOT EXISTS api_keys (id BLOB PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS tree_heads (handle INTEGER NOT NULL, size INTEGER NOT NULL,
    body TEXT NOT NULL, PRIMARY KEY (handle, size));
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', 2);
";

/// Version 1 kept two indexes: entry-id prefixes for `entry_by_id`, and request ids. The
/// first is unneeded because the row key follows from the id; the second duplicated what
/// the writer's ledger already checks, and as its keys are random every batch of inserts
/// dirtied pages all over it, so each commit rewrote most of the index into the WAL.
/// Version 2 drops both, with their columns (about 60 bytes per entry).
const MIGRATE_1_TO_2: &str = "
DROP INDEX IF EXISTS entries_id;
DROP INDEX IF EXISTS entries_request;
ALTER TABLE entries DROP COLUMN idk;
ALTER TABLE entries DROP COLUMN req;
UPDATE meta SET value = 2 WHERE key = 'schema_version';
";

struct Shared {
    path: PathBuf,
    checkpoint_dir: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    handles: RwLock<HashMap<ProgramId, i64>>,
    faults: Faults,
}

/// Journals in an SQLite database.
pub struct SqliteStore {
    shared: Arc<Shared>,
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("sqlite: {e}"))
}

fn connect(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open(path).map_err(unavailable)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(unavailable)?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(unavailable)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(unavailable(format!("journal_mode is {mode}, not wal")));
    }
    conn.execute_batch("PRAGMA synchronous=FULL;")
        .map_err(unavailable)?;
    Ok(conn)
}

fn blob<'r>(row: &'r rusqlite::Row<'_>, index: usize) -> StoreResult<&'r [u8]> {
    row.get_ref(index)
        .map_err(unavailable)?
        .as_blob()
        .map_err(unavailable)
}

fn key(handle: i64, sequence: u64) -> StoreResult<i64> {
    let seq = i64::try_from(sequence)
        .ok()
        .filter(|s| *s <= SEQ_MASK)
        .ok_or_else(|| unavailable(format!("sequence {sequence} out of range")))?;
    Ok((handle << SEQ_BITS) | seq)
}

fn sequence_of(k: i64) -> u64 {
    (k & SEQ_MASK).unsigned_abs()
}

impl SqliteStore {
    /// Opens (creating if needed) `dir/points.db`.
    pub async fn open(dir: &Path) -> anyhow::Result<Self> {
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(&dir)).await?
    }

    /// [`SqliteStore::open`] without a runtime.
    pub fn open_blocking(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(FILE_NAME);
        let conn = connect(&path)?;
        conn.execute_batch(&format!("PRAGMA cache_size=-{WRITER_CACHE_KIB};"))?;
        conn.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA} COMMIT;"))?;
        let schema_version = |conn: &Connection| -> rusqlite::Result<i64> {
            conn.query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
        };
        if schema_version(&conn)? == 1 {
            conn.execute_batch(&format!("BEGIN IMMEDIATE; {MIGRATE_1_TO_2} COMMIT;"))?;
        }
        let version = schema_version(&conn)?;
        anyhow::ensure!(version == 2, "unsupported schema version {version}");
        let mut handles = HashMap::new();
        {
            let mut stmt = conn.prepare("SELECT handle, program_id FROM programs")?;
            let rows =
                stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
            for row in rows {
                let (handle, id) = row?;
                let id = uuid::Uuid::from_slice(&id)?;
                handles.insert(ProgramId::new(id)?, handle);
            }
        }
        Ok(Self {
            shared: Arc::new(Shared {
                checkpoint_dir: dir.join(CHECKPOINT_DIR),
                path,
                writer: Mutex::new(conn),
                readers: Mutex::new(Vec::new()),
                handles: RwLock::new(handles),
                faults: Faults::default(),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    fn blocking<'a, T: Send + 'static>(
        &self,
        f: impl FnOnce(&Shared) -> StoreResult<T> + Send + 'static,
    ) -> BoxFuture<'a, StoreResult<T>> {
        let shared = self.shared.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || f(&shared))
                .await
                .map_err(|e| unavailable(format!("task failed: {e}")))?
        })
    }
}

impl Shared {
    fn handle(&self, program: ProgramId) -> Option<i64> {
        self.handles
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&program)
            .copied()
    }

    fn write<T>(&self, f: impl FnOnce(&mut Connection) -> StoreResult<T>) -> StoreResult<T> {
        let mut conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut conn)
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let pooled = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => connect(&self.path).map_err(unavailable)?,
        };
        let result = f(&conn);
        let mut pool = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < READ_POOL {
            pool.push(conn);
        }
        result
    }

    /// The programme's checkpoint files, oldest first, by the sequence in their names.
    fn checkpoint_files(&self, handle: i64) -> StoreResult<Vec<(u64, PathBuf)>> {
        let listing = match std::fs::read_dir(&self.checkpoint_dir) {
            Ok(listing) => listing,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(unavailable(e)),
        };
        let prefix = format!("{handle}-");
        let mut files = Vec::new();
        for item in listing {
            let item = item.map_err(unavailable)?;
            let name = item.file_name();
            let next = name
                .to_str()
                .and_then(|n| n.strip_prefix(&prefix))
                .and_then(|n| n.strip_suffix(".ckpt"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(next) = next {
                files.push((next, item.path()));
            }
        }
        files.sort_unstable();
        Ok(files)
    }

    /// Writes a checkpoint file durably: temporary name, sync, rename, sync the directory.
    /// `encode` hands the snapshot to its sink in pieces, which go to the file as they come;
    /// the header, with the snapshot's hash, is written last, at the front. A failed write
    /// leaves no file under the checkpoint's name.
    fn write_checkpoint_file(
        &self,
        handle: i64,
        next_sequence: u64,
        head_hash: Hash,
        encode: &mut EncodeSnapshot<'_>,
    ) -> StoreResult<()> {
        use std::io::{Seek as _, Write as _};
        let dir = &self.checkpoint_dir;
        std::fs::create_dir_all(dir).map_err(unavailable)?;
        let name = format!("{handle}-{next_sequence:020}.ckpt");
        let temporary = dir.join(format!("{name}.tmp"));
        let written = (|| {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(&[0; CHECKPOINT_HEADER_BYTES])?;
            let mut hasher = blake3::Hasher::new();
            let mut failed = None;
            encode(&mut |piece| {
                if failed.is_none() {
                    hasher.update(piece);
                    failed = file.write_all(piece).err();
                }
            });
            if let Some(e) = failed {
                return Err(e);
            }
            let mut header = Vec::with_capacity(CHECKPOINT_HEADER_BYTES);
            header.extend_from_slice(CHECKPOINT_MAGIC);
            header.extend_from_slice(&next_sequence.to_le_bytes());
            header.extend_from_slice(&head_hash.0);
            header.extend_from_slice(hasher.finalize().as_bytes());
            file.rewind()?;
            file.write_all(&header)?;
            file.sync_all()
        })();
        if let Err(e) = written {
            // Only disk space is at stake, but a full disk is a likely cause.
            let _ = std::fs::remove_file(&temporary);
            return Err(unavailable(e));
        }
        std::fs::rename(&temporary, dir.join(name)).map_err(unavailable)?;
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(unavailable)
    }

    /// Stores a checkpoint file, then removes what it supersedes: files beyond the latest
    /// [`CHECKPOINTS_KEPT`] and rows from before checkpoints were files.
    fn put_checkpoint_file(
        &self,
        program: ProgramId,
        next_sequence: u64,
        head_hash: Hash,
        encode: &mut EncodeSnapshot<'_>,
    ) -> StoreResult<()> {
        let handle = self
            .handle(program)
            .ok_or_else(|| unavailable("unknown programme"))?;
        self.write_checkpoint_file(handle, next_sequence, head_hash, encode)?;
        let files = self.checkpoint_files(handle)?;
        for (_, old) in &files[..files.len().saturating_sub(CHECKPOINTS_KEPT)] {
            // A file left behind is only disk space: the newest valid one is used.
            if let Err(e) = std::fs::remove_file(old) {
                tracing::warn!(file = %old.display(), error = %e, "old checkpoint not removed");
            }
        }
        let legacy = self.read(|conn| {
            conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM checkpoints WHERE handle = ?1)",
                [handle],
                |r| r.get::<_, bool>(0),
            )
            .map_err(unavailable)
        })?;
        if legacy {
            self.write(|conn| {
                conn.execute("DELETE FROM checkpoints WHERE handle = ?1", [handle])
                    .map_err(unavailable)
            })?;
        }
        Ok(())
    }

    /// Up to `limit` rows of the programme `handle`'s entries from sequence `from` on, in
    /// order, each made into a `T` by `each` with its sequence; `sql` selects `k` first,
    /// then the columns `each` reads.
    fn read_rows<T>(
        &self,
        handle: i64,
        from: u64,
        limit: usize,
        sql: &'static str,
        mut each: impl FnMut(u64, &rusqlite::Row<'_>) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        let Ok(from_key) = key(handle, from) else {
            return Ok(Vec::new());
        };
        let end_key = (handle + 1) << SEQ_BITS;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(sql).map_err(unavailable)?;
            let mut rows = stmt
                .query(params![from_key, end_key, limit])
                .map_err(unavailable)?;
            let mut out = Vec::new();
            while let Some(row) = rows.next().map_err(unavailable)? {
                let k: i64 = row.get(0).map_err(unavailable)?;
                out.push(each(sequence_of(k), row)?);
            }
            Ok(out)
        })
    }

    fn read_hashes(&self, handle: i64, from: u64, limit: usize) -> StoreResult<Vec<(u64, Hash)>> {
        // An entry's stored form ends with its hash (`Entry::ENCODED_HASH_BYTES`).
        self.read_rows(
            handle,
            from,
            limit,
            "SELECT k, substr(body, -32) FROM entries WHERE k >= ?1 AND k < ?2 ORDER BY k LIMIT ?3",
            |sequence, row| Ok((sequence, hash_from_tail(sequence, blob(row, 1)?)?)),
        )
    }

    fn read_entries(&self, handle: i64, from: u64, limit: usize) -> StoreResult<Vec<StoredEntry>> {
        self.read_rows(
            handle,
            from,
            limit,
            "SELECT k, fp, body FROM entries WHERE k >= ?1 AND k < ?2 ORDER BY k LIMIT ?3",
            |sequence, row| decode_entry(sequence, blob(row, 2)?, blob(row, 1)?),
        )
    }
}

/// Reads and checks a checkpoint file named for `next` entries.
fn read_checkpoint_file(path: &Path, next: u64) -> Result<Checkpoint, String> {
    let mut bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    let (header, snapshot) = bytes
        .split_at_checked(CHECKPOINT_HEADER_BYTES)
        .ok_or("shorter than its header")?;
    let (magic, rest) = header.split_at(8);
    let (sequence, rest) = rest.split_at(8);
    let (head, hash) = rest.split_at(32);
    if magic != CHECKPOINT_MAGIC {
        return Err("not a checkpoint file".into());
    }
    let sequence = u64::from_le_bytes(sequence.try_into().map_err(|_| "bad header")?);
    if sequence != next {
        return Err(format!("holds {sequence} entries, named for {next}"));
    }
    if blake3::hash(snapshot).as_bytes().as_slice() != hash {
        return Err("snapshot does not match its hash".into());
    }
    let head_hash = Hash(head.try_into().map_err(|_| "bad header")?);
    bytes.drain(..CHECKPOINT_HEADER_BYTES);
    Ok(Checkpoint {
        next_sequence: sequence,
        head_hash,
        snapshot: bytes,
    })
}

fn genesis_program(genesis: &StoredEntry) -> StoreResult<ProgramId> {
    match genesis.entry.event() {
        points_core::Event::ProgramOpened(spec) if genesis.entry.sequence() == 0 => Ok(spec.id()),
        _ => Err(unavailable("not a genesis entry")),
    }
}

/// One entry's row values.
struct Row {
    seq: u64,
    fp: [u8; 8],
    body: Vec<u8>,
}

fn row(stored: &StoredEntry) -> Row {
    Row {
        seq: stored.entry.sequence(),
        fp: stored.fingerprint.to_le_bytes(),
        body: stored.entry.encode(),
    }
}

fn insert_rows(tx: &rusqlite::Transaction<'_>, handle: i64, rows: &[Row]) -> StoreResult<()> {
    let mut stmt = tx
        .prepare_cached("INSERT INTO entries (k, fp, body) VALUES (?1, ?2, ?3)")
        .map_err(unavailable)?;
    for r in rows {
        stmt.execute(params![key(handle, r.seq)?, r.fp, r.body])
            .map_err(unavailable)?;
    }
    Ok(())
}

impl Store for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn program_ids(&self) -> BoxFuture<'_, StoreResult<Vec<ProgramId>>> {
        let mut ids: Vec<ProgramId> = self
            .shared
            .handles
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .copied()
            .collect();
        ids.sort();
        Box::pin(std::future::ready(Ok(ids)))
    }

    fn create_program<'a>(
        &'a self,
        genesis: &'a StoredEntry,
    ) -> BoxFuture<'a, StoreResult<Option<StoredEntry>>> {
        let program = match genesis_program(genesis) {
            Ok(p) => p,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let genesis_row = row(genesis);
        let head = genesis.entry.hash().0;
        self.blocking(move |shared| {
            if let Some(handle) = shared.handle(program) {
                return Ok(shared.read_entries(handle, 0, 1)?.into_iter().next());
            }
            let handle = shared.write(|conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(unavailable)?;
                let id = uuid::Uuid::from(program).into_bytes();
                let existing: Option<i64> = tx
                    .query_row(
                        "SELECT handle FROM programs WHERE program_id = ?1",
                        [id],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(unavailable)?;
                if let Some(handle) = existing {
                    return Ok(Err(handle));
                }
                let handle: i64 = tx
                    .query_row("SELECT COALESCE(MAX(handle), 0) + 1 FROM programs", [], |r| {
                        r.get(0)
                    })
                    .map_err(unavailable)?;
                tx.execute(
                    "INSERT INTO programs (handle, program_id, next_seq, head) VALUES (?1, ?2, 1, ?3)",
                    params![handle, id, head],
                )
                .map_err(unavailable)?;
                insert_rows(&tx, handle, std::slice::from_ref(&genesis_row))?;
                tx.commit().map_err(unavailable)?;
                Ok(Ok(handle))
            })?;
            match handle {
                Ok(handle) => {
                    shared
                        .handles
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(program, handle);
                    Ok(None)
                }
                Err(handle) => {
                    shared
                        .handles
                        .write()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert(program, handle);
                    Ok(shared.read_entries(handle, 0, 1)?.into_iter().next())
                }
            }
        })
    }

    fn append<'a>(
        &'a self,
        program: ProgramId,
        expected_next: u64,
        entries: &'a [StoredEntry],
    ) -> BoxFuture<'a, StoreResult<()>> {
        let rows: Vec<Row> = entries.iter().map(row).collect();
        let new_next = expected_next + rows.len() as u64;
        let head: Option<Hash> = entries.last().map(|e| e.entry.hash());
        // The engine calls `append` only from a programme's own writer thread, which may
        // block: committing right here saves a hand-off to the blocking pool and back for
        // every batch (see `Store::append`).
        let shared = self.shared.clone();
        let commit = move |shared: &Shared| {
            let Some(head) = head else { return Ok(()) };
            let handle = shared
                .handle(program)
                .ok_or_else(|| unavailable("unknown programme"))?;
            let (Ok(old), Ok(new)) = (i64::try_from(expected_next), i64::try_from(new_next)) else {
                return Err(unavailable("sequence out of range"));
            };
            shared.write(|conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(unavailable)?;
                let advanced = tx
                    .prepare_cached(
                        "UPDATE programs SET next_seq = ?1, head = ?2 WHERE handle = ?3 AND next_seq = ?4",
                    )
                    .and_then(|mut s| s.execute(params![new, head.0, handle, old]))
                    .map_err(unavailable)?;
                if advanced != 1 {
                    return Err(StoreError::Conflict);
                }
                insert_rows(&tx, handle, &rows)?;
                if shared.faults.take() {
                    // Dropping the transaction rolls it back.
                    return Err(unavailable("injected commit failure"));
                }
                tx.commit().map_err(unavailable)
            })
        };
        Box::pin(async move { commit(&shared) })
    }

    fn read_entries(
        &self,
        program: ProgramId,
        from_sequence: u64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredEntry>>> {
        self.blocking(move |shared| match shared.handle(program) {
            Some(handle) => shared.read_entries(handle, from_sequence, limit),
            None => Ok(Vec::new()),
        })
    }

    fn read_hashes(
        &self,
        program: ProgramId,
        from_sequence: u64,
        limit: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<(u64, Hash)>>> {
        self.blocking(move |shared| match shared.handle(program) {
            Some(handle) => shared.read_hashes(handle, from_sequence, limit),
            None => Ok(Vec::new()),
        })
    }

    fn entry_by_id(
        &self,
        program: ProgramId,
        id: EntryId,
    ) -> BoxFuture<'_, StoreResult<Option<StoredEntry>>> {
        self.blocking(move |shared| {
            let Some(handle) = shared.handle(program) else {
                return Ok(None);
            };
            let Some(sequence) = id.sequence_for(EntryId::program_prefix(program)) else {
                return Ok(None);
            };
            let stored = shared.read_entries(handle, sequence, 1)?.into_iter().next();
            Ok(stored.filter(|e| e.entry.id() == id))
        })
    }

    fn latest_checkpoint(
        &self,
        program: ProgramId,
    ) -> BoxFuture<'_, StoreResult<Option<Checkpoint>>> {
        self.blocking(move |shared| {
            let Some(handle) = shared.handle(program) else {
                return Ok(None);
            };
            for (next, path) in shared.checkpoint_files(handle)?.into_iter().rev() {
                match read_checkpoint_file(&path, next) {
                    Ok(checkpoint) => return Ok(Some(checkpoint)),
                    Err(e) => {
                        tracing::warn!(file = %path.display(), error = %e, "checkpoint file skipped");
                    }
                }
            }
            shared.read(|conn| {
                let found = conn
                    .query_row(
                        "SELECT next_seq, head, snapshot FROM checkpoints WHERE handle = ?1 ORDER BY next_seq DESC LIMIT 1",
                        [handle],
                        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?, r.get::<_, Vec<u8>>(2)?)),
                    )
                    .optional()
                    .map_err(unavailable)?;
                let Some((next, head, snapshot)) = found else {
                    return Ok(None);
                };
                let head: [u8; 32] = head
                    .try_into()
                    .map_err(|_| unavailable("checkpoint head is not 32 bytes"))?;
                Ok(Some(Checkpoint {
                    next_sequence: next.unsigned_abs(),
                    head_hash: Hash(head),
                    snapshot,
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
        self.blocking(move |shared| {
            shared.put_checkpoint_file(
                program,
                checkpoint.next_sequence,
                checkpoint.head_hash,
                &mut |sink| sink(&checkpoint.snapshot),
            )
        })
    }

    /// Writes the pieces to the file as they come, on the calling thread.
    fn put_checkpoint_streamed(
        &self,
        _runtime: &tokio::runtime::Handle,
        program: ProgramId,
        next_sequence: u64,
        head_hash: Hash,
        _size_hint_bytes: usize,
        encode: &mut EncodeSnapshot<'_>,
    ) -> StoreResult<()> {
        self.shared
            .put_checkpoint_file(program, next_sequence, head_hash, encode)
    }

    fn put_api_key(&self, key: ApiKeyRecord) -> BoxFuture<'_, StoreResult<()>> {
        self.blocking(move |shared| {
            let record = serde_json::to_string(&key).map_err(unavailable)?;
            shared.write(|conn| {
                conn.execute(
                    "INSERT OR REPLACE INTO api_keys (id, record) VALUES (?1, ?2)",
                    params![key.id.into_bytes(), record],
                )
                .map_err(unavailable)?;
                Ok(())
            })
        })
    }

    fn api_keys(&self) -> BoxFuture<'_, StoreResult<Vec<ApiKeyRecord>>> {
        self.blocking(|shared| {
            shared.read(|conn| {
                let mut stmt = conn
                    .prepare_cached("SELECT record FROM api_keys ORDER BY id")
                    .map_err(unavailable)?;
                let rows = stmt
                    .query_map([], |r| r.get::<_, String>(0))
                    .map_err(unavailable)?;
                let mut out = Vec::new();
                for row in rows {
                    let text = row.map_err(unavailable)?;
                    out.push(serde_json::from_str(&text).map_err(unavailable)?);
                }
                Ok(out)
            })
        })
    }

    fn revoke_api_key(&self, id: uuid::Uuid) -> BoxFuture<'_, StoreResult<bool>> {
        self.blocking(move |shared| {
            shared.write(|conn| {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(unavailable)?;
                let text: Option<String> = tx
                    .query_row(
                        "SELECT record FROM api_keys WHERE id = ?1",
                        [id.into_bytes()],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(unavailable)?;
                let Some(text) = text else { return Ok(false) };
                let mut key: ApiKeyRecord = serde_json::from_str(&text).map_err(unavailable)?;
                key.revoked = true;
                let text = serde_json::to_string(&key).map_err(unavailable)?;
                tx.execute(
                    "UPDATE api_keys SET record = ?1 WHERE id = ?2",
                    params![text, id.into_bytes()],
                )
                .map_err(unavailable)?;
                tx.commit().map_err(unavailable)?;
                Ok(true)
            })
        })
    }

    fn server_secret(&self, candidate: [u8; 32]) -> BoxFuture<'_, StoreResult<[u8; 32]>> {
        self.blocking(move |shared| {
            shared.write(|conn| {
                conn.execute(
                    "INSERT OR IGNORE INTO secrets (name, value) VALUES ('signing', ?1)",
                    [candidate.as_slice()],
                )
                .map_err(unavailable)?;
                let value: Vec<u8> = conn
                    .query_row(
                        "SELECT value FROM secrets WHERE name = 'signing'",
                        [],
                        |r| r.get(0),
                    )
                    .map_err(unavailable)?;
                secret_from(&value)
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
        self.blocking(move |shared| {
            let handle = shared
                .handle(program)
                .ok_or_else(|| unavailable("unknown programme"))?;
            let size = i64::try_from(head.checkpoint.tree_size).map_err(unavailable)?;
            let body = super::tree_head_text(&head)?;
            shared.write(|conn| {
                conn.execute(
                    "INSERT OR IGNORE INTO tree_heads (handle, size, body) VALUES (?1, ?2, ?3)",
                    params![handle, size, body],
                )
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
        self.blocking(move |shared| {
            let Some(handle) = shared.handle(program) else {
                return Ok(None);
            };
            shared.read(|conn| {
                let found: Option<String> = match size {
                    Some(size) => {
                        let size = i64::try_from(size).map_err(unavailable)?;
                        conn.query_row(
                            "SELECT body FROM tree_heads WHERE handle = ?1 AND size = ?2",
                            params![handle, size],
                            |r| r.get(0),
                        )
                    }
                    None => conn.query_row(
                        "SELECT body FROM tree_heads WHERE handle = ?1 ORDER BY size DESC LIMIT 1",
                        [handle],
                        |r| r.get(0),
                    ),
                }
                .optional()
                .map_err(unavailable)?;
                found.as_deref().map(super::tree_head_from).transpose()
            })
        })
    }
}
