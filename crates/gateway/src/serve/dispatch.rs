//! The one door. Every request's path is made canonical (or refused with 400) before anything
//! looks at it; under `/v1` the caller is authenticated (401), then the canonical path and the
//! method are looked up in OpenAI's endpoint table (404 "Invalid URL", 405 for a method OpenAI's
//! API does not use there) and the request goes to its target's handler. Everything downstream
//! (scope, model checks, limits, metering, the path sent to a provider) follows from the
//! canonical path and the target, never from the path as the client spelled it.
//!
//! The control plane's paths (the admin API, `/v1/organization/...`, and its `/openapi.json`)
//! go to the admin router when this server has one; other paths outside `/v1` (`/healthz`) go to
//! the gateway's router.

use crate::error::GatewayError;
use crate::metrics::Served;
use crate::request::auth::{self, identified};
use crate::request::handler;
use crate::serve::cors::{self, Caller, CrossOrigin};
use crate::serve::trust::Trust;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use std::net::SocketAddr;
use tollgate_core::endpoints::{self, Method, Unrouted};
use tollgate_core::path::{canonicalize, PathError};
use tollgate_core::standing::{ClientAddress, ClientTransport, KeyShown};
use tower_service::Service;

/// The gateway's request handling: its router and, for the `/v1` API, its state.
#[derive(Clone)]
pub(crate) struct Dispatch {
    router: Router,
    /// The admin API, when this server serves it.
    admin: Option<Router>,
    /// The web console, when this server serves it.
    console: Option<Router>,
    state: AppState,
}

impl Dispatch {
    /// `router` must be the one built over `state`.
    pub(crate) fn new(
        router: Router,
        admin: Option<Router>,
        console: Option<Router>,
        state: AppState,
    ) -> Dispatch {
        Dispatch {
            router,
            admin,
            console,
            state,
        }
    }

    /// The state the `/v1` API is served with.
    pub(crate) fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves a request that arrived from `peer`, its response marked with what served it
    /// (see `metrics::Served`).
    pub(crate) async fn serve(self, request: Request<Incoming>, peer: SocketAddr) -> Response {
        let mut response = self.route(request, peer).await;
        if response.extensions().get::<Served>().is_none() {
            response.extensions_mut().insert(Served("other"));
        }
        response
    }

    async fn route(mut self, mut request: Request<Incoming>, peer: SocketAddr) -> Response {
        let method = Method::parse(request.method().as_str());
        let raw = request.uri().path();
        let path = match canonicalize(raw) {
            Ok(path) => path.into_owned(),
            // A model id may hold `/`; its lookup is answered here, never forwarded.
            Err(PathError::Slash) if endpoints::is_model_lookup(method, raw) => raw.to_owned(),
            Err(reason) => {
                tracing::info!(%reason, "path refused");
                // An authority-form target (`CONNECT host:port`) has no path: quote it whole.
                let target = match raw {
                    "" => request.uri().to_string(),
                    path => path.to_owned(),
                };
                return GatewayError::InvalidPath {
                    method: request.method().to_string(),
                    path: target,
                    reason,
                }
                .into_response();
            }
        };
        if endpoints::is_control_plane(&path) {
            if let Some(admin) = self.admin.as_mut() {
                return served(
                    "admin",
                    control_plane(admin, &self.state, request, &path, peer).await,
                );
            }
        }
        if endpoints::is_console(&path) {
            if let Some(console) = self.console.as_mut() {
                return served(
                    "console",
                    control_plane(console, &self.state, request, &path, peer).await,
                );
            }
        }
        if path != "/v1" && !path.starts_with("/v1/") {
            request.extensions_mut().insert(ConnectInfo(peer));
            let Ok(response) = self.router.call(request).await;
            let part = match path.as_str() {
                "/healthz" | "/readyz" => "health",
                "/metrics" => "metrics",
                _ => "other",
            };
            return served(part, response);
        }
        if let Some(response) =
            cors::preflight(&self.state, request.method(), request.headers()).await
        {
            return served("v1", response);
        }
        let cross_origin = CrossOrigin::of(request.headers());
        let (parts, body) = request.into_parts();
        // The API's shape is shown only to a caller with a key: 401 before 404 and 405.
        let trust = parts.extensions.get::<Trust>();
        let principal = match auth::authenticate(&self.state, &parts.headers, peer.ip()).await {
            Ok(principal) => {
                if let Some(trust) = trust {
                    trust.authenticated();
                }
                principal
            }
            Err(err) => {
                let mut response = err.into_response();
                // A connection that has shown no valid key does not stay open to try again.
                if trust.is_some_and(|t| !t.is_authenticated()) {
                    response.headers_mut().insert(
                        axum::http::header::CONNECTION,
                        axum::http::HeaderValue::from_static("close"),
                    );
                }
                if let Some(cross_origin) = &cross_origin {
                    cross_origin
                        .mark(&self.state, Caller::Refused, &mut response)
                        .await;
                }
                return served("v1", response);
            }
        };
        // Kept for the response's CORS headers, only when a page sent the request.
        let cors_caller = cross_origin
            .as_ref()
            .map(|_| (self.state.clone(), principal.token.clone()));
        let mut response = match endpoints::route(method, &path) {
            Ok(target) => {
                handler::serve(self.state, principal, target, &path, parts, Body::new(body)).await
            }
            Err(unrouted) => {
                let method = parts.method.to_string();
                let error = match unrouted {
                    Unrouted::NotFound => GatewayError::UnknownRoute { method, path },
                    Unrouted::MethodNotAllowed => GatewayError::MethodNotAllowed { method, path },
                };
                served("v1", identified(&principal.key, error))
            }
        };
        if let (Some(cross_origin), Some((state, token))) = (&cross_origin, cors_caller) {
            let caller = match token.as_deref() {
                Some(token) => Caller::Token(token),
                None => Caller::Key,
            };
            cross_origin.mark(&state, caller, &mut response).await;
        }
        response
    }
}

