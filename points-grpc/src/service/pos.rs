//! The `PointOfSale` service.

use super::ops::{self, MAX_SUBMIT};
use super::{caller, Ctx};
use crate::auth::{Principal, Scope};
use crate::convert::{points_str, rejection_status, Fields};
use crate::pb;
use crate::pb::point_of_sale_server::PointOfSale;
use crate::pb::submit_operation::Operation as Op;
use crate::pb::submit_result::Result as Res;
use points_core::{MemberId, Rejection};
use tonic::{Request, Response, Status};

/// Runs a unary write: the operation `wrap` makes of the request, and the response
/// `unwrap` takes from the result.
pub(crate) async fn unary<Q, T>(
    ctx: &Ctx,
    request: Request<Q>,
    wrap: fn(Q) -> Op,
    unwrap: fn(Res) -> Option<T>,
) -> Result<Response<T>, Status> {
    let principal = Principal::of(&request)?;
    let result = ops::run(ctx, &principal, wrap(request.into_inner())).await?;
    unwrap(result)
        .map(Response::new)
        .ok_or_else(|| Status::internal("unexpected response"))
}

/// Serves `points.v1.PointOfSale`.
pub struct PointOfSaleService {
    ctx: Ctx,
}

impl PointOfSaleService {
    /// The service over `ctx`.
    pub fn new(ctx: Ctx) -> Self {
        PointOfSaleService { ctx }
    }
}

#[tonic::async_trait]
impl PointOfSale for PointOfSaleService {
    async fn redeem(
        &self,
        request: Request<pb::RedeemRequest>,
    ) -> Result<Response<pb::RedeemResponse>, Status> {
        unary(&self.ctx, request, Op::Redeem, |r| match r {
            Res::Redeem(x) => Some(x),
            _ => None,
        })
        .await
    }

    async fn hold(
        &self,
        request: Request<pb::HoldRequest>,
    ) -> Result<Response<pb::HoldResponse>, Status> {
        unary(&self.ctx, request, Op::Hold, |r| match r {
            Res::Hold(x) => Some(x),
            _ => None,
        })
        .await
    }

    async fn capture(
        &self,
        request: Request<pb::CaptureRequest>,
    ) -> Result<Response<pb::CaptureResponse>, Status> {
        unary(&self.ctx, request, Op::Capture, |r| match r {
            Res::Capture(x) => Some(x),
            _ => None,
        })
        .await
    }

    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        unary(&self.ctx, request, Op::Release, |r| match r {
            Res::Release(x) => Some(x),
            _ => None,
        })
        .await
    }

    async fn refund(
        &self,
        request: Request<pb::RefundRequest>,
    ) -> Result<Response<pb::RefundResponse>, Status> {
        unary(&self.ctx, request, Op::Refund, |r| match r {
            Res::Refund(x) => Some(x),
            _ => None,
        })
        .await
    }

    async fn get_balance(
        &self,
        request: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::GetBalanceResponse>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let scope = principal.scope(program)?;
        let now = self.ctx.now();
        let req = request.into_inner();
        let answer = self.ctx.read(program, |l| -> Result<_, Status> {
            use pb::member_ref::Member;
            let mut fields = Fields::default();
            let member = match req.member.and_then(|m| m.member) {
                None => {
                    fields.violation("member", "required: member_id or card_code");
                    None
                }
                Some(Member::MemberId(id)) => fields.id::<MemberId>("member.member_id", &id),
                Some(Member::CardCode(code)) => match l.member_by_card(&code) {
                    Some(id) => Some(id),
                    None => return Err(rejection_status(&Rejection::UnknownMember)),
                },
            };
            fields.finish()?;
            let member = member.ok_or_else(|| fields.status())?;
            let view = l
                .member(member)
                .ok_or_else(|| rejection_status(&Rejection::UnknownMember))?;
            if let Scope::OrgUnit(root) = scope {
                if !l.is_within(view.home, root) {
                    return Err(rejection_status(&Rejection::ActorNotAllowed));
                }
            }
            let b = l
                .balance(member, now)
                .ok_or_else(|| rejection_status(&Rejection::UnknownMember))?;
            let scale = l.spec().scale();
            Ok(pb::GetBalanceResponse {
                member_id: member.to_string(),
                balance: points_str(b.balance, scale),
                held: points_str(b.held, scale),
                available: points_str(b.available, scale),
                credit_minutes: b.credit_minutes.get(),
                honour_minutes: b.honour_minutes.get(),
                star_level: u32::from(b.star_level),
                as_of_sequence: l.next_sequence().saturating_sub(1),
            })
        })??;
        Ok(Response::new(answer))
    }

    async fn submit(
        &self,
        request: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let req = request.into_inner();
        let mut fields = Fields::default();
        if !req.request_id.is_empty() {
            let _ = fields.opt_id::<points_core::RequestId>("request_id", &req.request_id);
        }
        if req.operations.len() > MAX_SUBMIT {
            fields.violation("operations", format!("at most {MAX_SUBMIT} operations"));
        }
        let mut ops = Vec::with_capacity(req.operations.len());
        for (i, op) in req.operations.into_iter().enumerate() {
            match op.operation {
                Some(op) => ops.push(op),
                None => fields.violation(&format!("operations[{i}]"), "no operation set"),
            }
        }
        fields.finish()?;
        let results = ops::run_batch(&self.ctx, &principal, program, ops).await;
        Ok(Response::new(pb::SubmitResponse {
            results: results
                .into_iter()
                .map(|r| pb::SubmitResult { result: Some(r) })
                .collect(),
        }))
    }
}
