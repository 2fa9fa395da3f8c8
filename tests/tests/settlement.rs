//! End-to-end test of merchant settlement (issue 6) through the real server binary: funds,
//! a rate, redemptions, a close, the statement and its CSV (over gRPC and the CLI), a
//! late refund landing in the next period, the over-budget refusal, reconciliation, and
//! the rule that merchant keys read only their own statements.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::grpc::{
    activity, audit_report, community, enrol, key, merchant, now_ms, patrol, program,
    record_and_approve, ts,
};
use common::{auth, binary, id, reason, Clients, Server};
use pb::activity_rule::Rule;
use pb::settlement_client::SettlementClient;
use points_grpc::pb;
use tonic::transport::Channel;
use tonic::Code;
use tonic_types::StatusExt;

struct World {
    c: Clients,
    s: SettlementClient<Channel>,
    admin: String,
    program: String,
    community: String,
    cafe: String,
    recorder: String,
    cafe_key: String,
    shop_key: String,
    auditor: String,
    member: String,
}

/// A program with one community, a cafe and a shop (with merchant keys), a recorder, an
/// auditor, and a member with 40 points.
async fn setup(server: &Server) -> World {
    let channel = server.channel().await;
    let mut c = Clients::new(channel.clone());
    let admin = server.admin_key();
    let program = program(&mut c, &admin, "Settlement e2e").await;
    let community = community(&mut c, &admin, &program, "Community A").await;
    let cafe = merchant(&mut c, &admin, &program, &community, "Corner cafe").await;
    let shop = merchant(&mut c, &admin, &program, &community, "Noodle shop").await;
    let (recorder, _) = key(&mut c, &admin, &program, pb::Role::Recorder, &community, "").await;
    let (cafe_key, _) = key(&mut c, &admin, &program, pb::Role::Merchant, "", &cafe).await;
    let (shop_key, _) = key(&mut c, &admin, &program, pb::Role::Merchant, "", &shop).await;
    let (auditor, _) = key(&mut c, &admin, &program, pb::Role::Auditor, "", "").await;
    let member = enrol(&mut c, &recorder, &program, &community, "")
        .await
        .unwrap();
    let activity = activity(
        &mut c.rec,
        &recorder,
        patrol(&program, &community, "Patrol", Rule::PerHour("10".into())),
    )
    .await;
    let records = vec![pb::ServiceRecordInput {
        member_id: member.clone(),
        activity_id: activity,
        org_unit_id: community.clone(),
        started_at: Some(ts(now_ms() - 5 * 3_600_000)),
        minutes: 240,
    }];
    record_and_approve(&mut c.rec, &recorder, &program, records).await;
    World {
        c,
        s: SettlementClient::new(channel),
        admin,
        program,
        community,
        cafe,
        recorder,
        cafe_key,
        shop_key,
        auditor,
        member,
    }
}

fn redeem(w: &World, amount: &str) -> tonic::Request<pb::RedeemRequest> {
    auth(
        pb::RedeemRequest {
            request_id: id(),
            program_id: w.program.clone(),
            merchant_id: w.cafe.clone(),
            member: Some(pb::MemberRef {
                member: Some(pb::member_ref::Member::MemberId(w.member.clone())),
            }),
            amount: amount.into(),
        },
        &w.cafe_key,
    )
}

fn close(w: &World, period: u32, key: &str) -> tonic::Request<pb::CloseSettlementPeriodRequest> {
    auth(
        pb::CloseSettlementPeriodRequest {
            request_id: id(),
            program_id: w.program.clone(),
            merchant_id: w.cafe.clone(),
            period,
        },
        key,
    )
}

fn statement(
    w: &World,
    period: u32,
    key: &str,
) -> tonic::Request<pb::GetSettlementStatementRequest> {
    auth(
        pb::GetSettlementStatementRequest {
            program_id: w.program.clone(),
            merchant_id: w.cafe.clone(),
            period,
        },
        key,
    )
}

