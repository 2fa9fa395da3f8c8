//! Public disclosure (issue 7): the programme's Merkle tree over its journal, signed
//! checkpoints (every `checkpoint_every` entries and on demand), inclusion and consistency
//! proofs, public reports, and the `Disclosure` gRPC service over them.
//!
//! [`Transparency`] keeps one [`MerkleLog`] per programme in memory (about 33 bytes per
//! entry) and brings it up to the durable journal before every answer, reading only the
//! entries appended since; roots and proofs for any size then cost `O(log n)` hashes. The
//! first request after a start reads the whole journal's hashes once.
//!
//! Role policy: checkpoints, proofs and public reports carry no personal data and need no
//! API key (the public board calls them without one); `SignCheckpoint` needs a recorder or
//! admin key, `GetEntryProof` and `ExportJournal` (entry contents) an auditor or admin key.

use super::{program_id, Ctx};
use crate::convert::{engine_status, status};
use crate::engine::Engine;
use crate::pb;
use crate::pb::disclosure_server::Disclosure as DisclosureApi;
use points_core::checkpoint::{Checkpoint, SignedCheckpoint};
use points_core::merkle::{entry_leaf, MerkleLog, ProofError, TreeHash};
use points_core::report::{Extractor, PublicReport, ReportScope, Summary, REPORT_FORMAT};
use points_core::rollup::{Period, RollupBuilder};
use points_core::{EntryId, Hash, MemberId, OrgUnitId, ProgramId, Timestamp};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tonic::{Code, Response, Status};

/// Entries read from the store per page while building a report.
const CATCH_UP_PAGE: usize = 10_000;
/// Entry hashes read per page while the tree catches up. The catch-up runs on the request
/// runtime's workers (after a restart it walks the whole journal), so it works in pages
/// of a millisecond or two and yields between them rather than holding a worker for a
/// second; pages of 1,000 spent a tenth of a restart's CPU on round trips.
const TREE_PAGE: usize = 4_096;
/// Public reports kept, by programme, scope and size.
const REPORT_CACHE: usize = 32;

/// A programme's tree and the chain hash of its last leaf's entry.
#[derive(Debug, Default)]
struct Tree {
    log: MerkleLog,
    head: Hash,
    /// The largest stored checkpoint's size, once read: catching up after a restart signs
    /// only the checkpoints that fell due after it, not every one since the first entry.
    signed_through: Option<u64>,
}

type ReportKey = (ProgramId, Option<OrgUnitId>, Option<i64>, Option<i64>, u64);

