//! The `Volunteering` service (issue 5): micro-wishes, volunteer events (gatherings) and
//! merchant catalogues.
//!
//! Roles are checked by the policy table in [`crate::auth`]; the ledger checks the
//! domain's rules again (a recorder's subtree, a merchant's own account). Each write is
//! one core command submitted to the engine; its response carries the receipt and the
//! object as the ledger has it after the write.

use super::{caller, Ctx};
use crate::auth::{Principal, Scope};
use crate::convert::{points_str, rejection_status, status, timestamp_to_pb, Fields};
use crate::pb;
use crate::pb::volunteering_server::Volunteering;
use points_core::{
    Applied, CatalogueCommand, CatalogueEvent, Command, EntryKind, Event, GatheringCommand,
    GatheringId, GatheringView, ItemId, ItemLine, ItemView, Ledger, MemberId, MerchantId,
    ProgramId, Rejection, RequestId, Scale, Timestamp, WishCommand, WishId, WishStatus, WishView,
};
use tonic::{Code, Response, Status};

/// Serves `points.v1.Volunteering`.
pub struct VolunteerService {
    ctx: Ctx,
}

impl VolunteerService {
    /// The service over `ctx`.
    pub fn new(ctx: Ctx) -> Self {
        VolunteerService { ctx }
    }

    /// Submits one command through the shared write path and returns its receipt and
    /// outcome.
    async fn write(
        &self,
        principal: &Principal,
        program: ProgramId,
        request_id: RequestId,
        command: Command,
        kind: EntryKind,
    ) -> Result<(pb::EntryReceipt, Applied), Status> {
        super::ops::write(&self.ctx, principal, program, request_id, command, kind).await
    }

    fn fields(&self, program: ProgramId) -> Result<Fields, Status> {
        Ok(Fields::new(Some(self.ctx.scale(program)?)))
    }

    /// Resolves a member reference (id or card code) the way every write does.
    fn member(
        &self,
        f: &mut Fields,
        program: ProgramId,
        member: Option<&pb::MemberRef>,
    ) -> Result<Option<MemberId>, Status> {
        self.ctx
            .read(program, |l| super::ops::member_ref(f, l, "member", member))?
    }

    fn wish(&self, program: ProgramId, id: WishId) -> Result<Option<pb::Wish>, Status> {
        let now = self.ctx.now();
        self.ctx.read(program, |l| {
            l.wish(id, now).map(|w| wish_to_pb(&w, l.spec().scale()))
        })
    }

    async fn wish_write(
        &self,
        principal: &Principal,
        program: ProgramId,
        request_id: Option<RequestId>,
        command: Option<WishCommand>,
        f: &Fields,
    ) -> Result<Response<pb::WishResponse>, Status> {
        let (request_id, command) = ready(f, request_id, command)?;
        let id = match &command {
            WishCommand::Post { id, .. } => *id,
            WishCommand::Claim { wish, .. }
            | WishCommand::Fulfil { wish, .. }
            | WishCommand::Confirm { wish }
            | WishCommand::Cancel { wish, .. }
            | WishCommand::Lapse { wish } => *wish,
        };
        let kind = match &command {
            WishCommand::Post { .. } => EntryKind::WishPosted,
            WishCommand::Claim { .. } => EntryKind::WishClaimed,
            WishCommand::Fulfil { .. } => EntryKind::WishFulfilled,
            WishCommand::Confirm { .. } => EntryKind::WishConfirmed,
            WishCommand::Cancel { .. } => EntryKind::WishCancelled,
            WishCommand::Lapse { .. } => EntryKind::WishClaimLapsed,
        };
        let (receipt, _) = self
            .write(principal, program, request_id, Command::Wish(command), kind)
            .await?;
        Ok(Response::new(pb::WishResponse {
            receipt: Some(receipt),
            wish: self.wish(program, id)?,
        }))
    }

