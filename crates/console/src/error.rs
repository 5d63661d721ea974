//! The console's one error type, rendered once as a page (or a redirect to sign in).

use crate::layout;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use tollgate_control::{ControlError, ErrorClass};

#[derive(Debug)]
pub enum ConsoleError {
    /// No live session: to the sign-in page, coming back to `next` afterwards.
    SignIn {
        next: String,
    },
    /// A reader asking for a change.
    ReaderRole,
    /// A form without this session's anti-forgery token, or posted from another site.
    Forgery,
    NotFound,
    Invalid(String),
    Throttled {
        wait_secs: i64,
    },
    Control(ControlError),
}

impl From<ControlError> for ConsoleError {
    fn from(err: ControlError) -> Self {
        ConsoleError::Control(err)
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let retry_after = match &self {
            ConsoleError::Throttled { wait_secs } => Some(*wait_secs),
            _ => None,
        };
        let (status, title, message) = match self {
            ConsoleError::SignIn { next } => {
                let target = if next.starts_with("/console/") && !next.starts_with("/console/login")
                {
                    format!("/console/login?next={}", encode(&next))
                } else {
                    "/console/login".to_owned()
                };
                return Redirect::to(&target).into_response();
            }
            ConsoleError::ReaderRole => (
                StatusCode::FORBIDDEN,
                "Not allowed",
                "Your role is reader: you can see everything here but change nothing. Ask an owner.".to_owned(),
            ),
            ConsoleError::Forgery => (
                StatusCode::FORBIDDEN,
                "Form expired",
                "This form did not come from this session (or came from another site). Go back, reload the page and try again.".to_owned(),
            ),
            ConsoleError::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing here.".to_owned(),
            ),
            ConsoleError::Invalid(message) => (StatusCode::BAD_REQUEST, "Check the form", message),
            ConsoleError::Throttled { wait_secs } => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                format!("Too many failed sign-ins. Try again in {wait_secs} seconds."),
            ),
            ConsoleError::Control(err) => match err.class() {
                ErrorClass::Invalid => (StatusCode::BAD_REQUEST, "Check the form", err.to_string()),
                ErrorClass::NotFound => (StatusCode::NOT_FOUND, "Not found", err.to_string()),
                ErrorClass::Conflict => (StatusCode::CONFLICT, "Not possible now", err.to_string()),
                ErrorClass::Busy => (StatusCode::SERVICE_UNAVAILABLE, "Busy", err.to_string()),
                ErrorClass::Environment | ErrorClass::Internal => {
                    tracing::error!(error = %err, "console request failed");
                    (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Something went wrong",
                        "The server had an error; it is logged.".to_owned(),
                    )
                }
            },
        };
        let mut response = layout::bare(
            title,
            html! {
                p role="alert" { (message) }
                p { a href="/console/api-keys" { "Back to the console" } }
            },
        )
        .into_response();
        *response.status_mut() = status;
        if let Some(wait) = retry_after {
            if let Ok(value) = axum::http::HeaderValue::from_str(&wait.max(1).to_string()) {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, value);
            }
        }
        response
    }
}

/// Percent-encodes a path for a query value.
pub fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}
