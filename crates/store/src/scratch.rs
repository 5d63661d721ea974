//! Scratch PostgreSQL databases for tests: each test makes its own, and it is dropped when the
//! test ends (passing or failing). The server is `TOLLGATE_TEST_POSTGRES` (a URL to any
//! database on it, used to create and drop the scratch ones), by default
//! `postgres://postgres@127.0.0.1:5432/postgres`. A test that needs PostgreSQL fails with a
//! clear message when it cannot be reached; it never skips.

use crate::{DatabaseLocation, PostgresUrl};
use sqlx::Connection;
use std::sync::atomic::{AtomicU32, Ordering};

/// The server tests use unless `TOLLGATE_TEST_POSTGRES` says otherwise.
pub const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The store a test runs on: a SQLite file in `dir`, or, with `TOLLGATE_TEST_STORE=postgres`,
/// a scratch PostgreSQL database (keep the returned [`ScratchDatabase`] as long as the store).
/// Suites that use it run unchanged on both backends.
pub async fn test_store(
    dir: &std::path::Path,
) -> Result<(crate::Store, DatabaseLocation, Option<ScratchDatabase>), String> {
    let scratch = match std::env::var("TOLLGATE_TEST_STORE").as_deref() {
        Ok("postgres") => Some(ScratchDatabase::create().await?),
        Ok("sqlite") | Err(_) => None,
        Ok(other) => {
            return Err(format!(
                "TOLLGATE_TEST_STORE={other}: write sqlite or postgres"
            ))
        }
    };
    let location = match &scratch {
        Some(db) => db.location().clone(),
        None => DatabaseLocation::Sqlite(dir.join("tollgate.db")),
    };
    let store = crate::Store::open(&location)
        .await
        .map_err(|e| e.to_string())?;
    Ok((store, location, scratch))
}

/// A database made for one test; dropped with everything in it when this value is.
#[derive(Debug)]
pub struct ScratchDatabase {
    server: String,
    name: String,
    location: DatabaseLocation,
}

impl ScratchDatabase {
    /// Creates an empty database on the test server.
    pub async fn create() -> Result<ScratchDatabase, String> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let server =
            std::env::var("TOLLGATE_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_SERVER.to_owned());
        let shown = PostgresUrl(server.clone()).redacted();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "tollgate_scratch_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = sqlx::PgConnection::connect(&server).await.map_err(|e| {
            format!(
                "PostgreSQL at {shown} cannot be reached ({e}); these tests need it running \
                 (set TOLLGATE_TEST_POSTGRES to another server)"
            )
        })?;
        // `name` is made above from digits and a fixed prefix: safe to quote as an identifier.
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .map_err(|e| format!("creating the scratch database {name} on {shown}: {e}"))?;
        let _ = admin.close().await;
        let (base, query) = match server.split_once('?') {
            Some((base, query)) => (base, Some(query)),
            None => (server.as_str(), None),
        };
        let root = match base.rfind('/') {
            Some(slash) if slash > base.find("://").map_or(0, |i| i + 2) => &base[..slash],
            _ => base,
        };
        let url = match query {
            Some(query) => format!("{root}/{name}?{query}"),
            None => format!("{root}/{name}"),
        };
        Ok(ScratchDatabase {
            server,
            name,
            location: DatabaseLocation::Postgres(PostgresUrl(url)),
        })
    }

    /// Where the scratch database is.
    pub fn location(&self) -> &DatabaseLocation {
        &self.location
    }

    /// Its URL, as `--database-url` takes it.
    pub fn url(&self) -> &str {
        match &self.location {
            DatabaseLocation::Postgres(url) => url.expose(),
            DatabaseLocation::Sqlite(_) => "",
        }
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let server = self.server.clone();
        let name = self.name.clone();
        // Drop cannot wait on the test's runtime; a thread of its own does the dropping.
        let dropped = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut admin) = sqlx::PgConnection::connect(&server).await {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&mut admin)
                            .await;
                    let _ = admin.close().await;
                }
            });
        });
        let _ = dropped.join();
    }
}
