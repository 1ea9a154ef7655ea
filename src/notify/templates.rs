//! Mail templates: plain text and HTML for each message. Single-use tokens travel in a link
//! of the form `…?token=<token>` in both parts; a receipt lists what was paid.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Template {
    VerifyEmail,
    ResetPassword,
    /// Values: `name`, `order_id`, `total`, `items: [{name, quantity, line_total}]` (amounts as text).
    Receipt,
}

pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

fn value<'v>(values: &'v serde_json::Value, key: &str) -> anyhow::Result<&'v str> {
    values.get(key).and_then(|v| v.as_str()).ok_or_else(|| anyhow::anyhow!("template value `{key}` is missing"))
}

/// Escapes text for HTML element content and attribute values.
fn html_escape(s: &str) -> String {
    s.chars().fold(String::with_capacity(s.len()), |mut out, c| {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
        out
    })
}

impl Template {
    pub fn render(self, base_url: &str, values: &serde_json::Value) -> anyhow::Result<Rendered> {
        let name = value(values, "name")?;
        let (subject, path, intro, action, outro) = match self {
            Template::Receipt => return receipt(name, values),
            Template::VerifyEmail => (
                "Confirm your email address",
                "verify-email",
                "Please confirm that this is your email address.",
                "Confirm email",
                "If you did not create an account, you can ignore this message.",
            ),
            Template::ResetPassword => (
                "Reset your password",
                "reset-password",
                "Someone asked to reset the password of your account. The link works once, for 30 minutes.",
                "Choose a new password",
                "If it was not you, ignore this message: your password stays as it is.",
            ),
        };
        let token = value(values, "token")?;
        // Tokens are URL-safe base64, so they go into the query string as they are.
        let link = format!("{}/{path}?token={token}", base_url.trim_end_matches('/'));
        let text = format!("Hello {name},\n\n{intro}\n\n{action}: {link}\n\n{outro}\n");
        let html = format!(
            "<!doctype html><html><body><p>Hello {name},</p><p>{intro}</p><p><a href=\"{link}\">{action}</a></p><p>{outro}</p></body></html>",
            name = html_escape(name),
            link = html_escape(&link),
        );
        Ok(Rendered { subject: subject.to_owned(), text, html })
    }
}

/// What an order cost, line by line.
fn receipt(name: &str, values: &serde_json::Value) -> anyhow::Result<Rendered> {
    let (order, total) = (value(values, "order_id")?, value(values, "total")?);
    let items = values.get("items").and_then(|i| i.as_array()).ok_or_else(|| anyhow::anyhow!("template value `items` is missing"))?;
    let mut text = format!("Hello {name},\n\nThank you for your order {order}. It is paid and being prepared.\n\n");
    let mut rows = String::new();
    for item in items {
        let (item_name, line_total) = (value(item, "name")?, value(item, "line_total")?);
        let quantity = item.get("quantity").and_then(|q| q.as_i64()).ok_or_else(|| anyhow::anyhow!("an item without a quantity"))?;
        text.push_str(&format!("{quantity} x {item_name}: {line_total}\n"));
        rows.push_str(&format!("<tr><td>{quantity} x {}</td><td>{}</td></tr>", html_escape(item_name), html_escape(line_total)));
    }
    text.push_str(&format!("\nTotal: {total}\n"));
    let html = format!(
        "<!doctype html><html><body><p>Hello {name},</p><p>Thank you for your order {order}. It is paid and being prepared.</p>\
         <table>{rows}<tr><th>Total</th><th>{total}</th></tr></table></body></html>",
        name = html_escape(name),
        order = html_escape(order),
        total = html_escape(total),
    );
    Ok(Rendered { subject: format!("Receipt for your order {order}"), text, html })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_parts_carry_the_token_link_and_html_is_escaped() {
        let values = serde_json::json!({"name": "<Ada>", "token": "abc_DEF-123"});
        let r = Template::VerifyEmail.render("https://shop.example/", &values).unwrap();
        assert!(r.text.contains("https://shop.example/verify-email?token=abc_DEF-123"));
        assert!(r.html.contains("https://shop.example/verify-email?token=abc_DEF-123"));
        assert!(r.html.contains("&lt;Ada&gt;") && !r.html.contains("<Ada>"));
    }

    #[test]
    fn a_receipt_lists_each_line_and_the_total_escaped() {
        let values = serde_json::json!({"name": "Ada", "order_id": "ord_1", "total": "12.50 USD",
            "items": [{"name": "<Mug>", "quantity": 2, "line_total": "12.50 USD"}]});
        let r = Template::Receipt.render("http://x", &values).unwrap();
        assert_eq!(r.subject, "Receipt for your order ord_1");
        assert!(r.text.contains("2 x <Mug>: 12.50 USD") && r.text.contains("Total: 12.50 USD"), "{}", r.text);
        assert!(r.html.contains("2 x &lt;Mug&gt;") && !r.html.contains("<Mug>"), "{}", r.html);
        assert!(Template::Receipt.render("http://x", &serde_json::json!({"name": "Ada", "order_id": "o", "total": "1"})).is_err());
    }

    #[test]
    fn a_missing_value_is_an_error() {
        assert!(Template::ResetPassword.render("http://x", &serde_json::json!({"name": "A"})).is_err());
    }
}
