use crate::app::cli_actor;
use crate::cli::ProjectsCommand;
use crate::failure::Failure;
use crate::output::{print_json, print_list_json, print_table, time_or_dash, ProjectView};
use tollgate_control::Control;
use tollgate_core::network::IpAllowList;

pub async fn run(control: &Control, command: ProjectsCommand, json: bool) -> Result<(), Failure> {
    let actor = cli_actor();
    match command {
        ProjectsCommand::Create { name } => {
            let project = control.create_project(&actor, &name).await?;
            if json {
                return Ok(print_json(&ProjectView::from(&project))?);
            }
            println!("Created project {} \"{}\".", project.id, project.name);
            Ok(())
        }
        ProjectsCommand::List { all } => {
            let projects = control.projects(all).await?;
            if json {
                return Ok(print_list_json(
                    projects.iter().map(ProjectView::from).collect(),
                )?);
            }
            let rows: Vec<Vec<String>> = projects
                .iter()
                .map(|p| {
                    vec![
                        p.id.to_string(),
                        p.name.clone(),
                        p.status.as_str().to_owned(),
                        if p.is_default {
                            "yes".into()
                        } else {
                            "".into()
                        },
                        time_or_dash(Some(p.created_at)),
                        time_or_dash(p.archived_at),
                    ]
                })
                .collect();
            Ok(print_table(
                &["ID", "NAME", "STATUS", "DEFAULT", "CREATED", "ARCHIVED"],
                &rows,
            )?)
        }
        ProjectsCommand::AllowModels { project, models } => {
            let list = tollgate_core::routing::ModelAllowList::new(&models);
            let project = control
                .set_project_allowed_models(&actor, &project, list)
                .await?;
            if json {
                return Ok(print_json(&ProjectView::from(&project))?);
            }
            println!(
                "Project {} keys may now use: {}. Running servers apply it within a second.",
                project.id, project.allowed_models
            );
            Ok(())
        }
        ProjectsCommand::AllowIps { project, ranges } => {
            let list = IpAllowList::parse(&ranges).map_err(|e| Failure::invalid(e.to_string()))?;
            let project = control
                .set_project_allowed_ips(&actor, &project, list)
                .await?;
            if json {
                return Ok(print_json(&ProjectView::from(&project))?);
            }
            println!("Project {} now accepts requests from: {}. Running servers apply it within a second.", project.id, project.allowed_ips);
            Ok(())
        }
        ProjectsCommand::Archive { project } => {
            let project = control.archive_project(&actor, &project).await?;
            if json {
                return Ok(print_json(&ProjectView::from(&project))?);
            }
            println!(
                "Archived project {} \"{}\"; its keys no longer work.",
                project.id, project.name
            );
            Ok(())
        }
    }
}
