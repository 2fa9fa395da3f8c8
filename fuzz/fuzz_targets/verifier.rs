//! The verifier's inputs (public disclosure): signed checkpoints parsed from arbitrary JSON
//! and verified, and Merkle inclusion and consistency proofs built from arbitrary bytes.
//! Nothing may panic; a proof the library made itself must verify, and the same proof with
//! any one hash changed must not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use points_core::checkpoint::{check_fork, SignedCheckpoint};
use points_core::merkle::{
    consistency_proof, inclusion_proof, leaf_hash, root, verify_consistency, verify_inclusion,
    TreeHash,
};

fn hashes(bytes: &[u8]) -> Vec<TreeHash> {
    bytes
        .chunks_exact(32)
        .map(|c| TreeHash(c.try_into().unwrap()))
        .collect()
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    for (i, slot) in b.iter_mut().enumerate() {
        *slot = bytes.get(at + i).copied().unwrap_or(0);
    }
    u64::from_le_bytes(b)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 4 {
        // A signed checkpoint as a verifier downloads it.
        0 => {
            if let Ok(signed) = serde_json::from_slice::<SignedCheckpoint>(rest) {
                let _ = signed.verify(&signed.public_key);
                let _ = signed.verify(&"0".repeat(64));
                let _ = check_fork(&signed.checkpoint, &signed.checkpoint);
            }
        }
        // An inclusion proof with arbitrary index, size, leaf, root and path.
        1 if rest.len() >= 80 => {
            let (index, size) = (u64_at(rest, 0), u64_at(rest, 8));
            let all = hashes(&rest[16..]);
            if all.len() >= 2 {
                let _ = verify_inclusion(&all[0], index, size, &all[2..], &all[1]);
            }
        }
        // A consistency proof with arbitrary sizes, roots and path.
        2 if rest.len() >= 80 => {
            let (first, second) = (u64_at(rest, 0), u64_at(rest, 8));
            let all = hashes(&rest[16..]);
            if all.len() >= 2 {
                let _ = verify_consistency(first, second, &all[0], &all[1], &all[2..]);
            }
        }
        // Round trip: proofs the library makes verify; tampered ones do not.
        _ => {
            if rest.len() < 3 {
                return;
            }
            let n = 1 + usize::from(rest[0] % 64);
            let leaves: Vec<TreeHash> = (0..n)
                .map(|i| leaf_hash(&[rest.get(3 + i).copied().unwrap_or(0), i as u8]))
                .collect();
            let index = u64::from(rest[1]) % n as u64;
            let first = 1 + u64::from(rest[2]) % n as u64;
            let full = root(&leaves);
            let proof = inclusion_proof(index, &leaves).unwrap();
            let leaf = leaves[index as usize];
            verify_inclusion(&leaf, index, n as u64, &proof, &full).unwrap();
            for i in 0..proof.len() {
                let mut bad = proof.clone();
                bad[i].0[0] ^= 1;
                assert!(verify_inclusion(&leaf, index, n as u64, &bad, &full).is_err());
            }
            let old = root(&leaves[..first as usize]);
            let proof = consistency_proof(first, &leaves).unwrap();
            verify_consistency(first, n as u64, &old, &full, &proof).unwrap();
            for i in 0..proof.len() {
                let mut bad = proof.clone();
                bad[i].0[31] ^= 0x80;
                assert!(verify_consistency(first, n as u64, &old, &full, &bad).is_err());
            }
        }
    }
});
