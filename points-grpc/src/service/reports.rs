//! The `Reports` service: roll-ups and rankings ([`points_core::rollup`]), signed
//! service-record certificates ([`points_core::certificate`]) and the dry run of bulk
//! imports ([`points_core::import`]). Read-only: every answer is computed from the durable
//! journal (read page by page from the store) or from the live ledger, and nothing is
//! written.

use super::{caller, Ctx};
use crate::auth::Scope;
use crate::convert::{points_str, rejection_status, status, timestamp_to_pb, Fields};
use crate::pb;
use crate::pb::reports_server::Reports;
use points_core::certificate::{CertificateBuilder, CertificateError};
use points_core::import::check_service_records;
use points_core::rollup::{Period, RankBy, Rollup, RollupBuilder, Stats};
use points_core::{
    ActivityId, Entry, MemberId, OrgUnitId, ProgramId, Rejection, Scale, ServiceInput, MAX_BATCH,
};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use tonic::{Code, Request, Response, Status};

/// Entries read from the store per page.
const JOURNAL_PAGE: usize = 8192;
/// The longest ranking one call returns.
const MAX_TOP: u32 = 1000;

/// How many final roll-ups the service keeps.
const CACHED_ROLLUPS: usize = 256;

/// Serves `points.v1.Reports`.
pub struct ReportsService {
    ctx: Ctx,
    /// Roll-ups of periods the journal has already run past: final, so they are computed
    /// once (the public disclosure asks for the same closed periods again and again).
    cache: Mutex<HashMap<(ProgramId, Period), Arc<Rollup>>>,
}

