//! One conformance suite for every store (memory, SQLite, PostgreSQL), plus store-specific
//! failure tests: a corrupted journal byte, a failed commit, and two engines sharing one
//! PostgreSQL database.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use points_core::{
    ActivityInput, Actor, ActorId, Applied, Command, Event, Hash, Ledger, MemberId, MemberKind,
    MerchantId, MerchantKind, OrgLevel, OrgUnitId, ProgramId, ProgramSpec, Rejection, Request,
    RequestId, RuleInput, Scale, ServiceInput, TimeKind, Timestamp,
};
use points_grpc::engine::{ApiKeyRecord, ApiRole, Engine, EngineError, EngineOptions, StoreConfig};
use points_grpc::store::memory::MemoryStore;
use points_grpc::store::{Store, StoreError, StoredEntry, LOCK_PAGE};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

const T0: i64 = 1_790_000_000_000;

fn uid() -> uuid::Uuid {
    uuid::Uuid::new_v4()
}

fn rid() -> RequestId {
    RequestId::new(uid()).unwrap()
}

/// A programme with one community, `members` members holding 100 points each, one merchant.
struct Fixture {
    program: ProgramId,
    spec: ProgramSpec,
    admin: Actor,
    till: Actor,
    merchant: MerchantId,
    members: Vec<MemberId>,
}

impl Fixture {
    fn new(members: usize) -> Self {
        let program = ProgramId::new(uid()).unwrap();
        let merchant = MerchantId::new(uid()).unwrap();
        Fixture {
            program,
            spec: ProgramSpec::new(
                program,
                "Donghu volunteer points",
                "points",
                Scale::new(2).unwrap(),
            ),
            admin: Actor::Admin {
                id: ActorId::new(uid()).unwrap(),
            },
            till: Actor::Merchant {
                id: ActorId::new(uid()).unwrap(),
                merchant,
            },
            merchant,
            members: (0..members)
                .map(|_| MemberId::new(uid()).unwrap())
                .collect(),
        }
    }

    fn request(&self, actor: Actor, command: Command) -> Request {
        Request {
            request_id: rid(),
            actor,
            command,
        }
    }

    fn redeem(&self, member: MemberId, amount: &str) -> Request {
        self.request(
            self.till,
            Command::Redeem {
                member,
                merchant: self.merchant,
                amount: amount.parse().unwrap(),
            },
        )
    }

    /// Creates the programme and gives every member 100 points.
    async fn set_up(&self, engine: &Engine) {
        let created = engine
            .create_program(
                self.spec.clone(),
                rid(),
                self.admin,
                Timestamp::from_millis(T0),
            )
            .await
            .unwrap();
        assert!(matches!(created, Applied::New(_)));
        let community = OrgUnitId::new(uid()).unwrap();
        let activity = points_core::ActivityId::new(uid()).unwrap();
        let mut setup = vec![
            self.request(
                self.admin,
                Command::CreateOrgUnit {
                    id: community,
                    parent: None,
                    name: "Donghu".into(),
                    level: OrgLevel::Community,
                },
            ),
            self.request(
                self.admin,
                Command::RegisterMerchant {
                    id: self.merchant,
                    org_unit: community,
                    name: "Corner cafe".into(),
                    kind: MerchantKind::Partner,
                },
            ),
            self.request(
                self.admin,
                Command::DefineActivity(ActivityInput {
                    id: activity,
                    org_unit: community,
                    name: "Patrol".into(),
                    category: "patrol".into(),
                    rule: RuleInput::PerOccasion("100".parse().unwrap()),
                    coefficient: "1".parse().unwrap(),
                    max_minutes_per_occasion: None,
                    daily_points_cap: None,
                    time_kind: TimeKind::Credit,
                }),
            ),
        ];
        for &m in &self.members {
            setup.push(self.request(
                self.admin,
                Command::EnrolMember {
                    id: m,
                    home: community,
                    kind: MemberKind::Resident,
                    dual_registration: false,
                    card_code: None,
                },
            ));
        }
        let now = Timestamp::from_millis(T0 + 1000);
        for r in engine.submit_many_at(self.program, setup, now).await {
            assert!(matches!(r, Ok(Applied::New(_))), "{r:?}");
        }
        let records = self
            .members
            .iter()
            .map(|&member| ServiceInput {
                member,
                activity,
                org_unit: community,
                started_at: Timestamp::from_millis(T0 - 3_600_000),
                minutes: 60,
            })
            .collect();
        let recorded = engine
            .submit_at(
                self.program,
                self.request(self.admin, Command::RecordService { records }),
                now,
            )
            .await
            .unwrap();
        let Applied::New(entry) = recorded else {
            panic!("not new")
        };
        let Event::ServiceRecorded { records } = entry.event() else {
            panic!("not recorded")
        };
        let ids = records.iter().map(|r| r.id).collect();
        let approved = engine
            .submit_at(
                self.program,
                self.request(self.admin, Command::ApproveService { records: ids }),
                now,
            )
            .await;
        assert!(matches!(approved, Ok(Applied::New(_))), "{approved:?}");
    }

    fn available(&self, engine: &Engine, member: MemberId) -> String {
        engine
            .read(self.program, |l| {
                let b = l
                    .balance(member, Timestamp::from_millis(T0 + 10_000))
                    .unwrap();
                b.available.to_decimal(l.spec().scale()).to_string()
            })
            .unwrap()
    }
}

/// How a suite reopens "the same" store.
enum Backend {
    Memory(Arc<MemoryStore>),
    Config(StoreConfig),
}

impl Backend {
    async fn open(&self, options: EngineOptions) -> anyhow::Result<Engine> {
        match self {
            Backend::Memory(store) => {
                Engine::open_with_store(store.clone() as Arc<dyn Store>, options).await
            }
            Backend::Config(config) => Engine::open(config.clone(), options).await,
        }
    }
}

fn options(snapshot_every: u64) -> EngineOptions {
    EngineOptions {
        max_batch: 64,
        snapshot_every,
        ..EngineOptions::default()
    }
}

