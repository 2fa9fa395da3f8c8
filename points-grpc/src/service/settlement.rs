//! The `Settlement` service (issue 6): community funds, merchant rates, closing periods,
//! statements (with CSV), and the reconciliation report.
//!
//! Writes go to the engine like every other write; reads of statements rebuild the lines
//! from the durable journal range the settlement names, so a statement is the same
//! whenever it is read. Merchant keys see only their own merchant's settlements, and
//! recorder keys only merchants within their subtree.

use super::{caller, Ctx};
use crate::auth::{Principal, Scope};
use crate::convert::{
    engine_status, points_str, rejection_status, timestamp_from_pb, timestamp_to_pb, Fields,
};
use crate::pb;
use crate::pb::settlement_server::Settlement as SettlementApi;
use points_core::settlement::{fen_to_yuan_exact, Flows};
use points_core::{
    reconcile, statement, Command, Entry, EntryId, EntryKind, FundId, Ledger, MerchantId,
    OrgUnitId, OverBudget, Points, ProgramId, Rejection, RequestId, Scale, Settlement,
    SettlementCommand, Statement,
};
use tonic::{Response, Status};

/// Entries read per page when rebuilding a statement or reconciling.
const READ_PAGE: usize = 1000;

/// Serves `points.v1.Settlement`.
pub struct SettlementService {
    ctx: Ctx,
}

impl SettlementService {
    /// The service over `ctx`.
    pub fn new(ctx: Ctx) -> Self {
        SettlementService { ctx }
    }

    /// Submits a settlement command through the shared write path and returns the receipt.
    async fn write(
        &self,
        principal: &Principal,
        program: ProgramId,
        request_id: RequestId,
        command: SettlementCommand,
        kind: EntryKind,
    ) -> Result<pb::EntryReceipt, Status> {
        let command = Command::Settlement(command);
        let (receipt, _) =
            super::ops::write(&self.ctx, principal, program, request_id, command, kind).await?;
        Ok(receipt)
    }

    /// Journal entries `from .. to`, read in pages from the store.
    async fn range(&self, program: ProgramId, from: u64, to: u64) -> Result<Vec<Entry>, Status> {
        let mut out = Vec::new();
        let mut next = from;
        while next < to {
            let want = usize::try_from(to - next)
                .unwrap_or(READ_PAGE)
                .min(READ_PAGE);
            let page = self
                .ctx
                .engine
                .entries(program, next, want)
                .await
                .map_err(|e| engine_status(&e))?;
            if page.is_empty() {
                break;
            }
            next += page.len() as u64;
            out.extend(page.into_iter().filter(|e| e.sequence() < to));
        }
        Ok(out)
    }
}

/// Whether a read scope may see a merchant's settlements.
fn may_see(l: &Ledger, scope: Scope, merchant: MerchantId) -> bool {
    match scope {
        Scope::All => true,
        Scope::Merchant(own) => own == merchant,
        Scope::OrgUnit(root) => l
            .merchant(merchant)
            .is_some_and(|m| l.is_within(m.org_unit, root)),
    }
}

fn yuan(fen: points_core::Fen) -> String {
    fen.to_yuan().to_string()
}

fn month_text(month: i32) -> String {
    format!(
        "{:04}-{:02}",
        month.div_euclid(12),
        month.rem_euclid(12) + 1
    )
}

fn summary_to_pb(program: ProgramId, s: &Settlement, scale: Scale) -> pb::SettlementSummary {
    pb::SettlementSummary {
        merchant_id: s.merchant.to_string(),
        period: s.period,
        from_sequence: s.from_sequence,
        to_sequence: s.to_sequence,
        entry_id: EntryId::for_sequence(program, s.to_sequence).to_string(),
        closed_at: Some(timestamp_to_pb(s.closed_at)),
        budget_month: month_text(s.budget_month),
        net_points: points_str(s.net_points, scale),
        lines: s.lines,
        exact_yuan: fen_to_yuan_exact(s.exact_fen).to_string(),
        carried_in_yuan: fen_to_yuan_exact(s.carried_in_fen).to_string(),
        owed_yuan: yuan(s.owed),
        residue_yuan: fen_to_yuan_exact(s.residue_fen).to_string(),
        deferred_in_yuan: yuan(s.deferred_in),
        payments: s
            .payments
            .iter()
            .map(|p| pb::FundPayment {
                fund_id: p.fund.to_string(),
                amount_yuan: yuan(p.amount),
            })
            .collect(),
        paid_yuan: yuan(s.paid()),
        deferred_out_yuan: yuan(s.deferred_out),
        rounding: points_core::money::ROUNDING.to_owned(),
    }
}

