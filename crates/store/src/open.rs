use crate::backend::Pool;
use crate::error::{sqlite_code, SQLITE_CANTOPEN, SQLITE_CORRUPT, SQLITE_NOTADB, SQLITE_READONLY};
use crate::{DatabaseLocation, PostgresUrl, Result, Store, StoreError};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Connection;
use std::path::Path;
use std::time::Duration;

static MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections to PostgreSQL per server. Writes take turns under one lock, so more would only
/// wait; reads (the admin API, the console, the key follower) share the rest.
const POSTGRES_CONNECTIONS: u32 = 10;

/// The value of `tollgate_meta.schema` in every Tollgate database.
const SCHEMA_MARK: &str = "tollgate";

impl Store {
    /// Opens (creating if needed) the database at `location`, refuses a damaged or foreign one,
    /// and applies pending migrations.
    pub async fn open(location: &DatabaseLocation) -> Result<Store> {
        match location {
            DatabaseLocation::Sqlite(path) => Store::open_sqlite(path).await,
            DatabaseLocation::Postgres(url) => Store::open_postgres(url).await,
        }
    }

    async fn open_sqlite(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.is_dir() {
                return Err(StoreError::BadLocation(format!(
                    "the directory {} for the database does not exist; create it first",
                    dir.display()
                )));
            }
        }
        create_private(path).map_err(|err| StoreError::Unwritable {
            path: path.to_owned(),
            reason: err.to_string(),
        })?;
        let base = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .busy_timeout(Duration::from_secs(5));
        // Look before touching: a plain connection changes nothing (no journal-mode switch), so
        // a damaged or foreign file is refused exactly as it was found.
        {
            let mut conn = SqliteConnection::connect_with(&base)
                .await
                .map_err(|err| classify_open_error(path, err))?;
            check_ownership(&mut conn, path).await?;
            let _ = conn.close().await;
        }
        let options = base
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            // An 8 MiB page cache per connection, no memory-mapped reads: the hot pages of
            // usage writes (the table's and indexes' right edges, the roll-up) fit, and loading
            // every key at start no longer leaves the whole keys table resident (with 64 MiB
            // and mmap, 100,000 keys kept ~50 MiB of file pages and cache in RSS). Measured
            // with `cargo bench -p tollgate-store --bench usage_writes` (batches of 256):
            // 1.47 ms per batch before, 1.35 ms after.
            .pragma("cache_size", "-8192")
            .pragma("mmap_size", "0")
            .pragma("temp_store", "memory");
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .connect_with(options)
            .await
            .map_err(|err| classify_open_error(path, err))?;
        MIGRATIONS.run(&pool).await.map_err(|err| match err {
            sqlx::migrate::MigrateError::VersionMissing(version) => {
                StoreError::TooNew(format!("migration {version} is unknown to this build"))
            }
            sqlx::migrate::MigrateError::Execute(inner) => classify_open_error(path, inner),
            other => StoreError::Migration(other),
        })?;
        let store = Store {
            pool: Pool::Sqlite(pool),
        };
        in_pool!(store.pool, e => sqlx::query("INSERT INTO tollgate_meta (name, value) VALUES ('schema', $1) ON CONFLICT DO NOTHING")
            .bind(SCHEMA_MARK)
            .execute(e)
            .await.map(|r| r.rows_affected()))
            .map_err(|err| classify_open_error(path, err))?;
        Ok(store)
    }

    async fn open_postgres(url: &PostgresUrl) -> Result<Store> {
        let unreachable = |err: sqlx::Error| StoreError::Unreachable {
            location: url.redacted(),
            reason: err.to_string(),
        };
        let options: PgConnectOptions = url.expose().parse().map_err(unreachable)?;
        let pool = PgPoolOptions::new()
            .max_connections(POSTGRES_CONNECTIONS)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .map_err(unreachable)?;
        check_postgres_ownership(&pool, url).await?;
        POSTGRES_MIGRATIONS
            .run(&pool)
            .await
            .map_err(|err| match err {
                sqlx::migrate::MigrateError::VersionMissing(version) => {
                    StoreError::TooNew(format!("migration {version} is unknown to this build"))
                }
                sqlx::migrate::MigrateError::Execute(inner) => unreachable(inner),
                other => StoreError::Migration(other),
            })?;
        sqlx::query(
            "INSERT INTO tollgate_meta (name, value) VALUES ('schema', $1) ON CONFLICT DO NOTHING",
        )
        .bind(SCHEMA_MARK)
        .execute(&pool)
        .await
        .map_err(unreachable)?;
        Ok(Store {
            pool: Pool::Postgres(pool),
        })
    }

    /// Whether the database answers (a `SELECT 1` on a pooled connection).
    pub async fn ping(&self) -> Result<()> {
        in_pool!(self.pool, e => sqlx::query("SELECT 1").execute(e).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Reads a value from the store's own settings table.
    pub async fn meta(&self, name: &str) -> Result<Option<String>> {
        let row: Option<(String,)> = in_pool!(self.pool, e => sqlx::query_as("SELECT value FROM tollgate_meta WHERE name = $1")
                .bind(name)
                .fetch_optional(e)
                .await)?;
        Ok(row.map(|(value,)| value))
    }

    /// Waits for open connections to finish and closes them (checkpointing the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Creates the database file, readable and writable by its owner only, unless it exists.
/// SQLite gives the write-ahead log and shared-memory files it creates later the database
/// file's mode, so they are private too.
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(err),
    }
}

