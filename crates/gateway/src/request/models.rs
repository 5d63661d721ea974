use crate::error::GatewayError;
use crate::request::auth::{identified, Principal};
use crate::state::AppState;
use axum::extract::State;
use axum::response::Response;
use axum::Json;
use serde::Serialize;
use tollgate_core::{Access, Scope};

#[derive(Serialize)]
pub(crate) struct ModelList {
    object: &'static str,
    data: Vec<Model>,
}

#[derive(Serialize)]
struct Model {
    id: String,
    object: &'static str,
    created: i64,
    owned_by: String,
}

/// `GET /v1/models`: the models the configured routes offer, in OpenAI's list shape.
pub(crate) async fn list(State(state): State<AppState>, principal: Principal) -> Response {
    let key = principal.key.clone();
    identified(&key, models(&state, principal))
}

fn models(state: &AppState, principal: Principal) -> Result<Json<ModelList>, GatewayError> {
    principal.require(Scope::Models, Access::Read)?;
    let routes = state.catalog.routes();
    let data = routes
        .listable()
        .into_iter()
        .filter(|(id, _)| {
            let served = routes.resolve(id).map(|r| r.model).unwrap_or_default();
            principal.check_model(id, &served).is_ok()
        })
        .map(|(id, provider)| Model {
            id,
            object: "model",
            created: state.started_at.seconds(),
            owned_by: state
                .upstreams
                .get(provider)
                .map(|u| u.settings.name.clone())
                .unwrap_or_default(),
        })
        .collect();
    Ok(Json(ModelList {
        object: "list",
        data,
    }))
}