/// The suite every store must pass.
async fn conformance(backend: Backend) {
    let started = Instant::now();
    let engine = backend.open(options(7)).await.unwrap();
    let f = Fixture::new(5);

    // Unknown programmes.
    assert!(matches!(
        engine.submit(f.program, f.redeem(f.members[0], "1")).await,
        Err(EngineError::UnknownProgram)
    ));

    // Creating a programme is idempotent on its request id.
    let create_id = rid();
    let now = Timestamp::from_millis(T0);
    let first = engine
        .create_program(f.spec.clone(), create_id, f.admin, now)
        .await
        .unwrap();
    assert!(matches!(first, Applied::New(ref e) if e.sequence() == 0));
    let again = engine
        .create_program(f.spec.clone(), create_id, f.admin, now)
        .await
        .unwrap();
    assert_eq!(
        again,
        Applied::Duplicate {
            sequence: 0,
            id: first.entry_id()
        }
    );
    let other = ProgramSpec::new(f.program, "Another", "points", Scale::new(0).unwrap());
    assert!(matches!(
        engine.create_program(other, rid(), f.admin, now).await,
        Err(EngineError::Rejected(Rejection::AlreadyExists))
    ));
    assert!(engine.programs().iter().any(|s| s.id() == f.program));

    // Set the programme up on a second fixture sharing nothing with the first.
    let f = Fixture::new(5);
    let mut events = {
        let created = engine
            .create_program(f.spec.clone(), rid(), f.admin, now)
            .await
            .unwrap();
        assert!(matches!(created, Applied::New(_)));
        engine.subscribe(f.program).unwrap()
    };
    // (set_up creates the programme itself; use a fresh fixture for the rest.)
    let g = Fixture::new(5);
    g.set_up(&engine).await;
    let mut events_g = engine.subscribe(g.program).unwrap();

    // Redemptions, a retry, a reused id and an overdraft.
    let redemptions: Vec<Request> = g.members.iter().map(|&m| g.redeem(m, "12.50")).collect();
    let at = Timestamp::from_millis(T0 + 2000);
    let results = engine
        .submit_many_at(g.program, redemptions.clone(), at)
        .await;
    assert_eq!(results.len(), redemptions.len());
    let sequences: Vec<u64> = results
        .iter()
        .map(|r| r.as_ref().unwrap().sequence())
        .collect();
    for (r, s) in results.iter().zip(&sequences) {
        assert!(matches!(r, Ok(Applied::New(e)) if e.sequence() == *s));
    }
    for s in &sequences {
        let got = tokio::time::timeout(Duration::from_secs(5), events_g.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.sequence(), *s);
    }
    let retry = engine
        .submit_at(g.program, redemptions[0].clone(), at)
        .await
        .unwrap();
    assert_eq!(
        retry,
        Applied::Duplicate {
            sequence: sequences[0],
            id: results[0].as_ref().unwrap().entry_id()
        }
    );
    let mut reused = g.redeem(g.members[0], "1");
    reused.request_id = redemptions[0].request_id;
    assert!(matches!(
        engine.submit_at(g.program, reused.clone(), at).await,
        Err(EngineError::Rejected(Rejection::RequestIdReused))
    ));
    assert!(matches!(
        engine
            .submit_at(g.program, g.redeem(g.members[1], "90"), at)
            .await,
        Err(EngineError::Rejected(Rejection::InsufficientPoints))
    ));
    assert_eq!(g.available(&engine, g.members[0]), "87.50");

    // More requests than one batch holds (64 here) go to the writer as several jobs, in
    // order: every answer in request order, each request written once, sequences rising.
    let many: Vec<Request> = (0..150)
        .map(|i| g.redeem(g.members[i % g.members.len()], "0.01"))
        .collect();
    let before = engine.read(g.program, |l| l.next_sequence()).unwrap();
    let results = engine.submit_many_at(g.program, many.clone(), at).await;
    assert_eq!(results.len(), many.len());
    for (i, (result, request)) in results.iter().zip(&many).enumerate() {
        assert!(
            matches!(result, Ok(Applied::New(e))
                if e.request_id() == request.request_id && e.sequence() == before + i as u64),
            "answer {i}: {result:?}"
        );
    }
    assert_eq!(g.available(&engine, g.members[0]), "87.20");

    // Entries: paging and lookup by id.
    let total = engine.read(g.program, |l| l.next_sequence()).unwrap();
    let mut paged = Vec::new();
    while (paged.len() as u64) < total {
        let page = engine
            .entries(g.program, paged.len() as u64, 4)
            .await
            .unwrap();
        assert!(!page.is_empty() && page.len() <= 4);
        paged.extend(page);
    }
    assert!(engine
        .entries(g.program, total, 4)
        .await
        .unwrap()
        .is_empty());
    for (i, e) in paged.iter().enumerate() {
        assert_eq!(e.sequence(), i as u64);
    }
    let last = paged.last().unwrap().clone();
    assert_eq!(
        last.hash(),
        engine.read(g.program, |l| l.head_hash()).unwrap()
    );
    assert_eq!(
        engine
            .entry_by_id(g.program, paged[3].id())
            .await
            .unwrap()
            .as_ref(),
        Some(&paged[3])
    );
    assert_eq!(
        engine.entry_by_id(f.program, paged[3].id()).await.unwrap(),
        None
    );

    // API keys.
    let key = ApiKeyRecord {
        id: uid(),
        label: "cafe till".into(),
        role: ApiRole::Merchant,
        program: Some(g.program),
        org_unit: None,
        merchant: Some(g.merchant),
        secret_hash: *blake3::hash(b"secret").as_bytes(),
        created_at_ms: T0,
        revoked: false,
    };
    engine.put_api_key(key.clone()).await.unwrap();
    let keys = engine.api_keys().await.unwrap();
    assert!(keys.contains(&key));
    assert!(engine.revoke_api_key(key.id).await.unwrap());
    assert!(!engine.revoke_api_key(uid()).await.unwrap());
    let revoked = engine
        .api_keys()
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.id == key.id)
        .unwrap();
    assert!(revoked.revoked);

    // Chain and audit.
    let chain = engine.verify_chain(g.program).await.unwrap();
    assert_eq!(chain.first_bad, None);
    assert_eq!(chain.entries_checked, total);
    assert_eq!(chain.head_hash, last.hash());
    let audit = engine.audit(g.program).await.unwrap();
    assert!(audit.is_clean(), "{:?}", audit.breaches);
    assert_eq!(audit.entries_checked, total);
    assert!(events.try_recv().is_err());

    // Reopen: same head, balances, entries; retries still deduplicated, reused ids still
    // refused (from the checkpoint and from the journal after it).
    let balances: Vec<String> = g.members.iter().map(|&m| g.available(&engine, m)).collect();
    engine.shutdown().await;
    drop(engine);
    let engine = backend.open(options(7)).await.unwrap();
    assert_eq!(
        engine.read(g.program, |l| l.head_hash()).unwrap(),
        last.hash()
    );
    assert_eq!(
        engine.read(g.program, |l| l.next_sequence()).unwrap(),
        total
    );
    let reopened: Vec<String> = g.members.iter().map(|&m| g.available(&engine, m)).collect();
    assert_eq!(balances, reopened);
    let retry = engine
        .submit_at(g.program, redemptions[4].clone(), at)
        .await
        .unwrap();
    assert_eq!(retry.sequence(), sequences[4]);
    for r in [&redemptions[0], &redemptions[4]] {
        let mut reused = g.redeem(g.members[2], "1");
        reused.request_id = r.request_id;
        assert!(matches!(
            engine.submit_at(g.program, reused, at).await,
            Err(EngineError::Rejected(Rejection::RequestIdReused))
        ));
    }
    assert_eq!(engine.entries(g.program, 0, 1000).await.unwrap(), paged);
    // The chain hashes alone, as the Merkle tree reads them, whole and in pages.
    let hashes: Vec<(u64, points_core::Hash)> =
        paged.iter().map(|e| (e.sequence(), e.hash())).collect();
    assert_eq!(
        engine.entry_hashes(g.program, 0, 1000).await.unwrap(),
        hashes
    );
    let mut read = Vec::new();
    while let Ok(page) = engine.entry_hashes(g.program, read.len() as u64, 3).await {
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        read.extend(page);
    }
    assert_eq!(read, hashes);
    assert!(engine
        .entry_hashes(g.program, total, 10)
        .await
        .unwrap()
        .is_empty());
    let more = engine
        .submit_at(g.program, g.redeem(g.members[0], "7.50"), at)
        .await
        .unwrap();
    assert_eq!(more.sequence(), total);
    assert_eq!(g.available(&engine, g.members[0]), "79.70");
    let audit = engine.audit(g.program).await.unwrap();
    assert!(audit.is_clean(), "{:?}", audit.breaches);
    assert_eq!(
        engine
            .verify_chain(g.program)
            .await
            .unwrap()
            .entries_checked,
        total + 1
    );
    // The signing key lives in the store: a restart (or a second server) signs alike.
    let key = engine.keys().public_key_hex(g.program);
    // Signed tree heads (issue 7): the first per size stays, the largest is the latest.
    let head = |size: u64, byte: u8| {
        points_core::checkpoint::Checkpoint {
            program: g.program,
            tree_size: size,
            root: points_core::merkle::TreeHash([byte; 32]),
            journal_head: points_core::Hash([byte; 32]),
            issued_at: at,
        }
        .sign(&engine.keys().signing_key(g.program))
    };
    assert_eq!(engine.tree_head(g.program, None).await.unwrap(), None);
    engine.put_tree_head(g.program, &head(4, 1)).await.unwrap();
    engine.put_tree_head(g.program, &head(9, 2)).await.unwrap();
    engine.put_tree_head(g.program, &head(4, 3)).await.unwrap();
    assert_eq!(
        engine.tree_head(g.program, Some(4)).await.unwrap(),
        Some(head(4, 1))
    );
    assert_eq!(
        engine.tree_head(g.program, None).await.unwrap(),
        Some(head(9, 2))
    );
    assert_eq!(engine.tree_head(g.program, Some(5)).await.unwrap(), None);
    engine.shutdown().await;
    if !matches!(backend, Backend::Config(StoreConfig::Memory)) {
        let reopened = backend.open(options(7)).await.unwrap();
        assert_eq!(reopened.keys().public_key_hex(g.program), key);
        assert_eq!(
            reopened.tree_head(g.program, None).await.unwrap(),
            Some(head(9, 2))
        );
        reopened.shutdown().await;
    }
    eprintln!(
        "conformance on {:?} passed in {:?}",
        kind(&backend),
        started.elapsed()
    );
}

