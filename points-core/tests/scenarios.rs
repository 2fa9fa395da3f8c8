//! Scenario tests for the ledger: one row per rejection in precedence order, rows where two
//! faults meet and the lower code wins, and worked positive scenarios. Time is virtual: the
//! fixture's clock moves only when a test moves it.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use points_core::*;

/// What a row's setup produced, for its request and expectation to name.
#[derive(Default, Clone)]
struct Ctx {
    entry: Option<EntryId>,
    record: Option<RecordId>,
    request: Option<RequestId>,
}

impl Ctx {
    fn entry(entry: EntryId) -> Ctx {
        Ctx {
            entry: Some(entry),
            ..Ctx::default()
        }
    }
    fn record(record: RecordId) -> Ctx {
        Ctx {
            record: Some(record),
            ..Ctx::default()
        }
    }
    fn e(&self) -> EntryId {
        self.entry.expect("setup gave no entry")
    }
    fn r(&self) -> RecordId {
        self.record.expect("setup gave no record")
    }
}

/// One table row: a fixture builder, the request under test, and the exact rejection.
struct Row {
    name: &'static str,
    setup: fn(&mut Fx) -> Ctx,
    request: fn(&mut Fx, &Ctx) -> Request,
    expected: fn(&Ctx) -> Rejection,
}

fn nothing(_: &mut Fx) -> Ctx {
    Ctx::default()
}

fn unknown_record() -> RecordId {
    RecordId::from_u128(0xdead).unwrap()
}

fn redeem_cmd(member: MemberId, merchant: MerchantId, amount: &str) -> Command {
    Command::Redeem {
        member,
        merchant,
        amount: amt(amount),
    }
}

fn funded(fx: &mut Fx) -> Ctx {
    fx.earn(m_a(), 120); // 20.00 points
    Ctx::default()
}

fn funded_redemption(fx: &mut Fx) -> Ctx {
    fx.earn(m_a(), 120);
    Ctx::entry(fx.redeem(m_a(), cafe(), "8").id())
}

fn funded_hold(fx: &mut Fx) -> Ctx {
    fx.earn(m_a(), 120);
    Ctx::entry(fx.hold(m_a(), "5", 60_000))
}

fn expired_hold(fx: &mut Fx) -> Ctx {
    let ctx = funded_hold(fx);
    fx.advance(60_000);
    ctx
}

fn pending_record(fx: &mut Fx) -> Ctx {
    Ctx::record(fx.record(m_a(), patrol(), comm_a(), 60))
}

fn approved_record(fx: &mut Fx) -> Ctx {
    let record = fx.record(m_a(), patrol(), comm_a(), 60);
    let approval = fx.ok(
        rec_a(),
        Command::ApproveService {
            records: vec![record],
        },
    );
    Ctx {
        entry: Some(approval.id()),
        record: Some(record),
        request: None,
    }
}

fn reverse_cmd(entry: EntryId) -> Command {
    Command::Reverse {
        entry,
        reason: "entered by mistake".into(),
    }
}

fn capture(hold: EntryId, amount: Option<&str>) -> Command {
    Command::CaptureHold {
        hold,
        amount: amount.map(amt),
    }
}

/// A patrol record in A for `member`, starting `minutes` before `fx.now`.
fn service(fx: &Fx, member: MemberId, unit: OrgUnitId, minutes: u32) -> ServiceInput {
    ServiceInput {
        member,
        activity: patrol(),
        org_unit: unit,
        started_at: fx.now.saturating_add_millis(-i64::from(minutes) * MINUTE),
        minutes,
    }
}

