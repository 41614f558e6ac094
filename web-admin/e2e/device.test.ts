// Device sign-in in the browser (issue 18): the admin app signs in,
// changes the password and downloads the unlocked key while the test
// records every request the page sends. Neither password, nor the export
// key, nor the key-encryption key derived from it, appears in any request,
// in the data directory or in the logs. The browser's OPAQUE
// (@serenity-kit/opaque) and key wrapping (WebCrypto) interoperate with the
// server's (opaque-ke) and the command-line client's: the key the browser
// downloads is the one `caliop key unlock` gives. A second factor set up on
// the page is then asked for at sign-in (codes computed by pyotp). A passkey
// made by Chromium's virtual authenticator (DevTools' WebAuthn domain) on
// the account page signs in after the password. An account made without a
// password opens with its activation link in the browser, which sends
// neither the link's secret nor the new password.
import { execFileSync } from "node:child_process";
import { hkdfSync } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import * as opaque from "@serenity-kit/opaque";
import type { Browser } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Caliop, accessibility, describeViolations, launchBrowser, newPage, pictureOfFailure, screenshots } from "./harness";

const ADDRESS = "ops@operator.test";
const FIRST = "first operator passphrase";
const SECOND = "second operator passphrase, longer";
const KEYHOLDER = "keys@operator.test";
const KEYHOLDER_PASSWORD = "a passphrase that a passkey completes";

let caliop: Caliop;
let browser: Browser;

afterEach(async (ctx) => {
  if (ctx.task.result?.state === "fail") await pictureOfFailure(ctx.task.name);
});

beforeAll(async () => {
  caliop = await Caliop.start();
  caliop.createOperator(ADDRESS, FIRST);
  caliop.createOperator(KEYHOLDER, KEYHOLDER_PASSWORD);
  await caliop.token(KEYHOLDER, KEYHOLDER_PASSWORD);
  // The one-time move of an account made with a password happens here, on
  // the command line; what the browser does afterwards is recorded.
  await caliop.token(ADDRESS, FIRST);
  browser = await launchBrowser();
});

afterAll(async () => {
  await browser?.close();
  await caliop?.stop();
});

/** The export key a device derives from `password` (a sign-in run here, in Node). */
async function exportKeyOf(password: string): Promise<string> {
  return (await finishWith(caliop.base, ADDRESS, password, {})).exportKey;
}

/**
 * A sign-in run here, in Node, as if from a page of `origin`, finished with
 * `extra` (a second factor, or a forged one).
 */
async function finishWith(origin: string, username: string, password: string, extra: Record<string, unknown>): Promise<{ status: number; body: any; exportKey: string }> {
  await opaque.ready;
  const { clientLoginState, startLoginRequest } = opaque.client.startLogin({ password });
  const start = await fetch(`${caliop.base}/v1/auth/opaque/login/start`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Origin: origin },
    body: JSON.stringify({ username, credential_request: startLoginRequest }),
  });
  const started = (await start.json()) as { login_id: string; credential_response: string; ksf: { iterations: number; memory_kib: number; parallelism: number }; passkey?: { challenge: string } };
  // A page on localhost is offered a passkey request; the same for every address.
  if (origin.startsWith("http://localhost:")) expect(started.passkey?.challenge).toMatch(/^[A-Za-z0-9_-]{22}$/);
  const finished = opaque.client.finishLogin({
    clientLoginState,
    loginResponse: started.credential_response,
    password,
    keyStretching: { "argon2id-custom": { iterations: started.ksf.iterations, memory: started.ksf.memory_kib, parallelism: started.ksf.parallelism } },
  });
  if (!finished) throw new Error("the password did not sign in");
  const response = await fetch(`${caliop.base}/v1/auth/opaque/login/finish`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ login_id: started.login_id, credential_finalization: finished.finishLoginRequest, ...extra }),
  });
  return { status: response.status, body: await response.json(), exportKey: finished.exportKey };
}

/** The code `pyotp` (not our implementation) computes for `secret`, `offset` seconds from now. */
function totp(secret: string, offset: number): string {
  const python = process.env.CALIOP_TEST_PYTHON ?? "python3";
  return execFileSync(python, ["-c", "import sys, time, pyotp; print(pyotp.TOTP(sys.argv[1]).at(time.time() + int(sys.argv[2])))", secret, String(offset)])
    .toString()
    .trim();
}

/** Every form a secret might be written in. */
function forms(bytes: Buffer): string[] {
  return [bytes.toString("hex"), bytes.toString("base64"), bytes.toString("base64url"), bytes.toString("base64").replace(/=+$/, "")];
}

function secretsOf(exportKeyB64: string, password: string): { text: string[]; raw: Buffer[] } {
  const exportKey = Buffer.from(exportKeyB64, "base64url");
  const kek = Buffer.from(hkdfSync("sha256", exportKey, Buffer.from("caliop/key-wrap/v1"), Buffer.from("caliop secret key"), 32));
  return {
    text: [password, ...forms(exportKey), ...forms(kek)],
    raw: [exportKey, kek, Buffer.from(password)],
  };
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? filesUnder(path) : [path];
  });
}

