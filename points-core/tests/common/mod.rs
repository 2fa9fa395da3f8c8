//! A fixture shared by the scenario tests: a small programme with a virtual clock.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use points_core::*;

/// 2026-09-21T05:46:40Z: the virtual clock starts here.
pub const T0: i64 = 1_790_000_000_000;
pub const MINUTE: i64 = 60_000;
pub const HOUR: i64 = 60 * MINUTE;
pub const DAY: i64 = 24 * HOUR;

pub fn amt(text: &str) -> Amount {
    text.parse().unwrap()
}

/// Points at the fixture's scale (two decimal places) from a decimal string.
pub fn pts(text: &str) -> Points {
    amt(text).to_points(Scale::new(2).unwrap()).unwrap()
}

pub fn program() -> ProgramId {
    ProgramId::from_u128(0x5f0e_2d4a).unwrap()
}
pub fn district() -> OrgUnitId {
    OrgUnitId::from_u128(1).unwrap()
}
pub fn comm_a() -> OrgUnitId {
    OrgUnitId::from_u128(2).unwrap()
}
pub fn comm_b() -> OrgUnitId {
    OrgUnitId::from_u128(3).unwrap()
}
/// Home A, card "A-1".
pub fn m_a() -> MemberId {
    MemberId::from_u128(10).unwrap()
}
/// Home A.
pub fn m_a2() -> MemberId {
    MemberId::from_u128(11).unwrap()
}
/// Home B, no dual registration.
pub fn m_b() -> MemberId {
    MemberId::from_u128(12).unwrap()
}
/// Home B, dual registration.
pub fn m_dual() -> MemberId {
    MemberId::from_u128(13).unwrap()
}
/// Partner cafe in community A.
pub fn cafe() -> MerchantId {
    MerchantId::from_u128(20).unwrap()
}
/// Community supermarket in community B.
pub fn shop() -> MerchantId {
    MerchantId::from_u128(21).unwrap()
}
/// Patrol in A: 10 points an hour, at most 240 minutes counted, credit time.
pub fn patrol() -> ActivityId {
    ActivityId::from_u128(30).unwrap()
}
/// Free clinic in the district: 5 points an occasion, coefficient 1.5, daily cap 10,
/// honour time.
pub fn clinic() -> ActivityId {
    ActivityId::from_u128(31).unwrap()
}
/// Love bank serving community A.
pub fn pool() -> PoolId {
    PoolId::from_u128(40).unwrap()
}

pub fn admin() -> Actor {
    Actor::Admin {
        id: ActorId::from_u128(1).unwrap(),
    }
}
pub fn rec_a() -> Actor {
    Actor::Recorder {
        id: ActorId::from_u128(2).unwrap(),
        org_unit: comm_a(),
    }
}
pub fn rec_b() -> Actor {
    Actor::Recorder {
        id: ActorId::from_u128(3).unwrap(),
        org_unit: comm_b(),
    }
}
pub fn rec_d() -> Actor {
    Actor::Recorder {
        id: ActorId::from_u128(4).unwrap(),
        org_unit: district(),
    }
}
pub fn till_cafe() -> Actor {
    Actor::Merchant {
        id: ActorId::from_u128(5).unwrap(),
        merchant: cafe(),
    }
}
pub fn till_shop() -> Actor {
    Actor::Merchant {
        id: ActorId::from_u128(6).unwrap(),
        merchant: shop(),
    }
}

/// The standard programme: two decimal places, points expire at the end of the year after
/// earning, love-bank caps of 100 per donor per year and 50 per grant.
pub fn standard_spec() -> ProgramSpec {
    ProgramSpec::new(
        program(),
        "Scenario points",
        "points",
        Scale::new(2).unwrap(),
    )
    .with_expiry(ExpiryPolicy::EndOfYear { years_after: 0 })
    .with_love_bank_caps(Some(pts("100")), Some(pts("50")))
}

pub fn activity(
    id: ActivityId,
    org_unit: OrgUnitId,
    rule: RuleInput,
    coefficient: &str,
    max_minutes: Option<u32>,
    daily_cap: Option<&str>,
    time_kind: TimeKind,
) -> ActivityInput {
    ActivityInput {
        id,
        org_unit,
        name: format!("activity {id}"),
        category: "service".into(),
        rule,
        coefficient: coefficient.parse().unwrap(),
        max_minutes_per_occasion: max_minutes,
        daily_points_cap: daily_cap.map(amt),
        time_kind,
    }
}

/// A ledger, its journal and a virtual clock.
pub struct Fx {
    pub ledger: Ledger,
    pub journal: Vec<Entry>,
    pub now: Timestamp,
    next_request: u128,
}

impl Fx {
    /// A ledger opened with `spec`, nothing else.
    pub fn open(spec: ProgramSpec) -> Fx {
        let now = Timestamp::from_millis(T0);
        let (ledger, genesis) =
            Ledger::open(spec, RequestId::from_u128(1_000_000).unwrap(), admin(), now).unwrap();
        Fx {
            ledger,
            journal: vec![genesis],
            now,
            next_request: 1_000_001,
        }
    }

    /// The standard programme with its org tree, members, merchants, activities and pool.
    pub fn standard() -> Fx {
        Fx::with_spec(standard_spec())
    }

