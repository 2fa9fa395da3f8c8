//! # points-core: the ledger engine for community volunteer points
//!
//! Residents and party members earn points for volunteer service that a community centre
//! records, and spend them at the community supermarket and at partner merchants. This crate
//! is the ledger that keeps those points honest: append-only accrual, redemption, holds,
//! refunds, reversals, transfers, love-bank pools, expiry, and an audit of every rule.
//!
//! ## The contract: pure logic
//!
//! This crate does **no I/O, reads no clock and uses no randomness**. Time comes in as an
//! argument ([`Ledger::apply`] takes `now`), ids are chosen by the caller or derived from
//! data the ledger already holds, and every result is a value handed back to the caller.
//! Given the same journal and the same requests, any program on any machine computes the
//! same entries, balances and hashes. Clippy's `disallowed-methods` (see `clippy.toml` in
//! this crate) refuses `SystemTime::now`, `Instant::now` and `thread_rng` here.
//!
//! The embedding program (the `points-grpc` server, a city platform, an analytics job) owns
//! the clock, the disk and the network: it stores each [`Entry`] that `apply` returns and
//! acknowledges the caller only once the entry is durable.
//!
//! ## How a command becomes an entry
//!
//! [`Ledger::apply`] checks the request id (a retry returns the original outcome), then
//! validates the command against the state in a fixed precedence order, and only then
//! commits. Validation returns the first [`Rejection`]; commit cannot fail. Each entry
//! records the validated [`Event`], derives balanced [`Posting`]s from it, and carries a
//! BLAKE3 hash chained over the previous entry's hash and this entry's canonical encoding.
//! [`Ledger::replay`] rebuilds the state from a journal and verifies the chain; [`audit()`]
//! checks every rule in the domain and names the entry at fault.
//!
//! ## Example
//!
//! ```
//! use points_core::*;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let program = ProgramId::parse("5f0e2d4a-1b5c-4e8f-9a1d-2c3b4a5f6e7d")?;
//! let admin = Actor::Admin { id: ActorId::from_u128(1)? };
//! let mut now = Timestamp::from_millis(1_790_000_000_000); // 2026-09-21
//! let mut journal = Vec::new();
//! let mut request_ids = (100u128..).map(RequestId::from_u128);
//! let mut next = || request_ids.next().unwrap();
//!
//! // A programme with two decimal places whose points expire at the end of the next year.
//! let spec = ProgramSpec::new(program, "Donghu volunteer points", "points", Scale::new(2).unwrap())
//!     .with_expiry(ExpiryPolicy::EndOfYear { years_after: 1 });
//! let (mut ledger, genesis) = Ledger::open(spec, next()?, admin, now)?;
//! journal.push(genesis);
//!
//! // A community, a volunteer, a partner cafe and an activity worth 10 points an hour.
//! let community = OrgUnitId::from_u128(10)?;
//! let member = MemberId::from_u128(20)?;
//! let cafe = MerchantId::from_u128(30)?;
//! let patrol = ActivityId::from_u128(40)?;
//! let setup = vec![
//!     Command::CreateOrgUnit { id: community, parent: None, name: "Donghu".into(), level: OrgLevel::Community },
//!     Command::EnrolMember { id: member, home: community, kind: MemberKind::Resident, dual_registration: false, card_code: Some("DH-0001".into()) },
//!     Command::RegisterMerchant { id: cafe, org_unit: community, name: "Corner cafe".into(), kind: MerchantKind::Partner },
//!     Command::DefineActivity(ActivityInput {
//!         id: patrol, org_unit: community, name: "Evening patrol".into(), category: "patrol".into(),
//!         rule: RuleInput::PerHour("10".parse()?), coefficient: "1".parse()?,
//!         max_minutes_per_occasion: Some(240), daily_points_cap: None, time_kind: TimeKind::Credit,
//!     }),
//! ];
//! for command in setup {
//!     let applied = ledger.apply(&Request { request_id: next()?, actor: admin, command }, now)?;
//!     if let Applied::New(entry) = applied { journal.push(entry) }
//! }
//!
//! // A recorder enters two hours of patrol; the entry gives the record its id.
//! let recorder = Actor::Recorder { id: ActorId::from_u128(2)?, org_unit: community };
//! now = now.saturating_add_millis(3_600_000);
//! let record = ServiceInput { member, activity: patrol, org_unit: community,
//!     started_at: Timestamp::from_millis(now.millis() - 7_200_000), minutes: 120 };
//! let Applied::New(recorded) = ledger.apply(&Request { request_id: next()?, actor: recorder,
//!     command: Command::RecordService { records: vec![record] } }, now)? else { unreachable!() };
//! let Event::ServiceRecorded { records } = recorded.event() else { unreachable!() };
//! let record_id = records[0].id;
//! journal.push(recorded);
//!
//! // Approval accrues 20 points and two hours of credit time.
//! let approve = Request { request_id: next()?, actor: recorder,
//!     command: Command::ApproveService { records: vec![record_id] } };
//! if let Applied::New(entry) = ledger.apply(&approve, now)? { journal.push(entry) }
//! // A retry of the same request writes nothing and answers with the same entry.
//! assert!(matches!(ledger.apply(&approve, now)?, Applied::Duplicate { .. }));
//!
//! // The cafe's till redeems 12.50 points; a second try for 10 is refused.
//! let till = Actor::Merchant { id: ActorId::from_u128(3)?, merchant: cafe };
//! let redeem = |request_id, amount: &str| -> Result<Request, Box<dyn std::error::Error>> {
//!     Ok(Request { request_id, actor: till,
//!         command: Command::Redeem { member, merchant: cafe, amount: amount.parse()? } })
//! };
//! if let Applied::New(entry) = ledger.apply(&redeem(next()?, "12.50")?, now)? { journal.push(entry) }
//! assert_eq!(ledger.apply(&redeem(next()?, "10")?, now), Err(Rejection::InsufficientPoints));
//!
//! let balance = ledger.balance(member, now).unwrap();
//! assert_eq!(balance.available.to_decimal(ledger.spec().scale()).to_string(), "7.50");
//! assert_eq!(balance.credit_minutes.get(), 120);
//!
//! // The audit replays the journal, checks the chain and every rule, and compares.
//! let report = audit(&journal, Some(&ledger));
//! assert!(report.is_clean(), "{:?}", report.breaches);
//! assert_eq!(Ledger::replay(&journal)?.head_hash(), ledger.head_hash());
//! # Ok(())
//! # }
//! ```

