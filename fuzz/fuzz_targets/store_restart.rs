//! The store's recovery from a corrupted disk: a real SQLite data directory (a small
//! programme with a checkpoint) whose last journal row, or latest checkpoint (first byte odd),
//! is overwritten with the fuzz bytes, then opened by the engine as a restarted server would.
//! Start-up must refuse with an error naming the entry, or (if the bytes happen to be
//! harmless, e.g. a snapshot that is skipped) load a journal that verifies and audits clean.
//! It must never panic. Tens of milliseconds per run, so it is a target of its own.
#![no_main]

use libfuzzer_sys::fuzz_target;
use points_core::{
    Actor, ActorId, Command, MemberId, MemberKind, OrgLevel, OrgUnitId, ProgramId, ProgramSpec,
    Request, RequestId, Scale, Timestamp,
};
use points_grpc::engine::{Engine, EngineOptions, StoreConfig};
use std::sync::OnceLock;

const T0: i64 = 1_790_000_000_000;

struct Disk {
    runtime: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
    program: ProgramId,
    last_key: i64,
    last_body: Vec<u8>,
}

fn uid() -> uuid::Uuid {
    uuid::Uuid::new_v4()
}

fn options() -> EngineOptions {
    EngineOptions {
        max_batch: 64,
        snapshot_every: 4,
        // Every checkpoint that falls due is on disk before the next batch.
        background_checkpoints: false,
    }
}

/// A data directory with a small programme (and a checkpoint), made once.
fn disk() -> &'static Disk {
    static DISK: OnceLock<Disk> = OnceLock::new();
    DISK.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let program = ProgramId::new(uid()).unwrap();
        runtime.block_on(async {
            let engine = Engine::open(
                StoreConfig::Sqlite {
                    dir: dir.path().to_path_buf(),
                },
                options(),
            )
            .await
            .unwrap();
            let admin = Actor::Admin {
                id: ActorId::new(uid()).unwrap(),
            };
            let spec = ProgramSpec::new(program, "Fuzz", "points", Scale::new(2).unwrap());
            let at = Timestamp::from_millis(T0);
            engine
                .create_program(spec, RequestId::new(uid()).unwrap(), admin, at)
                .await
                .unwrap();
            let community = OrgUnitId::new(uid()).unwrap();
            let mut setup = vec![Command::CreateOrgUnit {
                id: community,
                parent: None,
                name: "C".into(),
                level: OrgLevel::Community,
            }];
            for _ in 0..6 {
                setup.push(Command::EnrolMember {
                    id: MemberId::new(uid()).unwrap(),
                    home: community,
                    kind: MemberKind::Resident,
                    dual_registration: false,
                    card_code: None,
                });
            }
            for command in setup {
                let request = Request {
                    request_id: RequestId::new(uid()).unwrap(),
                    actor: admin,
                    command,
                };
                engine.submit_at(program, request, at).await.unwrap();
            }
            engine.shutdown().await;
        });
        let conn = rusqlite::Connection::open(dir.path().join("points.db")).unwrap();
        let (last_key, last_body): (i64, Vec<u8>) = conn
            .query_row(
                "SELECT k, body FROM entries ORDER BY k DESC LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        Disk {
            runtime,
            dir,
            program,
            last_key,
            last_body,
        }
    })
}

/// Overwrites the last journal row (or the latest checkpoint) with `bytes`, restarts, and
/// puts the original back.
fn corrupt_and_restart(bytes: &[u8], checkpoint: bool) {
    let d = disk();
    let path = d.dir.path().join("points.db");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let saved: Option<(i64, i64, Vec<u8>)> = if checkpoint {
        conn.query_row(
            "SELECT handle, next_seq, snapshot FROM checkpoints ORDER BY next_seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .ok()
    } else {
        None
    };
    if let Some((handle, next, _)) = &saved {
        conn.execute(
            "UPDATE checkpoints SET snapshot = ?1 WHERE handle = ?2 AND next_seq = ?3",
            rusqlite::params![bytes, handle, next],
        )
        .unwrap();
    } else {
        conn.execute(
            "UPDATE entries SET body = ?1 WHERE k = ?2",
            rusqlite::params![bytes, d.last_key],
        )
        .unwrap();
    }
    d.runtime.block_on(async {
        let opened = Engine::open(
            StoreConfig::Sqlite {
                dir: d.dir.path().to_path_buf(),
            },
            options(),
        )
        .await;
        if let Ok(engine) = opened {
            // The bytes were harmless (or the checkpoint was skipped): what loaded must
            // be a journal that verifies and audits clean.
            let chain = engine.verify_chain(d.program).await;
            if let Ok(chain) = chain {
                if chain.first_bad.is_none() {
                    let report = engine.audit(d.program).await.unwrap();
                    assert!(report.is_clean(), "{:?}", report.breaches);
                }
            }
            engine.shutdown().await;
        }
    });
    if let Some((handle, next, snapshot)) = saved {
        conn.execute(
            "UPDATE checkpoints SET snapshot = ?1 WHERE handle = ?2 AND next_seq = ?3",
            rusqlite::params![snapshot, handle, next],
        )
        .unwrap();
    } else {
        conn.execute(
            "UPDATE entries SET body = ?1 WHERE k = ?2",
            rusqlite::params![d.last_body, d.last_key],
        )
        .unwrap();
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    corrupt_and_restart(bytes, mode & 1 == 1);
});
