// Test support for the Admin Center's browser tests: starts a real
// `latchkey serve` on a loopback port over a fresh SQLite file, runs the
// CLI against the same database, launches Debian's Chromium, and checks
// each page and state a test visits (`checkPage`: axe-core finds no WCAG
// 2.2 A/AA violation and the page does not scroll sideways, at 1280×800
// and at 390×844).

import { spawn, execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const repoRoot = resolve(here, "..", "..");
export const screenshotDir = join(repoRoot, "target", "screenshots");

/** The latchkey binary: $LATCHKEY_BIN, else the debug build, else release. */
export function latchkeyBinary() {
  const candidates = [
    process.env.LATCHKEY_BIN,
    join(repoRoot, "target", "debug", "latchkey"),
    join(repoRoot, "target", "release", "latchkey"),
  ].filter(Boolean);
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    throw new Error("no latchkey binary: run `cargo build -p latchkey` first (or set LATCHKEY_BIN)");
  }
  return found;
}

/**
 * A running server with its own database, and the first run's admin;
 * `args` are added to `serve`'s command line.
 */
export async function startServer({ args = [] } = {}) {
  const bin = latchkeyBinary();
  const dir = mkdtempSync(join(tmpdir(), "latchkey-e2e-"));
  const databaseUrl = `sqlite://${join(dir, "latchkey.db")}`;
  // No shutdown grace: nothing balances load in front of these servers.
  const env = { ...process.env, LATCHKEY_DATABASE_URL: databaseUrl, LATCHKEY_SHUTDOWN_GRACE: "0", RUST_LOG: "warn" };
  const child = spawn(bin, ["serve", "--listen", "127.0.0.1:0", ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stderr.on("data", (d) => (err += d));
  const ready = await new Promise((resolveReady, reject) => {
    const timer = setTimeout(() => reject(new Error(`latchkey serve did not start:\n${out}\n${err}`)), 30_000);
    child.stdout.on("data", (d) => {
      out += d;
      const base = /listening on (http:\/\/\S+)/.exec(out);
      const password = /shown this once: (\S+)/.exec(out);
      if (base && password) {
        clearTimeout(timer);
        resolveReady({ base: base[1], password: password[1] });
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`latchkey serve exited with ${code}:\n${out}\n${err}`));
    });
  });
  const cli = (args, input) =>
    execFileSync(bin, args, { env, input, encoding: "utf8", stdio: ["pipe", "pipe", "pipe"] });
  return {
    base: ready.base,
    subdomain: "default",
    email: "admin@localhost",
    password: ready.password,
    cli,
    async stop() {
      child.removeAllListeners("exit");
      child.kill("SIGTERM");
      await new Promise((r) => {
        if (child.exitCode !== null) return r();
        child.on("exit", r);
        setTimeout(r, 5_000);
      });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Headless Chromium from Debian's package; never a downloaded browser. */
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH || "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
}

/** Imports `n` tokens through the CLI (hashes only, as a migration would). */
export function importTokens(server, n) {
  const lines = [];
  for (let i = 0; i < n; i++) {
    const secret = randomBytes(24).toString("hex");
    const sha = createHash("sha256").update(secret).digest("hex");
    lines.push(JSON.stringify({ token_sha256: sha, visible_token: `lk_imp…${String(i).padStart(4, "0")}`, description: `Imported ${i}` }));
  }
  const dir = mkdtempSync(join(tmpdir(), "latchkey-import-"));
  const file = join(dir, "tokens.jsonl");
  writeFileSync(file, lines.join("\n") + "\n");
  try {
    server.cli(["token", "import", "--account", server.subdomain, "--file", file]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** GET /api/v2/users/me with HTTP Basic `{email}/token:{token}`; the status. */
export async function apiStatus(server, email, token) {
  const auth = Buffer.from(`${email}/token:${token}`).toString("base64");
  const res = await fetch(`${server.base}/api/v2/users/me`, { headers: { authorization: `Basic ${auth}` } });
  await res.arrayBuffer();
  return res.status;
}

export async function screenshot(page, name, { fullPage = true } = {}) {
  mkdirSync(screenshotDir, { recursive: true });
  await page.screenshot({ path: join(screenshotDir, `${name}.png`), fullPage });
}

/** Signs in through the form. */
export async function signIn(page, server, email, password) {
  await page.goto(`${server.base}/login`);
  await page.getByLabel("Account subdomain").fill(server.subdomain);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
}

/** The two screens every page is checked on: a laptop and a phone. */
/** The Admin Center's token list, where a sign-in lands. */
export const TOKEN_LIST = "/admin/apis/api-tokens";

/**
 * Chromium signed in as the server's first admin, on the token list, at
 * 1280x900 with a 10 s default timeout; `permissions` are granted to the
 * server's origin. Returns `{ browser, context, page }`.
 */
export async function signedInBrowser(server, { permissions = [] } = {}) {
  const browser = await launchChromium();
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  if (permissions.length) await context.grantPermissions(permissions, { origin: server.base });
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  await signIn(page, server, server.email, server.password);
  await page.waitForURL(`${server.base}${TOKEN_LIST}`);
  return { browser, context, page };
}

export const LAPTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };

/** axe-core from node_modules (`npm ci`): nothing is downloaded at test time. */
const AXE = createRequire(import.meta.url).resolve("axe-core/axe.min.js");
/** WCAG 2.0, 2.1 and 2.2, levels A and AA. */
const AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"];
/** With AXE_REPORT_ONLY=1 problems are counted and printed, not failed. */
const reportOnly = Boolean(process.env.AXE_REPORT_ONLY);
const totals = { states: 0, checks: 0, violations: 0, nodes: 0, overflows: 0 };
process.on("exit", () => {
  if (totals.checks) {
    console.log(
      `# axe-core: ${totals.states} states, ${totals.checks} checks, ${totals.violations} violations ` +
        `(${totals.nodes} elements), ${totals.overflows} sideways overflows`,
    );
  }
});

let axeSource;

/** Puts axe-core into the page, once per document. */
async function injectAxe(page) {
  const state = await page.evaluate(() => ({
    loaded: typeof window.axe === "object",
    scripts: document.documentElement.classList.contains("js"),
  }));
  if (state.loaded) return;
  // Where the page's own script ran, the page runs scripts: add a script tag.
  if (state.scripts) await page.addScriptTag({ path: AXE }).catch(() => {});
  // The pages' CSP (`script-src 'self'`) refuses an inline script; then
  // the same file is evaluated through the DevTools protocol, which the
  // CSP does not govern (the pages keep their CSP under test).
  if (!(await page.evaluate(() => typeof window.axe === "object"))) {
    axeSource ??= readFileSync(AXE, "utf8");
    await page.evaluate(axeSource);
  }
}

/** The WCAG violations axe-core finds in the page as it is now. */
async function axeViolations(page) {
  await injectAxe(page);
  return page.evaluate(
    (tags) => window.axe.run(document, { runOnly: { type: "tag", values: tags }, resultTypes: ["violations"] }).then((r) =>
      r.violations.map((v) => ({
        id: v.id,
        impact: v.impact,
        help: v.help,
        targets: v.nodes.map((n) => n.target.join(" ")),
      })),
    ),
    AXE_TAGS,
  );
}

/**
 * Checks the page as it is now (an open menu or dialog stays open) at
 * 1280×800 and at 390×844: no WCAG 2.2 A/AA violation that axe-core finds,
 * and nothing makes the page scroll sideways. The viewport is restored.
 */
export async function checkPage(page, label, { script = true } = {}) {
  if (!script) return checkCopy(page, label);
  const original = page.viewportSize();
  const problems = [];
  totals.states += 1;
  for (const size of [LAPTOP, PHONE]) {
    if (original?.width !== size.width || original?.height !== size.height) await page.setViewportSize(size);
    totals.checks += 1;
    const overflow = await page.evaluate(
      () => document.documentElement.scrollWidth - document.documentElement.clientWidth,
    );
    if (overflow > 0) {
      totals.overflows += 1;
      problems.push(`${label} at ${size.width}px: the page scrolls sideways by ${overflow}px`);
    }
    for (const v of await axeViolations(page)) {
      totals.violations += 1;
      totals.nodes += v.targets.length;
      problems.push(`${label} at ${size.width}px: ${v.id} (${v.impact}) ${v.help}: ${v.targets.slice(0, 4).join(", ")}`);
    }
  }
  if (original) await page.setViewportSize(original);
  if (problems.length > 0) {
    if (reportOnly) console.log(problems.map((p) => `# ${p}`).join("\n"));
    else assert.fail(problems.join("\n"));
  }
}

/**
 * A page of a context without JavaScript cannot run axe-core (nothing can
 * be evaluated in it): its HTML, without scripts, is checked in a page of
 * its own at the same address, with the same stylesheet.
 */
async function checkCopy(page, label) {
  const html = (await page.content()).replace(/<script\b[^>]*>[\s\S]*?<\/script>/gi, "");
  const context = await page.context().browser().newContext({ viewport: LAPTOP });
  try {
    const copy = await context.newPage();
    await copy.goto(new URL("/static/app.css", page.url()).href);
    await copy.setContent(html, { waitUntil: "load" });
    await checkPage(copy, `${label} (without JavaScript)`);
  } finally {
    await context.close();
  }
}
