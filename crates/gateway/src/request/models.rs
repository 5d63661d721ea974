//! `GET /v1/models` and `GET /v1/models/{model}`, answered from Tollgate's routing catalog and
//! the key's model allow-lists: a key sees exactly the models it may use, and nothing is asked
//! of a provider or metered.

use crate::error::GatewayError;
use crate::request::auth::Principal;
use crate::state::AppState;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use tollgate_core::{Access, Scope};

#[derive(Serialize)]
struct ModelList {
    object: &'static str,
    data: Vec<Model>,
}

/// OpenAI's `model` object.
#[derive(Serialize)]
struct Model {
    id: String,
    object: &'static str,
    created: i64,
    owned_by: String,
}

impl Model {
    fn new(state: &AppState, id: String, provider: usize) -> Model {
        Model {
            id,
            object: "model",
            created: state.started_at.seconds(),
            owned_by: state
                .upstreams
                .get(provider)
                .map(|u| u.settings.name.clone())
                .unwrap_or_default(),
        }
    }
}

/// The models the configured routes offer that the key may use, in OpenAI's list shape.
pub(crate) fn list(state: &AppState, principal: &Principal) -> Result<Response, GatewayError> {
    principal.require(Scope::Models, Access::Read)?;
    let routes = state.catalog.routes();
    let data = routes
        .listable()
        .into_iter()
        .filter(|(id, _)| {
            let served = routes.resolve(id).map(|r| r.model).unwrap_or_default();
            principal.check_model(id, &served).is_ok()
        })
        .map(|(id, provider)| Model::new(state, id, provider))
        .collect();
    Ok(Json(ModelList {
        object: "list",
        data,
    })
    .into_response())
}

/// One model the key may use (any name the routes resolve, aliases and pattern matches
/// included); an unknown model and one the key may not use are alike OpenAI's 404
/// `model_not_found`. `id` is as it appears in the canonical path, where escapes other than
/// those of unreserved characters are kept (`ft%3Agpt-4o...`).
pub(crate) fn retrieve(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<Response, GatewayError> {
    principal.require(Scope::Models, Access::Read)?;
    let id = percent_decode(id).ok_or_else(|| GatewayError::ModelNotFound(id.to_owned()))?;
    let routes = state.catalog.routes();
    let resolved = routes
        .resolve(&id)
        .filter(|r| principal.check_model(&id, &r.model).is_ok())
        .ok_or_else(|| GatewayError::ModelNotFound(id.clone()))?;
    Ok(Json(Model::new(state, id, resolved.provider)).into_response())
}

/// `%XX` escapes decoded; `None` when the result is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|b| (*b as char).to_digit(16));
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_ids_are_read_with_their_escapes_decoded() {
        assert_eq!(
            percent_decode("ft%3Agpt-4o-mini%3Aacme%3A%3Aabc").as_deref(),
            Some("ft:gpt-4o-mini:acme::abc")
        );
        assert_eq!(
            percent_decode("meta-llama/Llama-3.1-8B").as_deref(),
            Some("meta-llama/Llama-3.1-8B")
        );
        assert_eq!(percent_decode("100%").as_deref(), Some("100%"));
        assert_eq!(percent_decode("%ff"), None);
    }
}
