//! What a connection needs of its socket, as a trait: mio's `TcpStream` in the server, an
//! in-memory stream in the chat's tests.

use std::io::{self, Read, Write};
use std::net::Shutdown;

use mio::net::TcpStream;

/// What a connection needs of its socket: bytes both ways, registration with the poll, and a FIN.
/// A trait so that the chat's tests can run clients on an in-memory stream; the server uses mio's
/// `TcpStream`.
pub trait Stream: Read + Write + mio::event::Source {
    /// Sends a FIN after what was written.
    fn shutdown_write(&self) -> io::Result<()>;

    /// How many received bytes wait unread (what is counted as dropped when a client is closed
    /// with more than chatd will hear).
    fn unread(&self) -> usize {
        0
    }

    /// Copies received bytes into `buf` without taking them: the next read returns them again.
    fn peek(&self, buf: &mut [u8]) -> io::Result<usize>;

    /// Reads into `buf` as `read` does, but no more than `lines` whole lines: past the `lines`-th
    /// line end, bytes are left in the socket (`--max-rate`); `nvt`: a `\r` ends a line too
    /// ([`lines_end`]). Reading at most `lines` bytes would do that too, one byte at a time for a
    /// long line; a peek finds where to stop instead.
    fn read_lines(&mut self, buf: &mut [u8], lines: usize, nvt: bool) -> io::Result<usize> {
        if lines >= buf.len() {
            return self.read(buf); // Fewer bytes than lines: it cannot read one line too many.
        }
        let seen = self.peek(buf)?;
        let end = lines_end(&buf[..seen], lines, nvt);
        // 0 only when the peek saw the end of the stream: the read sees it too.
        self.read(&mut buf[..end])
    }

    /// Whether the client came over TLS (its reports say so).
    fn is_tls(&self) -> bool {
        false
    }

    /// Whether bytes the stream itself holds (TLS records) still wait for the socket: the client
    /// stays writable, and is not flushed, until they are gone.
    fn has_backlog(&self) -> bool {
        false
    }

    /// Bytes of `--max-queue` the stream keeps for its own send buffer (TLS): the connection's
    /// queue is capped at the rest.
    fn reserved(&self) -> usize {
        0
    }

    /// Ends the session above TCP before the FIN (TLS: close_notify).
    fn close_notify(&mut self) {}
}

impl Stream for TcpStream {
    fn shutdown_write(&self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }

    fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        TcpStream::peek(self, buf)
    }

    fn unread(&self) -> usize {
        use std::os::fd::AsRawFd;
        let mut bytes: libc::c_int = 0;
        // SAFETY: FIONREAD writes one c_int through the pointer, which points at a live local; the
        // descriptor is this socket's own, open for as long as `self` is.
        let ok = unsafe { libc::ioctl(self.as_raw_fd(), libc::FIONREAD, &mut bytes) } == 0;
        if ok {
            usize::try_from(bytes).unwrap_or(0)
        } else {
            0
        }
    }
}

/// How many of `peeked`'s bytes make up at most `lines` whole lines: all of them if they hold no
/// more line ends than that, else up to and including the `lines`-th line end. A line end is a
/// `\n`; for a client that speaks telnet (`nvt`), or may start to in these bytes (an `IAC`, 0xFF,
/// among them: the filter only knows once it reads it), also a `\r` (`CR LF`, `CR NUL` and a bare
/// `CR` each end one line there). Counting `\n` alone would let such a client past `--max-rate`.
pub fn lines_end(peeked: &[u8], lines: usize, nvt: bool) -> usize {
    let nvt = nvt || memchr::memchr(0xFF, peeked).is_some();
    if !nvt {
        // Counting first is one vectorized pass; finding the `lines`-th newline is one `memchr`
        // call per line, paid only when the client is at its limit.
        let newlines = memchr::memchr_iter(b'\n', peeked).count();
        if newlines <= lines {
            return peeked.len();
        }
        let last = memchr::memchr_iter(b'\n', peeked).nth(lines.saturating_sub(1));
        return last.map_or(peeked.len(), |newline| newline + 1);
    }
    let mut found = 0;
    for at in memchr::memchr2_iter(b'\n', b'\r', peeked) {
        if peeked[at] == b'\n' && at > 0 && peeked[at - 1] == b'\r' {
            continue; // The `\r` before it ended this line.
        }
        found += 1;
        if found == lines.max(1) {
            let crlf = peeked[at] == b'\r' && peeked.get(at + 1) == Some(&b'\n');
            return at + 1 + usize::from(crlf);
        }
    }
    peeked.len()
}

#[cfg(test)]
mod tests {
    use super::lines_end;

    #[test]
    fn newlines_end_lines() {
        assert_eq!(lines_end(b"a\nb\nc\n", 5, false), 6);
        assert_eq!(lines_end(b"a\nb\nc\n", 2, false), 4);
        assert_eq!(lines_end(b"a\rb\rc\r", 1, false), 6); // Not telnet: one unfinished line.
    }

    #[test]
    fn telnet_line_ends_count_too() {
        assert_eq!(lines_end(b"a\rb\rc\r", 2, true), 4);
        assert_eq!(lines_end(b"a\r\0b\r\0c", 1, true), 2);
        assert_eq!(lines_end(b"a\r\nb\r\nc\r\n", 2, true), 6); // CR LF is one end.
        assert_eq!(lines_end(b"a\r\nb\r\n", 2, true), 6);
        assert_eq!(lines_end(b"a\nb\rc\n", 2, true), 4);
        // An IAC in these bytes: the filter may take `\r` as a line end from there on.
        assert_eq!(lines_end(b"\xff\xfc\x01a\rb\rc\r", 1, false), 5);
    }
}
