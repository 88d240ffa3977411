//! The results: one `Row` per scenario and server, printed as a table, written as JSON by hand, and
//! drawn as an SVG chart with plotters.
//!
//! Deliberately not here: measuring anything. Rows arrive complete; this file only shows them.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::procfs::Machine;
use crate::targets::Kind;

/// One scenario run against one server.
#[derive(Debug)]
pub struct Row {
    /// `ingest`, `hold`, `churn`, `broadcast` or `relay`.
    pub scenario: &'static str,
    /// What varies within a scenario, e.g. `C=100 64B`; rows with equal scenario and params are
    /// compared across servers.
    pub params: String,
    pub server: Kind,
    pub status: Status,
    /// The figures; the first is the one the chatd/other ratio compares.
    pub figures: Vec<Figure>,
    /// Correctness checks, each passed or failed.
    pub checks: Vec<Check>,
    /// Performance targets, each met or missed; a missed one is news, not misbehaviour.
    pub goals: Vec<Goal>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// The scenario did not finish within its time budget.
    Timeout,
    /// The server or the harness failed (see the notes).
    Failed,
    /// Not run (e.g. ncat is not installed).
    Skipped,
}

impl Status {
    pub fn word(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Timeout => "TIMEOUT",
            Status::Failed => "FAILED",
            Status::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Figure {
    /// The JSON key, e.g. `lines_per_s`.
    pub key: &'static str,
    pub value: f64,
    /// The unit in the table, e.g. `lines/s`.
    pub unit: &'static str,
}

#[derive(Debug, Clone)]
pub struct Check {
    pub passed: bool,
    pub what: String,
}

#[derive(Debug, Clone)]
pub struct Goal {
    pub met: bool,
    pub what: String,
}

impl Row {
    pub fn new(scenario: &'static str, params: String, server: Kind) -> Row {
        Row {
            scenario,
            params,
            server,
            status: Status::Ok,
            figures: Vec::new(),
            checks: Vec::new(),
            goals: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn figure(&mut self, key: &'static str, value: f64, unit: &'static str) {
        self.figures.push(Figure { key, value, unit });
    }

    pub fn check(&mut self, passed: bool, what: impl Into<String>) {
        self.checks.push(Check {
            passed,
            what: what.into(),
        });
    }

    pub fn goal(&mut self, met: bool, what: impl Into<String>) {
        self.goals.push(Goal {
            met,
            what: what.into(),
        });
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    /// Marks the row with `status` and says why.
    pub fn end(&mut self, status: Status, why: impl Into<String>) {
        self.status = status;
        self.notes.push(why.into());
    }

    /// Whether this row shows chatd misbehaving: it failed, or a check did not hold.
    pub fn chatd_trouble(&self) -> bool {
        self.server == Kind::Chatd
            && (self.status == Status::Failed || self.checks.iter().any(|c| !c.passed))
    }

    fn primary(&self) -> Option<f64> {
        let value = self.figures.first()?.value;
        (self.status == Status::Ok && value.is_finite() && value > 0.0).then_some(value)
    }

    fn figure_value(&self, key: &str) -> Option<f64> {
        self.figures.iter().find(|f| f.key == key).map(|f| f.value)
    }
}

/// chatd's first figure over this row's, for a row of another server with a chatd twin.
fn ratio(rows: &[Row], row: &Row) -> Option<f64> {
    if row.server == Kind::Chatd {
        return None;
    }
    let chatd = rows.iter().find(|other| {
        other.server == Kind::Chatd && other.scenario == row.scenario && other.params == row.params
    })?;
    Some(chatd.primary()? / row.primary()?)
}

/// The table, with each row's checks, goals and notes indented below it, in lines of at most
/// `WIDTH` columns: a row's figures wrap within their column, the rest wraps at spaces. (The JSON
/// has every figure and note on one line.)
pub fn table(rows: &[Row]) -> String {
    let cells: Vec<([String; 4], Vec<String>)> = rows
        .iter()
        .map(|row| {
            let ratio = ratio(rows, row).map_or_else(String::new, |r| format!("{r:.2}"));
            let columns = [
                format!("{} {}", row.scenario, row.params),
                row.server.name().to_owned(),
                row.status.word().to_owned(),
                ratio,
            ];
            let figures = row
                .figures
                .iter()
                .map(|f| format!("{} {}", number(f.value), f.unit))
                .collect();
            (columns, figures)
        })
        .collect();
    let header = ["scenario", "server", "status", "chatd/this"].map(str::to_owned);
    let mut widths = header.clone().map(|h| h.len());
    for (columns, _) in &cells {
        for (width, cell) in widths.iter_mut().zip(columns) {
            *width = (*width).max(cell.len());
        }
    }
    // Everything before the figures; the ratio is a number, so right-aligned.
    let lead = |columns: &[String; 4]| {
        let [w0, w1, w2, w3] = widths;
        format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  ",
            columns[0], columns[1], columns[2], columns[3]
        )
    };
    let indent = lead(&header).len();
    let lines: Vec<String> = cells
        .iter()
        .map(|(columns, figures)| wrap(&lead(columns), figures, "  ", indent))
        .collect();
    let rule = lines
        .iter()
        .flat_map(|line| line.lines())
        .map(|line| line.chars().count())
        .fold(indent + "figures".len(), usize::max);
    let mut out = format!("{}figures\n{}\n", lead(&header), "-".repeat(rule));
    for (row, line) in rows.iter().zip(&lines) {
        let _ = writeln!(out, "{line}");
        for check in &row.checks {
            let verdict = if check.passed { "ok" } else { "FAILED" };
            let lead = format!("    check {verdict}: ");
            let _ = writeln!(out, "{}", wrap_words(&lead, &check.what, HANG));
        }
        for goal in &row.goals {
            let verdict = if goal.met { "met" } else { "MISSED" };
            let lead = format!("    goal {verdict}: ");
            let _ = writeln!(out, "{}", wrap_words(&lead, &goal.what, HANG));
        }
        for note in &row.notes {
            let _ = writeln!(out, "{}", wrap_words("    note: ", note, HANG));
        }
    }
    out
}

/// `lead`, then `items` joined by `separator`, broken between items into lines of at most `WIDTH`
/// columns, each line after the first starting with `indent` blanks. An item too long for any
/// line stands alone on one.
fn wrap(lead: &str, items: &[impl AsRef<str>], separator: &str, indent: usize) -> String {
    let mut out = lead.to_owned();
    let mut column = lead.chars().count();
    let mut line_start = true;
    for item in items {
        let item = item.as_ref();
        let len = item.chars().count();
        if !line_start && column + separator.len() + len > WIDTH {
            out.push('\n');
            out.push_str(&" ".repeat(indent));
            column = indent;
            line_start = true;
        }
        if !line_start {
            out.push_str(separator);
            column += separator.len();
        }
        out.push_str(item);
        column += len;
        line_start = false;
    }
    out.trim_end().to_owned()
}

/// `lead` and `text`, broken at spaces as [`wrap`] does.
pub fn wrap_words(lead: &str, text: &str, indent: usize) -> String {
    wrap(lead, &text.split(' ').collect::<Vec<_>>(), " ", indent)
}

/// A figure with three or so significant digits: `1.23M`, `45.6k`, `789`, `1.23`, `0.0123`.
pub fn number(value: f64) -> String {
    let magnitude = value.abs();
    if !value.is_finite() {
        "n/a".to_owned()
    } else if magnitude >= 1e6 {
        format!("{:.2}M", value / 1e6)
    } else if magnitude >= 1e4 {
        format!("{:.1}k", value / 1e3)
    } else if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 1.0 || magnitude == 0.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

/// Everything about the run the JSON and the table header share.
pub struct RunInfo<'a> {
    pub command: &'a str,
    pub quick: bool,
    pub machine: &'a Machine,
    pub open_files: u64,
    pub seconds: f64,
}

/// The report as JSON, written by hand: a handful of strings and numbers needs no serializer.
pub fn json(info: &RunInfo<'_>, rows: &[Row]) -> String {
    let mut out = String::from("{\n");
    let _ = writeln!(out, "  \"command\": {},", quote(info.command));
    let _ = writeln!(out, "  \"quick\": {},", info.quick);
    let _ = writeln!(
        out,
        "  \"machine\": {{\"cpus\": {}, \"model\": {}, \"kernel\": {}}},",
        info.machine.cpus,
        quote(&info.machine.model),
        quote(&info.machine.kernel)
    );
    let _ = writeln!(out, "  \"open_files_limit\": {},", info.open_files);
    let _ = writeln!(out, "  \"seconds\": {},", json_number(info.seconds));
    out.push_str("  \"rows\": [\n");
    for (i, row) in rows.iter().enumerate() {
        let figures = row
            .figures
            .iter()
            .map(|f| format!("{}: {}", quote(f.key), json_number(f.value)))
            .collect::<Vec<_>>()
            .join(", ");
        let checks = row
            .checks
            .iter()
            .map(|c| format!("{{\"passed\": {}, \"what\": {}}}", c.passed, quote(&c.what)))
            .collect::<Vec<_>>()
            .join(", ");
        let goals = row
            .goals
            .iter()
            .map(|g| format!("{{\"met\": {}, \"what\": {}}}", g.met, quote(&g.what)))
            .collect::<Vec<_>>()
            .join(", ");
        let notes = row
            .notes
            .iter()
            .map(|n| quote(n))
            .collect::<Vec<_>>()
            .join(", ");
        let ratio = ratio(rows, row).map_or_else(|| "null".to_owned(), json_number);
        let _ = write!(
            out,
            "    {{\"scenario\": {}, \"params\": {}, \"server\": {}, \"status\": {}, \
             \"figures\": {{{figures}}}, \"chatd_over_this\": {ratio}, \"checks\": [{checks}], \
             \"goals\": [{goals}], \"notes\": [{notes}]}}",
            quote(row.scenario),
            quote(&row.params),
            quote(row.server.name()),
            quote(row.status.word()),
        );
        out.push_str(if i + 1 < rows.len() { ",\n" } else { "\n" });
    }
    out.push_str("  ]\n}\n");
    out
}

fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// JSON has no NaN or infinity: those become null.
fn json_number(value: f64) -> String {
    if value.is_finite() {
        format!("{value}")
    } else {
        "null".to_owned()
    }
}

/// Four bar charts, two by two: lines/s per ingest scenario and server, the server's memory per
/// held client, the relay room's deliveries/s unthrottled, and its p99 latency at a fixed load.
/// plotters without its `ttf` feature measures text with built-in estimates and the SVG backend
/// writes text as `<text>` elements, so no system font is needed.
pub fn chart(rows: &[Row], path: &Path) -> Result<(), String> {
    let root = SVGBackend::new(path, (1280, 1080)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (top, bottom) = root.split_vertically(540);
    let (left, right) = top.split_horizontally(820);
    bars(
        &left,
        "ingest: lines/s (until the last line is reported)",
        "lines/s",
        &grouped(rows, |row| row.scenario == "ingest", "lines_per_s"),
        Kind::name,
    )?;
    bars(
        &right,
        "hold: server RSS per client (KiB)",
        "KiB per client",
        &grouped(rows, |row| row.scenario == "hold", "rss_kib_per_client"),
        Kind::name,
    )?;
    let (left, right) = bottom.split_horizontally(640);
    let relay = |row: &Row, load: &str| row.scenario == "relay" && row.params.ends_with(load);
    bars(
        &left,
        "relay, unthrottled: deliveries/s",
        "deliveries/s",
        &grouped(rows, |row| relay(row, "unthrottled"), "deliveries_per_s"),
        // Its newlines are counted like chatd's, but it relays each read chunk whole, prefixed
        // once: with few clients one chunk holds many lines, so its bars are not line by line.
        |kind| match kind {
            Kind::Ncat => "ncat (relays chunks, not lines)",
            kind => kind.name(),
        },
    )?;
    bars(
        &right,
        "relay, fixed load: p99 latency (ms)",
        "ms",
        &grouped(rows, |row| relay(row, "/s"), "p99_ms"),
        Kind::name,
    )?;
    root.present().map_err(|e| e.to_string())
}

/// Per params of the rows `keep` takes (in run order), the value of `key` for each server, if
/// measured.
fn grouped(
    rows: &[Row],
    keep: impl Fn(&Row) -> bool,
    key: &str,
) -> Vec<(String, [Option<f64>; 3])> {
    let mut groups: Vec<(String, [Option<f64>; 3])> = Vec::new();
    for row in rows.iter().filter(|row| keep(row)) {
        let value = row
            .figure_value(key)
            .filter(|v| row.status == Status::Ok && v.is_finite());
        let slot = SERIES.iter().position(|&kind| kind == row.server);
        let (Some(value), Some(slot)) = (value, slot) else {
            continue;
        };
        match groups.iter_mut().find(|(params, _)| *params == row.params) {
            Some((_, values)) => values[slot] = Some(value),
            None => {
                let mut values = [None; 3];
                values[slot] = Some(value);
                groups.push((row.params.clone(), values));
            }
        }
    }
    groups
}

/// Grouped bars: one group per category on x, one bar per server within it, each server named in
/// the legend as `name` says.
fn bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    y_label: &str,
    groups: &[(String, [Option<f64>; 3])],
    name: impl Fn(Kind) -> &'static str,
) -> Result<(), String> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    let top = groups
        .iter()
        .flat_map(|(_, values)| values.iter().flatten())
        .fold(0.0_f64, |a, &b| a.max(b));
    // Room above the tallest bar for its value and, clear of both, the legend in the corner.
    let y_max = if top > 0.0 { top * 1.3 } else { 1.0 };
    // Category i spans x in [i - 0.5, i + 0.5]; integer key points carry its label.
    let n = groups.len().max(1);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(-0.5_f64..(n as f64 - 0.5), 0.0..y_max)
        .map_err(err)?;
    let label = |x: &f64| {
        let i = x.round();
        if (x - i).abs() > 1e-6 || i < 0.0 {
            return String::new();
        }
        groups
            .get(i as usize)
            .map_or_else(String::new, |(params, _)| params.clone())
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&label)
        .y_desc(y_label)
        .y_label_formatter(&|y| number(*y))
        .draw()
        .map_err(err)?;
    let width = 0.8 / SERIES.len() as f64;
    let value_style =
        TextStyle::from(("sans-serif", 11).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    for (slot, kind) in SERIES.iter().enumerate() {
        let color = series_color(*kind);
        // Per bar: its left edge, its value.
        let bars: Vec<(f64, f64)> = groups
            .iter()
            .enumerate()
            .filter_map(|(i, (_, values))| {
                Some((i as f64 - 0.4 + slot as f64 * width, values[slot]?))
            })
            .collect();
        if bars.is_empty() {
            continue; // No legend entry for a server with nothing measured here.
        }
        let rectangles = bars.iter().map(|&(x0, value)| {
            Rectangle::new([(x0, 0.0), (x0 + width * 0.9, value)], color.filled())
        });
        chart
            .draw_series(rectangles)
            .map_err(err)?
            .label(name(*kind))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
        // The value on top of each bar: bars of very different heights stay readable.
        let labels = bars.iter().map(|&(x0, value)| {
            Text::new(
                number(value),
                (x0 + width * 0.45, value),
                value_style.clone(),
            )
        });
        chart.draw_series(labels).map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()
        .map_err(err)?;
    Ok(())
}

/// The most columns a line of the printed table takes: a terminal of 100 shows it unbroken.
pub const WIDTH: usize = 100;
/// How far the continuation lines of a check, goal or note are indented.
pub const HANG: usize = 6;

/// The servers in the order their bars stand in each group.
const SERIES: [Kind; 3] = [Kind::Chatd, Kind::Sink, Kind::Ncat];

fn series_color(kind: Kind) -> RGBColor {
    match kind {
        Kind::Chatd => RGBColor(31, 119, 180),
        Kind::Sink => RGBColor(44, 160, 44),
        Kind::Ncat => RGBColor(255, 127, 14),
    }
}
