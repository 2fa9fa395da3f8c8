//! Merchant clearing and settlement in money.
//!
//! Partner merchants take points because community funds (自治金, 专项激励资金) pay them
//! back in money. This module holds the money side of the ledger:
//!
//! - **Rates.** Each merchant has a reimbursement [`Rate`] in yuan per point, set with an
//!   effective instant strictly after the entry that sets it, so a rate change can never
//!   alter the value of an entry already written, and a closed period never changes.
//! - **Funds.** A community fund has a budget in fen per local calendar month. A merchant is
//!   paid by one or more funds, in the order given. A fund never pays more than its budget
//!   in a month; what it cannot pay waits for the next budget.
//! - **Over budget.** The programme's [`OverBudget`] setting decides what happens to a
//!   redemption whose reimbursement would exceed the budget of the merchant's funds: it is
//!   refused ([`Rejection::FundBudgetExceeded`]) or accepted with its payment deferred.
//! - **Settlement.** Closing a merchant's period writes one [`Settlement`] entry: it moves
//!   the merchant's unsettled points to its settled account, rounds the money owed half to
//!   even to the fen, carries the residue to the next period, and records what each fund
//!   pays. Periods are numbered from 1 and each closes once; anything written after the
//!   close (a late refund) falls in the next period.
//! - **Statements** ([`statement`]) list every redemption, capture, refund and reversal in a
//!   closed period with the rate in force for it, rebuilt from the journal. A redemption of
//!   catalogue items (issue 5) is a redemption here too: valued, budget-checked and settled
//!   like one, on its own line kind ([`LineKind::Items`]).
//!
//! Everything here is pure: time is an argument and nothing reads a clock.

use crate::amount::{Points, Scale};
use crate::command::Actor;
use crate::entry::{Account, Entry, EntryKind, Event, Posting, Reversal, Unit};
use crate::ids::{EntryId, FundId, MemberId, MerchantId, OrgUnitId};
use crate::ledger::catalogue::CatalogueEvent;
use crate::ledger::Ledger;
use crate::money::{round_fen, Fen, Rate, ROUNDING};
use crate::rejection::Rejection;
use crate::time::Timestamp;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The most funds one merchant may be paid by.
pub const MAX_FUNDS_PER_MERCHANT: usize = 8;

/// What happens when a redemption's reimbursement would exceed the budget of the
/// merchant's funds this month.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OverBudget {
    /// Accept the redemption; what the funds cannot pay this month waits for the next
    /// month's budget. The default, so that a programme without funds behaves as before.
    #[default]
    Defer,
    /// Refuse the redemption at redeem time with [`Rejection::FundBudgetExceeded`].
    Refuse,
}

/// A community fund as created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FundSpec {
    /// The fund.
    pub id: FundId,
    /// The org unit whose money it is.
    pub org_unit: OrgUnitId,
    /// Display name.
    pub name: String,
    /// What it may pay out per local calendar month.
    pub budget_per_month: Fen,
}

/// What one fund paid in one settlement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FundPayment {
    /// The fund.
    pub fund: FundId,
    /// How much.
    pub amount: Fen,
}

/// A closed settlement period: the body of a `SettlementClosed` entry. Every figure is
/// final; replay needs no rates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    /// The merchant.
    pub merchant: MerchantId,
    /// The period's number, from 1.
    pub period: u32,
    /// The first journal sequence the period covers.
    pub from_sequence: u64,
    /// The sequence of the settlement entry itself; the period covers entries before it.
    pub to_sequence: u64,
    /// The instant of the close.
    pub closed_at: Timestamp,
    /// The local month (`year * 12 + month - 1`) whose budgets paid.
    pub budget_month: i32,
    /// Points taken less points given back in the period: what moves to settled.
    pub net_points: Points,
    /// Redemptions (of an amount or of catalogue items), captures, refunds and reversals
    /// in the period.
    pub lines: u32,
    /// The exact money of the period's entries at their rates, in fen.
    #[serde(with = "rust_decimal::serde::str")]
    pub exact_fen: Decimal,
    /// The rounding residue carried in from the previous period, in fen.
    #[serde(with = "rust_decimal::serde::str")]
    pub carried_in_fen: Decimal,
    /// Money owed for this period: exact money plus carried residue, rounded half to even.
    pub owed: Fen,
    /// The residue carried to the next period (exact less owed), in fen.
    #[serde(with = "rust_decimal::serde::str")]
    pub residue_fen: Decimal,
    /// Money owed from earlier periods that no budget could pay yet.
    pub deferred_in: Fen,
    /// What each fund paid now.
    pub payments: Vec<FundPayment>,
    /// Money still owed after this settlement, waiting for the next budget.
    pub deferred_out: Fen,
}

impl Settlement {
    /// Money paid by all funds in this settlement.
    pub fn paid(&self) -> Fen {
        self.payments
            .iter()
            .fold(Fen::ZERO, |sum, p| sum.checked_add(p.amount).unwrap_or(sum))
    }
}

/// The money side of the journal: one entry of one of these kinds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SettlementEvent {
    /// A community fund was created.
    FundCreated(FundSpec),
    /// The funds that pay a merchant were set (in paying order).
    MerchantFundsSet {
        /// The merchant.
        merchant: MerchantId,
        /// Its funds.
        funds: Vec<FundId>,
    },
    /// A merchant's reimbursement rate was set from an instant on.
    MerchantRateSet {
        /// The merchant.
        merchant: MerchantId,
        /// Yuan per point.
        rate: Rate,
        /// From when it applies (strictly after the entry that set it).
        effective_from: Timestamp,
    },
    /// The programme's over-budget setting changed.
    OverBudgetSet(OverBudget),
    /// A merchant's period was closed.
    SettlementClosed(Box<Settlement>),
}

