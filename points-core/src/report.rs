//! The public report (公开) of an org unit and period: service totals and the volunteers'
//! ranking, redemptions by merchant, love-bank donations and grants, and points earned and
//! spent per month, built from the journal entries a signed checkpoint covers.
//!
//! A report holds no personal data: members appear only under their keyed pseudonym
//! ([`crate::checkpoint::pseudonym`] over their member code, see [`member_code`]). Every
//! figure is a sum over the report's public rows, one per entry that moved points, and each
//! row names its entry's sequence and chain hash and carries that entry's inclusion proof,
//! so anyone can check that the rows are in the signed journal ([`Summary::of`] recomputes
//! the figures; the server's `points verify report` checks the proofs).
//!
//! Pure: [`Extractor`] reads entries in journal order and yields rows. The published figures
//! come from the roll-up ([`crate::rollup`], [`Summary::from_rollup`]); [`Summary::of`]
//! recomputes them from the public rows alone, which is what a verifier does, so a report
//! checks out only when the two independent computations agree. Sums saturate instead of wrapping; the ledger refuses any balance that
//! would overflow, so a real journal never reaches the bounds.

use crate::checkpoint::{pseudonym, SignedCheckpoint};
use crate::entry::{Entry, Event, Reversal};
use crate::ids::{MemberId, MerchantId, OrgUnitId, PoolId, ProgramId, RecordId};
use crate::ledger::{catalogue::CatalogueEvent, gathering::GatheringEvent, wish::WishEvent};
use crate::model::Award;
use crate::rollup::{Rollup, Stats};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// The report format's name, checked by verifiers.
pub const REPORT_FORMAT: &str = "points.v1 public report";

/// What a public row counts towards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RowKind {
    /// Points and minutes earned by approved service (negative when reversed).
    Service,
    /// Points spent at a merchant (negative for refunds and reversals).
    Spend,
    /// Points donated into a love-bank pool (negative when reversed).
    Donation,
    /// Points granted from a pool (negative when reversed).
    Grant,
}

/// One entry's public effect. A row never names a member, only the member's pseudonym.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicRow {
    /// The entry's sequence (its leaf index in the checkpoint's tree).
    pub sequence: u64,
    /// The entry's chain hash, hex (the leaf's data).
    pub entry_hash: String,
    /// When the entry was appended, ms since the epoch.
    pub at_ms: i64,
    /// The local month at the programme's UTC offset, `YYYY-MM`.
    pub month: String,
    /// What the row counts towards.
    pub kind: RowKind,
    /// The member's pseudonym.
    pub pseudonym: String,
    /// Points in minor units (signed, see [`RowKind`]).
    pub points: i64,
    /// Service minutes (service rows only).
    pub minutes: i64,
    /// The merchant (spend rows), as a UUID string.
    pub merchant: Option<String>,
    /// The pool (donation and grant rows), as a UUID string.
    pub pool: Option<String>,
    /// The entry's inclusion proof against the report's checkpoint, hex hashes.
    pub path: Vec<String>,
}

/// The figures of a report, all recomputable from its rows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Totals.
    pub totals: Totals,
    /// Volunteers by service points (then minutes, then pseudonym), best first.
    pub ranking: Vec<Ranked>,
    /// Points spent per merchant, by merchant id.
    pub merchants: Vec<MerchantTotal>,
    /// Donations and grants per pool, by pool id.
    pub pools: Vec<PoolTotal>,
    /// Points earned and spent per local month, oldest first.
    pub months: Vec<MonthTotal>,
}

/// Report totals, points in minor units.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Points earned by service.
    pub service_points: i64,
    /// Minutes of service.
    pub service_minutes: i64,
    /// Distinct volunteers with service rows.
    pub volunteers: u64,
    /// Points spent at merchants.
    pub spent_points: i64,
    /// Points donated into pools.
    pub donated_points: i64,
    /// Points granted from pools.
    pub granted_points: i64,
    /// How many rows the report holds.
    pub rows: u64,
}

/// One place in the ranking.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ranked {
    /// 1 for the first; equal points and minutes share a rank.
    pub rank: u64,
    /// The volunteer's pseudonym.
    pub pseudonym: String,
    /// Service points, minor units.
    pub points: i64,
    /// Service minutes.
    pub minutes: i64,
}

/// Spending at one merchant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantTotal {
    /// Merchant id.
    pub merchant: String,
    /// Points spent, minor units.
    pub spent: i64,
}

