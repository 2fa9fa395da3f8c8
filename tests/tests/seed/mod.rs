//! A seeded community for the disclosure and board tests: the `points` CLI against a real
//! server, and a programme with one community, a cafe, two volunteers, approved service and
//! redemptions.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use crate::common::cli::{s, Cli};
use std::path::Path;

/// What [`seed`] made.
pub struct Seeded {
    /// The community.
    pub community: String,
    /// The cafe.
    pub cafe: String,
}

/// One community "Donghu" with a cafe; DH-0001 serves 3 hours (30 points), DH-0002 one
/// hour (10 points); DH-0001 spends 12.50 at the cafe. Sets `cli.program`.
pub fn seed(cli: &mut Cli, dir: &Path) -> Seeded {
    let created = cli.json(&[
        "program",
        "create",
        "--name",
        "Donghu volunteer points",
        "--decimal-places",
        "2",
    ]);
    cli.program = s(&created, "program.program_id");
    let community = s(
        &cli.json(&[
            "org-unit",
            "create",
            "--name",
            "Donghu",
            "--level",
            "community",
        ]),
        "org_unit.org_unit_id",
    );
    let cafe = s(
        &cli.json(&[
            "merchant",
            "register",
            "--org-unit",
            &community,
            "--name",
            "Corner cafe",
        ]),
        "merchant.merchant_id",
    );
    let mut members = Vec::new();
    for card in ["DH-0001", "DH-0002"] {
        members.push(s(
            &cli.json(&["member", "enrol", "--org-unit", &community, "--card", card]),
            "member_id",
        ));
    }
    let activity = s(
        &cli.json(&[
            "activity",
            "define",
            "--org-unit",
            &community,
            "--name",
            "Patrol",
            "--per-hour",
            "10",
        ]),
        "activity_id",
    );
    let start = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        - 5 * 3_600_000;
    let mut csv = String::from("member_id,activity_id,org_unit_id,started_at,minutes\n");
    for (member, minutes) in [(0, 60), (0, 60), (0, 60), (1, 60)] {
        csv.push_str(&format!(
            "{},{activity},{community},{start},{minutes}\n",
            members[member]
        ));
    }
    let file = dir.join("records.csv");
    std::fs::write(&file, csv).unwrap();
    cli.ok(&[
        "import",
        "service",
        file.to_str().unwrap(),
        "--batch",
        "4",
        "--approve",
    ]);
    cli.ok(&[
        "redeem",
        "--merchant",
        &cafe,
        "--card",
        "DH-0001",
        "--amount",
        "12.50",
    ]);
    Seeded { community, cafe }
}
