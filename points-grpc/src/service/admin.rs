//! The `Admin` service: programs, org units, merchants and API keys.

use super::{caller, page_by_id, program_id, Ctx, DEFAULT_PAGE, MAX_PAGE};
use crate::auth::{Principal, Scope};
use crate::convert::{
    engine_status, page_size, points_str, receipt, rejection_status, status, timestamp_to_pb,
    Fields,
};
use crate::engine::{ApiKeyRecord, ApiRole};
use crate::pb;
use crate::pb::admin_server::Admin;
use points_core::{
    ActorId, Command, EntryKind, ExpiryPolicy, Ledger, MerchantId, MerchantKind, MerchantStatus,
    MerchantView, OrgLevel, OrgUnitId, OrgUnitView, ProgramId, ProgramSpec, Rejection, RequestId,
    Scale, StarThresholds, Timestamp,
};
use tonic::{Code, Response, Status};

/// Serves `points.v1.Admin`.
pub struct AdminService {
    ctx: Ctx,
}

impl AdminService {
    /// The service over `ctx`.
    pub fn new(ctx: Ctx) -> Self {
        AdminService { ctx }
    }
}

/// The wire form of a program's settings.
pub fn program_to_pb(spec: &ProgramSpec) -> pb::Program {
    use pb::expiry_policy::{EndOfYear, MonthsAfterEarning, Never, Policy};
    let scale = spec.scale();
    pb::Program {
        program_id: spec.id().to_string(),
        name: spec.name().to_owned(),
        unit_name: spec.unit_name().to_owned(),
        decimal_places: u32::from(scale.places()),
        expiry: Some(pb::ExpiryPolicy {
            policy: Some(match spec.expiry() {
                ExpiryPolicy::Never => Policy::Never(Never {}),
                ExpiryPolicy::EndOfYear { years_after } => Policy::EndOfYear(EndOfYear {
                    years_after: u32::from(years_after),
                }),
                ExpiryPolicy::MonthsAfterEarning { months } => {
                    Policy::MonthsAfterEarning(MonthsAfterEarning {
                        months: u32::from(months),
                    })
                }
            }),
        }),
        utc_offset_minutes: i32::from(spec.utc_offset_minutes()),
        star_thresholds_hours: spec.stars().hours().to_vec(),
        max_hold_ttl_ms: spec.max_hold_ttl_ms(),
        donation_cap_per_year: spec.donation_cap_per_year().map(|p| points_str(p, scale)),
        grant_cap: spec.grant_cap().map(|p| points_str(p, scale)),
    }
}

fn level_to_pb(level: OrgLevel) -> pb::OrgUnitLevel {
    match level {
        OrgLevel::District => pb::OrgUnitLevel::District,
        OrgLevel::Street => pb::OrgUnitLevel::Street,
        OrgLevel::Community => pb::OrgUnitLevel::Community,
        OrgLevel::Estate => pb::OrgUnitLevel::Estate,
        OrgLevel::Other => pb::OrgUnitLevel::Other,
    }
}

fn org_unit_to_pb(view: &OrgUnitView) -> pb::OrgUnit {
    pb::OrgUnit {
        org_unit_id: view.id.to_string(),
        parent_id: view.parent.map(|p| p.to_string()).unwrap_or_default(),
        name: view.name.clone(),
        level: level_to_pb(view.level) as i32,
    }
}

fn merchant_to_pb(view: &MerchantView, scale: Scale) -> pb::Merchant {
    pb::Merchant {
        merchant_id: view.id.to_string(),
        org_unit_id: view.org_unit.to_string(),
        name: view.name.clone(),
        kind: match view.kind {
            MerchantKind::Partner => pb::MerchantKind::Partner,
            MerchantKind::CommunitySupermarket => pb::MerchantKind::CommunitySupermarket,
        } as i32,
        status: match view.status {
            MerchantStatus::Active => pb::MerchantStatus::Active,
            MerchantStatus::Suspended => pb::MerchantStatus::Suspended,
        } as i32,
        taken: points_str(view.taken, scale),
    }
}

