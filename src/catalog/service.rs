//! Catalog use cases, with the read cache in front and invalidation on every write.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use serde_json::json;

use super::model::{NewProduct, Product, ProductFilter, ProductPatch, Sort};
use super::repo::{CatalogRepo, Settle};
use crate::cache::{Cache, LIST_PREFIX, product_key, quotes_prefix};
use crate::events::{Effects, EventType};
use crate::http::pagination::{Page, PageRequest};
use crate::security::audit::{Action, Actor, NewEntry};
use crate::store::{Store, StoreError, Transient, Tx, now, unique};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("not found")]
    NotFound,
    #[error("a product with this SKU exists")]
    SkuTaken,
    #[error("the product changed since the version given")]
    Stale,
    #[error("not enough stock")]
    BelowReserved { available: i64 },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Transient for CatalogError {
    fn is_transient(&self) -> bool {
        match self {
            CatalogError::Store(e) => e.is_transient(),
            CatalogError::Internal(e) => e.is_transient(),
            _ => false,
        }
    }
}

pub struct Catalog {
    store: Store,
    repo: Arc<dyn CatalogRepo>,
    cache: Arc<dyn Cache>,
}

/// How a use case takes units of stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// Held for this long, to be settled later (a payment still to come).
    Hold(Duration),
    /// Sold at once (the payment commits in the same unit of work).
    Sell,
}

fn announce(p: &Product) -> Effects {
    let data = json!({ "id": p.id, "price": p.price, "stock_available": p.stock_available, "active": p.active, "version": p.version });
    Effects::default().public_event(EventType::ProductUpdated, data)
}

impl Catalog {
    /// The catalog of `store`, showing prices in `currency`.
    pub fn new(store: Store, currency: &str, cache: Arc<dyn Cache>) -> Self {
        Self { repo: super::repo::for_store(&store, currency), store, cache }
    }

    /// The product as the unit of work left it, with the event that announces it written
    /// into the same unit (every product change is announced, for caches and clients).
    async fn announced(&self, tx: &mut Tx, id: &str) -> Result<Product, CatalogError> {
        let product = self.repo.product_in(tx, id).await?.ok_or_else(|| StoreError::Corrupt("product vanished".into()))?;
        announce(&product).write(tx, now()).await?;
        Ok(product)
    }

    /// The product's JSON, from the cache when possible.
    pub async fn product_json(&self, id: &str) -> Result<Arc<[u8]>, CatalogError> {
        let key = product_key(id);
        let lookup = self.cache.get(&key).await;
        if let Some(hit) = lookup.value {
            return Ok(hit);
        }
        let product = self.repo.get(id).await?.ok_or(CatalogError::NotFound)?;
        let body: Arc<[u8]> = serde_json::to_vec(&product).map_err(anyhow::Error::from)?.into();
        self.cache.put(&key, body.clone(), lookup.ticket).await;
        Ok(body)
    }

