//! `netprobe agent` run as users run it: the real binary in the background,
//! asked over HTTP (with curl), stopped with SIGTERM or `kill -9`.

use std::{
    process::{Child, Command, Output},
    thread::sleep,
    time::{Duration, Instant},
};

use netprobe::report::Report;
use tempfile::TempDir;

use super::session::{NETPROBE, signal, start_until_ready};

/// A running `netprobe agent`.
pub struct Agent {
    child: Option<Child>,
    /// Where it listens: `127.0.0.1:PORT`.
    pub address: String,
    _dir: TempDir,
}

/// An HTTP response: status and body.
pub struct Response {
    pub status: u16,
    pub body: String,
}

/// GET `url` with curl, `headers` added.
pub fn get(url: &str, headers: &[&str]) -> Response {
    let mut curl = Command::new("curl");
    curl.args(["-sS", "--max-time", "10", "-w", "\n%{http_code}"]);
    for header in headers {
        curl.args(["-H", header]);
    }
    let output = curl.arg(url).output().expect("curl runs");
    assert!(output.status.success(), "curl {url}: {output:?}");
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    let (body, status) = text.rsplit_once('\n').expect("status line");
    Response {
        status: status.parse().expect("status"),
        body: body.to_owned(),
    }
}

impl Agent {
    /// Starts `netprobe agent eth0 --netns NETNS` listening on a free
    /// loopback port, with `args`; returns once it serves.
    pub fn start(netns: &str, args: &[&str]) -> Agent {
        let dir = tempfile::tempdir().expect("temporary directory");
        let ready = dir.path().join("ready");
        let mut command = Command::new(NETPROBE);
        command
            .args(["agent", "eth0", "--netns", netns, "--listen", "127.0.0.1:0"])
            .args(args);
        let child = start_until_ready(command, &ready);
        let address = std::fs::read_to_string(&ready).expect("the ready file names the address");
        Agent {
            child: Some(child),
            address,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    pub fn get(&self, path: &str) -> Response {
        get(&format!("http://{}{path}", self.address), &[])
    }

    /// /metrics in the Prometheus text format.
    pub fn metrics(&self) -> String {
        let response = self.get("/metrics");
        assert_eq!(response.status, 200, "{}", response.body);
        response.body
    }

    /// /report, over `query` (e.g. `?since=5s`).
    pub fn report(&self, query: &str) -> Report {
        let response = self.get(&format!("/report{query}"));
        assert_eq!(response.status, 200, "{}", response.body);
        serde_json::from_str(&response.body).expect("the report parses")
    }

    /// Polls `check` on the agent's report until it holds; returns how long
    /// that took.
    pub fn wait_for(&self, within: Duration, check: impl Fn(&Report) -> bool) -> Duration {
        let start = Instant::now();
        loop {
            if check(&self.report("")) {
                return start.elapsed();
            }
            assert!(start.elapsed() < within, "not within {within:?}");
            sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM; returns how the agent exited and what it printed.
    pub fn stop(mut self) -> Output {
        let child = self.child.take().expect("running");
        signal(child.id(), libc::SIGTERM);
        child.wait_with_output().expect("the agent exits")
    }

    /// `kill -9`: no chance to clean up.
    pub fn kill(mut self) {
        let mut child = self.child.take().expect("running");
        signal(child.id(), libc::SIGKILL);
        child.wait().expect("reaped");
    }
}

/// How long a stopped agent may take to detach and exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

impl Drop for Agent {
    /// SIGTERM, so that the agent removes its lock as it exits; `kill -9`
    /// if it has not exited in [`STOP_TIMEOUT`].
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), libc::SIGTERM);
            let deadline = Instant::now() + STOP_TIMEOUT;
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                sleep(Duration::from_millis(20));
            }
            if child.try_wait().ok().flatten().is_none() {
                signal(child.id(), libc::SIGKILL);
            }
            child.wait().ok();
        }
    }
}
