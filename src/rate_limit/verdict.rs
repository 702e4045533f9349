//! The arithmetic of both algorithms, as pure functions of (state, now, quota, cost).
//!
//! The memory store calls these directly; `decide.lua` is a line-for-line port for Redis, and the
//! shared conformance suite holds the two to the same answers.

use super::quota::Quota;

/// What one decision says, before a store adds its clock and the quota it used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    pub allowed: bool,
    pub remaining: u64,
    /// Microseconds until the caller holds its full capacity again (when allowed), or until this
    /// request could pass (when refused).
    pub reset_after_us: u64,
    /// Microseconds until this request could pass; `None` when allowed or when it never can.
    pub retry_after_us: Option<u64>,
}

/// A refusal: nothing spent, nothing left to report (a refused caller has no usable units, even
/// when a cheaper request would pass).
fn refused(reset_after_us: u64, retry_after_us: Option<u64>) -> Verdict {
    Verdict {
        allowed: false,
        remaining: 0,
        reset_after_us,
        retry_after_us,
    }
}

/// GCRA over the theoretical arrival time `tat` (0 for a new key). Returns the verdict and the
/// new `tat` to store, if it changed.
pub(crate) fn gcra(tat: u64, now: u64, quota: &Quota, cost: u32) -> (Verdict, Option<u64>) {
    let t = quota.emission_us();
    let tau = t * u64::from(quota.burst());
    let tat = tat.max(now);
    if cost > quota.burst() {
        return (refused(tat - now, None), None);
    }
    let new_tat = tat + t * u64::from(cost);
    let allow_at = new_tat.saturating_sub(tau);
    if now < allow_at {
        let wait = allow_at - now;
        return (refused(wait, Some(wait)), None);
    }
    let verdict = Verdict {
        allowed: true,
        remaining: (now + tau).saturating_sub(new_tat) / t,
        reset_after_us: new_tat - now,
        retry_after_us: None,
    };
    (verdict, (cost > 0).then_some(new_tat))
}

/// Sliding-window counter state: the window length it was counted in, the index of the current
/// window and the two counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Window {
    pub period_us: u64,
    pub index: u64,
    pub previous: u64,
    pub current: u64,
}

