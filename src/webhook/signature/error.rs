//! [`SignatureError`]: why a signature was refused, with a stable code for each reason.

/// Why a webhook signature was refused.
///
/// Each variant has a stable machine-readable [`code`](SignatureError::code) for problem responses
/// and logs; the display text is for humans and may change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The signature header is absent.
    #[error("webhook signature header is missing")]
    Missing,
    /// The signature header cannot be parsed: bytes other than visible ASCII, too long, too many
    /// items, a timestamp that is not a decimal number, or a signature in the wrong encoding.
    #[error("webhook signature header is malformed")]
    Malformed,
    /// The signature header carries no `t=` timestamp.
    #[error("webhook signature header has no timestamp")]
    NoTimestamp,
    /// The signature header carries no signature of the expected scheme (no `v1=` for Stripe, or a
    /// value without the configured prefix).
    #[error("webhook signature header has no signature of the expected scheme")]
    NoSignature,
    /// The signature is valid but its timestamp is outside the tolerance.
    ///
    /// Timestamps too far in the future are refused as well as old ones, so a sender with a
    /// skewed clock (or a captured request signed for later) is not accepted for longer than the
    /// tolerance. Stripe's own libraries only refuse timestamps in the past.
    #[error("webhook timestamp is {age_secs} s away from now, outside the tolerance")]
    Stale {
        /// Distance between the signed timestamp and now, in seconds, whichever side of now the
        /// timestamp lies.
        age_secs: u64,
    },
    /// No signature in the header matches the payload under any configured secret.
    #[error("no webhook signature matches the payload")]
    Mismatch,
}

impl SignatureError {
    /// A stable snake_case code for this error, suitable for problem responses and metrics.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "webhook_signature_missing",
            Self::Malformed => "webhook_signature_malformed",
            Self::NoTimestamp => "webhook_timestamp_missing",
            Self::NoSignature => "webhook_signature_absent",
            Self::Stale { .. } => "webhook_timestamp_stale",
            Self::Mismatch => "webhook_signature_mismatch",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_distinct() {
        let all = [
            SignatureError::Missing,
            SignatureError::Malformed,
            SignatureError::NoTimestamp,
            SignatureError::NoSignature,
            SignatureError::Stale { age_secs: 1 },
            SignatureError::Mismatch,
        ];
        let mut codes: Vec<_> = all.iter().map(SignatureError::code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        assert!(codes.iter().all(|c| c.starts_with("webhook_")));
        assert!(
            SignatureError::Stale { age_secs: 42 }
                .to_string()
                .contains("42")
        );
    }
}
