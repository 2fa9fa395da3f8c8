//! Bulk imports: the dry run names every refused record, a batch with a refused record
//! records nothing, and a batch of good records is one entry.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use points_core::import::check_service_records;
use points_core::*;

fn row(
    member: MemberId,
    activity: ActivityId,
    unit: OrgUnitId,
    minutes: u32,
    now: Timestamp,
) -> ServiceInput {
    ServiceInput {
        member,
        activity,
        org_unit: unit,
        started_at: now.saturating_add_millis(-2 * HOUR),
        minutes,
    }
}

#[test]
fn the_dry_run_names_every_bad_record_and_a_batch_is_all_or_nothing() {
    let mut fx = Fx::standard();
    let now = fx.now;
    let stranger = MemberId::from_u128(999).unwrap();
    let rows = vec![
        row(m_a(), patrol(), comm_a(), 60, now),
        row(stranger, patrol(), comm_a(), 60, now),
        row(m_a(), patrol(), comm_a(), 0, now),
        row(m_b(), patrol(), comm_a(), 60, now),
        row(m_a2(), patrol(), comm_a(), 90, now),
        row(m_b(), patrol(), comm_b(), 60, now),
        ServiceInput {
            started_at: Timestamp::from_millis(0),
            ..row(m_a(), clinic(), comm_a(), 30, now)
        },
    ];
    let problems = check_service_records(&fx.ledger, &admin(), &rows, now);
    assert_eq!(
        problems,
        vec![
            (1, Rejection::UnknownMember),
            (2, Rejection::DurationOutOfRange),
            (3, Rejection::MemberNotEligible),
            (5, Rejection::ActivityNotAvailable),
            (6, Rejection::TimeOutOfRange),
        ]
    );
    // A recorder of community B may not record in community A: every A row is named.
    let as_b = check_service_records(&fx.ledger, &rec_b(), &rows[..1], now);
    assert_eq!(as_b, vec![(0, Rejection::ActorNotAllowed)]);

    // The whole file as one command is refused and writes nothing (Fx::apply checks the
    // head and sequence are unchanged).
    let before = fx.ledger.next_sequence();
    assert!(fx
        .run(
            admin(),
            Command::RecordService {
                records: rows.clone()
            }
        )
        .is_err());
    assert_eq!(fx.ledger.next_sequence(), before);

    // The good rows pass the dry run and record as one entry.
    let good: Vec<ServiceInput> = rows
        .iter()
        .enumerate()
        .filter(|(i, _)| !problems.iter().any(|(p, _)| p == i))
        .map(|(_, r)| r.clone())
        .collect();
    assert!(check_service_records(&fx.ledger, &admin(), &good, now).is_empty());
    let entry = fx.ok(admin(), Command::RecordService { records: good });
    let Event::ServiceRecorded { records } = entry.event() else {
        panic!("not a ServiceRecorded entry")
    };
    assert_eq!(records.len(), 2);
    assert_eq!(fx.ledger.next_sequence(), before + 1);
    fx.assert_audit_clean();
}
