//! Opening a deployment: database, server secret, key format and control plane, with the
//! checks that keep a wrong secret or prefix from silently invalidating keys.

use crate::config::Settings;
use crate::failure::Failure;
use crate::secret_file::{self, SecretSource};
use std::sync::Arc;
use tollgate_control::{Control, ControlError, FirstRun};
use tollgate_core::{KeyFormat, KeyHasher, SystemClock};
use tollgate_store::{Actor, Store};

/// The server secret from the environment, if set.
fn secret_from_env() -> Option<String> {
    std::env::var("TOLLGATE_SECRET").ok()
}

/// Opens the database for a management command. It must already be set up.
pub async fn manage(settings: &Settings) -> Result<Control, Failure> {
    let store = Store::open(&settings.database).await?;
    if store.default_organization().await?.is_none() {
        return Err(ControlError::NotInitialized.into());
    }
    let control = control(store, settings, false).await?.0;
    control.verify_secret().await?;
    Ok(control)
}

/// Opens the database for `serve` or `init`, setting it up on the first run.
pub async fn setup(
    settings: &Settings,
) -> Result<(Control, Option<FirstRun>, SecretSource), Failure> {
    let store = Store::open(&settings.database).await?;
    for (file, mode) in settings.database.readable_by_others() {
        tracing::warn!(
            "the database file {} can be read by other users (mode {mode:o}); it holds password hashes, client addresses and the audit log: run `chmod 600 {}`",
            file.display(),
            file.display()
        );
    }
    let initialized = store.default_organization().await?.is_some();
    let (control, source) = control(store, settings, !initialized).await?;
    let first_run = control.bootstrap(&settings.owner_email).await?;
    Ok((control, first_run, source))
}

async fn control(
    store: Store,
    settings: &Settings,
    may_create_secret: bool,
) -> Result<(Control, SecretSource), Failure> {
    let (secret, source) = secret_file::load(
        secret_from_env().as_deref(),
        &settings.secret_file,
        may_create_secret,
    )?;
    let format = key_format(
        store.meta("key_prefix").await?,
        settings.key_prefix.as_deref(),
    )?;
    let control = Control::new(store, KeyHasher::new(secret), format, Arc::new(SystemClock));
    Ok((control, source))
}

/// The prefix is fixed at set-up; asking for another one later is refused rather than issuing
/// keys the server would not recognise.
fn key_format(stored: Option<String>, requested: Option<&str>) -> Result<KeyFormat, Failure> {
    match (stored, requested) {
        (Some(stored), Some(requested)) if stored != requested => Err(Failure::environment(format!(
            "this database issues keys that start with `{stored}-`; the prefix cannot change after set-up. Remove --key-prefix/keys.prefix or set it to `{stored}`"
        ))),
        (Some(prefix), _) => KeyFormat::new(&prefix).map_err(Failure::environment),
        (None, Some(requested)) => KeyFormat::new(requested).map_err(Failure::environment),
        (None, None) => Ok(KeyFormat::default()),
    }
}

/// The person running the CLI, for audit entries.
pub fn cli_actor() -> Actor {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "local".to_owned());
    Actor::cli(&user)
}
