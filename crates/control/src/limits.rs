//! Rate limits and budgets: setting them at a level, and reading them back with current use.

use crate::{Control, ControlError, Result};
use serde_json::json;
use tollgate_core::budget::{dollars, format_utc_offset, percent, Budget, BudgetPeriod};
use tollgate_core::holder::{Holder, Level};
use tollgate_core::limit_rules::{LimitRule, Metric, RateLimits};
use tollgate_core::routing::ModelPattern;
use tollgate_core::{MicroUsd, ProjectId, UnixTime};
use tollgate_store::{Actor, Organization, Write};

/// Who a limit is for, as the caller names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HolderRequest {
    Organization,
    /// A project by id or name.
    Project(String),
    /// A key by id.
    Key(String),
}

/// A budget to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetRequest {
    pub limit: MicroUsd,
    pub period: BudgetPeriod,
    pub utc_offset_secs: i64,
    /// Alert thresholds in per mille of the limit.
    pub alerts_permille: Vec<u32>,
}

impl BudgetRequest {
    /// A budget from people's words: `12.50` dollars, `day|week|month`, `UTC` or a fixed
    /// offset such as `+05:30`, alert percentages such as `50`, `80%`, `100`. The CLI and the
    /// admin API take budgets in these words.
    pub fn parse(
        amount: &str,
        period: &str,
        timezone: &str,
        alerts: &[String],
    ) -> Result<BudgetRequest> {
        let limit = MicroUsd::parse_dollars(amount).ok_or_else(|| {
            ControlError::Invalid(format!(
                "`{amount}` is not an amount in dollars: write it like 50 or 12.50"
            ))
        })?;
        let period = BudgetPeriod::parse(period).ok_or_else(|| {
            ControlError::Invalid(format!(
                "`{period}` is not a budget period: use day, week or month"
            ))
        })?;
        let utc_offset_secs = tollgate_core::budget::parse_utc_offset(timezone).ok_or_else(|| {
            ControlError::Invalid(format!(
                "`{timezone}` is not a time zone Tollgate can use: give UTC or a fixed offset such as +05:30 or -08:00"
            ))
        })?;
        let alerts_permille = alerts
            .iter()
            .map(|a| {
                let text = a.trim().trim_end_matches('%');
                text.parse::<f64>()
                    .ok()
                    .filter(|p| p.is_finite() && *p > 0.0 && *p <= 1_000.0)
                    .map(|p| (p * 10.0).round() as u32)
                    .ok_or_else(|| {
                        ControlError::Invalid(format!(
                            "`{a}` is not an alert percentage: give a number above 0 such as 50, 80 or 100"
                        ))
                    })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(BudgetRequest {
            limit,
            period,
            utc_offset_secs,
            alerts_permille,
        })
    }
}

/// One limit with how much of it is used now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LimitStatus {
    pub level: String,
    pub holder: String,
    pub model: String,
    /// `rpm`, `rpd`, `tpm`, `tpd`, `concurrency`.
    pub metric: String,
    pub limit: u64,
    /// Used in the trailing window (a minute or a day); `None` for concurrency, which only the
    /// server knows.
    pub used: Option<u64>,
    pub remaining: Option<u64>,
    /// Seconds until the used part has refilled.
    pub reset_secs: Option<u64>,
}

/// One budget with its spend in the current period.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BudgetStatus {
    pub level: String,
    pub holder: String,
    pub period: String,
    pub timezone: String,
    pub limit_usd: String,
    pub spent_usd: String,
    pub remaining_usd: String,
    pub period_start: String,
    pub resets_at: String,
    pub alerts_percent: Vec<f64>,
}

/// Everything that limits one holder: its own rules and budget and those of the levels above.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LimitsReport {
    pub limits: Vec<LimitStatus>,
    pub budgets: Vec<BudgetStatus>,
}

