//! Offline verification of disclosed records (issue 7), from files: `points verify`.
//!
//! - a checkpoint's signature ([`check_checkpoint`]);
//! - an entry's inclusion in a checkpoint, and, when the proof carries the entry's content,
//!   that the content hashes to the entry's chain hash ([`check_inclusion`]);
//! - two checkpoints' consistency, and forks: two checkpoints of one size with different
//!   roots ([`check_consistency`]);
//! - a whole journal against a checkpoint: every entry's content, the chain, the order and
//!   completeness, and the root ([`check_journal`]);
//! - a public report against its checkpoint: every row's proof and every figure
//!   ([`check_report`]).
//!
//! Every failure is a [`VerifyError`] whose message names where: which entry, which
//! checkpoint size, which figure. The file formats are JSON (see the README); the server
//! writes them with `points disclosure ...`.

use crate::pb;
use crate::service::disclosure::{checkpoint_from_pb, checkpoint_to_pb};
use anyhow::Context as _;
use points_core::checkpoint::{check_fork, pseudonym, SignedCheckpoint};
use points_core::merkle::{
    entry_leaf, root, verify_consistency, verify_inclusion, ProofError, TreeHash,
};
use points_core::report::{PublicReport, Summary, REPORT_FORMAT};
use points_core::{Entry, Hash};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Why a disclosed record does not verify; every message says where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A file is not in the expected format.
    #[error("{file}: {message}")]
    Malformed {
        /// Which file or part.
        file: String,
        /// What is wrong.
        message: String,
    },
    /// A checkpoint's signature does not check out.
    #[error("checkpoint of size {size}: {message}")]
    Signature {
        /// The checkpoint's size.
        size: u64,
        /// What is wrong.
        message: String,
    },
    /// An entry's content does not match its chain hash.
    #[error("entry {sequence} is tampered: its content hashes to {computed}, but the record says {claimed}")]
    Tampered {
        /// The entry.
        sequence: u64,
        /// What its content hashes to.
        computed: String,
        /// What it claims.
        claimed: String,
    },
    /// An entry is not in the checkpoint's tree.
    #[error("entry {sequence} is not in the checkpoint of size {size}: {message}")]
    NotIncluded {
        /// The entry.
        sequence: u64,
        /// The checkpoint's size.
        size: u64,
        /// Why.
        message: String,
    },
    /// An entry is missing from a journal.
    #[error("entry {sequence} is missing (dropped): position {sequence} holds entry {found}")]
    Dropped {
        /// The missing entry.
        sequence: u64,
        /// What is there instead.
        found: u64,
    },
    /// Entries are out of order.
    #[error("history reordered at position {position}: entry {found} stands where entry {position} belongs")]
    Reordered {
        /// Where.
        position: u64,
        /// The entry found there.
        found: u64,
    },
    /// An entry does not chain onto the one before it.
    #[error("entry {sequence} is tampered or its history was rewritten: its content chained onto entry {previous} does not give its hash (entry {sequence} was changed, or entry {previous} was changed and rehashed)")]
    Chain {
        /// The entry.
        sequence: u64,
        /// The one before.
        previous: u64,
    },
    /// A journal is shorter than the checkpoint.
    #[error("the journal ends after {entries} entries, but the checkpoint covers {size}: entries {entries} to {last} are missing (dropped)")]
    Short {
        /// Entries in the journal.
        entries: u64,
        /// The checkpoint's size.
        size: u64,
        /// The last missing sequence.
        last: u64,
    },
    /// Two checkpoints of the same size disagree: the history forked.
    #[error("forked history: two checkpoints of size {size} have different roots {a} and {b}")]
    Fork {
        /// The size.
        size: u64,
        /// One root.
        a: String,
        /// The other.
        b: String,
    },
    /// The newer checkpoint does not extend the older one.
    #[error("checkpoint of size {second} does not extend checkpoint of size {first}: {message} (entries before {first} were changed, dropped or reordered)")]
    Inconsistent {
        /// The older size.
        first: u64,
        /// The newer size.
        second: u64,
        /// Why.
        message: String,
    },
    /// A root does not match.
    #[error("the first {size} entries have root {computed}, but the checkpoint says {claimed}")]
    Root {
        /// The size.
        size: u64,
        /// What the entries give.
        computed: String,
        /// What the checkpoint says.
        claimed: String,
    },
    /// A report's figure does not follow from its rows.
    #[error("report figure {field} does not follow from its rows: the report says {claimed}, the rows give {computed}")]
    Figure {
        /// Which figure.
        field: String,
        /// What the report says.
        claimed: String,
        /// What the rows give.
        computed: String,
    },
}

/// A signed checkpoint file: the `Disclosure` API's `SignedCheckpoint` as JSON.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointFile {
    /// UUID of the program.
    pub program_id: String,
    /// Entries covered.
    pub tree_size: u64,
    /// Merkle root, hex.
    pub root: String,
    /// Chain hash of the last entry covered, hex.
    pub journal_head: String,
    /// Signing time, ms since the epoch.
    pub issued_at_ms: i64,
    /// ed25519 public key, hex.
    pub public_key: String,
    /// Signature, hex.
    pub signature: String,
    /// The signed note (informative; the verifier rebuilds it from the fields).
    #[serde(default)]
    pub note: String,
}

impl CheckpointFile {
    /// The file form of a signed checkpoint.
    pub fn of(signed: &SignedCheckpoint) -> CheckpointFile {
        let pb = checkpoint_to_pb(signed);
        CheckpointFile {
            program_id: pb.program_id,
            tree_size: pb.tree_size,
            root: pb.root,
            journal_head: pb.journal_head,
            issued_at_ms: pb.issued_at_ms,
            public_key: pb.public_key,
            signature: pb.signature,
            note: pb.note,
        }
    }

