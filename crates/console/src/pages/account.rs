//! The signed-in member's own account: who they are, and changing their password (which signs
//! out every session of theirs).

use crate::error::ConsoleError;
use crate::form::Fields;
use crate::layout::{self, csrf};
use crate::pages::{see_other, set_cookie};
use crate::viewer::{cookie, Client, Viewer};
use crate::ConsoleState;
use axum::extract::State;
use axum::response::{Html, Response};
use maud::html;

pub async fn show(viewer: Viewer) -> Html<String> {
    layout::page(
        &viewer,
        "",
        "Your account",
        html! {
            dl.facts {
                dt { "Name" } dd { (viewer.member.user.name) }
                dt { "Email" } dd { (viewer.member.user.email) }
                dt { "Role" } dd { (viewer.member.role.as_str()) }
                dt { "User ID" } dd.mono { (viewer.member.user.id) }
            }
            h2 { "Change password" }
            form.card method="post" action="/console/account/password" {
                (csrf(&viewer))
                label for="current" { "Current password" }
                input #current type="password" name="current" autocomplete="current-password" required;
                label for="new" { "New password " span.hint { "(at least 12 characters)" } }
                input #new type="password" name="new" autocomplete="new-password" required minlength="12";
                p { button type="submit" { "Change password" } }
                p.hint { "Every session of yours is signed out, this one included." }
            }
        },
    )
}

pub async fn change_password(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    client: Client,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    viewer.posted(&fields)?;
    let account = format!("account:{}", viewer.member.user.email);
    state.attempt(&account, &client.address)?;
    state
        .control
        .change_password(&viewer.member, fields.raw("current"), fields.raw("new"))
        .await?;
    state.succeeded(&account, &client.address);
    Ok(set_cookie(
        see_other("/console/login?password_changed=1"),
        &cookie(None, client.https),
    ))
}
