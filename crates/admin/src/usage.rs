//! `/v1/organization/usage/{completions,embeddings}` and `/v1/organization/costs`: time buckets
//! summed straight from the usage events the gateway recorded, so the reports equal them to
//! the token and the micro-dollar.
//!
//! Buckets start at `start_time` and are `bucket_width` long (`1m`, `1h`, `1d`; costs take
//! `1d` only) up to `end_time` (exclusive, default now); a page holds `limit` buckets (OpenAI's
//! defaults and maxima per width) and `next_page` is the cursor to the next one. Within a
//! bucket, results are grouped by the `group_by` fields; fields not grouped by are null.

use crate::auth::Caller;
use crate::error::AdminError;
use crate::objects::{UsageBucket, UsagePage};
use crate::params::Params;
use crate::AdminState;
use axum::extract::{RawQuery, State};
use axum::Json;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use tollgate_core::endpoints::Endpoint;
use tollgate_core::UnixTime;
use tollgate_store::UsageTotal;

/// The latest time a report takes (the end of the year 9999): bucket arithmetic on times up to
/// it cannot overflow.
const LATEST: i64 = 253_402_300_799;

/// Which usage report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Completions,
    Embeddings,
    Costs,
}

impl Kind {
    /// Whether usage recorded at `endpoint` belongs to this report.
    fn covers(self, endpoint: &str) -> bool {
        match Endpoint::at(endpoint) {
            Some(Endpoint::Embeddings) => matches!(self, Kind::Embeddings | Kind::Costs),
            Some(_) => matches!(self, Kind::Completions | Kind::Costs),
            None => self == Kind::Costs,
        }
    }

    fn groupable(self) -> &'static [&'static str] {
        match self {
            Kind::Completions => &[
                "project_id",
                "user_id",
                "api_key_id",
                "model",
                "batch",
                "service_tier",
            ],
            Kind::Embeddings => &["project_id", "user_id", "api_key_id", "model"],
            Kind::Costs => &["project_id", "line_item"],
        }
    }
}

/// One report's request, checked.
struct Report {
    kind: Kind,
    start: i64,
    end: i64,
    width: i64,
    limit: i64,
    first: i64,
    project_ids: Vec<String>,
    api_key_ids: Vec<String>,
    models: Vec<String>,
    group_by: Vec<String>,
    /// `batch=true`: only batch requests, and Tollgate meters none.
    batch_only: bool,
}

impl Report {
    fn parse(kind: Kind, params: &Params, now: UnixTime) -> Result<Report, AdminError> {
        let start = params.int("start_time")?.ok_or_else(|| {
            AdminError::param("start_time", "Missing required parameter: 'start_time'.")
        })?;
        if !(0..=LATEST).contains(&start) {
            return Err(AdminError::param(
                "start_time",
                "Invalid 'start_time': it must be a Unix time in seconds, before the year 10000.",
            ));
        }
        let end = params.int("end_time")?.unwrap_or(now.seconds() + 1);
        if end > LATEST {
            return Err(AdminError::param(
                "end_time",
                "Invalid 'end_time': it must be a Unix time in seconds, before the year 10000.",
            ));
        }
        if end <= start {
            return Err(AdminError::param(
                "end_time",
                "Invalid 'end_time': it must be after 'start_time'.",
            ));
        }
        let width_name = params.one("bucket_width").unwrap_or("1d");
        let (width, default, max) = match (kind, width_name) {
            (Kind::Costs, "1d") => (86_400, 7, 180),
            (Kind::Costs, _) => {
                return Err(AdminError::param(
                    "bucket_width",
                    format!("Invalid 'bucket_width': '{width_name}'. Costs take only '1d'."),
                ))
            }
            (_, "1d") => (86_400, 7, 31),
            (_, "1h") => (3_600, 24, 168),
            (_, "1m") => (60, 60, 1_440),
            _ => {
                return Err(AdminError::param(
                    "bucket_width",
                    format!("Invalid 'bucket_width': '{width_name}'. Use '1m', '1h' or '1d'."),
                ))
            }
        };
        let first = match params.one("page").filter(|p| !p.is_empty()) {
            None => 0,
            Some(page) => page
                .strip_prefix("page_")
                .and_then(|n| n.parse::<i64>().ok())
                .filter(|n| *n >= 0)
                .ok_or_else(|| {
                    AdminError::param(
                        "page",
                        format!(
                            "Invalid 'page': '{page}' is not a page cursor this endpoint gave."
                        ),
                    )
                })?,
        };
        let group_by = params.many("group_by");
        if let Some(bad) = group_by
            .iter()
            .find(|g| !kind.groupable().contains(&g.as_str()))
        {
            return Err(AdminError::param(
                "group_by",
                format!(
                    "Invalid 'group_by': '{bad}'. This endpoint groups by {}.",
                    kind.groupable().join(", ")
                ),
            ));
        }
        let mut models = params.many("models");
        models.extend(params.many("line_items"));
        Ok(Report {
            kind,
            start,
            end,
            width,
            limit: params.limit(default, max)?,
            first,
            project_ids: params.many("project_ids"),
            api_key_ids: params.many("api_key_ids"),
            models,
            group_by,
            batch_only: params.bool("batch")?,
        })
    }

