use crate::app::cli_actor;
use crate::cli::{CreateKeyArgs, KeysCommand, KindArg, SecretFormat};
use crate::failure::Failure;
use crate::output::{
    print_json, print_list_json, print_table, time_or_dash, CreatedKeyView, KeyView,
};
use std::io::Write;
use tollgate_control::{Control, CreatedKey, KeyOwnerRequest, NewKey, RevokeOutcome};
use tollgate_core::duration::Span;
use tollgate_core::network::IpAllowList;
use tollgate_core::{KeyKind, Permissions};

pub async fn run(control: &Control, command: KeysCommand, json: bool) -> Result<(), Failure> {
    let actor = cli_actor();
    let now = control.now();
    match command {
        KeysCommand::Create(args) => {
            let format = args.format;
            let created = control.create_key(&actor, new_key(*args)?).await?;
            print_secret(&created, format, json, "Created")
        }
        KeysCommand::List { project, kind } => {
            let kind = kind.map(|k| match k {
                KindArg::Project => KeyKind::Project,
                KindArg::ServiceAccount => KeyKind::ServiceAccount,
                KindArg::Admin => KeyKind::Admin,
            });
            let keys = control.keys(project.as_deref(), kind).await?;
            if json {
                return Ok(print_list_json(
                    keys.iter().map(|k| KeyView::new(k, now)).collect(),
                )?);
            }
            let rows: Vec<Vec<String>> = keys
                .iter()
                .map(|k| {
                    vec![
                        k.id.to_string(),
                        k.name.clone(),
                        k.redacted.clone(),
                        k.kind.as_str().to_owned(),
                        k.project_id
                            .as_ref()
                            .map(|p| p.to_string())
                            .unwrap_or_else(|| "-".into()),
                        status_text(k, now),
                        k.permissions.to_string(),
                        time_or_dash(Some(k.created_at)),
                        time_or_dash(k.last_used_at),
                        time_or_dash(k.expires_at),
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
            let key = control.key(&key_id).await?;
            let history = control.audit(Some(key.id.as_str()), 20).await?;
            if json {
                return Ok(print_json(
                    &serde_json::json!({"key": KeyView::new(&key, now), "audit": history}),
                )?);
            }
            let mut out = std::io::stdout().lock();
            let rows = [
                ("ID", key.id.to_string()),
                ("Name", key.name.clone()),
                ("Key", key.redacted.clone()),
                ("Kind", key.kind.as_str().to_owned()),
                (
                    "Project",
                    key.project_id
                        .as_ref()
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "-".into()),
                ),
                (
                    "Owner",
                    serde_json::to_string(&key.owner).unwrap_or_default(),
                ),
                ("Status", status_text(&key, now)),
                ("Permissions", key.permissions.to_string()),
                ("Allowed IPs", key.allowed_ips.to_string()),
                ("Models", key.allowed_models.to_string()),
                (
                    "Created",
                    format!("{} by {}", key.created_at, key.created_by),
                ),
                ("Last used", time_or_dash(key.last_used_at)),
                ("Expires", time_or_dash(key.expires_at)),
                ("Revoked", time_or_dash(key.revoked_at)),
                (
                    "Rotated from",
                    key.rotated_from
                        .as_ref()
                        .map(|k| k.to_string())
                        .unwrap_or_else(|| "-".into()),
                ),
                (
                    "Rotated to",
                    key.rotated_to
                        .as_ref()
                        .map(|k| k.to_string())
                        .unwrap_or_else(|| "-".into()),
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
            let key = control.rename_key(&actor, &key_id, &name).await?;
            if json {
                return Ok(print_json(&KeyView::new(&key, now))?);
            }
            println!("Renamed {} to \"{}\".", key.id, key.name);
            Ok(())
        }
        KeysCommand::Revoke { key_id } => {
            let (key, already) = match control.revoke_key(&actor, &key_id).await? {
                RevokeOutcome::Revoked(key) => (key, false),
                RevokeOutcome::AlreadyRevoked(key) => (key, true),
            };
            if json {
                return Ok(print_json(&KeyView::new(&key, now))?);
            }
            if already {
                println!(
                    "{} ({}) was already revoked at {}; nothing changed.",
                    key.id,
                    key.redacted,
                    time_or_dash(key.revoked_at)
                );
            } else {
                println!(
                    "Revoked {} ({}). It stops working on every running server within a second.",
                    key.id, key.redacted
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
            let rotation = control.rotate_key(&actor, &key_id, grace).await?;
            if !json && format == SecretFormat::Text {
                let until = time_or_dash(rotation.old.expires_at);
                println!(
                    "Rotated {}: the old key {} keeps working until {until} ({grace} grace).",
                    rotation.old.id, rotation.old.redacted
                );
            }
            print_secret(&rotation.new, format, json, "New key")
        }
        KeysCommand::Expire { key_id, after } => {
            let after = Span::parse(&after).map_err(|e| Failure::invalid(e.to_string()))?;
            let key = control.expire_key(&actor, &key_id, after).await?;
            if json {
                return Ok(print_json(&KeyView::new(&key, now))?);
            }
            println!(
                "{} ({}) expires at {}.",
                key.id,
                key.redacted,
                time_or_dash(key.expires_at)
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
    created: &CreatedKey,
    format: SecretFormat,
    json: bool,
    verb: &str,
) -> Result<(), Failure> {
    let secret = created.secret.expose();
    let record = &created.record;
    if format == SecretFormat::Env {
        println!("export OPENAI_API_KEY={secret}");
        return Ok(());
    }
    if json {
        let view = CreatedKeyView {
            key: KeyView::new(record, record.created_at),
            value: secret,
        };
        return Ok(print_json(&view)?);
    }
    let mut out = std::io::stdout().lock();
    let place = record
        .project_id
        .as_ref()
        .map(|p| format!(" in project {p}"))
        .unwrap_or_else(|| " for the organization (admin API)".into());
    writeln!(out, "{verb} {} \"{}\"{place}.\n", record.id, record.name)?;
    writeln!(out, "    {secret}\n")?;
    writeln!(
        out,
        "Store this key somewhere safe now: it is shown only once and cannot be recovered."
    )?;
    writeln!(out, "Never commit it or put it in a browser or mobile app. Use it as OPENAI_API_KEY with OPENAI_BASE_URL pointing at this Tollgate.")?;
    out.flush()?;
    Ok(())
}

fn status_text(key: &tollgate_store::KeyRecord, now: tollgate_core::UnixTime) -> String {
    let status = key.status(now).as_str();
    match (&key.rotated_to, key.status(now)) {
        (Some(next), tollgate_core::lifecycle::KeyStatus::Active) => {
            format!("{status} (rotated to {next})")
        }
        _ => status.to_owned(),
    }
}
