//! What a canonical `/v1` path and a method ask for: a metered endpoint, the model catalog, or
//! a pass-through group of OpenAI's API with the scope that guards it. The table is explicit:
//! a group that is not in it is OpenAI's 404 "Invalid URL", never forwarded under some
//! default scope. Only the methods OpenAI's API uses (GET, POST, DELETE) are ever forwarded.

use crate::permissions::{Access, Scope};

/// An endpoint whose `POST` runs a model and bills tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Responses,
    /// `POST /v1/responses/compact`: a model compacts a conversation (billed like a response).
    ResponsesCompact,
    Completions,
    Embeddings,
}

impl Endpoint {
    pub const ALL: [Endpoint; 5] = [
        Endpoint::ChatCompletions,
        Endpoint::Responses,
        Endpoint::ResponsesCompact,
        Endpoint::Completions,
        Endpoint::Embeddings,
    ];

    /// The endpoint at a canonical path.
    pub fn at(path: &str) -> Option<Endpoint> {
        Endpoint::ALL
            .into_iter()
            .find(|endpoint| endpoint.path() == path)
    }

    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "/v1/chat/completions",
            Endpoint::Responses => "/v1/responses",
            Endpoint::ResponsesCompact => "/v1/responses/compact",
            Endpoint::Completions => "/v1/completions",
            Endpoint::Embeddings => "/v1/embeddings",
        }
    }

    pub fn scope(self) -> Scope {
        match self {
            Endpoint::ChatCompletions | Endpoint::Completions => Scope::ChatCompletions,
            Endpoint::Responses | Endpoint::ResponsesCompact => Scope::Responses,
            Endpoint::Embeddings => Scope::Embeddings,
        }
    }

    /// Whether the endpoint takes `stream_options.include_usage`.
    pub fn takes_stream_options(self) -> bool {
        matches!(self, Endpoint::ChatCompletions | Endpoint::Completions)
    }
}

/// The methods the gateway knows; anything else is refused with 405 and never forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Delete,
}

impl Method {
    /// `None` for every method OpenAI's API does not use (HEAD, PUT, PATCH, TRACE, CONNECT, …).
    pub fn parse(name: &str) -> Option<Method> {
        match name {
            "GET" => Some(Method::Get),
            "POST" => Some(Method::Post),
            "DELETE" => Some(Method::Delete),
            _ => None,
        }
    }

    /// Reading is `Read`; creating, changing and deleting are `Write`.
    pub fn access(self) -> Access {
        match self {
            Method::Get => Access::Read,
            Method::Post | Method::Delete => Access::Write,
        }
    }
}

/// Whether a request that [`crate::path::canonicalize`] refused for an encoded `/` may still
/// be served: `GET /v1/models/{model}` with `/` in the id (the Node SDK writes
/// `meta-llama/Llama-3.1-8B` as `meta-llama%2FLlama-3.1-8B`). It is answered from Tollgate's
/// catalog and never forwarded, so no provider ever reads the path.
pub fn is_model_lookup(method: Option<Method>, raw_path: &str) -> bool {
    method == Some(Method::Get)
        && raw_path
            .strip_prefix("/v1/models/")
            .is_some_and(|id| !id.is_empty())
}

/// Where the admin API (OpenAI's organization endpoints) sits.
pub const ADMIN_API: &str = "/v1/organization";

/// Where the admin API's OpenAPI document is served (to anyone: it describes, it holds nothing).
pub const OPENAPI_DOCUMENT: &str = "/openapi.json";

/// Whether the control plane answers a canonical path: the admin API or its document.
pub fn is_control_plane(path: &str) -> bool {
    is_admin_api(path) || path == OPENAPI_DOCUMENT
}

/// Where the web console lives.
pub const CONSOLE: &str = "/console";

