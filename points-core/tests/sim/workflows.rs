//! The reference model of issue 5's micro-wishes and merchant catalogues, written out from
//! the domain rules, with their generated operations. The driver compares, after every
//! step, each item's merchant, price and stock (which the model keeps as a signed number,
//! so a stock below zero would show), and each wish's status and claimant (one claimant at
//! most, by construction of the comparison).

use super::*;

/// Two wishes; a third id is never posted.
pub fn wish(i: u8) -> WishId {
    WishId::from_u128(600 + u128::from(i % 3)).unwrap()
}
/// Three item ids any merchant may list.
pub fn item(i: u8) -> ItemId {
    ItemId::from_u128(700 + u128::from(i % 3)).unwrap()
}

const MAX_CLAIM_TTL_MS: u64 = 90 * 86_400_000;
const MAX_LINE_QUANTITY: u32 = 10_000;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Stage {
    Open,
    Claimed,
    Fulfilled,
    Confirmed,
    Cancelled,
}

#[derive(Clone, Debug)]
struct MWish {
    unit: OrgUnitId,
    activity: ActivityId,
    points: i64,
    minutes: u32,
    ttl: u64,
    stage: Stage,
    claimant: Option<MemberId>,
    deadline: i64,
    fulfilled_at: i64,
}

#[derive(Clone, Debug)]
struct MItem {
    merchant: MerchantId,
    price: i64,
    stock: i64,
}

#[derive(Clone, Debug, Default)]
pub struct WfModel {
    wishes: HashMap<WishId, MWish>,
    items: HashMap<ItemId, MItem>,
}

/// A generated workflow operation (raw choices).
#[derive(Clone, Debug)]
pub enum WOp {
    Post {
        wish: u8,
        unit: u8,
        activity: u8,
        points: Amt,
        minutes: u32,
        ttl: u8,
    },
    Claim {
        wish: u8,
        member: u8,
    },
    Fulfil {
        wish: u8,
        member: Option<u8>,
    },
    Confirm {
        wish: u8,
    },
    Cancel {
        wish: u8,
    },
    Lapse {
        wish: u8,
    },
    List {
        merchant: u8,
        item: u8,
        price: Amt,
        stock: u32,
    },
    Restock {
        item: u8,
        quantity: u32,
    },
    Price {
        item: u8,
        price: Amt,
    },
    RedeemItems {
        member: u8,
        merchant: Option<u8>,
        lines: Vec<(u8, u32)>,
    },
    /// The natural next step of a wish's lifecycle: post, claim, fulfil, confirm.
    NextWishStep {
        wish: u8,
        member: u8,
        minutes: u32,
    },
    /// List an item if it is not yet listed, else redeem some of it.
    Shop {
        item: u8,
        member: u8,
        quantity: u32,
    },
}

pub fn wop() -> impl Strategy<Value = WOp> {
    let quantity = || prop_oneof![10 => 1u32..4, 1 => Just(0u32)];
    prop_oneof![
        2 => (small(), prop_oneof![6 => Just(1u8), 1 => 0u8..4], prop_oneof![6 => 0u8..2, 1 => Just(2u8)], amt(),
              prop_oneof![10 => 1u32..300, 1 => Just(0u32)], 0u8..4)
            .prop_map(|(wish, unit, activity, points, minutes, ttl)| WOp::Post { wish, unit, activity, points, minutes, ttl }),
        3 => (small(), small()).prop_map(|(wish, member)| WOp::Claim { wish, member }),
        3 => (small(), prop::option::weighted(0.2, small())).prop_map(|(wish, member)| WOp::Fulfil { wish, member }),
        2 => small().prop_map(|wish| WOp::Confirm { wish }),
        1 => small().prop_map(|wish| WOp::Cancel { wish }),
        1 => small().prop_map(|wish| WOp::Lapse { wish }),
        2 => (0u8..3, small(), amt(), 0u32..4).prop_map(|(merchant, item, price, stock)| WOp::List { merchant, item, price, stock }),
        2 => (small(), quantity()).prop_map(|(item, quantity)| WOp::Restock { item, quantity }),
        1 => (small(), amt()).prop_map(|(item, price)| WOp::Price { item, price }),
        4 => (small(), prop::option::weighted(0.1, 0u8..3), prop::collection::vec((small(), quantity()), 0..3))
            .prop_map(|(member, merchant, lines)| WOp::RedeemItems { member, merchant, lines }),
        20 => (prop_oneof![4 => Just(0u8), 1 => Just(1u8)], small(), 1u32..300).prop_map(|(wish, member, minutes)| WOp::NextWishStep { wish, member, minutes }),
        8 => (0u8..3, small(), 1u32..4).prop_map(|(item, member, quantity)| WOp::Shop { item, member, quantity }),
    ]
}

