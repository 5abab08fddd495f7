// A token's network, limit, usage and leak in a real browser (README.md,
// "IP allowlists and rate limits", "Usage", "Leaked tokens"): Edit limits a token to one
// network (a bad network is refused on its field first), requests are made
// from inside and outside it (the server trusts this machine as a proxy, so
// X-Forwarded-For names the client), and the details page charts them with
// their totals in text; after a leak report the list marks the token
// Leaked. Every state is checked with axe-core at a laptop's and a
// phone's width. Screenshots go to target/screenshots/.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { checkPage, screenshot, startServer, signedInBrowser } from "./support.mjs";

const LIST = "/admin/apis/api-tokens";

describe("allowed IPs, usage and leaks in the Admin Center", () => {
  let server;
  let browser;
  let context;
  let page;
  let token;

  /** GET /api/v2/users/me with the token, as if from `ip`; the status. */
  async function call(ip) {
    const auth = Buffer.from(`${server.email}/token:${token}`).toString("base64");
    const res = await fetch(`${server.base}/api/v2/users/me`, {
      headers: { authorization: `Basic ${auth}`, "x-forwarded-for": ip },
    });
    await res.arrayBuffer();
    return res.status;
  }

  before(async () => {
    // Counts reach the database with each flush: every second here.
    server = await startServer({ args: ["--trusted-proxy", "127.0.0.1/32", "--flush-interval-secs", "1"] });
    server.cli(["account", "update", "--subdomain", server.subdomain, "--api-token-access", "on"]);
    token = server.cli(["token", "create", "--account", server.subdomain, "--description", "Billing job"]).trim();
    ({ browser, context, page } = await signedInBrowser(server));
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  const row = (text) => page.locator("tbody tr").filter({ hasText: text });

  it("says so when a token has made no request", async () => {
    await row("Billing job").getByRole("link", { name: "Billing job" }).click();
    await page.getByRole("heading", { name: "Billing job" }).waitFor();
    assert.equal(await page.locator("#token-allowed-ips").textContent(), "Any address");
    assert.equal(await page.locator("#token-rate-limit").textContent(), "No limit");
    assert.equal(await page.locator("#usage-empty").textContent(), "No requests in the last 30 days.");
    assert.equal(await page.locator(".usage-chart svg").count(), 0);
    await checkPage(page, "token details without usage");
  });

  it("refuses a bad network on its field and keeps what was typed", async () => {
    await page.getByRole("link", { name: "Edit" }).click();
    await page.getByRole("heading", { name: "Edit API token" }).waitFor();
    await page.getByLabel("Allowed IPs").fill("192.0.2.0/24\n192.0.2.0/33");
    await page.getByRole("button", { name: "Save" }).click();
    await page.getByRole("alert").waitFor();
    const field = page.getByLabel("Allowed IPs");
    assert.equal(await field.getAttribute("aria-invalid"), "true");
    assert.equal(await field.inputValue(), "192.0.2.0/24\n192.0.2.0/33");
    // The error is the field's description, read with it.
    const described = await field.evaluate((el) =>
      el.getAttribute("aria-describedby").split(" ").map((id) => document.getElementById(id).textContent).join(" "),
    );
    assert.match(described, /"192\.0\.2\.0\/33" is not an IPv4 or IPv6 address or CIDR network\./);
    await checkPage(page, "edit form with a refused allowlist");
    await screenshot(page, "token-edit-refused-allowlist");
  });

  it("limits the token to one network with Edit", async () => {
    await page.getByLabel("Allowed IPs").fill("192.0.2.0/24");
    await Promise.all([page.waitForURL(/\/api-tokens\?done=updated/), page.getByRole("button", { name: "Save" }).click()]);
    await row("Billing job").getByRole("link", { name: "Billing job" }).click();
    await page.getByRole("heading", { name: "Billing job" }).waitFor();
    assert.equal(await page.locator("#token-allowed-ips").textContent(), "192.0.2.0/24");
  });

  it("charts the requests from inside and outside the network, with the totals in text", async () => {
    for (let i = 0; i < 4; i++) assert.equal(await call("192.0.2.10"), 200);
    for (let i = 0; i < 3; i++) assert.equal(await call("198.51.100.7"), 401);
    // The counts arrive with the flushes (a flush may fall between two requests).
    const deadline = Date.now() + 15_000;
    let seen = "none";
    for (;;) {
      await page.reload();
      if ((await page.locator("#usage-allowed").count()) > 0) {
        seen = `${await page.locator("#usage-allowed").textContent()} allowed, ${await page.locator("#usage-denied").textContent()} denied`;
        if (seen === "4 allowed, 3 denied") break;
      }
      assert.ok(Date.now() < deadline, `the usage never reached the details page in full (last seen: ${seen})`);
      await page.waitForTimeout(500);
    }
    assert.equal(await page.locator("#usage-allowed").textContent(), "4");
    assert.equal(await page.locator("#usage-denied").textContent(), "3");
    const totals = await page.locator("#usage-totals").innerText();
    assert.match(totals, /Address not allowed\s+3/);
    assert.match(totals, /Rate limited\s+0/);
    const chart = page.getByRole("img", { name: /4 allowed and 3 denied in all/ });
    assert.equal(await chart.isVisible(), true);
    // Denied requests are hatched, not only coloured, and the caption says so.
    assert.ok((await page.locator('.usage-chart svg rect[fill="url(#usage-hatch)"]').count()) >= 1);
    assert.match(await page.locator(".usage-chart figcaption").innerText(), /allowed\s+denied \(hatched\)/);
    await page.locator(".usage-table summary").click();
    const today = new Date().toISOString().slice(0, 10);
    const cells = await page.locator(".usage-table tbody tr").first().locator("td").allInnerTexts();
    assert.ok([today, new Date(Date.now() - 60_000).toISOString().slice(0, 10)].includes(cells[0]), cells[0]);
    assert.deepEqual(cells.slice(1), ["4", "3"]);
    await checkPage(page, "token details with usage");
    await screenshot(page, "token-usage");
  });

  it("marks the token Leaked in the list after a leak report", async () => {
    const res = await fetch(`${server.base}/api/v2/credentials/revoke`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ credentials: [token] }),
    });
    assert.equal(res.status, 202);
    await page.goto(`${server.base}${LIST}`);
    const status = row("Billing job").locator('td[data-label="Status"]');
    assert.match(await status.innerText(), /Deactivated\s+Leaked/);
    assert.match(await status.locator(".badge.leaked").getAttribute("title"), /^Reported leaked \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC$/);
    await checkPage(page, "token list with a leaked token");
    await row("Billing job").getByRole("link", { name: "Billing job" }).click();
    await page.locator("#token-leaked-warning").waitFor();
    assert.match(await page.locator("#token-leaked-warning").innerText(), /^Reported leaked/);
    await checkPage(page, "details of a leaked token");
    await screenshot(page, "token-leaked");
  });
});
