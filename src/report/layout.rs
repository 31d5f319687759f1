//! Layout: route tables as aligned plain text for a terminal or as GitHub Markdown, with the
//! notes under each table and the closing lines.
//!
//! Must not: choose figures or words (the tables arrive filled).

use super::numbers::fmt_trim;
use super::websocket::websocket_table;
use super::{route_table, REMINDER};
use crate::analysis::model::{RouteSummary, Summary};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Style {
    Plain,
    Markdown,
}

/// One route's table before layout.
pub(super) struct RouteTable {
    pub(super) heading: String,
    pub(super) header: [String; 4],
    pub(super) rows: Vec<[String; 4]>,
    /// Lines printed under the table.
    pub(super) notes: Vec<String>,
}

pub(super) fn render_text(summary: &Summary, routes: &[&RouteSummary], style: Style) -> String {
    let mut out = String::new();
    if routes.is_empty() {
        out.push_str("No routes in the summary.\n\n");
    }
    for route in routes {
        let tables = std::iter::once(route_table(route)).chain(websocket_table(route));
        for table in tables {
            match style {
                Style::Plain => write_plain(&table, &mut out),
                Style::Markdown => write_markdown(&table, &mut out),
            }
            out.push('\n');
        }
    }
    out.push_str(&format!(
        "window: {} s, generated {}\n",
        fmt_trim(summary.window_seconds),
        summary.generated_at
    ));
    if style == Style::Markdown {
        out.push('\n');
    }
    out.push_str(REMINDER);
    out.push('\n');
    out
}

fn write_plain(table: &RouteTable, out: &mut String) {
    out.push_str(&table.heading);
    out.push('\n');
    out.push_str(&"=".repeat(table.heading.chars().count()));
    out.push_str("\n\n");
    let mut widths = [0usize; 4];
    for row in std::iter::once(&table.header).chain(&table.rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let rule: [String; 4] = widths.map(|w| "-".repeat(w));
    for row in std::iter::once(&table.header)
        .chain(std::iter::once(&rule))
        .chain(&table.rows)
    {
        // Metric and Difference left-aligned, the figures right-aligned.
        let line = format!(
            "{:<w0$}  {:>w1$}  {:>w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
        );
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if !table.notes.is_empty() {
        out.push('\n');
    }
    for note in &table.notes {
        out.push_str(note);
        out.push('\n');
    }
}

fn write_markdown(table: &RouteTable, out: &mut String) {
    out.push_str("### ");
    out.push_str(&table.heading);
    out.push_str("\n\n");
    let row = |cells: &[String; 4]| {
        let escaped: Vec<String> = cells.iter().map(|c| c.replace('|', "\\|")).collect();
        format!("| {} |\n", escaped.join(" | "))
    };
    out.push_str(&row(&table.header));
    out.push_str("|---|---:|---:|---|\n");
    for cells in &table.rows {
        out.push_str(&row(cells));
    }
    for note in &table.notes {
        out.push('\n');
        out.push_str(note);
        out.push('\n');
    }
}
