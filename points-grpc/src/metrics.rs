//! Prometheus metrics, kept in process and served as text on a separate HTTP port.
//!
//! - `points_grpc_requests_total{method,code}`: calls by method and gRPC status code;
//! - `points_grpc_request_duration_seconds{method}`: latency histogram (time to the
//!   response headers);
//! - `points_rejections_total{reason}`: ledger rejections by reason;
//! - `points_auth_failures_total{code}`: calls refused by authentication or policy;
//! - `points_entries_written_total{kind}`: entries written through unary writes;
//! - `points_submit_batch_size`: operations per `Submit` batch handed to the engine;
//! - `points_engine_commits_total`, `points_engine_entries_total`: transactions the engine
//!   committed and the entries they made durable (their ratio is the mean commit batch);
//! - `points_engine_conflicts_total`, `points_engine_failed_commits_total`: batches decided
//!   again after another server wrote first, and commits that failed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Latency buckets, in microseconds.
const LATENCY_BUCKETS_US: [u64; 12] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    5_000_000,
];
/// Batch-size buckets.
const BATCH_BUCKETS: [u64; 8] = [1, 2, 5, 10, 50, 100, 500, 1000];

#[derive(Default, Clone)]
struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    sum: u64,
}

impl Histogram {
    fn observe(&mut self, bounds: &[u64], value: u64) {
        if self.buckets.len() != bounds.len() {
            self.buckets = vec![0; bounds.len()];
        }
        for (bound, n) in bounds.iter().zip(self.buckets.iter_mut()) {
            if value <= *bound {
                *n += 1;
            }
        }
        self.count += 1;
        self.sum = self.sum.saturating_add(value);
    }
}

#[derive(Default)]
struct State {
    /// Calls by method, then by gRPC status code (as its number).
    requests: BTreeMap<String, BTreeMap<i32, u64>>,
    latency: BTreeMap<String, Histogram>,
    rejections: BTreeMap<String, u64>,
    auth_failures: BTreeMap<String, u64>,
    entries: BTreeMap<points_core::EntryKind, u64>,
    batches: Histogram,
}

/// The process's metrics.
#[derive(Default)]
pub struct Metrics {
    state: Mutex<State>,
}

/// The process-wide metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::default)
}

