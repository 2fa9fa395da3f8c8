//! Set-up shared by the reliability tests (issue 9: `hostile.rs`, `overload.rs`,
//! `bank_checker.rs`): a programme with one community, one merchant, keys of every role,
//! and members who each earned points, created over gRPC through the real server.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unused_imports)]

pub use crate::common::grpc::{key, member_ref, now_pb};
use crate::common::{auth, id, Clients};
use points_grpc::pb;

/// What [`world`] created.
#[derive(Clone)]
pub struct World {
    pub c: Clients,
    pub admin: String,
    pub program: String,
    pub community: String,
    pub merchant: String,
    pub merchant_key: String,
    pub merchant_key_id: String,
    pub recorder: String,
    pub auditor: String,
    pub activity: String,
    pub members: Vec<String>,
}

/// A programme (two decimal places) whose `members` members each hold `points` points.
pub async fn world(c: Clients, admin: &str, members: usize, points: &str) -> World {
    let mut c = c;
    let program = id();
    c.admin
        .create_program(auth(
            pb::CreateProgramRequest {
                request_id: id(),
                program_id: program.clone(),
                name: "Reliability".into(),
                unit_name: "points".into(),
                decimal_places: 2,
                ..Default::default()
            },
            admin,
        ))
        .await
        .unwrap();
    let community = id();
    c.admin
        .create_org_unit(auth(
            pb::CreateOrgUnitRequest {
                request_id: id(),
                program_id: program.clone(),
                org_unit_id: community.clone(),
                parent_id: String::new(),
                name: "Community".into(),
                level: pb::OrgUnitLevel::Community as i32,
            },
            admin,
        ))
        .await
        .unwrap();
    let merchant = id();
    c.admin
        .register_merchant(auth(
            pb::RegisterMerchantRequest {
                request_id: id(),
                program_id: program.clone(),
                merchant_id: merchant.clone(),
                org_unit_id: community.clone(),
                name: "Shop".into(),
                kind: pb::MerchantKind::Partner as i32,
            },
            admin,
        ))
        .await
        .unwrap();
    let activity = id();
    c.rec
        .define_activity(auth(
            pb::DefineActivityRequest {
                request_id: id(),
                program_id: program.clone(),
                activity_id: activity.clone(),
                org_unit_id: community.clone(),
                name: "Patrol".into(),
                category: "patrol".into(),
                rule: Some(pb::ActivityRule {
                    rule: Some(pb::activity_rule::Rule::PerOccasion(points.into())),
                }),
                coefficient: "1".into(),
                max_minutes_per_occasion: None,
                daily_points_cap: None,
                time_kind: pb::TimeKind::Credit as i32,
            },
            admin,
        ))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..members {
        let member = id();
        c.rec
            .enrol_member(auth(
                pb::EnrolMemberRequest {
                    request_id: id(),
                    program_id: program.clone(),
                    member_id: member.clone(),
                    org_unit_id: community.clone(),
                    kind: pb::MemberKind::Resident as i32,
                    dual_registration: false,
                    card_code: String::new(),
                },
                admin,
            ))
            .await
            .unwrap();
        ids.push(member);
    }
    if members > 0 {
        let records = ids
            .iter()
            .map(|m| pb::ServiceRecordInput {
                member_id: m.clone(),
                activity_id: activity.clone(),
                org_unit_id: community.clone(),
                started_at: Some(now_pb(-3 * 3_600_000)),
                minutes: 60,
            })
            .collect();
        let recorded = c
            .rec
            .record_service(auth(
                pb::RecordServiceRequest {
                    request_id: id(),
                    program_id: program.clone(),
                    records,
                },
                admin,
            ))
            .await
            .unwrap()
            .into_inner();
        c.rec
            .approve_service(auth(
                pb::ApproveServiceRequest {
                    request_id: id(),
                    program_id: program.clone(),
                    record_ids: recorded.records.into_iter().map(|r| r.record_id).collect(),
                },
                admin,
            ))
            .await
            .unwrap();
    }
    let (merchant_key, merchant_key_id) =
        key(&mut c, admin, &program, pb::Role::Merchant, "", &merchant).await;
    let (recorder, _) = key(&mut c, admin, &program, pb::Role::Recorder, &community, "").await;
    let (auditor, _) = key(&mut c, admin, &program, pb::Role::Auditor, "", "").await;
    World {
        c,
        admin: admin.to_owned(),
        program,
        community,
        merchant,
        merchant_key,
        merchant_key_id,
        recorder,
        auditor,
        activity,
        members: ids,
    }
}

/// A redemption request.
pub fn redeem(w: &World, member: &str, amount: &str) -> pb::RedeemRequest {
    pb::RedeemRequest {
        request_id: id(),
        program_id: w.program.clone(),
        merchant_id: w.merchant.clone(),
        member: member_ref(member),
        amount: amount.into(),
    }
}
