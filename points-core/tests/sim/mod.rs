//! A deliberately simple reference model of the ledger, a generator of random command
//! sequences over a small fixed universe, and a driver that runs a sequence through the real
//! ledger and the model side by side.
//!
//! The model uses only public types and ids from `points-core`; its arithmetic (amounts,
//! rules, calendar, lots, precedence) is written out here from the domain rules, not
//! borrowed from the crate.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use points_core::*;
use proptest::prelude::*;
use std::collections::HashMap;

// Issue 5: the model of micro-wishes and merchant catalogues.
mod workflows;
pub use workflows::WOp;

// ------------------------------------------------------------------------------------------
// The universe
// ------------------------------------------------------------------------------------------

pub const T0: i64 = 1_790_000_000_000; // 2026-09-21T05:46:40Z
const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;
/// The programme's local time is UTC+8.
const OFFSET_MS: i64 = 8 * HOUR;
const MAX_TTL: u64 = 86_400_000;
const DONATION_CAP: i64 = 50_00;
const GRANT_CAP: i64 = 20_00;
const MAX_SERVICE_AGE_MS: i64 = 366 * DAY;
const MAX_SERVICE_LEAD_MS: i64 = DAY;

pub fn program() -> ProgramId {
    ProgramId::from_u128(0xfeed).unwrap()
}
fn unit(n: u128) -> OrgUnitId {
    OrgUnitId::from_u128(n).unwrap()
}
/// Root district D, and communities A and B below it; unit 3 is unknown.
pub fn org(i: u8) -> OrgUnitId {
    unit(1 + u128::from(i % 4))
}
pub fn d() -> OrgUnitId {
    org(0)
}
pub fn a() -> OrgUnitId {
    org(1)
}
pub fn b() -> OrgUnitId {
    org(2)
}
/// Six member ids: 0 and 1 at home in A, 2 in B, 3 in B with dual registration; 4 and 5
/// start unenrolled.
pub fn member_any(i: u8) -> MemberId {
    MemberId::from_u128(100 + u128::from(i % MEMBERS)).unwrap()
}
/// Mostly the four enrolled members, now and then one of the others.
pub fn member(i: u8) -> MemberId {
    member_any(if i < 236 { i % 4 } else { 4 + i % 2 })
}
pub const MEMBERS: u8 = 6;
/// Merchant 0 is a cafe in A; merchant 1 a community supermarket in B (the one that gets
/// suspended); merchant 2 is unknown.
pub fn merchant(i: u8) -> MerchantId {
    MerchantId::from_u128(200 + u128::from(i % 3)).unwrap()
}
/// Activity 0 is patrol in A (10 an hour, 240 minutes at most, credit time); activity 1 a
/// clinic in D (5 an occasion, coefficient 1.5, daily cap 10, honour time); 2 is unknown.
pub fn activity(i: u8) -> ActivityId {
    ActivityId::from_u128(300 + u128::from(i % 3)).unwrap()
}
pub fn pool() -> PoolId {
    PoolId::from_u128(400).unwrap()
}
pub fn unknown_pool() -> PoolId {
    PoolId::from_u128(401).unwrap()
}
fn actor_id(n: u128) -> ActorId {
    ActorId::from_u128(n).unwrap()
}

/// System, admin, recorders of A, B and D, the cafe's till, the supermarket's till.
pub fn actor(i: u8) -> Actor {
    match i % 7 {
        0 => Actor::System,
        1 => Actor::Admin { id: actor_id(1) },
        2 => Actor::Recorder {
            id: actor_id(2),
            org_unit: a(),
        },
        3 => Actor::Recorder {
            id: actor_id(3),
            org_unit: b(),
        },
        4 => Actor::Recorder {
            id: actor_id(4),
            org_unit: d(),
        },
        5 => Actor::Merchant {
            id: actor_id(5),
            merchant: merchant(0),
        },
        _ => Actor::Merchant {
            id: actor_id(6),
            merchant: merchant(1),
        },
    }
}
fn admin() -> Actor {
    actor(1)
}
fn till(m: MerchantId) -> Actor {
    if m == merchant(1) {
        actor(6)
    } else {
        actor(5)
    }
}

pub fn spec() -> ProgramSpec {
    ProgramSpec::new(program(), "Model points", "points", Scale::new(2).unwrap())
        .with_expiry(ExpiryPolicy::MonthsAfterEarning { months: 1 })
        .with_max_hold_ttl_ms(MAX_TTL)
        .with_love_bank_caps(
            Some(Points::from_minor(DONATION_CAP)),
            Some(Points::from_minor(GRANT_CAP)),
        )
}

/// The reference data every sequence starts from, as (actor, command) pairs.
pub fn setup_commands() -> Vec<Command> {
    let unit = |id, parent, level| Command::CreateOrgUnit {
        id,
        parent,
        name: "unit".into(),
        level,
    };
    let enrol = |i: u8, home, dual: bool, card: Option<&str>| Command::EnrolMember {
        id: member(i),
        home,
        kind: MemberKind::Resident,
        dual_registration: dual,
        card_code: card.map(str::to_owned),
    };
    let act = |i: u8, org_unit, rule, coefficient: &str, max, cap: Option<&str>, kind| {
        Command::DefineActivity(ActivityInput {
            id: activity(i),
            org_unit,
            name: "activity".into(),
            category: "service".into(),
            rule,
            coefficient: coefficient.parse().unwrap(),
            max_minutes_per_occasion: max,
            daily_points_cap: cap.map(|c| c.parse().unwrap()),
            time_kind: kind,
        })
    };
    vec![
        unit(d(), None, OrgLevel::District),
        unit(a(), Some(d()), OrgLevel::Community),
        unit(b(), Some(d()), OrgLevel::Community),
        enrol(0, a(), false, Some("C-0")),
        enrol(1, a(), false, None),
        enrol(2, b(), false, None),
        enrol(3, b(), true, None),
        Command::RegisterMerchant {
            id: merchant(0),
            org_unit: a(),
            name: "cafe".into(),
            kind: MerchantKind::Partner,
        },
        Command::RegisterMerchant {
            id: merchant(1),
            org_unit: b(),
            name: "supermarket".into(),
            kind: MerchantKind::CommunitySupermarket,
        },
        act(
            0,
            a(),
            RuleInput::PerHour("10".parse().unwrap()),
            "1",
            Some(240),
            None,
            TimeKind::Credit,
        ),
        act(
            1,
            d(),
            RuleInput::PerOccasion("5".parse().unwrap()),
            "1.5",
            None,
            Some("10"),
            TimeKind::Honour,
        ),
        Command::CreatePool {
            id: pool(),
            org_unit: a(),
            name: "love bank".into(),
            kind: PoolKind::LoveBank,
        },
    ]
}

