//! Hostile input against the real server (issue 9): a table of malformed and hostile
//! requests, each row stating the exact gRPC status code and `ErrorInfo` reason expected
//! (and, for `INVALID_ARGUMENT`, the `BadRequest` field at fault). Afterwards the journal
//! must still verify and audit clean: no hostile request may have written anything.
//! A second test opens a `WatchEntries` stream that is never read and checks that writers
//! are not held up by it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod reliability;

use common::grpc::{audit_report, verify_chain};
use common::{auth, id, reason, Clients, Server};
use points_grpc::pb;
use reliability::{member_ref, now_pb, redeem, world, World};
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};
use tonic::{Code, Status};
use tonic_types::StatusExt;

type Call = Pin<Box<dyn Future<Output = Result<(), Status>> + Send>>;

/// What a row expects back.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Success.
    Ok,
    /// `INVALID_ARGUMENT` with reason `INVALID_ARGUMENT` and a `BadRequest` violation of
    /// this field.
    Field(&'static str),
    /// This code and `ErrorInfo` reason.
    Status(Code, &'static str),
    /// This code with no `ErrorInfo` (refused by the transport, before any handler).
    Transport(Code),
}

struct Row {
    name: String,
    expect: Expect,
    call: Call,
}

macro_rules! call {
    ($client:expr, $method:ident, $request:expr) => {{
        let mut client = $client.clone();
        let request = $request;
        Box::pin(async move { client.$method(request).await.map(|_| ()) }) as Call
    }};
}

fn row(rows: &mut Vec<Row>, name: impl Into<String>, expect: Expect, call: Call) {
    rows.push(Row {
        name: name.into(),
        expect,
        call,
    });
}

use Expect::{Field, Status as St, Transport};

const NIL: &str = "00000000-0000-0000-0000-000000000000";

fn hold_req(w: &World, member: &str, amount: &str, ttl_ms: u64) -> pb::HoldRequest {
    pb::HoldRequest {
        request_id: id(),
        program_id: w.program.clone(),
        merchant_id: w.merchant.clone(),
        member: member_ref(member),
        amount: amount.into(),
        ttl_ms,
    }
}

fn org_unit_req(w: &World, name: &str) -> pb::CreateOrgUnitRequest {
    pb::CreateOrgUnitRequest {
        request_id: id(),
        program_id: w.program.clone(),
        org_unit_id: id(),
        parent_id: w.community.clone(),
        name: name.into(),
        level: pb::OrgUnitLevel::Estate as i32,
    }
}

fn record_req(
    w: &World,
    started_at: Option<prost_types::Timestamp>,
    minutes: u32,
) -> pb::RecordServiceRequest {
    pb::RecordServiceRequest {
        request_id: id(),
        program_id: w.program.clone(),
        records: vec![pb::ServiceRecordInput {
            member_id: w.members[0].clone(),
            activity_id: w.activity.clone(),
            org_unit_id: w.community.clone(),
            started_at,
            minutes,
        }],
    }
}

fn list_req(w: &World, page_size: i32, page_token: &str) -> pb::ListEntriesRequest {
    pb::ListEntriesRequest {
        program_id: w.program.clone(),
        page_size,
        page_token: page_token.into(),
        ..Default::default()
    }
}

/// Builds the table. Some rows need state made first (a hold, a redemption, a revoked key).
async fn table(w: &mut World) -> Vec<Row> {
    let mut rows = Vec::new();
    let m = w.members[0].clone();
    let m2 = w.members[1].clone();
    let key = w.merchant_key.clone();
    let admin = w.admin.clone();
    let pos = w.c.pos.clone();
    let rec = w.c.rec.clone();
    let adm = w.c.admin.clone();
    let led = w.c.ledger.clone();

    // --- Decimals: negative, zero, over-precise, overflowing, not decimals at all.
    for (label, amount) in [
        ("empty", ""),
        ("negative", "-1"),
        ("negative zero", "-0"),
        ("zero", "0"),
        ("zero with places", "0.00"),
        ("over-precise for 2 places", "1.001"),
        ("exponent", "1e3"),
        ("fullwidth digits", "１０"),
        ("leading space", " 1"),
        ("NaN", "NaN"),
        ("two points", "1.5.5"),
        (
            "beyond Decimal (40 digits)",
            "9999999999999999999999999999999999999999",
        ),
        ("beyond the largest amount", "100000000000000000"),
        ("hex", "0x10"),
        ("plus sign", "+5"),
    ] {
        row(
            &mut rows,
            format!("redeem amount {label}: {amount:?}"),
            Field("amount"),
            call!(pos, redeem, auth(redeem(w, &m, amount), &key)),
        );
    }
    row(
        &mut rows,
        "redeem more than the balance",
        St(Code::FailedPrecondition, "INSUFFICIENT_POINTS"),
        call!(pos, redeem, auth(redeem(w, &m, "1000.01"), &key)),
    );

    // --- UUIDs: missing, nil, malformed, huge, unknown.
    let mut r = redeem(w, &m, "1");
    r.request_id = String::new();
    row(
        &mut rows,
        "request id missing",
        Field("request_id"),
        call!(pos, redeem, auth(r, &key)),
    );
    let mut r = redeem(w, &m, "1");
    r.request_id = NIL.into();
    row(
        &mut rows,
        "request id nil",
        Field("request_id"),
        call!(pos, redeem, auth(r, &key)),
    );
    let mut r = redeem(w, &m, "1");
    r.request_id = "not-a-uuid".into();
    row(
        &mut rows,
        "request id malformed",
        Field("request_id"),
        call!(pos, redeem, auth(r, &key)),
    );
    let mut r = redeem(w, &m, "1");
    r.request_id = "a".repeat(1 << 20);
    row(
        &mut rows,
        "request id of 1 MiB",
        Field("request_id"),
        call!(pos, redeem, auth(r, &key)),
    );
    let mut r = redeem(w, &m, "1");
    r.request_id = format!("{}\u{0}", id());
    row(
        &mut rows,
        "request id with a NUL",
        Field("request_id"),
        call!(pos, redeem, auth(r, &key)),
    );
    let mut r = redeem(w, &m, "1");
    r.merchant_id = NIL.into();
    row(
        &mut rows,
        "merchant id nil",
        Field("merchant_id"),
        call!(pos, redeem, auth(r, &key)),
    );
    let mut r = redeem(w, &m, "1");
    r.merchant_id = "{1234}".into();
    row(
        &mut rows,
        "merchant id malformed",
        Field("merchant_id"),
        call!(pos, redeem, auth(r, &key)),
    );
    let mut r = redeem(w, &m, "1");
    r.merchant_id = id();
    // Names are checked before who acts (rejection precedence 3xx before 4xx).
    row(
        &mut rows,
        "merchant key redeeming for an unknown merchant",
        St(Code::NotFound, "UNKNOWN_MERCHANT"),
        call!(pos, redeem, auth(r, &key)),
    );
    let second = id();
    w.c.admin
        .register_merchant(auth(
            pb::RegisterMerchantRequest {
                request_id: id(),
                program_id: w.program.clone(),
                merchant_id: second.clone(),
                org_unit_id: w.community.clone(),
                name: "Cafe".into(),
                kind: pb::MerchantKind::Partner as i32,
            },
            &admin,
        ))
        .await
        .unwrap();
    let mut r = redeem(w, &m, "1");
    r.merchant_id = second;
    row(
        &mut rows,
        "merchant key redeeming into another merchant's account",
        St(Code::PermissionDenied, "ACTOR_NOT_ALLOWED"),
        call!(pos, redeem, auth(r, &key)),
    );
    let mut r = redeem(w, &m, "1");
    r.member = None;
    row(
        &mut rows,
        "member missing",
        Field("member"),
        call!(pos, redeem, auth(r, &key)),
    );
    let mut r = redeem(w, &m, "1");
    r.member = member_ref(NIL);
    row(
        &mut rows,
        "member id nil",
        Field("member.member_id"),
        call!(pos, redeem, auth(r, &key)),
    );
    let mut r = redeem(w, &m, "1");
    r.member = member_ref(&id());
    row(
        &mut rows,
        "member unknown",
        St(Code::NotFound, "UNKNOWN_MEMBER"),
        call!(pos, redeem, auth(r, &key)),
    );
    let mut r = redeem(w, &m, "1");
    r.program_id = "program".into();
    row(
        &mut rows,
        "program id malformed",
        Field("program_id"),
        call!(pos, redeem, auth(r, &key)),
    );
    let mut r = redeem(w, &m, "1");
    r.program_id = NIL.into();
    row(
        &mut rows,
        "program id nil",
        Field("program_id"),
        call!(pos, redeem, auth(r, &key)),
    );
    let mut r = redeem(w, &m, "1");
    r.program_id = id();
    row(
        &mut rows,
        "program unknown (server-wide admin key)",
        St(Code::NotFound, "PROGRAM_NOT_FOUND"),
        call!(pos, redeem, auth(r, &admin)),
    );

    // --- Keys: missing, malformed, forged, revoked, wrong role, wrong programme.
    let no_key = tonic::Request::new(redeem(w, &m, "1"));
    row(
        &mut rows,
        "no authorization header",
        St(Code::Unauthenticated, "UNAUTHENTICATED"),
        call!(pos, redeem, no_key),
    );
    row(
        &mut rows,
        "garbage bearer token",
        St(Code::Unauthenticated, "UNAUTHENTICATED"),
        call!(pos, redeem, auth(redeem(w, &m, "1"), "garbage")),
    );
    let forged = format!(
        "pk_{}_{}",
        w.merchant_key_id.replace('-', ""),
        "A".repeat(43)
    );
    row(
        &mut rows,
        "a real key id with a forged secret",
        St(Code::Unauthenticated, "UNAUTHENTICATED"),
        call!(pos, redeem, auth(redeem(w, &m, "1"), &forged)),
    );
    row(
        &mut rows,
        "an 8 KiB bearer token",
        St(Code::Unauthenticated, "UNAUTHENTICATED"),
        call!(pos, redeem, auth(redeem(w, &m, "1"), &"k".repeat(8192))),
    );
    let (revoked, revoked_id) = reliability::key(
        &mut w.c,
        &admin,
        &w.program,
        pb::Role::Merchant,
        "",
        &w.merchant,
    )
    .await;
    w.c.admin
        .revoke_api_key(auth(
            pb::RevokeApiKeyRequest {
                api_key_id: revoked_id,
            },
            &admin,
        ))
        .await
        .unwrap();
    row(
        &mut rows,
        "revoked key",
        St(Code::Unauthenticated, "UNAUTHENTICATED"),
        call!(pos, redeem, auth(redeem(w, &m, "1"), &revoked)),
    );
    row(
        &mut rows,
        "auditor key redeeming",
        St(Code::PermissionDenied, "PERMISSION_DENIED"),
        call!(pos, redeem, auth(redeem(w, &m, "1"), &w.auditor)),
    );
    row(
        &mut rows,
        "recorder key redeeming",
        St(Code::PermissionDenied, "PERMISSION_DENIED"),
        call!(pos, redeem, auth(redeem(w, &m, "1"), &w.recorder)),
    );
    row(
        &mut rows,
        "merchant key creating an API key",
        St(Code::PermissionDenied, "PERMISSION_DENIED"),
        call!(
            adm,
            create_api_key,
            auth(
                pb::CreateApiKeyRequest {
                    program_id: w.program.clone(),
                    role: pb::Role::Admin as i32,
                    label: "escalate".into(),
                    ..Default::default()
                },
                &key
            )
        ),
    );
    let other = id();
    w.c.admin
        .create_program(auth(
            pb::CreateProgramRequest {
                request_id: id(),
                program_id: other.clone(),
                name: "Other".into(),
                unit_name: "points".into(),
                decimal_places: 2,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap();
    let mut r = redeem(w, &m, "1");
    r.program_id = other.clone();
    row(
        &mut rows,
        "merchant key used on another programme",
        St(Code::PermissionDenied, "PERMISSION_DENIED"),
        call!(pos, redeem, auth(r, &key)),
    );
    row(
        &mut rows,
        "recorder key listing another programme's entries",
        St(Code::PermissionDenied, "PERMISSION_DENIED"),
        call!(
            led,
            list_entries,
            auth(
                pb::ListEntriesRequest {
                    program_id: other.clone(),
                    ..Default::default()
                },
                &w.recorder
            )
        ),
    );

    // --- Replays: the same request id with a changed payload, or on another method.
    let original = redeem(w, &m, "1");
    w.c.pos.redeem(auth(original.clone(), &key)).await.unwrap();
    row(
        &mut rows,
        "replay with the same payload returns the original",
        Expect::Ok,
        call!(pos, redeem, auth(original.clone(), &key)),
    );
    let mut changed = original.clone();
    changed.amount = "2".into();
    row(
        &mut rows,
        "replay with a changed amount",
        St(Code::FailedPrecondition, "REQUEST_ID_REUSED"),
        call!(pos, redeem, auth(changed, &key)),
    );
    let mut changed = original.clone();
    changed.member = member_ref(&m2);
    row(
        &mut rows,
        "replay with a changed member",
        St(Code::FailedPrecondition, "REQUEST_ID_REUSED"),
        call!(pos, redeem, auth(changed, &key)),
    );
    let mut as_hold = hold_req(w, &m, "1", 60_000);
    as_hold.request_id = original.request_id.clone();
    row(
        &mut rows,
        "replay of a redemption's id as a hold",
        St(Code::FailedPrecondition, "REQUEST_ID_REUSED"),
        call!(pos, hold, auth(as_hold, &key)),
    );
    let mut amount_form = original.clone();
    amount_form.amount = "1.00".into();
    row(
        &mut rows,
        "replay writing the same amount as 1.00 is the same request",
        Expect::Ok,
        call!(pos, redeem, auth(amount_form, &key)),
    );

    // --- Holds, captures, releases, refunds on things that are not there or not open.
    let hold =
        w.c.pos
            .hold(auth(hold_req(w, &m, "5", 600_000), &key))
            .await
            .unwrap()
            .into_inner()
            .hold_id;
    row(
        &mut rows,
        "hold with ttl 0 (the programme's maximum, as documented)",
        Expect::Ok,
        call!(pos, hold, auth(hold_req(w, &m, "1", 0), &key)),
    );
    row(
        &mut rows,
        "hold with ttl one ms over the maximum",
        St(Code::InvalidArgument, "DURATION_OUT_OF_RANGE"),
        call!(pos, hold, auth(hold_req(w, &m, "1", 86_400_001), &key)),
    );
    row(
        &mut rows,
        "hold with ttl u64::MAX",
        St(Code::InvalidArgument, "DURATION_OUT_OF_RANGE"),
        call!(pos, hold, auth(hold_req(w, &m, "1", u64::MAX), &key)),
    );
    let capture = |hold_id: &str, amount: Option<&str>| pb::CaptureRequest {
        request_id: id(),
        program_id: w.program.clone(),
        hold_id: hold_id.into(),
        amount: amount.map(Into::into),
    };
    row(
        &mut rows,
        "capture a malformed hold id",
        Field("hold_id"),
        call!(pos, capture, auth(capture("hold-1", None), &key)),
    );
    row(
        &mut rows,
        "capture an unknown hold",
        St(Code::NotFound, "UNKNOWN_HOLD"),
        call!(pos, capture, auth(capture(&id(), None), &key)),
    );
    row(
        &mut rows,
        "capture more than the hold",
        St(Code::FailedPrecondition, "CAPTURE_OVER_HOLD"),
        call!(pos, capture, auth(capture(&hold, Some("5.01")), &key)),
    );
    row(
        &mut rows,
        "capture a negative amount",
        Field("amount"),
        call!(pos, capture, auth(capture(&hold, Some("-5")), &key)),
    );
    let released =
        w.c.pos
            .hold(auth(hold_req(w, &m, "1", 600_000), &key))
            .await
            .unwrap()
            .into_inner()
            .hold_id;
    w.c.pos
        .release(auth(
            pb::ReleaseRequest {
                request_id: id(),
                program_id: w.program.clone(),
                hold_id: released.clone(),
            },
            &key,
        ))
        .await
        .unwrap();
    row(
        &mut rows,
        "release a hold already released",
        St(Code::FailedPrecondition, "HOLD_NOT_OPEN"),
        call!(
            pos,
            release,
            auth(
                pb::ReleaseRequest {
                    request_id: id(),
                    program_id: w.program.clone(),
                    hold_id: released,
                },
                &key
            )
        ),
    );
    let redeemed =
        w.c.pos
            .redeem(auth(redeem(w, &m, "3"), &key))
            .await
            .unwrap()
            .into_inner()
            .receipt
            .unwrap()
            .entry_id;
    let refund = |entry: &str, amount: &str| pb::RefundRequest {
        request_id: id(),
        program_id: w.program.clone(),
        entry_id: entry.into(),
        amount: amount.into(),
    };
    row(
        &mut rows,
        "refund an unknown entry",
        St(Code::NotFound, "UNKNOWN_ENTRY"),
        call!(pos, refund, auth(refund(&id(), "1"), &key)),
    );
    row(
        &mut rows,
        "refund more than was taken",
        St(Code::FailedPrecondition, "REFUND_OVER_TAKEN"),
        call!(pos, refund, auth(refund(&redeemed, "3.01"), &key)),
    );
    row(
        &mut rows,
        "refund zero",
        Field("amount"),
        call!(pos, refund, auth(refund(&redeemed, "0"), &key)),
    );

    // --- Timestamps far in the past or future, and malformed ones.
    let ts = |seconds: i64, nanos: i32| Some(prost_types::Timestamp { seconds, nanos });
    row(
        &mut rows,
        "service starting ten years ahead",
        St(Code::InvalidArgument, "TIME_OUT_OF_RANGE"),
        call!(
            rec,
            record_service,
            auth(
                record_req(w, Some(now_pb(10 * 365 * 86_400_000)), 60),
                &admin
            )
        ),
    );
    row(
        &mut rows,
        "service starting two years ago",
        St(Code::InvalidArgument, "TIME_OUT_OF_RANGE"),
        call!(
            rec,
            record_service,
            auth(
                record_req(w, Some(now_pb(-2 * 366 * 86_400_000)), 60),
                &admin
            )
        ),
    );
    row(
        &mut rows,
        "service starting before 1970",
        Field("records[0].started_at"),
        call!(
            rec,
            record_service,
            auth(record_req(w, ts(-86_400, 0), 60), &admin)
        ),
    );
    row(
        &mut rows,
        "service starting in the year 292277026596",
        Field("records[0].started_at"),
        call!(
            rec,
            record_service,
            auth(record_req(w, ts(i64::MAX, 0), 60), &admin)
        ),
    );
    row(
        &mut rows,
        "service start with 2e9 nanoseconds",
        Field("records[0].started_at"),
        call!(
            rec,
            record_service,
            auth(record_req(w, ts(1_790_000_000, 2_000_000_000), 60), &admin)
        ),
    );
    row(
        &mut rows,
        "service start missing",
        Field("records[0].started_at"),
        call!(rec, record_service, auth(record_req(w, None, 60), &admin)),
    );
    row(
        &mut rows,
        "service of zero minutes",
        Field("records[0].minutes"),
        call!(
            rec,
            record_service,
            auth(record_req(w, Some(now_pb(-3_600_000)), 0), &admin)
        ),
    );
    row(
        &mut rows,
        "service of u32::MAX minutes",
        St(Code::InvalidArgument, "DURATION_OUT_OF_RANGE"),
        call!(
            rec,
            record_service,
            auth(record_req(w, Some(now_pb(-3_600_000)), u32::MAX), &admin)
        ),
    );

    // --- Batches: empty, oversized, duplicated.
    let mut empty = record_req(w, None, 60);
    empty.records.clear();
    row(
        &mut rows,
        "record an empty batch",
        Field("records"),
        call!(rec, record_service, auth(empty, &admin)),
    );
    let mut big = record_req(w, Some(now_pb(-3_600_000)), 60);
    big.records = vec![big.records[0].clone(); 10_001];
    row(
        &mut rows,
        "record 10,001 services at once",
        St(Code::InvalidArgument, "BATCH_TOO_LARGE"),
        call!(rec, record_service, auth(big, &admin)),
    );
    let same = id();
    row(
        &mut rows,
        "approve the same record twice in one batch",
        St(Code::InvalidArgument, "DUPLICATE_IN_BATCH"),
        call!(
            rec,
            approve_service,
            auth(
                pb::ApproveServiceRequest {
                    request_id: id(),
                    program_id: w.program.clone(),
                    record_ids: vec![same.clone(), same],
                },
                &admin
            )
        ),
    );
    row(
        &mut rows,
        "approve with one malformed record id",
        Field("record_ids[1]"),
        call!(
            rec,
            approve_service,
            auth(
                pb::ApproveServiceRequest {
                    request_id: id(),
                    program_id: w.program.clone(),
                    record_ids: vec![id(), "x".into()],
                },
                &admin
            )
        ),
    );
    let op = pb::SubmitOperation {
        operation: Some(pb::submit_operation::Operation::Redeem(redeem(w, &m, "1"))),
    };
    row(
        &mut rows,
        "submit one operation more than MAX_SUBMIT",
        Field("operations"),
        call!(
            pos,
            submit,
            auth(
                pb::SubmitRequest {
                    request_id: id(),
                    program_id: w.program.clone(),
                    operations: vec![op.clone(); points_grpc::service::ops::MAX_SUBMIT + 1],
                },
                &key
            )
        ),
    );
    // An empty batch is a harmless no-op: it writes nothing and answers no results.
    row(
        &mut rows,
        "submit no operations",
        Expect::Ok,
        call!(
            pos,
            submit,
            auth(
                pb::SubmitRequest {
                    request_id: id(),
                    program_id: w.program.clone(),
                    operations: vec![],
                },
                &key
            )
        ),
    );
    row(
        &mut rows,
        "a 5 MiB message (over the 4 MiB decoding limit)",
        Transport(Code::OutOfRange),
        call!(
            adm,
            create_org_unit,
            auth(org_unit_req(w, &"x".repeat(5 << 20)), &admin)
        ),
    );

    // --- Names: huge, control characters, bidi, odd Unicode.
    for (label, name, expect) in [
        ("empty", String::new(), Field("name")),
        (
            "201 characters",
            "名".repeat(201),
            St(Code::InvalidArgument, "INVALID_TEXT"),
        ),
        (
            "1 MiB",
            "x".repeat(1 << 20),
            St(Code::InvalidArgument, "INVALID_TEXT"),
        ),
        (
            "a BEL control character",
            "Estate\u{7}".into(),
            St(Code::InvalidArgument, "INVALID_TEXT"),
        ),
        (
            "a NUL",
            "Estate\u{0}1".into(),
            St(Code::InvalidArgument, "INVALID_TEXT"),
        ),
        (
            "a newline",
            "Estate\n1".into(),
            St(Code::InvalidArgument, "INVALID_TEXT"),
        ),
        (
            "a right-to-left override",
            "Estate \u{202E}1".into(),
            St(Code::InvalidArgument, "INVALID_TEXT"),
        ),
        (
            "only spaces",
            "   ".into(),
            St(Code::InvalidArgument, "INVALID_TEXT"),
        ),
        (
            "300 combining accents",
            "e\u{301}".repeat(150),
            St(Code::InvalidArgument, "INVALID_TEXT"),
        ),
        ("Chinese and an emoji", "幸福小区 🌸".into(), Expect::Ok),
        // Zero-width characters are refused on purpose: they hide text in published records.
        (
            "a zero-width joiner",
            "Team 👩\u{200D}👧".into(),
            St(Code::InvalidArgument, "INVALID_TEXT"),
        ),
        (
            "a line separator U+2028",
            "Estate\u{2028}1".into(),
            St(Code::InvalidArgument, "INVALID_TEXT"),
        ),
        (
            "a paragraph separator U+2029",
            "Estate\u{2029}1".into(),
            St(Code::InvalidArgument, "INVALID_TEXT"),
        ),
        (
            "an Arabic letter mark U+061C",
            "Estate\u{61C}1".into(),
            St(Code::InvalidArgument, "INVALID_TEXT"),
        ),
        (
            "an invisible word joiner U+2060",
            "Es\u{2060}tate".into(),
            St(Code::InvalidArgument, "INVALID_TEXT"),
        ),
        ("Latin with accents", "Résidence Élysée".into(), Expect::Ok),
    ] {
        row(
            &mut rows,
            format!("org unit name {label}"),
            expect,
            call!(adm, create_org_unit, auth(org_unit_req(w, &name), &admin)),
        );
    }
    let mut unit = org_unit_req(w, "Estate");
    unit.level = 99;
    row(
        &mut rows,
        "org unit level unknown enum value",
        Field("level"),
        call!(adm, create_org_unit, auth(unit, &admin)),
    );

    // --- Paging: sizes and tokens out of range or forged.
    let first =
        w.c.ledger
            .list_entries(auth(list_req(w, 2, ""), &admin))
            .await
            .unwrap()
            .into_inner();
    assert!(!first.next_page_token.is_empty());
    for (label, size) in [
        ("-1", -1),
        ("1001", 1001),
        ("i32::MAX", i32::MAX),
        ("i32::MIN", i32::MIN),
    ] {
        row(
            &mut rows,
            format!("list entries page size {label}"),
            Field("page_size"),
            call!(led, list_entries, auth(list_req(w, size, ""), &admin)),
        );
    }
    use base64::Engine as _;
    let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([7u8; 24]);
    let mut flipped = first.next_page_token.clone().into_bytes();
    flipped[0] = if flipped[0] == b'A' { b'B' } else { b'A' };
    for (label, token) in [
        ("not base64", "!!!".to_string()),
        ("forged", forged),
        ("one character changed", String::from_utf8(flipped).unwrap()),
        ("of 100 KiB", "A".repeat(100 << 10)),
    ] {
        row(
            &mut rows,
            format!("list entries page token {label}"),
            Field("page_token"),
            call!(led, list_entries, auth(list_req(w, 2, &token), &admin)),
        );
    }
    let mut other_filter = list_req(w, 2, &first.next_page_token);
    other_filter.member_id = m.clone();
    row(
        &mut rows,
        "list entries with a token of other filters",
        Field("page_token"),
        call!(led, list_entries, auth(other_filter, &admin)),
    );
    row(
        &mut rows,
        "list entries with its own next token",
        Expect::Ok,
        call!(
            led,
            list_entries,
            auth(list_req(w, 2, &first.next_page_token), &admin)
        ),
    );

    // --- Transfers.
    let transfer = |from: &str, to: &str, amount: &str| pb::TransferRequest {
        request_id: id(),
        program_id: w.program.clone(),
        from_member_id: from.into(),
        to_member_id: to.into(),
        amount: amount.into(),
    };
    row(
        &mut rows,
        "transfer to oneself",
        St(Code::InvalidArgument, "SAME_ACCOUNT"),
        call!(rec, transfer, auth(transfer(&m, &m, "1"), &admin)),
    );
    row(
        &mut rows,
        "transfer an overflowing amount",
        Field("amount"),
        call!(
            rec,
            transfer,
            auth(transfer(&m, &m2, "92233720368547758.08"), &admin)
        ),
    );
    row(
        &mut rows,
        "transfer more than the balance",
        St(Code::FailedPrecondition, "INSUFFICIENT_POINTS"),
        call!(rec, transfer, auth(transfer(&m, &m2, "100000"), &admin)),
    );
    row(
        &mut rows,
        "balance of a 1 MiB card code",
        St(Code::NotFound, "UNKNOWN_MEMBER"),
        call!(
            pos,
            get_balance,
            auth(
                pb::GetBalanceRequest {
                    program_id: w.program.clone(),
                    member: Some(pb::MemberRef {
                        member: Some(pb::member_ref::Member::CardCode("c".repeat(1 << 20))),
                    }),
                },
                &key
            )
        ),
    );
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_of_hostile_requests_gets_exact_errors_and_writes_nothing() {
    let server = Server::start();
    let admin = server.admin_key();
    let mut w = world(Clients::new(server.channel().await), &admin, 2, "1000").await;
    let before = verify_chain(&mut w.c.ledger, &admin, &w.program)
        .await
        .entries_checked;
    let rows = table(&mut w).await;
    let n = rows.len();
    assert!(n >= 60, "only {n} rows");
    let mut failures = Vec::new();
    let mut ok_rows = 0;
    for Row { name, expect, call } in rows {
        let got = call.await;
        let problem = match (expect, &got) {
            (Expect::Ok, Ok(())) => {
                ok_rows += 1;
                None
            }
            (Field(field), Err(s)) => {
                let fields: Vec<String> = s
                    .get_details_bad_request()
                    .map(|b| b.field_violations.into_iter().map(|v| v.field).collect())
                    .unwrap_or_default();
                (s.code() != Code::InvalidArgument
                    || reason(s) != "INVALID_ARGUMENT"
                    || !fields.iter().any(|f| f == field))
                .then(|| {
                    format!(
                        "got {:?} {} fields {fields:?}: {}",
                        s.code(),
                        reason(s),
                        s.message()
                    )
                })
            }
            (St(code, why), Err(s)) => (s.code() != code || reason(s) != why)
                .then(|| format!("got {:?} {}: {}", s.code(), reason(s), s.message())),
            (Transport(code), Err(s)) => (s.code() != code || !reason(s).is_empty())
                .then(|| format!("got {:?} {}: {}", s.code(), reason(s), s.message())),
            (_, Ok(())) => Some("succeeded".into()),
            (Expect::Ok, Err(s)) => {
                Some(format!("got {:?} {}: {}", s.code(), reason(s), s.message()))
            }
        };
        if let Some(problem) = problem {
            failures.push(format!("{name}: expected {expect:?}, {problem}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} rows failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!("{n} hostile rows, each with its exact status ({ok_rows} expected to succeed)");

    // Nothing but the rows meant to succeed wrote: the journal grew by exactly the entries
    // made while building the table and those rows, and it verifies and audits clean.
    let chain = verify_chain(&mut w.c.ledger, &admin, &w.program).await;
    assert!(chain.ok);
    // Set-up inside the table: a merchant, one redemption, two holds, one release, one
    // redemption; rows that succeed: two replays and an empty Submit (no entry), one hold,
    // two org units.
    assert_eq!(chain.entries_checked, before + 6 + 1 + 2);
    let audit = audit_report(&mut w.c.ledger, &admin, &w.program).await;
    assert!(audit.ok, "{:?}", audit.breaches);
}

/// A `WatchEntries` stream that is never read must not hold writers up: the server keeps a
/// bounded buffer per stream (and the HTTP/2 window), then stops reading the broadcast for
/// that stream; when the client finally reads, it catches up from the store without a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_never_read_does_not_block_writers() {
    let server = Server::start();
    let admin = server.admin_key();
    let mut w = world(Clients::new(server.channel().await), &admin, 1, "100000").await;
    let m = w.members[0].clone();
    // A separate connection for the stalled watcher, so its HTTP/2 window is its own.
    let mut watcher = Clients::new(server.channel().await);
    let mut stalled = watcher
        .ledger
        .watch_entries(auth(
            pb::WatchEntriesRequest {
                program_id: w.program.clone(),
                from_sequence: 0,
                ..Default::default()
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    let rss_before = rss_kib(&server);
    // 10,000 entries: far beyond the stream's buffer and the HTTP/2 window.
    let started = Instant::now();
    let mut pos = w.c.pos.clone();
    for _ in 0..10 {
        let operations = (0..1000)
            .map(|_| pb::SubmitOperation {
                operation: Some(pb::submit_operation::Operation::Redeem(redeem(
                    &w, &m, "0.01",
                ))),
            })
            .collect();
        let response = tokio::time::timeout(
            Duration::from_secs(60),
            pos.submit(auth(
                pb::SubmitRequest {
                    request_id: id(),
                    program_id: w.program.clone(),
                    operations,
                },
                &w.merchant_key,
            )),
        )
        .await
        .expect("a writer was held up by the unread stream")
        .unwrap()
        .into_inner();
        assert!(response
            .results
            .iter()
            .all(|r| matches!(r.result, Some(pb::submit_result::Result::Redeem(_)))));
    }
    let rss_after = rss_kib(&server);
    eprintln!(
        "10,000 entries written in {:?} with an unread stream open; server RSS {rss_before} KiB -> {rss_after} KiB",
        started.elapsed()
    );
    // Now read: every entry arrives, in order, with no gap.
    let total = verify_chain(&mut w.c.ledger, &admin, &w.program)
        .await
        .entries_checked;
    let mut expected = 0u64;
    while expected < total {
        let entry = tokio::time::timeout(Duration::from_secs(30), stalled.message())
            .await
            .expect("the stream resumes")
            .unwrap()
            .expect("the stream stays open");
        assert_eq!(entry.sequence, expected, "no gap and no repeat");
        expected += 1;
    }
}

/// The server's resident set in KiB (0 where /proc is not available).
fn rss_kib(server: &Server) -> u64 {
    server
        .pid()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
