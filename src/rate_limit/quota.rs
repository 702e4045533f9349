//! Quotas: how many units per period, how many at once, and by which algorithm.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::error::ConfigError;

/// How a quota is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Algorithm {
    /// Generic cell rate algorithm: a smooth rate with a burst allowance; one timestamp of state.
    #[default]
    Gcra,
    /// Sliding-window counter: the current window's count plus the previous window's, weighted by
    /// how much of it still overlaps the sliding window. The burst is the count.
    SlidingWindow,
}

/// A limit: `count` units per `period`, at most `burst` at once (GCRA), by an [`Algorithm`].
///
/// ```
/// use api_policy::rate_limit::Quota;
/// use std::time::Duration;
///
/// let q: Quota = "100/min".parse().unwrap();
/// assert_eq!(q, Quota::per_minute(100));
/// assert_eq!(q.period(), Duration::from_secs(60));
/// assert_eq!(q.burst(), 100);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    count: u32,
    period_us: u64,
    burst: u32,
    algorithm: Algorithm,
}

/// Lua numbers are doubles: every product the Redis script forms stays below 2^50, where division
/// followed by `math.floor` is still exact.
const MAX_EXACT: u128 = 1 << 50;

impl Quota {
    /// `count` units per `period`, burst `count`, GCRA. Checked by [`Quota::validate`] when a layer is built.
    #[must_use]
    pub fn new(count: u32, period: Duration) -> Self {
        Self {
            count,
            period_us: u64::try_from(period.as_micros()).unwrap_or(u64::MAX),
            burst: count,
            algorithm: Algorithm::Gcra,
        }
    }

    /// `count` per second.
    #[must_use]
    pub fn per_second(count: u32) -> Self {
        Self::new(count, Duration::from_secs(1))
    }

    /// `count` per minute.
    #[must_use]
    pub fn per_minute(count: u32) -> Self {
        Self::new(count, Duration::from_secs(60))
    }

    /// `count` per hour.
    #[must_use]
    pub fn per_hour(count: u32) -> Self {
        Self::new(count, Duration::from_secs(3600))
    }

    /// Sets how many units may be spent at once (GCRA); defaults to the count.
    #[must_use]
    pub fn with_burst(mut self, burst: u32) -> Self {
        self.burst = burst;
        self
    }

    /// Sets the algorithm.
    #[must_use]
    pub fn with_algorithm(mut self, algorithm: Algorithm) -> Self {
        self.algorithm = algorithm;
        self
    }

    /// Units per period.
    #[must_use]
    pub fn count(&self) -> u32 {
        self.count
    }

    /// The period.
    #[must_use]
    pub fn period(&self) -> Duration {
        Duration::from_micros(self.period_us)
    }

    /// The period in microseconds.
    #[must_use]
    pub fn period_micros(&self) -> u64 {
        self.period_us
    }

    /// Units that may be spent at once.
    #[must_use]
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The algorithm.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The most units a caller can hold: the burst for GCRA, the count for a sliding window.
    #[must_use]
    pub fn capacity(&self) -> u32 {
        match self.algorithm {
            Algorithm::Gcra => self.burst,
            Algorithm::SlidingWindow => self.count,
        }
    }

    /// GCRA's emission interval: the time one unit takes to come back, rounded up so a quota
    /// never admits more than configured.
    #[must_use]
    pub(crate) fn emission_us(&self) -> u64 {
        self.period_us.div_ceil(u64::from(self.count.max(1)))
    }

