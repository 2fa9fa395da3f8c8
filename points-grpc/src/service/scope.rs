//! Which members, merchants and org units an entry concerns, for filters and for what a
//! scoped key may read.
//!
//! An entry concerns the members, merchants and pools its event names, the org units it
//! names, and the org units of those members (their home now), merchants and pools, and of
//! the service records it names.

use crate::auth::Scope;
use points_core::{CatalogueEvent, GatheringEvent, WishEvent};
use points_core::{
    Entry, EntryKind, Event, Ledger, MemberId, MerchantId, OrgUnitId, PoolId, RecordId, Reversal,
    Timestamp,
};

/// What an entry concerns.
#[derive(Debug, Default)]
pub struct Subjects {
    /// Members named.
    pub members: Vec<MemberId>,
    /// Merchants named.
    pub merchants: Vec<MerchantId>,
    /// Pools named.
    pub pools: Vec<PoolId>,
    /// Org units named directly.
    pub org_units: Vec<OrgUnitId>,
    /// Service records named.
    pub records: Vec<RecordId>,
}

/// The subjects an event names.
pub fn subjects(event: &Event) -> Subjects {
    let mut s = Subjects::default();
    match event {
        Event::ProgramOpened(_) => {}
        Event::OrgUnitCreated { id, parent, .. } => {
            s.org_units.push(*id);
            s.org_units.extend(parent);
        }
        Event::MemberEnrolled { id, home, .. } => {
            s.members.push(*id);
            s.org_units.push(*home);
        }
        Event::MemberUpdated { id, .. } => s.members.push(*id),
        Event::MemberMoved { id, from, to } => {
            s.members.push(*id);
            s.org_units.push(*from);
            s.org_units.push(*to);
        }
        Event::MerchantRegistered { id, org_unit, .. } => {
            s.merchants.push(*id);
            s.org_units.push(*org_unit);
        }
        Event::MerchantStatusChanged { id, .. } => s.merchants.push(*id),
        Event::ActivityDefined(spec) => s.org_units.push(spec.org_unit),
        Event::PoolCreated { id, org_unit, .. } => {
            s.pools.push(*id);
            s.org_units.push(*org_unit);
        }
        Event::ServiceRecorded { records } => {
            for r in records {
                s.members.push(r.member);
                s.org_units.push(r.org_unit);
                s.records.push(r.id);
            }
        }
        Event::ServiceApproved { awards } => {
            for a in awards {
                s.members.push(a.member);
                s.records.push(a.record);
            }
        }
        Event::ServiceRejected { records, .. } => s.records.extend(records),
        Event::Redeemed {
            member, merchant, ..
        }
        | Event::HoldPlaced {
            member, merchant, ..
        }
        | Event::HoldCaptured {
            member, merchant, ..
        }
        | Event::HoldReleased {
            member, merchant, ..
        }
        | Event::Refunded {
            member, merchant, ..
        } => {
            s.members.push(*member);
            s.merchants.push(*merchant);
        }
        Event::Reversed { effect, .. } => match effect {
            Reversal::Accrual { awards } => {
                for a in awards {
                    s.members.push(a.member);
                    s.records.push(a.record);
                }
            }
            Reversal::Spend {
                member, merchant, ..
            } => {
                s.members.push(*member);
                s.merchants.push(*merchant);
            }
            Reversal::Transfer { from, to, .. } => {
                s.members.push(*from);
                s.members.push(*to);
            }
            Reversal::Donation { member, pool, .. } | Reversal::Grant { pool, member, .. } => {
                s.members.push(*member);
                s.pools.push(*pool);
            }
        },
        Event::Transferred { from, to, .. } => {
            s.members.push(*from);
            s.members.push(*to);
        }
        Event::Donated { member, pool, .. } | Event::Granted { pool, member, .. } => {
            s.members.push(*member);
            s.pools.push(*pool);
        }
        Event::Expired { member, .. } => s.members.push(*member),
        Event::Wish(event) => wish_subjects(&mut s, event),
        Event::Gathering(event) => gathering_subjects(&mut s, event),
        Event::Catalogue(event) => {
            s.merchants.push(event.merchant());
            if let CatalogueEvent::ItemsRedeemed { member, .. } = &**event {
                s.members.push(*member);
            }
        }
        Event::Settlement(event) => match event {
            points_core::SettlementEvent::FundCreated(spec) => s.org_units.push(spec.org_unit),
            points_core::SettlementEvent::MerchantFundsSet { merchant, .. }
            | points_core::SettlementEvent::MerchantRateSet { merchant, .. } => {
                s.merchants.push(*merchant);
            }
            points_core::SettlementEvent::OverBudgetSet(_) => {}
            points_core::SettlementEvent::SettlementClosed(settlement) => {
                s.merchants.push(settlement.merchant);
            }
        },
    }
    s
}

