//! Rankings and roll-ups: exact figures for a scripted month, period boundaries, and a
//! property test that unit totals roll up the tree, member figures match a naive
//! recomputation from the journal's postings, and months add up to their quarter.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use points_core::rollup::{Period, RankBy, Rollup, Stats};
use points_core::*;
use proptest::prelude::*;
use std::collections::BTreeMap;

fn estate_a() -> OrgUnitId {
    OrgUnitId::from_u128(4).unwrap()
}
fn estate_b() -> OrgUnitId {
    OrgUnitId::from_u128(5).unwrap()
}

/// The standard fixture plus one estate under each community.
fn fixture() -> Fx {
    let mut fx = Fx::standard();
    for (id, parent) in [(estate_a(), comm_a()), (estate_b(), comm_b())] {
        fx.ok(
            admin(),
            Command::CreateOrgUnit {
                id,
                parent: Some(parent),
                name: format!("estate {id}"),
                level: OrgLevel::Estate,
            },
        );
    }
    fx
}

fn approve(fx: &mut Fx, record: RecordId) -> Entry {
    fx.ok(
        admin(),
        Command::ApproveService {
            records: vec![record],
        },
    )
}

/// T0 is 2026-09-21 in Beijing.
fn september() -> Period {
    Period::month(2026, 9).unwrap()
}

