//! Time as the domain sees it: whole seconds since the Unix epoch, read through a [`Clock`]
//! so that expiry and rotation grace can be tested on a controllable clock.

use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Seconds since 1970-01-01T00:00:00Z.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct UnixTime(pub i64);

impl UnixTime {
    pub fn seconds(self) -> i64 {
        self.0
    }

    pub fn plus_seconds(self, seconds: i64) -> UnixTime {
        UnixTime(self.0.saturating_add(seconds))
    }

    /// `YYYY-MM-DD` of this instant in UTC.
    pub fn utc_date(self) -> String {
        let (year, month, day) = civil_from_days(self.0.div_euclid(86_400));
        format!("{year:04}-{month:02}-{day:02}")
    }

    /// `YYYY-MM-DDTHH:MM:SSZ` in UTC.
    pub fn rfc3339(self) -> String {
        let secs = self.0.rem_euclid(86_400);
        format!(
            "{}T{:02}:{:02}:{:02}Z",
            self.utc_date(),
            secs / 3_600,
            (secs / 60) % 60,
            secs % 60
        )
    }
}

impl fmt::Display for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.rfc3339())
    }
}

impl UnixTime {
    /// Midnight UTC of a `YYYY-MM-DD` date; `None` if it is not a real date.
    pub fn from_date(text: &str) -> Option<UnixTime> {
        let mut parts = text.trim().splitn(3, '-');
        let year: i64 = parts.next()?.parse().ok()?;
        let month: u32 = parts.next()?.parse().ok()?;
        let day: u32 = parts.next()?.parse().ok()?;
        if !(1..=12).contains(&month) || day == 0 || !(1..=9999).contains(&year) {
            return None;
        }
        let days = days_from_civil(year, month, day);
        let time = UnixTime(days * 86_400);
        // Reject 2026-02-30 and the like: the date must survive the round trip.
        (time.utc_date() == format!("{year:04}-{month:02}-{day:02}")).then_some(time)
    }
}

/// Howard Hinnant's civil-to-days algorithm.
pub(crate) fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::from(month);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Where "now" comes from.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> UnixTime;

    /// Nanoseconds on a clock that never goes back, for rate limits. Only differences between
    /// two readings mean anything.
    fn nanos(&self) -> u64;
}

/// The operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        UnixTime(secs)
    }

    fn nanos(&self) -> u64 {
        static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let origin = ORIGIN.get_or_init(std::time::Instant::now);
        u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A clock that moves only when told to; shared by clones.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn at(time: UnixTime) -> Self {
        ManualClock(Arc::new(AtomicI64::new(time.0)))
    }

    pub fn advance(&self, seconds: i64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }

    pub fn set(&self, time: UnixTime) {
        self.0.store(time.0, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixTime {
        UnixTime(self.0.load(Ordering::SeqCst))
    }

    fn nanos(&self) -> u64 {
        u64::try_from(self.0.load(Ordering::SeqCst))
            .unwrap_or(0)
            .saturating_mul(1_000_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_in_utc() {
        assert_eq!(UnixTime(0).rfc3339(), "1970-01-01T00:00:00Z");
        assert_eq!(UnixTime(951_782_400).utc_date(), "2000-02-29");
        assert_eq!(UnixTime(1_795_478_399).rfc3339(), "2026-11-23T23:59:59Z");
        assert_eq!(UnixTime(-1).rfc3339(), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn dates_parse_back() {
        assert_eq!(UnixTime::from_date("1970-01-01"), Some(UnixTime(0)));
        assert_eq!(
            UnixTime::from_date("2026-11-23").map(UnixTime::utc_date),
            Some("2026-11-23".into())
        );
        assert_eq!(
            UnixTime::from_date("2000-02-29").map(|t| t.seconds()),
            Some(951_782_400)
        );
        for bad in ["2026-02-30", "2026-13-01", "yesterday", "2026-1", ""] {
            assert_eq!(UnixTime::from_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::at(UnixTime(100));
        let shared = clock.clone();
        assert_eq!(clock.now(), UnixTime(100));
        shared.advance(3_600);
        assert_eq!(clock.now(), UnixTime(3_700));
    }
}
