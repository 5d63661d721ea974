//! The organization's settings: its name and ID (with a copy button), and where things live.

use crate::error::ConsoleError;
use crate::layout::{self, time};
use crate::viewer::Viewer;
use crate::ConsoleState;
use axum::extract::State;
use axum::response::Html;
use maud::html;

pub async fn show(
    State(state): State<ConsoleState>,
    viewer: Viewer,
) -> Result<Html<String>, ConsoleError> {
    let org = state.control.organization().await?;
    let content = html! {
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
