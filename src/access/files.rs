//! The rule files: `--allow-file` and `--deny-file`, one block per line, read at start and on
//! SIGHUP; the only I/O of `access`.
//!
//! Deliberately not here: what a block matches (`access.rs`).

use std::fmt;
use std::path::{Path, PathBuf};

use super::{Cidr, CidrError, Rules};

/// Where the rules come from, kept so that SIGHUP can read the files again.
#[derive(Debug, Clone, Default)]
pub struct RuleSource {
    pub allow: Vec<Cidr>,
    pub deny: Vec<Cidr>,
    pub allow_file: Option<PathBuf>,
    pub deny_file: Option<PathBuf>,
}

impl RuleSource {
    /// Whether there is a file to read again.
    pub fn has_files(&self) -> bool {
        self.allow_file.is_some() || self.deny_file.is_some()
    }

    /// The command line's blocks and the files' together; the first bad file or entry is the
    /// error, and nothing is taken from any.
    pub fn load(&self) -> Result<Rules, RuleError> {
        let (mut allow, mut deny) = (self.allow.clone(), self.deny.clone());
        for (flag, path, list) in [
            ("--allow-file", &self.allow_file, &mut allow),
            ("--deny-file", &self.deny_file, &mut deny),
        ] {
            let Some(path) = path else { continue };
            let fail = |line, problem| RuleError {
                flag,
                path: path.clone(),
                line,
                problem,
            };
            let text = read_capped(path).map_err(|e| fail(None, Problem::Unreadable(e)))?;
            let blocks = parse_list(&text).map_err(|(line, entry, error)| {
                fail(Some(line), Problem::Entry(shorten(entry), error))
            })?;
            list.extend(blocks);
        }
        Ok(Rules {
            allow: allow.into(),
            deny: deny.into(),
        })
    }
}

/// A rule file's text, if it is a regular file, UTF-8 and at most `MAX_RULE_FILE` bytes.
fn read_capped(path: &Path) -> Result<String, String> {
    use std::io::Read;
    let mut text = String::new();
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    // A FIFO or a device could keep the loop waiting (on SIGHUP too): only a regular file is read.
    if !file.metadata().map_err(|e| e.to_string())?.is_file() {
        return Err("not a regular file".into());
    }
    let limit = MAX_RULE_FILE as u64;
    file.take(limit + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() > MAX_RULE_FILE {
        return Err(format!("longer than {MAX_RULE_FILE} bytes"));
    }
    Ok(text)
}

/// The longest rule file read: a blocklist of about a million entries. A longer one is a mistake
/// (say, a path to the wrong file), refused before it can take the server's memory.
const MAX_RULE_FILE: usize = 16 << 20;

/// A rule file's blocks: one per line, `#` to the end of a line a comment, blank lines skipped,
/// spaces around an entry ignored. The error is the first bad entry with its line number (from 1).
pub fn parse_list(text: &str) -> Result<Vec<Cidr>, (usize, &str, CidrError)> {
    let mut blocks = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let entry = line.split('#').next().unwrap_or("").trim();
        if entry.is_empty() {
            continue;
        }
        blocks.push(entry.parse().map_err(|e| (index + 1, entry, e))?);
    }
    Ok(blocks)
}

/// A bad entry as the error shows it: at most 64 characters, quoted and escaped by `Debug`.
fn shorten(entry: &str) -> String {
    entry.chars().take(64).collect()
}

/// A rule file that could not be read or has a bad entry: `--deny-file PATH:LINE: bad entry
/// "X": REASON`.
#[derive(Debug, Clone)]
pub struct RuleError {
    flag: &'static str,
    path: PathBuf,
    line: Option<usize>,
    problem: Problem,
}

#[derive(Debug, Clone)]
enum Problem {
    Unreadable(String),
    Entry(String, CidrError),
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (flag, path) = (self.flag, Path::display(&self.path));
        match (&self.problem, self.line) {
            (Problem::Entry(entry, error), Some(line)) => {
                write!(f, "{flag} {path}:{line}: bad entry {entry:?}: {error}")
            }
            (Problem::Entry(entry, error), None) => {
                write!(f, "{flag} {path}: bad entry {entry:?}: {error}")
            }
            (Problem::Unreadable(error), _) => write!(f, "{flag} {path}: cannot read: {error}"),
        }
    }
}

impl std::error::Error for RuleError {}
