//! Entity tags (RFC 9110 section 8.8.3): `"xyzzy"` (strong) and `W/"xyzzy"` (weak), and the
//! lists `If-Match` and `If-None-Match` carry.

use std::fmt;

use http::HeaderValue;

/// An entity tag: opaque characters between double quotes, marked weak by a `W/` prefix.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EntityTag {
    weak: bool,
    /// The characters between the quotes (`etagc`: `!`, `#`-`~`, and bytes above 0x7F).
    tag: TagBytes,
}

/// An entity tag's characters: held inline up to [`TagBytes::INLINE`] bytes (a digest's 22
/// fit), so the tags made, stored and copied on every read cost no allocation; longer ones on
/// the heap.
#[derive(Clone)]
enum TagBytes {
    Inline {
        len: u8,
        bytes: [u8; TagBytes::INLINE],
    },
    Heap(Box<[u8]>),
}

impl TagBytes {
    const INLINE: usize = 30;

    fn new(tag: &[u8]) -> Self {
        match u8::try_from(tag.len()) {
            Ok(len) if tag.len() <= Self::INLINE => {
                let mut bytes = [0; Self::INLINE];
                bytes[..tag.len()].copy_from_slice(tag);
                Self::Inline { len, bytes }
            }
            _ => Self::Heap(tag.into()),
        }
    }
}

impl std::ops::Deref for TagBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Heap(bytes) => bytes,
        }
    }
}

impl PartialEq for TagBytes {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for TagBytes {}

impl std::hash::Hash for TagBytes {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (**self).hash(state);
    }
}

/// Why an entity tag or a list of them did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "not an entity tag list: expected `*` or `\"...\"` / `W/\"...\"` items separated by commas"
)]
pub struct EtagError;

impl EntityTag {
    /// A strong tag of these characters.
    ///
    /// # Errors
    /// [`EtagError`] when `tag` holds a character an entity tag cannot (a quote, a space, a control).
    pub fn strong(tag: impl AsRef<[u8]>) -> Result<Self, EtagError> {
        Self::new(false, tag.as_ref())
    }

    /// A weak tag of these characters.
    ///
    /// # Errors
    /// As [`strong`](Self::strong).
    pub fn weak(tag: impl AsRef<[u8]>) -> Result<Self, EtagError> {
        Self::new(true, tag.as_ref())
    }

    fn new(weak: bool, tag: &[u8]) -> Result<Self, EtagError> {
        if tag.iter().all(|&b| is_etagc(b)) {
            Ok(Self {
                weak,
                tag: TagBytes::new(tag),
            })
        } else {
            Err(EtagError)
        }
    }

    /// Parses one entity tag, as an `ETag` header carries it.
    ///
    /// ```
    /// use api_policy::conditional::EntityTag;
    /// let tag = EntityTag::parse(b"W/\"v7\"").unwrap();
    /// assert!(tag.is_weak());
    /// assert_eq!(tag.tag(), b"v7");
    /// assert!(EntityTag::parse(b"v7").is_err());
    /// ```
    ///
    /// # Errors
    /// [`EtagError`] for anything but one well-formed tag.
    pub fn parse(value: &[u8]) -> Result<Self, EtagError> {
        match parse_one(value.trim_ascii())? {
            (tag, []) => Ok(tag),
            _ => Err(EtagError),
        }
    }

    /// The strong tag of a body: 128 bits of its SHA-256, base64url. Equal bodies get equal tags,
    /// and different bodies different ones (to within 2^-64 for a collision by chance).
    #[must_use]
    pub fn digest(body: &[u8]) -> Self {
        use base64::Engine as _;
        use sha2::{Digest, Sha256};
        let hash = Sha256::digest(body);
        let mut tag = [0u8; 22];
        // 16 bytes are 22 base64url characters without padding; the buffer is exactly that.
        let written = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode_slice(&hash[..16], &mut tag)
            .unwrap_or(0);
        Self {
            weak: false,
            tag: TagBytes::new(&tag[..written]),
        }
    }

    /// Whether the tag is weak.
    #[must_use]
    pub fn is_weak(&self) -> bool {
        self.weak
    }

    /// The characters between the quotes.
    #[must_use]
    pub fn tag(&self) -> &[u8] {
        &self.tag
    }

    /// Strong comparison: both strong and the same characters (`If-Match`).
    #[must_use]
    pub fn strong_eq(&self, other: &Self) -> bool {
        !self.weak && !other.weak && self.tag == other.tag
    }

    /// Weak comparison: the same characters, weak or not (`If-None-Match`).
    #[must_use]
    pub fn weak_eq(&self, other: &Self) -> bool {
        self.tag == other.tag
    }

