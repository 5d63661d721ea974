//! `tollgate migrate`: a SQLite deployment copied into PostgreSQL, table by table, in one
//! PostgreSQL transaction (all of it or nothing), holding the write lock.
//!
//! The columns come from PostgreSQL's catalog for the tables Tollgate owns ([`TABLES`], in the
//! order their references need); both schemas have the same columns, except that PostgreSQL
//! spells out the `rowid` SQLite keeps implicitly, which is copied too so that insertion order
//! (and so every listing) stays the same. A SQLite column PostgreSQL does not have stops the
//! copy before anything is written: nothing is dropped silently. Identity columns are copied
//! as they are and their sequences moved past the largest value. Identifiers in the SQL below
//! come from that fixed list and the catalog, never from input; every value is bound.

use crate::backend::Pool;
use crate::{Result, Store, StoreError};
use futures_util::TryStreamExt;
use sqlx::Row;

/// Tollgate's tables, parents before children.
pub const TABLES: [&str; 22] = [
    "tollgate_meta",
    "organizations",
    "users",
    "memberships",
    "projects",
    "service_accounts",
    "api_keys",
    "change_log",
    "change_sequence",
    "audit_log",
    "usage_events",
    "usage_daily",
    "rate_limits",
    "budgets",
    "budget_alerts",
    "invites",
    "project_members",
    "sessions",
    "provider_objects",
    "key_suspensions",
    "client_tokens",
    "client_token_origins",
];

/// Tables whose migration wrote a row the copy replaces (the schema's name, the change
/// sequence's counter), and how.
const SEEDED: [(&str, &str); 2] = [
    (
        "tollgate_meta",
        " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    ),
    (
        "change_sequence",
        " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq",
    ),
];

fn seeded(table: &str) -> Option<&'static str> {
    SEEDED
        .iter()
        .find(|(name, _)| *name == table)
        .map(|(_, conflict)| *conflict)
}

/// Columns that refer to a later row of their own table (a rotated key's successor is
/// written after it): copied as NULL, then set once the whole table is in. `(table, key
/// column, column)`.
const LATER: [(&str, &str, &str); 1] = [("api_keys", "id", "rotated_to")];

/// Rows read from SQLite and written to PostgreSQL per statement (within PostgreSQL's 65,535
/// parameters for the widest table).
const ROWS_PER_INSERT: usize = 500;

/// One table copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedTable {
    pub table: &'static str,
    pub rows: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Integer,
    Boolean,
    Text,
    Bytes,
}

struct TargetColumn {
    name: String,
    kind: Kind,
    identity: bool,
}

enum Value {
    Integer(Option<i64>),
    Boolean(Option<bool>),
    Text(Option<String>),
    Bytes(Option<Vec<u8>>),
}