/// The sliding-window decision. Returns the verdict and the state to store, if admitted (a
/// refusal changes nothing that time alone would not).
///
/// State counted in windows of another length (the quota changed) starts afresh. A clock that
/// reads earlier than the stored window (another thread's clock, a stepped server clock) is
/// decided at the start of the stored window: the index never moves back, so counts are never lost.
pub(crate) fn sliding_window(
    state: Window,
    now: u64,
    quota: &Quota,
    cost: u32,
) -> (Verdict, Option<Window>) {
    let w = quota.period_micros();
    let limit = u64::from(quota.count());
    let cost = u64::from(cost);
    let same_period = state.period_us == w;
    let (index, elapsed) = if same_period && state.index > now / w {
        (state.index, 0)
    } else {
        (now / w, now % w)
    };
    let (previous, current) = if !same_period {
        (0, 0)
    } else if state.index == index {
        (state.previous, state.current)
    } else if state.index + 1 == index {
        (state.current, 0)
    } else {
        (0, 0)
    };
    let state = Window {
        period_us: w,
        index,
        previous,
        current,
    };
    let full_after = |current: u64| match (previous, current) {
        (_, c) if c > 0 => 2 * w - elapsed,
        (p, _) if p > 0 => w - elapsed,
        _ => 0,
    };
    if cost > limit {
        return (refused(full_after(current), None), None);
    }
    // Everything in unit-microseconds, so the previous window's weight stays exact.
    let weighted = previous * (w - elapsed);
    let capacity = limit * w;
    if weighted + (current + cost) * w <= capacity {
        let current = current + cost;
        let verdict = Verdict {
            allowed: true,
            remaining: capacity.saturating_sub(weighted + current * w) / w,
            reset_after_us: full_after(current),
            retry_after_us: None,
        };
        return (verdict, Some(Window { current, ..state }));
    }
    let room = limit - cost;
    // Later in this window, once the previous window's weight has decayed enough ...
    let in_this_window = (previous > 0 && current <= room)
        .then(|| w - (room - current) * w / previous)
        .filter(|&at| at < w);
    let retry = match in_this_window {
        Some(at) => at - elapsed,
        // ... or in the next one, where this window's count becomes the previous.
        None => {
            let at = (room * w)
                .checked_div(current)
                .map_or(0, |weight| w.saturating_sub(weight));
            w - elapsed + at
        }
    };
    (refused(retry, Some(retry)), None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const S: u64 = 1_000_000;

    #[test]
    fn gcra_follows_the_reference_vectors() {
        // limit 5, burst 5, one unit per second.
        let q = Quota::new(5, Duration::from_secs(5));
        let t0 = 1_700_000_000 * S;
        let mut tat = 0;
        for expected in [4, 3, 2, 1, 0] {
            let (v, new) = gcra(tat, t0, &q, 1);
            assert!(v.allowed);
            assert_eq!(v.remaining, expected);
            tat = new.unwrap();
        }
        let (v, new) = gcra(tat, t0, &q, 1);
        assert!(!v.allowed);
        assert_eq!(v.retry_after_us, Some(S));
        assert_eq!(new, None);
        let (v, _) = gcra(tat, t0 + 3 * S, &q, 1);
        assert!(v.allowed);
        assert_eq!(v.remaining, 2);
        let (v, _) = gcra(0, t0, &q, 6);
        assert!(!v.allowed);
        assert_eq!(v.retry_after_us, None);
    }

    #[test]
    fn sliding_window_never_moves_back_and_restarts_on_a_new_period() {
        let q = Quota::per_minute(10).with_algorithm(super::super::quota::Algorithm::SlidingWindow);
        let boundary = 1_700_000_040 * S;
        let (_, state) = sliding_window(Window::default(), boundary + 1, &q, 10);
        let state = state.unwrap();
        // A clock a little behind, across the boundary: still counted in the stored window.
        let (v, kept) = sliding_window(state, boundary - 200, &q, 1);
        assert_eq!((v.allowed, kept), (false, None));
        // Another window length: a fresh count.
        let (v, _) = sliding_window(
            state,
            boundary + 2,
            &Quota::per_hour(10).with_algorithm(q.algorithm()),
            1,
        );
        assert_eq!((v.allowed, v.remaining), (true, 9));
    }

    #[test]
    fn a_huge_cost_is_refused_without_overflow() {
        let q = Quota::per_minute(10).with_algorithm(super::super::quota::Algorithm::SlidingWindow);
        let (v, _) = sliding_window(Window::default(), 1_700_000_000 * S, &q, u32::MAX);
        assert_eq!((v.allowed, v.retry_after_us), (false, None));
        let (v, _) = gcra(0, 1_700_000_000 * S, &Quota::per_minute(10), u32::MAX);
        assert_eq!((v.allowed, v.retry_after_us), (false, None));
    }

    #[test]
    fn sliding_window_refuses_the_boundary_burst() {
        let q = Quota::per_minute(10).with_algorithm(super::super::quota::Algorithm::SlidingWindow);
        let start = 1_700_000_040 * S; // a whole minute
        let mut state = Window::default();
        for _ in 0..10 {
            let (v, s) = sliding_window(state, start + 59 * S, &q, 1);
            assert!(v.allowed);
            state = s.unwrap();
        }
        let (v, _) = sliding_window(state, start + 60 * S, &q, 1);
        assert!(!v.allowed);
        // The previous window's weight falls below 9 of 10 after 6 s into the next window.
        assert_eq!(v.retry_after_us, Some(6 * S));
        let (v, _) = sliding_window(state, start + 66 * S, &q, 1);
        assert!(v.allowed);
    }
}