// ------------------------------------------------------------------------------------------
// Calendar, written out (days-from-civil after Howard Hinnant)
// ------------------------------------------------------------------------------------------

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: i64) -> i64 {
    days_from_civil(
        if m == 12 { y + 1 } else { y },
        if m == 12 { 1 } else { m + 1 },
        1,
    ) - days_from_civil(y, m, 1)
}

fn local_day(t: i64) -> i64 {
    (t + OFFSET_MS).div_euclid(DAY)
}

fn local_year(t: i64) -> i64 {
    civil_from_days(local_day(t)).0
}

/// MonthsAfterEarning { months: 1 }: local midnight starting the same day of the next
/// month, clamped to that month's length.
fn expiry_of(earned: i64) -> i64 {
    let (y, m, d) = civil_from_days(local_day(earned));
    let (y2, m2) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let d2 = d.min(days_in_month(y2, m2));
    days_from_civil(y2, m2, d2) * DAY - OFFSET_MS
}

// ------------------------------------------------------------------------------------------
// The model
// ------------------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct MMember {
    pub home: OrgUnitId,
    pub dual: bool,
    pub card: Option<String>,
    /// (expires at, points), oldest expiry first, no two with the same expiry.
    pub lots: Vec<(i64, i64)>,
    pub credit: i64,
    pub honour: i64,
}

impl MMember {
    pub fn balance(&self) -> i64 {
        self.lots.iter().map(|l| l.1).sum()
    }
}

#[derive(Clone, Debug)]
struct MHold {
    member: MemberId,
    merchant: MerchantId,
    amount: i64,
    deadline: i64,
    open: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Status {
    Pending,
    Approved,
    Rejected,
    Reversed,
}

#[derive(Clone, Debug)]
struct MRecord {
    member: MemberId,
    activity: ActivityId,
    unit: OrgUnitId,
    started_at: i64,
    minutes: u32,
    status: Status,
    /// (points, minutes, honour) once approved.
    award: Option<(i64, i64, bool)>,
}

#[derive(Clone, Debug)]
enum Fact {
    Spend {
        member: MemberId,
        merchant: MerchantId,
        taken: i64,
        refunded: i64,
        at: i64,
    },
    Approval {
        records: Vec<RecordId>,
    },
    Transfer {
        from: MemberId,
        to: MemberId,
        amount: i64,
    },
    Donation {
        member: MemberId,
        amount: i64,
        at: i64,
    },
    Grant {
        member: MemberId,
        amount: i64,
    },
}

#[derive(Clone, Debug, Default)]
pub struct Model {
    parent: HashMap<OrgUnitId, Option<OrgUnitId>>,
    pub members: HashMap<MemberId, MMember>,
    /// org unit, suspended, taken
    pub merchants: HashMap<MerchantId, (OrgUnitId, bool, i64)>,
    pub pool_balance: i64,
    records: HashMap<RecordId, MRecord>,
    pub record_ids: Vec<RecordId>,
    holds: HashMap<EntryId, MHold>,
    pub hold_ids: Vec<EntryId>,
    /// Reversible entries and whether each was reversed.
    facts: HashMap<EntryId, (Fact, bool)>,
    pub fact_ids: Vec<EntryId>,
    pub spend_ids: Vec<EntryId>,
    daily: HashMap<(MemberId, ActivityId, i64), i64>,
    yearly_donations: HashMap<(MemberId, i64), i64>,
    requests: HashMap<RequestId, (Actor, Command, u64)>,
    pub next_seq: u64,
    pub issued: i64,
    pub expired: i64,
    pub credit_total: i64,
    pub honour_total: i64,
    /// Issue 5: wishes and catalogue items.
    wf: workflows::WfModel,
}

/// What the model predicts for a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    New(u64),
    Duplicate(u64),
}

type R<T> = Result<T, Rejection>;

fn entry_id(seq: u64) -> EntryId {
    EntryId::for_sequence(program(), seq)
}

/// Caller decimals to minor units at two places, by hand.
fn minor(amount: Amount) -> R<i64> {
    let text = amount.to_string();
    if text.starts_with('-') || text.chars().all(|c| c == '0' || c == '.') {
        return Err(Rejection::AmountNotPositive);
    }
    let (whole, frac) = text.split_once('.').unwrap_or((&text, ""));
    if frac.len() > 2 {
        return Err(Rejection::AmountTooPrecise);
    }
    let whole: i64 = whole.parse().map_err(|_| Rejection::AmountOverflow)?;
    let frac: i64 = format!("{frac:0<2}").parse().unwrap();
    let value = whole * 100 + frac;
    if value > 1_000_000_000_000_000 {
        return Err(Rejection::AmountOverflow);
    }
    Ok(value)
}

fn check_text(text: &str) -> R<()> {
    if text.trim().is_empty() || text.chars().any(char::is_control) {
        Err(Rejection::InvalidText)
    } else {
        Ok(())
    }
}

fn check_card(card: &Option<String>) -> R<()> {
    match card {
        Some(c) if c.is_empty() || !c.bytes().all(|b| b.is_ascii_graphic()) => {
            Err(Rejection::InvalidText)
        }
        _ => Ok(()),
    }
}

fn add_lot(lots: &mut Vec<(i64, i64)>, expires: i64, amount: i64) {
    match lots.iter_mut().find(|l| l.0 == expires) {
        Some(lot) => lot.1 += amount,
        None => {
            lots.push((expires, amount));
            lots.sort_by_key(|l| l.0);
        }
    }
}

/// Takes `amount` from the oldest lots first; returns the parcels taken.
fn take_lots(lots: &mut Vec<(i64, i64)>, mut amount: i64) -> Vec<(i64, i64)> {
    let mut taken = Vec::new();
    for lot in lots.iter_mut() {
        if amount == 0 {
            break;
        }
        let part = lot.1.min(amount);
        lot.1 -= part;
        amount -= part;
        taken.push((lot.0, part));
    }
    lots.retain(|l| l.1 > 0);
    assert_eq!(amount, 0, "model overdraft");
    taken
}

impl Model {
    pub fn new() -> Model {
        let mut m = Model::default();
        m.parent.insert(d(), None);
        m.parent.insert(a(), Some(d()));
        m.parent.insert(b(), Some(d()));
        for (i, home, dual, card) in [
            (0, a(), false, Some("C-0")),
            (1, a(), false, None),
            (2, b(), false, None),
            (3, b(), true, None),
        ] {
            m.members.insert(
                member(i),
                MMember {
                    home,
                    dual,
                    card: card.map(str::to_owned),
                    lots: Vec::new(),
                    credit: 0,
                    honour: 0,
                },
            );
        }
        m.merchants.insert(merchant(0), (a(), false, 0));
        m.merchants.insert(merchant(1), (b(), false, 0));
        // Genesis plus the setup commands.
        m.next_seq = 1 + setup_commands().len() as u64;
        m
    }

