//! The shared test harness: a real gateway on port 0 over a fresh SQLite file, with the
//! control plane beside it, a controllable clock, and Tollgate's demo provider as the in-process
//! fake upstream.

#![allow(dead_code)] // each test binary uses a different part of the harness

use reqwest::StatusCode;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_control::{Control, CreatedKey, KeyOwnerRequest, NewKey};
use tollgate_core::routing::{ModelPattern, RouteTable};
use tollgate_core::{KeyFormat, KeyHasher, ManualClock, Permissions, ServerSecret, UnixTime};
use tollgate_gateway::mock::{MockProvider, MockSettings};
use tollgate_gateway::{Gateway, GatewaySettings, ProviderKey, ProviderSettings, RunningGateway};
use tollgate_store::{Actor, DatabaseLocation, Store, UsageEvent};

/// The provider key the fake upstream must receive (never the client's key).
pub const PROVIDER_KEY: &str = "sk-upstream-provider-secret-0123456789";

pub const START: UnixTime = UnixTime(1_800_000_000);

/// How the gateway reaches the fake provider: plain HTTP (its own HTTP/1.1 client) or HTTPS
/// (reqwest, the production default), through a TLS front with a certificate from a CA of the
/// test's own, trusted through the provider's `ca_file`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Http,
    Https,
}

/// A TLS-terminating front for the fake provider on a port of its own.
pub struct TlsFront {
    pub base_url: String,
    pub ca_file: std::path::PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TlsFront {
    /// A CA and a certificate it signs for 127.0.0.1, the CA written to `dir`; connections
    /// are decrypted and relayed to `target`.
    pub async fn start(target: std::net::SocketAddr, dir: &std::path::Path) -> TlsFront {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Tollgate test CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()])
            .unwrap()
            .signed_by(&leaf_key, &ca, &ca_key)
            .unwrap();
        let ca_file = dir.join("provider-ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(conn).await else {
                        return;
                    };
                    let Ok(mut plain) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
            }
        });
        TlsFront {
            base_url: format!("https://127.0.0.1:{port}/v1"),
            ca_file,
            task,
        }
    }
}

/// A response read off the wire by [`TestApp::raw`].
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// A running gateway on port 0 over a fresh SQLite file, with the control plane beside it.
pub struct TestApp {
    pub mock: MockProvider,
    pub _tls: Option<TlsFront>,
    pub _dir: tempfile::TempDir,
    /// The PostgreSQL database the store is in, when the suite runs on PostgreSQL.
    pub _scratch: Option<tollgate_store::scratch::ScratchDatabase>,
    pub location: DatabaseLocation,
    pub hasher: KeyHasher,
    pub control: Control,
    pub store: Store,
    pub clock: ManualClock,
    pub gateway: Option<RunningGateway>,
    pub base: String,
    pub http: reqwest::Client,
    pub org_id: String,
    pub project_id: String,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(adjust: impl FnOnce(&mut GatewaySettings)) -> TestApp {
        TestApp::spawn_over(Transport::Http, adjust).await
    }

    /// A gateway whose first provider (the fake) is reached over `transport`.
    pub async fn spawn_over(
        transport: Transport,
        adjust: impl FnOnce(&mut GatewaySettings),
    ) -> TestApp {
        TestApp::spawn_after_first_run(transport, |settings, _| adjust(settings)).await
    }

