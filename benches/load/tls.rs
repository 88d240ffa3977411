//! The TLS rows: chatd with a `--tls-listen` listener and a certificate made by `openssl req` in
//! the row's directory, driven by rustls clients (the `ring` provider, as chatd's): ingest beside
//! the plain ingest rows, a hold of idle TLS clients with chatd's memory per client, and full
//! handshakes per second from parallel clients.
//!
//! The clients run on threads with blocking sockets: rustls's `StreamOwned`. They share the
//! machine's cores with chatd, and a TLS client costs about as much CPU as the server's side of
//! it, so these rows measure chatd and its clients together more than the plain rows do.
//!
//! Deliberately not here: the plain scenarios (`scenarios.rs`) or printing (`report.rs`).

use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

use crate::clients::end_line;
use crate::report::{Row, Status};
use crate::report_lines;
use crate::targets::{Chatd, POLL_FILE, Target};

/// What a TLS row does.
#[derive(Debug, Clone, Copy)]
pub enum TlsLoad {
    /// `clients` TLS clients send `total_lines` lines of `line_len` bytes between them, flat out.
    Ingest {
        clients: usize,
        line_len: usize,
        total_lines: u64,
    },
    /// `clients` TLS clients connect, finish the handshake, read the greeting and stay idle.
    Hold { clients: usize },
    /// `workers` clients connect, shake hands, read the greeting and close, in a loop.
    Handshakes { workers: usize, duration: Duration },
}

impl TlsLoad {
    pub fn params(&self) -> String {
        match self {
            TlsLoad::Ingest {
                clients, line_len, ..
            } => format!("ingest C={clients} {line_len}B"),
            TlsLoad::Hold { clients } => format!("hold N={clients}"),
            TlsLoad::Handshakes { workers, .. } => format!("handshakes P={workers}"),
        }
    }
}

/// Runs one TLS row against a fresh chatd in `dir`.
pub fn run(load: TlsLoad, dir: &Path, budget: Duration, row: &mut Row) {
    let (chatd, tls_addr) = match start(dir) {
        Ok(started) => started,
        Err(e) => return row.end(Status::Failed, format!("chatd did not start: {e}")),
    };
    let config = client_config();
    let mut target = Target::Chatd(chatd);
    match load {
        TlsLoad::Ingest {
            clients,
            line_len,
            total_lines,
        } => {
            let per_client = (total_lines / clients as u64).max(1);
            ingest(
                &mut target,
                tls_addr,
                &config,
                (clients, line_len, per_client),
                budget,
                row,
            );
        }
        TlsLoad::Hold { clients } => hold(&mut target, tls_addr, &config, clients, budget, row),
        TlsLoad::Handshakes { workers, duration } => {
            handshakes(&mut target, tls_addr, &config, workers, duration, row);
        }
    }
}

