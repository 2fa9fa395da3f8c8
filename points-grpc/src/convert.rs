//! Conversions between the wire contract ([`crate::pb`]) and the core's types, and the
//! mapping of every failure to a gRPC status.
//!
//! Parsing never panics: a malformed UUID, a nil id, a bad decimal, a zero, negative or
//! over-precise amount, an unknown or missing enum value, or a missing field is collected
//! as a `google.rpc.BadRequest` field violation, and the call fails with
//! `INVALID_ARGUMENT` carrying that and a `google.rpc.ErrorInfo` (reason
//! `INVALID_ARGUMENT`, domain `points.v1`).

use crate::engine::EngineError;
use crate::pb;
use points_core::{
    Account, Actor, Amount, Applied, Entry, EntryKind, IdError, Points, Rejection, Scale,
    Timestamp, Unit,
};
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::str::FromStr;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// The `ErrorInfo.domain` of every error this server returns.
pub const DOMAIN: &str = "points.v1";

/// A status with an `ErrorInfo` of this server's domain.
pub fn status(code: Code, reason: &str, message: impl Into<String>) -> Status {
    status_with(code, reason, message, HashMap::new())
}

/// A status with an `ErrorInfo` carrying `metadata`.
pub fn status_with(
    code: Code,
    reason: &str,
    message: impl Into<String>,
    metadata: HashMap<String, String>,
) -> Status {
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason, DOMAIN, metadata),
    )
}

/// The gRPC code a rejection maps to, by its precedence band.
pub fn rejection_code(rejection: &Rejection) -> Code {
    match rejection.code() {
        100 => Code::FailedPrecondition,
        200..=299 => Code::InvalidArgument,
        380 | 381 => Code::AlreadyExists,
        300..=379 => Code::NotFound,
        400..=409 => Code::PermissionDenied,
        800..=899 => Code::OutOfRange,
        _ => Code::FailedPrecondition,
    }
}

/// The `ErrorInfo` metadata of a rejection: its numeric code and, where it names one, the
/// service record at fault.
pub fn rejection_metadata(rejection: &Rejection) -> HashMap<String, String> {
    let mut metadata = HashMap::new();
    metadata.insert("code".to_owned(), rejection.code().to_string());
    match rejection {
        Rejection::UnknownRecord(id)
        | Rejection::RecordNotPending(id)
        | Rejection::CapExceeded(id) => {
            metadata.insert("record_id".to_owned(), id.to_string());
        }
        _ => {}
    }
    metadata
}

/// The status for a ledger rejection.
pub fn rejection_status(rejection: &Rejection) -> Status {
    crate::metrics::global().rejection(rejection.reason());
    status_with(
        rejection_code(rejection),
        rejection.reason(),
        rejection.to_string(),
        rejection_metadata(rejection),
    )
}

/// The status for an engine failure.
pub fn engine_status(error: &EngineError) -> Status {
    match error {
        EngineError::Rejected(rejection) => rejection_status(rejection),
        EngineError::UnknownProgram => {
            status(Code::NotFound, "PROGRAM_NOT_FOUND", "unknown program")
        }
        EngineError::Unavailable(message) => status(
            Code::Unavailable,
            "UNAVAILABLE",
            format!("storage unavailable: {message}"),
        ),
        EngineError::Internal(message) => {
            tracing::error!(%message, "internal engine error");
            status(Code::Internal, "INTERNAL", "internal error")
        }
        EngineError::Overloaded(message) => status(
            Code::ResourceExhausted,
            "OVERLOADED",
            format!("overloaded: {message}"),
        ),
    }
}

/// Converts an engine error into a status (for `?`).
impl From<EngineError> for Status {
    fn from(error: EngineError) -> Status {
        engine_status(&error)
    }
}

