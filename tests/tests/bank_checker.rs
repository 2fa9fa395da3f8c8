//! The bank checker (issue 9), after Jepsen's: concurrent clients make random transfers,
//! redemptions, holds (captured or released) and refunds through the real server; every
//! write is sent 1 to 5 times at once with the same request id; meanwhile the server is
//! killed with SIGKILL and restarted on the same store, again and again. At the end, on a
//! clean server:
//!
//! - totals are conserved: the members' balances plus what the merchant took equal what
//!   was issued;
//! - no balance (nor available balance) is negative;
//! - nothing is applied twice: every request id is in the journal at most once, and every
//!   answer to the copies of one request names the same entry;
//! - every acknowledged write is present, as the entry it was acknowledged with;
//! - the chain verifies and the audit is clean.
//!
//! Runs on SQLite, and on PostgreSQL when `POINTS_TEST_DATABASE_URL` answers (required when
//! `POINTS_REQUIRE_POSTGRES=1`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod reliability;

use common::grpc::{audit_report, verify_chain};
use common::{auth, id, pg, Clients, Server};
use points_grpc::pb;
use reliability::{member_ref, world};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tonic::transport::Channel;
use tonic::{Code, Status};

/// Members, each issued `INITIAL` points.
const MEMBERS: usize = 12;
const INITIAL_CENTS: i64 = 100_000;
/// Concurrent clients.
const CLIENTS: usize = 6;
/// SIGKILL-and-restart rounds.
const KILLS: usize = 6;

/// A small deterministic generator (xorshift64*), seeded per client.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn cents(c: i64) -> String {
    format!("{}.{:02}", c / 100, c % 100)
}

fn parse_cents(s: &str) -> i64 {
    let (whole, frac) = s.split_once('.').unwrap_or((s, "0"));
    let frac = format!("{frac:0<2}");
    whole.parse::<i64>().unwrap() * 100 + frac[..2].parse::<i64>().unwrap()
}

/// What the clients saw, merged.
#[derive(Default)]
struct Seen {
    /// Acknowledged request id → the entry id every successful copy named.
    acked: HashMap<String, String>,
    writes: usize,
    copies: usize,
    duplicates: usize,
    unavailable: usize,
    /// Writes sent again after no copy got an answer.
    retried: usize,
}

/// The server's current address, changed by the killer on every restart.
type Addr = Arc<RwLock<String>>;

fn clients_for(addr: &str) -> Clients {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(1))
        .connect_lazy();
    Clients::new(channel)
}

/// Sends `copies` copies of one write at once; returns the entry id (and the id of what it
/// made, e.g. a hold) when any copy succeeded. Panics when two copies name different entries.
async fn send<T, F, Fut>(
    addr: &Addr,
    copies: usize,
    seen: &Mutex<Seen>,
    request_id: &str,
    call: F,
) -> Option<T>
where
    T: Clone,
    F: Fn(Clients) -> Fut,
    Fut: std::future::Future<Output = Result<(pb::EntryReceipt, T), Status>>,
{
    let mut entry: Option<String> = None;
    let mut out = None;
    // Like a till: when no copy got an answer (the server was down), send them all again,
    // with the same request id, a few times: a retry after a restart must find the write
    // if it had committed before the kill.
    for round in 0..4 {
        if round > 0 {
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        let current = addr.read().unwrap().clone();
        let clients = clients_for(&current);
        let attempts = (0..copies).map(|_| {
            let fut = call(clients.clone());
            async move {
                tokio::time::timeout(Duration::from_secs(5), fut)
                    .await
                    .unwrap_or_else(|_| Err(Status::deadline_exceeded("client timeout")))
            }
        });
        let answers = futures_join_all(attempts).await;
        let mut s = seen.lock().unwrap();
        if round == 0 {
            s.writes += 1;
        } else {
            s.retried += 1;
        }
        s.copies += copies;
        let mut answered = false;
        for answer in answers {
            match answer {
                Ok((receipt, value)) => {
                    answered = true;
                    if receipt.duplicate {
                        s.duplicates += 1;
                    }
                    match &entry {
                        Some(e) => assert_eq!(
                            e, &receipt.entry_id,
                            "two copies of request {request_id} were applied as different entries"
                        ),
                        None => entry = Some(receipt.entry_id.clone()),
                    }
                    out = Some(value);
                }
                Err(status) => match status.code() {
                    Code::Unavailable
                    | Code::DeadlineExceeded
                    | Code::Cancelled
                    | Code::Unknown => s.unavailable += 1,
                    // Rejections are answers too (not enough points, hold not open, ...).
                    Code::FailedPrecondition | Code::NotFound | Code::InvalidArgument => {
                        answered = true
                    }
                    other => panic!("unexpected {other:?}: {status:?}"),
                },
            }
        }
        if answered {
            break;
        }
    }
    let mut s = seen.lock().unwrap();
    if let Some(entry) = entry {
        if let Some(previous) = s.acked.insert(request_id.to_owned(), entry.clone()) {
            assert_eq!(previous, entry);
        }
    }
    out
}

/// `join_all` without another dependency: runs the futures concurrently on this task.
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.unwrap()).collect()
}

