//! Instants and the calendar arithmetic that expiry and daily caps need.
//!
//! The core never reads a clock: every instant is handed in by the caller as milliseconds
//! since the Unix epoch, and calendar questions ("which local day is this?", "when does the
//! year end?") are answered from that number and the programme's UTC offset alone.

use serde::{Deserialize, Serialize};
use std::fmt;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// The earliest instant the ledger accepts: 2000-01-01T00:00:00Z.
pub const MIN_TIMESTAMP_MS: i64 = 946_684_800_000;
/// The latest instant the ledger accepts: 2200-01-01T00:00:00Z.
pub const MAX_TIMESTAMP_MS: i64 = 7_258_118_400_000;

/// An instant, in milliseconds since 1970-01-01T00:00:00Z.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// An instant from milliseconds since the epoch. Any value is representable; the ledger
    /// refuses instants outside [`MIN_TIMESTAMP_MS`]..[`MAX_TIMESTAMP_MS`] where it matters.
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    /// Milliseconds since the epoch.
    pub const fn millis(self) -> i64 {
        self.0
    }

    /// Whether the instant lies in the range the ledger accepts.
    pub const fn in_supported_range(self) -> bool {
        self.0 >= MIN_TIMESTAMP_MS && self.0 < MAX_TIMESTAMP_MS
    }

    /// This instant plus `ms` milliseconds, saturating at the ends of the range.
    pub const fn saturating_add_millis(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }

    /// The later of two instants.
    pub fn max(self, other: Timestamp) -> Timestamp {
        Timestamp(self.0.max(other.0))
    }

    fn to_local(self, offset_minutes: i16) -> Option<OffsetDateTime> {
        let offset = UtcOffset::from_whole_seconds(i32::from(offset_minutes) * 60).ok()?;
        let utc = OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000).ok()?;
        Some(utc.to_offset(offset))
    }

    /// The local calendar day (days since 1970-01-01) at the given UTC offset.
    ///
    /// Daily caps count per local day, because a volunteer's "today" is the community's.
    pub fn local_day(self, offset_minutes: i16) -> i32 {
        let offset_ms = i64::from(offset_minutes) * 60_000;
        let local = self.0.saturating_add(offset_ms);
        // Euclidean division so that instants before 1970 still land on the right day.
        i32::try_from(local.div_euclid(86_400_000)).unwrap_or(i32::MAX)
    }

    /// The local calendar year at the given UTC offset.
    pub fn local_year(self, offset_minutes: i16) -> Option<i32> {
        self.to_local(offset_minutes).map(|t| t.year())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_local(0) {
            Some(t) => write!(
                f,
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second(),
                t.millisecond()
            ),
            None => write!(f, "{}ms", self.0),
        }
    }
}

/// Local midnight at the start of `date`, as an instant.
fn local_midnight(date: Date, offset_minutes: i16) -> Option<Timestamp> {
    let offset = UtcOffset::from_whole_seconds(i32::from(offset_minutes) * 60).ok()?;
    let local = PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_offset(offset);
    let ms = local.unix_timestamp_nanos() / 1_000_000;
    i64::try_from(ms).ok().map(Timestamp)
}

/// Local midnight on 1 January of `year`.
pub(crate) fn start_of_year(year: i32, offset_minutes: i16) -> Option<Timestamp> {
    let date = Date::from_calendar_date(year, Month::January, 1).ok()?;
    local_midnight(date, offset_minutes)
}

/// Local midnight at the start of the day `months` calendar months after `at`'s local day,
/// with the day of month clamped to the target month's length (31 Jan + 1 month = 28/29 Feb).
pub(crate) fn start_of_day_months_after(
    at: Timestamp,
    months: u16,
    offset_minutes: i16,
) -> Option<Timestamp> {
    let local = at.to_local(offset_minutes)?;
    let index =
        i64::from(local.year()) * 12 + i64::from(u8::from(local.month())) - 1 + i64::from(months);
    let year = i32::try_from(index.div_euclid(12)).ok()?;
    let month = Month::try_from(u8::try_from(index.rem_euclid(12) + 1).ok()?).ok()?;
    let day = local.day().min(time::util::days_in_month(month, year));
    let date = Date::from_calendar_date(year, month, day).ok()?;
    local_midnight(date, offset_minutes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CST: i16 = 480; // China Standard Time, UTC+8

    #[test]
    fn local_day_and_year_follow_the_offset() {
        // 2026-12-31T20:00:00Z is already 2027-01-01 04:00 in Beijing.
        let t = Timestamp::from_millis(1_798_747_200_000);
        assert_eq!(t.local_year(0), Some(2026));
        assert_eq!(t.local_year(CST), Some(2027));
        assert_eq!(t.local_day(CST), t.local_day(0) + 1);
    }

    #[test]
    fn year_start_and_month_arithmetic() {
        let start = start_of_year(2027, CST).unwrap();
        // 2027-01-01T00:00+08:00 is 2026-12-31T16:00Z.
        assert_eq!(start.to_string(), "2026-12-31T16:00:00.000Z");
        // 2026-01-31 + 1 month clamps to 2026-02-28.
        let jan31 = Timestamp::from_millis(1_769_860_800_000); // 2026-01-31T12:00Z
        let later = start_of_day_months_after(jan31, 1, 0).unwrap();
        assert_eq!(later.to_string(), "2026-02-28T00:00:00.000Z");
    }

    #[test]
    fn display_is_rfc3339() {
        assert_eq!(
            Timestamp::from_millis(MIN_TIMESTAMP_MS).to_string(),
            "2000-01-01T00:00:00.000Z"
        );
    }
}
