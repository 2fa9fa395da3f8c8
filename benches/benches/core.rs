//! Benchmarks of the pure ledger engine (`points-core`) at city scale: a ledger of 1,000,000
//! members, each holding one lot of points.
//!
//! - `core/redeem`: one `Redeem` per element through `Ledger::apply` (idempotency check,
//!   validation, hash-chained entry), spread over all members.
//! - `core/approve`: one `ApproveService` of one pre-recorded record per element.
//! - `core/replay`: `Ledger::replay` of a journal of the 1,000,000 members' setup plus
//!   1,000,000 redemptions; throughput in entries.
//! - Before the timed groups, a one-off measurement of resident memory per member (from
//!   `/proc/self/statm`) is printed to stdout.
//! - `snapshot`/`restore` lines: `Ledger::snapshot` and `Ledger::from_snapshot` of the city
//!   ledger, and of the replay ledger (setup plus one redemption per member), best of three.
//! - A `longest applies` line: the longest single `Ledger::apply` calls (wall clock) while
//!   redemptions grow the city ledger's journal past several doublings of its request
//!   table, about 8 s; `POINTS_BENCH_SKIP_STALLS=1` leaves it out.
//!
//! Run with `cargo bench -p points-bench --bench core -- --sample-size 10`. Set
//! `POINTS_BENCH_MEMBERS` to use a smaller ledger for a quick try, and
//! `POINTS_BENCH_CPU_TIME=1` to time with this thread's CPU time (from
//! `/proc/thread-self/stat`, 10 ms ticks) instead of the wall clock, which keeps the figures
//! meaningful on a machine shared with other work.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, Throughput};
use points_core::*;
use std::hint::black_box;
use std::time::{Duration, Instant};

const BATCH: usize = 10_000;

