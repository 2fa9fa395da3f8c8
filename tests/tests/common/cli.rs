//! The `points` CLI run against a real server, with a key and a programme, and a JSON field
//! reader for its `--json` output.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use super::{binary, Server};
use serde_json::Value;
use std::process::{Command, Output};

/// The `points` CLI with a server, key and programme.
pub struct Cli {
    /// `http://host:port`.
    pub server: String,
    /// The API key ("" for none).
    pub key: String,
    /// The programme id ("" for none).
    pub program: String,
}

impl Cli {
    /// The CLI against `server` with its bootstrap admin key and no programme yet.
    pub fn admin(server: &Server) -> Cli {
        Cli {
            server: format!("http://{}", server.addr),
            key: server.admin_key(),
            program: String::new(),
        }
    }

    /// Runs `points` with the key.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_as(&self.key, args)
    }

    /// Runs `points` with another key ("" for none).
    pub fn run_as(&self, key: &str, args: &[&str]) -> Output {
        let mut command = Command::new(binary("points"));
        command
            .env_remove("POINTS_PROGRAM")
            .env_remove("POINTS_API_KEY")
            .env("POINTS_SERVER", &self.server);
        if !key.is_empty() {
            command.env("POINTS_API_KEY", key);
        }
        if !self.program.is_empty() {
            command.env("POINTS_PROGRAM", &self.program);
        }
        command.args(args).output().expect("running points")
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_as(&self.key.clone(), args)
    }

    /// Runs with another key and asserts success; returns stdout.
    pub fn ok_as(&self, key: &str, args: &[&str]) -> String {
        let out = self.run_as(key, args);
        assert!(
            out.status.success(),
            "points {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs, asserts failure, and returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "points {args:?} should fail: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Runs with --json, asserts success, and parses stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        self.json_as(&self.key.clone(), args)
    }

    /// Runs with --json and another key, asserts success, and parses stdout.
    pub fn json_as(&self, key: &str, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let stdout = self.ok_as(key, &all);
        serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("points {args:?}: not JSON ({e}): {stdout}"))
    }
}

impl Cli {
    /// Runs `points program create --name <name> <extra>`, makes the new programme this
    /// CLI's, and returns the JSON answer.
    pub fn create_program(&mut self, name: &str, extra: &[&str]) -> Value {
        let mut args = vec!["program", "create", "--name", name];
        args.extend_from_slice(extra);
        let created = self.json(&args);
        self.program = s(&created, "program.program_id");
        created
    }

    /// Creates an org unit (under `parent`, when given); returns its id.
    pub fn org_unit(&self, name: &str, parent: Option<&str>, level: &str) -> String {
        let mut args = vec!["org-unit", "create", "--name", name, "--level", level];
        if let Some(parent) = parent {
            args.extend(["--parent", parent]);
        }
        s(&self.json(&args), "org_unit.org_unit_id")
    }

    /// Registers a merchant in `unit`; returns its id.
    pub fn merchant(&self, unit: &str, name: &str) -> String {
        s(
            &self.json(&["merchant", "register", "--org-unit", unit, "--name", name]),
            "merchant.merchant_id",
        )
    }

    /// Creates a merchant key for `merchant`; returns its secret.
    pub fn merchant_key(&self, merchant: &str, label: &str) -> String {
        s(
            &self.json(&[
                "key",
                "create",
                "--role",
                "merchant",
                "--merchant",
                merchant,
                "--label",
                label,
            ]),
            "secret",
        )
    }

    /// Enrols a member in `unit` (with a card, when given); returns the member id.
    pub fn enrol(&self, unit: &str, card: Option<&str>) -> String {
        let mut args = vec!["member", "enrol", "--org-unit", unit];
        if let Some(card) = card {
            args.extend(["--card", card]);
        }
        s(&self.json(&args), "member_id")
    }

    /// Defines an activity in `unit` with the rule flags `rule` (e.g. `--per-hour 10`);
    /// returns its id.
    pub fn activity(&self, unit: &str, name: &str, rule: &[&str]) -> String {
        let mut args = vec!["activity", "define", "--org-unit", unit, "--name", name];
        args.extend_from_slice(rule);
        s(&self.json(&args), "activity_id")
    }
}

/// Milliseconds since the Unix epoch, `hours` hours ago.
pub fn hours_ago_ms(hours: u128) -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        - hours * 3_600_000
}

/// A service-record CSV for `points import service`: one row of (member, activity, org
/// unit, started at in ms, minutes) each.
pub fn service_csv(rows: &[(&str, &str, &str, u128, u32)]) -> String {
    let mut csv = String::from("member_id,activity_id,org_unit_id,started_at,minutes\n");
    for (member, activity, unit, start, minutes) in rows {
        csv.push_str(&format!("{member},{activity},{unit},{start},{minutes}\n"));
    }
    csv
}

/// A string field by dotted path (any other value as its JSON text).
pub fn s(v: &Value, path: &str) -> String {
    let mut v = v;
    for part in path.split('.') {
        v = &v[part];
    }
    v.as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| v.to_string())
}
