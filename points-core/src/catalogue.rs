//! Merchant catalogues: goods priced in points, with stock, for the community supermarket
//! (党建超市 / 爱心超市) and partner merchants.
//!
//! Listing an item, restocking it and changing its price are entries. Redeeming items takes
//! the member's points and the stock together in one entry, so neither can happen without
//! the other; an item with too little stock refuses the whole redemption
//! ([`Rejection::OutOfStock`]). The redemption entry records the unit price it used, so a
//! later change of price never alters a past entry.
//!
//! Who may do what: a merchant's own point-of-sale manages its catalogue and redeems items
//! into its own account only; a recorder whose subtree holds the merchant may manage the
//! catalogue (community centres run the supermarket) but not redeem; admins may do all.
//!
//! A redemption of items is a spend like [`Command::Redeem`](crate::Command::Redeem): it can
//! be refunded or reversed, which returns points only. Goods that come back are put back on
//! the shelf with a restock entry, so stock always follows entries that say so.

use super::Ledger;
use crate::amount::{Amount, Points, MAX_AMOUNT_MINOR};
use crate::command::{Actor, MAX_BATCH};
use crate::entry::{points, Account, EntryKind, Posting};
use crate::ids::{EntryId, ItemId, MemberId, MerchantId};
use crate::model::MerchantStatus;
use crate::rejection::Rejection;
use crate::text::check_name;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// The most of one item a merchant may stock, and the most one restock or one line adds.
pub const MAX_STOCK: u32 = 1_000_000_000;
/// The most of one item one redemption line may take.
pub const MAX_LINE_QUANTITY: u32 = 10_000;

/// One line of a redemption request: an item and how many.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemLine {
    /// The item.
    pub item: ItemId,
    /// How many (1 to [`MAX_LINE_QUANTITY`]).
    pub quantity: u32,
}

/// What a caller asks of a merchant's catalogue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CatalogueCommand {
    /// Add an item to a merchant's catalogue.
    ListItem {
        /// The merchant.
        merchant: MerchantId,
        /// The new item's id (unique in the programme).
        item: ItemId,
        /// Display name.
        name: String,
        /// Price of one, in points.
        price: Amount,
        /// Stock on the shelf at listing (0 to [`MAX_STOCK`]).
        stock: u32,
    },
    /// Add stock to an item.
    Restock {
        /// The merchant.
        merchant: MerchantId,
        /// The item.
        item: ItemId,
        /// How many are added (1 to [`MAX_STOCK`]).
        quantity: u32,
    },
    /// Change an item's price from now on.
    SetPrice {
        /// The merchant.
        merchant: MerchantId,
        /// The item.
        item: ItemId,
        /// The new price of one, in points.
        price: Amount,
    },
    /// Redeem items: the member's points and the merchant's stock, together.
    RedeemItems {
        /// Who spends.
        member: MemberId,
        /// Where.
        merchant: MerchantId,
        /// What, 1 to [`MAX_BATCH`] lines, each item once.
        lines: Vec<ItemLine>,
    },
}

impl CatalogueCommand {
    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            CatalogueCommand::ListItem { .. } => "list_item",
            CatalogueCommand::Restock { .. } => "restock_item",
            CatalogueCommand::SetPrice { .. } => "set_item_price",
            CatalogueCommand::RedeemItems { .. } => "redeem_items",
        }
    }
}

/// One line of a redemption as recorded: the unit price used is kept with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedeemedLine {
    /// The item.
    pub item: ItemId,
    /// How many.
    pub quantity: u32,
    /// The price of one at the time of redemption.
    pub unit_price: Points,
}

/// What a catalogue entry records.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CatalogueEvent {
    /// An item was listed.
    ItemListed {
        /// The merchant.
        merchant: MerchantId,
        /// The item.
        item: ItemId,
        /// Display name.
        name: String,
        /// Price of one.
        price: Points,
        /// Stock at listing.
        stock: u32,
    },
    /// Stock was added.
    Restocked {
        /// The merchant.
        merchant: MerchantId,
        /// The item.
        item: ItemId,
        /// How many were added.
        quantity: u32,
        /// Stock after the restock.
        stock: u32,
    },
    /// The price changed; entries before this one keep the price they recorded.
    PriceChanged {
        /// The merchant.
        merchant: MerchantId,
        /// The item.
        item: ItemId,
        /// The price before.
        from: Points,
        /// The price from now on.
        to: Points,
    },
    /// Items were redeemed: points from the member to the merchant, stock off the shelf.
    ItemsRedeemed {
        /// Who spent.
        member: MemberId,
        /// Where.
        merchant: MerchantId,
        /// What, with the unit prices used.
        lines: Vec<RedeemedLine>,
        /// The total points taken.
        amount: Points,
    },
}

