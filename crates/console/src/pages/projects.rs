//! Projects: the list (archived ones marked), making one, archiving one.

use crate::error::ConsoleError;
use crate::form::Fields;
use crate::layout::{self, csrf, maybe_time, time};
use crate::pages::see_other;
use crate::viewer::Viewer;
use crate::ConsoleState;
use axum::extract::{Path, State};
use axum::response::{Html, Response};
use maud::html;
use tollgate_store::ProjectStatus;

const PROJECTS: &str = "/console/projects";

pub async fn list(
    State(state): State<ConsoleState>,
    viewer: Viewer,
) -> Result<Html<String>, ConsoleError> {
    let projects = state.control.projects(true).await?;
    let content = html! {
        p { "A project groups keys, service accounts, limits and usage. Archived projects' keys stop working." }
        @if viewer.is_owner() {
            form.toolbar method="post" action=(PROJECTS) {
                (csrf(&viewer))
                div.grow { label for="name" { "New project's name" } input #name type="text" name="name" required maxlength="200"; }
                div { button type="submit" { "Create project" } }
            }
        }
        div.table-wrap tabindex="0" role="region" aria-label="Projects" {
            table {
                thead { tr { th scope="col" { "Name" } th scope="col" { "ID" } th scope="col" { "Status" } th scope="col" { "Created" } th scope="col" { "Archived" } th scope="col" { span.hint { "Actions" } } } }
                tbody {
                    @for p in &projects {
                        tr {
                            td { (p.name) @if p.is_default { " " span.badge { "default" } } }
                            td.mono { (p.id) }
                            td { span class=(format!("status-{}", if p.status == ProjectStatus::Active { "active" } else { "revoked" })) { (p.status.as_str()) } }
                            td { (time(p.created_at.seconds())) }
                            td { (maybe_time(p.archived_at.map(|t| t.seconds()))) }
                            td {
                                @if viewer.is_owner() && p.status == ProjectStatus::Active && !p.is_default {
                                    form method="post" action=(format!("{PROJECTS}/{}/archive", p.id)) {
                                        (csrf(&viewer))
                                        button.link type="submit" aria-label=(format!("Archive {}", p.name)) { "Archive" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(&viewer, PROJECTS, "Projects", content))
}

pub async fn create(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    viewer.may_change(&fields)?;
    state
        .control
        .create_project(&viewer.actor(), fields.get("name"))
        .await?;
    Ok(see_other(PROJECTS))
}

pub async fn archive(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<String>,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    viewer.may_change(&fields)?;
    if !id.starts_with("proj_") {
        return Err(ConsoleError::NotFound);
    }
    state.control.archive_project(&viewer.actor(), &id).await?;
    Ok(see_other(PROJECTS))
}
