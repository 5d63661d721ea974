//! API keys: the table (search and filters), "Create new secret key" with everything a key can
//! have, the "Save your key" dialog that shows a secret once, and a key's page (rename, rotate
//! with a grace period, revoke after a confirmation).

use crate::error::ConsoleError;
use crate::form::Fields;
use crate::layout::{self, csrf, time};
use crate::pages::see_other;
use crate::viewer::Viewer;
use crate::ConsoleState;
use axum::extract::{Path, Query, State};
use axum::response::{Html, IntoResponse, Response};
use maud::{html, Markup};
use std::collections::HashMap;
use tollgate_control::{
    BudgetRequest, CreatedKey, HolderRequest, KeyOwnerRequest, KeyView, NewKey, RevokeOutcome,
};
use tollgate_core::duration::Span;
use tollgate_core::network::IpAllowList;
use tollgate_core::routing::ModelAllowList;
use tollgate_core::{KeyKind, Permissions, Scope};
use tollgate_store::{KeyOwner, KeyRecord, Member, Project, ServiceAccount};

const KEYS: &str = "/console/api-keys";

/// Names for ids: projects, members and service accounts.
struct Names {
    projects: Vec<Project>,
    members: Vec<Member>,
    accounts: Vec<ServiceAccount>,
}

impl Names {
    async fn load(state: &ConsoleState) -> Result<Names, ConsoleError> {
        Ok(Names {
            projects: state.control.projects(true).await?,
            members: state.control.members().await?,
            accounts: state.control.service_accounts(None).await?,
        })
    }

    fn project(&self, id: Option<&str>) -> String {
        match id {
            None => "— (organization)".into(),
            Some(id) => self
                .projects
                .iter()
                .find(|p| p.id.as_str() == id)
                .map_or_else(|| id.to_owned(), |p| p.name.clone()),
        }
    }

    fn owner(&self, owner: &KeyOwner) -> String {
        match owner {
            KeyOwner::User(id) => self
                .members
                .iter()
                .find(|m| &m.user.id == id)
                .map_or_else(|| id.to_string(), |m| m.user.email.clone()),
            KeyOwner::ServiceAccount(id) => self.accounts.iter().find(|a| &a.id == id).map_or_else(
                || id.to_string(),
                |a| format!("{} (service account)", a.name),
            ),
        }
    }

    /// `created_by` as a person reads it.
    fn actor(&self, label: &str) -> String {
        let (kind, id) = label.split_once(':').unwrap_or(("", label));
        match kind {
            "user" => self
                .members
                .iter()
                .find(|m| m.user.id.as_str() == id)
                .map_or_else(|| id.to_owned(), |m| m.user.email.clone()),
            "cli" => format!("CLI ({id})"),
            "api_key" => format!("admin key {id}"),
            _ => label.to_owned(),
        }
    }
}

fn status_class(status: &str) -> String {
    format!("status-{status}")
}

