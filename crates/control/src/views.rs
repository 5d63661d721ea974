//! How records are shown to people and scripts, the same through the CLI and the admin API:
//! the admin API's extensions answer with these views, the CLI prints them (`--json`) or draws
//! its tables from them, on the local database or, in remote mode, from the API's answers.

use serde::{Deserialize, Serialize};
use tollgate_core::budget::{dollars, format_utc_offset, Budget};
use tollgate_core::limit_rules::LimitRule;
use tollgate_core::network::IpAllowList;
use tollgate_core::routing::ModelAllowList;
use tollgate_core::UnixTime;
use tollgate_store::{KeyOwner, KeyRecord, Project, ServiceAccount};

/// A key as the CLI (`--json`) and the admin API's extensions show it: everything Tollgate knows
/// about it but the secret, with OpenAI's field names where they exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyView {
    pub object: String,
    pub id: String,
    pub name: String,
    pub kind: String,
    pub redacted_value: String,
    pub status: String,
    pub project_id: Option<String>,
    pub owner: KeyOwner,
    pub permissions: String,
    pub created_by: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub rotated_from: Option<String>,
    pub rotated_to: Option<String>,
    /// Addresses it may be used from (empty: any).
    pub allowed_ips: Vec<String>,
    /// Models it may use (empty: any).
    pub allowed_models: Vec<String>,
}

impl KeyView {
    pub fn new(key: &KeyRecord, now: UnixTime) -> KeyView {
        KeyView {
            object: match key.kind {
                tollgate_core::KeyKind::Admin => "organization.admin_api_key",
                tollgate_core::KeyKind::ServiceAccount => {
                    "organization.project.service_account.api_key"
                }
                tollgate_core::KeyKind::Project => "organization.project.api_key",
            }
            .to_owned(),
            id: key.id.as_str().to_owned(),
            name: key.name.clone(),
            kind: key.kind.as_str().to_owned(),
            redacted_value: key.redacted.clone(),
            status: key.status(now).as_str().to_owned(),
            project_id: key.project_id.as_ref().map(|p| p.as_str().to_owned()),
            owner: key.owner.clone(),
            permissions: key.permissions.to_string(),
            created_by: key.created_by.clone(),
            created_at: key.created_at.seconds(),
            last_used_at: key.last_used_at.map(UnixTime::seconds),
            expires_at: key.expires_at.map(UnixTime::seconds),
            revoked_at: key.revoked_at.map(UnixTime::seconds),
            rotated_from: key.rotated_from.as_ref().map(|k| k.as_str().to_owned()),
            rotated_to: key.rotated_to.as_ref().map(|k| k.as_str().to_owned()),
            allowed_ips: ip_entries(&key.allowed_ips),
            allowed_models: model_entries(&key.allowed_models),
        }
    }

    /// Its status, and for a key still in its grace after a rotation, its successor.
    pub fn status_text(&self) -> String {
        match &self.rotated_to {
            Some(next) if self.status == "active" => format!("{} (rotated to {next})", self.status),
            _ => self.status.clone(),
        }
    }
}

/// A key with its secret: only ever shown right after it was made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreatedKeyView {
    #[serde(flatten)]
    pub key: KeyView,
    pub value: String,
}

/// A project with its rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectView {
    pub object: String,
    pub id: String,
    pub name: String,
    pub status: String,
    pub is_default: bool,
    pub created_at: i64,
    pub archived_at: Option<i64>,
    pub allowed_ips: Vec<String>,
    pub allowed_models: Vec<String>,
}

impl From<&Project> for ProjectView {
    fn from(p: &Project) -> Self {
        ProjectView {
            object: "organization.project".into(),
            id: p.id.as_str().to_owned(),
            name: p.name.clone(),
            status: p.status.as_str().to_owned(),
            is_default: p.is_default,
            created_at: p.created_at.seconds(),
            archived_at: p.archived_at.map(UnixTime::seconds),
            allowed_ips: ip_entries(&p.allowed_ips),
            allowed_models: model_entries(&p.allowed_models),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccountView {
    pub object: String,
    pub id: String,
    pub name: String,
    pub project_id: String,
    pub role: String,
    pub created_by: String,
    pub created_at: i64,
}

impl From<&ServiceAccount> for ServiceAccountView {
    fn from(s: &ServiceAccount) -> Self {
        ServiceAccountView {
            object: "organization.project.service_account".into(),
            id: s.id.as_str().to_owned(),
            name: s.name.clone(),
            project_id: s.project_id.as_str().to_owned(),
            role: s.role.clone(),
            created_by: s.created_by.clone(),
            created_at: s.created_at.seconds(),
        }
    }
}

/// One rate-limit rule: who it binds, on which models, with which limits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleView {
    pub object: String,
    /// `organization`, `project` or `key`.
    pub level: String,
    pub holder: String,
    pub model: String,
    pub limits: tollgate_core::limit_rules::RateLimits,
}

impl From<&LimitRule> for RuleView {
    fn from(rule: &LimitRule) -> Self {
        RuleView {
            object: "x-tollgate.rate_limit".into(),
            level: rule.holder.level.as_str().to_owned(),
            holder: rule.holder.id.clone(),
            model: rule.model.as_str().to_owned(),
            limits: rule.limits,
        }
    }
}

/// A budget as set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BudgetView {
    pub object: String,
    pub id: i64,
    pub level: String,
    pub holder: String,
    pub limit_usd: String,
    pub period: String,
    pub timezone: String,
    pub alerts_percent: Vec<f64>,
}

impl From<&Budget> for BudgetView {
    fn from(budget: &Budget) -> Self {
        BudgetView {
            object: "x-tollgate.budget".into(),
            id: budget.id,
            level: budget.holder.level.as_str().to_owned(),
            holder: budget.holder.id.clone(),
            limit_usd: dollars(budget.limit),
            period: budget.period.as_str().to_owned(),
            timezone: format_utc_offset(budget.utc_offset_secs),
            alerts_percent: budget.alerts_percent(),
        }
    }
}

/// How a holder is named in sentences: `organization org-…`, `project proj_…`, `API key key_…`.
pub fn holder_text(level: &str, id: &str) -> String {
    match level {
        "organization" => format!("organization {id}"),
        "project" => format!("project {id}"),
        _ => format!("API key {id}"),
    }
}

/// An allow-list as a sentence shows it: `any`, or its entries joined by commas.
pub fn list_text(entries: &[String]) -> String {
    if entries.is_empty() {
        "any".into()
    } else {
        entries.join(",")
    }
}

/// What a stored list that could not be read shows: it allows nothing (never "any").
const UNREADABLE: &str = "(unreadable: nothing allowed)";

fn ip_entries(list: &IpAllowList) -> Vec<String> {
    if list.ranges().is_empty() && !list.is_empty() {
        return vec![UNREADABLE.into()];
    }
    list.ranges().iter().map(|r| r.to_string()).collect()
}

fn model_entries(list: &ModelAllowList) -> Vec<String> {
    let patterns = list.patterns();
    if patterns.is_empty() && !list.is_empty() {
        return vec![UNREADABLE.into()];
    }
    patterns
}
