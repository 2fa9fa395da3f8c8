//! Write operations: wire request → core [`Request`] ([`prepare`]), submission, and the
//! wire response ([`respond`]). Unary write RPCs and `Submit` batches share this path.

use super::Ctx;
use crate::auth::Principal;
use crate::convert::{
    engine_status, points_str, receipt, rejection_status, timestamp_to_pb, Fields,
};
use crate::pb;
use crate::pb::submit_operation::Operation as Op;
use crate::pb::submit_result::Result as Res;
use points_core::{
    ActivityId, ActivityInput, Applied, Command, Entry, EntryId, EntryKind, Event, Ledger,
    MemberId, MemberKind, MerchantId, OrgUnitId, PoolId, PoolKind, ProgramId, RecordId,
    RecordStatus, Rejection, Request, RequestId, RuleInput, ServiceInput, TimeKind,
};
use rust_decimal::Decimal;
use tonic::Status;

/// The most operations one `Submit` batch may carry.
/// Batches of several thousand let one till network or an importer reach the store's
/// group-commit rate; the bound keeps one message well under the 4 MiB gRPC default.
pub const MAX_SUBMIT: usize = 10_000;

/// A write ready to submit, with what its response needs.
#[derive(Debug)]
pub struct Prepared {
    /// The program.
    pub program: ProgramId,
    /// The core request.
    pub request: Request,
    /// The entry kind it writes.
    pub kind: EntryKind,
    /// The member it concerns, when the response reports one.
    pub member: Option<MemberId>,
}

/// The program id an operation names.
pub fn program_text(op: &Op) -> &str {
    match op {
        Op::Redeem(r) => &r.program_id,
        Op::Hold(r) => &r.program_id,
        Op::Capture(r) => &r.program_id,
        Op::Release(r) => &r.program_id,
        Op::Refund(r) => &r.program_id,
        Op::Transfer(r) => &r.program_id,
        Op::RecordService(r) => &r.program_id,
        Op::ApproveService(r) => &r.program_id,
        Op::RejectService(r) => &r.program_id,
        Op::Reverse(r) => &r.program_id,
        Op::Donate(r) => &r.program_id,
        Op::Grant(r) => &r.program_id,
        Op::Expire(r) => &r.program_id,
        Op::EnrolMember(r) => &r.program_id,
        Op::UpdateMember(r) => &r.program_id,
        Op::MoveMember(r) => &r.program_id,
        Op::DefineActivity(r) => &r.program_id,
        Op::CreatePool(r) => &r.program_id,
    }
}

fn request_id_text(op: &Op) -> &str {
    match op {
        Op::Redeem(r) => &r.request_id,
        Op::Hold(r) => &r.request_id,
        Op::Capture(r) => &r.request_id,
        Op::Release(r) => &r.request_id,
        Op::Refund(r) => &r.request_id,
        Op::Transfer(r) => &r.request_id,
        Op::RecordService(r) => &r.request_id,
        Op::ApproveService(r) => &r.request_id,
        Op::RejectService(r) => &r.request_id,
        Op::Reverse(r) => &r.request_id,
        Op::Donate(r) => &r.request_id,
        Op::Grant(r) => &r.request_id,
        Op::Expire(r) => &r.request_id,
        Op::EnrolMember(r) => &r.request_id,
        Op::UpdateMember(r) => &r.request_id,
        Op::MoveMember(r) => &r.request_id,
        Op::DefineActivity(r) => &r.request_id,
        Op::CreatePool(r) => &r.request_id,
    }
}

