//! Patches as kubectl sends them: JSON patch, JSON merge patch and strategic merge patch.
use serde_json::Value;

use super::schema::Definitions;

mod error;
mod json_patch;
mod location;
mod merge_patch;
mod meta;
mod strategic;
mod strategic_lists;
mod strategic_order;

#[cfg(test)]
mod json_patch_tests;
#[cfg(test)]
mod kubectl_tests;
#[cfg(test)]
mod merge_patch_tests;
#[cfg(test)]
mod strategic_list_tests;
#[cfg(test)]
mod strategic_tests;
#[cfg(test)]
mod test_defs;

pub use error::PatchError;

/// How deep patches and the documents they apply to may nest; deeper input is refused
/// rather than recursed into without bound.
pub(crate) const MAX_DEPTH: usize = 128;

/// The patch formats the API server accepts, named by the request's `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    /// RFC 6902 JSON patch: a list of operations.
    Json,
    /// RFC 7386 JSON merge patch.
    Merge,
    /// Kubernetes strategic merge patch, guided by the served definitions' patch strategies.
    StrategicMerge,
}

impl PatchType {
    /// The patch type a request's `Content-Type` names; parameters such as `charset` are
    /// ignored. Errors are [`PatchError::UnsupportedType`] (HTTP 415).
    pub fn from_content_type(content_type: &str) -> Result<PatchType, PatchError> {
        let media_type = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match media_type.as_str() {
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::StrategicMerge),
            "application/apply-patch+yaml" => Err(PatchError::UnsupportedType {
                content_type: content_type.to_string(),
                message: "server-side apply (application/apply-patch+yaml) is not supported; \
                          use client-side kubectl apply"
                    .to_string(),
            }),
            _ => Err(PatchError::UnsupportedType {
                content_type: content_type.to_string(),
                message: format!(
                    "unsupported patch content type {content_type:?}: accepted are \
                     application/json-patch+json, application/merge-patch+json and \
                     application/strategic-merge-patch+json"
                ),
            }),
        }
    }

    /// The media type that names this patch type.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
        }
    }
}

/// Applies `patch` to `original` and returns the patched document; `original` is left as it
/// was, also on error. `definition` names the top-level definition of the patched kind (e.g.
/// `io.k8s.api.apps.v1.Deployment`); only strategic merge patch reads it and `defs`, and it
/// is refused (415, as for custom resources upstream) when the definition is not served.
pub fn apply(
    patch_type: PatchType,
    original: &Value,
    patch: &Value,
    defs: &Definitions,
    definition: &str,
) -> Result<Value, PatchError> {
    match patch_type {
        PatchType::Json => json_patch::apply(original, patch),
        PatchType::Merge => merge_patch::apply(original, patch),
        PatchType::StrategicMerge => strategic::apply(original, patch, defs, definition),
    }
}
