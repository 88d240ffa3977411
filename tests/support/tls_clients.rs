//! TLS test helpers: a certificate made with `openssl req`, chatd with a TLS listener, and an
//! external client program (`openssl s_client`, `ncat`, `socat`) on pipes.
//!
//! Included with `#[path]` by the test files that need it, after `mod common;`.

#![allow(dead_code)] // Each test binary uses its own part.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::Instant;

use crate::common::{Chatd, WAIT, report_lines};

/// Starts chatd with a plain listener and a TLS one; gives the TLS listener's address.
#[track_caller]
pub fn spawn_tls(certs: &Certs, more: &[&str]) -> (Chatd, SocketAddr) {
    let (cert, key) = (certs.cert.to_str().unwrap(), certs.key.to_str().unwrap());
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
    ];
    args.extend_from_slice(more);
    let mut chatd = Chatd::spawn_with(&args, Stdio::piped());
    let line = chatd.expect_report("listening on ");
    assert!(line.ends_with(" tls"), "{line}");
    let addr = report_lines::listening_addr(&line).expect("the TLS listener's address");
    (chatd, addr)
}

/// A self-signed certificate for 127.0.0.1 and its key, made by `openssl req` in a directory of
/// the test's own.
pub struct Certs {
    pub dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Certs {
    #[track_caller]
    pub fn new(name: &str) -> Certs {
        let dir = std::env::temp_dir().join(format!("chatd-tls-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        let status = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
            .args(["-subj", "/CN=localhost"])
            .args(["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run openssl (install it: .ci/run does)");
        assert!(status.success(), "openssl req failed");
        Certs { dir, cert, key }
    }
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// An external client program on pipes: lines to its stdin, its stdout's lines read with a
/// deadline. Killed on drop.
pub struct Tool {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Tool {
    /// `openssl s_client -quiet` (without -quiet, lines starting with Q or R are commands).
    #[track_caller]
    pub fn s_client(addr: SocketAddr) -> Tool {
        Tool::spawn(
            "openssl",
            &["s_client", "-quiet", "-connect", &addr.to_string()],
        )
    }

    #[track_caller]
    pub fn spawn(program: &str, args: &[&str]) -> Tool {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("run {program} (install it: .ci/run does): {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = crate::common::lines_of(stdout);
        let stdin = child.stdin.take();
        Tool {
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    /// Sends `bytes` as they are (telnet commands, a `CR NUL`).
    #[track_caller]
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).expect("write to the client");
        stdin.flush().expect("flush");
    }

    #[track_caller]
    pub fn send_line(&mut self, text: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{text}").expect("write to the client");
        stdin.flush().expect("flush");
    }

    /// Waits for an output line containing `needle`.
    #[track_caller]
    pub fn expect_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no line with {needle:?}; seen {:?}", self.seen),
            }
        }
    }

    /// Waits until its output ends (the server closed it), and gives what it printed.
    #[track_caller]
    pub fn wait_gone(&mut self) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => return self.seen.clone(),
                Err(_) => panic!("still open; seen {:?}", self.seen),
            }
        }
    }

    /// Closes its stdin (end of input).
    pub fn close_input(&mut self) {
        self.stdin = None;
    }
}

impl Drop for Tool {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
