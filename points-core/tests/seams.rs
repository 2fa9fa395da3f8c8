//! Where the volunteer workflows (issue 5: wishes, events, catalogues), the reports (roll-ups,
//! certificates) and settlement in money (issue 6) meet: a redemption of catalogue items is
//! a redemption for settlement (valued at the rate in force, budget-checked, on exactly one
//! statement, its refunds valued at its own rate); roll-ups and certificates count wish
//! confirmations, event approvals and item redemptions; settling counts as nothing; and the
//! audit (reconciliation included) stays clean throughout.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use points_core::certificate::Certificate;
use points_core::rollup::{Period, Rollup};
use points_core::*;
use rust_decimal::Decimal;

fn d(text: &str) -> Decimal {
    text.parse().unwrap()
}
fn fund() -> FundId {
    FundId::from_u128(0xf1).unwrap()
}
/// Coffee at the cafe (community A).
fn coffee() -> ItemId {
    ItemId::from_u128(701).unwrap()
}
/// Rice at the community supermarket (community B).
fn rice() -> ItemId {
    ItemId::from_u128(700).unwrap()
}
fn wish_id() -> WishId {
    WishId::from_u128(500).unwrap()
}
fn gathering_id() -> GatheringId {
    GatheringId::from_u128(600).unwrap()
}

fn settle(fx: &mut Fx, command: SettlementCommand) -> Entry {
    fx.ok(admin(), Command::Settlement(command))
}

fn set_rate(fx: &mut Fx, merchant: MerchantId, yuan: &str) {
    let from = fx.now.saturating_add_millis(1);
    settle(
        fx,
        SettlementCommand::SetMerchantRate {
            merchant,
            yuan_per_point: d(yuan),
            effective_from: from,
        },
    );
    fx.advance(1);
}

fn list(fx: &mut Fx, till: Actor, merchant: MerchantId, item: ItemId, price: &str) {
    fx.ok(
        till,
        Command::Catalogue(CatalogueCommand::ListItem {
            merchant,
            item,
            name: format!("item {item}"),
            price: amt(price),
            stock: 100,
        }),
    );
}

fn redeem_items(member: MemberId, merchant: MerchantId, item: ItemId, quantity: u32) -> Command {
    Command::Catalogue(CatalogueCommand::RedeemItems {
        member,
        merchant,
        lines: vec![ItemLine { item, quantity }],
    })
}

fn close(fx: &mut Fx, merchant: MerchantId) -> Settlement {
    let period = fx.ledger.merchant_money(merchant).unwrap().open_period;
    let entry = settle(fx, SettlementCommand::ClosePeriod { merchant, period });
    match entry.event() {
        Event::Settlement(SettlementEvent::SettlementClosed(s)) => (**s).clone(),
        other => panic!("expected a settlement, got {other:?}"),
    }
}

fn assert_reconciled(fx: &Fx) {
    let report = reconcile_journal(&fx.ledger, &fx.journal, fx.now);
    assert!(report.is_balanced(), "{report:#?}");
    fx.assert_audit_clean();
}

/// (kind, points, money in fen) of each line.
fn lines(st: &Statement) -> Vec<(LineKind, Points, Decimal)> {
    st.lines
        .iter()
        .map(|l| (l.kind, l.points, l.money_fen))
        .collect()
}

/// The cafe paid by a 10-yuan fund at 0.5 yuan per point, refusing over budget; m_a has
/// 80 points and coffee costs 3.
fn cafe_with_coffee() -> Fx {
    let mut fx = Fx::standard();
    settle(
        &mut fx,
        SettlementCommand::CreateFund {
            id: fund(),
            org_unit: comm_a(),
            name: "Fund".into(),
            budget_per_month_yuan: d("10"),
        },
    );
    settle(
        &mut fx,
        SettlementCommand::SetMerchantFunds {
            merchant: cafe(),
            funds: vec![fund()],
        },
    );
    settle(
        &mut fx,
        SettlementCommand::SetOverBudget(OverBudget::Refuse),
    );
    set_rate(&mut fx, cafe(), "0.5");
    fx.earn(m_a(), 240);
    fx.earn(m_a(), 240);
    list(&mut fx, till_cafe(), cafe(), coffee(), "3");
    fx
}

