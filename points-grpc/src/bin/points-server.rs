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
    let huge_pages_off = disable_transparent_huge_pages();
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
    match huge_pages_off {
        Some(Ok(())) => tracing::debug!("transparent huge pages off for this process"),
        Some(Err(e)) => tracing::debug!(error = %e, "transparent huge pages left as they were"),
        None => {}
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(points_grpc::server::run(config))
}

/// Turns transparent huge pages off for the whole process, unless the operator chose through
/// mimalloc's own `MIMALLOC_ALLOW_THP`. mimalloc asks for huge pages on its arenas, and on a
/// kernel that grants them (`madvise` mode) a 2 MiB page stays resident while any byte of it
/// is used and costs 2 MiB of zeroing when first touched. With 1,000,000 members the server
/// settled at about 410 MB with them and 360 MB without, and Submit ran faster without (see
/// BENCHMARKS.md). `None` when nothing was attempted.
fn disable_transparent_huge_pages() -> Option<std::io::Result<()>> {
    if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
        return None;
    }
    #[cfg(target_os = "linux")]
    {
        Some(rustix::thread::disable_transparent_huge_pages(true).map_err(std::io::Error::from))
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}
