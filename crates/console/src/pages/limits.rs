//! Limits and budgets: every rate limit and budget with its current use (meters), and forms to
//! set a budget (with alert thresholds) or rate limits for the organization, a project or a key.

use crate::error::ConsoleError;
use crate::form::Fields;
use crate::layout::{self, csrf};
use crate::pages::see_other;
use crate::viewer::Viewer;
use crate::ConsoleState;
use axum::extract::State;
use axum::response::{Html, Response};
use maud::{html, Markup};
use tollgate_control::{BudgetRequest, BudgetStatus, HolderRequest, LimitsReport};

const LIMITS: &str = "/console/limits";

fn amount(text: &str) -> f64 {
    text.trim_start_matches('$').parse::<f64>().unwrap_or(0.0)
}

/// Budgets with their spend; with an owner viewing, each with a remove button.
fn budget_rows(budgets: &[BudgetStatus], owner: Option<&Viewer>) -> Markup {
    html! {
        div.table-wrap tabindex="0" role="region" aria-label="Budgets" {
            table.budgets {
                thead { tr {
                    th scope="col" { "For" } th scope="col" { "Period" } th.num scope="col" { "Spent" }
                    th.num scope="col" { "Limit" } th scope="col" { "Used" } th scope="col" { "Alerts at" } th scope="col" { "Resets" }
                    @if owner.is_some() { th scope="col" { span.hint { "Actions" } } }
                } }
                tbody {
                    @for b in budgets {
                        @let (spent, limit) = (amount(&b.spent_usd), amount(&b.limit_usd));
                        tr {
                            td { (b.level) " " span.mono { (b.holder) } }
                            td { (b.period) " (" (b.timezone) ")" }
                            td.num { "$" (b.spent_usd) } td.num { "$" (b.limit_usd) }
                            td {
                                meter min="0" max=(limit.max(f64::MIN_POSITIVE)) low=(limit * 0.8) high=(limit * 0.95) optimum="0" value=(spent.min(limit))
                                    aria-label=(format!("{} of {} spent", b.spent_usd, b.limit_usd)) {}
                                " " (if limit > 0.0 { format!("{:.0}%", spent / limit * 100.0) } else { "—".into() })
                            }
                            td { (b.alerts_percent.iter().map(|p| format!("{p}%")).collect::<Vec<_>>().join(", ")) }
                            td { (b.resets_at) }
                            @if let Some(viewer) = owner {
                                td {
                                    form method="post" action=(format!("{LIMITS}/budget/remove")) {
                                        (csrf(viewer))
                                        input type="hidden" name="level" value=(b.level);
                                        input type="hidden" name="holder" value=(b.holder);
                                        button.link type="submit" aria-label=(format!("Remove the budget of {} {}", b.level, b.holder)) { "Remove" }
                                    }
                                }
                            }
                        }
                    }
                    @if budgets.is_empty() { tr { td colspan="8" { "No budgets." } } }
                }
            }
        }
    }
}

/// The limits and budgets that bind one holder, with their use.
pub fn report_table(report: &LimitsReport) -> Markup {
    html! {
        div.table-wrap tabindex="0" role="region" aria-label="Limits in use" {
            table {
                thead { tr {
                    th scope="col" { "For" } th scope="col" { "Model" } th scope="col" { "Limit" }
                    th.num scope="col" { "Used" } th.num scope="col" { "Of" } th scope="col" { "Use" }
                } }
                tbody {
                    @for l in &report.limits {
                        tr {
                            td { (l.level) " " span.mono { (l.holder) } }
                            td.mono { (l.model) }
                            td { (l.metric) }
                            td.num { (l.used.map_or_else(|| "—".to_owned(), |u| u.to_string())) }
                            td.num { (l.limit) }
                            td {
                                @if let Some(used) = l.used {
                                    meter min="0" max=(l.limit.max(1)) high=((l.limit as f64) * 0.9) value=(used.min(l.limit)) aria-label=(format!("{used} of {} {}", l.limit, l.metric)) {}
                                }
                            }
                        }
                    }
                    @if report.limits.is_empty() { tr { td colspan="6" { "No rate limits." } } }
                }
            }
        }
        @if !report.budgets.is_empty() {
            h2 { "Budgets" }
            (budget_rows(&report.budgets, None))
        }
    }
}

fn holder_fields(prefix: &str) -> Markup {
    html! {
        div {
            label for=(format!("{prefix}-level")) { "For" }
            select id=(format!("{prefix}-level")) name="level" {
                option value="organization" { "The organization" }
                option value="project" { "A project" }
                option value="key" { "A key" }
            }
        }
        div {
            label for=(format!("{prefix}-holder")) { "Project or key " span.hint { "(id or project name)" } }
            input id=(format!("{prefix}-holder")) type="text" name="holder" size="18";
        }
    }
}

