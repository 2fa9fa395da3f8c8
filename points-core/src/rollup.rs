//! Rankings and roll-ups: what was earned, served, spent, donated and granted in a calendar
//! period, per member, per org unit (rolled up the tree), per merchant and per pool.
//!
//! A [`Rollup`] is a pure read model computed from the journal. It never looks at the
//! ledger's live state, so anyone holding the journal (the server, an auditor, the public
//! disclosure) computes the same figures.
//!
//! # What counts, and where
//!
//! - **Which period.** An entry counts in the period that contains its journal time
//!   ([`Entry::at`]), in the programme's local time (its UTC offset). Entry times never go
//!   backwards, so once a period has ended its roll-up never changes, whatever is written
//!   later: a published ranking stays true. A correction (reversal, refund) counts in the
//!   period in which it is entered, as in any book of account, so a member's net figure for
//!   a period can be negative when an earlier approval is reversed in it.
//! - **Points earned and hours** come from approvals ([`Event::ServiceApproved`], a
//!   micro-wish's confirmation, an event's approval) less reversed approvals, and are attributed to the org unit where the service took place
//!   (the record's org unit), not to the member's home: a dual-registered party member's
//!   service counts in the community served.
//! - **Points redeemed** are redemptions (of an amount or of catalogue items) and captures
//!   less refunds and reversed spends, attributed to the merchant and to the merchant's org
//!   unit. Settling a merchant's period is not a redemption and counts nowhere.
//! - **Love-bank donations and grants** are attributed to the pool and to the pool's org
//!   unit (and to the donor or receiver), net of reversals.
//! - Transfers between members and expiry are not in any figure.
//!
//! # Roll-up and ranking
//!
//! A unit's [`UnitRollup::own`] counts what was attributed to the unit itself; its
//! [`UnitRollup::total`] adds every descendant's (estate → community → street → district),
//! so `total = own + Σ children's total`. A member's figures *within* a unit are their
//! figures attributed to the unit's subtree; [`Rollup::top`] ranks members within a unit by
//! points earned (descending), then service minutes (credit + honour, descending), then
//! member id (ascending), so the order is total and deterministic.
//!
//! ```
//! use points_core::rollup::{Period, Rollup};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let period: Period = "2026-Q3".parse()?;
//! assert_eq!(period, Period::quarter(2026, 3)?);
//! // With an empty journal there is nothing to roll up.
//! assert!(Rollup::compute(&[], period).is_err());
//! # Ok(())
//! # }
//! ```

use crate::amount::{Minutes, Points};
use crate::entry::{Entry, Event, Reversal};
use crate::ids::{MemberId, MerchantId, OrgUnitId, PoolId, RecordId};
use crate::ledger::{catalogue::CatalogueEvent, gathering::GatheringEvent, wish::WishEvent};
use crate::model::{Award, TimeKind};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;
use time::{Date, Month, PrimitiveDateTime, Time, UtcOffset};

/// A calendar period in the programme's local time, or an explicit range of instants.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Period {
    /// A calendar month (1 to 12).
    Month {
        /// The year.
        year: i32,
        /// The month, 1 to 12.
        month: u8,
    },
    /// A calendar quarter (1 to 4: January–March, April–June, …).
    Quarter {
        /// The year.
        year: i32,
        /// The quarter, 1 to 4.
        quarter: u8,
    },
    /// A calendar year.
    Year {
        /// The year.
        year: i32,
    },
    /// The instants from `from` (inclusive) to `to` (exclusive), whatever the calendar.
    Range {
        /// First instant in the period.
        from: Timestamp,
        /// First instant after the period.
        to: Timestamp,
    },
}

/// The years a calendar period may name: the range of instants the ledger accepts.
const YEARS: std::ops::RangeInclusive<i32> = 2000..=2199;

/// Why a period is not valid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    /// A year outside 2000–2199, a month outside 1–12, a quarter outside 1–4, or a range
    /// that ends before it starts.
    #[error("period out of range")]
    OutOfRange,
    /// The text is not `YYYY`, `YYYY-MM`, `YYYY-Qn` or `FROM_MS..TO_MS`.
    #[error("period must be YYYY, YYYY-MM, YYYY-Qn or FROM_MS..TO_MS")]
    Malformed,
}

