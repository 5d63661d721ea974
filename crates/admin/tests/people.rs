//! People through the admin API: invites (made, listed, withdrawn, accepted once through their
//! link), project users with their project roles, and keys recorded under the user whose admin
//! key made them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: failing loudly is the point

mod support;

use serde_json::{json, Value};
use support::*;
use tollgate_control::{Acceptance, ErrorClass, KeyOwnerRequest, NewKey};
use tollgate_core::Permissions;
use tollgate_store::{Actor, Role};

const WEEK: i64 = 7 * 24 * 3600;

impl App {
    async fn delete(&self, path: &str) -> Reply {
        self.call("DELETE", path, Some(&self.admin), None).await
    }

    async fn reader_key(&self) -> String {
        self.control
            .create_key(
                &Actor::cli("tester"),
                NewKey {
                    name: "reader".into(),
                    owner: KeyOwnerRequest::Admin,
                    permissions: Permissions::ReadOnly,
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

    async fn accept(
        &self,
        token: &str,
        name: &str,
        password: &str,
    ) -> tollgate_control::Result<tollgate_store::Member> {
        self.control
            .accept_invite(Acceptance {
                token,
                name,
                password,
            })
            .await
    }

    async fn event_types(&self, types: &str) -> Vec<(String, Value)> {
        let page = self
            .get(&format!("/v1/organization/audit_logs?limit=100&{types}"))
            .await;
        page.ok()["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let kind = e["type"].as_str().unwrap().to_owned();
                (kind.clone(), e[kind.as_str()].clone())
            })
            .collect()
    }
}

#[tokio::test]
async fn an_invite_is_shown_once_listed_and_accepted_once_through_its_link() {
    let app = App::spawn().await;
    let made = app
        .post(
            "/v1/organization/invites",
            json!({"email": "  Ada@Example.com ", "role": "reader"}),
        )
        .await;
    let made = made.ok().clone();
    let id = made["id"].as_str().unwrap().to_owned();
    let token = made["accept_token"].as_str().unwrap().to_owned();
    assert!(id.starts_with("invite-"), "{made}");
    assert!(token.starts_with("tgi_") && token.len() == 47, "{made}");
    let shown = json!({
        "object": "organization.invite",
        "id": id,
        "email": "ada@example.com",
        "role": "reader",
        "status": "pending",
        "created_at": START.seconds(),
        "expires_at": START.seconds() + WEEK,
        "accepted_at": null,
        // Left out, the projects are the default project as a member (OpenAI's legacy rule).
        "projects": [{"id": app.default_project, "role": "member"}],
    });
    let mut without_token = made.clone();
    without_token
        .as_object_mut()
        .unwrap()
        .remove("accept_token");
    assert_eq!(without_token, shown);
    // The token is never shown again.
    let listed = app.get("/v1/organization/invites").await;
    assert_eq!(listed.ok()["data"], json!([shown.clone()]));
    assert_eq!(listed.ok()["first_id"], id.as_str());
    let one = app.get(&format!("/v1/organization/invites/{id}")).await;
    assert_eq!(one.ok(), &shown);
    assert!(!listed.body.to_string().contains(&token[4..]));
    // One pending invite per address (however it is written).
    app.post(
        "/v1/organization/invites",
        json!({"email": "ADA@example.com", "role": "owner"}),
    )
    .await
    .error(409, None);

    // The invitee follows the link: an account, the role, the default project.
    app.clock.advance(60);
    let weak = app
        .accept(&token, "Ada Lovelace", "short")
        .await
        .unwrap_err();
    assert_eq!(weak.class(), ErrorClass::Invalid, "{weak}");
    let member = app
        .accept(
            &format!(" {token} "),
            "Ada Lovelace",
            "analytical engine 1843",
        )
        .await
        .unwrap();
    assert_eq!(member.role, Role::Reader);
    assert_eq!(member.user.email, "ada@example.com");
    let user = app
        .get(&format!("/v1/organization/users/{}", member.user.id))
        .await;
    assert_eq!(user.ok()["role"], "reader");
    assert_eq!(user.ok()["name"], "Ada Lovelace");
    let in_project = app
        .get(&format!(
            "/v1/organization/projects/{}/users/{}",
            app.default_project, member.user.id
        ))
        .await;
    assert_eq!(in_project.ok()["role"], "member");
    let accepted = app.get(&format!("/v1/organization/invites/{id}")).await;
    assert_eq!(accepted.ok()["status"], "accepted");
    assert_eq!(accepted.ok()["accepted_at"], START.seconds() + 60);
    // The password was stored as an Argon2id hash, and the link works once.
    let hash = app
        .store
        .password_hash("ada@example.com")
        .await
        .unwrap()
        .unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("analytical"));
    let again = app
        .accept(&token, "Mallory", "another password 1")
        .await
        .unwrap_err();
    assert_eq!(again.class(), ErrorClass::Conflict, "{again}");
    // An accepted invite stays for the record; a member cannot be invited again.
    app.delete(&format!("/v1/organization/invites/{id}"))
        .await
        .error(409, None);
    app.post(
        "/v1/organization/invites",
        json!({"email": "ada@example.com", "role": "reader"}),
    )
    .await
    .error(409, None);

    let audit = app
        .event_types(
            "event_types[]=invite.sent&event_types[]=invite.accepted&event_types[]=user.added",
        )
        .await;
    let kinds: Vec<&str> = audit.iter().map(|(k, _)| k.as_str()).collect();
    // (The last is the first run's owner.)
    assert_eq!(
        kinds,
        ["user.added", "invite.accepted", "invite.sent", "user.added"],
        "{audit:?}"
    );
    assert_eq!(audit[2].1["id"], id.as_str());
    assert_eq!(audit[2].1["data"]["email"], "ada@example.com");
    assert_eq!(audit[2].1["data"]["role"], "reader");
    assert_eq!(audit[1].1["id"], id.as_str());
    assert_eq!(audit[0].1["id"], member.user.id.as_str());
}

#[tokio::test]
async fn invites_are_withdrawn_expire_and_name_their_projects() {
    let app = App::spawn().await;
    let alpha = app
        .post("/v1/organization/projects", json!({"name": "alpha"}))
        .await;
    let alpha = alpha.ok()["id"].as_str().unwrap().to_owned();
    let made = app
        .post(
            "/v1/organization/invites",
            json!({"email": "bo@example.com", "role": "owner",
                   "projects": [{"id": alpha, "role": "owner"}, {"id": app.default_project, "role": "member"}]}),
        )
        .await;
    assert_eq!(
        made.ok()["projects"],
        json!([{"id": alpha, "role": "owner"}, {"id": app.default_project, "role": "member"}])
    );
    let id = made.ok()["id"].as_str().unwrap().to_owned();
    let token = made.ok()["accept_token"].as_str().unwrap().to_owned();
    // Withdrawn: gone, and its link with it.
    let deleted = app.delete(&format!("/v1/organization/invites/{id}")).await;
    assert_eq!(
        deleted.ok(),
        &json!({"object": "organization.invite.deleted", "id": id, "deleted": true})
    );
    app.get(&format!("/v1/organization/invites/{id}"))
        .await
        .error(404, None);
    app.delete(&format!("/v1/organization/invites/{id}"))
        .await
        .error(404, None);
    let withdrawn = app
        .accept(&token, "Bo", "a long enough password")
        .await
        .unwrap_err();
    assert_eq!(withdrawn.class(), ErrorClass::Conflict);

    // An empty list: no project at all. Expired after a week: listed so, refused, and the
    // address can be invited again.
    let made = app
        .post(
            "/v1/organization/invites",
            json!({"email": "bo@example.com", "role": "owner", "projects": []}),
        )
        .await;
    assert_eq!(made.ok()["projects"], json!([]));
    let id = made.ok()["id"].as_str().unwrap().to_owned();
    let token = made.ok()["accept_token"].as_str().unwrap().to_owned();
    app.clock.advance(WEEK);
    let listed = app.get(&format!("/v1/organization/invites/{id}")).await;
    assert_eq!(listed.ok()["status"], "expired");
    let late = app
        .accept(&token, "Bo", "a long enough password")
        .await
        .unwrap_err();
    assert_eq!(late.class(), ErrorClass::Conflict);
    let again = app
        .post(
            "/v1/organization/invites",
            json!({"email": "bo@example.com", "role": "owner", "projects": [{"id": alpha, "role": "owner"}]}),
        )
        .await;
    let token = again.ok()["accept_token"].as_str().unwrap().to_owned();
    // A project archived before acceptance is skipped; the rest of the invite holds.
    app.post(
        &format!("/v1/organization/projects/{alpha}/archive"),
        json!({}),
    )
    .await
    .ok();
    let member = app
        .accept(&token, "Bo", "a long enough password")
        .await
        .unwrap();
    assert_eq!(member.role, Role::Owner);
    let users = app
        .get(&format!("/v1/organization/projects/{alpha}/users"))
        .await;
    assert_eq!(users.ok()["data"], json!([]));
    // The expired invite is still listed beside the accepted one.
    let all = app.get("/v1/organization/invites").await;
    let statuses: Vec<&str> = all.ok()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["expired", "accepted"]);
    // Archived projects cannot be named in new invites.
    app.post(
        "/v1/organization/invites",
        json!({"email": "cy@example.com", "role": "reader", "projects": [{"id": alpha, "role": "member"}]}),
    )
    .await
    .error(409, None);
}

