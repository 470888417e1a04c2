//! Real TCP traffic through a lab: HTTP/1.1 keep-alive requests to its
//! nginx, one at a time, each round trip timed by the client.

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddrV4, TcpStream},
    time::{Duration, Instant},
};

use netprobe::netns::NetNs;

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
