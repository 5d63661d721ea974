//! Rate limits: requests or tokens per period, enforced with GCRA (the generic cell rate
//! algorithm), in exact integer arithmetic on a clock the caller passes in.
//!
//! The rule, as documented to users: a limit of `L` per period `P` refills continuously at
//! `L / P`; an idle caller may spend the whole `L` at once (a burst of up to one period's
//! allowance), and after that is admitted at the refill rate. Over any window of length `P` at
//! most `L` units are admitted, plus whatever refilled during the window.
//!
//! Time is kept in nanoseconds multiplied by `L`, so one unit always costs exactly `P`
//! nanoseconds in those units and no rounding ever gives a caller more than the limit.

use std::time::Duration;

/// `limit` units per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub limit: u64,
    pub period: Duration,
}

impl Rate {
    pub fn per_minute(limit: u64) -> Rate {
        Rate {
            limit,
            period: Duration::from_secs(60),
        }
    }

    pub fn per_day(limit: u64) -> Rate {
        Rate {
            limit,
            period: Duration::from_secs(86_400),
        }
    }
}

/// What one limit says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub allowed: bool,
    /// Units left right after this decision.
    pub remaining: u64,
    /// How long until the limit is fully replenished.
    pub reset_after: Duration,
    /// When refused: how long until this request would be admitted.
    pub retry_after: Duration,
}

/// One limit's state.
#[derive(Debug, Clone)]
pub struct Gcra {
    rate: Rate,
    /// Theoretical arrival time, in nanoseconds x limit.
    tat: u128,
}

