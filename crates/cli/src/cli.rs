//! The command line.

use crate::config::LogFormat;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

const ENVIRONMENT_HELP: &str = "\
Environment:
  TOLLGATE_SECRET       The server secret (32+ bytes) that keys are hashed with, instead of the
                        secret file. Never pass it as a flag.
  OPENAI_API_KEY        The real OpenAI key of the default `openai` provider (stays on the server).
  OPENAI_BASE_URL       The default provider's base URL (default https://api.openai.com/v1).

Settings are read from the config file first, then TOLLGATE_* variables, then flags.";

#[derive(Debug, Parser)]
#[command(
    name = "tollgate",
    version,
    about = "Self-hosted API-key platform and OpenAI-compatible LLM gateway",
    after_help = ENVIRONMENT_HELP
)]
pub struct Cli {
    /// Config file [default: ./tollgate.toml if it exists]
    #[arg(long, global = true, env = "TOLLGATE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Database: a SQLite file path or sqlite:// URL, or a postgres:// URL [default: ./tollgate.db]
    #[arg(long, global = true, env = "TOLLGATE_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// Redis for state shared by replicas (rate limits), such as redis://127.0.0.1:6379
    /// [default: none: each server counts on its own]
    #[arg(long, global = true, env = "TOLLGATE_REDIS_URL", value_name = "URL")]
    pub redis_url: Option<String>,
    /// File holding the server secret [default: beside the database, NAME.secret]
    #[arg(long, global = true, env = "TOLLGATE_SECRET_FILE", value_name = "FILE")]
    pub secret_file: Option<PathBuf>,
    /// Log filter, such as info, warn or tollgate_gateway=debug [default: info for serve, warn otherwise]
    #[arg(long, global = true, env = "TOLLGATE_LOG", value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Manage a running server through its admin API instead of the local database (with an
    /// admin key in TOLLGATE_ADMIN_KEY), such as https://tollgate.example.com
    #[arg(long, global = true, env = "TOLLGATE_URL", value_name = "URL")]
    pub url: Option<String>,
    /// Print JSON instead of tables and prose
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gateway (OpenAI-compatible API at /v1); sets up an empty database on first run
    #[command(after_help = ENVIRONMENT_HELP)]
    Serve(ServeArgs),
    /// Set up an empty database (organization, owner, default project, admin key) without serving
    Init(InitArgs),
    /// Create, list, show, rename, revoke, rotate and expire API keys
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Create, list and archive projects
    #[command(subcommand)]
    Projects(ProjectsCommand),
    /// Create and list service accounts (bot identities that own keys in a project)
    #[command(subcommand, name = "service-accounts")]
    ServiceAccounts(ServiceAccountsCommand),
    /// Rate limits (requests and tokens per minute and day, concurrency) at organization, project or key level
    #[command(subcommand)]
    Limits(LimitsCommand),
    /// Spend limits in dollars per day, week or month, with alerts
    #[command(subcommand)]
    Budgets(BudgetsCommand),
    /// Tokens and cost, by day, model, key or project
    Usage(UsageArgs),
    /// The audit log: who changed what, newest first
    Audit(AuditArgs),
    /// Console accounts: list them, reset a forgotten password (on the server's own database)
    #[command(subcommand)]
    Users(UsersCommand),
    /// A project's objects at its provider (files, batches, vector stores, stored responses, ...)
    #[command(subcommand)]
    Objects(ObjectsCommand),
    /// Copy this SQLite deployment (--database-url, default ./tollgate.db) into an empty
    /// PostgreSQL database, for running several replicas; stop its server first
    Migrate(MigrateArgs),
    /// Find secrets (Tollgate keys, OpenAI, Anthropic, Google, AWS, GitHub, Stripe and Slack
    /// keys) in files, staged changes or git history; exits 1 when any is found
    #[command(after_help = SCAN_HELP)]
    Scan(ScanArgs),
    /// Git hooks: `hook install` makes every commit run `tollgate scan --staged` first
    #[command(subcommand)]
    Hook(HookCommand),
    /// Tools for benchmarks and development (not part of the stable CLI)
    #[command(subcommand, hide = true)]
    Dev(DevCommand),
}

