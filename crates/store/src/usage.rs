use crate::backend::Dialect;
use crate::write::Tx;
use crate::{Result, Store, UsageEvent, UsageGrouping, UsageRow, UsageTotal};
use std::collections::BTreeMap;
use tollgate_core::{KeyId, MicroUsd, OrgId, ProjectId, UnixTime};

/// Rows per INSERT (16 parameters each, well under SQLite's limit of 32,766), largest first.
/// A batch is written with as few statements as these sizes allow, and only these few
/// statement texts ever exist, written once per process: each is prepared once and then reused
/// from the connection's cache (a statement sized to each batch was prepared anew for every
/// batch, and writing its placeholders cost more than binding).
const ROWS_PER_INSERT: [usize; 3] = [256, 16, 1];

/// Columns of one event's row.
const COLUMNS: usize = 16;

/// The inserts of [`ROWS_PER_INSERT`] events for `dialect`, largest first, with their sizes;
/// the texts are written once per process.
///
/// SQLite's are written with anonymous `?` placeholders, not `$N`: SQLite keeps named
/// parameters (`$N` and `?NNN` alike) in a list it scans linearly for each name, and sqlx asks
/// each parameter's name when binding, so binding 4,096 `$N` took quadratic time (40% of the
/// server's CPU at saturation, `bench/proxy-cpu.sh`); anonymous ones are bound by position.
/// `cargo bench -p tollgate-store --bench usage_writes`: 22.2 ms a batch of 256 with `$N`,
/// 1.46 ms with `?`.
fn inserts(dialect: Dialect) -> &'static [(usize, String)] {
    fn texts(placeholder: impl Fn(usize) -> String) -> Vec<(usize, String)> {
        ROWS_PER_INSERT
            .iter()
            .map(|&rows| {
                let values = (0..rows)
                    .map(|row| {
                        let params: Vec<String> =
                            (1..=COLUMNS).map(|col| placeholder(row * COLUMNS + col)).collect();
                        format!("({})", params.join(", "))
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                (
                    rows,
                    format!(
                        "INSERT INTO usage_events (request_id, org_id, project_id, key_id, model_requested,
                             model_served, endpoint, input_tokens, cached_input_tokens, output_tokens, reasoning_tokens,
                             cost_micro_usd, status, latency_ms, client_ip, created_at) VALUES {values}
                         ON CONFLICT DO NOTHING"
                    ),
                )
            })
            .collect()
    }
    static SQLITE: std::sync::LazyLock<Vec<(usize, String)>> =
        std::sync::LazyLock::new(|| texts(|_| "?".to_owned()));
    static POSTGRES: std::sync::LazyLock<Vec<(usize, String)>> =
        std::sync::LazyLock::new(|| texts(|n| format!("${n}")));
    match dialect {
        Dialect::Sqlite => &SQLITE,
        Dialect::Postgres => &POSTGRES,
    }
}

/// The end of an insert into the daily roll-up: a row already there is added to.
macro_rules! add_to_daily {
    () => {
        "ON CONFLICT (day, project_id, key_id, model) DO UPDATE SET
             requests = usage_daily.requests + excluded.requests,
             input_tokens = usage_daily.input_tokens + excluded.input_tokens,
             cached_input_tokens = usage_daily.cached_input_tokens + excluded.cached_input_tokens,
             output_tokens = usage_daily.output_tokens + excluded.output_tokens,
             reasoning_tokens = usage_daily.reasoning_tokens + excluded.reasoning_tokens,
             cost_micro_usd = usage_daily.cost_micro_usd + excluded.cost_micro_usd"
    };
}

/// The roll-up summed by one column; `$column` and `$order` are literals, never input.
macro_rules! usage_sql {
    ($column:literal, $order:literal) => {
        concat!(
            "SELECT ", $column, " AS grp, CAST(SUM(requests) AS BIGINT) AS requests, CAST(SUM(input_tokens) AS BIGINT) AS input_tokens,
                    CAST(SUM(cached_input_tokens) AS BIGINT) AS cached_input_tokens, CAST(SUM(output_tokens) AS BIGINT) AS output_tokens,
                    CAST(SUM(reasoning_tokens) AS BIGINT) AS reasoning_tokens, CAST(SUM(cost_micro_usd) AS BIGINT) AS cost_micro_usd
             FROM usage_daily WHERE org_id = $1 AND day >= $2 AND day <= $3
             GROUP BY grp ORDER BY ", $order
        )
    };
}

