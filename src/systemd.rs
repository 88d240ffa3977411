//! systemd without libsystemd: socket activation as sd_listen_fds(3) describes it, and the
//! sd_notify(3) messages (`READY=1`, `STATUS=...`, `STOPPING=1`, `WATCHDOG=1`), each one datagram on
//! the unix socket named by `NOTIFY_SOCKET`.
//!
//! Deliberately not here: when to notify or what the status says (the loop decides), timers,
//! reports (errors are returned for the caller to report), or anything of the crate's (a leaf).
//! `LISTEN_FDNAMES` says what each socket is: `metrics` is the `--metrics` listener, `tls` is
//! refused (TLS is served on `--tls-listen` only, not on a passed socket yet), any other name (or
//! none) is a plain chat listener.

use std::env;
use std::ffi::OsString;
use std::fmt;
use std::io;
use std::net::TcpListener;
use std::os::fd::{BorrowedFd, FromRawFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixDatagram};
use std::time::Duration;

use socket2::{Domain, SockRef, Socket, Type};

/// Why the sockets systemd was to pass cannot be served: one line for the operator.
#[derive(Debug)]
pub enum ActivationError {
    /// `LISTEN_PID` or `LISTEN_FDS` is not a number (or, for `LISTEN_FDS`, more descriptors than there can be).
    BadVariable { name: &'static str, value: OsString },
    /// `LISTEN_FDS` counts a descriptor this process does not have.
    NotOpen { fd: RawFd, count: u32 },
    /// A descriptor passed is not a listening TCP socket, or could not be made non-blocking.
    NotListener { fd: RawFd, why: String },
    /// `LISTEN_FDNAMES` does not name as many sockets as `LISTEN_FDS` counts.
    Names { names: usize, count: u32 },
    /// A socket named `tls`: chatd serves TLS on `--tls-listen` only, not on a passed socket.
    Tls { fd: RawFd },
    /// A second socket named `metrics`: there is one metrics listener.
    SecondMetrics { fd: RawFd },
}

/// The sockets systemd passed, sorted by their `LISTEN_FDNAMES` name.
#[derive(Debug, Default)]
pub struct Passed {
    /// Plain chat listeners: any name but `metrics` and `tls`, or no names at all.
    pub chat: Vec<TcpListener>,
    /// The socket named `metrics`: served as `--metrics ADDR` would be.
    pub metrics: Option<TcpListener>,
}

impl fmt::Display for ActivationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "socket activation: ")?;
        match self {
            ActivationError::BadVariable { name, value } => {
                write!(f, "{name}={value:?} is not a valid number")
            }
            ActivationError::NotOpen { fd, count } => {
                write!(f, "LISTEN_FDS={count} but fd {fd} is not open")
            }
            ActivationError::NotListener { fd, why } => {
                write!(f, "fd {fd} is not a listening TCP socket: {why}")
            }
            ActivationError::Names { names, count } => {
                write!(
                    f,
                    "LISTEN_FDNAMES names {names} sockets but LISTEN_FDS={count}"
                )
            }
            ActivationError::Tls { fd } => {
                write!(
                    f,
                    "fd {fd} is named tls, but chatd serves TLS only on --tls-listen, not on a passed socket"
                )
            }
            ActivationError::SecondMetrics { fd } => {
                write!(
                    f,
                    "fd {fd} is a second socket named metrics; chatd serves one"
                )
            }
        }
    }
}

impl std::error::Error for ActivationError {}