fn code_of(status: &tonic::Status) -> String {
    status
        .get_details_error_info()
        .and_then(|i| i.metadata.get("code").cloned())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlement_end_to_end() {
    let server = Server::start();
    let mut w = setup(&server).await;

    // A fund of 1.50 yuan a month pays the cafe at 0.1 yuan per point.
    let fund = id();
    w.s.create_fund(auth(
        pb::CreateFundRequest {
            request_id: id(),
            program_id: w.program.clone(),
            fund_id: fund.clone(),
            org_unit_id: w.community.clone(),
            name: "Autonomy fund".into(),
            budget_per_month_yuan: "1.50".into(),
        },
        &w.recorder,
    ))
    .await
    .unwrap();
    let unknown =
        w.s.set_merchant_funds(auth(
            pb::SetMerchantFundsRequest {
                request_id: id(),
                program_id: w.program.clone(),
                merchant_id: w.cafe.clone(),
                fund_ids: vec![id()],
            },
            &w.recorder,
        ))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(reason(&unknown), "UNKNOWN_FUND");
    w.s.set_merchant_funds(auth(
        pb::SetMerchantFundsRequest {
            request_id: id(),
            program_id: w.program.clone(),
            merchant_id: w.cafe.clone(),
            fund_ids: vec![fund.clone()],
        },
        &w.recorder,
    ))
    .await
    .unwrap();
    let backdated =
        w.s.set_merchant_rate(auth(
            pb::SetMerchantRateRequest {
                request_id: id(),
                program_id: w.program.clone(),
                merchant_id: w.cafe.clone(),
                yuan_per_point: "0.1".into(),
                effective_from: Some(ts(now_ms() - 60_000)),
            },
            &w.recorder,
        ))
        .await
        .unwrap_err();
    assert_eq!(backdated.code(), Code::InvalidArgument);
    assert_eq!(reason(&backdated), "EFFECTIVE_DATE_NOT_FUTURE");
    w.s.set_merchant_rate(auth(
        pb::SetMerchantRateRequest {
            request_id: id(),
            program_id: w.program.clone(),
            merchant_id: w.cafe.clone(),
            yuan_per_point: "0.1".into(),
            effective_from: Some(ts(now_ms() + 200)),
        },
        &w.recorder,
    ))
    .await
    .unwrap();
    // Wait until the server reports the rate in force (it takes effect at a set instant).
    loop {
        let list =
            w.s.list_settlements(auth(
                pb::ListSettlementsRequest {
                    program_id: w.program.clone(),
                    merchant_id: w.cafe.clone(),
                },
                &w.admin,
            ))
            .await
            .unwrap()
            .into_inner();
        if list.merchants[0].rate_yuan_per_point == "0.1" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }

    // Period 1: a redemption of 10, a capture of 5, a refund of 2: 13 points, 1.30 yuan.
    let sale = w.c.pos.redeem(redeem(&w, "10")).await.unwrap().into_inner();
    let sale_id = sale.receipt.unwrap().entry_id;
    let hold =
        w.c.pos
            .hold(auth(
                pb::HoldRequest {
                    request_id: id(),
                    program_id: w.program.clone(),
                    merchant_id: w.cafe.clone(),
                    member: Some(pb::MemberRef {
                        member: Some(pb::member_ref::Member::MemberId(w.member.clone())),
                    }),
                    amount: "5".into(),
                    ttl_ms: 60_000,
                },
                &w.cafe_key,
            ))
            .await
            .unwrap()
            .into_inner();
    w.c.pos
        .capture(auth(
            pb::CaptureRequest {
                request_id: id(),
                program_id: w.program.clone(),
                hold_id: hold.receipt.unwrap().entry_id,
                amount: None,
            },
            &w.cafe_key,
        ))
        .await
        .unwrap();
    let refund = |amount: &str| {
        auth(
            pb::RefundRequest {
                request_id: id(),
                program_id: w.program.clone(),
                entry_id: sale_id.clone(),
                amount: amount.into(),
            },
            &w.cafe_key,
        )
    };
    w.c.pos.refund(refund("2")).await.unwrap();

    // Merchant keys cannot close periods; a recorder over the merchant can, once.
    let denied = w.s.close_settlement_period(close(&w, 1, &w.cafe_key)).await;
    assert_eq!(denied.unwrap_err().code(), Code::PermissionDenied);
    let closed =
        w.s.close_settlement_period(close(&w, 1, &w.recorder))
            .await
            .unwrap()
            .into_inner();
    let s1 = closed.settlement.unwrap();
    assert_eq!(
        closed.receipt.unwrap().kind,
        pb::EntryKind::SettlementClosed as i32
    );
    assert_eq!(s1.net_points, "13.00");
    assert_eq!(s1.owed_yuan, "1.30");
    assert_eq!(s1.paid_yuan, "1.30");
    assert_eq!(s1.lines, 3);
    let again =
        w.s.close_settlement_period(close(&w, 1, &w.recorder))
            .await
            .unwrap_err();
    assert_eq!(again.code(), Code::FailedPrecondition);
    assert_eq!(reason(&again), "PERIOD_ALREADY_CLOSED");
    assert_eq!(code_of(&again), "505");

    // The cafe reads its own statement; the shop's key may not.
    let st =
        w.s.get_settlement_statement(statement(&w, 1, &w.cafe_key))
            .await
            .unwrap()
            .into_inner();
    let kinds: Vec<&str> = st.lines.iter().map(|l| l.kind.as_str()).collect();
    assert_eq!(kinds, ["redemption", "capture", "refund"]);
    assert!(st.lines.iter().all(|l| l.rate_yuan_per_point == "0.1"));
    assert_eq!(st.lines[2].corrects_entry_id, sale_id);
    assert!(
        st.csv.starts_with("sequence,entry_id,at,kind"),
        "{}",
        st.csv
    );
    assert!(st.csv.contains("# owed_yuan,1.30\n"), "{}", st.csv);
    assert!(st.csv.contains("# rounding,half-even"), "{}", st.csv);
    let other =
        w.s.get_settlement_statement(statement(&w, 1, &w.shop_key))
            .await
            .unwrap_err();
    assert_eq!(other.code(), Code::PermissionDenied);
    let listed =
        w.s.list_settlements(auth(
            pb::ListSettlementsRequest {
                program_id: w.program.clone(),
                merchant_id: String::new(),
            },
            &w.shop_key,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed.settlements.is_empty(),
        "the shop sees none of the cafe's"
    );
    assert_eq!(listed.merchants.len(), 1);
    assert_ne!(listed.merchants[0].merchant_id, w.cafe);
    let listed =
        w.s.list_settlements(auth(
            pb::ListSettlementsRequest {
                program_id: w.program.clone(),
                merchant_id: String::new(),
            },
            &w.cafe_key,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.settlements.len(), 1);
    assert_eq!(listed.settlements[0].owed_yuan, "1.30");

    // A refund after the close lands in period 2.
    w.c.pos.refund(refund("1")).await.unwrap();
    let s2 =
        w.s.close_settlement_period(close(&w, 2, &w.admin))
            .await
            .unwrap()
            .into_inner()
            .settlement
            .unwrap();
    assert_eq!(s2.net_points, "-1.00");
    assert_eq!(s2.owed_yuan, "-0.10");
    assert_eq!(s2.deferred_out_yuan, "-0.10");
    let st1_again =
        w.s.get_settlement_statement(statement(&w, 1, &w.cafe_key))
            .await
            .unwrap()
            .into_inner();
    assert_eq!(st1_again, st, "a closed statement never changes");

    // Over budget, refused: 0.20 yuan is left this month.
    w.s.set_over_budget(auth(
        pb::SetOverBudgetRequest {
            request_id: id(),
            program_id: w.program.clone(),
            setting: pb::OverBudgetSetting::Refuse as i32,
        },
        &w.admin,
    ))
    .await
    .unwrap();
    let over = w.c.pos.redeem(redeem(&w, "5")).await.unwrap_err();
    assert_eq!(over.code(), Code::FailedPrecondition);
    assert_eq!(reason(&over), "FUND_BUDGET_EXCEEDED");
    assert_eq!(code_of(&over), "605");
    w.c.pos.redeem(redeem(&w, "1")).await.unwrap();

    // Reconciliation: 40 issued = 27 available + 1 unsettled + 12 settled.
    let rec =
        w.s.reconcile(auth(
            pb::ReconcileRequest {
                program_id: w.program.clone(),
            },
            &w.auditor,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(rec.balanced, "{rec:?}");
    let p = rec.program.unwrap();
    assert_eq!(
        (
            p.issued.as_str(),
            p.available.as_str(),
            p.unsettled.as_str(),
            p.settled.as_str()
        ),
        ("40.00", "27.00", "1.00", "12.00")
    );
    assert_eq!(p.difference, "0.00");
    assert_eq!(rec.org_units.len(), 1);
    let merchant_reconcile =
        w.s.reconcile(auth(
            pb::ReconcileRequest {
                program_id: w.program.clone(),
            },
            &w.cafe_key,
        ))
        .await
        .unwrap_err();
    assert_eq!(merchant_reconcile.code(), Code::PermissionDenied);
    let audit = audit_report(&mut w.c.ledger, &w.auditor, &w.program).await;
    assert!(audit.ok, "{:?}", audit.breaches);

    // The CLI: statement as CSV to stdout and to a file, as the cafe; reconcile as admin.
    let cli = |key: &str, args: &[&str]| {
        std::process::Command::new(binary("points"))
            .env_remove("POINTS_PROGRAM")
            .env("POINTS_SERVER", format!("http://{}", server.addr))
            .env("POINTS_API_KEY", key)
            .env("POINTS_PROGRAM", &w.program)
            .args(args)
            .output()
            .unwrap()
    };
    let out = cli(
        &w.cafe_key,
        &[
            "settlement",
            "statement",
            "--merchant",
            &w.cafe,
            "--period",
            "1",
            "--csv",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), st.csv);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("statement.csv");
    let out = cli(
        &w.cafe_key,
        &[
            "settlement",
            "statement",
            "--merchant",
            &w.cafe,
            "--period",
            "1",
            "--out",
            file.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), st.csv);
    let out = cli(
        &w.shop_key,
        &[
            "settlement",
            "statement",
            "--merchant",
            &w.cafe,
            "--period",
            "1",
            "--csv",
        ],
    );
    assert!(
        !out.status.success(),
        "the shop's key must not read the cafe's statement"
    );
    let out = cli(&w.admin, &["--json", "settlement", "reconcile"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["balanced"], serde_json::Value::Bool(true));
    let out = cli(
        &w.admin,
        &["--json", "settlement", "list", "--merchant", &w.cafe],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["settlements"].as_array().unwrap().len(), 2);
}