/// One pool's donations and grants.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolTotal {
    /// Pool id.
    pub pool: String,
    /// Donated, minor units.
    pub donated: i64,
    /// Granted, minor units.
    pub granted: i64,
}

/// One month's flows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MonthTotal {
    /// `YYYY-MM`.
    pub month: String,
    /// Points earned by service.
    pub earned: i64,
    /// Points spent at merchants.
    pub spent: i64,
}

impl Summary {
    /// The figures of `rows`.
    pub fn of(rows: &[PublicRow]) -> Summary {
        let mut totals = Totals {
            rows: rows.len() as u64,
            ..Totals::default()
        };
        let mut volunteers: HashMap<&str, (i64, i64)> = HashMap::new();
        let mut merchants: BTreeMap<&str, i64> = BTreeMap::new();
        let mut pools: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        let mut months: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        for row in rows {
            let month = months.entry(row.month.as_str()).or_default();
            match row.kind {
                RowKind::Service => {
                    totals.service_points = totals.service_points.saturating_add(row.points);
                    totals.service_minutes = totals.service_minutes.saturating_add(row.minutes);
                    let v = volunteers.entry(row.pseudonym.as_str()).or_default();
                    v.0 = v.0.saturating_add(row.points);
                    v.1 = v.1.saturating_add(row.minutes);
                    month.0 = month.0.saturating_add(row.points);
                }
                RowKind::Spend => {
                    totals.spent_points = totals.spent_points.saturating_add(row.points);
                    let m = merchants
                        .entry(row.merchant.as_deref().unwrap_or(""))
                        .or_default();
                    *m = m.saturating_add(row.points);
                    month.1 = month.1.saturating_add(row.points);
                }
                RowKind::Donation => {
                    totals.donated_points = totals.donated_points.saturating_add(row.points);
                    let p = pools.entry(row.pool.as_deref().unwrap_or("")).or_default();
                    p.0 = p.0.saturating_add(row.points);
                }
                RowKind::Grant => {
                    totals.granted_points = totals.granted_points.saturating_add(row.points);
                    let p = pools.entry(row.pool.as_deref().unwrap_or("")).or_default();
                    p.1 = p.1.saturating_add(row.points);
                }
            }
        }
        let ranking = rank(
            volunteers
                .into_iter()
                .map(|(p, (a, m))| (p.to_owned(), a, m))
                .collect(),
        );
        totals.volunteers = ranking.len() as u64;
        Summary {
            totals,
            ranking,
            merchants: merchants
                .into_iter()
                .filter(|(_, spent)| *spent != 0)
                .map(|(m, spent)| MerchantTotal {
                    merchant: m.to_owned(),
                    spent,
                })
                .collect(),
            pools: pools
                .into_iter()
                .filter(|(_, (donated, granted))| *donated != 0 || *granted != 0)
                .map(|(p, (donated, granted))| PoolTotal {
                    pool: p.to_owned(),
                    donated,
                    granted,
                })
                .collect(),
            months: months
                .into_iter()
                .map(|(m, (earned, spent))| MonthTotal {
                    month: m.to_owned(),
                    earned,
                    spent,
                })
                .collect(),
        }
    }
}

/// Ranks volunteers (pseudonym, points, minutes): only those with positive points or
/// minutes (as [`Rollup::top`] does), by points, then minutes, descending, then pseudonym;
/// equal points and minutes share a rank.
fn rank(mut volunteers: Vec<(String, i64, i64)>) -> Vec<Ranked> {
    volunteers.retain(|(_, points, minutes)| *points > 0 || *minutes > 0);
    volunteers.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)).then(a.0.cmp(&b.0)));
    let mut ranked: Vec<Ranked> = Vec::with_capacity(volunteers.len());
    for (i, (pseudonym, points, minutes)) in volunteers.into_iter().enumerate() {
        let rank = match ranked.last() {
            Some(prev) if prev.points == points && prev.minutes == minutes => prev.rank,
            _ => i as u64 + 1,
        };
        ranked.push(Ranked {
            rank,
            pseudonym,
            points,
            minutes,
        });
    }
    ranked
}

