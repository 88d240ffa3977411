//! `--password-file`: the password, read from its file (never from the command line, where `ps`
//! shows it), and the constant-time check of what a client sends.
//!
//! Deliberately not here: when a client is asked or what a failure causes (`gate.rs`).

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// The password and the file it came from (read again on a headless SIGHUP).
pub struct PasswordFile {
    path: PathBuf,
    secret: Vec<u8>,
}

/// Why the password file could not be used: one line naming the file.
#[derive(Debug)]
pub struct PasswordError {
    path: PathBuf,
    why: String,
}

impl fmt::Display for PasswordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "--password-file {}: {}", self.path.display(), self.why)
    }
}

impl std::error::Error for PasswordError {}

impl PasswordFile {
    /// Reads the password: the file's first line, its line end (`\n` or `\r\n`) stripped. An
    /// empty password is refused (a client could not tell it from none).
    pub fn load(path: &Path) -> Result<PasswordFile, PasswordError> {
        let error = |why: String| PasswordError {
            path: path.to_owned(),
            why,
        };
        let bytes = std::fs::read(path).map_err(|e: io::Error| error(e.to_string()))?;
        let secret = first_line(&bytes).to_vec();
        if secret.is_empty() {
            return Err(error("the first line is empty".to_owned()));
        }
        if secret.len() > MAX_PASSWORD {
            return Err(error(format!("longer than {MAX_PASSWORD} bytes")));
        }
        Ok(PasswordFile {
            path: path.to_owned(),
            secret,
        })
    }

    /// Reads the file again; on failure the old password stays and the error is given.
    pub fn reload(&mut self) -> Result<(), PasswordError> {
        *self = PasswordFile::load(&self.path)?;
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `given` (a client's line, its line end already stripped) is the password. Takes
    /// the same time whatever `given` holds: every byte of the password is compared, and the
    /// differences are gathered without branching.
    pub fn matches(&self, given: &[u8]) -> bool {
        let mut diff = u8::from(given.len() != self.secret.len());
        for (i, &byte) in self.secret.iter().enumerate() {
            let other = given.get(i).copied().unwrap_or(0);
            diff |= std::hint::black_box(byte ^ other);
        }
        std::hint::black_box(diff) == 0
    }
}

/// `bytes` up to its first line end, without it (`\n`, `\r\n` or a lone trailing `\r`).
pub fn first_line(bytes: &[u8]) -> &[u8] {
    let line = match memchr::memchr(b'\n', bytes) {
        Some(end) => &bytes[..end],
        None => bytes,
    };
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The longest password taken; a client's line past it is wrong without more reading.
pub const MAX_PASSWORD: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    fn file(secret: &[u8]) -> PasswordFile {
        PasswordFile {
            path: PathBuf::new(),
            secret: secret.to_vec(),
        }
    }

    #[test]
    fn only_the_exact_password_matches() {
        let pw = file(b"hunter2");
        assert!(pw.matches(b"hunter2"));
        for wrong in [&b""[..], b"hunter", b"hunter22", b"Hunter2", b"hunter2\0"] {
            assert!(!pw.matches(wrong), "{wrong:?}");
        }
    }

    #[test]
    fn the_first_line_loses_its_line_end() {
        assert_eq!(first_line(b"pw\r\nnext"), b"pw");
        assert_eq!(first_line(b"pw\n"), b"pw");
        assert_eq!(first_line(b"pw"), b"pw");
        assert_eq!(first_line(b"pw\r"), b"pw");
        assert_eq!(first_line(b"\n"), b"");
    }
}
