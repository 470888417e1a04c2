//! `attach`'s live view. On a terminal, a table redrawn in place on the
//! alternate screen (ratatui over crossterm), as top and bpftop do: one row
//! per segment with its count, p50, p99 and coverage over the last interval
//! and since the start; `q` or Ctrl-C ends the session. Elsewhere, or with
//! `--quiet`, a plain line per interval.

use std::io::{self, Stdout, Write as _};

use ratatui::{
    Terminal,
    backend::CrosstermBackend,
    crossterm::{
        event::{self, Event, KeyCode, KeyEventKind, KeyModifiers},
        execute,
        terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode},
    },
    layout::{Constraint, Layout},
    style::{Modifier, Style},
    text::Line,
    widgets::{Cell, Row, Table},
};
use tokio::sync::mpsc;

use crate::{
    path::Direction,
    report::{Latency, Report, Segment, format_ns},
};

/// How a session shows itself while it runs.
pub enum LiveView {
    /// The table, and what tells the session to stop.
    Table(Terminal<CrosstermBackend<Stdout>>),
    Lines,
}

impl LiveView {
    /// The table on the terminal, with a receiver that gets a message when
    /// `q`, Esc or Ctrl-C is pressed (raw mode turns Ctrl-C into a key).
    pub fn table() -> io::Result<(Self, mpsc::UnboundedReceiver<()>)> {
        enable_raw_mode()?;
        let mut stdout = io::stdout();
        if let Err(error) = execute!(stdout, EnterAlternateScreen) {
            disable_raw_mode()?;
            return Err(error);
        }
        let mut terminal = Terminal::new(CrosstermBackend::new(stdout))?;
        terminal.hide_cursor()?;
        let (stop, stopped) = mpsc::unbounded_channel();
        // Keys are read on a thread of their own: crossterm's read blocks.
        std::thread::spawn(move || {
            while let Ok(event) = event::read() {
                if let Event::Key(key) = event
                    && key.kind == KeyEventKind::Press
                    && (matches!(key.code, KeyCode::Char('q') | KeyCode::Esc)
                        || (key.code == KeyCode::Char('c')
                            && key.modifiers.contains(KeyModifiers::CONTROL)))
                    && stop.send(()).is_err()
                {
                    break;
                }
            }
        });
        Ok((Self::Table(terminal), stopped))
    }

    /// Shows the last interval's breakdown beside the session's so far.
    pub fn show(&mut self, interval: &Report, total: &Report) -> io::Result<()> {
        match self {
            Self::Table(terminal) => {
                terminal.draw(|frame| {
                    let [title, table] =
                        Layout::vertical([Constraint::Length(2), Constraint::Fill(1)])
                            .areas(frame.area());
                    frame.render_widget(Line::from(title_text(interval, total)), title);
                    frame.render_widget(segment_table(interval, total), table);
                })?;
                Ok(())
            }
            Self::Lines => writeln!(io::stdout().lock(), "{}", plain_line(interval, total)),
        }
    }

    /// Gives the terminal back as it was.
    pub fn finish(self) -> io::Result<()> {
        if let Self::Table(mut terminal) = self {
            terminal.show_cursor()?;
            execute!(terminal.backend_mut(), LeaveAlternateScreen)?;
            disable_raw_mode()?;
        }
        Ok(())
    }
}

fn title_text(interval: &Report, total: &Report) -> String {
    let netns = total
        .netns
        .as_deref()
        .map(|netns| format!(" in {netns}"))
        .unwrap_or_default();
    format!(
        "netprobe on {}{netns}: {:.0} s, last {:.1} s on the left, since the start on the right. q or Ctrl-C: stop",
        total.interface, total.duration_s, interval.duration_s
    )
}

const COLUMNS: [&str; 9] = [
    "segment", "count", "p50", "p99", "coverage", "count", "p50", "p99", "coverage",
];

/// A row per segment, by direction, then each direction's end to end.
fn segment_table<'a>(interval: &'a Report, total: &'a Report) -> Table<'a> {
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let mut rows = Vec::new();
    for direction in Direction::BOTH {
        rows.push(Row::new([Cell::from(direction.describe())]).style(bold));
        for segment in total.segments(direction) {
            let last = interval.segments(direction).find(|each| {
                each.from == segment.from && each.to == segment.to && each.pod == segment.pod
            });
            rows.push(Row::new(segment_cells(segment, last)));
        }
        for end in total
            .end_to_end
            .iter()
            .filter(|end| end.direction == direction)
        {
            let last = interval
                .end_to_end
                .iter()
                .find(|each| each.direction == direction);
            let mut cells = vec!["  end to end".to_owned()];
            cells.extend(latency_cells(last.map(|last| &last.latency), None));
            cells.extend(latency_cells(Some(&end.latency), None));
            rows.push(Row::new(cells));
        }
    }
    let names = total
        .segments
        .iter()
        .map(|segment| segment.from.len() + segment.to.len() + 7)
        .max()
        .unwrap_or(0)
        .max(COLUMNS[0].len());
    let widths = [Constraint::Length(names as u16)]
        .into_iter()
        .chain([Constraint::Length(9); 8]);
    Table::new(rows, widths)
        .header(Row::new(COLUMNS).style(bold))
        .column_spacing(1)
}

fn segment_cells(segment: &Segment, last: Option<&Segment>) -> Vec<String> {
    let mut cells = vec![format!("  {} -> {}", segment.from, segment.to)];
    cells.extend(latency_cells(
        last.map(|last| &last.latency),
        last.and_then(|last| last.coverage),
    ));
    cells.extend(latency_cells(Some(&segment.latency), segment.coverage));
    cells
}

/// Count, p50, p99 and coverage; blank where nothing was counted.
fn latency_cells(latency: Option<&Latency>, coverage: Option<f64>) -> [String; 4] {
    let coverage =
        coverage.map_or_else(String::new, |coverage| format!("{:.0}%", coverage * 100.0));
    match latency {
        Some(latency) if latency.count > 0 => [
            latency.count.to_string(),
            format_ns(latency.p50_ns),
            format_ns(latency.p99_ns),
            coverage,
        ],
        _ => ["0".to_owned(), String::new(), String::new(), coverage],
    }
}

/// "[12s] ingress p50 31.2us p99 80.1us n=1200 (last 1.0s: p50 ... n=100), egress ...".
fn plain_line(interval: &Report, total: &Report) -> String {
    let directions: Vec<String> = total
        .end_to_end
        .iter()
        .map(|end| {
            let last = interval
                .end_to_end
                .iter()
                .find(|each| each.direction == end.direction);
            let last = last.map_or_else(String::new, |last| {
                format!(
                    " (last {:.1}s: p50 {} p99 {} n={})",
                    interval.duration_s,
                    format_ns(last.latency.p50_ns),
                    format_ns(last.latency.p99_ns),
                    last.latency.count
                )
            });
            format!(
                "{} p50 {} p99 {} n={}{last}",
                end.direction.name(),
                format_ns(end.latency.p50_ns),
                format_ns(end.latency.p99_ns),
                end.latency.count
            )
        })
        .collect();
    format!("[{:.0}s] {}", total.duration_s, directions.join(", "))
}
