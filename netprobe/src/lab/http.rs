//! Just enough of an HTTP/1.1 client to check the lab's server: one GET,
//! read to the end of its body.

use std::{
    io::{self, Read as _, Write as _},
    net::{SocketAddrV4, TcpStream},
    time::Duration,
};

use crate::http_response::{Body, parse_head};

/// Largest header block accepted; nginx's are about 250 bytes.
const MAX_HEADER_LEN: usize = 16 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    /// Bytes from the status line to the blank line after the headers.
    pub header_len: usize,
    pub body_len: usize,
}

/// GETs `path` from `addr`. `timeout` bounds the connect and each read and
/// write.
pub fn get(addr: SocketAddrV4, path: &str, timeout: Duration) -> io::Result<HttpResponse> {
    let mut stream = TcpStream::connect_timeout(&addr.into(), timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())?;

    let mut received = Vec::new();
    let head = loop {
        let parsed = parse_head(&received)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error))?;
        if let Some(head) = parsed {
            break head;
        }
        if received.len() > MAX_HEADER_LEN {
            return Err(invalid("response header too long"));
        }
        read_more(&mut stream, &mut received)?;
    };
    let content_len = match head.body {
        Body::Length(len) => len as usize,
        Body::Empty => 0,
        Body::Chunked | Body::UntilClose => {
            return Err(invalid("no Content-Length in the response"));
        }
    };
    while received.len() < head.len + content_len {
        read_more(&mut stream, &mut received)?;
    }
    Ok(HttpResponse {
        status: head.status,
        header_len: head.len,
        body_len: received.len() - head.len,
    })
}

fn read_more(stream: &mut TcpStream, received: &mut Vec<u8>) -> io::Result<()> {
    let mut chunk = [0; 8192];
    match stream.read(&mut chunk)? {
        0 => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed mid-response",
        )),
        n => {
            received.extend_from_slice(&chunk[..n]);
            Ok(())
        }
    }
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}
