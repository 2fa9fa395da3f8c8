//! Why the ledger refused a command.
//!
//! One enum for every domain rejection. Each variant has a stable numeric code that is never
//! reused, and codes increase with precedence: when a command is wrong in several ways, the
//! rejection with the lowest code is the one reported, because the ledger checks in that
//! order (request id, then the shape of the input, then what it names, then who asks, then
//! the state it would change, then limits and balances). Gaps between codes leave room for
//! later rejections in their precedence band.

use crate::ids::RecordId;
use serde::{Deserialize, Serialize};

/// A domain rejection: the command was understood and refused. Nothing was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    // --- Idempotency ---------------------------------------------------------------------
    /// The request id was already used for a different command.
    #[error("request id was already used for a different request")]
    RequestIdReused,

    // --- Shape of the input --------------------------------------------------------------
    /// A name, code or reason is empty, too long, or holds control characters.
    #[error("text is empty, too long, or contains control characters")]
    InvalidText,
    /// An amount is zero or negative.
    #[error("amount must be greater than zero")]
    AmountNotPositive,
    /// An amount has more decimal places than the programme's scale.
    #[error("amount has more decimal places than the programme allows")]
    AmountTooPrecise,
    /// An amount is too large to count.
    #[error("amount is too large")]
    AmountOverflow,
    /// An instant lies outside the supported range or too far from now.
    #[error("time is out of the accepted range")]
    TimeOutOfRange,
    /// A reimbursement rate's effective instant is not after now: rates are never
    /// backdated, so closed periods never change.
    #[error("a rate's effective date must be after now")]
    EffectiveDateNotFuture,
    /// A service duration or hold time-to-live is zero or too long.
    #[error("duration is zero or too long")]
    DurationOutOfRange,
    /// A list that must hold at least one item is empty.
    #[error("the list is empty")]
    BatchEmpty,
    /// A list holds more items than one command may carry.
    #[error("the list holds too many items")]
    BatchTooLarge,
    /// The same item appears twice in one list.
    #[error("the same item appears twice in the list")]
    DuplicateInBatch,
    /// A rule or programme setting is out of range (coefficient, thresholds, caps).
    #[error("a rule or setting is out of range")]
    InvalidSetting,
    /// Source and destination of a movement are the same account.
    #[error("source and destination are the same")]
    SameAccount,

    // --- What the command names ----------------------------------------------------------
    /// No org unit with that id.
    #[error("unknown org unit")]
    UnknownOrgUnit,
    /// No member with that id or card code.
    #[error("unknown member")]
    UnknownMember,
    /// No merchant with that id.
    #[error("unknown merchant")]
    UnknownMerchant,
    /// No community fund with that id.
    #[error("unknown fund")]
    UnknownFund,
    /// No activity with that id.
    #[error("unknown activity")]
    UnknownActivity,
    /// No pool with that id.
    #[error("unknown pool")]
    UnknownPool,
    /// No hold with that id.
    #[error("unknown hold")]
    UnknownHold,
    /// No service record with that id.
    #[error("unknown service record {0}")]
    UnknownRecord(RecordId),
    /// No entry with that id of a kind this command applies to.
    #[error("unknown entry, or not an entry of a kind this command applies to")]
    UnknownEntry,
    /// The id is already taken by another object of the same kind.
    #[error("an object with that id already exists")]
    AlreadyExists,
    /// Another member already has that card code.
    #[error("card code is already in use")]
    CardCodeTaken,
    /// The org unit tree would be deeper than allowed.
    #[error("org unit tree is too deep")]
    TreeTooDeep,

    // --- Who asks, and standing ----------------------------------------------------------
    /// The actor may not do this here: wrong role, outside its org unit, or another
    /// merchant's account.
    #[error("the actor is not allowed to do this")]
    ActorNotAllowed,
    /// The merchant is suspended and cannot take points.
    #[error("merchant is suspended")]
    MerchantSuspended,
    /// The member may not serve in that org unit (outside the home community, without dual
    /// registration).
    #[error("member is not registered to serve in that org unit")]
    MemberNotEligible,
    /// The activity does not run in that org unit.
    #[error("activity is not available in that org unit")]
    ActivityNotAvailable,

    // --- State ---------------------------------------------------------------------------
    /// The hold was already captured or released.
    #[error("hold is no longer open")]
    HoldNotOpen,
    /// The settlement period named was already closed; a period closes once.
    #[error("settlement period is already closed")]
    PeriodAlreadyClosed,
    /// The hold's deadline has passed.
    #[error("hold has expired")]
    HoldExpired,
    /// The settlement period named is not the merchant's open one (it lies ahead).
    #[error("settlement period is not open yet")]
    PeriodNotOpen,
    /// The capture is larger than the hold.
    #[error("capture is larger than the hold")]
    CaptureOverHold,
    /// The service record was already approved, rejected or reversed.
    #[error("service record {0} is not pending")]
    RecordNotPending(RecordId),
    /// The entry was already reversed.
    #[error("entry was already reversed")]
    AlreadyReversed,
    /// The redemption was partly or wholly refunded, so it cannot be reversed whole.
    #[error("entry was already refunded; refund the rest instead of reversing")]
    AlreadyRefunded,
    /// The refund would return more than was taken.
    #[error("refund is larger than what remains of the redemption")]
    RefundOverTaken,
    /// Entries of this kind cannot be reversed.
    #[error("entries of this kind cannot be reversed")]
    NotReversible,
    /// The member has no expired points to move.
    #[error("nothing has expired")]
    NothingToExpire,

    // --- Limits and balances -------------------------------------------------------------
    /// The member's points for this activity today would exceed the daily cap.
    #[error("daily cap exceeded for service record {0}")]
    CapExceeded(RecordId),
    /// The merchant's funds have no budget left this month for the redemption's
    /// reimbursement, and the programme refuses redemptions over budget.
    #[error("the merchant's funds have no budget left for this redemption")]
    FundBudgetExceeded,
    /// The donor's donations this year would exceed the programme's cap.
    #[error("yearly donation cap exceeded")]
    DonationCapExceeded,
    /// The grant is larger than the programme's cap per grant.
    #[error("grant is larger than the cap per grant")]
    GrantCapExceeded,
    /// The member's available points (balance less open holds) are too few.
    #[error("insufficient points")]
    InsufficientPoints,
    /// The pool holds too few points.
    #[error("insufficient points in pool")]
    InsufficientPool,
    /// A balance would leave the countable range.
    #[error("a balance would overflow")]
    BalanceOverflow,
    // --- Issue 5: micro-wishes, events, catalogues (codes ending in 2, 3 or 4) ---------
    /// A quantity of goods is zero or too large.
    #[error("quantity is zero or too large")]
    QuantityOutOfRange,
    /// No micro-wish with that id.
    #[error("unknown wish")]
    UnknownWish,
    /// No volunteer event (gathering) with that id.
    #[error("unknown event")]
    UnknownGathering,
    /// No item with that id in that merchant's catalogue.
    #[error("unknown item in this merchant's catalogue")]
    UnknownItem,
    /// The member does not hold the wish's claim.
    #[error("the member does not hold the claim on this wish")]
    NotClaimant,
    /// The member is not on the event's roster.
    #[error("member is not on the event's roster")]
    NotOnRoster,
    /// An event with check-in and check-out needs an activity that counts credit time.
    #[error("the activity does not count credit time")]
    NotCreditActivity,
    /// The member already checked in at this event.
    #[error("member already checked in at this event")]
    AlreadyCheckedIn,
    /// The member has no open check-in at this event (never checked in, or already checked out).
    #[error("member has no open check-in at this event")]
    NotCheckedIn,
    /// The event was approved and takes no more check-ins or approvals.
    #[error("event is closed")]
    GatheringClosed,
    /// The event has no pending records to approve.
    #[error("event has no pending records to approve")]
    NothingToApprove,
    /// Another claim (not lapsed) or a fulfilment holds the wish.
    #[error("wish is already claimed")]
    WishClaimed,
    /// The wish was confirmed or cancelled.
    #[error("wish is confirmed or cancelled")]
    WishClosed,
    /// The claim's deadline has passed.
    #[error("claim has lapsed")]
    ClaimLapsed,
    /// The wish has not been marked fulfilled.
    #[error("wish is not marked fulfilled")]
    WishNotFulfilled,
    /// The wish has no claim whose deadline has passed.
    #[error("wish has no lapsed claim")]
    NoLapsedClaim,
    /// The claimant already marked the wish fulfilled.
    #[error("wish is already marked fulfilled")]
    AlreadyFulfilled,
    /// The wish's points exceed what its activity's rule gives for its expected hours.
    #[error("wish's points exceed its activity's rule")]
    WishOverRule,
    /// The merchant has too few of an item in stock.
    #[error("out of stock")]
    OutOfStock,
}

