//! The `points` CLI against the real server: setup, a resumable bulk import, a redemption,
//! a statement, chain verification, and how errors are reported.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::cli::{hours_ago_ms, s, service_csv, Cli};
use common::Server;

#[test]
fn cli_walkthrough_import_and_errors() {
    let server = Server::start();
    let mut cli = Cli::admin(&server);
    let created = cli.create_program("CLI test", &["--decimal-places", "2"]);
    assert_eq!(s(&created, "receipt.sequence"), "0");

    let community = cli.org_unit("Donghu", None, "community");
    let cafe = cli.merchant(&community, "Cafe");
    let till = cli.merchant_key(&cafe, "till");
    let member = cli.enrol(&community, Some("DH-9"));
    let activity = cli.activity(&community, "Patrol", &["--per-hour", "10"]);

    // A CSV of three records with absolute start times: 30 + 60 + 90 minutes = 30 points.
    let start = hours_ago_ms(3);
    let csv = service_csv(
        &[30, 60, 90].map(|minutes| (&*member, &*activity, &*community, start, minutes)),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("records.csv");
    std::fs::write(&file, csv).unwrap();
    let file = file.to_str().unwrap();
    let first = cli.json(&["import", "service", file, "--batch", "2", "--approve"]);
    assert_eq!(first["recorded"], 3);
    assert_eq!(first["already_recorded"], 0);
    // Running it again records nothing twice.
    let again = cli.json(&["import", "service", file, "--batch", "2", "--approve"]);
    assert_eq!(again["already_recorded"], 3);
    let balance = cli.json_as(&till, &["member", "balance", "--card", "DH-9"]);
    assert_eq!(s(&balance, "available"), "30.00");

    // Redeem at the till; an idempotent retry; an over-spend reported on stderr.
    let redeem = [
        "redeem",
        "--merchant",
        &cafe,
        "--card",
        "DH-9",
        "--amount",
        "12.50",
        "--request-id",
        "0b7f9d4e-5c1a-4d2b-8e3f-6a7b8c9d0e1f",
    ];
    let r1 = cli.json_as(&till, &redeem);
    let r2 = cli.json_as(&till, &redeem);
    assert_eq!(s(&r1, "available"), "17.50");
    assert_eq!(s(&r2, "receipt.entry_id"), s(&r1, "receipt.entry_id"));
    assert_eq!(r2["receipt"]["duplicate"], true);
    let out = cli.run_as(
        &till,
        &[
            "redeem",
            "--merchant",
            &cafe,
            "--member",
            &member,
            "--amount",
            "100",
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("INSUFFICIENT_POINTS 700"), "{stderr}");
    // A malformed amount names the field.
    let out = cli.run_as(
        &till,
        &[
            "redeem",
            "--merchant",
            &cafe,
            "--member",
            &member,
            "--amount",
            "1.001",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("InvalidArgument") && stderr.contains("amount:"),
        "{stderr}"
    );

    // Statement, entries, chain and audit.
    let statement = cli.json(&["statement", "--member", &member]);
    assert_eq!(s(&statement, "closing_balance"), "17.50");
    // The import (all-or-nothing by default) approved its three records in one entry;
    // then one redemption.
    assert_eq!(statement["lines"].as_array().unwrap().len(), 2);
    let entries = cli.json(&["entries", "list", "--page-size", "3", "--all"]);
    let n = entries["entries"].as_array().unwrap().len();
    let chain = cli.json(&["verify-chain"]);
    assert_eq!(chain["ok"], true);
    assert_eq!(chain["entries_checked"].as_u64().unwrap() as usize, n);
    let out = cli.run(&["audit"]);
    assert!(out.status.success());
    let human = String::from_utf8_lossy(&out.stdout);
    assert!(human.contains("ok:") && human.contains("true"), "{human}");
    // Human tables.
    let out = cli.run(&["merchant", "list"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("MERCHANT_ID"), "{table}");
    assert!(table.contains("Cafe"));
}