#[test]
fn item_redemptions_are_valued_budgeted_and_settled_once() {
    let mut fx = cafe_with_coffee();
    // 4 coffees: 12 points, 6 yuan.
    let first = fx.ok(till_cafe(), redeem_items(m_a(), cafe(), coffee(), 4));
    assert_eq!(
        fx.ledger.merchant_money(cafe()).unwrap().pending_fen,
        d("600")
    );
    // 3 more would be 4.50 yuan with 4 left in the budget: refused like a redemption, and
    // before the member's points are looked at (605 comes before 700).
    assert_eq!(
        fx.run(till_cafe(), redeem_items(m_a(), cafe(), coffee(), 3)),
        Err(Rejection::FundBudgetExceeded)
    );
    assert_eq!(
        fx.run(till_cafe(), redeem_items(m_a2(), cafe(), coffee(), 3)),
        Err(Rejection::FundBudgetExceeded)
    );
    assert_eq!(fx.ledger.item(coffee()).unwrap().stock, 96, "nothing taken");
    // Within the budget: 2 coffees, 3 yuan.
    let second = fx.ok(till_cafe(), redeem_items(m_a(), cafe(), coffee(), 2));
    // The rate doubles; a refund of the first redemption is still worth 0.5 a point.
    set_rate(&mut fx, cafe(), "1");
    let refund = fx.ok(
        till_cafe(),
        Command::Refund {
            entry: first.id(),
            amount: amt("3"),
        },
    );
    let s1 = close(&mut fx, cafe());
    let st1 = statement(&fx.ledger, &s1, &fx.journal);
    assert_eq!(
        lines(&st1),
        vec![
            (LineKind::Items, pts("12"), d("600")),
            (LineKind::Items, pts("6"), d("300")),
            (LineKind::Refund, Points::from_minor(-300), d("-150")),
        ]
    );
    assert_eq!(st1.lines[2].corrects, Some(first.id()));
    assert_eq!(st1.lines[2].entry, refund.id());
    assert_eq!(s1.lines, 3);
    assert_eq!(s1.exact_fen, d("750"));
    assert_eq!(s1.owed, Fen::new(750));
    // What moves to settled is exactly what the statement lists.
    assert_eq!(s1.net_points, pts("15"));
    assert_eq!(st1.lines_points(), s1.net_points);
    assert_eq!(st1.lines_fen(), s1.exact_fen);
    assert!(st1.to_csv(Scale::new(2).unwrap()).contains(",items,"));
    assert_reconciled(&fx);

    // A late refund of the second redemption lands in period 2 at its own rate (0.5), and
    // a new redemption there is valued at the new rate (1).
    fx.ok(
        till_cafe(),
        Command::Refund {
            entry: second.id(),
            amount: amt("2"),
        },
    );
    // 7.50 of the month's 10 yuan are paid: a 3-yuan basket does not fit under Refuse
    // (2.50 left), and is accepted under Defer.
    assert_eq!(
        fx.run(till_cafe(), redeem_items(m_a(), cafe(), coffee(), 1)),
        Err(Rejection::FundBudgetExceeded)
    );
    settle(&mut fx, SettlementCommand::SetOverBudget(OverBudget::Defer));
    fx.ok(till_cafe(), redeem_items(m_a(), cafe(), coffee(), 1));
    let s2 = close(&mut fx, cafe());
    let st2 = statement(&fx.ledger, &s2, &fx.journal);
    assert_eq!(
        lines(&st2),
        vec![
            (LineKind::Refund, Points::from_minor(-200), d("-100")),
            (LineKind::Items, pts("3"), d("300")),
        ]
    );
    assert_eq!(s2.net_points, pts("1"));
    assert_eq!(st2.lines_points(), s2.net_points);
    assert_eq!(s2.owed, Fen::new(200));
    assert_eq!(s2.paid(), Fen::new(200));
    assert_eq!(fx.ledger.settled_points(cafe()), pts("16"));
    assert_eq!(fx.taken(cafe()), Points::ZERO);
    // Every item redemption is on exactly one statement.
    let on_statements: Vec<EntryId> = st1
        .lines
        .iter()
        .chain(&st2.lines)
        .map(|l| l.entry)
        .collect();
    for entry in fx
        .journal
        .iter()
        .filter(|e| e.kind() == EntryKind::ItemsRedeemed)
    {
        assert_eq!(
            on_statements.iter().filter(|id| **id == entry.id()).count(),
            1,
            "entry {} settled once",
            entry.sequence()
        );
    }
    assert_reconciled(&fx);
}