impl Rejection {
    /// The stable numeric code. Codes are never reused and increase with precedence.
    pub const fn code(&self) -> u16 {
        match self {
            Rejection::RequestIdReused => 100,
            Rejection::InvalidText => 200,
            Rejection::AmountNotPositive => 210,
            Rejection::AmountTooPrecise => 211,
            Rejection::AmountOverflow => 212,
            Rejection::TimeOutOfRange => 220,
            Rejection::EffectiveDateNotFuture => 225,
            Rejection::DurationOutOfRange => 221,
            Rejection::BatchEmpty => 230,
            Rejection::BatchTooLarge => 231,
            Rejection::DuplicateInBatch => 232,
            Rejection::InvalidSetting => 240,
            Rejection::SameAccount => 250,
            Rejection::UnknownOrgUnit => 300,
            Rejection::UnknownMember => 310,
            Rejection::UnknownMerchant => 320,
            Rejection::UnknownFund => 325,
            Rejection::UnknownActivity => 330,
            Rejection::UnknownPool => 340,
            Rejection::UnknownHold => 350,
            Rejection::UnknownRecord(_) => 360,
            Rejection::UnknownEntry => 370,
            Rejection::AlreadyExists => 380,
            Rejection::CardCodeTaken => 381,
            Rejection::TreeTooDeep => 390,
            Rejection::ActorNotAllowed => 400,
            Rejection::MerchantSuspended => 410,
            Rejection::MemberNotEligible => 420,
            Rejection::ActivityNotAvailable => 430,
            Rejection::HoldNotOpen => 500,
            Rejection::PeriodAlreadyClosed => 505,
            Rejection::HoldExpired => 510,
            Rejection::PeriodNotOpen => 515,
            Rejection::CaptureOverHold => 520,
            Rejection::RecordNotPending(_) => 530,
            Rejection::AlreadyReversed => 540,
            Rejection::AlreadyRefunded => 541,
            Rejection::RefundOverTaken => 550,
            Rejection::NotReversible => 560,
            Rejection::NothingToExpire => 570,
            Rejection::CapExceeded(_) => 600,
            Rejection::FundBudgetExceeded => 605,
            Rejection::DonationCapExceeded => 610,
            Rejection::GrantCapExceeded => 611,
            Rejection::InsufficientPoints => 700,
            Rejection::InsufficientPool => 710,
            Rejection::BalanceOverflow => 800,
            Rejection::QuantityOutOfRange => 252,
            Rejection::UnknownWish => 392,
            Rejection::UnknownGathering => 393,
            Rejection::UnknownItem => 394,
            Rejection::NotClaimant => 412,
            Rejection::NotOnRoster => 422,
            Rejection::NotCreditActivity => 432,
            Rejection::AlreadyCheckedIn => 502,
            Rejection::NotCheckedIn => 503,
            Rejection::GatheringClosed => 504,
            Rejection::NothingToApprove => 574,
            Rejection::WishClaimed => 582,
            Rejection::WishClosed => 583,
            Rejection::ClaimLapsed => 584,
            Rejection::WishNotFulfilled => 592,
            Rejection::NoLapsedClaim => 593,
            Rejection::AlreadyFulfilled => 594,
            Rejection::WishOverRule => 602,
            Rejection::OutOfStock => 702,
        }
    }

