//! The audit: every rule of the domain, checked over a journal and a live ledger.
//!
//! The audit trusts nothing it is given. It replays the journal into a fresh ledger of its
//! own (which checks sequence numbers, ids and the hash chain), sums every posting into
//! independent account totals, and then compares three views that must agree: the postings,
//! the replayed state and the live ledger. Each breach names the rule and, where there is
//! one, the first entry at fault.
//!
//! Rules checked:
//! - every entry's postings sum to zero per unit;
//! - the hash chain is intact and sequence numbers and ids follow on;
//! - no member's balance or available points (balance less open holds) go below zero, after
//!   every entry that touches the member;
//! - open holds never exceed the balance;
//! - a member's lots sum to the member's balance, and no lot is empty or negative;
//! - account totals from postings equal the ledger's balances (members, merchants, pools,
//!   issuance, expiry sink, service minutes);
//! - replaying the journal gives the live ledger's balances and final hash;
//! - reconciliation (issue 6): after every entry each account the entry touches holds in
//!   the state what its postings say, so points issued = member balances + held +
//!   unsettled + settled + expired + pooled holds after every step (the first entry where
//!   it stops holding is named); and at the end, per programme and per org unit, the
//!   state's balances reconcile with the flows summed from the journal (the org unit
//!   where it fails is named).

use crate::amount::Points;
use crate::entry::{Account, Entry, Hash, Unit};
use crate::ledger::Ledger;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// Which rule a breach broke.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AuditRule {
    /// An entry's postings do not sum to zero in some unit.
    Balanced,
    /// The hash chain, sequence numbers or ids are broken.
    Chain,
    /// A balance or available balance went below zero.
    NonNegative,
    /// Open holds exceed a member's balance.
    HoldsWithinBalance,
    /// A member's lots do not sum to the balance, or a lot is empty or negative.
    LotsMatchBalance,
    /// An account's total from postings differs from the ledger's balance.
    PostingsMatchState,
    /// The live ledger differs from a replay of its journal.
    ReplayEqual,
    /// Points issued do not reconcile with balances, held, unsettled, settled, expired and
    /// pooled points, for the programme or an org unit.
    Reconciled,
}

/// One broken rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Breach {
    /// The rule.
    pub rule: AuditRule,
    /// The first entry at fault, where one can be named.
    pub sequence: Option<u64>,
    /// What is wrong, for people.
    pub message: String,
}

impl fmt::Display for Breach {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.sequence {
            Some(seq) => write!(f, "{:?} at entry {}: {}", self.rule, seq, self.message),
            None => write!(f, "{:?}: {}", self.rule, self.message),
        }
    }
}

/// The audit's findings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditReport {
    /// Entries read.
    pub entries_checked: u64,
    /// The journal's head hash as replayed.
    pub head_hash: Option<Hash>,
    /// Every breach found, in the order found.
    pub breaches: Vec<Breach>,
}

impl AuditReport {
    /// Whether no rule was broken.
    pub fn is_clean(&self) -> bool {
        self.breaches.is_empty()
    }
}

/// Caps how many breaches of one rule are listed, so a badly broken journal still gives a
/// readable report.
const MAX_BREACHES_PER_RULE: usize = 20;

/// An audit in progress: feed it the journal entry by entry, then finish it.
#[derive(Debug, Default)]
pub struct Auditor {
    replica: Option<Ledger>,
    chain_broken: bool,
    sums: HashMap<(Account, Unit), i128>,
    report: AuditReport,
    per_rule: BTreeMap<AuditRule, usize>,
    flows: crate::settlement::Flows,
    unreconciled: std::collections::BTreeSet<Account>,
}

impl Auditor {
    /// A new audit.
    pub fn new() -> Auditor {
        Auditor::default()
    }

    fn breach(&mut self, rule: AuditRule, sequence: Option<u64>, message: String) {
        let count = self.per_rule.entry(rule).or_insert(0);
        *count += 1;
        if *count <= MAX_BREACHES_PER_RULE {
            self.report.breaches.push(Breach {
                rule,
                sequence,
                message,
            });
        }
    }

