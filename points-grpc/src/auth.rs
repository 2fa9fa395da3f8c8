//! API-key authentication and the per-RPC permission policy, enforced in one place: the
//! [`AuthLayer`] tower layer that wraps every gRPC service of the server.
//!
//! Every call carries `authorization: Bearer <secret>`. A secret has the form
//! `pk_<key id as 32 hex digits>_<43 random base64url characters>`; the server keeps only
//! its BLAKE3 hash, looks the key up by the id part in an in-memory cache (refreshed on
//! create and revoke) and compares hashes in constant time. Missing, unknown or revoked
//! keys are `UNAUTHENTICATED`; a key whose role the [`policy`] table does not allow for
//! the method is `PERMISSION_DENIED`. The layer puts the caller's [`Principal`] in the
//! request's extensions; handlers obtain the core [`Actor`] only through
//! [`Principal::actor`], which also checks the key's program scope. Health and reflection
//! need no key.

use crate::convert::status;
use crate::engine::{ApiKeyRecord, ApiRole, Engine, EngineError};
use base64::Engine as _;
use points_core::{Actor, ActorId, MerchantId, OrgUnitId, ProgramId};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use subtle::ConstantTimeEq;
use tonic::{Code, Status};
use uuid::Uuid;

/// What a method needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permission {
    /// No key (health, reflection).
    Public,
    /// Any valid key; handlers narrow what scoped keys see.
    Read,
    /// Admin or auditor keys (whole-program reads that scoped keys may not make).
    AuditRead,
    /// Point-of-sale writes: admin or merchant keys (the ledger checks the merchant).
    Pos,
    /// Recording writes: admin or recorder keys (the ledger checks the subtree).
    Recording,
    /// Batches: admin, recorder or merchant keys (the ledger checks each operation).
    Write,
    /// Program administration: admin keys.
    Admin,
    /// Server administration: admin keys with no program.
    ServerAdmin,
}

impl Permission {
    /// Whether `role` (with or without a program) may call a method needing this.
    pub fn allows(self, role: ApiRole, server_wide: bool) -> bool {
        use ApiRole::*;
        match self {
            Permission::Public | Permission::Read => true,
            Permission::AuditRead => matches!(role, Admin | Auditor),
            Permission::Pos => matches!(role, Admin | Merchant),
            Permission::Recording => matches!(role, Admin | Recorder),
            Permission::Write => matches!(role, Admin | Recorder | Merchant),
            Permission::Admin => role == Admin,
            Permission::ServerAdmin => role == Admin && server_wide,
        }
    }
}

/// The policy table: what each gRPC method needs. Methods of `points.v1` not listed need
/// a server admin key (deny by default).
pub fn policy(path: &str) -> Permission {
    use Permission::*;
    if path.starts_with("/grpc.health.v1.Health/") || path.starts_with("/grpc.reflection.") {
        return Public;
    }
    let Some((service, method)) = path
        .strip_prefix("/points.v1.")
        .and_then(|p| p.split_once('/'))
    else {
        return ServerAdmin;
    };
    match (service, method) {
        ("PointOfSale", "Redeem" | "Hold" | "Capture" | "Release" | "Refund") => Pos,
        ("PointOfSale", "GetBalance") => Read,
        ("PointOfSale", "Submit") => Write,
        (
            "Recording",
            "EnrolMember" | "UpdateMember" | "MoveMember" | "DefineActivity" | "CreatePool"
            | "RecordService" | "ApproveService" | "RejectService" | "Reverse" | "Transfer"
            | "Donate" | "Grant" | "Expire",
        ) => Recording,
        ("Admin", "CreateProgram") => ServerAdmin,
        ("Admin", "GetProgram" | "ListPrograms" | "ListOrgUnits" | "ListMerchants") => Read,
        ("Admin", "CreateOrgUnit") => Recording,
        (
            "Admin",
            "RegisterMerchant" | "SetMerchantStatus" | "CreateApiKey" | "ListApiKeys"
            | "RevokeApiKey",
        ) => Admin,
        ("Ledger", "GetEntry" | "GetStatement" | "ListEntries" | "WatchEntries") => Read,
        ("Ledger", "VerifyChain" | "Audit") => AuditRead,
        // Issue 5: wishes and events are recorded by community centres; catalogues are
        // managed by merchants or the centre; only points of sale redeem items.
        (
            "Volunteering",
            "PostWish" | "ClaimWish" | "FulfilWish" | "ConfirmWish" | "CancelWish"
            | "LapseWishClaim" | "CreateGathering" | "CheckIn" | "CheckOut" | "ApproveGathering",
        ) => Recording,
        ("Volunteering", "ListItem" | "RestockItem" | "SetItemPrice") => Write,
        ("Volunteering", "RedeemItems") => Pos,
        ("Volunteering", "GetWish" | "GetGathering" | "ListCatalogue") => Read,
        ("Reports", "GetRollup" | "GetRanking") => Read,
        ("Reports", "IssueCertificate" | "ValidateServiceRecords") => Recording,
        // Issue 6: the ledger checks the recorder's subtree; statements are scoped reads.
        (
            "Settlement",
            "CreateFund" | "SetMerchantFunds" | "SetMerchantRate" | "CloseSettlementPeriod",
        ) => Recording,
        ("Settlement", "SetOverBudget") => Admin,
        ("Settlement", "GetSettlementStatement" | "ListSettlements") => Read,
        ("Settlement", "Reconcile") => AuditRead,
        // Disclosure (issue 7): what the public board reads carries no personal data.
        (
            "Disclosure",
            "GetCheckpoint" | "GetInclusionProof" | "GetConsistencyProof" | "GetPublicReport",
        ) => Public,
        ("Disclosure", "SignCheckpoint") => Recording,
        ("Disclosure", "GetEntryProof" | "ExportJournal") => AuditRead,
        _ => ServerAdmin,
    }
}