/// Resolves a member reference (id or card code).
pub fn member_ref(
    fields: &mut Fields,
    ledger: &Ledger,
    field: &str,
    member: Option<&pb::MemberRef>,
) -> Result<Option<MemberId>, Status> {
    use pb::member_ref::Member;
    match member.and_then(|m| m.member.as_ref()) {
        None => {
            fields.violation(field, "required: member_id or card_code");
            Ok(None)
        }
        Some(Member::MemberId(id)) => Ok(fields.id(&format!("{field}.member_id"), id)),
        Some(Member::CardCode(code)) => {
            if code.is_empty() {
                fields.violation(&format!("{field}.card_code"), "required");
                return Ok(None);
            }
            match ledger.member_by_card(code) {
                Some(id) => Ok(Some(id)),
                None => Err(rejection_status(&Rejection::UnknownMember)),
            }
        }
    }
}

fn member_kind(fields: &mut Fields, field: &str, value: i32) -> Option<MemberKind> {
    match fields.enumeration::<pb::MemberKind>(field, value)? {
        pb::MemberKind::Resident => Some(MemberKind::Resident),
        pb::MemberKind::PartyMember => Some(MemberKind::PartyMember),
        pb::MemberKind::Unspecified => None,
    }
}

fn card(code: &str) -> Option<String> {
    (!code.is_empty()).then(|| code.to_owned())
}

/// Converts an operation into a core request for `principal`. `default_program` is the
/// batch's program for `Submit`.
pub fn prepare(
    ctx: &Ctx,
    principal: &Principal,
    default_program: Option<ProgramId>,
    op: &Op,
) -> Result<Prepared, Status> {
    let (program, actor) = program_and_actor(principal, default_program, op)?;
    ctx.read(program, |ledger| prepare_in(ledger, program, actor, op))?
}

/// The operation's programme (`default_program` when it names none) and who acts in it.
fn program_and_actor(
    principal: &Principal,
    default_program: Option<ProgramId>,
    op: &Op,
) -> Result<(ProgramId, points_core::Actor), Status> {
    let mut fields = Fields::default();
    let text = program_text(op);
    let program = match (text.is_empty(), default_program) {
        (true, Some(p)) => Some(p),
        _ => {
            let parsed = fields.id::<ProgramId>("program_id", text);
            if let (Some(parsed), Some(default)) = (parsed, default_program) {
                if parsed != default {
                    fields.violation("program_id", "differs from the batch's program_id");
                }
            }
            parsed
        }
    };
    fields.finish()?;
    let Some(program) = program else {
        return Err(fields.status());
    };
    Ok((program, principal.actor(program)?))
}

/// The rest of [`prepare`], against the programme's ledger.
fn prepare_in(
    ledger: &Ledger,
    program: ProgramId,
    actor: points_core::Actor,
    op: &Op,
) -> Result<Prepared, Status> {
    let mut f = Fields::new(Some(ledger.spec().scale()));
    let request_id = f.id::<RequestId>("request_id", request_id_text(op));
    let (command, kind, member) = build(&mut f, ledger, op)?;
    f.finish()?;
    let (Some(request_id), Some(command)) = (request_id, command) else {
        return Err(f.status());
    };
    Ok(Prepared {
        program,
        request: Request {
            request_id,
            actor,
            command,
        },
        kind,
        member,
    })
}

type Built = (Option<Command>, EntryKind, Option<MemberId>);

