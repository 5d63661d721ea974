use std::path::PathBuf;

/// What can go wrong in the store, worded for the person who has to fix it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    BadLocation(String),
    #[error("the database {path} cannot be opened for writing ({reason}); check that the file and its directory are writable by this user")]
    Unwritable { path: PathBuf, reason: String },
    #[error("{path} is not a SQLite database or is damaged ({reason}); restore it from a backup or point --database-url at another file")]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path} belongs to another application (it has tables but is not a Tollgate database); refusing to change it. Point --database-url at a new or a Tollgate database file")]
    Foreign { path: PathBuf },
    #[error("cannot use the PostgreSQL database {location} ({reason}); check that it is running and that the URL's host, port, user, password and database are right")]
    Unreachable { location: String, reason: String },
    #[error("the PostgreSQL schema at {location} belongs to another application (it has tables but is not Tollgate's); refusing to change it. Point --database-url at a new database, or one of Tollgate's")]
    ForeignSchema { location: String },
    #[error("the database was written by a newer version of Tollgate ({0}); upgrade tollgate to open it")]
    TooNew(String),
    #[error("{entity} {id} was not found")]
    NotFound { entity: &'static str, id: String },
    #[error("{0}")]
    Conflict(String),
    /// A change in a transaction failed, so the transaction cannot be committed.
    #[error("a change failed part-way, so nothing of this operation was kept")]
    Aborted,
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    pub(crate) fn not_found(entity: &'static str, id: impl ToString) -> StoreError {
        StoreError::NotFound {
            entity,
            id: id.to_string(),
        }
    }
}

/// SQLite's primary result code of an error, if it came from SQLite.
pub(crate) fn sqlite_code(err: &sqlx::Error) -> Option<i32> {
    match err {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .map(|c| c & 0xff),
        _ => None,
    }
}

pub(crate) const SQLITE_READONLY: i32 = 8;
pub(crate) const SQLITE_CANTOPEN: i32 = 14;
pub(crate) const SQLITE_CORRUPT: i32 = 11;
pub(crate) const SQLITE_NOTADB: i32 = 26;
pub(crate) const SQLITE_CONSTRAINT: i32 = 19;

/// Turns a constraint violation (a uniqueness one, in practice) into a conflict with
/// `message`; passes other errors through.
pub(crate) fn conflict_on_unique(err: sqlx::Error, message: impl FnOnce() -> String) -> StoreError {
    use sqlx::error::ErrorKind;
    match &err {
        sqlx::Error::Database(db)
            if matches!(
                db.kind(),
                ErrorKind::UniqueViolation
                    | ErrorKind::ForeignKeyViolation
                    | ErrorKind::CheckViolation
                    | ErrorKind::NotNullViolation
            ) =>
        {
            StoreError::Conflict(message())
        }
        _ if sqlite_code(&err) == Some(SQLITE_CONSTRAINT) => StoreError::Conflict(message()),
        _ => StoreError::Database(err),
    }
}
