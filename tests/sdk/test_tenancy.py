"""Projects are tenants, with the official Python SDK: two projects behind one shared provider
credential run a realistic batch flow at the same time (upload a JSONL file, create a batch,
poll it, download its output), and each sees only its own files and batches."""

import io
import json
import threading

import openai
import pytest


@pytest.fixture(scope="module")
def projects(tollgate):
    tollgate.cli("projects", "create", "tenant-beta")
    a = tollgate.new_key("tenant alpha")
    b = tollgate.new_key("tenant beta", "--project", "tenant-beta")
    client = lambda key: openai.OpenAI(base_url=tollgate.base_url, api_key=key["value"], max_retries=0,
                                       _strict_response_validation=True)
    return client(a), client(b)


def batch_flow(client, tag, out):
    """Uploads a batch input, runs the batch, downloads the output: what the SDK docs show."""
    lines = "".join(json.dumps({"custom_id": f"{tag}-{i}", "method": "POST", "url": "/v1/chat/completions",
                                "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"{tag} secret {i}"}]}}) + "\n"
                    for i in range(3))
    uploaded = client.files.create(file=(f"{tag}.jsonl", io.BytesIO(lines.encode())), purpose="batch")
    batch = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h")
    for _ in range(50):
        batch = client.batches.retrieve(batch.id)
        if batch.status == "completed":
            break
    assert batch.status == "completed", batch
    output = client.files.content(batch.output_file_id).text
    out[tag] = {"input": uploaded.id, "batch": batch.id, "output": batch.output_file_id,
                "custom_ids": sorted(json.loads(line)["custom_id"] for line in output.splitlines())}


def test_two_projects_run_batches_at_once_and_see_only_their_own(projects):
    alpha, beta = projects
    out, errors = {}, []

    def run(client, tag):
        try:
            batch_flow(client, tag, out)
        except Exception as err:  # reported below, with the thread's project
            errors.append((tag, err))

    threads = [threading.Thread(target=run, args=(alpha, "alpha")), threading.Thread(target=run, args=(beta, "beta"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert out["alpha"]["custom_ids"] == ["alpha-0", "alpha-1", "alpha-2"]
    assert out["beta"]["custom_ids"] == ["beta-0", "beta-1", "beta-2"]
    for me, other, mine, theirs in [(alpha, beta, out["alpha"], out["beta"]), (beta, alpha, out["beta"], out["alpha"])]:
        files = {f.id for f in me.files.list()}
        assert {mine["input"], mine["output"]} <= files
        assert not {theirs["input"], theirs["output"]} & files
        batches = {b.id for b in me.batches.list()}
        assert mine["batch"] in batches and theirs["batch"] not in batches
        for call in (lambda: me.files.retrieve(theirs["output"]), lambda: me.files.content(theirs["output"]).text,
                     lambda: me.batches.retrieve(theirs["batch"]), lambda: me.batches.cancel(theirs["batch"]),
                     lambda: me.files.delete(theirs["input"]),
                     lambda: me.batches.create(input_file_id=theirs["input"], endpoint="/v1/chat/completions", completion_window="24h")):
            with pytest.raises(openai.NotFoundError) as refused:
                call()
            assert "No such" in refused.value.message


def test_the_sdk_auto_pager_walks_a_filtered_list(projects):
    alpha, beta = projects
    mine = {alpha.files.create(file=(f"p{i}.jsonl", io.BytesIO(b"{}\n")), purpose="batch").id for i in range(5)}
    for i in range(7):
        beta.files.create(file=(f"q{i}.jsonl", io.BytesIO(b"{}\n")), purpose="batch")
    # Pages of 2 (the SDK follows `has_more` and `after`): every one of alpha's, none of beta's.
    seen = [f.id for f in alpha.files.list(limit=2)]
    assert mine <= set(seen)
    assert len(seen) == len(set(seen))
    assert not set(seen) & {f.id for f in beta.files.list()}


def test_stored_responses_continue_only_in_their_project(projects):
    alpha, beta = projects
    first = alpha.responses.create(model="gpt-4o-mini", input="remember: alpha")
    follow = alpha.responses.create(model="gpt-4o-mini", input="and then?", previous_response_id=first.id)
    assert follow.id != first.id
    with pytest.raises(openai.NotFoundError):
        beta.responses.create(model="gpt-4o-mini", input="steal", previous_response_id=first.id)
    with pytest.raises(openai.NotFoundError):
        beta.responses.retrieve(first.id)
    assert alpha.responses.retrieve(first.id).id == first.id
    stream = alpha.responses.create(model="gpt-4o-mini", input="stream it", stream=True)
    streamed = None
    for event in stream:
        if event.type == "response.completed":
            streamed = event.response.id
    assert streamed and alpha.responses.retrieve(streamed).id == streamed
    with pytest.raises(openai.NotFoundError):
        beta.responses.delete(streamed)
    alpha.responses.delete(streamed)


def test_vector_stores_take_only_their_project_s_files(projects):
    alpha, beta = projects
    doc = alpha.files.create(file=("doc.txt", io.BytesIO(b"alpha notes")), purpose="assistants")
    store = alpha.vector_stores.create(name="alpha docs", file_ids=[doc.id])
    assert store.id in {s.id for s in alpha.vector_stores.list()}
    assert store.id not in {s.id for s in beta.vector_stores.list()}
    with pytest.raises(openai.NotFoundError):
        beta.vector_stores.create(name="steal", file_ids=[doc.id])
    with pytest.raises(openai.NotFoundError):
        beta.vector_stores.files.create(vector_store_id=store.id, file_id=doc.id)
    with pytest.raises(openai.NotFoundError):
        beta.responses.create(model="gpt-4o-mini", input="search",
                              tools=[{"type": "file_search", "vector_store_ids": [store.id]}])