fn role_to_pb(role: ApiRole) -> pb::Role {
    match role {
        ApiRole::Admin => pb::Role::Admin,
        ApiRole::Recorder => pb::Role::Recorder,
        ApiRole::Merchant => pb::Role::Merchant,
        ApiRole::Auditor => pb::Role::Auditor,
    }
}

/// The wire form of a key (never its secret).
pub fn key_to_pb(key: &ApiKeyRecord) -> pb::ApiKey {
    pb::ApiKey {
        api_key_id: key.id.to_string(),
        program_id: key.program.map(|p| p.to_string()).unwrap_or_default(),
        role: role_to_pb(key.role) as i32,
        org_unit_id: key.org_unit.map(|p| p.to_string()).unwrap_or_default(),
        merchant_id: key.merchant.map(|p| p.to_string()).unwrap_or_default(),
        label: key.label.clone(),
        created_at: Some(timestamp_to_pb(Timestamp::from_millis(key.created_at_ms))),
        revoked: key.revoked,
    }
}

fn spec_from_pb(req: &pb::CreateProgramRequest) -> Result<(ProgramSpec, RequestId), Status> {
    use pb::expiry_policy::Policy;
    let mut f = Fields::default();
    let request_id = f.id::<RequestId>("request_id", &req.request_id);
    let id = f.id::<ProgramId>("program_id", &req.program_id);
    let name = f.text("name", &req.name);
    let unit_name = f.text("unit_name", &req.unit_name);
    let scale = u8::try_from(req.decimal_places).ok().and_then(Scale::new);
    if scale.is_none() {
        f.violation("decimal_places", "0 to 6");
    }
    let expiry = match req.expiry.as_ref().and_then(|e| e.policy.as_ref()) {
        None | Some(Policy::Never(_)) => Some(ExpiryPolicy::Never),
        Some(Policy::EndOfYear(e)) => match u8::try_from(e.years_after) {
            Ok(years_after) if years_after <= 100 => Some(ExpiryPolicy::EndOfYear { years_after }),
            _ => {
                f.violation("expiry.end_of_year.years_after", "0 to 100");
                None
            }
        },
        Some(Policy::MonthsAfterEarning(m)) => match u16::try_from(m.months) {
            Ok(months) if (1..=1200).contains(&months) => {
                Some(ExpiryPolicy::MonthsAfterEarning { months })
            }
            _ => {
                f.violation("expiry.months_after_earning.months", "1 to 1200");
                None
            }
        },
    };
    let offset = match req.utc_offset_minutes {
        None => Some(480),
        Some(m) if (-720..=840).contains(&m) => i16::try_from(m).ok(),
        Some(_) => {
            f.violation("utc_offset_minutes", "-720 to 840");
            None
        }
    };
    let stars = if req.star_thresholds_hours.is_empty() {
        Some(StarThresholds::default())
    } else {
        match StarThresholds::new(req.star_thresholds_hours.clone()) {
            Ok(s) => Some(s),
            Err(_) => {
                f.violation(
                    "star_thresholds_hours",
                    "strictly ascending, above 0, at most 10",
                );
                None
            }
        }
    };
    let mut caps = Fields::new(scale);
    let donation = caps.opt_amount(
        "donation_cap_per_year",
        req.donation_cap_per_year.as_deref(),
    );
    let grant = caps.opt_amount("grant_cap", req.grant_cap.as_deref());
    f.finish()?;
    caps.finish()?;
    let (
        Some(request_id),
        Some(id),
        Some(name),
        Some(unit_name),
        Some(scale),
        Some(expiry),
        Some(offset),
        Some(stars),
        Ok(donation),
        Ok(grant),
    ) = (
        request_id, id, name, unit_name, scale, expiry, offset, stars, donation, grant,
    )
    else {
        return Err(f.status());
    };
    let points = |a: Option<points_core::Amount>| a.and_then(|a| a.to_points(scale).ok());
    let spec = ProgramSpec::new(id, name, unit_name, scale)
        .with_expiry(expiry)
        .with_utc_offset_minutes(offset)
        .with_star_thresholds(stars)
        .with_max_hold_ttl_ms(if req.max_hold_ttl_ms == 0 {
            ProgramSpec::DEFAULT_MAX_HOLD_TTL_MS
        } else {
            req.max_hold_ttl_ms
        })
        .with_love_bank_caps(points(donation), points(grant));
    Ok((spec, request_id))
}

