//! The command line, turned into typed values so later code never checks them again.
//!
//! Deliberately not here: any I/O but reading the open-files limit for the default of
//! `--max-clients`, or any knowledge of mio.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{CommandFactory, Parser, ValueEnum};
use log::LevelFilter;

use crate::access::{Access, Cidr, RuleSource, Rules};
use crate::flood::{self, Rate};
pub use crate::logger::{LogFormat, LogTime};

mod bus;

use bus::{parse_bus_room, parse_bus_url, parse_node};

/// chatd: a TCP chat server. Clients connect with netcat (`nc -N HOST PORT`); every connect, message
/// and disconnect is reported on stdout, and the operator answers any client from stdin
/// (type /help there).
#[derive(Debug, Clone, Parser)]
#[command(name = "chatd", version, after_help = AFTER_HELP)]
#[command(about = "a TCP chat server with an operator console", long_about = LONG_ABOUT)]
pub struct Config {
    /// Address to listen on, IP:PORT; repeat for more (e.g. also [::]:12000). Port 0 picks a free
    /// port; each real address is printed as `listening on ADDR`. Default: 0.0.0.0:12000, or
    /// none when systemd passes listening sockets (socket activation): those are served, and any
    /// --listen given too.
    #[arg(long = "listen", value_name = "ADDR")]
    pub listen: Vec<SocketAddr>,

    /// Address to listen on for TLS clients, IP:PORT; repeat for more. Needs --tls-cert and
    /// --tls-key. Plain and TLS clients share one room; TLS ones are reported `tls`. With only
    /// --tls-listen, no plain listener is opened.
    #[arg(long = "tls-listen", value_name = "ADDR", requires_all = ["tls_cert", "tls_key"])]
    pub tls_listen: Vec<SocketAddr>,

    /// The TLS certificate chain, PEM (the server's certificate first).
    #[arg(long, value_name = "PEM", requires = "tls_listen")]
    pub tls_cert: Option<PathBuf>,

    /// The TLS private key, PEM (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PEM", requires = "tls_listen")]
    pub tls_key: Option<PathBuf>,

