//! Admission: every rate limit and budget that applies to a request, checked together before
//! the provider is called, and settled to what the request really used when it ends.
//!
//! Limits come from the store (organization, project and key rules, and budgets) plus the
//! per-key defaults of the configuration; the follower reloads them when the change log says
//! they changed. All state sits behind one mutex: a check of a key with four limits takes a few
//! hundred nanoseconds (see `crates/core/benches/admission.rs`), far below anything a lock
//! could make contended, and it makes "all limits or none" trivially atomic.

use crate::error::GatewayError;
use crate::shared_limits::{
    Lease, SharedBudget, SharedCounter, SharedLimits, SharedSlots, SharedVerdict, WhenUnreachable,
};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;
use tollgate_core::budget::{crossed, Budget, BudgetState};
use tollgate_core::holder::{Holder, Level};
use tollgate_core::limit_rules::{rate_limit_message, LimitRule, Metric};
use tollgate_core::limits::{Gcra, Rate, Verdict};
use tollgate_core::{Clock, MicroUsd, OrgId, UnixTime};
use tollgate_store::{Store, StoreError};

pub use crate::rate_headers::RateHeaders;
pub use crate::settings::DefaultLimit;

/// One counter: a holder's limit of one kind on one model pattern. Its hash is worked out once,
/// when the key is made, so looking a counter up costs no string hashing.
#[derive(Debug, Clone)]
struct CounterKey {
    holder: Holder,
    model: String,
    metric: Metric,
    hash: u64,
}

impl CounterKey {
    fn new(holder: Holder, model: &str, metric: Metric) -> CounterKey {
        use std::hash::{Hash, Hasher};
        // Fixed keys: every key made for the same counter must hash the same. Holder ids are
        // ours (not chosen by clients), so there is no flooding to defend against.
        let mut hasher = std::hash::DefaultHasher::new();
        holder.hash(&mut hasher);
        model.hash(&mut hasher);
        metric.hash(&mut hasher);
        CounterKey {
            hash: hasher.finish(),
            holder,
            model: model.to_owned(),
            metric,
        }
    }
}

impl CounterKey {
    /// A concurrency limit's set of leases in shared state (its limit is not in the name: a
    /// changed limit counts the requests already running, as it does here).
    fn shared_slots_name(&self) -> String {
        format!(
            "cc:{}:{}:{}:{}",
            self.holder.level.as_str(),
            self.holder.id,
            self.model,
            self.metric.short(),
        )
    }

    /// The counter's name in shared state, with its limit and period: a changed limit starts
    /// a new counter there, as it does here.
    fn shared_name(&self, rate: Rate) -> String {
        format!(
            "rl:{}:{}:{}:{}:{}/{}s",
            self.holder.level.as_str(),
            self.holder.id,
            self.model,
            self.metric.short(),
            rate.limit,
            rate.period.as_secs()
        )
    }
}

impl PartialEq for CounterKey {
    fn eq(&self, other: &Self) -> bool {
        self.hash == other.hash
            && self.metric == other.metric
            && self.model == other.model
            && self.holder == other.holder
    }
}

impl Eq for CounterKey {}

impl std::hash::Hash for CounterKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// Passes a counter key's precomputed hash through.
#[derive(Debug, Default, Clone, Copy)]
struct PrecomputedHash(u64);

impl std::hash::Hasher for PrecomputedHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `CounterKey`; anything else still hashes correctly.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

type Counters = HashMap<Arc<CounterKey>, Counter, std::hash::BuildHasherDefault<PrecomputedHash>>;

#[derive(Debug)]
enum Counter {
    Rate(Gcra),
    Concurrent { limit: u64, in_flight: u64 },
}

/// A limit that applies to a request.
#[derive(Debug, Clone)]
struct Applicable {
    key: Arc<CounterKey>,
    limit: u64,
}

/// A stored rule with its counters' keys made once.
#[derive(Debug)]
struct RuleEntry {
    rule: LimitRule,
    limits: Vec<Applicable>,
}

impl RuleEntry {
    fn new(rule: LimitRule) -> RuleEntry {
        let limits = rule
            .limits
            .iter()
            .map(|(metric, limit)| Applicable {
                key: Arc::new(CounterKey::new(
                    rule.holder.clone(),
                    rule.model.as_str(),
                    metric,
                )),
                limit,
            })
            .collect();
        RuleEntry { rule, limits }
    }
}

/// The rules, indexed by holder id for lookups without allocating.
#[derive(Debug, Default)]
struct Policy {
    organization: Vec<RuleEntry>,
    projects: HashMap<String, Vec<RuleEntry>>,
    keys: HashMap<String, Vec<RuleEntry>>,
    budgets: HashMap<Holder, Arc<Budget>>,
}

impl Policy {
    fn is_empty(&self) -> bool {
        self.organization.is_empty()
            && self.projects.is_empty()
            && self.keys.is_empty()
            && self.budgets.is_empty()
    }
}

/// A budget's state in its current period.
#[derive(Debug)]
struct BudgetSlot {
    budget: Arc<Budget>,
    period: (UnixTime, UnixTime),
    state: BudgetState,
}

#[derive(Debug, Default)]
struct State {
    counters: Counters,
    budgets: HashMap<Holder, BudgetSlot>,
}

/// A budget alert to claim and send.
#[derive(Debug, Clone)]
pub struct Alert {
    pub budget: Budget,
    pub period: (UnixTime, UnixTime),
    pub threshold_permille: u32,
    pub spent: MicroUsd,
    pub at: UnixTime,
}

/// The live limits of one gateway.
#[derive(Debug)]
pub struct Limits {
    policy: RwLock<Arc<Policy>>,
    state: Mutex<State>,
    alerts: mpsc::UnboundedSender<Alert>,
    clock: Arc<dyn Clock>,
    defaults: Vec<DefaultLimit>,
    /// The per-key default rules of each key seen, made once per key.
    default_rules: RwLock<HashMap<String, Arc<Vec<RuleEntry>>>>,
    /// How many reloads have completed (tests and diagnostics wait on it).
    reloads: std::sync::atomic::AtomicU64,
    /// Rate counters shared with the other replicas (Redis), when configured.
    shared: OnceLock<Arc<SharedLimits>>,
}

