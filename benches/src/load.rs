//! `points-load run`: N concurrent clients (tokio tasks over a few HTTP/2 channels) send a
//! mix of writes, unary or in Submit batches, closed loop or at a fixed offered rate.
//!
//! At a fixed rate a pacer thread (not the tokio timer, whose granularity is 1 ms) hands
//! out scheduled send times; a worker takes the next one, sends, and records the latency
//! from the scheduled time, so queueing behind slow calls is counted (no coordinated
//! omission). The service time from the actual send is reported beside it.

use crate::client::{self, Clients, Key};
use crate::ids::{random_u64, RequestIds, SplitMix};
use crate::mix::{Mix, OpKind};
use crate::seed::{timestamp_ago, SeedState};
use crate::stats::{per_second, ErrorCounts, Latency, LatencySummary};
use anyhow::Context as _;
use points_grpc::pb;
use points_grpc::pb::member_ref::Member;
use points_grpc::pb::submit_operation::Operation as Op;
use points_grpc::pb::submit_result::Result as Res;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, Mutex};
use tonic::transport::Channel;
use uuid::Uuid;

/// Reasons a healthy run may see: business rejections the mix can provoke.
pub const EXPECTED_REJECTIONS: &[&str] = &["INSUFFICIENT_POINTS"];

/// Most open holds and refundable entries a worker remembers.
const QUEUE_CAP: usize = 10_000;

/// How to load the server.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    /// Server address, `host:port`.
    pub addr: String,
    /// An admin API key (used for accruals, and for Submit batches that contain them).
    pub admin_key: String,
    /// Concurrent clients (tokio tasks), each with its own till (merchant key).
    pub concurrency: usize,
    /// HTTP/2 connections the clients share.
    pub channels: usize,
    /// How long to offer load.
    pub duration: Duration,
    /// Offered operations per second (open loop); `None` for closed loop.
    pub rate: Option<f64>,
    /// Operations per PointOfSale.Submit call; 0 sends unary calls.
    pub batch: usize,
    /// The operation mix.
    pub mix: Mix,
    /// Points per redemption, hold and refund, a decimal string.
    pub amount: String,
    /// Use only the first N seeded members (a hot set); `None` for all.
    pub members: Option<u64>,
}

impl LoadOptions {
    /// Closed-loop unary redemptions, 2 s, 8 clients, 2 channels.
    pub fn new(addr: &str, admin_key: &str) -> Self {
        LoadOptions {
            addr: addr.to_owned(),
            admin_key: admin_key.to_owned(),
            concurrency: 8,
            channels: 2,
            duration: Duration::from_secs(2),
            rate: None,
            batch: 0,
            mix: Mix::redeem_only(),
            amount: "1".to_owned(),
            members: None,
        }
    }
}

/// One acknowledged write: what the journal must hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Acked {
    /// The entry's sequence in the program's journal.
    pub sequence: u64,
    /// The request id that wrote it.
    pub request_id: Uuid,
    /// The entry kind the receipt named (`pb::EntryKind` as i32).
    pub kind: i32,
}

/// Counts and latency of one operation kind.
#[derive(Clone, Debug, Default, Serialize)]
pub struct KindReport {
    /// Operations acknowledged.
    pub ok: u64,
    /// Operations that failed.
    pub failed: u64,
    /// Latency of the kind's calls (unary runs only; an accrual is two calls).
    pub latency: LatencySummary,
}