impl SettlementEvent {
    /// The entry kind.
    pub fn kind(&self) -> EntryKind {
        match self {
            SettlementEvent::FundCreated(_) => EntryKind::FundCreated,
            SettlementEvent::MerchantFundsSet { .. } => EntryKind::MerchantFundsSet,
            SettlementEvent::MerchantRateSet { .. } => EntryKind::MerchantRateSet,
            SettlementEvent::OverBudgetSet(_) => EntryKind::OverBudgetSet,
            SettlementEvent::SettlementClosed(_) => EntryKind::SettlementClosed,
        }
    }

    /// Pushes the postings: a settlement moves the period's net points from the merchant's
    /// account to its settled account; nothing else posts points.
    pub(crate) fn postings(&self, out: &mut Vec<Posting>) {
        if let SettlementEvent::SettlementClosed(s) = self {
            let amount = s.net_points.minor();
            out.push(Posting {
                account: Account::Merchant(s.merchant),
                unit: Unit::Points,
                amount: amount.wrapping_neg(),
            });
            out.push(Posting {
                account: Account::Settled(s.merchant),
                unit: Unit::Points,
                amount,
            });
        }
    }
}

/// What a caller asks of the money side.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SettlementCommand {
    /// Create a community fund in an org unit.
    CreateFund {
        /// New fund's id.
        id: FundId,
        /// The org unit whose money it is.
        org_unit: OrgUnitId,
        /// Display name.
        name: String,
        /// Budget per local calendar month in yuan, at most two decimal places.
        #[serde(with = "rust_decimal::serde::str")]
        budget_per_month_yuan: Decimal,
    },
    /// Set the funds that pay a merchant, in paying order (1 to
    /// [`MAX_FUNDS_PER_MERCHANT`], no repeats).
    SetMerchantFunds {
        /// The merchant.
        merchant: MerchantId,
        /// Its funds.
        funds: Vec<FundId>,
    },
    /// Set a merchant's rate from `effective_from` on, which must be after now.
    SetMerchantRate {
        /// The merchant.
        merchant: MerchantId,
        /// Yuan per point.
        #[serde(with = "rust_decimal::serde::str")]
        yuan_per_point: Decimal,
        /// From when.
        effective_from: Timestamp,
    },
    /// Set what happens to redemptions over budget (admins only).
    SetOverBudget(OverBudget),
    /// Close a merchant's open period, which must be `period`.
    ClosePeriod {
        /// The merchant.
        merchant: MerchantId,
        /// The number of the period being closed (the merchant's open one).
        period: u32,
    },
}

impl SettlementCommand {
    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            SettlementCommand::CreateFund { .. } => "create_fund",
            SettlementCommand::SetMerchantFunds { .. } => "set_merchant_funds",
            SettlementCommand::SetMerchantRate { .. } => "set_merchant_rate",
            SettlementCommand::SetOverBudget(_) => "set_over_budget",
            SettlementCommand::ClosePeriod { .. } => "close_settlement_period",
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct FundState {
    spec: Option<FundSpec>,
    /// Paid per local month.
    paid: BTreeMap<i32, Fen>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct MerchantMoney {
    /// Rate changes by effective instant, ascending.
    rates: Vec<(Timestamp, Rate)>,
    funds: Vec<FundId>,
    /// Periods closed so far; the open period is `closed + 1`.
    closed: u32,
    /// The first sequence of the open period.
    from_sequence: u64,
    /// The exact money of the open period's entries, in fen.
    #[serde(with = "rust_decimal::serde::str")]
    pending_fen: Decimal,
    /// Lines in the open period.
    lines: u32,
    /// Residue carried from the last close, in fen.
    #[serde(with = "rust_decimal::serde::str")]
    carried_fen: Decimal,
    /// Owed and not yet paid for lack of budget.
    deferred: Fen,
    /// Points settled, ever.
    settled: Points,
    /// Every closed period, in order.
    settlements: Vec<Settlement>,
}

impl MerchantMoney {
    fn rate_at(&self, at: Timestamp) -> Rate {
        let after = self.rates.partition_point(|(from, _)| *from <= at);
        after
            .checked_sub(1)
            .and_then(|i| self.rates.get(i))
            .map_or(Rate::ZERO, |(_, rate)| *rate)
    }

    /// What the merchant is owed and not yet paid, never less than nothing.
    fn outstanding_fen(&self) -> Decimal {
        let total = self
            .pending_fen
            .checked_add(self.carried_fen)
            .and_then(|v| v.checked_add(self.deferred.to_decimal()))
            .unwrap_or(Decimal::MAX);
        total.max(Decimal::ZERO)
    }
}

/// The money side of a ledger's state. Kept in [`BTreeMap`]s so that iteration (and the
/// snapshot encoding) is deterministic.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct SettlementState {
    over_budget: OverBudget,
    funds: BTreeMap<FundId, FundState>,
    merchants: BTreeMap<MerchantId, MerchantMoney>,
}

/// The local month index (`year * 12 + month - 1`) of an instant.
pub fn local_month(at: Timestamp, utc_offset_minutes: i16) -> i32 {
    let offset = time::UtcOffset::from_whole_seconds(i32::from(utc_offset_minutes) * 60)
        .unwrap_or(time::UtcOffset::UTC);
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(at.millis()) * 1_000_000)
        .map(|t| {
            let t = t.to_offset(offset);
            t.year() * 12 + i32::from(u8::from(t.month())) - 1
        })
        .unwrap_or(0)
}