/// Whether a canonical path is the web console's: `/` (which opens it) and `/console/...`.
pub fn is_console(path: &str) -> bool {
    path == "/"
        || path
            .strip_prefix(CONSOLE)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Whether a canonical path is the admin API's: answered by the control plane with admin keys,
/// never by the data plane and never forwarded.
pub fn is_admin_api(path: &str) -> bool {
    path.strip_prefix(ADMIN_API)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// `POST` to a metered endpoint.
    Metered(Endpoint),
    /// `GET /v1/models`.
    ModelList,
    /// `GET /v1/models/{model}`; the id may hold `/` (`meta-llama/Llama-3.1-8B`).
    Model(&'a str),
    /// Forwarded to the default provider as it is, under `scope`.
    PassThrough { scope: Scope, access: Access },
    /// `POST /v1/realtime/client_secrets`: Tollgate mints a client token (`ek_...`) for the key.
    ClientSecrets,
    /// `GET /v1/realtime` upgraded to a WebSocket: a Realtime session, proxied and metered.
    Realtime,
}

/// Why a request has no target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unrouted {
    /// 404 "Invalid URL".
    NotFound,
    /// 405 "Method not allowed".
    MethodNotAllowed,
}

/// A group of OpenAI's API passed through to the provider: every path at or under `prefix`.
struct Group {
    prefix: &'static str,
    scope: Scope,
    /// Whether paths under the prefix exist (`/v1/files/{id}`), or only the prefix itself.
    nested: bool,
}

const fn group(prefix: &'static str, scope: Scope, nested: bool) -> Group {
    Group {
        prefix,
        scope,
        nested,
    }
}

/// OpenAI's path groups that Tollgate forwards, and the scope of each. Answered apart from them:
/// `/v1/realtime` (a WebSocket, see [`Target::Realtime`]) and its client secrets (Tollgate's
/// own client tokens). Left out on purpose: the rest of `realtime`, `assistants` and
/// `threads` (retired by OpenAI in August 2026), `organization` and `projects` (Tollgate's own
/// admin API), and anything OpenAI does not have.
const GROUPS: &[Group] = &[
    // Stored chat completions: list, retrieve, update, delete, messages.
    group("/v1/chat/completions", Scope::ChatCompletions, true),
    group("/v1/completions", Scope::ChatCompletions, false),
    group("/v1/embeddings", Scope::Embeddings, false),
    // Stored responses, input items, cancel, input token counts (compaction is metered).
    group("/v1/responses", Scope::Responses, true),
    group("/v1/conversations", Scope::Responses, true),
    group("/v1/containers", Scope::Responses, true),
    group("/v1/files", Scope::Files, true),
    group("/v1/uploads", Scope::Files, true),
    group("/v1/vector_stores", Scope::Files, true),
    group("/v1/images", Scope::Images, true),
    group("/v1/videos", Scope::Images, true),
    group("/v1/audio", Scope::Audio, true),
    group("/v1/moderations", Scope::Moderations, false),
    group("/v1/batches", Scope::Batches, true),
    group("/v1/fine_tuning", Scope::FineTuning, true),
    group("/v1/evals", Scope::FineTuning, true),
    // Deleting a fine-tuned model (reading models is answered from Tollgate's catalog).
    group("/v1/models", Scope::Models, true),
];

/// Where a request for a canonical path (see [`crate::path::canonicalize`]) under `/v1` goes.
pub fn route<'a>(method: Option<Method>, path: &'a str) -> Result<Target<'a>, Unrouted> {
    if path == "/v1/realtime" {
        return match method {
            Some(Method::Get) => Ok(Target::Realtime),
            _ => Err(Unrouted::MethodNotAllowed),
        };
    }
    if path == "/v1/realtime/client_secrets" {
        return match method {
            Some(Method::Post) => Ok(Target::ClientSecrets),
            _ => Err(Unrouted::MethodNotAllowed),
        };
    }
    let group = GROUPS
        .iter()
        .find(|g| {
            path.strip_prefix(g.prefix)
                .is_some_and(|rest| rest.is_empty() || (g.nested && rest.starts_with('/')))
        })
        .ok_or(Unrouted::NotFound)?;
    let method = method.ok_or(Unrouted::MethodNotAllowed)?;
    let exact = path.len() == group.prefix.len();
    if let Some(endpoint) = Endpoint::at(path) {
        return match method {
            Method::Post => Ok(Target::Metered(endpoint)),
            // Listing stored chat completions.
            Method::Get if endpoint == Endpoint::ChatCompletions => Ok(Target::PassThrough {
                scope: group.scope,
                access: Access::Read,
            }),
            _ => Err(Unrouted::MethodNotAllowed),
        };
    }
    if group.prefix == "/v1/models" {
        return match (method, exact) {
            (Method::Get, true) => Ok(Target::ModelList),
            (Method::Get, false) => Ok(Target::Model(&path[group.prefix.len() + 1..])),
            (Method::Delete, false) => Ok(Target::PassThrough {
                scope: Scope::Models,
                access: Access::Write,
            }),
            _ => Err(Unrouted::MethodNotAllowed),
        };
    }
    if !group.nested && method != Method::Post {
        return Err(Unrouted::MethodNotAllowed);
    }
    Ok(Target::PassThrough {
        scope: group.scope,
        access: method.access(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET: Option<Method> = Some(Method::Get);
    const POST: Option<Method> = Some(Method::Post);
    const DELETE: Option<Method> = Some(Method::Delete);

    #[test]
    fn metered_endpoints_are_their_exact_paths_posted() {
        for endpoint in Endpoint::ALL {
            assert_eq!(Endpoint::at(endpoint.path()), Some(endpoint));
            assert_eq!(route(POST, endpoint.path()), Ok(Target::Metered(endpoint)));
            assert_eq!(
                route(DELETE, endpoint.path()),
                Err(Unrouted::MethodNotAllowed)
            );
            assert_eq!(
                route(None, endpoint.path()),
                Err(Unrouted::MethodNotAllowed)
            );
        }
        assert_eq!(Endpoint::at("/v1/chat/completions/x"), None);
    }

    #[test]
    fn stored_objects_pass_through_under_their_group_scope() {
        let pass = |scope, access| Ok(Target::PassThrough { scope, access });
        assert_eq!(
            route(GET, "/v1/chat/completions"),
            pass(Scope::ChatCompletions, Access::Read)
        );
        assert_eq!(
            route(DELETE, "/v1/chat/completions/chatcmpl-1"),
            pass(Scope::ChatCompletions, Access::Write)
        );
        assert_eq!(
            route(GET, "/v1/responses/resp_1/input_items"),
            pass(Scope::Responses, Access::Read)
        );
        assert_eq!(route(GET, "/v1/responses"), Err(Unrouted::MethodNotAllowed));
        assert_eq!(
            route(POST, "/v1/responses/compact"),
            Ok(Target::Metered(Endpoint::ResponsesCompact)),
            "compaction runs a model: metered"
        );
        assert_eq!(
            route(POST, "/v1/responses/input_tokens"),
            pass(Scope::Responses, Access::Write)
        );
        assert_eq!(route(GET, "/v1/files"), pass(Scope::Files, Access::Read));
        assert_eq!(
            route(POST, "/v1/vector_stores/vs_1/files"),
            pass(Scope::Files, Access::Write)
        );
        assert_eq!(
            route(POST, "/v1/fine_tuning/jobs"),
            pass(Scope::FineTuning, Access::Write)
        );
        assert_eq!(
            route(POST, "/v1/moderations"),
            pass(Scope::Moderations, Access::Write)
        );
        assert_eq!(
            route(GET, "/v1/moderations"),
            Err(Unrouted::MethodNotAllowed)
        );
        assert_eq!(route(GET, "/v1/files/f"), pass(Scope::Files, Access::Read));
    }

    #[test]
    fn models_are_answered_from_the_catalog_except_deletion() {
        assert_eq!(route(GET, "/v1/models"), Ok(Target::ModelList));
        assert_eq!(route(GET, "/v1/models/gpt-4o"), Ok(Target::Model("gpt-4o")));
        assert_eq!(
            route(GET, "/v1/models/meta-llama/Llama-3.1-8B"),
            Ok(Target::Model("meta-llama/Llama-3.1-8B"))
        );
        assert_eq!(
            route(DELETE, "/v1/models/ft:gpt-4o:acme::1"),
            Ok(Target::PassThrough {
                scope: Scope::Models,
                access: Access::Write
            })
        );
        assert_eq!(route(POST, "/v1/models"), Err(Unrouted::MethodNotAllowed));
        assert!(is_model_lookup(GET, "/v1/models/meta-llama%2FLlama-3.1-8B"));
        assert!(
            !is_model_lookup(DELETE, "/v1/models/a%2Fb"),
            "deletion is forwarded"
        );
        assert!(!is_model_lookup(GET, "/v1/models/"));
        assert!(!is_model_lookup(GET, "/v1/files/a%2Fb"));
        assert_eq!(route(DELETE, "/v1/models"), Err(Unrouted::MethodNotAllowed));
    }

    #[test]
    fn client_secrets_are_minted_by_post_only() {
        assert_eq!(
            route(POST, "/v1/realtime/client_secrets"),
            Ok(Target::ClientSecrets)
        );
        assert_eq!(
            route(GET, "/v1/realtime/client_secrets"),
            Err(Unrouted::MethodNotAllowed)
        );
        assert_eq!(
            route(None, "/v1/realtime/client_secrets"),
            Err(Unrouted::MethodNotAllowed)
        );
        assert_eq!(route(GET, "/v1/realtime"), Ok(Target::Realtime));
        assert_eq!(route(POST, "/v1/realtime"), Err(Unrouted::MethodNotAllowed));
    }

    #[test]
    fn unknown_groups_and_near_misses_are_not_found() {
        for path in [
            "/v1",
            "/v1/chat",
            "/v1/chat/completionsx",
            "/v1/chat/other",
            "/v1/completions/x",
            "/v1/embeddings/x",
            "/v1/moderations/x",
            "/v1/filesx",
            "/v1/admin/x",
            "/v1/organization/projects",
            "/v1/realtime/client_secrets/x",
            "/v1/realtime/sessions",
            "/v1/assistants",
            "/v1/threads/t/runs",
            "/v2/chat/completions",
            "/V1/chat/completions",
        ] {
            assert_eq!(route(POST, path), Err(Unrouted::NotFound), "{path}");
            assert_eq!(route(None, path), Err(Unrouted::NotFound), "{path}");
        }
    }
}
