//! One pooled, keep-alive HTTP client per provider, and the headers that cross it.

mod http1;

use crate::settings::ProviderSettings;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use futures_util::stream::{StreamExt, TryStreamExt};
pub use http1::RequestBody;
use http1::{Http1Client, Http1Error};

pub(crate) mod failure;
pub(crate) mod websocket;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

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
    "http2-settings",
    "host",
    "content-length",
    // Tollgate reads the client's body itself (answering its `100 Continue`) and sends it whole.
    "expect",
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
    // A WebSocket handshake's own (its subprotocols may carry the client's credential).
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "sec-websocket-extensions",
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

pub use failure::UpstreamError;

/// A provider's answer: status and headers, and the body read as it is polled (the same shape
/// whichever client fetched it).
pub use http1::Response as Incoming;

#[derive(Debug, Clone)]
pub struct Upstream {
    pub settings: ProviderSettings,
    /// For providers over HTTPS.
    client: reqwest::Client,
    /// For providers over plain HTTP: requests are written and read on the request's own task.
    http1: Option<Arc<Http1Client>>,
    /// The provider's own headers and its key, made once.
    own_headers: Arc<Vec<(HeaderName, HeaderValue)>>,
    /// The `Authorization` of projects with a credential of their own.
    project_auth: Arc<HashMap<String, HeaderValue>>,
    /// Projects whose credential no other project (nor the shared key) has: the provider keeps
    /// their objects apart by itself.
    dedicated: Arc<HashSet<String>>,
    /// TLS for Realtime WebSockets, made at the first one (see `websocket`).
    websocket_tls: Arc<std::sync::OnceLock<Arc<rustls::ClientConfig>>>,
}

