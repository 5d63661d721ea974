use crate::StoreError;
use std::path::PathBuf;

/// Where the database lives, parsed from `--database-url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseLocation {
    /// A SQLite file: `./tollgate.db`, `sqlite://path`, `sqlite:path`.
    Sqlite(PathBuf),
    /// A PostgreSQL database: `postgres://user:password@host:port/database?options`.
    Postgres(PostgresUrl),
}

/// A PostgreSQL connection URL. It may hold a password, so it prints with the password
/// replaced by `*****`.
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresUrl(pub(crate) String);

impl PostgresUrl {
    /// The URL itself, password included: for connecting, never for printing.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL with any password replaced by `*****`.
    pub fn redacted(&self) -> String {
        let url = &self.0;
        let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
            return url.clone();
        };
        // The user information ends at the last `@` (a password may hold `/`, `?` or `@`
        // unencoded); a query's `@` makes this hide more, never less.
        let userinfo_end = url[scheme_end..].rfind('@').map(|i| scheme_end + i);
        let host_start = userinfo_end.map_or(scheme_end, |at| at + 1);
        let authority_end = url[host_start..]
            .find(['/', '?'])
            .map_or(url.len(), |i| host_start + i);
        let mut redacted = match userinfo_end {
            Some(at) => match url[scheme_end..at].find(':') {
                Some(colon) => format!(
                    "{}:*****{}",
                    &url[..scheme_end + colon],
                    &url[at..authority_end]
                ),
                None => url[..authority_end].to_owned(),
            },
            None => url[..authority_end].to_owned(),
        };
        // A password can also ride in the query (`?password=...`).
        let rest = &url[authority_end..];
        match rest.split_once('?') {
            Some((path, query)) => {
                redacted.push_str(path);
                redacted.push('?');
                let pairs: Vec<String> = query
                    .split('&')
                    .map(|pair| match pair.split_once('=') {
                        Some((name, _)) if name.eq_ignore_ascii_case("password") => {
                            format!("{name}=*****")
                        }
                        _ => pair.to_owned(),
                    })
                    .collect();
                redacted.push_str(&pairs.join("&"));
            }
            None => redacted.push_str(rest),
        }
        redacted
    }
}

impl std::fmt::Debug for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PostgresUrl({})", self.redacted())
    }
}

impl std::fmt::Display for PostgresUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
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
            let location = PostgresUrl(url.to_owned());
            if let Err(err) = url.parse::<sqlx::postgres::PgConnectOptions>() {
                // The parser's message can quote the URL; say what is wrong without it.
                let reason = match err {
                    sqlx::Error::Configuration(_) => "it is not a valid PostgreSQL URL",
                    _ => "it cannot be read",
                };
                return Err(StoreError::BadLocation(format!(
                    "`{location}` is not a database location Tollgate understands: {reason}; give one such as postgres://tollgate@127.0.0.1:5432/tollgate"
                )));
            }
            return Ok(DatabaseLocation::Postgres(location));
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

    /// The file that holds the data, for a SQLite database.
    pub fn path(&self) -> Option<&PathBuf> {
        match self {
            DatabaseLocation::Sqlite(path) => Some(path),
            DatabaseLocation::Postgres(_) => None,
        }
    }

    /// The location as it may be printed (a PostgreSQL password as `*****`).
    pub fn display(&self) -> String {
        match self {
            DatabaseLocation::Sqlite(path) => path.display().to_string(),
            DatabaseLocation::Postgres(url) => url.redacted(),
        }
    }

    /// The database's files (the file, its write-ahead log and shared-memory index) that users
    /// other than the owner can read, with their modes. They hold password hashes, client
    /// addresses and the audit log; Tollgate creates them readable by their owner only.
    pub fn readable_by_others(&self) -> Vec<(PathBuf, u32)> {
        let DatabaseLocation::Sqlite(path) = self else {
            return Vec::new();
        };
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
        for url in ["", "mysql://x/y", ":memory:", "postgres://x:99999999/y"] {
            assert!(DatabaseLocation::parse(url).is_err(), "{url}");
        }
    }

    #[test]
    fn postgres_urls_are_understood_and_never_print_their_password() {
        for (url, shown) in [
            (
                "postgres://127.0.0.1/tollgate",
                "postgres://127.0.0.1/tollgate",
            ),
            (
                "postgresql://app:s3cret@db:5432/tollgate",
                "postgresql://app:*****@db:5432/tollgate",
            ),
            (
                "postgres://app:p%40ss@db/t?sslmode=require&password=hunter2",
                "postgres://app:*****@db/t?sslmode=require&password=*****",
            ),
            ("postgres://app@db/t", "postgres://app@db/t"),
        ] {
            let location = DatabaseLocation::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert!(matches!(&location, DatabaseLocation::Postgres(u) if u.expose() == url));
            assert_eq!(location.display(), shown);
            let debug = format!("{location:?}");
            assert!(
                !debug.contains("s3cret") && !debug.contains("hunter2"),
                "{debug}"
            );
        }
        let err = DatabaseLocation::parse("postgres://app:s3cret@db:notaport/t").unwrap_err();
        assert!(!err.to_string().contains("s3cret"), "{err}");
        // A password with `/`, `?` or `@` left unencoded is still hidden whole.
        for url in [
            "postgres://app:s3/cret@db/t",
            "postgres://app:s3?cret@db/t",
            "postgres://app:s3@cret@db/t",
        ] {
            let shown = PostgresUrl(url.to_owned()).redacted();
            assert_eq!(shown, "postgres://app:*****@db/t", "{url}");
        }
    }
}
