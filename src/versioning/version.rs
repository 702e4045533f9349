//! [`ApiVersion`]: a major version (`v2`) or a dated one (`2024-04-10`, as Stripe and GitHub
//! name theirs), and the civil-date arithmetic dates need.

use std::fmt;

/// Why a version string was refused (the layer answers 400 `version_malformed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an API version: expected `v2`, `2` or a date like `2024-04-10`")]
pub struct VersionError;

/// An API version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ApiVersion {
    /// A major version: `v2` (also read from `2` and `V2`).
    Major(u32),
    /// A dated version: `2024-04-10`.
    Date {
        /// The year.
        year: u16,
        /// The month, 1 to 12.
        month: u8,
        /// The day of the month.
        day: u8,
    },
}

impl ApiVersion {
    /// Parses `v2`, `V2`, `2` or `2024-04-10` (a real calendar date).
    ///
    /// ```
    /// use api_policy::versioning::ApiVersion;
    /// assert_eq!(ApiVersion::parse("v2"), Ok(ApiVersion::Major(2)));
    /// assert_eq!(ApiVersion::parse("2024-04-10")?.to_string(), "2024-04-10");
    /// assert!(ApiVersion::parse("2024-02-30").is_err());
    /// # Ok::<(), api_policy::versioning::VersionError>(())
    /// ```
    ///
    /// # Errors
    /// [`VersionError`] for anything else.
    pub fn parse(text: &str) -> Result<Self, VersionError> {
        let text = text.trim();
        if text.len() == 10 && text.as_bytes()[4] == b'-' && text.as_bytes()[7] == b'-' {
            let number = |range: std::ops::Range<usize>| {
                let part = text.get(range).ok_or(VersionError)?;
                if !part.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(VersionError);
                }
                part.parse::<u16>().map_err(|_| VersionError)
            };
            let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
            let (month, day) = (
                u8::try_from(month).map_err(|_| VersionError)?,
                u8::try_from(day).map_err(|_| VersionError)?,
            );
            if year < 1970
                || !(1..=12).contains(&month)
                || day == 0
                || day > crate::clock::days_in_month(year, month)
            {
                return Err(VersionError);
            }
            return Ok(Self::Date { year, month, day });
        }
        let digits = text
            .strip_prefix('v')
            .or_else(|| text.strip_prefix('V'))
            .unwrap_or(text);
        if digits.is_empty() || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(VersionError);
        }
        digits.parse().map(Self::Major).map_err(|_| VersionError)
    }

    /// A dated version.
    ///
    /// # Errors
    /// [`VersionError`] for a date that does not exist.
    pub fn date(year: u16, month: u8, day: u8) -> Result<Self, VersionError> {
        Self::parse(&format!("{year:04}-{month:02}-{day:02}"))
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Major(n) => write!(f, "v{n}"),
            Self::Date { year, month, day } => write!(f, "{year:04}-{month:02}-{day:02}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_print() {
        for (text, version, printed) in [
            ("v2", ApiVersion::Major(2), "v2"),
            ("V10", ApiVersion::Major(10), "v10"),
            ("3", ApiVersion::Major(3), "v3"),
            (
                "2024-04-10",
                ApiVersion::date(2024, 4, 10).unwrap(),
                "2024-04-10",
            ),
            (
                "2024-02-29",
                ApiVersion::date(2024, 2, 29).unwrap(),
                "2024-02-29",
            ),
        ] {
            let parsed = ApiVersion::parse(text).unwrap();
            assert_eq!(parsed, version, "{text}");
            assert_eq!(parsed.to_string(), printed);
        }
        for bad in [
            "",
            "v",
            "v-1",
            "v2.1",
            "vv2",
            "two",
            "2023-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-04-31",
            "24-04-10",
            "2024/04/10",
            "1969-12-31",
            "9999999999",
            "2024-04-1x",
        ] {
            assert_eq!(ApiVersion::parse(bad), Err(VersionError), "{bad}");
        }
    }
}
