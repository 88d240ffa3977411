//! The `--metrics` listener: HTTP on the loop's own poll, answering `GET /metrics` with the
//! Prometheus text of a [`Stats`] snapshot the loop takes for each request, and nothing else.
//!
//! A scrape is one request and one answer: the request is read up to `MAX_REQUEST` bytes and
//! parsed with httparse (nothing here reads HTTP by hand), the answer is written, and the
//! connection closed (`Connection: close`). Other paths get 404, other methods 405, a request
//! httparse rejects 400, one too large 431. The same kinds of limits as for clients: at most
//! `MAX_SCRAPES` connections at once (more are closed at once), `MAX_REQUEST` bytes held for a
//! request, and `SCRAPE_TIMEOUT` to finish (the loop's `Due::Scrape` timer) before the connection
//! is dropped.
//!
//! Deliberately not here: the figures themselves (`stats.rs`, taken by the loop), or any thread:
//! nobody scraping costs nothing but the registered listener.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use slab::Slab;

use crate::report;
use crate::stats::Stats;

pub struct Metrics {
    listener: TcpListener,
    /// Open scrapes; slot `k` is registered as `Token(SCRAPE_BASE + k)`.
    scrapes: Slab<Scrape>,
    /// The id the next scrape gets: a timer names its scrape by slot and id, as for clients.
    next_id: u64,
}

/// One scrape connection: the request read so far, then the answer being written.
struct Scrape {
    stream: TcpStream,
    id: u64,
    request: Vec<u8>,
    /// Empty while the request is read; then the whole answer, written from `written` on.
    answer: Vec<u8>,
    written: usize,
}

/// What the loop does after a scrape's event.
pub enum After {
    /// Nothing more this turn.
    Wait,
    /// The request is whole: answer it with a snapshot (`answer`).
    WantsStats(usize),
}

impl Metrics {
    /// Binds `addr`, registers it with the poll and reports `metrics on ADDR`.
    pub fn bind(addr: SocketAddr, registry: &Registry) -> io::Result<Metrics> {
        Metrics::serve(TcpListener::bind(addr)?, registry)
    }

    /// Serves `listener` (the socket systemd passed as `metrics`, already listening and
    /// non-blocking) as [`Metrics::bind`] serves its own: registered, reported `metrics on ADDR`.
    pub fn adopt(listener: std::net::TcpListener, registry: &Registry) -> io::Result<Metrics> {
        Metrics::serve(TcpListener::from_std(listener), registry)
    }

    fn serve(mut listener: TcpListener, registry: &Registry) -> io::Result<Metrics> {
        registry.register(&mut listener, LISTENER, Interest::READABLE)?;
        report::metrics_listening(listener.local_addr()?);
        Ok(Metrics {
            listener,
            scrapes: Slab::new(),
            next_id: 1,
        })
    }

    /// Whether `token` is the metrics listener's or a scrape's.
    pub fn owns(token: Token) -> bool {
        token.0 >= LISTENER.0
    }

    /// The scrape slot of `token`, or `None` for the listener.
    pub fn scrape_of(token: Token) -> Option<usize> {
        token.0.checked_sub(SCRAPE_BASE)
    }

    /// Accepts every waiting connection (mio is edge-triggered); past `MAX_SCRAPES` open ones, a
    /// connection is closed at once. Gives the (slot, id) of each new scrape, for its timer.
    pub fn accept(&mut self, registry: &Registry) -> Vec<(usize, u64)> {
        let mut opened = Vec::new();
        loop {
            match self.listener.accept() {
                Ok((mut stream, _)) => {
                    if self.scrapes.len() >= MAX_SCRAPES {
                        continue; // Dropped: closed at once.
                    }
                    let entry = self.scrapes.vacant_entry();
                    let key = entry.key();
                    let token = Token(SCRAPE_BASE + key);
                    if registry
                        .register(&mut stream, token, Interest::READABLE)
                        .is_err()
                    {
                        continue;
                    }
                    let id = self.next_id;
                    self.next_id += 1;
                    entry.insert(Scrape {
                        stream,
                        id,
                        request: Vec::new(),
                        answer: Vec::new(),
                        written: 0,
                    });
                    opened.push((key, id));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return opened,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // Out of descriptors, typically: the next connection brings a new event.
                    report::metrics_accept_failed(&e);
                    return opened;
                }
            }
        }
    }

