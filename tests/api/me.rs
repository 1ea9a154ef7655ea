//! `GET/PATCH/DELETE /v1/me`.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, assert_fresh_user, spawn_app};

fn address() -> Value {
    json!({ "line1": "12 St James's Square", "line2": null, "city": "London", "region": null, "postal_code": "SW1Y 4JH", "country": "GB" })
}

async fn patch_me(app: &TestApp, token: &str, body: Value) -> crate::helpers::Reply {
    app.patch_json_authed("/v1/me", token, &body).await
}

/// Asserts a 422 with at least one error on `field` or one of its sub-fields.
#[track_caller]
fn assert_error_under(reply: &crate::helpers::Reply, field: &str) {
    let body = reply.problem(422, "validation_failed");
    let errors = body["errors"].as_array().unwrap_or_else(|| panic!("errors in {body}"));
    assert!(
        errors
            .iter()
            .filter_map(|e| e["field"].as_str())
            .any(|f| f == field || f.starts_with(&format!("{field}.")) || f.starts_with(&format!("{field}["))),
        "an error under `{field}` in {body}"
    );
}

#[tokio::test]
async fn me_returns_the_callers_profile() {
    let app = spawn_app().await;
    let tokens = app.register("ada@example.com", PASSWORD, "Ada").await;
    app.customer("bob@example.com").await;
    let me = app.me(&tokens.access).await.expect(200).json();
    assert_fresh_user(&me, "ada@example.com", "Ada");
    assert_eq!(me["id"], tokens.user_id());
}

#[tokio::test]
async fn me_needs_a_valid_token() {
    let app = spawn_app().await;
    app.customer("ada@example.com").await;
    app.get("/v1/me").await.problem(401, "unauthenticated");
    app.me("not-a-jwt").await.problem(401, "invalid_token");
    app.me("a.b.c").await.problem(401, "invalid_token");
    let basic = app.send(app.request(Method::GET, "/v1/me").header("authorization", "Basic YWRhOnB3")).await;
    basic.problem(401, "invalid_token");
}

#[tokio::test]
async fn me_has_a_strong_etag_and_answers_304_when_unchanged() {
    let app = spawn_app().await;
    let tokens = app.customer("ada@example.com").await;
    let first = app.me(&tokens.access).await.expect(200);
    let etag = first.header("etag").expect("an ETag").to_owned();
    assert!(etag.starts_with('"') && !etag.starts_with("W/"), "a strong ETag: {etag}");

    let conditional = |etag: String| app.send(app.request(Method::GET, "/v1/me").bearer_auth(&tokens.access).header("if-none-match", etag));
    let not_modified = conditional(etag.clone()).await.expect(304);
    assert!(not_modified.text.is_empty(), "304 has no body");
    assert_eq!(not_modified.header("etag"), Some(etag.as_str()));

    patch_me(&app, &tokens.access, json!({ "name": "Ada L." })).await.expect(200);
    let changed = conditional(etag.clone()).await.expect(200);
    assert_ne!(changed.header("etag"), Some(etag.as_str()), "a change makes a new ETag");
    assert_eq!(changed.json()["name"], "Ada L.");
}

#[tokio::test]
async fn patching_me_updates_the_profile() {
    let app = spawn_app().await;
    let tokens = app.customer("ada@example.com").await;
    let body = json!({ "name": "Ada Lovelace", "country": "GB", "phone": "+442079460000", "address": address() });
    let updated = patch_me(&app, &tokens.access, body).await.expect(200).json();
    assert_eq!(updated["name"], "Ada Lovelace");
    assert_eq!(updated["country"], "GB");
    assert_eq!(updated["phone"], "+442079460000");
    assert_eq!(updated["address"]["line1"], "12 St James's Square");
    assert_eq!(updated["address"]["city"], "London");
    assert_eq!(updated["address"]["country"], "GB");
    assert_eq!(updated["address"]["postal_code"], "SW1Y 4JH");
    assert_eq!(updated["email"], "ada@example.com");
    assert_eq!(app.me(&tokens.access).await.expect(200).json(), updated, "GET shows what PATCH returned");
}

#[tokio::test]
async fn absent_fields_are_kept_and_null_clears_them() {
    let app = spawn_app().await;
    let tokens = app.customer("ada@example.com").await;
    patch_me(&app, &tokens.access, json!({ "country": "FR", "phone": "+33142685300", "address": address() })).await.expect(200);
    let kept = patch_me(&app, &tokens.access, json!({ "name": "Ada" })).await.expect(200).json();
    assert_eq!((kept["country"].as_str(), kept["phone"].as_str()), (Some("FR"), Some("+33142685300")));
    assert!(kept["address"].is_object());
    let unchanged = patch_me(&app, &tokens.access, json!({})).await.expect(200).json();
    assert_eq!(unchanged, kept);
    let cleared = patch_me(&app, &tokens.access, json!({ "country": null, "phone": null, "address": null })).await.expect(200).json();
    for key in ["country", "phone", "address"] {
        assert!(cleared[key].is_null(), "{key} cleared in {cleared}");
    }
    assert_eq!(cleared["name"], "Ada");
}

