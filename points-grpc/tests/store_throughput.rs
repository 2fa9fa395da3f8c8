//! Measurements, not checks: durable redemptions per second through the SQLite store with
//! group commit, bytes per entry on disk, and start-up time over the resulting journal.
//!
//! Run in release mode:
//! `cargo test --release -p points-grpc --test store_throughput -- --ignored --nocapture`
//! (`POINTS_BENCH_ENTRIES` sets the number of redemptions, default 200000).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::float_arithmetic
)]

use points_core::{Actor, ActorId, Applied, Command, Request, Timestamp};
use points_grpc::engine::{Engine, EngineOptions, StoreConfig};
use std::time::Instant;

mod common;
use common::{request, uid, T0};

fn db_bytes(dir: &std::path::Path) -> (u64, u64, u64) {
    let conn = rusqlite::Connection::open(dir.join("points.db")).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let pages: u64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    let size: u64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap();
    let snapshots: u64 = conn
        .query_row(
            "SELECT COALESCE(SUM(LENGTH(snapshot)), 0) FROM checkpoints",
            [],
            |r| r.get(0),
        )
        .unwrap();
    (pages, size, snapshots)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run in release mode with --ignored --nocapture"]
async fn sqlite_group_commit_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::Sqlite {
        dir: dir.path().to_path_buf(),
    };
    measure(config, Some(dir.path())).await;
}

/// The same on PostgreSQL (`POINTS_TEST_DATABASE_URL`), in a schema of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement; run in release mode with --ignored --nocapture"]
async fn postgres_group_commit_throughput() {
    let url = std::env::var("POINTS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/points_test".into());
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let schema = format!("points_bench_{}", uid().simple());
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    let config = StoreConfig::Postgres {
        url: format!("{url}{sep}options=-csearch_path%3D{schema}"),
    };
    measure(config, None).await;
    client
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .unwrap();
}

async fn measure(config: StoreConfig, sqlite_dir: Option<&std::path::Path>) {
    let total: usize = std::env::var("POINTS_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let members_n = 10_000;
    let options = EngineOptions {
        max_batch: 8192,
        snapshot_every: u64::MAX,
        ..EngineOptions::default()
    };
    let engine = Engine::open(config.clone(), options.clone()).await.unwrap();

    let common::Seeded {
        program,
        merchant,
        members,
        ..
    } = common::seed(&engine, 2, members_n, "1000").await;
    let till = Actor::Merchant {
        id: ActorId::new(uid()).unwrap(),
        merchant,
    };
    let setup_entries = engine.read(program, |l| l.next_sequence()).unwrap();
    let (pages0, page_size, _) = sqlite_dir.map(db_bytes).unwrap_or_default();

    // 1. Batches of 8192 through submit_many.
    let redemptions: Vec<Request> = (0..total)
        .map(|i| {
            request(
                till,
                Command::Redeem {
                    member: members[i % members_n],
                    merchant,
                    amount: "0.01".parse().unwrap(),
                },
            )
        })
        .collect();
    let at = Timestamp::from_millis(T0 + 2000);
    let started = Instant::now();
    for chunk in redemptions.chunks(8192) {
        for r in engine.submit_many_at(program, chunk.to_vec(), at).await {
            assert!(matches!(r, Ok(Applied::New(_))), "{r:?}");
        }
    }
    let elapsed = started.elapsed();
    println!(
        "submit_many, batches of 8192: {total} durable redemptions in {:.2?} = {:.0} entries/s",
        elapsed,
        total as f64 / elapsed.as_secs_f64()
    );

    // 2. Many concurrent single submits: group commit gathers them.
    let singles = (total / 10).max(1000);
    let tasks = 512;
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..tasks {
        let engine = engine.clone();
        let members = members.clone();
        handles.push(tokio::spawn(async move {
            for i in (t..singles).step_by(tasks) {
                let r = engine
                    .submit_at(
                        program,
                        request(
                            till,
                            Command::Redeem {
                                member: members[i % members_n],
                                merchant,
                                amount: "0.01".parse().unwrap(),
                            },
                        ),
                        at,
                    )
                    .await;
                assert!(matches!(r, Ok(Applied::New(_))), "{r:?}");
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let elapsed = started.elapsed();
    println!(
        "{tasks} concurrent callers, one submit each at a time: {singles} durable redemptions in {:.2?} = {:.0} entries/s",
        elapsed,
        singles as f64 / elapsed.as_secs_f64()
    );

    let entries = engine.read(program, |l| l.next_sequence()).unwrap();
    engine.shutdown().await;
    drop(engine);
    let (pages, _, _) = sqlite_dir.map(db_bytes).unwrap_or_default();
    let redeemed = entries - setup_entries;
    if sqlite_dir.is_some() {
        println!(
        "on disk: {} bytes for {redeemed} redemption entries = {:.1} bytes/entry (page_count*page_size after a WAL checkpoint, setup excluded)",
        (pages - pages0) * page_size,
        ((pages - pages0) * page_size) as f64 / redeemed as f64
        );
    }

    // 3. Start-up over the whole journal (no checkpoint), then with a checkpoint.
    let started = Instant::now();
    let engine = Engine::open(config.clone(), options.clone()).await.unwrap();
    println!(
        "start-up replaying {entries} entries (no checkpoint): {:.2?}",
        started.elapsed()
    );
    assert_eq!(
        engine.read(program, |l| l.next_sequence()).unwrap(),
        entries
    );
    let started = Instant::now();
    let chain = engine.verify_chain(program).await.unwrap();
    assert_eq!(chain.first_bad, None);
    println!(
        "verify_chain over {entries} entries: {:.2?}",
        started.elapsed()
    );
    let started = Instant::now();
    let audit = engine.audit(program).await.unwrap();
    assert!(audit.is_clean(), "{:?}", audit.breaches);
    println!("audit over {entries} entries: {:.2?}", started.elapsed());
    engine.shutdown().await;
    drop(engine);

    let every = EngineOptions {
        max_batch: 8192,
        snapshot_every: 1,
        ..EngineOptions::default()
    };
    let engine = Engine::open(config.clone(), every).await.unwrap();
    // One more entry triggers a checkpoint of the whole state.
    engine
        .submit_at(
            program,
            request(
                till,
                Command::Redeem {
                    member: members[0],
                    merchant,
                    amount: "0.01".parse().unwrap(),
                },
            ),
            at,
        )
        .await
        .unwrap();
    engine.shutdown().await;
    drop(engine);
    let (_, _, snapshot_bytes) = sqlite_dir.map(db_bytes).unwrap_or_default();
    let started = Instant::now();
    let engine = Engine::open(config, options).await.unwrap();
    println!(
        "start-up from a checkpoint ({snapshot_bytes} snapshot bytes if SQLite, {members_n} members): {:.2?}",
        started.elapsed()
    );
    assert_eq!(
        engine.read(program, |l| l.next_sequence()).unwrap(),
        entries + 1
    );
    engine.shutdown().await;
}
