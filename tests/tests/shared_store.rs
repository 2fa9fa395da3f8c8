//! Two real `points-server` processes over one PostgreSQL database (a schema of its own in
//! `POINTS_TEST_DATABASE_URL`): the second server shares the first's keys, serves the
//! programme the first created, and neither lets a member overspend across servers.
//! Skipped where no database answers, unless `POINTS_REQUIRE_POSTGRES=1`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::grpc::{
    activity, audit_report, community, enrol, merchant, now_ms, patrol, program,
    record_and_approve, verify_chain,
};
use common::{auth, id, pg, reason, Clients, Server};
use pb::activity_rule::Rule;
use points_grpc::pb;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_share_one_database() {
    let Some(schema) = pg::schema("points_e2e_").await else {
        return;
    };
    let url = &schema.url;
    let dir = tempfile::tempdir().unwrap();
    let a = Server::start_in(&dir.path().join("a"), &["--database-url", url]);
    let admin = a.admin_key();
    let b = Server::start_in(&dir.path().join("b"), &["--database-url", url]);
    assert!(
        b.bootstrap_key.is_none(),
        "the second server finds the first's keys"
    );
    let mut ca = Clients::new(a.channel().await);
    let mut cb = Clients::new(b.channel().await);

    // Set up through server A.
    let program = program(&mut ca, &admin, "Shared").await;
    let unit = community(&mut ca, &admin, &program, "Donghu").await;
    let cafe = merchant(&mut ca, &admin, &program, &unit, "Cafe").await;
    let member = enrol(&mut ca, &admin, &program, &unit, "SH-1")
        .await
        .unwrap();
    // 20 points reach the member for one approved occasion of service.
    let activity = activity(
        &mut ca.rec,
        &admin,
        pb::DefineActivityRequest {
            coefficient: String::new(),
            time_kind: pb::TimeKind::Honour as i32,
            ..patrol(&program, &unit, "Patrol", Rule::PerOccasion("20".into()))
        },
    )
    .await;
    let records = vec![pb::ServiceRecordInput {
        member_id: member.clone(),
        activity_id: activity.clone(),
        org_unit_id: unit.clone(),
        started_at: Some(prost_types::Timestamp {
            seconds: now_ms() / 1000 - 3600,
            nanos: 0,
        }),
        minutes: 60,
    }];
    record_and_approve(&mut ca.rec, &admin, &program, records).await;

    // Server B serves the programme A created, with A's writes.
    let balance = |c: &mut Clients| {
        let mut c = c.clone();
        let (program, admin) = (program.clone(), admin.clone());
        async move {
            c.pos
                .get_balance(auth(
                    pb::GetBalanceRequest {
                        program_id: program,
                        member: Some(pb::MemberRef {
                            member: Some(pb::member_ref::Member::CardCode("SH-1".into())),
                        }),
                    },
                    &admin,
                ))
                .await
                .unwrap()
                .into_inner()
                .available
        }
    };
    assert_eq!(balance(&mut cb).await, "20.00");

    // Redeem 15 through B; then 10 through A is refused: A decides on B's write.
    let redeem = |amount: &str| pb::RedeemRequest {
        request_id: id(),
        program_id: program.clone(),
        merchant_id: cafe.clone(),
        member: Some(pb::MemberRef {
            member: Some(pb::member_ref::Member::MemberId(member.clone())),
        }),
        amount: amount.into(),
    };
    let spent = cb
        .pos
        .redeem(auth(redeem("15"), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(spent.available, "5.00");
    let refused = ca.pos.redeem(auth(redeem("10"), &admin)).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason(&refused), "INSUFFICIENT_POINTS");
    let ok = ca
        .pos
        .redeem(auth(redeem("5"), &admin))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ok.available, "0.00");

    // One journal, one chain, a clean audit, seen from either server.
    for c in [&mut ca, &mut cb] {
        let chain = verify_chain(&mut c.ledger, &admin, &program).await;
        assert!(chain.ok, "{}", chain.message);
        let audit = audit_report(&mut c.ledger, &admin, &program).await;
        assert!(audit.ok, "{:?}", audit.breaches);
    }
    drop(a);
    drop(b);
    pg::drop_schema(&schema.base, &schema.name).await;
}
