//! `GET /v1/admin/users` and `PATCH /v1/admin/users/{id}`: roles, filters, pagination.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, Tokens, spawn_app};

const ADMIN: &str = "root@example.com";

fn user_path(id: &str) -> String {
    format!("/v1/admin/users/{id}")
}

async fn patch_user(app: &TestApp, token: &str, id: &str, body: Value) -> crate::helpers::Reply {
    app.patch_json_authed(&user_path(id), token, &body).await
}

/// Registers customers concurrently; returns their ids.
async fn register_many(app: &TestApp, emails: &[String]) -> Vec<String> {
    futures::future::join_all(emails.iter().map(|e| app.customer(e))).await.iter().map(Tokens::user_id).collect()
}

fn ids(users: &[Value]) -> Vec<String> {
    users.iter().map(|u| u["id"].as_str().expect("id").to_owned()).collect()
}

fn emails_of(users: &[Value]) -> HashSet<String> {
    users.iter().map(|u| u["email"].as_str().expect("email").to_owned()).collect()
}

/// Every user matching `filters`, walking pages of `limit`.
async fn list_all(app: &TestApp, token: &str, filters: &[(&str, &str)], limit: usize) -> Vec<Value> {
    app.all_pages("/v1/admin/users", token, filters, limit).await.concat()
}

#[tokio::test]
async fn customers_are_forbidden_from_the_back_office() {
    let app = spawn_app().await;
    let ada = app.customer("ada@example.com").await;
    let bob = app.customer("bob@example.com").await;
    app.get_authed("/v1/admin/users", &ada.access).await.problem(403, "forbidden");
    patch_user(&app, &ada.access, &bob.user_id(), json!({ "disabled": true })).await.problem(403, "forbidden");
    patch_user(&app, &ada.access, &ada.user_id(), json!({ "roles": ["admin"] })).await.problem(403, "forbidden");
    app.me(&bob.access).await.expect(200);
    assert_eq!(app.me(&ada.access).await.json()["roles"], json!(["customer"]));
}

#[tokio::test]
async fn the_back_office_needs_a_token() {
    let app = spawn_app().await;
    app.get("/v1/admin/users").await.problem(401, "unauthenticated");
    app.call(reqwest::Method::PATCH, &user_path("usr_x"), None, Some(&json!({ "disabled": true }))).await.problem(401, "unauthenticated");
}

#[tokio::test]
async fn support_may_list_users_but_not_change_them() {
    let app = spawn_app().await;
    let support = app.create_staff("help@example.com", PASSWORD, "support").await;
    let ada = app.customer("ada@example.com").await;
    let users = list_all(&app, &support.access, &[], 20).await;
    assert!(emails_of(&users).contains("ada@example.com"));
    patch_user(&app, &support.access, &ada.user_id(), json!({ "disabled": true })).await.problem(403, "forbidden");
    patch_user(&app, &support.access, &support.user_id(), json!({ "roles": ["support", "admin"] })).await.problem(403, "forbidden");
    app.me(&ada.access).await.expect(200);
    app.me(&support.access).await.expect(200);
}

#[tokio::test]
async fn admins_see_users_in_the_back_office_shape() {
    let app = spawn_app().await;
    let admin = app.create_admin(ADMIN, PASSWORD).await;
    let ada = app.register("ada@example.com", PASSWORD, "Ada").await;
    let reply = app.get_authed("/v1/admin/users", &admin.access).await.expect(200);
    assert!(!reply.text.contains("argon2") && !reply.text.contains("password"), "no secrets in {}", reply.text);
    let page = reply.json();
    assert!(page["next_cursor"].is_null());
    let users = page["data"].as_array().expect("data");
    let listed = users.iter().find(|u| u["id"] == ada.user_id().as_str()).expect("ada is listed");
    let mut keys: Vec<&str> = listed.as_object().expect("an object").keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["created_at", "disabled", "email", "email_verified", "id", "name", "roles"]);
    assert_eq!(listed["email"], "ada@example.com");
    assert_eq!(listed["name"], "Ada");
    assert_eq!(listed["roles"], json!(["customer"]));
    assert_eq!(listed["disabled"], false);
    let root = users.iter().find(|u| u["email"] == ADMIN).expect("the admin is listed");
    let roles: HashSet<&str> = root["roles"].as_array().expect("roles").iter().filter_map(Value::as_str).collect();
    assert_eq!(roles, HashSet::from(["admin", "customer"]));
}

#[tokio::test]
async fn users_are_listed_page_by_page_without_duplicates_or_gaps() {
    let app = spawn_app().await;
    let admin = app.create_admin(ADMIN, PASSWORD).await;
    let emails: Vec<String> = (0..25).map(|i| format!("user{i:02}@example.com")).collect();
    let mut expected: HashSet<String> = register_many(&app, &emails).await.into_iter().collect();
    expected.insert(admin.user_id());

    let pages = app.all_pages("/v1/admin/users", &admin.access, &[], 10).await;
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), vec![10, 10, 6]);
    let seen = ids(&pages.concat());
    assert_eq!(seen.len(), 26, "no user twice");
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), expected);
}

