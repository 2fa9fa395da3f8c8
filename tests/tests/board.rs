//! The public board in a real headless browser (Debian's chromium, driven through
//! chromedriver's WebDriver protocol with a few lines of HTTP, no extra crates): a community
//! seeded through the real server, a screenshot, the seeded data on the page, and the
//! "check my record" box accepting a real entry and refusing a forged one.
//!
//! Skipped (with a notice) when /usr/bin/chromium or chromedriver is missing, unless
//! `POINTS_REQUIRE_BROWSER=1` (CI sets it after installing them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod seed;

use common::cli::Cli;
use common::Server;
use seed::seed;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 request with a JSON body; the JSON response (chunked or not).
fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Value {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // chromedriver keeps connections open whatever the request says: read the head, then
    // exactly content-length bytes (or chunks to the last one).
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let split = loop {
        if let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break split;
        }
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed before the response head");
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    let length = head.lines().find_map(|l| {
        l.strip_prefix("content-length:")
            .and_then(|v| v.trim().parse::<usize>().ok())
    });
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let body = raw.len() - split - 4;
        let done = match length {
            Some(length) => body >= length,
            None if chunked => raw.ends_with(b"0\r\n\r\n"),
            None => false,
        };
        if done {
            break;
        }
        let n = stream.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let mut payload = raw[split + 4..].to_vec();
    if chunked {
        let mut out = Vec::new();
        let mut rest = &payload[..];
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size =
                usize::from_str_radix(std::str::from_utf8(&rest[..line_end]).unwrap().trim(), 16)
                    .unwrap();
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[line_end + 2..line_end + 2 + size]);
            rest = &rest[line_end + 4 + size..];
        }
        payload = out;
    }
    serde_json::from_slice(&payload).unwrap_or(Value::Null)
}

/// A chromedriver process and one browser session.
struct Browser {
    driver: Child,
    port: u16,
    session: String,
}

