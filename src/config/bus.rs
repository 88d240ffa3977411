//! `--bus`, `--bus-room` and `--node`: their checks and the bus's settings made from them (more of
//! `config`, split by what it configures).

use super::Config;

impl Config {
    /// `--bus`'s settings, if given: the subject and the node name made whole.
    pub fn bus(&self) -> Option<crate::bus::Settings> {
        let url = self.bus.clone()?;
        let node = self.node.clone().unwrap_or_else(default_node);
        Some(crate::bus::Settings {
            url,
            subject: format!("chatd.room.{}", self.bus_room),
            node,
            bucket: format!("chatd-names-{}", self.bus_room),
            max_line: usize::try_from(self.max_line).unwrap_or(usize::MAX),
        })
    }
}

/// `HOST-PID`, the host name cut to what a node name may hold.
fn default_node() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer we own for the call.
    let host = if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end])
            .chars()
            .filter(|&c| node_char(c))
            .take(MAX_NODE - 12)
            .collect()
    } else {
        String::new()
    };
    let host = if host.is_empty() {
        "chatd".to_owned()
    } else {
        host
    };
    format!("{host}-{}", std::process::id())
}

fn node_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

pub(super) fn parse_node(s: &str) -> Result<String, String> {
    if (1..=MAX_NODE).contains(&s.len()) && s.chars().all(node_char) {
        Ok(s.to_owned())
    } else {
        Err(format!("1 to {MAX_NODE} letters, digits, -, _ or ."))
    }
}

pub(super) fn parse_bus_room(s: &str) -> Result<String, String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_');
    if (1..=MAX_NODE).contains(&s.len()) && s.chars().all(ok) {
        Ok(s.to_owned())
    } else {
        Err(format!("1 to {MAX_NODE} letters, digits, - or _"))
    }
}

pub(super) fn parse_bus_url(s: &str) -> Result<String, String> {
    match s.strip_prefix("nats://") {
        Some(rest) if !rest.is_empty() && !rest.contains(char::is_whitespace) => Ok(s.to_owned()),
        _ => Err("nats://HOST:PORT".to_owned()),
    }
}

/// The longest `--node` and `--bus-room`.
const MAX_NODE: usize = 64;
