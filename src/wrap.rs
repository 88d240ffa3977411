//! Report lines made to fit the operator's terminal: a line longer than the terminal is wide is
//! broken by chatd into rows, and every row after the first is indented, so no row of a message a
//! client sent can start like a report (`HH:MM:SS [INFO] ...`), however it is padded.
//!
//! Pure and a leaf: the caller says how wide the terminal is. Pipes and the log file never come
//! here: they keep one line per report, which is what tools rely on.

use unicode_width::UnicodeWidthChar;

/// What starts every row after a report's first.
pub const INDENT: &str = "    ";
/// The terminal's tab stops.
const TAB: usize = 8;

/// `text` broken into rows for a terminal `width` columns wide, when its first row starts after a
/// prefix `lead` columns wide (the time and level the logger writes); `None` if it fits as it is.
///
/// Rows are filled to one column short of the width, so that the terminal never wraps a row
/// itself, and broken after a space when one is near the end of the row (else between any two
/// characters): wherever a row breaks, the next starts with `INDENT`. A
/// character's width is its East Asian width, ambiguous ones counted as two, and the Hangul
/// fillers, which Unicode calls zero-width but terminals draw blank and wide, as two, so that a
/// row is never wider on screen than counted (counting too much only breaks a row early).
pub fn wrap(text: &str, lead: usize, width: usize) -> Option<String> {
    let room = width.saturating_sub(1).max(lead + INDENT.len() + 1);
    let columns = |c: char| match c {
        '\u{115f}' | '\u{1160}' | '\u{3164}' | '\u{ffa0}' => 2,
        _ => c.width_cjk().unwrap_or(0),
    };
    // A tab moves to the next multiple of 8 columns: counted so, and written as spaces when the
    // line is broken (a tab must not carry text into a row's last column).
    let mut end = lead;
    for c in text.chars() {
        end += if c == '\t' {
            TAB - end % TAB
        } else {
            columns(c)
        };
    }
    if end <= room {
        return None;
    }
    let mut out = String::with_capacity(text.len() + text.len() / 8 + 16);
    let mut used = lead;
    // Where the current row's last space ends in `out`, if it has one.
    let mut after_space = None;
    for c in text.chars() {
        if c == '\t' {
            let spaces = TAB - used % TAB;
            if used + spaces > room {
                out.push('\n');
                out.push_str(INDENT);
                used = INDENT.len();
                after_space = None;
                continue;
            }
            out.extend(std::iter::repeat_n(' ', spaces));
            used += spaces;
            after_space = Some(out.len());
            continue;
        }
        let w = columns(c);
        if used + w > room {
            // Break after the row's last space if what follows it is at most half a row (a word,
            // moved whole to the next row), else here.
            let tail = match after_space {
                Some(at) if out[at..].chars().map(columns).sum::<usize>() <= room / 2 => {
                    out.split_off(at)
                }
                _ => String::new(),
            };
            out.push('\n');
            out.push_str(INDENT);
            after_space = None;
            used = INDENT.len() + tail.chars().map(columns).sum::<usize>();
            out.push_str(&tail);
        }
        out.push(c);
        used += w;
        if c == ' ' {
            after_space = Some(out.len());
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(text: &str, lead: usize, width: usize) -> Vec<String> {
        wrap(text, lead, width)
            .unwrap_or_else(|| text.to_owned())
            .split('\n')
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn a_line_that_fits_is_left_alone() {
        assert_eq!(wrap("message 1.2.3.4:5 #1: hi", 16, 80), None);
        assert_eq!(wrap(&"x".repeat(63), 16, 80), None);
        assert!(wrap(&"x".repeat(64), 16, 80).is_some());
    }

    #[test]
    fn every_row_fits_and_every_row_after_the_first_is_indented() {
        let forged = format!(
            "message 127.0.0.1:5 #1: {}00:10:42 [INFO] disconnect",
            " ".repeat(300)
        );
        for width in 40..=250 {
            let rows = rows(&forged, 16, width);
            assert!(rows.len() > 1);
            assert!(16 + rows[0].chars().count() < width);
            for row in &rows[1..] {
                assert!(row.starts_with(INDENT), "at {width}: {row:?}");
                assert!(row.chars().count() < width, "at {width}: {row:?}");
            }
        }
    }

    /// U+3164 HANGUL FILLER is zero-width to Unicode and two columns on tmux's screen: 58 of
    /// them counted as nothing let the terminal wrap the row itself, and the text after them
    /// started a row like a report.
    #[test]
    fn hangul_fillers_count_as_wide() {
        for filler in ['\u{115f}', '\u{1160}', '\u{3164}', '\u{ffa0}'] {
            let padding: String = std::iter::repeat_n(filler, 58).collect();
            let forged = format!("message 1.2.3.4:5 #1: {padding}08:00:00 [INFO] stopped");
            let rows = rows(&forged, 16, 80);
            assert!(rows.len() > 1, "{filler:?}");
            let on_screen =
                |row: &str| -> usize { row.chars().map(|c| if c == filler { 2 } else { 1 }).sum() };
            assert!(16 + on_screen(&rows[0]) < 80, "{filler:?}");
            for row in &rows[1..] {
                assert!(row.starts_with(INDENT), "{filler:?}: {row:?}");
                assert!(on_screen(row) < 80, "{filler:?}: {row:?}");
            }
        }
    }

    #[test]
    fn words_are_kept_whole_where_they_can_be() {
        let text = "message 127.0.0.1:5000 #1: the quick brown fox jumps over the lazy dog again";
        let rows = rows(text, 16, 60);
        assert_eq!(rows[0], "message 127.0.0.1:5000 #1: the quick brown ");
        assert_eq!(rows[1], "    fox jumps over the lazy dog again");
    }

    #[test]
    fn tabs_count_to_the_next_tab_stop() {
        let forged = format!(
            "message 1.2.3.4:5 #1: {}x00:10:42 [INFO] disconnect",
            "\t".repeat(10)
        );
        for width in 40..=120 {
            let rows = rows(&forged, 16, width);
            assert!(rows.len() > 1, "at {width}");
            assert!(
                !rows[0].contains('\t') && 16 + rows[0].chars().count() < width,
                "at {width}"
            );
            assert!(
                rows[1..].iter().all(|row| row.starts_with(INDENT)),
                "at {width}"
            );
        }
    }

    #[test]
    fn wide_characters_count_two_columns() {
        let text = "你".repeat(50);
        for row in rows(&text, 16, 40).iter().skip(1) {
            let columns: usize = row.chars().map(|c| c.width_cjk().unwrap_or(0)).sum();
            assert!(columns < 40, "{row:?} is {columns} columns");
        }
        assert_eq!(rows(&text, 16, 40).concat().replace(INDENT, ""), text);
    }
}
