//! Why a patch could not be applied, in words the API server can return to the client.
use serde_json::Value;
use thiserror::Error;

/// A patch request that cannot be applied. The API server answers `UnsupportedType` with
/// 415 and the others with 400 (`TestFailed` with 422, as Kubernetes does).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PatchError {
    /// The request's content type names no patch format served here.
    #[error("{message}")]
    UnsupportedType {
        content_type: String,
        message: String,
    },
    /// The patch is not what its format requires: what is wrong and where.
    #[error("{0}")]
    Malformed(String),
    /// An RFC 6902 `test` operation found another value (or none) at its path.
    #[error(
        "json patch operation {operation}: test failed: the value at {path:?} is not {expected}"
    )]
    TestFailed {
        operation: usize,
        path: String,
        expected: String,
    },
    /// A strategic merge patch directive (`$patch`, `$retainKeys`, `$setElementOrder/…`,
    /// `$deleteFromPrimitiveList/…`) with a wrong value or in the wrong place.
    #[error("{0}")]
    InvalidDirective(String),
}

impl PatchError {
    /// Whether the API server should answer 415 Unsupported Media Type.
    pub fn is_unsupported_media_type(&self) -> bool {
        matches!(self, PatchError::UnsupportedType { .. })
    }
}

/// A value for an error message, cut short: it may be a whole object.
pub(super) fn abbreviate(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(120) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}
