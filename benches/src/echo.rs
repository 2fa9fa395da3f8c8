//! `points-load echo`: the ceiling of tonic itself on this machine. A grpc.health.v1
//! server (tonic-health) runs in-process on its own runtime and threads, as a separate
//! server process would, and the same number of clients over the same number of HTTP/2
//! channels call Health.Check in a closed loop, with an authorization header like the
//! real calls carry. With `addr` set, the clients call that server's health service
//! instead (e.g. points-server, through its auth layer).

use crate::client::{self, Key};
use crate::stats::{per_second, ErrorCounts, Latency, LatencySummary};
use anyhow::Context as _;
use serde::Serialize;
use std::time::{Duration, Instant};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// How to measure the echo ceiling.
#[derive(Clone, Debug)]
pub struct EchoOptions {
    /// Concurrent clients.
    pub concurrency: usize,
    /// HTTP/2 connections.
    pub channels: usize,
    /// How long.
    pub duration: Duration,
    /// Call this server instead of an in-process one.
    pub addr: Option<String>,
    /// The API key to send (any string for the in-process server).
    pub key: String,
}

/// What the echo run measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct EchoReport {
    /// Which server answered: `in-process tonic-health` or the address.
    pub server: String,
    /// Concurrent clients.
    pub concurrency: usize,
    /// HTTP/2 connections.
    pub channels: usize,
    /// Wall time, seconds.
    pub elapsed_s: f64,
    /// Calls answered OK.
    pub requests: u64,
    /// Calls per second.
    pub requests_per_s: f64,
    /// Latency per call.
    pub latency: LatencySummary,
    /// Failures by code.
    pub errors: ErrorCounts,
}

impl EchoReport {
    /// A human-readable summary.
    pub fn render(&self) -> String {
        format!(
            "echo ({}): {} clients over {} channels, {:.2} s: {} requests, {:.0} requests/s, {} errors\nlatency: {}\n",
            self.server,
            self.concurrency,
            self.channels,
            self.elapsed_s,
            self.requests,
            self.requests_per_s,
            self.errors.total(),
            self.latency.line()
        )
    }
}

/// Starts a tonic-health server on 127.0.0.1 on its own thread and runtime. Returns its
/// address and a sender that stops it.
fn spawn_echo_server() -> anyhow::Result<(
    String,
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
)> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding the echo server")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?.to_string();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("echo-server".to_owned())
        .spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .thread_name("echo-server-rt")
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                let (_reporter, service) = tonic_health::server::health_reporter();
                let _ = tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming_shutdown(
                        tokio_stream::wrappers::TcpListenerStream::new(listener),
                        async {
                            let _ = stop_rx.await;
                        },
                    )
                    .await;
            });
        })
        .context("starting the echo server thread")?;
    Ok((addr, stop_tx, thread))
}

/// Measures Health.Check calls per second.
pub async fn echo(opts: &EchoOptions) -> anyhow::Result<EchoReport> {
    let (addr, server) = match &opts.addr {
        Some(a) => (a.clone(), None),
        None => {
            let (a, stop, thread) = spawn_echo_server()?;
            (a, Some((stop, thread)))
        }
    };
    let channels = client::connect(&addr, opts.channels).await?;
    let key = Key::new(&opts.key)?;
    let start = Instant::now() + Duration::from_millis(20);
    let end = start + opts.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..opts.concurrency.max(1) {
        let mut health = HealthClient::new(channels[w % channels.len()].clone());
        let key = key.clone();
        tasks.spawn(async move {
            tokio::time::sleep_until(start.into()).await;
            let mut latency = Latency::new();
            let mut errors = ErrorCounts::default();
            let mut ok = 0u64;
            while Instant::now() < end {
                let sent = Instant::now();
                let request = key.req(HealthCheckRequest {
                    service: String::new(),
                });
                match health.check(request).await {
                    Ok(_) => {
                        ok += 1;
                        latency.record(sent.elapsed());
                    }
                    Err(s) => errors.add(&client::status_key(&s)),
                }
            }
            (ok, latency, errors, Instant::now())
        });
    }
    let mut report = EchoReport {
        server: if opts.addr.is_some() {
            addr.clone()
        } else {
            "in-process tonic-health".to_owned()
        },
        concurrency: opts.concurrency.max(1),
        channels: channels.len(),
        ..Default::default()
    };
    let mut latency = Latency::new();
    let mut last = start;
    while let Some(joined) = tasks.join_next().await {
        let (ok, l, e, finished) = joined.context("an echo client panicked")?;
        report.requests += ok;
        latency.merge(&l);
        report.errors.merge(&e);
        last = last.max(finished);
    }
    let elapsed = last.saturating_duration_since(start);
    report.elapsed_s = elapsed.as_secs_f64();
    report.requests_per_s = per_second(report.requests, elapsed).round();
    report.latency = latency.summary();
    drop(channels);
    if let Some((stop, thread)) = server {
        let _ = stop.send(());
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
    Ok(report)
}
