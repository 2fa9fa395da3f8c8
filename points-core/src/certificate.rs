//! Service-record certificates: for one member and one period, every approved service
//! record (activity, org unit, date, hours, recorder) with totals, tied to the journal by
//! its length and head hash, and signed with the programme's ed25519 key.
//!
//! A third party checks a certificate offline with [`verify`] and the programme's
//! published public key: the signature covers [`Certificate::note`], a line-based text that
//! spells out every field (names quoted as JSON strings, so no name can pose as another
//! line), and [`verify`] also recomputes the totals from the records. Any change to any
//! field makes verification fail.
//!
//! Which records: those of the member whose service *started* in the period (in the
//! programme's local time), approved and not reversed as of the journal head the
//! certificate names. Pending, rejected and reversed records are left out, because they
//! earned nothing. Hours are the minutes the approval counted (after any per-occasion cap).

use crate::amount::{Minutes, Points, Scale};
use crate::command::Actor;
use crate::entry::{Entry, Event, Hash, Reversal};
use crate::ids::{ActivityId, MemberId, OrgUnitId, ProgramId, RecordId};
use crate::ledger::{gathering::GatheringEvent, wish::WishEvent};
use crate::model::TimeKind;
use crate::rollup::Period;
use crate::time::Timestamp;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

/// One approved service record on a certificate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertifiedRecord {
    /// The record.
    pub record: RecordId,
    /// The activity served.
    pub activity: ActivityId,
    /// The activity's name when it was defined.
    pub activity_name: String,
    /// Where the service took place.
    pub org_unit: OrgUnitId,
    /// The org unit's name.
    pub org_unit_name: String,
    /// When the service started.
    pub started_at: Timestamp,
    /// Minutes counted by the approval.
    pub minutes: Minutes,
    /// Credit or honour time.
    pub time_kind: TimeKind,
    /// Points awarded.
    pub points: Points,
    /// Who recorded the service (the actor of its `ServiceRecorded` entry).
    pub recorder: Actor,
}

/// What a certificate states. Build it with [`Certificate::build`], sign it with
/// [`Certificate::sign`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    /// The programme.
    pub program: ProgramId,
    /// The programme's name.
    pub program_name: String,
    /// The programme's points scale (decimal places), for printing points.
    pub scale: u8,
    /// The member.
    pub member: MemberId,
    /// The period, as asked.
    pub period: Period,
    /// The first instant of the period.
    pub period_start: Timestamp,
    /// The first instant after the period.
    pub period_end: Timestamp,
    /// The records, ordered by start time, then record id.
    pub records: Vec<CertifiedRecord>,
    /// Credit minutes over all records.
    pub credit_minutes: Minutes,
    /// Honour minutes over all records.
    pub honour_minutes: Minutes,
    /// Points over all records.
    pub points: Points,
    /// How many journal entries the certificate covers (entries 0 to `journal_size - 1`).
    pub journal_size: u64,
    /// The chain hash of entry `journal_size - 1`: the journal head at issue time.
    pub journal_head: Hash,
    /// When the certificate was issued.
    pub issued_at: Timestamp,
}

/// A certificate with its signature, as handed to the member (JSON; keys and signature in
/// hexadecimal).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCertificate {
    /// What is certified.
    pub certificate: Certificate,
    /// The signer's ed25519 public key, hex.
    pub public_key: String,
    /// The ed25519 signature over [`Certificate::note`], hex.
    pub signature: String,
}

/// Why a certificate cannot be built or does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// The journal does not start with its opening entry, or is out of sequence.
    #[error("the journal must start with its ProgramOpened entry and be in sequence")]
    MissingGenesis,
    /// The member was never enrolled.
    #[error("unknown member")]
    UnknownMember,
    /// The period has no bounds at the programme's offset.
    #[error("the period has no bounds at the programme's offset")]
    BadPeriod,
    /// A total does not fit.
    #[error("a total overflowed")]
    Overflow,
    /// The certificate was signed by another key than the one trusted.
    #[error("signed by {found}, not by the trusted key {trusted}")]
    WrongKey {
        /// The trusted key.
        trusted: String,
        /// The key named in the certificate.
        found: String,
    },
    /// A key or signature is not well-formed hex of the right length.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The totals are not the sums of the records.
    #[error("totals do not match the records")]
    TotalsMismatch,
    /// The signature does not match the certificate's contents.
    #[error("signature does not match the certificate")]
    BadSignature,
}

