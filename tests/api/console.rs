//! The admin console at `/admin`: embedded pages and assets, strict CSP, client-side routes.

use crate::helpers::spawn_app;

const CONSOLE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; \
                           base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `src`/`href` values in the page.
fn references(html: &str) -> Vec<String> {
    ["src=\"", "href=\""]
        .iter()
        .flat_map(|attr| html.split(attr).skip(1).map(|rest| rest.split('"').next().unwrap_or_default().to_owned()))
        .collect()
}

#[tokio::test]
async fn the_console_page_and_its_assets_are_served_same_origin_under_a_strict_csp() {
    let app = spawn_app().await;
    let page = app.get("/admin").await.expect(200);
    assert!(page.header("content-type").unwrap_or_default().starts_with("text/html"));
    assert_eq!(page.header("content-security-policy"), Some(CONSOLE_CSP));
    assert!(
        !page.text.contains("<style") && !page.text.contains(" style=") && !page.text.contains("<script>"),
        "nothing inline: {}",
        page.text
    );
    let refs = references(&page.text);
    for (asset, kind) in [("/admin/assets/app.js", "text/javascript"), ("/admin/assets/app.css", "text/css")] {
        assert!(refs.iter().any(|r| r == asset), "the page loads {asset}: {refs:?}");
        let reply = app.get(asset).await.expect(200);
        assert!(reply.header("content-type").unwrap_or_default().starts_with(kind), "{asset}");
        assert_eq!(reply.header("content-security-policy"), Some(CONSOLE_CSP), "{asset}");
        assert_eq!(reply.header("cache-control"), Some("no-cache"), "{asset}");
    }
    for reference in refs {
        assert!(reference.starts_with("/admin/") || reference.starts_with("data:"), "{reference}: same origin only");
    }
    let script = app.get("/admin/assets/app.js").await.text;
    // XML namespace names are identifiers, never fetched; any other absolute URL would be a request elsewhere.
    let elsewhere: Vec<&str> = script
        .match_indices("://")
        .map(|(i, _)| &script[i.saturating_sub(8)..(i + 30).min(script.len())])
        .filter(|s| !s.contains("://www.w3.org/"))
        .collect();
    assert!(elsewhere.is_empty(), "the console calls only its own origin: {elsewhere:?}");
}

#[tokio::test]
async fn client_side_routes_get_the_page_and_unknown_assets_do_not() {
    let app = spawn_app().await;
    let page = app.get("/admin").await.expect(200).text;
    for route in ["/admin/", "/admin/orders", "/admin/products/prd_1"] {
        let reply = app.get(route).await.expect(200);
        assert_eq!(reply.text, page, "{route}");
        assert_eq!(reply.header("content-security-policy"), Some(CONSOLE_CSP), "{route}");
    }
    app.get("/admin/assets/missing.js").await.problem(404, "not_found");
}

#[tokio::test]
async fn an_unchanged_asset_is_revalidated_with_its_etag() {
    let app = spawn_app().await;
    let first = app.get("/admin/assets/app.js").await.expect(200);
    let etag = first.header("etag").expect("an ETag").to_owned();
    let again = app.send(app.request(reqwest::Method::GET, "/admin/assets/app.js").header("if-none-match", &etag)).await.expect(304);
    assert!(again.text.is_empty());
    assert_eq!(again.header("etag"), Some(etag.as_str()));
}
