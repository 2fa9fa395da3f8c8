//! The ledger: state, the command pipeline (validate, then commit) and replay.
//!
//! [`Ledger::apply`] runs every command through the same three steps:
//!
//! 1. **Idempotency.** A request id seen before returns the original outcome (same command)
//!    or [`Rejection::RequestIdReused`] (different command). Nothing is written.
//! 2. **Decide.** [`Ledger::decide`] reads the state and either produces the [`Event`] the
//!    command would record or the first [`Rejection`] in precedence order. It never mutates.
//! 3. **Commit.** The event is wrapped into a hash-chained [`Entry`] and folded into the
//!    state by `evolve`. Past this point nothing can fail: every check was made in step 2.
//!
//! Replay runs only step 3 over stored entries, checking the chain, which is why it is fast.

use crate::amount::{Amount, Minutes, Points, MAX_AMOUNT_MINOR};
use crate::command::{ActivityInput, Actor, Command, Request, RuleInput, ServiceInput, MAX_BATCH};
use crate::entry::{canonical_hash, Entry, Event, Hash, Reversal};
use crate::ids::{
    ActivityId, EntryId, MemberId, MerchantId, OrgUnitId, PoolId, RecordId, RequestId,
};
use crate::model::{
    ActivitySpec, Award, MemberKind, MerchantKind, MerchantStatus, OrgLevel, PoolKind,
    RecordStatus, Rule, ServiceRecord, TimeKind, COEFFICIENT_ONE_BP, MAX_COEFFICIENT_BP,
    MAX_SERVICE_MINUTES,
};
use crate::program::ProgramSpec;
use crate::rejection::Rejection;
use crate::table::{Flat, HasKey, Keyed, Log, Reader};
use crate::text::{check_card_code, check_name, check_reason};
use crate::time::Timestamp;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;
use std::collections::HashMap;
use std::sync::Arc;

type Map<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

fn new_map<K, V>() -> Map<K, V> {
    HashMap::with_hasher(foldhash::fast::FixedState::default())
}

/// The deepest an org unit may sit below its root.
pub const MAX_TREE_DEPTH: u8 = 16;
/// How far in the past or future a service record's start may be, relative to the entry.
pub const MAX_SERVICE_AGE_MS: i64 = 366 * 86_400_000;
/// How far in the future a service record's start may be (clock skew on recorders' devices).
pub const MAX_SERVICE_LEAD_MS: i64 = 86_400_000;

/// A parcel of points with one expiry. A member's lots are kept oldest expiry first, and
/// spending takes from the front.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lot {
    /// When the lot expires.
    pub expires_at: Timestamp,
    /// Points left in it.
    pub remaining: Points,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct OrgUnitState {
    pub(crate) parent: Option<OrgUnitId>,
    pub(crate) depth: u8,
    pub(crate) name: String,
    pub(crate) level: OrgLevel,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct MemberState {
    pub(crate) id: MemberId,
    /// Home org unit, as its index in the ledger's interned org unit ids.
    pub(crate) home: u32,
    pub(crate) kind: MemberKind,
    pub(crate) dual_registration: bool,
    pub(crate) balance: Points,
    pub(crate) credit_minutes: Minutes,
    pub(crate) honour_minutes: Minutes,
    pub(crate) lots: SmallVec<[Lot; 1]>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct MerchantState {
    pub(crate) org_unit: OrgUnitId,
    pub(crate) name: String,
    pub(crate) kind: MerchantKind,
    pub(crate) status: MerchantStatus,
    pub(crate) taken: Points,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PoolState {
    pub(crate) org_unit: OrgUnitId,
    pub(crate) name: String,
    pub(crate) kind: PoolKind,
    pub(crate) balance: Points,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RecordState {
    pub(crate) id: RecordId,
    /// The member's index.
    pub(crate) member: u32,
    /// The activity's interned index.
    pub(crate) activity: u32,
    /// The org unit's interned index.
    pub(crate) org_unit: u32,
    pub(crate) started_at: Timestamp,
    pub(crate) minutes: u32,
    pub(crate) status: RecordStatus,
    // The award, meaningful once approved. Kept flat rather than as `Option<Award>`
    // because there is one record per volunteer per occasion, so every byte counts.
    time_kind: TimeKind,
    award_minutes: u32,
    award_points: Points,
    expires_at: Timestamp,
}

impl RecordState {
    fn pending(
        id: RecordId,
        member: u32,
        activity: u32,
        org_unit: u32,
        record: &ServiceRecord,
    ) -> Self {
        RecordState {
            id,
            member,
            activity,
            org_unit,
            started_at: record.started_at,
            minutes: record.minutes,
            status: RecordStatus::Pending,
            time_kind: TimeKind::Honour,
            award_minutes: 0,
            award_points: Points::ZERO,
            expires_at: Timestamp::from_millis(0),
        }
    }

    fn record(&self, ledger: &Ledger) -> ServiceRecord {
        ServiceRecord {
            id: self.id,
            member: ledger.member_at(self.member).id,
            activity: ledger.activity_ids[self.activity as usize],
            org_unit: ledger.unit_ids[self.org_unit as usize],
            started_at: self.started_at,
            minutes: self.minutes,
        }
    }

    fn award(&self, ledger: &Ledger) -> Option<Award> {
        matches!(self.status, RecordStatus::Approved | RecordStatus::Reversed).then_some(Award {
            record: self.id,
            member: ledger.member_at(self.member).id,
            points: self.award_points,
            minutes: Minutes::new(i64::from(self.award_minutes)),
            time_kind: self.time_kind,
            expires_at: self.expires_at,
        })
    }

    fn set_award(&mut self, award: &Award) {
        self.time_kind = award.time_kind;
        self.award_minutes = u32::try_from(award.minutes.get()).unwrap_or(u32::MAX);
        self.award_points = award.points;
        self.expires_at = award.expires_at;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum HoldStatus {
    Open,
    Captured,
    Released,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct HoldState {
    pub(crate) member: u32,
    pub(crate) merchant: MerchantId,
    pub(crate) amount: Points,
    pub(crate) deadline: Timestamp,
    pub(crate) status: HoldStatus,
}

/// What the ledger remembers of entries that can later be refunded or reversed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum Fact {
    Spend {
        member: u32,
        merchant: MerchantId,
        taken: Points,
        refunded: Points,
        at: Timestamp,
        reversed: bool,
    },
    Approval {
        /// Positions of the approved records in the ledger's record table.
        records: Vec<u32>,
        reversed: bool,
    },
    Transfer {
        from: u32,
        to: u32,
        amount: Points,
        reversed: bool,
    },
    Donation {
        member: u32,
        pool: PoolId,
        amount: Points,
        at: Timestamp,
        reversed: bool,
    },
    Grant {
        pool: PoolId,
        member: u32,
        amount: Points,
        reversed: bool,
    },
}

impl Fact {
    fn reversed(&self) -> bool {
        match self {
            Fact::Spend { reversed, .. }
            | Fact::Approval { reversed, .. }
            | Fact::Transfer { reversed, .. }
            | Fact::Donation { reversed, .. }
            | Fact::Grant { reversed, .. } => *reversed,
        }
    }

    fn mark_reversed(&mut self) {
        match self {
            Fact::Spend { reversed, .. }
            | Fact::Approval { reversed, .. }
            | Fact::Transfer { reversed, .. }
            | Fact::Donation { reversed, .. }
            | Fact::Grant { reversed, .. } => *reversed = true,
        }
    }
}

/// Running totals of the programme's own accounts, kept so that overflow is checked on
/// every issue and so that the audit can compare them with the postings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Points ever issued less points reversed out of issuance.
    pub issued: Points,
    /// Points moved to the expiry sink.
    pub expired: Points,
    /// Credit minutes ever credited less reversed.
    pub credit_minutes: Minutes,
    /// Honour minutes ever credited less reversed.
    pub honour_minutes: Minutes,
}

/// The outcome of a successful [`Ledger::apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// A new entry was appended. The caller must make it durable before acknowledging.
    New(Entry),
    /// The request was seen before with the same command: nothing was written and the
    /// original entry stands.
    Duplicate {
        /// The original entry's sequence number.
        sequence: u64,
        /// The original entry's id.
        id: EntryId,
    },
}

impl Applied {
    /// The sequence number of the entry that answers the request.
    pub fn sequence(&self) -> u64 {
        match self {
            Applied::New(entry) => entry.sequence(),
            Applied::Duplicate { sequence, .. } => *sequence,
        }
    }

    /// The id of the entry that answers the request.
    pub fn entry_id(&self) -> EntryId {
        match self {
            Applied::New(entry) => entry.id(),
            Applied::Duplicate { id, .. } => *id,
        }
    }
}

/// A member's points and hours at an instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balance {
    /// The member.
    pub member: MemberId,
    /// All points held, including those reserved by open holds.
    pub balance: Points,
    /// Points reserved by holds still open and not lapsed at that instant.
    pub held: Points,
    /// Points the member can spend now: balance less held.
    pub available: Points,
    /// Credit minutes served, ever.
    pub credit_minutes: Minutes,
    /// Honour minutes served, ever.
    pub honour_minutes: Minutes,
    /// Star level reached by total service minutes.
    pub star_level: u8,
}

/// A member's reference data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberView {
    /// The member.
    pub id: MemberId,
    /// Home org unit.
    pub home: OrgUnitId,
    /// Resident or party member.
    pub kind: MemberKind,
    /// Dual registration.
    pub dual_registration: bool,
    /// Card code.
    pub card_code: Option<String>,
}

/// An org unit's reference data.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgUnitView {
    /// The unit.
    pub id: OrgUnitId,
    /// Its parent.
    pub parent: Option<OrgUnitId>,
    /// Its name.
    pub name: String,
    /// Its level.
    pub level: OrgLevel,
}

/// A merchant's reference data and unsettled points.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantView {
    /// The merchant.
    pub id: MerchantId,
    /// Where it is.
    pub org_unit: OrgUnitId,
    /// Its name.
    pub name: String,
    /// Partner or community supermarket.
    pub kind: MerchantKind,
    /// Active or suspended.
    pub status: MerchantStatus,
    /// Points taken and not yet settled.
    pub taken: Points,
}

/// A pool's reference data and balance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolView {
    /// The pool.
    pub id: PoolId,
    /// The org unit it serves.
    pub org_unit: OrgUnitId,
    /// Its name.
    pub name: String,
    /// Love bank or time bank.
    pub kind: PoolKind,
    /// Points in it.
    pub balance: Points,
}

/// A hold's current state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldView {
    /// The hold (its `HoldPlaced` entry id).
    pub id: EntryId,
    /// Whose points.
    pub member: MemberId,
    /// For which merchant.
    pub merchant: MerchantId,
    /// How much.
    pub amount: Points,
    /// When it lapses.
    pub deadline: Timestamp,
    /// Whether it is still open (not captured or released). A lapsed hold stays open until
    /// released but no longer counts against the balance.
    pub open: bool,
}

/// Why a journal cannot be replayed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// The journal is empty or does not begin with the programme's definition.
    #[error("the journal does not begin with a ProgramOpened entry")]
    NoGenesis,
    /// An entry's sequence number is not the next one.
    #[error("entry {found} found where entry {expected} was expected")]
    Sequence {
        /// The sequence expected.
        expected: u64,
        /// The sequence found.
        found: u64,
    },
    /// An entry's id is not the one derived from its programme and sequence.
    #[error("entry {sequence} has the wrong id")]
    Id {
        /// The entry at fault.
        sequence: u64,
    },
    /// An entry's hash does not match its content and the previous hash.
    #[error("entry {sequence}: hash mismatch (stored {stored}, computed {computed})")]
    Hash {
        /// The first entry at fault.
        sequence: u64,
        /// The hash stored with the entry.
        stored: Hash,
        /// The hash its content gives.
        computed: Hash,
    },
    /// A second ProgramOpened entry, or a programme definition that fails validation.
    #[error("entry {sequence}: invalid programme definition")]
    Program {
        /// The entry at fault.
        sequence: u64,
    },
}

/// The in-memory state of one programme's ledger.
///
/// Build one with [`Ledger::open`] (a new programme) or [`Ledger::replay`] (from a journal),
/// then feed it requests with [`Ledger::apply`]. It holds no journal: every new entry is
/// handed back to the caller to store.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Ledger {
    spec: ProgramSpec,
    entry_prefix: [u8; 8],
    next_sequence: u64,
    last_hash: Hash,
    last_at: Timestamp,
    org_units: Map<OrgUnitId, OrgUnitState>,
    /// Every org unit id the state refers to, interned: members and records keep the
    /// 4-byte index instead of the 16-byte id.
    unit_ids: Vec<OrgUnitId>,
    unit_index: Map<OrgUnitId, u32>,
    /// Every activity id the state refers to, interned like org units.
    activity_ids: Vec<ActivityId>,
    activity_index: Map<ActivityId, u32>,
    /// Members in enrolment order (the index is a member's `u32`), with an index by id.
    members: Keyed<MemberState>,
    card_codes: Map<Box<str>, u32>,
    /// Card codes by member index; most members have none, so they live outside the
    /// member table.
    member_cards: Map<u32, Box<str>>,
    /// Holds placed and neither captured nor released (some may have lapsed), by member
    /// index; kept outside the member table because most members have none.
    member_holds: Map<u32, Vec<EntryId>>,
    merchants: Map<MerchantId, MerchantState>,
    activities: Map<ActivityId, ActivitySpec>,
    pools: Map<PoolId, PoolState>,
    /// Service records in the order they were recorded, with an index by id.
    records: Keyed<RecordState>,
    holds: BySequence<HoldState>,
    facts: BySequence<Fact>,
    /// The request id and fingerprint of every entry, at its sequence number, with an
    /// index by request id.
    requests: Log<RequestSlot>,
    daily_points: Map<(MemberId, ActivityId, i32), Points>,
    yearly_donations: Map<(MemberId, i32), Points>,
    totals: Totals,
    /// Micro-wishes by id (issue 5).
    wishes: Map<crate::ids::WishId, wish::WishState>,
    /// Volunteer events (gatherings) by id (issue 5).
    gatherings: Map<crate::ids::GatheringId, gathering::GatheringState>,
    /// Catalogue items of every merchant by id (issue 5).
    items: Map<crate::ids::ItemId, catalogue::ItemState>,
    /// The money side: funds, rates, settlements (issue 6).
    pub(crate) settlement: crate::settlement::SettlementState,
    /// True only while `apply` commits an entry it has just validated, so that the
    /// postconditions that validation guarantees are asserted there and not during replay
    /// of a stored journal, which may be hostile and must never panic.
    #[serde(skip)]
    validated: bool,
}

