//! Journal entries: what happened, its postings, and the hash chain over them.
//!
//! An entry records the validated outcome of one command as an [`Event`]: every amount in
//! it is exact and final (points awarded, lot expiries), so replaying the journal needs no
//! rules, rates or clock. Postings are a pure function of the event, which is what lets the
//! audit check every entry's balance without the ledger's state.

use crate::amount::Points;
use crate::command::Actor;
use crate::ids::{EntryId, MemberId, MerchantId, OrgUnitId, PoolId, RecordId, RequestId};
use crate::model::{
    ActivitySpec, Award, MemberKind, MerchantKind, MerchantStatus, OrgLevel, PoolKind,
    ServiceRecord, TimeKind,
};
use crate::program::ProgramSpec;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// An account that postings move value between.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Account {
    /// A member's points and service minutes.
    Member(MemberId),
    /// Points a merchant has taken and not yet settled.
    Merchant(MerchantId),
    /// The programme's points issuance: goes negative as points are issued.
    Issuance,
    /// The programme's service-time issuance: goes negative as minutes are credited.
    HoursIssuance,
    /// Where expired points go.
    ExpirySink,
    /// A love-bank or time-bank pool.
    Pool(PoolId),
    /// Points a merchant took and has settled for money (issue 6).
    Settled(MerchantId),
}

/// The unit a posting counts in. Entries balance per unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Unit {
    /// Points, in the programme's minor units.
    Points,
    /// Minutes of credit time (checked in and out).
    CreditMinutes,
    /// Minutes of honour time (certified afterwards).
    HonourMinutes,
}

impl From<TimeKind> for Unit {
    fn from(kind: TimeKind) -> Unit {
        match kind {
            TimeKind::Credit => Unit::CreditMinutes,
            TimeKind::Honour => Unit::HonourMinutes,
        }
    }
}

/// One leg of an entry: `amount` added to `account` in `unit` (negative takes away).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Posting {
    /// The account.
    pub account: Account,
    /// The unit.
    pub unit: Unit,
    /// Minor units (points) or minutes; positive credits the account.
    pub amount: i64,
}

/// What a reversal undid, with the exact amounts moved back.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reversal {
    /// An approval: every award's points and minutes are taken back.
    Accrual {
        /// The awards of the approval being reversed.
        awards: Vec<Award>,
    },
    /// A redemption or capture: the points go back from the merchant to the member.
    Spend {
        /// The member who spent.
        member: MemberId,
        /// The merchant who took the points.
        merchant: MerchantId,
        /// Points returned.
        amount: Points,
        /// Expiry of the lot the member gets back.
        expires_at: Timestamp,
    },
    /// A transfer: the points go back from the receiver to the giver.
    Transfer {
        /// The original giver, who gets the points back.
        from: MemberId,
        /// The original receiver, who gives them back.
        to: MemberId,
        /// Points moved back.
        amount: Points,
    },
    /// A donation: the points go back from the pool to the donor.
    Donation {
        /// The donor.
        member: MemberId,
        /// The pool.
        pool: PoolId,
        /// Points returned.
        amount: Points,
        /// Expiry of the lot the member gets back.
        expires_at: Timestamp,
    },
    /// A grant: the points go back from the member to the pool.
    Grant {
        /// The pool.
        pool: PoolId,
        /// The member who received the grant.
        member: MemberId,
        /// Points returned to the pool.
        amount: Points,
    },
}

