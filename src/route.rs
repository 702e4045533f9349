//! Route templates: which rule applies to a request, and under what name it is counted and logged.
//!
//! A pattern is an optional method and a path, `"POST /api/v2/appointments"` or
//! `"/api/{version}/patients/{id}"`: `{name}` matches one non-empty segment, a final `*` matches
//! the rest of the path (zero or more segments), and `"*"` alone matches every path. Rules are tried
//! in the order they were added and the first match wins, so add specific routes before general ones.

use std::borrow::Cow;

use http::Method;
use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};

use crate::error::ConfigError;

/// What a path segment percent-encodes in its canonical form besides controls and non-ASCII
/// bytes: what cannot stand in a segment, `%` itself, and `/` (so a decoded `%2F` stays inside
/// its segment).
const SEGMENT_ESCAPED: &[u8] = b" \"#%/<>?`{}";

/// [`SEGMENT_ESCAPED`] and the controls, as the encoder takes them.
const SEGMENT: &AsciiSet = &{
    let mut set = CONTROLS.add(SEGMENT_ESCAPED[0]);
    let mut at = 1;
    while at < SEGMENT_ESCAPED.len() {
        set = set.add(SEGMENT_ESCAPED[at]);
        at += 1;
    }
    set
};

/// By byte: whether a segment holding it is spelt as it is in canonical form (printable ASCII,
/// not in [`SEGMENT_ESCAPED`]). A table, as every request's path is looked at byte by byte.
const SEGMENT_PLAIN: [bool; 256] = {
    let mut plain = [false; 256];
    let mut byte = b'!';
    while byte <= b'~' {
        plain[byte as usize] = true;
        byte += 1;
    }
    let mut at = 0;
    while at < SEGMENT_ESCAPED.len() {
        plain[SEGMENT_ESCAPED[at] as usize] = false;
        at += 1;
    }
    plain
};

/// A path segment as the handler sees it (axum decodes them).
fn decoded(part: &str) -> Cow<'_, str> {
    // Nearly every segment has nothing to decode, and is already UTF-8: the decoder's lossy
    // check would only read it again.
    if !part.as_bytes().contains(&b'%') {
        return Cow::Borrowed(part);
    }
    percent_decode_str(part).decode_utf8_lossy()
}

/// A path segment as [`RoutePattern::resolve`] spells it: decoded, then encoded again, so every
/// spelling of one value is one spelling.
fn push_normalised(out: &mut String, part: &str) {
    // Nearly every segment is plain ASCII that neither decoding nor encoding changes.
    if part.bytes().all(|b| SEGMENT_PLAIN[usize::from(b)]) {
        out.push_str(part);
    } else {
        out.extend(utf8_percent_encode(&decoded(part), SEGMENT));
    }
}

/// The non-empty segments of a path, split on `/` byte by byte: every layer matches every
/// request's path, and a byte scan is several times cheaper than the generic `str` splitter.
pub(crate) fn segments(path: &str) -> Segments<'_> {
    Segments { rest: path }
}

/// The iterator [`segments`] returns.
pub(crate) struct Segments<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Segments<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            // `/` is ASCII, so both sides of it are character boundaries.
            let (segment, rest) = match self.rest.as_bytes().iter().position(|&b| b == b'/') {
                Some(slash) => (&self.rest[..slash], &self.rest[slash + 1..]),
                None => (self.rest, ""),
            };
            self.rest = rest;
            if !segment.is_empty() {
                return Some(segment);
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(Box<str>),
    Param(Box<str>),
    Rest,
}

/// One parsed route pattern.
#[derive(Debug, Clone)]
pub struct RoutePattern {
    method: Option<Method>,
    segments: Vec<Segment>,
    template: Box<str>,
}

impl RoutePattern {
    /// Parses `"[METHOD ]/path/{param}/*"`.
    ///
    /// # Errors
    /// A [`ConfigError`] for a path not starting with `/`, an unclosed or empty `{}`, a `*` that is not
    /// the last segment, or an invalid method.
    pub fn parse(spec: &str) -> Result<Self, ConfigError> {
        let err = |reason: &str| ConfigError::new("route", format!("`{spec}`: {reason}"));
        let spec = spec.trim();
        let (method, path) = match spec.split_once(' ') {
            Some((m, p)) => (Some(parse_method(m).map_err(err)?), p.trim()),
            None => (None, spec),
        };
        let segments = if path == "*" {
            vec![Segment::Rest]
        } else {
            if !path.starts_with('/') {
                return Err(err("a path must start with `/`"));
            }
            let parts: Vec<&str> = path[1..].split('/').filter(|s| !s.is_empty()).collect();
            let last = parts.len().saturating_sub(1);
            let mut segments = Vec::with_capacity(parts.len());
            for (i, part) in parts.iter().enumerate() {
                let segment = if *part == "*" {
                    if i != last {
                        return Err(err("`*` may only be the last segment"));
                    }
                    Segment::Rest
                } else if let Some(inner) = part.strip_prefix('{') {
                    let name = inner.strip_suffix('}').ok_or_else(|| err("unclosed `{`"))?;
                    if name.is_empty() || name.contains(['{', '}']) {
                        return Err(err("a parameter needs a name, as in `{id}`"));
                    }
                    Segment::Param(name.into())
                } else if part.contains(['{', '}']) {
                    return Err(err("a parameter must fill a whole segment"));
                } else {
                    Segment::Literal((*part).into())
                };
                segments.push(segment);
            }
            segments
        };
        let template = match &method {
            Some(m) => format!("{m} {path}"),
            None => path.to_string(),
        };
        Ok(Self {
            method,
            segments,
            template: template.into(),
        })
    }

