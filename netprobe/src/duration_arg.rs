//! A duration on the command line: a bare number is seconds, as wrk and
//! timeout(1) read it ("10", "0.5"); anything else as humantime reads it
//! ("10s", "2m", "1h 30m").

use std::time::Duration;

/// Parses `text` as seconds or as a humantime duration.
pub fn parse(text: &str) -> Result<Duration, String> {
    if let Ok(seconds) = text.trim().parse::<f64>() {
        return Duration::try_from_secs_f64(seconds)
            .map_err(|_| format!("{text:?} is not a number of seconds"));
    }
    humantime::parse_duration(text).map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_number_is_seconds_and_units_are_humantimes() {
        assert_eq!(parse("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(
            parse("-1"),
            Err("\"-1\" is not a number of seconds".to_owned())
        );
        assert!(parse("soon").is_err());
    }
}
