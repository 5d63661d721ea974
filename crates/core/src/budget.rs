//! Spend limits ("budgets"): a dollar amount per organization, project or key over a period.
//! A request reserves the most it can cost when it is admitted and settles to its real cost
//! when it ends, so concurrent requests can never together spend past the limit by more than
//! one request's underestimate.

use crate::clock::{civil_from_days, days_from_civil, UnixTime};
use crate::holder::{Holder, Level};
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
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetPeriod::Day => "day",
            BudgetPeriod::Week => "week",
            BudgetPeriod::Month => "month",
        }
    }

    /// As a message says it: "daily", "weekly", "monthly".
    pub fn adjective(self) -> &'static str {
        match self {
            BudgetPeriod::Day => "daily",
            BudgetPeriod::Week => "weekly",
            BudgetPeriod::Month => "monthly",
        }
    }

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

    /// Whether spent and held together have reached the limit: nothing more is admitted.
    pub fn exhausted(&self) -> bool {
        self.spent.saturating_add(self.reserved) >= self.limit
    }

    /// Holds `max_cost` for a request while anything is left of the limit (spent and held
    /// together below it). A request admitted this way can take spend past the limit by at most
    /// its own maximum cost, and requests racing for the last of a budget cannot add up past it:
    /// each one's hold counts against the next.
    pub fn reserve(&mut self, max_cost: MicroUsd) -> Result<(), OverBudget> {
        if self.exhausted() {
            return Err(OverBudget {
                limit: self.limit,
                spent: self.spent,
                reserved: self.reserved,
            });
        }
        self.reserved = MicroUsd(self.reserved.0.saturating_add(max_cost.0.max(0)));
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

/// A spend limit as set: who it binds, how much, over which period, in which time zone, and
/// the fractions of it (per mille: 500 is 50%) that send an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    pub id: i64,
    pub holder: Holder,
    pub limit: MicroUsd,
    pub period: BudgetPeriod,
    pub utc_offset_secs: i64,
    pub alerts_permille: Vec<u32>,
}

impl Budget {
    /// OpenAI's `code` for a request refused by this budget.
    pub fn refusal_code(&self) -> &'static str {
        match self.holder.level {
            Level::Organization => "organization_spend_limit_exceeded",
            Level::Project => "project_spend_limit_exceeded",
            Level::Key => "key_spend_limit_exceeded",
        }
    }

    /// The refusal's message, naming the limit and when the next period starts.
    pub fn refusal_message(&self, now: UnixTime) -> String {
        let whose = match self.holder.level {
            Level::Organization => format!("Your organization ({})", self.holder.id),
            Level::Project => format!("The project {}", self.holder.id),
            Level::Key => format!("This API key ({})", self.holder.id),
        };
        let (_, next) = self.period.bounds(now, self.utc_offset_secs);
        format!(
            "{whose} has reached its {} spend limit of {}. Requests are refused until the next period starts at {}, or until an administrator raises the limit (tollgate budgets set).",
            self.period.adjective(),
            dollars(self.limit),
            next.rfc3339()
        )
    }
}

/// A threshold in per mille as a percentage: 825 is 82.5.
pub fn percent(permille: u32) -> f64 {
    f64::from(permille) / 10.0
}

impl Budget {
    /// The alert thresholds as percentages.
    pub fn alerts_percent(&self) -> Vec<f64> {
        self.alerts_permille.iter().copied().map(percent).collect()
    }
}

/// `$12.50`: dollars with cents, and more decimals only when the amount has them.
pub fn dollars(amount: MicroUsd) -> String {
    let abs = amount.0.unsigned_abs();
    let sign = if amount.0 < 0 { "-" } else { "" };
    let cents = abs % 1_000_000;
    let fraction = format!("{cents:06}");
    let trimmed = fraction.trim_end_matches('0');
    let shown = if trimmed.len() <= 2 {
        &fraction[..2]
    } else {
        trimmed
    };
    format!("{sign}${}.{shown}", abs / 1_000_000)
}

