//! `keel demo seed`: a living shop, and safe to run twice.

use crate::helpers::spawn_app;
use crate::support::eventually;

#[tokio::test]
async fn demo_seed_fills_the_shop_once_however_often_it_runs() {
    let app = spawn_app().await;
    let first = app.keel(&["demo", "seed"], "").await;
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let printed = String::from_utf8_lossy(&first.stdout).into_owned();
    assert!(printed.contains("320 products created"), "{printed}");
    for (email, password) in [keel::demo::DEMO_ADMIN, keel::demo::DEMO_CUSTOMER] {
        assert!(printed.contains(email) && printed.contains(password), "the {email} login in {printed}");
    }
    assert!(printed.contains("WARNING: the demo admin's password is public"), "{printed}");
    let coupons: Vec<&str> = printed
        .lines()
        .find_map(|l| l.strip_prefix("coupon codes "))
        .and_then(|l| l.split_once(": "))
        .map(|(_, codes)| codes.split(", ").collect())
        .unwrap_or_else(|| panic!("coupon codes in {printed}"));
    assert!(!coupons.is_empty(), "{printed}");
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
    // Every printed coupon code is one the shop takes.
    let customer = app.login(keel::demo::DEMO_CUSTOMER.0, keel::demo::DEMO_CUSTOMER.1).await;
    for code in coupons {
        let cart =
            app.call(reqwest::Method::PUT, "/v1/cart/coupon", Some(&customer.access), Some(&serde_json::json!({ "code": code }))).await;
        assert_eq!(cart.expect(200).json()["coupon_code"], code);
    }
}
