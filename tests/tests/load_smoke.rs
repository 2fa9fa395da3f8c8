//! CI smoke run of the load tool (`points-load`, crate points-bench) against the real
//! `points-server` binary: seed 100 members, offer a mixed unary load for 2 s, a batched
//! load and a paced (open-loop) load for 1 s each, then audit the ledger and check that
//! every acknowledged write is in the journal. The numbers are tiny: this proves the
//! tool and the server agree, not how fast they are (see BENCHMARKS.md for that).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use points_bench::load::{run, LoadOptions};
use points_bench::process::{find_binary, ServerProcess};
use points_bench::seed::{seed, SeedOptions, SeedState};
use points_bench::verify::verify;
use std::process::Stdio;
use std::time::{Duration, Instant};

async fn run_and_verify(opts: &LoadOptions, state: &SeedState, label: &str) {
    let out = run(opts, state).await.unwrap();
    let report = &out.report;
    let text = report.render();
    eprintln!("[{label}]\n{text}");
    assert!(
        report.ops_ok > 0,
        "[{label}] no operation succeeded\n{text}"
    );
    assert!(report.throughput_ops_s > 0.0, "[{label}] zero throughput");
    assert_eq!(
        report.unexpected_errors, 0,
        "[{label}] errors other than expected rejections\n{text}"
    );
    assert_eq!(report.duplicates, 0, "[{label}] duplicate receipts");
    assert_eq!(report.unsent, 0, "[{label}] scheduled sends never made");
    assert_eq!(report.entries_acked as usize, out.acked.len());
    let checked = verify(
        &opts.addr,
        &opts.admin_key,
        &state.program_id,
        &out.acked,
        out.started,
    )
    .await
    .unwrap();
    eprintln!("{}", checked.render());
    assert!(checked.audit_ok, "[{label}] audit breaches: {checked:?}");
    assert_eq!(
        checked.found,
        out.acked.len() as u64,
        "[{label}] acknowledged writes missing from the journal: {checked:?}"
    );
    assert!(checked.ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_tool_drives_the_real_server_and_every_ack_is_journalled() {
    let started = Instant::now();
    let bin = find_binary("points-server").expect(
        "points-server not found above the test executable; \
         `cargo test --workspace` builds it (or `cargo build -p points-grpc --bin points-server`)",
    );
    let data = tempfile::tempdir().unwrap();
    let args: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.path().to_str().unwrap(),
        "--no-metrics",
        "--log",
        "warn",
        "--expiry-sweep-secs",
        "0",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let server = ServerProcess::spawn(&bin, &args, Stdio::inherit(), Duration::from_secs(20))
        .await
        .unwrap();

    let mut seed_opts = SeedOptions::new(&server.addr, &server.admin_key, 100);
    seed_opts.merchants = 2;
    let state = seed(&seed_opts).await.unwrap();
    assert_eq!(state.members, 100);
    assert_eq!(state.merchants.len(), 2);

    // Unary, closed loop, the full mix.
    let mut opts = LoadOptions::new(&server.addr, &server.admin_key);
    opts.concurrency = 8;
    opts.channels = 2;
    opts.duration = Duration::from_secs(2);
    opts.mix = "redeem=70,hold=10,capture=10,release=5,refund=5,accrual=5"
        .parse()
        .unwrap();
    run_and_verify(&opts, &state, "unary mix").await;

    // Submit batches, closed loop, with accruals recorded in one batch and approved in
    // the next.
    let mut batched = opts.clone();
    batched.batch = 50;
    batched.concurrency = 2;
    batched.duration = Duration::from_secs(1);
    batched.mix = "redeem=80,hold=10,capture=5,accrual=5".parse().unwrap();
    run_and_verify(&batched, &state, "submit batches").await;

    // Open loop at a modest fixed rate.
    let mut paced = opts.clone();
    paced.rate = Some(300.0);
    paced.duration = Duration::from_secs(1);
    paced.mix = points_bench::mix::Mix::redeem_only();
    run_and_verify(&paced, &state, "open loop").await;

    server.stop(Duration::from_secs(10)).await.unwrap();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(30),
        "the smoke run took {took:?}"
    );
}
