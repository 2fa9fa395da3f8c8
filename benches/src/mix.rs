//! The operation mix: which write operations a run sends, by weight.

use serde::Serialize;
use std::fmt;
use std::str::FromStr;

/// One kind of write operation the load tool sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    /// PointOfSale.Redeem.
    Redeem,
    /// PointOfSale.Hold.
    Hold,
    /// PointOfSale.Capture of an open hold (a hold when the worker has none open).
    Capture,
    /// PointOfSale.Release of an open hold (a hold when the worker has none open).
    Release,
    /// PointOfSale.Refund of an earlier redemption or capture (a redemption when none).
    Refund,
    /// Recording.RecordService of one record, then Recording.ApproveService of it.
    Accrual,
}

impl OpKind {
    /// Every kind, in a fixed order.
    pub const ALL: [OpKind; 6] = [
        OpKind::Redeem,
        OpKind::Hold,
        OpKind::Capture,
        OpKind::Release,
        OpKind::Refund,
        OpKind::Accrual,
    ];

    /// The lowercase name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Redeem => "redeem",
            OpKind::Hold => "hold",
            OpKind::Capture => "capture",
            OpKind::Release => "release",
            OpKind::Refund => "refund",
            OpKind::Accrual => "accrual",
        }
    }

    /// Position in [`OpKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for OpKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        OpKind::ALL
            .into_iter()
            .find(|k| k.name() == s.trim().to_ascii_lowercase())
            .ok_or_else(|| {
                format!("unknown operation {s:?} (redeem, hold, capture, release, refund, accrual)")
            })
    }
}

/// Weights of the operation kinds, e.g. `redeem=70,hold=10,capture=10,refund=5,accrual=5`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix {
    weights: [u32; 6],
    total: u32,
}

impl Mix {
    /// Only redemptions.
    pub fn redeem_only() -> Self {
        Mix {
            weights: [1, 0, 0, 0, 0, 0],
            total: 1,
        }
    }

    /// The weight of `kind`.
    pub fn weight(&self, kind: OpKind) -> u32 {
        self.weights[kind.index()]
    }

    /// The kind a random number in `0..u64::MAX` selects.
    pub fn pick(&self, random: u64) -> OpKind {
        let mut r = ((u128::from(random) * u128::from(self.total)) >> 64) as u32;
        for kind in OpKind::ALL {
            let w = self.weights[kind.index()];
            if r < w {
                return kind;
            }
            r -= w;
        }
        OpKind::Redeem
    }
}

impl Default for Mix {
    fn default() -> Self {
        Mix::redeem_only()
    }
}

impl FromStr for Mix {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut weights = [0u32; 6];
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("expected kind=weight, got {part:?}"))?;
            let kind: OpKind = name.parse()?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("bad weight in {part:?}"))?;
            weights[kind.index()] = weight;
        }
        let total: u32 = weights.iter().sum();
        if total == 0 {
            return Err("the mix has no weight".to_owned());
        }
        Ok(Mix { weights, total })
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = OpKind::ALL
            .into_iter()
            .filter(|k| self.weight(*k) > 0)
            .map(|k| format!("{}={}", k.name(), self.weight(k)))
            .collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn parses_and_picks_by_weight() {
        let mix: Mix = "redeem=70,hold=10,capture=10,refund=5,accrual=5"
            .parse()
            .unwrap();
        assert_eq!(
            mix.to_string(),
            "redeem=70,hold=10,capture=10,refund=5,accrual=5"
        );
        let mut rng = crate::ids::SplitMix::new(1);
        let mut counts = [0u32; 6];
        for _ in 0..100_000 {
            counts[mix.pick(rng.next_u64()).index()] += 1;
        }
        assert!((69_000..71_000).contains(&counts[0]), "{counts:?}");
        assert_eq!(counts[OpKind::Release.index()], 0);
    }

    #[test]
    fn refuses_nonsense() {
        assert!("redeem=0".parse::<Mix>().is_err());
        assert!("bogus=1".parse::<Mix>().is_err());
        assert!("redeem".parse::<Mix>().is_err());
    }
}