/// The programmes' Merkle trees, checkpoint signing and public reports.
pub struct Transparency {
    engine: Engine,
    every: u64,
    trees: Mutex<HashMap<ProgramId, Arc<tokio::sync::Mutex<Tree>>>>,
    reports: Mutex<HashMap<ReportKey, Arc<PublicReport>>>,
    /// Reports read the journal up to their checkpoint; anyone may ask for one, so one is
    /// built at a time and the others wait (and then usually find it cached).
    report_builds: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Transparency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transparency")
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

fn proof_status(error: &ProofError) -> Status {
    status(
        Code::OutOfRange,
        "TREE_SIZE_OUT_OF_RANGE",
        error.to_string(),
    )
}

fn not_found(reason: &str, message: impl Into<String>) -> Status {
    status(Code::NotFound, reason, message)
}

/// Hex of each hash.
pub fn hexes(path: &[TreeHash]) -> Vec<String> {
    path.iter().map(TreeHash::to_hex).collect()
}

/// The wire form of a signed checkpoint.
pub fn checkpoint_to_pb(signed: &SignedCheckpoint) -> pb::SignedCheckpoint {
    let c = &signed.checkpoint;
    pb::SignedCheckpoint {
        program_id: c.program.to_string(),
        tree_size: c.tree_size,
        root: c.root.to_hex(),
        journal_head: c.journal_head.to_hex(),
        issued_at_ms: c.issued_at.millis(),
        public_key: signed.public_key.clone(),
        signature: signed.signature.clone(),
        note: c.note(),
    }
}

/// A signed checkpoint from its wire form (the signature is not checked here).
pub fn checkpoint_from_pb(pb: &pb::SignedCheckpoint) -> Result<SignedCheckpoint, String> {
    Ok(SignedCheckpoint {
        checkpoint: Checkpoint {
            program: pb
                .program_id
                .parse()
                .map_err(|_| "program_id is not a UUID".to_owned())?,
            tree_size: pb.tree_size,
            root: TreeHash::from_hex(&pb.root).ok_or("root is not 64 hex digits")?,
            journal_head: Hash::from_hex(&pb.journal_head)
                .ok_or("journal_head is not 64 hex digits")?,
            issued_at: Timestamp::from_millis(pb.issued_at_ms),
        },
        public_key: pb.public_key.clone(),
        signature: pb.signature.clone(),
    })
}

impl Transparency {
    /// Trees over `engine`'s programmes, signing a checkpoint every `checkpoint_every`
    /// entries (0: only on demand).
    pub fn new(engine: Engine, checkpoint_every: u64) -> Arc<Transparency> {
        Arc::new(Transparency {
            engine,
            every: checkpoint_every,
            trees: Mutex::new(HashMap::new()),
            reports: Mutex::new(HashMap::new()),
            report_builds: tokio::sync::Semaphore::new(1),
        })
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn tree(&self, program: ProgramId) -> Arc<tokio::sync::Mutex<Tree>> {
        self.trees
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(program)
            .or_default()
            .clone()
    }

    fn sign(&self, program: ProgramId, tree: &Tree, size: u64, head: Hash) -> SignedCheckpoint {
        let root = tree.log.root_at(size).unwrap_or_default();
        Checkpoint {
            program,
            tree_size: size,
            root,
            journal_head: head,
            issued_at: crate::engine::now(),
        }
        .sign(&self.engine.keys().signing_key(program))
    }

    /// Brings the programme's tree up to its durable journal, signing and storing a
    /// checkpoint at every multiple of `checkpoint_every` passed on the way.
    async fn caught_up(
        &self,
        program: ProgramId,
    ) -> Result<tokio::sync::OwnedMutexGuard<Tree>, Status> {
        let mut tree = self.tree(program).lock_owned().await;
        if tree.signed_through.is_none() {
            let latest = self.stored(program, None).await?;
            tree.signed_through = Some(latest.map_or(0, |c| c.checkpoint.tree_size));
        }
        loop {
            // The leaves are the entries' chain hashes, so only those are read: after a
            // restart this walks the whole journal.
            let page = self
                .engine
                .entry_hashes(program, tree.log.len(), TREE_PAGE)
                .await
                .map_err(|e| engine_status(&e))?;
            if page.is_empty() {
                break;
            }
            tokio::task::yield_now().await;
            for (sequence, hash) in page {
                if sequence != tree.log.len() {
                    return Err(status(
                        Code::Internal,
                        "JOURNAL_GAP",
                        format!(
                            "the store returned entry {} where {} was expected",
                            sequence,
                            tree.log.len()
                        ),
                    ));
                }
                tree.log.push(entry_leaf(&hash));
                tree.head = hash;
                let size = tree.log.len();
                let due = tree.signed_through.is_some_and(|through| size > through);
                if self.every > 0 && size % self.every == 0 && due {
                    let signed = self.sign(program, &tree, size, tree.head);
                    self.engine
                        .put_tree_head(program, &signed)
                        .await
                        .map_err(|e| engine_status(&e))?;
                    tree.signed_through = Some(size);
                }
            }
        }
        Ok(tree)
    }

    /// Catches every programme's tree up (signing the checkpoints due); for a periodic task.
    pub async fn sweep(&self) {
        for spec in self.engine.programs() {
            if let Err(error) = self.caught_up(spec.id()).await {
                tracing::warn!(program = %spec.id(), %error, "disclosure catch-up failed");
            }
        }
    }

    /// Signs a checkpoint over the whole durable journal now and stores it; returns the
    /// stored checkpoint of that size (an earlier one when the journal has not grown).
    pub async fn sign_now(&self, program: ProgramId) -> Result<SignedCheckpoint, Status> {
        let mut tree = self.caught_up(program).await?;
        let size = tree.log.len();
        if let Some(stored) = self.stored(program, Some(size)).await? {
            return Ok(stored);
        }
        let signed = self.sign(program, &tree, size, tree.head);
        self.engine
            .put_tree_head(program, &signed)
            .await
            .map_err(|e| engine_status(&e))?;
        tree.signed_through = tree.signed_through.max(Some(size));
        drop(tree);
        Ok(self.stored(program, Some(size)).await?.unwrap_or(signed))
    }

    async fn stored(
        &self,
        program: ProgramId,
        size: Option<u64>,
    ) -> Result<Option<SignedCheckpoint>, Status> {
        self.engine
            .tree_head(program, size)
            .await
            .map_err(|e| engine_status(&e))
    }

    /// The stored checkpoint of `size` entries, or the latest for `None`.
    pub async fn checkpoint(
        &self,
        program: ProgramId,
        size: Option<u64>,
    ) -> Result<SignedCheckpoint, Status> {
        // Catching up first signs any checkpoint that has fallen due.
        drop(self.caught_up(program).await?);
        self.stored(program, size).await?.ok_or_else(|| {
            not_found(
                "CHECKPOINT_NOT_FOUND",
                match size {
                    Some(size) => format!("no checkpoint of {size} entries is stored"),
                    None => "no checkpoint is stored yet".to_owned(),
                },
            )
        })
    }

    /// The size to prove against: `size`, or the latest checkpoint's for 0.
    async fn size_or_latest(&self, program: ProgramId, size: u64) -> Result<u64, Status> {
        if size > 0 {
            return Ok(size);
        }
        Ok(self.checkpoint(program, None).await?.checkpoint.tree_size)
    }

    /// The inclusion proof of entry `sequence` in the tree of `size` entries (0: the
    /// latest checkpoint's size), with the entry's id and chain hash.
    pub async fn inclusion(
        &self,
        program: ProgramId,
        sequence: u64,
        size: u64,
        with_entry: bool,
    ) -> Result<pb::InclusionProof, Status> {
        let size = self.size_or_latest(program, size).await?;
        let tree = self.caught_up(program).await?;
        let path = tree
            .log
            .inclusion_proof(sequence, size)
            .map_err(|e| proof_status(&e))?;
        drop(tree);
        let from = sequence.saturating_sub(1);
        let page = self
            .engine
            .entries(program, from, 2)
            .await
            .map_err(|e| engine_status(&e))?;
        let entry = page
            .iter()
            .find(|e| e.sequence() == sequence)
            .ok_or_else(|| not_found("ENTRY_NOT_FOUND", format!("no entry {sequence}")))?;
        let prev = if sequence == 0 {
            Hash::GENESIS
        } else {
            page.iter()
                .find(|e| e.sequence() == from)
                .map_or(Hash::GENESIS, |e| e.hash())
        };
        let checkpoint = self.stored(program, Some(size)).await?;
        Ok(pb::InclusionProof {
            sequence,
            entry_id: entry.id().to_string(),
            entry_hash: entry.hash().to_hex(),
            tree_size: size,
            path: hexes(&path),
            checkpoint: checkpoint.as_ref().map(checkpoint_to_pb),
            entry: if with_entry {
                entry.encode()
            } else {
                Vec::new()
            },
            prev_hash: if with_entry {
                prev.to_hex()
            } else {
                String::new()
            },
        })
    }

    /// The consistency proof from `first` to `second` entries (0: the latest checkpoint).
    pub async fn consistency(
        &self,
        program: ProgramId,
        first: u64,
        second: u64,
    ) -> Result<pb::ConsistencyProof, Status> {
        let second = self.size_or_latest(program, second).await?;
        let tree = self.caught_up(program).await?;
        let path = tree
            .log
            .consistency_proof(first, second)
            .map_err(|e| proof_status(&e))?;
        Ok(pb::ConsistencyProof {
            first_size: first,
            second_size: second,
            path: hexes(&path),
        })
    }

    /// The public report of `scope` built from the checkpoint of `size` entries (0: the
    /// latest), with every row's inclusion proof.
    pub async fn report(
        &self,
        program: ProgramId,
        scope: ReportScope,
        size: u64,
    ) -> Result<Arc<PublicReport>, Status> {
        let checkpoint = match size {
            0 => self.checkpoint(program, None).await?,
            n => self.checkpoint(program, Some(n)).await?,
        };
        let size = checkpoint.checkpoint.tree_size;
        let key = (
            program,
            scope.org_unit,
            scope.from.map(Timestamp::millis),
            scope.until.map(Timestamp::millis),
            size,
        );
        let cached = || {
            self.reports
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&key)
                .cloned()
        };
        if let Some(hit) = cached() {
            return Ok(hit);
        }
        let _building = self
            .report_builds
            .acquire()
            .await
            .map_err(|_| status(Code::Unavailable, "UNAVAILABLE", "shutting down"))?;
        if let Some(hit) = cached() {
            return Ok(hit);
        }
        let pseudonym_key = self.engine.keys().pseudonym_key(program);
        let mut extractor = Extractor::new(pseudonym_key, scope);
        let period = Period::range(
            scope.from.unwrap_or(Timestamp::from_millis(i64::MIN)),
            scope.until.unwrap_or(Timestamp::from_millis(i64::MAX)),
        )
        .map_err(|e| status(Code::InvalidArgument, "INVALID_ARGUMENT", e.to_string()))?;
        let mut rollup: Option<RollupBuilder> = None;
        let rollup_status =
            |e: points_core::rollup::RollupError| status(Code::Internal, "INTERNAL", e.to_string());
        let mut next = 0;
        while next < size {
            let limit = usize::try_from(size - next)
                .unwrap_or(CATCH_UP_PAGE)
                .min(CATCH_UP_PAGE);
            let page = self
                .engine
                .entries(program, next, limit)
                .await
                .map_err(|e| engine_status(&e))?;
            if page.is_empty() {
                break;
            }
            for entry in &page {
                extractor.observe(entry);
                match rollup.as_mut() {
                    Some(builder) => {
                        builder.push(entry).map_err(rollup_status)?;
                    }
                    None => {
                        let mut builder =
                            RollupBuilder::new(entry, period).map_err(rollup_status)?;
                        builder.push(entry).map_err(rollup_status)?;
                        rollup = Some(builder);
                    }
                }
            }
            next += page.len() as u64;
        }
        let org_unit_name = scope
            .org_unit
            .and_then(|u| extractor.org_unit_name(u).map(str::to_owned));
        let rollup = rollup
            .ok_or_else(|| status(Code::Internal, "INTERNAL", "an empty journal"))?
            .finish()
            .map_err(rollup_status)?;
        let pseudonyms: HashMap<MemberId, String> = rollup
            .members()
            .map(|(m, _)| (m, extractor.pseudonym_of(m)))
            .collect();
        let (mut rows, names) = extractor.finish();
        let tree = self.caught_up(program).await?;
        for row in &mut rows {
            row.path = hexes(
                &tree
                    .log
                    .inclusion_proof(row.sequence, size)
                    .map_err(|e| proof_status(&e))?,
            );
        }
        drop(tree);
        let (program_name, decimal_places) = self
            .engine
            .read(program, |l| {
                (l.spec().name().to_owned(), l.spec().scale().places())
            })
            .map_err(|e| engine_status(&e))?;
        let report = Arc::new(PublicReport {
            format: REPORT_FORMAT.to_owned(),
            program,
            program_name,
            decimal_places: u32::from(decimal_places),
            org_unit: scope.org_unit,
            org_unit_name,
            from_ms: scope.from.map(Timestamp::millis),
            until_ms: scope.until.map(Timestamp::millis),
            checkpoint,
            pseudonym_key: Hash(pseudonym_key).to_hex(),
            names,
            summary: Summary::from_rollup(
                &rollup,
                scope.org_unit,
                |m| pseudonyms.get(&m).cloned().unwrap_or_default(),
                &rows,
            ),
            rows,
        });
        let mut cache = self.reports.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= REPORT_CACHE {
            cache.clear();
        }
        cache.insert(key, report.clone());
        Ok(report)
    }
}

/// The `Disclosure` gRPC service.
#[derive(Clone)]
pub struct DisclosureService {
    ctx: Ctx,
    transparency: Arc<Transparency>,
}

impl DisclosureService {
    /// The service over a context and the shared trees.
    pub fn new(ctx: Ctx, transparency: Arc<Transparency>) -> Self {
        DisclosureService { ctx, transparency }
    }

