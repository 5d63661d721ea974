// The web console in real Chromium (Debian's `chromium`, driven by playwright-core), against
// `tollgate serve --demo`: the seed's story end to end, as a person does it. Sign in with the
// printed password; create a key and read it once from its dialog (never again in a page or an
// API answer); call the API with it; see the request in the usage chart, table and CSV; set a
// budget and see it used; revoke the key and see the API refuse it. Then the guards: a reader
// sees no create button and is refused (403) when posting anyway; a form without the
// anti-forgery token is refused; the sixth wrong password in a row is throttled; the keys page
// at 375 px does not scroll sideways. axe-core runs in every page visited (no serious or
// critical violations). Screenshots go to target/console-screenshots/.
// Needs TOLLGATE_BIN (scripts/test.sh sets it) and CHROMIUM (default /usr/bin/chromium).

const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { spawn } = require("node:child_process");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const readline = require("node:readline");
const { chromium } = require("playwright-core");

const BIN = process.env.TOLLGATE_BIN;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const AXE = require.resolve("axe-core/axe.min.js");
const SHOTS = path.join(__dirname, "..", "..", "target", "console-screenshots");

let dir;
let server;
let base;
let signIn; // { url, email, password }
let adminKey;
let browser;
const pagesChecked = new Set();

before(async () => {
  assert.ok(BIN, "set TOLLGATE_BIN to the tollgate binary (scripts/test.sh does)");
  assert.ok(fs.existsSync(CHROMIUM), `no Chromium at ${CHROMIUM}: apt-get install -y chromium (scripts/test.sh does)`);
  fs.mkdirSync(SHOTS, { recursive: true });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), "tollgate-console-"));
  server = spawn(BIN, ["serve", "--demo", "--listen", "127.0.0.1:0"], {
    cwd: dir,
    env: { PATH: process.env.PATH, HOME: dir },
    stdio: ["ignore", "pipe", "ignore"],
  });
  const lines = readline.createInterface({ input: server.stdout });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("tollgate serve did not start")), 30_000);
    lines.on("line", (line) => {
      const login = /Sign in\s+(\S+) as (\S+) with password (\S+)/.exec(line);
      if (login) signIn = { url: login[1], email: login[2], password: login[3] };
      const admin = /Admin key\s+(\S+)/.exec(line);
      if (admin) adminKey = admin[1];
      const listening = /Tollgate listening on (http:\/\/\S+)/.exec(line);
      if (listening) {
        clearTimeout(timer);
        base = listening[1];
        resolve();
      }
    });
  });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox", "--disable-dev-shm-usage"] });
});

after(async () => {
  if (browser) await browser.close();
  if (server) server.kill("SIGTERM");
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

/** A browser context like a person's; CSP is bypassed only so that axe-core can be injected. */
async function newPage(viewport = { width: 1280, height: 900 }) {
  const context = await browser.newContext({ viewport, bypassCSP: true, acceptDownloads: true });
  return context.newPage();
}

/** axe-core in the page as it is now: no serious or critical violations. */
async function axe(page, label) {
  await page.addScriptTag({ path: AXE });
  const result = await page.evaluate(async () => window.axe.run(document, { resultTypes: ["violations"] }));
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(
    bad.map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).slice(0, 3).join(" | ")}`),
    [],
    `axe in ${label}`,
  );
  pagesChecked.add(label);
}

async function signInAs(page, email, password) {
  await page.goto(`${base}/console/login`);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
}

async function chat(secret) {
  return fetch(`${base}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hello from the console test" }] }),
  });
}

async function adminGet(pathAndQuery) {
  const response = await fetch(`${base}/v1/organization${pathAndQuery}`, { headers: { authorization: `Bearer ${adminKey}` } });
  assert.equal(response.status, 200, pathAndQuery);
  return response.text();
}

