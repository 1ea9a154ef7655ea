//! ID tokens that fail a check end the sign-in with `#error=invalid_id_token` and sign nobody
//! in: another audience, another nonce, expired, signed with HS256.

use serde_json::json;

use super::{identities, sign_in, social_tokens, spawn};
use crate::fake_oidc::{CLIENT_ID, Person};

#[tokio::test]
async fn an_id_token_failing_a_check_signs_nobody_in() {
    let (app, fake) = spawn().await;
    type Tweak = fn(&mut Person);
    let cases: [(&str, Tweak); 5] = [
        ("another audience", |p| p.aud = Some(json!("someone-else"))),
        ("several audiences without azp", |p| p.aud = Some(json!([CLIENT_ID, "someone-else"]))),
        ("another nonce", |p| p.nonce = Some("not-the-nonce".into())),
        ("expired beyond the leeway", |p| p.expires_in = -120),
        ("HS256 with the client secret", |p| p.hs256 = true),
    ];
    for (case, tweak) in cases {
        let mut person = Person::new("victim", "victim@example.com", true);
        tweak(&mut person);
        assert_eq!(sign_in(&app, &fake, "corp", person).await, ("error".to_owned(), "invalid_id_token".to_owned()), "{case}");
    }
    assert!(app.texts("SELECT id FROM users").await.is_empty(), "no account was made");
    // The control: the same person with a good token signs in.
    let tokens = social_tokens(&app, &fake, "corp", Person::new("victim", "victim@example.com", true)).await;
    assert_eq!(identities(&app, &tokens.access).await.len(), 1);
}