#[test]
fn a_reversed_item_redemption_is_a_negative_line_at_its_own_rate() {
    let mut fx = cafe_with_coffee();
    let spent = fx.ok(till_cafe(), redeem_items(m_a(), cafe(), coffee(), 2));
    let s1 = close(&mut fx, cafe());
    assert_eq!(s1.owed, Fen::new(300));
    set_rate(&mut fx, cafe(), "0.8");
    fx.ok(
        admin(),
        Command::Reverse {
            entry: spent.id(),
            reason: "wrong member".into(),
        },
    );
    let s2 = close(&mut fx, cafe());
    let st2 = statement(&fx.ledger, &s2, &fx.journal);
    assert_eq!(
        lines(&st2),
        vec![(LineKind::Reversal, Points::from_minor(-600), d("-300"))]
    );
    assert_eq!(st2.lines[0].rate, Rate::new(d("0.5")).unwrap());
    assert_eq!(s2.net_points, Points::from_minor(-600));
    // Owed nets to zero over the two periods; the first was paid, so the second owes back.
    assert_eq!(s2.owed, Fen::new(-300));
    assert_eq!(fx.ledger.settled_points(cafe()), Points::ZERO);
    assert_reconciled(&fx);
}

/// m_a confirms a wish and serves at an event in community A; m_a2 (homed in A) buys rice
/// at the supermarket in community B. Returns the confirmation and approval entries.
fn volunteer_month(fx: &mut Fx) -> (Entry, Entry, Entry) {
    fx.ok(
        rec_a(),
        Command::Wish(WishCommand::Post {
            id: wish_id(),
            org_unit: comm_a(),
            activity: patrol(),
            title: "Carry groceries upstairs".into(),
            points: amt("10"),
            minutes: 60,
            claim_ttl_ms: HOUR as u64,
        }),
    );
    fx.ok(
        rec_a(),
        Command::Wish(WishCommand::Claim {
            wish: wish_id(),
            member: m_a(),
        }),
    );
    fx.ok(
        rec_a(),
        Command::Wish(WishCommand::Fulfil {
            wish: wish_id(),
            member: m_a(),
        }),
    );
    let confirmed = fx.ok(
        rec_a(),
        Command::Wish(WishCommand::Confirm { wish: wish_id() }),
    );
    fx.ok(
        rec_a(),
        Command::Gathering(GatheringCommand::Create {
            id: gathering_id(),
            org_unit: comm_a(),
            activity: patrol(),
            name: "Saturday clean-up".into(),
            roster: vec![m_a()],
        }),
    );
    let check_in = fx.now.saturating_add_millis(-90 * MINUTE);
    fx.ok(
        rec_a(),
        Command::Gathering(GatheringCommand::CheckIn {
            gathering: gathering_id(),
            member: m_a(),
            time: check_in,
        }),
    );
    let now = fx.now;
    fx.ok(
        rec_a(),
        Command::Gathering(GatheringCommand::CheckOut {
            gathering: gathering_id(),
            member: m_a(),
            time: now,
        }),
    );
    let approved = fx.ok(
        rec_a(),
        Command::Gathering(GatheringCommand::Approve {
            gathering: gathering_id(),
        }),
    );
    fx.earn(m_a2(), 240); // 40 points
    list(fx, till_shop(), shop(), rice(), "20");
    let bought = fx.ok(till_shop(), redeem_items(m_a2(), shop(), rice(), 1));
    (confirmed, approved, bought)
}

