use crate::write::Tx;
use crate::{audit, change_log, AuditEntry, ChangedEntity, Result, Store};
use tollgate_core::budget::{Budget, BudgetPeriod};
use tollgate_core::holder::{Holder, Level};
use tollgate_core::{MicroUsd, OrgId, UnixTime};

#[derive(sqlx::FromRow)]
struct BudgetRow {
    id: i64,
    level: String,
    holder_id: String,
    limit_micro_usd: i64,
    period: String,
    utc_offset_secs: i64,
    alerts: String,
}

impl BudgetRow {
    fn into_budget(self) -> Option<Budget> {
        Some(Budget {
            id: self.id,
            holder: Holder::new(Level::parse(&self.level)?, self.holder_id),
            limit: MicroUsd(self.limit_micro_usd),
            period: BudgetPeriod::parse(&self.period)?,
            utc_offset_secs: self.utc_offset_secs,
            alerts_permille: serde_json::from_str(&self.alerts).unwrap_or_default(),
        })
    }
}

/// Every budget of an organization.
pub(crate) async fn read(tx: &mut Tx, org: &OrgId) -> Result<Vec<Budget>> {
    let rows: Vec<BudgetRow> =
        in_tx!(tx, e => sqlx::query_as(READ).bind(org.as_str()).fetch_all(e).await)?;
    Ok(budgets(rows))
}

const READ: &str =
    "SELECT id, level, holder_id, limit_micro_usd, period, utc_offset_secs, alerts FROM budgets
     WHERE org_id = $1 ORDER BY level, holder_id";

fn budgets(rows: Vec<BudgetRow>) -> Vec<Budget> {
    rows.into_iter()
        .filter_map(BudgetRow::into_budget)
        .collect()
}

impl Store {
    /// Every budget of an organization.
    pub async fn budgets(&self, org: &OrgId) -> Result<Vec<Budget>> {
        let rows: Vec<BudgetRow> =
            in_pool!(self.pool, e => sqlx::query_as(READ).bind(org.as_str()).fetch_all(e).await)?;
        Ok(budgets(rows))
    }
}

/// Creates or replaces the budget of `budget.holder` (its `id` is ignored); returns it as
/// stored.
pub(crate) async fn set(
    tx: &mut Tx,
    org: &OrgId,
    budget: &Budget,
    entry: &AuditEntry,
) -> Result<Budget> {
    let at = entry.created_at.seconds();
    let alerts = serde_json::to_string(&budget.alerts_permille).unwrap_or_else(|_| "[]".into());
    let (id,): (i64,) = in_tx!(tx, e => sqlx::query_as(
            "INSERT INTO budgets (org_id, level, holder_id, limit_micro_usd, period, utc_offset_secs, alerts, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
             ON CONFLICT (level, holder_id) DO UPDATE SET
               limit_micro_usd = excluded.limit_micro_usd, period = excluded.period,
               utc_offset_secs = excluded.utc_offset_secs, alerts = excluded.alerts,
               updated_at = excluded.updated_at
             RETURNING id",
        )
        .bind(org.as_str())
        .bind(budget.holder.level.as_str())
        .bind(&budget.holder.id)
        .bind(budget.limit.0)
        .bind(budget.period.as_str())
        .bind(budget.utc_offset_secs)
        .bind(alerts)
        .bind(at)
        .bind(at)
        .fetch_one(e)
        .await)?;
    audit::append(tx, entry).await?;
    change_log::append(tx, &ChangedEntity::Limits, entry.created_at).await?;
    Ok(Budget {
        id,
        ..budget.clone()
    })
}

/// Removes a holder's budget; `false` if there was none.
pub(crate) async fn remove(tx: &mut Tx, holder: &Holder, entry: &AuditEntry) -> Result<bool> {
    let deleted = in_tx!(tx, e => sqlx::query("DELETE FROM budgets WHERE level = $1 AND holder_id = $2")
        .bind(holder.level.as_str())
        .bind(&holder.id)
        .execute(e)
        .await
        .map(|r| r.rows_affected()))?;
    change_log::applied(tx, deleted, &ChangedEntity::Limits, entry).await
}

