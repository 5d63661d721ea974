use crate::app;
use crate::config::ProviderType;
use crate::config::Settings;
use crate::failure::Failure;
use crate::output::print_json;
use crate::secret_file::SecretSource;
use serde_json::json;
use std::io::Write;
use std::time::Duration;
use tollgate_control::FirstRun;
use tollgate_gateway::mock::{MockProvider, MockSettings};
use tollgate_gateway::{Gateway, GatewaySettings, ProviderKey, ProviderSettings, UnpricedPolicy};

/// `tollgate serve`: set up on first run, then serve until SIGTERM or Ctrl-C.
pub async fn serve(settings: &Settings) -> Result<(), Failure> {
    let (control, first_run, source) = app::setup(settings).await?;
    if source == SecretSource::CreatedFile {
        tracing::info!(path = %settings.secret_file.display(), "created the server secret file (mode 0600); back it up with the database");
    }
    let (mut providers, _mocks) = providers(settings).await?;
    let org = control.organization().await?;
    resolve_project_keys(control.store(), &org.id, settings, &mut providers).await?;
    let mut gateway_settings = GatewaySettings::new(settings.listen);
    gateway_settings.providers = providers;
    if let Some(project) = &settings.adopt_unknown_into {
        let project = control
            .store()
            .find_project(&org.id, project)
            .await
            .map_err(|e| Failure::environment(format!("objects.adopt_into: {e}")))?;
        tracing::info!(project = %project.id, name = %project.name, "provider objects Tollgate has no record of belong to this project (objects.unknown = \"adopt\")");
        gateway_settings.unknown_objects = tollgate_gateway::UnknownObjects::AdoptInto(project.id);
    }
    if let Some(workers) = settings.workers {
        gateway_settings.workers = workers;
    }
    gateway_settings.routes = settings.routes();
    gateway_settings.secret_scanning = settings.secret_scanning.clone();
    gateway_settings.key_expiry_warning = settings.key_expiry_warning;
    gateway_settings.anomalies = settings.anomalies.clone();
    gateway_settings.anomaly_suspend = settings.anomaly_suspend.clone();
    gateway_settings.pricing = settings.pricing.clone();
    gateway_settings.unpriced = settings.unpriced;
    gateway_settings.max_body_bytes = settings.max_body_bytes;
    gateway_settings.max_body_bytes_in_flight = settings.max_body_bytes_in_flight;
    gateway_settings.max_stream_event_bytes = settings.max_stream_event_bytes;
    gateway_settings.trusted_proxies = settings.trusted_proxies.clone();
    gateway_settings.client_ip_header = settings.client_ip_header;
    gateway_settings.key_lookups_per_second = settings.key_lookups_per_second;
    gateway_settings.default_limits = settings.default_limits.clone();
    gateway_settings.default_max_output_tokens = settings.default_max_output_tokens;
    gateway_settings.alerts = settings.alerts.clone();
    gateway_settings.connections = settings.connections;
    gateway_settings.metering.spool_dir = Some(settings.spool_dir.clone());
    gateway_settings.metering.max_spool_bytes = settings.max_spool_bytes;
    gateway_settings.shared_limits = settings.shared_limits.clone();
    gateway_settings.metrics = settings.metrics.clone();
    gateway_settings.usage_retention = settings.usage_retention;
    if settings.shared_limits.is_none()
        && matches!(
            settings.database,
            tollgate_store::DatabaseLocation::Postgres(_)
        )
    {
        tracing::warn!("rate limits are per replica: without Redis (--redis-url) each server on this database counts on its own; keys, revocations and budgets are shared through the database");
    }
    warn_about_unpriced_routes(settings);
    let gateway = Gateway {
        settings: gateway_settings,
        store: control.store().clone(),
        hasher: control.hasher().clone(),
        format: control.key_format().clone(),
        clock: control.clock(),
        admin: Some(tollgate_admin::router(control.clone())),
        console: Some(tollgate_console::router(control.clone())),
    };
    // Listen for signals before announcing readiness, so an early SIGTERM still stops cleanly.
    let stop_signal = StopSignal::install()?;
    let running = match gateway.start().await {
        Ok(running) => running,
        Err(err) => {
            // The database was set up: its one-time credentials are shown even so.
            if let Some(first) = &first_run {
                print_banner(first, settings, settings.listen)?;
            }
            return Err(err.into());
        }
    };
    if let Some(first) = &first_run {
        print_banner(first, settings, running.addr())?;
    }
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

/// The providers as the gateway needs them, starting the simulated ones. The returned mock
/// handles keep those running; drop them after the gateway stops.
async fn providers(
    settings: &Settings,
) -> Result<(Vec<ProviderSettings>, Vec<MockProvider>), Failure> {
    let mut out = Vec::new();
    let mut mocks = Vec::new();
    for p in &settings.providers {
        let base_url = match p.kind {
            ProviderType::Openai => p.base_url.trim_end_matches('/').to_owned(),
            ProviderType::Mock => {
                let mut mock_settings = MockSettings::default();
                if let Some(ms) = p.stream_delay_ms {
                    mock_settings.token_delay = Duration::from_millis(ms);
                }
                if !p.models.is_empty() {
                    mock_settings.models = p
                        .models
                        .iter()
                        .filter(|m| !m.contains('*'))
                        .cloned()
                        .collect();
                }
                let mock = MockProvider::start(mock_settings).await?;
                tracing::warn!(provider = %p.name, url = %mock.base_url(), "SIMULATED provider: its replies are generated locally by Tollgate's demo provider, not by a model");
                let url = mock.base_url();
                mocks.push(mock);
                url
            }
        };
        let api_key = match &p.api_key_env {
            Some(var) => match std::env::var(var) {
                Ok(value) if !value.is_empty() => Some(ProviderKey::new(value)),
                _ => {
                    tracing::warn!(provider = %p.name, variable = %var, "the provider's API key variable is not set; requests routed to it go without a key");
                    None
                }
            },
            None => None,
        };
        out.push(ProviderSettings {
            name: p.name.clone(),
            base_url,
            api_key,
            headers: p
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            timeout: Duration::from_secs(p.timeout_secs.unwrap_or(600)),
            connect_timeout: Duration::from_secs(p.connect_timeout_secs.unwrap_or(5)),
            ca_file: p.ca_file.clone(),
            project_keys: Vec::new(),
        });
    }
    Ok((out, mocks))
}

/// Reads each provider's per-project credentials (projects by id or name) and says which
/// projects share a credential there: their objects are kept apart by the ownership ledger,
/// the others' by the provider.
async fn resolve_project_keys(
    store: &tollgate_store::Store,
    org: &tollgate_core::OrgId,
    settings: &Settings,
    providers: &mut [ProviderSettings],
) -> Result<(), Failure> {
    let projects = store.projects(org, false).await?;
    for config in &settings.providers {
        let Some(provider) = providers.iter_mut().find(|p| p.name == config.name) else {
            continue;
        };
        for entry in &config.project_keys {
            let project = store
                .find_project(org, entry.project.trim())
                .await
                .map_err(|e| {
                    Failure::environment(format!("providers.{}.project_keys: {e}", config.name))
                })?;
            let key = match (&entry.api_key_env, &entry.api_key_file) {
                (Some(var), _) => std::env::var(var).ok().filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                    Failure::environment(format!(
                        "providers.{}.project_keys: the variable {var} for project {} is not set",
                        config.name, project.name
                    ))
                })?,
                (None, Some(path)) => std::fs::read_to_string(path)
                    .map(|text| text.trim().to_owned())
                    .ok()
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| {
                        Failure::environment(format!(
                            "providers.{}.project_keys: cannot read a credential from {} for project {}",
                            config.name,
                            path.display(),
                            project.name
                        ))
                    })?,
                (None, None) => continue,
            };
            provider
                .project_keys
                .push((project.id.clone(), ProviderKey::new(key)));
        }
        if provider.project_keys.is_empty() {
            tracing::info!(provider = %provider.name, "every project shares this provider's credential: the ownership ledger keeps their files, batches and stored responses apart (give projects their own with project_keys)");
            continue;
        }
        let dedicated = tollgate_gateway::dedicated_projects(provider);
        let name = |id: &str| {
            projects
                .iter()
                .find(|p| p.id.as_str() == id)
                .map_or_else(|| id.to_owned(), |p| format!("{} ({})", p.name, p.id))
        };
        let own: Vec<String> = dedicated.iter().map(|id| name(id)).collect();
        let shared: Vec<String> = projects
            .iter()
            .filter(|p| !dedicated.contains(p.id.as_str()))
            .map(|p| name(p.id.as_str()))
            .collect();
        tracing::info!(provider = %provider.name, projects = %own.join(", "), "these projects have a credential of their own: the provider keeps their objects apart");
        if !shared.is_empty() {
            tracing::info!(provider = %provider.name, projects = %shared.join(", "), "these projects share a credential: the ownership ledger keeps their files, batches and stored responses apart");
        }
    }
    Ok(())
}

