//! The scale-out suite: the same binary as three `keel serve` and one `keel worker` behind HAProxy
//! on PostgreSQL, Redis and NATS JetStream (`deploy/local-cluster`), tried from outside as clients
//! would: sessions, shared rate limits, coherent caches, jobs run once, events across instances,
//! an instance killed during a burst of checkouts, and Redis and NATS outages.
//!
//! It needs PostgreSQL on 127.0.0.1:5432, `redis-server`, `nats-server` and HAProxy (installed by
//! the script when missing), so plain `cargo test` leaves it out; `.ci/run` runs it:
//! `CLUSTER_DIR=… cargo test --test cluster -- --ignored --test-threads=1`, then
//! `deploy/local-cluster down`. The tests share one cluster and run one at a time.

#[path = "../common/cluster_cli.rs"]
mod cluster_cli;
#[path = "../common/poll.rs"]
mod poll;
#[path = "../common/smtp.rs"]
mod smtp;

mod chaos;
mod fixture;

use reqwest::Method;
use serde_json::json;

use fixture::{ACCOUNT_LOGIN_BUDGET, Client, PASSWORD, WAIT_SECS, cluster, usd};
use poll::eventually;

#[tokio::test]
#[ignore = "needs the local cluster: run by .ci/run"]
async fn a_session_made_through_one_instance_works_on_all_and_a_logout_is_refused_everywhere_at_once() {
    let c = cluster();
    let [one, two, three] = [0, 1, 2].map(|i| Client::new(&c.instances[i]));
    let ada = one.register("session@example.com").await;
    for instance in [&one, &two, &three] {
        instance.get("/v1/me", Some(&ada.access)).await.expect(200);
    }
    two.post("/v1/auth/logout", None, &json!({ "refresh_token": ada.refresh })).await.expect(204);
    for instance in [&three, &one, &two] {
        instance.get("/v1/me", Some(&ada.access)).await.problem(401, "invalid_token");
    }
}