impl Control {
    /// Resolves who a limit is for, checking that the project or key exists.
    async fn holder(
        &self,
        org: &Organization,
        request: &HolderRequest,
    ) -> Result<(Holder, Option<ProjectId>)> {
        Ok(match request {
            HolderRequest::Organization => {
                (Holder::new(Level::Organization, org.id.as_str()), None)
            }
            HolderRequest::Project(p) => {
                let project = self.store.find_project(&org.id, p).await?;
                (
                    Holder::new(Level::Project, project.id.as_str()),
                    Some(project.id),
                )
            }
            HolderRequest::Key(k) => {
                let key = self.key(k).await?;
                (Holder::new(Level::Key, key.id.as_str()), key.project_id)
            }
        })
    }

    /// Sets limits for a holder and model pattern; limits not given keep their current value.
    pub async fn set_limits(
        &self,
        actor: &Actor,
        holder: &HolderRequest,
        model: &str,
        limits: RateLimits,
    ) -> Result<LimitRule> {
        let org = self.organization().await?;
        let (holder, project) = self.holder(&org, holder).await?;
        // The current rule is read inside the write, so two changes at once cannot lose one.
        let mut write = self.store.write().await?;
        let current = current_limits(&mut write, &org, &holder, model).await?;
        let limits = current.unwrap_or_default().overlaid(&limits);
        let rule = self
            .put_limits(
                &mut write,
                &org,
                actor,
                holder,
                project.as_ref(),
                model,
                limits,
            )
            .await?;
        write.commit().await?;
        Ok(rule)
    }

    /// Changes a holder's limits for a model pattern: `set` replaces the metrics it gives,
    /// `clear` removes those metrics; a rule left with no limit is removed. `None` when no
    /// rule remains.
    pub async fn update_limits(
        &self,
        actor: &Actor,
        holder: &HolderRequest,
        model: &str,
        set: RateLimits,
        clear: &[Metric],
    ) -> Result<Option<LimitRule>> {
        let org = self.organization().await?;
        let (holder, project) = self.holder(&org, holder).await?;
        let mut write = self.store.write().await?;
        let current = current_limits(&mut write, &org, &holder, model).await?;
        let mut next = current.unwrap_or_default().overlaid(&set);
        for metric in clear {
            next.clear(*metric);
        }
        let rule = if next.is_empty() {
            if current.is_some() {
                self.drop_limits(&mut write, &org, actor, &holder, project.as_ref(), model)
                    .await?;
            }
            None
        } else {
            Some(
                self.put_limits(
                    &mut write,
                    &org,
                    actor,
                    holder,
                    project.as_ref(),
                    model,
                    next,
                )
                .await?,
            )
        };
        write.commit().await?;
        Ok(rule)
    }

    #[allow(clippy::too_many_arguments)] // one rule's parts, named by the caller
    async fn put_limits(
        &self,
        write: &mut Write,
        org: &Organization,
        actor: &Actor,
        holder: Holder,
        project: Option<&ProjectId>,
        model: &str,
        limits: RateLimits,
    ) -> Result<LimitRule> {
        let model = validate_pattern(model)?;
        require_limits(&limits)?;
        let rule = LimitRule {
            holder,
            model,
            limits,
        };
        let data = json!({
            "level": rule.holder.level.as_str(),
            "model": rule.model.as_str(),
            "limits": rule.limits,
        });
        let entry = self.audit_entry(
            org,
            actor,
            "rate_limit.updated",
            project,
            &rule.holder.id,
            data,
        );
        write.set_rate_limit(&org.id, &rule, &entry).await?;
        Ok(rule)
    }

    /// Removes a holder's limits for a model pattern.
    pub async fn remove_limits(
        &self,
        actor: &Actor,
        holder: &HolderRequest,
        model: &str,
    ) -> Result<()> {
        let org = self.organization().await?;
        let (holder, project) = self.holder(&org, holder).await?;
        let mut write = self.store.write().await?;
        if !self
            .drop_limits(&mut write, &org, actor, &holder, project.as_ref(), model)
            .await?
        {
            return Err(ControlError::Invalid(format!(
                "{holder} has no limits for model `{}`; `tollgate limits list` shows what is set",
                model.trim()
            )));
        }
        write.commit().await?;
        Ok(())
    }

