//! Bad input to `netprobe attach`: one line naming the problem, a non-zero
//! exit, and nothing left behind.

mod support;

use std::{
    ffi::CString,
    fs,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::Command,
    sync::{Mutex, MutexGuard},
};

use aya::programs::loaded_links;
use netprobe::{
    lab::{LabGuard, LabSpec, Mode, ResponseSize, unique_prefix},
    netns::NetNs,
    status::{loaded_netprobe_programs, pinned},
};
use support::{
    foreign::{attach_foreign_xdp, xdp_program_on},
    hooks::DeviceHooks,
    require_root,
    session::{NETPROBE, attach_for_a_second},
};

/// Where netprobe keeps its records (labs, fast paths).
const RECORD_DIR: &str = "/run/netprobe";

/// Each test looks for what netprobe has in the kernel and on disk after a
/// command and not before: one test at a time, so that none sees another's.
fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a netprobe command could leave behind once it has exited.
#[derive(Debug)]
struct Leftovers {
    /// netprobe's programs loaded in the kernel, by id and name.
    programs: Vec<(u32, String)>,
    /// bpf_links to them (XDP, tcx, tracepoints), by id.
    links: Vec<u32>,
    /// Files pinned under /sys/fs/bpf/netprobe.
    pins: Vec<String>,
    /// Files and directories under /run/netprobe.
    records: Vec<PathBuf>,
    /// The programs on the hooks of the device the command was given.
    hooks: DeviceHooks,
}

impl Leftovers {
    /// netprobe's state now, with the hooks of `device` in `netns`.
    fn now(netns: &NetNs, device: &str) -> Self {
        let programs: Vec<(u32, String)> = loaded_netprobe_programs()
            .expect("list programs")
            .into_iter()
            .map(|program| (program.id, program.name))
            .collect();
        let links = loaded_links()
            .map(|link| link.expect("list links"))
            .filter(|link| programs.iter().any(|(id, _)| *id == link.program_id()))
            .map(|link| link.id())
            .collect();
        let mut records = Vec::new();
        walk(Path::new(RECORD_DIR), &mut records);
        records.sort();
        Self {
            programs,
            links,
            pins: pinned(),
            records,
            hooks: DeviceHooks::of(netns, device),
        }
    }

    /// What is here and was not `before`.
    fn added_since(&self, before: &Self) -> Self {
        fn added<T: Clone + PartialEq>(now: &[T], before: &[T]) -> Vec<T> {
            now.iter()
                .filter(|item| !before.contains(item))
                .cloned()
                .collect()
        }
        Self {
            programs: added(&self.programs, &before.programs),
            links: added(&self.links, &before.links),
            pins: added(&self.pins, &before.pins),
            records: added(&self.records, &before.records),
            hooks: DeviceHooks {
                xdp: self.hooks.xdp.filter(|id| before.hooks.xdp != Some(*id)),
                tcx_ingress: added(&self.hooks.tcx_ingress, &before.hooks.tcx_ingress),
                tcx_egress: added(&self.hooks.tcx_egress, &before.hooks.tcx_egress),
            },
        }
    }

    fn is_empty(&self) -> bool {
        self.programs.is_empty()
            && self.links.is_empty()
            && self.pins.is_empty()
            && self.records.is_empty()
            && self.hooks.programs().next().is_none()
    }
}

fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            walk(&path, found);
        }
        found.push(path);
    }
}