    /// A TLS client that has not finished its handshake after this many seconds is refused
    /// (`tls: handshake timeout`).
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_SECS))]
    pub handshake_timeout: u64,

    /// Ask every client for the password in this file's first line (`password:`); a client is
    /// seated only once its first line matches. Read again on SIGHUP when headless.
    #[arg(long, value_name = "PATH")]
    pub password_file: Option<PathBuf>,

    /// A client that has not given the right password this many seconds after the prompt is
    /// refused (`auth`).
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_SECS))]
    pub auth_timeout: u64,

    /// Line sent to each client when it connects. Default: a welcome that says how to leave (and,
    /// with --relay, how the room works).
    #[arg(long, value_name = "TEXT")]
    pub greeting: Option<String>,

    /// Most clients at once; one more gets `server full` and is closed. Default: the open-files
    /// limit minus a reserve, printed at start.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_clients: Option<u64>,

    /// Also append every report to this file.
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,

    /// How each report is written to a pipe and the log file: `text` (`TIME [LEVEL] body`) or
    /// `json` (one object per line, docs/log-format.md). A terminal shows text, unless json is asked.
    #[arg(long, value_name = "FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// The time that begins each report: `clock` (HH:MM:SS, local), `rfc3339` (UTC date and time
    /// to the millisecond) or `none` (for the journal, which stamps lines itself). Default: clock
    /// on a terminal and on stdout alone, rfc3339 with --log-file or --log-format json.
    #[arg(long, value_name = "TIME")]
    pub log_time: Option<LogTime>,

    /// Least severe reports to show: off, error, warn, info, debug or trace.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub log_level: LevelFilter,

    /// Bytes without a newline become a message after this many milliseconds without more bytes,
    /// from a client that has never ended a line with a newline (the others wait for it); so
    /// does a password line (--password-file) sent without one.
    #[arg(long, value_name = "MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_SECS * 1000))]
    pub line_timeout: u64,

    /// Longest message kept; the rest of a longer line is dropped and counted as `[+N bytes]`.
    #[arg(long, value_name = "BYTES", default_value_t = 65536, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_line: u64,

    /// Most bytes queued for a client that does not read; past it the client is dropped `slow`.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_queue: u64,

    /// Run a chat room: every message is also relayed to every other client as `<name>: <text>`;
    /// clients may use /nick NAME, /who, /msg NAME text (to one member) and /help.
    #[arg(long)]
    pub relay: bool,

    /// Flood control: most lines, and KiB, a second a client may send, after --burst at once
    /// (bytes of an unfinished or cut line count too). Past it chatd stops reading that client
    /// (TCP makes it wait; nothing is lost); one that stays over it for --flood-timeout is
    /// disconnected (reason `flood`). Default: 20 with --relay, else off. 0: off.
    #[arg(long, value_name = "LINES/S", value_parser = clap::value_parser!(u32).range(0..=flood::MAX_RATE as i64))]
    pub max_rate: Option<u32>,

    /// Lines, and KiB, a client may send at once before --max-rate holds it back.
    #[arg(long, value_name = "N", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub burst: u32,

    /// Disconnect a client held back by --max-rate this many seconds without a break (`flood`).
    #[arg(long, value_name = "SECS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_SECS))]
    pub flood_timeout: u64,

    /// Disconnect a client that has sent nothing for this many seconds (reason `timeout`).
    /// Default: never.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_SECS))]
    pub idle_timeout: Option<u64>,

    /// Rotate the log file when it reaches this size: it becomes PATH.1 (replacing an older one)
    /// and a new file is started, so reports take at most twice this on disk. 0: never.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 30)]
    pub log_max_size: u64,

    /// Probe a silent client's connection after this many seconds (TCP keepalive, then every 10 s,
    /// 5 times), so a client whose machine vanished is reported `reset` within about two minutes.
    /// 0 turns it off; at most 32767 (the kernel's limit).
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(0..=MAX_KEEPALIVE_SECS))]
    pub keepalive: u64,

    /// Listen backlog: connections the kernel holds until they are accepted.
    #[arg(long, value_name = "N", default_value_t = 4096, value_parser = clap::value_parser!(u32).range(1..))]
    pub backlog: u32,

    /// Serve Prometheus metrics over HTTP at this address, IP:PORT (`GET /metrics`; port 0 picks
    /// one, printed as `metrics on ADDR`). Default: off, or the socket systemd passes named
    /// `metrics` (LISTEN_FDNAMES); giving both is refused.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,

    /// Let in only clients in this block, ADDR/PREFIX or one address (IPv4 or IPv6); repeat for
    /// more. With any allow given, a client in no allow block is refused `denied`; one in a
    /// --deny block too is refused all the same (ncat's rule).
    #[arg(long = "allow", value_name = "CIDR")]
    pub allow: Vec<Cidr>,

    /// Refuse clients in this block (`refused PEER (denied)`, closed at once); repeat for more.
    #[arg(long = "deny", value_name = "CIDR")]
    pub deny: Vec<Cidr>,

    /// More --allow blocks, one per line (`#` starts a comment); read again on SIGHUP when the
    /// console is not a terminal.
    #[arg(long, value_name = "PATH")]
    pub allow_file: Option<PathBuf>,

    /// More --deny blocks, one per line (`#` starts a comment); read again on SIGHUP when the
    /// console is not a terminal.
    #[arg(long, value_name = "PATH")]
    pub deny_file: Option<PathBuf>,

    /// Most clients at once from one address (an IPv6 client's /64); one more is told `too many
    /// connections from your address` and closed. Default: no limit.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_per_ip: Option<u32>,

    /// Most connections a minute from one address (an IPv6 client's /64): a burst of N, then one
    /// every 60/N seconds; past it a connection is closed at once, without a greeting. Written `N`
    /// or `N/min`. Default: no limit.
    #[arg(long, value_name = "N/MIN", value_parser = per_minute)]
    pub max_connect_rate: Option<u32>,

    /// The --allow and --deny blocks with those of the files, read by [`Config::from_args`]
    /// (`Config::parse` alone leaves the files unread).
    #[arg(skip)]
    pub rules: Rules,

    /// Share the room with other chatd instances over NATS at this server, nats://HOST:PORT
    /// (needs --relay): every relayed line is published on `chatd.room.<--bus-room>`, and the
    /// lines of the other instances reach the members here. Started without the server, chatd
    /// serves locally and keeps trying (`bus unavailable: ...`, then `bus connected`).
    #[arg(long, value_name = "URL", requires = "relay", value_parser = parse_bus_url)]
    pub bus: Option<String>,

    /// The room's name on the bus: instances with the same --bus and --bus-room are one room.
    #[arg(long, value_name = "NAME", default_value = "chatd", value_parser = parse_bus_room)]
    pub bus_room: String,

    /// This instance's name on the bus (letters, digits, `-`, `_`, `.`; at most 64), shown in
    /// reports of lines from other instances and in `#<id>@<node>`. Default: HOST-PID.
    #[arg(long, value_name = "NAME", value_parser = parse_node)]
    pub node: Option<String>,

    /// Listen with SO_REUSEPORT, so that several chatd processes can listen on one port and the
    /// kernel spreads connections between them (with --bus, one room over several cores).
    #[arg(long)]
    pub reuse_port: bool,

    /// Print the man page or a shell's completion script to stdout and exit (for packagers; see
    /// README.md, Install).
    #[arg(long, value_name = "WHAT", hide = true)]
    pub generate: Option<Generate>,
}