/// The keys table, with the secret dialog on top when a key was just made.
async fn keys_page(
    state: &ConsoleState,
    viewer: &Viewer,
    query: &HashMap<String, String>,
    just_made: Option<(&CreatedKey, &str)>,
) -> Result<Html<String>, ConsoleError> {
    let names = Names::load(state).await?;
    let now = state.control.now();
    let search = query.get("q").map_or("", |s| s.trim()).to_lowercase();
    let project = query.get("project").map_or("", String::as_str);
    let status = query.get("status").map_or("", String::as_str);
    let kind = query.get("kind").map_or("", String::as_str);
    let wanted_kind = KeyKind::parse(kind);
    let keys: Vec<KeyView> = state
        .control
        .keys(None, None)
        .await?
        .iter()
        .filter(|k| match wanted_kind {
            Some(kind) => k.kind == kind,
            None => k.kind != KeyKind::Admin,
        })
        .map(|k| KeyView::new(k, now))
        .filter(|k| project.is_empty() || k.project_id.as_deref() == Some(project))
        .filter(|k| status.is_empty() || k.status == status)
        .filter(|k| {
            search.is_empty()
                || k.name.to_lowercase().contains(&search)
                || k.id.to_lowercase().contains(&search)
                || k.redacted_value.to_lowercase().contains(&search)
        })
        .collect();
    let content = html! {
        @if let Some((created, title)) = just_made {
            (secret_dialog(created, title))
        }
        p { "Keys let apps call the API through Tollgate. A key's secret is shown once, when it is made; Tollgate keeps only a hash of it." }
        form.toolbar method="get" action=(KEYS) role="search" {
            div.grow {
                label for="q" { "Search" }
                input #q type="search" name="q" value=(query.get("q").map_or("", String::as_str)) placeholder="Name, key ID or sk-...";
            }
            div {
                label for="project" { "Project" }
                select #project name="project" {
                    option value="" { "All projects" }
                    @for p in &names.projects {
                        option value=(p.id) selected[project == p.id.as_str()] { (p.name) }
                    }
                }
            }
            div {
                label for="status" { "Status" }
                select #status name="status" {
                    @for (value, label) in [("", "Any status"), ("active", "Active"), ("rotating", "Rotating"), ("expired", "Expired"), ("revoked", "Revoked")] {
                        option value=(value) selected[status == value] { (label) }
                    }
                }
            }
            div {
                label for="kind" { "Kind" }
                select #kind name="kind" {
                    @for (value, label) in [("", "Project and service account keys"), ("project", "Project keys"), ("service_account", "Service account keys"), ("admin", "Admin keys")] {
                        option value=(value) selected[kind == value] { (label) }
                    }
                }
            }
            div { button.secondary type="submit" { "Filter" } }
            @if viewer.is_owner() {
                div { a.button href="/console/api-keys/new" { "Create new secret key" } }
            }
        }
        div.table-wrap tabindex="0" role="region" aria-label="API keys" {
            table {
                caption.hint { (keys.len()) (if keys.len() == 1 { " key" } else { " keys" }) }
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "Secret key" } th scope="col" { "Project" }
                    th scope="col" { "Created" } th scope="col" { "Last used" } th scope="col" { "Created by" }
                    th scope="col" { "Permissions" } th scope="col" { "Expires" } th scope="col" { "Status" }
                } }
                tbody {
                    @for k in &keys {
                        tr {
                            td { a href=(format!("{KEYS}/{}", k.id)) { (k.name) } }
                            td.mono { (k.redacted_value) }
                            td { (names.project(k.project_id.as_deref())) }
                            td { (time(k.created_at)) }
                            td { (k.last_used_at.map_or_else(|| "Never".to_owned(), time)) }
                            td { (names.actor(&k.created_by)) }
                            td { (k.permissions) }
                            td { (k.expires_at.map_or_else(|| "Never".to_owned(), time)) }
                            td { span class=(status_class(&k.status)) { (k.status) } }
                        }
                    }
                    @if keys.is_empty() {
                        tr { td colspan="9" { "No keys match." } }
                    }
                }
            }
        }
    };
    Ok(layout::page(viewer, KEYS, "API keys", content))
}

/// The one place a secret is ever shown.
fn secret_dialog(created: &CreatedKey, title: &str) -> Markup {
    html! {
        dialog #secret-dialog open data-modal="" aria-labelledby="secret-title" {
            h2 #secret-title { (title) }
            p.notice role="note" { strong { "Please save this secret key somewhere safe and accessible." } " For security reasons, " strong { "you won't be able to view it again" } " through Tollgate. If you lose this secret key, you'll need to generate a new one." }
            label for="secret-value" { "Secret key for " (created.record.name) }
            div.secret {
                input #secret-value type="text" readonly value=(created.secret.expose()) spellcheck="false" autocomplete="off";
                button type="button" data-copy="secret-value" hidden { "Copy" }
            }
            p.hint { "Key ID " code { (created.record.id) } }
            form method="dialog" { p { a.button href=(format!("{KEYS}/{}", created.record.id)) data-close="" { "Done" } } }
        }
    }
}