/// Runs `command`, which names `device` in `netns`; checks it fails with
/// `code` and one line containing `message`, and leaves nothing behind.
fn assert_refused(mut command: Command, (netns, device): (&NetNs, &str), code: i32, message: &str) {
    let before = Leftovers::now(netns, device);
    let output = command.output().expect("netprobe runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(message), "{message:?} not in {stderr:?}");
    let left = Leftovers::now(netns, device).added_since(&before);
    assert!(left.is_empty(), "left behind by {command:?}: {left:?}");
}

/// `netprobe ARGS`, as a command to run.
fn attach(args: &[&str]) -> Command {
    let mut command = Command::new(NETPROBE);
    command.arg("attach").args(args);
    command
}

fn loopback() -> NetNs {
    NetNs::current().expect("current namespace")
}

#[test]
fn unknown_interface_and_namespace() {
    require_root();
    let _turn = one_at_a_time();
    assert_refused(
        attach(&["nosuch0", "--duration", "1s"]),
        (&loopback(), "lo"),
        1,
        "no interface nosuch0 in the current network namespace",
    );
    assert_refused(
        attach(&["lo", "--netns", "nosuch-netns"]),
        (&loopback(), "lo"),
        1,
        "network namespace \"nosuch-netns\" does not exist",
    );
}

#[test]
fn unparsable_arguments() {
    require_root();
    let _turn = one_at_a_time();
    for (args, message) in [
        (&["--duration", "10 parsecs"][..], "--duration"),
        (&["--interval", "soon"], "--interval"),
        (&["--filter", "tcp or udp"], "unknown filter term \"or\""),
        (
            &["--filter", "port 99999"],
            "\"99999\" is not a port number",
        ),
        (&["--xdp-mode", "turbo"], "--xdp-mode"),
    ] {
        assert_refused(
            attach(&[&["lo"][..], args].concat()),
            (&loopback(), "lo"),
            2,
            message,
        );
    }
}

#[test]
fn a_bad_follow_rate_is_named() {
    require_root();
    let _turn = one_at_a_time();
    for rate in ["0", "-1", "-32", "many", "1.5", ""] {
        assert_refused(
            attach(&["lo", "--follow-one-in", rate]),
            (&loopback(), "lo"),
            2,
            &format!("{rate:?} is not a follow rate: one packet in N, N a whole number from 1 up"),
        );
    }
    // The overhead benchmark takes the same setting.
    let mut overhead = Command::new(NETPROBE);
    overhead.args(["lab", "overhead", "--follow-one-in", "0"]);
    assert_refused(
        overhead,
        (&loopback(), "lo"),
        2,
        "\"0\" is not a follow rate",
    );
    // Recording packets that are not followed cannot be done.
    assert_refused(
        attach(&["lo", "--follow-one-in", "32", "--sample", "8"]),
        (&loopback(), "lo"),
        1,
        "recording one packet in 8 asks for packets that are not followed (one in 32)",
    );
}

#[test]
fn missing_privileges() {
    require_root();
    let _turn = one_at_a_time();
    // setpriv drops to nobody with no capabilities, as an unprivileged
    // user would run it.
    let mut setpriv = Command::new("setpriv");
    setpriv
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .args([NETPROBE, "attach", "lo", "--duration", "1s"]);
    assert_refused(
        setpriv,
        (&loopback(), "lo"),
        1,
        "netprobe needs root: CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN missing (run it with sudo)",
    );
}

#[test]
fn a_kernel_without_btf() {
    require_root();
    let _turn = one_at_a_time();
    // netprobe in a mount namespace of its own, with an empty tmpfs over
    // /sys/kernel/btf: the kernel's BTF is missing for it alone.
    let mut command = attach(&["lo", "--duration", "1s"]);
    let root = CString::new("/").expect("no NUL");
    let btf_dir = CString::new("/sys/kernel/btf").expect("no NUL");
    let tmpfs = CString::new("tmpfs").expect("no NUL");
    // SAFETY: between fork and exec the child makes only system calls,
    // on strings allocated before the fork.
    unsafe {
        command.pre_exec(move || {
            let check = |result: libc::c_int| {
                if result == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            };
            check(libc::unshare(libc::CLONE_NEWNS))?;
            // Private, so that the tmpfs never shows outside.
            check(libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                tmpfs.as_ptr(),
                btf_dir.as_ptr(),
                tmpfs.as_ptr(),
                0,
                std::ptr::null(),
            ))
        });
    }
    assert_refused(
        command,
        (&loopback(), "lo"),
        1,
        "this kernel has no BTF (/sys/kernel/btf/vmlinux is missing): build it with CONFIG_DEBUG_INFO_BTF=y",
    );
}

#[test]
fn someone_elses_xdp_program_is_refused_and_never_touched() {
    require_root();
    let _turn = one_at_a_time();
    let lab = LabGuard::up(&LabSpec::new(unique_prefix("npae"), Mode::Host)).expect("lab up");
    let node_name = &lab.nodes()[1].netns;
    let node = NetNs::named(node_name).expect("server node");
    let (_foreign, foreign_id) = attach_foreign_xdp(&node, "eth0");
    let xdp_on_eth0 = || xdp_program_on(&node, "eth0");
    assert_eq!(xdp_on_eth0(), Some(foreign_id));

    assert_refused(
        attach(&["eth0", "--netns", node_name, "--duration", "1s"]),
        (&node, "eth0"),
        1,
        &format!("already has an XDP program (id {foreign_id}); netprobe never replaces it"),
    );
    assert_eq!(xdp_on_eth0(), Some(foreign_id));

    // --force measures without XDP and still leaves the program alone.
    let forced = attach_for_a_second(node_name, &["--force"]);
    let stdout = String::from_utf8_lossy(&forced.stdout);
    assert!(
        stdout.contains(&format!(
            "not observed: XDP (XDP program {foreign_id} already holds eth0)"
        )),
        "{stdout}"
    );
    assert!(!stdout.contains("eth0 XDP ->"), "{stdout}");
    assert_eq!(xdp_on_eth0(), Some(foreign_id));
    assert_eq!(lab.fetch(ResponseSize::Small).expect("fetch").status, 200);
}