/// One row per rejection, in code order.
fn rejection_rows() -> Vec<Row> {
    vec![
        Row {
            name: "request id reused for a different command",
            setup: |fx| {
                let request = fx.req(
                    admin(),
                    Command::CreateOrgUnit {
                        id: OrgUnitId::from_u128(99).unwrap(),
                        parent: Some(comm_a()),
                        name: "Estate 9".into(),
                        level: OrgLevel::Estate,
                    },
                );
                fx.apply(&request).unwrap();
                Ctx {
                    request: Some(request.request_id),
                    ..Ctx::default()
                }
            },
            request: |_, ctx| Request {
                request_id: ctx.request.unwrap(),
                actor: admin(),
                command: Command::CreateOrgUnit {
                    id: OrgUnitId::from_u128(99).unwrap(),
                    parent: Some(comm_a()),
                    name: "Estate nine".into(),
                    level: OrgLevel::Estate,
                },
            },
            expected: |_| Rejection::RequestIdReused,
        },
        Row {
            name: "blank org unit name",
            setup: nothing,
            request: |fx, _| {
                fx.req(
                    admin(),
                    Command::CreateOrgUnit {
                        id: OrgUnitId::from_u128(99).unwrap(),
                        parent: Some(comm_a()),
                        name: "  ".into(),
                        level: OrgLevel::Estate,
                    },
                )
            },
            expected: |_| Rejection::InvalidText,
        },
        Row {
            name: "redeem zero",
            setup: funded,
            request: |fx, _| fx.req(till_cafe(), redeem_cmd(m_a(), cafe(), "0")),
            expected: |_| Rejection::AmountNotPositive,
        },
        Row {
            name: "redeem a thousandth",
            setup: funded,
            request: |fx, _| fx.req(till_cafe(), redeem_cmd(m_a(), cafe(), "0.001")),
            expected: |_| Rejection::AmountTooPrecise,
        },
        Row {
            name: "redeem more than one amount can carry",
            setup: funded,
            request: |fx, _| fx.req(till_cafe(), redeem_cmd(m_a(), cafe(), "10000000000000.01")),
            expected: |_| Rejection::AmountOverflow,
        },
        Row {
            name: "service that started over a year ago",
            setup: nothing,
            request: |fx, _| {
                let mut record = service(fx, m_a(), comm_a(), 60);
                record.started_at = fx.now.saturating_add_millis(-400 * DAY);
                fx.req(
                    admin(),
                    Command::RecordService {
                        records: vec![record],
                    },
                )
            },
            expected: |_| Rejection::TimeOutOfRange,
        },
        Row {
            name: "service of zero minutes",
            setup: nothing,
            request: |fx, _| {
                let mut record = service(fx, m_a(), comm_a(), 60);
                record.minutes = 0;
                fx.req(
                    admin(),
                    Command::RecordService {
                        records: vec![record],
                    },
                )
            },
            expected: |_| Rejection::DurationOutOfRange,
        },
        Row {
            name: "a merchant rate effective now, not after (issue 6)",
            setup: nothing,
            request: |fx, _| {
                let now = fx.now;
                fx.req(admin(), settle_rate(cafe(), "0.05", now))
            },
            expected: |_| Rejection::EffectiveDateNotFuture,
        },
        Row {
            name: "approve nothing",
            setup: nothing,
            request: |fx, _| fx.req(admin(), Command::ApproveService { records: vec![] }),
            expected: |_| Rejection::BatchEmpty,
        },
        Row {
            name: "approve more than a batch",
            setup: nothing,
            request: |fx, _| {
                let records = (0..=MAX_BATCH as u128)
                    .map(|i| RecordId::from_u128(1_000 + i).unwrap())
                    .collect();
                fx.req(admin(), Command::ApproveService { records })
            },
            expected: |_| Rejection::BatchTooLarge,
        },
        Row {
            name: "approve the same record twice in one batch",
            setup: pending_record,
            request: |fx, ctx| {
                fx.req(
                    admin(),
                    Command::ApproveService {
                        records: vec![ctx.r(), ctx.r()],
                    },
                )
            },
            expected: |_| Rejection::DuplicateInBatch,
        },
        Row {
            name: "activity with coefficient zero",
            setup: nothing,
            request: |fx, _| {
                fx.req(
                    admin(),
                    Command::DefineActivity(activity(
                        ActivityId::from_u128(39).unwrap(),
                        comm_a(),
                        RuleInput::PerHour(amt("10")),
                        "0",
                        None,
                        None,
                        TimeKind::Credit,
                    )),
                )
            },
            expected: |_| Rejection::InvalidSetting,
        },
        Row {
            name: "transfer to oneself",
            setup: funded,
            request: |fx, _| {
                fx.req(
                    admin(),
                    Command::Transfer {
                        from: m_a(),
                        to: m_a(),
                        amount: amt("1"),
                    },
                )
            },
            expected: |_| Rejection::SameAccount,
        },
        Row {
            name: "enrol into an unknown org unit",
            setup: nothing,
            request: |fx, _| {
                fx.req(
                    admin(),
                    Command::EnrolMember {
                        id: MemberId::from_u128(19).unwrap(),
                        home: OrgUnitId::from_u128(98).unwrap(),
                        kind: MemberKind::Resident,
                        dual_registration: false,
                        card_code: None,
                    },
                )
            },
            expected: |_| Rejection::UnknownOrgUnit,
        },
        Row {
            name: "redeem for an unknown member",
            setup: nothing,
            request: |fx, _| {
                fx.req(
                    till_cafe(),
                    redeem_cmd(MemberId::from_u128(19).unwrap(), cafe(), "1"),
                )
            },
            expected: |_| Rejection::UnknownMember,
        },
        Row {
            name: "redeem at an unknown merchant",
            setup: funded,
            request: |fx, _| {
                fx.req(
                    admin(),
                    redeem_cmd(m_a(), MerchantId::from_u128(29).unwrap(), "1"),
                )
            },
            expected: |_| Rejection::UnknownMerchant,
        },
        Row {
            name: "merchant paid by an unknown fund (issue 6)",
            setup: nothing,
            request: |fx, _| {
                fx.req(
                    admin(),
                    Command::Settlement(SettlementCommand::SetMerchantFunds {
                        merchant: cafe(),
                        funds: vec![FundId::from_u128(0xf00d).unwrap()],
                    }),
                )
            },
            expected: |_| Rejection::UnknownFund,
        },
        Row {
            name: "record an unknown activity",
            setup: nothing,
            request: |fx, _| {
                let mut record = service(fx, m_a(), comm_a(), 60);
                record.activity = ActivityId::from_u128(39).unwrap();
                fx.req(
                    admin(),
                    Command::RecordService {
                        records: vec![record],
                    },
                )
            },
            expected: |_| Rejection::UnknownActivity,
        },
        Row {
            name: "donate to an unknown pool",
            setup: funded,
            request: |fx, _| {
                fx.req(
                    admin(),
                    Command::Donate {
                        member: m_a(),
                        pool: PoolId::from_u128(49).unwrap(),
                        amount: amt("1"),
                    },
                )
            },
            expected: |_| Rejection::UnknownPool,
        },
        Row {
            name: "capture an unknown hold",
            setup: nothing,
            request: |fx, _| {
                let hold = EntryId::for_sequence(program(), 9_999);
                fx.req(till_cafe(), capture(hold, None))
            },
            expected: |_| Rejection::UnknownHold,
        },
        Row {
            name: "approve an unknown record",
            setup: nothing,
            request: |fx, _| {
                fx.req(
                    admin(),
                    Command::ApproveService {
                        records: vec![unknown_record()],
                    },
                )
            },
            expected: |_| Rejection::UnknownRecord(unknown_record()),
        },
        Row {
            name: "refund an entry that is no spend",
            setup: |fx| Ctx::entry(fx.earn(m_a(), 60).id()),
            request: |fx, ctx| {
                fx.req(
                    till_cafe(),
                    Command::Refund {
                        entry: ctx.e(),
                        amount: amt("1"),
                    },
                )
            },
            expected: |_| Rejection::UnknownEntry,
        },
        Row {
            name: "enrol a member id twice",
            setup: nothing,
            request: |fx, _| {
                fx.req(
                    admin(),
                    Command::EnrolMember {
                        id: m_a(),
                        home: comm_a(),
                        kind: MemberKind::Resident,
                        dual_registration: false,
                        card_code: None,
                    },
                )
            },
            expected: |_| Rejection::AlreadyExists,
        },
        Row {
            name: "enrol with another member's card code",
            setup: nothing,
            request: |fx, _| {
                fx.req(
                    admin(),
                    Command::EnrolMember {
                        id: MemberId::from_u128(19).unwrap(),
                        home: comm_a(),
                        kind: MemberKind::Resident,
                        dual_registration: false,
                        card_code: Some("A-1".into()),
                    },
                )
            },
            expected: |_| Rejection::CardCodeTaken,
        },
        Row {
            name: "org unit seventeen levels below the root",
            setup: |fx| {
                let mut parent = district();
                for i in 0..u128::from(points_core::ledger::MAX_TREE_DEPTH) {
                    let id = OrgUnitId::from_u128(500 + i).unwrap();
                    fx.ok(
                        admin(),
                        Command::CreateOrgUnit {
                            id,
                            parent: Some(parent),
                            name: format!("level {}", i + 1),
                            level: OrgLevel::Other,
                        },
                    );
                    parent = id;
                }
                Ctx::default()
            },
            request: |fx, _| {
                let deepest = 500 + u128::from(points_core::ledger::MAX_TREE_DEPTH) - 1;
                fx.req(
                    admin(),
                    Command::CreateOrgUnit {
                        id: OrgUnitId::from_u128(600).unwrap(),
                        parent: Some(OrgUnitId::from_u128(deepest).unwrap()),
                        name: "too deep".into(),
                        level: OrgLevel::Other,
                    },
                )
            },
            expected: |_| Rejection::TreeTooDeep,
        },
        Row {
            name: "a till redeems into another merchant's account",
            setup: funded,
            request: |fx, _| fx.req(till_shop(), redeem_cmd(m_a(), cafe(), "1")),
            expected: |_| Rejection::ActorNotAllowed,
        },
        Row {
            name: "redeem at a suspended merchant",
            setup: |fx| {
                funded(fx);
                fx.ok(
                    admin(),
                    Command::SetMerchantStatus {
                        id: cafe(),
                        status: MerchantStatus::Suspended,
                    },
                );
                Ctx::default()
            },
            request: |fx, _| fx.req(till_cafe(), redeem_cmd(m_a(), cafe(), "1")),
            expected: |_| Rejection::MerchantSuspended,
        },
        Row {
            name: "serve outside the home community without dual registration",
            setup: nothing,
            request: |fx, _| {
                let record = service(fx, m_b(), comm_a(), 60);
                fx.req(
                    admin(),
                    Command::RecordService {
                        records: vec![record],
                    },
                )
            },
            expected: |_| Rejection::MemberNotEligible,
        },
        Row {
            name: "record an activity outside its org unit",
            setup: nothing,
            request: |fx, _| {
                // Patrol runs in A; m_b serves at home in B.
                let record = service(fx, m_b(), comm_b(), 60);
                fx.req(
                    admin(),
                    Command::RecordService {
                        records: vec![record],
                    },
                )
            },
            expected: |_| Rejection::ActivityNotAvailable,
        },
        Row {
            name: "release a hold twice",
            setup: |fx| {
                let ctx = funded_hold(fx);
                fx.ok(till_cafe(), Command::ReleaseHold { hold: ctx.e() });
                ctx
            },
            request: |fx, ctx| fx.req(till_cafe(), Command::ReleaseHold { hold: ctx.e() }),
            expected: |_| Rejection::HoldNotOpen,
        },
        Row {
            name: "close a settlement period twice (issue 6)",
            setup: |fx| {
                fx.ok(admin(), settle_close(cafe(), 1));
                Ctx::default()
            },
            request: |fx, _| fx.req(admin(), settle_close(cafe(), 1)),
            expected: |_| Rejection::PeriodAlreadyClosed,
        },
        Row {
            name: "capture a hold at its deadline",
            setup: expired_hold,
            request: |fx, ctx| fx.req(till_cafe(), capture(ctx.e(), None)),
            expected: |_| Rejection::HoldExpired,
        },
        Row {
            name: "close a settlement period ahead of the open one (issue 6)",
            setup: nothing,
            request: |fx, _| fx.req(admin(), settle_close(cafe(), 2)),
            expected: |_| Rejection::PeriodNotOpen,
        },
        Row {
            name: "capture more than the hold",
            setup: funded_hold,
            request: |fx, ctx| fx.req(till_cafe(), capture(ctx.e(), Some("5.01"))),
            expected: |_| Rejection::CaptureOverHold,
        },
        Row {
            name: "approve an approved record",
            setup: approved_record,
            request: |fx, ctx| {
                fx.req(
                    rec_a(),
                    Command::ApproveService {
                        records: vec![ctx.r()],
                    },
                )
            },
            expected: |ctx| Rejection::RecordNotPending(ctx.r()),
        },
        Row {
            name: "reverse a redemption twice",
            setup: |fx| {
                let ctx = funded_redemption(fx);
                fx.ok(admin(), reverse_cmd(ctx.e()));
                ctx
            },
            request: |fx, ctx| fx.req(admin(), reverse_cmd(ctx.e())),
            expected: |_| Rejection::AlreadyReversed,
        },
        Row {
            name: "reverse a partly refunded redemption",
            setup: |fx| {
                let ctx = funded_redemption(fx);
                fx.ok(
                    till_cafe(),
                    Command::Refund {
                        entry: ctx.e(),
                        amount: amt("1"),
                    },
                );
                ctx
            },
            request: |fx, ctx| fx.req(admin(), reverse_cmd(ctx.e())),
            expected: |_| Rejection::AlreadyRefunded,
        },
        Row {
            name: "refund more than was taken",
            setup: funded_redemption,
            request: |fx, ctx| {
                fx.req(
                    till_cafe(),
                    Command::Refund {
                        entry: ctx.e(),
                        amount: amt("8.01"),
                    },
                )
            },
            expected: |_| Rejection::RefundOverTaken,
        },
        Row {
            name: "reverse a refund",
            setup: |fx| {
                let ctx = funded_redemption(fx);
                let refund = fx.ok(
                    till_cafe(),
                    Command::Refund {
                        entry: ctx.e(),
                        amount: amt("1"),
                    },
                );
                Ctx::entry(refund.id())
            },
            request: |fx, ctx| fx.req(admin(), reverse_cmd(ctx.e())),
            expected: |_| Rejection::NotReversible,
        },
        Row {
            name: "expire points that have not expired",
            setup: funded,
            request: |fx, _| fx.req(Actor::System, Command::Expire { member: m_a() }),
            expected: |_| Rejection::NothingToExpire,
        },
        Row {
            name: "clinic twice in one day passes the daily cap",
            setup: |fx| {
                let first = fx.record(m_a(), clinic(), comm_a(), 60);
                fx.ok(
                    rec_d(),
                    Command::ApproveService {
                        records: vec![first],
                    },
                );
                Ctx::record(fx.record(m_a(), clinic(), comm_a(), 30))
            },
            request: |fx, ctx| {
                fx.req(
                    rec_d(),
                    Command::ApproveService {
                        records: vec![ctx.r()],
                    },
                )
            },
            expected: |ctx| Rejection::CapExceeded(ctx.r()),
        },
        Row {
            name: "redeem past the funds' budget when over-budget is refused (issue 6)",
            setup: |fx| {
                fund_cafe(fx, "1.00", "0.5", OverBudget::Refuse);
                funded(fx)
            },
            // 8 points at 0.5 yuan is 4 yuan; the fund has 1 yuan a month.
            request: |fx, _| fx.req(till_cafe(), redeem_cmd(m_a(), cafe(), "8")),
            expected: |_| Rejection::FundBudgetExceeded,
        },
        Row {
            name: "donate past the yearly cap",
            setup: |fx| {
                fx.earn(m_a(), 240); // 40
                fx.earn(m_a(), 240); // 80
                fx.earn(m_a(), 240); // 120
                fx.ok(
                    rec_a(),
                    Command::Donate {
                        member: m_a(),
                        pool: pool(),
                        amount: amt("60"),
                    },
                );
                Ctx::default()
            },
            request: |fx, _| {
                fx.req(
                    rec_a(),
                    Command::Donate {
                        member: m_a(),
                        pool: pool(),
                        amount: amt("40.01"),
                    },
                )
            },
            expected: |_| Rejection::DonationCapExceeded,
        },
        Row {
            name: "grant more than the cap per grant",
            setup: nothing,
            request: |fx, _| {
                fx.req(
                    rec_a(),
                    Command::Grant {
                        pool: pool(),
                        member: m_a(),
                        amount: amt("50.01"),
                    },
                )
            },
            expected: |_| Rejection::GrantCapExceeded,
        },
        Row {
            name: "redeem more than available",
            setup: funded,
            request: |fx, _| fx.req(till_cafe(), redeem_cmd(m_a(), cafe(), "20.01")),
            expected: |_| Rejection::InsufficientPoints,
        },
        Row {
            name: "grant more than the pool holds",
            setup: |fx| {
                funded(fx);
                fx.ok(
                    rec_a(),
                    Command::Donate {
                        member: m_a(),
                        pool: pool(),
                        amount: amt("3"),
                    },
                );
                Ctx::default()
            },
            request: |fx, _| {
                fx.req(
                    rec_a(),
                    Command::Grant {
                        pool: pool(),
                        member: m_a2(),
                        amount: amt("3.01"),
                    },
                )
            },
            expected: |_| Rejection::InsufficientPool,
        },
        Row {
            name: "approvals that would overflow a balance",
            setup: |fx| {
                let big = ActivityId::from_u128(38).unwrap();
                // 10^13 points a time is 10^15 minor units, the most one amount may be;
                // 9,300 of them pass i64::MAX.
                fx.ok(
                    admin(),
                    Command::DefineActivity(activity(
                        big,
                        comm_a(),
                        RuleInput::PerOccasion(amt("10000000000000")),
                        "1",
                        None,
                        None,
                        TimeKind::Credit,
                    )),
                );
                let one = ServiceInput {
                    activity: big,
                    ..service(fx, m_a(), comm_a(), 10)
                };
                let entry = fx.ok(
                    admin(),
                    Command::RecordService {
                        records: vec![one; 9_300],
                    },
                );
                assert_eq!(entry.kind(), EntryKind::ServiceRecorded);
                Ctx {
                    entry: Some(entry.id()),
                    ..Ctx::default()
                }
            },
            request: |fx, ctx| {
                let records = (0..9_300).map(|i| RecordId::for_record(ctx.e(), i));
                fx.req(
                    admin(),
                    Command::ApproveService {
                        records: records.collect(),
                    },
                )
            },
            expected: |_| Rejection::BalanceOverflow,
        },
    ]
}