#[test]
fn a_scripted_month_rolls_up_exactly() {
    let mut fx = fixture();
    // m_a: 2 h patrol in estate A (20 points, 120 credit minutes).
    let r1 = fx.record(m_a(), patrol(), estate_a(), 120);
    approve(&mut fx, r1);
    // m_a2: 1 h patrol in community A (10 points).
    fx.earn(m_a2(), 60);
    // m_dual (home B): clinic in estate A (7.50 points, 30 honour minutes).
    let r3 = fx.record(m_dual(), clinic(), estate_a(), 30);
    approve(&mut fx, r3);
    // m_b: clinic in community B, approved then reversed: nets to nothing.
    let r4 = fx.record(m_b(), clinic(), comm_b(), 45);
    let approval = approve(&mut fx, r4);
    fx.ok(
        admin(),
        Command::Reverse {
            entry: approval.id(),
            reason: "entered twice".into(),
        },
    );
    // m_a spends 5 at the cafe (community A), refunded 1; m_dual spends 2 at the shop (B).
    let spend = fx.redeem(m_a(), cafe(), "5");
    fx.ok(
        till_cafe(),
        Command::Refund {
            entry: spend.id(),
            amount: amt("1"),
        },
    );
    fx.redeem(m_dual(), shop(), "2");
    // m_a2 donates 3 to the love bank (community A), which grants 2 to m_b.
    fx.ok(
        admin(),
        Command::Donate {
            member: m_a2(),
            pool: pool(),
            amount: amt("3"),
        },
    );
    fx.ok(
        admin(),
        Command::Grant {
            pool: pool(),
            member: m_b(),
            amount: amt("2"),
        },
    );

    let rollup = Rollup::compute(&fx.journal, september()).unwrap();
    let p = |text: &str| if text == "0" { Points::ZERO } else { pts(text) };
    let stats = |earned: &str, credit: i64, honour: i64, records: i64, redeemed: &str| Stats {
        points_earned: p(earned),
        credit_minutes: Minutes::new(credit),
        honour_minutes: Minutes::new(honour),
        records,
        points_redeemed: p(redeemed),
        ..Stats::default()
    };
    assert_eq!(rollup.member(m_a()), Some(&stats("20", 120, 0, 1, "4")));
    let mut m_a2_stats = stats("10", 60, 0, 1, "0");
    m_a2_stats.points_donated = pts("3");
    assert_eq!(rollup.member(m_a2()), Some(&m_a2_stats));
    assert_eq!(rollup.member(m_dual()), Some(&stats("7.50", 0, 30, 1, "2")));
    let mut m_b_stats = stats("0", 0, 0, 0, "0");
    m_b_stats.points_granted = pts("2");
    assert_eq!(rollup.member(m_b()), Some(&m_b_stats));

    // Estate A: m_a's patrol and m_dual's clinic; community A adds m_a2's patrol, the
    // cafe's redemptions and the love bank's movements.
    let estate = rollup.unit(estate_a()).unwrap();
    assert_eq!(estate.own.points_earned, pts("27.50"));
    assert_eq!(estate.total, estate.own);
    let comm = rollup.unit(comm_a()).unwrap();
    assert_eq!(comm.own.points_earned, pts("10"));
    assert_eq!(comm.own.points_redeemed, pts("4"));
    assert_eq!(comm.own.points_donated, pts("3"));
    assert_eq!(comm.own.points_granted, pts("2"));
    assert_eq!(comm.total.points_earned, pts("37.50"));
    assert_eq!(comm.children, vec![estate_a()]);
    let b = rollup.unit(comm_b()).unwrap();
    assert_eq!(b.total.points_redeemed, pts("2"));
    assert_eq!(b.total.points_earned, Points::ZERO);
    assert_eq!(b.total.records, 0, "the reversed approval nets to nothing");
    let district_total = rollup.unit(district()).unwrap().total;
    assert_eq!(&district_total, rollup.program());
    assert_eq!(district_total.points_earned, pts("37.50"));
    assert_eq!(district_total.points_redeemed, pts("6"));
    assert_eq!(rollup.roots(), &[district()]);

    // Within community A, m_dual (home B) ranks by what was served there.
    let top = rollup.top(comm_a(), 10);
    let order: Vec<MemberId> = top.iter().map(|(m, _)| *m).collect();
    assert_eq!(order, vec![m_a(), m_a2(), m_dual()]);
    assert_eq!(rollup.top(comm_a(), 2).len(), 2);
    // By minutes, m_a2's hour beats m_dual's half hour; m_b (no service) is not ranked.
    let by_minutes = rollup.top_by(district(), 10, RankBy::Minutes);
    assert_eq!(
        by_minutes.iter().map(|(m, _)| *m).collect::<Vec<_>>(),
        vec![m_a(), m_a2(), m_dual()]
    );
    assert!(rollup.top(OrgUnitId::from_u128(999).unwrap(), 5).is_empty());

    // Redemptions by merchant, love bank by pool.
    assert_eq!(rollup.merchant(cafe()).unwrap().points_redeemed, pts("4"));
    assert_eq!(rollup.merchant(cafe()).unwrap().redemptions, 1);
    assert_eq!(rollup.merchant(shop()).unwrap().points_redeemed, pts("2"));
    let love = rollup.pool(pool()).unwrap();
    assert_eq!(
        (love.points_donated, love.points_granted),
        (pts("3"), pts("2"))
    );

    // Nothing of it falls in October.
    let october = Rollup::compute(&fx.journal, Period::month(2026, 10).unwrap()).unwrap();
    assert!(october.program().is_zero());
    assert!(october.members().next().is_none());
}

#[test]
fn entries_count_in_the_local_period_of_their_journal_time() {
    let mut fx = fixture();
    // 2026-10-01T00:00+08:00 is 2026-09-30T16:00Z.
    let october_start = 1_790_784_000_000;
    assert_eq!(
        Period::month(2026, 10).unwrap().bounds(480).unwrap().0,
        Timestamp::from_millis(october_start)
    );
    fx.now = Timestamp::from_millis(october_start - 1);
    fx.earn(m_a(), 60); // last millisecond of September
    fx.now = Timestamp::from_millis(october_start);
    fx.earn(m_a2(), 30); // first millisecond of October
    let september = Rollup::compute(&fx.journal, Period::month(2026, 9).unwrap()).unwrap();
    let october = Rollup::compute(&fx.journal, Period::month(2026, 10).unwrap()).unwrap();
    assert_eq!(september.program().points_earned, pts("10"));
    assert_eq!(october.program().points_earned, pts("5"));
    assert!(september.member(m_a2()).is_none());
    assert!(october.member(m_a()).is_none());
    // The quarter is September's neighbour: Q4 holds October only, Q3 September only.
    let q3 = Rollup::compute(&fx.journal, Period::quarter(2026, 3).unwrap()).unwrap();
    let q4 = Rollup::compute(&fx.journal, Period::quarter(2026, 4).unwrap()).unwrap();
    assert_eq!(q3.program(), september.program());
    assert_eq!(q4.program(), october.program());
    let year = Rollup::compute(&fx.journal, Period::year(2026).unwrap()).unwrap();
    assert_eq!(year.program().points_earned, pts("15"));
    // September's roll-up stopped reading at the first October entry.
    assert!(september.entries_read() < fx.journal.len() as u64);
    // A journal that does not start at its genesis is refused.
    assert!(Rollup::compute(&fx.journal[1..], Period::year(2026).unwrap()).is_err());
}

