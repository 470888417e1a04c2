//! What the kernel's call of a program costs before the program's first
//! instruction: the floor under every run of every probe, which no probe
//! body can go below. The bpf statistics cannot show it (they time a
//! program from its first instruction to its last), and BPF_PROG_TEST_RUN
//! calls the program from a loop of its own, not from the hook.
//!
//! UDP datagrams go from the host lab's client node to a socket on the
//! server node that never reads them, each sent, routed, forwarded and
//! dropped within the sender's `send` call. Passes with no program, with
//! one and with [`PROGRAMS`] programs that do nothing on one hook take
//! turns (ABBA, as `lab overhead`'s setups). A round's difference in time
//! per datagram between [`PROGRAMS`] programs and one, over the 31 more
//! runs, is one run's floor: what one more program in a chain costs. The
//! difference between one program and none is the first program's, which
//! also pays for entering the hook. Needs root and nginx (the lab's).
//!
//!     cargo bench -p netprobe --bench hook_floor

use std::{
    net::{SocketAddrV4, UdpSocket},
    os::fd::AsRawFd,
    time::Instant,
};

use aya::{
    Btf, Ebpf, EbpfLoader,
    programs::{
        BtfTracePoint, LinkOrder, Program, SchedClassifier, TcAttachType,
        tc::{SchedClassifierLinkId, TcAttachOptions},
    },
    sys::{Stats, enable_stats},
};
use netprobe::{
    lab::{LabGuard, LabSpec, Mode, unique_prefix},
    netns::NetNs,
    overhead::rounds::{self, Spread},
    privilege::require_bpf_privileges,
    probes::TESTING_OBJECT,
};

/// Programs that do nothing, attached together on the hook measured.
const PROGRAMS: usize = 32;
/// Datagrams a pass.
const DATAGRAMS: u32 = 100_000;
/// Datagrams sent untimed before a pass.
const WARM_UP: u32 = 1000;
/// Rounds of one pass with no program, one and [`PROGRAMS`], in turn
/// (ABBA).
const ROUNDS: usize = 30;
const PORT: u16 = 9;

fn main() {
    if let Err(error) = require_bpf_privileges() {
        panic!("hook_floor loads BPF programs: {error}");
    }
    let lab = LabGuard::up(&LabSpec::new(unique_prefix("nphf"), Mode::Host)).expect("host lab");
    let client = NetNs::named(&lab.nodes()[0].netns).expect("client node");
    let server = NetNs::named(&lab.nodes()[1].netns).expect("server node");
    let target = SocketAddrV4::new(lab.nodes()[1].ip, PORT);
    let sink = server
        .run(|| quiet_sink(PORT))
        .expect("enter the server node");
    let sender = client
        .run(|| {
            let socket = UdpSocket::bind("0.0.0.0:0")?;
            socket.connect(target)?;
            Ok::<_, std::io::Error>(socket)
        })
        .expect("enter the client node")
        .expect("the client's socket");
    send(&sender, WARM_UP); // the neighbour entries, the caches
    // A program on a hook of the server's that no datagram crosses keeps
    // tcx's egress switched on in every pass: the kernel patches its code
    // when the first tcx program of the machine comes or the last goes, so
    // with none at all a pass with one program would pay for that too.
    let _tcx_on = tcx_programs(&server, "eth0", 1);

    println!(
        "hook floor: {DATAGRAMS} UDP datagrams a pass from the host lab's client node, \
         {ROUNDS} rounds in turn (ABBA), 0, 1 and {PROGRAMS} programs that do nothing; \
         ns a datagram, medians (the rounds' range)"
    );
    println!(
        "  {:<32} {:>8} {:>8} {:>8} {:>6} {:>20} {:>20}",
        "hook", "none", "one", "all", "runs", "first program", "one more program"
    );
    let hooks: [(&str, &dyn Fn(usize) -> Attached); 2] = [
        ("tcx egress of the client's eth0", &|copies| {
            tcx_programs(&client, "eth0", copies)
        }),
        ("tracepoint net_dev_start_xmit", &traced_programs),
    ];
    for (name, attach) in hooks {
        let runs = runs_per_datagram(&sender, attach);
        // Setup 0 with no program, 1 with one, 2 with all.
        let copies = [0, 1, PROGRAMS];
        let passes = rounds::interleave(ROUNDS, copies.len(), |setup| {
            let _attached = attach(copies[setup]);
            Ok(ns_per_datagram(&sender))
        })
        .expect("the passes");
        let [none, one, all] = [0, 1, 2].map(|setup| Spread::of(passes[setup].clone()).median);
        let per_run = |more: usize, from: usize, runs_more: f64| {
            Spread::of(
                passes[more]
                    .iter()
                    .zip(&passes[from])
                    .map(|(more, fewer)| (more - fewer) / runs_more)
                    .collect(),
            )
        };
        let first = per_run(1, 0, runs);
        let more = per_run(2, 1, (PROGRAMS - 1) as f64 * runs);
        let shown = |spread: Spread| {
            format!(
                "{:.1} ({:.1}..{:.1})",
                spread.median, spread.min, spread.max
            )
        };
        println!(
            "  {name:<32} {none:>8.0} {one:>8.0} {all:>8.0} {runs:>6.2} {:>20} {:>20}",
            shown(first),
            shown(more),
        );
    }
    drop(sink);
    lab.down().expect("lab down");
}

