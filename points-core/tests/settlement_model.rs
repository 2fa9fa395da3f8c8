//! Property test for settlement (issue 6): random sequences of redemptions, captures,
//! redemptions of catalogue items (issue 5), reversals, refunds, rate changes, period closes
//! and the passing of time, checked after every step
//! against an independent model that values money in integer milli-fen (no decimals):
//!
//! - money owed on every statement equals the sum over its entries at their rates, plus
//!   the carried residue, rounded half to even (the model's own rounding);
//! - every redemption, capture, item redemption and refund is on exactly one statement (or
//!   still in the open period): none settled twice, none skipped; the points a close moves
//!   to settled are exactly the points its statement lists;
//! - the reconciliation identity holds after every step, and the audit is clean;
//! - no fund ever pays more than its monthly budget, and what is owed is either paid or
//!   still deferred.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use points_core::*;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use std::collections::BTreeMap;

#[derive(Clone, Debug)]
enum Op {
    Redeem { member: u8, minor: i64 },
    Capture { member: u8, minor: i64 },
    Items { member: u8, quantity: u32 },
    Refund { pick: usize, minor: i64 },
    Reverse { pick: usize },
    Rate { milli_yuan: i64 },
    Close,
    Advance { ms: i64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..2, 1i64..1_500).prop_map(|(member, minor)| Op::Redeem { member, minor }),
        1 => (0u8..2, 1i64..1_500).prop_map(|(member, minor)| Op::Capture { member, minor }),
        3 => (0u8..2, 1u32..6).prop_map(|(member, quantity)| Op::Items { member, quantity }),
        2 => (any::<usize>(), 1i64..800).prop_map(|(pick, minor)| Op::Refund { pick, minor }),
        1 => any::<usize>().prop_map(|pick| Op::Reverse { pick }),
        1 => (0i64..400).prop_map(|milli_yuan| Op::Rate { milli_yuan }),
        2 => Just(Op::Close),
        1 => (1i64..(20 * DAY)).prop_map(|ms| Op::Advance { ms }),
    ]
}

/// The model: rates as integer thousandths of a yuan per point; with two decimal places
/// of points, `minor * milli_yuan` is exactly the value in thousandths of a fen.
#[derive(Default)]
struct Model {
    /// (effective from, milli-yuan per point), ascending.
    rates: Vec<(i64, i64)>,
    /// Spends: entry id -> (time, taken, refunded).
    spends: BTreeMap<EntryId, (i64, i64, i64)>,
    /// Spends reversed.
    reversed: std::collections::BTreeSet<EntryId>,
    spend_order: Vec<EntryId>,
    /// Lines of the open period: entry id -> milli-fen.
    open: BTreeMap<EntryId, i128>,
    /// Carried residue in milli-fen.
    carried: i128,
    /// Every line ever settled.
    settled: BTreeMap<EntryId, u32>,
    /// Owed and unpaid, in fen.
    deferred: i128,
    /// Paid by the fund per local month, in fen.
    paid: BTreeMap<i32, i128>,
}

/// The fund's budget in fen.
const BUDGET_FEN: i128 = 300;

/// Coffee at the cafe: 1.23 points each.
const COFFEE_MINOR: i64 = 123;

fn coffee() -> ItemId {
    ItemId::from_u128(0x701).unwrap()
}

/// The local month (UTC+8) of an instant, by the `time` crate's calendar.
fn month_of(ms: i64) -> i32 {
    let t =
        ::time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms + 8 * HOUR) * 1_000_000)
            .unwrap();
    t.year() * 12 + i32::from(u8::from(t.month())) - 1
}

impl Model {
    fn rate_at(&self, at: i64) -> i64 {
        self.rates
            .iter()
            .rev()
            .find(|(from, _)| *from <= at)
            .map_or(0, |(_, r)| *r)
    }
}

/// Half to even, from thousandths of a fen to fen, by integer arithmetic.
fn round_half_even(milli: i128) -> i128 {
    let q = milli.div_euclid(1000);
    let r = milli.rem_euclid(1000);
    match r.cmp(&500) {
        std::cmp::Ordering::Less => q,
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal => q + (q & 1),
    }
}

fn fen_to_milli(fen: rust_decimal::Decimal) -> i128 {
    let milli = fen * rust_decimal::Decimal::from(1000);
    assert_eq!(
        milli.fract(),
        rust_decimal::Decimal::ZERO,
        "{fen} is finer than the model"
    );
    i128::try_from(milli.trunc()).unwrap()
}