/// Issue 5: a wish entry concerns its org unit (when posted), the claimant, and the record
/// its confirmation creates.
fn wish_subjects(s: &mut Subjects, event: &WishEvent) {
    match event {
        WishEvent::Posted(spec) => s.org_units.push(spec.org_unit),
        WishEvent::Claimed { member, .. }
        | WishEvent::Fulfilled { member, .. }
        | WishEvent::ClaimLapsed { member, .. } => s.members.push(*member),
        WishEvent::Confirmed { record, .. } => {
            s.members.push(record.member);
            s.org_units.push(record.org_unit);
            s.records.push(record.id);
        }
        WishEvent::Cancelled { released, .. } => s.members.extend(released),
    }
}

/// Issue 5: a gathering entry concerns its org unit and roster, or the member and record
/// it names.
fn gathering_subjects(s: &mut Subjects, event: &GatheringEvent) {
    match event {
        GatheringEvent::Created(spec) => {
            s.org_units.push(spec.org_unit);
            s.members.extend(&spec.roster);
        }
        GatheringEvent::CheckedIn { member, .. } => s.members.push(*member),
        GatheringEvent::CheckedOut { record, .. } => {
            s.members.push(record.member);
            s.org_units.push(record.org_unit);
            s.records.push(record.id);
        }
        GatheringEvent::Approved { awards, .. } => {
            for a in awards {
                s.members.push(a.member);
                s.records.push(a.record);
            }
        }
    }
}

impl Subjects {
    /// Whether the entry concerns `root`'s subtree.
    pub fn within(&self, ledger: &Ledger, root: OrgUnitId) -> bool {
        let inside = |unit: OrgUnitId| ledger.is_within(unit, root);
        self.org_units.iter().any(|&u| inside(u))
            || self
                .members
                .iter()
                .any(|&m| ledger.member(m).is_some_and(|v| inside(v.home)))
            || self
                .merchants
                .iter()
                .any(|&m| ledger.merchant(m).is_some_and(|v| inside(v.org_unit)))
            || self
                .pools
                .iter()
                .any(|&p| ledger.pool(p).is_some_and(|v| inside(v.org_unit)))
            || self.records.iter().any(|&r| {
                ledger
                    .record(r)
                    .is_some_and(|(rec, _, _)| inside(rec.org_unit))
            })
    }
}

/// Filters on entries; unset filters match everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Entries concerning this subtree.
    pub org_unit: Option<OrgUnitId>,
    /// Entries concerning this member.
    pub member: Option<MemberId>,
    /// Entries concerning this merchant.
    pub merchant: Option<MerchantId>,
    /// Entries of these kinds (empty: any).
    pub kinds: Vec<EntryKind>,
    /// Entries at or after this time.
    pub from: Option<Timestamp>,
    /// Entries before this time.
    pub to: Option<Timestamp>,
}

impl Filter {
    /// Narrows the filter to what `scope` may read. `Err` when the caller asked for
    /// something outside its scope.
    pub fn narrow(&mut self, scope: Scope, ledger: &Ledger) -> Result<(), &'static str> {
        match scope {
            Scope::All => Ok(()),
            Scope::OrgUnit(root) => match self.org_unit {
                Some(unit) if !ledger.is_within(unit, root) => {
                    Err("the org unit is outside the key's subtree")
                }
                Some(_) => Ok(()),
                None => {
                    self.org_unit = Some(root);
                    Ok(())
                }
            },
            Scope::Merchant(own) => match self.merchant {
                Some(m) if m != own => Err("a merchant key reads only its own merchant"),
                _ => {
                    self.merchant = Some(own);
                    Ok(())
                }
            },
        }
    }

    /// Whether an entry passes the filter.
    pub fn matches(&self, entry: &Entry, ledger: &Ledger) -> bool {
        if !self.kinds.is_empty() && !self.kinds.contains(&entry.kind()) {
            return false;
        }
        if self.from.is_some_and(|from| entry.at() < from) {
            return false;
        }
        if self.to.is_some_and(|to| entry.at() >= to) {
            return false;
        }
        if self.org_unit.is_none() && self.member.is_none() && self.merchant.is_none() {
            return true;
        }
        let s = subjects(entry.event());
        if let Some(m) = self.member {
            if !s.members.contains(&m) {
                return false;
            }
        }
        if let Some(m) = self.merchant {
            if !s.merchants.contains(&m) {
                return false;
            }
        }
        if let Some(root) = self.org_unit {
            if !s.within(ledger, root) {
                return false;
            }
        }
        true
    }
}

/// Whether a key with `scope` may read `entry`.
pub fn may_read(scope: Scope, entry: &Entry, ledger: &Ledger) -> bool {
    let mut filter = Filter::default();
    match filter.narrow(scope, ledger) {
        Ok(()) => filter.matches(entry, ledger),
        Err(_) => false,
    }
}
