//! The wallet: top-ups through the sandbox provider, transfers, history, the ledger check, and
//! the bank test (concurrent transfers conserve money and never overdraw).

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, Reply, TestApp, Tokens, spawn_app};

pub fn usd(amount: i64) -> Value {
    json!({ "amount": amount, "currency": "USD" })
}

/// An [idem] POST with its own fresh key.
pub async fn idem_post(app: &TestApp, path: &str, who: &Tokens, key: &str, body: &Value) -> Reply {
    app.send(app.request(Method::POST, path).bearer_auth(&who.access).header("Idempotency-Key", key).json(body)).await
}

pub async fn top_up(app: &TestApp, who: &Tokens, amount: i64, card: &str) -> Reply {
    let key = uuid::Uuid::new_v4().to_string();
    idem_post(app, "/v1/wallet/top-ups", who, &key, &json!({ "amount": usd(amount), "card_token": card })).await
}

pub async fn transfer(app: &TestApp, who: &Tokens, to: &str, amount: i64) -> Reply {
    let key = uuid::Uuid::new_v4().to_string();
    idem_post(app, "/v1/wallet/transfers", who, &key, &json!({ "to_email": to, "amount": usd(amount) })).await
}

pub async fn balance(app: &TestApp, who: &Tokens) -> i64 {
    let body = app.get_authed("/v1/wallet", &who.access).await.expect(200).json();
    assert_eq!(body["currency"], "USD");
    body["balance"]["amount"].as_i64().expect("balance.amount")
}

pub async fn verify(app: &TestApp, staff: &Tokens) -> Value {
    app.get_authed("/v1/admin/ledger/verify", &staff.access).await.expect(200).json()
}

#[tokio::test]
async fn a_new_wallet_is_empty_and_a_top_up_with_tok_visa_credits_it() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    assert_eq!(balance(&app, &ada).await, 0);
    let body = top_up(&app, &ada, 2500, "tok_visa").await.expect(201).json();
    assert!(body["id"].as_str().unwrap().starts_with("txn_"), "{body}");
    assert_eq!((body["kind"].clone(), body["amount"].clone(), body["balance_after"].clone()), (json!("top_up"), usd(2500), usd(2500)));
    assert!(body["reference"].as_str().is_some_and(|r| r.starts_with("pi_")), "{body}");
    assert_eq!(balance(&app, &ada).await, 2500);
    let history = app.get_authed("/v1/wallet/transactions", &ada.access).await.expect(200).json();
    assert_eq!(history["data"].as_array().unwrap().len(), 1);
    assert_eq!(history["data"][0]["id"], body["id"]);
    assert_eq!(history["next_cursor"], Value::Null);
}

#[tokio::test]
async fn a_declined_card_is_402_and_moves_no_money() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    for card in ["tok_chargeDeclined", "tok_insufficientFunds"] {
        top_up(&app, &ada, 1000, card).await.problem(402, "payment_declined");
    }
    assert_eq!(balance(&app, &ada).await, 0);
    let history = app.get_authed("/v1/wallet/transactions", &ada.access).await.expect(200).json();
    assert_eq!(history["data"], json!([]));
}

#[tokio::test]
async fn a_provider_error_is_503_and_moves_no_money() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    top_up(&app, &ada, 1000, "tok_error").await.problem(503, "payment_provider_unavailable");
    assert_eq!(balance(&app, &ada).await, 0);
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    assert_eq!(verify(&app, &admin).await["entries"], 0);
}

#[tokio::test]
async fn a_lost_answer_is_looked_up_by_its_key_and_credited_once() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    let body = json!({ "amount": usd(1200), "card_token": "tok_timeout" });
    let first = idem_post(&app, "/v1/wallet/top-ups", &ada, "lost-1", &body).await.expect(201);
    assert!(first.json()["reference"].as_str().is_some_and(|r| r.starts_with("pi_")));
    let again = idem_post(&app, "/v1/wallet/top-ups", &ada, "lost-1", &body).await.expect(201);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(balance(&app, &ada).await, 1200);
}

#[tokio::test]
async fn amounts_must_be_positive_in_the_deployment_currency_and_cards_known() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    let bad = |amount: Value| json!({ "amount": amount, "card_token": "tok_visa" });
    for (body, field) in [
        (bad(usd(0)), "amount.amount"),
        (bad(usd(-5)), "amount.amount"),
        (bad(json!({ "amount": 100, "currency": "EUR" })), "amount.currency"),
        (json!({ "amount": usd(100), "card_token": "tok_nope" }), "card_token"),
    ] {
        let reply = idem_post(&app, "/v1/wallet/top-ups", &ada, &uuid::Uuid::new_v4().to_string(), &body).await;
        reply.field_error(field);
    }
    assert_eq!(balance(&app, &ada).await, 0);
}

