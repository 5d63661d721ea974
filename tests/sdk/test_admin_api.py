"""The official OpenAI Python SDK's admin client against Tollgate's admin API, with strict
response validation on; and every response of an endpoint OpenAI also has checked against the
matching schema of OpenAI's own OpenAPI document (../shared/reference/openai-openapi.yaml, when
present: skipped, saying so, elsewhere)."""

import json
import os
import re
import time
import urllib.request

import openai
import pytest

SPEC = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "reference", "openai-openapi.yaml")


def admin_client(tollgate, key=None):
    return openai.OpenAI(
        base_url=tollgate.base_url,
        api_key="unused",
        admin_api_key=key or tollgate.admin_key,
        max_retries=0,
        _strict_response_validation=True,
    ).admin.organization


def test_the_admin_client_manages_projects_service_accounts_and_keys(tollgate):
    assert tollgate.admin_key, "the first run printed no admin key"
    org = admin_client(tollgate)
    before = [p.id for p in org.projects.list()]
    assert before, "the default project is listed"
    project = org.projects.create(name="sdk-admin-project")
    assert project.object == "organization.project" and project.status == "active"
    assert org.projects.retrieve(project.id).name == "sdk-admin-project"
    assert org.projects.update(project.id, name="sdk-admin-renamed").name == "sdk-admin-renamed"
    # The SDK's auto-pagination walks every page (one project a page).
    assert [p.id for p in org.projects.list(limit=1)] == before + [project.id]

    account = org.projects.service_accounts.create(project.id, name="sdk-bot")
    secret = account.api_key.value
    assert secret.startswith("sk-svcacct-") and account.role == "member"
    assert [a.id for a in org.projects.service_accounts.list(project.id)] == [account.id]
    keys = list(org.projects.api_keys.list(project.id))
    assert [k.id for k in keys] == [account.api_key.id]
    assert keys[0].owner.type == "service_account" and secret not in keys[0].redacted_value
    # The new key works on the data plane at once, and is refused at once once deleted.
    data = openai.OpenAI(base_url=tollgate.base_url, api_key=secret, max_retries=0)
    assert data.models.list().data
    deleted = org.projects.api_keys.delete(account.api_key.id, project_id=project.id)
    assert deleted.deleted and deleted.id == account.api_key.id
    with pytest.raises(openai.AuthenticationError):
        data.models.list()
    with pytest.raises(openai.NotFoundError):
        org.projects.api_keys.retrieve(account.api_key.id, project_id=project.id)

    # Deleting a service account stops its keys at once.
    bot = org.projects.service_accounts.create(project.id, name="sdk-bot-2")
    bot_data = openai.OpenAI(base_url=tollgate.base_url, api_key=bot.api_key.value, max_retries=0)
    assert bot_data.models.list().data
    gone = org.projects.service_accounts.delete(bot.id, project_id=project.id)
    assert gone.deleted and gone.id == bot.id
    with pytest.raises(openai.AuthenticationError):
        bot_data.models.list()

    archived = org.projects.archive(project.id)
    assert archived.status == "archived" and archived.archived_at
    assert project.id not in [p.id for p in org.projects.list()]
    assert project.id in [p.id for p in org.projects.list(include_archived=True)]

    users = list(org.users.list())
    assert users and users[0].role == "owner"
    # The only owner stays one: neither demoted nor removed.
    with pytest.raises(openai.ConflictError):
        org.users.update(users[0].id, role="reader")
    with pytest.raises(openai.ConflictError):
        org.users.delete(users[0].id)
    assert org.users.update(users[0].id, role="owner").role == "owner"

    # Invites: made (the link's token is Tollgate's extra field, shown once), listed, withdrawn.
    invite = org.invites.create(email="SDK-Invitee@example.com", role="reader", projects=[])
    assert invite.object == "organization.invite" and invite.status == "pending"
    assert invite.email == "sdk-invitee@example.com" and invite.projects == []
    assert invite.expires_at > invite.created_at
    assert (invite.model_extra or {}).get("accept_token", "").startswith("tgi_")
    assert [i.id for i in org.invites.list()] == [invite.id]
    assert "accept_token" not in (org.invites.retrieve(invite.id).model_extra or {})
    with pytest.raises(openai.ConflictError):
        org.invites.create(email="sdk-invitee@example.com", role="owner")
    with pytest.raises(openai.BadRequestError):
        org.invites.create(email="not an address", role="reader")
    withdrawn = org.invites.delete(invite.id)
    assert withdrawn.deleted and withdrawn.id == invite.id
    with pytest.raises(openai.NotFoundError):
        org.invites.retrieve(invite.id)

    # Project users: the organization's users, with a project role.
    team = org.projects.create(name="sdk-team-project")
    added = org.projects.users.create(team.id, user_id=users[0].id, role="owner")
    assert added.object == "organization.project.user" and added.role == "owner" and added.email == users[0].email
    assert [u.id for u in org.projects.users.list(team.id)] == [users[0].id]
    assert org.projects.users.update(users[0].id, project_id=team.id, role="member").role == "member"
    assert org.projects.users.retrieve(users[0].id, project_id=team.id).role == "member"
    with pytest.raises(openai.BadRequestError):
        org.projects.users.create(team.id, email="nobody@example.com", role="member")
    removed = org.projects.users.delete(users[0].id, project_id=team.id)
    assert removed.deleted and removed.id == users[0].id
    assert list(org.projects.users.list(team.id)) == []
    assert [k.object for k in org.admin_api_keys.list()] == ["organization.admin_api_key"]
    # Every audit entry, all types, passes the SDK's strict validation.
    logs = list(org.audit_logs.list())
    types = [entry.type for entry in logs]
    assert "project.archived" in types and "api_key.deleted" in types and "service_account.created" in types
    created = list(org.audit_logs.list(event_types=["project.created"], project_ids=[project.id]))
    assert [entry.type for entry in created] == ["project.created"]