    fn within(&self, unit: OrgUnitId, root: OrgUnitId) -> bool {
        let mut current = Some(unit);
        while let Some(u) = current {
            if u == root {
                return true;
            }
            current = self.parent.get(&u).copied().flatten();
        }
        false
    }

    fn allow_in(&self, actor: &Actor, unit: OrgUnitId) -> R<()> {
        match actor {
            Actor::Admin { .. } => Ok(()),
            Actor::Recorder { org_unit, .. } if self.within(unit, *org_unit) => Ok(()),
            _ => Err(Rejection::ActorNotAllowed),
        }
    }

    fn allow_merchant(&self, actor: &Actor, merchant: MerchantId) -> R<()> {
        match actor {
            Actor::Admin { .. } => Ok(()),
            Actor::Merchant { merchant: own, .. } if *own == merchant => Ok(()),
            _ => Err(Rejection::ActorNotAllowed),
        }
    }

    fn member(&self, id: MemberId) -> R<&MMember> {
        self.members.get(&id).ok_or(Rejection::UnknownMember)
    }

    pub fn held(&self, id: MemberId, at: i64) -> i64 {
        self.holds
            .values()
            .filter(|h| h.member == id && h.open && at < h.deadline)
            .map(|h| h.amount)
            .sum()
    }

    pub fn available(&self, id: MemberId, at: i64) -> i64 {
        self.members[&id].balance() - self.held(id, at)
    }

    pub fn pending(&self) -> Vec<RecordId> {
        self.record_ids
            .iter()
            .copied()
            .filter(|r| self.records[r].status == Status::Pending)
            .collect()
    }

    /// Mostly an open hold, sometimes any hold, now and then none (`None`).
    fn pick_hold(&self, i: u8) -> Option<EntryId> {
        let open: Vec<EntryId> = self
            .hold_ids
            .iter()
            .copied()
            .filter(|h| self.holds[h].open)
            .collect();
        match i {
            255 => None,
            0..200 if !open.is_empty() => pick(&open, i),
            _ => pick(&self.hold_ids, i),
        }
    }

    fn need(&self, id: MemberId, amount: i64, at: i64) -> R<()> {
        if self.available(id, at) < amount {
            Err(Rejection::InsufficientPoints)
        } else {
            Ok(())
        }
    }

    fn merchant(&self, id: MerchantId) -> R<(OrgUnitId, bool, i64)> {
        self.merchants
            .get(&id)
            .copied()
            .ok_or(Rejection::UnknownMerchant)
    }

    fn credit(&mut self, id: MemberId, amount: i64, expires: i64) {
        add_lot(
            &mut self.members.get_mut(&id).unwrap().lots,
            expires,
            amount,
        );
    }

    fn debit(&mut self, id: MemberId, amount: i64) -> Vec<(i64, i64)> {
        take_lots(&mut self.members.get_mut(&id).unwrap().lots, amount)
    }

    fn award_of(&self, record: &MRecord) -> (i64, i64, bool) {
        if record.activity == activity(0) {
            // 10 points (1000 minor) an hour, pro rata, at most 240 minutes, nearest minor
            // unit (50m/3 never lands on a half).
            let m = i64::from(record.minutes.min(240));
            let q = 50 * m / 3;
            let points = if 2 * (50 * m % 3) > 3 { q + 1 } else { q };
            (points, m, false)
        } else {
            // 5 points × 1.5 per occasion, every minute counted as honour time.
            (750, i64::from(record.minutes), true)
        }
    }

    /// Applies a request at `at`: the predicted outcome, with the model updated, or the
    /// predicted rejection with nothing changed.
    pub fn apply(&mut self, request: &Request, at: i64) -> R<Outcome> {
        if let Some((actor, command, seq)) = self.requests.get(&request.request_id) {
            return if *actor == request.actor && *command == request.command {
                Ok(Outcome::Duplicate(*seq))
            } else {
                Err(Rejection::RequestIdReused)
            };
        }
        let seq = self.next_seq;
        self.decide_and_commit(&request.actor, &request.command, at, seq)?;
        self.requests.insert(
            request.request_id,
            (request.actor, request.command.clone(), seq),
        );
        self.next_seq += 1;
        Ok(Outcome::New(seq))
    }

