//! Accepting an invite: the link's token (after `#`, filled in by the page's script, or pasted),
//! a name and a new password, or an existing account's password.

use crate::error::ConsoleError;
use crate::form::Fields;
use crate::layout;
use crate::pages::{see_other, with_status};
use crate::viewer::Client;
use crate::ConsoleState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use tollgate_control::{Acceptance, ErrorClass};

fn invite_page(error: Option<&str>, name: &str) -> Response {
    layout::bare(
        "Join your team on Tollgate",
        html! {
            @if let Some(error) = error { p.error role="alert" { (error) } }
            p { "You were invited to an organization. Choose your name and a password (at least 12 characters). If this email already has a Tollgate account, give its password instead." }
            form method="post" action="/console/invite" {
                label for="invite-token" { "Invite code " span.hint { "(filled in from your link)" } }
                input #invite-token type="text" name="token" autocomplete="off" required spellcheck="false";
                label for="name" { "Your name" }
                input #name type="text" name="name" value=(name) autocomplete="name" maxlength="200";
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="new-password" required minlength="12";
                p { button type="submit" { "Join" } }
            }
        },
    )
    .into_response()
}

pub async fn form() -> Response {
    invite_page(None, "")
}

pub async fn accept(
    State(state): State<ConsoleState>,
    client: Client,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    if !client.same_origin {
        return Err(ConsoleError::Forgery);
    }
    // Accepting for an address that has an account checks its password: throttled alike.
    let token: String = fields.get("token").chars().take(64).collect();
    let account = format!("invite:{token}");
    state.attempt(&account, &client.address)?;
    let outcome = state
        .control
        .accept_invite(Acceptance {
            token: fields.get("token"),
            name: fields.get("name"),
            password: fields.raw("password"),
        })
        .await;
    match outcome {
        Ok(_) => {
            state.succeeded(&account, &client.address);
            Ok(see_other("/console/login?joined=1"))
        }
        Err(err) if matches!(err.class(), ErrorClass::Invalid | ErrorClass::Conflict) => {
            Ok(with_status(
                StatusCode::BAD_REQUEST,
                invite_page(Some(&err.to_string()), fields.get("name")),
            ))
        }
        Err(err) => Err(err.into()),
    }
}
