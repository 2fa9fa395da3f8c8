//! A Merkle tree over the journal, in the style of Certificate Transparency (RFC 6962 and
//! RFC 9162), so that anyone can check that a published record is in the journal and that
//! the journal only ever grew.
//!
//! The leaves are the entries' chain hashes. Leaf and interior hashes are SHA-256 with the
//! RFC's domain prefixes (`0x00` for leaves, `0x01` for interior nodes), so the roots and
//! proofs here agree with every other CT implementation, and a browser can check them with
//! nothing but WebCrypto.

use crate::entry::Hash;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// A SHA-256 node or root of the journal's Merkle tree.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct TreeHash(pub [u8; 32]);

impl TreeHash {
    /// Lower-case hexadecimal.
    pub fn to_hex(&self) -> String {
        Hash(self.0).to_hex()
    }

    /// Parses 64 hexadecimal digits.
    pub fn from_hex(text: &str) -> Option<TreeHash> {
        Hash::from_hex(text).map(|h| TreeHash(h.0))
    }
}

impl fmt::Display for TreeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for TreeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TreeHash({})", self.to_hex())
    }
}

/// The root of an empty tree: SHA-256 of nothing.
pub fn empty_root() -> TreeHash {
    TreeHash(Sha256::digest([]).into())
}

/// The leaf hash of arbitrary leaf data: SHA-256(0x00 || data).
pub fn leaf_hash(data: &[u8]) -> TreeHash {
    let mut hasher = Sha256::new();
    hasher.update([0u8]);
    hasher.update(data);
    TreeHash(hasher.finalize().into())
}

/// The leaf hash of a journal entry: the leaf data is the entry's 32-byte chain hash.
pub fn entry_leaf(entry_hash: &Hash) -> TreeHash {
    leaf_hash(&entry_hash.0)
}

/// An interior node: SHA-256(0x01 || left || right).
pub fn node_hash(left: &TreeHash, right: &TreeHash) -> TreeHash {
    let mut hasher = Sha256::new();
    hasher.update([1u8]);
    hasher.update(left.0);
    hasher.update(right.0);
    TreeHash(hasher.finalize().into())
}

/// The largest power of two strictly below `n` (for `n >= 2`).
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// The root of the tree over `leaves` (already leaf-hashed).
pub fn root(leaves: &[TreeHash]) -> TreeHash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// Why a proof cannot be made or does not verify.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not inside the tree.
    #[error("leaf {index} is outside a tree of {size} entries")]
    IndexOutOfRange {
        /// The leaf asked for.
        index: u64,
        /// The tree's size.
        size: u64,
    },
    /// The older tree is larger than the newer one.
    #[error("tree of {first} entries cannot be a prefix of a tree of {second}")]
    SizesOutOfOrder {
        /// The older size.
        first: u64,
        /// The newer size.
        second: u64,
    },
    /// The proof has the wrong number of hashes for these sizes.
    #[error("proof has the wrong length")]
    WrongLength,
    /// The proof does not lead to the expected root.
    #[error("proof does not lead to the root: {0}")]
    Mismatch(&'static str),
}

fn in_range(index: u64, size: u64) -> Result<usize, ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    usize::try_from(index).map_err(|_| ProofError::IndexOutOfRange { index, size })
}

/// The audit path proving that leaf `index` is in the tree over `leaves`.
pub fn inclusion_proof(index: u64, leaves: &[TreeHash]) -> Result<Vec<TreeHash>, ProofError> {
    let m = in_range(index, leaves.len() as u64)?;
    let mut proof = Vec::new();
    path(m, leaves, &mut proof);
    Ok(proof)
}

fn path(m: usize, leaves: &[TreeHash], out: &mut Vec<TreeHash>) {
    let n = leaves.len();
    if n <= 1 {
        return;
    }
    let k = split(n);
    if m < k {
        path(m, &leaves[..k], out);
        out.push(root(&leaves[k..]));
    } else {
        path(m - k, &leaves[k..], out);
        out.push(root(&leaves[..k]));
    }
}