    fn decide_and_commit(&mut self, actor: &Actor, command: &Command, at: i64, seq: u64) -> R<()> {
        let this = entry_id(seq);
        match command {
            Command::EnrolMember {
                id,
                home,
                dual_registration,
                card_code,
                ..
            } => {
                check_card(card_code)?;
                if !self.parent.contains_key(home) {
                    return Err(Rejection::UnknownOrgUnit);
                }
                if self.members.contains_key(id) {
                    return Err(Rejection::AlreadyExists);
                }
                if card_code.is_some() && self.members.values().any(|m| m.card == *card_code) {
                    return Err(Rejection::CardCodeTaken);
                }
                self.allow_in(actor, *home)?;
                self.members.insert(
                    *id,
                    MMember {
                        home: *home,
                        dual: *dual_registration,
                        card: card_code.clone(),
                        lots: Vec::new(),
                        credit: 0,
                        honour: 0,
                    },
                );
            }
            Command::UpdateMember {
                id,
                dual_registration,
                card_code,
                ..
            } => {
                check_card(card_code)?;
                let home = self.member(*id)?.home;
                if card_code.is_some()
                    && self
                        .members
                        .iter()
                        .any(|(other, m)| other != id && m.card == *card_code)
                {
                    return Err(Rejection::CardCodeTaken);
                }
                self.allow_in(actor, home)?;
                let m = self.members.get_mut(id).unwrap();
                m.dual = *dual_registration;
                m.card = card_code.clone();
            }
            Command::SetMerchantStatus { id, status } => {
                let (unit, _, _) = self.merchant(*id)?;
                self.allow_in(actor, unit)?;
                self.merchants.get_mut(id).unwrap().1 = *status == MerchantStatus::Suspended;
            }
            Command::RecordService { records } => {
                for r in records {
                    let age = at - r.started_at.millis();
                    if age > MAX_SERVICE_AGE_MS || -age > MAX_SERVICE_LEAD_MS {
                        return Err(Rejection::TimeOutOfRange);
                    }
                }
                if records.iter().any(|r| r.minutes == 0 || r.minutes > 1_440) {
                    return Err(Rejection::DurationOutOfRange);
                }
                if records.is_empty() {
                    return Err(Rejection::BatchEmpty);
                }
                if records
                    .iter()
                    .any(|r| !self.parent.contains_key(&r.org_unit))
                {
                    return Err(Rejection::UnknownOrgUnit);
                }
                for r in records {
                    self.member(r.member)?;
                }
                if records.iter().any(|r| r.activity == activity(2)) {
                    return Err(Rejection::UnknownActivity);
                }
                for r in records {
                    self.allow_in(actor, r.org_unit)?;
                }
                for r in records {
                    let m = &self.members[&r.member];
                    let branch = self.within(r.org_unit, m.home) || self.within(m.home, r.org_unit);
                    if !branch && !m.dual {
                        return Err(Rejection::MemberNotEligible);
                    }
                }
                for r in records {
                    let home_of_activity = if r.activity == activity(0) { a() } else { d() };
                    if !self.within(r.org_unit, home_of_activity) {
                        return Err(Rejection::ActivityNotAvailable);
                    }
                }
                for (index, r) in (0u32..).zip(records) {
                    let id = RecordId::for_record(this, index);
                    self.record_ids.push(id);
                    self.records.insert(
                        id,
                        MRecord {
                            member: r.member,
                            activity: r.activity,
                            unit: r.org_unit,
                            started_at: r.started_at.millis(),
                            minutes: r.minutes,
                            status: Status::Pending,
                            award: None,
                        },
                    );
                }
            }
            Command::ApproveService { records } | Command::RejectService { records, .. } => {
                let approve = matches!(command, Command::ApproveService { .. });
                if let Command::RejectService { reason, .. } = command {
                    check_text(reason)?;
                }
                if records.is_empty() {
                    return Err(Rejection::BatchEmpty);
                }
                for (i, r) in records.iter().enumerate() {
                    if records[..i].contains(r) {
                        return Err(Rejection::DuplicateInBatch);
                    }
                }
                for r in records {
                    if !self.records.contains_key(r) {
                        return Err(Rejection::UnknownRecord(*r));
                    }
                }
                for r in records {
                    self.allow_in(actor, self.records[r].unit)?;
                }
                for r in records {
                    if self.records[r].status != Status::Pending {
                        return Err(Rejection::RecordNotPending(*r));
                    }
                }
                if !approve {
                    for r in records {
                        self.records.get_mut(r).unwrap().status = Status::Rejected;
                    }
                    return Ok(());
                }
                let mut daily = self.daily.clone();
                let mut awards = Vec::new();
                for r in records {
                    let record = &self.records[r];
                    let award = self.award_of(record);
                    if record.activity == activity(1) {
                        let key = (record.member, record.activity, local_day(record.started_at));
                        let total = daily.entry(key).or_insert(0);
                        *total += award.0;
                        if *total > 10_00 {
                            return Err(Rejection::CapExceeded(*r));
                        }
                    }
                    awards.push((*r, record.member, award));
                }
                self.daily = daily;
                let expires = expiry_of(at);
                for (r, member, award) in awards {
                    self.credit(member, award.0, expires);
                    self.add_minutes(member, award.1, award.2);
                    self.issued += award.0;
                    let record = self.records.get_mut(&r).unwrap();
                    record.status = Status::Approved;
                    record.award = Some(award);
                }
                self.add_fact(
                    this,
                    Fact::Approval {
                        records: records.clone(),
                    },
                );
            }
            Command::Redeem {
                member,
                merchant,
                amount,
            } => {
                let amount = minor(*amount)?;
                self.member(*member)?;
                let (_, suspended, _) = self.merchant(*merchant)?;
                self.allow_merchant(actor, *merchant)?;
                if suspended {
                    return Err(Rejection::MerchantSuspended);
                }
                self.need(*member, amount, at)?;
                self.debit(*member, amount);
                self.merchants.get_mut(merchant).unwrap().2 += amount;
                self.add_spend(this, *member, *merchant, amount, at);
            }
            Command::PlaceHold {
                member,
                merchant,
                amount,
                ttl_ms,
            } => {
                let amount = minor(*amount)?;
                if *ttl_ms == 0 || *ttl_ms > MAX_TTL {
                    return Err(Rejection::DurationOutOfRange);
                }
                self.member(*member)?;
                let (_, suspended, _) = self.merchant(*merchant)?;
                self.allow_merchant(actor, *merchant)?;
                if suspended {
                    return Err(Rejection::MerchantSuspended);
                }
                self.need(*member, amount, at)?;
                self.hold_ids.push(this);
                self.holds.insert(
                    this,
                    MHold {
                        member: *member,
                        merchant: *merchant,
                        amount,
                        deadline: at + *ttl_ms as i64,
                        open: true,
                    },
                );
            }
            Command::CaptureHold { hold, amount } => {
                let amount = amount.map(minor).transpose()?;
                let h = self.holds.get(hold).ok_or(Rejection::UnknownHold)?.clone();
                self.allow_merchant(actor, h.merchant)?;
                if !h.open {
                    return Err(Rejection::HoldNotOpen);
                }
                if at >= h.deadline {
                    return Err(Rejection::HoldExpired);
                }
                let amount = amount.unwrap_or(h.amount);
                if amount > h.amount {
                    return Err(Rejection::CaptureOverHold);
                }
                // As the ledger stands, a capture at a merchant suspended after the hold was
                // placed is allowed (the hold reserved the points before the suspension).
                self.holds.get_mut(hold).unwrap().open = false;
                self.debit(h.member, amount);
                self.merchants.get_mut(&h.merchant).unwrap().2 += amount;
                self.add_spend(this, h.member, h.merchant, amount, at);
            }
            Command::ReleaseHold { hold } => {
                let h = self.holds.get(hold).ok_or(Rejection::UnknownHold)?;
                self.allow_merchant(actor, h.merchant)?;
                if !h.open {
                    return Err(Rejection::HoldNotOpen);
                }
                self.holds.get_mut(hold).unwrap().open = false;
            }
            Command::Refund { entry, amount } => {
                let amount = minor(*amount)?;
                let Some((
                    Fact::Spend {
                        member,
                        merchant,
                        taken,
                        refunded,
                        at: spent_at,
                    },
                    reversed,
                )) = self.facts.get(entry).cloned()
                else {
                    return Err(Rejection::UnknownEntry);
                };
                self.allow_merchant(actor, merchant)?;
                if reversed {
                    return Err(Rejection::AlreadyReversed);
                }
                if amount > taken - refunded {
                    return Err(Rejection::RefundOverTaken);
                }
                if let Some((Fact::Spend { refunded, .. }, _)) = self.facts.get_mut(entry) {
                    *refunded += amount;
                }
                self.merchants.get_mut(&merchant).unwrap().2 -= amount;
                self.credit(member, amount, expiry_of(spent_at));
            }
            Command::Reverse { entry, reason } => {
                check_text(reason)?;
                self.reverse(actor, *entry, at, seq)?;
            }
            Command::Transfer { from, to, amount } => {
                let amount = minor(*amount)?;
                if from == to {
                    return Err(Rejection::SameAccount);
                }
                let home = self.member(*from)?.home;
                self.member(*to)?;
                self.allow_in(actor, home)?;
                self.need(*from, amount, at)?;
                for (expires, part) in self.debit(*from, amount) {
                    self.credit(*to, part, expires);
                }
                self.add_fact(
                    this,
                    Fact::Transfer {
                        from: *from,
                        to: *to,
                        amount,
                    },
                );
            }
            Command::Donate {
                member,
                pool: to,
                amount,
            } => {
                let amount = minor(*amount)?;
                let home = self.member(*member)?.home;
                if *to != pool() {
                    return Err(Rejection::UnknownPool);
                }
                self.allow_in(actor, home)?;
                let key = (*member, local_year(at));
                let so_far = self.yearly_donations.get(&key).copied().unwrap_or(0);
                if so_far + amount > DONATION_CAP {
                    return Err(Rejection::DonationCapExceeded);
                }
                self.need(*member, amount, at)?;
                self.debit(*member, amount);
                self.pool_balance += amount;
                *self.yearly_donations.entry(key).or_insert(0) += amount;
                self.add_fact(
                    this,
                    Fact::Donation {
                        member: *member,
                        amount,
                        at,
                    },
                );
            }
            Command::Grant {
                pool: from,
                member,
                amount,
            } => {
                let amount = minor(*amount)?;
                self.member(*member)?;
                if *from != pool() {
                    return Err(Rejection::UnknownPool);
                }
                // The pool serves community A.
                self.allow_in(actor, a())?;
                if amount > GRANT_CAP {
                    return Err(Rejection::GrantCapExceeded);
                }
                if self.pool_balance < amount {
                    return Err(Rejection::InsufficientPool);
                }
                self.pool_balance -= amount;
                self.credit(*member, amount, expiry_of(at));
                self.add_fact(
                    this,
                    Fact::Grant {
                        member: *member,
                        amount,
                    },
                );
            }
            Command::Expire { member } => {
                let m = self.member(*member)?;
                if *actor != Actor::System {
                    self.allow_in(actor, m.home)?;
                }
                let expired: i64 = m.lots.iter().filter(|l| l.0 <= at).map(|l| l.1).sum();
                let amount = expired.min(self.available(*member, at));
                if amount <= 0 {
                    return Err(Rejection::NothingToExpire);
                }
                self.debit(*member, amount);
                self.expired += amount;
            }
            Command::Wish(_) | Command::Catalogue(_) => {
                return self.decide_workflow(actor, command, at, seq)
            }
            other => panic!("the generator does not produce {}", other.name()),
        }
        Ok(())
    }