    /// A gateway whose settings are adjusted knowing what the first run made (its project).
    pub async fn spawn_after_first_run(
        transport: Transport,
        adjust: impl FnOnce(&mut GatewaySettings, &tollgate_control::FirstRun),
    ) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        // The suite runs on SQLite, or on PostgreSQL with TOLLGATE_TEST_STORE=postgres.
        let (store, location, scratch) = tollgate_store::scratch::test_store(dir.path())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        TestApp::spawn_on(dir, store, location, scratch, transport, adjust).await
    }

    /// A gateway over a store on PostgreSQL, whatever the suite runs on.
    pub async fn spawn_on_postgres(adjust: impl FnOnce(&mut GatewaySettings)) -> TestApp {
        let scratch = tollgate_store::scratch::ScratchDatabase::create()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let dir = tempfile::tempdir().unwrap();
        let location = scratch.location().clone();
        let store = Store::open(&location).await.unwrap();
        TestApp::spawn_on(
            dir,
            store,
            location,
            Some(scratch),
            Transport::Http,
            |s, _| adjust(s),
        )
        .await
    }

    async fn spawn_on(
        dir: tempfile::TempDir,
        store: Store,
        location: DatabaseLocation,
        scratch: Option<tollgate_store::scratch::ScratchDatabase>,
        transport: Transport,
        adjust: impl FnOnce(&mut GatewaySettings, &tollgate_control::FirstRun),
    ) -> TestApp {
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
        let mock = MockProvider::start(MockSettings {
            token_delay: Duration::from_millis(5),
            ..MockSettings::default()
        })
        .await
        .unwrap();
        let mut settings = GatewaySettings::new("127.0.0.1:0".parse().unwrap());
        let provider = |name: &str, base_url: String| ProviderSettings {
            name: name.into(),
            base_url,
            api_key: Some(ProviderKey::new(PROVIDER_KEY.into())),
            headers: vec![("x-provider-header".into(), "from-config".into())],
            timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            ca_file: None,
            project_keys: Vec::new(),
        };
        let mut fake = provider("mock", mock.base_url());
        let mut tls = None;
        if transport == Transport::Https {
            let front = TlsFront::start(mock.addr(), dir.path()).await;
            fake.base_url = front.base_url.clone();
            fake.ca_file = Some(front.ca_file.clone());
            tls = Some(front);
        }
        settings.providers = vec![fake, provider("dead", "http://127.0.0.1:1/v1".into())];
        let routes = [
            "gpt-4o-mini",
            "gpt-4o",
            "o4-mini",
            "text-embedding-3-small",
            "unpriced-model",
            "gpt-4.1*",
        ]
        .iter()
        .map(|m| (ModelPattern::new(m), 0))
        .chain([(ModelPattern::new("o3-mini"), 1)])
        .collect();
        settings.routes = RouteTable::new(
            2,
            routes,
            HashMap::from([("fast".to_owned(), "gpt-4o-mini".to_owned())]),
        );
        settings.follow_interval = Duration::from_millis(50);
        settings.last_used_flush = Duration::from_millis(100);
        adjust(&mut settings, &first);
        let gateway = Gateway {
            settings,
            store: store.clone(),
            hasher: hasher.clone(),
            format: KeyFormat::default(),
            clock: Arc::new(clock.clone()),
            admin: None,
            console: None,
        }
        .start()
        .await
        .unwrap();
        let base = format!("http://{}", gateway.addr());
        TestApp {
            mock,
            _tls: tls,
            _dir: dir,
            _scratch: scratch,
            location,
            hasher,
            control,
            store,
            clock,
            gateway: Some(gateway),
            base,
            http: reqwest::Client::new(),
            org_id: first.organization.id.to_string(),
            project_id: first.project.id.to_string(),
        }
    }

    /// Another gateway (a replica) on this one's database, secret and provider, with its own
    /// store connections, counters and key table; `adjust` changes its settings.
    pub async fn replica(&self, adjust: impl FnOnce(&mut GatewaySettings)) -> RunningGateway {
        self.replica_at(&self.location.clone(), adjust).await
    }

    /// A replica reaching this one's database at `location` (the same database, by another
    /// way: through a relay that can be cut).
    pub async fn replica_at(
        &self,
        location: &DatabaseLocation,
        adjust: impl FnOnce(&mut GatewaySettings),
    ) -> RunningGateway {
        let mut settings = GatewaySettings::new("127.0.0.1:0".parse().unwrap());
        settings.providers = vec![ProviderSettings {
            name: "mock".into(),
            base_url: self.mock.base_url(),
            api_key: Some(ProviderKey::new(PROVIDER_KEY.into())),
            headers: Vec::new(),
            timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            ca_file: None,
            project_keys: Vec::new(),
        }];
        settings.routes = RouteTable::new(
            1,
            [
                (ModelPattern::new("gpt-4o-mini"), 0),
                (ModelPattern::new("gpt-4o"), 0),
            ]
            .into_iter()
            .collect(),
            HashMap::new(),
        );
        settings.follow_interval = Duration::from_millis(50);
        adjust(&mut settings);
        Gateway {
            settings,
            store: Store::open(location).await.unwrap(),
            hasher: self.hasher.clone(),
            format: KeyFormat::default(),
            clock: Arc::new(self.clock.clone()),
            admin: None,
            console: None,
        }
        .start()
        .await
        .unwrap()
    }

    pub fn actor() -> Actor {
        Actor::cli("tester")
    }

    pub async fn create_key(
        &self,
        name: &str,
        owner: KeyOwnerRequest,
        permissions: Permissions,
    ) -> CreatedKey {
        let created = self
            .control
            .create_key(
                &Self::actor(),
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
            .unwrap();
        created
    }

    /// A project key usable only from `ranges`.
    pub async fn key_allowed_from(&self, ranges: &[&str]) -> CreatedKey {
        let list = tollgate_core::network::IpAllowList::parse(
            &ranges.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        self.key_with(list, Default::default()).await
    }

    /// A project key that may use only `models`.
    pub async fn key_for_models(&self, models: &[&str]) -> CreatedKey {
        let list = tollgate_core::routing::ModelAllowList::new(
            &models.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
        );
        self.key_with(Default::default(), list).await
    }

    async fn key_with(
        &self,
        allowed_ips: tollgate_core::network::IpAllowList,
        allowed_models: tollgate_core::routing::ModelAllowList,
    ) -> CreatedKey {
        let request = NewKey {
            name: "restricted".into(),
            owner: KeyOwnerRequest::Project(None),
            permissions: Permissions::All,
            expires_in: None,
            allowed_ips,
            allowed_models,
            limits: Default::default(),
            budget: None,
        };
        let created = self
            .control
            .create_key(&Self::actor(), request)
            .await
            .unwrap();
        created
    }

    /// Revokes a key and applies the change on this server before returning.
    pub async fn revoke(&self, id: &tollgate_core::KeyId) {
        self.control
            .revoke_key(&Self::actor(), id.as_str())
            .await
            .unwrap();
        self.gateway
            .as_ref()
            .unwrap()
            .keys()
            .catch_up(&self.store)
            .await
            .unwrap();
    }

    pub async fn project_key(&self) -> CreatedKey {
        self.create_key("app", KeyOwnerRequest::Project(None), Permissions::All)
            .await
    }

    pub async fn get(&self, path: &str, bearer: Option<&str>, headers: &[(&str, &str)]) -> Reply {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.unwrap();
        Reply::read(response).await
    }

    pub async fn models(&self, key: &str) -> Reply {
        self.get("/v1/models", Some(key), &[]).await
    }
}

impl Reply {
    pub async fn read(response: reqwest::Response) -> Reply {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.json().await.unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
        }
    }

    pub fn assert_error(&self, status: u16, code: Option<&str>, message_part: &str) {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        let error = &self.body["error"];
        assert_eq!(
            error.as_object().map(|o| o.len()),
            Some(4),
            "envelope has message, type, param, code: {}",
            self.body
        );
        let expected_type = if status >= 500 {
            "server_error"
        } else {
            "invalid_request_error"
        };
        assert_eq!(error["type"], expected_type);
        assert_eq!(error["code"].as_str(), code);
        assert!(error["param"].is_null());
        let message = error["message"].as_str().unwrap();
        assert!(
            message.contains(message_part),
            "{message:?} should contain {message_part:?}"
        );
    }
}

