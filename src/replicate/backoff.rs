//! Exponential backoff with jitter.

use std::time::Duration;

/// The delay before retry number `attempt` (0-based): `base * 2^attempt`,
/// capped at `max`, with "equal jitter" (a random point in its upper half),
/// so many failing batches do not retry in lockstep.
pub fn backoff(attempt: u32, base_ms: u64, max_ms: u64) -> Duration {
    let exp = base_ms
        .saturating_mul(1u64 << attempt.min(32))
        .min(max_ms)
        .max(1);
    let half = exp / 2;
    let jitter = if exp > half {
        rand::random_range(0..=exp - half)
    } else {
        0
    };
    Duration::from_millis(half + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_then_caps_and_stays_in_the_upper_half() {
        for _ in 0..100 {
            let d0 = backoff(0, 100, 1000).as_millis();
            assert!((50..=100).contains(&d0), "{d0}");
            let d3 = backoff(3, 100, 1000).as_millis();
            assert!((400..=800).contains(&d3), "{d3}");
            let d20 = backoff(20, 100, 1000).as_millis();
            assert!((500..=1000).contains(&d20), "{d20}");
            let big = backoff(200, 100, 1000).as_millis();
            assert!((500..=1000).contains(&big), "{big}");
        }
    }
}