impl AdminService {
    /// Submits an admin command through the shared write path and returns the receipt.
    async fn write(
        &self,
        principal: &Principal,
        program: ProgramId,
        request_id: RequestId,
        command: Command,
        kind: EntryKind,
    ) -> Result<pb::EntryReceipt, Status> {
        let (receipt, _) =
            super::ops::write(&self.ctx, principal, program, request_id, command, kind).await?;
        Ok(receipt)
    }

    fn merchant(&self, program: ProgramId, id: MerchantId) -> Result<pb::Merchant, Status> {
        self.ctx
            .read(program, |l| {
                l.merchant(id).map(|m| merchant_to_pb(&m, l.spec().scale()))
            })?
            .ok_or_else(|| rejection_status(&Rejection::UnknownMerchant))
    }

    /// Checks that `principal` may manage `key`'s program.
    fn may_manage(principal: &Principal, program: Option<ProgramId>) -> Result<(), Status> {
        match (principal.program, program) {
            (None, _) => Ok(()),
            (Some(own), Some(p)) if own == p => Ok(()),
            _ => Err(status(
                Code::PermissionDenied,
                "PERMISSION_DENIED",
                "a program admin key manages only its program's keys",
            )),
        }
    }
}

fn org_exists(ledger: &Ledger, id: OrgUnitId) -> bool {
    ledger.org_unit(id).is_some()
}

#[tonic::async_trait]
impl Admin for AdminService {
    async fn create_program(
        &self,
        request: tonic::Request<pb::CreateProgramRequest>,
    ) -> Result<Response<pb::CreateProgramResponse>, Status> {
        let principal = Principal::of(&request)?;
        let (spec, request_id) = spec_from_pb(request.get_ref())?;
        let id = ActorId::new(principal.key_id).map_err(|_| Status::internal("bad key id"))?;
        let applied = self
            .ctx
            .engine
            .create_program(
                spec.clone(),
                request_id,
                points_core::Actor::Admin { id },
                self.ctx.now(),
            )
            .await
            .map_err(|e| engine_status(&e))?;
        Ok(Response::new(pb::CreateProgramResponse {
            receipt: Some(receipt(&applied, EntryKind::ProgramOpened)),
            program: Some(program_to_pb(&spec)),
        }))
    }

    async fn get_program(
        &self,
        request: tonic::Request<pb::GetProgramRequest>,
    ) -> Result<Response<pb::Program>, Status> {
        let (_, program) = caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let spec = self.ctx.read(program, |l| l.spec().clone())?;
        Ok(Response::new(program_to_pb(&spec)))
    }