impl SettlementState {
    fn merchant(&self, id: MerchantId) -> Option<&MerchantMoney> {
        self.merchants.get(&id)
    }

    fn rate_at(&self, merchant: MerchantId, at: Timestamp) -> Rate {
        self.merchant(merchant)
            .map_or(Rate::ZERO, |m| m.rate_at(at))
    }

    fn fund_room(&self, fund: FundId, month: i32) -> Fen {
        let Some(state) = self.funds.get(&fund) else {
            return Fen::ZERO;
        };
        let budget = state
            .spec
            .as_ref()
            .map_or(Fen::ZERO, |s| s.budget_per_month);
        let paid = state.paid.get(&month).copied().unwrap_or(Fen::ZERO);
        budget.checked_sub(paid).unwrap_or(Fen::ZERO).max(Fen::ZERO)
    }

    /// Folds a spend or a correction of one into the merchant's open period. `origin_at`
    /// is the time of the redemption a refund or reversal corrects: it is valued at the
    /// rate that redemption was valued at, so a rate change never makes a refund worth
    /// more or less than what it gives back.
    pub(crate) fn observe(&mut self, entry: &Entry, origin_at: Option<Timestamp>, scale: Scale) {
        let (merchant, points, valued_at) = match entry.event() {
            Event::Redeemed {
                merchant, amount, ..
            }
            | Event::HoldCaptured {
                merchant, amount, ..
            } => (*merchant, *amount, entry.at()),
            Event::Refunded {
                merchant, amount, ..
            }
            | Event::Reversed {
                effect: Reversal::Spend {
                    merchant, amount, ..
                },
                ..
            } => (
                *merchant,
                Points::from_minor(amount.minor().wrapping_neg()),
                origin_at.unwrap_or(entry.at()),
            ),
            // A redemption of catalogue items (issue 5) is a spend like any other: its
            // points moved to the merchant, so its money is owed at the rate in force.
            Event::Catalogue(event) => match &**event {
                CatalogueEvent::ItemsRedeemed {
                    merchant, amount, ..
                } => (*merchant, *amount, entry.at()),
                _ => return,
            },
            _ => return,
        };
        let slot = self.merchants.entry(merchant).or_default();
        let value = slot
            .rate_at(valued_at)
            .value_fen(points, scale)
            .unwrap_or(Decimal::ZERO);
        slot.pending_fen = slot
            .pending_fen
            .checked_add(value)
            .unwrap_or(slot.pending_fen);
        slot.lines = slot.lines.saturating_add(1);
    }

    /// Folds a money-side entry into the state. Total: never fails.
    pub(crate) fn evolve(&mut self, event: &SettlementEvent, sequence: u64) {
        match event {
            SettlementEvent::FundCreated(spec) => {
                self.funds.entry(spec.id).or_default().spec = Some(spec.clone());
            }
            SettlementEvent::MerchantFundsSet { merchant, funds } => {
                self.merchants.entry(*merchant).or_default().funds = funds.clone();
            }
            SettlementEvent::MerchantRateSet {
                merchant,
                rate,
                effective_from,
            } => {
                let rates = &mut self.merchants.entry(*merchant).or_default().rates;
                let at = rates.partition_point(|(from, _)| from < effective_from);
                match rates.get_mut(at) {
                    Some(slot) if slot.0 == *effective_from => slot.1 = *rate,
                    _ => rates.insert(at, (*effective_from, *rate)),
                }
            }
            SettlementEvent::OverBudgetSet(setting) => self.over_budget = *setting,
            SettlementEvent::SettlementClosed(s) => {
                for payment in &s.payments {
                    let paid = self
                        .funds
                        .entry(payment.fund)
                        .or_default()
                        .paid
                        .entry(s.budget_month)
                        .or_insert(Fen::ZERO);
                    *paid = paid.checked_add(payment.amount).unwrap_or(*paid);
                }
                let m = self.merchants.entry(s.merchant).or_default();
                m.closed = m.closed.max(s.period);
                m.from_sequence = sequence.saturating_add(1);
                m.pending_fen = Decimal::ZERO;
                m.lines = 0;
                m.carried_fen = s.residue_fen;
                m.deferred = s.deferred_out;
                m.settled = m.settled.checked_add(s.net_points).unwrap_or(m.settled);
                m.settlements.push((**s).clone());
            }
        }
    }

    /// Points settled for a merchant, ever.
    pub(crate) fn settled(&self, merchant: MerchantId) -> Points {
        self.merchant(merchant).map_or(Points::ZERO, |m| m.settled)
    }
}

// ----------------------------------------------------------------------------------------
// Decide
// ----------------------------------------------------------------------------------------

fn merchant_unit(ledger: &Ledger, merchant: MerchantId) -> Result<OrgUnitId, Rejection> {
    ledger
        .merchant(merchant)
        .map(|m| m.org_unit)
        .ok_or(Rejection::UnknownMerchant)
}

