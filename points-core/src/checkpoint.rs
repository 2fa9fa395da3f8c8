//! Signed checkpoints: a programme's statement, at one moment, of how long its journal is
//! and what its Merkle root is. Anyone holding the programme's public key can check a
//! checkpoint offline; two checkpoints of the same size with different roots prove that
//! the history was forked.
//!
//! Signing is deterministic ed25519 over a short text note, so the core signs without any
//! randomness: the server hands in the key, the core hands back the signature.

use crate::entry::Hash;
use crate::ids::ProgramId;
use crate::merkle::TreeHash;
use crate::time::Timestamp;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

/// What a checkpoint states.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The programme.
    pub program: ProgramId,
    /// How many journal entries the tree covers (entries 0 to `tree_size - 1`).
    pub tree_size: u64,
    /// The Merkle root over those entries' hashes.
    pub root: TreeHash,
    /// The chain hash of entry `tree_size - 1`.
    pub journal_head: Hash,
    /// When the checkpoint was made.
    pub issued_at: Timestamp,
}

impl Checkpoint {
    /// The exact bytes that are signed: a short, line-based note that a person can read.
    pub fn note(&self) -> String {
        format!(
            "points.v1 checkpoint\nprogram {}\nsize {}\nroot {}\nhead {}\ntime {}\n",
            self.program,
            self.tree_size,
            self.root.to_hex(),
            self.journal_head.to_hex(),
            self.issued_at.millis()
        )
    }

    /// Signs the note with the programme's key (the 32-byte ed25519 seed).
    pub fn sign(self, secret_key: &[u8; 32]) -> SignedCheckpoint {
        let key = SigningKey::from_bytes(secret_key);
        let signature = key.sign(self.note().as_bytes());
        SignedCheckpoint {
            checkpoint: self,
            public_key: Hash(key.verifying_key().to_bytes()).to_hex(),
            signature: signature
                .to_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
        }
    }
}

/// The public key for a 32-byte ed25519 seed, in hexadecimal.
pub fn public_key_hex(secret_key: &[u8; 32]) -> String {
    Hash(
        SigningKey::from_bytes(secret_key)
            .verifying_key()
            .to_bytes(),
    )
    .to_hex()
}

/// A checkpoint with its signature, as published (JSON-friendly: keys and signatures are hex).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCheckpoint {
    /// What is stated.
    pub checkpoint: Checkpoint,
    /// The signer's ed25519 public key, hex.
    pub public_key: String,
    /// The ed25519 signature over [`Checkpoint::note`], hex.
    pub signature: String,
}

/// Why a checkpoint does not check out.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The checkpoint was signed by another key than the one trusted.
    #[error("signed by {found}, not by the trusted key {trusted}")]
    WrongKey {
        /// The trusted key.
        trusted: String,
        /// The key named in the checkpoint.
        found: String,
    },
    /// A key or signature is not well-formed hex of the right length.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The signature does not match the note.
    #[error("signature does not match checkpoint of size {0}")]
    BadSignature(u64),
    /// Two checkpoints of one programme and size disagree on the root.
    #[error("fork: two checkpoints of size {size} have roots {a} and {b}")]
    Fork {
        /// The size both claim.
        size: u64,
        /// One root.
        a: TreeHash,
        /// The other root.
        b: TreeHash,
    },
}

fn decode_hex<const N: usize>(text: &str, what: &'static str) -> Result<[u8; N], CheckpointError> {
    if text.len() != 2 * N || !text.is_ascii() {
        return Err(CheckpointError::Malformed(what));
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
            .map_err(|_| CheckpointError::Malformed(what))?;
    }
    Ok(out)
}

