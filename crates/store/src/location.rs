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

    /// The database's files (the file, its write-ahead log and shared-memory index) that users
    /// other than the owner can read, with their modes. They hold password hashes, client
    /// addresses and the audit log; Tollgate creates them readable by their owner only.
    pub fn readable_by_others(&self) -> Vec<(PathBuf, u32)> {
        let DatabaseLocation::Sqlite(path) = self;
        ["", "-wal", "-shm"]
            .into_iter()
            .filter_map(|suffix| {
                let mut name = path.clone().into_os_string();
                name.push(suffix);
                let file = PathBuf::from(name);
                let mode = file_mode(&file)?;
                (mode & 0o077 != 0).then_some((file, mode))
            })
            .collect()
    }
}

#[cfg(unix)]
fn file_mode(path: &std::path::Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    Some(std::fs::metadata(path).ok()?.permissions().mode() & 0o777)
}

#[cfg(not(unix))]
fn file_mode(_: &std::path::Path) -> Option<u32> {
    None
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