    fn add_minutes(&mut self, member: MemberId, minutes: i64, honour: bool) {
        let m = self.members.get_mut(&member).unwrap();
        if honour {
            m.honour += minutes;
            self.honour_total += minutes;
        } else {
            m.credit += minutes;
            self.credit_total += minutes;
        }
    }

    fn add_fact(&mut self, id: EntryId, fact: Fact) {
        self.fact_ids.push(id);
        self.facts.insert(id, (fact, false));
    }

    fn add_spend(
        &mut self,
        id: EntryId,
        member: MemberId,
        merchant: MerchantId,
        amount: i64,
        at: i64,
    ) {
        self.spend_ids.push(id);
        self.add_fact(
            id,
            Fact::Spend {
                member,
                merchant,
                taken: amount,
                refunded: 0,
                at,
            },
        );
    }

    fn reverse(&mut self, actor: &Actor, entry: EntryId, at: i64, seq: u64) -> R<()> {
        let Some((fact, reversed)) = self.facts.get(&entry).cloned() else {
            // An entry of this journal that is not reversible, or no entry at all.
            let exists = (0..seq).any(|s| entry_id(s) == entry);
            if !exists {
                return Err(Rejection::UnknownEntry);
            }
            // Only admins and recorders may reverse anything, and permission outranks the
            // state of the entry.
            return match actor {
                Actor::Admin { .. } | Actor::Recorder { .. } => Err(Rejection::NotReversible),
                _ => Err(Rejection::ActorNotAllowed),
            };
        };
        match &fact {
            Fact::Approval { records } => {
                for r in records {
                    self.allow_in(actor, self.records[r].unit)?;
                }
            }
            Fact::Spend { merchant, .. } => self.allow_in(actor, self.merchants[merchant].0)?,
            Fact::Transfer { from, .. } => self.allow_in(actor, self.members[from].home)?,
            Fact::Donation { .. } | Fact::Grant { .. } => self.allow_in(actor, a())?,
        }
        if reversed {
            return Err(Rejection::AlreadyReversed);
        }
        match fact {
            Fact::Approval { records } => {
                let mut debit: HashMap<MemberId, i64> = HashMap::new();
                for r in &records {
                    let record = &self.records[r];
                    *debit.entry(record.member).or_insert(0) += record.award.unwrap().0;
                }
                for (member, amount) in &debit {
                    self.need(*member, *amount, at)?;
                }
                for r in &records {
                    let record = self.records[r].clone();
                    let (points, minutes, honour) = record.award.unwrap();
                    self.debit(record.member, points);
                    self.add_minutes(record.member, -minutes, honour);
                    self.issued -= points;
                    if record.activity == activity(1) {
                        let key = (record.member, record.activity, local_day(record.started_at));
                        *self.daily.get_mut(&key).unwrap() -= points;
                    }
                    self.records.get_mut(r).unwrap().status = Status::Reversed;
                }
            }
            Fact::Spend {
                member,
                merchant,
                taken,
                refunded,
                at: spent_at,
            } => {
                if refunded > 0 {
                    return Err(Rejection::AlreadyRefunded);
                }
                self.merchants.get_mut(&merchant).unwrap().2 -= taken;
                self.credit(member, taken, expiry_of(spent_at));
            }
            Fact::Transfer { from, to, amount } => {
                self.need(to, amount, at)?;
                for (expires, part) in self.debit(to, amount) {
                    self.credit(from, part, expires);
                }
            }
            Fact::Donation {
                member,
                amount,
                at: donated_at,
            } => {
                if self.pool_balance < amount {
                    return Err(Rejection::InsufficientPool);
                }
                self.pool_balance -= amount;
                self.credit(member, amount, expiry_of(donated_at));
            }
            Fact::Grant { member, amount } => {
                self.need(member, amount, at)?;
                self.debit(member, amount);
                self.pool_balance += amount;
            }
        }
        self.facts.get_mut(&entry).unwrap().1 = true;
        Ok(())
    }
}