fn statement_to_pb(
    program: ProgramId,
    st: &Statement,
    scale: Scale,
) -> pb::GetSettlementStatementResponse {
    pb::GetSettlementStatementResponse {
        settlement: Some(summary_to_pb(program, &st.settlement, scale)),
        lines: st
            .lines
            .iter()
            .map(|l| pb::SettlementLine {
                sequence: l.sequence,
                entry_id: l.entry.to_string(),
                time: Some(timestamp_to_pb(l.at)),
                kind: l.kind.name().to_owned(),
                corrects_entry_id: l.corrects.map(|c| c.to_string()).unwrap_or_default(),
                member_id: l.member.to_string(),
                points: points_str(l.points, scale),
                rate_yuan_per_point: l.rate.to_string(),
                money_yuan: fen_to_yuan_exact(l.money_fen).to_string(),
            })
            .collect(),
        csv: st.to_csv(scale),
    }
}

fn row_to_pb(row: &points_core::ReconciliationRow, scale: Scale) -> pb::ReconciliationRow {
    let difference = i64::try_from(row.difference).map_or_else(
        |_| row.difference.to_string(),
        |d| points_str(Points::from_minor(d), scale),
    );
    pb::ReconciliationRow {
        org_unit_id: row.org_unit.map(|u| u.to_string()).unwrap_or_default(),
        issued: points_str(row.issued, scale),
        net_in: points_str(row.net_in, scale),
        available: points_str(row.available, scale),
        held: points_str(row.held, scale),
        unsettled: points_str(row.unsettled, scale),
        settled: points_str(row.settled, scale),
        expired: points_str(row.expired, scale),
        pooled: points_str(row.pooled, scale),
        difference,
    }
}

/// A merchant id the caller may read, or the status to answer with. A scoped key asking
/// for another merchant is told the merchant does not exist, as other reads do.
fn readable_merchant(l: &Ledger, scope: Scope, merchant: MerchantId) -> Result<MerchantId, Status> {
    if l.merchant(merchant).is_none() {
        return Err(rejection_status(&Rejection::UnknownMerchant));
    }
    if !may_see(l, scope, merchant) {
        return Err(crate::convert::status(
            tonic::Code::PermissionDenied,
            "PERMISSION_DENIED",
            "this API key may read only its own merchant's settlements",
        ));
    }
    Ok(merchant)
}

