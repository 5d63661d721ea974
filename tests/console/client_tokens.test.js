// Client tokens in real Chromium: a static page on another localhost origin asks its own server
// (a sample app backend holding a project key) for an `ek_` token, then streams a chat completion
// straight from Tollgate with `fetch`, as the README shows. The stream arrives and is metered to
// the server's key, and it holds a Realtime session over a browser WebSocket (the token as a
// subprotocol). A page on an origin the token does not name is stopped by the browser (the
// preflight is refused) and by Tollgate, its WebSocket too; a token over its request cap and an expired token are
// refused, with an answer the page can read.
// Needs TOLLGATE_BIN (scripts/test.sh sets it) and CHROMIUM (default /usr/bin/chromium).

const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { spawn, execFileSync } = require("node:child_process");
const fs = require("node:fs");
const http = require("node:http");
const os = require("node:os");
const path = require("node:path");
const readline = require("node:readline");
const { chromium } = require("playwright-core");

const BIN = process.env.TOLLGATE_BIN;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

let dir;
let server;
let tollgate; // http://127.0.0.1:PORT
let key; // the app backend's project key { id, value }
let browser;
const apps = [];

function cli(...args) {
  return execFileSync(BIN, args, { cwd: dir, env: { PATH: process.env.PATH, HOME: dir }, encoding: "utf8", timeout: 60_000 });
}

// The page: gets a token from its own server, then streams from Tollgate with it.
const PAGE = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Chat</title></head>
<body><main><h1>Chat</h1><output id="out"></output></main>
<script>
window.run = async (tollgate, grant) => {
  const minted = await fetch("/token", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(grant) });
  const { value } = await minted.json();
  return window.chat(tollgate, value);
};
window.chat = async (tollgate, token) => {
  let response;
  try {
    response = await fetch(tollgate + "/v1/chat/completions", {
      method: "POST",
      headers: { authorization: "Bearer " + token, "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-4o-mini", stream: true, messages: [{ role: "user", content: "hello from a browser" }] }),
    });
  } catch (err) {
    return { blocked: String(err) };
  }
  if (!response.ok) return { status: response.status, error: (await response.json()).error, requestId: response.headers.get("x-request-id") };
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let text = "", buffer = "", done = false;
  while (!done) {
    const part = await reader.read();
    if (part.done) break;
    buffer += decoder.decode(part.value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\\n\\n")) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const data = event.replace(/^data: /, "");
      if (data === "[DONE]") { done = true; break; }
      const chunk = JSON.parse(data);
      text += (chunk.choices[0] && chunk.choices[0].delta.content) || "";
    }
  }
  document.getElementById("out").textContent = text;
  return { status: response.status, text, requestId: response.headers.get("x-request-id") };
};
// A Realtime session as OpenAI's browser SDK opens one: the token as a subprotocol.
window.realtime = (tollgate, token) => new Promise((resolve) => {
  const socket = new WebSocket(tollgate.replace(/^http/, "ws") + "/v1/realtime?model=gpt-realtime", ["realtime", "openai-insecure-api-key." + token]);
  let text = "";
  socket.onopen = () => {
    socket.send(JSON.stringify({ type: "conversation.item.create", item: { type: "message", role: "user", content: [{ type: "input_text", text: "hello by voice" }] } }));
    socket.send(JSON.stringify({ type: "response.create" }));
  };
  socket.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.type === "response.output_text.delta") text += event.delta;
    if (event.type === "response.done") {
      socket.close();
      resolve({ protocol: socket.protocol, text, usage: event.response.usage });
    }
  };
  socket.onerror = () => resolve({ failed: true });
});
</script></body></html>`;

/** A sample app: serves the page, and mints tokens for it with the project key (server side). */
async function startApp(allowedOrigin) {
  const app = http.createServer(async (req, res) => {
    if (req.method === "GET" && req.url === "/") {
      res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
      return res.end(PAGE);
    }
    if (req.method === "POST" && req.url === "/token") {
      let body = "";
      for await (const part of req) body += part;
      const grant = JSON.parse(body || "{}");
      // The README's server-side call.
      const minted = await fetch(`${tollgate}/v1/realtime/client_secrets`, {
        method: "POST",
        headers: { authorization: `Bearer ${key.value}`, "content-type": "application/json" },
        body: JSON.stringify({ allowed_origins: [allowedOrigin(app)], ...grant }),
      });
      res.writeHead(minted.status, { "content-type": "application/json" });
      return res.end(await minted.text());
    }
    res.writeHead(404).end();
  });
  await new Promise((resolve) => app.listen(0, "127.0.0.1", resolve));
  apps.push(app);
  return { app, origin: `http://localhost:${app.address().port}` };
}