fn members() -> usize {
    std::env::var("POINTS_BENCH_MEMBERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn admin() -> Actor {
    Actor::Admin {
        id: ActorId::from_u128(1).unwrap(),
    }
}
fn till() -> Actor {
    Actor::Merchant {
        id: ActorId::from_u128(2).unwrap(),
        merchant: cafe(),
    }
}
fn community() -> OrgUnitId {
    OrgUnitId::from_u128(10).unwrap()
}
fn cafe() -> MerchantId {
    MerchantId::from_u128(20).unwrap()
}
fn patrol() -> ActivityId {
    ActivityId::from_u128(30).unwrap()
}
fn member(i: usize) -> MemberId {
    MemberId::from_u128(1_000_000_000 + i as u128).unwrap()
}

/// A virtual clock: the benches never read the machine's clock into the ledger.
const T0: i64 = 1_790_000_000_000;

/// Hands out request ids.
struct Ids(u128);
impl Ids {
    fn next(&mut self) -> RequestId {
        self.0 += 1;
        RequestId::from_u128(self.0).unwrap()
    }

    /// A redemption of `amount` at the café by `member`, with a new id.
    fn redemption(&mut self, member: MemberId, amount: Amount) -> Request {
        Request {
            request_id: self.next(),
            actor: till(),
            command: Command::Redeem {
                member,
                merchant: cafe(),
                amount,
            },
        }
    }
}

/// A ledger under construction, optionally keeping its journal.
struct Builder {
    ledger: Ledger,
    journal: Option<Vec<Entry>>,
    ids: Ids,
    now: Timestamp,
}

impl Builder {
    fn new(keep_journal: bool) -> Builder {
        let program = ProgramId::from_u128(0xbe7c).unwrap();
        let spec = ProgramSpec::new(program, "Bench points", "points", Scale::new(2).unwrap())
            .with_expiry(ExpiryPolicy::EndOfYear { years_after: 1 });
        let mut ids = Ids(0);
        let now = Timestamp::from_millis(T0);
        let (ledger, genesis) = Ledger::open(spec, ids.next(), admin(), now).unwrap();
        let mut builder = Builder {
            ledger,
            journal: keep_journal.then(|| vec![genesis]),
            ids,
            now,
        };
        builder.apply(
            admin(),
            Command::CreateOrgUnit {
                id: community(),
                parent: None,
                name: "Donghu".into(),
                level: OrgLevel::Community,
            },
        );
        builder.apply(
            admin(),
            Command::RegisterMerchant {
                id: cafe(),
                org_unit: community(),
                name: "Corner cafe".into(),
                kind: MerchantKind::Partner,
            },
        );
        builder.apply(
            admin(),
            Command::DefineActivity(ActivityInput {
                id: patrol(),
                org_unit: community(),
                name: "Evening patrol".into(),
                category: "patrol".into(),
                rule: RuleInput::PerHour("10".parse().unwrap()),
                coefficient: "1".parse().unwrap(),
                max_minutes_per_occasion: None,
                daily_points_cap: None,
                time_kind: TimeKind::Credit,
            }),
        );
        builder
    }

    fn apply(&mut self, actor: Actor, command: Command) -> Entry {
        let request = Request {
            request_id: self.ids.next(),
            actor,
            command,
        };
        match self.ledger.apply(&request, self.now) {
            Ok(Applied::New(entry)) => {
                if let Some(journal) = &mut self.journal {
                    journal.push(entry.clone());
                }
                entry
            }
            other => panic!("setup failed: {other:?}"),
        }
    }

    fn enrol(&mut self, from: usize, to: usize) {
        for i in from..to {
            self.apply(
                admin(),
                Command::EnrolMember {
                    id: member(i),
                    home: community(),
                    kind: MemberKind::Resident,
                    dual_registration: false,
                    card_code: None,
                },
            );
        }
    }

    /// Records ten hours of patrol (100 points) for members `from..to`, in batches; returns
    /// the record ids.
    fn record(&mut self, from: usize, to: usize) -> Vec<RecordId> {
        let mut ids = Vec::with_capacity(to - from);
        let started_at = self.now.saturating_add_millis(-36_000_000);
        for chunk in (from..to).collect::<Vec<_>>().chunks(BATCH) {
            let records = chunk
                .iter()
                .map(|&i| ServiceInput {
                    member: member(i),
                    activity: patrol(),
                    org_unit: community(),
                    started_at,
                    minutes: 600,
                })
                .collect();
            let entry = self.apply(admin(), Command::RecordService { records });
            let Event::ServiceRecorded { records } = entry.event() else {
                unreachable!()
            };
            ids.extend(records.iter().map(|r| r.id));
        }
        ids
    }

    /// Approves records in batches: every member gets one lot.
    fn approve_batches(&mut self, records: &[RecordId]) {
        for chunk in records.chunks(BATCH) {
            self.apply(
                admin(),
                Command::ApproveService {
                    records: chunk.to_vec(),
                },
            );
        }
    }

    /// 1,000,000 members (or `POINTS_BENCH_MEMBERS`) with one lot of 100 points each.
    fn city(keep_journal: bool) -> Builder {
        let n = members();
        let mut b = Builder::new(keep_journal);
        b.enrol(0, n);
        let records = b.record(0, n);
        b.approve_batches(&records);
        b
    }
}

/// A stopwatch: the wall clock, or with `POINTS_BENCH_CPU_TIME` set, this thread's CPU time.
#[derive(Clone, Copy)]
enum Watch {
    Wall(Instant),
    Cpu(Duration),
}

fn thread_cpu_time() -> Duration {
    // Fields 14 and 15 of /proc/thread-self/stat: user and system time in clock ticks
    // (100 a second on Linux). The command name (field 2) is in parentheses and may hold
    // spaces, so count fields after its closing parenthesis.
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<u64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

impl Watch {
    fn start() -> Watch {
        if std::env::var_os("POINTS_BENCH_CPU_TIME").is_some() {
            Watch::Cpu(thread_cpu_time())
        } else {
            Watch::Wall(Instant::now())
        }
    }
    fn elapsed(self) -> Duration {
        match self {
            Watch::Wall(started) => started.elapsed(),
            Watch::Cpu(started) => thread_cpu_time().saturating_sub(started),
        }
    }
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// (d) Resident bytes per member with one open lot, printed once.
fn memory_per_member() {
    let n = members() as u64;
    let before = rss_bytes();
    let started = Instant::now();
    let mut b = Builder::new(false);
    b.enrol(0, n as usize);
    let enrolled = rss_bytes();
    let records = b.record(0, n as usize);
    b.approve_batches(&records);
    drop(records);
    let with_lots = rss_bytes();
    let snapshot = b.ledger.snapshot().len() as u64;
    println!(
        "memory: {n} members built in {:.1?}; resident bytes per member: {} enrolled, {} with one \
         lot (ledger incl. its service records and request ids); snapshot {} bytes per member",
        started.elapsed(),
        (enrolled - before) / n,
        (with_lots - before) / n,
        snapshot / n,
    );
    let balance = b
        .ledger
        .balance(member(n as usize - 1), b.now)
        .unwrap()
        .balance;
    assert_eq!(balance, Points::from_minor(10_000));
}

/// `Ledger::snapshot` and `Ledger::from_snapshot` of `ledger`, best of three, printed.
fn snapshot_restore(what: &str, ledger: &Ledger) {
    let mut best = (Duration::MAX, Duration::MAX);
    let mut clone_best = Duration::MAX;
    let mut copy_best = Duration::MAX;
    let mut pieces_best = Duration::MAX;
    let mut sized_best = Duration::MAX;
    let mut size = 0;
    for _ in 0..3 {
        // A plain clone, beside the copy the server's writer makes before a checkpoint.
        let started = Watch::start();
        let copy = black_box(ledger.clone());
        clone_best = clone_best.min(started.elapsed());
        assert_eq!(copy.head_hash(), ledger.head_hash());
        drop(copy);
        // The writer's copy (without the request index), serialised on another thread.
        let started = Watch::start();
        let copy = black_box(ledger.copy_for_snapshot());
        copy_best = copy_best.min(started.elapsed());
        assert_eq!(copy.head_hash(), ledger.head_hash());
        drop(copy);
        let started = Watch::start();
        let bytes = black_box(ledger.snapshot());
        let took = started.elapsed();
        best.0 = best.0.min(took);
        size = bytes.len();
        // The server's checkpoint thread hands the snapshot to the file in pieces.
        let started = Watch::start();
        let mut streamed = 0;
        ledger.snapshot_into(1 << 20, |piece| streamed += black_box(piece).len());
        pieces_best = pieces_best.min(started.elapsed());
        assert_eq!(streamed, size);
        // The server sizes the buffer from its last snapshot (half as much again).
        let started = Watch::start();
        let sized = black_box(ledger.snapshot_with_capacity(size + size / 2));
        sized_best = sized_best.min(started.elapsed());
        assert_eq!(sized, bytes);
        drop(sized);
        let started = Watch::start();
        let restored = Ledger::from_snapshot(&bytes).unwrap();
        best.1 = best.1.min(started.elapsed());
        assert_eq!(restored.head_hash(), ledger.head_hash());
        assert_eq!(restored.member_count(), ledger.member_count());
        drop(black_box(restored));
    }
    println!(
        "snapshot of the {what} ledger ({} entries): {size} bytes ({} per member), clone {:.1?}, copy for a snapshot {:.1?}, snapshot {:.1?}, in 1 MiB pieces {:.1?}, into a sized buffer {:.1?}, restore {:.1?}",
        ledger.next_sequence(),
        size / members().max(1),
        clone_best,
        copy_best,
        best.0,
        pieces_best,
        sized_best,
        best.1,
    );
}

/// (a) Redemptions into the city ledger: one `apply` at a time, and in groups of eight
/// hinted with `Ledger::prefetch` first, as the server applies a batch.
fn redeem(c: &mut Criterion, base: &Builder) {
    let n = members();
    let mut group = c.benchmark_group("core");
    group.throughput(Throughput::Elements(1));
    let amount: Amount = "0.01".parse().unwrap();
    let now = base.now;
    for (name, hinted) in [("redeem", 1), ("redeem_batched", 8)] {
        let mut ledger = base.ledger.clone();
        let mut ids = Ids(1u128 << 64);
        let mut next = 0usize;
        group.bench_function(name, |bench| {
            bench.iter_custom(|iters| {
                let mut requests = Vec::with_capacity(hinted);
                let started = Watch::start();
                let mut left = iters as usize;
                while left > 0 {
                    requests.clear();
                    for _ in 0..hinted.min(left) {
                        requests.push(ids.redemption(member(next % n), amount));
                        next += 1;
                    }
                    left -= requests.len();
                    if hinted > 1 {
                        for request in &requests {
                            ledger.prefetch(request);
                        }
                    }
                    for request in &requests {
                        black_box(ledger.apply(request, now).unwrap());
                    }
                }
                started.elapsed()
            })
        });
    }
    group.finish();
}

/// (e) The longest single `apply` calls while the city ledger's journal grows to
/// `POINTS_BENCH_STALL_ENTRIES` entries (default 12,700,000, past the request table's
/// doublings at about 1.6, 3.1, 6.3 and 12.6 million), each timed with the wall clock,
/// printed. A server's writer applies one request at a time, so the longest apply is how
/// long every till can be kept waiting by the ledger's own growth.
fn longest_applies(base: &Builder) {
    let target: u64 = std::env::var("POINTS_BENCH_STALL_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12_700_000);
    let n = members();
    let mut ledger = base.ledger.clone();
    let from = ledger.next_sequence();
    let mut ids = Ids(3u128 << 64);
    let amount: Amount = "0.01".parse().unwrap();
    let mut longest: Vec<(Duration, u64)> = Vec::new();
    let mut over_1ms = Duration::ZERO;
    let started = Instant::now();
    let mut next = 0usize;
    while ledger.next_sequence() < target {
        let request = ids.redemption(member(next % n), amount);
        next += 1;
        let at = ledger.next_sequence();
        let call = Instant::now();
        black_box(ledger.apply(&request, base.now).unwrap());
        let took = call.elapsed();
        if took > Duration::from_millis(1) {
            over_1ms += took;
            longest.push((took, at));
        }
    }
    longest.sort_by(|a, b| b.cmp(a));
    let top: Vec<String> = longest
        .iter()
        .take(5)
        .map(|(took, at)| format!("{took:.1?} at entry {at}"))
        .collect();
    println!(
        "longest applies while the journal grew from {from} to {} entries in {:.1?}: {}; {} applies over 1 ms, {over_1ms:.1?} in all",
        ledger.next_sequence(),
        started.elapsed(),
        top.join(", "),
        longest.len(),
    );
}

/// (b) Approvals of one pre-recorded record each into the city ledger.
fn approve(c: &mut Criterion, base: &Builder) {
    let n = members();
    let mut group = c.benchmark_group("core");
    group.throughput(Throughput::Elements(1));
    let mut b = Builder {
        ledger: base.ledger.clone(),
        journal: None,
        ids: Ids(2u128 << 64),
        now: base.now,
    };
    let mut next = 0usize;
    group.bench_function("approve", |bench| {
        bench.iter_custom(|iters| {
            // Untimed: record one record per member to approve, in batches.
            let mut records = Vec::with_capacity(iters as usize);
            let mut left = iters as usize;
            while left > 0 {
                let from = next % n;
                let to = (from + left.min(BATCH)).min(n);
                records.extend(b.record(from, to));
                left -= to - from;
                next += to - from;
            }
            let started = Watch::start();
            for record in records {
                let request = Request {
                    request_id: b.ids.next(),
                    actor: admin(),
                    command: Command::ApproveService {
                        records: vec![record],
                    },
                };
                black_box(b.ledger.apply(&request, b.now).unwrap());
            }
            started.elapsed()
        })
    });
    group.finish();
}

/// (c) Replaying a journal: the city's setup plus one redemption per member.
fn replay(c: &mut Criterion) {
    let n = members();
    let mut b = Builder::city(true);
    let amount: Amount = "0.01".parse().unwrap();
    for i in 0..n {
        b.apply(
            till(),
            Command::Redeem {
                member: member(i),
                merchant: cafe(),
                amount,
            },
        );
    }
    let journal = b.journal.take().unwrap();
    let head = b.ledger.head_hash();
    snapshot_restore("replay", &b.ledger);
    drop(b);
    let mut group = c.benchmark_group("core");
    group.throughput(Throughput::Elements(journal.len() as u64));
    group.bench_function("replay", |bench| {
        bench.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let started = Watch::start();
                let ledger = Ledger::replay(&journal).unwrap();
                total += started.elapsed();
                assert_eq!(ledger.head_hash(), head);
                drop(black_box(ledger));
            }
            total
        })
    });
    group.finish();
    println!(
        "replay journal: {} entries ({} redemptions)",
        journal.len(),
        n
    );
}

fn main() {
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    if std::env::var_os("POINTS_BENCH_SKIP_MEMORY").is_none() {
        memory_per_member();
    }
    let started = Instant::now();
    let base = Builder::city(false);
    println!(
        "built a ledger of {} members with one lot each in {:.1?}",
        members(),
        started.elapsed()
    );
    snapshot_restore("city", &base.ledger);
    if std::env::var_os("POINTS_BENCH_SKIP_STALLS").is_none() {
        longest_applies(&base);
    }
    redeem(&mut c, &base);
    approve(&mut c, &base);
    drop(base);
    replay(&mut c);
    c.final_summary();
}