/// Parses a budget's time zone: `UTC`, `Z`, or a fixed offset `+05:30`, `-08:00`, `+0100`.
pub fn parse_utc_offset(text: &str) -> Option<i64> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("utc") || text == "Z" {
        return Some(0);
    }
    let text = text
        .strip_prefix("UTC")
        .or_else(|| text.strip_prefix("utc"))
        .unwrap_or(text);
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let (hours, minutes) = match digits.len() {
        1 | 2 => (digits.parse::<i64>().ok()?, 0),
        4 => (
            digits[..2].parse::<i64>().ok()?,
            digits[2..].parse::<i64>().ok()?,
        ),
        _ => return None,
    };
    if hours > 14 || minutes >= 60 {
        return None;
    }
    Some(sign * (hours * 3_600 + minutes * 60))
}

/// `UTC` or `+05:30`.
pub fn format_utc_offset(offset_secs: i64) -> String {
    if offset_secs == 0 {
        return "UTC".to_owned();
    }
    let sign = if offset_secs < 0 { '-' } else { '+' };
    let abs = offset_secs.abs();
    format!("{sign}{:02}:{:02}", abs / 3_600, (abs % 3_600) / 60)
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
        assert_eq!(
            admitted, 3,
            "three holds of $0.01 use up the remaining $0.03"
        );
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

    #[test]
    fn a_request_is_admitted_while_anything_is_left_and_overspends_by_at_most_itself() {
        let mut budget = BudgetState::new(MicroUsd(1_000_000), MicroUsd(990_000));
        assert!(budget.reserve(MicroUsd(50_000)).is_ok(), "$0.01 is left");
        assert!(
            budget.reserve(MicroUsd(1)).is_err(),
            "the hold used up what was left"
        );
        budget.settle(MicroUsd(50_000), MicroUsd(40_000), &[]);
        assert_eq!(budget.spent, MicroUsd(1_030_000));
        assert!(budget.spent.0 - budget.limit.0 <= 50_000);
        assert!(budget.reserve(MicroUsd(1)).is_err());
    }

    #[test]
    fn offsets_and_amounts_read_as_people_write_them() {
        assert_eq!(parse_utc_offset("UTC"), Some(0));
        assert_eq!(parse_utc_offset("+05:30"), Some(19_800));
        assert_eq!(parse_utc_offset("-08:00"), Some(-28_800));
        assert_eq!(parse_utc_offset("UTC+1"), Some(3_600));
        assert_eq!(parse_utc_offset("+0100"), Some(3_600));
        assert_eq!(parse_utc_offset("Europe/Paris"), None);
        assert_eq!(parse_utc_offset("+25:00"), None);
        assert_eq!(format_utc_offset(19_800), "+05:30");
        assert_eq!(format_utc_offset(-28_800), "-08:00");
        assert_eq!(dollars(MicroUsd(12_500_000)), "$12.50");
        assert_eq!(dollars(MicroUsd(1_234)), "$0.001234");
        assert_eq!(dollars(MicroUsd(0)), "$0.00");
    }

    #[test]
    fn refusals_name_the_holder_and_the_next_period() {
        let budget = Budget {
            id: 1,
            holder: Holder::new(Level::Project, "proj_x"),
            limit: MicroUsd(10_000_000),
            period: BudgetPeriod::Month,
            utc_offset_secs: 0,
            alerts_permille: vec![],
        };
        assert_eq!(budget.refusal_code(), "project_spend_limit_exceeded");
        assert_eq!(
            budget.refusal_message(at("2026-11-25", 0)),
            "The project proj_x has reached its monthly spend limit of $10.00. Requests are refused until the next period starts at 2026-12-01T00:00:00Z, or until an administrator raises the limit (tollgate budgets set)."
        );
    }
}