    async fn list_programs(
        &self,
        request: tonic::Request<pb::ListProgramsRequest>,
    ) -> Result<Response<pb::ListProgramsResponse>, Status> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let size = page_size(req.page_size, DEFAULT_PAGE, MAX_PAGE)?;
        let programs: Vec<ProgramSpec> = self
            .ctx
            .engine
            .programs()
            .into_iter()
            .filter(|p| principal.program.is_none_or(|own| own == p.id()))
            .collect();
        let (page, next) = page_by_id(
            programs,
            |p| *p.id().as_bytes(),
            b"programs",
            &req.page_token,
            size,
        )?;
        Ok(Response::new(pb::ListProgramsResponse {
            programs: page.iter().map(program_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn create_org_unit(
        &self,
        request: tonic::Request<pb::CreateOrgUnitRequest>,
    ) -> Result<Response<pb::CreateOrgUnitResponse>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let req = request.into_inner();
        let mut f = Fields::default();
        let request_id = f.id::<RequestId>("request_id", &req.request_id);
        let id = f.id::<OrgUnitId>("org_unit_id", &req.org_unit_id);
        let parent = f.opt_id::<OrgUnitId>("parent_id", &req.parent_id);
        let name = f.text("name", &req.name);
        let level = match f.enumeration::<pb::OrgUnitLevel>("level", req.level) {
            Some(pb::OrgUnitLevel::District) => Some(OrgLevel::District),
            Some(pb::OrgUnitLevel::Street) => Some(OrgLevel::Street),
            Some(pb::OrgUnitLevel::Community) => Some(OrgLevel::Community),
            Some(pb::OrgUnitLevel::Estate) => Some(OrgLevel::Estate),
            Some(pb::OrgUnitLevel::Other) => Some(OrgLevel::Other),
            _ => None,
        };
        f.finish()?;
        let (Some(request_id), Some(id), Ok(parent), Some(name), Some(level)) =
            (request_id, id, parent, name, level)
        else {
            return Err(f.status());
        };
        let receipt = self
            .write(
                &principal,
                program,
                request_id,
                Command::CreateOrgUnit {
                    id,
                    parent,
                    name,
                    level,
                },
                EntryKind::OrgUnitCreated,
            )
            .await?;
        let org_unit = self.ctx.read(program, |l| l.org_unit(id))?;
        Ok(Response::new(pb::CreateOrgUnitResponse {
            receipt: Some(receipt),
            org_unit: org_unit.as_ref().map(org_unit_to_pb),
        }))
    }

    async fn list_org_units(
        &self,
        request: tonic::Request<pb::ListOrgUnitsRequest>,
    ) -> Result<Response<pb::ListOrgUnitsResponse>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let scope = principal.scope(program)?;
        let req = request.into_inner();
        let size = page_size(req.page_size, DEFAULT_PAGE, MAX_PAGE)?;
        let mut f = Fields::default();
        let parent = f.opt_id::<OrgUnitId>("parent_id", &req.parent_id);
        f.finish()?;
        let parent = parent.map_err(|_| f.status())?;
        let units = self.ctx.read(program, |l| {
            l.org_units()
                .into_iter()
                .filter(|u| parent.is_none() || u.parent == parent)
                .filter(|u| match scope {
                    Scope::OrgUnit(root) => l.is_within(u.id, root),
                    _ => true,
                })
                .collect::<Vec<_>>()
        })?;
        let binding = format!("org_units {program} {parent:?} {scope:?}");
        let (page, next) = page_by_id(
            units,
            |u| *u.id.as_bytes(),
            binding.as_bytes(),
            &req.page_token,
            size,
        )?;
        Ok(Response::new(pb::ListOrgUnitsResponse {
            org_units: page.iter().map(org_unit_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn register_merchant(
        &self,
        request: tonic::Request<pb::RegisterMerchantRequest>,
    ) -> Result<Response<pb::RegisterMerchantResponse>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let req = request.into_inner();
        let mut f = Fields::default();
        let request_id = f.id::<RequestId>("request_id", &req.request_id);
        let id = f.id::<MerchantId>("merchant_id", &req.merchant_id);
        let org_unit = f.id::<OrgUnitId>("org_unit_id", &req.org_unit_id);
        let name = f.text("name", &req.name);
        let kind = match f.enumeration::<pb::MerchantKind>("kind", req.kind) {
            Some(pb::MerchantKind::Partner) => Some(MerchantKind::Partner),
            Some(pb::MerchantKind::CommunitySupermarket) => {
                Some(MerchantKind::CommunitySupermarket)
            }
            _ => None,
        };
        f.finish()?;
        let (Some(request_id), Some(id), Some(org_unit), Some(name), Some(kind)) =
            (request_id, id, org_unit, name, kind)
        else {
            return Err(f.status());
        };
        let receipt = self
            .write(
                &principal,
                program,
                request_id,
                Command::RegisterMerchant {
                    id,
                    org_unit,
                    name,
                    kind,
                },
                EntryKind::MerchantRegistered,
            )
            .await?;
        Ok(Response::new(pb::RegisterMerchantResponse {
            receipt: Some(receipt),
            merchant: Some(self.merchant(program, id)?),
        }))
    }

    async fn set_merchant_status(
        &self,
        request: tonic::Request<pb::SetMerchantStatusRequest>,
    ) -> Result<Response<pb::SetMerchantStatusResponse>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let req = request.into_inner();
        let mut f = Fields::default();
        let request_id = f.id::<RequestId>("request_id", &req.request_id);
        let id = f.id::<MerchantId>("merchant_id", &req.merchant_id);
        let status = match f.enumeration::<pb::MerchantStatus>("status", req.status) {
            Some(pb::MerchantStatus::Active) => Some(MerchantStatus::Active),
            Some(pb::MerchantStatus::Suspended) => Some(MerchantStatus::Suspended),
            _ => None,
        };
        f.finish()?;
        let (Some(request_id), Some(id), Some(status)) = (request_id, id, status) else {
            return Err(f.status());
        };
        let receipt = self
            .write(
                &principal,
                program,
                request_id,
                Command::SetMerchantStatus { id, status },
                EntryKind::MerchantStatusChanged,
            )
            .await?;
        Ok(Response::new(pb::SetMerchantStatusResponse {
            receipt: Some(receipt),
            merchant: Some(self.merchant(program, id)?),
        }))
    }

    async fn list_merchants(
        &self,
        request: tonic::Request<pb::ListMerchantsRequest>,
    ) -> Result<Response<pb::ListMerchantsResponse>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let scope = principal.scope(program)?;
        let req = request.into_inner();
        let size = page_size(req.page_size, DEFAULT_PAGE, MAX_PAGE)?;
        let mut f = Fields::default();
        let unit = f.opt_id::<OrgUnitId>("org_unit_id", &req.org_unit_id);
        let status = if req.status == 0 {
            None
        } else {
            f.enumeration::<pb::MerchantStatus>("status", req.status)
        };
        f.finish()?;
        let unit = unit.map_err(|_| f.status())?;
        let (merchants, scale) = self.ctx.read(program, |l| {
            let list = l
                .merchants()
                .into_iter()
                .filter(|m| unit.is_none_or(|u| l.is_within(m.org_unit, u)))
                .filter(|m| match scope {
                    Scope::OrgUnit(root) => l.is_within(m.org_unit, root),
                    Scope::Merchant(own) => m.id == own,
                    Scope::All => true,
                })
                .filter(|m| match status {
                    Some(pb::MerchantStatus::Active) => m.status == MerchantStatus::Active,
                    Some(pb::MerchantStatus::Suspended) => m.status == MerchantStatus::Suspended,
                    _ => true,
                })
                .collect::<Vec<_>>();
            (list, l.spec().scale())
        })?;
        let binding = format!("merchants {program} {unit:?} {status:?} {scope:?}");
        let (page, next) = page_by_id(
            merchants,
            |m| *m.id.as_bytes(),
            binding.as_bytes(),
            &req.page_token,
            size,
        )?;
        Ok(Response::new(pb::ListMerchantsResponse {
            merchants: page.iter().map(|m| merchant_to_pb(m, scale)).collect(),
            next_page_token: next,
        }))
    }

    async fn create_api_key(
        &self,
        request: tonic::Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreateApiKeyResponse>, Status> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let mut f = Fields::default();
        let program = f.opt_id::<ProgramId>("program_id", &req.program_id);
        let org_unit = f.opt_id::<OrgUnitId>("org_unit_id", &req.org_unit_id);
        let merchant = f.opt_id::<MerchantId>("merchant_id", &req.merchant_id);
        let label = f.text("label", &req.label);
        let role = match f.enumeration::<pb::Role>("role", req.role) {
            Some(pb::Role::Admin) => Some(ApiRole::Admin),
            Some(pb::Role::Recorder) => Some(ApiRole::Recorder),
            Some(pb::Role::Merchant) => Some(ApiRole::Merchant),
            Some(pb::Role::Auditor) => Some(ApiRole::Auditor),
            _ => None,
        };
        if req.label.chars().count() > 100 {
            f.violation("label", "at most 100 characters");
        }
        if let (Some(role), Ok(program), Ok(org_unit), Ok(merchant)) =
            (role, program, org_unit, merchant)
        {
            match role {
                ApiRole::Recorder => {
                    if program.is_none() {
                        f.violation("program_id", "required for a RECORDER key");
                    }
                    if org_unit.is_none() {
                        f.violation("org_unit_id", "required for a RECORDER key");
                    }
                    if merchant.is_some() {
                        f.violation("merchant_id", "not allowed for a RECORDER key");
                    }
                }
                ApiRole::Merchant => {
                    if program.is_none() {
                        f.violation("program_id", "required for a MERCHANT key");
                    }
                    if merchant.is_none() {
                        f.violation("merchant_id", "required for a MERCHANT key");
                    }
                    if org_unit.is_some() {
                        f.violation("org_unit_id", "not allowed for a MERCHANT key");
                    }
                }
                ApiRole::Admin | ApiRole::Auditor => {
                    if org_unit.is_some() {
                        f.violation("org_unit_id", "only RECORDER keys have an org unit");
                    }
                    if merchant.is_some() {
                        f.violation("merchant_id", "only MERCHANT keys have a merchant");
                    }
                }
            }
        }
        f.finish()?;
        let (Some(role), Ok(program), Ok(org_unit), Ok(merchant), Some(label)) =
            (role, program, org_unit, merchant, label)
        else {
            return Err(f.status());
        };
        Self::may_manage(&principal, program)?;
        if let Some(program) = program {
            self.ctx.ensure(program).await?;
            let known = self.ctx.read(program, |l| {
                (
                    org_unit.is_none_or(|u| org_exists(l, u)),
                    merchant.is_none_or(|m| l.merchant(m).is_some()),
                )
            })?;
            if !known.0 {
                return Err(rejection_status(&Rejection::UnknownOrgUnit));
            }
            if !known.1 {
                return Err(rejection_status(&Rejection::UnknownMerchant));
            }
        }
        let (record, secret) = self
            .ctx
            .keys
            .create(label, role, program, org_unit, merchant)
            .await
            .map_err(|e| engine_status(&e))?;
        tracing::info!(key = %record.id, role = ?record.role, "API key created");
        Ok(Response::new(pb::CreateApiKeyResponse {
            api_key: Some(key_to_pb(&record)),
            secret,
        }))
    }

    async fn list_api_keys(
        &self,
        request: tonic::Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let size = page_size(req.page_size, DEFAULT_PAGE, MAX_PAGE)?;
        let program = if req.program_id.is_empty() {
            None
        } else {
            Some(program_id(&req.program_id)?)
        };
        if program.is_some() {
            Self::may_manage(&principal, program)?;
        }
        let keys: Vec<ApiKeyRecord> = self
            .ctx
            .keys
            .all()
            .into_iter()
            .filter(|k| req.include_revoked || !k.revoked)
            .filter(|k| program.is_none() || k.program == program)
            .filter(|k| principal.program.is_none() || k.program == principal.program)
            .collect();
        let binding = format!(
            "keys {program:?} {} {:?}",
            req.include_revoked, principal.program
        );
        let (page, next) = page_by_id(
            keys,
            |k| *k.id.as_bytes(),
            binding.as_bytes(),
            &req.page_token,
            size,
        )?;
        Ok(Response::new(pb::ListApiKeysResponse {
            api_keys: page.iter().map(key_to_pb).collect(),
            next_page_token: next,
        }))
    }

    async fn revoke_api_key(
        &self,
        request: tonic::Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::RevokeApiKeyResponse>, Status> {
        let principal = Principal::of(&request)?;
        let req = request.into_inner();
        let mut f = Fields::default();
        let id = if req.api_key_id.is_empty() {
            f.violation("api_key_id", "required");
            None
        } else {
            match uuid::Uuid::try_parse(&req.api_key_id) {
                Ok(id) if !id.is_nil() => Some(id),
                _ => {
                    f.violation("api_key_id", "not a UUID");
                    None
                }
            }
        };
        f.finish()?;
        let id = id.ok_or_else(|| f.status())?;
        let not_found = || status(Code::NotFound, "NOT_FOUND", "no API key with that id");
        let key = self.ctx.keys.get(id).ok_or_else(not_found)?;
        Self::may_manage(&principal, key.program)?;
        if !self
            .ctx
            .keys
            .revoke(id)
            .await
            .map_err(|e| engine_status(&e))?
        {
            return Err(not_found());
        }
        tracing::info!(key = %id, "API key revoked");
        let key = self.ctx.keys.get(id).ok_or_else(not_found)?;
        Ok(Response::new(pb::RevokeApiKeyResponse {
            api_key: Some(key_to_pb(&key)),
        }))
    }
}
