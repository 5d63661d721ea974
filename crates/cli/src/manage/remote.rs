//! Management on a running server, through its admin API (`/v1/organization/...`) with an
//! admin key: the CLI's remote mode. Every call is one HTTPS (or HTTP) request; the server's
//! answers are the views the CLI prints, and its errors (OpenAI's envelope) become the CLI's
//! messages and exit codes.

use super::{Manage, Result};
use crate::failure::Failure;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::time::Duration;
use tollgate_control::{
    BudgetRequest, BudgetStatus, BudgetView, CreatedKeyView, HolderRequest, KeyOwnerRequest,
    KeyView, LimitsReport, NewKey, ProjectView, RuleView, ServiceAccountView,
};
use tollgate_core::budget::{format_utc_offset, percent};
use tollgate_core::duration::Span;
use tollgate_core::limit_rules::RateLimits;
use tollgate_core::network::IpAllowList;
use tollgate_core::{KeyKind, MicroUsd, Permissions, UnixTime};
use tollgate_store::{AuditEntry, UsageEvent, UsageGrouping, UsageRow};

/// The environment variable holding the admin key (never a flag: command lines are visible to
/// every user of the machine).
pub const ADMIN_KEY_ENV: &str = "TOLLGATE_ADMIN_KEY";

const EXT: &str = "/v1/organization/x-tollgate";

/// A running Tollgate, reached with an admin key.
pub struct Remote {
    base: reqwest::Url,
    key: String,
    http: reqwest::Client,
}

impl Remote {
    /// `url` is the server's address (`https://tollgate.example.com`, with or without `/v1`).
    pub fn new(url: &str, key: Option<String>) -> Result<Remote> {
        let key = key.filter(|k| !k.trim().is_empty()).ok_or_else(|| {
            Failure::environment(format!(
                "--url/TOLLGATE_URL needs an admin key in {ADMIN_KEY_ENV} (sk-admin-...; the first run printed one)"
            ))
        })?;
        let trimmed = url.trim().trim_end_matches('/');
        let trimmed = trimmed.strip_suffix("/v1").unwrap_or(trimmed);
        let base = reqwest::Url::parse(trimmed)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| {
                Failure::invalid(format!(
                    "`{url}` is not a server address: give one like https://tollgate.example.com"
                ))
            })?;
        if base.scheme() == "http" && !is_loopback(&base) {
            tracing::warn!(
                "{base} is plain HTTP: the admin key crosses the network unencrypted; use https://"
            );
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Failure::environment(format!("cannot make an HTTP client: {e}")))?;
        Ok(Remote {
            base,
            key: key.trim().to_owned(),
            http,
        })
    }

    /// `path` with each segment in `segments` percent-encoded (names may hold spaces).
    fn url(&self, path: &str, segments: &[&str]) -> reqwest::Url {
        let mut url = self.base.clone();
        {
            let mut parts = match url.path_segments_mut() {
                Ok(parts) => parts,
                Err(()) => return self.base.clone(),
            };
            parts.pop_if_empty();
            parts.extend(path.trim_start_matches('/').split('/'));
            parts.extend(segments);
        }
        url
    }

    async fn send<T: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> Result<T> {
        let response = request.bearer_auth(&self.key).send().await.map_err(|e| {
            Failure::environment(format!(
                "cannot reach Tollgate at {}: {}",
                self.base,
                describe(&e)
            ))
        })?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| {
            Failure::environment(format!("the answer from {} broke off: {e}", self.base))
        })?;
        if !status.is_success() {
            return Err(failure(status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| Failure {
            code: 1,
            message: format!(
                "{} answered with something this tollgate does not understand ({e}); is it the same version?",
                self.base
            ),
        })
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        segments: &[&str],
        query: &[(&str, String)],
    ) -> Result<T> {
        self.send(self.http.get(self.url(path, segments)).query(query))
            .await
    }

    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        segments: &[&str],
        body: Value,
    ) -> Result<T> {
        self.send(self.http.post(self.url(path, segments)).json(&body))
            .await
    }

    /// A project named by id or name, resolved here (exactly, an id before a name, as the local
    /// CLI does), so that only ids ever stand in a request's path.
    async fn project(&self, id_or_name: &str) -> Result<ProjectView> {
        let projects: Vec<ProjectView> = self
            .list(
                &format!("{EXT}/projects"),
                &[("include_archived", "true".to_owned())],
            )
            .await?;
        let by_id = projects.iter().find(|p| p.id == id_or_name);
        by_id
            .or_else(|| projects.iter().find(|p| p.name == id_or_name))
            .cloned()
            .ok_or_else(|| Failure {
                code: 4,
                message: format!("project {id_or_name} was not found"),
            })
    }

    async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<T>> {
        let page: Page<T> = self.get(path, &[], query).await?;
        Ok(page.data)
    }
}

