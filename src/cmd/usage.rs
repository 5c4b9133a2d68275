//! Tokens and cost as the agents report them, for `wrapper stats` and `wrapper show`: the
//! tables only (the numbers come from `store::usage`).

use comfy_table::Cell;

use crate::cmd::view;
use crate::error::CliResult;
use crate::output;
use crate::store::usage::{SessionUsage, Totals, Usage};

fn tokens(n: Option<i64>) -> String {
    n.map(group).unwrap_or_else(|| "-".into())
}

/// `1234567` → `1,234,567`.
fn group(n: i64) -> String {
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

fn cost(c: Option<f64>) -> String {
    c.map(|c| format!("${c:.4}")).unwrap_or_else(|| "-".into())
}

fn totals_cells(t: &Totals) -> Vec<Cell> {
    vec![
        Cell::new(t.sessions),
        Cell::new(t.sessions_with_usage),
        Cell::new(group(t.input_tokens)),
        Cell::new(group(t.cached_input_tokens)),
        Cell::new(group(t.output_tokens)),
        Cell::new(if t.sessions_with_usage > 0 {
            cost(Some(t.cost_usd))
        } else {
            "-".into()
        }),
    ]
}

const HEAD: [&str; 6] = ["SESSIONS", "REPORTED", "INPUT", "CACHED", "OUTPUT", "COST"];

/// The usage part of `wrapper stats`: per agent, per day, and the newest sessions.
pub fn print_usage(u: &Usage) -> CliResult<()> {
    if u.total.sessions_with_usage == 0 {
        view::line("\nTokens and cost: no agent reported any")?;
        return Ok(());
    }
    view::line("\nTokens and cost, as the agents report them, by agent")?;
    let mut head = vec!["AGENT"];
    head.extend(HEAD);
    let mut t = output::table(&head);
    for a in &u.by_agent {
        let mut row = vec![Cell::new(&a.agent_name)];
        row.extend(totals_cells(&a.totals));
        t.add_row(row);
    }
    output::print_table(t)?;
    view::line("\nBy day (UTC)")?;
    let mut head = vec!["DAY", "AGENT"];
    head.extend(HEAD);
    let mut t = output::table(&head);
    for d in &u.by_day {
        let mut row = vec![Cell::new(&d.day), Cell::new(&d.agent_name)];
        row.extend(totals_cells(&d.totals));
        t.add_row(row);
    }
    output::print_table(t)?;
    view::line("\nNewest sessions with usage")?;
    let mut t = output::table(&[
        "SESSION", "AGENT", "MODEL", "INPUT", "CACHED", "OUTPUT", "COST",
    ]);
    for s in &u.sessions {
        t.add_row(vec![
            Cell::new(s.session_id.chars().take(12).collect::<String>()),
            Cell::new(&s.agent_name),
            Cell::new(s.agent_model.as_deref().unwrap_or("-")),
            Cell::new(tokens(s.input_tokens)),
            Cell::new(tokens(s.cached_input_tokens)),
            Cell::new(tokens(s.output_tokens)),
            Cell::new(cost(s.cost_usd)),
        ]);
    }
    output::print_table(t)?;
    if u.sessions.iter().any(|s| s.cost_note.is_some()) {
        view::line(
            "Costs are what the clients estimate (e.g. Claude Code's total_cost_usd), not bills.",
        )?;
    }
    Ok(())
}

/// The usage lines of `wrapper show`.
pub fn print_session(u: &SessionUsage) -> CliResult<()> {
    if u.agent_session_id.is_none() && !u.has_usage() && u.agent_log_path.is_none() {
        return Ok(());
    }
    view::line("\nAgent's own record")?;
    let mut t = output::table(&["", ""]);
    t.set_header(Vec::<String>::new());
    let mut kv = |k: &str, v: String| {
        t.add_row(vec![Cell::new(k), Cell::new(v)]);
    };
    if let Some(id) = &u.agent_session_id {
        kv("agent session", id.clone());
    }
    if let Some(m) = &u.agent_model {
        kv("model", m.clone());
    }
    if u.has_usage() {
        kv(
            "tokens",
            format!(
                "{} input ({} cached), {} output",
                tokens(u.input_tokens),
                tokens(u.cached_input_tokens),
                tokens(u.output_tokens)
            ),
        );
    }
    if u.cost_usd.is_some() {
        let note = u
            .cost_note
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        kv("cost", format!("{}{note}", cost(u.cost_usd)));
    }
    if let Some(p) = &u.agent_log_path {
        kv("session log", p.clone());
    }
    output::print_table(t)
}