#[tokio::test]
async fn a_country_must_be_an_iso_3166_alpha_2_code() {
    let app = spawn_app().await;
    let tokens = app.customer("ada@example.com").await;
    for country in [json!("XX"), json!("usa"), json!("USA"), json!("us"), json!(""), json!(840)] {
        patch_me(&app, &tokens.access, json!({ "country": country })).await.field_error("country");
    }
    assert!(app.me(&tokens.access).await.json()["country"].is_null(), "nothing was stored");
    for country in ["US", "DE", "JP"] {
        patch_me(&app, &tokens.access, json!({ "country": country })).await.expect(200);
    }
}

#[tokio::test]
async fn a_phone_is_taken_as_typed_and_stored_in_e164() {
    let app = spawn_app().await;
    let tokens = app.customer("ada@example.com").await;
    for (typed, e164) in [
        ("+49 30 1234567", "+49301234567"),
        ("+1 (415) 555-0100", "+14155550100"),
        ("+1.415.555.0199", "+14155550199"),
        ("0044 20 7946-0958", "+442079460958"),
        ("+44 (0)20 7946 0959", "+442079460959"),
    ] {
        let updated = patch_me(&app, &tokens.access, json!({ "phone": typed })).await.expect(200).json();
        assert_eq!(updated["phone"], e164, "{typed}");
        assert_eq!(app.me(&tokens.access).await.json()["phone"], e164, "{typed} as stored");
    }
    for phone in [
        json!("4155550100"),
        json!("030 1234567"),
        json!("+1415abc0100"),
        json!("+1 415 555 0100 ext 12"),
        json!("+123"),
        json!("+1234567890123456"),
        json!("+0 30 1234567"),
        json!(""),
        json!(14155550100_u64),
    ] {
        patch_me(&app, &tokens.access, json!({ "phone": phone })).await.field_error("phone");
    }
    assert_eq!(app.me(&tokens.access).await.json()["phone"], "+442079460959", "refused numbers change nothing");
}

#[tokio::test]
async fn an_address_needs_line1_city_and_a_valid_country() {
    let app = spawn_app().await;
    let tokens = app.customer("ada@example.com").await;
    let with = |key: &str, value: Value| {
        let mut a = address();
        a[key] = value;
        a
    };
    let without = |key: &str| {
        let mut a = address();
        a.as_object_mut().expect("an object").remove(key);
        a
    };
    for bad in [
        without("line1"),
        without("city"),
        without("country"),
        with("line1", json!("")),
        with("country", json!("XX")),
        with("zip", json!("1")),
        json!("London"),
    ] {
        assert_error_under(&patch_me(&app, &tokens.access, json!({ "address": bad })).await, "address");
    }
    let minimal = json!({ "line1": "1 Main St", "city": "Springfield", "country": "US" });
    let me = patch_me(&app, &tokens.access, json!({ "address": minimal })).await.expect(200).json();
    assert_eq!(me["address"]["city"], "Springfield");
}

#[tokio::test]
async fn a_name_must_have_1_to_100_characters() {
    let app = spawn_app().await;
    let tokens = app.customer("ada@example.com").await;
    for name in [json!(""), json!("  "), json!("n".repeat(101)), json!(7)] {
        patch_me(&app, &tokens.access, json!({ "name": name })).await.field_error("name");
    }
}

#[tokio::test]
async fn email_and_roles_cannot_be_patched() {
    let app = spawn_app().await;
    let tokens = app.customer("ada@example.com").await;
    patch_me(&app, &tokens.access, json!({ "roles": ["admin"] })).await.field_error("roles");
    patch_me(&app, &tokens.access, json!({ "email": "other@example.com" })).await.field_error("email");
    let me = app.me(&tokens.access).await.json();
    assert_eq!(me["roles"], json!(["customer"]));
    assert_eq!(me["email"], "ada@example.com");
    app.get_authed("/v1/admin/users", &tokens.access).await.problem(403, "forbidden");
}

#[tokio::test]
async fn an_invalid_patch_changes_nothing() {
    let app = spawn_app().await;
    let tokens = app.customer("ada@example.com").await;
    patch_me(&app, &tokens.access, json!({ "name": "New Name", "country": "XX" })).await.field_error("country");
    assert_eq!(app.me(&tokens.access).await.json()["name"], "Test Customer");
}

#[tokio::test]
async fn phone_and_address_are_not_stored_in_clear() {
    let app = spawn_app().await;
    let tokens = app.customer("ada@example.com").await;
    let address = json!({ "line1": "221B Baker Street Flat Unique", "city": "Londinium-Unique", "country": "GB" });
    patch_me(&app, &tokens.access, json!({ "name": "Ada Stored", "phone": "+447700900123", "address": address })).await.expect(200);
    let stored = app.stored_text().await;
    assert!(stored.contains("Ada Stored"), "the dump sees the database (sanity check)");
    for secret in ["447700900123", "221B Baker Street Flat Unique", "Londinium-Unique"] {
        assert!(!stored.contains(secret), "{secret} is stored in clear");
    }
}

