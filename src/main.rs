//! The doorway: parse the command line, take the sockets systemd passed (while chatd has one
//! thread), start logging, bind, run, and turn an error into one line and an exit code.

use std::io::{self, Write};
use std::process::ExitCode;

use chatd::{Config, Server};

fn main() -> ExitCode {
    let config = Config::from_args();
    if let Some(what) = config.generate {
        let mut out = io::stdout().lock();
        if let Err(e) = chatd::generate(what, &mut out).and_then(|()| out.flush()) {
            eprintln!("chatd: --generate: {e}");
            return ExitCode::FAILURE;
        }
        return ExitCode::SUCCESS;
    }
    // SAFETY: no other thread exists yet (the console's starts in `Server::run`), as removing the
    // LISTEN_* variables from the environment requires.
    let passed = match unsafe { chatd::take_passed_listeners() } {
        Ok(passed) => passed,
        Err(e) => {
            eprintln!("chatd: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let (Some(_), Some(addr)) = (&passed.metrics, config.metrics) {
        eprintln!(
            "chatd: socket activation: a socket named metrics was passed and --metrics {addr} given; use one"
        );
        return ExitCode::FAILURE;
    }
    if let Err(e) = chatd::init_logging(
        config.log_level,
        config.log_file.as_deref(),
        config.log_max_size(),
        config.log_format,
        config.log_time,
    ) {
        eprintln!("chatd: {e}");
        return ExitCode::FAILURE;
    }
    let code = match Server::bind(&config, passed).map_err(|e| e.to_string()) {
        Err(e) => {
            eprintln!("chatd: {e}");
            ExitCode::FAILURE
        }
        Ok(server) => match server.run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                log::error!(event = "loop_failed", error:% = e; "event loop failed: {e}");
                ExitCode::FAILURE
            }
        },
    };
    chatd::flush_reports();
    // A line editor on the terminal draws the last reports and gives the terminal back.
    chatd::finish_editor();
    code
}
