use crate::cli::ProjectsCommand;
use crate::failure::Failure;
use crate::manage::Manage;
use crate::output::{print_json, print_list_json, print_table, time_or_dash};
use tollgate_control::list_text;
use tollgate_core::network::IpAllowList;
use tollgate_core::UnixTime;

pub async fn run(
    manage: &impl Manage,
    command: ProjectsCommand,
    json: bool,
) -> Result<(), Failure> {
    match command {
        ProjectsCommand::Create { name } => {
            let project = manage.create_project(&name).await?;
            if json {
                return Ok(print_json(&project)?);
            }
            println!("Created project {} \"{}\".", project.id, project.name);
            Ok(())
        }
        ProjectsCommand::List { all } => {
            let projects = manage.projects(all).await?;
            if json {
                return Ok(print_list_json(projects)?);
            }
            let rows: Vec<Vec<String>> = projects
                .iter()
                .map(|p| {
                    vec![
                        p.id.clone(),
                        p.name.clone(),
                        p.status.clone(),
                        if p.is_default {
                            "yes".into()
                        } else {
                            "".into()
                        },
                        time_or_dash(Some(UnixTime(p.created_at))),
                        time_or_dash(p.archived_at.map(UnixTime)),
                    ]
                })
                .collect();
            Ok(print_table(
                &["ID", "NAME", "STATUS", "DEFAULT", "CREATED", "ARCHIVED"],
                &rows,
            )?)
        }
        ProjectsCommand::AllowModels { project, models } => {
            let project = manage.set_project_models(&project, &models).await?;
            if json {
                return Ok(print_json(&project)?);
            }
            println!(
                "Project {} keys may now use: {}. Running servers apply it within a second.",
                project.id,
                list_text(&project.allowed_models)
            );
            Ok(())
        }
        ProjectsCommand::AllowIps { project, ranges } => {
            let list = IpAllowList::parse(&ranges).map_err(|e| Failure::invalid(e.to_string()))?;
            let project = manage.set_project_ips(&project, list).await?;
            if json {
                return Ok(print_json(&project)?);
            }
            println!("Project {} now accepts requests from: {}. Running servers apply it within a second.", project.id, list_text(&project.allowed_ips));
            Ok(())
        }
        ProjectsCommand::Archive { project } => {
            let project = manage.archive_project(&project).await?;
            if json {
                return Ok(print_json(&project)?);
            }
            println!(
                "Archived project {} \"{}\"; its keys no longer work.",
                project.id, project.name
            );
            Ok(())
        }
    }
}