/// The natural actor and command of a generated operation.
pub fn resolve(model: &Model, op: &WOp, now: i64) -> (Actor, Command) {
    let recorder_a = actor(2);
    match op {
        WOp::Post {
            wish: w,
            unit,
            activity: act,
            points,
            minutes,
            ttl,
        } => (
            actor(4),
            Command::Wish(WishCommand::Post {
                id: wish(*w),
                org_unit: org(*unit),
                activity: activity(*act),
                title: "help".into(),
                points: points.amount(),
                minutes: *minutes,
                claim_ttl_ms: [0, 60_000, HOUR as u64, MAX_CLAIM_TTL_MS + 1][usize::from(*ttl)],
            }),
        ),
        WOp::Claim { wish: w, member: m } => (
            recorder_a,
            Command::Wish(WishCommand::Claim {
                wish: wish(*w),
                member: member(*m),
            }),
        ),
        WOp::Fulfil { wish: w, member: m } => {
            // Mostly the claimant, now and then someone else.
            let claimant = model.wf.wishes.get(&wish(*w)).and_then(|x| x.claimant);
            let member = match (m, claimant) {
                (None, Some(c)) => c,
                _ => member(m.unwrap_or(0)),
            };
            (
                recorder_a,
                Command::Wish(WishCommand::Fulfil {
                    wish: wish(*w),
                    member,
                }),
            )
        }
        WOp::Confirm { wish: w } => (
            actor(4),
            Command::Wish(WishCommand::Confirm { wish: wish(*w) }),
        ),
        WOp::Cancel { wish: w } => (
            recorder_a,
            Command::Wish(WishCommand::Cancel {
                wish: wish(*w),
                reason: "no longer needed".into(),
            }),
        ),
        WOp::Lapse { wish: w } => (
            Actor::System,
            Command::Wish(WishCommand::Lapse { wish: wish(*w) }),
        ),
        WOp::List {
            merchant: s,
            item: i,
            price,
            stock,
        } => (
            till(merchant(*s)),
            Command::Catalogue(CatalogueCommand::ListItem {
                merchant: merchant(*s),
                item: item(*i),
                name: "rice".into(),
                price: price.amount(),
                stock: *stock,
            }),
        ),
        WOp::Restock { item: i, quantity } => {
            let owner = model
                .wf
                .items
                .get(&item(*i))
                .map_or(merchant(1), |x| x.merchant);
            (
                till(owner),
                Command::Catalogue(CatalogueCommand::Restock {
                    merchant: owner,
                    item: item(*i),
                    quantity: *quantity,
                }),
            )
        }
        WOp::Price { item: i, price } => {
            let owner = model
                .wf
                .items
                .get(&item(*i))
                .map_or(merchant(0), |x| x.merchant);
            (
                actor(4),
                Command::Catalogue(CatalogueCommand::SetPrice {
                    merchant: owner,
                    item: item(*i),
                    price: price.amount(),
                }),
            )
        }
        WOp::NextWishStep {
            wish: w,
            member: m,
            minutes,
        } => {
            let next = match model.wf.wishes.get(&wish(*w)) {
                None => WOp::Post {
                    wish: *w,
                    unit: 1,
                    activity: *w % 2,
                    points: Amt::Cents(700),
                    minutes: *minutes,
                    ttl: 2,
                },
                Some(x) => match x.stage {
                    Stage::Claimed if now < x.deadline => WOp::Fulfil {
                        wish: *w,
                        member: None,
                    },
                    Stage::Fulfilled => WOp::Confirm { wish: *w },
                    _ => WOp::Claim {
                        wish: *w,
                        member: *m,
                    },
                },
            };
            resolve(model, &next, now)
        }
        WOp::Shop {
            item: i,
            member: m,
            quantity,
        } => {
            let next = match model.wf.items.get(&item(*i)) {
                None => WOp::List {
                    merchant: *i % 2,
                    item: *i,
                    price: Amt::Cents(150),
                    stock: *quantity,
                },
                Some(_) => WOp::RedeemItems {
                    member: *m,
                    merchant: None,
                    lines: vec![(*i, *quantity)],
                },
            };
            resolve(model, &next, now)
        }
        WOp::RedeemItems {
            member: m,
            merchant: s,
            lines,
        } => {
            let first = lines.first().map_or(0, |l| l.0);
            let owner = match s {
                Some(s) => merchant(*s),
                None => model
                    .wf
                    .items
                    .get(&item(first))
                    .map_or(merchant(0), |x| x.merchant),
            };
            (
                till(owner),
                Command::Catalogue(CatalogueCommand::RedeemItems {
                    member: member(*m),
                    merchant: owner,
                    lines: lines
                        .iter()
                        .map(|&(i, quantity)| ItemLine {
                            item: item(i),
                            quantity,
                        })
                        .collect(),
                }),
            )
        }
    }
}

