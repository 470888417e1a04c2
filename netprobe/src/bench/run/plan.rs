//! What a bench runs: modes, rates and sizes from the command line, the
//! plan every mode runs, and how long that takes.

use std::{fmt, str::FromStr, time::Duration};

use thiserror::Error;

use super::load::Load;
use crate::lab::{Mode, ResponseSize, WireSize};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PlanError {
    #[error("{0}")]
    Mode(String),
    #[error("{0:?} is not a rate: rates are positive requests per second, or \"auto\"")]
    Rate(String),
    #[error("{0:?} is not a response size: the lab serves {sizes}", sizes = served_sizes())]
    Size(String),
    #[error("nothing to run: {0} is empty")]
    Empty(&'static str),
}

/// What every mode runs: each size at each rate, with these load settings.
pub struct Plan<'a> {
    pub rates: &'a [f64],
    pub sizes: &'a [ResponseSize],
    pub load: Load,
    /// `--max-rates`: find the highest rate each mode sustains.
    pub find_max: bool,
}

/// `--modes all` or a comma-separated list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Modes(pub Vec<Mode>);

impl FromStr for Modes {
    type Err = PlanError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "all" {
            return Ok(Modes(Mode::ALL.to_vec()));
        }
        let modes = text
            .split(',')
            .map(|name| {
                name.trim()
                    .parse::<Mode>()
                    .map_err(|err| PlanError::Mode(err.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        non_empty(modes, "--modes").map(Modes)
    }
}

/// `--rates auto` or a comma-separated list of requests per second.
#[derive(Clone, Debug, PartialEq)]
pub enum Rates {
    /// 10, 30, 50, 70 and 90% of the highest rate `host` sustains.
    Auto,
    Fixed(Vec<f64>),
}

/// The share of host's maximum that `--rates auto` runs at: the study's 30
/// to 90%, and 10%, near the study's lowest rate (50k of 450k req/s), where
/// requests rarely overlap and each mode's own path cost shows without
/// queueing.
pub const AUTO_SHARES: [f64; 5] = [0.1, 0.3, 0.5, 0.7, 0.9];

impl FromStr for Rates {
    type Err = PlanError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text == "auto" {
            return Ok(Rates::Auto);
        }
        let rates = text
            .split(',')
            .map(|rate| {
                rate.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|rate| rate.is_finite() && *rate > 0.0)
                    .ok_or_else(|| PlanError::Rate(rate.trim().to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        non_empty(rates, "--rates").map(Rates::Fixed)
    }
}

/// `--sizes 350,4096`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sizes(pub Vec<ResponseSize>);

impl FromStr for Sizes {
    type Err = PlanError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let sizes = text
            .split(',')
            .map(|size| {
                let size = size.trim();
                ResponseSize::ALL
                    .into_iter()
                    .find(|known| size.parse() == Ok(known.nominal_len()))
                    .ok_or_else(|| PlanError::Size(size.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        non_empty(sizes, "--sizes").map(Sizes)
    }
}

impl Sizes {
    /// Every size the lab serves.
    pub fn all() -> Self {
        Sizes(ResponseSize::ALL.to_vec())
    }
}

/// `350 (352 B on the wire) and 4096 (4096 B on the wire)`: the sizes as
/// `--sizes` takes them, and as they are sent.
pub fn served_sizes() -> String {
    let sizes = ResponseSize::ALL.map(|size| {
        format!(
            "{} ({} on the wire)",
            size.nominal_len(),
            WireSize(size.nominal_len())
        )
    });
    sizes.join(" and ")
}

/// As `--sizes` takes them: `350,4096`.
impl fmt::Display for Sizes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sizes: Vec<String> = self
            .0
            .iter()
            .map(|size| size.nominal_len().to_string())
            .collect();
        f.write_str(&sizes.join(","))
    }
}

fn non_empty<T>(items: Vec<T>, what: &'static str) -> Result<Vec<T>, PlanError> {
    if items.is_empty() {
        Err(PlanError::Empty(what))
    } else {
        Ok(items)
    }
}

/// About how long the runs of one mode take: each size and rate, with its
/// warm-up, plus building and removing the lab.
pub fn mode_time(rates: usize, sizes: usize, run: Duration) -> Duration {
    const LAB: Duration = Duration::from_secs(3);
    run * (rates * sizes) as u32 + LAB
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_modes_rates_and_sizes() {
        assert_eq!("all".parse::<Modes>().unwrap().0, Mode::ALL.to_vec());
        assert_eq!(
            "host, flannel-vxlan".parse::<Modes>().unwrap().0,
            vec![Mode::Host, Mode::FlannelVxlan]
        );
        assert_eq!("auto".parse::<Rates>().unwrap(), Rates::Auto);
        assert_eq!(
            "1000,2500.5".parse::<Rates>().unwrap(),
            Rates::Fixed(vec![1000.0, 2500.5])
        );
        assert_eq!(
            "350,4096".parse::<Sizes>().unwrap().0,
            vec![ResponseSize::Small, ResponseSize::Large]
        );
    }

    #[test]
    fn refuses_bad_lists() {
        assert!(matches!("vlan".parse::<Modes>(), Err(PlanError::Mode(_))));
        assert_eq!("0".parse::<Rates>(), Err(PlanError::Rate("0".into())));
        assert_eq!("-5".parse::<Rates>(), Err(PlanError::Rate("-5".into())));
        assert_eq!("fast".parse::<Rates>(), Err(PlanError::Rate("fast".into())));
        assert_eq!("1000".parse::<Sizes>(), Err(PlanError::Size("1000".into())));
    }
}