    async fn drop_limits(
        &self,
        write: &mut Write,
        org: &Organization,
        actor: &Actor,
        holder: &Holder,
        project: Option<&ProjectId>,
        model: &str,
    ) -> Result<bool> {
        let model = validate_pattern(model)?;
        let entry = self.audit_entry(
            org,
            actor,
            "rate_limit.deleted",
            project,
            &holder.id,
            json!({"level": holder.level.as_str(), "model": model.as_str()}),
        );
        Ok(write.remove_rate_limit(holder, &model, &entry).await?)
    }

    pub async fn limit_rules(&self) -> Result<Vec<LimitRule>> {
        let org = self.organization().await?;
        Ok(self.store.rate_limits(&org.id).await?)
    }

    /// Sets (or replaces) a holder's budget.
    pub async fn set_budget(
        &self,
        actor: &Actor,
        holder: &HolderRequest,
        request: BudgetRequest,
    ) -> Result<Budget> {
        let org = self.organization().await?;
        let (holder, project) = self.holder(&org, holder).await?;
        let mut write = self.store.write().await?;
        let budget = self
            .put_budget(&mut write, &org, actor, holder, project.as_ref(), request)
            .await?;
        write.commit().await?;
        Ok(budget)
    }

    /// Sets a holder's spend limit and period, keeping the time zone and alert thresholds of
    /// the budget it replaces (UTC and none for a new one), read in the same transaction.
    pub async fn set_spend_limit(
        &self,
        actor: &Actor,
        holder: &HolderRequest,
        limit: MicroUsd,
        period: tollgate_core::budget::BudgetPeriod,
    ) -> Result<Budget> {
        self.rewrite_budget(actor, holder, |_, current| {
            Ok(BudgetRequest {
                limit,
                period,
                utc_offset_secs: current.map_or(0, |b| b.utc_offset_secs),
                alerts_permille: current
                    .map(|b| b.alerts_permille.clone())
                    .unwrap_or_default(),
            })
        })
        .await
    }

    /// Changes the alert thresholds (per mille of the limit) of a holder's budget, read and
    /// written in one transaction; a holder without a budget has no thresholds to change.
    pub async fn change_budget_alerts(
        &self,
        actor: &Actor,
        holder: &HolderRequest,
        change: impl FnOnce(&mut Vec<u32>) -> Result<()>,
    ) -> Result<Budget> {
        self.rewrite_budget(actor, holder, |holder, current| {
            let Some(current) = current else {
                return Err(ControlError::Conflict(format!(
                    "{holder} has no spend limit; alerts are thresholds of it, so set one first"
                )));
            };
            let mut alerts_permille = current.alerts_permille.clone();
            change(&mut alerts_permille)?;
            Ok(BudgetRequest {
                limit: current.limit,
                period: current.period,
                utc_offset_secs: current.utc_offset_secs,
                alerts_permille,
            })
        })
        .await
    }

    /// Replaces a holder's budget with what `next` makes of the current one (if any), both
    /// read and written in one transaction, so two changes at once cannot lose one.
    async fn rewrite_budget(
        &self,
        actor: &Actor,
        holder: &HolderRequest,
        next: impl FnOnce(&Holder, Option<&Budget>) -> Result<BudgetRequest>,
    ) -> Result<Budget> {
        let org = self.organization().await?;
        let (holder, project) = self.holder(&org, holder).await?;
        let mut write = self.store.write().await?;
        let current = write
            .budgets(&org.id)
            .await?
            .into_iter()
            .find(|b| b.holder == holder);
        let request = next(&holder, current.as_ref())?;
        let budget = self
            .put_budget(&mut write, &org, actor, holder, project.as_ref(), request)
            .await?;
        write.commit().await?;
        Ok(budget)
    }