#[tokio::test]
async fn bad_invites_are_400s_naming_the_param_and_readers_cannot_invite() {
    let app = App::spawn().await;
    for (body, param) in [
        (
            json!({"email": "not an address", "role": "reader"}),
            Some("email"),
        ),
        (json!({"email": "a@b.c", "role": "admin"}), Some("role")),
        (
            json!({"email": "a@b.c", "role": "reader", "projects": [{"id": "proj_nope", "role": "member"}]}),
            Some("projects"),
        ),
        (
            json!({"email": "a@b.c", "role": "reader", "projects": [{"id": app.default_project, "role": "boss"}]}),
            Some("projects"),
        ),
        (
            json!({"email": "a@b.c", "role": "reader", "projects": [{"id": app.default_project, "role": "member"}, {"id": app.default_project, "role": "owner"}]}),
            Some("projects"),
        ),
        (
            json!({"email": "a@b.c", "role": "reader", "extra": 1}),
            None,
        ),
        (json!({"role": "reader"}), None),
    ] {
        let reply = app.post("/v1/organization/invites", body.clone()).await;
        reply.error(400, param);
    }
    for id in [
        "invite-nope",
        "invite-AAAAAAAAAAAAAAAAAAAAAAAA",
        "user-AAAAAAAAAAAAAAAAAAAAAAAA",
    ] {
        app.get(&format!("/v1/organization/invites/{id}"))
            .await
            .error(404, None);
    }
    let reader = app.reader_key().await;
    let refused = app
        .call(
            "POST",
            "/v1/organization/invites",
            Some(&reader),
            Some(json!({"email": "a@b.c", "role": "reader"})),
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    let listed = app
        .call("GET", "/v1/organization/invites", Some(&reader), None)
        .await;
    assert_eq!(listed.ok()["data"], json!([]));
    // Bad tokens are refused without a trace of which part was wrong.
    for token in [
        "",
        "tgi_",
        "sk-proj-abc",
        &format!("tgi_{}", "A".repeat(43)),
    ] {
        let refused = app
            .accept(token, "X", "a long enough password")
            .await
            .unwrap_err();
        assert_eq!(refused.class(), ErrorClass::Conflict, "{token}");
    }
}

#[tokio::test]
async fn someone_with_an_account_accepts_with_its_password_and_keeps_it() {
    let app = App::spawn().await;
    let invite = |email: &'static str| {
        let app = &app;
        async move {
            let made = app
                .post(
                    "/v1/organization/invites",
                    json!({"email": email, "role": "reader", "projects": []}),
                )
                .await;
            made.ok()["accept_token"].as_str().unwrap().to_owned()
        }
    };
    let token = invite("cy@example.com").await;
    let first = app
        .accept(&token, "Cy", "first password 123")
        .await
        .unwrap();
    // Cy leaves; the account stays (it may belong to other organizations).
    app.delete(&format!("/v1/organization/users/{}", first.user.id))
        .await
        .ok();
    let token = invite("cy@example.com").await;
    let wrong = app
        .accept(&token, "Someone Else", "not the password 1")
        .await
        .unwrap_err();
    assert_eq!(wrong.class(), ErrorClass::Invalid, "{wrong}");
    let back = app
        .accept(&token, "Someone Else", "first password 123")
        .await
        .unwrap();
    assert_eq!(back.user.id, first.user.id);
    assert_eq!(back.user.name, "Cy");
    assert!(tollgate_core::password::verify_password(
        "first password 123",
        &app.store
            .password_hash("cy@example.com")
            .await
            .unwrap()
            .unwrap()
    ));
}