/// Who is asking, for what.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub org: &'a str,
    pub project: Option<&'a str>,
    pub key: &'a str,
    /// The model as requested and as served; `None` for requests that name no model.
    pub model: Option<(&'a str, &'a str)>,
}

/// Which of a request's limits a plan takes. A metered request is admitted twice: on its head,
/// before its body is read, against what needs neither the body nor the model (request-rate
/// and concurrency limits for every model), then against the rest (token limits, limits of
/// some models, budgets) once the body is in. A client that is over its request or concurrency
/// limit is refused without a byte of its body held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Every limit (a request that is admitted once).
    Whole,
    /// The limits the head can decide.
    Head,
    /// The limits [`Stage::Head`] leaves.
    Body,
}

impl Stage {
    fn takes(self, rule: &LimitRule, metric: Metric) -> bool {
        let head = rule.model.as_str() == "*" && !metric.counts_tokens();
        match self {
            Stage::Whole => true,
            Stage::Head => head,
            Stage::Body => !head,
        }
    }
}

/// The limits and budgets that apply to one request.
#[derive(Debug, Default)]
pub struct Plan {
    limits: Vec<Applicable>,
    budgets: Vec<Arc<Budget>>,
    /// A head's plan: its request counts are given back if the rest of admission refuses.
    refundable: bool,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.limits.is_empty() && self.budgets.is_empty()
    }

    /// This plan with each rate and concurrency limit cut to one replica's share, for
    /// limiting locally while shared state cannot be reached.
    fn shared_out(mut self, replicas: u32) -> Plan {
        let replicas = u64::from(replicas.max(1));
        for limit in &mut self.limits {
            if limit.limit > 0 {
                limit.limit = (limit.limit / replicas).max(1);
            }
        }
        self
    }

    /// Whether admission needs the request's token estimate and maximum cost.
    pub fn needs_estimate(&self) -> bool {
        !self.budgets.is_empty() || self.limits.iter().any(|l| l.key.metric.counts_tokens())
    }
}

#[derive(Debug)]
enum Hold {
    Tokens {
        key: Arc<CounterKey>,
        rate: Rate,
        reserved: u64,
    },
    Concurrent(Arc<CounterKey>),
    /// A request counted on its head, given back if the rest of admission refuses it.
    Request {
        key: Arc<CounterKey>,
        rate: Rate,
    },
    Budget {
        holder: Holder,
        period_start: UnixTime,
        reserved: MicroUsd,
    },
    /// Tokens reserved on a counter in shared state.
    SharedTokens {
        counter: SharedCounter,
        reserved: u64,
    },
    /// A request counted in shared state on its head, given back if refused later.
    SharedRequest(SharedCounter),
    /// Concurrency slots taken in shared state.
    SharedLease(Lease),
    /// Spend held in a budget's period in shared state.
    SharedBudget {
        name: String,
        holder: Holder,
        period_start: UnixTime,
        reserved: MicroUsd,
    },
}

/// What an admitted request holds: token and budget reservations and concurrency slots. It is
/// settled with the request's real use when the request ends; dropped unsettled, it gives
/// everything back.
#[derive(Debug, Default)]
pub struct Admission {
    limits: Option<Arc<Limits>>,
    holds: Vec<Hold>,
    headers: RateHeaders,
    /// A head's admission not (yet) joined by its body's: dropped, it gives its request counts
    /// back too (the request was refused or abandoned before it was admitted whole).
    refund_on_drop: bool,
}

impl Admission {
    pub fn headers(&self) -> &RateHeaders {
        &self.headers
    }

    /// Books the request's real use: `tokens` (input and output) and `cost`.
    pub fn settle(mut self, tokens: u64, cost: MicroUsd) {
        self.release(tokens, cost, false);
    }

    /// Gives everything back, the requests counted on the head included: the request was
    /// refused after its head was admitted.
    pub fn refund(mut self) {
        self.release(0, MicroUsd::ZERO, true);
    }

    /// Marks a head's admission: dropped before it is joined, it is refunded.
    pub fn refunded_unless_joined(mut self) -> Admission {
        self.refund_on_drop = true;
        self
    }

    /// This admission (of a request's body) with its head's: one guard for both.
    pub fn join(mut self, mut head: Admission) -> Admission {
        head.refund_on_drop = false;
        let limits = head.limits.take();
        if self.limits.is_none() {
            self.limits = limits;
        }
        self.holds.append(&mut head.holds);
        if let Some(shown) = head.headers.requests {
            RateHeaders::offer(&mut self.headers.requests, shown);
        }
        if let Some(shown) = head.headers.tokens {
            RateHeaders::offer(&mut self.headers.tokens, shown);
        }
        self
    }

    fn release(&mut self, tokens: u64, cost: MicroUsd, refund: bool) {
        let Some(limits) = self.limits.take() else {
            return;
        };
        let holds = std::mem::take(&mut self.holds);
        limits.settle(holds, tokens, cost, refund);
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.release(0, MicroUsd::ZERO, self.refund_on_drop);
    }
}

/// Why admission refused a request.
#[derive(Debug)]
struct Refusal {
    metric: Metric,
    holder: Holder,
    limit: u64,
    used: u64,
    requested: u64,
    /// `None`: no wait helps (the request alone is over the limit).
    retry_after: Option<Duration>,
}

impl Refusal {
    /// Keeps the tightest of two refusals: the one that keeps the caller waiting longest (no
    /// wait at all, when one can never fit).
    fn keep_tightest(kept: &mut Option<Refusal>, refused: Refusal) {
        let tighter = match (&*kept, refused.retry_after) {
            (None, _) => true,
            (Some(current), None) => current.retry_after.is_some(),
            (Some(current), Some(wait)) => current.retry_after.is_some_and(|c| wait > c),
        };
        if tighter {
            *kept = Some(refused);
        }
    }
}

