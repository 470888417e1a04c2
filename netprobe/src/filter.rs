//! `--filter EXPR`: which flows to follow, in a small subset of pcap-filter
//! syntax: `tcp`, `udp`, `[src|dst] port N`, `[src|dst] host ADDR`, joined
//! by `and`. Evaluated in the kernel on the (inner) headers where a packet is
//! first seen.

use std::{net::IpAddr, str::FromStr};

use netprobe_common::config::{FlowFilter, MATCH_DST, MATCH_SRC};
use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum FilterError {
    #[error(
        "unknown filter term {0:?} (expected tcp, udp, [src|dst] port N, [src|dst] host ADDR, joined by 'and')"
    )]
    UnknownTerm(String),
    #[error("{0} needs a value")]
    MissingValue(&'static str),
    #[error("{0:?} is not a port number")]
    BadPort(String),
    #[error("{0:?} is not an IP address")]
    BadAddress(String),
    #[error("the filter names {0} twice")]
    Repeated(&'static str),
}

/// A parsed `--filter`: the kernel's form and the text it came from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    pub expression: String,
    pub flow: FlowFilter,
}

impl FromStr for Filter {
    type Err = FilterError;

    fn from_str(expression: &str) -> Result<Self, Self::Err> {
        let mut filter = FlowFilter::default();
        let mut words = expression.split_whitespace().filter(|word| *word != "and");
        while let Some(word) = words.next() {
            let (sides, term) = match word {
                "src" => (MATCH_SRC, words.next().unwrap_or("")),
                "dst" => (MATCH_DST, words.next().unwrap_or("")),
                term => (MATCH_SRC | MATCH_DST, term),
            };
            match term {
                "tcp" | "udp" if sides == MATCH_SRC | MATCH_DST => {
                    if filter.protocol != 0 {
                        return Err(FilterError::Repeated("a protocol"));
                    }
                    filter.protocol = if term == "tcp" { 6 } else { 17 };
                }
                "port" => {
                    let value = words.next().ok_or(FilterError::MissingValue("port"))?;
                    if filter.port != 0 {
                        return Err(FilterError::Repeated("a port"));
                    }
                    filter.port = value
                        .parse()
                        .ok()
                        .filter(|port| *port != 0)
                        .ok_or_else(|| FilterError::BadPort(value.to_owned()))?;
                    filter.port_sides = sides;
                }
                "host" => {
                    let value = words.next().ok_or(FilterError::MissingValue("host"))?;
                    if filter.family != 0 {
                        return Err(FilterError::Repeated("a host"));
                    }
                    let address: IpAddr = value
                        .parse()
                        .map_err(|_| FilterError::BadAddress(value.to_owned()))?;
                    match address {
                        IpAddr::V4(v4) => {
                            filter.family = 4;
                            filter.addr[..4].copy_from_slice(&v4.octets());
                        }
                        IpAddr::V6(v6) => {
                            filter.family = 6;
                            filter.addr = v6.octets();
                        }
                    }
                    filter.addr_sides = sides;
                }
                "" => return Err(FilterError::MissingValue("src/dst")),
                other => return Err(FilterError::UnknownTerm(other.to_owned())),
            }
        }
        Ok(Self {
            expression: expression.trim().to_owned(),
            flow: filter,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_protocol_port_and_host() {
        let filter = "tcp and dst port 80 and host 10.0.0.1"
            .parse::<Filter>()
            .unwrap()
            .flow;
        assert_eq!(filter.protocol, 6);
        assert_eq!((filter.port, filter.port_sides), (80, MATCH_DST));
        assert_eq!(filter.family, 4);
        assert_eq!(&filter.addr[..4], &[10, 0, 0, 1]);
        assert_eq!(filter.addr_sides, MATCH_SRC | MATCH_DST);
    }

    #[test]
    fn parses_ipv6_source() {
        let filter = "udp src host fd00::2".parse::<Filter>().unwrap().flow;
        assert_eq!((filter.protocol, filter.family), (17, 6));
        assert_eq!(filter.addr_sides, MATCH_SRC);
        assert_eq!(filter.addr[15], 2);
    }

    #[test]
    fn empty_filter_matches_everything() {
        assert_eq!("".parse::<Filter>().unwrap(), Filter::default());
    }

    #[test]
    fn rejects_bad_input() {
        let error = |text: &str| text.parse::<Filter>().unwrap_err();
        assert_eq!(error("icmp"), FilterError::UnknownTerm("icmp".into()));
        assert_eq!(error("port"), FilterError::MissingValue("port"));
        assert_eq!(error("port http"), FilterError::BadPort("http".into()));
        assert_eq!(error("port 0"), FilterError::BadPort("0".into()));
        assert_eq!(
            error("host 10.0.0"),
            FilterError::BadAddress("10.0.0".into())
        );
        assert_eq!(error("tcp udp"), FilterError::Repeated("a protocol"));
        assert_eq!(error("src tcp"), FilterError::UnknownTerm("tcp".into()));
        assert_eq!(error("tcp or udp"), FilterError::UnknownTerm("or".into()));
    }
}
