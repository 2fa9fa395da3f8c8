//! Replay, snapshots and tamper evidence over generated journals.
//!
//! - Replaying any generated journal reproduces every balance and the head hash.
//! - A snapshot taken midway, restored, and followed by `replay_one` of the rest gives the
//!   same head hash and balances.
//! - Changing any single entry (a re-encoded amount, or a flipped byte in its stored form)
//!   makes replay fail with a `ReplayError` naming that entry's sequence, and the audit
//!   reports a `Chain` breach there.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod sim;

use points_core::*;
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestRunner};
use sim::{cases, endowment, steps, Run, Step};

/// Everything observable about a ledger at `now`, in a comparable form.
#[derive(Debug, PartialEq)]
struct Observed {
    head: Hash,
    next: u64,
    totals: Totals,
    members: Vec<Option<(Balance, Vec<Lot>, MemberView)>>,
    merchants: Vec<MerchantView>,
    pools: Vec<PoolView>,
    holds: Vec<Option<HoldView>>,
}

fn observe(ledger: &Ledger, now: Timestamp, holds: &[EntryId]) -> Observed {
    Observed {
        head: ledger.head_hash(),
        next: ledger.next_sequence(),
        totals: ledger.totals(),
        members: (0..sim::MEMBERS)
            .map(|i| {
                let id = sim::member_any(i);
                ledger.balance(id, now).map(|b| {
                    (
                        b,
                        ledger.lots(id).unwrap().to_vec(),
                        ledger.member(id).unwrap(),
                    )
                })
            })
            .collect(),
        merchants: ledger.merchants(),
        pools: ledger.pools(),
        holds: holds.iter().map(|h| ledger.hold(*h)).collect(),
    }
}

/// Runs the endowment and `steps`; returns the run and the live snapshot taken after the
/// step at `snapshot_at`, with the journal length at that point.
fn generate(steps: &[Step], snapshot_at: Option<&Index>) -> (Run, Vec<u8>, usize) {
    let mut run = Run::start();
    let endowment = endowment();
    let all: Vec<&Step> = endowment.iter().chain(steps).collect();
    let at = snapshot_at.map_or(0, |i| i.index(all.len()));
    let mut snapshot = (Vec::new(), 0);
    for (i, step) in all.into_iter().enumerate() {
        let _ = run.step(step, false);
        if i == at {
            snapshot = (run.ledger.snapshot(), run.journal.len());
            // The buffer's starting size changes nothing in the bytes.
            for capacity in [0, 1, snapshot.0.len(), 2 * snapshot.0.len()] {
                assert_eq!(run.ledger.snapshot_with_capacity(capacity), snapshot.0);
            }
            // In pieces: gathered short writes, long ones passed whole, the order kept.
            for piece_bytes in [0, 1, 7, 100, 4096, snapshot.0.len() + 1] {
                let mut joined = Vec::new();
                let mut pieces = 0;
                run.ledger.snapshot_into(piece_bytes, |piece| {
                    assert!(!piece.is_empty(), "no empty pieces");
                    joined.extend_from_slice(piece);
                    pieces += 1;
                });
                assert_eq!(joined, snapshot.0, "pieces of {piece_bytes} bytes");
                if piece_bytes > snapshot.0.len() {
                    assert_eq!(pieces, 1, "a snapshot shorter than a piece is one piece");
                }
            }
        }
    }
    (run, snapshot.0, snapshot.1)
}

fn holds_of(journal: &[Entry]) -> Vec<EntryId> {
    journal
        .iter()
        .filter(|e| e.kind() == EntryKind::HoldPlaced)
        .map(Entry::id)
        .collect()
}

fn named_sequence(error: &ReplayError) -> Option<u64> {
    match error {
        ReplayError::NoGenesis => None,
        ReplayError::Sequence { expected, .. } => Some(*expected),
        ReplayError::Id { sequence }
        | ReplayError::Hash { sequence, .. }
        | ReplayError::Program { sequence } => Some(*sequence),
    }
}