    /// A wish write that names a wish and a member (claim, fulfil).
    async fn wish_member_write(
        &self,
        principal: &Principal,
        program: ProgramId,
        request_id: &str,
        wish_id: &str,
        member: Option<&pb::MemberRef>,
        make: fn(WishId, MemberId) -> WishCommand,
    ) -> Result<Response<pb::WishResponse>, Status> {
        let mut f = self.fields(program)?;
        let request_id = f.id("request_id", request_id);
        let wish = f.id("wish_id", wish_id);
        let member = self.member(&mut f, program, member)?;
        let command = wish.zip(member).map(|(wish, member)| make(wish, member));
        self.wish_write(principal, program, request_id, command, &f)
            .await
    }

    /// A wish write that names only the wish (confirm, lapse).
    async fn wish_id_write(
        &self,
        principal: &Principal,
        program: ProgramId,
        request_id: &str,
        wish_id: &str,
        make: fn(WishId) -> WishCommand,
    ) -> Result<Response<pb::WishResponse>, Status> {
        let mut f = self.fields(program)?;
        let request_id = f.id("request_id", request_id);
        let command = f.id("wish_id", wish_id).map(make);
        self.wish_write(principal, program, request_id, command, &f)
            .await
    }

    async fn gathering_write(
        &self,
        principal: &Principal,
        program: ProgramId,
        request_id: Option<RequestId>,
        command: Option<GatheringCommand>,
        f: &Fields,
    ) -> Result<Response<pb::GatheringResponse>, Status> {
        let (request_id, command) = ready(f, request_id, command)?;
        let (id, kind) = match &command {
            GatheringCommand::Create { id, .. } => (*id, EntryKind::GatheringCreated),
            GatheringCommand::CheckIn { gathering, .. } => {
                (*gathering, EntryKind::GatheringCheckedIn)
            }
            GatheringCommand::CheckOut { gathering, .. } => {
                (*gathering, EntryKind::GatheringCheckedOut)
            }
            GatheringCommand::Approve { gathering } => (*gathering, EntryKind::GatheringApproved),
        };
        let (receipt, _) = self
            .write(
                principal,
                program,
                request_id,
                Command::Gathering(command),
                kind,
            )
            .await?;
        let gathering = self.ctx.read(program, |l| l.gathering(id))?;
        Ok(Response::new(pb::GatheringResponse {
            receipt: Some(receipt),
            gathering: gathering.as_ref().map(gathering_to_pb),
        }))
    }

    /// A check-in or check-out: a gathering, a member and the time.
    async fn attendance_write(
        &self,
        principal: &Principal,
        program: ProgramId,
        (request_id, gathering_id, member, time): Attendance<'_>,
        make: fn(GatheringId, MemberId, Timestamp) -> GatheringCommand,
    ) -> Result<Response<pb::GatheringResponse>, Status> {
        let mut f = self.fields(program)?;
        let request_id = f.id("request_id", request_id);
        let gathering = f.id::<GatheringId>("gathering_id", gathering_id);
        let member = self.member(&mut f, program, member)?;
        let at = f.timestamp("time", time);
        let command = match (gathering, member, at) {
            (Some(gathering), Some(member), Some(time)) => Some(make(gathering, member, time)),
            _ => None,
        };
        self.gathering_write(principal, program, request_id, command, &f)
            .await
    }

    async fn item_write(
        &self,
        principal: &Principal,
        program: ProgramId,
        request_id: Option<RequestId>,
        command: Option<CatalogueCommand>,
        f: &Fields,
    ) -> Result<Response<pb::ItemResponse>, Status> {
        let (request_id, command) = ready(f, request_id, command)?;
        let (item, kind) = match &command {
            CatalogueCommand::ListItem { item, .. } => (*item, EntryKind::ItemListed),
            CatalogueCommand::Restock { item, .. } => (*item, EntryKind::ItemRestocked),
            CatalogueCommand::SetPrice { item, .. } => (*item, EntryKind::ItemPriceChanged),
            CatalogueCommand::RedeemItems { .. } => {
                return Err(Status::internal("a redemption is not an item write"))
            }
        };
        let (receipt, _) = self
            .write(
                principal,
                program,
                request_id,
                Command::Catalogue(command),
                kind,
            )
            .await?;
        let item = self.ctx.read(program, |l| {
            l.item(item).map(|i| item_to_pb(&i, l.spec().scale()))
        })?;
        Ok(Response::new(pb::ItemResponse {
            receipt: Some(receipt),
            item,
        }))
    }

