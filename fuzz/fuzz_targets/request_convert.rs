//! Every write request message, decoded from arbitrary bytes (as a `SubmitOperation`, whose
//! oneof carries each of the 18 write requests) and converted into a core request by the
//! server's one conversion path (`service::ops::prepare`, which uses `convert.rs`), for an
//! admin, a merchant and a recorder key. What converts is then decided by the ledger on a
//! copy (nothing is stored). Neither step may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use points_core::{
    Actor, ActorId, Command, MemberId, MemberKind, MerchantId, MerchantKind, OrgLevel, OrgUnitId,
    ProgramId, ProgramSpec, Request, RequestId, Scale, Timestamp,
};
use points_grpc::auth::{Keys, Principal};
use points_grpc::engine::{ApiRole, Engine, EngineOptions, StoreConfig};
use points_grpc::pb;
use points_grpc::service::ops::prepare;
use points_grpc::service::Ctx;
use prost::Message;
use std::sync::OnceLock;

const T0: i64 = 1_790_000_000_000;

struct World {
    runtime: tokio::runtime::Runtime,
    ctx: Ctx,
    program: ProgramId,
    merchant: MerchantId,
    community: OrgUnitId,
    _shutdown: tokio::sync::watch::Sender<bool>,
}

fn uid() -> uuid::Uuid {
    uuid::Uuid::new_v4()
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let program = ProgramId::new(uid()).unwrap();
        let merchant = MerchantId::new(uid()).unwrap();
        let community = OrgUnitId::new(uid()).unwrap();
        let (ctx, shutdown) = runtime.block_on(async {
            let engine = Engine::open(StoreConfig::Memory, EngineOptions::default())
                .await
                .unwrap();
            let admin = Actor::Admin {
                id: ActorId::new(uid()).unwrap(),
            };
            let spec = ProgramSpec::new(program, "Fuzz", "points", Scale::new(2).unwrap());
            let at = Timestamp::from_millis(T0);
            engine
                .create_program(spec, RequestId::new(uid()).unwrap(), admin, at)
                .await
                .unwrap();
            let request = |command| Request {
                request_id: RequestId::new(uid()).unwrap(),
                actor: admin,
                command,
            };
            let setup = vec![
                request(Command::CreateOrgUnit {
                    id: community,
                    parent: None,
                    name: "C".into(),
                    level: OrgLevel::Community,
                }),
                request(Command::RegisterMerchant {
                    id: merchant,
                    org_unit: community,
                    name: "M".into(),
                    kind: MerchantKind::Partner,
                }),
                request(Command::EnrolMember {
                    id: MemberId::new(uid()).unwrap(),
                    home: community,
                    kind: MemberKind::Resident,
                    dual_registration: false,
                    card_code: Some("CARD-1".into()),
                }),
            ];
            for r in engine.submit_many_at(program, setup, at).await {
                r.unwrap();
            }
            let keys = Keys::load(engine.clone()).await.unwrap();
            let (tx, rx) = tokio::sync::watch::channel(false);
            (Ctx::new(engine, keys, rx), tx)
        });
        World {
            runtime,
            ctx,
            program,
            merchant,
            community,
            _shutdown: shutdown,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&role, bytes)) = data.split_first() else {
        return;
    };
    let Ok(message) = pb::SubmitOperation::decode(bytes) else {
        return;
    };
    let Some(op) = message.operation else {
        return;
    };
    let w = world();
    let (role, org_unit, merchant) = match role % 3 {
        0 => (ApiRole::Admin, None, None),
        1 => (ApiRole::Merchant, None, Some(w.merchant)),
        _ => (ApiRole::Recorder, Some(w.community), None),
    };
    let principal = Principal {
        key_id: uid(),
        role,
        program: Some(w.program),
        org_unit,
        merchant,
    };
    let _entered = w.runtime.enter();
    if let Ok(prepared) = prepare(&w.ctx, &principal, Some(w.program), &op) {
        let _ = w.ctx.engine.read(w.program, |ledger| {
            let mut copy = ledger.clone();
            copy.apply(&prepared.request, Timestamp::from_millis(T0 + 60_000))
                .map(|_| ())
        });
    }
});
