//! Helpers shared by the storage tests: ids, requests, and a seeded programme.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use points_core::{
    ActivityInput, Actor, ActorId, Applied, Command, Event, MemberId, MemberKind, MerchantId,
    MerchantKind, OrgLevel, OrgUnitId, ProgramId, ProgramSpec, Request, RequestId, RuleInput,
    Scale, ServiceInput, TimeKind, Timestamp,
};
use points_grpc::engine::Engine;

/// The virtual clock's start: 2026-09-21.
pub const T0: i64 = 1_790_000_000_000;

/// A fresh random UUID.
pub fn uid() -> uuid::Uuid {
    uuid::Uuid::new_v4()
}

/// A request with a fresh request id.
pub fn request(actor: Actor, command: Command) -> Request {
    Request {
        request_id: RequestId::new(uid()).unwrap(),
        actor,
        command,
    }
}

/// A programme with one community, one merchant and members who each earned
/// `points_per_member` through one approved service record.
pub struct Seeded {
    pub program: ProgramId,
    pub admin: Actor,
    pub merchant: MerchantId,
    pub members: Vec<MemberId>,
}

/// Creates and seeds a programme through the engine.
pub async fn seed(engine: &Engine, scale: u8, members: usize, points_per_member: &str) -> Seeded {
    let program = ProgramId::new(uid()).unwrap();
    let admin = Actor::Admin {
        id: ActorId::new(uid()).unwrap(),
    };
    let merchant = MerchantId::new(uid()).unwrap();
    let community = OrgUnitId::new(uid()).unwrap();
    let activity = points_core::ActivityId::new(uid()).unwrap();
    let members: Vec<MemberId> = (0..members)
        .map(|_| MemberId::new(uid()).unwrap())
        .collect();
    let spec = ProgramSpec::new(program, "Test", "points", Scale::new(scale).unwrap());
    engine
        .create_program(
            spec,
            RequestId::new(uid()).unwrap(),
            admin,
            Timestamp::from_millis(T0),
        )
        .await
        .unwrap();
    let mut setup = vec![
        request(
            admin,
            Command::CreateOrgUnit {
                id: community,
                parent: None,
                name: "C".into(),
                level: OrgLevel::Community,
            },
        ),
        request(
            admin,
            Command::RegisterMerchant {
                id: merchant,
                org_unit: community,
                name: "M".into(),
                kind: MerchantKind::Partner,
            },
        ),
        request(
            admin,
            Command::DefineActivity(ActivityInput {
                id: activity,
                org_unit: community,
                name: "A".into(),
                category: "a".into(),
                rule: RuleInput::PerOccasion(points_per_member.parse().unwrap()),
                coefficient: "1".parse().unwrap(),
                max_minutes_per_occasion: None,
                daily_points_cap: None,
                time_kind: TimeKind::Credit,
            }),
        ),
    ];
    for &m in &members {
        setup.push(request(
            admin,
            Command::EnrolMember {
                id: m,
                home: community,
                kind: MemberKind::Resident,
                dual_registration: false,
                card_code: None,
            },
        ));
    }
    let now = Timestamp::from_millis(T0 + 1000);
    for r in engine.submit_many_at(program, setup, now).await {
        r.unwrap();
    }
    let records = members
        .iter()
        .map(|&member| ServiceInput {
            member,
            activity,
            org_unit: community,
            started_at: Timestamp::from_millis(T0 - 3_600_000),
            minutes: 60,
        })
        .collect();
    let Applied::New(entry) = engine
        .submit_at(
            program,
            request(admin, Command::RecordService { records }),
            now,
        )
        .await
        .unwrap()
    else {
        panic!()
    };
    let Event::ServiceRecorded { records } = entry.event() else {
        panic!()
    };
    let ids = records.iter().map(|r| r.id).collect();
    engine
        .submit_at(
            program,
            request(admin, Command::ApproveService { records: ids }),
            now,
        )
        .await
        .unwrap();
    Seeded {
        program,
        admin,
        merchant,
        members,
    }
}
