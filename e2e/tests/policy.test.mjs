// Rotation and the token policy in a real browser: Rotate from a token's
// Options menu with a one-hour grace reveals a new secret once, both the
// old and the new secret authenticate, and the details page shows the
// previous one; on Configuration, Preview lists a token left unused for
// years (imported through the CLI) without saving, and Save keeps the
// policy. Screenshots go to target/screenshots/.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { apiStatus, checkPage, screenshot, startServer, signedInBrowser } from "./support.mjs";

const LIST = "/admin/apis/api-tokens";
const CONFIGURATION = "/admin/apis/configuration";

/** Imports one token last used in February 2020, as a migration would. */
function importStaleToken(server) {
  const dir = mkdtempSync(join(tmpdir(), "latchkey-import-"));
  const file = join(dir, "tokens.jsonl");
  const line = {
    token_sha256: "ab".repeat(32),
    visible_token: "lk_old…abcd",
    description: "Forgotten script",
    created_at: "2020-01-01T00:00:00Z",
    last_used: "2020-02-01T00:00:00Z",
  };
  writeFileSync(file, JSON.stringify(line) + "\n");
  try {
    server.cli(["token", "import", "--account", server.subdomain, "--file", file]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe("rotation and the token policy in the Admin Center", () => {
  let server;
  let browser;
  let context;
  let page;
  let oldToken;
  let newToken;

  before(async () => {
    server = await startServer();
    server.cli(["account", "update", "--subdomain", server.subdomain, "--api-token-access", "on"]);
    oldToken = server.cli(["token", "create", "--account", server.subdomain, "--description", "Nightly export"]).trim();
    importStaleToken(server);
    ({ browser, context, page } = await signedInBrowser(server, { permissions: ["clipboard-read", "clipboard-write"] }));
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  const row = (text) => page.locator("tbody tr").filter({ hasText: text });

  it("offers Rotate in the Options menu of active tokens", async () => {
    assert.equal(await apiStatus(server, server.email, oldToken), 200);
    await row("Nightly export").locator("summary").click();
    assert.equal(await row("Nightly export").getByRole("link", { name: "Rotate", exact: true }).isVisible(), true);
    await page.keyboard.press("Escape");
    await row("Forgotten script").locator("summary").click();
    assert.equal(await row("Forgotten script").getByRole("link", { name: "Rotate", exact: true }).isVisible(), true);
    await page.keyboard.press("Escape");
  });

  it("rotates with a one-hour grace from the Options menu and reveals the new secret once", async () => {
    const r = row("Nightly export");
    await r.locator("summary").click();
    await r.getByRole("link", { name: "Rotate", exact: true }).click();
    await page.getByRole("heading", { name: "Rotate API token?" }).waitFor();
    assert.equal(await page.getByLabel(/^None/).isChecked(), true);
    await page.getByLabel("1 hour").check();
    await checkPage(page, "rotate page");
    await screenshot(page, "token-rotate");
    await Promise.all([
      page.waitForResponse((res) => res.request().method() === "POST" && res.url().endsWith("/rotate")),
      page.getByRole("button", { name: "Rotate", exact: true }).click(),
    ]);
    await page.getByRole("heading", { name: "Rotate API token" }).waitFor();
    await page.getByText("It will not be shown again").waitFor();
    newToken = await page.getByLabel("API token").inputValue();
    assert.match(newToken, /^lk_[0-9A-Za-z]{38}$/);
    assert.notEqual(newToken, oldToken);
    assert.match(await page.locator("#previous-note").textContent(), /keeps working until \d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC/);
    await page.getByRole("button", { name: "Copy" }).click();
    await page.getByText("Copied to the clipboard.").waitFor();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), newToken);
    await checkPage(page, "rotate reveal");
    await screenshot(page, "token-rotate-reveal");
    // A reload rotates nothing more: the reveal says it was shown.
    const reload = await page.reload();
    assert.equal(reload.status(), 410);
    await page.getByText("shown once and cannot be shown again").waitFor();
    await page.getByRole("link", { name: "View the token" }).waitFor();
    await checkPage(page, "rotate reveal, already shown");
  });

  it("lets both the old and the new secret authenticate during the grace period", async () => {
    assert.equal(await apiStatus(server, server.email, newToken), 200);
    assert.equal(await apiStatus(server, server.email, oldToken), 200);
  });

  it("shows the previous secret on the details page", async () => {
    await page.goto(`${server.base}${LIST}`);
    await row("Nightly export").getByRole("link", { name: "Nightly export" }).click();
    await page.getByRole("heading", { name: "Nightly export" }).waitFor();
    const oldVisible = `${oldToken.slice(0, 7)}…${oldToken.slice(-4)}`;
    assert.equal(await page.locator("#previous-token code").textContent(), oldVisible);
    const until = page.locator("#previous-until");
    assert.match(await until.textContent(), /^\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC$/);
    assert.equal(await page.locator("dt", { hasText: "Previous token works until" }).count(), 1);
    // The old secret was used above, after the rotation.
    assert.match(await page.locator("#previous-last-used").textContent(), /^\d{4}-\d{2}-\d{2} \d{2}:\d{2} UTC$/);
    await checkPage(page, "details of a rotated token");
    await screenshot(page, "token-details-rotated");
  });

  it("previews the tokens a policy would deactivate, saving nothing, then saves it", async () => {
    await page.getByRole("link", { name: "Configuration" }).click();
    await page.getByRole("heading", { name: "Token policy" }).waitFor();
    assert.equal(await page.getByLabel("Deactivate tokens unused for").inputValue(), "");
    await page.getByLabel("Deactivate tokens unused for").fill("30");
    await page.getByRole("button", { name: "Preview" }).click();
    await page.getByRole("heading", { name: "Preview: what this policy would do now" }).waitFor();
    const table = page.locator("table#would-deactivate");
    const stale = table.locator("tbody tr").filter({ hasText: "Forgotten script" });
    assert.equal(await stale.count(), 1);
    assert.match(await stale.textContent(), /lk_old…abcd/);
    assert.match(await stale.textContent(), /2020-02-01 00:00 UTC/);
    assert.equal(await table.locator("tbody tr").filter({ hasText: "Nightly export" }).count(), 0);
    assert.equal(await page.getByLabel("Deactivate tokens unused for").inputValue(), "30");
    await checkPage(page, "configuration preview");
    await screenshot(page, "configuration-preview");

    // Nothing was saved.
    await page.goto(`${server.base}${CONFIGURATION}`);
    assert.equal(await page.getByLabel("Deactivate tokens unused for").inputValue(), "");

    await page.getByLabel("Deactivate tokens unused for").fill("30");
    await Promise.all([page.waitForURL(/done=saved/), page.getByRole("button", { name: "Save" }).click()]);
    await page.getByText("Settings saved.").waitFor();
    await page.reload();
    assert.equal(await page.getByLabel("Deactivate tokens unused for").inputValue(), "30");
    assert.equal(await page.getByLabel("Allow API token access").isChecked(), true);
    assert.equal(await page.getByLabel("Maximum lifetime").inputValue(), "");
    const res = await fetch(`${server.base}/api/v2/account/settings`, {
      headers: { authorization: `Basic ${Buffer.from(`${server.email}/token:${newToken}`).toString("base64")}` },
    });
    const body = await res.json();
    assert.equal(body.settings.token_policy.deactivate_unused_after_days, 30);
    await checkPage(page, "configuration with a policy");
    await screenshot(page, "configuration-policy");
  });
});
