//! Suspicious use of a key, told apart from its own recent behaviour.
//!
//! [`Watch`] is fed every metered request (key, client address, cost, time) and every refused
//! authentication that named an existing key, and says what stands out:
//!
//! * **new address**: a key used from an address it was never used from (its first address is
//!   learned silently; past [`Thresholds::max_addresses`] distinct addresses a key is taken to
//!   be used widely and new ones no longer alert);
//! * **request or spend spike**: more requests (or spend) in one window than
//!   [`Thresholds::spike_factor`] times the key's average over the windows before it, and at
//!   least a floor, and more than its busiest window ever (a key that works in regular
//!   bursts alerts the first time only), once the key has [`Thresholds::baseline_windows`]
//!   windows of history;
//! * **failed-authentication burst**: [`Thresholds::failed_auth_burst`] refusals naming one
//!   key (revoked, expired, from an address outside its allow-list) within a minute;
//! * **distant networks**: one key used from two different networks (IPv4 /16, IPv6 /32)
//!   within [`Thresholds::distant_within_secs`], as a copied key used alongside its owner.
//!
//! Each finding is reported once per window per key. Memory is bounded: at most
//! [`Thresholds::max_keys`] keys are followed (those idle longest are forgotten first).

use crate::clock::UnixTime;
use crate::ids::KeyId;
use crate::money::MicroUsd;
use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

/// When use counts as suspicious.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thresholds {
    /// Alert on addresses a key was never used from.
    pub new_address: bool,
    /// The most distinct addresses remembered per key.
    pub max_addresses: usize,
    /// Length of a counting window, in seconds.
    pub window_secs: i64,
    /// Windows of history the baseline averages (and needs before spikes are judged).
    pub baseline_windows: usize,
    /// How many times its baseline a window must reach to be a spike.
    pub spike_factor: u64,
    /// A window is a spike only with at least this many requests...
    pub spike_min_requests: u64,
    /// ...or this much spend.
    pub spike_min_cost: MicroUsd,
    /// Refused authentications naming one key within a minute that make a burst (0: off).
    pub failed_auth_burst: u32,
    /// Two networks within this many seconds are "at once" (0: off).
    pub distant_within_secs: i64,
    /// The most keys followed.
    pub max_keys: usize,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            new_address: true,
            max_addresses: 16,
            window_secs: 300,
            baseline_windows: 12,
            spike_factor: 10,
            spike_min_requests: 100,
            spike_min_cost: MicroUsd(5_000_000),
            failed_auth_burst: 20,
            distant_within_secs: 60,
            max_keys: 100_000,
        }
    }
}

/// Something that stands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anomaly {
    NewAddress { address: IpAddr, known: usize },
    RequestSpike { requests: u64, baseline: u64 },
    SpendSpike { cost: MicroUsd, baseline: MicroUsd },
    FailedAuthBurst { failures: u32, addresses: usize },
    DistantNetworks { first: IpAddr, second: IpAddr },
}

impl Anomaly {
    /// The finding's name in alerts and the audit log.
    pub fn kind(&self) -> &'static str {
        match self {
            Anomaly::NewAddress { .. } => "new_address",
            Anomaly::RequestSpike { .. } => "request_spike",
            Anomaly::SpendSpike { .. } => "spend_spike",
            Anomaly::FailedAuthBurst { .. } => "failed_auth_burst",
            Anomaly::DistantNetworks { .. } => "distant_networks",
        }
    }

    /// What happened, in a sentence.
    pub fn describe(&self) -> String {
        match self {
            Anomaly::NewAddress { address, known } => format!(
                "used from {address}, an address it was never used from (it was used from {known} before)"
            ),
            Anomaly::RequestSpike { requests, baseline } => format!(
                "{requests} requests in five minutes, against {baseline} usually"
            ),
            Anomaly::SpendSpike { cost, baseline } => format!(
                "${:.2} spent in five minutes, against ${:.2} usually",
                cost.0 as f64 / 1e6,
                baseline.0 as f64 / 1e6
            ),
            Anomaly::FailedAuthBurst { failures, addresses } => format!(
                "{failures} refused requests named it within a minute, from {addresses} addresses"
            ),
            Anomaly::DistantNetworks { first, second } => {
                format!("used from {first} and {second}, two distant networks, at once")
            }
        }
    }
}

#[derive(Debug, Default)]
struct Window {
    start: i64,
    requests: u64,
    cost: i64,
    spiked_requests: bool,
    spiked_cost: bool,
}