    async fn put_budget(
        &self,
        write: &mut Write,
        org: &Organization,
        actor: &Actor,
        holder: Holder,
        project: Option<&ProjectId>,
        request: BudgetRequest,
    ) -> Result<Budget> {
        let mut alerts = request.alerts_permille;
        alerts.sort_unstable();
        alerts.dedup();
        if let Some(bad) = alerts.iter().find(|a| **a == 0 || **a > 10_000) {
            return Err(ControlError::Invalid(format!(
                "alert threshold {}% is out of range: give percentages above 0 and up to 1000",
                percent(*bad)
            )));
        }
        let budget = Budget {
            id: 0,
            holder,
            limit: request.limit,
            period: request.period,
            utc_offset_secs: request.utc_offset_secs,
            alerts_permille: alerts,
        };
        let entry = self.audit_entry(
            org,
            actor,
            "budget.updated",
            project,
            &budget.holder.id,
            json!({
                "level": budget.holder.level.as_str(),
                "limit_usd": dollars(budget.limit),
                "period": budget.period.as_str(),
                "timezone": format_utc_offset(budget.utc_offset_secs),
                "alerts_percent": budget.alerts_percent(),
            }),
        );
        Ok(write.set_budget(&org.id, &budget, &entry).await?)
    }

    pub async fn remove_budget(&self, actor: &Actor, holder: &HolderRequest) -> Result<()> {
        let org = self.organization().await?;
        let (holder, project) = self.holder(&org, holder).await?;
        let entry = self.audit_entry(
            &org,
            actor,
            "budget.deleted",
            project.as_ref(),
            &holder.id,
            json!({"level": holder.level.as_str()}),
        );
        if !self.store.remove_budget(&holder, &entry).await? {
            return Err(ControlError::Invalid(format!(
                "{holder} has no budget; `tollgate budgets list` shows what is set"
            )));
        }
        Ok(())
    }

    /// A holder's own budget with what it has spent in the current period; `None` when it has
    /// none.
    pub async fn budget_of(&self, holder: &HolderRequest) -> Result<Option<(Budget, MicroUsd)>> {
        let org = self.organization().await?;
        let (holder, _) = self.holder(&org, holder).await?;
        let Some(budget) = self
            .store
            .budgets(&org.id)
            .await?
            .into_iter()
            .find(|b| b.holder == holder)
        else {
            return Ok(None);
        };
        let (start, _) = budget
            .period
            .bounds(self.clock.now(), budget.utc_offset_secs);
        let spent = self.store.spend_since(&budget.holder, start).await?;
        Ok(Some((budget, spent)))
    }

    /// Every budget with its spend in the current period.
    pub async fn budgets(&self) -> Result<Vec<BudgetStatus>> {
        let org = self.organization().await?;
        let now = self.clock.now();
        let mut statuses = Vec::new();
        for budget in self.store.budgets(&org.id).await? {
            statuses.push(self.budget_status(&budget, now).await?);
        }
        Ok(statuses)
    }

    /// Sets a new key's limits and budget, in the transaction that stores the key.
    #[allow(clippy::too_many_arguments)] // the new key's parts, named by the caller
    pub(crate) async fn limit_new_key(
        &self,
        write: &mut Write,
        org: &Organization,
        actor: &Actor,
        key: &Holder,
        project: Option<&ProjectId>,
        limits: RateLimits,
        budget: Option<BudgetRequest>,
    ) -> Result<()> {
        if !limits.is_empty() {
            self.put_limits(write, org, actor, key.clone(), project, "*", limits)
                .await?;
        }
        if let Some(budget) = budget {
            self.put_budget(write, org, actor, key.clone(), project, budget)
                .await?;
        }
        Ok(())
    }

    /// The limits and budgets that bind a holder (for a key: the organization's, its project's
    /// and its own), with what is used now. Use is read from the metered requests: the requests
    /// and tokens of the trailing minute or day, and the spend of the budget's current period.
    pub async fn limits_report(&self, request: &HolderRequest) -> Result<LimitsReport> {
        let org = self.organization().await?;
        let (holder, project) = self.holder(&org, request).await?;
        let mut binding = vec![Holder::new(Level::Organization, org.id.as_str())];
        if holder.level == Level::Key {
            if let Some(project) = &project {
                binding.push(Holder::new(Level::Project, project.as_str()));
            }
        }
        if holder.level != Level::Organization {
            binding.push(holder);
        }
        let now = self.clock.now();
        let mut limits = Vec::new();
        for rule in self.store.rate_limits(&org.id).await? {
            if !binding.contains(&rule.holder) {
                continue;
            }
            for (metric, limit) in rule.limits.iter() {
                limits.push(self.limit_status(&rule, metric, limit, now).await?);
            }
        }
        let mut budgets = Vec::new();
        for budget in self.store.budgets(&org.id).await? {
            if binding.contains(&budget.holder) {
                budgets.push(self.budget_status(&budget, now).await?);
            }
        }
        Ok(LimitsReport { limits, budgets })
    }

