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
        Generate::Man => return clap_mangen::Man::new(command).render(out),
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