/// What the builder remembers of a recorded service.
struct Recorded {
    record: crate::model::ServiceRecord,
    recorder: Actor,
    award: Option<(Minutes, TimeKind, Points)>,
}

fn quoted(text: &str) -> String {
    // JSON string quoting escapes quotes, backslashes and control characters, so a name
    // can never end its line early or pose as another field.
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn actor_text(actor: &Actor) -> String {
    match actor {
        Actor::System => "system".into(),
        Actor::Admin { id } => format!("admin {id}"),
        Actor::Recorder { id, org_unit } => format!("recorder {id} in {org_unit}"),
        Actor::Merchant { id, merchant } => format!("merchant {id} for {merchant}"),
    }
}

fn time_kind_text(kind: TimeKind) -> &'static str {
    match kind {
        TimeKind::Credit => "credit",
        TimeKind::Honour => "honour",
    }
}

/// Builds a [`Certificate`] one journal entry at a time, for callers that stream the
/// journal (a server reading pages from its store).
pub struct CertificateBuilder {
    member: MemberId,
    period: Period,
    spec: Option<Box<crate::program::ProgramSpec>>,
    next: u64,
    head: Hash,
    enrolled: bool,
    units: HashMap<OrgUnitId, String>,
    activities: HashMap<ActivityId, String>,
    records: BTreeMap<RecordId, Recorded>,
}

impl CertificateBuilder {
    /// A builder for `member`'s certificate of `period`.
    pub fn new(member: MemberId, period: Period) -> CertificateBuilder {
        CertificateBuilder {
            member,
            period,
            spec: None,
            next: 0,
            head: Hash::GENESIS,
            enrolled: false,
            units: HashMap::new(),
            activities: HashMap::new(),
            records: BTreeMap::new(),
        }
    }

