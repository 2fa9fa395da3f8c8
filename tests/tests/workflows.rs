//! End-to-end tests of the volunteer workflows (issue 5) through the real `points-server`
//! binary: a whole micro-wish lifecycle, an event with check-in/out and approval in one
//! step, and a catalogue redemption including out of stock; with the role boundaries.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::grpc::{
    activity, audit_report, community, enrol, key, member_ref, now_pb, patrol, program,
    record_and_approve,
};
use common::{auth, id, reason, Clients, Server};
use pb::activity_rule::Rule;
use pb::volunteering_client::VolunteeringClient;
use points_grpc::pb;
use tonic::transport::Channel;
use tonic::Code;

struct World {
    vol: VolunteeringClient<Channel>,
    rec: pb::recording_client::RecordingClient<Channel>,
    pos: pb::point_of_sale_client::PointOfSaleClient<Channel>,
    ledger: pb::ledger_client::LedgerClient<Channel>,
    admin: String,
    program: String,
    community: String,
    shop: String,
    recorder: String,
    till_shop: String,
    till_cafe: String,
    member: String,
    member2: String,
    patrol: String,
}

/// A programme with one community, a community supermarket and a cafe, a recorder key,
/// two merchant keys, two members and a patrol activity (10 points an hour, at most 240
/// minutes an occasion, credit time).
async fn setup(server: &Server) -> World {
    let channel = server.channel().await;
    let mut c = Clients::new(channel.clone());
    let admin = server.admin_key();
    let program = program(&mut c, &admin, "Volunteer workflows").await;
    let community = community(&mut c, &admin, &program, "Community A").await;
    let mut merchants = Vec::new();
    for (name, kind) in [
        (
            "Party-building supermarket",
            pb::MerchantKind::CommunitySupermarket,
        ),
        ("Corner cafe", pb::MerchantKind::Partner),
    ] {
        let merchant = id();
        c.admin
            .register_merchant(auth(
                pb::RegisterMerchantRequest {
                    request_id: id(),
                    program_id: program.clone(),
                    merchant_id: merchant.clone(),
                    org_unit_id: community.clone(),
                    name: name.into(),
                    kind: kind as i32,
                },
                &admin,
            ))
            .await
            .unwrap();
        merchants.push(merchant);
    }
    let (shop, cafe) = (merchants[0].clone(), merchants[1].clone());
    let (recorder, _) = key(&mut c, &admin, &program, pb::Role::Recorder, &community, "").await;
    let (till_shop, _) = key(&mut c, &admin, &program, pb::Role::Merchant, "", &shop).await;
    let (till_cafe, _) = key(&mut c, &admin, &program, pb::Role::Merchant, "", &cafe).await;
    let mut members = Vec::new();
    for _ in 0..2 {
        members.push(
            enrol(&mut c, &recorder, &program, &community, "")
                .await
                .unwrap(),
        );
    }
    let patrol = activity(
        &mut c.rec,
        &recorder,
        pb::DefineActivityRequest {
            max_minutes_per_occasion: Some(240),
            ..patrol(
                &program,
                &community,
                "Evening patrol",
                Rule::PerHour("10".into()),
            )
        },
    )
    .await;
    World {
        vol: VolunteeringClient::new(channel.clone()),
        rec: c.rec,
        pos: pb::point_of_sale_client::PointOfSaleClient::new(channel.clone()),
        ledger: pb::ledger_client::LedgerClient::new(channel),
        admin,
        program,
        community,
        shop,
        recorder,
        till_shop,
        till_cafe,
        member: members[0].clone(),
        member2: members[1].clone(),
        patrol,
    }
}

async fn balance(w: &World, member: &str) -> pb::GetBalanceResponse {
    w.pos
        .clone()
        .get_balance(auth(
            pb::GetBalanceRequest {
                program_id: w.program.clone(),
                member: member_ref(member),
            },
            &w.admin,
        ))
        .await
        .unwrap()
        .into_inner()
}