impl ReportsService {
    /// The service over `ctx`.
    pub fn new(ctx: Ctx) -> Self {
        ReportsService {
            ctx,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Feeds the durable journal, from its first entry, to `push` until it returns
    /// `Ok(false)` or the journal ends.
    async fn read_journal<E>(
        &self,
        program: ProgramId,
        mut push: impl FnMut(&Entry) -> Result<bool, E>,
    ) -> Result<Result<(), E>, Status> {
        let mut from = 0u64;
        loop {
            let page = self
                .ctx
                .engine
                .entries(program, from, JOURNAL_PAGE)
                .await
                .map_err(Status::from)?;
            if page.is_empty() {
                return Ok(Ok(()));
            }
            for entry in &page {
                match push(entry) {
                    Ok(true) => {}
                    Ok(false) => return Ok(Ok(())),
                    Err(e) => return Ok(Err(e)),
                }
            }
            from += page.len() as u64;
        }
    }

    /// The roll-up of `period` from the durable journal (or the cache, once final).
    async fn rollup(&self, program: ProgramId, period: Period) -> Result<Arc<Rollup>, Status> {
        let key = (program, period);
        if let Some(hit) = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Ok(hit.clone());
        }
        let mut builder: Option<RollupBuilder> = None;
        let read = self
            .read_journal(program, |entry| {
                let b = match &mut builder {
                    Some(b) => b,
                    None => builder.insert(RollupBuilder::new(entry, period)?),
                };
                b.push(entry)
            })
            .await?;
        let rollup = read.and_then(|()| {
            builder
                .ok_or(points_core::rollup::RollupError::MissingGenesis)?
                .finish()
        });
        let rollup =
            Arc::new(rollup.map_err(|e| status(Code::Internal, "INTERNAL", e.to_string()))?);
        if rollup.is_complete() {
            let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
            if cache.len() >= CACHED_ROLLUPS {
                cache.clear();
            }
            cache.insert(key, rollup.clone());
        }
        Ok(rollup)
    }
}

/// Parses the wire form of a period.
fn period(fields: &mut Fields, field: &str, text: &str) -> Option<Period> {
    match text.parse::<Period>() {
        Ok(period) => Some(period),
        Err(e) => {
            fields.violation(field, e.to_string());
            None
        }
    }
}

fn figures(stats: &Stats, scale: Scale) -> pb::RollupFigures {
    pb::RollupFigures {
        points_earned: points_str(stats.points_earned, scale),
        credit_minutes: stats.credit_minutes.get(),
        honour_minutes: stats.honour_minutes.get(),
        records: stats.records,
        points_redeemed: points_str(stats.points_redeemed, scale),
        points_donated: points_str(stats.points_donated, scale),
        points_granted: points_str(stats.points_granted, scale),
    }
}

fn denied(message: &str) -> Status {
    status(Code::PermissionDenied, "PERMISSION_DENIED", message)
}

impl ReportsService {
    /// The subtree a caller asks about, checked against its key's scope: `None` for the
    /// whole programme (unscoped keys only).
    fn subtree(
        &self,
        program: ProgramId,
        scope: Scope,
        fields: &mut Fields,
        requested: &str,
    ) -> Result<Option<OrgUnitId>, Status> {
        let requested = if requested.is_empty() {
            None
        } else {
            fields.id::<OrgUnitId>("org_unit_id", requested)
        };
        fields.finish()?;
        if let Some(unit) = requested {
            if self.ctx.read(program, |l| l.org_unit(unit).is_none())? {
                return Err(rejection_status(&Rejection::UnknownOrgUnit));
            }
        }
        match scope {
            Scope::All => Ok(requested),
            Scope::OrgUnit(root) => match requested {
                None => Ok(Some(root)),
                Some(unit) if self.ctx.read(program, |l| l.is_within(unit, root))? => {
                    Ok(Some(unit))
                }
                Some(_) => Err(rejection_status(&Rejection::ActorNotAllowed)),
            },
            Scope::Merchant(_) => Err(denied("merchant keys may not read roll-ups")),
        }
    }
}

#[tonic::async_trait]
impl Reports for ReportsService {
    async fn get_rollup(
        &self,
        request: Request<pb::GetRollupRequest>,
    ) -> Result<Response<pb::GetRollupResponse>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let scope = principal.scope(program)?;
        let req = request.into_inner();
        let mut f = Fields::default();
        let period = period(&mut f, "period", &req.period);
        let root = self.subtree(program, scope, &mut f, &req.org_unit_id)?;
        let Some(period) = period else {
            return Err(f.status());
        };
        let rollup = self.rollup(program, period).await?;
        let (scale, names) = self.ctx.read(program, |l| {
            let names: std::collections::HashMap<OrgUnitId, String> =
                l.org_units().into_iter().map(|u| (u.id, u.name)).collect();
            (l.spec().scale(), names)
        })?;
        // The units reported: the subtree under `root`, or every unit.
        let included: BTreeSet<OrgUnitId> = match root {
            None => rollup.units().map(|u| u.id).collect(),
            Some(root) => {
                let mut out = BTreeSet::new();
                let mut stack = vec![root];
                while let Some(id) = stack.pop() {
                    if let Some(unit) = rollup.unit(id) {
                        if out.insert(id) {
                            stack.extend(unit.children.iter().copied());
                        }
                    }
                }
                out
            }
        };
        let units = included
            .iter()
            .filter_map(|id| rollup.unit(*id))
            .map(|u| pb::UnitRollup {
                org_unit_id: u.id.to_string(),
                parent_id: u.parent.map(|p| p.to_string()).unwrap_or_default(),
                name: names.get(&u.id).cloned().unwrap_or_default(),
                own: Some(figures(&u.own, scale)),
                total: Some(figures(&u.total, scale)),
            })
            .collect();
        let merchants = rollup
            .merchants()
            .filter(|m| included.contains(&m.org_unit))
            .map(|m| pb::MerchantRollup {
                merchant_id: m.id.to_string(),
                org_unit_id: m.org_unit.to_string(),
                points_redeemed: points_str(m.points_redeemed, scale),
                redemptions: m.redemptions,
            })
            .collect();
        let pools = rollup
            .pools()
            .filter(|p| included.contains(&p.org_unit))
            .map(|p| pb::PoolRollup {
                pool_id: p.id.to_string(),
                org_unit_id: p.org_unit.to_string(),
                points_donated: points_str(p.points_donated, scale),
                points_granted: points_str(p.points_granted, scale),
            })
            .collect();
        Ok(Response::new(pb::GetRollupResponse {
            period: period.to_string(),
            start: Some(timestamp_to_pb(rollup.start())),
            end: Some(timestamp_to_pb(rollup.end())),
            program: (scope == Scope::All).then(|| figures(rollup.program(), scale)),
            units,
            merchants,
            pools,
            entries_read: rollup.entries_read(),
        }))
    }

