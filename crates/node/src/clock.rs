//! Wall-clock time for the binary; the libraries take time as a parameter.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aiguillage_wire::Timestamp;
use anyhow::{Context, Result, bail};

/// Milliseconds added to the system clock: zero except when `AIGUILLAGE_CLOCK_SKEW_MS`
/// asks a test node to run with a wrong clock.
static SKEW_MS: AtomicI64 = AtomicI64::new(0);

/// The variable that sets a test node's clock skew.
pub const SKEW_VAR: &str = "AIGUILLAGE_CLOCK_SKEW_MS";

/// Reads [`SKEW_VAR`] once, at start; returns the skew when one is set.
pub fn skew_from_env() -> Result<Option<i64>> {
    let Ok(text) = std::env::var(SKEW_VAR) else {
        return Ok(None);
    };
    let ms: i64 = text
        .trim()
        .parse()
        .with_context(|| format!("{SKEW_VAR}={text:?} is not a whole number of milliseconds"))?;
    if ms.unsigned_abs() > 365 * 86_400_000 {
        bail!("{SKEW_VAR}={ms} is more than a year; the limit is 31536000000");
    }
    SKEW_MS.store(ms, Ordering::Relaxed);
    Ok(Some(ms))
}

pub fn now() -> Timestamp {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let ms = since.as_millis() as i64 + SKEW_MS.load(Ordering::Relaxed);
    Timestamp(ms.max(0) as u64)
}

/// Parses `now`, an RFC 3339 date-time (`2026-11-25T10:00:00Z`) or a date (`2026-11-25`).
pub fn parse_time(s: &str) -> Result<Timestamp> {
    if s == "now" {
        return Ok(now());
    }
    let full = if s.len() == 10 {
        format!("{s}T00:00:00Z")
    } else {
        s.to_owned()
    };
    let t = humantime::parse_rfc3339_weak(&full)
        .with_context(|| format!("{s:?} is not an RFC 3339 time such as 2026-11-25T10:00:00Z"))?;
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| anyhow::anyhow!("{s:?} is before 1970"))?
        .as_millis();
    Ok(Timestamp(ms as u64))
}

/// Parses a duration such as `10m`, `36h` or `365days`.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let d = humantime::parse_duration(s)
        .with_context(|| format!("{s:?} is not a duration such as 10m, 36h or 365days"))?;
    if d.is_zero() {
        bail!("duration {s:?} must be longer than zero");
    }
    Ok(d)
}

/// RFC 3339 for times up to the year 9999; later ones (which rosters refuse, but a
/// hand-made file may hold) print as milliseconds rather than fail.
pub fn format_time(t: Timestamp) -> String {
    if t > aiguillage_wire::LATEST_TIME {
        return format!("{} ms after 1970", t.millis());
    }
    let st = UNIX_EPOCH + Duration::from_millis(t.millis());
    humantime::format_rfc3339_seconds(st).to_string()
}

pub fn after(t: Timestamp, d: Duration) -> Timestamp {
    t.saturating_add_ms(d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_and_print_in_rfc3339() {
        let t = parse_time("2026-11-25T10:00:00Z").unwrap();
        assert_eq!(format_time(t), "2026-11-25T10:00:00Z");
        assert_eq!(
            parse_time("2026-11-25").unwrap(),
            parse_time("2026-11-25T00:00:00Z").unwrap()
        );
        assert!(parse_time("yesterday").is_err());
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert!(parse_duration("0s").is_err());
        assert_eq!(
            format_time(Timestamp(u64::MAX)),
            format!("{} ms after 1970", u64::MAX)
        );
    }
}
