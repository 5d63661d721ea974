//! Rate limits shared by every replica through Redis.
//!
//! Each request- and token-rate counter (a holder's rpm, rpd, tpm or tpd on a model pattern)
//! lives in Redis as one GCRA "theoretical arrival time", and a request is admitted against all
//! of its counters by one server-side script: every counter is read, and all are charged or
//! none, in one atomic step on the Redis server, on the Redis server's clock. There is no
//! read-then-write between replicas, so N replicas together admit what one would.
//!
//! Times are microseconds since 2023-11-14 (small enough that Lua's doubles hold them exactly),
//! and one unit of a limit of `L` per period `P` costs `ceil(P / L)` microseconds: never more
//! than `L` a period, and an idle holder may spend all `L` at once, as in
//! `tollgate_core::limits`.
//!
//! A concurrency limit is a sorted set of leases, one per request in flight on any replica,
//! scored by when the lease lapses: the same script drops lapsed leases, counts the rest and
//! adds the request's own. A replica renews its leases while their requests run and removes
//! them when they end; the leases of a replica that dies lapse within [`LEASE_LASTS`].
//!
//! When Redis cannot be reached (an error, or no answer within the timeout), the caller falls
//! back: the gateway limits locally with its share of each limit (the limit divided by the
//! replicas last seen alive) or refuses with 503, as configured, and tries Redis again after a
//! short pause. A heartbeat keeps the count of live replicas.
//!
//! This module imports nothing from the rest of the crate.

use redis::aio::ConnectionManager;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Admits a request on every rate counter, concurrency slot set and budget it needs, charging
/// all or none.
/// KEYS: the rate counters, then the slot sets (sorted sets of leases scored by when they
/// lapse, in ms), then the budgets (hashes of `spent` and `reserved` micro-USD in the budget's
/// current period). ARGV[1]: how many rate counters; ARGV[2]: how many slot sets; ARGV[3]: the
/// request's lease; ARGV[4]: how long a lease lasts unrenewed (ms); then, per counter, its unit
/// cost (µs), its limit and the cost asked; then, per slot set, its limit; then, per budget,
/// its limit, the spend to start from when the period is new to Redis, the most the request
/// can cost, and how long to keep the period (ms).
/// Returns: 1 if admitted, 0 if not; per counter, the units remaining, the microseconds until a
/// refused request would fit (0 when it fits or never can), and until the counter is full
/// again; per slot set, the slots in use (before this request); per budget, 1 if it is spent
/// (spent and held reach its limit), else 0. A refusal reports everything as it stands,
/// uncharged.
const ADMIT: &str = r"
local t = redis.call('TIME')
local now = (tonumber(t[1]) - 1700000000) * 1000000 + tonumber(t[2])
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local n = tonumber(ARGV[1])
local m = tonumber(ARGV[2])
local lease = ARGV[3]
local lease_ms = tonumber(ARGV[4])
local starts, ends, fits = {}, {}, {}
local all = true
local spent_out = {}
local used_out = {}
for b = n + m + 1, #KEYS do
  local a = 4 + 3 * n + m + 4 * (b - n - m - 1)
  local limit = tonumber(ARGV[a + 1])
  if redis.call('EXISTS', KEYS[b]) == 0 then
    redis.call('HSET', KEYS[b], 'spent', ARGV[a + 2], 'reserved', 0)
    redis.call('PEXPIRE', KEYS[b], ARGV[a + 4])
  end
  local spent = tonumber(redis.call('HGET', KEYS[b], 'spent')) or 0
  local reserved = tonumber(redis.call('HGET', KEYS[b], 'reserved')) or 0
  if spent + reserved >= limit then
    spent_out[b] = 1
    all = false
  else
    spent_out[b] = 0
  end
end
for j = 1, m do
  local key = KEYS[n + j]
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now_ms)
  local used = redis.call('ZCARD', key)
  used_out[j] = used
  if used >= tonumber(ARGV[4 + 3 * n + j]) then all = false end
