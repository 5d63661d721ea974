use crate::cli::{CreateKeyArgs, KeysCommand, KindArg, SecretFormat};
use crate::failure::Failure;
use crate::manage::Manage;
use crate::output::{print_json, print_list_json, print_table, time_or_dash};
use std::io::Write;
use tollgate_control::{list_text, CreatedKeyView, KeyOwnerRequest, KeyView, NewKey};
use tollgate_core::duration::Span;
use tollgate_core::network::IpAllowList;
use tollgate_core::{KeyKind, Permissions, UnixTime};

fn time(seconds: Option<i64>) -> String {
    time_or_dash(seconds.map(UnixTime))
}

pub async fn run(manage: &impl Manage, command: KeysCommand, json: bool) -> Result<(), Failure> {
    match command {
        KeysCommand::Create(args) => {
            let format = args.format;
            let created = manage.create_key(new_key(*args)?).await?;
            print_secret(&created, format, json, "Created")
        }
        KeysCommand::List { project, kind } => {
            let kind = kind.map(|k| match k {
                KindArg::Project => KeyKind::Project,
                KindArg::ServiceAccount => KeyKind::ServiceAccount,
                KindArg::Admin => KeyKind::Admin,
            });
            let keys = manage.keys(project.as_deref(), kind).await?;
            if json {
                return Ok(print_list_json(keys)?);
            }
            let rows: Vec<Vec<String>> = keys
                .iter()
                .map(|k| {
                    vec![
                        k.id.clone(),
                        k.name.clone(),
                        k.redacted_value.clone(),
                        k.kind.clone(),
                        k.project_id.clone().unwrap_or_else(|| "-".into()),
                        k.status_text(),
                        k.permissions.clone(),
                        time(Some(k.created_at)),
                        time(k.last_used_at),
                        time(k.expires_at),
                    ]
                })
                .collect();
            Ok(print_table(
                &[
                    "ID",
                    "NAME",
                    "KEY",
                    "KIND",
                    "PROJECT",
                    "STATUS",
                    "PERMISSIONS",
                    "CREATED",
                    "LAST USED",
                    "EXPIRES",
                ],
                &rows,
            )?)
        }
        KeysCommand::Show { key_id } => {
            let key = manage.key(&key_id).await?;
            let history = manage.audit(Some(&key.id), 20).await?;
            if json {
                return Ok(print_json(
                    &serde_json::json!({"key": key, "audit": history}),
                )?);
            }
            let mut out = std::io::stdout().lock();
            let rows = [
                ("ID", key.id.clone()),
                ("Name", key.name.clone()),
                ("Key", key.redacted_value.clone()),
                ("Kind", key.kind.clone()),
                (
                    "Project",
                    key.project_id.clone().unwrap_or_else(|| "-".into()),
                ),
                (
                    "Owner",
                    serde_json::to_string(&key.owner).unwrap_or_default(),
                ),
                ("Status", key.status_text()),
                ("Permissions", key.permissions.clone()),
                ("Allowed IPs", list_text(&key.allowed_ips)),
                ("Models", list_text(&key.allowed_models)),
                (
                    "Created",
                    format!("{} by {}", UnixTime(key.created_at), key.created_by),
                ),
                ("Last used", time(key.last_used_at)),
                ("Expires", time(key.expires_at)),
                ("Revoked", time(key.revoked_at)),
                (
                    "Rotated from",
                    key.rotated_from.clone().unwrap_or_else(|| "-".into()),
                ),
                (
                    "Rotated to",
                    key.rotated_to.clone().unwrap_or_else(|| "-".into()),
                ),
            ];
            for (label, value) in rows {
                writeln!(out, "{label:<13} {value}")?;
            }
            writeln!(out, "\nHistory:")?;
            for entry in history {
                writeln!(
                    out,
                    "  {}  {:<16} by {}",
                    entry.created_at,
                    entry.event_type,
                    entry.actor.label()
                )?;
            }
            Ok(())
        }
        KeysCommand::Rename { key_id, name } => {
            let key = manage.rename_key(&key_id, &name).await?;
            if json {
                return Ok(print_json(&key)?);
            }
            println!("Renamed {} to \"{}\".", key.id, key.name);
            Ok(())
        }
        KeysCommand::Unsuspend { key_id } => {
            let (key, lifted) = manage.unsuspend_key(&key_id).await?;
            if json {
                return Ok(print_json(&key)?);
            }
            if lifted {
                println!(
                    "Lifted the suspension of {} ({}). It works again on every running server within a second.",
                    key.id, key.redacted_value
                );
            } else {
                println!(
                    "{} ({}) is not suspended; nothing changed.",
                    key.id, key.redacted_value
                );
            }
            Ok(())
        }
        KeysCommand::Revoke { key_id } => {
            let (key, already) = manage.revoke_key(&key_id).await?;
            if json {
                return Ok(print_json(&key)?);
            }
            if already {
                println!(
                    "{} ({}) was already revoked at {}; nothing changed.",
                    key.id,
                    key.redacted_value,
                    time(key.revoked_at)
                );
            } else {
                println!(
                    "Revoked {} ({}). It stops working on every running server within a second.",
                    key.id, key.redacted_value
                );
            }
            Ok(())
        }
        KeysCommand::Rotate {
            key_id,
            grace,
            format,
        } => {
            let grace = Span::parse(&grace).map_err(|e| Failure::invalid(e.to_string()))?;
            let (old, new) = manage.rotate_key(&key_id, grace).await?;
            if !json && format == SecretFormat::Text {
                let until = time(old.expires_at);
                println!(
                    "Rotated {}: the old key {} keeps working until {until} ({grace} grace).",
                    old.id, old.redacted_value
                );
            }
            print_secret(&new, format, json, "New key")
        }
        KeysCommand::Expire { key_id, after } => {
            let after = Span::parse(&after).map_err(|e| Failure::invalid(e.to_string()))?;
            let key = manage.expire_key(&key_id, after).await?;
            if json {
                return Ok(print_json(&key)?);
            }
            println!(
                "{} ({}) expires at {}.",
                key.id,
                key.redacted_value,
                time(key.expires_at)
            );
            Ok(())
        }
    }
}

