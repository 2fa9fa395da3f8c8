//! Volunteer events with a roster, check-in and check-out, and approval in one step.
//!
//! In code a volunteer event is a **gathering**, so that it is never confused with the
//! journal's [`Event`] (what an entry records). A recorder creates a
//! gathering under an activity that counts credit time, with a roster of members. Each
//! member on the roster checks in and out once; the check-out turns the time between the
//! two into a pending [`ServiceRecord`] of credit minutes. [`GatheringCommand::Approve`]
//! approves every record of the gathering still pending in one entry, with the activity's
//! rules applied exactly as for [`Command::ApproveService`](crate::Command::ApproveService):
//! the per-occasion minutes cap, the points rule and coefficient, and the daily points cap.
//! The approval is atomic: one rejection (a cap, an overflow) refuses the whole approval.
//! After approval the gathering is closed.
//!
//! The records are ordinary service records: a recorder may reject one of them with
//! `RejectService` before the gathering is approved, and an approval can be reversed with
//! `Reverse` like any other.

use super::{Ledger, MAX_SERVICE_AGE_MS, MAX_SERVICE_LEAD_MS};
use crate::command::Actor;
use crate::entry::{award_postings, EntryKind, Event, Posting};
use crate::ids::{ActivityId, EntryId, GatheringId, MemberId, OrgUnitId, RecordId};
use crate::model::{Award, RecordStatus, ServiceRecord, TimeKind, MAX_SERVICE_MINUTES};
use crate::rejection::Rejection;
use crate::text::check_name;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// What a caller asks of a gathering. Every step is made by a recorder allowed in the
/// gathering's org unit, or an admin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GatheringCommand {
    /// Create a gathering with its roster.
    Create {
        /// The new gathering's id.
        id: GatheringId,
        /// Where it takes place.
        org_unit: OrgUnitId,
        /// The activity (counting credit time) whose rules apply.
        activity: ActivityId,
        /// Display name.
        name: String,
        /// The members expected, 1 to [`MAX_BATCH`](crate::MAX_BATCH), no repeats.
        roster: Vec<MemberId>,
    },
    /// A member on the roster checks in at `time`.
    CheckIn {
        /// The gathering.
        gathering: GatheringId,
        /// The member.
        member: MemberId,
        /// When the member arrived (the recorder's device clock).
        time: Timestamp,
    },
    /// A member checks out at `time`; the time since check-in becomes a pending record.
    CheckOut {
        /// The gathering.
        gathering: GatheringId,
        /// The member.
        member: MemberId,
        /// When the member left.
        time: Timestamp,
    },
    /// Approve every pending record of the gathering in one entry, and close it.
    Approve {
        /// The gathering.
        gathering: GatheringId,
    },
}

impl GatheringCommand {
    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            GatheringCommand::Create { .. } => "create_gathering",
            GatheringCommand::CheckIn { .. } => "check_in",
            GatheringCommand::CheckOut { .. } => "check_out",
            GatheringCommand::Approve { .. } => "approve_gathering",
        }
    }
}

/// A validated gathering, as stored in its `GatheringCreated` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatheringSpec {
    /// The gathering's id.
    pub id: GatheringId,
    /// Where it takes place.
    pub org_unit: OrgUnitId,
    /// The activity whose rules apply.
    pub activity: ActivityId,
    /// Display name.
    pub name: String,
    /// The members on the roster, in the order given.
    pub roster: Vec<MemberId>,
}

/// What a gathering entry records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GatheringEvent {
    /// A gathering was created.
    Created(Box<GatheringSpec>),
    /// A member checked in.
    CheckedIn {
        /// The gathering.
        gathering: GatheringId,
        /// The member.
        member: MemberId,
        /// When.
        time: Timestamp,
    },
    /// A member checked out; the attendance became a pending record.
    CheckedOut {
        /// The gathering.
        gathering: GatheringId,
        /// The member.
        member: MemberId,
        /// When.
        time: Timestamp,
        /// The pending record of the attendance (credit time).
        record: ServiceRecord,
    },
    /// The gathering's pending records were approved in one step; it is closed.
    Approved {
        /// The gathering.
        gathering: GatheringId,
        /// One award per record approved.
        awards: Vec<Award>,
    },
}

impl GatheringEvent {
    /// The entry kind.
    pub fn kind(&self) -> EntryKind {
        match self {
            GatheringEvent::Created(_) => EntryKind::GatheringCreated,
            GatheringEvent::CheckedIn { .. } => EntryKind::GatheringCheckedIn,
            GatheringEvent::CheckedOut { .. } => EntryKind::GatheringCheckedOut,
            GatheringEvent::Approved { .. } => EntryKind::GatheringApproved,
        }
    }

