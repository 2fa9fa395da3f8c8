//! Exact quantities: points in minor units, the decimal amounts callers send, and minutes.
//!
//! Callers speak decimals (`"12.5"` points); the ledger counts integers of the programme's
//! smallest unit (with two decimal places, `12.5` is `1250`). Converting is the one place
//! where precision and range are checked, so nothing past it can round or overflow silently.
//! There are no floats anywhere in this crate.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The most decimal places a programme may use.
pub const MAX_SCALE: u8 = 6;

/// How many decimal places a programme's points have (0 to [`MAX_SCALE`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Scale(u8);

impl Scale {
    /// Whole points only.
    pub const WHOLE: Scale = Scale(0);

    /// A scale of `places` decimal places, if `places <= MAX_SCALE`.
    pub fn new(places: u8) -> Option<Self> {
        (places <= MAX_SCALE).then_some(Self(places))
    }

    /// The number of decimal places.
    pub const fn places(self) -> u8 {
        self.0
    }

    /// Minor units in one whole point (10 to the power of the scale).
    pub const fn unit(self) -> i64 {
        10_i64.pow(self.0 as u32)
    }
}

impl TryFrom<u8> for Scale {
    type Error = String;
    fn try_from(places: u8) -> Result<Self, String> {
        Scale::new(places).ok_or_else(|| format!("scale {places} is above {MAX_SCALE}"))
    }
}

impl From<Scale> for u8 {
    fn from(scale: Scale) -> u8 {
        scale.0
    }
}

/// A signed quantity of points in the programme's minor units.
///
/// Balances, postings and amounts inside entries are all `Points`. Arithmetic is checked:
/// every operation that could overflow returns `Option`.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Points(i64);

impl Points {
    /// No points.
    pub const ZERO: Points = Points(0);

    /// Points from a count of minor units.
    pub const fn from_minor(minor: i64) -> Self {
        Self(minor)
    }

    /// The count of minor units.
    pub const fn minor(self) -> i64 {
        self.0
    }

    /// Whether this is more than zero.
    pub const fn is_positive(self) -> bool {
        self.0 > 0
    }

    /// Sum, or `None` on overflow.
    pub fn checked_add(self, other: Points) -> Option<Points> {
        self.0.checked_add(other.0).map(Points)
    }

    /// Difference, or `None` on overflow.
    pub fn checked_sub(self, other: Points) -> Option<Points> {
        self.0.checked_sub(other.0).map(Points)
    }

    /// Negation, or `None` for the one value that has none.
    pub fn checked_neg(self) -> Option<Points> {
        self.0.checked_neg().map(Points)
    }

    /// The smaller of two quantities.
    pub fn min(self, other: Points) -> Points {
        Points(self.0.min(other.0))
    }

    /// The exact decimal value at `scale`.
    pub fn to_decimal(self, scale: Scale) -> Decimal {
        Decimal::new(self.0, u32::from(scale.0))
    }
}

/// Why a decimal amount cannot be taken as points.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Zero or below where a positive amount is needed.
    #[error("amount must be greater than zero")]
    NotPositive,
    /// More decimal places than the programme's scale.
    #[error("amount has more decimal places than the programme allows")]
    TooPrecise,
    /// Too large to count in minor units.
    #[error("amount is too large")]
    Overflow,
}

/// A decimal amount as a caller sends it, before the programme's scale is applied.
///
/// Two amounts that are numerically equal (`1.5` and `1.50`) are the same amount: equality,
/// hashing and the canonical encoding all use the normalised value, so an idempotent retry
/// that writes trailing zeros differently is still recognised as the same request.
#[derive(Clone, Copy)]
pub struct Amount(Decimal);

impl Amount {
    /// Wraps a decimal.
    pub fn new(value: Decimal) -> Self {
        Self(value.normalize())
    }

    /// The decimal value.
    pub fn value(self) -> Decimal {
        self.0
    }

    /// Converts to positive points at `scale`, refusing zero, negatives, excess precision
    /// and values that do not fit.
    pub fn to_points(self, scale: Scale) -> Result<Points, AmountError> {
        let value = self.0;
        if value <= Decimal::ZERO {
            return Err(AmountError::NotPositive);
        }
        if value.scale() > u32::from(scale.places()) {
            return Err(AmountError::TooPrecise);
        }
        // Integer arithmetic on the mantissa: value = mantissa / 10^places_in, so in minor
        // units it is mantissa * 10^(scale - places_in), exact after the check above.
        let shift = u32::from(scale.places()) - value.scale();
        let minor = value
            .mantissa()
            .checked_mul(10_i128.pow(shift))
            .ok_or(AmountError::Overflow)?;
        let minor = i64::try_from(minor).map_err(|_| AmountError::Overflow)?;
        if minor > MAX_AMOUNT_MINOR {
            return Err(AmountError::Overflow);
        }
        Ok(Points(minor))
    }
}