/// Rows where a command is wrong in two ways: the lower code must win.
fn precedence_rows() -> Vec<Row> {
    vec![
        Row {
            name: "reused request id beats invalid text",
            setup: |fx| {
                let request = fx.req(till_cafe(), redeem_cmd(m_a(), cafe(), "0"));
                assert_eq!(fx.apply(&request), Err(Rejection::AmountNotPositive));
                // Rejections are not remembered, so use an id that did write something.
                fx.earn(m_a(), 60);
                let request = fx.req(till_cafe(), redeem_cmd(m_a(), cafe(), "1"));
                fx.apply(&request).unwrap();
                Ctx {
                    request: Some(request.request_id),
                    ..Ctx::default()
                }
            },
            request: |_, ctx| Request {
                request_id: ctx.request.unwrap(),
                actor: admin(),
                command: Command::CreateOrgUnit {
                    id: OrgUnitId::from_u128(99).unwrap(),
                    parent: None,
                    name: String::new(),
                    level: OrgLevel::Other,
                },
            },
            expected: |_| Rejection::RequestIdReused,
        },
        Row {
            name: "amount not positive beats unknown member",
            setup: nothing,
            request: |fx, _| {
                fx.req(
                    till_cafe(),
                    redeem_cmd(MemberId::from_u128(19).unwrap(), cafe(), "-1"),
                )
            },
            expected: |_| Rejection::AmountNotPositive,
        },
        Row {
            name: "same account beats unknown member",
            setup: nothing,
            request: |fx, _| {
                let ghost = MemberId::from_u128(19).unwrap();
                fx.req(
                    admin(),
                    Command::Transfer {
                        from: ghost,
                        to: ghost,
                        amount: amt("1"),
                    },
                )
            },
            expected: |_| Rejection::SameAccount,
        },
        Row {
            name: "unknown member beats unknown merchant",
            setup: nothing,
            request: |fx, _| {
                fx.req(
                    admin(),
                    redeem_cmd(
                        MemberId::from_u128(19).unwrap(),
                        MerchantId::from_u128(29).unwrap(),
                        "1",
                    ),
                )
            },
            expected: |_| Rejection::UnknownMember,
        },
        Row {
            name: "duplicate in batch beats unknown record",
            setup: nothing,
            request: |fx, _| {
                fx.req(
                    admin(),
                    Command::ApproveService {
                        records: vec![unknown_record(), unknown_record()],
                    },
                )
            },
            expected: |_| Rejection::DuplicateInBatch,
        },
        Row {
            name: "another merchant's till beats a suspended merchant and too few points",
            setup: |fx| {
                fx.ok(
                    admin(),
                    Command::SetMerchantStatus {
                        id: cafe(),
                        status: MerchantStatus::Suspended,
                    },
                );
                Ctx::default()
            },
            request: |fx, _| fx.req(till_shop(), redeem_cmd(m_a(), cafe(), "1")),
            expected: |_| Rejection::ActorNotAllowed,
        },
        Row {
            name: "suspended merchant beats too few points",
            setup: |fx| {
                fx.ok(
                    admin(),
                    Command::SetMerchantStatus {
                        id: cafe(),
                        status: MerchantStatus::Suspended,
                    },
                );
                Ctx::default()
            },
            request: |fx, _| fx.req(till_cafe(), redeem_cmd(m_a(), cafe(), "1")),
            expected: |_| Rejection::MerchantSuspended,
        },
        Row {
            name: "ineligible member beats activity not available",
            setup: nothing,
            request: |fx, _| {
                // m_b (home B, no dual registration) in the estate-less district root:
                // outside the home branch, and patrol (A) does not run in the district.
                let record = service(fx, m_b(), comm_a(), 60);
                let mut other = record.clone();
                other.member = m_a();
                other.org_unit = district();
                fx.req(
                    admin(),
                    Command::RecordService {
                        records: vec![other, record],
                    },
                )
            },
            expected: |_| Rejection::MemberNotEligible,
        },
        Row {
            name: "expired hold beats capture over hold",
            setup: expired_hold,
            request: |fx, ctx| fx.req(till_cafe(), capture(ctx.e(), Some("6"))),
            expected: |_| Rejection::HoldExpired,
        },
        Row {
            name: "already reversed beats refund over taken",
            setup: |fx| {
                let ctx = funded_redemption(fx);
                fx.ok(admin(), reverse_cmd(ctx.e()));
                ctx
            },
            request: |fx, ctx| {
                fx.req(
                    till_cafe(),
                    Command::Refund {
                        entry: ctx.e(),
                        amount: amt("100"),
                    },
                )
            },
            expected: |_| Rejection::AlreadyReversed,
        },
        Row {
            name: "donation cap beats too few points",
            setup: nothing,
            request: |fx, _| {
                fx.req(
                    rec_a(),
                    Command::Donate {
                        member: m_a2(),
                        pool: pool(),
                        amount: amt("100.01"),
                    },
                )
            },
            expected: |_| Rejection::DonationCapExceeded,
        },
        Row {
            name: "grant cap beats an empty pool",
            setup: nothing,
            request: |fx, _| {
                fx.req(
                    rec_a(),
                    Command::Grant {
                        pool: pool(),
                        member: m_a(),
                        amount: amt("51"),
                    },
                )
            },
            expected: |_| Rejection::GrantCapExceeded,
        },
    ]
}

