//! Signing in and out. Failed attempts are throttled per account and per address (see
//! `tollgate_core::sign_in`); a throttled attempt is refused before any password is checked.

use crate::error::ConsoleError;
use crate::form::Fields;
use crate::layout;
use crate::pages::{see_other, set_cookie, with_status};
use crate::viewer::{cookie, landing, Client, Viewer};
use crate::ConsoleState;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;
use std::collections::HashMap;
use tollgate_control::{Credentials, ErrorClass};
use tollgate_core::invite::normalize_email;

fn sign_in_page(next: &str, email: &str, error: Option<&str>, notice: Option<&str>) -> Response {
    layout::bare(
        "Sign in",
        html! {
            @if let Some(error) = error { p.error role="alert" { (error) } }
            @if let Some(notice) = notice { p.notice role="status" { (notice) } }
            form method="post" action="/console/login" {
                input type="hidden" name="next" value=(next);
                label for="email" { "Email" }
                input #email type="email" name="email" value=(email) autocomplete="username" required autofocus;
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required;
                p { button type="submit" { "Sign in" } }
            }
            p.hint { "Forgot your password? An owner can reset it on the Members page, or run " code { "tollgate users reset-password EMAIL" } " on the server." }
        },
    )
    .into_response()
}

pub async fn form(
    State(state): State<ConsoleState>,
    client: Client,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ConsoleError> {
    let next = query.get("next").map_or("", String::as_str);
    if let Some(cookie) = &client.session {
        if state.control.session(cookie).await?.is_some() {
            return Ok(see_other(landing(next)));
        }
    }
    let notice = query
        .contains_key("signed_out")
        .then_some("You are signed out.")
        .or_else(|| {
            query
                .contains_key("password_changed")
                .then_some("Your password was changed. Sign in with the new one.")
        })
        .or_else(|| {
            query
                .contains_key("joined")
                .then_some("Welcome! Sign in with your email and the password you chose.")
        });
    Ok(sign_in_page(next, "", None, notice))
}

pub async fn submit(
    State(state): State<ConsoleState>,
    client: Client,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    if !client.same_origin {
        return Err(ConsoleError::Forgery);
    }
    let email = normalize_email(fields.get("email")).unwrap_or_default();
    let account = format!("account:{email}");
    state.attempt(&account, &client.address)?;
    let attempt = state
        .control
        .sign_in(Credentials {
            email: fields.get("email"),
            password: fields.raw("password"),
            client_ip: client.ip.clone(),
            user_agent: client.user_agent.clone(),
        })
        .await;
    match attempt {
        Ok(started) => {
            state.succeeded(&account, &client.address);
            // The session the browser came with (if any) ends: one browser, one session.
            if let Some(previous) = client
                .session
                .as_deref()
                .and_then(tollgate_core::sign_in::SessionToken::parse)
            {
                state.control.sign_out(&previous).await?;
            }
            Ok(set_cookie(
                see_other(landing(fields.get("next"))),
                &cookie(Some(&started.token), client.https),
            ))
        }
        // (The attempt was counted as a failure before the check.)
        Err(err) if err.class() == ErrorClass::Invalid => Ok(with_status(
            StatusCode::UNAUTHORIZED,
            sign_in_page(
                fields.get("next"),
                fields.get("email"),
                Some("Incorrect email or password."),
                None,
            ),
        )),
        Err(err) => Err(err.into()),
    }
}

pub async fn sign_out(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    client: Client,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    viewer.posted(&fields)?;
    state.control.sign_out(&viewer.token).await?;
    Ok(set_cookie(
        see_other("/console/login?signed_out=1"),
        &cookie(None, client.https),
    ))
}