/// A 64-bit fingerprint of who asked what, to recognise a retry of the same request.
///
/// It is XXH3-64 over the canonical encoding, not a cryptographic hash: it guards against
/// a request id reused by mistake for another command. A caller who deliberately crafted a
/// collision could only make its own second command be answered as a duplicate of its own
/// first, under its own request id; nobody else's points are affected. The journal's hash
/// chain, which is what makes records tamper-evident, is BLAKE3.
fn fingerprint(actor: &Actor, command: &Command) -> u64 {
    let mut buffer = [0u8; 384];
    let print = match crate::entry::encode_into(&(actor, command), &mut buffer) {
        Some(len) => xxhash_rust::xxh3::xxh3_64(&buffer[..len]),
        None => {
            // Requests larger than the buffer (bulk records) take the streaming path.
            let hash = canonical_hash(crate::entry::REQUEST_HASH_KEY, &[], &(actor, command));
            let mut out = [0u8; 8];
            out.copy_from_slice(&hash.0[..8]);
            u64::from_le_bytes(out)
        }
    };
    // The value that marks a replayed request is never a real fingerprint.
    if print == REPLAYED {
        0
    } else {
        print
    }
}

/// Whether a list names the same item twice. Short lists are compared pairwise; long ones
/// are sorted, so a 10,000-record approval stays cheap.
fn has_duplicates<T: Ord + Copy>(items: &[T]) -> bool {
    if items.len() <= 16 {
        items
            .iter()
            .enumerate()
            .any(|(i, a)| items[i + 1..].contains(a))
    } else {
        let mut sorted = items.to_vec();
        sorted.sort_unstable();
        sorted.windows(2).any(|w| w[0] == w[1])
    }
}

/// The index of `id` in `ids`, appending it (and indexing it) if it is new.
fn intern<K: Copy + Eq + std::hash::Hash>(ids: &mut Vec<K>, index: &mut Map<K, u32>, id: K) -> u32 {
    if let Some(&ix) = index.get(&id) {
        return ix;
    }
    let ix = u32::try_from(ids.len()).unwrap_or(u32::MAX);
    ids.push(id);
    index.insert(id, ix);
    ix
}

fn check_batch_len(len: usize) -> Result<(), Rejection> {
    if len == 0 {
        Err(Rejection::BatchEmpty)
    } else if len > MAX_BATCH {
        Err(Rejection::BatchTooLarge)
    } else {
        Ok(())
    }
}

fn check_optional_card(code: &Option<String>) -> Result<(), Rejection> {
    code.as_deref().map_or(Ok(()), check_card_code)
}

/// Converts a coefficient such as `1.5` to basis points, refusing zero, negatives, values
/// above 100 and more than four decimal places.
fn coefficient_bp(value: Decimal) -> Result<u32, Rejection> {
    let scaled = value
        .checked_mul(Decimal::from(COEFFICIENT_ONE_BP))
        .ok_or(Rejection::InvalidSetting)?;
    if scaled.fract() != Decimal::ZERO || scaled <= Decimal::ZERO {
        return Err(Rejection::InvalidSetting);
    }
    let bp: u32 = scaled
        .trunc()
        .try_into()
        .map_err(|_| Rejection::InvalidSetting)?;
    if bp > MAX_COEFFICIENT_BP {
        return Err(Rejection::InvalidSetting);
    }
    Ok(bp)
}

impl Ledger {
    /// Opens a new programme. Returns the ledger and its first entry (`ProgramOpened`),
    /// which the caller must store as sequence 0.
    pub fn open(
        spec: ProgramSpec,
        request_id: RequestId,
        actor: Actor,
        now: Timestamp,
    ) -> Result<(Ledger, Entry), Rejection> {
        spec.validate()?;
        if !now.in_supported_range() {
            return Err(Rejection::TimeOutOfRange);
        }
        let mut ledger = Ledger::empty(spec.clone());
        let event = Event::ProgramOpened(Box::new(spec));
        let entry = ledger.append(request_id, actor, now, event, 0);
        Ok((ledger, entry))
    }

    fn empty(spec: ProgramSpec) -> Ledger {
        let entry_prefix = EntryId::program_prefix(spec.id());
        Ledger {
            entry_prefix,
            spec,
            next_sequence: 0,
            last_hash: Hash::GENESIS,
            last_at: Timestamp::from_millis(i64::MIN),
            org_units: new_map(),
            unit_ids: Vec::new(),
            unit_index: new_map(),
            activity_ids: Vec::new(),
            activity_index: new_map(),
            members: Keyed::default(),
            card_codes: new_map(),
            member_cards: new_map(),
            member_holds: new_map(),
            merchants: new_map(),
            activities: new_map(),
            pools: new_map(),
            records: Keyed::default(),
            holds: BySequence::new(entry_prefix),
            facts: BySequence::new(entry_prefix),
            requests: Log::default(),
            daily_points: new_map(),
            yearly_donations: new_map(),
            totals: Totals::default(),
            wishes: new_map(),
            gatherings: new_map(),
            items: new_map(),
            settlement: Default::default(),
            validated: false,
        }
    }

    /// Rebuilds a ledger from its journal, checking sequence numbers, ids and the hash
    /// chain as it goes. The first fault stops the replay and names the entry.
    pub fn replay<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> Result<Ledger, ReplayError> {
        let mut entries = entries.into_iter();
        let first = entries.next().ok_or(ReplayError::NoGenesis)?;
        let Event::ProgramOpened(spec) = first.event() else {
            return Err(ReplayError::NoGenesis);
        };
        if spec.validate().is_err() {
            return Err(ReplayError::Program { sequence: 0 });
        }
        let mut ledger = Ledger::empty((**spec).clone());
        ledger.replay_one(first)?;
        ledger.replay_all(entries)?;
        Ok(ledger)
    }