fn run_rows(rows: Vec<Row>) {
    for row in rows {
        let mut fx = Fx::standard();
        let ctx = (row.setup)(&mut fx);
        let request = (row.request)(&mut fx, &ctx);
        let expected = (row.expected)(&ctx);
        assert_eq!(
            fx.apply(&request),
            Err(expected),
            "row {:?}: expected {} ({})",
            row.name,
            expected.reason(),
            expected.code()
        );
        fx.assert_audit_clean();
    }
}

#[test]
fn one_row_per_rejection_in_code_order() {
    let rows = rejection_rows();
    let placeholder = RecordId::from_u128(1).unwrap();
    // The table covers every rejection once, in precedence order. Compare by code, since
    // the record-carrying variants name the row's own record.
    let ctx = Ctx {
        entry: Some(EntryId::for_sequence(program(), 1)),
        record: Some(placeholder),
        request: None,
    };
    let table: Vec<u16> = rows.iter().map(|row| (row.expected)(&ctx).code()).collect();
    // The workflow rejections of issue 5 have their rows in tests/workflows.rs.
    let workflows = Rejection::volunteer_workflows();
    let all: Vec<u16> = Rejection::all(placeholder)
        .iter()
        .filter(|r| !workflows.contains(r))
        .map(Rejection::code)
        .collect();
    assert_eq!(table, all, "one row per rejection, in code order");
    run_rows(rows);
}