test("an owner signs in, makes a key, sees it used and spent, and revokes it", async () => {
  const page = await newPage();
  // The printed sign-in line opens the console.
  assert.ok(signIn, "the first run printed a sign-in line");
  assert.equal(signIn.url, `${base}/console/login`);
  await page.goto(signIn.url);
  await axe(page, "sign-in");
  await page.getByLabel("Email").fill(signIn.email);
  await page.getByLabel("Password").fill(signIn.password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(`${base}/console/api-keys`);
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === "tollgate_session");
  assert.ok(session && session.httpOnly && session.sameSite === "Lax", JSON.stringify(cookies));
  await axe(page, "API keys");

  // Create new secret key → the "Save your key" dialog, the only place the secret appears.
  await page.getByRole("link", { name: "Create new secret key" }).click();
  await axe(page, "create key form");
  await page.getByLabel(/^Name/).fill("Browser key");
  await page.getByRole("button", { name: "Create secret key" }).click();
  const dialog = page.getByRole("dialog", { name: "Save your key" });
  await dialog.waitFor();
  const secret = await dialog.getByLabel(/Secret key for/).inputValue();
  assert.match(secret, /^sk-proj-[A-Za-z0-9]{40,}/);
  await page.screenshot({ path: path.join(SHOTS, "key-dialog.png") });
  await axe(page, "Save your key dialog");
  const keyId = (await dialog.locator("code").first().textContent()).trim();
  assert.match(keyId, /^key_/);
  await dialog.getByRole("link", { name: "Done" }).click();
  await page.waitForURL(`${base}/console/api-keys/${keyId}`);
  // Never again: not in any page, not in any admin API answer.
  for (const where of [`/console/api-keys/${keyId}`, "/console/api-keys", "/console/audit", "/console/usage"]) {
    await page.goto(base + where);
    assert.ok(!(await page.content()).includes(secret), `the secret is in ${where}`);
  }
  for (const where of ["/x-tollgate/keys?limit=100", "/audit_logs?limit=100", `/x-tollgate/keys/${keyId}`]) {
    assert.ok(!(await adminGet(where)).includes(secret), `the secret is in the admin API's ${where}`);
  }
  await page.goto(`${base}/console/api-keys`);
  await page.screenshot({ path: path.join(SHOTS, "keys.png"), fullPage: true });

  // The key works through the demo provider…
  const answer = await chat(secret);
  assert.equal(answer.status, 200, await answer.text());
  // …and the request shows in the usage chart, table and CSV. Metering writes off the request
  // path in small batches, so the page is reloaded until the write lands (bounded).
  const deadline = Date.now() + 10_000;
  for (;;) {
    await page.goto(`${base}/console/usage`);
    if ((await page.locator("#usage-table tbody tr", { hasText: "gpt-4o-mini" }).count()) > 0) break;
    assert.ok(Date.now() < deadline, "the request never showed on the usage page");
    await page.waitForTimeout(200);
  }
  assert.equal((await page.locator("#total-requests").textContent()).trim(), "1");
  assert.equal(await page.locator("svg.chart rect").count() > 0, true, "the chart has a bar");
  await axe(page, "usage");
  await page.screenshot({ path: path.join(SHOTS, "usage.png"), fullPage: true });
  const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("link", { name: "Export CSV" }).click()]);
  const csv = fs.readFileSync(await download.path(), "utf8");
  assert.match(csv, /^bucket_start,model,requests,input_tokens,output_tokens,cost_usd\r\n/);
  assert.match(csv, /,gpt-4o-mini,1,\d+,\d+,0\.\d{6}\r\n/);
  // The same numbers as the admin API's usage endpoint.
  const start = Math.floor(Date.now() / 1000) - 86_400;
  const usage = JSON.parse(await adminGet(`/usage/completions?start_time=${start}&bucket_width=1d&limit=2`));
  const requests = usage.data.flatMap((b) => b.results).reduce((n, r) => n + r.num_model_requests, 0);
  assert.equal(requests, 1);

  // A budget on the key, used by that request.
  await page.goto(`${base}/console/limits`);
  await axe(page, "limits");
  const budget = page.locator("form", { has: page.getByRole("button", { name: "Set budget" }) });
  await budget.getByLabel("For").selectOption("key");
  await budget.getByLabel(/Project or key/).fill(keyId);
  await budget.getByLabel("Limit in US dollars").fill("0.01");
  await budget.getByLabel(/Alert at/).fill("50, 100");
  await budget.getByRole("button", { name: "Set budget" }).click();
  await page.waitForURL(`${base}/console/limits`);
  const row = page.locator("table.budgets tr", { hasText: keyId });
  await row.waitFor();
  const used = await row.locator("meter").getAttribute("value");
  assert.ok(Number(used) > 0, `the budget shows the spend (meter value ${used})`);

  // Revoke in the console; the API refuses the key from the next request.
  await page.goto(`${base}/console/api-keys/${keyId}`);
  await axe(page, "key page");
  await page.getByRole("link", { name: "Revoke key…" }).click();
  await axe(page, "revoke confirmation");
  await page.getByRole("button", { name: "Revoke key" }).click();
  await page.waitForURL(`${base}/console/api-keys/${keyId}`);
  assert.equal((await page.locator(".status-revoked").first().textContent()).trim(), "revoked");
  const refused = await chat(secret);
  assert.equal(refused.status, 401);

  // Every other section renders and passes axe.
  for (const [where, label] of [
    ["/console/projects", "projects"],
    ["/console/members", "members"],
    ["/console/service-accounts", "service accounts"],
    ["/console/audit", "audit log"],
    ["/console/settings", "settings"],
    ["/console/account", "account"],
  ]) {
    await page.goto(base + where);
    await axe(page, label);
  }
  await page.context().close();
});