fn build(f: &mut Fields, ledger: &Ledger, op: &Op) -> Result<Built, Status> {
    Ok(match op {
        Op::Redeem(r) => {
            let merchant = f.id::<MerchantId>("merchant_id", &r.merchant_id);
            let member = member_ref(f, ledger, "member", r.member.as_ref())?;
            let amount = f.amount("amount", &r.amount);
            let command = match (merchant, member, amount) {
                (Some(merchant), Some(member), Some(amount)) => Some(Command::Redeem {
                    member,
                    merchant,
                    amount,
                }),
                _ => None,
            };
            (command, EntryKind::Redeemed, member)
        }
        Op::Hold(r) => {
            let merchant = f.id::<MerchantId>("merchant_id", &r.merchant_id);
            let member = member_ref(f, ledger, "member", r.member.as_ref())?;
            let amount = f.amount("amount", &r.amount);
            let ttl_ms = if r.ttl_ms == 0 {
                ledger.spec().max_hold_ttl_ms()
            } else {
                r.ttl_ms
            };
            let command = match (merchant, member, amount) {
                (Some(merchant), Some(member), Some(amount)) => Some(Command::PlaceHold {
                    member,
                    merchant,
                    amount,
                    ttl_ms,
                }),
                _ => None,
            };
            (command, EntryKind::HoldPlaced, member)
        }
        Op::Capture(r) => {
            let hold = f.id::<EntryId>("hold_id", &r.hold_id);
            let amount = f.opt_amount("amount", r.amount.as_deref());
            let member = hold.and_then(|h| ledger.hold(h)).map(|h| h.member);
            let command = match (hold, amount) {
                (Some(hold), Ok(amount)) => Some(Command::CaptureHold { hold, amount }),
                _ => None,
            };
            (command, EntryKind::HoldCaptured, member)
        }
        Op::Release(r) => {
            let hold = f.id::<EntryId>("hold_id", &r.hold_id);
            let member = hold.and_then(|h| ledger.hold(h)).map(|h| h.member);
            (
                hold.map(|hold| Command::ReleaseHold { hold }),
                EntryKind::HoldReleased,
                member,
            )
        }
        Op::Refund(r) => {
            let entry = f.id::<EntryId>("entry_id", &r.entry_id);
            let amount = f.amount("amount", &r.amount);
            let command = match (entry, amount) {
                (Some(entry), Some(amount)) => Some(Command::Refund { entry, amount }),
                _ => None,
            };
            (command, EntryKind::Refunded, None)
        }
        Op::Transfer(r) => {
            let from = f.id::<MemberId>("from_member_id", &r.from_member_id);
            let to = f.id::<MemberId>("to_member_id", &r.to_member_id);
            let amount = f.amount("amount", &r.amount);
            let command = match (from, to, amount) {
                (Some(from), Some(to), Some(amount)) => {
                    Some(Command::Transfer { from, to, amount })
                }
                _ => None,
            };
            (command, EntryKind::Transferred, from)
        }
        Op::RecordService(r) => {
            if r.records.is_empty() {
                f.violation("records", "at least one record");
            }
            let mut records = Vec::with_capacity(r.records.len());
            for (i, input) in r.records.iter().enumerate() {
                let member = f.id::<MemberId>(&format!("records[{i}].member_id"), &input.member_id);
                let activity =
                    f.id::<ActivityId>(&format!("records[{i}].activity_id"), &input.activity_id);
                let org_unit =
                    f.id::<OrgUnitId>(&format!("records[{i}].org_unit_id"), &input.org_unit_id);
                let started_at = f.timestamp(
                    &format!("records[{i}].started_at"),
                    input.started_at.as_ref(),
                );
                if input.minutes == 0 {
                    f.violation(&format!("records[{i}].minutes"), "must be at least 1");
                }
                if let (Some(member), Some(activity), Some(org_unit), Some(started_at)) =
                    (member, activity, org_unit, started_at)
                {
                    records.push(ServiceInput {
                        member,
                        activity,
                        org_unit,
                        started_at,
                        minutes: input.minutes,
                    });
                }
            }
            (
                Some(Command::RecordService { records }),
                EntryKind::ServiceRecorded,
                None,
            )
        }
        Op::ApproveService(r) => {
            if r.record_ids.is_empty() {
                f.violation("record_ids", "at least one record");
            }
            let records = f.ids::<RecordId>("record_ids", &r.record_ids);
            (
                Some(Command::ApproveService { records }),
                EntryKind::ServiceApproved,
                None,
            )
        }
        Op::RejectService(r) => {
            if r.record_ids.is_empty() {
                f.violation("record_ids", "at least one record");
            }
            let records = f.ids::<RecordId>("record_ids", &r.record_ids);
            let reason = f.text("reason", &r.reason);
            (
                reason.map(|reason| Command::RejectService { records, reason }),
                EntryKind::ServiceRejected,
                None,
            )
        }
        Op::Reverse(r) => {
            let entry = f.id::<EntryId>("entry_id", &r.entry_id);
            let reason = f.text("reason", &r.reason);
            let command = match (entry, reason) {
                (Some(entry), Some(reason)) => Some(Command::Reverse { entry, reason }),
                _ => None,
            };
            (command, EntryKind::Reversed, None)
        }
        Op::Donate(r) => {
            let member = f.id::<MemberId>("member_id", &r.member_id);
            let pool = f.id::<PoolId>("pool_id", &r.pool_id);
            let amount = f.amount("amount", &r.amount);
            let command = match (member, pool, amount) {
                (Some(member), Some(pool), Some(amount)) => Some(Command::Donate {
                    member,
                    pool,
                    amount,
                }),
                _ => None,
            };
            (command, EntryKind::Donated, member)
        }
        Op::Grant(r) => {
            let pool = f.id::<PoolId>("pool_id", &r.pool_id);
            let member = f.id::<MemberId>("member_id", &r.member_id);
            let amount = f.amount("amount", &r.amount);
            let command = match (pool, member, amount) {
                (Some(pool), Some(member), Some(amount)) => Some(Command::Grant {
                    pool,
                    member,
                    amount,
                }),
                _ => None,
            };
            (command, EntryKind::Granted, member)
        }
        Op::Expire(r) => {
            let member = f.id::<MemberId>("member_id", &r.member_id);
            (
                member.map(|member| Command::Expire { member }),
                EntryKind::Expired,
                member,
            )
        }
        Op::EnrolMember(r) => {
            let id = f.id::<MemberId>("member_id", &r.member_id);
            let home = f.id::<OrgUnitId>("org_unit_id", &r.org_unit_id);
            let kind = member_kind(f, "kind", r.kind);
            let command = match (id, home, kind) {
                (Some(id), Some(home), Some(kind)) => Some(Command::EnrolMember {
                    id,
                    home,
                    kind,
                    dual_registration: r.dual_registration,
                    card_code: card(&r.card_code),
                }),
                _ => None,
            };
            (command, EntryKind::MemberEnrolled, id)
        }
        Op::UpdateMember(r) => {
            let id = f.id::<MemberId>("member_id", &r.member_id);
            let kind = member_kind(f, "kind", r.kind);
            let command = match (id, kind) {
                (Some(id), Some(kind)) => Some(Command::UpdateMember {
                    id,
                    kind,
                    dual_registration: r.dual_registration,
                    card_code: card(&r.card_code),
                }),
                _ => None,
            };
            (command, EntryKind::MemberUpdated, id)
        }
        Op::MoveMember(r) => {
            let id = f.id::<MemberId>("member_id", &r.member_id);
            let home = f.id::<OrgUnitId>("to_org_unit_id", &r.to_org_unit_id);
            let command = match (id, home) {
                (Some(id), Some(home)) => Some(Command::MoveMember { id, home }),
                _ => None,
            };
            (command, EntryKind::MemberMoved, id)
        }
        Op::DefineActivity(r) => (define_activity(f, r), EntryKind::ActivityDefined, None),
        Op::CreatePool(r) => {
            let id = f.id::<PoolId>("pool_id", &r.pool_id);
            let org_unit = f.id::<OrgUnitId>("org_unit_id", &r.org_unit_id);
            let name = f.text("name", &r.name);
            let kind = match f.enumeration::<pb::PoolKind>("kind", r.kind) {
                Some(pb::PoolKind::LoveBank) => Some(PoolKind::LoveBank),
                Some(pb::PoolKind::TimeBank) => Some(PoolKind::TimeBank),
                _ => None,
            };
            let command = match (id, org_unit, name, kind) {
                (Some(id), Some(org_unit), Some(name), Some(kind)) => Some(Command::CreatePool {
                    id,
                    org_unit,
                    name,
                    kind,
                }),
                _ => None,
            };
            (command, EntryKind::PoolCreated, None)
        }
    })
}

