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
    /// newline, bytes are left in the socket (`--max-rate`). Reading at most `lines` bytes would
    /// do that too, one byte at a time for a long line; a peek finds where to stop instead.
    /// With `cr`, a `\r` counts as a line end too (a telnet client's bare `CR` and `CR NUL` end
    /// lines; its `CR LF` is then counted twice, which only stops a read early).
    fn read_lines(&mut self, buf: &mut [u8], lines: usize, cr: bool) -> io::Result<usize> {
        if lines >= buf.len() {
            return self.read(buf); // Fewer bytes than lines: it cannot read one line too many.
        }
        let seen = self.peek(buf)?;
        let end = lines_end(&buf[..seen], lines, cr);
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
/// more newlines than that, else up to and including the `lines`-th newline (with `cr`, a `\r`
/// is a newline too, as it is once these bytes show a telnet command: the read that brings a
/// client's first one is counted as a telnet client's).
pub fn lines_end(peeked: &[u8], lines: usize, cr: bool) -> usize {
    if cr || memchr::memchr(0xFF, peeked).is_some() {
        return nth_end(
            memchr::memchr2_iter(b'\n', b'\r', peeked),
            peeked.len(),
            lines,
        );
    }
    nth_end(memchr::memchr_iter(b'\n', peeked), peeked.len(), lines)
}

/// Counting first is one vectorized pass; finding the `lines`-th end is one `memchr` call per
/// line, paid only when the client is at its limit.
fn nth_end(ends: impl Iterator<Item = usize> + Clone, len: usize, lines: usize) -> usize {
    if ends.clone().count() <= lines {
        return len;
    }
    let mut ends = ends;
    ends.nth(lines.saturating_sub(1)).map_or(len, |end| end + 1)
}