/// Replay of `journal` must fail naming `sequence`, and the audit must report a chain
/// breach at that entry.
fn assert_caught_at(journal: &[Entry], sequence: u64, what: &str) {
    let error = Ledger::replay(journal).expect_err(what);
    assert_eq!(named_sequence(&error), Some(sequence), "{what}: {error}");
    // Resuming with `replay_all` stops at the same entry, with every entry before it applied.
    if sequence > 0 {
        let mut resumed = Ledger::replay(&journal[..1]).unwrap();
        let error = resumed.replay_all(&journal[1..]).expect_err(what);
        assert_eq!(named_sequence(&error), Some(sequence), "{what}: {error}");
        assert_eq!(resumed.next_sequence(), sequence, "{what}: replay_all");
    }
    let report = audit(journal, None);
    assert!(
        report
            .breaches
            .iter()
            .any(|b| b.rule == AuditRule::Chain && b.sequence == Some(sequence)),
        "{what}: audit must name entry {sequence}: {:?}",
        report.breaches
    );
}

fn config(default: u32) -> Config {
    Config {
        cases: cases(default),
        failure_persistence: None,
        ..Config::default()
    }
}

#[test]
fn replay_and_snapshots_reproduce_the_ledger() {
    let mut runner = TestRunner::new(config(500));
    runner
        .run(&(steps(20..60), any::<Index>()), |(steps, snapshot_at)| {
            let (run, snapshot, snapshot_len) = generate(&steps, Some(&snapshot_at));
            let now = Timestamp::from_millis(run.now);
            let holds = holds_of(&run.journal);
            let live = observe(&run.ledger, now, &holds);

            // The whole journal.
            let replayed = Ledger::replay(&run.journal).unwrap();
            prop_assert_eq!(&observe(&replayed, now, &holds), &live);

            // Every entry's stored form ends with its hash, which stores read alone.
            for entry in &run.journal {
                let bytes = entry.encode();
                prop_assert_eq!(Entry::hash_of_encoded(&bytes), Some(entry.hash()));
                let tail = &bytes[bytes.len() - Entry::ENCODED_HASH_BYTES..];
                prop_assert_eq!(tail, &entry.hash().0[..]);
            }
            prop_assert_eq!(Entry::hash_of_encoded(&[0u8; 31]), None);

            // Balances read together are those read one at a time, in order, for lists
            // longer and shorter than the read-ahead, with unknown and repeated members.
            let everyone: Vec<MemberId> = (0..sim::MEMBERS).map(sim::member_any).collect();
            for count in [0, 1, 5, 8, 9, 16, 17, 40] {
                let list: Vec<MemberId> = everyone.iter().copied().cycle().take(count).collect();
                let one_by_one: Vec<_> = list.iter().map(|m| run.ledger.balance(*m, now)).collect();
                prop_assert_eq!(run.ledger.balances(&list, now), one_by_one);
            }

            // A snapshot taken midway, then the rest entry by entry.
            let mut restored = Ledger::from_snapshot(&snapshot).unwrap();
            prop_assert_eq!(restored.next_sequence(), snapshot_len as u64);
            prop_assert_eq!(restored.head_hash(), run.journal[snapshot_len - 1].hash());
            for entry in &run.journal[snapshot_len..] {
                restored.replay_one(entry).unwrap();
            }
            prop_assert_eq!(&observe(&restored, now, &holds), &live);
            // The same, the rest in one `replay_all` (which takes entries in groups).
            let mut resumed = Ledger::from_snapshot(&snapshot).unwrap();
            resumed.replay_all(&run.journal[snapshot_len..]).unwrap();
            prop_assert_eq!(&observe(&resumed, now, &holds), &live);

            // A snapshot keeps the request fingerprints: retries, reused ids and new requests
            // are answered exactly as the live ledger answers them.
            let mut from_live = Ledger::from_snapshot(&run.ledger.snapshot()).unwrap();
            // A copy for a checkpoint snapshots the same and, used live, answers the same.
            let mut copy = run.ledger.copy_for_snapshot();
            prop_assert!(copy.snapshot() == run.ledger.snapshot());
            let mut live_ledger = run.ledger.clone();
            for request in run.sent.iter().rev().take(8) {
                let answer = live_ledger.apply(request, now);
                prop_assert_eq!(&from_live.apply(request, now), &answer);
                prop_assert_eq!(&copy.apply(request, now), &answer);
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn tampering_any_entry_is_caught_at_that_entry() {
    let mut runner = TestRunner::new(config(500));
    runner
        .run(
            &(steps(20..60), any::<Index>(), any::<Index>(), any::<u8>()),
            |(steps, which, byte, flip)| {
                let (run, _, _) = generate(&steps, None);
                let journal = run.journal;
                // Any entry after the genesis.
                let t = 1 + which.index(journal.len() - 1);
                let seq = t as u64;
                let original = &journal[t];

                // 1. A byte of the stored form flipped (skipping flips that do not decode
                //    or that decode to the same entry).
                let bytes = original.encode();
                let mut flipped = bytes.clone();
                let at = byte.index(bytes.len());
                flipped[at] ^= flip.max(1);
                if let Ok(changed) = Entry::decode(&flipped) {
                    if changed != *original {
                        let mut tampered = journal.clone();
                        tampered[t] = changed;
                        assert_caught_at(&tampered, seq, "flipped byte");
                    }
                }

                // 2. An amount changed and the entry re-encoded, hash left as stored.
                let mut value = serde_json::to_value(original).unwrap();
                if bump_first_amount(&mut value) {
                    let changed: Entry = serde_json::from_value(value).unwrap();
                    let reencoded = Entry::decode(&changed.encode()).unwrap();
                    let mut tampered = journal.clone();
                    tampered[t] = reencoded;
                    assert_caught_at(&tampered, seq, "changed amount");
                }

                // 3. An entry dropped: the next one is out of sequence.
                if t + 1 < journal.len() {
                    let mut tampered = journal.clone();
                    tampered.remove(t);
                    assert_caught_at(&tampered, seq, "dropped entry");
                }
                Ok(())
            },
        )
        .unwrap();
}

/// Adds one minor unit to the first `amount` (or `points`) number in an entry's JSON.
fn bump_first_amount(value: &mut serde_json::Value) -> bool {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if (key == "amount" || key == "points") && v.is_i64() {
                    *v = serde_json::Value::from(v.as_i64().unwrap() + 1);
                    return true;
                }
                if bump_first_amount(v) {
                    return true;
                }
            }
            false
        }
        serde_json::Value::Array(items) => items.iter_mut().any(bump_first_amount),
        _ => false,
    }
}

#[test]
fn rehashed_tampering_breaks_the_chain_at_the_next_entry() {
    let mut runner = TestRunner::new(config(100));
    runner
        .run(&(steps(20..60), any::<Index>()), |(steps, which)| {
            let (run, _, _) = generate(&steps, None);
            let journal = run.journal;
            let amounts: Vec<usize> = (1..journal.len())
                .filter(|&i| journal[i].kind() == EntryKind::Redeemed)
                .collect();
            if amounts.is_empty() {
                return Ok(());
            }
            let t = amounts[which.index(amounts.len())];
            // The forger changes the amount and recomputes this entry's own hash.
            let mut value = serde_json::to_value(&journal[t]).unwrap();
            prop_assert!(bump_first_amount(&mut value));
            let prev = journal[t - 1].hash();
            let changed: Entry = serde_json::from_value(value.clone()).unwrap();
            value["hash"] = serde_json::to_value(changed.compute_hash(&prev)).unwrap();
            let forged: Entry = serde_json::from_value(value).unwrap();
            let mut tampered = journal.clone();
            tampered[t] = forged;
            if t + 1 < journal.len() {
                assert_caught_at(&tampered, t as u64 + 1, "rehashed entry");
            } else {
                // The last entry: the replay succeeds but the head no longer matches.
                let replayed = Ledger::replay(&tampered).unwrap();
                prop_assert_ne!(replayed.head_hash(), run.ledger.head_hash());
                let report = audit(&tampered, Some(&run.ledger));
                prop_assert!(!report.is_clean());
            }
            Ok(())
        })
        .unwrap();
}

/// The chain's hash is BLAKE3 keyed with the previous hash over the postcard encoding of
/// (sequence, request id, actor, time, event), for small entries and for bulk entries that
/// take the streaming path alike. Recomputed here from the public encoding, so a change of
/// hashing code that changes a single hashed byte fails this test.
#[test]
fn entry_hash_is_keyed_blake3_over_the_canonical_encoding() {
    let mut run = Run::start();
    for step in &endowment() {
        let _ = run.step(step, false);
    }
    // A bulk recording: thousands of records, far past any stack buffer.
    let started_at = Timestamp::from_millis(run.now - 3_600_000);
    let records: Vec<ServiceInput> = (0..3_000u32)
        .map(|i| ServiceInput {
            member: sim::member_any((i % 4) as u8),
            activity: sim::activity(1),
            org_unit: sim::d(),
            started_at,
            minutes: 1 + i % 600,
        })
        .collect();
    let request = Request {
        request_id: RequestId::from_u128(0x0b01_c0de).unwrap(),
        actor: sim::actor(1),
        command: Command::RecordService { records },
    };
    let Ok(Applied::New(bulk)) = run.ledger.apply(&request, Timestamp::from_millis(run.now)) else {
        panic!("bulk recording refused")
    };
    assert!(bulk.encode().len() > 64 * 1024);
    run.journal.push(bulk);
    let mut prev = Hash::GENESIS;
    for entry in &run.journal {
        let canonical = (
            entry.sequence(),
            entry.request_id(),
            entry.actor(),
            entry.at(),
            entry.event(),
        );
        let bytes = postcard::to_allocvec(&canonical).unwrap();
        let expected = Hash(*blake3::keyed_hash(&prev.0, &bytes).as_bytes());
        assert_eq!(entry.hash(), expected, "entry {}", entry.sequence());
        assert_eq!(entry.compute_hash(&prev), expected);
        prev = entry.hash();
    }
    assert_eq!(Ledger::replay(&run.journal).unwrap().head_hash(), prev);
}

#[test]
fn corrupt_snapshots_are_refused_or_harmless() {
    let mut runner = TestRunner::new(config(300));
    runner
        .run(
            &(steps(20..60), any::<Index>(), any::<Index>(), any::<u8>()),
            |(steps, snapshot_at, byte, flip)| {
                let (run, snapshot, snapshot_len) = generate(&steps, Some(&snapshot_at));
                let now = Timestamp::from_millis(run.now);
                // Truncated: always an error.
                for cut in [0, 1, snapshot.len() / 2, snapshot.len() - 1] {
                    prop_assert!(Ledger::from_snapshot(&snapshot[..cut]).is_err());
                }
                // Another format (the tag is the first eight bytes; the format just before
                // this one is read, see `a_snapshot_of_the_previous_format_restores`).
                let mut other = snapshot.clone();
                other[0] ^= 1;
                prop_assert!(Ledger::from_snapshot(&other).is_err());
                // A flipped byte anywhere: refused, or a ledger that reads, replays the rest
                // of the journal and applies requests without panicking.
                let mut flipped = snapshot.clone();
                flipped[byte.index(snapshot.len())] ^= flip.max(1);
                if let Ok(mut ledger) = Ledger::from_snapshot(&flipped) {
                    for entry in &run.journal[snapshot_len..] {
                        let _ = ledger.replay_one(entry);
                    }
                    let ids: Vec<_> = ledger.member_ids().collect();
                    for id in ids {
                        let _ = ledger.balance(id, now);
                        let _ = ledger.member(id);
                        let _ = ledger.lots(id);
                    }
                    let _ = ledger.snapshot();
                }
                Ok(())
            },
        )
        .unwrap();
}

/// The hash chain is a stored format: a journal written by one version must verify under
/// every later one. This journal (fixed ids, times and commands covering names, card codes,
/// decimal amounts, holds, refunds, transfers, reversals and a batch) must keep the head
/// hash it had when the chain format was fixed; a change to how entries are encoded or
/// hashed fails here before it reaches anyone's data.
#[test]
fn a_fixed_journal_keeps_its_head_hash() {
    const EXPECTED: &str = "148500e69928b9a4edb207f8c0e03116b6b36710b9685588425e9e3e74e36597";
    let (ledger, journal, _) = fixed_journal();
    assert_eq!(ledger.head_hash().to_string(), EXPECTED);
    let replayed = Ledger::replay(&journal).unwrap();
    assert_eq!(replayed.head_hash(), ledger.head_hash());
}

/// The fixed journal of [`a_fixed_journal_keeps_its_head_hash`], applied: the ledger, its
/// entries, and the requests after the opening one.
fn fixed_journal() -> (Ledger, Vec<Entry>, Vec<Request>) {
    let admin = Actor::Admin {
        id: ActorId::from_u128(1).unwrap(),
    };
    let cafe = MerchantId::from_u128(20).unwrap();
    let till = Actor::Merchant {
        id: ActorId::from_u128(2).unwrap(),
        merchant: cafe,
    };
    let community = OrgUnitId::from_u128(10).unwrap();
    let patrol = ActivityId::from_u128(30).unwrap();
    let member = |i: u128| MemberId::from_u128(1_000 + i).unwrap();
    let amount = |text: &str| -> Amount { text.parse().unwrap() };
    let mut now = Timestamp::from_millis(1_790_000_000_000);
    let spec = ProgramSpec::new(
        ProgramId::from_u128(0xbe7c).unwrap(),
        "Donghu volunteer points",
        "points",
        Scale::new(2).unwrap(),
    )
    .with_expiry(ExpiryPolicy::EndOfYear { years_after: 1 });
    let (mut ledger, genesis) =
        Ledger::open(spec, RequestId::from_u128(1).unwrap(), admin, now).unwrap();
    let mut journal = vec![genesis];
    let mut requests = Vec::new();
    let mut next_request = 1u128;
    let mut apply = |ledger: &mut Ledger, actor: Actor, command: Command, now: Timestamp| {
        next_request += 1;
        let request = Request {
            request_id: RequestId::from_u128(next_request).unwrap(),
            actor,
            command,
        };
        let applied = ledger.apply(&request, now).unwrap();
        requests.push(request);
        match applied {
            Applied::New(entry) => {
                journal.push(entry.clone());
                entry
            }
            other => panic!("not a new entry: {other:?}"),
        }
    };
    let setup = [
        Command::CreateOrgUnit {
            id: community,
            parent: None,
            name: "Donghu community, a name longer than sixteen bytes".into(),
            level: OrgLevel::Community,
        },
        Command::RegisterMerchant {
            id: cafe,
            org_unit: community,
            name: "Corner cafe".into(),
            kind: MerchantKind::Partner,
        },
        Command::DefineActivity(ActivityInput {
            id: patrol,
            org_unit: community,
            name: "Evening patrol".into(),
            category: "patrol".into(),
            rule: RuleInput::PerHour("10.5".parse().unwrap()),
            coefficient: "1.2".parse().unwrap(),
            max_minutes_per_occasion: None,
            daily_points_cap: None,
            time_kind: TimeKind::Credit,
        }),
    ];
    for command in setup {
        apply(&mut ledger, admin, command, now);
    }
    for i in 0..3 {
        let card_code = (i == 1).then(|| "CARD-0001".to_owned());
        let command = Command::EnrolMember {
            id: member(i),
            home: community,
            kind: MemberKind::Resident,
            dual_registration: i == 2,
            card_code,
        };
        apply(&mut ledger, admin, command, now);
    }
    let records = (0..3)
        .map(|i| ServiceInput {
            member: member(i),
            activity: patrol,
            org_unit: community,
            started_at: now.saturating_add_millis(-36_000_000),
            minutes: 90 + 60 * i as u32,
        })
        .collect();
    let recorded = apply(&mut ledger, admin, Command::RecordService { records }, now);
    let Event::ServiceRecorded { records } = recorded.event() else {
        panic!("not a recording")
    };
    let records = records.iter().map(|r| r.id).collect();
    apply(&mut ledger, admin, Command::ApproveService { records }, now);
    now = now.saturating_add_millis(60_000);
    let redeem = Command::Redeem {
        member: member(0),
        merchant: cafe,
        amount: amount("3.25"),
    };
    let redeemed = apply(&mut ledger, till, redeem, now);
    let hold = Command::PlaceHold {
        member: member(1),
        merchant: cafe,
        amount: amount("5"),
        ttl_ms: 600_000,
    };
    let held = apply(&mut ledger, till, hold, now);
    now = now.saturating_add_millis(1_000);
    let capture = Command::CaptureHold {
        hold: held.id(),
        amount: Some(amount("4.01")),
    };
    apply(&mut ledger, till, capture, now);
    let refund = Command::Refund {
        entry: redeemed.id(),
        amount: amount("1.25"),
    };
    apply(&mut ledger, till, refund, now);
    let transfer = Command::Transfer {
        from: member(2),
        to: member(0),
        amount: amount("2.5"),
    };
    let transferred = apply(&mut ledger, admin, transfer, now);
    let reverse = Command::Reverse {
        entry: transferred.id(),
        reason: "entered against the wrong member".into(),
    };
    apply(&mut ledger, admin, reverse, now);
    (ledger, journal, requests)
}

/// A snapshot stored by an earlier version must restore under this one. This one was
/// written in format `ptsnap02`, whose id indexes laid out their slots differently: its
/// member and record indexes are rebuilt on restore, so every member, record and request
/// is found again, and the ledger goes on from there.
#[test]
fn a_snapshot_of_the_previous_format_restores() {
    let (ledger, journal, requests) = fixed_journal();
    let old: &[u8] = include_bytes!("fixtures/fixed-journal.ptsnap02");
    assert_eq!(&old[..8], b"ptsnap02");
    let mut restored = Ledger::from_snapshot(old).unwrap();
    let now = Timestamp::from_millis(1_790_000_100_000);
    assert_eq!(restored.head_hash(), ledger.head_hash());
    assert_eq!(restored.next_sequence(), ledger.next_sequence());
    assert_eq!(restored.totals(), ledger.totals());
    let member = |i: u128| MemberId::from_u128(1_000 + i).unwrap();
    for i in 0..4 {
        assert_eq!(
            restored.balance(member(i), now),
            ledger.balance(member(i), now)
        );
        assert_eq!(restored.lots(member(i)), ledger.lots(member(i)));
        assert_eq!(restored.member(member(i)), ledger.member(member(i)));
    }
    assert!(restored.member(member(0)).is_some());
    assert_eq!(restored.member_by_card("CARD-0001"), Some(member(1)));
    let recorded: Vec<RecordId> = journal
        .iter()
        .filter_map(|entry| match entry.event() {
            Event::ServiceRecorded { records } => Some(records.iter().map(|r| r.id)),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(recorded.len(), 3);
    for id in recorded {
        assert!(restored.record(id).is_some());
        assert_eq!(restored.record(id), ledger.record(id));
    }
    // Every request is still known: a retry is answered with its original entry.
    for (request, entry) in requests.iter().zip(&journal[1..]) {
        match restored.apply(request, now).unwrap() {
            Applied::Duplicate { sequence, .. } => assert_eq!(sequence, entry.sequence()),
            other => panic!("a retry was applied again: {other:?}"),
        }
    }
    // New members go into the rebuilt index and are found, and the ledger snapshots in
    // the current format, which restores to the same state.
    let admin = Actor::Admin {
        id: ActorId::from_u128(1).unwrap(),
    };
    let enrol = Request {
        request_id: RequestId::from_u128(900).unwrap(),
        actor: admin,
        command: Command::EnrolMember {
            id: member(3),
            home: OrgUnitId::from_u128(10).unwrap(),
            kind: MemberKind::PartyMember,
            dual_registration: false,
            card_code: None,
        },
    };
    let Ok(Applied::New(enrolled)) = restored.apply(&enrol, now) else {
        panic!("the new member was not enrolled")
    };
    assert!(restored.member(member(3)).is_some());
    let current = restored.snapshot();
    assert_ne!(&current[..8], b"ptsnap02");
    let again = Ledger::from_snapshot(&current).unwrap();
    assert_eq!(again.head_hash(), restored.head_hash());
    for i in 0..4 {
        assert_eq!(again.member(member(i)), restored.member(member(i)));
        assert_eq!(
            again.balance(member(i), now),
            restored.balance(member(i), now)
        );
    }
    let whole: Vec<&Entry> = journal.iter().chain([&enrolled]).collect();
    let report = audit(whole, Some(&again));
    assert!(report.is_clean(), "{report:?}");
}

/// `fingerprint_of` gives what a store must persist beside each entry: the fingerprint of
/// the request that was applied, the unknown marker after a replay, and what a store
/// restored after that.
#[test]
fn the_kept_fingerprint_is_the_requests() {
    let admin = Actor::Admin {
        id: ActorId::from_u128(1).unwrap(),
    };
    let now = Timestamp::from_millis(1_790_000_000_000);
    let spec = ProgramSpec::new(
        ProgramId::from_u128(7).unwrap(),
        "Points",
        "points",
        Scale::new(2).unwrap(),
    );
    let (mut ledger, genesis) =
        Ledger::open(spec, RequestId::from_u128(1).unwrap(), admin, now).unwrap();
    let request = Request {
        request_id: RequestId::from_u128(2).unwrap(),
        actor: admin,
        command: Command::CreateOrgUnit {
            id: OrgUnitId::from_u128(10).unwrap(),
            parent: None,
            name: "Donghu".into(),
            level: OrgLevel::Community,
        },
    };
    let Applied::New(entry) = ledger.apply(&request, now).unwrap() else {
        panic!("not a new entry")
    };
    let print = Ledger::request_fingerprint(&request);
    assert_eq!(ledger.fingerprint_of(entry.sequence()), Some(print));
    assert_eq!(ledger.fingerprint_of(entry.sequence() + 1), None);
    assert_eq!(ledger.fingerprint_of(u64::MAX), None);

    let mut replayed = Ledger::replay([&genesis, &entry]).unwrap();
    assert_eq!(
        replayed.fingerprint_of(entry.sequence()),
        Some(Ledger::UNKNOWN_FINGERPRINT)
    );
    replayed.restore_fingerprint(request.request_id, print);
    assert_eq!(replayed.fingerprint_of(entry.sequence()), Some(print));
}