/// What `--generate` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Generate {
    /// The man page, chatd(1), in roff.
    Man,
    Bash,
    Zsh,
    Fish,
}

impl Config {
    /// The command line, and the rule files it names read: a malformed block or an unreadable
    /// file is a usage error (exit code 2) naming the entry (with the file and line).
    pub fn from_args() -> Config {
        let mut config = Config::parse();
        match config.rule_source().load() {
            Ok(rules) => config.rules = rules,
            Err(e) => Config::command()
                .error(clap::error::ErrorKind::ValueValidation, e)
                .exit(),
        }
        config
    }

    /// Access control as asked: the rules read at start, the limits per address.
    pub fn access(&self) -> Access {
        let (rules, source) = (self.rules.clone(), self.rule_source());
        Access::new(source, rules, self.max_per_ip, self.max_connect_rate)
    }

    /// Where the --allow and --deny blocks come from, for reading the files again on SIGHUP.
    pub fn rule_source(&self) -> RuleSource {
        RuleSource {
            allow: self.allow.clone(),
            deny: self.deny.clone(),
            allow_file: self.allow_file.clone(),
            deny_file: self.deny_file.clone(),
        }
    }

    /// The addresses to bind: every `--listen`, or the default when none is given and systemd
    /// handed over no socket (`inherited` counts those).
    pub fn listen_addrs(&self, inherited: usize) -> Vec<SocketAddr> {
        if self.listen.is_empty() && self.tls_listen.is_empty() && inherited == 0 {
            vec![DEFAULT_LISTEN]
        } else {
            self.listen.clone()
        }
    }

    pub fn line_timeout(&self) -> Duration {
        Duration::from_millis(self.line_timeout)
    }

    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.handshake_timeout)
    }

    pub fn auth_timeout(&self) -> Duration {
        Duration::from_secs(self.auth_timeout)
    }

    pub fn idle_timeout(&self) -> Option<Duration> {
        self.idle_timeout.map(Duration::from_secs)
    }

    /// `--log-max-size`, if any.
    pub fn log_max_size(&self) -> Option<u64> {
        (self.log_max_size > 0).then_some(self.log_max_size)
    }

    /// `--keepalive`, if on.
    pub fn keepalive(&self) -> Option<Duration> {
        (self.keepalive > 0).then(|| Duration::from_secs(self.keepalive))
    }

    /// What a client may make the server hold: `--max-clients` (or the open-files limit less what
    /// the server needs for itself), `--max-line` and `--max-queue`; and how fast it may send.
    pub fn limits(&self) -> Limits {
        let max_clients = match self.max_clients {
            Some(n) => n,
            None => open_files_limit().saturating_sub(RESERVED_FILES).max(1),
        };
        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        Limits {
            max_clients: size(max_clients),
            max_line: size(self.max_line),
            max_queue: size(self.max_queue),
            flood: self.flood(),
        }
    }

    /// `--max-rate` (its default depends on `--relay`), `--burst` and `--flood-timeout`.
    pub fn flood(&self) -> Option<Rate> {
        let default = if self.relay { DEFAULT_ROOM_RATE } else { 0 };
        let timeout = Duration::from_secs(self.flood_timeout);
        Rate::new(self.max_rate.unwrap_or(default), self.burst, timeout)
    }
}

