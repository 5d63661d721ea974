//! The page shell: head (embedded stylesheet and script), a skip link, the organization's name,
//! the navigation, the signed-in member with a sign-out button, and the page's content.

use crate::viewer::Viewer;
use axum::response::Html;
use maud::{html, Markup, DOCTYPE};

/// The console's sections, in navigation order: (path, label).
pub const SECTIONS: &[(&str, &str)] = &[
    ("/console/api-keys", "API keys"),
    ("/console/usage", "Usage"),
    ("/console/limits", "Limits"),
    ("/console/projects", "Projects"),
    ("/console/members", "Members"),
    ("/console/service-accounts", "Service accounts"),
    ("/console/audit", "Audit log"),
    ("/console/settings", "Settings"),
];

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="referrer" content="same-origin";
            title { (title) " · Tollgate" }
            link rel="stylesheet" href=(crate::assets::STYLESHEET);
            script src=(crate::assets::SCRIPT) defer {}
        }
    }
}

/// A page of the signed-in console; `active` is the section's path.
pub fn page(viewer: &Viewer, active: &str, title: &str, content: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                (head(title))
                body {
                    a.skip href="#main" { "Skip to content" }
                    header.top {
                        a.brand href="/console/api-keys" { "Tollgate" }
                        span.org { (viewer.organization) }
                        div.who {
                            a href="/console/account" { (viewer.member.user.email) }
                            " "
                            span.badge { (viewer.member.role.as_str()) }
                            form method="post" action="/console/logout" {
                                input type="hidden" name="csrf" value=(viewer.csrf);
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                    div.shell {
                        nav.side aria-label="Console" {
                            ul {
                                @for (path, label) in SECTIONS {
                                    li {
                                        @if *path == active {
                                            a href=(path) aria-current="page" { (label) }
                                        } @else {
                                            a href=(path) { (label) }
                                        }
                                    }
                                }
                            }
                        }
                        main #main tabindex="-1" {
                            h1 { (title) }
                            (content)
                        }
                    }
                }
            }
        }
        .into_string(),
    )
}

/// A page without the console's navigation: signing in, accepting an invite, errors.
pub fn bare(title: &str, content: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="en" {
                (head(title))
                body.bare {
                    main #main.card {
                        p.brand { "Tollgate" }
                        h1 { (title) }
                        (content)
                    }
                }
            }
        }
        .into_string(),
    )
}

/// A Unix time as the console shows it (UTC, to the minute).
pub fn time(seconds: i64) -> String {
    let t = tollgate_core::UnixTime(seconds).rfc3339();
    // 2026-12-02T04:50:35Z → 2026-12-02 04:50 UTC
    let mut shown = t.replacen('T', " ", 1);
    shown.truncate(16);
    format!("{shown} UTC")
}

/// An optional time, or a dash.
pub fn maybe_time(seconds: Option<i64>) -> String {
    seconds.map_or_else(|| "—".to_owned(), time)
}

/// The hidden anti-forgery field of a form.
pub fn csrf(viewer: &Viewer) -> Markup {
    html! { input type="hidden" name="csrf" value=(viewer.csrf); }
}
