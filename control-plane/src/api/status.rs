//! API errors as clients expect them: a meta/v1 Status object with the reason, HTTP code and,
//! for invalid objects, one cause per field.
use serde_json::{Value, json};

use crate::store::StoreError;

/// One invalid field, as `details.causes` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldCause {
    /// JSON path of the field (`spec.replicas`).
    pub field: String,
    pub message: String,
}

impl FieldCause {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> FieldCause {
        FieldCause {
            field: field.into(),
            message: message.into(),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{resource} \"{name}\" not found")]
    NotFound { resource: String, name: String },
    #[error("the server could not find the requested resource")]
    NoRoute,
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists { resource: String, name: String },
    #[error(
        "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again"
    )]
    Conflict { resource: String, name: String },
    #[error("Operation cannot be fulfilled on {resource} \"{name}\": {message}")]
    ConflictWith {
        resource: String,
        name: String,
        message: String,
    },
    #[error("{kind} \"{name}\" is invalid: {}", join_causes(.causes))]
    Invalid {
        kind: String,
        name: String,
        causes: Vec<FieldCause>,
    },
    #[error("too old resource version: {requested} ({oldest})")]
    Expired { requested: u64, oldest: u64 },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the request body is too large (limit {limit} bytes)")]
    TooLarge { limit: usize },
    #[error("Internal error occurred: {0}")]
    Internal(String),
    #[error("{0}")]
    ServiceUnavailable(String),
}

fn join_causes(causes: &[FieldCause]) -> String {
    let parts: Vec<String> = causes
        .iter()
        .map(|cause| {
            if cause.field.is_empty() {
                cause.message.clone()
            } else {
                format!("{}: {}", cause.field, cause.message)
            }
        })
        .collect();
    if parts.len() == 1 {
        parts.join("")
    } else {
        format!("[{}]", parts.join(", "))
    }
}

impl ApiError {
    pub fn code(&self) -> u16 {
        match self {
            ApiError::BadRequest(_) => 400,
            ApiError::Unauthorized => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::NotFound { .. } | ApiError::NoRoute => 404,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::AlreadyExists { .. }
            | ApiError::Conflict { .. }
            | ApiError::ConflictWith { .. } => 409,
            ApiError::Expired { .. } => 410,
            ApiError::TooLarge { .. } => 413,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::Invalid { .. } => 422,
            ApiError::Internal(_) => 500,
            ApiError::ServiceUnavailable(_) => 503,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::NotFound { .. } | ApiError::NoRoute => "NotFound",
            ApiError::MethodNotAllowed(_) => "MethodNotAllowed",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } | ApiError::ConflictWith { .. } => "Conflict",
            ApiError::Expired { .. } => "Expired",
            ApiError::TooLarge { .. } => "RequestEntityTooLarge",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::Internal(_) => "InternalError",
            ApiError::ServiceUnavailable(_) => "ServiceUnavailable",
        }
    }

    pub fn invalid(kind: &str, name: &str, causes: Vec<FieldCause>) -> ApiError {
        ApiError::Invalid {
            kind: kind.to_owned(),
            name: name.to_owned(),
            causes,
        }
    }

    pub fn not_found(resource: &str, name: &str) -> ApiError {
        ApiError::NotFound {
            resource: resource.to_owned(),
            name: name.to_owned(),
        }
    }

    /// The meta/v1 Status body.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        let details = match self {
            ApiError::NotFound { resource, name }
            | ApiError::AlreadyExists { resource, name }
            | ApiError::Conflict { resource, name }
            | ApiError::ConflictWith { resource, name, .. } => {
                Some(json!({"name": name, "kind": resource}))
            }
            ApiError::Invalid { kind, name, causes } => Some(json!({
                "name": name,
                "kind": kind,
                "causes": causes.iter().map(|cause| json!({
                    "reason": "FieldValueInvalid",
                    "message": cause.message,
                    "field": cause.field,
                })).collect::<Vec<_>>(),
            })),
            _ => None,
        };
        if let Some(details) = details {
            status["details"] = details;
        }
        status
    }
}

/// A store failure in the words of the resource it concerned.
pub fn from_store(error: StoreError, resource: &str, name: &str) -> ApiError {
    match error {
        StoreError::AlreadyExists { .. } => ApiError::AlreadyExists {
            resource: resource.to_owned(),
            name: name.to_owned(),
        },
        StoreError::NotFound { .. } => ApiError::not_found(resource, name),
        StoreError::Conflict { .. } => ApiError::Conflict {
            resource: resource.to_owned(),
            name: name.to_owned(),
        },
        StoreError::Compacted {
            requested,
            compacted,
        } => ApiError::Expired {
            requested,
            oldest: compacted,
        },
        StoreError::FutureRevision { requested, current } => ApiError::ServiceUnavailable(format!(
            "too large resource version: {requested}, current: {current}"
        )),
        StoreError::Backend { .. } => ApiError::Internal(error.to_string()),
    }
}

/// The success Status a delete of a collection or a foreground-free delete may return.
pub fn success(details: Value) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_objects_name_every_field() {
        let error = ApiError::invalid(
            "Deployment.apps",
            "web",
            vec![
                FieldCause::new(
                    "spec.replicas",
                    "Invalid value: -1: must be greater than or equal to 0",
                ),
                FieldCause::new("metadata.name", "Required value"),
            ],
        );
        assert_eq!(
            error.to_string(),
            "Deployment.apps \"web\" is invalid: [spec.replicas: Invalid value: -1: must be greater than or equal to 0, metadata.name: Required value]"
        );
        let status = error.to_status();
        assert_eq!(status["code"], 422);
        assert_eq!(status["reason"], "Invalid");
        assert_eq!(status["details"]["causes"][0]["field"], "spec.replicas");
    }

    #[test]
    fn compaction_is_the_apis_410() {
        let error = from_store(
            StoreError::Compacted {
                requested: 3,
                compacted: 10,
            },
            "pods",
            "",
        );
        assert_eq!(error.code(), 410);
        assert_eq!(error.to_status()["reason"], "Expired");
    }
}
