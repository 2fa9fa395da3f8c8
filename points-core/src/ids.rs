//! Identifiers: UUID newtypes that can never be nil.
//!
//! Every id a caller hands in is a UUID chosen by the caller (enrolment, merchants, activities)
//! or derived by the ledger from data it already holds (entries, service records), so the core
//! never needs randomness. A nil UUID is refused at construction because it is the usual sign
//! of an uninitialised field on the caller's side.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

/// Why a string or UUID is not a valid id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The text is not a UUID in any of the usual forms.
    #[error("not a UUID")]
    Malformed,
    /// The UUID is the nil UUID, which never names anything.
    #[error("the nil UUID is not a valid id")]
    Nil,
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "Uuid", into = "Uuid")]
        pub struct $name(Uuid);

        impl $name {
            /// Wraps a UUID, refusing the nil UUID.
            pub fn new(uuid: Uuid) -> Result<Self, IdError> {
                if uuid.is_nil() {
                    Err(IdError::Nil)
                } else {
                    Ok(Self(uuid))
                }
            }

            /// Builds an id from a 128-bit number; handy for tests and fixtures.
            pub fn from_u128(value: u128) -> Result<Self, IdError> {
                Self::new(Uuid::from_u128(value))
            }

            /// Parses the hyphenated, simple or braced UUID text form.
            pub fn parse(text: &str) -> Result<Self, IdError> {
                let uuid = Uuid::try_parse(text).map_err(|_| IdError::Malformed)?;
                Self::new(uuid)
            }

            /// The UUID inside.
            pub const fn uuid(self) -> Uuid {
                self.0
            }

            /// The sixteen bytes of the UUID, big-endian.
            pub const fn as_bytes(&self) -> &[u8; 16] {
                self.0.as_bytes()
            }
        }

        impl TryFrom<Uuid> for $name {
            type Error = IdError;
            fn try_from(uuid: Uuid) -> Result<Self, IdError> {
                Self::new(uuid)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(text: &str) -> Result<Self, IdError> {
                Self::parse(text)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0.hyphenated())
            }
        }
    };
}

id_type! {
    /// A points programme (one scheme with its own unit, rules and journal).
    ProgramId
}
id_type! {
    /// A node of the organisation tree: district, street, community or estate.
    OrgUnitId
}
id_type! {
    /// A volunteer: a resident or party member enrolled in the programme.
    MemberId
}
id_type! {
    /// A partner merchant or a community supermarket.
    MerchantId
}
id_type! {
    /// An activity whose rule turns recorded service into points and hours.
    ActivityId
}
id_type! {
    /// A named pool of donated points (love bank, time bank).
    PoolId
}
id_type! {
    /// A journal entry. Derived from the programme and the sequence number.
    EntryId
}
id_type! {
    /// The caller's idempotency key: the same key and request give the same outcome.
    RequestId
}
id_type! {
    /// One volunteer's service record inside a `RecordService` entry. Derived, never chosen.
    RecordId
}
id_type! {
    /// Who acted: an API key, a staff account or a job, as the calling program names it.
    ActorId
}
id_type! {
    /// A resident's micro-wish (微心愿), posted by a recorder (issue 5).
    WishId
}
id_type! {
    /// A volunteer event with a roster and check-in/out, called a gathering in code so it
    /// is not confused with the journal's `Event` (issue 5).
    GatheringId
}
id_type! {
    /// A good in a merchant's catalogue, priced in points (issue 5).
    ItemId
}
id_type! {
    /// A community fund (自治金, 专项激励资金) that reimburses merchants in money.
    FundId
}

/// Builds a version-8 UUID from the first sixteen bytes of a BLAKE3 hash over the parts.
///
/// Version and variant bits are set, so the result is never nil.
fn derived_uuid(domain: &[u8], parts: &[&[u8]]) -> Uuid {
    let mut hasher = blake3::Hasher::new();
    hasher.update(domain);
    for part in parts {
        hasher.update(part);
    }
    let digest = hasher.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.as_bytes()[..16]);
    Uuid::new_v8(bytes)
}

