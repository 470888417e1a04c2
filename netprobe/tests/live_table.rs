//! `netprobe attach` on a terminal, as a person sees it: run in tmux on a
//! lab's server node while requests flow, its live table has a row per
//! segment with counts that grow; Ctrl-C typed in the pane prints the final
//! report (with `--sample`, its exemplars) and detaches. Off a terminal it
//! prints a plain line per interval instead.

mod support;

use std::{
    fs,
    path::Path,
    process::{Command, Output},
    thread,
    time::{Duration, Instant},
};

use netprobe::{
    lab::{LabGuard, LabSpec, Mode, ResponseSize, unique_prefix},
    report::Report,
    status::loaded_netprobe_programs,
};
use support::{
    browser::artifacts_dir,
    require_root,
    session::{NETPROBE, start_until_ready},
    traffic::{round_trips, small_round_trips},
};

/// A tmux session of its own, killed when dropped.
struct Tmux {
    name: String,
}

fn tmux(args: &[&str]) -> Output {
    let output = Command::new("tmux").args(args).output();
    let output = output.expect("tmux runs (`cargo xtask test` installs it)");
    assert!(output.status.success(), "tmux {args:?}: {output:?}");
    output
}

impl Tmux {
    /// Runs `command` in a new detached session of `width` x `height`;
    /// the pane stays after the command ends.
    fn start(name: &str, (width, height): (u16, u16), command: &str) -> Self {
        let size = [width.to_string(), height.to_string()];
        tmux(&[
            "new-session",
            "-d",
            "-s",
            name,
            "-x",
            &size[0],
            "-y",
            &size[1],
            command,
        ]);
        tmux(&["set-option", "-t", name, "remain-on-exit", "on"]);
        Self {
            name: name.to_owned(),
        }
    }

