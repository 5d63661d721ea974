use crate::cli::ObjectsCommand;
use crate::failure::Failure;
use crate::manage::Manage;
use crate::output::{print_list_json, print_table, time_or_dash};
use tollgate_core::objects::ObjectKind;
use tollgate_core::UnixTime;

/// `tollgate objects ...`; `provider` is the configuration's first provider (where
/// pass-through requests go), for adoption.
pub async fn run(
    manage: &impl Manage,
    command: ObjectsCommand,
    provider: Option<String>,
    json: bool,
) -> Result<(), Failure> {
    match command {
        ObjectsCommand::List {
            project,
            kind,
            limit,
        } => {
            let kind = match kind {
                Some(name) => Some(ObjectKind::parse(&name).ok_or_else(|| {
                    Failure::invalid(format!(
                        "--kind {name}: not a kind; use one of {}",
                        ObjectKind::ALL.map(ObjectKind::as_str).join(", ")
                    ))
                })?),
                None => None,
            };
            let project = match project {
                Some(project) => project,
                None => default_project(manage).await?,
            };
            let objects = manage.project_objects(&project, kind, limit).await?;
            if json {
                return Ok(print_list_json(objects)?);
            }
            let rows: Vec<Vec<String>> = objects
                .iter()
                .map(|o| {
                    vec![
                        o.id.clone(),
                        o.object.clone(),
                        o.provider.clone(),
                        o.key_id.clone().unwrap_or_else(|| "(adopted)".into()),
                        time_or_dash(Some(UnixTime(o.created_at))),
                    ]
                })
                .collect();
            Ok(print_table(
                &["ID", "KIND", "PROVIDER", "MADE BY KEY", "CREATED"],
                &rows,
            )?)
        }
        ObjectsCommand::Adopt {
            project,
            provider: chosen,
            ids,
        } => {
            let provider = chosen.or(provider).unwrap_or_else(|| "openai".to_owned());
            let adopted = manage.adopt_objects(&project, &provider, &ids).await?;
            if json {
                return Ok(print_list_json(adopted)?);
            }
            for entry in &adopted {
                if entry.adopted {
                    println!("{}: adopted into {project}", entry.id);
                } else {
                    println!("{}: already recorded; it keeps its owner", entry.id);
                }
            }
            Ok(())
        }
    }
}

async fn default_project(manage: &impl Manage) -> Result<String, Failure> {
    manage
        .projects(false)
        .await?
        .into_iter()
        .find(|p| p.is_default)
        .map(|p| p.id)
        .ok_or_else(|| Failure::invalid("there is no default project; name one with --project"))
}