fn kind(backend: &Backend) -> &'static str {
    match backend {
        Backend::Memory(_) => "memory",
        Backend::Config(StoreConfig::Memory) => "memory",
        Backend::Config(StoreConfig::Sqlite { .. }) => "sqlite",
        Backend::Config(StoreConfig::Postgres { .. }) => "postgres",
    }
}

/// The PostgreSQL test database with a fresh schema of its own (so tests run in parallel and
/// each one applies the migrations), or `None` (after a notice) when it cannot be reached and
/// `POINTS_REQUIRE_POSTGRES` is not `1`.
async fn postgres() -> Option<StoreConfig> {
    let url = std::env::var("POINTS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/points_test".into());
    let reached = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_postgres::connect(&url, tokio_postgres::NoTls),
    )
    .await;
    match reached {
        Ok(Ok((client, connection))) => {
            tokio::spawn(connection);
            let schema = format!("points_test_{}", uid().simple());
            client
                .batch_execute(&format!("CREATE SCHEMA {schema}"))
                .await
                .unwrap();
            let sep = if url.contains('?') { '&' } else { '?' };
            Some(StoreConfig::Postgres {
                url: format!("{url}{sep}options=-csearch_path%3D{schema}"),
            })
        }
        other => {
            let why = match other {
                Ok(Err(e)) => e.to_string(),
                _ => "timed out".into(),
            };
            if std::env::var("POINTS_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!("no PostgreSQL at {url}: {why}");
            }
            eprintln!("skipping: no PostgreSQL at {url} ({why})");
            None
        }
    }
}