    /// [`Ledger::replay_one`] for each entry in turn, stopping at the first fault (the
    /// entries before it stay applied). Faster than calling `replay_one` in a loop: it
    /// takes the entries in groups and starts loading the index slots a whole group will
    /// need before folding any of it, so that at a million members those cache misses
    /// overlap instead of each stalling the replay in turn.
    ///
    /// Starting them a group earlier, or starting the member states too (as the server's
    /// writer does for requests), measured no faster here: the state hint has to read the
    /// slot, which stalls when the slot has not landed yet.
    pub fn replay_all<'a>(
        &mut self,
        entries: impl IntoIterator<Item = &'a Entry>,
    ) -> Result<(), ReplayError> {
        let mut group: SmallVec<[&Entry; LOOKAHEAD]> = SmallVec::new();
        let mut entries = entries.into_iter().peekable();
        while entries.peek().is_some() {
            group.clear();
            group.extend(entries.by_ref().take(LOOKAHEAD));
            for entry in &group {
                self.touch_event(entry.event());
            }
            for entry in &group {
                self.replay_one(entry)?;
            }
        }
        Ok(())
    }

    /// Starts loading the index slots that folding `event` will read. Only a hint: it
    /// changes nothing, and a wrong or hostile event costs nothing but a wasted load.
    fn touch_event(&self, event: &Event) {
        let member = |id: &MemberId| self.members.touch(id.uuid().as_u128());
        match event {
            Event::MemberEnrolled { id, .. }
            | Event::MemberUpdated { id, .. }
            | Event::MemberMoved { id, .. } => member(id),
            Event::Redeemed { member: m, .. }
            | Event::HoldPlaced { member: m, .. }
            | Event::HoldCaptured { member: m, .. }
            | Event::HoldReleased { member: m, .. }
            | Event::Refunded { member: m, .. }
            | Event::Donated { member: m, .. }
            | Event::Granted { member: m, .. }
            | Event::Expired { member: m, .. } => member(m),
            Event::Transferred { from, to, .. } => {
                member(from);
                member(to);
            }
            // A batch's own fold loads ahead within the batch.
            _ => {}
        }
    }

    /// Starts loading the index slots that applying `request` will read: the request id's
    /// slot and, for a redemption or hold, the member's. Only a hint; it changes nothing.
    ///
    /// For a caller that applies a batch: at a million members each of those lookups is a
    /// cache miss that stalls `apply`. Hinting a group of about eight requests and then
    /// applying them lets the group's misses overlap, which makes redemptions in batches
    /// markedly faster than one at a time (see the core benchmark).
    pub fn prefetch(&self, request: &Request) {
        self.requests.touch(request.request_id.uuid().as_u128());
        match &request.command {
            Command::Redeem { member, .. } | Command::PlaceHold { member, .. } => {
                self.members.touch(member.uuid().as_u128());
            }
            Command::ApproveService { records } => {
                if let Some(first) = records.first() {
                    self.records.touch(first.uuid().as_u128());
                }
            }
            _ => {}
        }
    }

    /// The second step after [`Ledger::prefetch`]: once the index slots it started have
    /// landed, starts loading the member (or service record) state they point at, which
    /// applying `request` reads next. Only a hint; it changes nothing.
    ///
    /// Each lookup is two dependent misses, the slot and then the state. A caller that
    /// hints one group with `prefetch` while it applies the group before, then hints that
    /// group's states with this just before applying it, overlaps both.
    pub fn prefetch_state(&self, request: &Request) {
        match &request.command {
            Command::Redeem { member, .. } | Command::PlaceHold { member, .. } => {
                self.members.touch_item(member.uuid().as_u128());
            }
            Command::ApproveService { records } => {
                if let Some(first) = records.first() {
                    self.records.touch_item(first.uuid().as_u128());
                }
            }
            _ => {}
        }
    }

    /// Applies one stored entry after checking that it follows on: the next sequence
    /// number, the derived id and the chained hash. Use it to resume from a checkpoint.
    pub fn replay_one(&mut self, entry: &Entry) -> Result<(), ReplayError> {
        let expected = self.next_sequence;
        if entry.sequence() != expected {
            return Err(ReplayError::Sequence {
                expected,
                found: entry.sequence(),
            });
        }
        if entry.id() != EntryId::from_prefix(self.entry_prefix, expected) {
            return Err(ReplayError::Id { sequence: expected });
        }
        let computed = entry.compute_hash(&self.last_hash);
        if computed != entry.hash() {
            return Err(ReplayError::Hash {
                sequence: expected,
                stored: entry.hash(),
                computed,
            });
        }
        if matches!(entry.event(), Event::ProgramOpened(_)) != (expected == 0) {
            return Err(ReplayError::Program { sequence: expected });
        }
        // Replay cannot recompute the request fingerprint from the event alone, so stored
        // entries carry none; a replayed request id is remembered with a fingerprint that
        // matches nothing, and `apply` treats it via `seen_request` below.
        self.commit(entry, None);
        Ok(())
    }

    /// The whole state in a compact binary form, for a store's checkpoint. Restoring it
    /// with [`Ledger::from_snapshot`] and replaying the entries after it gives the same
    /// ledger as replaying the whole journal.
    ///
    /// The big tables (members, service records, request ids) are flat little-endian byte
    /// strings, so restoring them is a copy and a bounds-checked parse, not a rebuild of
    /// hash maps. The bytes begin with a format tag: a snapshot of the format before this
    /// one restores with its id indexes rebuilt, and one of any other format is refused
    /// by [`Ledger::from_snapshot`] (a server then replays the whole journal).
    pub fn snapshot(&self) -> Vec<u8> {
        self.snapshot_with_capacity(0)
    }

    /// [`Ledger::snapshot`] into a buffer that starts with room for `capacity_bytes`. At a
    /// million members a snapshot is hundreds of megabytes, and a buffer grown by doubling
    /// copies it about once more and touches twice the memory; a caller that knows the
    /// last snapshot's size can pass a little more than that and save both.
    pub fn snapshot_with_capacity(&self, capacity_bytes: usize) -> Vec<u8> {
        // Encoding plain data into a growable buffer cannot fail.
        postcard::serialize_with_flavor(
            &(SNAPSHOT_FORMAT, self),
            SnapshotBuffer(Vec::with_capacity(capacity_bytes)),
        )
        .unwrap_or_default()
    }

    /// A copy of the ledger for writing a snapshot elsewhere (on a checkpoint thread, say),
    /// cheaper than `clone`: it leaves out the index over request ids, which a snapshot does
    /// not hold (tens of megabytes at millions of entries, copied for nothing). The copy is
    /// a whole ledger all the same: used live, it rebuilds that index on its first request,
    /// as a replayed ledger does.
    pub fn copy_for_snapshot(&self) -> Ledger {
        // Every field named, so that a new one cannot be left out of the copy unnoticed.
        let Ledger {
            spec,
            entry_prefix,
            next_sequence,
            last_hash,
            last_at,
            org_units,
            unit_ids,
            unit_index,
            activity_ids,
            activity_index,
            members,
            card_codes,
            member_cards,
            member_holds,
            merchants,
            activities,
            pools,
            records,
            holds,
            facts,
            requests,
            daily_points,
            yearly_donations,
            totals,
            wishes,
            gatherings,
            items,
            settlement,
            validated,
        } = self;
        Ledger {
            spec: spec.clone(),
            entry_prefix: *entry_prefix,
            next_sequence: *next_sequence,
            last_hash: *last_hash,
            last_at: *last_at,
            org_units: org_units.clone(),
            unit_ids: unit_ids.clone(),
            unit_index: unit_index.clone(),
            activity_ids: activity_ids.clone(),
            activity_index: activity_index.clone(),
            members: members.clone(),
            card_codes: card_codes.clone(),
            member_cards: member_cards.clone(),
            member_holds: member_holds.clone(),
            merchants: merchants.clone(),
            activities: activities.clone(),
            pools: pools.clone(),
            records: records.clone(),
            holds: holds.clone(),
            facts: facts.clone(),
            requests: requests.clone_unindexed(),
            daily_points: daily_points.clone(),
            yearly_donations: yearly_donations.clone(),
            totals: *totals,
            wishes: wishes.clone(),
            gatherings: gatherings.clone(),
            items: items.clone(),
            settlement: settlement.clone(),
            validated: *validated,
        }
    }

    /// [`Ledger::snapshot`] handed to `sink` in order, a piece at a time, instead of gathered
    /// into one buffer: the pieces joined are exactly the bytes `snapshot` returns. Small
    /// fields are gathered into pieces of `piece_bytes`; a table at least that long goes to
    /// the sink as it is. A caller that writes the pieces to a file never holds the whole
    /// snapshot (hundreds of megabytes at a million members) in memory, nor pays for the
    /// fresh pages such a buffer needs.
    pub fn snapshot_into(&self, piece_bytes: usize, sink: impl FnMut(&[u8])) {
        let piece_bytes = piece_bytes.max(1);
        let pieces = SnapshotPieces {
            buffer: Vec::with_capacity(piece_bytes),
            piece_bytes,
            sink,
        };
        // The flavour never refuses bytes, and plain data always encodes.
        let encoded = postcard::serialize_with_flavor(&(SNAPSHOT_FORMAT, self), pieces);
        debug_assert!(encoded.is_ok(), "a snapshot always encodes");
    }

    /// Restores a ledger from [`Ledger::snapshot`] bytes. Malformed, truncated or
    /// inconsistent bytes, or a snapshot of another format, are an error, never a panic.
    pub fn from_snapshot(bytes: &[u8]) -> Result<Ledger, crate::entry::DecodeError> {
        let error = |m: &str| crate::entry::DecodeError::new(m.to_owned());
        let (format, mut ledger): ([u8; 8], Ledger) = postcard::from_bytes(bytes)
            .map_err(|e| crate::entry::DecodeError::new(e.to_string()))?;
        if format == PREVIOUS_SNAPSHOT_FORMAT {
            // The same state with id indexes of another slot layout: rebuild them.
            ledger.members.reindex();
            ledger.records.reindex();
        } else if format != SNAPSHOT_FORMAT {
            return Err(error("snapshot of another format"));
        }
        ledger.check_restored().map_err(error)?;
        Ok(ledger)
    }

    /// The checks a restored snapshot must pass so that no later read or fold can index
    /// out of bounds: one request per entry, and every stored index in range.
    fn check_restored(&self) -> Result<(), &'static str> {
        if self.requests.len() as u64 != self.next_sequence {
            return Err("snapshot: request table does not match the journal length");
        }
        if !(self.members.consistent() && self.records.consistent()) {
            return Err("snapshot: index larger than its table");
        }
        if self.unit_ids.len() != self.unit_index.len()
            || self.activity_ids.len() != self.activity_index.len()
            || self
                .unit_index
                .values()
                .any(|&ix| self.unit_ids.get(ix as usize).is_none())
            || self
                .activity_index
                .values()
                .any(|&ix| self.activity_ids.get(ix as usize).is_none())
        {
            return Err("snapshot: interned ids out of range");
        }
        let members = self.members.len();
        let units = self.unit_ids.len();
        if self
            .members
            .items()
            .iter()
            .any(|m| m.home as usize >= units)
        {
            return Err("snapshot: member home out of range");
        }
        let activities = self.activity_ids.len();
        let records = self.records.len();
        if self.records.items().iter().any(|r| {
            r.member as usize >= members
                || r.activity as usize >= activities
                || r.org_unit as usize >= units
        }) {
            return Err("snapshot: service record refers out of range");
        }
        let member_ok = |m: u32| (m as usize) < members;
        let facts_ok = self.facts.entries().all(|(_, f)| match f {
            Fact::Spend { member, .. }
            | Fact::Donation { member, .. }
            | Fact::Grant { member, .. } => member_ok(*member),
            Fact::Transfer { from, to, .. } => member_ok(*from) && member_ok(*to),
            Fact::Approval { records: r, .. } => r.iter().all(|&p| (p as usize) < records),
        });
        let holds_ok = self.holds.entries().all(|(_, h)| member_ok(h.member))
            && self.member_holds.keys().all(|&m| member_ok(m))
            && self.member_cards.keys().all(|&m| member_ok(m))
            && self.card_codes.values().all(|&m| member_ok(m));
        fn sorted(mut s: impl Iterator<Item = u64>) -> bool {
            let mut last = None;
            s.all(|x| {
                let ok = last.is_none_or(|l| l < x);
                last = Some(x);
                ok
            })
        }
        if !facts_ok || !holds_ok {
            return Err("snapshot: member index out of range");
        }
        if !sorted(self.facts.entries().map(|(s, _)| *s))
            || !sorted(self.holds.entries().map(|(s, _)| *s))
        {
            return Err("snapshot: facts out of order");
        }
        Ok(())
    }

    /// The programme definition.
    pub fn spec(&self) -> &ProgramSpec {
        &self.spec
    }

    /// The sequence number the next entry will get (the journal's length).
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// The hash of the last entry (the journal's head).
    pub fn head_hash(&self) -> Hash {
        self.last_hash
    }

    /// The time of the last entry.
    pub fn last_at(&self) -> Timestamp {
        self.last_at
    }

    /// The programme's running totals.
    pub fn totals(&self) -> Totals {
        self.totals
    }

    /// Applies a request at `now`: one new entry, the original entry for a retry, or a
    /// rejection. On rejection nothing changes.
    ///
    /// `now` is the caller's clock. The ledger never lets time run backwards: an entry is
    /// stamped with the later of `now` and the previous entry's time, so several writers
    /// with slightly different clocks still produce a monotonic journal.
    pub fn apply(&mut self, request: &Request, now: Timestamp) -> Result<Applied, Rejection> {
        // At a million members the request index, the member index and the record index
        // are cache (and TLB) misses; start the loads now so that they overlap each other
        // and the fingerprint.
        self.requests.index_all();
        self.prefetch(request);
        let print = fingerprint(&request.actor, &request.command);
        if let Some(sequence) = self.requests.position(request.request_id.uuid().as_u128()) {
            // The index found the id by reading this slot, so it is there.
            let stored = self.requests.get(sequence).map(|slot| slot.print);
            let sequence = sequence as u64;
            return if stored == Some(print) || stored == Some(REPLAYED) {
                // A request replayed from storage has no fingerprint in memory; the store
                // compares fingerprints it keeps (see `request_fingerprint`).
                Ok(Applied::Duplicate {
                    sequence,
                    id: EntryId::from_prefix(self.entry_prefix, sequence),
                })
            } else {
                Err(Rejection::RequestIdReused)
            };
        }
        let at = now.max(self.last_at);
        let event = self.decide(request, at)?;
        let entry = self.append(request.request_id, request.actor, at, event, print);
        Ok(Applied::New(entry))
    }

    /// The fingerprint to restore for a request whose real fingerprint is not known (for
    /// example, stored by an older version): a retry with the same request id is then
    /// answered as a duplicate whatever its command.
    pub const UNKNOWN_FINGERPRINT: u64 = REPLAYED;

    /// The fingerprint the ledger keeps for a request, so that a store can persist it
    /// beside the entry and restore it with [`Ledger::restore_fingerprint`].
    pub fn request_fingerprint(request: &Request) -> u64 {
        fingerprint(&request.actor, &request.command)
    }

    /// The fingerprint kept for the request of entry `sequence`: for an entry this ledger
    /// applied, what [`Ledger::request_fingerprint`] gives for its request, without
    /// encoding and hashing the request again; for a replayed entry, the restored one or
    /// [`Ledger::UNKNOWN_FINGERPRINT`]. `None` past the journal's end.
    pub fn fingerprint_of(&self, sequence: u64) -> Option<u64> {
        let position = usize::try_from(sequence).ok()?;
        self.requests.get(position).map(|slot| slot.print)
    }

    /// Restores the fingerprint of a replayed request, so that a retry with a different
    /// command after a restart is still refused.
    pub fn restore_fingerprint(&mut self, request_id: RequestId, print: u64) {
        self.requests.index_all();
        let position = self.requests.position(request_id.uuid().as_u128());
        if let Some(slot) = position.and_then(|p| self.requests.at_mut(p)) {
            slot.print = print;
        }
    }

    fn append(
        &mut self,
        request_id: RequestId,
        actor: Actor,
        at: Timestamp,
        event: Event,
        print: u64,
    ) -> Entry {
        let sequence = self.next_sequence;
        let id = EntryId::from_prefix(self.entry_prefix, sequence);
        let entry = Entry::new(sequence, id, request_id, actor, at, event, &self.last_hash);
        self.validated = true;
        self.commit(&entry, Some(print));
        self.validated = false;
        entry
    }

    // ------------------------------------------------------------------------------------
    // Reads
    // ------------------------------------------------------------------------------------

    fn member_ix(&self, id: MemberId) -> Result<u32, Rejection> {
        self.ix(id).ok_or(Rejection::UnknownMember)
    }

    fn member_at(&self, ix: u32) -> &MemberState {
        &self.members.items()[ix as usize]
    }

    /// The id of an interned org unit.
    pub(crate) fn unit_id(&self, ix: u32) -> OrgUnitId {
        self.unit_ids[ix as usize]
    }

    /// The index of an org unit id, interning it if it is new.
    fn intern_unit(&mut self, id: OrgUnitId) -> u32 {
        intern(&mut self.unit_ids, &mut self.unit_index, id)
    }

    /// The index of an activity id, interning it if it is new.
    fn intern_activity(&mut self, id: ActivityId) -> u32 {
        intern(&mut self.activity_ids, &mut self.activity_index, id)
    }

    /// The activity a record was served under.
    fn record_activity(&self, record: &RecordState) -> Option<&ActivitySpec> {
        let id = self.activity_ids.get(record.activity as usize)?;
        self.activities.get(id)
    }

    /// A service record's state by id.
    pub(crate) fn record_state(&self, id: &RecordId) -> Option<&RecordState> {
        self.records.get(id.uuid().as_u128())
    }

    /// Adds a pending service record (replacing one with the same id). A record of a
    /// member the ledger does not know (possible only in a hostile journal) is not kept.
    pub(crate) fn add_record(&mut self, record: &ServiceRecord) {
        let Some(member) = self.ix(record.member) else {
            return;
        };
        let activity = self.intern_activity(record.activity);
        let org_unit = self.intern_unit(record.org_unit);
        self.records.upsert(RecordState::pending(
            record.id, member, activity, org_unit, record,
        ));
    }

    /// The facts of an approval: the positions of its records.
    pub(crate) fn approval_fact(&self, records: impl Iterator<Item = RecordId>) -> Fact {
        Fact::Approval {
            records: records
                .filter_map(|id| self.records.position(id.uuid().as_u128()))
                .filter_map(|p| u32::try_from(p).ok())
                .collect(),
            reversed: false,
        }
    }

    /// Points reserved by open holds that have not lapsed at `at`.
    fn held(&self, member: u32, at: Timestamp) -> Points {
        let Some(holds) = self.member_holds.get(&member) else {
            return Points::ZERO;
        };
        holds
            .iter()
            .filter_map(|id| self.holds.get(id))
            .filter(|h| h.status == HoldStatus::Open && at < h.deadline)
            .fold(Points::ZERO, |sum, h| {
                sum.checked_add(h.amount).unwrap_or(sum)
            })
    }

    fn available(&self, ix: u32, at: Timestamp) -> Points {
        let member = self.member_at(ix);
        member
            .balance
            .checked_sub(self.held(ix, at))
            .unwrap_or(Points::ZERO)
    }

    /// A member's balance, holds and hours at `now`.
    pub fn balance(&self, member: MemberId, now: Timestamp) -> Option<Balance> {
        let ix = self.ix(member)?;
        let state = self.member_at(ix);
        let held = self.held(ix, now);
        let total = state
            .credit_minutes
            .checked_add(state.honour_minutes)
            .unwrap_or_default();
        Some(Balance {
            member,
            balance: state.balance,
            held,
            available: state.balance.checked_sub(held).unwrap_or(Points::ZERO),
            credit_minutes: state.credit_minutes,
            honour_minutes: state.honour_minutes,
            star_level: self.spec.stars().level(total.get()),
        })
    }

    /// [`Ledger::balance`] of each member in turn, for a caller that answers many at once
    /// (a batch's answers show each member's available points). Faster than asking one at
    /// a time: at a million members each lookup costs two dependent cache misses (the
    /// index slot, then the member it points at), and here the loads for members further
    /// down the list start while earlier ones are read, so the misses overlap.
    pub fn balances(&self, members: &[MemberId], now: Timestamp) -> Vec<Option<Balance>> {
        let key = |i: usize| members.get(i).map(|m| m.uuid().as_u128());
        for k in (0..2 * BALANCE_AHEAD).filter_map(key) {
            self.members.touch(k);
        }
        for k in (0..BALANCE_AHEAD).filter_map(key) {
            self.members.touch_item(k);
        }
        members
            .iter()
            .enumerate()
            .map(|(i, &member)| {
                // The slot loaded `BALANCE_AHEAD` members ago tells which item to load; the
                // slot for the member as far again ahead starts now.
                if let Some(k) = key(i + BALANCE_AHEAD) {
                    self.members.touch_item(k);
                }
                if let Some(k) = key(i + 2 * BALANCE_AHEAD) {
                    self.members.touch(k);
                }
                self.balance(member, now)
            })
            .collect()
    }

    /// The member with this card code.
    pub fn member_by_card(&self, code: &str) -> Option<MemberId> {
        self.card_codes.get(code).map(|&ix| self.member_at(ix).id)
    }

    /// A member's reference data.
    pub fn member(&self, id: MemberId) -> Option<MemberView> {
        let ix = self.ix(id)?;
        let state = self.member_at(ix);
        Some(MemberView {
            id,
            home: self.unit_id(state.home),
            kind: state.kind,
            dual_registration: state.dual_registration,
            card_code: self.member_cards.get(&ix).map(|c| c.to_string()),
        })
    }

    /// A member's lots, oldest expiry first.
    pub fn lots(&self, id: MemberId) -> Option<&[Lot]> {
        Some(&self.member_at(self.ix(id)?).lots)
    }

    /// Every member id, in enrolment order.
    pub fn member_ids(&self) -> impl Iterator<Item = MemberId> + '_ {
        self.members.items().iter().map(|m| m.id)
    }

    /// How many members are enrolled.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// An org unit.
    pub fn org_unit(&self, id: OrgUnitId) -> Option<OrgUnitView> {
        self.org_units.get(&id).map(|u| OrgUnitView {
            id,
            parent: u.parent,
            name: u.name.clone(),
            level: u.level,
        })
    }

    /// Every org unit, sorted by id.
    pub fn org_units(&self) -> Vec<OrgUnitView> {
        let mut out: Vec<_> = self
            .org_units
            .keys()
            .filter_map(|&id| self.org_unit(id))
            .collect();
        out.sort_by_key(|u| u.id);
        out
    }

    /// Whether `unit` is `root` or lies below it.
    pub fn is_within(&self, unit: OrgUnitId, root: OrgUnitId) -> bool {
        let mut current = Some(unit);
        let mut steps = 0;
        while let Some(id) = current {
            if id == root {
                return true;
            }
            steps += 1;
            if steps > usize::from(MAX_TREE_DEPTH) + 1 {
                return false;
            }
            current = self.org_units.get(&id).and_then(|u| u.parent);
        }
        false
    }

    /// A merchant.
    pub fn merchant(&self, id: MerchantId) -> Option<MerchantView> {
        self.merchants.get(&id).map(|m| MerchantView {
            id,
            org_unit: m.org_unit,
            name: m.name.clone(),
            kind: m.kind,
            status: m.status,
            taken: m.taken,
        })
    }

    /// Every merchant, sorted by id.
    pub fn merchants(&self) -> Vec<MerchantView> {
        let mut out: Vec<_> = self
            .merchants
            .keys()
            .filter_map(|&id| self.merchant(id))
            .collect();
        out.sort_by_key(|m| m.id);
        out
    }

    /// An activity.
    pub fn activity(&self, id: ActivityId) -> Option<&ActivitySpec> {
        self.activities.get(&id)
    }

    /// Every activity, sorted by id.
    pub fn activities(&self) -> Vec<&ActivitySpec> {
        let mut out: Vec<_> = self.activities.values().collect();
        out.sort_by_key(|a| a.id);
        out
    }

    /// A pool.
    pub fn pool(&self, id: PoolId) -> Option<PoolView> {
        self.pools.get(&id).map(|p| PoolView {
            id,
            org_unit: p.org_unit,
            name: p.name.clone(),
            kind: p.kind,
            balance: p.balance,
        })
    }

    /// Every pool, sorted by id.
    pub fn pools(&self) -> Vec<PoolView> {
        let mut out: Vec<_> = self.pools.keys().filter_map(|&id| self.pool(id)).collect();
        out.sort_by_key(|p| p.id);
        out
    }

    /// A service record and where it stands.
    pub fn record(&self, id: RecordId) -> Option<(ServiceRecord, RecordStatus, Option<Award>)> {
        self.record_state(&id)
            .map(|r| (r.record(self), r.status, r.award(self)))
    }

    /// A hold.
    pub fn hold(&self, id: EntryId) -> Option<HoldView> {
        self.holds.get(&id).map(|h| HoldView {
            id,
            member: self.member_at(h.member).id,
            merchant: h.merchant,
            amount: h.amount,
            deadline: h.deadline,
            open: h.status == HoldStatus::Open,
        })
    }

    /// Members holding lots that have expired by `now`, for an expiry sweep.
    pub fn members_with_expired_lots(&self, now: Timestamp) -> Vec<MemberId> {
        self.members
            .items()
            .iter()
            .filter(|m| m.lots.first().is_some_and(|lot| lot.expires_at <= now))
            .map(|m| m.id)
            .collect()
    }

    pub(crate) fn members_raw(&self) -> &[MemberState] {
        self.members.items()
    }
    pub(crate) fn merchants_raw(&self) -> &Map<MerchantId, MerchantState> {
        &self.merchants
    }
    pub(crate) fn pools_raw(&self) -> &Map<PoolId, PoolState> {
        &self.pools
    }
    pub(crate) fn holds_raw(&self) -> &BySequence<HoldState> {
        &self.holds
    }

    // ------------------------------------------------------------------------------------
    // Decide: validation in precedence order, no mutation
    // ------------------------------------------------------------------------------------

    fn points(&self, amount: Amount) -> Result<Points, Rejection> {
        Ok(amount.to_points(self.spec.scale())?)
    }

    fn unit_exists(&self, id: OrgUnitId) -> Result<(), Rejection> {
        if self.org_units.contains_key(&id) {
            Ok(())
        } else {
            Err(Rejection::UnknownOrgUnit)
        }
    }

    /// Admins may do anything; recorders only inside their subtree; nobody else.
    pub(crate) fn allow_in(&self, actor: &Actor, unit: OrgUnitId) -> Result<(), Rejection> {
        match actor {
            Actor::Admin { .. } => Ok(()),
            Actor::Recorder { org_unit, .. } if self.is_within(unit, *org_unit) => Ok(()),
            _ => Err(Rejection::ActorNotAllowed),
        }
    }

    /// Admins, or the merchant's own point-of-sale.
    fn allow_merchant(&self, actor: &Actor, merchant: MerchantId) -> Result<(), Rejection> {
        match actor {
            Actor::Admin { .. } => Ok(()),
            Actor::Merchant { merchant: own, .. } if *own == merchant => Ok(()),
            _ => Err(Rejection::ActorNotAllowed),
        }
    }

    fn active_merchant(&self, id: MerchantId) -> Result<&MerchantState, Rejection> {
        self.merchants.get(&id).ok_or(Rejection::UnknownMerchant)
    }

    fn credit_fits(current: Points, amount: Points) -> Result<(), Rejection> {
        current
            .checked_add(amount)
            .map(|_| ())
            .ok_or(Rejection::BalanceOverflow)
    }

    fn ensure_available(
        &self,
        member: u32,
        amount: Points,
        at: Timestamp,
    ) -> Result<(), Rejection> {
        if self.available(member, at) < amount {
            Err(Rejection::InsufficientPoints)
        } else {
            Ok(())
        }
    }

    fn expiry_from(&self, earned_at: Timestamp) -> Timestamp {
        self.spec
            .expiry()
            .expires_at(earned_at, self.spec.utc_offset_minutes())
    }

    /// Checks a request against the state at `at` and returns the event it would record,
    /// or the first rejection in precedence order. Never mutates.
    pub fn decide(&self, request: &Request, at: Timestamp) -> Result<Event, Rejection> {
        let actor = &request.actor;
        match &request.command {
            Command::CreateOrgUnit {
                id,
                parent,
                name,
                level,
            } => {
                check_name(name)?;
                if let Some(parent) = parent {
                    self.unit_exists(*parent)?;
                }
                if self.org_units.contains_key(id) {
                    return Err(Rejection::AlreadyExists);
                }
                let depth = match parent {
                    Some(p) => self.org_units.get(p).map_or(0, |u| u.depth + 1),
                    None => 0,
                };
                if depth > MAX_TREE_DEPTH {
                    return Err(Rejection::TreeTooDeep);
                }
                match parent {
                    Some(parent) => self.allow_in(actor, *parent)?,
                    None if matches!(actor, Actor::Admin { .. }) => {}
                    None => return Err(Rejection::ActorNotAllowed),
                }
                Ok(Event::OrgUnitCreated {
                    id: *id,
                    parent: *parent,
                    name: name.clone(),
                    level: *level,
                })
            }
            Command::EnrolMember {
                id,
                home,
                kind,
                dual_registration,
                card_code,
            } => {
                check_optional_card(card_code)?;
                self.unit_exists(*home)?;
                if self.ix(*id).is_some() {
                    return Err(Rejection::AlreadyExists);
                }
                if card_code
                    .as_deref()
                    .is_some_and(|c| self.card_codes.contains_key(c))
                {
                    return Err(Rejection::CardCodeTaken);
                }
                self.allow_in(actor, *home)?;
                Ok(Event::MemberEnrolled {
                    id: *id,
                    home: *home,
                    kind: *kind,
                    dual_registration: *dual_registration,
                    card_code: card_code.clone(),
                })
            }
            Command::UpdateMember {
                id,
                kind,
                dual_registration,
                card_code,
            } => {
                check_optional_card(card_code)?;
                let ix = self.member_ix(*id)?;
                if let Some(code) = card_code.as_deref() {
                    if self.card_codes.get(code).is_some_and(|&other| other != ix) {
                        return Err(Rejection::CardCodeTaken);
                    }
                }
                self.allow_in(actor, self.unit_id(self.member_at(ix).home))?;
                Ok(Event::MemberUpdated {
                    id: *id,
                    kind: *kind,
                    dual_registration: *dual_registration,
                    card_code: card_code.clone(),
                })
            }
            Command::MoveMember { id, home } => {
                self.unit_exists(*home)?;
                let ix = self.member_ix(*id)?;
                let from = self.unit_id(self.member_at(ix).home);
                if from == *home {
                    return Err(Rejection::SameAccount);
                }
                self.allow_in(actor, from)?;
                self.allow_in(actor, *home)?;
                Ok(Event::MemberMoved {
                    id: *id,
                    from,
                    to: *home,
                })
            }
            Command::RegisterMerchant {
                id,
                org_unit,
                name,
                kind,
            } => {
                check_name(name)?;
                self.unit_exists(*org_unit)?;
                if self.merchants.contains_key(id) {
                    return Err(Rejection::AlreadyExists);
                }
                self.allow_in(actor, *org_unit)?;
                Ok(Event::MerchantRegistered {
                    id: *id,
                    org_unit: *org_unit,
                    name: name.clone(),
                    kind: *kind,
                })
            }
            Command::SetMerchantStatus { id, status } => {
                let merchant = self.active_merchant(*id)?;
                self.allow_in(actor, merchant.org_unit)?;
                Ok(Event::MerchantStatusChanged {
                    id: *id,
                    status: *status,
                })
            }
            Command::DefineActivity(input) => self.decide_activity(actor, input),
            Command::CreatePool {
                id,
                org_unit,
                name,
                kind,
            } => {
                check_name(name)?;
                self.unit_exists(*org_unit)?;
                if self.pools.contains_key(id) {
                    return Err(Rejection::AlreadyExists);
                }
                self.allow_in(actor, *org_unit)?;
                Ok(Event::PoolCreated {
                    id: *id,
                    org_unit: *org_unit,
                    name: name.clone(),
                    kind: *kind,
                })
            }
            Command::RecordService { records } => self.decide_record(actor, records, at),
            Command::ApproveService { records } => self.decide_approve(actor, records, at),
            Command::RejectService { records, reason } => {
                check_reason(reason)?;
                self.check_pending(actor, records)?;
                Ok(Event::ServiceRejected {
                    records: records.clone(),
                    reason: reason.clone(),
                })
            }
            Command::Redeem {
                member,
                merchant,
                amount,
            } => {
                let amount = self.points(*amount)?;
                let ix = self.member_ix(*member)?;
                let state = self.active_merchant(*merchant)?;
                self.allow_merchant(actor, *merchant)?;
                if state.status == MerchantStatus::Suspended {
                    return Err(Rejection::MerchantSuspended);
                }
                crate::settlement::check_spend(self, *merchant, amount, at)?;
                self.ensure_available(ix, amount, at)?;
                Self::credit_fits(state.taken, amount)?;
                Ok(Event::Redeemed {
                    member: *member,
                    merchant: *merchant,
                    amount,
                })
            }
            Command::PlaceHold {
                member,
                merchant,
                amount,
                ttl_ms,
            } => {
                let amount = self.points(*amount)?;
                if *ttl_ms == 0 || *ttl_ms > self.spec.max_hold_ttl_ms() {
                    return Err(Rejection::DurationOutOfRange);
                }
                let ix = self.member_ix(*member)?;
                let state = self.active_merchant(*merchant)?;
                self.allow_merchant(actor, *merchant)?;
                if state.status == MerchantStatus::Suspended {
                    return Err(Rejection::MerchantSuspended);
                }
                self.ensure_available(ix, amount, at)?;
                let ttl = i64::try_from(*ttl_ms).map_err(|_| Rejection::DurationOutOfRange)?;
                let deadline = at.saturating_add_millis(ttl);
                Ok(Event::HoldPlaced {
                    member: *member,
                    merchant: *merchant,
                    amount,
                    deadline,
                })
            }
            Command::CaptureHold { hold, amount } => {
                let amount = amount.map(|a| self.points(a)).transpose()?;
                let state = self.holds.get(hold).ok_or(Rejection::UnknownHold)?;
                self.allow_merchant(actor, state.merchant)?;
                if state.status != HoldStatus::Open {
                    return Err(Rejection::HoldNotOpen);
                }
                if at >= state.deadline {
                    return Err(Rejection::HoldExpired);
                }
                let amount = amount.unwrap_or(state.amount);
                if amount > state.amount {
                    return Err(Rejection::CaptureOverHold);
                }
                let merchant = self.active_merchant(state.merchant)?;
                crate::settlement::check_spend(self, state.merchant, amount, at)?;
                Self::credit_fits(merchant.taken, amount)?;
                debug_assert!(self.member_at(state.member).balance >= amount);
                Ok(Event::HoldCaptured {
                    hold: *hold,
                    member: self.member_at(state.member).id,
                    merchant: state.merchant,
                    amount,
                })
            }
            Command::ReleaseHold { hold } => {
                let state = self.holds.get(hold).ok_or(Rejection::UnknownHold)?;
                self.allow_merchant(actor, state.merchant)?;
                if state.status != HoldStatus::Open {
                    return Err(Rejection::HoldNotOpen);
                }
                Ok(Event::HoldReleased {
                    hold: *hold,
                    member: self.member_at(state.member).id,
                    merchant: state.merchant,
                })
            }
            Command::Refund { entry, amount } => {
                let amount = self.points(*amount)?;
                let Some(Fact::Spend {
                    member,
                    merchant,
                    taken,
                    refunded,
                    at: spent_at,
                    reversed,
                }) = self.facts.get(entry)
                else {
                    return Err(Rejection::UnknownEntry);
                };
                self.allow_merchant(actor, *merchant)?;
                if *reversed {
                    return Err(Rejection::AlreadyReversed);
                }
                let left = taken.checked_sub(*refunded).unwrap_or(Points::ZERO);
                if amount > left {
                    return Err(Rejection::RefundOverTaken);
                }
                let member_state = self.member_at(*member);
                Self::credit_fits(member_state.balance, amount)?;
                Ok(Event::Refunded {
                    of: *entry,
                    member: member_state.id,
                    merchant: *merchant,
                    amount,
                    expires_at: self.expiry_from(*spent_at),
                })
            }
            Command::Reverse { entry, reason } => self.decide_reverse(actor, *entry, reason, at),
            Command::Settlement(command) => crate::settlement::decide(self, actor, command, at),
            Command::Transfer { from, to, amount } => {
                let amount = self.points(*amount)?;
                if from == to {
                    return Err(Rejection::SameAccount);
                }
                let from_ix = self.member_ix(*from)?;
                let to_ix = self.member_ix(*to)?;
                self.allow_in(actor, self.unit_id(self.member_at(from_ix).home))?;
                self.ensure_available(from_ix, amount, at)?;
                Self::credit_fits(self.member_at(to_ix).balance, amount)?;
                Ok(Event::Transferred {
                    from: *from,
                    to: *to,
                    amount,
                })
            }
            Command::Donate {
                member,
                pool,
                amount,
            } => {
                let amount = self.points(*amount)?;
                let ix = self.member_ix(*member)?;
                let pool_state = self.pools.get(pool).ok_or(Rejection::UnknownPool)?;
                self.allow_in(actor, self.unit_id(self.member_at(ix).home))?;
                if let Some(cap) = self.spec.donation_cap_per_year() {
                    let year = at.local_year(self.spec.utc_offset_minutes()).unwrap_or(0);
                    let so_far = self
                        .yearly_donations
                        .get(&(*member, year))
                        .copied()
                        .unwrap_or_default();
                    if so_far.checked_add(amount).is_none_or(|total| total > cap) {
                        return Err(Rejection::DonationCapExceeded);
                    }
                }
                self.ensure_available(ix, amount, at)?;
                Self::credit_fits(pool_state.balance, amount)?;
                Ok(Event::Donated {
                    member: *member,
                    pool: *pool,
                    amount,
                })
            }
            Command::Grant {
                pool,
                member,
                amount,
            } => {
                let amount = self.points(*amount)?;
                let ix = self.member_ix(*member)?;
                let pool_state = self.pools.get(pool).ok_or(Rejection::UnknownPool)?;
                self.allow_in(actor, pool_state.org_unit)?;
                if self.spec.grant_cap().is_some_and(|cap| amount > cap) {
                    return Err(Rejection::GrantCapExceeded);
                }
                if pool_state.balance < amount {
                    return Err(Rejection::InsufficientPool);
                }
                Self::credit_fits(self.member_at(ix).balance, amount)?;
                Ok(Event::Granted {
                    pool: *pool,
                    member: *member,
                    amount,
                    expires_at: self.expiry_from(at),
                })
            }
            Command::Expire { member } => {
                let ix = self.member_ix(*member)?;
                let state = self.member_at(ix);
                match actor {
                    Actor::System => {}
                    _ => self.allow_in(actor, self.unit_id(state.home))?,
                }
                let expired = state
                    .lots
                    .iter()
                    .take_while(|lot| lot.expires_at <= at)
                    .fold(Points::ZERO, |sum, lot| {
                        sum.checked_add(lot.remaining).unwrap_or(sum)
                    });
                // Points reserved by an open hold stay until the hold is resolved, so that
                // expiry never pushes available points below zero.
                let amount = expired.min(self.available(ix, at));
                if !amount.is_positive() {
                    return Err(Rejection::NothingToExpire);
                }
                Self::credit_fits(self.totals.expired, amount)?;
                Ok(Event::Expired {
                    member: *member,
                    amount,
                })
            }
            Command::Wish(command) => self
                .decide_wish(actor, command, at)
                .map(|e| Event::Wish(Box::new(e))),
            Command::Gathering(command) => self
                .decide_gathering(actor, command, at)
                .map(|e| Event::Gathering(Box::new(e))),
            Command::Catalogue(command) => self
                .decide_catalogue(actor, command, at)
                .map(|e| Event::Catalogue(Box::new(e))),
        }
    }

    fn decide_activity(&self, actor: &Actor, input: &ActivityInput) -> Result<Event, Rejection> {
        check_name(&input.name)?;
        check_name(&input.category)?;
        let rule = match input.rule {
            RuleInput::PerHour(a) => Rule::PerHour(self.points(a)?),
            RuleInput::PerOccasion(a) => Rule::PerOccasion(self.points(a)?),
        };
        let daily_points_cap = input.daily_points_cap.map(|a| self.points(a)).transpose()?;
        let coefficient_bp = coefficient_bp(input.coefficient)?;
        if input
            .max_minutes_per_occasion
            .is_some_and(|m| m == 0 || m > MAX_SERVICE_MINUTES)
        {
            return Err(Rejection::InvalidSetting);
        }
        let spec = ActivitySpec {
            id: input.id,
            org_unit: input.org_unit,
            name: input.name.clone(),
            category: input.category.clone(),
            rule,
            coefficient_bp,
            max_minutes_per_occasion: input.max_minutes_per_occasion,
            daily_points_cap,
            time_kind: input.time_kind,
        };
        // The largest award this rule can give must fit one amount, so approvals never
        // overflow because of the rule alone.
        let largest = spec
            .points_for(spec.counted_minutes(MAX_SERVICE_MINUTES))
            .filter(|p| p.minor() <= MAX_AMOUNT_MINOR);
        if largest.is_none() {
            return Err(Rejection::InvalidSetting);
        }
        self.unit_exists(input.org_unit)?;
        if self.activities.contains_key(&input.id) {
            return Err(Rejection::AlreadyExists);
        }
        self.allow_in(actor, input.org_unit)?;
        Ok(Event::ActivityDefined(Box::new(spec)))
    }

    fn decide_record(
        &self,
        actor: &Actor,
        records: &[ServiceInput],
        at: Timestamp,
    ) -> Result<Event, Rejection> {
        for r in records {
            let age = at.millis().saturating_sub(r.started_at.millis());
            if !r.started_at.in_supported_range()
                || age > MAX_SERVICE_AGE_MS
                || -age > MAX_SERVICE_LEAD_MS
            {
                return Err(Rejection::TimeOutOfRange);
            }
        }
        if records
            .iter()
            .any(|r| r.minutes == 0 || r.minutes > MAX_SERVICE_MINUTES)
        {
            return Err(Rejection::DurationOutOfRange);
        }
        check_batch_len(records.len())?;
        for r in records {
            self.unit_exists(r.org_unit)?;
        }
        for r in records {
            self.member_ix(r.member)?;
        }
        for r in records {
            self.activities
                .get(&r.activity)
                .ok_or(Rejection::UnknownActivity)?;
        }
        for r in records {
            self.allow_in(actor, r.org_unit)?;
        }
        for r in records {
            let member = self.member_at(self.member_ix(r.member)?);
            let home = self.unit_id(member.home);
            let same_branch = self.is_within(r.org_unit, home) || self.is_within(home, r.org_unit);
            if !same_branch && !member.dual_registration {
                return Err(Rejection::MemberNotEligible);
            }
        }
        for r in records {
            let activity = &self.activities[&r.activity];
            if !self.is_within(r.org_unit, activity.org_unit) {
                return Err(Rejection::ActivityNotAvailable);
            }
        }
        let entry = EntryId::from_prefix(self.entry_prefix, self.next_sequence);
        let records = records
            .iter()
            .zip(0u32..)
            .map(|(r, index)| ServiceRecord {
                id: RecordId::for_record(entry, index),
                member: r.member,
                activity: r.activity,
                org_unit: r.org_unit,
                started_at: r.started_at,
                minutes: r.minutes,
            })
            .collect();
        Ok(Event::ServiceRecorded { records })
    }

    /// The checks approval and rejection share, in precedence order: a non-empty list with
    /// no repeats, every record known, the actor allowed where each was served, and every
    /// record still pending.
    fn check_pending(
        &self,
        actor: &Actor,
        ids: &[RecordId],
    ) -> Result<Vec<&RecordState>, Rejection> {
        check_batch_len(ids.len())?;
        if has_duplicates(ids) {
            return Err(Rejection::DuplicateInBatch);
        }
        let mut states = Vec::with_capacity(ids.len());
        for id in ids {
            states.push(self.record_state(id).ok_or(Rejection::UnknownRecord(*id))?);
        }
        for state in &states {
            self.allow_in(actor, self.unit_id(state.org_unit))?;
        }
        for (id, state) in ids.iter().zip(&states) {
            if state.status != RecordStatus::Pending {
                return Err(Rejection::RecordNotPending(*id));
            }
        }
        Ok(states)
    }

    fn decide_approve(
        &self,
        actor: &Actor,
        ids: &[RecordId],
        at: Timestamp,
    ) -> Result<Event, Rejection> {
        let states = self.check_pending(actor, ids)?;
        let offset = self.spec.utc_offset_minutes();
        let expires_at = self.expiry_from(at);
        let mut day_totals: Map<(MemberId, ActivityId, i32), Points> = new_map();
        let mut issued = self.totals.issued;
        let mut awards = Vec::with_capacity(ids.len());
        // Each member's credit, by member index (a member may appear in several records).
        let mut credits: SmallVec<[(u32, Points); 8]> = SmallVec::new();
        for (id, record) in ids.iter().zip(states) {
            let activity = self
                .record_activity(record)
                .ok_or(Rejection::UnknownActivity)?;
            let member = self.member_at(record.member).id;
            let minutes = activity.counted_minutes(record.minutes);
            let points = activity
                .points_for(minutes)
                .ok_or(Rejection::BalanceOverflow)?;
            if let Some(cap) = activity.daily_points_cap {
                let key = (member, activity.id, record.started_at.local_day(offset));
                let before = match day_totals.get(&key) {
                    Some(total) => *total,
                    None => self.daily_points.get(&key).copied().unwrap_or_default(),
                };
                let after = before
                    .checked_add(points)
                    .ok_or(Rejection::BalanceOverflow)?;
                if after > cap {
                    return Err(Rejection::CapExceeded(*id));
                }
                day_totals.insert(key, after);
            }
            credits.push((record.member, points));
            awards.push(Award {
                record: *id,
                member,
                points,
                minutes: Minutes::new(i64::from(minutes)),
                time_kind: activity.time_kind,
                expires_at,
            });
        }
        for award in &awards {
            issued = issued
                .checked_add(award.points)
                .ok_or(Rejection::BalanceOverflow)?;
        }
        // Sum each member's credit and check it fits; sorting a short list beats a hash
        // map for the usual handful of awards, and the record already holds the member's
        // index, so no lookup by id is needed.
        credits.sort_unstable_by_key(|(member, _)| *member);
        for run in credits.chunk_by(|a, b| a.0 == b.0) {
            let total = run.iter().try_fold(Points::ZERO, |sum, (_, p)| {
                sum.checked_add(*p).ok_or(Rejection::BalanceOverflow)
            })?;
            Self::credit_fits(self.member_at(run[0].0).balance, total)?;
        }
        Ok(Event::ServiceApproved { awards })
    }

    fn decide_reverse(
        &self,
        actor: &Actor,
        entry: EntryId,
        reason: &str,
        at: Timestamp,
    ) -> Result<Event, Rejection> {
        check_reason(reason)?;
        let Some(fact) = self.facts.get(&entry) else {
            // Entry ids give back their sequence number, so an entry that exists but is of
            // a kind that cannot be reversed (a hold, a refund, a reversal) is told apart
            // from one that does not exist.
            let exists = entry
                .sequence_for(self.entry_prefix)
                .is_some_and(|sequence| sequence < self.next_sequence);
            // Only admins and recorders reverse anything, and permission ranks before the
            // kind of entry.
            return Err(match actor {
                _ if !exists => Rejection::UnknownEntry,
                Actor::Admin { .. } | Actor::Recorder { .. } => Rejection::NotReversible,
                _ => Rejection::ActorNotAllowed,
            });
        };
        // Permission first, against the org unit the original entry belongs to.
        match fact {
            Fact::Approval { records, .. } => {
                for &position in records {
                    let unit = self.records.at(position as usize).map(|r| r.org_unit);
                    let unit = unit.ok_or(Rejection::UnknownEntry)?;
                    self.allow_in(actor, self.unit_id(unit))?;
                }
            }
            Fact::Spend { merchant, .. } => {
                let unit = self.active_merchant(*merchant)?.org_unit;
                self.allow_in(actor, unit)?;
            }
            Fact::Transfer { from, .. } => {
                self.allow_in(actor, self.unit_id(self.member_at(*from).home))?
            }
            Fact::Donation { pool, .. } | Fact::Grant { pool, .. } => {
                let unit = self.pools.get(pool).ok_or(Rejection::UnknownPool)?.org_unit;
                self.allow_in(actor, unit)?;
            }
        }
        if fact.reversed() {
            return Err(Rejection::AlreadyReversed);
        }
        let effect = match fact {
            Fact::Approval { records, .. } => {
                let awards: Vec<Award> = records
                    .iter()
                    .filter_map(|&p| self.records.at(p as usize).and_then(|r| r.award(self)))
                    .collect();
                let mut debit: Map<MemberId, Points> = new_map();
                for award in &awards {
                    let slot = debit.entry(award.member).or_insert(Points::ZERO);
                    *slot = slot
                        .checked_add(award.points)
                        .ok_or(Rejection::BalanceOverflow)?;
                }
                let mut members: Vec<_> = debit.into_iter().collect();
                members.sort_by_key(|(m, _)| *m);
                for (member, amount) in members {
                    self.ensure_available(self.member_ix(member)?, amount, at)?;
                }
                Reversal::Accrual { awards }
            }
            Fact::Spend {
                member,
                merchant,
                taken,
                refunded,
                at: spent_at,
                ..
            } => {
                if refunded.is_positive() {
                    return Err(Rejection::AlreadyRefunded);
                }
                let state = self.member_at(*member);
                Self::credit_fits(state.balance, *taken)?;
                Reversal::Spend {
                    member: state.id,
                    merchant: *merchant,
                    amount: *taken,
                    expires_at: self.expiry_from(*spent_at),
                }
            }
            Fact::Transfer {
                from, to, amount, ..
            } => {
                self.ensure_available(*to, *amount, at)?;
                Self::credit_fits(self.member_at(*from).balance, *amount)?;
                Reversal::Transfer {
                    from: self.member_at(*from).id,
                    to: self.member_at(*to).id,
                    amount: *amount,
                }
            }
            Fact::Donation {
                member,
                pool,
                amount,
                at: donated_at,
                ..
            } => {
                let balance = self.pools.get(pool).map_or(Points::ZERO, |p| p.balance);
                if balance < *amount {
                    return Err(Rejection::InsufficientPool);
                }
                Self::credit_fits(self.member_at(*member).balance, *amount)?;
                Reversal::Donation {
                    member: self.member_at(*member).id,
                    pool: *pool,
                    amount: *amount,
                    expires_at: self.expiry_from(*donated_at),
                }
            }
            Fact::Grant {
                pool,
                member,
                amount,
                ..
            } => {
                self.ensure_available(*member, *amount, at)?;
                let balance = self.pools.get(pool).map_or(Points::ZERO, |p| p.balance);
                Self::credit_fits(balance, *amount)?;
                Reversal::Grant {
                    pool: *pool,
                    member: self.member_at(*member).id,
                    amount: *amount,
                }
            }
        };
        Ok(Event::Reversed {
            of: entry,
            reason: reason.to_owned(),
            effect,
        })
    }

    // ------------------------------------------------------------------------------------
    // Commit: fold an entry into the state. Total: never fails, never panics.
    // ------------------------------------------------------------------------------------

    fn commit(&mut self, entry: &Entry, print: Option<u64>) {
        debug_assert_eq!(entry.sequence(), self.next_sequence);
        // The request table is indexed by sequence: one slot per entry.
        debug_assert_eq!(self.requests.len() as u64, entry.sequence());
        let slot = RequestSlot {
            id: entry.request_id(),
            print: print.unwrap_or(REPLAYED),
        };
        // `apply` looked the request id up a moment ago, so its slot is in cache; replay
        // leaves the index to be built in one pass when a lookup first needs it.
        match print {
            Some(_) => self.requests.push_indexed(slot),
            None => self.requests.push(slot),
        }
        self.next_sequence += 1;
        self.last_hash = entry.hash();
        self.last_at = self.last_at.max(entry.at());
        self.evolve(entry);
        // The money side values spends and their corrections as they are written; a
        // correction is valued at the time of the redemption it corrects.
        let origin = entry.corrects().and_then(|of| self.spend_time(of));
        self.settlement.observe(entry, origin, self.spec.scale());
    }

    /// When the redemption or capture `id` was written, if it is one.
    pub(crate) fn spend_time(&self, id: EntryId) -> Option<Timestamp> {
        match self.facts.get(&id) {
            Some(Fact::Spend { at, .. }) => Some(*at),
            _ => None,
        }
    }

    fn ix(&self, member: MemberId) -> Option<u32> {
        self.members
            .position(member.uuid().as_u128())
            .and_then(|p| u32::try_from(p).ok())
    }

    /// Adds a lot, keeping lots sorted by expiry and merging lots that expire together.
    fn credit_member(&mut self, ix: u32, amount: Points, expires_at: Timestamp) {
        let Some(state) = self.members.at_mut(ix as usize) else {
            return;
        };
        state.balance = state.balance.checked_add(amount).unwrap_or(state.balance);
        let position = state
            .lots
            .partition_point(|lot| lot.expires_at < expires_at);
        match state.lots.get_mut(position) {
            Some(lot) if lot.expires_at == expires_at => {
                lot.remaining = lot.remaining.checked_add(amount).unwrap_or(lot.remaining);
            }
            _ => state.lots.insert(
                position,
                Lot {
                    expires_at,
                    remaining: amount,
                },
            ),
        }
    }

    /// Takes points from the oldest lots first and returns the parcels taken.
    fn debit_member(&mut self, ix: u32, amount: Points) -> SmallVec<[Lot; 2]> {
        let mut taken = SmallVec::new();
        let Some(state) = self.members.at_mut(ix as usize) else {
            return taken;
        };
        state.balance = state.balance.checked_sub(amount).unwrap_or(state.balance);
        let mut left = amount;
        let mut emptied = 0;
        for lot in state.lots.iter_mut() {
            if !left.is_positive() {
                break;
            }
            let part = lot.remaining.min(left);
            lot.remaining = lot.remaining.checked_sub(part).unwrap_or_default();
            left = left.checked_sub(part).unwrap_or_default();
            taken.push(Lot {
                expires_at: lot.expires_at,
                remaining: part,
            });
            if !lot.remaining.is_positive() {
                emptied += 1;
            }
        }
        state.lots.drain(..emptied);
        debug_assert!(
            !self.validated || !left.is_positive(),
            "debit beyond lots: validation let an overdraft through"
        );
        taken
    }

    /// Folds a spend at a merchant (a redemption, or a redemption of catalogue items): the
    /// member's lots are debited, the merchant credited, and the spend remembered so that a
    /// refund or reversal can name it.
    pub(crate) fn evolve_spend(
        &mut self,
        this: EntryId,
        at: Timestamp,
        member: MemberId,
        merchant: MerchantId,
        amount: Points,
    ) {
        let Some(ix) = self.ix(member) else { return };
        self.prune_holds(ix, at);
        self.debit_member(ix, amount);
        self.adjust_merchant(merchant, amount.minor());
        self.facts.insert(
            this,
            Fact::Spend {
                member: ix,
                merchant,
                taken: amount,
                refunded: Points::ZERO,
                at,
                reversed: false,
            },
        );
    }

    fn prune_holds(&mut self, ix: u32, at: Timestamp) {
        let holds = &self.holds;
        if let Some(list) = self.member_holds.get_mut(&ix) {
            // Lapsed holds no longer reserve anything; forgetting them here keeps the list
            // short. They stay in `holds` so a late capture is told it expired.
            list.retain(|id| {
                holds
                    .get(id)
                    .is_some_and(|h| h.status == HoldStatus::Open && at < h.deadline)
            });
            if list.is_empty() {
                self.member_holds.remove(&ix);
            }
        }
    }

    fn adjust_merchant(&mut self, merchant: MerchantId, delta: i64) {
        if let Some(m) = self.merchants.get_mut(&merchant) {
            m.taken = m
                .taken
                .checked_add(Points::from_minor(delta))
                .unwrap_or(m.taken);
        }
    }

    fn adjust_pool(&mut self, pool: PoolId, delta: i64) {
        if let Some(p) = self.pools.get_mut(&pool) {
            p.balance = p
                .balance
                .checked_add(Points::from_minor(delta))
                .unwrap_or(p.balance);
        }
    }

    fn apply_awards(&mut self, awards: &[Award], sign: i64) {
        let offset = self.spec.utc_offset_minutes();
        for (i, award) in awards.iter().enumerate() {
            // Start the next group's record lookups together, so that their misses overlap.
            if i % LOOKAHEAD == 0 {
                for ahead in awards.iter().skip(i).take(LOOKAHEAD) {
                    self.records.touch(ahead.record.uuid().as_u128());
                }
            }
            // The record knows its member's index; the award's member id is what counts
            // (a hostile journal may disagree), so it is checked against it.
            let record = self.records.position(award.record.uuid().as_u128());
            let known = record
                .and_then(|p| self.records.at(p))
                .map(|r| r.member)
                .filter(|&m| {
                    self.members
                        .at(m as usize)
                        .is_some_and(|s| s.id == award.member)
                });
            let Some(ix) = known.or_else(|| self.ix(award.member)) else {
                continue;
            };
            if sign > 0 {
                self.credit_member(ix, award.points, award.expires_at);
            } else {
                self.debit_member(ix, award.points);
            }
            let minutes = Minutes::new(sign * award.minutes.get());
            let Some(state) = self.members.at_mut(ix as usize) else {
                continue;
            };
            let (member_minutes, total) = match award.time_kind {
                TimeKind::Credit => (&mut state.credit_minutes, &mut self.totals.credit_minutes),
                TimeKind::Honour => (&mut state.honour_minutes, &mut self.totals.honour_minutes),
            };
            *member_minutes = member_minutes
                .checked_add(minutes)
                .unwrap_or(*member_minutes);
            *total = total.checked_add(minutes).unwrap_or(*total);
            let signed = Points::from_minor(sign * award.points.minor());
            self.totals.issued = self
                .totals
                .issued
                .checked_add(signed)
                .unwrap_or(self.totals.issued);
            if let Some(record) = record.and_then(|p| self.records.at_mut(p)) {
                record.status = if sign > 0 {
                    RecordStatus::Approved
                } else {
                    RecordStatus::Reversed
                };
                if sign > 0 {
                    record.set_award(award);
                }
                let (activity, day) = (record.activity, record.started_at.local_day(offset));
                let activity = self.activity_ids.get(activity as usize).copied();
                if let Some(activity) = activity.and_then(|a| self.activities.get(&a)) {
                    if activity.daily_points_cap.is_some() {
                        let key = (award.member, activity.id, day);
                        let slot = self.daily_points.entry(key).or_insert(Points::ZERO);
                        *slot = slot.checked_add(signed).unwrap_or(*slot);
                    }
                }
            }
        }
    }

    fn evolve(&mut self, entry: &Entry) {
        let at = entry.at();
        let this = entry.id();
        match entry.event() {
            Event::ProgramOpened(_) => {}
            Event::OrgUnitCreated {
                id,
                parent,
                name,
                level,
            } => {
                let depth = parent
                    .and_then(|p| self.org_units.get(&p))
                    .map_or(0, |p| p.depth.saturating_add(1));
                self.org_units.insert(
                    *id,
                    OrgUnitState {
                        parent: *parent,
                        depth,
                        name: name.clone(),
                        level: *level,
                    },
                );
            }
            Event::MemberEnrolled {
                id,
                home,
                kind,
                dual_registration,
                card_code,
            } => {
                let Ok(ix) = u32::try_from(self.members.len()) else {
                    return;
                };
                if self.ix(*id).is_some() {
                    return;
                }
                let home = self.intern_unit(*home);
                if let Some(code) = card_code.as_deref() {
                    self.card_codes.insert(code.into(), ix);
                    self.member_cards.insert(ix, code.into());
                }
                self.members.push(MemberState {
                    id: *id,
                    home,
                    kind: *kind,
                    dual_registration: *dual_registration,
                    balance: Points::ZERO,
                    credit_minutes: Minutes::ZERO,
                    honour_minutes: Minutes::ZERO,
                    lots: SmallVec::new(),
                });
            }
            Event::MemberUpdated {
                id,
                kind,
                dual_registration,
                card_code,
            } => {
                let Some(ix) = self.ix(*id) else { return };
                let Some(state) = self.members.at_mut(ix as usize) else {
                    return;
                };
                state.kind = *kind;
                state.dual_registration = *dual_registration;
                if let Some(old) = self.member_cards.remove(&ix) {
                    self.card_codes.remove(&old);
                }
                if let Some(code) = card_code.as_deref() {
                    self.card_codes.insert(code.into(), ix);
                    self.member_cards.insert(ix, code.into());
                }
            }
            Event::MemberMoved { id, to, .. } => {
                let to = self.intern_unit(*to);
                if let Some(state) = self.ix(*id).and_then(|ix| self.members.at_mut(ix as usize)) {
                    state.home = to;
                }
            }
            Event::MerchantRegistered {
                id,
                org_unit,
                name,
                kind,
            } => {
                self.merchants.insert(
                    *id,
                    MerchantState {
                        org_unit: *org_unit,
                        name: name.clone(),
                        kind: *kind,
                        status: MerchantStatus::Active,
                        taken: Points::ZERO,
                    },
                );
            }
            Event::MerchantStatusChanged { id, status } => {
                if let Some(m) = self.merchants.get_mut(id) {
                    m.status = *status;
                }
            }
            Event::ActivityDefined(spec) => {
                self.activities.insert(spec.id, (**spec).clone());
            }
            Event::PoolCreated {
                id,
                org_unit,
                name,
                kind,
            } => {
                self.pools.insert(
                    *id,
                    PoolState {
                        org_unit: *org_unit,
                        name: name.clone(),
                        kind: *kind,
                        balance: Points::ZERO,
                    },
                );
            }
            Event::ServiceRecorded { records } => {
                for group in records.chunks(LOOKAHEAD) {
                    for record in group {
                        self.members.touch(record.member.uuid().as_u128());
                        self.records.touch(record.id.uuid().as_u128());
                    }
                    for record in group {
                        self.add_record(record);
                    }
                }
            }
            Event::ServiceApproved { awards } => {
                self.apply_awards(awards, 1);
                let fact = self.approval_fact(awards.iter().map(|a| a.record));
                self.facts.insert(this, fact);
            }
            Event::ServiceRejected { records, .. } => {
                for id in records {
                    if let Some(r) = self.records.get_mut(id.uuid().as_u128()) {
                        r.status = RecordStatus::Rejected;
                    }
                }
            }
            Event::Redeemed {
                member,
                merchant,
                amount,
            } => self.evolve_spend(this, at, *member, *merchant, *amount),
            Event::HoldPlaced {
                member,
                merchant,
                amount,
                deadline,
            } => {
                let Some(ix) = self.ix(*member) else { return };
                self.prune_holds(ix, at);
                self.holds.insert(
                    this,
                    HoldState {
                        member: ix,
                        merchant: *merchant,
                        amount: *amount,
                        deadline: *deadline,
                        status: HoldStatus::Open,
                    },
                );
                self.member_holds.entry(ix).or_default().push(this);
            }
            Event::HoldCaptured {
                hold,
                member,
                merchant,
                amount,
            } => {
                if let Some(h) = self.holds.get_mut(hold) {
                    h.status = HoldStatus::Captured;
                }
                let Some(ix) = self.ix(*member) else { return };
                self.prune_holds(ix, at);
                self.debit_member(ix, *amount);
                self.adjust_merchant(*merchant, amount.minor());
                self.facts.insert(
                    this,
                    Fact::Spend {
                        member: ix,
                        merchant: *merchant,
                        taken: *amount,
                        refunded: Points::ZERO,
                        at,
                        reversed: false,
                    },
                );
            }
            Event::HoldReleased { hold, member, .. } => {
                if let Some(h) = self.holds.get_mut(hold) {
                    h.status = HoldStatus::Released;
                }
                if let Some(ix) = self.ix(*member) {
                    self.prune_holds(ix, at);
                }
            }
            Event::Refunded {
                of,
                member,
                merchant,
                amount,
                expires_at,
            } => {
                if let Some(Fact::Spend { refunded, .. }) = self.facts.get_mut(of) {
                    *refunded = refunded.checked_add(*amount).unwrap_or(*refunded);
                }
                self.adjust_merchant(*merchant, -amount.minor());
                if let Some(ix) = self.ix(*member) {
                    self.credit_member(ix, *amount, *expires_at);
                }
            }
            Event::Reversed { of, effect, .. } => {
                if let Some(fact) = self.facts.get_mut(of) {
                    fact.mark_reversed();
                }
                self.evolve_reversal(effect);
            }
            Event::Transferred { from, to, amount } => {
                let (Some(from_ix), Some(to_ix)) = (self.ix(*from), self.ix(*to)) else {
                    return;
                };
                self.move_lots(from_ix, to_ix, *amount);
                self.facts.insert(
                    this,
                    Fact::Transfer {
                        from: from_ix,
                        to: to_ix,
                        amount: *amount,
                        reversed: false,
                    },
                );
            }
            Event::Donated {
                member,
                pool,
                amount,
            } => {
                let Some(ix) = self.ix(*member) else { return };
                self.debit_member(ix, *amount);
                self.adjust_pool(*pool, amount.minor());
                let year = at.local_year(self.spec.utc_offset_minutes()).unwrap_or(0);
                let slot = self
                    .yearly_donations
                    .entry((*member, year))
                    .or_insert(Points::ZERO);
                *slot = slot.checked_add(*amount).unwrap_or(*slot);
                self.facts.insert(
                    this,
                    Fact::Donation {
                        member: ix,
                        pool: *pool,
                        amount: *amount,
                        at,
                        reversed: false,
                    },
                );
            }
            Event::Granted {
                pool,
                member,
                amount,
                expires_at,
            } => {
                let Some(ix) = self.ix(*member) else { return };
                self.adjust_pool(*pool, -amount.minor());
                self.credit_member(ix, *amount, *expires_at);
                self.facts.insert(
                    this,
                    Fact::Grant {
                        pool: *pool,
                        member: ix,
                        amount: *amount,
                        reversed: false,
                    },
                );
            }
            Event::Expired { member, amount } => {
                let Some(ix) = self.ix(*member) else { return };
                self.debit_member(ix, *amount);
                self.totals.expired = self
                    .totals
                    .expired
                    .checked_add(*amount)
                    .unwrap_or(self.totals.expired);
            }
            Event::Wish(event) => self.evolve_wish(this, at, event),
            Event::Gathering(event) => self.evolve_gathering(this, event),
            Event::Catalogue(event) => self.evolve_catalogue(this, at, event),
            Event::Settlement(event) => {
                if let crate::settlement::SettlementEvent::SettlementClosed(s) = event {
                    self.adjust_merchant(s.merchant, s.net_points.minor().wrapping_neg());
                }
                self.settlement.evolve(event, entry.sequence());
            }
        }
    }

    fn move_lots(&mut self, from: u32, to: u32, amount: Points) {
        for lot in self.debit_member(from, amount) {
            self.credit_member(to, lot.remaining, lot.expires_at);
        }
    }

    fn evolve_reversal(&mut self, effect: &Reversal) {
        match effect {
            Reversal::Accrual { awards } => self.apply_awards(awards, -1),
            Reversal::Spend {
                member,
                merchant,
                amount,
                expires_at,
            } => {
                self.adjust_merchant(*merchant, -amount.minor());
                if let Some(ix) = self.ix(*member) {
                    self.credit_member(ix, *amount, *expires_at);
                }
            }
            Reversal::Transfer { from, to, amount } => {
                if let (Some(from_ix), Some(to_ix)) = (self.ix(*from), self.ix(*to)) {
                    self.move_lots(to_ix, from_ix, *amount);
                }
            }
            Reversal::Donation {
                member,
                pool,
                amount,
                expires_at,
            } => {
                self.adjust_pool(*pool, -amount.minor());
                if let Some(ix) = self.ix(*member) {
                    self.credit_member(ix, *amount, *expires_at);
                }
            }
            Reversal::Grant {
                pool,
                member,
                amount,
            } => {
                if let Some(ix) = self.ix(*member) {
                    self.debit_member(ix, *amount);
                }
                self.adjust_pool(*pool, amount.minor());
            }
        }
    }
}