// ------------------------------------------------------------------------------------------
// Generated operations: raw choices, resolved against the model's state when run
// ------------------------------------------------------------------------------------------

/// An amount choice: mostly whole cents, sometimes zero or too precise.
#[derive(Clone, Copy, Debug)]
pub enum Amt {
    Cents(u32),
    Zero,
    TooPrecise,
}

impl Amt {
    fn amount(self) -> Amount {
        match self {
            Amt::Cents(c) => format!("{}.{:02}", c / 100, c % 100).parse().unwrap(),
            Amt::Zero => "0".parse().unwrap(),
            Amt::TooPrecise => "0.005".parse().unwrap(),
        }
    }
}

fn amt() -> impl Strategy<Value = Amt> {
    prop_oneof![
        30 => (1u32..1_500).prop_map(Amt::Cents),
        6 => (1u32..6_000).prop_map(Amt::Cents),
        1 => Just(Amt::Zero),
        1 => Just(Amt::TooPrecise),
    ]
}

#[derive(Clone, Debug)]
pub enum Op {
    Record {
        member: u8,
        activity: u8,
        unit: u8,
        minutes: u32,
        ago_min: i64,
        second: Option<u8>,
    },
    Approve {
        first: u8,
        second: Option<u8>,
    },
    Reject {
        record: u8,
    },
    Redeem {
        member: u8,
        merchant: u8,
        amount: Amt,
    },
    Hold {
        member: u8,
        merchant: u8,
        amount: Amt,
        ttl: u8,
    },
    Capture {
        hold: u8,
        amount: Option<Amt>,
    },
    Release {
        hold: u8,
    },
    Refund {
        spend: u8,
        amount: Amt,
    },
    Reverse {
        target: u8,
        which: u8,
    },
    Transfer {
        from: u8,
        to: u8,
        amount: Amt,
    },
    Donate {
        member: u8,
        amount: Amt,
        unknown_pool: bool,
    },
    Grant {
        member: u8,
        amount: Amt,
    },
    Expire {
        member: u8,
    },
    Enrol {
        member: u8,
        home: u8,
        dual: bool,
        card: Option<u8>,
    },
    Update {
        member: u8,
        dual: bool,
        card: Option<u8>,
    },
    SetStatus {
        merchant: u8,
        suspend: bool,
    },
    /// Issue 5: a micro-wish or catalogue operation.
    Workflow(WOp),
    /// Send an earlier request again, verbatim.
    Retry {
        which: u8,
    },
    /// Send a new command under an earlier request id.
    Reuse {
        which: u8,
        op: Box<Op>,
    },
}

/// One step: time moves on, then a request is sent by the natural actor for the command
/// (or, with `actor = Some`, by any actor at all).
#[derive(Clone, Debug)]
pub struct Step {
    pub advance_ms: i64,
    pub actor: Option<u8>,
    pub op: Op,
}

fn small() -> impl Strategy<Value = u8> {
    any::<u8>()
}

fn basic_op() -> impl Strategy<Value = Op> {
    let card = prop::option::weighted(0.3, 0u8..5);
    prop_oneof![
        8 => (
            small(),
            small(),
            small(),
            prop_oneof![20 => 1u32..=300, 2 => 301u32..=1_440, 1 => Just(0u32), 1 => Just(1_441u32)],
            prop_oneof![20 => -60i64..3_000, 1 => Just(600_000i64)],
            prop::option::weighted(0.15, small()),
        )
            .prop_map(|(member, activity, unit, minutes, ago_min, second)| Op::Record {
                member,
                activity: if activity < 240 { activity % 2 } else { 2 },
                unit,
                minutes,
                ago_min,
                second,
            }),
        8 => (small(), prop::option::weighted(0.15, small()))
            .prop_map(|(first, second)| Op::Approve { first, second }),
        1 => small().prop_map(|record| Op::Reject { record }),
        6 => (small(), 0u8..3, amt()).prop_map(|(member, merchant, amount)| Op::Redeem {
            member, merchant: merchant % 3, amount }),
        5 => (small(), 0u8..3, amt(), prop_oneof![10 => 1u8..5, 1 => Just(0u8), 1 => Just(5u8)]).prop_map(|(member, merchant, amount, ttl)| Op::Hold {
            member, merchant, amount, ttl }),
        4 => (small(), prop::option::weighted(0.5, amt())).prop_map(|(hold, amount)| Op::Capture { hold, amount }),
        2 => small().prop_map(|hold| Op::Release { hold }),
        3 => (small(), amt()).prop_map(|(spend, amount)| Op::Refund { spend, amount }),
        3 => (0u8..10, small()).prop_map(|(target, which)| Op::Reverse { target, which }),
        3 => (small(), small(), amt()).prop_map(|(from, to, amount)| Op::Transfer { from, to, amount }),
        2 => (small(), amt(), prop::bool::weighted(0.05)).prop_map(|(member, amount, unknown_pool)| Op::Donate { member, amount, unknown_pool }),
        2 => (small(), amt()).prop_map(|(member, amount)| Op::Grant { member, amount }),
        2 => small().prop_map(|member| Op::Expire { member }),
        1 => (small(), prop_oneof![8 => 0u8..3, 1 => Just(3u8)], any::<bool>(), card.clone()).prop_map(|(member, home, dual, card)| Op::Enrol { member, home, dual, card }),
        1 => (small(), any::<bool>(), card).prop_map(|(member, dual, card)| Op::Update { member, dual, card }),
        1 => (0u8..3, any::<bool>()).prop_map(|(merchant, suspend)| Op::SetStatus { merchant: if merchant == 2 { 1 } else { merchant }, suspend }),
        20 => workflows::wop().prop_map(Op::Workflow),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => basic_op(),
        2 => small().prop_map(|which| Op::Retry { which }),
        1 => (small(), basic_op()).prop_map(|(which, op)| Op::Reuse { which, op: Box::new(op) }),
    ]
}

fn advance() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => Just(0i64),
        4 => 1i64..120_000,
        2 => HOUR..DAY,
        1 => DAY..20 * DAY,
    ]
}

pub fn steps(len: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (advance(), prop::option::weighted(0.12, 0u8..7), op()).prop_map(
            |(advance_ms, actor, op)| Step {
                advance_ms,
                actor,
                op,
            },
        ),
        len,
    )
}

fn pick<T: Copy>(list: &[T], i: u8) -> Option<T> {
    (!list.is_empty()).then(|| list[usize::from(i) % list.len()])
}