/// What one step of the property test does.
#[derive(Clone, Debug)]
enum Op {
    Patrol {
        member: usize,
        unit: usize,
        minutes: u32,
    },
    Clinic {
        member: usize,
        unit: usize,
    },
    Redeem {
        member: usize,
        shop: bool,
        cents: i64,
    },
    Donate {
        member: usize,
        cents: i64,
    },
    Grant {
        member: usize,
        cents: i64,
    },
    Reverse {
        pick: usize,
    },
    Advance {
        hours: i64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0..4usize, 0..5usize, 1..300u32)
            .prop_map(|(member, unit, minutes)| Op::Patrol { member, unit, minutes }),
        2 => (0..4usize, 0..5usize).prop_map(|(member, unit)| Op::Clinic { member, unit }),
        3 => (0..4usize, any::<bool>(), 1..3_000i64)
            .prop_map(|(member, shop, cents)| Op::Redeem { member, shop, cents }),
        1 => (0..4usize, 1..2_000i64).prop_map(|(member, cents)| Op::Donate { member, cents }),
        1 => (0..4usize, 1..2_000i64).prop_map(|(member, cents)| Op::Grant { member, cents }),
        1 => (0..64usize).prop_map(|pick| Op::Reverse { pick }),
        2 => (1..24 * 25i64).prop_map(|hours| Op::Advance { hours }),
    ]
}

fn run_ops(ops: &[Op]) -> Fx {
    let mut fx = fixture();
    let members = [m_a(), m_a2(), m_b(), m_dual()];
    let units = [district(), comm_a(), comm_b(), estate_a(), estate_b()];
    let mut reversible: Vec<EntryId> = Vec::new();
    for op in ops {
        let result = match *op {
            Op::Patrol {
                member,
                unit,
                minutes,
            } => record_and_approve(&mut fx, members[member], patrol(), units[unit], minutes),
            Op::Clinic { member, unit } => {
                record_and_approve(&mut fx, members[member], clinic(), units[unit], 50)
            }
            Op::Redeem {
                member,
                shop,
                cents,
            } => {
                let (till, merchant) = if shop {
                    (till_shop(), common::shop())
                } else {
                    (till_cafe(), cafe())
                };
                fx.run(
                    till,
                    Command::Redeem {
                        member: members[member],
                        merchant,
                        amount: Amount::new(rust_decimal::Decimal::new(cents, 2)),
                    },
                )
                .ok()
            }
            Op::Donate { member, cents } => fx
                .run(
                    admin(),
                    Command::Donate {
                        member: members[member],
                        pool: pool(),
                        amount: Amount::new(rust_decimal::Decimal::new(cents, 2)),
                    },
                )
                .ok(),
            Op::Grant { member, cents } => fx
                .run(
                    admin(),
                    Command::Grant {
                        pool: pool(),
                        member: members[member],
                        amount: Amount::new(rust_decimal::Decimal::new(cents, 2)),
                    },
                )
                .ok(),
            Op::Reverse { pick } => {
                if reversible.is_empty() {
                    None
                } else {
                    let entry = reversible[pick % reversible.len()];
                    fx.run(
                        admin(),
                        Command::Reverse {
                            entry,
                            reason: "correction".into(),
                        },
                    )
                    .ok()
                }
            }
            Op::Advance { hours } => {
                fx.advance(hours * HOUR);
                None
            }
        };
        if let Some(Applied::New(entry)) = result {
            if entry.event().kind() != EntryKind::Reversed {
                reversible.push(entry.id());
            }
        }
    }
    fx
}