/// Checks a money-side command and returns the event it would record. Never mutates.
pub(crate) fn decide(
    ledger: &Ledger,
    actor: &Actor,
    command: &SettlementCommand,
    at: Timestamp,
) -> Result<Event, Rejection> {
    let state = &ledger.settlement;
    let event = match command {
        SettlementCommand::CreateFund {
            id,
            org_unit,
            name,
            budget_per_month_yuan,
        } => {
            crate::text::check_name(name)?;
            let budget = Fen::from_yuan(*budget_per_month_yuan)?;
            if ledger.org_unit(*org_unit).is_none() {
                return Err(Rejection::UnknownOrgUnit);
            }
            if state.funds.get(id).is_some_and(|f| f.spec.is_some()) {
                return Err(Rejection::AlreadyExists);
            }
            ledger.allow_in(actor, *org_unit)?;
            SettlementEvent::FundCreated(FundSpec {
                id: *id,
                org_unit: *org_unit,
                name: name.clone(),
                budget_per_month: budget,
            })
        }
        SettlementCommand::SetMerchantFunds { merchant, funds } => {
            if funds.is_empty() {
                return Err(Rejection::BatchEmpty);
            }
            if funds.len() > MAX_FUNDS_PER_MERCHANT {
                return Err(Rejection::BatchTooLarge);
            }
            if funds
                .iter()
                .enumerate()
                .any(|(i, f)| funds[i + 1..].contains(f))
            {
                return Err(Rejection::DuplicateInBatch);
            }
            let unit = merchant_unit(ledger, *merchant)?;
            if funds
                .iter()
                .any(|f| state.funds.get(f).is_none_or(|s| s.spec.is_none()))
            {
                return Err(Rejection::UnknownFund);
            }
            ledger.allow_in(actor, unit)?;
            SettlementEvent::MerchantFundsSet {
                merchant: *merchant,
                funds: funds.clone(),
            }
        }
        SettlementCommand::SetMerchantRate {
            merchant,
            yuan_per_point,
            effective_from,
        } => {
            if !effective_from.in_supported_range() {
                return Err(Rejection::TimeOutOfRange);
            }
            // Strictly after this entry: an entry stamped at the same instant as the rate
            // change was valued at the old rate, and must stay so.
            if *effective_from <= at {
                return Err(Rejection::EffectiveDateNotFuture);
            }
            let rate = Rate::new(*yuan_per_point)?;
            let unit = merchant_unit(ledger, *merchant)?;
            ledger.allow_in(actor, unit)?;
            SettlementEvent::MerchantRateSet {
                merchant: *merchant,
                rate,
                effective_from: *effective_from,
            }
        }
        SettlementCommand::SetOverBudget(setting) => {
            if !matches!(actor, Actor::Admin { .. }) {
                return Err(Rejection::ActorNotAllowed);
            }
            SettlementEvent::OverBudgetSet(*setting)
        }
        SettlementCommand::ClosePeriod { merchant, period } => {
            let view = ledger
                .merchant(*merchant)
                .ok_or(Rejection::UnknownMerchant)?;
            ledger.allow_in(actor, view.org_unit)?;
            let empty = MerchantMoney::default();
            let money = state.merchant(*merchant).unwrap_or(&empty);
            let open = money.closed.saturating_add(1);
            if *period < open {
                return Err(Rejection::PeriodAlreadyClosed);
            }
            if *period > open {
                return Err(Rejection::PeriodNotOpen);
            }
            let settlement = close(ledger, money, *merchant, view.taken, open, at)?;
            SettlementEvent::SettlementClosed(Box::new(settlement))
        }
    };
    Ok(Event::Settlement(event))
}

fn close(
    ledger: &Ledger,
    money: &MerchantMoney,
    merchant: MerchantId,
    taken: Points,
    period: u32,
    at: Timestamp,
) -> Result<Settlement, Rejection> {
    let state = &ledger.settlement;
    let exact = money
        .pending_fen
        .checked_add(money.carried_fen)
        .ok_or(Rejection::BalanceOverflow)?;
    let (owed, residue) = round_fen(exact).ok_or(Rejection::BalanceOverflow)?;
    let payable = owed
        .checked_add(money.deferred)
        .ok_or(Rejection::BalanceOverflow)?;
    let month = local_month(at, ledger.spec().utc_offset_minutes());
    let mut left = payable.max(Fen::ZERO);
    let mut payments = Vec::new();
    for fund in &money.funds {
        let part = left.min(state.fund_room(*fund, month));
        if part > Fen::ZERO {
            payments.push(FundPayment {
                fund: *fund,
                amount: part,
            });
            left = left.checked_sub(part).unwrap_or(Fen::ZERO);
        }
    }
    let paid = payments
        .iter()
        .try_fold(Fen::ZERO, |sum, p| sum.checked_add(p.amount))
        .ok_or(Rejection::BalanceOverflow)?;
    Ok(Settlement {
        merchant,
        period,
        from_sequence: money.from_sequence,
        to_sequence: ledger.next_sequence(),
        closed_at: at,
        budget_month: month,
        net_points: taken,
        lines: money.lines,
        exact_fen: money.pending_fen,
        carried_in_fen: money.carried_fen,
        owed,
        residue_fen: residue,
        deferred_in: money.deferred,
        deferred_out: payable
            .checked_sub(paid)
            .ok_or(Rejection::BalanceOverflow)?,
        payments,
    })
}

