//! The URLs the load generator takes: `http://HOST[:PORT][/PATH][?QUERY]`,
//! where HOST is an IPv4 address, a bracketed IPv6 address or a name the
//! local resolver knows.

use std::{
    io,
    net::{SocketAddr, ToSocketAddrs as _},
};

use thiserror::Error;

#[derive(Debug, Error)]
pub enum UrlError {
    #[error("unsupported URL {0:?}: only http://HOST[:PORT]/PATH is supported")]
    Unsupported(String),
    #[error("URL {0:?} has no host")]
    NoHost(String),
    #[error("URL {0:?} has an invalid port")]
    Port(String),
    #[error("URL {0:?} has a space or control character in its path")]
    Path(String),
    #[error("cannot resolve {host}")]
    Resolve { host: String, source: io::Error },
}

/// A parsed URL: where to connect and what to put in the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    host: String,
    port: u16,
    /// The Host header: host and port as the URL wrote them.
    pub authority: String,
    /// The request target: path and query, never empty.
    pub path: String,
}

impl Url {
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        let unsupported = || UrlError::Unsupported(url.to_owned());
        let scheme_len = "http://".len();
        if !url
            .get(..scheme_len)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("http://"))
        {
            return Err(unsupported());
        }
        // The fragment is never sent.
        let rest = url[scheme_len..].split('#').next().unwrap_or_default();
        let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
        if authority.contains('@') {
            return Err(unsupported());
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(bracketed) => {
                let (host, after) = bracketed.split_once(']').ok_or_else(unsupported)?;
                (host, after.strip_prefix(':'))
            }
            None => match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            },
        };
        if host.is_empty() {
            return Err(UrlError::NoHost(url.to_owned()));
        }
        let port = match port {
            None => 80,
            Some(port) => port
                .parse()
                .ok()
                .filter(|&port| port != 0)
                .ok_or_else(|| UrlError::Port(url.to_owned()))?,
        };
        if path
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(UrlError::Path(url.to_owned()));
        }
        let path = match path {
            "" => "/".to_owned(),
            query if query.starts_with('?') => format!("/{query}"),
            path => path.to_owned(),
        };
        Ok(Self {
            host: host.to_owned(),
            port,
            authority: authority.to_owned(),
            path,
        })
    }

    /// The addresses the host resolves to, in the resolver's order.
    pub fn resolve(&self) -> Result<Vec<SocketAddr>, UrlError> {
        let resolve_error = |source| UrlError::Resolve {
            host: self.host.clone(),
            source,
        };
        let addrs: Vec<_> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(resolve_error)?
            .collect();
        if addrs.is_empty() {
            return Err(resolve_error(io::ErrorKind::NotFound.into()));
        }
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(url: &str) -> (String, u16, String, String) {
        let url = Url::parse(url).unwrap();
        (url.host, url.port, url.authority, url.path)
    }

    #[test]
    fn parses_host_port_and_path() {
        assert_eq!(
            parsed("http://127.0.0.1:8080/index.html?x=1#top"),
            (
                "127.0.0.1".into(),
                8080,
                "127.0.0.1:8080".into(),
                "/index.html?x=1".into()
            )
        );
        assert_eq!(
            parsed("HTTP://localhost"),
            ("localhost".into(), 80, "localhost".into(), "/".into())
        );
        assert_eq!(
            parsed("http://[::1]:81?q"),
            ("::1".into(), 81, "[::1]:81".into(), "/?q".into())
        );
    }

    #[test]
    fn rejects_what_it_cannot_send() {
        for url in [
            "https://127.0.0.1/",
            "127.0.0.1:80",
            "http://user@127.0.0.1/",
            "http://[::1/",
        ] {
            assert!(
                matches!(Url::parse(url), Err(UrlError::Unsupported(_))),
                "{url}"
            );
        }
        assert!(matches!(Url::parse("http:///x"), Err(UrlError::NoHost(_))));
        for url in [
            "http://h:0/",
            "http://h:65536/",
            "http://h:x/",
            "http://h:/",
        ] {
            assert!(matches!(Url::parse(url), Err(UrlError::Port(_))), "{url}");
        }
        assert!(matches!(Url::parse("http://h/a b"), Err(UrlError::Path(_))));
    }

    #[test]
    fn resolves_addresses_and_localhost() {
        let url = Url::parse("http://127.0.0.1:9/").unwrap();
        assert_eq!(url.resolve().unwrap(), vec!["127.0.0.1:9".parse().unwrap()]);
        let localhost = Url::parse("http://localhost:9/")
            .unwrap()
            .resolve()
            .unwrap();
        assert!(localhost.iter().all(|addr| addr.ip().is_loopback()));
    }
}
