//! `points-load`: load tool for a running points-server. See `points-load --help`.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use points_bench::echo::{echo, EchoOptions};
use points_bench::fsync::fsync_bench_threads;
use points_bench::load::{run, LoadOptions};
use points_bench::mix::Mix;
use points_bench::process::rss_kib;
use points_bench::seed::{seed, SeedOptions, SeedState};
use points_bench::stats::{parse_duration, parse_rate};
use points_bench::verify::verify;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "points-load",
    version,
    about = "Load tool for the points ledger server: seed, run, echo ceiling, disk syncs/s."
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Create a program, an org unit, merchants (with till keys), an activity and M members
    /// with points; write the state file `run` needs.
    Seed {
        /// Server address.
        #[arg(long, default_value = "127.0.0.1:50051")]
        addr: String,
        /// Server admin API key (the bootstrap key).
        #[arg(long, env = "POINTS_KEY", hide_env_values = true)]
        key: String,
        /// Members to enrol and give points.
        #[arg(long, default_value_t = 1000)]
        members: u64,
        /// Merchants to register (each load client uses one merchant's till key).
        #[arg(long, default_value_t = 4)]
        merchants: usize,
        /// Points each member gets.
        #[arg(long, default_value = "1000")]
        points: String,
        /// Member chunks (10,000 members each) seeded concurrently.
        #[arg(long, default_value_t = 2)]
        inflight: usize,
        /// Where to write the state (holds merchant key secrets).
        #[arg(long, default_value = "points-load-state.json")]
        state: PathBuf,
        /// Also write the timings as JSON here.
        #[arg(long)]
        json_out: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        no_progress: bool,
    },
    /// Offer load to a seeded program, print throughput, latency percentiles and errors,
    /// then audit the ledger and check every acknowledged write is in the journal.
    Run {
        /// Server address.
        #[arg(long, default_value = "127.0.0.1:50051")]
        addr: String,
        /// Admin API key (for accruals and the checks afterwards).
        #[arg(long, env = "POINTS_KEY", hide_env_values = true)]
        key: String,
        /// State file written by `seed`.
        #[arg(long, default_value = "points-load-state.json")]
        state: PathBuf,
        /// Concurrent clients.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// HTTP/2 connections shared by the clients.
        #[arg(long, default_value_t = 4)]
        channels: usize,
        /// How long to offer load, e.g. 10s.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        /// Offered operations per second, e.g. 5000/s (open loop); absent: closed loop.
        #[arg(long, value_parser = parse_rate)]
        rate: Option<f64>,
        /// Operations per PointOfSale.Submit call (the server takes at most 10,000); 0 sends
        /// unary calls.
        #[arg(long, default_value_t = 0)]
        batch: usize,
        /// Operation mix, e.g. redeem=70,hold=10,capture=10,refund=5,accrual=5.
        #[arg(long, default_value = "redeem=100")]
        mix: Mix,
        /// Points per redemption, hold and refund.
        #[arg(long, default_value = "1")]
        amount: String,
        /// Use only the first N seeded members.
        #[arg(long)]
        members: Option<u64>,
        /// Skip the audit and journal check.
        #[arg(long)]
        no_verify: bool,
        /// Report this process's resident memory (the server's pid) after the run.
        #[arg(long)]
        server_pid: Option<u32>,
        /// Write the report as JSON here.
        #[arg(long)]
        json_out: Option<PathBuf>,
    },
    /// tonic's own ceiling: Health.Check against an in-process tonic-health server with
    /// the same concurrency and channels (or against --addr).
    Echo {
        /// Concurrent clients.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// HTTP/2 connections.
        #[arg(long, default_value_t = 4)]
        channels: usize,
        /// How long, e.g. 10s.
        #[arg(long, default_value = "10s", value_parser = parse_duration)]
        duration: Duration,
        /// Call this server's grpc.health.v1 instead of an in-process one.
        #[arg(long)]
        addr: Option<String>,
        /// API key to send (only matters with --addr).
        #[arg(
            long,
            env = "POINTS_KEY",
            hide_env_values = true,
            default_value = "echo"
        )]
        key: String,
        /// Write the report as JSON here.
        #[arg(long)]
        json_out: Option<PathBuf>,
    },
    /// The disk's durable writes per second: small write + fdatasync in a loop.
    Fsync {
        /// Directory to write in (the server's data dir).
        #[arg(long, default_value = "./points-data")]
        dir: PathBuf,
        /// How long, e.g. 5s.
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        duration: Duration,
        /// Bytes per write.
        #[arg(long, default_value_t = 4096)]
        block: usize,
        /// Loops at once, each on its own file (syncs/s are added up).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        /// Write the report as JSON here.
        #[arg(long)]
        json_out: Option<PathBuf>,
    },
}