/// `--max-connect-rate`: `N` or `N/min`, N at least 1.
fn per_minute(text: &str) -> Result<u32, String> {
    let n = text.strip_suffix("/min").unwrap_or(text);
    match n.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("expected N or N/min, N a whole number from 1".into()),
    }
}

/// The soft RLIMIT_NOFILE, or a conservative guess if it cannot be read.
fn open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass, which lives for the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        limit.rlim_cur
    } else {
        1024
    }
}

/// `--help`'s opening, and the man page's DESCRIPTION (its NAME line is the short `about`).
const LONG_ABOUT: &str = "\
chatd: a TCP chat server. Clients connect with netcat (`nc -N HOST PORT`); every connect, message
and disconnect is reported on stdout, and the operator answers any client from stdin (type /help
there).";

/// The console and the reports, for `--help`; README.md says the same at more length.
const AFTER_HELP: &str = "\
Console (type on stdin):
  /to <id> <text>, @<id> <text>   send a line to one client
  /all <text>                     send a line to every client
  <text>                          reply to the client that spoke last (//text sends /text)
  /list, /kick <id>, /stats, /quit, /help
  /ban <id|CIDR> [MINUTES], /bans, /unban <CIDR>
Reports (stdout, and --log-file; --log-format json: one JSON object per line, docs/log-format.md):
  listening on <addr> [tls]
  connect <peer> #<id> [tls] (<n> online)
  message <peer> #<id>: <text>
  disconnect <peer> #<id> <reason> (<n> online), reason: exit, closed, reset, kicked,
    shutdown, slow, timeout or flood
  refused <peer> (<why>), why: server full, denied, banned, per-ip limit, connect rate, auth,
    tls: <reason>, tls on the plain port or shutdown
  dropped <peer> #<id>: <n> bytes not heard    (a closing client: past 4 MiB or 10 s, or
    over --max-rate; a flooder's backlog is never heard)
  with --relay: command <peer> #<id>: <text>, nick <peer> #<id>: <old> is now <new>
  with --bus: message <node>/<peer> #<id>: <text>, bus connected, bus lost,
    bus unavailable: <reason>, bus gap: <n> lines from <node> never arrived,
    bus: names are (not) claimed across the room, bus: the name <name> was claimed elsewhere
A line the server closed its client in the middle of ends in (cut).
Signals: SIGINT, SIGTERM and /quit shut down gracefully; the second SIGINT or SIGTERM (the
first after /quit) exits at once (code 130 or 143). SIGHUP shuts down when the console is a
terminal, else reopens the log file, as SIGUSR1 does, and reads --allow-file, --deny-file and
--password-file again. SIGALRM and the like are ignored.";

/// The longest timeout taken (ten years): deadlines computed from it cannot overflow an `Instant`.
const MAX_TIMEOUT_SECS: u64 = 10 * 365 * 24 * 3600;
/// The longest TCP keepalive idle time Linux takes (`MAX_TCP_KEEPIDLE`); past it the setting is
/// refused whole.
const MAX_KEEPALIVE_SECS: u64 = 32_767;
/// `--max-rate` in the room unless given: more than a person typing or pasting a screenful sends.
const DEFAULT_ROOM_RATE: u32 = 20;
const DEFAULT_LISTEN: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 12000);
/// Descriptors kept back from `--max-clients`: stdio, listeners, epoll, the waker, signals, the log
/// file, and room to accept and refuse one more client politely.
const RESERVED_FILES: u64 = 32;

/// What a client may make the server hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// `--max-clients`: connections held at once.
    pub max_clients: usize,
    /// `--max-line`: the longest message kept.
    pub max_line: usize,
    /// `--max-queue`: the most bytes queued for one client.
    pub max_queue: usize,
    /// `--max-rate`, `--burst`, `--flood-timeout`: how fast it may send lines and bytes, if
    /// limited.
    pub flood: Option<Rate>,
}