#[test]
fn lower_code_wins_when_two_rejections_apply() {
    let rows = precedence_rows();
    for row in &rows {
        let ctx = Ctx {
            entry: None,
            record: Some(unknown_record()),
            request: None,
        };
        assert!((row.expected)(&ctx).code() < Rejection::BalanceOverflow.code());
    }
    run_rows(rows);
}

// ------------------------------------------------------------------------------------------
// Positive scenarios
// ------------------------------------------------------------------------------------------

fn approve(fx: &mut Fx, actor: Actor, records: Vec<RecordId>) -> Vec<Award> {
    let entry = fx.ok(actor, Command::ApproveService { records });
    let Event::ServiceApproved { awards } = entry.event() else {
        panic!("not an approval")
    };
    awards.clone()
}

#[test]
fn approval_accrues_points_by_rule() {
    let mut fx = Fx::standard();
    // Per hour, pro rata: 90 minutes of a 10-an-hour patrol is 15 points.
    let r1 = fx.record(m_a(), patrol(), comm_a(), 90);
    // 7 minutes is 1.1666… points, rounded half to even to the minor unit: 1.17.
    let r2 = fx.record(m_a(), patrol(), comm_a(), 7);
    // 300 minutes are clamped to the per-occasion cap of 240: 40 points, 240 minutes.
    let r3 = fx.record(m_a(), patrol(), comm_a(), 300);
    let awards = approve(&mut fx, rec_a(), vec![r1, r2, r3]);
    let points: Vec<_> = awards.iter().map(|a| a.points).collect();
    assert_eq!(points, vec![pts("15"), pts("1.17"), pts("40")]);
    let minutes: Vec<_> = awards.iter().map(|a| a.minutes.get()).collect();
    assert_eq!(minutes, vec![90, 7, 240]);
    let b = fx.bal(m_a());
    assert_eq!(b.balance, pts("56.17"));
    assert_eq!(b.available, pts("56.17"));
    assert_eq!(b.credit_minutes.get(), 337);
    assert_eq!(b.honour_minutes.get(), 0);

    // Per occasion with a coefficient: 5 × 1.5 = 7.5 points whatever the length; honour
    // time. The dual-registered member from B may serve in A.
    let r4 = fx.record(m_dual(), clinic(), comm_a(), 600);
    let awards = approve(&mut fx, rec_d(), vec![r4]);
    assert_eq!(awards[0].points, pts("7.5"));
    assert_eq!(awards[0].minutes.get(), 600);
    assert_eq!(awards[0].time_kind, TimeKind::Honour);
    let b = fx.bal(m_dual());
    assert_eq!((b.balance, b.honour_minutes.get()), (pts("7.5"), 600));
    assert_eq!(fx.ledger.totals().issued, pts("63.67"));
    assert_eq!(fx.ledger.totals().credit_minutes.get(), 337);
    assert_eq!(fx.ledger.totals().honour_minutes.get(), 600);

    // Rejected records accrue nothing.
    let r5 = fx.record(m_a2(), patrol(), comm_a(), 60);
    fx.ok(
        rec_a(),
        Command::RejectService {
            records: vec![r5],
            reason: "not on the roster".into(),
        },
    );
    assert_eq!(fx.bal(m_a2()).balance, Points::ZERO);
    assert_eq!(
        fx.ledger.record(r5).map(|(_, status, _)| status),
        Some(RecordStatus::Rejected)
    );
    // A recorder of B may not approve service in A.
    let r6 = fx.record(m_a2(), patrol(), comm_a(), 60);
    assert_eq!(
        fx.run(rec_b(), Command::ApproveService { records: vec![r6] }),
        Err(Rejection::ActorNotAllowed)
    );
    fx.assert_audit_clean();
}

