//! Assembles and runs the server: engine, API keys (with the bootstrap admin key), the
//! four services behind the auth layer, health, reflection, metrics, the expiry sweep,
//! and graceful shutdown.

use crate::auth::{AuthLayer, Keys};
use crate::config::Config;
use crate::engine::{ApiRole, Engine};
use crate::pb;
use crate::service::admin::AdminService;
use crate::service::disclosure::DisclosureService;
use crate::service::ledger::LedgerService;
use crate::service::pos::PointOfSaleService;
use crate::service::recording::RecordingService;
use crate::service::reports::ReportsService;
use crate::service::Ctx;
use anyhow::Context as _;
use points_core::{Actor, Command, Request, RequestId};
use std::io::Write as _;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Creates the bootstrap admin key when no key exists, and prints it once to stdout.
pub async fn bootstrap_key(keys: &Keys) -> anyhow::Result<Option<String>> {
    if !keys.is_empty() {
        return Ok(None);
    }
    let (_, secret) = keys
        .create(
            "bootstrap admin".to_owned(),
            ApiRole::Admin,
            None,
            None,
            None,
        )
        .await
        .map_err(|e| anyhow::anyhow!("creating the bootstrap key: {e}"))?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "bootstrap admin key: {secret}")?;
    out.flush()?;
    Ok(Some(secret))
}

/// One expiry sweep: every member with expired lots in every program gets an Expire
/// command from the system actor.
pub async fn expiry_sweep(engine: &Engine) {
    let now = crate::engine::now();
    for spec in engine.programs() {
        let program = spec.id();
        let Ok(members) = engine.read(program, |l| l.members_with_expired_lots(now)) else {
            continue;
        };
        if members.is_empty() {
            continue;
        }
        let requests: Vec<Request> = members
            .iter()
            .filter_map(|&member| {
                let request_id = RequestId::new(uuid::Uuid::new_v4()).ok()?;
                Some(Request {
                    request_id,
                    actor: Actor::System,
                    command: Command::Expire { member },
                })
            })
            .collect();
        let results = engine.submit_many(program, requests).await;
        let expired = results.iter().filter(|r| r.is_ok()).count();
        tracing::info!(%program, members = members.len(), expired, "expiry sweep");
    }
}