impl Summary {
    /// The figures of a [`Rollup`] of the report's period, within `org_unit`'s subtree (or
    /// the whole programme): totals, ranking, merchants and pools come from the roll-up,
    /// the months and the row count from the rows. A verifier recomputes every figure from
    /// the rows with [`Summary::of`] and must get the same.
    pub fn from_rollup(
        rollup: &Rollup,
        org_unit: Option<OrgUnitId>,
        pseudonym_of: impl Fn(MemberId) -> String,
        rows: &[PublicRow],
    ) -> Summary {
        let in_subtree = |unit: OrgUnitId| {
            let Some(root) = org_unit else {
                return true;
            };
            let mut current = Some(unit);
            for _ in 0..=rollup.units().count() {
                match current {
                    Some(u) if u == root => return true,
                    Some(u) => current = rollup.unit(u).and_then(|r| r.parent),
                    None => return false,
                }
            }
            false
        };
        let minutes = |s: &Stats| {
            s.credit_minutes
                .get()
                .saturating_add(s.honour_minutes.get())
        };
        let (stats, members): (Stats, Vec<(MemberId, Stats)>) = match org_unit {
            None => (
                *rollup.program(),
                rollup.members().map(|(m, s)| (m, *s)).collect(),
            ),
            Some(unit) => match rollup.unit(unit) {
                Some(u) => (u.total, u.members().map(|(m, s)| (m, *s)).collect()),
                None => (Stats::default(), Vec::new()),
            },
        };
        let ranking = rank(
            members
                .iter()
                .map(|(m, s)| (pseudonym_of(*m), s.points_earned.minor(), minutes(s)))
                .collect(),
        );
        let mut merchants: Vec<MerchantTotal> = rollup
            .merchants()
            .filter(|m| in_subtree(m.org_unit) && m.points_redeemed.minor() != 0)
            .map(|m| MerchantTotal {
                merchant: m.id.to_string(),
                spent: m.points_redeemed.minor(),
            })
            .collect();
        merchants.sort_by(|a, b| a.merchant.cmp(&b.merchant));
        let mut pools: Vec<PoolTotal> = rollup
            .pools()
            .filter(|p| {
                in_subtree(p.org_unit)
                    && (p.points_donated.minor() != 0 || p.points_granted.minor() != 0)
            })
            .map(|p| PoolTotal {
                pool: p.id.to_string(),
                donated: p.points_donated.minor(),
                granted: p.points_granted.minor(),
            })
            .collect();
        pools.sort_by(|a, b| a.pool.cmp(&b.pool));
        Summary {
            totals: Totals {
                service_points: stats.points_earned.minor(),
                service_minutes: minutes(&stats),
                volunteers: ranking.len() as u64,
                spent_points: stats.points_redeemed.minor(),
                donated_points: stats.points_donated.minor(),
                granted_points: stats.points_granted.minor(),
                rows: rows.len() as u64,
            },
            ranking,
            merchants,
            pools,
            months: Summary::of(rows).months,
        }
    }
}

/// A public report, as published (the `points verify report` file).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicReport {
    /// [`REPORT_FORMAT`].
    pub format: String,
    /// The programme.
    pub program: ProgramId,
    /// The programme's name.
    pub program_name: String,
    /// Decimal places of the programme's points (amounts are minor units).
    pub decimal_places: u32,
    /// The org unit whose subtree the report covers (`None`: the whole programme).
    pub org_unit: Option<OrgUnitId>,
    /// Its name.
    pub org_unit_name: Option<String>,
    /// Start of the period, ms since the epoch, inclusive.
    pub from_ms: Option<i64>,
    /// End of the period, exclusive.
    pub until_ms: Option<i64>,
    /// The checkpoint the report is built from: its rows are entries below its size.
    pub checkpoint: SignedCheckpoint,
    /// The programme's pseudonym key, hex, so that a member can recompute their pseudonym.
    pub pseudonym_key: String,
    /// Names of the merchants and pools the report mentions (public bodies), by id.
    pub names: BTreeMap<String, String>,
    /// The figures.
    pub summary: Summary,
    /// The rows, in journal order.
    pub rows: Vec<PublicRow>,
}

/// The code a member's pseudonym is computed from: the member's card code when the member
/// has one, otherwise the member id as a lower-case hyphenated UUID.
pub fn member_code(card_code: Option<&str>, member: MemberId) -> String {
    card_code.map_or_else(|| member.to_string(), str::to_owned)
}

/// What the report filters on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReportScope {
    /// Only rows whose place (the service's org unit, the merchant's or the pool's) lies in
    /// this org unit's subtree; `None` for all.
    pub org_unit: Option<OrgUnitId>,
    /// Only entries at or after this instant.
    pub from: Option<Timestamp>,
    /// Only entries before this instant.
    pub until: Option<Timestamp>,
}

