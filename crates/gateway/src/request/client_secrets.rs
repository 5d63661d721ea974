//! `POST /v1/realtime/client_secrets`: a server holding a project key mints a short-lived client
//! token (`ek_...`) to hand to a browser or a mobile app, shaped like OpenAI's call of the same
//! name (`expires_after`, `session`; answered with `value`, `expires_at`, `session`), with
//! Tollgate's narrowing beside them: `scopes`, `models`, `user`, `max_requests`, `max_tokens`,
//! `allowed_origins` (see `tollgate_core::client_token`). The token is stored by its keyed hash
//! and shown once, in this answer.

use crate::error::GatewayError;
use crate::request::call::Call;
use crate::request::metered::read_body;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::value::RawValue;
use tollgate_core::client_token::{self, GrantAsk};
use tollgate_core::{ClientTokenId, KeyKind};
use tollgate_store::ClientToken;

/// Where tokens are minted.
const PATH: &str = "/v1/realtime/client_secrets";
/// The largest minting request read.
const MAX_BODY: usize = 64 * 1024;
/// The largest session configuration kept with a token.
const MAX_SESSION: usize = 16 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Mint {
    #[serde(default)]
    expires_after: Option<ExpiresAfter>,
    #[serde(default)]
    session: Option<Box<RawValue>>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    max_requests: Option<i64>,
    #[serde(default)]
    max_tokens: Option<i64>,
    #[serde(default)]
    allowed_origins: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpiresAfter {
    #[serde(default)]
    anchor: Option<String>,
    #[serde(default)]
    seconds: Option<i64>,
}

fn invalid(message: impl Into<String>, param: &str) -> GatewayError {
    GatewayError::InvalidRequest {
        message: message.into(),
        param: Some(param.to_owned()),
    }
}

/// Reads the request, mints the token and answers with it.
pub(crate) async fn mint(
    call: Call,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, GatewayError> {
    let (state, principal) = (&call.state, &call.principal);
    if principal.token.is_some() {
        return Err(GatewayError::ClientTokenCannot("mint client tokens"));
    }
    let key = &principal.key;
    if key.kind == KeyKind::Admin {
        return Err(GatewayError::MissingScope("api.model.realtime.request"));
    }
    // Minting is a request of the key's like any other: its rate limits apply.
    let _admission = call.admit(PATH).await?;
    let stall = state.settings.connections.head_timeout;
    let (raw, _held) = read_body(body, headers, MAX_BODY, &state.body_budget, stall).await?;
    let mint: Mint = if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid(
            "The request body must be a JSON object, such as {\"expires_after\":{\"seconds\":600}}.",
            "body",
        ));
    } else {
        serde_json::from_slice(&raw).map_err(|e| {
            let message = e.to_string();
            match message.strip_prefix("unknown field ") {
                Some(rest) => {
                    let field = rest.split('`').nth(1).unwrap_or_default().to_owned();
                    invalid(
                        format!("Unrecognized request argument supplied: {field}"),
                        &field,
                    )
                }
                None => GatewayError::InvalidJson(message),
            }
        })?
    };
    let mut seconds = None;
    if let Some(after) = mint.expires_after {
        if let Some(anchor) = after.anchor.filter(|a| a != "created_at") {
            let err = client_token::GrantError::Anchor(anchor.chars().take(40).collect());
            return Err(invalid(err.to_string(), err.param()));
        }
        seconds = after.seconds;
    }
    let session = match mint.session {
        None => None,
        Some(session) if session.get().len() > MAX_SESSION => {
            return Err(invalid(
                format!("`session` is larger than {MAX_SESSION} bytes."),
                "session",
            ))
        }
        Some(session) => {
            let value: serde_json::Value = serde_json::from_str(session.get())
                .map_err(|e| GatewayError::InvalidJson(e.to_string()))?;
            if !value.is_object() {
                return Err(invalid("`session` must be an object.", "session"));
            }
            Some(value)
        }
    };
    // A session's model is the token's model unless the minter names the models.
    let session_model = session
        .as_ref()
        .and_then(|s| s.get("model"))
        .and_then(|m| m.as_str())
        .map(str::to_owned);
    let models = match (mint.models, session_model) {
        (Some(models), _) => models,
        (None, Some(model)) => vec![model],
        (None, None) => Vec::new(),
    };
    let ask = GrantAsk {
        seconds,
        scopes: mint.scopes,
        models,
        user: mint.user,
        max_requests: mint.max_requests,
        max_tokens: mint.max_tokens,
        allowed_origins: mint.allowed_origins.unwrap_or_default(),
    };
    let now = state.clock.now();
    let grant = ask
        .grant(&key.permissions, key.allowed_models(), now)
        .map_err(|err| invalid(err.to_string(), err.param()))?;
    if grant.scopes.is_empty() {
        return Err(invalid(
            "This key grants none of the scopes a client token could be given.",
            "scopes",
        ));
    }
    let secret = client_token::generate();
    let token = ClientToken {
        id: ClientTokenId::generate(),
        token_hash: state.hasher.hash(&secret),
        key_id: key.id.clone(),
        org_id: tollgate_core::OrgId::clone(&key.org_id),
        grant,
        session: session.as_ref().map(|s| s.to_string()),
        requests_used: 0,
        tokens_used: 0,
    };
    state
        .store
        .create_client_token(&token)
        .await
        .map_err(|err| {
            tracing::error!(error = %err, "a client token could not be stored");
            GatewayError::Internal
        })?;
    tracing::info!(key_id = %key.id, client_token = %token.id, expires_at = token.grant.expires_at.seconds(), "client token minted");
    for origin in &token.grant.allowed_origins {
        state.live_origins.minted(origin, token.grant.expires_at);
    }
    // Known here at once: its first use costs no lookup.
    state.client_tokens.remember(
        std::sync::Arc::new(tollgate_store::FoundClientToken {
            token: token.clone(),
            key_hash: key.hash,
        }),
        now,
    );
    let grant = &token.grant;
    // The effective session, as OpenAI answers it: an id, and the object its type names.
    let mut session = session.unwrap_or_else(|| serde_json::json!({ "type": "realtime" }));
    if let Some(session) = session.as_object_mut() {
        let kind = session
            .entry("type")
            .or_insert_with(|| "realtime".into())
            .clone();
        let object = match kind.as_str() {
            Some("transcription") => "realtime.transcription_session",
            _ => "realtime.session",
        };
        session.entry("object").or_insert_with(|| object.into());
        let suffix = token.id.as_str().trim_start_matches(ClientTokenId::PREFIX);
        session
            .entry("id")
            .or_insert_with(|| format!("sess_{suffix}").into());
    }
    let answer = serde_json::json!({
        "value": secret.expose(),
        "expires_at": grant.expires_at.seconds(),
        "session": session,
        "id": token.id.as_str(),
        "key_id": key.id.as_str(),
        "scopes": grant.scope_names(),
        "models": grant.models,
        "user": grant.user,
        "max_requests": grant.max_requests,
        "max_tokens": grant.max_tokens,
        "allowed_origins": grant.allowed_origins,
    });
    let mut response = axum::Json(answer).into_response();
    response.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    Ok(response)
}