/// What an entry records: the validated, final outcome of one command.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// The first entry of every journal: the programme's definition.
    ProgramOpened(Box<ProgramSpec>),
    /// An org unit was added.
    OrgUnitCreated {
        /// Its id.
        id: OrgUnitId,
        /// Its parent.
        parent: Option<OrgUnitId>,
        /// Its name.
        name: String,
        /// Its level.
        level: OrgLevel,
    },
    /// A member was enrolled.
    MemberEnrolled {
        /// Member id.
        id: MemberId,
        /// Home org unit.
        home: OrgUnitId,
        /// Resident or party member.
        kind: MemberKind,
        /// Dual registration.
        dual_registration: bool,
        /// Card code.
        card_code: Option<String>,
    },
    /// A member's details changed.
    MemberUpdated {
        /// Member id.
        id: MemberId,
        /// Resident or party member.
        kind: MemberKind,
        /// Dual registration.
        dual_registration: bool,
        /// Card code.
        card_code: Option<String>,
    },
    /// A member moved home.
    MemberMoved {
        /// Member id.
        id: MemberId,
        /// Old home.
        from: OrgUnitId,
        /// New home.
        to: OrgUnitId,
    },
    /// A merchant was registered.
    MerchantRegistered {
        /// Merchant id.
        id: MerchantId,
        /// Where it is.
        org_unit: OrgUnitId,
        /// Its name.
        name: String,
        /// Partner or community supermarket.
        kind: MerchantKind,
    },
    /// A merchant was suspended or reactivated.
    MerchantStatusChanged {
        /// Merchant id.
        id: MerchantId,
        /// New status.
        status: MerchantStatus,
    },
    /// An activity was defined.
    ActivityDefined(Box<ActivitySpec>),
    /// A pool was created.
    PoolCreated {
        /// Pool id.
        id: PoolId,
        /// The org unit it serves.
        org_unit: OrgUnitId,
        /// Its name.
        name: String,
        /// Love bank or time bank.
        kind: PoolKind,
    },
    /// Service was recorded; the records are pending.
    ServiceRecorded {
        /// The records, with the ids the ledger gave them.
        records: Vec<ServiceRecord>,
    },
    /// Pending records were approved; points and minutes accrued.
    ServiceApproved {
        /// One award per record.
        awards: Vec<Award>,
    },
    /// Pending records were rejected.
    ServiceRejected {
        /// The records.
        records: Vec<RecordId>,
        /// Why.
        reason: String,
    },
    /// Points were spent at a merchant.
    Redeemed {
        /// Who spent.
        member: MemberId,
        /// Where.
        merchant: MerchantId,
        /// How much.
        amount: Points,
    },
    /// Points were reserved for a merchant. The hold's id is this entry's id.
    HoldPlaced {
        /// Whose points.
        member: MemberId,
        /// For which merchant.
        merchant: MerchantId,
        /// How much.
        amount: Points,
        /// When it lapses.
        deadline: Timestamp,
    },
    /// A hold was captured, wholly or partly; the rest was released.
    HoldCaptured {
        /// The hold.
        hold: EntryId,
        /// Whose points.
        member: MemberId,
        /// Which merchant.
        merchant: MerchantId,
        /// How much was taken.
        amount: Points,
    },
    /// A hold was released without capture.
    HoldReleased {
        /// The hold.
        hold: EntryId,
        /// Whose points.
        member: MemberId,
        /// Which merchant.
        merchant: MerchantId,
    },
    /// Part or all of a redemption or capture went back to the member.
    Refunded {
        /// The redemption or capture.
        of: EntryId,
        /// The member.
        member: MemberId,
        /// The merchant.
        merchant: MerchantId,
        /// How much.
        amount: Points,
        /// Expiry of the lot the member gets back.
        expires_at: Timestamp,
    },
    /// An entry was undone.
    Reversed {
        /// The entry undone.
        of: EntryId,
        /// Why.
        reason: String,
        /// What moved back.
        effect: Reversal,
    },
    /// Points moved between members; lots keep their expiry.
    Transferred {
        /// Giver.
        from: MemberId,
        /// Receiver.
        to: MemberId,
        /// How much.
        amount: Points,
    },
    /// A member donated points into a pool.
    Donated {
        /// Donor.
        member: MemberId,
        /// Pool.
        pool: PoolId,
        /// How much.
        amount: Points,
    },
    /// A pool granted points to a member.
    Granted {
        /// Pool.
        pool: PoolId,
        /// Receiver.
        member: MemberId,
        /// How much.
        amount: Points,
        /// Expiry of the new lot.
        expires_at: Timestamp,
    },
    /// Expired points left a member for the expiry sink.
    Expired {
        /// Whose points.
        member: MemberId,
        /// How much.
        amount: Points,
    },
    /// A micro-wish step (issue 5).
    Wish(Box<crate::wish::WishEvent>),
    /// A volunteer event (gathering) step (issue 5).
    Gathering(Box<crate::gathering::GatheringEvent>),
    /// A merchant catalogue step (issue 5).
    Catalogue(Box<crate::catalogue::CatalogueEvent>),
    /// The money side: funds, rates, the over-budget setting, settlements (issue 6).
    Settlement(crate::settlement::SettlementEvent),
}

