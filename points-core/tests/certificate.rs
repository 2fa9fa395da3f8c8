//! Service-record certificates: what a certificate lists, and that any change to any field
//! makes verification fail.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::*;
use points_core::certificate::{verify, Certificate, CertificateError, SignedCertificate};
use points_core::rollup::Period;
use points_core::*;

const KEY: [u8; 32] = [42; 32];

fn public_key() -> String {
    points_core::checkpoint::public_key_hex(&KEY)
}

/// m_a serves three times in September (one pending, one reversed) and once in October;
/// m_a2 serves once.
fn scripted() -> (Fx, RecordId, RecordId) {
    let mut fx = Fx::standard();
    fx.earn(m_a(), 120); // patrol, 20 points, 120 credit minutes
    let clinic_record = fx.record(m_a(), clinic(), comm_a(), 30);
    fx.ok(
        rec_d(),
        Command::ApproveService {
            records: vec![clinic_record],
        },
    );
    let _pending = fx.record(m_a(), patrol(), comm_a(), 15);
    let reversed = fx.earn(m_a(), 60);
    fx.ok(
        admin(),
        Command::Reverse {
            entry: reversed.id(),
            reason: "duplicate".into(),
        },
    );
    fx.earn(m_a2(), 45);
    // 2026-10-01 in Beijing.
    fx.now = Timestamp::from_millis(1_790_784_000_000 + HOUR);
    let october = fx.record(m_a(), patrol(), comm_a(), 60);
    fx.ok(
        rec_a(),
        Command::ApproveService {
            records: vec![october],
        },
    );
    (fx, clinic_record, october)
}

fn issued(fx: &Fx, period: Period) -> SignedCertificate {
    Certificate::build(&fx.journal, m_a(), period, fx.now)
        .unwrap()
        .sign(&KEY)
}

#[test]
fn a_certificate_lists_approved_unreversed_records_in_the_period() {
    let (fx, clinic_record, october) = scripted();
    let signed = issued(&fx, Period::month(2026, 9).unwrap());
    let c = &signed.certificate;
    assert_eq!(
        c.records.len(),
        2,
        "pending and reversed records are left out"
    );
    assert_eq!(c.records[0].minutes, Minutes::new(120));
    assert_eq!(c.records[0].time_kind, TimeKind::Credit);
    assert_eq!(c.records[0].points, pts("20"));
    assert_eq!(c.records[0].activity, patrol());
    assert_eq!(c.records[0].org_unit_name, format!("unit {}", comm_a()));
    assert_eq!(c.records[0].recorder, admin());
    assert_eq!(c.records[1].record, clinic_record);
    assert_eq!(c.records[1].time_kind, TimeKind::Honour);
    assert_eq!(c.records[1].points, pts("7.50"));
    assert_eq!(c.credit_minutes, Minutes::new(120));
    assert_eq!(c.honour_minutes, Minutes::new(30));
    assert_eq!(c.points, pts("27.50"));
    assert!(c.records[0].started_at <= c.records[1].started_at);
    // Tied to the journal: its length and head at issue time.
    assert_eq!(c.journal_size, fx.journal.len() as u64);
    assert_eq!(c.journal_head, fx.ledger.head_hash());
    assert_eq!(c.member, m_a());
    verify(&signed, &public_key()).unwrap();
    assert!(signed.certificate.note().contains("record "));

    let q4 = issued(&fx, Period::quarter(2026, 4).unwrap());
    assert_eq!(q4.certificate.records.len(), 1);
    assert_eq!(q4.certificate.records[0].record, october);
    let year = issued(&fx, Period::year(2026).unwrap());
    assert_eq!(year.certificate.records.len(), 3);
    verify(&year, &public_key()).unwrap();

    // A member never enrolled has no certificate; a journal without its genesis none.
    let stranger = MemberId::from_u128(999).unwrap();
    assert_eq!(
        Certificate::build(&fx.journal, stranger, Period::year(2026).unwrap(), fx.now),
        Err(CertificateError::UnknownMember)
    );
    assert_eq!(
        Certificate::build(&fx.journal[1..], m_a(), Period::year(2026).unwrap(), fx.now),
        Err(CertificateError::MissingGenesis)
    );
    // JSON round trip keeps it valid (the file format the CLI verifies).
    let json = serde_json::to_string(&signed).unwrap();
    let back: SignedCertificate = serde_json::from_str(&json).unwrap();
    verify(&back, &public_key()).unwrap();
}

