// The Admin Center in a real browser: sign in, turn on token access, add a
// token and use it, edit, deactivate, reactivate and delete it through the
// dialogs, the limit, a non-admin's 403 page, escaping, and the pages
// without JavaScript. The new token is shown once after a redirect: a
// reload or a double submit makes no second token. Every page and state is
// checked with axe-core and for sideways scrolling at 1280 and 390 px
// (checkPage). Screenshots go to target/screenshots/.

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { apiStatus, checkPage, importTokens, launchChromium, screenshot, signIn, startServer } from "./support.mjs";

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

  /** Deletes the tokens described `description` through the API. */
  async function deleteByCli(description) {
    const auth = `Basic ${Buffer.from(`${server.email}/token:${token}`).toString("base64")}`;
    const list = await (await fetch(`${server.base}/api/v2/api_tokens`, { headers: { authorization: auth } })).json();
    for (const t of list.api_tokens.filter((t) => t.description === description)) {
      for (const body of [{ api_token: { active: false } }, undefined]) {
        const res = await fetch(`${server.base}/api/v2/api_tokens/${t.id}`, {
          method: body ? "PUT" : "DELETE",
          headers: { authorization: auth, "content-type": "application/json" },
          body: body && JSON.stringify(body),
        });
        assert.ok(res.ok, `${res.status}`);
      }
    }
  }

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
    await checkPage(page, "sign-in");
    await screenshot(page, "sign-in");
  });

  it("refuses a wrong password with one message, then signs in", async () => {
    await signIn(page, server, server.email, "not the password");
    await page.getByRole("alert").waitFor();
    assert.equal(await page.getByRole("alert").textContent(), "Invalid account, email or password.");
    await checkPage(page, "sign-in refused");
    await signIn(page, server, server.email, server.password);
    await page.waitForURL(`${server.base}${LIST}`);
    await page.getByRole("heading", { name: "API tokens" }).waitFor();
  });

  it("disables Add API token while token access is off, and says why", async () => {
    assert.equal(await page.getByRole("button", { name: "Add API token" }).isDisabled(), true);
    assert.match(await page.locator("#add-blocked").textContent(), /API token access is turned off for this account\./);
    await checkPage(page, "token list, access off");
  });

  it("turns on token access in Configuration", async () => {
    await page.getByRole("link", { name: "Configuration", exact: true }).click();
    const box = page.getByLabel("Allow API token access");
    assert.equal(await box.isChecked(), false);
    await checkPage(page, "configuration");
    await box.check();
    await page.getByRole("button", { name: "Save" }).click();
    await page.getByText("Settings saved.").waitFor();
    await checkPage(page, "configuration saved");
    assert.equal(await page.getByLabel("Allow API token access").isChecked(), true);
  });

  it("adds a token, shows it once with Copy, and the copied token works with HTTP Basic", async () => {
    await page.goto(`${server.base}${LIST}`);
    await checkPage(page, "token list, empty");
    await page.getByRole("link", { name: "Add API token" }).click();
    await checkPage(page, "add token form");
    await page.getByLabel("Description").fill("Deploy bot");
    const [response] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === "GET" && r.url().includes(`${LIST}/reveal/`)),
      page.getByRole("button", { name: "Save" }).click(),
    ]);
    // Post/redirect/get: the reveal is a GET of its own, never cached.
    assert.equal(response.status(), 200);
    assert.equal(response.request().redirectedFrom()?.method(), "POST");
    assert.equal(response.headers()["cache-control"], "no-store");
    await page.getByText("It will not be shown again").waitFor();
    // The token field has the focus, its text selected.
    assert.equal(await page.evaluate(() => document.activeElement?.id), "api-token");
    await checkPage(page, "token reveal");
    await page.getByRole("button", { name: "Copy" }).click();
    await page.getByText("Copied to the clipboard.").waitFor();
    token = await page.evaluate(() => navigator.clipboard.readText());
    assert.match(token, /^lk_[0-9A-Za-z]{38}$/);
    assert.equal(await page.getByLabel("API token").inputValue(), token);
    await screenshot(page, "token-reveal");

    assert.equal(await apiStatus(server, server.email, token), 200);

    // A reload says the token was shown, and makes no second token.
    const reload = await page.reload();
    assert.equal(reload.status(), 410);
    await page.getByText("shown once and cannot be shown again").waitFor();
    assert.equal(await page.locator("#api-token").count(), 0);
    assert.ok(!(await page.content()).includes(token));
    await checkPage(page, "token already shown");

    await page.goto(`${server.base}${LIST}`);
    const r = row("Deploy bot");
    assert.match(await r.textContent(), /Active/);
    assert.match(await r.textContent(), new RegExp(token.slice(0, 7)));
    assert.equal(await r.locator("code").textContent(), `${token.slice(0, 7)}…${token.slice(-4)}`);
    assert.match(await page.locator("#token-count").textContent(), /^1 of 256 tokens$/);
    // Back, to the reveal: no cache miss, and still one token.
    await page.goBack();
    await page.getByText("shown once and cannot be shown again").waitFor();
    await page.goto(`${server.base}${LIST}`);
    assert.match(await page.locator("#token-count").textContent(), /^1 of 256 tokens$/);
  });

  it("makes one token of a form sent twice, or of a double-clicked Save", async () => {
    await page.goto(`${server.base}${LIST}/new`);
    await page.getByLabel("Description").fill("Sent twice");
    // The same form posted twice at once: both answers lead to one reveal.
    const answers = await page.evaluate(async () => {
      const form = document.querySelector("main form");
      const body = new URLSearchParams(new FormData(form));
      const send = () => fetch(form.action, { method: "POST", body, redirect: "manual" }).then((r) => r.type);
      return Promise.all([send(), send()]);
    });
    assert.deepEqual(answers, ["opaqueredirect", "opaqueredirect"]);
    await page.goto(`${server.base}${LIST}`);
    assert.equal(await row("Sent twice").count(), 1);

    await page.goto(`${server.base}${LIST}/new`);
    await page.getByLabel("Description").fill("Double click");
    await page.getByRole("button", { name: "Save" }).dblclick();
    await page.waitForURL(/\/reveal\//);
    await page.getByText("It will not be shown again").waitFor();
    const shown = await page.getByLabel("API token").inputValue();
    await page.goto(`${server.base}${LIST}`);
    assert.equal(await row("Double click").count(), 1);
    assert.equal(await apiStatus(server, server.email, shown), 200);
    await deleteByCli("Sent twice");
    await deleteByCli("Double click");
  });

  it("shows the token's details with the truncated token only", async () => {
    await row("Deploy bot").getByRole("link", { name: "Deploy bot" }).click();
    await page.getByRole("heading", { name: "Deploy bot" }).waitFor();
    const text = await page.locator("main").textContent();
    assert.ok(text.includes(`${token.slice(0, 7)}…${token.slice(-4)}`));
    assert.ok(!text.includes(token), "the full token is never shown again");
    assert.match(text, /Created by\s*Admin/);
    await checkPage(page, "token details");
    await page.goto(`${server.base}${LIST}`);
  });

  it("edits the description", async () => {
    const r = row("Deploy bot");
    await r.locator("summary").click();
    await checkPage(page, "token list, options menu open");
    await r.getByRole("link", { name: "Edit" }).click();
    await checkPage(page, "edit token form");
    await page.getByLabel("Description").fill("Deploy bot (production)");
    await page.getByRole("button", { name: "Save" }).click();
    await page.getByText(/^API token Deploy bot \(production\) \(lk_\w{4}…\w{4}\) updated\.$/).waitFor();
    await row("Deploy bot (production)").waitFor();
    // Two more tokens made on the command line, for a fuller list.
    for (const description of ["Nightly export", "Support dashboard (staging)"]) {
      assert.match(server.cli(["token", "create", "--account", server.subdomain, "--description", description]), /^lk_/);
    }
    await page.reload();
    assert.match(await row("Nightly export").textContent(), /Operator/);
    assert.match(await page.locator("#operator-hint").innerText(), /command line/);
    await checkPage(page, "token list");
    await screenshot(page, "token-list");
  });

  it("deactivates through the dialog, and the token stops working", async () => {
    const dialog = await confirmInDialog("Deploy bot (production)", "Deactivate");
    assert.equal(await dialog.getByRole("heading").textContent(), "Deactivate API token?");
    await checkPage(page, "deactivate dialog");
    await screenshot(page, "confirm-dialog");
    await Promise.all([page.waitForURL(/done=deactivated/), dialog.getByRole("button", { name: "Deactivate" }).click()]);
    assert.match(await row("Deploy bot (production)").textContent(), /Deactivated/);
    assert.equal(await apiStatus(server, server.email, token), 401);
    await checkPage(page, "token list, a token deactivated");
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
    await checkPage(page, "token list with markup in a description");
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
    await checkPage(p, "deactivate confirmation page", { script: false });
    await p.getByRole("button", { name: "Deactivate" }).click();
    await p.waitForURL(/done=deactivated/);
    assert.match(await r.textContent(), /Deactivated/);

    // The reveal without JavaScript: no Copy button that cannot work, and
    // the token field has the focus, wide enough to read the token.
    await p.goto(`${server.base}${LIST}/new`);
    await p.getByLabel("Description").fill("No script");
    await p.getByRole("button", { name: "Save" }).click();
    await p.getByText("It will not be shown again").waitFor();
    assert.equal(await p.getByRole("button", { name: "Copy" }).count(), 0);
    assert.equal(await p.locator("button[data-copy]").isVisible(), false);
    assert.equal(await p.locator("#api-token:focus").count(), 1, "the token field has the focus");
    await checkPage(p, "token reveal", { script: false });
    for (const size of [{ width: 1280, height: 800 }, { width: 390, height: 844 }]) {
      await p.setViewportSize(size);
      const field = await p.locator("#api-token").boundingBox();
      assert.ok(field.width >= 300, `the token field is ${field.width}px wide at ${size.width}px`);
    }
    await noJs.close();
  });

  it("selects the token instead of offering Copy where the Clipboard API is missing", async () => {
    const plainHttp = await browser.newContext({ viewport: { width: 390, height: 844 } });
    await plainHttp.addInitScript(() => {
      delete Navigator.prototype.clipboard;
    });
    const p = await plainHttp.newPage();
    await signIn(p, server, server.email, server.password);
    await p.waitForURL(`${server.base}${LIST}`);
    await p.goto(`${server.base}${LIST}/new`);
    await p.getByLabel("Description").fill("No clipboard");
    await p.getByRole("button", { name: "Save" }).click();
    await p.getByText("It will not be shown again").waitFor();
    assert.equal(await p.locator("button[data-copy]").isVisible(), false);
    const selected = await p.evaluate(() => {
      const input = document.getElementById("api-token");
      return document.activeElement === input && input.selectionStart === 0 && input.selectionEnd === input.value.length;
    });
    assert.equal(selected, true, "the whole token is selected");
    await p.getByText("The token is selected").waitFor();
    await checkPage(p, "token reveal (no Clipboard API)");
    await plainHttp.close();
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
    await checkPage(page, "token list at the limit");
    await screenshot(page, "token-limit", { fullPage: false });
  });

  it("manages people: add a user, edit them, change the role after a confirmation, change the email, suspend, delete", async () => {
    await page.getByRole("link", { name: "People", exact: true }).click();
    await checkPage(page, "people");
    await page.getByRole("link", { name: "Add user" }).click();
    await checkPage(page, "add user form");
    // A refused form says what is wrong next to the field, as a sentence.
    await page.getByLabel("Name").fill("Dana Agent");
    await page.getByLabel("Email").fill(server.email);
    await page.getByRole("button", { name: "Save" }).click();
    await page.getByRole("alert").waitFor();
    const email = page.getByLabel("Email");
    assert.equal(await email.getAttribute("aria-invalid"), "true");
    assert.match(await page.locator(`#${await email.getAttribute("aria-describedby")}`).innerText(), /^[A-Z]/);
    await checkPage(page, "add user form, refused");
    await email.fill("dana@example.com");
    await page.getByLabel("Role").selectOption("agent");
    await page.getByLabel("Verified").uncheck();
    await page.getByRole("button", { name: "Save" }).click();
    await page.getByText("User Dana Agent <dana@example.com> added.").waitFor();
    const r = page.locator("tbody tr").filter({ hasText: "dana@example.com" });
    const verified = () => r.locator('td[data-label="Verified"]').innerText();
    assert.equal(await verified(), "No");

    // Edit: rename and verify; the new role is confirmed on its own page.
    await r.getByRole("link", { name: "Edit" }).click();
    await page.getByRole("heading", { name: "Edit user" }).waitFor();
    await checkPage(page, "edit user form");
    await page.getByLabel("Name").fill("Dana Admin");
    await page.getByLabel("Verified").check();
    await page.getByLabel("Role").selectOption("admin");
    await page.getByRole("button", { name: "Save" }).click();
    await page.getByRole("heading", { name: "Change role?" }).waitFor();
    assert.match(await page.locator("main").innerText(), /Agent → Admin/);
    await checkPage(page, "role change confirmation");
    await page.getByRole("button", { name: "Change role" }).click();
    await page.getByText("Dana Admin <dana@example.com> is now an admin.").waitFor();
    assert.equal(await r.locator('td[data-label="Name"]').innerText(), "Dana Admin");
    assert.equal(await r.locator('td[data-label="Role"]').innerText(), "Admin");
    assert.equal(await verified(), "Yes");

    // Edit the email: one already used in the account (in another case) is
    // refused on its field, with what was typed kept; a free one is saved
    // as typed.
    await r.getByRole("link", { name: "Edit" }).click();
    await page.getByRole("heading", { name: "Edit user" }).waitFor();
    await page.getByLabel("Email").fill(server.email.toUpperCase());
    await page.getByRole("button", { name: "Save" }).click();
    await page.getByRole("alert").waitFor();
    const emailField = page.getByLabel("Email");
    assert.equal(await emailField.inputValue(), server.email.toUpperCase());
    assert.equal(await emailField.getAttribute("aria-invalid"), "true");
    assert.match(await emailField.getAttribute("aria-describedby"), /^email-error /);
    assert.equal(await page.locator("#email-error").innerText(), "That email is already used by someone in this account.");
    assert.equal(await page.evaluate(() => document.activeElement?.id), "email");
    await checkPage(page, "edit user form, email refused");
    await emailField.fill("Dana.Admin@Example.com");
    await page.getByRole("button", { name: "Save" }).click();
    await page.getByText("User Dana Admin <Dana.Admin@Example.com> updated.").waitFor();
    const moved = page.locator("tbody tr").filter({ hasText: "Dana.Admin@Example.com" });
    assert.equal(await moved.count(), 1);

    await moved.getByRole("link", { name: "Suspend" }).click();
    let dialog = page.locator("dialog#confirm-dialog");
    await dialog.waitFor({ state: "visible" });
    await checkPage(page, "suspend dialog");
    await Promise.all([page.waitForURL(/done=suspended/), dialog.getByRole("button", { name: "Suspend" }).click()]);
    assert.match(await moved.textContent(), /Suspended/);
    await page.getByText("User Dana Admin <Dana.Admin@Example.com> suspended.").waitFor();
    await moved.getByRole("link", { name: "Delete" }).click();
    await Promise.all([page.waitForURL(/done=deleted/), dialog.getByRole("button", { name: "Delete" }).click()]);
    assert.equal(await moved.count(), 0);
    await page.getByText("User Dana Admin <Dana.Admin@Example.com> deleted.").waitFor();
    await checkPage(page, "people after a deletion");
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
      await checkPage(p, `403 page (${role})`);
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
