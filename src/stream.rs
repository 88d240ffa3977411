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
/// more newlines than that, else up to and including the `lines`-th newline. With `cr` (a telnet
/// client), a `\r` is a newline too, as it is from a client's first telnet command on: the read
/// that brings that command counts from there as a telnet client's read does.
pub fn lines_end(peeked: &[u8], lines: usize, cr: bool) -> usize {
    let from = if cr { 0 } else { first_command(peeked) };
    let (before, after) = peeked.split_at(from);
    let ends = memchr::memchr_iter(b'\n', before)
        .chain(memchr::memchr2_iter(b'\n', b'\r', after).map(move |end| from + end));
    nth_end(ends, peeked.len(), lines)
}

/// Where the first telnet command (`IAC` and a command byte, not `IAC IAC`) starts, or the end:
/// a stray 0xFF in a client's text does not make its `\r`s line ends.
fn first_command(peeked: &[u8]) -> usize {
    let mut at = 0;
    while let Some(found) = memchr::memchr(0xFF, &peeked[at..]) {
        let iac = at + found;
        match peeked.get(iac + 1) {
            Some(0xFF) => at = iac + 2,
            Some(0xEC..=0xFE) | None => return iac,
            Some(_) => at = iac + 1,
        }
    }
    peeked.len()
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

#[cfg(test)]
mod tests {
    use super::lines_end;

    #[test]
    fn lines_end_at_the_allowed_newline() {
        assert_eq!(lines_end(b"a\nb\nc", 1, false), 2);
        assert_eq!(lines_end(b"a\nb\nc", 2, false), 5);
        // A bare `\r` is no line end but for a telnet client.
        assert_eq!(lines_end(b"a\rb\rc\n", 1, false), 6);
        assert_eq!(lines_end(b"a\rb\rc\n", 1, true), 2);
    }

    #[test]
    fn a_first_telnet_command_makes_the_following_cr_line_ends() {
        // IAC NOP, then bare-CR lines: counted from the command on, not before it.
        assert_eq!(lines_end(b"x\ry\xff\xf1a\rb\r", 1, false), 7);
        // A stray 0xFF, or IAC IAC (a literal 0xFF), is not a command.
        assert_eq!(lines_end(b"\xffA\ra\rb\n", 1, false), 7);
        assert_eq!(lines_end(b"\xff\xff\ra\rb\n", 1, false), 7);
        assert_eq!(lines_end(b"\xff\xff\xff\xf1a\rb\n", 1, false), 6);
    }
}
