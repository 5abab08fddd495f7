// Restricted tokens in a real browser: the Add API token form makes a
// token limited to `users:read`, bound to one user and expiring in 7 days;
// the revealed token then passes the gateway's `/verify` for reading users
// as that user only, and is refused writing with the scope it lacks. The
// list and the details page show the restrictions, Edit offers only earlier
// expiries, and the form works without JavaScript. Screenshots go to
// target/screenshots/.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { checkPage, screenshot, signIn, startServer, signedInBrowser } from "./support.mjs";

const LIST = "/admin/apis/api-tokens";
const DAY = 86_400_000;

/** `/verify` as a gateway asks it, for the original request `method uri`. */
async function verify(server, email, token, method, uri) {
  const auth = Buffer.from(`${email}/token:${token}`).toString("base64");
  const res = await fetch(`${server.base}/verify`, {
    headers: { authorization: `Basic ${auth}`, "x-original-method": method, "x-original-uri": uri },
  });
  await res.arrayBuffer();
  return res;
}

/** The UTC dates of `days` days from now, either side of the call (a test may straddle midnight). */
function datesIn(days, from, to) {
  return new Set([from, to].map((t) => new Date(t + days * DAY).toISOString().slice(0, 10)));
}

describe("restricted tokens in the Admin Center", () => {
  let server;
  let browser;
  let context;
  let page;
  let token;
  let madeAt;
  const reader = { name: "Rita Reader", email: "rita@example.com" };

  before(async () => {
    server = await startServer();
    server.cli(["account", "update", "--subdomain", server.subdomain, "--api-token-access", "on"]);
    server.cli(["user", "create", "--account", server.subdomain, "--email", reader.email, "--name", reader.name, "--role", "agent"]);
    ({ browser, context, page } = await signedInBrowser(server));
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  const row = (text) => page.locator("tbody tr").filter({ hasText: text });

  it("shows the scope checklist only for a restricted token", async () => {
    await page.getByRole("link", { name: "Add API token" }).click();
    const full = page.getByLabel("Full access");
    assert.equal(await full.isChecked(), true);
    assert.equal(await page.locator("#scopes").isVisible(), false);
    await page.getByLabel("Restricted").check();
    await page.locator("#scopes").waitFor({ state: "visible" });
    // One group per resource, each with Read and Write, and the global two.
    for (const name of ["api_tokens", "users", "account", "auditlogs"]) {
      const group = page.getByRole("group", { name: new RegExp(`^${name} `) });
      assert.equal(await group.getByRole("checkbox").count(), 2, name);
    }
    assert.equal(await page.getByLabel("Read everything").isVisible(), true);
    assert.equal(await page.getByLabel("Write everything").isVisible(), true);
    // The date shows only with "On a date".
    assert.equal(await page.getByLabel(/^Date/).isVisible(), false);
    await page.getByLabel("When").selectOption("date");
    assert.equal(await page.getByLabel(/^Date/).isVisible(), true);
    await checkPage(page, "add token form, restricted, on a date");
    await page.getByLabel("When").selectOption("never");
  });

  it("adds a token for users:read, bound to one user, expiring in 7 days", async () => {
    await page.getByLabel("Description").fill("Directory reader");
    await page.getByLabel("Restricted").check();
    await page.getByRole("group", { name: /^users / }).getByLabel("Read users").check();
    await page.getByLabel("Assigned user").selectOption({ label: `${reader.name} (${reader.email})` });
    await page.getByLabel("When").selectOption("7");
    await screenshot(page, "token-new-restricted");
    madeAt = Date.now();
    await Promise.all([
      page.waitForResponse((r) => r.request().method() === "POST" && r.url().endsWith(LIST)),
      page.getByRole("button", { name: "Save" }).click(),
    ]);
    await page.getByText("It will not be shown again").waitFor();
    token = await page.getByLabel("API token").inputValue();
    assert.match(token, /^lk_[0-9A-Za-z]{38}$/);
  });

  it("passes /verify for reading users as that user, and names the missing scope for writing", async () => {
    const read = await verify(server, reader.email, token, "GET", "/api/v2/users");
    assert.equal(read.status, 200);
    assert.equal(read.headers.get("x-latchkey-scopes"), "users:read");
    assert.equal(read.headers.get("x-latchkey-user-email"), reader.email);

    const write = await verify(server, reader.email, token, "POST", "/api/v2/users");
    assert.equal(write.status, 403);
    assert.equal(write.headers.get("x-latchkey-required-scope"), "users:write");

    const someoneElse = await verify(server, server.email, token, "GET", "/api/v2/users");
    assert.equal(someoneElse.status, 401);
  });

  it("lists the token with its scopes, its user and its expiry date", async () => {
    await Promise.all([page.waitForURL(/\/api-tokens\??$/), page.getByRole("button", { name: "Save" }).click()]);
    const cell = row("Directory reader").locator("td.restrictions");
    const text = await cell.innerText();
    assert.match(text, /^users: read$/m);
    assert.match(text, new RegExp(`^Only ${reader.email}$`, "m"));
    const expiry = /^Expires (\d{4}-\d{2}-\d{2})$/m.exec(text);
    assert.ok(expiry, text);
    assert.ok(datesIn(7, madeAt, Date.now()).has(expiry[1]), `${expiry[1]} is 7 days from now`);
    assert.match(await row("Directory reader").textContent(), /Active/);
    await checkPage(page, "token list with a restricted token");
    await screenshot(page, "token-list-restricted");
    // The table stays within the page's width.
    const overflow = await page.evaluate(() => {
      const wrap = document.querySelector(".table-wrap");
      return wrap.scrollWidth - wrap.clientWidth;
    });
    assert.ok(overflow <= 0, `the table overflows by ${overflow}px`);
  });

  it("shows every restriction on the details page", async () => {
    await row("Directory reader").getByRole("link", { name: "Directory reader" }).click();
    await page.getByRole("heading", { name: "Directory reader" }).waitFor();
    assert.equal(await page.locator("#token-access").textContent(), "users: read");
    assert.equal(await page.locator("#token-assigned").textContent(), `${reader.name} (${reader.email})`);
    assert.match(await page.locator("#token-expires").textContent(), /^\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC$/);
  });

  it("offers only earlier expiries on Edit, and the rest of the token as it is", async () => {
    await page.getByRole("link", { name: "Edit" }).click();
    await page.getByRole("heading", { name: "Edit API token" }).waitFor();
    const choices = await page.getByLabel("When").locator("option").evaluateAll((os) => os.map((o) => o.value));
    assert.deepEqual(choices, ["keep", "date"]);
    assert.match(await page.locator("#expires-current").textContent(), /^Currently: \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC$/);
    assert.equal(await page.getByLabel("Restricted").isChecked(), true);
    assert.equal(await page.getByLabel("Read users").isChecked(), true);
    assert.equal(await page.getByLabel("Write users").isChecked(), false);
    assert.match(await page.getByLabel("Assigned user").locator("option:checked").textContent(), /Rita Reader/);
    await checkPage(page, "edit form of a restricted token");
    await screenshot(page, "token-edit-restricted");
    await page.getByRole("link", { name: "Cancel" }).click();
  });

  it("works without JavaScript: every field shows, and a restricted token is made", async () => {
    const noJs = await browser.newContext({ javaScriptEnabled: false });
    const p = await noJs.newPage();
    await signIn(p, server, server.email, server.password);
    await p.waitForURL(`${server.base}${LIST}`);
    await p.goto(`${server.base}${LIST}/new`);
    assert.equal(await p.locator("#scopes").isVisible(), true);
    assert.equal(await p.getByLabel(/^Date/).isVisible(), true);
    await p.getByLabel("Description").fill("No-script writer");
    // Ticking a scope but leaving Full access chosen is refused, not guessed.
    await p.getByLabel("Write everything").check();
    await p.getByRole("button", { name: "Save" }).click();
    await p.getByRole("alert").waitFor();
    assert.match(await p.getByRole("alert").textContent(), /You ticked scopes but chose Full access/);
    assert.equal(await p.getByLabel("Write everything").isChecked(), true);
    assert.equal(await p.getByLabel("Description").inputValue(), "No-script writer");
    await checkPage(p, "add token form refused", { script: false });
    await p.getByLabel("Restricted").check();
    await p.getByRole("button", { name: "Save" }).click();
    await p.getByText("It will not be shown again").waitFor();
    const t = await p.getByLabel("API token").inputValue();
    const res = await verify(server, server.email, t, "DELETE", "/api/v2/anything");
    assert.equal(res.status, 200);
    assert.equal(res.headers.get("x-latchkey-scopes"), "write");
    await noJs.close();
  });
});
