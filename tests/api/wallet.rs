//! The wallet: top-ups through the sandbox provider, transfers, history, the ledger check, and
//! the bank test (concurrent transfers conserve money and never overdraw), also across SIGKILLs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, Reply, TestApp, Tokens, spawn_app, spawn_app_process_with, spawn_app_with};
use crate::support::eventually;

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

/// The bank tests' customers, each topped up with 1000.
const BANK: [&str; 4] = ["w0@example.com", "w1@example.com", "w2@example.com", "w3@example.com"];

async fn bank_wallets(app: &TestApp) -> Vec<Tokens> {
    let mut users = Vec::new();
    for email in BANK {
        let user = app.customer(email).await;
        top_up(app, &user, 1000, "tok_visa").await.expect(201);
        users.push(user);
    }
    users
}

#[tokio::test]
async fn the_bank_test_concurrent_transfers_conserve_money_and_never_overdraw() {
    // Hundreds of transfers from four customers at once: far beyond the money budget.
    let app = spawn_app_with(&[("rate_limit_money", "off")]).await;
    let users = bank_wallets(&app).await;
    let requests = (0..200).map(|i| {
        let (from, to) = (i % 4, (i * 7 + 1) % 4);
        let to = if to == from { (to + 1) % 4 } else { to };
        let amount = 50 + (i as i64 * 37) % 400;
        transfer(&app, &users[from], BANK[to], amount)
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
    assert_books(&app, &users, 4000).await;
}

/// What the bank test promises of the books: no wallet is negative, the wallets hold `total`
/// between them, and the ledger verifies. Returns the balances.
async fn assert_books(app: &TestApp, users: &[Tokens], total: i64) -> Vec<i64> {
    let mut balances = Vec::new();
    for user in users {
        let b = balance(app, user).await;
        assert!(b >= 0, "no wallet goes negative: {b}");
        balances.push(b);
    }
    assert_eq!(balances.iter().sum::<i64>(), total, "money is conserved: {balances:?}");
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let report = verify(app, &admin).await;
    assert_eq!(report["balanced"], true, "{report}");
    assert_eq!(report["discrepancies"], json!([]));
    balances
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

/// A transfer a bank-test client made, with the answer it finally got.
struct Sent {
    from: usize,
    to: usize,
    amount: i64,
    status: u16,
    body: String,
    /// Answered by a server started after the first kill.
    after_kill: bool,
}

/// Sends one transfer until it has an answer, as a careful client does: on a failed connection
/// it waits for the server to be back and sends the very same request (same key) again; a key
/// still held by the killed server (`409 idempotency_key_in_use`) is asked again after a pause.
async fn send_until_answered(
    client: &reqwest::Client,
    address: &mut tokio::sync::watch::Receiver<String>,
    who: &Tokens,
    key: &str,
    body: &Value,
    cut_off: &AtomicUsize,
) -> (u16, String, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        assert!(tokio::time::Instant::now() < deadline, "no answer for transfer {key}");
        let base = address.borrow_and_update().clone();
        let request = client.post(format!("{base}/v1/wallet/transfers")).bearer_auth(&who.access).header("Idempotency-Key", key).json(body);
        let answer = match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                response.text().await.map(|text| (status, text))
            }
            Err(e) => Err(e),
        };
        match answer {
            Ok((409, text)) if serde_json::from_str::<Value>(&text).is_ok_and(|b| b["code"] == "idempotency_key_in_use") => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Ok((status, text)) => return (status, text, base),
            Err(_) => {
                cut_off.fetch_add(1, Ordering::Relaxed);
                // The server is gone: wait for its successor (or try the same one again).
                let _ = tokio::time::timeout(Duration::from_secs(2), address.changed()).await;
            }
        }
    }
}

