//! Members and invites: the organization's users with their roles (change, remove, reset a
//! password), its invites (withdraw), and inviting someone: the one-time link is shown here,
//! once, to be passed on (Tollgate sends no e-mail).

use crate::error::ConsoleError;
use crate::form::Fields;
use crate::layout::{self, csrf, maybe_time, time};
use crate::pages::see_other;
use crate::viewer::Viewer;
use crate::ConsoleState;
use axum::extract::{Path, State};
use axum::response::{Html, Response};
use maud::{html, Markup};
use tollgate_store::Role;

const MEMBERS: &str = "/console/members";

async fn members_page(
    state: &ConsoleState,
    viewer: &Viewer,
    shown: Option<Markup>,
) -> Result<Html<String>, ConsoleError> {
    let members = state.control.members().await?;
    let invites = state.control.invites().await?;
    let now = state.control.now();
    let projects = state.control.projects(false).await?;
    let content = html! {
        @if let Some(shown) = shown { (shown) }
        h2 { "Members" }
        div.table-wrap tabindex="0" role="region" aria-label="Members" {
            table {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Email" } th scope="col" { "Role" } th scope="col" { "Joined" } @if viewer.is_owner() { th scope="col" { span.hint { "Actions" } } } } }
                tbody {
                    @for m in &members {
                        tr {
                            td { (m.user.name) } td { (m.user.email) } td { (m.role.as_str()) } td { (time(m.added_at.seconds())) }
                            @if viewer.is_owner() {
                                td {
                                    form.inline-form method="post" action=(format!("{MEMBERS}/{}/role", m.user.id)) {
                                        (csrf(viewer))
                                        label.visually-hidden for=(format!("role-{}", m.user.id)) { "Role of " (m.user.email) }
                                        select id=(format!("role-{}", m.user.id)) name="role" {
                                            option value="owner" selected[m.role == Role::Owner] { "owner" }
                                            option value="reader" selected[m.role == Role::Reader] { "reader" }
                                        }
                                        " " button.link type="submit" { "Change role" }
                                    }
                                    @if m.user.id != viewer.member.user.id {
                                        form method="post" action=(format!("{MEMBERS}/{}/reset-password", m.user.id)) {
                                            (csrf(viewer)) button.link type="submit" { "Reset password" }
                                        }
                                        form method="post" action=(format!("{MEMBERS}/{}/remove", m.user.id)) {
                                            (csrf(viewer)) button.link type="submit" { "Remove" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Invites" }
        div.table-wrap tabindex="0" role="region" aria-label="Invites" {
            table {
                thead { tr { th scope="col" { "Email" } th scope="col" { "Role" } th scope="col" { "Status" } th scope="col" { "Sent" } th scope="col" { "Expires" } @if viewer.is_owner() { th scope="col" { span.hint { "Actions" } } } } }
                tbody {
                    @for i in &invites {
                        @let status = i.status(now).as_str();
                        tr {
                            td { (i.email) } td { (i.role.as_str()) } td { span class=(format!("status-{status}")) { (status) } }
                            td { (time(i.created_at.seconds())) } td { (maybe_time(Some(i.expires_at.seconds()))) }
                            @if viewer.is_owner() {
                                td {
                                    @if status != "accepted" {
                                        form method="post" action=(format!("/console/invites/{}/delete", i.id)) {
                                            (csrf(viewer)) button.link type="submit" { "Withdraw" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @if invites.is_empty() { tr { td colspan="6" { "No invites." } } }
                }
            }
        }
        @if viewer.is_owner() {
            h2 { "Invite someone" }
            form.card method="post" action=(MEMBERS) {
                (csrf(viewer))
                div.toolbar {
                    div.grow { label for="email" { "Email" } input #email type="email" name="email" required; }
                    div { label for="role" { "Role" } select #role name="role" { option value="reader" { "reader (sees everything, changes nothing)" } option value="owner" { "owner" } } }
                    div {
                        label for="project" { "Joins project" }
                        select #project name="project" {
                            @for p in &projects { option value=(p.id) selected[p.is_default] { (p.name) } }
                            option value="" { "No project" }
                        }
                    }
                    div { button type="submit" { "Create invite link" } }
                }
                p.hint { "Tollgate sends no email: you get a one-time link to pass on. It works for 7 days." }
            }
        }
    };
    Ok(layout::page(viewer, MEMBERS, "Members", content))
}

pub async fn list(
    State(state): State<ConsoleState>,
    viewer: Viewer,
) -> Result<Html<String>, ConsoleError> {
    members_page(&state, &viewer, None).await
}

/// This site's origin as the browser reached it, for links shown to be passed on.
fn origin(client: &crate::viewer::Client) -> String {
    let host = client.host.as_deref().unwrap_or("localhost");
    format!("{}://{host}", if client.https { "https" } else { "http" })
}

fn shown_once(title: &str, id: &str, value: &str, note: &str) -> Markup {
    html! {
        dialog #secret-dialog open data-modal="" aria-labelledby="shown-title" {
            h2 #shown-title { (title) }
            p.notice role="note" { (note) " " strong { "It is shown only this once." } }
            div.secret {
                input id=(id) type="text" readonly value=(value) spellcheck="false" autocomplete="off" aria-label=(title);
                button type="button" data-copy=(id) hidden { "Copy" }
            }
            form method="dialog" { p { a.button href=(MEMBERS) data-close="" { "Done" } } }
        }
    }
}

pub async fn invite(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    client: crate::viewer::Client,
    fields: Fields,
) -> Result<Html<String>, ConsoleError> {
    viewer.may_change(&fields)?;
    let role = Role::parse(fields.get("role")).unwrap_or(Role::Reader);
    let project = fields.get("project");
    let projects = if project.is_empty() {
        Vec::new()
    } else {
        vec![(project.to_owned(), tollgate_store::ProjectRole::Member)]
    };
    let created = state
        .control
        .invite(&viewer.actor(), fields.get("email"), role, Some(&projects))
        .await?;
    let link = format!(
        "{}/console/invite#{}",
        origin(&client),
        created.token.expose()
    );
    let shown = shown_once(
        &format!("Invite link for {}", created.invite.email),
        "invite-link",
        &link,
        "Send this link to the person you invited; opening it lets them join.",
    );
    members_page(&state, &viewer, Some(shown)).await
}

pub async fn set_role(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(user): Path<String>,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    viewer.may_change(&fields)?;
    let role = Role::parse(fields.get("role"))
        .ok_or_else(|| ConsoleError::Invalid("Pick owner or reader.".into()))?;
    state
        .control
        .set_member_role(&viewer.actor(), &user, role)
        .await?;
    Ok(see_other(MEMBERS))
}

pub async fn remove(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(user): Path<String>,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    viewer.may_change(&fields)?;
    state.control.remove_member(&viewer.actor(), &user).await?;
    Ok(see_other(MEMBERS))
}

pub async fn reset_password(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(user): Path<String>,
    fields: Fields,
) -> Result<Html<String>, ConsoleError> {
    viewer.may_change(&fields)?;
    let (member, password) = state.control.reset_password(&viewer.actor(), &user).await?;
    let shown = shown_once(
        &format!("New password for {}", member.user.email),
        "new-password",
        &password,
        "Their sessions are signed out; give them this password (they can change it on their account page).",
    );
    members_page(&state, &viewer, Some(shown)).await
}

pub async fn withdraw(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Path(id): Path<String>,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    viewer.may_change(&fields)?;
    state.control.delete_invite(&viewer.actor(), &id).await?;
    Ok(see_other(MEMBERS))
}
