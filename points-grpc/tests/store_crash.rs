//! Crash test: a real `points-server` over SQLite is killed with SIGKILL while POS clients
//! redeem; every redemption it acknowledged must be in the journal afterwards, the journal
//! must verify and audit clean, and a restarted server must answer retries of acknowledged
//! requests with the original entries.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use points_core::{Event, MemberId, MerchantId, ProgramId};
use points_grpc::engine::{Engine, EngineOptions, StoreConfig};
use points_grpc::pb;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command as Process, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;
use common::uid;

struct Setup {
    program: ProgramId,
    merchant: MerchantId,
    members: Vec<MemberId>,
}

/// Writes a programme whose members hold a million points each straight into the store.
async fn set_up(config: StoreConfig) -> Setup {
    let engine = Engine::open(config, EngineOptions::default())
        .await
        .unwrap();
    let seeded = common::seed(&engine, 0, 50, "1000000").await;
    engine.shutdown().await;
    Setup {
        program: seeded.program,
        merchant: seeded.merchant,
        members: seeded.members,
    }
}

/// A running server: the child, its address and the bootstrap admin key.
struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(dir: &std::path::Path, key: &mut Option<String>) -> Server {
    let mut child = Process::new(env!("CARGO_BIN_EXE_points-server"))
        .arg("--data-dir")
        .arg(dir)
        .args([
            "--store",
            "sqlite",
            "--listen",
            "127.0.0.1:0",
            "--no-metrics",
            "--log",
            "warn",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .unwrap();
        if let Some(secret) = line.strip_prefix("bootstrap admin key: ") {
            *key = Some(secret.trim().to_string());
        } else if let Some(addr) = line.strip_prefix("points-server listening on ") {
            break addr.trim().to_string();
        }
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, addr }
}

async fn client(
    addr: &str,
) -> pb::point_of_sale_client::PointOfSaleClient<tonic::transport::Channel> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match pb::point_of_sale_client::PointOfSaleClient::connect(format!("http://{addr}")).await {
            Ok(c) => return c,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot connect to {addr}: {e}"),
        }
    }
}

fn redeem_request(
    setup: &Setup,
    key: &str,
    request_id: uuid::Uuid,
    member: MemberId,
) -> tonic::Request<pb::RedeemRequest> {
    let mut r = tonic::Request::new(pb::RedeemRequest {
        request_id: request_id.to_string(),
        program_id: setup.program.to_string(),
        merchant_id: setup.merchant.to_string(),
        member: Some(pb::MemberRef {
            member: Some(pb::member_ref::Member::MemberId(member.to_string())),
        }),
        amount: "1".into(),
    });
    r.metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    r
}

/// Kill-and-restart rounds.
const ROUNDS: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_redemption() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::Sqlite {
        dir: dir.path().to_path_buf(),
    };
    let setup = Arc::new(set_up(config.clone()).await);
    let mut key = None;
    let mut acknowledged: Vec<(uuid::Uuid, MemberId, u64)> = Vec::new();

    // The issue asks for at least 20 kill-and-restart rounds.
    for round in 0..ROUNDS {
        let server = start_server(dir.path(), &mut key);
        let secret = key.clone().expect("no bootstrap key was printed");
        let acked = Arc::new(Mutex::new(Vec::new()));
        let killed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for t in 0..16 {
            let setup = setup.clone();
            let secret = secret.clone();
            let acked = acked.clone();
            let killed = killed.clone();
            let mut pos = client(&server.addr).await;
            tasks.push(tokio::spawn(async move {
                for i in 0.. {
                    let member = setup.members[(t + i) % setup.members.len()];
                    let id = uid();
                    match pos
                        .redeem(redeem_request(&setup, &secret, id, member))
                        .await
                    {
                        Ok(response) => {
                            let receipt = response.into_inner().receipt.unwrap();
                            assert!(!receipt.duplicate);
                            acked.lock().unwrap().push((id, member, receipt.sequence));
                        }
                        // Any failure once the server is being killed is expected.
                        Err(_) if killed.load(std::sync::atomic::Ordering::SeqCst) => return,
                        Err(status) => panic!("round {round}: {status:?}"),
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(400)).await;
        killed.store(true, std::sync::atomic::Ordering::SeqCst);
        drop(server); // SIGKILL, mid-flight
        for t in tasks {
            t.await.unwrap();
        }
        let acked = std::mem::take(&mut *acked.lock().unwrap());
        assert!(!acked.is_empty(), "round {round}: nothing was acknowledged");
        eprintln!(
            "round {round}: {} redemptions acknowledged before SIGKILL",
            acked.len()
        );
        acknowledged.extend(acked);

        // Everything acknowledged is in the journal, at the sequence the receipt named.
        let engine = Engine::open(config.clone(), EngineOptions::default())
            .await
            .unwrap();
        // Read the journal once and index it by sequence and by request id.
        let journal = engine.entries(setup.program, 0, usize::MAX).await.unwrap();
        let mut by_request: std::collections::HashMap<uuid::Uuid, usize> =
            std::collections::HashMap::new();
        for entry in &journal {
            *by_request.entry(entry.request_id().into()).or_default() += 1;
        }
        for (id, member, sequence) in &acknowledged {
            let entry = usize::try_from(*sequence)
                .ok()
                .and_then(|i| journal.get(i))
                .unwrap_or_else(|| panic!("acknowledged entry {sequence} is lost"));
            assert_eq!(entry.sequence(), *sequence);
            assert_eq!(uuid::Uuid::from(entry.request_id()), *id);
            assert!(matches!(entry.event(), Event::Redeemed { member: m, .. } if m == member));
            assert_eq!(
                by_request.get(id),
                Some(&1),
                "request {id} applied more than once"
            );
        }
        let chain = engine.verify_chain(setup.program).await.unwrap();
        assert_eq!(chain.first_bad, None);
        let audit = engine.audit(setup.program).await.unwrap();
        assert!(audit.is_clean(), "{:?}", audit.breaches);
        engine.shutdown().await;
    }

    // A restarted server answers retries of acknowledged requests with the original entries.
    let server = start_server(dir.path(), &mut key);
    let secret = key.clone().unwrap();
    let mut pos = client(&server.addr).await;
    for (id, member, sequence) in acknowledged.iter().step_by(97) {
        let receipt = pos
            .redeem(redeem_request(&setup, &secret, *id, *member))
            .await
            .unwrap()
            .into_inner()
            .receipt
            .unwrap();
        assert!(receipt.duplicate);
        assert_eq!(receipt.sequence, *sequence);
    }
}
