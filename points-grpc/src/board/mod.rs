//! The public board (issue 7): a read-only web page, served from the server's own process
//! on a separate HTTP port (`--board-listen`), that shows a community's disclosure: totals,
//! points earned and spent per month, the volunteers' ranking under pseudonyms, recent
//! pseudonymised entries and the latest signed checkpoint, with a "check my record" box
//! that verifies entries in the browser (WebCrypto SHA-256 for the RFC 6962 inclusion
//! proof, Ed25519 for the checkpoint's signature).
//!
//! The static files are compiled in; the JSON endpoints only ever serve what the public
//! report holds (no personal data), so the board needs no API key:
//!
//! - `GET /api/programs`: `[{id, name}]`;
//! - `GET /api/org-units?program=`: `[{id, name, parent}]`;
//! - `GET /api/board?program=&org_unit=`: the report's header, summary, the latest 20 rows
//!   and the checkpoint with its signed note;
//! - `GET /api/rows?program=&org_unit=&pseudonym=`: that pseudonym's rows with their proofs;
//! - `GET /api/proof?program=&sequence=`: an entry's hash and inclusion proof against the
//!   latest checkpoint;
//! - `GET /api/report?program=&org_unit=`: the whole public report (the `points verify
//!   report` file).
//!
//! It is a deliberately small HTTP/1.1 server: GET only, one request per connection, the
//! request head capped at 8 KiB.

use crate::service::disclosure::Transparency;
use points_core::report::{PublicReport, ReportScope};
use points_core::{OrgUnitId, ProgramId};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const INDEX_HTML: &str = include_str!("index.html");
const BOARD_JS: &str = include_str!("board.js");
const BOARD_CSS: &str = include_str!("board.css");
/// Rows the board shows as recent entries.
const RECENT_ROWS: usize = 20;

/// Serves the board on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, transparency: Arc<Transparency>) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            continue;
        };
        let transparency = transparency.clone();
        tokio::spawn(async move {
            let _ = handle(socket, &transparency).await;
        });
    }
}

async fn handle(
    mut socket: tokio::net::TcpStream,
    transparency: &Transparency,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let n = match tokio::time::timeout(Duration::from_secs(5), socket.read(&mut buf)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => n,
            Ok(Err(e)) => return Err(e),
        };
        head.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&head);
    let mut parts = text.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    let (status, content_type, body) = if method == "GET" {
        route(target, transparency).await
    } else {
        (405, "text/plain", "only GET".as_bytes().to_vec())
    };
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\n\
         cache-control: no-store\r\nx-content-type-options: nosniff\r\n\
         content-security-policy: default-src 'self'; img-src 'self' data:\r\n\
         connection: close\r\n\r\n",
        body.len()
    );
    socket.write_all(head.as_bytes()).await?;
    socket.write_all(&body).await?;
    socket.shutdown().await
}

type Reply = (u16, &'static str, Vec<u8>);

fn json_reply(value: &Value) -> Reply {
    (200, "application/json", value.to_string().into_bytes())
}

fn error_reply(code: u16, message: &str) -> Reply {
    (
        code,
        "application/json",
        json!({ "error": message }).to_string().into_bytes(),
    )
}

/// Decodes `%XX` and `+` in a query component.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| char::from(b).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(hi), Some(lo)) => {
                        out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                        i += 2;
                    }
                    _ => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| decode(v))
    })
}

async fn route(target: &str, transparency: &Transparency) -> Reply {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match path {
        "/" | "/index.html" => (200, "text/html; charset=utf-8", INDEX_HTML.into()),
        "/board.js" => (200, "text/javascript; charset=utf-8", BOARD_JS.into()),
        "/board.css" => (200, "text/css; charset=utf-8", BOARD_CSS.into()),
        "/api/programs" => {
            let programs: Vec<Value> = transparency
                .engine()
                .programs()
                .iter()
                .map(|s| json!({ "id": s.id().to_string(), "name": s.name() }))
                .collect();
            json_reply(&Value::Array(programs))
        }
        _ if path.starts_with("/api/") => match api(path, query, transparency).await {
            Ok(reply) => reply,
            Err(reply) => reply,
        },
        _ => error_reply(404, "no such page"),
    }
}

