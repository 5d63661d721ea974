//! The live routing table: configured routes, plus the models each route-less provider lists,
//! refreshed in the background.

use crate::upstream::Upstream;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::watch;
use tollgate_core::routing::RouteTable;

#[derive(Debug)]
pub struct Catalog {
    table: RwLock<Arc<RouteTable>>,
}

impl Catalog {
    pub fn new(table: RouteTable) -> Catalog {
        Catalog {
            table: RwLock::new(Arc::new(table)),
        }
    }

    pub fn routes(&self) -> Arc<RouteTable> {
        match self.table.read() {
            Ok(t) => t.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Asks every route-less provider for its models and updates the table.
    pub async fn refresh(&self, upstreams: &[Upstream]) {
        for (index, upstream) in upstreams.iter().enumerate() {
            if self.routes().has_routes(index) {
                continue;
            }
            match upstream.list_models().await {
                Ok(models) => {
                    tracing::info!(provider = %upstream.settings.name, models = models.len(), "refreshed the provider's models");
                    let mut table = (*self.routes()).clone();
                    table.set_discovered(index, models);
                    match self.table.write() {
                        Ok(mut t) => *t = Arc::new(table),
                        Err(poisoned) => *poisoned.into_inner() = Arc::new(table),
                    }
                }
                Err(err) => {
                    tracing::warn!(provider = %upstream.settings.name, error = %err, "could not list the provider's models; keeping the previous list")
                }
            }
        }
    }

    pub async fn run(
        self: Arc<Self>,
        upstreams: Arc<Vec<Upstream>>,
        every: Duration,
        mut stop: watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => self.refresh(&upstreams).await,
                _ = stop.changed() => return,
            }
        }
    }
}