#[tokio::test]
async fn project_users_are_organization_members_with_project_roles() {
    let app = App::spawn().await;
    let actor = Actor::cli("tester");
    let alpha = app
        .post("/v1/organization/projects", json!({"name": "alpha"}))
        .await;
    let alpha = alpha.ok()["id"].as_str().unwrap().to_owned();
    let users = format!("/v1/organization/projects/{alpha}/users");
    let bo = app
        .control
        .add_member(&actor, "bo@example.com", "Bo", Role::Reader)
        .await
        .unwrap();
    let cy = app
        .control
        .add_member(&actor, "cy@example.com", "Cy", Role::Owner)
        .await
        .unwrap();
    app.clock.advance(5);
    let added = app
        .post(
            &users,
            json!({"user_id": bo.user.id.to_string(), "role": "owner"}),
        )
        .await;
    let bo_shown = json!({
        "object": "organization.project.user",
        "id": bo.user.id.to_string(),
        "name": "Bo",
        "email": "bo@example.com",
        "role": "owner",
        "added_at": START.seconds() + 5,
    });
    assert_eq!(added.ok(), &bo_shown);
    // By e-mail too.
    app.clock.advance(5);
    let by_email = app
        .post(&users, json!({"email": "CY@example.com", "role": "member"}))
        .await;
    assert_eq!(by_email.ok()["id"], cy.user.id.as_str());
    let listed = app.get(&users).await;
    assert_eq!(
        ids(listed.ok()),
        [bo.user.id.to_string(), cy.user.id.to_string()]
    );
    let page = app.get(&format!("{users}?limit=1")).await;
    assert_eq!(page.ok()["has_more"], true);
    let next = app
        .get(&format!("{users}?limit=1&after={}", bo.user.id))
        .await;
    assert_eq!(ids(next.ok()), [cy.user.id.to_string()]);
    assert_eq!(next.ok()["has_more"], false);
    let bo_path = format!("{users}/{}", bo.user.id);
    assert_eq!(app.get(&bo_path).await.ok(), &bo_shown);

    // Faults.
    app.post(
        &users,
        json!({"user_id": bo.user.id.to_string(), "role": "owner"}),
    )
    .await
    .error(409, None);
    app.post(
        &users,
        json!({"user_id": "user-AAAAAAAAAAAAAAAAAAAAAAAA", "role": "owner"}),
    )
    .await
    .error(400, Some("user_id"));
    app.post(
        &users,
        json!({"email": "stranger@example.com", "role": "owner"}),
    )
    .await
    .error(400, Some("email"));
    app.post(&users, json!({"role": "owner"}))
        .await
        .error(400, Some("user_id"));
    app.post(
        &users,
        json!({"user_id": bo.user.id.to_string(), "role": "reader"}),
    )
    .await
    .error(400, Some("role"));
    app.post(&bo_path, json!({"role": "admin"}))
        .await
        .error(400, Some("role"));
    app.get(&format!("{users}/user-AAAAAAAAAAAAAAAAAAAAAAAA"))
        .await
        .error(404, None);
    app.get("/v1/organization/projects/proj_nope/users")
        .await
        .error(404, None);
    let reader = app.reader_key().await;
    let refused = app
        .call(
            "POST",
            &bo_path,
            Some(&reader),
            Some(json!({"role": "member"})),
        )
        .await;
    assert_eq!(refused.status, 403, "{}", refused.body);

    // A role change, a removal.
    let changed = app.post(&bo_path, json!({"role": "member"})).await;
    assert_eq!(changed.ok()["role"], "member");
    let removed = app.delete(&bo_path).await;
    assert_eq!(
        removed.ok(),
        &json!({"object": "organization.project.user.deleted", "id": bo.user.id.to_string(), "deleted": true})
    );
    app.get(&bo_path).await.error(404, None);
    assert_eq!(
        app.get(&format!("/v1/organization/users/{}", bo.user.id))
            .await
            .ok()["role"],
        "reader",
        "removed from the project, not the organization"
    );
    // Leaving the organization leaves its projects.
    app.delete(&format!("/v1/organization/users/{}", cy.user.id))
        .await
        .ok();
    assert_eq!(app.get(&users).await.ok()["data"], json!([]));
    // The changes are in the audit log, scoped to the project.
    let scoped = app
        .get(&format!(
            "/v1/organization/audit_logs?project_ids[]={alpha}&limit=100"
        ))
        .await;
    let kinds: Vec<&str> = scoped.ok()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "user.deleted",
            "user.updated",
            "user.added",
            "user.added",
            "project.created"
        ],
        "{}",
        scoped.body
    );

    // Archived projects cannot be changed, but can be read.
    app.post(
        &users,
        json!({"user_id": bo.user.id.to_string(), "role": "owner"}),
    )
    .await
    .ok();
    app.post(
        &format!("/v1/organization/projects/{alpha}/archive"),
        json!({}),
    )
    .await
    .ok();
    app.post(&bo_path, json!({"role": "member"}))
        .await
        .error(409, None);
    app.delete(&bo_path).await.error(409, None);
    app.post(
        &users,
        json!({"email": "owner@example.com", "role": "owner"}),
    )
    .await
    .error(409, None);
    assert_eq!(app.get(&bo_path).await.ok()["role"], "owner");
}

