//! `tollgate dev`: tools for benchmarks, hidden from help.

use crate::cli::DevCommand;
use crate::failure::Failure;
use crate::output::print_json;
use tollgate_control::Control;

pub async fn run(control: &Control, command: DevCommand, json: bool) -> Result<(), Failure> {
    match command {
        DevCommand::SeedKeys { count } => {
            let first = control
                .seed_keys(&crate::app::cli_actor(), count as usize)
                .await?;
            let first = first.map(|s| s.expose().to_owned()).unwrap_or_default();
            if json {
                print_json(&serde_json::json!({"count": count, "first_key": first}))?;
            } else {
                println!("Seeded {count} keys. The first: {first}");
            }
            Ok(())
        }
    }
}
