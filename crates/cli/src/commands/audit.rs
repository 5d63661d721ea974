use crate::cli::AuditArgs;
use crate::failure::Failure;
use crate::manage::Manage;
use crate::output::{print_list_json, print_table};

pub async fn run(manage: &impl Manage, args: AuditArgs, json: bool) -> Result<(), Failure> {
    if !(1..=10_000).contains(&args.limit) {
        return Err(Failure::invalid("--limit must be between 1 and 10000"));
    }
    let entries = manage.audit(args.resource.as_deref(), args.limit).await?;
    if json {
        return Ok(print_list_json(entries)?);
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            vec![
                e.created_at.rfc3339(),
                e.event_type.clone(),
                e.actor.label(),
                e.resource_id.clone().unwrap_or_default(),
                e.data.to_string(),
            ]
        })
        .collect();
    Ok(print_table(
        &["TIME", "EVENT", "ACTOR", "RESOURCE", "DETAILS"],
        &rows,
    )?)
}