#[tokio::test]
async fn a_key_is_recorded_under_the_user_whose_admin_key_made_it() {
    let app = App::spawn().await;
    let dev = app
        .control
        .add_member(&Actor::cli("tester"), "dev@example.com", "Dev", Role::Owner)
        .await
        .unwrap();
    // Dev's own admin key, as Dev's console session would make it.
    let as_dev = Actor {
        kind: "user".into(),
        id: dev.user.id.to_string(),
    };
    let dev_admin = app
        .control
        .create_key(
            &as_dev,
            NewKey {
                name: "dev's admin key".into(),
                owner: KeyOwnerRequest::Admin,
                permissions: Permissions::All,
                expires_in: None,
                allowed_ips: Default::default(),
                allowed_models: Default::default(),
                limits: Default::default(),
                budget: None,
            },
        )
        .await
        .unwrap();
    let owner_of = |reply: &Reply| {
        reply.ok()["owner"]["user"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let dev_admin_id = dev_admin.record.id.to_string();
    let shown = app
        .get(&format!("/v1/organization/admin_api_keys/{dev_admin_id}"))
        .await;
    assert_eq!(shown.ok()["owner"]["id"], dev.user.id.as_str());

    let made = |key: String| {
        let app = &app;
        async move {
            let made = app
                .call(
                    "POST",
                    "/v1/organization/x-tollgate/keys",
                    Some(&key),
                    Some(json!({"name": "made"})),
                )
                .await;
            made.ok()["id"].as_str().unwrap().to_owned()
        }
    };
    let by_dev = made(dev_admin.secret.expose().to_owned()).await;
    let by_first = made(app.admin.clone()).await;
    let project_key = |id: String| {
        let app = &app;
        async move {
            app.get(&format!(
                "/v1/organization/projects/{}/api_keys/{id}",
                app.default_project
            ))
            .await
        }
    };
    let first_owner = app
        .store
        .organization_owner(&app.control.organization().await.unwrap().id)
        .await
        .unwrap();
    assert_eq!(owner_of(&project_key(by_dev).await), dev.user.id.as_str());
    assert_eq!(
        owner_of(&project_key(by_first).await),
        first_owner.id.as_str()
    );
    // Once Dev has left, what Dev's key (still the organization's) makes is the first owner's.
    app.delete(&format!("/v1/organization/users/{}", dev.user.id))
        .await
        .ok();
    let after = made(dev_admin.secret.expose().to_owned()).await;
    assert_eq!(owner_of(&project_key(after).await), first_owner.id.as_str());
}
