//! `netprobe attach` run as users run it: the real binary, in the
//! background, stopped with SIGTERM, its JSON report read back.

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use netprobe::report::Report;
use tempfile::TempDir;

pub const NETPROBE: &str = env!("CARGO_BIN_EXE_netprobe");
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs netprobe to completion.
pub fn netprobe(args: &[&str]) -> Output {
    Command::new(NETPROBE)
        .args(args)
        .output()
        .expect("netprobe runs")
}

/// A one-second `netprobe attach eth0 --quiet` in `node`, with `flags`
/// added; it must succeed.
pub fn attach_for_a_second(node: &str, flags: &[&str]) -> Output {
    let mut args = vec![
        "attach",
        "eth0",
        "--netns",
        node,
        "--duration",
        "1s",
        "--quiet",
    ];
    args.extend_from_slice(flags);
    let output = netprobe(&args);
    assert!(output.status.success(), "{output:?}");
    output
}

/// Starts `command` (netprobe) with `--ready-file READY` and returns once
/// that file appears; fails if netprobe exits first or takes too long.
pub fn start_until_ready(mut command: Command, ready: &Path) -> Child {
    let mut child = command
        .arg("--ready-file")
        .arg(ready)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("netprobe starts");
    let deadline = Instant::now() + READY_TIMEOUT;
    while !ready.exists() {
        if let Some(status) = child.try_wait().expect("wait") {
            let output = child.wait_with_output();
            panic!("{command:?} exited early ({status}): {output:?}");
        }
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("{command:?} not ready in {READY_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

/// A running `netprobe attach`.
pub struct Session {
    child: Option<Child>,
    dir: TempDir,
}

impl Session {
    /// Starts `netprobe attach IFACE --netns NETNS ARGS` and returns once
    /// the probes are attached (the hidden --ready-file appears).
    pub fn start(interface: &str, netns: &str, args: &[&str]) -> Session {
        let dir = tempfile::tempdir().expect("temporary directory");
        let ready = dir.path().join("ready");
        let mut command = Command::new(NETPROBE);
        command
            .args(["attach", interface, "--netns", netns, "--quiet", "--json"])
            .arg(dir.path().join("report.json"))
            .args(args);
        let child = start_until_ready(command, &ready);
        Session {
            child: Some(child),
            dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGTERM, as a user's Ctrl-C or `kill`; returns the final report.
    pub fn stop(mut self) -> Report {
        let child = self.child.take().expect("running");
        signal(child.id(), libc::SIGTERM);
        let output = child.wait_with_output().expect("netprobe attach exits");
        assert!(
            output.status.success(),
            "netprobe attach failed: {output:?}"
        );
        let json = fs::read_to_string(self.report_path()).expect("JSON report written");
        serde_json::from_str(&json).expect("JSON report parses")
    }

    /// `kill -9`: no chance to clean up.
    pub fn kill(mut self) {
        let mut child = self.child.take().expect("running");
        signal(child.id(), libc::SIGKILL);
        child.wait().expect("reaped");
    }

    fn report_path(&self) -> PathBuf {
        self.dir.path().join("report.json")
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), libc::SIGKILL);
            child.wait().ok();
        }
    }
}

pub fn signal(pid: u32, signal: libc::c_int) {
    assert_eq!(
        unsafe { libc::kill(pid as libc::pid_t, signal) },
        0,
        "signal {signal} to {pid}"
    );
}
