//! `/v1/organization/projects/{project_id}/rate_limits`: a project's per-model rate limits in
//! OpenAI's shape, over Tollgate's project-level limit rules (one `project.rate_limit` per
//! model or pattern the project has a rule for; its id is `rl-` and the model).
//!
//! OpenAI's object has requests and tokens per minute and requests per day; Tollgate's tokens
//! per day and concurrency are shown beside them when set. In both directions `0` means "not
//! limited here": listing shows it for a metric the rule leaves open, and updating to it stops
//! limiting that metric (a rule left with none is removed).

use crate::auth::Caller;
use crate::body::JsonBody;
use crate::error::AdminError;
use crate::list::{List, Listed};
use crate::params::Params;
use crate::projects::project;
use crate::AdminState;
use axum::extract::{Path, RawQuery, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use tollgate_control::HolderRequest;
use tollgate_core::holder::Level;
use tollgate_core::limit_rules::{LimitRule, Metric, RateLimits};
use utoipa::ToSchema;

/// `project.rate_limit`
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectRateLimitObject {
    pub object: &'static str,
    /// `rl-` and the model (or pattern).
    pub id: String,
    pub model: String,
    /// 0: not limited here.
    pub max_requests_per_1_minute: u64,
    /// 0: not limited here.
    pub max_tokens_per_1_minute: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_requests_per_1_day: Option<u64>,
    /// Tollgate's own: tokens per day, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_tokens_per_1_day: Option<u64>,
    /// Tollgate's own: requests in flight at once, when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_requests: Option<u64>,
}

impl Listed for ProjectRateLimitObject {
    fn id(&self) -> &str {
        &self.id
    }
}

const ID_PREFIX: &str = "rl-";

/// A model name as it may stand in an id that is a path segment: letters, digits and
/// `.-_*:@+` as they are, every other byte as `~` and two hex digits (`meta-llama/Llama-3`
/// is `meta-llama~2FLlama-3`), since a path may not carry an encoded `/` or `%`.
fn escape(model: &str) -> String {
    let mut out = String::with_capacity(model.len());
    for byte in model.bytes() {
        if byte.is_ascii_alphanumeric() || b".-_*:@+".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("~{byte:02X}"));
        }
    }
    out
}