/// What a run measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunReport {
    /// `closed` or `open` loop.
    pub mode: String,
    /// `unary` or `submit`.
    pub call: String,
    /// Offered operations per second, open loop only.
    pub offered_rate: Option<f64>,
    /// Concurrent clients.
    pub concurrency: usize,
    /// HTTP/2 connections.
    pub channels: usize,
    /// Operations per Submit (0 for unary).
    pub batch: usize,
    /// The mix.
    pub mix: String,
    /// Members the run picked from.
    pub members: u64,
    /// Configured duration, seconds.
    pub duration_s: f64,
    /// Wall time from the first send to the last answer, seconds.
    pub elapsed_s: f64,
    /// RPCs made.
    pub calls: u64,
    /// RPCs that failed as a whole (status error).
    pub calls_failed: u64,
    /// Operations acknowledged (a unary accrual is one operation of two entries).
    pub ops_ok: u64,
    /// Operations that failed.
    pub ops_failed: u64,
    /// Journal entries acknowledged.
    pub entries_acked: u64,
    /// Acknowledged operations per second.
    pub throughput_ops_s: f64,
    /// Acknowledged entries per second.
    pub entries_per_s: f64,
    /// RPCs per second.
    pub calls_per_s: f64,
    /// Per-call latency; in open loop measured from the scheduled send time.
    pub latency: LatencySummary,
    /// Open loop: per-call latency from the actual send (service time only).
    pub service_latency: Option<LatencySummary>,
    /// Open loop: scheduled sends never made because the run fell too far behind.
    pub unsent: u64,
    /// Per operation kind.
    pub per_kind: BTreeMap<String, KindReport>,
    /// Failures by `GRPC_CODE/REASON`.
    pub errors: ErrorCounts,
    /// Failures other than [`EXPECTED_REJECTIONS`].
    pub unexpected_errors: u64,
    /// Receipts marked duplicate (never expected: every request id is fresh).
    pub duplicates: u64,
    /// Wall-clock start, milliseconds since the Unix epoch.
    pub started_at_unix_ms: u64,
}

impl RunReport {
    /// A human-readable summary.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let rate = self
            .offered_rate
            .map(|r| format!(" at {r:.0} ops/s offered"))
            .unwrap_or_default();
        let call = if self.batch > 0 {
            format!("Submit x{}", self.batch)
        } else {
            "unary".to_owned()
        };
        out.push_str(&format!(
            "{} loop, {call}{rate}, {} clients over {} channels, mix {}, {} members\n",
            self.mode, self.concurrency, self.channels, self.mix, self.members
        ));
        out.push_str(&format!(
            "elapsed {:.2} s: {} ops ok ({:.0} ops/s), {} entries ({:.0}/s), {} calls ({:.0}/s), {} ops failed, {} calls failed\n",
            self.elapsed_s,
            self.ops_ok,
            self.throughput_ops_s,
            self.entries_acked,
            self.entries_per_s,
            self.calls,
            self.calls_per_s,
            self.ops_failed,
            self.calls_failed
        ));
        let from = if self.mode == "open" {
            " (from scheduled send)"
        } else {
            ""
        };
        out.push_str(&format!("latency{from}: {}\n", self.latency.line()));
        if let Some(s) = &self.service_latency {
            out.push_str(&format!("service time:  {}\n", s.line()));
        }
        if self.unsent > 0 {
            out.push_str(&format!(
                "UNSENT: {} scheduled sends never made (server could not keep up)\n",
                self.unsent
            ));
        }
        for (kind, k) in &self.per_kind {
            out.push_str(&format!("  {kind:8} ok {:>9} failed {:>7}", k.ok, k.failed));
            if k.latency.count > 0 {
                out.push_str(&format!("  {}", k.latency.line()));
            }
            out.push('\n');
        }
        if self.errors.0.is_empty() {
            out.push_str("errors: none\n");
        } else {
            out.push_str("errors:\n");
            for (key, n) in &self.errors.0 {
                out.push_str(&format!("  {key}: {n}\n"));
            }
        }
        out
    }
}

/// A run's report and what it acknowledged.
#[derive(Clone, Debug)]
pub struct RunOutput {
    /// The measurements.
    pub report: RunReport,
    /// Every acknowledged entry, sorted by sequence.
    pub acked: Vec<Acked>,
    /// When the run started (wall clock), for journal scans.
    pub started: SystemTime,
}

/// What one worker knows and counts.
struct Worker {
    c: Clients,
    admin: Key,
    till: Key,
    merchant_id: String,
    state: Arc<SeedState>,
    members: u64,
    amount: String,
    mix: Mix,
    rng: SplitMix,
    rids: RequestIds,
    open_holds: VecDeque<String>,
    refundable: VecDeque<String>,
    pending_records: Vec<String>,
    // measurements
    latency: Latency,
    service: Latency,
    kind_latency: Vec<Latency>,
    kind_ok: [u64; 6],
    kind_failed: [u64; 6],
    errors: ErrorCounts,
    acked: Vec<Acked>,
    calls: u64,
    calls_failed: u64,
    duplicates: u64,
    dropped: u64,
}

