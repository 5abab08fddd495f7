// The Admin Center used for real, on a laptop (1280×800) and a phone
// (390×844), with a dozen tokens (one with a 220-character description,
// some deactivated) and twenty people: nothing makes the page scroll
// sideways, every row's Options and Delete can be reached and its menu is
// neither clipped nor covering, the sidebar collapses on a phone, dialogs
// stay on screen; keyboard-only use (focus after a dialog, Cancel first
// for a destructive change, menus close when the focus leaves, a visible
// focus ring); times in the browser's zone; and the audit log's filters.
// Every state is checked with axe-core at both widths (checkPage).

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { LAPTOP, PHONE, checkPage, launchChromium, screenshot, signIn, startServer } from "./support.mjs";

const LIST = "/admin/apis/api-tokens";
const LONG = "Nightly export of every ticket, user and organization to the data warehouse, with a retry on failure. ".repeat(3).slice(0, 220);

describe("the Admin Center on a laptop and a phone", () => {
  let server;
  let browser;
  let context;
  let page;

  before(async () => {
    server = await startServer();
    const cli = (...args) => server.cli([...args, "--account", server.subdomain]);
    server.cli(["account", "update", "--subdomain", server.subdomain, "--api-token-access", "on"]);
    cli("token", "create", "--description", LONG);
    for (let i = 1; i <= 11; i++) cli("token", "create", "--description", `Integration ${i}`);
    for (let i = 1; i <= 20; i++) {
      server.cli([
        "user", "create", "--account", server.subdomain, "--email", `person.with.a.long.address.${i}@example.com`,
        "--name", `Person ${i} Longname-Hyphenated`, "--role", i % 3 ? "agent" : "end_user",
      ]);
    }
    browser = await launchChromium();
    context = await browser.newContext({ viewport: LAPTOP, timezoneId: "America/Los_Angeles" });
    context.setDefaultTimeout(10_000);
    page = await context.newPage();
    await signIn(page, server, server.email, server.password);
    await page.waitForURL(`${server.base}${LIST}`);
    // Deactivate three tokens through the dialogs.
    for (const n of [2, 5, 11]) {
      const r = rowOf(`Integration ${n}`);
      await r.locator("summary").click();
      await r.getByRole("link", { name: "Deactivate" }).click();
      await Promise.all([
        page.waitForURL(/done=deactivated/),
        page.locator("dialog").getByRole("button", { name: "Deactivate" }).click(),
      ]);
    }
  });

  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  /** The token list's row of the token described exactly `name`. */
  const rowOf = (name) =>
    page.locator("tbody tr").filter({ has: page.locator("td.description", { hasText: new RegExp(`^${name}$`) }) });

  /** Whether the element's centre is inside the viewport and it is what is shown there. */
  async function reachable(locator) {
    await locator.scrollIntoViewIfNeeded();
    return locator.evaluate((el) => {
      const r = el.getBoundingClientRect();
      const x = r.left + r.width / 2;
      const y = r.top + r.height / 2;
      if (r.width === 0 || x < 0 || x > innerWidth || y < 0 || y > innerHeight) return false;
      const top = document.elementFromPoint(x, y);
      return top === el || el.contains(top);
    });
  }

  for (const size of [LAPTOP, PHONE]) {
    it(`fits the token list at ${size.width}px: every Options menu opens whole, the long description is clamped`, async () => {
      await page.setViewportSize(size);
      await page.goto(`${server.base}${LIST}`);
      await checkPage(page, `token list at ${size.width}px`);
      const rows = page.locator("tbody tr");
      assert.equal(await rows.count(), 12);
      const long = rows.filter({ hasText: LONG.slice(0, 40) });
      const height = (await long.boundingBox()).height;
      assert.ok(height < (size === LAPTOP ? 90 : 400), `the long row is ${height}px tall`);
      for (let i = 0; i < 12; i++) {
        const r = rows.nth(i);
        const summary = r.locator("summary");
        assert.ok(await reachable(summary), `row ${i}'s Options at ${size.width}px`);
        await summary.click();
        const items = r.locator(".menu li a");
        const last = items.last();
        assert.ok(await reachable(last), `row ${i}'s last menu item at ${size.width}px`);
        if (i === 11) await checkPage(page, `last row's menu open at ${size.width}px`);
        await summary.click();
      }
      await screenshot(page, `token-list-${size.width}`, { fullPage: false });
    });

    it(`fits People and the audit log at ${size.width}px`, async () => {
      await page.setViewportSize(size);
      await page.goto(`${server.base}/admin/people`);
      await checkPage(page, `people at ${size.width}px`);
      const rows = page.locator("tbody tr");
      for (let i = 0; i < (await rows.count()); i += 7) {
        const del = rows.nth(i).getByRole("link", { name: "Delete" });
        if (await del.count()) assert.ok(await reachable(del), `Delete of row ${i} at ${size.width}px`);
      }
      await page.goto(`${server.base}/admin/audit-log`);
      await checkPage(page, `audit log at ${size.width}px`);
      assert.ok(await reachable(page.getByRole("button", { name: "Filter" })), "Filter");
      // An event's time wraps at most once.
      const time = page.locator("tbody time").first();
      const lineHeight = await time.evaluate((el) => parseFloat(getComputedStyle(el).lineHeight));
      assert.ok((await time.boundingBox()).height <= 2 * lineHeight + 1, "the time wraps at most once");
    });
  }

  it("collapses the sidebar on a phone, and keeps the dialog on screen", async () => {
    await page.setViewportSize(PHONE);
    await page.goto(`${server.base}${LIST}`);
    const main = await page.locator("main").boundingBox();
    assert.ok(main.width >= 350, `main is ${main.width}px wide`);
    const nav = await page.locator("nav.side").boundingBox();
    assert.ok(nav.height < 120, `the navigation is ${nav.height}px tall`);
    const r = rowOf("Integration 3");
    await r.locator("summary").click();
    await r.getByRole("link", { name: "Deactivate" }).click();
    const dialog = page.locator("dialog");
    await dialog.waitFor({ state: "visible" });
    const box = await dialog.boundingBox();
    assert.ok(box.x >= 0 && box.y >= 0 && box.x + box.width <= PHONE.width && box.y + box.height <= PHONE.height, JSON.stringify(box));
    await checkPage(page, "dialog on a phone");
    await screenshot(page, "phone-dialog", { fullPage: false });
    await dialog.getByRole("button", { name: "Cancel" }).click();
    await page.evaluate(() => window.scrollTo(0, 0));
    await screenshot(page, "phone-token-list", { fullPage: false });
    await page.setViewportSize(LAPTOP);
  });

  it("works from the keyboard: Cancel first, focus back on Options, menus close when the focus leaves", async () => {
    await page.goto(`${server.base}${LIST}`);
    const r = rowOf("Integration 4");
    const summary = r.locator("summary");
    await summary.focus();
    await page.keyboard.press("Enter");
    assert.equal(await r.locator("details").getAttribute("open"), "");
    // Tab through the menu to Deactivate.
    const deactivate = r.getByRole("link", { name: "Deactivate" });
    for (let i = 0; i < 5 && !(await deactivate.evaluate((el) => el === document.activeElement)); i++) {
      await page.keyboard.press("Tab");
    }
    assert.ok(await deactivate.evaluate((el) => el === document.activeElement), "Deactivate has the focus");
    await page.keyboard.press("Enter");
    const dialog = page.locator("dialog");
    await dialog.waitFor({ state: "visible" });
    assert.equal(await page.evaluate(() => document.activeElement.textContent), "Cancel", "a destructive dialog starts on Cancel");
    await checkPage(page, "dialog opened from the keyboard");
    await page.keyboard.press("Escape");
    await dialog.waitFor({ state: "hidden" });
    assert.ok(await summary.evaluate((el) => el === document.activeElement), "the focus is back on Options");
    // The focus ring: at least 3:1 against the page.
    const ring = await summary.evaluate((el) => getComputedStyle(el).outlineColor);
    const [red, green, blue] = ring.match(/\d+/g).map(Number);
    const lum = (c) => {
      const v = c / 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    };
    const l = 0.2126 * lum(red) + 0.7152 * lum(green) + 0.0722 * lum(blue);
    const contrast = 1.05 / (l + 0.05);
    assert.ok(contrast >= 3, `the focus ring ${ring} has ${contrast.toFixed(2)}:1 on white`);
    // A menu left with Tab closes.
    await page.keyboard.press("Enter");
    assert.equal(await r.locator("details").getAttribute("open"), "");
    for (let i = 0; i < 8; i++) await page.keyboard.press("Tab");
    assert.equal(await r.locator("details").getAttribute("open"), null, "the menu closed when the focus left");
  });

  it("focuses the token field on the reveal page", async () => {
    await page.goto(`${server.base}${LIST}/new`);
    await page.getByLabel("Description").fill("Keyboard");
    await page.keyboard.press("Enter");
    await page.getByText("It will not be shown again").waitFor();
    assert.equal(await page.evaluate(() => document.activeElement.id), "api-token");
  });

  it("shows times in the browser's time zone, UTC in a tooltip, and UTC without JavaScript", async () => {
    await page.goto(`${server.base}${LIST}`);
    const time = page.locator("tbody time[data-local]").first();
    assert.match(await time.innerText(), /^\d{4}-\d\d-\d\d \d\d:\d\d\sP[SD]T$/);
    assert.match(await time.getAttribute("title"), /^\d{4}-\d\d-\d\d \d\d:\d\d\sUTC$/);
    await page.goto(`${server.base}/admin/audit-log`);
    assert.match(await page.locator("[data-zone-note]").innerText(), /America\/Los_Angeles/);
    assert.match(await page.locator("#filter-dates-hint").innerText(), /your time zone, America\/Los_Angeles/);
    assert.match(await page.locator("tbody time").first().innerText(), /\d\d:\d\d:\d\d\sP[SD]T$/);

    const noJs = await browser.newContext({ javaScriptEnabled: false, timezoneId: "America/Los_Angeles" });
    const p = await noJs.newPage();
    await signIn(p, server, server.email, server.password);
    await p.goto(`${server.base}/admin/audit-log`);
    assert.match(await p.locator("tbody time").first().innerText(), /\sUTC$/);
    assert.match(await p.locator("#filter-dates-hint").innerText(), /whole days in UTC/);
    await checkPage(p, "audit log", { script: false });
    await noJs.close();
  });

  it("drops a token's id from the audit filters when another source type is chosen", async () => {
    await page.goto(`${server.base}${LIST}`);
    const r = rowOf("Integration 3");
    await r.locator("summary").click();
    await r.getByRole("link", { name: "View audit log" }).click();
    await page.waitForURL(/source_id=/);
    await checkPage(page, "audit log of one token");
    await page.getByLabel("Source type", { exact: true }).selectOption("user");
    await page.getByRole("button", { name: "Filter" }).click();
    await page.waitForURL(/source_type=user/);
    assert.ok(!page.url().includes("source_id="), page.url());
    const sources = await page.locator('tbody td[data-label="Source"]').allInnerTexts();
    assert.ok(sources.length > 0 && sources.every((s) => s.startsWith("User: ")), sources.join("; "));
    await page.getByLabel("Source type", { exact: true }).selectOption("");
    await page.getByRole("button", { name: "Filter" }).click();
    assert.equal(await page.getByRole("alert").count(), 0);

    // Without JavaScript too.
    const noJs = await browser.newContext({ javaScriptEnabled: false });
    const p = await noJs.newPage();
    await signIn(p, server, server.email, server.password);
    await p.goto(`${server.base}/admin/audit-log?source_type=api_token&source_id=3`);
    await p.getByLabel("Source type", { exact: true }).selectOption("");
    await p.getByRole("button", { name: "Filter" }).click();
    await p.waitForLoadState();
    assert.equal(await p.getByRole("alert").count(), 0, await p.locator("main").innerText());
    assert.ok((await p.locator("tbody tr[data-event-id]").count()) > 1);
    await noJs.close();
  });

  it("shows a long description as a modest heading, and a browser's 404 as a page", async () => {
    await page.goto(`${server.base}${LIST}`);
    await page.locator("tbody tr").filter({ hasText: LONG.slice(0, 40) }).locator("td a").first().click();
    const h1 = page.locator("h1");
    await h1.waitFor();
    const box = await h1.boundingBox();
    assert.ok(box.height < 100, `the heading is ${box.height}px tall`);
    await checkPage(page, "details of a token with a long description");
    const res = await page.goto(`${server.base}/no-such-page`);
    assert.equal(res.status(), 404);
    assert.equal(await page.title(), "Page not found · latchkey Admin Center");
    assert.equal(await page.locator("html").getAttribute("lang"), "en");
    await checkPage(page, "404 page");
  });
});