pub async fn list(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Html<String>, ConsoleError> {
    keys_page(&state, &viewer, &query, None).await
}

const EXPIRIES: &[(&str, &str)] = &[
    ("", "Never"),
    ("7d", "In 7 days"),
    ("30d", "In 30 days"),
    ("90d", "In 90 days"),
    ("365d", "In a year"),
];

pub async fn new(
    State(state): State<ConsoleState>,
    viewer: Viewer,
) -> Result<Html<String>, ConsoleError> {
    if !viewer.is_owner() {
        return Err(ConsoleError::ReaderRole);
    }
    let projects = state.control.projects(false).await?;
    let accounts = state.control.service_accounts(None).await?;
    let content = html! {
        form.card method="post" action=(KEYS) {
            (csrf(&viewer))
            label for="name" { "Name " span.hint { "(optional: a name people will recognise, such as “Project Alpha Dev”)" } }
            input #name type="text" name="name" maxlength="200" placeholder="My Test Key";
            label for="project" { "Project" }
            select #project name="project" {
                @for p in &projects { option value=(p.id) selected[p.is_default] { (p.name) } }
            }
            fieldset.inline {
                legend { "Owned by" }
                input #owner-you type="radio" name="owner" value="you" checked; label for="owner-you" { "You" }
                input #owner-sa type="radio" name="owner" value="service_account"; label for="owner-sa" { "Service account" }
                label for="service_account" { "Service account " span.hint { "(when owned by one; its project is the key's)" } }
                select #service_account name="service_account" {
                    option value="" { "—" }
                    @for a in &accounts { option value=(a.id) { (a.name) } }
                }
            }
            fieldset.inline {
                legend { "Permissions" }
                input #perm-all type="radio" name="permissions" value="all" checked; label for="perm-all" { "All" }
                input #perm-restricted type="radio" name="permissions" value="restricted"; label for="perm-restricted" { "Restricted" }
                input #perm-read type="radio" name="permissions" value="read-only"; label for="perm-read" { "Read only" }
                div #scopes {
                    p.hint { "For restricted keys, what each endpoint may do:" }
                    div.grid {
                        @for scope in Scope::ALL {
                            div {
                                label for=(format!("scope-{}", scope.as_str())) { code { (scope.as_str()) } }
                                select id=(format!("scope-{}", scope.as_str())) name=(format!("scope_{}", scope.as_str())) {
                                    option value="none" { "None" } option value="read" { "Read" } option value="write" { "Write" }
                                }
                            }
                        }
                    }
                }
            }
            label for="models" { "Models " span.hint { "(names or patterns such as gpt-4o*, comma-separated; empty: any)" } }
            input #models type="text" name="models";
            label for="expires" { "Expires" }
            select #expires name="expires" {
                @for (value, label) in EXPIRIES { option value=(value) { (label) } }
            }
            label for="allowed_ips" { "Allowed IP addresses " span.hint { "(an address or CIDR range a line; empty: any)" } }
            textarea #allowed_ips name="allowed_ips" rows="2" {}
            fieldset {
                legend { "Rate limits " span.hint { "(empty: none of the key's own)" } }
                div.grid {
                    @for (field, label) in [("rpm", "Requests per minute"), ("rpd", "Requests per day"), ("tpm", "Tokens per minute"), ("tpd", "Tokens per day"), ("concurrency", "Requests at once")] {
                        div { label for=(field) { (label) } input id=(field) type="number" name=(field) min="1" inputmode="numeric"; }
                    }
                }
            }
            fieldset {
                legend { "Budget " span.hint { "(empty: none)" } }
                div.grid {
                    div { label for="budget_usd" { "Limit in US dollars" } input #budget_usd type="text" name="budget_usd" inputmode="decimal" placeholder="50.00"; }
                    div { label for="budget_period" { "Per" } select #budget_period name="budget_period" { option value="month" { "Month" } option value="week" { "Week" } option value="day" { "Day" } } }
                    div { label for="budget_alerts" { "Alert at % " span.hint { "(comma-separated)" } } input #budget_alerts type="text" name="budget_alerts" placeholder="50, 80, 100"; }
                }
            }
            p { button type="submit" { "Create secret key" } " " a.button.secondary href=(KEYS) { "Cancel" } }
        }
    };
    Ok(layout::page(
        &viewer,
        KEYS,
        "Create new secret key",
        content,
    ))
}

