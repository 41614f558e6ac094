// The users' app (issue 22) against a real `caliop serve`: Bob, whose mail is
// sealed, signs in on the device and reads a message Alice sent him: the
// page fetches it as stored (PGP/MIME, which the server cannot open) and
// decrypts it with the key it unlocked. Every request the page sends is
// recorded: neither the decrypted text, nor Bob's password, nor his
// unlocked key is in any of them. A hostile HTML message renders with no
// script, no handler and no request leaving the page. Bob replies. The
// views pass axe-core and are photographed at laptop and phone width.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Browser, Page, Request } from "playwright-core";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Caliop, accessibility, describeViolations, launchBrowser, newPage, pictureOfFailure, screenshots } from "./harness";

const ALICE = { address: "alice@acme.test", password: "alice's long passphrase" };
const BOB = { address: "bob@acme.test", password: "bob's own long passphrase" };
const SECRET_TEXT = "The vault code is 7391-ORCHID";
const SECRET_SUBJECT = "Quarterly plans, between us";

let caliop: Caliop;
let browser: Browser;
let aliceToken: string;
let bobToken: string;
let bobId: string;
/** A server on loopback standing for a tracker: any hit means remote content leaked. */
let tracker: Server;
let trackerHits: string[] = [];

afterEach(async (ctx) => {
  if (ctx.task.result?.state === "fail") await pictureOfFailure(ctx.task.name);
});

async function deliverFromAlice(body: Record<string, unknown>): Promise<void> {
  const aliceId = whoami(aliceToken).account_id;
  const sent = await caliop.api<{ encrypted_to: string[] }>("POST", `/v1/accounts/${aliceId}/messages`, aliceToken, { to: [BOB.address], ...body });
  expect(sent.status).toBe(202);
}

/** The account a token signs in as (its `sub` is `account:<uuid>`). */
function whoami(token: string): { account_id: string } {
  const payload = JSON.parse(Buffer.from(token.split(".")[1]!, "base64url").toString()) as { sub: string };
  return { account_id: payload.sub.replace(/^account:/, "") };
}

interface Listed {
  items: { id: string; level: string; subject?: string | null; flags: string[]; envelope_from: string }[];
}

async function waitForMessages(count: number): Promise<Listed["items"]> {
  for (let i = 0; i < 100; i++) {
    const listed = await caliop.api<Listed>("GET", `/v1/accounts/${bobId}/messages?folder=inbox`, bobToken);
    if (listed.body.items.length >= count) return listed.body.items;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`Bob's inbox never held ${count} messages`);
}

beforeAll(async () => {
  tracker = createServer((req, res) => {
    trackerHits.push(req.url ?? "");
    res.end();
  });
  await new Promise<void>((r) => tracker.listen(0, "127.0.0.1", r));
  caliop = await Caliop.start();
  const operator = caliop.operatorToken();
  const tenant = await caliop.api<{ id: string }>("POST", "/v1/tenants", operator, {
    name: "Acme",
    kind: "enterprise",
    limits: { max_accounts: 10, max_domains: 2, storage_quota_bytes: 10_000_000_000 },
  });
  expect(tenant.status).toBe(201);
  const onboarded = await caliop.api<{ domain: { id: string }; dns_records: { name: string; type: string; value: string }[] }>("POST", `/v1/tenants/${tenant.body.id}/onboard`, operator, {
    domain: "acme.test",
    admin: { address: ALICE.address, password: ALICE.password, role: "admin" },
  });
  expect(onboarded.status).toBe(201);
  const proof = onboarded.body.dns_records[0]!;
  caliop.dns.publish(proof.name, proof.type, proof.value);
  const verified = await caliop.api("POST", `/v1/domains/${onboarded.body.domain.id}/verify`, operator, {});
  expect(verified.status).toBe(200);
  const bob = await caliop.api<{ id: string; level: string }>("POST", `/v1/tenants/${tenant.body.id}/accounts`, operator, {
    address: BOB.address,
    password: BOB.password,
    level: "sealed",
  });
  expect(bob.status).toBe(201);
  expect(bob.body.level).toBe("sealed");
  bobId = bob.body.id;
  // The one-time moves to device sign-in happen on the command line; what
  // the browser does afterwards is recorded.
  aliceToken = await caliop.token(ALICE.address, ALICE.password);
  bobToken = await caliop.token(BOB.address, BOB.password);
  browser = await launchBrowser();
});

afterAll(async () => {
  await browser?.close();
  await caliop?.stop();
  tracker?.close();
});