    fn keeps(&self, total: &UsageTotal) -> bool {
        let within = |filter: &Vec<String>, value: &str| {
            filter.is_empty() || filter.iter().any(|f| f == value)
        };
        !self.batch_only
            && self.kind.covers(&total.endpoint)
            && within(&self.project_ids, total.project_id.as_str())
            && within(&self.api_key_ids, total.key_id.as_str())
            && within(&self.models, &total.model)
    }

    fn grouped(&self, field: &str) -> bool {
        self.group_by.iter().any(|g| g == field)
    }
}

/// Sums within one bucket and group.
#[derive(Default)]
struct Sums {
    requests: i64,
    input: i64,
    cached: i64,
    output: i64,
    cost: i64,
}

#[utoipa::path(
    get,
    path = "/v1/organization/usage/completions",
    tag = "Usage",
    summary = "Token usage of completions (chat, completions, responses)",
    params(
        ("start_time" = i64, Query, description = "The first bucket's start, a Unix time in seconds."),
        ("end_time" = Option<i64>, Query, description = "Where the report ends (exclusive); default now."),
        ("bucket_width" = Option<String>, Query, description = "`1m`, `1h` or `1d` (costs: `1d` only); default `1d`."),
        ("project_ids[]" = Option<Vec<String>>, Query, description = "Only these projects."),
        ("api_key_ids[]" = Option<Vec<String>>, Query, description = "Only these keys."),
        ("models[]" = Option<Vec<String>>, Query, description = "Only these served models."),
        ("group_by[]" = Option<Vec<String>>, Query, description = "Fields the results are grouped by."),
        ("limit" = Option<i64>, Query, description = "Buckets a page (defaults and maxima per width as OpenAI's)."),
        ("page" = Option<String>, Query, description = "The `next_page` of the previous page."),
    ),
    responses((status = 200, body = UsagePage), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn completions(
    state: State<AdminState>,
    caller: Caller,
    query: RawQuery,
) -> Result<Json<UsagePage>, AdminError> {
    report(Kind::Completions, state, caller, query).await
}

#[utoipa::path(
    get,
    path = "/v1/organization/usage/embeddings",
    tag = "Usage",
    summary = "Token usage of embeddings",
    params(
        ("start_time" = i64, Query, description = "The first bucket's start, a Unix time in seconds."),
        ("end_time" = Option<i64>, Query, description = "Where the report ends (exclusive); default now."),
        ("bucket_width" = Option<String>, Query, description = "`1m`, `1h` or `1d` (costs: `1d` only); default `1d`."),
        ("project_ids[]" = Option<Vec<String>>, Query, description = "Only these projects."),
        ("api_key_ids[]" = Option<Vec<String>>, Query, description = "Only these keys."),
        ("models[]" = Option<Vec<String>>, Query, description = "Only these served models."),
        ("group_by[]" = Option<Vec<String>>, Query, description = "Fields the results are grouped by."),
        ("limit" = Option<i64>, Query, description = "Buckets a page (defaults and maxima per width as OpenAI's)."),
        ("page" = Option<String>, Query, description = "The `next_page` of the previous page."),
    ),
    responses((status = 200, body = UsagePage), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn embeddings(
    state: State<AdminState>,
    caller: Caller,
    query: RawQuery,
) -> Result<Json<UsagePage>, AdminError> {
    report(Kind::Embeddings, state, caller, query).await
}

#[utoipa::path(
    get,
    path = "/v1/organization/costs",
    tag = "Usage",
    summary = "Costs per day, in US dollars",
    params(
        ("start_time" = i64, Query, description = "The first bucket's start, a Unix time in seconds."),
        ("end_time" = Option<i64>, Query, description = "Where the report ends (exclusive); default now."),
        ("bucket_width" = Option<String>, Query, description = "`1m`, `1h` or `1d` (costs: `1d` only); default `1d`."),
        ("project_ids[]" = Option<Vec<String>>, Query, description = "Only these projects."),
        ("api_key_ids[]" = Option<Vec<String>>, Query, description = "Only these keys."),
        ("models[]" = Option<Vec<String>>, Query, description = "Only these served models."),
        ("group_by[]" = Option<Vec<String>>, Query, description = "Fields the results are grouped by."),
        ("limit" = Option<i64>, Query, description = "Buckets a page (defaults and maxima per width as OpenAI's)."),
        ("page" = Option<String>, Query, description = "The `next_page` of the previous page."),
    ),
    responses((status = 200, body = UsagePage), crate::error::Errors),
    security(("admin_key" = []))
)]
pub async fn costs(
    state: State<AdminState>,
    caller: Caller,
    query: RawQuery,
) -> Result<Json<UsagePage>, AdminError> {
    report(Kind::Costs, state, caller, query).await
}