fn run(ops: &[Op], over: OverBudget) {
    let mut fx = Fx::standard();
    let fund = FundId::from_u128(0xf1).unwrap();
    fx.ok(
        admin(),
        Command::Settlement(SettlementCommand::CreateFund {
            id: fund,
            org_unit: comm_a(),
            name: "Fund".into(),
            budget_per_month_yuan: "3.00".parse().unwrap(),
        }),
    );
    fx.ok(
        admin(),
        Command::Settlement(SettlementCommand::SetMerchantFunds {
            merchant: cafe(),
            funds: vec![fund],
        }),
    );
    fx.ok(
        admin(),
        Command::Settlement(SettlementCommand::SetOverBudget(over)),
    );
    for member in [m_a(), m_a2()] {
        fx.earn(member, 600); // 100 points each
    }
    fx.ok(
        till_cafe(),
        Command::Catalogue(CatalogueCommand::ListItem {
            merchant: cafe(),
            item: coffee(),
            name: "Coffee".into(),
            price: Amount::new(rust_decimal::Decimal::new(COFFEE_MINOR, 2)),
            stock: 1_000_000,
        }),
    );
    let members = [m_a(), m_a2()];
    let mut model = Model::default();
    let mut closes: Vec<Settlement> = Vec::new();
    for op in ops {
        match op {
            Op::Redeem { .. } | Op::Capture { .. } | Op::Items { .. } => {
                let (member, minor) = match op {
                    Op::Redeem { member, minor } | Op::Capture { member, minor } => {
                        (*member, *minor)
                    }
                    Op::Items { member, quantity } => {
                        (*member, COFFEE_MINOR * i64::from(*quantity))
                    }
                    _ => unreachable!(),
                };
                let minor = &minor;
                let member = members[usize::from(member)];
                let amount = Amount::new(rust_decimal::Decimal::new(*minor, 2));
                let result = if let Op::Items { quantity, .. } = op {
                    fx.run(
                        till_cafe(),
                        Command::Catalogue(CatalogueCommand::RedeemItems {
                            member,
                            merchant: cafe(),
                            lines: vec![ItemLine {
                                item: coffee(),
                                quantity: *quantity,
                            }],
                        }),
                    )
                } else if matches!(op, Op::Redeem { .. }) {
                    fx.run(
                        till_cafe(),
                        Command::Redeem {
                            member,
                            merchant: cafe(),
                            amount,
                        },
                    )
                } else {
                    match fx.run(
                        till_cafe(),
                        Command::PlaceHold {
                            member,
                            merchant: cafe(),
                            amount,
                            ttl_ms: 60_000,
                        },
                    ) {
                        Ok(Applied::New(hold)) => fx.run(
                            till_cafe(),
                            Command::CaptureHold {
                                hold: hold.id(),
                                amount: None,
                            },
                        ),
                        other => other,
                    }
                };
                let now = fx.now.millis();
                let value = i128::from(*minor) * i128::from(model.rate_at(now));
                let exposure =
                    (model.open.values().sum::<i128>() + model.carried + model.deferred * 1000)
                        .max(0);
                let room = BUDGET_FEN - model.paid.get(&month_of(now)).copied().unwrap_or(0);
                let over_budget = value > 0 && exposure + value > room * 1000;
                if over == OverBudget::Refuse && matches!(op, Op::Redeem { .. } | Op::Items { .. })
                {
                    assert_eq!(
                        result == Err(Rejection::FundBudgetExceeded),
                        over_budget,
                        "refusal must follow the budget: {result:?}"
                    );
                }
                match result {
                    Ok(Applied::New(entry)) => {
                        assert!(over == OverBudget::Defer || !over_budget);
                        let at = entry.at().millis();
                        model.spends.insert(entry.id(), (at, *minor, 0));
                        model.spend_order.push(entry.id());
                        let value = i128::from(*minor) * i128::from(model.rate_at(at));
                        model.open.insert(entry.id(), value);
                    }
                    Err(Rejection::InsufficientPoints) => {}
                    Err(Rejection::FundBudgetExceeded) => {
                        assert_eq!(over, OverBudget::Refuse, "refused while deferring");
                        assert!(over_budget, "refused within budget");
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            Op::Refund { pick, minor } => {
                if model.spend_order.is_empty() {
                    continue;
                }
                let of = model.spend_order[pick % model.spend_order.len()];
                let (spent_at, taken, refunded) = model.spends[&of];
                let result = fx.run(
                    till_cafe(),
                    Command::Refund {
                        entry: of,
                        amount: Amount::new(rust_decimal::Decimal::new(*minor, 2)),
                    },
                );
                match result {
                    Ok(Applied::New(entry)) => {
                        assert!(refunded + minor <= taken);
                        model.spends.get_mut(&of).unwrap().2 += minor;
                        let value = -i128::from(*minor) * i128::from(model.rate_at(spent_at));
                        model.open.insert(entry.id(), value);
                    }
                    Err(Rejection::RefundOverTaken) => assert!(refunded + minor > taken),
                    Err(Rejection::AlreadyReversed) => assert!(model.reversed.contains(&of)),
                    other => panic!("unexpected {other:?}"),
                }
            }
            Op::Reverse { pick } => {
                if model.spend_order.is_empty() {
                    continue;
                }
                let of = model.spend_order[pick % model.spend_order.len()];
                let (spent_at, taken, refunded) = model.spends[&of];
                let result = fx.run(
                    admin(),
                    Command::Reverse {
                        entry: of,
                        reason: "till error".into(),
                    },
                );
                match result {
                    Ok(Applied::New(entry)) => {
                        assert!(refunded == 0 && !model.reversed.contains(&of));
                        model.reversed.insert(of);
                        let value = -i128::from(taken) * i128::from(model.rate_at(spent_at));
                        model.open.insert(entry.id(), value);
                    }
                    Err(Rejection::AlreadyReversed) => assert!(model.reversed.contains(&of)),
                    Err(Rejection::AlreadyRefunded) => assert!(refunded > 0),
                    other => panic!("unexpected {other:?}"),
                }
            }
            Op::Rate { milli_yuan } => {
                let from = fx.now.millis() + 1;
                fx.ok(
                    admin(),
                    Command::Settlement(SettlementCommand::SetMerchantRate {
                        merchant: cafe(),
                        yuan_per_point: rust_decimal::Decimal::new(*milli_yuan, 3),
                        effective_from: Timestamp::from_millis(from),
                    }),
                );
                model.rates.push((from, *milli_yuan));
                fx.advance(1);
            }
            Op::Close => {
                let period = u32::try_from(closes.len() + 1).unwrap();
                let entry = fx.ok(
                    rec_a(),
                    Command::Settlement(SettlementCommand::ClosePeriod {
                        merchant: cafe(),
                        period,
                    }),
                );
                let Event::Settlement(SettlementEvent::SettlementClosed(s)) = entry.event() else {
                    panic!("not a settlement");
                };
                // Money owed: the model's own sum and rounding.
                let exact: i128 = model.open.values().sum();
                assert_eq!(fen_to_milli(s.exact_fen), exact, "exact money");
                assert_eq!(fen_to_milli(s.carried_in_fen), model.carried);
                let owed = round_half_even(exact + model.carried);
                assert_eq!(i128::from(s.owed.get()), owed, "owed");
                model.carried = exact + model.carried - owed * 1000;
                assert_eq!(fen_to_milli(s.residue_fen), model.carried);
                assert!(model.carried.abs() <= 500, "residue within half a fen");
                // The statement lists exactly the model's open lines, at their values.
                let st = statement(&fx.ledger, s, &fx.journal);
                let listed: BTreeMap<EntryId, i128> = st
                    .lines
                    .iter()
                    .map(|l| (l.entry, fen_to_milli(l.money_fen)))
                    .collect();
                assert_eq!(listed.len(), st.lines.len());
                assert_eq!(listed, model.open, "statement lines");
                // What moves to settled is what the statement lists (the cafe had nothing
                // unsettled before its first period).
                assert_eq!(st.lines_points(), s.net_points, "settled points");
                assert_eq!(st.lines_fen(), s.exact_fen);
                for id in model.open.keys() {
                    *model.settled.entry(*id).or_insert(0) += 1;
                }
                model.open.clear();
                // Payment: the model's own budget arithmetic.
                let month = month_of(s.closed_at.millis());
                let payable = owed + model.deferred;
                let room = BUDGET_FEN - model.paid.get(&month).copied().unwrap_or(0);
                let pay = payable.clamp(0, room);
                assert_eq!(i128::from(s.paid().get()), pay, "paid");
                *model.paid.entry(month).or_insert(0) += pay;
                model.deferred = payable - pay;
                assert_eq!(i128::from(s.deferred_out.get()), model.deferred, "deferred");
                // Conservation of money: owed plus deferred in is paid or deferred out.
                assert_eq!(
                    s.owed.get() + s.deferred_in.get(),
                    s.paid().get() + s.deferred_out.get()
                );
                assert!(s.payments.iter().all(|p| p.amount.get() > 0));
                closes.push((**s).clone());
            }
            Op::Advance { ms } => fx.advance(*ms),
        }
        // After every step: reconciliation and the whole audit.
        let report = reconcile_journal(&fx.ledger, &fx.journal, fx.now);
        assert!(report.is_balanced(), "{report:#?}");
        fx.assert_audit_clean();
        for f in fx.ledger.funds() {
            for (_, paid) in f.paid_by_month {
                assert!(paid <= f.spec.budget_per_month, "fund over budget");
            }
        }
    }
    // No line settled twice; none skipped: every spend or refund is settled once or open.
    assert!(model.settled.values().all(|n| *n == 1), "settled twice");
    let mut lines = 0usize;
    for entry in &fx.journal {
        if matches!(
            entry.kind(),
            EntryKind::Redeemed
                | EntryKind::HoldCaptured
                | EntryKind::ItemsRedeemed
                | EntryKind::Refunded
                | EntryKind::Reversed
        ) {
            lines += 1;
            assert!(
                model.settled.contains_key(&entry.id()) || model.open.contains_key(&entry.id()),
                "entry {} skipped",
                entry.sequence()
            );
        }
    }
    assert_eq!(lines, model.settled.len() + model.open.len());
    assert_eq!(fx.ledger.settlements(cafe()), closes.as_slice());
}

#[test]
fn settlement_agrees_with_the_model() {
    let config = Config {
        cases: cases(512),
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    runner
        .run(
            &(
                proptest::collection::vec(op(), 5..40),
                prop_oneof![Just(OverBudget::Defer), Just(OverBudget::Refuse)],
            ),
            |(ops, over)| {
                run(&ops, over);
                Ok(())
            },
        )
        .unwrap();
}

fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