#[derive(sqlx::FromRow)]
struct EventRow {
    request_id: String,
    org_id: String,
    project_id: String,
    key_id: String,
    model_requested: String,
    model_served: String,
    endpoint: String,
    input_tokens: i64,
    cached_input_tokens: i64,
    output_tokens: i64,
    reasoning_tokens: i64,
    cost_micro_usd: i64,
    status: i64,
    latency_ms: i64,
    client_ip: Option<String>,
    created_at: i64,
}

impl From<EventRow> for UsageEvent {
    fn from(r: EventRow) -> Self {
        UsageEvent {
            request_id: r.request_id,
            org_id: OrgId::from_trusted(r.org_id),
            project_id: ProjectId::from_trusted(r.project_id),
            key_id: KeyId::from_trusted(r.key_id),
            model_requested: r.model_requested,
            model_served: r.model_served,
            endpoint: r.endpoint,
            input_tokens: r.input_tokens,
            cached_input_tokens: r.cached_input_tokens,
            output_tokens: r.output_tokens,
            reasoning_tokens: r.reasoning_tokens,
            cost: MicroUsd(r.cost_micro_usd),
            status: u16::try_from(r.status).unwrap_or(0),
            latency_ms: r.latency_ms,
            client_ip: r.client_ip,
            created_at: UnixTime(r.created_at),
            objects: Vec::new(),
        }
    }
}

#[derive(sqlx::FromRow)]
struct UsageRowDb {
    grp: String,
    requests: i64,
    input_tokens: i64,
    cached_input_tokens: i64,
    output_tokens: i64,
    reasoning_tokens: i64,
    cost_micro_usd: i64,
}

/// Writes a batch of usage events and folds them into the daily roll-up, in one transaction
/// (multi-row inserts of the sizes in [`ROWS_PER_INSERT`], then the roll-up). An event whose
/// request id is already stored is skipped, so a retried batch counts once.
///
/// When every event was new (the usual case), the batch is summed here and added to the
/// roll-up with one upsert a row; otherwise the database sums the rows this transaction
/// inserted, reading them back, working out each one's day and sorting them. With the sum
/// done here, SQLite's threads went from 10.1% to 6.8% of the gateway's CPU at saturation
/// (`perf`, bench/README.md 2026-12-08).
pub(crate) async fn record(tx: &mut Tx, events: &[UsageEvent]) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    // Rows this transaction inserts get rowids above the current maximum (the write lock is
    // held from BEGIN IMMEDIATE), so the roll-up below sees exactly the new events.
    let (before,): (i64,) = in_tx!(tx, e => sqlx::query_as("SELECT COALESCE(MAX(rowid), 0) FROM usage_events")
        .fetch_one(e)
        .await)?;
    let mut rest = events;
    let mut inserted = 0;
    for (size, sql) in inserts(tx.dialect()) {
        while rest.len() >= *size {
            let (chunk, tail) = rest.split_at(*size);
            rest = tail;
            let affected = in_tx!(tx, e => {
                let mut insert = sqlx::query(sql.as_str());
                    for event in chunk {
                        insert = insert
                            .bind(event.request_id.as_str())
                            .bind(event.org_id.as_str())
                            .bind(event.project_id.as_str())
                            .bind(event.key_id.as_str())
                            .bind(event.model_requested.as_str())
                            .bind(event.model_served.as_str())
                            .bind(event.endpoint.as_str())
                            .bind(event.input_tokens)
                            .bind(event.cached_input_tokens)
                            .bind(event.output_tokens)
                            .bind(event.reasoning_tokens)
                            .bind(event.cost.0)
                            .bind(i64::from(event.status))
                            .bind(event.latency_ms)
                            .bind(event.client_ip.as_deref())
                            .bind(event.created_at.seconds());
                    }
                insert.execute(e).await.map(|r| r.rows_affected())
            })?;
            inserted += affected;
        }
    }
    if inserted == events.len() as u64 {
        // Many rows (a batch from many keys and models) are left to the database's one
        // statement rather than sent one upsert each.
        if let Some(days) = rolled_up(events).filter(|rows| rows.len() <= MAX_SUMMED_ROWS) {
            add_to_roll_up(tx, days).await?;
            return record_objects(tx, events).await;
        }
    }
    macro_rules! roll_up {
        ($dialect:ident) => {
            concat!(
                "INSERT INTO usage_daily (day, org_id, project_id, key_id, model, requests, input_tokens,
                 cached_input_tokens, output_tokens, reasoning_tokens, cost_micro_usd)
             SELECT ", utc_day!($dialect), ", org_id, project_id, key_id, model_served,
                    COUNT(*), CAST(SUM(input_tokens) AS BIGINT), CAST(SUM(cached_input_tokens) AS BIGINT), CAST(SUM(output_tokens) AS BIGINT),
                    CAST(SUM(reasoning_tokens) AS BIGINT), CAST(SUM(cost_micro_usd) AS BIGINT)
             FROM usage_events WHERE rowid > $1
             GROUP BY 1, org_id, project_id, key_id, model_served ",
                add_to_daily!()
            )
        };
    }
    let sql = tx.dialect().pick(roll_up!(sqlite), roll_up!(postgres));
    in_tx!(tx, e => sqlx::query(sql)
        .bind(before)
        .execute(e)
        .await.map(|r| r.rows_affected()))?;
    record_objects(tx, events).await
}

