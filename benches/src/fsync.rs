//! `points-load fsync`: how many durable writes per second the disk under the data
//! directory takes: write a small block, then fdatasync, in a loop.

use crate::stats::{per_second, Latency, LatencySummary};
use anyhow::Context as _;
use serde::Serialize;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What the fsync run measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct FsyncReport {
    /// The file written (removed afterwards); the first one when several threads ran.
    pub file: PathBuf,
    /// Threads, each looping on its own file.
    pub threads: usize,
    /// Bytes per write.
    pub block_bytes: usize,
    /// Wall time, seconds.
    pub elapsed_s: f64,
    /// write + fdatasync pairs done.
    pub syncs: u64,
    /// Per second.
    pub syncs_per_s: f64,
    /// Latency of one write + fdatasync.
    pub latency: LatencySummary,
}

impl FsyncReport {
    /// A human-readable summary.
    pub fn render(&self) -> String {
        format!(
            "fsync: {} thread(s), {} x ({} B write + fdatasync) in {:.2} s = {:.0} syncs/s in {}\nlatency: {}\n",
            self.threads,
            self.syncs,
            self.block_bytes,
            self.elapsed_s,
            self.syncs_per_s,
            self.file.display(),
            self.latency.line()
        )
    }
}

/// Runs [`fsync_bench`] on `threads` threads at once (each on its own file) and adds
/// up their syncs. On a VM whose idle CPUs wake slowly, one thread alone measures the
/// wake-up as much as the disk; a second thread keeps a CPU awake.
pub fn fsync_bench_threads(
    dir: &Path,
    duration: Duration,
    block: usize,
    threads: usize,
) -> anyhow::Result<FsyncReport> {
    let handles: Vec<_> = (0..threads.max(1))
        .map(|i| {
            let dir = dir.join(format!("fsync-{i}"));
            std::thread::spawn(move || {
                let report = fsync_bench(&dir, duration, block);
                let _ = std::fs::remove_dir(&dir);
                report
            })
        })
        .collect();
    let mut total: Option<FsyncReport> = None;
    let mut latency = Latency::new();
    let mut elapsed = Duration::ZERO;
    for h in handles {
        let (r, l) = h
            .join()
            .map_err(|_| anyhow::anyhow!("an fsync thread panicked"))??;
        latency.merge(&l);
        elapsed = elapsed.max(Duration::from_secs_f64(r.elapsed_s));
        total = Some(match total {
            None => r,
            Some(mut t) => {
                t.syncs += r.syncs;
                t
            }
        });
    }
    let mut t = total.ok_or_else(|| anyhow::anyhow!("no fsync thread ran"))?;
    t.threads = threads.max(1);
    t.elapsed_s = elapsed.as_secs_f64();
    t.syncs_per_s = per_second(t.syncs, elapsed).round();
    t.latency = latency.summary();
    Ok(t)
}

/// Overwrites `block` bytes at rotating offsets of a preallocated 1 MiB file in `dir`
/// and fdatasyncs after each write, for `duration`. Blocking: call from a blocking
/// context.
pub fn fsync_bench(
    dir: &Path,
    duration: Duration,
    block: usize,
) -> anyhow::Result<(FsyncReport, Latency)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(format!("points-load-fsync-{}.tmp", std::process::id()));
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    const SPAN: u64 = 1024 * 1024;
    let block = block.clamp(1, 64 * 1024);
    let zeros = vec![0u8; SPAN as usize];
    file.write_all_at(&zeros, 0)?;
    file.sync_all()?;
    let data = vec![0x5au8; block];
    let slots = (SPAN / block as u64).max(1);
    let mut latency = Latency::new();
    let mut syncs = 0u64;
    let start = Instant::now();
    let end = start + duration;
    let outcome = (|| -> anyhow::Result<()> {
        while Instant::now() < end {
            let t = Instant::now();
            file.write_all_at(&data, (syncs % slots) * block as u64)?;
            file.sync_data()?;
            latency.record(t.elapsed());
            syncs += 1;
        }
        Ok(())
    })();
    let elapsed = start.elapsed();
    drop(file);
    let _ = std::fs::remove_file(&path);
    outcome?;
    Ok((
        FsyncReport {
            file: path,
            threads: 1,
            block_bytes: block,
            elapsed_s: elapsed.as_secs_f64(),
            syncs,
            syncs_per_s: per_second(syncs, elapsed).round(),
            latency: latency.summary(),
        },
        latency,
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn counts_syncs_and_cleans_up() {
        let dir = std::env::temp_dir().join(format!("points-fsync-test-{}", std::process::id()));
        let report = fsync_bench_threads(&dir, Duration::from_millis(100), 512, 2).unwrap();
        assert!(report.syncs > 0);
        assert_eq!(report.threads, 2);
        assert!(!report.file.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
