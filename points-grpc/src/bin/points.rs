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
    /// API key (sent as "authorization: Bearer " followed by the key).
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
        /// Print the lines as CSV (header row, one row per line) instead of a table.
        #[arg(long)]
        csv: bool,
    },
    /// Verify the journal's hash chain.
    VerifyChain,
    /// Audit the ledger rules.
    Audit,
    /// Bulk imports.
    #[command(subcommand)]
    Import(ImportCmd),
    /// Micro-wishes: post, claim, fulfil, confirm, cancel, lapse, show (issue 5).
    #[command(subcommand)]
    Wish(WishCmd),
    /// Volunteer events: create, check in, check out, approve, show (issue 5).
    #[command(subcommand)]
    Event(EventCmd),
    /// Merchant catalogues: list items, restock, price, redeem, show (issue 5).
    #[command(subcommand)]
    Catalogue(CatalogueCmd),
    /// Roll-ups and rankings per period and org unit (tables or CSV).
    #[command(subcommand)]
    Report(ReportCmd),
    /// Service-record certificates: issue one, or verify a file offline.
    #[command(subcommand)]
    Certificate(CertificateCmd),
    /// Merchant settlement in money: funds, rates, closing periods, statements (issue 6).
    #[command(subcommand)]
    Settlement(SettlementCmd),
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
    /// member_id,activity_id,org_unit_id,started_at,minutes. Every row is checked first
    /// (parsed, then a dry run on the server) and every rejected row is reported by line
    /// number with its reason. Request ids are derived from the file's content, so
    /// re-running an interrupted import does not record anything twice.
    Service {
        /// The CSV file.
        file: std::path::PathBuf,
        /// Records per request (good-rows mode).
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Approve the records after recording them.
        #[arg(long)]
        approve: bool,
        /// all-or-nothing: a file with any rejected row imports nothing, and a clean file
        /// is recorded as one entry (at most 10,000 rows). good-rows: the good rows are
        /// imported and the rejected ones reported.
        #[arg(long, value_enum, default_value_t = ImportMode::AllOrNothing)]
        mode: ImportMode,
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
    // Verifying a certificate needs no server: it must work offline.
    if let Cmd::Certificate(CertificateCmd::Verify { file, public_key }) = &cli.command {
        return verify_certificate(file, public_key.as_deref(), cli.json);
    }
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
        Cmd::Report(cmd) => report_cmd(&c, cmd).await,
        Cmd::Certificate(cmd) => certificate_cmd(&c, cmd).await,
        Cmd::Settlement(cmd) => settlement(&c, cmd).await,
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
            csv,
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
            if csv {
                return statement_csv(&c, &last);
            }
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
        Cmd::Wish(cmd) => wish(&c, cmd).await,
        Cmd::Event(cmd) => event(&c, cmd).await,
        Cmd::Catalogue(cmd) => catalogue(&c, cmd).await,
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
        mode,
    } = cmd;
    import_service(c, file, batch, approve, mode).await
}

/// How a bulk import treats a file with rejected rows.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ImportMode {
    /// Any rejected row: nothing is imported. A clean file is recorded as one entry.
    AllOrNothing,
    /// The good rows are imported; the rejected ones are reported.
    GoodRows,
}