/// An operation with its inputs resolved from the worker's queues.
enum Planned {
    Redeem,
    Hold,
    Capture(String),
    Release(String),
    Refund(String),
    Accrual,
}

impl Planned {
    fn kind(&self) -> OpKind {
        match self {
            Planned::Redeem => OpKind::Redeem,
            Planned::Hold => OpKind::Hold,
            Planned::Capture(_) => OpKind::Capture,
            Planned::Release(_) => OpKind::Release,
            Planned::Refund(_) => OpKind::Refund,
            Planned::Accrual => OpKind::Accrual,
        }
    }
}

fn push_capped(queue: &mut VecDeque<String>, item: String) {
    if queue.len() >= QUEUE_CAP {
        queue.pop_front();
    }
    queue.push_back(item);
}

impl Worker {
    fn plan(&mut self) -> Planned {
        let kind = if self.mix == Mix::redeem_only() {
            OpKind::Redeem
        } else {
            self.mix.pick(self.rng.next_u64())
        };
        match kind {
            OpKind::Redeem => Planned::Redeem,
            OpKind::Hold => Planned::Hold,
            OpKind::Capture => match self.open_holds.pop_front() {
                Some(h) => Planned::Capture(h),
                None => Planned::Hold,
            },
            OpKind::Release => match self.open_holds.pop_front() {
                Some(h) => Planned::Release(h),
                None => Planned::Hold,
            },
            OpKind::Refund => match self.refundable.pop_front() {
                Some(e) => Planned::Refund(e),
                None => Planned::Redeem,
            },
            OpKind::Accrual => Planned::Accrual,
        }
    }

    fn member(&mut self) -> String {
        let i = self.rng.below(self.members.max(1));
        self.state.member(i).to_string()
    }

    fn member_ref(&mut self) -> Option<pb::MemberRef> {
        Some(pb::MemberRef {
            member: Some(Member::MemberId(self.member())),
        })
    }

    fn ack(&mut self, receipt: Option<&pb::EntryReceipt>, request_id: Uuid) {
        if let Some(r) = receipt {
            if r.duplicate {
                self.duplicates += 1;
            }
            self.acked.push(Acked {
                sequence: r.sequence,
                request_id,
                kind: r.kind,
            });
        }
    }

    fn fail(&mut self, kind: OpKind, key: &str) {
        self.kind_failed[kind.index()] += 1;
        self.errors.add(key);
    }

    fn record_service_input(&mut self) -> pb::ServiceRecordInput {
        pb::ServiceRecordInput {
            member_id: self.member(),
            activity_id: self.state.activity_id.clone(),
            org_unit_id: self.state.org_unit_id.clone(),
            started_at: Some(timestamp_ago(Duration::from_secs(3600))),
            minutes: 30,
        }
    }

