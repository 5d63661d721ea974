//! Service accounts: bot identities that own keys in a project.

use crate::error::ConsoleError;
use crate::form::Fields;
use crate::layout::{self, csrf, time};
use crate::pages::see_other;
use crate::viewer::Viewer;
use crate::ConsoleState;
use axum::extract::State;
use axum::response::{Html, Response};
use maud::html;

const ACCOUNTS: &str = "/console/service-accounts";

pub async fn list(
    State(state): State<ConsoleState>,
    viewer: Viewer,
) -> Result<Html<String>, ConsoleError> {
    let accounts = state.control.service_accounts(None).await?;
    let projects = state.control.projects(true).await?;
    let project_name = |id: &str| {
        projects
            .iter()
            .find(|p| p.id.as_str() == id)
            .map_or_else(|| id.to_owned(), |p| p.name.clone())
    };
    let content = html! {
        p { "A service account owns keys that belong to a project rather than a person; its keys are made on the API keys page." }
        @if viewer.is_owner() {
            form.toolbar method="post" action=(ACCOUNTS) {
                (csrf(&viewer))
                div.grow { label for="name" { "Name" } input #name type="text" name="name" required maxlength="200"; }
                div {
                    label for="project" { "Project" }
                    select #project name="project" {
                        @for p in projects.iter().filter(|p| p.status == tollgate_store::ProjectStatus::Active) {
                            option value=(p.id) selected[p.is_default] { (p.name) }
                        }
                    }
                }
                div { button type="submit" { "Create service account" } }
            }
        }
        div.table-wrap tabindex="0" role="region" aria-label="Service accounts" {
            table {
                thead { tr { th scope="col" { "Name" } th scope="col" { "ID" } th scope="col" { "Project" } th scope="col" { "Role" } th scope="col" { "Created" } } }
                tbody {
                    @for a in &accounts {
                        tr { td { (a.name) } td.mono { (a.id) } td { (project_name(a.project_id.as_str())) } td { (a.role) } td { (time(a.created_at.seconds())) } }
                    }
                    @if accounts.is_empty() { tr { td colspan="5" { "No service accounts." } } }
                }
            }
        }
    };
    Ok(layout::page(&viewer, ACCOUNTS, "Service accounts", content))
}

pub async fn create(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    viewer.may_change(&fields)?;
    state
        .control
        .create_service_account(
            &viewer.actor(),
            Some(fields.get("project")).filter(|p| !p.is_empty()),
            fields.get("name"),
        )
        .await?;
    Ok(see_other(ACCOUNTS))
}