fn new_key(fields: &Fields) -> Result<NewKey, ConsoleError> {
    let name = match fields.get("name") {
        "" => "Secret key".to_owned(),
        name => name.to_owned(),
    };
    let owner = match fields.get("owner") {
        "service_account" => match fields.get("service_account") {
            "" => {
                return Err(ConsoleError::Invalid(
                    "Pick the service account that owns the key.".into(),
                ))
            }
            account => KeyOwnerRequest::ServiceAccount(account.to_owned()),
        },
        _ => KeyOwnerRequest::Project(
            Some(fields.get("project").to_owned()).filter(|p| !p.is_empty()),
        ),
    };
    let mode = match fields.get("permissions") {
        "" => "all",
        mode => mode,
    };
    let grants: Vec<String> = if mode == "restricted" {
        Scope::ALL
            .iter()
            .filter_map(|s| match fields.get(&format!("scope_{}", s.as_str())) {
                "read" | "write" => Some(format!(
                    "{}:{}",
                    s.as_str(),
                    fields.get(&format!("scope_{}", s.as_str()))
                )),
                _ => None,
            })
            .collect()
    } else {
        Vec::new()
    };
    if mode == "restricted" && grants.is_empty() {
        return Err(ConsoleError::Invalid(
            "A restricted key needs at least one endpoint it may read or write.".into(),
        ));
    }
    let permissions = Permissions::from_parts(mode, &grants)
        .map_err(|e| ConsoleError::Invalid(format!("Permissions: {e}")))?;
    let expires_in = match fields.get("expires") {
        "" => None,
        text => {
            Some(Span::parse(text).map_err(|e| ConsoleError::Invalid(format!("Expires: {e}")))?)
        }
    };
    let allowed_ips = IpAllowList::parse(&fields.list("allowed_ips"))
        .map_err(|e| ConsoleError::Invalid(format!("Allowed IP addresses: {e}")))?;
    let limits = fields.rate_limits()?;
    let budget = match fields.get("budget_usd") {
        "" => None,
        usd => Some(
            BudgetRequest::parse(
                usd,
                match fields.get("budget_period") {
                    "" => "month",
                    period => period,
                },
                "UTC",
                &fields.list("budget_alerts"),
            )
            .map_err(|e| ConsoleError::Invalid(format!("Budget: {e}")))?,
        ),
    };
    Ok(NewKey {
        name,
        owner,
        permissions,
        expires_in,
        allowed_ips,
        allowed_models: ModelAllowList::new(&fields.list("models")),
        limits,
        budget,
    })
}

pub async fn create(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    fields: Fields,
) -> Result<Html<String>, ConsoleError> {
    viewer.may_change(&fields)?;
    let request = new_key(&fields)?;
    let created = state.control.create_key(&viewer.actor(), request).await?;
    keys_page(
        &state,
        &viewer,
        &HashMap::new(),
        Some((&created, "Save your key")),
    )
    .await
}

async fn key_of(state: &ConsoleState, id: &str) -> Result<KeyRecord, ConsoleError> {
    if tollgate_core::KeyId::parse(id).is_err() {
        return Err(ConsoleError::NotFound);
    }
    Ok(state.control.key(id).await?)
}

const GRACES: &[(&str, &str)] = &[
    ("immediate", "Immediately"),
    ("1h", "After 1 hour"),
    ("24h", "After 24 hours"),
    ("7d", "After 7 days"),
];