    /// The tag as a header value.
    #[must_use]
    pub fn to_header_value(&self) -> HeaderValue {
        // Exactly the length: a full Vec becomes `Bytes` without a second allocation.
        let mut bytes = Vec::with_capacity(self.tag.len() + 2 + if self.weak { 2 } else { 0 });
        if self.weak {
            bytes.extend_from_slice(b"W/");
        }
        bytes.push(b'"');
        bytes.extend_from_slice(&self.tag);
        bytes.push(b'"');
        // Every etagc byte is valid in a header value; a failure cannot happen, and an empty
        // strong tag is the harmless fallback. The buffer becomes the value without a copy.
        HeaderValue::from_maybe_shared(bytes::Bytes::from(bytes))
            .unwrap_or_else(|_| HeaderValue::from_static("\"\""))
    }
}

impl fmt::Debug for EntityTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}\"{}\"",
            if self.weak { "W/" } else { "" },
            String::from_utf8_lossy(&self.tag)
        )
    }
}

/// `etagc = %x21 / %x23-7E / obs-text`.
fn is_etagc(b: u8) -> bool {
    b == 0x21 || (0x23..=0x7E).contains(&b) || b >= 0x80
}

/// One tag at the start of `input`, and what follows it.
fn parse_one(input: &[u8]) -> Result<(EntityTag, &[u8]), EtagError> {
    let (weak, rest) = match input {
        [b'W', b'/', rest @ ..] => (true, rest),
        rest => (false, rest),
    };
    let [b'"', rest @ ..] = rest else {
        return Err(EtagError);
    };
    let end = rest.iter().position(|&b| b == b'"').ok_or(EtagError)?;
    let tag = EntityTag::new(weak, &rest[..end])?;
    Ok((tag, &rest[end + 1..]))
}

/// What an `If-Match` or `If-None-Match` header asks about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagList {
    /// `*`: any current representation.
    Any,
    /// These tags (never empty).
    Tags(Vec<EntityTag>),
}