/// The `OperationError` a failed Submit operation reports, from its status.
pub fn operation_error(status: &Status) -> pb::OperationError {
    let info = status.get_details_error_info();
    let (reason, metadata) = match info {
        Some(info) => (info.reason, info.metadata),
        None => (
            format!("{:?}", status.code()).to_uppercase(),
            HashMap::new(),
        ),
    };
    pb::OperationError {
        code: status.code() as i32,
        reason,
        message: status.message().to_owned(),
        metadata,
    }
}

/// A field was invalid (the violation is already recorded in [`Fields`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Invalid;

/// Collects field violations while a request is parsed; [`Fields::finish`] turns them
/// into one `INVALID_ARGUMENT` status.
#[derive(Debug, Default)]
pub struct Fields {
    violations: Vec<(String, String)>,
    scale: Option<Scale>,
}

impl Fields {
    /// A collector that checks amounts against `scale` when one is given.
    pub fn new(scale: Option<Scale>) -> Self {
        Fields {
            violations: Vec::new(),
            scale,
        }
    }

    /// Records a violation.
    pub fn violation(&mut self, field: &str, description: impl Into<String>) {
        self.violations.push((field.to_owned(), description.into()));
    }

    /// Whether nothing was wrong so far.
    pub fn is_ok(&self) -> bool {
        self.violations.is_empty()
    }

    /// The `INVALID_ARGUMENT` status for what was collected.
    pub fn status(&self) -> Status {
        let mut details = ErrorDetails::new();
        for (field, description) in &self.violations {
            details.add_bad_request_violation(field.clone(), description.clone());
        }
        details.set_error_info("INVALID_ARGUMENT", DOMAIN, HashMap::new());
        let message = self
            .violations
            .iter()
            .map(|(f, d)| format!("{f}: {d}"))
            .collect::<Vec<_>>()
            .join("; ");
        Status::with_error_details(Code::InvalidArgument, message, details)
    }

    /// `Ok` when nothing was wrong, else the `INVALID_ARGUMENT` status.
    pub fn finish(&self) -> Result<(), Status> {
        if self.is_ok() {
            Ok(())
        } else {
            Err(self.status())
        }
    }

    /// A required id.
    pub fn id<T: FromStr<Err = IdError>>(&mut self, field: &str, text: &str) -> Option<T> {
        if text.is_empty() {
            self.violation(field, "required");
            return None;
        }
        match T::from_str(text) {
            Ok(id) => Some(id),
            Err(IdError::Nil) => {
                self.violation(field, "the nil UUID is not a valid id");
                None
            }
            Err(IdError::Malformed) => {
                self.violation(field, "not a UUID");
                None
            }
        }
    }

    /// An optional id: empty means none. `Err(Invalid)` when malformed (already recorded).
    pub fn opt_id<T: FromStr<Err = IdError>>(
        &mut self,
        field: &str,
        text: &str,
    ) -> Result<Option<T>, Invalid> {
        if text.is_empty() {
            return Ok(None);
        }
        self.id(field, text).map(Some).ok_or(Invalid)
    }

    /// A list of required ids.
    pub fn ids<T: FromStr<Err = IdError>>(&mut self, field: &str, texts: &[String]) -> Vec<T> {
        texts
            .iter()
            .enumerate()
            .filter_map(|(i, t)| self.id(&format!("{field}[{i}]"), t))
            .collect()
    }

    /// A decimal string: digits with at most one "." and no sign, exponent or spaces.
    pub fn decimal(&mut self, field: &str, text: &str) -> Option<Decimal> {
        if text.is_empty() {
            self.violation(field, "required");
            return None;
        }
        let well_formed = text.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && text.bytes().filter(|&b| b == b'.').count() <= 1
            && !text.starts_with('.')
            && !text.ends_with('.');
        if text.starts_with('-') {
            self.violation(field, "must be greater than zero");
            return None;
        }
        if !well_formed {
            self.violation(field, "not a decimal number such as \"12.50\"");
            return None;
        }
        match Decimal::from_str_exact(text) {
            Ok(value) => Some(value),
            Err(_) => {
                self.violation(field, "number is too large or too precise");
                None
            }
        }
    }