/// Resolves a generated operation into (natural actor, command) against the model.
fn resolve(model: &Model, op: &Op, now: i64) -> (Actor, Command) {
    let unknown_entry = EntryId::from_u128(0xbad).unwrap();
    let card = |c: &Option<u8>| {
        c.map(|c| {
            if c == 4 {
                "bad card".to_string()
            } else {
                format!("C-{c}")
            }
        })
    };
    match op {
        Op::Record {
            member: m,
            activity: act,
            unit,
            minutes,
            ago_min,
            second,
        } => {
            let started_at = Timestamp::from_millis(now - ago_min * MINUTE);
            // Serve mostly where the activity runs: patrol in A, the clinic anywhere in D.
            let unit = match (*unit, *act) {
                (0..200, 0) => a(),
                (0..200, _) => org(unit % 3),
                _ => org(*unit),
            };
            let input = |m: u8| ServiceInput {
                member: member(m),
                activity: activity(*act),
                org_unit: unit,
                started_at,
                minutes: *minutes,
            };
            let mut records = vec![input(*m)];
            if let Some(s) = second {
                records.push(input(*s));
            }
            (admin(), Command::RecordService { records })
        }
        Op::Approve { first, second } => {
            let pending = model.pending();
            let id = |i: u8| {
                let unknown = RecordId::from_u128(0xbad).unwrap();
                match i {
                    255 => unknown,
                    0..200 if !pending.is_empty() => pending[usize::from(i) % pending.len()],
                    _ => pick(&model.record_ids, i).unwrap_or(unknown),
                }
            };
            let mut records = vec![id(*first)];
            if let Some(s) = second {
                records.push(id(*s));
            }
            if *first == 254 {
                records.clear();
            }
            (admin(), Command::ApproveService { records })
        }
        Op::Reject { record } => {
            let pending = model.pending();
            let id = pick(&pending, *record)
                .filter(|_| *record < 200)
                .or_else(|| pick(&model.record_ids, *record))
                .unwrap_or(RecordId::from_u128(0xbad).unwrap());
            (
                admin(),
                Command::RejectService {
                    records: vec![id],
                    reason: "not on the roster".into(),
                },
            )
        }
        Op::Redeem {
            member: m,
            merchant: s,
            amount,
        } => (
            till(merchant(*s)),
            Command::Redeem {
                member: member(*m),
                merchant: merchant(*s),
                amount: amount.amount(),
            },
        ),
        Op::Hold {
            member: m,
            merchant: s,
            amount,
            ttl,
        } => {
            let ttl_ms = [0, 60_000, 600_000, HOUR as u64, MAX_TTL, MAX_TTL + 1][usize::from(*ttl)];
            (
                till(merchant(*s)),
                Command::PlaceHold {
                    member: member(*m),
                    merchant: merchant(*s % 2),
                    amount: amount.amount(),
                    ttl_ms,
                },
            )
        }
        Op::Capture { hold, amount } => {
            let id = model.pick_hold(*hold);
            let actor = id.map_or(admin(), |id| till(model.holds[&id].merchant));
            (
                actor,
                Command::CaptureHold {
                    hold: id.unwrap_or(unknown_entry),
                    amount: amount.map(Amt::amount),
                },
            )
        }
        Op::Release { hold } => {
            let id = model.pick_hold(*hold);
            let actor = id.map_or(admin(), |id| till(model.holds[&id].merchant));
            (
                actor,
                Command::ReleaseHold {
                    hold: id.unwrap_or(unknown_entry),
                },
            )
        }
        Op::Refund { spend, amount } => {
            let id = pick(&model.spend_ids, *spend).filter(|_| *spend != 255);
            let actor = match id.and_then(|id| model.facts.get(&id)) {
                Some((Fact::Spend { merchant, .. }, _)) => till(*merchant),
                _ => admin(),
            };
            (
                actor,
                Command::Refund {
                    entry: id.unwrap_or(entry_id(3)),
                    amount: amount.amount(),
                },
            )
        }
        Op::Reverse { target, which } => {
            let entry = match target {
                0..=7 => pick(&model.fact_ids, *which).unwrap_or(unknown_entry),
                8 => entry_id(u64::from(*which) % model.next_seq),
                _ => unknown_entry,
            };
            (
                admin(),
                Command::Reverse {
                    entry,
                    reason: if *which == 0 {
                        " ".into()
                    } else {
                        "mistake".into()
                    },
                },
            )
        }
        Op::Transfer { from, to, amount } => (
            admin(),
            Command::Transfer {
                from: member(*from),
                to: member(*to),
                amount: amount.amount(),
            },
        ),
        Op::Donate {
            member: m,
            amount,
            unknown_pool: unknown,
        } => (
            admin(),
            Command::Donate {
                member: member(*m),
                pool: if *unknown { unknown_pool() } else { pool() },
                amount: amount.amount(),
            },
        ),
        Op::Grant { member: m, amount } => (
            admin(),
            Command::Grant {
                pool: pool(),
                member: member(*m),
                amount: amount.amount(),
            },
        ),
        Op::Expire { member: m } => (Actor::System, Command::Expire { member: member(*m) }),
        Op::Enrol {
            member: m,
            home,
            dual,
            card: c,
        } => (
            admin(),
            Command::EnrolMember {
                id: member_any(*m),
                home: org(*home),
                kind: if *dual {
                    MemberKind::PartyMember
                } else {
                    MemberKind::Resident
                },
                dual_registration: *dual,
                card_code: card(c),
            },
        ),
        Op::Update {
            member: m,
            dual,
            card: c,
        } => (
            admin(),
            Command::UpdateMember {
                id: member(*m),
                kind: MemberKind::Resident,
                dual_registration: *dual,
                card_code: card(c),
            },
        ),
        Op::SetStatus {
            merchant: s,
            suspend,
        } => (
            admin(),
            Command::SetMerchantStatus {
                id: merchant(*s),
                status: if *suspend {
                    MerchantStatus::Suspended
                } else {
                    MerchantStatus::Active
                },
            },
        ),
        Op::Workflow(op) => workflows::resolve(model, op, now),
        Op::Retry { .. } | Op::Reuse { .. } => unreachable!("resolved by the driver"),
    }
}

// ------------------------------------------------------------------------------------------
// The driver
// ------------------------------------------------------------------------------------------

pub struct Run {
    pub ledger: Ledger,
    pub journal: Vec<Entry>,
    pub model: Model,
    pub now: i64,
    pub sent: Vec<Request>,
    next_request: u128,
}