impl Period {
    /// A calendar month.
    pub fn month(year: i32, month: u8) -> Result<Period, PeriodError> {
        if !YEARS.contains(&year) || !(1..=12).contains(&month) {
            return Err(PeriodError::OutOfRange);
        }
        Ok(Period::Month { year, month })
    }

    /// A calendar quarter.
    pub fn quarter(year: i32, quarter: u8) -> Result<Period, PeriodError> {
        if !YEARS.contains(&year) || !(1..=4).contains(&quarter) {
            return Err(PeriodError::OutOfRange);
        }
        Ok(Period::Quarter { year, quarter })
    }

    /// A calendar year.
    pub fn year(year: i32) -> Result<Period, PeriodError> {
        if !YEARS.contains(&year) {
            return Err(PeriodError::OutOfRange);
        }
        Ok(Period::Year { year })
    }

    /// The instants from `from` up to, not including, `to`.
    pub fn range(from: Timestamp, to: Timestamp) -> Result<Period, PeriodError> {
        if to < from {
            return Err(PeriodError::OutOfRange);
        }
        Ok(Period::Range { from, to })
    }

    /// The first instant in the period and the first instant after it, at the given UTC
    /// offset (the programme's local time). `None` only for a period built around the
    /// checked constructors with an impossible year, month or offset.
    pub fn bounds(&self, utc_offset_minutes: i16) -> Option<(Timestamp, Timestamp)> {
        let (year, first_month, months) = match *self {
            Period::Range { from, to } => return Some((from, to)),
            Period::Month { year, month } => (year, month, 1u8),
            Period::Quarter { year, quarter } => (year, quarter.checked_sub(1)? * 3 + 1, 3),
            Period::Year { year } => (year, 1, 12),
        };
        let start = month_start(year, first_month, utc_offset_minutes)?;
        let last = first_month.checked_add(months)?;
        let end = if last > 12 {
            month_start(year.checked_add(1)?, last - 12, utc_offset_minutes)?
        } else {
            month_start(year, last, utc_offset_minutes)?
        };
        Some((start, end))
    }

    /// Whether `at` lies in the period at the given UTC offset.
    pub fn contains(&self, at: Timestamp, utc_offset_minutes: i16) -> bool {
        self.bounds(utc_offset_minutes)
            .is_some_and(|(start, end)| start <= at && at < end)
    }
}

/// Local midnight on the first of `month` in `year`.
fn month_start(year: i32, month: u8, utc_offset_minutes: i16) -> Option<Timestamp> {
    let offset = UtcOffset::from_whole_seconds(i32::from(utc_offset_minutes) * 60).ok()?;
    let date = Date::from_calendar_date(year, Month::try_from(month).ok()?, 1).ok()?;
    let local = PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_offset(offset);
    i64::try_from(local.unix_timestamp_nanos() / 1_000_000)
        .ok()
        .map(Timestamp::from_millis)
}

impl fmt::Display for Period {
    /// `2026`, `2026-03`, `2026-Q1`, or `FROM_MS..TO_MS`; [`FromStr`] reads the same forms.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Period::Month { year, month } => write!(f, "{year:04}-{month:02}"),
            Period::Quarter { year, quarter } => write!(f, "{year:04}-Q{quarter}"),
            Period::Year { year } => write!(f, "{year:04}"),
            Period::Range { from, to } => write!(f, "{}..{}", from.millis(), to.millis()),
        }
    }
}

impl FromStr for Period {
    type Err = PeriodError;

