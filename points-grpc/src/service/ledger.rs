//! The `Ledger` service: entries, statements, live streams, chain verification, audits.
//!
//! List calls read at most [`SCAN_BUDGET`] entries per call, in pages from the engine, so
//! a selective filter over a long journal answers promptly with a partial page and a
//! token to go on.

use super::scope::{may_read, Filter};
use super::{caller, token, Ctx, DEFAULT_PAGE, MAX_PAGE};
use crate::auth::Scope;
use crate::convert::{
    account_to_pb, entry_to_pb, kind_to_pb, kinds, page_size, rejection_status, status,
    timestamp_from_pb, timestamp_to_pb, unit_amount_str, Fields,
};
use crate::pb;
use crate::pb::ledger_server::Ledger as LedgerApi;
use points_core::{
    Account, AuditRule, Entry, EntryId, MemberId, MerchantId, OrgUnitId, ProgramId, Rejection,
    Timestamp, Unit,
};
use std::pin::Pin;
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::Stream;
use tonic::{Code, Response, Status};

/// Entries read per engine page.
const READ_PAGE: usize = 1000;
/// Entries one list call reads at most.
pub const SCAN_BUDGET: u64 = 20_000;

/// Serves `points.v1.Ledger`.
pub struct LedgerService {
    ctx: Ctx,
}

impl LedgerService {
    /// The service over `ctx`.
    pub fn new(ctx: Ctx) -> Self {
        LedgerService { ctx }
    }
}

fn opt_time(
    f: &mut Fields,
    field: &str,
    value: Option<&prost_types::Timestamp>,
) -> Option<Timestamp> {
    let value = value?;
    let t = timestamp_from_pb(value);
    if t.is_none() {
        f.violation(field, "time is out of range");
    }
    t
}

fn not_found() -> Status {
    rejection_status(&Rejection::UnknownEntry)
}

fn rule_name(rule: AuditRule) -> &'static str {
    match rule {
        AuditRule::Balanced => "BALANCED",
        AuditRule::Chain => "CHAIN",
        AuditRule::NonNegative => "NON_NEGATIVE",
        AuditRule::HoldsWithinBalance => "HOLDS_WITHIN_BALANCE",
        AuditRule::LotsMatchBalance => "LOTS_MATCH_BALANCE",
        AuditRule::PostingsMatchState => "POSTINGS_MATCH_STATE",
        AuditRule::ReplayEqual => "REPLAY_EQUAL",
        AuditRule::Reconciled => "RECONCILED",
    }
}

impl LedgerService {
    async fn page(
        &self,
        program: ProgramId,
        from: u64,
        limit: usize,
    ) -> Result<Vec<Entry>, Status> {
        self.ctx
            .engine
            .entries(program, from, limit)
            .await
            .map_err(Status::from)
    }

    /// The first sequence whose entry is at or after `t` (entries are in time order).
    async fn first_at_or_after(&self, program: ProgramId, t: Timestamp) -> Result<u64, Status> {
        let mut lo = 0u64;
        let mut hi = self.ctx.read(program, |l| l.next_sequence())?;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let at = self.page(program, mid, 1).await?.first().map(Entry::at);
            match at {
                Some(at) if at < t => lo = mid + 1,
                _ => hi = mid,
            }
        }
        Ok(lo)
    }
}

type EntryStream = Pin<Box<dyn Stream<Item = Result<pb::Entry, Status>> + Send>>;

#[tonic::async_trait]
impl LedgerApi for LedgerService {
    async fn get_entry(
        &self,
        request: tonic::Request<pb::GetEntryRequest>,
    ) -> Result<Response<pb::Entry>, Status> {
        use pb::get_entry_request::Key;
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let scope = principal.scope(program)?;
        let req = request.into_inner();
        let entry = match req.key {
            None => {
                let mut f = Fields::default();
                f.violation("key", "required: entry_id or sequence");
                return Err(f.status());
            }
            Some(Key::EntryId(id)) => {
                let mut f = Fields::default();
                let id = f.id::<EntryId>("entry_id", &id);
                f.finish()?;
                let id = id.ok_or_else(|| f.status())?;
                self.ctx
                    .engine
                    .entry_by_id(program, id)
                    .await
                    .map_err(Status::from)?
            }
            Some(Key::Sequence(sequence)) => self
                .page(program, sequence, 1)
                .await?
                .into_iter()
                .find(|e| e.sequence() == sequence),
        };
        let entry = entry.ok_or_else(not_found)?;
        let (visible, scale) = self
            .ctx
            .read(program, |l| (may_read(scope, &entry, l), l.spec().scale()))?;
        if !visible {
            return Err(not_found());
        }
        Ok(Response::new(entry_to_pb(program, &entry, scale)))
    }