impl Upstream {
    pub fn new(mut settings: ProviderSettings, threads: usize) -> Result<Upstream, String> {
        // `https://api.openai.com/v1/` and `.../v1` are the same provider.
        settings.base_url = settings.base_url.trim_end_matches('/').to_owned();
        let mut builder = reqwest::Client::builder();
        if let Some(path) = &settings.ca_file {
            let pem = std::fs::read(path)
                .map_err(|e| format!("cannot read its ca_file {}: {e}", path.display()))?;
            let roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                format!(
                    "its ca_file {} is not PEM certificates: {e}",
                    path.display()
                )
            })?;
            if roots.is_empty() {
                return Err(format!(
                    "its ca_file {} holds no certificate",
                    path.display()
                ));
            }
            for root in roots {
                builder = builder.add_root_certificate(root);
            }
        }
        let client = builder
            .connect_timeout(settings.connect_timeout)
            .read_timeout(settings.timeout)
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .pool_max_idle_per_host(512)
            .tcp_nodelay(true)
            // A proxy passes redirects back to its client and never replays a request itself.
            .redirect(reqwest::redirect::Policy::none())
            .retry(reqwest::retry::never())
            .build()
            .map_err(|e| e.to_string())?;
        let http1 = Http1Client::for_base_url(
            &settings.base_url,
            threads,
            settings.connect_timeout,
            settings.timeout,
        )
        .map(Arc::new);
        let mut own_headers: Vec<(HeaderName, HeaderValue)> = settings
            .headers
            .iter()
            .filter_map(|(name, value)| {
                Some((
                    HeaderName::try_from(name.as_str()).ok()?,
                    HeaderValue::try_from(value.as_str()).ok()?,
                ))
            })
            .collect();
        let bearer = |key: &crate::settings::ProviderKey| {
            HeaderValue::try_from(format!("Bearer {}", key.expose()))
                .map(|mut value| {
                    value.set_sensitive(true);
                    value
                })
                .map_err(|_| "a credential holds characters a header cannot".to_owned())
        };
        if let Some(key) = &settings.api_key {
            own_headers.push((axum::http::header::AUTHORIZATION, bearer(key)?));
        }
        let mut project_auth = HashMap::new();
        for (project, key) in &settings.project_keys {
            project_auth.insert(project.as_str().to_owned(), bearer(key)?);
        }
        let dedicated = dedicated_projects(&settings);
        Ok(Upstream {
            settings,
            client,
            http1,
            own_headers: Arc::new(own_headers),
            project_auth: Arc::new(project_auth),
            dedicated: Arc::new(dedicated),
            websocket_tls: Arc::default(),
        })
    }

    /// Whether a project's requests go out with a credential other projects also use, so that
    /// the ownership ledger, not the provider, keeps its objects apart.
    pub fn shares_credential(&self, project: Option<&tollgate_core::ProjectId>) -> bool {
        !project.is_some_and(|p| self.dedicated.contains(p.as_str()))
    }

    /// The provider URL for a `/v1/...` path and query.
    pub fn url(&self, path_and_query: &str) -> String {
        format!(
            "{}{}",
            self.settings.base_url,
            under_base_url(path_and_query)
        )
    }

    /// The headers of a request to the provider: the client's forwardable ones, the provider's
    /// own, and the provider's key (never the client's).
    pub fn headers(
        &self,
        client_headers: &HeaderMap,
        identity_encoding: bool,
        project: Option<&tollgate_core::ProjectId>,
    ) -> HeaderMap {
        let mut headers = HeaderMap::new();
        // Headers the client's `Connection` names are for this hop only (RFC 9110 §7.6.1).
        let named = connection_options(client_headers);
        for (name, value) in client_headers {
            let n = name.as_str();
            if HOP_BY_HOP.contains(&n)
                || NOT_TO_PROVIDER.contains(&n)
                || (identity_encoding && n == "accept-encoding")
                || named.iter().any(|option| option.eq_ignore_ascii_case(n))
            {
                continue;
            }
            headers.append(name.clone(), value.clone());
        }
        for (name, value) in self.own_headers.iter() {
            headers.insert(name.clone(), value.clone());
        }
        if let Some(auth) = project.and_then(|p| self.project_auth.get(p.as_str())) {
            headers.insert(axum::http::header::AUTHORIZATION, auth.clone());
        }
        headers
    }

    /// Sends a request, bounding the wait for the response to start; the body is read as it is
    /// polled.
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        headers: HeaderMap,
        body: RequestBody,
    ) -> Result<Incoming, UpstreamError> {
        match &self.http1 {
            // Bounds its own waits: connecting, then sending and reading the head.
            Some(http1) => http1
                .send(&method, path_and_query, &headers, body)
                .await
                .map_err(|e| self.classify_http1(e)),
            None => {
                let sent = self.send_reqwest(method, path_and_query, headers, body);
                match tokio::time::timeout(self.settings.timeout, sent).await {
                    Err(_) => Err(self.timeout()),
                    Ok(result) => result,
                }
            }
        }
    }

    async fn send_reqwest(
        &self,
        method: Method,
        path_and_query: &str,
        headers: HeaderMap,
        body: RequestBody,
    ) -> Result<Incoming, UpstreamError> {
        let request = self
            .client
            .request(method, self.url(path_and_query))
            .headers(headers);
        let request = match body {
            RequestBody::Empty => request,
            RequestBody::Full(bytes) => request.body(bytes),
            RequestBody::Stream { stream, .. } => request.body(reqwest::Body::wrap_stream(stream)),
        };
        let response = request.send().await.map_err(|e| self.classify(&e))?;
        if response.status() == axum::http::StatusCode::SWITCHING_PROTOCOLS {
            return Err(self.unasked_upgrade());
        }
        Ok(Incoming {
            status: response.status(),
            headers: response.headers().clone(),
            body: response
                .bytes_stream()
                .map_err(std::io::Error::other)
                .boxed(),
        })
    }

    /// A provider that switched protocols although nobody asked it to: Tollgate never forwards
    /// `Upgrade`, so the answer cannot be relayed as HTTP.
    fn unasked_upgrade(&self) -> UpstreamError {
        UpstreamError::Failed {
            provider: self.settings.name.clone(),
            reason: "it answered 101 Switching Protocols to a request that asked for no upgrade"
                .into(),
        }
    }

    fn classify_http1(&self, err: Http1Error) -> UpstreamError {
        let provider = self.settings.name.clone();
        match err {
            Http1Error::Timeout => self.timeout(),
            Http1Error::Connect(err) => UpstreamError::Connect {
                provider,
                reason: err.to_string(),
            },
            Http1Error::Io(err) if err.kind() == std::io::ErrorKind::TimedOut => self.timeout(),
            other => UpstreamError::Failed {
                provider,
                reason: other.to_string(),
            },
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
            .send(
                Method::GET,
                "/v1/models",
                self.headers(&HeaderMap::new(), true, None),
                RequestBody::Empty,
            )
            .await?;
        let status = response.status;
        let failed = |reason: String| UpstreamError::Failed {
            provider: self.settings.name.clone(),
            reason,
        };
        if !status.is_success() {
            return Err(failed(format!("GET /models answered {status}")));
        }
        let mut body = Vec::new();
        let mut stream = response.body;
        while let Some(piece) = stream.next().await {
            let piece = piece.map_err(|e| failed(e.to_string()))?;
            if body.len() + piece.len() > 16 * 1024 * 1024 {
                return Err(failed("GET /models answered more than 16 MiB".into()));
            }
            body.extend_from_slice(&piece);
        }
        let body: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| failed(format!("GET /models: {e}")))?;
        Ok(body["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["id"].as_str().map(str::to_owned))
            .collect())
    }
}