impl Limits {
    pub fn new(
        defaults: Vec<DefaultLimit>,
        clock: Arc<dyn Clock>,
    ) -> (Arc<Limits>, mpsc::UnboundedReceiver<Alert>) {
        let (alerts, receiver) = mpsc::unbounded_channel();
        (
            Arc::new(Limits {
                policy: RwLock::default(),
                state: Mutex::new(State::default()),
                alerts,
                clock,
                defaults,
                reloads: Default::default(),
                default_rules: Default::default(),
                shared: OnceLock::new(),
            }),
            receiver,
        )
    }

    /// Keeps request- and token-rate counters in shared state from now on (set once, at
    /// start).
    pub fn share_through(&self, shared: Arc<SharedLimits>) {
        let _ = self.shared.set(shared);
    }

    /// The shared state rate counters live in, if any.
    pub fn shared(&self) -> Option<&Arc<SharedLimits>> {
        self.shared.get()
    }

    fn policy(&self) -> Arc<Policy> {
        match self.policy.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Reads every rule and budget of `org` again. Counters of unchanged limits keep their
    /// state; a budget whose period or time zone is new has its spend read from the store.
    pub async fn reload(&self, store: &Store, org: &OrgId) -> Result<(), StoreError> {
        let rules = store.rate_limits(org).await?;
        let budgets = store.budgets(org).await?;
        let now = self.clock.now();
        let mut policy = Policy::default();
        for rule in rules {
            let level = rule.holder.level;
            let id = rule.holder.id.clone();
            let rule = RuleEntry::new(rule);
            match level {
                Level::Organization => policy.organization.push(rule),
                Level::Project => policy.projects.entry(id).or_default().push(rule),
                Level::Key => policy.keys.entry(id).or_default().push(rule),
            }
        }
        // Which budgets need their spend read: new ones, and those whose period moved.
        let mut loads = Vec::new();
        {
            let state = self.state();
            for budget in &budgets {
                let period = budget.period.bounds(now, budget.utc_offset_secs);
                let kept = state
                    .budgets
                    .get(&budget.holder)
                    .is_some_and(|slot| slot.period == period);
                if !kept {
                    loads.push((budget.holder.clone(), period));
                }
            }
        }
        let mut spent = HashMap::new();
        for (holder, period) in loads {
            let amount = store.spend_since(&holder, period.0).await?;
            spent.insert(holder, (period, amount));
        }
        let mut fired = Vec::new();
        {
            let mut state = self.state();
            let mut slots = HashMap::new();
            for budget in budgets {
                let budget = Arc::new(budget);
                policy.budgets.insert(budget.holder.clone(), budget.clone());
                let slot = match (
                    state.budgets.remove(&budget.holder),
                    spent.remove(&budget.holder),
                ) {
                    (Some(mut slot), None) => {
                        slot.state.limit = budget.limit;
                        slot.budget = budget.clone();
                        slot
                    }
                    (old, Some((period, amount))) => {
                        let mut fresh = BudgetState::new(budget.limit, amount);
                        if let Some(old) = old.filter(|o| o.period == period) {
                            fresh.reserved = old.state.reserved;
                        }
                        BudgetSlot {
                            budget: budget.clone(),
                            period,
                            state: fresh,
                        }
                    }
                    (None, None) => continue,
                };
                // Thresholds already passed (a lowered limit, spend before a restart) are
                // offered again; the store lets each fire once per period.
                for threshold in crossed(
                    MicroUsd::ZERO,
                    slot.state.spent,
                    slot.state.limit,
                    &budget.alerts_permille,
                ) {
                    fired.push(self.alert(&slot, threshold, now));
                }
                slots.insert(budget.holder.clone(), slot);
            }
            state.budgets = slots;
            let live: std::collections::HashSet<&CounterKey> = policy
                .organization
                .iter()
                .chain(policy.projects.values().flatten())
                .chain(policy.keys.values().flatten())
                .flat_map(|entry| entry.limits.iter().map(|l| &*l.key))
                .collect();
            // Counters of removed organization and project rules go; key-level ones stay (the
            // per-key defaults' are made on use, and there is at most one set per key).
            state
                .counters
                .retain(|key, _| live.contains(&&**key) || key.holder.level == Level::Key);
        }
        for alert in fired {
            let _ = self.alerts.send(alert);
        }
        let mut current = match self.policy.write() {
            Ok(p) => p,
            Err(poisoned) => poisoned.into_inner(),
        };
        *current = Arc::new(policy);
        drop(current);
        self.reloads
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// How many times the limits have been (re)loaded.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn alert(&self, slot: &BudgetSlot, threshold_permille: u32, at: UnixTime) -> Alert {
        Alert {
            budget: (*slot.budget).clone(),
            period: slot.period,
            threshold_permille,
            spent: slot.state.spent,
            at,
        }
    }

    /// The configuration's per-key defaults as rules of `key`.
    fn defaults_of(&self, key: &str) -> Arc<Vec<RuleEntry>> {
        let cached = match self.default_rules.read() {
            Ok(map) => map.get(key).cloned(),
            Err(poisoned) => poisoned.into_inner().get(key).cloned(),
        };
        if let Some(rules) = cached {
            return rules;
        }
        let rules: Arc<Vec<RuleEntry>> = Arc::new(
            self.defaults
                .iter()
                .map(|d| {
                    RuleEntry::new(LimitRule {
                        holder: Holder::new(Level::Key, key),
                        model: d.model.clone(),
                        limits: d.limits,
                    })
                })
                .collect(),
        );
        let mut map = match self.default_rules.write() {
            Ok(map) => map,
            Err(poisoned) => poisoned.into_inner(),
        };
        map.insert(key.to_owned(), rules.clone());
        rules
    }

    /// The limits and budgets that apply to a request.
    pub fn plan(&self, ask: &Ask<'_>) -> Plan {
        self.plan_stage(ask, Stage::Whole)
    }

    /// The limits and budgets of `stage` that apply to a request.
    pub fn plan_stage(&self, ask: &Ask<'_>, stage: Stage) -> Plan {
        let policy = self.policy();
        if policy.is_empty() && self.defaults.is_empty() {
            return Plan::default();
        }
        let mut plan = Plan {
            refundable: stage == Stage::Head,
            ..Plan::default()
        };
        let takes =
            |entry: &RuleEntry, limit: &&Applicable| stage.takes(&entry.rule, limit.key.metric);
        let empty = Vec::new();
        let key_rules = policy.keys.get(ask.key).unwrap_or(&empty);
        let project_rules = ask
            .project
            .and_then(|p| policy.projects.get(p))
            .unwrap_or(&empty);
        for entry in policy
            .organization
            .iter()
            .chain(project_rules)
            .chain(key_rules)
        {
            if entry.rule.applies_to(ask.model) {
                plan.limits
                    .extend(entry.limits.iter().filter(|l| takes(entry, l)).cloned());
            }
        }
        if !self.defaults.is_empty() {
            for default in self.defaults_of(ask.key).iter() {
                let overridden = key_rules.iter().any(|e| e.rule.model == default.rule.model);
                if !overridden && default.rule.applies_to(ask.model) {
                    plan.limits
                        .extend(default.limits.iter().filter(|l| takes(default, l)).cloned());
                }
            }
        }
        if ask.model.is_some() && stage != Stage::Head && !policy.budgets.is_empty() {
            let holders = [
                Some(Holder::new(Level::Organization, ask.org)),
                ask.project.map(|p| Holder::new(Level::Project, p)),
                Some(Holder::new(Level::Key, ask.key)),
            ];
            for holder in holders.into_iter().flatten() {
                if let Some(budget) = policy.budgets.get(&holder) {
                    plan.budgets.push(budget.clone());
                }
            }
        }
        plan
    }

    /// Admits a request against every limit of `plan`, all or nothing, reserving `tokens` on
    /// token limits and `max_cost` on budgets. `subject` names what is limited in messages
    /// (the model, or the path of a request without one).
    pub async fn admit(
        self: &Arc<Self>,
        plan: Plan,
        tokens: u64,
        max_cost: MicroUsd,
        subject: &str,
    ) -> Result<Admission, GatewayError> {
        let Some(shared) = self.shared.get() else {
            return self.admit_with(plan, tokens, max_cost, subject, &Rates::Local);
        };
        let counters: Vec<(usize, SharedCounter)> = plan
            .limits
            .iter()
            .enumerate()
            .filter_map(|(i, limit)| {
                let rate = limit.key.metric.rate(limit.limit)?;
                let cost = if limit.key.metric.counts_tokens() {
                    tokens
                } else {
                    1
                };
                Some((
                    i,
                    SharedCounter {
                        name: limit.key.shared_name(rate),
                        limit: limit.limit,
                        period: rate.period,
                        cost,
                    },
                ))
            })
            .collect();
        let slots: Vec<(usize, SharedSlots)> = plan
            .limits
            .iter()
            .enumerate()
            .filter(|(_, limit)| limit.key.metric == Metric::Concurrent)
            .map(|(i, limit)| {
                (
                    i,
                    SharedSlots {
                        name: limit.key.shared_slots_name(),
                        limit: limit.limit,
                    },
                )
            })
            .collect();
        let budgets = self.shared_budgets(&plan, max_cost);
        if counters.is_empty() && slots.is_empty() && budgets.is_empty() {
            return self.admit_with(plan, tokens, max_cost, subject, &Rates::Local);
        }
        let asked: Vec<SharedCounter> = counters.iter().map(|(_, c)| c.clone()).collect();
        let asked_slots: Vec<SharedSlots> = slots.iter().map(|(_, s)| s.clone()).collect();
        let asked_budgets: Vec<SharedBudget> = budgets.iter().map(|(_, b)| b.clone()).collect();
        match shared.admit(&asked, &asked_slots, &asked_budgets).await {
            Ok(answer) => {
                let admitted = answer.admitted;
                // A spent budget refuses first, as on one server: no wait helps.
                if let Some((budget, _)) = budgets
                    .iter()
                    .zip(&answer.spent)
                    .find(|(_, s)| **s)
                    .map(|(b, _)| b)
                {
                    return Err(GatewayError::SpendLimit {
                        message: budget.refusal_message(self.clock.now()),
                        code: budget.refusal_code(),
                    });
                }
                let rates = Rates::Shared {
                    admitted,
                    verdicts: counters
                        .into_iter()
                        .zip(answer.verdicts)
                        .map(|((i, counter), verdict)| (i, (counter, verdict)))
                        .collect(),
                    in_use: slots
                        .iter()
                        .zip(answer.in_use)
                        .map(|((i, _), used)| (*i, used))
                        .collect(),
                    budgets: budgets
                        .iter()
                        .map(|(b, s)| (b.holder.clone(), s.name.clone()))
                        .collect(),
                };
                match self.admit_with(plan, tokens, max_cost, subject, &rates) {
                    Ok(mut admission) => {
                        if let Some(lease) = answer.lease {
                            admission.holds.push(Hold::SharedLease(lease));
                        }
                        Ok(admission)
                    }
                    Err(refused) => {
                        if admitted {
                            // Refused here after Redis charged it all: give it all back.
                            let refunds = asked.into_iter().map(|c| {
                                let units = -i64::try_from(c.cost).unwrap_or(i64::MAX);
                                (c, units)
                            });
                            settle_shared(shared, refunds.collect());
                            let held = asked_budgets
                                .into_iter()
                                .map(|b| (b.name, b.max_cost, 0))
                                .collect();
                            settle_shared_budgets(shared, held);
                            release_shared(shared, answer.lease.into_iter().collect());
                        }
                        Err(refused)
                    }
                }
            }
            Err(_) => match shared.when_unreachable {
                WhenUnreachable::LimitLocally => {
                    let share = plan.shared_out(shared.replicas());
                    self.admit_with(share, tokens, max_cost, subject, &Rates::Local)
                }
                WhenUnreachable::Refuse => Err(GatewayError::SharedLimitsUnavailable),
            },
        }
    }

    /// The budgets of `plan` as shared state keeps them: each one's current period (rolled
    /// over here when it ended), with the spend this gateway knows to start from.
    fn shared_budgets(&self, plan: &Plan, max_cost: MicroUsd) -> Vec<(Arc<Budget>, SharedBudget)> {
        if plan.budgets.is_empty() {
            return Vec::new();
        }
        let now = self.clock.now();
        let mut state = self.state();
        plan.budgets
            .iter()
            .filter_map(|budget| {
                let slot = state.budgets.get_mut(&budget.holder)?;
                if now >= slot.period.1 {
                    slot.period = slot.budget.period.bounds(now, slot.budget.utc_offset_secs);
                    slot.state = BudgetState::new(slot.budget.limit, MicroUsd::ZERO);
                }
                let keep = slot.period.1.seconds().saturating_sub(now.seconds()) + 86_400;
                Some((
                    budget.clone(),
                    SharedBudget {
                        name: format!(
                            "bg:{}:{}:{}",
                            budget.holder.level.as_str(),
                            budget.holder.id,
                            slot.period.0.seconds()
                        ),
                        limit: slot.budget.limit.0,
                        baseline: slot.state.spent.0,
                        max_cost: max_cost.0,
                        keep: Duration::from_secs(u64::try_from(keep).unwrap_or(86_400)),
                    },
                ))
            })
            .collect()
    }

    /// [`Limits::admit`] on this gateway's own counters alone, whatever is shared.
    pub fn admit_locally(
        self: &Arc<Self>,
        plan: Plan,
        tokens: u64,
        max_cost: MicroUsd,
        subject: &str,
    ) -> Result<Admission, GatewayError> {
        self.admit_with(plan, tokens, max_cost, subject, &Rates::Local)
    }

    /// [`Limits::admit`] with the request- and token-rate verdicts decided by `rates`.
    fn admit_with(
        self: &Arc<Self>,
        plan: Plan,
        tokens: u64,
        max_cost: MicroUsd,
        subject: &str,
        rates: &Rates,
    ) -> Result<Admission, GatewayError> {
        let now_ns = self.clock.nanos();
        let now = self.clock.now();
        let mut state = self.state();
        let State { counters, budgets } = &mut *state;

        // Budgets first: when one is spent, no wait helps and nothing else matters.
        for budget in plan
            .budgets
            .iter()
            .filter(|b| !rates.shares_budget(&b.holder))
        {
            let Some(slot) = budgets.get_mut(&budget.holder) else {
                continue;
            };
            if now >= slot.period.1 {
                slot.period = slot.budget.period.bounds(now, slot.budget.utc_offset_secs);
                slot.state = BudgetState::new(slot.budget.limit, MicroUsd::ZERO);
            }
            if slot.state.exhausted() {
                return Err(GatewayError::SpendLimit {
                    message: slot.budget.refusal_message(now),
                    code: slot.budget.refusal_code(),
                });
            }
        }

        let mut headers = RateHeaders::default();
        let mut refusal: Option<Refusal> = None;
        for (i, limit) in plan.limits.iter().enumerate() {
            let metric = limit.key.metric;
            let cost = if metric.counts_tokens() { tokens } else { 1 };
            if let Some(used) = rates.in_use(i) {
                if !rates.admitted() && used >= limit.limit {
                    let refused = Refusal {
                        metric,
                        holder: limit.key.holder.clone(),
                        limit: limit.limit,
                        used,
                        requested: 1,
                        retry_after: (limit.limit > 0).then_some(Duration::from_secs(1)),
                    };
                    Refusal::keep_tightest(&mut refusal, refused);
                }
                continue;
            }
            if let Some((counter, verdict)) = rates.verdict(i) {
                headers.add(metric, limit.limit, &shown(verdict, rates.admitted()));
                // Redis gives a wait only to a counter that refused a request it could take.
                let over = !rates.admitted()
                    && (!verdict.retry_after.is_zero() || cost > limit.limit || limit.limit == 0);
                if over {
                    let refused = Refusal {
                        metric,
                        holder: limit.key.holder.clone(),
                        limit: limit.limit,
                        used: limit.limit.saturating_sub(verdict.remaining),
                        requested: counter.cost,
                        retry_after: (cost <= limit.limit && limit.limit > 0)
                            .then_some(verdict.retry_after),
                    };
                    Refusal::keep_tightest(&mut refusal, refused);
                }
                continue;
            }
            let counter = counter(counters, limit);
            let refused = match counter {
                Counter::Rate(gcra) => {
                    let verdict = gcra.peek(now_ns, cost);
                    // A refused request's headers show the limits as they stand, uncharged.
                    headers.add(metric, limit.limit, &gcra.peek(now_ns, 0));
                    (!verdict.allowed).then(|| Refusal {
                        metric,
                        holder: limit.key.holder.clone(),
                        limit: limit.limit,
                        used: limit.limit.saturating_sub(verdict.remaining),
                        requested: cost,
                        retry_after: (cost <= limit.limit && limit.limit > 0)
                            .then_some(verdict.retry_after),
                    })
                }
                Counter::Concurrent {
                    limit: max,
                    in_flight,
                } => (*in_flight >= *max).then(|| Refusal {
                    metric,
                    holder: limit.key.holder.clone(),
                    limit: *max,
                    used: *in_flight,
                    requested: 1,
                    retry_after: (*max > 0).then_some(Duration::from_secs(1)),
                }),
            };
            if let Some(refused) = refused {
                Refusal::keep_tightest(&mut refusal, refused);
            }
        }
        if let Some(refusal) = refusal {
            drop(state);
            tracing::info!(
                holder = %refusal.holder,
                limit = refusal.metric.short(),
                "request refused by a rate limit"
            );
            return Err(GatewayError::RateLimited {
                message: rate_limit_message(
                    subject,
                    &refusal.holder,
                    refusal.metric,
                    refusal.limit,
                    refusal.used,
                    refusal.requested,
                    refusal.retry_after,
                ),
                tokens: refusal.metric.counts_tokens(),
                retry_after: refusal.retry_after,
                headers,
            });
        }

        // Everything fits: charge it all.
        let mut holds = Vec::new();
        let mut headers = RateHeaders::default();
        for (i, limit) in plan.limits.iter().enumerate() {
            let metric = limit.key.metric;
            let cost = if metric.counts_tokens() { tokens } else { 1 };
            if rates.in_use(i).is_some() {
                continue;
            }
            if let Some((counter, verdict)) = rates.verdict(i) {
                headers.add(metric, limit.limit, &shown(verdict, true));
                if metric.counts_tokens() {
                    holds.push(Hold::SharedTokens {
                        counter: counter.clone(),
                        reserved: cost,
                    });
                } else if plan.refundable {
                    holds.push(Hold::SharedRequest(counter.clone()));
                }
                continue;
            }
            match counter(counters, limit) {
                Counter::Rate(gcra) => {
                    let verdict = gcra.check(now_ns, cost);
                    headers.add(metric, limit.limit, &verdict);
                    if metric.counts_tokens() {
                        holds.push(Hold::Tokens {
                            key: limit.key.clone(),
                            rate: gcra.rate(),
                            reserved: cost,
                        });
                    } else if plan.refundable {
                        holds.push(Hold::Request {
                            key: limit.key.clone(),
                            rate: gcra.rate(),
                        });
                    }
                }
                Counter::Concurrent { in_flight, .. } => {
                    *in_flight += 1;
                    holds.push(Hold::Concurrent(limit.key.clone()));
                }
            }
        }
        for budget in &plan.budgets {
            if let Some(name) = rates.shared_budget(&budget.holder) {
                if let Some(slot) = budgets.get(&budget.holder) {
                    holds.push(Hold::SharedBudget {
                        name: name.to_owned(),
                        holder: budget.holder.clone(),
                        period_start: slot.period.0,
                        reserved: max_cost,
                    });
                }
                continue;
            }
            if let Some(slot) = budgets.get_mut(&budget.holder) {
                if slot.state.reserve(max_cost).is_ok() {
                    holds.push(Hold::Budget {
                        holder: budget.holder.clone(),
                        period_start: slot.period.0,
                        reserved: max_cost,
                    });
                }
            }
        }
        Ok(Admission {
            limits: Some(self.clone()),
            holds,
            headers,
            refund_on_drop: false,
        })
    }

    fn settle(&self, holds: Vec<Hold>, tokens: u64, cost: MicroUsd, refund: bool) {
        let now = self.clock.now();
        let mut fired = Vec::new();
        let mut shared_moves = Vec::new();
        let mut shared_budgets = Vec::new();
        let mut leases = Vec::new();
        {
            let mut state = self.state();
            for hold in holds {
                match hold {
                    Hold::Tokens {
                        key,
                        rate,
                        reserved,
                    } => {
                        if let Some(Counter::Rate(gcra)) = state.counters.get_mut(&key) {
                            if gcra.rate() == rate {
                                let delta = i128::from(tokens) - i128::from(reserved);
                                gcra.settle(i64::try_from(delta).unwrap_or(if delta < 0 {
                                    i64::MIN
                                } else {
                                    i64::MAX
                                }));
                            }
                        }
                    }
                    Hold::Request { key, rate } => {
                        if let (true, Some(Counter::Rate(gcra))) =
                            (refund, state.counters.get_mut(&key))
                        {
                            if gcra.rate() == rate {
                                gcra.settle(-1);
                            }
                        }
                    }
                    Hold::Concurrent(key) => {
                        if let Some(Counter::Concurrent { in_flight, .. }) =
                            state.counters.get_mut(&key)
                        {
                            *in_flight = in_flight.saturating_sub(1);
                        }
                    }
                    Hold::Budget {
                        holder,
                        period_start,
                        reserved,
                    } => {
                        let Some(slot) = state.budgets.get_mut(&holder) else {
                            continue;
                        };
                        // A request that began in a period now over belongs to that period.
                        if slot.period.0 != period_start {
                            continue;
                        }
                        let thresholds = slot.budget.alerts_permille.clone();
                        for threshold in slot.state.settle(reserved, cost, &thresholds) {
                            fired.push(self.alert(slot, threshold, now));
                        }
                    }
                    Hold::SharedTokens { counter, reserved } => {
                        let delta = i128::from(tokens) - i128::from(reserved);
                        let delta = i64::try_from(delta).unwrap_or(if delta < 0 {
                            i64::MIN
                        } else {
                            i64::MAX
                        });
                        shared_moves.push((counter, delta));
                    }
                    Hold::SharedRequest(counter) => {
                        if refund {
                            shared_moves.push((counter, -1));
                        }
                    }
                    Hold::SharedLease(lease) => leases.push(lease),
                    Hold::SharedBudget {
                        name,
                        holder,
                        period_start,
                        reserved,
                    } => {
                        shared_budgets.push((name, reserved.0, cost.0));
                        // This gateway's own view of the spend, for its alerts (each alert is
                        // claimed once in the database, whichever replica crosses it).
                        let Some(slot) = state.budgets.get_mut(&holder) else {
                            continue;
                        };
                        if slot.period.0 != period_start {
                            continue;
                        }
                        let thresholds = slot.budget.alerts_permille.clone();
                        for threshold in slot.state.settle(MicroUsd::ZERO, cost, &thresholds) {
                            fired.push(self.alert(slot, threshold, now));
                        }
                    }
                }
            }
        }
        if let Some(shared) = self.shared.get() {
            settle_shared(shared, shared_moves);
            settle_shared_budgets(shared, shared_budgets);
            release_shared(shared, leases);
        }
        for alert in fired {
            let _ = self.alerts.send(alert);
        }
    }
}

/// Where the request- and token-rate verdicts of an admission come from.
enum Rates {
    /// This gateway's own counters.
    Local,
    /// Shared state, already asked: whether it admitted (and charged) the request, and each
    /// counter's verdict by the limit's index in the plan.
    Shared {
        admitted: bool,
        verdicts: HashMap<usize, (SharedCounter, SharedVerdict)>,
        /// Each concurrency limit's slots in use (before this request), by its index.
        in_use: HashMap<usize, u64>,
        /// The budgets shared state holds, with their periods' names there.
        budgets: Vec<(Holder, String)>,
    },
}

impl Rates {
    fn verdict(&self, index: usize) -> Option<(&SharedCounter, &SharedVerdict)> {
        match self {
            Rates::Local => None,
            Rates::Shared { verdicts, .. } => verdicts.get(&index).map(|(c, v)| (c, v)),
        }
    }

