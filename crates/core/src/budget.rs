//! Spend limits ("budgets"): a dollar amount per organization, project or key over a period.
//! A request reserves the most it can cost when it is admitted and settles to its real cost
//! when it ends, so concurrent requests can never together spend past the limit by more than
//! one request's underestimate.

use crate::clock::{civil_from_days, days_from_civil, UnixTime};
use crate::money::MicroUsd;

/// The period a budget covers. Periods start at midnight in the budget's time zone (a fixed
/// offset from UTC); weeks start on Monday.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetPeriod {
    Day,
    Week,
    Month,
}

impl BudgetPeriod {
    pub fn parse(text: &str) -> Option<BudgetPeriod> {
        match text {
            "day" | "daily" => Some(BudgetPeriod::Day),
            "week" | "weekly" => Some(BudgetPeriod::Week),
            "month" | "monthly" => Some(BudgetPeriod::Month),
            _ => None,
        }
    }

    /// The start of the period holding `now`, and the start of the next one.
    pub fn bounds(self, now: UnixTime, utc_offset_secs: i64) -> (UnixTime, UnixTime) {
        let local = now.seconds() + utc_offset_secs;
        let day = local.div_euclid(86_400);
        let (start_day, end_day) = match self {
            BudgetPeriod::Day => (day, day + 1),
            BudgetPeriod::Week => {
                // 1970-01-01 was a Thursday: Monday-based weekday = (day + 3) mod 7.
                let monday = day - (day + 3).rem_euclid(7);
                (monday, monday + 7)
            }
            BudgetPeriod::Month => {
                let (y, m, _) = civil_from_days(day);
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                (days_from_civil(y, m, 1), days_from_civil(ny, nm, 1))
            }
        };
        (
            UnixTime(start_day * 86_400 - utc_offset_secs),
            UnixTime(end_day * 86_400 - utc_offset_secs),
        )
    }
}

/// Why a reservation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverBudget {
    pub limit: MicroUsd,
    pub spent: MicroUsd,
    pub reserved: MicroUsd,
}

/// One budget's running state within its current period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetState {
    pub limit: MicroUsd,
    /// Settled spend in the period.
    pub spent: MicroUsd,
    /// Held for requests still running.
    pub reserved: MicroUsd,
}

impl BudgetState {
    pub fn new(limit: MicroUsd, spent: MicroUsd) -> BudgetState {
        BudgetState {
            limit,
            spent,
            reserved: MicroUsd::ZERO,
        }
    }

    /// Holds `max_cost` for a request, if spent + held + it stays within the limit.
    pub fn reserve(&mut self, max_cost: MicroUsd) -> Result<(), OverBudget> {
        let committed = self.spent.0.saturating_add(self.reserved.0);
        if committed.saturating_add(max_cost.0) > self.limit.0 {
            return Err(OverBudget {
                limit: self.limit,
                spent: self.spent,
                reserved: self.reserved,
            });
        }
        self.reserved = MicroUsd(self.reserved.0 + max_cost.0);
        Ok(())
    }

    /// Releases a reservation of `max_cost` and books the request's `actual` cost; returns the
    /// alert thresholds (fractions in thousandths, e.g. 800 for 80%) this crossed.
    pub fn settle(
        &mut self,
        max_cost: MicroUsd,
        actual: MicroUsd,
        thresholds_permille: &[u32],
    ) -> Vec<u32> {
        let before = self.spent;
        self.reserved = MicroUsd((self.reserved.0 - max_cost.0).max(0));
        self.spent = self.spent.saturating_add(actual);
        crossed(before, self.spent, self.limit, thresholds_permille)
    }
}

/// The thresholds (per mille of `limit`) that spend moving from `before` to `after` crossed.
pub fn crossed(
    before: MicroUsd,
    after: MicroUsd,
    limit: MicroUsd,
    thresholds_permille: &[u32],
) -> Vec<u32> {
    thresholds_permille
        .iter()
        .copied()
        .filter(|t| {
            let mark = i128::from(limit.0) * i128::from(*t) / 1_000;
            i128::from(before.0) < mark && i128::from(after.0) >= mark
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(date: &str, hms: i64) -> UnixTime {
        UnixTime::from_date(date)
            .map(|t| t.plus_seconds(hms))
            .unwrap_or(UnixTime(0))
    }

    #[test]
    fn periods_start_at_local_midnight() {
        let now = at("2026-11-25", 3_600); // Wednesday 01:00 UTC
        assert_eq!(
            BudgetPeriod::Day.bounds(now, 0),
            (at("2026-11-25", 0), at("2026-11-26", 0))
        );
        assert_eq!(
            BudgetPeriod::Week.bounds(now, 0),
            (at("2026-11-23", 0), at("2026-11-30", 0)),
            "weeks start on Monday"
        );
        assert_eq!(
            BudgetPeriod::Month.bounds(now, 0),
            (at("2026-11-01", 0), at("2026-12-01", 0))
        );
        assert_eq!(
            BudgetPeriod::Month.bounds(at("2026-12-31", 80_000), 0).1,
            at("2027-01-01", 0)
        );
        // At UTC-05:00 it is still the 24th: the local day began at 05:00 UTC on the 24th.
        assert_eq!(
            BudgetPeriod::Day.bounds(now, -5 * 3_600).0,
            at("2026-11-24", 5 * 3_600)
        );
        assert_eq!(
            BudgetPeriod::Month
                .bounds(at("2026-12-01", 3_600), -5 * 3_600)
                .0,
            at("2026-11-01", 5 * 3_600)
        );
        assert_eq!(BudgetPeriod::parse("monthly"), Some(BudgetPeriod::Month));
    }

    #[test]
    fn reservations_keep_concurrent_requests_within_the_limit() {
        // $1 budget with $0.97 spent; 50 requests each able to cost up to $0.01.
        let mut budget = BudgetState::new(MicroUsd(1_000_000), MicroUsd(970_000));
        let admitted = (0..50)
            .filter(|_| budget.reserve(MicroUsd(10_000)).is_ok())
            .count();
        assert_eq!(admitted, 3, "only three fit in the remaining $0.03");
        for _ in 0..admitted {
            budget.settle(MicroUsd(10_000), MicroUsd(9_000), &[]);
        }
        assert!(budget.spent <= budget.limit);
        assert_eq!(budget.reserved, MicroUsd::ZERO);
        assert!(
            budget.reserve(MicroUsd(3_000)).is_ok(),
            "settling below the reservation gives the rest back"
        );
    }

    #[test]
    fn alerts_fire_once_when_a_threshold_is_crossed() {
        let mut budget = BudgetState::new(MicroUsd(100_000), MicroUsd(0));
        let thresholds = [500, 800, 1_000];
        assert_eq!(
            budget.settle(MicroUsd(0), MicroUsd(49_999), &thresholds),
            Vec::<u32>::new()
        );
        assert_eq!(budget.settle(MicroUsd(0), MicroUsd(1), &thresholds), [500]);
        assert_eq!(
            budget.settle(MicroUsd(0), MicroUsd(10_000), &thresholds),
            Vec::<u32>::new()
        );
        assert_eq!(
            budget.settle(MicroUsd(0), MicroUsd(60_000), &thresholds),
            [800, 1_000],
            "a jump crosses both"
        );
    }
}
