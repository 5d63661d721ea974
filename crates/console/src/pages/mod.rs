//! One file per console section; each handler reads, calls the control plane, and renders.

pub mod account;
pub mod audit;
pub mod invite;
pub mod keys;
pub mod limits;
pub mod members;
pub mod projects;
pub mod service_accounts;
pub mod settings;
pub mod sign_in;
pub mod usage;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

/// After a change: back to a page (303, so a reload does not post again).
pub fn see_other(to: &str) -> Response {
    Redirect::to(to).into_response()
}

/// A rendered page with another status.
pub fn with_status(status: StatusCode, page: impl IntoResponse) -> Response {
    let mut response = page.into_response();
    *response.status_mut() = status;
    response
}

/// Adds a `Set-Cookie` header.
pub fn set_cookie(mut response: Response, value: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}
