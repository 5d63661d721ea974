use crate::headers::{RETRY_AFTER_MS, X_SHOULD_RETRY};
use crate::metrics::Refusal;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tollgate_core::{ErrorKind, OpenAiError};

const NO_KEY: &str = "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY). Ask this Tollgate's operator for a key (they create one with `tollgate keys create`).";

/// A path as an error message quotes it: at most 200 characters.
/// A path as an error quotes it: a secret pasted into it masked, at most 200 characters.
fn quote_path(path: &str) -> String {
    let path = tollgate_core::key::loggable_path(path);
    match path.char_indices().nth(200) {
        Some((end, _)) => format!("{}...", &path[..end]),
        None => path.into_owned(),
    }
}

/// Everything the data plane itself rejects; rendered in one place as OpenAI's envelope.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("no API key")]
    MissingKey,
    /// Malformed, unknown or of a revoked key; `shown` is the masked or redacted form.
    #[error("incorrect API key {shown}")]
    InvalidKey { shown: String },
    /// A key new to this server that could not be looked up now (over the lookup rate, or the
    /// store failing): retryable, unlike an unknown key.
    #[error("key could not be checked now")]
    KeyUnchecked,
    #[error("revoked key {redacted}")]
    RevokedKey { redacted: String },
    #[error("expired key {redacted}")]
    ExpiredKey { redacted: String, at: String },
    #[error("key of archived project {project}")]
    ArchivedProject { project: String },
    #[error("OpenAI-Organization header mismatch")]
    MismatchedOrganization,
    #[error("OpenAI-Project header mismatch")]
    MismatchedProject,
    #[error("IP not authorized for this {what}")]
    IpNotAuthorized { what: &'static str },
    #[error("missing scope {0}")]
    MissingScope(&'static str),
    #[error("path refused: {reason}")]
    InvalidPath {
        method: String,
        path: String,
        reason: tollgate_core::path::PathError,
    },
    #[error("no route for {method} {path}")]
    UnknownRoute { method: String, path: String },
    #[error("method {method} not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("request body is not JSON")]
    InvalidJson(String),
    #[error("no model in the request")]
    MissingModel,
    #[error("request body over {limit} bytes")]
    BodyTooLarge { limit: usize },
    /// The client's body could not be read to its end (it hung up, or framed it badly).
    #[error("request body unreadable")]
    BodyUnreadable,
    /// The client sent nothing of its body for too long.
    #[error("request body stalled")]
    BodyStalled { seconds: u64 },
    /// The request-body budget is spent: retryable.
    #[error("request bodies in flight over budget")]
    BodiesOverBudget,
    /// Usage events wait in the spool past its bound (the store is not keeping up): retryable.
    #[error("usage spool over its bound")]
    MeteringBacklog,
    /// Rate limits are shared through Redis, Redis cannot be reached, and the configuration
    /// says to refuse rather than limit locally.
    #[error("shared rate limits are unavailable")]
    SharedLimitsUnavailable,
    #[error("model {0} is not routed")]
    ModelNotFound(String),
    #[error("model {model} not allowed for this {holder}")]
    ModelNotAllowed { model: String, holder: String },
    #[error("model {0} has no price")]
    ModelNotPriced(String),
    #[error("rate limited: {message}")]
    RateLimited {
        message: String,
        /// A token limit (OpenAI's type `tokens`) rather than a request limit.
        tokens: bool,
        /// `None` when no wait helps: the request alone is over the limit.
        retry_after: Option<std::time::Duration>,
        headers: crate::rate_headers::RateHeaders,
    },
    #[error("spend limit: {message}")]
    SpendLimit { message: String, code: &'static str },
    #[error(transparent)]
    Upstream(#[from] crate::upstream::failure::UpstreamError),
    /// An object another project owns, or one the ownership ledger has never seen.
    #[error("no such {kind} object {id}")]
    NoSuchObject {
        kind: tollgate_core::objects::ObjectKind,
        id: String,
        param: String,
    },
    /// Something named where an object id belongs that is not one.
    #[error("malformed object id: {0}")]
    MalformedObjectId(tollgate_core::objects::Malformed),
    /// A key that belongs to no project asked for objects a provider keeps per project.
    #[error("key without a project")]
    NoProject,
    /// A key suspended after suspicious use.
    #[error("suspended key")]
    SuspendedKey { redacted: String, reason: String },
    /// A leak report (GitHub secret scanning) that is not signed by a key the sender
    /// publishes, or was already received.
    #[error("{0}")]
    LeakReportRefused(String),
    /// The keys leak reports are signed with could not be fetched.
    #[error("the keys that sign leak reports could not be fetched: {0}")]
    LeakReportKeysUnavailable(String),
    /// A client token (`ek_...`) past its lifetime.
    #[error("expired client token {redacted}")]
    ExpiredClientToken { redacted: String, at: String },
    /// A client token used from a browser origin its grant does not name.
    #[error("origin {origin} not allowed for this client token")]
    OriginNotAllowed { origin: String },
    /// A CORS preflight from an origin no live client token names.
    #[error("origin {origin} not allowed")]
    PreflightRefused { origin: String },
    /// A client token that has made its requests or used its tokens.
    #[error("client token spent")]
    ClientTokenSpent { redacted: String },
    /// A client token asked to do what only a key may (mint tokens, use the admin API).
    #[error("client tokens cannot {0}")]
    ClientTokenCannot(&'static str),
    /// An API key used from a browser page (a WebSocket with an `Origin`).
    #[error("API key used from a browser page")]
    KeyInBrowser,
    /// A request body naming a field it may not, or a value out of range.
    #[error("{message}")]
    InvalidRequest {
        message: String,
        param: Option<String>,
    },
    #[error("The server had an error while processing your request. Sorry about that!")]
    Internal,
}

impl GatewayError {
    pub fn to_openai(&self) -> OpenAiError {
        use ErrorKind::*;
        match self {
            GatewayError::MissingKey => OpenAiError::new(Authentication, NO_KEY),
            GatewayError::InvalidKey { shown } => OpenAiError::new(
                Authentication,
                format!("Incorrect API key provided: {shown}. Check the key you were given; this Tollgate's operator can list keys with `tollgate keys list`."),
            )
            .with_code("invalid_api_key"),
            GatewayError::KeyUnchecked => OpenAiError::new(
                Unavailable,
                "This API key is not known to this server yet and could not be checked just now. Please retry in a second.",
            ),
            GatewayError::RevokedKey { redacted } => OpenAiError::new(
                Authentication,
                format!("Incorrect API key provided: {redacted}. This key has been revoked; ask its owner for a new one."),
            )
            .with_code("invalid_api_key"),
            GatewayError::ExpiredKey { redacted, at } => OpenAiError::new(
                Authentication,
                format!("Incorrect API key provided: {redacted}. This key expired at {at}; ask its owner for a new one."),
            )
            .with_code("invalid_api_key"),
            GatewayError::ArchivedProject { project } => OpenAiError::new(
                Authentication,
                format!("The project {project} of this API key is archived; archived projects cannot be used."),
            )
            .with_code("invalid_api_key"),
            GatewayError::MismatchedOrganization => OpenAiError::new(
                Authentication,
                "OpenAI-Organization header should match organization for API key",
            )
            .with_code("mismatched_organization"),
            GatewayError::MismatchedProject => OpenAiError::new(
                Authentication,
                "OpenAI-Project header should match project for API key",
            )
            .with_code("mismatched_project"),
            GatewayError::IpNotAuthorized { what, .. } => {
                OpenAiError::new(Authentication, format!("IP not authorized for this {what}."))
            }
            GatewayError::MissingScope(scope) => OpenAiError::new(
                Authentication,
                format!("You have insufficient permissions for this operation. Missing scopes: {scope}. Check that you have the correct role in your organization (Reader, Owner) and project (Member, Owner), and if you're using a restricted API key, that it has the necessary scopes."),
            ),
            GatewayError::InvalidPath { method, path, reason } => OpenAiError::new(
                InvalidRequest,
                format!("Invalid URL ({method} {}): {reason}. Tollgate refuses paths that a server could read as another path.", quote_path(path)),
            ),
            GatewayError::UnknownRoute { method, path } => {
                OpenAiError::new(NotFound, format!("Invalid URL ({method} {})", quote_path(path)))
            }
            GatewayError::MethodNotAllowed { method, path } => {
                OpenAiError::new(MethodNotAllowed, format!("Method not allowed ({method} {})", quote_path(path)))
            }
            GatewayError::InvalidJson(detail) => OpenAiError::new(
                InvalidRequest,
                format!("We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The API expects a JSON payload, but what was sent was not valid JSON: {detail}.)"),
            ),
            GatewayError::MissingModel => OpenAiError::new(InvalidRequest, "you must provide a model parameter").with_param("model"),
            GatewayError::BodyTooLarge { limit } => OpenAiError::new(
                PayloadTooLarge,
                format!("The request body is larger than this Tollgate accepts ({limit} bytes). Send less, or raise max_body_bytes in tollgate.toml."),
            )
            .with_code("request_too_large"),
            GatewayError::BodyUnreadable => OpenAiError::new(
                InvalidRequest,
                "The request body could not be read to its end.",
            ),
            GatewayError::BodyStalled { seconds } => OpenAiError::new(
                RequestTimeout,
                format!("The request body stopped arriving: nothing came for {seconds} s."),
            ),
            GatewayError::BodiesOverBudget => OpenAiError::new(
                Unavailable,
                "The server is holding as many request bodies as it allows right now. Please retry in a second.",
            )
            .with_code("server_busy"),
            GatewayError::SharedLimitsUnavailable => OpenAiError::new(
                Unavailable,
                "The server cannot check this request's rate limits right now (their shared state is unreachable), so it is not taking it. Please retry in a few seconds.",
            ),
            GatewayError::MeteringBacklog => OpenAiError::new(
                Unavailable,
                "The server cannot record usage as fast as it is asked to right now, so it is not taking new requests. Please retry in a few seconds.",
            )
            .with_code("server_busy"),
            GatewayError::ModelNotFound(model) => OpenAiError::new(
                NotFound,
                format!("The model `{model}` does not exist or you do not have access to it. `GET /v1/models` lists the models you can use."),
            )
            .with_code("model_not_found"),
            GatewayError::ModelNotAllowed { model, holder } => OpenAiError::new(
                PermissionDenied,
                format!("{holder} does not have access to model `{model}`"),
            )
            .with_code("model_not_found"),
            GatewayError::ModelNotPriced(model) => OpenAiError::new(
                PermissionDenied,
                format!("The model `{model}` has no price configured, so this Tollgate will not serve it. Add it under [pricing] in tollgate.toml, or set a fallback price."),
            )
            .with_code("model_not_priced"),
            GatewayError::RateLimited { message, tokens, .. } => OpenAiError::new(
                if *tokens { TokensRateLimited } else { RequestsRateLimited },
                message.clone(),
            )
            .with_code("rate_limit_exceeded"),
            GatewayError::SpendLimit { message, code } => {
                OpenAiError::new(InsufficientQuota, message.clone()).with_code(code)
            }
            GatewayError::NoSuchObject { kind, id, param } => OpenAiError::new(
                NotFound,
                format!("No such {} object: {id}", kind.noun()),
            )
            .with_param(param.clone()),
            GatewayError::MalformedObjectId(malformed) => {
                OpenAiError::new(InvalidRequest, malformed.message.clone())
                    .with_param(malformed.param.clone())
            }
            GatewayError::NoProject => OpenAiError::new(
                PermissionDenied,
                "This key belongs to no project, and objects at the provider (files, batches, stored responses, ...) belong to projects. Use a project's key.",
            ),
            GatewayError::SuspendedKey { redacted, reason } => OpenAiError::new(
                Authentication,
                format!("The API key {redacted} was suspended after suspicious use ({reason}). Its owner can review the activity and lift the suspension with `tollgate keys unsuspend` or in the console."),
            )
            .with_code("api_key_suspended"),
            GatewayError::LeakReportRefused(why) => {
                OpenAiError::new(Authentication, why.clone()).with_code("invalid_signature")
            }
            GatewayError::LeakReportKeysUnavailable(_) => {
                OpenAiError::new(Unavailable, format!("{self}. Please retry later."))
            }
            GatewayError::ExpiredClientToken { redacted, at } => OpenAiError::new(
                Authentication,
                format!("The client token {redacted} expired at {at}. Ask the server that gave it to you for a new one."),
            )
            .with_code("client_token_expired"),
            GatewayError::OriginNotAllowed { origin } => OpenAiError::new(
                PermissionDenied,
                format!("This client token may not be used from the origin {origin}. The server that mints it lists the origins it may be used from in `allowed_origins`."),
            )
            .with_code("origin_not_allowed"),
            GatewayError::PreflightRefused { origin } => OpenAiError::new(
                PermissionDenied,
                format!("No client token may be used from the origin {origin}, so this Tollgate does not answer its cross-origin requests. API keys are never for browsers: mint a client token (`POST /v1/realtime/client_secrets`) on your server with this origin in `allowed_origins`."),
            )
            .with_code("origin_not_allowed"),
            GatewayError::ClientTokenSpent { redacted } => OpenAiError::new(
                InsufficientQuota,
                format!("The client token {redacted} has used all the requests or tokens it was minted with. Ask the server that gave it to you for a new one."),
            )
            .with_code("client_token_exhausted"),
            GatewayError::ClientTokenCannot(what) => OpenAiError::new(
                PermissionDenied,
                format!("A client token cannot {what}; use the API key it was minted from, on your server."),
            )
            .with_code("client_token_not_allowed"),
            GatewayError::KeyInBrowser => OpenAiError::new(
                PermissionDenied,
                "API keys cannot be used from browser pages, where anyone can read them. Mint a client token on your server (`POST /v1/realtime/client_secrets`) and give the page that.",
            )
            .with_code("api_key_in_browser"),
            GatewayError::InvalidRequest { message, param } => {
                let error = OpenAiError::new(InvalidRequest, message.clone());
                match param {
                    Some(param) => error.with_param(param.clone()),
                    None => error,
                }
            }
            GatewayError::Internal => OpenAiError::new(Server, self.to_string()),
            GatewayError::Upstream(err) => match err {
                crate::upstream::failure::UpstreamError::Timeout { .. } => OpenAiError::new(
                    GatewayTimeout,
                    format!("{err}. The request may still be running there; retry later or raise the provider's timeout_secs."),
                ),
                _ => OpenAiError::new(BadGateway, format!("{err}. Check the provider's base_url and that it is running.")),
            },
        }
    }
}

/// Renders any OpenAI error as its HTTP response.
pub(crate) fn openai_response(error: &OpenAiError) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, error.to_json()).into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            axum::http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"Tollgate\""),
        );
    }
    response
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let mut response = openai_response(&self.to_openai());
        let headers = response.headers_mut();
        match &self {
            GatewayError::RateLimited {
                retry_after: Some(wait),
                headers: rate,
                ..
            } => {
                rate.apply(headers);
                // Whole seconds, rounded up, for every client; milliseconds for OpenAI's SDKs,
                // which read `retry-after-ms` first.
                let secs = wait.as_millis().div_ceil(1_000).max(1);
                headers.insert(
                    axum::http::header::RETRY_AFTER,
                    HeaderValue::from(secs as u64),
                );
                headers.insert(
                    RETRY_AFTER_MS,
                    HeaderValue::from(wait.as_millis().max(1) as u64),
                );
            }
            GatewayError::RateLimited { headers: rate, .. } => {
                rate.apply(headers);
                headers.insert(X_SHOULD_RETRY, HeaderValue::from_static("false"));
            }
            GatewayError::KeyUnchecked
            | GatewayError::BodiesOverBudget
            | GatewayError::MeteringBacklog
            | GatewayError::SharedLimitsUnavailable => {
                headers.insert(axum::http::header::RETRY_AFTER, HeaderValue::from(1u64));
                headers.insert(X_SHOULD_RETRY, HeaderValue::from_static("true"));
            }
            // Waiting does not refill a budget: tell SDKs not to retry.
            GatewayError::SpendLimit { .. } | GatewayError::ClientTokenSpent { .. } => {
                headers.insert(X_SHOULD_RETRY, HeaderValue::from_static("false"));
            }
            _ => {}
        }
        if let Some(refusal) = self.refusal() {
            response.extensions_mut().insert(refusal);
        }
        response
    }
}