/// Drops the schema [`postgres`] made.
async fn drop_schema(config: &StoreConfig) {
    let StoreConfig::Postgres { url } = config else {
        return;
    };
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let schema: String = client
        .query_one("SELECT current_schema()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(schema.starts_with("points_test_"));
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

#[tokio::test]
async fn memory_conformance() {
    conformance(Backend::Memory(Arc::new(MemoryStore::new()))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_conformance() {
    let dir = tempfile::tempdir().unwrap();
    conformance(Backend::Config(StoreConfig::Sqlite {
        dir: dir.path().to_path_buf(),
    }))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_conformance() {
    let Some(config) = postgres().await else {
        return;
    };
    conformance(Backend::Config(config)).await;
}

/// An engine on a fresh SQLite directory, checkpointing every `snapshot_every` entries,
/// with a fixture of `members` members set up in it. Keep the directory alive while used.
async fn sqlite_fixture(
    members: usize,
    snapshot_every: u64,
) -> (tempfile::TempDir, StoreConfig, Engine, Fixture) {
    sqlite_fixture_with(members, options(snapshot_every)).await
}

/// [`sqlite_fixture`] with the engine's options given.
async fn sqlite_fixture_with(
    members: usize,
    options: EngineOptions,
) -> (tempfile::TempDir, StoreConfig, Engine, Fixture) {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::Sqlite {
        dir: dir.path().to_path_buf(),
    };
    let engine = Engine::open(config.clone(), options).await.unwrap();
    let f = Fixture::new(members);
    f.set_up(&engine).await;
    (dir, config, engine, f)
}

/// Flips the last byte (inside the stored hash) of entry `sequence`'s blob.
fn corrupt_sqlite_entry(dir: &std::path::Path, sequence: i64) {
    let conn = rusqlite::Connection::open(dir.join("points.db")).unwrap();
    let (k, mut body): (i64, Vec<u8>) = conn
        .query_row(
            "SELECT k, body FROM entries WHERE k & ((1 << 40) - 1) = ?1",
            [sequence],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let last = body.len() - 1;
    body[last] ^= 0x01;
    conn.execute(
        "UPDATE entries SET body = ?1 WHERE k = ?2",
        rusqlite::params![body, k],
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_corrupt_entry_stops_start_up() {
    let (dir, config, engine, f) = sqlite_fixture(3, 1_000).await;
    let at = Timestamp::from_millis(T0 + 2000);
    let redemptions = f.members.iter().map(|&m| f.redeem(m, "5")).collect();
    engine.submit_many_at(f.program, redemptions, at).await;
    engine.shutdown().await;
    drop(engine);

    corrupt_sqlite_entry(dir.path(), 7);
    let err = Engine::open(config.clone(), options(1_000))
        .await
        .err()
        .expect("a corrupt journal must stop start-up");
    let message = format!("{err:#}");
    assert!(message.contains("entry 7"), "{message}");
    assert!(message.contains(&f.program.to_string()), "{message}");
}

/// A database written by schema version 1 (`idk` and `req` columns with their indexes) is
/// migrated at start: the columns and indexes go, and every entry is still found by its id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_schema_1_is_migrated_at_start() {
    let (dir, config, engine, f) = sqlite_fixture(3, 1_000).await;
    let entries = engine.entries(f.program, 0, 100).await.unwrap();
    engine.shutdown().await;
    drop(engine);

    // Turn the file back into what version 1 wrote.
    {
        let conn = rusqlite::Connection::open(dir.path().join("points.db")).unwrap();
        conn.execute_batch(
            "ALTER TABLE entries ADD COLUMN idk INTEGER NOT NULL DEFAULT 0;
             ALTER TABLE entries ADD COLUMN req BLOB NOT NULL DEFAULT x'';
             CREATE INDEX entries_id ON entries (idk);
             CREATE INDEX entries_request ON entries (k >> 40, req);
             UPDATE meta SET value = 1 WHERE key = 'schema_version';",
        )
        .unwrap();
    }

    let engine = Engine::open(config.clone(), options(1_000)).await.unwrap();
    for entry in &entries {
        assert_eq!(
            engine
                .entry_by_id(f.program, entry.id())
                .await
                .unwrap()
                .as_ref(),
            Some(entry)
        );
    }
    let redeemed = engine
        .submit_many_at(
            f.program,
            vec![f.redeem(f.members[0], "5")],
            Timestamp::from_millis(T0 + 5000),
        )
        .await;
    assert!(matches!(redeemed[0], Ok(Applied::New(_))), "{redeemed:?}");
    engine.shutdown().await;
    drop(engine);

    let conn = rusqlite::Connection::open(dir.path().join("points.db")).unwrap();
    let number = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).unwrap() };
    assert_eq!(
        number("SELECT value FROM meta WHERE key = 'schema_version'"),
        2
    );
    assert_eq!(
        number("SELECT count(*) FROM pragma_table_info('entries') WHERE name IN ('idk', 'req')"),
        0,
        "the version 1 columns are gone"
    );
    assert_eq!(
        number("SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'entries'"),
        0,
        "the version 1 indexes are gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_corrupt_entry_before_checkpoint_is_found_by_verify_chain() {
    let (dir, config, engine, f) = sqlite_fixture(3, 4).await;
    let at = Timestamp::from_millis(T0 + 2000);
    for &m in &f.members {
        engine
            .submit_at(f.program, f.redeem(m, "5"), at)
            .await
            .unwrap();
    }
    engine.shutdown().await;
    drop(engine);
    corrupt_sqlite_entry(dir.path(), 2);
    // Start-up resumes from the checkpoint, so it does not see entry 2; the full check does.
    let engine = Engine::open(config, options(4)).await.unwrap();
    let chain = engine.verify_chain(f.program).await.unwrap();
    let (seq, why) = chain.first_bad.unwrap();
    assert_eq!(seq, 2, "{why}");
    assert_eq!(chain.entries_checked, 2);
}

/// The checkpoint files of the SQLite store, newest last.
fn checkpoint_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "ckpt"))
        .collect();
    files.sort();
    files
}

/// Ledger checkpoints are files beside the database, the latest two kept; a file that does
/// not check out is skipped (start-up resumes from the one before and replays further),
/// and a checkpoint row from before files is still used until a file supersedes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_checkpoints_are_checked_files() {
    // Checkpoints stored by the writer itself, so that every one that falls due is written.
    let foreground = EngineOptions {
        background_checkpoints: false,
        ..options(4)
    };
    let (dir, config, engine, f) = sqlite_fixture_with(3, foreground).await;
    let at = Timestamp::from_millis(T0 + 2000);
    for round in 0..4 {
        for &m in &f.members {
            let amount = if round == 0 { "5" } else { "1" };
            engine
                .submit_at(f.program, f.redeem(m, amount), at)
                .await
                .unwrap();
        }
    }
    let head = engine.read(f.program, |l| l.head_hash()).unwrap();
    engine.shutdown().await;
    drop(engine);

    let files = checkpoint_files(dir.path());
    assert_eq!(files.len(), 2, "{files:?}");
    let store = points_grpc::store::sqlite::SqliteStore::open(dir.path())
        .await
        .unwrap();
    let newest = store.latest_checkpoint(f.program).await.unwrap().unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("points.db")).unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM checkpoints", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0, "checkpoints are not rows any more");

    // Flip a byte of the newest file's snapshot: the one before is used.
    let mut bytes = std::fs::read(&files[1]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&files[1], &bytes).unwrap();
    let older = store.latest_checkpoint(f.program).await.unwrap().unwrap();
    assert!(older.next_sequence < newest.next_sequence);
    drop(store);
    let engine = Engine::open(config.clone(), options(4)).await.unwrap();
    assert_eq!(engine.read(f.program, |l| l.head_hash()).unwrap(), head);
    for &m in &f.members {
        assert_eq!(f.available(&engine, m), "92.00");
    }
    let audit = engine.audit(f.program).await.unwrap();
    assert!(audit.is_clean(), "{:?}", audit.breaches);
    engine.shutdown().await;
    drop(engine);

    // A row from before files, with no usable file, is still found; the next checkpoint
    // written replaces it with a file.
    for file in checkpoint_files(dir.path()) {
        std::fs::remove_file(file).unwrap();
    }
    let handle: i64 = conn
        .query_row("SELECT handle FROM programs", [], |r| r.get(0))
        .unwrap();
    conn.execute(
        "INSERT INTO checkpoints (handle, next_seq, head, snapshot) VALUES (?1, ?2, ?3, ?4)",
        rusqlite::params![
            handle,
            i64::try_from(older.next_sequence).unwrap(),
            older.head_hash.0,
            older.snapshot
        ],
    )
    .unwrap();
    let store = points_grpc::store::sqlite::SqliteStore::open(dir.path())
        .await
        .unwrap();
    let legacy = store.latest_checkpoint(f.program).await.unwrap().unwrap();
    assert_eq!(legacy.next_sequence, older.next_sequence);
    store.put_checkpoint(f.program, &newest).await.unwrap();
    let rows: i64 = conn
        .query_row("SELECT count(*) FROM checkpoints", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0, "the row was superseded by a file");
    let latest = store.latest_checkpoint(f.program).await.unwrap().unwrap();
    assert_eq!(latest.next_sequence, newest.next_sequence);
    assert_eq!(latest.snapshot, newest.snapshot);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_failed_commit_acknowledges_nothing_and_recovers() {
    let (_dir, config, engine, f) = sqlite_fixture(4, 1_000).await;
    let at = Timestamp::from_millis(T0 + 2000);
    let head = engine.read(f.program, |l| l.head_hash()).unwrap();
    let mut events = engine.subscribe(f.program).unwrap();

    engine.inject_commit_failures(1);
    let failed: Vec<Request> = f.members.iter().map(|&m| f.redeem(m, "60")).collect();
    let results = engine.submit_many_at(f.program, failed.clone(), at).await;
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(EngineError::Unavailable(_)))),
        "{results:?}"
    );
    // Nothing visible, nothing broadcast, reads still work.
    assert_eq!(engine.read(f.program, |l| l.head_hash()).unwrap(), head);
    assert_eq!(f.available(&engine, f.members[0]), "100.00");
    assert!(events.try_recv().is_err());
    assert!(!engine.is_read_only(f.program).unwrap());

    // The same requests succeed on retry (they were never acknowledged), exactly once.
    let results = engine.submit_many_at(f.program, failed.clone(), at).await;
    assert!(
        results.iter().all(|r| matches!(r, Ok(Applied::New(_)))),
        "{results:?}"
    );
    let results = engine.submit_many_at(f.program, failed, at).await;
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(Applied::Duplicate { .. }))),
        "{results:?}"
    );
    assert_eq!(f.available(&engine, f.members[0]), "40.00");
    let head = engine.read(f.program, |l| l.head_hash()).unwrap();
    engine.shutdown().await;
    drop(engine);

    let engine = Engine::open(config, options(1_000)).await.unwrap();
    assert_eq!(engine.read(f.program, |l| l.head_hash()).unwrap(), head);
    assert_eq!(f.available(&engine, f.members[3]), "40.00");
    let audit = engine.audit(f.program).await.unwrap();
    assert!(audit.is_clean(), "{:?}", audit.breaches);
}

#[tokio::test]
async fn memory_failed_commit_acknowledges_nothing() {
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::open_with_store(store.clone() as Arc<dyn Store>, options(1_000))
        .await
        .unwrap();
    let f = Fixture::new(2);
    f.set_up(&engine).await;
    let at = Timestamp::from_millis(T0 + 2000);
    engine.inject_commit_failures(1);
    let r = engine
        .submit_at(f.program, f.redeem(f.members[0], "1"), at)
        .await;
    assert!(matches!(r, Err(EngineError::Unavailable(_))), "{r:?}");
    assert_eq!(f.available(&engine, f.members[0]), "100.00");
    let audit = engine.audit(f.program).await.unwrap();
    assert!(audit.is_clean(), "{:?}", audit.breaches);
}