    /// The method the pattern names, if any.
    #[must_use]
    pub fn method(&self) -> Option<&Method> {
        self.method.as_ref()
    }

    /// Whether the pattern has the parameter `{name}`.
    #[must_use]
    pub fn has_param(&self, name: &str) -> bool {
        self.segments
            .iter()
            .any(|s| matches!(s, Segment::Param(p) if &**p == name))
    }

    /// The pattern as written (normalised), e.g. `"POST /api/v2/appointments"`: the name under which
    /// requests it matches are counted and logged.
    #[must_use]
    pub fn template(&self) -> &str {
        &self.template
    }

    /// Whether this pattern matches a request.
    #[must_use]
    pub fn matches(&self, method: &Method, path: &str) -> bool {
        if self.method.as_ref().is_some_and(|m| m != method) {
            return false;
        }
        let mut parts = segments(path);
        for segment in &self.segments {
            match segment {
                Segment::Rest => return true,
                Segment::Literal(lit) => {
                    if parts.next() != Some(&**lit) {
                        return false;
                    }
                }
                Segment::Param(_) => {
                    if parts.next().is_none() {
                        return false;
                    }
                }
            }
        }
        parts.next().is_none()
    }

    /// The template with its parameters filled in from `path`, which this pattern must match:
    /// `/api/v2/appointments/{id}` and `/api/v2/appointments/apt_1/` give
    /// `/api/v2/appointments/apt_1`. What names one resource, whatever the request's spelling of
    /// the path: empty segments, a trailing slash, and percent-encoding (`apt%5F1` is `apt_1`,
    /// as the handler sees it) are normalised.
    #[must_use]
    pub fn resolve(&self, path: &str) -> String {
        let mut parts = segments(path);
        let mut out = String::with_capacity(path.len());
        for segment in &self.segments {
            match segment {
                Segment::Literal(lit) => {
                    parts.next();
                    out.push('/');
                    out.push_str(lit);
                }
                Segment::Param(_) => {
                    out.push('/');
                    push_normalised(&mut out, parts.next().unwrap_or_default());
                }
                Segment::Rest => {
                    for part in parts.by_ref() {
                        out.push('/');
                        push_normalised(&mut out, part);
                    }
                }
            }
        }
        if out.is_empty() {
            out.push('/');
        }
        out
    }

    /// Every path parameter's name and value in `path` (percent-decoded, as a handler sees
    /// it), which this pattern must match.
    pub fn params<'p>(&'p self, path: &'p str) -> impl Iterator<Item = (&'p str, Cow<'p, str>)> {
        let parts = segments(path);
        self.segments
            .iter()
            .zip(parts)
            .filter_map(|(segment, part)| match segment {
                Segment::Param(name) => Some((&**name, decoded(part))),
                _ => None,
            })
    }

    /// The value of path parameter `name` in `path`, which this pattern must match.
    #[must_use]
    pub fn param<'p>(&self, path: &'p str, name: &str) -> Option<&'p str> {
        let parts = segments(path);
        self.segments.iter().zip(parts).find_map(|(segment, part)| {
            matches!(segment, Segment::Param(n) if &**n == name).then_some(part)
        })
    }
}

/// An ordered list of route patterns, each with a value; the first match wins.
///
/// ```
/// use api_policy::route::RouteMatcher;
/// use http::Method;
///
/// let routes = RouteMatcher::new()
///     .add("POST /api/v2/appointments", "booking")?
///     .add("/api/{version}/patients/{id}", "phi")?;
/// let hit = routes.find(&Method::GET, "/api/v2/patients/pat_1").unwrap();
/// assert_eq!(*hit.value, "phi");
/// assert_eq!(hit.pattern.template(), "/api/{version}/patients/{id}");
/// assert_eq!(hit.pattern.param("/api/v2/patients/pat_1", "id"), Some("pat_1"));
/// # Ok::<(), api_policy::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
pub struct RouteMatcher<T> {
    routes: Vec<(RoutePattern, T)>,
}

impl<T> Default for RouteMatcher<T> {
    fn default() -> Self {
        Self { routes: Vec::new() }
    }
}

/// A matched route: the pattern and the value it was added with.
#[derive(Debug)]
pub struct RouteMatch<'a, T> {
    /// The pattern that matched.
    pub pattern: &'a RoutePattern,
    /// The value added with it.
    pub value: &'a T,
}

impl<T> RouteMatcher<T> {
    /// An empty matcher.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route after those already added.
    ///
    /// # Errors
    /// A [`ConfigError`] when the pattern does not parse.
    pub fn add(mut self, pattern: &str, value: T) -> Result<Self, ConfigError> {
        self.routes.push((RoutePattern::parse(pattern)?, value));
        Ok(self)
    }

