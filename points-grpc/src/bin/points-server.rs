//! `points-server`: the points ledger gRPC server. See `points-server --help`.

use clap::Parser as _;
use points_grpc::config::{Args, LogFormat};
use tracing_subscriber::EnvFilter;

/// The server allocates and frees large buffers for every batch (requests, entries,
/// encoded rows, responses); glibc's allocator hands those back to the kernel and faults
/// fresh zeroed pages in again each time, which cost a fifth of the CPU under Submit load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let config = Args::parse().resolve()?;
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    // Logs go to stderr; stdout carries only the bootstrap key and the bound addresses.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(points_grpc::server::run(config))
}