impl CatalogueEvent {
    /// The entry kind.
    pub fn kind(&self) -> EntryKind {
        match self {
            CatalogueEvent::ItemListed { .. } => EntryKind::ItemListed,
            CatalogueEvent::Restocked { .. } => EntryKind::ItemRestocked,
            CatalogueEvent::PriceChanged { .. } => EntryKind::ItemPriceChanged,
            CatalogueEvent::ItemsRedeemed { .. } => EntryKind::ItemsRedeemed,
        }
    }

    /// The merchant the entry concerns.
    pub fn merchant(&self) -> MerchantId {
        match self {
            CatalogueEvent::ItemListed { merchant, .. }
            | CatalogueEvent::Restocked { merchant, .. }
            | CatalogueEvent::PriceChanged { merchant, .. }
            | CatalogueEvent::ItemsRedeemed { merchant, .. } => *merchant,
        }
    }

    /// Only a redemption moves value: points from the member to the merchant.
    pub(crate) fn push_postings(&self, out: &mut Vec<Posting>) {
        if let CatalogueEvent::ItemsRedeemed {
            member,
            merchant,
            amount,
            ..
        } = self
        {
            out.push(points(
                Account::Member(*member),
                Points::from_minor(-amount.minor()),
            ));
            out.push(points(Account::Merchant(*merchant), *amount));
        }
    }
}

/// An item in a merchant's catalogue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemView {
    /// The item.
    pub id: ItemId,
    /// Whose catalogue it is in.
    pub merchant: MerchantId,
    /// Display name.
    pub name: String,
    /// Price of one now.
    pub price: Points,
    /// Stock on the shelf.
    pub stock: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ItemState {
    merchant: MerchantId,
    name: String,
    price: Points,
    stock: u32,
}

impl Ledger {
    /// An item.
    pub fn item(&self, id: ItemId) -> Option<ItemView> {
        self.items.get(&id).map(|i| ItemView {
            id,
            merchant: i.merchant,
            name: i.name.clone(),
            price: i.price,
            stock: i.stock,
        })
    }

    /// A merchant's catalogue, sorted by item id.
    pub fn catalogue(&self, merchant: MerchantId) -> Vec<ItemView> {
        let mut out: Vec<_> = self
            .items
            .iter()
            .filter(|(_, i)| i.merchant == merchant)
            .filter_map(|(&id, _)| self.item(id))
            .collect();
        out.sort_by_key(|i| i.id);
        out
    }

    /// Admins, the merchant's own point-of-sale, or a recorder whose subtree holds it.
    fn allow_catalogue(&self, actor: &Actor, merchant: MerchantId) -> Result<(), Rejection> {
        match actor {
            Actor::Recorder { .. } => {
                let unit = self.active_merchant(merchant)?.org_unit;
                self.allow_in(actor, unit)
            }
            _ => self.allow_merchant(actor, merchant),
        }
    }

    /// The item, if it is in `merchant`'s catalogue.
    fn merchant_item(&self, merchant: MerchantId, item: ItemId) -> Result<&ItemState, Rejection> {
        self.items
            .get(&item)
            .filter(|i| i.merchant == merchant)
            .ok_or(Rejection::UnknownItem)
    }

    pub(super) fn decide_catalogue(
        &self,
        actor: &Actor,
        command: &CatalogueCommand,
        at: Timestamp,
    ) -> Result<CatalogueEvent, Rejection> {
        match command {
            CatalogueCommand::ListItem {
                merchant,
                item,
                name,
                price,
                stock,
            } => {
                check_name(name)?;
                let price = self.points(*price)?;
                if *stock > MAX_STOCK {
                    return Err(Rejection::QuantityOutOfRange);
                }
                self.active_merchant(*merchant)?;
                if self.items.contains_key(item) {
                    return Err(Rejection::AlreadyExists);
                }
                self.allow_catalogue(actor, *merchant)?;
                Ok(CatalogueEvent::ItemListed {
                    merchant: *merchant,
                    item: *item,
                    name: name.clone(),
                    price,
                    stock: *stock,
                })
            }
            CatalogueCommand::Restock {
                merchant,
                item,
                quantity,
            } => {
                if *quantity == 0 || *quantity > MAX_STOCK {
                    return Err(Rejection::QuantityOutOfRange);
                }
                self.active_merchant(*merchant)?;
                let state = self.merchant_item(*merchant, *item)?;
                self.allow_catalogue(actor, *merchant)?;
                let stock = state
                    .stock
                    .checked_add(*quantity)
                    .filter(|s| *s <= MAX_STOCK)
                    .ok_or(Rejection::BalanceOverflow)?;
                Ok(CatalogueEvent::Restocked {
                    merchant: *merchant,
                    item: *item,
                    quantity: *quantity,
                    stock,
                })
            }
            CatalogueCommand::SetPrice {
                merchant,
                item,
                price,
            } => {
                let price = self.points(*price)?;
                self.active_merchant(*merchant)?;
                let state = self.merchant_item(*merchant, *item)?;
                self.allow_catalogue(actor, *merchant)?;
                Ok(CatalogueEvent::PriceChanged {
                    merchant: *merchant,
                    item: *item,
                    from: state.price,
                    to: price,
                })
            }
            CatalogueCommand::RedeemItems {
                member,
                merchant,
                lines,
            } => self.decide_redeem_items(actor, *member, *merchant, lines, at),
        }
    }