describe("device sign-in in the admin app", () => {
  it("never sends the password or the key-encryption key, and unlocks the key in the browser", async () => {
    const { context, page } = await newPage(browser);
    const sent: string[] = [];
    page.on("request", (request) => {
      sent.push([request.method(), request.url(), JSON.stringify(request.headers()), request.postData() ?? ""].join("\n"));
    });

    // Sign in.
    await page.goto(`${caliop.base}/admin/`);
    await page.getByLabel("Email address").fill(ADDRESS);
    await page.getByLabel("Password").fill(FIRST);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("button", { name: "Sign out" }).waitFor();

    // Change the password: the key is unlocked and locked again in the page.
    await page.getByRole("link", { name: "My account" }).click();
    await page.getByLabel("Current password").fill(FIRST);
    await page.getByLabel("New password", { exact: true }).fill(SECOND);
    await page.getByLabel("New password again").fill(SECOND);
    await page.getByRole("button", { name: "Change password" }).click();
    await page.getByText("Your password is changed.").waitFor({ timeout: 30_000 });

    // Download the key, unlocked in the page.
    const [download] = await Promise.all([page.waitForEvent("download"), page.getByRole("button", { name: "Download my unlocked key" }).click()]);
    const downloaded = readFileSync((await download.path())!, "utf8");
    expect(downloaded).toContain("-----BEGIN PGP PRIVATE KEY BLOCK-----");
    // The same key the command-line client unlocks with the new password:
    // the browser's OPAQUE and key wrapping are the server's and Rust's.
    expect(downloaded.trim()).toBe(caliop.unlockKey(ADDRESS, SECOND).trim());

    // A second factor, set up on the same page; the next sign-in asks for it.
    await page.getByRole("button", { name: "Set up an authenticator app" }).click();
    const secret = (await page.getByTestId("totp-secret").textContent())!.trim();
    await page.getByLabel("Code from the app").fill(totp(secret, 0));
    await page.getByRole("button", { name: "Turn on" }).click();
    await expect.poll(() => page.getByTestId("recovery-codes").locator("li").count()).toBe(10);
    const violations = await accessibility(page);
    expect(violations, describeViolations(violations)).toEqual([]);
    await screenshots(page, "account");
    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByLabel("Email address").fill(ADDRESS);
    await page.getByLabel("Password").fill(SECOND);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByText("This account has a second factor").waitFor();
    // The code that turned it on is spent: the next one signs in.
    await page.getByLabel("Second-factor code").fill(totp(secret, 30));
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("button", { name: "Sign out" }).waitFor();
    await context.close();

    // What the page sent, the data directory and the logs hold no secret.
    const secrets = [secretsOf(await exportKeyOf(SECOND), SECOND), { text: [FIRST], raw: [Buffer.from(FIRST)] }];
    expect(sent.some((r) => r.includes("/v1/auth/opaque/login/finish"))).toBe(true);
    expect(sent.some((r) => r.includes("/opaque/register/finish"))).toBe(true);
    expect(sent.some((r) => r.includes("/v1/auth/token"))).toBe(false);
    for (const request of sent) {
      for (const { text } of secrets) {
        for (const secret of text) expect(request.includes(secret), `a secret in ${request.split("\n")[1]}`).toBe(false);
      }
    }
    for (const file of filesUnder(caliop.scratchDir())) {
      const bytes = readFileSync(file);
      for (const { text, raw } of secrets) {
        for (const secret of text) expect(bytes.includes(Buffer.from(secret)), `${secret.slice(0, 8)}… in ${file}`).toBe(false);
        for (const secret of raw) expect(bytes.includes(secret), `raw secret in ${file}`).toBe(false);
      }
    }
    // The log was written (so the search above looked at something).
    expect(readFileSync(join(caliop.scratchDir(), "caliop.log"), "utf8").length).toBeGreaterThan(0);
  }, 120_000);

  it("signs in with a passkey made on the account page, after the password", async () => {
    const { context, page } = await newPage(browser);
    // WebAuthn wants a domain, and plain HTTP only on localhost.
    const origin = `http://localhost:${caliop.port()}`;
    const cdp = await context.newCDPSession(page);
    await cdp.send("WebAuthn.enable");
    const { authenticatorId } = await cdp.send("WebAuthn.addVirtualAuthenticator", {
      options: { protocol: "ctap2", transport: "internal", hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
    });
    const signIn = async () => {
      await page.getByLabel("Email address").fill(KEYHOLDER);
      await page.getByLabel("Password").fill(KEYHOLDER_PASSWORD);
      await page.getByRole("button", { name: "Sign in" }).click();
    };

    await page.goto(`${origin}/admin/`);
    await signIn();
    await page.getByRole("button", { name: "Sign out" }).waitFor();
    await page.getByRole("link", { name: "My account" }).click();
    await page.getByLabel("Name of the new passkey").fill("virtual key");
    await page.getByRole("button", { name: "Add a passkey" }).click();
    await page.getByText("The passkey virtual key is added").waitFor({ timeout: 30_000 });
    // Its first second factor: recovery codes come with it.
    await expect.poll(() => page.getByTestId("passkey-recovery-codes").locator("li").count()).toBe(10);
    await expect.poll(() => page.getByTestId("passkeys").locator("li").count()).toBe(1);
    await expect(page.getByTestId("passkeys").textContent()).resolves.toContain("virtual key, on localhost");
    const made = await cdp.send("WebAuthn.getCredentials", { authenticatorId });
    expect(made.credentials).toHaveLength(1);
    expect(made.credentials[0]!.isResidentCredential).toBe(true);
    expect(made.credentials[0]!.rpId).toBe("localhost");
    const countBefore = made.credentials[0]!.signCount;

    // The password alone no longer signs in.
    await page.getByRole("button", { name: "Sign out" }).click();
    await signIn();
    await page.getByText("This account has a second factor: use your passkey").waitFor();
    // Outside the page: the right password with no passkey, a forged
    // assertion, or a real one signing another challenge, get no token.
    const bare = await finishWith(origin, KEYHOLDER, KEYHOLDER_PASSWORD, {});
    expect(bare.status).toBe(401);
    expect(bare.body.found).toEqual(["passkey", "recovery_code"]);
    const forged = await finishWith(origin, KEYHOLDER, KEYHOLDER_PASSWORD, { passkey: { id: "AAAA", type: "public-key" } });
    expect(forged.status).toBe(400);
    const assertion = await page.evaluate(async (rawId) => {
      const credential = (await navigator.credentials.get({
        publicKey: { challenge: new Uint8Array(16), rpId: "localhost", allowCredentials: [{ type: "public-key", id: Uint8Array.from(atob(rawId.replace(/-/g, "+").replace(/_/g, "/")), (c) => c.charCodeAt(0)) }], userVerification: "required" },
      })) as PublicKeyCredential;
      return credential.toJSON();
    }, made.credentials[0]!.credentialId);
    const replayed = await finishWith(origin, KEYHOLDER, KEYHOLDER_PASSWORD, { passkey: assertion });
    expect(replayed.status).toBe(401);
    expect(replayed.body.detail).toContain("second-factor");
    // The passkey does, after the password.
    await page.getByRole("button", { name: "Use a passkey" }).click();
    await page.getByRole("button", { name: "Sign out" }).waitFor();
    const used = await cdp.send("WebAuthn.getCredentials", { authenticatorId });
    expect(used.credentials[0]!.signCount).toBeGreaterThan(countBefore);

    // Removed from the account page, it is asked for no more.
    await page.getByRole("link", { name: "My account" }).click();
    await page.getByRole("button", { name: "Remove the passkey virtual key" }).click();
    await page.getByText("No passkey yet.").waitFor();
    await page.getByRole("button", { name: "Sign out" }).click();
    await signIn();
    await page.getByRole("button", { name: "Sign out" }).waitFor();
    await context.close();
  }, 120_000);

  it("opens an activation link: the password is set in the browser, and the key moves with it", async () => {
    const operator = caliop.operatorToken();
    const claims = JSON.parse(Buffer.from(operator.split(".")[1]!, "base64url").toString()) as { tid: string };
    const made = await caliop.api<{ address: string; activation: { url: string } }>("POST", `/v1/tenants/${claims.tid}/accounts`, operator, {
      address: "newcomer@operator.test",
      display_name: "Newcomer",
    });
    expect(made.status).toBe(201);
    const link = new URL(made.body.activation.url);
    const secret = link.hash.slice(1);
    const password = "the newcomer's own passphrase";

    const { context, page } = await newPage(browser);
    const sent: string[] = [];
    page.on("request", (request) => sent.push([request.url(), JSON.stringify(request.headers()), request.postData() ?? ""].join("\n")));
    await page.goto(`${caliop.base}${link.pathname}${link.hash}`);
    await page.getByRole("heading", { name: "Set your password" }).waitFor();
    await page.getByLabel("New password", { exact: true }).fill(password);
    await page.getByLabel("New password again").fill(password);
    await page.getByRole("button", { name: "Set the password" }).click();
    await page.getByText("newcomer@operator.test is ready").waitFor({ timeout: 30_000 });
    // The spent link leaves the address bar.
    expect(new URL(page.url()).hash).toBe("");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByLabel("Email address").fill("newcomer@operator.test");
    await page.getByLabel("Password").fill(password);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("button", { name: "Sign out" }).waitFor();
    await context.close();

    // Neither the link's secret, nor the password, nor the export key and
    // the key-encryption key it gives, went anywhere.
    expect(sent.some((r) => r.includes("/v1/public/activations/"))).toBe(true);
    const derived = secretsOf((await finishWith(caliop.base, "newcomer@operator.test", password, {})).exportKey, password);
    for (const request of sent) {
      for (const held of [secret, ...derived.text]) {
        expect(request.includes(held), `a secret in ${request.split("\n")[0]}`).toBe(false);
      }
    }
    // The key the browser locked is the one the command-line client opens.
    expect(caliop.unlockKey("newcomer@operator.test", password)).toContain("-----BEGIN PGP PRIVATE KEY BLOCK-----");
  }, 120_000);
});
