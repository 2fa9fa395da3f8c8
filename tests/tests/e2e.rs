//! End-to-end tests: the real `points-server` binary, driven over gRPC with the generated
//! clients. Every RPC is called at least once; every role boundary is checked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::grpc::{activity, audit_report, enrol, key, now_pb, org_unit, patrol, verify_chain};
use common::{auth, id, reason, Clients, Server};
use pb::activity_rule::Rule;
use points_grpc::pb;
use std::time::Duration;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_types::StatusExt;

/// What the setup created.
struct World {
    c: Clients,
    admin: String,
    program: String,
    district: String,
    community_a: String,
    community_b: String,
    cafe: String,
    shop: String,
    recorder_a: String,
    recorder_a_id: String,
    merchant_cafe: String,
    auditor: String,
    member: String,
    member2: String,
    activity: String,
    pool: String,
}

fn redeem_req(
    program: &str,
    merchant: &str,
    member: &str,
    amount: &str,
    request_id: &str,
) -> pb::RedeemRequest {
    pb::RedeemRequest {
        request_id: request_id.into(),
        program_id: program.into(),
        merchant_id: merchant.into(),
        member: Some(pb::MemberRef {
            member: Some(pb::member_ref::Member::MemberId(member.into())),
        }),
        amount: amount.into(),
    }
}