type Tamper = (&'static str, fn(&mut SignedCertificate));

#[test]
fn any_change_to_any_field_fails_verification() {
    let (fx, _, _) = scripted();
    let original = issued(&fx, Period::month(2026, 9).unwrap());
    verify(&original, &public_key()).unwrap();
    let tampers: Vec<Tamper> = vec![
        ("program", |s| {
            s.certificate.program = ProgramId::from_u128(7).unwrap()
        }),
        ("program_name", |s| s.certificate.program_name.push('!')),
        ("scale", |s| s.certificate.scale = 3),
        ("member", |s| s.certificate.member = m_a2()),
        ("period", |s| {
            s.certificate.period = Period::month(2026, 8).unwrap()
        }),
        ("period_start", |s| {
            s.certificate.period_start = Timestamp::from_millis(0)
        }),
        ("period_end", |s| {
            s.certificate.period_end = s.certificate.period_end.saturating_add_millis(1)
        }),
        ("records removed", |s| {
            let r = s.certificate.records.remove(1);
            s.certificate.honour_minutes = Minutes::ZERO;
            s.certificate.points = s.certificate.points.checked_sub(r.points).unwrap();
        }),
        ("records reordered", |s| s.certificate.records.reverse()),
        ("record id", |s| {
            s.certificate.records[0].record = RecordId::from_u128(5).unwrap()
        }),
        ("activity", |s| s.certificate.records[0].activity = clinic()),
        ("activity_name", |s| {
            s.certificate.records[0].activity_name = "Patrol\"".into()
        }),
        ("org_unit", |s| s.certificate.records[0].org_unit = comm_b()),
        ("org_unit_name", |s| {
            s.certificate.records[0].org_unit_name = "elsewhere".into()
        }),
        ("started_at", |s| {
            s.certificate.records[0].started_at = s.certificate.records[0]
                .started_at
                .saturating_add_millis(60_000)
        }),
        ("minutes with total", |s| {
            s.certificate.records[0].minutes = Minutes::new(600);
            s.certificate.credit_minutes = Minutes::new(600);
        }),
        ("minutes alone", |s| {
            s.certificate.records[0].minutes = Minutes::new(600)
        }),
        ("time_kind", |s| {
            s.certificate.records[0].time_kind = TimeKind::Honour;
            s.certificate.credit_minutes = Minutes::ZERO;
            s.certificate.honour_minutes = Minutes::new(150);
        }),
        ("points with total", |s| {
            s.certificate.records[0].points = pts("200");
            s.certificate.points = pts("207.50");
        }),
        ("recorder", |s| s.certificate.records[0].recorder = rec_a()),
        ("credit total", |s| {
            s.certificate.credit_minutes = Minutes::new(121)
        }),
        ("honour total", |s| {
            s.certificate.honour_minutes = Minutes::new(31)
        }),
        ("points total", |s| s.certificate.points = pts("99")),
        ("journal_size", |s| s.certificate.journal_size += 1),
        ("journal_head", |s| {
            s.certificate.journal_head = Hash([1; 32])
        }),
        ("issued_at", |s| {
            s.certificate.issued_at = s.certificate.issued_at.saturating_add_millis(1)
        }),
        ("signature", |s| {
            let last = if s.signature.ends_with('0') { "1" } else { "0" };
            s.signature.replace_range(127.., last);
        }),
        ("signature garbled", |s| s.signature = "zz".into()),
    ];
    for (field, tamper) in tampers {
        let mut changed = original.clone();
        tamper(&mut changed);
        assert_ne!(changed, original, "{field}: the tamper changed nothing");
        assert!(
            verify(&changed, &public_key()).is_err(),
            "{field}: a changed certificate verified"
        );
    }
    // Another key: refused by name, and a certificate re-signed by another key does not
    // verify against the programme's key.
    let mut other = original.clone();
    other.public_key = points_core::checkpoint::public_key_hex(&[1; 32]);
    assert!(matches!(
        verify(&other, &public_key()),
        Err(CertificateError::WrongKey { .. })
    ));
    let forged = original.certificate.clone().sign(&[1; 32]);
    assert!(verify(&forged, &public_key()).is_err());
    assert!(matches!(
        verify(&original, "abc"),
        Err(CertificateError::WrongKey { .. })
    ));
    // Signing is deterministic.
    assert_eq!(original, issued(&fx, Period::month(2026, 9).unwrap()));
}
