//! What every request can reach, behind one `Arc`. A leaf: it names the parts the gateway is
//! made of, and imports nothing from the layers that use it (`serve`, `request`).

use crate::admission::Limits;
use crate::background::catalog::Catalog;
use crate::background::denials::IpDenials;
use crate::background::key_lookup::KeyLookups;
use crate::background::key_table::KeyTable;
use crate::background::last_used::LastUsed;
use crate::background::metering::UsageSink;
use crate::body_budget::BodyBudget;
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::settings::GatewaySettings;
use crate::upstream::Upstream;
use std::sync::Arc;
use tollgate_core::{Clock, KeyFormat, KeyHasher, UnixTime};
use tollgate_store::Store;

/// The gateway's shared state. Handlers clone it, so a clone costs one reference count, not
/// one per field.
#[derive(Clone, Debug)]
pub(crate) struct AppState(pub(crate) Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub keys: Arc<KeyTable>,
    pub key_lookups: Arc<KeyLookups>,
    pub hasher: KeyHasher,
    pub format: KeyFormat,
    pub clock: Arc<dyn Clock>,
    pub last_used: Arc<LastUsed>,
    pub settings: Arc<GatewaySettings>,
    pub started_at: UnixTime,
    pub catalog: Arc<Catalog>,
    pub upstreams: Arc<Vec<Upstream>>,
    pub usage: UsageSink,
    pub store: Store,
    pub ip_denials: Arc<IpDenials>,
    pub limits: Arc<Limits>,
    pub body_budget: Arc<BodyBudget>,
    pub ledger: Arc<Ledger>,
    pub metrics: Arc<Metrics>,
    /// The keys leak reports from GitHub are signed with, as last fetched.
    pub published_keys: Arc<crate::published_keys::PublishedKeys>,
    /// Where requests are handed to the suspicious-use detector.
    pub anomalies: crate::background::anomalies::Observer,
    /// Client tokens this server has seen, and the cap on looking up new ones.
    pub client_tokens: Arc<crate::background::client_tokens::ClientTokens>,
    /// Which browser origins live client tokens name, remembered for CORS preflights.
    pub live_origins: Arc<crate::live_origins::LiveOrigins>,
    /// Turns `true` when the server begins to stop: what outlives a request (a Realtime
    /// session) ends itself then.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// Realtime sessions open: a stopping server waits for them (they end themselves).
    pub sessions: Arc<Sessions>,
    /// Client connections open (kept by the accept loop).
    pub connections_open: Arc<std::sync::atomic::AtomicUsize>,
}

/// One open client connection, counted (in `connections_open`) until it is dropped: by the
/// accept loop for each connection, and by a Realtime session for the connection it took over
/// (hyper lets a connection go once it is upgraded).
#[derive(Debug)]
pub(crate) struct Counted(Arc<std::sync::atomic::AtomicUsize>);

impl Counted {
    pub(crate) fn new(open: Arc<std::sync::atomic::AtomicUsize>) -> Counted {
        open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Counted(open)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The Realtime sessions open on this server, counted so that a stopping server can wait for
/// them: hyper lets go of a connection once it is upgraded, so its graceful shutdown does not.
#[derive(Debug)]
pub(crate) struct Sessions {
    open: tokio::sync::watch::Sender<usize>,
}

impl Default for Sessions {
    fn default() -> Sessions {
        Sessions {
            open: tokio::sync::watch::channel(0).0,
        }
    }
}

/// One open session, counted until it is dropped.
#[derive(Debug)]
pub(crate) struct SessionOpen(Arc<Sessions>);

impl Sessions {
    pub(crate) fn open(self: &Arc<Self>) -> SessionOpen {
        self.open.send_modify(|n| *n += 1);
        SessionOpen(self.clone())
    }

    /// Returns once no session is open.
    pub(crate) async fn all_ended(&self) {
        let _ = self.open.subscribe().wait_for(|n| *n == 0).await;
    }
}

impl Drop for SessionOpen {
    fn drop(&mut self) {
        self.0.open.send_modify(|n| *n = n.saturating_sub(1));
    }
}