#[derive(Debug, Default)]
struct KeyActivity {
    addresses: Vec<IpAddr>,
    /// The current window last; older ones before it (empty windows included).
    windows: VecDeque<Window>,
    first_seen: i64,
    last_seen: i64,
    /// The busiest window ever seen (requests, spend): a key that regularly works in bursts
    /// (a nightly batch after an idle day) alerts the first time, not every time.
    peak_requests: u64,
    peak_cost: i64,
    /// The last network used and when.
    last_network: Option<(IpAddr, i64)>,
    /// The window distant networks were last reported in.
    distant_reported: Option<i64>,
    /// Times of the latest refused authentications (at most a burst's worth), and when a
    /// burst was last reported.
    failures: VecDeque<i64>,
    burst_reported: Option<i64>,
    failure_addresses: Vec<IpAddr>,
}

/// Follows keys' use; see the module documentation.
#[derive(Debug, Default)]
pub struct Watch {
    thresholds: Thresholds,
    keys: HashMap<KeyId, KeyActivity>,
}

impl Watch {
    pub fn new(thresholds: Thresholds) -> Watch {
        Watch {
            thresholds,
            keys: HashMap::new(),
        }
    }

    /// Keys followed now.
    pub fn keys(&self) -> usize {
        self.keys.len()
    }

    fn activity(&mut self, key: &KeyId, at: i64) -> &mut KeyActivity {
        if !self.keys.contains_key(key) && self.keys.len() >= self.thresholds.max_keys {
            self.forget_idlest();
        }
        self.keys.entry(key.clone()).or_insert_with(|| KeyActivity {
            first_seen: at,
            last_seen: at,
            ..KeyActivity::default()
        })
    }

    /// Forgets the half of the keys idle longest (exactly half, however many were last seen
    /// at the same second).
    fn forget_idlest(&mut self) {
        let mut seen: Vec<(i64, KeyId)> = self
            .keys
            .iter()
            .map(|(id, k)| (k.last_seen, id.clone()))
            .collect();
        seen.sort_unstable();
        for (_, id) in seen.iter().take(seen.len().div_ceil(2)) {
            self.keys.remove(id);
        }
    }

    /// A request made with `key` from `address` that cost `cost`.
    pub fn used(
        &mut self,
        key: &KeyId,
        address: Option<IpAddr>,
        cost: MicroUsd,
        at: UnixTime,
    ) -> Vec<Anomaly> {
        let t = self.thresholds.clone();
        let now = at.seconds();
        let activity = self.activity(key, now);
        activity.last_seen = activity.last_seen.max(now);
        let mut found = Vec::new();

        if let Some(address) = address {
            if !activity.addresses.contains(&address) {
                let known = activity.addresses.len();
                if known < t.max_addresses {
                    activity.addresses.push(address);
                    if t.new_address && known > 0 {
                        found.push(Anomaly::NewAddress { address, known });
                    }
                }
            }
            if t.distant_within_secs > 0 {
                if let Some((previous, when)) = activity.last_network {
                    let window = now.div_euclid(t.window_secs.max(1));
                    if now - when <= t.distant_within_secs
                        && distant(previous, address)
                        && activity.distant_reported != Some(window)
                    {
                        activity.distant_reported = Some(window);
                        found.push(Anomaly::DistantNetworks {
                            first: previous,
                            second: address,
                        });
                    }
                }
                activity.last_network = Some((address, now));
            }
        }

        // Windows: roll forward to the one holding `now` (idle windows count as empty).
        let span = t.window_secs.max(1);
        let start = now.div_euclid(span) * span;
        let current_start = activity.windows.back().map(|w| w.start);
        match current_start {
            Some(s) if s == start => {}
            Some(s) if s > start => {} // a late event: counted in the current window
            _ => {
                let mut next = current_start.map_or(start, |s| s + span);
                // At most the history kept, however long the key was idle.
                if start - next > span * t.baseline_windows as i64 {
                    activity.windows.clear();
                    next = start - span * t.baseline_windows as i64;
                }
                while next <= start {
                    activity.windows.push_back(Window {
                        start: next,
                        ..Window::default()
                    });
                    next += span;
                }
                while activity.windows.len() > t.baseline_windows + 1 {
                    activity.windows.pop_front();
                }
            }
        }
        let history = activity.windows.len().saturating_sub(1);
        let known_for = now - activity.first_seen;
        let judged = history >= t.baseline_windows && known_for >= span * t.baseline_windows as i64;
        let (requests_base, cost_base) = {
            let past = activity.windows.iter().take(history);
            let (r, c) = past.fold((0u64, 0i64), |(r, c), w| (r + w.requests, c + w.cost));
            let n = history.max(1) as u64;
            (r / n, c / n as i64)
        };
        let (peak_requests, peak_cost) = (activity.peak_requests, activity.peak_cost);
        if let Some(window) = activity.windows.back_mut() {
            window.requests += 1;
            window.cost = window.cost.saturating_add(cost.0);
            if judged
                && !window.spiked_requests
                && window.requests >= t.spike_min_requests
                && window.requests > t.spike_factor.saturating_mul(requests_base.max(1))
                && window.requests > peak_requests
            {
                window.spiked_requests = true;
                found.push(Anomaly::RequestSpike {
                    requests: window.requests,
                    baseline: requests_base,
                });
            }
            if judged
                && !window.spiked_cost
                && window.cost >= t.spike_min_cost.0
                && window.cost > (t.spike_factor as i64).saturating_mul(cost_base.max(1))
                && window.cost > peak_cost
            {
                window.spiked_cost = true;
                found.push(Anomaly::SpendSpike {
                    cost: MicroUsd(window.cost),
                    baseline: MicroUsd(cost_base),
                });
            }
            activity.peak_requests = activity.peak_requests.max(window.requests);
            activity.peak_cost = activity.peak_cost.max(window.cost);
        }
        found
    }