#[derive(Debug, Subcommand)]
pub enum ObjectsCommand {
    /// List a project's objects from the ownership ledger, newest first
    List {
        /// Project (id or name) [default: the default project]
        #[arg(long)]
        project: Option<String>,
        /// Only this kind: file, upload, batch, vector_store, fine_tuning.job, response,
        /// chat.completion, conversation, container, eval
        #[arg(long)]
        kind: Option<String>,
        /// How many [default: 100]
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=1000))]
        limit: i64,
    },
    /// Record objects made at the provider outside Tollgate (before it, or around it) as a
    /// project's, so that its keys reach them; an object already recorded keeps its owner
    Adopt {
        /// Project (id or name)
        #[arg(long)]
        project: String,
        /// The provider's name in tollgate.toml [default: the first provider, `openai`]
        #[arg(long)]
        provider: Option<String>,
        /// Object ids (file-..., batch_..., vs_..., ...)
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// List the organization's users and their roles
    List,
    /// Give a user a new random password (printed once) and sign out all their sessions
    ResetPassword {
        /// The user's email address or id
        user: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DevCommand {
    /// Make N project keys at once in the default project (for memory and load benchmarks)
    SeedKeys {
        #[arg(value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
        count: u32,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "TOLLGATE_LISTEN", value_name = "IP:PORT")]
    pub listen: Option<String>,
    /// Log format [default: text]
    #[arg(long, env = "TOLLGATE_LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,
    /// Answer with the built-in simulated provider instead of OpenAI (no provider key needed)
    #[arg(long)]
    pub demo: bool,
    /// Threads serving requests [default: one per CPU core]. Fewer leave cores to other
    /// processes on the same machine (a load generator, a local model server)
    #[arg(long, env = "TOLLGATE_WORKERS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub workers: Option<u16>,
    #[command(flatten)]
    pub init: InitArgs,
}

const SCAN_HELP: &str = "\
Exit status: 0 nothing found, 1 secrets found, 2 the scan could not be done.
A line holding `tollgate:allow` is not reported. The rules are listed in the README.";

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Files or directories to scan (directories respect .gitignore; binaries are skipped);
    /// with --staged or --history, the repository [default: .]
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Scan the changes staged for the next commit (what `git commit` would record)
    #[arg(long, conflicts_with = "history")]
    pub staged: bool,
    /// Scan every commit of every branch and tag (all refs) in the repository's history
    #[arg(long)]
    pub history: bool,
    /// How to print findings [default: table, or json with --json]
    #[arg(long, value_enum)]
    pub format: Option<ScanFormat>,
    /// Revoke each Tollgate key found (on the local database, or the server given by --url)
    /// and say what became of it
    #[arg(long)]
    pub revoke: bool,
    /// Skip files larger than this many MiB
    #[arg(long, default_value_t = 100, value_name = "MIB")]
    pub max_file_size: u64,
    /// Print no progress on a terminal
    #[arg(long)]
    pub no_progress: bool,
    /// Print the rules (id, what, keywords, regular expression) instead of scanning
    #[arg(long, conflicts_with_all = ["staged", "history", "revoke"])]
    pub list_rules: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScanFormat {
    /// A table for people
    Table,
    /// A JSON array of findings
    Json,
    /// SARIF 2.1.0, for GitHub code scanning and other tools
    Sarif,
}

#[derive(Debug, Subcommand)]
pub enum HookCommand {
    /// Install a git pre-commit hook that runs `tollgate scan --staged`
    Install {
        /// The repository [default: the one around the current directory]
        #[arg(long, value_name = "DIR")]
        repo: Option<PathBuf>,
        /// Replace a pre-commit hook that is not Tollgate's
        #[arg(long)]
        force: bool,
    },
    /// Remove the pre-commit hook `hook install` wrote
    Uninstall {
        /// The repository [default: the one around the current directory]
        #[arg(long, value_name = "DIR")]
        repo: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The PostgreSQL database to copy into, such as postgres://tollgate:PASSWORD@db:5432/tollgate
    /// (created tables and all; it must hold no Tollgate data yet)
    #[arg(long, env = "TOLLGATE_MIGRATE_TO", value_name = "URL")]
    pub to: String,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Email of the owner account a first run creates [default: owner@localhost]
    #[arg(long, env = "TOLLGATE_OWNER_EMAIL", value_name = "EMAIL")]
    pub owner_email: Option<String>,
    /// The word keys start with: `sk` makes sk-proj-..., sk-svcacct-..., sk-admin-... [default: sk]
    #[arg(long, env = "TOLLGATE_KEY_PREFIX", value_name = "WORD")]
    pub key_prefix: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SecretFormat {
    /// The key with a reminder to store it
    Text,
    /// Only `export OPENAI_API_KEY=...`
    Env,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    Project,
    ServiceAccount,
    Admin,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key; its secret is printed once and never again
    Create(Box<CreateKeyArgs>),
    /// List keys, newest first
    List {
        /// Only keys of this project (id or name)
        #[arg(long)]
        project: Option<String>,
        /// Only keys of this kind
        #[arg(long, value_enum)]
        kind: Option<KindArg>,
    },
    /// Show one key and its recent audit entries
    Show { key_id: String },
    /// Give a key a new name
    Rename { key_id: String, name: String },
    /// Revoke a key: it stops working at once on every server
    Revoke { key_id: String },
    /// Lift a key's suspension after suspicious use: it works again on every server
    Unsuspend { key_id: String },
    /// Replace a key with a new one; the old one keeps working for the grace period
    Rotate {
        key_id: String,
        /// How long the old key keeps working: immediate, 1h, 24h, 7d (any duration up to 30d)
        #[arg(long, value_name = "DURATION")]
        grace: String,
        /// How to print the new secret
        #[arg(long, value_enum, default_value = "text")]
        format: SecretFormat,
    },
    /// Make a key expire, now or after a duration
    Expire {
        key_id: String,
        /// When, from now: immediate, 30m, 24h, 7d
        #[arg(long = "in", value_name = "DURATION", default_value = "immediate")]
        after: String,
    },
}

#[derive(Debug, Args)]
pub struct CreateKeyArgs {
    /// A name people will recognise, such as "Project Alpha Dev"
    #[arg(long)]
    pub name: String,
    /// Project (id or name) of a project key [default: the default project]
    #[arg(long, conflicts_with_all = ["service_account", "admin"])]
    pub project: Option<String>,
    /// Make a service-account key owned by this service account (svc_acct_...)
    #[arg(long, value_name = "ID", conflicts_with = "admin")]
    pub service_account: Option<String>,
    /// Make an organization admin key for the admin API (it cannot call models); with
    /// --permissions read-only, a reader's key that can list and read but not change
    #[arg(long)]
    pub admin: bool,
    /// What the key may do: all, read-only, or restricted (with --scope)
    #[arg(long, default_value = "all")]
    pub permissions: String,
    /// For restricted keys, SCOPE:ACCESS such as chat.completions:write or models:read (repeatable)
    #[arg(long = "scope", value_name = "SCOPE:ACCESS")]
    pub scopes: Vec<String>,
    /// Only accept requests from these addresses: an IP or CIDR range, IPv4 or IPv6 (repeatable)
    #[arg(long = "allow-ip", value_name = "CIDR")]
    pub allow_ips: Vec<String>,
    /// Only these models: a name or a pattern such as gpt-4o* (repeatable) [default: any]
    #[arg(long = "model", value_name = "PATTERN")]
    pub models: Vec<String>,
    /// Expire the key after this long: 30d, 12h, ... [default: never]
    #[arg(long, value_name = "DURATION")]
    pub expires_in: Option<String>,
    /// How to print the secret
    #[arg(long, value_enum, default_value = "text")]
    pub format: SecretFormat,
    #[command(flatten)]
    pub limits: RateArgs,
    /// Spend limit of the key in dollars, per calendar month unless --budget-period says otherwise
    #[arg(long, value_name = "USD")]
    pub budget: Option<String>,
    /// Period of --budget: day, week or month
    #[arg(
        long,
        value_name = "PERIOD",
        requires = "budget",
        default_value = "month"
    )]
    pub budget_period: String,
    /// Alert when spend reaches this percentage of --budget (repeatable)
    #[arg(long = "alert", value_name = "PERCENT", requires = "budget")]
    pub alerts: Vec<String>,
}

/// Rate limits as flags.
#[derive(Debug, Args, Default)]
pub struct RateArgs {
    /// Requests per minute
    #[arg(long, value_name = "N")]
    pub rpm: Option<u64>,
    /// Requests per day
    #[arg(long, value_name = "N")]
    pub rpd: Option<u64>,
    /// Tokens (input and output) per minute
    #[arg(long, value_name = "N")]
    pub tpm: Option<u64>,
    /// Tokens (input and output) per day
    #[arg(long, value_name = "N")]
    pub tpd: Option<u64>,
    /// Requests in flight at once
    #[arg(long, value_name = "N")]
    pub concurrency: Option<u64>,
}

/// Whom a limit or budget is for: exactly one of --org, --project, --key.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct HolderArgs {
    /// The whole organization
    #[arg(long)]
    pub org: bool,
    /// A project (id or name)
    #[arg(long, value_name = "PROJECT")]
    pub project: Option<String>,
    /// One key (key_...)
    #[arg(long, value_name = "KEY_ID")]
    pub key: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum LimitsCommand {
    /// Set limits for an organization, project or key, on every model or those a pattern matches; limits not given keep their value
    Set {
        #[command(flatten)]
        holder: HolderArgs,
        /// Model name or pattern such as gpt-4o* [default: * (every model)]
        #[arg(long, default_value = "*")]
        model: String,
        #[command(flatten)]
        limits: RateArgs,
    },
    /// Remove the limits of an organization, project or key on a model pattern
    Remove {
        #[command(flatten)]
        holder: HolderArgs,
        #[arg(long, default_value = "*")]
        model: String,
    },
    /// List every limit that is set
    List,
    /// The limits and budgets that bind an organization, project or key, with current use
    Show {
        #[command(flatten)]
        holder: HolderArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum BudgetsCommand {
    /// Set the spend limit of an organization, project or key (replaces any earlier one)
    Set {
        #[command(flatten)]
        holder: HolderArgs,
        /// Limit in dollars, such as 50 or 12.50
        #[arg(long, value_name = "USD")]
        amount: String,
        /// day, week (from Monday) or month (calendar)
        #[arg(long, default_value = "month")]
        period: String,
        /// Time zone periods start in: UTC or a fixed offset such as +05:30 or -08:00
        #[arg(long, default_value = "UTC")]
        timezone: String,
        /// Alert when spend reaches this percentage (repeatable), such as --alert 50 --alert 80 --alert 100
        #[arg(long = "alert", value_name = "PERCENT")]
        alerts: Vec<String>,
    },
    /// Remove the spend limit of an organization, project or key
    Remove {
        #[command(flatten)]
        holder: HolderArgs,
    },
    /// List every budget with its spend in the current period
    List,
}

#[derive(Debug, Subcommand)]
pub enum ProjectsCommand {
    /// Create a project
    Create { name: String },
    /// List projects
    List {
        /// Include archived projects
        #[arg(long)]
        all: bool,
    },
    /// Archive a project: its keys stop working
    Archive { project: String },
    /// Set the models a project's keys may use (names or patterns like gpt-4o*; none: any)
    AllowModels {
        project: String,
        #[arg(value_name = "PATTERN")]
        models: Vec<String>,
    },
    /// Set the addresses a project's keys may be used from (IPs or CIDR ranges; none: any)
    AllowIps {
        project: String,
        #[arg(value_name = "CIDR")]
        ranges: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ServiceAccountsCommand {
    /// Create a service account in a project
    Create {
        name: String,
        /// Project (id or name) [default: the default project]
        #[arg(long)]
        project: Option<String>,
    },
    /// List service accounts
    List {
        /// Only those of this project (id or name)
        #[arg(long)]
        project: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GroupBy {
    Day,
    Model,
    Key,
    Project,
}

#[derive(Debug, Args)]
pub struct UsageArgs {
    /// How to group the rows
    #[arg(long, value_enum, default_value = "day")]
    pub by: GroupBy,
    /// First UTC day, YYYY-MM-DD [default: 30 days ago]
    #[arg(long, value_name = "DATE")]
    pub since: Option<String>,
    /// Last UTC day, YYYY-MM-DD [default: today]
    #[arg(long, value_name = "DATE")]
    pub until: Option<String>,
    /// List the newest requests one by one (status, tokens, cost) instead of totals
    #[arg(long, conflicts_with_all = ["by", "since", "until"])]
    pub events: bool,
    /// With --events: only this key's requests
    #[arg(long, value_name = "KEY_ID", requires = "events")]
    pub key: Option<String>,
    /// With --events: how many requests
    #[arg(long, default_value_t = 20, requires = "events")]
    pub limit: i64,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only entries about this resource (key, project, service account id)
    #[arg(long, value_name = "ID")]
    pub resource: Option<String>,
    /// How many entries
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
}
