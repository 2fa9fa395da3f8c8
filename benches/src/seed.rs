//! `points-load seed`: a program, an org unit, merchants (each with a MERCHANT API key), an
//! activity, and M members each with points (enrol in Submit batches, then one
//! RecordService and one ApproveService per chunk of members), with a progress bar.

use crate::client::{self, status_error, Clients, Key};
use crate::ids::{member_id, random_u64};
use crate::stats::per_second;
use anyhow::{bail, Context as _};
use indicatif::{ProgressBar, ProgressStyle};
use points_grpc::pb;
use points_grpc::pb::submit_operation::Operation as Op;
use points_grpc::pb::submit_result::Result as Res;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use uuid::Uuid;

/// What to seed.
#[derive(Clone, Debug)]
pub struct SeedOptions {
    /// Server address, `host:port`.
    pub addr: String,
    /// A server admin API key (the bootstrap key).
    pub admin_key: String,
    /// Members to enrol.
    pub members: u64,
    /// Merchants to register.
    pub merchants: usize,
    /// Points each member earns from the seeding accrual, a decimal string.
    pub points_each: String,
    /// Enrolments per Submit call (the server takes at most 10,000).
    pub enrol_batch: usize,
    /// Records per RecordService/ApproveService call (the server takes at most 10,000).
    pub record_batch: usize,
    /// Member chunks seeded concurrently.
    pub inflight: usize,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

impl SeedOptions {
    /// Defaults for `members` members against `addr`.
    pub fn new(addr: &str, admin_key: &str, members: u64) -> Self {
        SeedOptions {
            addr: addr.to_owned(),
            admin_key: admin_key.to_owned(),
            members,
            merchants: 4,
            points_each: "1000".to_owned(),
            enrol_batch: 1000,
            record_batch: 10_000,
            inflight: 2,
            progress: false,
        }
    }
}

/// A merchant the seed registered, with its till's API key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SeededMerchant {
    /// UUID of the merchant.
    pub merchant_id: String,
    /// Secret of a MERCHANT API key for it.
    pub api_key: String,
}

/// How long seeding took.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SeedTimings {
    /// Program, org unit, merchants, keys and activity, in seconds.
    pub setup_s: f64,
    /// Enrolling and accruing every member, in seconds.
    pub members_s: f64,
    /// Everything, in seconds.
    pub total_s: f64,
    /// Members seeded per second (enrol + record + approve).
    pub members_per_s: f64,
    /// Journal entries written.
    pub entries: u64,
}

/// What a load run needs to know about a seeded program; written as JSON (`--state`).
/// It holds merchant API key secrets: treat the file like a key.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SeedState {
    /// UUID of the program.
    pub program_id: String,
    /// UUID of the org unit members, merchants and the activity live in.
    pub org_unit_id: String,
    /// UUID of the activity accruals record service of.
    pub activity_id: String,
    /// The merchants.
    pub merchants: Vec<SeededMerchant>,
    /// Prefix of the member ids ([`crate::ids::member_id`]).
    pub member_prefix: u64,
    /// Number of members, indices `0..members`.
    pub members: u64,
    /// Points each member was given, and each accrual gives.
    pub points_each: String,
    /// How long seeding took.
    pub timings: SeedTimings,
}

impl SeedState {
    /// The id of member `index`.
    pub fn member(&self, index: u64) -> Uuid {
        member_id(self.member_prefix, index)
    }

    /// Reads a state file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the seed state {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Writes a state file.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
    }
}

/// A protobuf timestamp `ago` before now.
pub fn timestamp_ago(ago: Duration) -> prost_types::Timestamp {
    let t = SystemTime::now()
        .checked_sub(ago)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
    }
}

fn rid() -> String {
    Uuid::new_v4().to_string()
}