impl Browser {
    fn start(profile: &Path) -> Browser {
        let port = free_port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting chromedriver");
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,1800",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([format!("--user-data-dir={}", profile.display())])
        .collect::<Vec<_>>();
        // From here on, Drop stops chromedriver (and its browser) even if a step fails.
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
        };
        let created = http(
            port,
            "POST",
            "/session",
            Some(&json!({
                "capabilities": { "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": { "binary": CHROMIUM, "args": args }
                }}
            })),
        );
        browser.session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {created}"))
            .to_owned();
        browser
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let reply = http(
            self.port,
            method,
            &format!("/session/{}{path}", self.session),
            body,
        );
        assert!(
            reply["value"]["error"].is_null(),
            "{method} {path}: {reply}"
        );
        reply["value"].clone()
    }

    fn open(&self, url: &str) {
        self.call("POST", "/url", Some(&json!({ "url": url })));
    }

    /// Runs a script in the page and returns its value.
    fn script(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// Waits (up to 30 s) until `script` returns something other than null or false.
    fn until(&self, script: &str, args: Value) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let value = self.script(script, args.clone());
            if !value.is_null() && value != Value::Bool(false) {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out waiting for: {script}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn text(&self, id: &str) -> String {
        self.script(
            "return document.getElementById(arguments[0]).textContent;",
            json!([id]),
        )
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let data = self.call("GET", "/screenshot", None);
        base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap())
            .unwrap()
    }

    /// Fills the check box's fields, submits, and returns (status, message).
    fn check(&self, fields: &[(&str, &str)], button: &str) -> (String, String) {
        self.script(
            "document.getElementById('check-result').dataset.status = 'idle';
             for (const [id, value] of arguments[0]) document.getElementById(id).value = value;
             document.getElementById(arguments[1]).click();",
            json!([fields, button]),
        );
        let status = self.until(
            "const s = document.getElementById('check-result').dataset.status;
             return s === 'idle' ? null : s;",
            json!([]),
        );
        (
            status.as_str().unwrap().to_owned(),
            self.text("check-result"),
        )
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Deleting the session closes the browser; then chromedriver goes.
        if !self.session.is_empty() {
            let _ = http(
                self.port,
                "DELETE",
                &format!("/session/{}", self.session),
                None,
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn target_dir() -> PathBuf {
    // target/<profile>/deps/<test binary>
    let exe = std::env::current_exe().unwrap();
    exe.ancestors().nth(3).unwrap().to_path_buf()
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(png: &[u8]) -> (u32, u32) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    assert_eq!(&png[12..16], b"IHDR");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    (be(&png[16..20]), be(&png[20..24]))
}

#[test]
fn the_board_shows_a_seeded_community_and_checks_records_in_the_browser() {
    if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
        assert!(
            std::env::var("POINTS_REQUIRE_BROWSER").as_deref() != Ok("1"),
            "chromium and chromedriver are required"
        );
        eprintln!("skipping: no {CHROMIUM} or {CHROMEDRIVER}");
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let board_port = free_port();
    let board_addr = format!("127.0.0.1:{board_port}");
    let server = Server::start_in(
        &temp.path().join("data"),
        &["--board-listen", &board_addr, "--checkpoint-every", "0"],
    );
    let mut cli = Cli::admin(&server);
    let seeded = seed(&mut cli, temp.path());
    cli.ok(&["disclosure", "sign"]);
    let report_file = temp.path().join("report.json");
    let report_path = report_file.to_str().unwrap();
    cli.ok(&[
        "disclosure",
        "report",
        "--org-unit",
        &seeded.community,
        "--out",
        report_path,
    ]);
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&report_file).unwrap()).unwrap();
    let mine = cli.ok(&[
        "verify",
        "pseudonym",
        "--code",
        "DH-0001",
        "--report",
        report_path,
    ]);
    let pseudonym = mine
        .lines()
        .next()
        .unwrap()
        .strip_prefix("pseudonym: ")
        .unwrap()
        .to_owned();
    assert_eq!(report["summary"]["ranking"][0]["pseudonym"], pseudonym);
    // A real entry: the first approval row of DH-0001.
    let row = report["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["pseudonym"] == pseudonym)
        .unwrap();
    let sequence = row["sequence"].to_string();
    let entry_hash = row["entry_hash"].as_str().unwrap().to_owned();

    let browser = Browser::start(&temp.path().join("chromium-profile"));
    browser.open(&format!(
        "http://{board_addr}/?program={}&org_unit={}",
        cli.program, seeded.community
    ));
    browser.until("return document.body.dataset.ready || null;", json!([]));
    assert_eq!(
        browser.script("return document.body.dataset.ready;", json!([])),
        "true"
    );

    // The seeded community's real figures: 40 points of service (4 hours), 12.50 spent.
    assert_eq!(browser.text("program-name"), "Donghu volunteer points");
    assert_eq!(browser.text("org-unit-name"), "Donghu");
    assert_eq!(browser.text("total-service"), "40.00");
    assert_eq!(browser.text("total-hours"), "4");
    assert_eq!(browser.text("total-volunteers"), "2");
    assert_eq!(browser.text("total-spent"), "12.50");
    let first = browser.script(
        "return Array.from(document.querySelectorAll('#ranking tbody tr')[0].cells, c => c.textContent);",
        json!([]),
    );
    assert_eq!(first, json!(["1", pseudonym, "30.00", "3"]));
    let merchants = browser.script(
        "return document.querySelector('#merchants tbody').textContent;",
        json!([]),
    );
    assert_eq!(merchants, "Corner cafe12.50");
    let bars = browser.script(
        "return document.querySelectorAll('#chart svg rect.bar-earned').length;",
        json!([]),
    );
    assert!(bars.as_u64().unwrap() >= 2, "{bars}");
    assert_eq!(
        browser.text("cp-size"),
        report["checkpoint"]["checkpoint"]["tree_size"].to_string()
    );
    // Ed25519 in this browser's WebCrypto verified the checkpoint's signature.
    assert_eq!(
        browser.script(
            "return document.getElementById('cp-signature').dataset.status;",
            json!([])
        ),
        "valid"
    );

    let png = browser.screenshot();
    let (width, height) = png_size(&png);
    assert!(width >= 800 && height >= 600, "{width}x{height}");
    assert!(png.len() > 20_000, "a screenshot of {} bytes", png.len());
    let shot = target_dir().join("board-screenshot.png");
    std::fs::write(&shot, &png).unwrap();
    eprintln!("screenshot: {}", shot.display());

    // "Check my record": by pseudonym, then a real entry, then a forged one.
    let (status, message) = browser.check(&[("check-pseudonym", &pseudonym)], "check-button");
    assert_eq!(status, "ok", "{message}");
    assert!(message.contains("all 4 of your entries"), "{message}");
    let (status, message) = browser.check(
        &[("check-sequence", &sequence), ("check-hash", &entry_hash)],
        "check-entry-button",
    );
    assert_eq!(status, "ok", "{message}");
    assert!(
        message.contains(&format!("entry {sequence} with this hash is in")),
        "{message}"
    );
    let mut forged = entry_hash.clone().into_bytes();
    forged[0] = if forged[0] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).unwrap();
    let (status, message) = browser.check(
        &[("check-sequence", &sequence), ("check-hash", &forged)],
        "check-entry-button",
    );
    assert_eq!(status, "fail", "{message}");
    assert!(
        message.contains("is NOT in the signed checkpoint"),
        "{message}"
    );
    let (status, message) = browser.check(
        &[("check-pseudonym", "000000000000000000000000")],
        "check-button",
    );
    assert_eq!(status, "fail", "{message}");
}