#[test]
fn holds_reserve_capture_release_and_lapse() {
    let mut fx = Fx::standard();
    fx.earn(m_a(), 240); // 40
    let hold = fx.hold(m_a(), "15", 600_000);
    let b = fx.bal(m_a());
    assert_eq!(
        (b.balance, b.held, b.available),
        (pts("40"), pts("15"), pts("25"))
    );
    // Holds count against what can be spent.
    assert_eq!(
        fx.run(till_cafe(), redeem_cmd(m_a(), cafe(), "25.01")),
        Err(Rejection::InsufficientPoints)
    );
    // Capture part: the rest is released.
    fx.ok(till_cafe(), capture(hold, Some("10")));
    let b = fx.bal(m_a());
    assert_eq!(
        (b.balance, b.held, b.available),
        (pts("30"), Points::ZERO, pts("30"))
    );
    assert_eq!(fx.taken(cafe()), pts("10"));
    assert_eq!(
        fx.run(till_cafe(), capture(hold, Some("1"))),
        Err(Rejection::HoldNotOpen)
    );

    // Release gives everything back.
    let hold = fx.hold(m_a(), "5", 600_000);
    assert_eq!(fx.bal(m_a()).available, pts("25"));
    fx.ok(till_cafe(), Command::ReleaseHold { hold });
    assert_eq!(fx.bal(m_a()).available, pts("30"));
    assert!(!fx.ledger.hold(hold).unwrap().open);

    // A hold past its deadline stops counting against available points, and a late
    // capture is told it expired.
    let hold = fx.hold(m_a(), "20", 60_000);
    assert_eq!(fx.bal(m_a()).available, pts("10"));
    fx.advance(59_999);
    assert_eq!(fx.bal(m_a()).available, pts("10"));
    fx.advance(1);
    let b = fx.bal(m_a());
    assert_eq!((b.held, b.available), (Points::ZERO, pts("30")));
    assert_eq!(
        fx.run(till_cafe(), capture(hold, Some("1"))),
        Err(Rejection::HoldExpired)
    );
    // The lapsed hold's points can be spent elsewhere; releasing it later still works.
    fx.redeem(m_a(), shop(), "30");
    fx.ok(till_cafe(), Command::ReleaseHold { hold });
    let b = fx.bal(m_a());
    assert_eq!((b.balance, b.available), (Points::ZERO, Points::ZERO));
    // Holds need points: none are left.
    assert_eq!(
        fx.run(
            till_cafe(),
            Command::PlaceHold {
                member: m_a(),
                merchant: cafe(),
                amount: amt("0.01"),
                ttl_ms: 1_000,
            }
        ),
        Err(Rejection::InsufficientPoints)
    );
    // A hold's time to live is bounded by the programme.
    fx.earn(m_a(), 60);
    assert_eq!(
        fx.run(
            till_cafe(),
            Command::PlaceHold {
                member: m_a(),
                merchant: cafe(),
                amount: amt("1"),
                ttl_ms: ProgramSpec::DEFAULT_MAX_HOLD_TTL_MS + 1,
            }
        ),
        Err(Rejection::DurationOutOfRange)
    );
    fx.assert_audit_clean();
}

#[test]
fn refunds_partial_and_over() {
    let mut fx = Fx::standard();
    fx.earn(m_a(), 240); // 40
    let spend = fx.redeem(m_a(), cafe(), "20").id();
    assert_eq!(fx.taken(cafe()), pts("20"));
    let refund = |amount: &str| Command::Refund {
        entry: spend,
        amount: amt(amount),
    };
    fx.ok(till_cafe(), refund("5"));
    assert_eq!(fx.bal(m_a()).balance, pts("25"));
    assert_eq!(
        fx.run(till_cafe(), refund("15.01")),
        Err(Rejection::RefundOverTaken)
    );
    // Only the merchant that took the points refunds them.
    assert_eq!(
        fx.run(till_shop(), refund("1")),
        Err(Rejection::ActorNotAllowed)
    );
    fx.ok(till_cafe(), refund("15"));
    assert_eq!(
        fx.run(till_cafe(), refund("0.01")),
        Err(Rejection::RefundOverTaken)
    );
    assert_eq!(fx.bal(m_a()).balance, pts("40"));
    assert_eq!(fx.taken(cafe()), Points::ZERO);

    // Captures are refundable too, and refunds still work at a suspended merchant.
    let hold = fx.hold(m_a(), "10", 60_000);
    let captured = fx.ok(till_cafe(), capture(hold, None)).id();
    fx.ok(
        admin(),
        Command::SetMerchantStatus {
            id: cafe(),
            status: MerchantStatus::Suspended,
        },
    );
    fx.ok(
        till_cafe(),
        Command::Refund {
            entry: captured,
            amount: amt("10"),
        },
    );
    assert_eq!(fx.bal(m_a()).balance, pts("40"));
    fx.assert_audit_clean();
}

#[test]
fn reversal_happens_once() {
    let mut fx = Fx::standard();
    let approval = fx.earn(m_a(), 240).id(); // 40
    let spend = fx.redeem(m_a(), cafe(), "15").id();
    fx.ok(rec_a(), reverse_cmd(spend));
    assert_eq!(fx.bal(m_a()).balance, pts("40"));
    assert_eq!(fx.taken(cafe()), Points::ZERO);
    assert_eq!(
        fx.run(rec_a(), reverse_cmd(spend)),
        Err(Rejection::AlreadyReversed)
    );
    // A reversed redemption cannot be refunded either.
    assert_eq!(
        fx.run(
            till_cafe(),
            Command::Refund {
                entry: spend,
                amount: amt("1")
            }
        ),
        Err(Rejection::AlreadyReversed)
    );
    // Merchants do not reverse.
    let spend = fx.redeem(m_a(), cafe(), "1").id();
    assert_eq!(
        fx.run(till_cafe(), reverse_cmd(spend)),
        Err(Rejection::ActorNotAllowed)
    );
    fx.ok(rec_a(), reverse_cmd(spend));

    // Reversing an approval takes the points and minutes back, and the record is reversed.
    fx.ok(rec_a(), reverse_cmd(approval));
    let b = fx.bal(m_a());
    assert_eq!((b.balance, b.credit_minutes.get()), (Points::ZERO, 0));
    assert_eq!(fx.ledger.totals().issued, Points::ZERO);
    assert_eq!(
        fx.run(rec_a(), reverse_cmd(approval)),
        Err(Rejection::AlreadyReversed)
    );
    // An approval whose points were spent cannot be reversed.
    let approval = fx.earn(m_a(), 60).id(); // 10
    fx.redeem(m_a(), cafe(), "5");
    assert_eq!(
        fx.run(rec_a(), reverse_cmd(approval)),
        Err(Rejection::InsufficientPoints)
    );
    fx.assert_audit_clean();
}

