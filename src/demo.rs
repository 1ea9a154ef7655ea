//! `keel demo seed`: a living shop in one command — a few hundred products in several
//! categories, a demo admin and customer, and pricing rules. Safe to run again: what exists
//! is left as it is.

use serde::Serialize;

use crate::app::Services;
use crate::auth::error::AuthError;
use crate::auth::model::{Email, Password, Role, Roles};
use crate::auth::service::NewAccount;
use crate::catalog::model::NewProduct;
use crate::catalog::service::CatalogError;
use crate::pricing::RuleSpec;
use crate::security::audit::Actor;

const CATEGORIES: &[(&str, &[&str])] = &[
    ("kitchen", &["mug", "kettle", "skillet", "knife", "cutting board", "teapot", "colander", "whisk"]),
    ("outdoor", &["tent", "backpack", "lantern", "sleeping bag", "water bottle", "camp stove", "hammock", "compass"]),
    ("books", &["novel", "cookbook", "atlas", "field guide", "poetry collection", "biography", "sketchbook", "journal"]),
    ("electronics", &["headphones", "speaker", "charger", "e-reader", "keyboard", "mouse", "webcam", "power bank"]),
    ("toys", &["puzzle", "kite", "building set", "yo-yo", "board game", "plush bear", "train set", "spinning top"]),
    ("garden", &["watering can", "trowel", "planter", "seed kit", "pruner", "bird feeder", "hose", "gloves"]),
    ("apparel", &["scarf", "beanie", "rain jacket", "t-shirt", "hoodie", "socks", "belt", "sun hat"]),
    ("office", &["desk lamp", "notebook", "fountain pen", "stapler", "organizer", "monitor stand", "planner", "desk mat"]),
];
const ADJECTIVES: &[&str] = &["Classic", "Compact", "Deluxe", "Everyday", "Handmade"];

pub const DEMO_ADMIN: (&str, &str) = ("admin@demo.keel.dev", "keel demo admin passphrase");
pub const DEMO_CUSTOMER: (&str, &str) = ("customer@demo.keel.dev", "keel demo customer passphrase");

#[derive(Debug, Default, Serialize)]
pub struct SeedReport {
    pub products_created: usize,
    pub products_existing: usize,
    pub users_created: usize,
    pub rules_created: usize,
}

/// Demo pricing rules: one of each kind.
fn demo_rules() -> serde_json::Value {
    serde_json::json!([
        { "name": "Demo: welcome coupon", "kind": "promotion", "priority": 30,
          "conditions": { "coupon_code": "WELCOME10" }, "effect": { "percent_bps": -1000 } },
        { "name": "Demo: kitchen week", "kind": "promotion", "priority": 20,
          "conditions": { "categories": ["kitchen"] }, "effect": { "percent_bps": -1500 } },
        { "name": "Demo: volume discount", "kind": "quantity_tier", "priority": 10,
          "conditions": { "min_quantity": 5 }, "effect": { "percent_bps": -500 } },
        { "name": "Demo: Swiss import surcharge", "kind": "country", "priority": 0,
          "conditions": { "countries": ["CH"] }, "effect": { "percent_bps": 800 } },
        { "name": "Demo: electronics demand", "kind": "demand", "priority": 5,
          "conditions": { "categories": ["electronics"], "demand_window_hours": 24, "demand_cap_bps": 1500 },
          "effect": { "percent_bps": 100 } }
    ])
}

/// The coupon codes the demo rules accept.
pub fn coupon_codes() -> Vec<String> {
    let rules = demo_rules();
    rules.as_array().into_iter().flatten().filter_map(|r| r["conditions"]["coupon_code"].as_str()).map(str::to_owned).collect()
}

/// A price in cents that looks like a shop's: x.99 style, spread by item.
fn price_of(category: usize, item: usize, variant: usize) -> i64 {
    let base = [1200, 8900, 1800, 4900, 2500, 1500, 3400, 2200][category % 8];
    let spread = ((item * 37 + variant * 53) % 17) as i64 * 150;
    base + spread - 1
}

pub async fn seed(services: &Services) -> anyhow::Result<SeedReport> {
    let mut report = SeedReport::default();
    for (email, password, role) in [(DEMO_ADMIN.0, DEMO_ADMIN.1, Some(Role::Admin)), (DEMO_CUSTOMER.0, DEMO_CUSTOMER.1, None)] {
        let email = Email::parse("email", email).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let account = NewAccount {
            password: Password::parse("password", password, Some(&email)).map_err(|e| anyhow::anyhow!("{e:?}"))?,
            email,
            name: if role.is_some() { "Demo Admin".into() } else { "Demo Customer".into() },
        };
        let roles = Roles::from_list(role.as_slice());
        match services.accounts.create_with_roles(account, roles).await {
            Ok(_) => report.users_created += 1,
            Err(AuthError::EmailTaken) => {}
            Err(e) => return Err(anyhow::anyhow!("creating a demo user: {e}")),
        }
    }
    for (c, (category, nouns)) in CATEGORIES.iter().enumerate() {
        for (i, noun) in nouns.iter().enumerate() {
            for (v, adjective) in ADJECTIVES.iter().enumerate() {
                let product = NewProduct {
                    sku: format!("DEMO-{}-{:02}-{v}", category.to_uppercase(), i),
                    name: format!("{adjective} {noun}"),
                    description: format!("A {} {noun} from our {category} range, chosen for everyday use.", adjective.to_lowercase()),
                    category: (*category).to_owned(),
                    price: price_of(c, i, v),
                    stock: ((i * 7 + v * 3) % 40) as i64 + 5,
                };
                match services.catalog.create(product, "demo-seed").await {
                    Ok(_) => report.products_created += 1,
                    Err(CatalogError::SkuTaken) => report.products_existing += 1,
                    Err(e) => return Err(anyhow::anyhow!("creating a demo product: {e}")),
                }
            }
        }
    }
    let existing: Vec<String> = services.pricing.rules().rules.iter().map(|r| r.spec.name.clone()).collect();
    let specs: Vec<RuleSpec> = serde_json::from_value(demo_rules())?;
    for spec in specs.into_iter().filter(|s| !existing.contains(&s.name)) {
        services.pricing.create(spec, &Actor::keel()).await.map_err(|e| anyhow::anyhow!("creating a demo pricing rule: {e:?}"))?;
        report.rules_created += 1;
    }
    Ok(report)
}