/// The proof that the tree over the first `first` leaves is a prefix of the tree over all
/// of `leaves`.
pub fn consistency_proof(first: u64, leaves: &[TreeHash]) -> Result<Vec<TreeHash>, ProofError> {
    let second = leaves.len() as u64;
    if first > second {
        return Err(ProofError::SizesOutOfOrder { first, second });
    }
    let mut proof = Vec::new();
    if first == 0 || first == second {
        return Ok(proof);
    }
    let m = usize::try_from(first).map_err(|_| ProofError::SizesOutOfOrder { first, second })?;
    subproof(m, leaves, true, &mut proof);
    Ok(proof)
}

fn subproof(m: usize, leaves: &[TreeHash], whole: bool, out: &mut Vec<TreeHash>) {
    let n = leaves.len();
    if m == n {
        if !whole {
            out.push(root(leaves));
        }
        return;
    }
    let k = split(n);
    if m <= k {
        subproof(m, &leaves[..k], whole, out);
        out.push(root(&leaves[k..]));
    } else {
        subproof(m - k, &leaves[k..], false, out);
        out.push(root(&leaves[..k]));
    }
}

/// Checks that `leaf` sits at `index` in a tree of `size` leaves whose root is `expected`.
pub fn verify_inclusion(
    leaf: &TreeHash,
    index: u64,
    size: u64,
    proof: &[TreeHash],
    expected: &TreeHash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if r != *expected {
        return Err(ProofError::Mismatch("inclusion"));
    }
    Ok(())
}

/// Checks that the tree of `first` leaves with root `first_root` is a prefix of the tree
/// of `second` leaves with root `second_root`.
pub fn verify_consistency(
    first: u64,
    second: u64,
    first_root: &TreeHash,
    second_root: &TreeHash,
    proof: &[TreeHash],
) -> Result<(), ProofError> {
    if first > second {
        return Err(ProofError::SizesOutOfOrder { first, second });
    }
    if first == second {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if first_root == second_root {
            Ok(())
        } else {
            Err(ProofError::Mismatch(
                "same size, different roots: the history forked",
            ))
        };
    }
    if first == 0 {
        return if proof.is_empty() {
            Ok(())
        } else {
            Err(ProofError::WrongLength)
        };
    }
    let mut path: Vec<TreeHash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let Some((head, rest)) = path.split_first() else {
        return Err(ProofError::WrongLength);
    };
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*head, *head);
    for c in rest {
        if s == 0 {
            return Err(ProofError::WrongLength);
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(ProofError::WrongLength);
    }
    if fr != *first_root {
        return Err(ProofError::Mismatch(
            "the older root is not a prefix of this history",
        ));
    }
    if sr != *second_root {
        return Err(ProofError::Mismatch("the newer root does not match"));
    }
    Ok(())
}

/// Complete subtrees smaller than `2^STORED_FROM_LEVEL` leaves are not kept by
/// [`MerkleLog`]: they are recomputed from the leaves (at most 63 hashes), which keeps the
/// log's memory at about 1.03 times the leaves alone.
const STORED_FROM_LEVEL: u32 = 6;

/// An append-only Merkle tree that answers roots and proofs for any size up to its length
/// in `O(log n)` hashes, without recomputing the tree.
///
/// It keeps every leaf and the roots of the complete, aligned subtrees of `64, 128, 256, …`
/// leaves. Every subtree the RFC 6962 recursion visits is aligned, so each one is either
/// stored, or small enough to hash from its leaves. A million entries take about 33 MB.
#[derive(Clone, Debug, Default)]
pub struct MerkleLog {
    leaves: Vec<TreeHash>,
    /// `upper[j][i]`: the root of leaves `i * 2^(j+6) .. (i+1) * 2^(j+6)`.
    upper: Vec<Vec<TreeHash>>,
}

impl MerkleLog {
    /// An empty log.
    pub fn new() -> MerkleLog {
        MerkleLog::default()
    }

    /// How many leaves the log holds.
    pub fn len(&self) -> u64 {
        self.leaves.len() as u64
    }

    /// Whether the log holds no leaf.
    pub fn is_empty(&self) -> bool {
        self.leaves.is_empty()
    }