    /// Reads the next entry; entries must come in sequence order from the first.
    pub fn push(&mut self, entry: &Entry) -> Result<(), CertificateError> {
        if entry.sequence() != self.next {
            return Err(CertificateError::MissingGenesis);
        }
        self.next += 1;
        self.head = entry.hash();
        let member = self.member;
        match entry.event() {
            Event::ProgramOpened(s) if self.spec.is_none() => self.spec = Some(s.clone()),
            _ if self.spec.is_none() => return Err(CertificateError::MissingGenesis),
            Event::OrgUnitCreated { id, name, .. } => {
                self.units.insert(*id, name.clone());
            }
            Event::ActivityDefined(activity) => {
                self.activities.insert(activity.id, activity.name.clone());
            }
            Event::MemberEnrolled { id, .. } if *id == member => self.enrolled = true,
            Event::ServiceRecorded { records } => {
                for r in records.iter().filter(|r| r.member == member) {
                    self.records.insert(
                        r.id,
                        Recorded {
                            record: r.clone(),
                            recorder: *entry.actor(),
                            award: None,
                        },
                    );
                }
            }
            Event::ServiceApproved { awards } => {
                for award in awards {
                    if let Some(r) = self.records.get_mut(&award.record) {
                        r.award = Some((award.minutes, award.time_kind, award.points));
                    }
                }
            }
            // Issue 5: a wish's confirmation records and approves in one entry (recorded by
            // the confirming recorder); an event's check-out records, its approval approves.
            Event::Wish(event) => {
                if let WishEvent::Confirmed { record, award, .. } = &**event {
                    if record.member == member {
                        self.records.insert(
                            record.id,
                            Recorded {
                                record: record.clone(),
                                recorder: *entry.actor(),
                                award: Some((award.minutes, award.time_kind, award.points)),
                            },
                        );
                    }
                }
            }
            Event::Gathering(event) => match &**event {
                GatheringEvent::CheckedOut { record, .. } if record.member == member => {
                    self.records.insert(
                        record.id,
                        Recorded {
                            record: record.clone(),
                            recorder: *entry.actor(),
                            award: None,
                        },
                    );
                }
                GatheringEvent::Approved { awards, .. } => {
                    for award in awards {
                        if let Some(r) = self.records.get_mut(&award.record) {
                            r.award = Some((award.minutes, award.time_kind, award.points));
                        }
                    }
                }
                _ => {}
            },
            Event::Reversed {
                effect: Reversal::Accrual { awards },
                ..
            } => {
                for award in awards {
                    self.records.remove(&award.record);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// The certificate of what was read, issued at `issued_at`; the last entry read is
    /// the journal head it names.
    pub fn finish(self, issued_at: Timestamp) -> Result<Certificate, CertificateError> {
        let spec = self.spec.ok_or(CertificateError::MissingGenesis)?;
        if !self.enrolled {
            return Err(CertificateError::UnknownMember);
        }
        let (start, end) = self
            .period
            .bounds(spec.utc_offset_minutes())
            .ok_or(CertificateError::BadPeriod)?;
        let (activities, units) = (self.activities, self.units);
        let mut certified: Vec<CertifiedRecord> = self
            .records
            .into_values()
            .filter(|r| start <= r.record.started_at && r.record.started_at < end)
            .filter_map(|r| {
                let (minutes, time_kind, points) = r.award?;
                Some(CertifiedRecord {
                    record: r.record.id,
                    activity: r.record.activity,
                    activity_name: activities
                        .get(&r.record.activity)
                        .cloned()
                        .unwrap_or_default(),
                    org_unit: r.record.org_unit,
                    org_unit_name: units.get(&r.record.org_unit).cloned().unwrap_or_default(),
                    started_at: r.record.started_at,
                    minutes,
                    time_kind,
                    points,
                    recorder: r.recorder,
                })
            })
            .collect();
        certified.sort_by_key(|r| (r.started_at, r.record));
        let (credit_minutes, honour_minutes, points) =
            totals(&certified).ok_or(CertificateError::Overflow)?;
        Ok(Certificate {
            program: spec.id(),
            program_name: spec.name().to_owned(),
            scale: spec.scale().places(),
            member: self.member,
            period: self.period,
            period_start: start,
            period_end: end,
            records: certified,
            credit_minutes,
            honour_minutes,
            points,
            journal_size: self.next,
            journal_head: self.head,
            issued_at,
        })
    }
}

impl Certificate {
    /// Builds the certificate of `member` for `period` from a journal that starts at its
    /// first entry. Every entry given is covered: the certificate names the last one's
    /// hash as the journal head, so pass the journal up to its head at issue time.
    pub fn build<'a>(
        journal: impl IntoIterator<Item = &'a Entry>,
        member: MemberId,
        period: Period,
        issued_at: Timestamp,
    ) -> Result<Certificate, CertificateError> {
        let mut builder = CertificateBuilder::new(member, period);
        for entry in journal {
            builder.push(entry)?;
        }
        builder.finish(issued_at)
    }

    /// Points as a decimal string at the programme's scale.
    fn points_text(&self, points: Points) -> String {
        match Scale::new(self.scale) {
            Some(scale) => points.to_decimal(scale).to_string(),
            None => format!("{} minor units", points.minor()),
        }
    }

    /// The exact bytes that are signed: one field per line, every record on its own line,
    /// readable by a person.
    pub fn note(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "points.v1 service-record certificate");
        let _ = writeln!(
            out,
            "program {} {}",
            self.program,
            quoted(&self.program_name)
        );
        let _ = writeln!(out, "scale {}", self.scale);
        let _ = writeln!(out, "member {}", self.member);
        let _ = writeln!(
            out,
            "period {} from {} to {}",
            self.period,
            self.period_start.millis(),
            self.period_end.millis()
        );
        let _ = writeln!(out, "records {}", self.records.len());
        for r in &self.records {
            let _ = writeln!(
                out,
                "record {} started {} minutes {} {} points {} activity {} {} org-unit {} {} recorded-by {}",
                r.record,
                r.started_at.millis(),
                r.minutes.get(),
                time_kind_text(r.time_kind),
                self.points_text(r.points),
                r.activity,
                quoted(&r.activity_name),
                r.org_unit,
                quoted(&r.org_unit_name),
                actor_text(&r.recorder),
            );
        }
        let _ = writeln!(
            out,
            "total credit-minutes {} honour-minutes {} points {}",
            self.credit_minutes.get(),
            self.honour_minutes.get(),
            self.points_text(self.points)
        );
        let _ = writeln!(
            out,
            "journal size {} head {}",
            self.journal_size,
            self.journal_head.to_hex()
        );
        let _ = writeln!(out, "issued {}", self.issued_at.millis());
        out
    }

    /// Signs the note with the programme's key (the 32-byte ed25519 seed). Deterministic:
    /// the same certificate and key give the same signature.
    pub fn sign(self, secret_key: &[u8; 32]) -> SignedCertificate {
        let key = SigningKey::from_bytes(secret_key);
        let signature = key.sign(self.note().as_bytes());
        SignedCertificate {
            certificate: self,
            public_key: Hash(key.verifying_key().to_bytes()).to_hex(),
            signature: hex(&signature.to_bytes()),
        }
    }
}

fn totals(records: &[CertifiedRecord]) -> Option<(Minutes, Minutes, Points)> {
    let (mut credit, mut honour, mut points) = (Minutes::ZERO, Minutes::ZERO, Points::ZERO);
    for r in records {
        match r.time_kind {
            TimeKind::Credit => credit = credit.checked_add(r.minutes)?,
            TimeKind::Honour => honour = honour.checked_add(r.minutes)?,
        }
        points = points.checked_add(r.points)?;
    }
    Some((credit, honour, points))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex<const N: usize>(text: &str, what: &'static str) -> Result<[u8; N], CertificateError> {
    if text.len() != 2 * N || !text.is_ascii() {
        return Err(CertificateError::Malformed(what));
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
            .map_err(|_| CertificateError::Malformed(what))?;
    }
    Ok(out)
}

/// Checks a certificate offline: the totals are the sums of its records, it names the
/// trusted key, and the signature matches its note under that key. `trusted_public_key`
/// is the programme's published ed25519 public key in hex; pass the certificate's own
/// `public_key` only when the key is checked some other way.
pub fn verify(
    signed: &SignedCertificate,
    trusted_public_key: &str,
) -> Result<(), CertificateError> {
    if !signed.public_key.eq_ignore_ascii_case(trusted_public_key) {
        return Err(CertificateError::WrongKey {
            trusted: trusted_public_key.to_owned(),
            found: signed.public_key.clone(),
        });
    }
    let key_bytes: [u8; 32] = decode_hex(trusted_public_key, "public key")?;
    let key = VerifyingKey::from_bytes(&key_bytes)
        .map_err(|_| CertificateError::Malformed("public key"))?;
    let signature = Signature::from_bytes(&decode_hex::<64>(&signed.signature, "signature")?);
    let c = &signed.certificate;
    if totals(&c.records) != Some((c.credit_minutes, c.honour_minutes, c.points)) {
        return Err(CertificateError::TotalsMismatch);
    }
    key.verify_strict(c.note().as_bytes(), &signature)
        .map_err(|_| CertificateError::BadSignature)
}

impl SignedCertificate {
    /// Same as [`verify`].
    pub fn verify(&self, trusted_public_key: &str) -> Result<(), CertificateError> {
        verify(self, trusted_public_key)
    }
}