/// Values keyed by entry, kept in journal order.
///
/// Entry ids are derived from sequence numbers, and entries that leave something to remember
/// (holds, redemptions, approvals) arrive in sequence order, so append-only vectors
/// searched by sequence replace a hash map: no hashing, no rehashing, no load-factor
/// slack, and appends land at the end of memory that is already warm.
///
/// The values are kept in chunks of at most [`BY_SEQUENCE_CHUNK`] (one that took an
/// out-of-order value may be longer), never empty but for the tail, each following the
/// last in sequence order. One vector would grow by doubling, and each doubling copies the
/// whole table on the writer thread: hundreds of megabytes, a pause of a few hundred
/// milliseconds, at ten million redemptions. A new chunk is a fresh allocation that nothing
/// has to be copied into.
///
/// Full chunks are shared between a table and its clones and copied only when one side
/// changes them, so a copy of the ledger for a checkpoint costs a pointer per chunk here
/// instead of a copy of every redemption's fact. The chunk being filled (the tail) is the
/// table's own: appends, the common case, go straight into it with no check, and a clone
/// copies only it.
///
/// A snapshot holds the values as one sequence, so how they are chunked never shows in it.
#[derive(Clone, Debug)]
pub(crate) struct BySequence<T> {
    prefix: [u8; 8],
    /// Full chunks (or restored ones), in order, before `tail`.
    chunks: Vec<Arc<Vec<(u64, T)>>>,
    /// The chunk appends go into; may be empty.
    tail: Vec<(u64, T)>,
}