fn write_json(path: Option<&Path>, value: &impl Serialize) -> anyhow::Result<()> {
    if let Some(path) = path {
        let text = serde_json::to_string_pretty(value)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

#[derive(Serialize)]
struct RunJson<'a> {
    run: &'a points_bench::load::RunReport,
    verify: Option<&'a points_bench::verify::VerifyReport>,
    server_rss_kib: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Seed {
            addr,
            key,
            members,
            merchants,
            points,
            inflight,
            state,
            json_out,
            no_progress,
        } => {
            let mut opts = SeedOptions::new(&addr, &key, members);
            opts.merchants = merchants;
            opts.points_each = points;
            opts.inflight = inflight;
            opts.progress = !no_progress;
            let seeded = seed(&opts).await?;
            seeded.save(&state)?;
            let t = &seeded.timings;
            println!(
                "seeded program {} with {} members ({} merchants) in {:.2} s: setup {:.2} s, members {:.2} s = {:.0} members/s, {} entries",
                seeded.program_id,
                seeded.members,
                seeded.merchants.len(),
                t.total_s,
                t.setup_s,
                t.members_s,
                t.members_per_s,
                t.entries
            );
            println!("state written to {}", state.display());
            write_json(json_out.as_deref(), &seeded.timings)?;
        }
        Cmd::Run {
            addr,
            key,
            state,
            concurrency,
            channels,
            duration,
            rate,
            batch,
            mix,
            amount,
            members,
            no_verify,
            server_pid,
            json_out,
        } => {
            let max = points_grpc::service::ops::MAX_SUBMIT;
            anyhow::ensure!(
                batch <= max,
                "points-server takes at most {max} operations per Submit (larger batches are \
                 refused with INVALID_ARGUMENT); for more operations in flight raise --concurrency"
            );
            let seeded = SeedState::load(&state)?;
            let opts = LoadOptions {
                addr: addr.clone(),
                admin_key: key.clone(),
                concurrency,
                channels,
                duration,
                rate,
                batch,
                mix,
                amount,
                members,
            };
            let out = run(&opts, &seeded).await?;
            print!("{}", out.report.render());
            let server_rss_kib = server_pid.and_then(rss_kib);
            if let Some(kib) = server_rss_kib {
                println!("server resident memory: {} MiB", kib / 1024);
            }
            let checked = if no_verify {
                None
            } else {
                let v = verify(&addr, &key, &seeded.program_id, &out.acked, out.started).await?;
                print!("{}", v.render());
                Some(v)
            };
            write_json(
                json_out.as_deref(),
                &RunJson {
                    run: &out.report,
                    verify: checked.as_ref(),
                    server_rss_kib,
                },
            )?;
            if let Some(v) = &checked {
                anyhow::ensure!(v.ok(), "verification failed");
            }
        }
        Cmd::Echo {
            concurrency,
            channels,
            duration,
            addr,
            key,
            json_out,
        } => {
            let report = echo(&EchoOptions {
                concurrency,
                channels,
                duration,
                addr,
                key,
            })
            .await?;
            print!("{}", report.render());
            write_json(json_out.as_deref(), &report)?;
        }
        Cmd::Fsync {
            dir,
            duration,
            block,
            threads,
            json_out,
        } => {
            let report = tokio::task::spawn_blocking(move || {
                fsync_bench_threads(&dir, duration, block, threads)
            })
            .await??;
            print!("{}", report.render());
            write_json(json_out.as_deref(), &report)?;
        }
    }
    Ok(())
}