    /// A request naming `key` that was refused (revoked, expired, outside an allow-list).
    pub fn failed(&mut self, key: &KeyId, address: Option<IpAddr>, at: UnixTime) -> Vec<Anomaly> {
        let burst = self.thresholds.failed_auth_burst;
        if burst == 0 {
            return Vec::new();
        }
        let now = at.seconds();
        let activity = self.activity(key, now);
        activity.last_seen = activity.last_seen.max(now);
        // A sliding minute: the latest refusals, the oldest dropped once over a minute old.
        activity.failures.push_back(now);
        while activity.failures.front().is_some_and(|t| *t <= now - 60) {
            activity.failures.pop_front();
        }
        while activity.failures.len() > burst as usize {
            activity.failures.pop_front();
        }
        if activity.failures.len() == 1 {
            activity.failure_addresses.clear();
        }
        if let Some(address) = address {
            if !activity.failure_addresses.contains(&address)
                && activity.failure_addresses.len() < 64
            {
                activity.failure_addresses.push(address);
            }
        }
        let reported_lately = activity.burst_reported.is_some_and(|t| t > now - 60);
        if activity.failures.len() == burst as usize && !reported_lately {
            activity.burst_reported = Some(now);
            return vec![Anomaly::FailedAuthBurst {
                failures: burst,
                addresses: activity.failure_addresses.len(),
            }];
        }
        Vec::new()
    }
}

