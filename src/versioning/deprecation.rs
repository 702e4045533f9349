//! Deprecation and sunset (RFC 9745, RFC 8594): what a deprecated version or route announces,
//! and the header values, byte for byte.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;

use crate::error::ConfigError;

/// A deprecation: when it took (or takes) effect, when the version goes away, where to read
/// about it, and what happens after.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Deprecation {
    pub(crate) deprecated_at: SystemTime,
    pub(crate) sunset: Option<SystemTime>,
    pub(crate) deprecation_link: Option<String>,
    pub(crate) sunset_link: Option<String>,
    pub(crate) enforce_sunset: bool,
    pub(crate) brownouts: Vec<(SystemTime, SystemTime)>,
    pub(crate) legacy_true: bool,
}

impl Deprecation {
    /// Deprecated since (or from) `at`, which may be in the future (RFC 9745 allows announcing a
    /// coming deprecation).
    pub fn since(at: SystemTime) -> Self {
        Self {
            deprecated_at: at,
            sunset: None,
            deprecation_link: None,
            sunset_link: None,
            enforce_sunset: false,
            brownouts: Vec::new(),
            legacy_true: false,
        }
    }

    /// When the version stops being served (`Sunset`).
    pub fn sunset(mut self, at: SystemTime) -> Self {
        self.sunset = Some(at);
        self
    }

    /// The page explaining the deprecation and how to migrate (`Link: <url>; rel="deprecation"`);
    /// also the link of the 410 answers.
    pub fn link(mut self, url: &str) -> Self {
        self.deprecation_link = Some(url.to_string());
        self
    }

    /// The page about the sunset (`Link: <url>; rel="sunset"`), when it is another.
    pub fn sunset_link(mut self, url: &str) -> Self {
        self.sunset_link = Some(url.to_string());
        self
    }

    /// After the sunset, answer 410 Gone (`version_sunset`) instead of serving the version.
    pub fn enforce_sunset(mut self) -> Self {
        self.enforce_sunset = true;
        self
    }

    /// A scheduled brownout: from `start` for `length`, the version answers 410
    /// (`version_brownout`), so callers that ignore the headers notice before the removal.
    pub fn brownout(mut self, start: SystemTime, length: Duration) -> Self {
        // A window past the end of time is refused at build (an empty window).
        self.brownouts
            .push((start, start.checked_add(length).unwrap_or(start)));
        self
    }

    /// When the deprecation takes effect.
    #[must_use]
    pub fn deprecated_at(&self) -> SystemTime {
        self.deprecated_at
    }

    /// When the version goes away, if announced.
    #[must_use]
    pub fn sunset_at(&self) -> Option<SystemTime> {
        self.sunset
    }

    /// The migration guide.
    #[must_use]
    pub fn migration_guide(&self) -> Option<&str> {
        self.deprecation_link.as_deref()
    }

    /// Sends the draft's legacy `Deprecation: true` instead of RFC 9745's `@<epoch>`, for
    /// clients written against the draft.
    pub fn legacy_true(mut self) -> Self {
        self.legacy_true = true;
        self
    }

    /// Checks the dates and links.
    pub(crate) fn validate(&self, field: &str) -> Result<(), ConfigError> {
        // An HTTP date holds years 1970 to 9999; formatting one outside would panic.
        let last = UNIX_EPOCH + Duration::from_secs(253_402_300_799);
        for date in std::iter::once(self.deprecated_at).chain(self.sunset) {
            if date < UNIX_EPOCH || date > last {
                return Err(ConfigError::new(
                    field.to_string(),
                    "dates must fall between 1970 and 9999",
                ));
            }
        }
        if let Some(sunset) = self.sunset
            && sunset < self.deprecated_at
        {
            return Err(ConfigError::new(
                field.to_string(),
                "the sunset is earlier than the deprecation (RFC 9745 section 2.1)",
            ));
        }
        for link in [&self.deprecation_link, &self.sunset_link]
            .into_iter()
            .flatten()
        {
            if link.contains(['<', '>', '"', ' ']) || HeaderValue::from_str(link).is_err() {
                return Err(ConfigError::new(
                    field.to_string(),
                    format!("`{link}` cannot be written in a Link header"),
                ));
            }
        }
        for (start, end) in &self.brownouts {
            if end <= start {
                return Err(ConfigError::new(
                    field.to_string(),
                    "a brownout must last more than zero and end before the end of time",
                ));
            }
        }
        Ok(())
    }