    fn from_str(text: &str) -> Result<Period, PeriodError> {
        if let Some((from, to)) = text.split_once("..") {
            let from = from.parse().map_err(|_| PeriodError::Malformed)?;
            let to = to.parse().map_err(|_| PeriodError::Malformed)?;
            return Period::range(Timestamp::from_millis(from), Timestamp::from_millis(to));
        }
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let (year, rest) = text.split_at(text.len().min(4));
        if year.len() != 4 || !digits(year) {
            return Err(PeriodError::Malformed);
        }
        let year: i32 = year.parse().map_err(|_| PeriodError::Malformed)?;
        match rest.strip_prefix('-') {
            None if rest.is_empty() => Period::year(year),
            Some(q) if q.len() == 2 && (q.starts_with('Q') || q.starts_with('q')) => {
                let quarter = q[1..].parse().map_err(|_| PeriodError::Malformed)?;
                Period::quarter(year, quarter)
            }
            Some(m) if m.len() == 2 && digits(m) => {
                Period::month(year, m.parse().map_err(|_| PeriodError::Malformed)?)
            }
            _ => Err(PeriodError::Malformed),
        }
    }
}

/// Figures for one member, unit, or the whole programme in a period. Every figure is net
/// of the corrections entered in the same period (see the [module docs](self)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Points awarded by approvals, less approvals reversed.
    pub points_earned: Points,
    /// Credit minutes (checked in and out) counted by approvals, less reversed.
    pub credit_minutes: Minutes,
    /// Honour minutes (certified afterwards) counted by approvals, less reversed.
    pub honour_minutes: Minutes,
    /// Approved service records, less reversed ones.
    pub records: i64,
    /// Points spent at merchants (redemptions and captures) less refunds and reversals.
    pub points_redeemed: Points,
    /// Points donated into love-bank or time-bank pools, less reversed donations.
    pub points_donated: Points,
    /// Points granted from pools, less reversed grants.
    pub points_granted: Points,
}

impl Stats {
    /// Credit plus honour minutes, or `None` on overflow.
    pub fn service_minutes(&self) -> Option<Minutes> {
        self.credit_minutes.checked_add(self.honour_minutes)
    }

    /// Field-by-field sum, or `None` on overflow.
    pub fn checked_add(&self, other: &Stats) -> Option<Stats> {
        Some(Stats {
            points_earned: self.points_earned.checked_add(other.points_earned)?,
            credit_minutes: self.credit_minutes.checked_add(other.credit_minutes)?,
            honour_minutes: self.honour_minutes.checked_add(other.honour_minutes)?,
            records: self.records.checked_add(other.records)?,
            points_redeemed: self.points_redeemed.checked_add(other.points_redeemed)?,
            points_donated: self.points_donated.checked_add(other.points_donated)?,
            points_granted: self.points_granted.checked_add(other.points_granted)?,
        })
    }

    /// Whether every figure is zero.
    pub fn is_zero(&self) -> bool {
        *self == Stats::default()
    }
}

/// One org unit's figures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitRollup {
    /// The unit.
    pub id: OrgUnitId,
    /// Its parent, if any.
    pub parent: Option<OrgUnitId>,
    /// Its direct children, in id order.
    pub children: Vec<OrgUnitId>,
    /// What was attributed to this unit itself.
    pub own: Stats,
    /// `own` plus every descendant's `own`.
    pub total: Stats,
    /// Each member's figures within this unit's subtree (only members with any).
    members: BTreeMap<MemberId, Stats>,
}

impl UnitRollup {
    /// Each member's figures within this unit's subtree, in member id order.
    pub fn members(&self) -> impl Iterator<Item = (MemberId, &Stats)> + '_ {
        self.members.iter().map(|(id, stats)| (*id, stats))
    }

    /// One member's figures within this unit's subtree.
    pub fn member(&self, id: MemberId) -> Option<&Stats> {
        self.members.get(&id)
    }
}

/// Points spent at one merchant in a period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantRollup {
    /// The merchant.
    pub id: MerchantId,
    /// Where it is.
    pub org_unit: OrgUnitId,
    /// Redemptions and captures less refunds and reversals.
    pub points_redeemed: Points,
    /// How many redemptions and captures (not netted).
    pub redemptions: u64,
}

/// Movements of one pool in a period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolRollup {
    /// The pool.
    pub id: PoolId,
    /// The org unit it serves.
    pub org_unit: OrgUnitId,
    /// Donations less reversed donations.
    pub points_donated: Points,
    /// Grants less reversed grants.
    pub points_granted: Points,
}