/// A socket no one reads, with the smallest receive buffer: once it is
/// full every datagram is dropped at it, at the same cost each.
fn quiet_sink(port: u16) -> UdpSocket {
    let socket = UdpSocket::bind(("0.0.0.0", port)).expect("the server's socket");
    let smallest: libc::c_int = 0; // the kernel rounds it up to its minimum
    let set = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw const smallest).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(set, 0, "SO_RCVBUF: {}", std::io::Error::last_os_error());
    socket
}

fn send(socket: &UdpSocket, datagrams: u32) {
    let payload = [0u8; 64];
    for _ in 0..datagrams {
        socket.send(&payload).expect("send a datagram");
    }
}

/// Time per datagram, after a few to warm the programs just attached.
fn ns_per_datagram(socket: &UdpSocket) -> f64 {
    send(socket, WARM_UP);
    let start = Instant::now();
    send(socket, DATAGRAMS);
    start.elapsed().as_nanos() as f64 / f64::from(DATAGRAMS)
}

/// How often each program runs a datagram, from the bpf statistics (on
/// only for this pass, as they add to every run).
fn runs_per_datagram(sender: &UdpSocket, attach: &dyn Fn(usize) -> Attached) -> f64 {
    let attached = attach(PROGRAMS);
    let stats = enable_stats(Stats::RunTime).expect("bpf run-time statistics");
    let before = attached.run_count();
    send(sender, DATAGRAMS);
    let runs = attached.run_count() - before;
    drop(stats);
    runs as f64 / PROGRAMS as f64 / f64::from(DATAGRAMS)
}

/// Copies of a do-nothing program, each loaded from its own object (tcx
/// takes a program once a hook), attached until dropped.
struct Attached {
    objects: Vec<Ebpf>,
    program: &'static str,
}

impl Attached {
    /// Loads and attaches `copies` copies of `program` with `attach`.
    fn copies(program: &'static str, copies: usize, attach: impl Fn(&mut Program)) -> Self {
        let objects = (0..copies)
            .map(|_| {
                let mut object = EbpfLoader::new()
                    .load(TESTING_OBJECT)
                    .expect("testing object loads");
                attach(object.program_mut(program).expect(program));
                object
            })
            .collect();
        Self { objects, program }
    }

    fn run_count(&self) -> u64 {
        self.objects
            .iter()
            .map(|object| {
                let program = object.program(self.program).expect(self.program);
                program.info().expect("program info").run_count()
            })
            .sum()
    }
}

fn tcx_programs(node: &NetNs, device: &str, copies: usize) -> Attached {
    let _in_node = node.enter().expect("enter the node");
    Attached::copies("np_test_nothing", copies, |program| {
        let program: &mut SchedClassifier = program.try_into().expect("classifier");
        program.load().expect("np_test_nothing loads");
        let _: SchedClassifierLinkId = program
            .attach_with_options(
                device,
                TcAttachType::Egress,
                TcAttachOptions::TcxOrder(LinkOrder::last()),
            )
            .expect("attach on tcx egress");
    })
}

fn traced_programs(copies: usize) -> Attached {
    let btf = Btf::from_sys_fs().expect("kernel BTF");
    Attached::copies("np_test_nothing_traced", copies, |program| {
        let program: &mut BtfTracePoint = program.try_into().expect("BTF tracepoint");
        program
            .load("net_dev_start_xmit", &btf)
            .expect("np_test_nothing_traced loads");
        program.attach().expect("attach on the tracepoint");
    })
}