    /// The core checkpoint (not yet verified).
    pub fn parse(&self) -> Result<SignedCheckpoint, VerifyError> {
        checkpoint_from_pb(&pb::SignedCheckpoint {
            program_id: self.program_id.clone(),
            tree_size: self.tree_size,
            root: self.root.clone(),
            journal_head: self.journal_head.clone(),
            issued_at_ms: self.issued_at_ms,
            public_key: self.public_key.clone(),
            signature: self.signature.clone(),
            note: self.note.clone(),
        })
        .map_err(|message| VerifyError::Malformed {
            file: "checkpoint".into(),
            message,
        })
    }
}

/// An inclusion proof file: the `Disclosure` API's `InclusionProof` as JSON; `entry`
/// (hex of the encoded entry) and `prev_hash` are present when exported with an auditor key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InclusionFile {
    /// The entry's sequence (leaf index).
    pub sequence: u64,
    /// The entry's id.
    pub entry_id: String,
    /// The entry's chain hash, hex.
    pub entry_hash: String,
    /// The tree size proved against.
    pub tree_size: u64,
    /// The audit path, hex.
    pub path: Vec<String>,
    /// The encoded entry, hex.
    #[serde(default)]
    pub entry: Option<String>,
    /// The previous entry's chain hash, hex.
    #[serde(default)]
    pub prev_hash: Option<String>,
}

impl InclusionFile {
    /// The file form of a wire proof.
    pub fn of(proof: &pb::InclusionProof) -> InclusionFile {
        InclusionFile {
            sequence: proof.sequence,
            entry_id: proof.entry_id.clone(),
            entry_hash: proof.entry_hash.clone(),
            tree_size: proof.tree_size,
            path: proof.path.clone(),
            entry: (!proof.entry.is_empty()).then(|| Hash::hex_bytes(&proof.entry)),
            prev_hash: (!proof.prev_hash.is_empty()).then(|| proof.prev_hash.clone()),
        }
    }
}

/// A consistency proof file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsistencyFile {
    /// The older size.
    pub first_size: u64,
    /// The newer size.
    pub second_size: u64,
    /// The proof, hex.
    pub path: Vec<String>,
}

/// A journal file: encoded entries, hex, in the order the server gave them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalFile {
    /// `Entry::encode` of each entry, hex.
    pub entries: Vec<String>,
}

/// Lower-case hex of bytes (a helper on [`Hash`]'s formatting, for any length).
trait HexBytes {
    fn hex_bytes(bytes: &[u8]) -> String;
}