/// Checks a redemption or capture of `points` at `merchant` against the money side: the
/// value must be countable, and under [`OverBudget::Refuse`] the merchant's funds must
/// have room for it this month.
///
/// Room is counted conservatively: the funds' budgets left this month, less everything
/// owed and unpaid to every merchant that shares any of those funds. So a fund shared by
/// several merchants is never promised twice.
pub(crate) fn check_spend(
    ledger: &Ledger,
    merchant: MerchantId,
    points: Points,
    at: Timestamp,
) -> Result<(), Rejection> {
    let state = &ledger.settlement;
    let Some(money) = state.merchant(merchant) else {
        // No rate was ever set: redemptions here cost the funds nothing.
        return Ok(());
    };
    let value = money
        .rate_at(at)
        .value_fen(points, ledger.spec().scale())
        .ok_or(Rejection::BalanceOverflow)?;
    money
        .pending_fen
        .checked_add(value)
        .ok_or(Rejection::BalanceOverflow)?;
    if state.over_budget == OverBudget::Defer || value <= Decimal::ZERO {
        return Ok(());
    }
    let month = local_month(at, ledger.spec().utc_offset_minutes());
    let room = money.funds.iter().fold(Decimal::ZERO, |sum, f| {
        sum.saturating_add(state.fund_room(*f, month).to_decimal())
    });
    let exposure = state
        .merchants
        .iter()
        .filter(|(id, m)| **id == merchant || m.funds.iter().any(|f| money.funds.contains(f)))
        .fold(Decimal::ZERO, |sum, (_, m)| {
            sum.saturating_add(m.outstanding_fen())
        });
    if exposure.saturating_add(value) > room {
        return Err(Rejection::FundBudgetExceeded);
    }
    Ok(())
}

// ----------------------------------------------------------------------------------------
// Reads
// ----------------------------------------------------------------------------------------

/// A fund and what it has paid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FundView {
    /// The fund's definition.
    pub spec: FundSpec,
    /// Paid per local month (`year * 12 + month - 1`).
    pub paid_by_month: Vec<(i32, Fen)>,
}

/// A merchant's money standing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantMoneyView {
    /// The merchant.
    pub merchant: MerchantId,
    /// Rate changes: effective instant and yuan per point, ascending.
    pub rates: Vec<(Timestamp, Rate)>,
    /// Funds paying it, in order.
    pub funds: Vec<FundId>,
    /// The open period's number.
    pub open_period: u32,
    /// The first journal sequence of the open period.
    pub open_from_sequence: u64,
    /// Exact money of the open period's entries, in fen.
    #[serde(with = "rust_decimal::serde::str")]
    pub pending_fen: Decimal,
    /// Residue carried into the open period, in fen.
    #[serde(with = "rust_decimal::serde::str")]
    pub carried_fen: Decimal,
    /// Owed from closed periods and not yet paid.
    pub deferred: Fen,
    /// Points settled, ever.
    pub settled: Points,
}

impl Ledger {
    /// The over-budget setting in force.
    pub fn over_budget(&self) -> OverBudget {
        self.settlement.over_budget
    }

    /// A fund.
    pub fn fund(&self, id: FundId) -> Option<FundView> {
        let state = self.settlement.funds.get(&id)?;
        Some(FundView {
            spec: state.spec.clone()?,
            paid_by_month: state.paid.iter().map(|(m, f)| (*m, *f)).collect(),
        })
    }

    /// Every fund, by id.
    pub fn funds(&self) -> Vec<FundView> {
        self.settlement
            .funds
            .keys()
            .filter_map(|id| self.fund(*id))
            .collect()
    }

    /// The rate in force for `merchant` at `at` (zero if none was ever set).
    pub fn rate_at(&self, merchant: MerchantId, at: Timestamp) -> Rate {
        self.settlement.rate_at(merchant, at)
    }

    /// A merchant's money standing; `None` for an unknown merchant.
    pub fn merchant_money(&self, merchant: MerchantId) -> Option<MerchantMoneyView> {
        self.merchant(merchant)?;
        let empty = MerchantMoney::default();
        let m = self.settlement.merchant(merchant).unwrap_or(&empty);
        Some(MerchantMoneyView {
            merchant,
            rates: m.rates.clone(),
            funds: m.funds.clone(),
            open_period: m.closed.saturating_add(1),
            open_from_sequence: m.from_sequence,
            pending_fen: m.pending_fen,
            carried_fen: m.carried_fen,
            deferred: m.deferred,
            settled: m.settled,
        })
    }

    /// A merchant's closed periods, oldest first.
    pub fn settlements(&self, merchant: MerchantId) -> &[Settlement] {
        self.settlement
            .merchant(merchant)
            .map_or(&[], |m| m.settlements.as_slice())
    }

    /// One closed period.
    pub fn settlement(&self, merchant: MerchantId, period: u32) -> Option<&Settlement> {
        let index = usize::try_from(period.checked_sub(1)?).ok()?;
        self.settlements(merchant)
            .get(index)
            .filter(|s| s.period == period)
    }

    /// Points settled for a merchant, ever.
    pub fn settled_points(&self, merchant: MerchantId) -> Points {
        self.settlement.settled(merchant)
    }
}

// ----------------------------------------------------------------------------------------
// Statements
// ----------------------------------------------------------------------------------------

