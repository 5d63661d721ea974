//! The databases behind the store, and the one way a statement reaches them.
//!
//! Every statement is written once, with `$1`, `$2`, ... placeholders, which SQLite (through
//! sqlx, binding `$N` to the N-th argument) and PostgreSQL read alike. [`in_tx!`] and
//! [`in_pool!`] run it on whichever backend the store opened: the macro expands the statement
//! once per backend, so each is checked and bound with that backend's own types (no runtime
//! translation, no `Any` driver copying every value). The few statements whose SQL differs
//! (JSON functions, dates) pick their text with [`Dialect`].
//!
//! This module imports nothing from the rest of the crate.

/// A pool of connections to the store's database.
#[derive(Clone, Debug)]
pub(crate) enum Pool {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// An open transaction.
pub(crate) enum Tx {
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

/// Which SQL dialect a statement is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The text for this dialect.
    pub(crate) fn pick(self, sqlite: &'static str, postgres: &'static str) -> &'static str {
        match self {
            Dialect::Sqlite => sqlite,
            Dialect::Postgres => postgres,
        }
    }
}

impl Pool {
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Pool::Sqlite(_) => Dialect::Sqlite,
            Pool::Postgres(_) => Dialect::Postgres,
        }
    }

    pub(crate) async fn close(&self) {
        match self {
            Pool::Sqlite(pool) => pool.close().await,
            Pool::Postgres(pool) => pool.close().await,
        }
    }
}

impl Tx {
    pub(crate) fn dialect(&self) -> Dialect {
        match self {
            Tx::Sqlite(_) => Dialect::Sqlite,
            Tx::Postgres(_) => Dialect::Postgres,
        }
    }

    pub(crate) async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Sqlite(tx) => tx.commit().await,
            Tx::Postgres(tx) => tx.commit().await,
        }
    }
}

/// `IN` the values of a JSON array of strings bound to parameter `$param`.
macro_rules! in_json_array {
    (sqlite, $param:literal) => {
        concat!("IN (SELECT value FROM json_each(", $param, "))")
    };
    (postgres, $param:literal) => {
        concat!(
            "IN (SELECT value FROM json_array_elements_text(CAST(",
            $param,
            " AS json)))"
        )
    };
}

/// A key whose permissions (a JSON object) are an owner's: `{"mode": "all", ...}`.
macro_rules! owner_permissions {
    (sqlite) => {
        "json_extract(permissions, '$.mode') = 'all'"
    };
    (postgres) => {
        "CAST(permissions AS json) ->> 'mode' = 'all'"
    };
}

/// The UTC date (`YYYY-MM-DD`) of a column of Unix seconds.
macro_rules! utc_day {
    (sqlite) => {
        "strftime('%Y-%m-%d', created_at, 'unixepoch')"
    };
    (postgres) => {
        "to_char(to_timestamp(created_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
    };
}

/// Whether a usage event's requested or served model matches the model pattern bound to `$3`
/// (SQLite: the pattern itself, a GLOB; PostgreSQL: the pattern made a LIKE pattern).
macro_rules! model_matches {
    (sqlite) => {
        "(model_requested GLOB $3 OR model_served GLOB $3 OR $3 = '*')"
    };
    (postgres) => {
        "(model_requested LIKE $3 OR model_served LIKE $3)"
    };
}

/// Runs `$body` with `$e` bound to the transaction's connection (`&mut SqliteConnection` or
/// `&mut PgConnection`); the body is compiled once for each backend.
macro_rules! in_tx {
    ($tx:expr, $e:ident => $body:expr) => {
        match &mut *$tx {
            $crate::backend::Tx::Sqlite(t) => {
                let $e = &mut **t;
                $body
            }
            $crate::backend::Tx::Postgres(t) => {
                let $e = &mut **t;
                $body
            }
        }
    };
}

/// Runs `$body` with `$e` bound to the pool (`&SqlitePool` or `&PgPool`); the body is compiled
/// once for each backend.
macro_rules! in_pool {
    ($pool:expr, $e:ident => $body:expr) => {
        match &$pool {
            $crate::backend::Pool::Sqlite(p) => {
                let $e = p;
                $body
            }
            $crate::backend::Pool::Postgres(p) => {
                let $e = p;
                $body
            }
        }
    };
}