/// While one commit syncs, the writer decides the batches behind it against its effects. If
/// that commit fails, those batches must fail too: a redemption decided on points the failed
/// batch would have taken is not answered with a rejection, and nothing is acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_fails_the_batches_decided_behind_it() {
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::open_with_store(store.clone() as Arc<dyn Store>, options(1_000))
        .await
        .unwrap();
    let f = Arc::new(Fixture::new(2));
    f.set_up(&engine).await;
    let at = Timestamp::from_millis(T0 + 2000);
    let m = f.members[0];
    let head = engine.read(f.program, |l| l.head_hash()).unwrap();

    store.hold_commits(true);
    engine.inject_commit_failures(1);
    let first = {
        let (engine, f) = (engine.clone(), f.clone());
        tokio::spawn(async move { engine.submit_at(f.program, f.redeem(m, "60"), at).await })
    };
    // Bounded waits, so that a writer that does not pipeline fails here instead of hanging.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.commits_waiting() == 0 {
        assert!(std::time::Instant::now() < deadline, "no commit started");
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    // Decided while the first commit waits: 30 fits in the 40 the first would leave, 50
    // does not.
    let behind = vec![f.redeem(m, "30"), f.redeem(m, "50")];
    let second = {
        let (engine, f, behind) = (engine.clone(), f.clone(), behind.clone());
        tokio::spawn(async move { engine.submit_many_at(f.program, behind, at).await })
    };
    while f.available(&engine, m) != "10.00" {
        assert!(
            std::time::Instant::now() < deadline,
            "the batch behind the waiting commit was not decided"
        );
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    store.hold_commits(false);

    let first = first.await.unwrap();
    assert!(
        matches!(first, Err(EngineError::Unavailable(_))),
        "{first:?}"
    );
    let second = second.await.unwrap();
    assert_eq!(second.len(), 2);
    assert!(
        second
            .iter()
            .all(|r| matches!(r, Err(EngineError::Unavailable(_)))),
        "{second:?}"
    );
    // Rolled back to what the store holds, and writable.
    assert_eq!(engine.read(f.program, |l| l.head_hash()).unwrap(), head);
    assert_eq!(f.available(&engine, m), "100.00");
    assert!(!engine.is_read_only(f.program).unwrap());

    // Nothing was acknowledged, so the same requests now run afresh against 100 points.
    let again = engine.submit_many_at(f.program, behind, at).await;
    assert!(
        again.iter().all(|r| matches!(r, Ok(Applied::New(_)))),
        "{again:?}"
    );
    assert_eq!(f.available(&engine, m), "20.00");
    let audit = engine.audit(f.program).await.unwrap();
    assert!(audit.is_clean(), "{:?}", audit.breaches);
}

/// Two engines (two server processes) on one database redeem from the same members at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_servers_never_overdraw() {
    let Some(config) = postgres().await else {
        return;
    };
    let a = Engine::open(config.clone(), EngineOptions::default())
        .await
        .unwrap();
    let b = Engine::open(config.clone(), EngineOptions::default())
        .await
        .unwrap();
    let f = Arc::new(Fixture::new(6));
    f.set_up(&a).await;
    let at = Timestamp::from_millis(T0 + 2000);

    // Each member has 100 points; each server tries 5 redemptions of 30 per member, one at a
    // time and in batches: at most 3 per member can succeed overall.
    let mut tasks = Vec::new();
    for engine in [a.clone(), b.clone()] {
        for round in 0..5 {
            let f = f.clone();
            let engine = engine.clone();
            tasks.push(tokio::spawn(async move {
                let requests: Vec<Request> = f.members.iter().map(|&m| f.redeem(m, "30")).collect();
                let results = if round % 2 == 0 {
                    engine.submit_many_at(f.program, requests.clone(), at).await
                } else {
                    let mut out = Vec::new();
                    for r in requests.clone() {
                        out.push(engine.submit_at(f.program, r, at).await);
                    }
                    out
                };
                // A retry on the other path must give the same answer.
                let again = engine.submit_many_at(f.program, requests.clone(), at).await;
                for (first, second) in results.iter().zip(&again) {
                    match (first, second) {
                        (Ok(x), Ok(y)) => assert_eq!(x.sequence(), y.sequence()),
                        (Err(EngineError::Rejected(_)), _) => {}
                        other => panic!("{other:?}"),
                    }
                }
                requests
                    .iter()
                    .zip(results)
                    .filter(|(_, r)| r.is_ok())
                    .map(|(q, r)| (q.command.clone(), r.unwrap().sequence()))
                    .collect::<Vec<_>>()
            }));
        }
    }
    let mut accepted = Vec::new();
    for t in tasks {
        accepted.extend(t.await.unwrap());
    }
    let mut sequences: Vec<u64> = accepted.iter().map(|(_, s)| *s).collect();
    sequences.sort_unstable();
    let before = sequences.len();
    sequences.dedup();
    assert_eq!(
        before,
        sequences.len(),
        "two requests answered with one entry"
    );
    for &m in &f.members {
        let n = accepted
            .iter()
            .filter(|(c, _)| matches!(c, Command::Redeem { member, .. } if *member == m))
            .count();
        assert_eq!(n, 3, "member {m}: {n} redemptions of 30 accepted from 100");
    }
    a.shutdown().await;
    b.shutdown().await;

    let fresh = Engine::open(config.clone(), EngineOptions::default())
        .await
        .unwrap();
    for &m in &f.members {
        assert_eq!(f.available(&fresh, m), "10.00");
    }
    let audit = fresh.audit(f.program).await.unwrap();
    assert!(audit.is_clean(), "{:?}", audit.breaches);
    assert_eq!(fresh.verify_chain(f.program).await.unwrap().first_bad, None);
    fresh.shutdown().await;
    drop_schema(&config).await;
}

/// A second server follows what the first writes: programmes it creates, entries it
/// appends (reads and subscribers), without writing anything itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_second_server_follows_the_first() {
    let Some(config) = postgres().await else {
        return;
    };
    let a = Engine::open(config.clone(), EngineOptions::default())
        .await
        .unwrap();
    let b = Engine::open(config.clone(), EngineOptions::default())
        .await
        .unwrap();
    let f = Fixture::new(2);
    f.set_up(&a).await;

    // B discovers the programme on its own.
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.subscribe(f.program).is_err() {
        assert!(
            Instant::now() < deadline,
            "B never discovered the programme"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut events = b.subscribe(f.program).unwrap();
    let at = Timestamp::from_millis(T0 + 2000);
    let Applied::New(entry) = a
        .submit_at(f.program, f.redeem(f.members[0], "25"), at)
        .await
        .unwrap()
    else {
        panic!("not new")
    };
    let seen = loop {
        let got = tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("B's subscriber never saw A's entry")
            .unwrap();
        if got.sequence() == entry.sequence() {
            break got;
        }
    };
    assert_eq!(*seen, entry);
    assert_eq!(f.available(&b, f.members[0]), "75.00");
    assert_eq!(
        b.read(f.program, |l| l.head_hash()).unwrap(),
        a.read(f.program, |l| l.head_hash()).unwrap()
    );

    // A retry through B is answered with A's entry; a reused id through B is refused.
    let original = a.entries(f.program, entry.sequence(), 1).await.unwrap();
    let mut retry = f.redeem(f.members[0], "25");
    retry.request_id = original[0].request_id();
    let answer = b.submit_at(f.program, retry.clone(), at).await.unwrap();
    assert_eq!(
        answer,
        Applied::Duplicate {
            sequence: entry.sequence(),
            id: entry.id()
        }
    );
    let mut reused = f.redeem(f.members[0], "1");
    reused.request_id = retry.request_id;
    assert!(matches!(
        b.submit_at(f.program, reused, at).await,
        Err(EngineError::Rejected(Rejection::RequestIdReused))
    ));
    a.shutdown().await;
    b.shutdown().await;
    drop_schema(&config).await;
}

/// A failed commit on PostgreSQL acknowledges nothing; the retry lands exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_failed_commit_acknowledges_nothing() {
    let Some(config) = postgres().await else {
        return;
    };
    let engine = Engine::open(config.clone(), EngineOptions::default())
        .await
        .unwrap();
    let f = Fixture::new(3);
    f.set_up(&engine).await;
    let at = Timestamp::from_millis(T0 + 2000);
    let requests: Vec<Request> = f.members.iter().map(|&m| f.redeem(m, "60")).collect();
    engine.inject_commit_failures(1);
    let results = engine.submit_many_at(f.program, requests.clone(), at).await;
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Err(EngineError::Unavailable(_)))),
        "{results:?}"
    );
    assert_eq!(f.available(&engine, f.members[0]), "100.00");
    let results = engine.submit_many_at(f.program, requests, at).await;
    assert!(
        results.iter().all(|r| matches!(r, Ok(Applied::New(_)))),
        "{results:?}"
    );
    engine.shutdown().await;
    let fresh = Engine::open(config.clone(), EngineOptions::default())
        .await
        .unwrap();
    assert_eq!(f.available(&fresh, f.members[2]), "40.00");
    let audit = fresh.audit(f.program).await.unwrap();
    assert!(audit.is_clean(), "{:?}", audit.breaches);
    fresh.shutdown().await;
    drop_schema(&config).await;
}

