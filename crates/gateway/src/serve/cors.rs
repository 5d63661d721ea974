//! Cross-origin use of the API from browsers, for client tokens only (`ek_...`, see
//! `request::client_secrets`). API keys are never meant for a browser: nothing here helps a page
//! use one.
//!
//! A preflight carries no token, so it is answered for an origin that some live client token
//! names (`allowed_origins`), and refused (403, in OpenAI's envelope, which browsers report as a
//! CORS failure) for any other. An actual request gets `Access-Control-Allow-Origin` when its
//! token names its origin; a refused client-token request gets it when some live token names
//! the origin, so the page can read why (expired, spent). Nothing here allows credentials
//! (cookies): a bearer token needs none.

use crate::error::GatewayError;
use crate::request::auth::{self, TokenUse};
use crate::state::AppState;
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use tollgate_core::client_token::{is_client_token, normalize_origin};

/// How long a browser may keep a preflight's answer: a token lives ten minutes by default.
const MAX_AGE_SECONDS: u64 = 600;
/// The longest `Access-Control-Request-Headers` echoed back.
const MAX_REQUEST_HEADERS: usize = 2048;
/// The response headers a page may read: OpenAI's, as its SDKs read them.
const EXPOSED: &str = "x-request-id, openai-organization, openai-project, openai-version, openai-processing-ms, x-ratelimit-limit-requests, x-ratelimit-remaining-requests, x-ratelimit-reset-requests, x-ratelimit-limit-tokens, x-ratelimit-remaining-tokens, x-ratelimit-reset-tokens, retry-after, retry-after-ms, x-should-retry";

/// Who a response answers.
pub(crate) enum Caller<'a> {
    /// Nobody: authentication failed.
    Refused,
    /// A key.
    Key,
    /// A client token.
    Token(&'a TokenUse),
}

/// What a request says about where it comes from, read before its headers are consumed.
pub(crate) struct CrossOrigin {
    origin: HeaderValue,
    /// Its bearer is a client token.
    client_token: bool,
}

impl CrossOrigin {
    /// `None` for a request from no browser page (no `Origin`).
    pub(crate) fn of(headers: &HeaderMap) -> Option<CrossOrigin> {
        let origin = headers.get(ORIGIN)?.clone();
        let client_token = auth::bearer(headers).is_some_and(is_client_token);
        Some(CrossOrigin {
            origin,
            client_token,
        })
    }

    /// Marks a response as readable by the page, when the rules above allow it.
    pub(crate) async fn mark(&self, state: &AppState, caller: Caller<'_>, response: &mut Response) {
        let origin = self.origin.to_str().ok();
        let allowed = match caller {
            Caller::Token(token) => origin.is_some_and(|o| token.grant.admits_origin(Some(o))),
            Caller::Refused if self.client_token => live(state, origin).await,
            Caller::Refused | Caller::Key => false,
        };
        let headers = response.headers_mut();
        headers.append(VARY, HeaderValue::from_static("Origin"));
        if allowed {
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, self.origin.clone());
            headers.insert(
                ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static(EXPOSED),
            );
        }
    }
}

/// Whether some live client token names the origin (remembered for a moment; see
/// `live_origins`).
async fn live(state: &AppState, origin: Option<&str>) -> bool {
    let Some(origin) = origin.and_then(|o| normalize_origin(o).ok()) else {
        return false;
    };
    let now = state.clock.now();
    if let Some(live) = state.live_origins.get(&origin, now) {
        return live;
    }
    match state.store.client_origin_live(&origin, now).await {
        Ok(live) => {
            state.live_origins.remember(&origin, live, now);
            live
        }
        Err(err) => {
            tracing::warn!(error = %err, "could not check an origin against the client tokens");
            false
        }
    }
}

/// The answer to a CORS preflight (`OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`); `None` for any other request.
pub(crate) async fn preflight(
    state: &AppState,
    method: &Method,
    headers: &HeaderMap,
) -> Option<Response> {
    if method != Method::OPTIONS || !headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD) {
        return None;
    }
    let origin = headers.get(ORIGIN)?;
    let text = origin.to_str().ok();
    if !live(state, text).await {
        let shown: String = text.unwrap_or("(unreadable)").chars().take(200).collect();
        tracing::debug!(origin = %shown, "CORS preflight refused");
        let mut response = GatewayError::PreflightRefused { origin: shown }.into_response();
        response
            .headers_mut()
            .append(VARY, HeaderValue::from_static("Origin"));
        return Some(response);
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    let out = response.headers_mut();
    out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    out.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, DELETE, OPTIONS"),
    );
    if let Some(asked) = headers
        .get(ACCESS_CONTROL_REQUEST_HEADERS)
        .filter(|v| v.len() <= MAX_REQUEST_HEADERS && header_list(v.as_bytes()))
    {
        out.insert(ACCESS_CONTROL_ALLOW_HEADERS, asked.clone());
    }
    out.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from(MAX_AGE_SECONDS));
    out.append(
        VARY,
        HeaderValue::from_static(
            "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
        ),
    );
    Some(response)
}

/// Whether a value is a comma-separated list of header names (tokens), as browsers send it.
fn header_list(value: &[u8]) -> bool {
    value.split(|b| *b == b',').all(|name| {
        let name = name.trim_ascii();
        !name.is_empty()
            && name
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b))
    })
}

#[cfg(test)]
mod tests {
    use super::header_list;

    #[test]
    fn only_lists_of_header_names_are_echoed() {
        assert!(header_list(b"authorization, content-type, x-stainless-os"));
        assert!(header_list(b"authorization"));
        assert!(!header_list(b"authorization,,content-type"));
        assert!(!header_list(b"bad header"));
        assert!(!header_list(b"x\r\ny"));
        assert!(!header_list(b""));
    }
}