/// What a statement line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LineKind {
    /// A one-step redemption.
    Redemption,
    /// A captured hold.
    Capture,
    /// A refund of a redemption or capture.
    Refund,
    /// A reversal of a redemption or capture.
    Reversal,
    /// A redemption of catalogue items (issue 5); its points are the items' total.
    Items,
}

impl LineKind {
    /// Lower-case name, as in the CSV export.
    pub fn name(self) -> &'static str {
        match self {
            LineKind::Redemption => "redemption",
            LineKind::Capture => "capture",
            LineKind::Refund => "refund",
            LineKind::Reversal => "reversal",
            LineKind::Items => "items",
        }
    }
}

/// One entry on a statement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatementLine {
    /// The entry's sequence.
    pub sequence: u64,
    /// The entry.
    pub entry: EntryId,
    /// When it was written.
    pub at: Timestamp,
    /// What it is.
    pub kind: LineKind,
    /// The redemption or capture it corrects (refunds and reversals).
    pub corrects: Option<EntryId>,
    /// The member.
    pub member: MemberId,
    /// Points to the merchant (negative when given back).
    pub points: Points,
    /// The rate it is valued at: in force at the entry, or for a correction, at the
    /// redemption it corrects.
    pub rate: Rate,
    /// Exact money in fen (negative when given back).
    #[serde(with = "rust_decimal::serde::str")]
    pub money_fen: Decimal,
}

/// A closed period's statement: its settlement and every entry in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    /// The settlement.
    pub settlement: Settlement,
    /// Every redemption (of an amount or of catalogue items), capture, refund and reversal
    /// in the period, in journal order.
    pub lines: Vec<StatementLine>,
    /// How money was rounded.
    pub rounding: String,
}

/// Builds a closed period's statement from the journal entries it covers
/// (`settlement.from_sequence .. settlement.to_sequence`; others are ignored). `ledger`
/// supplies rates and the time of each corrected redemption.
pub fn statement<'a>(
    ledger: &Ledger,
    settlement: &Settlement,
    entries: impl IntoIterator<Item = &'a Entry>,
) -> Statement {
    let scale = ledger.spec().scale();
    let merchant = settlement.merchant;
    let mut lines = Vec::new();
    for entry in entries {
        let seq = entry.sequence();
        if seq < settlement.from_sequence || seq >= settlement.to_sequence {
            continue;
        }
        let (kind, member, m, points, corrects) = match entry.event() {
            Event::Redeemed {
                member,
                merchant,
                amount,
            } => (LineKind::Redemption, *member, *merchant, *amount, None),
            Event::HoldCaptured {
                member,
                merchant,
                amount,
                ..
            } => (LineKind::Capture, *member, *merchant, *amount, None),
            Event::Refunded {
                of,
                member,
                merchant,
                amount,
                ..
            } => (
                LineKind::Refund,
                *member,
                *merchant,
                Points::from_minor(amount.minor().wrapping_neg()),
                Some(*of),
            ),
            Event::Reversed {
                of,
                effect:
                    Reversal::Spend {
                        member,
                        merchant,
                        amount,
                        ..
                    },
                ..
            } => (
                LineKind::Reversal,
                *member,
                *merchant,
                Points::from_minor(amount.minor().wrapping_neg()),
                Some(*of),
            ),
            Event::Catalogue(event) => match &**event {
                CatalogueEvent::ItemsRedeemed {
                    member,
                    merchant,
                    amount,
                    ..
                } => (LineKind::Items, *member, *merchant, *amount, None),
                _ => continue,
            },
            _ => continue,
        };
        if m != merchant {
            continue;
        }
        let valued_at = corrects
            .and_then(|of| ledger.spend_time(of))
            .unwrap_or(entry.at());
        let rate = ledger.rate_at(merchant, valued_at);
        lines.push(StatementLine {
            sequence: seq,
            entry: entry.id(),
            at: entry.at(),
            kind,
            corrects,
            member,
            points,
            rate,
            money_fen: rate.value_fen(points, scale).unwrap_or(Decimal::ZERO),
        });
    }
    Statement {
        settlement: settlement.clone(),
        lines,
        rounding: ROUNDING.to_owned(),
    }
}

impl Statement {
    /// The exact money of the lines, in fen; equals the settlement's `exact_fen`.
    pub fn lines_fen(&self) -> Decimal {
        self.lines.iter().fold(Decimal::ZERO, |sum, l| {
            sum.checked_add(l.money_fen).unwrap_or(sum)
        })
    }

    /// The net points of the lines; equals the settlement's `net_points` when the
    /// merchant had nothing unsettled from before the period.
    pub fn lines_points(&self) -> Points {
        self.lines.iter().fold(Points::ZERO, |sum, l| {
            sum.checked_add(l.points).unwrap_or(sum)
        })
    }