fn program_param(query: &str) -> Result<ProgramId, Reply> {
    param(query, "program")
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| error_reply(400, "program must be a programme UUID"))
}

fn org_param(query: &str) -> Result<Option<OrgUnitId>, Reply> {
    match param(query, "org_unit").filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| error_reply(400, "org_unit must be a UUID")),
    }
}

fn status_reply(status: &tonic::Status) -> Reply {
    let code = match status.code() {
        tonic::Code::NotFound => 404,
        tonic::Code::InvalidArgument | tonic::Code::OutOfRange => 400,
        _ => 503,
    };
    error_reply(code, status.message())
}

async fn report(query: &str, transparency: &Transparency) -> Result<Arc<PublicReport>, Reply> {
    let program = program_param(query)?;
    let scope = ReportScope {
        org_unit: org_param(query)?,
        from: None,
        until: None,
    };
    transparency
        .report(program, scope, 0)
        .await
        .map_err(|s| status_reply(&s))
}

async fn api(path: &str, query: &str, transparency: &Transparency) -> Result<Reply, Reply> {
    match path {
        "/api/org-units" => {
            let program = program_param(query)?;
            let units = transparency
                .engine()
                .read(program, |l| l.org_units())
                .map_err(|_| error_reply(404, "unknown programme"))?;
            let units: Vec<Value> = units
                .iter()
                .map(|u| {
                    json!({
                        "id": u.id.to_string(),
                        "name": u.name,
                        "parent": u.parent.map(|p| p.to_string()),
                    })
                })
                .collect();
            Ok(json_reply(&Value::Array(units)))
        }
        "/api/board" => {
            let report = report(query, transparency).await?;
            let start = report.rows.len().saturating_sub(RECENT_ROWS);
            let recent: Vec<&points_core::report::PublicRow> =
                report.rows[start..].iter().rev().collect();
            let c = &report.checkpoint;
            Ok(json_reply(&json!({
                "program": report.program.to_string(),
                "program_name": report.program_name,
                "org_unit": report.org_unit.map(|u| u.to_string()),
                "org_unit_name": report.org_unit_name,
                "decimal_places": report.decimal_places,
                "names": report.names,
                "summary": report.summary,
                "recent": recent,
                "checkpoint": {
                    "tree_size": c.checkpoint.tree_size,
                    "root": c.checkpoint.root.to_hex(),
                    "journal_head": c.checkpoint.journal_head.to_hex(),
                    "issued_at_ms": c.checkpoint.issued_at.millis(),
                    "public_key": c.public_key,
                    "signature": c.signature,
                    "note": c.checkpoint.note(),
                },
            })))
        }
        "/api/rows" => {
            let report = report(query, transparency).await?;
            let who = param(query, "pseudonym").unwrap_or_default();
            let rows: Vec<&points_core::report::PublicRow> = report
                .rows
                .iter()
                .filter(|r| r.pseudonym == who.trim())
                .collect();
            Ok(json_reply(&json!({ "rows": rows })))
        }
        "/api/proof" => {
            let program = program_param(query)?;
            let sequence: u64 = param(query, "sequence")
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| error_reply(400, "sequence must be a number"))?;
            let proof = transparency
                .inclusion(program, sequence, 0, false)
                .await
                .map_err(|s| status_reply(&s))?;
            Ok(json_reply(&json!({
                "sequence": proof.sequence,
                "entry_hash": proof.entry_hash,
                "tree_size": proof.tree_size,
                "path": proof.path,
            })))
        }
        "/api/report" => {
            let report = report(query, transparency).await?;
            Ok(json_reply(
                &serde_json::to_value(&*report).unwrap_or_default(),
            ))
        }
        _ => Err(error_reply(404, "no such endpoint")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_decoded() {
        assert_eq!(param("a=1&b=x%20y+z", "b").as_deref(), Some("x y z"));
        assert_eq!(param("a=1", "b"), None);
        assert_eq!(decode("%zz%4"), "%zz%4");
        assert_eq!(decode("%41"), "A");
    }
}