#[tokio::test]
async fn a_cursor_stays_valid_while_users_are_added() {
    let app = spawn_app().await;
    let admin = app.create_admin(ADMIN, PASSWORD).await;
    let before: Vec<String> = (0..12).map(|i| format!("early{i:02}@example.com")).collect();
    let mut expected: HashSet<String> = register_many(&app, &before).await.into_iter().collect();
    expected.insert(admin.user_id());

    let first = app.get_query_authed("/v1/admin/users", &admin.access, &[("limit", "5")]).await.expect(200).json();
    let mut seen = ids(first["data"].as_array().expect("data"));
    let mut next = Some(first["next_cursor"].as_str().expect("a next page").to_owned());

    let late: Vec<String> = (0..4).map(|i| format!("late{i}@example.com")).collect();
    register_many(&app, &late).await;

    while let Some(cursor) = next {
        let page = app.get_query_authed("/v1/admin/users", &admin.access, &[("limit", "5"), ("cursor", &cursor)]).await.expect(200).json();
        seen.extend(ids(page["data"].as_array().expect("data")));
        next = page["next_cursor"].as_str().map(str::to_owned);
        assert!(seen.len() < 100, "pagination ends");
    }
    let unique: HashSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "no user twice: {seen:?}");
    assert!(expected.is_subset(&unique), "every user present before the walk is seen");
}

#[tokio::test]
async fn email_prefix_filters_users() {
    let app = spawn_app().await;
    let admin = app.create_admin(ADMIN, PASSWORD).await;
    let emails: Vec<String> =
        ["alpha-1", "alpha-2", "alpha-3", "alphabet", "beta-1", "beta-2"].iter().map(|l| format!("{l}@example.com")).collect();
    register_many(&app, &emails).await;

    let alpha = emails_of(&list_all(&app, &admin.access, &[("email_prefix", "alpha-")], 2).await);
    assert_eq!(alpha, ["alpha-1", "alpha-2", "alpha-3"].iter().map(|l| format!("{l}@example.com")).collect::<HashSet<_>>());
    assert_eq!(list_all(&app, &admin.access, &[("email_prefix", "alpha")], 10).await.len(), 4);
    assert_eq!(
        emails_of(&list_all(&app, &admin.access, &[("email_prefix", "beta-2@")], 10).await),
        HashSet::from(["beta-2@example.com".to_owned()])
    );
    for nothing in ["zzz", "example.com", "%", "_", "alpha%", "a_pha"] {
        assert!(list_all(&app, &admin.access, &[("email_prefix", nothing)], 10).await.is_empty(), "prefix {nothing:?} matches nothing");
    }
}

#[tokio::test]
async fn role_filters_users() {
    let app = spawn_app().await;
    let admin = app.create_admin(ADMIN, PASSWORD).await;
    app.create_staff("help1@example.com", PASSWORD, "support").await;
    app.create_staff("help2@example.com", PASSWORD, "support").await;
    register_many(&app, &["ada@example.com".into(), "bob@example.com".into()]).await;

    let support = emails_of(&list_all(&app, &admin.access, &[("role", "support")], 10).await);
    assert_eq!(support, HashSet::from(["help1@example.com".to_owned(), "help2@example.com".to_owned()]));
    let admins = emails_of(&list_all(&app, &admin.access, &[("role", "admin")], 10).await);
    assert_eq!(admins, HashSet::from([ADMIN.to_owned()]));
    assert_eq!(list_all(&app, &admin.access, &[("role", "customer")], 10).await.len(), 5, "everyone is a customer");
    let both = emails_of(&list_all(&app, &admin.access, &[("role", "support"), ("email_prefix", "help2")], 10).await);
    assert_eq!(both, HashSet::from(["help2@example.com".to_owned()]));
    for bad in ["owner", "ADMIN"] {
        app.get_query_authed("/v1/admin/users", &admin.access, &[("role", bad)]).await.field_error("role");
    }
}

#[tokio::test]
async fn bad_paging_parameters_are_a_422() {
    let app = spawn_app().await;
    let admin = app.create_admin(ADMIN, PASSWORD).await;
    for limit in ["0", "101", "abc"] {
        app.get_query_authed("/v1/admin/users", &admin.access, &[("limit", limit)]).await.field_error("limit");
    }
    for cursor in ["%%%", "not a cursor", "bm90IGpzb24"] {
        app.get_query_authed("/v1/admin/users", &admin.access, &[("cursor", cursor)]).await.field_error("cursor");
    }
}

#[tokio::test]
async fn a_promotion_or_demotion_takes_effect_at_once() {
    let app = spawn_app().await;
    let admin = app.create_admin(ADMIN, PASSWORD).await;
    let ada = app.customer("ada@example.com").await;
    app.get_authed("/v1/admin/users", &ada.access).await.problem(403, "forbidden");

    let promoted = patch_user(&app, &admin.access, &ada.user_id(), json!({ "roles": ["support"] })).await.expect(200).json();
    let roles: HashSet<&str> = promoted["roles"].as_array().expect("roles").iter().filter_map(Value::as_str).collect();
    assert_eq!(roles, HashSet::from(["customer", "support"]));
    // The token issued before the promotion now opens the back office.
    app.get_authed("/v1/admin/users", &ada.access).await.expect(200);

    let demoted = patch_user(&app, &admin.access, &ada.user_id(), json!({ "roles": [] })).await.expect(200).json();
    assert_eq!(demoted["roles"], json!(["customer"]));
    app.get_authed("/v1/admin/users", &ada.access).await.problem(403, "forbidden");
}

