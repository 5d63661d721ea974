use crate::app::cli_actor;
use crate::cli::ServiceAccountsCommand;
use crate::failure::Failure;
use crate::output::{print_json, print_list_json, print_table, time_or_dash, ServiceAccountView};
use tollgate_control::Control;

pub async fn run(
    control: &Control,
    command: ServiceAccountsCommand,
    json: bool,
) -> Result<(), Failure> {
    match command {
        ServiceAccountsCommand::Create { name, project } => {
            let account = control
                .create_service_account(&cli_actor(), project.as_deref(), &name)
                .await?;
            if json {
                return Ok(print_json(&ServiceAccountView::from(&account))?);
            }
            println!(
                "Created service account {} \"{}\" in project {}.\nGive it a key with: tollgate keys create --service-account {} --name \"...\"",
                account.id, account.name, account.project_id, account.id
            );
            Ok(())
        }
        ServiceAccountsCommand::List { project } => {
            let accounts = control.service_accounts(project.as_deref()).await?;
            if json {
                return Ok(print_list_json(
                    accounts.iter().map(ServiceAccountView::from).collect(),
                )?);
            }
            let rows: Vec<Vec<String>> = accounts
                .iter()
                .map(|a| {
                    vec![
                        a.id.to_string(),
                        a.name.clone(),
                        a.project_id.to_string(),
                        a.role.clone(),
                        time_or_dash(Some(a.created_at)),
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
