//! Fault injection at every write point of a commit (issue 9): for each [`FaultPoint`] ×
//! workload × {fail, crash}, a workload runs over a [`FaultyStore`] until the fault strikes;
//! then the data directory (or PostgreSQL schema) is reopened by a fresh engine, as a
//! restarted server would, and three things are checked:
//!
//! 1. every acknowledged request is in the journal exactly once;
//! 2. nothing unacknowledged is visible: the journal after the seed holds the acknowledged
//!    requests and, at most, the one batch that was in flight when the fault struck, all of
//!    it or none of it (none for faults before `COMMIT`, all of it for faults after);
//! 3. the chain verifies and the audit is clean.
//!
//! `fail` faults run in process: the batch must be answered `Unavailable` (never success),
//! the engine must recover by itself, and a retry with the same request ids must apply the
//! batch exactly once (`Duplicate` when the failed commit had in fact reached the disk).
//! `crash` faults abort a child process (this test binary re-executed with
//! `POINTS_FAULT_CHILD=1`) at the point, with no unwinding and no rollback; the parent reads
//! which requests the child had acknowledged from its stdout.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use points_core::{Amount, Applied, Command, EntryId, Event, Request, RequestId, Timestamp};
use points_grpc::engine::{Engine, EngineError, EngineOptions, PIPELINE_DEPTH, QUEUE_DEPTH};
use points_grpc::store::faulty::{FaultMode, FaultPlan, FaultPoint, FaultyStore};
use points_grpc::store::postgres::PostgresStore;
use points_grpc::store::sqlite::SqliteStore;
use points_grpc::store::Store;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

mod common;
use common::{request, uid, Seeded, T0};

/// The workloads: different commands and batch shapes, each a sequence of steps, one
/// commit per step.
const WORKLOADS: [&str; 4] = ["redeem", "pos-batch", "issue-approve", "transfers"];
/// Entries between checkpoints, small so that the checkpoint points are reached.
const SNAPSHOT_EVERY: u64 = 4;
/// The commit (or checkpoint) the fault strikes, counting from the first after the seed.
const NTH_APPEND: u64 = 3;
const NTH_CHECKPOINT: u64 = 2;