struct Ctx {
    addr: Addr,
    program: String,
    merchant: String,
    merchant_key: String,
    admin: String,
    members: Vec<String>,
    seen: Mutex<Seen>,
    stop: AtomicBool,
}

/// One client: random writes until told to stop.
async fn client(ctx: Arc<Ctx>, seed: u64) {
    let mut rng = Rng(seed | 1);
    let mut holds: Vec<String> = Vec::new();
    let mut takings: Vec<(String, i64)> = Vec::new();
    while !ctx.stop.load(Ordering::SeqCst) {
        let copies = 1 + rng.below(5) as usize;
        let member = ctx.members[rng.below(MEMBERS as u64) as usize].clone();
        let amount = 1 + rng.below(5_000) as i64;
        let request_id = id();
        let program = ctx.program.clone();
        match rng.below(6) {
            0 | 1 => {
                let to = ctx.members[rng.below(MEMBERS as u64) as usize].clone();
                if to == member {
                    continue;
                }
                let req = pb::TransferRequest {
                    request_id: request_id.clone(),
                    program_id: program,
                    from_member_id: member,
                    to_member_id: to,
                    amount: cents(amount),
                };
                let key = ctx.admin.clone();
                send(&ctx.addr, copies, &ctx.seen, &request_id, |mut c| {
                    let req = req.clone();
                    let key = key.clone();
                    async move {
                        let r = c.rec.transfer(auth(req, &key)).await?.into_inner();
                        Ok((r.receipt.unwrap_or_default(), ()))
                    }
                })
                .await;
            }
            2 => {
                let req = pb::RedeemRequest {
                    request_id: request_id.clone(),
                    program_id: program,
                    merchant_id: ctx.merchant.clone(),
                    member: member_ref(&member),
                    amount: cents(amount),
                };
                let key = ctx.merchant_key.clone();
                let got = send(&ctx.addr, copies, &ctx.seen, &request_id, |mut c| {
                    let req = req.clone();
                    let key = key.clone();
                    async move {
                        let r = c.pos.redeem(auth(req, &key)).await?.into_inner();
                        let receipt = r.receipt.unwrap_or_default();
                        Ok((receipt.clone(), receipt.entry_id))
                    }
                })
                .await;
                if let Some(entry) = got {
                    takings.push((entry, amount));
                }
            }
            3 => {
                let req = pb::HoldRequest {
                    request_id: request_id.clone(),
                    program_id: program,
                    merchant_id: ctx.merchant.clone(),
                    member: member_ref(&member),
                    amount: cents(amount),
                    ttl_ms: 0,
                };
                let key = ctx.merchant_key.clone();
                let got = send(&ctx.addr, copies, &ctx.seen, &request_id, |mut c| {
                    let req = req.clone();
                    let key = key.clone();
                    async move {
                        let r = c.pos.hold(auth(req, &key)).await?.into_inner();
                        Ok((r.receipt.unwrap_or_default(), r.hold_id))
                    }
                })
                .await;
                if let Some(hold) = got {
                    holds.push(hold);
                }
            }
            4 if !holds.is_empty() => {
                let hold = holds.swap_remove(rng.below(holds.len() as u64) as usize);
                let key = ctx.merchant_key.clone();
                if rng.below(2) == 0 {
                    let req = pb::CaptureRequest {
                        request_id: request_id.clone(),
                        program_id: program,
                        hold_id: hold,
                        amount: None,
                    };
                    let got = send(&ctx.addr, copies, &ctx.seen, &request_id, |mut c| {
                        let req = req.clone();
                        let key = key.clone();
                        async move {
                            let r = c.pos.capture(auth(req, &key)).await?.into_inner();
                            let receipt = r.receipt.unwrap_or_default();
                            Ok((receipt.clone(), (receipt.entry_id, r.captured)))
                        }
                    })
                    .await;
                    if let Some((entry, captured)) = got {
                        takings.push((entry, parse_cents(&captured)));
                    }
                } else {
                    let req = pb::ReleaseRequest {
                        request_id: request_id.clone(),
                        program_id: program,
                        hold_id: hold,
                    };
                    send(&ctx.addr, copies, &ctx.seen, &request_id, |mut c| {
                        let req = req.clone();
                        let key = key.clone();
                        async move {
                            let r = c.pos.release(auth(req, &key)).await?.into_inner();
                            Ok((r.receipt.unwrap_or_default(), ()))
                        }
                    })
                    .await;
                }
            }
            _ if !takings.is_empty() => {
                let i = rng.below(takings.len() as u64) as usize;
                let (entry, taken) = takings.swap_remove(i);
                let part = 1 + rng.below(taken as u64) as i64;
                let req = pb::RefundRequest {
                    request_id: request_id.clone(),
                    program_id: program,
                    entry_id: entry,
                    amount: cents(part),
                };
                let key = ctx.merchant_key.clone();
                send(&ctx.addr, copies, &ctx.seen, &request_id, |mut c| {
                    let req = req.clone();
                    let key = key.clone();
                    async move {
                        let r = c.pos.refund(auth(req, &key)).await?.into_inner();
                        Ok((r.receipt.unwrap_or_default(), ()))
                    }
                })
                .await;
            }
            _ => {}
        }
    }
}