    /// Reads scrape `key`'s request; if it is whole, asks for a snapshot. A request that is
    /// malformed, too large or cut short is answered or closed here.
    pub fn on_readable(&mut self, key: usize, registry: &Registry) -> After {
        let Some(scrape) = self.scrapes.get_mut(key) else {
            return After::Wait; // A scrape closed this turn.
        };
        if !scrape.answer.is_empty() {
            return After::Wait; // Answered; what more it sends is not read.
        }
        let mut buf = [0; 1024];
        let ended = loop {
            let room = MAX_REQUEST - scrape.request.len();
            if room == 0 {
                break false;
            }
            let want = room.min(buf.len());
            match scrape.stream.read(&mut buf[..want]) {
                Ok(0) => break true,
                Ok(n) => scrape.request.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break true,
            }
        };
        match judge(&scrape.request, ended) {
            Verdict::Metrics => return After::WantsStats(key),
            Verdict::Answer(answer) => self.answer(key, answer, registry),
            Verdict::Close => self.close(key, registry),
            Verdict::Incomplete => {}
        }
        After::Wait
    }

    /// Answers scrape `key` with `stats`.
    pub fn answer_stats(&mut self, key: usize, stats: &Stats, registry: &Registry) {
        let body = stats.prometheus();
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        self.start_answer(key, [head.as_bytes(), body.as_bytes()].concat(), registry);
    }

    fn answer(&mut self, key: usize, answer: &str, registry: &Registry) {
        self.start_answer(key, answer.as_bytes().to_vec(), registry);
    }

    /// Sets the answer and writes what the socket takes now; WRITABLE only for what is left.
    fn start_answer(&mut self, key: usize, answer: Vec<u8>, registry: &Registry) {
        let Some(scrape) = self.scrapes.get_mut(key) else {
            return;
        };
        scrape.answer = answer;
        self.on_writable(key, registry);
        if let Some(scrape) = self.scrapes.get_mut(key) {
            let token = Token(SCRAPE_BASE + key);
            if registry
                .reregister(&mut scrape.stream, token, Interest::WRITABLE)
                .is_err()
            {
                self.close(key, registry);
            }
        }
    }

    /// Writes more of scrape `key`'s answer; once it is all written, closes the connection.
    pub fn on_writable(&mut self, key: usize, registry: &Registry) {
        let Some(scrape) = self.scrapes.get_mut(key) else {
            return;
        };
        while scrape.written < scrape.answer.len() {
            match scrape.stream.write(&scrape.answer[scrape.written..]) {
                Ok(0) => return self.close(key, registry),
                Ok(n) => scrape.written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return self.close(key, registry),
            }
        }
        if !scrape.answer.is_empty() {
            // The FIN goes after the answer; the client's close then ends the connection.
            let _ = scrape.stream.shutdown(std::net::Shutdown::Write);
            self.close(key, registry);
        }
    }

    /// `Due::Scrape`: scrape `(key, id)` has had `SCRAPE_TIMEOUT`; if it is still open, it goes.
    pub fn expire(&mut self, key: usize, id: u64, registry: &Registry) {
        if self.scrapes.get(key).is_some_and(|scrape| scrape.id == id) {
            self.close(key, registry);
        }
    }

    fn close(&mut self, key: usize, registry: &Registry) {
        if let Some(mut scrape) = self.scrapes.try_remove(key) {
            let _ = registry.deregister(&mut scrape.stream);
        }
    }
}

/// What a request read so far calls for.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// `GET /metrics`: the figures.
    Metrics,
    /// A fixed answer: 404, 405, 400 or 431.
    Answer(&'static str),
    /// Cut short: the peer ended it before it was whole.
    Close,
    /// Not whole yet: wait for more.
    Incomplete,
}

