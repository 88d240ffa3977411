//! The operator's terminal as a sink for reports: simplelog's `TermLogger`, with long lines broken
//! into rows by `wrap.rs`; or, when the console is a line editor, the same lines collected for the
//! turn and handed to the editor once per turn, which draws them above the line being typed.

use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};

use log::{Level, Log, Record};
use simplelog::{TermLogger, WriteLogger};

use crate::console::Mailbox;
use crate::wrap;

/// The operator's terminal: simplelog's `TermLogger`, with lines longer than the terminal is wide
/// broken by chatd into indented rows (`wrap.rs`), so no row of a client's message can start like
/// a report. The width is asked of the terminal for each report, so a resize is followed.
pub(super) struct Terminal {
    pub(super) out: Out,
    /// How many columns the time takes, with its space.
    pub(super) stamp: usize,
}

/// Where the terminal's reports go.
pub(super) enum Out {
    /// Straight to stdout, one write per report.
    Term(Box<TermLogger>),
    /// Into the turn's text, formatted as `TermLogger` formats them (the level coloured the same
    /// way, if `colour`), and handed to the line editor at the turn's flush.
    Editor {
        logger: Box<WriteLogger<TurnText>>,
        text: TurnText,
        mailbox: &'static Mailbox,
        colour: bool,
    },
}

impl Terminal {
    pub(super) fn log(&self, record: &Record<'_>) {
        let Some(width) = terminal_width() else {
            return self.out.log(record);
        };
        let text = record.args().to_string();
        // What TermLogger writes before the text: `HH:MM:SS [LEVEL] `.
        let lead = self.stamp + record.level().as_str().len() + "[] ".len();
        match wrap::wrap(&text, lead, width) {
            None => self.out.log(record),
            Some(rows) => self.out.log(
                &Record::builder()
                    .args(format_args!("{rows}"))
                    .metadata(record.metadata().clone())
                    .module_path(record.module_path())
                    .file(record.file())
                    .line(record.line())
                    .build(),
            ),
        }
    }

    pub(super) fn flush(&self) {
        match &self.out {
            Out::Term(logger) => logger.flush(),
            Out::Editor { text, mailbox, .. } => {
                let bytes = std::mem::take(&mut *text.lock());
                if bytes.is_empty() {
                    return;
                }
                let block = String::from_utf8_lossy(&bytes);
                // Before the editor starts, and after it stops, the lines are written here.
                if !mailbox.post(&block) {
                    let mut out = io::stdout().lock();
                    let _ = out.write_all(&bytes).and_then(|()| out.flush());
                }
            }
        }
    }
}

impl Out {
    fn log(&self, record: &Record<'_>) {
        match self {
            Out::Term(logger) => logger.log(record),
            Out::Editor {
                logger,
                text,
                colour,
                ..
            } => {
                let start = text.lock().len();
                logger.log(record);
                if *colour {
                    paint_level(&mut text.lock(), start, record.level());
                }
            }
        }
    }
}

/// The level of the report written from `start` on, coloured as termcolor colours it for
/// `TermLogger` (simplelog's default colours).
fn paint_level(text: &mut Vec<u8>, start: usize, level: Level) {
    let tag = format!("[{level}]");
    let Some(at) = text
        .get(start..)
        .and_then(|line| memchr::memmem::find(line, tag.as_bytes()))
    else {
        return;
    };
    let colour: &[u8] = match level {
        Level::Error => b"\x1b[31m",
        Level::Warn => b"\x1b[33m",
        Level::Info => b"\x1b[34m",
        Level::Debug => b"\x1b[36m",
        Level::Trace => b"\x1b[37m",
    };
    let at = start + at;
    text.splice(at + tag.len()..at + tag.len(), *b"\x1b[0m");
    text.splice(at..at, colour.iter().copied());
}

/// The turn's report text for the line editor: what `WriteLogger` writes into.
#[derive(Clone, Default)]
pub(super) struct TurnText(Arc<Mutex<Vec<u8>>>);

impl TurnText {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Write for TurnText {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.lock().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// How many columns the terminal on stdout has, if it says.
fn terminal_width() -> Option<usize> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which points at a live local;
    // fd 1 is stdout, which the process holds for its whole life.
    let ok = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut size) } == 0;
    (ok && size.ws_col > 0).then_some(usize::from(size.ws_col))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_is_coloured_as_termlogger_colours_it() {
        let mut text = b"old\n12:00:00 [WARN] console: [WARN] x\n".to_vec();
        paint_level(&mut text, 4, Level::Warn);
        assert_eq!(
            text,
            b"old\n12:00:00 \x1b[33m[WARN]\x1b[0m console: [WARN] x\n".to_vec()
        );
    }
}