    /// A required positive amount that fits the program's scale.
    pub fn amount(&mut self, field: &str, text: &str) -> Option<Amount> {
        let value = self.decimal(field, text)?;
        let amount = Amount::new(value);
        if value <= Decimal::ZERO {
            self.violation(field, "must be greater than zero");
            return None;
        }
        if let Some(scale) = self.scale {
            if let Err(error) = amount.to_points(scale) {
                let description = match error {
                    points_core::AmountError::NotPositive => "must be greater than zero".to_owned(),
                    points_core::AmountError::TooPrecise => {
                        format!("at most {} decimal places in this program", scale.places())
                    }
                    points_core::AmountError::Overflow => "amount is too large".to_owned(),
                };
                self.violation(field, description);
                return None;
            }
        }
        Some(amount)
    }

    /// An optional amount: `None` when absent. `Err(Invalid)` when malformed.
    pub fn opt_amount(
        &mut self,
        field: &str,
        text: Option<&str>,
    ) -> Result<Option<Amount>, Invalid> {
        match text {
            None => Ok(None),
            Some(t) => self.amount(field, t).map(Some).ok_or(Invalid),
        }
    }

    /// A required enum value (not UNSPECIFIED, and known).
    pub fn enumeration<E: TryFrom<i32>>(&mut self, field: &str, value: i32) -> Option<E> {
        if value == 0 {
            self.violation(field, "required");
            return None;
        }
        match E::try_from(value) {
            Ok(e) => Some(e),
            Err(_) => {
                self.violation(field, format!("unknown value {value}"));
                None
            }
        }
    }

    /// A required timestamp in the ledger's supported range.
    pub fn timestamp(
        &mut self,
        field: &str,
        value: Option<&prost_types::Timestamp>,
    ) -> Option<Timestamp> {
        let Some(value) = value else {
            self.violation(field, "required");
            return None;
        };
        match timestamp_from_pb(value) {
            Some(t) => Some(t),
            None => {
                self.violation(field, "time is out of range");
                None
            }
        }
    }

    /// A required non-empty text.
    pub fn text(&mut self, field: &str, text: &str) -> Option<String> {
        if text.is_empty() {
            self.violation(field, "required");
            None
        } else {
            Some(text.to_owned())
        }
    }
}

/// A wire timestamp as ledger milliseconds, when it is valid and in the supported range.
pub fn timestamp_from_pb(value: &prost_types::Timestamp) -> Option<Timestamp> {
    if !(0..1_000_000_000).contains(&value.nanos) {
        return None;
    }
    let millis = value
        .seconds
        .checked_mul(1000)?
        .checked_add(i64::from(value.nanos / 1_000_000))?;
    let t = Timestamp::from_millis(millis);
    t.in_supported_range().then_some(t)
}

/// A ledger instant on the wire.
pub fn timestamp_to_pb(t: Timestamp) -> prost_types::Timestamp {
    let ms = t.millis();
    let seconds = ms.div_euclid(1000);
    let nanos = i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0);
    prost_types::Timestamp { seconds, nanos }
}

/// Points as a decimal string in the program's scale.
pub fn points_str(points: Points, scale: Scale) -> String {
    points.to_decimal(scale).to_string()
}

/// Validates a page size: 0 means `default`, more than `max` or negative is refused.
pub fn page_size(value: i32, default: usize, max: usize) -> Result<usize, Status> {
    let mut fields = Fields::default();
    if value < 0 {
        fields.violation("page_size", "must not be negative");
    } else if usize::try_from(value).unwrap_or(usize::MAX) > max {
        fields.violation("page_size", format!("at most {max}"));
    }
    fields.finish()?;
    Ok(if value == 0 {
        default
    } else {
        usize::try_from(value).unwrap_or(default)
    })
}

