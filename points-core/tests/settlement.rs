//! Scenario tests for merchant settlement in money (issue 6): budgets under both
//! over-budget settings, a late refund, a rate change in the middle of a period, rounding
//! with the residue carried, statements and their CSV, and reconciliation.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use points_core::*;
use rust_decimal::Decimal;

fn d(text: &str) -> Decimal {
    text.parse().unwrap()
}

fn fund_a() -> FundId {
    FundId::from_u128(0xf1).unwrap()
}

fn fund_b() -> FundId {
    FundId::from_u128(0xf2).unwrap()
}

fn settle(fx: &mut Fx, command: SettlementCommand) -> Entry {
    fx.ok(admin(), Command::Settlement(command))
}

fn create_fund(fx: &mut Fx, id: FundId, budget: &str) {
    settle(
        fx,
        SettlementCommand::CreateFund {
            id,
            org_unit: comm_a(),
            name: format!("fund {id}"),
            budget_per_month_yuan: d(budget),
        },
    );
}

/// Sets the cafe's rate from the next millisecond and moves the clock onto it.
fn set_rate(fx: &mut Fx, yuan: &str) {
    let from = fx.now.saturating_add_millis(1);
    settle(
        fx,
        SettlementCommand::SetMerchantRate {
            merchant: cafe(),
            yuan_per_point: d(yuan),
            effective_from: from,
        },
    );
    fx.advance(1);
}

/// The cafe paid by `funds`, at `rate`, under `over`.
fn setup(fx: &mut Fx, funds: &[(FundId, &str)], rate: &str, over: OverBudget) {
    for (id, budget) in funds {
        create_fund(fx, *id, budget);
    }
    settle(
        fx,
        SettlementCommand::SetMerchantFunds {
            merchant: cafe(),
            funds: funds.iter().map(|(id, _)| *id).collect(),
        },
    );
    settle(fx, SettlementCommand::SetOverBudget(over));
    set_rate(fx, rate);
}

fn close(fx: &mut Fx) -> Settlement {
    let period = fx.ledger.merchant_money(cafe()).unwrap().open_period;
    let entry = settle(
        fx,
        SettlementCommand::ClosePeriod {
            merchant: cafe(),
            period,
        },
    );
    match entry.event() {
        Event::Settlement(SettlementEvent::SettlementClosed(s)) => (**s).clone(),
        other => panic!("expected a settlement, got {other:?}"),
    }
}

fn statement_of(fx: &Fx, s: &Settlement) -> Statement {
    statement(&fx.ledger, s, &fx.journal)
}

fn assert_reconciled(fx: &Fx) {
    let report = reconcile_journal(&fx.ledger, &fx.journal, fx.now);
    assert!(report.is_balanced(), "{report:#?}");
    fx.assert_audit_clean();
}

#[test]
fn budget_exhausted_refuse_setting_refuses_at_redeem() {
    let mut fx = Fx::standard();
    // 10 yuan a month at 0.5 yuan per point: 20 points' worth.
    setup(&mut fx, &[(fund_a(), "10")], "0.5", OverBudget::Refuse);
    fx.earn(m_a(), 240); // 40 points
    fx.redeem(m_a(), cafe(), "15"); // 7.50 yuan
    let over = fx.run(
        till_cafe(),
        Command::Redeem {
            member: m_a(),
            merchant: cafe(),
            amount: amt("5.01"),
        },
    );
    assert_eq!(over, Err(Rejection::FundBudgetExceeded));
    assert_eq!(over.unwrap_err().code(), 605);
    // Exactly up to the budget is fine.
    fx.redeem(m_a(), cafe(), "5");
    let s = close(&mut fx);
    assert_eq!(s.owed, Fen::new(1000));
    assert_eq!(
        s.payments,
        vec![FundPayment {
            fund: fund_a(),
            amount: Fen::new(1000)
        }]
    );
    assert_eq!(s.deferred_out, Fen::ZERO);
    // The month's budget is spent: even one point is refused until next month.
    let one = Command::Redeem {
        member: m_a(),
        merchant: cafe(),
        amount: amt("1"),
    };
    assert_eq!(
        fx.run(till_cafe(), one.clone()),
        Err(Rejection::FundBudgetExceeded)
    );
    // A capture is a redemption too.
    let hold = fx.hold(m_a(), "1", 60_000);
    assert_eq!(
        fx.run(till_cafe(), Command::CaptureHold { hold, amount: None }),
        Err(Rejection::FundBudgetExceeded)
    );
    fx.ok(till_cafe(), Command::ReleaseHold { hold });
    fx.advance(35 * DAY);
    fx.ok(till_cafe(), one);
    assert_reconciled(&fx);
}

