//! Micro-wishes (微心愿): a resident's small request, posted by a recorder, claimed by a
//! volunteer, fulfilled, and confirmed by a recorder, which issues the wish's points and
//! hours to the claimant.
//!
//! Every step is one journal entry. Only one claim holds a wish at a time; a claim that is
//! not fulfilled by its deadline lapses. Lapse is judged against the time a command is
//! decided at, so no background job is needed: a lapsed claim simply stops blocking a new
//! claim, and [`WishCommand::Lapse`] may record the lapse as an entry of its own.
//!
//! Members have no [`Actor`] of their own: a volunteer's claim and fulfilment come through
//! the community centre's recording software, so those steps are made by a recorder (or an
//! admin) on the member's behalf, naming the member. The recorder must be allowed in the
//! wish's org unit, as for every other step.
//!
//! Confirmation issues points only under an activity's rule: the wish names an activity
//! that runs in its org unit, its points may not exceed what that rule gives for the
//! expected hours ([`Rejection::WishOverRule`]), and the confirmation creates an approved
//! [`ServiceRecord`] under that activity, subject to the activity's per-occasion minutes
//! and daily points cap, so that the service counts like any other record and can be
//! reversed with [`Command::Reverse`](crate::Command::Reverse).

use super::Ledger;
use crate::amount::{Amount, Minutes, Points};
use crate::command::Actor;
use crate::entry::{award_postings, EntryKind, Posting};
use crate::ids::{ActivityId, EntryId, MemberId, OrgUnitId, RecordId, WishId};
use crate::model::{Award, ServiceRecord, MAX_SERVICE_MINUTES};
use crate::rejection::Rejection;
use crate::text::{check_name, check_reason};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// The longest a claim may last before it lapses: 90 days.
pub const MAX_CLAIM_TTL_MS: u64 = 90 * 86_400_000;

/// What a caller asks of a micro-wish.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WishCommand {
    /// Post a resident's wish (a recorder in the wish's org unit, or an admin).
    Post {
        /// The new wish's id.
        id: WishId,
        /// Where the wish is to be fulfilled.
        org_unit: OrgUnitId,
        /// The activity whose rule the wish's points are issued under.
        activity: ActivityId,
        /// What the resident wishes for.
        title: String,
        /// Points the claimant earns on confirmation.
        points: Amount,
        /// Expected service, in whole minutes (1 to 1,440).
        minutes: u32,
        /// How long a claim lasts before it lapses, in milliseconds (up to 90 days).
        claim_ttl_ms: u64,
    },
    /// A volunteer claims the wish (recorded by a recorder on the member's behalf).
    Claim {
        /// The wish.
        wish: WishId,
        /// The volunteer.
        member: MemberId,
    },
    /// The claimant marks the wish fulfilled (recorded by a recorder).
    Fulfil {
        /// The wish.
        wish: WishId,
        /// The claimant.
        member: MemberId,
    },
    /// A recorder confirms the fulfilment: points and hours go to the claimant.
    Confirm {
        /// The wish.
        wish: WishId,
    },
    /// Withdraw the wish; any claim on it is released.
    Cancel {
        /// The wish.
        wish: WishId,
        /// Why.
        reason: String,
    },
    /// Record that the wish's claim passed its deadline unfulfilled (a recorder, an admin
    /// or the server's sweep). The wish is open again.
    Lapse {
        /// The wish.
        wish: WishId,
    },
}

impl WishCommand {
    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            WishCommand::Post { .. } => "post_wish",
            WishCommand::Claim { .. } => "claim_wish",
            WishCommand::Fulfil { .. } => "fulfil_wish",
            WishCommand::Confirm { .. } => "confirm_wish",
            WishCommand::Cancel { .. } => "cancel_wish",
            WishCommand::Lapse { .. } => "lapse_wish_claim",
        }
    }
}

/// A validated wish, as stored in its `WishPosted` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WishSpec {
    /// The wish's id.
    pub id: WishId,
    /// Where it is to be fulfilled.
    pub org_unit: OrgUnitId,
    /// The activity its points are issued under.
    pub activity: ActivityId,
    /// What the resident wishes for.
    pub title: String,
    /// Points the claimant earns on confirmation.
    pub points: Points,
    /// Expected service in minutes.
    pub minutes: u32,
    /// How long a claim lasts, in milliseconds.
    pub claim_ttl_ms: u64,
}