async fn record_objects(tx: &mut Tx, events: &[UsageEvent]) -> Result<()> {
    for event in events.iter().filter(|e| !e.objects.is_empty()) {
        crate::provider_objects::record_created(tx, event).await?;
    }
    Ok(())
}

/// Most roll-up rows a batch is summed into here; past it the database sums the batch.
const MAX_SUMMED_ROWS: usize = 32;

/// One roll-up row's key: (day since the epoch, org, project, key, model served).
type DayKey<'a> = (i64, &'a str, &'a str, &'a str, &'a str);

/// A batch's events summed by roll-up row, as the SQL roll-up sums them, in the rows' order (so
/// two replicas add to the same rows in the same order). `None` where the SQL would answer
/// differently: an event's time outside years 0-9999 (only the database's own date function
/// says what its day is then), or a sum past `i64` (the database refuses it).
fn rolled_up(events: &[UsageEvent]) -> Option<BTreeMap<DayKey<'_>, [i64; 6]>> {
    const LAST_SECOND_OF_9999: i64 = 253_402_300_799;
    let mut rows: BTreeMap<DayKey<'_>, [i64; 6]> = BTreeMap::new();
    for event in events {
        let seconds = event.created_at.seconds();
        if !(0..=LAST_SECOND_OF_9999).contains(&seconds) {
            return None;
        }
        let key = (
            seconds / 86_400,
            event.org_id.as_str(),
            event.project_id.as_str(),
            event.key_id.as_str(),
            event.model_served.as_str(),
        );
        let sums = [
            1,
            event.input_tokens,
            event.cached_input_tokens,
            event.output_tokens,
            event.reasoning_tokens,
            event.cost.0,
        ];
        let total = rows.entry(key).or_insert([0; 6]);
        for (t, v) in total.iter_mut().zip(sums) {
            *t = t.checked_add(v)?;
        }
    }
    Some(rows)
}

/// Adds summed rows to the daily roll-up.
async fn add_to_roll_up(tx: &mut Tx, rows: BTreeMap<DayKey<'_>, [i64; 6]>) -> Result<()> {
    const ADD: &str = concat!(
        "INSERT INTO usage_daily (day, org_id, project_id, key_id, model, requests, input_tokens,
             cached_input_tokens, output_tokens, reasoning_tokens, cost_micro_usd)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ",
        add_to_daily!()
    );
    for ((day, org, project, key, model), sums) in rows {
        let [requests, input, cached, output, reasoning, cost] = sums;
        let day = UnixTime(day * 86_400).utc_date();
        in_tx!(tx, e => sqlx::query(ADD)
            .bind(day.as_str())
            .bind(org)
            .bind(project)
            .bind(key)
            .bind(model)
            .bind(requests)
            .bind(input)
            .bind(cached)
            .bind(output)
            .bind(reasoning)
            .bind(cost)
            .execute(e)
            .await
            .map(|r| r.rows_affected()))?;
    }
    Ok(())
}