/// The kind of an entry, for filters and reports.
#[allow(missing_docs)] // Each kind is named after the event variant it stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EntryKind {
    ProgramOpened,
    OrgUnitCreated,
    MemberEnrolled,
    MemberUpdated,
    MemberMoved,
    MerchantRegistered,
    MerchantStatusChanged,
    ActivityDefined,
    PoolCreated,
    ServiceRecorded,
    ServiceApproved,
    ServiceRejected,
    Redeemed,
    HoldPlaced,
    HoldCaptured,
    HoldReleased,
    Refunded,
    Reversed,
    Transferred,
    Donated,
    Granted,
    Expired,
    // Issue 5: micro-wishes, volunteer events (gatherings) and merchant catalogues.
    WishPosted,
    WishClaimed,
    WishFulfilled,
    WishConfirmed,
    WishCancelled,
    WishClaimLapsed,
    GatheringCreated,
    GatheringCheckedIn,
    GatheringCheckedOut,
    GatheringApproved,
    ItemListed,
    ItemRestocked,
    ItemPriceChanged,
    ItemsRedeemed,
    FundCreated,
    MerchantFundsSet,
    MerchantRateSet,
    OverBudgetSet,
    SettlementClosed,
}

pub(crate) fn points(account: Account, amount: Points) -> Posting {
    Posting {
        account,
        unit: Unit::Points,
        amount: amount.minor(),
    }
}

/// Pushes a pair of postings that moves `amount` from `from` to `to`.
fn movement(out: &mut Vec<Posting>, from: Account, to: Account, unit: Unit, amount: i64) {
    out.push(Posting {
        account: from,
        unit,
        amount: -amount,
    });
    out.push(Posting {
        account: to,
        unit,
        amount,
    });
}

pub(crate) fn award_postings(out: &mut Vec<Posting>, awards: &[Award], sign: i64) {
    for award in awards {
        let member = Account::Member(award.member);
        movement(
            out,
            Account::Issuance,
            member,
            Unit::Points,
            sign * award.points.minor(),
        );
        movement(
            out,
            Account::HoursIssuance,
            member,
            award.time_kind.into(),
            sign * award.minutes.get(),
        );
    }
}

impl Event {
    /// The kind of this event.
    pub fn kind(&self) -> EntryKind {
        match self {
            Event::ProgramOpened(_) => EntryKind::ProgramOpened,
            Event::OrgUnitCreated { .. } => EntryKind::OrgUnitCreated,
            Event::MemberEnrolled { .. } => EntryKind::MemberEnrolled,
            Event::MemberUpdated { .. } => EntryKind::MemberUpdated,
            Event::MemberMoved { .. } => EntryKind::MemberMoved,
            Event::MerchantRegistered { .. } => EntryKind::MerchantRegistered,
            Event::MerchantStatusChanged { .. } => EntryKind::MerchantStatusChanged,
            Event::ActivityDefined(_) => EntryKind::ActivityDefined,
            Event::PoolCreated { .. } => EntryKind::PoolCreated,
            Event::ServiceRecorded { .. } => EntryKind::ServiceRecorded,
            Event::ServiceApproved { .. } => EntryKind::ServiceApproved,
            Event::ServiceRejected { .. } => EntryKind::ServiceRejected,
            Event::Redeemed { .. } => EntryKind::Redeemed,
            Event::HoldPlaced { .. } => EntryKind::HoldPlaced,
            Event::HoldCaptured { .. } => EntryKind::HoldCaptured,
            Event::HoldReleased { .. } => EntryKind::HoldReleased,
            Event::Refunded { .. } => EntryKind::Refunded,
            Event::Reversed { .. } => EntryKind::Reversed,
            Event::Transferred { .. } => EntryKind::Transferred,
            Event::Donated { .. } => EntryKind::Donated,
            Event::Granted { .. } => EntryKind::Granted,
            Event::Expired { .. } => EntryKind::Expired,
            Event::Wish(e) => e.kind(),
            Event::Gathering(e) => e.kind(),
            Event::Catalogue(e) => e.kind(),
            Event::Settlement(event) => event.kind(),
        }
    }