async fn key_page(
    state: &ConsoleState,
    viewer: &Viewer,
    key: &KeyRecord,
    rotated: Option<&CreatedKey>,
) -> Result<Html<String>, ConsoleError> {
    let names = Names::load(state).await?;
    let view = KeyView::new(key, state.control.now());
    let report = match key.kind {
        KeyKind::Admin => None,
        _ => Some(
            state
                .control
                .limits_report(&HolderRequest::Key(view.id.clone()))
                .await?,
        ),
    };
    let path = format!("{KEYS}/{}", view.id);
    let live = matches!(view.status.as_str(), "active" | "rotating");
    let content = html! {
        @if let Some(created) = rotated {
            (secret_dialog(created, "Save your new key"))
        }
        p { a href=(KEYS) { "← All keys" } }
        dl.facts {
            dt { "Secret key" } dd.mono { (view.redacted_value) }
            dt { "Key ID" } dd.mono { (view.id) }
            dt { "Status" } dd { span class=(status_class(&view.status)) { (view.status) } }
            dt { "Project" } dd { (names.project(view.project_id.as_deref())) }
            dt { "Owner" } dd { (names.owner(&view.owner)) }
            dt { "Permissions" } dd { (view.permissions) }
            dt { "Models" } dd { (tollgate_control::list_text(&view.allowed_models)) }
            dt { "Allowed IP addresses" } dd { (tollgate_control::list_text(&view.allowed_ips)) }
            dt { "Created" } dd { (time(view.created_at)) " by " (names.actor(&view.created_by)) }
            dt { "Last used" } dd { (view.last_used_at.map_or_else(|| "Never".to_owned(), time)) }
            dt { "Expires" } dd { (view.expires_at.map_or_else(|| "Never".to_owned(), time)) }
            @if let Some(at) = view.revoked_at { dt { "Revoked" } dd { (time(at)) } }
            @if let Some(from) = &view.rotated_from { dt { "Replaces" } dd { a href=(format!("{KEYS}/{from}")) { (from) } } }
            @if let Some(to) = &view.rotated_to { dt { "Replaced by" } dd { a href=(format!("{KEYS}/{to}")) { (to) } } }
        }
        @if let Some(report) = &report {
            h2 { "Limits and budgets on this key" }
            (crate::pages::limits::report_table(report))
        }
        @if viewer.is_owner() && live {
            h2 { "Rename" }
            form.toolbar method="post" action=(format!("{path}/rename")) {
                (csrf(viewer))
                div.grow { label for="new-name" { "Name" } input #new-name type="text" name="name" value=(view.name) required maxlength="200"; }
                div { button.secondary type="submit" { "Rename" } }
            }
            h2 { "Rotate" }
            form.toolbar method="post" action=(format!("{path}/rotate")) {
                (csrf(viewer))
                div {
                    label for="grace" { "The old key stops working" }
                    select #grace name="grace" { @for (value, label) in GRACES { option value=(value) selected[*value == "24h"] { (label) } } }
                }
                div { button.secondary type="submit" { "Rotate key" } }
            }
            h2 { "Revoke" }
            p { "Revoking stops the key at once, on every server. It cannot be undone." }
            p { a.button href=(format!("{path}/revoke")) { "Revoke key…" } }
        }
    };
    Ok(layout::page(viewer, KEYS, &view.name, content))
}

pub async fn show(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Html<String>, ConsoleError> {
    let key = key_of(&state, &id).await?;
    key_page(&state, &viewer, &key, None).await
}

pub async fn rename(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<String>,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    viewer.may_change(&fields)?;
    let key = key_of(&state, &id).await?;
    state
        .control
        .rename_key(&viewer.actor(), key.id.as_str(), fields.get("name"))
        .await?;
    Ok(see_other(&format!("{KEYS}/{}", key.id)))
}

pub async fn confirm_revoke(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Result<Html<String>, ConsoleError> {
    if !viewer.is_owner() {
        return Err(ConsoleError::ReaderRole);
    }
    let key = key_of(&state, &id).await?;
    let path = format!("{KEYS}/{}", key.id);
    Ok(layout::page(
        &viewer,
        KEYS,
        "Revoke secret key",
        html! {
            div.card {
                p { "This key will be revoked immediately, on every server. API requests made with it will be refused. This cannot be undone." }
                dl.facts { dt { "Name" } dd { (key.name) } dt { "Secret key" } dd.mono { (key.redacted) } }
                form method="post" action=(format!("{path}/revoke")) {
                    (csrf(&viewer))
                    button.danger type="submit" { "Revoke key" } " "
                    a.button.secondary href=(path) { "Cancel" }
                }
            }
        },
    ))
}

pub async fn revoke(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<String>,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    viewer.may_change(&fields)?;
    let key = key_of(&state, &id).await?;
    match state
        .control
        .revoke_key(&viewer.actor(), key.id.as_str())
        .await?
    {
        RevokeOutcome::Revoked(_) | RevokeOutcome::AlreadyRevoked(_) => {}
    }
    Ok(see_other(&format!("{KEYS}/{}", key.id)))
}

pub async fn rotate(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<String>,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    viewer.may_change(&fields)?;
    let key = key_of(&state, &id).await?;
    let grace = match fields.get("grace") {
        "immediate" | "" => Span(0),
        text => Span::parse(text).map_err(|e| ConsoleError::Invalid(format!("Grace: {e}")))?,
    };
    let rotation = state
        .control
        .rotate_key(&viewer.actor(), key.id.as_str(), grace)
        .await?;
    Ok(
        key_page(&state, &viewer, &rotation.new.record, Some(&rotation.new))
            .await?
            .into_response(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_becomes_a_key_request_with_everything() {
        let fields = Fields::parse(
            b"name=ci&owner=you&project=proj_x&permissions=restricted&scope_chat.completions=write&scope_models=read&scope_files=none&models=gpt-4o*,+o3&expires=30d&allowed_ips=10.0.0.0%2F8&rpm=5&tpm=&budget_usd=12.50&budget_period=week&budget_alerts=50,+80",
        );
        let key = new_key(&fields).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(key.name, "ci");
        assert_eq!(
            key.permissions.to_string(),
            "restricted(models:read,chat.completions:write)"
        );
        assert_eq!(key.expires_in, Some(Span(30 * 86_400)));
        assert_eq!(key.limits.rpm, Some(5));
        assert_eq!(key.limits.tpm, None);
        assert!(key.budget.is_some());
        assert!(matches!(key.owner, KeyOwnerRequest::Project(Some(ref p)) if p == "proj_x"));
        for bad in [
            &b"rpm=0"[..],
            b"rpm=lots",
            b"permissions=restricted",
            b"owner=service_account",
            b"allowed_ips=not-an-ip",
            b"budget_usd=-1",
        ] {
            assert!(
                new_key(&Fields::parse(bad)).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