fn micros_as_seconds(us: u64) -> String {
    format!("{}.{:06}", us / 1_000_000, us % 1_000_000)
}

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Records a finished call.
    pub fn request(&self, method: &str, code: tonic::Code, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        // Every call comes here: look up by borrowed name, and allocate a key only the
        // first time a method is seen.
        self.with(|s| {
            let codes = match s.requests.get_mut(method) {
                Some(codes) => codes,
                None => s.requests.entry(method.to_owned()).or_default(),
            };
            *codes.entry(code as i32).or_default() += 1;
            let latency = match s.latency.get_mut(method) {
                Some(h) => h,
                None => s.latency.entry(method.to_owned()).or_default(),
            };
            latency.observe(&LATENCY_BUCKETS_US, us);
        });
    }

    /// Records a ledger rejection.
    pub fn rejection(&self, reason: &str) {
        self.with(|s| *s.rejections.entry(reason.to_owned()).or_default() += 1);
    }

    /// Records a call refused by authentication or policy.
    pub fn auth_failure(&self, code: tonic::Code) {
        self.with(|s| *s.auth_failures.entry(format!("{code:?}")).or_default() += 1);
    }

    /// Records an entry written by a unary write.
    pub fn entry_written(&self, kind: points_core::EntryKind) {
        self.with(|s| *s.entries.entry(kind).or_default() += 1);
    }

    /// Records the size of a batch handed to the engine.
    pub fn batch(&self, size: usize) {
        let size = u64::try_from(size).unwrap_or(u64::MAX);
        self.with(|s| s.batches.observe(&BATCH_BUCKETS, size));
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.with(|s| {
            let _ = writeln!(out, "# HELP points_grpc_requests_total gRPC calls by method and status code.\n# TYPE points_grpc_requests_total counter");
            for (method, codes) in &s.requests {
                for (code, n) in codes {
                    let code = tonic::Code::from_i32(*code);
                    let _ = writeln!(
                        out,
                        "points_grpc_requests_total{{method=\"{method}\",code=\"{code:?}\"}} {n}"
                    );
                }
            }
            let _ = writeln!(out, "# HELP points_grpc_request_duration_seconds gRPC call latency.\n# TYPE points_grpc_request_duration_seconds histogram");
            for (method, h) in &s.latency {
                for (bound, n) in LATENCY_BUCKETS_US.iter().zip(&h.buckets) {
                    let _ = writeln!(out, "points_grpc_request_duration_seconds_bucket{{method=\"{method}\",le=\"{}\"}} {n}", micros_as_seconds(*bound));
                }
                let _ = writeln!(out, "points_grpc_request_duration_seconds_bucket{{method=\"{method}\",le=\"+Inf\"}} {}", h.count);
                let _ = writeln!(out, "points_grpc_request_duration_seconds_sum{{method=\"{method}\"}} {}", micros_as_seconds(h.sum));
                let _ = writeln!(out, "points_grpc_request_duration_seconds_count{{method=\"{method}\"}} {}", h.count);
            }
            let _ = writeln!(out, "# HELP points_rejections_total Ledger rejections by reason.\n# TYPE points_rejections_total counter");
            for (reason, n) in &s.rejections {
                let _ = writeln!(out, "points_rejections_total{{reason=\"{reason}\"}} {n}");
            }
            let _ = writeln!(out, "# HELP points_auth_failures_total Calls refused by authentication or policy.\n# TYPE points_auth_failures_total counter");
            for (code, n) in &s.auth_failures {
                let _ = writeln!(out, "points_auth_failures_total{{code=\"{code}\"}} {n}");
            }
            let _ = writeln!(out, "# HELP points_entries_written_total Entries written by unary writes, by kind.\n# TYPE points_entries_written_total counter");
            for (kind, n) in &s.entries {
                let _ = writeln!(out, "points_entries_written_total{{kind=\"{kind:?}\"}} {n}");
            }
            let _ = writeln!(out, "# HELP points_submit_batch_size Operations per Submit batch.\n# TYPE points_submit_batch_size histogram");
            let mut buckets = s.batches.buckets.clone();
            buckets.resize(BATCH_BUCKETS.len(), 0);
            for (bound, n) in BATCH_BUCKETS.iter().zip(&buckets) {
                let _ = writeln!(out, "points_submit_batch_size_bucket{{le=\"{bound}\"}} {n}");
            }
            let _ = writeln!(out, "points_submit_batch_size_bucket{{le=\"+Inf\"}} {}", s.batches.count);
            let _ = writeln!(out, "points_submit_batch_size_sum {}", s.batches.sum);
            let _ = writeln!(out, "points_submit_batch_size_count {}", s.batches.count);
        });
        out
    }
}

/// The engine's counters in the exposition format.
pub fn render_engine(stats: &crate::engine::EngineStats) -> String {
    let mut out = String::new();
    for (name, help, value) in [
        (
            "points_engine_commits_total",
            "Transactions committed with at least one new entry.",
            stats.batches,
        ),
        (
            "points_engine_entries_total",
            "Entries made durable by this server's engine.",
            stats.entries,
        ),
        (
            "points_engine_conflicts_total",
            "Batches decided again because another server wrote first.",
            stats.conflicts,
        ),
        (
            "points_engine_failed_commits_total",
            "Commits that failed (their requests were answered UNAVAILABLE).",
            stats.failed_commits,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
        );
    }
    out
}

/// Serves `GET /metrics` (any path, in fact) on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, engine: crate::engine::Engine) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            continue;
        };
        let engine = engine.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            // Read the request head; its content does not matter.
            let _ = tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await;
            let mut body = global().render();
            body.push_str(&render_engine(&engine.stats()));
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(body.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}
