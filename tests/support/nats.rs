//! Real nats-servers for the `--bus` tests: started on free ports (`-p -1`, the port read from the
//! server's own `Listening for client connections on` line, with a deadline), JetStream in a
//! temporary store, optionally a cluster with routes; killed and their store removed on `Drop`.
//! A killed server can be started again on the same port, as an operator restarting it would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::thread;
use std::time::{Duration, Instant};

/// One running (or killed) nats-server.
pub struct Nats {
    child: Option<Child>,
    /// Its client port.
    pub port: u16,
    /// Its route port, when it is in a cluster.
    pub route_port: Option<u16>,
    store: PathBuf,
    cluster: Option<String>,
}

impl Nats {
    /// A nats-server with JetStream on a free port.
    #[track_caller]
    pub fn start() -> Nats {
        Nats::launch(None, None, None, None)
    }

    /// The first server of a cluster (routes on a free port).
    #[track_caller]
    pub fn start_seed() -> Nats {
        Nats::launch(None, Some("-1".into()), None, None)
    }

    /// A server that joins `seed`'s cluster.
    #[track_caller]
    pub fn start_joining(seed: &Nats) -> Nats {
        let route = seed.route_port.expect("the seed has a route port");
        Nats::launch(None, Some("-1".into()), Some(route), None)
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server (SIGSTOP) or lets it go on (SIGCONT): a stuck server, its connections
    /// open.
    pub fn pause(&self, paused: bool) {
        let Some(child) = &self.child else {
            return;
        };
        let signal = if paused { "-STOP" } else { "-CONT" };
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal}");
    }

    /// Starts a killed server again on its port, with its store.
    #[track_caller]
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "restart a killed server only");
        let mut again = Nats::launch(Some(self.port), None, None, Some(self.store.clone()));
        self.child = again.child.take();
        again.store = PathBuf::new(); // Still this one's: not removed as `again` goes.
    }

    /// Starts a killed server again on its port with its store emptied, as a new data directory
    /// or a recreated container would: JetStream has no streams, so no bucket of names.
    #[track_caller]
    pub fn restart_empty(&mut self) {
        let _ = std::fs::remove_dir_all(&self.store);
        self.restart();
    }

    #[track_caller]
    fn launch(
        port: Option<u16>,
        cluster: Option<String>,
        routes: Option<u16>,
        store: Option<PathBuf>,
    ) -> Nats {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let store = store.unwrap_or_else(|| {
            std::env::temp_dir().join(format!("chatd-nats-{}-{n}", std::process::id()))
        });
        // Debian installs it in /usr/sbin, which a user's PATH may lack.
        let program = if Path::new(SBIN_NATS_SERVER).exists() {
            SBIN_NATS_SERVER
        } else {
            NATS_SERVER
        };
        let mut command = Command::new(program);
        let port_arg = port.map_or("-1".to_owned(), |p| p.to_string());
        command.args(["-a", "127.0.0.1", "-p", &port_arg]);
        match &cluster {
            Some(route_port) => {
                command.args(["--cluster", &format!("nats://127.0.0.1:{route_port}")]);
                command.args(["--cluster_name", "chatd-test"]);
            }
            None => {
                command.args(["-js", "-sd"]).arg(&store);
            }
        }
        if let Some(route) = routes {
            command.args(["--routes", &format!("nats://127.0.0.1:{route}")]);
        }
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {NATS_SERVER} (apt-get install nats-server): {e}"));
        let lines = crate::common::lines_of(child.stderr.take().expect("piped stderr"));
        let mut nats = Nats {
            child: Some(child),
            port: 0,
            route_port: None,
            store,
            cluster,
        };
        nats.port = wait_for_port(&lines, "Listening for client connections on ");
        wait_for_port_line(&lines, "Server is ready");
        if nats.cluster.is_some() {
            nats.route_port = Some(wait_for_port(&lines, "Listening for route connections on "));
        }
        // Keep reading its log, so that a full pipe never stops the server.
        thread::spawn(move || while lines.recv().is_ok() {});
        nats
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.pause(false);
        self.kill();
        if !self.store.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.store);
        }
    }
}

#[track_caller]
fn wait_for_port(lines: &Receiver<String>, needle: &str) -> u16 {
    let line = wait_for_port_line(lines, needle);
    let (_, addr) = line.split_once(needle).expect("needle in line");
    let port = addr.trim().rsplit(':').next().expect("a port");
    port.parse()
        .unwrap_or_else(|_| panic!("no port in {line:?}"))
}

#[track_caller]
fn wait_for_port_line(lines: &Receiver<String>, needle: &str) -> String {
    let deadline = Instant::now() + START_WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(_) => {}
            Err(_) => panic!("nats-server did not say {needle:?} within {START_WAIT:?}"),
        }
    }
}

const NATS_SERVER: &str = "nats-server";
const SBIN_NATS_SERVER: &str = "/usr/sbin/nats-server";
const START_WAIT: Duration = Duration::from_secs(10);