/// Reads entries in journal order, keeping the little state the rows need (org tree,
/// member codes, where merchants, pools and service records are), and yields public rows.
#[derive(Debug)]
pub struct Extractor {
    key: [u8; 32],
    scope: ReportScope,
    utc_offset_minutes: i16,
    parents: HashMap<OrgUnitId, Option<OrgUnitId>>,
    org_names: HashMap<OrgUnitId, String>,
    codes: HashMap<MemberId, String>,
    merchants: HashMap<MerchantId, (OrgUnitId, String)>,
    pools: HashMap<PoolId, (OrgUnitId, String)>,
    records: HashMap<RecordId, OrgUnitId>,
    names: BTreeMap<String, String>,
    rows: Vec<PublicRow>,
    /// Whose each row is: pseudonyms are filled in at the end, from the member codes as of
    /// the last entry read, so a member whose card code changed has one pseudonym throughout
    /// (the same one the roll-up's ranking shows).
    row_members: Vec<MemberId>,
}

impl Extractor {
    /// A fresh extractor with the programme's pseudonym key.
    pub fn new(pseudonym_key: [u8; 32], scope: ReportScope) -> Extractor {
        Extractor {
            key: pseudonym_key,
            scope,
            utc_offset_minutes: 0,
            parents: HashMap::new(),
            org_names: HashMap::new(),
            codes: HashMap::new(),
            merchants: HashMap::new(),
            pools: HashMap::new(),
            records: HashMap::new(),
            names: BTreeMap::new(),
            rows: Vec::new(),
            row_members: Vec::new(),
        }
    }

    fn in_subtree(&self, unit: OrgUnitId) -> bool {
        let Some(root) = self.scope.org_unit else {
            return true;
        };
        let mut current = Some(unit);
        // The org tree is acyclic (the ledger only adds children of existing units); the
        // bound keeps a hostile journal from looping.
        for _ in 0..=self.parents.len() {
            match current {
                Some(u) if u == root => return true,
                Some(u) => current = self.parents.get(&u).copied().flatten(),
                None => return false,
            }
        }
        false
    }

    fn pseudonym(&self, member: MemberId) -> String {
        let code = self
            .codes
            .get(&member)
            .cloned()
            .unwrap_or_else(|| member_code(None, member));
        pseudonym(&self.key, &code)
    }

    /// A member's pseudonym, from the member code seen so far.
    pub fn pseudonym_of(&self, member: MemberId) -> String {
        self.pseudonym(member)
    }

    /// The name of an org unit seen so far.
    pub fn org_unit_name(&self, unit: OrgUnitId) -> Option<&str> {
        self.org_names.get(&unit).map(String::as_str)
    }

    #[allow(clippy::too_many_arguments)]
    fn row(
        &mut self,
        entry: &Entry,
        place: Option<OrgUnitId>,
        kind: RowKind,
        member: MemberId,
        points: i64,
        minutes: i64,
        merchant: Option<MerchantId>,
        pool: Option<PoolId>,
    ) {
        if !place.is_some_and(|p| self.in_subtree(p)) {
            return;
        }
        if let Some(m) = merchant {
            if let Some((_, name)) = self.merchants.get(&m) {
                self.names.insert(m.to_string(), name.clone());
            }
        }
        if let Some(p) = pool {
            if let Some((_, name)) = self.pools.get(&p) {
                self.names.insert(p.to_string(), name.clone());
            }
        }
        let row = PublicRow {
            sequence: entry.sequence(),
            entry_hash: entry.hash().to_hex(),
            at_ms: entry.at().millis(),
            month: month_of(entry.at(), self.utc_offset_minutes),
            kind,
            pseudonym: String::new(),
            points,
            minutes,
            merchant: merchant.map(|m| m.to_string()),
            pool: pool.map(|p| p.to_string()),
            path: Vec::new(),
        };
        self.rows.push(row);
        self.row_members.push(member);
    }