/// What a read may see.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Everything in the program.
    All,
    /// What concerns this org unit's subtree.
    OrgUnit(OrgUnitId),
    /// What concerns this merchant.
    Merchant(MerchantId),
}

/// The authenticated caller of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The key's id.
    pub key_id: Uuid,
    /// Its role.
    pub role: ApiRole,
    /// The program it is limited to, if any.
    pub program: Option<ProgramId>,
    /// A recorder key's subtree.
    pub org_unit: Option<OrgUnitId>,
    /// A merchant key's merchant.
    pub merchant: Option<MerchantId>,
}

fn denied(message: &str) -> Status {
    status(Code::PermissionDenied, "PERMISSION_DENIED", message)
}

impl Principal {
    /// The principal of a request (put there by [`AuthLayer`]).
    pub fn of<T>(request: &tonic::Request<T>) -> Result<Principal, Status> {
        request
            .extensions()
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| status(Code::Unauthenticated, "UNAUTHENTICATED", "no API key"))
    }

    /// Checks that the key may act in `program`.
    pub fn check_program(&self, program: ProgramId) -> Result<(), Status> {
        match self.program {
            Some(own) if own != program => Err(denied("the API key belongs to another program")),
            _ => Ok(()),
        }
    }

    /// Whether the key is server-wide (no program).
    pub fn server_wide(&self) -> bool {
        self.program.is_none()
    }

    /// The core actor this key writes as in `program`. The ledger enforces the actor's
    /// limits (a recorder's subtree, a merchant's own account).
    pub fn actor(&self, program: ProgramId) -> Result<Actor, Status> {
        self.check_program(program)?;
        let id = ActorId::new(self.key_id).map_err(|_| denied("invalid key id"))?;
        match (self.role, self.org_unit, self.merchant) {
            (ApiRole::Admin, _, _) => Ok(Actor::Admin { id }),
            (ApiRole::Recorder, Some(org_unit), _) => Ok(Actor::Recorder { id, org_unit }),
            (ApiRole::Merchant, _, Some(merchant)) => Ok(Actor::Merchant { id, merchant }),
            _ => Err(denied("this API key may not write")),
        }
    }

    /// What this key may read in `program`.
    pub fn scope(&self, program: ProgramId) -> Result<Scope, Status> {
        self.check_program(program)?;
        Ok(match (self.role, self.org_unit, self.merchant) {
            (ApiRole::Recorder, Some(unit), _) => Scope::OrgUnit(unit),
            (ApiRole::Merchant, _, Some(merchant)) => Scope::Merchant(merchant),
            (ApiRole::Recorder | ApiRole::Merchant, _, _) => {
                return Err(denied("the API key has no scope"))
            }
            _ => Scope::All,
        })
    }
}

/// The prefix of every API key secret.
pub const KEY_PREFIX: &str = "pk_";

