//! The programme: one points scheme with its unit, scale, expiry policy and limits.

use crate::amount::{Points, Scale};
use crate::ids::ProgramId;
use crate::rejection::Rejection;
use crate::time::{start_of_day_months_after, start_of_year, Timestamp};
use serde::{Deserialize, Serialize};

/// When points expire.
///
/// The expiry of every lot is fixed when the lot is created and written into its entry, so a
/// later change of policy never alters points already earned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExpiryPolicy {
    /// Points never expire.
    Never,
    /// Points earned in a calendar year expire at local midnight on 1 January of the year
    /// `years_after + 1` years later (`years_after = 0`: at the end of the year they were
    /// earned in).
    EndOfYear {
        /// Whole years of grace after the year of earning.
        years_after: u8,
    },
    /// Points expire at local midnight at the start of the day `months` calendar months
    /// after the day they were earned.
    MonthsAfterEarning {
        /// Months of validity, 1 to 1,200.
        months: u16,
    },
}

impl ExpiryPolicy {
    /// The instant at which points earned at `earned_at` expire, in a programme whose local
    /// time is `utc_offset_minutes` ahead of UTC. `Timestamp::from_millis(i64::MAX)` means
    /// never.
    pub fn expires_at(&self, earned_at: Timestamp, utc_offset_minutes: i16) -> Timestamp {
        let never = Timestamp::from_millis(i64::MAX);
        match *self {
            ExpiryPolicy::Never => never,
            ExpiryPolicy::EndOfYear { years_after } => earned_at
                .local_year(utc_offset_minutes)
                .and_then(|year| {
                    let target = year.checked_add(1 + i32::from(years_after))?;
                    start_of_year(target, utc_offset_minutes)
                })
                .unwrap_or(never),
            ExpiryPolicy::MonthsAfterEarning { months } => {
                start_of_day_months_after(earned_at, months, utc_offset_minutes).unwrap_or(never)
            }
        }
    }

    fn is_valid(&self) -> bool {
        match *self {
            ExpiryPolicy::Never => true,
            ExpiryPolicy::EndOfYear { years_after } => years_after <= 100,
            ExpiryPolicy::MonthsAfterEarning { months } => (1..=1200).contains(&months),
        }
    }
}

/// Cumulative service hours at which a member reaches each star level.
///
/// The default follows the national volunteer service record rules: one star at 100 hours,
/// then 300, 600, 1,000 and 1,500 hours for five stars.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<u32>", into = "Vec<u32>")]
pub struct StarThresholds(Vec<u32>);

impl StarThresholds {
    /// The most star levels a programme may define.
    pub const MAX_LEVELS: usize = 10;

    /// Thresholds in whole hours; they must be strictly increasing, positive, and at most
    /// [`Self::MAX_LEVELS`] of them.
    pub fn new(hours: Vec<u32>) -> Result<Self, Rejection> {
        let increasing = hours.windows(2).all(|w| w[0] < w[1]);
        if hours.len() > Self::MAX_LEVELS || !increasing || hours.first() == Some(&0) {
            return Err(Rejection::InvalidSetting);
        }
        Ok(Self(hours))
    }

    /// The thresholds in hours.
    pub fn hours(&self) -> &[u32] {
        &self.0
    }

    /// The star level (0 = none yet) reached with `total_minutes` of service.
    pub fn level(&self, total_minutes: i64) -> u8 {
        let hours = total_minutes / 60;
        let reached = self
            .0
            .iter()
            .take_while(|&&t| i64::from(t) <= hours)
            .count();
        u8::try_from(reached).unwrap_or(u8::MAX)
    }
}

impl Default for StarThresholds {
    fn default() -> Self {
        Self(vec![100, 300, 600, 1_000, 1_500])
    }
}

impl TryFrom<Vec<u32>> for StarThresholds {
    type Error = Rejection;
    fn try_from(hours: Vec<u32>) -> Result<Self, Rejection> {
        Self::new(hours)
    }
}

impl From<StarThresholds> for Vec<u32> {
    fn from(thresholds: StarThresholds) -> Vec<u32> {
        thresholds.0
    }
}

/// The definition of a programme, fixed in the first entry of its journal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramSpec {
    id: ProgramId,
    name: String,
    unit_name: String,
    scale: Scale,
    expiry: ExpiryPolicy,
    utc_offset_minutes: i16,
    stars: StarThresholds,
    max_hold_ttl_ms: u64,
    donation_cap_per_year: Option<Points>,
    grant_cap: Option<Points>,
}

