//! Races: the database, not luck, decides who wins.

use std::collections::HashMap;

use futures::future::join_all;

use crate::helpers::{PASSWORD, Reply, spawn_app};

/// Counts replies by (status, problem code).
fn tally(replies: &[Reply]) -> HashMap<(u16, String), usize> {
    let mut counts = HashMap::new();
    for reply in replies {
        let code = if reply.status.is_success() { String::new() } else { reply.json()["code"].as_str().unwrap_or_default().to_owned() };
        *counts.entry((reply.status.as_u16(), code)).or_default() += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_parallel_registrations_of_one_email_make_exactly_one_account() {
    let app = spawn_app().await;
    let replies = join_all((0..50).map(|_| app.try_register("race@example.com", PASSWORD, "Racer"))).await;
    let counts = tally(&replies);
    assert_eq!(counts.get(&(201, String::new())), Some(&1), "{counts:?}");
    assert_eq!(counts.get(&(409, "email_taken".to_owned())), Some(&49), "{counts:?}");
    for reply in replies.iter().filter(|r| r.status == 409) {
        reply.problem(409, "email_taken");
    }
    let winner = replies.iter().find(|r| r.status == 201).expect("a winner").json();
    let tokens = app.login("race@example.com", PASSWORD).await;
    assert_eq!(tokens.user["id"], winner["user"]["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_registrations_of_different_emails_all_succeed() {
    let app = spawn_app().await;
    let emails: Vec<String> = (0..30).map(|i| format!("user{i}@example.com")).collect();
    let replies = join_all(emails.iter().map(|e| app.try_register(e, PASSWORD, "Parallel"))).await;
    let counts = tally(&replies);
    assert_eq!(counts.get(&(201, String::new())), Some(&30), "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_parallel_refreshes_of_one_token_succeed_exactly_once() {
    let app = spawn_app().await;
    let tokens = app.customer("ada@example.com").await;
    let other_session = app.login("ada@example.com", PASSWORD).await;
    let replies = join_all((0..20).map(|_| app.refresh(&tokens.refresh))).await;
    let counts = tally(&replies);
    assert_eq!(counts.get(&(200, String::new())), Some(&1), "{counts:?}");
    // Every loser presented a token another request had just spent: that is reuse.
    assert_eq!(counts.get(&(401, "token_reused".to_owned())), Some(&19), "{counts:?}");
    for reply in replies.iter().filter(|r| r.status != 200) {
        reply.problem(401, "token_reused");
    }
    // Reuse killed the whole session: the old access token, and the pair the winner got.
    let winner = crate::helpers::Tokens::from_reply(replies.into_iter().find(|r| r.status == 200).expect("a winner"));
    assert_eq!(winner.session_id(), tokens.session_id());
    app.me(&tokens.access).await.problem(401, "invalid_token");
    app.me(&winner.access).await.problem(401, "invalid_token");
    app.refresh(&winner.refresh).await.problem(401, "invalid_token");
    // Another session of the same user lives on.
    app.me(&other_session.access).await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_logins_open_distinct_sessions() {
    let app = spawn_app().await;
    app.customer("ada@example.com").await;
    let replies = join_all((0..10).map(|_| app.try_login("ada@example.com", PASSWORD))).await;
    let sessions: std::collections::HashSet<String> =
        replies.into_iter().map(|r| crate::helpers::Tokens::from_reply(r.expect(200)).session_id()).collect();
    assert_eq!(sessions.len(), 10);
}
