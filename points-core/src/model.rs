//! The programme's reference data: org units, members, merchants, activities and pools.

use crate::amount::{Minutes, Points};
use crate::ids::{ActivityId, MemberId, OrgUnitId, RecordId};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// The level of an org unit in the tree. Informational: the tree may be of any depth and
/// levels are not enforced, because schemes differ in how they divide a city.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrgLevel {
    /// 区: a district.
    District,
    /// 街道: a street office.
    Street,
    /// 社区: a community.
    Community,
    /// 小区: an estate (housing compound).
    Estate,
    /// Anything else: a county, a town, a partner organisation's branch.
    Other,
}

/// What kind of member a volunteer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MemberKind {
    /// A resident of the community.
    Resident,
    /// A party member, often serving under dual registration (双报到).
    PartyMember,
}

/// What kind of merchant takes points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MerchantKind {
    /// A partner merchant in the area (合作商家).
    Partner,
    /// The community's own shop (党建超市 / 爱心超市).
    CommunitySupermarket,
}

/// Whether a merchant may take points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MerchantStatus {
    /// Takes points.
    Active,
    /// Takes no points until reactivated; refunds and releases still work.
    Suspended,
}

/// What a pool is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PoolKind {
    /// 爱心银行: donated points granted to members in need.
    LoveBank,
    /// 时间银行: points banked as help given, drawn as help received.
    TimeBank,
}

/// How an activity's hours are certified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TimeKind {
    /// Checked in and out on the spot (credit time).
    Credit,
    /// Certified afterwards by a recorder (honour time).
    Honour,
}

/// How an activity turns service into points, before the difficulty coefficient.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Rule {
    /// Points per hour of service, pro rata by the minute.
    PerHour(Points),
    /// A fixed number of points per occasion, whatever its length.
    PerOccasion(Points),
}

/// The coefficient 1.0 in basis points.
pub const COEFFICIENT_ONE_BP: u32 = 10_000;
/// The largest coefficient, 100.0, in basis points.
pub const MAX_COEFFICIENT_BP: u32 = 1_000_000;
/// The longest single service record: 24 hours.
pub const MAX_SERVICE_MINUTES: u32 = 24 * 60;

/// A validated activity, as stored in its `ActivityDefined` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivitySpec {
    /// The activity's id.
    pub id: ActivityId,
    /// The org unit it belongs to; it can be served there and anywhere below.
    pub org_unit: OrgUnitId,
    /// Display name.
    pub name: String,
    /// Category chosen by the community (patrol, elder care, cleaning, clinic, …).
    pub category: String,
    /// Points rule.
    pub rule: Rule,
    /// Difficulty coefficient in basis points (10,000 = 1.0).
    pub coefficient_bp: u32,
    /// Minutes counted per occasion at most; longer service is clamped.
    pub max_minutes_per_occasion: Option<u32>,
    /// Points one member may earn from this activity per local day at most.
    pub daily_points_cap: Option<Points>,
    /// Credit time or honour time.
    pub time_kind: TimeKind,
}

impl ActivitySpec {
    /// The minutes that count for a record of `minutes`, after the per-occasion cap.
    pub fn counted_minutes(&self, minutes: u32) -> u32 {
        self.max_minutes_per_occasion
            .map_or(minutes, |cap| minutes.min(cap))
    }

    /// Points for one occasion of `counted_minutes`, rounded half to even to the
    /// programme's minor unit. `None` if the result does not fit.
    pub fn points_for(&self, counted_minutes: u32) -> Option<Points> {
        let coefficient = i128::from(self.coefficient_bp);
        let (numerator, denominator) = match self.rule {
            Rule::PerHour(per_hour) => (
                i128::from(per_hour.minor()) * i128::from(counted_minutes) * coefficient,
                60 * i128::from(COEFFICIENT_ONE_BP),
            ),
            Rule::PerOccasion(points) => (
                i128::from(points.minor()) * coefficient,
                i128::from(COEFFICIENT_ONE_BP),
            ),
        };
        let quotient = numerator / denominator;
        let remainder = numerator % denominator;
        let rounded = match (2 * remainder).cmp(&denominator) {
            std::cmp::Ordering::Less => quotient,
            std::cmp::Ordering::Greater => quotient + 1,
            std::cmp::Ordering::Equal => quotient + (quotient & 1),
        };
        i64::try_from(rounded).ok().map(Points::from_minor)
    }
}

/// Where a service record stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RecordStatus {
    /// Recorded, awaiting approval.
    Pending,
    /// Approved: points and hours accrued.
    Approved,
    /// Rejected: nothing accrued.
    Rejected,
    /// Approved, then reversed.
    Reversed,
}

/// One volunteer's service as recorded, with the id the ledger gave it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// The record's id, derived from its entry and position.
    pub id: RecordId,
    /// Who served.
    pub member: MemberId,
    /// Under which activity.
    pub activity: ActivityId,
    /// Where.
    pub org_unit: OrgUnitId,
    /// When the service started.
    pub started_at: Timestamp,
    /// How long, in minutes, as recorded (before any cap).
    pub minutes: u32,
}

/// The points and hours one approved record brings, fixed at approval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Award {
    /// The record approved.
    pub record: RecordId,
    /// Who earns.
    pub member: MemberId,
    /// Points accrued.
    pub points: Points,
    /// Minutes of service counted.
    pub minutes: Minutes,
    /// Credit or honour time.
    pub time_kind: TimeKind,
    /// When the points expire.
    pub expires_at: Timestamp,
}