/// Takes the listening sockets systemd passed (fds 3, 4, ... per `LISTEN_FDS`), if `LISTEN_PID`
/// names this process; none otherwise. Each is checked to be a listening TCP socket, made
/// non-blocking and close-on-exec, and sorted by its name in `LISTEN_FDNAMES` (colon-separated,
/// one per socket): `metrics` for the metrics listener, `tls` refused, anything else chat. `LISTEN_PID`, `LISTEN_FDS` and `LISTEN_FDNAMES` are removed
/// from the environment either way, so no process started later takes them for its own.
///
/// # Safety
/// No other thread may exist yet (none may read or write the environment meanwhile): it removes
/// environment variables, which is unsound while another thread might call `getenv`.
pub unsafe fn take_listeners() -> Result<Passed, ActivationError> {
    let (pid, count) = (env::var_os("LISTEN_PID"), env::var_os("LISTEN_FDS"));
    let names = env::var_os("LISTEN_FDNAMES");
    if pid.is_none() && count.is_none() {
        return Ok(Passed::default());
    }
    for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
        // SAFETY: the process has one thread (this function's contract), so nothing reads the
        // environment concurrently.
        unsafe { env::remove_var(name) };
    }
    if number("LISTEN_PID", pid)? != Some(std::process::id()) {
        return Ok(Passed::default()); // Meant for another process (a parent that did not unset them).
    }
    let count = number("LISTEN_FDS", count)?.unwrap_or(0);
    let end = RawFd::try_from(count)
        .ok()
        .and_then(|count| LISTEN_FDS_START.checked_add(count));
    let Some(end) = end else {
        let value = count.to_string().into();
        return Err(ActivationError::BadVariable {
            name: "LISTEN_FDS",
            value,
        });
    };
    let names: Vec<String> = match &names {
        // An empty value names nothing, like an absent one.
        Some(names) if !names.is_empty() => names
            .to_string_lossy()
            .split(':')
            .map(String::from)
            .collect(),
        _ => Vec::new(),
    };
    if !names.is_empty() && names.len() != count as usize {
        let names = names.len();
        return Err(ActivationError::Names { names, count });
    }
    let mut passed = Passed::default();
    for fd in LISTEN_FDS_START..end {
        let listener = take_listener(fd, count)?;
        let index = usize::try_from(fd - LISTEN_FDS_START).unwrap_or(usize::MAX);
        match names.get(index).map(String::as_str) {
            Some("tls") => return Err(ActivationError::Tls { fd }),
            Some("metrics") if passed.metrics.is_some() => {
                return Err(ActivationError::SecondMetrics { fd });
            }
            Some("metrics") => passed.metrics = Some(listener),
            _ => passed.chat.push(listener),
        }
    }
    Ok(passed)
}

/// Takes ownership of `fd` once it is known to be an open, listening TCP socket.
fn take_listener(fd: RawFd, count: u32) -> Result<TcpListener, ActivationError> {
    // SAFETY: F_GETFD only reads the descriptor's flags; an fd that is not open gives EBADF.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
        return Err(ActivationError::NotOpen { fd, count });
    }
    let not_listener = |why: String| ActivationError::NotListener { fd, why };
    {
        // SAFETY: `fd` is open (checked above) and nothing closes it while this borrow lives: the
        // process has one thread, and the borrow ends at the end of this block.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = SockRef::from(&borrowed);
        let os = |e: io::Error| not_listener(e.to_string());
        if socket.r#type().map_err(os)? != Type::STREAM {
            return Err(not_listener("not a stream socket".into()));
        }
        let domain = socket.domain().map_err(os)?;
        if domain != Domain::IPV4 && domain != Domain::IPV6 {
            return Err(not_listener("not an IPv4 or IPv6 socket".into()));
        }
        if !socket.is_listener().map_err(os)? {
            return Err(not_listener("not listening (SO_ACCEPTCONN is 0)".into()));
        }
    }
    // SAFETY: `fd` is an open listening TCP socket that systemd passed to this process alone
    // (LISTEN_PID is ours), and this is the one place it is taken: from here the `Socket` owns it
    // and closes it when dropped.
    let socket = unsafe { Socket::from_raw_fd(fd) };
    let setup = socket
        .set_cloexec(true)
        .and_then(|()| socket.set_nonblocking(true));
    setup.map_err(|e| not_listener(e.to_string()))?;
    Ok(socket.into())
}

/// `name`'s value as a number, if it is set.
fn number(name: &'static str, value: Option<OsString>) -> Result<Option<u32>, ActivationError> {
    let Some(value) = value else {
        return Ok(None);
    };
    match value.to_str().and_then(|text| text.parse().ok()) {
        Some(n) => Ok(Some(n)),
        None => Err(ActivationError::BadVariable { name, value }),
    }
}