/// The most values a [`BySequence`] chunk takes by appending (64 bytes each for a
/// redemption's fact: 4 MiB). The crate's unit tests use tiny chunks, so that their
/// random tables cross many chunk boundaries.
#[cfg(not(test))]
const BY_SEQUENCE_CHUNK: usize = 1 << 16;
#[cfg(test)]
const BY_SEQUENCE_CHUNK: usize = 4;

/// Where a sequence number belongs in a [`BySequence`].
#[derive(Clone, Copy)]
enum Place {
    /// In the tail.
    Tail,
    /// In the shared chunk at this index.
    Chunk(usize),
}

impl<T> BySequence<T> {
    fn new(prefix: [u8; 8]) -> Self {
        Self {
            prefix,
            chunks: Vec::new(),
            tail: Vec::new(),
        }
    }

    /// The chunk whose range covers `sequence`: the tail if it starts at or before it,
    /// else the last shared chunk that does, else the first one (for a value that comes
    /// before everything). `None` when the table is empty.
    fn place(&self, sequence: u64) -> Option<Place> {
        if self
            .tail
            .first()
            .is_some_and(|(first, _)| *first <= sequence)
        {
            return Some(Place::Tail);
        }
        if self.chunks.is_empty() {
            return (!self.tail.is_empty()).then_some(Place::Tail);
        }
        // Chunks are non-empty and in order.
        let after = self
            .chunks
            .partition_point(|c| c.first().is_some_and(|(first, _)| *first <= sequence));
        Some(Place::Chunk(after.saturating_sub(1)))
    }

