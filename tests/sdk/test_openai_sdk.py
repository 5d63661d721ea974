"""The official OpenAI Python SDK against `tollgate serve --demo`, unchanged but for its base URL
and key, with strict response validation: every response must match the SDK's own types."""

import json

import openai
import pytest


@pytest.fixture(scope="module")
def key(tollgate):
    return tollgate.new_key("sdk tests")


@pytest.fixture
def client(tollgate, key):
    return openai.OpenAI(base_url=tollgate.base_url, api_key=key["value"], max_retries=0, _strict_response_validation=True)


def test_chat_completion(client, key):
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello"}])
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content.startswith("[simulated]")
    assert completion.usage.prompt_tokens > 0 and completion.usage.completion_tokens > 0
    assert completion._request_id.startswith("req_")


def test_chat_completion_raw_headers(client, tollgate):
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["openai-version"] == "2020-10-01"
    assert raw.headers["openai-project"].startswith("proj_")
    assert int(raw.headers["openai-processing-ms"]) >= 0
    assert raw.parse().choices[0].finish_reason == "stop"


def test_streaming_without_usage_option_has_no_usage_chunk(client):
    stream = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "Stream please"}], stream=True)
    chunks = list(stream)
    assert len(chunks) > 5
    assert all(chunk.choices for chunk in chunks), "Tollgate withholds the usage chunk it asked for itself"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert text.startswith("[simulated]")


def test_streaming_with_include_usage(client):
    stream = client.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Stream please"}], stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens > 0
    assert all(chunk.usage is None for chunk in chunks[:-1])


def test_responses(client):
    response = client.responses.create(model="gpt-4.1-mini", input="Write one line")
    assert response.status == "completed"
    assert response.output_text.startswith("[simulated]")
    assert response.usage.input_tokens > 0
    events = list(client.responses.create(model="gpt-4.1-mini", input="Write one line", stream=True))
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas == events[-1].response.output_text


def test_embeddings(client, tollgate, key):
    result = client.embeddings.create(model="text-embedding-3-small", input=["first text", "second text"], encoding_format="float")
    assert len(result.data) == 2
    assert len(result.data[0].embedding) == 256
    assert result.data[0].embedding != result.data[1].embedding
    assert result.usage.prompt_tokens == 4
    # The SDK's default asks for base64 and decodes it itself; strict validation checks the
    # undecoded string first (as it would against OpenAI), so this one call goes unvalidated.
    lenient = openai.OpenAI(base_url=tollgate.base_url, api_key=key["value"], max_retries=0)
    decoded = lenient.embeddings.create(model="text-embedding-3-small", input="first text", dimensions=64)
    assert len(decoded.data[0].embedding) == 64
    assert sum(x * x for x in decoded.data[0].embedding) == pytest.approx(1.0, abs=1e-3), "a decoded unit vector"


def test_legacy_completions(client):
    completion = client.completions.create(model="gpt-4o-mini", prompt="Once upon a time", max_tokens=5)
    assert completion.object == "text_completion"
    assert len(completion.choices[0].text.split()) == 5


def test_models_list(client):
    ids = [model.id for model in client.models.list()]
    assert "gpt-4o-mini" in ids and "text-embedding-3-small" in ids and "o3-mini" in ids


def test_authentication_error(tollgate):
    bad = openai.OpenAI(base_url=tollgate.base_url, api_key="sk-proj-not-a-real-key-at-all-0000000000000000", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as raised:
        bad.models.list()
    assert raised.value.status_code == 401
    assert raised.value.code == "invalid_api_key"
    assert "not-a-real-key" not in raised.value.message


def test_mismatched_project_header(tollgate, key):
    client = openai.OpenAI(base_url=tollgate.base_url, api_key=key["value"], project="proj_000000000000000000000000", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as raised:
        client.models.list()
    assert raised.value.code == "mismatched_project"


def test_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError) as raised:
        client.chat.completions.create(model="gpt-99", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.code == "model_not_found"
    assert "gpt-99" in raised.value.message


def test_unreachable_provider_is_an_api_status_error(client):
    with pytest.raises(openai.APIStatusError) as raised:
        client.chat.completions.create(model="o3-mini", messages=[{"role": "user", "content": "hi"}])
    assert raised.value.status_code == 502
    assert isinstance(raised.value, openai.InternalServerError)
    assert "could not connect to provider down" in raised.value.message


def test_usage_is_metered(tollgate, client, key):
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "count me"}])
    usage = raw.parse().usage
    event = tollgate.event(key["id"], raw.headers["x-request-id"])
    assert event["status"] == 200 and event["cost"] > 0
    assert (event["input_tokens"], event["output_tokens"]) == (usage.prompt_tokens, usage.completion_tokens)
    report = json.loads(tollgate.cli("usage", "--by", "key", "--json"))
    rows = [r for r in report["data"] if r["group"] == key["id"]]
    assert rows and rows[0]["requests"] >= 2 and rows[0]["cost"] > 0, report
