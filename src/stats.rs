//! The server's figures for the operator and for machines: one [`Stats`] snapshot, taken by the
//! loop when `/stats` or a `GET /metrics` asks, shown as Prometheus text here and as a report line
//! in `report.rs`.
//!
//! The counters themselves are plain integers in the structs that see each event (`Clients`,
//! `Connection`, `Chat`, `Server`), summed only when a snapshot is taken: nothing is added to the
//! per-line path. Pure: no I/O, no clock.

use std::fmt::Write;
use std::time::Duration;

use crate::ids::Reason;

/// The figures at one moment. Counters (`_total` in Prometheus) only grow over the process's
/// life; the rest are gauges.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Clients connected now.
    pub online: u64,
    /// Connections seated since start.
    pub accepted: u64,
    /// Connections turned away: `server full` past `--max-clients`.
    pub refused_full: u64,
    /// Connections turned away because the poll would not take them.
    pub refused_error: u64,
    /// Connections turned away by access control: denied, banned, per-ip limit, connect rate
    /// (each attempt, reported or not).
    pub refused_access: [u64; 4],
    /// Connections turned away by the TLS handshake (failed, timed out, TLS on the plain port).
    pub refused_tls: u64,
    /// Connections turned away for a wrong password or none in time.
    pub refused_auth: u64,
    /// Disconnects by reason, in the order of [`Reason::ALL`].
    pub disconnects: [u64; Reason::ALL.len()],
    /// Lines heard from clients (each is a `message` report).
    pub messages_in: u64,
    /// Bytes read from clients.
    pub bytes_in: u64,
    /// Lines queued for clients.
    pub lines_out: u64,
    /// Bytes written to clients.
    pub bytes_out: u64,
    /// `--relay`: a member's line queued for another member, counted once per recipient.
    pub relay_deliveries: u64,
    /// Bytes waiting in client output queues now.
    pub queue_bytes: u64,
    /// Timers in the loop's deadline queue now (a dead one stays until it fires or is swept).
    pub timers: u64,
    /// Loop turns since start.
    pub turns: u64,
    /// Time the loop spent working (not waiting in the poll) since start.
    pub busy: Duration,
}

impl Stats {
    /// The Prometheus text exposition format (version 0.0.4): `# HELP`, `# TYPE` and the samples
    /// of every metric, names starting `chatd_`.
    pub fn prometheus(&self) -> String {
        let mut out = String::with_capacity(2048);
        let mut one = |name: &str, kind: &str, help: &str, samples: &[(&str, String)]| {
            let _ = writeln!(out, "# HELP chatd_{name} {help}");
            let _ = writeln!(out, "# TYPE chatd_{name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "chatd_{name}{labels} {value}");
            }
        };
        let n = |v: u64| vec![("", v.to_string())];
        one(
            "clients_online",
            "gauge",
            "Clients connected now.",
            &n(self.online),
        );
        one(
            "connections_accepted_total",
            "counter",
            "Client connections seated.",
            &n(self.accepted),
        );
        one(
            "connections_refused_total",
            "counter",
            "Client connections turned away, by reason.",
            &[
                ("{reason=\"full\"}", self.refused_full.to_string()),
                ("{reason=\"error\"}", self.refused_error.to_string()),
                ("{reason=\"denied\"}", self.refused_access[0].to_string()),
                ("{reason=\"banned\"}", self.refused_access[1].to_string()),
                ("{reason=\"per_ip\"}", self.refused_access[2].to_string()),
                (
                    "{reason=\"connect_rate\"}",
                    self.refused_access[3].to_string(),
                ),
                ("{reason=\"tls\"}", self.refused_tls.to_string()),
                ("{reason=\"auth\"}", self.refused_auth.to_string()),
            ],
        );
        let labels: Vec<String> = Reason::ALL
            .iter()
            .map(|reason| format!("{{reason=\"{reason}\"}}"))
            .collect();
        let disconnects: Vec<(&str, String)> = labels
            .iter()
            .zip(self.disconnects)
            .map(|(label, count)| (label.as_str(), count.to_string()))
            .collect();
        one(
            "disconnects_total",
            "counter",
            "Clients gone, by the reason in their disconnect report.",
            &disconnects,
        );
        one(
            "messages_in_total",
            "counter",
            "Lines heard from clients.",
            &n(self.messages_in),
        );
        one(
            "bytes_in_total",
            "counter",
            "Bytes read from clients.",
            &n(self.bytes_in),
        );
        one(
            "lines_out_total",
            "counter",
            "Lines queued for clients.",
            &n(self.lines_out),
        );
        one(
            "bytes_out_total",
            "counter",
            "Bytes written to clients.",
            &n(self.bytes_out),
        );
        one(
            "relay_deliveries_total",
            "counter",
            "Room lines queued for a member, once per recipient.",
            &n(self.relay_deliveries),
        );
        one(
            "queue_bytes",
            "gauge",
            "Bytes waiting in client output queues.",
            &n(self.queue_bytes),
        );
        one(
            "timers_armed",
            "gauge",
            "Timers in the loop's queue.",
            &n(self.timers),
        );
        one(
            "loop_turns_total",
            "counter",
            "Event loop turns.",
            &n(self.turns),
        );
        one(
            "loop_busy_seconds_total",
            "counter",
            "Time the loop spent working rather than waiting.",
            &[("", format!("{:.6}", self.busy.as_secs_f64()))],
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sample line is `name{labels} value` with a number for value, under its own `# TYPE`.
    #[test]
    fn prometheus_text_has_every_metric_once_with_its_type() {
        let stats = Stats {
            online: 2,
            disconnects: [1, 2, 3, 4, 5, 6, 7, 8],
            busy: Duration::from_millis(1500),
            ..Stats::default()
        };
        let text = stats.prometheus();
        assert!(text.contains("\nchatd_clients_online 2\n"), "{text}");
        assert!(text.contains("chatd_disconnects_total{reason=\"timeout\"} 7\n"));
        assert!(text.contains("chatd_disconnects_total{reason=\"flood\"} 8\n"));
        assert!(text.contains("chatd_loop_busy_seconds_total 1.500000\n"));
        let mut typed = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                typed.push(rest.split(' ').next().unwrap_or_default().to_owned());
            } else if !line.starts_with('#') {
                let (name, value) = line.rsplit_once(' ').unwrap_or_default();
                let base = name.split('{').next().unwrap_or_default();
                assert_eq!(typed.last().map(String::as_str), Some(base), "{line}");
                assert!(value.parse::<f64>().is_ok(), "{line}");
            }
        }
        let mut unique = typed.clone();
        unique.dedup();
        assert_eq!(unique, typed);
        assert_eq!(typed.len(), 13);
    }
}
