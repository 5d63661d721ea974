"""The OpenAI Python SDK against Tollgate's rate limits and budgets: it raises RateLimitError with
OpenAI's message when its retries are off, waits out a rate limit with its own retries, and does
not retry a spent budget."""

import re
import time

import openai
import pytest

MESSAGES = [{"role": "user", "content": "hi"}]


def client_for(tollgate, key, retries):
    return openai.OpenAI(base_url=tollgate.base_url, api_key=key["value"], max_retries=retries, _strict_response_validation=True)


def test_a_tiny_rpm_raises_rate_limit_error_then_the_sdk_retries_succeed(tollgate):
    key = tollgate.new_key("tiny rpm", "--rpm", "20")
    client = client_for(tollgate, key, retries=0)
    for remaining in range(19, -1, -1):
        raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=5)
        assert raw.headers["x-ratelimit-limit-requests"] == "20"
        assert raw.headers["x-ratelimit-remaining-requests"] == str(remaining)
        assert raw.parse().choices[0].message.content.startswith("[simulated]")

    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=5)
    error = raised.value
    assert error.status_code == 429
    assert error.code == "rate_limit_exceeded"
    assert error.type == "requests"
    assert re.fullmatch(
        r"Rate limit reached for gpt-4o-mini in API key key_\w{20} on requests per min \(RPM\): "
        r"Limit 20, Used 20, Requested 1\. Please try again in \d+(\.\d+)?m?s\.",
        error.body["message"],
    ), error.body["message"]
    wait_ms = int(error.response.headers["retry-after-ms"])
    assert 0 < wait_ms <= 3_000, "one request refills every 3 s"

    # With its retries on, the SDK waits as told (retry-after-ms) and gets through.
    started = time.monotonic()
    completion = client_for(tollgate, key, retries=3).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=5)
    assert completion.choices[0].message.content.startswith("[simulated]")
    assert time.monotonic() - started >= 0.5, "it had to wait for the limit to refill"


def test_a_spent_budget_is_insufficient_quota_and_not_retried(tollgate):
    key = tollgate.new_key("tiny budget", "--budget", "0.000001")
    client = client_for(tollgate, key, retries=3)
    # The first request fits (nothing was spent yet) and spends more than the whole budget.
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=5)
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as raised:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=5)
    assert time.monotonic() - started < 1.0, "x-should-retry: false stops the SDK's retries"
    error = raised.value
    assert error.type == "insufficient_quota"
    assert error.code == "key_spend_limit_exceeded"
    assert "has reached its monthly spend limit of $0.000001" in error.body["message"]
    assert "retry-after" not in error.response.headers
