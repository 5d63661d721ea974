use crate::app;
use crate::config::Settings;
use crate::failure::Failure;
use crate::output::print_json;
use crate::secret_file::SecretSource;
use serde_json::json;
use std::io::Write;
use tollgate_control::FirstRun;
use tollgate_gateway::{Gateway, GatewaySettings};

/// `tollgate serve`: set up on first run, then serve until SIGTERM or Ctrl-C.
pub async fn serve(settings: &Settings) -> Result<(), Failure> {
    let (control, first_run, source) = app::setup(settings).await?;
    if source == SecretSource::CreatedFile {
        tracing::info!(path = %settings.secret_file.display(), "created the server secret file (mode 0600); back it up with the database");
    }
    if let Some(first) = &first_run {
        print_banner(first, settings)?;
    }
    for provider in &settings.providers {
        if let Some(var) = &provider.api_key_env {
            if std::env::var(var).map(|v| v.is_empty()).unwrap_or(true) {
                tracing::warn!(provider = %provider.name, variable = %var, "the provider's API key variable is not set; requests routed to it will be refused by the provider");
            }
        }
    }
    let mut gateway_settings = GatewaySettings::new(settings.listen);
    gateway_settings.models = settings.models();
    let gateway = Gateway {
        settings: gateway_settings,
        store: control.store().clone(),
        hasher: control.hasher().clone(),
        format: control.key_format().clone(),
        clock: control.clock(),
    };
    // Listen for signals before announcing readiness, so an early SIGTERM still stops cleanly.
    let stop_signal = StopSignal::install()?;
    let running = gateway.start().await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "Tollgate listening on http://{}", running.addr())?;
        out.flush()?;
    }
    stop_signal.wait().await;
    tracing::info!("shutting down: no new connections, finishing requests in flight");
    running.shutdown().await;
    control.store().close().await;
    tracing::info!("stopped");
    Ok(())
}

/// `tollgate init`: set up an empty database and print what was made, once.
pub async fn init(settings: &Settings, json: bool) -> Result<(), Failure> {
    let (_control, first_run, _) = app::setup(settings).await?;
    match first_run {
        Some(first) if json => print_json(&json!({
            "organization_id": first.organization.id,
            "project_id": first.project.id,
            "owner_email": first.owner.email,
            "owner_password": first.owner_password,
            "admin_key": {"id": first.admin_key_record.id, "value": first.admin_key.expose()},
        }))
        .map_err(Failure::from),
        Some(first) => print_banner(&first, settings),
        None if json => print_json(&json!({"already_initialized": true})).map_err(Failure::from),
        None => {
            println!(
                "{} is already set up; nothing was changed.",
                settings.database.path().display()
            );
            Ok(())
        }
    }
}

fn print_banner(first: &FirstRun, settings: &Settings) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "\nTollgate set up a new database at {}.\n\
         This is shown only once: store the password and the admin key now.\n\n\
         \x20 Organization  {}\n\
         \x20 Project       {} ({})\n\
         \x20 Sign in       {} with password {}\n\
         \x20 Admin key     {}\n\n\
         Create a key for an app:\n\
         \x20 tollgate keys create --name \"My app\"\n",
        settings.database.path().display(),
        first.organization.id,
        first.project.id,
        first.project.name,
        first.owner.email,
        first.owner_password,
        first.admin_key.expose(),
    )?;
    out.flush()?;
    Ok(())
}

/// SIGTERM or Ctrl-C, registered up front.
struct StopSignal {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl StopSignal {
    fn install() -> Result<StopSignal, Failure> {
        #[cfg(unix)]
        {
            let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            Ok(StopSignal { term })
        }
        #[cfg(not(unix))]
        {
            Ok(StopSignal {})
        }
    }

    async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
