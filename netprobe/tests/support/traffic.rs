//! Real TCP traffic through a lab: HTTP/1.1 keep-alive requests to its
//! nginx, one at a time, each round trip timed by the client.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddrV4, TcpListener, TcpStream},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use netprobe::{
    lab::{Lab, ResponseSize},
    netns::NetNs,
};

/// Sends `count` GETs of the lab's small response from its client to its
/// server and returns each round trip.
pub fn small_round_trips(lab: &Lab, count: usize) -> Vec<Duration> {
    round_trips(
        lab.client_netns(),
        lab.server_addr(),
        ResponseSize::Small.path(),
        count,
    )
}

/// Sends `count` GETs of `path` over one connection from inside `netns` and
/// returns each round trip.
pub fn round_trips(netns: &str, server: SocketAddrV4, path: &str, count: usize) -> Vec<Duration> {
    let netns = NetNs::named(netns).expect("client namespace");
    netns
        .run(|| {
            let mut stream = TcpStream::connect(server).expect("connect to the lab's nginx");
            stream.set_nodelay(true).expect("nodelay");
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let request = format!("GET {path} HTTP/1.1\r\nHost: {server}\r\n\r\n");
            let mut buffer = vec![0u8; 64 * 1024];
            (0..count)
                .map(|_| {
                    let start = Instant::now();
                    stream.write_all(request.as_bytes()).expect("send request");
                    read_response(&mut stream, &mut buffer);
                    start.elapsed()
                })
                .collect()
        })
        .expect("enter client namespace")
}

/// A second server where the lab runs none: listens at `addr` in `netns`
/// and answers every request of one connection with a short 200, until the
/// client closes it. Returns the requests answered.
pub fn serve_one_connection(netns: &str, addr: SocketAddrV4) -> JoinHandle<usize> {
    let listener = NetNs::named(netns)
        .expect("server namespace")
        .run(|| TcpListener::bind(addr).expect("listen"))
        .expect("enter server namespace");
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().expect("accept");
        stream.set_nodelay(true).expect("nodelay");
        let mut buffer = vec![0u8; 4096];
        let (mut filled, mut answered) = (0, 0);
        loop {
            let read = stream.read(&mut buffer[filled..]).expect("read request");
            if read == 0 {
                return answered;
            }
            filled += read;
            while let Some(end) = buffer[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
                stream
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .expect("answer");
                answered += 1;
                buffer.copy_within(end + 4..filled, 0);
                filled -= end + 4;
            }
        }
    })
}

/// Reads one response: headers, then Content-Length bytes of body.
fn read_response(stream: &mut TcpStream, buffer: &mut [u8]) {
    let mut filled = 0;
    loop {
        let read = stream.read(&mut buffer[filled..]).expect("read response");
        assert!(read > 0, "server closed the connection");
        filled += read;
        let received = &buffer[..filled];
        let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let header = std::str::from_utf8(&received[..end]).expect("UTF-8 header");
        assert!(header.starts_with("HTTP/1.1 200"), "{header}");
        let length: usize = header
            .lines()
            .find_map(|line| line.strip_prefix("Content-Length: "))
            .expect("Content-Length")
            .trim()
            .parse()
            .expect("length");
        if filled >= end + 4 + length {
            assert_eq!(filled, end + 4 + length, "one response at a time");
            return;
        }
    }
}

/// Median of a set of durations.
pub fn median(samples: &[Duration]) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}
