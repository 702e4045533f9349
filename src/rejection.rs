//! A policy's "no": the [`Rejection`], and how it becomes a response.
//!
//! HTTP callers get RFC 9457 problem details (`application/problem+json`) with the extension member
//! `error`, a stable snake_case code. gRPC callers (`content-type: application/grpc*`) get a
//! trailers-only answer: HTTP 200 with `grpc-status` and a percent-encoded `grpc-message`. Either way
//! the [`Rejection`] is left in the response extensions, so an outer layer (audit) can see which
//! policy answered. Replace the whole rendering with [`RenderRejection`], which closures implement.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Response, StatusCode, Uri};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::body::PolicyBody;

/// gRPC status codes that policy rejections map to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u8)]
pub enum GrpcCode {
    /// 2: no better code fits.
    Unknown = 2,
    /// 3: the request is malformed (HTTP 400, 422).
    InvalidArgument = 3,
    /// 7: authenticated, but not allowed (HTTP 403).
    PermissionDenied = 7,
    /// 8: a quota ran out (HTTP 429).
    ResourceExhausted = 8,
    /// 9: a precondition failed (HTTP 412, 428).
    FailedPrecondition = 9,
    /// 10: a conflicting operation is under way (HTTP 409).
    Aborted = 10,
    /// 12: the method or version no longer exists (HTTP 410).
    Unimplemented = 12,
    /// 13: an internal error (HTTP 500).
    Internal = 13,
    /// 14: a dependency is down; retry later (HTTP 503).
    Unavailable = 14,
    /// 16: no valid credentials (HTTP 401).
    Unauthenticated = 16,
}

impl GrpcCode {
    /// The code a rejection with this HTTP status maps to.
    #[must_use]
    pub fn from_status(status: StatusCode) -> Self {
        match status.as_u16() {
            400 | 413 | 422 => Self::InvalidArgument,
            401 => Self::Unauthenticated,
            403 => Self::PermissionDenied,
            409 => Self::Aborted,
            410 => Self::Unimplemented,
            412 | 428 => Self::FailedPrecondition,
            429 => Self::ResourceExhausted,
            500 => Self::Internal,
            503 => Self::Unavailable,
            _ => Self::Unknown,
        }
    }

    /// The numeric code, as sent in `grpc-status`.
    #[must_use]
    pub fn as_u8(self) -> u8 {
        self as u8
    }
}

/// Why a policy refused a request: everything needed to answer it, for HTTP or gRPC.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Rejection {
    /// The HTTP status.
    pub status: StatusCode,
    /// Stable snake_case code, e.g. `rate_limit_exceeded`: the `error` member of the problem body.
    pub error: Cow<'static, str>,
    /// Human explanation of this occurrence.
    pub detail: String,
    /// Headers the answer must carry (`Retry-After`, `WWW-Authenticate`, rate-limit fields, ...).
    pub headers: HeaderMap,
    /// The gRPC status for gRPC callers.
    pub grpc_code: GrpcCode,
}

impl Rejection {
    /// A rejection with this status, error code and detail; the gRPC code follows the status.
    #[must_use]
    pub fn new(
        status: StatusCode,
        error: impl Into<Cow<'static, str>>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status,
            error: error.into(),
            detail: detail.into(),
            headers: HeaderMap::new(),
            grpc_code: GrpcCode::from_status(status),
        }
    }

    /// Adds a header to the answer.
    #[must_use]
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// The title of the problem: the status's reason phrase, as RFC 9457 asks for `about:blank`.
    #[must_use]
    pub fn title(&self) -> &'static str {
        self.status.canonical_reason().unwrap_or("Error")
    }
}

/// What a renderer may know of the refused request.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RejectionContext<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request target.
    pub uri: &'a Uri,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The renderer a [`PolicyStack`](crate::stack::PolicyStack) set for every layer, when one
    /// did: layers without their own use it.
    stack: Option<&'a SharedRenderer>,
}

impl<'a> RejectionContext<'a> {
    /// The context of a request.
    #[must_use]
    pub fn of<B>(request: &'a http::Request<B>) -> Self {
        Self {
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
            stack: request
                .extensions()
                .get::<StackRenderer>()
                .map(|stack| &stack.0),
        }
    }

    /// The context of a request known by its parts (an extractor's), with the stack's
    /// renderer when the request carried one.
    #[cfg_attr(not(any(feature = "jwt", feature = "axum")), allow(dead_code))]
    pub(crate) fn of_parts(
        method: &'a Method,
        uri: &'a Uri,
        headers: &'a HeaderMap,
        stack: Option<&'a StackRenderer>,
    ) -> Self {
        Self {
            method,
            uri,
            headers,
            stack: stack.map(|stack| &stack.0),
        }
    }

    /// Whether the caller speaks gRPC or gRPC-Web (`application/grpc`, `application/grpc+proto`,
    /// `application/grpc-web-text`, ...), not some other type that merely starts alike.
    #[must_use]
    pub fn is_grpc(&self) -> bool {
        self.grpc_content_type().is_some()
    }