#[test]
fn transfer_keeps_lot_expiry() {
    let mut fx =
        Fx::with_spec(standard_spec().with_expiry(ExpiryPolicy::MonthsAfterEarning { months: 3 }));
    fx.earn(m_a(), 60); // 10, expires in three months
    fx.advance(40 * DAY);
    fx.earn(m_a(), 120); // 20, expires forty days later
    let lots = fx.ledger.lots(m_a()).unwrap().to_vec();
    assert_eq!(lots.len(), 2);
    assert!(lots[0].expires_at < lots[1].expires_at);
    // 15 points: all of the older lot and 5 of the newer, each keeping its expiry.
    fx.ok(
        rec_a(),
        Command::Transfer {
            from: m_a(),
            to: m_a2(),
            amount: amt("15"),
        },
    );
    let received = fx.ledger.lots(m_a2()).unwrap().to_vec();
    assert_eq!(
        received,
        vec![
            Lot {
                expires_at: lots[0].expires_at,
                remaining: pts("10")
            },
            Lot {
                expires_at: lots[1].expires_at,
                remaining: pts("5")
            },
        ]
    );
    assert_eq!(
        fx.ledger.lots(m_a()).unwrap(),
        &[Lot {
            expires_at: lots[1].expires_at,
            remaining: pts("15")
        }]
    );
    // Transfers are checked against available points, and a recorder acts only on
    // members at home in its subtree.
    assert_eq!(
        fx.run(
            rec_a(),
            Command::Transfer {
                from: m_a(),
                to: m_b(),
                amount: amt("15.01")
            }
        ),
        Err(Rejection::InsufficientPoints)
    );
    assert_eq!(
        fx.run(
            rec_b(),
            Command::Transfer {
                from: m_a(),
                to: m_b(),
                amount: amt("1")
            }
        ),
        Err(Rejection::ActorNotAllowed)
    );
    fx.assert_audit_clean();
}

#[test]
fn donations_and_grants_move_points_through_the_pool() {
    let mut fx = Fx::standard();
    fx.earn(m_a(), 240); // 40
    let donation = fx
        .ok(
            rec_a(),
            Command::Donate {
                member: m_a(),
                pool: pool(),
                amount: amt("30"),
            },
        )
        .id();
    assert_eq!(fx.pool_balance(), pts("30"));
    assert_eq!(fx.bal(m_a()).balance, pts("10"));
    let grant = fx
        .ok(
            rec_a(),
            Command::Grant {
                pool: pool(),
                member: m_b(),
                amount: amt("12.5"),
            },
        )
        .id();
    assert_eq!(fx.pool_balance(), pts("17.5"));
    assert_eq!(fx.bal(m_b()).balance, pts("12.5"));
    // Grants expire under the programme's policy, from the grant.
    assert_eq!(fx.ledger.lots(m_b()).unwrap().len(), 1);
    assert_eq!(
        fx.run(
            rec_a(),
            Command::Grant {
                pool: pool(),
                member: m_b(),
                amount: amt("17.51")
            }
        ),
        Err(Rejection::InsufficientPool)
    );
    // A recorder of B may not grant from A's pool.
    assert_eq!(
        fx.run(
            rec_b(),
            Command::Grant {
                pool: pool(),
                member: m_b(),
                amount: amt("1")
            }
        ),
        Err(Rejection::ActorNotAllowed)
    );
    // The donation cannot be reversed while the pool is short of it.
    assert_eq!(
        fx.run(rec_a(), reverse_cmd(donation)),
        Err(Rejection::InsufficientPool)
    );
    fx.ok(rec_a(), reverse_cmd(grant));
    assert_eq!(fx.bal(m_b()).balance, Points::ZERO);
    fx.ok(rec_a(), reverse_cmd(donation));
    assert_eq!(fx.pool_balance(), Points::ZERO);
    assert_eq!(fx.bal(m_a()).balance, pts("40"));
    fx.assert_audit_clean();
}

#[test]
fn end_of_year_expiry_moves_only_expired_lots() {
    let mut fx = Fx::standard(); // EndOfYear { years_after: 0 }, UTC+8
    fx.earn(m_a(), 120); // 20, earned 2026-09-21, expires 2027-01-01T00:00+08:00
    let first_expiry = fx.ledger.lots(m_a()).unwrap()[0].expires_at;
    assert_eq!(first_expiry.to_string(), "2026-12-31T16:00:00.000Z");
    // Move to 2027-01-01T01:00+08:00 and earn again: that lot lasts until 2028.
    fx.now = first_expiry.saturating_add_millis(HOUR);
    fx.earn(m_a(), 60); // 10
    let lots = fx.ledger.lots(m_a()).unwrap().to_vec();
    assert_eq!(lots.len(), 2);
    assert_eq!(lots[1].expires_at.to_string(), "2027-12-31T16:00:00.000Z");
    assert_eq!(fx.ledger.members_with_expired_lots(fx.now), vec![m_a()]);
    // Until the expiry entry is written the expired points are still in the balance.
    assert_eq!(fx.bal(m_a()).balance, pts("30"));
    fx.ok(Actor::System, Command::Expire { member: m_a() });
    assert_eq!(fx.bal(m_a()).balance, pts("10"));
    assert_eq!(fx.ledger.totals().expired, pts("20"));
    assert_eq!(fx.ledger.lots(m_a()).unwrap(), &lots[1..]);
    assert_eq!(
        fx.run(Actor::System, Command::Expire { member: m_a() }),
        Err(Rejection::NothingToExpire)
    );
    // Members whose lots have not expired are untouched.
    assert!(fx.ledger.members_with_expired_lots(fx.now).is_empty());
    fx.assert_audit_clean();
}