/// The model an id names; `None` for a broken escape.
fn unescape(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if first == b'~' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(first);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

impl ProjectRateLimitObject {
    fn new(model: &str, limits: RateLimits) -> ProjectRateLimitObject {
        ProjectRateLimitObject {
            object: "project.rate_limit",
            id: format!("{ID_PREFIX}{}", escape(model)),
            model: model.to_owned(),
            max_requests_per_1_minute: limits.rpm.unwrap_or(0),
            max_tokens_per_1_minute: limits.tpm.unwrap_or(0),
            max_requests_per_1_day: limits.rpd,
            max_tokens_per_1_day: limits.tpd,
            max_concurrent_requests: limits.concurrent,
        }
    }

    fn from_rule(rule: &LimitRule) -> ProjectRateLimitObject {
        ProjectRateLimitObject::new(rule.model.as_str(), rule.limits)
    }
}

#[utoipa::path(
    get,
    path = "/v1/organization/projects/{project_id}/rate_limits",
    tag = "Projects",
    summary = "List a project's rate limits per model",
    params(
        ("project_id" = String, Path, description = "The project's id (`proj_...`)."),
        ("limit" = Option<i64>, Query, description = "1 to 100 (clamped); default 100."),
        ("after" = Option<String>, Query, description = "The last id of the previous page."),
        ("before" = Option<String>, Query, description = "The first id of the next page: the page just before it."),
    ),
    responses((status = 200, body = List<ProjectRateLimitObject>), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn list(
    State(state): State<AdminState>,
    _caller: Caller,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<List<ProjectRateLimitObject>>, AdminError> {
    let params = Params::parse(query.as_deref());
    let project = project(&state, &id).await?;
    let rules: Vec<ProjectRateLimitObject> = state
        .control
        .limit_rules()
        .await?
        .iter()
        .filter(|r| r.holder.level == Level::Project && r.holder.id == project.id.as_str())
        .map(ProjectRateLimitObject::from_rule)
        .collect();
    List::page_with_default(rules, &params, 100)
}

/// The limits to change; a field left out keeps its value, `0` stops limiting that metric.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitBody {
    max_requests_per_1_minute: Option<u64>,
    max_tokens_per_1_minute: Option<u64>,
    max_requests_per_1_day: Option<u64>,
    /// Tollgate's own.
    max_tokens_per_1_day: Option<u64>,
    /// Tollgate's own.
    max_concurrent_requests: Option<u64>,
    /// Not metered by Tollgate: only null or 0 is taken.
    max_images_per_1_minute: Option<u64>,
    /// Not metered by Tollgate: only null or 0 is taken.
    max_audio_megabytes_per_1_minute: Option<u64>,
    /// Not metered by Tollgate: only null or 0 is taken.
    batch_1_day_max_input_tokens: Option<u64>,
}

impl RateLimitBody {
    /// What to set and what to stop limiting.
    fn change(&self) -> Result<(RateLimits, Vec<Metric>), AdminError> {
        for (name, value) in [
            ("max_images_per_1_minute", self.max_images_per_1_minute),
            (
                "max_audio_megabytes_per_1_minute",
                self.max_audio_megabytes_per_1_minute,
            ),
            (
                "batch_1_day_max_input_tokens",
                self.batch_1_day_max_input_tokens,
            ),
        ] {
            if value.is_some_and(|v| v > 0) {
                return Err(AdminError::param(
                    name,
                    format!("Tollgate does not limit '{name}'; it limits requests and tokens per minute and per day, and concurrent requests."),
                ));
            }
        }
        let mut set = RateLimits::default();
        let mut clear = Vec::new();
        for (metric, value) in [
            (Metric::RequestsPerMinute, self.max_requests_per_1_minute),
            (Metric::TokensPerMinute, self.max_tokens_per_1_minute),
            (Metric::RequestsPerDay, self.max_requests_per_1_day),
            (Metric::TokensPerDay, self.max_tokens_per_1_day),
            (Metric::Concurrent, self.max_concurrent_requests),
        ] {
            match value {
                None => {}
                Some(0) => clear.push(metric),
                Some(limit) => set.set(metric, limit),
            }
        }
        Ok((set, clear))
    }
}

#[utoipa::path(
    post,
    path = "/v1/organization/projects/{project_id}/rate_limits/{rate_limit_id}",
    tag = "Projects",
    summary = "Update a project's rate limit for a model (0 stops limiting a metric)",
    params(
        ("project_id" = String, Path, description = "The project's id (`proj_...`)."),
        ("rate_limit_id" = String, Path, description = "`rl-` and a model or pattern, e.g. `rl-gpt-4o`."),
    ),
    request_body = RateLimitBody,
    responses((status = 200, body = ProjectRateLimitObject), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn update(
    State(state): State<AdminState>,
    caller: Caller,
    Path((id, rate_limit_id)): Path<(String, String)>,
    JsonBody(body): JsonBody<RateLimitBody>,
) -> Result<Json<ProjectRateLimitObject>, AdminError> {
    let caller = caller.owner()?;
    let project = project(&state, &id).await?;
    crate::projects::refuse_archived(&project)?;
    let model = rate_limit_id
        .strip_prefix(ID_PREFIX)
        .or_else(|| rate_limit_id.strip_prefix("rl_"))
        // Only ids as they are written (`~2F`, not `~2f` or `~+2`) of names a model can have.
        .and_then(|escaped| unescape(escaped).filter(|m| escape(m) == escaped))
        .filter(|m| !m.is_empty() && !m.chars().any(char::is_control))
        .ok_or_else(|| AdminError::NotFound {
            what: "rate limit",
            id: rate_limit_id.clone(),
        })?;
    let model = model.as_str();
    let (set, clear) = body.change()?;
    let rule = state
        .control
        .update_limits(
            &caller.actor(),
            &HolderRequest::Project(project.id.as_str().to_owned()),
            model,
            set,
            &clear,
        )
        .await?;
    Ok(Json(match rule {
        Some(rule) => ProjectRateLimitObject::from_rule(&rule),
        None => ProjectRateLimitObject::new(model.trim(), RateLimits::default()),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_any_model_name_as_one_path_segment_and_back() {
        for model in [
            "gpt-4o",
            "gpt-4o*",
            "meta-llama/Llama-3.1-8B",
            "a~b",
            "ünïcode model",
            "50%/..",
        ] {
            let escaped = escape(model);
            assert!(
                !escaped.contains(['/', '%', ' ', '?', '#']),
                "{model} -> {escaped}"
            );
            assert_eq!(unescape(&escaped).as_deref(), Some(model));
        }
        assert_eq!(escape("meta-llama/Llama-3"), "meta-llama~2FLlama-3");
        assert_eq!(unescape("broken~2"), None);
        // Not canonical: lower-case hex or a sign reads as a different id.
        assert_ne!(escape(&unescape("a~2f").unwrap()), "a~2f");
        assert_eq!(unescape("broken~zz"), None);
    }
}
