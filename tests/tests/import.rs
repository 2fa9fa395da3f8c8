//! Bulk import of paper service records through the real `points` CLI and server: every
//! rejected row is reported by line, all-or-nothing imports nothing from a file with a bad
//! row, good-rows imports exactly the good ones, re-runs record nothing twice, and a row
//! whose approval is refused is not left half-imported.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::cli::{hours_ago_ms, s, Cli};
use common::Server;
use serde_json::Value;

impl Cli {
    /// Runs with --json and parses stdout, whether or not the command succeeded.
    fn json_any(&self, args: &[&str]) -> (bool, Value, String) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let value =
            serde_json::from_str(stdout.lines().last().unwrap_or("null")).unwrap_or(Value::Null);
        (
            out.status.success(),
            value,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn entry_count(&self) -> usize {
        self.json(&["entries", "list", "--page-size", "1000", "--all"])["entries"]
            .as_array()
            .unwrap()
            .len()
    }

    fn available(&self, member: &str) -> String {
        s(
            &self.json(&["member", "balance", "--member", member]),
            "available",
        )
    }
}

/// (line, reason) of every rejected row in an import's JSON report.
fn rejected(report: &Value) -> Vec<(u64, String)> {
    report["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["line"].as_u64().unwrap(), s(p, "reason")))
        .collect()
}

struct Setup {
    cli: Cli,
    member: String,
    community: String,
    patrol: String,
    clinic: String,
    start_ms: u128,
    dir: tempfile::TempDir,
    _server: Server,
}

fn setup() -> Setup {
    let server = Server::start();
    let mut cli = Cli::admin(&server);
    cli.create_program("Import test", &["--decimal-places", "2"]);
    let community = cli.org_unit("Donghu", None, "community");
    let member = cli.enrol(&community, None);
    let patrol = cli.activity(&community, "Patrol", &["--per-hour", "10"]);
    // 5 points an occasion, at most 5 a day: a second clinic on one day cannot be approved.
    let clinic = cli.activity(
        &community,
        "Clinic",
        &["--per-occasion", "5", "--daily-cap", "5"],
    );
    let start_ms = hours_ago_ms(3);
    Setup {
        cli,
        member,
        community,
        patrol,
        clinic,
        start_ms,
        dir: tempfile::tempdir().unwrap(),
        _server: server,
    }
}

impl Setup {
    fn file(&self, name: &str, rows: &[String]) -> String {
        let mut csv = String::from("member_id,activity_id,org_unit_id,started_at,minutes\n");
        for row in rows {
            csv.push_str(row);
            csv.push('\n');
        }
        let path = self.dir.path().join(name);
        std::fs::write(&path, csv).unwrap();
        path.to_str().unwrap().to_owned()
    }

    fn row(&self, activity: &str, minutes: &str) -> String {
        format!(
            "{},{activity},{},{},{minutes}",
            self.member, self.community, self.start_ms
        )
    }
}

#[test]
fn bad_rows_are_reported_and_the_chosen_mode_decides_what_is_imported() {
    let t = setup();
    let stranger = "5d1c2a4e-7b3f-4e8a-9c6d-1e2f3a4b5c6d";
    // Line 1 is the header; data starts on line 2.
    let rows = vec![
        t.row(&t.patrol, "60"), // 2: good, 10 points
        format!("{stranger},{},{},{},30", t.patrol, t.community, t.start_ms), // 3: unknown member
        t.row(&t.patrol, "abc"), // 4: malformed minutes
        t.row(&t.patrol, "0"),  // 5: zero minutes
        "only,three,columns".to_owned(), // 6: wrong column count
        t.row(stranger, "30"),  // 7: unknown activity
        t.row(&t.patrol, "90"), // 8: good, 15 points
        format!("not-a-uuid,{},{},{},30", t.patrol, t.community, t.start_ms), // 9: malformed id
    ];
    let file = t.file("mixed.csv", &rows);
    let expected = vec![
        (3, "UNKNOWN_MEMBER".to_owned()),
        (4, "MALFORMED_ROW".to_owned()),
        (5, "DURATION_OUT_OF_RANGE".to_owned()),
        (6, "MALFORMED_ROW".to_owned()),
        (7, "UNKNOWN_ACTIVITY".to_owned()),
        (9, "INVALID_ARGUMENT".to_owned()),
    ];
    let before = t.cli.entry_count();

    // All-or-nothing (the default): fails, names every bad line, writes nothing.
    let out = t.cli.run(&["import", "service", &file, "--approve"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for (line, reason) in &expected {
        assert!(
            stderr.contains(&format!("line {line}: {reason}")),
            "line {line} not reported: {stderr}"
        );
    }
    assert!(
        stderr.contains("nothing imported: 6 of 8 rows rejected"),
        "{stderr}"
    );
    let (ok, report, _) = t
        .cli
        .json_any(&["import", "service", &file, "--mode", "all-or-nothing"]);
    assert!(!ok);
    assert_eq!(rejected(&report), expected);
    assert_eq!(report["imported"], 0);
    assert_eq!(
        t.cli.entry_count(),
        before,
        "all-or-nothing wrote something"
    );
    assert_eq!(t.cli.available(&t.member), "0.00");

    // Good rows only: the two good rows are recorded and approved, the rest reported.
    let args = [
        "import",
        "service",
        &file,
        "--mode",
        "good-rows",
        "--approve",
        "--batch",
        "1",
    ];
    let (ok, report, stderr) = t.cli.json_any(&args);
    assert!(ok, "{stderr}");
    assert_eq!(rejected(&report), expected);
    assert_eq!(report["imported"], 2);
    assert_eq!(report["already_imported"], 0);
    assert_eq!(t.cli.available(&t.member), "25.00");
    let after_first = t.cli.entry_count();
    assert_eq!(after_first, before + 4, "two records and two approvals");

    // A re-run (as after an interruption) records nothing twice.
    let (ok, report, stderr) = t.cli.json_any(&args);
    assert!(ok, "{stderr}");
    assert_eq!(report["imported"], 2);
    assert_eq!(report["already_imported"], 2);
    assert_eq!(t.cli.entry_count(), after_first);
    assert_eq!(t.cli.available(&t.member), "25.00");

    // A clean file in all-or-nothing mode is one entry holding every row.
    let clean = t.file(
        "clean.csv",
        &[t.row(&t.patrol, "30"), t.row(&t.patrol, "30")],
    );
    let report = t.cli.json(&["import", "service", &clean]);
    assert_eq!(report["imported"], 2);
    assert_eq!(t.cli.entry_count(), after_first + 1);
    let again = t.cli.json(&["import", "service", &clean]);
    assert_eq!(again["already_imported"], 2);
    assert_eq!(t.cli.entry_count(), after_first + 1);
}

#[test]
fn a_refused_approval_leaves_nothing_half_imported() {
    let t = setup();
    // Two clinics on one day: each passes the dry run, but the daily cap refuses approving
    // both.
    let file = t.file(
        "clinics.csv",
        &[t.row(&t.clinic, "30"), t.row(&t.clinic, "40")],
    );

    // All-or-nothing: the approval is refused, the recorded rows are rejected, nothing
    // accrues, and a re-run says the same.
    let out = t.cli.run(&["import", "service", &file, "--approve"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("nothing imported: approval refused") && stderr.contains("CAP_EXCEEDED"),
        "{stderr}"
    );
    assert_eq!(t.cli.available(&t.member), "0.00");
    let pending = t
        .cli
        .json(&["entries", "list", "--page-size", "1000", "--all"]);
    let kinds: Vec<String> = pending["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| s(e, "kind"))
        .collect();
    assert!(
        kinds.iter().any(|k| k.ends_with("SERVICE_REJECTED")),
        "{kinds:?}"
    );
    let out = t.cli.run(&["import", "service", &file, "--approve"]);
    assert!(!out.status.success());
    assert_eq!(t.cli.available(&t.member), "0.00");

    // Good rows: the first clinic is imported and approved; the second's approval is
    // refused, so it is rejected and reported.
    let other = t.file(
        "clinics-again.csv",
        &[t.row(&t.clinic, "35"), t.row(&t.clinic, "45")],
    );
    let args = [
        "import",
        "service",
        &other,
        "--mode",
        "good-rows",
        "--approve",
    ];
    let (ok, report, stderr) = t.cli.json_any(&args);
    assert!(ok, "{stderr}");
    assert_eq!(report["imported"], 1);
    assert_eq!(rejected(&report), vec![(3, "CAP_EXCEEDED".to_owned())]);
    assert_eq!(t.cli.available(&t.member), "5.00");
    let count = t.cli.entry_count();
    let (ok, report, _) = t.cli.json_any(&args);
    assert!(ok);
    assert_eq!(report["imported"], 1);
    assert_eq!(report["already_imported"], 2);
    assert_eq!(rejected(&report), vec![(3, "ROLLED_BACK".to_owned())]);
    assert_eq!(t.cli.entry_count(), count, "a re-run wrote something");
    assert_eq!(t.cli.available(&t.member), "5.00");
}