/// Lines/s from the first connect (handshakes included) until chatd reported the last line.
fn ingest(
    target: &mut Target,
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    (clients, line_len, per_client): (usize, usize, u64),
    budget: Duration,
    row: &mut Row,
) {
    let expected = per_client * clients as u64;
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let cpu_before = target.cpu();
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|client| {
            let (config, stop, failures) = (config.clone(), stop.clone(), failures.clone());
            thread::spawn(move || {
                let sent = send_lines(addr, &config, client, line_len, per_client, &stop);
                if let Err(_e) = sent {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let outcome = loop {
        if target.lines_taken(line_len) >= expected {
            break Ok(start.elapsed());
        }
        if start.elapsed() >= budget {
            break Err(Status::Timeout);
        }
        if let Some(why) = target.exited() {
            row.note(why);
            break Err(Status::Failed);
        }
        thread::sleep(POLL_FILE);
    };
    let cpu = target
        .cpu()
        .zip(cpu_before)
        .map(|(a, b)| (a - b).as_secs_f64());
    let taken = target.lines_taken(line_len);
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        let _ = thread.join();
    }
    let failed = failures.load(Ordering::Relaxed);
    if failed > 0 {
        row.note(format!("{failed} clients failed"));
    }
    let elapsed = match outcome {
        Ok(elapsed) => elapsed,
        Err(status) => return row.end(status, format!("{taken} of {expected} lines taken")),
    };
    let seconds = elapsed.as_secs_f64();
    row.figure("lines_per_s", expected as f64 / seconds, "lines/s");
    row.figure(
        "mb_per_s",
        (expected * line_len as u64) as f64 / 1e6 / seconds,
        "MB/s",
    );
    if let Some(cpu) = cpu {
        row.figure(
            "cpu_s_per_m_lines",
            cpu / (expected as f64 / 1e6),
            "CPU-s/M-lines",
        );
    }
    row.figure("seconds", seconds, "s");
    if let Target::Chatd(chatd) = target {
        let counts = &chatd.log.counts;
        row.check(
            counts.messages == expected,
            format!("message reports: {} of {expected}", counts.messages),
        );
        row.check(
            counts.ends == clients as u64,
            format!("END markers reported: {} of {clients} clients", counts.ends),
        );
    }
}

/// One ingest client: connects, reads the greeting, sends its lines (the last one with its END
/// marker), then waits for the row to end.
fn send_lines(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    client: usize,
    line_len: usize,
    lines: u64,
    stop: &AtomicBool,
) -> io::Result<()> {
    let mut stream = connect(addr, config)?;
    let mut line = vec![b'x'; line_len];
    line[line_len - 1] = b'\n';
    let chunk: Vec<u8> = line.repeat(CHUNK_LINES);
    let mut left = lines.saturating_sub(1);
    while left > 0 {
        let n = left.min(CHUNK_LINES as u64) as usize;
        stream.write_all(&chunk[..n * line_len])?;
        left -= n as u64;
    }
    stream.write_all(&end_line(client, line_len))?;
    stream.flush()?;
    while !stop.load(Ordering::Relaxed) {
        thread::sleep(POLL_FILE);
    }
    Ok(())
}

/// Connects `clients` TLS clients from a few threads, each kept idle after its greeting (only its
/// socket: the client's own TLS state is dropped), and reports chatd's RSS per client.
fn hold(
    target: &mut Target,
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    clients: usize,
    budget: Duration,
    row: &mut Row,
) {
    let idle_rss = target.rss();
    let deadline = Instant::now() + budget;
    let start = Instant::now();
    let per_thread = clients.div_ceil(HOLD_THREADS);
    let threads: Vec<_> = (0..HOLD_THREADS)
        .map(|t| {
            let config = config.clone();
            let count = per_thread.min(clients.saturating_sub(t * per_thread));
            thread::spawn(move || {
                let mut held = Vec::with_capacity(count);
                let mut failed = 0;
                for _ in 0..count {
                    if Instant::now() >= deadline {
                        break;
                    }
                    match connect(addr, &config) {
                        Ok(stream) => held.push(stream.sock),
                        Err(_) => failed += 1,
                    }
                }
                (held, failed)
            })
        })
        .collect();
    let mut held = Vec::with_capacity(clients);
    let mut failed = 0;
    for thread in threads {
        if let Ok((streams, f)) = thread.join() {
            held.extend(streams);
            failed += f;
        }
    }
    let elapsed = start.elapsed();
    if failed > 0 {
        row.note(format!("{failed} clients failed to connect"));
    }
    let served = held.len();
    if let Target::Chatd(chatd) = target {
        while chatd.log.counts.connects < served as u64 && Instant::now() < deadline {
            chatd.log.catch_up();
            thread::sleep(POLL_FILE);
        }
        let connects = chatd.log.counts.connects;
        row.check(
            connects == served as u64,
            format!("connect reports: {connects} of {served}"),
        );
    }
    row.check(
        served == clients,
        format!("greeted over TLS: {served} of {clients}"),
    );
    if served == 0 {
        return row.end(Status::Failed, "no client was served");
    }
    row.figure(
        "clients_per_s",
        served as f64 / elapsed.as_secs_f64(),
        "clients/s",
    );
    if let (Some(idle), Some(full)) = (idle_rss, target.rss()) {
        let per_client = full.saturating_sub(idle) as f64 / served as f64 / 1024.0;
        row.figure("rss_kib_per_client", per_client, "KiB/client");
        row.figure("rss_mib", full as f64 / (1 << 20) as f64, "MiB-RSS");
    }
    drop(held);
}

/// Full handshakes a second: `workers` clients connect, shake hands, read the greeting and close,
/// over and over for `duration`; chatd must report every one come and go.
fn handshakes(
    target: &mut Target,
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
    workers: usize,
    duration: Duration,
    row: &mut Row,
) {
    let start = Instant::now();
    let end = start + duration;
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let config = config.clone();
            thread::spawn(move || {
                let (mut done, mut failed) = (0u64, 0u64);
                while Instant::now() < end {
                    match connect(addr, &config) {
                        Ok(_) => done += 1,
                        Err(_) => failed += 1,
                    }
                }
                (done, failed)
            })
        })
        .collect();
    let (mut done, mut failed) = (0, 0);
    for thread in threads {
        if let Ok((d, f)) = thread.join() {
            done += d;
            failed += f;
        }
    }
    let elapsed = start.elapsed();
    if failed > 0 {
        row.note(format!("{failed} handshakes failed"));
    }
    if done == 0 {
        return row.end(Status::Failed, "no handshake completed");
    }
    row.figure(
        "handshakes_per_s",
        done as f64 / elapsed.as_secs_f64(),
        "handshakes/s",
    );
    row.figure("connections", done as f64, "connections");
    if let Target::Chatd(chatd) = target {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            chatd.log.catch_up();
            let c = &chatd.log.counts;
            if (c.connects >= done && c.disconnects >= done) || Instant::now() >= deadline {
                break;
            }
            thread::sleep(POLL_FILE);
        }
        let c = &chatd.log.counts;
        row.check(
            c.connects == done && c.disconnects == done,
            format!(
                "reports for {done} connections: {} connect, {} disconnect",
                c.connects, c.disconnects
            ),
        );
    }
}

