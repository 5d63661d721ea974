//! The admin API's one error type, rendered once as OpenAI's error envelope.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use tollgate_control::{ControlError, ErrorClass};
use tollgate_core::{ErrorKind, OpenAiError};

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("You didn't provide an API key. You need to provide your admin API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_ADMIN_KEY).")]
    MissingKey,
    #[error("Incorrect API key provided: {shown}. The admin API takes an admin key (sk-admin-...) that is active.")]
    InvalidKey { shown: String },
    #[error("This is a project or service account key; the admin API (/v1/organization/...) takes only admin keys (sk-admin-...). The first run printed one.")]
    NotAdminKey,
    #[error("IP not authorized for this admin key.")]
    IpNotAuthorized,
    #[error("This admin key has the reader role: it can list and read, not change anything. Use an owner's admin key.")]
    ReaderKey,
    #[error("{message}")]
    BadParam { param: String, message: String },
    #[error("{0}")]
    BadBody(String),
    #[error("No such {what}: '{}'", quoted(.id))]
    NotFound { what: &'static str, id: String },
    #[error("Invalid URL ({method} {})", tollgate_core::key::loggable_path(.path))]
    UnknownRoute { method: String, path: String },
    #[error("Method {method} is not allowed for {}", tollgate_core::key::loggable_path(.path))]
    MethodNotAllowed { method: String, path: String },
    #[error(transparent)]
    Control(#[from] ControlError),
}

/// An id from a path as an error quotes it; something that looks like a secret pasted in its
/// place (a key, or text too long for an id) is masked.
fn quoted(id: &str) -> String {
    if id.starts_with("sk-") || id.len() > 64 {
        tollgate_core::key::mask_presented(id)
    } else {
        id.to_owned()
    }
}

impl AdminError {
    pub fn param(param: &str, message: impl Into<String>) -> AdminError {
        AdminError::BadParam {
            param: param.to_owned(),
            message: message.into(),
        }
    }

    fn envelope(&self) -> OpenAiError {
        let message = self.to_string();
        match self {
            AdminError::MissingKey | AdminError::InvalidKey { .. } => {
                OpenAiError::new(ErrorKind::Authentication, message).with_code("invalid_api_key")
            }
            AdminError::IpNotAuthorized => OpenAiError::new(ErrorKind::Authentication, message),
            AdminError::NotAdminKey | AdminError::ReaderKey => {
                OpenAiError::new(ErrorKind::PermissionDenied, message)
                    .with_code("insufficient_permissions")
            }
            AdminError::BadParam { param, .. } => {
                OpenAiError::new(ErrorKind::InvalidRequest, message).with_param(param.clone())
            }
            AdminError::BadBody(_) => OpenAiError::new(ErrorKind::InvalidRequest, message),
            AdminError::NotFound { .. } | AdminError::UnknownRoute { .. } => {
                OpenAiError::new(ErrorKind::NotFound, message)
            }
            AdminError::MethodNotAllowed { .. } => {
                OpenAiError::new(ErrorKind::MethodNotAllowed, message)
            }
            AdminError::Control(err) => match err.class() {
                ErrorClass::Invalid => OpenAiError::new(ErrorKind::InvalidRequest, message),
                ErrorClass::NotFound => OpenAiError::new(ErrorKind::NotFound, message),
                ErrorClass::Conflict => OpenAiError::new(ErrorKind::Conflict, message),
                ErrorClass::Busy => OpenAiError::new(ErrorKind::Unavailable, message),
                ErrorClass::Environment | ErrorClass::Internal => {
                    tracing::error!(error = %err, "admin API request failed");
                    OpenAiError::new(
                        ErrorKind::Server,
                        "The server had an error while processing your request; it is logged.",
                    )
                }
            },
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let envelope = self.envelope();
        let status =
            StatusCode::from_u16(envelope.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, envelope.to_json()).into_response();
        response.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        );
        response
    }
}

/// OpenAI's error envelope, the one shape of every error (admin API and data plane alike).
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorEnvelope {
    pub error: ErrorObject,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct ErrorObject {
    pub message: String,
    /// `invalid_request_error`, `requests`, `tokens`, `insufficient_quota` or `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request parameter at fault, when one is.
    pub param: Option<String>,
    /// A machine-readable code: `invalid_api_key`, `rate_limit_exceeded`, `model_not_found`, ...
    pub code: Option<String>,
}

/// The errors every admin endpoint can answer, each in OpenAI's envelope.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // a description of responses, never built
pub enum Errors {
    /// A malformed parameter or body; `param` names the parameter.
    #[response(status = 400)]
    BadRequest(ErrorEnvelope),
    /// No key, or not an active admin key.
    #[response(status = 401)]
    Unauthenticated(ErrorEnvelope),
    /// A project or service account key, or a reader's admin key asking for a change.
    #[response(status = 403)]
    Forbidden(ErrorEnvelope),
    /// No such object (in this organization).
    #[response(status = 404)]
    NotFound(ErrorEnvelope),
    /// The change clashes with the current state (a duplicate name, an archived project).
    #[response(status = 409)]
    Conflict(ErrorEnvelope),
}