fn wish_award(entry: &Entry) -> Award {
    match entry.event() {
        Event::Wish(event) => match &**event {
            WishEvent::Confirmed { award, .. } => *award,
            other => panic!("not a confirmation: {other:?}"),
        },
        other => panic!("not a wish entry: {other:?}"),
    }
}

fn event_awards(entry: &Entry) -> Vec<Award> {
    match entry.event() {
        Event::Gathering(event) => match &**event {
            GatheringEvent::Approved { awards, .. } => awards.clone(),
            other => panic!("not an approval: {other:?}"),
        },
        other => panic!("not an event entry: {other:?}"),
    }
}

fn everything(fx: &Fx) -> Period {
    Period::Range {
        // Service starts before it is recorded: a day back covers every record.
        from: Timestamp::from_millis(T0 - DAY),
        to: fx.now.saturating_add_millis(1),
    }
}

#[test]
fn roll_ups_count_wishes_events_and_item_redemptions_but_not_settlements() {
    let mut fx = Fx::standard();
    let (confirmed, approved, _) = volunteer_month(&mut fx);
    let wish = wish_award(&confirmed);
    let event = event_awards(&approved);
    assert_eq!(event.len(), 1);
    let earned = wish.points.checked_add(event[0].points).unwrap();
    let minutes = wish.minutes.checked_add(event[0].minutes).unwrap();
    assert_eq!(wish.points, pts("10"));
    assert!(event[0].points.is_positive());

    let r = Rollup::compute(&fx.journal, everything(&fx)).unwrap();
    let member = r.member(m_a()).unwrap();
    assert_eq!(member.points_earned, earned);
    assert_eq!(member.credit_minutes, minutes, "patrol is credit time");
    assert_eq!(member.records, 2);
    // Attributed where the service took place, and rolled up the tree.
    // m_a2's own 4 hours of patrol (40 points) are in community A too.
    let a = r.unit(comm_a()).unwrap();
    assert_eq!(a.own.points_earned, earned.checked_add(pts("40")).unwrap());
    assert_eq!(
        a.own.credit_minutes,
        minutes.checked_add(Minutes::new(240)).unwrap()
    );
    assert_eq!(
        r.unit(district()).unwrap().total.points_earned,
        earned.checked_add(pts("40")).unwrap()
    );
    let top: Vec<MemberId> = r.top(comm_a(), 2).into_iter().map(|(m, _)| m).collect();
    assert_eq!(top, vec![m_a2(), m_a()], "40 points, then 25");
    // The rice: redeemed by m_a2, at the supermarket, in community B.
    assert_eq!(r.member(m_a2()).unwrap().points_redeemed, pts("20"));
    let shop_figures = r.merchant(shop()).unwrap();
    assert_eq!(shop_figures.points_redeemed, pts("20"));
    assert_eq!(shop_figures.redemptions, 1);
    assert_eq!(r.unit(comm_b()).unwrap().own.points_redeemed, pts("20"));
    assert_eq!(r.unit(comm_a()).unwrap().own.points_redeemed, Points::ZERO);
    assert_eq!(r.unit(district()).unwrap().total.points_redeemed, pts("20"));

    // Settling the supermarket moves its points to settled: not a redemption, not a refund.
    fx.advance(MINUTE);
    close(&mut fx, shop());
    let after = Rollup::compute(&fx.journal, everything(&fx)).unwrap();
    assert_eq!(after.merchant(shop()), r.merchant(shop()));
    assert_eq!(after.member(m_a2()), r.member(m_a2()));
    assert_eq!(
        after.unit(district()).unwrap().total,
        r.unit(district()).unwrap().total
    );

    // Reversing the wish's confirmation takes its points and hours back from community A
    // too, not only from the member.
    fx.ok(
        admin(),
        Command::Reverse {
            entry: confirmed.id(),
            reason: "not done".into(),
        },
    );
    let reversed = Rollup::compute(&fx.journal, everything(&fx)).unwrap();
    let a = reversed.unit(comm_a()).unwrap();
    assert_eq!(
        a.own.points_earned,
        event[0].points.checked_add(pts("40")).unwrap()
    );
    assert_eq!(
        a.own.credit_minutes,
        event[0].minutes.checked_add(Minutes::new(240)).unwrap()
    );
    assert_eq!(a.own.records, 2);
    assert_eq!(
        reversed.member(m_a()).unwrap().points_earned,
        event[0].points
    );
    fx.assert_audit_clean();
}