function record(page: Page): { url: string; body: string }[] {
  const sent: { url: string; body: string }[] = [];
  page.on("request", (request: Request) => {
    sent.push({ url: request.url(), body: request.postDataBuffer()?.toString("utf8") ?? "" });
  });
  return sent;
}

async function signIn(page: Page, who: { address: string; password: string }): Promise<void> {
  await page.goto(`${caliop.base}/`);
  await page.getByLabel("Email address").fill(who.address);
  await page.getByLabel("Password").fill(who.password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("heading", { name: "Inbox" }).waitFor();
}

async function checkView(page: Page, name: string): Promise<void> {
  const violations = await accessibility(page);
  expect(violations, describeViolations(violations)).toEqual([]);
  await screenshots(page, `mail-${name}`);
}

describe("the users' app", () => {
  it("serves the app at / under the server's CSP, with the page's title set to the brand", async () => {
    const response = await fetch(`${caliop.base}/mail/inbox`);
    expect(response.status).toBe(200);
    const csp = response.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("script-src 'self' 'wasm-unsafe-eval'");
    expect(csp).toContain("object-src 'none'");
    const html = await response.text();
    expect(html).toContain('<div id="app">');
  });

  it("reads a sealed message decrypted in the page, and neither the text nor the key goes to the server", async () => {
    await deliverFromAlice({ subject: SECRET_SUBJECT, text: `${SECRET_TEXT}\n\nAlice` });
    const [stored] = await waitForMessages(1);
    expect(stored!.level).toBe("sealed");
    // What the server holds and serves is ciphertext: the text is not in it.
    const raw = await (await fetch(`${caliop.base}/v1/messages/${stored!.id}/raw`, { headers: { Authorization: `Bearer ${bobToken}` } })).text();
    expect(raw).toContain("-----BEGIN PGP MESSAGE-----");
    expect(raw).not.toContain("7391-ORCHID");
    expect(raw).not.toContain(SECRET_SUBJECT);
    const unlockedKey = caliop.unlockKey(BOB.address, BOB.password);
    // Lines of the armored secret key's body: any of them in a request would mean the key left.
    const keyLines = unlockedKey.split("\n").filter((l) => l.length >= 60 && !l.startsWith("-----"));
    expect(keyLines.length).toBeGreaterThan(2);

    const { context, page } = await newPage(browser);
    const sent = record(page);
    await signIn(page, BOB);
    const row = page.getByTestId("message-row").first();
    await expect(row.textContent()).resolves.toContain("Sealed message");
    await checkView(page, "inbox");
    await row.locator("a").click();
    await page.getByRole("heading", { name: SECRET_SUBJECT }).waitFor();
    await expect(page.getByTestId("body").textContent()).resolves.toContain(SECRET_TEXT);
    await expect(page.getByText("decrypted here, in your browser").count()).resolves.toBe(1);
    await expect(page.getByTestId("from").textContent()).resolves.toContain(ALICE.address);
    // The privacy index and its facts.
    await page.locator("details.privacy summary").click();
    await expect(page.locator("ul.facts").textContent()).resolves.toContain("Stored sealed to your key");
    await checkView(page, "message");
    // Opened: the server marked it seen.
    const after = await caliop.api<{ flags: string[] }>("GET", `/v1/messages/${stored!.id}`, bobToken);
    expect(after.body.flags).toContain("seen");
    // Back in the list, the subject read on this device is shown.
    await page.getByRole("link", { name: /Inbox/ }).first().click();
    await expect(page.getByTestId("message-row").first().textContent()).resolves.toContain(SECRET_SUBJECT);

    expect(sent.length).toBeGreaterThan(5);
    for (const request of sent) {
      const text = request.url + "\n" + request.body;
      expect(text).not.toContain("7391-ORCHID");
      expect(text).not.toContain(SECRET_SUBJECT);
      expect(text).not.toContain(BOB.password);
      for (const line of keyLines) expect(text).not.toContain(line);
    }
    // Nothing decrypted and no key is kept in the browser's storage.
    const stored_ = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }));
    expect(stored_).not.toContain("7391-ORCHID");
    expect(stored_).not.toContain("PRIVATE KEY");
    await context.close();
  });

  it("shows hostile HTML with no script, no handler and nothing fetched from elsewhere", async () => {
    trackerHits = [];
    const origin = `http://127.0.0.1:${(tracker.address() as AddressInfo).port}`;
    await deliverFromAlice({
      subject: "Hostile newsletter",
      text: "plain part",
      html: `<style>@import url(${origin}/import.css); body { background: url(${origin}/bg.png) }</style>
<p id="greeting">Hello Bob</p>
<script>window.parent.pwned = 1</script>
<img src="${origin}/pixel.gif" alt="pixel">
<img src="x" onerror="window.parent.pwned = 2">
<a href="javascript:window.parent.pwned = 3">click</a>
<div style="background-image: url(${origin}/div.png)">styled</div>
<form action="${origin}/steal"><input name="q"></form>
<iframe src="${origin}/frame"></iframe>`,
    });
    await waitForMessages(2);
    const { context, page } = await newPage(browser);
    await signIn(page, BOB);
    await page.getByTestId("message-row").filter({ hasText: "Sealed message" }).first().locator("a").click();
    await page.getByRole("heading", { name: "Hostile newsletter" }).waitFor();
    const frame = page.frameLocator("[data-testid=body-frame]");
    await frame.locator("#greeting").waitFor();
    await expect(frame.locator("script, iframe, form, input, [onerror]").count()).resolves.toBe(0);
    await expect(frame.locator("a").getAttribute("href")).resolves.toBeNull();
    await expect(page.getByText(/remote images or styles were blocked/).count()).resolves.toBe(1);
    await page.waitForTimeout(500);
    expect(await page.evaluate(() => (window as unknown as { pwned?: number }).pwned)).toBeUndefined();
    expect(trackerHits).toEqual([]);
    await checkView(page, "hostile");
    await context.close();
  });

  it("replies, and the answer reaches Alice", async () => {
    const { context, page } = await newPage(browser);
    await signIn(page, BOB);
    await page.getByTestId("message-row").filter({ hasText: "Sealed message" }).last().locator("a").click();
    await page.getByRole("heading", { name: SECRET_SUBJECT }).waitFor();
    await page.getByRole("link", { name: "Reply", exact: true }).click();
    await page.getByRole("heading", { name: "Reply" }).waitFor();
    await expect(page.getByLabel("To", { exact: true }).inputValue()).resolves.toBe(ALICE.address);
    await expect(page.getByLabel("Subject").inputValue()).resolves.toBe(`Re: ${SECRET_SUBJECT}`);
    await expect(page.getByLabel("Message").inputValue()).resolves.toContain(`> ${SECRET_TEXT}`);
    await checkView(page, "compose");
    await page.getByLabel("Message").press("Control+Home");
    await page.getByLabel("Message").pressSequentially("Agreed.");
    await page.getByRole("button", { name: "Send" }).click();
    await page.getByTestId("sent").waitFor();
    const aliceId = whoami(aliceToken).account_id;
    for (let i = 0; ; i++) {
      const inbox = await caliop.api<Listed>("GET", `/v1/accounts/${aliceId}/messages?folder=inbox`, aliceToken);
      if (inbox.body.items.some((m) => m.envelope_from === BOB.address)) break;
      if (i > 50) throw new Error("the reply never reached Alice");
      await new Promise((r) => setTimeout(r, 200));
    }
    await context.close();
  });

  it("shows the account's settings: level, storage, fingerprint, mail-app settings", async () => {
    const { context, page } = await newPage(browser);
    await signIn(page, BOB);
    await page.getByRole("link", { name: "Settings" }).click();
    await page.getByRole("heading", { name: "Settings" }).waitFor();
    const account = await caliop.api<{ fingerprint: string }>("GET", `/v1/accounts/${bobId}`, bobToken);
    await expect(page.getByTestId("fingerprint").textContent()).resolves.toBe(account.body.fingerprint);
    await expect(page.getByRole("radio", { name: /^Sealed/ }).isChecked()).resolves.toBe(true);
    await page.getByTestId("client-settings").waitFor();
    await expect(page.getByTestId("client-settings").textContent()).resolves.toContain("mx.caliop.test");
    await page.getByLabel("Which app or device").fill("Thunderbird at home");
    await page.getByRole("button", { name: "Make an app password" }).click();
    const secret = (await page.getByTestId("app-password").textContent())!.trim();
    expect(secret.length).toBeGreaterThan(10);
    await page.getByRole("button", { name: "I have stored it" }).click();
    const listed = await caliop.api<{ items: { name: string }[] }>("GET", `/v1/accounts/${bobId}/app-passwords`, bobToken);
    expect(listed.body.items.map((p) => p.name)).toEqual(["Thunderbird at home"]);
    await checkView(page, "settings");
    await context.close();
  });
});
