//! The console over a real gateway (port 0, a fresh SQLite file), as a browser speaks to it:
//! headers, cookies, sessions that rotate and end, anti-forgery tokens, roles, redirects that
//! stay on the site, and a secret that is shown once.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

use reqwest::header::{HeaderMap, SET_COOKIE};
use reqwest::{redirect, StatusCode};
use std::sync::Arc;
use tollgate_control::Control;
use tollgate_core::network::Cidr;
use tollgate_core::{KeyFormat, KeyHasher, ManualClock, ServerSecret, UnixTime};
use tollgate_gateway::{Gateway, GatewaySettings, RunningGateway};
use tollgate_store::{Actor, DatabaseLocation, Role, Store};

struct App {
    _dir: tempfile::TempDir,
    _gateway: RunningGateway,
    control: Control,
    store: Store,
    base: String,
    http: reqwest::Client,
    password: String,
}

struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    /// The session token a `Set-Cookie` gave, if any ("" when it ended the session).
    fn session(&self) -> Option<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .filter_map(|c| c.to_str().ok())
            .find_map(|c| c.strip_prefix("tollgate_session="))
            .map(|rest| rest.split(';').next().unwrap_or("").to_owned())
    }

    fn cookie_line(&self) -> String {
        self.headers
            .get(SET_COOKIE)
            .map(|c| c.to_str().unwrap().to_owned())
            .unwrap_or_default()
    }

    fn location(&self) -> &str {
        self.headers
            .get("location")
            .map_or("", |l| l.to_str().unwrap())
    }

    /// The anti-forgery token in the page's first form.
    fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf\" value=\"").expect("a form") + 19;
        self.body[at..at + 64].to_owned()
    }
}

impl App {
    async fn spawn(trusted_proxy: bool) -> App {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&DatabaseLocation::Sqlite(dir.path().join("tollgate.db")))
            .await
            .unwrap();
        let mut secret = vec![0u8; 32];
        tollgate_core::ids::fill_random(&mut secret);
        let hasher = KeyHasher::new(ServerSecret::new(secret).unwrap());
        let clock = ManualClock::at(UnixTime(1_800_000_000));
        let control = Control::new(
            store.clone(),
            hasher.clone(),
            KeyFormat::default(),
            Arc::new(clock.clone()),
        );
        // Set up with capitals: the address is kept lower-cased and found however typed.
        let first = control
            .bootstrap("Owner@Example.com")
            .await
            .unwrap()
            .unwrap();
        let mut settings = GatewaySettings::new("127.0.0.1:0".parse().unwrap());
        if trusted_proxy {
            settings.trusted_proxies = vec![Cidr::parse("127.0.0.1/32").unwrap()];
        }
        let gateway = Gateway {
            settings,
            store: store.clone(),
            hasher,
            format: KeyFormat::default(),
            clock: Arc::new(clock),
            admin: None,
            console: Some(tollgate_console::router(control.clone())),
        }
        .start()
        .await
        .unwrap();
        App {
            base: format!("http://{}", gateway.addr()),
            _dir: dir,
            _gateway: gateway,
            control,
            store,
            http: reqwest::Client::builder()
                .redirect(redirect::Policy::none())
                .build()
                .unwrap(),
            password: first.owner_password,
        }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Page {
        let response = request.send().await.unwrap();
        Page {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.text().await.unwrap(),
        }
    }

    async fn get(&self, path: &str, session: Option<&str>) -> Page {
        let mut request = self.http.get(format!("{}{path}", self.base));
        if let Some(s) = session {
            request = request.header("cookie", format!("tollgate_session={s}"));
        }
        self.send(request).await
    }

    async fn post(&self, path: &str, session: Option<&str>, form: &[(&str, &str)]) -> Page {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("origin", &self.base)
            .form(form);
        if let Some(s) = session {
            request = request.header("cookie", format!("tollgate_session={s}"));
        }
        self.send(request).await
    }

    async fn sign_in(&self, email: &str, password: &str) -> String {
        let page = self
            .post(
                "/console/login",
                None,
                &[("email", email), ("password", password)],
            )
            .await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        page.session().expect("a session cookie")
    }
}

