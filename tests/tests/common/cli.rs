//! The `points` CLI run against a real server, with a key and a programme, and a JSON field
//! reader for its `--json` output.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use super::binary;
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