    /// The statement as CSV: one row per line (points in the programme's unit, money in
    /// yuan), then summary rows. Fields never contain commas or quotes (ids, numbers and
    /// fixed words), so none are quoted.
    pub fn to_csv(&self, scale: Scale) -> String {
        let s = &self.settlement;
        let mut out = String::from(
            "sequence,entry_id,at,kind,corrects,member_id,points,rate_yuan_per_point,money_yuan\n",
        );
        for line in &self.lines {
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{}",
                line.sequence,
                line.entry,
                line.at,
                line.kind.name(),
                line.corrects.map(|c| c.to_string()).unwrap_or_default(),
                line.member,
                line.points.to_decimal(scale),
                line.rate,
                fen_to_yuan_exact(line.money_fen),
            );
        }
        let summary: [(&str, String); 11] = [
            ("merchant", s.merchant.to_string()),
            ("period", s.period.to_string()),
            ("closed_at", s.closed_at.to_string()),
            ("net_points", s.net_points.to_decimal(scale).to_string()),
            ("exact_yuan", fen_to_yuan_exact(s.exact_fen).to_string()),
            (
                "carried_in_yuan",
                fen_to_yuan_exact(s.carried_in_fen).to_string(),
            ),
            ("owed_yuan", s.owed.to_string()),
            ("residue_yuan", fen_to_yuan_exact(s.residue_fen).to_string()),
            ("deferred_in_yuan", s.deferred_in.to_string()),
            ("paid_yuan", s.paid().to_string()),
            ("deferred_out_yuan", s.deferred_out.to_string()),
        ];
        for (name, value) in summary {
            let _ = writeln!(out, "# {name},{value}");
        }
        for p in &s.payments {
            let _ = writeln!(out, "# paid_by_fund,{},{}", p.fund, p.amount);
        }
        let _ = writeln!(out, "# rounding,{}", self.rounding.replace(',', ";"));
        out
    }
}

/// Exact fen as exact yuan.
pub fn fen_to_yuan_exact(fen: Decimal) -> Decimal {
    fen.checked_div(Decimal::ONE_HUNDRED)
        .unwrap_or(Decimal::ZERO)
        .normalize()
}

// ----------------------------------------------------------------------------------------
// Reconciliation
// ----------------------------------------------------------------------------------------

/// One row of the reconciliation: where points issued went, for the programme or one org
/// unit. `issued + net_in` must equal the sum of the rest; `difference` is what it is off.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconciliationRow {
    /// The org unit, or `None` for the whole programme.
    pub org_unit: Option<OrgUnitId>,
    /// Points issued to members homed here (less reversed).
    pub issued: Points,
    /// Points that came in from other org units less points that went out (transfers,
    /// spending at merchants elsewhere, members moving). Zero for the programme.
    pub net_in: Points,
    /// Members' points not held.
    pub available: Points,
    /// Members' points held by open holds.
    pub held: Points,
    /// Points merchants here took and have not settled.
    pub unsettled: Points,
    /// Points merchants here settled.
    pub settled: Points,
    /// Points that expired from members homed here.
    pub expired: Points,
    /// Points in pools here.
    pub pooled: Points,
    /// `available + held + unsettled + settled + expired + pooled - issued - net_in`.
    pub difference: i128,
}

/// The reconciliation report: the programme and every org unit with any points.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconciliation {
    /// The instant holds were counted at.
    pub at: Timestamp,
    /// The whole programme.
    pub programme: ReconciliationRow,
    /// Each org unit's own accounts (members homed there, merchants and pools there),
    /// sorted by id.
    pub org_units: Vec<ReconciliationRow>,
}

impl Reconciliation {
    /// Whether every row balances.
    pub fn is_balanced(&self) -> bool {
        self.programme.difference == 0 && self.org_units.iter().all(|r| r.difference == 0)
    }
}

/// Flows per org unit, summed from the journal's postings (independently of the ledger's
/// state): what was issued to each unit, what expired from it, and what crossed in or out.
#[derive(Clone, Debug, Default)]
pub struct Flows {
    homes: BTreeMap<MemberId, (OrgUnitId, i128)>,
    merchants: BTreeMap<MerchantId, OrgUnitId>,
    pools: BTreeMap<crate::ids::PoolId, OrgUnitId>,
    units: BTreeMap<OrgUnitId, UnitFlows>,
}

#[derive(Clone, Copy, Debug, Default)]
struct UnitFlows {
    issued: i128,
    expired: i128,
    net_in: i128,
}

impl Flows {
    /// No entries yet.
    pub fn new() -> Flows {
        Flows::default()
    }

    fn unit_of(&self, account: Account) -> Option<OrgUnitId> {
        match account {
            Account::Member(m) => self.homes.get(&m).map(|(u, _)| *u),
            Account::Merchant(m) | Account::Settled(m) => self.merchants.get(&m).copied(),
            Account::Pool(p) => self.pools.get(&p).copied(),
            Account::Issuance | Account::HoursIssuance | Account::ExpirySink => None,
        }
    }

    /// Adds one entry; entries must come in journal order.
    pub fn add(&mut self, entry: &Entry) {
        self.add_with_postings(entry, &entry.postings());
    }