#[test]
fn budget_exhausted_defer_setting_accepts_and_pays_from_next_budget() {
    let mut fx = Fx::standard();
    setup(
        &mut fx,
        &[(fund_a(), "3"), (fund_b(), "2")],
        "0.5",
        OverBudget::Defer,
    );
    fx.earn(m_a(), 240); // 40 points
    fx.redeem(m_a(), cafe(), "30"); // 15 yuan against 5 yuan of budget: accepted
    let first = close(&mut fx);
    assert_eq!(first.owed, Fen::new(1500));
    // Funds pay in order, each up to its budget; the rest waits.
    assert_eq!(
        first.payments,
        vec![
            FundPayment {
                fund: fund_a(),
                amount: Fen::new(300)
            },
            FundPayment {
                fund: fund_b(),
                amount: Fen::new(200)
            },
        ]
    );
    assert_eq!(first.deferred_out, Fen::new(1000));
    // Closing again in the same month pays nothing more: the budgets are spent.
    let second = close(&mut fx);
    assert_eq!(second.deferred_in, Fen::new(1000));
    assert!(second.payments.is_empty());
    assert_eq!(second.deferred_out, Fen::new(1000));
    // Next month's budget pays what waited.
    fx.advance(35 * DAY);
    let third = close(&mut fx);
    assert_eq!(third.paid(), Fen::new(500));
    assert_eq!(third.deferred_out, Fen::new(500));
    for fund in fx.ledger.funds() {
        for (_, paid) in &fund.paid_by_month {
            assert!(
                *paid <= fund.spec.budget_per_month,
                "a fund paid over budget"
            );
        }
    }
    assert_reconciled(&fx);
}

#[test]
fn refund_after_close_lands_in_the_next_period() {
    let mut fx = Fx::standard();
    setup(&mut fx, &[(fund_a(), "1000")], "0.1", OverBudget::Defer);
    fx.earn(m_a(), 120); // 20 points
    let sale = fx.redeem(m_a(), cafe(), "10");
    let first = close(&mut fx);
    assert_eq!(first.net_points, pts("10"));
    assert_eq!(first.owed, Fen::new(100));
    assert_eq!(fx.ledger.settled_points(cafe()), pts("10"));
    assert_eq!(fx.taken(cafe()), Points::ZERO);
    fx.advance(MINUTE);
    let refund = fx.ok(
        till_cafe(),
        Command::Refund {
            entry: sale.id(),
            amount: amt("4"),
        },
    );
    // The closed period is untouched; the refund is in the open one.
    let first_again = fx.ledger.settlement(cafe(), 1).unwrap().clone();
    assert_eq!(first_again, first);
    assert_eq!(statement_of(&fx, &first).lines.len(), 1);
    let second = close(&mut fx);
    assert_eq!(second.period, 2);
    assert_eq!(second.net_points, Points::from_minor(-400));
    assert_eq!(second.owed, Fen::new(-40));
    let lines = statement_of(&fx, &second).lines;
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0].entry, refund.id());
    assert_eq!(lines[0].kind, LineKind::Refund);
    assert_eq!(lines[0].corrects, Some(sale.id()));
    // A credit is not paid; it is set against what the merchant is owed next.
    assert!(second.payments.is_empty());
    assert_eq!(second.deferred_out, Fen::new(-40));
    fx.redeem(m_a(), cafe(), "10");
    let third = close(&mut fx);
    assert_eq!(third.owed, Fen::new(100));
    assert_eq!(third.paid(), Fen::new(60));
    assert_reconciled(&fx);
}