#[derive(Subcommand)]
enum ReportCmd {
    /// A period's roll-up: per org unit (own and rolled up the tree), per merchant, or per
    /// pool.
    Rollup {
        /// 2026, 2026-03, 2026-Q1 (program's local time) or FROM_MS..TO_MS.
        #[arg(long)]
        period: String,
        /// Only this org unit and the units below it.
        #[arg(long)]
        org_unit: Option<String>,
        /// Which table: units, merchants or pools.
        #[arg(long, value_enum, default_value_t = RollupTable::Units)]
        table: RollupTable,
        /// Print CSV (header row first) instead of a table.
        #[arg(long)]
        csv: bool,
    },
    /// The top members of a period within an org unit's subtree (or the whole program).
    Ranking {
        /// 2026, 2026-03, 2026-Q1 (program's local time) or FROM_MS..TO_MS.
        #[arg(long)]
        period: String,
        /// Rank within this org unit's subtree.
        #[arg(long)]
        org_unit: Option<String>,
        /// How many members (1 to 1000).
        #[arg(long, default_value_t = 10)]
        top: u32,
        /// Order by points earned or by service minutes.
        #[arg(long, value_enum, default_value_t = RankArg::Points)]
        by: RankArg,
        /// Print CSV (header row first) instead of a table.
        #[arg(long)]
        csv: bool,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RollupTable {
    Units,
    Merchants,
    Pools,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RankArg {
    Points,
    Minutes,
}

#[derive(Subcommand)]
enum CertificateCmd {
    /// Issue a member's signed service-record certificate for a period.
    Issue {
        /// Member id.
        #[arg(long)]
        member: String,
        /// 2026, 2026-03, 2026-Q1 (program's local time) or FROM_MS..TO_MS; service start
        /// times are what count.
        #[arg(long)]
        period: String,
        /// Write the certificate (JSON) to this file; printed to stdout otherwise.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Verify a certificate file offline (no server needed). Exits non-zero if it does not
    /// verify.
    Verify {
        /// The certificate file (JSON, as `certificate issue` writes it).
        file: std::path::PathBuf,
        /// The program's published ed25519 public key (hex). Without it the certificate is
        /// checked against the key it names, which proves it unaltered but not who signed.
        #[arg(long)]
        public_key: Option<String>,
    },
}

/// One CSV field: quoted when it holds a comma, quote or line break (RFC 4180).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// Prints rows of JSON values as CSV with `columns` (dotted paths) as the header.
fn print_csv(rows: &[Value], columns: &[&str]) {
    println!(
        "{}",
        columns
            .iter()
            .map(|c| csv_field(&c.replace('.', "_")))
            .collect::<Vec<_>>()
            .join(",")
    );
    for row in rows {
        println!(
            "{}",
            columns
                .iter()
                .map(|c| csv_field(&cell(row, c)))
                .collect::<Vec<_>>()
                .join(",")
        );
    }
}

const STATEMENT_CSV_COLUMNS: &[&str] = &[
    "sequence",
    "entry_id",
    "time",
    "kind",
    "amount",
    "balance",
    "counterparty.kind",
    "counterparty.id",
    "corrects_entry_id",
];

/// A statement's lines as CSV; the opening balance of the range is the first line's
/// balance less its amount.
fn statement_csv(c: &Client, statement: &pb::GetStatementResponse) -> anyhow::Result<()> {
    let value = c.to_json(statement, "GetStatementResponse")?;
    let lines = value
        .get("lines")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    print_csv(&lines, STATEMENT_CSV_COLUMNS);
    Ok(())
}

fn reports(c: &Client) -> pb::reports_client::ReportsClient<Channel> {
    pb::reports_client::ReportsClient::new(c.channel.clone())
}

const FIGURES: &[&str] = &[
    "points_earned",
    "credit_minutes",
    "honour_minutes",
    "records",
    "points_redeemed",
    "points_donated",
    "points_granted",
];

fn prefixed(prefix: &str) -> Vec<String> {
    FIGURES.iter().map(|f| format!("{prefix}.{f}")).collect()
}

async fn report_cmd(c: &Client, cmd: ReportCmd) -> anyhow::Result<()> {
    match cmd {
        ReportCmd::Rollup {
            period,
            org_unit,
            table,
            csv,
        } => {
            let r = reports(c)
                .get_rollup(c.req(pb::GetRollupRequest {
                    program_id: c.program()?,
                    period,
                    org_unit_id: org_unit.unwrap_or_default(),
                }))
                .await
                .grpc()?;
            if c.json && !csv {
                return c.show(&r, "GetRollupResponse", &[], None);
            }
            let value = c.to_json(&r, "GetRollupResponse")?;
            let (list, mut columns): (&str, Vec<String>) = match table {
                RollupTable::Units => {
                    let mut columns: Vec<String> = ["org_unit_id", "parent_id", "name"]
                        .map(String::from)
                        .to_vec();
                    columns.extend(prefixed("total"));
                    columns.extend(prefixed("own"));
                    ("units", columns)
                }
                RollupTable::Merchants => (
                    "merchants",
                    [
                        "merchant_id",
                        "org_unit_id",
                        "points_redeemed",
                        "redemptions",
                    ]
                    .map(String::from)
                    .to_vec(),
                ),
                RollupTable::Pools => (
                    "pools",
                    ["pool_id", "org_unit_id", "points_donated", "points_granted"]
                        .map(String::from)
                        .to_vec(),
                ),
            };
            // Every row names its period, so CSV files of several periods concatenate.
            let mut rows = value
                .get(list)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for row in &mut rows {
                if let Value::Object(map) = row {
                    map.insert("period".into(), Value::String(r.period.clone()));
                }
            }
            columns.insert(0, "period".into());
            let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
            if csv {
                print_csv(&rows, &columns);
            } else {
                print_table(&rows, &columns[..columns.len().min(11)]);
            }
            Ok(())
        }
        ReportCmd::Ranking {
            period,
            org_unit,
            top,
            by,
            csv,
        } => {
            let r = reports(c)
                .get_ranking(c.req(pb::GetRankingRequest {
                    program_id: c.program()?,
                    period,
                    org_unit_id: org_unit.unwrap_or_default(),
                    top_n: top,
                    rank_by: match by {
                        RankArg::Points => pb::RankBy::Points as i32,
                        RankArg::Minutes => pb::RankBy::Minutes as i32,
                    },
                }))
                .await
                .grpc()?;
            if c.json && !csv {
                return c.show(&r, "GetRankingResponse", &[], None);
            }
            let value = c.to_json(&r, "GetRankingResponse")?;
            let mut rows = value
                .get("members")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for row in &mut rows {
                if let Value::Object(map) = row {
                    map.insert("period".into(), Value::String(r.period.clone()));
                    map.insert("org_unit_id".into(), Value::String(r.org_unit_id.clone()));
                }
            }
            let mut columns: Vec<String> = ["period", "org_unit_id", "rank", "member_id"]
                .map(String::from)
                .to_vec();
            columns.extend(prefixed("figures"));
            let columns: Vec<&str> = columns.iter().map(String::as_str).collect();
            if csv {
                print_csv(&rows, &columns);
            } else {
                print_table(&rows, &columns[2..]);
            }
            Ok(())
        }
    }
}

async fn certificate_cmd(c: &Client, cmd: CertificateCmd) -> anyhow::Result<()> {
    match cmd {
        CertificateCmd::Issue {
            member,
            period,
            out,
        } => {
            let r = reports(c)
                .issue_certificate(c.req(pb::IssueCertificateRequest {
                    program_id: c.program()?,
                    member_id: member,
                    period,
                }))
                .await
                .grpc()?;
            match out {
                Some(path) => {
                    std::fs::write(&path, format!("{}\n", r.certificate_json))
                        .with_context(|| format!("writing {}", path.display()))?;
                    if c.json {
                        println!(
                            "{}",
                            serde_json::json!({"file": path.display().to_string(),
                                "records": r.records, "public_key": r.public_key,
                                "journal_size": r.journal_size, "journal_head": r.journal_head})
                        );
                    } else {
                        print!("{}", r.note);
                        println!(
                            "written to {} (public key {})",
                            path.display(),
                            r.public_key
                        );
                    }
                }
                None => println!("{}", r.certificate_json),
            }
            Ok(())
        }
        CertificateCmd::Verify { file, public_key } => {
            verify_certificate(&file, public_key.as_deref(), c.json)
        }
    }
}

/// Verifies a certificate file offline.
fn verify_certificate(
    file: &std::path::Path,
    public_key: Option<&str>,
    json: bool,
) -> anyhow::Result<()> {
    use points_core::certificate::{verify, SignedCertificate};
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let signed: SignedCertificate = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a certificate file", file.display()))?;
    let trusted = public_key.unwrap_or(&signed.public_key);
    if let Err(e) = verify(&signed, trusted) {
        bail!("certificate does NOT verify: {e}");
    }
    let cert = &signed.certificate;
    if json {
        println!(
            "{}",
            serde_json::json!({"ok": true, "member_id": cert.member.to_string(),
                "period": cert.period.to_string(), "records": cert.records.len(),
                "credit_minutes": cert.credit_minutes.get(),
                "honour_minutes": cert.honour_minutes.get(),
                "journal_size": cert.journal_size, "journal_head": cert.journal_head.to_hex(),
                "public_key": signed.public_key, "key_trusted": public_key.is_some()})
        );
    } else {
        print!("{}", cert.note());
        println!("certificate verifies: signed by {}", signed.public_key);
        if public_key.is_none() {
            println!(
                "note: checked against the key the certificate names; pass --public-key with \
                 the program's published key to check who signed it"
            );
        }
    }
    Ok(())
}

/// A row of an import file that parsed.
struct ImportRow {
    line: usize,
    input: pb::ServiceRecordInput,
}

/// A rejected row of an import file.
#[derive(serde::Serialize)]
struct ImportProblem {
    line: usize,
    reason: String,
    message: String,
}

/// Whether a failed call may have been cut short rather than refused: re-running the
/// import finishes it (request ids are derived from the file).
fn transient(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Cancelled
            | tonic::Code::Unknown
            | tonic::Code::Internal
            | tonic::Code::ResourceExhausted
    )
}

fn status_reason(status: &tonic::Status) -> String {
    status
        .get_details_error_info()
        .map(|i| i.reason)
        .unwrap_or_else(|| format!("{:?}", status.code()))
}

/// The most records one RecordService (one atomic entry) carries.
const MAX_RECORDS: usize = 10_000;
/// The most operations one Submit carries.
const MAX_SUBMIT_OPS: usize = 1000;

async fn import_service(
    c: &Client,
    file: std::path::PathBuf,
    batch: usize,
    approve: bool,
    mode: ImportMode,
) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let digest = blake3::hash(text.as_bytes());
    // Request ids derived from the file's content: re-running the same import replays what
    // an earlier run recorded instead of recording it twice.
    let derive = |what: &[u8], index: u64| {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"points import service");
        hasher.update(digest.as_bytes());
        hasher.update(what);
        hasher.update(&index.to_le_bytes());
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string()
    };
    let program = c.program()?;

    // 1. Parse every row; a malformed row is reported, not fatal.
    let mut rows = Vec::new();
    let mut problems = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = n + 1;
        let raw = raw.trim();
        if raw.is_empty() || (n == 0 && raw.starts_with("member_id")) {
            continue;
        }
        let cols: Vec<&str> = raw.split(',').map(str::trim).collect();
        let problem = |reason: &str, message: String| ImportProblem {
            line,
            reason: reason.into(),
            message,
        };
        let [member, activity, org_unit, started_at, minutes] = cols.as_slice() else {
            problems.push(problem(
                "MALFORMED_ROW",
                format!("expected 5 columns, found {}", cols.len()),
            ));
            continue;
        };
        let started_at = match parse_time(started_at) {
            Ok(t) => t,
            Err(e) => {
                problems.push(problem("MALFORMED_ROW", format!("started_at: {e}")));
                continue;
            }
        };
        let Ok(minutes) = minutes.parse::<u32>() else {
            problems.push(problem(
                "MALFORMED_ROW",
                format!("minutes: {minutes:?} is not a whole number"),
            ));
            continue;
        };
        rows.push(ImportRow {
            line,
            input: pb::ServiceRecordInput {
                member_id: (*member).to_owned(),
                activity_id: (*activity).to_owned(),
                org_unit_id: (*org_unit).to_owned(),
                started_at: Some(started_at),
                minutes,
            },
        });
    }