impl Gcra {
    pub fn new(rate: Rate) -> Gcra {
        Gcra { rate, tat: 0 }
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    fn period(&self) -> u128 {
        // In scaled units a whole period is P x L, and one unit costs P.
        self.rate.period.as_nanos() * u128::from(self.rate.limit.max(1))
    }

    fn unit(&self) -> u128 {
        self.rate.period.as_nanos()
    }

    fn scaled(&self, now_ns: u64) -> u128 {
        u128::from(now_ns) * u128::from(self.rate.limit.max(1))
    }

    fn to_duration(&self, scaled: u128) -> Duration {
        let ns = scaled / u128::from(self.rate.limit.max(1));
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// The state a request of `cost` units would leave, and whether it fits.
    fn evaluate(&self, now_ns: u64, cost: u64) -> (u128, Verdict) {
        let now = self.scaled(now_ns);
        let start = self.tat.max(now);
        let new_tat = start + u128::from(cost) * self.unit();
        let allowed =
            self.rate.limit > 0 && cost <= self.rate.limit && new_tat <= now + self.period();
        let tat = if allowed { new_tat } else { start };
        let remaining = ((now + self.period()).saturating_sub(tat) / self.unit()) as u64;
        let retry_after = if allowed || cost > self.rate.limit {
            Duration::ZERO
        } else {
            self.to_duration(new_tat - now - self.period())
        };
        let verdict = Verdict {
            allowed,
            remaining: remaining.min(self.rate.limit),
            reset_after: self.to_duration(tat.saturating_sub(now)),
            retry_after,
        };
        (tat, verdict)
    }

    /// Admits `cost` units at `now_ns` if they fit, charging them; refuses without charging.
    pub fn check(&mut self, now_ns: u64, cost: u64) -> Verdict {
        let (tat, verdict) = self.evaluate(now_ns, cost);
        if verdict.allowed {
            self.tat = tat;
        }
        verdict
    }

    /// What a request would get, without charging anything.
    pub fn peek(&self, now_ns: u64, cost: u64) -> Verdict {
        self.evaluate(now_ns, cost).1
    }

    /// Settles a reservation: `delta` more units were used than reserved (negative: fewer, and
    /// they are given back).
    pub fn settle(&mut self, delta: i64) {
        let amount = u128::from(delta.unsigned_abs()) * self.unit();
        self.tat = if delta >= 0 {
            self.tat.saturating_add(amount)
        } else {
            self.tat.saturating_sub(amount)
        };
    }
}

/// Admits a request against every limit that applies, all or nothing: if any refuses, none is
/// charged. Returns each limit's verdict, in order; the tightest refusal decides.
pub fn admit(limits: &mut [(&mut Gcra, u64)], now_ns: u64) -> Vec<Verdict> {
    let evaluated: Vec<(u128, Verdict)> = limits
        .iter()
        .map(|(gcra, cost)| gcra.evaluate(now_ns, *cost))
        .collect();
    if evaluated.iter().all(|(_, v)| v.allowed) {
        for ((gcra, _), (tat, _)) in limits.iter_mut().zip(&evaluated) {
            gcra.tat = *tat;
        }
    }
    evaluated.into_iter().map(|(_, v)| v).collect()
}

/// OpenAI's duration format for `x-ratelimit-reset-*`: `6m0s`, `1.5s`, `820ms`, `0s`.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0s".to_owned()
    } else if ms < 1_000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        // Go's format: up to three decimals, trailing zeros dropped (`2.022s`, `1.5s`, `20s`).
        let (whole, frac) = (ms / 1_000, ms % 1_000);
        if frac == 0 {
            format!("{whole}s")
        } else {
            let digits = format!("{frac:03}");
            format!("{whole}.{}s", digits.trim_end_matches('0'))
        }
    } else {
        let secs = (ms + 500) / 1_000;
        let (h, m, s) = (secs / 3_600, (secs / 60) % 60, secs % 60);
        if h > 0 {
            format!("{h}h{m}m{s}s")
        } else {
            format!("{m}m{s}s")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn an_idle_caller_may_burst_the_whole_limit_then_waits_for_refill() {
        let mut rpm = Gcra::new(Rate::per_minute(3));
        let t = 1_000 * SEC;
        for remaining in [2, 1, 0] {
            let v = rpm.check(t, 1);
            assert!(v.allowed);
            assert_eq!(v.remaining, remaining);
        }
        let refused = rpm.check(t, 1);
        assert!(!refused.allowed);
        assert_eq!(
            refused.retry_after,
            Duration::from_secs(20),
            "one request refills every 20 s"
        );
        assert_eq!(refused.reset_after, Duration::from_secs(60));
        assert!(!rpm.check(t + 20 * SEC - 1, 1).allowed);
        assert!(rpm.check(t + 20 * SEC, 1).allowed);
    }

    #[test]
    fn twice_the_limit_is_admitted_within_one_percent_of_it() {
        for (limit, period_s) in [(60u64, 60u64), (1_000, 60), (7, 60), (10_000, 86_400)] {
            let mut gcra = Gcra::new(Rate {
                limit,
                period: Duration::from_secs(period_s),
            });
            // Offer twice the rate, evenly, for 100 periods (after the initial burst).
            let periods = 100u64;
            let offered = 2 * limit * periods;
            let step = period_s * SEC / (2 * limit);
            let start = 5 * SEC;
            let admitted = (0..offered)
                .filter(|i| gcra.check(start + i * step, 1).allowed)
                .count() as f64;
            let expected = (limit * periods + limit) as f64; // the rate over the run, plus the first burst
            assert!(
                (admitted - expected).abs() / expected < 0.01,
                "limit {limit}/{period_s}s admitted {admitted}, expected {expected}"
            );
        }
    }

    #[test]
    fn token_reservations_settle_to_actual_use() {
        let mut tpm = Gcra::new(Rate::per_minute(1_000));
        let t = 10 * SEC;
        assert!(tpm.check(t, 800).allowed, "an estimate of 800 reserved");
        assert!(!tpm.check(t, 300).allowed, "only 200 left");
        tpm.settle(-600); // the response used 200
        let v = tpm.check(t, 300);
        assert!(v.allowed);
        assert_eq!(v.remaining, 500);
        tpm.settle(100); // and this one used 400
        assert_eq!(tpm.peek(t, 0).remaining, 400);
        assert!(
            !tpm.check(t, 1_001).allowed,
            "more than the limit can never fit"
        );
        assert_eq!(
            tpm.peek(t, 1_001).retry_after,
            Duration::ZERO,
            "no retry helps a request over the limit"
        );
    }

    #[test]
    fn several_limits_are_all_or_nothing() {
        let mut rpm = Gcra::new(Rate::per_minute(10));
        let mut tpm = Gcra::new(Rate::per_minute(100));
        let t = SEC;
        let verdicts = admit(&mut [(&mut rpm, 1), (&mut tpm, 90)], t);
        assert!(verdicts.iter().all(|v| v.allowed));
        let verdicts = admit(&mut [(&mut rpm, 1), (&mut tpm, 20)], t);
        assert!(verdicts[0].allowed && !verdicts[1].allowed);
        assert_eq!(
            rpm.peek(t, 0).remaining,
            9,
            "the refused request charged no limit"
        );
    }

    #[test]
    fn many_threads_racing_on_one_limit_never_exceed_it() {
        let limit = std::sync::Arc::new(std::sync::Mutex::new(Gcra::new(Rate::per_minute(1_000))));
        let admitted = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (limit, admitted) = (limit.clone(), admitted.clone());
                std::thread::spawn(move || {
                    for _ in 0..1_000 {
                        let allowed = limit
                            .lock()
                            .map(|mut g| g.check(SEC, 1).allowed)
                            .unwrap_or(false);
                        if allowed {
                            admitted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap_or_default();
        }
        assert_eq!(admitted.load(std::sync::atomic::Ordering::SeqCst), 1_000);
    }

    #[test]
    fn reset_durations_read_like_openai_s() {
        assert_eq!(go_duration(Duration::ZERO), "0s");
        assert_eq!(go_duration(Duration::from_millis(820)), "820ms");
        assert_eq!(go_duration(Duration::from_millis(1_500)), "1.5s");
        assert_eq!(go_duration(Duration::from_secs(20)), "20s");
        assert_eq!(go_duration(Duration::from_millis(2_022)), "2.022s");
        assert_eq!(go_duration(Duration::from_secs(360)), "6m0s");
        assert_eq!(go_duration(Duration::from_secs(5_400)), "1h30m0s");
    }
}