impl ProgramSpec {
    /// The longest hold a programme allows by default: one day.
    pub const DEFAULT_MAX_HOLD_TTL_MS: u64 = 86_400_000;

    /// A programme with points that never expire, China Standard Time (UTC+8), the default
    /// star thresholds and no love-bank caps. Adjust with the `with_*` methods.
    pub fn new(
        id: ProgramId,
        name: impl Into<String>,
        unit_name: impl Into<String>,
        scale: Scale,
    ) -> Self {
        Self {
            id,
            name: name.into(),
            unit_name: unit_name.into(),
            scale,
            expiry: ExpiryPolicy::Never,
            utc_offset_minutes: 480,
            stars: StarThresholds::default(),
            max_hold_ttl_ms: Self::DEFAULT_MAX_HOLD_TTL_MS,
            donation_cap_per_year: None,
            grant_cap: None,
        }
    }

    /// Sets the expiry policy.
    pub fn with_expiry(mut self, expiry: ExpiryPolicy) -> Self {
        self.expiry = expiry;
        self
    }

    /// Sets the programme's local time as an offset from UTC in minutes (-720 to 840).
    pub fn with_utc_offset_minutes(mut self, minutes: i16) -> Self {
        self.utc_offset_minutes = minutes;
        self
    }

    /// Sets the star thresholds.
    pub fn with_star_thresholds(mut self, stars: StarThresholds) -> Self {
        self.stars = stars;
        self
    }

    /// Sets the longest hold time-to-live in milliseconds.
    pub fn with_max_hold_ttl_ms(mut self, ms: u64) -> Self {
        self.max_hold_ttl_ms = ms;
        self
    }

    /// Sets the love-bank caps: the most one donor may donate per local calendar year, and
    /// the most one grant may give. `None` means no cap.
    pub fn with_love_bank_caps(
        mut self,
        per_donor_per_year: Option<Points>,
        per_grant: Option<Points>,
    ) -> Self {
        self.donation_cap_per_year = per_donor_per_year;
        self.grant_cap = per_grant;
        self
    }

    /// The programme's id.
    pub fn id(&self) -> ProgramId {
        self.id
    }
    /// The programme's display name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// What the unit is called ("points", "积分", "hours of care").
    pub fn unit_name(&self) -> &str {
        &self.unit_name
    }
    /// Decimal places of the unit.
    pub fn scale(&self) -> Scale {
        self.scale
    }
    /// The expiry policy.
    pub fn expiry(&self) -> ExpiryPolicy {
        self.expiry
    }
    /// Local time as minutes ahead of UTC.
    pub fn utc_offset_minutes(&self) -> i16 {
        self.utc_offset_minutes
    }
    /// Star thresholds.
    pub fn stars(&self) -> &StarThresholds {
        &self.stars
    }
    /// The longest hold time-to-live in milliseconds.
    pub fn max_hold_ttl_ms(&self) -> u64 {
        self.max_hold_ttl_ms
    }
    /// The most one donor may donate per local calendar year.
    pub fn donation_cap_per_year(&self) -> Option<Points> {
        self.donation_cap_per_year
    }
    /// The most one grant may give.
    pub fn grant_cap(&self) -> Option<Points> {
        self.grant_cap
    }

    /// Checks every setting; the ledger refuses to open a programme that fails.
    pub fn validate(&self) -> Result<(), Rejection> {
        crate::text::check_name(&self.name)?;
        crate::text::check_name(&self.unit_name)?;
        let caps_ok = [self.donation_cap_per_year, self.grant_cap]
            .iter()
            .flatten()
            .all(|cap| cap.is_positive() && cap.minor() <= crate::amount::MAX_AMOUNT_MINOR);
        let settings_ok = self.expiry.is_valid()
            && (-720..=840).contains(&self.utc_offset_minutes)
            && self.max_hold_ttl_ms > 0
            && self.max_hold_ttl_ms <= 30 * 86_400_000
            && caps_ok
            && StarThresholds::new(self.stars.0.clone()).is_ok();
        if settings_ok {
            Ok(())
        } else {
            Err(Rejection::InvalidSetting)
        }
    }
}