/// Points a wish's activity gives for `minutes`, by hand: patrol 10 an hour pro rata up to
/// 240 minutes, the clinic 7.50 an occasion.
fn rule_points(act: ActivityId, minutes: u32) -> i64 {
    if act == activity(0) {
        let m = i64::from(minutes.min(240));
        let q = 50 * m / 3;
        if 2 * (50 * m % 3) > 3 {
            q + 1
        } else {
            q
        }
    } else {
        750
    }
}

fn activity_unit(act: ActivityId) -> Option<OrgUnitId> {
    if act == activity(0) {
        Some(a())
    } else if act == activity(1) {
        Some(d())
    } else {
        None
    }
}

impl Model {
    fn allow_catalogue(&self, actor: &Actor, merchant: MerchantId) -> R<()> {
        match actor {
            Actor::Recorder { .. } => self.allow_in(actor, self.merchants[&merchant].0),
            _ => self.allow_merchant(actor, merchant),
        }
    }

    fn own_item(&self, merchant: MerchantId, id: ItemId) -> R<MItem> {
        self.wf
            .items
            .get(&id)
            .filter(|i| i.merchant == merchant)
            .cloned()
            .ok_or(Rejection::UnknownItem)
    }

    fn m_wish(&self, id: WishId) -> R<MWish> {
        self.wf
            .wishes
            .get(&id)
            .cloned()
            .ok_or(Rejection::UnknownWish)
    }

    pub(super) fn decide_workflow(
        &mut self,
        actor: &Actor,
        command: &Command,
        at: i64,
        seq: u64,
    ) -> R<()> {
        match command {
            Command::Wish(c) => self.decide_wish(actor, c, at, seq),
            Command::Catalogue(c) => self.decide_catalogue(actor, c, at, seq),
            other => panic!("not a workflow command: {}", other.name()),
        }
    }