#[test]
fn rate_change_mid_period_values_each_entry_at_its_rate() {
    let mut fx = Fx::standard();
    setup(&mut fx, &[(fund_a(), "1000")], "0.1", OverBudget::Defer);
    fx.earn(m_a(), 240); // 40 points
    let early = fx.redeem(m_a(), cafe(), "10"); // at 0.1: 1 yuan
    set_rate(&mut fx, "0.25");
    let late = fx.redeem(m_a(), cafe(), "10"); // at 0.25: 2.5 yuan
                                               // A refund of the early sale after the change is valued at the early rate.
    fx.ok(
        till_cafe(),
        Command::Refund {
            entry: early.id(),
            amount: amt("2"),
        },
    );
    let s = close(&mut fx);
    let st = statement_of(&fx, &s);
    let rates: Vec<String> = st.lines.iter().map(|l| l.rate.to_string()).collect();
    assert_eq!(rates, ["0.1", "0.25", "0.1"]);
    assert_eq!(st.lines[1].entry, late.id());
    assert_eq!(s.exact_fen, d("330")); // 100 + 250 - 20
    assert_eq!(st.lines_fen(), s.exact_fen);
    assert_eq!(s.owed, Fen::new(330));
    // A rate set later does not change the closed statement.
    set_rate(&mut fx, "9");
    assert_eq!(statement_of(&fx, &s), st);
    // Backdating is refused.
    let now = fx.now;
    assert_eq!(
        fx.run(
            admin(),
            Command::Settlement(SettlementCommand::SetMerchantRate {
                merchant: cafe(),
                yuan_per_point: d("1"),
                effective_from: now,
            })
        ),
        Err(Rejection::EffectiveDateNotFuture)
    );
    assert_reconciled(&fx);
}

#[test]
fn rounding_is_half_even_and_the_residue_is_carried() {
    let mut fx = Fx::standard();
    setup(&mut fx, &[(fund_a(), "1000")], "0.025", OverBudget::Defer);
    fx.earn(m_a(), 120);
    // 1 point at 0.025 yuan is 2.5 fen: half to even gives 2, residue 0.5 carried.
    fx.redeem(m_a(), cafe(), "1");
    let first = close(&mut fx);
    assert_eq!(first.owed, Fen::new(2));
    assert_eq!(first.residue_fen, d("0.5"));
    // 1 point more: 2.5 + 0.5 carried = 3 fen exactly.
    fx.redeem(m_a(), cafe(), "1");
    let second = close(&mut fx);
    assert_eq!(second.carried_in_fen, d("0.5"));
    assert_eq!(second.owed, Fen::new(3));
    assert_eq!(second.residue_fen, Decimal::ZERO);
    // 3.5 fen rounds to 4 (even), residue -0.5.
    fx.redeem(m_a(), cafe(), "1.4");
    let third = close(&mut fx);
    assert_eq!(third.owed, Fen::new(4));
    assert_eq!(third.residue_fen, d("-0.5"));
    let st = statement_of(&fx, &third);
    assert!(st.rounding.contains("half-even"));
    assert_reconciled(&fx);
}

#[test]
fn statement_csv_lists_every_line_and_the_summary() {
    let mut fx = Fx::standard();
    setup(&mut fx, &[(fund_a(), "1000")], "0.1", OverBudget::Defer);
    fx.earn(m_a(), 240);
    let sale = fx.redeem(m_a(), cafe(), "10");
    let hold = fx.hold(m_a(), "5", 60_000);
    fx.ok(
        till_cafe(),
        Command::CaptureHold {
            hold,
            amount: Some(amt("3")),
        },
    );
    fx.ok(
        till_cafe(),
        Command::Refund {
            entry: sale.id(),
            amount: amt("1"),
        },
    );
    // A redemption at another merchant is not on the cafe's statement.
    fx.redeem(m_a(), shop(), "1");
    let s = close(&mut fx);
    let csv = statement_of(&fx, &s).to_csv(fx.ledger.spec().scale());
    let rows: Vec<&str> = csv.lines().filter(|l| !l.starts_with('#')).collect();
    assert_eq!(rows.len(), 4, "{csv}");
    assert!(rows[0].starts_with("sequence,entry_id"));
    assert!(rows[1].contains(",redemption,"), "{csv}");
    assert!(rows[1].ends_with(",10.00,0.1,1"), "{csv}");
    assert!(rows[2].contains(",capture,"));
    assert!(rows[3].contains(",refund,") && rows[3].contains(&sale.id().to_string()));
    assert!(csv.contains("# owed_yuan,1.20\n"), "{csv}");
    assert!(csv.contains("# net_points,12.00\n"), "{csv}");
    assert!(csv.contains("# rounding,half-even"));
}

