//! `tollgate migrate --to postgres://...`: a SQLite deployment copied into PostgreSQL (see
//! `tollgate_store::Store::copy_into`), for running several replicas.

use crate::cli::MigrateArgs;
use crate::config::Settings;
use crate::failure::Failure;
use crate::output::{print_json, print_table};
use tollgate_store::{DatabaseLocation, Store};

#[derive(serde::Serialize)]
struct Copied {
    object: &'static str,
    to: String,
    tables: Vec<Table>,
    rows: u64,
}

#[derive(serde::Serialize)]
struct Table {
    table: &'static str,
    rows: u64,
}

pub async fn run(settings: &Settings, args: &MigrateArgs, json: bool) -> Result<(), Failure> {
    let DatabaseLocation::Sqlite(path) = &settings.database else {
        return Err(Failure::invalid(
            "migrate copies a SQLite database: point --database-url (or TOLLGATE_DATABASE_URL) at the SQLite file to copy, and --to at PostgreSQL",
        ));
    };
    if !path.exists() {
        return Err(Failure::environment(format!(
            "{}: no such database to copy",
            path.display()
        )));
    }
    let target = DatabaseLocation::parse(&args.to).map_err(|e| Failure::invalid(e.to_string()))?;
    let DatabaseLocation::Postgres(url) = &target else {
        return Err(Failure::invalid(
            "--to: give a PostgreSQL URL, such as postgres://tollgate:PASSWORD@db:5432/tollgate",
        ));
    };
    // Printed with its password as `*****`.
    let shown = url.to_string();
    // Usage a server could not store before it stopped waits in its spool: copying without it
    // would lose it. `tollgate serve` stores it at start.
    let spooled = spooled_bytes(&settings.spool_dir);
    if spooled > 0 {
        return Err(Failure::environment(format!(
            "{} holds {spooled} bytes of usage events not yet stored; start `tollgate serve` on this database once (it stores them first), stop it, then migrate",
            settings.spool_dir.display()
        )));
    }
    let source = Store::open(&settings.database).await?;
    let destination = Store::open(&target).await?;
    let copied = source.copy_into(&destination).await;
    source.close().await;
    destination.close().await;
    let copied = copied?;
    let rows = copied.iter().map(|t| t.rows).sum();
    let report = Copied {
        object: "migration",
        to: shown,
        tables: copied
            .iter()
            .map(|t| Table {
                table: t.table,
                rows: t.rows,
            })
            .collect(),
        rows,
    };
    if json {
        print_json(&report).map_err(|e| Failure::environment(e.to_string()))?;
        return Ok(());
    }
    let table_rows: Vec<Vec<String>> = report
        .tables
        .iter()
        .map(|t| vec![t.table.to_owned(), t.rows.to_string()])
        .collect();
    print_table(&["TABLE", "ROWS"], &table_rows)
        .map_err(|e| Failure::environment(e.to_string()))?;
    println!();
    println!(
        "Copied {rows} rows into {}. Serve from it with --database-url (or TOLLGATE_DATABASE_URL) and the same server secret ({}): keys are checked with it.",
        report.to,
        settings.secret_file.display()
    );
    Ok(())
}

/// Bytes of usage events in the spool: its `usage-*.jsonl` segments, in the directory or in a
/// process's directory under it (0 when there is none).
fn spooled_bytes(dir: &std::path::Path) -> u64 {
    spooled_bytes_within(dir, 1)
}

fn spooled_bytes_within(dir: &std::path::Path, depth: u32) -> u64 {
    let mut bytes = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            if depth > 0 {
                bytes += spooled_bytes_within(&path, depth - 1);
            }
        } else if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("usage-") && n.ends_with(".jsonl"))
        {
            bytes += entry.metadata().map_or(0, |m| m.len());
        }
    }
    bytes
}