impl HexBytes for Hash {
    fn hex_bytes(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

fn unhex(text: &str, what: &str) -> Result<Vec<u8>, VerifyError> {
    let malformed = || VerifyError::Malformed {
        file: what.to_owned(),
        message: "not hexadecimal".into(),
    };
    if text.len() % 2 != 0 || !text.is_ascii() {
        return Err(malformed());
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|_| malformed()))
        .collect()
}

fn tree_hash(text: &str, what: &str) -> Result<TreeHash, VerifyError> {
    TreeHash::from_hex(text).ok_or_else(|| VerifyError::Malformed {
        file: what.to_owned(),
        message: format!("{text:?} is not a 64-digit hex hash"),
    })
}

fn path_of(path: &[String], what: &str) -> Result<Vec<TreeHash>, VerifyError> {
    path.iter().map(|h| tree_hash(h, what)).collect()
}

/// Checks a checkpoint's signature against `trusted_key` (hex), or, when none is given,
/// against the key the checkpoint names (which proves only that it was not altered since).
pub fn check_checkpoint(
    file: &CheckpointFile,
    trusted_key: Option<&str>,
) -> Result<SignedCheckpoint, VerifyError> {
    let signed = file.parse()?;
    let key = trusted_key.unwrap_or(&signed.public_key);
    signed.verify(key).map_err(|e| VerifyError::Signature {
        size: signed.checkpoint.tree_size,
        message: e.to_string(),
    })?;
    Ok(signed)
}

fn not_included(sequence: u64, size: u64, error: &ProofError) -> VerifyError {
    VerifyError::NotIncluded {
        sequence,
        size,
        message: error.to_string(),
    }
}

/// Checks that the proof's entry is in the (already verified) checkpoint, and, when the
/// proof carries the entry's content, that the content hashes to the entry's chain hash.
pub fn check_inclusion(
    checkpoint: &SignedCheckpoint,
    proof: &InclusionFile,
) -> Result<(), VerifyError> {
    let size = checkpoint.checkpoint.tree_size;
    if proof.tree_size != size {
        return Err(VerifyError::NotIncluded {
            sequence: proof.sequence,
            size,
            message: format!("the proof is for a tree of {} entries", proof.tree_size),
        });
    }
    let claimed = Hash::from_hex(&proof.entry_hash).ok_or_else(|| VerifyError::Malformed {
        file: "proof".into(),
        message: "entry_hash is not a 64-digit hex hash".into(),
    })?;
    if let Some(content) = &proof.entry {
        let entry =
            Entry::decode(&unhex(content, "proof entry")?).map_err(|e| VerifyError::Malformed {
                file: "proof entry".into(),
                message: e.to_string(),
            })?;
        let prev = proof
            .prev_hash
            .as_deref()
            .and_then(Hash::from_hex)
            .ok_or_else(|| VerifyError::Malformed {
                file: "proof".into(),
                message: "an entry's content needs prev_hash".into(),
            })?;
        if entry.sequence() != proof.sequence {
            return Err(VerifyError::Tampered {
                sequence: proof.sequence,
                computed: format!("an entry numbered {}", entry.sequence()),
                claimed: format!("entry {}", proof.sequence),
            });
        }
        let computed = entry.compute_hash(&prev);
        if computed != claimed || entry.hash() != claimed {
            return Err(VerifyError::Tampered {
                sequence: proof.sequence,
                computed: computed.to_hex(),
                claimed: claimed.to_hex(),
            });
        }
    }
    let path = path_of(&proof.path, "proof path")?;
    verify_inclusion(
        &entry_leaf(&claimed),
        proof.sequence,
        size,
        &path,
        &checkpoint.checkpoint.root,
    )
    .map_err(|e| not_included(proof.sequence, size, &e))
}

/// Checks that `new` extends `old` (both already verified): a fork when the sizes are equal
/// and the roots differ, otherwise the consistency proof.
pub fn check_consistency(
    old: &SignedCheckpoint,
    new: &SignedCheckpoint,
    proof: &ConsistencyFile,
) -> Result<(), VerifyError> {
    let (a, b) = (&old.checkpoint, &new.checkpoint);
    check_fork(a, b).map_err(|_| VerifyError::Fork {
        size: a.tree_size,
        a: a.root.to_hex(),
        b: b.root.to_hex(),
    })?;
    if a.program != b.program {
        return Err(VerifyError::Malformed {
            file: "checkpoints".into(),
            message: "the two checkpoints belong to different programmes".into(),
        });
    }
    if a.tree_size == b.tree_size {
        return Ok(());
    }
    if proof.first_size != a.tree_size || proof.second_size != b.tree_size {
        return Err(VerifyError::Malformed {
            file: "consistency proof".into(),
            message: format!(
                "the proof is from {} to {}, the checkpoints are of {} and {}",
                proof.first_size, proof.second_size, a.tree_size, b.tree_size
            ),
        });
    }
    let path = path_of(&proof.path, "consistency proof")?;
    verify_consistency(a.tree_size, b.tree_size, &a.root, &b.root, &path).map_err(|e| {
        VerifyError::Inconsistent {
            first: a.tree_size,
            second: b.tree_size,
            message: e.to_string(),
        }
    })
}

/// Checks a whole journal against a (verified) checkpoint: each entry's content against
/// its hash, the chain, order and completeness, and the Merkle root of the first
/// `tree_size` entries. Names the first entry at fault.
pub fn check_journal(checkpoint: &SignedCheckpoint, entries: &[Entry]) -> Result<(), VerifyError> {
    let size = checkpoint.checkpoint.tree_size;
    let mut prev = Hash::GENESIS;
    let mut leaves = Vec::with_capacity(entries.len());
    for (position, entry) in entries.iter().enumerate() {
        let position = position as u64;
        if position >= size {
            break;
        }
        let sequence = entry.sequence();
        if sequence != position {
            // The entry that belongs here further on: reordered. Nowhere: dropped.
            let later = entries
                .get(position as usize + 1..)
                .is_some_and(|rest| rest.iter().any(|e| e.sequence() == position));
            return Err(if sequence > position && !later {
                VerifyError::Dropped {
                    sequence: position,
                    found: sequence,
                }
            } else {
                VerifyError::Reordered {
                    position,
                    found: sequence,
                }
            });
        }
        // Each entry's hash must be its content chained onto the previous entry's hash. An
        // entry changed in place fails here; an entry changed and rehashed makes the next
        // one fail, so a failure after the first entry names both.
        let computed = entry.compute_hash(&prev);
        if computed != entry.hash() {
            return Err(match position.checked_sub(1) {
                None => VerifyError::Tampered {
                    sequence,
                    computed: computed.to_hex(),
                    claimed: entry.hash().to_hex(),
                },
                Some(previous) => VerifyError::Chain { sequence, previous },
            });
        }
        prev = entry.hash();
        leaves.push(entry_leaf(&entry.hash()));
    }
    let have = leaves.len() as u64;
    if have < size {
        return Err(VerifyError::Short {
            entries: have,
            size,
            last: size - 1,
        });
    }
    let computed = root(&leaves);
    if computed != checkpoint.checkpoint.root {
        return Err(VerifyError::Root {
            size,
            computed: computed.to_hex(),
            claimed: checkpoint.checkpoint.root.to_hex(),
        });
    }
    Ok(())
}

/// Checks a public report against its embedded checkpoint: the signature (against
/// `trusted_key`, or the key the report names), every row's inclusion proof, and every
/// figure recomputed from the rows.
pub fn check_report(report: &PublicReport, trusted_key: Option<&str>) -> Result<(), VerifyError> {
    if report.format != REPORT_FORMAT {
        return Err(VerifyError::Malformed {
            file: "report".into(),
            message: format!("format is {:?}, not {REPORT_FORMAT:?}", report.format),
        });
    }
    let signed = &report.checkpoint;
    let size = signed.checkpoint.tree_size;
    let key = trusted_key.unwrap_or(&signed.public_key);
    signed.verify(key).map_err(|e| VerifyError::Signature {
        size,
        message: e.to_string(),
    })?;
    if signed.checkpoint.program != report.program {
        return Err(VerifyError::Malformed {
            file: "report".into(),
            message: "the checkpoint belongs to another programme".into(),
        });
    }
    for row in &report.rows {
        let hash = Hash::from_hex(&row.entry_hash).ok_or_else(|| VerifyError::Malformed {
            file: format!("report row for entry {}", row.sequence),
            message: "entry_hash is not a 64-digit hex hash".into(),
        })?;
        let path = path_of(&row.path, &format!("report row for entry {}", row.sequence))?;
        verify_inclusion(
            &entry_leaf(&hash),
            row.sequence,
            size,
            &path,
            &signed.checkpoint.root,
        )
        .map_err(|e| not_included(row.sequence, size, &e))?;
    }
    let computed = Summary::of(&report.rows);
    let claimed = &report.summary;
    let figure = |field: &str, a: String, b: String| VerifyError::Figure {
        field: field.to_owned(),
        claimed: a,
        computed: b,
    };
    if computed.totals != claimed.totals {
        return Err(figure(
            "totals",
            format!("{:?}", claimed.totals),
            format!("{:?}", computed.totals),
        ));
    }
    let positions = claimed.ranking.len().max(computed.ranking.len());
    for i in 0..positions {
        let (a, b) = (claimed.ranking.get(i), computed.ranking.get(i));
        if a != b {
            return Err(figure(
                &format!("ranking position {}", i + 1),
                format!("{a:?}"),
                format!("{b:?}"),
            ));
        }
    }
    if computed.merchants != claimed.merchants {
        return Err(figure(
            "redemptions by merchant",
            format!("{:?}", claimed.merchants),
            format!("{:?}", computed.merchants),
        ));
    }
    if computed.pools != claimed.pools {
        return Err(figure(
            "donations and grants by pool",
            format!("{:?}", claimed.pools),
            format!("{:?}", computed.pools),
        ));
    }
    if computed.months != claimed.months {
        return Err(figure(
            "months",
            format!("{:?}", claimed.months),
            format!("{:?}", computed.months),
        ));
    }
    Ok(())
}

/// Decodes a journal file's entries.
pub fn journal_entries(file: &JournalFile) -> Result<Vec<Entry>, VerifyError> {
    file.entries
        .iter()
        .enumerate()
        .map(|(i, text)| {
            Entry::decode(&unhex(text, &format!("journal line {i}"))?).map_err(|e| {
                VerifyError::Malformed {
                    file: format!("journal line {i}"),
                    message: e.to_string(),
                }
            })
        })
        .collect()
}

/// `points verify ...`: offline checks of files.
#[derive(Debug, clap::Subcommand)]
pub enum VerifyCmd {
    /// Check a checkpoint's signature.
    Checkpoint {
        /// The checkpoint file.
        #[arg(long)]
        checkpoint: PathBuf,
        /// The programme's trusted public key, hex (default: the key the file names).
        #[arg(long)]
        key: Option<String>,
    },
    /// Check that an entry is in a checkpoint (and its content, when the proof has it).
    Inclusion {
        /// The checkpoint file.
        #[arg(long)]
        checkpoint: PathBuf,
        /// The inclusion proof file.
        #[arg(long)]
        proof: PathBuf,
        /// The trusted public key, hex.
        #[arg(long)]
        key: Option<String>,
    },
    /// Check that a newer checkpoint extends an older one (and that they do not fork).
    Consistency {
        /// The older checkpoint file.
        #[arg(long)]
        old: PathBuf,
        /// The newer checkpoint file.
        #[arg(long)]
        new: PathBuf,
        /// The consistency proof file (not needed for two checkpoints of one size).
        #[arg(long)]
        proof: Option<PathBuf>,
        /// The trusted public key, hex.
        #[arg(long)]
        key: Option<String>,
    },
    /// Check a whole exported journal against a checkpoint.
    Journal {
        /// The checkpoint file.
        #[arg(long)]
        checkpoint: PathBuf,
        /// The journal file.
        #[arg(long)]
        journal: PathBuf,
        /// The trusted public key, hex.
        #[arg(long)]
        key: Option<String>,
    },
    /// Check a public report against its checkpoint.
    Report {
        /// The report file.
        #[arg(long)]
        report: PathBuf,
        /// The trusted public key, hex.
        #[arg(long)]
        key: Option<String>,
    },
    /// Compute a member's pseudonym from their member code (card code, or member id when
    /// the member has no card), and list their rows in a report.
    Pseudonym {
        /// The member code.
        #[arg(long)]
        code: String,
        /// A report file (its pseudonym_key is used).
        #[arg(long, required_unless_present = "pseudonym_key")]
        report: Option<PathBuf>,
        /// The programme's pseudonym key, hex.
        #[arg(long)]
        pseudonym_key: Option<String>,
    },
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Runs a `points verify` command: prints what checked out, or fails naming where.
pub fn run(cmd: &VerifyCmd) -> anyhow::Result<()> {
    let untrusted = |key: &Option<String>| {
        if key.is_none() {
            println!("note: no --key given; trusting the public key the file names");
        }
    };
    match cmd {
        VerifyCmd::Checkpoint { checkpoint, key } => {
            untrusted(key);
            let c = check_checkpoint(&read_json(checkpoint)?, key.as_deref())?;
            println!(
                "ok: checkpoint of size {} with root {} is signed by {}",
                c.checkpoint.tree_size,
                c.checkpoint.root.to_hex(),
                c.public_key
            );
        }
        VerifyCmd::Inclusion {
            checkpoint,
            proof,
            key,
        } => {
            untrusted(key);
            let c = check_checkpoint(&read_json(checkpoint)?, key.as_deref())?;
            let proof: InclusionFile = read_json(proof)?;
            check_inclusion(&c, &proof)?;
            let content = if proof.entry.is_some() {
                " and its content matches its hash"
            } else {
                ""
            };
            println!(
                "ok: entry {} is in the checkpoint of size {}{content}",
                proof.sequence, c.checkpoint.tree_size
            );
        }
        VerifyCmd::Consistency {
            old,
            new,
            proof,
            key,
        } => {
            untrusted(key);
            let a = check_checkpoint(&read_json(old)?, key.as_deref())?;
            let b = check_checkpoint(&read_json(new)?, key.as_deref())?;
            let proof: ConsistencyFile = match proof {
                Some(path) => read_json(path)?,
                None => ConsistencyFile {
                    first_size: a.checkpoint.tree_size,
                    second_size: b.checkpoint.tree_size,
                    path: Vec::new(),
                },
            };
            check_consistency(&a, &b, &proof)?;
            println!(
                "ok: checkpoint of size {} extends checkpoint of size {}",
                b.checkpoint.tree_size, a.checkpoint.tree_size
            );
        }
        VerifyCmd::Journal {
            checkpoint,
            journal,
            key,
        } => {
            untrusted(key);
            let c = check_checkpoint(&read_json(checkpoint)?, key.as_deref())?;
            let entries = journal_entries(&read_json(journal)?)?;
            check_journal(&c, &entries)?;
            println!(
                "ok: the journal's first {} entries chain and match the checkpoint's root",
                c.checkpoint.tree_size
            );
        }
        VerifyCmd::Report { report, key } => {
            untrusted(key);
            let report: PublicReport = read_json(report)?;
            check_report(&report, key.as_deref())?;
            println!(
                "ok: report with {} rows is in the checkpoint of size {} and its figures follow from its rows",
                report.rows.len(),
                report.checkpoint.checkpoint.tree_size
            );
        }
        VerifyCmd::Pseudonym {
            code,
            report,
            pseudonym_key,
        } => {
            let report: Option<PublicReport> = report.as_deref().map(read_json).transpose()?;
            let key_hex = match (pseudonym_key, &report) {
                (Some(k), _) => k.clone(),
                (None, Some(r)) => r.pseudonym_key.clone(),
                (None, None) => anyhow::bail!("--report or --pseudonym-key is required"),
            };
            let key = Hash::from_hex(&key_hex)
                .ok_or_else(|| anyhow::anyhow!("the pseudonym key is not 64 hex digits"))?;
            let name = pseudonym(&key.0, code);
            println!("pseudonym: {name}");
            if let Some(report) = report {
                for row in report.rows.iter().filter(|r| r.pseudonym == name) {
                    println!(
                        "entry {} {:?} {} points (minor units) in {}",
                        row.sequence, row.kind, row.points, row.month
                    );
                }
            }
        }
    }
    Ok(())
}

/// `points disclosure ...`: fetches checkpoints, proofs, journals and reports from a
/// server and writes them as the files `points verify` reads.
#[derive(Debug, clap::Subcommand)]
pub enum DisclosureCmd {
    /// The latest stored checkpoint, or the one of --size entries.
    Checkpoint {
        /// Tree size (0: the latest).
        #[arg(long, default_value_t = 0)]
        size: u64,
        /// Output file (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Sign a checkpoint over the whole journal now (recorder or admin key).
    Sign {
        /// Output file (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// An entry's inclusion proof.
    Proof {
        /// The entry's sequence.
        #[arg(
            long,
            conflicts_with = "entry_id",
            required_unless_present = "entry_id"
        )]
        sequence: Option<u64>,
        /// The entry's id.
        #[arg(long)]
        entry_id: Option<String>,
        /// Tree size (0: the latest checkpoint's).
        #[arg(long, default_value_t = 0)]
        size: u64,
        /// Include the entry's content and previous hash (auditor or admin key).
        #[arg(long)]
        with_entry: bool,
        /// Output file (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// A consistency proof between two sizes.
    Consistency {
        /// The older size.
        #[arg(long)]
        first: u64,
        /// The newer size (0: the latest checkpoint's).
        #[arg(long, default_value_t = 0)]
        second: u64,
        /// Output file (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The encoded journal up to a size (auditor or admin key).
    Journal {
        /// How many entries (0: the latest checkpoint's size).
        #[arg(long, default_value_t = 0)]
        size: u64,
        /// Output file (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// A public report.
    Report {
        /// Org unit id (default: the whole programme).
        #[arg(long)]
        org_unit: Option<String>,
        /// Start of the period, ms since the epoch.
        #[arg(long, default_value_t = 0)]
        from_ms: i64,
        /// End of the period (exclusive), ms since the epoch.
        #[arg(long, default_value_t = 0)]
        until_ms: i64,
        /// Tree size of the checkpoint to build from (0: the latest).
        #[arg(long, default_value_t = 0)]
        size: u64,
        /// Output file (default: stdout).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn write_out(out: Option<&Path>, value: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    match out {
        Some(path) => {
            std::fs::write(path, text + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
        }
        None => println!("{text}"),
    }
    Ok(())
}

/// A request with the API key, when there is one (public reads need none).
fn keyed<T>(api_key: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if !api_key.is_empty() {
        if let Ok(value) = format!("Bearer {api_key}").parse() {
            request.metadata_mut().insert("authorization", value);
        }
    }
    request
}

/// Runs a `points disclosure` command against a server.
pub async fn fetch(
    channel: tonic::transport::Channel,
    api_key: &str,
    program: &str,
    cmd: &DisclosureCmd,
) -> anyhow::Result<()> {
    // A public report carries every row with its proof (about 1.5 KB each): allow large ones.
    let mut client = pb::disclosure_client::DisclosureClient::new(channel)
        .max_decoding_message_size(256 * 1024 * 1024);
    let program_id = program.to_owned();
    let checkpoint_file = |pb: &pb::SignedCheckpoint| -> anyhow::Result<CheckpointFile> {
        let signed = checkpoint_from_pb(pb).map_err(|e| anyhow::anyhow!(e))?;
        Ok(CheckpointFile::of(&signed))
    };
    match cmd {
        DisclosureCmd::Checkpoint { size, out } => {
            let c = client
                .get_checkpoint(keyed(
                    api_key,
                    pb::GetCheckpointRequest {
                        program_id,
                        tree_size: *size,
                    },
                ))
                .await?
                .into_inner();
            write_out(out.as_deref(), &checkpoint_file(&c)?)
        }
        DisclosureCmd::Sign { out } => {
            let c = client
                .sign_checkpoint(keyed(api_key, pb::SignCheckpointRequest { program_id }))
                .await?
                .into_inner();
            write_out(out.as_deref(), &checkpoint_file(&c)?)
        }
        DisclosureCmd::Proof {
            sequence,
            entry_id,
            size,
            with_entry,
            out,
        } => {
            use pb::get_inclusion_proof_request::Key;
            let key = match (sequence, entry_id) {
                (Some(s), _) => Key::Sequence(*s),
                (None, Some(id)) => Key::EntryId(id.clone()),
                (None, None) => anyhow::bail!("--sequence or --entry-id is required"),
            };
            let request = pb::GetInclusionProofRequest {
                program_id,
                key: Some(key),
                tree_size: *size,
            };
            let proof = if *with_entry {
                client.get_entry_proof(keyed(api_key, request)).await?
            } else {
                client.get_inclusion_proof(keyed(api_key, request)).await?
            }
            .into_inner();
            write_out(out.as_deref(), &InclusionFile::of(&proof))
        }
        DisclosureCmd::Consistency { first, second, out } => {
            let p = client
                .get_consistency_proof(keyed(
                    api_key,
                    pb::GetConsistencyProofRequest {
                        program_id,
                        first_size: *first,
                        second_size: *second,
                    },
                ))
                .await?
                .into_inner();
            write_out(
                out.as_deref(),
                &ConsistencyFile {
                    first_size: p.first_size,
                    second_size: p.second_size,
                    path: p.path,
                },
            )
        }
        DisclosureCmd::Journal { size, out } => {
            let size = match *size {
                0 => {
                    client
                        .get_checkpoint(keyed(
                            api_key,
                            pb::GetCheckpointRequest {
                                program_id: program_id.clone(),
                                tree_size: 0,
                            },
                        ))
                        .await?
                        .into_inner()
                        .tree_size
                }
                n => n,
            };
            let mut entries = Vec::new();
            while (entries.len() as u64) < size {
                let page = client
                    .export_journal(keyed(
                        api_key,
                        pb::ExportJournalRequest {
                            program_id: program_id.clone(),
                            from_sequence: entries.len() as u64,
                            limit: 10_000,
                        },
                    ))
                    .await?
                    .into_inner();
                if page.entries.is_empty() {
                    break;
                }
                entries.extend(page.entries.iter().map(|e| Hash::hex_bytes(e)));
            }
            entries.truncate(usize::try_from(size).unwrap_or(usize::MAX));
            write_out(out.as_deref(), &JournalFile { entries })
        }
        DisclosureCmd::Report {
            org_unit,
            from_ms,
            until_ms,
            size,
            out,
        } => {
            let r = client
                .get_public_report(keyed(
                    api_key,
                    pb::GetPublicReportRequest {
                        program_id,
                        org_unit_id: org_unit.clone().unwrap_or_default(),
                        from_ms: *from_ms,
                        until_ms: *until_ms,
                        tree_size: *size,
                    },
                ))
                .await?
                .into_inner();
            let report: PublicReport = serde_json::from_str(&r.json)?;
            write_out(out.as_deref(), &report)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use points_core::checkpoint::Checkpoint;
    use points_core::merkle::{consistency_proof, inclusion_proof};
    use points_core::report::{Extractor, ReportScope};
    use points_core::rollup::{Period, RollupBuilder};
    use points_core::*;

    const SECRET: [u8; 32] = [7; 32];
    const PSEUDONYM_KEY: [u8; 32] = [3; 32];

    /// A real journal: a community, a member, a cafe, a patrol approved, then redemptions.
    fn journal() -> Vec<Entry> {
        journal_with(None)
    }

    /// [`journal`], then the member's card code changed to `new_card`.
    fn journal_with(new_card: Option<&str>) -> Vec<Entry> {
        let program = ProgramId::from_u128(1).unwrap();
        let admin = Actor::Admin {
            id: ActorId::from_u128(1).unwrap(),
        };
        let now = Timestamp::from_millis(1_790_000_000_000);
        let mut ids = (100u128..).map(|n| RequestId::from_u128(n).unwrap());
        let spec = ProgramSpec::new(program, "Donghu", "points", Scale::new(2).unwrap());
        let (mut ledger, genesis) = Ledger::open(spec, ids.next().unwrap(), admin, now).unwrap();
        let mut out = vec![genesis];
        let community = OrgUnitId::from_u128(10).unwrap();
        let member = MemberId::from_u128(20).unwrap();
        let cafe = MerchantId::from_u128(30).unwrap();
        let patrol = ActivityId::from_u128(40).unwrap();
        let mut apply = |ledger: &mut Ledger, command: Command| {
            let request = Request {
                request_id: ids.next().unwrap(),
                actor: admin,
                command,
            };
            match ledger.apply(&request, now).unwrap() {
                Applied::New(entry) => entry,
                other => panic!("{other:?}"),
            }
        };
        for command in [
            Command::CreateOrgUnit {
                id: community,
                parent: None,
                name: "Donghu".into(),
                level: OrgLevel::Community,
            },
            Command::EnrolMember {
                id: member,
                home: community,
                kind: MemberKind::Resident,
                dual_registration: false,
                card_code: Some("DH-0001".into()),
            },
            Command::RegisterMerchant {
                id: cafe,
                org_unit: community,
                name: "Corner cafe".into(),
                kind: MerchantKind::Partner,
            },
            Command::DefineActivity(ActivityInput {
                id: patrol,
                org_unit: community,
                name: "Evening patrol".into(),
                category: "patrol".into(),
                rule: RuleInput::PerHour("10".parse().unwrap()),
                coefficient: "1".parse().unwrap(),
                max_minutes_per_occasion: Some(240),
                daily_points_cap: None,
                time_kind: TimeKind::Credit,
            }),
        ] {
            out.push(apply(&mut ledger, command));
        }
        let recorded = apply(
            &mut ledger,
            Command::RecordService {
                records: vec![ServiceInput {
                    member,
                    activity: patrol,
                    org_unit: community,
                    started_at: Timestamp::from_millis(now.millis() - 7_200_000),
                    minutes: 120,
                }],
            },
        );
        let Event::ServiceRecorded { records } = recorded.event() else {
            unreachable!()
        };
        let record = records[0].id;
        out.push(recorded);
        out.push(apply(
            &mut ledger,
            Command::ApproveService {
                records: vec![record],
            },
        ));
        for amount in ["1", "2", "3", "4"] {
            out.push(apply(
                &mut ledger,
                Command::Redeem {
                    member,
                    merchant: cafe,
                    amount: amount.parse().unwrap(),
                },
            ));
        }
        if let Some(card) = new_card {
            out.push(apply(
                &mut ledger,
                Command::UpdateMember {
                    id: member,
                    kind: MemberKind::Resident,
                    dual_registration: false,
                    card_code: Some(card.into()),
                },
            ));
        }
        out
    }

    fn leaves(entries: &[Entry]) -> Vec<TreeHash> {
        entries.iter().map(|e| entry_leaf(&e.hash())).collect()
    }

    fn sign_over(entries: &[Entry], size: usize) -> SignedCheckpoint {
        Checkpoint {
            program: ProgramId::from_u128(1).unwrap(),
            tree_size: size as u64,
            root: root(&leaves(&entries[..size])),
            journal_head: entries[size - 1].hash(),
            issued_at: Timestamp::from_millis(1_790_000_100_000),
        }
        .sign(&SECRET)
    }

    fn proof_of(entries: &[Entry], sequence: usize, size: usize, content: bool) -> InclusionFile {
        let path = inclusion_proof(sequence as u64, &leaves(&entries[..size])).unwrap();
        let prev = if sequence == 0 {
            Hash::GENESIS
        } else {
            entries[sequence - 1].hash()
        };
        InclusionFile {
            sequence: sequence as u64,
            entry_id: entries[sequence].id().to_string(),
            entry_hash: entries[sequence].hash().to_hex(),
            tree_size: size as u64,
            path: path.iter().map(TreeHash::to_hex).collect(),
            entry: content.then(|| Hash::hex_bytes(&entries[sequence].encode())),
            prev_hash: content.then(|| prev.to_hex()),
        }
    }

    /// Entry `sequence` with its redeemed amount changed but its recorded hash kept.
    fn tampered(entries: &[Entry], sequence: usize) -> Entry {
        let mut value = serde_json::to_value(&entries[sequence]).unwrap();
        value["event"]["Redeemed"]["amount"] = serde_json::json!(99_900);
        serde_json::from_value(value).unwrap()
    }

    fn key() -> String {
        points_core::checkpoint::public_key_hex(&SECRET)
    }

    fn report_of(entries: &[Entry], size: usize) -> PublicReport {
        let checkpoint = sign_over(entries, size);
        let scope = ReportScope {
            org_unit: None,
            from: None,
            until: None,
        };
        let mut extractor = Extractor::new(PSEUDONYM_KEY, scope);
        let period =
            Period::range(Timestamp::from_millis(0), Timestamp::from_millis(i64::MAX)).unwrap();
        let mut rollup = RollupBuilder::new(&entries[0], period).unwrap();
        for entry in &entries[..size] {
            extractor.observe(entry);
            rollup.push(entry).unwrap();
        }
        let rollup = rollup.finish().unwrap();
        let pseudonyms: Vec<(MemberId, String)> = rollup
            .members()
            .map(|(m, _)| (m, extractor.pseudonym_of(m)))
            .collect();
        let (mut rows, names) = extractor.finish();
        for row in &mut rows {
            row.path = inclusion_proof(row.sequence, &leaves(&entries[..size]))
                .unwrap()
                .iter()
                .map(TreeHash::to_hex)
                .collect();
        }
        PublicReport {
            format: REPORT_FORMAT.into(),
            program: ProgramId::from_u128(1).unwrap(),
            program_name: "Donghu".into(),
            decimal_places: 2,
            org_unit: None,
            org_unit_name: None,
            from_ms: None,
            until_ms: None,
            checkpoint,
            pseudonym_key: Hash(PSEUDONYM_KEY).to_hex(),
            names,
            summary: Summary::from_rollup(
                &rollup,
                None,
                |m| {
                    pseudonyms
                        .iter()
                        .find(|(id, _)| *id == m)
                        .map(|(_, p)| p.clone())
                        .unwrap_or_default()
                },
                &rows,
            ),
            rows,
        }
    }

    #[test]
    fn honest_records_verify() {
        let entries = journal();
        let n = entries.len();
        let old = sign_over(&entries, 5);
        let new = sign_over(&entries, n);
        // Through the file form, as the CLI reads it.
        let file = CheckpointFile::of(&new);
        let parsed: CheckpointFile =
            serde_json::from_str(&serde_json::to_string(&file).unwrap()).unwrap();
        let new = check_checkpoint(&parsed, Some(&key())).unwrap();
        for sequence in 0..n {
            check_inclusion(&new, &proof_of(&entries, sequence, n, true)).unwrap();
            check_inclusion(&new, &proof_of(&entries, sequence, n, false)).unwrap();
        }
        let proof = ConsistencyFile {
            first_size: 5,
            second_size: n as u64,
            path: consistency_proof(5, &leaves(&entries))
                .unwrap()
                .iter()
                .map(TreeHash::to_hex)
                .collect(),
        };
        check_consistency(&old, &new, &proof).unwrap();
        check_journal(&new, &entries).unwrap();
        let report = report_of(&entries, n);
        // One service row and four spend rows; the member is known by pseudonym only.
        assert_eq!(report.rows.len(), 5);
        assert_eq!(report.summary.totals.service_points, 2000);
        assert_eq!(report.summary.totals.spent_points, 1000);
        assert_eq!(
            report.summary.ranking[0].pseudonym,
            pseudonym(&PSEUDONYM_KEY, "DH-0001")
        );
        assert_eq!(report.names.values().next().unwrap(), "Corner cafe");
        check_report(&report, Some(&key())).unwrap();
    }

    #[test]
    fn a_member_whose_card_changed_has_one_pseudonym_in_rows_and_ranking() {
        let entries = journal_with(Some("DH-0100"));
        let report = report_of(&entries, entries.len());
        let now = pseudonym(&PSEUDONYM_KEY, "DH-0100");
        assert!(report.rows.iter().all(|r| r.pseudonym == now));
        assert_eq!(report.summary.ranking[0].pseudonym, now);
        check_report(&report, Some(&key())).unwrap();
    }

    #[test]
    fn a_wrong_key_or_altered_checkpoint_is_refused() {
        let entries = journal();
        let mut file = CheckpointFile::of(&sign_over(&entries, 4));
        let other = points_core::checkpoint::public_key_hex(&[8; 32]);
        assert!(matches!(
            check_checkpoint(&file, Some(&other)),
            Err(VerifyError::Signature { size: 4, .. })
        ));
        file.tree_size = 5;
        let error = check_checkpoint(&file, Some(&key())).unwrap_err();
        assert_eq!(
            error.to_string(),
            "checkpoint of size 5: signature does not match checkpoint of size 5"
        );
    }

    #[test]
    fn a_tampered_entry_is_named() {
        let entries = journal();
        let n = entries.len();
        let checkpoint = sign_over(&entries, n);
        // Changed in place: its content no longer gives its hash.
        let mut proof = proof_of(&entries, 8, n, true);
        proof.entry = Some(Hash::hex_bytes(&tampered(&entries, 8).encode()));
        let error = check_inclusion(&checkpoint, &proof).unwrap_err();
        assert!(matches!(error, VerifyError::Tampered { sequence: 8, .. }));
        assert!(error.to_string().starts_with("entry 8 is tampered"));
        let mut journal = entries.clone();
        journal[8] = tampered(&entries, 8);
        let error = check_journal(&checkpoint, &journal).unwrap_err();
        assert!(
            matches!(
                error,
                VerifyError::Chain {
                    sequence: 8,
                    previous: 7
                }
            ),
            "{error}"
        );
        // Changed and rehashed: the leaf is no longer the one the checkpoint signed.
        let mut forged = proof_of(&entries, 8, n, false);
        forged.entry_hash = Hash([0xab; 32]).to_hex();
        let error = check_inclusion(&checkpoint, &forged).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with(&format!("entry 8 is not in the checkpoint of size {n}")),
            "{error}"
        );
    }

    #[test]
    fn a_dropped_entry_is_named() {
        let entries = journal();
        let n = entries.len();
        let checkpoint = sign_over(&entries, n);
        let mut journal = entries.clone();
        journal.remove(6);
        let error = check_journal(&checkpoint, &journal).unwrap_err();
        assert_eq!(
            error,
            VerifyError::Dropped {
                sequence: 6,
                found: 7
            }
        );
        assert_eq!(
            error.to_string(),
            "entry 6 is missing (dropped): position 6 holds entry 7"
        );
        // The tail dropped.
        let error = check_journal(&checkpoint, &entries[..n - 2]).unwrap_err();
        assert!(matches!(error, VerifyError::Short { .. }), "{error}");
        // A later checkpoint over a history without entry 6 does not extend the honest one.
        let old = sign_over(&entries, 8);
        let mut rewritten = entries.clone();
        rewritten.remove(6);
        rewritten.push(entries[n - 1].clone());
        let new = sign_over(&rewritten, n);
        let proof = ConsistencyFile {
            first_size: 8,
            second_size: n as u64,
            path: consistency_proof(8, &leaves(&rewritten))
                .unwrap()
                .iter()
                .map(TreeHash::to_hex)
                .collect(),
        };
        let error = check_consistency(&old, &new, &proof).unwrap_err();
        assert!(
            error.to_string().starts_with(&format!(
                "checkpoint of size {n} does not extend checkpoint of size 8"
            )),
            "{error}"
        );
    }

    #[test]
    fn a_reordered_history_is_named() {
        let entries = journal();
        let n = entries.len();
        let checkpoint = sign_over(&entries, n);
        let mut journal = entries.clone();
        journal.swap(7, 8);
        let error = check_journal(&checkpoint, &journal).unwrap_err();
        assert_eq!(
            error,
            VerifyError::Reordered {
                position: 7,
                found: 8
            }
        );
        assert_eq!(
            error.to_string(),
            "history reordered at position 7: entry 8 stands where entry 7 belongs"
        );
        // Entry 2 moved after entry 4.
        let mut journal = entries.clone();
        let moved = journal.remove(2);
        journal.insert(4, moved);
        let error = check_journal(&checkpoint, &journal).unwrap_err();
        assert_eq!(
            error,
            VerifyError::Reordered {
                position: 2,
                found: 3
            }
        );
        // A later checkpoint over the reordered history does not extend the honest one.
        let old = sign_over(&entries, 9);
        let new = sign_over(&journal, n);
        let proof = ConsistencyFile {
            first_size: 9,
            second_size: n as u64,
            path: consistency_proof(9, &leaves(&journal))
                .unwrap()
                .iter()
                .map(TreeHash::to_hex)
                .collect(),
        };
        assert!(matches!(
            check_consistency(&old, &new, &proof),
            Err(VerifyError::Inconsistent { first: 9, .. })
        ));
    }

    #[test]
    fn a_forked_history_is_named() {
        let entries = journal();
        let n = entries.len();
        let honest = sign_over(&entries, n);
        let mut other = entries.clone();
        other.swap(5, 6);
        let forked = sign_over(&other, n);
        let error = check_consistency(
            &honest,
            &forked,
            &ConsistencyFile {
                first_size: n as u64,
                second_size: n as u64,
                path: Vec::new(),
            },
        )
        .unwrap_err();
        assert!(matches!(error, VerifyError::Fork { size, .. } if size == n as u64));
        assert!(error
            .to_string()
            .starts_with(&format!("forked history: two checkpoints of size {n}")));
    }

    #[test]
    fn a_report_that_does_not_follow_from_its_checkpoint_is_named() {
        let entries = journal();
        let n = entries.len();
        let report = report_of(&entries, n);
        let mut inflated = report.clone();
        inflated.summary.totals.service_points += 100;
        let error = check_report(&inflated, Some(&key())).unwrap_err();
        assert!(
            error.to_string().starts_with("report figure totals"),
            "{error}"
        );
        let mut forged = report.clone();
        forged.rows[1].entry_hash = Hash([0xcd; 32]).to_hex();
        let error = check_report(&forged, Some(&key())).unwrap_err();
        assert!(
            error.to_string().starts_with(&format!(
                "entry {} is not in the checkpoint of size {n}",
                forged.rows[1].sequence
            )),
            "{error}"
        );
    }
}