impl TagList {
    /// Parses every line of the header as one list (RFC 9110 section 5.3: repeated field lines
    /// are one comma-separated list). `None` without the header.
    ///
    /// # Errors
    /// [`EtagError`] for anything malformed: an unquoted tag, an unclosed quote, `*` mixed with
    /// tags, or an empty list.
    pub fn from_headers<'a>(
        values: impl IntoIterator<Item = &'a HeaderValue>,
    ) -> Result<Option<Self>, EtagError> {
        let mut tags = Vec::new();
        let mut any = false;
        let mut seen = false;
        for value in values {
            seen = true;
            let mut rest = value.as_bytes().trim_ascii();
            if rest == b"*" {
                any = true;
                continue;
            }
            loop {
                // Empty list elements (`a, , b`) are allowed and skipped (RFC 9110 section 5.6.1).
                rest = rest.trim_ascii_start();
                if let [b',', tail @ ..] = rest {
                    rest = tail;
                    continue;
                }
                if rest.is_empty() {
                    break;
                }
                let (tag, tail) = parse_one(rest)?;
                tags.push(tag);
                rest = tail.trim_ascii_start();
                match rest {
                    [] => break,
                    [b',', tail @ ..] => rest = tail,
                    _ => return Err(EtagError),
                }
            }
        }
        match (seen, any, tags.is_empty()) {
            (false, _, _) => Ok(None),
            (true, true, true) => Ok(Some(TagList::Any)),
            (true, false, false) => Ok(Some(TagList::Tags(tags))),
            _ => Err(EtagError),
        }
    }

    /// Whether the list matches the current representation (`exists`, with tag `current`) by
    /// strong comparison, as `If-Match` compares: `*` matches any representation, a tag only a
    /// representation with an equal strong tag.
    #[must_use]
    pub fn matches_strong(&self, exists: bool, current: Option<&EntityTag>) -> bool {
        self.matches(exists, current, EntityTag::strong_eq)
    }

    /// As [`matches_strong`](Self::matches_strong), by weak comparison (`If-None-Match`).
    #[must_use]
    pub fn matches_weak(&self, exists: bool, current: Option<&EntityTag>) -> bool {
        self.matches(exists, current, EntityTag::weak_eq)
    }

    fn matches(
        &self,
        exists: bool,
        current: Option<&EntityTag>,
        eq: fn(&EntityTag, &EntityTag) -> bool,
    ) -> bool {
        match (self, current) {
            _ if !exists => false,
            (TagList::Any, _) => true,
            (TagList::Tags(_), None) => false,
            (TagList::Tags(tags), Some(current)) => tags.iter().any(|t| eq(t, current)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(lines: &[&str]) -> Result<Option<TagList>, EtagError> {
        let values: Vec<HeaderValue> = lines
            .iter()
            .map(|l| HeaderValue::from_bytes(l.as_bytes()).unwrap())
            .collect();
        TagList::from_headers(&values)
    }

    fn tags(lines: &[&str]) -> Vec<EntityTag> {
        match list(lines) {
            Ok(Some(TagList::Tags(t))) => t,
            other => panic!("{lines:?}: {other:?}"),
        }
    }

    #[test]
    fn single_tags_parse_and_print_back() {
        for raw in ["\"xyzzy\"", "W/\"xyzzy\"", "\"\"", "\"a!#~\u{e9}\""] {
            let tag = EntityTag::parse(raw.as_bytes()).unwrap();
            assert_eq!(tag.to_header_value().as_bytes(), raw.as_bytes());
        }
        for bad in [
            "xyzzy",
            "\"open",
            "w/\"x\"",
            "W/x",
            "\"a\"b",
            "\"a b\"",
            "\"a\"\"b\"",
            "",
        ] {
            assert!(EntityTag::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn lists_span_lines_and_skip_empty_elements() {
        assert_eq!(
            tags(&["\"a\", W/\"b\"", " ,\"c\" ,, "]),
            vec![
                EntityTag::strong("a").unwrap(),
                EntityTag::weak("b").unwrap(),
                EntityTag::strong("c").unwrap()
            ]
        );
        // A comma inside the quotes belongs to the tag.
        assert_eq!(tags(&["\"a,b\""]), vec![EntityTag::strong("a,b").unwrap()]);
        assert_eq!(list(&["*"]), Ok(Some(TagList::Any)));
        assert_eq!(list(&[]), Ok(None));
        for bad in [
            &["\"a\" \"b\""][..],
            &["*, \"a\""],
            &["*", "\"a\""],
            &["a"],
            &[""],
            &[" , "],
        ] {
            assert_eq!(list(bad), Err(EtagError), "{bad:?}");
        }
    }

    #[test]
    fn digests_are_stable_strong_and_distinct() {
        let a = EntityTag::digest(b"{\"id\":1}");
        assert_eq!(a, EntityTag::digest(b"{\"id\":1}"));
        assert_ne!(a, EntityTag::digest(b"{\"id\":2}"));
        assert!(!a.is_weak());
        assert_eq!(a.tag().len(), 22);
        assert_eq!(EntityTag::parse(a.to_header_value().as_bytes()), Ok(a));
    }

    /// Short tags are held inline and long ones on the heap: either way a tag keeps exactly its
    /// characters, and compares by them.
    #[test]
    fn tags_of_any_length_keep_their_characters() {
        for len in [0, 1, 22, 29, 30, 31, 200] {
            let text = "a".repeat(len);
            let tag = EntityTag::strong(&text).unwrap();
            assert_eq!(tag.tag(), text.as_bytes());
            assert_eq!(
                EntityTag::parse(tag.to_header_value().as_bytes()),
                Ok(tag.clone())
            );
            assert_ne!(tag, EntityTag::strong(format!("{text}b")).unwrap());
            assert!(tag.weak_eq(&EntityTag::weak(&text).unwrap()));
        }
    }

    #[test]
    fn strong_and_weak_comparison() {
        let strong = EntityTag::strong("1").unwrap();
        let weak = EntityTag::weak("1").unwrap();
        let other = EntityTag::strong("2").unwrap();
        // RFC 9110 section 8.8.3.2's table.
        assert!(!weak.strong_eq(&weak) && weak.weak_eq(&weak));
        assert!(!weak.strong_eq(&strong) && weak.weak_eq(&strong));
        assert!(!weak.strong_eq(&EntityTag::weak("2").unwrap()));
        assert!(strong.strong_eq(&strong) && strong.weak_eq(&strong));
        assert!(!strong.weak_eq(&other));
        let if_match = TagList::Tags(vec![other.clone(), weak.clone()]);
        assert!(
            !if_match.matches_strong(true, Some(&strong)),
            "W/\"1\" never matches strongly"
        );
        assert!(if_match.matches_weak(true, Some(&strong)));
        assert!(TagList::Any.matches_strong(true, Some(&weak)));
        assert!(
            TagList::Any.matches_strong(true, None),
            "`*` needs a representation, not a tag"
        );
        assert!(!TagList::Any.matches_strong(false, None));
        assert!(!TagList::Any.matches_weak(false, None));
        assert!(!if_match.matches_weak(true, None));
    }
}
