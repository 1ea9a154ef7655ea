//! Stock reservations under concurrency, through the reservation API checkout uses.

use std::sync::Arc;
use std::time::Duration;

use keel::store::{Store, StoreOptions};
use serde_json::json;

use keel::catalog::repo::Settle;

use crate::helpers::{PASSWORD, TestApp, spawn_app};
use crate::support::eventually;

/// A second connection to the app's database, as another process would have.
async fn open_store(app: &TestApp) -> Store {
    let url = app.database_url.clone().unwrap_or_else(|| format!("sqlite://{}", app.data_dir.join("keel.db").display()));
    Store::connect(&StoreOptions { url, max_connections: 8 }).await.expect("connecting to the app's database")
}

/// Sells `units` of a product, one reservation committed at a time, as checkout does;
/// from another process's connection, so the app hears of it through the bus.
pub async fn sell(app: &TestApp, product_id: &str, units: usize) {
    let store = open_store(app).await;
    let catalog = keel::catalog::Catalog::new(store.clone(), "USD", Arc::new(keel::cache::LocalCache::new(100, Duration::from_secs(60))));
    for _ in 0..units {
        let held = catalog.reserve(product_id, 1, Duration::from_secs(60)).await.unwrap().expect("stock to sell");
        assert!(catalog.settle(&held, Settle::Commit).await.unwrap());
    }
    store.close().await;
}

#[tokio::test]
async fn two_hundred_parallel_reservations_of_fifty_in_stock_win_exactly_fifty_times() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let body =
        json!({ "sku": "HOT-1", "name": "Hot item", "category": "misc", "price": { "amount": 100, "currency": "USD" }, "stock": 50 });
    let product = app.post_json_authed("/v1/admin/products", &admin.access, &body).await.expect(201).json();
    let id: Arc<str> = product["id"].as_str().unwrap().into();

    let store = open_store(&app).await;
    let cache = Arc::new(keel::cache::LocalCache::new(100, Duration::from_secs(60)));
    let catalog = Arc::new(keel::catalog::Catalog::new(store.clone(), "USD", cache));
    let attempts = (0..200).map(|_| {
        let (catalog, id) = (catalog.clone(), id.clone());
        tokio::spawn(async move { catalog.reserve(&id, 1, Duration::from_secs(2)).await.expect("the reservation runs") })
    });
    let results = futures::future::join_all(attempts).await;
    let won: Vec<String> = results.into_iter().filter_map(|r| r.unwrap()).collect();
    assert_eq!(won.len(), 50);
    let available = |n: i64| {
        let (app, id) = (&app, id.clone());
        async move {
            eventually(20, &format!("{n} available through the API"), || async {
                let p = app.get(&format!("/v1/products/{id}")).await.expect(200).json();
                (p["stock_available"] == n).then_some(())
            })
            .await
        }
    };
    available(0).await;

    // Releasing one gives a unit back; committing one sells it; neither works twice.
    assert!(catalog.settle(&won[0], Settle::Release).await.unwrap());
    assert!(!catalog.settle(&won[0], Settle::Release).await.unwrap());
    assert!(catalog.settle(&won[1], Settle::Commit).await.unwrap());
    assert!(!catalog.settle(&won[1], Settle::Commit).await.unwrap());
    available(1).await;

    // The other 48 holds expire (after 2 s) and are released: here, or by the app's own
    // periodic job if a minute boundary passes meanwhile. Polled until all are back.
    let released = std::sync::atomic::AtomicU64::new(0);
    eventually(20, "the 48 expired holds released", || async {
        released.fetch_add(catalog.release_expired().await.unwrap(), std::sync::atomic::Ordering::Relaxed);
        let p = app.get(&format!("/v1/products/{id}")).await.expect(200).json();
        (p["stock_available"] == 49).then_some(())
    })
    .await;
    assert!(released.into_inner() <= 48, "each expired hold is released once");
    // A released hold cannot be committed any more.
    assert!(!catalog.settle(&won[2], Settle::Commit).await.unwrap());
    available(49).await;
    store.close().await;
}
