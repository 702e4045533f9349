//! A read's answer on its way to its validators: the handler's ETag, or one digested from a
//! body within the limit.

use bytes::Bytes;
use http::Response;
use http::header::ETAG;
use http_body::Body;

use super::etag::EntityTag;
use super::store::StoredValidators;
use super::validators::{last_modified, stated};
use crate::body::PolicyBody;
use crate::buffer::{BoxError, Collected, Reading, collect_now, collect_rest};

/// Whether a response without an ETag gets one digested from its body.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Digest {
    Yes,
    /// `HEAD`: an empty body may be one a server stripped, not the representation's.
    UnlessEmpty,
}

/// A response on its way to its validators: done, or its body still being read.
pub(super) enum Digesting<B> {
    Done(Response<PolicyBody<B>>, StoredValidators),
    Reading {
        parts: http::response::Parts,
        reading: Reading,
        body: B,
        last_modified: Option<std::time::SystemTime>,
        digest: Digest,
    },
}

/// The response with its validators: the handler's ETag (never replaced) or one digested from
/// a body within the limit, and its Last-Modified. Found without waiting when the body's
/// frames are at hand, as a handler's buffered answer's are.
pub(super) fn start_digesting<B>(
    response: Response<B>,
    limit: usize,
    digest: Digest,
) -> Digesting<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    if response.headers().contains_key(ETAG) {
        let (response, validators) = stated(response);
        return Digesting::Done(response, validators);
    }
    let last_modified = last_modified(response.headers());
    let (parts, body) = response.into_parts();
    match collect_now(body, limit) {
        Ok(collected) => {
            let (response, validators) = digested(parts, collected, last_modified, digest);
            Digesting::Done(response, validators)
        }
        Err((reading, body)) => Digesting::Reading {
            parts,
            reading,
            body,
            last_modified,
            digest,
        },
    }
}

impl<B> Digesting<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    /// The response with its validators, once its body is read.
    pub(super) async fn done(self) -> (Response<PolicyBody<B>>, StoredValidators) {
        match self {
            Self::Done(response, validators) => (response, validators),
            Self::Reading {
                parts,
                reading,
                body,
                last_modified,
                digest,
            } => digested(
                parts,
                collect_rest(reading, body).await,
                last_modified,
                digest,
            ),
        }
    }
}

/// The response rebuilt around what reading its body found, with the ETag digested from a
/// whole body.
fn digested<B>(
    mut parts: http::response::Parts,
    collected: Collected<B>,
    last_modified: Option<std::time::SystemTime>,
    digest: Digest,
) -> (Response<PolicyBody<B>>, StoredValidators) {
    let (body, etag) = match collected {
        Collected::Whole(bytes) if bytes.is_empty() && digest == Digest::UnlessEmpty => {
            (PolicyBody::full(bytes), None)
        }
        Collected::Whole(bytes) => {
            let tag = EntityTag::digest(&bytes);
            parts.headers.insert(ETAG, tag.to_header_value());
            (PolicyBody::full(bytes), Some(tag))
        }
        Collected::Partial {
            head,
            trailers,
            rest,
        } => (PolicyBody::resumed(head, trailers, rest), None),
        Collected::Failed(error) => {
            tracing::warn!(layer = "conditional", %error, "response body failed while digesting it");
            // What is left is an empty body: its announced length no longer holds.
            parts.headers.remove(http::header::CONTENT_LENGTH);
            (PolicyBody::empty(), None)
        }
    };
    (
        Response::from_parts(parts, body),
        StoredValidators {
            etag,
            last_modified,
        },
    )
}
