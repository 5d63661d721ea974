use crate::cli::{GroupBy, UsageArgs};
use crate::failure::Failure;
use crate::manage::Manage;
use crate::output::{print_json, print_table};
use tollgate_core::{MicroUsd, UnixTime};
use tollgate_store::UsageGrouping;

pub async fn run(manage: &impl Manage, args: UsageArgs, json: bool) -> Result<(), Failure> {
    if args.events {
        return events(manage, &args, json).await;
    }
    let now = manage.now();
    let since = day(args.since.as_deref(), now.plus_seconds(-30 * 86_400))?;
    let until = day(args.until.as_deref(), now)?;
    if since > until {
        return Err(Failure::invalid(format!(
            "--since {} is after --until {}",
            since.utc_date(),
            until.utc_date()
        )));
    }
    let (grouping, label) = match args.by {
        GroupBy::Day => (UsageGrouping::Day, "DAY"),
        GroupBy::Model => (UsageGrouping::Model, "MODEL"),
        GroupBy::Key => (UsageGrouping::Key, "KEY"),
        GroupBy::Project => (UsageGrouping::Project, "PROJECT"),
    };
    let rows = manage.usage(grouping, since, until).await?;
    if json {
        return Ok(print_json(&serde_json::json!({
            "object": "usage.report",
            "since": since.utc_date(),
            "until": until.utc_date(),
            "group_by": label.to_lowercase(),
            "data": rows,
        }))?);
    }
    if rows.is_empty() {
        println!(
            "No usage between {} and {} (UTC).",
            since.utc_date(),
            until.utc_date()
        );
        return Ok(());
    }
    let mut table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.group.clone(),
                r.requests.to_string(),
                r.input_tokens.to_string(),
                r.cached_input_tokens.to_string(),
                r.output_tokens.to_string(),
                r.cost.to_string(),
            ]
        })
        .collect();
    let total = rows
        .iter()
        .fold(MicroUsd::ZERO, |acc, r| acc.saturating_add(r.cost));
    table.push(vec![
        "TOTAL".into(),
        rows.iter().map(|r| r.requests).sum::<i64>().to_string(),
        rows.iter().map(|r| r.input_tokens).sum::<i64>().to_string(),
        rows.iter()
            .map(|r| r.cached_input_tokens)
            .sum::<i64>()
            .to_string(),
        rows.iter()
            .map(|r| r.output_tokens)
            .sum::<i64>()
            .to_string(),
        total.to_string(),
    ]);
    Ok(print_table(
        &[label, "REQUESTS", "INPUT", "CACHED", "OUTPUT", "COST"],
        &table,
    )?)
}

/// `usage --events`: the newest requests, one row each.
async fn events(manage: &impl Manage, args: &UsageArgs, json: bool) -> Result<(), Failure> {
    let events = manage
        .recent_requests(args.key.as_deref(), args.limit)
        .await?;
    if json {
        return Ok(print_json(&serde_json::json!({
            "object": "list",
            "data": events,
        }))?);
    }
    if events.is_empty() {
        println!("No requests metered yet.");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            vec![
                e.created_at.rfc3339(),
                e.request_id.clone(),
                e.key_id.to_string(),
                e.endpoint.clone(),
                e.model_served.clone(),
                e.status.to_string(),
                e.input_tokens.to_string(),
                e.output_tokens.to_string(),
                e.cost.to_string(),
            ]
        })
        .collect();
    Ok(print_table(
        &[
            "TIME", "REQUEST", "KEY", "ENDPOINT", "MODEL", "STATUS", "INPUT", "OUTPUT", "COST",
        ],
        &rows,
    )?)
}

fn day(text: Option<&str>, default: UnixTime) -> Result<UnixTime, Failure> {
    match text {
        None => Ok(default),
        Some(t) => UnixTime::from_date(t)
            .ok_or_else(|| Failure::invalid(format!("`{t}` is not a date: write YYYY-MM-DD"))),
    }
}
