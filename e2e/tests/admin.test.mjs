// The Admin Center in a real browser: sign in, turn on token access, add a
// token and use it, edit, deactivate, reactivate and delete it through the
// dialogs, the limit, a non-admin's 403 page, escaping, and the pages
// without JavaScript. Screenshots go to target/screenshots/.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { apiStatus, importTokens, launchChromium, screenshot, signIn, startServer } from "./support.mjs";

const LIST = "/admin/apis/api-tokens";

describe("the Admin Center", () => {
  let server;
  let browser;
  let context;
  let page;
  let token;

  before(async () => {
    server = await startServer();
    browser = await launchChromium();
    context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: server.base });
    context.setDefaultTimeout(10_000);
    page = await context.newPage();
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  const row = (text) => page.locator("tbody tr").filter({ hasText: text });

  async function confirmInDialog(rowText, word) {
    const r = row(rowText);
    await r.locator("summary").click();
    await r.getByRole("link", { name: word, exact: true }).click();
    const dialog = page.locator("dialog#confirm-dialog");
    await dialog.waitFor({ state: "visible" });
    return dialog;
  }

  it("sends an anonymous visitor to the sign-in page", async () => {
    await page.goto(`${server.base}/admin/apis/api-tokens`);
    assert.match(page.url(), /\/login$/);
    assert.equal(await page.getByLabel("Account subdomain").inputValue(), "default");
    await screenshot(page, "sign-in");
  });

  it("refuses a wrong password with one message, then signs in", async () => {
    await signIn(page, server, server.email, "not the password");
    await page.getByRole("alert").waitFor();
    assert.equal(await page.getByRole("alert").textContent(), "Invalid account, email or password.");
    await signIn(page, server, server.email, server.password);
    await page.waitForURL(`${server.base}${LIST}`);
    await page.getByRole("heading", { name: "API tokens" }).waitFor();
  });

  it("disables Add API token while token access is off, and says why", async () => {
    assert.equal(await page.getByRole("button", { name: "Add API token" }).isDisabled(), true);
    assert.match(await page.locator("#add-blocked").textContent(), /API token access is turned off for this account\./);
  });

  it("turns on token access in Configuration", async () => {
    await page.getByRole("link", { name: "Configuration", exact: true }).click();
    const box = page.getByLabel("Allow API token access");
    assert.equal(await box.isChecked(), false);
    await box.check();
    await page.getByRole("button", { name: "Save" }).click();
    await page.getByText("Settings saved.").waitFor();
    assert.equal(await page.getByLabel("Allow API token access").isChecked(), true);
  });

  it("adds a token, shows it once with Copy, and the copied token works with HTTP Basic", async () => {
    await page.goto(`${server.base}${LIST}`);
    await page.getByRole("link", { name: "Add API token" }).click();
    await page.getByLabel("Description").fill("Deploy bot");
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === "POST" && r.url().endsWith(LIST)),
      page.getByRole("button", { name: "Save" }).click(),
    ]);
    assert.equal(response.status(), 200);
    assert.equal(response.headers()["cache-control"], "no-store");
    await page.getByText("It will not be shown again").waitFor();
    await page.getByRole("button", { name: "Copy" }).click();
    await page.getByText("Copied to the clipboard.").waitFor();
    token = await page.evaluate(() => navigator.clipboard.readText());
    assert.match(token, /^lk_[0-9A-Za-z]{38}$/);
    assert.equal(await page.getByLabel("API token").inputValue(), token);
    await screenshot(page, "token-reveal");

    assert.equal(await apiStatus(server, server.email, token), 200);

    await Promise.all([page.waitForURL(/\/api-tokens\??$/), page.getByRole("button", { name: "Save" }).click()]);
    const r = row("Deploy bot");
    assert.match(await r.textContent(), /Active/);
    assert.match(await r.textContent(), new RegExp(token.slice(0, 7)));
    assert.equal(await r.locator("code").textContent(), `${token.slice(0, 7)}…${token.slice(-4)}`);
    assert.match(await page.locator("#token-count").textContent(), /^1 of 256 tokens$/);
  });

  it("shows the token's details with the truncated token only", async () => {
    await row("Deploy bot").getByRole("link", { name: "Deploy bot" }).click();
    await page.getByRole("heading", { name: "Deploy bot" }).waitFor();
    const text = await page.locator("main").textContent();
    assert.ok(text.includes(`${token.slice(0, 7)}…${token.slice(-4)}`));
    assert.ok(!text.includes(token), "the full token is never shown again");
    assert.match(text, /Created by\s*Admin/);
    await page.goto(`${server.base}${LIST}`);
  });

  it("edits the description", async () => {
    const r = row("Deploy bot");
    await r.locator("summary").click();
    await r.getByRole("link", { name: "Edit" }).click();
    await page.getByLabel("Description").fill("Deploy bot (production)");
    await page.getByRole("button", { name: "Save" }).click();
    await page.getByText("API token updated.").waitFor();
    await row("Deploy bot (production)").waitFor();
    // Two more tokens made on the command line, for a fuller list.
    for (const description of ["Nightly export", "Support dashboard (staging)"]) {
      assert.match(server.cli(["token", "create", "--account", server.subdomain, "--description", description]), /^lk_/);
    }
    await page.reload();
    assert.match(await row("Nightly export").textContent(), /Operator/);
    await screenshot(page, "token-list");
  });

  it("deactivates through the dialog, and the token stops working", async () => {
    const dialog = await confirmInDialog("Deploy bot (production)", "Deactivate");
    assert.equal(await dialog.getByRole("heading").textContent(), "Deactivate API token?");
    await screenshot(page, "confirm-dialog");
    await Promise.all([page.waitForURL(/done=deactivated/), dialog.getByRole("button", { name: "Deactivate" }).click()]);
    assert.match(await row("Deploy bot (production)").textContent(), /Deactivated/);
    assert.equal(await apiStatus(server, server.email, token), 401);
  });

  it("cancels a dialog without changing anything", async () => {
    const dialog = await confirmInDialog("Deploy bot (production)", "Delete");
    await dialog.getByRole("button", { name: "Cancel" }).click();
    await dialog.waitFor({ state: "hidden" });
    await row("Deploy bot (production)").waitFor();
  });

  it("reactivates through the dialog, and the token works again", async () => {
    const dialog = await confirmInDialog("Deploy bot (production)", "Reactivate");
    await Promise.all([page.waitForURL(/done=reactivated/), dialog.getByRole("button", { name: "Reactivate" }).click()]);
    assert.match(await row("Deploy bot (production)").textContent(), /Active/);
    assert.equal(await apiStatus(server, server.email, token), 200);
  });

  it("offers Delete only for a deactivated token, and deletes it", async () => {
    const r = row("Deploy bot (production)");
    await r.locator("summary").click();
    assert.equal(await r.getByRole("link", { name: "Delete", exact: true }).count(), 0);
    await r.locator("summary").click();
    let dialog = await confirmInDialog("Deploy bot (production)", "Deactivate");
    await Promise.all([page.waitForURL(/done=deactivated/), dialog.getByRole("button", { name: "Deactivate" }).click()]);
    dialog = await confirmInDialog("Deploy bot (production)", "Delete");
    await Promise.all([page.waitForURL(/done=deleted/), dialog.getByRole("button", { name: "Delete" }).click()]);
    assert.equal(await row("Deploy bot (production)").count(), 0);
    assert.match(await page.locator("#token-count").textContent(), /^2 of 256 tokens$/);
    assert.equal(await apiStatus(server, server.email, token), 401);
  });

  it("renders a description with markup as text", async () => {
    let alerted = false;
    page.on("dialog", async (d) => {
      alerted = true;
      await d.dismiss();
    });
    const xss = "<script>alert(1)</script>";
    await page.getByRole("link", { name: "Add API token" }).click();
    await page.getByLabel("Description").fill(xss);
    await page.getByRole("button", { name: "Save" }).click();
    assert.equal(await page.locator("#token-description").textContent(), xss);
    await Promise.all([page.waitForURL(/\/api-tokens\??$/), page.getByRole("button", { name: "Save" }).click()]);
    assert.equal(await page.locator("tbody tr td:first-child a").first().textContent(), xss);
    assert.equal(await page.locator("main script").count(), 0);
    assert.equal(alerted, false);
  });

  it("works without JavaScript: a confirmation page instead of the dialog", async () => {
    const noJs = await browser.newContext({ javaScriptEnabled: false });
    const p = await noJs.newPage();
    await signIn(p, server, server.email, server.password);
    await p.waitForURL(`${server.base}${LIST}`);
    const r = p.locator("tbody tr").filter({ hasText: "<script>" });
    await r.locator("summary").click();
    await r.getByRole("link", { name: "Deactivate" }).click();
    await p.waitForURL(/\/deactivate$/);
    await p.getByRole("heading", { name: "Deactivate API token?" }).waitFor();
    await p.getByRole("button", { name: "Deactivate" }).click();
    await p.waitForURL(/done=deactivated/);
    assert.match(await r.textContent(), /Deactivated/);
    await noJs.close();
  });

  it("disables Add API token at the limit and says why", async () => {
    await page.goto(`${server.base}${LIST}`);
    const count = Number(/^(\d+) of 256 tokens$/.exec(await page.locator("#token-count").textContent())[1]);
    importTokens(server, 256 - count);
    await page.reload();
    assert.match(await page.locator("#token-count").textContent(), /^256 of 256 tokens$/);
    assert.equal(await page.getByRole("button", { name: "Add API token" }).isDisabled(), true);
    assert.equal(
      await page.locator("#add-blocked").textContent(),
      "You have reached the maximum of 256 API tokens. Delete an existing token to add a new one.",
    );
    await screenshot(page, "token-limit", { fullPage: false });
  });

  it("manages people: add a user, change the role, suspend, delete", async () => {
    await page.getByRole("link", { name: "People", exact: true }).click();
    await page.getByRole("link", { name: "Add user" }).click();
    await page.getByLabel("Name").fill("Dana Agent");
    await page.getByLabel("Email").fill("dana@example.com");
    await page.getByLabel("Role").selectOption("agent");
    await page.getByRole("button", { name: "Save" }).click();
    await page.getByText("User added.").waitFor();
    const r = page.locator("tbody tr").filter({ hasText: "dana@example.com" });
    await r.getByLabel("Role of Dana Agent").selectOption("admin");
    await r.getByRole("button", { name: "Change role" }).click();
    await page.getByText("Role changed.").waitFor();
    assert.equal(await r.getByLabel("Role of Dana Agent").inputValue(), "admin");
    await r.getByRole("link", { name: "Suspend" }).click();
    let dialog = page.locator("dialog#confirm-dialog");
    await Promise.all([page.waitForURL(/done=suspended/), dialog.getByRole("button", { name: "Suspend" }).click()]);
    assert.match(await r.textContent(), /Suspended/);
    await r.getByRole("link", { name: "Delete" }).click();
    await Promise.all([page.waitForURL(/done=deleted/), dialog.getByRole("button", { name: "Delete" }).click()]);
    assert.equal(await r.count(), 0);
    await screenshot(page, "people");
  });

  for (const role of ["agent", "end_user"]) {
    it(`shows a signed-in ${role} a 403 page saying they lack access`, async () => {
      const email = `${role.replace("_", "")}@example.com`;
      server.cli(
        ["user", "create", "--account", server.subdomain, "--email", email, "--name", `An ${role}`, "--role", role, "--password-stdin"],
        "correct horse battery\n",
      );
      const other = await browser.newContext();
      const p = await other.newPage();
      await signIn(p, server, email, "correct horse battery");
      await p.getByRole("heading", { name: "You don't have access to this page" }).waitFor();
      const res = await p.goto(`${server.base}${LIST}`);
      assert.equal(res.status(), 403);
      assert.match(await p.locator("main").textContent(), /You do not have access to this page/);
      assert.match(await p.locator("main").textContent(), /Request id: \S+/);
      if (role === "agent") await screenshot(p, "forbidden");
      await other.close();
    });
  }

  it("signs out", async () => {
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.waitForURL(/\/login$/);
    await page.goto(`${server.base}${LIST}`);
    assert.match(page.url(), /\/login$/);
  });
});