/// A server's batch takes the programme's lock before deciding: while another holder has
/// it, the batch waits (rather than deciding in parallel and losing the race at commit),
/// and once the lock is free it commits at the next sequence with no conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_batch_waits_for_the_programme_lock() {
    let Some(config) = postgres().await else {
        return;
    };
    let (engine, url, name) = named_postgres_engine(&config, "lock_test").await;
    let url = &url;
    let f = Fixture::new(1);
    f.set_up(&engine).await;
    let next = engine.read(f.program, |l| l.next_sequence()).unwrap();
    let other = Arc::new(
        points_grpc::store::postgres::PostgresStore::connect(url)
            .await
            .unwrap(),
    );
    let locked = other.lock(f.program, next).await.unwrap().unwrap();
    assert_eq!((locked.next, locked.entries.len()), (next, 0));

    let at = Timestamp::from_millis(T0 + 2000);
    let (writer, redeem) = (engine.clone(), f.redeem(f.members[0], "10"));
    let program = f.program;
    let submitted = tokio::spawn(async move { writer.submit_at(program, redeem, at).await });
    wait_until_waiting_for_lock(url, &name).await;
    assert!(
        !submitted.is_finished(),
        "decided while another held the lock"
    );

    other.unlock(f.program).await.unwrap();
    let entry = submitted.await.unwrap().unwrap();
    assert_eq!(entry.sequence(), next);
    assert_eq!(engine.stats().conflicts, 0);
    // The engine's batch ended its lock with its commit, and the lock reads what was
    // committed from the sequence asked for.
    let locked = other.lock(f.program, next).await.unwrap().unwrap();
    assert_eq!(locked.next, next + 1);
    let read: Vec<(u64, Hash)> = locked
        .entries
        .iter()
        .map(|s| (s.entry.sequence(), s.entry.hash()))
        .collect();
    let head = engine.read(f.program, |l| l.head_hash()).unwrap();
    assert_eq!(read, [(next, head)]);
    other.unlock(f.program).await.unwrap();
    assert_eq!(f.available(&engine, f.members[0]), "90.00");

    // A second server opened now, then left behind by more than the lock reads at once:
    // its next batch reads the first page with the lock and the rest after it.
    let behind = Engine::open(
        StoreConfig::Postgres { url: url.clone() },
        EngineOptions::default(),
    )
    .await
    .unwrap();
    let many = LOCK_PAGE + 76;
    let requests: Vec<Request> = (0..many).map(|_| f.redeem(f.members[0], "0.01")).collect();
    let answers = engine.submit_many_at(f.program, requests, at).await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    let locked = other.lock(f.program, next + 1).await.unwrap().unwrap();
    assert_eq!(locked.next, next + 1 + many as u64);
    let read: Vec<u64> = locked.entries.iter().map(|s| s.entry.sequence()).collect();
    assert_eq!(
        read,
        (next + 1..next + 1 + LOCK_PAGE as u64).collect::<Vec<_>>()
    );
    other.unlock(f.program).await.unwrap();
    let Applied::New(last) = behind
        .submit_at(f.program, f.redeem(f.members[0], "1"), at)
        .await
        .unwrap()
    else {
        panic!("not new")
    };
    assert_eq!(last.sequence(), next + 1 + many as u64);
    assert_eq!(f.available(&behind, f.members[0]), "78.00");
    assert_eq!(
        behind.read(f.program, |l| l.head_hash()).unwrap(),
        last.hash()
    );
    behind.shutdown().await;
    engine.shutdown().await;
    drop(other);
    drop_schema(&config).await;
}

/// An engine on the PostgreSQL `config`, its connections named `PREFIX_<uuid>` so that
/// [`wait_until_waiting_for_lock`] counts only them; with the named URL and the name.
async fn named_postgres_engine(config: &StoreConfig, prefix: &str) -> (Engine, String, String) {
    let StoreConfig::Postgres { url } = config else {
        unreachable!()
    };
    let name = format!("{prefix}_{}", uid().simple());
    let url = format!("{url}&application_name={name}");
    let engine = Engine::open(
        StoreConfig::Postgres { url: url.clone() },
        EngineOptions::default(),
    )
    .await
    .unwrap();
    (engine, url, name)
}

/// Waits until a connection named `name` waits in the database for a row lock taken
/// `FOR UPDATE` (an engine's batch queued behind another holder of the programme's lock).
async fn wait_until_waiting_for_lock(url: &str, name: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let waiting: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' \
                 AND query LIKE '%FOR UPDATE%' AND application_name = $1",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        if waiting == 1 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the engine never waited for the lock"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Requests that queue while a batch waits for the programme's lock join that batch once
/// the lock is granted, rather than each waiting for a turn of its own: under contention
/// between servers, batches grow instead of turns multiplying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_batch_takes_in_what_queued_while_it_waited_for_the_lock() {
    let Some(config) = postgres().await else {
        return;
    };
    let (engine, url, name) = named_postgres_engine(&config, "top_up_test").await;
    let url = &url;
    let f = Fixture::new(3);
    f.set_up(&engine).await;
    let next = engine.read(f.program, |l| l.next_sequence()).unwrap();
    let other = points_grpc::store::postgres::PostgresStore::connect(url)
        .await
        .unwrap();
    other.lock(f.program, next).await.unwrap().unwrap();

    let at = Timestamp::from_millis(T0 + 2000);
    let (writer, program) = (engine.clone(), f.program);
    let first = f.redeem(f.members[0], "10");
    let first = tokio::spawn(async move { writer.submit_at(program, first, at).await });
    wait_until_waiting_for_lock(url, &name).await;
    let before = engine.stats();

    // Five more callers, each its own job. One poll each queues the job (the programme is
    // loaded, so nothing before the queue waits) and leaves the call waiting for its answer.
    let mut later: Vec<_> = (0..5)
        .map(|i| Box::pin(engine.submit_at(program, f.redeem(f.members[i % 3], "1"), at)))
        .collect();
    for call in &mut later {
        let polled =
            std::future::poll_fn(|cx| std::task::Poll::Ready(call.as_mut().poll(cx))).await;
        assert!(polled.is_pending(), "answered while another held the lock");
    }

    other.unlock(f.program).await.unwrap();
    let mut sequences = vec![first.await.unwrap().unwrap().sequence()];
    for call in later {
        sequences.push(call.await.unwrap().sequence());
    }
    // One transaction held all six, in the order they were queued.
    assert_eq!(sequences, (next..next + 6).collect::<Vec<_>>());
    let after = engine.stats();
    assert_eq!(
        after.batches - before.batches,
        1,
        "{before:?} then {after:?}"
    );
    assert_eq!(after.entries - before.entries, 6);
    assert_eq!(after.conflicts, 0);
    assert_eq!(f.available(&engine, f.members[0]), "88.00");
    let audit = engine.audit(f.program).await.unwrap();
    assert!(audit.is_clean(), "{:?}", audit.breaches);
    engine.shutdown().await;
    drop(other);
    drop_schema(&config).await;
}