    /// `Deprecation: @1688169599` (RFC 9745: a structured-field date, seconds since the epoch).
    pub(crate) fn deprecation_value(&self) -> HeaderValue {
        if self.legacy_true {
            return HeaderValue::from_static("true");
        }
        let secs = self
            .deprecated_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // Digits and `@` are always a valid header value.
        HeaderValue::from_str(&format!("@{secs}")).unwrap_or(HeaderValue::from_static("true"))
    }

    /// `Sunset: Thu, 31 Dec 2026 23:59:59 GMT` (RFC 8594: an IMF-fixdate, always GMT).
    pub(crate) fn sunset_value(&self) -> Option<HeaderValue> {
        let sunset = self.sunset?;
        HeaderValue::from_str(&httpdate::fmt_http_date(sunset)).ok()
    }

    /// The `Link` values: `<url>; rel="deprecation"` and `<url>; rel="sunset"`.
    pub(crate) fn link_values(&self) -> Vec<HeaderValue> {
        let mut links = Vec::new();
        if let Some(url) = &self.deprecation_link
            && let Ok(value) = HeaderValue::from_str(&format!("<{url}>; rel=\"deprecation\""))
        {
            links.push(value);
        }
        let sunset_url = self.sunset_link.as_ref().or(self.deprecation_link.as_ref());
        if self.sunset.is_some()
            && let Some(url) = sunset_url
            && let Ok(value) = HeaderValue::from_str(&format!("<{url}>; rel=\"sunset\""))
        {
            links.push(value);
        }
        links
    }

    /// Whether the version is gone at `now` (past an enforced sunset), or in a brownout; the
    /// end of the brownout for the latter.
    pub(crate) fn refusal_at(&self, now: SystemTime) -> Option<Gone> {
        if self.enforce_sunset && self.sunset.is_some_and(|s| now >= s) {
            return Some(Gone::Sunset);
        }
        self.brownouts
            .iter()
            .find(|(start, end)| now >= *start && now < *end)
            .map(|(_, end)| Gone::Brownout { until: *end })
    }

    /// Whether the deprecation has taken effect at `now`.
    pub(crate) fn in_effect(&self, now: SystemTime) -> bool {
        now >= self.deprecated_at
    }

    /// The migration link.
    pub(crate) fn migration_link(&self) -> Option<&str> {
        self.deprecation_link.as_deref()
    }
}

/// Why a deprecated version is refused now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gone {
    Sunset,
    Brownout { until: SystemTime },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn header_values_byte_for_byte() {
        let d = Deprecation::since(at(1_688_169_599))
            .sunset(httpdate::parse_http_date("Thu, 31 Dec 2026 23:59:59 GMT").unwrap())
            .link("https://docs.example.com/migrate-v2");
        assert_eq!(d.deprecation_value(), "@1688169599");
        assert_eq!(d.sunset_value().unwrap(), "Thu, 31 Dec 2026 23:59:59 GMT");
        assert_eq!(
            d.link_values(),
            [
                "<https://docs.example.com/migrate-v2>; rel=\"deprecation\"",
                "<https://docs.example.com/migrate-v2>; rel=\"sunset\""
            ]
        );
        let legacy = d
            .clone()
            .legacy_true()
            .sunset_link("https://example.com/sunset");
        assert_eq!(legacy.deprecation_value(), "true");
        assert_eq!(
            legacy.link_values()[1],
            "<https://example.com/sunset>; rel=\"sunset\""
        );
        assert!(Deprecation::since(at(5)).link_values().is_empty());
    }

    #[test]
    fn a_sunset_before_the_deprecation_is_a_config_error() {
        let bad = Deprecation::since(at(2_000)).sunset(at(1_000));
        assert!(
            bad.validate("versions.v1")
                .unwrap_err()
                .reason
                .contains("earlier")
        );
        assert!(
            Deprecation::since(at(1))
                .link("https://x/<y>")
                .validate("f")
                .is_err()
        );
        assert!(
            Deprecation::since(at(1))
                .sunset(at(1))
                .validate("f")
                .is_ok()
        );
    }

    #[test]
    fn sunsets_and_brownouts_refuse_in_their_time() {
        let d = Deprecation::since(at(0))
            .sunset(at(1_000))
            .brownout(at(500), Duration::from_secs(60));
        assert_eq!(d.refusal_at(at(499)), None);
        assert_eq!(
            d.refusal_at(at(500)),
            Some(Gone::Brownout { until: at(560) })
        );
        assert_eq!(d.refusal_at(at(560)), None);
        assert_eq!(
            d.refusal_at(at(2_000)),
            None,
            "a sunset is only enforced on request"
        );
        let enforced = d.enforce_sunset();
        assert_eq!(enforced.refusal_at(at(999)), None);
        assert_eq!(enforced.refusal_at(at(1_000)), Some(Gone::Sunset));
    }
}