    /// The gathering the entry concerns.
    pub fn gathering(&self) -> GatheringId {
        match self {
            GatheringEvent::Created(spec) => spec.id,
            GatheringEvent::CheckedIn { gathering, .. }
            | GatheringEvent::CheckedOut { gathering, .. }
            | GatheringEvent::Approved { gathering, .. } => *gathering,
        }
    }

    /// Only the approval moves value, exactly as a service approval does.
    pub(crate) fn push_postings(&self, out: &mut Vec<Posting>) {
        if let GatheringEvent::Approved { awards, .. } = self {
            award_postings(out, awards, 1);
        }
    }
}

/// One member's attendance at a gathering.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attendance {
    /// The member.
    pub member: MemberId,
    /// When the member checked in, if yet.
    pub checked_in: Option<Timestamp>,
    /// When the member checked out, if yet.
    pub checked_out: Option<Timestamp>,
    /// The record the check-out created.
    pub record: Option<RecordId>,
}

/// A gathering and its attendance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatheringView {
    /// The gathering as created.
    pub spec: GatheringSpec,
    /// One line per roster member, in roster order.
    pub attendance: Vec<Attendance>,
    /// Whether it was approved (and takes nothing more).
    pub closed: bool,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct GatheringState {
    spec: GatheringSpec,
    attendance: Vec<Attendance>,
    closed: bool,
}

impl GatheringState {
    fn attendance(&self, member: MemberId) -> Option<&Attendance> {
        self.attendance.iter().find(|a| a.member == member)
    }

    fn attendance_mut(&mut self, member: MemberId) -> Option<&mut Attendance> {
        self.attendance.iter_mut().find(|a| a.member == member)
    }
}

impl Ledger {
    /// A gathering and its attendance.
    pub fn gathering(&self, id: GatheringId) -> Option<GatheringView> {
        self.gatherings.get(&id).map(|g| GatheringView {
            spec: g.spec.clone(),
            attendance: g.attendance.clone(),
            closed: g.closed,
        })
    }

    fn gathering_state(&self, id: GatheringId) -> Result<&GatheringState, Rejection> {
        self.gatherings.get(&id).ok_or(Rejection::UnknownGathering)
    }

    /// A check-in or check-out time must be a plausible instant near the entry, as for a
    /// service record's start.
    fn check_attendance_time(time: Timestamp, at: Timestamp) -> Result<(), Rejection> {
        let age = at.millis().saturating_sub(time.millis());
        if !time.in_supported_range() || age > MAX_SERVICE_AGE_MS || -age > MAX_SERVICE_LEAD_MS {
            Err(Rejection::TimeOutOfRange)
        } else {
            Ok(())
        }
    }