    /// Parses a program id and makes sure it is loaded. Public methods have no principal;
    /// keyed ones are checked against the key's program.
    async fn program<T>(
        &self,
        request: &tonic::Request<T>,
        program: &str,
    ) -> Result<ProgramId, Status> {
        let program = program_id(program)?;
        if let Some(principal) = request.extensions().get::<crate::auth::Principal>() {
            principal.check_program(program)?;
        }
        self.ctx.ensure(program).await?;
        Ok(program)
    }

    async fn sequence_of(
        &self,
        program: ProgramId,
        key: Option<pb::get_inclusion_proof_request::Key>,
    ) -> Result<u64, Status> {
        use pb::get_inclusion_proof_request::Key;
        match key {
            None => Err(status(
                Code::InvalidArgument,
                "INVALID_ARGUMENT",
                "key is required: entry_id or sequence",
            )),
            Some(Key::Sequence(sequence)) => Ok(sequence),
            Some(Key::EntryId(text)) => {
                let id: EntryId = text.parse().map_err(|_| {
                    status(
                        Code::InvalidArgument,
                        "INVALID_ARGUMENT",
                        "entry_id is not a UUID",
                    )
                })?;
                let entry = self
                    .ctx
                    .engine
                    .entry_by_id(program, id)
                    .await
                    .map_err(Status::from)?
                    .ok_or_else(|| not_found("ENTRY_NOT_FOUND", "no such entry"))?;
                Ok(entry.sequence())
            }
        }
    }

