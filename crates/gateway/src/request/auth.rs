use crate::background::client_tokens::Lookup;
use crate::background::key_table::LiveKey;
use crate::error::GatewayError;
use crate::headers::{OPENAI_ORGANIZATION, OPENAI_PROJECT, OPENAI_VERSION, X_FORWARDED_FOR};
use crate::state::AppState;
use axum::http::header::{FORWARDED, ORIGIN};
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use std::net::IpAddr;
use std::sync::Arc;
use tollgate_core::client_token::{self, Grant};
use tollgate_core::key::mask_presented;
use tollgate_core::lifecycle::KeyStatus;
use tollgate_core::network::{client_address, ClientIpHeader, IpAllowList};
use tollgate_core::{Access, ClientTokenId, KeyKind, Scope};
use tollgate_store::ProjectStatus;

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The key the request is made with, or for: a client token acts for the key that minted
    /// it (its use is that key's, metered, limited and budgeted as such).
    pub key: Arc<LiveKey>,
    /// The client's address (behind trusted proxies, the one they report); `None` when a
    /// trusted proxy reported one it could not name.
    pub client_ip: Option<IpAddr>,
    /// Set when the request came with a client token (`ek_...`) rather than the key.
    pub token: Option<Arc<TokenUse>>,
}

/// A client token a request came with: what it may do beyond its key's own checks.
#[derive(Debug)]
pub struct TokenUse {
    pub id: ClientTokenId,
    pub grant: Grant,
    /// `ek_...abcd`.
    pub redacted: String,
    /// The session configuration it was minted with (JSON), for Realtime sessions.
    pub session: Option<String>,
}

