//! The server's own life, as the operator reads it: accepting, signals, the log file, reloads,
//! the console closing, shutting down (more of `report`, split by what it reports on).

use std::fmt;
use std::io;

use log::{info, warn};

use crate::logfile;

/// The password file was read again (headless SIGHUP).
pub fn password_reloaded(path: &std::path::Path) {
    info!(event = "password_reloaded", path:% = path.display(); "password file {} read again", path.display());
}

/// The password file could not be read again: the old password stays.
pub fn password_reload_failed(error: &dyn std::fmt::Display) {
    warn!(event = "password_reload_failed", error:% = error; "{error}; the old password stays");
}

/// The `/metrics` listener could not take a connection; it will be tried again.
pub fn metrics_accept_failed(error: &io::Error) {
    warn!(event = "metrics_accept_failed", error:% = error; "metrics: accept failed: {error}");
}

/// SIGUSR1 (or SIGHUP, headless): the log file is reopened at its path, before this turn's reports
/// are written, so they are the first in the new file.
pub fn reopen_log_file(cause: &str) {
    if logfile::is_open() {
        logfile::request_reopen();
        info!(event = "reopen_log", cause = cause, reopened = true; "reopening the log file ({cause})");
    } else {
        info!(event = "reopen_log", cause = cause, reopened = false; "no log file to reopen ({cause})");
    }
}

/// SIGHUP, headless: the rule files were read again.
pub fn rules_reloaded(allow: usize, deny: usize) {
    info!(event = "rules_reloaded", allow = allow, deny = deny; "rules reloaded (SIGHUP): {allow} allow, {deny} deny");
}

/// SIGHUP, headless: a rule file could not be read or has a bad entry; the old rules stay.
pub fn rules_not_reloaded(error: &dyn fmt::Display) {
    warn!(event = "rules_not_reloaded", error:% = error; "rules not reloaded (SIGHUP): {error}; the old ones stay");
}

/// The service manager's notify socket could not be used: no more notifications are sent.
pub fn notify_failed(error: &io::Error) {
    warn!(event = "notify_failed", error:% = error; "systemd notify: {error}; no more notifications");
}

/// A signal that would have ended the process by default, taken and ignored.
pub fn signal_ignored(name: &str) {
    info!(event = "signal_ignored", signal = name; "ignored {name}");
}

pub fn accept_failed(error: &io::Error) {
    warn!(event = "accept_failed", error:% = error; "accept failed: {error}; accepting again shortly");
}

pub fn accepting_again() {
    info!(event = "accepting_again"; "accepting again");
}

pub fn console_closed(error: Option<&io::Error>) {
    match error {
        None => info!(
            event = "console_closed";
            "console closed (stdin at end of file); still serving, stop with SIGINT or SIGTERM"
        ),
        Some(e) => warn!(
            event = "console_closed", error:% = e;
            "console closed (stdin: {e}); still serving, stop with SIGINT or SIGTERM"
        ),
    }
}

pub fn shutting_down(cause: &str) {
    info!(event = "shutting_down", cause = cause; "shutting down ({cause})");
}

pub fn stopped() {
    info!(event = "stopped"; "stopped");
}