/// What a ranking orders by (descending); ties fall back to the other figure, then to the
/// member id (ascending).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RankBy {
    /// Points earned, then service minutes.
    #[default]
    Points,
    /// Service minutes (credit + honour), then points earned.
    Minutes,
}

/// Why a roll-up could not be computed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RollupError {
    /// The entries do not start with the programme's opening entry.
    #[error("the journal must start with its ProgramOpened entry")]
    MissingGenesis,
    /// An entry came out of sequence (a gap or a repeat would drop or double figures).
    #[error("journal entry {found} came where {expected} was expected")]
    OutOfSequence {
        /// The sequence expected next.
        expected: u64,
        /// The sequence found.
        found: u64,
    },
    /// The period's bounds cannot be computed (impossible date or offset).
    #[error("the period has no bounds at the programme's offset")]
    BadPeriod,
    /// A sum left the countable range.
    #[error("a total overflowed")]
    Overflow,
}

/// The figures of one period: per member, per org unit (rolled up), per merchant, per pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollup {
    period: Period,
    start: Timestamp,
    end: Timestamp,
    entries_read: u64,
    complete: bool,
    program: Stats,
    members: BTreeMap<MemberId, Stats>,
    units: BTreeMap<OrgUnitId, UnitRollup>,
    roots: Vec<OrgUnitId>,
    merchants: BTreeMap<MerchantId, MerchantRollup>,
    pools: BTreeMap<PoolId, PoolRollup>,
}

impl Rollup {
    /// Computes the roll-up of `period` from a journal, which must start at its first
    /// entry (the programme's opening) and be in sequence order. Entries after the period
    /// are not read, so the journal may run on past it (an iterator over a store stops
    /// early).
    pub fn compute<'a>(
        journal: impl IntoIterator<Item = &'a Entry>,
        period: Period,
    ) -> Result<Rollup, RollupError> {
        let mut builder: Option<RollupBuilder> = None;
        for entry in journal {
            let b = match &mut builder {
                Some(b) => b,
                None => builder.insert(RollupBuilder::new(entry, period)?),
            };
            if !b.push(entry)? {
                break;
            }
        }
        builder.ok_or(RollupError::MissingGenesis)?.finish()
    }

    /// The period.
    pub fn period(&self) -> Period {
        self.period
    }

    /// The first instant in the period.
    pub fn start(&self) -> Timestamp {
        self.start
    }

    /// The first instant after the period.
    pub fn end(&self) -> Timestamp {
        self.end
    }

    /// How many journal entries were read (up to the end of the period).
    pub fn entries_read(&self) -> u64 {
        self.entries_read
    }

    /// Whether the journal read already ran past the period (an entry at or after its
    /// end was seen). Entry times never go backwards, so such a roll-up is final: no
    /// later entry can change it, and a caller may cache it.
    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// The whole programme's figures.
    pub fn program(&self) -> &Stats {
        &self.program
    }

    /// One member's figures across the programme; `None` if the member has none.
    pub fn member(&self, id: MemberId) -> Option<&Stats> {
        self.members.get(&id)
    }

    /// Every member with any figure, in id order.
    pub fn members(&self) -> impl Iterator<Item = (MemberId, &Stats)> + '_ {
        self.members.iter().map(|(id, stats)| (*id, stats))
    }

    /// One org unit's figures (every unit created by the end of the period has one).
    pub fn unit(&self, id: OrgUnitId) -> Option<&UnitRollup> {
        self.units.get(&id)
    }

    /// Every org unit, in id order.
    pub fn units(&self) -> impl Iterator<Item = &UnitRollup> + '_ {
        self.units.values()
    }

    /// The units with no parent, in id order.
    pub fn roots(&self) -> &[OrgUnitId] {
        &self.roots
    }

    /// One merchant's figures (every merchant registered by the end of the period).
    pub fn merchant(&self, id: MerchantId) -> Option<&MerchantRollup> {
        self.merchants.get(&id)
    }

    /// Every merchant, in id order.
    pub fn merchants(&self) -> impl Iterator<Item = &MerchantRollup> + '_ {
        self.merchants.values()
    }

    /// One pool's figures.
    pub fn pool(&self, id: PoolId) -> Option<&PoolRollup> {
        self.pools.get(&id)
    }

    /// Every pool, in id order.
    pub fn pools(&self) -> impl Iterator<Item = &PoolRollup> + '_ {
        self.pools.values()
    }

    /// The top `n` members within `unit`'s subtree by points earned (see [`RankBy`] for the
    /// tie-break). Members whose ranked figures are both zero or below are left out, so a
    /// ranking lists only members who served. Empty for an unknown unit.
    pub fn top(&self, unit: OrgUnitId, n: usize) -> Vec<(MemberId, Stats)> {
        self.top_by(unit, n, RankBy::Points)
    }

    /// The top `n` members within `unit`'s subtree, ordered by `by`.
    pub fn top_by(&self, unit: OrgUnitId, n: usize, by: RankBy) -> Vec<(MemberId, Stats)> {
        let Some(unit) = self.units.get(&unit) else {
            return Vec::new();
        };
        rank(unit.members.iter().map(|(id, s)| (*id, *s)), n, by)
    }

    /// The top `n` members across the whole programme.
    pub fn top_overall(&self, n: usize, by: RankBy) -> Vec<(MemberId, Stats)> {
        rank(self.members.iter().map(|(id, s)| (*id, *s)), n, by)
    }
}