    /// One unary operation (an accrual is two calls). Returns whether it succeeded.
    async fn unary(&mut self, planned: Planned) -> bool {
        let kind = planned.kind();
        let program_id = self.state.program_id.clone();
        let rid = self.rids.next_id();
        let request_id = rid.to_string();
        self.calls += 1;
        let outcome: Result<(), tonic::Status> = match planned {
            Planned::Redeem => {
                let req = pb::RedeemRequest {
                    request_id,
                    program_id,
                    merchant_id: self.merchant_id.clone(),
                    member: self.member_ref(),
                    amount: self.amount.clone(),
                };
                match self.c.pos.redeem(self.till.req(req)).await {
                    Ok(r) => {
                        let r = r.into_inner();
                        self.ack(r.receipt.as_ref(), rid);
                        if let Some(rc) = r.receipt {
                            push_capped(&mut self.refundable, rc.entry_id);
                        }
                        Ok(())
                    }
                    Err(s) => Err(s),
                }
            }
            Planned::Hold => {
                let req = pb::HoldRequest {
                    request_id,
                    program_id,
                    merchant_id: self.merchant_id.clone(),
                    member: self.member_ref(),
                    amount: self.amount.clone(),
                    ttl_ms: 0,
                };
                match self.c.pos.hold(self.till.req(req)).await {
                    Ok(r) => {
                        let r = r.into_inner();
                        self.ack(r.receipt.as_ref(), rid);
                        push_capped(&mut self.open_holds, r.hold_id);
                        Ok(())
                    }
                    Err(s) => Err(s),
                }
            }
            Planned::Capture(hold_id) => {
                let req = pb::CaptureRequest {
                    request_id,
                    program_id,
                    hold_id,
                    amount: None,
                };
                match self.c.pos.capture(self.till.req(req)).await {
                    Ok(r) => {
                        let r = r.into_inner();
                        self.ack(r.receipt.as_ref(), rid);
                        if let Some(rc) = r.receipt {
                            push_capped(&mut self.refundable, rc.entry_id);
                        }
                        Ok(())
                    }
                    Err(s) => Err(s),
                }
            }
            Planned::Release(hold_id) => {
                let req = pb::ReleaseRequest {
                    request_id,
                    program_id,
                    hold_id,
                };
                match self.c.pos.release(self.till.req(req)).await {
                    Ok(r) => {
                        self.ack(r.into_inner().receipt.as_ref(), rid);
                        Ok(())
                    }
                    Err(s) => Err(s),
                }
            }
            Planned::Refund(entry_id) => {
                let req = pb::RefundRequest {
                    request_id,
                    program_id,
                    entry_id,
                    amount: self.amount.clone(),
                };
                match self.c.pos.refund(self.till.req(req)).await {
                    Ok(r) => {
                        self.ack(r.into_inner().receipt.as_ref(), rid);
                        Ok(())
                    }
                    Err(s) => Err(s),
                }
            }
            Planned::Accrual => self.accrual(rid, request_id, program_id).await,
        };
        match outcome {
            Ok(()) => {
                self.kind_ok[kind.index()] += 1;
                true
            }
            Err(status) => {
                self.calls_failed += 1;
                self.fail(kind, &client::status_key(&status));
                false
            }
        }
    }

    async fn accrual(
        &mut self,
        rid: Uuid,
        request_id: String,
        program_id: String,
    ) -> Result<(), tonic::Status> {
        let req = pb::RecordServiceRequest {
            request_id,
            program_id: program_id.clone(),
            records: vec![self.record_service_input()],
        };
        let recorded = self
            .c
            .recording
            .record_service(self.admin.req(req))
            .await?
            .into_inner();
        self.ack(recorded.receipt.as_ref(), rid);
        let record_ids: Vec<String> = recorded.records.into_iter().map(|r| r.record_id).collect();
        let rid = self.rids.next_id();
        self.calls += 1;
        let req = pb::ApproveServiceRequest {
            request_id: rid.to_string(),
            program_id,
            record_ids,
        };
        let approved = self
            .c
            .recording
            .approve_service(self.admin.req(req))
            .await?
            .into_inner();
        self.ack(approved.receipt.as_ref(), rid);
        Ok(())
    }

