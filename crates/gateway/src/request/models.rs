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
/// `model_not_found`. `id` is as it appears in the path, where escapes other than those of
/// unreserved characters are kept (`ft%3Agpt-4o...`, `meta-llama%2FLlama-3.1-8B`).
pub(crate) fn retrieve(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<Response, GatewayError> {
    principal.require(Scope::Models, Access::Read)?;
    let id = tollgate_core::path::percent_decode(id)
        .ok_or_else(|| GatewayError::ModelNotFound(id.to_owned()))?;
    let routes = state.catalog.routes();
    let resolved = routes
        .resolve(&id)
        .filter(|r| principal.check_model(&id, &r.model).is_ok())
        .ok_or_else(|| GatewayError::ModelNotFound(id.clone()))?;
    Ok(Json(Model::new(state, id, resolved.provider)).into_response())
}