    /// The entry this one corrects, if any: the target of a reversal or refund.
    pub fn corrects(&self) -> Option<EntryId> {
        match self {
            Event::Reversed { of, .. } | Event::Refunded { of, .. } => Some(*of),
            _ => None,
        }
    }

    /// The postings this event makes. Their amounts sum to zero per unit.
    pub fn postings(&self) -> Vec<Posting> {
        let mut out = Vec::new();
        match self {
            Event::ServiceApproved { awards } => award_postings(&mut out, awards, 1),
            Event::Redeemed {
                member,
                merchant,
                amount,
            }
            | Event::HoldCaptured {
                member,
                merchant,
                amount,
                ..
            } => {
                out.push(points(
                    Account::Member(*member),
                    Points::from_minor(-amount.minor()),
                ));
                out.push(points(Account::Merchant(*merchant), *amount));
            }
            Event::Refunded {
                member,
                merchant,
                amount,
                ..
            } => {
                out.push(points(
                    Account::Merchant(*merchant),
                    Points::from_minor(-amount.minor()),
                ));
                out.push(points(Account::Member(*member), *amount));
            }
            Event::Transferred { from, to, amount } => movement(
                &mut out,
                Account::Member(*from),
                Account::Member(*to),
                Unit::Points,
                amount.minor(),
            ),
            Event::Donated {
                member,
                pool,
                amount,
            } => movement(
                &mut out,
                Account::Member(*member),
                Account::Pool(*pool),
                Unit::Points,
                amount.minor(),
            ),
            Event::Granted {
                pool,
                member,
                amount,
                ..
            } => movement(
                &mut out,
                Account::Pool(*pool),
                Account::Member(*member),
                Unit::Points,
                amount.minor(),
            ),
            Event::Expired { member, amount } => movement(
                &mut out,
                Account::Member(*member),
                Account::ExpirySink,
                Unit::Points,
                amount.minor(),
            ),
            Event::Reversed { effect, .. } => match effect {
                Reversal::Accrual { awards } => award_postings(&mut out, awards, -1),
                Reversal::Spend {
                    member,
                    merchant,
                    amount,
                    ..
                } => movement(
                    &mut out,
                    Account::Merchant(*merchant),
                    Account::Member(*member),
                    Unit::Points,
                    amount.minor(),
                ),
                Reversal::Transfer { from, to, amount } => movement(
                    &mut out,
                    Account::Member(*to),
                    Account::Member(*from),
                    Unit::Points,
                    amount.minor(),
                ),
                Reversal::Donation {
                    member,
                    pool,
                    amount,
                    ..
                } => movement(
                    &mut out,
                    Account::Pool(*pool),
                    Account::Member(*member),
                    Unit::Points,
                    amount.minor(),
                ),
                Reversal::Grant {
                    pool,
                    member,
                    amount,
                } => movement(
                    &mut out,
                    Account::Member(*member),
                    Account::Pool(*pool),
                    Unit::Points,
                    amount.minor(),
                ),
            },
            Event::ProgramOpened(_)
            | Event::OrgUnitCreated { .. }
            | Event::MemberEnrolled { .. }
            | Event::MemberUpdated { .. }
            | Event::MemberMoved { .. }
            | Event::MerchantRegistered { .. }
            | Event::MerchantStatusChanged { .. }
            | Event::ActivityDefined(_)
            | Event::PoolCreated { .. }
            | Event::ServiceRecorded { .. }
            | Event::ServiceRejected { .. }
            | Event::HoldPlaced { .. }
            | Event::HoldReleased { .. } => {}
            Event::Wish(e) => e.push_postings(&mut out),
            Event::Gathering(e) => e.push_postings(&mut out),
            Event::Catalogue(e) => e.push_postings(&mut out),
            Event::Settlement(event) => event.postings(&mut out),
        }
        out
    }
}