def test_project_rate_limits_model_permissions_and_spend_limits_through_the_admin_client(tollgate):
    org = admin_client(tollgate)
    project = org.projects.create(name="sdk-rules-project")
    limits = org.projects.rate_limits
    assert list(limits.list_rate_limits(project.id)) == []
    made = limits.update_rate_limit("rl-gpt-4o-mini", project_id=project.id, max_requests_per_1_minute=1)
    assert (made.object, made.model, made.max_requests_per_1_minute, made.max_tokens_per_1_minute) == (
        "project.rate_limit",
        "gpt-4o-mini",
        1,
        0,
    )
    limits.update_rate_limit("rl-gpt-4o", project_id=project.id, max_tokens_per_1_minute=90000)
    # The SDK's cursor pages walk the list one rule a page.
    assert [r.id for r in limits.list_rate_limits(project.id, limit=1)] == ["rl-gpt-4o", "rl-gpt-4o-mini"]

    secret = tollgate.new_key("rules-key", "--project", project.id)["value"]
    data = openai.OpenAI(base_url=tollgate.base_url, api_key=secret, max_retries=0)
    ask = dict(messages=[{"role": "user", "content": "hi"}])
    data.chat.completions.create(model="gpt-4o-mini", **ask)
    with pytest.raises(openai.RateLimitError):
        data.chat.completions.create(model="gpt-4o-mini", **ask)
    limits.update_rate_limit("rl-gpt-4o-mini", project_id=project.id, max_requests_per_1_minute=0)
    data.chat.completions.create(model="gpt-4o-mini", **ask)

    permissions = org.projects.model_permissions
    assert permissions.retrieve(project.id).mode == "deny_list"
    allowed = permissions.update(project.id, mode="allow_list", model_ids=["gpt-4o"])
    assert allowed.api_model_ids == ["gpt-4o"]
    with pytest.raises(openai.APIStatusError):
        data.chat.completions.create(model="gpt-4o-mini", **ask)
    with pytest.raises(openai.BadRequestError):
        permissions.update(project.id, mode="deny_list", model_ids=["o3"])
    assert permissions.delete(project.id).deleted
    data.chat.completions.create(model="gpt-4o-mini", **ask)

    spend = org.projects.spend_limit
    with pytest.raises(openai.NotFoundError):
        spend.retrieve(project.id)
    limit = spend.update(project.id, currency="USD", interval="month", threshold_amount=1234)
    assert (limit.object, limit.threshold_amount, limit.enforcement.status) == ("project.spend_limit", 1234, "enforcing")
    assert spend.retrieve(project.id).threshold_amount == 1234
    # Spend alerts are shares of the spend limit.
    channel = {"type": "email", "recipients": ["finance@example.com"]}
    alerts = org.projects.spend_alerts
    alert = alerts.create(project.id, currency="USD", interval="month", notification_channel=channel, threshold_amount=617)
    assert (alert.object, alert.threshold_amount) == ("project.spend_alert", 617)
    assert [a.id for a in alerts.list(project.id)] == [alert.id]
    assert alerts.retrieve(alert.id, project_id=project.id).threshold_amount == 617
    moved = alerts.update(alert.id, project_id=project.id, currency="USD", interval="month", notification_channel=channel, threshold_amount=1234)
    assert moved.threshold_amount == 1234
    assert alerts.delete(moved.id, project_id=project.id).deleted
    assert list(alerts.list(project.id)) == []
    assert spend.delete(project.id).deleted
    org_limit = org.spend_limit.update(currency="USD", interval="month", threshold_amount=500000)
    assert org_limit.object == "organization.spend_limit"
    assert org.spend_limit.retrieve().threshold_amount == 500000
    assert org.spend_limit.delete().deleted


