//! Which scope lets a key call which route. A route not listed here is not for keys: the
//! account's own routes (profile, cart, wallet, sessions), sign-in, real-time streams, and the
//! management of keys themselves. A write scope covers reading what it writes.

use axum::http::Method;

use super::model::Scope;
use Scope::*;

/// (method, route as routed, the scopes any one of which allows it).
const ROUTES: &[(&str, &str, &[Scope])] = &[
    ("GET", "/v1/products", &[ProductsRead, ProductsWrite]),
    ("GET", "/v1/products/{id}", &[ProductsRead, ProductsWrite]),
    ("GET", "/v1/products/{id}/quote", &[ProductsRead, ProductsWrite]),
    ("POST", "/v1/admin/products", &[ProductsWrite]),
    ("PATCH", "/v1/admin/products/{id}", &[ProductsWrite]),
    ("DELETE", "/v1/admin/products/{id}", &[ProductsWrite]),
    ("POST", "/v1/admin/products/{id}/stock-adjustments", &[ProductsWrite]),
    ("GET", "/v1/admin/pricing/rules", &[PricingWrite]),
    ("POST", "/v1/admin/pricing/rules", &[PricingWrite]),
    ("PATCH", "/v1/admin/pricing/rules/{id}", &[PricingWrite]),
    ("DELETE", "/v1/admin/pricing/rules/{id}", &[PricingWrite]),
    ("GET", "/v1/admin/orders", &[OrdersRead, OrdersWrite]),
    ("GET", "/v1/admin/dashboard", &[OrdersRead, OrdersWrite]),
    ("POST", "/v1/admin/orders/{id}/ship", &[OrdersWrite]),
    ("POST", "/v1/admin/orders/{id}/deliver", &[OrdersWrite]),
    ("POST", "/v1/admin/orders/{id}/refunds", &[OrdersWrite]),
    ("GET", "/v1/admin/users", &[UsersRead, UsersWrite]),
    ("PATCH", "/v1/admin/users/{id}", &[UsersWrite]),
    ("GET", "/v1/admin/jobs", &[JobsWrite]),
    ("POST", "/v1/admin/jobs/{id}/retry", &[JobsWrite]),
    ("DELETE", "/v1/admin/jobs/{id}", &[JobsWrite]),
    ("GET", "/v1/admin/webhook-endpoints", &[WebhooksWrite]),
    ("POST", "/v1/admin/webhook-endpoints", &[WebhooksWrite]),
    ("DELETE", "/v1/admin/webhook-endpoints/{id}", &[WebhooksWrite]),
    ("GET", "/v1/admin/webhook-endpoints/{id}/deliveries", &[WebhooksWrite]),
    ("POST", "/v1/admin/webhook-endpoints/{id}/ping", &[WebhooksWrite]),
    ("GET", "/v1/admin/audit", &[AuditRead]),
    ("GET", "/v1/admin/audit/verify", &[AuditRead]),
    ("GET", "/v1/admin/ledger/verify", &[AuditRead]),
];

/// The scopes that allow a route; empty when no key may call it.
pub fn scopes_for(method: &Method, route: &str) -> &'static [Scope] {
    ROUTES.iter().find(|(m, r, _)| *m == method.as_str() && *r == route).map_or(&[], |(_, _, scopes)| scopes)
}

/// True when a key with `granted` may call the route.
pub fn allows(granted: &[Scope], method: &Method, route: &str) -> bool {
    scopes_for(method, route).iter().any(|needed| granted.contains(needed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_scope_opens_its_routes_and_no_others() {
        assert!(allows(&[ProductsRead], &Method::GET, "/v1/products/{id}"));
        assert!(!allows(&[ProductsRead], &Method::PATCH, "/v1/admin/products/{id}"));
        assert!(allows(&[ProductsWrite], &Method::GET, "/v1/products"), "writing covers reading");
        assert!(!allows(&[OrdersRead], &Method::POST, "/v1/admin/orders/{id}/refunds"));
        assert!(!allows(&Scope::ALL, &Method::GET, "/v1/me"), "a key is not a person");
        assert!(!allows(&Scope::ALL, &Method::POST, "/v1/checkout"));
        assert!(!allows(&Scope::ALL, &Method::POST, "/v1/admin/api-keys"), "keys do not make keys");
    }

    #[test]
    fn every_scope_opens_some_route_and_every_listed_route_is_served() {
        for scope in Scope::ALL {
            assert!(ROUTES.iter().any(|(_, _, s)| s.contains(&scope)), "{} opens nothing", scope.name());
        }
        let doc = serde_json::to_value(crate::http::openapi()).unwrap();
        for (method, route, _) in ROUTES {
            let op = &doc["paths"][route][method.to_lowercase()];
            assert!(op.is_object(), "{method} {route} is not a documented route");
        }
    }
}
