//! The audit log: newest first, filtered by event type, project, actor and resource, in pages.

use crate::error::ConsoleError;
use crate::layout::{self, time};
use crate::viewer::Viewer;
use crate::ConsoleState;
use axum::extract::{Query, State};
use axum::response::Html;
use maud::html;
use std::collections::HashMap;
use tollgate_store::AuditQuery;

const AUDIT: &str = "/console/audit";
const PAGE: i64 = 50;

pub async fn list(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Html<String>, ConsoleError> {
    let get = |name: &str| query.get(name).map_or("", |s| s.trim()).to_owned();
    let one = |name: &str| {
        let value = get(name);
        if value.is_empty() {
            Vec::new()
        } else {
            vec![value]
        }
    };
    let after = get("after");
    let mut entries = state
        .control
        .audit_page(&AuditQuery {
            event_types: one("type"),
            project_ids: one("project"),
            actor_ids: one("actor"),
            resource_ids: one("resource"),
            after: Some(after.clone()).filter(|a| !a.is_empty()),
            limit: PAGE,
            ..AuditQuery::default()
        })
        .await?;
    let more = entries.len() as i64 > PAGE;
    entries.truncate(PAGE as usize);
    let next = entries.last().map(|e| {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("type", &get("type"))
            .append_pair("project", &get("project"))
            .append_pair("actor", &get("actor"))
            .append_pair("resource", &get("resource"))
            .append_pair("after", e.id.as_str())
            .finish()
    });
    let content = html! {
        form.toolbar method="get" action=(AUDIT) {
            div { label for="type" { "Event type" } input #type type="text" name="type" value=(get("type")) placeholder="api_key.created" size="16"; }
            div { label for="project" { "Project ID" } input #project type="text" name="project" value=(get("project")) size="16"; }
            div { label for="actor" { "Actor ID" } input #actor type="text" name="actor" value=(get("actor")) size="16"; }
            div { label for="resource" { "Resource ID" } input #resource type="text" name="resource" value=(get("resource")) size="16"; }
            div { button.secondary type="submit" { "Filter" } }
        }
        div.table-wrap tabindex="0" role="region" aria-label="Audit log entries" {
            table {
                thead { tr { th scope="col" { "When" } th scope="col" { "Event" } th scope="col" { "Actor" } th scope="col" { "Resource" } th scope="col" { "Project" } th scope="col" { "Details" } } }
                tbody {
                    @for e in &entries {
                        tr {
                            td { (time(e.created_at.seconds())) }
                            td.mono { (e.event_type) }
                            td { (e.actor.kind) " " span.mono { (e.actor.id) } }
                            td.mono { (e.resource_id.as_deref().unwrap_or("—")) }
                            td.mono { (e.project_id.as_ref().map_or("—", |p| p.as_str())) }
                            td.mono { (e.data.to_string().chars().take(160).collect::<String>()) }
                        }
                    }
                    @if entries.is_empty() { tr { td colspan="6" { "No entries." } } }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if !after.is_empty() { a href=(AUDIT) { "Newest" } }
            @if more { @if let Some(next) = next { a href=(format!("{AUDIT}?{next}")) { "Older →" } } }
        }
    };
    Ok(layout::page(&viewer, AUDIT, "Audit log", content))
}
