//! Starts the real `points-server` binary on a free loopback port with a temporary data
//! directory, and hands out authenticated gRPC clients.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod cli;
pub mod grpc;
pub mod pg;

use points_grpc::pb;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tonic::transport::Channel;

/// The `points-server` binary of the profile these tests were built in, built first if
/// it is missing.
pub fn server_binary() -> PathBuf {
    binary("points-server")
}

/// A binary of `points-grpc` (`points-server` or `points`) of the profile these tests were
/// built in, built first if it is missing.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test binary>
    let profile_dir = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let bin = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        let profile = profile_dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug")
            .to_owned();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut command = Command::new(cargo);
        command.args(["build", "-p", "points-grpc", "--bin", name]);
        if profile != "debug" {
            command.args(["--profile", &profile]);
        }
        let status = command.status().expect("running cargo build");
        assert!(status.success(), "building {name} failed");
    }
    assert!(bin.exists(), "no {name} at {}", bin.display());
    bin
}

/// A running server.
pub struct Server {
    child: Option<Child>,
    /// gRPC address, host:port.
    pub addr: String,
    /// Metrics address, host:port.
    pub metrics: String,
    /// The bootstrap admin key, when this start printed one.
    pub bootstrap_key: Option<String>,
    /// The data directory.
    pub dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts a server on a fresh data directory.
    pub fn start() -> Server {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("data");
        let mut server = Server::start_in(&dir, &[]);
        server._temp = Some(temp);
        server
    }

    /// Starts a server on `dir` with extra flags.
    pub fn start_in(dir: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(server_binary())
            .args([
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                "127.0.0.1:0",
                "--expiry-sweep-secs",
                "0",
                "--shutdown-grace-secs",
                "5",
                "--log",
                "warn",
                "--data-dir",
            ])
            .arg(dir)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting points-server");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut bootstrap_key = None;
        let mut metrics = String::new();
        let addr = loop {
            let line = lines
                .next()
                .expect("points-server exited before listening")
                .unwrap();
            if let Some(key) = line.strip_prefix("bootstrap admin key: ") {
                bootstrap_key = Some(key.trim().to_owned());
            } else if let Some(m) = line.strip_prefix("metrics listening on http://") {
                metrics = m.trim_end_matches("/metrics").to_owned();
            } else if let Some(a) = line.strip_prefix("points-server listening on ") {
                break a.trim().to_owned();
            }
        };
        Server {
            child: Some(child),
            addr,
            metrics,
            bootstrap_key,
            dir: dir.to_path_buf(),
            _temp: None,
        }
    }

    /// A channel to the server.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .unwrap()
    }

    /// The bootstrap admin key.
    pub fn admin_key(&self) -> String {
        self.bootstrap_key.clone().expect("no bootstrap key")
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        for _ in 0..200 {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        panic!("points-server did not stop within 10 s of SIGTERM");
    }

    /// The server process's id, while it runs (issue 9: memory readings).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills the server with SIGKILL and reaps it (issue 9: crash tests).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Takes the data directory's temp guard, so a restarted server can reuse it.
    pub fn take_temp(&mut self) -> Option<tempfile::TempDir> {
        self._temp.take()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A request carrying `authorization: Bearer <key>`.
pub fn auth<T>(message: T, key: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    request
}

/// A fresh id.
pub fn id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The clients of one channel.
#[derive(Clone)]
pub struct Clients {
    pub pos: pb::point_of_sale_client::PointOfSaleClient<Channel>,
    pub rec: pb::recording_client::RecordingClient<Channel>,
    pub admin: pb::admin_client::AdminClient<Channel>,
    pub ledger: pb::ledger_client::LedgerClient<Channel>,
}

impl Clients {
    /// Clients over one channel.
    pub fn new(channel: Channel) -> Clients {
        Clients {
            pos: pb::point_of_sale_client::PointOfSaleClient::new(channel.clone()),
            rec: pb::recording_client::RecordingClient::new(channel.clone()),
            admin: pb::admin_client::AdminClient::new(channel.clone()),
            ledger: pb::ledger_client::LedgerClient::new(channel),
        }
    }
}

/// The ErrorInfo reason of a status.
pub fn reason(status: &tonic::Status) -> String {
    use tonic_types::StatusExt;
    status
        .get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_default()
}