/// Where the journal lives, as the child process is told through its environment.
#[derive(Clone, Debug)]
enum Where {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Where {
    async fn open(&self) -> Arc<dyn Store> {
        match self {
            Where::Sqlite(dir) => Arc::new(SqliteStore::open(dir).await.unwrap()),
            Where::Postgres(url) => Arc::new(PostgresStore::connect(url).await.unwrap()),
        }
    }
}

fn options() -> EngineOptions {
    EngineOptions {
        max_batch: 8192,
        snapshot_every: SNAPSHOT_EVERY,
        // The fault points count checkpoint writes in the order the writer makes them.
        background_checkpoints: false,
    }
}

/// What a workload run reports: requests acknowledged and the batch in flight at the end.
#[derive(Default, Debug)]
struct Log {
    acked: Vec<RequestId>,
    in_flight: Vec<Request>,
    /// How many steps were answered `Unavailable`.
    unavailable: usize,
    /// Retries of a failed step answered `Duplicate` (the failed commit had reached disk).
    duplicates_after_failure: usize,
}

/// Runs workload steps; reports progress on stdout when it is a crash child.
struct Driver<'a> {
    engine: &'a Engine,
    seeded: &'a Seeded,
    step: i64,
    child: bool,
    log: Log,
    point: FaultPoint,
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

fn ids(requests: &[Request]) -> String {
    requests
        .iter()
        .map(|r| uuid::Uuid::from(r.request_id).to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn entry_id(applied: &Applied) -> EntryId {
    match applied {
        Applied::New(entry) => entry.id(),
        Applied::Duplicate { id, .. } => *id,
    }
}

impl Driver<'_> {
    /// Submits one step (one commit). On `Unavailable` (an injected `fail`), checks that the
    /// whole step failed and retries it with the same request ids, as a POS would.
    async fn step(&mut self, requests: Vec<Request>) -> Vec<Applied> {
        self.step += 1;
        let now = Timestamp::from_millis(T0 + 10_000 + self.step * 1_000);
        if self.child {
            say(&format!("INFLIGHT {}", ids(&requests)));
        }
        self.log.in_flight = requests.clone();
        let first = self
            .engine
            .submit_many_at(self.seeded.program, requests.clone(), now)
            .await;
        let results = if first.iter().any(|r| r.is_err()) {
            for r in &first {
                assert!(
                    matches!(r, Err(EngineError::Unavailable(_))),
                    "a failed commit must answer the whole batch Unavailable, got {r:?}"
                );
            }
            self.log.unavailable += 1;
            let retry = self
                .engine
                .submit_many_at(self.seeded.program, requests.clone(), now)
                .await;
            let retry: Vec<Applied> = retry.into_iter().map(|r| r.unwrap()).collect();
            let duplicates = retry
                .iter()
                .filter(|a| matches!(a, Applied::Duplicate { .. }))
                .count();
            if self.point == FaultPoint::AfterAppendCommit {
                // The commit was durable though reported failed: the retry finds it.
                assert_eq!(duplicates, retry.len(), "retry after a lost ack");
                self.log.duplicates_after_failure += 1;
            } else {
                assert_eq!(duplicates, 0, "retry after a rolled-back commit");
            }
            retry
        } else {
            first.into_iter().map(|r| r.unwrap()).collect()
        };
        if self.child {
            say(&format!("ACK {}", ids(&requests)));
        }
        self.log.acked.extend(requests.iter().map(|r| r.request_id));
        self.log.in_flight.clear();
        results
    }

    fn amount(text: &str) -> Amount {
        text.parse().unwrap()
    }

    async fn run(&mut self, workload: &str) {
        let admin = self.seeded.admin;
        let merchant = self.seeded.merchant;
        let members = self.seeded.members.clone();
        match workload {
            // One redemption per commit.
            "redeem" => {
                for (i, &member) in members.iter().enumerate().take(8) {
                    let amount = Self::amount(&format!("{}", i + 1));
                    self.step(vec![request(
                        admin,
                        Command::Redeem {
                            member,
                            merchant,
                            amount,
                        },
                    )])
                    .await;
                }
            }
            // A till's batch: place a hold and redeem, capture the previous hold and refund
            // part of the previous redemption, all in one commit.
            "pos-batch" => {
                let mut previous: Option<(EntryId, EntryId)> = None;
                for i in 0..6 {
                    let mut batch = vec![
                        request(
                            admin,
                            Command::PlaceHold {
                                member: members[i],
                                merchant,
                                amount: Self::amount("5"),
                                ttl_ms: 600_000,
                            },
                        ),
                        request(
                            admin,
                            Command::Redeem {
                                member: members[i + 6],
                                merchant,
                                amount: Self::amount("3"),
                            },
                        ),
                    ];
                    if let Some((hold, redemption)) = previous {
                        batch.push(request(
                            admin,
                            Command::CaptureHold {
                                hold,
                                amount: Some(Self::amount("2")),
                            },
                        ));
                        batch.push(request(
                            admin,
                            Command::Refund {
                                entry: redemption,
                                amount: Self::amount("1"),
                            },
                        ));
                    }
                    let results = self.step(batch).await;
                    previous = Some((entry_id(&results[0]), entry_id(&results[1])));
                }
            }
            // Issuance: record a service for three members, then approve it.
            "issue-approve" => {
                for round in 0..3 {
                    let activity = self.activity();
                    let records = members[round * 3..round * 3 + 3]
                        .iter()
                        .map(|&member| points_core::ServiceInput {
                            member,
                            activity,
                            org_unit: self.community(),
                            started_at: Timestamp::from_millis(T0 - 7_200_000),
                            minutes: 30,
                        })
                        .collect();
                    let recorded = self
                        .step(vec![request(admin, Command::RecordService { records })])
                        .await;
                    let ids = self.record_ids(&recorded[0]).await;
                    self.step(vec![request(
                        admin,
                        Command::ApproveService { records: ids },
                    )])
                    .await;
                }
            }
            // Batches of five transfers around a ring of members.
            "transfers" => {
                for round in 0..6 {
                    let batch = (0..5)
                        .map(|i| {
                            let from = members[(round + i) % members.len()];
                            let to = members[(round + i + 7) % members.len()];
                            request(
                                admin,
                                Command::Transfer {
                                    from,
                                    to,
                                    amount: Self::amount("7"),
                                },
                            )
                        })
                        .collect();
                    self.step(batch).await;
                }
            }
            other => panic!("unknown workload {other}"),
        }
    }

    fn activity(&self) -> points_core::ActivityId {
        self.engine
            .read(self.seeded.program, |l| {
                l.activities().first().map(|a| a.id)
            })
            .unwrap()
            .unwrap()
    }

    fn community(&self) -> points_core::OrgUnitId {
        self.engine
            .read(self.seeded.program, |l| l.org_units().first().map(|u| u.id))
            .unwrap()
            .unwrap()
    }

    async fn record_ids(&self, applied: &Applied) -> Vec<points_core::RecordId> {
        let entry = self
            .engine
            .entry_by_id(self.seeded.program, entry_id(applied))
            .await
            .unwrap()
            .unwrap();
        let Event::ServiceRecorded { records } = entry.event() else {
            panic!("not a ServiceRecorded entry")
        };
        records.iter().map(|r| r.id).collect()
    }
}

/// Seeds a programme, arms `plan` and runs `workload`. Returns the seed and the log (when
/// the plan is a crash, this does not return).
async fn run_workload(
    place: &Where,
    workload: &str,
    plan: FaultPlan,
    child: bool,
) -> (Seeded, u64, Log, u64) {
    let inner = place.open().await;
    let faulty = Arc::new(FaultyStore::new(inner));
    let engine = Engine::open_with_store(faulty.clone(), options())
        .await
        .unwrap();
    let seeded = common::seed(&engine, 0, 20, "1000").await;
    let seed_next = engine.read(seeded.program, |l| l.next_sequence()).unwrap();
    if child {
        say(&format!(
            "SEED {} {seed_next}",
            uuid::Uuid::from(seeded.program)
        ));
    }
    faulty.arm(plan);
    let mut driver = Driver {
        engine: &engine,
        seeded: &seeded,
        step: 0,
        child,
        log: Log::default(),
        point: plan.point,
    };
    driver.run(workload).await;
    let log = driver.log;
    engine.shutdown().await;
    (seeded, seed_next, log, faulty.fired())
}

/// The outcome of one cell of the matrix.
#[derive(Debug)]
struct Cell {
    acked: usize,
    in_flight: usize,
    in_flight_durable: bool,
}

/// Reopens the store as a restarted server would and checks the three recovery properties.
/// `in_flight` is the batch the fault interrupted (empty for `fail`, which retries it).
async fn check_recovery(
    place: &Where,
    program: points_core::ProgramId,
    seed_next: u64,
    acked: &[RequestId],
    in_flight: &[RequestId],
    point: FaultPoint,
) -> Cell {
    let engine = Engine::open_with_store(place.open().await, options())
        .await
        .unwrap();
    let journal = engine
        .entries(program, seed_next, usize::MAX)
        .await
        .unwrap();
    let mut seen: HashMap<RequestId, usize> = HashMap::new();
    for entry in &journal {
        *seen.entry(entry.request_id()).or_default() += 1;
    }
    for id in acked {
        assert_eq!(
            seen.get(id).copied(),
            Some(1),
            "acknowledged request {id:?} must be in the journal exactly once ({})",
            point.name()
        );
    }
    let acked_set: HashSet<RequestId> = acked.iter().copied().collect();
    let unacked: HashSet<RequestId> = seen
        .keys()
        .filter(|id| !acked_set.contains(id))
        .copied()
        .collect();
    let flight: HashSet<RequestId> = in_flight.iter().copied().collect();
    assert!(
        unacked.is_subset(&flight),
        "only the interrupted batch may be durable without an acknowledgement ({})",
        point.name()
    );
    let durable = !unacked.is_empty();
    if durable {
        assert_eq!(unacked, flight, "a batch is durable all or nothing");
    }
    match point {
        FaultPoint::BeforeAppend | FaultPoint::InAppendBeforeCommit => {
            assert!(
                !durable,
                "a batch interrupted before COMMIT must not be visible"
            );
        }
        FaultPoint::AfterAppendCommit if !in_flight.is_empty() => {
            assert!(durable, "a batch interrupted after COMMIT must be durable");
        }
        _ => {}
    }
    let chain = engine.verify_chain(program).await.unwrap();
    assert_eq!(chain.first_bad, None, "the chain verifies");
    let audit = engine.audit(program).await.unwrap();
    assert!(audit.is_clean(), "the audit is clean: {:?}", audit.breaches);
    engine.shutdown().await;
    Cell {
        acked: acked.len(),
        in_flight: in_flight.len(),
        in_flight_durable: durable,
    }
}

fn plan(point: FaultPoint, mode: FaultMode) -> FaultPlan {
    FaultPlan {
        point,
        mode,
        nth: if point.is_checkpoint() {
            NTH_CHECKPOINT
        } else {
            NTH_APPEND
        },
    }
}

/// `fail` at one point: run in process, then reopen.
async fn fail_cell(place: &Where, workload: &str, point: FaultPoint) -> String {
    let (seeded, seed_next, log, fired) =
        run_workload(place, workload, plan(point, FaultMode::Fail), false).await;
    assert_eq!(fired, 1, "the fault struck ({workload}, {})", point.name());
    if point.is_checkpoint() {
        // A failed checkpoint costs nothing but a longer replay: no request fails.
        assert_eq!(log.unavailable, 0);
    } else {
        assert_eq!(log.unavailable, 1, "exactly the struck batch failed");
    }
    let cell = check_recovery(place, seeded.program, seed_next, &log.acked, &[], point).await;
    format!(
        "ok: {} acked, {} Unavailable, {} retried as Duplicate",
        cell.acked, log.unavailable, log.duplicates_after_failure
    )
}

/// `crash` at one point: a child process aborts there; then reopen.
async fn crash_cell(place: &Where, workload: &str, point: FaultPoint) -> String {
    let exe = std::env::current_exe().unwrap();
    let mut command = std::process::Command::new(exe);
    command
        .args([
            "child_process",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("POINTS_FAULT_CHILD", "1")
        .env("POINTS_FAULT_WORKLOAD", workload)
        .env("POINTS_FAULT_POINT", point.name())
        .stderr(std::process::Stdio::null());
    match place {
        Where::Sqlite(dir) => command.env("POINTS_FAULT_SQLITE", dir),
        Where::Postgres(url) => command.env("POINTS_FAULT_POSTGRES", url),
    };
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        !output.status.success() && !stdout.contains("DONE"),
        "the child must die at {} ({workload}); it exited with {:?}",
        point.name(),
        output.status
    );
    let mut program = None;
    let mut seed_next = 0;
    let mut acked = Vec::new();
    let mut in_flight: Vec<RequestId> = Vec::new();
    let parse = |list: &str| -> Vec<RequestId> {
        list.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| RequestId::new(s.parse().unwrap()).unwrap())
            .collect()
    };
    // The harness may print "test child_process ... " in front of the first line.
    let after =
        |line: &'_ str, tag: &str| line.find(tag).map(|i| line[i + tag.len()..].to_string());
    for line in stdout.lines() {
        if let Some(rest) = after(line, "SEED ") {
            let (p, n) = rest.split_once(' ').unwrap();
            program = Some(points_core::ProgramId::new(p.parse().unwrap()).unwrap());
            seed_next = n.parse().unwrap();
        } else if let Some(rest) = after(line, "INFLIGHT ") {
            in_flight = parse(&rest);
        } else if let Some(rest) = after(line, "ACK ") {
            acked.extend(parse(&rest));
            in_flight.clear();
        }
    }
    let program = program.expect("the child seeded a programme");
    let cell = check_recovery(place, program, seed_next, &acked, &in_flight, point).await;
    format!(
        "ok: {} acked, in-flight batch of {} {}",
        cell.acked,
        cell.in_flight,
        if cell.in_flight == 0 {
            "(none)"
        } else if cell.in_flight_durable {
            "durable"
        } else {
            "absent"
        }
    )
}

/// The child side of a crash cell: does nothing unless re-executed by [`crash_cell`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_process() {
    if std::env::var("POINTS_FAULT_CHILD").as_deref() != Ok("1") {
        return;
    }
    let place = match (
        std::env::var_os("POINTS_FAULT_SQLITE"),
        std::env::var("POINTS_FAULT_POSTGRES"),
    ) {
        (Some(dir), _) => Where::Sqlite(dir.into()),
        (None, Ok(url)) => Where::Postgres(url),
        _ => panic!("no store given"),
    };
    let workload = std::env::var("POINTS_FAULT_WORKLOAD").unwrap();
    let point = FaultPoint::from_name(&std::env::var("POINTS_FAULT_POINT").unwrap()).unwrap();
    run_workload(&place, &workload, plan(point, FaultMode::Crash), true).await;
    say("DONE");
}

/// Runs the whole matrix over `make` (a fresh store location per cell) and prints it.
async fn matrix(store: &str, make: impl Fn() -> (Where, Option<tempfile::TempDir>)) {
    let mut rows: BTreeMap<(usize, &str, &str), String> = BTreeMap::new();
    for (i, point) in FaultPoint::ALL.into_iter().enumerate() {
        for workload in WORKLOADS {
            for mode in ["fail", "crash"] {
                let (place, _dir) = make();
                let outcome = if mode == "fail" {
                    fail_cell(&place, workload, point).await
                } else {
                    crash_cell(&place, workload, point).await
                };
                rows.insert((i, workload, mode), outcome);
            }
        }
    }
    let mut out = format!("\nfault matrix ({store}): injection point x workload x mode\n");
    for ((i, workload, mode), outcome) in &rows {
        out.push_str(&format!(
            "| {} | {workload} | {mode} | {outcome} |\n",
            FaultPoint::ALL[*i].name()
        ));
    }
    eprintln!("{out}");
    assert_eq!(rows.len(), FaultPoint::ALL.len() * WORKLOADS.len() * 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_fault_matrix() {
    if std::env::var("POINTS_FAULT_CHILD").is_ok() {
        return;
    }
    matrix("sqlite", || {
        let dir = tempfile::tempdir().unwrap();
        (Where::Sqlite(dir.path().to_path_buf()), Some(dir))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_fault_matrix() {
    if std::env::var("POINTS_FAULT_CHILD").is_ok() {
        return;
    }
    let url = std::env::var("POINTS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/points_test".into());
    let reached = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_postgres::connect(&url, tokio_postgres::NoTls),
    )
    .await;
    let client = match reached {
        Ok(Ok((client, connection))) => {
            tokio::spawn(connection);
            client
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
            return;
        }
    };
    // One schema for the whole matrix: every cell is a programme of its own.
    let schema = format!("points_faults_{}", uid().simple());
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    let scoped = format!("{url}{sep}options=-csearch_path%3D{schema}");
    matrix("postgres", || (Where::Postgres(scoped.clone()), None)).await;
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

/// The engine's writer queue is bounded: with the store stalled (a disk that stops
/// answering), the pipeline holds its few batches and the queue fills up; every further write is
/// refused at once with `Overloaded` (`RESOURCE_EXHAUSTED` on the wire) instead of waiting.
/// When the store answers again, every queued write commits, and none of the refused ones
/// is in the journal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_store_fills_the_bounded_queue_and_the_rest_is_shed() {
    if std::env::var("POINTS_FAULT_CHILD").is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let place = Where::Sqlite(dir.path().to_path_buf());
    let faulty = Arc::new(FaultyStore::new(place.open().await));
    // One request per batch, so that the queue holds exactly one job per write.
    let engine = Engine::open_with_store(
        faulty.clone(),
        EngineOptions {
            max_batch: 1,
            snapshot_every: 1_000_000,
            ..EngineOptions::default()
        },
    )
    .await
    .unwrap();
    let seeded = common::seed(&engine, 0, 4, "100000").await;
    faulty.arm(FaultPlan {
        point: FaultPoint::BeforeAppend,
        mode: FaultMode::Stall,
        nth: 1,
    });
    // More writes than the queue and the stalled pipeline can hold.
    const HELD: usize = 2 * PIPELINE_DEPTH + 1;
    const WRITES: usize = QUEUE_DEPTH + HELD + 150;
    let mut tasks = Vec::new();
    let mut ids = Vec::new();
    for i in 0..WRITES {
        let r = request(
            seeded.admin,
            Command::Redeem {
                member: seeded.members[i % 4],
                merchant: seeded.merchant,
                amount: "1".parse().unwrap(),
            },
        );
        ids.push(r.request_id);
        let engine = engine.clone();
        let program = seeded.program;
        tasks.push(tokio::spawn(async move { engine.submit(program, r).await }));
    }
    // The refused writes answer at once, while the store is still stalled.
    let mut refused = HashSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let done: Vec<usize> = (0..WRITES)
            .filter(|&i| tasks[i].is_finished() && !refused.contains(&i))
            .collect();
        for i in done {
            refused.insert(i);
        }
        // The stalled pipeline holds at most HELD batches (those the committer took for its
        // transaction, up to PIPELINE_DEPTH waiting for it, the one the writer is handing
        // over); at most QUEUE_DEPTH jobs wait in the queue (a periodic tick may take one).
        if refused.len() >= WRITES - HELD - QUEUE_DEPTH {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "writes were not shed: {} refused",
            refused.len()
        );
        tokio::task::yield_now().await;
    }
    assert!(
        refused.len() <= WRITES - QUEUE_DEPTH,
        "{} refused",
        refused.len()
    );
    faulty.release();
    let mut committed = HashSet::new();
    let mut overloaded = HashSet::new();
    for (i, task) in tasks.into_iter().enumerate() {
        match task.await.unwrap() {
            Ok(_) => {
                assert!(!refused.contains(&i), "a refused write answered success");
                committed.insert(ids[i]);
            }
            Err(EngineError::Overloaded(_)) => {
                overloaded.insert(i);
            }
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert!(refused.is_subset(&overloaded));
    assert!((WRITES - HELD - QUEUE_DEPTH..=WRITES - QUEUE_DEPTH).contains(&overloaded.len()));
    let refused = overloaded;
    assert_eq!(committed.len() + refused.len(), WRITES);
    let seed_next = 0;
    let journal = engine
        .entries(seeded.program, seed_next, usize::MAX)
        .await
        .unwrap();
    let in_journal: HashSet<RequestId> = journal
        .iter()
        .map(|e| e.request_id())
        .filter(|id| ids.contains(id))
        .collect();
    assert_eq!(
        in_journal, committed,
        "exactly the admitted writes are durable"
    );
    engine.shutdown().await;
    eprintln!(
        "bounded queue: {WRITES} writes against a stalled store: {} shed at once, {} committed once it answered",
        refused.len(),
        committed.len()
    );
}

/// A panic in the store while the commit thread commits (a bug, not a fault the store
/// reports) must neither hang the programme nor stop it taking writes. The batch's caller
/// gets `Unavailable`, the ledger is rebuilt from what the store holds, later writes commit,
/// and a retry of the batch applies it exactly once, whether or not the panic struck after
/// the batch reached the disk. A checkpoint falls due after every batch here, so the writer
/// waits for the pipeline to drain after each one; that wait must end when the commit thread
/// is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_store_neither_hangs_nor_stops_the_programme() {
    if std::env::var("POINTS_FAULT_CHILD").is_ok() {
        return;
    }
    const WAIT: Duration = Duration::from_secs(10);
    for point in [FaultPoint::BeforeAppend, FaultPoint::AfterAppendCommit] {
        let dir = tempfile::tempdir().unwrap();
        let place = Where::Sqlite(dir.path().to_path_buf());
        let faulty = Arc::new(FaultyStore::new(place.open().await));
        let engine = Engine::open_with_store(
            faulty.clone(),
            EngineOptions {
                snapshot_every: 1,
                background_checkpoints: false,
                ..EngineOptions::default()
            },
        )
        .await
        .unwrap();
        let seeded = common::seed(&engine, 0, 2, "100").await;
        let redeem = |member: usize, amount: &str| {
            request(
                seeded.admin,
                Command::Redeem {
                    member: seeded.members[member],
                    merchant: seeded.merchant,
                    amount: amount.parse().unwrap(),
                },
            )
        };
        let available = |member: usize| {
            engine
                .read(seeded.program, |l| {
                    l.balance(seeded.members[member], Timestamp::from_millis(T0 + 10_000))
                        .unwrap()
                        .available
                        .to_decimal(l.spec().scale())
                })
                .unwrap()
        };
        let before = available(0);
        faulty.arm(FaultPlan {
            point,
            mode: FaultMode::Panic,
            nth: 1,
        });
        // Every answer must come within WAIT: the old engine hung here.
        let submit = |request: Request, what: &'static str| {
            let engine = engine.clone();
            async move {
                tokio::time::timeout(WAIT, engine.submit(seeded.program, request))
                    .await
                    .unwrap_or_else(|_| panic!("{}: {what} hung", point.name()))
            }
        };
        let first = redeem(0, "10");
        let answer = submit(first.clone(), "the panicked batch").await;
        assert!(
            matches!(answer, Err(EngineError::Unavailable(_))),
            "{}: {answer:?}",
            point.name()
        );
        assert_eq!(faulty.fired(), 1);
        let second = redeem(1, "20");
        let answer = submit(second.clone(), "a write after the panic").await;
        assert!(
            matches!(answer, Ok(Applied::New(_))),
            "{}: {answer:?}",
            point.name()
        );
        let retry = submit(first.clone(), "the retry").await;
        match (point, &retry) {
            (FaultPoint::BeforeAppend, Ok(Applied::New(_)))
            | (FaultPoint::AfterAppendCommit, Ok(Applied::Duplicate { .. })) => {}
            _ => panic!("{}: retry answered {retry:?}", point.name()),
        }
        let journal = engine.entries(seeded.program, 0, usize::MAX).await.unwrap();
        for r in [&first, &second] {
            let copies = journal
                .iter()
                .filter(|e| e.request_id() == r.request_id)
                .count();
            assert_eq!(
                copies,
                1,
                "{}: {copies} copies in the journal",
                point.name()
            );
        }
        assert_eq!(
            available(0),
            before - rust_decimal::Decimal::from(10),
            "{}",
            point.name()
        );
        engine.shutdown().await;
        // A fresh engine over the same store sees the same ledger.
        let reopened = Engine::open_with_store(place.open().await, EngineOptions::default())
            .await
            .unwrap();
        let head = |e: &Engine| e.read(seeded.program, |l| l.head_hash()).unwrap();
        assert_eq!(head(&reopened), head(&engine), "{}", point.name());
        reopened.shutdown().await;
    }
}
