//! Tollgate's web console: sign in, API keys (created and shown once, renamed, rotated,
//! revoked), usage and spend, limits and budgets, projects, members and invites, service
//! accounts, the audit log and the organization's settings.
//!
//! Pages are rendered on the server (maud) over the same control-plane functions the admin API
//! calls; there is no second control plane. Forms post back with an anti-forgery token derived
//! from the session; a little embedded script copies secrets and confirms nothing the server
//! does not confirm itself. Every asset is compiled into the binary.

mod assets;
mod chart;
mod error;
mod form;
mod layout;
mod pages;
mod throttle;
mod viewer;

pub use error::ConsoleError;

use axum::http::{header, HeaderValue};
use axum::response::{Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use std::sync::{Arc, Mutex};
use tollgate_control::Control;

/// Where the console lives.
pub const PREFIX: &str = tollgate_core::endpoints::CONSOLE;

/// What every handler is given.
#[derive(Clone, Debug)]
pub struct ConsoleState {
    control: Control,
    throttle: Arc<Mutex<throttle::Throttles>>,
}

impl ConsoleState {
    /// Counts an attempt to check a password (see `throttle`); `Err` is the page that says
    /// how long to wait.
    pub(crate) fn attempt(&self, account: &str, address: &str) -> Result<(), ConsoleError> {
        let now = self.control.now();
        self.throttle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .attempt(account, address, now)
            .map_err(|wait_secs| {
                tracing::warn!(wait_secs, "password attempts throttled");
                ConsoleError::Throttled { wait_secs }
            })
    }

    pub(crate) fn succeeded(&self, account: &str, address: &str) {
        self.throttle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .succeeded(account, address);
    }
}

/// The console's routes over `control`, under [`PREFIX`] (and `/`, which opens it).
pub fn router(control: Control) -> Router {
    let state = ConsoleState {
        control,
        throttle: Arc::new(Mutex::new(throttle::Throttles::default())),
    };
    let console = Router::new()
        .route("/", get(|| async { Redirect::to("/console/api-keys") }))
        .route(
            "/login",
            get(pages::sign_in::form).post(pages::sign_in::submit),
        )
        .route("/logout", post(pages::sign_in::sign_out))
        .route(
            "/invite",
            get(pages::invite::form).post(pages::invite::accept),
        )
        .route("/account", get(pages::account::show))
        .route("/account/password", post(pages::account::change_password))
        .route(
            "/api-keys",
            get(pages::keys::list).post(pages::keys::create),
        )
        .route("/api-keys/new", get(pages::keys::new))
        .route("/api-keys/{key_id}", get(pages::keys::show))
        .route("/api-keys/{key_id}/rename", post(pages::keys::rename))
        .route(
            "/api-keys/{key_id}/revoke",
            get(pages::keys::confirm_revoke).post(pages::keys::revoke),
        )
        .route("/api-keys/{key_id}/rotate", post(pages::keys::rotate))
        .route("/usage", get(pages::usage::show))
        .route("/usage.csv", get(pages::usage::csv))
        .route("/limits", get(pages::limits::show))
        .route("/limits/budget", post(pages::limits::set_budget))
        .route("/limits/rate", post(pages::limits::set_rate))
        .route("/limits/budget/remove", post(pages::limits::remove_budget))
        .route("/limits/rate/remove", post(pages::limits::remove_rate))
        .route(
            "/projects",
            get(pages::projects::list).post(pages::projects::create),
        )
        .route(
            "/projects/{project_id}/archive",
            post(pages::projects::archive),
        )
        .route(
            "/members",
            get(pages::members::list).post(pages::members::invite),
        )
        .route("/members/{user_id}/role", post(pages::members::set_role))
        .route("/members/{user_id}/remove", post(pages::members::remove))
        .route(
            "/members/{user_id}/reset-password",
            post(pages::members::reset_password),
        )
        .route(
            "/invites/{invite_id}/delete",
            post(pages::members::withdraw),
        )
        .route(
            "/service-accounts",
            get(pages::service_accounts::list).post(pages::service_accounts::create),
        )
        .route("/audit", get(pages::audit::list))
        .route(
            "/settings",
            get(pages::settings::show).post(pages::settings::rename),
        )
        .route("/assets/{file}", get(assets::serve))
        .fallback(|| async { ConsoleError::NotFound });
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/api-keys") }))
        .nest(PREFIX, console)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// Headers on every console answer: a content security policy with no inline script or
/// style, no framing, no sniffing, no referrer leaving the site, and nothing cached (pages show
/// secrets once).
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name, value: &'static str| {
        headers.insert(name, HeaderValue::from_static(value));
    };
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    );
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::REFERRER_POLICY, "same-origin");
    set(
        headers,
        header::HeaderName::from_static("cross-origin-opener-policy"),
        "same-origin",
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        set(headers, header::CACHE_CONTROL, "no-store");
    }
    response
}