fn record_and_approve(
    fx: &mut Fx,
    member: MemberId,
    activity: ActivityId,
    unit: OrgUnitId,
    minutes: u32,
) -> Option<Applied> {
    let started_at = fx.now.saturating_add_millis(-i64::from(minutes) * MINUTE);
    let recorded = fx
        .run(
            admin(),
            Command::RecordService {
                records: vec![ServiceInput {
                    member,
                    activity,
                    org_unit: unit,
                    started_at,
                    minutes,
                }],
            },
        )
        .ok()?;
    let Applied::New(entry) = recorded else {
        return None;
    };
    let Event::ServiceRecorded { records } = entry.event() else {
        return None;
    };
    fx.run(
        admin(),
        Command::ApproveService {
            records: vec![records[0].id],
        },
    )
    .ok()
}

/// Each member's figures recomputed from the postings of in-period entries alone: an
/// independent reading of the journal (no reference data, no record attribution).
fn naive_members(journal: &[Entry], start: Timestamp, end: Timestamp) -> BTreeMap<MemberId, Stats> {
    let mut out: BTreeMap<MemberId, Stats> = BTreeMap::new();
    for entry in journal {
        if entry.at() < start || entry.at() >= end {
            continue;
        }
        let event = entry.event();
        for posting in entry.postings() {
            let Account::Member(member) = posting.account else {
                continue;
            };
            let s = out.entry(member).or_default();
            let points = Points::from_minor(posting.amount);
            let negated = Points::from_minor(-posting.amount);
            match (posting.unit, event) {
                (Unit::CreditMinutes, _) => {
                    s.credit_minutes = s
                        .credit_minutes
                        .checked_add(Minutes::new(posting.amount))
                        .unwrap()
                }
                (Unit::HonourMinutes, _) => {
                    s.honour_minutes = s
                        .honour_minutes
                        .checked_add(Minutes::new(posting.amount))
                        .unwrap()
                }
                (Unit::Points, Event::ServiceApproved { .. })
                | (
                    Unit::Points,
                    Event::Reversed {
                        effect: Reversal::Accrual { .. },
                        ..
                    },
                ) => s.points_earned = s.points_earned.checked_add(points).unwrap(),
                (
                    Unit::Points,
                    Event::Redeemed { .. } | Event::HoldCaptured { .. } | Event::Refunded { .. },
                )
                | (
                    Unit::Points,
                    Event::Reversed {
                        effect: Reversal::Spend { .. },
                        ..
                    },
                ) => s.points_redeemed = s.points_redeemed.checked_add(negated).unwrap(),
                (Unit::Points, Event::Donated { .. })
                | (
                    Unit::Points,
                    Event::Reversed {
                        effect: Reversal::Donation { .. },
                        ..
                    },
                ) => s.points_donated = s.points_donated.checked_add(negated).unwrap(),
                (Unit::Points, Event::Granted { .. })
                | (
                    Unit::Points,
                    Event::Reversed {
                        effect: Reversal::Grant { .. },
                        ..
                    },
                ) => s.points_granted = s.points_granted.checked_add(points).unwrap(),
                _ => {}
            }
        }
        // Records are counted per award, not per posting.
        let records = match event {
            Event::ServiceApproved { awards } => awards.iter().map(|a| (a.member, 1)).collect(),
            Event::Reversed {
                effect: Reversal::Accrual { awards },
                ..
            } => awards.iter().map(|a| (a.member, -1)).collect(),
            _ => Vec::new(),
        };
        for (member, n) in records {
            out.entry(member).or_default().records += n;
        }
    }
    // Members whose only postings were transfers have all-zero figures: the roll-up does
    // not list them.
    out.retain(|_, s| !s.is_zero() || s.records != 0);
    out
}