    /// The pane's text as it shows now.
    fn capture(&self) -> String {
        let output = tmux(&["capture-pane", "-p", "-t", &self.name]);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The pane's text with all it scrolled past.
    fn capture_all(&self) -> String {
        let output = tmux(&["capture-pane", "-p", "-S", "-", "-t", &self.name]);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// Waits until the pane shows what `shown` accepts, for at most
    /// `timeout`; the pane then.
    fn wait_for(&self, timeout: Duration, shown: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let pane = self.capture();
            if shown(&pane) {
                return pane;
            }
            assert!(
                Instant::now() < deadline,
                "not shown in {timeout:?}:\n{pane}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    fn send_keys(&self, keys: &str) {
        tmux(&["send-keys", "-t", &self.name, keys]);
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        // The session may be gone already; nothing else to clean.
        Command::new("tmux")
            .args(["kill-session", "-t", &self.name])
            .output()
            .ok();
    }
}

/// The counts of the first "end to end" row of a pane of the live table:
/// the last interval's and the session's (the only whole numbers on it).
fn end_to_end_counts(pane: &str) -> Option<(u64, u64)> {
    let line = pane
        .lines()
        .find(|line| line.trim_start().starts_with("end to end"))?;
    let mut counts = line
        .split_whitespace()
        .filter_map(|word| word.parse::<u64>().ok());
    Some((counts.next()?, counts.next()?))
}

#[test]
fn the_live_table_redraws_per_segment_and_ctrl_c_prints_the_final_report() {
    require_root();
    let lab =
        LabGuard::up(&LabSpec::new(unique_prefix("nplive"), Mode::FlannelVxlan)).expect("lab up");
    let node = &lab.nodes()[1].netns;
    let dir = tempfile::tempdir().expect("temporary directory");
    let (ready, json) = (dir.path().join("ready"), dir.path().join("report.json"));
    // Every packet followed: the counts are of all the requests sent.
    let command = format!(
        "{NETPROBE} attach eth0 --netns {node} --interval 0.5 --follow-one-in 1 --sample 4 --json {} \
         --ready-file {}; echo netprobe exited $?",
        json.display(),
        ready.display()
    );
    let pane = Tmux::start(
        &format!("nplive{}", std::process::id()),
        (200, 50),
        &command,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready.exists() {
        assert!(
            Instant::now() < deadline,
            "attach not ready:\n{}",
            pane.capture()
        );
        thread::sleep(Duration::from_millis(20));
    }
    let pid: u32 = fs::read_to_string(&ready)
        .expect("ready file")
        .trim()
        .parse()
        .expect("a pid");

    // Requests while the table redraws: the interval's end-to-end count
    // is that of the last half second's packets.
    let (client, server) = (lab.client_netns().to_owned(), lab.server_addr());
    let traffic = thread::spawn(move || {
        for _ in 0..10 {
            round_trips(&client, server, ResponseSize::Small.path(), 300);
        }
    });
    let table = pane.wait_for(Duration::from_secs(30), |pane| {
        end_to_end_counts(pane).is_some_and(|(last, _)| last > 0)
    });
    traffic.join().expect("traffic");
    fs::write(artifacts_dir().join("live-table.txt"), &table).expect("keeping the pane");
    // Redrawn in place: once the requests stop, the last interval counts
    // none and the session still has them all.
    let quiet = pane.wait_for(Duration::from_secs(10), |pane| {
        end_to_end_counts(pane).is_some_and(|(last, total)| last == 0 && total >= 3000)
    });
    assert_eq!(
        quiet.matches("ingress: wire to socket").count(),
        1,
        "{quiet}"
    );
    for expected in [
        "q or Ctrl-C: stop",
        "ingress: wire to socket",
        "egress: socket to wire",
        "eth0 TC ingress -> flannel.1",
        "flannel.1 -> cni0",
        "socket write ->",
    ] {
        assert!(table.contains(expected), "{expected:?} not in:\n{table}");
    }
    let header = table
        .lines()
        .find(|line| line.contains("segment"))
        .expect("a header");
    assert_eq!(header.matches("coverage").count(), 2, "{header}");
    // A row per segment of the path, in both directions, and each
    // direction's end to end.
    let rows = table.lines().filter(|line| line.contains(" -> ")).count();
    assert!(rows >= 8, "{rows} rows:\n{table}");
    assert_eq!(table.matches("end to end").count(), 2, "{table}");

    pane.send_keys("C-c");
    pane.wait_for(Duration::from_secs(30), |pane| {
        pane.contains("netprobe exited")
    });
    let after = pane.capture_all();
    fs::write(artifacts_dir().join("live-table-after.txt"), &after).expect("keeping the pane");
    assert!(after.contains("netprobe exited 0"), "{after}");
    // The table is gone (the alternate screen left), the final report is
    // there, with its sampled exemplars.
    assert!(!after.contains("q or Ctrl-C: stop"), "{after}");
    for expected in [
        "unmatched",
        "median ingress packet",
        "slowest egress packet",
    ] {
        assert!(after.contains(expected), "{expected:?} not in:\n{after}");
    }
    let report: Report =
        serde_json::from_str(&fs::read_to_string(&json).expect("JSON report")).expect("a report");
    assert_eq!(report.exemplars.len(), 6, "{:?}", report.exemplars);
    for exemplar in &report.exemplars {
        let last = exemplar.sample.hops.last().and_then(|hop| hop.offset_ns);
        assert_eq!(last, Some(exemplar.total_ns), "{exemplar:?}");
        assert!(
            exemplar
                .sample
                .hops
                .iter()
                .all(|hop| hop.offset_ns.is_some())
        );
    }
    // Detached: nothing of the session's is loaded any more.
    let left: Vec<_> = loaded_netprobe_programs()
        .expect("list programs")
        .into_iter()
        .filter(|program| program.holders.iter().any(|holder| holder.pid == pid))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "netprobe still runs"
    );
}

#[test]
fn off_a_terminal_it_prints_a_plain_line_per_interval() {
    require_root();
    let lab =
        LabGuard::up(&LabSpec::new(unique_prefix("nplines"), Mode::FlannelVxlan)).expect("lab up");
    let dir = tempfile::tempdir().expect("temporary directory");
    // stdout is a pipe; --duration and --interval as bare seconds.
    let mut command = Command::new(NETPROBE);
    command.args(["attach", "eth0", "--netns", &lab.nodes()[1].netns]);
    command.args([
        "--duration",
        "3",
        "--interval",
        "0.5",
        "--follow-one-in",
        "1",
    ]);
    let attach = start_until_ready(command, &dir.path().join("ready"));
    small_round_trips(&lab, 300);
    let output = attach.wait_with_output().expect("netprobe attach exits");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(!stdout.contains('\x1b'), "escape codes in:\n{stdout}");
    // "[1s] ingress p50 .. p99 .. n=.. (last 0.5s: p50 .. n=..), egress ..."
    let lines: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with('['))
        .collect();
    assert!(lines.len() >= 3, "{stdout}");
    for line in &lines {
        for expected in [
            "s] ingress p50 ",
            ", egress p50 ",
            " n=",
            "(last 0.5s: p50 ",
        ] {
            assert!(line.contains(expected), "{expected:?} not in {line:?}");
        }
    }
    assert!(stdout.contains("end to end"), "no final report:\n{stdout}");
}