#[test]
fn certificates_list_wish_and_event_records() {
    let mut fx = Fx::standard();
    let (confirmed, approved, _) = volunteer_month(&mut fx);
    let wish = wish_award(&confirmed);
    let event = event_awards(&approved);
    let c = Certificate::build(&fx.journal, m_a(), everything(&fx), fx.now).unwrap();
    let mut listed: Vec<(RecordId, Points, Minutes)> = c
        .records
        .iter()
        .map(|r| (r.record, r.points, r.minutes))
        .collect();
    listed.sort();
    let mut expected = vec![
        (wish.record, wish.points, wish.minutes),
        (event[0].record, event[0].points, event[0].minutes),
    ];
    expected.sort();
    assert_eq!(listed, expected);
    assert!(c.records.iter().all(|r| r.org_unit == comm_a()
        && r.activity == patrol()
        && r.recorder == rec_a()
        && r.time_kind == TimeKind::Credit));
    assert_eq!(c.points, wish.points.checked_add(event[0].points).unwrap());
    let key = [9u8; 32];
    let signed = c.sign(&key);
    signed
        .verify(&points_core::checkpoint::public_key_hex(&key))
        .unwrap();

    // A reversed confirmation leaves the certificate; the event's record stays.
    fx.ok(
        admin(),
        Command::Reverse {
            entry: confirmed.id(),
            reason: "not done".into(),
        },
    );
    let c = Certificate::build(&fx.journal, m_a(), everything(&fx), fx.now).unwrap();
    assert_eq!(c.records.len(), 1);
    assert_eq!(c.records[0].record, event[0].record);
    // Nobody else's certificate lists them.
    let other = Certificate::build(&fx.journal, m_a2(), everything(&fx), fx.now).unwrap();
    assert!(other
        .records
        .iter()
        .all(|r| r.activity != patrol() || r.record != wish.record));
    assert_eq!(
        other.records.len(),
        1,
        "m_a2's own patrol only: {:?}",
        other.records
    );
}

/// The public report's rows and the roll-up it publishes must agree (a verifier recomputes
/// the summary from the rows), so wishes, events and item redemptions must be rows too.
#[test]
fn public_report_rows_agree_with_the_roll_up_over_wishes_events_and_items() {
    use points_core::report::{Extractor, ReportScope, Summary};
    let mut fx = Fx::standard();
    volunteer_month(&mut fx);
    let period = everything(&fx);
    let (from, to) = match period {
        Period::Range { from, to } => (from, to),
        _ => unreachable!(),
    };
    let mut extractor = Extractor::new(
        [9; 32],
        ReportScope {
            org_unit: None,
            from: Some(from),
            until: Some(to),
        },
    );
    for entry in &fx.journal {
        extractor.observe(entry);
    }
    let pseudonyms: std::collections::HashMap<MemberId, String> = [m_a(), m_a2()]
        .into_iter()
        .map(|m| (m, extractor.pseudonym_of(m)))
        .collect();
    let (rows, _) = extractor.finish();
    let rollup = Rollup::compute(&fx.journal, period).unwrap();
    let published = Summary::from_rollup(
        &rollup,
        None,
        |m| pseudonyms.get(&m).cloned().unwrap_or_default(),
        &rows,
    );
    assert_eq!(Summary::of(&rows), published);
    assert!(published.totals.service_points > 0 && published.totals.spent_points > 0);
}
