//! A seeded community for the disclosure and board tests: the `points` CLI against a real
//! server, and a programme with one community, a cafe, two volunteers, approved service and
//! redemptions.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use crate::common::cli::{hours_ago_ms, service_csv, Cli};
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
    cli.create_program("Donghu volunteer points", &["--decimal-places", "2"]);
    let community = cli.org_unit("Donghu", None, "community");
    let cafe = cli.merchant(&community, "Corner cafe");
    let members = ["DH-0001", "DH-0002"].map(|card| cli.enrol(&community, Some(card)));
    let activity = cli.activity(&community, "Patrol", &["--per-hour", "10"]);
    let start = hours_ago_ms(5);
    let csv = service_csv(
        &[(0, 60), (0, 60), (0, 60), (1, 60)]
            .map(|(member, minutes)| (&*members[member], &*activity, &*community, start, minutes)),
    );
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