def test_usage_and_costs_through_the_admin_client_equal_the_recorded_events(tollgate):
    org = admin_client(tollgate)
    project = org.projects.create(name="sdk-usage-project")
    key = tollgate.new_key("sdk-admin-usage", "--project", project.id)
    client = openai.OpenAI(base_url=tollgate.base_url, api_key=key["value"], max_retries=0)
    request_ids = []
    for n in range(3):
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"count {n}"}]
        )
        request_ids.append(raw.headers["x-request-id"])
    events = [tollgate.event(key["id"], r) for r in request_ids]
    start = min(e["created_at"] for e in events) - 60
    usage = org.usage.completions(start_time=start, bucket_width="1d", api_key_ids=[key["id"]], group_by=["api_key_id", "model"])
    results = [r for b in usage.data for r in b.results]
    assert len(results) == 1 and results[0].api_key_id == key["id"]
    assert results[0].num_model_requests == 3
    assert results[0].input_tokens == sum(e["input_tokens"] for e in events)
    assert results[0].output_tokens == sum(e["output_tokens"] for e in events)
    costs = org.usage.costs(start_time=start, project_ids=[project.id], group_by=["project_id"])
    results = [r for b in costs.data for r in b.results]
    assert [r.project_id for r in results] == [project.id]
    assert round(results[0].amount.value * 1e6) == sum(e["cost"] for e in events) > 0


def test_project_keys_are_refused_on_the_admin_api(tollgate):
    key = tollgate.new_key("sdk-not-admin")
    with pytest.raises(openai.PermissionDeniedError):
        list(admin_client(tollgate, key["value"]).projects.list())
    with pytest.raises(openai.AuthenticationError):
        list(admin_client(tollgate, "sk-admin-not-a-real-key").projects.list())


def _spec():
    if not os.path.exists(SPEC):
        pytest.skip(f"skipped: OpenAI's OpenAPI document is not here ({os.path.normpath(SPEC)})")
    import yaml

    with open(SPEC) as f:
        return yaml.safe_load(f)


def _get(tollgate, path):
    request = urllib.request.Request(tollgate.base_url + path, headers={"Authorization": f"Bearer {tollgate.admin_key}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_responses_match_openai_s_own_openapi_schemas(tollgate):
    import jsonschema

    spec = _spec()
    org = admin_client(tollgate)
    project = org.projects.create(name="sdk-schema-project")
    account = org.projects.service_accounts.create(project.id, name="schema-bot")
    user = list(org.users.list())[0]
    org.projects.users.create(project.id, user_id=user.id, role="owner")
    invite = org.invites.create(email="schema-invitee@example.com", role="reader")
    org.projects.rate_limits.update_rate_limit("rl-gpt-4o", project_id=project.id, max_requests_per_1_minute=9)
    org.projects.spend_limit.update(project.id, currency="USD", interval="month", threshold_amount=700)
    org.projects.spend_alerts.create(
        project.id, currency="USD", interval="month", threshold_amount=350, notification_channel={"type": "email", "recipients": []}
    )
    start = int(time.time()) - 86400
    checked = {
        "/organization/projects": "/organization/projects",
        f"/organization/projects/{project.id}": "/organization/projects/{project_id}",
        f"/organization/projects/{project.id}/service_accounts": "/organization/projects/{project_id}/service_accounts",
        f"/organization/projects/{project.id}/service_accounts/{account.id}": "/organization/projects/{project_id}/service_accounts/{service_account_id}",
        f"/organization/projects/{project.id}/api_keys": "/organization/projects/{project_id}/api_keys",
        f"/organization/projects/{project.id}/api_keys/{account.api_key.id}": "/organization/projects/{project_id}/api_keys/{api_key_id}",
        f"/organization/projects/{project.id}/rate_limits": "/organization/projects/{project_id}/rate_limits",
        f"/organization/projects/{project.id}/model_permissions": "/organization/projects/{project_id}/model_permissions",
        f"/organization/projects/{project.id}/spend_limit": "/organization/projects/{project_id}/spend_limit",
        f"/organization/projects/{project.id}/spend_alerts": "/organization/projects/{project_id}/spend_alerts",
        f"/organization/projects/{project.id}/spend_alerts/alert_500": "/organization/projects/{project_id}/spend_alerts/{alert_id}",
        f"/organization/projects/{project.id}/users": "/organization/projects/{project_id}/users",
        f"/organization/projects/{project.id}/users/{user.id}": "/organization/projects/{project_id}/users/{user_id}",
        "/organization/invites": "/organization/invites",
        f"/organization/invites/{invite.id}": "/organization/invites/{invite_id}",
        "/organization/users": "/organization/users",
        f"/organization/users/{user.id}": "/organization/users/{user_id}",
        "/organization/admin_api_keys": "/organization/admin_api_keys",
        "/organization/audit_logs": "/organization/audit_logs",
        f"/organization/usage/completions?start_time={start}&group_by[]=model": "/organization/usage/completions",
        f"/organization/usage/embeddings?start_time={start}": "/organization/usage/embeddings",
        f"/organization/costs?start_time={start}&group_by[]=project_id": "/organization/costs",
    }
    for path, template in checked.items():
        operation = spec["paths"][template]["get"]
        schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
        document = dict(schema, components=spec["components"])
        body = _get(tollgate, path)
        errors = sorted(jsonschema.Draft202012Validator(document).iter_errors(body), key=str)
        assert not errors, f"GET {path}: " + "; ".join(sorted({f"{e.message[:150]} at {list(e.absolute_path)[-2:]}" for e in errors}))