    /// Checks one entry; entries must come in journal order from sequence 0.
    pub fn check_entry(&mut self, entry: &Entry) {
        let seq = entry.sequence();
        self.report.entries_checked += 1;
        let postings = entry.postings();
        let mut per_unit: BTreeMap<Unit, i128> = BTreeMap::new();
        for p in &postings {
            *per_unit.entry(p.unit).or_insert(0) += i128::from(p.amount);
            *self.sums.entry((p.account, p.unit)).or_insert(0) += i128::from(p.amount);
        }
        for (unit, sum) in per_unit {
            if sum != 0 {
                self.breach(
                    AuditRule::Balanced,
                    Some(seq),
                    format!("{unit:?} postings sum to {sum}"),
                );
            }
        }
        if self.chain_broken {
            return;
        }
        let replayed = match self.replica.as_mut() {
            None => Ledger::replay([entry]).map(|l| self.replica = Some(l)),
            Some(ledger) => ledger.replay_one(entry),
        };
        if let Err(error) = replayed {
            self.chain_broken = true;
            // Name the position where the journal breaks (every entry before it replayed),
            // not the sequence number the faulty entry claims: a dropped entry or an edited
            // sequence field would otherwise point at the wrong entry, or at none.
            let position = self.report.entries_checked - 1;
            self.breach(AuditRule::Chain, Some(position), error.to_string());
            return;
        }
        self.flows.add_with_postings(entry, &postings);
        let Some(replica) = self.replica.as_ref() else {
            return;
        };
        let mut unreconciled = Vec::new();
        for p in postings.iter().filter(|p| p.unit == Unit::Points) {
            if self.unreconciled.contains(&p.account) {
                continue;
            }
            let Some(state) = crate::settlement::account_points(replica, p.account) else {
                continue;
            };
            let posted = self.sum(p.account, Unit::Points);
            if state != posted {
                unreconciled.push((p.account, posted, state));
            }
        }
        for (account, posted, state) in unreconciled {
            if self.unreconciled.insert(account) {
                self.breach(
                    AuditRule::Reconciled,
                    Some(seq),
                    format!(
                        "{account:?}: postings {posted}, state {state}; reconciliation breaks here"
                    ),
                );
            }
        }
        let Some(replica) = self.replica.as_ref() else {
            return;
        };
        let mut findings = Vec::new();
        for p in postings.iter().filter(|p| p.unit == Unit::Points) {
            if let Account::Member(member) = p.account {
                if let Some(b) = replica.balance(member, entry.at()) {
                    if b.balance < Points::ZERO || b.balance < b.held {
                        findings.push(format!(
                            "member {member}: balance {} with {} held",
                            b.balance.minor(),
                            b.held.minor()
                        ));
                    }
                }
            }
        }
        for message in findings {
            self.breach(AuditRule::NonNegative, Some(seq), message);
        }
    }

    /// Finishes the audit, comparing the replay with `live` when given.
    pub fn finish(mut self, live: Option<&Ledger>) -> AuditReport {
        let Some(replica) = self.replica.take() else {
            if self.report.entries_checked == 0 {
                self.breach(AuditRule::Chain, None, "the journal is empty".into());
            }
            return self.report;
        };
        self.report.head_hash = Some(replica.head_hash());
        self.check_state(&replica);
        if !self.chain_broken {
            let report = crate::settlement::reconcile(&replica, &self.flows, replica.last_at());
            let rows = std::iter::once(&report.programme).chain(report.org_units.iter());
            let failed: Vec<String> = rows
                .filter(|row| row.difference != 0)
                .map(|row| match row.org_unit {
                    Some(unit) => format!("org unit {unit} is off by {}", row.difference),
                    None => format!("the programme is off by {}", row.difference),
                })
                .collect();
            for message in failed {
                self.breach(AuditRule::Reconciled, None, message);
            }
        }
        if let Some(live) = live {
            self.compare(&replica, live);
        }
        self.report
    }

    fn sum(&self, account: Account, unit: Unit) -> i128 {
        self.sums.get(&(account, unit)).copied().unwrap_or(0)
    }

