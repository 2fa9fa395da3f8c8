//! Starting a real `points-server` process: find the binary, start it on a free port,
//! read the bootstrap admin key and the bound address from its stdout, stop it.

use anyhow::{bail, Context as _};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// The first `name` found in the directories above the running executable, e.g.
/// `target/release/points-server` for a test running as `target/release/deps/x-hash`.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    exe.ancestors()
        .skip(1)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Resident memory of a process in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A running points-server, killed when dropped.
pub struct ServerProcess {
    child: Child,
    /// `host:port` it serves gRPC on.
    pub addr: String,
    /// The bootstrap admin key it printed.
    pub admin_key: String,
    /// Its process id.
    pub pid: u32,
}

impl ServerProcess {
    /// Starts `bin` with `args` (add `--listen 127.0.0.1:0` for a free port) and waits up
    /// to `timeout` for it to print its bootstrap key and listening address. Its stderr
    /// (logs) goes to `stderr`.
    pub async fn spawn(
        bin: &Path,
        args: &[String],
        stderr: Stdio,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(bin)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id().context("the server exited at once")?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let mut lines = BufReader::new(stdout).lines();
        let mut admin_key = None;
        let mut addr = None;
        let read = async {
            while admin_key.is_none() || addr.is_none() {
                let Some(line) = lines.next_line().await? else {
                    bail!("the server closed stdout before printing its key and address");
                };
                if let Some(k) = line.strip_prefix("bootstrap admin key:") {
                    admin_key = Some(k.trim().to_owned());
                } else if let Some(a) = line.strip_prefix("points-server listening on") {
                    addr = Some(a.trim().to_owned());
                }
            }
            Ok(())
        };
        match tokio::time::timeout(timeout, read).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => bail!("the server printed no key and address within {timeout:?}"),
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(ServerProcess {
            child,
            addr: addr.context("no address")?,
            admin_key: admin_key.context("no bootstrap key (was the data dir fresh?)")?,
            pid,
        })
    }

    /// Resident memory now, KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid)
    }

    /// Asks the server to stop (SIGTERM), waits up to `grace`, then kills it.
    pub async fn stop(mut self, grace: Duration) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .await;
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            self.child.kill().await?;
        }
        Ok(())
    }
}