/// Parses `request` (every byte read so far; `ended` once the peer sent its FIN) with httparse.
fn judge(request: &[u8], ended: bool) -> Verdict {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(request) {
        Ok(httparse::Status::Complete(_)) => {
            let path = parsed.path.unwrap_or("");
            let path = path.split_once('?').map_or(path, |(path, _)| path);
            match (parsed.method, path) {
                (Some("GET"), "/metrics") => Verdict::Metrics,
                (Some("GET"), _) => Verdict::Answer(NOT_FOUND),
                _ => Verdict::Answer(NOT_ALLOWED),
            }
        }
        Ok(httparse::Status::Partial) if request.len() >= MAX_REQUEST => Verdict::Answer(TOO_LARGE),
        Ok(httparse::Status::Partial) if ended => Verdict::Close,
        Ok(httparse::Status::Partial) => Verdict::Incomplete,
        // Too many headers is too large a request too.
        Err(httparse::Error::TooManyHeaders) => Verdict::Answer(TOO_LARGE),
        Err(_) => Verdict::Answer(BAD_REQUEST),
    }
}

/// How long a scrape may take, from connect to the answer's last byte.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// Scrapes open at once; Prometheus has one at a time per target.
const MAX_SCRAPES: usize = 16;
/// The most of a request that is held: a scrape's request is a few hundred bytes.
const MAX_REQUEST: usize = 8 * 1024;
const MAX_HEADERS: usize = 32;

/// Above every client's token (clients use `CLIENT_BASE + slot`).
const LISTENER: Token = Token(usize::MAX / 2);
const SCRAPE_BASE: usize = LISTENER.0 + 1;

const NOT_FOUND: &str = "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n\
    Content-Length: 29\r\nConnection: close\r\n\r\nnot found: try GET /metrics\r\n";
const NOT_ALLOWED: &str = "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\n\
    Content-Type: text/plain\r\nContent-Length: 20\r\nConnection: close\r\n\r\nonly GET is served\r\n";
const BAD_REQUEST: &str = "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\n\
    Content-Length: 13\r\nConnection: close\r\n\r\nbad request\r\n";
const TOO_LARGE: &str = "HTTP/1.1 431 Request Header Fields Too Large\r\n\
    Content-Type: text/plain\r\nContent-Length: 19\r\nConnection: close\r\n\r\nrequest too large\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judges_requests() {
        let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(judge(get("/metrics").as_bytes(), false), Verdict::Metrics);
        assert_eq!(
            judge(get("/metrics?x=1").as_bytes(), false),
            Verdict::Metrics
        );
        assert_eq!(
            judge(get("/").as_bytes(), false),
            Verdict::Answer(NOT_FOUND)
        );
        let post = b"POST /metrics HTTP/1.1\r\n\r\n";
        assert_eq!(judge(post, false), Verdict::Answer(NOT_ALLOWED));
        assert_eq!(
            judge(b"GET /metrics HTTP/1.1\r\n", false),
            Verdict::Incomplete
        );
        assert_eq!(judge(b"GET /metrics HTTP/1.1\r\n", true), Verdict::Close);
        assert_eq!(
            judge(b"\x01\x02 nonsense\r\n\r\n", false),
            Verdict::Answer(BAD_REQUEST)
        );
        let huge = format!("GET /metrics HTTP/1.1\r\nX: {}", "a".repeat(MAX_REQUEST));
        assert_eq!(judge(huge.as_bytes(), false), Verdict::Answer(TOO_LARGE));
        let many: String = (0..40).map(|i| format!("X{i}: y\r\n")).collect();
        let many = format!("GET /metrics HTTP/1.1\r\n{many}\r\n");
        assert_eq!(judge(many.as_bytes(), false), Verdict::Answer(TOO_LARGE));
    }

    /// Each fixed answer's Content-Length is its body's length.
    #[test]
    fn fixed_answers_have_the_right_length() {
        for answer in [NOT_FOUND, NOT_ALLOWED, BAD_REQUEST, TOO_LARGE] {
            let (head, body) = answer.split_once("\r\n\r\n").unwrap_or_default();
            let length = head
                .lines()
                .find_map(|line| line.strip_prefix("Content-Length: "))
                .and_then(|n| n.trim().parse::<usize>().ok());
            assert_eq!(length, Some(body.len()), "{answer}");
        }
    }
}
