//! The cart, priced live: every read quotes each line under the current rules, the
//! buyer's country and the cart's coupon.

use std::sync::Arc;

use serde::Serialize;
use utoipa::ToSchema;

use super::repo::CartRepo;
use crate::auth::service::Principal;
use crate::catalog::Catalog;
use crate::money::Money;
use crate::pricing::Pricing;
use crate::pricing::service::QuoteAdjustment;
use crate::store::{Store, StoreError, Transient, Tx, now};
use crate::validation::Invalid;

pub const MAX_QUANTITY: u32 = 999;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CartItem {
    pub product_id: String,
    pub name: String,
    pub quantity: u32,
    pub unit_price: Money,
    /// Unit price × quantity, before adjustments.
    pub line_total: Money,
    /// Units for sale now (on hand minus what checkouts hold).
    pub available: i64,
    /// `quantity` is more than `available`: checkout would answer `409 insufficient_stock` naming this line.
    pub insufficient_stock: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CartView {
    pub items: Vec<CartItem>,
    pub subtotal: Money,
    /// Every rule that applied, summed over the lines, in the order the rules apply (priority,
    /// then id): `subtotal` plus the adjustments one by one is a running total ending at `total`.
    pub adjustments: Vec<QuoteAdjustment>,
    pub total: Money,
    #[schema(required = true)]
    pub coupon_code: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CartError {
    #[error("invalid")]
    Invalid(Invalid),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Catalog(#[from] crate::catalog::service::CatalogError),
}

impl Transient for CartError {
    fn is_transient(&self) -> bool {
        matches!(self, CartError::Store(e) if e.is_transient())
    }
}

impl From<Invalid> for CartError {
    fn from(i: Invalid) -> Self {
        CartError::Invalid(i)
    }
}

pub struct Carts {
    store: Store,
    repo: Arc<dyn CartRepo>,
    catalog: Arc<Catalog>,
    pricing: Arc<Pricing>,
    currency: String,
}

impl Carts {
    pub fn new(store: Store, catalog: Arc<Catalog>, pricing: Arc<Pricing>, currency: &str) -> Self {
        Self { repo: super::repo::for_store(&store), store, catalog, pricing, currency: currency.to_owned() }
    }

    /// Writes one line of `user_id`'s cart (0 removes it), in one transaction.
    async fn write_line(&self, user_id: &str, product_id: &str, quantity: u32) -> Result<(), CartError> {
        self.store
            .transact(|mut tx| async move {
                self.repo.lock(&mut tx, user_id, now()).await?;
                self.repo.set_quantity(&mut tx, user_id, product_id, quantity, now()).await?;
                Ok((tx, ()))
            })
            .await
    }

    /// The cart as it costs now. Lines whose product was deactivated are left out (checkout
    /// could not sell them) and dropped from the stored cart.
    pub async fn view(&self, who: &Principal) -> Result<CartView, CartError> {
        let stored = self.repo.load(&who.user_id).await?;
        let country = who.account.country.clone();
        let mut view = CartView {
            items: Vec::new(),
            subtotal: Money::new(0, &self.currency),
            adjustments: Vec::new(),
            total: Money::new(0, &self.currency),
            coupon_code: stored.coupon_code.clone(),
        };
        for (product_id, quantity) in stored.items {
            let product = self.catalog.product(&product_id).await?;
            let Some(product) = product.filter(|p| p.active) else {
                self.write_line(&who.user_id, &product_id, 0).await?;
                continue;
            };
            let quote = self.pricing.quote(&product, quantity, country.clone(), stored.coupon_code.clone()).await?;
            view.subtotal.amount += quote.subtotal.amount;
            view.total.amount += quote.total.amount;
            for adjustment in quote.adjustments {
                match view.adjustments.iter_mut().find(|a| a.rule_id == adjustment.rule_id) {
                    Some(same) => same.amount.amount += adjustment.amount.amount,
                    None => view.adjustments.push(adjustment),
                }
            }
            view.items.push(CartItem {
                product_id,
                name: product.name,
                quantity,
                unit_price: quote.unit_price,
                line_total: quote.subtotal,
                available: product.stock_available,
                insufficient_stock: i64::from(quantity) > product.stock_available,
            });
        }
        // Lines may each see only some of the rules; the sums are shown in engine order.
        self.pricing.in_application_order(&mut view.adjustments);
        Ok(view)
    }

    /// Sets a line (0 removes it); only active products can be added.
    pub async fn set_quantity(&self, who: &Principal, product_id: &str, quantity: u32) -> Result<CartView, CartError> {
        if quantity > MAX_QUANTITY {
            return Err(Invalid::one("quantity", "out_of_range", format!("must be from 0 to {MAX_QUANTITY}")).into());
        }
        if quantity > 0 {
            let active = self.catalog.product(product_id).await?.is_some_and(|p| p.active);
            if !active {
                return Err(Invalid::one("product_id", "unavailable", "this product does not exist or is no longer sold").into());
            }
        }
        self.write_line(&who.user_id, product_id, quantity).await?;
        self.view(who).await
    }

    pub async fn clear(&self, who: &Principal) -> Result<(), CartError> {
        let user_id = who.user_id.as_str();
        self.store
            .transact(|mut tx| async move {
                self.clear_in(&mut tx, user_id).await?;
                Ok((tx, ()))
            })
            .await
    }

    /// Empties the cart as one step of the caller's unit of work (checkout, when the order is paid).
    pub async fn clear_in(&self, tx: &mut Tx, user_id: &str) -> Result<(), StoreError> {
        self.repo.delete(tx, user_id).await
    }

    /// Applies a coupon that an active promotion carries; unknown or expired codes are refused.
    pub async fn set_coupon(&self, who: &Principal, code: Option<&str>) -> Result<CartView, CartError> {
        let code = code.map(|c| c.trim().to_uppercase());
        if let Some(c) = &code
            && !self.pricing.coupon_exists(c, now())
        {
            return Err(Invalid::one("code", "unknown_coupon", "this coupon does not exist or has expired").into());
        }
        let (user_id, code) = (who.user_id.as_str(), code.as_deref());
        self.store
            .transact(|mut tx| async move {
                self.repo.lock(&mut tx, user_id, now()).await?;
                self.repo.set_coupon(&mut tx, user_id, code).await?;
                Ok::<_, CartError>((tx, ()))
            })
            .await?;
        self.view(who).await
    }
}
