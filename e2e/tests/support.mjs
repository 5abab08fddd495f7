// Test support for the Admin Center's browser tests: starts a real
// `latchkey serve` on a loopback port over a fresh SQLite file, runs the
// CLI against the same database, and launches Debian's Chromium.

import { spawn, execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
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

/** A running server with its own database, and the first run's admin. */
export async function startServer() {
  const bin = latchkeyBinary();
  const dir = mkdtempSync(join(tmpdir(), "latchkey-e2e-"));
  const databaseUrl = `sqlite://${join(dir, "latchkey.db")}`;
  const env = { ...process.env, LATCHKEY_DATABASE_URL: databaseUrl, RUST_LOG: "warn" };
  const child = spawn(bin, ["serve", "--listen", "127.0.0.1:0"], { env, stdio: ["ignore", "pipe", "pipe"] });
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