    /// The leaf at `index`, if the log has it.
    pub fn leaf(&self, index: u64) -> Option<TreeHash> {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.leaves.get(i))
            .copied()
    }

    /// Appends a leaf (already leaf-hashed, e.g. by [`entry_leaf`]).
    pub fn push(&mut self, leaf: TreeHash) {
        self.leaves.push(leaf);
        let width = 1usize << STORED_FROM_LEVEL;
        let n = self.leaves.len();
        if n % width == 0 {
            let completed = root(&self.leaves[n - width..]);
            self.push_level(0, completed);
        }
    }

    fn push_level(&mut self, level: usize, hash: TreeHash) {
        if self.upper.len() == level {
            self.upper.push(Vec::new());
        }
        let row = &mut self.upper[level];
        row.push(hash);
        let len = row.len();
        if len % 2 == 0 {
            let parent = node_hash(&row[len - 2], &row[len - 1]);
            self.push_level(level + 1, parent);
        }
    }

    fn size(&self, size: u64) -> Result<usize, ProofError> {
        match usize::try_from(size) {
            Ok(n) if n <= self.leaves.len() => Ok(n),
            _ => Err(ProofError::SizesOutOfOrder {
                first: size,
                second: self.len(),
            }),
        }
    }

    /// The root of leaves `lo..hi`.
    fn range_root(&self, lo: usize, hi: usize) -> TreeHash {
        let n = hi - lo;
        match n {
            0 => return empty_root(),
            1 => return self.leaves[lo],
            _ => {}
        }
        if n.is_power_of_two() && lo % n == 0 {
            let level = n.trailing_zeros();
            if level >= STORED_FROM_LEVEL {
                let row = (level - STORED_FROM_LEVEL) as usize;
                if let Some(hash) = self.upper.get(row).and_then(|r| r.get(lo >> level)) {
                    return *hash;
                }
            }
        }
        let k = split(n);
        node_hash(&self.range_root(lo, lo + k), &self.range_root(lo + k, hi))
    }

    /// The root of the tree over the first `size` leaves.
    pub fn root_at(&self, size: u64) -> Result<TreeHash, ProofError> {
        let n = self.size(size)?;
        Ok(self.range_root(0, n))
    }

    /// The inclusion proof of leaf `index` in the tree of the first `size` leaves; the
    /// same hashes as [`inclusion_proof`] over those leaves.
    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<TreeHash>, ProofError> {
        let n = self.size(size)?;
        let m = in_range(index, size)?;
        let mut proof = Vec::new();
        self.range_path(m, 0, n, &mut proof);
        Ok(proof)
    }

    fn range_path(&self, m: usize, lo: usize, hi: usize, out: &mut Vec<TreeHash>) {
        let n = hi - lo;
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            self.range_path(m, lo, lo + k, out);
            out.push(self.range_root(lo + k, hi));
        } else {
            self.range_path(m - k, lo + k, hi, out);
            out.push(self.range_root(lo, lo + k));
        }
    }

    /// The consistency proof from the tree of `first` leaves to the tree of `second`; the
    /// same hashes as [`consistency_proof`] over the first `second` leaves.
    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<TreeHash>, ProofError> {
        let n = self.size(second)?;
        if first > second {
            return Err(ProofError::SizesOutOfOrder { first, second });
        }
        let mut proof = Vec::new();
        if first == 0 || first == second {
            return Ok(proof);
        }
        let m =
            usize::try_from(first).map_err(|_| ProofError::SizesOutOfOrder { first, second })?;
        self.range_subproof(m, 0, n, true, &mut proof);
        Ok(proof)
    }

    fn range_subproof(&self, m: usize, lo: usize, hi: usize, whole: bool, out: &mut Vec<TreeHash>) {
        let n = hi - lo;
        if m == n {
            if !whole {
                out.push(self.range_root(lo, hi));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            self.range_subproof(m, lo, lo + k, whole, out);
            out.push(self.range_root(lo + k, hi));
        } else {
            self.range_subproof(m - k, lo + k, hi, false, out);
            out.push(self.range_root(lo, lo + k));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
            .collect()
    }

    /// The reference leaves and roots published with RFC 6962 implementations.
    fn reference() -> (Vec<TreeHash>, Vec<&'static str>) {
        let data = [
            "",
            "00",
            "10",
            "2021",
            "3031",
            "40414243",
            "5051525354555657",
            "606162636465666768696a6b6c6d6e6f",
        ];
        let leaves = data.iter().map(|d| leaf_hash(&unhex(d))).collect();
        let roots = vec![
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
            "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
            "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
            "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
        ];
        (leaves, roots)
    }

    #[test]
    fn roots_match_the_rfc_reference() {
        let (leaves, roots) = reference();
        for (n, expected) in roots.iter().enumerate() {
            assert_eq!(root(&leaves[..n]).to_hex(), *expected, "size {n}");
        }
        let proof = inclusion_proof(0, &leaves).unwrap();
        assert_eq!(
            proof[0].to_hex(),
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7"
        );
        assert_eq!(
            proof[2].to_hex(),
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"
        );
    }

    fn leaves(n: usize) -> Vec<TreeHash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_le_bytes()))
            .collect()
    }

    #[test]
    fn every_inclusion_proof_verifies_and_tampering_fails() {
        for size in 1..=40 {
            let all = leaves(size);
            let r = root(&all);
            for i in 0..size {
                let proof = inclusion_proof(i as u64, &all).unwrap();
                verify_inclusion(&all[i], i as u64, size as u64, &proof, &r).unwrap();
                let wrong = leaf_hash(b"forged");
                assert!(verify_inclusion(&wrong, i as u64, size as u64, &proof, &r).is_err());
                if size > 1 {
                    let other = (i + 1) % size;
                    assert!(
                        verify_inclusion(&all[i], other as u64, size as u64, &proof, &r).is_err()
                    );
                }
            }
            assert!(verify_inclusion(&all[0], size as u64, size as u64, &[], &r).is_err());
        }
    }

    #[test]
    fn every_consistency_proof_verifies_and_forks_fail() {
        for second in 1..=34 {
            let all = leaves(second);
            let r2 = root(&all);
            for first in 1..=second {
                let r1 = root(&all[..first]);
                let proof = consistency_proof(first as u64, &all).unwrap();
                verify_consistency(first as u64, second as u64, &r1, &r2, &proof).unwrap();
                // A history that differs in its first entry is not consistent.
                let mut forked = all.clone();
                forked[0] = leaf_hash(b"rewritten");
                let forked_root = root(&forked[..first]);
                assert!(
                    verify_consistency(first as u64, second as u64, &forked_root, &r2, &proof)
                        .is_err()
                );
            }
        }
        // Two trees of the same size with different roots are a fork.
        let a = root(&leaves(5));
        let mut b_leaves = leaves(5);
        b_leaves.swap(1, 2);
        let b = root(&b_leaves);
        assert!(matches!(
            verify_consistency(5, 5, &a, &b, &[]),
            Err(ProofError::Mismatch(_))
        ));
    }

    #[test]
    fn the_log_agrees_with_the_slice_functions_at_every_size() {
        let all = leaves(300);
        let mut log = MerkleLog::new();
        assert_eq!(log.root_at(0).unwrap(), empty_root());
        for leaf in &all {
            log.push(*leaf);
        }
        assert!(log.root_at(301).is_err());
        for size in [1usize, 2, 3, 63, 64, 65, 127, 128, 129, 200, 256, 257, 300] {
            let prefix = &all[..size];
            assert_eq!(
                log.root_at(size as u64).unwrap(),
                root(prefix),
                "root {size}"
            );
            for index in (0..size).step_by(7).chain([size - 1]) {
                assert_eq!(
                    log.inclusion_proof(index as u64, size as u64).unwrap(),
                    inclusion_proof(index as u64, prefix).unwrap(),
                    "inclusion {index} of {size}"
                );
            }
            for first in (0..=size).step_by(5).chain([size]) {
                assert_eq!(
                    log.consistency_proof(first as u64, size as u64).unwrap(),
                    consistency_proof(first as u64, prefix).unwrap(),
                    "consistency {first} to {size}"
                );
            }
        }
        assert!(log.inclusion_proof(5, 5).is_err());
        assert!(log.consistency_proof(6, 5).is_err());
    }
}