/// `append` at a sequence the stored journal does not end at writes nothing and fails with
/// `Conflict`, whether the batch would leave a gap or overwrite stored entries; at the right
/// sequence it is written. On PostgreSQL the same holds inside a lock's transaction, and
/// the refused batch ends the lock.
/// A new programme in `store` (its genesis entry stored) and its ledger, with its admin and
/// the instant it was opened at.
async fn open_program(store: &dyn Store) -> (ProgramId, Ledger, Actor, Timestamp) {
    let admin = Actor::Admin {
        id: ActorId::new(uid()).unwrap(),
    };
    let at = Timestamp::from_millis(T0);
    let spec = ProgramSpec::new(
        ProgramId::new(uid()).unwrap(),
        "Donghu volunteer points",
        "points",
        Scale::new(2).unwrap(),
    );
    let program = spec.id();
    let (ledger, genesis) = Ledger::open(spec, rid(), admin, at).unwrap();
    let genesis = StoredEntry {
        entry: genesis,
        fingerprint: 0,
    };
    assert_eq!(store.create_program(&genesis).await.unwrap(), None);
    (program, ledger, admin, at)
}

/// The ledger's next entry (a new org unit), applied to it, as a store holds it.
fn next_entry(ledger: &mut Ledger, admin: Actor, at: Timestamp) -> StoredEntry {
    let request = Request {
        request_id: rid(),
        actor: admin,
        command: Command::CreateOrgUnit {
            id: OrgUnitId::new(uid()).unwrap(),
            parent: None,
            name: "Donghu".into(),
            level: OrgLevel::Community,
        },
    };
    let Applied::New(entry) = ledger.apply(&request, at).unwrap() else {
        panic!("not new")
    };
    StoredEntry {
        fingerprint: Ledger::request_fingerprint(&request),
        entry,
    }
}

/// Runs `check` against a PostgreSQL store on a fresh schema, and drops the schema after;
/// does nothing where no database is configured (see [`postgres`]).
async fn with_postgres_store(
    check: impl for<'a> FnOnce(&'a dyn Store) -> std::pin::Pin<Box<dyn Future<Output = ()> + 'a>>,
) {
    let Some(config) = postgres().await else {
        return;
    };
    let StoreConfig::Postgres { url } = &config else {
        unreachable!()
    };
    let postgres = points_grpc::store::postgres::PostgresStore::connect(url)
        .await
        .unwrap();
    check(&postgres).await;
    drop(postgres);
    drop_schema(&config).await;
}