    async fn get_ranking(
        &self,
        request: Request<pb::GetRankingRequest>,
    ) -> Result<Response<pb::GetRankingResponse>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let scope = principal.scope(program)?;
        let req = request.into_inner();
        let mut f = Fields::default();
        let period = period(&mut f, "period", &req.period);
        let top_n = match req.top_n {
            0 => 10,
            n if n > MAX_TOP => {
                f.violation("top_n", format!("at most {MAX_TOP}"));
                0
            }
            n => n,
        };
        let by = match req.rank_by {
            0 | 1 => RankBy::Points,
            2 => RankBy::Minutes,
            _ => {
                f.violation("rank_by", "unknown value");
                RankBy::Points
            }
        };
        let unit = self.subtree(program, scope, &mut f, &req.org_unit_id)?;
        let Some(period) = period else {
            return Err(f.status());
        };
        let rollup = self.rollup(program, period).await?;
        let scale = self.ctx.scale(program)?;
        let n = usize::try_from(top_n).unwrap_or(10);
        let ranked = match unit {
            Some(unit) => rollup.top_by(unit, n, by),
            None => rollup.top_overall(n, by),
        };
        Ok(Response::new(pb::GetRankingResponse {
            period: period.to_string(),
            org_unit_id: unit.map(|u| u.to_string()).unwrap_or_default(),
            members: ranked
                .iter()
                .zip(1u32..)
                .map(|((member, stats), rank)| pb::RankedMember {
                    rank,
                    member_id: member.to_string(),
                    figures: Some(figures(stats, scale)),
                })
                .collect(),
        }))
    }

    async fn issue_certificate(
        &self,
        request: Request<pb::IssueCertificateRequest>,
    ) -> Result<Response<pb::IssueCertificateResponse>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let actor = principal.actor(program)?;
        let req = request.into_inner();
        let mut f = Fields::default();
        let member = f.id::<MemberId>("member_id", &req.member_id);
        let period = period(&mut f, "period", &req.period);
        f.finish()?;
        let (Some(member), Some(period)) = (member, period) else {
            return Err(f.status());
        };
        let home = self
            .ctx
            .read(program, |l| l.member(member).map(|m| m.home))?
            .ok_or_else(|| rejection_status(&Rejection::UnknownMember))?;
        if let points_core::Actor::Recorder { org_unit, .. } = actor {
            if !self.ctx.read(program, |l| l.is_within(home, org_unit))? {
                return Err(rejection_status(&Rejection::ActorNotAllowed));
            }
        }
        let mut builder = CertificateBuilder::new(member, period);
        let read = self
            .read_journal(program, |entry| builder.push(entry).map(|()| true))
            .await?;
        let built = read.and_then(|()| builder.finish(self.ctx.now()));
        let certificate = match built {
            Ok(c) => c,
            Err(CertificateError::UnknownMember) => {
                // Enrolled in the live ledger but not yet durable: a moment later it is.
                return Err(status(
                    Code::Unavailable,
                    "UNAVAILABLE",
                    "the member's enrolment is not yet durable; retry",
                ));
            }
            Err(e) => return Err(status(Code::Internal, "INTERNAL", e.to_string())),
        };
        let signed = certificate.sign(&self.ctx.engine.keys().signing_key(program));
        let json = serde_json::to_string_pretty(&signed)
            .map_err(|e| status(Code::Internal, "INTERNAL", e.to_string()))?;
        Ok(Response::new(pb::IssueCertificateResponse {
            note: signed.certificate.note(),
            journal_size: signed.certificate.journal_size,
            journal_head: signed.certificate.journal_head.to_hex(),
            records: u32::try_from(signed.certificate.records.len()).unwrap_or(u32::MAX),
            public_key: signed.public_key,
            certificate_json: json,
        }))
    }

    async fn validate_service_records(
        &self,
        request: Request<pb::ValidateServiceRecordsRequest>,
    ) -> Result<Response<pb::ValidateServiceRecordsResponse>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let actor = principal.actor(program)?;
        let req = request.into_inner();
        if req.records.is_empty() || req.records.len() > MAX_BATCH {
            let mut f = Fields::default();
            f.violation("records", format!("1 to {MAX_BATCH} records"));
            return Err(f.status());
        }
        // A malformed field is that record's problem, not the whole request's: the import
        // report must name every bad row.
        let mut problems: Vec<pb::RecordProblem> = Vec::new();
        let mut parsed: Vec<(u32, ServiceInput)> = Vec::with_capacity(req.records.len());
        for (index, input) in (0u32..).zip(&req.records) {
            let mut f = Fields::default();
            let member = f.id::<MemberId>("member_id", &input.member_id);
            let activity = f.id::<ActivityId>("activity_id", &input.activity_id);
            let org_unit = f.id::<OrgUnitId>("org_unit_id", &input.org_unit_id);
            let started_at = f.timestamp("started_at", input.started_at.as_ref());
            match (member, activity, org_unit, started_at) {
                (Some(member), Some(activity), Some(org_unit), Some(started_at)) if f.is_ok() => {
                    parsed.push((
                        index,
                        ServiceInput {
                            member,
                            activity,
                            org_unit,
                            started_at,
                            minutes: input.minutes,
                        },
                    ));
                }
                _ => problems.push(pb::RecordProblem {
                    index,
                    reason: "INVALID_ARGUMENT".into(),
                    code: 0,
                    message: f.status().message().to_owned(),
                }),
            }
        }
        let inputs: Vec<ServiceInput> = parsed.iter().map(|(_, r)| r.clone()).collect();
        let now = self.ctx.now();
        let refused = self
            .ctx
            .read(program, |l| check_service_records(l, &actor, &inputs, now))?;
        for (position, rejection) in refused {
            problems.push(pb::RecordProblem {
                index: parsed[position].0,
                reason: rejection.reason().into(),
                code: rejection.code().into(),
                message: rejection.to_string(),
            });
        }
        problems.sort_by_key(|p| p.index);
        Ok(Response::new(pb::ValidateServiceRecordsResponse {
            checked: u32::try_from(req.records.len()).unwrap_or(u32::MAX),
            problems,
        }))
    }
}
