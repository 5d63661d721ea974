//! What commands print: aligned tables for people, JSON (`--json`) for scripts.

use serde::Serialize;
use std::io::Write;
use tollgate_core::UnixTime;

/// OpenAI's list envelope.
#[derive(Debug, Serialize)]
pub struct ListView<T: Serialize> {
    pub object: &'static str,
    pub data: Vec<T>,
}

pub fn print_json<T: Serialize>(value: &T) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(std::io::Error::other)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
}

pub fn print_list_json<T: Serialize>(data: Vec<T>) -> std::io::Result<()> {
    print_json(&ListView {
        object: "list",
        data,
    })
}

/// Prints rows under a header, each column as wide as its widest cell.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = std::io::stdout().lock();
    let line = |cells: Vec<String>| -> String {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    writeln!(
        out,
        "{}",
        line(header.iter().map(|h| h.to_string()).collect())
    )?;
    for row in rows {
        writeln!(out, "{}", line(row.clone()))?;
    }
    Ok(())
}

/// `2026-11-23T10:00:00Z`, or `-` for none.
pub fn time_or_dash(t: Option<UnixTime>) -> String {
    t.map(|t| t.rfc3339()).unwrap_or_else(|| "-".into())
}