    /// Whether a scoped key may read something in `unit`.
    fn may_read(
        &self,
        principal: &Principal,
        program: ProgramId,
        unit: points_core::OrgUnitId,
    ) -> Result<bool, Status> {
        Ok(match principal.scope(program)? {
            Scope::All => true,
            Scope::OrgUnit(root) => self.ctx.read(program, |l| l.is_within(unit, root))?,
            Scope::Merchant(_) => false,
        })
    }
}

/// The wire fields of a check-in or check-out: request id, gathering id, member, time.
type Attendance<'a> = (
    &'a str,
    &'a str,
    Option<&'a pb::MemberRef>,
    Option<&'a prost_types::Timestamp>,
);

/// The request id and command once every field is valid, or the fields' violations.
fn ready<C>(
    f: &Fields,
    request_id: Option<RequestId>,
    command: Option<C>,
) -> Result<(RequestId, C), Status> {
    f.finish()?;
    request_id.zip(command).ok_or_else(|| f.status())
}

fn not_found(what: &str) -> Status {
    status(Code::NotFound, "NOT_FOUND", format!("no such {what}"))
}

fn wish_to_pb(wish: &WishView, scale: Scale) -> pb::Wish {
    let status = match wish.status {
        WishStatus::Open => pb::WishStatus::Open,
        WishStatus::Claimed => pb::WishStatus::Claimed,
        WishStatus::Lapsed => pb::WishStatus::Lapsed,
        WishStatus::Fulfilled => pb::WishStatus::Fulfilled,
        WishStatus::Confirmed => pb::WishStatus::Confirmed,
        WishStatus::Cancelled => pb::WishStatus::Cancelled,
    };
    pb::Wish {
        wish_id: wish.spec.id.to_string(),
        org_unit_id: wish.spec.org_unit.to_string(),
        activity_id: wish.spec.activity.to_string(),
        title: wish.spec.title.clone(),
        points: points_str(wish.spec.points, scale),
        minutes: wish.spec.minutes,
        claim_ttl_ms: wish.spec.claim_ttl_ms,
        status: status as i32,
        claimant_member_id: wish.claimant.map(|m| m.to_string()).unwrap_or_default(),
        claim_deadline: wish.deadline.map(timestamp_to_pb),
        record_id: wish.record.map(|r| r.to_string()).unwrap_or_default(),
    }
}

fn gathering_to_pb(gathering: &GatheringView) -> pb::Gathering {
    pb::Gathering {
        gathering_id: gathering.spec.id.to_string(),
        org_unit_id: gathering.spec.org_unit.to_string(),
        activity_id: gathering.spec.activity.to_string(),
        name: gathering.spec.name.clone(),
        attendance: gathering
            .attendance
            .iter()
            .map(|a| pb::Attendance {
                member_id: a.member.to_string(),
                checked_in: a.checked_in.map(timestamp_to_pb),
                checked_out: a.checked_out.map(timestamp_to_pb),
                record_id: a.record.map(|r| r.to_string()).unwrap_or_default(),
            })
            .collect(),
        closed: gathering.closed,
    }
}

fn item_to_pb(item: &ItemView, scale: Scale) -> pb::CatalogueItem {
    pb::CatalogueItem {
        item_id: item.id.to_string(),
        merchant_id: item.merchant.to_string(),
        name: item.name.clone(),
        price: points_str(item.price, scale),
        stock: item.stock,
    }
}