/// Program, org units, merchants, keys, members, an activity, a pool, and 20 points for
/// `member` from two hours of approved service.
async fn setup(server: &Server) -> World {
    let mut c = Clients::new(server.channel().await);
    let admin = server.admin_key();
    let program = id();
    let created = c
        .admin
        .create_program(auth(
            pb::CreateProgramRequest {
                request_id: id(),
                program_id: program.clone(),
                name: "Donghu volunteer points".into(),
                unit_name: "points".into(),
                decimal_places: 2,
                expiry: Some(pb::ExpiryPolicy {
                    policy: Some(pb::expiry_policy::Policy::EndOfYear(
                        pb::expiry_policy::EndOfYear { years_after: 1 },
                    )),
                }),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let receipt = created.receipt.unwrap();
    assert_eq!(receipt.sequence, 0, "the genesis entry is sequence 0");
    assert_eq!(receipt.kind, pb::EntryKind::ProgramOpened as i32);

    let district = org_unit(
        &mut c,
        &admin,
        &program,
        "",
        "Donghu",
        pb::OrgUnitLevel::District,
    )
    .await
    .unwrap();
    let community_a = org_unit(
        &mut c,
        &admin,
        &program,
        &district,
        "Community A",
        pb::OrgUnitLevel::Community,
    )
    .await
    .unwrap();
    let community_b = org_unit(
        &mut c,
        &admin,
        &program,
        &district,
        "Community B",
        pb::OrgUnitLevel::Community,
    )
    .await
    .unwrap();
    let merchant = |name: &'static str, unit: String| {
        let mut c = c.clone();
        let admin = admin.clone();
        let program = program.clone();
        async move {
            let m = id();
            let r = c
                .admin
                .register_merchant(auth(
                    pb::RegisterMerchantRequest {
                        request_id: id(),
                        program_id: program,
                        merchant_id: m.clone(),
                        org_unit_id: unit,
                        name: name.into(),
                        kind: pb::MerchantKind::Partner as i32,
                    },
                    &admin,
                ))
                .await
                .unwrap()
                .into_inner();
            assert_eq!(
                r.merchant.unwrap().status,
                pb::MerchantStatus::Active as i32
            );
            m
        }
    };
    let cafe = merchant("Corner cafe", community_a.clone()).await;
    let shop = merchant("Love supermarket", community_b.clone()).await;

    let (recorder_a, recorder_a_id) = key(
        &mut c,
        &admin,
        &program,
        pb::Role::Recorder,
        &community_a,
        "",
    )
    .await;
    let (merchant_cafe, _) = key(&mut c, &admin, &program, pb::Role::Merchant, "", &cafe).await;
    let (auditor, _) = key(&mut c, &admin, &program, pb::Role::Auditor, "", "").await;

    let member = enrol(&mut c, &recorder_a, &program, &community_a, "DH-0001")
        .await
        .unwrap();
    let member2 = enrol(&mut c, &recorder_a, &program, &community_a, "")
        .await
        .unwrap();

    let activity = activity(
        &mut c.rec,
        &recorder_a,
        pb::DefineActivityRequest {
            max_minutes_per_occasion: Some(240),
            ..patrol(
                &program,
                &community_a,
                "Evening patrol",
                Rule::PerHour("10".into()),
            )
        },
    )
    .await;
    let pool = id();
    c.rec
        .create_pool(auth(
            pb::CreatePoolRequest {
                request_id: id(),
                program_id: program.clone(),
                pool_id: pool.clone(),
                org_unit_id: community_a.clone(),
                name: "Donghu love bank".into(),
                kind: pb::PoolKind::LoveBank as i32,
            },
            &recorder_a,
        ))
        .await
        .unwrap();

    let mut world = World {
        c,
        admin,
        program,
        district,
        community_a,
        community_b,
        cafe,
        shop,
        recorder_a,
        recorder_a_id,
        merchant_cafe,
        auditor,
        member,
        member2,
        activity,
        pool,
    };
    let records = record(&mut world, &[120]).await;
    let approved = world
        .c
        .rec
        .approve_service(auth(
            pb::ApproveServiceRequest {
                request_id: id(),
                program_id: world.program.clone(),
                record_ids: records,
            },
            &world.recorder_a,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(approved.records.len(), 1);
    assert_eq!(approved.records[0].points, "20.00");
    assert_eq!(approved.records[0].minutes, 120);
    assert_eq!(
        approved.records[0].status,
        pb::ServiceRecordStatus::Approved as i32
    );
    world
}

/// Records service for `world.member`, one record per duration; returns the record ids.
async fn record(w: &mut World, minutes: &[u32]) -> Vec<String> {
    let records = minutes
        .iter()
        .map(|&m| pb::ServiceRecordInput {
            member_id: w.member.clone(),
            activity_id: w.activity.clone(),
            org_unit_id: w.community_a.clone(),
            started_at: Some(now_pb(-3 * 3_600_000)),
            minutes: m,
        })
        .collect();
    let r =
        w.c.rec
            .record_service(auth(
                pb::RecordServiceRequest {
                    request_id: id(),
                    program_id: w.program.clone(),
                    records,
                },
                &w.recorder_a,
            ))
            .await
            .unwrap()
            .into_inner();
    assert_eq!(r.records.len(), minutes.len());
    assert!(r
        .records
        .iter()
        .all(|o| o.status == pb::ServiceRecordStatus::Pending as i32));
    r.records.into_iter().map(|o| o.record_id).collect()
}

async fn available(w: &mut World, member: &str) -> String {
    w.c.pos
        .get_balance(auth(
            pb::GetBalanceRequest {
                program_id: w.program.clone(),
                member: Some(pb::MemberRef {
                    member: Some(pb::member_ref::Member::MemberId(member.into())),
                }),
            },
            &w.admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .available
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn point_of_sale_flow_and_idempotency() {
    let server = Server::start();
    let mut w = setup(&server).await;
    let (program, cafe, member) = (w.program.clone(), w.cafe.clone(), w.member.clone());
    let till = w.merchant_cafe.clone();

    // Balance by card code, as a till scans it.
    let balance =
        w.c.pos
            .get_balance(auth(
                pb::GetBalanceRequest {
                    program_id: program.clone(),
                    member: Some(pb::MemberRef {
                        member: Some(pb::member_ref::Member::CardCode("DH-0001".into())),
                    }),
                },
                &till,
            ))
            .await
            .unwrap()
            .into_inner();
    assert_eq!(balance.member_id, member);
    assert_eq!(balance.available, "20.00");
    assert_eq!(balance.credit_minutes, 120);

    // Redeem, and retry with the same request id: same entry, duplicate = true.
    let request_id = id();
    let first =
        w.c.pos
            .redeem(auth(
                redeem_req(&program, &cafe, &member, "12.50", &request_id),
                &till,
            ))
            .await
            .unwrap()
            .into_inner();
    assert_eq!(first.available, "7.50");
    let first_receipt = first.receipt.unwrap();
    assert!(!first_receipt.duplicate);
    let retry =
        w.c.pos
            .redeem(auth(
                redeem_req(&program, &cafe, &member, "12.50", &request_id),
                &till,
            ))
            .await
            .unwrap()
            .into_inner();
    let retry_receipt = retry.receipt.unwrap();
    assert!(retry_receipt.duplicate);
    assert_eq!(retry_receipt.entry_id, first_receipt.entry_id);
    assert_eq!(retry_receipt.sequence, first_receipt.sequence);
    assert_eq!(retry.available, "7.50", "a retry spends nothing");
    // Same request id, different payload: refused.
    let reused =
        w.c.pos
            .redeem(auth(
                redeem_req(&program, &cafe, &member, "1", &request_id),
                &till,
            ))
            .await
            .unwrap_err();
    assert_eq!(reused.code(), Code::FailedPrecondition);
    assert_eq!(reason(&reused), "REQUEST_ID_REUSED");
    let info = reused.get_details_error_info().unwrap();
    assert_eq!(info.domain, "points.v1");
    assert_eq!(info.metadata.get("code").map(String::as_str), Some("100"));

    // Too much: FAILED_PRECONDITION / INSUFFICIENT_POINTS with its numeric code.
    let short =
        w.c.pos
            .redeem(auth(
                redeem_req(&program, &cafe, &member, "100", &id()),
                &till,
            ))
            .await
            .unwrap_err();
    assert_eq!(short.code(), Code::FailedPrecondition);
    assert_eq!(reason(&short), "INSUFFICIENT_POINTS");
    assert_eq!(
        short
            .get_details_error_info()
            .unwrap()
            .metadata
            .get("code")
            .map(String::as_str),
        Some("700")
    );

    // Hold by card, capture part of it.
    let hold =
        w.c.pos
            .hold(auth(
                pb::HoldRequest {
                    request_id: id(),
                    program_id: program.clone(),
                    merchant_id: cafe.clone(),
                    member: Some(pb::MemberRef {
                        member: Some(pb::member_ref::Member::CardCode("DH-0001".into())),
                    }),
                    amount: "3".into(),
                    ttl_ms: 60_000,
                },
                &till,
            ))
            .await
            .unwrap()
            .into_inner();
    assert_eq!(hold.available, "4.50");
    assert_eq!(hold.hold_id, hold.receipt.as_ref().unwrap().entry_id);
    assert!(hold.expires_at.is_some());
    let captured =
        w.c.pos
            .capture(auth(
                pb::CaptureRequest {
                    request_id: id(),
                    program_id: program.clone(),
                    hold_id: hold.hold_id.clone(),
                    amount: Some("2".into()),
                },
                &till,
            ))
            .await
            .unwrap()
            .into_inner();
    assert_eq!(captured.captured, "2.00");
    assert_eq!(captured.released, "1.00");
    assert_eq!(captured.available, "5.50");

    // Hold and release.
    let hold2 =
        w.c.pos
            .hold(auth(
                pb::HoldRequest {
                    request_id: id(),
                    program_id: program.clone(),
                    merchant_id: cafe.clone(),
                    member: Some(pb::MemberRef {
                        member: Some(pb::member_ref::Member::MemberId(member.clone())),
                    }),
                    amount: "1".into(),
                    ttl_ms: 0,
                },
                &till,
            ))
            .await
            .unwrap()
            .into_inner();
    let released =
        w.c.pos
            .release(auth(
                pb::ReleaseRequest {
                    request_id: id(),
                    program_id: program.clone(),
                    hold_id: hold2.hold_id.clone(),
                },
                &till,
            ))
            .await
            .unwrap()
            .into_inner();
    assert_eq!(released.released, "1.00");
    assert_eq!(released.available, "5.50");

    // Refund part of the redemption.
    let refund =
        w.c.pos
            .refund(auth(
                pb::RefundRequest {
                    request_id: id(),
                    program_id: program.clone(),
                    entry_id: first_receipt.entry_id.clone(),
                    amount: "2.50".into(),
                },
                &till,
            ))
            .await
            .unwrap()
            .into_inner();
    assert_eq!(refund.refunded, "2.50");
    assert_eq!(refund.member_id, member);
    assert_eq!(refund.available, "8.00");

    // A batch: a redemption, a malformed operation, an over-spend, and a retry of the
    // first redemption.
    let op = |o: pb::submit_operation::Operation| pb::SubmitOperation { operation: Some(o) };
    let batch =
        w.c.pos
            .submit(auth(
                pb::SubmitRequest {
                    request_id: id(),
                    program_id: program.clone(),
                    operations: vec![
                        op(pb::submit_operation::Operation::Redeem(redeem_req(
                            "",
                            &cafe,
                            &member,
                            "1",
                            &id(),
                        ))),
                        op(pb::submit_operation::Operation::Redeem(redeem_req(
                            "",
                            &cafe,
                            "not-a-uuid",
                            "1",
                            &id(),
                        ))),
                        op(pb::submit_operation::Operation::Redeem(redeem_req(
                            "",
                            &cafe,
                            &member,
                            "1000",
                            &id(),
                        ))),
                        op(pb::submit_operation::Operation::Redeem(redeem_req(
                            "",
                            &cafe,
                            &member,
                            "12.50",
                            &request_id,
                        ))),
                    ],
                },
                &till,
            ))
            .await
            .unwrap()
            .into_inner();
    use pb::submit_result::Result as R;
    let results: Vec<_> = batch
        .results
        .into_iter()
        .map(|r| r.result.unwrap())
        .collect();
    assert_eq!(results.len(), 4);
    assert!(matches!(&results[0], R::Redeem(r) if r.available == "7.00"));
    assert!(
        matches!(&results[1], R::Error(e) if e.code == Code::InvalidArgument as i32 && e.reason == "INVALID_ARGUMENT")
    );
    assert!(
        matches!(&results[2], R::Error(e) if e.reason == "INSUFFICIENT_POINTS"
        && e.metadata.get("code").map(String::as_str) == Some("700"))
    );
    assert!(
        matches!(&results[3], R::Redeem(r) if r.receipt.as_ref().unwrap().duplicate
            && r.receipt.as_ref().unwrap().entry_id == first_receipt.entry_id)
    );
    assert_eq!(available(&mut w, &member).await, "7.00");

    // Suspend the cafe: it cannot redeem; reactivate it.
    let status_client = w.c.clone();
    let status_admin = w.admin.clone();
    let set_status = |status: pb::MerchantStatus| {
        let mut c = status_client.clone();
        let (admin, program, cafe) = (status_admin.clone(), program.clone(), cafe.clone());
        async move {
            c.admin
                .set_merchant_status(auth(
                    pb::SetMerchantStatusRequest {
                        request_id: id(),
                        program_id: program,
                        merchant_id: cafe,
                        status: status as i32,
                    },
                    &admin,
                ))
                .await
                .unwrap()
                .into_inner()
        }
    };
    let suspended = set_status(pb::MerchantStatus::Suspended).await;
    assert_eq!(
        suspended.merchant.unwrap().status,
        pb::MerchantStatus::Suspended as i32
    );
    let refused =
        w.c.pos
            .redeem(auth(
                redeem_req(&program, &cafe, &member, "1", &id()),
                &till,
            ))
            .await
            .unwrap_err();
    assert_eq!(reason(&refused), "MERCHANT_SUSPENDED");
    set_status(pb::MerchantStatus::Active).await;

    let listed =
        w.c.admin
            .list_merchants(auth(
                pb::ListMerchantsRequest {
                    program_id: program.clone(),
                    status: pb::MerchantStatus::Active as i32,
                    ..Default::default()
                },
                &w.auditor,
            ))
            .await
            .unwrap()
            .into_inner();
    assert_eq!(listed.merchants.len(), 2);
    let cafe_view = listed
        .merchants
        .iter()
        .find(|m| m.merchant_id == cafe)
        .unwrap();
    assert_eq!(cafe_view.taken, "13.00", "12.50 + 2 + 1 - 2.50");
    // A merchant key sees only its own merchant.
    let own =
        w.c.admin
            .list_merchants(auth(
                pb::ListMerchantsRequest {
                    program_id: program.clone(),
                    ..Default::default()
                },
                &till,
            ))
            .await
            .unwrap()
            .into_inner();
    assert_eq!(own.merchants.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recording_flow_statement_and_audit() {
    let server = Server::start();
    let mut w = setup(&server).await;
    let (program, member, member2) = (w.program.clone(), w.member.clone(), w.member2.clone());
    let rec = w.recorder_a.clone();

    // Update and move a member (into a new estate the recorder adds in its subtree).
    w.c.rec
        .update_member(auth(
            pb::UpdateMemberRequest {
                request_id: id(),
                program_id: program.clone(),
                member_id: member2.clone(),
                kind: pb::MemberKind::PartyMember as i32,
                dual_registration: true,
                card_code: "DH-0002".into(),
            },
            &rec,
        ))
        .await
        .unwrap();
    let estate = org_unit(
        &mut w.c,
        &rec,
        &program,
        &w.community_a.clone(),
        "Estate 1",
        pb::OrgUnitLevel::Estate,
    )
    .await
    .unwrap();
    w.c.rec
        .move_member(auth(
            pb::MoveMemberRequest {
                request_id: id(),
                program_id: program.clone(),
                member_id: member2.clone(),
                to_org_unit_id: estate.clone(),
            },
            &rec,
        ))
        .await
        .unwrap();

    // Reject a pending record.
    let pending = record(&mut w, &[30]).await;
    w.c.rec
        .reject_service(auth(
            pb::RejectServiceRequest {
                request_id: id(),
                program_id: program.clone(),
                record_ids: pending,
                reason: "not present".into(),
            },
            &rec,
        ))
        .await
        .unwrap();

    // Transfer, donate, grant, reverse the transfer.
    let transfer =
        w.c.rec
            .transfer(auth(
                pb::TransferRequest {
                    request_id: id(),
                    program_id: program.clone(),
                    from_member_id: member.clone(),
                    to_member_id: member2.clone(),
                    amount: "5".into(),
                },
                &rec,
            ))
            .await
            .unwrap()
            .into_inner();
    assert_eq!(transfer.from_available, "15.00");
    let donated =
        w.c.rec
            .donate(auth(
                pb::DonateRequest {
                    request_id: id(),
                    program_id: program.clone(),
                    member_id: member.clone(),
                    pool_id: w.pool.clone(),
                    amount: "3".into(),
                },
                &rec,
            ))
            .await
            .unwrap()
            .into_inner();
    assert_eq!(donated.available, "12.00");
    let granted =
        w.c.rec
            .grant(auth(
                pb::GrantRequest {
                    request_id: id(),
                    program_id: program.clone(),
                    pool_id: w.pool.clone(),
                    member_id: member2.clone(),
                    amount: "2".into(),
                },
                &rec,
            ))
            .await
            .unwrap()
            .into_inner();
    assert_eq!(granted.available, "7.00");
    w.c.rec
        .reverse(auth(
            pb::ReverseRequest {
                request_id: id(),
                program_id: program.clone(),
                entry_id: transfer.receipt.unwrap().entry_id,
                reason: "wrong member".into(),
            },
            &rec,
        ))
        .await
        .unwrap();
    assert_eq!(available(&mut w, &member).await, "17.00");
    assert_eq!(available(&mut w, &member2).await, "2.00");

    // Nothing has expired: the ledger refuses with NOTHING_TO_EXPIRE, writing nothing.
    let expire =
        w.c.rec
            .expire(auth(
                pb::ExpireRequest {
                    request_id: id(),
                    program_id: program.clone(),
                    member_id: member.clone(),
                },
                &rec,
            ))
            .await
            .unwrap_err();
    assert_eq!(expire.code(), Code::FailedPrecondition);
    assert_eq!(reason(&expire), "NOTHING_TO_EXPIRE");

    // Statement: opening 0, 20 accrued, -5 transfer, -3 donation, +5 reversal = 17.
    let statement =
        w.c.ledger
            .get_statement(auth(
                pb::GetStatementRequest {
                    program_id: program.clone(),
                    member_id: member.clone(),
                    ..Default::default()
                },
                &w.auditor,
            ))
            .await
            .unwrap()
            .into_inner();
    assert_eq!(statement.opening_balance, "0.00");
    assert_eq!(statement.closing_balance, "17.00");
    let amounts: Vec<_> = statement.lines.iter().map(|l| l.amount.as_str()).collect();
    assert_eq!(amounts, ["20.00", "-5.00", "-3.00", "5.00"]);
    assert_eq!(statement.lines.last().unwrap().balance, "17.00");
    assert!(!statement.lines[3].corrects_entry_id.is_empty());
    assert!(statement.next_page_token.is_empty());
    // Paged one line at a time, the same lines come back.
    let mut token = String::new();
    let mut paged = Vec::new();
    loop {
        let page =
            w.c.ledger
                .get_statement(auth(
                    pb::GetStatementRequest {
                        program_id: program.clone(),
                        member_id: member.clone(),
                        page_size: 1,
                        page_token: token.clone(),
                        ..Default::default()
                    },
                    &w.auditor,
                ))
                .await
                .unwrap()
                .into_inner();
        paged.extend(page.lines.into_iter().map(|l| l.amount));
        if page.next_page_token.is_empty() {
            assert_eq!(page.closing_balance, "17.00");
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(paged, amounts);

    // Chain and audit.
    let chain = verify_chain(&mut w.c.ledger, &w.auditor, &program).await;
    assert!(chain.ok, "{}", chain.message);
    assert!(chain.entries_checked > 15);
    assert_eq!(chain.head_hash.len(), 64);
    let audit = audit_report(&mut w.c.ledger, &w.auditor, &program).await;
    assert!(audit.ok, "{:?}", audit.breaches);
    assert_eq!(audit.entries_checked, chain.entries_checked);
    assert_eq!(audit.head_hash, chain.head_hash);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_boundaries() {
    let server = Server::start();
    let mut w = setup(&server).await;
    let program = w.program.clone();

    // A merchant key redeeming for another merchant.
    let err =
        w.c.pos
            .redeem(auth(
                redeem_req(&program, &w.shop, &w.member, "1", &id()),
                &w.merchant_cafe,
            ))
            .await
            .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(reason(&err), "ACTOR_NOT_ALLOWED");
    // A merchant key may not call Recording at all.
    let err = enrol(
        &mut w.c,
        &w.merchant_cafe.clone(),
        &program,
        &w.community_a.clone(),
        "",
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // A merchant key may not read another merchant's entries.
    let err =
        w.c.ledger
            .list_entries(auth(
                pb::ListEntriesRequest {
                    program_id: program.clone(),
                    merchant_id: w.shop.clone(),
                    ..Default::default()
                },
                &w.merchant_cafe,
            ))
            .await
            .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // A recorder outside its subtree.
    let err = enrol(
        &mut w.c,
        &w.recorder_a.clone(),
        &program,
        &w.community_b.clone(),
        "",
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(reason(&err), "ACTOR_NOT_ALLOWED");
    let err = org_unit(
        &mut w.c,
        &w.recorder_a.clone(),
        &program,
        &w.district.clone(),
        "Elsewhere",
        pb::OrgUnitLevel::Community,
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // A recorder may not redeem, nor manage keys.
    let err =
        w.c.pos
            .redeem(auth(
                redeem_req(&program, &w.cafe, &w.member, "1", &id()),
                &w.recorder_a,
            ))
            .await
            .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err =
        w.c.admin
            .list_api_keys(auth(pb::ListApiKeysRequest::default(), &w.recorder_a))
            .await
            .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // Recorder reads are limited to its subtree: entries default to it, B is refused.
    let err =
        w.c.ledger
            .list_entries(auth(
                pb::ListEntriesRequest {
                    program_id: program.clone(),
                    org_unit_id: w.community_b.clone(),
                    ..Default::default()
                },
                &w.recorder_a,
            ))
            .await
            .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let own =
        w.c.ledger
            .list_entries(auth(
                pb::ListEntriesRequest {
                    program_id: program.clone(),
                    ..Default::default()
                },
                &w.recorder_a,
            ))
            .await
            .unwrap()
            .into_inner();
    assert!(own
        .entries
        .iter()
        .all(|e| e.kind != pb::EntryKind::ProgramOpened as i32));
    assert!(own
        .entries
        .iter()
        .any(|e| e.kind == pb::EntryKind::ServiceApproved as i32));

    // An auditor may read but not write.
    let err =
        w.c.pos
            .redeem(auth(
                redeem_req(&program, &w.cafe, &w.member, "1", &id()),
                &w.auditor,
            ))
            .await
            .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(reason(&err), "PERMISSION_DENIED");
    let err = enrol(
        &mut w.c,
        &w.auditor.clone(),
        &program,
        &w.community_a.clone(),
        "",
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err =
        w.c.admin
            .create_program(auth(
                pb::CreateProgramRequest {
                    request_id: id(),
                    program_id: id(),
                    name: "x".into(),
                    unit_name: "points".into(),
                    ..Default::default()
                },
                &w.auditor,
            ))
            .await
            .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    // No key, a wrong key, a revoked key: UNAUTHENTICATED.
    let err =
        w.c.admin
            .list_programs(pb::ListProgramsRequest::default())
            .await
            .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err =
        w.c.admin
            .list_programs(auth(pb::ListProgramsRequest::default(), "pk_nonsense"))
            .await
            .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let forged = format!("{}x", &w.auditor[..w.auditor.len() - 1]);
    let err =
        w.c.admin
            .list_programs(auth(pb::ListProgramsRequest::default(), &forged))
            .await
            .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let keys =
        w.c.admin
            .list_api_keys(auth(
                pb::ListApiKeysRequest {
                    program_id: program.clone(),
                    ..Default::default()
                },
                &w.admin,
            ))
            .await
            .unwrap()
            .into_inner();
    assert_eq!(keys.api_keys.len(), 3);
    let revoked =
        w.c.admin
            .revoke_api_key(auth(
                pb::RevokeApiKeyRequest {
                    api_key_id: w.recorder_a_id.clone(),
                },
                &w.admin,
            ))
            .await
            .unwrap()
            .into_inner();
    assert!(revoked.api_key.unwrap().revoked);
    let err = enrol(
        &mut w.c,
        &w.recorder_a.clone(),
        &program,
        &w.community_a.clone(),
        "",
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let all =
        w.c.admin
            .list_api_keys(auth(
                pb::ListApiKeysRequest {
                    include_revoked: true,
                    ..Default::default()
                },
                &w.admin,
            ))
            .await
            .unwrap()
            .into_inner();
    assert_eq!(
        all.api_keys.len(),
        4,
        "three program keys and the bootstrap key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_input_is_invalid_argument_with_bad_request() {
    let server = Server::start();
    let mut w = setup(&server).await;
    let program = w.program.clone();
    let err =
        w.c.pos
            .redeem(auth(
                redeem_req(
                    &program,
                    "not-a-uuid",
                    &w.member,
                    "0.001",
                    "00000000-0000-0000-0000-000000000000",
                ),
                &w.admin,
            ))
            .await
            .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(reason(&err), "INVALID_ARGUMENT");
    let fields: Vec<String> = err
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["request_id", "merchant_id", "amount"]);

    for bad in [
        "0",
        "-1",
        "1e3",
        "12,5",
        "",
        "abc",
        "99999999999999999999999999999999",
    ] {
        let err =
            w.c.pos
                .redeem(auth(
                    redeem_req(&program, &w.cafe, &w.member, bad, &id()),
                    &w.admin,
                ))
                .await
                .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "amount {bad:?}");
        assert!(err.get_details_bad_request().is_some());
    }
    // Unknown and missing enum values.
    let err =
        w.c.rec
            .enrol_member(auth(
                pb::EnrolMemberRequest {
                    request_id: id(),
                    program_id: program.clone(),
                    member_id: id(),
                    org_unit_id: w.community_a.clone(),
                    kind: 42,
                    ..Default::default()
                },
                &w.admin,
            ))
            .await
            .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err =
        w.c.rec
            .define_activity(auth(
                pb::DefineActivityRequest {
                    request_id: id(),
                    program_id: program.clone(),
                    activity_id: id(),
                    org_unit_id: w.community_a.clone(),
                    name: "x".into(),
                    category: "y".into(),
                    ..Default::default()
                },
                &w.admin,
            ))
            .await
            .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let violations = err.get_details_bad_request().unwrap().field_violations;
    assert!(violations.iter().any(|v| v.field == "rule"));
    assert!(violations.iter().any(|v| v.field == "time_kind"));
    // A record without a start time.
    let err =
        w.c.rec
            .record_service(auth(
                pb::RecordServiceRequest {
                    request_id: id(),
                    program_id: program.clone(),
                    records: vec![pb::ServiceRecordInput {
                        member_id: w.member.clone(),
                        activity_id: w.activity.clone(),
                        org_unit_id: w.community_a.clone(),
                        started_at: None,
                        minutes: 0,
                    }],
                },
                &w.admin,
            ))
            .await
            .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(
        err.get_details_bad_request()
            .unwrap()
            .field_violations
            .len(),
        2
    );
    // Unknown program.
    let err =
        w.c.ledger
            .verify_chain(auth(pb::VerifyChainRequest { program_id: id() }, &w.admin))
            .await
            .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // Page sizes over the maximum, and forged or foreign page tokens.
    let list = |page_size: i32, page_token: &str, member: &str| pb::ListEntriesRequest {
        program_id: program.clone(),
        page_size,
        page_token: page_token.into(),
        member_id: member.into(),
        ..Default::default()
    };
    let err =
        w.c.ledger
            .list_entries(auth(list(1001, "", ""), &w.admin))
            .await
            .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let page =
        w.c.ledger
            .list_entries(auth(list(2, "", ""), &w.admin))
            .await
            .unwrap()
            .into_inner();
    assert!(!page.next_page_token.is_empty());
    let err =
        w.c.ledger
            .list_entries(auth(list(2, &page.next_page_token, &w.member), &w.admin))
            .await
            .unwrap_err();
    assert_eq!(
        err.code(),
        Code::InvalidArgument,
        "a token of other filters"
    );
    let mut forged = page.next_page_token.clone();
    forged.replace_range(0..1, if forged.starts_with('A') { "B" } else { "A" });
    let err =
        w.c.ledger
            .list_entries(auth(list(2, &forged, ""), &w.admin))
            .await
            .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "a forged token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_paging_entries_and_watching() {
    let server = Server::start();
    let mut w = setup(&server).await;
    let program = w.program.clone();

    // Programs and org units, paged to the end.
    let programs =
        w.c.admin
            .list_programs(auth(pb::ListProgramsRequest::default(), &w.admin))
            .await
            .unwrap()
            .into_inner();
    assert_eq!(programs.programs.len(), 1);
    let got =
        w.c.admin
            .get_program(auth(
                pb::GetProgramRequest {
                    program_id: program.clone(),
                },
                &w.auditor,
            ))
            .await
            .unwrap()
            .into_inner();
    assert_eq!(got.decimal_places, 2);
    assert_eq!(got.utc_offset_minutes, 480);
    let mut token = String::new();
    let mut units = Vec::new();
    loop {
        let page =
            w.c.admin
                .list_org_units(auth(
                    pb::ListOrgUnitsRequest {
                        program_id: program.clone(),
                        page_size: 1,
                        page_token: token.clone(),
                        ..Default::default()
                    },
                    &w.admin,
                ))
                .await
                .unwrap()
                .into_inner();
        assert!(page.org_units.len() <= 1);
        units.extend(page.org_units);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(units.len(), 3);

    // Entries, paged two at a time to the end, equal the whole journal.
    let head = verify_chain(&mut w.c.ledger, &w.admin, &program).await;
    let mut token = String::new();
    let mut sequences = Vec::new();
    loop {
        let page =
            w.c.ledger
                .list_entries(auth(
                    pb::ListEntriesRequest {
                        program_id: program.clone(),
                        page_size: 2,
                        page_token: token.clone(),
                        ..Default::default()
                    },
                    &w.auditor,
                ))
                .await
                .unwrap()
                .into_inner();
        sequences.extend(page.entries.iter().map(|e| e.sequence));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(sequences, (0..head.entries_checked).collect::<Vec<_>>());
    // Filters: the member's entries and the kinds asked for.
    let mine =
        w.c.ledger
            .list_entries(auth(
                pb::ListEntriesRequest {
                    program_id: program.clone(),
                    member_id: w.member.clone(),
                    kinds: vec![pb::EntryKind::ServiceApproved as i32],
                    ..Default::default()
                },
                &w.auditor,
            ))
            .await
            .unwrap()
            .into_inner();
    assert_eq!(mine.entries.len(), 1);
    let approval = &mine.entries[0];
    assert_eq!(approval.postings.len(), 4);
    assert!(approval.detail_json.contains("ServiceApproved"));

    // GetEntry by id and by sequence.
    let by_id =
        w.c.ledger
            .get_entry(auth(
                pb::GetEntryRequest {
                    program_id: program.clone(),
                    key: Some(pb::get_entry_request::Key::EntryId(
                        approval.entry_id.clone(),
                    )),
                },
                &w.auditor,
            ))
            .await
            .unwrap()
            .into_inner();
    assert_eq!(&by_id, approval);
    let genesis =
        w.c.ledger
            .get_entry(auth(
                pb::GetEntryRequest {
                    program_id: program.clone(),
                    key: Some(pb::get_entry_request::Key::Sequence(0)),
                },
                &w.auditor,
            ))
            .await
            .unwrap()
            .into_inner();
    assert_eq!(genesis.kind, pb::EntryKind::ProgramOpened as i32);
    let err =
        w.c.ledger
            .get_entry(auth(
                pb::GetEntryRequest {
                    program_id: program.clone(),
                    key: Some(pb::get_entry_request::Key::Sequence(10_000)),
                },
                &w.auditor,
            ))
            .await
            .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Watch from sequence 3: stored entries first, then new ones as they are written.
    let from = 3;
    let mut stream =
        w.c.ledger
            .watch_entries(auth(
                pb::WatchEntriesRequest {
                    program_id: program.clone(),
                    from_sequence: from,
                    kinds: vec![],
                },
                &w.auditor,
            ))
            .await
            .unwrap()
            .into_inner();
    let mut seen = Vec::new();
    while (seen.len() as u64) < head.entries_checked - from {
        let entry = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push(entry.sequence);
    }
    assert_eq!(seen, (from..head.entries_checked).collect::<Vec<_>>());
    let redeemed =
        w.c.pos
            .redeem(auth(
                redeem_req(&program, &w.cafe, &w.member, "1", &id()),
                &w.merchant_cafe,
            ))
            .await
            .unwrap()
            .into_inner();
    let live = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(live.sequence, head.entries_checked);
    assert_eq!(live.entry_id, redeemed.receipt.unwrap().entry_id);
    assert_eq!(live.kind, pb::EntryKind::Redeemed as i32);

    // A merchant's watch sees only its own entries.
    let mut own =
        w.c.ledger
            .watch_entries(auth(
                pb::WatchEntriesRequest {
                    program_id: program.clone(),
                    from_sequence: 0,
                    kinds: vec![],
                },
                &w.merchant_cafe,
            ))
            .await
            .unwrap()
            .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(10), own.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(first.kind, pb::EntryKind::MerchantRegistered as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reflection_metrics_and_restart() {
    let mut server = Server::start();
    let admin = server.admin_key();
    assert!(admin.starts_with("pk_"));
    let channel = server.channel().await;

    // Health and reflection need no key.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "points.v1.PointOfSale".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );
    use tonic_reflection::pb::v1 as refl;
    let mut reflection =
        refl::server_reflection_client::ServerReflectionClient::new(channel.clone());
    let request = refl::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            refl::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut answers = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let answer = answers.next().await.unwrap().unwrap();
    let Some(refl::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        answer.message_response
    else {
        panic!("unexpected reflection answer");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for service in [
        "points.v1.PointOfSale",
        "points.v1.Recording",
        "points.v1.Admin",
        "points.v1.Ledger",
    ] {
        assert!(names.iter().any(|n| n == service), "{names:?}");
    }

    // A program survives a restart; the bootstrap key is printed only the first time.
    let mut c = Clients::new(channel);
    let program = id();
    c.admin
        .create_program(auth(
            pb::CreateProgramRequest {
                request_id: id(),
                program_id: program.clone(),
                name: "Restart".into(),
                unit_name: "points".into(),
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap();

    // Metrics.
    let metrics = http_get(&server.metrics).await;
    assert!(metrics.contains("points_grpc_requests_total"), "{metrics}");
    assert!(metrics.contains("/points.v1.Admin/CreateProgram"));
    assert!(metrics.contains("points_engine_entries_total"));

    let temp = server.take_temp();
    let status = server.stop();
    assert!(status.success(), "SIGTERM gives a clean exit: {status}");
    let again = Server::start_in(&server.dir, &[]);
    assert!(again.bootstrap_key.is_none());
    let mut c = Clients::new(again.channel().await);
    let got = c
        .admin
        .get_program(auth(
            pb::GetProgramRequest {
                program_id: program.clone(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.name, "Restart");
    drop(again);
    drop(temp);
}

/// A batch larger than the server's read chunks (it reads the ledger for a few hundred
/// operations at a time): every result lands at its operation's index, errors included on
/// either side of a chunk boundary, and every redemption shows the member's balance after
/// the batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_batch_answers_every_operation_in_place() {
    let server = Server::start();
    let mut w = setup(&server).await;
    let (program, cafe, member) = (w.program.clone(), w.cafe.clone(), w.member.clone());
    let till = w.merchant_cafe.clone();
    const OPS: usize = 600;
    let malformed = [0, 255, 256, 257, 511, 512, OPS - 1];
    let operations = (0..OPS)
        .map(|i| {
            let who = if malformed.contains(&i) {
                "not-a-uuid"
            } else {
                member.as_str()
            };
            pb::SubmitOperation {
                operation: Some(pb::submit_operation::Operation::Redeem(redeem_req(
                    "",
                    &cafe,
                    who,
                    "0.01",
                    &id(),
                ))),
            }
        })
        .collect();
    let batch =
        w.c.pos
            .submit(auth(
                pb::SubmitRequest {
                    request_id: id(),
                    program_id: program.clone(),
                    operations,
                },
                &till,
            ))
            .await
            .unwrap()
            .into_inner();
    assert_eq!(batch.results.len(), OPS);
    // 20 points less a hundredth for each well-formed redemption.
    let after = "14.07";
    let mut last_sequence = None;
    for (i, result) in batch.results.into_iter().enumerate() {
        use pb::submit_result::Result as R;
        match result.result.unwrap() {
            R::Error(e) => {
                assert!(malformed.contains(&i), "operation {i} failed: {e:?}");
                assert_eq!(e.code, Code::InvalidArgument as i32, "operation {i}");
            }
            R::Redeem(r) => {
                assert!(!malformed.contains(&i), "operation {i} succeeded");
                assert_eq!(r.available, after, "operation {i}");
                assert_eq!(r.member_id, member);
                let sequence = r.receipt.unwrap().sequence;
                assert!(
                    last_sequence.is_none_or(|last| sequence > last),
                    "operation {i} is out of order"
                );
                last_sequence = Some(sequence);
            }
            other => panic!("operation {i}: {other:?}"),
        }
    }
    assert_eq!(available(&mut w, &member).await, after);
}

async fn http_get(addr: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    socket.read_to_string(&mut out).await.unwrap();
    out
}
