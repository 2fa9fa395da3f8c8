//! The gRPC services: [`pos::PointOfSaleService`], [`recording::RecordingService`],
//! [`admin::AdminService`] and [`ledger::LedgerService`], over one shared [`Ctx`].
//!
//! Handlers never check roles themselves: the [`crate::auth::AuthLayer`] applies the
//! policy table, and handlers obtain the core actor (and a read scope) only from the
//! request's [`Principal`]. Write handlers go through [`ops`], which converts the wire
//! request into a core command, submits it, and builds the response, for unary calls and
//! `Submit` batches alike.

pub mod admin;
pub mod disclosure;
pub mod ledger;
pub mod ops;
pub mod pos;
pub mod recording;
pub mod reports;
pub mod scope;
pub mod settlement;
pub mod volunteer;

use crate::auth::{Keys, Principal};
use crate::convert::{engine_status, Fields};
use crate::engine::Engine;
use base64::Engine as _;
use points_core::{Ledger, ProgramId, Scale, Timestamp};
use std::sync::Arc;
use tonic::Status;

/// What every service shares.
#[derive(Clone)]
pub struct Ctx {
    /// The engine.
    pub engine: Engine,
    /// The API keys.
    pub keys: Arc<Keys>,
    /// Becomes `true` when the server shuts down (ends live streams).
    pub shutdown: tokio::sync::watch::Receiver<bool>,
}

/// Default list page size.
pub const DEFAULT_PAGE: usize = 100;
/// Largest list page size.
pub const MAX_PAGE: usize = 1000;

impl Ctx {
    /// A context over an engine and its keys.
    pub fn new(
        engine: Engine,
        keys: Arc<Keys>,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) -> Ctx {
        Ctx {
            engine,
            keys,
            shutdown,
        }
    }

    /// The server's clock.
    pub fn now(&self) -> Timestamp {
        crate::engine::now()
    }

    /// Reads a program's ledger.
    pub fn read<R>(&self, program: ProgramId, f: impl FnOnce(&Ledger) -> R) -> Result<R, Status> {
        self.engine.read(program, f).map_err(|e| engine_status(&e))
    }

    /// Makes sure a program is loaded: one that another server created on a shared store
    /// is loaded now rather than at the engine's next discovery.
    pub async fn ensure(&self, program: ProgramId) -> Result<(), Status> {
        if self.engine.read(program, |_| ()).is_ok() {
            return Ok(());
        }
        self.engine
            .entries(program, 0, 1)
            .await
            .map(|_| ())
            .map_err(|e| engine_status(&e))
    }

    /// A program's scale.
    pub fn scale(&self, program: ProgramId) -> Result<Scale, Status> {
        self.read(program, |l| l.spec().scale())
    }
}

/// Parses a required program id.
pub fn program_id(text: &str) -> Result<ProgramId, Status> {
    let mut fields = Fields::default();
    let id = fields.id::<ProgramId>("program_id", text);
    fields.finish()?;
    id.ok_or_else(|| fields.status())
}

/// The principal of a request and the program it names, checked against the key's scope,
/// with the program loaded.
pub async fn caller<T>(
    ctx: &Ctx,
    request: &tonic::Request<T>,
    program: &str,
) -> Result<(Principal, ProgramId), Status> {
    let principal = Principal::of(request)?;
    let program = program_id(program)?;
    principal.check_program(program)?;
    ctx.ensure(program).await?;
    Ok((principal, program))
}

/// Page tokens: base64url of a position plus a 16-byte BLAKE3 checksum binding it to the
/// request's filters, so a token altered, forged or replayed with other filters fails.
pub mod token {
    use super::*;

    fn checksum(binding: &[u8], position: &[u8]) -> [u8; 16] {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"points.v1.page_token");
        hasher.update(&(binding.len() as u64).to_le_bytes());
        hasher.update(binding);
        hasher.update(position);
        let mut out = [0u8; 16];
        out.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
        out
    }

    /// Encodes a position bound to `binding`.
    pub fn encode(binding: &[u8], position: &[u8]) -> String {
        let mut bytes = position.to_vec();
        bytes.extend_from_slice(&checksum(binding, position));
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// Decodes a token: `None` for the first page.
    pub fn decode(binding: &[u8], token: &str) -> Result<Option<Vec<u8>>, Status> {
        if token.is_empty() {
            return Ok(None);
        }
        let invalid = || {
            let mut fields = Fields::default();
            fields.violation("page_token", "not a page token of this request");
            fields.status()
        };
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| invalid())?;
        if bytes.len() < 16 {
            return Err(invalid());
        }
        let (position, sum) = bytes.split_at(bytes.len() - 16);
        if checksum(binding, position) != sum {
            return Err(invalid());
        }
        Ok(Some(position.to_vec()))
    }

    /// Encodes a u64 position.
    pub fn encode_u64(binding: &[u8], position: u64) -> String {
        encode(binding, &position.to_le_bytes())
    }

    /// Decodes a u64 position (`None` for the first page).
    pub fn decode_u64(binding: &[u8], token: &str) -> Result<Option<u64>, Status> {
        match decode(binding, token)? {
            None => Ok(None),
            Some(bytes) => {
                let array: [u8; 8] = bytes.as_slice().try_into().map_err(|_| {
                    let mut fields = Fields::default();
                    fields.violation("page_token", "not a page token of this request");
                    fields.status()
                })?;
                Ok(Some(u64::from_le_bytes(array)))
            }
        }
    }
}

/// Pages a list sorted by a 16-byte id: skips past the token's id, takes `size`, and
/// returns the next token.
pub fn page_by_id<T>(
    items: Vec<T>,
    id: impl Fn(&T) -> [u8; 16],
    binding: &[u8],
    page_token: &str,
    size: usize,
) -> Result<(Vec<T>, String), Status> {
    let after = token::decode(binding, page_token)?;
    let mut rest: Vec<T> = match after {
        None => items,
        Some(after) => items
            .into_iter()
            .filter(|item| id(item).as_slice() > after.as_slice())
            .collect(),
    };
    let more = rest.len() > size;
    rest.truncate(size);
    let next = match (more, rest.last()) {
        (true, Some(last)) => token::encode(binding, &id(last)),
        _ => String::new(),
    };
    Ok((rest, next))
}
