//! `tollgate limits ...` and `tollgate budgets ...`.

use crate::cli::{BudgetsCommand, HolderArgs, LimitsCommand, RateArgs};
use crate::failure::Failure;
use crate::manage::Manage;
use crate::output::{print_json, print_list_json, print_table};
use tollgate_control::{holder_text, BudgetRequest, HolderRequest};
use tollgate_core::limit_rules::RateLimits;
use tollgate_core::limits::go_duration;

const APPLIED: &str = "Running servers apply it within a second.";

pub fn holder(args: HolderArgs) -> HolderRequest {
    match (args.org, args.project, args.key) {
        (_, Some(project), _) => HolderRequest::Project(project),
        (_, None, Some(key)) => HolderRequest::Key(key),
        _ => HolderRequest::Organization,
    }
}

pub fn rate_limits(args: &RateArgs) -> RateLimits {
    RateLimits {
        rpm: args.rpm,
        rpd: args.rpd,
        tpm: args.tpm,
        tpd: args.tpd,
        concurrent: args.concurrency,
    }
}

/// A budget from the CLI's words (see [`BudgetRequest::parse`]).
pub fn budget_request(
    amount: &str,
    period: &str,
    timezone: &str,
    alerts: &[String],
) -> Result<BudgetRequest, Failure> {
    BudgetRequest::parse(amount, period, timezone, alerts)
        .map_err(|e| Failure::invalid(e.to_string()))
}

fn percentages(percents: &[f64]) -> String {
    if percents.is_empty() {
        return "-".into();
    }
    percents
        .iter()
        .map(|p| format!("{p}%"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn limits_text(limits: &RateLimits) -> String {
    limits
        .iter()
        .map(|(metric, limit)| format!("{} {limit}", metric.short()))
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn run_limits(
    manage: &impl Manage,
    command: LimitsCommand,
    json: bool,
) -> Result<(), Failure> {
    match command {
        LimitsCommand::Set {
            holder: who,
            model,
            limits,
        } => {
            let rule = manage
                .set_limits(&holder(who), &model, rate_limits(&limits))
                .await?;
            if json {
                return Ok(print_json(&rule)?);
            }
            println!(
                "Limits of {} on model {}: {}. {APPLIED}",
                holder_text(&rule.level, &rule.holder),
                rule.model,
                limits_text(&rule.limits)
            );
            Ok(())
        }
        LimitsCommand::Remove { holder: who, model } => {
            let who = holder(who);
            manage.remove_limits(&who, &model).await?;
            if !json {
                println!("Removed the limits on model {model}. {APPLIED}");
            }
            Ok(())
        }
        LimitsCommand::List => {
            let rules = manage.limit_rules().await?;
            if json {
                return Ok(print_list_json(rules)?);
            }
            let rows: Vec<Vec<String>> = rules
                .iter()
                .map(|r| {
                    vec![
                        r.level.clone(),
                        r.holder.clone(),
                        r.model.clone(),
                        limits_text(&r.limits),
                    ]
                })
                .collect();
            Ok(print_table(&["LEVEL", "HOLDER", "MODEL", "LIMITS"], &rows)?)
        }
        LimitsCommand::Show { holder: who } => {
            let report = manage.limits_report(&holder(who)).await?;
            if json {
                return Ok(print_json(&report)?);
            }
            let dash = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
            let rows: Vec<Vec<String>> = report
                .limits
                .iter()
                .map(|l| {
                    vec![
                        l.level.clone(),
                        l.holder.clone(),
                        l.model.clone(),
                        l.metric.clone(),
                        l.limit.to_string(),
                        dash(l.used),
                        dash(l.remaining),
                        l.reset_secs
                            .map(|s| go_duration(std::time::Duration::from_secs(s)))
                            .unwrap_or_else(|| "-".into()),
                    ]
                })
                .collect();
            if rows.is_empty() {
                println!("No rate limits apply.");
            } else {
                print_table(
                    &[
                        "LEVEL",
                        "HOLDER",
                        "MODEL",
                        "LIMIT",
                        "VALUE",
                        "USED",
                        "REMAINING",
                        "RESET",
                    ],
                    &rows,
                )?;
            }
            println!();
            let rows: Vec<Vec<String>> = report
                .budgets
                .iter()
                .map(|b| {
                    vec![
                        b.level.clone(),
                        b.holder.clone(),
                        format!("{} ({})", b.period, b.timezone),
                        b.limit_usd.clone(),
                        b.spent_usd.clone(),
                        b.remaining_usd.clone(),
                        b.resets_at.clone(),
                    ]
                })
                .collect();
            if rows.is_empty() {
                println!("No budgets apply.");
            } else {
                print_table(
                    &[
                        "LEVEL",
                        "HOLDER",
                        "BUDGET",
                        "LIMIT",
                        "SPENT",
                        "REMAINING",
                        "RESETS",
                    ],
                    &rows,
                )?;
            }
            println!("\nUse is read from metered requests: the trailing minute or day for rate limits, the current period for budgets.");
            Ok(())
        }
    }
}

pub async fn run_budgets(
    manage: &impl Manage,
    command: BudgetsCommand,
    json: bool,
) -> Result<(), Failure> {
    match command {
        BudgetsCommand::Set {
            holder: who,
            amount,
            period,
            timezone,
            alerts,
        } => {
            let request = budget_request(&amount, &period, &timezone, &alerts)?;
            let budget = manage.set_budget(&holder(who), request).await?;
            if json {
                return Ok(print_json(&budget)?);
            }
            println!(
                "Budget of {}: {} per {} ({}), alerts at {}. {APPLIED}",
                holder_text(&budget.level, &budget.holder),
                budget.limit_usd,
                budget.period,
                budget.timezone,
                percentages(&budget.alerts_percent)
            );
            Ok(())
        }
        BudgetsCommand::Remove { holder: who } => {
            manage.remove_budget(&holder(who)).await?;
            if !json {
                println!("Removed the budget. {APPLIED}");
            }
            Ok(())
        }
        BudgetsCommand::List => {
            let statuses = manage.budgets().await?;
            if json {
                return Ok(print_list_json(statuses)?);
            }
            let rows: Vec<Vec<String>> = statuses
                .iter()
                .map(|s| {
                    vec![
                        s.level.clone(),
                        s.holder.clone(),
                        format!("{} ({})", s.period, s.timezone),
                        s.limit_usd.clone(),
                        s.spent_usd.clone(),
                        s.alerts_percent
                            .iter()
                            .map(|p| format!("{p}%"))
                            .collect::<Vec<_>>()
                            .join(", "),
                        s.resets_at.clone(),
                    ]
                })
                .collect();
            Ok(print_table(
                &[
                    "LEVEL", "HOLDER", "PERIOD", "LIMIT", "SPENT", "ALERTS", "RESETS",
                ],
                &rows,
            )?)
        }
    }
}