    /// The first route matching the request.
    #[must_use]
    pub fn find(&self, method: &Method, path: &str) -> Option<RouteMatch<'_, T>> {
        self.routes
            .iter()
            .find(|(p, _)| p.matches(method, path))
            .map(|(pattern, value)| RouteMatch { pattern, value })
    }

    /// Where among the routes the first one matching the request is (for [`at`](Self::at)
    /// later, without matching again).
    pub(crate) fn position(&self, method: &Method, path: &str) -> Option<usize> {
        self.routes
            .iter()
            .position(|(p, _)| p.matches(method, path))
    }

    /// The route at a place [`position`](Self::position) gave.
    pub(crate) fn at(&self, index: usize) -> Option<RouteMatch<'_, T>> {
        self.routes
            .get(index)
            .map(|(pattern, value)| RouteMatch { pattern, value })
    }

    /// Whether no route was added.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// A method as a pattern or a configuration names it. Methods are case-sensitive: `post` would be
/// an extension method no client sends, so lower case is refused.
pub(crate) fn parse_method(text: &str) -> Result<Method, &'static str> {
    if text.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err("methods are upper case, as in `POST /orders`");
    }
    Method::from_bytes(text.as_bytes()).map_err(|_| "not an HTTP method")
}

/// Parses a pattern a configuration entry supplied, charging an error to that entry.
pub(crate) fn checked(
    pattern: &str,
    field: impl Into<Cow<'static, str>>,
) -> Result<RoutePattern, ConfigError> {
    RoutePattern::parse(pattern).map_err(|e| e.at(field))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> RoutePattern {
        RoutePattern::parse(s).unwrap()
    }

    #[test]
    fn literals_params_and_rest() {
        let pat = p("/api/{version}/patients/{id}");
        assert!(pat.matches(&Method::GET, "/api/v2/patients/pat_1"));
        assert!(pat.matches(&Method::DELETE, "/api/v2/patients/pat_1/"));
        assert!(!pat.matches(&Method::GET, "/api/v2/patients"));
        assert!(!pat.matches(&Method::GET, "/api/v2/patients/pat_1/notes"));
        assert!(!pat.matches(&Method::GET, "/api/v2/doctors/d1"));
        assert!(p("/api/*").matches(&Method::GET, "/api"));
        assert!(p("/api/*").matches(&Method::GET, "/api/a/b/c"));
        assert!(p("*").matches(&Method::POST, "/anything"));
    }

    #[test]
    fn resolve_fills_the_template() {
        let pat = p("/api/{version}/appointments/{id}");
        assert_eq!(
            pat.resolve("/api/v2/appointments/apt_1/"),
            "/api/v2/appointments/apt_1"
        );
        assert_eq!(
            pat.resolve("//api/v2//appointments/apt_1"),
            "/api/v2/appointments/apt_1"
        );
        assert_eq!(p("/files/*").resolve("/files/a/b"), "/files/a/b");
        assert_eq!(p("*").resolve("/"), "/");
        // One resource however the client encodes it; `%2F` stays inside its segment.
        assert_eq!(
            pat.resolve("/api/v2/appointments/apt%5F1"),
            "/api/v2/appointments/apt_1"
        );
        assert_eq!(
            pat.resolve("/api/v2/appointments/a%2Fb"),
            "/api/v2/appointments/a%2Fb"
        );
        assert_eq!(
            pat.resolve("/api/v2/appointments/a%2fb"),
            "/api/v2/appointments/a%2Fb"
        );
        assert_eq!(
            pat.resolve("/api/v2/appointments/a{b}\"c"),
            "/api/v2/appointments/a%7Bb%7D%22c",
            "what a segment cannot hold is encoded even when it arrived bare"
        );
        let params: Vec<_> = pat.params("/api/v2/appointments/apt%5F1").collect();
        assert_eq!(params, [("version", "v2".into()), ("id", "apt_1".into())]);
    }

    #[test]
    fn method_is_part_of_the_match() {
        let pat = p("POST /api/v2/appointments");
        assert!(pat.matches(&Method::POST, "/api/v2/appointments"));
        assert!(!pat.matches(&Method::GET, "/api/v2/appointments"));
        assert_eq!(pat.template(), "POST /api/v2/appointments");
    }

    #[test]
    fn bad_patterns_are_config_errors() {
        for bad in [
            "api/x",
            "/a/{id",
            "/a/{}",
            "/a/*/b",
            "/a/x{id}",
            "BAD\u{1} /a",
        ] {
            assert!(RoutePattern::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn first_match_wins() {
        let m = RouteMatcher::new()
            .add("/api/v2/patients/{id}", 1)
            .unwrap()
            .add("/api/*", 2)
            .unwrap();
        assert_eq!(
            *m.find(&Method::GET, "/api/v2/patients/x").unwrap().value,
            1
        );
        assert_eq!(*m.find(&Method::GET, "/api/v1/other").unwrap().value, 2);
        assert!(m.find(&Method::GET, "/health").is_none());
    }
}
