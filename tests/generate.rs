//! `chatd --generate man|bash|zsh|fish`: the man page and the shell completions come from the same
//! clap definition as `--help`, so they name the same flags.

mod common;

use std::process::{Command, Stdio};

use common::chatd_bin;

/// The man page names every flag that `--help` names, and the hidden `--generate` in neither.
#[test]
fn man_page_names_every_flag_of_help() {
    let help = run(&["--help"]);
    let flags = help_flags(&help);
    assert!(
        flags.len() >= 15 && flags.contains(&"--listen".to_owned()),
        "too few flags read from --help: {flags:?}"
    );
    assert!(!help.contains("--generate"), "--generate is hidden");
    let man = run(&["--generate", "man"]);
    assert!(man.contains(".TH chatd 1"), "not a man page:\n{man}");
    // roff escapes a hyphen as `\-`.
    let man = man.replace("\\-", "-");
    for flag in &flags {
        assert!(man.contains(flag.as_str()), "the man page lacks {flag}");
    }
    assert!(!man.contains("--generate"));
    // --help's closing notes keep their lines (not filled into one paragraph).
    assert!(
        man.lines()
            .any(|line| line == "  /list, /kick <id>, /stats, /quit, /help"),
        "the console notes lost their layout:\n{man}"
    );
}

/// Each shell's completion script offers every long flag of `--help`; bash's parses (`bash -n`).
#[test]
fn completions_offer_every_flag_of_help() {
    let flags = help_flags(&run(&["--help"]));
    for shell in ["bash", "zsh", "fish"] {
        let script = run(&["--generate", shell]);
        for flag in flags.iter().filter(|flag| flag.starts_with("--")) {
            // fish writes `-l listen` for `--listen`.
            let name = &flag[2..];
            assert!(
                script.contains(flag.as_str()) || script.contains(&format!("-l {name}")),
                "the {shell} completions lack {flag}"
            );
        }
    }
    let checked = Command::new("bash")
        .args(["-n", "-c", &run(&["--generate", "bash"])])
        .status();
    match checked {
        Ok(status) => assert!(status.success(), "bash -n rejects the bash completions"),
        Err(e) => println!("bash not run ({e}): syntax not checked"),
    }
}

/// An unknown `--generate` value is a usage error (exit 2), not a panic.
#[test]
fn generate_rejects_an_unknown_target() {
    let output = Command::new(chatd_bin())
        .args(["--generate", "powershell"])
        .stdin(Stdio::null())
        .output()
        .expect("run chatd");
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
}

/// Runs chatd with `args`, expecting success, and returns its stdout.
#[track_caller]
fn run(args: &[&str]) -> String {
    let output = Command::new(chatd_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run chatd");
    assert!(output.status.success(), "chatd {args:?} failed: {output:?}");
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// The flags `--help` lists: each option's heading line (`  -h, --help`, `      --listen <ADDR>`).
fn help_flags(help: &str) -> Vec<String> {
    help.lines()
        .filter(|line| line.starts_with("  ") && line.trim_start().starts_with('-'))
        .flat_map(|line| {
            line.split([' ', ','])
                .filter(|word| word.starts_with('-') && word.len() > 1)
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}