    /// Reads the next entry (entries must come in journal order, from the first).
    pub fn observe(&mut self, entry: &Entry) {
        let at = entry.at();
        let in_period =
            self.scope.from.is_none_or(|f| at >= f) && self.scope.until.is_none_or(|u| at < u);
        match entry.event() {
            Event::ProgramOpened(spec) => self.utc_offset_minutes = spec.utc_offset_minutes(),
            Event::OrgUnitCreated {
                id, parent, name, ..
            } => {
                self.parents.insert(*id, *parent);
                self.org_names.insert(*id, name.clone());
            }
            Event::MemberEnrolled { id, card_code, .. }
            | Event::MemberUpdated { id, card_code, .. } => {
                self.codes
                    .insert(*id, member_code(card_code.as_deref(), *id));
            }
            Event::MerchantRegistered {
                id, org_unit, name, ..
            } => {
                self.merchants.insert(*id, (*org_unit, name.clone()));
            }
            Event::PoolCreated {
                id, org_unit, name, ..
            } => {
                self.pools.insert(*id, (*org_unit, name.clone()));
            }
            Event::ServiceRecorded { records } => {
                for r in records {
                    self.records.insert(r.id, r.org_unit);
                }
            }
            // A wish's confirmation and an event's check-out create service records too.
            Event::Wish(event) => {
                if let WishEvent::Confirmed { record, .. } = &**event {
                    self.records.insert(record.id, record.org_unit);
                }
            }
            Event::Gathering(event) => {
                if let GatheringEvent::CheckedOut { record, .. } = &**event {
                    self.records.insert(record.id, record.org_unit);
                }
            }
            _ => {}
        }
        if in_period {
            self.rows_of(entry);
        }
    }

    fn merchant_place(&self, m: MerchantId) -> Option<OrgUnitId> {
        self.merchants.get(&m).map(|(u, _)| *u)
    }

    fn pool_place(&self, p: PoolId) -> Option<OrgUnitId> {
        self.pools.get(&p).map(|(u, _)| *u)
    }

    fn service_rows(&mut self, entry: &Entry, awards: &[Award]) {
        for a in awards {
            let place = self.records.get(&a.record).copied();
            let (points, minutes) = (a.points.minor(), a.minutes.get());
            self.row(
                entry,
                place,
                RowKind::Service,
                a.member,
                points,
                minutes,
                None,
                None,
            );
        }
    }

    fn rows_of(&mut self, entry: &Entry) {
        use RowKind::*;
        match entry.event() {
            Event::ServiceApproved { awards } => self.service_rows(entry, awards),
            // Issue 5: a confirmed wish and an approved event earn like any approval, and a
            // redemption of catalogue items is a spend, as the roll-up counts them.
            Event::Wish(event) => {
                if let WishEvent::Confirmed { award, .. } = &**event {
                    self.service_rows(entry, std::slice::from_ref(award));
                }
            }
            Event::Gathering(event) => {
                if let GatheringEvent::Approved { awards, .. } = &**event {
                    self.service_rows(entry, awards);
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
                    let place = self.merchant_place(*merchant);
                    self.row(
                        entry,
                        place,
                        Spend,
                        *member,
                        amount.minor(),
                        0,
                        Some(*merchant),
                        None,
                    );
                }
            }
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
            } => {
                let place = self.merchant_place(*merchant);
                let points = amount.minor();
                self.row(
                    entry,
                    place,
                    Spend,
                    *member,
                    points,
                    0,
                    Some(*merchant),
                    None,
                );
            }
            Event::Refunded {
                member,
                merchant,
                amount,
                ..
            } => {
                let place = self.merchant_place(*merchant);
                let points = amount.minor().saturating_neg();
                self.row(
                    entry,
                    place,
                    Spend,
                    *member,
                    points,
                    0,
                    Some(*merchant),
                    None,
                );
            }
            Event::Donated {
                member,
                pool,
                amount,
            } => {
                let place = self.pool_place(*pool);
                self.row(
                    entry,
                    place,
                    Donation,
                    *member,
                    amount.minor(),
                    0,
                    None,
                    Some(*pool),
                );
            }
            Event::Granted {
                pool,
                member,
                amount,
                ..
            } => {
                let place = self.pool_place(*pool);
                self.row(
                    entry,
                    place,
                    Grant,
                    *member,
                    amount.minor(),
                    0,
                    None,
                    Some(*pool),
                );
            }
            Event::Reversed { effect, .. } => match effect {
                Reversal::Accrual { awards } => {
                    for a in awards {
                        let place = self.records.get(&a.record).copied();
                        let points = a.points.minor().saturating_neg();
                        let minutes = a.minutes.get().saturating_neg();
                        self.row(entry, place, Service, a.member, points, minutes, None, None);
                    }
                }
                Reversal::Spend {
                    member,
                    merchant,
                    amount,
                    ..
                } => {
                    let place = self.merchant_place(*merchant);
                    let points = amount.minor().saturating_neg();
                    self.row(
                        entry,
                        place,
                        Spend,
                        *member,
                        points,
                        0,
                        Some(*merchant),
                        None,
                    );
                }
                Reversal::Donation {
                    member,
                    pool,
                    amount,
                    ..
                } => {
                    let place = self.pool_place(*pool);
                    let points = amount.minor().saturating_neg();
                    self.row(
                        entry,
                        place,
                        Donation,
                        *member,
                        points,
                        0,
                        None,
                        Some(*pool),
                    );
                }
                Reversal::Grant {
                    pool,
                    member,
                    amount,
                } => {
                    let place = self.pool_place(*pool);
                    let points = amount.minor().saturating_neg();
                    self.row(entry, place, Grant, *member, points, 0, None, Some(*pool));
                }
                Reversal::Transfer { .. } => {}
            },
            _ => {}
        }
    }

    /// The rows so far and the names of the merchants and pools they mention.
    pub fn finish(mut self) -> (Vec<PublicRow>, BTreeMap<String, String>) {
        let pseudonyms: Vec<String> = self
            .row_members
            .iter()
            .map(|m| self.pseudonym(*m))
            .collect();
        for (row, pseudonym) in self.rows.iter_mut().zip(pseudonyms) {
            row.pseudonym = pseudonym;
        }
        (self.rows, self.names)
    }
}