#[tonic::async_trait]
impl Volunteering for VolunteerService {
    async fn post_wish(
        &self,
        request: tonic::Request<pb::PostWishRequest>,
    ) -> Result<Response<pb::WishResponse>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let r = request.into_inner();
        let mut f = self.fields(program)?;
        let request_id = f.id("request_id", &r.request_id);
        let id = f.id("wish_id", &r.wish_id);
        let org_unit = f.id("org_unit_id", &r.org_unit_id);
        let activity = f.id("activity_id", &r.activity_id);
        let title = f.text("title", &r.title);
        let points = f.amount("points", &r.points);
        let command = match (id, org_unit, activity, title, points) {
            (Some(id), Some(org_unit), Some(activity), Some(title), Some(points)) => {
                Some(WishCommand::Post {
                    id,
                    org_unit,
                    activity,
                    title,
                    points,
                    minutes: r.minutes,
                    claim_ttl_ms: r.claim_ttl_ms,
                })
            }
            _ => None,
        };
        self.wish_write(&principal, program, request_id, command, &f)
            .await
    }

    async fn claim_wish(
        &self,
        request: tonic::Request<pb::ClaimWishRequest>,
    ) -> Result<Response<pb::WishResponse>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let r = request.into_inner();
        let make = |wish, member| WishCommand::Claim { wish, member };
        self.wish_member_write(
            &principal,
            program,
            r.request_id.as_str(),
            &r.wish_id,
            r.member.as_ref(),
            make,
        )
        .await
    }

    async fn fulfil_wish(
        &self,
        request: tonic::Request<pb::FulfilWishRequest>,
    ) -> Result<Response<pb::WishResponse>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let r = request.into_inner();
        let make = |wish, member| WishCommand::Fulfil { wish, member };
        self.wish_member_write(
            &principal,
            program,
            r.request_id.as_str(),
            &r.wish_id,
            r.member.as_ref(),
            make,
        )
        .await
    }

    async fn confirm_wish(
        &self,
        request: tonic::Request<pb::ConfirmWishRequest>,
    ) -> Result<Response<pb::WishResponse>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let r = request.into_inner();
        let make = |wish| WishCommand::Confirm { wish };
        self.wish_id_write(&principal, program, &r.request_id, &r.wish_id, make)
            .await
    }

    async fn cancel_wish(
        &self,
        request: tonic::Request<pb::CancelWishRequest>,
    ) -> Result<Response<pb::WishResponse>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let r = request.into_inner();
        let mut f = self.fields(program)?;
        let request_id = f.id("request_id", &r.request_id);
        let wish = f.id("wish_id", &r.wish_id);
        let reason = f.text("reason", &r.reason);
        let command = wish
            .zip(reason)
            .map(|(wish, reason)| WishCommand::Cancel { wish, reason });
        self.wish_write(&principal, program, request_id, command, &f)
            .await
    }

    async fn lapse_wish_claim(
        &self,
        request: tonic::Request<pb::LapseWishClaimRequest>,
    ) -> Result<Response<pb::WishResponse>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let r = request.into_inner();
        let make = |wish| WishCommand::Lapse { wish };
        self.wish_id_write(&principal, program, &r.request_id, &r.wish_id, make)
            .await
    }

    async fn get_wish(
        &self,
        request: tonic::Request<pb::GetWishRequest>,
    ) -> Result<Response<pb::Wish>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let r = request.into_inner();
        let mut f = Fields::default();
        let id = f.id::<WishId>("wish_id", &r.wish_id);
        f.finish()?;
        let id = id.ok_or_else(|| f.status())?;
        let unit = self
            .ctx
            .read(program, |l| {
                l.wish(id, Timestamp::from_millis(0))
                    .map(|w| w.spec.org_unit)
            })?
            .ok_or_else(|| not_found("wish"))?;
        if !self.may_read(&principal, program, unit)? {
            return Err(not_found("wish"));
        }
        self.wish(program, id)?
            .map(Response::new)
            .ok_or_else(|| not_found("wish"))
    }

    async fn create_gathering(
        &self,
        request: tonic::Request<pb::CreateGatheringRequest>,
    ) -> Result<Response<pb::GatheringResponse>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let r = request.into_inner();
        let mut f = self.fields(program)?;
        let request_id = f.id("request_id", &r.request_id);
        let id = f.id("gathering_id", &r.gathering_id);
        let org_unit = f.id("org_unit_id", &r.org_unit_id);
        let activity = f.id("activity_id", &r.activity_id);
        let name = f.text("name", &r.name);
        let roster: Vec<MemberId> = f.ids("roster_member_ids", &r.roster_member_ids);
        let command = match (id, org_unit, activity, name) {
            (Some(id), Some(org_unit), Some(activity), Some(name)) => {
                Some(GatheringCommand::Create {
                    id,
                    org_unit,
                    activity,
                    name,
                    roster,
                })
            }
            _ => None,
        };
        self.gathering_write(&principal, program, request_id, command, &f)
            .await
    }

    async fn check_in(
        &self,
        request: tonic::Request<pb::CheckInRequest>,
    ) -> Result<Response<pb::GatheringResponse>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let r = request.into_inner();
        let make = |gathering, member, time| GatheringCommand::CheckIn {
            gathering,
            member,
            time,
        };
        let fields = (
            r.request_id.as_str(),
            r.gathering_id.as_str(),
            r.member.as_ref(),
            r.time.as_ref(),
        );
        self.attendance_write(&principal, program, fields, make)
            .await
    }

    async fn check_out(
        &self,
        request: tonic::Request<pb::CheckOutRequest>,
    ) -> Result<Response<pb::GatheringResponse>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let r = request.into_inner();
        let make = |gathering, member, time| GatheringCommand::CheckOut {
            gathering,
            member,
            time,
        };
        let fields = (
            r.request_id.as_str(),
            r.gathering_id.as_str(),
            r.member.as_ref(),
            r.time.as_ref(),
        );
        self.attendance_write(&principal, program, fields, make)
            .await
    }

    async fn approve_gathering(
        &self,
        request: tonic::Request<pb::ApproveGatheringRequest>,
    ) -> Result<Response<pb::GatheringResponse>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let r = request.into_inner();
        let mut f = self.fields(program)?;
        let request_id = f.id("request_id", &r.request_id);
        let command = f
            .id("gathering_id", &r.gathering_id)
            .map(|gathering| GatheringCommand::Approve { gathering });
        self.gathering_write(&principal, program, request_id, command, &f)
            .await
    }

    async fn get_gathering(
        &self,
        request: tonic::Request<pb::GetGatheringRequest>,
    ) -> Result<Response<pb::Gathering>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let r = request.into_inner();
        let mut f = Fields::default();
        let id = f.id::<GatheringId>("gathering_id", &r.gathering_id);
        f.finish()?;
        let id = id.ok_or_else(|| f.status())?;
        let gathering = self
            .ctx
            .read(program, |l| l.gathering(id))?
            .ok_or_else(|| not_found("event"))?;
        if !self.may_read(&principal, program, gathering.spec.org_unit)? {
            return Err(not_found("event"));
        }
        Ok(Response::new(gathering_to_pb(&gathering)))
    }

    async fn list_item(
        &self,
        request: tonic::Request<pb::ListItemRequest>,
    ) -> Result<Response<pb::ItemResponse>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let r = request.into_inner();
        let mut f = self.fields(program)?;
        let request_id = f.id("request_id", &r.request_id);
        let merchant = f.id("merchant_id", &r.merchant_id);
        let item = f.id("item_id", &r.item_id);
        let name = f.text("name", &r.name);
        let price = f.amount("price", &r.price);
        let command = match (merchant, item, name, price) {
            (Some(merchant), Some(item), Some(name), Some(price)) => {
                Some(CatalogueCommand::ListItem {
                    merchant,
                    item,
                    name,
                    price,
                    stock: r.stock,
                })
            }
            _ => None,
        };
        self.item_write(&principal, program, request_id, command, &f)
            .await
    }

    async fn restock_item(
        &self,
        request: tonic::Request<pb::RestockItemRequest>,
    ) -> Result<Response<pb::ItemResponse>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let r = request.into_inner();
        let mut f = self.fields(program)?;
        let request_id = f.id("request_id", &r.request_id);
        let merchant = f.id("merchant_id", &r.merchant_id);
        let item = f.id("item_id", &r.item_id);
        let command = merchant
            .zip(item)
            .map(|(merchant, item)| CatalogueCommand::Restock {
                merchant,
                item,
                quantity: r.quantity,
            });
        self.item_write(&principal, program, request_id, command, &f)
            .await
    }

    async fn set_item_price(
        &self,
        request: tonic::Request<pb::SetItemPriceRequest>,
    ) -> Result<Response<pb::ItemResponse>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let r = request.into_inner();
        let mut f = self.fields(program)?;
        let request_id = f.id("request_id", &r.request_id);
        let merchant = f.id("merchant_id", &r.merchant_id);
        let item = f.id("item_id", &r.item_id);
        let price = f.amount("price", &r.price);
        let command = match (merchant, item, price) {
            (Some(merchant), Some(item), Some(price)) => Some(CatalogueCommand::SetPrice {
                merchant,
                item,
                price,
            }),
            _ => None,
        };
        self.item_write(&principal, program, request_id, command, &f)
            .await
    }

    async fn redeem_items(
        &self,
        request: tonic::Request<pb::RedeemItemsRequest>,
    ) -> Result<Response<pb::RedeemItemsResponse>, Status> {
        let (principal, program) =
            caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let r = request.into_inner();
        let mut f = self.fields(program)?;
        let request_id = f.id::<RequestId>("request_id", &r.request_id);
        let merchant = f.id::<MerchantId>("merchant_id", &r.merchant_id);
        let member = self.member(&mut f, program, r.member.as_ref())?;
        let lines: Vec<ItemLine> = r
            .lines
            .iter()
            .enumerate()
            .filter_map(|(i, line)| {
                let item = f.id::<ItemId>(&format!("lines[{i}].item_id"), &line.item_id)?;
                Some(ItemLine {
                    item,
                    quantity: line.quantity,
                })
            })
            .collect();
        f.finish()?;
        let (Some(request_id), Some(merchant), Some(member)) = (request_id, merchant, member)
        else {
            return Err(f.status());
        };
        let (receipt, applied) = self
            .write(
                &principal,
                program,
                request_id,
                Command::Catalogue(CatalogueCommand::RedeemItems {
                    member,
                    merchant,
                    lines,
                }),
                EntryKind::ItemsRedeemed,
            )
            .await?;
        let entry = super::ops::entry_of(&self.ctx, program, &applied).await?;
        let Event::Catalogue(event) = entry.event() else {
            return Err(Status::internal("unexpected entry"));
        };
        let CatalogueEvent::ItemsRedeemed {
            member,
            lines,
            amount,
            ..
        } = &**event
        else {
            return Err(Status::internal("unexpected entry"));
        };
        let scale = self.ctx.scale(program)?;
        Ok(Response::new(pb::RedeemItemsResponse {
            receipt: Some(receipt),
            member_id: member.to_string(),
            lines: lines
                .iter()
                .map(|l| pb::ItemLine {
                    item_id: l.item.to_string(),
                    quantity: l.quantity,
                    unit_price: points_str(l.unit_price, scale),
                })
                .collect(),
            amount: points_str(*amount, scale),
        }))
    }

    async fn list_catalogue(
        &self,
        request: tonic::Request<pb::ListCatalogueRequest>,
    ) -> Result<Response<pb::ListCatalogueResponse>, Status> {
        let (_, program) = caller(&self.ctx, &request, &request.get_ref().program_id).await?;
        let r = request.into_inner();
        let mut f = Fields::default();
        let merchant = f.id::<MerchantId>("merchant_id", &r.merchant_id);
        f.finish()?;
        let merchant = merchant.ok_or_else(|| f.status())?;
        let items = self.ctx.read(program, |l: &Ledger| {
            l.merchant(merchant).map(|_| {
                l.catalogue(merchant)
                    .iter()
                    .map(|i| item_to_pb(i, l.spec().scale()))
                    .collect::<Vec<_>>()
            })
        })?;
        let items = items.ok_or_else(|| rejection_status(&Rejection::UnknownMerchant))?;
        Ok(Response::new(pb::ListCatalogueResponse { items }))
    }
}