/// The bank test with `keel serve` SIGKILLed three times while transfers are in flight, each time
/// restarted on the same database; clients retry with the same key and go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_bank_test_with_the_server_killed_mid_run_acknowledges_each_transfer_once_and_conserves_money() {
    const CLIENTS: usize = 16;
    const PER_CLIENT: usize = 25;
    const KILLS: usize = 3;
    // A key the killed server held is taken over by the client's retry after this long.
    // Hundreds of transfers from a few customers: far beyond the money budget.
    let app = spawn_app_process_with(&[("idempotency_lease_secs", "2"), ("rate_limit_money", "off")]).await;
    let users = bank_wallets(&app).await;
    let first_address = app.address.clone();
    let (publish, address) = tokio::sync::watch::channel(app.address.clone());
    let (answered, in_flight, cut_off) = (AtomicUsize::new(0), AtomicUsize::new(0), AtomicUsize::new(0));

    let client = app.client.clone();
    let clients = (0..CLIENTS).map(|c| {
        let (client, mut address, users, answered, in_flight, cut_off) =
            (&client, address.clone(), &users, &answered, &in_flight, &cut_off);
        let first_address = &first_address;
        async move {
            let from = c % 4;
            let mut sent = Vec::new();
            for i in 0..PER_CLIENT {
                let to = (from + 1 + (c + i) % 3) % 4;
                let amount = 50 + ((c * PER_CLIENT + i) as i64 * 37) % 400;
                let body = json!({ "to_email": BANK[to], "amount": usd(amount) });
                let key = uuid::Uuid::new_v4().to_string();
                in_flight.fetch_add(1, Ordering::SeqCst);
                let (status, body, base) = send_until_answered(client, &mut address, &users[from], &key, &body, cut_off).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                answered.fetch_add(1, Ordering::SeqCst);
                sent.push(Sent { from, to, amount, status, body, after_kill: base != *first_address });
            }
            sent
        }
    });
    let killer = async {
        let mut app = app;
        let mut in_flight_at_kills = Vec::new();
        for round in 1..=KILLS {
            // All kills in the first half of the run: after each, clients still have work to send.
            let mark = round * CLIENTS * PER_CLIENT / (2 * KILLS);
            eventually(120, &format!("{mark} transfers answered"), || async { (answered.load(Ordering::SeqCst) >= mark).then_some(()) })
                .await;
            in_flight_at_kills.push(in_flight.load(Ordering::SeqCst));
            app.kill().await;
            app = app.restart().await;
            publish.send(app.address.clone()).expect("clients are listening");
        }
        (app, in_flight_at_kills)
    };
    let (sent, (app, in_flight_at_kills)) = tokio::join!(futures::future::join_all(clients), killer);
    let sent: Vec<Sent> = sent.into_iter().flatten().collect();

    assert!(in_flight_at_kills.iter().all(|n| *n > 0), "transfers were in flight at each kill: {in_flight_at_kills:?}");
    assert!(cut_off.load(Ordering::Relaxed) > 0, "some requests were cut off by a kill and sent again");
    let acknowledged: Vec<&Sent> = sent.iter().filter(|s| s.status == 201).collect();
    for s in &sent {
        match s.status {
            201 => {}
            402 => assert_eq!(serde_json::from_str::<Value>(&s.body).unwrap()["code"], "insufficient_funds", "{}", s.body),
            other => panic!("unexpected {other}: {}", s.body),
        }
    }
    assert!(acknowledged.iter().any(|s| !s.after_kill), "transfers acknowledged before the first kill");
    assert!(acknowledged.iter().any(|s| s.after_kill), "transfers acknowledged after it");

    // Each acknowledged transfer is in both histories exactly once, and no other transfer is.
    let mut expected: Vec<(usize, String, i64)> = Vec::new();
    let mut balances = vec![1000i64; 4];
    for s in &acknowledged {
        let id = serde_json::from_str::<Value>(&s.body).unwrap()["id"].as_str().expect("a transaction id").to_owned();
        expected.push((s.from, id.clone(), -s.amount));
        expected.push((s.to, id, s.amount));
        balances[s.from] -= s.amount;
        balances[s.to] += s.amount;
    }
    let mut found: Vec<(usize, String, i64)> = Vec::new();
    for (n, user) in users.iter().enumerate() {
        let history = app.all_pages("/v1/wallet/transactions", &user.access, &[], 100).await.concat();
        let transfers = history.iter().filter(|e| e["kind"] == "transfer");
        found.extend(transfers.map(|e| (n, e["id"].as_str().unwrap().to_owned(), e["amount"]["amount"].as_i64().unwrap())));
    }
    expected.sort();
    found.sort();
    assert_eq!(found.len(), expected.len(), "{} transfers in the histories, {} acknowledged", found.len() / 2, acknowledged.len());
    assert_eq!(found, expected);

    assert_eq!(assert_books(&app, &users, 4000).await, balances, "each wallet moved by exactly its acknowledged transfers");
    let out = app.keel(&["ledger", "verify"], "").await;
    assert!(out.status.success(), "keel ledger verify: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}