/// Runs the checker on the store that `extra` flags select.
async fn bank_checker(extra: Vec<String>) {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("data");
    let flags: Vec<&str> = extra.iter().map(String::as_str).collect();
    let server = Server::start_in(&dir, &flags);
    let admin = server.admin_key();
    let w = world(
        Clients::new(server.channel().await),
        &admin,
        MEMBERS,
        &cents(INITIAL_CENTS),
    )
    .await;
    let ctx = Arc::new(Ctx {
        addr: Arc::new(RwLock::new(server.addr.clone())),
        program: w.program.clone(),
        merchant: w.merchant.clone(),
        merchant_key: w.merchant_key.clone(),
        admin: admin.clone(),
        members: w.members.clone(),
        seen: Mutex::new(Seen::default()),
        stop: AtomicBool::new(false),
    });
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let ctx = ctx.clone();
            let seed = u64::from_le_bytes(uuid::Uuid::new_v4().as_bytes()[..8].try_into().unwrap())
                ^ i as u64;
            tokio::spawn(client(ctx, seed))
        })
        .collect();

    // The killer: SIGKILL the server at random moments and start it again on the same store.
    let kills = AtomicUsize::new(0);
    let mut server = server;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ std::process::id() as u64);
    for _ in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(400 + rng.below(1_000))).await;
        server.kill();
        kills.fetch_add(1, Ordering::SeqCst);
        let dir = dir.clone();
        let flags = extra.clone();
        server = tokio::task::spawn_blocking(move || {
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            Server::start_in(&dir, &flags)
        })
        .await
        .unwrap();
        *ctx.addr.write().unwrap() = server.addr.clone();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    ctx.stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.unwrap();
    }
    // A last kill, then a clean start for the checks.
    server.kill();
    let flags: Vec<&str> = extra.iter().map(String::as_str).collect();
    let server = Server::start_in(&dir, &flags);
    let mut c = Clients::new(server.channel().await);

    // Every entry of the programme, by request id.
    let mut journal: HashMap<String, String> = HashMap::new();
    let mut token = String::new();
    loop {
        let page = c
            .ledger
            .list_entries(auth(
                pb::ListEntriesRequest {
                    program_id: w.program.clone(),
                    page_size: 1000,
                    page_token: token.clone(),
                    ..Default::default()
                },
                &admin,
            ))
            .await
            .unwrap()
            .into_inner();
        for e in page.entries {
            let again = journal.insert(e.request_id.clone(), e.entry_id.clone());
            assert!(again.is_none(), "request {} applied twice", e.request_id);
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let seen = std::mem::take(&mut *ctx.seen.lock().unwrap());
    for (request, entry) in &seen.acked {
        assert_eq!(
            journal.get(request),
            Some(entry),
            "acknowledged request {request} is missing or changed"
        );
    }

    // Conservation and no negative balance.
    let mut total = 0i64;
    for member in &w.members {
        let b = c
            .pos
            .get_balance(auth(
                pb::GetBalanceRequest {
                    program_id: w.program.clone(),
                    member: member_ref(member),
                },
                &admin,
            ))
            .await
            .unwrap()
            .into_inner();
        let balance = parse_cents(&b.balance);
        assert!(
            balance >= 0 && !b.available.starts_with('-'),
            "negative: {b:?}"
        );
        total += balance;
    }
    let merchants = c
        .admin
        .list_merchants(auth(
            pb::ListMerchantsRequest {
                program_id: w.program.clone(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let taken: i64 = merchants
        .merchants
        .iter()
        .map(|m| parse_cents(&m.taken))
        .sum();
    assert_eq!(
        total + taken,
        INITIAL_CENTS * MEMBERS as i64,
        "points were created or destroyed (balances {total}, taken {taken})"
    );

    let chain = verify_chain(&mut c.ledger, &admin, &w.program).await;
    assert!(chain.ok, "{chain:?}");
    let audit = audit_report(&mut c.ledger, &admin, &w.program).await;
    assert!(audit.ok, "{:?}", audit.breaches);
    assert!(
        seen.acked.len() > 50,
        "too few writes acknowledged to mean anything"
    );
    assert!(seen.unavailable > 0, "the kills never interrupted a write");
    eprintln!(
        "bank checker: {} writes sent as {} copies ({} resent after a kill), {} acknowledged \
         ({} copies answered as duplicates), {} copies failed by the kills; {} kills; \
         journal {} entries; conserved {}, audit clean",
        seen.writes,
        seen.copies,
        seen.retried,
        seen.acked.len(),
        seen.duplicates,
        seen.unavailable,
        kills.load(Ordering::SeqCst),
        chain.entries_checked,
        cents(total + taken),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_checker_sqlite() {
    bank_checker(vec![]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bank_checker_postgres() {
    let Some(schema) = pg::schema("points_bank_").await else {
        return;
    };
    let url = schema.url.clone();
    bank_checker(vec!["--database-url".into(), url]).await;
    schema
        .client
        .batch_execute(&format!("DROP SCHEMA {} CASCADE", schema.name))
        .await
        .unwrap();
}
