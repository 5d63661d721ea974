//! The organization's settings: its name and ID (with a copy button), and where things live.

use crate::error::ConsoleError;
use crate::form::Fields;
use crate::layout::{self, csrf, time};
use crate::pages::see_other;
use crate::viewer::Viewer;
use crate::ConsoleState;
use axum::extract::State;
use axum::response::{Html, Response};
use maud::html;

pub async fn show(
    State(state): State<ConsoleState>,
    viewer: Viewer,
) -> Result<Html<String>, ConsoleError> {
    let org = state.control.organization().await?;
    let content = html! {
        @if viewer.is_owner() {
            form.toolbar method="post" action="/console/settings" {
                (csrf(&viewer))
                div.grow { label for="org-name" { "Organization name" } input #org-name type="text" name="name" value=(org.name) required maxlength="200"; }
                div { button.secondary type="submit" { "Save" } }
            }
        }
        div.card {
            dl.facts {
                dt { "Organization name" } dd { (org.name) }
                dt { label for="org-id" { "Organization ID" } }
                dd {
                    div.secret {
                        input #org-id type="text" readonly value=(org.id) spellcheck="false";
                        button type="button" data-copy="org-id" hidden { "Copy" }
                    }
                }
                dt { "Created" } dd { (time(org.created_at.seconds())) }
            }
        }
        p { "Providers, routes, prices and alert webhooks are set in the server's configuration file (" code { "tollgate.toml" } "); the admin API's OpenAPI document is at " a href="/openapi.json" { "/openapi.json" } "." }
    };
    Ok(layout::page(
        &viewer,
        "/console/settings",
        "Settings",
        content,
    ))
}

pub async fn rename(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    viewer.may_change(&fields)?;
    state
        .control
        .rename_organization(&viewer.actor(), fields.get("name"))
        .await?;
    Ok(see_other("/console/settings"))
}
