//! Public ids: a type prefix and a time-ordered UUIDv7 (`usr_0190…`). Ids sort by creation
//! time, which keyset pagination relies on. They are not secrets (v7 leaks its time).

pub fn new(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_prefixed_and_ordered() {
        let (a, b) = (super::new("usr"), super::new("usr"));
        assert!(a.starts_with("usr_") && a.len() == 36);
        assert!(a < b);
    }
}
