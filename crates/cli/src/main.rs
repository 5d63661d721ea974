//! `tollgate`: the gateway server and the management CLI in one binary.

mod app;
mod cli;
mod commands;
mod config;
mod failure;
mod manage;
mod output;
mod secret_file;

use clap::Parser;
use cli::{Cli, Command};
use config::{LogFormat, Overrides, Settings};
use failure::Failure;
use std::process::ExitCode;

/// mimalloc: a proxy allocates and frees small buffers for every request, which glibc's
/// allocator serves markedly slower under load (measured with bench/run.sh).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if matches!(cli.command, Command::Serve(_)) {
        // Requests are served on the gateway's own threads (`--workers`); this runtime only
        // accepts connections and runs the background work (metering, change log, alerts).
        builder.worker_threads(1);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(run(cli));
    // The spans still queued go out before the process ends (bounded by the exporter's
    // timeout), outside the runtime: the exporter blocks.
    if let Some(provider) = TRACES.get() {
        if let Err(err) = provider.shutdown() {
            eprintln!("warning: traces not all sent: {err}");
        }
    }
    drop(runtime);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            if !failure.message.is_empty() {
                eprintln!("error: {}", failure.message);
            }
            ExitCode::from(failure.code)
        }
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    // Scanning and hooks need no settings (a broken tollgate.toml in a scanned tree must not
    // stop them); revoking what was found does.
    match &cli.command {
        Command::Scan(args) if !args.revoke => {
            return commands::scan::run(args, cli.json, None::<&manage::remote::Remote>).await;
        }
        Command::Hook(command) => return commands::hook::run(command),
        _ => {}
    }
    let serving = matches!(cli.command, Command::Serve(_));
    let mut overrides = Overrides {
        config: cli.config,
        database_url: cli.database_url,
        secret_file: cli.secret_file,
        redis_url: cli.redis_url,
        log_level: cli.log_level,
        ..Overrides::default()
    };
    match &cli.command {
        Command::Serve(args) => {
            overrides.listen = args.listen.clone();
            overrides.log_format = args.log_format;
            overrides.demo = args.demo;
            overrides.workers = args.workers.map(usize::from);
            overrides.owner_email = args.init.owner_email.clone();
            overrides.key_prefix = args.init.key_prefix.clone();
        }
        Command::Init(args) => {
            overrides.owner_email = args.owner_email.clone();
            overrides.key_prefix = args.key_prefix.clone();
        }
        _ => {}
    }
    let explicit_level = overrides.log_level.is_some();
    let settings = Settings::resolve(overrides)?;
    // Management commands keep stderr quiet unless asked; the server logs at info.
    let level = if serving || explicit_level {
        settings.log_level.as_str()
    } else {
        "warn"
    };
    // Held until the command ends, so every log line is written before exit.
    let traces = if serving {
        if let Some(problem) = &settings.tracing_problem {
            return Err(Failure::environment(problem.clone()));
        }
        settings.tracing.as_ref()
    } else {
        None
    };
    let _log_writer = init_logging(level, settings.log_format, traces)?;
    let json = cli.json;
    // Management commands act on a running server when given its address, else on the
    // local database.
    let remote = match &cli.url {
        Some(url) if !matches!(cli.command, Command::Serve(_) | Command::Init(_)) => Some(
            manage::remote::Remote::new(url, std::env::var(manage::remote::ADMIN_KEY_ENV).ok())?,
        ),
        _ => None,
    };
    /// Runs `$call` with `$m` bound to where commands act.
    macro_rules! managed {
        ($m:ident => $call:expr) => {
            match &remote {
                Some($m) => $call.await,
                None => {
                    let local = app::manage(&settings).await?;
                    let $m = &local;
                    $call.await
                }
            }
        };
    }
    match cli.command {
        Command::Serve(_) => commands::serve::serve(&settings).await,
        Command::Init(_) => commands::serve::init(&settings, json).await,
        Command::Keys(command) => managed!(m => commands::keys::run(m, command, json)),
        Command::Projects(command) => managed!(m => commands::projects::run(m, command, json)),
        Command::ServiceAccounts(command) => {
            managed!(m => commands::service_accounts::run(m, command, json))
        }
        Command::Limits(command) => managed!(m => commands::limits::run_limits(m, command, json)),
        Command::Budgets(command) => {
            managed!(m => commands::limits::run_budgets(m, command, json))
        }
        Command::Usage(args) => managed!(m => commands::usage::run(m, args, json)),
        Command::Audit(args) => managed!(m => commands::audit::run(m, args, json)),
        Command::Objects(command) => {
            let provider = settings.providers.first().map(|p| p.name.clone());
            managed!(m => commands::objects::run(m, command, provider, json))
        }
        Command::Users(command) => {
            if remote.is_some() {
                return Err(failure::Failure::invalid(
                    "`tollgate users` works on the server's own database (it is how a forgotten password is recovered); leave out --url/TOLLGATE_URL",
                ));
            }
            commands::users::run(&app::manage(&settings).await?, command, json).await
        }
        Command::Migrate(args) => {
            if remote.is_some() {
                return Err(failure::Failure::invalid(
                    "`tollgate migrate` copies the local database; leave out --url/TOLLGATE_URL",
                ));
            }
            commands::migrate::run(&settings, &args, json).await
        }
        Command::Scan(args) => managed!(m => commands::scan::run(&args, json, Some(m))),
        Command::Hook(command) => commands::hook::run(&command),
        Command::Dev(command) => {
            if remote.is_some() {
                return Err(failure::Failure::invalid(
                    "`tollgate dev` works on the local database only; leave out --url/TOLLGATE_URL",
                ));
            }
            commands::dev::run(&app::manage(&settings).await?, command, json).await
        }
    }
}