    /// Adds one entry whose postings the caller has already computed.
    pub(crate) fn add_with_postings(&mut self, entry: &Entry, postings: &[Posting]) {
        match entry.event() {
            Event::MemberEnrolled { id, home, .. } => {
                self.homes.insert(*id, (*home, 0));
            }
            Event::MemberMoved { id, to, .. } => {
                if let Some((from, balance)) = self.homes.get(id).copied() {
                    self.units.entry(from).or_default().net_in -= balance;
                    self.units.entry(*to).or_default().net_in += balance;
                    self.homes.insert(*id, (*to, balance));
                }
            }
            Event::MerchantRegistered { id, org_unit, .. } => {
                self.merchants.insert(*id, *org_unit);
            }
            Event::PoolCreated { id, org_unit, .. } => {
                self.pools.insert(*id, *org_unit);
            }
            _ => {}
        }
        let postings: smallvec::SmallVec<[Posting; 4]> = postings
            .iter()
            .filter(|p| p.unit == Unit::Points)
            .copied()
            .collect();
        // Every event posts in pairs (from, to), so each pair is one movement.
        for pair in postings.chunks(2) {
            let [a, b] = pair else { continue };
            let amount = i128::from(b.amount);
            let (ua, ub) = (self.unit_of(a.account), self.unit_of(b.account));
            match (a.account, b.account) {
                (Account::Issuance, _) => {
                    if let Some(u) = ub {
                        self.units.entry(u).or_default().issued += amount;
                    }
                }
                (_, Account::Issuance) => {
                    if let Some(u) = ua {
                        self.units.entry(u).or_default().issued -= amount;
                    }
                }
                (_, Account::ExpirySink) => {
                    if let Some(u) = ua {
                        self.units.entry(u).or_default().expired += amount;
                    }
                }
                _ => {
                    if let (Some(ua), Some(ub)) = (ua, ub) {
                        if ua != ub {
                            self.units.entry(ua).or_default().net_in -= amount;
                            self.units.entry(ub).or_default().net_in += amount;
                        }
                    }
                }
            }
            for p in pair {
                if let Account::Member(m) = p.account {
                    if let Some(slot) = self.homes.get_mut(&m) {
                        slot.1 += i128::from(p.amount);
                    }
                }
            }
        }
    }
}

fn pts(value: i128) -> Points {
    Points::from_minor(i64::try_from(value).unwrap_or(i64::MAX))
}

/// Reconciles the ledger's balances at `at` against the flows summed from its journal:
/// per programme and per org unit, points issued (plus what came in from other units)
/// must equal member balances + held + unsettled + settled + expired + pooled.
pub fn reconcile(ledger: &Ledger, flows: &Flows, at: Timestamp) -> Reconciliation {
    #[derive(Default)]
    struct Sums {
        available: i128,
        held: i128,
        unsettled: i128,
        settled: i128,
        pooled: i128,
    }
    let mut by_unit: BTreeMap<OrgUnitId, Sums> = BTreeMap::new();
    let mut all = Sums::default();
    for id in ledger.member_ids() {
        let (Some(b), Some(view)) = (ledger.balance(id, at), ledger.member(id)) else {
            continue;
        };
        let s = by_unit.entry(view.home).or_default();
        for sums in [&mut *s, &mut all] {
            sums.available += i128::from(b.available.minor());
            sums.held += i128::from(b.held.minor());
        }
    }
    for m in ledger.merchants() {
        let settled = i128::from(ledger.settled_points(m.id).minor());
        let s = by_unit.entry(m.org_unit).or_default();
        for sums in [&mut *s, &mut all] {
            sums.unsettled += i128::from(m.taken.minor());
            sums.settled += settled;
        }
    }
    for p in ledger.pools() {
        let s = by_unit.entry(p.org_unit).or_default();
        for sums in [&mut *s, &mut all] {
            sums.pooled += i128::from(p.balance.minor());
        }
    }
    let totals = ledger.totals();
    let row = |unit: Option<OrgUnitId>, s: &Sums, issued: i128, expired: i128, net_in: i128| {
        let held = s.available + s.held + s.unsettled + s.settled + expired + s.pooled;
        ReconciliationRow {
            org_unit: unit,
            issued: pts(issued),
            net_in: pts(net_in),
            available: pts(s.available),
            held: pts(s.held),
            unsettled: pts(s.unsettled),
            settled: pts(s.settled),
            expired: pts(expired),
            pooled: pts(s.pooled),
            difference: held - issued - net_in,
        }
    };
    let programme = row(
        None,
        &all,
        i128::from(totals.issued.minor()),
        i128::from(totals.expired.minor()),
        0,
    );
    let mut units: Vec<OrgUnitId> = by_unit.keys().copied().collect();
    units.extend(flows.units.keys().copied());
    units.sort_unstable();
    units.dedup();
    let empty = Sums::default();
    let org_units = units
        .into_iter()
        .map(|u| {
            let f = flows.units.get(&u).copied().unwrap_or_default();
            row(
                Some(u),
                by_unit.get(&u).unwrap_or(&empty),
                f.issued,
                f.expired,
                f.net_in,
            )
        })
        .collect();
    Reconciliation {
        at,
        programme,
        org_units,
    }
}

/// Reconciles a ledger against its whole journal.
pub fn reconcile_journal<'a>(
    ledger: &Ledger,
    journal: impl IntoIterator<Item = &'a Entry>,
    at: Timestamp,
) -> Reconciliation {
    let mut flows = Flows::new();
    for entry in journal {
        flows.add(entry);
    }
    reconcile(ledger, &flows, at)
}

/// The balance a ledger's state holds for an account in points, for the audit's
/// after-every-entry reconciliation (`None` for accounts that hold no points).
pub(crate) fn account_points(ledger: &Ledger, account: Account) -> Option<i128> {
    let value = match account {
        Account::Member(m) => ledger.balance(m, Timestamp::from_millis(0))?.balance,
        Account::Merchant(m) => ledger.merchant(m)?.taken,
        Account::Settled(m) => ledger.settled_points(m),
        Account::Pool(p) => ledger.pool(p)?.balance,
        Account::Issuance => Points::from_minor(ledger.totals().issued.minor().wrapping_neg()),
        Account::ExpirySink => ledger.totals().expired,
        Account::HoursIssuance => return None,
    };
    Some(i128::from(value.minor()))
}