/// What follows a provider's base URL (which includes `/v1`, or the provider's equivalent) for
/// one of Tollgate's `/v1/...` paths, query included: `/v1/files?limit=2` → `/files?limit=2`.
pub(crate) fn under_base_url(path_and_query: &str) -> &str {
    path_and_query.strip_prefix("/v1").unwrap_or(path_and_query)
}

/// The header names listed in `Connection` headers, beyond the usual `keep-alive`, `close` and
/// `upgrade` (which name no other header). Nearly always none: no allocation then.
fn connection_options(headers: &HeaderMap) -> Vec<&str> {
    let mut named = Vec::new();
    for value in headers.get_all(axum::http::header::CONNECTION) {
        let bytes = value.as_bytes();
        if bytes.eq_ignore_ascii_case(b"keep-alive") || bytes.eq_ignore_ascii_case(b"close") {
            continue;
        }
        let Ok(value) = value.to_str() else { continue };
        for option in value.split(',').map(str::trim) {
            let usual = ["", "keep-alive", "close", "upgrade"]
                .iter()
                .any(|u| option.eq_ignore_ascii_case(u));
            if !usual {
                named.push(option);
            }
        }
    }
    named
}

/// The provider's response headers that may reach the client, moved out of its response.
pub fn client_headers(upstream: HeaderMap) -> HeaderMap {
    let named: Vec<String> = connection_options(&upstream)
        .into_iter()
        .map(str::to_ascii_lowercase)
        .collect();
    let mut out = HeaderMap::with_capacity(upstream.len());
    let mut current: Option<HeaderName> = None;
    // A name comes once, followed by its further values (`None`).
    for (name, value) in upstream {
        if let Some(name) = name {
            let n = name.as_str();
            // The provider's rate-limit headers describe Tollgate's shared provider key, not
            // the caller: Tollgate sends its own.
            let kept = !(HOP_BY_HOP.contains(&n)
                || NOT_TO_CLIENT.contains(&n)
                || n.starts_with("x-ratelimit-")
                || named.iter().any(|option| option == n));
            current = kept.then_some(name);
        }
        if let Some(name) = &current {
            out.append(name.clone(), value);
        }
    }
    out
}