/// Start-up warning for routed models that have no price.
fn warn_about_unpriced_routes(settings: &Settings) {
    for (model, provider) in settings.routes().listable() {
        if settings.pricing.price(&model).is_none() {
            let provider = settings
                .providers
                .get(provider)
                .map(|p| p.name.as_str())
                .unwrap_or("?");
            match settings.unpriced {
                UnpricedPolicy::Refuse => {
                    tracing::warn!(%model, %provider, "model has no price and will be refused; add it under [pricing.models] or set a fallback")
                }
                UnpricedPolicy::Fallback(_) => {
                    tracing::warn!(%model, %provider, "model has no price; it is metered at the fallback price")
                }
            }
        }
    }
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
        Some(first) => print_banner(&first, settings, settings.listen),
        None if json => print_json(&json!({"already_initialized": true})).map_err(Failure::from),
        None => {
            println!(
                "{} is already set up; nothing was changed.",
                settings.database.display()
            );
            Ok(())
        }
    }
}

/// The console's sign-in page on a server listening at `addr` (an unspecified address shown as
/// the loopback one, which reaches it from the same machine).
fn console_url(addr: std::net::SocketAddr) -> String {
    let ip = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => std::net::Ipv4Addr::LOCALHOST.into(),
        ip if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    format!(
        "http://{}/console/login",
        std::net::SocketAddr::new(ip, addr.port())
    )
}

fn print_banner(
    first: &FirstRun,
    settings: &Settings,
    addr: std::net::SocketAddr,
) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "\nTollgate set up a new database at {}.\n\
         This is shown only once: store the password and the admin key now.\n\n\
         \x20 Organization  {}\n\
         \x20 Project       {} ({})\n\
         \x20 Sign in       {} as {} with password {}\n\
         \x20 Admin key     {}\n\n\
         Create a key for an app:\n\
         \x20 tollgate keys create --name \"My app\"\n",
        settings.database.display(),
        first.organization.id,
        first.project.id,
        first.project.name,
        console_url(addr),
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