pub mod amount;
pub mod audit;
pub mod certificate;
pub mod checkpoint;
pub mod command;
pub mod entry;
pub mod ids;
pub mod import;
pub mod ledger;
pub mod merkle;
pub mod model;
pub mod money;
pub mod program;
pub mod rejection;
pub mod report;
pub mod rollup;
pub mod settlement;
mod table;
pub mod text;
pub mod time;

pub use amount::{Amount, AmountError, Minutes, Points, Scale};
pub use audit::{audit, AuditReport, AuditRule, Auditor, Breach};
pub use command::{ActivityInput, Actor, Command, Request, RuleInput, ServiceInput, MAX_BATCH};
pub use entry::{Account, DecodeError, Entry, EntryKind, Event, Hash, Posting, Reversal, Unit};
pub use ids::FundId;
pub use ids::{
    ActivityId, ActorId, EntryId, IdError, MemberId, MerchantId, OrgUnitId, PoolId, ProgramId,
    RecordId, RequestId,
};
pub use ledger::{
    Applied, Balance, HoldView, Ledger, Lot, MemberView, MerchantView, OrgUnitView, PoolView,
    ReplayError, Totals,
};
pub use model::{
    ActivitySpec, Award, MemberKind, MerchantKind, MerchantStatus, OrgLevel, PoolKind,
    RecordStatus, Rule, ServiceRecord, TimeKind,
};
pub use money::{Fen, Rate};
pub use program::{ExpiryPolicy, ProgramSpec, StarThresholds};
pub use rejection::Rejection;
pub use settlement::{
    reconcile, reconcile_journal, statement, FundPayment, FundSpec, FundView, LineKind,
    MerchantMoneyView, OverBudget, Reconciliation, ReconciliationRow, Settlement,
    SettlementCommand, SettlementEvent, Statement, StatementLine,
};
pub use time::Timestamp;
// Issue 5: micro-wishes, volunteer events (gatherings) and merchant catalogues.
pub use ids::{GatheringId, ItemId, WishId};
pub use ledger::catalogue::{
    self, CatalogueCommand, CatalogueEvent, ItemLine, ItemView, RedeemedLine,
};
pub use ledger::gathering::{
    self, Attendance, GatheringCommand, GatheringEvent, GatheringSpec, GatheringView,
};
pub use ledger::wish::{self, WishCommand, WishEvent, WishSpec, WishStatus, WishView};