#[tokio::test]
async fn a_transfer_moves_money_between_two_users_and_both_see_it() {
    let app = spawn_app().await;
    let (ada, bob) = (app.customer("ada@example.com").await, app.customer("bob@example.com").await);
    top_up(&app, &ada, 1000, "tok_visa").await.expect(201);
    let body = transfer(&app, &ada, "bob@example.com", 300).await.expect(201).json();
    assert_eq!((body["kind"].clone(), body["amount"].clone(), body["balance_after"].clone()), (json!("transfer"), usd(-300), usd(700)));
    assert_eq!((balance(&app, &ada).await, balance(&app, &bob).await), (700, 300));
    let bobs = app.get_authed("/v1/wallet/transactions", &bob.access).await.expect(200).json();
    assert_eq!(bobs["data"][0]["id"], body["id"], "one ledger transaction, seen from both sides");
    assert_eq!((bobs["data"][0]["amount"].clone(), bobs["data"][0]["balance_after"].clone()), (usd(300), usd(300)));
    let adas = app.all_pages("/v1/wallet/transactions", &ada.access, &[], 1).await;
    let kinds: Vec<Value> = adas.iter().flatten().map(|e| e["kind"].clone()).collect();
    assert_eq!(kinds, vec![json!("transfer"), json!("top_up")], "newest first, one per page");
}

#[tokio::test]
async fn an_overdraft_is_402_and_bad_recipients_are_422() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    app.customer("bob@example.com").await;
    top_up(&app, &ada, 100, "tok_visa").await.expect(201);
    transfer(&app, &ada, "bob@example.com", 101).await.problem(402, "insufficient_funds");
    transfer(&app, &ada, "nobody@example.com", 10).await.field_error("to_email");
    transfer(&app, &ada, "ada@example.com", 10).await.field_error("to_email");
    assert_eq!(balance(&app, &ada).await, 100);
}

#[tokio::test]
async fn the_bank_test_concurrent_transfers_conserve_money_and_never_overdraw() {
    let app = spawn_app().await;
    let emails = ["w0@example.com", "w1@example.com", "w2@example.com", "w3@example.com"];
    let mut users = Vec::new();
    for email in emails {
        let user = app.customer(email).await;
        top_up(&app, &user, 1000, "tok_visa").await.expect(201);
        users.push(user);
    }
    let requests = (0..200).map(|i| {
        let (from, to) = (i % 4, (i * 7 + 1) % 4);
        let to = if to == from { (to + 1) % 4 } else { to };
        let amount = 50 + (i as i64 * 37) % 400;
        transfer(&app, &users[from], emails[to], amount)
    });
    let replies = futures::future::join_all(requests).await;
    let mut moved = 0;
    for reply in &replies {
        match reply.status.as_u16() {
            201 => moved += 1,
            402 => assert_eq!(reply.json()["code"], "insufficient_funds"),
            other => panic!("unexpected {other}: {}", reply.text),
        }
    }
    assert!(moved > 0, "some transfers went through");
    let mut total = 0;
    for user in &users {
        let b = balance(&app, user).await;
        assert!(b >= 0, "no wallet goes negative");
        total += b;
    }
    assert_eq!(total, 4000, "money is conserved");
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let report = verify(&app, &admin).await;
    assert_eq!(report["balanced"], true, "{report}");
    assert_eq!(report["discrepancies"], json!([]));
}

#[tokio::test]
async fn of_two_concurrent_transfers_that_together_overdraw_exactly_one_succeeds() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    app.customer("bob@example.com").await;
    app.customer("cy@example.com").await;
    top_up(&app, &ada, 1000, "tok_visa").await.expect(201);
    let (a, b) = tokio::join!(transfer(&app, &ada, "bob@example.com", 600), transfer(&app, &ada, "cy@example.com", 600));
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 402], "{} / {}", a.text, b.text);
    assert_eq!(balance(&app, &ada).await, 400);
}

#[tokio::test]
async fn wallet_updated_events_reach_both_users() {
    let app = spawn_app().await;
    let (ada, bob) = (app.customer("ada@example.com").await, app.customer("bob@example.com").await);
    top_up(&app, &ada, 1000, "tok_visa").await.expect(201);
    transfer(&app, &ada, "bob@example.com", 250).await.expect(201);
    let stored = app.stored_rows().await;
    let updates = stored.matches("wallet.updated").count();
    assert_eq!(updates, 3, "one for the top-up, one per side of the transfer: {stored}");
    assert!(stored.contains(&bob.user_id()));
}

#[tokio::test]
async fn the_ledger_check_is_for_staff_and_keel_ledger_verify_fails_on_a_corrupted_balance() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    app.get_authed("/v1/admin/ledger/verify", &ada.access).await.problem(403, "forbidden");
    top_up(&app, &ada, 700, "tok_visa").await.expect(201);
    let support = app.create_staff("help@example.com", PASSWORD, "support").await;
    let report = verify(&app, &support).await;
    assert_eq!((report["balanced"].clone(), report["accounts"].clone(), report["entries"].clone()), (json!(true), json!(2), json!(2)));

    let out = app.keel(&["ledger", "verify"], "").await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("balanced"));

    assert_eq!(app.execute_sql("UPDATE ledger_accounts SET balance = balance + 1 WHERE kind = 'wallet'").await, 1);
    let out = app.keel(&["ledger", "verify"], "").await;
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("balance_mismatch") && stdout.contains(&format!("wallet:{}", ada.user_id())), "{stdout}");
    let report = verify(&app, &support).await;
    assert_eq!(report["balanced"], false);
    assert_eq!(report["discrepancies"][0]["kind"], "balance_mismatch");
    assert_eq!((report["discrepancies"][0]["expected"].clone(), report["discrepancies"][0]["actual"].clone()), (json!(700), json!(701)));
}
