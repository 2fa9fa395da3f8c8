//! `points`: the command-line client of the points ledger server. See `points --help`.
//!
//! Every write takes a fresh request id (UUIDv4) unless `--request-id` sets one, so a
//! retried command with the same id is answered with the original entry. `--json` prints
//! responses in the protobuf JSON mapping (proto field names); otherwise tables and
//! `field: value` lines.

use anyhow::{anyhow, bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use points_grpc::pb;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic_types::StatusExt;

#[derive(Parser)]
#[command(
    name = "points",
    version,
    about = "Command-line client of the points ledger."
)]
struct Cli {
    /// Server address.
    #[arg(
        long,
        env = "POINTS_SERVER",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    server: String,
    /// API key (sent as "authorization: Bearer <key>").
    #[arg(long, env = "POINTS_API_KEY", global = true, hide_env_values = true)]
    api_key: Option<String>,
    /// Program id, for commands that act in a program.
    #[arg(long, env = "POINTS_PROGRAM", global = true)]
    program: Option<String>,
    /// Request id (idempotency key) for a write; a fresh UUIDv4 by default. Reuse it to
    /// retry safely.
    #[arg(long, global = true)]
    request_id: Option<String>,
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// PEM CA certificate to trust for an https:// server.
    #[arg(long, env = "POINTS_TLS_CA", global = true)]
    tls_ca: Option<std::path::PathBuf>,
    /// PEM client certificate, for a server that requires mutual TLS.
    #[arg(long, env = "POINTS_TLS_CERT", global = true, requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "POINTS_TLS_KEY", global = true)]
    tls_key: Option<std::path::PathBuf>,
    /// Server name to verify in the server's certificate (default: the host of --server).
    #[arg(long, global = true)]
    tls_domain: Option<String>,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Programs.
    #[command(subcommand)]
    Program(ProgramCmd),
    /// Org units (district, street, community, estate).
    #[command(subcommand, name = "org-unit")]
    OrgUnit(OrgUnitCmd),
    /// Merchants.
    #[command(subcommand)]
    Merchant(MerchantCmd),
    /// API keys.
    #[command(subcommand)]
    Key(KeyCmd),
    /// Members.
    #[command(subcommand)]
    Member(MemberCmd),
    /// Activities.
    #[command(subcommand)]
    Activity(ActivityCmd),
    /// Love-bank and time-bank pools.
    #[command(subcommand)]
    Pool(PoolCmd),
    /// Volunteer service records.
    #[command(subcommand)]
    Service(ServiceCmd),
    /// Redeem points at a merchant.
    Redeem {
        /// Merchant id.
        #[arg(long)]
        merchant: String,
        #[command(flatten)]
        member: MemberArg,
        /// Points, e.g. 12.50.
        #[arg(long)]
        amount: String,
    },
    /// Hold points for a basket.
    Hold {
        /// Merchant id.
        #[arg(long)]
        merchant: String,
        #[command(flatten)]
        member: MemberArg,
        /// Points.
        #[arg(long)]
        amount: String,
        /// Time to live in milliseconds; 0 for the program's maximum.
        #[arg(long, default_value_t = 0)]
        ttl_ms: u64,
    },
    /// Capture a hold, wholly or partly.
    Capture {
        /// Hold id.
        hold: String,
        /// Points; the whole hold when absent.
        #[arg(long)]
        amount: Option<String>,
    },
    /// Release a hold.
    Release {
        /// Hold id.
        hold: String,
    },
    /// Refund part or all of a redemption or capture.
    Refund {
        /// The REDEEMED or HOLD_CAPTURED entry id.
        entry: String,
        /// Points.
        #[arg(long)]
        amount: String,
    },
    /// Reverse an entry.
    Reverse {
        /// Entry id.
        entry: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Move points between members.
    Transfer {
        /// Giver's member id.
        #[arg(long)]
        from: String,
        /// Receiver's member id.
        #[arg(long)]
        to: String,
        /// Points.
        #[arg(long)]
        amount: String,
    },
    /// Donate a member's points into a pool.
    Donate {
        /// Member id.
        #[arg(long)]
        member: String,
        /// Pool id.
        #[arg(long)]
        pool: String,
        /// Points.
        #[arg(long)]
        amount: String,
    },
    /// Grant points from a pool to a member.
    Grant {
        /// Pool id.
        #[arg(long)]
        pool: String,
        /// Member id.
        #[arg(long)]
        member: String,
        /// Points.
        #[arg(long)]
        amount: String,
    },
    /// Expire a member's points that are due.
    Expire {
        /// Member id.
        #[arg(long)]
        member: String,
    },
    /// Journal entries.
    #[command(subcommand)]
    Entries(EntriesCmd),
    /// A member's statement with running balance.
    Statement {
        /// Member id.
        #[arg(long)]
        member: String,
        /// Start (RFC 3339, epoch ms, "now" or "now-2h").
        #[arg(long)]
        from: Option<String>,
        /// End, exclusive.
        #[arg(long)]
        to: Option<String>,
        /// Unit.
        #[arg(long, value_enum, default_value_t = UnitArg::Points)]
        unit: UnitArg,
    },
    /// Verify the journal's hash chain.
    VerifyChain,
    /// Audit the ledger rules.
    Audit,
    /// Bulk imports.
    #[command(subcommand)]
    Import(ImportCmd),
    /// Check disclosed records offline, from files (no server needed).
    #[command(subcommand)]
    Verify(points_grpc::verify::VerifyCmd),
    /// Fetch checkpoints, proofs, journals and public reports as files for `points verify`.
    #[command(subcommand)]
    Disclosure(points_grpc::verify::DisclosureCmd),
}

#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct MemberArg {
    /// Member id.
    #[arg(long)]
    member: Option<String>,
    /// Card code, as scanned.
    #[arg(long)]
    card: Option<String>,
}