fn define_activity(f: &mut Fields, r: &pb::DefineActivityRequest) -> Option<Command> {
    use pb::activity_rule::Rule;
    let id = f.id::<ActivityId>("activity_id", &r.activity_id);
    let org_unit = f.id::<OrgUnitId>("org_unit_id", &r.org_unit_id);
    let name = f.text("name", &r.name);
    let category = f.text("category", &r.category);
    let rule = match r.rule.as_ref().and_then(|r| r.rule.as_ref()) {
        None => {
            f.violation("rule", "required: per_hour or per_occasion");
            None
        }
        Some(Rule::PerHour(points)) => f.amount("rule.per_hour", points).map(RuleInput::PerHour),
        Some(Rule::PerOccasion(points)) => f
            .amount("rule.per_occasion", points)
            .map(RuleInput::PerOccasion),
    };
    let coefficient = if r.coefficient.is_empty() {
        Some(Decimal::ONE)
    } else {
        let c = f.decimal("coefficient", &r.coefficient);
        if c.is_some_and(|c| c <= Decimal::ZERO) {
            f.violation("coefficient", "must be greater than zero");
        }
        c
    };
    let cap = f.opt_amount("daily_points_cap", r.daily_points_cap.as_deref());
    if r.max_minutes_per_occasion == Some(0) {
        f.violation("max_minutes_per_occasion", "must be at least 1 when set");
    }
    let time_kind = match f.enumeration::<pb::TimeKind>("time_kind", r.time_kind) {
        Some(pb::TimeKind::Credit) => Some(TimeKind::Credit),
        Some(pb::TimeKind::Honour) => Some(TimeKind::Honour),
        _ => None,
    };
    match (
        id,
        org_unit,
        name,
        category,
        rule,
        coefficient,
        cap,
        time_kind,
    ) {
        (
            Some(id),
            Some(org_unit),
            Some(name),
            Some(category),
            Some(rule),
            Some(coefficient),
            Ok(daily_points_cap),
            Some(time_kind),
        ) => Some(Command::DefineActivity(ActivityInput {
            id,
            org_unit,
            name,
            category,
            rule,
            coefficient,
            max_minutes_per_occasion: r.max_minutes_per_occasion,
            daily_points_cap,
            time_kind,
        })),
        _ => None,
    }
}