/// What a micro-wish entry records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WishEvent {
    /// A wish was posted.
    Posted(Box<WishSpec>),
    /// A volunteer claimed the wish until `deadline`.
    Claimed {
        /// The wish.
        wish: WishId,
        /// The claimant.
        member: MemberId,
        /// When the claim lapses unless fulfilled.
        deadline: Timestamp,
    },
    /// The claimant marked the wish fulfilled.
    Fulfilled {
        /// The wish.
        wish: WishId,
        /// The claimant.
        member: MemberId,
    },
    /// A recorder confirmed the wish: an approved record and its award.
    Confirmed {
        /// The wish.
        wish: WishId,
        /// The service record the confirmation creates (already approved).
        record: ServiceRecord,
        /// The points and minutes issued to the claimant.
        award: Award,
    },
    /// The wish was cancelled; `released` is the member whose claim it released.
    Cancelled {
        /// The wish.
        wish: WishId,
        /// Why.
        reason: String,
        /// The claimant whose live claim or fulfilment was released, if any.
        released: Option<MemberId>,
    },
    /// A claim passed its deadline unfulfilled; the wish is open again.
    ClaimLapsed {
        /// The wish.
        wish: WishId,
        /// The claimant whose claim lapsed.
        member: MemberId,
    },
}

impl WishEvent {
    /// The entry kind.
    pub fn kind(&self) -> EntryKind {
        match self {
            WishEvent::Posted(_) => EntryKind::WishPosted,
            WishEvent::Claimed { .. } => EntryKind::WishClaimed,
            WishEvent::Fulfilled { .. } => EntryKind::WishFulfilled,
            WishEvent::Confirmed { .. } => EntryKind::WishConfirmed,
            WishEvent::Cancelled { .. } => EntryKind::WishCancelled,
            WishEvent::ClaimLapsed { .. } => EntryKind::WishClaimLapsed,
        }
    }

    /// The wish the entry concerns.
    pub fn wish(&self) -> WishId {
        match self {
            WishEvent::Posted(spec) => spec.id,
            WishEvent::Claimed { wish, .. }
            | WishEvent::Fulfilled { wish, .. }
            | WishEvent::Confirmed { wish, .. }
            | WishEvent::Cancelled { wish, .. }
            | WishEvent::ClaimLapsed { wish, .. } => *wish,
        }
    }

    /// Only a confirmation moves value: points and minutes from issuance to the claimant.
    pub(crate) fn push_postings(&self, out: &mut Vec<Posting>) {
        if let WishEvent::Confirmed { award, .. } = self {
            award_postings(out, std::slice::from_ref(award), 1);
        }
    }
}

/// Where a wish stands, as a read at some instant sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum WishStatus {
    /// Posted and unclaimed.
    Open,
    /// Claimed, and the claim's deadline has not passed.
    Claimed,
    /// Claimed, but the deadline passed unfulfilled: open to a new claim.
    Lapsed,
    /// The claimant marked it fulfilled; awaiting confirmation.
    Fulfilled,
    /// Confirmed: points and hours were issued.
    Confirmed,
    /// Cancelled.
    Cancelled,
}