#[tokio::test]
async fn pages_carry_strict_headers_and_sessions_strict_cookies() {
    let app = App::spawn(false).await;
    let page = app.get("/console/login", None).await;
    assert_eq!(page.status, StatusCode::OK);
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    assert_eq!(page.headers["x-frame-options"], "DENY");
    assert_eq!(page.headers["referrer-policy"], "same-origin");
    assert_eq!(page.headers["cache-control"], "no-store");
    assert!(!page.body.contains("<script>"), "no inline script");
    assert!(!page.body.contains("style="), "no inline style");
    // A console page without a session sends the browser to sign in, and back afterwards.
    let keys = app.get("/console/api-keys?project=x", None).await;
    assert_eq!(keys.status, StatusCode::SEE_OTHER);
    assert_eq!(
        keys.location(),
        "/console/login?next=%2Fconsole%2Fapi-keys%3Fproject%3Dx"
    );
    let signed = app
        .post(
            "/console/login",
            None,
            &[
                ("email", "Owner@Example.com"),
                ("password", &app.password),
                ("next", "/console/usage"),
            ],
        )
        .await;
    assert_eq!(signed.location(), "/console/usage");
    let cookie = signed.cookie_line();
    for part in [
        "HttpOnly",
        "SameSite=Lax",
        "Path=/console",
        "Max-Age=604800",
    ] {
        assert!(cookie.contains(part), "{cookie}");
    }
    assert!(
        !cookie.contains("Secure"),
        "plain HTTP from a client: {cookie}"
    );
    // An X-Forwarded-Proto from a peer that is not a trusted proxy changes nothing.
    let spoofed = app
        .send(
            app.http
                .post(format!("{}/console/login", app.base))
                .header("x-forwarded-proto", "https")
                .form(&[
                    ("email", "owner@example.com"),
                    ("password", app.password.as_str()),
                ]),
        )
        .await;
    assert!(!spoofed.cookie_line().contains("Secure"));
    // Only this site's pages are landing places.
    for next in [
        "//evil.example/x",
        "https://evil.example",
        "/console/login",
        "/v1/models",
        "/console/\\evil",
    ] {
        let page = app
            .post(
                "/console/login",
                None,
                &[
                    ("email", "owner@example.com"),
                    ("password", &app.password),
                    ("next", next),
                ],
            )
            .await;
        assert_eq!(page.location(), "/console/api-keys", "next={next}");
    }
}

#[tokio::test]
async fn behind_a_trusted_tls_proxy_the_cookie_is_secure() {
    let app = App::spawn(true).await;
    let page = app
        .send(
            app.http
                .post(format!("{}/console/login", app.base))
                .header("x-forwarded-proto", "https")
                .form(&[
                    ("email", "owner@example.com"),
                    ("password", app.password.as_str()),
                ]),
        )
        .await;
    assert!(
        page.cookie_line().contains("; Secure"),
        "{}",
        page.cookie_line()
    );
}

