//! The server secret: `TOLLGATE_SECRET`, or a file of 64 hex characters with mode 0600 beside
//! the database, created on the first run and never again.

use std::io::Write;
use std::path::Path;
use tollgate_core::ServerSecret;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SecretError(pub String);

/// Where the secret came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretSource {
    Environment,
    File,
    CreatedFile,
}

/// Reads the secret from `env_value` or `path`. When neither exists and `may_create` (the
/// database is not set up yet), creates the file with fresh randomness.
pub fn load(
    env_value: Option<&str>,
    path: &Path,
    may_create: bool,
) -> Result<(ServerSecret, SecretSource), SecretError> {
    if let Some(value) = env_value.filter(|v| !v.is_empty()) {
        let secret = ServerSecret::new(value.as_bytes().to_vec())
            .map_err(|e| SecretError(format!("TOLLGATE_SECRET: {e}")))?;
        return Ok((secret, SecretSource::Environment));
    }
    match std::fs::metadata(path) {
        Ok(meta) => {
            check_mode(path, &meta)?;
            let text = std::fs::read_to_string(path).map_err(|e| {
                SecretError(format!(
                    "cannot read the secret file {}: {e}",
                    path.display()
                ))
            })?;
            let bytes = decode_hex(text.trim()).ok_or_else(|| {
                SecretError(format!(
                    "the secret file {} is damaged: it must hold 64 hex characters. Restore it from a backup",
                    path.display()
                ))
            })?;
            let secret = ServerSecret::new(bytes)
                .map_err(|e| SecretError(format!("the secret file {}: {e}", path.display())))?;
            Ok((secret, SecretSource::File))
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            if !may_create {
                return Err(SecretError(format!(
                    "the secret file {} is missing, but the database was set up with one. Restore it from a backup, point --secret-file at it, or set TOLLGATE_SECRET. Without it no existing key can be verified",
                    path.display()
                )));
            }
            create(path).map(|secret| (secret, SecretSource::CreatedFile))
        }
        Err(err) => Err(SecretError(format!(
            "cannot read the secret file {}: {err}",
            path.display()
        ))),
    }
}

fn create(path: &Path) -> Result<ServerSecret, SecretError> {
    let mut bytes = vec![0u8; 32];
    tollgate_core::ids::fill_random(&mut bytes);
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| {
        SecretError(format!(
            "cannot create the secret file {}: {e}. Check that its directory is writable",
            path.display()
        ))
    })?;
    file.write_all(format!("{hex}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| {
            SecretError(format!(
                "cannot write the secret file {}: {e}",
                path.display()
            ))
        })?;
    ServerSecret::new(bytes).map_err(|e| SecretError(e.to_string()))
}

#[cfg(unix)]
fn check_mode(path: &Path, meta: &std::fs::Metadata) -> Result<(), SecretError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretError(format!(
            "the secret file {} can be read by other users (mode {mode:o}); run `chmod 600 {}`",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_mode(_: &Path, _: &std::fs::Metadata) -> Result<(), SecretError> {
    Ok(())
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_with_mode_600_then_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.secret");
        let (first, source) = load(None, &path, true).unwrap();
        assert_eq!(source, SecretSource::CreatedFile);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (again, source) = load(None, &path, true).unwrap();
        assert_eq!(source, SecretSource::File);
        assert_eq!(first.expose(), again.expose());
    }

    #[test]
    fn refuses_loose_permissions_damage_and_absence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.secret");
        assert!(load(None, &path, false)
            .unwrap_err()
            .0
            .contains("is missing"));
        load(None, &path, true).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load(None, &path, false)
            .unwrap_err()
            .0
            .contains("chmod 600"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "not hex").unwrap();
        assert!(load(None, &path, false).unwrap_err().0.contains("damaged"));
    }

    #[test]
    fn environment_wins_and_must_be_long_enough() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.secret");
        let (_, source) = load(Some(&"x".repeat(40)), &path, false).unwrap();
        assert_eq!(source, SecretSource::Environment);
        assert!(!path.exists());
        assert!(load(Some("short"), &path, false)
            .unwrap_err()
            .0
            .contains("at least 32"));
    }
}