/// A wish and where it stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WishView {
    /// The wish as posted.
    pub spec: WishSpec,
    /// Where it stands at the instant read.
    pub status: WishStatus,
    /// The member holding (or who last held) the claim.
    pub claimant: Option<MemberId>,
    /// The claim's deadline, while claimed.
    pub deadline: Option<Timestamp>,
    /// The approved record its confirmation created.
    pub record: Option<RecordId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Stage {
    Open,
    Claimed,
    Fulfilled,
    Confirmed,
    Cancelled,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct WishState {
    spec: WishSpec,
    stage: Stage,
    claimant: Option<MemberId>,
    deadline: Timestamp,
    fulfilled_at: Timestamp,
    record: Option<RecordId>,
}

impl WishState {
    /// Whether a claim holds the wish at `at`: a live claim, or a fulfilment awaiting
    /// confirmation.
    fn held_at(&self, at: Timestamp) -> bool {
        match self.stage {
            Stage::Claimed => at < self.deadline,
            Stage::Fulfilled => true,
            Stage::Open | Stage::Confirmed | Stage::Cancelled => false,
        }
    }

    fn closed(&self) -> bool {
        matches!(self.stage, Stage::Confirmed | Stage::Cancelled)
    }

    fn view(&self, at: Timestamp) -> WishView {
        let status = match self.stage {
            Stage::Open => WishStatus::Open,
            Stage::Claimed if at < self.deadline => WishStatus::Claimed,
            Stage::Claimed => WishStatus::Lapsed,
            Stage::Fulfilled => WishStatus::Fulfilled,
            Stage::Confirmed => WishStatus::Confirmed,
            Stage::Cancelled => WishStatus::Cancelled,
        };
        WishView {
            spec: self.spec.clone(),
            status,
            claimant: self.claimant,
            deadline: (self.stage == Stage::Claimed).then_some(self.deadline),
            record: self.record,
        }
    }
}

impl Ledger {
    /// A micro-wish and where it stands at `now`.
    pub fn wish(&self, id: WishId, now: Timestamp) -> Option<WishView> {
        self.wishes.get(&id).map(|w| w.view(now))
    }

    /// Every micro-wish at `now`, sorted by id.
    pub fn wishes(&self, now: Timestamp) -> Vec<WishView> {
        let mut out: Vec<_> = self.wishes.values().map(|w| w.view(now)).collect();
        out.sort_by_key(|w| w.spec.id);
        out
    }

    /// Wishes whose claim has lapsed by `now` and is not yet recorded, for a sweep.
    pub fn wishes_with_lapsed_claims(&self, now: Timestamp) -> Vec<WishId> {
        let mut out: Vec<_> = self
            .wishes
            .values()
            .filter(|w| w.stage == Stage::Claimed && now >= w.deadline)
            .map(|w| w.spec.id)
            .collect();
        out.sort_unstable();
        out
    }

    fn wish_state(&self, id: WishId) -> Result<&WishState, Rejection> {
        self.wishes.get(&id).ok_or(Rejection::UnknownWish)
    }

    /// Whether `member` may serve in `unit`: inside the home branch, or dual-registered.
    pub(super) fn eligible(&self, member: MemberId, unit: OrgUnitId) -> Result<(), Rejection> {
        let state = self.member_at(self.member_ix(member)?);
        let home = self.unit_id(state.home);
        if self.is_within(unit, home) || self.is_within(home, unit) || state.dual_registration {
            Ok(())
        } else {
            Err(Rejection::MemberNotEligible)
        }
    }

    pub(super) fn decide_wish(
        &self,
        actor: &Actor,
        command: &WishCommand,
        at: Timestamp,
    ) -> Result<WishEvent, Rejection> {
        match command {
            WishCommand::Post {
                id,
                org_unit,
                activity,
                title,
                points,
                minutes,
                claim_ttl_ms,
            } => {
                check_name(title)?;
                let points = self.points(*points)?;
                if *minutes == 0 || *minutes > MAX_SERVICE_MINUTES {
                    return Err(Rejection::DurationOutOfRange);
                }
                if *claim_ttl_ms == 0 || *claim_ttl_ms > MAX_CLAIM_TTL_MS {
                    return Err(Rejection::DurationOutOfRange);
                }
                self.unit_exists(*org_unit)?;
                let spec = self
                    .activities
                    .get(activity)
                    .ok_or(Rejection::UnknownActivity)?;
                if self.wishes.contains_key(id) {
                    return Err(Rejection::AlreadyExists);
                }
                self.allow_in(actor, *org_unit)?;
                if !self.is_within(*org_unit, spec.org_unit) {
                    return Err(Rejection::ActivityNotAvailable);
                }
                let by_rule = spec.points_for(spec.counted_minutes(*minutes));
                if by_rule.is_none_or(|limit| points > limit) {
                    return Err(Rejection::WishOverRule);
                }
                Ok(WishEvent::Posted(Box::new(WishSpec {
                    id: *id,
                    org_unit: *org_unit,
                    activity: *activity,
                    title: title.clone(),
                    points,
                    minutes: *minutes,
                    claim_ttl_ms: *claim_ttl_ms,
                })))
            }
            WishCommand::Claim { wish, member } => {
                self.member_ix(*member)?;
                let state = self.wish_state(*wish)?;
                self.allow_in(actor, state.spec.org_unit)?;
                self.eligible(*member, state.spec.org_unit)?;
                if state.held_at(at) {
                    return Err(Rejection::WishClaimed);
                }
                if state.closed() {
                    return Err(Rejection::WishClosed);
                }
                let ttl = i64::try_from(state.spec.claim_ttl_ms)
                    .map_err(|_| Rejection::DurationOutOfRange)?;
                Ok(WishEvent::Claimed {
                    wish: *wish,
                    member: *member,
                    deadline: at.saturating_add_millis(ttl),
                })
            }
            WishCommand::Fulfil { wish, member } => {
                self.member_ix(*member)?;
                let state = self.wish_state(*wish)?;
                self.allow_in(actor, state.spec.org_unit)?;
                if state.claimant != Some(*member) || state.stage == Stage::Open {
                    return Err(Rejection::NotClaimant);
                }
                if state.closed() {
                    return Err(Rejection::WishClosed);
                }
                if state.stage == Stage::Claimed && at >= state.deadline {
                    return Err(Rejection::ClaimLapsed);
                }
                if state.stage == Stage::Fulfilled {
                    return Err(Rejection::AlreadyFulfilled);
                }
                Ok(WishEvent::Fulfilled {
                    wish: *wish,
                    member: *member,
                })
            }
            WishCommand::Confirm { wish } => {
                let state = self.wish_state(*wish)?;
                self.allow_in(actor, state.spec.org_unit)?;
                if state.closed() {
                    return Err(Rejection::WishClosed);
                }
                let (Stage::Fulfilled, Some(member)) = (state.stage, state.claimant) else {
                    return Err(Rejection::WishNotFulfilled);
                };
                self.decide_wish_award(state, member, at)
            }
            WishCommand::Cancel { wish, reason } => {
                check_reason(reason)?;
                let state = self.wish_state(*wish)?;
                self.allow_in(actor, state.spec.org_unit)?;
                if state.closed() {
                    return Err(Rejection::WishClosed);
                }
                Ok(WishEvent::Cancelled {
                    wish: *wish,
                    reason: reason.clone(),
                    released: state.claimant.filter(|_| state.held_at(at)),
                })
            }
            WishCommand::Lapse { wish } => {
                let state = self.wish_state(*wish)?;
                if *actor != Actor::System {
                    self.allow_in(actor, state.spec.org_unit)?;
                }
                if state.closed() {
                    return Err(Rejection::WishClosed);
                }
                match (state.stage, state.claimant) {
                    (Stage::Claimed, Some(member)) if at >= state.deadline => {
                        Ok(WishEvent::ClaimLapsed {
                            wish: *wish,
                            member,
                        })
                    }
                    _ => Err(Rejection::NoLapsedClaim),
                }
            }
        }
    }

    /// The approved record and award a confirmation creates, with the activity's
    /// per-occasion minutes and daily points cap applied.
    fn decide_wish_award(
        &self,
        state: &WishState,
        member: MemberId,
        at: Timestamp,
    ) -> Result<WishEvent, Rejection> {
        let activity = self
            .activities
            .get(&state.spec.activity)
            .ok_or(Rejection::UnknownActivity)?;
        let entry = EntryId::from_prefix(self.entry_prefix, self.next_sequence);
        let record = ServiceRecord {
            id: RecordId::for_record(entry, 0),
            member,
            activity: state.spec.activity,
            org_unit: state.spec.org_unit,
            started_at: state.fulfilled_at,
            minutes: state.spec.minutes,
        };
        let points = state.spec.points;
        if let Some(cap) = activity.daily_points_cap {
            let key = (
                member,
                record.activity,
                record.started_at.local_day(self.spec.utc_offset_minutes()),
            );
            let before = self.daily_points.get(&key).copied().unwrap_or_default();
            let after = before
                .checked_add(points)
                .ok_or(Rejection::BalanceOverflow)?;
            if after > cap {
                return Err(Rejection::CapExceeded(record.id));
            }
        }
        self.totals
            .issued
            .checked_add(points)
            .ok_or(Rejection::BalanceOverflow)?;
        Self::credit_fits(self.member_at(self.member_ix(member)?).balance, points)?;
        let award = Award {
            record: record.id,
            member,
            points,
            minutes: Minutes::new(i64::from(activity.counted_minutes(record.minutes))),
            time_kind: activity.time_kind,
            expires_at: self.expiry_from(at),
        };
        Ok(WishEvent::Confirmed {
            wish: state.spec.id,
            record,
            award,
        })
    }

    pub(super) fn evolve_wish(&mut self, this: EntryId, at: Timestamp, event: &WishEvent) {
        match event {
            WishEvent::Posted(spec) => {
                self.wishes.insert(
                    spec.id,
                    WishState {
                        spec: (**spec).clone(),
                        stage: Stage::Open,
                        claimant: None,
                        deadline: Timestamp::from_millis(0),
                        fulfilled_at: Timestamp::from_millis(0),
                        record: None,
                    },
                );
            }
            WishEvent::Claimed {
                wish,
                member,
                deadline,
            } => {
                if let Some(w) = self.wishes.get_mut(wish) {
                    w.stage = Stage::Claimed;
                    w.claimant = Some(*member);
                    w.deadline = *deadline;
                }
            }
            WishEvent::Fulfilled { wish, .. } => {
                if let Some(w) = self.wishes.get_mut(wish) {
                    w.stage = Stage::Fulfilled;
                    w.fulfilled_at = at;
                }
            }
            WishEvent::Confirmed {
                wish,
                record,
                award,
            } => {
                if let Some(w) = self.wishes.get_mut(wish) {
                    w.stage = Stage::Confirmed;
                    w.record = Some(record.id);
                }
                self.add_record(record);
                self.apply_awards(std::slice::from_ref(award), 1);
                let fact = self.approval_fact(std::iter::once(record.id));
                self.facts.insert(this, fact);
            }
            WishEvent::Cancelled { wish, .. } => {
                if let Some(w) = self.wishes.get_mut(wish) {
                    w.stage = Stage::Cancelled;
                }
            }
            WishEvent::ClaimLapsed { wish, .. } => {
                if let Some(w) = self.wishes.get_mut(wish) {
                    w.stage = Stage::Open;
                }
            }
        }
    }
}
