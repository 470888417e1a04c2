//! What the kernel's call of a program costs before the program's first
//! instruction: the floor under every run of every probe, which no probe
//! body can go below. The bpf statistics cannot show it (they time a
//! program from its first instruction to its last), and BPF_PROG_TEST_RUN
//! calls the program from a loop of its own, not from the hook.
//!
//! UDP datagrams go from the host lab's client node to a socket on the
//! server node that never reads them, each sent, routed, forwarded and
//! dropped within the sender's `send` call. Passes with no program and
//! with [`PROGRAMS`] programs that do nothing on one hook alternate
//! (ABBA, as `lab overhead`'s setups); a round's difference in time per
//! datagram, over the programs' runs per datagram, is one run's floor. Needs root and nginx (the lab's).
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
/// Rounds of one pass without the programs and one with, in turn (ABBA).
const ROUNDS: usize = 10;
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
    send(&sender, 1000); // the neighbour entries, the caches

    println!(
        "hook floor: {DATAGRAMS} UDP datagrams a pass from the host lab's client node, \
         {ROUNDS} rounds in turn (ABBA), 0 and {PROGRAMS} programs that do nothing"
    );
    println!(
        "  {:<34} {:>12} {:>12} {:>10} {:>14}",
        "hook", "no programs", "programs", "runs/dgram", "ns a run"
    );
    let hooks: [(&str, &dyn Fn() -> Attached); 2] = [
        ("tcx egress of the client's eth0", &|| {
            tcx_programs(&client, "eth0")
        }),
        ("tracepoint net_dev_start_xmit", &traced_programs),
    ];
    for (name, attach) in hooks {
        let runs = runs_per_datagram(&sender, attach);
        // Setup 0 without the programs, setup 1 with them.
        let passes = rounds::interleave(ROUNDS, 2, |setup| {
            let _attached = (setup == 1).then(attach);
            Ok(ns_per_datagram(&sender))
        })
        .expect("the passes");
        let [without, with] = [&passes[0], &passes[1]].map(|ns| Spread::of(ns.clone()).median);
        let floors = Spread::of(
            passes[1]
                .iter()
                .zip(&passes[0])
                .map(|(with, without)| (with - without) / (PROGRAMS as f64 * runs))
                .collect(),
        );
        println!(
            "  {name:<34} {without:>9.0} ns {with:>9.0} ns {runs:>10.2} {:>6.1} ({:.1}..{:.1})",
            floors.median, floors.min, floors.max,
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

fn ns_per_datagram(socket: &UdpSocket) -> f64 {
    let start = Instant::now();
    send(socket, DATAGRAMS);
    start.elapsed().as_nanos() as f64 / f64::from(DATAGRAMS)
}

/// How often the programs run a datagram, from the bpf statistics (on only
/// for this pass, as they add to every run).
fn runs_per_datagram(sender: &UdpSocket, attach: &dyn Fn() -> Attached) -> f64 {
    let attached = attach();
    let stats = enable_stats(Stats::RunTime).expect("bpf run-time statistics");
    let before = attached.run_count();
    send(sender, DATAGRAMS);
    let runs = attached.run_count() - before;
    drop(stats);
    runs as f64 / PROGRAMS as f64 / f64::from(DATAGRAMS)
}

/// [`PROGRAMS`] copies of a do-nothing program, each loaded from its own
/// object (tcx takes a program once a hook), attached until dropped.
struct Attached {
    objects: Vec<Ebpf>,
    program: &'static str,
}

impl Attached {
    /// Loads and attaches the copies of `program` with `attach`.
    fn copies(program: &'static str, attach: impl Fn(&mut Program)) -> Self {
        let objects = (0..PROGRAMS)
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

fn tcx_programs(node: &NetNs, device: &str) -> Attached {
    let _in_node = node.enter().expect("enter the node");
    Attached::copies("np_test_nothing", |program| {
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

fn traced_programs() -> Attached {
    let btf = Btf::from_sys_fs().expect("kernel BTF");
    Attached::copies("np_test_nothing_traced", |program| {
        let program: &mut BtfTracePoint = program.try_into().expect("BTF tracepoint");
        program
            .load("net_dev_start_xmit", &btf)
            .expect("np_test_nothing_traced loads");
        program.attach().expect("attach on the tracepoint");
    })
}
