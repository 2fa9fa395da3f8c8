//! The keys the server signs with on a programme's behalf.
//!
//! One 32-byte secret per store, made from the operating system's randomness the first time
//! a server opens the store and kept in the store itself, so that every server sharing a
//! PostgreSQL database signs with the same keys and a restart keeps them. Each programme's
//! keys are derived from that secret with BLAKE3's key derivation, one context string per
//! purpose, so that a key for one purpose or programme reveals nothing about another:
//!
//! - the programme's ed25519 signing key (checkpoints, service-record certificates), whose
//!   public half is published so that anyone can verify offline;
//! - the programme's pseudonym key, which turns member ids into the keyed pseudonyms of the
//!   public disclosure.
//!
//! Anyone who can read the store can sign as the programme; operators who need more keep the
//! database as private as they would keep a key file.

use points_core::{Hash, ProgramId};
use std::fmt;

const SIGNING_CONTEXT: &str = "points.v1 2026-11 programme ed25519 signing key";
const PSEUDONYM_CONTEXT: &str = "points.v1 2026-11 programme member pseudonym key";

/// The server's signing secret and the per-programme keys derived from it.
#[derive(Clone)]
pub struct ProgramKeys {
    secret: [u8; 32],
}

impl fmt::Debug for ProgramKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret, not even in a debug log.
        f.write_str("ProgramKeys(..)")
    }
}

impl ProgramKeys {
    /// Keys derived from `secret` (as [`crate::store::Store::server_secret`] returns it).
    pub fn new(secret: [u8; 32]) -> ProgramKeys {
        ProgramKeys { secret }
    }

    /// A fresh candidate secret from the operating system's randomness.
    pub fn random_secret() -> std::io::Result<[u8; 32]> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok(secret)
    }

    fn derive(&self, context: &str, program: ProgramId) -> [u8; 32] {
        let mut hasher = blake3::Hasher::new_derive_key(context);
        hasher.update(&self.secret);
        hasher.update(uuid::Uuid::from(program).as_bytes());
        *hasher.finalize().as_bytes()
    }

    /// The programme's ed25519 signing key (the 32-byte seed).
    pub fn signing_key(&self, program: ProgramId) -> [u8; 32] {
        self.derive(SIGNING_CONTEXT, program)
    }

    /// The programme's ed25519 public key, as lower-case hexadecimal.
    pub fn public_key_hex(&self, program: ProgramId) -> String {
        let key = ed25519_dalek::SigningKey::from_bytes(&self.signing_key(program));
        Hash(key.verifying_key().to_bytes()).to_hex()
    }

    /// The programme's key for member pseudonyms.
    pub fn pseudonym_key(&self, program: ProgramId) -> [u8; 32] {
        self.derive(PSEUDONYM_CONTEXT, program)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(byte: u8) -> ProgramId {
        ProgramId::try_from(uuid::Uuid::from_bytes([byte; 16])).unwrap()
    }

    #[test]
    fn keys_differ_by_purpose_programme_and_secret() {
        let keys = ProgramKeys::new([7; 32]);
        let a = program(1);
        let b = program(2);
        assert_ne!(keys.signing_key(a), keys.signing_key(b));
        assert_ne!(keys.signing_key(a), keys.pseudonym_key(a));
        assert_ne!(
            keys.signing_key(a),
            ProgramKeys::new([8; 32]).signing_key(a)
        );
        // Derivation is deterministic: a restart signs with the same key.
        assert_eq!(
            keys.signing_key(a),
            ProgramKeys::new([7; 32]).signing_key(a)
        );
        assert_eq!(keys.public_key_hex(a).len(), 64);
        assert_eq!(format!("{keys:?}"), "ProgramKeys(..)");
    }
}