impl Principal {
    /// Whether the project's and the key's model allow-lists admit a model (by either of its
    /// names: as requested, e.g. an alias, or as served); `Err` names who refuses.
    pub fn check_model(&self, requested: &str, served: &str) -> Result<(), GatewayError> {
        let admits = |list: &tollgate_core::routing::ModelAllowList| {
            list.allows(requested) || list.allows(served)
        };
        let project = self.key.project.as_deref();
        if project.is_some_and(|p| !admits(&p.allowed_models)) {
            let project = project.map(|p| p.id.to_string()).unwrap_or_default();
            return Err(GatewayError::ModelNotAllowed {
                model: requested.to_owned(),
                holder: format!("Project `{project}`"),
            });
        }
        if !admits(self.key.allowed_models()) {
            return Err(GatewayError::ModelNotAllowed {
                model: requested.to_owned(),
                holder: "This API key".to_owned(),
            });
        }
        if let Some(token) = &self.token {
            if !token.grant.allows_model(requested, served) {
                return Err(GatewayError::ModelNotAllowed {
                    model: requested.to_owned(),
                    holder: "This client token".to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Fails with OpenAI's missing-scope error unless the key grants `access` to `scope`.
    pub fn require(&self, scope: Scope, access: Access) -> Result<(), GatewayError> {
        let record = &self.key;
        if record.kind == KeyKind::Admin || !record.permissions.allows(scope, access) {
            return Err(GatewayError::MissingScope(scope.openai_name(access)));
        }
        if self
            .token
            .as_ref()
            .is_some_and(|t| !t.grant.allows(scope, access))
        {
            return Err(GatewayError::MissingScope(scope.openai_name(access)));
        }
        Ok(())
    }
}

/// The caller of a request from `peer` with `headers`, noted in the request's log span; or
/// OpenAI's 401 (logged with its reason).
pub(crate) async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    peer: IpAddr,
) -> Result<Principal, GatewayError> {
    match resolve(state, headers, peer).await {
        Ok(principal) => {
            tracing::Span::current().record("key_id", principal.key.id.as_str());
            Ok(principal)
        }
        Err(err) => {
            tracing::info!(reason = %err, "request refused");
            Err(err)
        }
    }
}

/// The response to an authenticated request, with the organization and project it was billed
/// to, as OpenAI sends them on every such response (errors such as 429 included).
pub(crate) fn identified(key: &LiveKey, response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    add_identity_headers(response.headers_mut(), key);
    response
}

async fn resolve(
    state: &AppState,
    headers: &HeaderMap,
    peer: IpAddr,
) -> Result<Principal, GatewayError> {
    let presented = bearer(headers).ok_or(GatewayError::MissingKey)?;
    if client_token::is_client_token(presented) {
        return resolve_client_token(state, headers, peer, presented).await;
    }
    // Format and checksum first: junk costs no hashing and no lookup.
    let parsed = state
        .format
        .parse(presented)
        .map_err(|_| GatewayError::InvalidKey {
            shown: mask_presented(presented),
        })?;
    let hash = state.hasher.hash(&parsed.secret);
    let key = match state.keys.get(&hash) {
        Some(key) => key,
        // New to this server (created a moment ago), or unknown: the store is asked once.
        None => state
            .key_lookups
            .find(hash, &parsed.secret)
            .await
            .map_err(|_| GatewayError::KeyUnchecked)?
            .ok_or_else(|| GatewayError::InvalidKey {
                shown: mask_presented(presented),
            })?,
    };
    let now = state.clock.now();
    let client_ip = client_ip(state, headers, peer);
    check_key(state, headers, &key, client_ip, now, Through::Key)?;
    state.last_used.record(&key.id, now);
    Ok(Principal {
        key,
        client_ip,
        token: None,
    })
}

/// How a request reaches its key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Through {
    /// The key itself was presented.
    Key,
    /// A client token the key minted was.
    ClientToken,
}

/// The checks a key passes on every request, made with it or with one of its client tokens:
/// its status, its project's, the IP allow-lists, the identity headers. A client token is used
/// from browsers and phones, not from where the key lives: the key's own IP allow-list (where
/// the key may be used) does not apply to it; its project's (where the organization's traffic
/// may come from) does.
fn check_key(
    state: &AppState,
    headers: &HeaderMap,
    key: &Arc<LiveKey>,
    client_ip: Option<IpAddr>,
    now: tollgate_core::UnixTime,
    through: Through,
) -> Result<(), GatewayError> {
    let record = &**key;
    // A refusal naming one of this deployment's keys is watched for bursts.
    let refused = |err: GatewayError| {
        state
            .anomalies
            .refused(&record.id, record.project_id(), client_ip, now);
        Err(err)
    };
    match record.status(now) {
        KeyStatus::Active => {}
        KeyStatus::Revoked => {
            tracing::warn!(key_id = %record.id, "a revoked key was presented");
            return refused(GatewayError::RevokedKey {
                redacted: record.redacted.to_string(),
            });
        }
        KeyStatus::Expired => {
            return refused(GatewayError::ExpiredKey {
                redacted: record.redacted.to_string(),
                at: record.expires_at.map(|t| t.rfc3339()).unwrap_or_default(),
            })
        }
    }
    if let Some(reason) = &record.suspended {
        return Err(GatewayError::SuspendedKey {
            redacted: record.redacted.to_string(),
            reason: reason.to_string(),
        });
    }
    if let Some(project) = record
        .project
        .as_deref()
        .filter(|p| p.status == Some(ProjectStatus::Archived))
    {
        return Err(GatewayError::ArchivedProject {
            project: project.id.to_string(),
        });
    }
    let open = IpAllowList::default();
    let project_ips = record.project.as_deref().map_or(&open, |p| &p.allowed_ips);
    let key_ips = match through {
        Through::Key => record.allowed_ips(),
        Through::ClientToken => &open,
    };
    for (list, what) in [(project_ips, "project"), (key_ips, "API key")] {
        if !admits(list, client_ip) {
            tracing::warn!(key_id = %record.id, client_ip = ?client_ip, list = what, "request from an address outside an IP allow-list");
            state
                .ip_denials
                .record(&state.store, key, client_ip, what, now);
            return refused(GatewayError::IpNotAuthorized { what });
        }
    }
    if let Some(org) = header(headers, OPENAI_ORGANIZATION) {
        if org != record.org_id.as_ref().as_str() {
            return Err(GatewayError::MismatchedOrganization);
        }
    }
    if let Some(project) = header(headers, OPENAI_PROJECT) {
        if record.project_id().map(|p| p.as_str()) != Some(project) {
            return Err(GatewayError::MismatchedProject);
        }
    }
    Ok(())
}

/// The caller of a request made with a client token: the token found by its hash, live, used
/// from an origin it names, with requests and tokens left (one request is counted here), and
/// its key passing its own checks.
async fn resolve_client_token(
    state: &AppState,
    headers: &HeaderMap,
    peer: IpAddr,
    presented: &str,
) -> Result<Principal, GatewayError> {
    let invalid = || GatewayError::InvalidKey {
        shown: mask_presented(presented),
    };
    let secret = client_token::parse(presented).map_err(|_| invalid())?;
    let hash = state.hasher.hash(&secret);
    let found = match state
        .client_tokens
        .find(&state.store, hash, state.clock.now())
        .await
    {
        Lookup::Found(found) => found,
        Lookup::Unknown => return Err(invalid()),
        Lookup::Unchecked => return Err(GatewayError::KeyUnchecked),
    };
    let token = &found.token;
    let redacted = client_token::redact(presented);
    tracing::Span::current().record("client_token", token.id.as_str());
    let now = state.clock.now();
    if now >= token.grant.expires_at {
        return Err(GatewayError::ExpiredClientToken {
            redacted,
            at: token.grant.expires_at.rfc3339(),
        });
    }
    // Not in the key table: the key was deleted (its tokens go with it).
    let key = state.keys.get(&found.key_hash).ok_or_else(invalid)?;
    let client_ip = client_ip(state, headers, peer);
    check_key(state, headers, &key, client_ip, now, Through::ClientToken)?;
    let origin = header(headers, ORIGIN);
    if !token.grant.admits_origin(origin) {
        let origin: String = origin.unwrap_or_default().chars().take(200).collect();
        tracing::warn!(key_id = %key.id, client_token = %token.id, %origin, "a client token was used from an origin it does not name");
        return Err(GatewayError::OriginNotAllowed { origin });
    }
    let taken = state
        .store
        .take_client_token_request(&token.id, now)
        .await
        .map_err(|err| {
            tracing::warn!(error = %err, "a client token's request could not be counted");
            GatewayError::KeyUnchecked
        })?;
    if !taken {
        return Err(GatewayError::ClientTokenSpent { redacted });
    }
    state.last_used.record(&key.id, now);
    Ok(Principal {
        key,
        client_ip,
        token: Some(Arc::new(TokenUse {
            id: token.id.clone(),
            grant: token.grant.clone(),
            redacted,
            session: token.session.clone(),
        })),
    })
}

/// The client's address: the peer, or what trusted proxies' forwarding header says (see
/// `client_address`).
pub(crate) fn client_ip(state: &AppState, headers: &HeaderMap, peer: IpAddr) -> Option<IpAddr> {
    let (read, other) = match state.settings.client_ip_header {
        ClientIpHeader::XForwardedFor => (X_FORWARDED_FOR, FORWARDED),
        ClientIpHeader::Forwarded => (FORWARDED, X_FORWARDED_FOR),
    };
    client_address(
        peer,
        state.settings.client_ip_header,
        headers.get_all(read).iter().map(HeaderValue::as_bytes),
        headers.contains_key(other),
        &state.settings.trusted_proxies,
    )
}

/// Whether the peer is one of the proxies whose forwarding headers this server believes.
fn trusted_proxy(state: &AppState, peer: IpAddr) -> bool {
    state
        .settings
        .trusted_proxies
        .iter()
        .any(|range| range.contains(peer))
}

/// The site's name as the client wrote it: a trusted proxy's `X-Forwarded-Host` (proxies
/// commonly rewrite `Host` to the upstream's address), else `Host`.
pub(crate) fn public_host(state: &AppState, headers: &HeaderMap, peer: IpAddr) -> Option<String> {
    let forwarded = trusted_proxy(state, peer)
        .then(|| {
            headers
                .get_all("x-forwarded-host")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .last()
                .map(|h| h.trim().to_owned())
        })
        .flatten()
        .filter(|h| !h.is_empty());
    forwarded.or_else(|| header(headers, axum::http::header::HOST).map(str::to_owned))
}

/// Whether the client reached a TLS-terminating proxy this server trusts: the peer is a trusted
/// proxy and says `X-Forwarded-Proto: https` (the last value, its own). Tollgate itself serves
/// plain HTTP, so nothing else makes a request HTTPS.
pub(crate) fn forwarded_https(state: &AppState, headers: &HeaderMap, peer: IpAddr) -> bool {
    trusted_proxy(state, peer)
        && headers
            .get_all("x-forwarded-proto")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .last()
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// Whether an allow-list admits a client; an address nobody could name passes only a list that
/// admits every address.
fn admits(list: &IpAllowList, client: Option<IpAddr>) -> bool {
    match client {
        Some(ip) => list.allows(ip),
        None => list.is_empty(),
    }
}

fn header(headers: &HeaderMap, name: HeaderName) -> Option<&str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// The subprotocol a browser's WebSocket names its credential with (a browser cannot set
/// `Authorization` on one), as OpenAI's Realtime API and SDKs do.
pub(crate) const KEY_SUBPROTOCOL: &str = "openai-insecure-api-key.";

/// The token of an `Authorization: Bearer …` header; without one, on a WebSocket handshake
/// (`Upgrade: websocket`), its credential subprotocol (`openai-insecure-api-key.<token>`).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let Some(value) = header(headers, axum::http::header::AUTHORIZATION) else {
        let upgrade = header(headers, axum::http::header::UPGRADE)
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
        if !upgrade {
            return None;
        }
        return headers
            .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .find_map(|p| p.trim().strip_prefix(KEY_SUBPROTOCOL))
            .filter(|token| !token.is_empty());
    };
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn add_identity_headers(headers: &mut HeaderMap, key: &LiveKey) {
    if let Ok(v) = HeaderValue::from_str(key.org_id.as_str()) {
        headers.insert(OPENAI_ORGANIZATION, v);
    }
    if let Some(Ok(v)) = key.project_id().map(|p| HeaderValue::from_str(p.as_str())) {
        headers.insert(OPENAI_PROJECT, v);
    }
    headers.insert(OPENAI_VERSION, HeaderValue::from_static("2020-10-01"));
}