    fn decide_wish(&mut self, actor: &Actor, command: &WishCommand, at: i64, seq: u64) -> R<()> {
        match command {
            WishCommand::Post {
                id,
                org_unit,
                activity: act,
                title,
                points,
                minutes,
                claim_ttl_ms,
            } => {
                check_text(title)?;
                let points = minor(*points)?;
                if *minutes == 0 || *minutes > 1_440 || *claim_ttl_ms == 0 {
                    return Err(Rejection::DurationOutOfRange);
                }
                if *claim_ttl_ms > MAX_CLAIM_TTL_MS {
                    return Err(Rejection::DurationOutOfRange);
                }
                if !self.parent.contains_key(org_unit) {
                    return Err(Rejection::UnknownOrgUnit);
                }
                let home = activity_unit(*act).ok_or(Rejection::UnknownActivity)?;
                if self.wf.wishes.contains_key(id) {
                    return Err(Rejection::AlreadyExists);
                }
                self.allow_in(actor, *org_unit)?;
                if !self.within(*org_unit, home) {
                    return Err(Rejection::ActivityNotAvailable);
                }
                if points > rule_points(*act, *minutes) {
                    return Err(Rejection::WishOverRule);
                }
                self.wf.wishes.insert(
                    *id,
                    MWish {
                        unit: *org_unit,
                        activity: *act,
                        points,
                        minutes: *minutes,
                        ttl: *claim_ttl_ms,
                        stage: Stage::Open,
                        claimant: None,
                        deadline: 0,
                        fulfilled_at: 0,
                    },
                );
            }
            WishCommand::Claim { wish, member } => {
                let m = self.member(*member)?.clone();
                let w = self.m_wish(*wish)?;
                self.allow_in(actor, w.unit)?;
                if !(self.within(w.unit, m.home) || self.within(m.home, w.unit) || m.dual) {
                    return Err(Rejection::MemberNotEligible);
                }
                if (w.stage == Stage::Claimed && at < w.deadline) || w.stage == Stage::Fulfilled {
                    return Err(Rejection::WishClaimed);
                }
                if matches!(w.stage, Stage::Confirmed | Stage::Cancelled) {
                    return Err(Rejection::WishClosed);
                }
                let x = self.wf.wishes.get_mut(wish).unwrap();
                x.stage = Stage::Claimed;
                x.claimant = Some(*member);
                x.deadline = at + x.ttl as i64;
            }
            WishCommand::Fulfil { wish, member } => {
                self.member(*member)?;
                let w = self.m_wish(*wish)?;
                self.allow_in(actor, w.unit)?;
                if w.claimant != Some(*member) || w.stage == Stage::Open {
                    return Err(Rejection::NotClaimant);
                }
                if matches!(w.stage, Stage::Confirmed | Stage::Cancelled) {
                    return Err(Rejection::WishClosed);
                }
                if w.stage == Stage::Claimed && at >= w.deadline {
                    return Err(Rejection::ClaimLapsed);
                }
                if w.stage == Stage::Fulfilled {
                    return Err(Rejection::AlreadyFulfilled);
                }
                let x = self.wf.wishes.get_mut(wish).unwrap();
                x.stage = Stage::Fulfilled;
                x.fulfilled_at = at;
            }
            WishCommand::Confirm { wish } => {
                let w = self.m_wish(*wish)?;
                self.allow_in(actor, w.unit)?;
                if matches!(w.stage, Stage::Confirmed | Stage::Cancelled) {
                    return Err(Rejection::WishClosed);
                }
                if w.stage != Stage::Fulfilled {
                    return Err(Rejection::WishNotFulfilled);
                }
                let member = w.claimant.unwrap();
                let record = RecordId::for_record(entry_id(seq), 0);
                let clinic = w.activity == activity(1);
                let key = (member, w.activity, local_day(w.fulfilled_at));
                if clinic && self.daily.get(&key).copied().unwrap_or(0) + w.points > 10_00 {
                    return Err(Rejection::CapExceeded(record));
                }
                let minutes = if clinic {
                    w.minutes
                } else {
                    w.minutes.min(240)
                };
                let award = (w.points, i64::from(minutes), clinic);
                if clinic {
                    *self.daily.entry(key).or_insert(0) += w.points;
                }
                self.credit(member, w.points, expiry_of(at));
                self.add_minutes(member, award.1, clinic);
                self.issued += w.points;
                self.records.insert(
                    record,
                    MRecord {
                        member,
                        activity: w.activity,
                        unit: w.unit,
                        started_at: w.fulfilled_at,
                        minutes: w.minutes,
                        status: Status::Approved,
                        award: Some(award),
                    },
                );
                self.record_ids.push(record);
                self.add_fact(
                    entry_id(seq),
                    Fact::Approval {
                        records: vec![record],
                    },
                );
                self.wf.wishes.get_mut(wish).unwrap().stage = Stage::Confirmed;
            }
            WishCommand::Cancel { wish, reason } => {
                check_text(reason)?;
                let w = self.m_wish(*wish)?;
                self.allow_in(actor, w.unit)?;
                if matches!(w.stage, Stage::Confirmed | Stage::Cancelled) {
                    return Err(Rejection::WishClosed);
                }
                self.wf.wishes.get_mut(wish).unwrap().stage = Stage::Cancelled;
            }
            WishCommand::Lapse { wish } => {
                let w = self.m_wish(*wish)?;
                if *actor != Actor::System {
                    self.allow_in(actor, w.unit)?;
                }
                if matches!(w.stage, Stage::Confirmed | Stage::Cancelled) {
                    return Err(Rejection::WishClosed);
                }
                if !(w.stage == Stage::Claimed && at >= w.deadline) {
                    return Err(Rejection::NoLapsedClaim);
                }
                self.wf.wishes.get_mut(wish).unwrap().stage = Stage::Open;
            }
        }
        Ok(())
    }