/// Claims an alert: `true` (and the audit entry written) only for the first caller for this
/// budget, period and threshold, so each alert is sent once.
pub(crate) async fn claim_alert(
    tx: &mut Tx,
    budget_id: i64,
    period_start: UnixTime,
    threshold_permille: u32,
    spent: MicroUsd,
    entry: &AuditEntry,
) -> Result<bool> {
    let done = in_tx!(tx, e => sqlx::query(
            "INSERT INTO budget_alerts (budget_id, period_start, threshold, spent_micro_usd, created_at)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(budget_id)
        .bind(period_start.seconds())
        .bind(i64::from(threshold_permille))
        .bind(spent.0)
        .bind(entry.created_at.seconds())
        .execute(e)
        .await.map(|r| r.rows_affected()))?;
    if done == 0 {
        return Ok(false);
    }
    audit::append(tx, entry).await?;
    Ok(true)
}

impl Store {
    /// What a holder has spent from `start` on: the daily roll-up for whole UTC days, the events
    /// themselves for the part of a day before the first midnight (a budget in another time
    /// zone starts mid-day).
    pub async fn spend_since(&self, holder: &Holder, start: UnixTime) -> Result<MicroUsd> {
        let first_midnight = UnixTime(start.seconds().div_euclid(86_400) * 86_400);
        let first_midnight = if first_midnight < start {
            first_midnight.plus_seconds(86_400)
        } else {
            first_midnight
        };
        let day = first_midnight.utc_date();
        let (whole_days, partial): (Option<i64>, Option<i64>) = match holder.level {
            Level::Organization => (
                self.sum_daily("SELECT CAST(SUM(cost_micro_usd) AS BIGINT) FROM usage_daily WHERE org_id = $1 AND day >= $2", &holder.id, &day).await?,
                self.sum_events("SELECT CAST(SUM(cost_micro_usd) AS BIGINT) FROM usage_events WHERE created_at >= $1 AND created_at < $2 AND org_id = $3", &holder.id, start, first_midnight).await?,
            ),
            Level::Project => (
                self.sum_daily("SELECT CAST(SUM(cost_micro_usd) AS BIGINT) FROM usage_daily WHERE project_id = $1 AND day >= $2", &holder.id, &day).await?,
                self.sum_events("SELECT CAST(SUM(cost_micro_usd) AS BIGINT) FROM usage_events WHERE created_at >= $1 AND created_at < $2 AND project_id = $3", &holder.id, start, first_midnight).await?,
            ),
            Level::Key => (
                self.sum_daily("SELECT CAST(SUM(cost_micro_usd) AS BIGINT) FROM usage_daily WHERE key_id = $1 AND day >= $2", &holder.id, &day).await?,
                self.sum_events("SELECT CAST(SUM(cost_micro_usd) AS BIGINT) FROM usage_events WHERE created_at >= $1 AND created_at < $2 AND key_id = $3", &holder.id, start, first_midnight).await?,
            ),
        };
        Ok(MicroUsd(whole_days.unwrap_or(0) + partial.unwrap_or(0)))
    }

    async fn sum_daily(&self, sql: &'static str, holder: &str, day: &str) -> Result<Option<i64>> {
        let (sum,): (Option<i64>,) = in_pool!(self.pool, e => sqlx::query_as(sql)
            .bind(holder)
            .bind(day)
            .fetch_one(e)
            .await)?;
        Ok(sum)
    }

    async fn sum_events(
        &self,
        sql: &'static str,
        holder: &str,
        from: UnixTime,
        to: UnixTime,
    ) -> Result<Option<i64>> {
        let (sum,): (Option<i64>,) = in_pool!(self.pool, e => sqlx::query_as(sql)
            .bind(from.seconds())
            .bind(to.seconds())
            .bind(holder)
            .fetch_one(e)
            .await)?;
        Ok(sum)
    }
}
