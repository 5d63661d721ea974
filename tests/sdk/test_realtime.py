"""Client tokens and the Realtime API with the official OpenAI Python SDK, unchanged but for its
base URL and key: a server mints an `ek_` token with `client.realtime.client_secrets.create`
(strict response validation: the answer must match the SDK's types), and a client holding only
that token holds a Realtime session over the SDK's WebSocket (`client.realtime.connect`), two
responses long, each metered on the minting key exactly as the SDK saw its usage."""

import time

import openai
import pytest


@pytest.fixture(scope="module")
def key(tollgate):
    return tollgate.new_key("realtime tests")


def server_client(tollgate, key):
    return openai.OpenAI(base_url=tollgate.base_url, api_key=key["value"], max_retries=0, _strict_response_validation=True)


def converse(client, turns):
    """Holds a session: one user message and one response per turn; the SDK's `response.done`
    events."""
    done = []
    with client.realtime.connect(model="gpt-realtime") as connection:
        created = connection.recv()
        assert created.type == "session.created"
        for turn in turns:
            connection.conversation.item.create(item={"type": "message", "role": "user", "content": [{"type": "input_text", "text": turn}]})
            connection.response.create()
            text = ""
            for event in connection:
                if event.type == "response.output_text.delta":
                    text += event.delta
                if event.type == "response.done":
                    assert text.startswith("[simulated]"), text
                    done.append(event)
                    break
    return done


def test_a_minted_token_holds_a_metered_realtime_session(tollgate, key):
    minted = server_client(tollgate, key).realtime.client_secrets.create(
        expires_after={"anchor": "created_at", "seconds": 600},
        session={"type": "realtime", "model": "gpt-realtime", "instructions": "Answer briefly."},
        extra_body={"max_requests": 5},
    )
    assert minted.value.startswith("ek_")
    assert minted.session.type == "realtime"
    browser_side = openai.OpenAI(base_url=tollgate.base_url, api_key=minted.value, max_retries=0)
    done = converse(browser_side, ["Hello there", "And again"])
    assert len(done) == 2
    events = {}
    for response in done:
        usage = response.response.usage
        assert usage.input_tokens > 0 and usage.output_tokens > 0
        events[response.response.id] = usage
    # Stored by the metering writer, off the session's path (within 50 ms when idle).
    deadline = time.time() + 5
    while True:
        stored = [e for e in tollgate.events(key["id"]) if e["endpoint"] == "/v1/realtime"]
        if len(stored) >= 2 or time.time() > deadline:
            break
        time.sleep(0.05)
    assert len(stored) == 2, stored
    seen = sorted((u.input_tokens, u.output_tokens) for u in events.values())
    metered = sorted((e["input_tokens"], e["output_tokens"]) for e in stored)
    assert metered == seen
    assert all(e["model_served"] == "gpt-realtime" for e in stored)
    # The token cannot mint tokens, and a key-less client is refused before any session.
    with pytest.raises(openai.PermissionDeniedError):
        browser_side.realtime.client_secrets.create(session={"type": "realtime", "model": "gpt-realtime"})


def test_a_scope_the_key_lacks_is_refused_at_minting(tollgate):
    chat_only = tollgate.new_key("chat only", "--permissions", "restricted", "--scope", "chat.completions:write")
    with pytest.raises(openai.BadRequestError) as refused:
        server_client(tollgate, chat_only).realtime.client_secrets.create(extra_body={"scopes": ["realtime"]})
    assert refused.value.body["param"] == "scopes"