    fn decide_catalogue(
        &mut self,
        actor: &Actor,
        command: &CatalogueCommand,
        at: i64,
        seq: u64,
    ) -> R<()> {
        match command {
            CatalogueCommand::ListItem {
                merchant,
                item,
                name,
                price,
                stock,
            } => {
                check_text(name)?;
                let price = minor(*price)?;
                if *stock > 1_000_000_000 {
                    return Err(Rejection::QuantityOutOfRange);
                }
                self.merchant(*merchant)?;
                if self.wf.items.contains_key(item) {
                    return Err(Rejection::AlreadyExists);
                }
                self.allow_catalogue(actor, *merchant)?;
                self.wf.items.insert(
                    *item,
                    MItem {
                        merchant: *merchant,
                        price,
                        stock: i64::from(*stock),
                    },
                );
            }
            CatalogueCommand::Restock {
                merchant,
                item,
                quantity,
            } => {
                if *quantity == 0 || *quantity > 1_000_000_000 {
                    return Err(Rejection::QuantityOutOfRange);
                }
                self.merchant(*merchant)?;
                self.own_item(*merchant, *item)?;
                self.allow_catalogue(actor, *merchant)?;
                self.wf.items.get_mut(item).unwrap().stock += i64::from(*quantity);
            }
            CatalogueCommand::SetPrice {
                merchant,
                item,
                price,
            } => {
                let price = minor(*price)?;
                self.merchant(*merchant)?;
                self.own_item(*merchant, *item)?;
                self.allow_catalogue(actor, *merchant)?;
                self.wf.items.get_mut(item).unwrap().price = price;
            }
            CatalogueCommand::RedeemItems {
                member,
                merchant,
                lines,
            } => {
                if lines.is_empty() {
                    return Err(Rejection::BatchEmpty);
                }
                for (i, l) in lines.iter().enumerate() {
                    if lines[..i].iter().any(|o| o.item == l.item) {
                        return Err(Rejection::DuplicateInBatch);
                    }
                }
                if lines
                    .iter()
                    .any(|l| l.quantity == 0 || l.quantity > MAX_LINE_QUANTITY)
                {
                    return Err(Rejection::QuantityOutOfRange);
                }
                self.member(*member)?;
                let (_, suspended, _) = self.merchant(*merchant)?;
                let mut total = 0;
                for l in lines {
                    total += self.own_item(*merchant, l.item)?.price * i64::from(l.quantity);
                }
                self.allow_merchant(actor, *merchant)?;
                if suspended {
                    return Err(Rejection::MerchantSuspended);
                }
                self.need(*member, total, at)?;
                for l in lines {
                    if self.wf.items[&l.item].stock < i64::from(l.quantity) {
                        return Err(Rejection::OutOfStock);
                    }
                }
                for l in lines {
                    self.wf.items.get_mut(&l.item).unwrap().stock -= i64::from(l.quantity);
                }
                self.debit(*member, total);
                self.merchants.get_mut(merchant).unwrap().2 += total;
                self.add_spend(entry_id(seq), *member, *merchant, total, at);
            }
        }
        Ok(())
    }
}

/// Every item and wish in the ledger equals the model's.
pub fn compare(run: &Run) {
    let now = Timestamp::from_millis(run.now);
    for i in 0..3 {
        let id = item(i);
        let got = run
            .ledger
            .item(id)
            .map(|v| (v.merchant, v.price.minor(), i64::from(v.stock)));
        let want = run
            .model
            .wf
            .items
            .get(&id)
            .map(|m| (m.merchant, m.price, m.stock));
        assert_eq!(got, want, "item {i}: (merchant, price, stock)");
        if let Some((_, _, stock)) = want {
            assert!(stock >= 0, "item {i}: stock below zero");
        }
    }
    for i in 0..3 {
        let id = wish(i);
        let got = run.ledger.wish(id, now);
        let Some(want) = run.model.wf.wishes.get(&id) else {
            assert!(got.is_none(), "wish {i} must be unknown");
            continue;
        };
        let got = got.expect("wish posted");
        let status = match want.stage {
            Stage::Open => WishStatus::Open,
            Stage::Claimed if run.now < want.deadline => WishStatus::Claimed,
            Stage::Claimed => WishStatus::Lapsed,
            Stage::Fulfilled => WishStatus::Fulfilled,
            Stage::Confirmed => WishStatus::Confirmed,
            Stage::Cancelled => WishStatus::Cancelled,
        };
        assert_eq!(
            (got.status, got.claimant, got.spec.points.minor()),
            (status, want.claimant, want.points),
            "wish {i}: (status, claimant, points)"
        );
        // At most one claim holds a wish: a live claim names exactly one claimant whose
        // deadline is still ahead.
        if got.status == WishStatus::Claimed {
            assert!(got.claimant.is_some() && got.deadline.is_some_and(|d| d > now));
        }
    }
}