/// One TLS client: connected, handshake done, greeting read.
fn connect(
    addr: SocketAddr,
    config: &Arc<ClientConfig>,
) -> io::Result<StreamOwned<ClientConnection, TcpStream>> {
    let tcp = TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let _ = tcp.set_nodelay(true);
    let name = ServerName::try_from("localhost").map_err(io::Error::other)?;
    let conn = ClientConnection::new(Arc::clone(config), name).map_err(io::Error::other)?;
    let mut stream = StreamOwned::new(conn, tcp);
    let mut greeting = Vec::new();
    let mut reader = BufReader::new(&mut stream);
    reader.read_until(b'\n', &mut greeting)?;
    if !greeting.starts_with(b"welcome") {
        return Err(io::Error::other("no greeting"));
    }
    Ok(stream)
}

/// Makes the row's certificate and starts chatd with a TLS listener; gives it and the TLS address.
fn start(dir: &Path) -> io::Result<(Chatd, SocketAddr)> {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    if !status.success() {
        return Err(io::Error::other("openssl req failed"));
    }
    let (cert, key) = (cert.to_string_lossy(), key.to_string_lossy());
    let args = [
        "--tls-listen",
        "127.0.0.1:0",
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
    ];
    let chatd = Chatd::spawn(dir, &args)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(dir.join("stdout.log")).unwrap_or_default();
        let tls = text
            .lines()
            .filter(|line| line.ends_with(" tls"))
            .find_map(report_lines::listening_addr);
        if let Some(addr) = tls {
            return Ok((chatd, addr));
        }
        if Instant::now() >= deadline {
            return Err(io::Error::other("no TLS `listening on` line"));
        }
        thread::sleep(POLL_FILE);
    }
}

/// A client configuration that takes chatd's self-signed certificate without checking it (the
/// row measures the server; the tests verify with socat) but checks its signatures.
fn client_config() -> Arc<ClientConfig> {
    let provider = Arc::new(ring::default_provider());
    let verifier = Arc::new(AnyCertificate(Arc::clone(&provider)));
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|builder| {
            builder
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth()
        });
    // The ring provider supports the default versions: this cannot fail.
    Arc::new(config.unwrap_or_else(|e| panic!("client config: {e}")))
}

#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        let algorithms = &self.0.signature_verification_algorithms;
        rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Lines an ingest client writes at a time.
const CHUNK_LINES: usize = 256;
/// Threads that connect the hold row's clients.
const HOLD_THREADS: usize = 8;