/// The server's TLS configuration from PEM files.
fn tls_config(tls: &crate::config::TlsFiles) -> anyhow::Result<tonic::transport::ServerTlsConfig> {
    use tonic::transport::{Certificate, Identity, ServerTlsConfig};
    let read = |path: &std::path::Path| {
        std::fs::read(path).with_context(|| format!("reading {}", path.display()))
    };
    let mut config =
        ServerTlsConfig::new().identity(Identity::from_pem(read(&tls.cert)?, read(&tls.key)?));
    if let Some(ca) = &tls.client_ca {
        config = config.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(config)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// Runs the server until SIGTERM or SIGINT, then drains in-flight calls (up to the grace
/// period) and shuts the engine down.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let engine = Engine::open(config.store.clone(), config.engine.clone())
        .await
        .context("opening the store")?;
    tracing::info!(store = engine.store_kind(), "engine open");
    let keys = Keys::load(engine.clone())
        .await
        .map_err(|e| anyhow::anyhow!("loading API keys: {e}"))?;
    bootstrap_key(&keys).await?;

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let ctx = Ctx::new(engine.clone(), keys.clone(), shutdown_rx);
    let transparency =
        crate::service::disclosure::Transparency::new(engine.clone(), config.checkpoint_every);

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<pb::point_of_sale_server::PointOfSaleServer<PointOfSaleService>>()
        .await;
    health_reporter
        .set_serving::<pb::recording_server::RecordingServer<RecordingService>>()
        .await;
    health_reporter
        .set_serving::<pb::admin_server::AdminServer<AdminService>>()
        .await;
    health_reporter
        .set_serving::<pb::ledger_server::LedgerServer<LedgerService>>()
        .await;
    health_reporter
        .set_serving::<pb::volunteering_server::VolunteeringServer<
            crate::service::volunteer::VolunteerService,
        >>()
        .await;
    health_reporter
        .set_serving::<pb::reports_server::ReportsServer<ReportsService>>()
        .await;
    health_reporter
        .set_serving::<pb::disclosure_server::DisclosureServer<DisclosureService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building the reflection service")?;

    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let local = listener.local_addr()?;

    let metrics_task = match config.metrics_listen {
        Some(addr) => {
            let metrics = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding metrics {addr}"))?;
            let bound = metrics.local_addr()?;
            println!("metrics listening on http://{bound}/metrics");
            Some(tokio::spawn(crate::metrics::serve(metrics, engine.clone())))
        }
        None => None,
    };
    let board_task = match config.board_listen {
        Some(addr) => {
            let board = TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the board {addr}"))?;
            let bound = board.local_addr()?;
            println!("board listening on http://{bound}/");
            Some(tokio::spawn(crate::board::serve(
                board,
                transparency.clone(),
            )))
        }
        None => None,
    };
    // Signs the disclosure checkpoints that fall due every checkpoint_every entries, also
    // for entries other servers on a shared store append.
    let checkpoint_task = (config.checkpoint_every > 0).then(|| {
        let transparency = transparency.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_secs(1));
            loop {
                interval.tick().await;
                transparency.sweep().await;
            }
        })
    });
    println!("points-server listening on {local}");
    let _ = std::io::stdout().flush();
    tracing::info!(%local, "serving gRPC");

    // Keys created or revoked through another server on a shared store reach this one's
    // cache within this interval (changes made here are visible at once).
    let refresh_task = {
        let keys = keys.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_secs(10));
            interval.tick().await;
            loop {
                interval.tick().await;
                if let Err(error) = keys.refresh().await {
                    tracing::warn!(%error, "refreshing API keys failed");
                }
            }
        })
    };
    let sweep_task = (config.expiry_sweep_secs > 0).then(|| {
        let engine = engine.clone();
        let every = Duration::from_secs(config.expiry_sweep_secs);
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(every);
            interval.tick().await;
            loop {
                interval.tick().await;
                expiry_sweep(&engine).await;
            }
        })
    });

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &config.tls {
        builder = builder
            .tls_config(tls_config(tls)?)
            .context("configuring TLS")?;
        tracing::info!(mutual = tls.client_ca.is_some(), "serving TLS");
    }
    let server = builder
        .layer(AuthLayer::new(keys))
        // Inside auth, so that limits apply per authenticated key (issue 9).
        .layer(crate::overload::OverloadLayer::new(config.overload))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(pb::point_of_sale_server::PointOfSaleServer::new(
            PointOfSaleService::new(ctx.clone()),
        ))
        .add_service(pb::recording_server::RecordingServer::new(
            RecordingService::new(ctx.clone()),
        ))
        .add_service(pb::admin_server::AdminServer::new(AdminService::new(
            ctx.clone(),
        )))
        .add_service(pb::ledger_server::LedgerServer::new(LedgerService::new(
            ctx.clone(),
        )))
        // Issue 5: micro-wishes, volunteer events and merchant catalogues.
        .add_service(pb::volunteering_server::VolunteeringServer::new(
            crate::service::volunteer::VolunteerService::new(ctx.clone()),
        ))
        .add_service(pb::reports_server::ReportsServer::new(ReportsService::new(
            ctx.clone(),
        )))
        .add_service(pb::settlement_server::SettlementServer::new(
            crate::service::settlement::SettlementService::new(ctx.clone()),
        ))
        .add_service(pb::disclosure_server::DisclosureServer::new(
            DisclosureService::new(ctx.clone(), transparency.clone()),
        ))
        // Accepted sockets get TCP_NODELAY: without it a response written in two pieces
        // (data, then trailers) waits for the client's delayed ACK, about 40 ms.
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            async {
                let _ = stop_rx.await;
            },
        );
    let mut serving = tokio::spawn(server);

    tokio::select! {
        () = shutdown_signal() => {
            tracing::info!("shutdown requested: draining in-flight calls");
        }
        result = &mut serving => {
            result.context("server task")?.context("serving")?;
        }
    }
    let _ = shutdown_tx.send(true);
    let _ = stop_tx.send(());
    health_reporter
        .set_not_serving::<pb::point_of_sale_server::PointOfSaleServer<PointOfSaleService>>()
        .await;
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    if !serving.is_finished() {
        match tokio::time::timeout(grace, &mut serving).await {
            Ok(_) => tracing::info!("in-flight calls drained"),
            Err(_) => {
                tracing::warn!("grace period over; closing remaining calls");
                serving.abort();
            }
        }
    }
    refresh_task.abort();
    if let Some(task) = sweep_task {
        task.abort();
    }
    if let Some(task) = metrics_task {
        task.abort();
    }
    for task in [board_task, checkpoint_task].into_iter().flatten() {
        task.abort();
    }
    engine.shutdown().await;
    tracing::info!("engine shut down");
    Ok(())
}