fn quoted(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

impl Store {
    /// Copies every row of this store (on SQLite) into `target` (on PostgreSQL, holding no
    /// Tollgate data yet). Returns the rows copied per table, checked against the rows read.
    pub async fn copy_into(&self, target: &Store) -> Result<Vec<CopiedTable>> {
        let (Pool::Sqlite(source), Pool::Postgres(pg)) = (&self.pool, &target.pool) else {
            return Err(StoreError::BadLocation(
                "migrate copies a SQLite database into a PostgreSQL one".into(),
            ));
        };
        // One read transaction on SQLite: every table is read from the same snapshot.
        let mut snapshot = source.begin().await?;
        let mut tx = pg.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(crate::write::WRITE_LOCK)
            .execute(&mut *tx)
            .await?;
        let mut copied = Vec::with_capacity(TABLES.len());
        for table in TABLES {
            let columns = target_columns(&mut tx, table).await?;
            check_source_columns(&mut snapshot, table, &columns).await?;
            // Rows the target's migrations wrote are replaced; anything else means the target
            // is not empty.
            if seeded(table).is_none() {
                let sql = format!("SELECT COUNT(*) FROM {}", quoted(table));
                let (rows,): (i64,) = sqlx::query_as(&sql).fetch_one(&mut *tx).await?;
                if rows > 0 {
                    return Err(StoreError::Conflict(format!(
                        "the PostgreSQL database already holds Tollgate data ({rows} rows in {table}); migrate into an empty database"
                    )));
                }
            }
            let rows = copy_table(&mut snapshot, &mut tx, table, &columns).await?;
            copied.push(CopiedTable { table, rows });
        }
        tx.commit().await?;
        snapshot.rollback().await?;
        Ok(copied)
    }
}

async fn target_columns(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    table: &str,
) -> Result<Vec<TargetColumn>> {
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT column_name::TEXT, data_type::TEXT, is_identity::TEXT FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(&mut **tx)
    .await?;
    if rows.is_empty() {
        return Err(StoreError::TooNew(format!(
            "the PostgreSQL database has no table {table}"
        )));
    }
    rows.into_iter()
        .map(|(name, data_type, identity)| {
            let kind = match data_type.as_str() {
                "bigint" | "integer" | "smallint" => Kind::Integer,
                "boolean" => Kind::Boolean,
                "text" | "character varying" => Kind::Text,
                "bytea" => Kind::Bytes,
                other => {
                    return Err(StoreError::TooNew(format!(
                        "{table}.{name} has type {other}, which migrate does not copy"
                    )))
                }
            };
            Ok(TargetColumn {
                name,
                kind,
                identity: identity == "YES",
            })
        })
        .collect()
}

/// Refuses a SQLite table with a column PostgreSQL lacks (a schema newer than the other).
async fn check_source_columns(
    source: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    table: &str,
    target: &[TargetColumn],
) -> Result<()> {
    let names: Vec<(String,)> = sqlx::query_as("SELECT name FROM pragma_table_info($1)")
        .bind(table)
        .fetch_all(&mut **source)
        .await?;
    if names.is_empty() {
        return Err(StoreError::TooNew(format!(
            "the SQLite database has no table {table}"
        )));
    }
    if let Some((missing,)) = names
        .iter()
        .find(|(name,)| !target.iter().any(|c| &c.name == name))
    {
        return Err(StoreError::TooNew(format!(
            "{table}.{missing} is in the SQLite database but not in PostgreSQL's schema; run the same Tollgate version on both"
        )));
    }
    Ok(())
}

async fn copy_table(
    source: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    table: &str,
    columns: &[TargetColumn],
) -> Result<u64> {
    let list = columns
        .iter()
        .map(|c| quoted(&c.name))
        .collect::<Vec<_>>()
        .join(", ");
    let later: Vec<(&str, &str)> = LATER
        .iter()
        .filter(|(t, _, _)| *t == table)
        .map(|(_, key, column)| (*key, *column))
        .collect();
    let read_list = columns
        .iter()
        .map(|c| {
            if later.iter().any(|(_, column)| *column == c.name) {
                format!("NULL AS {}", quoted(&c.name))
            } else {
                quoted(&c.name)
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    // One read of the whole table (a snapshot: SQLite's WAL keeps it while writers go on),
    // written in statements of ROWS_PER_INSERT rows as it streams.
    let select = format!("SELECT {read_list} FROM {}", quoted(table));
    let overriding = if columns.iter().any(|c| c.identity) {
        " OVERRIDING SYSTEM VALUE"
    } else {
        ""
    };
    let conflict = seeded(table).unwrap_or("");
    let mut rows = sqlx::query(&select).fetch(&mut **source);
    let mut batch: Vec<Value> = Vec::with_capacity(ROWS_PER_INSERT * columns.len());
    let mut copied = 0u64;
    loop {
        let row = rows.try_next().await?;
        if let Some(row) = &row {
            for (i, column) in columns.iter().enumerate() {
                batch.push(read(row, i, column.kind)?);
            }
        }
        let in_batch = batch.len() / columns.len();
        if in_batch == ROWS_PER_INSERT || (row.is_none() && in_batch > 0) {
            let insert = format!(
                "INSERT INTO {} ({list}){overriding} VALUES {}{conflict}",
                quoted(table),
                placeholders(in_batch, columns.len())
            );
            let mut query = sqlx::query(&insert);
            for value in batch.drain(..) {
                query = match value {
                    Value::Integer(v) => query.bind(v),
                    Value::Boolean(v) => query.bind(v),
                    Value::Text(v) => query.bind(v),
                    Value::Bytes(v) => query.bind(v),
                };
            }
            query.execute(&mut **tx).await?;
            copied += in_batch as u64;
        }
        if row.is_none() {
            break;
        }
    }
    drop(rows);
    for (key, column) in later {
        let pairs: Vec<(String, String)> = sqlx::query_as(&format!(
            "SELECT {k}, {c} FROM {t} WHERE {c} IS NOT NULL",
            k = quoted(key),
            c = quoted(column),
            t = quoted(table)
        ))
        .fetch_all(&mut **source)
        .await?;
        let update = format!(
            "UPDATE {t} SET {c} = $1 WHERE {k} = $2",
            k = quoted(key),
            c = quoted(column),
            t = quoted(table)
        );
        for (id, value) in pairs {
            sqlx::query(&update)
                .bind(value)
                .bind(id)
                .execute(&mut **tx)
                .await?;
        }
    }
    // SQLite's AUTOINCREMENT never hands out an id again, even one whose row was deleted
    // (`sqlite_sequence` keeps the highest given): neither may PostgreSQL's sequence.
    let given: Option<i64> =
        sqlx::query_as::<_, (i64,)>("SELECT seq FROM sqlite_sequence WHERE name = $1")
            .bind(table)
            .fetch_optional(&mut **source)
            .await
            .ok()
            .flatten()
            .map(|(seq,)| seq);
    for column in columns.iter().filter(|c| c.identity) {
        let sql = format!(
            "SELECT setval(pg_get_serial_sequence($1, $2), COALESCE(GREATEST((SELECT MAX({col}) FROM {t}), $3), 0) + 1, false)",
            col = quoted(&column.name),
            t = quoted(table)
        );
        sqlx::query(&sql)
            .bind(table)
            .bind(&column.name)
            .bind(given)
            .execute(&mut **tx)
            .await?;
    }
    let (source_rows,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {}", quoted(table)))
        .fetch_one(&mut **source)
        .await?;
    let (target_rows,): (i64,) = sqlx::query_as(&format!("SELECT COUNT(*) FROM {}", quoted(table)))
        .fetch_one(&mut **tx)
        .await?;
    if target_rows != source_rows {
        return Err(StoreError::Conflict(format!(
            "{table}: {source_rows} rows in SQLite, {target_rows} in PostgreSQL after the copy; nothing was kept"
        )));
    }
    Ok(copied)
}

/// `($1, $2), ($3, $4)` for two rows of two columns.
fn placeholders(rows: usize, columns: usize) -> String {
    let mut text = String::with_capacity(rows * columns * 6);
    for r in 0..rows {
        if r > 0 {
            text.push_str(", ");
        }
        text.push('(');
        for c in 0..columns {
            if c > 0 {
                text.push_str(", ");
            }
            text.push('$');
            text.push_str(&(r * columns + c + 1).to_string());
        }
        text.push(')');
    }
    text
}

fn read(row: &sqlx::sqlite::SqliteRow, i: usize, kind: Kind) -> Result<Value> {
    let value = match kind {
        Kind::Integer => Value::Integer(row.try_get(i)?),
        Kind::Boolean => Value::Boolean(row.try_get::<Option<i64>, _>(i)?.map(|v| v != 0)),
        Kind::Text => Value::Text(row.try_get(i)?),
        Kind::Bytes => Value::Bytes(row.try_get(i)?),
    };
    Ok(value)
}
