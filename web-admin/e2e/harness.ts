// Starts what the browser tests run against: a DNS server on loopback, a real
// `caliop serve` (SQLite, every port 0) serving the built apps from dist/
// (administration, at /admin/) and dist-mail/ (the users' app, at /), and
// Debian's Chromium through playwright-core. Screenshots go to artifacts/.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { createWriteStream, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { type Browser, type BrowserContext, type Page, chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const appDir = resolve(here, "..");
export const artifacts = resolve(appDir, "artifacts");
const repo = resolve(appDir, "..");
const targetDir = process.env.CARGO_TARGET_DIR ?? join(repo, "target");
export const BIN = process.env.CALIOP_BIN ?? join(targetDir, "debug", "caliop");
const PYTHON = process.env.CALIOP_TEST_PYTHON ?? "python3";
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

export const LAPTOP = { width: 1366, height: 860 };
export const PHONE = { width: 390, height: 844 };

function waitForLine(child: ChildProcess, prefix: string, what: string): Promise<string> {
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} did not start in time`)), 60_000);
    const lines = createInterface({ input: child.stdout! });
    lines.on("line", (line) => {
      const trimmed = line.trim();
      if (trimmed.startsWith(prefix)) {
        clearTimeout(timer);
        resolvePromise(trimmed.slice(prefix.length).split(/\s+/)[0]!);
      }
    });
    child.once("exit", (code) => reject(new Error(`${what} exited with ${code}`)));
  });
}

export class Dns {
  zone: Record<string, Record<string, string[]>> = {};
  private constructor(readonly process: ChildProcess, readonly address: string, readonly zonePath: string) {}

  static async start(scratch: string): Promise<Dns> {
    const zonePath = join(scratch, "zone.json");
    writeFileSync(zonePath, "{}");
    const child = spawn(PYTHON, [join(here, "dns_server.py"), zonePath], { stdio: ["ignore", "pipe", "inherit"] });
    const address = await waitForLine(child, "dns listening on ", "the DNS server");
    return new Dns(child, address, zonePath);
  }

  /** Publishes a record (name without the trailing dot). */
  publish(name: string, type: string, value: string): void {
    const key = `${name.toLowerCase().replace(/\.$/, "")}.`;
    const entry = (this.zone[key] ??= {});
    (entry[type] ??= []).push(value);
    writeFileSync(this.zonePath, JSON.stringify(this.zone));
  }
}

/**
 * Another mail domain on loopback (remote_domain.py): its MX, which keeps
 * every message it is given, and its Web Key Directory over HTTPS, under a
 * test authority Caliop is told to trust. Its names must resolve to
 * loopback in the test's DNS ([`publishIn`]).
 */
export class RemoteDomain {
  private constructor(
    readonly process: ChildProcess,
    readonly domain: string,
    readonly dir: string,
    readonly httpsPort: number,
    readonly smtpPort: number,
  ) {}

  static async start(domain: string): Promise<RemoteDomain> {
    const dir = mkdtempSync(join(tmpdir(), "caliop-remote-"));
    const child = spawn(PYTHON, [join(here, "remote_domain.py"), dir, `openpgpkey.${domain}`, domain], { stdio: ["ignore", "pipe", "inherit"] });
    const ports = await waitForLine(child, "remote listening on ", `the ${domain} test servers`);
    const [https, smtp] = ports.split(",").map(Number);
    return new RemoteDomain(child, domain, dir, https!, smtp!);
  }

  /** What `caliop serve` needs to deliver to this domain and fetch its keys. */
  env(): Record<string, string> {
    return {
      CALIOP_DELIVERY_PORT: String(this.smtpPort),
      CALIOP_DELIVERY_HTTPS_PORT: String(this.httpsPort),
      CALIOP_DELIVERY_EXTRA_CA_FILE: join(this.dir, "ca.pem"),
    };
  }

  /** Its MX and its key directory's host, on loopback. */
  publishIn(dns: Dns): void {
    dns.publish(this.domain, "MX", `10 mx.${this.domain}.`);
    dns.publish(`mx.${this.domain}`, "A", "127.0.0.1");
    dns.publish(`openpgpkey.${this.domain}`, "A", "127.0.0.1");
  }

  /** Publishes `binaryKey` in the key directory for `local`@domain. */
  publishKey(local: string, binaryKey: Uint8Array): void {
    writeFileSync(join(this.dir, "keys", local), binaryKey);
  }

  /** The messages its MX accepted, oldest first. */
  received(): string[] {
    const names = readdirSync(join(this.dir, "received")).filter((n) => n.endsWith(".eml"));
    return names.sort((a, b) => parseInt(a) - parseInt(b)).map((n) => readFileSync(join(this.dir, "received", n), "utf8"));
  }

  stop(): void {
    this.process.kill("SIGTERM");
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export class Caliop {
  private constructor(
    readonly process: ChildProcess,
    readonly base: string,
    readonly env: NodeJS.ProcessEnv,
    readonly scratch: string,
    readonly dns: Dns,
  ) {}

  static async start(extraEnv: Record<string, string> = {}): Promise<Caliop> {
    const scratch = mkdtempSync(join(tmpdir(), "caliop-admin-e2e-"));
    const dns = await Dns.start(scratch);
    const data = join(scratch, "data");
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      CALIOP_DATA_DIR: data,
      CALIOP_DATABASE_URL: `sqlite://${join(data, "caliop.db")}`,
      CALIOP_API_LISTEN: "127.0.0.1:0",
      CALIOP_API_METRICS_LISTEN: "127.0.0.1:0",
      CALIOP_SMTP_LISTEN: "127.0.0.1:0",
      CALIOP_SUBMISSION_LISTEN: "127.0.0.1:0",
      CALIOP_IMAP_LISTEN: "127.0.0.1:0",
      CALIOP_MANAGESIEVE_LISTEN: "127.0.0.1:0",
      CALIOP_DNS_RESOLVER: dns.address,
      CALIOP_DNS_TIMEOUT_MS: "500",
      CALIOP_DELIVERY_ALLOW_PRIVATE_NETWORKS: "true",
      CALIOP_MAIL_HOSTNAME: "mx.caliop.test",
      CALIOP_ADMIN_ASSETS_DIR: join(appDir, "dist"),
      CALIOP_WEBMAIL_ASSETS_DIR: join(appDir, "dist-mail"),
      CALIOP_LOG_FORMAT: "json",
      ...extraEnv,
    };
    mkdirSync(data, { recursive: true });
    execFileSync(BIN, ["migrate"], { env, stdio: "pipe" });
    const child = spawn(BIN, ["serve"], { env, stdio: ["ignore", "pipe", "pipe"] });
    // JSON logs: kept beside the data directory (a test greps them), not printed.
    child.stderr!.pipe(createWriteStream(join(scratch, "caliop.log")));
    const base = await waitForLine(child, "api listening on ", "caliop serve");
    child.stdout!.resume();
    return new Caliop(child, base, env, scratch, dns);
  }

  port(): string {
    return new URL(this.base).port;
  }

  operatorToken(): string {
    return execFileSync(BIN, ["admin", "operator-token"], { env: this.env }).toString().trim();
  }

  createOperator(address: string, password: string): void {
    execFileSync(BIN, ["admin", "create-operator", address], { env: { ...this.env, CALIOP_ADMIN_PASSWORD: password }, stdio: "pipe" });
  }

  /** Calls the API directly, to check what the app did. */
  async api<T = unknown>(method: string, path: string, token: string, body?: unknown): Promise<{ status: number; body: T }> {
    const response = await fetch(this.base + path, {
      method,
      headers: { Authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await response.text();
    return { status: response.status, body: (text ? JSON.parse(text) : null) as T };
  }

  /** A token for `username`, signed in on the device (`caliop login`: the password is never sent). */
  async token(username: string, password: string): Promise<string> {
    return execFileSync(BIN, ["login", username, "--api", this.base], { env: { ...this.env, CALIOP_PASSWORD: password }, stdio: ["ignore", "pipe", "pipe"] })
      .toString()
      .trim();
  }

  /** `caliop key unlock`: the account's key, unlocked by the command-line client. */
  unlockKey(username: string, password: string): string {
    return execFileSync(BIN, ["key", "unlock", username, "--api", this.base], { env: { ...this.env, CALIOP_PASSWORD: password }, stdio: ["ignore", "pipe", "pipe"] }).toString();
  }

  /** Where the data directory and the log are, for what must never be written there. */
  scratchDir(): string {
    return this.scratch;
  }

  async stop(): Promise<void> {
    this.process.kill("SIGTERM");
    this.dns.process.kill("SIGTERM");
    await new Promise((r) => this.process.once("exit", r));
    rmSync(this.scratch, { recursive: true, force: true });
  }
}

/**
 * Debian's Chromium. `secureOrigins` are plain-HTTP origins to treat as
 * HTTPS: device sign-in needs a secure page (WebCrypto), which a tenant's
 * own hostname is in production (over TLS) but not on loopback here.
 */
export async function launchBrowser(secureOrigins: string[] = []): Promise<Browser> {
  const args = ["--no-sandbox", "--host-resolver-rules=MAP *.test 127.0.0.1"];
  if (secureOrigins.length) args.push(`--unsafely-treat-insecure-origin-as-secure=${secureOrigins.join(",")}`);
  // Custom hostnames of the white-label test resolve to loopback.
  return chromium.launch({ executablePath: CHROMIUM, args });
}

let lastPage: Page | null = null;

/** After a failed test: a picture of where the page was, in artifacts/. */
export async function pictureOfFailure(name: string): Promise<void> {
  if (!lastPage || lastPage.isClosed()) return;
  mkdirSync(artifacts, { recursive: true });
  await lastPage.screenshot({ path: join(artifacts, `FAILED-${name.replace(/[^a-z0-9]+/gi, "-")}.png`), fullPage: true }).catch(() => {});
}

export async function newPage(browser: Browser, locale = "en-US"): Promise<{ context: BrowserContext; page: Page }> {
  // The page runs under the server's Content-Security-Policy, as a person's
  // browser would: what it blocks is blocked here too. axe-core comes in
  // through DevTools (accessibility() below), which the policy does not govern.
  const context = await browser.newContext({ viewport: LAPTOP, locale });
  context.setDefaultTimeout(10_000);
  const page = await context.newPage();
  lastPage = page;
  page.on("pageerror", (e) => {
    throw e;
  });
  return { context, page };
}

const axeSource = readFileSync(join(appDir, "node_modules", "axe-core", "axe.min.js"), "utf8");

export interface Violation {
  id: string;
  impact: string | null;
  help: string;
  nodes: { target: string[] }[];
}

/** Runs axe-core on the page; returns the serious and critical violations. */
export async function accessibility(page: Page): Promise<Violation[]> {
  await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    const result = await (window as unknown as { axe: { run: (o: unknown) => Promise<{ violations: Violation[] }> } }).axe.run({
      runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] },
    });
    return result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => ({ target: n.target })) }));
  });
  return violations.filter((v) => v.impact === "serious" || v.impact === "critical");
}

/** Saves the page at laptop and phone width into artifacts/, then restores the laptop size. */
export async function screenshots(page: Page, name: string): Promise<void> {
  mkdirSync(artifacts, { recursive: true });
  await page.setViewportSize(LAPTOP);
  await page.screenshot({ path: join(artifacts, `${name}-laptop.png`), fullPage: true });
  await page.setViewportSize(PHONE);
  await page.waitForTimeout(100);
  await page.screenshot({ path: join(artifacts, `${name}-phone.png`), fullPage: true });
  await page.setViewportSize(LAPTOP);
}

/** Fails with the list of violations, readable in the test output. */
export function describeViolations(violations: Violation[]): string {
  return violations.map((v) => `${v.impact} ${v.id}: ${v.help} at ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`).join("\n");
}
