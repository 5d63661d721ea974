//! A cap on store lookups a second: a token bucket holding one second's worth, refilled
//! continuously. Keys and client tokens new to a server are looked up under one each (see
//! `background::key_lookup`, `background::client_tokens`). A leaf: it imports nothing from the
//! gateway.

use std::time::Instant;

#[derive(Debug)]
pub struct LookupCap {
    per_second: u32,
    /// Lookups left, refilled at `per_second` up to `per_second`.
    allowance: f64,
    refilled: Instant,
}

impl LookupCap {
    /// A full bucket of `per_second` (0: never look anything up).
    pub fn new(per_second: u32) -> LookupCap {
        LookupCap {
            per_second,
            allowance: f64::from(per_second),
            refilled: Instant::now(),
        }
    }

    /// Whether a lookup may be made at `now` (and if so, it is counted).
    pub fn take(&mut self, now: Instant) -> bool {
        let rate = f64::from(self.per_second);
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.allowance = (self.allowance + elapsed * rate).min(rate);
        self.refilled = now;
        if self.allowance >= 1.0 {
            self.allowance -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_bucket_allows_its_rate_and_refills_continuously() {
        let mut cap = LookupCap::new(10);
        let start = Instant::now();
        let taken = (0..100).filter(|_| cap.take(start)).count();
        assert_eq!(taken, 10, "a full bucket holds one second's worth");
        assert!(!cap.take(start + Duration::from_millis(50)));
        assert!(cap.take(start + Duration::from_millis(150)));
        let later = start + Duration::from_secs(60);
        let taken = (0..100).filter(|_| cap.take(later)).count();
        assert_eq!(taken, 10, "an idle bucket never holds more than its rate");
        assert!(!LookupCap::new(0).take(later), "0 looks nothing up");
    }
}