/// Ranks members: descending by the chosen figure, then the other, then ascending id.
fn rank(
    members: impl Iterator<Item = (MemberId, Stats)>,
    n: usize,
    by: RankBy,
) -> Vec<(MemberId, Stats)> {
    let minutes =
        |s: &Stats| i128::from(s.credit_minutes.get()) + i128::from(s.honour_minutes.get());
    let key = |s: &Stats| {
        let points = i128::from(s.points_earned.minor());
        match by {
            RankBy::Points => (points, minutes(s)),
            RankBy::Minutes => (minutes(s), points),
        }
    };
    let mut ranked: Vec<(MemberId, Stats)> = members
        .filter(|(_, s)| {
            let (a, b) = key(s);
            a > 0 || b > 0
        })
        .collect();
    ranked.sort_by(|(a_id, a), (b_id, b)| key(b).cmp(&key(a)).then(a_id.cmp(b_id)));
    ranked.truncate(n);
    ranked
}

/// Reference data the roll-up needs to attribute an event to a unit.
#[derive(Default)]
struct Reference {
    parents: HashMap<OrgUnitId, Option<OrgUnitId>>,
    /// Units in creation order: a parent always comes before its children.
    order: Vec<OrgUnitId>,
    merchants: HashMap<MerchantId, OrgUnitId>,
    pools: HashMap<PoolId, OrgUnitId>,
    records: HashMap<RecordId, OrgUnitId>,
}

/// Which figure an event moves.
#[derive(Clone, Copy)]
enum Figure {
    Earned {
        points: i64,
        minutes: i64,
        kind: TimeKind,
        records: i64,
    },
    Redeemed(i64),
    Donated(i64),
    Granted(i64),
}

/// Builds a [`Rollup`] one journal entry at a time, for callers that stream the journal.
pub struct RollupBuilder {
    period: Period,
    start: Timestamp,
    end: Timestamp,
    next_sequence: u64,
    complete: bool,
    reference: Reference,
    program: Stats,
    members: BTreeMap<MemberId, Stats>,
    /// Per unit, per member: what was attributed to the unit itself.
    own: HashMap<OrgUnitId, BTreeMap<MemberId, Stats>>,
    merchants: BTreeMap<MerchantId, MerchantRollup>,
    pools: BTreeMap<PoolId, PoolRollup>,
}

impl RollupBuilder {
    /// Starts a roll-up of `period` from the journal's first entry, which must be the
    /// programme's opening (it carries the UTC offset that places the period).
    pub fn new(genesis: &Entry, period: Period) -> Result<RollupBuilder, RollupError> {
        let Event::ProgramOpened(spec) = genesis.event() else {
            return Err(RollupError::MissingGenesis);
        };
        if genesis.sequence() != 0 {
            return Err(RollupError::MissingGenesis);
        }
        let (start, end) = period
            .bounds(spec.utc_offset_minutes())
            .ok_or(RollupError::BadPeriod)?;
        Ok(RollupBuilder {
            period,
            start,
            end,
            next_sequence: 0,
            complete: false,
            reference: Reference::default(),
            program: Stats::default(),
            members: BTreeMap::new(),
            own: HashMap::new(),
            merchants: BTreeMap::new(),
            pools: BTreeMap::new(),
        })
    }