/// The wire kind of an entry kind.
pub fn kind_to_pb(kind: EntryKind) -> pb::EntryKind {
    use pb::EntryKind as P;
    match kind {
        EntryKind::ProgramOpened => P::ProgramOpened,
        EntryKind::OrgUnitCreated => P::OrgUnitCreated,
        EntryKind::MemberEnrolled => P::MemberEnrolled,
        EntryKind::MemberUpdated => P::MemberUpdated,
        EntryKind::MemberMoved => P::MemberMoved,
        EntryKind::MerchantRegistered => P::MerchantRegistered,
        EntryKind::MerchantStatusChanged => P::MerchantStatusChanged,
        EntryKind::ActivityDefined => P::ActivityDefined,
        EntryKind::PoolCreated => P::PoolCreated,
        EntryKind::ServiceRecorded => P::ServiceRecorded,
        EntryKind::ServiceApproved => P::ServiceApproved,
        EntryKind::ServiceRejected => P::ServiceRejected,
        EntryKind::Redeemed => P::Redeemed,
        EntryKind::HoldPlaced => P::HoldPlaced,
        EntryKind::HoldCaptured => P::HoldCaptured,
        EntryKind::HoldReleased => P::HoldReleased,
        EntryKind::Refunded => P::Refunded,
        EntryKind::Reversed => P::Reversed,
        EntryKind::Transferred => P::Transferred,
        EntryKind::Donated => P::Donated,
        EntryKind::Granted => P::Granted,
        EntryKind::Expired => P::Expired,
        EntryKind::WishPosted => P::WishPosted,
        EntryKind::WishClaimed => P::WishClaimed,
        EntryKind::WishFulfilled => P::WishFulfilled,
        EntryKind::WishConfirmed => P::WishConfirmed,
        EntryKind::WishCancelled => P::WishCancelled,
        EntryKind::WishClaimLapsed => P::WishClaimLapsed,
        EntryKind::GatheringCreated => P::GatheringCreated,
        EntryKind::GatheringCheckedIn => P::GatheringCheckedIn,
        EntryKind::GatheringCheckedOut => P::GatheringCheckedOut,
        EntryKind::GatheringApproved => P::GatheringApproved,
        EntryKind::ItemListed => P::ItemListed,
        EntryKind::ItemRestocked => P::ItemRestocked,
        EntryKind::ItemPriceChanged => P::ItemPriceChanged,
        EntryKind::ItemsRedeemed => P::ItemsRedeemed,
        EntryKind::FundCreated => P::FundCreated,
        EntryKind::MerchantFundsSet => P::MerchantFundsSet,
        EntryKind::MerchantRateSet => P::MerchantRateSet,
        EntryKind::OverBudgetSet => P::OverBudgetSet,
        EntryKind::SettlementClosed => P::SettlementClosed,
    }
}

