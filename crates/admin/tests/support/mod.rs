//! The admin API's test harness: a real gateway (port 0, a fresh SQLite file, Tollgate's demo
//! provider as the fake upstream) with the first run's admin key, and helpers to call it.

#![allow(dead_code)] // each test binary uses its own share of the helpers

use reqwest::StatusCode;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_control::{Control, KeyOwnerRequest, NewKey};
use tollgate_core::routing::{ModelPattern, RouteTable};
use tollgate_core::{KeyFormat, KeyHasher, ManualClock, Permissions, ServerSecret, UnixTime};
use tollgate_gateway::mock::{MockProvider, MockSettings};
use tollgate_gateway::{Gateway, GatewaySettings, ProviderKey, ProviderSettings, RunningGateway};
use tollgate_store::{Actor, Store, UsageEvent};

pub const START: UnixTime = UnixTime(1_800_000_000);

/// A usage result's bucket start, project, key and model, and its requests, input, output and
/// cached input tokens.
pub type Group = (i64, String, String, String);
pub type Sums = (i64, i64, i64, i64);

pub struct App {
    pub _dir: tempfile::TempDir,
    /// The PostgreSQL database, when the suite runs on PostgreSQL.
    pub _scratch: Option<tollgate_store::scratch::ScratchDatabase>,
    pub _mock: MockProvider,
    pub control: Control,
    pub store: Store,
    pub clock: ManualClock,
    pub _gateway: RunningGateway,
    pub base: String,
    pub http: reqwest::Client,
    /// The owner's admin key the first run made.
    pub admin: String,
    pub default_project: String,
}

pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
}

impl App {
    pub async fn spawn() -> App {
        App::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut GatewaySettings)) -> App {
        let dir = tempfile::tempdir().unwrap();
        // SQLite, or PostgreSQL with TOLLGATE_TEST_STORE=postgres.
        let (store, _, scratch) = tollgate_store::scratch::test_store(dir.path())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut secret = vec![0u8; 32];
        tollgate_core::ids::fill_random(&mut secret);
        let hasher = KeyHasher::new(ServerSecret::new(secret).unwrap());
        let clock = ManualClock::at(START);
        let control = Control::new(
            store.clone(),
            hasher.clone(),
            KeyFormat::default(),
            Arc::new(clock.clone()),
        );
        let first = control
            .bootstrap("owner@example.com")
            .await
            .unwrap()
            .unwrap();
        let mock = MockProvider::start(MockSettings::default()).await.unwrap();
        let mut settings = GatewaySettings::new("127.0.0.1:0".parse().unwrap());
        settings.providers = vec![ProviderSettings {
            name: "mock".into(),
            base_url: mock.base_url(),
            api_key: Some(ProviderKey::new("sk-upstream-0123456789".into())),
            headers: vec![],
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(2),
            ca_file: None,
            project_keys: Vec::new(),
        }];
        let routes = ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"]
            .iter()
            .map(|m| (ModelPattern::new(m), 0))
            .collect();
        settings.routes = RouteTable::new(1, routes, HashMap::new());
        settings.metering.linger = Duration::from_millis(5);
        adjust(&mut settings);
        let gateway = Gateway {
            settings,
            store: store.clone(),
            hasher,
            format: KeyFormat::default(),
            clock: Arc::new(clock.clone()),
            admin: Some(tollgate_admin::router(control.clone())),
            console: None,
        }
        .start()
        .await
        .unwrap();
        App {
            base: format!("http://{}", gateway.addr()),
            _dir: dir,
            _scratch: scratch,
            _mock: mock,
            control,
            store,
            clock,
            _gateway: gateway,
            http: reqwest::Client::new(),
            admin: first.admin_key.expose().to_owned(),
            default_project: first.project.id.to_string(),
        }
    }

    pub async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply { status, body }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call("GET", path, Some(&self.admin), None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call("POST", path, Some(&self.admin), Some(body)).await
    }

    pub async fn key(
        &self,
        name: &str,
        owner: KeyOwnerRequest,
        permissions: Permissions,
    ) -> String {
        self.control
            .create_key(
                &Actor::cli("tester"),
                NewKey {
                    name: name.into(),
                    owner,
                    permissions,
                    expires_in: None,
                    allowed_ips: Default::default(),
                    allowed_models: Default::default(),
                    limits: Default::default(),
                    budget: None,
                },
            )
            .await
            .unwrap()
            .secret
            .expose()
            .to_owned()
    }

    /// Waits until `count` usage events are stored (the writer batches them off the request
    /// path); returns them.
    pub async fn usage_events(&self, count: usize) -> Vec<UsageEvent> {
        let org = self.control.organization().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let events = self.store.recent_usage(&org.id, 10_000).await.unwrap();
            if events.len() >= count {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {count} events stored",
                events.len()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Reply {
    pub fn ok(&self) -> &Value {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        &self.body
    }

    /// An error in OpenAI's envelope with this status, naming `param` when given.
    pub fn error(&self, status: u16, param: Option<&str>) -> &str {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        let error = &self.body["error"];
        assert_eq!(error["type"], "invalid_request_error", "{}", self.body);
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(error.get("code").is_some() && error.get("param").is_some());
        if let Some(param) = param {
            assert_eq!(error["param"], param, "{}", self.body);
        }
        error["message"].as_str().unwrap_or("")
    }
}

pub fn ids(list: &Value) -> Vec<String> {
    list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect()
}
