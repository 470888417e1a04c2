//! HTTP/1.1 on a keep-alive connection: the one GET request sent over and
//! over, and a reader that takes one whole response at a time off the
//! connection (its head, parsed by [`crate::http_response`], then a body
//! framed by Content-Length, chunked encoding or the end of the connection)
//! without allocating.

use std::io;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt as _};

use super::url::Url;
use crate::http_response::{Body, HeadError, parse_head};

/// Room for a response head or a chunk-size line, which must fit whole.
const BUFFER_SIZE: usize = 16 * 1024;

#[derive(Debug, Error)]
pub enum HttpError {
    #[error("connection closed before a whole response arrived")]
    Closed,
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(transparent)]
    Head(#[from] HeadError),
    #[error("response head or chunk line longer than {BUFFER_SIZE} bytes")]
    TooLong,
    #[error("malformed chunked body")]
    Chunked,
}

impl HttpError {
    /// Whether the server sent something that is not HTTP, as opposed to the
    /// connection failing.
    pub fn is_protocol(&self) -> bool {
        !matches!(self, Self::Closed | Self::Io(_))
    }
}

/// The request line and headers of a `GET` for `url`.
pub fn get_request(url: &Url) -> Vec<u8> {
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: netprobe\r\nAccept: */*\r\n\r\n",
        url.path, url.authority
    )
    .into_bytes()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Whether the connection can carry the next request.
    pub keep_alive: bool,
}

/// Reads responses from one connection, keeping bytes that arrive past the
/// end of one for the next.
pub struct ResponseReader {
    buffer: Box<[u8]>,
    /// The unconsumed bytes are `buffer[start..end]`.
    start: usize,
    end: usize,
}

impl Default for ResponseReader {
    fn default() -> Self {
        Self {
            buffer: vec![0; BUFFER_SIZE].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }
}

impl ResponseReader {
    /// Forgets buffered bytes, for a new connection.
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Reads one whole response, skipping its body.
    pub async fn read<R: AsyncRead + Unpin>(&mut self, io: &mut R) -> Result<Response, HttpError> {
        let head = loop {
            if let Some(head) = parse_head(&self.buffer[self.start..self.end])? {
                break head;
            }
            self.fill(io).await?;
        };
        self.start += head.len;
        match head.body {
            Body::Empty => {}
            Body::Length(len) => self.skip(io, len).await?,
            Body::Chunked => self.skip_chunked(io).await?,
            Body::UntilClose => self.skip_until_close(io).await?,
        }
        Ok(Response {
            status: head.status,
            keep_alive: head.keep_alive,
        })
    }

    /// Reads more bytes after the unconsumed ones.
    async fn fill<R: AsyncRead + Unpin>(&mut self, io: &mut R) -> Result<(), HttpError> {
        if self.start == self.end {
            self.clear();
        } else if self.end == self.buffer.len() {
            if self.start == 0 {
                return Err(HttpError::TooLong);
            }
            self.buffer.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        match io.read(&mut self.buffer[self.end..]).await? {
            0 => Err(HttpError::Closed),
            n => {
                self.end += n;
                Ok(())
            }
        }
    }

    async fn skip<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        mut len: u64,
    ) -> Result<(), HttpError> {
        loop {
            let buffered = (self.end - self.start) as u64;
            if len <= buffered {
                self.start += len as usize;
                return Ok(());
            }
            len -= buffered;
            self.start = self.end;
            self.fill(io).await?;
        }
    }

    async fn skip_chunked<R: AsyncRead + Unpin>(&mut self, io: &mut R) -> Result<(), HttpError> {
        loop {
            let size = loop {
                match httparse::parse_chunk_size(&self.buffer[self.start..self.end]) {
                    Ok(httparse::Status::Complete((len, size))) => {
                        self.start += len;
                        break size;
                    }
                    Ok(httparse::Status::Partial) => self.fill(io).await?,
                    Err(httparse::InvalidChunkSize) => return Err(HttpError::Chunked),
                }
            };
            if size == 0 {
                return self.skip_trailers(io).await;
            }
            self.skip(io, size).await?;
            while self.end - self.start < 2 {
                self.fill(io).await?;
            }
            if &self.buffer[self.start..self.start + 2] != b"\r\n" {
                return Err(HttpError::Chunked);
            }
            self.start += 2;
        }
    }

    /// Skips trailer lines up to and including the empty line that ends them.
    async fn skip_trailers<R: AsyncRead + Unpin>(&mut self, io: &mut R) -> Result<(), HttpError> {
        loop {
            let unread = &self.buffer[self.start..self.end];
            match unread.windows(2).position(|pair| pair == b"\r\n") {
                Some(line) => {
                    self.start += line + 2;
                    if line == 0 {
                        return Ok(());
                    }
                }
                None => self.fill(io).await?,
            }
        }
    }

    async fn skip_until_close<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
    ) -> Result<(), HttpError> {
        loop {
            self.start = self.end;
            match self.fill(io).await {
                Err(HttpError::Closed) => return Ok(()),
                other => other?,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        pin::Pin,
        task::{Context, Poll},
    };

    use tokio::io::ReadBuf;

    use super::*;

    /// Hands out its bytes in pieces of at most `piece` bytes, to exercise
    /// every way a response can be split across reads.
    struct Pieces<'a> {
        bytes: &'a [u8],
        piece: usize,
    }

    impl AsyncRead for Pieces<'_> {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let n = self.piece.min(self.bytes.len()).min(buf.remaining());
            buf.put_slice(&self.bytes[..n]);
            self.bytes = &self.bytes[n..];
            Poll::Ready(Ok(()))
        }
    }

    /// Reads responses from `bytes` split in every piece size up to 7 bytes
    /// and whole, and checks each split reads the same.
    async fn read_all(bytes: &[u8], count: usize) -> Result<Vec<Response>, String> {
        let mut outcomes = Vec::new();
        for piece in (1..=7).chain([bytes.len()]) {
            let mut io = Pieces { bytes, piece };
            let mut reader = ResponseReader::default();
            let mut responses = Vec::new();
            for _ in 0..count {
                responses.push(reader.read(&mut io).await.map_err(|err| err.to_string())?);
            }
            if !io.bytes.is_empty() || reader.start != reader.end {
                return Err(format!("piece {piece}: bytes left over"));
            }
            outcomes.push(responses);
        }
        outcomes.dedup();
        assert_eq!(outcomes.len(), 1, "splits read differently: {outcomes:?}");
        Ok(outcomes.remove(0))
    }

    const fn response(status: u16, keep_alive: bool) -> Response {
        Response { status, keep_alive }
    }

    #[tokio::test]
    async fn reads_keep_alive_responses_back_to_back() {
        let bytes = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x\r\n\r\nhello\
            HTTP/1.1 404 Not Found\r\ncontent-length:0\r\n\r\n\
            HTTP/1.1 204 No Content\r\n\r\n\
            HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
            5\r\nhello\r\na;ext=1\r\n0123456789\r\n0\r\nTrailer: t\r\n\r\n\
            HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
        assert_eq!(
            read_all(bytes, 5).await.unwrap(),
            [
                response(200, true),
                response(404, true),
                response(204, true),
                response(200, true),
                response(200, false),
            ]
        );
    }

    #[tokio::test]
    async fn follows_http_1_0_and_bodies_that_end_with_the_connection() {
        let keep = b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 1\r\n\r\nx";
        assert_eq!(read_all(keep, 1).await.unwrap(), [response(200, true)]);
        let close = b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx";
        assert_eq!(read_all(close, 1).await.unwrap(), [response(200, false)]);
        let until_close = b"HTTP/1.1 200 OK\r\n\r\nthe rest of the stream";
        assert_eq!(
            read_all(until_close, 1).await.unwrap(),
            [response(200, false)]
        );
    }

    #[tokio::test]
    async fn rejects_malformed_and_truncated_responses() {
        for (bytes, error) in [
            (&b"SSH-2.0-OpenSSH\r\n\r\n"[..], "malformed response head"),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                "invalid Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
                "invalid Content-Length",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "malformed chunked body",
            ),
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nxyz",
                "malformed chunked body",
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort",
                "connection closed",
            ),
            (b"", "connection closed"),
        ] {
            let err = read_all(bytes, 1).await.unwrap_err();
            assert!(
                err.contains(error),
                "{err:?} for {:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[tokio::test]
    async fn refuses_a_head_larger_than_its_buffer() {
        let mut bytes = b"HTTP/1.1 200 OK\r\nX: ".to_vec();
        bytes.resize(BUFFER_SIZE + 10, b'a');
        let mut io = Pieces {
            bytes: &bytes,
            piece: 4096,
        };
        let err = ResponseReader::default().read(&mut io).await.unwrap_err();
        assert!(matches!(err, HttpError::TooLong), "{err}");
    }

    #[test]
    fn requests_name_the_host_and_path() {
        let url = Url::parse("http://127.0.0.1:8080/a?b").unwrap();
        assert_eq!(
            get_request(&url),
            b"GET /a?b HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: netprobe\r\nAccept: */*\r\n\r\n"
        );
    }
}
