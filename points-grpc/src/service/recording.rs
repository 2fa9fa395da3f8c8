//! The `Recording` service: every call is a write through [`super::ops`].

use super::pos::unary;
use super::Ctx;
use crate::pb;
use crate::pb::recording_server::Recording;
use crate::pb::submit_operation::Operation as Op;
use crate::pb::submit_result::Result as Res;
use tonic::{Request, Response, Status};

/// Serves `points.v1.Recording`.
pub struct RecordingService {
    ctx: Ctx,
}

impl RecordingService {
    /// The service over `ctx`.
    pub fn new(ctx: Ctx) -> Self {
        RecordingService { ctx }
    }
}

#[tonic::async_trait]
impl Recording for RecordingService {
    async fn enrol_member(
        &self,
        request: Request<pb::EnrolMemberRequest>,
    ) -> Result<Response<pb::EnrolMemberResponse>, Status> {
        unary(&self.ctx, request, Op::EnrolMember, |r| match r {
            Res::EnrolMember(x) => Some(x),
            _ => None,
        })
        .await
    }

    async fn update_member(
        &self,
        request: Request<pb::UpdateMemberRequest>,
    ) -> Result<Response<pb::UpdateMemberResponse>, Status> {
        unary(&self.ctx, request, Op::UpdateMember, |r| match r {
            Res::UpdateMember(x) => Some(x),
            _ => None,
        })
        .await
    }

    async fn move_member(
        &self,
        request: Request<pb::MoveMemberRequest>,
    ) -> Result<Response<pb::MoveMemberResponse>, Status> {
        unary(&self.ctx, request, Op::MoveMember, |r| match r {
            Res::MoveMember(x) => Some(x),
            _ => None,
        })
        .await
    }

    async fn define_activity(
        &self,
        request: Request<pb::DefineActivityRequest>,
    ) -> Result<Response<pb::DefineActivityResponse>, Status> {
        unary(&self.ctx, request, Op::DefineActivity, |r| match r {
            Res::DefineActivity(x) => Some(x),
            _ => None,
        })
        .await
    }

    async fn create_pool(
        &self,
        request: Request<pb::CreatePoolRequest>,
    ) -> Result<Response<pb::CreatePoolResponse>, Status> {
        unary(&self.ctx, request, Op::CreatePool, |r| match r {
            Res::CreatePool(x) => Some(x),
            _ => None,
        })
        .await
    }

    async fn record_service(
        &self,
        request: Request<pb::RecordServiceRequest>,
    ) -> Result<Response<pb::RecordServiceResponse>, Status> {
        unary(&self.ctx, request, Op::RecordService, |r| match r {
            Res::RecordService(x) => Some(x),
            _ => None,
        })
        .await
    }

    async fn approve_service(
        &self,
        request: Request<pb::ApproveServiceRequest>,
    ) -> Result<Response<pb::ApproveServiceResponse>, Status> {
        unary(&self.ctx, request, Op::ApproveService, |r| match r {
            Res::ApproveService(x) => Some(x),
            _ => None,
        })
        .await
    }

    async fn reject_service(
        &self,
        request: Request<pb::RejectServiceRequest>,
    ) -> Result<Response<pb::RejectServiceResponse>, Status> {
        unary(&self.ctx, request, Op::RejectService, |r| match r {
            Res::RejectService(x) => Some(x),
            _ => None,
        })
        .await
    }

    async fn reverse(
        &self,
        request: Request<pb::ReverseRequest>,
    ) -> Result<Response<pb::ReverseResponse>, Status> {
        unary(&self.ctx, request, Op::Reverse, |r| match r {
            Res::Reverse(x) => Some(x),
            _ => None,
        })
        .await
    }

    async fn transfer(
        &self,
        request: Request<pb::TransferRequest>,
    ) -> Result<Response<pb::TransferResponse>, Status> {
        unary(&self.ctx, request, Op::Transfer, |r| match r {
            Res::Transfer(x) => Some(x),
            _ => None,
        })
        .await
    }

    async fn donate(
        &self,
        request: Request<pb::DonateRequest>,
    ) -> Result<Response<pb::DonateResponse>, Status> {
        unary(&self.ctx, request, Op::Donate, |r| match r {
            Res::Donate(x) => Some(x),
            _ => None,
        })
        .await
    }

    async fn grant(
        &self,
        request: Request<pb::GrantRequest>,
    ) -> Result<Response<pb::GrantResponse>, Status> {
        unary(&self.ctx, request, Op::Grant, |r| match r {
            Res::Grant(x) => Some(x),
            _ => None,
        })
        .await
    }

    async fn expire(
        &self,
        request: Request<pb::ExpireRequest>,
    ) -> Result<Response<pb::ExpireResponse>, Status> {
        unary(&self.ctx, request, Op::Expire, |r| match r {
            Res::Expire(x) => Some(x),
            _ => None,
        })
        .await
    }
}