async fn report(
    kind: Kind,
    State(state): State<AdminState>,
    _caller: Caller,
    RawQuery(query): RawQuery,
) -> Result<Json<UsagePage>, AdminError> {
    let params = Params::parse(query.as_deref());
    let report = Report::parse(kind, &params, state.control.now())?;
    let buckets_in_all = (report.end - report.start + report.width - 1) / report.width;
    let first = report.first.min(buckets_in_all);
    let last = (first + report.limit).min(buckets_in_all);
    let page_start = report.start + first * report.width;
    let page_end = (report.start + last * report.width).min(report.end);
    let totals = if last > first {
        state
            .control
            .usage_totals(UnixTime(page_start), UnixTime(page_end), report.width)
            .await?
    } else {
        Vec::new()
    };
    // bucket -> group key -> sums, both in order.
    let mut buckets: BTreeMap<i64, BTreeMap<[Option<String>; 4], Sums>> = BTreeMap::new();
    for total in totals.iter().filter(|t| report.keeps(t)) {
        let pick = |field: &str, value: &str| report.grouped(field).then(|| value.to_owned());
        let group = [
            pick("project_id", total.project_id.as_str()),
            pick("api_key_id", total.key_id.as_str()),
            pick("model", &total.model),
            pick("line_item", &total.model),
        ];
        let sums = buckets
            .entry(total.bucket)
            .or_default()
            .entry(group)
            .or_default();
        sums.requests += total.requests;
        sums.input += total.input_tokens;
        sums.cached += total.cached_input_tokens;
        sums.output += total.output_tokens;
        sums.cost += total.cost.0;
    }
    let data: Vec<UsageBucket> = (0..last - first)
        .map(|n| {
            let start_time = page_start + n * report.width;
            let end_time = (start_time + report.width).min(report.end);
            let results: Vec<Value> = buckets
                .get(&n)
                .map(|groups| {
                    groups
                        .iter()
                        .map(|(group, sums)| result(&report, group, sums))
                        .collect()
                })
                .unwrap_or_default();
            UsageBucket {
                object: "bucket",
                start_time,
                end_time,
                results,
            }
        })
        .collect();
    let has_more = last < buckets_in_all;
    Ok(Json(UsagePage {
        object: "page",
        data,
        has_more,
        next_page: has_more.then(|| format!("page_{last}")),
    }))
}

fn result(report: &Report, group: &[Option<String>; 4], sums: &Sums) -> Value {
    let [project, key, model, line_item] = group;
    let mut object = Map::new();
    let mut put = |k: &str, v: Value| {
        object.insert(k.to_owned(), v);
    };
    match report.kind {
        Kind::Costs => {
            put("object", json!("organization.costs.result"));
            // Whole micro-dollars, turned into dollars once per result.
            put(
                "amount",
                json!({"value": sums.cost as f64 / 1_000_000.0, "currency": "usd"}),
            );
            put("line_item", json!(line_item));
            put("project_id", json!(project));
        }
        Kind::Completions | Kind::Embeddings => {
            let object_name = if report.kind == Kind::Completions {
                "organization.usage.completions.result"
            } else {
                "organization.usage.embeddings.result"
            };
            put("object", json!(object_name));
            put("input_tokens", json!(sums.input));
            put("num_model_requests", json!(sums.requests));
            put("project_id", json!(project));
            put("user_id", Value::Null);
            put("api_key_id", json!(key));
            put("model", json!(model));
            if report.kind == Kind::Completions {
                put("output_tokens", json!(sums.output));
                put("input_cached_tokens", json!(sums.cached));
                put("input_audio_tokens", json!(0));
                put("output_audio_tokens", json!(0));
                put(
                    "batch",
                    if report.grouped("batch") {
                        json!(false)
                    } else {
                        Value::Null
                    },
                );
                put("service_tier", Value::Null);
            }
        }
    }
    Value::Object(object)
}