/// Logs go to stderr from a background thread, so a request never waits on a terminal or pipe;
/// the writer blocks rather than drop lines when it falls behind.
/// The trace exporter, when traces are on: shut down (flushed) when the process ends.
static TRACES: std::sync::OnceLock<opentelemetry_sdk::trace::SdkTracerProvider> =
    std::sync::OnceLock::new();

/// The log filter applies to logs only: traces export every request's span (see
/// `traces_layer`) whatever the log level.
fn init_logging(
    level: &str,
    format: LogFormat,
    traces: Option<&config::TracingSettings>,
) -> Result<tracing_appender::non_blocking::WorkerGuard, Failure> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = tracing_subscriber::EnvFilter::try_new(level).map_err(|e| {
        Failure::environment(format!(
            "the log filter `{level}` is not valid ({e}); use info, warn, debug or target=level"
        ))
    })?;
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal();
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(std::io::stderr());
    let logs = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(writer);
    let logs = match format {
        LogFormat::Text => logs.with_filter(filter).boxed(),
        LogFormat::Json => logs.json().with_filter(filter).boxed(),
    };
    let traces = traces.map(traces_layer).transpose()?;
    tracing_subscriber::registry()
        .with(traces)
        .with(logs)
        .try_init()
        .map_err(|e| Failure::environment(format!("cannot start logging: {e}")))?;
    Ok(guard)
}

/// OpenTelemetry: each request's server span (`request`) and, for a metered request, its
/// model call's GenAI client span (`gen_ai`, named after the operation and model, with the
/// GenAI semantic conventions' attributes) go to an OTLP/HTTP collector, batched on the
/// exporter's own thread; nothing else (log events, other spans) is exported.
fn traces_layer<S>(
    traces: &config::TracingSettings,
) -> Result<impl tracing_subscriber::Layer<S>, Failure>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_otlp::WithExportConfig;
    use tracing_subscriber::Layer;
    let protocol = if traces.json {
        opentelemetry_otlp::Protocol::HttpJson
    } else {
        opentelemetry_otlp::Protocol::HttpBinary
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(protocol)
        .with_endpoint(traces.traces_url.clone())
        .with_timeout(std::time::Duration::from_secs(5))
        .build()
        .map_err(|e| Failure::environment(format!("tracing: cannot export traces: {e}")))?;
    let sampler = opentelemetry_sdk::trace::Sampler::ParentBased(Box::new(
        opentelemetry_sdk::trace::Sampler::TraceIdRatioBased(traces.sample_ratio),
    ));
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(traces.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("tollgate");
    let _ = TRACES.set(provider);
    let only_requests = tracing_subscriber::filter::filter_fn(|meta| {
        meta.is_span()
            && matches!(meta.name(), "request" | "gen_ai")
            && meta.target().starts_with("tollgate")
    });
    Ok(tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(only_requests))
}
