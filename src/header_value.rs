//! Header values made with as few allocations as their use allows.
//!
//! `HeaderValue::from(u64)` allocates twice: a buffer with room to spare, then a shared header
//! for it when it is frozen. And a value made from a `Vec` allocates again on its first clone.
//! These helpers make each value in one allocation, a small number's in none, and a value
//! written on every answer of a window (a rate limit's reset time) once a window.

use std::cell::RefCell;

use bytes::Bytes;
use http::HeaderValue;

/// Numbers below this are written from [`SMALL_DIGITS`]: the counts of most quotas (GitHub's
/// 5,000 an hour, 60 a minute) and every `Retry-After` short of three hours.
const SMALL: u64 = 10_000;

/// `0000` to `9999`, four digits each: a small number's value is a static slice of its digits.
static SMALL_DIGITS: [u8; 4 * SMALL as usize] = four_digit_numbers();

const fn four_digit_numbers() -> [u8; 4 * SMALL as usize] {
    let mut table = [0; 4 * SMALL as usize];
    let mut i = 0;
    while i < table.len() {
        let (n, place) = (i / 4, 3 - i % 4);
        // `n / 10^place % 10`, the digit `place` steps from the right.
        let mut shifted = n;
        let mut step = 0;
        while step < place {
            shifted /= 10;
            step += 1;
        }
        table[i] = b'0' + (shifted % 10) as u8;
        i += 1;
    }
    table
}

/// `n` in decimal: without an allocation below [`SMALL`], else in one of its exact size.
#[inline]
pub(crate) fn decimal(n: u64) -> HeaderValue {
    if n < SMALL {
        let len = match n {
            0..=9 => 1,
            10..=99 => 2,
            100..=999 => 3,
            _ => 4,
        };
        // Below SMALL, so inside the table.
        let end = 4 * n as usize + 4;
        if let Some(digits) = SMALL_DIGITS.get(end - len..end)
            && let Ok(value) = HeaderValue::from_maybe_shared(Bytes::from_static(digits))
        {
            return value;
        }
    }
    let mut digits = itoa::Buffer::new();
    // Digits are always a valid header value; the fallback cannot be reached.
    HeaderValue::from_bytes(digits.format(n).as_bytes())
        .unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// `n` in decimal, the same allocation as the last call on this thread for the same `n`: for a
/// value that changes once a second or once a window, not once a request.
#[inline]
pub(crate) fn recent_decimal(n: u64) -> HeaderValue {
    thread_local! {
        static LAST: RefCell<Option<(u64, HeaderValue)>> = const { RefCell::new(None) };
    }
    LAST.try_with(|last| {
        let mut last = last.try_borrow_mut().ok()?;
        if let Some((cached, value)) = last.as_ref()
            && *cached == n
        {
            return Some(value.clone());
        }
        let value = shared(Digits::of(n))?;
        *last = Some((n, value.clone()));
        Some(value)
    })
    .ok()
    .flatten()
    .unwrap_or_else(|| decimal(n))
}

/// `text` in one allocation that its clones share (a value written on a request, its answer and
/// its audit record); `None` when it holds what a header value cannot.
pub(crate) fn shared<T: AsRef<[u8]> + Send + 'static>(text: T) -> Option<HeaderValue> {
    HeaderValue::from_maybe_shared(Bytes::from_owner(text)).ok()
}

/// A number's decimal digits, held inline.
struct Digits {
    bytes: [u8; 20],
    len: usize,
}

impl Digits {
    fn of(n: u64) -> Self {
        let mut buffer = itoa::Buffer::new();
        let text = buffer.format(n).as_bytes();
        let mut bytes = [0; 20];
        bytes[..text.len()].copy_from_slice(text);
        Self {
            bytes,
            len: text.len(),
        }
    }
}

impl AsRef<[u8]> for Digits {
    fn as_ref(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_in_decimal() {
        for n in [0, 7, 42, 999_999, 1_795_558_291, u64::MAX] {
            assert_eq!(decimal(n), n.to_string().as_str());
            assert_eq!(recent_decimal(n), n.to_string().as_str());
        }
        for n in (0..=10_001).chain([99_999, 100_000]) {
            assert_eq!(decimal(n), n.to_string().as_str(), "{n}");
        }
    }

    #[test]
    fn a_small_number_takes_no_allocation() {
        let five = decimal(5_000);
        assert!(
            SMALL_DIGITS
                .as_ptr_range()
                .contains(&five.as_bytes().as_ptr()),
            "5000 was copied out of the table"
        );
        let large = decimal(10_000);
        assert!(
            !SMALL_DIGITS
                .as_ptr_range()
                .contains(&large.as_bytes().as_ptr())
        );
    }

    #[test]
    fn a_repeated_number_shares_its_bytes() {
        let first = recent_decimal(1_795_558_291);
        let again = recent_decimal(1_795_558_291);
        assert_eq!(
            first.as_bytes().as_ptr(),
            again.as_bytes().as_ptr(),
            "the second call made its own copy"
        );
        let other = recent_decimal(1_795_558_292);
        assert_eq!(other, "1795558292");
        assert_ne!(other.as_bytes().as_ptr(), first.as_bytes().as_ptr());
    }

    #[test]
    fn shared_text_refuses_what_a_header_cannot_hold() {
        let value = shared(*b"929b9701c234b199").unwrap();
        assert_eq!(value, "929b9701c234b199");
        assert_eq!(value.clone().as_bytes().as_ptr(), value.as_bytes().as_ptr());
        assert!(shared(*b"a\nb").is_none());
    }
}