fn check(journal: &[Entry], period: Period) -> Rollup {
    let rollup = Rollup::compute(journal, period).unwrap();
    // Per-member figures match the naive recomputation.
    let naive = naive_members(journal, rollup.start(), rollup.end());
    let computed: BTreeMap<MemberId, Stats> = rollup
        .members()
        .filter(|(_, s)| !s.is_zero())
        .map(|(m, s)| (m, *s))
        .collect();
    assert_eq!(computed, naive, "{period}");
    // Every unit: total = own + sum of children's totals = sum of its members' figures.
    for unit in rollup.units() {
        let mut expected = unit.own;
        for child in &unit.children {
            expected = expected
                .checked_add(&rollup.unit(*child).unwrap().total)
                .unwrap();
            assert_eq!(rollup.unit(*child).unwrap().parent, Some(unit.id));
        }
        assert_eq!(unit.total, expected, "{period} {}", unit.id);
        let mut by_members = Stats::default();
        for (_, s) in unit.members() {
            by_members = by_members.checked_add(s).unwrap();
        }
        assert_eq!(unit.total, by_members, "{period} {}", unit.id);
        // The ranking is the full ranking, cut.
        let all = rollup.top(unit.id, usize::MAX);
        let top3 = rollup.top(unit.id, 3);
        assert_eq!(&all[..all.len().min(3)], &top3[..]);
        for pair in all.windows(2) {
            let key = |s: &Stats| {
                (
                    s.points_earned,
                    s.credit_minutes.get() + s.honour_minutes.get(),
                )
            };
            assert!(
                key(&pair[0].1) > key(&pair[1].1)
                    || (key(&pair[0].1) == key(&pair[1].1) && pair[0].0 < pair[1].0)
            );
        }
    }
    // The roots together are the programme (every event here has a known unit).
    let mut roots = Stats::default();
    for root in rollup.roots() {
        roots = roots
            .checked_add(&rollup.unit(*root).unwrap().total)
            .unwrap();
    }
    assert_eq!(&roots, rollup.program(), "{period}");
    // Merchants and pools sum to the programme's redeemed, donated and granted.
    let redeemed = rollup
        .merchants()
        .map(|m| m.points_redeemed.minor())
        .sum::<i64>();
    assert_eq!(redeemed, rollup.program().points_redeemed.minor());
    let donated = rollup
        .pools()
        .map(|p| p.points_donated.minor())
        .sum::<i64>();
    assert_eq!(donated, rollup.program().points_donated.minor());
    rollup
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn totals_roll_up_and_match_the_journal(ops in proptest::collection::vec(op(), 10..60)) {
        let fx = run_ops(&ops);
        let q4 = check(&fx.journal, Period::quarter(2026, 4).unwrap());
        let mut months = Stats::default();
        let mut per_member: BTreeMap<MemberId, Stats> = BTreeMap::new();
        for m in 10..=12 {
            let rollup = check(&fx.journal, Period::month(2026, m).unwrap());
            months = months.checked_add(rollup.program()).unwrap();
            for (member, s) in rollup.members() {
                let slot = per_member.entry(member).or_default();
                *slot = slot.checked_add(s).unwrap();
            }
        }
        // Three months add up to their quarter, member by member.
        prop_assert_eq!(&months, q4.program());
        let q4_members: BTreeMap<MemberId, Stats> = q4.members().map(|(m, s)| (m, *s)).collect();
        prop_assert_eq!(per_member, q4_members);
        check(&fx.journal, Period::month(2026, 9).unwrap());
        let year = check(&fx.journal, Period::year(2026).unwrap());
        let all = check(
            &fx.journal,
            Period::range(Timestamp::from_millis(0), Timestamp::from_millis(i64::MAX)).unwrap(),
        );
        // Within 2026 and in all time alike, every approval minus reversal matches the
        // ledger's own totals of issued points when all activity is in 2026.
        if fx.now.local_year(480) == Some(2026) {
            prop_assert_eq!(year.program(), all.program());
        }
        prop_assert_eq!(all.program().points_earned, fx.ledger.totals().issued);
    }
}
