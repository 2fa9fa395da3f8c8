//! After a run: Ledger.Audit must be clean, and every acknowledged write must be in the
//! journal with the request id and kind its receipt named.

use crate::client::{self, status_error, Clients, Key};
use crate::load::Acked;
use crate::stats::per_second;
use points_grpc::pb;
use serde::Serialize;
use std::collections::BTreeSet;
use std::time::{Duration, Instant, SystemTime};

/// Acknowledged entries also read back one by one with GetEntry (by sequence), spread
/// over the run, besides the ListEntries scan that checks them all.
pub const SPOT_CHECKS: usize = 5;

/// What the check found.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Ledger.Audit found no breach.
    pub audit_ok: bool,
    /// Entries the audit replayed.
    pub audit_entries_checked: u64,
    /// Breaches the audit reported, as `RULE @sequence: message`.
    pub audit_breaches: Vec<String>,
    /// Seconds the audit took.
    pub audit_s: f64,
    /// How the journal was read: one ListEntries scan (kinds and time filtered) over
    /// every acknowledged entry, plus a few GetEntry spot checks.
    pub method: String,
    /// GetEntry spot checks made (each also counted in `found` or as a problem).
    pub spot_checks: u64,
    /// Seconds the spot checks took.
    pub spot_checks_s: f64,
    /// Acknowledged entries to find.
    pub acked: u64,
    /// Found with the same request id and kind.
    pub found: u64,
    /// Not in the journal at their sequence.
    pub missing: u64,
    /// At their sequence, but with another request id or kind.
    pub mismatched: u64,
    /// Journal entries read.
    pub entries_read: u64,
    /// Seconds the journal check took.
    pub journal_s: f64,
    /// Entries read per second.
    pub entries_read_per_s: f64,
    /// The first few problems, for the log.
    pub examples: Vec<String>,
}

impl VerifyReport {
    /// Audit clean and every acknowledged entry present.
    pub fn ok(&self) -> bool {
        self.audit_ok && self.missing == 0 && self.mismatched == 0 && self.found == self.acked
    }

    /// A human-readable summary.
    pub fn render(&self) -> String {
        let mut out = format!(
            "audit: {} ({} entries replayed in {:.2} s)\njournal: {}/{} acknowledged entries found via {} ({} spot checks in {:.3} s; {} missing, {} mismatched; {} entries read in {:.2} s)\n",
            if self.audit_ok { "clean" } else { "BREACHES" },
            self.audit_entries_checked,
            self.audit_s,
            self.found,
            self.acked,
            self.method,
            self.spot_checks,
            self.spot_checks_s,
            self.missing,
            self.mismatched,
            self.entries_read,
            self.journal_s,
        );
        for line in self.audit_breaches.iter().chain(&self.examples) {
            out.push_str(&format!("  {line}\n"));
        }
        out
    }
}

fn note(report: &mut VerifyReport, text: String) {
    if report.examples.len() < 10 {
        report.examples.push(text);
    }
}

fn to_timestamp(t: SystemTime) -> prost_types::Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// Audits `program_id` and checks `acked` (sorted by sequence) against its journal.
/// `since` is when the run started: the scan reads entries from shortly before it.
pub async fn verify(
    addr: &str,
    admin_key: &str,
    program_id: &str,
    acked: &[Acked],
    since: SystemTime,
) -> anyhow::Result<VerifyReport> {
    let key = Key::new(admin_key)?;
    let channels = client::connect(addr, 1).await?;
    let channel = channels
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no channel"))?;
    let mut c = Clients::new(channel);
    let mut report = VerifyReport {
        acked: acked.len() as u64,
        ..Default::default()
    };

    let t = Instant::now();
    let audit = c
        .ledger
        .audit(key.req(pb::AuditRequest {
            program_id: program_id.to_owned(),
        }))
        .await
        .map_err(|s| status_error("Ledger.Audit", &s))?
        .into_inner();
    report.audit_s = t.elapsed().as_secs_f64();
    report.audit_ok = audit.ok && audit.breaches.is_empty();
    report.audit_entries_checked = audit.entries_checked;
    report.audit_breaches = audit
        .breaches
        .iter()
        .map(|b| match b.sequence {
            Some(s) => format!("{} @{s}: {}", b.rule, b.message),
            None => format!("{}: {}", b.rule, b.message),
        })
        .collect();

    let t = Instant::now();
    report.method = "list_entries scan + get_entry spot checks".to_owned();
    by_list_entries(&mut c, &key, program_id, acked, since, &mut report).await?;
    let spots: Vec<Acked> = if acked.len() <= SPOT_CHECKS {
        acked.to_vec()
    } else {
        (0..SPOT_CHECKS)
            .map(|i| acked[i * (acked.len() - 1) / (SPOT_CHECKS - 1)])
            .collect()
    };
    let mut spot = VerifyReport::default();
    let spot_started = Instant::now();
    by_get_entry(&mut c, &key, program_id, &spots, &mut spot).await?;
    report.spot_checks_s = spot_started.elapsed().as_secs_f64();
    report.spot_checks = spots.len() as u64;
    report.entries_read += spot.entries_read;
    if spot.found != spots.len() as u64 {
        report.mismatched += spot.mismatched;
        report.missing += spot.missing;
        for e in spot.examples {
            note(&mut report, format!("GetEntry: {e}"));
        }
    }
    let elapsed = t.elapsed();
    report.journal_s = elapsed.as_secs_f64();
    report.entries_read_per_s = per_second(report.entries_read, elapsed).round();
    Ok(report)
}

