//! Public disclosure end to end (issue 7): a real server signs checkpoints (every N entries
//! and on demand), serves proofs, journals and public reports; the `points` CLI exports
//! them as files, and `points verify` checks them offline, with the server stopped, and
//! names where a tampered entry, a dropped entry, a reordered history and a forked history
//! fail.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod seed;

use common::cli::{s, Cli};
use common::Server;
use seed::seed;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn read(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn write(path: &Path, value: &Value) {
    std::fs::write(path, serde_json::to_string_pretty(value).unwrap()).unwrap();
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The encoded entry `text` (hex) with its redeemed amount changed and its hash kept.
fn tamper(text: &str) -> String {
    let entry = points_core::Entry::decode(&unhex(text)).unwrap();
    let mut value = serde_json::to_value(&entry).unwrap();
    assert!(value["event"]["Redeemed"].is_object(), "{value}");
    value["event"]["Redeemed"]["amount"] = serde_json::json!(1);
    let forged: points_core::Entry = serde_json::from_value(value).unwrap();
    hex(&forged.encode())
}

struct Files(PathBuf);

impl Files {
    fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().unwrap().to_owned()
    }
}

#[test]
fn checkpoints_proofs_reports_and_offline_verification() {
    let temp = tempfile::tempdir().unwrap();
    let mut server = Server::start_in(&temp.path().join("data"), &["--checkpoint-every", "5"]);
    let mut cli = Cli::admin(&server);
    let seeded = seed(&mut cli, temp.path());
    let files = Files(temp.path().to_path_buf());
    let f = |name: &str| files.path(name);

    // The checkpoint due every 5 entries was signed without being asked; anyone may read it.
    cli.ok_as(
        "",
        &[
            "disclosure",
            "checkpoint",
            "--size",
            "5",
            "--out",
            &f("cp5.json"),
        ],
    );
    assert_eq!(read(Path::new(&f("cp5.json")))["tree_size"], 5);
    // Signing on demand needs a key.
    let out = cli.run_as("", &["disclosure", "sign"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing authorization header"));
    cli.ok(&["disclosure", "sign", "--out", &f("cp1.json")]);
    let cp1 = read(Path::new(&f("cp1.json")));
    let size1 = cp1["tree_size"].as_u64().unwrap();
    let key = s(&cp1, "public_key");
    // Signing again with nothing new returns the same stored checkpoint.
    cli.ok(&["disclosure", "sign", "--out", &f("cp1-again.json")]);
    assert_eq!(read(Path::new(&f("cp1-again.json"))), cp1);

    // The journal grows; a newer checkpoint; proofs between and into them.
    cli.ok(&[
        "redeem",
        "--merchant",
        &seeded.cafe,
        "--card",
        "DH-0002",
        "--amount",
        "1",
    ]);
    cli.ok(&["disclosure", "sign", "--out", &f("cp2.json")]);
    let size2 = read(Path::new(&f("cp2.json")))["tree_size"]
        .as_u64()
        .unwrap();
    assert_eq!(size2, size1 + 1);
    let first = size1.to_string();
    cli.ok_as(
        "",
        &[
            "disclosure",
            "consistency",
            "--first",
            &first,
            "--out",
            &f("cons.json"),
        ],
    );
    // The first redemption is the last entry of the first checkpoint.
    let redemption = (size1 - 1).to_string();
    cli.ok(&[
        "disclosure",
        "proof",
        "--sequence",
        &redemption,
        "--with-entry",
        "--out",
        &f("proof.json"),
    ]);
    cli.ok_as(
        "",
        &[
            "disclosure",
            "proof",
            "--sequence",
            "3",
            "--out",
            &f("public-proof.json"),
        ],
    );
    assert_eq!(
        read(Path::new(&f("public-proof.json")))["entry"],
        Value::Null
    );
    // The same proof by entry id.
    let public = read(Path::new(&f("public-proof.json")));
    let by_id = s(&public, "entry_id");
    cli.ok_as(
        "",
        &[
            "disclosure",
            "proof",
            "--entry-id",
            &by_id,
            "--out",
            &f("by-id.json"),
        ],
    );
    assert_eq!(read(Path::new(&f("by-id.json"))), public);
    // A period before anything happened: an empty report that still verifies.
    cli.ok_as(
        "",
        &[
            "disclosure",
            "report",
            "--until-ms",
            "1",
            "--out",
            &f("empty-report.json"),
        ],
    );
    let empty = read(Path::new(&f("empty-report.json")));
    assert_eq!(empty["rows"], serde_json::json!([]));
    assert_eq!(empty["summary"]["totals"]["service_points"], 0);
    // Entry contents need an auditor or admin key.
    let out = cli.run_as("", &["disclosure", "journal"]);
    assert!(!out.status.success());
    cli.ok(&["disclosure", "journal", "--out", &f("journal.json")]);
    cli.ok_as(
        "",
        &[
            "disclosure",
            "report",
            "--org-unit",
            &seeded.community,
            "--out",
            &f("report.json"),
        ],
    );

    // Everything below is offline: the server is gone.
    assert!(server.stop().success());
    let verify = |args: &[&str]| {
        let mut all = vec!["verify"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--key", &key]);
        cli.ok(&all)
    };
    let rejects = |args: &[&str]| {
        let mut all = vec!["verify"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--key", &key]);
        cli.fails(&all)
    };
    assert!(verify(&["checkpoint", "--checkpoint", &f("cp5.json")]).starts_with("ok:"));
    let ok = verify(&[
        "inclusion",
        "--checkpoint",
        &f("cp2.json"),
        "--proof",
        &f("proof.json"),
    ]);
    assert!(
        ok.contains(&format!(
            "ok: entry {redemption} is in the checkpoint of size {size2} and its content matches"
        )),
        "{ok}"
    );
    verify(&[
        "consistency",
        "--old",
        &f("cp1.json"),
        "--new",
        &f("cp2.json"),
        "--proof",
        &f("cons.json"),
    ]);
    verify(&[
        "journal",
        "--checkpoint",
        &f("cp2.json"),
        "--journal",
        &f("journal.json"),
    ]);
    verify(&["report", "--report", &f("empty-report.json")]);
    let ok = verify(&["report", "--report", &f("report.json")]);
    assert!(ok.contains("ok: report with"), "{ok}");

    // The report: no personal data, DH-0001 first under the pseudonym they can recompute.
    let report_text = std::fs::read_to_string(f("report.json")).unwrap();
    assert!(!report_text.contains("DH-0001"));
    let report = read(Path::new(&f("report.json")));
    assert_eq!(report["summary"]["totals"]["service_points"], 4000);
    assert_eq!(report["summary"]["totals"]["spent_points"], 1350);
    assert_eq!(report["summary"]["merchants"][0]["spent"], 1350);
    let mine = cli.ok(&[
        "verify",
        "pseudonym",
        "--code",
        "DH-0001",
        "--report",
        &f("report.json"),
    ]);
    let first_place = report["summary"]["ranking"][0]["pseudonym"]
        .as_str()
        .unwrap();
    assert!(
        mine.starts_with(&format!("pseudonym: {first_place}\n")),
        "{mine}"
    );
    assert_eq!(
        mine.lines().filter(|l| l.starts_with("entry ")).count(),
        4,
        "{mine}"
    );

    // A tampered entry.
    let mut journal = read(Path::new(&f("journal.json")));
    let index = (size1 - 1) as usize;
    let original = journal["entries"][index].as_str().unwrap().to_owned();
    journal["entries"][index] = Value::String(tamper(&original));
    write(Path::new(&f("tampered.json")), &journal);
    let error = rejects(&[
        "journal",
        "--checkpoint",
        &f("cp2.json"),
        "--journal",
        &f("tampered.json"),
    ]);
    assert!(
        error.contains(&format!("entry {index} is tampered")),
        "{error}"
    );
    let mut proof = read(Path::new(&f("proof.json")));
    proof["entry"] = Value::String(tamper(&original));
    write(Path::new(&f("tampered-proof.json")), &proof);
    let error = rejects(&[
        "inclusion",
        "--checkpoint",
        &f("cp2.json"),
        "--proof",
        &f("tampered-proof.json"),
    ]);
    assert!(
        error.contains(&format!("entry {index} is tampered: its content hashes to")),
        "{error}"
    );

    // A dropped entry.
    let mut dropped = read(Path::new(&f("journal.json")));
    dropped["entries"].as_array_mut().unwrap().remove(3);
    write(Path::new(&f("dropped.json")), &dropped);
    let error = rejects(&[
        "journal",
        "--checkpoint",
        &f("cp2.json"),
        "--journal",
        &f("dropped.json"),
    ]);
    assert!(
        error.contains("entry 3 is missing (dropped): position 3 holds entry 4"),
        "{error}"
    );

    // A reordered history.
    let mut reordered = read(Path::new(&f("journal.json")));
    reordered["entries"].as_array_mut().unwrap().swap(3, 4);
    write(Path::new(&f("reordered.json")), &reordered);
    let error = rejects(&[
        "journal",
        "--checkpoint",
        &f("cp2.json"),
        "--journal",
        &f("reordered.json"),
    ]);
    assert!(
        error.contains("history reordered at position 3: entry 4 stands where entry 3 belongs"),
        "{error}"
    );

    // A forged entry hash, and a report whose figures were edited.
    let mut forged = read(Path::new(&f("public-proof.json")));
    forged["entry_hash"] = Value::String("ab".repeat(32));
    write(Path::new(&f("forged.json")), &forged);
    let error = rejects(&[
        "inclusion",
        "--checkpoint",
        &f("cp2.json"),
        "--proof",
        &f("forged.json"),
    ]);
    assert!(
        error.contains(&format!("entry 3 is not in the checkpoint of size {size2}")),
        "{error}"
    );
    let mut edited = report.clone();
    edited["summary"]["totals"]["service_points"] = serde_json::json!(9000);
    write(Path::new(&f("edited.json")), &edited);
    let error = rejects(&["report", "--report", &f("edited.json")]);
    assert!(
        error.contains("report figure totals does not follow from its rows"),
        "{error}"
    );
    // A checkpoint signed by another key.
    let error = cli.fails(&[
        "verify",
        "checkpoint",
        "--checkpoint",
        &f("cp2.json"),
        "--key",
        &"11".repeat(32),
    ]);
    assert!(
        error.contains(&format!("checkpoint of size {size2}: signed by")),
        "{error}"
    );
}

/// Two servers restored from one backup each append a different entry and sign: the same
/// key signs two checkpoints of one size with different roots, and the verifier names it.
#[test]
fn a_forked_history_is_caught() {
    let temp = tempfile::tempdir().unwrap();
    let dir_a = temp.path().join("a");
    let mut server = Server::start_in(&dir_a, &["--checkpoint-every", "0"]);
    let mut cli = Cli::admin(&server);
    let seeded = seed(&mut cli, temp.path());
    assert!(server.stop().success());
    let dir_b = temp.path().join("b");
    let copied = std::process::Command::new("cp")
        .arg("-r")
        .arg(&dir_a)
        .arg(&dir_b)
        .status()
        .unwrap();
    assert!(copied.success());
    let mut signed = Vec::new();
    for (dir, amount) in [(&dir_a, "1"), (&dir_b, "2")] {
        let mut server = Server::start_in(dir, &[]);
        cli.server = format!("http://{}", server.addr);
        cli.ok(&[
            "redeem",
            "--merchant",
            &seeded.cafe,
            "--card",
            "DH-0001",
            "--amount",
            amount,
        ]);
        let out = temp.path().join(format!("cp-{amount}.json"));
        cli.ok(&["disclosure", "sign", "--out", out.to_str().unwrap()]);
        signed.push(out);
        assert!(server.stop().success());
    }
    let (a, b) = (read(&signed[0]), read(&signed[1]));
    assert_eq!(a["tree_size"], b["tree_size"]);
    assert_eq!(a["public_key"], b["public_key"]);
    // Each checkpoint on its own is validly signed.
    for path in &signed {
        cli.ok(&[
            "verify",
            "checkpoint",
            "--checkpoint",
            path.to_str().unwrap(),
        ]);
    }
    let error = cli.fails(&[
        "verify",
        "consistency",
        "--old",
        signed[0].to_str().unwrap(),
        "--new",
        signed[1].to_str().unwrap(),
        "--key",
        &s(&a, "public_key"),
    ]);
    assert!(
        error.contains(&format!(
            "forked history: two checkpoints of size {} have different roots",
            a["tree_size"]
        )),
        "{error}"
    );
}
