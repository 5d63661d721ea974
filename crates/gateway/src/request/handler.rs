//! The one place a request's steps are put in order, once it is authenticated and its
//! canonical path has a target: the target's handler (each checks the key's scope for what it
//! serves: a pass-through group's here, the others' in their handlers, which know the access
//! they need), and OpenAI's identity headers on whatever comes back.

use crate::error::GatewayError;
use crate::metrics::Served;
use crate::request::auth::{identified, Principal};
use crate::request::call::Call;
use crate::request::{client_secrets, metered, models, pass_through, realtime};
use crate::state::AppState;
use axum::body::Body;
use axum::http::request::Parts;
use axum::response::Response;
use tollgate_core::endpoints::Target;

/// Serves an authenticated request for `path` (canonical), which the endpoint table sends to
/// `target`. Every response carries the key's organization and project.
pub(crate) async fn serve(
    state: AppState,
    principal: Principal,
    target: Target<'_>,
    path: &str,
    mut parts: Parts,
    body: Body,
) -> Response {
    let key = principal.key.clone();
    let served = Served(match target {
        Target::ModelList | Target::Model(_) => "models",
        Target::Metered(endpoint) => endpoint.scope().as_str(),
        Target::PassThrough { scope, .. } => scope.as_str(),
        Target::ClientSecrets => "client_secrets",
        Target::Realtime => "realtime",
    });
    let reply = match target {
        Target::ModelList => models::list(&state, &principal),
        Target::Model(id) => models::retrieve(&state, &principal, id),
        Target::Metered(endpoint) => {
            let call = Call::new(state, principal, &mut parts.extensions);
            metered::serve(call, endpoint, parts.uri.query(), parts.headers, body).await
        }
        Target::PassThrough { scope, access } => match principal.require(scope, access) {
            // Stored objects, files, audio, images, ...: what a browser has no business
            // reaching, and what goes to the provider unmetered by token and unchecked by model.
            Ok(()) if principal.token.is_some() => Err(GatewayError::ClientTokenCannot(
                "reach this endpoint: client tokens call models (chat completions, responses, completions, embeddings, the Realtime API) and list them",
            )),
            Ok(()) => {
                let call = Call::new(state, principal, &mut parts.extensions);
                pass_through::serve(call, path, parts, body).await
            }
            Err(err) => Err(err),
        },
        Target::ClientSecrets => {
            let call = Call::new(state, principal, &mut parts.extensions);
            client_secrets::mint(call, &parts.headers, body).await
        }
        Target::Realtime => {
            let call = Call::new(state, principal, &mut parts.extensions);
            let query = parts.uri.query().map(str::to_owned);
            realtime::serve(call, query.as_deref(), parts).await
        }
    };
    let mut response = identified(&key, reply);
    response.extensions_mut().insert(served);
    response
}