impl GatewayError {
    /// What the metrics count this error as (see `metrics::Refusal`).
    fn refusal(&self) -> Option<Refusal> {
        use crate::upstream::failure::UpstreamError;
        Some(match self {
            GatewayError::RateLimited { tokens: true, .. } => Refusal::Limit("tokens"),
            GatewayError::RateLimited { tokens: false, .. } => Refusal::Limit("requests"),
            GatewayError::SpendLimit { .. } => Refusal::Limit("budget"),
            GatewayError::SharedLimitsUnavailable => Refusal::Limit("shared_state_unavailable"),
            GatewayError::BodiesOverBudget | GatewayError::MeteringBacklog => {
                Refusal::Limit("server_busy")
            }
            GatewayError::MissingKey => Refusal::Auth("missing"),
            GatewayError::InvalidKey { .. } => Refusal::Auth("invalid"),
            GatewayError::RevokedKey { .. } => Refusal::Auth("revoked"),
            GatewayError::SuspendedKey { .. } => Refusal::Auth("suspended"),
            GatewayError::ExpiredKey { .. } | GatewayError::ExpiredClientToken { .. } => {
                Refusal::Auth("expired")
            }
            GatewayError::OriginNotAllowed { .. } | GatewayError::PreflightRefused { .. } => {
                Refusal::Auth("origin")
            }
            GatewayError::ClientTokenSpent { .. } => Refusal::Limit("client_token"),
            GatewayError::KeyUnchecked => Refusal::Auth("unchecked"),
            GatewayError::IpNotAuthorized { .. } => Refusal::Auth("ip_not_allowed"),
            GatewayError::MissingScope(_) => Refusal::Auth("scope"),
            GatewayError::ArchivedProject { .. }
            | GatewayError::MismatchedOrganization
            | GatewayError::MismatchedProject => Refusal::Auth("project"),
            GatewayError::Upstream(err) => {
                let (provider, kind) = match err {
                    UpstreamError::Connect { provider, .. } => (provider, "connect"),
                    UpstreamError::Timeout { provider, .. } => (provider, "timeout"),
                    UpstreamError::Failed { provider, .. } => (provider, "failed"),
                };
                Refusal::Upstream {
                    provider: provider.clone(),
                    kind,
                }
            }
            _ => return None,
        })
    }
}