#[tonic::async_trait]
impl SettlementApi for SettlementService {
    async fn create_fund(
        &self,
        request: tonic::Request<pb::CreateFundRequest>,
    ) -> Result<Response<pb::CreateFundResponse>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let req = request.into_inner();
        let mut f = Fields::default();
        let request_id = f.id::<RequestId>("request_id", &req.request_id);
        let id = f.id::<FundId>("fund_id", &req.fund_id);
        let org_unit = f.id::<OrgUnitId>("org_unit_id", &req.org_unit_id);
        let name = f.text("name", &req.name);
        let budget = f.decimal("budget_per_month_yuan", &req.budget_per_month_yuan);
        f.finish()?;
        let (Some(request_id), Some(id), Some(org_unit), Some(name), Some(budget)) =
            (request_id, id, org_unit, name, budget)
        else {
            return Err(f.status());
        };
        let receipt = self
            .write(
                &principal,
                program,
                request_id,
                SettlementCommand::CreateFund {
                    id,
                    org_unit,
                    name,
                    budget_per_month_yuan: budget,
                },
                EntryKind::FundCreated,
            )
            .await?;
        Ok(Response::new(pb::CreateFundResponse {
            receipt: Some(receipt),
        }))
    }

    async fn set_merchant_funds(
        &self,
        request: tonic::Request<pb::SetMerchantFundsRequest>,
    ) -> Result<Response<pb::SetMerchantFundsResponse>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let req = request.into_inner();
        let mut f = Fields::default();
        let request_id = f.id::<RequestId>("request_id", &req.request_id);
        let merchant = f.id::<MerchantId>("merchant_id", &req.merchant_id);
        let funds: Vec<Option<FundId>> = req
            .fund_ids
            .iter()
            .enumerate()
            .map(|(i, id)| f.id::<FundId>(&format!("fund_ids[{i}]"), id))
            .collect();
        f.finish()?;
        let (Some(request_id), Some(merchant)) = (request_id, merchant) else {
            return Err(f.status());
        };
        let funds: Option<Vec<FundId>> = funds.into_iter().collect();
        let Some(funds) = funds else {
            return Err(f.status());
        };
        let receipt = self
            .write(
                &principal,
                program,
                request_id,
                SettlementCommand::SetMerchantFunds { merchant, funds },
                EntryKind::MerchantFundsSet,
            )
            .await?;
        Ok(Response::new(pb::SetMerchantFundsResponse {
            receipt: Some(receipt),
        }))
    }

    async fn set_merchant_rate(
        &self,
        request: tonic::Request<pb::SetMerchantRateRequest>,
    ) -> Result<Response<pb::SetMerchantRateResponse>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let req = request.into_inner();
        let mut f = Fields::default();
        let request_id = f.id::<RequestId>("request_id", &req.request_id);
        let merchant = f.id::<MerchantId>("merchant_id", &req.merchant_id);
        let rate = f.decimal("yuan_per_point", &req.yuan_per_point);
        let effective_from = match req.effective_from.as_ref() {
            None => {
                f.violation("effective_from", "required");
                None
            }
            Some(t) => {
                let t = timestamp_from_pb(t);
                if t.is_none() {
                    f.violation("effective_from", "time is out of range");
                }
                t
            }
        };
        f.finish()?;
        let (Some(request_id), Some(merchant), Some(rate), Some(effective_from)) =
            (request_id, merchant, rate, effective_from)
        else {
            return Err(f.status());
        };
        let receipt = self
            .write(
                &principal,
                program,
                request_id,
                SettlementCommand::SetMerchantRate {
                    merchant,
                    yuan_per_point: rate,
                    effective_from,
                },
                EntryKind::MerchantRateSet,
            )
            .await?;
        Ok(Response::new(pb::SetMerchantRateResponse {
            receipt: Some(receipt),
        }))
    }

    async fn set_over_budget(
        &self,
        request: tonic::Request<pb::SetOverBudgetRequest>,
    ) -> Result<Response<pb::SetOverBudgetResponse>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let req = request.into_inner();
        let mut f = Fields::default();
        let request_id = f.id::<RequestId>("request_id", &req.request_id);
        let setting = match f.enumeration::<pb::OverBudgetSetting>("setting", req.setting) {
            Some(pb::OverBudgetSetting::Defer) => Some(OverBudget::Defer),
            Some(pb::OverBudgetSetting::Refuse) => Some(OverBudget::Refuse),
            _ => None,
        };
        f.finish()?;
        let (Some(request_id), Some(setting)) = (request_id, setting) else {
            return Err(f.status());
        };
        let receipt = self
            .write(
                &principal,
                program,
                request_id,
                SettlementCommand::SetOverBudget(setting),
                EntryKind::OverBudgetSet,
            )
            .await?;
        Ok(Response::new(pb::SetOverBudgetResponse {
            receipt: Some(receipt),
        }))
    }

    async fn close_settlement_period(
        &self,
        request: tonic::Request<pb::CloseSettlementPeriodRequest>,
    ) -> Result<Response<pb::CloseSettlementPeriodResponse>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let req = request.into_inner();
        let mut f = Fields::default();
        let request_id = f.id::<RequestId>("request_id", &req.request_id);
        let merchant = f.id::<MerchantId>("merchant_id", &req.merchant_id);
        if req.period == 0 {
            f.violation("period", "required: periods are numbered from 1");
        }
        f.finish()?;
        let (Some(request_id), Some(merchant)) = (request_id, merchant) else {
            return Err(f.status());
        };
        let receipt = self
            .write(
                &principal,
                program,
                request_id,
                SettlementCommand::ClosePeriod {
                    merchant,
                    period: req.period,
                },
                EntryKind::SettlementClosed,
            )
            .await?;
        let settlement = self.ctx.read(program, |l| {
            l.settlement(merchant, req.period)
                .map(|s| summary_to_pb(program, s, l.spec().scale()))
        })?;
        Ok(Response::new(pb::CloseSettlementPeriodResponse {
            receipt: Some(receipt),
            settlement,
        }))
    }

    async fn get_settlement_statement(
        &self,
        request: tonic::Request<pb::GetSettlementStatementRequest>,
    ) -> Result<Response<pb::GetSettlementStatementResponse>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let scope = principal.scope(program)?;
        let req = request.into_inner();
        let mut f = Fields::default();
        let merchant = f.id::<MerchantId>("merchant_id", &req.merchant_id);
        f.finish()?;
        let Some(merchant) = merchant else {
            return Err(f.status());
        };
        let settlement = self.ctx.read(program, |l| -> Result<Settlement, Status> {
            readable_merchant(l, scope, merchant)?;
            l.settlement(merchant, req.period)
                .cloned()
                .ok_or_else(|| rejection_status(&Rejection::PeriodNotOpen))
        })??;
        let entries = self
            .range(program, settlement.from_sequence, settlement.to_sequence)
            .await?;
        let response = self.ctx.read(program, |l| {
            let st = statement(l, &settlement, &entries);
            statement_to_pb(program, &st, l.spec().scale())
        })?;
        Ok(Response::new(response))
    }

    async fn list_settlements(
        &self,
        request: tonic::Request<pb::ListSettlementsRequest>,
    ) -> Result<Response<pb::ListSettlementsResponse>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let scope = principal.scope(program)?;
        let req = request.into_inner();
        let mut f = Fields::default();
        let one = f.opt_id::<MerchantId>("merchant_id", &req.merchant_id);
        f.finish()?;
        let Ok(one) = one else {
            return Err(f.status());
        };
        let now = self.ctx.now();
        let response = self.ctx.read(program, |l| -> Result<_, Status> {
            let scale = l.spec().scale();
            let merchants: Vec<MerchantId> = match one {
                Some(m) => vec![readable_merchant(l, scope, m)?],
                None => l
                    .merchants()
                    .into_iter()
                    .map(|m| m.id)
                    .filter(|m| may_see(l, scope, *m))
                    .collect(),
            };
            let mut out = pb::ListSettlementsResponse::default();
            for m in merchants {
                out.settlements.extend(
                    l.settlements(m)
                        .iter()
                        .map(|s| summary_to_pb(program, s, scale)),
                );
                if let Some(money) = l.merchant_money(m) {
                    out.merchants.push(pb::MerchantSettlementState {
                        merchant_id: m.to_string(),
                        open_period: money.open_period,
                        rate_yuan_per_point: l.rate_at(m, now).to_string(),
                        fund_ids: money.funds.iter().map(|f| f.to_string()).collect(),
                        pending_yuan: fen_to_yuan_exact(money.pending_fen).to_string(),
                        deferred_yuan: yuan(money.deferred),
                        settled_points: points_str(money.settled, scale),
                    });
                }
            }
            Ok(out)
        })??;
        Ok(Response::new(response))
    }

    async fn reconcile(
        &self,
        request: tonic::Request<pb::ReconcileRequest>,
    ) -> Result<Response<pb::ReconcileResponse>, Status> {
        let (_, program) = caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        // One consistent view: the ledger as of a sequence, and the journal up to it.
        let live = self.ctx.read(program, Ledger::clone)?;
        let end = live.next_sequence();
        let mut flows = Flows::new();
        let mut next = 0u64;
        while next < end {
            let want = usize::try_from(end - next)
                .unwrap_or(READ_PAGE)
                .min(READ_PAGE);
            let page = self
                .ctx
                .engine
                .entries(program, next, want)
                .await
                .map_err(|e| engine_status(&e))?;
            if page.is_empty() {
                break;
            }
            for entry in page.iter().filter(|e| e.sequence() < end) {
                flows.add(entry);
            }
            next += page.len() as u64;
        }
        let report = reconcile(&live, &flows, self.ctx.now());
        let scale = live.spec().scale();
        Ok(Response::new(pb::ReconcileResponse {
            balanced: report.is_balanced(),
            program: Some(row_to_pb(&report.programme, scale)),
            org_units: report
                .org_units
                .iter()
                .map(|r| row_to_pb(r, scale))
                .collect(),
            entries: end,
        }))
    }
}
