//! postgres store.

use super::{BoxFuture, Checkpoint, Store, StoreError, StoreResult, StoredEntry};
use crate::engine::ApiKeyRecord;
use points_core::{EntryId, ProgramId};

/// postgres store (work in progress).
pub struct PostgresStore;

fn todo_err<'a, T: Send + 'a>() -> BoxFuture<'a, StoreResult<T>> {
    Box::pin(std::future::ready(Err(StoreError::Unavailable(
        "postgres store not implemented yet".into(),
    ))))
}

impl PostgresStore {
    /// Opens the store.
    pub async fn open_placeholder() -> anyhow::Result<Self> {
        anyhow::bail!("postgres store not implemented yet")
    }
}

impl Store for PostgresStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }
    fn program_ids(&self) -> BoxFuture<'_, StoreResult<Vec<ProgramId>>> {
        todo_err()
    }
    fn create_program<'a>(
        &'a self,
        _g: &'a StoredEntry,
    ) -> BoxFuture<'a, StoreResult<Option<StoredEntry>>> {
        todo_err()
    }
    fn append<'a>(
        &'a self,
        _p: ProgramId,
        _n: u64,
        _e: &'a [StoredEntry],
    ) -> BoxFuture<'a, StoreResult<()>> {
        todo_err()
    }
    fn read_entries(
        &self,
        _p: ProgramId,
        _f: u64,
        _l: usize,
    ) -> BoxFuture<'_, StoreResult<Vec<StoredEntry>>> {
        todo_err()
    }
    fn entry_by_id(
        &self,
        _p: ProgramId,
        _i: EntryId,
    ) -> BoxFuture<'_, StoreResult<Option<StoredEntry>>> {
        todo_err()
    }
    fn latest_checkpoint(&self, _p: ProgramId) -> BoxFuture<'_, StoreResult<Option<Checkpoint>>> {
        todo_err()
    }
    fn put_checkpoint<'a>(
        &'a self,
        _p: ProgramId,
        _c: &'a Checkpoint,
    ) -> BoxFuture<'a, StoreResult<()>> {
        todo_err()
    }
    fn put_api_key(&self, _k: ApiKeyRecord) -> BoxFuture<'_, StoreResult<()>> {
        todo_err()
    }
    fn api_keys(&self) -> BoxFuture<'_, StoreResult<Vec<ApiKeyRecord>>> {
        todo_err()
    }
    fn revoke_api_key(&self, _i: uuid::Uuid) -> BoxFuture<'_, StoreResult<bool>> {
        todo_err()
    }
    fn inject_commit_failures(&self, _c: u32) {}
}