    /// Reads the next entry (they must come in sequence order from the first). Returns
    /// `false` once the entry lies after the period: nothing after it can change the
    /// roll-up, and the caller may stop reading.
    pub fn push(&mut self, entry: &Entry) -> Result<bool, RollupError> {
        if self.complete {
            return Ok(false);
        }
        if entry.sequence() != self.next_sequence {
            // A gap or repeat would silently drop or double figures; refuse instead.
            return Err(RollupError::OutOfSequence {
                expected: self.next_sequence,
                found: entry.sequence(),
            });
        }
        if entry.at() >= self.end {
            self.complete = true;
            return Ok(false);
        }
        self.next_sequence += 1;
        let in_period = entry.at() >= self.start;
        self.learn(entry.event());
        if in_period {
            self.count(entry.event())?;
        }
        Ok(true)
    }

    /// Keeps the reference data that attributes later events.
    fn learn(&mut self, event: &Event) {
        let r = &mut self.reference;
        match event {
            // The ledger never creates a unit twice; a hostile journal that does keeps the
            // unit's first place in the order.
            Event::OrgUnitCreated { id, parent, .. }
                if r.parents.insert(*id, *parent).is_none() =>
            {
                r.order.push(*id);
            }
            Event::MerchantRegistered { id, org_unit, .. } => {
                r.merchants.insert(*id, *org_unit);
                self.merchants.entry(*id).or_insert(MerchantRollup {
                    id: *id,
                    org_unit: *org_unit,
                    points_redeemed: Points::ZERO,
                    redemptions: 0,
                });
            }
            Event::PoolCreated { id, org_unit, .. } => {
                r.pools.insert(*id, *org_unit);
                self.pools.entry(*id).or_insert(PoolRollup {
                    id: *id,
                    org_unit: *org_unit,
                    points_donated: Points::ZERO,
                    points_granted: Points::ZERO,
                });
            }
            Event::ServiceRecorded { records } => {
                for record in records {
                    r.records.insert(record.id, record.org_unit);
                }
            }
            // Issue 5: a wish's confirmation and an event's check-out create service
            // records too; their approvals (and reversals) are attributed by them.
            Event::Wish(event) => {
                if let WishEvent::Confirmed { record, .. } = &**event {
                    r.records.insert(record.id, record.org_unit);
                }
            }
            Event::Gathering(event) => {
                if let GatheringEvent::CheckedOut { record, .. } = &**event {
                    r.records.insert(record.id, record.org_unit);
                }
            }
            _ => {}
        }
    }