    fn values(&self, place: Place) -> &[(u64, T)] {
        match place {
            Place::Tail => &self.tail,
            Place::Chunk(i) => &self.chunks[i],
        }
    }

    /// Where the value for `sequence` is, if there is one.
    fn position(&self, sequence: u64) -> Option<(Place, usize)> {
        let place = self.place(sequence)?;
        let within = self
            .values(place)
            .binary_search_by_key(&sequence, |(s, _)| *s)
            .ok()?;
        Some((place, within))
    }

    pub(crate) fn get(&self, id: &EntryId) -> Option<&T> {
        let (place, within) = self.position(id.sequence_for(self.prefix)?)?;
        Some(&self.values(place)[within].1)
    }

    /// Every value with its sequence number, in order.
    fn entries(&self) -> impl Iterator<Item = &(u64, T)> + '_ {
        self.chunks.iter().flat_map(|c| c.iter()).chain(&self.tail)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (EntryId, &T)> + '_ {
        self.entries()
            .map(|(s, v)| (EntryId::from_prefix(self.prefix, *s), v))
    }

    fn len(&self) -> usize {
        self.chunks.iter().map(|c| c.len()).sum::<usize>() + self.tail.len()
    }
}

impl<T: Clone> BySequence<T> {
    /// The values at `place`, to change: a shared chunk is copied first if a clone of the
    /// table shares it.
    fn values_mut(&mut self, place: Place) -> &mut Vec<(u64, T)> {
        match place {
            Place::Tail => &mut self.tail,
            Place::Chunk(i) => Arc::make_mut(&mut self.chunks[i]),
        }
    }

