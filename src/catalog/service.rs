//! Catalog use cases, with the read cache in front and invalidation on every write.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use serde_json::json;

use super::cache::{Cache, LIST_PREFIX, product_key, quotes_prefix};
use super::model::{NewProduct, Product, ProductFilter, ProductPatch, Sort};
use super::repo::{Adjusted, CatalogRepo, Settle, Updated};
use crate::events::{Effects, EventType};
use crate::http::pagination::{Page, PageRequest};
use crate::store::{StoreError, now, unique};

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

pub struct Catalog {
    repo: Arc<dyn CatalogRepo>,
    cache: Arc<dyn Cache>,
}

fn announce(p: &Product) -> Effects {
    let data = json!({ "id": p.id, "price": p.price, "stock_available": p.stock_available, "active": p.active, "version": p.version });
    Effects::default().public_event(EventType::ProductUpdated, data)
}

impl Catalog {
    pub fn new(repo: Arc<dyn CatalogRepo>, cache: Arc<dyn Cache>) -> Self {
        Self { repo, cache }
    }

    pub fn repo(&self) -> &Arc<dyn CatalogRepo> {
        &self.repo
    }

    /// The product's JSON, from the cache when possible.
    pub async fn product_json(&self, id: &str) -> Result<Arc<[u8]>, CatalogError> {
        let key = product_key(id);
        if let Some(hit) = self.cache.get(&key).await {
            return Ok(hit);
        }
        let epoch = self.cache.epoch();
        let product = self.repo.get(id).await?.ok_or(CatalogError::NotFound)?;
        let body: Arc<[u8]> = serde_json::to_vec(&product).map_err(anyhow::Error::from)?.into();
        self.cache.put(&key, body.clone(), epoch).await;
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
        if let Some(hit) = self.cache.get(&key).await {
            return Ok(hit);
        }
        let epoch = self.cache.epoch();
        let rows = self.repo.list(filter, sort, page.after.as_ref(), page.limit).await?;
        let page = Page::from_rows(rows, page.limit, |p| (sort.key(p), p.id.clone()));
        let body: Arc<[u8]> = serde_json::to_vec(&page).map_err(anyhow::Error::from)?.into();
        self.cache.put(&key, body.clone(), epoch).await;
        Ok(body)
    }

    pub async fn create(&self, product: NewProduct, actor: &str) -> Result<Product, CatalogError> {
        let created = match self.repo.create(&crate::ids::new("prd"), &product, now(), actor, &announce).await {
            Err(StoreError::Conflict { constraint: unique::PRODUCT_SKU }) => return Err(CatalogError::SkuTaken),
            other => other?,
        };
        self.forget(&created.id).await;
        Ok(created)
    }

    pub async fn update(&self, id: &str, patch: ProductPatch, if_version: Option<i64>) -> Result<Product, CatalogError> {
        let result = self.repo.update(id, &patch, if_version, now(), &announce).await?;
        self.forget(id).await;
        match result {
            Updated::Done(p) => {
                if let Some(price) = patch.price {
                    tracing::info!(product.id = id, price, "product price changed");
                }
                Ok(p)
            }
            Updated::NotFound => Err(CatalogError::NotFound),
            Updated::Stale => Err(CatalogError::Stale),
        }
    }

    pub async fn adjust_stock(&self, id: &str, delta: i64, reason: &str, actor: &str) -> Result<Product, CatalogError> {
        let result = self.repo.adjust_stock(id, delta, reason, actor, now(), &announce).await?;
        self.forget(id).await;
        match result {
            Adjusted::Done(p) => Ok(p),
            Adjusted::NotFound => Err(CatalogError::NotFound),
            Adjusted::BelowReserved { available } => Err(CatalogError::BelowReserved { available }),
        }
    }

    /// Holds stock for `ttl`; checkout then commits or releases it (or it expires).
    /// `None` when fewer units are available.
    pub async fn reserve(&self, product_id: &str, quantity: i64, ttl: Duration) -> Result<Option<String>, CatalogError> {
        let at = now();
        let until = at + TimeDelta::from_std(ttl).map_err(anyhow::Error::from)?;
        let id = self.repo.reserve(product_id, quantity, until, at, &announce).await?;
        self.forget(product_id).await;
        Ok(id)
    }

    /// Ends a held reservation; false when it was not held (already settled or expired).
    pub async fn settle(&self, reservation_id: &str, outcome: Settle) -> Result<bool, CatalogError> {
        let product = self.repo.settle(reservation_id, outcome, now(), &announce).await?;
        if let Some(p) = &product {
            self.forget(&p.id).await;
        }
        Ok(product.is_some())
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
