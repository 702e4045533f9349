//! Finding a request's version: from its path, a version header or a vendor media type.

use http::HeaderMap;
use http::header::ACCEPT;

use super::version::{ApiVersion, VersionError};

/// Where a version came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Source {
    /// A `v{N}` path segment.
    Path,
    /// The version header.
    Header,
    /// A vendor media type in `Accept`.
    Accept,
    /// The caller's pin.
    Pin,
    /// The default.
    Default,
}

/// The version in a leading path segment that reads `v{N}`: `/v2/...` or `/api/v2/...`. Only
/// the first two segments count, so an id like `/users/v7` is not a version.
pub(crate) fn from_path(path: &str) -> Option<ApiVersion> {
    crate::route::segments(path)
        .take(2)
        .filter(|s| s.len() > 1 && s.len() <= 10)
        .find(|s| {
            (s.starts_with('v') || s.starts_with('V')) && s[1..].bytes().all(|b| b.is_ascii_digit())
        })
        .and_then(|s| ApiVersion::parse(s).ok())
}

/// The version header's value: `None` without it; an error for a malformed or repeated one.
pub(crate) fn from_header(
    headers: &HeaderMap,
    name: &http::HeaderName,
) -> Result<Option<ApiVersion>, VersionError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(VersionError);
    }
    let text = value.to_str().map_err(|_| VersionError)?;
    ApiVersion::parse(text).map(Some)
}

/// The version a vendor media type in `Accept` names: `application/vnd.NAME.v2+json` (or
/// `.2024-04-10`, with or without a `+suffix`). `None` when no media type of this vendor is
/// accepted; an error when one is, with a malformed version, or when two name different ones.
pub(crate) fn from_accept(
    headers: &HeaderMap,
    vendor: &str,
) -> Result<Option<ApiVersion>, VersionError> {
    let prefix = format!("application/vnd.{vendor}.");
    let mut found: Option<ApiVersion> = None;
    for value in headers.get_all(ACCEPT) {
        let Ok(value) = value.to_str() else {
            continue;
        };
        for item in value.split(',') {
            let mut params = item.split(';');
            let media = params.next().unwrap_or_default().trim();
            // `q=0` means "not acceptable": such a type names no version the client wants.
            let refused = params.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            if refused {
                continue;
            }
            let Some(rest) = media
                .get(..prefix.len())
                .filter(|p| p.eq_ignore_ascii_case(&prefix))
                .map(|_| &media[prefix.len()..])
            else {
                continue;
            };
            let version = rest.split('+').next().unwrap_or_default();
            let version = ApiVersion::parse(version)?;
            match found {
                Some(earlier) if earlier != version => return Err(VersionError),
                _ => found = Some(version),
            }
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (n, v) in pairs {
            map.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn paths() {
        assert_eq!(
            from_path("/api/v2/appointments/apt_1"),
            Some(ApiVersion::Major(2))
        );
        assert_eq!(from_path("/v1/x"), Some(ApiVersion::Major(1)));
        assert_eq!(from_path("/api/appointments/v"), None);
        assert_eq!(from_path("/api/vx/appointments"), None);
        assert_eq!(from_path("/api/video/1"), None);
        assert_eq!(from_path("/api/V3"), Some(ApiVersion::Major(3)));
        assert_eq!(
            from_path("/api/users/v7"),
            None,
            "an id deeper in is not a version"
        );
    }

    #[test]
    fn headers_and_media_types() {
        let name = http::HeaderName::from_static("api-version");
        let date = ApiVersion::date(2024, 4, 10).unwrap();
        assert_eq!(
            from_header(&headers(&[("api-version", "2024-04-10")]), &name),
            Ok(Some(date))
        );
        assert_eq!(from_header(&headers(&[]), &name), Ok(None));
        assert!(from_header(&headers(&[("api-version", "tuesday")]), &name).is_err());
        assert!(
            from_header(
                &headers(&[("api-version", "v1"), ("api-version", "v1")]),
                &name
            )
            .is_err()
        );

        let accept = |v: &str| from_accept(&headers(&[("accept", v)]), "appointments");
        assert_eq!(
            accept("application/vnd.appointments.v2+json"),
            Ok(Some(ApiVersion::Major(2)))
        );
        assert_eq!(
            accept("text/html, application/vnd.appointments.v1+json;q=0.9"),
            Ok(Some(ApiVersion::Major(1)))
        );
        assert_eq!(
            accept("application/VND.Appointments.2024-04-10"),
            Ok(Some(date))
        );
        assert_eq!(accept("application/json"), Ok(None));
        assert_eq!(accept("application/vnd.appointments.v1+json;q=0"), Ok(None));
        assert_eq!(accept("application/vnd.other.v2+json"), Ok(None));
        assert!(accept("application/vnd.appointments.vX+json").is_err());
        assert!(
            accept("application/vnd.appointments.v1+json, application/vnd.appointments.v2+json")
                .is_err()
        );
    }
}