    /// The content type a trailers-only answer carries: `application/grpc`, or for gRPC-Web the
    /// caller's own type (its framing and encoding).
    fn grpc_content_type(&self) -> Option<HeaderValue> {
        let value = self.headers.get(CONTENT_TYPE)?;
        let is = |family: &[u8]| {
            value.as_bytes().strip_prefix(family).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with(b"+") || rest.starts_with(b";")
            })
        };
        if is(b"application/grpc") {
            Some(HeaderValue::from_static("application/grpc"))
        } else if is(b"application/grpc-web") || is(b"application/grpc-web-text") {
            Some(value.clone())
        } else {
            None
        }
    }
}

/// What a renderer needs of a request that has gone on to the inner service: its method, target
/// and content type, kept so a layer can still refuse after the inner service answered. Boxed:
/// it waits in futures that are moved and allocated on every request, and is rarely needed.
pub(crate) struct RequestShadow(Box<http::Request<()>>);

impl Default for RequestShadow {
    /// A shadow of no request in particular: a plain problem+json answer.
    fn default() -> Self {
        Self(Box::new(http::Request::new(())))
    }
}

impl RequestShadow {
    pub(crate) fn of<B>(request: &http::Request<B>) -> Self {
        let mut shadow = http::Request::new(());
        *shadow.method_mut() = request.method().clone();
        *shadow.uri_mut() = request.uri().clone();
        if let Some(content_type) = request.headers().get(CONTENT_TYPE) {
            shadow
                .headers_mut()
                .insert(CONTENT_TYPE, content_type.clone());
        }
        if let Some(stack) = request.extensions().get::<StackRenderer>() {
            shadow.extensions_mut().insert(stack.clone());
        }
        Self(Box::new(shadow))
    }

    pub(crate) fn context(&self) -> RejectionContext<'_> {
        RejectionContext::of(&self.0)
    }
}

/// Turns a [`Rejection`] into a response. Implemented for closures
/// `Fn(&Rejection, &RejectionContext) -> Response<Bytes>`.
pub trait RenderRejection: Send + Sync + 'static {
    /// The response for this rejection.
    fn render(&self, rejection: &Rejection, context: &RejectionContext<'_>) -> Response<Bytes>;
}

impl<F> RenderRejection for F
where
    F: Fn(&Rejection, &RejectionContext<'_>) -> Response<Bytes> + Send + Sync + 'static,
{
    fn render(&self, rejection: &Rejection, context: &RejectionContext<'_>) -> Response<Bytes> {
        self(rejection, context)
    }
}

/// The default renderer: problem+json for HTTP, trailers-only for gRPC.
#[derive(Debug, Clone, Default)]
pub struct ProblemRenderer {
    docs_base: Option<Arc<str>>,
}

impl ProblemRenderer {
    /// A renderer without documentation links.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a `docs` member, `{base}{error}` (e.g. `https://docs.example.com/errors#rate_limit_exceeded`
    /// from the base `https://docs.example.com/errors#`).
    #[must_use]
    pub fn docs_base(mut self, base: impl Into<Arc<str>>) -> Self {
        self.docs_base = Some(base.into());
        self
    }
}

#[derive(serde::Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    title: &'a str,
    status: u16,
    detail: &'a str,
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    docs: Option<String>,
}

/// gRPC asks for bytes outside printable ASCII, and `%` itself, to be percent-encoded.
const GRPC_MESSAGE: &AsciiSet = &CONTROLS.add(b'%');

impl RenderRejection for ProblemRenderer {
    fn render(&self, rejection: &Rejection, context: &RejectionContext<'_>) -> Response<Bytes> {
        if let Some(content_type) = context.grpc_content_type() {
            return grpc_response(rejection, content_type);
        }
        let problem = Problem {
            kind: "about:blank",
            title: rejection.title(),
            status: rejection.status.as_u16(),
            detail: &rejection.detail,
            error: &rejection.error,
            docs: self
                .docs_base
                .as_ref()
                .map(|base| format!("{base}{}", rejection.error)),
        };
        // Serialising plain strings and numbers cannot fail; fall back to an empty object anyway
        // rather than panicking on a request path.
        let body = serde_json::to_vec(&problem).unwrap_or_else(|_| b"{}".to_vec());
        let mut response = Response::new(Bytes::from(body));
        *response.status_mut() = rejection.status;
        let headers = response.headers_mut();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        for (name, value) in &rejection.headers {
            headers.append(name, value.clone());
        }
        response
    }
}

fn grpc_response(rejection: &Rejection, content_type: HeaderValue) -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, content_type);
    headers.insert(
        "grpc-status",
        HeaderValue::from(u16::from(rejection.grpc_code.as_u8())),
    );
    let message = utf8_percent_encode(&rejection.detail, GRPC_MESSAGE).to_string();
    if let Ok(value) = HeaderValue::from_str(&message) {
        headers.insert("grpc-message", value);
    }
    for (name, value) in &rejection.headers {
        headers.append(name, value.clone());
    }
    response
}

