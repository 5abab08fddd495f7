// The audit log page in a real browser: "View audit log" on a token opens
// it filtered to that token, events show who did what from where (escaped),
// the filters (source type, action, actor: a person, the Operator or System;
// date range) and cursor paging
// work as plain GET forms and links, and an account that is not on an
// Enterprise plan is told why the log is unavailable. Screenshots go to
// target/screenshots/.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { checkPage, importTokens, launchChromium, screenshot, signIn, startServer } from "./support.mjs";

const LOG = "/admin/audit-log";
const TOKENS = "/admin/apis/api-tokens";

describe("the audit log page", () => {
  let server;
  let browser;
  let page;
  let auth;
  let tokenId;
  let adminName;

  async function api(method, path, body) {
    const res = await fetch(`${server.base}${path}`, {
      method,
      headers: { authorization: auth, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, json: text ? JSON.parse(text) : null };
  }

  /** The table's rows as {actor, action, source, change, ip}. */
  async function rows() {
    return page.locator("tbody tr[data-event-id]").evaluateAll((trs) =>
      trs.map((tr) => {
        const cells = [...tr.querySelectorAll("td")].map((td) => td.innerText.trim());
        return { id: tr.dataset.eventId, actor: cells[1], action: cells[2], source: cells[3], change: cells[4], ip: cells[5] };
      }),
    );
  }

  before(async () => {
    server = await startServer();
    server.cli(["account", "update", "--subdomain", server.subdomain, "--api-token-access", "on"]);
    // One token to watch in the log, another to call the API with.
    server.cli(["token", "create", "--account", server.subdomain, "--description", "Jira sync"]);
    const plain = server.cli(["token", "create", "--account", server.subdomain, "--description", "Test client"]).trim();
    auth = `Basic ${Buffer.from(`${server.email}/token:${plain}`).toString("base64")}`;
    // The server follows the CLI's change within a poll interval.
    for (let i = 0; i < 100; i++) {
      const r = await api("GET", "/api/v2/api_tokens");
      if (r.status === 200) {
        tokenId = r.json.api_tokens.find((t) => t.description === "Jira sync").id;
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(tokenId, "the server sees the CLI's token");
    adminName = (await api("GET", "/api/v2/users/me")).json.user.name;
    browser = await launchChromium();
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    page = await context.newPage();
    await signIn(page, server, server.email, server.password);
    await page.waitForURL(`${server.base}${TOKENS}`);
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  it("opens from a token's View audit log, filtered to that token", async () => {
    const row = page.locator("tbody tr").filter({ hasText: "Jira sync" });
    await row.locator("summary").click();
    await row.getByRole("link", { name: "View audit log" }).click();
    await page.waitForURL(`${server.base}${LOG}?source_type=api_token&source_id=${tokenId}`);
    await page.getByRole("heading", { name: "Audit log" }).waitFor();
    assert.match(await page.locator("#audit-scope").innerText(), /Showing the events of API token: Jira sync\./);
    const got = await rows();
    // The CLI's operator is named with the OS user and host that ran it.
    assert.equal(got.length, 1, JSON.stringify(got));
    assert.match(got[0].actor, /^operator \(\S+@\S+\) \(Operator\)$/);
    assert.deepEqual(
      got.map(({ action, source, change, ip }) => ({ action, source, change, ip })),
      [{ action: "Created", source: "API token: Jira sync", change: "—", ip: "—" }],
    );
    await checkPage(page, "audit log of one token");
  });

  it("shows each change with its actor, address and description, escaped", async () => {
    const path = `/api/v2/api_tokens/${tokenId}`;
    const evil = 'Jira, "prod" <b>sync</b>';
    assert.equal((await api("PUT", path, { api_token: { description: evil } })).status, 200);
    assert.equal((await api("PUT", path, { api_token: { active: false } })).status, 200);
    await page.reload();
    const got = await rows();
    assert.deepEqual(
      got.map((r) => r.action),
      ["Deactivated", "Updated", "Created"],
    );
    assert.deepEqual(got[1], {
      id: got[1].id,
      actor: adminName,
      action: "Updated",
      source: `API token: ${evil}`,
      change: `description changed from "Jira sync" to "${evil}"`,
      ip: "127.0.0.1",
    });
    assert.equal(await page.locator("tbody b").count(), 0, "user text is never markup");
    assert.match(await page.locator("time").first().getAttribute("datetime"), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    await checkPage(page, "audit log with changes");
    await screenshot(page, "audit-log-token");
  });

  it("filters by action, source type, actor and date range", async () => {
    await page.goto(`${server.base}${LOG}`);
    await page.getByLabel("Action", { exact: true }).selectOption("deactivate");
    await page.getByRole("button", { name: "Filter" }).click();
    await page.waitForURL(/action=deactivate/);
    let got = await rows();
    assert.equal(got.length, 1);
    assert.equal(got[0].action, "Deactivated");
    assert.equal(await page.getByLabel("Action", { exact: true }).inputValue(), "deactivate", "the form keeps its values");
    await checkPage(page, "audit log filtered by action");

    await page.getByLabel("Action", { exact: true }).selectOption("");
    await page.getByLabel("Source type", { exact: true }).selectOption("user");
    await page.getByRole("button", { name: "Filter" }).click();
    await page.waitForURL(/source_type=user/);
    got = await rows();
    assert.ok(got.length >= 1);
    assert.ok(got.every((r) => r.source.startsWith("User: ")), JSON.stringify(got));

    await page.getByRole("link", { name: "Clear filters" }).click();
    await page.waitForURL(`${server.base}${LOG}`);
    await page.getByLabel("Actor", { exact: true }).selectOption({ label: adminName });
    await page.getByRole("button", { name: "Filter" }).click();
    await page.waitForURL(/actor=\d/);
    got = await rows();
    assert.deepEqual(
      got.map((r) => [r.actor, r.action]),
      [[adminName, "Deactivated"], [adminName, "Updated"]],
    );

    // Not a person: latchkey itself made the first account and its admin.
    await page.getByLabel("Actor", { exact: true }).selectOption({ label: "System" });
    await page.getByRole("button", { name: "Filter" }).click();
    await page.waitForURL(/actor=system/);
    got = await rows();
    assert.deepEqual(
      got.map((r) => [r.actor, r.action, r.source.split(":")[0]]),
      [["System", "Created", "User"], ["System", "Created", "Account"]],
    );
    await checkPage(page, "audit log filtered by actor System");
    // The CLI's operator turned token access on (in words, not as stored)
    // and made the two tokens.
    await page.getByLabel("Actor", { exact: true }).selectOption({ label: "Operator" });
    await page.getByRole("button", { name: "Filter" }).click();
    await page.waitForURL(/actor=operator/);
    got = await rows();
    assert.ok(got.length >= 3, JSON.stringify(got));
    assert.ok(got.every((r) => /^operator \(\S+@\S+\) \(Operator\)$/.test(r.actor)), JSON.stringify(got));
    assert.deepEqual(got.at(-1), { ...got.at(-1), action: "Updated", source: "Account settings", change: "API token access turned on" });
    assert.equal(await page.getByLabel("Actor", { exact: true }).inputValue(), "operator", "the form keeps its values");
    await checkPage(page, "audit log filtered by actor Operator");

    await page.getByRole("link", { name: "Clear filters" }).click();
    const today = new Date().toISOString().slice(0, 10);
    const tomorrow = new Date(Date.now() + 86_400_000).toISOString().slice(0, 10);
    await page.getByLabel("From", { exact: true }).fill(today);
    await page.getByLabel("To", { exact: true }).fill(today);
    await page.getByRole("button", { name: "Filter" }).click();
    await page.waitForURL(/from=/);
    assert.ok((await rows()).length >= 4, "today's events");
    await page.getByLabel("From", { exact: true }).fill(tomorrow);
    await page.getByLabel("To", { exact: true }).fill(tomorrow);
    await page.getByRole("button", { name: "Filter" }).click();
    await page.waitForURL(new RegExp(`from=${tomorrow}`));
    assert.equal((await rows()).length, 0);
    assert.equal(await page.locator("td.empty").innerText(), "No events match.");
    await page.getByLabel("From", { exact: true }).fill(tomorrow);
    await page.getByLabel("To", { exact: true }).fill(today);
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.url().includes(LOG)),
      page.getByRole("button", { name: "Filter" }).click(),
    ]);
    assert.equal(response.status(), 400);
    assert.equal(await page.getByRole("alert").innerText(), "The start of Date range must not be after its end.");
    await checkPage(page, "audit log with a refused filter");
  });

  it("pages through many events with Older and Newer links", async () => {
    importTokens(server, 60);
    const all = [];
    for (let url = "/api/v2/audit_logs?page[size]=100"; url; ) {
      const r = await api("GET", url.replace(server.base, ""));
      all.push(...r.json.audit_logs.map((e) => String(e.id)));
      url = r.json.links.next;
    }
    assert.ok(all.length > 60);
    await page.goto(`${server.base}${LOG}`);
    const first = (await rows()).map((r) => r.id);
    assert.equal(first.length, 50);
    assert.equal(await page.getByRole("link", { name: "Newer events" }).count(), 0);
    await page.getByRole("link", { name: "Older events" }).click();
    await page.waitForURL(/after=/);
    const second = (await rows()).map((r) => r.id);
    assert.deepEqual([...first, ...second], all, "every event once, newest first");
    assert.equal(await page.getByRole("link", { name: "Older events" }).count(), 0);
    await page.getByRole("link", { name: "Newer events" }).click();
    await page.waitForURL(/before=/);
    assert.deepEqual((await rows()).map((r) => r.id), first);
    await checkPage(page, "audit log, newer page");
    await screenshot(page, "audit-log");
  });

  it("tells the admin of an account below Enterprise why the log is unavailable", async () => {
    server.cli(["account", "update", "--subdomain", server.subdomain, "--plan", "professional"]);
    const response = await page.goto(`${server.base}${LOG}`);
    assert.equal(response.status(), 403);
    assert.match(
      await page.locator("#audit-unavailable").innerText(),
      /^The audit log is available on Enterprise plans\./,
    );
    assert.equal(await page.locator("tbody tr").count(), 0);
    assert.equal(await page.locator("nav.side").getByRole("link", { name: "Audit log" }).count(), 0);
    await page.goto(`${server.base}${TOKENS}`);
    assert.equal(await page.getByRole("link", { name: "View audit log" }).count(), 0);
    await page.goto(`${server.base}${LOG}`);
    await checkPage(page, "audit log unavailable");
    await screenshot(page, "audit-log-unavailable");
  });

  it("sends an anonymous visitor to the sign-in page", async () => {
    const context = await browser.newContext();
    const anon = await context.newPage();
    await anon.goto(`${server.base}${LOG}?source_type=api_token&source_id=${tokenId}`);
    assert.match(anon.url(), /\/login$/);
    await context.close();
  });
});