    /// Checks that the quota can be enforced exactly by every backend.
    ///
    /// # Errors
    /// A [`ConfigError`] naming `field` when the count, burst or period is zero, a unit would come
    /// back in under a microsecond, or the numbers are too large to be exact in the Redis script.
    pub fn validate(&self, field: &str) -> Result<(), ConfigError> {
        let err = |reason: &str| {
            Err(ConfigError::new(
                field.to_string(),
                format!("{self}: {reason}"),
            ))
        };
        if self.count == 0 {
            return err("the count must be at least 1");
        }
        if self.burst == 0 {
            return err("the burst must be at least 1");
        }
        if self.period_us < u64::from(self.count) {
            return err("more than one unit per microsecond cannot be timed");
        }
        let span = u128::from(self.period_us) * u128::from(self.count.max(self.burst));
        if span >= MAX_EXACT || u128::from(self.emission_us()) * u128::from(self.burst) >= MAX_EXACT
        {
            return err(
                "count x period is too large to be exact (keep count x period under 2^50 microseconds)",
            );
        }
        Ok(())
    }
}

/// `100/min`, `5/s`, `5000/h`; a period other than one unit is written `10/5s`.
impl fmt::Display for Quota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.count, fmt_period(self.period()))
    }
}

/// Writes a period compactly: `s`, `min`, `h`, or `90s` when it is not one whole unit.
pub(crate) fn fmt_period(period: Duration) -> String {
    let secs = period.as_secs();
    if period.subsec_nanos() != 0 {
        return format!("{}ms", period.as_millis());
    }
    match secs {
        1 => "s".into(),
        60 => "min".into(),
        3600 => "h".into(),
        86400 => "d".into(),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}min", s / 60),
        s => format!("{s}s"),
    }
}

/// Parses `N/UNIT` or `N/<k>UNIT` with UNIT one of `ms`, `s`, `min`, `h`, `d`.
impl FromStr for Quota {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || {
            ConfigError::new(
                "quota",
                format!(
                    "`{s}` is not N/UNIT (UNIT one of ms, s, min, h, d, optionally with a count: 100/min, 1000/10s)"
                ),
            )
        };
        let (count, period) = s.trim().split_once('/').ok_or_else(err)?;
        let count: u32 = count.trim().parse().map_err(|_| err())?;
        let period = period.trim();
        let split = period
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(period.len());
        let (n, unit) = period.split_at(split);
        let n: u64 = if n.is_empty() {
            1
        } else {
            n.parse().map_err(|_| err())?
        };
        let unit_us: u64 = match unit {
            "ms" => 1_000,
            "s" | "sec" => 1_000_000,
            "m" | "min" => 60_000_000,
            "h" | "hr" => 3_600_000_000,
            "d" | "day" => 86_400_000_000,
            _ => return Err(err()),
        };
        let period_us = n.checked_mul(unit_us).filter(|&p| p > 0).ok_or_else(err)?;
        let quota = Quota::new(count, Duration::from_micros(period_us));
        quota.validate("quota")?;
        Ok(quota)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_flag_syntax() {
        assert_eq!("100/min".parse::<Quota>().unwrap(), Quota::per_minute(100));
        assert_eq!("5/s".parse::<Quota>().unwrap(), Quota::per_second(5));
        assert_eq!("5000/h".parse::<Quota>().unwrap(), Quota::per_hour(5000));
        assert_eq!(
            "10/5s".parse::<Quota>().unwrap(),
            Quota::new(10, Duration::from_secs(5))
        );
        for bad in [
            "", "100", "x/min", "100/week", "0/min", "-1/s", "10/0s", "5/",
        ] {
            let err = bad.parse::<Quota>().unwrap_err();
            assert!(err.to_string().contains("quota"), "{bad}: {err}");
        }
    }

    #[test]
    fn displays_round_trip() {
        for q in ["100/min", "5/s", "5000/h", "10/5s", "3/90s"] {
            assert_eq!(q.parse::<Quota>().unwrap().to_string(), q);
        }
    }

    #[test]
    fn validation_refuses_what_cannot_be_exact() {
        assert!(Quota::per_second(1).with_burst(0).validate("q").is_err());
        assert!(
            Quota::new(10, Duration::from_nanos(5))
                .validate("q")
                .is_err()
        );
        assert!(
            Quota::new(4_000_000_000, Duration::from_secs(86_400 * 365))
                .validate("q")
                .is_err()
        );
        assert!(Quota::per_hour(15_000).validate("q").is_ok());
    }
}
