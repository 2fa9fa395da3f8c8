//! Set-up shared by the reliability tests (issue 9: `hostile.rs`, `overload.rs`,
//! `bank_checker.rs`): a programme with one community, one merchant, keys of every role,
//! and members who each earned points, created over gRPC through the real server.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code, unused_imports)]

use crate::common::grpc::{
    activity, community, enrol, merchant, patrol, program, record_and_approve,
};
pub use crate::common::grpc::{key, member_ref, now_pb};
use crate::common::{auth, id, Clients};
use pb::activity_rule::Rule;
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
    let program = program(&mut c, admin, "Reliability").await;
    let community = community(&mut c, admin, &program, "Community").await;
    let merchant = merchant(&mut c, admin, &program, &community, "Shop").await;
    let activity = activity(
        &mut c.rec,
        admin,
        patrol(
            &program,
            &community,
            "Patrol",
            Rule::PerOccasion(points.into()),
        ),
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..members {
        ids.push(
            enrol(&mut c, admin, &program, &community, "")
                .await
                .unwrap(),
        );
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
        record_and_approve(&mut c.rec, admin, &program, records).await;
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