#[derive(serde::Deserialize)]
struct Page<T> {
    data: Vec<T>,
    #[serde(default)]
    has_more: bool,
    #[serde(default)]
    last_id: Option<String>,
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

fn describe(err: &reqwest::Error) -> String {
    use std::error::Error;
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(inner) = source {
        text = format!("{text}: {inner}");
        source = inner.source();
    }
    text
}

/// The server's error as the CLI reports it: OpenAI's envelope's message, and the exit code
/// of the same failure on the local database.
fn failure(status: reqwest::StatusCode, body: &[u8]) -> Failure {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("the server answered {status}"));
    let code = match status.as_u16() {
        400 | 413 | 422 => 2,
        401 | 403 => 3,
        404 => 4,
        409 => 5,
        _ => 1,
    };
    Failure { code, message }
}

/// A key id checked here, as the local CLI checks it: a secret pasted in its place is refused
/// (masked) before it could be sent anywhere.
fn key_id(id: &str) -> Result<String> {
    Ok(tollgate_control::parse_key_id(id)?.as_str().to_owned())
}

/// A holder as the extensions take it: `project_id` or `key_id` (neither: the organization).
fn holder_fields(holder: &HolderRequest) -> Result<Value> {
    Ok(match holder {
        HolderRequest::Organization => json!({}),
        HolderRequest::Project(p) => json!({"project_id": p}),
        HolderRequest::Key(k) => json!({"key_id": key_id(k)?}),
    })
}

fn holder_query(holder: &HolderRequest) -> Result<Vec<(&'static str, String)>> {
    Ok(match holder {
        HolderRequest::Organization => vec![],
        HolderRequest::Project(p) => vec![("project_id", p.clone())],
        HolderRequest::Key(k) => vec![("key_id", key_id(k)?)],
    })
}

fn merge(mut base: Value, extra: Value) -> Value {
    if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
        base.extend(extra);
    }
    base
}

/// Dollars as the API takes them: a decimal string, exact.
fn dollars_text(amount: MicroUsd) -> String {
    let sign = if amount.0 < 0 { "-" } else { "" };
    let abs = amount.0.unsigned_abs();
    format!("{sign}{}.{:06}", abs / 1_000_000, abs % 1_000_000)
}

fn budget_body(request: &BudgetRequest) -> Value {
    json!({
        "limit_usd": dollars_text(request.limit),
        "period": request.period.as_str(),
        "timezone": format_utc_offset(request.utc_offset_secs),
        "alerts_percent": request.alerts_permille.iter().map(|p| percent(*p)).collect::<Vec<_>>(),
    })
}

fn permissions_fields(permissions: &Permissions) -> Value {
    match permissions {
        Permissions::All => json!({"permissions": "all"}),
        Permissions::ReadOnly => json!({"permissions": "read-only"}),
        Permissions::Restricted { scopes } => json!({
            "permissions": "restricted",
            "scopes": scopes
                .iter()
                .map(|(scope, access)| format!("{}:{}", scope.as_str(), access.as_str()))
                .collect::<Vec<_>>(),
        }),
    }
}

fn limits_value(limits: &RateLimits) -> Value {
    serde_json::to_value(limits).unwrap_or(Value::Null)
}

impl Manage for Remote {
    fn now(&self) -> UnixTime {
        tollgate_core::Clock::now(&tollgate_core::SystemClock)
    }

    async fn create_key(&self, request: NewKey) -> Result<CreatedKeyView> {
        let expires = request.expires_in.map(|span| span.seconds());
        let owner = match &request.owner {
            KeyOwnerRequest::Project(Some(project)) => json!({"project_id": project}),
            KeyOwnerRequest::ServiceAccount(account) => json!({"service_account_id": account}),
            KeyOwnerRequest::Admin => json!({"admin": true}),
            KeyOwnerRequest::Project(None) => json!({}),
        };
        let mut body = merge(
            json!({
                "name": request.name,
                "models": request.allowed_models.patterns(),
                "allowed_ips": request.allowed_ips.ranges().iter().map(|r| r.to_string()).collect::<Vec<_>>(),
                "expires_in_seconds": expires,
            }),
            merge(owner, permissions_fields(&request.permissions)),
        );
        if !request.limits.is_empty() {
            body["rate_limits"] = limits_value(&request.limits);
        }
        if let Some(budget) = &request.budget {
            body["budget"] = budget_body(budget);
        }
        self.post(&format!("{EXT}/keys"), &[], body).await
    }