/// A BLAKE3 hash in the journal's chain.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The hash before the first entry.
    pub const GENESIS: Hash = Hash([0; 32]);

    /// Lower-case hexadecimal.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 64 hexadecimal digits.
    pub fn from_hex(text: &str) -> Option<Hash> {
        if text.len() != 64 || !text.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Hash(out))
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

/// One journal entry. Created only by the ledger; never edited once written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    sequence: u64,
    id: EntryId,
    request_id: RequestId,
    actor: Actor,
    at: Timestamp,
    event: Event,
    hash: Hash,
}

/// The hashed part of an entry, borrowed, in canonical field order.
#[derive(Serialize)]
/// The entry id is left out: it is derived from the programme and the sequence number,
/// which the chain already binds, and replay checks it separately.
struct Canonical<'a> {
    sequence: u64,
    request_id: &'a RequestId,
    actor: &'a Actor,
    at: Timestamp,
    event: &'a Event,
}

/// A postcard output "flavour" that feeds bytes into a hasher through a bounded buffer, so
/// hashing a large entry needs neither a copy of its whole encoding nor one hasher call per
/// byte (postcard writes varints byte by byte, and BLAKE3 only reaches its wide SIMD path
/// on long updates). Updates in pieces hash exactly as one update of the same bytes.
struct HashFlavor {
    hasher: blake3::Hasher,
    buffer: Box<[u8]>,
    len: usize,
}

/// The streaming buffer: sixteen 1 KiB BLAKE3 chunks.
const HASH_BUFFER: usize = 16 * 1024;

impl HashFlavor {
    fn new(hasher: blake3::Hasher) -> Self {
        Self {
            hasher,
            buffer: vec![0; HASH_BUFFER].into_boxed_slice(),
            len: 0,
        }
    }

    fn flush(&mut self) {
        self.hasher.update(&self.buffer[..self.len]);
        self.len = 0;
    }
}

impl postcard::ser_flavors::Flavor for HashFlavor {
    type Output = blake3::Hasher;
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.try_extend(&[data])
    }
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        if let Some(end) = put(&mut self.buffer, self.len, data) {
            self.len = end;
            return Ok(());
        }
        self.flush();
        match put(&mut self.buffer, 0, data) {
            Some(end) => self.len = end,
            None => {
                self.hasher.update(data);
            }
        }
        Ok(())
    }
    fn finalize(mut self) -> postcard::Result<blake3::Hasher> {
        self.flush();
        Ok(self.hasher)
    }
}

/// A postcard output flavour over a fixed buffer, like postcard's own `Slice`, but with
/// short writes done as fixed-size stores.
///
/// postcard writes every varint and enum tag through `try_extend` with a length known only
/// at run time, which `Slice` turns into a call to the C library's `memcpy`. An entry has a
/// dozen such writes, and in a replay profile those calls were about 5 % of all the time.
/// The bytes written are exactly those `Slice` writes.
pub(crate) struct Scratch<'a> {
    buffer: &'a mut [u8],
    len: usize,
}

impl<'a> Scratch<'a> {
    pub(crate) fn new(buffer: &'a mut [u8]) -> Self {
        Self { buffer, len: 0 }
    }
}

impl postcard::ser_flavors::Flavor for Scratch<'_> {
    /// The number of bytes written.
    type Output = usize;

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        let slot = self
            .buffer
            .get_mut(self.len)
            .ok_or(postcard::Error::SerializeBufferFull)?;
        *slot = data;
        self.len += 1;
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.len = put(self.buffer, self.len, data).ok_or(postcard::Error::SerializeBufferFull)?;
        Ok(())
    }

    fn finalize(self) -> postcard::Result<usize> {
        Ok(self.len)
    }
}