impl EntryId {
    /// The id of the entry at `sequence` in `program`'s journal.
    ///
    /// Ids are derived rather than stored so that a retry can be answered with the original
    /// entry's id from nothing but its sequence number. The first eight bytes are a hash of
    /// the programme (computed once per ledger, see [`EntryId::program_prefix`]), the last
    /// eight the sequence number, so deriving an id on the hot path costs no hashing.
    pub fn for_sequence(program: ProgramId, sequence: u64) -> Self {
        Self::from_prefix(Self::program_prefix(program), sequence)
    }

    /// The programme-specific half of every entry id in `program`'s journal.
    pub fn program_prefix(program: ProgramId) -> [u8; 8] {
        let digest = blake3::Hasher::new()
            .update(b"points.v1.entry")
            .update(program.as_bytes())
            .finalize();
        let mut prefix = [0u8; 8];
        prefix.copy_from_slice(&digest.as_bytes()[..8]);
        prefix
    }

    /// The id of the entry at `sequence`, given its programme's prefix. Unique for every
    /// sequence below 2^62 (the top two bits carry the UUID variant).
    pub fn from_prefix(prefix: [u8; 8], sequence: u64) -> Self {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&prefix);
        bytes[8..].copy_from_slice(&sequence.to_be_bytes());
        Self(Uuid::new_v8(bytes))
    }

    /// The sequence number this id stands for in the journal with `prefix`, or `None` if
    /// the id was not derived from that prefix.
    pub fn sequence_for(self, prefix: [u8; 8]) -> Option<u64> {
        let bytes = self.0.as_bytes();
        let mut tail = [0u8; 8];
        tail.copy_from_slice(&bytes[8..]);
        let sequence = u64::from_be_bytes(tail) & 0x3fff_ffff_ffff_ffff;
        (Self::from_prefix(prefix, sequence) == self).then_some(sequence)
    }
}

impl RecordId {
    /// The id of the `index`-th record of the `RecordService` entry `entry`.
    pub fn for_record(entry: EntryId, index: u32) -> Self {
        Self(derived_uuid(
            b"points.v1.record",
            &[entry.as_bytes(), &index.to_le_bytes()],
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nil_and_malformed_are_refused() {
        assert_eq!(MemberId::new(Uuid::nil()), Err(IdError::Nil));
        assert_eq!(MemberId::parse("not-a-uuid"), Err(IdError::Malformed));
        assert_eq!(
            MemberId::parse("00000000-0000-0000-0000-000000000000"),
            Err(IdError::Nil)
        );
        let id = MemberId::parse("67e55044-10b1-426f-9247-bb680e5fe0c8").unwrap();
        assert_eq!(id.to_string(), "67e55044-10b1-426f-9247-bb680e5fe0c8");
    }

    #[test]
    fn derived_ids_differ_by_sequence_and_program() {
        let p1 = ProgramId::from_u128(1).unwrap();
        let p2 = ProgramId::from_u128(2).unwrap();
        assert_ne!(EntryId::for_sequence(p1, 0), EntryId::for_sequence(p1, 1));
        assert_ne!(EntryId::for_sequence(p1, 0), EntryId::for_sequence(p2, 0));
        assert_eq!(EntryId::for_sequence(p1, 7), EntryId::for_sequence(p1, 7));
    }

    #[test]
    fn entry_ids_give_back_their_sequence() {
        let p = ProgramId::from_u128(9).unwrap();
        let prefix = EntryId::program_prefix(p);
        for seq in [0, 1, 255, 1 << 40, (1 << 62) - 1] {
            assert_eq!(
                EntryId::for_sequence(p, seq).sequence_for(prefix),
                Some(seq)
            );
        }
        let other = EntryId::program_prefix(ProgramId::from_u128(10).unwrap());
        assert_eq!(EntryId::for_sequence(p, 5).sequence_for(other), None);
        assert_eq!(EntryId::from_u128(77).unwrap().sequence_for(prefix), None);
    }

    #[test]
    fn serde_refuses_nil() {
        let nil = "\"00000000-0000-0000-0000-000000000000\"";
        assert!(serde_json::from_str::<MemberId>(nil).is_err());
    }
}
