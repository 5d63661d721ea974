use crate::write::Tx;
use crate::{change_log, AuditEntry, ChangedEntity, Result, Store};
use tollgate_core::holder::{Holder, Level};
use tollgate_core::limit_rules::{LimitRule, RateLimits};
use tollgate_core::routing::ModelPattern;
use tollgate_core::OrgId;

#[derive(sqlx::FromRow)]
struct RateLimitRow {
    level: String,
    holder_id: String,
    model: String,
    rpm: Option<i64>,
    rpd: Option<i64>,
    tpm: Option<i64>,
    tpd: Option<i64>,
    max_concurrent: Option<i64>,
}

fn limit(value: Option<i64>) -> Option<u64> {
    value.and_then(|v| u64::try_from(v).ok())
}

fn column(value: Option<u64>) -> Option<i64> {
    value.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

impl RateLimitRow {
    fn into_rule(self) -> Option<LimitRule> {
        Some(LimitRule {
            holder: Holder::new(Level::parse(&self.level)?, self.holder_id),
            model: ModelPattern::new(&self.model),
            limits: RateLimits {
                rpm: limit(self.rpm),
                rpd: limit(self.rpd),
                tpm: limit(self.tpm),
                tpd: limit(self.tpd),
                concurrent: limit(self.max_concurrent),
            },
        })
    }
}

/// Every rate-limit rule of an organization, by level, holder and model.
pub(crate) async fn read(tx: &mut Tx, org: &OrgId) -> Result<Vec<LimitRule>> {
    let rows: Vec<RateLimitRow> =
        in_tx!(tx, e => sqlx::query_as(READ).bind(org.as_str()).fetch_all(e).await)?;
    Ok(rules(rows))
}

const READ: &str =
    "SELECT level, holder_id, model, rpm, rpd, tpm, tpd, max_concurrent FROM rate_limits
     WHERE org_id = $1 ORDER BY level, holder_id, model";

fn rules(rows: Vec<RateLimitRow>) -> Vec<LimitRule> {
    rows.into_iter()
        .filter_map(RateLimitRow::into_rule)
        .collect()
}

impl Store {
    /// Every rate-limit rule of an organization, by level, holder and model.
    pub async fn rate_limits(&self, org: &OrgId) -> Result<Vec<LimitRule>> {
        let rows: Vec<RateLimitRow> =
            in_pool!(self.pool, e => sqlx::query_as(READ).bind(org.as_str()).fetch_all(e).await)?;
        Ok(rules(rows))
    }
}

/// Creates or replaces the rule for `rule.holder` and `rule.model`.
pub(crate) async fn set(
    tx: &mut Tx,
    org: &OrgId,
    rule: &LimitRule,
    entry: &AuditEntry,
) -> Result<()> {
    let at = entry.created_at.seconds();
    let upserted = in_tx!(tx, e => sqlx::query(
            "INSERT INTO rate_limits (org_id, level, holder_id, model, rpm, rpd, tpm, tpd, max_concurrent, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (level, holder_id, model) DO UPDATE SET
               rpm = excluded.rpm, rpd = excluded.rpd, tpm = excluded.tpm, tpd = excluded.tpd,
               max_concurrent = excluded.max_concurrent, updated_at = excluded.updated_at",
        )
        .bind(org.as_str())
        .bind(rule.holder.level.as_str())
        .bind(&rule.holder.id)
        .bind(rule.model.as_str())
        .bind(column(rule.limits.rpm))
        .bind(column(rule.limits.rpd))
        .bind(column(rule.limits.tpm))
        .bind(column(rule.limits.tpd))
        .bind(column(rule.limits.concurrent))
        .bind(at)
        .bind(at)
        .execute(e)
        .await
        .map(|r| r.rows_affected()))?;
    change_log::applied(tx, upserted, &ChangedEntity::Limits, entry).await?;
    Ok(())
}

/// Removes the rule for a holder and model; `false` if there was none.
pub(crate) async fn remove(
    tx: &mut Tx,
    holder: &Holder,
    model: &ModelPattern,
    entry: &AuditEntry,
) -> Result<bool> {
    let deleted = in_tx!(tx, e => sqlx::query("DELETE FROM rate_limits WHERE level = $1 AND holder_id = $2 AND model = $3")
            .bind(holder.level.as_str())
            .bind(&holder.id)
            .bind(model.as_str())
            .execute(e)
            .await
            .map(|r| r.rows_affected()))?;
    change_log::applied(tx, deleted, &ChangedEntity::Limits, entry).await
}