#[tokio::test]
#[ignore = "needs the local cluster: run by .ci/run"]
async fn a_per_account_sign_in_limit_holds_whichever_instance_the_attempts_hit() {
    let c = cluster();
    let instances: Vec<Client> = c.instances.iter().map(|u| Client::new(u)).collect();
    instances[0].register("limited@example.com").await;
    let mut refused_as_wrong = 0;
    let mut limited = 0;
    for attempt in 0..3 * ACCOUNT_LOGIN_BUDGET {
        let instance = &instances[attempt % 3];
        // Each attempt from an address of its own, so only the per-account budget applies.
        let request = instance
            .request(Method::POST, "/v1/auth/login")
            .header("x-forwarded-for", format!("198.51.100.{}", attempt + 1))
            .json(&json!({ "email": "limited@example.com", "password": "not the password at all" }));
        let reply = instance.send(request).await;
        match reply.status.as_u16() {
            401 => refused_as_wrong += 1,
            429 => {
                assert!(reply.headers.contains_key("retry-after"));
                limited += 1;
            }
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    // One budget for the cluster (a refill of one during the run at most), not one per instance.
    assert!((ACCOUNT_LOGIN_BUDGET..=ACCOUNT_LOGIN_BUDGET + 1).contains(&refused_as_wrong), "{refused_as_wrong} attempts were judged");
    assert_eq!(limited, 3 * ACCOUNT_LOGIN_BUDGET - refused_as_wrong);
}

#[tokio::test]
#[ignore = "needs the local cluster: run by .ci/run"]
async fn a_price_change_through_one_instance_is_what_every_instance_serves_next_and_rule_changes_follow_within_two_seconds() {
    let c = cluster();
    let instances: Vec<Client> = c.instances.iter().map(|u| Client::new(u)).collect();
    let admin = c.admin("prices@example.com").await;
    let id = instances[0].product(&admin, "COHERENT-1", 1000, 10).await;
    let product = format!("/v1/products/{id}");
    let quote = format!("/v1/products/{id}/quote?quantity=1&country=DE");
    // Every instance has the product and its quote cached.
    for instance in &instances {
        assert_eq!(instance.get(&product, None).await.expect(200)["price"], usd(1000));
        assert_eq!(instance.get(&quote, None).await.expect(200)["total"], usd(1000));
    }

    let path = format!("/v1/admin/products/{id}");
    instances[1].call(Method::PATCH, &path, Some(&admin.access), Some(&json!({ "price": usd(1500) }))).await.expect(200);
    for instance in &instances {
        assert_eq!(instance.get(&product, None).await.expect(200)["price"], usd(1500), "{} serves the new price", instance.base);
        assert_eq!(instance.get(&quote, None).await.expect(200)["unit_price"], usd(1500), "{} quotes the new price", instance.base);
    }

    let rule = json!({ "name": "DE surcharge", "kind": "country", "priority": 1,
        "conditions": { "countries": ["DE"] }, "effect": { "percent_bps": 1000 } });
    instances[2].post("/v1/admin/pricing/rules", Some(&admin.access), &rule).await.expect(201);
    let changed = tokio::time::Instant::now();
    for instance in &instances {
        eventually(WAIT_SECS, "the rule on every instance", || async {
            (instance.get(&quote, None).await.expect(200)["total"] == usd(1650)).then_some(())
        })
        .await;
    }
    let took = changed.elapsed();
    assert!(took < std::time::Duration::from_secs(2), "the rule reached every instance after {took:?}");
}

#[tokio::test]
#[ignore = "needs the local cluster: run by .ci/run"]
async fn jobs_run_exactly_once_across_serve_and_worker_processes() {
    let c = cluster();
    let balancer = Client::new(&c.balancer);
    let admin = c.admin("jobs@example.com").await;
    let emails: Vec<String> = (0..30).map(|i| format!("once-{i}@example.com")).collect();
    for email in &emails {
        balancer.register(email).await;
    }
    let sent_to = |email: &str| c.mail().iter().filter(|m| m.contains(&format!("To: {email}"))).count();
    eventually(WAIT_SECS, "a verification mail for every account", || async { emails.iter().all(|e| sent_to(e) >= 1).then_some(()) }).await;
    // The positive signal that nothing more is coming: no mail job is left to run.
    eventually(WAIT_SECS, "the mail queue to drain", || async {
        for state in ["queued", "running", "retrying", "scheduled"] {
            let jobs = balancer.get(&format!("/v1/admin/jobs?state={state}&kind=mail.send"), Some(&admin.access)).await.expect(200);
            if !jobs["data"].as_array().unwrap().is_empty() {
                return None;
            }
        }
        Some(())
    })
    .await;
    for email in &emails {
        assert_eq!(sent_to(email), 1, "{email} got one mail");
    }
}

#[tokio::test]
#[ignore = "needs the local cluster: run by .ci/run"]
async fn a_websocket_client_on_one_instance_hears_events_committed_through_another() {
    let c = cluster();
    let [one, two] = [0, 1].map(|i| Client::new(&c.instances[i]));
    let ada = one.register("listener@example.com").await;
    let mut ws = one.websocket(&ada).await;
    let change = json!({ "current_password": PASSWORD, "new_password": "a different passphrase" });
    two.post("/v1/auth/password/change", Some(&ada.access), &change).await.expect(204);
    assert_eq!(ws.next_json().await["type"], "notification.created");
    ws.close().await;
}

#[tokio::test]
#[ignore = "needs the local cluster: run by .ci/run"]
async fn with_redis_stopped_the_api_keeps_serving_and_readyz_says_degraded() {
    let c = cluster();
    let balancer = Client::new(&c.balancer);
    let one = Client::new(&c.instances[0]);
    balancer.register("no-redis@example.com").await;
    c.script_ok(&["pause", "redis"]);
    let ready = eventually(WAIT_SECS, "readyz to report Redis down", || async {
        let reply = one.get("/readyz", None).await;
        (reply.body["checks"]["redis"] != "ok").then_some(reply)
    })
    .await;
    assert_eq!((ready.status.as_u16(), ready.body["status"].as_str()), (503, Some("degraded")), "{}", ready.body);
    // Through the balancer: reads, sign-ins (rate limited per instance meanwhile) and writes.
    for _ in 0..6 {
        balancer.get("/v1/products", None).await.expect(200);
    }
    let signed_in = balancer
        .send(balancer.request(Method::POST, "/v1/auth/login").json(&json!({ "email": "no-redis@example.com", "password": PASSWORD })))
        .await;
    assert!(signed_in.headers.contains_key("ratelimit-limit"), "limits stay on");
    signed_in.expect(200);
    c.script_ok(&["resume", "redis"]);
    eventually(WAIT_SECS, "readyz to be ok again", || async { (one.get("/readyz", None).await.status == 200).then_some(()) }).await;
}

#[tokio::test]
#[ignore = "needs the local cluster: run by .ci/run"]
async fn with_nats_stopped_events_wait_in_the_outbox_and_all_arrive_when_it_returns() {
    let c = cluster();
    let [one, two] = [0, 1].map(|i| Client::new(&c.instances[i]));
    let ada = one.register("no-nats@example.com").await;
    let mut ws = one.websocket(&ada).await;
    c.script_ok(&["pause", "nats"]);
    eventually(WAIT_SECS, "readyz to report NATS down", || async {
        (two.get("/readyz", None).await.body["checks"]["nats"] != "ok").then_some(())
    })
    .await;
    let mut current = PASSWORD.to_owned();
    for n in 0..3 {
        let next = format!("passphrase during the outage {n}");
        two.post("/v1/auth/password/change", Some(&ada.access), &json!({ "current_password": current, "new_password": next }))
            .await
            .expect(204);
        current = next;
    }
    c.script_ok(&["resume", "nats"]);
    for _ in 0..3 {
        assert_eq!(ws.next_json().await["type"], "notification.created");
    }
    let listed = eventually(WAIT_SECS, "three notifications", || async {
        let list = one.get("/v1/notifications", Some(&ada.access)).await.expect(200);
        (list["data"].as_array().unwrap().len() >= 3).then_some(list)
    })
    .await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 3, "each event once");
    ws.close().await;
}