    fn decide_redeem_items(
        &self,
        actor: &Actor,
        member: MemberId,
        merchant: MerchantId,
        lines: &[ItemLine],
        at: Timestamp,
    ) -> Result<CatalogueEvent, Rejection> {
        super::check_batch_len(lines.len())?;
        debug_assert!(lines.len() <= MAX_BATCH);
        let items: Vec<ItemId> = lines.iter().map(|l| l.item).collect();
        if super::has_duplicates(&items) {
            return Err(Rejection::DuplicateInBatch);
        }
        if lines
            .iter()
            .any(|l| l.quantity == 0 || l.quantity > MAX_LINE_QUANTITY)
        {
            return Err(Rejection::QuantityOutOfRange);
        }
        let ix = self.member_ix(member)?;
        let shop = self.active_merchant(merchant)?;
        for line in lines {
            self.merchant_item(merchant, line.item)?;
        }
        self.allow_merchant(actor, merchant)?;
        if shop.status == MerchantStatus::Suspended {
            return Err(Rejection::MerchantSuspended);
        }
        let mut recorded = Vec::with_capacity(lines.len());
        let mut total: i64 = 0;
        for line in lines {
            let item = self.merchant_item(merchant, line.item)?;
            total = item
                .price
                .minor()
                .checked_mul(i64::from(line.quantity))
                .and_then(|cost| total.checked_add(cost))
                .filter(|t| *t <= MAX_AMOUNT_MINOR)
                .ok_or(Rejection::BalanceOverflow)?;
            recorded.push(RedeemedLine {
                item: line.item,
                quantity: line.quantity,
                unit_price: item.price,
            });
        }
        let amount = Points::from_minor(total);
        // Community funds pay for items as for any redemption: under `OverBudget::Refuse`
        // a basket the merchant's funds cannot pay for is refused before points are checked,
        // in the same place in the precedence as for `Command::Redeem`.
        crate::settlement::check_spend(self, merchant, amount, at)?;
        self.ensure_available(ix, amount, at)?;
        for line in lines {
            if self.merchant_item(merchant, line.item)?.stock < line.quantity {
                return Err(Rejection::OutOfStock);
            }
        }
        Self::credit_fits(shop.taken, amount)?;
        Ok(CatalogueEvent::ItemsRedeemed {
            member,
            merchant,
            lines: recorded,
            amount,
        })
    }

    pub(super) fn evolve_catalogue(
        &mut self,
        this: EntryId,
        at: Timestamp,
        event: &CatalogueEvent,
    ) {
        match event {
            CatalogueEvent::ItemListed {
                merchant,
                item,
                name,
                price,
                stock,
            } => {
                self.items.insert(
                    *item,
                    ItemState {
                        merchant: *merchant,
                        name: name.clone(),
                        price: *price,
                        stock: *stock,
                    },
                );
            }
            CatalogueEvent::Restocked { item, stock, .. } => {
                if let Some(i) = self.items.get_mut(item) {
                    i.stock = *stock;
                }
            }
            CatalogueEvent::PriceChanged { item, to, .. } => {
                if let Some(i) = self.items.get_mut(item) {
                    i.price = *to;
                }
            }
            CatalogueEvent::ItemsRedeemed {
                member,
                merchant,
                lines,
                amount,
            } => {
                for line in lines {
                    if let Some(i) = self.items.get_mut(&line.item) {
                        i.stock = i.stock.saturating_sub(line.quantity);
                    }
                }
                self.evolve_spend(this, at, *member, *merchant, *amount);
            }
        }
    }
}