fn classify_open_error(path: &Path, err: sqlx::Error) -> StoreError {
    let reason = err.to_string();
    match sqlite_code(&err) {
        Some(SQLITE_NOTADB | SQLITE_CORRUPT) => StoreError::Corrupt {
            path: path.to_owned(),
            reason,
        },
        Some(SQLITE_READONLY | SQLITE_CANTOPEN) => StoreError::Unwritable {
            path: path.to_owned(),
            reason,
        },
        _ => StoreError::Database(err),
    }
}

/// Refuses a PostgreSQL schema that already holds another application's tables.
async fn check_postgres_ownership(pool: &sqlx::PgPool, url: &PostgresUrl) -> Result<()> {
    let unreachable = |err: sqlx::Error| StoreError::Unreachable {
        location: url.redacted(),
        reason: err.to_string(),
    };
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT table_name::text FROM information_schema.tables
         WHERE table_schema = current_schema() AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(pool)
    .await
    .map_err(unreachable)?;
    if tables.is_empty() {
        return Ok(());
    }
    let foreign = || StoreError::ForeignSchema {
        location: url.redacted(),
    };
    if !tables.iter().any(|(name,)| name == "tollgate_meta") {
        return Err(foreign());
    }
    let mark: Option<(String,)> =
        sqlx::query_as("SELECT value FROM tollgate_meta WHERE name = 'schema'")
            .fetch_optional(pool)
            .await
            .map_err(unreachable)?;
    match mark {
        Some((value,)) if value == SCHEMA_MARK => Ok(()),
        _ => Err(foreign()),
    }
}

/// Refuses a database that already holds another application's tables.
async fn check_ownership(conn: &mut SqliteConnection, path: &Path) -> Result<()> {
    let tables: Vec<(String,)> = sqlx::query_as(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(|err| classify_open_error(path, err))?;
    if tables.is_empty() {
        return Ok(());
    }
    let has_meta = tables.iter().any(|(name,)| name == "tollgate_meta");
    if !has_meta {
        return Err(StoreError::Foreign {
            path: path.to_owned(),
        });
    }
    let mark: Option<(String,)> =
        sqlx::query_as("SELECT value FROM tollgate_meta WHERE name = 'schema'")
            .fetch_optional(&mut *conn)
            .await
            .map_err(|err| classify_open_error(path, err))?;
    match mark {
        Some((value,)) if value == SCHEMA_MARK => Ok(()),
        _ => Err(StoreError::Foreign {
            path: path.to_owned(),
        }),
    }
}