/// The largest single amount, in minor units, that a command may carry.
///
/// Far above any real basket or award, and far enough below `i64::MAX` that sums of many
/// amounts are still checked rather than assumed.
pub const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000_000;

impl From<Decimal> for Amount {
    fn from(value: Decimal) -> Self {
        Self::new(value)
    }
}

impl FromStr for Amount {
    type Err = rust_decimal::Error;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Decimal::from_str_exact(text).map(Self::new)
    }
}

impl PartialEq for Amount {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl Eq for Amount {}

impl fmt::Debug for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Amount({})", self.0)
    }
}

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Serialize for Amount {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.collect_str(&self.0)
        } else {
            // Sixteen bytes of the normalised value: canonical and allocation-free, which the
            // idempotency fingerprint relies on.
            serializer.serialize_bytes(&self.0.serialize())
        }
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            Amount::from_str(&text).map_err(D::Error::custom)
        } else {
            let bytes = <[u8; 16]>::deserialize(deserializer)?;
            Ok(Amount::new(Decimal::deserialize(bytes)))
        }
    }
}

/// A duration of volunteer service in whole minutes.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Minutes(i64);

impl Minutes {
    /// No time.
    pub const ZERO: Minutes = Minutes(0);

    /// A count of minutes.
    pub const fn new(minutes: i64) -> Self {
        Self(minutes)
    }

    /// The count of minutes.
    pub const fn get(self) -> i64 {
        self.0
    }

    /// Sum, or `None` on overflow.
    pub fn checked_add(self, other: Minutes) -> Option<Minutes> {
        self.0.checked_add(other.0).map(Minutes)
    }

    /// Difference, or `None` on overflow.
    pub fn checked_sub(self, other: Minutes) -> Option<Minutes> {
        self.0.checked_sub(other.0).map(Minutes)
    }

    /// Whole hours, rounded down.
    pub const fn whole_hours(self) -> i64 {
        self.0 / 60
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amount(text: &str) -> Amount {
        text.parse().unwrap()
    }

    #[test]
    fn conversion_checks_sign_precision_and_range() {
        let two = Scale::new(2).unwrap();
        assert_eq!(amount("12.5").to_points(two), Ok(Points::from_minor(1250)));
        assert_eq!(amount("12.50").to_points(two), Ok(Points::from_minor(1250)));
        assert_eq!(amount("0").to_points(two), Err(AmountError::NotPositive));
        assert_eq!(amount("-1").to_points(two), Err(AmountError::NotPositive));
        assert_eq!(amount("0.001").to_points(two), Err(AmountError::TooPrecise));
        assert_eq!(
            amount("79228162514264337593543950335").to_points(two),
            Err(AmountError::Overflow)
        );
        assert_eq!(
            amount("10000000000000.01").to_points(two),
            Err(AmountError::Overflow)
        );
        assert_eq!(
            amount("7").to_points(Scale::WHOLE),
            Ok(Points::from_minor(7))
        );
    }

    #[test]
    fn equal_values_are_equal_amounts_in_every_encoding() {
        assert_eq!(amount("1.5"), amount("1.500"));
        let a = postcard::to_allocvec(&amount("1.5")).unwrap();
        let b = postcard::to_allocvec(&amount("1.50")).unwrap();
        assert_eq!(a, b);
        let json = serde_json::to_string(&amount("1.50")).unwrap();
        assert_eq!(json, "\"1.5\"");
        let back: Amount = serde_json::from_str(&json).unwrap();
        assert_eq!(back, amount("1.5"));
    }

    #[test]
    fn points_arithmetic_is_checked() {
        assert_eq!(
            Points::from_minor(i64::MAX).checked_add(Points::from_minor(1)),
            None
        );
        assert_eq!(Points::from_minor(i64::MIN).checked_neg(), None);
        assert_eq!(
            Points::from_minor(1250)
                .to_decimal(Scale::new(2).unwrap())
                .to_string(),
            "12.50"
        );
    }
}