/// The entry that answers an applied request (read back for a duplicate).
pub async fn entry_of(ctx: &Ctx, program: ProgramId, applied: &Applied) -> Result<Entry, Status> {
    match applied {
        Applied::New(entry) => Ok(entry.clone()),
        Applied::Duplicate { id, .. } => ctx
            .engine
            .entry_by_id(program, *id)
            .await
            .map_err(|e| engine_status(&e))?
            .ok_or_else(|| Status::internal("the original entry is missing")),
    }
}

fn available(ctx: &Ctx, program: ProgramId, member: Option<MemberId>) -> Result<String, Status> {
    let now = ctx.now();
    ctx.read(program, |l| available_in(l, member, now))
}

/// `member`'s available points at `now`, as the wire shows them ("" for no member).
fn available_in(ledger: &Ledger, member: Option<MemberId>, now: points_core::Timestamp) -> String {
    member
        .and_then(|m| ledger.balance(m, now))
        .map(|b| points_str(b.available, ledger.spec().scale()))
        .unwrap_or_default()
}

/// Whether the answer to `op` shows the available points of the member it was prepared
/// for (a batch reads those for many operations at once).
fn shows_member_available(op: &Op) -> bool {
    matches!(
        op,
        Op::Redeem(_)
            | Op::Hold(_)
            | Op::Transfer(_)
            | Op::Donate(_)
            | Op::Grant(_)
            | Op::Expire(_)
    )
}