/// The sending end of sd_notify: a datagram socket connected to `NOTIFY_SOCKET`, or nothing when
/// chatd does not run under a service manager (or gave up after a failed send).
#[derive(Debug, Default)]
pub struct Notifier {
    socket: Option<UnixDatagram>,
}

impl Notifier {
    /// Connects to `NOTIFY_SOCKET` if it is set (a path, or `@name` in the abstract namespace).
    /// A socket that cannot be reached gives an error to report once, and a notifier that is off.
    pub fn from_env() -> (Notifier, Option<io::Error>) {
        let Some(name) = env::var_os("NOTIFY_SOCKET") else {
            return (Notifier::default(), None);
        };
        match connect(name.as_bytes()) {
            Ok(socket) => (
                Notifier {
                    socket: Some(socket),
                },
                None,
            ),
            Err(e) => {
                let name = name.to_string_lossy();
                let e = io::Error::new(e.kind(), format!("NOTIFY_SOCKET={name}: {e}"));
                (Notifier::default(), Some(e))
            }
        }
    }

    pub fn is_on(&self) -> bool {
        self.socket.is_some()
    }

    /// Sends `state` (e.g. `READY=1`, or several `NAME=value` lines) as one datagram. The socket
    /// is non-blocking: a service manager that does not keep up loses the message rather than
    /// stall the loop. A failure turns the notifier off and is returned, to be reported once.
    pub fn notify(&mut self, state: &str) -> io::Result<()> {
        let Some(socket) = &self.socket else {
            return Ok(());
        };
        match socket.send(state.as_bytes()) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => {
                self.socket = None;
                Err(e)
            }
        }
    }
}

/// A non-blocking datagram socket connected to the notify socket `name`.
fn connect(name: &[u8]) -> io::Result<UnixDatagram> {
    let addr = match name {
        [b'@', abstract_name @ ..] => UnixAddr::from_abstract_name(abstract_name)?,
        [b'/', ..] => UnixAddr::from_pathname(std::ffi::OsStr::from_bytes(name))?,
        _ => {
            let why = "not an absolute path or an @abstract name";
            return Err(io::Error::new(io::ErrorKind::InvalidInput, why));
        }
    };
    let socket = UnixDatagram::unbound()?;
    socket.connect_addr(&addr)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, if it is set for this process
/// (`WATCHDOG_PID` unset, or ours), as sd_watchdog_enabled(3) advises. A value that is not a
/// positive number of microseconds is ignored.
pub fn watchdog_period() -> Option<Duration> {
    let pid = env::var_os("WATCHDOG_PID");
    if pid.is_some_and(|pid| pid.to_str() != Some(&std::process::id().to_string())) {
        return None;
    }
    let usec: u64 = env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec) / 2)
}

/// The first descriptor passed (SD_LISTEN_FDS_START).
const LISTEN_FDS_START: RawFd = 3;

#[cfg(test)]
mod tests {
    use super::*;

    /// A notify socket that is neither a path nor an abstract name is refused, not guessed at.
    #[test]
    fn connect_refuses_a_relative_name() {
        let e = connect(b"relative/notify").expect_err("relative name");
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }

    /// The abstract namespace: `@name` reaches a socket bound to that abstract name.
    #[test]
    fn connect_reaches_an_abstract_socket() {
        let name = format!("chatd-test-{}", std::process::id());
        let addr = UnixAddr::from_abstract_name(name.as_bytes()).expect("abstract name");
        let receiver = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        let mut notifier = Notifier {
            socket: Some(connect(format!("@{name}").as_bytes()).expect("connect")),
        };
        notifier.notify("READY=1").expect("send");
        let mut buf = [0; 64];
        let n = receiver.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1");
    }

    /// A number that does not parse names its variable.
    #[test]
    fn a_bad_count_names_the_variable() {
        let e = number("LISTEN_FDS", Some("two".into())).expect_err("not a number");
        assert_eq!(
            e.to_string(),
            "socket activation: LISTEN_FDS=\"two\" is not a valid number"
        );
    }
}
