//! A JSON request body whose every fault is a 400 in OpenAI's envelope.

use crate::error::AdminError;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

/// The largest admin request body taken.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = AdminError;

    async fn from_request(request: Request, _state: &S) -> Result<Self, AdminError> {
        let bytes = axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
            .await
            .map_err(|_| {
                AdminError::BadBody(format!(
                    "The request body could not be read, or is larger than {MAX_BODY_BYTES} bytes."
                ))
            })?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|err| {
            AdminError::BadBody(format!(
                "We could not parse the JSON body of your request: {err}. The body must be a JSON object with the fields this endpoint takes."
            ))
        })
    }
}
