//! The head of an HTTP/1.1 response, parsed with httparse: its status,
//! whether the connection can carry another request, and how the body after
//! it ends (RFC 9112 section 6.3). The load generator's reader and the lab's
//! check of its server both parse responses with it.

use thiserror::Error;

/// Headers a response may have.
const MAX_HEADERS: usize = 64;

#[derive(Debug, Error)]
pub enum HeadError {
    #[error("malformed response head: {0}")]
    Malformed(httparse::Error),
    #[error("invalid Content-Length")]
    ContentLength,
}

/// How the body after a head ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    Empty,
    Length(u64),
    Chunked,
    /// At the end of the connection.
    UntilClose,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// Bytes from the status line to the blank line after the headers.
    pub len: usize,
    pub status: u16,
    /// Whether the connection can carry the next request.
    pub keep_alive: bool,
    pub body: Body,
}

/// The head at the start of `bytes`; `None` while it is incomplete.
pub fn parse_head(bytes: &[u8]) -> Result<Option<Head>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(len) = parsed.parse(bytes).map_err(HeadError::Malformed)? else {
        return Ok(None);
    };
    let status = parsed.code.unwrap_or_default();
    // HTTP/1.1 keeps the connection unless told otherwise, 1.0 the reverse.
    let mut keep_alive = parsed.version == Some(1);
    let mut length = None;
    let mut transfer_encoding = None;
    for header in parsed.headers.iter() {
        if header.name.eq_ignore_ascii_case("connection") {
            for option in tokens(header.value) {
                if option.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if option.eq_ignore_ascii_case(b"keep-alive") {
                    keep_alive = true;
                }
            }
        } else if header.name.eq_ignore_ascii_case("content-length") {
            let value = parse_length(header.value).ok_or(HeadError::ContentLength)?;
            if length.is_some_and(|previous| previous != value) {
                return Err(HeadError::ContentLength);
            }
            length = Some(value);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            transfer_encoding = tokens(header.value).last();
        }
    }
    let body = match (status, transfer_encoding, length) {
        (100..=199 | 204 | 304, _, _) => Body::Empty,
        (_, Some(coding), _) if coding.eq_ignore_ascii_case(b"chunked") => Body::Chunked,
        (_, Some(_), _) | (_, None, None) => Body::UntilClose,
        (_, None, Some(len)) => Body::Length(len),
    };
    if body == Body::UntilClose {
        keep_alive = false;
    }
    Ok(Some(Head {
        len,
        status,
        keep_alive,
        body,
    }))
}

/// The comma-separated elements of a header value, trimmed.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(<[u8]>::trim_ascii)
        .filter(|token| !token.is_empty())
}

fn parse_length(value: &[u8]) -> Option<u64> {
    let digits = value.trim_ascii();
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_head_once_all_of_it_has_arrived() {
        let head = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nContent-Length: 100\r\n\
            Connection: keep-alive\r\n\r\n";
        let mut response = head.to_vec();
        response.extend_from_slice(&[b'x'; 100]);
        for end in 0..head.len() {
            assert_eq!(parse_head(&response[..end]).unwrap(), None, "{end} bytes");
        }
        let whole = Head {
            len: head.len(),
            status: 200,
            keep_alive: true,
            body: Body::Length(100),
        };
        for end in [head.len(), response.len()] {
            assert_eq!(parse_head(&response[..end]).unwrap(), Some(whole));
        }
    }

    #[test]
    fn frames_the_body_by_status_and_headers() {
        for (head, body, keep_alive) in [
            (
                &b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n"[..],
                Body::Empty,
                true,
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                Body::Chunked,
                true,
            ),
            (b"HTTP/1.1 200 OK\r\n\r\n", Body::UntilClose, false),
            (
                b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n",
                Body::Length(2),
                false,
            ),
        ] {
            let parsed = parse_head(head).unwrap().unwrap();
            assert_eq!(
                (parsed.body, parsed.keep_alive),
                (body, keep_alive),
                "{}",
                String::from_utf8_lossy(head)
            );
        }
    }
}