/// A shared renderer, as layers hold it: one set for the layer, or the default, which gives way
/// to a renderer a [`PolicyStack`](crate::stack::PolicyStack) sets for all its layers.
#[derive(Clone)]
pub struct SharedRenderer {
    renderer: Arc<dyn RenderRejection>,
    /// Set for the layer (not the default): it wins over the stack's.
    own: bool,
}

impl Default for SharedRenderer {
    fn default() -> Self {
        Self {
            renderer: Arc::new(ProblemRenderer::new()),
            own: false,
        }
    }
}

/// The renderer a [`PolicyStack`](crate::stack::PolicyStack) sets for every layer, carried in
/// the request extensions.
#[derive(Clone, Debug)]
pub(crate) struct StackRenderer(pub(crate) SharedRenderer);

impl fmt::Debug for SharedRenderer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SharedRenderer")
    }
}

impl SharedRenderer {
    /// Wraps a renderer.
    pub fn new(renderer: impl RenderRejection) -> Self {
        Self {
            renderer: Arc::new(renderer),
            own: true,
        }
    }

    /// Renders the rejection: with this renderer when it was set for the layer, else with the
    /// stack's when the request carries one, else with the default.
    pub(crate) fn render(
        &self,
        rejection: &Rejection,
        context: &RejectionContext<'_>,
    ) -> Response<Bytes> {
        let chosen = match context.stack {
            Some(stack) if !self.own => stack,
            _ => self,
        };
        chosen.renderer.render(rejection, context)
    }

    /// Renders the rejection and leaves it in the response extensions.
    pub fn respond<B>(
        &self,
        rejection: Rejection,
        context: &RejectionContext<'_>,
    ) -> Response<PolicyBody<B>> {
        let response = self.render(&rejection, context);
        let (mut parts, body) = response.into_parts();
        parts.extensions.insert(rejection);
        Response::from_parts(parts, PolicyBody::full(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(content_type: &str) -> http::Request<()> {
        http::Request::builder()
            .uri("/x")
            .header(CONTENT_TYPE, content_type)
            .body(())
            .unwrap()
    }

    #[test]
    fn problem_json_carries_the_members_and_headers() {
        let req = request("application/json");
        let rejection = Rejection::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            "slow down",
        )
        .with_header(http::header::RETRY_AFTER, HeaderValue::from_static("3"));
        let response = ProblemRenderer::new()
            .docs_base("https://docs.example/errors#")
            .render(&rejection, &RejectionContext::of(&req));
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
        assert_eq!(response.headers()[http::header::RETRY_AFTER], "3");
        let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "type": "about:blank", "title": "Too Many Requests", "status": 429,
                "detail": "slow down", "error": "rate_limit_exceeded",
                "docs": "https://docs.example/errors#rate_limit_exceeded"
            })
        );
    }

    #[test]
    fn grpc_callers_get_trailers_only_answers() {
        let req = request("application/grpc+proto");
        let rejection = Rejection::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_exceeded",
            "50% used, ünïcode",
        );
        let response = ProblemRenderer::new().render(&rejection, &RejectionContext::of(&req));
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/grpc");
        assert_eq!(response.headers()["grpc-status"], "8");
        assert_eq!(
            response.headers()["grpc-message"],
            "50%25 used, %C3%BCn%C3%AFcode"
        );
        assert!(response.body().is_empty());
    }

    #[test]
    fn only_grpc_content_types_are_grpc() {
        for (content_type, grpc) in [
            ("application/grpc", Some("application/grpc")),
            ("application/grpc+json", Some("application/grpc")),
            ("application/grpc;charset=utf-8", Some("application/grpc")),
            (
                "application/grpc-web+proto",
                Some("application/grpc-web+proto"),
            ),
            (
                "application/grpc-web-text",
                Some("application/grpc-web-text"),
            ),
            ("application/grpcx", None),
            ("application/json", None),
        ] {
            let req = request(content_type);
            let context = RejectionContext::of(&req);
            assert_eq!(
                context
                    .grpc_content_type()
                    .as_ref()
                    .map(|v| v.to_str().unwrap()),
                grpc,
                "{content_type}"
            );
        }
    }

    #[test]
    fn status_to_grpc_mapping_follows_the_semantics() {
        let cases = [
            (401, 16),
            (403, 7),
            (429, 8),
            (412, 9),
            (428, 9),
            (409, 10),
            (400, 3),
            (422, 3),
            (410, 12),
            (503, 14),
        ];
        for (status, code) in cases {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(GrpcCode::from_status(status).as_u8(), code, "{status}");
        }
    }

    #[test]
    fn responses_keep_the_rejection_in_extensions() {
        let req = request("application/json");
        let rejection =
            Rejection::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", "down");
        let response: Response<PolicyBody<()>> =
            SharedRenderer::default().respond(rejection, &RejectionContext::of(&req));
        assert_eq!(
            response.extensions().get::<Rejection>().unwrap().error,
            "store_unavailable"
        );
    }
}