#[derive(Subcommand)]
enum ProgramCmd {
    /// Create a program (server admin key).
    Create {
        /// Program id; a new one when absent.
        #[arg(long)]
        id: Option<String>,
        /// Name.
        #[arg(long)]
        name: String,
        /// Name of the unit.
        #[arg(long, default_value = "points")]
        unit_name: String,
        /// Decimal places, 0 to 6.
        #[arg(long, default_value_t = 2)]
        decimal_places: u32,
        /// Expiry: never, end-of-year:N, or months:N.
        #[arg(long, default_value = "never")]
        expiry: String,
    },
    /// Show a program.
    Get,
    /// List programs.
    List,
}

#[derive(Clone, Copy, ValueEnum)]
enum LevelArg {
    District,
    Street,
    Community,
    Estate,
    Other,
}

#[derive(Subcommand)]
enum OrgUnitCmd {
    /// Create an org unit.
    Create {
        /// Org unit id; a new one when absent.
        #[arg(long)]
        id: Option<String>,
        /// Parent id; a root when absent.
        #[arg(long)]
        parent: Option<String>,
        /// Name.
        #[arg(long)]
        name: String,
        /// Level.
        #[arg(long, value_enum)]
        level: LevelArg,
    },
    /// List org units.
    List {
        /// Only children of this unit.
        #[arg(long)]
        parent: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum MerchantKindArg {
    Partner,
    Supermarket,
}

#[derive(Subcommand)]
enum MerchantCmd {
    /// Register a merchant.
    Register {
        /// Merchant id; a new one when absent.
        #[arg(long)]
        id: Option<String>,
        /// Org unit.
        #[arg(long)]
        org_unit: String,
        /// Name.
        #[arg(long)]
        name: String,
        /// Kind.
        #[arg(long, value_enum, default_value_t = MerchantKindArg::Partner)]
        kind: MerchantKindArg,
    },
    /// Suspend a merchant.
    Suspend {
        /// Merchant id.
        id: String,
    },
    /// Reactivate a merchant.
    Activate {
        /// Merchant id.
        id: String,
    },
    /// List merchants.
    List,
}

#[derive(Clone, Copy, ValueEnum)]
enum RoleArg {
    Admin,
    Recorder,
    Merchant,
    Auditor,
}

#[derive(Subcommand)]
enum KeyCmd {
    /// Create an API key; its secret is shown once.
    Create {
        /// Role.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Org unit of a recorder key.
        #[arg(long)]
        org_unit: Option<String>,
        /// Merchant of a merchant key.
        #[arg(long)]
        merchant: Option<String>,
        /// Label.
        #[arg(long)]
        label: String,
        /// Create a server-wide key (no program).
        #[arg(long)]
        server_wide: bool,
    },
    /// List API keys.
    List {
        /// Include revoked keys.
        #[arg(long)]
        all: bool,
    },
    /// Revoke an API key.
    Revoke {
        /// Key id.
        id: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum MemberKindArg {
    Resident,
    PartyMember,
}

#[derive(Subcommand)]
enum MemberCmd {
    /// Enrol a member.
    Enrol {
        /// Member id; a new one when absent.
        #[arg(long)]
        id: Option<String>,
        /// Home org unit.
        #[arg(long)]
        org_unit: String,
        /// Kind.
        #[arg(long, value_enum, default_value_t = MemberKindArg::Resident)]
        kind: MemberKindArg,
        /// Card code.
        #[arg(long)]
        card: Option<String>,
        /// Dual registration.
        #[arg(long)]
        dual: bool,
    },
    /// Set a member's kind, dual registration and card code.
    Update {
        /// Member id.
        id: String,
        /// Kind.
        #[arg(long, value_enum, default_value_t = MemberKindArg::Resident)]
        kind: MemberKindArg,
        /// Card code; none when absent.
        #[arg(long)]
        card: Option<String>,
        /// Dual registration.
        #[arg(long)]
        dual: bool,
    },
    /// Move a member to another home org unit.
    Move {
        /// Member id.
        id: String,
        /// New home.
        #[arg(long)]
        to: String,
    },
    /// A member's balances.
    Balance {
        #[command(flatten)]
        member: MemberArg,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum TimeKindArg {
    Credit,
    Honour,
}

#[derive(Subcommand)]
enum ActivityCmd {
    /// Define an activity and its points rule.
    Define {
        /// Activity id; a new one when absent.
        #[arg(long)]
        id: Option<String>,
        /// Org unit.
        #[arg(long)]
        org_unit: String,
        /// Name.
        #[arg(long)]
        name: String,
        /// Category.
        #[arg(long, default_value = "general")]
        category: String,
        /// Points per hour.
        #[arg(long, conflicts_with = "per_occasion")]
        per_hour: Option<String>,
        /// Points per occasion.
        #[arg(long)]
        per_occasion: Option<String>,
        /// Coefficient.
        #[arg(long, default_value = "1")]
        coefficient: String,
        /// Most minutes counted per occasion.
        #[arg(long)]
        max_minutes: Option<u32>,
        /// Most points per member per day.
        #[arg(long)]
        daily_cap: Option<String>,
        /// Credit or honour time.
        #[arg(long, value_enum, default_value_t = TimeKindArg::Credit)]
        time_kind: TimeKindArg,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum PoolKindArg {
    LoveBank,
    TimeBank,
}

#[derive(Subcommand)]
enum PoolCmd {
    /// Create a pool.
    Create {
        /// Pool id; a new one when absent.
        #[arg(long)]
        id: Option<String>,
        /// Org unit.
        #[arg(long)]
        org_unit: String,
        /// Name.
        #[arg(long)]
        name: String,
        /// Kind.
        #[arg(long, value_enum, default_value_t = PoolKindArg::LoveBank)]
        kind: PoolKindArg,
    },
}

#[derive(Subcommand)]
enum ServiceCmd {
    /// Record one volunteer's service (pending until approved).
    Record {
        /// Member id.
        #[arg(long)]
        member: String,
        /// Activity id.
        #[arg(long)]
        activity: String,
        /// Org unit where it took place.
        #[arg(long)]
        org_unit: String,
        /// Start (RFC 3339, epoch ms, "now" or "now-2h").
        #[arg(long)]
        started_at: String,
        /// Minutes.
        #[arg(long)]
        minutes: u32,
    },
    /// Approve pending records.
    Approve {
        /// Record ids.
        #[arg(required = true)]
        records: Vec<String>,
    },
    /// Reject pending records.
    Reject {
        /// Record ids.
        #[arg(required = true)]
        records: Vec<String>,
        /// Why.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum UnitArg {
    Points,
    CreditMinutes,
    HonourMinutes,
}

#[derive(Subcommand)]
enum EntriesCmd {
    /// List entries.
    List {
        /// Only entries concerning this org unit's subtree.
        #[arg(long)]
        org_unit: Option<String>,
        /// Only entries concerning this member.
        #[arg(long)]
        member: Option<String>,
        /// Only entries concerning this merchant.
        #[arg(long)]
        merchant: Option<String>,
        /// Page size (at most 1000).
        #[arg(long, default_value_t = 100)]
        page_size: i32,
        /// Page token from a previous page.
        #[arg(long)]
        page_token: Option<String>,
        /// Follow page tokens to the end.
        #[arg(long)]
        all: bool,
    },
    /// Stream entries from a sequence number, then new ones as they are written.
    Watch {
        /// First sequence.
        #[arg(long, default_value_t = 0)]
        from: u64,
    },
}

#[derive(Subcommand)]
enum ImportCmd {
    /// Import service records from a CSV file with the header
    /// member_id,activity_id,org_unit_id,started_at,minutes. Records are sent in batches;
    /// each batch's request id is derived from the file's content, so re-running an
    /// interrupted import does not record anything twice.
    Service {
        /// The CSV file.
        file: std::path::PathBuf,
        /// Records per request.
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Approve each batch after recording it.
        #[arg(long)]
        approve: bool,
    },
}

/// A connected client.
struct Client {
    channel: Channel,
    key: String,
    json: bool,
    program: Option<String>,
    request_id: Option<String>,
    pool: DescriptorPool,
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn member_ref(arg: &MemberArg) -> pb::MemberRef {
    use pb::member_ref::Member;
    pb::MemberRef {
        member: match (&arg.member, &arg.card) {
            (Some(id), _) => Some(Member::MemberId(id.clone())),
            (None, Some(card)) => Some(Member::CardCode(card.clone())),
            (None, None) => None,
        },
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses "now", "now-2h", "now-90m", epoch milliseconds, or RFC 3339
/// ("2026-11-23T08:00:00Z", "2026-11-23T16:00:00+08:00").
fn parse_time(text: &str) -> anyhow::Result<prost_types::Timestamp> {
    let now_ms = i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis())?;
    let ms = if let Some(rest) = text.strip_prefix("now") {
        if rest.is_empty() {
            now_ms
        } else {
            let (sign, rest) = match rest.as_bytes().first() {
                Some(b'-') => (-1, &rest[1..]),
                Some(b'+') => (1, &rest[1..]),
                _ => bail!("bad relative time {text:?}"),
            };
            let (number, unit) = rest.split_at(rest.len().saturating_sub(1));
            let n: i64 = number
                .parse()
                .with_context(|| format!("bad time {text:?}"))?;
            let unit_ms = match unit {
                "s" => 1_000,
                "m" => 60_000,
                "h" => 3_600_000,
                "d" => 86_400_000,
                _ => bail!("bad time unit in {text:?} (s, m, h, d)"),
            };
            now_ms + sign * n * unit_ms
        }
    } else if text.bytes().all(|b| b.is_ascii_digit()) {
        text.parse()?
    } else {
        let b = text.as_bytes();
        let num = |r: std::ops::Range<usize>| -> anyhow::Result<i64> {
            Ok(text
                .get(r)
                .ok_or_else(|| anyhow!("bad time {text:?}"))?
                .parse()?)
        };
        if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
            bail!("bad time {text:?}: use RFC 3339, e.g. 2026-11-23T08:00:00Z");
        }
        let (y, mo, d, h, mi, s) = (
            num(0..4)?,
            num(5..7)?,
            num(8..10)?,
            num(11..13)?,
            num(14..16)?,
            num(17..19)?,
        );
        let mut rest = &text[19..];
        let mut frac_ms = 0;
        if let Some(f) = rest.strip_prefix('.') {
            let digits: String = f.chars().take_while(char::is_ascii_digit).collect();
            rest = &f[digits.len()..];
            let padded = format!("{:0<3}", &digits[..digits.len().min(3)]);
            frac_ms = padded.parse::<i64>()?;
        }
        let offset_min = match rest {
            "Z" | "z" => 0,
            _ if rest.len() == 6 => {
                let sign = if rest.starts_with('-') { -1 } else { 1 };
                sign * (rest[1..3].parse::<i64>()? * 60 + rest[4..6].parse::<i64>()?)
            }
            _ => bail!("bad time zone in {text:?}"),
        };
        let days = days_from_civil(y, mo, d);
        ((days * 86_400 + h * 3600 + mi * 60 + s) - offset_min * 60) * 1000 + frac_ms
    };
    Ok(prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000)?,
    })
}

fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Value::Array(items) if items.iter().all(|v| !v.is_object() && !v.is_array()) => {
            let joined: Vec<String> = items
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            out.push((prefix.to_owned(), joined.join(", ")));
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                flatten(&format!("{prefix}[{i}]"), v, out);
            }
        }
        Value::String(s) => out.push((prefix.to_owned(), s.clone())),
        Value::Null => {}
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

fn cell(value: &Value, path: &str) -> String {
    let mut v = value;
    for part in path.split('.') {
        match v.get(part) {
            Some(next) => v = next,
            None => return String::new(),
        }
    }
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        Value::Array(a) => a.len().to_string(),
        other => other.to_string(),
    }
}

fn print_table(rows: &[Value], columns: &[&str]) {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| columns.iter().map(|c| cell(r, c)).collect())
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |values: Vec<String>| {
        values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    println!(
        "{}",
        line(columns.iter().map(|c| c.to_uppercase()).collect())
    );
    for row in cells {
        println!("{}", line(row));
    }
}

impl Client {
    fn req<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Ok(value) = format!("Bearer {}", self.key).parse() {
            request.metadata_mut().insert("authorization", value);
        }
        request
    }

    fn program(&self) -> anyhow::Result<String> {
        self.program
            .clone()
            .ok_or_else(|| anyhow!("--program (or POINTS_PROGRAM) is required"))
    }

    fn request_id(&self) -> String {
        self.request_id.clone().unwrap_or_else(new_id)
    }

    fn pos(&self) -> pb::point_of_sale_client::PointOfSaleClient<Channel> {
        pb::point_of_sale_client::PointOfSaleClient::new(self.channel.clone())
    }
    fn rec(&self) -> pb::recording_client::RecordingClient<Channel> {
        pb::recording_client::RecordingClient::new(self.channel.clone())
    }
    fn admin(&self) -> pb::admin_client::AdminClient<Channel> {
        pb::admin_client::AdminClient::new(self.channel.clone())
    }
    fn ledger(&self) -> pb::ledger_client::LedgerClient<Channel> {
        pb::ledger_client::LedgerClient::new(self.channel.clone())
    }

    /// A response as JSON (protobuf JSON mapping, proto field names).
    fn to_json<M: prost::Message>(&self, message: &M, name: &str) -> anyhow::Result<Value> {
        let descriptor = self
            .pool
            .get_message_by_name(&format!("points.v1.{name}"))
            .ok_or_else(|| anyhow!("no message {name}"))?;
        let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())?;
        let options = SerializeOptions::new()
            .use_proto_field_name(true)
            .skip_default_fields(false)
            .stringify_64_bit_integers(false);
        Ok(dynamic.serialize_with_options(serde_json::value::Serializer, &options)?)
    }

    /// Prints a response: JSON, a table of `list` with `columns`, or field lines.
    fn show<M: prost::Message>(
        &self,
        message: &M,
        name: &str,
        extra: &[(&str, String)],
        table: Option<(&str, &[&str])>,
    ) -> anyhow::Result<()> {
        let mut value = self.to_json(message, name)?;
        if let Value::Object(map) = &mut value {
            for (k, v) in extra {
                map.insert((*k).to_owned(), Value::String(v.clone()));
            }
        }
        if self.json {
            println!("{}", serde_json::to_string_pretty(&value)?);
            return Ok(());
        }
        if let Some((list, columns)) = table {
            let rows = value
                .get(list)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            print_table(&rows, columns);
            if let Some(Value::String(token)) = value.get("next_page_token") {
                if !token.is_empty() {
                    println!("next page: --page-token {token}");
                }
            }
            return Ok(());
        }
        let mut lines = Vec::new();
        for (k, v) in extra {
            lines.push(((*k).to_owned(), v.clone()));
        }
        if let Value::Object(map) = &mut value {
            for (k, _) in extra {
                map.remove(*k);
            }
        }
        flatten("", &value, &mut lines);
        let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        for (k, v) in lines {
            println!("{:<width$}  {v}", format!("{k}:"), width = width + 1);
        }
        Ok(())
    }
}

fn report(status: &tonic::Status) -> anyhow::Error {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    if let Some(info) = status.get_details_error_info() {
        text.push_str(&format!(" [{}", info.reason));
        if let Some(code) = info.metadata.get("code") {
            text.push_str(&format!(" {code}"));
        }
        text.push(']');
    }
    if let Some(bad) = status.get_details_bad_request() {
        for v in bad.field_violations {
            text.push_str(&format!("\n  {}: {}", v.field, v.description));
        }
    }
    anyhow!(text)
}

trait Grpc<T> {
    fn grpc(self) -> anyhow::Result<T>;
}

impl<T> Grpc<T> for Result<tonic::Response<T>, tonic::Status> {
    fn grpc(self) -> anyhow::Result<T> {
        self.map(tonic::Response::into_inner)
            .map_err(|s| report(&s))
    }
}

fn expiry(text: &str) -> anyhow::Result<pb::ExpiryPolicy> {
    use pb::expiry_policy::{EndOfYear, MonthsAfterEarning, Never, Policy};
    let policy = match text.split_once(':') {
        None if text == "never" => Policy::Never(Never {}),
        Some(("end-of-year", n)) => Policy::EndOfYear(EndOfYear {
            years_after: n.parse()?,
        }),
        Some(("months", n)) => {
            Policy::MonthsAfterEarning(MonthsAfterEarning { months: n.parse()? })
        }
        _ => bail!("expiry is never, end-of-year:N or months:N"),
    };
    Ok(pb::ExpiryPolicy {
        policy: Some(policy),
    })
}

const ENTRY_COLUMNS: &[&str] = &["sequence", "time", "kind", "entry_id", "actor.kind"];

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let cli = Cli::parse();
    if let Err(error) = run(cli).await {
        eprintln!("error: {error:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    // Verification works offline: it never connects.
    if let Cmd::Verify(cmd) = &cli.command {
        return points_grpc::verify::run(cmd);
    }
    let mut endpoint =
        Channel::from_shared(cli.server.clone())?.connect_timeout(Duration::from_secs(5));
    if cli.server.starts_with("https://") || cli.tls_ca.is_some() || cli.tls_cert.is_some() {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let read = |path: &std::path::Path| {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))
        };
        let mut tls = ClientTlsConfig::new();
        if let Some(ca) = &cli.tls_ca {
            tls = tls.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let (Some(cert), Some(key)) = (&cli.tls_cert, &cli.tls_key) {
            tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        if let Some(domain) = &cli.tls_domain {
            tls = tls.domain_name(domain.clone());
        }
        endpoint = endpoint.tls_config(tls)?;
    }
    let channel = endpoint
        .connect()
        .await
        .with_context(|| format!("connecting to {}", cli.server))?;
    let c = Client {
        channel,
        key: cli.api_key.clone().unwrap_or_default(),
        json: cli.json,
        program: cli.program.clone(),
        request_id: cli.request_id.clone(),
        pool: DescriptorPool::decode(pb::FILE_DESCRIPTOR_SET)?,
    };
    match cli.command {
        Cmd::Program(cmd) => program(&c, cmd).await,
        Cmd::OrgUnit(cmd) => org_unit(&c, cmd).await,
        Cmd::Merchant(cmd) => merchant(&c, cmd).await,
        Cmd::Key(cmd) => key(&c, cmd).await,
        Cmd::Member(cmd) => member(&c, cmd).await,
        Cmd::Activity(cmd) => activity(&c, cmd).await,
        Cmd::Pool(cmd) => pool(&c, cmd).await,
        Cmd::Service(cmd) => service(&c, cmd).await,
        Cmd::Entries(cmd) => entries(&c, cmd).await,
        Cmd::Import(cmd) => import(&c, cmd).await,
        Cmd::Verify(cmd) => points_grpc::verify::run(&cmd),
        Cmd::Disclosure(cmd) => {
            points_grpc::verify::fetch(c.channel.clone(), &c.key, &c.program()?, &cmd).await
        }
        Cmd::Redeem {
            merchant,
            member,
            amount,
        } => {
            let r = c
                .pos()
                .redeem(c.req(pb::RedeemRequest {
                    request_id: c.request_id(),
                    program_id: c.program()?,
                    merchant_id: merchant,
                    member: Some(member_ref(&member)),
                    amount,
                }))
                .await
                .grpc()?;
            c.show(&r, "RedeemResponse", &[], None)
        }
        Cmd::Hold {
            merchant,
            member,
            amount,
            ttl_ms,
        } => {
            let r = c
                .pos()
                .hold(c.req(pb::HoldRequest {
                    request_id: c.request_id(),
                    program_id: c.program()?,
                    merchant_id: merchant,
                    member: Some(member_ref(&member)),
                    amount,
                    ttl_ms,
                }))
                .await
                .grpc()?;
            c.show(&r, "HoldResponse", &[], None)
        }
        Cmd::Capture { hold, amount } => {
            let r = c
                .pos()
                .capture(c.req(pb::CaptureRequest {
                    request_id: c.request_id(),
                    program_id: c.program()?,
                    hold_id: hold,
                    amount,
                }))
                .await
                .grpc()?;
            c.show(&r, "CaptureResponse", &[], None)
        }
        Cmd::Release { hold } => {
            let r = c
                .pos()
                .release(c.req(pb::ReleaseRequest {
                    request_id: c.request_id(),
                    program_id: c.program()?,
                    hold_id: hold,
                }))
                .await
                .grpc()?;
            c.show(&r, "ReleaseResponse", &[], None)
        }
        Cmd::Refund { entry, amount } => {
            let r = c
                .pos()
                .refund(c.req(pb::RefundRequest {
                    request_id: c.request_id(),
                    program_id: c.program()?,
                    entry_id: entry,
                    amount,
                }))
                .await
                .grpc()?;
            c.show(&r, "RefundResponse", &[], None)
        }
        Cmd::Reverse { entry, reason } => {
            let r = c
                .rec()
                .reverse(c.req(pb::ReverseRequest {
                    request_id: c.request_id(),
                    program_id: c.program()?,
                    entry_id: entry,
                    reason,
                }))
                .await
                .grpc()?;
            c.show(&r, "ReverseResponse", &[], None)
        }
        Cmd::Transfer { from, to, amount } => {
            let r = c
                .rec()
                .transfer(c.req(pb::TransferRequest {
                    request_id: c.request_id(),
                    program_id: c.program()?,
                    from_member_id: from,
                    to_member_id: to,
                    amount,
                }))
                .await
                .grpc()?;
            c.show(&r, "TransferResponse", &[], None)
        }
        Cmd::Donate {
            member,
            pool,
            amount,
        } => {
            let r = c
                .rec()
                .donate(c.req(pb::DonateRequest {
                    request_id: c.request_id(),
                    program_id: c.program()?,
                    member_id: member,
                    pool_id: pool,
                    amount,
                }))
                .await
                .grpc()?;
            c.show(&r, "DonateResponse", &[], None)
        }
        Cmd::Grant {
            pool,
            member,
            amount,
        } => {
            let r = c
                .rec()
                .grant(c.req(pb::GrantRequest {
                    request_id: c.request_id(),
                    program_id: c.program()?,
                    pool_id: pool,
                    member_id: member,
                    amount,
                }))
                .await
                .grpc()?;
            c.show(&r, "GrantResponse", &[], None)
        }
        Cmd::Expire { member } => {
            let r = c
                .rec()
                .expire(c.req(pb::ExpireRequest {
                    request_id: c.request_id(),
                    program_id: c.program()?,
                    member_id: member,
                }))
                .await
                .grpc()?;
            c.show(&r, "ExpireResponse", &[], None)
        }
        Cmd::Statement {
            member,
            from,
            to,
            unit,
        } => {
            let unit = match unit {
                UnitArg::Points => pb::Unit::Points,
                UnitArg::CreditMinutes => pb::Unit::CreditMinutes,
                UnitArg::HonourMinutes => pb::Unit::HonourMinutes,
            };
            let mut token = String::new();
            let mut lines = Vec::new();
            let mut last;
            loop {
                let page = c
                    .ledger()
                    .get_statement(c.req(pb::GetStatementRequest {
                        program_id: c.program()?,
                        page_size: 1000,
                        page_token: token.clone(),
                        member_id: member.clone(),
                        from: from.as_deref().map(parse_time).transpose()?,
                        to: to.as_deref().map(parse_time).transpose()?,
                        unit: unit as i32,
                    }))
                    .await
                    .grpc()?;
                lines.extend(page.lines.clone());
                token = page.next_page_token.clone();
                last = page;
                if token.is_empty() {
                    break;
                }
            }
            last.lines = lines;
            if c.json {
                return c.show(&last, "GetStatementResponse", &[], None);
            }
            let value = c.to_json(&last, "GetStatementResponse")?;
            println!("opening balance: {}", last.opening_balance);
            print_table(
                value
                    .get("lines")
                    .and_then(Value::as_array)
                    .map(Vec::as_slice)
                    .unwrap_or_default(),
                &[
                    "sequence",
                    "time",
                    "kind",
                    "amount",
                    "balance",
                    "counterparty.kind",
                    "counterparty.id",
                ],
            );
            println!("closing balance: {}", last.closing_balance);
            Ok(())
        }
        Cmd::VerifyChain => {
            let r = c
                .ledger()
                .verify_chain(c.req(pb::VerifyChainRequest {
                    program_id: c.program()?,
                }))
                .await
                .grpc()?;
            c.show(&r, "VerifyChainResponse", &[], None)?;
            if !r.ok {
                bail!("the hash chain is broken");
            }
            Ok(())
        }
        Cmd::Audit => {
            let r = c
                .ledger()
                .audit(c.req(pb::AuditRequest {
                    program_id: c.program()?,
                }))
                .await
                .grpc()?;
            c.show(&r, "AuditResponse", &[], None)?;
            if !r.ok {
                bail!("the audit found breaches");
            }
            Ok(())
        }
    }
}

async fn program(c: &Client, cmd: ProgramCmd) -> anyhow::Result<()> {
    match cmd {
        ProgramCmd::Create {
            id,
            name,
            unit_name,
            decimal_places,
            expiry: e,
        } => {
            let r = c
                .admin()
                .create_program(c.req(pb::CreateProgramRequest {
                    request_id: c.request_id(),
                    program_id: id.unwrap_or_else(new_id),
                    name,
                    unit_name,
                    decimal_places,
                    expiry: Some(expiry(&e)?),
                    ..Default::default()
                }))
                .await
                .grpc()?;
            c.show(&r, "CreateProgramResponse", &[], None)
        }
        ProgramCmd::Get => {
            let r = c
                .admin()
                .get_program(c.req(pb::GetProgramRequest {
                    program_id: c.program()?,
                }))
                .await
                .grpc()?;
            c.show(&r, "Program", &[], None)
        }
        ProgramCmd::List => {
            let r = c
                .admin()
                .list_programs(c.req(pb::ListProgramsRequest {
                    page_size: 1000,
                    page_token: String::new(),
                }))
                .await
                .grpc()?;
            c.show(
                &r,
                "ListProgramsResponse",
                &[],
                Some((
                    "programs",
                    &["program_id", "name", "unit_name", "decimal_places"],
                )),
            )
        }
    }
}

async fn org_unit(c: &Client, cmd: OrgUnitCmd) -> anyhow::Result<()> {
    match cmd {
        OrgUnitCmd::Create {
            id,
            parent,
            name,
            level,
        } => {
            let level = match level {
                LevelArg::District => pb::OrgUnitLevel::District,
                LevelArg::Street => pb::OrgUnitLevel::Street,
                LevelArg::Community => pb::OrgUnitLevel::Community,
                LevelArg::Estate => pb::OrgUnitLevel::Estate,
                LevelArg::Other => pb::OrgUnitLevel::Other,
            };
            let r = c
                .admin()
                .create_org_unit(c.req(pb::CreateOrgUnitRequest {
                    request_id: c.request_id(),
                    program_id: c.program()?,
                    org_unit_id: id.unwrap_or_else(new_id),
                    parent_id: parent.unwrap_or_default(),
                    name,
                    level: level as i32,
                }))
                .await
                .grpc()?;
            c.show(&r, "CreateOrgUnitResponse", &[], None)
        }
        OrgUnitCmd::List { parent } => {
            let r = c
                .admin()
                .list_org_units(c.req(pb::ListOrgUnitsRequest {
                    program_id: c.program()?,
                    page_size: 1000,
                    page_token: String::new(),
                    parent_id: parent.unwrap_or_default(),
                }))
                .await
                .grpc()?;
            c.show(
                &r,
                "ListOrgUnitsResponse",
                &[],
                Some(("org_units", &["org_unit_id", "parent_id", "level", "name"])),
            )
        }
    }
}

async fn merchant(c: &Client, cmd: MerchantCmd) -> anyhow::Result<()> {
    let set = |id: String, status: pb::MerchantStatus| async move {
        let r = c
            .admin()
            .set_merchant_status(c.req(pb::SetMerchantStatusRequest {
                request_id: c.request_id(),
                program_id: c.program()?,
                merchant_id: id,
                status: status as i32,
            }))
            .await
            .grpc()?;
        c.show(&r, "SetMerchantStatusResponse", &[], None)
    };
    match cmd {
        MerchantCmd::Register {
            id,
            org_unit,
            name,
            kind,
        } => {
            let kind = match kind {
                MerchantKindArg::Partner => pb::MerchantKind::Partner,
                MerchantKindArg::Supermarket => pb::MerchantKind::CommunitySupermarket,
            };
            let r = c
                .admin()
                .register_merchant(c.req(pb::RegisterMerchantRequest {
                    request_id: c.request_id(),
                    program_id: c.program()?,
                    merchant_id: id.unwrap_or_else(new_id),
                    org_unit_id: org_unit,
                    name,
                    kind: kind as i32,
                }))
                .await
                .grpc()?;
            c.show(&r, "RegisterMerchantResponse", &[], None)
        }
        MerchantCmd::Suspend { id } => set(id, pb::MerchantStatus::Suspended).await,
        MerchantCmd::Activate { id } => set(id, pb::MerchantStatus::Active).await,
        MerchantCmd::List => {
            let r = c
                .admin()
                .list_merchants(c.req(pb::ListMerchantsRequest {
                    program_id: c.program()?,
                    page_size: 1000,
                    ..Default::default()
                }))
                .await
                .grpc()?;
            c.show(
                &r,
                "ListMerchantsResponse",
                &[],
                Some((
                    "merchants",
                    &["merchant_id", "name", "kind", "status", "taken"],
                )),
            )
        }
    }
}

async fn key(c: &Client, cmd: KeyCmd) -> anyhow::Result<()> {
    match cmd {
        KeyCmd::Create {
            role,
            org_unit,
            merchant,
            label,
            server_wide,
        } => {
            let role = match role {
                RoleArg::Admin => pb::Role::Admin,
                RoleArg::Recorder => pb::Role::Recorder,
                RoleArg::Merchant => pb::Role::Merchant,
                RoleArg::Auditor => pb::Role::Auditor,
            };
            let program_id = if server_wide {
                String::new()
            } else {
                c.program()?
            };
            let r = c
                .admin()
                .create_api_key(c.req(pb::CreateApiKeyRequest {
                    program_id,
                    role: role as i32,
                    org_unit_id: org_unit.unwrap_or_default(),
                    merchant_id: merchant.unwrap_or_default(),
                    label,
                }))
                .await
                .grpc()?;
            c.show(&r, "CreateApiKeyResponse", &[], None)
        }
        KeyCmd::List { all } => {
            let r = c
                .admin()
                .list_api_keys(c.req(pb::ListApiKeysRequest {
                    program_id: c.program.clone().unwrap_or_default(),
                    page_size: 1000,
                    page_token: String::new(),
                    include_revoked: all,
                }))
                .await
                .grpc()?;
            c.show(
                &r,
                "ListApiKeysResponse",
                &[],
                Some((
                    "api_keys",
                    &[
                        "api_key_id",
                        "role",
                        "label",
                        "org_unit_id",
                        "merchant_id",
                        "revoked",
                    ],
                )),
            )
        }
        KeyCmd::Revoke { id } => {
            let r = c
                .admin()
                .revoke_api_key(c.req(pb::RevokeApiKeyRequest { api_key_id: id }))
                .await
                .grpc()?;
            c.show(&r, "RevokeApiKeyResponse", &[], None)
        }
    }
}

fn member_kind(kind: MemberKindArg) -> i32 {
    match kind {
        MemberKindArg::Resident => pb::MemberKind::Resident as i32,
        MemberKindArg::PartyMember => pb::MemberKind::PartyMember as i32,
    }
}

async fn member(c: &Client, cmd: MemberCmd) -> anyhow::Result<()> {
    match cmd {
        MemberCmd::Enrol {
            id,
            org_unit,
            kind,
            card,
            dual,
        } => {
            let id = id.unwrap_or_else(new_id);
            let r = c
                .rec()
                .enrol_member(c.req(pb::EnrolMemberRequest {
                    request_id: c.request_id(),
                    program_id: c.program()?,
                    member_id: id.clone(),
                    org_unit_id: org_unit,
                    kind: member_kind(kind),
                    dual_registration: dual,
                    card_code: card.unwrap_or_default(),
                }))
                .await
                .grpc()?;
            c.show(&r, "EnrolMemberResponse", &[("member_id", id)], None)
        }
        MemberCmd::Update {
            id,
            kind,
            card,
            dual,
        } => {
            let r = c
                .rec()
                .update_member(c.req(pb::UpdateMemberRequest {
                    request_id: c.request_id(),
                    program_id: c.program()?,
                    member_id: id,
                    kind: member_kind(kind),
                    dual_registration: dual,
                    card_code: card.unwrap_or_default(),
                }))
                .await
                .grpc()?;
            c.show(&r, "UpdateMemberResponse", &[], None)
        }
        MemberCmd::Move { id, to } => {
            let r = c
                .rec()
                .move_member(c.req(pb::MoveMemberRequest {
                    request_id: c.request_id(),
                    program_id: c.program()?,
                    member_id: id,
                    to_org_unit_id: to,
                }))
                .await
                .grpc()?;
            c.show(&r, "MoveMemberResponse", &[], None)
        }
        MemberCmd::Balance { member } => {
            let r = c
                .pos()
                .get_balance(c.req(pb::GetBalanceRequest {
                    program_id: c.program()?,
                    member: Some(member_ref(&member)),
                }))
                .await
                .grpc()?;
            c.show(&r, "GetBalanceResponse", &[], None)
        }
    }
}

async fn activity(c: &Client, cmd: ActivityCmd) -> anyhow::Result<()> {
    let ActivityCmd::Define {
        id,
        org_unit,
        name,
        category,
        per_hour,
        per_occasion,
        coefficient,
        max_minutes,
        daily_cap,
        time_kind,
    } = cmd;
    use pb::activity_rule::Rule;
    let rule = match (per_hour, per_occasion) {
        (Some(p), _) => Rule::PerHour(p),
        (None, Some(p)) => Rule::PerOccasion(p),
        (None, None) => bail!("give --per-hour or --per-occasion"),
    };
    let id = id.unwrap_or_else(new_id);
    let r = c
        .rec()
        .define_activity(c.req(pb::DefineActivityRequest {
            request_id: c.request_id(),
            program_id: c.program()?,
            activity_id: id.clone(),
            org_unit_id: org_unit,
            name,
            category,
            rule: Some(pb::ActivityRule { rule: Some(rule) }),
            coefficient,
            max_minutes_per_occasion: max_minutes,
            daily_points_cap: daily_cap,
            time_kind: match time_kind {
                TimeKindArg::Credit => pb::TimeKind::Credit as i32,
                TimeKindArg::Honour => pb::TimeKind::Honour as i32,
            },
        }))
        .await
        .grpc()?;
    c.show(&r, "DefineActivityResponse", &[("activity_id", id)], None)
}

async fn pool(c: &Client, cmd: PoolCmd) -> anyhow::Result<()> {
    let PoolCmd::Create {
        id,
        org_unit,
        name,
        kind,
    } = cmd;
    let id = id.unwrap_or_else(new_id);
    let r = c
        .rec()
        .create_pool(c.req(pb::CreatePoolRequest {
            request_id: c.request_id(),
            program_id: c.program()?,
            pool_id: id.clone(),
            org_unit_id: org_unit,
            name,
            kind: match kind {
                PoolKindArg::LoveBank => pb::PoolKind::LoveBank as i32,
                PoolKindArg::TimeBank => pb::PoolKind::TimeBank as i32,
            },
        }))
        .await
        .grpc()?;
    c.show(&r, "CreatePoolResponse", &[("pool_id", id)], None)
}

async fn service(c: &Client, cmd: ServiceCmd) -> anyhow::Result<()> {
    match cmd {
        ServiceCmd::Record {
            member,
            activity,
            org_unit,
            started_at,
            minutes,
        } => {
            let r = c
                .rec()
                .record_service(c.req(pb::RecordServiceRequest {
                    request_id: c.request_id(),
                    program_id: c.program()?,
                    records: vec![pb::ServiceRecordInput {
                        member_id: member,
                        activity_id: activity,
                        org_unit_id: org_unit,
                        started_at: Some(parse_time(&started_at)?),
                        minutes,
                    }],
                }))
                .await
                .grpc()?;
            c.show(&r, "RecordServiceResponse", &[], None)
        }
        ServiceCmd::Approve { records } => {
            let r = c
                .rec()
                .approve_service(c.req(pb::ApproveServiceRequest {
                    request_id: c.request_id(),
                    program_id: c.program()?,
                    record_ids: records,
                }))
                .await
                .grpc()?;
            c.show(&r, "ApproveServiceResponse", &[], None)
        }
        ServiceCmd::Reject { records, reason } => {
            let r = c
                .rec()
                .reject_service(c.req(pb::RejectServiceRequest {
                    request_id: c.request_id(),
                    program_id: c.program()?,
                    record_ids: records,
                    reason,
                }))
                .await
                .grpc()?;
            c.show(&r, "RejectServiceResponse", &[], None)
        }
    }
}

async fn entries(c: &Client, cmd: EntriesCmd) -> anyhow::Result<()> {
    match cmd {
        EntriesCmd::List {
            org_unit,
            member,
            merchant,
            page_size,
            page_token,
            all,
        } => {
            let mut token = page_token.unwrap_or_default();
            let mut collected: Option<pb::ListEntriesResponse> = None;
            loop {
                let page = c
                    .ledger()
                    .list_entries(c.req(pb::ListEntriesRequest {
                        program_id: c.program()?,
                        page_size,
                        page_token: token.clone(),
                        org_unit_id: org_unit.clone().unwrap_or_default(),
                        member_id: member.clone().unwrap_or_default(),
                        merchant_id: merchant.clone().unwrap_or_default(),
                        ..Default::default()
                    }))
                    .await
                    .grpc()?;
                token = page.next_page_token.clone();
                match &mut collected {
                    None => collected = Some(page),
                    Some(all) => {
                        all.entries.extend(page.entries);
                        all.next_page_token = page.next_page_token;
                    }
                }
                if !all || token.is_empty() {
                    break;
                }
            }
            let page = collected.unwrap_or_default();
            c.show(
                &page,
                "ListEntriesResponse",
                &[],
                Some(("entries", ENTRY_COLUMNS)),
            )
        }
        EntriesCmd::Watch { from } => {
            let mut stream = c
                .ledger()
                .watch_entries(c.req(pb::WatchEntriesRequest {
                    program_id: c.program()?,
                    from_sequence: from,
                    kinds: vec![],
                }))
                .await
                .grpc()?;
            while let Some(entry) = stream.next().await {
                let entry = entry.map_err(|s| report(&s))?;
                let value = c.to_json(&entry, "Entry")?;
                if c.json {
                    println!("{}", serde_json::to_string(&value)?);
                } else {
                    let row: Vec<String> = ENTRY_COLUMNS.iter().map(|k| cell(&value, k)).collect();
                    println!("{}", row.join("  "));
                }
            }
            Ok(())
        }
    }
}

async fn import(c: &Client, cmd: ImportCmd) -> anyhow::Result<()> {
    let ImportCmd::Service {
        file,
        batch,
        approve,
    } = cmd;
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let digest = blake3::hash(text.as_bytes());
    let mut records = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || (n == 0 && line.starts_with("member_id")) {
            continue;
        }
        let cols: Vec<&str> = line.split(',').map(str::trim).collect();
        let [member, activity, org_unit, started_at, minutes] = cols.as_slice() else {
            bail!("line {}: expected 5 columns, found {}", n + 1, cols.len());
        };
        records.push(pb::ServiceRecordInput {
            member_id: (*member).to_owned(),
            activity_id: (*activity).to_owned(),
            org_unit_id: (*org_unit).to_owned(),
            started_at: Some(parse_time(started_at).with_context(|| format!("line {}", n + 1))?),
            minutes: minutes
                .parse()
                .with_context(|| format!("line {}: minutes", n + 1))?,
        });
    }
    let batch = batch.clamp(1, 10_000);
    let bar = if c.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(records.len() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} records {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    // Request ids derived from the file and the batch number: re-running the import
    // replays the batches already recorded instead of recording them twice.
    let derive = |index: usize, what: &[u8]| {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"points import service");
        hasher.update(digest.as_bytes());
        hasher.update(what);
        hasher.update(&(index as u64).to_le_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string()
    };
    let program = c.program()?;
    let mut recorded = 0usize;
    let mut duplicates = 0usize;
    let mut ids = Vec::new();
    for (index, chunk) in records.chunks(batch).enumerate() {
        let r = c
            .rec()
            .record_service(c.req(pb::RecordServiceRequest {
                request_id: derive(index, b"record"),
                program_id: program.clone(),
                records: chunk.to_vec(),
            }))
            .await
            .map_err(|s| anyhow!("batch {index}: {}", report(&s)))?
            .into_inner();
        if r.receipt.as_ref().is_some_and(|r| r.duplicate) {
            duplicates += chunk.len();
        }
        let batch_ids: Vec<String> = r.records.into_iter().map(|o| o.record_id).collect();
        if approve {
            c.rec()
                .approve_service(c.req(pb::ApproveServiceRequest {
                    request_id: derive(index, b"approve"),
                    program_id: program.clone(),
                    record_ids: batch_ids.clone(),
                }))
                .await
                .map_err(|s| anyhow!("approving batch {index}: {}", report(&s)))?;
        }
        ids.extend(batch_ids);
        recorded += chunk.len();
        bar.set_position(recorded as u64);
    }
    bar.finish_with_message("done");
    if c.json {
        println!(
            "{}",
            serde_json::json!({"recorded": recorded, "already_recorded": duplicates, "approved": approve, "record_ids": ids})
        );
    } else {
        println!(
            "recorded {recorded} records ({duplicates} already recorded by an earlier run){}",
            if approve { ", approved" } else { "" }
        );
    }
    Ok(())
}