/// The outcome of a service record as the ledger has it now.
fn record_outcome(ledger: &Ledger, id: RecordId) -> pb::ServiceRecordOutcome {
    let scale = ledger.spec().scale();
    match ledger.record(id) {
        None => pb::ServiceRecordOutcome {
            record_id: id.to_string(),
            ..Default::default()
        },
        Some((record, status, award)) => {
            let status = match status {
                RecordStatus::Pending => pb::ServiceRecordStatus::Pending,
                RecordStatus::Approved => pb::ServiceRecordStatus::Approved,
                RecordStatus::Rejected => pb::ServiceRecordStatus::Rejected,
                RecordStatus::Reversed => pb::ServiceRecordStatus::Reversed,
            };
            let time_kind = ledger
                .activity(record.activity)
                .map(|a| a.time_kind)
                .or(award.map(|a| a.time_kind));
            pb::ServiceRecordOutcome {
                record_id: id.to_string(),
                member_id: record.member.to_string(),
                status: status as i32,
                points: award
                    .map(|a| points_str(a.points, scale))
                    .unwrap_or_default(),
                minutes: award
                    .map(|a| u32::try_from(a.minutes.get()).unwrap_or(0))
                    .unwrap_or(0),
                time_kind: match time_kind {
                    Some(TimeKind::Credit) => pb::TimeKind::Credit as i32,
                    Some(TimeKind::Honour) => pb::TimeKind::Honour as i32,
                    None => 0,
                },
            }
        }
    }
}

/// Builds the response of an applied operation.
///
/// `member_available` is the prepared member's available points if the caller has read
/// them already (see `shows_member_available`); otherwise they are read here.
pub async fn respond(
    ctx: &Ctx,
    op: &Op,
    prepared: &Prepared,
    applied: &Applied,
    member_available: Option<String>,
) -> Result<Res, Status> {
    let program = prepared.program;
    let receipt = Some(receipt(applied, prepared.kind));
    let member = prepared.member;
    let mine = match member_available {
        Some(known) => known,
        None if shows_member_available(op) => available(ctx, program, member)?,
        None => String::new(),
    };
    Ok(match op {
        Op::Redeem(_) => Res::Redeem(pb::RedeemResponse {
            receipt,
            member_id: member.map(|m| m.to_string()).unwrap_or_default(),
            available: mine,
        }),
        Op::Hold(_) => {
            let hold = applied.entry_id();
            let deadline = ctx.read(program, |l| l.hold(hold).map(|h| h.deadline))?;
            Res::Hold(pb::HoldResponse {
                receipt,
                hold_id: hold.to_string(),
                member_id: member.map(|m| m.to_string()).unwrap_or_default(),
                expires_at: deadline.map(timestamp_to_pb),
                available: mine,
            })
        }
        Op::Capture(_) => {
            let entry = entry_of(ctx, program, applied).await?;
            let Event::HoldCaptured {
                hold,
                member,
                amount,
                ..
            } = entry.event()
            else {
                return Err(Status::internal("unexpected entry"));
            };
            let (captured, released) = ctx.read(program, |l| {
                let scale = l.spec().scale();
                let held = l.hold(*hold).map(|h| h.amount).unwrap_or(*amount);
                (
                    points_str(*amount, scale),
                    points_str(
                        held.checked_sub(*amount)
                            .unwrap_or(points_core::Points::ZERO),
                        scale,
                    ),
                )
            })?;
            Res::Capture(pb::CaptureResponse {
                receipt,
                captured,
                released,
                available: available(ctx, program, Some(*member))?,
            })
        }
        Op::Release(_) => {
            let entry = entry_of(ctx, program, applied).await?;
            let Event::HoldReleased { hold, member, .. } = entry.event() else {
                return Err(Status::internal("unexpected entry"));
            };
            let released = ctx.read(program, |l| {
                l.hold(*hold)
                    .map(|h| points_str(h.amount, l.spec().scale()))
                    .unwrap_or_default()
            })?;
            Res::Release(pb::ReleaseResponse {
                receipt,
                released,
                available: available(ctx, program, Some(*member))?,
            })
        }
        Op::Refund(_) => {
            let entry = entry_of(ctx, program, applied).await?;
            let Event::Refunded { member, amount, .. } = entry.event() else {
                return Err(Status::internal("unexpected entry"));
            };
            let scale = ctx.scale(program)?;
            Res::Refund(pb::RefundResponse {
                receipt,
                refunded: points_str(*amount, scale),
                member_id: member.to_string(),
                available: available(ctx, program, Some(*member))?,
            })
        }
        Op::Transfer(_) => Res::Transfer(pb::TransferResponse {
            receipt,
            from_available: mine,
        }),
        Op::RecordService(r) => {
            let entry = applied.entry_id();
            let records = ctx.read(program, |l| {
                (0..r.records.len())
                    .map(|i| {
                        let index = u32::try_from(i).unwrap_or(u32::MAX);
                        record_outcome(l, RecordId::for_record(entry, index))
                    })
                    .collect()
            })?;
            Res::RecordService(pb::RecordServiceResponse { receipt, records })
        }
        Op::ApproveService(_) => {
            let Command::ApproveService { records } = &prepared.request.command else {
                return Err(Status::internal("unexpected command"));
            };
            let records = ctx.read(program, |l| {
                records.iter().map(|&id| record_outcome(l, id)).collect()
            })?;
            Res::ApproveService(pb::ApproveServiceResponse { receipt, records })
        }
        Op::RejectService(_) => Res::RejectService(pb::RejectServiceResponse { receipt }),
        Op::Reverse(_) => Res::Reverse(pb::ReverseResponse { receipt }),
        Op::Donate(_) => Res::Donate(pb::DonateResponse {
            receipt,
            available: mine,
        }),
        Op::Grant(_) => Res::Grant(pb::GrantResponse {
            receipt,
            available: mine,
        }),
        Op::Expire(_) => {
            let entry = entry_of(ctx, program, applied).await?;
            let Event::Expired { amount, .. } = entry.event() else {
                return Err(Status::internal("unexpected entry"));
            };
            let scale = ctx.scale(program)?;
            Res::Expire(pb::ExpireResponse {
                receipt,
                expired: points_str(*amount, scale),
                available: mine,
            })
        }
        Op::EnrolMember(_) => Res::EnrolMember(pb::EnrolMemberResponse { receipt }),
        Op::UpdateMember(_) => Res::UpdateMember(pb::UpdateMemberResponse { receipt }),
        Op::MoveMember(_) => Res::MoveMember(pb::MoveMemberResponse { receipt }),
        Op::DefineActivity(_) => Res::DefineActivity(pb::DefineActivityResponse { receipt }),
        Op::CreatePool(_) => Res::CreatePool(pb::CreatePoolResponse { receipt }),
    })
}