    /// The product, from the cache when possible; `None` when there is no such product.
    pub async fn product(&self, id: &str) -> Result<Option<Product>, CatalogError> {
        match self.product_json(id).await {
            Ok(body) => Ok(Some(serde_json::from_slice(&body).map_err(anyhow::Error::from)?)),
            Err(CatalogError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A page of the public list as JSON, cached by its exact query.
    pub async fn list_json(
        &self,
        filter: &ProductFilter,
        sort: Sort,
        page: &PageRequest<(String, String)>,
    ) -> Result<Arc<[u8]>, CatalogError> {
        let key = format!("{LIST_PREFIX}{filter:?}|{sort:?}|{:?}|{}", page.after, page.limit);
        let lookup = self.cache.get(&key).await;
        if let Some(hit) = lookup.value {
            return Ok(hit);
        }
        let rows = self.repo.list(filter, sort, page.after.as_ref(), page.limit).await?;
        let page = Page::from_rows(rows, page.limit, |p| (sort.key(p), p.id.clone()));
        let body: Arc<[u8]> = serde_json::to_vec(&page).map_err(anyhow::Error::from)?.into();
        self.cache.put(&key, body.clone(), lookup.ticket).await;
        Ok(body)
    }

    pub async fn create(&self, product: NewProduct, actor: &str) -> Result<Product, CatalogError> {
        let (id, product) = (crate::ids::new("prd"), &product);
        let id = id.as_str();
        let created = self
            .store
            .transact(|mut tx| async move {
                match self.repo.insert(&mut tx, id, product, now()).await {
                    Err(StoreError::Conflict { constraint: unique::PRODUCT_SKU }) => return Err(CatalogError::SkuTaken),
                    other => other?,
                }
                if product.stock != 0 {
                    self.repo.record_movement(&mut tx, id, product.stock, "initial stock", actor, now()).await?;
                }
                let created = self.announced(&mut tx, id).await?;
                Ok((tx, created))
            })
            .await?;
        self.forget(&created.id).await;
        Ok(created)
    }

    /// Applies `patch`; a new price is audited as `actor`'s, with the price it replaced.
    pub async fn update(&self, id: &str, patch: ProductPatch, if_version: Option<i64>, actor: &Actor) -> Result<Product, CatalogError> {
        let patch_ref = &patch;
        let updated = self
            .store
            .transact(|mut tx| async move {
                // Locked first, so the price it replaces is the one committed last.
                let before = match patch_ref.price {
                    Some(_) => self.repo.lock(&mut tx, id).await?,
                    None => None,
                };
                if !self.repo.update(&mut tx, id, patch_ref, if_version, now()).await? {
                    let exists = self.repo.product_in(&mut tx, id).await?.is_some();
                    return Err(if exists { CatalogError::Stale } else { CatalogError::NotFound });
                }
                let updated = self.announced(&mut tx, id).await?;
                if let Some(before) = before.filter(|b| b.price != updated.price) {
                    let details = json!({ "from": before.price, "to": updated.price, "version": updated.version });
                    let entry = NewEntry::new(Action::PriceChanged, actor).target(id).details(details);
                    Effects::default().audit(entry).write(&mut tx, now()).await?;
                }
                Ok((tx, updated))
            })
            .await;
        self.forget(id).await;
        updated
    }

    pub async fn adjust_stock(&self, id: &str, delta: i64, reason: &str, actor: &str) -> Result<Product, CatalogError> {
        let adjusted = self
            .store
            .transact(|mut tx| async move {
                if !self.repo.add_on_hand(&mut tx, id, delta, now()).await? {
                    return Err(match self.repo.product_in(&mut tx, id).await? {
                        None => CatalogError::NotFound,
                        Some(p) => CatalogError::BelowReserved { available: p.stock_available },
                    });
                }
                self.repo.record_movement(&mut tx, id, delta, reason, actor, now()).await?;
                let adjusted = self.announced(&mut tx, id).await?;
                Ok((tx, adjusted))
            })
            .await;
        self.forget(id).await;
        adjusted
    }

    /// Holds stock for `ttl`; checkout then commits or releases it (or it expires).
    /// `None` when fewer units are available.
    pub async fn reserve(&self, product_id: &str, quantity: i64, ttl: Duration) -> Result<Option<String>, CatalogError> {
        let id = self
            .store
            .transact(|mut tx| async move {
                let id = self.take_in(&mut tx, product_id, quantity, Take::Hold(ttl)).await?;
                Ok::<_, CatalogError>((tx, id))
            })
            .await?;
        self.forget(product_id).await;
        Ok(id)
    }

    /// `reserve` (or a sale at once) as one step of the caller's unit of work (checkout takes
    /// every line in one), with its `product.updated`; the caller calls `forget` once it commits.
    /// `None` when fewer units are available: nothing was written.
    pub async fn take_in(&self, tx: &mut Tx, product_id: &str, quantity: i64, take: Take) -> Result<Option<String>, CatalogError> {
        let at = now();
        let (taken, until) = match take {
            Take::Hold(ttl) => {
                (self.repo.hold(tx, product_id, quantity).await?, Some(at + TimeDelta::from_std(ttl).map_err(anyhow::Error::from)?))
            }
            Take::Sell => (self.repo.sell(tx, product_id, quantity).await?, None),
        };
        let Some(product) = taken else {
            return Ok(None);
        };
        let id = crate::ids::new("rsv");
        self.repo.insert_reservation(tx, &id, product_id, quantity, until, at).await?;
        announce(&product).write(tx, at).await?;
        Ok(Some(id))
    }

    /// Puts sold units back on hand as one step of the caller's unit of work (a cancelled paid
    /// order), with the stock movement and `product.updated`; the caller calls `forget` once it commits.
    pub async fn restock_in(&self, tx: &mut Tx, id: &str, quantity: i64, reason: &str, actor: &str) -> Result<(), CatalogError> {
        if !self.repo.add_on_hand(tx, id, quantity, now()).await? {
            return Err(CatalogError::NotFound);
        }
        self.repo.record_movement(tx, id, quantity, reason, actor, now()).await?;
        self.announced(tx, id).await?;
        Ok(())
    }

    /// Ends a held reservation; false when it was not held (already settled or expired).
    pub async fn settle(&self, reservation_id: &str, outcome: Settle) -> Result<bool, CatalogError> {
        let product = self
            .store
            .transact(|mut tx| async move {
                let product = self.settle_in(&mut tx, reservation_id, outcome).await?;
                Ok::<_, CatalogError>((tx, product))
            })
            .await?;
        if let Some(id) = &product {
            self.forget(id).await;
        }
        Ok(product.is_some())
    }

    /// `settle` as one step of the caller's unit of work: the product's id when the reservation
    /// was held (the caller calls `forget` with it once it commits), `None` when it was not.
    pub async fn settle_in(&self, tx: &mut Tx, reservation_id: &str, outcome: Settle) -> Result<Option<String>, CatalogError> {
        let Some((product_id, quantity)) = self.repo.end_reservation(tx, reservation_id, outcome).await? else {
            return Ok(None);
        };
        // Committed units are sold and leave on hand; released ones are available again.
        let sold = if outcome == Settle::Commit { quantity } else { 0 };
        let product =
            self.repo.unhold(tx, &product_id, quantity, sold).await?.ok_or_else(|| StoreError::Corrupt("product vanished".into()))?;
        announce(&product).write(tx, now()).await?;
        Ok(Some(product_id))
    }

    /// Releases every held reservation whose time is up; returns how many.
    pub async fn release_expired(&self) -> Result<u64, CatalogError> {
        let mut released = 0;
        for id in self.repo.expired(now()).await? {
            released += u64::from(self.settle(&id, Settle::Release).await?);
        }
        Ok(released)
    }

    /// Drops what the cache holds about a product: itself, list pages, and its quotes (on
    /// writes here, and on bus events from other instances).
    pub async fn forget(&self, id: &str) {
        self.cache.invalidate(&product_key(id)).await;
        self.cache.invalidate_prefix(LIST_PREFIX).await;
        self.cache.invalidate_prefix(&quotes_prefix(id)).await;
    }
}

/// Keeps this instance's cache in step with changes made anywhere.
pub struct InvalidateOnChange(pub Arc<Catalog>);

#[async_trait::async_trait]
impl crate::events::subscriber::Subscriber for InvalidateOnChange {
    fn name(&self) -> &'static str {
        "catalog-cache"
    }

    async fn handle(&self, event: &crate::events::Event) -> anyhow::Result<()> {
        if event.kind == EventType::ProductUpdated.name()
            && let Some(id) = event.data.get("id").and_then(|v| v.as_str())
        {
            self.0.forget(id).await;
        }
        Ok(())
    }
}
