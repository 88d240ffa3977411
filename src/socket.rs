//! A client's socket as the server holds it: plain TCP, or TCP with a TLS session.
//!
//! Deliberately not here: anything TLS does (`tls.rs`); this only picks which one.

use std::io::{self, IoSlice, Read, Write};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::stream::Stream;
use crate::tls::TlsStream;

pub enum Socket {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Plain(s) => s.read(buf),
            Socket::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Plain(s) => s.write(buf),
            Socket::Tls(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Socket::Plain(s) => s.write_vectored(bufs),
            Socket::Tls(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Socket::Plain(s) => s.flush(),
            Socket::Tls(s) => s.flush(),
        }
    }
}

impl Stream for Socket {
    fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Plain(s) => Stream::peek(s, buf),
            Socket::Tls(s) => s.peek(buf),
        }
    }

    fn read_lines(&mut self, buf: &mut [u8], lines: usize, nvt: bool) -> io::Result<usize> {
        match self {
            Socket::Plain(s) => s.read_lines(buf, lines, nvt),
            Socket::Tls(s) => s.read_lines(buf, lines, nvt),
        }
    }

    fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Socket::Plain(s) => s.shutdown_write(),
            Socket::Tls(s) => s.shutdown_write(),
        }
    }

    fn unread(&self) -> usize {
        match self {
            Socket::Plain(s) => s.unread(),
            Socket::Tls(s) => s.unread(),
        }
    }

    fn is_tls(&self) -> bool {
        matches!(self, Socket::Tls(_))
    }

    fn has_backlog(&self) -> bool {
        match self {
            Socket::Plain(_) => false,
            Socket::Tls(s) => s.has_backlog(),
        }
    }

    fn reserved(&self) -> usize {
        match self {
            Socket::Plain(_) => 0,
            Socket::Tls(s) => s.reserved(),
        }
    }

    fn close_notify(&mut self) {
        if let Socket::Tls(s) = self {
            s.close_notify();
        }
    }
}

impl mio::event::Source for Socket {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            Socket::Plain(s) => s.register(registry, token, interests),
            Socket::Tls(s) => s.register(registry, token, interests),
        }
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        match self {
            Socket::Plain(s) => s.reregister(registry, token, interests),
            Socket::Tls(s) => s.reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Socket::Plain(s) => s.deregister(registry),
            Socket::Tls(s) => s.deregister(registry),
        }
    }
}