/// Runs one operation for a unary call.
pub async fn run(ctx: &Ctx, principal: &Principal, op: Op) -> Result<Res, Status> {
    if let Ok(program) = ProgramId::parse(program_text(&op)) {
        ctx.ensure(program).await?;
    }
    let prepared = prepare(ctx, principal, None, &op)?;
    let applied = submit(
        ctx,
        prepared.program,
        prepared.request.clone(),
        prepared.kind,
    )
    .await?;
    respond(ctx, &op, &prepared, &applied, None).await
}

/// Submits one core request and counts the entry it writes: the single submission every
/// unary write shares.
async fn submit(
    ctx: &Ctx,
    program: ProgramId,
    request: Request,
    kind: EntryKind,
) -> Result<Applied, Status> {
    let applied = ctx
        .engine
        .submit(program, request)
        .await
        .map_err(|e| engine_status(&e))?;
    crate::metrics::global().entry_written(kind);
    Ok(applied)
}

/// Submits `command` as `principal` and returns the wire receipt and what the engine
/// applied. Services whose write does not come from a `Submit` operation (admin,
/// settlement, volunteering) call this rather than the engine, so every unary write takes
/// the same path.
pub async fn write(
    ctx: &Ctx,
    principal: &Principal,
    program: ProgramId,
    request_id: RequestId,
    command: Command,
    kind: EntryKind,
) -> Result<(pb::EntryReceipt, Applied), Status> {
    let actor = principal.actor(program)?;
    let request = Request {
        request_id,
        actor,
        command,
    };
    let applied = submit(ctx, program, request, kind).await?;
    Ok((receipt(&applied, kind), applied))
}