test("a reader invited by link sees no create button and is refused when posting anyway", async () => {
  const owner = await newPage();
  await signInAs(owner, signIn.email, signIn.password);
  await owner.goto(`${base}/console/members`);
  const invite = owner.locator("form", { has: owner.getByRole("button", { name: "Create invite link" }) });
  await invite.getByLabel("Email").fill("reader@example.com");
  await invite.getByLabel("Role").selectOption("reader");
  await invite.getByRole("button", { name: "Create invite link" }).click();
  const link = await owner.locator("#invite-link").inputValue();
  assert.match(link, /\/console\/invite#tgi_/);
  await axe(owner, "invite link dialog");
  await owner.context().close();

  const reader = await newPage();
  await reader.goto(link);
  await axe(reader, "accept invite");
  assert.match(await reader.getByLabel(/Invite code/).inputValue(), /^tgi_/, "the link's token is filled in");
  await reader.getByLabel("Your name").fill("Rea Der");
  await reader.getByLabel("Password").fill("a reader's long password");
  await reader.getByRole("button", { name: "Join" }).click();
  await reader.waitForURL(/\/console\/login\?joined=1/);
  await reader.getByLabel("Email").fill("reader@example.com");
  await reader.getByLabel("Password").fill("a reader's long password");
  await reader.getByRole("button", { name: "Sign in" }).click();
  await reader.waitForURL(`${base}/console/api-keys`);
  assert.equal(await reader.getByRole("link", { name: "Create new secret key" }).count(), 0);
  // Posting the form anyway, with the reader's own valid anti-forgery token: 403.
  const csrf = await reader.locator("input[name=csrf]").first().inputValue();
  const posted = await reader.request.post(`${base}/console/api-keys`, { form: { csrf, name: "sneaky", owner: "you", permissions: "all" }, headers: { origin: base } });
  assert.equal(posted.status(), 403);
  const listed = await adminGet("/x-tollgate/keys?limit=100");
  assert.ok(!listed.includes("sneaky"), "no key was made");
  await reader.context().close();
});

test("a form without the anti-forgery token, or from another site, is refused", async () => {
  const page = await newPage();
  await signInAs(page, signIn.email, signIn.password);
  await page.waitForURL(`${base}/console/api-keys`);
  const missing = await page.request.post(`${base}/console/api-keys`, { form: { name: "forged", owner: "you" }, headers: { origin: base } });
  assert.equal(missing.status(), 403);
  const csrf = await page.locator("input[name=csrf]").first().inputValue();
  const elsewhere = await page.request.post(`${base}/console/api-keys`, { form: { csrf, name: "forged", owner: "you" }, headers: { origin: "https://evil.example" } });
  assert.equal(elsewhere.status(), 403);
  assert.ok(!(await adminGet("/x-tollgate/keys?limit=100")).includes("forged"));
  await page.context().close();
});

test("the sixth wrong password in a row is throttled", async () => {
  const page = await newPage();
  const statuses = [];
  for (let attempt = 0; attempt < 6; attempt++) {
    await page.goto(`${base}/console/login`);
    await page.getByLabel("Email").fill("reader@example.com");
    await page.getByLabel("Password").fill(`wrong password ${attempt}`);
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.url().endsWith("/console/login") && r.request().method() === "POST"),
      page.getByRole("button", { name: "Sign in" }).click(),
    ]);
    statuses.push(response.status());
  }
  assert.deepEqual(statuses, [401, 401, 401, 401, 401, 429]);
  assert.match(await page.content(), /Too many failed sign-ins/);
  // Each failure is in the audit log as login.failed.
  const failed = JSON.parse(await adminGet("/audit_logs?event_types[]=login.failed&limit=100"));
  assert.equal(failed.data.length, 5);
  await page.context().close();
});

test("at phone width the keys page does not scroll sideways", async () => {
  const page = await newPage({ width: 375, height: 800 });
  await signInAs(page, signIn.email, signIn.password);
  await page.waitForURL(`${base}/console/api-keys`);
  const widths = await page.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]);
  assert.ok(widths[0] <= widths[1], `scrollWidth ${widths[0]} > clientWidth ${widths[1]}`);
  await axe(page, "API keys (phone)");
  await page.screenshot({ path: path.join(SHOTS, "keys-phone.png"), fullPage: true });
  await page.goto(`${base}/console/usage`);
  const usageWidths = await page.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]);
  assert.ok(usageWidths[0] <= usageWidths[1], `usage: scrollWidth ${usageWidths[0]} > clientWidth ${usageWidths[1]}`);
  await page.screenshot({ path: path.join(SHOTS, "usage-phone.png"), fullPage: true });
  await page.context().close();
});