/// BLAKE3 of a secret, as stored.
pub fn hash_secret(secret: &str) -> [u8; 32] {
    *blake3::hash(secret.as_bytes()).as_bytes()
}

/// A fresh key id and secret.
pub fn new_secret() -> Result<(Uuid, String), EngineError> {
    let mut bytes = [0u8; 48];
    getrandom::fill(&mut bytes)
        .map_err(|e| EngineError::Internal(format!("no randomness: {e}")))?;
    let mut id_bytes = [0u8; 16];
    id_bytes.copy_from_slice(&bytes[..16]);
    let id = uuid::Builder::from_random_bytes(id_bytes).into_uuid();
    let tail = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes[16..]);
    Ok((id, format!("{KEY_PREFIX}{}_{tail}", id.simple())))
}

/// The key id a secret names, if it is shaped like one.
fn secret_id(secret: &str) -> Option<Uuid> {
    let rest = secret.strip_prefix(KEY_PREFIX)?;
    let (id, _) = rest.split_once('_')?;
    if id.len() != 32 {
        return None;
    }
    Uuid::try_parse(id).ok()
}

/// The API keys, cached in memory over the engine's key store.
pub struct Keys {
    engine: Engine,
    cache: RwLock<HashMap<Uuid, ApiKeyRecord>>,
}

impl Keys {
    /// Loads every key from the store.
    pub async fn load(engine: Engine) -> Result<Arc<Keys>, EngineError> {
        let keys = Arc::new(Keys {
            engine,
            cache: RwLock::new(HashMap::new()),
        });
        keys.refresh().await?;
        Ok(keys)
    }

    /// Reloads the cache from the store.
    pub async fn refresh(&self) -> Result<(), EngineError> {
        let all = self.engine.api_keys().await?;
        let map = all.into_iter().map(|k| (k.id, k)).collect();
        *self.cache.write().unwrap_or_else(PoisonError::into_inner) = map;
        Ok(())
    }

    /// Every key, sorted by id.
    pub fn all(&self) -> Vec<ApiKeyRecord> {
        let mut out: Vec<_> = self
            .cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        out.sort_by_key(|k| k.id);
        out
    }

    /// One key.
    pub fn get(&self, id: Uuid) -> Option<ApiKeyRecord> {
        self.cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned()
    }

    /// Whether no key exists.
    pub fn is_empty(&self) -> bool {
        self.cache
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// Creates a key and returns its record and secret (the only time it is known).
    pub async fn create(
        &self,
        label: String,
        role: ApiRole,
        program: Option<ProgramId>,
        org_unit: Option<OrgUnitId>,
        merchant: Option<MerchantId>,
    ) -> Result<(ApiKeyRecord, String), EngineError> {
        let (id, secret) = new_secret()?;
        let record = ApiKeyRecord {
            id,
            label,
            role,
            program,
            org_unit,
            merchant,
            secret_hash: hash_secret(&secret),
            created_at_ms: crate::engine::now().millis(),
            revoked: false,
        };
        self.engine.put_api_key(record.clone()).await?;
        self.refresh().await?;
        Ok((record, secret))
    }

    /// Revokes a key; `false` when there is no such key.
    pub async fn revoke(&self, id: Uuid) -> Result<bool, EngineError> {
        let found = self.engine.revoke_api_key(id).await?;
        self.refresh().await?;
        Ok(found)
    }

    /// Checks an `authorization` header value.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Principal, Status> {
        let unauthenticated =
            |m: &str| status(Code::Unauthenticated, "UNAUTHENTICATED", m.to_owned());
        let header = header.ok_or_else(|| unauthenticated("missing authorization header"))?;
        let secret = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| unauthenticated("authorization must be \"Bearer <API key>\""))?
            .trim();
        let id = secret_id(secret).ok_or_else(|| unauthenticated("unknown API key"))?;
        let record = self
            .get(id)
            .ok_or_else(|| unauthenticated("unknown API key"))?;
        let presented = hash_secret(secret);
        if !bool::from(presented.ct_eq(&record.secret_hash)) {
            return Err(unauthenticated("unknown API key"));
        }
        if record.revoked {
            return Err(unauthenticated("the API key was revoked"));
        }
        Ok(Principal {
            key_id: record.id,
            role: record.role,
            program: record.program,
            org_unit: record.org_unit,
            merchant: record.merchant,
        })
    }

    /// Authenticates and applies the policy for `path`; `None` for public methods.
    pub fn authorize(&self, path: &str, header: Option<&str>) -> Result<Option<Principal>, Status> {
        let permission = policy(path);
        if permission == Permission::Public {
            return Ok(None);
        }
        let principal = self.authenticate(header)?;
        if !permission.allows(principal.role, principal.server_wide()) {
            return Err(denied(&format!(
                "a {:?} key may not call {path}",
                principal.role
            )));
        }
        Ok(Some(principal))
    }
}