end
local ARGV_RATE_BASE = 4
for i = 1, n do
  local unit = tonumber(ARGV[ARGV_RATE_BASE + 3 * i - 2])
  local limit = tonumber(ARGV[ARGV_RATE_BASE + 3 * i - 1])
  local cost = tonumber(ARGV[ARGV_RATE_BASE + 3 * i])
  local tat = tonumber(redis.call('GET', KEYS[i])) or 0
  local start = math.max(tat, now)
  local finish = start + cost * unit
  local fit = limit > 0 and cost <= limit and finish <= now + limit * unit
  starts[i], ends[i], fits[i] = start, finish, fit
  if not fit then all = false end
end
local out = { all and 1 or 0 }
for i = 1, n do
  local unit = tonumber(ARGV[ARGV_RATE_BASE + 3 * i - 2])
  local limit = tonumber(ARGV[ARGV_RATE_BASE + 3 * i - 1])
  local cost = tonumber(ARGV[ARGV_RATE_BASE + 3 * i])
  local kept = starts[i]
  if all then
    kept = ends[i]
    local ttl = math.ceil((kept - now) / 1000) + 1000
    redis.call('SET', KEYS[i], string.format('%.0f', kept), 'PX', ttl)
  end
  local remaining = math.floor(math.max(0, now + limit * unit - kept) / unit)
  if remaining > limit then remaining = limit end
  local retry = 0
  if not fits[i] and cost <= limit and limit > 0 then
    retry = ends[i] - now - limit * unit
  end
  out[#out + 1] = remaining
  out[#out + 1] = retry
  out[#out + 1] = math.max(0, kept - now)
end
for j = 1, m do
  if all then
    redis.call('ZADD', KEYS[n + j], now_ms + lease_ms, lease)
    redis.call('PEXPIRE', KEYS[n + j], lease_ms * 2)
  end
  out[#out + 1] = used_out[j]
end
for b = n + m + 1, #KEYS do
  if all then
    local a = 4 + 3 * n + m + 4 * (b - n - m - 1)
    redis.call('HINCRBY', KEYS[b], 'reserved', ARGV[a + 3])
  end
  out[#out + 1] = spent_out[b]
end
return out
";

/// Gives leases back: KEYS are slot sets, ARGV the lease held in each.
const RELEASE: &str = r"
for i = 1, #KEYS do
  redis.call('ZREM', KEYS[i], ARGV[i])
end
return 1
";

/// Extends leases still held: ARGV[1] is how long from now (ms); KEYS are slot sets, ARGV[i + 1]
/// the lease held in each. A lease that lapsed (or was given back) is not made again.
const RENEW: &str = r"
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease_ms = tonumber(ARGV[1])
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', now_ms + lease_ms, ARGV[i + 1])
  redis.call('PEXPIRE', KEYS[i], lease_ms * 2)
end
return 1
";

/// Moves each counter (KEYS) by a signed number of microseconds (ARGV): a reservation settled
/// to what was really used, or a refund. A counter that expired meanwhile is left alone.
const SETTLE: &str = r"
local t = redis.call('TIME')
local now = (tonumber(t[1]) - 1700000000) * 1000000 + tonumber(t[2])
for i = 1, #KEYS do
  local tat = tonumber(redis.call('GET', KEYS[i]))
  if tat then
    tat = math.max(0, tat + tonumber(ARGV[i]))
    local ttl = math.max(1000, math.ceil((tat - now) / 1000) + 1000)
    redis.call('SET', KEYS[i], string.format('%.0f', tat), 'PX', ttl)
  end
end
return 1
";

/// Settles budget holds (KEYS): ARGV per key: the amount held, the request's real cost.
/// Returns each budget's spend before and after, for alerts.
const SETTLE_BUDGETS: &str = r"
local out = {}
for i = 1, #KEYS do
  local before = 0
  local after = 0
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('HINCRBY', KEYS[i], 'reserved', -tonumber(ARGV[2 * i - 1]))
    if tonumber(redis.call('HGET', KEYS[i], 'reserved')) < 0 then
      redis.call('HSET', KEYS[i], 'reserved', 0)
    end
    after = redis.call('HINCRBY', KEYS[i], 'spent', ARGV[2 * i])
    before = after - tonumber(ARGV[2 * i])
  end
  out[#out + 1] = before
  out[#out + 1] = after
end
return out
";

/// Records this replica as alive and counts the replicas seen in the last few seconds.
const HEARTBEAT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 2000)
return redis.call('ZCARD', KEYS[1])
";

/// What to do when Redis cannot be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenUnreachable {
    /// Limit locally with this replica's share of each limit (the default).
    LimitLocally,
    /// Refuse requests that have rate limits with 503.
    Refuse,
}

/// One counter to admit a request against.
#[derive(Debug, Clone)]
pub struct SharedCounter {
    /// The counter's name without the prefix: its holder, model pattern, metric and limit.
    pub name: String,
    pub limit: u64,
    pub period: Duration,
    pub cost: u64,
}

impl SharedCounter {
    /// Microseconds one unit costs: `ceil(P / L)`, at least 1.
    pub fn unit_us(&self) -> u64 {
        let period = u64::try_from(self.period.as_micros()).unwrap_or(u64::MAX);
        period.div_ceil(self.limit.max(1)).max(1)
    }
}

/// A concurrency limit to admit a request against: a set of leases, one per request in flight
/// on any replica.
#[derive(Debug, Clone)]
pub struct SharedSlots {
    /// The set's name without the prefix: its holder, model pattern and metric.
    pub name: String,
    pub limit: u64,
}

/// The slots a request holds in shared state: one lease (a name unique to the request) in each
/// set. Renewed while the request runs; given back when it ends; left to lapse
/// ([`LEASE_LASTS`]) if the replica holding it dies.
#[derive(Debug)]
pub struct Lease {
    id: u64,
    member: String,
    sets: Vec<String>,
}

/// A budget's current period to admit a request against.
#[derive(Debug, Clone)]
pub struct SharedBudget {
    /// The budget's period's name without the prefix: its holder and period start.
    pub name: String,
    pub limit: i64,
    /// The spend to start from when Redis has not seen the period (read from the database).
    pub baseline: i64,
    /// The most the request can cost: held until it settles.
    pub max_cost: i64,
    /// How long Redis keeps the period (until it ends, and a day more).
    pub keep: Duration,
}

/// One counter's state after an admission, as Redis reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedVerdict {
    pub remaining: u64,
    pub retry_after: Duration,
    pub reset_after: Duration,
}

/// What Redis answered to an admission.
#[derive(Debug)]
pub struct SharedAnswer {
    pub admitted: bool,
    /// One per counter asked.
    pub verdicts: Vec<SharedVerdict>,
    /// Per slot set asked, the slots in use before this request.
    pub in_use: Vec<u64>,
    /// Per budget asked, whether it is spent.
    pub spent: Vec<bool>,
    /// The slots taken, when the request was admitted with any.
    pub lease: Option<Lease>,
}

/// Why Redis could not answer.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("Redis is being given a pause after a failure")]
    Paused,
    #[error("Redis answered something this version cannot read")]
    Unreadable,
}

/// The connection to Redis and what the gateway knows about it.
pub struct SharedLimits {
    connection: ConnectionManager,
    prefix: String,
    timeout: Duration,
    pub when_unreachable: WhenUnreachable,
    admit: redis::Script,
    settle: redis::Script,
    settle_budgets: redis::Script,
    heartbeat: redis::Script,
    release: redis::Script,
    renew: redis::Script,
    replica: String,
    /// Leases this replica holds, renewed while their requests run.
    leases: std::sync::Mutex<std::collections::HashMap<u64, (String, Vec<String>)>>,
    next_lease: AtomicU64,
    /// Leases (set, lease) a release could not give back yet.
    unreleased: std::sync::Mutex<Vec<(String, String)>>,
    /// Replicas seen alive at the last heartbeat (at least 1).
    replicas: AtomicU32,
    /// Until when (ms since `epoch`) Redis is left alone after a failure.
    paused_until_ms: AtomicU64,
    epoch: Instant,
    /// Whether the last attempt reached Redis (for logs, `/readyz` and metrics).
    reachable: AtomicBool,
}

impl std::fmt::Debug for SharedLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedLimits")
            .field("prefix", &self.prefix)
            .field("reachable", &self.reachable.load(Ordering::Relaxed))
            .field("replicas", &self.replicas.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// How long Redis is left alone after a failure before it is tried again.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// How often a replica says it is alive, and how long it counts as alive after.
const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
const ALIVE_FOR_SECS: u64 = 5;
/// How long a concurrency lease lasts unless renewed: the slots of a replica that died come
/// back after at most this long.
pub const LEASE_LASTS: Duration = Duration::from_secs(30);
/// How often the leases of running requests are renewed (every tenth heartbeat).
const RENEW_EVERY_BEATS: u32 = 10;
/// The most leases kept to give back later.
const MAX_UNRELEASED: usize = 100_000;

impl SharedLimits {
    /// Connects lazily to Redis at `url` (nothing is sent until the first use, so a gateway
    /// starts while Redis is down). `prefix` starts every key Tollgate writes.
    pub fn new(
        url: &str,
        prefix: &str,
        timeout: Duration,
        when_unreachable: WhenUnreachable,
    ) -> Result<SharedLimits, SharedError> {
        let client = redis::Client::open(url)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let connection = ConnectionManager::new_lazy_with_config(client, config)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Ok(SharedLimits {
            connection,
            prefix: prefix.to_owned(),
            timeout,
            when_unreachable,
            admit: redis::Script::new(ADMIT),
            settle: redis::Script::new(SETTLE),
            settle_budgets: redis::Script::new(SETTLE_BUDGETS),
            heartbeat: redis::Script::new(HEARTBEAT),
            release: redis::Script::new(RELEASE),
            renew: redis::Script::new(RENEW),
            leases: Default::default(),
            next_lease: AtomicU64::new(1),
            unreleased: Default::default(),
            replica: format!("{}-{nanos}", std::process::id()),
            replicas: AtomicU32::new(1),
            paused_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            reachable: AtomicBool::new(true),
        })
    }

    /// Replicas seen alive at the last heartbeat, at least 1: a limit's local share divides
    /// by it.
    pub fn replicas(&self) -> u32 {
        self.replicas.load(Ordering::Relaxed).max(1)
    }

    /// Whether the last attempt reached Redis.
    pub fn reachable(&self) -> bool {
        self.reachable.load(Ordering::Relaxed)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn paused(&self) -> bool {
        self.now_ms() < self.paused_until_ms.load(Ordering::Relaxed)
    }

    fn failed(&self, err: &SharedError) {
        let pause = u64::try_from(PAUSE_AFTER_FAILURE.as_millis()).unwrap_or(1_000);
        self.paused_until_ms
            .store(self.now_ms() + pause, Ordering::Relaxed);
        if self.reachable.swap(false, Ordering::Relaxed) {
            let policy = match self.when_unreachable {
                WhenUnreachable::LimitLocally => "limiting locally with this replica's share",
                WhenUnreachable::Refuse => "refusing rate-limited requests with 503",
            };
            tracing::error!(error = %err, policy, "shared rate limits are unavailable");
        }
    }

    fn succeeded(&self) {
        if !self.reachable.swap(true, Ordering::Relaxed) {
            tracing::info!("shared rate limits are back: Redis answers again");
        }
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, SharedError> {
        if self.paused() {
            return Err(SharedError::Paused);
        }
        self.run_now(invocation).await
    }

    /// [`SharedLimits::run`] even while Redis is paused: for giving leases back and renewing
    /// them, which must not wait out a pause another call's failure began.
    async fn run_now<T: redis::FromRedisValue>(
        &self,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, SharedError> {
        let mut connection = self.connection.clone();
        let result =
            match tokio::time::timeout(self.timeout, invocation.invoke_async::<T>(&mut connection))
                .await
            {
                Ok(Ok(value)) => Ok(value),
                Ok(Err(err)) => Err(SharedError::Redis(err)),
                Err(_) => Err(SharedError::Timeout(self.timeout)),
            };
        match &result {
            Ok(_) => self.succeeded(),
            Err(err) => self.failed(err),
        }
        result
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Admits a request against every counter, slot set and budget, charging all or none.
    pub async fn admit(
        &self,
        counters: &[SharedCounter],
        slots: &[SharedSlots],
        budgets: &[SharedBudget],
    ) -> Result<SharedAnswer, SharedError> {
        let lease_id = self.next_lease.fetch_add(1, Ordering::Relaxed);
        let member = format!("{}:{lease_id}", self.replica);
        let mut invocation = self.admit.prepare_invoke();
        invocation
            .arg(counters.len())
            .arg(slots.len())
            .arg(&member)
            .arg(u64::try_from(LEASE_LASTS.as_millis()).unwrap_or(30_000));
        for counter in counters {
            invocation.key(self.key(&counter.name));
        }
        for set in slots {
            invocation.key(self.key(&set.name));
        }
        for budget in budgets {
            invocation.key(self.key(&budget.name));
        }
        for counter in counters {
            invocation
                .arg(counter.unit_us())
                .arg(counter.limit)
                .arg(counter.cost);
        }
        for set in slots {
            invocation.arg(set.limit);
        }
        for budget in budgets {
            invocation
                .arg(budget.limit)
                .arg(budget.baseline)
                .arg(budget.max_cost.max(0))
                .arg(
                    u64::try_from(budget.keep.as_millis())
                        .unwrap_or(u64::MAX)
                        .max(1),
                );
        }
        let answer: Vec<i64> = self.run(invocation).await?;
        if answer.len() != 1 + 3 * counters.len() + slots.len() + budgets.len() {
            return Err(SharedError::Unreadable);
        }
        let rates_end = 1 + 3 * counters.len();
        let slots_end = rates_end + slots.len();
        let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
        let verdicts = answer[1..rates_end]
            .chunks_exact(3)
            .map(|c| SharedVerdict {
                remaining: u64::try_from(c[0]).unwrap_or(0),
                retry_after: micros(c[1]),
                reset_after: micros(c[2]),
            })
            .collect();
        let in_use = answer[rates_end..slots_end]
            .iter()
            .map(|v| u64::try_from(*v).unwrap_or(0))
            .collect();
        let spent = answer[slots_end..].iter().map(|v| *v == 1).collect();
        let admitted = answer[0] == 1;
        let lease = (admitted && !slots.is_empty()).then(|| {
            let sets: Vec<String> = slots.iter().map(|s| self.key(&s.name)).collect();
            self.leases_held()
                .insert(lease_id, (member.clone(), sets.clone()));
            Lease {
                id: lease_id,
                member,
                sets,
            }
        });
        Ok(SharedAnswer {
            admitted,
            verdicts,
            in_use,
            spent,
            lease,
        })
    }

    fn leases_held(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<u64, (String, Vec<String>)>> {
        self.leases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Gives leases back: the requests holding them ended (or were refused after all). Leases
    /// Redis does not take back now are given back again with the next renewal (and lapse by
    /// themselves if Redis stays away).
    pub async fn release(&self, leases: Vec<Lease>) -> Result<(), SharedError> {
        if leases.is_empty() {
            return Ok(());
        }
        {
            let mut held = self.leases_held();
            for lease in &leases {
                held.remove(&lease.id);
            }
        }
        let pairs: Vec<(String, String)> = leases
            .into_iter()
            .flat_map(|lease| {
                let member = lease.member;
                lease.sets.into_iter().map(move |set| (set, member.clone()))
            })
            .collect();
        self.give_back(pairs).await
    }

    async fn give_back(&self, pairs: Vec<(String, String)>) -> Result<(), SharedError> {
        let mut invocation = self.release.prepare_invoke();
        for (set, member) in &pairs {
            invocation.key(set).arg(member);
        }
        match self.run_now::<i64>(invocation).await {
            Ok(_) => Ok(()),
            Err(err) => {
                let mut pending = self
                    .unreleased
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                // Bounded: past it, the rest lapse by themselves.
                let room = MAX_UNRELEASED.saturating_sub(pending.len());
                pending.extend(pairs.into_iter().take(room));
                Err(err)
            }
        }
    }

    /// How many leases this replica holds for running requests.
    pub fn leases(&self) -> usize {
        self.leases_held().len()
    }

    /// Extends every lease this replica holds by [`LEASE_LASTS`], and gives back the leases
    /// an earlier release could not.
    pub async fn renew_leases(&self) {
        let unreleased: Vec<(String, String)> = std::mem::take(
            &mut *self
                .unreleased
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if !unreleased.is_empty() {
            let _ = self.give_back(unreleased).await;
        }
        let held: Vec<(String, Vec<String>)> = self.leases_held().values().cloned().collect();
        if held.is_empty() {
            return;
        }
        let mut invocation = self.renew.prepare_invoke();
        invocation.arg(u64::try_from(LEASE_LASTS.as_millis()).unwrap_or(30_000));
        for (member, sets) in &held {
            for set in sets {
                invocation.key(set).arg(member);
            }
        }
        if let Err(err) = self.run_now::<i64>(invocation).await {
            tracing::warn!(error = %err, "concurrency leases were not renewed");
        }
    }

    /// Settles budget holds: `(budget, held, cost)`; returns each budget's spend before and
    /// after.
    pub async fn settle_budgets(
        &self,
        holds: &[(String, i64, i64)],
    ) -> Result<Vec<(i64, i64)>, SharedError> {
        if holds.is_empty() {
            return Ok(Vec::new());
        }
        let mut invocation = self.settle_budgets.prepare_invoke();
        for (name, held, cost) in holds {
            invocation.key(self.key(name)).arg(*held).arg(*cost);
        }
        let answer: Vec<i64> = self.run(invocation).await?;
        Ok(answer.chunks_exact(2).map(|c| (c[0], c[1])).collect())
    }

    /// Moves counters by signed numbers of units: a settled reservation (more or fewer tokens
    /// than reserved) or a refund.
    pub async fn settle(&self, moves: &[(SharedCounter, i64)]) -> Result<(), SharedError> {
        let moves: Vec<&(SharedCounter, i64)> = moves.iter().filter(|(_, d)| *d != 0).collect();
        if moves.is_empty() {
            return Ok(());
        }
        let mut invocation = self.settle.prepare_invoke();
        for (counter, units) in moves {
            let unit = i64::try_from(counter.unit_us()).unwrap_or(i64::MAX);
            invocation
                .key(self.key(&counter.name))
                .arg(units.saturating_mul(unit));
        }
        let _: i64 = self.run(invocation).await?;
        Ok(())
    }

    /// Connects, loads the scripts and counts the replicas once, so the first requests do not
    /// wait for any of it. A Redis that cannot be reached now is logged (and the fallback
    /// applies) but does not stop the gateway.
    pub async fn warm_up(&self) {
        let mut connection = self.connection.clone();
        let loaded = tokio::time::timeout(self.timeout.max(Duration::from_secs(2)), async {
            self.admit
                .prepare_invoke()
                .load_async(&mut connection)
                .await?;
            self.settle
                .prepare_invoke()
                .load_async(&mut connection)
                .await?;
            self.settle_budgets
                .prepare_invoke()
                .load_async(&mut connection)
                .await?;
            self.release
                .prepare_invoke()
                .load_async(&mut connection)
                .await?;
            self.renew
                .prepare_invoke()
                .load_async(&mut connection)
                .await?;
            self.heartbeat
                .prepare_invoke()
                .load_async(&mut connection)
                .await
        })
        .await;
        match loaded {
            Ok(Ok(_)) => self.beat().await,
            Ok(Err(err)) => self.failed(&SharedError::Redis(err)),
            Err(_) => self.failed(&SharedError::Timeout(self.timeout)),
        }
    }

    async fn beat(&self) {
        let mut invocation = self.heartbeat.prepare_invoke();
        invocation
            .key(self.key("replicas"))
            .arg(&self.replica)
            .arg(ALIVE_FOR_SECS);
        if let Ok(count) = self.run::<u32>(invocation).await {
            self.replicas.store(count.max(1), Ordering::Relaxed);
        }
    }

    /// Says this replica is alive and learns how many are, every second until `stop`.
    pub async fn keep_heartbeat(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(HEARTBEAT_EVERY);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut beats = 0u32;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = stop.changed() => return,
            }
            if *stop.borrow() {
                return;
            }
            // The heartbeat also probes a paused connection: Redis coming back is noticed
            // within a second even when no request comes.
            self.paused_until_ms.store(0, Ordering::Relaxed);
            self.beat().await;
            beats = beats.wrapping_add(1);
            let behind = !self
                .unreleased
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .is_empty();
            if behind || beats.is_multiple_of(RENEW_EVERY_BEATS) {
                self.renew_leases().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unit_costs_the_period_over_the_limit_rounded_up() {
        let counter = |limit, secs| SharedCounter {
            name: String::new(),
            limit,
            period: Duration::from_secs(secs),
            cost: 1,
        };
        assert_eq!(counter(40, 60).unit_us(), 1_500_000);
        assert_eq!(counter(7, 60).unit_us(), 8_571_429);
        assert_eq!(counter(0, 60).unit_us(), 60_000_000);
        assert_eq!(counter(u64::MAX, 60).unit_us(), 1);
    }
}