/// Writes `data` into `buffer` at `start` and returns where it ends, or `None` if it does
/// not fit. Up to eight bytes are gathered into one word and stored whole, and sixteen (an
/// id) are one fixed-size copy; only longer or odd writes call `memcpy`. A word store may
/// write scratch bytes past the returned end, which the next write overwrites and no
/// output includes.
fn put(buffer: &mut [u8], start: usize, data: &[u8]) -> Option<usize> {
    let end = start
        .checked_add(data.len())
        .filter(|&end| end <= buffer.len())?;
    if let (true, Some(word)) = (data.len() <= 8, buffer.get_mut(start..start + 8)) {
        let mut value = 0u64;
        for (i, &byte) in data.iter().enumerate() {
            value |= u64::from(byte) << (8 * i);
        }
        word.copy_from_slice(&value.to_le_bytes());
    } else if let (Ok(id), Some(place)) = (
        <&[u8; 16]>::try_from(data),
        buffer.get_mut(start..start + 16),
    ) {
        place.copy_from_slice(id);
    } else {
        buffer.get_mut(start..end)?.copy_from_slice(data);
    }
    Some(end)
}

/// `value`'s postcard encoding written into `buffer`: the length used, or `None` if it does
/// not fit.
pub(crate) fn encode_into<T: Serialize + ?Sized>(value: &T, buffer: &mut [u8]) -> Option<usize> {
    postcard::serialize_with_flavor(value, Scratch::new(buffer)).ok()
}

/// Hashes any serialisable value in its canonical (postcard) encoding, after a domain tag.
///
/// Small values (every ordinary entry and request) are encoded into a stack buffer and
/// hashed in one call; larger ones stream into the hasher.
pub(crate) fn canonical_hash<T: Serialize>(key: &[u8; 32], prefix: &[u8], value: &T) -> Hash {
    // One contiguous input hashed in one call: BLAKE3's one-shot path for short inputs is
    // several times cheaper than feeding a streaming hasher piece by piece, and keyed mode
    // separates domains without spending input bytes on a tag.
    let mut buffer = [0u8; 512];
    if prefix.len() < buffer.len() {
        buffer[..prefix.len()].copy_from_slice(prefix);
        if let Some(encoded) = encode_into(value, &mut buffer[prefix.len()..]) {
            let total = prefix.len() + encoded;
            return Hash(*blake3::keyed_hash(key, &buffer[..total]).as_bytes());
        }
    }
    // Larger values (bulk records) stream into the hasher through a buffer; the bytes
    // hashed are the same.
    let mut hasher = blake3::Hasher::new_keyed(key);
    hasher.update(prefix);
    // Serialising plain data into a hasher cannot fail: the flavour never refuses bytes
    // and every type in an entry serialises infallibly.
    match postcard::serialize_with_flavor(value, HashFlavor::new(hasher.clone())) {
        Ok(streamed) => hasher = streamed,
        Err(_) => {
            hasher.update(b"points.v1.unserialisable");
        }
    }
    Hash(*hasher.finalize().as_bytes())
}

/// The BLAKE3 key for fingerprints of requests too large for the fast path.
pub(crate) const REQUEST_HASH_KEY: &[u8; 32] = b"points.v1 request fingerprint...";

/// Why stored bytes are not an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("entry bytes do not decode: {0}")]
pub struct DecodeError(String);

impl DecodeError {
    pub(crate) fn new(message: String) -> Self {
        Self(message)
    }
}

impl Entry {
    pub(crate) fn new(
        sequence: u64,
        id: EntryId,
        request_id: RequestId,
        actor: Actor,
        at: Timestamp,
        event: Event,
        prev: &Hash,
    ) -> Entry {
        let mut entry = Entry {
            sequence,
            id,
            request_id,
            actor,
            at,
            event,
            hash: Hash::GENESIS,
        };
        entry.hash = entry.compute_hash(prev);
        entry
    }

    /// The hash this entry should carry, given the previous entry's hash.
    pub fn compute_hash(&self, prev: &Hash) -> Hash {
        let canonical = Canonical {
            sequence: self.sequence,
            request_id: &self.request_id,
            actor: &self.actor,
            at: self.at,
            event: &self.event,
        };
        // The previous hash is the BLAKE3 key: it enters the compression function as the
        // chaining value, exactly as BLAKE3 chains its own chunks, and costs no input bytes,
        // which keeps an ordinary entry within two 64-byte blocks.
        canonical_hash(&prev.0, &[], &canonical)
    }