    /// Adds an in-period event's figures.
    fn count(&mut self, event: &Event) -> Result<(), RollupError> {
        match event {
            Event::ServiceApproved { awards } => self.awards(awards, 1)?,
            Event::Redeemed {
                member,
                merchant,
                amount,
            }
            | Event::HoldCaptured {
                member,
                merchant,
                amount,
                ..
            } => self.spend(*member, *merchant, amount.minor(), true)?,
            Event::Refunded {
                member,
                merchant,
                amount,
                ..
            } => self.spend(*member, *merchant, neg(amount.minor())?, false)?,
            Event::Donated {
                member,
                pool,
                amount,
            } => self.pool_move(*member, *pool, Figure::Donated(amount.minor()))?,
            Event::Granted {
                pool,
                member,
                amount,
                ..
            } => self.pool_move(*member, *pool, Figure::Granted(amount.minor()))?,
            Event::Reversed { effect, .. } => match effect {
                Reversal::Accrual { awards } => self.awards(awards, -1)?,
                Reversal::Spend {
                    member,
                    merchant,
                    amount,
                    ..
                } => self.spend(*member, *merchant, neg(amount.minor())?, false)?,
                Reversal::Donation {
                    member,
                    pool,
                    amount,
                    ..
                } => self.pool_move(*member, *pool, Figure::Donated(neg(amount.minor())?))?,
                Reversal::Grant {
                    pool,
                    member,
                    amount,
                } => self.pool_move(*member, *pool, Figure::Granted(neg(amount.minor())?))?,
                Reversal::Transfer { .. } => {}
            },
            // Issue 5: a confirmed wish and an approved event earn points and hours like
            // any approval; a redemption of catalogue items is a redemption. Settlement
            // entries move points between a merchant's own accounts and count nowhere.
            Event::Wish(event) => {
                if let WishEvent::Confirmed { award, .. } = &**event {
                    self.awards(std::slice::from_ref(award), 1)?;
                }
            }
            Event::Gathering(event) => {
                if let GatheringEvent::Approved { awards, .. } = &**event {
                    self.awards(awards, 1)?;
                }
            }
            Event::Catalogue(event) => {
                if let CatalogueEvent::ItemsRedeemed {
                    member,
                    merchant,
                    amount,
                    ..
                } = &**event
                {
                    self.spend(*member, *merchant, amount.minor(), true)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn awards(&mut self, awards: &[Award], sign: i64) -> Result<(), RollupError> {
        for award in awards {
            let unit = self.reference.records.get(&award.record).copied();
            let figure = Figure::Earned {
                points: award
                    .points
                    .minor()
                    .checked_mul(sign)
                    .ok_or(RollupError::Overflow)?,
                minutes: award
                    .minutes
                    .get()
                    .checked_mul(sign)
                    .ok_or(RollupError::Overflow)?,
                kind: award.time_kind,
                records: sign,
            };
            self.add(award.member, unit, figure)?;
        }
        Ok(())
    }

    fn spend(
        &mut self,
        member: MemberId,
        merchant: MerchantId,
        amount: i64,
        counts_as_redemption: bool,
    ) -> Result<(), RollupError> {
        let unit = self.reference.merchants.get(&merchant).copied();
        if let Some(m) = self.merchants.get_mut(&merchant) {
            m.points_redeemed = m
                .points_redeemed
                .checked_add(Points::from_minor(amount))
                .ok_or(RollupError::Overflow)?;
            if counts_as_redemption {
                m.redemptions += 1;
            }
        }
        self.add(member, unit, Figure::Redeemed(amount))
    }

    fn pool_move(
        &mut self,
        member: MemberId,
        pool: PoolId,
        figure: Figure,
    ) -> Result<(), RollupError> {
        let unit = self.reference.pools.get(&pool).copied();
        if let Some(p) = self.pools.get_mut(&pool) {
            let (field, amount) = match figure {
                Figure::Donated(a) => (&mut p.points_donated, a),
                Figure::Granted(a) => (&mut p.points_granted, a),
                _ => return Ok(()),
            };
            *field = field
                .checked_add(Points::from_minor(amount))
                .ok_or(RollupError::Overflow)?;
        }
        self.add(member, unit, figure)
    }

    /// Adds a figure to the member, the programme and (when known) the unit it happened in.
    fn add(
        &mut self,
        member: MemberId,
        unit: Option<OrgUnitId>,
        figure: Figure,
    ) -> Result<(), RollupError> {
        let delta = delta(figure);
        let sum = |s: &mut Stats| -> Result<(), RollupError> {
            *s = s.checked_add(&delta).ok_or(RollupError::Overflow)?;
            Ok(())
        };
        sum(&mut self.program)?;
        sum(self.members.entry(member).or_default())?;
        if let Some(unit) = unit {
            sum(self.own.entry(unit).or_default().entry(member).or_default())?;
        }
        Ok(())
    }

    /// The roll-up of what was read.
    pub fn finish(self) -> Result<Rollup, RollupError> {
        let reference = self.reference;
        let mut units: BTreeMap<OrgUnitId, UnitRollup> = BTreeMap::new();
        let mut own = self.own;
        for &id in &reference.order {
            let members = own.remove(&id).unwrap_or_default();
            let mut own_stats = Stats::default();
            for stats in members.values() {
                own_stats = own_stats.checked_add(stats).ok_or(RollupError::Overflow)?;
            }
            units.insert(
                id,
                UnitRollup {
                    id,
                    parent: reference.parents.get(&id).copied().flatten(),
                    children: Vec::new(),
                    own: own_stats,
                    total: own_stats,
                    members,
                },
            );
        }
        // Children come after their parents in creation order, so walking it backwards
        // folds every subtree into its root before that root is folded into its parent.
        for &id in reference.order.iter().rev() {
            let Some(child) = units.get(&id) else {
                continue;
            };
            let Some(parent) = child.parent else { continue };
            let (total, members) = (child.total, child.members.clone());
            let Some(p) = units.get_mut(&parent) else {
                continue;
            };
            p.children.push(id);
            p.total = p.total.checked_add(&total).ok_or(RollupError::Overflow)?;
            for (member, stats) in members {
                let slot = p.members.entry(member).or_default();
                *slot = slot.checked_add(&stats).ok_or(RollupError::Overflow)?;
            }
        }
        let mut roots = Vec::new();
        for unit in units.values_mut() {
            unit.children.sort_unstable();
            if unit.parent.is_none() {
                roots.push(unit.id);
            }
        }
        Ok(Rollup {
            period: self.period,
            start: self.start,
            end: self.end,
            entries_read: self.next_sequence,
            complete: self.complete,
            program: self.program,
            members: self.members,
            units,
            roots,
            merchants: self.merchants,
            pools: self.pools,
        })
    }
}

fn neg(amount: i64) -> Result<i64, RollupError> {
    amount.checked_neg().ok_or(RollupError::Overflow)
}

fn delta(figure: Figure) -> Stats {
    let mut s = Stats::default();
    match figure {
        Figure::Earned {
            points,
            minutes,
            kind,
            records,
        } => {
            s.points_earned = Points::from_minor(points);
            match kind {
                TimeKind::Credit => s.credit_minutes = Minutes::new(minutes),
                TimeKind::Honour => s.honour_minutes = Minutes::new(minutes),
            }
            s.records = records;
        }
        Figure::Redeemed(a) => s.points_redeemed = Points::from_minor(a),
        Figure::Donated(a) => s.points_donated = Points::from_minor(a),
        Figure::Granted(a) => s.points_granted = Points::from_minor(a),
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    const CST: i16 = 480;

    #[test]
    fn periods_parse_print_and_bound_in_local_time() {
        for text in ["2026", "2026-03", "2026-Q4", "100..200"] {
            let period: Period = text.parse().unwrap();
            assert_eq!(period.to_string(), text);
        }
        for bad in [
            "26", "2026-13", "2026-Q5", "2026-", "2026-1", "abcd", "5..4", "1999",
        ] {
            assert!(bad.parse::<Period>().is_err(), "{bad}");
        }
        // 2026-01 in Beijing runs from 2025-12-31T16:00Z to 2026-01-31T16:00Z.
        let (start, end) = Period::month(2026, 1).unwrap().bounds(CST).unwrap();
        assert_eq!(start.to_string(), "2025-12-31T16:00:00.000Z");
        assert_eq!(end.to_string(), "2026-01-31T16:00:00.000Z");
        // Q4 ends at the next year's start; a year is twelve months.
        let (q_start, q_end) = Period::quarter(2026, 4).unwrap().bounds(0).unwrap();
        assert_eq!(q_start.to_string(), "2026-10-01T00:00:00.000Z");
        assert_eq!(q_end.to_string(), "2027-01-01T00:00:00.000Z");
        let (y_start, y_end) = Period::year(2026).unwrap().bounds(0).unwrap();
        assert_eq!(y_start.to_string(), "2026-01-01T00:00:00.000Z");
        assert_eq!(y_end, q_end);
        let december = Period::month(2026, 12).unwrap();
        assert_eq!(december.bounds(0).unwrap().1, q_end);
        assert!(december.contains(Timestamp::from_millis(q_end.millis() - 1), 0));
        assert!(!december.contains(q_end, 0));
    }
}