    pub(super) fn decide_gathering(
        &self,
        actor: &Actor,
        command: &GatheringCommand,
        at: Timestamp,
    ) -> Result<GatheringEvent, Rejection> {
        match command {
            GatheringCommand::Create {
                id,
                org_unit,
                activity,
                name,
                roster,
            } => {
                check_name(name)?;
                super::check_batch_len(roster.len())?;
                if super::has_duplicates(roster) {
                    return Err(Rejection::DuplicateInBatch);
                }
                self.unit_exists(*org_unit)?;
                for member in roster {
                    self.member_ix(*member)?;
                }
                let spec = self
                    .activities
                    .get(activity)
                    .ok_or(Rejection::UnknownActivity)?;
                if self.gatherings.contains_key(id) {
                    return Err(Rejection::AlreadyExists);
                }
                self.allow_in(actor, *org_unit)?;
                for member in roster {
                    self.eligible(*member, *org_unit)?;
                }
                if !self.is_within(*org_unit, spec.org_unit) {
                    return Err(Rejection::ActivityNotAvailable);
                }
                if spec.time_kind != TimeKind::Credit {
                    return Err(Rejection::NotCreditActivity);
                }
                Ok(GatheringEvent::Created(Box::new(GatheringSpec {
                    id: *id,
                    org_unit: *org_unit,
                    activity: *activity,
                    name: name.clone(),
                    roster: roster.clone(),
                })))
            }
            GatheringCommand::CheckIn {
                gathering,
                member,
                time,
            } => {
                Self::check_attendance_time(*time, at)?;
                self.member_ix(*member)?;
                let state = self.gathering_state(*gathering)?;
                self.allow_in(actor, state.spec.org_unit)?;
                let attendance = state.attendance(*member).ok_or(Rejection::NotOnRoster)?;
                if attendance.checked_in.is_some() {
                    return Err(Rejection::AlreadyCheckedIn);
                }
                if state.closed {
                    return Err(Rejection::GatheringClosed);
                }
                Ok(GatheringEvent::CheckedIn {
                    gathering: *gathering,
                    member: *member,
                    time: *time,
                })
            }
            GatheringCommand::CheckOut {
                gathering,
                member,
                time,
            } => {
                Self::check_attendance_time(*time, at)?;
                self.member_ix(*member)?;
                let state = self.gathering_state(*gathering)?;
                self.allow_in(actor, state.spec.org_unit)?;
                let attendance = state.attendance(*member).ok_or(Rejection::NotOnRoster)?;
                let checked_in = attendance.checked_in.ok_or(Rejection::NotCheckedIn)?;
                // Whole minutes between check-in and check-out; a stay shorter than a
                // minute or longer than a day is not a plausible attendance.
                let minutes = time.millis().saturating_sub(checked_in.millis()) / 60_000;
                if minutes <= 0 || minutes > i64::from(MAX_SERVICE_MINUTES) {
                    return Err(Rejection::DurationOutOfRange);
                }
                if attendance.record.is_some() {
                    return Err(Rejection::NotCheckedIn);
                }
                if state.closed {
                    return Err(Rejection::GatheringClosed);
                }
                let entry = EntryId::from_prefix(self.entry_prefix, self.next_sequence);
                Ok(GatheringEvent::CheckedOut {
                    gathering: *gathering,
                    member: *member,
                    time: *time,
                    record: ServiceRecord {
                        id: RecordId::for_record(entry, 0),
                        member: *member,
                        activity: state.spec.activity,
                        org_unit: state.spec.org_unit,
                        started_at: checked_in,
                        minutes: u32::try_from(minutes).unwrap_or(MAX_SERVICE_MINUTES),
                    },
                })
            }
            GatheringCommand::Approve { gathering } => {
                let state = self.gathering_state(*gathering)?;
                self.allow_in(actor, state.spec.org_unit)?;
                if state.closed {
                    return Err(Rejection::GatheringClosed);
                }
                let pending: Vec<RecordId> = state
                    .attendance
                    .iter()
                    .filter_map(|a| a.record)
                    .filter(|id| {
                        self.record_state(id)
                            .is_some_and(|r| r.status == RecordStatus::Pending)
                    })
                    .collect();
                if pending.is_empty() {
                    return Err(Rejection::NothingToApprove);
                }
                // The same rules, caps and overflow checks as a service approval.
                match self.decide_approve(actor, &pending, at)? {
                    Event::ServiceApproved { awards } => Ok(GatheringEvent::Approved {
                        gathering: *gathering,
                        awards,
                    }),
                    _ => Err(Rejection::NothingToApprove),
                }
            }
        }
    }

    pub(super) fn evolve_gathering(&mut self, this: EntryId, event: &GatheringEvent) {
        match event {
            GatheringEvent::Created(spec) => {
                let attendance = spec
                    .roster
                    .iter()
                    .map(|&member| Attendance {
                        member,
                        checked_in: None,
                        checked_out: None,
                        record: None,
                    })
                    .collect();
                self.gatherings.insert(
                    spec.id,
                    GatheringState {
                        spec: (**spec).clone(),
                        attendance,
                        closed: false,
                    },
                );
            }
            GatheringEvent::CheckedIn {
                gathering,
                member,
                time,
            } => {
                if let Some(a) = self
                    .gatherings
                    .get_mut(gathering)
                    .and_then(|g| g.attendance_mut(*member))
                {
                    a.checked_in = Some(*time);
                }
            }
            GatheringEvent::CheckedOut {
                gathering,
                member,
                time,
                record,
            } => {
                if let Some(a) = self
                    .gatherings
                    .get_mut(gathering)
                    .and_then(|g| g.attendance_mut(*member))
                {
                    a.checked_out = Some(*time);
                    a.record = Some(record.id);
                }
                self.add_record(record);
            }
            GatheringEvent::Approved { gathering, awards } => {
                if let Some(g) = self.gatherings.get_mut(gathering) {
                    g.closed = true;
                }
                self.apply_awards(awards, 1);
                let fact = self.approval_fact(awards.iter().map(|a| a.record));
                self.facts.insert(this, fact);
            }
        }
    }
}