    async fn proof(
        &self,
        request: tonic::Request<pb::GetInclusionProofRequest>,
        with_entry: bool,
    ) -> Result<Response<pb::InclusionProof>, Status> {
        let program = self
            .program(&request, &request.get_ref().program_id)
            .await?;
        let req = request.into_inner();
        let sequence = self.sequence_of(program, req.key).await?;
        let proof = self
            .transparency
            .inclusion(program, sequence, req.tree_size, with_entry)
            .await?;
        Ok(Response::new(proof))
    }
}

fn optional_ms(ms: i64) -> Option<Timestamp> {
    (ms != 0).then(|| Timestamp::from_millis(ms))
}

#[tonic::async_trait]
impl DisclosureApi for DisclosureService {
    async fn get_checkpoint(
        &self,
        request: tonic::Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::SignedCheckpoint>, Status> {
        let program = self
            .program(&request, &request.get_ref().program_id)
            .await?;
        let size = request.get_ref().tree_size;
        let signed = self
            .transparency
            .checkpoint(program, (size > 0).then_some(size))
            .await?;
        Ok(Response::new(checkpoint_to_pb(&signed)))
    }

    async fn sign_checkpoint(
        &self,
        request: tonic::Request<pb::SignCheckpointRequest>,
    ) -> Result<Response<pb::SignedCheckpoint>, Status> {
        let program = self
            .program(&request, &request.get_ref().program_id)
            .await?;
        let signed = self.transparency.sign_now(program).await?;
        Ok(Response::new(checkpoint_to_pb(&signed)))
    }

    async fn get_inclusion_proof(
        &self,
        request: tonic::Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::InclusionProof>, Status> {
        self.proof(request, false).await
    }

    async fn get_consistency_proof(
        &self,
        request: tonic::Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::ConsistencyProof>, Status> {
        let program = self
            .program(&request, &request.get_ref().program_id)
            .await?;
        let req = request.into_inner();
        let proof = self
            .transparency
            .consistency(program, req.first_size, req.second_size)
            .await?;
        Ok(Response::new(proof))
    }

    async fn get_entry_proof(
        &self,
        request: tonic::Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::InclusionProof>, Status> {
        self.proof(request, true).await
    }

    async fn export_journal(
        &self,
        request: tonic::Request<pb::ExportJournalRequest>,
    ) -> Result<Response<pb::ExportJournalResponse>, Status> {
        let program = self
            .program(&request, &request.get_ref().program_id)
            .await?;
        let req = request.into_inner();
        let limit = match req.limit {
            0 => 1000,
            n => (n as usize).min(10_000),
        };
        let entries = self
            .ctx
            .engine
            .entries(program, req.from_sequence, limit)
            .await
            .map_err(Status::from)?;
        Ok(Response::new(pb::ExportJournalResponse {
            entries: entries.iter().map(|e| e.encode()).collect(),
        }))
    }

    async fn get_public_report(
        &self,
        request: tonic::Request<pb::GetPublicReportRequest>,
    ) -> Result<Response<pb::PublicReport>, Status> {
        let program = self
            .program(&request, &request.get_ref().program_id)
            .await?;
        let req = request.into_inner();
        let org_unit = if req.org_unit_id.is_empty() {
            None
        } else {
            Some(req.org_unit_id.parse::<OrgUnitId>().map_err(|_| {
                status(
                    Code::InvalidArgument,
                    "INVALID_ARGUMENT",
                    "org_unit_id is not a UUID",
                )
            })?)
        };
        let scope = ReportScope {
            org_unit,
            from: optional_ms(req.from_ms),
            until: optional_ms(req.until_ms),
        };
        let report = self
            .transparency
            .report(program, scope, req.tree_size)
            .await?;
        let json = serde_json::to_string(&*report)
            .map_err(|e| status(Code::Internal, "INTERNAL", e.to_string()))?;
        Ok(Response::new(pb::PublicReport { json }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::engine::EngineOptions;
    use crate::store::memory::MemoryStore;
    use points_core::merkle::{
        consistency_proof, inclusion_proof, leaf_hash, root, verify_consistency, verify_inclusion,
    };
    use points_core::{Actor, ActorId, Command, OrgLevel, ProgramSpec, Request, RequestId, Scale};
    use std::time::Instant;

    /// An engine over a memory store with a programme of `n` entries.
    async fn engine_with(n: u64) -> (Engine, ProgramId) {
        let engine =
            Engine::open_with_store(Arc::new(MemoryStore::new()), EngineOptions::default())
                .await
                .unwrap();
        let program = ProgramId::from_u128(7).unwrap();
        let admin = Actor::Admin {
            id: ActorId::from_u128(1).unwrap(),
        };
        let spec = ProgramSpec::new(program, "Test", "points", Scale::new(0).unwrap());
        let now = Timestamp::from_millis(1_790_000_000_000);
        engine
            .create_program(spec, RequestId::from_u128(1).unwrap(), admin, now)
            .await
            .unwrap();
        for i in 1..n {
            let request = Request {
                request_id: RequestId::from_u128(u128::from(i) + 1).unwrap(),
                actor: admin,
                command: Command::CreateOrgUnit {
                    id: OrgUnitId::from_u128(u128::from(i) + 100).unwrap(),
                    parent: None,
                    name: format!("Unit {i}"),
                    level: OrgLevel::Community,
                },
            };
            engine.submit_at(program, request, now).await.unwrap();
        }
        (engine, program)
    }

    /// A journal of several pages is caught up page by page (hashes only) to the root of
    /// all its leaves, signing the checkpoints that fall due inside the pages.
    #[tokio::test]
    async fn the_tree_catches_up_over_many_pages() {
        let n = 2 * TREE_PAGE as u64 + 3;
        let (engine, program) = engine_with(n).await;
        let leaves: Vec<TreeHash> = engine
            .entries(program, 0, n as usize)
            .await
            .unwrap()
            .iter()
            .map(|e| entry_leaf(&e.hash()))
            .collect();
        assert_eq!(leaves.len() as u64, n);
        let every = TREE_PAGE as u64 + 1;
        let t = Transparency::new(engine.clone(), every);
        t.sweep().await;
        for size in [every, 2 * every] {
            let c = t.checkpoint(program, Some(size)).await.unwrap();
            assert_eq!(c.checkpoint.tree_size, size);
            assert_eq!(c.checkpoint.root, root(&leaves[..size as usize]));
        }
        let signed = t.sign_now(program).await.unwrap();
        assert_eq!(signed.checkpoint.tree_size, n);
        assert_eq!(signed.checkpoint.root, root(&leaves));
    }

    #[tokio::test]
    async fn checkpoints_fall_due_every_n_entries_and_proofs_match_the_tree() {
        let (engine, program) = engine_with(8).await;
        let leaves: Vec<TreeHash> = engine
            .entries(program, 0, 100)
            .await
            .unwrap()
            .iter()
            .map(|e| entry_leaf(&e.hash()))
            .collect();
        let t = Transparency::new(engine.clone(), 3);
        assert!(t.checkpoint(program, Some(2)).await.is_err());
        t.sweep().await;
        let key = engine.keys().public_key_hex(program);
        for size in [3u64, 6] {
            let c = t.checkpoint(program, Some(size)).await.unwrap();
            c.verify(&key).unwrap();
            assert_eq!(c.checkpoint.root, root(&leaves[..size as usize]));
        }
        assert_eq!(
            t.checkpoint(program, None)
                .await
                .unwrap()
                .checkpoint
                .tree_size,
            6
        );
        // On demand: the whole journal, once; asking again returns the stored one.
        let signed = t.sign_now(program).await.unwrap();
        assert_eq!(signed.checkpoint.tree_size, 8);
        assert_eq!(signed.checkpoint.root, root(&leaves));
        assert_eq!(t.sign_now(program).await.unwrap(), signed);
        let proof = t.inclusion(program, 5, 0, true).await.unwrap();
        assert_eq!(proof.tree_size, 8);
        assert_eq!(proof.path, hexes(&inclusion_proof(5, &leaves).unwrap()));
        assert!(!proof.entry.is_empty());
        let public = t.inclusion(program, 5, 6, false).await.unwrap();
        assert!(public.entry.is_empty() && public.prev_hash.is_empty());
        assert_eq!(
            public.path,
            hexes(&inclusion_proof(5, &leaves[..6]).unwrap())
        );
        assert!(public.checkpoint.is_some());
        let c = t.consistency(program, 3, 0).await.unwrap();
        assert_eq!(c.path, hexes(&consistency_proof(3, &leaves).unwrap()));
        // Beyond the journal: a clear status, not a panic.
        let error = t.inclusion(program, 9, 8, false).await.unwrap_err();
        assert_eq!(error.code(), Code::OutOfRange);
        let error = t.consistency(program, 3, 20).await.unwrap_err();
        assert_eq!(error.code(), Code::OutOfRange);
        // A restarted server (fresh trees) catches up from the store and signs the
        // checkpoint that falls due next.
        let restarted = Transparency::new(engine.clone(), 3);
        let request = Request {
            request_id: RequestId::from_u128(99).unwrap(),
            actor: Actor::Admin {
                id: ActorId::from_u128(1).unwrap(),
            },
            command: Command::CreateOrgUnit {
                id: OrgUnitId::from_u128(99).unwrap(),
                parent: None,
                name: "Unit 9".into(),
                level: OrgLevel::Community,
            },
        };
        engine.submit(program, request).await.unwrap();
        restarted.sweep().await;
        let nine = restarted.checkpoint(program, Some(9)).await.unwrap();
        nine.verify(&key).unwrap();
        let six = restarted.checkpoint(program, Some(6)).await.unwrap();
        assert_eq!(six.checkpoint.root, root(&leaves[..6]));
        engine.shutdown().await;
    }

    /// How the in-memory tree scales (figures in BENCHMARKS.md): `cargo test -p points-grpc
    /// --release --lib a_million_leaves -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, run by hand in release"]
    fn a_million_leaves() {
        let n = 1_000_000u64;
        let started = Instant::now();
        let mut log = MerkleLog::new();
        for i in 0..n {
            log.push(leaf_hash(&i.to_le_bytes()));
        }
        eprintln!("push {n} leaves: {:?}", started.elapsed());
        let started = Instant::now();
        let r = log.root_at(n).unwrap();
        eprintln!("root of {n}: {:?}", started.elapsed());
        let started = Instant::now();
        let mut proofs = 0u32;
        for index in (0..n).step_by(9_973) {
            let proof = log.inclusion_proof(index, n).unwrap();
            verify_inclusion(&log.leaf(index).unwrap(), index, n, &proof, &r).unwrap();
            proofs += 1;
        }
        eprintln!(
            "inclusion proof + verify: {:?} each",
            started.elapsed() / proofs
        );
        let started = Instant::now();
        let mut proofs = 0u32;
        for first in (1..n).step_by(9_967) {
            let proof = log.consistency_proof(first, n).unwrap();
            let first_root = log.root_at(first).unwrap();
            verify_consistency(first, n, &first_root, &r, &proof).unwrap();
            proofs += 1;
        }
        eprintln!(
            "consistency proof + verify: {:?} each",
            started.elapsed() / proofs
        );
    }
}
