//! One pooled, keep-alive HTTP client per provider, and the headers that cross it.

use crate::settings::ProviderSettings;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use std::collections::BTreeSet;

/// Headers never forwarded in either direction: hop-by-hop ones, and those that describe one
/// side's connection.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
];

/// Client headers kept from the provider: credentials, the client's org/project (they name
/// Tollgate's, not the provider's), cookies and forwarding information.
const NOT_TO_PROVIDER: &[&str] = &[
    "authorization",
    "openai-organization",
    "openai-project",
    "cookie",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-real-ip",
];

/// Provider headers kept from the client: ones that identify the provider account or are
/// replaced by Tollgate's own.
const NOT_TO_CLIENT: &[&str] = &[
    "openai-organization",
    "openai-project",
    "openai-processing-ms",
    "openai-version",
    "x-request-id",
    "set-cookie",
    "server",
    "alt-svc",
    "cf-ray",
    "cf-cache-status",
    "strict-transport-security",
    "x-envoy-upstream-service-time",
];

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("could not connect to provider {provider}: {reason}")]
    Connect { provider: String, reason: String },
    #[error("provider {provider} did not answer within {seconds} s")]
    Timeout { provider: String, seconds: u64 },
    #[error("request to provider {provider} failed: {reason}")]
    Failed { provider: String, reason: String },
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub settings: ProviderSettings,
    client: reqwest::Client,
}

impl Upstream {
    pub fn new(settings: ProviderSettings) -> Result<Upstream, reqwest::Error> {
        let client = reqwest::Client::builder()
            .connect_timeout(settings.connect_timeout)
            .read_timeout(settings.timeout)
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .pool_max_idle_per_host(512)
            .tcp_nodelay(true)
            // A proxy passes redirects back to its client and never replays a request itself.
            .redirect(reqwest::redirect::Policy::none())
            .retry(reqwest::retry::never())
            .build()?;
        Ok(Upstream { settings, client })
    }

    /// The provider URL for a `/v1/...` path and query.
    pub fn url(&self, path_and_query: &str) -> String {
        let rest = path_and_query.strip_prefix("/v1").unwrap_or(path_and_query);
        format!("{}{rest}", self.settings.base_url)
    }

    /// A request to the provider carrying the client's forwardable headers, the provider's own
    /// headers and the provider's key (never the client's).
    pub fn request(
        &self,
        method: Method,
        path_and_query: &str,
        client_headers: &HeaderMap,
        identity_encoding: bool,
    ) -> reqwest::RequestBuilder {
        let mut headers = HeaderMap::new();
        for (name, value) in client_headers {
            let n = name.as_str();
            if HOP_BY_HOP.contains(&n)
                || NOT_TO_PROVIDER.contains(&n)
                || (identity_encoding && n == "accept-encoding")
            {
                continue;
            }
            headers.append(name.clone(), value.clone());
        }
        for (name, value) in &self.settings.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::try_from(name.as_str()),
                HeaderValue::try_from(value.as_str()),
            ) {
                headers.insert(name, value);
            }
        }
        let mut request = self
            .client
            .request(method, self.url(path_and_query))
            .headers(headers);
        if let Some(key) = &self.settings.api_key {
            request = request.bearer_auth(key.expose());
        }
        request
    }

    /// Sends, bounding the wait for the response to start.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, UpstreamError> {
        match tokio::time::timeout(self.settings.timeout, request.send()).await {
            Err(_) => Err(self.timeout()),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(err)) => Err(self.classify(&err)),
        }
    }

    pub fn classify(&self, err: &reqwest::Error) -> UpstreamError {
        let provider = self.settings.name.clone();
        if err.is_timeout() {
            self.timeout()
        } else if err.is_connect() {
            let reason = std::error::Error::source(err)
                .map(|s| s.to_string())
                .unwrap_or_else(|| err.to_string());
            UpstreamError::Connect { provider, reason }
        } else {
            UpstreamError::Failed {
                provider,
                reason: err.to_string(),
            }
        }
    }

    fn timeout(&self) -> UpstreamError {
        UpstreamError::Timeout {
            provider: self.settings.name.clone(),
            seconds: self.settings.timeout.as_secs(),
        }
    }

    /// The model ids the provider's `GET /models` lists.
    pub async fn list_models(&self) -> Result<BTreeSet<String>, UpstreamError> {
        let response = self
            .send(self.request(Method::GET, "/v1/models", &HeaderMap::new(), true))
            .await?;
        let status = response.status();
        if !status.is_success() {
            return Err(UpstreamError::Failed {
                provider: self.settings.name.clone(),
                reason: format!("GET /models answered {status}"),
            });
        }
        let body: serde_json::Value = response.json().await.map_err(|e| self.classify(&e))?;
        Ok(body["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["id"].as_str().map(str::to_owned))
            .collect())
    }
}

/// The provider's response headers that may reach the client.
pub fn client_headers(upstream: &reqwest::header::HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in upstream {
        let n = name.as_str();
        // The provider's rate-limit headers describe Tollgate's shared provider key, not the
        // caller: Tollgate sends its own.
        if HOP_BY_HOP.contains(&n) || NOT_TO_CLIENT.contains(&n) || n.starts_with("x-ratelimit-") {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}