    fn get_mut(&mut self, id: &EntryId) -> Option<&mut T> {
        let (place, within) = self.position(id.sequence_for(self.prefix)?)?;
        Some(&mut self.values_mut(place)[within].1)
    }

    /// Adds the value for `id`. Ids come in journal order; an out-of-order id (possible only
    /// in a hostile journal) is placed where it belongs.
    fn insert(&mut self, id: EntryId, value: T) {
        let Some(sequence) = id.sequence_for(self.prefix) else {
            return;
        };
        let last = self
            .tail
            .last()
            .or_else(|| self.chunks.last().and_then(|c| c.last()))
            .map(|(s, _)| *s);
        if last.is_none_or(|last| last < sequence) {
            if self.tail.len() >= BY_SEQUENCE_CHUNK {
                // A full tail is shared from now on; moving it copies no values.
                let full = std::mem::replace(&mut self.tail, Vec::with_capacity(BY_SEQUENCE_CHUNK));
                self.chunks.push(Arc::new(full));
            }
            self.tail.push((sequence, value));
            return;
        }
        // Out of order: into the chunk whose range covers it (the table is not empty here).
        let Some(place) = self.place(sequence) else {
            return;
        };
        let values = self.values_mut(place);
        match values.binary_search_by_key(&sequence, |(s, _)| *s) {
            Ok(i) => values[i].1 = value,
            Err(i) => values.insert(i, (sequence, value)),
        }
    }
}

impl<T: Serialize> Serialize for BySequence<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeSeq, SerializeStruct};
        /// The chunks as the one sequence a snapshot holds.
        struct Flattened<'a, T>(&'a BySequence<T>);
        impl<T: Serialize> Serialize for Flattened<'_, T> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
                for item in self.0.entries() {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
        }
        let mut state = serializer.serialize_struct("BySequence", 2)?;
        state.serialize_field("prefix", &self.prefix)?;
        state.serialize_field("items", &Flattened(self))?;
        state.end()
    }
}