impl Run {
    /// Opens the programme and applies the setup, checking both went through.
    pub fn start() -> Run {
        let now = Timestamp::from_millis(T0);
        let (mut ledger, genesis) =
            Ledger::open(spec(), RequestId::from_u128(1).unwrap(), admin(), now).unwrap();
        let mut journal = vec![genesis];
        for (i, command) in setup_commands().into_iter().enumerate() {
            let request = Request {
                request_id: RequestId::from_u128(2 + i as u128).unwrap(),
                actor: admin(),
                command,
            };
            match ledger.apply(&request, now) {
                Ok(Applied::New(entry)) => journal.push(entry),
                other => panic!("setup failed: {other:?}"),
            }
        }
        Run {
            ledger,
            journal,
            model: Model::new(),
            now: T0,
            sent: Vec::new(),
            next_request: 1_000,
        }
    }

    fn fresh_id(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId::from_u128(self.next_request).unwrap()
    }

    fn request_for(&mut self, step_actor: Option<u8>, op: &Op) -> Request {
        match op {
            Op::Retry { which } => {
                if self.sent.is_empty() {
                    self.request_for(step_actor, &Op::Expire { member: 0 })
                } else {
                    self.sent[usize::from(*which) % self.sent.len()].clone()
                }
            }
            Op::Reuse { which, op } => {
                let mut request = self.request_for(step_actor, op);
                if !self.sent.is_empty() {
                    request.request_id =
                        self.sent[usize::from(*which) % self.sent.len()].request_id;
                }
                request
            }
            op => {
                let (natural, command) = resolve(&self.model, op, self.now);
                Request {
                    request_id: self.fresh_id(),
                    actor: step_actor.map_or(natural, actor),
                    command,
                }
            }
        }
    }

    /// Runs one step through the ledger and the model, comparing outcomes, and with
    /// `check_balances` every balance too. Returns the ledger's outcome.
    pub fn step(&mut self, step: &Step, check_balances: bool) -> Result<Applied, Rejection> {
        self.now += step.advance_ms;
        let request = self.request_for(step.actor, &step.op);
        let now = Timestamp::from_millis(self.now);
        // The loading hints a batch applier gives first take `&self`, so they cannot
        // change the ledger; what this checks is that no request makes them panic.
        self.ledger.prefetch(&request);
        self.ledger.prefetch_state(&request);
        let got = self.ledger.apply(&request, now);
        if let Ok(Applied::New(entry)) = &got {
            self.journal.push(entry.clone());
        }
        let want = self.model.apply(&request, self.now);
        let got_outcome = got.as_ref().map(|applied| match applied {
            Applied::New(entry) => {
                assert_eq!(entry.id(), entry_id(entry.sequence()));
                assert_eq!(entry.at(), now);
                Outcome::New(entry.sequence())
            }
            Applied::Duplicate { sequence, id } => {
                assert_eq!(*id, entry_id(*sequence));
                Outcome::Duplicate(*sequence)
            }
        });
        assert_eq!(
            got_outcome.map_err(|e| *e),
            want,
            "request {:?} at {}: ledger and model disagree",
            request,
            self.now
        );
        if check_balances {
            assert_eq!(
                Some(self.ledger.head_hash()),
                self.journal.last().map(Entry::hash)
            );
            self.compare();
        }
        self.sent.push(request);
        got
    }

    /// Every observable balance in the ledger equals the model's.
    pub fn compare(&self) {
        let now = Timestamp::from_millis(self.now);
        for i in 0..MEMBERS {
            let id = member_any(i);
            let Some(m) = self.model.members.get(&id) else {
                assert!(
                    self.ledger.balance(id, now).is_none(),
                    "member {i} must be unknown"
                );
                continue;
            };
            let b = self.ledger.balance(id, now).expect("member enrolled");
            let held = self.model.held(id, self.now);
            let want = (m.balance(), held, m.balance() - held, m.credit, m.honour);
            let got = (
                b.balance.minor(),
                b.held.minor(),
                b.available.minor(),
                b.credit_minutes.get(),
                b.honour_minutes.get(),
            );
            assert_eq!(
                got, want,
                "member {i}: (balance, held, available, credit, honour)"
            );
            let lots: Vec<(i64, i64)> = self
                .ledger
                .lots(id)
                .unwrap()
                .iter()
                .map(|l| (l.expires_at.millis(), l.remaining.minor()))
                .collect();
            assert_eq!(lots, m.lots, "member {i}: lots");
            let view = self.ledger.member(id).unwrap();
            assert_eq!(
                (view.dual_registration, view.card_code.clone()),
                (m.dual, m.card.clone())
            );
        }
        for s in 0..2 {
            let id = merchant(s);
            let view = self.ledger.merchant(id).unwrap();
            let (_, suspended, taken) = self.model.merchants[&id];
            assert_eq!(view.taken.minor(), taken, "merchant {s}: taken");
            assert_eq!(view.status == MerchantStatus::Suspended, suspended);
        }
        assert_eq!(
            self.ledger.pool(pool()).unwrap().balance.minor(),
            self.model.pool_balance,
            "pool balance"
        );
        let totals = self.ledger.totals();
        assert_eq!(
            (
                totals.issued.minor(),
                totals.expired.minor(),
                totals.credit_minutes.get(),
                totals.honour_minutes.get()
            ),
            (
                self.model.issued,
                self.model.expired,
                self.model.credit_total,
                self.model.honour_total
            ),
            "totals"
        );
        assert_eq!(self.ledger.next_sequence(), self.model.next_seq);
        workflows::compare(self);
    }

    pub fn assert_audit_clean(&self) {
        let report = audit(&self.journal, Some(&self.ledger));
        assert!(report.is_clean(), "audit: {:#?}", report.breaches);
    }
}

/// Steps that start every sequence: service for the four enrolled members (patrol in A
/// for the two residents of A and the dual-registered member of B, the clinic in B for the
/// other member of B), all approved, so that there are points to spend.
pub fn endowment() -> Vec<Step> {
    let record = |member, activity, unit| Step {
        advance_ms: 0,
        actor: None,
        op: Op::Record {
            member,
            activity,
            unit,
            minutes: 240,
            ago_min: 240,
            second: None,
        },
    };
    let approve = Step {
        advance_ms: 0,
        actor: None,
        op: Op::Approve {
            first: 0,
            second: None,
        },
    };
    vec![
        record(0, 0, 0),
        record(1, 0, 0),
        record(2, 1, 2),
        record(3, 0, 0),
        approve.clone(),
        approve.clone(),
        approve.clone(),
        approve,
    ]
}

/// Cases from `PROPTEST_CASES` when set, else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn calendar_by_hand_agrees_with_known_dates() {
    // 2026-09-21 13:46 in Beijing: a month later is 2026-10-21T00:00+08:00.
    assert_eq!(expiry_of(T0), 1_792_512_000_000);
    assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
    assert_eq!(days_in_month(2026, 2), 28);
    assert_eq!(local_year(1_798_732_800_000 - 1), 2026);
    assert_eq!(local_year(1_798_732_800_000), 2027);
}