    /// Position in the journal, from 0.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }
    /// The entry's id (derived from the programme and sequence).
    pub fn id(&self) -> EntryId {
        self.id
    }
    /// The caller's idempotency key.
    pub fn request_id(&self) -> RequestId {
        self.request_id
    }
    /// Who acted.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }
    /// The instant the ledger was given for this entry.
    pub fn at(&self) -> Timestamp {
        self.at
    }
    /// What happened.
    pub fn event(&self) -> &Event {
        &self.event
    }
    /// The kind of entry.
    pub fn kind(&self) -> EntryKind {
        self.event.kind()
    }
    /// The entry this one corrects, if any.
    pub fn corrects(&self) -> Option<EntryId> {
        self.event.corrects()
    }
    /// The postings.
    pub fn postings(&self) -> Vec<Posting> {
        self.event.postings()
    }
    /// This entry's hash, chained over the previous one.
    pub fn hash(&self) -> Hash {
        self.hash
    }

    /// The compact binary form stores keep (postcard).
    pub fn encode(&self) -> Vec<u8> {
        // Encoding plain data into a growable buffer cannot fail.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Reads the compact binary form. The hash is not checked here; the chain check does it.
    pub fn decode(bytes: &[u8]) -> Result<Entry, DecodeError> {
        postcard::from_bytes(bytes).map_err(|e| DecodeError(e.to_string()))
    }

    /// The hash carried by an entry in its compact binary form, read without decoding the
    /// rest: the form ends with the hash's [`Entry::ENCODED_HASH_BYTES`] bytes (the hash is
    /// the last field, and postcard writes a fixed-size array as its bytes). `None` if
    /// `bytes` is shorter than that. Like [`Entry::decode`], it checks nothing.
    pub fn hash_of_encoded(bytes: &[u8]) -> Option<Hash> {
        let start = bytes.len().checked_sub(Self::ENCODED_HASH_BYTES)?;
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&bytes[start..]);
        Some(Hash(hash))
    }

    /// How many bytes at the end of an entry's compact binary form are its hash; a store
    /// can read them alone (for a Merkle tree over the journal, say) without the entry.
    pub const ENCODED_HASH_BYTES: usize = 32;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A value with every shape postcard writes: varints of every length, signed ones,
    /// sixteen-byte ids, strings, byte strings, options and nested sequences.
    type Shapes = (
        u64,
        i64,
        [u8; 16],
        String,
        Vec<u8>,
        Option<u32>,
        Vec<(u16, Vec<u8>, i128)>,
    );

    fn shapes() -> impl Strategy<Value = Shapes> {
        (
            any::<u64>().prop_map(|v| v >> (v % 64)),
            any::<i64>(),
            any::<[u8; 16]>(),
            ".{0,40}",
            proptest::collection::vec(any::<u8>(), 0..40),
            any::<Option<u32>>(),
            proptest::collection::vec(
                (
                    any::<u16>(),
                    proptest::collection::vec(any::<u8>(), 0..20),
                    any::<i128>(),
                ),
                0..8,
            ),
        )
    }

    proptest! {
        /// The scratch flavour writes exactly postcard's bytes, or reports the buffer full
        /// when they do not fit, whatever the buffer's size.
        #[test]
        fn scratch_writes_postcards_bytes(value in shapes(), room in 0usize..600) {
            let expected = postcard::to_allocvec(&value).unwrap();
            let mut buffer = vec![0xA5; room];
            match encode_into(&value, &mut buffer) {
                Some(len) => prop_assert_eq!(&buffer[..len], &expected[..]),
                None => prop_assert!(expected.len() > room),
            }
        }

        /// A value too large for the stack buffer streams into the hasher and hashes exactly
        /// as its whole encoding would in one call.
        #[test]
        fn streamed_hash_is_the_one_shot_hash(
            value in shapes(),
            filler in proptest::collection::vec(any::<u8>(), 0..40_000),
        ) {
            let big = (&value, &filler, &value);
            let key = [7u8; 32];
            let expected = blake3::keyed_hash(&key, &postcard::to_allocvec(&big).unwrap());
            prop_assert_eq!(canonical_hash(&key, &[], &big), Hash(*expected.as_bytes()));
        }
    }
}