fn new_key(args: CreateKeyArgs) -> Result<NewKey, Failure> {
    let owner = match (args.admin, args.service_account, args.project) {
        (true, _, _) => KeyOwnerRequest::Admin,
        (false, Some(account), _) => KeyOwnerRequest::ServiceAccount(account),
        (false, None, project) => KeyOwnerRequest::Project(project),
    };
    let permissions = Permissions::from_parts(&args.permissions, &args.scopes)
        .map_err(|e| Failure::invalid(e.to_string()))?;
    let expires_in = args
        .expires_in
        .map(|text| Span::parse(&text))
        .transpose()
        .map_err(|e| Failure::invalid(e.to_string()))?;
    let allowed_ips =
        IpAllowList::parse(&args.allow_ips).map_err(|e| Failure::invalid(e.to_string()))?;
    let budget = args
        .budget
        .as_deref()
        .map(|amount| {
            crate::commands::limits::budget_request(
                amount,
                &args.budget_period,
                "UTC",
                &args.alerts,
            )
        })
        .transpose()?;
    Ok(NewKey {
        name: args.name,
        owner,
        permissions,
        expires_in,
        allowed_ips,
        allowed_models: tollgate_core::routing::ModelAllowList::new(&args.models),
        limits: crate::commands::limits::rate_limits(&args.limits),
        budget,
    })
}

/// Prints a new key's secret: the only time it is ever shown.
fn print_secret(
    created: &CreatedKeyView,
    format: SecretFormat,
    json: bool,
    verb: &str,
) -> Result<(), Failure> {
    let secret = &created.value;
    let key: &KeyView = &created.key;
    if format == SecretFormat::Env {
        println!("export OPENAI_API_KEY={secret}");
        return Ok(());
    }
    if json {
        return Ok(print_json(created)?);
    }
    let mut out = std::io::stdout().lock();
    let place = key
        .project_id
        .as_ref()
        .map(|p| format!(" in project {p}"))
        .unwrap_or_else(|| " for the organization (admin API)".into());
    writeln!(out, "{verb} {} \"{}\"{place}.\n", key.id, key.name)?;
    writeln!(out, "    {secret}\n")?;
    writeln!(
        out,
        "Store this key somewhere safe now: it is shown only once and cannot be recovered."
    )?;
    writeln!(out, "Never commit it or put it in a browser or mobile app. Use it as OPENAI_API_KEY with OPENAI_BASE_URL pointing at this Tollgate.")?;
    out.flush()?;
    Ok(())
}