fn served(part: &'static str, mut response: Response) -> Response {
    response.extensions_mut().insert(Served(part));
    response
}

/// How long an admin API answer waits for its change to be applied on this server.
const CATCH_UP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Hands an admin API or console request to the control plane, under its canonical path (the
/// router matches paths; it must see the one everything else was decided on). Both
/// authenticate their own callers (admin keys, console sessions): a connection that has shown
/// nothing valid is closed after its 401, as on the data plane. A change made through either
/// is in force on this server before the caller hears it was made: a deleted key is refused
/// from the next request on.
async fn control_plane(
    admin: &mut Router,
    state: &AppState,
    mut request: Request<Incoming>,
    path: &str,
    peer: SocketAddr,
) -> Response {
    // HTTP/2 names the site in the URI's authority, not a Host header; keep it as one, since
    // the URI is rewritten to the path below and the console compares origins with the host.
    if !request.headers().contains_key(axum::http::header::HOST) {
        if let Some(authority) = request
            .uri()
            .authority()
            .and_then(|a| axum::http::HeaderValue::from_str(a.as_str()).ok())
        {
            request
                .headers_mut()
                .insert(axum::http::header::HOST, authority);
        }
    }
    let canonical = match request.uri().query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    match canonical.parse::<axum::http::Uri>() {
        Ok(uri) => *request.uri_mut() = uri,
        Err(_) => {
            return GatewayError::UnknownRoute {
                method: request.method().to_string(),
                path: path.to_owned(),
            }
            .into_response()
        }
    }
    let client = ClientAddress(auth::client_ip(state, request.headers(), peer.ip()));
    let transport = ClientTransport {
        https: auth::forwarded_https(state, request.headers(), peer.ip()),
        host: auth::public_host(state, request.headers(), peer.ip()),
    };
    let shown = KeyShown::default();
    request.extensions_mut().insert(ConnectInfo(peer));
    request.extensions_mut().insert(client);
    request.extensions_mut().insert(transport);
    request.extensions_mut().insert(shown.clone());
    let trust = request.extensions().get::<Trust>().cloned();
    let changes = !matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    // On a task of its own: a caller that hangs up (or times out) mid-change must not cancel
    // a transaction half-way through; the change completes or fails on its own.
    let call = tokio::spawn(tracing::Instrument::instrument(
        admin.clone().call(request),
        tracing::Span::current(),
    ));
    let mut response = match call.await {
        Ok(Ok(response)) => response,
        Ok(Err(never)) => match never {},
        Err(err) => {
            tracing::error!(error = %err, "an admin API request failed unexpectedly");
            return GatewayError::Internal.into_response();
        }
    };
    // A change answers 2xx (the admin API) or 303 back to a page (the console).
    let changed = response.status().is_success() || response.status().is_redirection();
    if changes && changed {
        // Bounded: a store that cannot be read now leaves the change to the follower's next
        // pass (within its interval), and the caller is not held.
        match tokio::time::timeout(CATCH_UP_WAIT, state.key_lookups.follower().catch_up()).await
        {
            Ok(true) => {}
            Ok(false) | Err(_) => tracing::warn!(
                "a change made through the admin API could not be applied on this server before the answer; the follower applies it on its next pass"
            ),
        }
    }
    if let Some(trust) = trust {
        // Only a valid admin key counts: a public page (`/openapi.json`) or an error is no
        // proof of anything.
        if shown.get() {
            trust.authenticated();
        } else if response.status() == axum::http::StatusCode::UNAUTHORIZED
            && !trust.is_authenticated()
        {
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
    }
    response
}
