//! Field-level validation errors shared by every domain (no HTTP here).

use serde::Serialize;
use utoipa::ToSchema;

/// One problem with one input field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// The field, as named in the request (`address.city` for nested ones).
    pub field: String,
    /// A stable machine code, such as `required`, `too_short`, `invalid`.
    pub code: String,
    pub message: String,
}

/// A collection of field errors; empty means valid.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Invalid(pub Vec<FieldError>);

impl Invalid {
    pub fn one(field: &str, code: &str, message: impl Into<String>) -> Self {
        let mut v = Self::default();
        v.add(field, code, message);
        v
    }

    pub fn add(&mut self, field: &str, code: &str, message: impl Into<String>) {
        self.0.push(FieldError { field: field.to_owned(), code: code.to_owned(), message: message.into() });
    }

    /// Records the error of a parse result and returns its value, if any.
    pub fn check<T>(&mut self, result: Result<T, Invalid>) -> Option<T> {
        result.map_err(|e| self.0.extend(e.0)).ok()
    }

    pub fn finish(self) -> Result<(), Invalid> {
        if self.0.is_empty() { Ok(()) } else { Err(self) }
    }
}