/// The core kind of a wire kind (`None` for UNSPECIFIED).
pub fn kind_from_pb(kind: pb::EntryKind) -> Option<EntryKind> {
    use pb::EntryKind as P;
    Some(match kind {
        P::Unspecified => return None,
        P::ProgramOpened => EntryKind::ProgramOpened,
        P::OrgUnitCreated => EntryKind::OrgUnitCreated,
        P::MemberEnrolled => EntryKind::MemberEnrolled,
        P::MemberUpdated => EntryKind::MemberUpdated,
        P::MemberMoved => EntryKind::MemberMoved,
        P::MerchantRegistered => EntryKind::MerchantRegistered,
        P::MerchantStatusChanged => EntryKind::MerchantStatusChanged,
        P::ActivityDefined => EntryKind::ActivityDefined,
        P::PoolCreated => EntryKind::PoolCreated,
        P::ServiceRecorded => EntryKind::ServiceRecorded,
        P::ServiceApproved => EntryKind::ServiceApproved,
        P::ServiceRejected => EntryKind::ServiceRejected,
        P::Redeemed => EntryKind::Redeemed,
        P::HoldPlaced => EntryKind::HoldPlaced,
        P::HoldCaptured => EntryKind::HoldCaptured,
        P::HoldReleased => EntryKind::HoldReleased,
        P::Refunded => EntryKind::Refunded,
        P::Reversed => EntryKind::Reversed,
        P::Transferred => EntryKind::Transferred,
        P::Donated => EntryKind::Donated,
        P::Granted => EntryKind::Granted,
        P::Expired => EntryKind::Expired,
        P::WishPosted => EntryKind::WishPosted,
        P::WishClaimed => EntryKind::WishClaimed,
        P::WishFulfilled => EntryKind::WishFulfilled,
        P::WishConfirmed => EntryKind::WishConfirmed,
        P::WishCancelled => EntryKind::WishCancelled,
        P::WishClaimLapsed => EntryKind::WishClaimLapsed,
        P::GatheringCreated => EntryKind::GatheringCreated,
        P::GatheringCheckedIn => EntryKind::GatheringCheckedIn,
        P::GatheringCheckedOut => EntryKind::GatheringCheckedOut,
        P::GatheringApproved => EntryKind::GatheringApproved,
        P::ItemListed => EntryKind::ItemListed,
        P::ItemRestocked => EntryKind::ItemRestocked,
        P::ItemPriceChanged => EntryKind::ItemPriceChanged,
        P::ItemsRedeemed => EntryKind::ItemsRedeemed,
        P::FundCreated => EntryKind::FundCreated,
        P::MerchantFundsSet => EntryKind::MerchantFundsSet,
        P::MerchantRateSet => EntryKind::MerchantRateSet,
        P::OverBudgetSet => EntryKind::OverBudgetSet,
        P::SettlementClosed => EntryKind::SettlementClosed,
    })
}

/// Parses a list of wire kinds into core kinds.
pub fn kinds(fields: &mut Fields, field: &str, values: &[i32]) -> Vec<EntryKind> {
    values
        .iter()
        .enumerate()
        .filter_map(|(i, &v)| {
            let kind: pb::EntryKind = fields.enumeration(&format!("{field}[{i}]"), v)?;
            kind_from_pb(kind)
        })
        .collect()
}

/// The wire form of an actor.
pub fn actor_to_pb(actor: &Actor) -> pb::Actor {
    match *actor {
        Actor::System => pb::Actor {
            kind: pb::ActorKind::System as i32,
            ..Default::default()
        },
        Actor::Admin { id } => pb::Actor {
            kind: pb::ActorKind::Admin as i32,
            actor_id: id.to_string(),
            ..Default::default()
        },
        Actor::Recorder { id, org_unit } => pb::Actor {
            kind: pb::ActorKind::Recorder as i32,
            actor_id: id.to_string(),
            org_unit_id: org_unit.to_string(),
            ..Default::default()
        },
        Actor::Merchant { id, merchant } => pb::Actor {
            kind: pb::ActorKind::Merchant as i32,
            actor_id: id.to_string(),
            merchant_id: merchant.to_string(),
            ..Default::default()
        },
    }
}

/// The wire form of an account.
pub fn account_to_pb(account: &Account) -> pb::Account {
    let (kind, id) = match account {
        Account::Member(id) => (pb::AccountKind::Member, id.to_string()),
        Account::Merchant(id) => (pb::AccountKind::Merchant, id.to_string()),
        Account::Pool(id) => (pb::AccountKind::Pool, id.to_string()),
        Account::Issuance => (pb::AccountKind::Issuance, String::new()),
        Account::HoursIssuance => (pb::AccountKind::HoursIssuance, String::new()),
        Account::ExpirySink => (pb::AccountKind::ExpirySink, String::new()),
        Account::Settled(id) => (pb::AccountKind::Settled, id.to_string()),
    };
    pb::Account {
        kind: kind as i32,
        id,
    }
}

/// The wire form of a unit.
pub fn unit_to_pb(unit: Unit) -> pb::Unit {
    match unit {
        Unit::Points => pb::Unit::Points,
        Unit::CreditMinutes => pb::Unit::CreditMinutes,
        Unit::HonourMinutes => pb::Unit::HonourMinutes,
    }
}