#[tokio::test]
async fn deleting_me_needs_the_password() {
    let app = spawn_app().await;
    let tokens = app.customer("ada@example.com").await;
    app.delete_json_authed("/v1/me", &tokens.access, &json!({ "password": "not the password" })).await.problem(401, "invalid_credentials");
    app.delete_json_authed("/v1/me", &tokens.access, &json!({})).await.field_error("password");
    app.delete_json_authed("/v1/me", &tokens.access, &json!({ "password": 12345678 })).await.field_error("password");
    // No body at all: refused as a missing JSON body (400, 415 or 422 are all fair).
    let no_body = app.delete_authed("/v1/me", &tokens.access).await;
    let status = no_body.status.as_u16();
    assert!([400, 415, 422].contains(&status), "a missing body is refused: {status} {}", no_body.text);
    let code = match status {
        400 => "malformed_json",
        415 => "unsupported_media_type",
        _ => "validation_failed",
    };
    no_body.problem(status, code);
    app.call(Method::DELETE, "/v1/me", None, Some(&json!({ "password": PASSWORD }))).await.problem(401, "unauthenticated");
    app.me(&tokens.access).await.expect(200);
    app.login("ada@example.com", PASSWORD).await;
}

#[tokio::test]
async fn after_deleting_me_login_fails_and_the_email_can_register_again() {
    let app = spawn_app().await;
    let tokens = app.customer("ada@example.com").await;
    let other_session = app.login("ada@example.com", PASSWORD).await;
    patch_me(&app, &tokens.access, json!({ "phone": "+14155550100", "country": "US" })).await.expect(200);

    let reply = app.delete_json_authed("/v1/me", &tokens.access, &json!({ "password": PASSWORD })).await.expect(204);
    assert!(reply.text.is_empty());

    app.me(&tokens.access).await.problem(401, "invalid_token");
    app.me(&other_session.access).await.problem(401, "invalid_token");
    app.refresh(&other_session.refresh).await.problem(401, "invalid_token");
    app.try_login("ada@example.com", PASSWORD).await.problem(401, "invalid_credentials");

    let again = app.customer("ada@example.com").await;
    assert_ne!(again.user_id(), tokens.user_id());
    let me = app.me(&again.access).await.expect(200).json();
    assert!(me["phone"].is_null() && me["country"].is_null(), "the new account starts empty: {me}");
}

#[tokio::test]
async fn a_deleted_account_keeps_no_personal_data() {
    let app = spawn_app().await;
    let admin = app.create_admin("root@example.com", PASSWORD).await;
    let tokens = app.register("ada_gone@example.com", PASSWORD, "Ada Gonewithwind").await;
    // An address that differs only where the first has `_` (a LIKE wildcard).
    app.register("adaxgone@example.com", PASSWORD, "Someone Else").await;
    let mail_to = |to: &'static str| {
        let (app, admin) = (&app, &admin);
        async move {
            let jobs = app.get_authed("/v1/admin/jobs?kind=mail.send&limit=100", &admin.access).await.expect(200).json();
            jobs["data"].as_array().unwrap().iter().filter(|j| j["payload"].to_string().contains(to)).count()
        }
    };
    // The control: before the erasure, the rows show the email and the name (and the
    // verification mail's job its address).
    let before = app.stored_rows().await;
    for clear in ["ada_gone@example.com", "Ada Gonewithwind"] {
        assert!(before.contains(clear), "{clear} is stored before the erasure (sanity check)");
    }
    assert_eq!(mail_to("ada_gone@example.com").await, 1);

    app.delete_json_authed("/v1/me", &tokens.access, &json!({ "password": PASSWORD })).await.expect(204);
    // Every row of every table (a database file may hold overwritten rows until its pages are
    // reused; what counts is what the database still holds as data).
    let after = app.stored_rows().await;
    for personal in ["ada_gone@example.com", "ada_gone", "Ada Gonewithwind", "Gonewithwind"] {
        assert!(!after.contains(personal), "{personal} is still stored after the erasure");
    }
    assert_eq!(mail_to("adaxgone@example.com").await, 1, "another account's mail is kept");
    assert!(after.contains("Someone Else"));
    let users = app.all_pages("/v1/admin/users", &admin.access, &[], 100).await.concat();
    let listed = serde_json::to_string(&users).expect("JSON");
    assert!(!listed.contains("ada_gone") && !listed.contains("Gonewithwind"), "personal data erased: {listed}");
    assert!(users.iter().any(|u| u["id"] == tokens.user_id() && u["disabled"] == true), "the account row stays, disabled: {listed}");
}