    /// One Submit call of `size` operations (plus the approval of the previous call's
    /// recorded service). Returns the number of operations that succeeded.
    async fn submit(&mut self, size: usize) -> u64 {
        let mut operations = Vec::with_capacity(size + 1);
        let mut meta: Vec<(OpKind, Uuid)> = Vec::with_capacity(size + 1);
        if !self.pending_records.is_empty() {
            let rid = self.rids.next_id();
            operations.push(Op::ApproveService(pb::ApproveServiceRequest {
                request_id: rid.to_string(),
                program_id: String::new(),
                record_ids: std::mem::take(&mut self.pending_records),
            }));
            meta.push((OpKind::Accrual, rid));
        }
        while operations.len() < size.max(1) {
            let planned = self.plan();
            let rid = self.rids.next_id();
            let request_id = rid.to_string();
            meta.push((planned.kind(), rid));
            let op = match planned {
                Planned::Redeem => Op::Redeem(pb::RedeemRequest {
                    request_id,
                    program_id: String::new(),
                    merchant_id: self.merchant_id.clone(),
                    member: self.member_ref(),
                    amount: self.amount.clone(),
                }),
                Planned::Hold => Op::Hold(pb::HoldRequest {
                    request_id,
                    program_id: String::new(),
                    merchant_id: self.merchant_id.clone(),
                    member: self.member_ref(),
                    amount: self.amount.clone(),
                    ttl_ms: 0,
                }),
                Planned::Capture(hold_id) => Op::Capture(pb::CaptureRequest {
                    request_id,
                    program_id: String::new(),
                    hold_id,
                    amount: None,
                }),
                Planned::Release(hold_id) => Op::Release(pb::ReleaseRequest {
                    request_id,
                    program_id: String::new(),
                    hold_id,
                }),
                Planned::Refund(entry_id) => Op::Refund(pb::RefundRequest {
                    request_id,
                    program_id: String::new(),
                    entry_id,
                    amount: self.amount.clone(),
                }),
                Planned::Accrual => Op::RecordService(pb::RecordServiceRequest {
                    request_id,
                    program_id: String::new(),
                    records: vec![self.record_service_input()],
                }),
            };
            operations.push(op);
        }
        let uses_recording = meta.iter().any(|(k, _)| *k == OpKind::Accrual);
        let key = if uses_recording {
            &self.admin
        } else {
            &self.till
        };
        let req = key.req(pb::SubmitRequest {
            request_id: Uuid::new_v4().to_string(),
            program_id: self.state.program_id.clone(),
            operations: operations
                .into_iter()
                .map(|op| pb::SubmitOperation {
                    operation: Some(op),
                })
                .collect(),
        });
        self.calls += 1;
        let response = match self.c.pos.submit(req).await {
            Ok(r) => r.into_inner(),
            Err(status) => {
                self.calls_failed += 1;
                let key = client::status_key(&status);
                for (kind, _) in &meta {
                    self.fail(*kind, &key);
                }
                return 0;
            }
        };
        let mut ok = 0;
        for (i, (kind, rid)) in meta.iter().enumerate() {
            let result = response.results.get(i).and_then(|r| r.result.as_ref());
            let receipt = match result {
                None => {
                    self.fail(*kind, "Internal/MISSING_RESULT");
                    continue;
                }
                Some(Res::Error(e)) => {
                    self.fail(*kind, &client::operation_error_key(e));
                    continue;
                }
                Some(Res::Redeem(r)) => {
                    if let Some(rc) = &r.receipt {
                        push_capped(&mut self.refundable, rc.entry_id.clone());
                    }
                    r.receipt.as_ref()
                }
                Some(Res::Hold(r)) => {
                    push_capped(&mut self.open_holds, r.hold_id.clone());
                    r.receipt.as_ref()
                }
                Some(Res::Capture(r)) => {
                    if let Some(rc) = &r.receipt {
                        push_capped(&mut self.refundable, rc.entry_id.clone());
                    }
                    r.receipt.as_ref()
                }
                Some(Res::Release(r)) => r.receipt.as_ref(),
                Some(Res::Refund(r)) => r.receipt.as_ref(),
                Some(Res::RecordService(r)) => {
                    self.pending_records
                        .extend(r.records.iter().map(|x| x.record_id.clone()));
                    r.receipt.as_ref()
                }
                Some(Res::ApproveService(r)) => r.receipt.as_ref(),
                Some(_) => {
                    self.fail(*kind, "Internal/UNEXPECTED_RESULT");
                    continue;
                }
            };
            let receipt = receipt.cloned();
            self.ack(receipt.as_ref(), *rid);
            self.kind_ok[kind.index()] += 1;
            ok += 1;
        }
        ok
    }

    /// One unit of work: a unary operation or a Submit call.
    async fn step(&mut self, batch: usize) -> Option<OpKind> {
        if batch > 0 {
            self.submit(batch).await;
            None
        } else {
            let planned = self.plan();
            let kind = planned.kind();
            self.unary(planned).await;
            Some(kind)
        }
    }

