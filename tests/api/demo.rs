//! `keel demo seed`: a living shop, and safe to run twice.

use crate::helpers::spawn_app;
use crate::support::eventually;

#[tokio::test]
async fn demo_seed_fills_the_shop_once_however_often_it_runs() {
    let app = spawn_app().await;
    let first = app.keel(&["demo", "seed"], "").await;
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert!(String::from_utf8_lossy(&first.stdout).contains("320 products created"));
    let second = app.keel(&["demo", "seed"], "").await;
    assert!(String::from_utf8_lossy(&second.stdout).contains("0 products created, 320 already there"));

    let kitchen = app.get("/v1/products?category=kitchen&limit=100").await.expect(200).json();
    assert_eq!(kitchen["data"].as_array().unwrap().len(), 40);
    let admin = app.login(keel::demo::DEMO_ADMIN.0, keel::demo::DEMO_ADMIN.1).await;
    // The seed ran in another process: the running app hears of its rules over the bus.
    eventually(20, "the demo rules to reach the running app", || async {
        let rules = app.get_authed("/v1/admin/pricing/rules", &admin.access).await.expect(200).json();
        (rules["data"].as_array().unwrap().len() == 5).then_some(())
    })
    .await;
}