async fn appends_only_at_the_journal_end(store: &dyn Store) {
    let (program, mut ledger, admin, at) = open_program(store).await;
    let next = |ledger: &mut Ledger| next_entry(ledger, admin, at);
    let first = next(&mut ledger);
    store
        .append(program, 1, std::slice::from_ref(&first))
        .await
        .unwrap();
    let second = next(&mut ledger);
    let stored = |n: usize| async move {
        let read = store.read_entries(program, 0, 10).await.unwrap();
        assert_eq!(read.len(), n, "{} stored", store.kind());
        read
    };
    for claimed in [3, 1] {
        let refused = store
            .append(program, claimed, std::slice::from_ref(&second))
            .await;
        assert_eq!(refused, Err(StoreError::Conflict), "{}", store.kind());
        stored(2).await;
    }
    if let Some(locked) = store.lock(program, 2).await.unwrap() {
        assert_eq!((locked.next, locked.entries.len()), (2, 0));
        let refused = store
            .append(program, 3, std::slice::from_ref(&second))
            .await;
        assert_eq!(refused, Err(StoreError::Conflict));
        stored(2).await;
        // The refused batch ended its transaction: the lock is free again, and a batch at
        // the right sequence inside it is written.
        let locked = tokio::time::timeout(Duration::from_secs(10), store.lock(program, 2))
            .await
            .expect("the refused batch kept the lock")
            .unwrap()
            .unwrap();
        assert_eq!(locked.next, 2);
    }
    store
        .append(program, 2, std::slice::from_ref(&second))
        .await
        .unwrap();
    let read = stored(3).await;
    assert_eq!(read[2], second);
    assert_eq!(read[1], first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_store_appends_only_at_the_journal_end() {
    appends_only_at_the_journal_end(&MemoryStore::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let sqlite = points_grpc::store::sqlite::SqliteStore::open(dir.path())
        .await
        .unwrap();
    appends_only_at_the_journal_end(&sqlite).await;
    with_postgres_store(|store| Box::pin(appends_only_at_the_journal_end(store))).await;
}

/// A checkpoint written in pieces (as the engine's checkpoint thread writes them) is
/// stored as the pieces joined, and the latest one is what the store returns.
async fn streams_checkpoints(store: &dyn Store) {
    let (program, mut ledger, admin, at) = open_program(store).await;
    let mut snapshots = Vec::new();
    for round in 0..3 {
        let entries: Vec<StoredEntry> = (0..=round)
            .map(|_| next_entry(&mut ledger, admin, at))
            .collect();
        let from = entries[0].entry.sequence();
        store.append(program, from, &entries).await.unwrap();
        let mut pieces = 0;
        // The store may block this thread for the write, as on the checkpoint thread.
        let stored = tokio::task::block_in_place(|| {
            store.put_checkpoint_streamed(
                &tokio::runtime::Handle::current(),
                program,
                ledger.next_sequence(),
                ledger.head_hash(),
                0,
                &mut |sink| {
                    ledger.snapshot_into(64, |piece| {
                        pieces += 1;
                        sink(piece);
                    });
                },
            )
        });
        stored.unwrap();
        assert!(pieces > 1, "the snapshot went in pieces");
        snapshots.push((
            ledger.next_sequence(),
            ledger.head_hash(),
            ledger.snapshot(),
        ));
        let latest = store.latest_checkpoint(program).await.unwrap().unwrap();
        let (next, head, snapshot) = snapshots.last().unwrap();
        assert_eq!(latest.next_sequence, *next, "{}", store.kind());
        assert_eq!(latest.head_hash, *head, "{}", store.kind());
        assert!(
            latest.snapshot == *snapshot,
            "{}: snapshot bytes",
            store.kind()
        );
        let restored = Ledger::from_snapshot(&latest.snapshot).unwrap();
        assert_eq!(restored.head_hash(), ledger.head_hash());
    }
    assert!(snapshots.windows(2).all(|w| w[0].0 < w[1].0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_store_streams_checkpoints() {
    streams_checkpoints(&MemoryStore::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let sqlite = points_grpc::store::sqlite::SqliteStore::open(dir.path())
        .await
        .unwrap();
    streams_checkpoints(&sqlite).await;
    // The SQLite store wrote files, the latest two kept, and no temporary one left.
    let names: Vec<String> = std::fs::read_dir(dir.path().join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.iter().all(|n| n.ends_with(".ckpt")), "{names:?}");
    with_postgres_store(|store| Box::pin(streams_checkpoints(store))).await;
}

/// Stores with a single writer take no lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_writer_stores_take_no_lock() {
    let program = ProgramId::new(uid()).unwrap();
    let memory = MemoryStore::new();
    assert!(memory.lock(program, 0).await.unwrap().is_none());
    memory.unlock(program).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = points_grpc::store::sqlite::SqliteStore::open(dir.path())
        .await
        .unwrap();
    assert!(sqlite.lock(program, 0).await.unwrap().is_none());
    sqlite.unlock(program).await.unwrap();
}

/// A failed commit followed by a failed reload makes the programme read-only; reads go
/// on; once the store is back the writer reloads it and writes are accepted again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_after_failed_reload_then_recovers() {
    let store = Arc::new(MemoryStore::new());
    let engine = Engine::open_with_store(store.clone() as Arc<dyn Store>, options(1_000))
        .await
        .unwrap();
    let f = Fixture::new(2);
    f.set_up(&engine).await;
    let at = Timestamp::from_millis(T0 + 2000);
    let head = engine.read(f.program, |l| l.head_hash()).unwrap();

    engine.inject_commit_failures(1);
    store.set_unreadable(true);
    let r = engine
        .submit_at(f.program, f.redeem(f.members[0], "10"), at)
        .await;
    assert!(matches!(r, Err(EngineError::Unavailable(_))), "{r:?}");
    assert!(engine.is_read_only(f.program).unwrap());
    let r = engine
        .submit_at(f.program, f.redeem(f.members[1], "10"), at)
        .await;
    assert!(matches!(r, Err(EngineError::Unavailable(_))), "{r:?}");
    // Reads keep working.
    assert!(engine.read(f.program, |l| l.member_count()).unwrap() == 2);

    store.set_unreadable(false);
    let deadline = Instant::now() + Duration::from_secs(10);
    while engine.is_read_only(f.program).unwrap() {
        assert!(Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Recovered from the store: the failed batch is gone.
    assert_eq!(engine.read(f.program, |l| l.head_hash()).unwrap(), head);
    assert_eq!(f.available(&engine, f.members[0]), "100.00");
    let r = engine
        .submit_at(f.program, f.redeem(f.members[0], "10"), at)
        .await;
    assert!(matches!(r, Ok(Applied::New(_))), "{r:?}");
    let audit = engine.audit(f.program).await.unwrap();
    assert!(audit.is_clean(), "{:?}", audit.breaches);
}

/// A store shared by two engines in one process, where the first append through it lets
/// another writer go first: a deterministic lost race.
struct Interfering {
    inner: Arc<MemoryStore>,
    hook: std::sync::Mutex<Option<Hook>>,
}

type Hook = Box<dyn FnOnce() -> points_grpc::store::BoxFuture<'static, ()> + Send>;

impl Store for Interfering {
    fn kind(&self) -> &'static str {
        "interfering"
    }
    fn shared(&self) -> bool {
        true
    }
    fn program_ids(
        &self,
    ) -> points_grpc::store::BoxFuture<'_, points_grpc::store::StoreResult<Vec<ProgramId>>> {
        self.inner.program_ids()
    }
    fn create_program<'a>(
        &'a self,
        genesis: &'a points_grpc::store::StoredEntry,
    ) -> points_grpc::store::BoxFuture<
        'a,
        points_grpc::store::StoreResult<Option<points_grpc::store::StoredEntry>>,
    > {
        self.inner.create_program(genesis)
    }
    fn append<'a>(
        &'a self,
        program: ProgramId,
        expected_next: u64,
        entries: &'a [points_grpc::store::StoredEntry],
    ) -> points_grpc::store::BoxFuture<'a, points_grpc::store::StoreResult<()>> {
        Box::pin(async move {
            let hook = self.hook.lock().unwrap().take();
            if let Some(hook) = hook {
                hook().await;
            }
            self.inner.append(program, expected_next, entries).await
        })
    }
    fn read_entries(
        &self,
        program: ProgramId,
        from_sequence: u64,
        limit: usize,
    ) -> points_grpc::store::BoxFuture<
        '_,
        points_grpc::store::StoreResult<Vec<points_grpc::store::StoredEntry>>,
    > {
        self.inner.read_entries(program, from_sequence, limit)
    }
    fn entry_by_id(
        &self,
        program: ProgramId,
        id: points_core::EntryId,
    ) -> points_grpc::store::BoxFuture<
        '_,
        points_grpc::store::StoreResult<Option<points_grpc::store::StoredEntry>>,
    > {
        self.inner.entry_by_id(program, id)
    }
    fn latest_checkpoint(
        &self,
        program: ProgramId,
    ) -> points_grpc::store::BoxFuture<
        '_,
        points_grpc::store::StoreResult<Option<points_grpc::store::Checkpoint>>,
    > {
        self.inner.latest_checkpoint(program)
    }
    fn put_checkpoint<'a>(
        &'a self,
        program: ProgramId,
        checkpoint: &'a points_grpc::store::Checkpoint,
    ) -> points_grpc::store::BoxFuture<'a, points_grpc::store::StoreResult<()>> {
        self.inner.put_checkpoint(program, checkpoint)
    }
    fn put_api_key(
        &self,
        key: ApiKeyRecord,
    ) -> points_grpc::store::BoxFuture<'_, points_grpc::store::StoreResult<()>> {
        self.inner.put_api_key(key)
    }
    fn api_keys(
        &self,
    ) -> points_grpc::store::BoxFuture<'_, points_grpc::store::StoreResult<Vec<ApiKeyRecord>>> {
        self.inner.api_keys()
    }
    fn revoke_api_key(
        &self,
        id: uuid::Uuid,
    ) -> points_grpc::store::BoxFuture<'_, points_grpc::store::StoreResult<bool>> {
        self.inner.revoke_api_key(id)
    }
    fn server_secret(
        &self,
        candidate: [u8; 32],
    ) -> points_grpc::store::BoxFuture<'_, points_grpc::store::StoreResult<[u8; 32]>> {
        self.inner.server_secret(candidate)
    }
    fn inject_commit_failures(&self, count: u32) {
        self.inner.inject_commit_failures(count);
    }
    fn put_tree_head<'a>(
        &'a self,
        program: ProgramId,
        head: &'a points_core::checkpoint::SignedCheckpoint,
    ) -> points_grpc::store::BoxFuture<'a, points_grpc::store::StoreResult<()>> {
        self.inner.put_tree_head(program, head)
    }
    fn tree_head(
        &self,
        program: ProgramId,
        size: Option<u64>,
    ) -> points_grpc::store::BoxFuture<
        '_,
        points_grpc::store::StoreResult<Option<points_core::checkpoint::SignedCheckpoint>>,
    > {
        self.inner.tree_head(program, size)
    }
}

/// B decides a redemption, A commits a competing one first, B's commit loses the race: B
/// catches up, decides again against the new balance, and refuses the overdraft.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_race_is_decided_again() {
    let memory = Arc::new(MemoryStore::new());
    let a_store = Arc::new(Interfering {
        inner: memory.clone(),
        hook: std::sync::Mutex::new(None),
    });
    let b_store = Arc::new(Interfering {
        inner: memory.clone(),
        hook: std::sync::Mutex::new(None),
    });
    let a = Engine::open_with_store(a_store.clone() as Arc<dyn Store>, options(1_000))
        .await
        .unwrap();
    let f = Arc::new(Fixture::new(2));
    f.set_up(&a).await;
    let b = Engine::open_with_store(b_store.clone() as Arc<dyn Store>, options(1_000))
        .await
        .unwrap();
    let at = Timestamp::from_millis(T0 + 2000);

    let (first, g) = (a.clone(), f.clone());
    *b_store.hook.lock().unwrap() = Some(Box::new(move || {
        Box::pin(async move {
            let r = first
                .submit_at(g.program, g.redeem(g.members[0], "60"), at)
                .await;
            assert!(matches!(r, Ok(Applied::New(_))), "{r:?}");
        })
    }));
    let r = b
        .submit_at(f.program, f.redeem(f.members[0], "60"), at)
        .await;
    assert!(
        matches!(r, Err(EngineError::Rejected(Rejection::InsufficientPoints))),
        "{r:?}"
    );
    assert_eq!(b.stats().conflicts, 1);
    assert_eq!(a.stats().entries, 7 + 1);
    assert_eq!(f.available(&b, f.members[0]), "40.00");
    // B still writes, after A's entry.
    let r = b
        .submit_at(f.program, f.redeem(f.members[1], "60"), at)
        .await
        .unwrap();
    assert_eq!(
        r.sequence(),
        a.read(f.program, |l| l.next_sequence()).unwrap()
    );
    let audit = b.audit(f.program).await.unwrap();
    assert!(audit.is_clean(), "{:?}", audit.breaches);
}