pub async fn show(
    State(state): State<ConsoleState>,
    viewer: Viewer,
) -> Result<Html<String>, ConsoleError> {
    let budgets = state.control.budgets().await?;
    let rules = state.control.limit_rules().await?;
    let org = state
        .control
        .limits_report(&HolderRequest::Organization)
        .await?;
    let content = html! {
        p { "Rate limits refuse requests over them (429); budgets refuse requests once a period's spend reaches them. Alerts fire at their thresholds to the configured webhook and the audit log." }
        h2 { "Budgets" }
        (budget_rows(&budgets, Some(&viewer).filter(|v| v.is_owner())))
        h2 { "Rate limits" }
        div.table-wrap tabindex="0" role="region" aria-label="Rate limits" {
            table {
                thead { tr {
                    th scope="col" { "For" } th scope="col" { "Model" } th.num scope="col" { "RPM" } th.num scope="col" { "RPD" }
                    th.num scope="col" { "TPM" } th.num scope="col" { "TPD" } th.num scope="col" { "At once" }
                    @if viewer.is_owner() { th scope="col" { span.hint { "Actions" } } }
                } }
                tbody {
                    @for r in &rules {
                        @let show = |v: Option<u64>| v.map_or_else(|| "—".to_owned(), |v| v.to_string());
                        tr {
                            td { (r.holder.level.as_str()) " " span.mono { (r.holder.id) } }
                            td.mono { (r.model.as_str()) }
                            td.num { (show(r.limits.rpm)) } td.num { (show(r.limits.rpd)) } td.num { (show(r.limits.tpm)) }
                            td.num { (show(r.limits.tpd)) } td.num { (show(r.limits.concurrent)) }
                            @if viewer.is_owner() {
                                td {
                                    form method="post" action=(format!("{LIMITS}/rate/remove")) {
                                        (csrf(&viewer))
                                        input type="hidden" name="level" value=(r.holder.level.as_str());
                                        input type="hidden" name="holder" value=(r.holder.id);
                                        input type="hidden" name="model" value=(r.model.as_str());
                                        button.link type="submit" aria-label=(format!("Remove the limits of {} {} on {}", r.holder.level.as_str(), r.holder.id, r.model.as_str())) { "Remove" }
                                    }
                                }
                            }
                        }
                    }
                    @if rules.is_empty() { tr { td colspan="8" { "No rate limits." } } }
                }
            }
        }
        h2 { "The organization's use now" }
        (report_table(&org))
        @if viewer.is_owner() {
            h2 { "Set a budget" }
            form.card method="post" action=(format!("{LIMITS}/budget")) {
                (csrf(&viewer))
                div.toolbar {
                    (holder_fields("budget"))
                    div { label for="limit_usd" { "Limit in US dollars" } input #limit_usd type="text" name="limit_usd" inputmode="decimal" required size="10"; }
                    div { label for="period" { "Per" } select #period name="period" { option value="month" { "Month" } option value="week" { "Week" } option value="day" { "Day" } } }
                    div { label for="alerts" { "Alert at % " span.hint { "(comma-separated)" } } input #alerts type="text" name="alerts" placeholder="50, 80, 100" size="12"; }
                    div { button type="submit" { "Set budget" } }
                }
            }
            h2 { "Set rate limits" }
            form.card method="post" action=(format!("{LIMITS}/rate")) {
                (csrf(&viewer))
                div.toolbar {
                    (holder_fields("rate"))
                    div { label for="model" { "Model " span.hint { "(or pattern)" } } input #model type="text" name="model" value="*" size="10"; }
                    @for (field, label) in [("rpm", "RPM"), ("rpd", "RPD"), ("tpm", "TPM"), ("tpd", "TPD"), ("concurrency", "At once")] {
                        div { label for=(field) { (label) } input id=(field) type="number" name=(field) min="1" size="8"; }
                    }
                    div { button type="submit" { "Set limits" } }
                }
            }
        }
    };
    Ok(layout::page(&viewer, LIMITS, "Limits and budgets", content))
}

fn holder(fields: &Fields) -> Result<HolderRequest, ConsoleError> {
    let named = fields.get("holder");
    match fields.get("level") {
        "project" if !named.is_empty() => Ok(HolderRequest::Project(named.to_owned())),
        "key" if !named.is_empty() => Ok(HolderRequest::Key(named.to_owned())),
        "project" | "key" => Err(ConsoleError::Invalid(
            "Name the project or key the limit is for.".into(),
        )),
        _ => Ok(HolderRequest::Organization),
    }
}

pub async fn set_budget(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    viewer.may_change(&fields)?;
    let request = BudgetRequest::parse(
        fields.get("limit_usd"),
        match fields.get("period") {
            "" => "month",
            p => p,
        },
        "UTC",
        &fields.list("alerts"),
    )?;
    state
        .control
        .set_budget(&viewer.actor(), &holder(&fields)?, request)
        .await?;
    Ok(see_other(LIMITS))
}

pub async fn set_rate(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    viewer.may_change(&fields)?;
    let limits = fields.rate_limits()?;
    if limits.is_empty() {
        return Err(ConsoleError::Invalid("Give at least one limit.".into()));
    }
    let model = match fields.get("model") {
        "" => "*",
        m => m,
    };
    state
        .control
        .update_limits(&viewer.actor(), &holder(&fields)?, model, limits, &[])
        .await?;
    Ok(see_other(LIMITS))
}

pub async fn remove_budget(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    viewer.may_change(&fields)?;
    state
        .control
        .remove_budget(&viewer.actor(), &holder(&fields)?)
        .await?;
    Ok(see_other(LIMITS))
}

pub async fn remove_rate(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    fields: Fields,
) -> Result<Response, ConsoleError> {
    viewer.may_change(&fields)?;
    state
        .control
        .remove_limits(&viewer.actor(), &holder(&fields)?, fields.get("model"))
        .await?;
    Ok(see_other(LIMITS))
}