/// Deletes up to `limit` events made before `before`, oldest first, through the `created_at`
/// index; the roll-up in `usage_daily` is left as it is.
pub(crate) async fn prune(tx: &mut Tx, before: UnixTime, limit: i64) -> Result<u64> {
    let deleted = in_tx!(tx, e => sqlx::query(
        "DELETE FROM usage_events WHERE rowid IN
             (SELECT rowid FROM usage_events WHERE created_at < $1 ORDER BY created_at LIMIT $2)",
    )
    .bind(before.seconds())
    .bind(limit.max(1))
    .execute(e)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(deleted)
}

impl Store {
    /// The newest usage events, newest first.
    pub async fn recent_usage(&self, org: &OrgId, limit: i64) -> Result<Vec<UsageEvent>> {
        let rows: Vec<EventRow> = in_pool!(self.pool, e => sqlx::query_as(
            "SELECT request_id, org_id, project_id, key_id, model_requested, model_served, endpoint, input_tokens,
                    cached_input_tokens, output_tokens, reasoning_tokens, cost_micro_usd, status, latency_ms, client_ip, created_at
             FROM usage_events WHERE org_id = $1 ORDER BY created_at DESC, rowid DESC LIMIT $2",
        )
        .bind(org.as_str())
        .bind(limit)
        .fetch_all(e)
        .await)?;
        Ok(rows.into_iter().map(UsageEvent::from).collect())
    }

    /// The newest `limit` usage events of one key, newest first.
    pub async fn recent_usage_of_key(
        &self,
        org: &OrgId,
        key: &KeyId,
        limit: i64,
    ) -> Result<Vec<UsageEvent>> {
        let rows: Vec<EventRow> = in_pool!(self.pool, e => sqlx::query_as(
            "SELECT request_id, org_id, project_id, key_id, model_requested, model_served, endpoint, input_tokens,
                    cached_input_tokens, output_tokens, reasoning_tokens, cost_micro_usd, status, latency_ms, client_ip, created_at
             FROM usage_events WHERE org_id = $1 AND key_id = $2 ORDER BY created_at DESC, rowid DESC LIMIT $3",
        )
        .bind(org.as_str())
        .bind(key.as_str())
        .bind(limit)
        .fetch_all(e)
        .await)?;
        Ok(rows.into_iter().map(UsageEvent::from).collect())
    }

    /// Usage from the daily roll-up between two UTC days (inclusive), grouped as asked.
    pub async fn usage_report(
        &self,
        org: &OrgId,
        grouping: UsageGrouping,
        since: UnixTime,
        until: UnixTime,
    ) -> Result<Vec<UsageRow>> {
        // One static statement per grouping: the grouped column is never spliced into SQL.
        let sql = match grouping {
            UsageGrouping::Day => usage_sql!("day", "grp ASC"),
            UsageGrouping::Model => usage_sql!("model", "cost_micro_usd DESC, grp"),
            UsageGrouping::Key => usage_sql!("key_id", "cost_micro_usd DESC, grp"),
            UsageGrouping::Project => usage_sql!("project_id", "cost_micro_usd DESC, grp"),
        };
        let rows: Vec<UsageRowDb> = in_pool!(self.pool, e => sqlx::query_as(sql)
            .bind(org.as_str())
            .bind(since.utc_date())
            .bind(until.utc_date())
            .fetch_all(e)
            .await)?;
        Ok(rows
            .into_iter()
            .map(|r| UsageRow {
                group: r.grp,
                requests: r.requests,
                input_tokens: r.input_tokens,
                cached_input_tokens: r.cached_input_tokens,
                output_tokens: r.output_tokens,
                reasoning_tokens: r.reasoning_tokens,
                cost: MicroUsd(r.cost_micro_usd),
            })
            .collect())
    }
}

impl Store {
    /// Requests and tokens (input and output) a holder used from `start` on, on models a `*`
    /// pattern matches (by either name), straight from the events.
    pub async fn usage_since(
        &self,
        holder: &tollgate_core::holder::Holder,
        model_pattern: &str,
        start: UnixTime,
    ) -> Result<(u64, u64)> {
        use tollgate_core::holder::Level;
        // GLOB's `*` is our pattern's `*` (on PostgreSQL, LIKE's `%` with LIKE's own wildcards
        // escaped); the holder column is picked by level, never spliced.
        macro_rules! sql {
            ($dialect:ident, $holder:literal) => {
                concat!(
                    "SELECT COUNT(*), CAST(SUM(input_tokens + output_tokens) AS BIGINT) FROM usage_events
                     WHERE created_at >= $1 AND ", $holder, " = $2 AND ",
                    model_matches!($dialect)
                )
            };
        }
        let dialect = self.pool.dialect();
        let sql = match holder.level {
            Level::Organization => dialect.pick(sql!(sqlite, "org_id"), sql!(postgres, "org_id")),
            Level::Project => {
                dialect.pick(sql!(sqlite, "project_id"), sql!(postgres, "project_id"))
            }
            Level::Key => dialect.pick(sql!(sqlite, "key_id"), sql!(postgres, "key_id")),
        };
        let model_pattern = match dialect {
            Dialect::Sqlite => model_pattern.to_owned(),
            Dialect::Postgres => like_pattern(model_pattern),
        };
        let (requests, tokens): (i64, Option<i64>) = in_pool!(self.pool, e => sqlx::query_as(sql)
            .bind(start.seconds())
            .bind(&holder.id)
            .bind(&model_pattern)
            .fetch_one(e)
            .await)?;
        Ok((
            u64::try_from(requests).unwrap_or(0),
            u64::try_from(tokens.unwrap_or(0)).unwrap_or(0),
        ))
    }

    /// Usage events from `start` (inclusive) to `end` (exclusive), summed per bucket of `width`
    /// seconds counted from `start`, per project, key, served model and endpoint: the numbers
    /// the admin API's usage and costs reports group further. Straight from the events, so
    /// the reports equal them exactly.
    pub async fn usage_totals(
        &self,
        org: &OrgId,
        start: UnixTime,
        end: UnixTime,
        width: i64,
    ) -> Result<Vec<UsageTotal>> {
        type Row = (
            i64,
            String,
            String,
            String,
            String,
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
        );
        let rows: Vec<Row> = in_pool!(self.pool, e => sqlx::query_as(
            "SELECT (created_at - $2) / $4 AS bucket, project_id, key_id, model_served, endpoint,
                    COUNT(*), CAST(SUM(input_tokens) AS BIGINT), CAST(SUM(cached_input_tokens) AS BIGINT), CAST(SUM(output_tokens) AS BIGINT),
                    CAST(SUM(reasoning_tokens) AS BIGINT), CAST(SUM(cost_micro_usd) AS BIGINT)
             FROM usage_events
             WHERE org_id = $1 AND created_at >= $2 AND created_at < $3
             GROUP BY 1, 2, 3, 4, 5
             ORDER BY 1, 2, 3, 4, 5",
        )
        .bind(org.as_str())
        .bind(start.seconds())
        .bind(end.seconds())
        .bind(width.max(1))
        .fetch_all(e)
        .await)?;
        Ok(rows
            .into_iter()
            .map(|r| UsageTotal {
                bucket: r.0,
                project_id: ProjectId::from_trusted(r.1),
                key_id: KeyId::from_trusted(r.2),
                model: r.3,
                endpoint: r.4,
                requests: r.5,
                input_tokens: r.6,
                cached_input_tokens: r.7,
                output_tokens: r.8,
                reasoning_tokens: r.9,
                cost: MicroUsd(r.10),
            })
            .collect())
    }
}

/// A model pattern (`*` any run of characters) as a LIKE pattern: `*` becomes `%`, and LIKE's
/// own wildcards and escape character match only themselves.
fn like_pattern(pattern: &str) -> String {
    let mut like = String::with_capacity(pattern.len() + 4);
    for c in pattern.chars() {
        match c {
            '*' => like.push('%'),
            '%' | '_' | '\\' => {
                like.push('\\');
                like.push(c);
            }
            c => like.push(c),
        }
    }
    like
}

#[cfg(test)]
mod tests {
    use super::like_pattern;

    #[test]
    fn model_patterns_become_like_patterns_with_their_own_wildcards_escaped() {
        assert_eq!(like_pattern("*"), "%");
        assert_eq!(like_pattern("gpt-4o*"), "gpt-4o%");
        assert_eq!(like_pattern("my_model%1"), "my\\_model\\%1");
        assert_eq!(like_pattern("a\\b"), "a\\\\b");
    }
}
