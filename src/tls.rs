//! TLS on the loop: the server's rustls configuration from `--tls-cert`/`--tls-key`, and
//! [`TlsStream`], one client's TCP socket with its `rustls::ServerConnection`, as a [`Stream`]
//! that reads and writes plaintext.
//!
//! mio is edge-triggered, so every read drains: records are read (`read_tls`) and processed
//! until the socket would block, the plaintext rustls holds is handed out first, and whatever
//! rustls wants to send (handshake flights, alerts, tickets) is pushed at once; what the socket
//! does not take keeps the client writable (`wants_write`). A peer that closes without
//! close_notify is an ordinary EOF; a fatal TLS error sends its alert and is an error (`reset`).
//!
//! Deliberately not here: admission (the handshake's deadline and its report are `gate.rs`'s and
//! the loop's), or any reporting.

use std::fmt;
use std::io::{self, BufRead, IoSlice, Read, Write};
use std::path::Path;
use std::sync::Arc;

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};

use crate::stream::Stream;

/// Why the TLS configuration could not be made: one line for the operator.
#[derive(Debug)]
pub enum SetupError {
    Cert(String),
    Key(String),
    /// rustls refused the pair (typically a key that does not match the certificate).
    Config(rustls::Error),
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::Cert(e) => write!(f, "--tls-cert: {e}"),
            SetupError::Key(e) => write!(f, "--tls-key: {e}"),
            SetupError::Config(e) => write!(f, "--tls-cert/--tls-key: {e}"),
        }
    }
}

impl std::error::Error for SetupError {}

/// Loads the certificate chain and the private key (PEM) and makes the server's configuration,
/// with the `ring` provider (the only one built).
pub fn load(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, SetupError> {
    let named = |path: &Path, e: &dyn fmt::Display| format!("{}: {e}", path.display());
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| SetupError::Cert(named(cert, &pem_error(e))))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SetupError::Cert(named(cert, &pem_error(e))))?;
    if chain.is_empty() {
        return Err(SetupError::Cert(named(cert, &"no certificate in it")));
    }
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| SetupError::Key(named(key, &pem_error(e))))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(SetupError::Config)?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(SetupError::Config)?;
    Ok(Arc::new(config))
}

/// A PEM error in words: the file's own error, or what was missing.
fn pem_error(e: rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(e) => e.to_string(),
        Error::NoItemsFound => "no PEM item of that kind in it".to_owned(),
        other => format!("not a readable PEM file ({other:?})"),
    }
}

/// One TLS client: its socket and its session. Reads and writes are plaintext.
pub struct TlsStream {
    tcp: TcpStream,
    tls: ServerConnection,
    /// The most rustls holds for sending (`set_buffer_limit`): taken from `--max-queue`.
    reserved: usize,
    /// A write to the socket failed (the peer reset it): what rustls still holds will never go
    /// out, and is not tried again (each try failed anew, and the loop, told of each failure,
    /// went round settling the client forever).
    write_failed: bool,
}

impl TlsStream {
    /// A new session on an accepted socket. `reserved` bytes of `--max-queue` go to rustls's own
    /// send buffer; the connection's queue gets the rest.
    pub fn new(
        tcp: TcpStream,
        config: &Arc<ServerConfig>,
        reserved: usize,
    ) -> Result<TlsStream, rustls::Error> {
        let mut tls = ServerConnection::new(Arc::clone(config))?;
        tls.set_buffer_limit(Some(reserved));
        Ok(TlsStream {
            tcp,
            tls,
            reserved,
            write_failed: false,
        })
    }

    pub fn is_handshaking(&self) -> bool {
        self.tls.is_handshaking()
    }

