use crate::cli::ServiceAccountsCommand;
use crate::failure::Failure;
use crate::manage::Manage;
use crate::output::{print_json, print_list_json, print_table, time_or_dash};
use tollgate_core::UnixTime;

pub async fn run(
    manage: &impl Manage,
    command: ServiceAccountsCommand,
    json: bool,
) -> Result<(), Failure> {
    match command {
        ServiceAccountsCommand::Create { name, project } => {
            let account = manage
                .create_service_account(project.as_deref(), &name)
                .await?;
            if json {
                return Ok(print_json(&account)?);
            }
            println!(
                "Created service account {} \"{}\" in project {}.\nGive it a key with: tollgate keys create --service-account {} --name \"...\"",
                account.id, account.name, account.project_id, account.id
            );
            Ok(())
        }
        ServiceAccountsCommand::List { project } => {
            let accounts = manage.service_accounts(project.as_deref()).await?;
            if json {
                return Ok(print_list_json(accounts)?);
            }
            let rows: Vec<Vec<String>> = accounts
                .iter()
                .map(|a| {
                    vec![
                        a.id.clone(),
                        a.name.clone(),
                        a.project_id.clone(),
                        a.role.clone(),
                        time_or_dash(Some(UnixTime(a.created_at))),
                    ]
                })
                .collect();
            Ok(print_table(
                &["ID", "NAME", "PROJECT", "ROLE", "CREATED"],
                &rows,
            )?)
        }
    }
}