/// The tower layer that authenticates and authorizes every call.
#[derive(Clone)]
pub struct AuthLayer {
    keys: Arc<Keys>,
}

impl AuthLayer {
    /// A layer over these keys.
    pub fn new(keys: Arc<Keys>) -> Self {
        AuthLayer { keys }
    }
}

impl<S> tower::Layer<S> for AuthLayer {
    type Service = AuthService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            keys: self.keys.clone(),
        }
    }
}

/// The service [`AuthLayer`] makes.
#[derive(Clone)]
pub struct AuthService<S> {
    inner: S,
    keys: Arc<Keys>,
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B, R> tower::Service<http::Request<B>> for AuthService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let header = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        // A cheap clone (shared bytes): the path is wanted again after the call.
        let uri = request.uri().clone();
        let start = std::time::Instant::now();
        match self.keys.authorize(uri.path(), header) {
            Ok(principal) => {
                if let Some(principal) = principal {
                    request.extensions_mut().insert(principal);
                }
                // Take the service that was made ready and leave a fresh clone behind.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(async move {
                    let response = inner.call(request).await;
                    if let Ok(response) = &response {
                        // Errors are trailers-only responses with grpc-status in the
                        // headers; a success carries it in the trailers.
                        let code = response
                            .headers()
                            .get("grpc-status")
                            .map_or(Code::Ok, |v| Code::from_bytes(v.as_bytes()));
                        let elapsed = start.elapsed();
                        crate::metrics::global().request(uri.path(), code, elapsed);
                        tracing::debug!(method = %uri.path(), ?code, ?elapsed, "call");
                    }
                    response
                })
            }
            Err(status) => {
                let metrics = crate::metrics::global();
                metrics.auth_failure(status.code());
                metrics.request(uri.path(), status.code(), start.elapsed());
                tracing::debug!(method = %uri.path(), code = ?status.code(), "call refused");
                let response = status.into_http::<R>();
                Box::pin(async move { Ok(response) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use prost::Message;

    #[test]
    fn every_method_of_the_contract_has_a_deliberate_policy() {
        let fds = prost_types::FileDescriptorSet::decode(crate::pb::FILE_DESCRIPTOR_SET).unwrap();
        let mut n = 0;
        for file in fds.file.iter().filter(|f| f.package() == "points.v1") {
            for service in &file.service {
                for method in &service.method {
                    let path = format!("/points.v1.{}/{}", service.name(), method.name());
                    let p = policy(&path);
                    // Only CreateProgram is ServerAdmin on purpose; anything else landing
                    // there fell through the table.
                    assert!(
                        p != Permission::ServerAdmin || path.ends_with("/CreateProgram"),
                        "{path} is not in the policy table"
                    );
                    n += 1;
                }
            }
        }
        assert!(n > 30);
        assert_eq!(policy("/grpc.health.v1.Health/Check"), Permission::Public);
    }

    #[test]
    fn disclosure_reads_are_public_and_contents_need_an_auditor() {
        let d = |m: &str| policy(&format!("/points.v1.Disclosure/{m}"));
        for method in [
            "GetCheckpoint",
            "GetInclusionProof",
            "GetConsistencyProof",
            "GetPublicReport",
        ] {
            assert_eq!(d(method), Permission::Public, "{method}");
        }
        assert_eq!(d("SignCheckpoint"), Permission::Recording);
        assert_eq!(d("GetEntryProof"), Permission::AuditRead);
        assert_eq!(d("ExportJournal"), Permission::AuditRead);
        assert!(!Permission::AuditRead.allows(ApiRole::Merchant, false));
    }

    #[test]
    fn secrets_name_their_key() {
        let (id, secret) = new_secret().unwrap();
        assert_eq!(secret_id(&secret), Some(id));
        assert_eq!(secret_id("pk_nothex_x"), None);
    }
}
