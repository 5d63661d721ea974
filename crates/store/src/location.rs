use crate::StoreError;
use std::path::PathBuf;

/// Where the database lives, parsed from `--database-url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseLocation {
    /// A SQLite file: `./tollgate.db`, `sqlite://path`, `sqlite:path`.
    Sqlite(PathBuf),
}

impl DatabaseLocation {
    pub fn parse(url: &str) -> Result<DatabaseLocation, StoreError> {
        let url = url.trim();
        if url.is_empty() {
            return Err(StoreError::BadLocation(
                "the database URL is empty; give a SQLite file path such as ./tollgate.db".into(),
            ));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Err(StoreError::BadLocation(
                "PostgreSQL is not supported by this build of Tollgate yet; use a SQLite file such as ./tollgate.db".into(),
            ));
        }
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .unwrap_or(url);
        let path = path.split('?').next().unwrap_or(path);
        if path.is_empty() || path == ":memory:" || path.contains("://") {
            return Err(StoreError::BadLocation(format!(
                "`{url}` is not a database location Tollgate understands; give a SQLite file path such as ./tollgate.db"
            )));
        }
        Ok(DatabaseLocation::Sqlite(PathBuf::from(path)))
    }

    /// The file that holds the data.
    pub fn path(&self) -> &PathBuf {
        match self {
            DatabaseLocation::Sqlite(path) => path,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_forms_are_understood() {
        for url in [
            "./t.db",
            "sqlite://./t.db",
            "sqlite:./t.db",
            "sqlite://./t.db?mode=rwc",
        ] {
            assert_eq!(
                DatabaseLocation::parse(url).ok(),
                Some(DatabaseLocation::Sqlite(PathBuf::from("./t.db"))),
                "{url}"
            );
        }
    }

    #[test]
    fn other_locations_get_a_clear_message() {
        for url in ["", "postgres://x/y", "mysql://x/y", ":memory:"] {
            assert!(DatabaseLocation::parse(url).is_err(), "{url}");
        }
    }
}
