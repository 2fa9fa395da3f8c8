//! Which members, merchants and org units an entry concerns, for filters and for what a
//! scoped key may read.
//!
//! An entry concerns the members, merchants and pools its event names, the org units it
//! names, and the org units of those members (their home now), merchants and pools, and of
//! the service records it names.

use crate::auth::Scope;
use points_core::{CatalogueEvent, FundId, GatheringEvent, GatheringId, WishEvent, WishId};
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
    /// Micro-wishes named (issue 5): an entry concerns its wish's org unit.
    pub wishes: Vec<WishId>,
    /// Gatherings named (issue 5): an entry concerns its gathering's org unit.
    pub gatherings: Vec<GatheringId>,
    /// Community funds named (issue 6): an entry concerns the org unit whose money it is.
    pub funds: Vec<FundId>,
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
            points_core::SettlementEvent::MerchantFundsSet { merchant, funds } => {
                s.merchants.push(*merchant);
                s.funds.extend(funds);
            }
            points_core::SettlementEvent::MerchantRateSet { merchant, .. } => {
                s.merchants.push(*merchant);
            }
            points_core::SettlementEvent::OverBudgetSet(_) => {}
            points_core::SettlementEvent::SettlementClosed(settlement) => {
                s.merchants.push(settlement.merchant);
                // The funds that paid: their org units see what left their money.
                s.funds.extend(settlement.payments.iter().map(|p| p.fund));
            }
        },
    }
    s
}