#[tokio::test]
async fn roles_are_listed_once_in_a_fixed_order_and_always_include_customer() {
    let app = spawn_app().await;
    let admin = app.create_admin(ADMIN, PASSWORD).await;
    let ada = app.customer("ada@example.com").await;
    let one = patch_user(&app, &admin.access, &ada.user_id(), json!({ "roles": ["admin", "support", "support"] })).await.expect(200).json();
    let other =
        patch_user(&app, &admin.access, &ada.user_id(), json!({ "roles": ["support", "customer", "admin"] })).await.expect(200).json();
    assert_eq!(one["roles"], other["roles"], "the same set is listed the same way");
    let roles: Vec<&str> = one["roles"].as_array().expect("roles").iter().filter_map(Value::as_str).collect();
    assert_eq!(roles.len(), 3, "no duplicates: {roles:?}");
    assert_eq!(roles.iter().copied().collect::<HashSet<_>>(), HashSet::from(["admin", "customer", "support"]));
    assert_eq!(app.me(&ada.access).await.json()["roles"], one["roles"], "/v1/me agrees");
}

#[tokio::test]
async fn disabling_a_user_revokes_their_sessions_at_once() {
    let app = spawn_app().await;
    let admin = app.create_admin(ADMIN, PASSWORD).await;
    let laptop = app.customer("ada@example.com").await;
    let phone = app.login("ada@example.com", PASSWORD).await;
    // Both in use: an instance that remembers live sessions has seen them.
    for tokens in [&laptop, &phone] {
        app.me(&tokens.access).await.expect(200);
    }

    let disabled = patch_user(&app, &admin.access, &laptop.user_id(), json!({ "disabled": true })).await.expect(200).json();
    assert_eq!(disabled["disabled"], true);
    for tokens in [&laptop, &phone] {
        app.me(&tokens.access).await.problem(401, "invalid_token");
        app.refresh(&tokens.refresh).await.problem(401, "invalid_token");
    }
    app.try_login("ada@example.com", PASSWORD).await.problem(403, "forbidden");

    let enabled = patch_user(&app, &admin.access, &laptop.user_id(), json!({ "disabled": false })).await.expect(200).json();
    assert_eq!(enabled["disabled"], false);
    app.me(&laptop.access).await.problem(401, "invalid_token");
    let again = app.login("ada@example.com", PASSWORD).await;
    app.me(&again.access).await.expect(200);
}

#[tokio::test]
async fn an_admin_cannot_demote_or_disable_themselves() {
    let app = spawn_app().await;
    let admin = app.create_admin(ADMIN, PASSWORD).await;
    patch_user(&app, &admin.access, &admin.user_id(), json!({ "roles": ["support"] })).await.problem(409, "conflict");
    patch_user(&app, &admin.access, &admin.user_id(), json!({ "disabled": true })).await.problem(409, "conflict");
    app.get_authed("/v1/admin/users", &admin.access).await.expect(200);
    let me = app.me(&admin.access).await.json();
    assert!(me["roles"].as_array().expect("roles").contains(&json!("admin")));
}

#[tokio::test]
async fn bad_changes_are_refused() {
    let app = spawn_app().await;
    let admin = app.create_admin(ADMIN, PASSWORD).await;
    let ada = app.customer("ada@example.com").await;
    let id = ada.user_id();
    for roles in [json!(["owner"]), json!(["admin", "root"]), json!([1])] {
        let reply = patch_user(&app, &admin.access, &id, json!({ "roles": roles })).await;
        let body = reply.problem(422, "validation_failed");
        assert!(
            body["errors"].as_array().expect("errors").iter().any(|e| e["field"].as_str().is_some_and(|f| f.starts_with("roles"))),
            "{body}"
        );
    }
    patch_user(&app, &admin.access, &id, json!({ "roles": "admin" })).await.field_error("roles");
    patch_user(&app, &admin.access, &id, json!({ "disabled": "yes" })).await.field_error("disabled");
    patch_user(&app, &admin.access, &id, json!({ "email": "x@example.com" })).await.field_error("email");
    assert_eq!(app.me(&ada.access).await.expect(200).json()["roles"], json!(["customer"]), "nothing changed");
}

#[tokio::test]
async fn changing_an_unknown_user_is_a_404() {
    let app = spawn_app().await;
    let admin = app.create_admin(ADMIN, PASSWORD).await;
    patch_user(&app, &admin.access, "usr_0000000000000000", json!({ "disabled": true })).await.problem(404, "not_found");
    patch_user(&app, &admin.access, "nonsense", json!({ "roles": ["support"] })).await.problem(404, "not_found");
}