/// Projects whose credential is theirs alone: no other project's, and not the shared key.
/// Credentials are compared by value, so one key given to two projects is shared.
pub fn dedicated_projects(settings: &ProviderSettings) -> HashSet<String> {
    let shared = settings.api_key.as_ref().map(|k| k.expose());
    settings
        .project_keys
        .iter()
        .filter(|(project, key)| {
            Some(key.expose()) != shared
                && !settings
                    .project_keys
                    .iter()
                    .any(|(other, k)| other != project && k.expose() == key.expose())
        })
        .map(|(project, _)| project.as_str().to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream() -> Upstream {
        Upstream::new(
            ProviderSettings {
                name: "p".into(),
                base_url: "http://127.0.0.1:1/v1".into(),
                api_key: Some(crate::settings::ProviderKey::new("sk-provider".into())),
                headers: Vec::new(),
                timeout: std::time::Duration::from_secs(1),
                connect_timeout: std::time::Duration::from_secs(1),
                ca_file: None,
                project_keys: Vec::new(),
            },
            1,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_stay_with_the_client() {
        let mut client = HeaderMap::new();
        for (name, value) in [
            ("connection", "keep-alive, X-Secret-Hop"),
            ("connection", "x-other-hop"),
            ("x-secret-hop", "1"),
            ("x-other-hop", "2"),
            ("http2-settings", "AAMAAABkAAQAAP__"),
            ("upgrade", "h2c"),
            ("te", "trailers"),
            ("authorization", "Bearer sk-client"),
            ("forwarded", "for=10.0.0.1"),
            ("x-stainless-lang", "python"),
        ] {
            client.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let sent = upstream().headers(&client, false, None);
        let names: Vec<&str> = sent.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["x-stainless-lang", "authorization"], "{sent:?}");
        assert_eq!(sent["authorization"], "Bearer sk-provider");
        let mut provider = HeaderMap::new();
        provider.insert("connection", HeaderValue::from_static("x-internal"));
        provider.insert("x-internal", HeaderValue::from_static("1"));
        provider.insert("x-kept", HeaderValue::from_static("1"));
        let kept = client_headers(provider);
        assert_eq!(
            kept.keys().map(|n| n.as_str()).collect::<Vec<_>>(),
            ["x-kept"]
        );
    }

    #[test]
    fn a_ca_file_must_hold_certificates() {
        let dir = std::env::temp_dir().join(format!("tollgate-ca-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let settings = |file: &str| ProviderSettings {
            ca_file: Some(dir.join(file)),
            project_keys: Vec::new(),
            base_url: "https://127.0.0.1:1/v1".into(),
            ..upstream().settings
        };
        let missing = Upstream::new(settings("missing.pem"), 1)
            .err()
            .unwrap_or_default();
        assert!(missing.contains("cannot read its ca_file"), "{missing}");
        let _ = std::fs::write(dir.join("empty.pem"), "not a certificate\n");
        let empty = Upstream::new(settings("empty.pem"), 1)
            .err()
            .unwrap_or_default();
        assert!(empty.contains("holds no certificate"), "{empty}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn client_headers_keep_every_value_of_a_kept_name_and_none_of_a_dropped_one() {
        let mut upstream = HeaderMap::new();
        for (name, value) in [
            ("set-cookie", "a=1"),
            ("x-custom", "one"),
            ("set-cookie", "b=2"),
            ("x-custom", "two"),
            ("x-ratelimit-remaining-requests", "9"),
            ("content-length", "12"),
            ("retry-after", "3"),
            ("server", "nginx"),
        ] {
            upstream.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        let kept = client_headers(upstream);
        let custom: Vec<&str> = kept
            .get_all("x-custom")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        assert_eq!(custom, ["one", "two"]);
        assert_eq!(
            kept.get("retry-after").map(|v| v.as_bytes()),
            Some(&b"3"[..])
        );
        assert_eq!(kept.len(), 3, "{kept:?}");
    }
}
