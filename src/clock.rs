//! Time as the policies see it: the system clock, or a manual clock that tests move by hand.
//!
//! Stores read time through a [`Clock`] so that the same test vectors run against every backend
//! without sleeping. Time is counted in whole microseconds since the UNIX epoch: fine enough for any
//! rate, and small enough (about 1.7e15 today) to be exact in a Redis Lua number.

use std::cell::Cell;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of wall-clock time in microseconds since the UNIX epoch.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time, in microseconds since the UNIX epoch.
    fn now_micros(&self) -> u64;
}

/// The operating system's wall clock, read cheaply.
///
/// Reading the wall clock costs about 75 ns on some virtual machines, more than a whole
/// in-memory rate-limit decision. So each thread reads it once a second and counts the time in
/// between with the CPU's timestamp counter (`quanta`, about 10 ns): wall-clock time, never more
/// than a second's worth of counter drift from the system's.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

/// How long a thread counts from one wall-clock reading before taking another.
const REANCHOR_NANOS: u64 = 1_000_000_000;

static COUNTER: LazyLock<quanta::Clock> = LazyLock::new(quanta::Clock::new);

thread_local! {
    /// (counter reading, wall-clock microseconds) at this thread's last wall-clock reading.
    static ANCHOR: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

fn wall_clock_micros() -> u64 {
    // A clock set before 1970 reads as the epoch rather than panicking.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

impl Clock for SystemClock {
    fn now_micros(&self) -> u64 {
        let counter = &*COUNTER;
        let raw = counter.raw();
        ANCHOR.with(|anchor| {
            let (anchor_raw, anchor_micros) = anchor.get();
            let elapsed = counter.delta_as_nanos(anchor_raw, raw);
            if anchor_micros == 0 || raw < anchor_raw || elapsed >= REANCHOR_NANOS {
                let now = wall_clock_micros();
                anchor.set((raw, now));
                now
            } else {
                anchor_micros + elapsed / 1_000
            }
        })
    }
}

/// A clock that only moves when told to; clones share one time.
///
/// ```
/// use api_policy::clock::{Clock, ManualClock};
/// use std::time::Duration;
///
/// let clock = ManualClock::at_secs(1_700_000_000);
/// clock.advance(Duration::from_millis(1500));
/// assert_eq!(clock.now_micros(), 1_700_000_001_500_000);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    micros: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock standing at `secs` seconds after the UNIX epoch.
    #[must_use]
    pub fn at_secs(secs: u64) -> Self {
        Self::at_micros(secs.saturating_mul(1_000_000))
    }

    /// A clock standing at `micros` microseconds after the UNIX epoch.
    #[must_use]
    pub fn at_micros(micros: u64) -> Self {
        Self {
            micros: Arc::new(AtomicU64::new(micros)),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_micros()).unwrap_or(u64::MAX);
        self.micros.fetch_add(by, Ordering::SeqCst);
    }

    /// Sets the clock to `micros` microseconds after the UNIX epoch.
    pub fn set_micros(&self, micros: u64) {
        self.micros.store(micros, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_micros(&self) -> u64 {
        self.micros.load(Ordering::SeqCst)
    }
}

/// A shared, type-erased clock.
pub type SharedClock = Arc<dyn Clock>;

/// Rounds microseconds up to whole seconds, as every header that speaks in seconds wants.
#[must_use]
pub(crate) fn ceil_secs(micros: u64) -> u64 {
    micros.div_ceil(1_000_000)
}

/// Days since 1970-01-01 of a Unix time in seconds (UTC days).
#[must_use]
pub(crate) fn day_of(unix_secs: u64) -> u64 {
    unix_secs / 86_400
}

/// The civil date (`YYYY-MM-DD`) of a day number (Howard Hinnant's algorithm).
#[must_use]
pub(crate) fn civil_date(day: u64) -> String {
    let (y, m, d) = civil_ymd(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Year, month and day of a day number.
fn civil_ymd(day: u64) -> (i64, i64, i64) {
    let z = i64::try_from(day).unwrap_or(i64::MAX / 2) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Writes `value` into `out` as exactly `out.len()` decimal digits (the high ones dropped).
fn put_digits(out: &mut [u8], mut value: u64) {
    for digit in out.iter_mut().rev() {
        // `value % 10` is below 10: the cast cannot truncate.
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// The number of days in `month` (1 to 12) of `year`, by the Gregorian calendar.
#[must_use]
pub(crate) fn days_in_month(year: u16, month: u8) -> u8 {
    let leap = (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// The day number (days since 1970-01-01) of a civil date, for years 1970 to 9999; `None` for
/// a date that does not exist (Howard Hinnant's algorithm, the inverse of [`civil_date`]).
#[must_use]
pub(crate) fn day_from_civil(year: u16, month: u8, day: u8) -> Option<u64> {
    if !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
    {
        return None;
    }
    let y = u64::from(if month <= 2 { year - 1 } else { year });
    let (m, d) = (u64::from(month), u64::from(day));
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    Some(era * 146_097 + doe - 719_468)
}

/// An instant written in a configuration: an HTTP-date (`Thu, 31 Dec 2026 23:59:59 GMT`), a UTC
/// time in whole seconds (`2026-12-31T23:59:59Z`: RFC 3339 without a fraction or an offset) or a
/// date (`2026-12-31`, its midnight UTC).
#[must_use]
pub(crate) fn parse_instant(text: &str) -> Option<std::time::SystemTime> {
    let text = text.trim();
    if let Ok(at) = httpdate::parse_http_date(text) {
        return Some(at);
    }
    let (date, time) = match text.split_once(['T', 't']) {
        Some((date, time)) => (date, Some(time.strip_suffix(['Z', 'z'])?)),
        None => (text, None),
    };
    let number = |part: &str, digits: usize| -> Option<u16> {
        (part.len() == digits && part.bytes().all(|b| b.is_ascii_digit()))
            .then(|| part.parse().ok())
            .flatten()
    };
    let mut date_parts = date.split('-');
    let year = number(date_parts.next()?, 4)?;
    let month = number(date_parts.next()?, 2)?;
    let day = number(date_parts.next()?, 2)?;
    if date_parts.next().is_some() {
        return None;
    }
    let mut secs =
        day_from_civil(year, u8::try_from(month).ok()?, u8::try_from(day).ok()?)? * 86_400;
    if let Some(time) = time {
        let mut time_parts = time.split(':');
        let hour = number(time_parts.next()?, 2)?;
        let minute = number(time_parts.next()?, 2)?;
        let second = number(time_parts.next()?, 2)?;
        if time_parts.next().is_some() || hour > 23 || minute > 59 || second > 60 {
            return None;
        }
        secs += u64::from(hour) * 3600 + u64::from(minute) * 60 + u64::from(second);
    }
    Some(std::time::UNIX_EPOCH + Duration::from_secs(secs))
}

/// An RFC 3339 UTC timestamp with microseconds: `2026-11-24T05:58:26.123456Z`. Written digit by
/// digit, without the formatting machinery: every audit record carries one.
#[must_use]
pub(crate) fn rfc3339_micros(micros: u64) -> String {
    let text = rfc3339_micros_ascii(micros);
    // Only ASCII digits and separators were written.
    std::str::from_utf8(&text).unwrap_or_default().to_owned()
}

/// [`rfc3339_micros`] as the ASCII bytes themselves, for a writer that needs no `String`.
#[must_use]
pub(crate) fn rfc3339_micros_ascii(micros: u64) -> [u8; 27] {
    let secs = micros / 1_000_000;
    let of_day = secs % 86_400;
    let (year, month, day) = civil_ymd(day_of(secs));
    let mut text = *b"0000-00-00T00:00:00.000000Z";
    // Years past 9999 keep their last four digits; no clock of this century reads them.
    put_digits(&mut text[0..4], u64::try_from(year).unwrap_or(0));
    put_digits(&mut text[5..7], u64::try_from(month).unwrap_or(0));
    put_digits(&mut text[8..10], u64::try_from(day).unwrap_or(0));
    put_digits(&mut text[11..13], of_day / 3600);
    put_digits(&mut text[14..16], of_day / 60 % 60);
    put_digits(&mut text[17..19], of_day % 60);
    put_digits(&mut text[20..26], micros % 1_000_000);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_instants_read_three_ways() {
        let at = |secs: u64| Some(std::time::UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(parse_instant("2026-12-31T23:59:59Z"), at(1_798_761_599));
        assert_eq!(
            parse_instant("Thu, 31 Dec 2026 23:59:59 GMT"),
            at(1_798_761_599)
        );
        assert_eq!(parse_instant("2026-07-01"), at(1_782_864_000));
        assert_eq!(parse_instant("2024-02-29"), at(1_709_164_800));
        for bad in [
            "2023-02-29",
            "2026-13-01",
            "2026-1-01",
            "2026-07-01T25:00:00Z",
            "2026-07-01T10:00:00",
            "2026-07-01T10:00:00+02:00",
            "yesterday",
            "",
            "1969-12-31",
        ] {
            assert_eq!(parse_instant(bad), None, "{bad}");
        }
        for day in [0, 59, 365, 20_000, 2_932_896] {
            let date = civil_date(day);
            let parts: Vec<u16> = date.split('-').map(|p| p.parse().unwrap()).collect();
            let (m, d) = (parts[1] as u8, parts[2] as u8);
            assert_eq!(day_from_civil(parts[0], m, d), Some(day), "{date}");
        }
    }

    #[test]
    fn days_and_timestamps_are_civil_utc() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(day_of(1_767_225_599)), "2025-12-31");
        assert_eq!(civil_date(day_of(1_767_225_600)), "2026-01-01");
        assert_eq!(civil_date(day_of(951_782_400)), "2000-02-29");
        assert_eq!(
            rfc3339_micros(1_795_521_600_000_042),
            "2026-11-24T12:00:00.000042Z"
        );
        assert_eq!(
            rfc3339_micros(86_399_999_999),
            "1970-01-01T23:59:59.999999Z"
        );
    }

    #[test]
    fn the_system_clock_follows_the_wall_clock() {
        for _ in 0..1000 {
            let ours = SystemClock.now_micros();
            let wall = wall_clock_micros();
            assert!(wall.abs_diff(ours) < 50_000, "{ours} vs {wall}");
        }
        let before = SystemClock.now_micros();
        std::thread::sleep(Duration::from_millis(20));
        let after = SystemClock.now_micros();
        assert!(
            (19_000..200_000).contains(&(after - before)),
            "{}",
            after - before
        );
    }
}
