//! What callers ask the ledger to do.
//!
//! A [`Request`] is a command plus who asks and the caller's idempotency key. Commands carry
//! caller-facing values (decimal [`Amount`]s, raw durations); the ledger validates them into
//! an [`Event`](crate::entry::Event) whose amounts are exact minor units.

use crate::amount::Amount;
use crate::ids::{
    ActivityId, ActorId, EntryId, MemberId, MerchantId, OrgUnitId, PoolId, RecordId, RequestId,
};
use crate::model::{MemberKind, MerchantKind, MerchantStatus, OrgLevel, PoolKind, TimeKind};
use crate::time::Timestamp;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// Who is acting. The ledger enforces the domain's permission rules against it: recorders act
/// only inside their org unit's subtree and merchants only on their own account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Actor {
    /// The server itself (the expiry sweep).
    System,
    /// A programme administrator: may do anything.
    Admin {
        /// The key or account acting.
        id: ActorId,
    },
    /// Community-centre staff scoped to an org unit and everything below it.
    Recorder {
        /// The key or account acting.
        id: ActorId,
        /// The root of the subtree it may act in.
        org_unit: OrgUnitId,
    },
    /// A merchant's point-of-sale system, scoped to that merchant.
    Merchant {
        /// The key or account acting.
        id: ActorId,
        /// The merchant it acts for.
        merchant: MerchantId,
    },
}

/// A command with its idempotency key and actor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The caller's idempotency key.
    pub request_id: RequestId,
    /// Who asks.
    pub actor: Actor,
    /// What is asked.
    pub command: Command,
}

/// One volunteer's service, as a recorder enters it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInput {
    /// Who served.
    pub member: MemberId,
    /// Under which activity.
    pub activity: ActivityId,
    /// Where the service took place.
    pub org_unit: OrgUnitId,
    /// When it started.
    pub started_at: Timestamp,
    /// How long, in whole minutes (1 to 1,440).
    pub minutes: u32,
}

/// How an activity awards points, as a recorder defines it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuleInput {
    /// Points per hour of service.
    PerHour(Amount),
    /// Points per occasion.
    PerOccasion(Amount),
}

/// An activity, as a recorder defines it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityInput {
    /// The new activity's id.
    pub id: ActivityId,
    /// The org unit it belongs to.
    pub org_unit: OrgUnitId,
    /// Display name.
    pub name: String,
    /// Category.
    pub category: String,
    /// Points rule.
    pub rule: RuleInput,
    /// Difficulty coefficient, above 0 and at most 100, with at most four decimal places.
    #[serde(with = "rust_decimal::serde::str")]
    pub coefficient: Decimal,
    /// Minutes counted per occasion at most.
    pub max_minutes_per_occasion: Option<u32>,
    /// Points one member may earn from this activity per local day at most.
    pub daily_points_cap: Option<Amount>,
    /// Credit or honour time.
    pub time_kind: TimeKind,
}

/// The most items one list in a command may carry (records in a batch, ids to approve).
pub const MAX_BATCH: usize = 10_000;

