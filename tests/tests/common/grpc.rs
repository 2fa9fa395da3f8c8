//! Set-up over gRPC shared by the end-to-end tests: timestamps, member references, API
//! keys, programmes, org units, merchants and members, created through the real server.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use super::{auth, id, Clients};
use pb::ledger_client::LedgerClient;
use pb::recording_client::RecordingClient;
use points_grpc::pb;
use tonic::transport::Channel;

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A timestamp at `ms` milliseconds since the Unix epoch.
pub fn ts(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// A timestamp `offset_ms` from now.
pub fn now_pb(offset_ms: i64) -> prost_types::Timestamp {
    ts(now_ms() + offset_ms)
}

/// A member reference by id.
pub fn member_ref(member: &str) -> Option<pb::MemberRef> {
    Some(pb::MemberRef {
        member: Some(pb::member_ref::Member::MemberId(member.into())),
    })
}

/// Creates an API key with `admin`; returns its secret and id.
pub async fn key(
    c: &mut Clients,
    admin: &str,
    program: &str,
    role: pb::Role,
    org_unit: &str,
    merchant: &str,
) -> (String, String) {
    let r = c
        .admin
        .create_api_key(auth(
            pb::CreateApiKeyRequest {
                program_id: program.into(),
                role: role as i32,
                org_unit_id: org_unit.into(),
                merchant_id: merchant.into(),
                label: format!("{role:?} key"),
            },
            admin,
        ))
        .await
        .unwrap()
        .into_inner();
    (r.secret, r.api_key.unwrap().api_key_id)
}

/// Creates a programme named `name` with two decimal places and no other policy; returns
/// its id.
pub async fn program(c: &mut Clients, admin: &str, name: &str) -> String {
    let program = id();
    c.admin
        .create_program(auth(
            pb::CreateProgramRequest {
                request_id: id(),
                program_id: program.clone(),
                name: name.into(),
                unit_name: "points".into(),
                decimal_places: 2,
                ..Default::default()
            },
            admin,
        ))
        .await
        .unwrap();
    program
}

/// Creates an org unit under `parent` ("" for a root) with `key`; returns its id.
pub async fn org_unit(
    c: &mut Clients,
    key: &str,
    program: &str,
    parent: &str,
    name: &str,
    level: pb::OrgUnitLevel,
) -> Result<String, tonic::Status> {
    let unit = id();
    c.admin
        .create_org_unit(auth(
            pb::CreateOrgUnitRequest {
                request_id: id(),
                program_id: program.into(),
                org_unit_id: unit.clone(),
                parent_id: parent.into(),
                name: name.into(),
                level: level as i32,
            },
            key,
        ))
        .await?;
    Ok(unit)
}

/// Creates a root community named `name` with `admin`; returns its id.
pub async fn community(c: &mut Clients, admin: &str, program: &str, name: &str) -> String {
    org_unit(c, admin, program, "", name, pb::OrgUnitLevel::Community)
        .await
        .unwrap()
}

/// Registers a partner merchant in `unit` with `admin`; returns its id.
pub async fn merchant(
    c: &mut Clients,
    admin: &str,
    program: &str,
    unit: &str,
    name: &str,
) -> String {
    let m = id();
    c.admin
        .register_merchant(auth(
            pb::RegisterMerchantRequest {
                request_id: id(),
                program_id: program.into(),
                merchant_id: m.clone(),
                org_unit_id: unit.into(),
                name: name.into(),
                kind: pb::MerchantKind::Partner as i32,
            },
            admin,
        ))
        .await
        .unwrap();
    m
}

/// Enrols a resident in `home` with `key` (card "" for none); returns the member id.
pub async fn enrol(
    c: &mut Clients,
    key: &str,
    program: &str,
    home: &str,
    card: &str,
) -> Result<String, tonic::Status> {
    let member = id();
    c.rec
        .enrol_member(auth(
            pb::EnrolMemberRequest {
                request_id: id(),
                program_id: program.into(),
                member_id: member.clone(),
                org_unit_id: home.into(),
                kind: pb::MemberKind::Resident as i32,
                dual_registration: false,
                card_code: card.into(),
            },
            key,
        ))
        .await?;
    Ok(member)
}

/// An activity definition with fresh ids: category "patrol", coefficient 1, credit time,
/// no limits (callers override fields with struct update syntax).
pub fn patrol(
    program: &str,
    unit: &str,
    name: &str,
    rule: pb::activity_rule::Rule,
) -> pb::DefineActivityRequest {
    pb::DefineActivityRequest {
        request_id: id(),
        program_id: program.into(),
        activity_id: id(),
        org_unit_id: unit.into(),
        name: name.into(),
        category: "patrol".into(),
        rule: Some(pb::ActivityRule { rule: Some(rule) }),
        coefficient: "1".into(),
        max_minutes_per_occasion: None,
        daily_points_cap: None,
        time_kind: pb::TimeKind::Credit as i32,
    }
}

/// Defines `request` with `key`; returns the activity id.
pub async fn activity(
    rec: &mut RecordingClient<Channel>,
    key: &str,
    request: pb::DefineActivityRequest,
) -> String {
    let activity = request.activity_id.clone();
    rec.define_activity(auth(request, key)).await.unwrap();
    activity
}

/// Records `records` with `key` and approves all of them with the same key.
pub async fn record_and_approve(
    rec: &mut RecordingClient<Channel>,
    key: &str,
    program: &str,
    records: Vec<pb::ServiceRecordInput>,
) {
    let recorded = rec
        .record_service(auth(
            pb::RecordServiceRequest {
                request_id: id(),
                program_id: program.into(),
                records,
            },
            key,
        ))
        .await
        .unwrap()
        .into_inner();
    rec.approve_service(auth(
        pb::ApproveServiceRequest {
            request_id: id(),
            program_id: program.into(),
            record_ids: recorded.records.into_iter().map(|r| r.record_id).collect(),
        },
        key,
    ))
    .await
    .unwrap();
}

/// The chain verification of `program`, asked with `key`.
pub async fn verify_chain(
    ledger: &mut LedgerClient<Channel>,
    key: &str,
    program: &str,
) -> pb::VerifyChainResponse {
    ledger
        .verify_chain(auth(
            pb::VerifyChainRequest {
                program_id: program.into(),
            },
            key,
        ))
        .await
        .unwrap()
        .into_inner()
}

/// The audit of `program`, asked with `key`.
pub async fn audit_report(
    ledger: &mut LedgerClient<Channel>,
    key: &str,
    program: &str,
) -> pb::AuditResponse {
    ledger
        .audit(auth(
            pb::AuditRequest {
                program_id: program.into(),
            },
            key,
        ))
        .await
        .unwrap()
        .into_inner()
}
