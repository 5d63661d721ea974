"""Streams as the official SDK reads them: it stops at `data: [DONE]` (or `response.completed`)
and hangs up, while the demo provider keeps its connection open a second longer
(`linger-after-done`). Each stream must be stored as one usage event with status 200 and the
provider's own token counts. Also: tool-call streams, a usage chunk in LiteLLM's shape, and
`models.retrieve` answered from Tollgate's catalog and the key's allow-list."""

import openai
import pytest

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"input": {"type": "string"}}}}}]
RESPONSE_TOOLS = [{"type": "function", "name": "get_weather", "parameters": {"type": "object", "properties": {"input": {"type": "string"}}}}]


@pytest.fixture(scope="module")
def key(tollgate):
    return tollgate.new_key("stream tests")


@pytest.fixture
def client(tollgate, key):
    return openai.OpenAI(base_url=tollgate.base_url, api_key=key["value"], max_retries=0, _strict_response_validation=True)


@pytest.mark.parametrize("tools", [False, True], ids=["text", "tool-call"])
def test_a_chat_stream_read_to_done_is_metered_with_the_provider_s_usage(tollgate, client, key, tools):
    extra = {"tools": TOOLS} if tools else {}
    messages = [{"role": "user", "content": "linger-after-done: what is the weather in Paris?"}]
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=messages, stream=True, stream_options={"include_usage": True}, **extra
    )
    chunks = list(stream)
    reported = chunks[-1].usage
    assert reported is not None and reported.prompt_tokens > 0
    if tools:
        calls = [c.choices[0].delta.tool_calls for c in chunks if c.choices and c.choices[0].delta.tool_calls]
        arguments = "".join(call[0].function.arguments or "" for call in calls)
        assert calls[0][0].function.name == "get_weather" and arguments.startswith('{"input":')
        assert chunks[-2].choices[0].finish_reason == "tool_calls"
    asked = tollgate.event(key["id"], stream.response.headers["x-request-id"])
    assert asked["status"] == 200, "read to [DONE] is delivered, not abandoned"
    assert (asked["input_tokens"], asked["output_tokens"]) == (reported.prompt_tokens, reported.completion_tokens)

    # The same stream, without asking for usage: none is shown, the provider's is still billed.
    quiet = client.chat.completions.create(model="gpt-4o-mini", messages=messages, stream=True, **extra)
    chunks = list(quiet)
    assert all(chunk.usage is None for chunk in chunks)
    event = tollgate.event(key["id"], quiet.response.headers["x-request-id"])
    assert event["status"] == 200
    assert (event["input_tokens"], event["output_tokens"]) == (reported.prompt_tokens, reported.completion_tokens)


@pytest.mark.parametrize("tools", [False, True], ids=["text", "tool-call"])
def test_a_responses_stream_read_to_completed_is_metered_with_the_provider_s_usage(tollgate, client, key, tools):
    extra = {"tools": RESPONSE_TOOLS} if tools else {}
    stream = client.responses.create(model="gpt-4o-mini", input="linger-after-done: the weather in Rome?", stream=True, **extra)
    events = list(stream)
    assert events[-1].type == "response.completed"
    usage = events[-1].response.usage
    if tools:
        call = events[-1].response.output[0]
        assert call.type == "function_call" and call.name == "get_weather"
        deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
        assert deltas == call.arguments
    event = tollgate.event(key["id"], stream.response.headers["x-request-id"])
    assert event["status"] == 200
    assert (event["input_tokens"], event["output_tokens"]) == (usage.input_tokens, usage.output_tokens)


def test_a_usage_chunk_in_litellm_s_shape_is_withheld(tollgate, client, key):
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "litellm-usage please"}], stream=True
    )
    chunks = list(stream)
    assert chunks and all(chunk.usage is None for chunk in chunks)
    assert all(chunk.choices for chunk in chunks)
    event = tollgate.event(key["id"], stream.response.headers["x-request-id"])
    assert event["status"] == 200 and event["input_tokens"] > 0 and event["output_tokens"] > 0


def test_models_retrieve_answers_from_the_catalog_and_the_key_s_allow_list(tollgate):
    key = tollgate.new_key("mini only", "--model", "gpt-4o-mini")
    client = openai.OpenAI(base_url=tollgate.base_url, api_key=key["value"], max_retries=0, _strict_response_validation=True)
    model = client.models.retrieve("gpt-4o-mini")
    assert model.id == "gpt-4o-mini" and model.object == "model"
    for other in ("o4-mini", "no-such-model"):
        with pytest.raises(openai.NotFoundError) as raised:
            client.models.retrieve(other)
        assert raised.value.code == "model_not_found"
    # Model lookups are not metered: once a later request's event is stored, it is the only one.
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    tollgate.event(key["id"], raw.headers["x-request-id"])
    assert [e["endpoint"] for e in tollgate.events(key["id"])] == ["/v1/chat/completions"]