/// Everything the ledger can be asked to do. Each command gives exactly one journal entry
/// or one [`Rejection`](crate::Rejection).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Add an org unit under `parent` (or a root when `parent` is `None`; admins only).
    CreateOrgUnit {
        /// New unit's id.
        id: OrgUnitId,
        /// Parent unit.
        parent: Option<OrgUnitId>,
        /// Display name.
        name: String,
        /// Level in the tree.
        level: OrgLevel,
    },
    /// Enrol a volunteer in a home org unit.
    EnrolMember {
        /// New member's id.
        id: MemberId,
        /// Home community (or estate).
        home: OrgUnitId,
        /// Resident or party member.
        kind: MemberKind,
        /// Whether the member may serve outside the home subtree (双报到).
        dual_registration: bool,
        /// The code on the member's card, if any; unique in the programme.
        card_code: Option<String>,
    },
    /// Change a member's kind, dual registration or card code.
    UpdateMember {
        /// The member.
        id: MemberId,
        /// Resident or party member.
        kind: MemberKind,
        /// Dual registration.
        dual_registration: bool,
        /// New card code, or `None` to remove it.
        card_code: Option<String>,
    },
    /// Move a member to another home org unit.
    MoveMember {
        /// The member.
        id: MemberId,
        /// The new home.
        home: OrgUnitId,
    },
    /// Register a partner merchant or community supermarket.
    RegisterMerchant {
        /// New merchant's id.
        id: MerchantId,
        /// Where it is.
        org_unit: OrgUnitId,
        /// Display name.
        name: String,
        /// Partner or community supermarket.
        kind: MerchantKind,
    },
    /// Suspend or reactivate a merchant.
    SetMerchantStatus {
        /// The merchant.
        id: MerchantId,
        /// New status.
        status: MerchantStatus,
    },
    /// Define an activity and its points rule.
    DefineActivity(ActivityInput),
    /// Create a love-bank or time-bank pool.
    CreatePool {
        /// New pool's id.
        id: PoolId,
        /// The org unit it serves.
        org_unit: OrgUnitId,
        /// Display name.
        name: String,
        /// Love bank or time bank.
        kind: PoolKind,
    },
    /// Record service for one volunteer or a whole event's list; records start pending.
    RecordService {
        /// The records, 1 to [`MAX_BATCH`].
        records: Vec<ServiceInput>,
    },
    /// Approve pending records: points accrue by each activity's rule and hours are added.
    ApproveService {
        /// Records to approve, 1 to [`MAX_BATCH`], no repeats.
        records: Vec<RecordId>,
    },
    /// Reject pending records; nothing accrues.
    RejectService {
        /// Records to reject, 1 to [`MAX_BATCH`], no repeats.
        records: Vec<RecordId>,
        /// Why.
        reason: String,
    },
    /// Spend points at a merchant in one step.
    Redeem {
        /// Who spends.
        member: MemberId,
        /// Where.
        merchant: MerchantId,
        /// How much.
        amount: Amount,
    },
    /// Reserve points for a merchant until captured, released, or `ttl_ms` has passed.
    PlaceHold {
        /// Whose points.
        member: MemberId,
        /// For which merchant.
        merchant: MerchantId,
        /// How much.
        amount: Amount,
        /// Time to live in milliseconds, up to the programme's maximum.
        ttl_ms: u64,
    },
    /// Take all or part of an open hold; the rest is released.
    CaptureHold {
        /// The hold (its `HoldPlaced` entry id).
        hold: EntryId,
        /// How much, or `None` for the whole hold.
        amount: Option<Amount>,
    },
    /// Release an open hold without taking anything.
    ReleaseHold {
        /// The hold (its `HoldPlaced` entry id).
        hold: EntryId,
    },
    /// Return all or part of a redemption or capture to the member.
    Refund {
        /// The `Redeemed` or `HoldCaptured` entry.
        entry: EntryId,
        /// How much.
        amount: Amount,
    },
    /// Undo an entry with a new entry that names it. An entry is reversed at most once.
    Reverse {
        /// The entry to undo: an approval, redemption, capture, transfer, donation or grant.
        entry: EntryId,
        /// Why.
        reason: String,
    },
    /// Move points from one member to another.
    Transfer {
        /// Who gives.
        from: MemberId,
        /// Who receives.
        to: MemberId,
        /// How much.
        amount: Amount,
    },
    /// Donate a member's points into a pool.
    Donate {
        /// Who donates.
        member: MemberId,
        /// Into which pool.
        pool: PoolId,
        /// How much.
        amount: Amount,
    },
    /// Grant points from a pool to a member.
    Grant {
        /// From which pool.
        pool: PoolId,
        /// To whom.
        member: MemberId,
        /// How much.
        amount: Amount,
    },
    /// Move a member's expired lots to the expiry sink.
    Expire {
        /// Whose points.
        member: MemberId,
    },
    /// A micro-wish step: post, claim, fulfil, confirm, cancel or lapse (issue 5).
    Wish(crate::wish::WishCommand),
    /// A volunteer event (gathering) step: create, check in, check out, approve (issue 5).
    Gathering(crate::gathering::GatheringCommand),
    /// A merchant catalogue step: list, restock, reprice, redeem items (issue 5).
    Catalogue(crate::catalogue::CatalogueCommand),
    /// The money side: funds, rates, the over-budget setting, closing periods (issue 6).
    Settlement(crate::settlement::SettlementCommand),
}

impl Command {
    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Command::CreateOrgUnit { .. } => "create_org_unit",
            Command::EnrolMember { .. } => "enrol_member",
            Command::UpdateMember { .. } => "update_member",
            Command::MoveMember { .. } => "move_member",
            Command::RegisterMerchant { .. } => "register_merchant",
            Command::SetMerchantStatus { .. } => "set_merchant_status",
            Command::DefineActivity(_) => "define_activity",
            Command::CreatePool { .. } => "create_pool",
            Command::RecordService { .. } => "record_service",
            Command::ApproveService { .. } => "approve_service",
            Command::RejectService { .. } => "reject_service",
            Command::Redeem { .. } => "redeem",
            Command::PlaceHold { .. } => "place_hold",
            Command::CaptureHold { .. } => "capture_hold",
            Command::ReleaseHold { .. } => "release_hold",
            Command::Refund { .. } => "refund",
            Command::Reverse { .. } => "reverse",
            Command::Transfer { .. } => "transfer",
            Command::Donate { .. } => "donate",
            Command::Grant { .. } => "grant",
            Command::Expire { .. } => "expire",
            Command::Wish(c) => c.name(),
            Command::Gathering(c) => c.name(),
            Command::Catalogue(c) => c.name(),
            Command::Settlement(command) => command.name(),
        }
    }
}