    fn in_use(&self, index: usize) -> Option<u64> {
        match self {
            Rates::Local => None,
            Rates::Shared { in_use, .. } => in_use.get(&index).copied(),
        }
    }

    fn shared_budget(&self, holder: &Holder) -> Option<&str> {
        match self {
            Rates::Local => None,
            Rates::Shared { budgets, .. } => budgets
                .iter()
                .find(|(h, _)| h == holder)
                .map(|(_, name)| name.as_str()),
        }
    }

    fn shares_budget(&self, holder: &Holder) -> bool {
        self.shared_budget(holder).is_some()
    }

    fn admitted(&self) -> bool {
        matches!(self, Rates::Shared { admitted: true, .. })
    }
}

/// A shared counter's state as rate-limit headers show it.
fn shown(verdict: &SharedVerdict, allowed: bool) -> Verdict {
    Verdict {
        allowed,
        remaining: verdict.remaining,
        reset_after: verdict.reset_after,
        retry_after: verdict.retry_after,
    }
}

/// Moves shared counters off the request path (a settled reservation, a refund); a failure
/// only loses the correction, never a request.
fn settle_shared(shared: &Arc<SharedLimits>, moves: Vec<(SharedCounter, i64)>) {
    if moves.iter().all(|(_, units)| *units == 0) {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let shared = shared.clone();
    runtime.spawn(async move {
        if let Err(err) = shared.settle(&moves).await {
            tracing::debug!(error = %err, "a shared rate counter was not settled");
        }
    });
}

/// Gives concurrency leases back in shared state off the request path.
fn release_shared(shared: &Arc<SharedLimits>, leases: Vec<Lease>) {
    if leases.is_empty() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let shared = shared.clone();
    runtime.spawn(async move {
        if let Err(err) = shared.release(leases).await {
            tracing::debug!(error = %err, "concurrency leases were left to lapse");
        }
    });
}

/// Settles budget holds in shared state off the request path: `(period, held, cost)`.
fn settle_shared_budgets(shared: &Arc<SharedLimits>, holds: Vec<(String, i64, i64)>) {
    if holds.is_empty() {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let shared = shared.clone();
    runtime.spawn(async move {
        if let Err(err) = shared.settle_budgets(&holds).await {
            tracing::warn!(error = %err, "a budget's spend was not settled in shared state");
        }
    });
}

/// The counter of a limit, made (or remade, when its limit changed) as needed.
fn counter<'a>(counters: &'a mut Counters, limit: &Applicable) -> &'a mut Counter {
    let metric = limit.key.metric;
    let counter = counters
        .entry(limit.key.clone())
        .or_insert_with(|| fresh(metric, limit.limit));
    let current = match counter {
        Counter::Rate(gcra) => metric.rate(limit.limit) == Some(gcra.rate()),
        Counter::Concurrent { limit: max, .. } => {
            *max = limit.limit;
            true
        }
    };
    if !current {
        *counter = fresh(metric, limit.limit);
    }
    counter
}

fn fresh(metric: Metric, limit: u64) -> Counter {
    match metric.rate(limit) {
        Some(rate) => Counter::Rate(Gcra::new(rate)),
        None => Counter::Concurrent {
            limit,
            in_flight: 0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;
    use tollgate_core::limit_rules::RateLimits;
    use tollgate_core::routing::ModelPattern;
    use tollgate_core::ManualClock;

    fn limits_with(limits: RateLimits, clock: &ManualClock) -> Arc<Limits> {
        Limits::new(
            vec![DefaultLimit {
                model: ModelPattern::new("*"),
                limits,
            }],
            Arc::new(clock.clone()),
        )
        .0
    }

    fn ask(key: &str) -> Ask<'_> {
        Ask {
            org: "org-x",
            project: Some("proj_x"),
            key,
            model: Some(("gpt-4o", "gpt-4o")),
        }
    }

    fn admit(limits: &Arc<Limits>, key: &str, tokens: u64) -> Result<Admission, GatewayError> {
        limits.admit_locally(limits.plan(&ask(key)), tokens, MicroUsd::ZERO, "gpt-4o")
    }

    /// Admits a request in two stages, as a metered endpoint does.
    fn admit_in_stages(
        limits: &Arc<Limits>,
        key: &str,
        tokens: u64,
    ) -> Result<Admission, &'static str> {
        let head_ask = Ask {
            model: None,
            ..ask(key)
        };
        let head = limits
            .admit_locally(
                limits.plan_stage(&head_ask, Stage::Head),
                0,
                MicroUsd::ZERO,
                "/v1/chat/completions",
            )
            .map_err(|_| "head")?;
        match limits.admit_locally(
            limits.plan_stage(&ask(key), Stage::Body),
            tokens,
            MicroUsd::ZERO,
            "gpt-4o",
        ) {
            Ok(rest) => Ok(rest.join(head)),
            Err(_) => {
                head.refund();
                Err("body")
            }
        }
    }

    #[test]
    fn a_replica_s_share_cuts_every_limit_concurrency_included() {
        let clock = ManualClock::at(UnixTime(1_000));
        let limits = limits_with(
            RateLimits {
                rpm: Some(7),
                tpm: Some(1_000),
                concurrent: Some(4),
                rpd: Some(1),
                ..RateLimits::default()
            },
            &clock,
        );
        let share = limits.plan(&ask("key_a")).shared_out(3);
        let mut cut: Vec<(Metric, u64)> = share
            .limits
            .iter()
            .map(|l| (l.key.metric, l.limit))
            .collect();
        cut.sort_by_key(|(m, _)| m.short());
        assert_eq!(
            cut,
            vec![
                (Metric::Concurrent, 1),
                (Metric::RequestsPerDay, 1),
                (Metric::RequestsPerMinute, 2),
                (Metric::TokensPerMinute, 333),
            ],
            "each limit over three replicas, never below one"
        );
    }

    #[test]
    fn request_and_concurrency_limits_are_decided_on_the_head_and_tokens_after() {
        let clock = ManualClock::at(UnixTime(1_000));
        let limits = limits_with(
            RateLimits {
                rpm: Some(3),
                tpm: Some(1_000),
                concurrent: Some(1),
                ..RateLimits::default()
            },
            &clock,
        );
        let head_ask = Ask {
            model: None,
            ..ask("key_a")
        };
        let head = limits.plan_stage(&head_ask, Stage::Head);
        let body = limits.plan_stage(&ask("key_a"), Stage::Body);
        assert_eq!(head.limits.len(), 2, "rpm and concurrency: {head:?}");
        assert!(!head.needs_estimate(), "the head never counts tokens");
        assert_eq!(body.limits.len(), 1, "tpm: {body:?}");
        assert!(body.needs_estimate());
        assert_eq!(
            limits.plan(&ask("key_a")).limits.len(),
            3,
            "a whole plan has all"
        );

        // One in flight: the next is refused on its head, before any body.
        let first = admit_in_stages(&limits, "key_a", 100);
        assert!(first.is_ok());
        let err = admit_in_stages(&limits, "key_a", 100).err();
        assert_eq!(err, Some("head"));
        drop(first);

        // Refused for its tokens after the head was admitted: its request is given back.
        for _ in 0..3 {
            let err = admit_in_stages(&limits, "key_a", 5_000).err();
            assert_eq!(err, Some("body"));
        }
        let second = admit_in_stages(&limits, "key_a", 100);
        assert!(
            second.is_ok(),
            "refused requests used none of the rpm: {:?}",
            second.err()
        );
        let headers = second.map(|a| a.headers().clone()).unwrap_or_default();
        assert_eq!(
            headers.requests.map(|s| s.remaining),
            Some(1),
            "rpm 3, two used"
        );
        assert_eq!(
            headers.tokens.map(|s| s.remaining),
            Some(900),
            "tpm 1000: the first gave its 100 back when dropped"
        );
        // A head admitted and then dropped unjoined (its body refused, its client gone): its
        // request is given back too, so the last of the rpm is still there afterwards.
        for _ in 0..3 {
            let head = limits
                .admit_locally(
                    limits.plan_stage(&head_ask, Stage::Head),
                    0,
                    MicroUsd::ZERO,
                    "/v1/chat/completions",
                )
                .map(Admission::refunded_unless_joined);
            assert!(head.is_ok(), "{:?}", head.err());
        }
        let third = admit_in_stages(&limits, "key_a", 100);
        assert_eq!(
            third
                .map(|a| a.headers().requests.map(|s| s.remaining))
                .ok(),
            Some(Some(0)),
            "rpm 3: the first, the second and this one"
        );
    }

    #[test]
    fn many_threads_racing_on_one_key_never_exceed_its_limit() {
        let clock = ManualClock::at(UnixTime(1_000));
        let limits = limits_with(
            RateLimits {
                rpm: Some(100),
                tpm: Some(1_000_000),
                ..RateLimits::default()
            },
            &clock,
        );
        let admitted = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..100 {
                        if let Ok(admission) = admit(&limits, "key_a", 10) {
                            admitted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            admission.settle(5, MicroUsd::ZERO);
                        }
                    }
                });
            }
        });
        assert_eq!(admitted.load(std::sync::atomic::Ordering::SeqCst), 100);
        assert!(
            admit(&limits, "key_b", 10).is_ok(),
            "each key counts on its own"
        );
    }

    #[test]
    fn token_reservations_are_held_until_settled_and_given_back_when_dropped() {
        let clock = ManualClock::at(UnixTime(1_000));
        let limits = limits_with(
            RateLimits {
                tpm: Some(1_000),
                ..RateLimits::default()
            },
            &clock,
        );
        let first = admit(&limits, "key_a", 600).ok();
        assert!(first.is_some());
        assert!(admit(&limits, "key_a", 600).is_err(), "600 are held");
        if let Some(first) = first {
            first.settle(100, MicroUsd::ZERO);
        }
        let second = admit(&limits, "key_a", 800);
        assert!(second.is_ok(), "the first settled to 100");
        drop(second);
        assert!(
            admit(&limits, "key_a", 900).is_ok(),
            "a dropped admission gives its reservation back"
        );
    }

    #[test]
    fn concurrency_slots_come_back_when_requests_end() {
        let clock = ManualClock::at(UnixTime(1_000));
        let limits = limits_with(
            RateLimits {
                concurrent: Some(2),
                ..RateLimits::default()
            },
            &clock,
        );
        let a = admit(&limits, "key_a", 0);
        let b = admit(&limits, "key_a", 0);
        assert!(a.is_ok() && b.is_ok());
        let refused = admit(&limits, "key_a", 0)
            .err()
            .map(|e| e.to_openai().message);
        assert!(
            refused
                .as_deref()
                .is_some_and(|m| m.contains("on concurrent requests: Limit 2, Used 2")),
            "{refused:?}"
        );
        drop(a);
        assert!(admit(&limits, "key_a", 0).is_ok());
    }

    #[test]
    fn the_window_edge_is_exact_on_the_clock() {
        let clock = ManualClock::at(UnixTime(1_000));
        let limits = limits_with(
            RateLimits {
                rpm: Some(2),
                ..RateLimits::default()
            },
            &clock,
        );
        assert!(admit(&limits, "key_a", 0).is_ok());
        assert!(admit(&limits, "key_a", 0).is_ok());
        clock.advance(29);
        assert!(
            admit(&limits, "key_a", 0).is_err(),
            "one request refills in 30 s"
        );
        clock.advance(1);
        assert!(admit(&limits, "key_a", 0).is_ok());
        assert!(admit(&limits, "key_a", 0).is_err());
    }

    #[test]
    fn a_refusal_shows_every_limit_as_it_stands_uncharged() {
        let clock = ManualClock::at(UnixTime(1_000));
        let limits = limits_with(
            RateLimits {
                rpm: Some(1),
                tpm: Some(1_000),
                ..RateLimits::default()
            },
            &clock,
        );
        if let Ok(first) = admit(&limits, "key_a", 100) {
            first.settle(100, MicroUsd::ZERO);
        }
        let Err(GatewayError::RateLimited { headers, .. }) = admit(&limits, "key_a", 100) else {
            panic!("the second request is over the RPM");
        };
        let mut shown = HeaderMap::new();
        headers.apply(&mut shown);
        assert_eq!(shown["x-ratelimit-remaining-requests"], "0");
        assert_eq!(
            shown["x-ratelimit-remaining-tokens"], "900",
            "the refused request's 100 tokens are not counted"
        );
    }
}
