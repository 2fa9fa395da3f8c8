//! Load shedding through the real server (issue 9): a tiny per-key limit and a burst. Every
//! call over the limit is `RESOURCE_EXHAUSTED` with reason `RATE_LIMITED` and a `RetryInfo`,
//! other keys are not affected, and every admitted redemption is in the books.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod reliability;

use common::grpc::audit_report;
use common::{auth, reason, Clients, Server};
use points_grpc::pb;
use reliability::{member_ref, redeem, world};
use std::time::Instant;
use tonic::Code;
use tonic_types::StatusExt;

/// The burst each key may spend at once; the rate (1 a second) is far below the burst's pace.
const BURST: usize = 40;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_the_per_key_limit_is_shed_and_nothing_admitted_is_lost() {
    let temp = tempfile::tempdir().unwrap();
    let burst = BURST.to_string();
    let server = Server::start_in(
        &temp.path().join("data"),
        &["--rate-limit-per-key", "1", "--rate-burst-per-key", &burst],
    );
    let admin = server.admin_key();
    let c = Clients::new(server.channel().await);
    let mut w = world(c, &admin, 1, "1000").await;
    let member = w.members[0].clone();

    // 2.5 bursts from the merchant key, as fast as the till can send them.
    let started = Instant::now();
    let mut admitted = 0usize;
    let mut shed = 0usize;
    for _ in 0..(BURST * 5 / 2) {
        match w
            .c
            .pos
            .redeem(auth(redeem(&w, &member, "1"), &w.merchant_key))
            .await
        {
            Ok(_) => admitted += 1,
            Err(status) => {
                assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                assert_eq!(reason(&status), "RATE_LIMITED");
                let retry = status.get_details_retry_info().expect("RetryInfo");
                assert!(retry.retry_delay.is_some());
                shed += 1;
            }
        }
    }
    // The bucket refills one call a second while the burst runs.
    let refilled = started.elapsed().as_secs() as usize + 1;
    assert!(
        (BURST..=BURST + refilled).contains(&admitted),
        "admitted {admitted} of a burst of {BURST} (+{refilled} refilled)"
    );
    assert_eq!(admitted + shed, BURST * 5 / 2);

    // The auditor's key has a bucket of its own: the merchant's burst does not starve it.
    let balance =
        w.c.pos
            .get_balance(auth(
                pb::GetBalanceRequest {
                    program_id: w.program.clone(),
                    member: member_ref(&member),
                },
                &w.auditor,
            ))
            .await
            .unwrap()
            .into_inner();
    // Every admitted redemption is in the books, and nothing refused is.
    let expected = format!("{}.00", 1000 - admitted);
    assert_eq!(balance.balance, expected);
    let audit = audit_report(&mut w.c.ledger, &w.auditor, &w.program).await;
    assert!(audit.ok, "{:?}", audit.breaches);
}