    /// Moves the handshake on: reads and processes records until the socket would block or the
    /// handshake is done, and sends what rustls wants to. `Ok(true)` once it is done.
    pub fn handshake(&mut self) -> Result<bool, HandshakeError> {
        while self.tls.is_handshaking() {
            match self.tls.read_tls(&mut self.tcp) {
                Ok(0) => return Err(HandshakeError::Closed),
                Ok(_) => {
                    if let Err(e) = self.tls.process_new_packets() {
                        let _ = self.push(); // The alert, if the socket takes it.
                        return Err(HandshakeError::Tls(e));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Err(HandshakeError::Reset),
            }
            self.push().map_err(|_| HandshakeError::Reset)?;
        }
        self.push().map_err(|_| HandshakeError::Reset)?;
        Ok(!self.tls.is_handshaking())
    }

    /// Writes what rustls has to send until it has nothing or the socket would block. The first
    /// failure is returned; after it nothing more is written.
    pub fn push(&mut self) -> io::Result<()> {
        while self.tls.wants_write() && !self.write_failed {
            match self.tls.write_tls(&mut self.tcp) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.write_failed = true;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Sends close_notify (then what is left is pushed as the socket takes it).
    pub fn close_notify(&mut self) {
        self.tls.send_close_notify();
        let _ = self.push();
    }

    /// Reads and processes records until there is plaintext, the socket would block, or it ends.
    /// Records that carry no plaintext (alerts, tickets, key updates) are taken `FILL_ROUNDS`
    /// reads at most a call: a client sending nothing else gets no more of the turn than that
    /// (its next bytes bring the next event).
    fn fill(&mut self) -> io::Result<Fill> {
        for _ in 0..FILL_ROUNDS {
            match self.tls.read_tls(&mut self.tcp) {
                Ok(0) => return Ok(Fill::Eof),
                Ok(_) => {
                    let state = self.tls.process_new_packets();
                    // Key updates and the like: answered now, or kept writable.
                    let pushed = self.push();
                    match state {
                        Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
                        Ok(state) if state.plaintext_bytes_to_read() > 0 => return Ok(Fill::Some),
                        Ok(state) if state.peer_has_closed() => return Ok(Fill::Eof),
                        Ok(_) => pushed?,
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Err(io::ErrorKind::WouldBlock.into())
    }
}

/// What `fill` found.
enum Fill {
    Some,
    Eof,
}

/// Why a handshake did not finish.
#[derive(Debug)]
pub enum HandshakeError {
    /// The client closed before it was done.
    Closed,
    /// The socket failed (typically a reset).
    Reset,
    /// rustls refused what the client sent; its alert was sent.
    Tls(rustls::Error),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Closed => f.write_str("closed during handshake"),
            HandshakeError::Reset => f.write_str("reset during handshake"),
            HandshakeError::Tls(rustls::Error::InvalidMessage(_)) => f.write_str("not TLS"),
            HandshakeError::Tls(e) => write!(f, "{e}"),
        }
    }
}

impl Read for TlsStream {
    /// Plaintext: what rustls holds first, then records read from the socket. A close_notify and
    /// a TCP EOF without one are both an EOF (`Ok(0)`); a fatal error has sent its alert.
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.tls.reader().read(buf) {
                Ok(n) => return Ok(n),
                // No close_notify: a normal close all the same (most clients never send one).
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            match self.fill()? {
                Fill::Some => {}
                // The reader now says which EOF it was.
                Fill::Eof => match self.tls.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                    Err(e) => return Err(e),
                },
            }
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    /// Encrypts what rustls's buffer limit takes and sends what the socket takes; `WouldBlock`
    /// when rustls's buffer is full.
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.push()?;
        let n = self.tls.writer().write_vectored(bufs)?;
        self.push()?;
        if n == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    /// Sends what rustls holds, as far as the socket takes it.
    fn flush(&mut self) -> io::Result<()> {
        self.push()
    }
}

impl Stream for TlsStream {
    /// Not offered: what a TLS client sent is only known once decrypted (`read_lines` looks at
    /// the plaintext rustls holds instead).
    fn peek(&self, _buf: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Plaintext as `read` gives it, but no more than `lines` whole lines: the rest stays in
    /// rustls's plaintext buffer (and, past its 16 KiB, in the socket) for a later read.
    fn read_lines(&mut self, buf: &mut [u8], lines: usize, cr: bool) -> io::Result<usize> {
        loop {
            let mut reader = self.tls.reader();
            match reader.fill_buf() {
                Ok(held) => {
                    let held = &held[..held.len().min(buf.len())];
                    let end = crate::stream::lines_end(held, lines, cr);
                    buf[..end].copy_from_slice(&held[..end]);
                    reader.consume(end);
                    return Ok(end);
                }
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            match self.fill()? {
                Fill::Some => {}
                // Nothing was held (the reader would have blocked): the end of the stream.
                Fill::Eof => return Ok(0),
            }
        }
    }

    /// close_notify, then a FIN.
    fn shutdown_write(&self) -> io::Result<()> {
        self.tcp.shutdown(std::net::Shutdown::Write)
    }

    fn unread(&self) -> usize {
        self.tcp.unread()
    }

    fn is_tls(&self) -> bool {
        true
    }

    fn has_backlog(&self) -> bool {
        self.tls.wants_write() && !self.write_failed
    }

    fn reserved(&self) -> usize {
        self.reserved
    }

    fn close_notify(&mut self) {
        TlsStream::close_notify(self);
    }
}

impl mio::event::Source for TlsStream {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.tcp.register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.tcp.reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.tcp.deregister(registry)
    }
}

/// rustls's own send buffer for a client with this `--max-queue`: part of it, at most 16 KiB.
pub fn reserved_for(max_queue: usize) -> usize {
    (max_queue / 2).clamp(1, SEND_BUFFER)
}

/// A TLS 1.0 record with a fatal handshake_failure alert: what a TLS client on the plain port gets.
pub const TLS_ALERT: &[u8] = &[0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x28];
/// A TLS 1.0 record with a fatal access_denied alert (49): what a client of a TLS listener
/// refused before its handshake (`--max-per-ip`, `--max-clients`) gets instead of the plain line.
/// An alert before any answer to its ClientHello is legitimate TLS (as `TLS_ALERT`); rustls sends
/// alerts only from a session whose handshake failed, so it is written by hand.
pub const ACCESS_DENIED_ALERT: &[u8] = &[0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x31];

const SEND_BUFFER: usize = 16 * 1024;
/// Socket reads (rustls reads at most 4 KiB at a time) a read may spend on records without
/// plaintext.
const FILL_ROUNDS: usize = 64;