impl SignedCheckpoint {
    /// Checks the signature against the trusted public key (hex).
    pub fn verify(&self, trusted_public_key: &str) -> Result<(), CheckpointError> {
        if !self.public_key.eq_ignore_ascii_case(trusted_public_key) {
            return Err(CheckpointError::WrongKey {
                trusted: trusted_public_key.to_owned(),
                found: self.public_key.clone(),
            });
        }
        let key_bytes: [u8; 32] = decode_hex(trusted_public_key, "public key")?;
        let key = VerifyingKey::from_bytes(&key_bytes)
            .map_err(|_| CheckpointError::Malformed("public key"))?;
        let signature = Signature::from_bytes(&decode_hex::<64>(&self.signature, "signature")?);
        key.verify(self.checkpoint.note().as_bytes(), &signature)
            .map_err(|_| CheckpointError::BadSignature(self.checkpoint.tree_size))
    }
}

/// Refuses two checkpoints of the same programme and size whose roots differ.
pub fn check_fork(a: &Checkpoint, b: &Checkpoint) -> Result<(), CheckpointError> {
    if a.program == b.program && a.tree_size == b.tree_size && a.root != b.root {
        return Err(CheckpointError::Fork {
            size: a.tree_size,
            a: a.root,
            b: b.root,
        });
    }
    Ok(())
}

/// A member's public pseudonym: BLAKE3 keyed with the programme's published pseudonym key,
/// over the member's card code. A member can recompute it from their own code; nobody can
/// go from the pseudonym back to the code without trying codes one by one.
pub fn pseudonym(pseudonym_key: &[u8; 32], member_code: &str) -> String {
    let digest = blake3::keyed_hash(pseudonym_key, member_code.as_bytes());
    digest.as_bytes()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checkpoint(size: u64, root_byte: u8) -> Checkpoint {
        Checkpoint {
            program: ProgramId::from_u128(1).unwrap(),
            tree_size: size,
            root: TreeHash([root_byte; 32]),
            journal_head: Hash([9; 32]),
            issued_at: Timestamp::from_millis(1_790_000_000_000),
        }
    }

    #[test]
    fn signatures_verify_and_any_change_breaks_them() {
        let secret = [7u8; 32];
        let signed = checkpoint(10, 1).sign(&secret);
        let key = public_key_hex(&secret);
        signed.verify(&key).unwrap();
        // Deterministic: the same checkpoint signs to the same bytes.
        assert_eq!(signed, checkpoint(10, 1).sign(&secret));

        let mut changed = signed.clone();
        changed.checkpoint.tree_size = 11;
        assert_eq!(changed.verify(&key), Err(CheckpointError::BadSignature(11)));
        let mut changed = signed.clone();
        changed.checkpoint.root = TreeHash([2; 32]);
        assert!(changed.verify(&key).is_err());
        let other = public_key_hex(&[8u8; 32]);
        assert!(matches!(
            signed.verify(&other),
            Err(CheckpointError::WrongKey { .. })
        ));
        let mut garbled = signed.clone();
        garbled.signature = "zz".into();
        assert_eq!(
            garbled.verify(&key),
            Err(CheckpointError::Malformed("signature"))
        );
    }

    #[test]
    fn forks_are_detected() {
        assert!(check_fork(&checkpoint(5, 1), &checkpoint(5, 1)).is_ok());
        assert!(check_fork(&checkpoint(5, 1), &checkpoint(6, 2)).is_ok());
        assert!(matches!(
            check_fork(&checkpoint(5, 1), &checkpoint(5, 2)),
            Err(CheckpointError::Fork { size: 5, .. })
        ));
    }

    #[test]
    fn pseudonyms_are_stable_keyed_and_distinct() {
        let key = [3u8; 32];
        assert_eq!(pseudonym(&key, "DH-0001"), pseudonym(&key, "DH-0001"));
        assert_ne!(pseudonym(&key, "DH-0001"), pseudonym(&key, "DH-0002"));
        assert_ne!(pseudonym(&key, "DH-0001"), pseudonym(&[4u8; 32], "DH-0001"));
        assert_eq!(pseudonym(&key, "DH-0001").len(), 24);
    }
}