    async fn limit_status(
        &self,
        rule: &LimitRule,
        metric: Metric,
        limit: u64,
        now: UnixTime,
    ) -> Result<LimitStatus> {
        let window = match metric {
            Metric::RequestsPerMinute | Metric::TokensPerMinute => Some(60),
            Metric::RequestsPerDay | Metric::TokensPerDay => Some(86_400),
            Metric::Concurrent => None,
        };
        let used = match window {
            Some(secs) => {
                let (requests, tokens) = self
                    .store
                    .usage_since(&rule.holder, rule.model.as_str(), now.plus_seconds(-secs))
                    .await?;
                Some(if metric.counts_tokens() {
                    tokens
                } else {
                    requests
                })
            }
            None => None,
        };
        Ok(LimitStatus {
            level: rule.holder.level.as_str().to_owned(),
            holder: rule.holder.id.clone(),
            model: rule.model.as_str().to_owned(),
            metric: metric.short().to_owned(),
            limit,
            used,
            remaining: used.map(|u| limit.saturating_sub(u)),
            reset_secs: match (used, window) {
                (Some(used), Some(secs)) if limit > 0 => Some(
                    (u128::from(used.min(limit)) * secs as u128).div_ceil(u128::from(limit)) as u64,
                ),
                _ => None,
            },
        })
    }

    async fn budget_status(&self, budget: &Budget, now: UnixTime) -> Result<BudgetStatus> {
        let (start, end) = budget.period.bounds(now, budget.utc_offset_secs);
        let spent = self.store.spend_since(&budget.holder, start).await?;
        Ok(BudgetStatus {
            level: budget.holder.level.as_str().to_owned(),
            holder: budget.holder.id.clone(),
            period: budget.period.as_str().to_owned(),
            timezone: format_utc_offset(budget.utc_offset_secs),
            limit_usd: dollars(budget.limit),
            spent_usd: dollars(spent),
            remaining_usd: dollars(MicroUsd((budget.limit.0 - spent.0).max(0))),
            period_start: start.rfc3339(),
            resets_at: end.rfc3339(),
            alerts_percent: budget.alerts_percent(),
        })
    }
}

/// The limits a holder has for exactly this model pattern, if any, read in `write`.
async fn current_limits(
    write: &mut Write,
    org: &Organization,
    holder: &Holder,
    model: &str,
) -> Result<Option<RateLimits>> {
    let pattern = validate_pattern(model)?;
    Ok(write
        .rate_limits(&org.id)
        .await?
        .into_iter()
        .find(|r| &r.holder == holder && r.model == pattern)
        .map(|r| r.limits))
}

/// Refuses a rule that would limit nothing.
pub fn require_limits(limits: &RateLimits) -> Result<()> {
    if limits.is_empty() {
        return Err(ControlError::Invalid(
            "give at least one limit: --rpm, --rpd, --tpm, --tpd or --concurrency".into(),
        ));
    }
    Ok(())
}

fn validate_pattern(model: &str) -> Result<ModelPattern> {
    let trimmed = model.trim();
    if trimmed.is_empty() || trimmed.len() > 200 || trimmed.chars().any(char::is_whitespace) {
        return Err(ControlError::Invalid(format!(
            "`{model}` is not a model name or pattern: use a model name like gpt-4o, a pattern like gpt-4o*, or * for every model"
        )));
    }
    Ok(ModelPattern::new(trimmed))
}