    /// `spec` with the standard reference data.
    pub fn with_spec(spec: ProgramSpec) -> Fx {
        let mut fx = Fx::open(spec);
        let unit = |id, parent, level| Command::CreateOrgUnit {
            id,
            parent,
            name: format!("unit {id}"),
            level,
        };
        let member = |id, home, dual: bool, card: Option<&str>| Command::EnrolMember {
            id,
            home,
            kind: if dual {
                MemberKind::PartyMember
            } else {
                MemberKind::Resident
            },
            dual_registration: dual,
            card_code: card.map(str::to_owned),
        };
        let setup = vec![
            unit(district(), None, OrgLevel::District),
            unit(comm_a(), Some(district()), OrgLevel::Community),
            unit(comm_b(), Some(district()), OrgLevel::Community),
            member(m_a(), comm_a(), false, Some("A-1")),
            member(m_a2(), comm_a(), false, None),
            member(m_b(), comm_b(), false, None),
            member(m_dual(), comm_b(), true, None),
            Command::RegisterMerchant {
                id: cafe(),
                org_unit: comm_a(),
                name: "Corner cafe".into(),
                kind: MerchantKind::Partner,
            },
            Command::RegisterMerchant {
                id: shop(),
                org_unit: comm_b(),
                name: "Community supermarket".into(),
                kind: MerchantKind::CommunitySupermarket,
            },
            Command::DefineActivity(activity(
                patrol(),
                comm_a(),
                RuleInput::PerHour(amt("10")),
                "1",
                Some(240),
                None,
                TimeKind::Credit,
            )),
            Command::DefineActivity(activity(
                clinic(),
                district(),
                RuleInput::PerOccasion(amt("5")),
                "1.5",
                None,
                Some("10"),
                TimeKind::Honour,
            )),
            Command::CreatePool {
                id: pool(),
                org_unit: comm_a(),
                name: "Love bank".into(),
                kind: PoolKind::LoveBank,
            },
        ];
        for command in setup {
            fx.ok(admin(), command);
        }
        fx
    }

    pub fn fresh_request_id(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId::from_u128(self.next_request).unwrap()
    }

    /// A request with a fresh id.
    pub fn req(&mut self, actor: Actor, command: Command) -> Request {
        Request {
            request_id: self.fresh_request_id(),
            actor,
            command,
        }
    }

    /// Applies a request at the virtual now; a new entry joins the journal. A rejection
    /// must leave the ledger exactly as it was.
    pub fn apply(&mut self, request: &Request) -> Result<Applied, Rejection> {
        let head = self.ledger.head_hash();
        let next = self.ledger.next_sequence();
        let result = self.ledger.apply(request, self.now);
        match &result {
            Ok(Applied::New(entry)) => self.journal.push(entry.clone()),
            Ok(Applied::Duplicate { .. }) | Err(_) => {
                assert_eq!(self.ledger.head_hash(), head, "nothing may be written");
                assert_eq!(self.ledger.next_sequence(), next, "nothing may be written");
            }
        }
        result
    }

    /// Applies a command with a fresh request id.
    pub fn run(&mut self, actor: Actor, command: Command) -> Result<Applied, Rejection> {
        let request = self.req(actor, command);
        self.apply(&request)
    }

    /// Applies a command that must succeed with a new entry.
    pub fn ok(&mut self, actor: Actor, command: Command) -> Entry {
        let name = command.name();
        match self.run(actor, command) {
            Ok(Applied::New(entry)) => entry,
            other => panic!("{name}: expected a new entry, got {other:?}"),
        }
    }

    pub fn advance(&mut self, ms: i64) {
        self.now = self.now.saturating_add_millis(ms);
    }

    /// Records `minutes` of `activity` for `member` in `unit`, ending now; returns the id.
    pub fn record(
        &mut self,
        member: MemberId,
        activity: ActivityId,
        unit: OrgUnitId,
        minutes: u32,
    ) -> RecordId {
        let started_at = self.now.saturating_add_millis(-i64::from(minutes) * MINUTE);
        let entry = self.ok(
            admin(),
            Command::RecordService {
                records: vec![ServiceInput {
                    member,
                    activity,
                    org_unit: unit,
                    started_at,
                    minutes,
                }],
            },
        );
        let Event::ServiceRecorded { records } = entry.event() else {
            panic!("not a ServiceRecorded entry")
        };
        records[0].id
    }

    /// Records and approves patrol service for a member of community A (or a dual member).
    pub fn earn(&mut self, member: MemberId, minutes: u32) -> Entry {
        let record = self.record(member, patrol(), comm_a(), minutes);
        self.ok(
            rec_a(),
            Command::ApproveService {
                records: vec![record],
            },
        )
    }

    pub fn redeem(&mut self, member: MemberId, merchant: MerchantId, amount: &str) -> Entry {
        let till = if merchant == cafe() {
            till_cafe()
        } else {
            till_shop()
        };
        self.ok(
            till,
            Command::Redeem {
                member,
                merchant,
                amount: amt(amount),
            },
        )
    }

    pub fn hold(&mut self, member: MemberId, amount: &str, ttl_ms: u64) -> EntryId {
        self.ok(
            till_cafe(),
            Command::PlaceHold {
                member,
                merchant: cafe(),
                amount: amt(amount),
                ttl_ms,
            },
        )
        .id()
    }

    pub fn bal(&self, member: MemberId) -> Balance {
        self.ledger.balance(member, self.now).unwrap()
    }

    pub fn taken(&self, merchant: MerchantId) -> Points {
        self.ledger.merchant(merchant).unwrap().taken
    }

    pub fn pool_balance(&self) -> Points {
        self.ledger.pool(pool()).unwrap().balance
    }

    /// The audit of the whole journal against the live ledger must be clean.
    pub fn assert_audit_clean(&self) {
        let report = audit(&self.journal, Some(&self.ledger));
        assert!(report.is_clean(), "audit breaches: {:#?}", report.breaches);
        assert_eq!(report.head_hash, Some(self.ledger.head_hash()));
    }
}