/// Seeds a program as [`SeedOptions`] say and returns its state.
pub async fn seed(opts: &SeedOptions) -> anyhow::Result<SeedState> {
    let started = Instant::now();
    let key = Key::new(&opts.admin_key)?;
    let channels = client::connect(&opts.addr, opts.inflight.clamp(1, 4)).await?;
    let first = channels
        .first()
        .cloned()
        .context("no channel to the server")?;
    let mut c = Clients::new(first);

    let program_id = Uuid::new_v4().to_string();
    c.admin
        .create_program(key.req(pb::CreateProgramRequest {
            request_id: rid(),
            program_id: program_id.clone(),
            name: "Load test programme".to_owned(),
            unit_name: "points".to_owned(),
            decimal_places: 2,
            expiry: Some(pb::ExpiryPolicy {
                policy: Some(pb::expiry_policy::Policy::Never(
                    pb::expiry_policy::Never {},
                )),
            }),
            ..Default::default()
        }))
        .await
        .map_err(|s| status_error("CreateProgram", &s))?;

    let org_unit_id = Uuid::new_v4().to_string();
    c.admin
        .create_org_unit(key.req(pb::CreateOrgUnitRequest {
            request_id: rid(),
            program_id: program_id.clone(),
            org_unit_id: org_unit_id.clone(),
            parent_id: String::new(),
            name: "Load district".to_owned(),
            level: pb::OrgUnitLevel::District as i32,
        }))
        .await
        .map_err(|s| status_error("CreateOrgUnit", &s))?;

    let mut merchants = Vec::with_capacity(opts.merchants);
    for i in 0..opts.merchants.max(1) {
        let merchant_id = Uuid::new_v4().to_string();
        c.admin
            .register_merchant(key.req(pb::RegisterMerchantRequest {
                request_id: rid(),
                program_id: program_id.clone(),
                merchant_id: merchant_id.clone(),
                org_unit_id: org_unit_id.clone(),
                name: format!("Load merchant {i}"),
                kind: pb::MerchantKind::Partner as i32,
            }))
            .await
            .map_err(|s| status_error("RegisterMerchant", &s))?;
        let created = c
            .admin
            .create_api_key(key.req(pb::CreateApiKeyRequest {
                program_id: program_id.clone(),
                role: pb::Role::Merchant as i32,
                org_unit_id: String::new(),
                merchant_id: merchant_id.clone(),
                label: format!("load till {i}"),
            }))
            .await
            .map_err(|s| status_error("CreateApiKey", &s))?
            .into_inner();
        merchants.push(SeededMerchant {
            merchant_id,
            api_key: created.secret,
        });
    }

    let activity_id = Uuid::new_v4().to_string();
    c.recording
        .define_activity(key.req(pb::DefineActivityRequest {
            request_id: rid(),
            program_id: program_id.clone(),
            activity_id: activity_id.clone(),
            org_unit_id: org_unit_id.clone(),
            name: "Evening patrol".to_owned(),
            category: "patrol".to_owned(),
            rule: Some(pb::ActivityRule {
                rule: Some(pb::activity_rule::Rule::PerOccasion(
                    opts.points_each.clone(),
                )),
            }),
            coefficient: String::new(),
            max_minutes_per_occasion: None,
            daily_points_cap: None,
            time_kind: pb::TimeKind::Credit as i32,
        }))
        .await
        .map_err(|s| status_error("DefineActivity", &s))?;
    let setup = started.elapsed();

    let state = SeedState {
        program_id,
        org_unit_id,
        activity_id,
        merchants,
        member_prefix: random_u64(),
        members: opts.members,
        points_each: opts.points_each.clone(),
        timings: SeedTimings::default(),
    };
    let members_started = Instant::now();
    let entries = seed_members(opts, &key, &channels, &state).await?;
    let members_elapsed = members_started.elapsed();
    let total = started.elapsed();
    let mut state = state;
    state.timings = SeedTimings {
        setup_s: setup.as_secs_f64(),
        members_s: members_elapsed.as_secs_f64(),
        total_s: total.as_secs_f64(),
        members_per_s: per_second(opts.members, members_elapsed).round(),
        entries: entries + 4 + 2 * state.merchants.len() as u64,
    };
    Ok(state)
}