    fn check_state(&mut self, replica: &Ledger) {
        if self.chain_broken {
            // The replay stopped early, so its state cannot be compared with all postings.
            return;
        }
        let at = replica.last_at();
        let mut findings: Vec<(AuditRule, String)> = Vec::new();
        for member in replica.members_raw() {
            let id = member.id;
            let lot_sum: i128 = member
                .lots
                .iter()
                .map(|l| i128::from(l.remaining.minor()))
                .sum();
            if lot_sum != i128::from(member.balance.minor())
                || member.lots.iter().any(|l| !l.remaining.is_positive())
            {
                findings.push((
                    AuditRule::LotsMatchBalance,
                    format!(
                        "member {id}: lots sum to {lot_sum}, balance {}",
                        member.balance.minor()
                    ),
                ));
            }
            if let Some(b) = replica.balance(id, at) {
                if b.held > b.balance {
                    findings.push((
                        AuditRule::HoldsWithinBalance,
                        format!(
                            "member {id}: {} held of {}",
                            b.held.minor(),
                            b.balance.minor()
                        ),
                    ));
                }
            }
            let checks = [
                (Unit::Points, i128::from(member.balance.minor())),
                (Unit::CreditMinutes, i128::from(member.credit_minutes.get())),
                (Unit::HonourMinutes, i128::from(member.honour_minutes.get())),
            ];
            for (unit, state) in checks {
                let posted = self.sum(Account::Member(id), unit);
                if posted != state {
                    findings.push((
                        AuditRule::PostingsMatchState,
                        format!("member {id} {unit:?}: postings {posted}, state {state}"),
                    ));
                }
            }
        }
        for (id, merchant) in replica.merchants_raw() {
            let posted = self.sum(Account::Merchant(*id), Unit::Points);
            if posted != i128::from(merchant.taken.minor()) {
                findings.push((
                    AuditRule::PostingsMatchState,
                    format!(
                        "merchant {id}: postings {posted}, state {}",
                        merchant.taken.minor()
                    ),
                ));
            }
        }
        for (id, pool) in replica.pools_raw() {
            let posted = self.sum(Account::Pool(*id), Unit::Points);
            if posted != i128::from(pool.balance.minor()) || pool.balance < Points::ZERO {
                findings.push((
                    AuditRule::PostingsMatchState,
                    format!(
                        "pool {id}: postings {posted}, state {}",
                        pool.balance.minor()
                    ),
                ));
            }
        }
        let totals = replica.totals();
        let programme = [
            (
                Account::Issuance,
                Unit::Points,
                -i128::from(totals.issued.minor()),
                "issuance",
            ),
            (
                Account::ExpirySink,
                Unit::Points,
                i128::from(totals.expired.minor()),
                "expiry sink",
            ),
            (
                Account::HoursIssuance,
                Unit::CreditMinutes,
                -i128::from(totals.credit_minutes.get()),
                "credit minutes issued",
            ),
            (
                Account::HoursIssuance,
                Unit::HonourMinutes,
                -i128::from(totals.honour_minutes.get()),
                "honour minutes issued",
            ),
        ];
        for (account, unit, state, name) in programme {
            let posted = self.sum(account, unit);
            if posted != state {
                findings.push((
                    AuditRule::PostingsMatchState,
                    format!("{name}: postings {posted}, state {state}"),
                ));
            }
        }
        for (rule, message) in findings {
            self.breach(rule, None, message);
        }
    }

    fn compare(&mut self, replica: &Ledger, live: &Ledger) {
        let mut findings = Vec::new();
        if replica.head_hash() != live.head_hash()
            || replica.next_sequence() != live.next_sequence()
        {
            findings.push(format!(
                "journal head {} at {} entries, live ledger {} at {}",
                replica.head_hash(),
                replica.next_sequence(),
                live.head_hash(),
                live.next_sequence()
            ));
        }
        if replica.totals() != live.totals() {
            findings.push(format!(
                "totals differ: replay {:?}, live {:?}",
                replica.totals(),
                live.totals()
            ));
        }
        if replica.member_count() != live.member_count() {
            findings.push(format!(
                "members: replay {}, live {}",
                replica.member_count(),
                live.member_count()
            ));
        }
        let at = Timestamp::from_millis(i64::MAX);
        for (a, b) in replica.members_raw().iter().zip(live.members_raw()) {
            let same = a.id == b.id
                && a.balance == b.balance
                && a.credit_minutes == b.credit_minutes
                && a.honour_minutes == b.honour_minutes
                && a.lots == b.lots
                && replica.balance(a.id, at) == live.balance(b.id, at);
            if !same {
                findings.push(format!("member {}: replay and live ledger differ", a.id));
            }
        }
        for (id, merchant) in replica.merchants_raw() {
            if live.merchants_raw().get(id).map(|m| m.taken) != Some(merchant.taken) {
                findings.push(format!("merchant {id}: replay and live ledger differ"));
            }
        }
        for id in replica.merchants_raw().keys() {
            if replica.settled_points(*id) != live.settled_points(*id)
                || replica.settlements(*id) != live.settlements(*id)
            {
                findings.push(format!("merchant {id}: settlements differ in replay"));
            }
        }
        for (id, pool) in replica.pools_raw() {
            if live.pools_raw().get(id).map(|p| p.balance) != Some(pool.balance) {
                findings.push(format!("pool {id}: replay and live ledger differ"));
            }
        }
        let open = |l: &Ledger| {
            let mut v: Vec<_> = l
                .holds_raw()
                .iter()
                .map(|(id, h)| (id, h.amount, h.status == crate::ledger::HoldStatus::Open))
                .collect();
            v.sort_by_key(|(id, _, _)| *id);
            v
        };
        if open(replica) != open(live) {
            findings.push("holds: replay and live ledger differ".into());
        }
        for message in findings {
            self.breach(AuditRule::ReplayEqual, None, message);
        }
    }
}

/// Audits a whole journal, and the live ledger built from it when given.
pub fn audit<E: Borrow<Entry>>(
    journal: impl IntoIterator<Item = E>,
    live: Option<&Ledger>,
) -> AuditReport {
    let mut auditor = Auditor::new();
    for entry in journal {
        auditor.check_entry(entry.borrow());
    }
    auditor.finish(live)
}
