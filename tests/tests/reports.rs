//! Roll-ups, rankings, certificates and statement CSV through the real server and `points`
//! CLI: figures roll up the org tree, rankings and CSV exports match, scoped keys see their
//! subtree only, and a certificate issued by the server verifies offline until anything in
//! it is changed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::cli::{s, Cli};
use common::{binary, Server};
use serde_json::Value;
use std::process::Command;

/// CSV text as rows of fields (no quoted fields are expected in these reports).
fn csv(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| l.split(',').map(str::to_owned).collect())
        .collect()
}

/// The value of `column` in the CSV row whose `key_column` is `key`.
fn csv_cell(rows: &[Vec<String>], key_column: &str, key: &str, column: &str) -> String {
    let header = &rows[0];
    let k = header.iter().position(|h| h == key_column).unwrap();
    let c = header
        .iter()
        .position(|h| h == column)
        .unwrap_or_else(|| panic!("no column {column} in {header:?}"));
    rows[1..]
        .iter()
        .find(|r| r[k] == key)
        .unwrap_or_else(|| panic!("no row {key}"))[c]
        .clone()
}

/// A named change to a certificate file.
type Tamper = (&'static str, fn(&mut Value));

#[test]
fn rollups_rankings_certificates_and_statement_csv() {
    let server = Server::start();
    let mut cli = Cli::admin(&server);
    cli.create_program("Reports test", &[]);
    let district = cli.org_unit("Wuchang", None, "district");
    let comm_a = cli.org_unit("Donghu", Some(&district), "community");
    let estate = cli.org_unit("Lakeside", Some(&comm_a), "estate");
    let comm_b = cli.org_unit("Shouyi", Some(&district), "community");
    let m1 = cli.enrol(&estate, None);
    let m2 = cli.enrol(&comm_a, None);
    let m3 = cli.enrol(&comm_b, None);
    let patrol = cli.activity(&district, "Patrol", &["--per-hour", "10"]);
    let cafe = cli.merchant(&comm_a, "Cafe");
    let pool = s(
        &cli.json(&[
            "pool",
            "create",
            "--org-unit",
            &comm_a,
            "--name",
            "Love bank",
        ]),
        "pool_id",
    );

    // Service: m1 2 h in the estate (20), m2 1 h in community A (10), m3 30 min in B (5).
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let start = now_ms - 3 * 3_600_000;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("service.csv");
    std::fs::write(
        &file,
        format!(
            "member_id,activity_id,org_unit_id,started_at,minutes\n\
             {m1},{patrol},{estate},{start},120\n\
             {m2},{patrol},{comm_a},{start},60\n\
             {m3},{patrol},{comm_b},{start},30\n"
        ),
    )
    .unwrap();
    cli.json(&["import", "service", file.to_str().unwrap(), "--approve"]);
    cli.json(&[
        "redeem",
        "--merchant",
        &cafe,
        "--member",
        &m1,
        "--amount",
        "5",
    ]);
    cli.json(&["donate", "--member", &m2, "--pool", &pool, "--amount", "3"]);
    cli.json(&["grant", "--pool", &pool, "--member", &m3, "--amount", "2"]);

    // A range around now: the exact figures, free of calendar edges.
    let period = format!("{}..{}", now_ms - 86_400_000, now_ms + 86_400_000);
    let rollup = cli.json(&["report", "rollup", "--period", &period]);
    let units: Vec<&Value> = rollup["units"].as_array().unwrap().iter().collect();
    let find = |id: &str| *units.iter().find(|u| s(u, "org_unit_id") == id).unwrap();
    assert_eq!(s(find(&estate), "total.points_earned"), "20.00");
    assert_eq!(s(find(&comm_a), "own.points_earned"), "10.00");
    assert_eq!(s(find(&comm_a), "total.points_earned"), "30.00");
    assert_eq!(s(find(&comm_a), "own.points_redeemed"), "5.00");
    assert_eq!(s(find(&comm_a), "own.points_donated"), "3.00");
    assert_eq!(s(find(&comm_a), "own.points_granted"), "2.00");
    assert_eq!(s(find(&comm_a), "total.credit_minutes"), "180");
    assert_eq!(s(find(&district), "total.points_earned"), "35.00");
    assert_eq!(s(find(&district), "total.records"), "3");
    assert_eq!(s(&rollup, "program.points_earned"), "35.00");
    assert_eq!(s(&rollup["merchants"][0], "points_redeemed"), "5.00");
    assert_eq!(s(&rollup["pools"][0], "points_granted"), "2.00");
    // The same as CSV.
    let rows = csv(&cli.ok(&["report", "rollup", "--period", &period, "--csv"]));
    assert_eq!(
        rows[0][..5],
        [
            "period",
            "org_unit_id",
            "parent_id",
            "name",
            "total_points_earned"
        ]
    );
    assert_eq!(rows.len(), 5, "a header and four units");
    assert_eq!(
        csv_cell(&rows, "org_unit_id", &district, "total_points_earned"),
        "35.00"
    );
    assert_eq!(
        csv_cell(&rows, "org_unit_id", &comm_a, "own_points_earned"),
        "10.00"
    );
    assert_eq!(csv_cell(&rows, "org_unit_id", &estate, "name"), "Lakeside");
    let merchants = csv(&cli.ok(&[
        "report",
        "rollup",
        "--period",
        &period,
        "--csv",
        "--table",
        "merchants",
    ]));
    assert_eq!(
        csv_cell(&merchants, "merchant_id", &cafe, "points_redeemed"),
        "5.00"
    );
    // A period the journal has run past is final (and cached): asked twice, it answers
    // the same; this one ended before the program opened, so it holds no units.
    let closed = ["report", "rollup", "--period", "946684800000..946684800001"];
    let first = cli.json(&closed);
    assert_eq!(first, cli.json(&closed));
    assert!(first["units"].as_array().unwrap().is_empty());
    // A calendar period parses and is echoed normalised; a bad one names the field.
    let year = cli.json(&["report", "rollup", "--period", "2026"]);
    assert_eq!(s(&year, "period"), "2026");
    let out = cli.run(&["report", "rollup", "--period", "2026-13"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("period:"));

    // Rankings: whole program, and within community A's subtree; CSV alike.
    let ranking = cli.json(&["report", "ranking", "--period", &period, "--top", "2"]);
    let members = ranking["members"].as_array().unwrap();
    assert_eq!(members.len(), 2);
    assert_eq!(s(&members[0], "member_id"), m1);
    assert_eq!(s(&members[0], "rank"), "1");
    assert_eq!(s(&members[1], "member_id"), m2);
    let rows = csv(&cli.ok(&[
        "report",
        "ranking",
        "--period",
        &period,
        "--org-unit",
        &comm_b,
        "--csv",
    ]));
    assert_eq!(rows.len(), 2, "a header and m3");
    assert_eq!(csv_cell(&rows, "rank", "1", "member_id"), m3);
    assert_eq!(
        csv_cell(&rows, "rank", "1", "figures_points_earned"),
        "5.00"
    );

    // A recorder of community B sees B's subtree only.
    let recorder = s(
        &cli.json(&[
            "key",
            "create",
            "--role",
            "recorder",
            "--org-unit",
            &comm_b,
            "--label",
            "B",
        ]),
        "secret",
    );
    let scoped = cli.json_as(&recorder, &["report", "rollup", "--period", &period]);
    let scoped_units = scoped["units"].as_array().unwrap();
    assert_eq!(scoped_units.len(), 1);
    assert_eq!(s(&scoped_units[0], "org_unit_id"), comm_b);
    assert!(scoped.get("program").is_none_or(Value::is_null));
    let out = cli.run_as(
        &recorder,
        &[
            "report",
            "rollup",
            "--period",
            &period,
            "--org-unit",
            &comm_a,
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ACTOR_NOT_ALLOWED"));
    // A merchant key reads no roll-ups.
    let till = cli.merchant_key(&cafe, "till");
    let out = cli.run_as(&till, &["report", "rollup", "--period", &period]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PERMISSION_DENIED"));
    // The recorder of B may not certify a member of community A.
    let out = cli.run_as(
        &recorder,
        &["certificate", "issue", "--member", &m1, "--period", &period],
    );
    assert!(!out.status.success());

    // Certificates: issue, verify offline (no server at all), then tamper.
    let cert_file = dir.path().join("m1.json");
    let issued = cli.json(&[
        "certificate",
        "issue",
        "--member",
        &m1,
        "--period",
        &period,
        "--out",
        cert_file.to_str().unwrap(),
    ]);
    assert_eq!(issued["records"], 1);
    let public_key = s(&issued, "public_key");
    let offline = |file: &std::path::Path, key: &str| {
        Command::new(binary("points"))
            .env("POINTS_SERVER", "http://127.0.0.1:1")
            .args([
                "certificate",
                "verify",
                file.to_str().unwrap(),
                "--public-key",
                key,
            ])
            .output()
            .unwrap()
    };
    let ok = offline(&cert_file, &public_key);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(text.contains("certificate verifies"), "{text}");
    assert!(text.contains("minutes 120 credit points 20.00"), "{text}");
    let original: Value =
        serde_json::from_str(&std::fs::read_to_string(&cert_file).unwrap()).unwrap();
    assert_eq!(
        original["certificate"]["journal_size"],
        issued["journal_size"]
    );
    let tampers: Vec<Tamper> = vec![
        ("minutes", |v| {
            v["certificate"]["records"][0]["minutes"] = 600.into()
        }),
        ("minutes and total", |v| {
            v["certificate"]["records"][0]["minutes"] = 600.into();
            v["certificate"]["credit_minutes"] = 600.into();
        }),
        ("activity name", |v| {
            v["certificate"]["records"][0]["activity_name"] = "Night patrol".into()
        }),
        ("member", |v| {
            v["certificate"]["member"] = "5d1c2a4e-7b3f-4e8a-9c6d-1e2f3a4b5c6d".into()
        }),
        ("journal size", |v| {
            v["certificate"]["journal_size"] = 1.into();
        }),
        ("issued at", |v| {
            let t = v["certificate"]["issued_at"].as_i64().unwrap();
            v["certificate"]["issued_at"] = (t + 1).into();
        }),
    ];
    let tampered_file = dir.path().join("tampered.json");
    for (what, tamper) in tampers {
        let mut changed = original.clone();
        tamper(&mut changed);
        std::fs::write(&tampered_file, changed.to_string()).unwrap();
        let out = offline(&tampered_file, &public_key);
        assert!(
            !out.status.success(),
            "{what}: a tampered certificate verified"
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("does NOT verify"),
            "{what}"
        );
    }
    // Another program's key does not verify it either.
    let other = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    assert!(!offline(&cert_file, other).status.success());

    // Statement as CSV: the approval and the redemption, with running balances.
    let rows = csv(&cli.ok(&["statement", "--member", &m1, "--csv"]));
    assert_eq!(
        rows[0],
        [
            "sequence",
            "entry_id",
            "time",
            "kind",
            "amount",
            "balance",
            "counterparty_kind",
            "counterparty_id",
            "corrects_entry_id"
        ]
    );
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[1][3], "ENTRY_KIND_SERVICE_APPROVED");
    assert_eq!(rows[1][4], "20.00");
    assert_eq!(rows[2][3], "ENTRY_KIND_REDEEMED");
    assert_eq!(rows[2][4], "-5.00");
    assert_eq!(rows[2][5], "15.00");
    assert_eq!(rows[2][7], cafe);
}