impl TestApp {
    pub async fn post(
        &self,
        path: &str,
        key: &str,
        body: Value,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .json(&body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Reply::read(request.send().await.unwrap()).await
    }

    pub fn clock_now(&self) -> UnixTime {
        use tollgate_core::Clock;
        self.clock.now()
    }

    /// Sends a JSON POST and returns the response unread (for streams).
    pub async fn post_raw(&self, path: &str, key: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Runs a change to rate limits or budgets and waits until the gateway has reloaded them.
    pub async fn limits_change<T>(&self, change: impl std::future::Future<Output = T>) -> T {
        let limits = self.gateway.as_ref().unwrap().limits().clone();
        let before = limits.reloads();
        let out = change.await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while limits.reloads() <= before {
            assert!(
                Instant::now() < deadline,
                "the gateway never reloaded its limits"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        out
    }

    /// Sends `method target` exactly as written (no URL parsing or normalization on the way),
    /// with a bearer key and `body`, and reads the answer to the end of the connection.
    pub async fn raw(&self, method: &str, target: &str, key: Option<&str>, body: &str) -> RawReply {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.gateway.as_ref().unwrap().addr();
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut request =
            format!("{method} {target} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
        if let Some(key) = key {
            request.push_str(&format!("authorization: Bearer {key}\r\n"));
        }
        if !body.is_empty() || method == "POST" {
            request.push_str(&format!(
                "content-type: application/json\r\ncontent-length: {}\r\n",
                body.len()
            ));
        }
        request.push_str("\r\n");
        request.push_str(body);
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let read =
            tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "no answer to {method} {target} within 10 s");
        let text = String::from_utf8_lossy(&answer).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        RawReply {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        }
    }

    /// Waits until `count` usage events are stored; returns them newest first.
    pub async fn usage_events(&self, count: usize) -> Vec<UsageEvent> {
        let org = self.control.organization().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let events = self.store.recent_usage(&org.id, 1_000).await.unwrap();
            if events.len() >= count {
                return events;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {count} usage events were stored",
                events.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
