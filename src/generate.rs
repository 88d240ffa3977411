//! `chatd --generate man|bash|zsh|fish`: the man page and the shell completions, made from the
//! clap definition in `config.rs`, so they never drift from `--help`.
//!
//! Deliberately not here: writing files or choosing where they go; that is the packager's (the
//! README's Install section shows where they usually land).

use std::io::{self, Write};

use clap::CommandFactory;
use clap_complete::{Generator, Shell};

use crate::config::{Config, Generate};

/// Writes `what` to `out`. Hidden flags (`--generate` itself) are left out of all of them.
pub fn generate(what: Generate, out: &mut dyn Write) -> io::Result<()> {
    let mut command = Config::command();
    let shell = match what {
        Generate::Man => return man_page(command, out),
        Generate::Bash => Shell::Bash,
        Generate::Zsh => Shell::Zsh,
        Generate::Fish => Shell::Fish,
    };
    // What `clap_complete::generate` does, but returning the write error instead of panicking on
    // it (a closed pipe, a full disk).
    command.set_bin_name("chatd");
    command.build();
    shell.try_generate(&command, out)
}

/// clap_mangen's sections, but the text after the options (`--help`'s closing notes on the
/// console, the reports and the signals) as it is laid out: clap_mangen fills it into paragraphs,
/// which runs its table rows together.
fn man_page(command: clap::Command, out: &mut dyn Write) -> io::Result<()> {
    let notes = command.get_after_help().map(ToString::to_string);
    let man = clap_mangen::Man::new(command);
    man.render_title(out)?;
    type Section = fn(&clap_mangen::Man, &mut dyn Write) -> io::Result<()>;
    let sections: [Section; 4] = [
        clap_mangen::Man::render_name_section,
        clap_mangen::Man::render_synopsis_section,
        clap_mangen::Man::render_description_section,
        clap_mangen::Man::render_options_section,
    ];
    for section in sections {
        write_section(&man, section, out)?;
    }
    if let Some(notes) = notes {
        writeln!(out, ".SH \"CONSOLE, REPORTS AND SIGNALS\"\n.nf")?;
        for line in notes.lines() {
            writeln!(out, "{}", roff_line(line))?;
        }
        writeln!(out, ".fi")?;
    }
    write_section(&man, clap_mangen::Man::render_version_section, out)
}

/// One section, without the preamble clap_mangen puts before each (the title has it already).
fn write_section(
    man: &clap_mangen::Man,
    section: fn(&clap_mangen::Man, &mut dyn Write) -> io::Result<()>,
    out: &mut dyn Write,
) -> io::Result<()> {
    let mut text = Vec::new();
    section(man, &mut text)?;
    for line in String::from_utf8_lossy(&text).lines() {
        if !PREAMBLE.iter().any(|preamble| line.starts_with(preamble)) {
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

/// The lines roff's writer starts every output with (a definition of the apostrophe string).
const PREAMBLE: [&str; 2] = [".ie \\n(.g .ds Aq", ".el .ds Aq"];

/// `line` as literal text in roff: backslashes and hyphens escaped, and a leading `.` or `'`
/// (which would start a request) guarded.
fn roff_line(line: &str) -> String {
    let escaped = line.replace('\\', "\\e").replace('-', "\\-");
    if escaped.starts_with(['.', '\'']) {
        format!("\\&{escaped}")
    } else {
        escaped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text that roff would read as a request or an escape is made literal.
    #[test]
    fn roff_line_makes_text_literal() {
        assert_eq!(roff_line(".quit --now"), "\\&.quit \\-\\-now");
        assert_eq!(roff_line("a\\b"), "a\\eb");
        assert_eq!(roff_line("  /to <id>"), "  /to <id>");
    }
}