/// A signed posting amount as a decimal string: points in the program's scale, minutes
/// whole.
pub fn unit_amount_str(unit: Unit, amount: i64, scale: Scale) -> String {
    match unit {
        Unit::Points => points_str(Points::from_minor(amount), scale),
        Unit::CreditMinutes | Unit::HonourMinutes => amount.to_string(),
    }
}

/// The wire form of an entry.
pub fn entry_to_pb(program: points_core::ProgramId, entry: &Entry, scale: Scale) -> pb::Entry {
    pb::Entry {
        program_id: program.to_string(),
        sequence: entry.sequence(),
        entry_id: entry.id().to_string(),
        request_id: entry.request_id().to_string(),
        actor: Some(actor_to_pb(entry.actor())),
        time: Some(timestamp_to_pb(entry.at())),
        kind: kind_to_pb(entry.kind()) as i32,
        corrects_entry_id: entry.corrects().map(|e| e.to_string()).unwrap_or_default(),
        postings: entry
            .postings()
            .iter()
            .map(|p| pb::Posting {
                account: Some(account_to_pb(&p.account)),
                unit: unit_to_pb(p.unit) as i32,
                amount: unit_amount_str(p.unit, p.amount, scale),
            })
            .collect(),
        detail_json: serde_json::to_string(entry.event()).unwrap_or_default(),
        hash: entry.hash().to_hex(),
    }
}

/// The receipt of an applied request.
pub fn receipt(applied: &Applied, kind: EntryKind) -> pb::EntryReceipt {
    pb::EntryReceipt {
        entry_id: applied.entry_id().to_string(),
        sequence: applied.sequence(),
        kind: kind_to_pb(kind) as i32,
        duplicate: matches!(applied, Applied::Duplicate { .. }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use points_core::MemberId;

    #[test]
    fn malformed_input_is_collected_not_panicked() {
        let mut f = Fields::new(Scale::new(2));
        assert!(f.id::<MemberId>("a", "nope").is_none());
        assert!(f
            .id::<MemberId>("b", "00000000-0000-0000-0000-000000000000")
            .is_none());
        assert!(f.amount("c", "0").is_none());
        assert!(f.amount("d", "-1").is_none());
        assert!(f.amount("e", "1.001").is_none());
        assert!(f.amount("f", "1e5").is_none());
        assert!(f.amount("g", "99999999999999999999999999999999").is_none());
        assert!(f.enumeration::<pb::MemberKind>("h", 99).is_none());
        assert!(f.amount("i", "12.50").is_some());
        assert_eq!(f.violations.len(), 8);
        let status = f.status();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status
                .get_details_bad_request()
                .unwrap()
                .field_violations
                .len(),
            8
        );
    }

    #[test]
    fn rejections_map_by_band() {
        assert_eq!(
            rejection_code(&Rejection::InsufficientPoints),
            Code::FailedPrecondition
        );
        assert_eq!(rejection_code(&Rejection::UnknownMember), Code::NotFound);
        assert_eq!(
            rejection_code(&Rejection::CardCodeTaken),
            Code::AlreadyExists
        );
        assert_eq!(
            rejection_code(&Rejection::ActorNotAllowed),
            Code::PermissionDenied
        );
        assert_eq!(
            rejection_code(&Rejection::BalanceOverflow),
            Code::OutOfRange
        );
        assert_eq!(
            rejection_code(&Rejection::InvalidText),
            Code::InvalidArgument
        );
        let s = rejection_status(&Rejection::InsufficientPoints);
        let info = s.get_details_error_info().unwrap();
        assert_eq!(info.reason, "INSUFFICIENT_POINTS");
        assert_eq!(info.domain, "points.v1");
        assert_eq!(info.metadata.get("code").map(String::as_str), Some("700"));
    }
}