    fn record(&mut self, kind: Option<OpKind>, latency: Duration) {
        self.latency.record(latency);
        if let Some(kind) = kind {
            self.kind_latency[kind.index()].record(latency);
        }
    }
}

/// Hands out scheduled send times at `period_ps` picoseconds apart from `start` until
/// `end`, sleeping on an OS thread (sub-millisecond precision).
fn pace(tx: mpsc::UnboundedSender<Instant>, start: Instant, end: Instant, period_ps: u128) {
    let mut k: u128 = 0;
    loop {
        let offset_ns = u64::try_from(k * period_ps / 1000).unwrap_or(u64::MAX);
        let Some(t) = start.checked_add(Duration::from_nanos(offset_ns)) else {
            return;
        };
        if t >= end {
            return;
        }
        let now = Instant::now();
        if t > now {
            std::thread::sleep(t - now);
        }
        if tx.send(t).is_err() {
            return;
        }
        k += 1;
    }
}

/// Runs the load described by `opts` against the program in `state`.
pub async fn run(opts: &LoadOptions, state: &SeedState) -> anyhow::Result<RunOutput> {
    let channels: Vec<Channel> = client::connect(&opts.addr, opts.channels).await?;
    let admin = Key::new(&opts.admin_key)?;
    anyhow::ensure!(
        !state.merchants.is_empty(),
        "the seed state has no merchants"
    );
    let tills = state
        .merchants
        .iter()
        .map(|m| Key::new(&m.api_key))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let members = opts.members.map_or(state.members, |m| m.min(state.members));
    anyhow::ensure!(members > 0, "the seed state has no members");
    let state = Arc::new(state.clone());
    let concurrency = opts.concurrency.max(1);
    let batch = opts.batch;
    let run_prefix = random_u64();

    let started_wall = SystemTime::now();
    let start = Instant::now() + Duration::from_millis(20);
    let end = start + opts.duration;
    // In open loop, give up on the backlog this long after the end.
    let hard_stop = end + (opts.duration / 2).max(Duration::from_secs(1));

    let (queue, pacer) = match opts.rate {
        Some(rate) => {
            let per_slot = if batch > 0 { batch as f64 } else { 1.0 };
            #[allow(
                clippy::float_arithmetic,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss
            )]
            let period_ps = (1e12 * per_slot / rate).max(1.0) as u128;
            let (tx, rx) = mpsc::unbounded_channel();
            let pacer = std::thread::Builder::new()
                .name("points-load-pacer".to_owned())
                .spawn(move || pace(tx, start, end, period_ps))
                .context("starting the pacer thread")?;
            (Some(Arc::new(Mutex::new(rx))), Some(pacer))
        }
        None => (None, None),
    };

    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..concurrency {
        let m = &state.merchants[w % state.merchants.len()];
        let mut worker = Worker {
            c: Clients::new(channels[w % channels.len()].clone()),
            admin: admin.clone(),
            till: tills[w % tills.len()].clone(),
            merchant_id: m.merchant_id.clone(),
            state: state.clone(),
            members,
            amount: opts.amount.clone(),
            mix: opts.mix.clone(),
            rng: SplitMix::new(run_prefix ^ (w as u64).wrapping_mul(0x9e37_79b9)),
            rids: RequestIds::new(run_prefix, w as u64),
            open_holds: VecDeque::new(),
            refundable: VecDeque::new(),
            pending_records: Vec::new(),
            latency: Latency::new(),
            service: Latency::new(),
            kind_latency: vec![Latency::new(); 6],
            kind_ok: [0; 6],
            kind_failed: [0; 6],
            errors: ErrorCounts::default(),
            acked: Vec::new(),
            calls: 0,
            calls_failed: 0,
            duplicates: 0,
            dropped: 0,
        };
        let queue = queue.clone();
        tasks.spawn(async move {
            tokio::time::sleep_until(start.into()).await;
            match queue {
                None => {
                    while Instant::now() < end {
                        let sent = Instant::now();
                        let kind = worker.step(batch).await;
                        worker.record(kind, sent.elapsed());
                    }
                }
                Some(queue) => loop {
                    let slot = {
                        let mut rx = queue.lock().await;
                        rx.recv().await
                    };
                    let Some(scheduled) = slot else { break };
                    let sent = Instant::now();
                    if sent > hard_stop {
                        // The caller counts what is left in the queue as unsent.
                        worker.dropped += 1;
                        queue.lock().await.close();
                        break;
                    }
                    let kind = worker.step(batch).await;
                    let done = Instant::now();
                    worker.record(kind, done.saturating_duration_since(scheduled));
                    worker.service.record(done - sent);
                },
            }
            (worker, Instant::now())
        });
    }

    let mut workers = Vec::with_capacity(concurrency);
    let mut last = start;
    while let Some(joined) = tasks.join_next().await {
        let (worker, finished) = joined.context("a load worker panicked")?;
        last = last.max(finished);
        workers.push(worker);
    }
    let mut unsent: u64 = 0;
    if let Some(queue) = &queue {
        let mut rx = queue.lock().await;
        rx.close();
        while rx.try_recv().is_ok() {
            unsent += 1;
        }
    }
    if let Some(pacer) = pacer {
        let _ = tokio::task::spawn_blocking(move || pacer.join()).await;
    }
    let elapsed = last.saturating_duration_since(start);

    let mut latency = Latency::new();
    let mut service = Latency::new();
    let mut kind_latency = vec![Latency::new(); 6];
    let mut kind_ok = [0u64; 6];
    let mut kind_failed = [0u64; 6];
    let mut errors = ErrorCounts::default();
    let mut acked = Vec::new();
    let (mut calls, mut calls_failed, mut duplicates) = (0u64, 0u64, 0u64);
    for w in &mut workers {
        latency.merge(&w.latency);
        service.merge(&w.service);
        for (i, h) in w.kind_latency.iter().enumerate() {
            kind_latency[i].merge(h);
        }
        for i in 0..6 {
            kind_ok[i] += w.kind_ok[i];
            kind_failed[i] += w.kind_failed[i];
        }
        errors.merge(&w.errors);
        acked.append(&mut w.acked);
        calls += w.calls;
        calls_failed += w.calls_failed;
        duplicates += w.duplicates;
        unsent += w.dropped;
    }
    acked.sort_unstable();
    let ops_ok: u64 = kind_ok.iter().sum();
    let ops_failed: u64 = kind_failed.iter().sum();
    let mut per_kind = BTreeMap::new();
    for kind in OpKind::ALL {
        let i = kind.index();
        if kind_ok[i] + kind_failed[i] > 0 {
            per_kind.insert(
                kind.name().to_owned(),
                KindReport {
                    ok: kind_ok[i],
                    failed: kind_failed[i],
                    latency: kind_latency[i].summary(),
                },
            );
        }
    }
    let report = RunReport {
        mode: if opts.rate.is_some() {
            "open"
        } else {
            "closed"
        }
        .to_owned(),
        call: if batch > 0 { "submit" } else { "unary" }.to_owned(),
        offered_rate: opts.rate,
        concurrency,
        channels: channels.len(),
        batch,
        mix: opts.mix.to_string(),
        members,
        duration_s: opts.duration.as_secs_f64(),
        elapsed_s: elapsed.as_secs_f64(),
        calls,
        calls_failed,
        ops_ok,
        ops_failed,
        entries_acked: acked.len() as u64,
        throughput_ops_s: per_second(ops_ok, elapsed).round(),
        entries_per_s: per_second(acked.len() as u64, elapsed).round(),
        calls_per_s: per_second(calls, elapsed).round(),
        latency: latency.summary(),
        service_latency: opts.rate.map(|_| service.summary()),
        unsent,
        per_kind,
        unexpected_errors: errors.unexpected(EXPECTED_REJECTIONS),
        errors,
        duplicates,
        started_at_unix_ms: started_wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0),
    };
    Ok(RunOutput {
        report,
        acked,
        started: started_wall,
    })
}
