//! Model-based property test: random command sequences over a small universe run through
//! the ledger and an independent reference model (`sim`), which must agree on every
//! outcome (new entry, duplicate, or the exact rejection) and every balance after every
//! step. The audit (replay, chain, every rule) runs after every step.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod sim;

use points_core::Applied;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, TestRunner};
use sim::{cases, steps, Run};

fn run_sequence(steps: &[sim::Step]) {
    let mut run = Run::start();
    for step in &sim::endowment() {
        assert!(matches!(run.step(step, true), Ok(Applied::New(_))));
    }
    // The audit replays the whole journal, so auditing after every step costs O(n²) per
    // sequence; at 20 to 60 steps that is still cheap (about 12 s for 10,000 sequences).
    for step in steps {
        let _ = run.step(step, true);
        run.assert_audit_clean();
    }
}

#[test]
#[allow(clippy::disallowed_methods)] // The test times itself; the ledger never sees it.
fn ledger_agrees_with_the_model() {
    let config = Config {
        cases: cases(10_000),
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let started = std::time::Instant::now();
    let sequences = std::cell::Cell::new(0usize);
    let total_steps = std::cell::Cell::new(0usize);
    runner
        .run(&steps(20..60), |steps| {
            run_sequence(&steps);
            sequences.set(sequences.get() + 1);
            total_steps.set(total_steps.get() + steps.len());
            Ok(())
        })
        .unwrap();
    println!(
        "{} sequences, {} steps in {:.1?}",
        sequences.get(),
        total_steps.get(),
        started.elapsed()
    );
}

/// How often each outcome occurs, so that the generator's reach can be seen with
/// `cargo test --release --test model -- --ignored --nocapture`.
#[test]
#[ignore]
fn generator_reach() {
    use std::collections::BTreeMap;
    let mut runner = TestRunner::new(Config {
        cases: cases(500),
        failure_persistence: None,
        ..Config::default()
    });
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..cases(500) {
        let steps = steps(20..60).new_tree(&mut runner).unwrap().current();
        let mut run = Run::start();
        for step in sim::endowment().iter().chain(&steps) {
            let key = match run.step(step, false) {
                Ok(Applied::New(e)) => format!("new {:?}", e.kind()),
                Ok(Applied::Duplicate { .. }) => "duplicate".into(),
                Err(r) => format!("rejected {}", r.reason()),
            };
            *counts.entry(key).or_default() += 1;
        }
    }
    for (k, v) in counts {
        println!("{v:>8}  {k}");
    }
}
