//! Money: community funds pay merchants in yuan (CNY), counted in fen.
//!
//! Points are the programme's own unit; money is the renminbi the community funds pay out
//! for them. A fund's budget and every payment is a whole number of fen ([`Fen`]); the value
//! of a single redemption at a merchant's reimbursement [`Rate`] is exact (a decimal number
//! of fen, possibly fractional) and is rounded once per settlement statement, half to even,
//! with the residue carried to the next statement so that no fraction of a fen is lost.

use crate::amount::{Points, Scale};
use crate::rejection::Rejection;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The largest amount of money one setting may carry: one hundred billion yuan in fen.
pub const MAX_FEN: i64 = 10_000_000_000_000;

/// The highest reimbursement rate: 10,000 yuan per point.
pub const MAX_RATE_YUAN: i64 = 10_000;

/// The most decimal places a rate may have (yuan per point).
pub const MAX_RATE_PLACES: u32 = 6;

/// An amount of renminbi in fen (1 yuan = 100 fen). Signed: a deferred balance can be a
/// credit when refunds outrun redemptions.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Fen(i64);

impl Fen {
    /// Nothing.
    pub const ZERO: Fen = Fen(0);

    /// An amount in fen.
    pub const fn new(fen: i64) -> Self {
        Self(fen)
    }

    /// The number of fen.
    pub const fn get(self) -> i64 {
        self.0
    }

    /// Parses yuan as a caller sends them (`"1234.50"`): not negative, at most two decimal
    /// places, at most [`MAX_FEN`].
    pub fn from_yuan(yuan: Decimal) -> Result<Fen, Rejection> {
        if yuan < Decimal::ZERO {
            return Err(Rejection::InvalidSetting);
        }
        if yuan.normalize().scale() > 2 {
            return Err(Rejection::AmountTooPrecise);
        }
        let fen = yuan
            .checked_mul(Decimal::ONE_HUNDRED)
            .ok_or(Rejection::AmountOverflow)?;
        let fen: i64 = fen
            .trunc()
            .try_into()
            .map_err(|_| Rejection::AmountOverflow)?;
        if fen > MAX_FEN {
            return Err(Rejection::AmountOverflow);
        }
        Ok(Fen(fen))
    }

    /// The amount in yuan, with exactly two decimal places.
    pub fn to_yuan(self) -> Decimal {
        Decimal::new(self.0, 2)
    }

    /// Checked addition.
    pub fn checked_add(self, other: Fen) -> Option<Fen> {
        self.0.checked_add(other.0).map(Fen)
    }

    /// Checked subtraction.
    pub fn checked_sub(self, other: Fen) -> Option<Fen> {
        self.0.checked_sub(other.0).map(Fen)
    }

    /// The amount as an exact decimal number of fen.
    pub fn to_decimal(self) -> Decimal {
        Decimal::from(self.0)
    }
}

impl fmt::Display for Fen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_yuan())
    }
}

/// A merchant's reimbursement rate: yuan paid per point redeemed there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rate(#[serde(with = "rust_decimal::serde::str")] Decimal);

impl Rate {
    /// No reimbursement (the community supermarket, or a merchant with no rate yet).
    pub const ZERO: Rate = Rate(Decimal::ZERO);

    /// A rate in yuan per point: not negative, at most [`MAX_RATE_YUAN`], at most
    /// [`MAX_RATE_PLACES`] decimal places.
    pub fn new(yuan_per_point: Decimal) -> Result<Rate, Rejection> {
        let value = yuan_per_point.normalize();
        if value < Decimal::ZERO
            || value > Decimal::from(MAX_RATE_YUAN)
            || value.scale() > MAX_RATE_PLACES
        {
            return Err(Rejection::InvalidSetting);
        }
        Ok(Rate(value))
    }

    /// Yuan per point.
    pub fn yuan_per_point(self) -> Decimal {
        self.0
    }

    /// The exact value in fen of `points` (signed) at this rate, for a programme whose
    /// points have `scale` decimal places. `None` only if the result does not fit.
    pub fn value_fen(self, points: Points, scale: Scale) -> Option<Decimal> {
        let points = Decimal::try_new(points.minor(), u32::from(scale.places())).ok()?;
        points
            .checked_mul(self.0)?
            .checked_mul(Decimal::ONE_HUNDRED)
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How statements round: half to even, to the fen.
pub const ROUNDING: &str = "half-even to the fen; the residue is carried to the next period";

/// Rounds an exact number of fen half to even. Returns the whole fen and the residue
/// (exact minus rounded, within half a fen either way). `None` if it does not fit.
pub fn round_fen(exact: Decimal) -> Option<(Fen, Decimal)> {
    let rounded = exact.round_dp_with_strategy(0, RoundingStrategy::MidpointNearestEven);
    let fen: i64 = rounded.try_into().ok()?;
    Some((Fen(fen), exact.checked_sub(rounded)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    #[test]
    fn fen_parses_two_places_only() {
        assert_eq!(Fen::from_yuan(d("12.5")), Ok(Fen::new(1250)));
        assert_eq!(Fen::from_yuan(d("12.500")), Ok(Fen::new(1250)));
        assert_eq!(Fen::from_yuan(d("0.001")), Err(Rejection::AmountTooPrecise));
        assert_eq!(Fen::from_yuan(d("-1")), Err(Rejection::InvalidSetting));
        assert_eq!(Fen::new(1205).to_yuan().to_string(), "12.05");
    }

    #[test]
    fn rounding_is_half_even_and_keeps_the_residue() {
        assert_eq!(round_fen(d("2.5")), Some((Fen::new(2), d("0.5"))));
        assert_eq!(round_fen(d("3.5")), Some((Fen::new(4), d("-0.5"))));
        assert_eq!(round_fen(d("-2.5")), Some((Fen::new(-2), d("-0.5"))));
        assert_eq!(round_fen(d("1.2345")), Some((Fen::new(1), d("0.2345"))));
    }

    #[test]
    fn rate_values_points_exactly() {
        let rate = Rate::new(d("0.015")).unwrap();
        let two_places = Scale::new(2).unwrap();
        // 3.33 points at 0.015 yuan = 0.04995 yuan = 4.995 fen.
        assert_eq!(
            rate.value_fen(Points::from_minor(333), two_places),
            Some(d("4.995"))
        );
        assert_eq!(Rate::new(d("-0.01")), Err(Rejection::InvalidSetting));
        assert_eq!(Rate::new(d("0.0000001")), Err(Rejection::InvalidSetting));
    }
}