/// `YYYY-MM` of an instant at a UTC offset.
pub fn month_of(at: Timestamp, utc_offset_minutes: i16) -> String {
    let (year, month) = civil_month(i64::from(at.local_day(utc_offset_minutes)));
    format!("{year:04}-{month:02}")
}

/// The civil year and month of a day count since 1970-01-01 (Howard Hinnant's algorithm).
fn civil_month(days: i64) -> (i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: RowKind, who: &str, points: i64, month: &str) -> PublicRow {
        PublicRow {
            sequence: 1,
            entry_hash: String::new(),
            at_ms: 0,
            month: month.into(),
            kind,
            pseudonym: who.into(),
            points,
            minutes: if kind == RowKind::Service { 60 } else { 0 },
            merchant: (kind == RowKind::Spend).then(|| "m1".into()),
            pool: matches!(kind, RowKind::Donation | RowKind::Grant).then(|| "p1".into()),
            path: Vec::new(),
        }
    }

    #[test]
    fn months_follow_the_civil_calendar() {
        assert_eq!(civil_month(0), (1970, 1));
        assert_eq!(civil_month(31), (1970, 2));
        assert_eq!(civil_month(-1), (1969, 12));
        // 2024-02-29 is day 19782.
        assert_eq!(civil_month(19_782), (2024, 2));
        assert_eq!(civil_month(19_783), (2024, 3));
        // 23:30 UTC on 31 Jan is already February at UTC+8.
        let at = Timestamp::from_millis(1_706_743_800_000);
        assert_eq!(month_of(at, 0), "2024-01");
        assert_eq!(month_of(at, 480), "2024-02");
    }

    #[test]
    fn summary_sums_ranks_and_shares_ties() {
        let rows = vec![
            row(RowKind::Service, "b", 500, "2026-10"),
            row(RowKind::Service, "a", 300, "2026-10"),
            row(RowKind::Service, "c", 500, "2026-11"),
            row(RowKind::Service, "a", 300, "2026-11"),
            row(RowKind::Spend, "a", 200, "2026-11"),
            row(RowKind::Spend, "a", -50, "2026-11"),
            row(RowKind::Donation, "b", 100, "2026-11"),
            row(RowKind::Grant, "c", 40, "2026-11"),
        ];
        let s = Summary::of(&rows);
        assert_eq!(s.totals.service_points, 1600);
        assert_eq!(s.totals.service_minutes, 240);
        assert_eq!(s.totals.volunteers, 3);
        assert_eq!(s.totals.spent_points, 150);
        assert_eq!(s.totals.donated_points, 100);
        assert_eq!(s.totals.granted_points, 40);
        let ranks: Vec<(u64, &str, i64)> = s
            .ranking
            .iter()
            .map(|r| (r.rank, r.pseudonym.as_str(), r.points))
            .collect();
        // a has 600 and 120 minutes; b and c tie on 500 and 60 minutes.
        assert_eq!(ranks, vec![(1, "a", 600), (2, "b", 500), (2, "c", 500)]);
        assert_eq!(s.merchants[0].spent, 150);
        assert_eq!((s.pools[0].donated, s.pools[0].granted), (100, 40));
        assert_eq!(s.months[0].earned, 800);
        assert_eq!((s.months[1].earned, s.months[1].spent), (800, 150));
    }
}