async fn audit_clean(w: &mut World) {
    let report = audit_report(&mut w.ledger, &w.admin, &w.program).await;
    assert!(report.ok, "audit: {:?}", report.breaches);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_micro_wish_from_post_to_confirmation() {
    let server = Server::start();
    let mut w = setup(&server).await;
    let wish = id();
    let post = pb::PostWishRequest {
        request_id: id(),
        program_id: w.program.clone(),
        wish_id: wish.clone(),
        org_unit_id: w.community.clone(),
        activity_id: w.patrol.clone(),
        title: "Carry groceries upstairs for Mrs Li".into(),
        points: "10".into(),
        minutes: 60,
        claim_ttl_ms: 3_600_000,
    };
    // A merchant key may not post wishes: the policy table refuses it.
    let refused = w
        .vol
        .post_wish(auth(post.clone(), &w.till_shop))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let posted = w
        .vol
        .post_wish(auth(post.clone(), &w.recorder))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        posted.receipt.as_ref().unwrap().kind,
        pb::EntryKind::WishPosted as i32
    );
    assert_eq!(
        posted.wish.as_ref().unwrap().status,
        pb::WishStatus::Open as i32
    );
    // A retry with the same request id is answered from the original entry.
    let retry = w
        .vol
        .post_wish(auth(post, &w.recorder))
        .await
        .unwrap()
        .into_inner();
    assert!(retry.receipt.unwrap().duplicate);

    let claim = |member: &str| pb::ClaimWishRequest {
        request_id: id(),
        program_id: w.program.clone(),
        wish_id: wish.clone(),
        member: member_ref(member),
    };
    let claimed = w
        .vol
        .claim_wish(auth(claim(&w.member), &w.recorder))
        .await
        .unwrap()
        .into_inner()
        .wish
        .unwrap();
    assert_eq!(claimed.status, pb::WishStatus::Claimed as i32);
    assert_eq!(claimed.claimant_member_id, w.member);
    assert!(claimed.claim_deadline.is_some());
    // Only one claimant holds a wish at a time.
    let second = w
        .vol
        .claim_wish(auth(claim(&w.member2), &w.recorder))
        .await
        .unwrap_err();
    assert_eq!(
        (second.code(), reason(&second).as_str()),
        (Code::FailedPrecondition, "WISH_CLAIMED")
    );
    w.vol
        .fulfil_wish(auth(
            pb::FulfilWishRequest {
                request_id: id(),
                program_id: w.program.clone(),
                wish_id: wish.clone(),
                member: member_ref(&w.member),
            },
            &w.recorder,
        ))
        .await
        .unwrap();
    let confirmed = w
        .vol
        .confirm_wish(auth(
            pb::ConfirmWishRequest {
                request_id: id(),
                program_id: w.program.clone(),
                wish_id: wish.clone(),
            },
            &w.recorder,
        ))
        .await
        .unwrap()
        .into_inner();
    let view = confirmed.wish.unwrap();
    assert_eq!(view.status, pb::WishStatus::Confirmed as i32);
    assert!(!view.record_id.is_empty());
    let b = balance(&w, &w.member).await;
    assert_eq!((b.balance.as_str(), b.credit_minutes), ("10.00", 60));
    // Every step is an entry, readable by kind.
    let entries = w
        .ledger
        .list_entries(auth(
            pb::ListEntriesRequest {
                program_id: w.program.clone(),
                member_id: w.member.clone(),
                kinds: vec![
                    pb::EntryKind::WishClaimed as i32,
                    pb::EntryKind::WishFulfilled as i32,
                    pb::EntryKind::WishConfirmed as i32,
                ],
                ..Default::default()
            },
            &w.admin,
        ))
        .await
        .unwrap()
        .into_inner()
        .entries;
    let kinds: Vec<i32> = entries.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            pb::EntryKind::WishClaimed as i32,
            pb::EntryKind::WishFulfilled as i32,
            pb::EntryKind::WishConfirmed as i32
        ]
    );
    assert_eq!(entries[2].postings.len(), 4, "points and minutes, balanced");
    let read = w
        .vol
        .get_wish(auth(
            pb::GetWishRequest {
                program_id: w.program.clone(),
                wish_id: wish.clone(),
            },
            &w.recorder,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(read.status, pb::WishStatus::Confirmed as i32);
    // A merchant key reads no wishes.
    let hidden = w
        .vol
        .get_wish(auth(
            pb::GetWishRequest {
                program_id: w.program.clone(),
                wish_id: wish,
            },
            &w.till_shop,
        ))
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    audit_clean(&mut w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_with_check_in_out_and_one_step_approval() {
    let server = Server::start();
    let mut w = setup(&server).await;
    let gathering = id();
    let created = w
        .vol
        .create_gathering(auth(
            pb::CreateGatheringRequest {
                request_id: id(),
                program_id: w.program.clone(),
                gathering_id: gathering.clone(),
                org_unit_id: w.community.clone(),
                activity_id: w.patrol.clone(),
                name: "Saturday clean-up".into(),
                roster_member_ids: vec![w.member.clone(), w.member2.clone()],
            },
            &w.recorder,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.gathering.unwrap().attendance.len(), 2);
    // member stays five hours (counted as the patrol's 240-minute maximum), member2 ninety
    // minutes; the times are the recorder device's, not the server's.
    for (member, minutes) in [(w.member.clone(), 300), (w.member2.clone(), 90)] {
        w.vol
            .check_in(auth(
                pb::CheckInRequest {
                    request_id: id(),
                    program_id: w.program.clone(),
                    gathering_id: gathering.clone(),
                    member: member_ref(&member),
                    time: Some(now_pb(-minutes * 60_000)),
                },
                &w.recorder,
            ))
            .await
            .unwrap();
        let out = w
            .vol
            .check_out(auth(
                pb::CheckOutRequest {
                    request_id: id(),
                    program_id: w.program.clone(),
                    gathering_id: gathering.clone(),
                    member: member_ref(&member),
                    time: Some(now_pb(0)),
                },
                &w.recorder,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            out.receipt.unwrap().kind,
            pb::EntryKind::GatheringCheckedOut as i32
        );
    }
    // Nothing is issued until the event is approved.
    assert_eq!(balance(&w, &w.member).await.balance, "0.00");
    let approve = pb::ApproveGatheringRequest {
        request_id: id(),
        program_id: w.program.clone(),
        gathering_id: gathering.clone(),
    };
    let denied = w
        .vol
        .approve_gathering(auth(approve.clone(), &w.till_cafe))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    let approved = w
        .vol
        .approve_gathering(auth(approve, &w.recorder))
        .await
        .unwrap()
        .into_inner();
    assert!(approved.gathering.unwrap().closed);
    let entry = w
        .ledger
        .get_entry(auth(
            pb::GetEntryRequest {
                program_id: w.program.clone(),
                key: Some(pb::get_entry_request::Key::Sequence(
                    approved.receipt.as_ref().unwrap().sequence,
                )),
            },
            &w.admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(entry.kind, pb::EntryKind::GatheringApproved as i32);
    assert_eq!(
        entry.postings.len(),
        8,
        "two members, points and minutes each"
    );
    let b1 = balance(&w, &w.member).await;
    let b2 = balance(&w, &w.member2).await;
    assert_eq!((b1.balance.as_str(), b1.credit_minutes), ("40.00", 240));
    assert_eq!((b2.balance.as_str(), b2.credit_minutes), ("15.00", 90));
    // A closed event takes no more approvals.
    let again = w
        .vol
        .approve_gathering(auth(
            pb::ApproveGatheringRequest {
                request_id: id(),
                program_id: w.program.clone(),
                gathering_id: gathering,
            },
            &w.recorder,
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&again), "GATHERING_CLOSED");
    audit_clean(&mut w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catalogue_redemption_takes_points_and_stock_together() {
    let server = Server::start();
    let mut w = setup(&server).await;
    // Fund the member: two hours of approved patrol, 20 points.
    let records = vec![pb::ServiceRecordInput {
        member_id: w.member.clone(),
        activity_id: w.patrol.clone(),
        org_unit_id: w.community.clone(),
        started_at: Some(now_pb(-3 * 3_600_000)),
        minutes: 120,
    }];
    record_and_approve(&mut w.rec, &w.recorder, &w.program, records).await;

    let item = id();
    let listed = w
        .vol
        .list_item(auth(
            pb::ListItemRequest {
                request_id: id(),
                program_id: w.program.clone(),
                merchant_id: w.shop.clone(),
                item_id: item.clone(),
                name: "Rice 5 kg".into(),
                price: "8".into(),
                stock: 2,
            },
            &w.till_shop,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.item.unwrap().stock, 2);
    let redeem = |lines: Vec<(String, u32)>, till: &str| {
        auth(
            pb::RedeemItemsRequest {
                request_id: id(),
                program_id: w.program.clone(),
                merchant_id: w.shop.clone(),
                member: member_ref(&w.member),
                lines: lines
                    .into_iter()
                    .map(|(item_id, quantity)| pb::ItemLine {
                        item_id,
                        quantity,
                        unit_price: String::new(),
                    })
                    .collect(),
            },
            till,
        )
    };
    // The cafe may not redeem into the supermarket's account.
    let foreign = w
        .vol
        .redeem_items(redeem(vec![(item.clone(), 1)], &w.till_cafe.clone()))
        .await
        .unwrap_err();
    assert_eq!(
        (foreign.code(), reason(&foreign).as_str()),
        (Code::PermissionDenied, "ACTOR_NOT_ALLOWED")
    );
    let first = w
        .vol
        .redeem_items(redeem(vec![(item.clone(), 1)], &w.till_shop.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.amount, "8.00");
    assert_eq!(first.lines[0].unit_price, "8.00");
    // A price change is an entry and leaves the past redemption as it was.
    let repriced = w
        .vol
        .set_item_price(auth(
            pb::SetItemPriceRequest {
                request_id: id(),
                program_id: w.program.clone(),
                merchant_id: w.shop.clone(),
                item_id: item.clone(),
                price: "5".into(),
            },
            &w.recorder,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        repriced.receipt.unwrap().kind,
        pb::EntryKind::ItemPriceChanged as i32
    );
    let past = w
        .ledger
        .get_entry(auth(
            pb::GetEntryRequest {
                program_id: w.program.clone(),
                key: Some(pb::get_entry_request::Key::EntryId(
                    first.receipt.as_ref().unwrap().entry_id.clone(),
                )),
            },
            &w.admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        past.detail_json.contains("\"unit_price\":800"),
        "{}",
        past.detail_json
    );
    // Two more with one on the shelf: out of stock, and nothing is taken.
    let out = w
        .vol
        .redeem_items(redeem(vec![(item.clone(), 2)], &w.till_shop.clone()))
        .await
        .unwrap_err();
    assert_eq!(
        (out.code(), reason(&out).as_str()),
        (Code::FailedPrecondition, "OUT_OF_STOCK")
    );
    assert_eq!(balance(&w, &w.member).await.available, "12.00");
    // Restock, then the same basket goes through at the new price.
    w.vol
        .restock_item(auth(
            pb::RestockItemRequest {
                request_id: id(),
                program_id: w.program.clone(),
                merchant_id: w.shop.clone(),
                item_id: item.clone(),
                quantity: 3,
            },
            &w.till_shop,
        ))
        .await
        .unwrap();
    let second = w
        .vol
        .redeem_items(redeem(vec![(item.clone(), 2)], &w.till_shop.clone()))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.amount, "10.00");
    assert_eq!(balance(&w, &w.member).await.available, "2.00");
    let catalogue = w
        .vol
        .list_catalogue(auth(
            pb::ListCatalogueRequest {
                program_id: w.program.clone(),
                merchant_id: w.shop.clone(),
            },
            &w.till_cafe,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(catalogue.items.len(), 1);
    assert_eq!(
        (catalogue.items[0].price.as_str(), catalogue.items[0].stock),
        ("5.00", 2)
    );
    audit_clean(&mut w).await;
}

/// Runs the `points` CLI with `--json` against `server` as `key` in `program`; panics on
/// failure and returns the parsed output.
fn cli(server: &Server, key: &str, program: &str, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(common::binary("points"))
        .env_remove("POINTS_PROGRAM")
        .env("POINTS_SERVER", format!("http://{}", server.addr))
        .env("POINTS_API_KEY", key)
        .env("POINTS_PROGRAM", program)
        .arg("--json")
        .args(args)
        .output()
        .expect("running points");
    assert!(
        out.status.success(),
        "points {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON output")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_runs_a_wish_an_event_and_the_catalogue() {
    let server = Server::start();
    let w = setup(&server).await;
    let (rec, program) = (w.recorder.as_str(), w.program.as_str());
    let posted = cli(
        &server,
        rec,
        program,
        &[
            "wish",
            "post",
            "--org-unit",
            &w.community,
            "--activity",
            &w.patrol,
            "--title",
            "Fix a tap",
            "--points",
            "5",
            "--minutes",
            "30",
        ],
    );
    let wish = posted["wish"]["wish_id"].as_str().unwrap().to_owned();
    for step in [
        vec![
            "wish",
            "claim",
            wish.as_str(),
            "--member",
            w.member.as_str(),
        ],
        vec![
            "wish",
            "fulfil",
            wish.as_str(),
            "--member",
            w.member.as_str(),
        ],
        vec!["wish", "confirm", wish.as_str()],
    ] {
        cli(&server, rec, program, &step);
    }
    let shown = cli(&server, rec, program, &["wish", "show", &wish]);
    assert_eq!(shown["status"], "WISH_STATUS_CONFIRMED");

    let event = cli(
        &server,
        rec,
        program,
        &[
            "event",
            "create",
            "--org-unit",
            &w.community,
            "--activity",
            &w.patrol,
            "--name",
            "Clean-up",
            "--member",
            &w.member,
        ],
    );
    let event = event["gathering"]["gathering_id"]
        .as_str()
        .unwrap()
        .to_owned();
    cli(
        &server,
        rec,
        program,
        &[
            "event", "check-in", &event, "--member", &w.member, "--at", "now-1h",
        ],
    );
    cli(
        &server,
        rec,
        program,
        &["event", "check-out", &event, "--member", &w.member],
    );
    let approved = cli(&server, rec, program, &["event", "approve", &event]);
    assert_eq!(approved["gathering"]["closed"], true);

    let item = cli(
        &server,
        &w.till_shop,
        program,
        &[
            "catalogue",
            "add",
            "--merchant",
            &w.shop,
            "--name",
            "Soap",
            "--price",
            "3",
            "--stock",
            "4",
        ],
    );
    let item = item["item"]["item_id"].as_str().unwrap().to_owned();
    let line = format!("{item}=2");
    let redeemed = cli(
        &server,
        &w.till_shop,
        program,
        &[
            "catalogue",
            "redeem",
            "--merchant",
            &w.shop,
            "--member",
            &w.member,
            &line,
        ],
    );
    assert_eq!(redeemed["amount"], "6.00");
    let listed = cli(
        &server,
        &w.till_shop,
        program,
        &["catalogue", "list", "--merchant", &w.shop],
    );
    assert_eq!(listed["items"][0]["stock"], 2);
    // 5 from the wish, 10 from an hour of patrol, less 6 for two bars of soap.
    assert_eq!(balance(&w, &w.member).await.balance, "9.00");
}