    /// A stable, upper-case name for the rejection, used as the `reason` on the wire.
    pub const fn reason(&self) -> &'static str {
        match self {
            Rejection::RequestIdReused => "REQUEST_ID_REUSED",
            Rejection::InvalidText => "INVALID_TEXT",
            Rejection::AmountNotPositive => "AMOUNT_NOT_POSITIVE",
            Rejection::AmountTooPrecise => "AMOUNT_TOO_PRECISE",
            Rejection::AmountOverflow => "AMOUNT_OVERFLOW",
            Rejection::TimeOutOfRange => "TIME_OUT_OF_RANGE",
            Rejection::EffectiveDateNotFuture => "EFFECTIVE_DATE_NOT_FUTURE",
            Rejection::DurationOutOfRange => "DURATION_OUT_OF_RANGE",
            Rejection::BatchEmpty => "BATCH_EMPTY",
            Rejection::BatchTooLarge => "BATCH_TOO_LARGE",
            Rejection::DuplicateInBatch => "DUPLICATE_IN_BATCH",
            Rejection::InvalidSetting => "INVALID_SETTING",
            Rejection::SameAccount => "SAME_ACCOUNT",
            Rejection::UnknownOrgUnit => "UNKNOWN_ORG_UNIT",
            Rejection::UnknownMember => "UNKNOWN_MEMBER",
            Rejection::UnknownMerchant => "UNKNOWN_MERCHANT",
            Rejection::UnknownFund => "UNKNOWN_FUND",
            Rejection::UnknownActivity => "UNKNOWN_ACTIVITY",
            Rejection::UnknownPool => "UNKNOWN_POOL",
            Rejection::UnknownHold => "UNKNOWN_HOLD",
            Rejection::UnknownRecord(_) => "UNKNOWN_RECORD",
            Rejection::UnknownEntry => "UNKNOWN_ENTRY",
            Rejection::AlreadyExists => "ALREADY_EXISTS",
            Rejection::CardCodeTaken => "CARD_CODE_TAKEN",
            Rejection::TreeTooDeep => "TREE_TOO_DEEP",
            Rejection::ActorNotAllowed => "ACTOR_NOT_ALLOWED",
            Rejection::MerchantSuspended => "MERCHANT_SUSPENDED",
            Rejection::MemberNotEligible => "MEMBER_NOT_ELIGIBLE",
            Rejection::ActivityNotAvailable => "ACTIVITY_NOT_AVAILABLE",
            Rejection::HoldNotOpen => "HOLD_NOT_OPEN",
            Rejection::PeriodAlreadyClosed => "PERIOD_ALREADY_CLOSED",
            Rejection::HoldExpired => "HOLD_EXPIRED",
            Rejection::PeriodNotOpen => "PERIOD_NOT_OPEN",
            Rejection::CaptureOverHold => "CAPTURE_OVER_HOLD",
            Rejection::RecordNotPending(_) => "RECORD_NOT_PENDING",
            Rejection::AlreadyReversed => "ALREADY_REVERSED",
            Rejection::AlreadyRefunded => "ALREADY_REFUNDED",
            Rejection::RefundOverTaken => "REFUND_OVER_TAKEN",
            Rejection::NotReversible => "NOT_REVERSIBLE",
            Rejection::NothingToExpire => "NOTHING_TO_EXPIRE",
            Rejection::CapExceeded(_) => "CAP_EXCEEDED",
            Rejection::FundBudgetExceeded => "FUND_BUDGET_EXCEEDED",
            Rejection::DonationCapExceeded => "DONATION_CAP_EXCEEDED",
            Rejection::GrantCapExceeded => "GRANT_CAP_EXCEEDED",
            Rejection::InsufficientPoints => "INSUFFICIENT_POINTS",
            Rejection::InsufficientPool => "INSUFFICIENT_POOL",
            Rejection::BalanceOverflow => "BALANCE_OVERFLOW",
            Rejection::QuantityOutOfRange => "QUANTITY_OUT_OF_RANGE",
            Rejection::UnknownWish => "UNKNOWN_WISH",
            Rejection::UnknownGathering => "UNKNOWN_GATHERING",
            Rejection::UnknownItem => "UNKNOWN_ITEM",
            Rejection::NotClaimant => "NOT_CLAIMANT",
            Rejection::NotOnRoster => "NOT_ON_ROSTER",
            Rejection::NotCreditActivity => "NOT_CREDIT_ACTIVITY",
            Rejection::AlreadyCheckedIn => "ALREADY_CHECKED_IN",
            Rejection::NotCheckedIn => "NOT_CHECKED_IN",
            Rejection::GatheringClosed => "GATHERING_CLOSED",
            Rejection::NothingToApprove => "NOTHING_TO_APPROVE",
            Rejection::WishClaimed => "WISH_CLAIMED",
            Rejection::WishClosed => "WISH_CLOSED",
            Rejection::ClaimLapsed => "CLAIM_LAPSED",
            Rejection::WishNotFulfilled => "WISH_NOT_FULFILLED",
            Rejection::NoLapsedClaim => "NO_LAPSED_CLAIM",
            Rejection::AlreadyFulfilled => "ALREADY_FULFILLED",
            Rejection::WishOverRule => "WISH_OVER_RULE",
            Rejection::OutOfStock => "OUT_OF_STOCK",
        }
    }

    /// Every rejection kind once, in precedence order, with a placeholder where a variant
    /// carries a record id. Tests use it to prove codes are unique and ordered.
    pub fn all(record: RecordId) -> Vec<Rejection> {
        let mut all = vec![
            Rejection::RequestIdReused,
            Rejection::InvalidText,
            Rejection::AmountNotPositive,
            Rejection::AmountTooPrecise,
            Rejection::AmountOverflow,
            Rejection::TimeOutOfRange,
            Rejection::DurationOutOfRange,
            Rejection::EffectiveDateNotFuture,
            Rejection::BatchEmpty,
            Rejection::BatchTooLarge,
            Rejection::DuplicateInBatch,
            Rejection::InvalidSetting,
            Rejection::SameAccount,
            Rejection::UnknownOrgUnit,
            Rejection::UnknownMember,
            Rejection::UnknownMerchant,
            Rejection::UnknownFund,
            Rejection::UnknownActivity,
            Rejection::UnknownPool,
            Rejection::UnknownHold,
            Rejection::UnknownRecord(record),
            Rejection::UnknownEntry,
            Rejection::AlreadyExists,
            Rejection::CardCodeTaken,
            Rejection::TreeTooDeep,
            Rejection::ActorNotAllowed,
            Rejection::MerchantSuspended,
            Rejection::MemberNotEligible,
            Rejection::ActivityNotAvailable,
            Rejection::HoldNotOpen,
            Rejection::PeriodAlreadyClosed,
            Rejection::HoldExpired,
            Rejection::PeriodNotOpen,
            Rejection::CaptureOverHold,
            Rejection::RecordNotPending(record),
            Rejection::AlreadyReversed,
            Rejection::AlreadyRefunded,
            Rejection::RefundOverTaken,
            Rejection::NotReversible,
            Rejection::NothingToExpire,
            Rejection::CapExceeded(record),
            Rejection::FundBudgetExceeded,
            Rejection::DonationCapExceeded,
            Rejection::GrantCapExceeded,
            Rejection::InsufficientPoints,
            Rejection::InsufficientPool,
            Rejection::BalanceOverflow,
        ];
        all.extend(Rejection::volunteer_workflows());
        all.sort_by_key(Rejection::code);
        all
    }

    /// The rejections of micro-wishes, events and catalogues (issue 5), in code order.
    /// `points-core/tests/workflows.rs` holds one scenario row for each.
    pub fn volunteer_workflows() -> Vec<Rejection> {
        vec![
            Rejection::QuantityOutOfRange,
            Rejection::UnknownWish,
            Rejection::UnknownGathering,
            Rejection::UnknownItem,
            Rejection::NotClaimant,
            Rejection::NotOnRoster,
            Rejection::NotCreditActivity,
            Rejection::AlreadyCheckedIn,
            Rejection::NotCheckedIn,
            Rejection::GatheringClosed,
            Rejection::NothingToApprove,
            Rejection::WishClaimed,
            Rejection::WishClosed,
            Rejection::ClaimLapsed,
            Rejection::WishNotFulfilled,
            Rejection::NoLapsedClaim,
            Rejection::AlreadyFulfilled,
            Rejection::WishOverRule,
            Rejection::OutOfStock,
        ]
    }
}

impl From<crate::amount::AmountError> for Rejection {
    fn from(error: crate::amount::AmountError) -> Self {
        match error {
            crate::amount::AmountError::NotPositive => Rejection::AmountNotPositive,
            crate::amount::AmountError::TooPrecise => Rejection::AmountTooPrecise,
            crate::amount::AmountError::Overflow => Rejection::AmountOverflow,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_increase_with_precedence() {
        let all = Rejection::all(RecordId::from_u128(1).unwrap());
        for pair in all.windows(2) {
            assert!(
                pair[0].code() < pair[1].code(),
                "{:?} ({}) must come before {:?} ({})",
                pair[0],
                pair[0].code(),
                pair[1],
                pair[1].code()
            );
        }
        let mut reasons: Vec<_> = all.iter().map(Rejection::reason).collect();
        reasons.sort_unstable();
        reasons.dedup();
        assert_eq!(reasons.len(), all.len(), "reasons must be unique");
    }
}
