//! The operator's terminal as a sink for reports: simplelog's `TermLogger`, with long lines broken
//! into rows by `wrap.rs`.

use log::{Log, Record};
use simplelog::TermLogger;

use crate::wrap;

/// The operator's terminal: simplelog's `TermLogger`, with lines longer than the terminal is wide
/// broken by chatd into indented rows (`wrap.rs`), so no row of a client's message can start like
/// a report. The width is asked of the terminal for each report, so a resize is followed.
pub(super) struct Terminal {
    pub(super) logger: Box<TermLogger>,
    /// How many columns the time takes, with its space.
    pub(super) stamp: usize,
}

impl Terminal {
    pub(super) fn log(&self, record: &Record<'_>) {
        let Some(width) = terminal_width() else {
            return self.logger.log(record);
        };
        let text = record.args().to_string();
        // What TermLogger writes before the text: `HH:MM:SS [LEVEL] `.
        let lead = self.stamp + record.level().as_str().len() + "[] ".len();
        match wrap::wrap(&text, lead, width) {
            None => self.logger.log(record),
            Some(rows) => self.logger.log(
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
        self.logger.flush();
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
