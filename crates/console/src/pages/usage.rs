//! Usage: cost or tokens per day (per hour for ranges of two days or less), stacked by model,
//! filtered by project, key, model and dates; the table under the chart; the same rows as CSV.
//! The numbers are the usage events summed per bucket, the admin API's usage and costs source.

use crate::chart::{self, Bar};
use crate::error::ConsoleError;
use crate::layout;
use crate::viewer::Viewer;
use crate::ConsoleState;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue};
use axum::response::{Html, IntoResponse, Response};
use maud::html;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use tollgate_core::{MicroUsd, UnixTime};
use tollgate_store::UsageTotal;

const USAGE: &str = "/console/usage";
const DAY: i64 = 86_400;

/// The report a query asks for.
struct Report {
    start: UnixTime,
    end: UnixTime,
    width: i64,
    from: String,
    to: String,
    project: String,
    key: String,
    model: String,
    /// `cost` or `tokens`.
    measure: String,
    /// One row per bucket and model: (bucket start, model) → sums.
    rows: BTreeMap<(i64, String), Sums>,
    models: Vec<String>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Sums {
    requests: i64,
    input: i64,
    output: i64,
    cost: MicroUsd,
}

async fn report(
    state: &ConsoleState,
    query: &HashMap<String, String>,
) -> Result<Report, ConsoleError> {
    let now = state.control.now();
    let today = UnixTime(now.seconds().div_euclid(DAY) * DAY);
    let day = |name: &str, default: UnixTime| match query.get(name).map(|s| s.trim()) {
        None | Some("") => Ok(default),
        Some(text) => UnixTime::from_date(text)
            .ok_or_else(|| ConsoleError::Invalid(format!("“{text}” is not a date (YYYY-MM-DD)."))),
    };
    let from_day = day("from", today.plus_seconds(-6 * DAY))?;
    let to_day = day("to", today)?;
    if to_day < from_day {
        return Err(ConsoleError::Invalid(
            "The range ends before it starts.".into(),
        ));
    }
    if to_day.seconds() - from_day.seconds() > 366 * DAY {
        return Err(ConsoleError::Invalid(
            "Show at most a year at a time.".into(),
        ));
    }
    let (start, end) = (from_day, to_day.plus_seconds(DAY));
    let width = if end.seconds() - start.seconds() <= 2 * DAY {
        3600
    } else {
        DAY
    };
    let get = |name: &str| query.get(name).map_or("", |s| s.trim()).to_owned();
    let (project, key, model) = (get("project"), get("key"), get("model"));
    let totals: Vec<UsageTotal> = state.control.usage_totals(start, end, width).await?;
    let mut rows: BTreeMap<(i64, String), Sums> = BTreeMap::new();
    let mut models = BTreeSet::new();
    for t in totals.iter().filter(|t| {
        (project.is_empty() || t.project_id.as_str() == project)
            && (key.is_empty() || t.key_id.as_str() == key)
            && (model.is_empty() || t.model == model)
    }) {
        models.insert(t.model.clone());
        let sums = rows
            .entry((start.seconds() + t.bucket * width, t.model.clone()))
            .or_default();
        sums.requests += t.requests;
        sums.input += t.input_tokens;
        sums.output += t.output_tokens;
        sums.cost = sums.cost.saturating_add(t.cost);
    }
    Ok(Report {
        start,
        end,
        width,
        from: from_day.utc_date(),
        to: to_day.utc_date(),
        project,
        key,
        model,
        measure: match query.get("measure").map(String::as_str) {
            Some("tokens") => "tokens".into(),
            _ => "cost".into(),
        },
        rows,
        models: models.into_iter().collect(),
    })
}

fn bucket_label(at: i64, width: i64) -> String {
    let t = UnixTime(at);
    if width == DAY {
        t.utc_date()[5..].to_owned()
    } else {
        t.rfc3339()[11..16].to_owned()
    }
}

/// A dollar amount on the chart's axis: cents for a dollar and up, else as many decimals as
/// the amount needs (to the micro-dollar).
fn axis_dollars(value: f64) -> String {
    if value == 0.0 {
        "$0".into()
    } else if value >= 1.0 {
        format!("${value:.2}")
    } else {
        let text = format!("{value:.6}");
        format!("${}", text.trim_end_matches('0'))
    }
}

fn dollars(cost: MicroUsd) -> String {
    cost.to_string()
}

pub async fn show(
    State(state): State<ConsoleState>,
    viewer: Viewer,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Html<String>, ConsoleError> {
    let r = report(&state, &query).await?;
    let projects = state.control.projects(true).await?;
    let mut bars = Vec::new();
    let mut at = r.start.seconds();
    while at < r.end.seconds() {
        let values = r
            .models
            .iter()
            .map(|m| {
                let sums = r.rows.get(&(at, m.clone())).copied().unwrap_or_default();
                if r.measure == "tokens" {
                    (sums.input + sums.output) as f64
                } else {
                    sums.cost.0 as f64 / 1_000_000.0
                }
            })
            .collect();
        bars.push(Bar {
            label: bucket_label(at, r.width),
            values,
        });
        at += r.width;
    }
    let total = r.rows.values().fold(Sums::default(), |acc, s| Sums {
        requests: acc.requests + s.requests,
        input: acc.input + s.input,
        output: acc.output + s.output,
        cost: acc.cost.saturating_add(s.cost),
    });
    let per = if r.width == DAY { "day" } else { "hour" };
    let title = if r.measure == "tokens" {
        format!("Tokens per {per}, by model")
    } else {
        format!("Cost per {per} in US dollars, by model")
    };
    let measure = r.measure.clone();
    let csv_query = form_urlencoded::Serializer::new(String::new())
        .append_pair("from", &r.from)
        .append_pair("to", &r.to)
        .append_pair("project", &r.project)
        .append_pair("key", &r.key)
        .append_pair("model", &r.model)
        .finish();
    let content = html! {
        form.toolbar method="get" action=(USAGE) {
            div { label for="from" { "From" } input #from type="date" name="from" value=(r.from); }
            div { label for="to" { "To" } input #to type="date" name="to" value=(r.to); }
            div {
                label for="project" { "Project" }
                select #project name="project" {
                    option value="" { "All projects" }
                    @for p in &projects { option value=(p.id) selected[r.project == p.id.as_str()] { (p.name) } }
                }
            }
            div { label for="key" { "Key ID" } input #key type="text" name="key" value=(r.key) placeholder="key_..." size="14"; }
            div { label for="model" { "Model" } input #model type="text" name="model" value=(r.model) size="14"; }
            div {
                label for="measure" { "Show" }
                select #measure name="measure" {
                    option value="cost" selected[measure == "cost"] { "Cost" }
                    option value="tokens" selected[measure == "tokens"] { "Tokens" }
                }
            }
            div { button.secondary type="submit" { "Apply" } }
            div { a.button.secondary href=(format!("{USAGE}.csv?{csv_query}")) download="" { "Export CSV" } }
        }
        div.grid {
            div.card { p.hint { "Spend" } p { strong #total-cost { (dollars(total.cost)) } } }
            div.card { p.hint { "Requests" } p { strong #total-requests { (total.requests) } } }
            div.card { p.hint { "Tokens (input + output)" } p { strong { (total.input + total.output) } } }
        }
        @if r.models.is_empty() {
            p.card { "No usage in this range." }
        } @else {
            (chart::stacked(&title, &r.models, &bars, |v| if measure == "tokens" { format!("{v:.0}") } else { axis_dollars(v) }))
        }
        h2 { "By " (per) " and model" }
        div.table-wrap tabindex="0" role="region" aria-label="Usage by time and model" {
            table #usage-table {
                thead { tr {
                    th scope="col" { (if r.width == DAY { "Day (UTC)" } else { "Hour (UTC)" }) }
                    th scope="col" { "Model" } th.num scope="col" { "Requests" }
                    th.num scope="col" { "Input tokens" } th.num scope="col" { "Output tokens" } th.num scope="col" { "Cost" }
                } }
                tbody {
                    @for ((at, model), s) in &r.rows {
                        tr {
                            td { (if r.width == DAY { UnixTime(*at).utc_date() } else { layout::time(*at) }) }
                            td { (model) }
                            td.num { (s.requests) } td.num { (s.input) } td.num { (s.output) } td.num { (dollars(s.cost)) }
                        }
                    }
                    @if r.rows.is_empty() { tr { td colspan="6" { "No usage in this range." } } }
                }
            }
        }
    };
    Ok(layout::page(&viewer, USAGE, "Usage", content))
}

/// The table's rows as CSV (RFC 4180), cost in dollars with six decimals.
pub async fn csv(
    State(state): State<ConsoleState>,
    _viewer: Viewer,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ConsoleError> {
    let r = report(&state, &query).await?;
    let mut out =
        String::from("bucket_start,model,requests,input_tokens,output_tokens,cost_usd\r\n");
    for ((at, model), s) in &r.rows {
        let cost = s.cost.to_string();
        out.push_str(&format!(
            "{},{},{},{},{},{}\r\n",
            UnixTime(*at).rfc3339(),
            csv_field(model),
            s.requests,
            s.input,
            s.output,
            cost.trim_start_matches('$')
        ));
    }
    let mut response = out.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(value) = HeaderValue::from_str(&format!(
        "attachment; filename=\"tollgate-usage-{}-{}.csv\"",
        r.from, r.to
    )) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok(response)
}

/// A CSV field: quoted when it holds a comma, quote or line break; a leading `=`, `+`, `-`,
/// `@`, tab or carriage return is escaped so a spreadsheet does not run it as a formula.
fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_amounts_keep_their_digits_on_the_axis() {
        assert_eq!(axis_dollars(0.0), "$0");
        assert_eq!(axis_dollars(0.000005), "$0.000005");
        assert_eq!(axis_dollars(0.25), "$0.25");
        assert_eq!(axis_dollars(12.5), "$12.50");
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("gpt-4o"), "gpt-4o");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(csv_field("\t=cmd()"), "'\t=cmd()");
        assert_eq!(csv_field("\r=x"), "\"'\r=x\"");
    }
}