/// Enrols and accrues every member, `inflight` chunks at a time. Returns entries written.
async fn seed_members(
    opts: &SeedOptions,
    key: &Key,
    channels: &[tonic::transport::Channel],
    state: &SeedState,
) -> anyhow::Result<u64> {
    if opts.members == 0 {
        return Ok(0);
    }
    let chunk = opts.record_batch.clamp(1, 10_000) as u64;
    let chunks = opts.members.div_ceil(chunk);
    let next = Arc::new(AtomicU64::new(0));
    let entries = Arc::new(AtomicU64::new(0));
    let bar = if opts.progress {
        let bar = ProgressBar::new(opts.members);
        bar.set_style(
            ProgressStyle::with_template(
                "seeding {bar:40} {pos}/{len} members  {per_sec}  eta {eta}  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let state = Arc::new(state.clone());
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..opts.inflight.max(1) {
        let channel = channels[w % channels.len()].clone();
        let (next, entries, bar, state, key) = (
            next.clone(),
            entries.clone(),
            bar.clone(),
            state.clone(),
            key.clone(),
        );
        let enrol_batch = opts.enrol_batch.clamp(1, 1000) as u64;
        let members = opts.members;
        tasks.spawn(async move {
            let mut c = Clients::new(channel);
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= chunks {
                    return Ok::<(), anyhow::Error>(());
                }
                let lo = n * chunk;
                let hi = (lo + chunk).min(members);
                let mut start = lo;
                while start < hi {
                    let end = (start + enrol_batch).min(hi);
                    enrol(&mut c, &key, &state, start..end).await?;
                    entries.fetch_add(end - start, Ordering::Relaxed);
                    bar.set_message(format!("enrolled up to #{end}"));
                    start = end;
                }
                accrue(&mut c, &key, &state, lo..hi).await?;
                entries.fetch_add(2, Ordering::Relaxed);
                bar.inc(hi - lo);
            }
        });
    }
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let outcome = joined.map_err(anyhow::Error::from).and_then(|r| r);
        if let Err(e) = outcome {
            if first_error.is_none() {
                first_error = Some(e);
                tasks.abort_all();
            }
        }
    }
    bar.finish_and_clear();
    match first_error {
        Some(e) => Err(e),
        None => Ok(entries.load(Ordering::Relaxed)),
    }
}

/// Enrols members `range` in one Submit call.
async fn enrol(
    c: &mut Clients,
    key: &Key,
    state: &SeedState,
    range: std::ops::Range<u64>,
) -> anyhow::Result<()> {
    let operations: Vec<pb::SubmitOperation> = range
        .clone()
        .map(|i| pb::SubmitOperation {
            operation: Some(Op::EnrolMember(pb::EnrolMemberRequest {
                request_id: rid(),
                program_id: String::new(),
                member_id: state.member(i).to_string(),
                org_unit_id: state.org_unit_id.clone(),
                kind: pb::MemberKind::Resident as i32,
                dual_registration: false,
                card_code: String::new(),
            })),
        })
        .collect();
    let response = c
        .pos
        .submit(key.req(pb::SubmitRequest {
            request_id: rid(),
            program_id: state.program_id.clone(),
            operations,
        }))
        .await
        .map_err(|s| status_error("Submit (enrol)", &s))?
        .into_inner();
    if response.results.len() as u64 != range.end - range.start {
        bail!(
            "Submit (enrol) answered {} results for {} operations",
            response.results.len(),
            range.end - range.start
        );
    }
    for (i, result) in response.results.iter().enumerate() {
        if let Some(Res::Error(e)) = &result.result {
            bail!(
                "enrolling member #{}: {} {}",
                range.start + i as u64,
                client::operation_error_key(e),
                e.message
            );
        }
    }
    Ok(())
}

/// Records one service record per member of `range`, then approves them all.
async fn accrue(
    c: &mut Clients,
    key: &Key,
    state: &SeedState,
    range: std::ops::Range<u64>,
) -> anyhow::Result<()> {
    let started_at = timestamp_ago(Duration::from_secs(2 * 3600));
    let records: Vec<pb::ServiceRecordInput> = range
        .map(|i| pb::ServiceRecordInput {
            member_id: state.member(i).to_string(),
            activity_id: state.activity_id.clone(),
            org_unit_id: state.org_unit_id.clone(),
            started_at: Some(started_at),
            minutes: 60,
        })
        .collect();
    let recorded = c
        .recording
        .record_service(key.req(pb::RecordServiceRequest {
            request_id: rid(),
            program_id: state.program_id.clone(),
            records,
        }))
        .await
        .map_err(|s| status_error("RecordService", &s))?
        .into_inner();
    let record_ids: Vec<String> = recorded.records.into_iter().map(|r| r.record_id).collect();
    c.recording
        .approve_service(key.req(pb::ApproveServiceRequest {
            request_id: rid(),
            program_id: state.program_id.clone(),
            record_ids,
        }))
        .await
        .map_err(|s| status_error("ApproveService", &s))?;
    Ok(())
}