#[tokio::test]
async fn sessions_rotate_end_and_follow_the_member_s_role() {
    let app = App::spawn(false).await;
    let first = app.sign_in("owner@example.com", &app.password).await;
    let second = app.sign_in("owner@example.com", &app.password).await;
    assert_ne!(first, second, "every sign-in is a new session");
    assert!(first.starts_with("tgs_"));
    assert_eq!(
        app.get("/console/api-keys", Some(&first)).await.status,
        StatusCode::OK
    );
    let fake = format!("tgs_{}", "A".repeat(43));
    assert_eq!(
        app.get("/console/api-keys", Some(&fake)).await.status,
        StatusCode::SEE_OTHER
    );

    // Signing out ends that session only.
    let page = app.get("/console/api-keys", Some(&first)).await;
    let out = app
        .post("/console/logout", Some(&first), &[("csrf", &page.csrf())])
        .await;
    assert_eq!(out.session().as_deref(), Some(""), "the cookie is cleared");
    assert_eq!(
        app.get("/console/api-keys", Some(&first)).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        app.get("/console/api-keys", Some(&second)).await.status,
        StatusCode::OK
    );

    // A member whose role becomes reader can look but not change, from the next request.
    let actor = Actor::cli("tester");
    let dev = app
        .control
        .add_member(&actor, "dev@example.com", "Dev", Role::Owner)
        .await
        .unwrap();
    let (_, password) = app
        .control
        .reset_password(&actor, "dev@example.com")
        .await
        .unwrap();
    let dev_session = app.sign_in("dev@example.com", &password).await;
    let keys = app.get("/console/api-keys", Some(&dev_session)).await;
    assert!(keys.body.contains("Create new secret key"));
    app.control
        .set_member_role(&actor, dev.user.id.as_str(), Role::Reader)
        .await
        .unwrap();
    let keys = app.get("/console/api-keys", Some(&dev_session)).await;
    assert!(!keys.body.contains("Create new secret key"));
    let refused = app
        .post(
            "/console/projects",
            Some(&dev_session),
            &[("csrf", &keys.csrf()), ("name", "readers-project")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.get("/console/api-keys/new", Some(&dev_session))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    // Removed from the organization: the session is over, and stays over when the same
    // account joins again.
    app.control
        .remove_member(&actor, dev.user.id.as_str())
        .await
        .unwrap();
    assert_eq!(
        app.get("/console/api-keys", Some(&dev_session))
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    let org = app.control.organization().await.unwrap();
    let entry = tollgate_store::AuditEntry {
        id: tollgate_core::AuditId::generate(),
        org_id: org.id.clone(),
        event_type: "user.added".into(),
        actor: actor.clone(),
        project_id: None,
        resource_id: None,
        data: serde_json::json!({}),
        created_at: app.control.now(),
    };
    app.store
        .add_member(&org.id, &dev.user, None, Role::Owner, &entry)
        .await
        .unwrap();
    assert_eq!(
        app.get("/console/api-keys", Some(&dev_session))
            .await
            .status,
        StatusCode::SEE_OTHER
    );

    // Signing in again from a browser that has a session ends that one.
    let fourth = app.sign_in("owner@example.com", &app.password).await;
    let replaced = app
        .send(
            app.http
                .post(format!("{}/console/login", app.base))
                .header("cookie", format!("tollgate_session={fourth}"))
                .form(&[
                    ("email", "owner@example.com"),
                    ("password", app.password.as_str()),
                ]),
        )
        .await;
    assert_eq!(replaced.status, StatusCode::SEE_OTHER);
    assert_eq!(
        app.get("/console/api-keys", Some(&fourth)).await.status,
        StatusCode::SEE_OTHER
    );

    // Changing one's password ends every session of one's own.
    let owner = app.store.organization_owner(&org.id).await.unwrap();
    let page = app.get("/console/account", Some(&second)).await;
    let wrong = app
        .post(
            "/console/account/password",
            Some(&second),
            &[
                ("csrf", &page.csrf()),
                ("current", "not it"),
                ("new", "a brand new password"),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    let third = app.sign_in("owner@example.com", &app.password).await;
    let changed = app
        .post(
            "/console/account/password",
            Some(&second),
            &[
                ("csrf", &page.csrf()),
                ("current", &app.password),
                ("new", "a brand new password"),
            ],
        )
        .await;
    assert_eq!(changed.status, StatusCode::SEE_OTHER);
    for session in [&second, &third] {
        assert_eq!(
            app.get("/console/api-keys", Some(session)).await.status,
            StatusCode::SEE_OTHER
        );
    }
    assert_eq!(
        app.store
            .session_count(&owner.id, app.control.now())
            .await
            .unwrap(),
        0
    );
    app.sign_in("owner@example.com", "a brand new password")
        .await;
}

#[tokio::test]
async fn forms_need_this_session_s_token_and_this_site() {
    let app = App::spawn(false).await;
    let mine = app.sign_in("owner@example.com", &app.password).await;
    let other = app.sign_in("owner@example.com", &app.password).await;
    let other_csrf = app.get("/console/projects", Some(&other)).await.csrf();
    let csrf = app.get("/console/projects", Some(&mine)).await.csrf();
    assert_ne!(csrf, other_csrf, "tokens are per session");
    for form in [
        vec![("name", "p1")],
        vec![("csrf", other_csrf.as_str()), ("name", "p1")],
        vec![("csrf", "0"), ("name", "p1")],
    ] {
        let page = app.post("/console/projects", Some(&mine), &form).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{form:?}");
    }
    let cross = app
        .send(
            app.http
                .post(format!("{}/console/projects", app.base))
                .header("origin", "https://evil.example")
                .header("cookie", format!("tollgate_session={mine}"))
                .form(&[("csrf", csrf.as_str()), ("name", "p1")]),
        )
        .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.control.projects(true).await.unwrap().len(),
        1,
        "nothing was made"
    );
    let made = app
        .post(
            "/console/projects",
            Some(&mine),
            &[("csrf", &csrf), ("name", "p1")],
        )
        .await;
    assert_eq!(made.status, StatusCode::SEE_OTHER);
    assert_eq!(app.control.projects(true).await.unwrap().len(), 2);
    // The organization's name, on the settings page.
    let renamed = app
        .post(
            "/console/settings",
            Some(&mine),
            &[("csrf", &csrf), ("name", "  Acme <Labs>  ")],
        )
        .await;
    assert_eq!(renamed.status, StatusCode::SEE_OTHER);
    let settings = app.get("/console/settings", Some(&mine)).await;
    assert!(
        settings.body.contains("Acme &lt;Labs&gt;"),
        "escaped in the page"
    );
    assert_eq!(
        app.control.organization().await.unwrap().name,
        "Acme <Labs>"
    );
    let blank = app
        .post(
            "/console/settings",
            Some(&mine),
            &[("csrf", &csrf), ("name", " ")],
        )
        .await;
    assert_eq!(blank.status, StatusCode::BAD_REQUEST);
    // Signing in from another site is refused too (login forgery).
    let forged = app
        .send(
            app.http
                .post(format!("{}/console/login", app.base))
                .header("origin", "https://evil.example")
                .form(&[
                    ("email", "owner@example.com"),
                    ("password", app.password.as_str()),
                ]),
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_new_key_s_secret_is_in_one_answer_only_and_sign_ins_are_audited() {
    let app = App::spawn(false).await;
    let unknown = app
        .post(
            "/console/login",
            None,
            &[("email", "nobody@example.com"), ("password", "x")],
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert!(unknown.body.contains("Incorrect email or password."));
    let wrong = app
        .post(
            "/console/login",
            None,
            &[("email", "owner@example.com"), ("password", "x")],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(
        wrong.body.contains("Incorrect email or password."),
        "the same answer"
    );
    let session = app.sign_in("owner@example.com", &app.password).await;
    let csrf = app.get("/console/api-keys", Some(&session)).await.csrf();
    let made = app
        .post(
            "/console/api-keys",
            Some(&session),
            &[
                ("csrf", &csrf),
                ("name", "once"),
                ("owner", "you"),
                ("permissions", "all"),
            ],
        )
        .await;
    assert_eq!(made.status, StatusCode::OK);
    assert_eq!(made.headers["cache-control"], "no-store");
    let at = made.body.find("value=\"sk-proj-").expect("the secret") + 7;
    let secret = made.body[at..].split('"').next().unwrap().to_owned();
    let key = app
        .control
        .keys(None, None)
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.name == "once")
        .unwrap();
    for path in [
        "/console/api-keys".to_owned(),
        format!("/console/api-keys/{}", key.id),
        "/console/audit".into(),
    ] {
        let page = app.get(&path, Some(&session)).await;
        assert_eq!(page.status, StatusCode::OK, "{path}");
        assert!(!page.body.contains(&secret), "{path} shows the secret");
    }
    let audit = app.control.audit(None, 100).await.unwrap();
    let types: Vec<&str> = audit.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types.iter().filter(|t| **t == "login.failed").count(),
        2,
        "{types:?}"
    );
    assert_eq!(
        types.iter().filter(|t| **t == "login.succeeded").count(),
        1,
        "{types:?}"
    );
    for entry in audit.iter().filter(|e| e.event_type == "login.failed") {
        assert!(
            !entry.data.to_string().contains("\"x\""),
            "no password in the audit log"
        );
    }
}

#[tokio::test]
async fn parallel_guesses_are_counted_before_any_is_checked() {
    let app = App::spawn(false).await;
    let guesses = (0..8).map(|n| {
        let password = format!("wrong guess {n}");
        let app = &app;
        async move {
            app.post(
                "/console/login",
                None,
                &[("email", "owner@example.com"), ("password", &password)],
            )
            .await
            .status
        }
    });
    let statuses = futures_join_all(guesses).await;
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let held = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((checked, held), (5, 3), "{statuses:?}");
}

/// Runs futures together on this task (a small join_all).
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let handles: Vec<_> = futures.map(Box::pin).collect();
    let mut outputs = Vec::new();
    let mut pending: Vec<_> = handles.into_iter().map(Some).collect();
    let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (i, slot) in pending.iter_mut().enumerate() {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(out) => {
                        results[i] = Some(out);
                        *slot = None;
                    }
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    outputs.extend(results.into_iter().flatten());
    outputs
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_public_name_is_the_site() {
    let app = App::spawn(true).await;
    // The proxy rewrote Host to the upstream's address and says where the browser was.
    let signed = app
        .send(
            app.http
                .post(format!("{}/console/login", app.base))
                .header("host", "10.0.0.5:8080")
                .header("x-forwarded-host", "tollgate.example.com")
                .header("x-forwarded-proto", "https")
                .header("origin", "https://tollgate.example.com")
                .form(&[
                    ("email", "owner@example.com"),
                    ("password", app.password.as_str()),
                ]),
        )
        .await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER, "{}", signed.body);
    let session = signed.session().unwrap();
    let page = app
        .send(
            app.http
                .get(format!("{}/console/members", app.base))
                .header("cookie", format!("tollgate_session={session}"))
                .header("x-forwarded-host", "tollgate.example.com")
                .header("x-forwarded-proto", "https"),
        )
        .await;
    let invited = app
        .send(
            app.http
                .post(format!("{}/console/members", app.base))
                .header("cookie", format!("tollgate_session={session}"))
                .header("x-forwarded-host", "tollgate.example.com")
                .header("x-forwarded-proto", "https")
                .header("origin", "https://tollgate.example.com")
                .form(&[
                    ("csrf", page.csrf().as_str()),
                    ("email", "new@example.com"),
                    ("role", "reader"),
                    ("project", ""),
                ]),
        )
        .await;
    assert_eq!(invited.status, StatusCode::OK, "{}", invited.body);
    assert!(
        invited
            .body
            .contains("value=\"https://tollgate.example.com/console/invite#tgi_"),
        "the link names the public site"
    );
    // From another site, still refused.
    let forged = app
        .send(
            app.http
                .post(format!("{}/console/login", app.base))
                .header("x-forwarded-host", "tollgate.example.com")
                .header("origin", "https://evil.example")
                .form(&[
                    ("email", "owner@example.com"),
                    ("password", app.password.as_str()),
                ]),
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_demoted_owner_s_invites_are_withdrawn() {
    let app = App::spawn(false).await;
    let actor = Actor::cli("tester");
    let dev = app
        .control
        .add_member(&actor, "dev@example.com", "Dev", Role::Owner)
        .await
        .unwrap();
    let as_dev = Actor {
        kind: "user".into(),
        id: dev.user.id.to_string(),
    };
    let invite = app
        .control
        .invite(&as_dev, "friend@example.com", Role::Owner, None)
        .await
        .unwrap();
    app.control
        .set_member_role(&actor, dev.user.id.as_str(), Role::Reader)
        .await
        .unwrap();
    assert!(app.control.invites().await.unwrap().is_empty());
    let refused = app
        .control
        .accept_invite(tollgate_control::Acceptance {
            token: invite.token.expose(),
            name: "Friend",
            password: "a long enough password",
        })
        .await;
    assert!(refused.is_err());
}