fn compare(report: &mut VerifyReport, want: &Acked, entry: &pb::Entry) {
    let request_id_matches = uuid::Uuid::parse_str(&entry.request_id).ok() == Some(want.request_id);
    if request_id_matches && entry.kind == want.kind {
        report.found += 1;
    } else {
        report.mismatched += 1;
        note(
            report,
            format!(
                "sequence {}: journal has request {} kind {}, receipt said request {} kind {}",
                want.sequence, entry.request_id, entry.kind, want.request_id, want.kind
            ),
        );
    }
}

async fn by_get_entry(
    c: &mut Clients,
    key: &Key,
    program_id: &str,
    acked: &[Acked],
    report: &mut VerifyReport,
) -> anyhow::Result<()> {
    for want in acked {
        let request = key.req(pb::GetEntryRequest {
            program_id: program_id.to_owned(),
            key: Some(pb::get_entry_request::Key::Sequence(want.sequence)),
        });
        match c.ledger.get_entry(request).await {
            Ok(entry) => {
                report.entries_read += 1;
                compare(report, want, &entry.into_inner());
            }
            Err(s) if s.code() == tonic::Code::NotFound => {
                report.missing += 1;
                note(report, format!("sequence {}: not found", want.sequence));
            }
            Err(s) => return Err(status_error("Ledger.GetEntry", &s)),
        }
    }
    Ok(())
}

async fn by_list_entries(
    c: &mut Clients,
    key: &Key,
    program_id: &str,
    acked: &[Acked],
    since: SystemTime,
    report: &mut VerifyReport,
) -> anyhow::Result<()> {
    let kinds: BTreeSet<i32> = acked.iter().map(|a| a.kind).collect();
    let from = since
        .checked_sub(Duration::from_secs(5))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let mut page_token = String::new();
    let mut i = 0usize;
    loop {
        let page = c
            .ledger
            .list_entries(key.req(pb::ListEntriesRequest {
                program_id: program_id.to_owned(),
                page_size: 1000,
                page_token: page_token.clone(),
                kinds: kinds.iter().copied().collect(),
                from: Some(to_timestamp(from)),
                ..Default::default()
            }))
            .await
            .map_err(|s| status_error("Ledger.ListEntries", &s))?
            .into_inner();
        for entry in &page.entries {
            report.entries_read += 1;
            while i < acked.len() && acked[i].sequence < entry.sequence {
                report.missing += 1;
                note(
                    report,
                    format!("sequence {}: not listed", acked[i].sequence),
                );
                i += 1;
            }
            if i < acked.len() && acked[i].sequence == entry.sequence {
                compare(report, &acked[i], entry);
                i += 1;
            }
        }
        if page.next_page_token.is_empty() || i >= acked.len() {
            break;
        }
        page_token = page.next_page_token;
    }
    while i < acked.len() {
        report.missing += 1;
        note(
            report,
            format!("sequence {}: not listed", acked[i].sequence),
        );
        i += 1;
    }
    Ok(())
}