    async fn get_statement(
        &self,
        request: tonic::Request<pb::GetStatementRequest>,
    ) -> Result<Response<pb::GetStatementResponse>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let scope = principal.scope(program)?;
        let req = request.into_inner();
        let size = page_size(req.page_size, DEFAULT_PAGE, MAX_PAGE)?;
        let mut f = Fields::default();
        let member = f.id::<MemberId>("member_id", &req.member_id);
        let from = opt_time(&mut f, "from", req.from.as_ref());
        let to = opt_time(&mut f, "to", req.to.as_ref());
        let unit = match req.unit {
            0 => Some(Unit::Points),
            v => match f.enumeration::<pb::Unit>("unit", v) {
                Some(pb::Unit::CreditMinutes) => Some(Unit::CreditMinutes),
                Some(pb::Unit::HonourMinutes) => Some(Unit::HonourMinutes),
                Some(_) => Some(Unit::Points),
                None => None,
            },
        };
        f.finish()?;
        let (Some(member), Some(unit)) = (member, unit) else {
            return Err(f.status());
        };
        let (home, scale) = self.ctx.read(program, |l| {
            (l.member(member).map(|m| m.home), l.spec().scale())
        })?;
        let home = home.ok_or_else(|| rejection_status(&Rejection::UnknownMember))?;
        match scope {
            Scope::All => {}
            Scope::OrgUnit(root) => {
                if !self.ctx.read(program, |l| l.is_within(home, root))? {
                    return Err(rejection_status(&Rejection::ActorNotAllowed));
                }
            }
            Scope::Merchant(_) => {
                return Err(status(
                    Code::PermissionDenied,
                    "PERMISSION_DENIED",
                    "merchant keys may not read member statements",
                ))
            }
        }
        // Token position: next sequence, running balance, opening balance (or i64::MIN
        // while the start of the range has not been reached).
        let binding = format!("statement {program} {member} {from:?} {to:?} {unit:?}");
        let (mut next, mut balance, mut opening) =
            match token::decode(binding.as_bytes(), &req.page_token)? {
                None => (0u64, 0i64, None),
                Some(bytes) if bytes.len() == 24 => {
                    let word = |i: usize| {
                        let mut b = [0u8; 8];
                        b.copy_from_slice(&bytes[i * 8..i * 8 + 8]);
                        b
                    };
                    let opening = i64::from_le_bytes(word(2));
                    (
                        u64::from_le_bytes(word(0)),
                        i64::from_le_bytes(word(1)),
                        (opening != i64::MIN).then_some(opening),
                    )
                }
                Some(_) => {
                    let mut f = Fields::default();
                    f.violation("page_token", "not a page token of this request");
                    return Err(f.status());
                }
            };
        let account = Account::Member(member);
        let mut lines = Vec::new();
        let mut scanned = 0u64;
        let mut done = false;
        'scan: while scanned < SCAN_BUDGET && lines.len() < size {
            let page = self.page(program, next, READ_PAGE).await?;
            if page.is_empty() {
                done = true;
                break;
            }
            for entry in page {
                if scanned >= SCAN_BUDGET || lines.len() >= size {
                    break 'scan;
                }
                if to.is_some_and(|to| entry.at() >= to) {
                    done = true;
                    break 'scan;
                }
                scanned += 1;
                next = entry.sequence() + 1;
                let postings = entry.postings();
                let change: i64 = postings
                    .iter()
                    .filter(|p| p.account == account && p.unit == unit)
                    .map(|p| p.amount)
                    .sum();
                let before = from.is_some_and(|from| entry.at() < from);
                if !before && opening.is_none() {
                    opening = Some(balance);
                }
                if change == 0 {
                    continue;
                }
                balance = balance.saturating_add(change);
                if before {
                    continue;
                }
                let others: Vec<Account> = postings
                    .iter()
                    .filter(|p| p.account != account && p.unit == unit)
                    .map(|p| p.account)
                    .collect();
                let counterparty = match others.first() {
                    Some(first) if others.iter().all(|a| a == first) => Some(account_to_pb(first)),
                    _ => None,
                };
                lines.push(pb::StatementLine {
                    sequence: entry.sequence(),
                    entry_id: entry.id().to_string(),
                    time: Some(timestamp_to_pb(entry.at())),
                    kind: kind_to_pb(entry.kind()) as i32,
                    amount: unit_amount_str(unit, change, scale),
                    balance: unit_amount_str(unit, balance, scale),
                    counterparty,
                    corrects_entry_id: entry.corrects().map(|e| e.to_string()).unwrap_or_default(),
                });
            }
        }
        if done && opening.is_none() {
            opening = Some(balance);
        }
        let next_page_token = if done {
            String::new()
        } else {
            let mut position = Vec::with_capacity(24);
            position.extend_from_slice(&next.to_le_bytes());
            position.extend_from_slice(&balance.to_le_bytes());
            position.extend_from_slice(&opening.unwrap_or(i64::MIN).to_le_bytes());
            token::encode(binding.as_bytes(), &position)
        };
        Ok(Response::new(pb::GetStatementResponse {
            member_id: member.to_string(),
            unit: crate::convert::unit_to_pb(unit) as i32,
            opening_balance: opening
                .map(|o| unit_amount_str(unit, o, scale))
                .unwrap_or_default(),
            closing_balance: if done {
                unit_amount_str(unit, balance, scale)
            } else {
                String::new()
            },
            lines,
            next_page_token,
        }))
    }

    async fn list_entries(
        &self,
        request: tonic::Request<pb::ListEntriesRequest>,
    ) -> Result<Response<pb::ListEntriesResponse>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let scope = principal.scope(program)?;
        let req = request.into_inner();
        let size = page_size(req.page_size, DEFAULT_PAGE, MAX_PAGE)?;
        let mut f = Fields::default();
        let org_unit = f.opt_id::<OrgUnitId>("org_unit_id", &req.org_unit_id);
        let member = f.opt_id::<MemberId>("member_id", &req.member_id);
        let merchant = f.opt_id::<MerchantId>("merchant_id", &req.merchant_id);
        let kinds = kinds(&mut f, "kinds", &req.kinds);
        let from = opt_time(&mut f, "from", req.from.as_ref());
        let to = opt_time(&mut f, "to", req.to.as_ref());
        f.finish()?;
        let (Ok(org_unit), Ok(member), Ok(merchant)) = (org_unit, member, merchant) else {
            return Err(f.status());
        };
        let mut filter = Filter {
            org_unit,
            member,
            merchant,
            kinds,
            from,
            to,
        };
        self.ctx
            .read(program, |l| filter.narrow(scope, l))?
            .map_err(|m| status(Code::PermissionDenied, "PERMISSION_DENIED", m))?;
        let binding = format!("entries {program} {filter:?}");
        let mut next = match token::decode_u64(binding.as_bytes(), &req.page_token)? {
            Some(n) => n,
            None => match from {
                Some(from) => self.first_at_or_after(program, from).await?,
                None => 0,
            },
        };
        let scale = self.ctx.scale(program)?;
        let mut entries = Vec::new();
        let mut scanned = 0u64;
        let mut done = false;
        'scan: while scanned < SCAN_BUDGET && entries.len() < size {
            let page = self.page(program, next, READ_PAGE).await?;
            if page.is_empty() {
                done = true;
                break;
            }
            let keep = self.ctx.read(program, |l| {
                page.iter()
                    .map(|e| filter.matches(e, l))
                    .collect::<Vec<_>>()
            })?;
            for (entry, keep) in page.iter().zip(keep) {
                if scanned >= SCAN_BUDGET || entries.len() >= size {
                    break 'scan;
                }
                if to.is_some_and(|to| entry.at() >= to) {
                    done = true;
                    break 'scan;
                }
                scanned += 1;
                next = entry.sequence() + 1;
                if keep {
                    entries.push(entry_to_pb(program, entry, scale));
                }
            }
        }
        if !done && entries.len() >= size {
            // A full page: done when nothing follows.
            done = self.page(program, next, 1).await?.is_empty();
        }
        Ok(Response::new(pb::ListEntriesResponse {
            entries,
            next_page_token: if done {
                String::new()
            } else {
                token::encode_u64(binding.as_bytes(), next)
            },
        }))
    }

    type WatchEntriesStream = EntryStream;

    async fn watch_entries(
        &self,
        request: tonic::Request<pb::WatchEntriesRequest>,
    ) -> Result<Response<Self::WatchEntriesStream>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let scope = principal.scope(program)?;
        let req = request.into_inner();
        let mut f = Fields::default();
        let kinds = kinds(&mut f, "kinds", &req.kinds);
        f.finish()?;
        let mut filter = Filter {
            kinds,
            ..Filter::default()
        };
        self.ctx
            .read(program, |l| filter.narrow(scope, l))?
            .map_err(|m| status(Code::PermissionDenied, "PERMISSION_DENIED", m))?;
        // Subscribe before reading the store, so nothing appended meanwhile is missed.
        let mut live = self.ctx.engine.subscribe(program).map_err(Status::from)?;
        let scale = self.ctx.scale(program)?;
        let ctx = self.ctx.clone();
        let mut shutdown = self.ctx.shutdown.clone();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<pb::Entry, Status>>(256);
        tokio::spawn(async move {
            let mut next = req.from_sequence;
            // Sends stored entries from `next` until the store has no more.
            async fn catch_up(
                ctx: &Ctx,
                program: ProgramId,
                filter: &Filter,
                scale: points_core::Scale,
                next: &mut u64,
                tx: &tokio::sync::mpsc::Sender<Result<pb::Entry, Status>>,
            ) -> Result<(), ()> {
                loop {
                    let page = match ctx.engine.entries(program, *next, READ_PAGE).await {
                        Ok(p) => p,
                        Err(e) => {
                            let _ = tx.send(Err(Status::from(e))).await;
                            return Err(());
                        }
                    };
                    if page.is_empty() {
                        return Ok(());
                    }
                    let keep = ctx
                        .engine
                        .read(program, |l| {
                            page.iter()
                                .map(|e| filter.matches(e, l))
                                .collect::<Vec<_>>()
                        })
                        .unwrap_or_default();
                    for (entry, keep) in page.iter().zip(keep) {
                        *next = entry.sequence() + 1;
                        if keep
                            && tx
                                .send(Ok(entry_to_pb(program, entry, scale)))
                                .await
                                .is_err()
                        {
                            return Err(());
                        }
                    }
                }
            }
            if catch_up(&ctx, program, &filter, scale, &mut next, &tx)
                .await
                .is_err()
            {
                return;
            }
            loop {
                tokio::select! {
                    () = tx.closed() => return,
                    _ = shutdown.changed() => return,
                    received = live.recv() => match received {
                        Ok(entry) => {
                            if entry.sequence() < next {
                                continue;
                            }
                            if entry.sequence() > next {
                                // A gap: read it (and this entry) from the store.
                                if catch_up(&ctx, program, &filter, scale, &mut next, &tx).await.is_err() {
                                    return;
                                }
                                continue;
                            }
                            next = entry.sequence() + 1;
                            let keep = ctx.engine.read(program, |l| filter.matches(&entry, l)).unwrap_or(false);
                            if keep && tx.send(Ok(entry_to_pb(program, &entry, scale))).await.is_err() {
                                return;
                            }
                        }
                        Err(RecvError::Lagged(_)) => {
                            if catch_up(&ctx, program, &filter, scale, &mut next, &tx).await.is_err() {
                                return;
                            }
                        }
                        Err(RecvError::Closed) => return,
                    },
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn verify_chain(
        &self,
        request: tonic::Request<pb::VerifyChainRequest>,
    ) -> Result<Response<pb::VerifyChainResponse>, Status> {
        let (_, program) = caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let report = self
            .ctx
            .engine
            .verify_chain(program)
            .await
            .map_err(Status::from)?;
        Ok(Response::new(pb::VerifyChainResponse {
            ok: report.first_bad.is_none(),
            entries_checked: report.entries_checked,
            head_sequence: report.entries_checked.saturating_sub(1),
            head_hash: report.head_hash.to_hex(),
            first_bad_sequence: report.first_bad.as_ref().map(|(s, _)| *s),
            message: report.first_bad.map(|(_, m)| m).unwrap_or_default(),
        }))
    }

    async fn audit(
        &self,
        request: tonic::Request<pb::AuditRequest>,
    ) -> Result<Response<pb::AuditResponse>, Status> {
        let (_, program) = caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let report = self.ctx.engine.audit(program).await.map_err(Status::from)?;
        Ok(Response::new(pb::AuditResponse {
            ok: report.is_clean(),
            entries_checked: report.entries_checked,
            breaches: report
                .breaches
                .iter()
                .map(|b| pb::AuditBreach {
                    rule: rule_name(b.rule).to_owned(),
                    sequence: b.sequence,
                    message: b.message.clone(),
                })
                .collect(),
            head_hash: report.head_hash.map(|h| h.to_hex()).unwrap_or_default(),
        }))
    }
}