/// A snapshot's one sequence of values, read straight into chunks (no copy, and no chunk
/// so long that changing one value while it is shared would copy the whole table).
struct Chunked<T>(Vec<Arc<Vec<(u64, T)>>>);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Chunked<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visitor<T> {
            type Value = Chunked<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a sequence of values by sequence number")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Chunked<T>, A::Error> {
                let mut chunks = Vec::new();
                let mut chunk = Vec::new();
                while let Some(item) = seq.next_element::<(u64, T)>()? {
                    if chunk.len() == BY_SEQUENCE_CHUNK {
                        chunks.push(Arc::new(std::mem::take(&mut chunk)));
                    }
                    if chunk.capacity() == 0 {
                        // A claimed length is not trusted with an allocation.
                        chunk.reserve(BY_SEQUENCE_CHUNK.min(seq.size_hint().unwrap_or(0).max(1)));
                    }
                    chunk.push(item);
                }
                if !chunk.is_empty() {
                    chunks.push(Arc::new(chunk));
                }
                Ok(Chunked(chunks))
            }
        }
        deserializer.deserialize_seq(Visitor(std::marker::PhantomData))
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for BySequence<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        /// The form a snapshot holds.
        #[derive(Deserialize)]
        #[serde(rename = "BySequence")]
        #[serde(bound(deserialize = "T: Deserialize<'de>"))]
        struct Stored<T> {
            prefix: [u8; 8],
            items: Chunked<T>,
        }
        let stored = Stored::<T>::deserialize(deserializer)?;
        Ok(BySequence {
            prefix: stored.prefix,
            chunks: stored.items.0,
            tail: Vec::new(),
        })
    }
}

/// What the ledger keeps of the request behind each entry, at the entry's sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RequestSlot {
    id: RequestId,
    print: u64,
}

impl HasKey for RequestSlot {
    fn key(&self) -> u128 {
        self.id.uuid().as_u128()
    }
}

impl HasKey for MemberState {
    fn key(&self) -> u128 {
        self.id.uuid().as_u128()
    }
}

impl HasKey for RecordState {
    fn key(&self) -> u128 {
        self.id.uuid().as_u128()
    }
}

fn get_id<T: TryFrom<uuid::Uuid>>(input: &mut Reader<'_>) -> Option<T> {
    T::try_from(uuid::Uuid::from_u128(u128::from_le_bytes(input.take()?))).ok()
}

/// Postcard's output for [`Ledger::snapshot_with_capacity`]: a `Vec` the caller sized
/// (postcard's own `AllocVec` always starts empty), appended to a slice at a time.
struct SnapshotBuffer(Vec<u8>);

impl postcard::ser_flavors::Flavor for SnapshotBuffer {
    type Output = Vec<u8>;

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.0)
    }
}

/// Postcard's output for [`Ledger::snapshot_into`]: small writes gathered into pieces of
/// `piece_bytes`, long ones passed through without a copy.
struct SnapshotPieces<F: FnMut(&[u8])> {
    buffer: Vec<u8>,
    piece_bytes: usize,
    sink: F,
}

impl<F: FnMut(&[u8])> SnapshotPieces<F> {
    fn flush(&mut self) {
        if !self.buffer.is_empty() {
            (self.sink)(&self.buffer);
            self.buffer.clear();
        }
    }
}

impl<F: FnMut(&[u8])> postcard::ser_flavors::Flavor for SnapshotPieces<F> {
    type Output = ();

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if self.buffer.len() + data.len() > self.piece_bytes {
            // Bytes keep their order: what is gathered goes first.
            self.flush();
        }
        if data.len() >= self.piece_bytes {
            (self.sink)(data);
        } else {
            self.buffer.extend_from_slice(data);
        }
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        if self.buffer.len() >= self.piece_bytes {
            self.flush();
        }
        self.buffer.push(data);
        Ok(())
    }

    fn finalize(mut self) -> postcard::Result<()> {
        self.flush();
        Ok(())
    }
}

fn put_id(out: &mut Vec<u8>, id: uuid::Uuid) {
    out.extend_from_slice(&id.as_u128().to_le_bytes());
}

impl Flat for RequestSlot {
    const MIN_BYTES: usize = 24;
    fn put(&self, out: &mut Vec<u8>) {
        put_id(out, self.id.uuid());
        out.extend_from_slice(&self.print.to_le_bytes());
    }
    fn get(input: &mut Reader<'_>) -> Option<Self> {
        Some(RequestSlot {
            id: get_id(input)?,
            print: input.u64()?,
        })
    }
}

impl Flat for MemberState {
    const MIN_BYTES: usize = 16 + 4 + 2 + 24 + 4;
    fn encoded_len(&self) -> usize {
        Self::MIN_BYTES + 16 * self.lots.len()
    }
    fn put(&self, out: &mut Vec<u8>) {
        put_id(out, self.id.uuid());
        out.extend_from_slice(&self.home.to_le_bytes());
        out.push(match self.kind {
            MemberKind::Resident => 0,
            MemberKind::PartyMember => 1,
        });
        out.push(u8::from(self.dual_registration));
        out.extend_from_slice(&self.balance.minor().to_le_bytes());
        out.extend_from_slice(&self.credit_minutes.get().to_le_bytes());
        out.extend_from_slice(&self.honour_minutes.get().to_le_bytes());
        out.extend_from_slice(&(self.lots.len() as u32).to_le_bytes());
        for lot in &self.lots {
            out.extend_from_slice(&lot.expires_at.millis().to_le_bytes());
            out.extend_from_slice(&lot.remaining.minor().to_le_bytes());
        }
    }
    fn get(input: &mut Reader<'_>) -> Option<Self> {
        let id = get_id(input)?;
        let home = input.u32()?;
        let kind = match input.u8()? {
            0 => MemberKind::Resident,
            1 => MemberKind::PartyMember,
            _ => return None,
        };
        let dual_registration = match input.u8()? {
            0 => false,
            1 => true,
            _ => return None,
        };
        let balance = Points::from_minor(input.i64()?);
        let credit_minutes = Minutes::new(input.i64()?);
        let honour_minutes = Minutes::new(input.i64()?);
        let count = input.u32()?;
        let mut lots = SmallVec::new();
        for _ in 0..count {
            lots.push(Lot {
                expires_at: Timestamp::from_millis(input.i64()?),
                remaining: Points::from_minor(input.i64()?),
            });
        }
        Some(MemberState {
            id,
            home,
            kind,
            dual_registration,
            balance,
            credit_minutes,
            honour_minutes,
            lots,
        })
    }
}

impl Flat for RecordState {
    const MIN_BYTES: usize = 16 + 12 + 8 + 4 + 2 + 4 + 16;
    fn put(&self, out: &mut Vec<u8>) {
        put_id(out, self.id.uuid());
        out.extend_from_slice(&self.member.to_le_bytes());
        out.extend_from_slice(&self.activity.to_le_bytes());
        out.extend_from_slice(&self.org_unit.to_le_bytes());
        out.extend_from_slice(&self.started_at.millis().to_le_bytes());
        out.extend_from_slice(&self.minutes.to_le_bytes());
        out.push(match self.status {
            RecordStatus::Pending => 0,
            RecordStatus::Approved => 1,
            RecordStatus::Rejected => 2,
            RecordStatus::Reversed => 3,
        });
        out.push(match self.time_kind {
            TimeKind::Credit => 0,
            TimeKind::Honour => 1,
        });
        out.extend_from_slice(&self.award_minutes.to_le_bytes());
        out.extend_from_slice(&self.award_points.minor().to_le_bytes());
        out.extend_from_slice(&self.expires_at.millis().to_le_bytes());
    }
    fn get(input: &mut Reader<'_>) -> Option<Self> {
        Some(RecordState {
            id: get_id(input)?,
            member: input.u32()?,
            activity: input.u32()?,
            org_unit: input.u32()?,
            started_at: Timestamp::from_millis(input.i64()?),
            minutes: input.u32()?,
            status: match input.u8()? {
                0 => RecordStatus::Pending,
                1 => RecordStatus::Approved,
                2 => RecordStatus::Rejected,
                3 => RecordStatus::Reversed,
                _ => return None,
            },
            time_kind: match input.u8()? {
                0 => TimeKind::Credit,
                1 => TimeKind::Honour,
                _ => return None,
            },
            award_minutes: input.u32()?,
            award_points: Points::from_minor(input.i64()?),
            expires_at: Timestamp::from_millis(input.i64()?),
        })
    }
}

/// How many entries, or items of a batch, ahead of the one being folded replay starts
/// loading index slots. Enough to keep several cache misses in flight; few enough that the
/// slots are still cached when their turn comes.
const LOOKAHEAD: usize = 8;

/// How far ahead [`Ledger::balances`] loads each of its two steps.
const BALANCE_AHEAD: usize = 8;

/// The tag at the start of a snapshot; a change of the state's layout changes it.
const SNAPSHOT_FORMAT: [u8; 8] = *b"ptsnap03";

/// The format before: the same state, but id indexes whose slots kept 24 bits of the id's
/// hash apart from where it starts. Restoring one rebuilds the indexes.
const PREVIOUS_SNAPSHOT_FORMAT: [u8; 8] = *b"ptsnap02";

/// The fingerprint slot of a request replayed from storage, before the store restores the
/// real one. A retry of such a request is answered as a duplicate.
const REPLAYED: u64 = u64::MAX;

// Issue 5: micro-wishes, volunteer events and merchant catalogues. They are child modules of
// the ledger so that they extend its decide and evolve steps without widening the state's
// visibility; their files sit beside this one and lib.rs re-exports them.
#[path = "wish.rs"]
pub mod wish;

#[path = "gathering.rs"]
pub mod gathering;

#[path = "catalogue.rs"]
pub mod catalogue;

#[cfg(test)]
mod flat_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A snapshot's tables are written into buffers sized by `encoded_len`, so it must count
    /// exactly the bytes `put` appends (a wrong count costs a regrowth, not correctness).
    #[test]
    fn encoded_len_counts_what_put_writes() {
        fn check<T: Flat>(value: &T) {
            let mut out = Vec::new();
            value.put(&mut out);
            assert_eq!(out.len(), value.encoded_len());
        }
        for lots in 0..4_i64 {
            check(&MemberState {
                id: MemberId::new(uuid::Uuid::from_u128(7)).unwrap(),
                home: 1,
                kind: MemberKind::PartyMember,
                dual_registration: true,
                balance: Points::from_minor(5),
                credit_minutes: Minutes::new(1),
                honour_minutes: Minutes::new(2),
                lots: (0..lots)
                    .map(|i| Lot {
                        expires_at: Timestamp::from_millis(i),
                        remaining: Points::from_minor(i),
                    })
                    .collect(),
            });
        }
        check(&RequestSlot {
            id: RequestId::new(uuid::Uuid::from_u128(8)).unwrap(),
            print: 9,
        });
        let record = ServiceRecord {
            id: RecordId::new(uuid::Uuid::from_u128(10)).unwrap(),
            member: MemberId::new(uuid::Uuid::from_u128(7)).unwrap(),
            activity: ActivityId::new(uuid::Uuid::from_u128(11)).unwrap(),
            org_unit: OrgUnitId::new(uuid::Uuid::from_u128(12)).unwrap(),
            started_at: Timestamp::from_millis(13),
            minutes: 60,
        };
        check(&RecordState::pending(record.id, 0, 0, 0, &record));
    }
}

#[cfg(test)]
mod by_sequence_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const PREFIX: [u8; 8] = [1, 2, 3, 4, 5, 6, 7, 8];

    fn id(sequence: u64) -> EntryId {
        EntryId::from_prefix(PREFIX, sequence)
    }

    /// The form `BySequence` had before it was chunked: snapshots must not change.
    #[derive(Serialize)]
    struct Unchunked<'a> {
        prefix: [u8; 8],
        items: &'a [(u64, u32)],
    }

    /// A sequence number and its value.
    type Pair = (u64, u32);

    proptest! {
        /// Appends (mostly), out-of-order inserts, updates and snapshot round trips,
        /// checked after every step against a sorted map.
        #[test]
        fn by_sequence_matches_a_sorted_map(
            ops in prop::collection::vec((0u8..11, 0u64..40, any::<u32>()), 0..200)
        ) {
            let mut table = BySequence::<u32>::new(PREFIX);
            let mut model: BTreeMap<u64, u32> = BTreeMap::new();
            // A clone taken along the way, with what it held: it shares the table's chunks,
            // and nothing done to the table afterwards may show in it.
            let mut copy: Option<(BySequence<u32>, Vec<Pair>)> = None;
            let mut next = 0u64;
            for (kind, back, value) in ops {
                let earlier = next.saturating_sub(back);
                match kind {
                    0..=4 => {
                        next += 1 + back % 3;
                        table.insert(id(next), value);
                        model.insert(next, value);
                    }
                    5 | 6 => {
                        table.insert(id(earlier), value);
                        model.insert(earlier, value);
                    }
                    7 => {
                        if let Some(v) = table.get_mut(&id(earlier)) {
                            *v = value;
                        }
                        if let Some(v) = model.get_mut(&earlier) {
                            *v = value;
                        }
                    }
                    8 => {
                        let bytes = postcard::to_allocvec(&table).unwrap();
                        let items: Vec<(u64, u32)> = model.iter().map(|(k, v)| (*k, *v)).collect();
                        let unchunked = Unchunked { prefix: PREFIX, items: &items };
                        prop_assert_eq!(&bytes, &postcard::to_allocvec(&unchunked).unwrap());
                        table = postcard::from_bytes(&bytes).unwrap();
                    }
                    9 => {
                        let held = model.iter().map(|(k, v)| (*k, *v)).collect();
                        copy = Some((table.clone(), held));
                    }
                    _ => {}
                }
                if let Some((copy, held)) = &copy {
                    let listed: Vec<(u64, u32)> = copy.entries().copied().collect();
                    prop_assert_eq!(&listed, held);
                }
                prop_assert!(table.chunks.iter().all(|c| !c.is_empty()));
                prop_assert_eq!(table.len(), model.len());
                for s in [earlier, earlier + 1, next, next + 1] {
                    prop_assert_eq!(table.get(&id(s)).copied(), model.get(&s).copied());
                }
                // An id of another programme (another prefix) is never found.
                prop_assert!(table.get(&EntryId::from_prefix([9; 8], next)).is_none());
                let listed: Vec<(u64, u32)> = table
                    .iter()
                    .map(|(i, v)| (i.sequence_for(PREFIX).unwrap(), *v))
                    .collect();
                let expected: Vec<(u64, u32)> = model.iter().map(|(k, v)| (*k, *v)).collect();
                prop_assert_eq!(listed, expected);
            }
        }
    }
}