/// A batch reads the ledger under one read lock per this many operations: often enough
/// that the writer never waits long for its write lock, seldom enough that taking the
/// lock (and finding the programme) costs little per operation.
const READ_CHUNK: usize = 256;

/// Runs a batch: every operation is prepared, the valid ones submitted together, and one
/// result returned per operation in order.
pub async fn run_batch(
    ctx: &Ctx,
    principal: &Principal,
    program: ProgramId,
    ops: Vec<Op>,
) -> Vec<Res> {
    let error = |s: &Status| Res::Error(crate::convert::operation_error(s));
    let mut results: Vec<Option<Res>> = Vec::with_capacity(ops.len());
    let mut prepared = Vec::with_capacity(ops.len());
    for (chunk_index, chunk) in ops.chunks(READ_CHUNK).enumerate() {
        let heads: Vec<_> = chunk
            .iter()
            .map(|op| program_and_actor(principal, Some(program), op))
            .collect();
        // Every head that parsed names the batch's programme.
        let outcomes = ctx.read(program, |ledger| {
            heads
                .into_iter()
                .zip(chunk)
                .map(|(head, op)| head.and_then(|(p, actor)| prepare_in(ledger, p, actor, op)))
                .collect::<Vec<_>>()
        });
        let outcomes =
            outcomes.unwrap_or_else(|status| chunk.iter().map(|_| Err(status.clone())).collect());
        for (offset, outcome) in outcomes.into_iter().enumerate() {
            match outcome {
                Ok(p) => {
                    results.push(None);
                    prepared.push((chunk_index * READ_CHUNK + offset, p));
                }
                Err(status) => results.push(Some(error(&status))),
            }
        }
    }
    let requests = prepared.iter().map(|(_, p)| p.request.clone()).collect();
    let applied = ctx.engine.submit_many(program, requests).await;
    crate::metrics::global().batch(prepared.len());
    let mut outcomes = prepared.iter().zip(applied).peekable();
    while outcomes.peek().is_some() {
        let chunk: Vec<_> = outcomes.by_ref().take(READ_CHUNK).collect();
        // The members' available points for the answers that show them, read together.
        let now = ctx.now();
        // For each answer that shows available points, the member it shows them for.
        let shown: Vec<Option<Option<MemberId>>> = chunk
            .iter()
            .map(|((i, p), outcome)| {
                (outcome.is_ok() && shows_member_available(&ops[*i])).then_some(p.member)
            })
            .collect();
        let availables = ctx
            .read(program, |ledger| {
                // Read together, so that the members' cache misses overlap.
                let wanted: Vec<MemberId> = shown.iter().flatten().flatten().copied().collect();
                let scale = ledger.spec().scale();
                let mut balances = ledger.balances(&wanted, now).into_iter();
                shown
                    .iter()
                    .map(|shows| {
                        // "" for an answer with no member, as `available_in` gives.
                        shows.map(|member| {
                            member
                                .and_then(|_| balances.next().flatten())
                                .map(|b| points_str(b.available, scale))
                                .unwrap_or_default()
                        })
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_else(|_| vec![None; chunk.len()]);
        for (((i, p), outcome), known) in chunk.into_iter().zip(availables) {
            let result = match outcome {
                Ok(applied) => match respond(ctx, &ops[*i], p, &applied, known).await {
                    Ok(r) => r,
                    Err(s) => error(&s),
                },
                Err(e) => error(&engine_status(&e)),
            };
            if let Some(slot) = results.get_mut(*i) {
                *slot = Some(result);
            }
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| error(&Status::internal("no result"))))
        .collect()
}