#[test]
fn months_after_earning_expiry_never_takes_held_points() {
    let mut fx =
        Fx::with_spec(standard_spec().with_expiry(ExpiryPolicy::MonthsAfterEarning { months: 1 }));
    fx.earn(m_a(), 60); // 10, earned 2026-09-21 (local), expires 2026-10-21T00:00+08:00
    let expiry = fx.ledger.lots(m_a()).unwrap()[0].expires_at;
    assert_eq!(expiry.to_string(), "2026-10-20T16:00:00.000Z");
    // A hold placed an hour before expiry is still open after it.
    fx.now = expiry.saturating_add_millis(-HOUR);
    let hold = fx.hold(m_a(), "8", DAY as u64);
    assert_eq!(
        fx.run(Actor::System, Command::Expire { member: m_a() }),
        Err(Rejection::NothingToExpire)
    );
    fx.now = expiry;
    fx.ok(Actor::System, Command::Expire { member: m_a() });
    let b = fx.bal(m_a());
    assert_eq!(
        (b.balance, b.held, b.available),
        (pts("8"), pts("8"), Points::ZERO)
    );
    // Nothing more can expire while the hold is open.
    assert_eq!(
        fx.run(Actor::System, Command::Expire { member: m_a() }),
        Err(Rejection::NothingToExpire)
    );
    // Released, the rest expires too.
    fx.ok(till_cafe(), Command::ReleaseHold { hold });
    fx.ok(Actor::System, Command::Expire { member: m_a() });
    assert_eq!(fx.bal(m_a()).balance, Points::ZERO);
    assert_eq!(fx.ledger.totals().expired, pts("10"));

    // A hold that lapses stops protecting points from expiry.
    fx.earn(m_a(), 60);
    let expiry = fx.ledger.lots(m_a()).unwrap()[0].expires_at;
    fx.now = expiry.saturating_add_millis(-HOUR);
    let hold = fx.hold(m_a(), "4", (2 * HOUR) as u64);
    fx.now = expiry.saturating_add_millis(30 * MINUTE);
    fx.ok(Actor::System, Command::Expire { member: m_a() });
    assert_eq!(fx.bal(m_a()).balance, pts("4"));
    fx.now = expiry.saturating_add_millis(HOUR);
    fx.ok(Actor::System, Command::Expire { member: m_a() });
    assert_eq!(fx.bal(m_a()).balance, Points::ZERO);
    assert_eq!(
        fx.run(till_cafe(), capture(hold, None)),
        Err(Rejection::HoldExpired)
    );
    fx.assert_audit_clean();
}

#[test]
fn idempotent_retry_writes_nothing_and_reuse_is_refused() {
    let mut fx = Fx::standard();
    fx.earn(m_a(), 120); // 20
    let request = fx.req(till_cafe(), redeem_cmd(m_a(), cafe(), "12.5"));
    let Ok(Applied::New(first)) = fx.apply(&request) else {
        panic!("first try must write")
    };
    let journal_len = fx.journal.len();
    let head = fx.ledger.head_hash();
    // The same request again, even later and with the amount written differently.
    fx.advance(5 * MINUTE);
    let retry = Request {
        command: redeem_cmd(m_a(), cafe(), "12.50"),
        ..request.clone()
    };
    for attempt in [&request, &retry] {
        assert_eq!(
            fx.apply(attempt),
            Ok(Applied::Duplicate {
                sequence: first.sequence(),
                id: first.id()
            })
        );
    }
    assert_eq!(fx.journal.len(), journal_len);
    assert_eq!(fx.ledger.head_hash(), head);
    assert_eq!(fx.bal(m_a()).balance, pts("7.5"));
    // The same id with a different command, or a different actor, is refused.
    let reused = Request {
        command: redeem_cmd(m_a(), cafe(), "1"),
        ..request.clone()
    };
    assert_eq!(fx.apply(&reused), Err(Rejection::RequestIdReused));
    let reused = Request {
        actor: admin(),
        ..request.clone()
    };
    assert_eq!(fx.apply(&reused), Err(Rejection::RequestIdReused));

    // A rejected request is not remembered: its retry is decided afresh.
    let request = fx.req(till_cafe(), redeem_cmd(m_a(), cafe(), "10"));
    assert_eq!(fx.apply(&request), Err(Rejection::InsufficientPoints));
    fx.earn(m_a(), 60);
    assert!(matches!(fx.apply(&request), Ok(Applied::New(_))));

    // After a restart from the journal a retry is still a duplicate.
    let mut replayed = Ledger::replay(&fx.journal).unwrap();
    assert!(matches!(
        replayed.apply(&request, fx.now),
        Ok(Applied::Duplicate { .. })
    ));
    fx.assert_audit_clean();
}

#[test]
fn time_never_runs_backwards() {
    let mut fx = Fx::standard();
    fx.earn(m_a(), 60);
    let last = fx.ledger.last_at();
    fx.now = last.saturating_add_millis(-DAY);
    let entry = fx.redeem(m_a(), cafe(), "1");
    assert_eq!(entry.at(), last);
    fx.assert_audit_clean();
}

// ------------------------------------------------------------------------------------------
// Settlement helpers (issue 6)
// ------------------------------------------------------------------------------------------

fn settle_rate(merchant: MerchantId, yuan: &str, effective_from: Timestamp) -> Command {
    Command::Settlement(SettlementCommand::SetMerchantRate {
        merchant,
        yuan_per_point: yuan.parse().unwrap(),
        effective_from,
    })
}

fn settle_close(merchant: MerchantId, period: u32) -> Command {
    Command::Settlement(SettlementCommand::ClosePeriod { merchant, period })
}

/// Gives the cafe one fund of `budget` yuan a month, a rate of `rate` yuan per point in
/// force from the next millisecond (the clock moves past it), and the over-budget setting.
fn fund_cafe(fx: &mut Fx, budget: &str, rate: &str, over: OverBudget) {
    let fund = FundId::from_u128(0xf1).unwrap();
    fx.ok(
        admin(),
        Command::Settlement(SettlementCommand::CreateFund {
            id: fund,
            org_unit: comm_a(),
            name: "Autonomy fund".into(),
            budget_per_month_yuan: budget.parse().unwrap(),
        }),
    );
    fx.ok(
        admin(),
        Command::Settlement(SettlementCommand::SetMerchantFunds {
            merchant: cafe(),
            funds: vec![fund],
        }),
    );
    let from = fx.now.saturating_add_millis(1);
    fx.ok(admin(), settle_rate(cafe(), rate, from));
    fx.ok(
        admin(),
        Command::Settlement(SettlementCommand::SetOverBudget(over)),
    );
    fx.advance(1);
}