/// Whether two addresses are on different networks (IPv4 /16, IPv6 /32). An IPv4 and an IPv6
/// address are not compared (one dual-stack client has both).
fn distant(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a.octets()[..2] != b.octets()[..2],
        (IpAddr::V6(a), IpAddr::V6(b)) => a.segments()[..2] != b.segments()[..2],
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> KeyId {
        KeyId::from_trusted(format!("key_{n:020}"))
    }

    fn ip(text: &str) -> Option<IpAddr> {
        text.parse().ok()
    }

    fn kinds(found: &[Anomaly]) -> Vec<&'static str> {
        found.iter().map(Anomaly::kind).collect()
    }

    /// A replayed pattern: an hour of steady use from one address, then a spike and a new
    /// address; exactly the expected findings, each once.
    #[test]
    fn a_spike_and_a_new_address_after_steady_use_are_reported_once_each() {
        let mut watch = Watch::new(Thresholds::default());
        let k = key(1);
        let mut all = Vec::new();
        let start = 1_800_000_000; // a window boundary (a multiple of 300)
                                   // 13 windows of 10 requests at a cent each, from one address.
        for w in 0..13 {
            for i in 0..10 {
                let at = UnixTime(start + w * 300 + i * 20);
                all.extend(watch.used(&k, ip("10.1.2.3"), MicroUsd(10_000), at));
            }
        }
        assert_eq!(all, vec![], "steady use is not suspicious");
        // The next window: 150 requests (15 times the usual), the last ones from elsewhere
        // in the same network.
        let spike = start + 13 * 300;
        for i in 0..150 {
            let from = if i < 140 { "10.1.2.3" } else { "10.1.9.9" };
            all.extend(watch.used(&k, ip(from), MicroUsd(10_000), UnixTime(spike + i)));
        }
        assert_eq!(kinds(&all), vec!["request_spike", "new_address"]);
        assert_eq!(
            all[0],
            Anomaly::RequestSpike {
                requests: 101,
                baseline: 10
            }
        );
        assert_eq!(
            all[1],
            Anomaly::NewAddress {
                address: "10.1.9.9".parse().unwrap(),
                known: 1
            }
        );
    }

    #[test]
    fn a_key_that_works_in_regular_bursts_alerts_the_first_time_only() {
        let mut watch = Watch::new(Thresholds::default());
        let k = key(9);
        let mut all = Vec::new();
        // An hour of light use, then two nights of a 300-request batch after idle hours.
        let start = 1_800_000_000;
        for w in 0..13 {
            all.extend(watch.used(&k, ip("10.9.9.9"), MicroUsd(1), UnixTime(start + w * 300)));
        }
        for night in 1..=2 {
            let batch = start + night * 86_400;
            for i in 0..300 {
                all.extend(watch.used(&k, ip("10.9.9.9"), MicroUsd(1), UnixTime(batch + i / 2)));
            }
        }
        assert_eq!(kinds(&all), vec!["request_spike"], "{all:?}");
    }

    #[test]
    fn spend_spikes_need_history_and_a_floor() {
        let t = Thresholds {
            spike_min_cost: MicroUsd(1_000_000),
            ..Thresholds::default()
        };
        let mut watch = Watch::new(t);
        let k = key(2);
        // A new key spending at once has no baseline: not judged.
        let mut all = Vec::new();
        for i in 0..50 {
            all.extend(watch.used(&k, ip("10.0.0.1"), MicroUsd(10_000), UnixTime(i)));
        }
        assert_eq!(all, vec![]);
        // After an hour of a cent a window, $2 in one window is a spend spike (once).
        for w in 1..=12 {
            all.extend(watch.used(&k, ip("10.0.0.1"), MicroUsd(10_000), UnixTime(w * 300)));
        }
        for i in 0..4 {
            all.extend(watch.used(
                &k,
                ip("10.0.0.1"),
                MicroUsd(500_000),
                UnixTime(13 * 300 + i),
            ));
        }
        assert_eq!(kinds(&all), vec!["spend_spike"]);
    }

    #[test]
    fn a_burst_of_refusals_naming_one_key_is_reported_once_a_minute() {
        let mut watch = Watch::new(Thresholds::default());
        let k = key(3);
        let mut all = Vec::new();
        for i in 0..45 {
            let from = format!("192.0.2.{}", i % 5);
            all.extend(watch.failed(&k, ip(&from), UnixTime(600 + i)));
        }
        assert_eq!(
            all,
            vec![Anomaly::FailedAuthBurst {
                failures: 20,
                addresses: 5
            }]
        );
        // Another key's refusals are counted apart; 19 do not make a burst.
        for i in 0..19 {
            assert_eq!(
                watch.failed(&key(4), ip("192.0.2.1"), UnixTime(600 + i)),
                vec![]
            );
        }
    }

    #[test]
    fn two_distant_networks_at_once_are_reported_but_not_neighbours_or_v4_and_v6() {
        let mut watch = Watch::new(Thresholds {
            new_address: false,
            ..Thresholds::default()
        });
        let k = key(5);
        assert_eq!(
            watch.used(&k, ip("203.0.113.5"), MicroUsd(0), UnixTime(1_000)),
            vec![]
        );
        assert_eq!(
            watch.used(&k, ip("203.0.7.9"), MicroUsd(0), UnixTime(1_010)),
            vec![]
        );
        assert_eq!(
            watch.used(&k, ip("2001:db8::1"), MicroUsd(0), UnixTime(1_020)),
            vec![]
        );
        assert_eq!(
            watch.used(&k, ip("203.0.113.5"), MicroUsd(0), UnixTime(1_030)),
            vec![]
        );
        let far = watch.used(&k, ip("198.51.100.7"), MicroUsd(0), UnixTime(1_040));
        assert_eq!(kinds(&far), vec!["distant_networks"]);
        // Once per window; and far apart in time is not "at once".
        assert_eq!(
            watch.used(&k, ip("203.0.113.5"), MicroUsd(0), UnixTime(1_045)),
            vec![]
        );
        assert_eq!(
            watch.used(&k, ip("198.51.100.7"), MicroUsd(0), UnixTime(5_000)),
            vec![]
        );
    }

    #[test]
    fn a_widely_used_key_stops_alerting_new_addresses_and_memory_stays_bounded() {
        let mut watch = Watch::new(Thresholds {
            max_keys: 100,
            distant_within_secs: 0,
            ..Thresholds::default()
        });
        let k = key(6);
        let mut new = 0;
        for i in 0..100u8 {
            let from = format!("10.0.{i}.1");
            new += watch
                .used(&k, ip(&from), MicroUsd(0), UnixTime(i64::from(i)))
                .len();
        }
        assert_eq!(
            new, 15,
            "the first address is learned; 15 more alert; then none"
        );
        for n in 0..250u32 {
            let id = KeyId::from_trusted(format!("key_{n:020}"));
            watch.used(&id, None, MicroUsd(0), UnixTime(1_000 + i64::from(n)));
        }
        assert!(watch.keys() <= 100, "{} keys followed", watch.keys());
        // Keys all last seen in the same second are still forgotten, half at a time.
        for n in 0..250u32 {
            let id = KeyId::from_trusted(format!("key_{:020}", 1_000 + n));
            watch.used(&id, None, MicroUsd(0), UnixTime(9_000));
        }
        assert!(watch.keys() <= 100, "{} keys followed", watch.keys());
    }
}