    let total = rows.len() + problems.len();
    // 2. Dry run on the server: every row the ledger would refuse, with its reason.
    for chunk in rows.chunks(MAX_RECORDS) {
        let r = reports(c)
            .validate_service_records(c.req(pb::ValidateServiceRecordsRequest {
                program_id: program.clone(),
                records: chunk.iter().map(|r| r.input.clone()).collect(),
            }))
            .await
            .grpc()?;
        for p in r.problems {
            let Some(row) = usize::try_from(p.index).ok().and_then(|i| chunk.get(i)) else {
                bail!("the server named a record that was not sent");
            };
            problems.push(ImportProblem {
                line: row.line,
                reason: p.reason,
                message: p.message,
            });
        }
    }
    problems.sort_by_key(|p| p.line);
    let bad: std::collections::BTreeSet<usize> = problems.iter().map(|p| p.line).collect();
    let good: Vec<ImportRow> = rows
        .into_iter()
        .filter(|r| !bad.contains(&r.line))
        .collect();

    let print_problems = |problems: &[ImportProblem]| {
        if !c.json {
            for p in problems {
                eprintln!("line {}: {}: {}", p.line, p.reason, p.message);
            }
        }
    };

    let mut record_ids = Vec::new();
    let mut already = 0usize;
    match mode {
        ImportMode::AllOrNothing => {
            if !problems.is_empty() {
                print_problems(&problems);
                if c.json {
                    println!(
                        "{}",
                        serde_json::json!({"mode": "all-or-nothing", "rows": total,
                            "imported": 0, "rejected": problems})
                    );
                }
                bail!(
                    "nothing imported: {} of {total} rows rejected (all-or-nothing)",
                    problems.len()
                );
            }
            if good.is_empty() {
                bail!("nothing to import: the file has no rows");
            }
            if good.len() > MAX_RECORDS {
                bail!(
                    "nothing imported: an all-or-nothing import is one entry of at most \
                     {MAX_RECORDS} rows; this file has {} (split it, or use --mode good-rows)",
                    good.len()
                );
            }
            // One command, one entry: the whole file is recorded or none of it.
            let r = c
                .rec()
                .record_service(c.req(pb::RecordServiceRequest {
                    request_id: derive(b"all-or-nothing record", 0),
                    program_id: program.clone(),
                    records: good.iter().map(|r| r.input.clone()).collect(),
                }))
                .await
                .map_err(|s| anyhow!("nothing imported: {}", report(&s)))?
                .into_inner();
            if r.receipt.as_ref().is_some_and(|r| r.duplicate) {
                already = good.len();
            }
            record_ids = r.records.into_iter().map(|o| o.record_id).collect();
            if approve {
                let approved = c
                    .rec()
                    .approve_service(c.req(pb::ApproveServiceRequest {
                        request_id: derive(b"all-or-nothing approve", 0),
                        program_id: program.clone(),
                        record_ids: record_ids.clone(),
                    }))
                    .await;
                if let Err(s) = approved {
                    if transient(&s) {
                        bail!(
                            "recorded but not yet approved ({}); re-run the same command to \
                             finish",
                            report(&s)
                        );
                    }
                    // Refused (e.g. a daily cap): reject what was recorded, so the file
                    // leaves nothing behind that accrues.
                    c.rec()
                        .reject_service(c.req(pb::RejectServiceRequest {
                            request_id: derive(b"all-or-nothing rollback", 0),
                            program_id: program.clone(),
                            record_ids: record_ids.clone(),
                            reason: format!(
                                "import rolled back: approval refused ({})",
                                status_reason(&s)
                            ),
                        }))
                        .await
                        .map_err(|r| {
                            anyhow!("approval refused and the rollback failed: {}", report(&r))
                        })?;
                    bail!(
                        "nothing imported: approval refused ({}); the recorded rows were \
                         rejected, so nothing accrued",
                        report(&s)
                    );
                }
            }
        }
        ImportMode::GoodRows => {
            let batch = batch.clamp(1, MAX_SUBMIT_OPS);
            let bar = if c.json {
                ProgressBar::hidden()
            } else {
                ProgressBar::new(good.len() as u64)
            };
            bar.set_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} records {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            // One operation per row, each with a request id derived from the file and
            // the row's line: a re-run records each row at most once, whichever rows the
            // earlier run got through.
            for chunk in good.chunks(batch) {
                let ops = chunk
                    .iter()
                    .map(|row| pb::SubmitOperation {
                        operation: Some(pb::submit_operation::Operation::RecordService(
                            pb::RecordServiceRequest {
                                request_id: derive(b"row record", row.line as u64),
                                program_id: program.clone(),
                                records: vec![row.input.clone()],
                            },
                        )),
                    })
                    .collect();
                let results = submit(c, &program, ops).await?;
                let mut recorded: Vec<(&ImportRow, String)> = Vec::new();
                for (row, result) in chunk.iter().zip(results) {
                    use pb::submit_result::Result as Res;
                    match result.result {
                        Some(Res::RecordService(r)) => {
                            if r.receipt.as_ref().is_some_and(|r| r.duplicate) {
                                already += 1;
                            }
                            match r.records.into_iter().next() {
                                // Rejected on an earlier run, when its approval was refused.
                                Some(o) if o.status == pb::ServiceRecordStatus::Rejected as i32 => {
                                    problems.push(ImportProblem {
                                        line: row.line,
                                        reason: "ROLLED_BACK".into(),
                                        message: "approval was refused on an earlier run; the \
                                                  record was rejected"
                                            .into(),
                                    })
                                }
                                Some(o) if o.status != pb::ServiceRecordStatus::Pending as i32 => {
                                    record_ids.push(o.record_id);
                                }
                                Some(o) => recorded.push((row, o.record_id)),
                                None => bail!("line {}: no record in the answer", row.line),
                            }
                        }
                        Some(Res::Error(e)) => problems.push(ImportProblem {
                            line: row.line,
                            reason: e.reason,
                            message: e.message,
                        }),
                        _ => bail!("line {}: unexpected answer from the server", row.line),
                    }
                }
                if approve && !recorded.is_empty() {
                    let ops = recorded
                        .iter()
                        .map(|(row, id)| pb::SubmitOperation {
                            operation: Some(pb::submit_operation::Operation::ApproveService(
                                pb::ApproveServiceRequest {
                                    request_id: derive(b"row approve", row.line as u64),
                                    program_id: program.clone(),
                                    record_ids: vec![id.clone()],
                                },
                            )),
                        })
                        .collect();
                    let results = submit(c, &program, ops).await?;
                    let mut refused = Vec::new();
                    for ((row, id), result) in recorded.iter().zip(results) {
                        match result.result {
                            Some(pb::submit_result::Result::ApproveService(_)) => {
                                record_ids.push(id.clone());
                            }
                            Some(pb::submit_result::Result::Error(e)) => {
                                refused.push((*row, id.clone(), e));
                            }
                            _ => bail!("line {}: unexpected answer from the server", row.line),
                        }
                    }
                    // A row whose approval is refused is rejected, so it does not stay
                    // behind half-imported (recorded, never approved).
                    if !refused.is_empty() {
                        let ops = refused
                            .iter()
                            .map(|(row, id, e)| pb::SubmitOperation {
                                operation: Some(pb::submit_operation::Operation::RejectService(
                                    pb::RejectServiceRequest {
                                        request_id: derive(b"row rollback", row.line as u64),
                                        program_id: program.clone(),
                                        record_ids: vec![id.clone()],
                                        reason: format!("import: approval refused ({})", e.reason),
                                    },
                                )),
                            })
                            .collect();
                        submit(c, &program, ops).await?;
                        for (row, _, e) in refused {
                            problems.push(ImportProblem {
                                line: row.line,
                                reason: e.reason,
                                message: format!("approval refused: {}", e.message),
                            });
                        }
                    }
                } else {
                    record_ids.extend(recorded.into_iter().map(|(_, id)| id));
                }
                bar.inc(chunk.len() as u64);
            }
            bar.finish_and_clear();
            problems.sort_by_key(|p| p.line);
        }
    }
    let imported = record_ids.len();
    print_problems(&problems);
    if c.json {
        println!(
            "{}",
            serde_json::json!({
                "mode": if mode == ImportMode::AllOrNothing { "all-or-nothing" } else { "good-rows" },
                "rows": total, "imported": imported, "already_imported": already,
                // The names of the import's output before it had modes.
                "recorded": imported, "already_recorded": already,
                "approved": approve, "rejected": problems, "record_ids": record_ids})
        );
    } else {
        println!(
            "imported {imported} of {total} rows ({already} already imported by an earlier \
             run){}; {} rejected",
            if approve { ", approved" } else { "" },
            problems.len()
        );
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Issue 5: micro-wishes, volunteer events and merchant catalogues (service Volunteering).
// ------------------------------------------------------------------------------------------

#[derive(Subcommand)]
enum WishCmd {
    /// Post a resident's wish (a recorder).
    Post {
        /// Wish id; a fresh UUID by default.
        #[arg(long)]
        id: Option<String>,
        /// Org unit where it is to be fulfilled.
        #[arg(long)]
        org_unit: String,
        /// Activity whose rule the points are issued under.
        #[arg(long)]
        activity: String,
        /// What the resident wishes for.
        #[arg(long)]
        title: String,
        /// Points the claimant earns.
        #[arg(long)]
        points: String,
        /// Expected service in minutes.
        #[arg(long)]
        minutes: u32,
        /// How long a claim lasts, in milliseconds (default one week).
        #[arg(long, default_value_t = 7 * 86_400_000)]
        claim_ttl_ms: u64,
    },
    /// Record a volunteer's claim.
    Claim {
        /// Wish id.
        wish: String,
        #[command(flatten)]
        member: MemberArg,
    },
    /// Record that the claimant fulfilled the wish.
    Fulfil {
        /// Wish id.
        wish: String,
        #[command(flatten)]
        member: MemberArg,
    },
    /// Confirm a fulfilled wish: points and hours go to the claimant.
    Confirm {
        /// Wish id.
        wish: String,
    },
    /// Cancel a wish, releasing any claim.
    Cancel {
        /// Wish id.
        wish: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Record that a claim passed its deadline unfulfilled.
    Lapse {
        /// Wish id.
        wish: String,
    },
    /// Show a wish.
    Show {
        /// Wish id.
        wish: String,
    },
}

#[derive(Subcommand)]
enum EventCmd {
    /// Create an event with its roster (a recorder).
    Create {
        /// Event id; a fresh UUID by default.
        #[arg(long)]
        id: Option<String>,
        /// Org unit where it takes place.
        #[arg(long)]
        org_unit: String,
        /// Activity (credit time) whose rules apply.
        #[arg(long)]
        activity: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// A member id on the roster; repeat for each.
        #[arg(long = "member", required = true)]
        members: Vec<String>,
    },
    /// Check a member in.
    CheckIn {
        /// Event id.
        event: String,
        #[command(flatten)]
        member: MemberArg,
        /// When (RFC 3339, epoch ms, "now" or "now-2h").
        #[arg(long, default_value = "now")]
        at: String,
    },
    /// Check a member out; the attendance becomes a pending record.
    CheckOut {
        /// Event id.
        event: String,
        #[command(flatten)]
        member: MemberArg,
        /// When (RFC 3339, epoch ms, "now" or "now-2h").
        #[arg(long, default_value = "now")]
        at: String,
    },
    /// Approve every pending record of the event in one step.
    Approve {
        /// Event id.
        event: String,
    },
    /// Show an event and its attendance.
    Show {
        /// Event id.
        event: String,
    },
}

#[derive(Subcommand)]
enum CatalogueCmd {
    /// Add an item to a merchant's catalogue.
    Add {
        /// Merchant id.
        #[arg(long)]
        merchant: String,
        /// Item id; a fresh UUID by default.
        #[arg(long)]
        id: Option<String>,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Price of one, in points.
        #[arg(long)]
        price: String,
        /// Stock on the shelf.
        #[arg(long, default_value_t = 0)]
        stock: u32,
    },
    /// Add stock to an item.
    Restock {
        /// Merchant id.
        #[arg(long)]
        merchant: String,
        /// Item id.
        item: String,
        /// How many are added.
        #[arg(long)]
        quantity: u32,
    },
    /// Change an item's price from now on.
    Price {
        /// Merchant id.
        #[arg(long)]
        merchant: String,
        /// Item id.
        item: String,
        /// The new price of one.
        #[arg(long)]
        price: String,
    },
    /// Redeem items: ITEM=QUANTITY, repeated.
    Redeem {
        /// Merchant id.
        #[arg(long)]
        merchant: String,
        #[command(flatten)]
        member: MemberArg,
        /// Lines as ITEM_ID=QUANTITY.
        #[arg(required = true)]
        lines: Vec<String>,
    },
    /// List a merchant's catalogue.
    List {
        /// Merchant id.
        #[arg(long)]
        merchant: String,
    },
}

impl Client {
    fn vol(&self) -> pb::volunteering_client::VolunteeringClient<Channel> {
        pb::volunteering_client::VolunteeringClient::new(self.channel.clone())
    }
}

async fn wish(c: &Client, cmd: WishCmd) -> anyhow::Result<()> {
    let mut v = c.vol();
    let r = match cmd {
        WishCmd::Post {
            id,
            org_unit,
            activity,
            title,
            points,
            minutes,
            claim_ttl_ms,
        } => v
            .post_wish(c.req(pb::PostWishRequest {
                request_id: c.request_id(),
                program_id: c.program()?,
                wish_id: id.unwrap_or_else(new_id),
                org_unit_id: org_unit,
                activity_id: activity,
                title,
                points,
                minutes,
                claim_ttl_ms,
            }))
            .await
            .grpc()?,
        WishCmd::Claim { wish, member } => v
            .claim_wish(c.req(pb::ClaimWishRequest {
                request_id: c.request_id(),
                program_id: c.program()?,
                wish_id: wish,
                member: Some(member_ref(&member)),
            }))
            .await
            .grpc()?,
        WishCmd::Fulfil { wish, member } => v
            .fulfil_wish(c.req(pb::FulfilWishRequest {
                request_id: c.request_id(),
                program_id: c.program()?,
                wish_id: wish,
                member: Some(member_ref(&member)),
            }))
            .await
            .grpc()?,
        WishCmd::Confirm { wish } => v
            .confirm_wish(c.req(pb::ConfirmWishRequest {
                request_id: c.request_id(),
                program_id: c.program()?,
                wish_id: wish,
            }))
            .await
            .grpc()?,
        WishCmd::Cancel { wish, reason } => v
            .cancel_wish(c.req(pb::CancelWishRequest {
                request_id: c.request_id(),
                program_id: c.program()?,
                wish_id: wish,
                reason,
            }))
            .await
            .grpc()?,
        WishCmd::Lapse { wish } => v
            .lapse_wish_claim(c.req(pb::LapseWishClaimRequest {
                request_id: c.request_id(),
                program_id: c.program()?,
                wish_id: wish,
            }))
            .await
            .grpc()?,
        WishCmd::Show { wish } => {
            let r = v
                .get_wish(c.req(pb::GetWishRequest {
                    program_id: c.program()?,
                    wish_id: wish,
                }))
                .await
                .grpc()?;
            return c.show(&r, "Wish", &[], None);
        }
    };
    c.show(&r, "WishResponse", &[], None)
}

async fn event(c: &Client, cmd: EventCmd) -> anyhow::Result<()> {
    let mut v = c.vol();
    let r = match cmd {
        EventCmd::Create {
            id,
            org_unit,
            activity,
            name,
            members,
        } => v
            .create_gathering(c.req(pb::CreateGatheringRequest {
                request_id: c.request_id(),
                program_id: c.program()?,
                gathering_id: id.unwrap_or_else(new_id),
                org_unit_id: org_unit,
                activity_id: activity,
                name,
                roster_member_ids: members,
            }))
            .await
            .grpc()?,
        EventCmd::CheckIn { event, member, at } => v
            .check_in(c.req(pb::CheckInRequest {
                request_id: c.request_id(),
                program_id: c.program()?,
                gathering_id: event,
                member: Some(member_ref(&member)),
                time: Some(parse_time(&at)?),
            }))
            .await
            .grpc()?,
        EventCmd::CheckOut { event, member, at } => v
            .check_out(c.req(pb::CheckOutRequest {
                request_id: c.request_id(),
                program_id: c.program()?,
                gathering_id: event,
                member: Some(member_ref(&member)),
                time: Some(parse_time(&at)?),
            }))
            .await
            .grpc()?,
        EventCmd::Approve { event } => v
            .approve_gathering(c.req(pb::ApproveGatheringRequest {
                request_id: c.request_id(),
                program_id: c.program()?,
                gathering_id: event,
            }))
            .await
            .grpc()?,
        EventCmd::Show { event } => {
            let r = v
                .get_gathering(c.req(pb::GetGatheringRequest {
                    program_id: c.program()?,
                    gathering_id: event,
                }))
                .await
                .grpc()?;
            return c.show(&r, "Gathering", &[], None);
        }
    };
    c.show(&r, "GatheringResponse", &[], None)
}

async fn catalogue(c: &Client, cmd: CatalogueCmd) -> anyhow::Result<()> {
    let mut v = c.vol();
    let r = match cmd {
        CatalogueCmd::Add {
            merchant,
            id,
            name,
            price,
            stock,
        } => v
            .list_item(c.req(pb::ListItemRequest {
                request_id: c.request_id(),
                program_id: c.program()?,
                merchant_id: merchant,
                item_id: id.unwrap_or_else(new_id),
                name,
                price,
                stock,
            }))
            .await
            .grpc()?,
        CatalogueCmd::Restock {
            merchant,
            item,
            quantity,
        } => v
            .restock_item(c.req(pb::RestockItemRequest {
                request_id: c.request_id(),
                program_id: c.program()?,
                merchant_id: merchant,
                item_id: item,
                quantity,
            }))
            .await
            .grpc()?,
        CatalogueCmd::Price {
            merchant,
            item,
            price,
        } => v
            .set_item_price(c.req(pb::SetItemPriceRequest {
                request_id: c.request_id(),
                program_id: c.program()?,
                merchant_id: merchant,
                item_id: item,
                price,
            }))
            .await
            .grpc()?,
        CatalogueCmd::Redeem {
            merchant,
            member,
            lines,
        } => {
            let lines = lines
                .iter()
                .map(|line| {
                    let (item, quantity) = line
                        .split_once('=')
                        .ok_or_else(|| anyhow!("a line is ITEM_ID=QUANTITY, got {line:?}"))?;
                    Ok(pb::ItemLine {
                        item_id: item.to_owned(),
                        quantity: quantity
                            .parse()
                            .with_context(|| format!("quantity in {line:?}"))?,
                        unit_price: String::new(),
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let r = v
                .redeem_items(c.req(pb::RedeemItemsRequest {
                    request_id: c.request_id(),
                    program_id: c.program()?,
                    merchant_id: merchant,
                    member: Some(member_ref(&member)),
                    lines,
                }))
                .await
                .grpc()?;
            return c.show(&r, "RedeemItemsResponse", &[], None);
        }
        CatalogueCmd::List { merchant } => {
            let r = v
                .list_catalogue(c.req(pb::ListCatalogueRequest {
                    program_id: c.program()?,
                    merchant_id: merchant,
                }))
                .await
                .grpc()?;
            return c.show(
                &r,
                "ListCatalogueResponse",
                &[],
                Some(("items", &["item_id", "name", "price", "stock"])),
            );
        }
    };
    c.show(&r, "ItemResponse", &[], None)
}

/// Sends one Submit batch; a failure of the whole call stops the import, which a re-run
/// resumes.
async fn submit(
    c: &Client,
    program: &str,
    operations: Vec<pb::SubmitOperation>,
) -> anyhow::Result<Vec<pb::SubmitResult>> {
    let count = operations.len();
    let r = c
        .pos()
        .submit(c.req(pb::SubmitRequest {
            request_id: new_id(),
            program_id: program.to_owned(),
            operations,
        }))
        .await
        .map_err(|s| {
            anyhow!(
                "import interrupted ({}); re-run the same command to finish",
                report(&s)
            )
        })?
        .into_inner();
    if r.results.len() != count {
        bail!(
            "the server answered {} of {count} operations",
            r.results.len()
        );
    }
    Ok(r.results)
}

// ------------------------------------------------------------------------------------------
// Settlement (issue 6)
// ------------------------------------------------------------------------------------------

#[derive(Clone, Copy, ValueEnum)]
enum OverBudgetArg {
    /// Accept redemptions over budget; pay them from the next month's budget.
    Defer,
    /// Refuse redemptions over budget (FUND_BUDGET_EXCEEDED).
    Refuse,
}

#[derive(Subcommand)]
enum SettlementCmd {
    /// Create a community fund with a monthly budget in yuan.
    CreateFund {
        /// New fund id (a fresh UUID when omitted).
        #[arg(long)]
        id: Option<String>,
        /// Org unit whose money it is.
        #[arg(long)]
        org_unit: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Budget per local calendar month, in yuan ("5000.00").
        #[arg(long)]
        budget: String,
    },
    /// Set the funds that pay a merchant, in paying order.
    SetFunds {
        /// Merchant id.
        #[arg(long)]
        merchant: String,
        /// Fund ids, in paying order.
        #[arg(long = "fund", required = true)]
        funds: Vec<String>,
    },
    /// Set a merchant's rate in yuan per point from an instant after now.
    SetRate {
        /// Merchant id.
        #[arg(long)]
        merchant: String,
        /// Yuan per point ("0.05").
        #[arg(long)]
        rate: String,
        /// From when: "now+1s", RFC 3339, or epoch milliseconds.
        #[arg(long, default_value = "now+1s")]
        from: String,
    },
    /// Set what happens to redemptions over budget.
    OverBudget {
        /// The setting.
        #[arg(value_enum)]
        setting: OverBudgetArg,
    },
    /// Close a merchant's open settlement period.
    Close {
        /// Merchant id.
        #[arg(long)]
        merchant: String,
        /// The period to close (the merchant's open one).
        #[arg(long)]
        period: u32,
    },
    /// Show a closed period's statement.
    Statement {
        /// Merchant id.
        #[arg(long)]
        merchant: String,
        /// The period.
        #[arg(long)]
        period: u32,
        /// Print the statement as CSV.
        #[arg(long)]
        csv: bool,
        /// Write the CSV to this file instead of printing it.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// List closed periods and each merchant's open period.
    List {
        /// Only this merchant.
        #[arg(long)]
        merchant: Option<String>,
    },
    /// Reconcile points issued with where they are, per program and org unit.
    Reconcile,
}

fn settlement_client(c: &Client) -> pb::settlement_client::SettlementClient<Channel> {
    pb::settlement_client::SettlementClient::new(c.channel.clone())
}

async fn settlement(c: &Client, cmd: SettlementCmd) -> anyhow::Result<()> {
    let mut client = settlement_client(c);
    match cmd {
        SettlementCmd::CreateFund {
            id,
            org_unit,
            name,
            budget,
        } => {
            let id = id.unwrap_or_else(new_id);
            let r = client
                .create_fund(c.req(pb::CreateFundRequest {
                    request_id: c.request_id(),
                    program_id: c.program()?,
                    fund_id: id.clone(),
                    org_unit_id: org_unit,
                    name,
                    budget_per_month_yuan: budget,
                }))
                .await
                .grpc()?;
            c.show(&r, "CreateFundResponse", &[("fund_id", id)], None)
        }
        SettlementCmd::SetFunds { merchant, funds } => {
            let r = client
                .set_merchant_funds(c.req(pb::SetMerchantFundsRequest {
                    request_id: c.request_id(),
                    program_id: c.program()?,
                    merchant_id: merchant,
                    fund_ids: funds,
                }))
                .await
                .grpc()?;
            c.show(&r, "SetMerchantFundsResponse", &[], None)
        }
        SettlementCmd::SetRate {
            merchant,
            rate,
            from,
        } => {
            let r = client
                .set_merchant_rate(c.req(pb::SetMerchantRateRequest {
                    request_id: c.request_id(),
                    program_id: c.program()?,
                    merchant_id: merchant,
                    yuan_per_point: rate,
                    effective_from: Some(parse_time(&from)?),
                }))
                .await
                .grpc()?;
            c.show(&r, "SetMerchantRateResponse", &[], None)
        }
        SettlementCmd::OverBudget { setting } => {
            let setting = match setting {
                OverBudgetArg::Defer => pb::OverBudgetSetting::Defer,
                OverBudgetArg::Refuse => pb::OverBudgetSetting::Refuse,
            };
            let r = client
                .set_over_budget(c.req(pb::SetOverBudgetRequest {
                    request_id: c.request_id(),
                    program_id: c.program()?,
                    setting: setting as i32,
                }))
                .await
                .grpc()?;
            c.show(&r, "SetOverBudgetResponse", &[], None)
        }
        SettlementCmd::Close { merchant, period } => {
            let r = client
                .close_settlement_period(c.req(pb::CloseSettlementPeriodRequest {
                    request_id: c.request_id(),
                    program_id: c.program()?,
                    merchant_id: merchant,
                    period,
                }))
                .await
                .grpc()?;
            c.show(&r, "CloseSettlementPeriodResponse", &[], None)
        }
        SettlementCmd::Statement {
            merchant,
            period,
            csv,
            out,
        } => {
            let r = client
                .get_settlement_statement(c.req(pb::GetSettlementStatementRequest {
                    program_id: c.program()?,
                    merchant_id: merchant,
                    period,
                }))
                .await
                .grpc()?;
            if let Some(path) = out {
                std::fs::write(&path, &r.csv)
                    .with_context(|| format!("writing {}", path.display()))?;
                return Ok(());
            }
            if csv {
                print!("{}", r.csv);
                return Ok(());
            }
            if c.json {
                return c.show(&r, "GetSettlementStatementResponse", &[], None);
            }
            let value = c.to_json(&r, "GetSettlementStatementResponse")?;
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
                    "member_id",
                    "points",
                    "rate_yuan_per_point",
                    "money_yuan",
                ],
            );
            if let Some(s) = &r.settlement {
                c.show(s, "SettlementSummary", &[], None)?;
            }
            Ok(())
        }
        SettlementCmd::List { merchant } => {
            let r = client
                .list_settlements(c.req(pb::ListSettlementsRequest {
                    program_id: c.program()?,
                    merchant_id: merchant.unwrap_or_default(),
                }))
                .await
                .grpc()?;
            c.show(
                &r,
                "ListSettlementsResponse",
                &[],
                Some((
                    "settlements",
                    &[
                        "merchant_id",
                        "period",
                        "closed_at",
                        "net_points",
                        "owed_yuan",
                        "paid_yuan",
                        "deferred_out_yuan",
                    ],
                )),
            )
        }
        SettlementCmd::Reconcile => {
            let r = client
                .reconcile(c.req(pb::ReconcileRequest {
                    program_id: c.program()?,
                }))
                .await
                .grpc()?;
            c.show(&r, "ReconcileResponse", &[], None)?;
            if !r.balanced {
                bail!("the reconciliation does not balance");
            }
            Ok(())
        }
    }
}
