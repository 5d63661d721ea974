// The official OpenAI Node SDK against `tollgate serve --demo`, changed in nothing but its base URL
// and key. Streams with tool calls, read as apps read them (to the end, or `break` at the final
// event while the provider keeps its connection open: `linger-after-done`), must each be stored as
// one usage event with status 200 and the provider's own token counts; a usage chunk in LiteLLM's
// shape is withheld; models.retrieve is answered from Tollgate's catalog and the key's allow-list.
// Needs TOLLGATE_BIN (scripts/test.sh sets it).

const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { spawn, execFileSync } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const readline = require("node:readline");
const { OpenAI, NotFoundError } = require("openai");

const BIN = process.env.TOLLGATE_BIN;
const TOOLS = [{ type: "function", function: { name: "get_weather", parameters: { type: "object", properties: { input: { type: "string" } } } } }];
const RESPONSE_TOOLS = [{ type: "function", name: "get_weather", parameters: { type: "object", properties: { input: { type: "string" } } } }];

let dir;
let server;
let baseURL;

function cli(...args) {
  return execFileSync(BIN, args, { cwd: dir, env: { PATH: process.env.PATH, HOME: dir }, encoding: "utf8", timeout: 60_000 });
}

function newKey(name, ...extra) {
  return JSON.parse(cli("keys", "create", "--name", name, "--json", ...extra));
}

function clientFor(key) {
  return new OpenAI({ baseURL, apiKey: key.value, maxRetries: 0 });
}

/** The usage event of one request, once the metering writer has stored it. */
async function eventOf(key, requestId) {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const events = JSON.parse(cli("usage", "--events", "--key", key.id, "--limit", "100", "--json")).data;
    const found = events.filter((e) => e.request_id === requestId);
    if (found.length > 0 || Date.now() > deadline) {
      assert.equal(found.length, 1, `one event for ${requestId}`);
      return found[0];
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

before(async () => {
  assert.ok(BIN, "set TOLLGATE_BIN to the tollgate binary (scripts/test.sh does)");
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "tollgate-node-"));
  server = spawn(BIN, ["serve", "--demo", "--listen", "127.0.0.1:0"], { cwd: dir, env: { PATH: process.env.PATH, HOME: dir }, stdio: ["ignore", "pipe", "ignore"] });
  const lines = readline.createInterface({ input: server.stdout });
  baseURL = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("tollgate serve did not start")), 30_000);
    lines.on("line", (line) => {
      const found = /Tollgate listening on (http:\/\/\S+)/.exec(line);
      if (found) {
        clearTimeout(timer);
        resolve(found[1] + "/v1");
      }
    });
  });
});

after(() => {
  server.kill("SIGTERM");
  fs.rmSync(dir, { recursive: true, force: true });
});

for (const tools of [false, true]) {
  test(`a chat stream (${tools ? "tool call" : "text"}) is metered once with the provider's usage`, async () => {
    const key = newKey(`node chat ${tools}`);
    const client = clientFor(key);
    const body = { model: "gpt-4o-mini", messages: [{ role: "user", content: "linger-after-done: the weather in Oslo?" }], stream: true, ...(tools ? { tools: TOOLS } : {}) };
    const { data: asked, response } = await client.chat.completions.create({ ...body, stream_options: { include_usage: true } }).withResponse();
    const chunks = [];
    for await (const chunk of asked) chunks.push(chunk);
    const reported = chunks[chunks.length - 1].usage;
    assert.ok(reported.prompt_tokens > 0);
    if (tools) {
      const args = chunks.map((c) => c.choices[0]?.delta?.tool_calls?.[0]?.function?.arguments ?? "").join("");
      assert.match(args, /^\{"input":/);
    }
    const event = await eventOf(key, response.headers.get("x-request-id"));
    assert.equal(event.status, 200);
    assert.deepEqual([event.input_tokens, event.output_tokens], [reported.prompt_tokens, reported.completion_tokens]);

    // Not asked for: no chunk carries usage, the provider's is billed all the same.
    const { data: quiet, response: quietResponse } = await client.chat.completions.create(body).withResponse();
    const quietChunks = [];
    for await (const chunk of quiet) quietChunks.push(chunk);
    assert.ok(quietChunks.every((c) => !c.usage), "usage shown to a client that did not ask");
    const quietEvent = await eventOf(key, quietResponse.headers.get("x-request-id"));
    assert.equal(quietEvent.status, 200);
    assert.deepEqual([quietEvent.input_tokens, quietEvent.output_tokens], [reported.prompt_tokens, reported.completion_tokens]);
  });

  test(`a responses stream (${tools ? "tool call" : "text"}) left at response.completed is delivered`, async () => {
    const key = newKey(`node responses ${tools}`);
    const client = clientFor(key);
    const { data: stream, response } = await client.responses
      .create({ model: "gpt-4o-mini", input: "linger-after-done: the weather in Lima?", stream: true, ...(tools ? { tools: RESPONSE_TOOLS } : {}) })
      .withResponse();
    let completed;
    for await (const event of stream) {
      if (event.type === "response.completed") {
        completed = event.response;
        break; // what apps do; the SDK then aborts the request
      }
    }
    if (tools) assert.equal(completed.output[0].type, "function_call");
    const event = await eventOf(key, response.headers.get("x-request-id"));
    assert.equal(event.status, 200, "the final event was delivered");
    assert.deepEqual([event.input_tokens, event.output_tokens], [completed.usage.input_tokens, completed.usage.output_tokens]);
  });
}

test("a usage chunk in LiteLLM's shape is withheld", async () => {
  const key = newKey("node litellm");
  const { data: stream, response } = await clientFor(key)
    .chat.completions.create({ model: "gpt-4o-mini", messages: [{ role: "user", content: "litellm-usage please" }], stream: true })
    .withResponse();
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  assert.ok(chunks.length > 3 && chunks.every((c) => !c.usage && c.choices.length > 0));
  const event = await eventOf(key, response.headers.get("x-request-id"));
  assert.equal(event.status, 200);
  assert.ok(event.input_tokens > 0 && event.output_tokens > 0);
});

test("models.retrieve answers from the catalog and the key's allow-list", async () => {
  const key = newKey("node mini only", "--model", "gpt-4o-mini");
  const client = clientFor(key);
  const model = await client.models.retrieve("gpt-4o-mini");
  assert.equal(model.id, "gpt-4o-mini");
  assert.equal(model.object, "model");
  for (const other of ["o4-mini", "no-such-model"]) {
    await assert.rejects(client.models.retrieve(other), (err) => err instanceof NotFoundError && err.code === "model_not_found");
  }
});