/// Issue 5: a wish entry concerns its org unit (when posted), the claimant, and the record
/// its confirmation creates.
fn wish_subjects(s: &mut Subjects, event: &WishEvent) {
    // Every step concerns the wish's own org unit, even when the claimant lives elsewhere
    // (dual registration), so the posting community sees its wish's whole history.
    s.wishes.push(event.wish());
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
    s.gatherings.push(event.gathering());
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
            || self.wishes.iter().any(|&w| {
                ledger
                    .wish(w, Timestamp::from_millis(0))
                    .is_some_and(|v| inside(v.spec.org_unit))
            })
            || self
                .gatherings
                .iter()
                .any(|&g| ledger.gathering(g).is_some_and(|v| inside(v.spec.org_unit)))
            || self
                .funds
                .iter()
                .any(|&f| ledger.fund(f).is_some_and(|v| inside(v.spec.org_unit)))
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

#[cfg(test)]
mod tests {
    //! Who may read the entries of the merged features: merchants their item redemptions,
    //! refunds and settlements; the org units of a wish, an event and a paying fund every
    //! entry about them.
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use points_core::{
        ActivityId, ActivityInput, ActorId, Amount, Applied, CatalogueCommand, Command, FundId,
        GatheringCommand, ItemId, ItemLine, MemberKind, MerchantKind, OrgLevel, OverBudget,
        ProgramId, ProgramSpec, Request, RequestId, RuleInput, Scale, SettlementCommand, TimeKind,
        WishCommand,
    };

    const T0: i64 = 1_790_000_000_000;

    fn id(n: u128) -> u128 {
        0x5c0e_0000 + n
    }
    fn district() -> OrgUnitId {
        OrgUnitId::from_u128(id(1)).unwrap()
    }
    fn comm_a() -> OrgUnitId {
        OrgUnitId::from_u128(id(2)).unwrap()
    }
    fn comm_b() -> OrgUnitId {
        OrgUnitId::from_u128(id(3)).unwrap()
    }
    /// Homed in B, dual-registered: serves in A.
    fn m_b() -> MemberId {
        MemberId::from_u128(id(10)).unwrap()
    }
    fn cafe() -> MerchantId {
        MerchantId::from_u128(id(20)).unwrap()
    }
    fn shop() -> MerchantId {
        MerchantId::from_u128(id(21)).unwrap()
    }
    fn patrol() -> ActivityId {
        ActivityId::from_u128(id(30)).unwrap()
    }
    /// A fund of community B that pays the cafe in community A.
    fn fund_b() -> FundId {
        FundId::from_u128(id(40)).unwrap()
    }
    fn coffee() -> ItemId {
        ItemId::from_u128(id(50)).unwrap()
    }
    fn wish() -> WishId {
        WishId::from_u128(id(60)).unwrap()
    }
    fn gathering() -> GatheringId {
        GatheringId::from_u128(id(70)).unwrap()
    }
    fn admin() -> points_core::Actor {
        points_core::Actor::Admin {
            id: ActorId::from_u128(id(90)).unwrap(),
        }
    }
    fn till_cafe() -> points_core::Actor {
        points_core::Actor::Merchant {
            id: ActorId::from_u128(id(91)).unwrap(),
            merchant: cafe(),
        }
    }
    fn amt(text: &str) -> Amount {
        Amount::new(text.parse().unwrap())
    }

    struct Fx {
        ledger: Ledger,
        now: Timestamp,
        next: u128,
    }

    impl Fx {
        fn ok(&mut self, actor: points_core::Actor, command: Command) -> Entry {
            self.next += 1;
            let request = Request {
                request_id: RequestId::from_u128(self.next).unwrap(),
                actor,
                command,
            };
            self.now = self.now.saturating_add_millis(1_000);
            match self.ledger.apply(&request, self.now) {
                Ok(Applied::New(entry)) => entry,
                other => panic!("{}: {other:?}", request.command.name()),
            }
        }
    }

    fn fx() -> Fx {
        let spec = ProgramSpec::new(
            ProgramId::from_u128(id(0)).unwrap(),
            "Scope points",
            "points",
            Scale::new(2).unwrap(),
        );
        let now = Timestamp::from_millis(T0);
        let (ledger, _) =
            Ledger::open(spec, RequestId::from_u128(id(100)).unwrap(), admin(), now).unwrap();
        let mut fx = Fx {
            ledger,
            now,
            next: id(1_000),
        };
        let unit = |id, parent, level| Command::CreateOrgUnit {
            id,
            parent,
            name: format!("unit {id}"),
            level,
        };
        let setup = vec![
            unit(district(), None, OrgLevel::District),
            unit(comm_a(), Some(district()), OrgLevel::Community),
            unit(comm_b(), Some(district()), OrgLevel::Community),
            Command::EnrolMember {
                id: m_b(),
                home: comm_b(),
                kind: MemberKind::PartyMember,
                dual_registration: true,
                card_code: None,
            },
            Command::RegisterMerchant {
                id: cafe(),
                org_unit: comm_a(),
                name: "Cafe".into(),
                kind: MerchantKind::Partner,
            },
            Command::RegisterMerchant {
                id: shop(),
                org_unit: comm_b(),
                name: "Shop".into(),
                kind: MerchantKind::CommunitySupermarket,
            },
            Command::DefineActivity(ActivityInput {
                id: patrol(),
                org_unit: comm_a(),
                name: "Patrol".into(),
                category: "safety".into(),
                rule: RuleInput::PerHour(amt("10")),
                coefficient: "1".parse().unwrap(),
                max_minutes_per_occasion: None,
                daily_points_cap: None,
                time_kind: TimeKind::Credit,
            }),
            Command::Settlement(SettlementCommand::CreateFund {
                id: fund_b(),
                org_unit: comm_b(),
                name: "Fund B".into(),
                budget_per_month_yuan: "100".parse().unwrap(),
            }),
            Command::Settlement(SettlementCommand::SetMerchantFunds {
                merchant: cafe(),
                funds: vec![fund_b()],
            }),
            Command::Settlement(SettlementCommand::SetOverBudget(OverBudget::Refuse)),
        ];
        for command in setup {
            fx.ok(admin(), command);
        }
        // `ok` moves the clock a second on before each entry; the rate starts after it.
        let from = fx.now.saturating_add_millis(1_500);
        fx.ok(
            admin(),
            Command::Settlement(SettlementCommand::SetMerchantRate {
                merchant: cafe(),
                yuan_per_point: "0.5".parse().unwrap(),
                effective_from: from,
            }),
        );
        fx
    }

    /// Who may read `entry`: the whole programme always; then A, B, the cafe, the shop.
    fn readers(fx: &Fx, entry: &Entry) -> [bool; 4] {
        assert!(may_read(Scope::All, entry, &fx.ledger));
        [
            Scope::OrgUnit(comm_a()),
            Scope::OrgUnit(comm_b()),
            Scope::Merchant(cafe()),
            Scope::Merchant(shop()),
        ]
        .map(|scope| may_read(scope, entry, &fx.ledger))
    }

    #[test]
    fn wishes_events_items_and_settlements_concern_the_right_readers() {
        let mut fx = fx();
        let posted = fx.ok(
            admin(),
            Command::Wish(WishCommand::Post {
                id: wish(),
                org_unit: comm_a(),
                activity: patrol(),
                title: "Fix a bicycle".into(),
                points: amt("20"),
                minutes: 120,
                claim_ttl_ms: 3_600_000,
            }),
        );
        assert_eq!(readers(&fx, &posted), [true, false, false, false]);
        // The claimant lives in B; the wish is A's, so A sees every step of it.
        for command in [
            WishCommand::Claim {
                wish: wish(),
                member: m_b(),
            },
            WishCommand::Fulfil {
                wish: wish(),
                member: m_b(),
            },
            WishCommand::Confirm { wish: wish() },
        ] {
            let entry = fx.ok(admin(), Command::Wish(command));
            assert_eq!(
                readers(&fx, &entry),
                [true, true, false, false],
                "{entry:?}"
            );
        }
        let created = fx.ok(
            admin(),
            Command::Gathering(GatheringCommand::Create {
                id: gathering(),
                org_unit: comm_a(),
                activity: patrol(),
                name: "Clean-up".into(),
                roster: vec![m_b()],
            }),
        );
        assert_eq!(readers(&fx, &created), [true, true, false, false]);
        let time = fx.now;
        let checked_in = fx.ok(
            admin(),
            Command::Gathering(GatheringCommand::CheckIn {
                gathering: gathering(),
                member: m_b(),
                time,
            }),
        );
        assert_eq!(readers(&fx, &checked_in), [true, true, false, false]);

        // Items at the cafe: the cafe's own key reads the listing, the redemption, its
        // refund and the settlement; the shop's key reads none of them.
        let listed = fx.ok(
            till_cafe(),
            Command::Catalogue(CatalogueCommand::ListItem {
                merchant: cafe(),
                item: coffee(),
                name: "Coffee".into(),
                price: amt("4"),
                stock: 10,
            }),
        );
        assert_eq!(readers(&fx, &listed), [true, false, true, false]);
        let bought = fx.ok(
            till_cafe(),
            Command::Catalogue(CatalogueCommand::RedeemItems {
                member: m_b(),
                merchant: cafe(),
                lines: vec![ItemLine {
                    item: coffee(),
                    quantity: 2,
                }],
            }),
        );
        assert_eq!(readers(&fx, &bought), [true, true, true, false]);
        let refund = fx.ok(
            till_cafe(),
            Command::Refund {
                entry: bought.id(),
                amount: amt("4"),
            },
        );
        assert_eq!(readers(&fx, &refund), [true, true, true, false]);
        // Closing pays from B's fund: B sees what left its money.
        let closed = fx.ok(
            admin(),
            Command::Settlement(SettlementCommand::ClosePeriod {
                merchant: cafe(),
                period: 1,
            }),
        );
        match closed.event() {
            Event::Settlement(points_core::SettlementEvent::SettlementClosed(s)) => {
                assert_eq!(s.payments.len(), 1, "paid by fund B: {s:?}");
            }
            other => panic!("not a settlement: {other:?}"),
        }
        assert_eq!(readers(&fx, &closed), [true, true, true, false]);
        // A merchant filter names the cafe's entries, and only them.
        let mut filter = Filter::default();
        filter.narrow(Scope::Merchant(cafe()), &fx.ledger).unwrap();
        for entry in [&bought, &refund, &closed, &listed] {
            assert!(filter.matches(entry, &fx.ledger));
        }
        assert!(!filter.matches(&posted, &fx.ledger));
    }
}
