//! Bulk imports of paper service records: a dry run that names every record the ledger
//! would refuse, so an import can report them all before it records anything.
//!
//! Recording itself needs nothing new: [`Command::RecordService`] records up to
//! [`MAX_BATCH`](crate::MAX_BATCH) records as one entry, so a batch is all or nothing by
//! construction (one refused record refuses the whole command and nothing is written).
//! What the command cannot do is say *which* records are wrong beyond the first; that is
//! what [`check_service_records`] is for. An import that wants "all or nothing" checks
//! the file, and records it as one command only when no record is refused; one that
//! wants "good rows only" records just the records the check passed.

use crate::command::{Actor, Command, Request, ServiceInput};
use crate::ids::RequestId;
use crate::ledger::Ledger;
use crate::rejection::Rejection;
use crate::time::Timestamp;

/// The refusals [`Ledger::decide`] would give each record recorded on its own at `now`,
/// as (index in `records`, rejection), in order. Empty when every record passes, in which
/// case recording all of them as one command passes too (the command's checks are the
/// per-record checks plus its length, which the caller keeps within
/// [`MAX_BATCH`](crate::MAX_BATCH)). Reads the ledger and writes nothing.
pub fn check_service_records(
    ledger: &Ledger,
    actor: &Actor,
    records: &[ServiceInput],
    now: Timestamp,
) -> Vec<(usize, Rejection)> {
    // `apply` stamps an entry with the later of `now` and the previous entry's time;
    // deciding at the same instant gives the same verdict.
    let at = now.max(ledger.last_at());
    // `decide` does not look at the request id (idempotency is `apply`'s business), so
    // any id will do for a dry run.
    let Ok(request_id) = RequestId::from_u128(1) else {
        return Vec::new();
    };
    let mut request = Request {
        request_id,
        actor: *actor,
        command: Command::RecordService {
            records: Vec::with_capacity(1),
        },
    };
    let mut problems = Vec::new();
    for (index, record) in records.iter().enumerate() {
        request.command = Command::RecordService {
            records: vec![record.clone()],
        };
        if let Err(rejection) = ledger.decide(&request, at) {
            problems.push((index, rejection));
        }
    }
    problems
}