before(async () => {
  assert.ok(BIN, "set TOLLGATE_BIN to the tollgate binary (scripts/test.sh does)");
  assert.ok(fs.existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: apt-get install -y chromium (scripts/test.sh does)`);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "tollgate-tokens-"));
  server = spawn(BIN, ["serve", "--demo", "--listen", "127.0.0.1:0"], { cwd: dir, env: { PATH: process.env.PATH, HOME: dir }, stdio: ["ignore", "pipe", "ignore"] });
  const lines = readline.createInterface({ input: server.stdout });
  tollgate = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("tollgate serve did not start")), 30_000);
    lines.on("line", (line) => {
      const found = /Tollgate listening on (http:\/\/\S+)/.exec(line);
      if (found) {
        clearTimeout(timer);
        resolve(found[1]);
      }
    });
  });
  key = JSON.parse(cli("keys", "create", "--name", "app backend", "--json"));
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
});

after(async () => {
  if (browser) await browser.close();
  for (const app of apps) app.close();
  if (server) server.kill("SIGTERM");
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

async function pageAt(origin) {
  const page = await (await browser.newContext()).newPage();
  await page.goto(origin + "/");
  return page;
}

test("a page streams a chat completion with a token from its server; wrong origins, spent and expired tokens are refused", async () => {
  const own = await startApp((app) => `http://localhost:${app.address().port}`);
  // A token that expires in 10 s, minted first: its expiry is checked last.
  const page = await pageAt(own.origin);
  const short = await page.evaluate(async () => (await fetch("/token", { method: "POST", body: JSON.stringify({ expires_after: { seconds: 10 } }) })).json());
  assert.match(short.value, /^ek_[A-Za-z0-9]{49}$/);

  const streamed = await page.evaluate(([t]) => window.run(t, { max_requests: 1 }), [tollgate]);
  assert.equal(streamed.status, 200, JSON.stringify(streamed));
  assert.match(streamed.text, /simulated/);
  assert.equal(await page.locator("#out").textContent(), streamed.text);
  // Metered to the key whose server minted the token.
  const deadline = Date.now() + 5_000;
  let events = [];
  while (Date.now() < deadline) {
    events = JSON.parse(cli("usage", "--events", "--key", key.id, "--limit", "10", "--json")).data.filter((e) => e.request_id === streamed.requestId);
    if (events.length) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.equal(events.length, 1, "one usage event, on the app's key");
  assert.ok(events[0].output_tokens > 0, JSON.stringify(events[0]));

  // The Realtime API over a browser WebSocket, with a token the page got from its server.
  const voice = await page.evaluate(async () => (await fetch("/token", { method: "POST", body: JSON.stringify({ session: { type: "realtime", model: "gpt-realtime" } }) })).json());
  const session = await page.evaluate(([t, v]) => window.realtime(t, v), [tollgate, voice.value]);
  assert.equal(session.protocol, "realtime", JSON.stringify(session));
  assert.match(session.text, /simulated/);
  assert.ok(session.usage.input_tokens > 0 && session.usage.output_tokens > 0);

  // Over its cap (one request): refused, and the page can read why.
  const token = await page.evaluate(async () => (await fetch("/token", { method: "POST", body: JSON.stringify({ max_requests: 1 }) })).json());
  assert.equal((await page.evaluate(([t, v]) => window.chat(t, v), [tollgate, token.value])).status, 200);
  const spent = await page.evaluate(([t, v]) => window.chat(t, v), [tollgate, token.value]);
  assert.equal(spent.status, 429, JSON.stringify(spent));
  assert.equal(spent.error.code, "client_token_exhausted");

  // A page on another origin, holding a token minted for the first: the browser stops it.
  const other = await startApp(() => own.origin);
  const elsewhere = await pageAt(other.origin);
  const stolen = await elsewhere.evaluate(([t]) => window.run(t, {}), [tollgate]);
  assert.ok(stolen.blocked, JSON.stringify(stolen));
  // Nor can it open a Realtime session with a token minted for the first page.
  const other_voice = await elsewhere.evaluate(([t, v]) => window.realtime(t, v), [tollgate, voice.value]);
  assert.ok(other_voice.failed, JSON.stringify(other_voice));
  // And Tollgate refuses it even without a browser's help.
  const forged = await fetch(`${tollgate}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${short.value}`, "content-type": "application/json", origin: other.origin },
    body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] }),
  });
  assert.equal(forged.status, 403);
  assert.equal((await forged.json()).error.code, "origin_not_allowed");

  // The short token, once its ten seconds are over.
  const wait = short.expires_at * 1000 - Date.now();
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait + 50));
  const expired = await page.evaluate(([t, v]) => window.chat(t, v), [tollgate, short.value]);
  assert.equal(expired.status, 401, JSON.stringify(expired));
  assert.equal(expired.error.code, "client_token_expired");
});