    async fn keys(&self, project: Option<&str>, kind: Option<KeyKind>) -> Result<Vec<KeyView>> {
        let mut query = vec![("limit", "100".to_owned())];
        if let Some(project) = project {
            query.push(("project_id", self.project(project).await?.id));
        }
        if let Some(kind) = kind {
            query.push(("kind", kind.as_str().to_owned()));
        }
        let mut keys = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut page_query = query.clone();
            if let Some(after) = &after {
                page_query.push(("after", after.clone()));
            }
            let page: Page<KeyView> = self.get(&format!("{EXT}/keys"), &[], &page_query).await?;
            keys.extend(page.data);
            match (page.has_more, page.last_id) {
                (true, Some(last)) => after = Some(last),
                _ => break,
            }
        }
        // The API lists oldest first; the CLI newest first.
        keys.reverse();
        Ok(keys)
    }

    async fn key(&self, id: &str) -> Result<KeyView> {
        let id = key_id(id)?;
        self.get(&format!("{EXT}/keys"), &[&id], &[]).await
    }

    async fn rename_key(&self, id: &str, name: &str) -> Result<KeyView> {
        let id = key_id(id)?;
        self.post(&format!("{EXT}/keys"), &[&id], json!({"name": name}))
            .await
    }

    async fn revoke_key(&self, id: &str) -> Result<(KeyView, bool)> {
        let before = self.key(id).await?;
        if before.revoked_at.is_some() {
            return Ok((before, true));
        }
        let key: KeyView = self
            .post(&format!("{EXT}/keys"), &[&before.id, "revoke"], json!({}))
            .await?;
        Ok((key, false))
    }

    async fn unsuspend_key(&self, id: &str) -> Result<(KeyView, bool)> {
        #[derive(serde::Deserialize)]
        struct Lifted {
            #[serde(flatten)]
            key: KeyView,
            suspension_lifted: bool,
        }
        let id = key_id(id)?;
        let lifted: Lifted = self
            .post(&format!("{EXT}/keys"), &[&id, "unsuspend"], json!({}))
            .await?;
        Ok((lifted.key, lifted.suspension_lifted))
    }

    async fn rotate_key(&self, id: &str, grace: Span) -> Result<(KeyView, CreatedKeyView)> {
        #[derive(serde::Deserialize)]
        struct Rotated {
            old: KeyView,
            new: CreatedKeyView,
        }
        let id = key_id(id)?;
        let rotated: Rotated = self
            .post(
                &format!("{EXT}/keys"),
                &[&id, "rotate"],
                json!({"grace_seconds": grace.seconds()}),
            )
            .await?;
        Ok((rotated.old, rotated.new))
    }

    async fn expire_key(&self, id: &str, after: Span) -> Result<KeyView> {
        let id = key_id(id)?;
        self.post(
            &format!("{EXT}/keys"),
            &[&id],
            json!({"expires_in_seconds": after.seconds()}),
        )
        .await
    }

    async fn create_project(&self, name: &str) -> Result<ProjectView> {
        self.post(&format!("{EXT}/projects"), &[], json!({"name": name}))
            .await
    }

    async fn projects(&self, include_archived: bool) -> Result<Vec<ProjectView>> {
        self.list(
            &format!("{EXT}/projects"),
            &[("include_archived", include_archived.to_string())],
        )
        .await
    }

    async fn set_project_models(&self, project: &str, models: &[String]) -> Result<ProjectView> {
        let project = self.project(project).await?;
        self.post(
            &format!("{EXT}/projects"),
            &[&project.id, "rules"],
            json!({"models": models}),
        )
        .await
    }

    async fn set_project_ips(&self, project: &str, list: IpAllowList) -> Result<ProjectView> {
        let ranges: Vec<String> = list.ranges().iter().map(|r| r.to_string()).collect();
        let project = self.project(project).await?;
        self.post(
            &format!("{EXT}/projects"),
            &[&project.id, "rules"],
            json!({"allowed_ips": ranges}),
        )
        .await
    }

    async fn archive_project(&self, project: &str) -> Result<ProjectView> {
        let project = self.project(project).await?;
        self.post(
            &format!("{EXT}/projects"),
            &[&project.id, "archive"],
            json!({}),
        )
        .await
    }

    async fn create_service_account(
        &self,
        project: Option<&str>,
        name: &str,
    ) -> Result<ServiceAccountView> {
        self.post(
            &format!("{EXT}/service_accounts"),
            &[],
            json!({"name": name, "project": project}),
        )
        .await
    }

    async fn service_accounts(&self, project: Option<&str>) -> Result<Vec<ServiceAccountView>> {
        let query: Vec<(&str, String)> = project
            .map(|p| vec![("project", p.to_owned())])
            .unwrap_or_default();
        self.list(&format!("{EXT}/service_accounts"), &query).await
    }

    async fn set_limits(
        &self,
        holder: &HolderRequest,
        model: &str,
        limits: RateLimits,
    ) -> Result<RuleView> {
        tollgate_control::require_limits(&limits)?;
        let body = merge(
            merge(holder_fields(holder)?, json!({"model": model})),
            limits_value(&limits),
        );
        self.post(&format!("{EXT}/limits"), &[], body).await
    }

    async fn remove_limits(&self, holder: &HolderRequest, model: &str) -> Result<()> {
        let body = merge(holder_fields(holder)?, json!({"model": model}));
        let _: Value = self
            .post(&format!("{EXT}/limits/remove"), &[], body)
            .await?;
        Ok(())
    }

    async fn limit_rules(&self) -> Result<Vec<RuleView>> {
        self.list(&format!("{EXT}/limits"), &[]).await
    }

    async fn limits_report(&self, holder: &HolderRequest) -> Result<LimitsReport> {
        self.get(&format!("{EXT}/limits/report"), &[], &holder_query(holder)?)
            .await
    }

    async fn set_budget(
        &self,
        holder: &HolderRequest,
        request: BudgetRequest,
    ) -> Result<BudgetView> {
        let body = merge(holder_fields(holder)?, budget_body(&request));
        self.post(&format!("{EXT}/budgets"), &[], body).await
    }

    async fn remove_budget(&self, holder: &HolderRequest) -> Result<()> {
        let _: Value = self
            .post(
                &format!("{EXT}/budgets/remove"),
                &[],
                holder_fields(holder)?,
            )
            .await?;
        Ok(())
    }

    async fn budgets(&self) -> Result<Vec<BudgetStatus>> {
        self.list(&format!("{EXT}/budgets"), &[]).await
    }

    async fn usage(
        &self,
        grouping: UsageGrouping,
        since: UnixTime,
        until: UnixTime,
    ) -> Result<Vec<UsageRow>> {
        let group_by = match grouping {
            UsageGrouping::Day => "day",
            UsageGrouping::Model => "model",
            UsageGrouping::Key => "key",
            UsageGrouping::Project => "project",
        };
        self.list(
            &format!("{EXT}/usage/report"),
            &[
                ("group_by", group_by.to_owned()),
                ("since", since.utc_date()),
                ("until", until.utc_date()),
            ],
        )
        .await
    }

    async fn recent_requests(&self, key: Option<&str>, limit: i64) -> Result<Vec<UsageEvent>> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(key) = key {
            query.push(("key_id", key_id(key)?));
        }
        self.list(&format!("{EXT}/usage/events"), &query).await
    }

    async fn audit(&self, resource: Option<&str>, limit: i64) -> Result<Vec<AuditEntry>> {
        let mut query = vec![("limit", limit.to_string())];
        if let Some(resource) = resource {
            query.push(("resource_id", resource.to_owned()));
        }
        self.list(&format!("{EXT}/audit"), &query).await
    }

    async fn project_objects(
        &self,
        project: &str,
        kind: Option<tollgate_core::objects::ObjectKind>,
        limit: i64,
    ) -> Result<Vec<super::ObjectRow>> {
        let project = self.project(project).await?;
        let mut query = vec![("limit", limit.to_string())];
        if let Some(kind) = kind {
            query.push(("kind", kind.as_str().to_owned()));
        }
        let page: Page<super::ObjectRow> = self
            .get(
                &format!("{EXT}/projects"),
                &[&project.id, "objects"],
                &query,
            )
            .await?;
        Ok(page.data)
    }

    async fn adopt_objects(
        &self,
        project: &str,
        provider: &str,
        ids: &[String],
    ) -> Result<Vec<super::Adopted>> {
        let project = self.project(project).await?;
        let page: Page<super::Adopted> = self
            .post(
                &format!("{EXT}/projects"),
                &[&project.id, "objects"],
                json!({"ids": ids, "provider": provider}),
            )
            .await?;
        Ok(page.data)
    }
}