#[test]
fn only_admins_and_recorders_over_the_merchant_close_periods() {
    let mut fx = Fx::standard();
    let close_cafe = Command::Settlement(SettlementCommand::ClosePeriod {
        merchant: cafe(),
        period: 1,
    });
    assert_eq!(
        fx.run(till_cafe(), close_cafe.clone()),
        Err(Rejection::ActorNotAllowed)
    );
    assert_eq!(
        fx.run(rec_b(), close_cafe.clone()),
        Err(Rejection::ActorNotAllowed)
    );
    fx.ok(rec_a(), close_cafe);
    assert_eq!(
        fx.run(
            rec_a(),
            Command::Settlement(SettlementCommand::SetOverBudget(OverBudget::Refuse))
        ),
        Err(Rejection::ActorNotAllowed)
    );
}

#[test]
fn settlement_survives_replay_and_snapshot() {
    let mut fx = Fx::standard();
    setup(&mut fx, &[(fund_a(), "5")], "0.3", OverBudget::Defer);
    fx.earn(m_a(), 240);
    fx.redeem(m_a(), cafe(), "33.33");
    close(&mut fx);
    fx.redeem(m_a(), cafe(), "1");
    let replayed = Ledger::replay(&fx.journal).unwrap();
    assert_eq!(replayed.settlements(cafe()), fx.ledger.settlements(cafe()));
    assert_eq!(
        replayed.merchant_money(cafe()),
        fx.ledger.merchant_money(cafe())
    );
    let restored = Ledger::from_snapshot(&fx.ledger.snapshot()).unwrap();
    assert_eq!(
        restored.merchant_money(cafe()),
        fx.ledger.merchant_money(cafe())
    );
    assert_eq!(restored.funds(), fx.ledger.funds());
    assert_reconciled(&fx);
}

#[test]
fn reconciliation_per_org_unit_follows_points_across_units() {
    let mut fx = Fx::standard();
    fx.earn(m_a(), 240); // 40 points to a member of community A
    fx.ok(
        admin(),
        Command::Transfer {
            from: m_a(),
            to: m_b(),
            amount: amt("5"),
        },
    );
    fx.redeem(m_a(), cafe(), "10");
    fx.redeem(m_b(), shop(), "2");
    fx.hold(m_a(), "3", 60_000);
    close(&mut fx);
    let report = reconcile_journal(&fx.ledger, &fx.journal, fx.now);
    assert!(report.is_balanced(), "{report:#?}");
    assert_eq!(report.programme.issued, pts("40"));
    assert_eq!(report.programme.settled, pts("10"));
    assert_eq!(report.programme.unsettled, pts("2"));
    assert_eq!(report.programme.held, pts("3"));
    assert_eq!(report.programme.available, pts("25"));
    let row_b = report
        .org_units
        .iter()
        .find(|r| r.org_unit == Some(comm_b()))
        .unwrap();
    // Community B issued nothing; 5 came in, 2 of them spent at a merchant.
    assert_eq!(row_b.issued, Points::ZERO);
    assert!(row_b.net_in.is_positive());
    fx.assert_audit_clean();
}

#[test]
fn audit_names_the_entry_where_reconciliation_breaks() {
    let mut fx = Fx::standard();
    fx.earn(m_a(), 240);
    fx.redeem(m_a(), cafe(), "10");
    fx.assert_audit_clean();
    // Forge the last entry (the redemption) to name a member who does not exist, and
    // re-hash it so the chain still verifies: its postings credit the cafe, but the
    // state cannot follow them. The reconciliation must break at exactly that entry.
    let last = fx.journal.len() - 1;
    let mut json = serde_json::to_value(&fx.journal[last]).unwrap();
    let ghost = MemberId::from_u128(0x6057).unwrap();
    json["event"]["Redeemed"]["member"] = serde_json::to_value(ghost).unwrap();
    let forged: Entry = serde_json::from_value(json.clone()).unwrap();
    let hash = forged.compute_hash(&fx.journal[last - 1].hash());
    json["hash"] = serde_json::to_value(hash).unwrap();
    fx.journal[last] = serde_json::from_value(json).unwrap();
    let report = audit(&fx.journal, None);
    let breach = report
        .breaches
        .iter()
        .find(|b| b.rule == AuditRule::Reconciled && b.sequence.is_some())
        .unwrap_or_else(|| panic!("{:#?}", report.breaches));
    assert_eq!(breach.sequence, Some(fx.journal[last].sequence()));
    assert!(breach.message.contains("Merchant"), "{}", breach.message);
}
