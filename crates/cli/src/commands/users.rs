//! `tollgate users`: the console's accounts, on the server's own database. `reset-password` is
//! the way back in when no owner can sign in (Tollgate sends no e-mail).

use crate::cli::UsersCommand;
use crate::failure::Failure;
use crate::output::print_json;
use serde_json::json;
use tollgate_control::Control;

pub async fn run(control: &Control, command: UsersCommand, json: bool) -> Result<(), Failure> {
    match command {
        UsersCommand::List => {
            let members = control.members().await?;
            if json {
                let data: Vec<_> = members
                    .iter()
                    .map(|m| {
                        json!({
                            "id": m.user.id, "email": m.user.email, "name": m.user.name,
                            "role": m.role.as_str(), "added_at": m.added_at.seconds(),
                        })
                    })
                    .collect();
                print_json(&json!({"object": "list", "data": data}))?;
            } else {
                println!("{:<30}  {:<32}  {:<7}  NAME", "ID", "EMAIL", "ROLE");
                for m in &members {
                    println!(
                        "{:<30}  {:<32}  {:<7}  {}",
                        m.user.id,
                        m.user.email,
                        m.role.as_str(),
                        m.user.name
                    );
                }
            }
            Ok(())
        }
        UsersCommand::ResetPassword { user } => {
            let (member, password) = control
                .reset_password(&crate::app::cli_actor(), &user)
                .await?;
            if json {
                print_json(
                    &json!({"id": member.user.id, "email": member.user.email, "password": password}),
                )?;
            } else {
                println!(
                    "New password for {} (shown once; their sessions are signed out):\n  {password}\nThey can change it on the console's account page.",
                    member.user.email
                );
            }
            Ok(())
        }
    }
}
